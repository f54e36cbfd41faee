"""The streaming (DataLoader workers) path serves what the in-memory path serves."""

from pathlib import Path

import pytest
import torch
from PIL import Image

import evaluation.report
from data import create_data, create_eval_loader, use_streaming
from data.datasets import folder_image_set
from data.loader import InMemoryLoader, StreamingLoader
from data.streaming import folder_file_set
from tests.conftest import record_fed_sides, run_script
from training.trainer import fit
from utils.checkpoint import load_checkpoint
from utils.config import load_config
from utils.errors import DataError


def make_folder(root: Path, per_class: int = 12, side: int = 16) -> Path:
    gen = torch.Generator().manual_seed(0)
    for c in range(3):
        (root / "train" / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = torch.randint(0, 256, (side, side, 3), generator=gen, dtype=torch.uint8)
            pixels[..., c] = 255  # each class has one saturated channel: learnable
            Image.fromarray(pixels.numpy()).save(root / "train" / f"c{c}" / f"{i}.png")
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_batches_equal_in_memory_batches(tmp_path: Path, workers: int) -> None:
    folder = make_folder(tmp_path) / "train"
    memory_set = folder_image_set(folder, None, None)
    files = folder_file_set(folder)
    memory = InMemoryLoader(memory_set.images, memory_set.labels, 5, shuffle=True, seed=4)
    stream = StreamingLoader(files.files, files.labels, 16, 5, True, seed=4, num_workers=workers)
    for start in (0, 3):
        pairs = zip(memory.batches(2, start), stream.batches(2, start), strict=True)
        for (m_images, m_labels), (s_images, s_labels) in pairs:
            assert torch.equal(m_images, s_images) and torch.equal(m_labels, s_labels)


def test_streaming_bad_file_is_named_or_skipped(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, per_class=3) / "train"
    (folder / "c1" / "broken.png").write_text("not a png")
    files = folder_file_set(folder)
    strict = StreamingLoader(files.files, files.labels, 16, 4, False, num_workers=2)
    with pytest.raises(DataError, match=r"cannot decode image .*broken\.png"):
        list(strict.batches())
    lenient = StreamingLoader(files.files, files.labels, 16, 4, False, num_workers=2, skip_bad=True)
    served = sum(len(labels) for _, labels in lenient.batches())
    assert served == len(files) - 1


def test_auto_streams_above_memory_limit(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    base = ["data.dataset=imagefolder", f"data.root={root}"]
    assert not use_streaming(load_config("optimized.yaml", base).data)
    assert use_streaming(
        load_config("optimized.yaml", [*base, "data.memory_limit_gb=0.000001"]).data
    )
    assert use_streaming(load_config("optimized.yaml", [*base, "data.loader=stream"]).data)
    with pytest.raises(DataError, match="needs an ImageFolder"):
        use_streaming(load_config("smoke.yaml", ["data.loader=stream"]).data)


def test_streaming_split_matches_in_memory_split(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    base = [
        "data.dataset=imagefolder",
        f"data.root={root}",
        "data.cache_dir=" + str(tmp_path / "c"),
    ]
    memory = create_data(load_config("optimized.yaml", base).data, 0, torch.device("cpu"))
    cfg = load_config("optimized.yaml", [*base, "data.loader=stream", "data.num_workers=0"])
    stream = create_data(cfg.data, 0, torch.device("cpu"))
    assert torch.equal(memory.val_indices, stream.val_indices)
    assert torch.equal(memory.train.labels, stream.train.labels)
    m_images = torch.cat([images for images, _ in memory.val.batches()])
    s_images = torch.cat([images for images, _ in stream.val.batches()])
    assert torch.equal(m_images, s_images)


def test_train_and_evaluate_streaming_from_the_command_line(tmp_path: Path) -> None:
    root = make_folder(tmp_path, per_class=20)
    args = ["--config", "optimized.yaml", "--data-root", str(root), "--run-name", "st"]
    sets = ["data.dataset=imagefolder", "data.loader=stream", "data.batch_size=16",
            "train.epochs=2", "data.num_workers=1"]  # fmt: skip
    run_script("train.py", *args, *[x for s in sets for x in ("--set", s)], cwd=tmp_path)
    proc = run_script("evaluate.py", "--ckpt", "best.pt", cwd=tmp_path)
    assert "val set: 6 images" in proc.stdout
    assert (tmp_path / "checkpoints/st/eval-val/misclassified.png").is_file()


@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_eval_train_split_leaves_out_the_validation_images(tmp_path: Path, loader: str) -> None:
    root = make_folder(tmp_path)
    cfg = load_config(
        "optimized.yaml",
        ["data.dataset=imagefolder", f"data.root={root}", f"data.loader={loader}",
         "data.num_workers=0", "data.cache_dir=" + str(tmp_path / "c")],
    )  # fmt: skip
    data = create_data(cfg.data, 0, torch.device("cpu"))
    cpu = torch.device("cpu")
    train, _ = create_eval_loader(cfg.data, "train", data.val_indices, cpu)
    val, _ = create_eval_loader(cfg.data, "val", data.val_indices, cpu)
    train_images = torch.cat([images for images, _ in train.batches()])
    val_images = torch.cat([images for images, _ in val.batches()])
    assert len(train_images) + len(val_images) == 36 and len(val_images) > 0
    flat_train = {tuple(image.flatten().tolist()) for image in train_images}
    assert not any(tuple(image.flatten().tolist()) in flat_train for image in val_images)


def test_streamed_split_is_evaluated_at_the_training_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(tmp_path)  # 16 px training images
    sets = ["data.dataset=imagefolder", f"data.root={root}", "data.loader=stream",
            "data.num_workers=0", "data.batch_size=8", "train.epochs=1", "train.precision=fp32",
            "train.layout_probe=false", f"output_dir={tmp_path}"]  # fmt: skip
    fit(load_config("optimized.yaml", sets), tmp_path / "run")
    for c in range(3):  # a test split of larger images
        (root / "test" / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (24, 24), (80 * c, 0, 0)).save(root / "test" / f"c{c}" / "0.png")
    sides = record_fed_sides(monkeypatch)
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    report = evaluation.report.evaluate_checkpoint(
        checkpoint, tmp_path / "run" / "best.pt", split="test", out_dir=tmp_path / "eval"
    )
    assert sides == [16] and report["num_samples"] == 3


def test_other_data_is_refused_on_resume_and_evaluation(tmp_path: Path) -> None:
    trained, other = make_folder(tmp_path / "a"), make_folder(tmp_path / "b")
    Image.new("RGB", (16, 16)).save(other / "train" / "c0" / "extra.png")  # one image more
    sets = ["data.dataset=imagefolder", f"data.root={trained}", "data.batch_size=8",
            "train.epochs=1", "train.precision=fp32", "train.layout_probe=false",
            f"output_dir={tmp_path}", "data.cache_dir=" + str(tmp_path / "c")]  # fmt: skip
    fit(load_config("optimized.yaml", sets), tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["data_fingerprint"].startswith("36 images")
    moved = load_config("optimized.yaml", [*sets, f"data.root={other}"])
    with pytest.raises(DataError, match="not the data this run was trained on"):
        fit(moved, tmp_path / "run", checkpoint)
    with pytest.raises(DataError, match="not the data this run was trained on"):
        evaluation.report.evaluate_checkpoint(checkpoint, tmp_path / "x.pt", data_root=str(other))
    streamed = load_config("optimized.yaml", [*sets, f"data.root={other}", "data.loader=stream"])
    for split in ("val", "train"):
        with pytest.raises(DataError, match="not the data this run was trained on"):
            create_eval_loader(
                streamed.data, split, checkpoint["val_indices"], torch.device("cpu"),
                fingerprint=checkpoint["data_fingerprint"],
            )  # fmt: skip
    report = evaluation.report.evaluate_checkpoint(
        checkpoint, tmp_path / "x.pt", out_dir=tmp_path / "eval"
    )
    assert report["num_samples"] == len(checkpoint["val_indices"])  # the same data passes


def test_memory_is_judged_at_the_size_images_are_kept(tmp_path: Path) -> None:
    """Small images stay small in memory (enlarged batch by batch), so a large image_size does
    not make them stream; images larger than image_size are kept at image_size, as streamed."""
    root = make_folder(tmp_path, side=16)
    base = ["data.dataset=imagefolder", f"data.root={root}", "data.memory_limit_gb=0.001"]
    assert not use_streaming(load_config("optimized.yaml", [*base, "data.image_size=224"]).data)
    kept = folder_image_set(root / "train", 8, None)
    assert kept.images.shape[1:] == (3, 8, 8)
    files = folder_file_set(root / "train")
    stream = StreamingLoader(files.files, files.labels, 8, len(files), False, num_workers=0)
    (streamed, _), *_ = stream.batches()
    assert torch.equal(kept.images, streamed)


def test_an_unreadable_first_image_is_skipped_when_asked(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    (root / "train" / "c0" / "0.png").write_text("not a png")
    base = ["data.dataset=imagefolder", f"data.root={root}"]
    with pytest.raises(DataError, match=r"cannot decode image .*0\.png"):
        use_streaming(load_config("optimized.yaml", base).data)
    lenient = load_config("optimized.yaml", [*base, "data.skip_bad_images=true"]).data
    assert not use_streaming(lenient)
