"""DagBag checks: one case per DAG file -- it imports, and follows the house policy."""

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS.glob("*.py"))


@pytest.fixture(scope="module", autouse=True)
def airflow_home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    yield
    mp.undo()


def test_there_are_two_dag_files():
    assert [p.stem for p in DAG_FILES] == ["stan_lifecycle_features", "stan_retrain"]


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_file_imports_and_follows_policy(path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    assert list(bag.dags) == [path.stem]  # one DAG per file, named after it
    dag = bag.dags[path.stem]
    assert dag.tags and "stanflow" in dag.tags
    assert dag.doc_md and dag.doc_md.strip().startswith(f"### {path.stem}")
    assert not dag.catchup
    for task in dag.tasks:
        assert task.owner == "ml-platform", task.task_id
        assert task.retries >= 2, task.task_id


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.stem)
def test_dag_files_do_no_heavy_imports_at_parse_time(path):
    heavy = (
        "torch",
        "feast",
        "kfp",
        "great_expectations",
        "duckdb",
        "pyarrow",
        "stan_model",
        "feature_repo",
        "components",
    )
    top_level = [
        line for line in path.read_text().splitlines() if line.startswith(("import ", "from "))
    ]
    assert not [line for line in top_level if any(h in line for h in heavy)], top_level


def test_retrain_refuses_an_invalid_param():
    import copy

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamValidationError

    dag = DagBag(dag_folder=str(DAGS / "stan_retrain.py")).dags["stan_retrain"]
    dag.params.validate()  # the defaults are valid
    for bad in (
        {"window_days": -3},
        {"epochs": 0},
        {"kfp_mode": "remote"},
        {"trainjob_workers": -1},
    ):
        params = copy.deepcopy(dag.params)
        with pytest.raises((ParamValidationError, ValueError), match=next(iter(bad))):
            params.update(bad)
            params.validate()


def test_the_shortest_window_holds_the_models_split():
    from airflow.dag_processing.dagbag import DagBag

    from components.runner import MIN_WINDOW_DAYS
    from stan_model.data.dataset import DatasetConfig

    split = DatasetConfig()
    assert split.warmup_days + 1 + split.valid_days + split.test_days == MIN_WINDOW_DAYS
    dag = DagBag(dag_folder=str(DAGS / "stan_retrain.py")).dags["stan_retrain"]
    assert dag.params.get_param("window_days").schema["minimum"] == MIN_WINDOW_DAYS
