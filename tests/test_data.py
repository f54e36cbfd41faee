import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from data.augment import BatchTransform, random_crop, random_cutout, random_hflip
from data.build import channel_stats, make_transforms, recorded_split, split_sets
from data.datasets import cifar_image_set, folder_image_set, synthetic_image_set
from data.loader import InMemoryLoader
from data.split import data_fingerprint, split_indices
from utils.config import load_config
from utils.errors import DataError


def position_images(n: int, size: int = 32) -> torch.Tensor:
    """Channel 0 holds row + 10, channel 1 column + 10, channel 2 is 255: offsets are readable."""
    rows = torch.arange(size).view(size, 1).expand(size, size) + 10
    cols = torch.arange(size).view(1, size).expand(size, size) + 10
    image = torch.stack([rows, cols, torch.full_like(rows, 255)]).to(torch.uint8)
    return image.expand(n, 3, size, size).contiguous()


def test_split_is_deterministic_disjoint_and_complete() -> None:
    train, val = split_indices(50_000, 0.1, seed=0)
    again_train, again_val = split_indices(50_000, 0.1, seed=0)
    assert torch.equal(train, again_train) and torch.equal(val, again_val)
    assert (len(train), len(val)) == (45_000, 5_000)
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(50_000))
    assert not torch.equal(val, split_indices(50_000, 0.1, seed=1)[1])


def test_random_crop_offsets_uniform_over_9x9_and_match_torchvision() -> None:
    per_cell, padding = 150, 4
    n = 81 * per_cell
    images = position_images(n)
    out = random_crop(images, padding, torch.Generator().manual_seed(0))
    # output[i, j] = original[i + dy - p, j + dx - p]; the centre pixel is always inside.
    dy = out[:, 0, 16, 16].long() - 10 - 16 + padding
    dx = out[:, 1, 16, 16].long() - 10 - 16 + padding
    assert dy.min() == 0 and dy.max() == 2 * padding and dx.min() == 0 and dx.max() == 2 * padding
    counts = torch.bincount(dy * 9 + dx, minlength=81).double()
    chi2 = ((counts - per_cell) ** 2 / per_cell).sum()
    assert chi2 < 124, f"offsets not uniform: chi2={chi2:.1f} (80 dof, p=0.001 bound 124)"
    for k in range(20):  # each crop equals torchvision's pad + crop at the same offset
        expected = TF.crop(TF.pad(images[k], [padding]), int(dy[k]), int(dx[k]), 32, 32)
        assert torch.equal(out[k], expected)


def test_reflect_padded_crop_mirrors_the_border_as_torchvision_does() -> None:
    padding = 4
    images = position_images(400)
    out = random_crop(images, padding, torch.Generator().manual_seed(0), mode="reflect")
    assert out.shape == images.shape and out.min() >= 10  # no zero band anywhere
    for k in range(400):  # each crop equals torchvision's reflect pad + crop at some offset
        padded = TF.pad(images[k], [padding], padding_mode="reflect")
        matches = [
            (dy, dx)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            if torch.equal(out[k], TF.crop(padded, dy, dx, 32, 32))
        ]
        assert len(matches) == 1
    zero_padded = random_crop(images, padding, torch.Generator().manual_seed(0))
    assert (zero_padded == 0).any()  # the default still pads with zeros


def test_horizontal_flip_rate_is_half() -> None:
    n = 20_000
    out = random_hflip(position_images(n), torch.Generator().manual_seed(0))
    flipped = out[:, 1, 0, 0] == 10 + 31
    assert torch.all(flipped | (out[:, 1, 0, 0] == 10))
    assert abs(flipped.double().mean().item() - 0.5) < 0.015  # ~4.2 standard errors


def test_cutout_blanks_one_clipped_square_per_image() -> None:
    n, size = 4_000, 8
    images = torch.ones(n, 3, 32, 32)
    out = random_cutout(images, size, torch.Generator().manual_seed(0))
    blanked = out == 0
    assert torch.equal(blanked[:, 0], blanked[:, 2])  # every channel, the same square
    rows, cols = blanked[:, 0].any(2), blanked[:, 0].any(1)  # (N, 32) each
    assert torch.equal(blanked[:, 0], rows[:, :, None] & cols[:, None, :])  # a rectangle
    heights, widths = rows.sum(1), cols.sum(1)
    assert heights.max() == size and widths.max() == size and heights.min() >= size // 2
    # centres uniform over the image: a full square when the centre is 4..28 along each axis
    full = ((heights == size) & (widths == size)).double().mean().item()
    assert abs(full - (25 / 32) ** 2) < 0.03
    assert torch.equal(out[~blanked], images[~blanked])


def test_cutout_is_reproducible_and_leaves_other_augmentation_unchanged() -> None:
    images = synthetic_image_set(64, 4).images
    plain = BatchTransform([0.5] * 3, [0.25] * 3, True, 4)
    cut = BatchTransform([0.5] * 3, [0.25] * 3, True, 4, cutout=12)
    first = cut(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, cut(images, torch.Generator().manual_seed(5)))
    without = plain(images, torch.Generator().manual_seed(5))
    kept = first != 0  # crop and flip draw first, so they match the run without cutout
    assert torch.equal(first[kept], without[kept]) and (~kept).any()
    cfg = load_config("optimized", ["data.cutout=12"]).data
    train_tf, eval_tf = make_transforms(cfg, [0.5] * 3, [0.25] * 3, 32, False)
    assert train_tf.cutout == 12 and eval_tf.cutout == 0
    assert load_config("optimized").data.cutout == 0


def test_augmentation_applied_in_optimized_absent_in_baseline() -> None:
    images = synthetic_image_set(64, 4).images
    mean, std = [0.5] * 3, [0.25] * 3
    for name, augmented in (("baseline", False), ("optimized", True)):
        train_tf, eval_tf = make_transforms(load_config(name).data, mean, std, 32, False)
        same = torch.equal(train_tf(images, torch.Generator().manual_seed(1)), eval_tf(images))
        assert same is not augmented, name
        assert not eval_tf.augments  # nothing random reaches validation


def test_normalisation_and_resize() -> None:
    images = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = BatchTransform([0.5] * 3, [0.25] * 3, input_side=64)(images)
    assert out.shape == (2, 3, 64, 64)
    assert torch.allclose(out, torch.full_like(out, 2.0))


def test_loader_order_depends_only_on_seed_and_epoch() -> None:
    labels = torch.arange(100)
    loader = InMemoryLoader(labels.view(100, 1, 1, 1), labels, 16, shuffle=True, seed=3)
    assert torch.equal(loader.order(2), loader.order(2))
    assert not torch.equal(loader.order(2), loader.order(3))
    served = torch.cat([batch_labels for _, batch_labels in loader.batches(2)])
    assert torch.equal(served, loader.order(2))
    resumed = torch.cat([batch_labels for _, batch_labels in loader.batches(2, start_batch=3)])
    assert torch.equal(resumed, loader.order(2)[48:])


def test_synthetic_set_deterministic_and_balanced() -> None:
    a, b = synthetic_image_set(200, 10), synthetic_image_set(200, 10)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.dtype == torch.uint8 and a.images.shape == (200, 3, 32, 32)
    assert torch.all(torch.bincount(a.labels) == 20)


def test_carved_validation_and_stats() -> None:
    cfg = load_config("smoke.yaml").data
    full, train, val, val_idx = split_sets(cfg, stream=False)
    assert len(train) + len(val) == len(full) and len(val) == round(0.2 * len(full))
    assert torch.equal(val.labels, full.labels[val_idx])
    mean, std = channel_stats(train.images)
    expected = train.images.double().div(255)
    assert mean == pytest.approx(expected.mean((0, 2, 3)).tolist(), abs=1e-4)
    assert std == pytest.approx(expected.std((0, 2, 3)).tolist(), abs=1e-3)


def make_folder(root: Path, sizes: dict[str, list[int]]) -> Path:
    for cls, image_sizes in sizes.items():
        (root / cls).mkdir(parents=True)
        for i, side in enumerate(image_sizes):
            colour = (200, 10, 10) if cls == "a" else (10, 10, 200)
            Image.new("RGB", (side, side), colour).save(root / cls / f"{i}.png")
    return root


def test_image_folder_loads_labels_and_uses_cache(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "train", {"a": [8, 8], "b": [8, 8, 8]})
    cache = tmp_path / "cache"
    first = folder_image_set(folder, None, cache)
    assert first.class_names == ["a", "b"] and first.labels.tolist() == [0, 0, 1, 1, 1]
    assert first.images[0, 0, 0, 0] == 200 and first.images[4, 2, 0, 0] == 200
    assert len(list(cache.glob("*.pt"))) == 1
    second = folder_image_set(folder, None, cache)
    assert torch.equal(first.images, second.images)
    (cached,) = cache.glob("*.pt")
    cached.write_bytes(cached.read_bytes()[:100])  # cut short, as by a full disk
    with pytest.warns(UserWarning, match="ignoring unreadable cache"):
        third = folder_image_set(folder, None, cache)
    assert torch.equal(first.images, third.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cache was rewritten whole
        assert torch.equal(folder_image_set(folder, None, cache).images, first.images)


def test_image_folder_mixed_sizes_need_image_size(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "train", {"a": [8, 12], "b": [10]})
    with pytest.raises(DataError, match=r"set data\.image_size"):
        folder_image_set(folder, None, None)
    assert folder_image_set(folder, 16, None).images.shape == (3, 3, 16, 16)


@pytest.mark.parametrize("layout", ["missing", "no_classes", "no_images"])
def test_bad_image_folders_raise_data_error(tmp_path: Path, layout: str) -> None:
    folder = tmp_path / "train"
    if layout != "missing":
        folder.mkdir()
    if layout == "no_images":
        (folder / "cat").mkdir()
        (folder / "cat" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=str(folder)):
        folder_image_set(folder, None, None)


def test_offline_download_gives_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match=r"downloading cifar10 into .* failed.*--data-root"):
        cifar_image_set("cifar10", tmp_path / "cifar", train=True, download=True)


def test_missing_cifar_without_download_names_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"not found in .*--data-root"):
        cifar_image_set("cifar10", tmp_path, train=True, download=False)


def test_eval_train_split_leaves_out_the_carved_validation() -> None:
    cfg = load_config("smoke.yaml").data
    full, _, val, val_idx = split_sets(cfg, stream=False)
    train = recorded_split(cfg, "train", val_idx, None, stream=False)
    again_val = recorded_split(cfg, "val", val_idx, None, stream=False)
    assert len(train) + len(val) == len(full)
    assert torch.equal(again_val.images, val.images)


def test_data_fingerprint_tells_order_and_count_apart() -> None:
    labels = torch.arange(10).repeat(5)  # interleaved, as torchvision's CIFAR-10
    same = data_fingerprint(labels.clone())
    assert data_fingerprint(labels) == same
    assert data_fingerprint(labels.sort().values) != same  # class-sorted, as a folder copy
    assert data_fingerprint(labels[:-1]) != same
