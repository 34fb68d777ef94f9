"""Running a Great Expectations suite on a frame, and saying what failed in plain words.

The GX project lives under ``$STANFLOW_HOME/gx`` (a file context, so results and Data Docs
persist); suites, validation definitions and checkpoints are stored once and replaced only when
the suite's code changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from feature_repo import layout
from feature_repo.suites import TASK_RATES, task_rate_columns


@dataclass(frozen=True)
class Failure:
    """One failed expectation: which suite, which expectation, which column, what was seen."""

    suite: str
    expectation: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        where = f"column '{self.column}'" if self.column else "the table"
        return f"{self.suite}: {self.expectation} failed on {where}: {self.detail}"


class FeatureValidationError(ValueError):
    """A suite failed. ``failures`` lists every failed expectation."""

    def __init__(self, what: str, failures: list[Failure], data_docs: Path):
        self.failures = failures
        self.data_docs = data_docs
        lines = "\n".join(f"  - {f}" for f in failures)
        super().__init__(
            f"{what} failed {len(failures)} expectation(s); nothing was materialized.\n{lines}\n"
            f"Details in the Data Docs: {data_docs}"
        )


def gx_context(home: Path):
    """The GX file context of ``home`` (created on first use), without progress bars."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(layout.gx_root(home)))
    bars = context.variables.progress_bars
    if bars is None or (bars.get("globally") if isinstance(bars, dict) else bars.globally):
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def _detail(result: Any) -> str:
    """A short account of what an expectation saw (unexpected values, observed value, error)."""
    info = result.exception_info or {}
    errors = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
    if info.get("raised_exception"):
        errors.append(info.get("exception_message"))
    errors = [e for e in errors if e]
    if errors:
        return f"could not be evaluated: {errors[0]}"
    r = result.result or {}
    mismatched = (r.get("details") or {}).get("mismatched")
    if mismatched:  # column-set expectations: say which columns, not the whole list
        return ", ".join(f"{k} {v}" for k, v in mismatched.items() if v)
    if "unexpected_count" in r:
        sample = r.get("partial_unexpected_list") or []
        total = r.get("element_count")
        of = f" of {total}" if total is not None else ""
        return f"{r['unexpected_count']}{of} values unexpected, e.g. {sample[:3]}"
    if "observed_value" in r:
        kwargs = result.expectation_config.kwargs
        keys = ("min_value", "max_value", "value_set", "type_")
        bounds = {k: kwargs[k] for k in keys if k in kwargs}
        return f"observed {r['observed_value']!r}, expected {bounds}"
    if result.expectation_config.type == "expect_column_to_exist":
        return "no such column"
    return "failed"


def _fingerprint(suite) -> str:
    configs = [e.configuration.to_json_dict() for e in suite.expectations]
    return hashlib.sha256(json.dumps(configs, sort_keys=True, default=str).encode()).hexdigest()


def _checkpoint(context, suite, batch):
    """The suite's checkpoint, stored once and replaced only when the suite's code changed.

    (GX's ``add_or_update`` compares expectations pairwise, which costs seconds per run.)
    """
    import great_expectations as gx
    from great_expectations.exceptions import DataContextError

    name = suite.name
    fingerprint = _fingerprint(suite)
    try:
        stored = context.suites.get(name)
        checkpoint = context.checkpoints.get(name)
        if stored.meta.get("stanflow_fingerprint") == fingerprint:
            return checkpoint
    except DataContextError:
        pass
    for store in (context.checkpoints, context.validation_definitions, context.suites):
        with contextlib.suppress(DataContextError):
            store.delete(name)
    suite.meta["stanflow_fingerprint"] = fingerprint
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    return context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            # No UpdateDataDocsAction: validate_features builds the docs once for all suites.
        )
    )


def run_suite(
    context, suite, frame, parameters: Mapping[str, Any] | None = None, results: list | None = None
) -> list[Failure]:
    """Validate ``frame`` (pandas) with ``suite``; the failed expectations, in suite order.

    The stored result's identifier is appended to ``results`` (for :func:`build_docs`).
    """

    with contextlib.redirect_stdout(io.StringIO()):  # GX prints its datasource list
        source = context.data_sources.add_or_update_pandas("stanflow")
    name = suite.name
    asset = next((a for a in source.assets if a.name == name), None) or (
        source.add_dataframe_asset(name)
    )
    batch = next(iter(asset.batch_definitions), None) or (
        asset.add_batch_definition_whole_dataframe("whole_frame")
    )
    checkpoint = _checkpoint(context, suite, batch)
    # Under copy-on-write the full-frame copies GX's pandas engine makes per metric (e.g.
    # ``df[df[col].notnull()]`` with no nulls copies every column) are lazy: the suite of a
    # 450k-row training set took 6-8 s instead of 20-27 s on a busy 2-core machine. Nothing
    # here writes into a copy, and the results are identical.
    with pd.option_context("mode.copy_on_write", True):
        outcome = checkpoint.run(
            batch_parameters={"dataframe": frame}, expectation_parameters=dict(parameters or {})
        )
    failures = []
    if results is not None:
        results.extend(outcome.run_results)
    for run in outcome.run_results.values():
        for result in run.results:
            if result.success:
                continue
            kwargs = result.expectation_config.kwargs
            column = kwargs.get("column") or (
                ", ".join(kwargs["column_list"]) if "column_list" in kwargs else None
            )
            if column is None and "column_A" in kwargs:
                column = f"{kwargs['column_A']} > {kwargs['column_B']}"
            failures.append(Failure(name, result.expectation_config.type, column, _detail(result)))
    return failures


def build_docs(context, results: list) -> None:
    """Render the new validation results (and the index) into the Data Docs site."""
    context.build_data_docs(resource_identifiers=results)


def _as_tuple(values) -> tuple | None:
    """A list cell (an ndarray from ``to_pandas``, or a list) as a tuple of plain Python values."""
    if values is None:
        return None
    return tuple(values.tolist() if hasattr(values, "tolist") else values)


def frame_with_task_rates(table: pa.Table, column: str, tasks: list[str]):
    """``table`` as pandas plus one ``<column>.<task>`` column per task (None where missing).

    List columns are kept with each list as a tuple of the same values: GX fingerprints every
    batch with pandas' hash, which cannot hash lists (nor arrays) and then pickles the whole frame
    instead (6 s rather than 1 s on a 450k-row training set).
    """
    frame = table.to_pandas()
    if column in frame.columns:
        lists = frame[column].tolist()
        for k, name in enumerate(task_rate_columns(tasks)):
            values = [v[k] if v is not None and len(v) == len(tasks) else None for v in lists]
            frame[name.replace(TASK_RATES, column)] = values
    for field in table.schema:
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            frame[field.name] = pd.Series(
                [_as_tuple(v) for v in frame[field.name].tolist()], index=frame.index, dtype=object
            )
    return frame
