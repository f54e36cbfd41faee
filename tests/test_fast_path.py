"""The fast path (batched tensor transforms, channels_last) computes what the textbook path does."""

import torch
import torchvision
from torchvision import transforms

from data.augment import BatchTransform
from data.datasets import synthetic_image_set
from models import create_model

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
    fast = BatchTransform(MEAN, STD, output_size=64)(images)
    plain = transforms.Normalize(MEAN, STD)(
        transforms.functional.resize(images.float() / 255, [64, 64], antialias=True)
    )
    assert torch.allclose(fast, plain, atol=1e-5)
