"""Run the Great Expectations suites, build Data Docs, and remember what passed.

``validate_features(home, day)`` checks day D's raw partition and both feature partitions. It
writes ``features/_validation/dt=D.json`` with the SHA-256 of every file it checked; the
materializer refuses a day unless that record passed for exactly the files there now, so a failed
suite stops the run before the online store changes (DESIGN.md, data flow step 3).

Each failure names the suite, the expectation and the column, e.g.
``user_features: expect_column_values_to_be_between failed on column 'ctr_7d': 3 of 400 values
unexpected, e.g. [1.5]``. Data Docs: ``$STANFLOW_HOME/gx/uncommitted/data_docs/local_site/``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from feature_repo import layout
from feature_repo.gx_runner import (
    Failure,
    FeatureValidationError,
    build_docs,
    frame_with_task_rates,
    gx_context,
    run_suite,
)
from feature_repo.suites import TASK_RATES, VOLUME_TOLERANCE
from stan_model.data import raw_store

__all__ = ["FeatureValidationError", "ValidationReport", "check_validated", "validate_features"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationReport:
    day: dt.date
    success: bool
    failures: list[Failure]
    data_docs: Path
    record: Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _volume_bounds(previous_rows: int | None) -> dict[str, int | None]:
    if previous_rows is None:
        return {"min_rows": 1, "max_rows": None}
    return {
        "min_rows": max(1, math.ceil(previous_rows * (1 - VOLUME_TOLERANCE))),
        "max_rows": math.floor(previous_rows * (1 + VOLUME_TOLERANCE)),
    }


def _rows(path: Path) -> int | None:
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else None


def _day_files(home: Path, day: dt.date) -> dict[str, Path]:
    return {
        "raw_events": raw_store.events_partition(home, day),
        layout.USER_TABLE: layout.feature_partition(home, layout.USER_TABLE, day),
        layout.ITEM_TABLE: layout.feature_partition(home, layout.ITEM_TABLE, day),
    }


def validate_features(
    home: str | Path, day: dt.date, now: dt.datetime | None = None, raise_on_failure: bool = True
) -> ValidationReport:
    """Validate day ``day``: the raw partition, then the user and item feature partitions.

    Records the outcome for :func:`check_validated`; raises :class:`FeatureValidationError`
    (unless ``raise_on_failure`` is false) when any expectation fails.
    """
    from feature_repo import suites

    home = Path(home)
    now = now or dt.datetime.now(dt.UTC)
    tasks = raw_store.read_manifest(home).tasks
    task_names = [t.name for t in tasks]
    files = _day_files(home, day)
    for what, path in files.items():
        if not path.exists():
            hint = (
                f"`stanflow features build --date {day}`"
                if what != "raw_events"
                else "`stanflow simulate`"
            )
            raise FileNotFoundError(f"{path}: no {what} partition for {day}; run {hint} first")
    day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    end_of_day = day_start + dt.timedelta(days=1)
    previous = day - dt.timedelta(days=1)
    previous_files = _day_files(home, previous)

    context = gx_context(home)
    results: list = []
    failures = run_suite(
        context,
        suites.raw_events_suite([t.column for t in tasks]),
        pq.read_table(files["raw_events"]).to_pandas(),
        {
            "day_start": day_start,
            "day_last": end_of_day - dt.timedelta(microseconds=1),
            "now": now,
            **_volume_bounds(_rows(previous_files["raw_events"])),
        },
        results,
    )
    for table, build_suite in (
        (layout.USER_TABLE, suites.user_features_suite),
        (layout.ITEM_TABLE, suites.item_features_suite),
    ):
        frame = frame_with_task_rates(pq.read_table(files[table]), TASK_RATES, task_names)
        failures += run_suite(
            context,
            build_suite(task_names),
            frame,
            {
                "as_of_dates": [day.isoformat()],
                "end_of_day": end_of_day,
                "now": now,
                **_volume_bounds(_rows(previous_files[table])),
            },
            results,
        )
    build_docs(context, results)
    docs = layout.data_docs_index(home)
    record = layout.validation_record(home, day)
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(f".{record.name}.tmp")
    tmp.write_text(
        json.dumps(
            {
                "day": day.isoformat(),
                "success": not failures,
                "validated_at": now.isoformat(),
                "files": {str(p): _sha256(p) for p in files.values()},
                "failures": [asdict(f) for f in failures],
                "data_docs": str(docs),
            },
            indent=2,
        )
        + "\n"
    )
    os.replace(tmp, record)
    report = ValidationReport(day, not failures, failures, docs, record)
    if failures:
        log.warning("validation of %s failed %d expectation(s)", day, len(failures))
        if raise_on_failure:
            raise FeatureValidationError(f"validation of {day}", failures, docs)
    else:
        log.info("validation of %s passed; Data Docs: %s", day, docs)
    return report


def check_validated(home: str | Path, day: dt.date) -> str | None:
    """None when day ``day`` passed validation on the files there now; else what is wrong."""
    home = Path(home)
    path = layout.validation_record(home, day)
    if not path.exists():
        return f"{day} has not been validated (no {path})"
    record = json.loads(path.read_text())
    if not record.get("success"):
        names = ", ".join(
            f"{f['expectation']} on {f['column'] or 'the table'}" for f in record["failures"][:3]
        )
        return f"the last validation of {day} failed ({names}; see {path})"
    for name, digest in record["files"].items():
        current = Path(name)
        if not current.exists() or _sha256(current) != digest:
            return f"{current} changed after it was validated"
    return None
