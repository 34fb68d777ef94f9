"""Where the feature store keeps its files under ``$STANFLOW_HOME`` (never inside the checkout).

::

    features/user_features/dt=YYYY-MM-DD/part-0.parquet   one row per user known at the end of D
    features/item_features/dt=YYYY-MM-DD/part-0.parquet   one row per item known at the end of D
    features/_validation/dt=YYYY-MM-DD.json               the last validation of day D
    features/_rollups/<rollup>/dt=YYYY-MM-DD/part-0.arrow
                                                          the build's cache of raw day D aggregated
                                                          (build.py): user_day, item_day,
                                                          item_user_day, item_reach_day, each
                                                          recording the raw partitions it came from
    feast/feature_store.yaml                              the rendered Feast config this home uses
    feast/registry.db, feast/online.db                    Feast registry and SQLite online store
    gx/                                                   Great Expectations project; Data Docs in
                                                          gx/uncommitted/data_docs/local_site/
    training/<start>_<end>/training_set.parquet            point-in-time training sets
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

PART_FILE = "part-0.parquet"
ROLLUP_FILE = "part-0.arrow"  # Arrow IPC: a cache mapped back without copying (build.py)
# The offline tables, named as their Feast sources are (definitions.py).
USER_TABLE = "user_features"
ITEM_TABLE = "item_features"
FEATURE_TABLES = (USER_TABLE, ITEM_TABLE)
# The build's per-raw-day rollups (feature_repo/build.py): per (user, day), per (item, day), the
# distinct (item, user) pairs of a day, and per (item, day) the users not seen with the item on
# the 1..6 days before (the only rollup read from more than its own raw day: 7 of them).
USER_DAY_ROLLUP = "user_day"
ITEM_DAY_ROLLUP = "item_day"
ITEM_USER_DAY_ROLLUP = "item_user_day"
ITEM_REACH_DAY_ROLLUP = "item_reach_day"
ROLLUPS = (USER_DAY_ROLLUP, ITEM_DAY_ROLLUP, ITEM_USER_DAY_ROLLUP, ITEM_REACH_DAY_ROLLUP)

# The directory holding this file: the Feast repo (feature_store.yaml, definitions.py).
REPO_DIR = Path(__file__).resolve().parent


def features_root(home: Path) -> Path:
    return Path(home) / "features"


def feature_partition(home: Path, table: str, day: dt.date) -> Path:
    return features_root(home) / table / f"dt={day.isoformat()}" / PART_FILE


def feature_glob(home: Path, table: str) -> str:
    """Every day of ``table`` as one glob: the path its Feast FileSource reads."""
    return str(features_root(home) / table / "dt=*" / PART_FILE)


def feature_days(home: Path, table: str = USER_TABLE) -> list[dt.date]:
    """Days that have a built partition of ``table``, sorted."""
    root = features_root(home) / table
    if not root.exists():
        return []
    return sorted(
        dt.date.fromisoformat(p.name[3:])
        for p in root.iterdir()
        if p.name.startswith("dt=") and (p / PART_FILE).exists()
    )


def rollups_root(home: Path) -> Path:
    """Every rollup of the build; deleting it only costs the next build the time to recompute."""
    return features_root(home) / "_rollups"


def rollup_partition(home: Path, rollup: str, day: dt.date) -> Path:
    """The rollup ``rollup`` (one of ``ROLLUPS``) of raw day ``day``."""
    return rollups_root(home) / rollup / f"dt={day.isoformat()}" / ROLLUP_FILE


def validation_record(home: Path, day: dt.date) -> Path:
    return features_root(home) / "_validation" / f"dt={day.isoformat()}.json"


def feast_dir(home: Path) -> Path:
    return Path(home) / "feast"


def gx_root(home: Path) -> Path:
    """The Great Expectations project root (GX puts its ``gx/`` folder inside)."""
    return Path(home)


def data_docs_index(home: Path) -> Path:
    return Path(home) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def training_set_path(home: Path, start: dt.date, end: dt.date) -> Path:
    window = f"{start.isoformat()}_{end.isoformat()}"
    return Path(home) / "training" / window / "training_set.parquet"
