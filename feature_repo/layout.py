"""Where the feature store keeps its files under ``$STANFLOW_HOME`` (never inside the checkout).

::

    features/user_features/dt=YYYY-MM-DD/part-0.parquet   one row per user known at the end of D
    features/item_features/dt=YYYY-MM-DD/part-0.parquet   one row per item known at the end of D
    features/_validation/dt=YYYY-MM-DD.json               the last validation of day D
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
# The offline tables, named as their Feast sources are (definitions.py).
USER_TABLE = "user_features"
ITEM_TABLE = "item_features"
FEATURE_TABLES = (USER_TABLE, ITEM_TABLE)

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
