"""The raw-data contract: one pyarrow schema per table, enforced on read.

Layout under ``$STANFLOW_HOME/raw/``::

    raw/events/dt=YYYY-MM-DD/part-0.parquet   impression log, one partition per day
    raw/users.parquet                         one row per user
    raw/items.parquet                         one row per item
    raw/_world.json                           where the data came from and its task set
    truth/user_stage/dt=YYYY-MM-DD/part-0.parquet   simulator only: latent stage per user-day

Every impression row carries the three labels of the default task set (``click``,
``stay_seconds``, ``order``); a dataset may add further integer label columns (WeChat's ``like``,
``click_avatar``, ``forward``) and names its tasks in ``_world.json`` (see :class:`TaskSpec`).
Reading a file checks it against the schema and raises :class:`SchemaError` naming the file and
the column at fault. Lossless widening (int32 -> int64, float32 -> float64 ...) is accepted and
cast; anything else is refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# Lifecycle stages, in lifecycle order. ``churned`` exists only in the simulator's truth table: a
# churned user has no impressions, so no model ever sees one.
LIFECYCLE_STAGES: tuple[str, ...] = ("new", "wander", "stick", "loyal")
TRUTH_STAGES: tuple[str, ...] = LIFECYCLE_STAGES + ("churned",)

TS = pa.timestamp("us", tz="UTC")

EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),  # unique across the whole log
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("event_ts", TS, nullable=False),  # impression time; its UTC date is the partition
        pa.field("position", pa.int16(), nullable=False),  # rank of the impression in its session
        pa.field("click", pa.int8(), nullable=False),  # 0/1
        pa.field("stay_seconds", pa.float32(), nullable=False),  # dwell on the item; 0 if none
        pa.field("order", pa.int8(), nullable=False),  # 0/1 conversion (implies click)
    ]
)

USERS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("signup_ts", TS, nullable=False),
        # Static, coarse profile attributes (-1 = unknown). Never the latent stage.
        pa.field("age_bucket", pa.int8(), nullable=False),
        pa.field("gender", pa.int8(), nullable=False),
        pa.field("device_os", pa.int8(), nullable=False),
        pa.field("city_tier", pa.int8(), nullable=False),
    ]
)

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("category_id", pa.int32(), nullable=False),  # -1 = unknown
        pa.field("author_id", pa.int64(), nullable=False),  # -1 = unknown
        pa.field("duration_s", pa.float32(), nullable=False),  # content length; 0 = unknown
        pa.field("price", pa.float32(), nullable=False),  # 0 = not for sale / unknown
        pa.field("created_ts", TS, nullable=False),
    ]
)

TRUTH_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("dt", pa.date32(), nullable=False),
        pa.field("latent_stage", pa.int8(), nullable=False),  # index into TRUTH_STAGES
        pa.field("engagement", pa.float32(), nullable=False),  # the chain's driving signal
    ]
)

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "events": EVENTS_SCHEMA,
    "users": USERS_SCHEMA,
    "items": ITEMS_SCHEMA,
    "truth": TRUTH_SCHEMA,
}

# Extra label columns a dataset may add to the events table must be one of these types.
EXTRA_LABEL_TYPES = (pa.int8(), pa.int16(), pa.int32(), pa.int64())


class SchemaError(ValueError):
    """A raw file does not meet the contract. Names the file and the column."""

    def __init__(self, path: str | Path, column: str | None, problem: str):
        self.path = str(path)
        self.column = column
        self.problem = problem
        where = f"{self.path}, column '{column}'" if column else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task: which events column is its label, and how it becomes 0/1.

    ``threshold`` turns a numeric column into a label (``stay``: ``stay_seconds >= 30``); without
    it the column must already be 0/1.
    """

    name: str
    column: str
    threshold: float | None = None


DEFAULT_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("ctr", "click"),
    TaskSpec("stay", "stay_seconds", threshold=30.0),
    TaskSpec("cvr", "order"),
)


@dataclass
class WorldManifest:
    """``raw/_world.json``: where the raw data came from and what its tasks are."""

    source: str  # "simulator", "wechat", "kuairand"
    tasks: list[TaskSpec]
    start_date: str  # first partition, YYYY-MM-DD
    end_date: str  # last partition, inclusive
    n_users: int
    n_items: int
    n_events: int
    extra_label_columns: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)  # source-specific (config, seed, files read)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WorldManifest:
        raw = json.loads(text)
        raw["tasks"] = [TaskSpec(**t) for t in raw["tasks"]]
        return cls(**raw)


def _widens_to(actual: pa.DataType, expected: pa.DataType) -> bool:
    """True when ``actual`` casts to ``expected`` without loss."""
    if actual.equals(expected):
        return True
    if pa.types.is_integer(actual) and pa.types.is_integer(expected):
        return actual.bit_width <= expected.bit_width and (
            pa.types.is_signed_integer(expected) or not pa.types.is_signed_integer(actual)
        )
    if pa.types.is_floating(expected) and (
        pa.types.is_integer(actual) or pa.types.is_floating(actual)
    ):
        return True  # counts and float32/64 measurements: precision is not the contract
    if pa.types.is_timestamp(actual) and pa.types.is_timestamp(expected):
        return actual.tz is not None  # naive timestamps are ambiguous; refuse them
    return False


def conform(
    table: pa.Table, schema: pa.Schema, path: str | Path, extra_labels: bool = False
) -> pa.Table:
    """Check ``table`` against ``schema`` and return it cast and ordered as the schema says.

    With ``extra_labels``, columns beyond the schema are kept when they are integers (extra task
    labels); otherwise they are dropped.
    """
    columns, fields = [], []
    for f in schema:
        if f.name not in table.column_names:
            raise SchemaError(
                path, f.name, f"missing column (expected {f.type}); found {table.column_names}"
            )
        col = table.column(f.name)
        if not _widens_to(col.type, f.type):
            raise SchemaError(path, f.name, f"has type {col.type}, expected {f.type}")
        if not f.nullable and col.null_count:
            raise SchemaError(
                path, f.name, f"{col.null_count} null value(s) in a non-nullable column"
            )
        columns.append(col.cast(f.type) if not col.type.equals(f.type) else col)
        fields.append(f)
    if extra_labels:
        for name in table.column_names:
            if name in schema.names:
                continue
            col = table.column(name)
            if not any(col.type.equals(t) for t in EXTRA_LABEL_TYPES):
                raise SchemaError(
                    path, name, f"extra label column has type {col.type}; expected an integer"
                )
            if col.null_count:
                raise SchemaError(path, name, f"{col.null_count} null value(s) in a label column")
            columns.append(col.cast(pa.int8()))
            fields.append(pa.field(name, pa.int8(), nullable=False))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def read_table(path: str | Path, table: str) -> pa.Table:
    """Read one Parquet file of ``table`` (events, users, items, truth); enforce its schema."""
    path = Path(path)
    if not path.exists():
        raise SchemaError(path, None, f"no such file (expected the '{table}' table)")
    try:
        data = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise SchemaError(path, None, f"not a readable Parquet file: {exc}") from exc
    return conform(data, TABLE_SCHEMAS[table], path, extra_labels=(table == "events"))


def task_labels(events: pa.Table, task: TaskSpec) -> pa.Array:
    """The 0/1 label of ``task`` for every row of ``events`` (int8)."""
    col = events.column(task.column)
    if task.threshold is None:
        return pc.cast(col, pa.int8()).combine_chunks()
    return pc.cast(pc.greater_equal(col, task.threshold), pa.int8()).combine_chunks()
