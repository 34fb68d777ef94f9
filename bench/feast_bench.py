"""Benchmark: Feast materialization throughput and online lookup latency, SQLite and Redis.

One realistic day of lifecycle features (default: the last day of the ``wechat`` world, 20,000
users and 100,000 items) is simulated, built and validated in a temporary home (not timed).
Then, for each online store:

1. **Materialization**: ``feature_repo.store.materialize(home, day)``, the call behind
   ``stanflow features materialize``, repeated ``--mat-repeats`` times (the first into an empty
   store, the others over the same keys, as a daily run overwrites yesterday's). Reported as
   seconds and rows/s (rows = the day's user + item feature rows).
2. **Lookups through the SDK**: ``feature_repo.store.get_online_features(home, "user", ids)``,
   the call behind ``stanflow features get`` (Feast ``FeatureStore.get_online_features`` with
   every feature of ``user_lifecycle`` and ``user_activity``, 34 values per user), for 1 user and
   for 100 distinct users per call.
3. **Lookups over HTTP**: ``feast serve`` on 127.0.0.1 (a free port), POST
   ``/get-online-features`` with the same features and users, from one client on one persistent
   keep-alive connection (as a ranking service would hold one), the JSON response parsed.

Each latency series runs ``--warmup`` untimed calls first, then ``--requests-1`` (1 user) or
``--requests-100`` (100 users) timed calls, sequentially, on user ids drawn with ``--seed`` from
the users that exist that day. It reports p50 / p90 / p99 / mean / max in ms and checks the
targets: p99 <= 5 ms through the SDK on SQLite for one user, p99 <= 10 ms through the HTTP
feature server for one user. Redis is the one at ``--redis-url`` (default database 14); only keys
of the Feast project ``stanflow`` are written, and they are removed at the end.

Results: ``bench/results/feast.json`` and a plot beside it (``feast.png``). About 4-5 minutes
on 2 idle cores with the defaults; latencies measured on a busy machine are inflated (the JSON
records the load average before and after).

    python bench/feast_bench.py --out bench/results/feast.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import http.client
import json
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from machine import machine  # bench/machine.py (a script's own folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.feast")

PROJECT = b"stanflow"  # Feast project: Redis keys end with it
TARGETS = (  # (path, backend, users, statistic, target ms); the two, plus HTTP on Redis
    ("sdk", "sqlite", 1, "p99", 5.0),
    ("http", "sqlite", 1, "p99", 10.0),
    ("http", "redis", 1, "p99", 10.0),
)
# How the benchmark runs `feast serve`; the flags are recorded in the JSON. --max-requests 0:
# gunicorn's default (1000) restarts the only worker every ~1000 requests, and the request that
# arrives meanwhile waits 2-3 s for a new one (measured: `--serve-args --no-access-log`).
SERVE_ARGS = ("--workers", "1", "--max-requests", "0", "--no-access-log")

NOTES = [
    "SDK: feature_repo.store.get_online_features reuses one FeatureStore per home "
    "(store.serving_store); it used to open one per call (~14 ms p50 for one user).",
    "HTTP: feast serve --max-requests 0; with gunicorn's default of 1000 the single worker "
    "restarts every ~1000 requests and the request that waits for the new one takes 2-3 s.",
    "Materialization: every repeat starts from an empty online store; Feast's Redis store "
    "skips rows whose stored timestamp is not older, so a repeat of the same day would "
    "write nothing.",
    "cpu_* / client_cpu_* / server_cpu_*: CPU time of the calls; wall time far above it means "
    "the process waited for a core (a busy machine); cpu_pressure_some: share of the series' "
    "time in which some task on the machine waited for a CPU (Linux PSI), ~0 when idle.",
]


# -- the day's data --------------------------------------------------------------------------------
def prepare_world(root: Path, preset: str, day: str | None) -> tuple[Path, dt.date, dict]:
    """Simulate the world, build and validate one day; return (home, day, what it holds)."""
    import pyarrow.parquet as pq

    from feature_repo import layout
    from feature_repo.build import build_features
    from feature_repo.validate import validate_features
    from stan_model.data import raw_store
    from stan_model.data.simulator import write_world
    from stan_model.data.world_config import WorldConfig

    home = root / "world"
    t0 = time.perf_counter()
    report = write_world(WorldConfig.preset(preset), home, progress=True)
    days = raw_store.partition_days(home)
    the_day = dt.date.fromisoformat(day) if day else days[-1]
    if the_day not in days:
        raise SystemExit(
            f"--day {the_day} is not a day of the {preset} world ({days[0]}..{days[-1]})"
        )
    build_features(home, the_day)
    validate_features(home, the_day)
    # Feast imports its offline store (ibis, DuckDB), compute engine and online stores on first
    # use: import them here, so that the first timed materialization does not pay for it.
    import feast.infra.compute_engines.local.compute  # noqa: F401
    import feast.infra.offline_stores.duckdb  # noqa: F401
    import feast.infra.online_stores.redis  # noqa: F401
    import feast.infra.online_stores.sqlite  # noqa: F401

    users = pq.read_table(
        layout.feature_partition(home, layout.USER_TABLE, the_day), columns=["user_id"]
    )
    items = pq.ParquetFile(
        layout.feature_partition(home, layout.ITEM_TABLE, the_day)
    ).metadata.num_rows
    user_ids = sorted(users["user_id"].to_pylist())
    info = {
        "preset": preset,
        "day": the_day.isoformat(),
        "world_impressions": report.events,
        "users": len(user_ids),
        "items": items,
        "prepare_s": round(time.perf_counter() - t0, 1),
    }
    return home, the_day, {**info, "user_ids": user_ids}


def backend_home(world: Path, root: Path, backend: str) -> Path:
    """A copy of the world's home per online store (each gets its own registry)."""
    home = root / backend
    shutil.copytree(world, home, ignore=shutil.ignore_patterns("feast"))
    return home


def settings_for(home: Path, backend: str, redis_url: str):
    from stanflow.settings import Settings

    env = {"STANFLOW_HOME": str(home), "STANFLOW_ONLINE_STORE": backend}
    if backend == "redis":
        env["STANFLOW_REDIS_URL"] = redis_url
    return Settings.from_env(env), env


# -- Redis hygiene ---------------------------------------------------------------------------------
def redis_client(redis_url: str):
    """A client for ``host:port[,db=N][,password=...]`` (Feast's connection string)."""
    import redis

    host_port, *options = redis_url.split(",")
    host, _, port = host_port.partition(":")
    kwargs = dict(opt.split("=", 1) for opt in options if "=" in opt)
    return redis.Redis(
        host=host or "127.0.0.1",
        port=int(port or 6379),
        db=int(kwargs.get("db", 0)),
        password=kwargs.get("password"),
    )


def remove_project_keys(redis_url: str) -> int:
    """Delete the keys of Feast project ``stanflow`` (and nothing else) in the bench database."""
    client = redis_client(redis_url)
    removed = 0
    batch = []
    for key in client.scan_iter(count=5000):
        if key.endswith(PROJECT):
            batch.append(key)
            if len(batch) >= 5000:
                removed += client.delete(*batch)
                batch = []
    if batch:
        removed += client.delete(*batch)
    return removed


# -- measurements ----------------------------------------------------------------------------------
def summarize(
    wall_ms: list[float], cpu_ms: list[float], cpu_label: str, pressure: float | None
) -> dict:
    import numpy as np

    a, c = np.asarray(wall_ms), np.asarray(cpu_ms)
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "max_ms": round(float(a.max()), 3),
        f"{cpu_label}_p50_ms": round(float(np.percentile(c, 50)), 3),
        f"{cpu_label}_p99_ms": round(float(np.percentile(c, 99)), 3),
        "cpu_pressure_some": pressure,
    }


def series_name(users: int) -> str:
    return "1_user" if users == 1 else f"{users}_users"


def id_batches(user_ids: list[int], users: int, count: int, seed: int) -> list[list[int]]:
    """``count`` lists of ``users`` distinct existing user ids, the same for every path."""
    rng = random.Random(f"{seed}:{users}")
    return [rng.sample(user_ids, users) for _ in range(count)]


def cpu_stall_us() -> int | None:
    """Linux pressure stall information: microseconds in which some runnable task waited for a
    CPU, machine-wide, since boot (None where /proc/pressure is missing)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(first.rsplit("total=", 1)[1])


def time_calls(
    call: Callable[[list[int]], object], batches: list[list[int]], warmup: int, desc: str
) -> tuple[list[float], list[float], float | None]:
    """Wall-clock ms per call, and this thread's CPU ms per call (the part no other process on
    a busy machine can inflate; the gap between the two is waiting for a core or the server)."""
    from tqdm import tqdm

    for ids in batches[:warmup]:
        call(ids)
    gc.collect()
    wall, cpu = [], []
    stall0, start = cpu_stall_us(), time.perf_counter()
    for ids in tqdm(batches[warmup:], desc=desc, unit="req", leave=False, mininterval=1.0):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        call(ids)
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.thread_time() - c0) * 1000.0)
    stall1, elapsed = cpu_stall_us(), time.perf_counter() - start
    pressure = None
    if stall0 is not None and stall1 is not None:
        # Share of the series' time in which some task on this machine waited for a CPU.
        pressure = round((stall1 - stall0) / 1e6 / elapsed, 3)
    return wall, cpu, pressure


def clear_online_store(home: Path, backend: str, redis_url: str) -> None:
    """Empty the online store (not timed). Feast's Redis store skips a row whose stored timestamp
    is not older, so materializing the same day again would write nothing: each repeat starts
    from an empty store, like the first load of a day."""
    if backend == "sqlite":
        (home / "feast" / "online.db").unlink(missing_ok=True)  # what Feast's teardown does
    else:
        remove_project_keys(redis_url)


def materialize_repeats(home: Path, day: dt.date, settings, args, data: dict, desc: str) -> dict:
    from tqdm import tqdm

    from feature_repo.store import materialize

    backend = settings.online_store
    seconds = []
    for _ in tqdm(range(args.mat_repeats), desc=desc, unit="run"):
        clear_online_store(home, backend, args.redis_url)
        gc.collect()
        t0 = time.perf_counter()
        materialize(home, day, settings)
        seconds.append(time.perf_counter() - t0)
    os.sync()  # write back the new store now, not while the lookups are being timed
    median = statistics.median(seconds)
    return {
        "repeats": args.mat_repeats,
        "into": "an empty online store, every repeat",
        "seconds": [round(s, 2) for s in seconds],
        "median_s": round(median, 2),
        "rows_per_s": round(data["rows"] / median),
        "feature_view_rows_per_s": round(data["feature_view_rows"] / median),
        "feature_values_per_s": round(data["feature_values"] / median),
    }


def sdk_lookup(home: Path, settings, user_ids: list[int], day: dt.date, args) -> dict:
    """``feature_repo.store.get_online_features`` in this process, as `stanflow features get`."""
    from feature_repo.store import get_online_features

    def call(ids: list[int]) -> object:
        return get_online_features(home, "user", ids, settings)

    check = get_online_features(home, "user", user_ids[:3] + user_ids[-3:], settings)
    assert all(r["user_lifecycle__as_of_date"] == day.isoformat() for r in check), check
    out = {}
    for users, count in ((1, args.requests_1), (100, args.requests_100)):
        warmup = args.warmup if users == 1 else max(10, args.warmup // 10)
        batches = id_batches(user_ids, users, warmup + count, args.seed)
        name = series_name(users)
        wall, cpu, pressure = time_calls(
            call, batches, warmup, f"sdk_{settings.online_store} {name}"
        )
        out[name] = summarize(wall, cpu, "cpu", pressure)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FeatureServer:
    """``feast serve`` on 127.0.0.1 for one home; always stopped (process group) on exit."""

    def __init__(self, home: Path, env: dict, log_path: Path, serve_args: tuple[str, ...]):
        self.port = free_port()
        feast = str(Path(sys.executable).parent / "feast")
        command = [feast, "-c", str(REPO / "feature_repo")]
        if env["STANFLOW_ONLINE_STORE"] == "redis":
            command += ["-f", str(REPO / "feature_repo" / "feature_store.redis.yaml")]
        command += ["serve", "--host", "127.0.0.1", "--port", str(self.port), *serve_args]
        self.command = command
        shown = ["feast", "-c", "feature_repo"]
        if env["STANFLOW_ONLINE_STORE"] == "redis":
            shown += ["-f", "feature_repo/feature_store.redis.yaml"]
        self.shown = [*shown, "serve", "--host", "127.0.0.1", "--port", "<free port>", *serve_args]
        self.home, self.env, self.log_path = home, env, log_path
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def __enter__(self) -> FeatureServer:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- closed in __exit__
        t0 = time.perf_counter()
        self.process = subprocess.Popen(
            self.command,
            env={**os.environ, **self.env},
            cwd=self.home,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the gunicorn worker stops with it
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                    conn.request("GET", "/health")
                    if conn.getresponse().status == 200:
                        conn.close()
                        break
                    conn.close()
                except OSError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"feast serve did not come up on port {self.port}:\n"
                        + self.log_path.read_text(errors="replace")[-4000:]
                    )
                time.sleep(0.25)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.startup_s = round(time.perf_counter() - t0, 1)
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        self._log.close()

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server's processes (master and workers) so far."""
        try:
            import psutil

            master = psutil.Process(self.process.pid)
            total = 0.0
            for proc in [master, *master.children(recursive=True)]:
                times = proc.cpu_times()
                total += times.user + times.system
            return total
        except Exception:  # noqa: BLE001 -- an optional detail of the report
            return None

    def worker_restarts(self) -> int:
        return self.log_path.read_text(errors="replace").count("Maximum request limit")


class Client:
    """One persistent HTTP/1.1 connection (keep-alive); reconnects if the server drops it."""

    def __init__(self, port: int):
        self.port = port
        self.reconnects = 0
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: dict) -> dict:
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in (0, 1):
            try:
                self.conn.request("POST", path, body=payload, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                if attempt:
                    raise
                self.conn.close()
                self.reconnects += 1
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        if response.status != 200:
            raise RuntimeError(f"POST {path}: {response.status} {data[:500]!r}")
        return json.loads(data)

    def close(self) -> None:
        self.conn.close()


def http_lookup(
    home: Path, env: dict, user_ids: list[int], day: dt.date, args, log_dir: Path
) -> dict:
    from feature_repo.store import feature_refs

    refs = feature_refs("user")
    backend = env["STANFLOW_ONLINE_STORE"]
    with FeatureServer(
        home, env, log_dir / f"feast_serve_{backend}.log", args.serve_args
    ) as server:
        client = Client(server.port)
        try:

            def call(ids: list[int]) -> dict:
                body = {"features": refs, "entities": {"user_id": ids}, "full_feature_names": True}
                return client.post("/get-online-features", body)

            probe = user_ids[:3] + user_ids[-3:]
            response = call(probe)
            names = response["metadata"]["feature_names"]
            columns = dict(zip(names, response["results"], strict=True))
            assert len(names) == len(refs) + 1, names
            assert columns["user_lifecycle__as_of_date"]["values"] == [day.isoformat()] * len(probe)
            assert all(r["statuses"] == ["PRESENT"] * len(probe) for r in response["results"])
            out: dict = {"server_startup_s": server.startup_s, "command": " ".join(server.shown)}
            for users, count in ((1, args.requests_1), (100, args.requests_100)):
                warmup = args.warmup if users == 1 else max(10, args.warmup // 10)
                batches = id_batches(user_ids, users, warmup + count, args.seed)
                cpu0 = server.cpu_seconds()
                name = series_name(users)
                wall, cpu, pressure = time_calls(call, batches, warmup, f"http_{backend} {name}")
                series = summarize(wall, cpu, "client_cpu", pressure)
                if cpu0 is not None:  # the server's CPU per call (warm-up included)
                    used = server.cpu_seconds() - cpu0
                    series["server_cpu_mean_ms"] = round(used * 1000 / (warmup + count), 3)
                out[name] = series
            out["client_reconnects"] = client.reconnects
            out["server_worker_restarts"] = server.worker_restarts()
        finally:
            client.close()
    return out


# -- report ----------------------------------------------------------------------------------------
def check_targets(paths: dict) -> list[dict]:
    checks = []
    for path, backend, users, stat, target in TARGETS:
        series = paths.get(f"{path}_{backend}", {}).get(series_name(users))
        if not series:
            continue
        measured = series[f"{stat}_ms"]
        checks.append(
            {
                "name": f"{path}_{backend}_{users}_user_{stat}",
                "path": path,
                "online_store": backend,
                "users": users,
                "statistic": stat,
                "target_ms": target,
                "measured_ms": measured,
                "meets_target": measured <= target,
                "miss_ms": round(max(0.0, measured - target), 3),
                "measured_over_target": round(measured / target, 2),
            }
        )
    return checks


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = result["lookup"]
    labels = {
        "sdk_sqlite": "SDK\nSQLite",
        "sdk_redis": "SDK\nRedis",
        "http_sqlite": "HTTP\nSQLite",
        "http_redis": "HTTP\nRedis",
    }
    names = [n for n in labels if n in paths]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [3, 3, 2]})
    targets = {f"{c['path']}_{c['online_store']}": c["target_ms"] for c in result["targets"]}
    for ax, key, title in (
        (axes[0], "1_user", "1 user per lookup"),
        (axes[1], "100_users", "100 users per lookup"),
    ):
        x = range(len(names))
        p50 = [paths[n][key]["p50_ms"] for n in names]
        p99 = [paths[n][key]["p99_ms"] for n in names]
        ax.bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#4C72B0")
        ax.bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#DD8452")
        for i, (a, b) in enumerate(zip(p50, p99, strict=True)):
            ax.text(i - 0.2, a, f"{a:.1f}", ha="center", va="bottom", fontsize=8)
            ax.text(i + 0.2, b, f"{b:.1f}", ha="center", va="bottom", fontsize=8)
        if key == "1_user":
            for i, n in enumerate(names):
                if n in targets:
                    ax.hlines(
                        targets[n], i - 0.45, i + 0.45, colors="red", linestyles="--", linewidth=1.2
                    )
            ax.plot([], [], "r--", label="p99 target")
        top = max(p99 + [targets[n] for n in names if key == "1_user" and n in targets])
        ax.set_ylim(0, top * 1.3)  # room for the legend and the labels
        ax.set_xticks(list(x), [labels[n] for n in names])
        ax.set_ylabel("latency (ms)")
        ax.set_title(title)
        ax.legend(fontsize=8, loc="upper left")
    mat = result["materialization"]
    backends = [b for b in ("sqlite", "redis") if b in mat]
    rates = [mat[b]["rows_per_s"] for b in backends]
    axes[2].bar(backends, rates, color="#55A868")
    for i, r in enumerate(rates):
        axes[2].text(i, r, f"{r:,.0f}", ha="center", va="bottom", fontsize=8)
    data = result["data"]
    axes[2].set_title(
        f"materialization of {data['rows']:,} rows\n(median of {mat[backends[0]]['repeats']} runs)"
    )
    axes[2].set_ylabel("rows / s")
    fig.suptitle(
        f"Feast {result['feast_version']} online store, {data['preset']} world, day {data['day']} "
        f"({data['users']:,} users, {data['items']:,} items)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> dict:
    import feast

    from feature_repo.store import feature_refs

    backends = args.backends
    if "redis" in backends:  # fail now, not after the SQLite half has run
        try:
            redis_client(args.redis_url).ping()
        except Exception as exc:  # noqa: BLE001 -- any failure means no Redis to measure
            raise SystemExit(
                f"no Redis at {args.redis_url} ({exc}); start one or pass --backends sqlite"
            ) from exc
    loadavg_before = os.getloadavg()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="feast_bench_") as tmp:
        root = Path(tmp)
        world, day, info = prepare_world(root, args.preset, args.day)
        user_ids = info.pop("user_ids")
        rows = info["users"] + info["items"]
        data = {
            **info,
            "rows": rows,
            "feature_view_rows": 2 * info["users"] + info["items"],  # two user views, one item view
            "feature_values": info["users"] * len(feature_refs("user"))
            + info["items"] * len(feature_refs("item")),
            "user_features_per_lookup": len(feature_refs("user")),
        }
        log.info(
            "%s day %s: %s users, %s items (%.0f s to prepare)",
            args.preset,
            day,
            f"{info['users']:,}",
            f"{info['items']:,}",
            info["prepare_s"],
        )
        materialization: dict = {}
        lookup: dict = {}
        for backend in backends:
            home = backend_home(world, root, backend)
            settings, env = settings_for(home, backend, args.redis_url)
            if backend == "redis":
                remove_project_keys(args.redis_url)  # leftovers of an interrupted run
            try:
                materialization[backend] = materialize_repeats(
                    home, day, settings, args, data, f"materialize {backend}"
                )
                log.info("materialize %s: %s", backend, materialization[backend])
                lookup[f"sdk_{backend}"] = sdk_lookup(home, settings, user_ids, day, args)
                log.info("sdk %s: %s", backend, lookup[f"sdk_{backend}"])
                if not args.no_http:
                    lookup[f"http_{backend}"] = http_lookup(home, env, user_ids, day, args, root)
                    log.info("http %s: %s", backend, lookup[f"http_{backend}"])
            finally:
                if backend == "redis":
                    removed = remove_project_keys(args.redis_url)
                    log.info("redis: removed %d keys of project stanflow", removed)
            shutil.rmtree(home, ignore_errors=True)  # the SQLite file alone is ~0.4 GB
    order = ["sdk_sqlite", "sdk_redis", "http_sqlite", "http_redis"]
    lookup = {k: lookup[k] for k in order if k in lookup}
    result = {
        "feast_version": feast.__version__,
        "data": data,
        "materialization": materialization,
        "lookup": lookup,
    }
    result["targets"] = check_targets(lookup)
    result["settings"] = {
        "online_stores": backends,
        "redis_url": args.redis_url,
        "mat_repeats": args.mat_repeats,
        "requests_1_user": args.requests_1,
        "requests_100_users": args.requests_100,
        "warmup_1_user": args.warmup,
        "warmup_100_users": max(10, args.warmup // 10),
        "seed": args.seed,
        "feature_server_args": list(args.serve_args),
        "http_client": "http.client, one persistent keep-alive connection, JSON parsed",
        "sdk_call": 'feature_repo.store.get_online_features(home, "user", ids)',
        "lookup_features": "user_lifecycle + user_activity (every feature), full feature names",
        "registry_cache_ttl_seconds": 60,
        "entity_key_serialization_version": 3,
    }
    result["notes"] = NOTES
    result["loadavg_before"] = [round(x, 2) for x in loadavg_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="wechat", help="world to simulate: tiny, small or wechat (default)"
    )
    parser.add_argument(
        "--day", default=None, help="YYYY-MM-DD day to serve (default: the world's last day)"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["sqlite", "redis"],
        choices=["sqlite", "redis"],
        help="online stores to measure",
    )
    parser.add_argument(
        "--redis-url",
        default="127.0.0.1:6379,db=14",
        help="Redis for the Redis online store (host:port[,db=N])",
    )
    parser.add_argument(
        "--mat-repeats",
        type=int,
        default=3,
        help="materializations per store; the median is reported",
    )
    parser.add_argument(
        "--requests-1", type=int, default=2000, help="timed 1-user lookups per path"
    )
    parser.add_argument(
        "--requests-100", type=int, default=300, help="timed 100-user lookups per path"
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="untimed 1-user lookups first (100-user: a tenth)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the user ids looked up")
    parser.add_argument(
        "--no-http", action="store_true", help="skip the `feast serve` measurements"
    )
    parser.add_argument(
        "--serve-args",
        nargs=argparse.REMAINDER,
        default=list(SERVE_ARGS),
        help=f"flags for `feast serve` after --host/--port, the last option given "
        f"(default: {' '.join(SERVE_ARGS)})",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/feast.json"))
    args = parser.parse_args()
    args.serve_args = tuple(args.serve_args)
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # GX's imports, not ours
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("feast", "great_expectations", "feature_repo", "httpx", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    result = run(args)
    for check in result["targets"]:
        log.info(
            "%s: %.2f ms (target %.0f ms) %s",
            check["name"],
            check["measured_ms"],
            check["target_ms"],
            "met" if check["meets_target"] else f"MISSED by {check['miss_ms']:.2f} ms",
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "feast", "machine": machine(), "results": result}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    png = args.out.with_suffix(".png")
    plot(result, png)
    log.info("wrote %s and %s (%.0f s)", args.out, png, result["wall_s"])


if __name__ == "__main__":
    main()
