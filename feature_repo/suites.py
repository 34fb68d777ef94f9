"""Great Expectations 1.x suites as code: the raw partition, a day's features, the training set.

Each suite is built from the data contracts (``stan_model.schema`` for raw events,
``feature_repo.contract`` for the feature tables), so a new column is checked without editing
this file. What varies per run -- the day's bounds, the previous day's row count, "now" -- is a
suite parameter (``{"$PARAMETER": name}``), filled in by :mod:`feature_repo.validate`.

The frames validated are pandas views of the Parquet files *as written* (not cast to the
contract), so a wrong dtype shows up here rather than being silently converted. List columns
(``task_rates_30d``) are also validated element by element through one derived column per task,
named ``task_rates_30d.<task>``.
"""

from __future__ import annotations

from collections.abc import Iterable

import great_expectations as gx
import great_expectations.expectations as gxe
import pyarrow as pa

from feature_repo.contract import table_schema
from feature_repo.definitions import USER_COUNTS, USER_RATES, WINDOWS_DAYS
from feature_repo.layout import ITEM_TABLE, USER_TABLE
from stan_model.schema import EVENTS_SCHEMA, LIFECYCLE_STAGES

# A day's row count may move this much (relative) against the previous day's before it is an
# error: worlds grow and shrink by a few percent a day; a broken export loses most of a day.
VOLUME_TOLERANCE = 0.5
TASK_RATES = "task_rates_30d"


def param(name: str) -> dict[str, str]:
    """A suite parameter: the value comes with each run (``expectation_parameters``)."""
    return {"$PARAMETER": name}


def gx_type(arrow: pa.DataType) -> str:
    """The type name GX's pandas check observes for a column of this Arrow type."""
    if pa.types.is_timestamp(arrow):
        return "Timestamp"  # tz-aware: GX checks the element type; the bounds check the zone
    if pa.types.is_string(arrow):
        return "str"
    if pa.types.is_list(arrow):
        return "object"  # the elements are checked through the derived per-task columns
    return str(arrow.to_pandas_dtype().__name__)


def task_rate_columns(tasks: Iterable[str]) -> list[str]:
    return [f"{TASK_RATES}.{t}" for t in tasks]


def _schema_expectations(schema: pa.Schema, extra: list[str]) -> list[gxe.Expectation]:
    out: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*schema.names, *extra], exact_match=True)
    ]
    for f in schema:
        out.append(gxe.ExpectColumnToExist(column=f.name))
        out.append(gxe.ExpectColumnValuesToBeOfType(column=f.name, type_=gx_type(f.type)))
        if not f.nullable:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=f.name))
    return out


def _volume() -> gxe.Expectation:
    # min_rows is at least 1: an empty partition always fails.
    return gxe.ExpectTableRowCountToBeBetween(
        min_value=param("min_rows"), max_value=param("max_rows")
    )


def raw_events_suite(task_columns: Iterable[str]) -> gx.ExpectationSuite:
    """One day's raw impression partition (``raw/events/dt=D``)."""
    expectations = [  # datasets may add label columns: no exact column set here
        e
        for e in _schema_expectations(EVENTS_SCHEMA, [])
        if not isinstance(e, gxe.ExpectTableColumnsToMatchSet)
    ]
    for column in sorted(set(task_columns) - set(EVENTS_SCHEMA.names)):
        expectations.append(gxe.ExpectColumnToExist(column=column))
        expectations.append(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[0, 1]))
    expectations += [
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToBeBetween(column="stay_seconds", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="position", min_value=0),
        gxe.ExpectColumnValuesToBeInSet(column="click", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeInSet(column="order", value_set=[0, 1]),
        # Every impression lies in its partition's UTC day, and none lies in the future.
        gxe.ExpectColumnValuesToBeBetween(
            column="event_ts", min_value=param("day_start"), max_value=param("day_last")
        ),
        gxe.ExpectColumnMaxToBeBetween(column="event_ts", max_value=param("now")),
        _volume(),
    ]
    return gx.ExpectationSuite(name="raw_events", expectations=expectations)


def is_rate(feature: str) -> bool:
    """Whether a feature (or a derived ``task_rates_30d.<task>`` column) is a rate in [0, 1]."""
    return feature.startswith(tuple(f"{r}_" for r in USER_RATES)) or feature.startswith(
        f"{TASK_RATES}."
    )


def _ratio(column: str) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0.0, max_value=1.0)


def _non_negative(column: str) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0)


def _day_keys(key: str) -> list[gxe.Expectation]:
    """One row per (entity, day), stamped with the end of the day, never in the future."""
    return [
        gxe.ExpectCompoundColumnsToBeUnique(column_list=[key, "as_of_date"]),
        gxe.ExpectColumnValuesToBeInSet(column="as_of_date", value_set=param("as_of_dates")),
        gxe.ExpectColumnValuesToBeBetween(
            column="event_timestamp", min_value=param("end_of_day"), max_value=param("end_of_day")
        ),
        gxe.ExpectColumnMaxToBeBetween(column="event_timestamp", max_value=param("now")),
    ]


def user_features_suite(tasks: list[str]) -> gx.ExpectationSuite:
    expectations = _schema_expectations(table_schema(USER_TABLE), task_rate_columns(tasks))
    expectations += _day_keys("user_id")
    for w in WINDOWS_DAYS:
        expectations += [_non_negative(f"{c}_{w}d") for c in (*USER_COUNTS, "dwell_seconds")]
        expectations += [_ratio(f"{r}_{w}d") for r in USER_RATES]
        expectations.append(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=f"impressions_{w}d", column_B=f"clicks_{w}d", or_equal=True
            )
        )
    expectations += [_ratio(c) for c in task_rate_columns(tasks)]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in task_rate_columns(tasks)]
    expectations += [
        _non_negative("tenure_days"),
        gxe.ExpectColumnValuesToBeBetween(
            column="days_since_last_impression", min_value=0, max_value=max(WINDOWS_DAYS)
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="days_since_last_click", min_value=0, max_value=max(WINDOWS_DAYS)
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="lifecycle_stage", value_set=[*LIFECYCLE_STAGES, "unscored"]
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="lifecycle_stage_id", value_set=[-1, *range(len(LIFECYCLE_STAGES))]
        ),
        _volume(),
    ]
    return gx.ExpectationSuite(name=USER_TABLE, expectations=expectations)


def item_features_suite(tasks: list[str]) -> gx.ExpectationSuite:
    expectations = _schema_expectations(table_schema(ITEM_TABLE), task_rate_columns(tasks))
    expectations += _day_keys("item_id")
    expectations += [
        _non_negative(f"{c}_{w}d") for c in ("impressions", "clicks") for w in WINDOWS_DAYS
    ]
    expectations += [
        _non_negative("users_7d"),
        _non_negative("age_days"),
        _non_negative("dwell_seconds_per_click_30d"),
        *[_ratio(c) for c in ("ctr_7d", "ctr_30d", "long_stay_rate_30d", "cvr_30d")],
        *[_ratio(c) for c in task_rate_columns(tasks)],
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in task_rate_columns(tasks)],
        _volume(),
    ]
    return gx.ExpectationSuite(name=ITEM_TABLE, expectations=expectations)


def training_set_suite(tasks: list[str], feature_columns: list[str]) -> gx.ExpectationSuite:
    """Impressions of the window joined to yesterday's features (``training.py``)."""
    expectations: list[gxe.Expectation] = [
        gxe.ExpectColumnValuesToNotBeNull(column="event_id"),
        gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="user_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id"),
        gxe.ExpectColumnValuesToBeBetween(
            column="event_timestamp",
            min_value=param("window_start"),
            max_value=param("window_last"),
        ),
        # Point in time: every feature row describes a day strictly before the impression's.
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="event_date", column_B="user_lifecycle__as_of_date"
        ),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="event_date", column_B="item_stats__as_of_date"
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ]
    for task in tasks:
        expectations.append(
            gxe.ExpectColumnValuesToBeInSet(column=f"label_{task}", value_set=[0, 1])
        )
    for column in feature_columns:
        expectations.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
        if is_rate(column.split("__", 1)[-1]):
            expectations.append(_ratio(column))
    return gx.ExpectationSuite(name="training_set", expectations=expectations)
