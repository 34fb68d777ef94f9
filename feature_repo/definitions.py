"""STAN's lifecycle features, declared for Feast: entities -> sources -> views -> services.

Everything here is declarative (the ``feast init`` template's shape). The tables are computed by
``build.py`` from the raw events, one Parquet partition per day under ``$STANFLOW_HOME/features/``.
A row describes its entity as of the *end* of day D, so its ``event_timestamp`` is midnight UTC
starting D+1: an impression on day D+1 sees it, an impression on day D never does. ``ttl`` is one
day, so a point-in-time join takes exactly yesterday's row or nothing (never an older one).

Rates are per impression (CTR, long-stay rate, CVR), 0 where there were no impressions.
``task_rates_30d`` holds the per-task label rates of the world's tasks, in the order of
``raw/_world.json``: STAN's pseudo-labels (the mean of earlier labels, 30-day window).
"""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Array, Float64, Int64, String

from feature_repo.layout import ITEM_TABLE, USER_TABLE, feature_glob
from stanflow.settings import get_settings

# Trailing windows ending with day D inclusive (1 = day D alone).
WINDOWS_DAYS = (1, 7, 30)
# Per-user counts over each window; sessions are counted per day.
USER_COUNTS = ("impressions", "clicks", "long_stays", "orders", "sessions")
USER_RATES = ("ctr", "long_stay_rate", "cvr")
# A row is valid for one day: the next day's build supersedes it (see the module docstring).
ROW_TTL = timedelta(days=1)

# Paths point into the data home of whoever applies the repo (`feast apply` or stanflow's own
# apply, which points them at the home it is given): the registry lives in that home too.
_HOME = get_settings().home

# -- entities ------------------------------------------------------------------------------------
user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A person shown impressions (raw/users.parquet user_id).",
)
item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.INT64,
    description="A piece of content that can be shown (raw/items.parquet item_id).",
)

# -- sources -------------------------------------------------------------------------------------
user_features_source = FileSource(
    name=USER_TABLE,
    path=feature_glob(_HOME, USER_TABLE),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="One row per user signed up by the end of day D, partitioned by D.",
)
item_features_source = FileSource(
    name=ITEM_TABLE,
    path=feature_glob(_HOME, ITEM_TABLE),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    description="One row per item created by the end of day D, partitioned by D.",
)

# -- views ---------------------------------------------------------------------------------------
user_lifecycle = FeatureView(
    name="user_lifecycle",
    entities=[user],
    ttl=ROW_TTL,
    schema=[
        Field(name="as_of_date", dtype=String, description="Day D these values describe."),
        Field(name="tenure_days", dtype=Int64, description="D minus the signup date."),
        Field(
            name="days_since_last_impression",
            dtype=Int64,
            description="0..29; 30 = no impression in the 30-day window.",
        ),
        Field(
            name="days_since_last_click",
            dtype=Int64,
            description="0..29; 30 = no click in the 30-day window.",
        ),
        Field(
            name="lifecycle_stage",
            dtype=String,
            description="Rule-based stage: new, wander, stick, loyal, or unscored.",
        ),
        Field(
            name="lifecycle_stage_id",
            dtype=Int64,
            description="Index into stan_model.schema.LIFECYCLE_STAGES; -1 = unscored.",
        ),
        Field(
            name="task_rates_30d",
            dtype=Array(Float64),
            description="Per-task label rate over 30 days, in raw/_world.json task order.",
        ),
    ],
    source=user_features_source,
    online=True,
    tags={"team": "recsys", "entity": "user"},
)

user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=ROW_TTL,
    schema=[
        *[Field(name=f"{c}_{w}d", dtype=Int64) for w in WINDOWS_DAYS for c in USER_COUNTS],
        *[Field(name=f"dwell_seconds_{w}d", dtype=Float64) for w in WINDOWS_DAYS],
        *[Field(name=f"{r}_{w}d", dtype=Float64) for w in WINDOWS_DAYS for r in USER_RATES],
    ],
    source=user_features_source,
    online=True,
    tags={"team": "recsys", "entity": "user"},
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=ROW_TTL,
    schema=[
        Field(name="as_of_date", dtype=String, description="Day D these values describe."),
        Field(name="age_days", dtype=Int64, description="D minus the item's creation date."),
        *[Field(name=f"impressions_{w}d", dtype=Int64) for w in WINDOWS_DAYS],
        *[Field(name=f"clicks_{w}d", dtype=Int64) for w in WINDOWS_DAYS],
        Field(name="users_7d", dtype=Int64, description="Distinct users shown it in 7 days."),
        Field(name="ctr_7d", dtype=Float64),
        Field(name="ctr_30d", dtype=Float64),
        Field(name="long_stay_rate_30d", dtype=Float64),
        Field(name="cvr_30d", dtype=Float64),
        Field(
            name="dwell_seconds_per_click_30d",
            dtype=Float64,
            description="Mean stay after a click; 0 without clicks.",
        ),
        Field(
            name="task_rates_30d",
            dtype=Array(Float64),
            description="Per-task label rate over 30 days, in raw/_world.json task order.",
        ),
    ],
    source=item_features_source,
    online=True,
    tags={"team": "recsys", "entity": "item"},
)

# -- services: one per model version -------------------------------------------------------------
stan_v1 = FeatureService(
    name="stan_v1",
    features=[user_lifecycle, user_activity, item_stats],
    description=(
        "Model version 1: the inputs of STAN and of its PLE baseline. Both get the same "
        "features (pseudo-label rates included) so the comparison is fair."
    ),
    tags={"model_version": "1"},
)
