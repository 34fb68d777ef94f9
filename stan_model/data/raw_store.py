"""Partitioned Parquet I/O for the raw tables (layout in :mod:`stan_model.schema`).

Writes are atomic per file (temp file, then rename) and replace what was there, so writing a
day twice leaves one copy of it. Files are written byte-deterministically: same table, same bytes.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stan_model.schema import SchemaError, WorldManifest, read_table

PART_FILE = "part-0.parquet"


def events_dir(home: Path) -> Path:
    return Path(home) / "raw" / "events"


def events_partition(home: Path, day: dt.date) -> Path:
    return events_dir(home) / f"dt={day.isoformat()}" / PART_FILE


def truth_partition(home: Path, day: dt.date) -> Path:
    return Path(home) / "truth" / "user_stage" / f"dt={day.isoformat()}" / PART_FILE


def users_path(home: Path) -> Path:
    return Path(home) / "raw" / "users.parquet"


def items_path(home: Path) -> Path:
    return Path(home) / "raw" / "items.parquet"


def manifest_path(home: Path) -> Path:
    return Path(home) / "raw" / "_world.json"


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically, replacing any file there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # Fixed writer options: the bytes depend only on the table (determinism test relies on it).
    pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20, write_statistics=True)
    os.replace(tmp, path)


def write_manifest(home: Path, manifest: WorldManifest) -> None:
    path = manifest_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(manifest.to_json() + "\n")
    os.replace(tmp, path)


def read_manifest(home: Path) -> WorldManifest:
    path = manifest_path(home)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no raw world here. Create one with `stanflow simulate` or load a dataset "
            "with `stanflow load wechat|kuairand`."
        )
    try:
        return WorldManifest.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise SchemaError(path, None, f"unreadable world manifest: {exc}") from exc


def partition_days(home: Path) -> list[dt.date]:
    """The days that have an events partition, sorted."""
    root = events_dir(home)
    if not root.exists():
        return []
    days = []
    for child in root.iterdir():
        if child.name.startswith("dt=") and (child / PART_FILE).exists():
            try:
                days.append(dt.date.fromisoformat(child.name[3:]))
            except ValueError as exc:
                raise SchemaError(
                    child, None, "partition folder is not named dt=YYYY-MM-DD"
                ) from exc
    return sorted(days)


def read_events(home: Path, days: Iterable[dt.date] | None = None) -> pa.Table:
    """Events of the given days (all days when None), schema-checked, in one table."""
    days = partition_days(home) if days is None else list(days)
    tables = [read_table(events_partition(home, d), "events") for d in days]
    if not tables:
        raise FileNotFoundError(f"{events_dir(home)}: no event partitions")
    return pa.concat_tables(tables)
