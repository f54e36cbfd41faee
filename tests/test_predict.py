"""predict.py and the classifier API on a checkpoint of a real (tiny) training run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evaluation.report
from data.datasets import decode_image_file, list_image_folder, resize_square
from data.image_files import find_images
from evaluation.classifier import load_classifier
from tests.conftest import CliRunner, run_script, tiny_config
from training.trainer import fit
from utils.checkpoint import load_checkpoint

CLASSES = [f"class_{i}" for i in range(10)]  # the synthetic data set's


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding one run, ``checkpoints/s``, so that a bare ``best.pt`` finds it."""
    root = tmp_path_factory.mktemp("predict")
    cfg = tiny_config("baseline", root, "train.epochs=1", "data.synthetic_samples=120")
    fit(cfg, root / "checkpoints" / "s")
    return root


def pattern(seed: int, size: tuple[int, int] = (40, 36)) -> np.ndarray:
    """(H, W, 3) uint8 of smooth random colour, so that images get different predictions."""
    coarse = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize(size, Image.BILINEAR))


def write_images(root: Path) -> list[Path]:
    """Images nested in folders, in assorted formats and modes, beside hidden and non-image
    files that must be passed over; returns the images a search should find, sorted."""
    grey = pattern(2)[..., 0].astype(np.uint16) * 257
    images = {
        "a.png": Image.fromarray(pattern(0)),
        "sub/b.jpg": Image.fromarray(pattern(1)),
        "sub/deeper/c.png": Image.fromarray(grey),  # 16-bit grey
        "sub/deeper/d.tif": Image.fromarray(pattern(3)[..., 1] / np.float32(255)),  # float
        ".hidden/e.png": Image.fromarray(pattern(4)),
        "sub/.f.png": Image.fromarray(pattern(5)),
    }
    for name, image in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name)
    (root / "notes.txt").write_text("not an image")
    return sorted(root / name for name in images if "/." not in f"/{name}")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as rows:
        return list(csv.DictReader(rows))


def test_a_folder_is_searched_recursively_without_hidden_entries(
    workdir: Path, tmp_path: Path, run_in_process: CliRunner
) -> None:
    expected = write_images(tmp_path / "imgs")
    out = tmp_path / "preds.csv"
    args = ["--ckpt", "best.pt", str(tmp_path / "imgs"), "--output", str(out)]
    proc = run_in_process("predict.py", *args, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "checkpoint: checkpoints/s/best.pt" in proc.stderr
    assert "4 images in" in proc.stderr and "img/s)" in proc.stderr
    rows = read_csv(out)
    assert [row["path"] for row in rows] == [str(p) for p in expected]
    table = proc.stdout.splitlines()
    assert table[0].split() == ["image", "top-1", "top-2", "top-3"]
    assert [line.split()[0] for line in table[1:]] == [str(p) for p in expected]
    for row in rows:
        probs = {name: float(row[f"p({name})"]) for name in CLASSES}
        assert sum(probs.values()) == pytest.approx(1, abs=1e-5)
        top = [(row[f"top{i}_class"], float(row[f"top{i}_probability"])) for i in (1, 2, 3)]
        assert top == sorted(probs.items(), key=lambda item: -item[1])[:3]
        assert (row["predicted"], float(row["probability"])) == top[0]


def test_a_glob_names_the_images_it_matches(
    workdir: Path, tmp_path: Path, run_in_process: CliRunner
) -> None:
    write_images(tmp_path / "imgs")
    out = tmp_path / "preds.json"
    glob = str(tmp_path / "imgs" / "**" / "*.png")
    proc = run_in_process(
        "predict.py", "--ckpt", "best.pt", glob, "--output", str(out), cwd=workdir
    )
    assert proc.returncode == 0, proc.stderr
    paths = [row["path"] for row in json.loads(out.read_text())]
    assert paths == [str(tmp_path / "imgs" / name) for name in ("a.png", "sub/deeper/c.png")]


def test_json_rows_rank_every_class_when_top_k_exceeds_them(
    workdir: Path, tmp_path: Path, run_in_process: CliRunner
) -> None:
    write_images(tmp_path / "imgs")
    out = tmp_path / "preds.json"
    args = ["--ckpt", "best.pt", str(tmp_path / "imgs"), "--top-k", "50", "--output", str(out)]
    assert run_in_process("predict.py", *args, cwd=workdir).returncode == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 4
    for row in rows:
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert sorted(entry["class"] for entry in row["top_k"]) == CLASSES
        ranked = [entry["probability"] for entry in row["top_k"]]
        assert ranked == sorted(ranked, reverse=True)
        assert all(row["probabilities"][e["class"]] == e["probability"] for e in row["top_k"])
        assert row["predicted"] == row["top_k"][0]["class"]
        assert row["probability"] == max(row["probabilities"].values())


def test_an_unreadable_file_is_named_and_skipped_with_exit_code_1(
    workdir: Path, tmp_path: Path
) -> None:
    """In a child process, as a user runs it: the exit code is the process's own."""
    expected = write_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    good = (tmp_path / "imgs" / "a.png").read_bytes()
    (tmp_path / "imgs" / "sub" / "truncated.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "preds.csv"
    args = ["--ckpt", "best.pt", str(tmp_path / "imgs"), "--output", str(out)]
    proc = run_script("predict.py", *args, cwd=workdir, check=False)
    assert proc.returncode == 1, proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped:")]
    assert len(skipped) == 2
    assert "broken.jpg" in skipped[0] and "truncated.png" in skipped[1]
    assert [row["path"] for row in read_csv(out)] == [str(p) for p in expected]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["broken.jpg"], "no readable image among the 1 files given"),
        (["missing.png"], "missing.png does not exist"),
        (["*.gif"], "'*.gif' matches no image files"),
        (["empty"], "empty holds no image files"),
        (["broken.jpg", "--output", "preds.txt"], "expected a file ending in .csv or .json"),
        (["broken.jpg", "--top-k", "0"], "at least 1"),
        (["broken.jpg", "--device", "nope"], "'nope' is not a torch device"),
    ],
)
def test_usage_errors_and_no_readable_image_exit_2(
    workdir: Path, tmp_path: Path, run_in_process: CliRunner, args: list[str], fragment: str
) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "empty").mkdir()
    ckpt = str(workdir / "checkpoints" / "s" / "best.pt")
    proc = run_in_process("predict.py", "--ckpt", ckpt, *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def class_folder(root: Path) -> Path:
    """A <class>/<image> tree with the checkpoint's classes, larger than the model's side."""
    for i, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        Image.fromarray(pattern(10 + i)).save(root / name / "rgb.png")
        Image.fromarray(pattern(30 + i)).convert("P").save(root / name / "palette.png")
    return root


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_the_classifier_gives_the_softmax_of_evaluations_logits(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tta: str
) -> None:
    folder = class_folder(tmp_path / "imgs")
    ckpt = workdir / "checkpoints" / "s" / "best.pt"
    captured = []
    real_run_predictions = evaluation.report.run_predictions

    def spy(*args):
        logits, labels = real_run_predictions(*args)
        captured.append(logits)
        return logits, labels

    monkeypatch.setattr(evaluation.report, "run_predictions", spy)
    evaluation.report.evaluate_checkpoint(
        load_checkpoint(ckpt), ckpt, image_folder=folder, out_dir=tmp_path / "eval", tta=tta
    )
    (logits,) = captured
    classifier = load_classifier(ckpt, tta=tta, batch_size=7)  # batches split differently
    files = list_image_folder(folder)[0]
    from_files = classifier.predict_files(files, progress=False)
    assert from_files.files == files and not from_files.skipped
    # compared as log-probabilities: a barely trained model puts most classes near 0
    assert torch.allclose(from_files.probabilities.log(), logits.log_softmax(1), atol=1e-4)
    side = classifier.input_side
    decoded = torch.stack([resize_square(decode_image_file(f), side) for f in files])
    assert torch.allclose(classifier.predict(decoded).log(), logits.log_softmax(1), atol=1e-4)


def test_images_of_any_mode_are_classified_by_what_their_values_mean(workdir: Path) -> None:
    classifier = load_classifier(workdir / "checkpoints" / "s" / "best.pt")
    grey = Image.fromarray(pattern(7)[..., 0])
    same_grey = [
        grey,
        Image.fromarray(np.asarray(grey).astype(np.uint16) * 257),  # I;16
        Image.fromarray(np.asarray(grey).astype(np.int32) * 257),  # I
        Image.fromarray(np.asarray(grey) / np.float32(255)),  # F
        grey.convert("RGBA"),
        grey.convert("LA"),
        grey.convert("P"),
    ]
    assert [image.mode for image in same_grey] == ["L", "I;16", "I", "F", "RGBA", "LA", "P"]
    colour = Image.fromarray(pattern(8, size=(100, 20)))
    others = [colour, colour.convert("CMYK"), colour.convert("1"), colour.convert("PA")]
    probs = classifier.predict(same_grey + others)
    assert probs.shape == (11, 10) and torch.isfinite(probs).all()
    assert torch.allclose(probs.sum(1), torch.ones(11), atol=1e-5)
    for i in range(1, len(same_grey)):
        assert torch.allclose(probs[i].log(), probs[0].log(), atol=1e-4), same_grey[i].mode


def test_a_tensor_batch_is_uint8_rgb_of_any_size(workdir: Path) -> None:
    classifier = load_classifier(workdir / "checkpoints" / "s" / "best.pt")
    with pytest.raises(ValueError, match=r"uint8 batch \(N, 3, H, W\), got torch.float32"):
        classifier.predict(torch.zeros(2, 3, 32, 32))
    arrays = [pattern(seed) for seed in (20, 21)]  # (H, W, 3) uint8
    pictures = [Image.fromarray(array) for array in arrays]
    batch = torch.stack([torch.tensor(array).permute(2, 0, 1) for array in arrays])
    assert batch.shape == (2, 3, 36, 40)  # resized as the same pictures are
    assert torch.equal(classifier.predict(batch), classifier.predict(pictures))
    assert classifier.predict([]).shape == (0, 10)


def test_find_images_keeps_the_order_given_and_each_file_once(tmp_path: Path) -> None:
    found = write_images(tmp_path)
    named = [str(found[2]), str(tmp_path), str(tmp_path / "*.png")]
    assert find_images(named) == [found[2], *(p for p in found if p != found[2])]
    assert find_images([str(tmp_path / "**" / "*.tif")]) == [tmp_path / "sub/deeper/d.tif"]
