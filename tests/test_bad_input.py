"""Hostile input a run must refuse in one line, or skip when asked: odd image folders, bad
images found before training, damaged or edited checkpoints, config values that cannot be."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from data import create_data
from data.datasets import folder_image_set, list_image_folder
from data.streaming import first_image_size
from models import create_model
from tests.conftest import CliRunner, tiny_config
from training.trainer import fit
from utils.checkpoint import load_checkpoint, load_state, scored_weights
from utils.config import load_config
from utils.errors import CheckpointError, ConfigError, DataError

CPU = torch.device("cpu")


def error_line(proc) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    return line


def save_images(folder: Path, count: int, size: int = 16) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (size, size), (30 * i % 255, 90, 0)).save(folder / f"{i}.png")


def truncated_jpeg(path: Path) -> None:
    Image.new("RGB", (64, 64), (200, 0, 0)).save(path)
    path.write_bytes(path.read_bytes()[:300])


# --- folder contents ------------------------------------------------------------------------


def test_hidden_entries_are_ignored_and_nested_images_belong_to_their_class(
    tmp_path: Path,
) -> None:
    root = tmp_path / "train"
    save_images(root / "cat", 2)
    save_images(root / "dog" / "2024" / "june", 3)  # only nested: the first file is deep
    save_images(root / ".ipynb_checkpoints", 1)  # a hidden folder is no class
    save_images(root / "cat" / ".thumbnails", 2)  # nor part of one
    Image.new("RGB", (16, 16)).save(root / "cat" / ".hidden.png")
    files, labels, classes = list_image_folder(root)
    assert classes == ["cat", "dog"]
    assert labels == [0, 0, 1, 1, 1]
    assert all(not part.startswith(".") for f in files for part in f.relative_to(root).parts)
    assert len(folder_image_set(root, None, tmp_path / "cache")) == 5


def test_an_empty_class_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    save_images(tmp_path / "train" / "cat", 2)
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*train/dog holds no images"):
        list_image_folder(tmp_path / "train")


# --- bad images -----------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_broken_links_are_named_or_skipped(tmp_path: Path, link: str) -> None:
    folder = tmp_path / "train" / "a"
    save_images(folder, 3)
    target = folder / ("deleted.png" if link == "dangling" else f"{link}.png")
    (folder / f"{link}.png").symlink_to(target)
    with pytest.raises(DataError, match=rf"cannot decode image .*/{link}\.png"):
        folder_image_set(tmp_path / "train", None, tmp_path / "cache")
    with pytest.warns(UserWarning, match=f"{link}.png"):
        kept = folder_image_set(tmp_path / "train", None, tmp_path / "cache", skip_bad=True)
    assert len(kept) == 3


def test_images_over_the_pixel_limit_are_refused_even_below_twice_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PIL refuses more than twice ``MAX_IMAGE_PIXELS`` and only warns between once and twice."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    folder = tmp_path / "train" / "a"
    save_images(folder, 2, size=8)  # 64 pixels: fine
    Image.new("RGB", (10, 15)).save(folder / "big.png")  # 150: 1.5 times the limit
    with pytest.raises(DataError, match=r"big\.png: 10x15 pixels exceed PIL's limit of 100"):
        folder_image_set(tmp_path / "train", None, None)
    with pytest.warns(UserWarning, match="big.png"):
        assert len(folder_image_set(tmp_path / "train", None, None, skip_bad=True)) == 2


def test_an_oversized_first_image_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("RGB", (30, 30)).save(tmp_path / "0.png")  # over twice: PIL's own error
    Image.new("RGB", (8, 9)).save(tmp_path / "1.png")
    files = [tmp_path / "0.png", tmp_path / "1.png"]
    with pytest.raises(DataError, match=r"cannot decode image .*0\.png"):
        first_image_size(files)
    assert first_image_size(files, skip_bad=True) == (8, 9)


def streamed_config(root: Path, *extra: str):
    settings = ["data.dataset=imagefolder", f"data.root={root}", "data.loader=stream"]
    return load_config("optimized.yaml", [*settings, "data.num_workers=0", *extra]).data


def test_a_bad_validation_image_of_a_streamed_set_is_found_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for split in ("train", "val"):
        for cls in ("a", "b"):
            save_images(tmp_path / split / cls, 4)
    truncated_jpeg(tmp_path / "val" / "b" / "cut.jpg")  # its header reads; it does not decode
    with pytest.raises(DataError, match=r"cannot decode image .*val/b/cut\.jpg.*skip_bad_images"):
        create_data(streamed_config(tmp_path), 0, CPU)
    bundle = create_data(streamed_config(tmp_path, "data.skip_bad_images=true"), 0, CPU)
    assert len(bundle.val.files) == 8 and not any(f.name == "cut.jpg" for f in bundle.val.files)
    assert "skipping 1 unreadable images, e.g. cannot decode image" in capsys.readouterr().err


def test_unreadable_files_carved_into_validation_leave_the_recorded_split(
    tmp_path: Path,
) -> None:
    for cls in ("a", "b"):
        save_images(tmp_path / "train" / cls, 6)
    (tmp_path / "train" / "a" / "notes.png").write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.png"):
        create_data(streamed_config(tmp_path, "data.val_fraction=0.5"), 0, CPU)
    lenient = streamed_config(tmp_path, "data.val_fraction=0.5", "data.skip_bad_images=true")
    bundle = create_data(lenient, 0, CPU)
    files, _, _ = list_image_folder(tmp_path / "train")
    bad = files.index(tmp_path / "train" / "a" / "notes.png")
    assert bad not in bundle.val_indices.tolist()
    served = [*bundle.train.files, *bundle.val.files]
    assert len(served) == 12 and files[bad] not in served


# --- resource settings ----------------------------------------------------------------------


def test_more_synthetic_images_than_memory_holds_is_one_line(
    tmp_path: Path, run_in_process: CliRunner
) -> None:
    args = ["--config", "smoke.yaml", "--set", "data.synthetic_samples=1000000000000"]
    line = error_line(run_in_process("train.py", *args, cwd=tmp_path))
    assert line.startswith("error: data.synthetic_samples=1000000000000: generating that many")


# --- config values --------------------------------------------------------------------------


def test_a_key_given_twice_is_an_error_naming_it_and_its_line(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("optim:\n  lr: 0.1\n  momentum: 0.9\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=rf"^{path}: line 4: duplicate key 'lr'; give each"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"line 1: duplicate key 'lr'"):
        load_config("smoke.yaml", ["optim={lr: 0.1, lr: 0.2}"])


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1.5E+999", "9" * 400])
def test_numbers_beyond_a_float_are_refused_from_files_and_overrides(
    tmp_path: Path, run_in_process: CliRunner, number: str
) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(f"schedule:\n  warmup_epochs: {number}\n")
    with pytest.raises(ConfigError, match=r"schedule\.warmup_epochs: expected a finite number"):
        load_config(str(path))
    args = ["--config", "smoke.yaml", "--set", f"optim.lr={number}"]
    line = error_line(run_in_process("train.py", *args, cwd=tmp_path))
    assert "optim.lr: expected a finite number" in line


# --- edited checkpoints ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("edited")
    fit(tiny_config("optimized", workdir, "train.epochs=1"), workdir / "run")
    return workdir / "run" / "last.pt"


def edited(trained: Path, tmp_path: Path, edit) -> Path:
    checkpoint = torch.load(trained, weights_only=True)
    edit(checkpoint)
    path = tmp_path / "run" / "last.pt"
    path.parent.mkdir(exist_ok=True)
    torch.save(checkpoint, path)
    return path


EDITS = {
    "shape": (
        lambda c: c["model"].update({"fc.weight": torch.zeros(3, 512)}),
        r"its model does not fit this model: size mismatch for fc\.weight",
    ),
    "removed": (
        lambda c: c["model"].pop("layer1.0.bn1.weight"),
        r'its model does not fit this model: Missing key\(s\) in state_dict: "layer1\.0\.bn1',
    ),
    "optimizer": (
        lambda c: c["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(1)),
        r"its optimizer does not fit this model: momentum_buffer has shape \[1\]",
    ),
    "dropped": (lambda c: c.pop("early_stopping"), r"its early_stopping .*missing key"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_resuming_an_edited_checkpoint_names_the_file_and_the_mismatch(
    trained: Path, tmp_path: Path, edit: str
) -> None:
    change, message = EDITS[edit]
    path = edited(trained, tmp_path, change)
    cfg = tiny_config("optimized", tmp_path, "train.epochs=2")
    with pytest.raises(CheckpointError, match=rf"^{path}: {message}"):
        fit(cfg, path.parent, load_checkpoint(path))


def test_a_changed_class_count_names_the_file_where_the_model_is_built_from_it(
    trained: Path, tmp_path: Path
) -> None:
    """As evaluation builds its model: from the checkpoint's own construction arguments."""
    path = edited(trained, tmp_path, lambda c: c["model_args"].update(num_classes=7))
    checkpoint = load_checkpoint(path)
    model = create_model(**checkpoint["model_args"])
    with pytest.raises(CheckpointError, match=rf"^{path}: its model .*size mismatch for fc"):
        load_state(model, checkpoint, "model", scored_weights(checkpoint))


@pytest.mark.parametrize("value", ["3", 3.0, None, True])
def test_a_format_version_that_is_not_an_integer_is_one_error(
    trained: Path, tmp_path: Path, value: object
) -> None:
    path = edited(trained, tmp_path, lambda c: c.update(format_version=value))
    with pytest.raises(CheckpointError, match=rf"^{path}: format_version should be an integer"):
        load_checkpoint(path)


def test_required_keys_of_the_wrong_type_are_one_error(trained: Path, tmp_path: Path) -> None:
    path = edited(trained, tmp_path, lambda c: c.update(class_names="cat,dog"))
    with pytest.raises(CheckpointError, match=r"class_names should be a list of names"):
        load_checkpoint(path)
