"""The fast path (batched tensor transforms, channels_last) computes what the textbook path does."""

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision import transforms

import training.autotune
from data.augment import BatchTransform
from data.datasets import synthetic_image_set
from models import STAGES, apply_layout, create_model
from training.autotune import probe_nchw_stages

MEAN, STD = (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)


def test_fast_and_plain_paths_give_same_fp32_logits() -> None:
    images = synthetic_image_set(16, 10).images  # (16, 3, 32, 32) uint8
    plain_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    plain_inputs = torch.stack(
        [plain_tf(transforms.functional.to_pil_image(image)) for image in images]
    )
    fast_inputs = BatchTransform(MEAN, STD, channels_last=True)(images)
    assert fast_inputs.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(fast_inputs, plain_inputs, atol=1e-6)

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(num_classes=10).eval()
    ours = create_model(num_classes=10).eval()
    ours.load_state_dict(reference.state_dict())
    ours = ours.to(memory_format=torch.channels_last)
    with torch.no_grad():
        plain_logits = reference(plain_inputs)
        fast_logits = ours(fast_inputs)
    assert torch.allclose(fast_logits, plain_logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(fast_logits.argmax(1), plain_logits.argmax(1))


def test_upsampled_input_matches_torchvision_resize() -> None:
    images = synthetic_image_set(4, 10).images
    fast = BatchTransform(MEAN, STD, input_side=64)(images)
    plain = transforms.Normalize(MEAN, STD)(
        transforms.functional.resize(images.float() / 255, [64, 64], antialias=True)
    )
    assert torch.allclose(fast, plain, atol=1e-5)


def test_stages_in_nchw_compute_the_same_logits_and_gradients() -> None:
    # float64: the comparison is then exact to ~1e-12, while in fp32 eight BatchNorms over a
    # batch of 8 amplify reordered sums to ~1e-2 on some CPUs (oneDNN picks kernels per CPU)
    torch.manual_seed(0)
    model = create_model(num_classes=10, stem="cifar").double().train()
    everywhere = apply_layout(copy.deepcopy(model), [])
    mixed = copy.deepcopy(apply_layout(copy.deepcopy(model), ["layer2", "layer4"]))
    mixed.load_state_dict(model.state_dict())  # the layout survives copies and loading
    seen = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        conv = getattr(mixed, name)[0].conv1
        conv.register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, args[0].is_contiguous())
        )
    inputs = torch.randn(8, 3, 32, 32, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last
    )
    outputs = []
    for net in (everywhere, mixed):
        logits = net(inputs)
        nn.functional.cross_entropy(logits, torch.arange(8)).backward()
        grads = [net.layer1[0].conv1.weight.grad, net.layer4[1].conv2.weight.grad]
        outputs.append([logits, *grads, net.fc.weight.grad])
    # NCHW inside layer2 and layer4 only: each NCHW stage hands channels_last on
    assert seen == {"layer1": False, "layer2": True, "layer3": False, "layer4": True}
    # a layout mistake moves values between channels, an error of order 1
    for ours, reference in zip(outputs[1], outputs[0], strict=True):
        assert (ours - reference).norm() <= 1e-9 * reference.norm()


def test_layout_probe_moves_only_clearly_faster_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    # seconds per pass in (channels_last, NCHW): layer4 clearly faster in NCHW, layer3 barely
    fake = {"layer1": (1.0, 1.3), "layer2": (1.0, 1.0), "layer3": (1.1, 1.0), "layer4": (1.3, 1.0)}
    seen = {}

    def seconds(stage: torch.nn.Module, shape: list[int], channels_last: bool, _p: str) -> float:
        name = next(n for n in STAGES if getattr(model, n) is stage)
        seen[name] = shape
        return fake[name][0 if channels_last else 1]

    monkeypatch.setattr(training.autotune, "seconds_per_pass", seconds)
    model = create_model(num_classes=10, stem="cifar")
    assert probe_nchw_stages(model, 32, 64, "fp32") == ["layer4"]
    assert seen["layer1"] == [64, 64, 32, 32] and seen["layer4"] == [64, 256, 8, 8]
    assert model.training  # the shape pass left the model as it found it
