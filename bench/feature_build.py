"""Benchmark: wall time of the lifecycle feature build (DuckDB) over every day of a world.

Simulates the world into a temporary home (not timed), then builds each day's user and item
features in order, as the daily DAG would when backfilling, and reports the total wall time
(target: 60 s for the ``wechat`` preset on 2 cores). With ``--serve-last-day`` it also times
validating (Great Expectations) and materializing (Feast, SQLite) the last day.

    python bench/feature_build.py --out bench/results/features.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/machine.py (a script's own folder is on sys.path)

from feature_repo.build import build_features
from stan_model.data import raw_store
from stan_model.data.simulator import write_world
from stan_model.data.world_config import WorldConfig

log = logging.getLogger("bench.feature_build")
TARGET_S = 60.0


def run(preset: str, serve_last_day: bool) -> dict:
    from tqdm import tqdm

    cfg = WorldConfig.preset(preset)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        report = write_world(cfg, home)
        days = raw_store.partition_days(home)
        per_day = []
        t0 = time.perf_counter()
        for day in tqdm(days, desc=f"build {preset}", unit="day"):
            built = build_features(home, day)
            per_day.append(
                {"day": day.isoformat(), "seconds": round(built.seconds, 3), "users": built.users}
            )
        build_s = time.perf_counter() - t0
        result = {
            "preset": preset,
            "impressions": report.events,
            "users": cfg.n_users,
            "items": cfg.n_items,
            "days": len(days),
            "build_wall_s": round(build_s, 2),
            "build_s_per_day_max": max(d["seconds"] for d in per_day),
            "target_s": TARGET_S,
            "meets_target": build_s <= TARGET_S,
            "per_day": per_day,
        }
        if serve_last_day:
            from feature_repo.store import materialize
            from feature_repo.validate import validate_features

            t1 = time.perf_counter()
            validate_features(home, days[-1])
            result["validate_last_day_s"] = round(time.perf_counter() - t1, 2)
            t2 = time.perf_counter()
            materialize(home, days[-1])
            result["materialize_last_day_s"] = round(time.perf_counter() - t2, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="wechat")
    parser.add_argument("--serve-last-day", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results/features.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("feast", "great_expectations", "feature_repo"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    result = run(args.preset, args.serve_last_day)
    log.info(
        "%s: %s impressions, %d days built in %.1f s (target %.0f s)",
        args.preset,
        f"{result['impressions']:,}",
        result["days"],
        result["build_wall_s"],
        TARGET_S,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "feature_build", "machine": machine(), "results": result}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
