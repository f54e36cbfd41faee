"""Faults of the machine around a run: a second training in its directory, a full or read-only
disk, a failing decode cache, Ctrl-C while the imports load, paths with spaces."""

import errno
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

import data.datasets
import utils.checkpoint
from data.datasets import folder_image_set
from tests.conftest import REPO, CliRunner, tiny_config
from training.interrupt import stopped_by_signal
from training.run_state import RunState
from training.summary import write_summary
from training.trainer import fit
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.config import save_config
from utils.device import FastPath
from utils.run_lock import RunInUseError, claim_run_dir
from utils.run_log import write_history
from utils.safe_write import WriteError

CHILD_ENV = {**os.environ, "PYTHONPATH": str(REPO)}
SMOKE = ["--config", "smoke.yaml", "--set", "data.synthetic_samples=400", "--set", "train.epochs=2"]
MiB = 1 << 20


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.suffix]


# --- one training per run directory ---------------------------------------------------------


@pytest.mark.slow
def test_two_trainings_with_one_run_name_the_second_is_refused_at_once(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "train.py"), *SMOKE, "--run-name", "same"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    procs = [subprocess.Popen(command, cwd=tmp_path, env=CHILD_ENV, **pipes) for _ in range(2)]
    deadline = time.monotonic() + 300
    while all(p.poll() is None for p in procs):
        assert time.monotonic() < deadline, "neither training ended"
        time.sleep(0.05)
    refused, winner = procs if procs[0].poll() is not None else procs[::-1]
    assert winner.poll() is None, "the second training ran to the end instead of being refused"
    _, stderr = refused.communicate()
    assert refused.returncode == 2 and "Traceback" not in stderr, stderr
    (line,) = error_lines(stderr)
    assert "checkpoints/same is in use by another training (process " in line
    _, stderr = winner.communicate(timeout=300)
    assert winner.returncode == 0, stderr
    assert load_checkpoint(tmp_path / "checkpoints/same/last.pt")["epoch"] == 2


def hold_in_child(run_dir: Path) -> subprocess.Popen:
    """A process that claims ``run_dir`` and keeps it until killed."""
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom utils.run_lock import claim_run_dir\n"
        f"with claim_run_dir(Path({str(run_dir)!r})):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], env=CHILD_ENV, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    return child


def test_a_killed_holder_leaves_no_claim_behind(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    holder = hold_in_child(run_dir)
    busy = rf"in use by another training \(process {holder.pid}\)"
    with pytest.raises(RunInUseError, match=busy), claim_run_dir(run_dir):
        pass
    holder.kill()  # as kill -9 or a crash would
    holder.wait()
    with claim_run_dir(run_dir):  # the system released the lock with its process
        pass


def test_resuming_a_run_that_is_still_training_is_refused(
    tmp_path: Path, run_in_process: CliRunner
) -> None:
    run_dir = tmp_path / "checkpoints" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").touch()  # not read: the claim comes first
    with claim_run_dir(run_dir):
        proc = run_in_process("train.py", "--resume", "checkpoints/r", cwd=tmp_path)
    assert proc.returncode == 2 and "checkpoints/r is in use by another training" in proc.stderr


def test_under_torchrun_only_rank_0_claims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with claim_run_dir(tmp_path / "run"):
        monkeypatch.setenv("RANK", "1")
        with claim_run_dir(tmp_path / "run"):  # rank 0 holds it for the job
            pass


# --- failed writes -------------------------------------------------------------------------


def resize(point: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(point)], check=True)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_the_run_resumes_once_freed(
    tmpfs: Callable[..., Path],
) -> None:
    disk = tmpfs(1 << 30)  # memory is only used as files fill it
    run_dir = disk / "run"
    cfg = tiny_config("optimized", disk, "train.epochs=3", "early_stopping.patience=10")
    fit(cfg, run_dir, stop_after_epochs=1)
    resize(disk, shutil.disk_usage(disk).used + 4 * MiB)  # no room for another checkpoint
    with pytest.raises(WriteError) as failed:
        fit(cfg, run_dir, load_checkpoint(run_dir / "last.pt"))
    assert str(failed.value).startswith(f"cannot write {run_dir}/")
    assert "pt: No space left on device (ENOSPC); the previous files are kept; " in str(
        failed.value
    )
    assert f"resume with: python train.py --resume {run_dir}" in str(failed.value)
    assert temporary_files(disk) == []
    last = load_checkpoint(run_dir / "last.pt")
    assert last["epoch"] == 1  # what is on disk is what the record says
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == last["run_state"]["best_epoch"]
    resize(disk, 1 << 30)
    state = fit(cfg, run_dir, last)
    assert state.epoch == 3
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == state.best_epoch


def permission_denied(*args: object, **kwargs: object) -> None:
    raise PermissionError(errno.EACCES, "Permission denied")


@pytest.mark.parametrize("writer", ["checkpoint", "metrics", "config"])
def test_a_write_without_permission_names_the_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    write, path = {
        "checkpoint": (lambda: save_checkpoint({"weights": torch.ones(2)}, path), "last.pt"),
        "metrics": (lambda: write_history([{"epoch": 1}], tmp_path), "metrics.csv"),
        "config": (lambda: save_config(tiny_config("smoke", tmp_path), path), "config.yaml"),
    }[writer]
    path = tmp_path / path
    path.write_text("before")
    monkeypatch.setattr(os, "replace", permission_denied)
    with pytest.raises(WriteError, match=rf"cannot write {path}: Permission denied \(EACCES\)$"):
        write()
    assert path.read_text() == "before"
    assert temporary_files(tmp_path) == []


def test_a_failed_best_pt_leaves_last_pt_unwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """best.pt is written first, so last.pt never records a best epoch whose file is missing."""
    real_save = utils.checkpoint.save_checkpoint

    def best_fails(payload: dict, path: Path) -> None:
        if path.name == "best.pt":
            raise WriteError(f"cannot write {path}: No space left on device (ENOSPC)")
        real_save(payload, path)

    monkeypatch.setattr("training.run.save_checkpoint", best_fails)
    with pytest.raises(WriteError, match=r"best\.pt: .*no checkpoint was written yet"):
        fit(tiny_config("optimized", tmp_path, "train.epochs=1"), tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_resume_rewrites_a_best_pt_the_record_names_but_the_disk_lacks(
    tmp_path: Path, run_in_process: CliRunner
) -> None:
    run_dir = tmp_path / "checkpoints" / "r"
    fit(tiny_config("optimized", tmp_path, "train.epochs=1"), run_dir)
    (run_dir / "best.pt").unlink()  # as a full disk left it when last.pt was written first
    proc = run_in_process("train.py", "--resume", "checkpoints/r", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "rewrote checkpoints/r/best.pt from checkpoints/r/last.pt" in proc.stdout
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with one epoch of tiny training, shared by the evaluation tests."""
    workdir = tmp_path_factory.mktemp("trained")
    fit(tiny_config("smoke", workdir, "train.epochs=1"), workdir / "run")
    return workdir / "run"


def test_evaluate_into_a_read_only_output_dir_is_one_line(
    trained: Path, tmpfs: Callable[..., Path], run_in_process: CliRunner
) -> None:
    read_only = tmpfs(MiB, "ro")
    args = ["--ckpt", str(trained / "best.pt"), "--output-dir", str(read_only / "eval")]
    proc = run_in_process("evaluate.py", *args, cwd=trained)
    assert proc.returncode == 2, proc.stderr
    (line,) = error_lines(proc.stderr)
    assert line == f"error: {read_only / 'eval'}: Read-only file system (EROFS)"


def test_evaluate_into_a_folder_without_permission_is_one_line(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_in_process: CliRunner
) -> None:
    out = tmp_path / "eval"
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self == out:  # as for a user without write permission on tmp_path
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", mkdir)
    proc = run_in_process("evaluate.py", "--ckpt", str(trained / "best.pt"), "--output-dir",
                          str(out), cwd=trained)  # fmt: skip
    assert proc.returncode == 2 and error_lines(proc.stderr) == [
        f"error: {out}: Permission denied (EACCES)"
    ]


# --- the decode cache -----------------------------------------------------------------------


def image_folder(root: Path) -> Path:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / cls / f"{i}.png")
    return root


FAILURES = [OSError(errno.ENOSPC, "No space left on device"), PermissionError(errno.EACCES, "no")]


@pytest.mark.parametrize("failure", FAILURES)
def test_a_cache_that_cannot_be_written_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: OSError
) -> None:
    folder, cache = image_folder(tmp_path / "train"), tmp_path / "cache"

    def fails(payload: object, file) -> None:
        file.write(b"x" * 4096)  # part of the file went out before the disk filled
        raise failure

    monkeypatch.setattr(data.datasets.torch, "save", fails)
    with pytest.warns(UserWarning, match=r"cannot write .*cache.*; going on without the decode"):
        images = folder_image_set(folder, None, cache)
    assert len(images) == 4
    assert list(cache.iterdir()) == []


def test_an_interrupted_cache_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, cache = image_folder(tmp_path / "train"), tmp_path / "cache"

    def interrupted(payload: object, file) -> None:
        file.write(b"x" * 4096)
        raise KeyboardInterrupt

    monkeypatch.setattr(data.datasets.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        folder_image_set(folder, None, cache)
    assert list(cache.iterdir()) == []


# --- Ctrl-C while imports load, printed commands ---------------------------------------------


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "predict.py", "export.py"])
def test_ctrl_c_while_the_imports_load_exits_130_without_a_traceback(
    tmp_path: Path, script: str
) -> None:
    """A real SIGINT, sent the moment the script starts importing torch."""
    code = (
        "import os, runpy, signal, sys\n"
        "class InterruptOnTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, InterruptOnTorch())\n"
        # a shell's background job (nohup ... &) starts with SIGINT ignored; a terminal's does not
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"sys.argv = [{script!r}, '--config', 'smoke.yaml']\n"
        f"runpy.run_path({str(REPO / script)!r}, run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=CHILD_ENV, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "interrupted"


def test_printed_commands_paste_back_into_a_shell(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "my runs" / "it's 1"
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").touch()
    stopped = str(stopped_by_signal(signal.SIGINT, 1, 3, run_dir))
    resume = shlex.split(stopped.partition("Resume with: ")[2])
    assert resume == ["python", "train.py", "--resume", str(run_dir)]
    state = RunState(epoch=1, best_epoch=1, best_val_loss=0.5, best_val_acc=0.5)
    write_summary(state, run_dir, "cpu", FastPath("fp32"))
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("evaluate: ")]
    evaluate = shlex.split(line.removeprefix("evaluate: "))
    assert evaluate == ["python", "evaluate.py", "--ckpt", str(run_dir / "best.pt")]
