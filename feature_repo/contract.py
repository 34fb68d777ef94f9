"""The offline feature tables' Arrow schemas, derived from the Feast views (one source of truth).

``build.py`` casts what its SQL produces to these schemas before writing, and the Great
Expectations suites check every partition against them, so a view and its table cannot drift.
"""

from __future__ import annotations

import pyarrow as pa
from feast import FeatureView
from feast.types import Array, Float64, Int64, String

from feature_repo import definitions as d
from feature_repo.layout import ITEM_TABLE, USER_TABLE

TS = pa.timestamp("us", tz="UTC")

# The views each offline table feeds, in column order.
TABLE_VIEWS: dict[str, tuple[FeatureView, ...]] = {
    USER_TABLE: (d.user_lifecycle, d.user_activity),
    ITEM_TABLE: (d.item_stats,),
}
TABLE_KEYS: dict[str, str] = {USER_TABLE: "user_id", ITEM_TABLE: "item_id"}

_ARROW_TYPES = {
    Int64: pa.int64(),
    Float64: pa.float64(),
    String: pa.string(),
    Array(Float64): pa.list_(pa.float64()),
}


def arrow_type(feast_type) -> pa.DataType:
    try:
        return _ARROW_TYPES[feast_type]
    except KeyError:
        raise TypeError(
            f"feature type {feast_type} has no Arrow mapping in feature_repo/contract.py; "
            "add it there before using it in a view"
        ) from None


def table_schema(table: str) -> pa.Schema:
    """Key, ``event_timestamp``, then every feature of the table's views (no duplicates)."""
    fields = [pa.field(TABLE_KEYS[table], pa.int64(), nullable=False)]
    fields.append(pa.field("event_timestamp", TS, nullable=False))
    seen = {f.name for f in fields}
    for view in TABLE_VIEWS[table]:
        for feature in view.features:
            if feature.name in seen:
                continue
            seen.add(feature.name)
            fields.append(pa.field(feature.name, arrow_type(feature.dtype), nullable=False))
    return pa.schema(fields)
