import pytest
import torch
import torchvision

from models import create_model
from models.resnet import BasicBlock, resnet18


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
@pytest.mark.parametrize("size", [32, 64])
def test_logit_shape(stem: str, size: int) -> None:
    model = resnet18(num_classes=10, stem=stem).eval()
    assert model(torch.randn(3, 3, size, size)).shape == (3, 10)


def test_parameter_count_matches_resnet18() -> None:
    model = resnet18(num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512


def test_torchvision_weights_load_strict_and_give_same_logits() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    ours = resnet18(num_classes=1000).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max() < 1e-5


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
def test_gradient_reaches_every_parameter(stem: str) -> None:
    model = resnet18(num_classes=10, stem=stem, dropout=0.5)
    logits = model(torch.randn(4, 3, 32, 32))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
        assert torch.isfinite(param.grad).all(), name


def test_stems_differ_in_downsampling() -> None:
    imagenet, cifar = resnet18(stem="imagenet"), resnet18(stem="cifar")
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, torch.nn.MaxPool2d)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, torch.nn.Identity)


def test_projection_shortcut_only_where_shape_changes() -> None:
    model = resnet18()
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    with_projection = [b.downsample is not None for b in blocks]
    assert with_projection == [False, False, True, False, True, False, True, False]


def test_initialisation_and_zero_init_residual() -> None:
    model = resnet18(zero_init_residual=True)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    assert all(torch.all(b.bn2.weight == 0) for b in model.modules() if isinstance(b, BasicBlock))
    assert torch.all(resnet18().layer1[0].bn2.weight == 1)


def test_dropout_only_in_training_mode() -> None:
    model = resnet18(num_classes=10, dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()  # BN uses batch statistics, so only dropout makes two passes differ
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    "kwargs", [{"stem": "resnet"}, {"dropout": 1.0}, {"dropout": -0.1}, {"num_classes": 0}]
)
def test_bad_arguments_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        resnet18(**kwargs)


def test_create_model_rejects_unknown_architecture() -> None:
    with pytest.raises(ValueError, match="resnet50"):
        create_model("resnet50")
