"""Fine-tuning: pretrained weights in, fc re-made, frozen stages fixed, exact resume."""

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from models import create_model
from models.pretrained import load_backbone, pretrained_state_dict
from tests.conftest import tiny_config
from tests.test_reliability import EXACT, assert_same_training_state
from training.trainer import fit
from utils.checkpoint import load_checkpoint
from utils.errors import ConfigError

FROZEN = ("model.freeze=stem,layer1,layer2,layer3,layer4",)


@pytest.fixture
def torchvision_weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)  # 1000 classes
    return path


def test_a_torchvision_state_dict_loads_all_but_fc(torchvision_weights: Path) -> None:
    reference = torchvision.models.resnet18()
    reference.load_state_dict(torch.load(torchvision_weights, weights_only=True))
    ours = create_model(num_classes=10)
    load_backbone(ours, pretrained_state_dict(str(torchvision_weights)), "file")
    assert ours.fc.out_features == 10
    reference.fc = ours.fc = nn.Identity()  # compare the backbones' features
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(images), reference.eval()(images), atol=1e-5)


def test_shape_mismatch_and_offline_imagenet_are_one_line(
    torchvision_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = pretrained_state_dict(str(torchvision_weights))
    with pytest.raises(ConfigError, match=r"conv1.weight is \[64, 3, 7, 7\] there") as err:
        load_backbone(create_model(num_classes=10, stem="cifar"), state, "file")
    assert "\n" not in str(err.value)

    def offline(*_args: object, **_kw: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", offline)
    with pytest.raises(ConfigError, match=r"set model\.pretrained to that file") as err:
        pretrained_state_dict("imagenet")
    assert "\n" not in str(err.value) and "resnet18-f37072fd.pth" in str(err.value)


def test_frozen_stages_do_not_move_and_the_head_does(
    tmp_path: Path, torchvision_weights: Path
) -> None:
    cfg = tiny_config(
        "optimized", tmp_path, "train.epochs=1", f"model.pretrained={torchvision_weights}", *FROZEN
    )
    fit(cfg, tmp_path / "run")
    trained = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    start = torch.load(torchvision_weights, weights_only=True)
    for name, tensor in trained.items():
        if name.startswith("fc."):
            continue
        assert torch.equal(tensor, start[name]), name  # weights, BN statistics, weight decay
    assert trained["fc.weight"].shape == (10, 512)


def test_unfreezing_later_trains_the_backbone_and_resumes_exactly(
    tmp_path: Path, torchvision_weights: Path
) -> None:
    cfg = tiny_config(
        "optimized", tmp_path, "train.epochs=3", *EXACT, f"model.pretrained={torchvision_weights}",
        *FROZEN, "train.unfreeze_epoch=2", "optim.backbone_lr_mult=0.1",
    )  # fmt: skip
    fit(cfg, tmp_path / "straight")
    fit(cfg, tmp_path / "split", stop_after_epochs=1)
    after_one = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    start = torch.load(torchvision_weights, weights_only=True)
    assert torch.equal(after_one["layer2.0.conv1.weight"], start["layer2.0.conv1.weight"])
    fit(cfg, tmp_path / "split", load_checkpoint(tmp_path / "split" / "last.pt"))
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert_same_training_state(straight, load_checkpoint(tmp_path / "split" / "last.pt"))
    assert not torch.equal(
        straight["model"]["layer2.0.conv1.weight"], start["layer2.0.conv1.weight"]
    )
