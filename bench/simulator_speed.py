"""Benchmark: lifecycle world simulator throughput (impressions per second), per preset.

Generation is timed separately from Parquet writing; each preset runs ``--repeats`` times and the
median is reported. Results go to a JSON file with the machine they ran on.

    python bench/simulator_speed.py --out bench/results/simulator.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/machine.py (a script's own folder is on sys.path)

from stan_model.data.simulator import WorldSimulator, write_world
from stan_model.data.world_config import WorldConfig


def generate_only(cfg: WorldConfig) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = sum(events.num_rows for _, events, _ in WorldSimulator(cfg).days())
    return n, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="tiny,small,wechat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/simulator.json"))
    args = parser.parse_args()
    results = {}
    for name in args.presets.split(","):
        cfg = WorldConfig.preset(name)
        runs = [generate_only(cfg) for _ in range(args.repeats)]
        n = runs[0][0]
        gen_s = statistics.median(t for _, t in runs)
        with tempfile.TemporaryDirectory() as home:
            t0 = time.perf_counter()
            report = write_world(cfg, home)
            total_s = time.perf_counter() - t0
        results[name] = {
            "impressions": n,
            "users": cfg.n_users,
            "days": cfg.n_days,
            "generate_s_median": round(gen_s, 4),
            "impressions_per_s": round(n / gen_s),
            "with_parquet_write_s": round(total_s, 4),
            "impressions_per_s_incl_write": round(report.events / total_s),
            "target_impressions_per_s": 1_000_000,
            "meets_target": n / gen_s >= 1_000_000,
        }
        print(
            f"{name:7s} {n:>10,} impressions  generate {gen_s:6.2f} s  "
            f"{n / gen_s / 1e6:5.2f}M/s  "
            f"(with Parquet writes {report.events / total_s / 1e6:5.2f}M/s)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "simulator_speed",
                "machine": machine(),
                "repeats": args.repeats,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
