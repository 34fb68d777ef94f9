import pytest
import yaml

from stan_model.data.world_config import PRESETS, WorldConfig


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name):
    cfg = WorldConfig.preset(name)
    assert cfg.name == name
    assert len(cfg.days) == cfg.n_days


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'.*tiny, small, wechat"):
        WorldConfig.preset("huge")


def test_yaml_typo_is_an_error_naming_the_file_and_key(tmp_path):
    raw = WorldConfig.preset("tiny").model_dump(mode="json")
    raw["activity"]["sesions_per_day"] = raw["activity"].pop("sessions_per_day")
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError) as err:
        WorldConfig.from_yaml(path)
    assert "world.yaml" in str(err.value) and "sesions_per_day" in str(err.value)


def test_stage_mix_must_sum_to_one(tmp_path):
    raw = WorldConfig.preset("tiny").model_dump(mode="json")
    raw["initial_stage_mix"]["loyal"] = 0.9
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="must sum to 1"):
        WorldConfig.from_yaml(path)


def test_overrides_are_validated():
    assert WorldConfig.preset("tiny").with_overrides(seed=5).seed == 5
    with pytest.raises(ValueError):
        WorldConfig.preset("tiny").with_overrides(n_users=0)


def test_dumped_config_reloads_identically(tmp_path):
    cfg = WorldConfig.preset("small")
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert WorldConfig.from_yaml(path) == cfg
