"""Typed run configuration: dataclasses loaded from YAML and checked field by field.

Every value, whether from a YAML file or a ``--set key=value`` override, goes through the same
check, and a mistake is reported as one line naming the file, the key and what was expected.
Numbers must be finite, and a key may be given only once in a mapping.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from utils.config_check import build_checked
from utils.errors import ConfigError
from utils.safe_write import write_text_atomic
from utils.yaml_file import DuplicateKeyError, YamlLimitError, excerpt, parse_yaml, read_yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
FREEZABLE_STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


# Field metadata: "choices", or "low"/"high" bounds (``low_open``/``high_open`` exclude them),
# and "resume_safe": a resumed run may change the value (``--set`` on ``--resume``), since it
# says where things are, how long the run goes on or how often it saves, not what it computes.


def _choice(default: str, *choices: str, resume_safe: bool = False) -> Any:
    return field(
        default=default, metadata={"choices": (default, *choices), "resume_safe": resume_safe}
    )


def _range(default: Any, low: float | None = None, high: float | None = None, **kw: bool) -> Any:
    """A number in [low, high]; ``low_open``/``high_open`` exclude the bound."""
    return field(default=default, metadata={"low": low, "high": high, **kw})


def _resume_safe(default: Any) -> Any:
    return field(default=default, metadata={"resume_safe": True})


@dataclass
class DataConfig:
    dataset: str = _choice("cifar10", "cifar100", "imagefolder", "synthetic")
    root: str = _resume_safe("datasets/cifar10")
    image_size: int | None = _range(None, 8, 1024)  # None: the data set's native size
    val_fraction: float = _range(0.1, 0.0, 1.0, low_open=True, high_open=True)
    split_seed: int = _range(0, 0, 2**31 - 1)
    batch_size: int = _range(128, 2)  # BatchNorm cannot train on one sample
    eval_batch_size: int = _range(512, 1)
    hflip: bool = False
    crop_padding: int = _range(0, 0, 64)  # random crop after padding by this much; 0: off
    crop_padding_mode: str = _choice("zeros", "reflect")  # what the crop's padding holds
    cutout: int = _range(0, 0, 1024)  # side of a square blanked per training image; 0: off
    # progressive resizing: training images start at this side and grow linearly to the full
    # input side, reached after progressive_until of the steps; evaluation always runs at the
    # full side. null: off
    progressive_from: int | None = _range(None, 8, 1024)
    progressive_until: float = _range(0.75, 0.0, 1.0, low_open=True)
    # mean/std: "dataset" from the training split, "imagenet" ImageNet's; auto: ImageNet's
    # with model.pretrained: imagenet, else the data set's
    normalization: str = _choice("auto", "dataset", "imagenet")
    download: bool = True
    loader: str = _choice("auto", "memory", "stream")  # auto: stream above memory_limit_gb
    memory_limit_gb: float = _range(4.0, 0.0)  # decoded size above which auto streams
    num_workers: int = _range(2, 0, 64, resume_safe=True)  # streaming DataLoader workers
    skip_bad_images: bool = _resume_safe(False)  # false: a bad image stops the run, naming it
    cache_dir: str = _resume_safe(".cache/datasets")
    synthetic_samples: int = _range(1200, 20)
    synthetic_classes: int = _range(10, 2, 1000)


@dataclass
class ModelConfig:
    arch: str = _choice("resnet18")
    stem: str = _choice("imagenet", "cifar")
    dropout: float = _range(0.0, 0.0, 1.0, high_open=True)
    zero_init_residual: bool = False
    # start from weights: imagenet (torchvision's, downloaded and cached), a torchvision
    # resnet18 state_dict file, or one of this repo's checkpoints; fc is re-made. null: none
    pretrained: str | None = None
    # stages to keep frozen (comma-separated: stem, layer1 ... layer4), weights and BatchNorm
    # statistics, until train.unfreeze_epoch; null: none
    freeze: str | None = None

    @property
    def frozen_stages(self) -> list[str]:
        """``freeze`` as a list: "stem,layer1" -> ["stem", "layer1"]."""
        return [name.strip() for name in (self.freeze or "").split(",") if name.strip()]


@dataclass
class OptimConfig:
    lr: float = _range(0.1, 0.0, None, low_open=True)
    momentum: float = _range(0.9, 0.0, 1.0, high_open=True)
    nesterov: bool = False
    weight_decay: float = _range(0.0, 0.0)
    # weight decay of BatchNorm weights and of biases (torchvision's --norm-weight-decay);
    # null: weight_decay, as for every other parameter
    norm_weight_decay: float | None = _range(None, 0.0)
    backbone_lr_mult: float = _range(1.0, 0.0, None, low_open=True)  # lr of all but fc, x lr
    scale_lr: bool = False  # multiply lr by the number of processes (linear scaling rule)


@dataclass
class ScheduleConfig:
    name: str = _choice("cosine", "constant", "step", "onecycle")
    warmup_epochs: float = _range(0.0, 0.0)
    step_epochs: int = _range(30, 1)  # "step": multiply the lr by gamma every step_epochs
    gamma: float = _range(0.1, 0.0, 1.0, low_open=True)
    min_lr_ratio: float = _range(0.0, 0.0, 1.0)  # cosine/onecycle floor, as a fraction of lr
    # onecycle: the lr rises linearly from start_ratio * lr to lr over the first peak_fraction
    # of all steps, then falls linearly to min_lr_ratio * lr
    peak_fraction: float = _range(0.3, 0.0, 1.0, low_open=True, high_open=True)
    start_ratio: float = _range(0.1, 0.0, 1.0)


@dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    patience: int = _range(5, 1, resume_safe=True)
    min_delta: float = _range(0.0, 0.0, resume_safe=True)


@dataclass
class TrainConfig:
    epochs: int = _range(30, 1, resume_safe=True)  # more stretches the schedule
    label_smoothing: float = _range(0.0, 0.0, 1.0, high_open=True)
    unfreeze_epoch: int | None = _range(None, 1)  # model.freeze stages train from this epoch
    # MixUp / CutMix: one mixing weight per batch from Beta(alpha, alpha); 0 turns one off, and
    # with both on each batch takes one of them at random
    mixup_alpha: float = _range(0.0, 0.0)
    cutmix_alpha: float = _range(0.0, 0.0)
    # an exponential moving average of the weights (and BatchNorm statistics), updated every
    # step; validation, best.pt and evaluation then use the average. null: off
    ema_decay: float | None = _range(None, 0.0, 1.0, low_open=True, high_open=True)
    seed: int = _range(0, 0, 2**31 - 1)
    device: str = _resume_safe("auto")  # auto (cuda, then mps, then cpu), or a torch device string
    # auto: bf16 on CUDA (fp16 without bf16 support); on a bf16 CPU, bf16 only where a timed
    # probe shows it faster. Set it explicitly for bitwise-reproducible runs.
    precision: str = _choice("auto", "fp32", "bf16", "fp16")
    channels_last: bool = True
    # on CPU, time each residual stage in channels_last and NCHW and keep NCHW where it is
    # clearly faster (training/autotune.py); false keeps channels_last everywhere
    layout_probe: bool = True
    compile: bool = False  # torch.compile: a warm-up cost, faster steps on some hardware
    # on CUDA: deterministic kernels (no cudnn.benchmark, slower) for runs that repeat bitwise;
    # false times cuDNN's kernels once per shape and keeps the fastest
    deterministic: bool = False
    nonfinite_loss: str = _choice("stop", "skip", resume_safe=True)
    # steps between reads of the training loss from the device; each read waits for the
    # device, so on a GPU the host queues this many steps ahead. Stop signals, saves and the
    # non-finite check are answered at reads. null: 1 on CPU (a read costs nothing there), 50
    # on a GPU
    sync_every: int | None = _range(None, 1, resume_safe=True)
    # also write last.pt inside an epoch once this many minutes have passed since the last save, so
    # a kill (-9, a lost machine) costs at most that much training; null: at epoch ends only
    save_every_minutes: float | None = _range(None, 0.0, None, low_open=True, resume_safe=True)
    # TensorBoard event files in <run>/tensorboard: null logs when the package is installed
    tensorboard: bool | None = _resume_safe(None)
    # plan the steps (at most train.epochs of them) that fit this many minutes of training
    # and validation, plan again when the pace drifts, and lay the schedule out for them
    # (training/budget.py); null: train.epochs
    time_budget_minutes: float | None = _range(None, 0.0, None, low_open=True)
    # train for this many PFLOP (forward + backward, counted per input side) and lay the
    # schedule out in steps to end on it: the same run on any machine; null: train.epochs
    budget_pflop: float | None = _range(None, 0.0, None, low_open=True)
    sync_batchnorm: bool = False  # under torchrun on CUDA: batch statistics over all ranks


@dataclass
class Config:
    name: str = "run"
    output_dir: str = "checkpoints"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def resume_safe_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """The dotted keys whose fields are marked ``resume_safe``."""
    keys = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= resume_safe_keys(hints[f.name], f"{prefix}{f.name}.")
        elif f.metadata.get("resume_safe"):
            keys.add(prefix + f.name)
    return keys


def _check_combinations(config: Config, source: str) -> None:
    """Settings that are valid alone but not together."""
    if config.schedule.name == "onecycle" and config.schedule.warmup_epochs > 0:
        raise ConfigError(
            f"{source}: schedule.warmup_epochs: onecycle ramps the lr up by itself; set it to 0"
        )
    stages = config.model.frozen_stages
    unknown = [name for name in stages if name not in FREEZABLE_STAGES]
    if unknown:
        raise ConfigError(
            f"{source}: model.freeze: unknown stage {excerpt(unknown[0])}; expected a "
            f"comma-separated list of {', '.join(FREEZABLE_STAGES)}"
        )
    if config.train.unfreeze_epoch is not None and not stages:
        raise ConfigError(f"{source}: train.unfreeze_epoch: needs model.freeze")
    if config.optim.nesterov and config.optim.momentum == 0:
        raise ConfigError(f"{source}: optim.nesterov: needs optim.momentum > 0")
    if config.train.budget_pflop is not None and config.train.time_budget_minutes is not None:
        raise ConfigError(
            f"{source}: train.budget_pflop: a run has one budget; unset train.time_budget_minutes"
        )


def config_from_dict(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a plain mapping into a ``Config``; ``source`` names it in error messages."""
    return build_checked(Config, raw, source)


def resolve_config_path(name: str) -> Path:
    """A path as given, or a bare name looked up in ``configs/`` (``.yaml`` optional)."""
    candidates = [Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    available = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file {name!r} not found; available in configs/: {available}")


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``section.key=value`` to ``raw`` in place; the value is parsed as YAML by the one
    strict loader (``utils/yaml_file.py``)."""
    key, sep, text = assignment.partition("=")
    shown = excerpt(assignment)
    if not sep or not key.strip():
        raise ConfigError(f"override {shown}: expected the form section.key=value")
    try:
        value = parse_yaml(text)
    except (DuplicateKeyError, YamlLimitError) as err:
        raise ConfigError(f"override {shown}: {err}") from None
    except yaml.YAMLError:
        raise ConfigError(f"override {shown}: the value is not valid YAML") from None
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {shown}: {excerpt(part)} is not a section")
    node[leaf] = value


def load_config(name: str, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a config file by path or bare name, apply overrides, and validate the result."""
    path = resolve_config_path(name)
    raw = read_yaml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    config = config_from_dict(raw, str(path))
    _check_combinations(config, str(path))  # new runs only: stored configs stay loadable
    return config


def config_to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain data (for YAML files and checkpoints)."""
    return dataclasses.asdict(config)


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML beside a run (atomically; it always loads back)."""
    write_text_atomic(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


ABSENT = object()  # a key one of two configs lacks


def edited_config_warning(run_dir: Path, stored: dict[str, Any]) -> str | None:
    """A warning line when ``<run>/config.yaml`` no longer matches ``stored``, the config in
    the checkpoint being resumed (someone edited the file): a resume uses the stored config and
    then rewrites the file, so the edit would otherwise vanish unnoticed. None when they match
    or the file is missing."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        on_disk = flat_keys(read_yaml(path))
    except ConfigError as err:
        return f"warning: {err}; it is rewritten from the checkpoint's stored config"
    in_checkpoint = flat_keys(stored)
    keys = on_disk.keys() | in_checkpoint.keys()
    changed = sorted(k for k in keys if on_disk.get(k, ABSENT) != in_checkpoint.get(k, ABSENT))
    if not changed:
        return None
    key = changed[0]
    return (
        f"warning: {path}: edited ({key}: {excerpt(on_disk.get(key))} in the file, "
        f"{excerpt(in_checkpoint.get(key))} in the checkpoint); a resume uses the checkpoint's "
        "config and rewrites the file; change a key that may change with --set KEY=VALUE"
    )


def flat_keys(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat |= flat_keys(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat
