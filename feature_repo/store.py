"""Feast for one data home: render its config, apply the definitions, materialize, look up.

The declarative repo (``feature_store.yaml``, ``definitions.py``) is shared by every home; what
differs per home -- the registry, the SQLite file, the offline Parquet -- is rendered into
``$STANFLOW_HOME/feast/`` (layout.py), never into the checkout.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import logging
import os
import string
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from feature_repo import layout
from stanflow.settings import Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

log = logging.getLogger(__name__)

Entity = Literal["user", "item"]
CONFIG_TEMPLATES = {
    "sqlite": layout.REPO_DIR / "feature_store.yaml",
    "redis": layout.REPO_DIR / "feature_store.redis.yaml",
}


class NotValidatedError(RuntimeError):
    """Materialization refused: the day has no passing validation for its current files."""


def _settings_for(home: Path, settings: Settings | None) -> Settings:
    settings = settings or get_settings()
    return settings.model_copy(update={"home": Path(home).resolve()})


def render_config(home: str | Path, settings: Settings | None = None) -> Path:
    """Write ``$home/feast/feature_store.yaml`` from the repo's template for the online store.

    ``${STANFLOW_HOME}`` and ``${STANFLOW_REDIS_URL}`` are filled from the settings (the same
    values ``feast`` would take from the environment), so the rendered file needs no variables.
    """
    s = _settings_for(Path(home), settings)
    template = CONFIG_TEMPLATES[s.online_store]
    values = {"STANFLOW_HOME": str(s.home), "STANFLOW_REDIS_URL": s.redis_url}
    # Comments are dropped: they talk about ${VAR}s that are not for filling in.
    lines = [ln for ln in template.read_text().splitlines() if not ln.lstrip().startswith("#")]
    try:
        text = string.Template("\n".join(lines) + "\n").substitute(values)
    except (KeyError, ValueError) as exc:
        raise ValueError(
            f"{template}: unknown placeholder {exc}; only ${{STANFLOW_HOME}} and "
            "${STANFLOW_REDIS_URL} are filled in"
        ) from exc
    out = layout.feast_dir(s.home) / "feature_store.yaml"
    text = f"# Rendered by stanflow from {template.name}; edit that file instead.\n{text}"
    if not out.exists() or out.read_text() != text:  # lookups should not rewrite it each time
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return out


def open_store(home: str | Path, settings: Settings | None = None) -> FeatureStore:
    """A new :class:`FeatureStore` for ``home`` (reads the config and the registry now)."""
    from feast import FeatureStore

    config = render_config(home, settings)
    return FeatureStore(repo_path=str(layout.REPO_DIR), fs_yaml_file=config)


# Lookups reuse one FeatureStore per (home, online store): opening one renders the config, parses
# the registry and connects to the online store, about 10 ms, twenty times the lookup itself.
_SERVING: OrderedDict[tuple[str, str, str], tuple[tuple, FeatureStore]] = OrderedDict()
_SERVING_LOCK = threading.Lock()
_SERVING_MAX = 8  # homes kept open per process (tests use many; a server uses one)


def _stamp(*paths: Path) -> tuple:
    """Identity of files as they are now: a replaced or rewritten file gives another stamp."""
    stamp = []
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            stamp.append(None)
        else:
            stamp.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(stamp)


def serving_store(home: str | Path, settings: Settings | None = None) -> FeatureStore:
    """The :class:`FeatureStore` that online lookups in this process share for ``home``.

    Opened on first use and kept, with its registry cache (``cache_ttl_seconds``) and its online
    store connection, so a lookup costs what Feast's read costs. It is opened again when the
    registry file changes (``apply``/``materialize``, in this process or another) or, on SQLite,
    when the online database file is replaced, so a lookup never reads through a stale store.
    """
    s = _settings_for(Path(home), settings)
    key = (str(s.home), s.online_store, s.redis_url if s.online_store == "redis" else "")
    feast_dir = layout.feast_dir(s.home)
    watched = [feast_dir / "registry.db", CONFIG_TEMPLATES[s.online_store]]
    if s.online_store == "sqlite":
        watched.append(feast_dir / "online.db")
    stamp = _stamp(*watched)
    with _SERVING_LOCK:
        cached = _SERVING.get(key)
        if cached is not None and cached[0] == stamp:
            _SERVING.move_to_end(key)
            return cached[1]
    store = open_store(s.home, s)  # read after the stamp was taken: never older than it
    with _SERVING_LOCK:
        _SERVING[key] = (stamp, store)
        _SERVING.move_to_end(key)
        while len(_SERVING) > _SERVING_MAX:
            _SERVING.popitem(last=False)
    return store


def definitions_for(home: str | Path) -> list[Any]:
    """The repo's Feast objects with their sources pointed at ``home``'s offline tables.

    ``definitions.py`` points at the home of the process settings (what ``feast apply`` uses);
    the copies returned here serve any home, so one process can manage several.
    """
    from feature_repo import definitions as d

    views = []
    for view in (d.user_lifecycle, d.user_activity, d.item_stats):
        view = copy.deepcopy(view)
        view.batch_source.file_options.uri = layout.feature_glob(Path(home), view.batch_source.name)
        views.append(view)
    return [d.user, d.item, *views, d.stan_v1]


def apply(home: str | Path, settings: Settings | None = None) -> FeatureStore:
    """Register the definitions in ``home``'s registry and create the online tables (idempotent)."""
    store = open_store(home, settings)
    with quiet_feast():
        store.apply(definitions_for(home))
    return store


@contextlib.contextmanager
def quiet_feast():
    """Feast prints progress to stdout; keep stdout clean (for `--json`) and log it instead.

    Feast's ibis layer also calls a DuckDB method DuckDB has deprecated; that warning is theirs.
    """
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated")
        yield
    if buffer.getvalue().strip():
        log.debug("feast: %s", buffer.getvalue().strip())


@dataclass(frozen=True)
class MaterializeReport:
    day: dt.date
    online_store: str
    feature_views: tuple[str, ...]


def materialize(
    home: str | Path,
    day: dt.date,
    settings: Settings | None = None,
    *,
    first_day: dt.date | None = None,
) -> MaterializeReport:
    """Load day ``day``'s validated features into the online store.

    Refuses (:class:`NotValidatedError`) unless ``validate_features`` passed on exactly the files
    that are there now, so a failed or skipped validation never reaches the online store. With
    ``first_day`` (a backfill), every day from ``first_day`` to ``day`` must be validated, and one
    Feast materialization loads them all: each entity ends with its latest day's values, exactly
    as after materializing the days one by one.
    """
    from feature_repo.validate import check_validated

    home = Path(home)
    first = first_day or day
    if first > day:
        raise ValueError(f"first_day {first} is after day {day}")
    days = [first + dt.timedelta(days=i) for i in range((day - first).days + 1)]
    for d in days:
        problem = check_validated(home, d)
        if problem:
            raise NotValidatedError(
                f"not materializing {d}: {problem}. Run `stanflow features validate --date {d}` "
                "and fix what it reports first."
            )
    s = _settings_for(home, settings)
    store = apply(home, s)
    # Rows of day D carry the timestamp of the end of D (definitions.py): materialize exactly
    # the end-of-day stamps of the days asked for.
    start, end = (
        dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        for d in (first, day)
    )
    views = [v.name for v in store.list_feature_views()]
    with quiet_feast():
        store.materialize(start_date=start, end_date=end, feature_views=views)
    log.info("materialized %s..%s into the %s online store: %s", first, day, s.online_store, views)
    return MaterializeReport(day=day, online_store=s.online_store, feature_views=tuple(views))


def feature_refs(entity: Entity) -> list[str]:
    """``view:feature`` for every feature of the views keyed by ``entity``."""
    from feature_repo import definitions as d

    views = {"user": (d.user_lifecycle, d.user_activity), "item": (d.item_stats,)}[entity]
    return [f"{v.name}:{f.name}" for v in views for f in v.features]


def get_online_features(
    home: str | Path,
    entity: Entity,
    ids: Sequence[int],
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """One dict per id: ``{"<entity>_id": id, "<view>__<feature>": value, ...}``.

    An id the online store does not hold comes back with every feature ``None``.
    """
    registry = layout.feast_dir(Path(home)) / "registry.db"
    if not registry.exists():  # checked first: Feast would create an empty registry here
        raise FileNotFoundError(
            f"{registry}: no feature registry in this home, so nothing was materialized yet; "
            "run `stanflow features materialize --date D` for a validated day first"
        )
    store = serving_store(home, settings)
    key = f"{entity}_id"
    response = store.get_online_features(
        features=feature_refs(entity),
        entity_rows={key: [int(i) for i in ids]},  # columnar: no dict per id
        full_feature_names=True,
    ).to_dict()
    rows = []
    for index in range(len(ids)):
        rows.append({name: values[index] for name, values in response.items()})
    return rows


def get_offline_features(
    home: str | Path, entity: Entity, ids: Sequence[int], day: dt.date
) -> list[dict[str, Any]]:
    """Like :func:`get_online_features`, read from day ``day``'s offline partition instead."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table_name = layout.USER_TABLE if entity == "user" else layout.ITEM_TABLE
    path = layout.feature_partition(Path(home), table_name, day)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no {entity} features for {day}; run `stanflow features build --date {day}`"
        )
    key = f"{entity}_id"
    table = pq.read_table(path)
    wanted = pa.array([int(i) for i in ids], pa.int64())
    table = table.filter(pc.is_in(table[key], value_set=wanted))
    by_id = {row[key]: row for row in table.to_pylist()}
    rows = []
    for i in ids:
        found = by_id.get(int(i), {})
        row: dict[str, Any] = {key: int(i)}
        for ref in feature_refs(entity):
            view, feature = ref.split(":")
            row[f"{view}__{feature}"] = found.get(feature)
        rows.append(row)
    return rows
