"""The real entry points, in a temporary directory: run as a user would (a child process)
where the test trains or where the process itself matters, and in this process
(``run_in_process``) for the error paths that end before any training."""

import json
import os
import random
from pathlib import Path

import pytest

from tests.conftest import CliRunner, run_script

FAST = ["--set", "data.synthetic_samples=400", "--set", "train.epochs=2"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke training run, from the command line, shared by the tests below."""
    workdir = tmp_path_factory.mktemp("cli")
    proc = run_script("train.py", "--config", "smoke.yaml", *FAST, "--run-name", "s", cwd=workdir)
    assert "best epoch" in proc.stdout + proc.stderr
    return workdir


def test_train_then_evaluate_bare_best_pt(smoke_run: Path) -> None:
    proc = run_script("evaluate.py", "--ckpt", "best.pt", cwd=smoke_run)
    assert "checkpoint: checkpoints/s/best.pt" in proc.stdout
    report = json.loads((smoke_run / "checkpoints/s/eval-val/metrics.json").read_text())
    assert report["num_samples"] == 80 and 0 <= report["accuracy"] <= 1
    assert sum(map(sum, report["confusion_matrix"])) == 80
    plots = {p.name for p in (smoke_run / "checkpoints/s/eval-val").glob("*.png")}
    assert plots == {
        "confusion_matrix.png",
        "per_class_accuracy.png",
        "misclassified.png",
        "training_curves.png",
        "reliability_diagram.png",
    }
    assert report["flip_tta"] is False


def test_evaluate_with_flip_tta_says_so(
    smoke_run: Path, tmp_path: Path, run_in_process: CliRunner
) -> None:
    out = tmp_path / "tta"
    args = ["--ckpt", "best.pt", "--flip-tta", "--output-dir", str(out)]
    proc = run_in_process("evaluate.py", *args, cwd=smoke_run)
    assert proc.returncode == 0, proc.stderr
    assert "val set with flip test-time augmentation: 80 images" in proc.stdout
    assert json.loads((out / "metrics.json").read_text())["flip_tta"] is True


def test_resume_of_finished_run_adds_epochs(smoke_run: Path) -> None:
    proc = run_script(
        "train.py", "--resume", "checkpoints/s", "--set", "train.epochs=3", cwd=smoke_run
    )
    assert "resuming checkpoints/s after epoch 2" in proc.stdout
    history = json.loads((smoke_run / "checkpoints/s/metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]


def assert_one_line_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--config", "nope.yaml"], ["'nope.yaml' not found", "baseline.yaml"]),
        (["--config", "smoke.yaml", "--set", "optim.lrr=1"], ["optim.lrr: unknown key"]),
        (["--config", "smoke.yaml", "--set", "optim.lr=abc"], ["optim.lr: expected a number"]),
        (["--config", "smoke.yaml", "--set", "model.dropout=2"], ["model.dropout", "[0.0, 1.0)"]),
        (
            [
                "--config",
                "optimized.yaml",
                "--set",
                "data.dataset=imagefolder",
                "--data-root",
                "missing",
            ],
            ["missing has no train/ folder"],
        ),
    ],
)
def test_train_bad_input(
    tmp_path: Path, run_in_process: CliRunner, args: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(run_in_process("train.py", *args, cwd=tmp_path), *fragments)


def test_image_folder_without_classes(tmp_path: Path, run_in_process: CliRunner) -> None:
    (tmp_path / "empty" / "train").mkdir(parents=True)
    args = [
        "--config",
        "optimized.yaml",
        "--set",
        "data.dataset=imagefolder",
        "--data-root",
        "empty",
    ]
    assert_one_line_error(run_in_process("train.py", *args, cwd=tmp_path), "has no class folders")


def test_offline_download_fails_fast_with_a_way_out(tmp_path: Path) -> None:
    env_backup = dict(os.environ)
    # A proxy on a closed local port makes every download fail at once, online or not.
    os.environ.update(http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    try:
        proc = run_script("train.py", "--config", "baseline.yaml", cwd=tmp_path, check=False)
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    assert_one_line_error(proc, "downloading cifar10 into datasets/cifar10 failed", "--data-root")


def test_bad_cli_usage_is_an_argparse_error(tmp_path: Path, run_in_process: CliRunner) -> None:
    proc = run_in_process("train.py", "--config", cwd=tmp_path)
    assert proc.returncode == 2 and "expected one argument" in proc.stderr
    proc = run_in_process("evaluate.py", "--ckpt", "x.pt", "--bogus", cwd=tmp_path)
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def test_evaluate_missing_checkpoint(tmp_path: Path, run_in_process: CliRunner) -> None:
    # a child process once, so that one user error is checked end to end in each script
    proc = run_script("evaluate.py", "--ckpt", "best.pt", cwd=tmp_path, check=False)
    assert_one_line_error(proc, "'best.pt' not found")
    proc = run_in_process("evaluate.py", "--ckpt", "runs/x/best.pt", cwd=tmp_path)
    assert_one_line_error(proc, "runs/x/best.pt not found")


@pytest.mark.parametrize("damage", ["truncated", "empty", "random", "not_ours"])
def test_evaluate_broken_checkpoint(
    smoke_run: Path, tmp_path: Path, run_in_process: CliRunner, damage: str
) -> None:
    good = (smoke_run / "checkpoints/s/best.pt").read_bytes()
    content = {
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "random": random.Random(0).randbytes(4096),
        "not_ours": None,
    }[damage]
    path = tmp_path / "broken.pt"
    if content is None:
        import torch

        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    assert_one_line_error(
        run_in_process("evaluate.py", "--ckpt", str(path), cwd=tmp_path), str(path)
    )


def test_evaluate_class_count_mismatch(
    smoke_run: Path, tmp_path: Path, run_in_process: CliRunner
) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "imgs" / cls / "0.png")
    ckpt = str(smoke_run / "checkpoints/s/best.pt")
    proc = run_in_process("evaluate.py", "--ckpt", ckpt, "--image-folder", "imgs", cwd=tmp_path)
    assert_one_line_error(proc, "the checkpoint has 10 classes but the data set has 2")


def test_resume_refuses_overrides_that_change_the_run(
    smoke_run: Path, run_in_process: CliRunner
) -> None:
    args = ["--resume", "checkpoints/s", "--set", "data.split_seed=3"]
    proc = run_in_process("train.py", *args, cwd=smoke_run)
    assert_one_line_error(proc, "--set data.split_seed cannot change on resume", "train.epochs")


def test_resume_from_best_pt_is_refused(smoke_run: Path, run_in_process: CliRunner) -> None:
    proc = run_in_process("train.py", "--resume", "checkpoints/s/best.pt", cwd=smoke_run)
    assert_one_line_error(proc, "best epoch's weights", "resume from checkpoints/s")


def test_evaluate_refuses_same_count_other_classes(
    smoke_run: Path, tmp_path: Path, run_in_process: CliRunner
) -> None:
    from PIL import Image

    for i in range(10):
        (tmp_path / "imgs" / f"other_{i}").mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "imgs" / f"other_{i}" / "0.png")
    ckpt = str(smoke_run / "checkpoints/s/best.pt")
    proc = run_in_process("evaluate.py", "--ckpt", ckpt, "--image-folder", "imgs", cwd=tmp_path)
    assert_one_line_error(proc, "differ from the checkpoint's")


def test_evaluate_names_its_own_device_option(smoke_run: Path, run_in_process: CliRunner) -> None:
    args = ["--ckpt", "checkpoints/s/best.pt", "--device", "gpu0"]
    proc = run_in_process("evaluate.py", *args, cwd=smoke_run)
    assert_one_line_error(proc, "--device: 'gpu0' is not a torch device")
