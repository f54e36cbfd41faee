"""Property-based checks: any config, however wrong, is either valid or one clean ConfigError."""

import dataclasses
import tempfile
import typing
from pathlib import Path

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data import create_data
from models import create_model
from utils.config import Config, config_from_dict, config_to_dict, load_config, save_config
from utils.errors import ConfigError, DataError

SECTIONS = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if dataclasses.is_dataclass(typing.get_type_hints(Config)[f.name])
}
KEYS = [(section, f.name) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]

# what YAML reads as a string and the schema as a float: exponents that overflow among them
float_literals = st.from_regex(r"[-+]?\d{1,3}(\.\d{0,2})?[eE][-+]?\d{1,4}", fullmatch=True)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.integers().map(lambda i: i * 10**400),  # beyond any float
    st.floats(allow_nan=True, allow_infinity=True),
    float_literals,
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict:
    raw = config_to_dict(Config())
    for _ in range(draw(st.integers(1, 4))):
        choice = draw(st.integers(0, 3))
        if choice == 0:  # a random value at a real key
            section, key = draw(st.sampled_from(KEYS))
            if isinstance(raw[section], dict):
                raw[section][key] = draw(values)
        elif choice == 1:  # an unknown key
            section = draw(st.sampled_from([*SECTIONS, None]))
            target = raw if section is None else raw[section]
            if isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=6))] = draw(values)
        elif choice == 2:  # a section replaced by a scalar
            raw[draw(st.sampled_from(list(SECTIONS)))] = draw(values)
        else:  # a top-level scalar with a random value
            raw[draw(st.sampled_from(["name", "output_dir"]))] = draw(values)
    return raw


@settings(max_examples=400, deadline=None)
@given(mutated_configs())
def test_any_config_is_valid_or_a_clean_config_error(raw: dict) -> None:
    try:
        cfg = config_from_dict(raw, "fuzz.yaml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.yaml: ")
        assert "\n" not in str(err)
        return
    assert config_from_dict(config_to_dict(cfg)) == cfg  # a valid result round-trips


overrides = st.lists(
    st.tuples(st.sampled_from(KEYS), st.one_of(float_literals, values.map(str))).map(
        lambda item: f"{item[0][0]}.{item[0][1]}={item[1]}"
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(mutated_configs(), overrides)
def test_a_config_a_run_saves_always_loads_back(raw: dict, sets: list[str]) -> None:
    """What ``load_config`` accepts, from a file and ``--set``, ``save_config`` writes beside
    the run, and that file must load again as the same config (resume and evaluation read it)."""
    with tempfile.TemporaryDirectory() as folder:
        source, saved = Path(folder, "run.yaml"), Path(folder, "config.yaml")
        source.write_text(yaml.safe_dump(raw))
        try:
            cfg = load_config(str(source), sets)
        except ConfigError as err:
            assert "\n" not in str(err)
            return
        save_config(cfg, saved)
        assert load_config(str(saved)) == cfg


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    samples=st.integers(20, 150),
    classes=st.integers(2, 30),
    val_fraction=st.floats(0.001, 0.999),
    batch_size=st.integers(2, 64),
)
def test_valid_data_settings_build_or_fail_cleanly(
    samples: int, classes: int, val_fraction: float, batch_size: int
) -> None:
    """Values that pass the schema never crash data setup with anything but a DataError."""
    raw = config_to_dict(Config())
    raw["data"].update(
        dataset="synthetic",
        synthetic_samples=samples,
        synthetic_classes=classes,
        val_fraction=val_fraction,
        batch_size=batch_size,
    )
    cfg = config_from_dict(raw)
    try:
        bundle = create_data(cfg.data, seed=0, device=torch.device("cpu"))
    except DataError:
        return
    assert len(bundle.train.labels) + len(bundle.val.labels) == samples
    assert len(bundle.train) >= 1 and len(bundle.val) >= 1
    model = create_model(num_classes=classes).train()
    for images, _ in bundle.train.batches(0):  # every training batch can take a step
        model(bundle.train_transform(images, torch.Generator())).sum().backward()
