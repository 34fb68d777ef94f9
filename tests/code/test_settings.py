from pathlib import Path

import pytest

from stanflow.settings import REPO_ROOT, Settings, SettingsError


def test_defaults_need_no_environment():
    s = Settings.from_env({})
    assert s.home == REPO_ROOT / ".stanflow"
    assert s.preset == "small"
    assert s.online_store == "sqlite"
    assert s.kfp_host is None
    assert s.resolved_registry_uri == str(REPO_ROOT / ".stanflow" / "registry")


def test_environment_overrides_and_relative_home_is_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env(
        {
            "STANFLOW_HOME": "data",
            "STANFLOW_ONLINE_STORE": "redis",
            "STANFLOW_REGISTRY_URI": "s3://models/stan",
            "STANFLOW_KFP_HOST": "",
            "OTHER": "x",
        }
    )
    assert s.home == tmp_path / "data"
    assert s.online_store == "redis"
    assert s.resolved_registry_uri == "s3://models/stan"
    assert s.kfp_host is None  # blank means unset


def test_unknown_variable_is_refused_with_the_known_names():
    with pytest.raises(SettingsError, match="STANFLOW_HOMEE.*STANFLOW_HOME"):
        Settings.from_env({"STANFLOW_HOMEE": "/x"})


def test_bad_value_names_the_variable():
    with pytest.raises(SettingsError, match="STANFLOW_ONLINE_STORE"):
        Settings.from_env({"STANFLOW_ONLINE_STORE": "dynamodb"})


def test_every_setting_is_described():
    rows = Settings.describe()
    assert {r[0] for r in rows} == {"STANFLOW_" + f.upper() for f in Settings.model_fields}
    assert all(desc for _, _, desc in rows)


def test_readme_documents_every_setting_with_its_default():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for var, default, _ in Settings.describe():
        assert f"`{var}`" in readme, f"{var} missing from README"
        assert f"`{default}`" in readme, f"default {default!r} of {var} missing from README"


def test_production_profile_defaults_to_redis_and_explicit_settings_win():
    s3 = {"STANFLOW_PROFILE": "production", "STANFLOW_REGISTRY_URI": "s3://models/stan"}
    assert Settings.from_env({}).profile == "local"
    assert Settings.from_env(s3).online_store == "redis"
    assert Settings.from_env({**s3, "STANFLOW_ONLINE_STORE": "sqlite"}).online_store == "sqlite"


@pytest.mark.parametrize("registry", [None, "", "/srv/registry", "file:///srv/registry"])
def test_production_profile_refuses_a_registry_off_s3(registry):
    env = {"STANFLOW_PROFILE": "production"}
    if registry is not None:
        env["STANFLOW_REGISTRY_URI"] = registry
    with pytest.raises(SettingsError, match=r"STANFLOW_REGISTRY_URI must be an s3://") as caught:
        Settings.from_env(env)
    assert "STANFLOW_PROFILE=production" in str(caught.value)
    assert "Value error" not in str(caught.value)


def test_unknown_profile_names_the_variable():
    with pytest.raises(SettingsError, match="STANFLOW_PROFILE"):
        Settings.from_env({"STANFLOW_PROFILE": "prod"})
