import dataclasses
from pathlib import Path

import pytest

from utils.config import (
    CONFIG_DIR,
    Config,
    config_from_dict,
    config_to_dict,
    load_config,
    read_yaml,
    save_config,
)
from utils.errors import ConfigError


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIG_DIR.glob("*.yaml")))
def test_shipped_configs_round_trip(name: str, tmp_path: Path) -> None:
    cfg = load_config(name)
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(str(tmp_path / "resolved.yaml")) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_bare_name_and_stem_resolve_to_configs_dir() -> None:
    assert load_config("baseline") == load_config(str(CONFIG_DIR / "baseline.yaml"))


def test_baseline_and_optimized_differ_only_in_regularisation() -> None:
    base, opt = config_to_dict(load_config("baseline")), config_to_dict(load_config("optimized"))
    differences = {
        f"{section}.{key}"
        for section, values in base.items()
        if isinstance(values, dict)
        for key in values
        if values[key] != opt[section][key]
    }
    assert differences == {
        "data.hflip",
        "data.crop_padding",
        "model.dropout",
        "optim.weight_decay",
        "early_stopping.enabled",
    }
    assert opt["optim"]["weight_decay"] == 1e-4 and opt["model"]["dropout"] == 0.5
    assert base["optim"]["weight_decay"] == 0 and base["model"]["dropout"] == 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "optim.lrr: unknown key"),
        ("colour=red", "colour: unknown key"),
        ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
        ("data.batch_size=1.5", "data.batch_size: expected an integer"),
        ("data.hflip=1", "data.hflip: expected true or false"),
        ("optim.lr=-0.1", "optim.lr: expected a value > 0.0"),
        ("model.dropout=1.0", "model.dropout: expected a value in [0.0, 1.0)"),
        ("model.stem=vgg", "model.stem: expected one of ['imagenet', 'cifar']"),
        ("train.epochs=0", "train.epochs: expected a value >= 1"),
        ("data=3", "data: expected a mapping"),
        ("no_equals_sign", "expected the form section.key=value"),
    ],
)
def test_overrides_are_checked_like_the_file(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("optimized.yaml", [override])
    assert message in str(err.value)
    assert "optimized.yaml" in str(err.value) or "override" in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["schedule.name=onecycle", "schedule.warmup_epochs=1"], "onecycle ramps the lr up"),
        (["optim.nesterov=true", "optim.momentum=0"], "optim.nesterov: needs optim.momentum > 0"),
    ],
)
def test_conflicting_settings_are_rejected(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("optimized.yaml", overrides)


def test_valid_override_changes_value() -> None:
    cfg = load_config("optimized.yaml", ["optim.lr=0.01", "data.image_size=64"])
    assert cfg.optim.lr == 0.01 and cfg.data.image_size == 64
    # YAML 1.1 reads 1e-4 as a string; number fields accept it all the same
    assert load_config("optimized.yaml", ["optim.weight_decay=5e-4"]).optim.weight_decay == 5e-4
    with pytest.raises(ConfigError, match="expected a number, got 'nan'"):
        load_config("optimized.yaml", ["optim.lr=nan"])
    with pytest.raises(ConfigError, match="expected a finite number"):
        load_config("optimized.yaml", ["optim.lr=.inf"])


def test_missing_config_lists_available() -> None:
    with pytest.raises(ConfigError, match=r"not found; available in configs/: baseline\.yaml"):
        load_config("nonexistent.yaml")


def test_yaml_python_tags_are_rejected(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(evil)
    assert not marker.exists()


def test_wrong_type_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: ten\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: train.epochs: expected an integer"):
        load_config(str(path))


def test_defaults_are_valid() -> None:
    cfg = Config()
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert dataclasses.asdict(cfg)["data"]["val_fraction"] == 0.1
