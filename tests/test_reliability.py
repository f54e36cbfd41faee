"""Faults and hostile input: interrupted saves, kills, signals, NaNs, crafted files."""

import errno
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import data.loader
import training.autotune
import training.trainer
import utils.checkpoint
from data.datasets import folder_image_set
from evaluation.report import evaluate_checkpoint, format_report
from tests.conftest import REPO, run_script, tiny_config, wait_for
from training.interrupt import TrainingInterruptedError, stopped_by_signal
from training.loop import NonFiniteLossError
from training.run_state import RunState, restore_cuda_rng
from training.trainer import fit
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import CheckpointError, DataError, UserError
from utils.safe_write import WriteError

EXACT = ("early_stopping.patience=10",)


def without_timings(history: list[dict]) -> list[dict]:
    drop = ("epoch_time_s", "images_per_s")
    return [{k: v for k, v in row.items() if k not in drop} for row in history]


def assert_same_training_state(a: dict, b: dict) -> None:
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key, value in a["optimizer"]["state"].items():
        assert torch.equal(
            value["momentum_buffer"], b["optimizer"]["state"][key]["momentum_buffer"]
        )
    assert a["early_stopping"] == b["early_stopping"]
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
    assert without_timings(a["run_state"]["history"]) == without_timings(b["run_state"]["history"])


def test_failed_save_keeps_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint({"weights": torch.ones(3)}, path)

    def full_disk(obj: object, f: object) -> None:
        f.write(b"partial bytes")  # type: ignore[attr-defined]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(utils.checkpoint.torch, "save", full_disk)
    with pytest.raises(WriteError, match=r"last\.pt: No space left on device \(ENOSPC\)$"):
        save_checkpoint({"weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["weights"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left


def test_resume_at_epoch_boundary_is_bitwise_exact(tmp_path: Path) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.epochs=4", *EXACT)  # cosine over 4 epochs
    fit(cfg, tmp_path / "straight")
    fit(cfg, tmp_path / "split", stop_after_epochs=2)
    assert not (tmp_path / "split" / "summary.json").exists()
    fit(cfg, tmp_path / "split", load_checkpoint(tmp_path / "split" / "last.pt"))
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "last.pt")
    assert split["epoch"] == 4
    assert_same_training_state(straight, split)


def test_resume_keeps_the_timed_stage_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.layout_probe=true", "train.device=cpu")
    monkeypatch.setattr(training.autotune, "probe_nchw_stages", lambda *_: ["layer4"])
    fit(cfg, tmp_path / "run", stop_after_epochs=1)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["fast_path"]["nchw_stages"] == ["layer4"]
    monkeypatch.setattr(training.autotune, "probe_nchw_stages", lambda *_: ["layer1"])
    fit(cfg, tmp_path / "run", checkpoint)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["fast_path"]["nchw_stages"] == ["layer4"]
    fit(cfg, tmp_path / "new")  # a new run times afresh
    assert load_checkpoint(tmp_path / "new" / "last.pt")["fast_path"]["nchw_stages"] == ["layer1"]


def test_resume_with_another_process_count_is_refused(tmp_path: Path) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.epochs=1")
    fit(cfg, tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["run_state"]["world_size"] == 1
    checkpoint["run_state"]["world_size"] = 2  # as torchrun --nproc_per_node=2 records it
    with pytest.raises(UserError, match=r"trained with 2 process\(es\) and is resumed with 1"):
        fit(cfg, tmp_path / "run", checkpoint)


def test_signal_mid_epoch_saves_and_resumes_same_sample_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.epochs=2", *EXACT)
    served: dict[str, list[torch.Tensor]] = {}
    original = data.loader.InMemoryLoader.batches

    def recording(key: str, stop_at: int | None):
        def batches(self, epoch: int = 0, start_batch: int = 0):
            for i, (images, labels) in enumerate(original(self, epoch, start_batch)):
                if self.shuffle and epoch == 1:
                    served.setdefault(key, []).append(labels.clone())
                    if stop_at is not None and start_batch + i == stop_at:
                        os.kill(os.getpid(), signal.SIGTERM)
                        os.kill(os.getpid(), signal.SIGTERM)  # a second signal changes nothing
                yield images, labels

        return batches

    monkeypatch.setattr(data.loader.InMemoryLoader, "batches", recording("straight", None))
    fit(cfg, tmp_path / "straight")
    monkeypatch.setattr(data.loader.InMemoryLoader, "batches", recording("stopped", 3))
    with pytest.raises(TrainingInterruptedError, match=r"epoch 2, batch 4.*--resume") as err:
        fit(cfg, tmp_path / "split")
    assert err.value.exit_code == 128 + signal.SIGTERM
    saved = load_checkpoint(tmp_path / "split" / "last.pt")
    assert saved["epoch"] == 1 and saved["run_state"]["partial_epoch"]["steps"] == 4
    seconds_before_stop = saved["run_state"]["partial_epoch"]["seconds"]
    assert seconds_before_stop > 0
    report = evaluate_checkpoint(saved, tmp_path / "split" / "last.pt")
    assert report["epoch"] == 1 and report["steps_into_next_epoch"] == 4
    assert "weights after epoch 1 and 4 steps of the next" in format_report(report)
    monkeypatch.setattr(data.loader.InMemoryLoader, "batches", recording("stopped", None))
    fit(cfg, tmp_path / "split", saved)
    assert torch.equal(torch.cat(served["straight"]), torch.cat(served["stopped"]))
    resumed_epoch = load_checkpoint(tmp_path / "split" / "last.pt")["run_state"]["history"][1]
    assert resumed_epoch["epoch_time_s"] >= round(seconds_before_stop, 2)  # the whole epoch
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert_same_training_state(straight, load_checkpoint(tmp_path / "split" / "last.pt"))


class KilledError(Exception):
    """Stands in for kill -9: it leaves the run with no save on the way out."""


def test_timed_saves_change_nothing_and_a_kill_loses_only_the_steps_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves: list[tuple[int, int | None]] = []  # (epochs done, steps into the next) per save
    original_save, original_batches = training.trainer.Run.save, data.loader.InMemoryLoader.batches

    def recording_save(self, state: RunState, improved: bool = False) -> None:
        saves.append((state.epoch, state.partial_epoch and state.partial_epoch["steps"]))
        original_save(self, state, improved)

    def killed_at_step_4_of_epoch_2(self, epoch: int = 0, start_batch: int = 0):
        for i, batch in enumerate(original_batches(self, epoch, start_batch)):
            if self.shuffle and epoch == 1 and start_batch + i == 3:
                raise KilledError
            yield batch

    monkeypatch.setattr(training.trainer.Run, "save", recording_save)
    cfg = tiny_config("optimized", tmp_path, "train.epochs=2", *EXACT)
    fit(cfg, tmp_path / "straight")
    assert saves == [(1, None), (2, None)]  # off by default: epoch ends only
    steps = load_checkpoint(tmp_path / "straight" / "last.pt")["step"] // 2  # per epoch
    saves.clear()
    every_step = tiny_config("optimized", tmp_path, "train.epochs=2", *EXACT,
                             "train.save_every_minutes=1e-9")  # fmt: skip
    monkeypatch.setattr(data.loader.InMemoryLoader, "batches", killed_at_step_4_of_epoch_2)
    with pytest.raises(KilledError):
        fit(every_step, tmp_path / "killed")
    assert saves == [(0, s) for s in range(1, steps)] + [(1, None), (1, 1), (1, 2), (1, 3)]
    monkeypatch.setattr(data.loader.InMemoryLoader, "batches", original_batches)
    checkpoint = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert checkpoint["run_state"]["partial_epoch"]["steps"] == 3
    fit(every_step, tmp_path / "killed", checkpoint)
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert_same_training_state(straight, load_checkpoint(tmp_path / "killed" / "last.pt"))


@pytest.mark.slow
def test_sigint_from_outside_exits_nonzero_with_resume_hint(tmp_path: Path) -> None:
    args = ["--config", "smoke.yaml", "--set", "train.epochs=50", "--run-name", "r"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(tmp_path / "checkpoints/r/last.pt", proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Resume with: python train.py --resume checkpoints/r" in stderr
    assert "Traceback" not in stderr
    saved = load_checkpoint(tmp_path / "checkpoints/r/last.pt")
    epoch, partial = saved["epoch"], saved["run_state"]["partial_epoch"]
    more = ["--set", f"train.epochs={epoch + 1}"]
    proc = run_script("train.py", "--resume", "checkpoints/r", *more, cwd=tmp_path)
    within = f" and {partial['steps']} steps of epoch {epoch + 1}" if partial else ""
    assert f"resuming checkpoints/r after epoch {epoch}{within}\n" in proc.stdout


def test_a_stop_before_any_checkpoint_offers_no_resume(tmp_path: Path) -> None:
    """Data-parallel runs save no partial epoch, so a stop in epoch 1 leaves nothing."""
    err = stopped_by_signal(signal.SIGTERM, 0, None, tmp_path)
    assert "before any checkpoint" in str(err) and "Resume" not in str(err)
    assert err.exit_code == 128 + signal.SIGTERM


def test_only_the_training_gpus_generator_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    restored: list[tuple[torch.Tensor, torch.device]] = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d: restored.append((s, d)))
    states = [torch.tensor([0]), torch.tensor([1])]  # older checkpoints: one per visible GPU
    restore_cuda_rng(states, torch.device("cuda", 1))
    restore_cuda_rng(states, torch.device("cuda", 2))  # a GPU the saving host did not have
    restore_cuda_rng(states[0], torch.device("cuda", 0))
    restore_cuda_rng(states[0], torch.device("cpu"))  # a GPU run resumed on a CPU
    assert [(int(s), d.index) for s, d in restored] == [(1, 1), (0, 0)]


@pytest.mark.slow
def test_kill_9_then_resume_finishes(tmp_path: Path) -> None:
    args = [
        "--config",
        "smoke.yaml",
        "--set",
        "train.epochs=5",
        "--set",
        "early_stopping.enabled=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args, "--run-name", "k"], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for(tmp_path / "checkpoints/k/last.pt", proc)
    time.sleep(random.uniform(0, 2))  # anywhere in a later epoch, or in a save
    proc.kill()
    proc.wait()
    run_script("train.py", "--resume", "checkpoints/k", cwd=tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints/k/last.pt")["epoch"] == 5
    assert (tmp_path / "checkpoints/k/summary.json").is_file()


def test_nonfinite_loss_stops_naming_epoch_and_step(tmp_path: Path) -> None:
    cfg = tiny_config("optimized", tmp_path, "optim.lr=1e30", "schedule.warmup_epochs=0")
    with pytest.raises(NonFiniteLossError, match=r"epoch 1: loss is (nan|inf) at global step \d+"):
        fit(cfg, tmp_path / "run")


def test_nonfinite_weights_never_reach_best_pt(tmp_path: Path) -> None:
    fit(tiny_config("optimized", tmp_path, "train.epochs=1"), tmp_path / "run")
    best_before = (tmp_path / "run" / "best.pt").read_bytes()
    blow_up = ("optim.lr=1e30", "train.nonfinite_loss=skip", "train.epochs=3")
    state = fit(
        tiny_config("optimized", tmp_path, *blow_up, *EXACT),
        tmp_path / "run",
        load_checkpoint(tmp_path / "run" / "last.pt"),
    )
    assert any(row["skipped_steps"] > 0 for row in state.history[1:])
    assert (tmp_path / "run" / "best.pt").read_bytes() == best_before
    assert state.best_epoch == 1


class CreatesFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (self.path,))


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": CreatesFile(marker)}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_any_damaged_bytes_give_a_checkpoint_error(tmp_path: Path) -> None:
    """Random bytes reach many corners of the unpickler (IndexError, KeyError, struct.error);
    each must come out as the one error the command-line tools turn into a message."""
    path = tmp_path / "damaged.pt"
    rng = random.Random(0)
    for _ in range(300):
        path.write_bytes(rng.randbytes(rng.choice([1, 7, 64, 4096])))
        with pytest.raises(CheckpointError, match=r"damaged\.pt"):
            load_checkpoint(path)


@pytest.mark.parametrize("bad", ["truncated.jpg", "notes.jpg", "huge.png"])
def test_bad_image_named_or_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    folder = tmp_path / "train"
    (folder / "a").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(folder / "a" / f"{i}.png")
    if bad == "truncated.jpg":
        Image.new("RGB", (64, 64), (200, 0, 0)).save(folder / "a" / "whole.jpg")
        whole = (folder / "a" / "whole.jpg").read_bytes()
        (folder / "a" / "whole.jpg").unlink()
        (folder / "a" / bad).write_bytes(whole[: len(whole) // 2])
    elif bad == "notes.jpg":
        (folder / "a" / bad).write_text("this is not an image")
    else:  # over twice PIL's pixel limit is refused as a decompression bomb
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
        Image.new("RGB", (8, 8)).save(folder / "a" / "small.png")  # 64 px: fine
        Image.new("RGB", (30, 30)).save(folder / "a" / bad)
    with pytest.raises(DataError, match=rf"cannot decode image .*{bad}"):
        folder_image_set(folder, None, None)
    with pytest.warns(UserWarning, match=bad):
        kept = folder_image_set(folder, None, None, skip_bad=True)
    assert len(kept) == len(list((folder / "a").iterdir())) - 1
