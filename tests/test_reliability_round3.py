"""Round 3 of the adversarial cases: every output written atomically, the temporaries of a
killed writer cleared, untrusted YAML bounded, names kept inside their folder, run records
type-checked (docs/reliability.md)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from data.image_files import find_images
from deploy.metadata import export_metadata
from evaluation.compare import compare_runs
from evaluation.prediction_output import csv_text, format_table
from evaluation.run_records import load_run
from experiments.sweep import read_plan
from tests.conftest import REPO, CliRunner, run_script, tiny_config
from tests.test_experiments import write_run_records
from training.trainer import fit
from utils.config import edited_config_warning, load_config
from utils.errors import ConfigError, DataError, UserError
from utils.run_lock import claim_run_dir
from utils.run_names import RunNameError, run_directory
from utils.safe_write import WriteError

CHILD_ENV = {**os.environ, "PYTHONPATH": str(REPO)}
MiB = 1 << 20
MAX_LINE = 300  # an error line quotes at most a short excerpt of a value


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def fill(disk: Path) -> None:
    """Take every free byte of ``disk``: blocks of a MiB, then single bytes (unbuffered)."""
    with (disk / "filler").open("wb", buffering=0) as filler:
        for block in (b"\0" * MiB, b"\0"):
            try:
                while True:
                    filler.write(block)
            except OSError:
                pass


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one tiny trained run, ``checkpoints/s``, and one image."""
    root = tmp_path_factory.mktemp("round3")
    cfg = tiny_config("smoke", root, "train.epochs=1", "data.synthetic_samples=240")
    fit(cfg, root / "checkpoints" / "s")
    Image.new("RGB", (32, 32), (200, 30, 30)).save(root / "red.png")
    return root


# --- 1. every output is written atomically ------------------------------------------------------


@pytest.mark.slow
def test_kill_9_during_an_onnx_export_keeps_the_old_file(workdir: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    target = tmp_path / "model.onnx"
    good = b"a good export\n" * 1000
    target.write_bytes(good)
    before = target.stat()
    command = [sys.executable, str(REPO / "export.py"), "--ckpt", "checkpoints/s/best.pt"]
    command += ["--format", "onnx", "--output", str(target), "--check-count", "0"]
    proc = subprocess.Popen(command, cwd=workdir, env=CHILD_ENV, stderr=subprocess.PIPE)
    # The moment the export starts to write: a temporary file appears beside the target, or,
    # written in place, the target itself changes. Then kill -9.
    deadline = time.monotonic() + 300
    while not temporary_files(tmp_path) and target.stat()[6:] == before[6:]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the export never started to write"
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == good


def predict_rows_csv(disk: Path, workdir: Path, run_in_process: CliRunner) -> Any:
    return run_in_process(
        "predict.py", "--ckpt", "checkpoints/s/best.pt", "red.png", "--output",
        str(disk / "preds.csv"), "--device", "cpu", cwd=workdir,
    )  # fmt: skip


def test_predict_output_onto_a_full_disk_keeps_the_old_file_and_names_it(
    workdir: Path, tmpfs: Callable[..., Path], run_in_process: CliRunner
) -> None:
    disk = tmpfs(4 * MiB)
    assert predict_rows_csv(disk, workdir, run_in_process).returncode == 0
    good = (disk / "preds.csv").read_bytes()
    (disk / "preds.csv").write_bytes(good[: len(good) // 2])  # something to tell apart
    half = (disk / "preds.csv").read_bytes()
    fill(disk)
    proc = predict_rows_csv(disk, workdir, run_in_process)
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        f"error: cannot write {disk}/preds.csv: No space left on device (ENOSPC)"
    ]
    assert (disk / "preds.csv").read_bytes() == half
    assert temporary_files(disk) == []


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["safetensors", "pt2"])
def test_an_export_onto_a_full_or_read_only_disk_is_one_line(
    workdir: Path, tmpfs: Callable[..., Path], fmt: str
) -> None:
    """In a child process: torch's zip writer, left failed on a full disk, aborted the
    process as it exited, after the error line."""
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    full, read_only = tmpfs(4 * MiB), tmpfs(MiB, "ro")
    fill(full)
    for disk, cause in ((full, "No space left on device (ENOSPC)"),
                        (read_only, "Read-only file system (EROFS)")):  # fmt: skip
        output = disk / f"model.{fmt}"
        proc = run_script(
            "export.py", "--ckpt", "checkpoints/s/best.pt", "--format", fmt, "--output",
            str(output), "--check-count", "0", cwd=workdir, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert error_lines(proc.stderr) == [f"error: cannot write {output}: {cause}"]
        assert "Traceback" not in proc.stderr and "terminate" not in proc.stderr
        assert temporary_files(disk) == []


def test_comparison_outputs_onto_a_full_disk_are_one_line(
    tmp_path: Path, tmpfs: Callable[..., Path]
) -> None:
    write_run_records(tmp_path / "r", best_epoch=1, epochs_run=1)
    disk = tmpfs(MiB)
    fill(disk)
    with pytest.raises(WriteError, match=rf"^cannot write {disk}/results.md: No space left"):
        compare_runs([tmp_path / "r"], disk)
    assert temporary_files(disk) == []


# --- 2. a killed writer's temporary files are cleared ---------------------------------------

KILLED_WRITER = """
import sys, time
from pathlib import Path
from utils.safe_write import atomic_write

def write(file):
    file.write(b"x" * (1 << 20))
    file.flush()
    print("writing", flush=True)
    time.sleep(600)

atomic_write(Path(sys.argv[1]), write)
"""


def killed_mid_write(target: Path) -> None:
    """A process killed with SIGKILL while it writes ``target``: its temporary stays."""
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)],
        env=CHILD_ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_a_resume_clears_the_temporaries_of_a_save_killed_with_kill_9(
    tmp_path: Path, run_in_process: CliRunner
) -> None:
    run_dir = tmp_path / "checkpoints" / "r"
    cfg = tiny_config("smoke", tmp_path / "checkpoints", "data.synthetic_samples=240")
    fit(cfg, run_dir, stop_after_epochs=1)
    killed_mid_write(run_dir / "last.pt")
    assert len(temporary_files(run_dir)) == 1
    proc = run_in_process("train.py", "--resume", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert temporary_files(run_dir) == []
    assert "epoch   2/2" in proc.stdout


def test_a_live_writers_temporary_file_is_kept(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    live = run_dir / f".last.pt.{os.getpid()}.0123abcd.tmp"  # this process is alive
    live.write_bytes(b"x")
    with claim_run_dir(run_dir):
        assert live.exists()


# --- 3. untrusted YAML is bounded -------------------------------------------------------------

LAUGHS = "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)
)  # 9**9 values once expanded, in about 400 bytes
BILLION_LAUGHS = 'l0: &l0 "lol"\n' + LAUGHS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BILLION_LAUGHS + "name: *l8\n", "more than 100000 values once its aliases are expanded"),
        ("name: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 32 levels"),
        ("name: &a [*a]\n", "alias 'a' refers to no finished value"),
    ],
    ids=["billion-laughs", "deep", "self-alias"],
)
def test_a_config_that_would_take_unbounded_time_or_memory_is_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=message) as err:
        load_config(str(path))
    assert time.perf_counter() - start < 5
    assert "\n" not in str(err.value) and len(str(err.value)) < MAX_LINE


@pytest.mark.parametrize(
    "text",
    [
        "name: [" + ", ".join(["x"] * 50_000) + "]\n",  # a long list
        "name: run\ndata: {batch_size: " + "9" * 100_000 + "x}\n",  # a long string
        "name: run\n" + "k" * 100_000 + ": 1\n",  # a long key
    ],
    ids=["long-list", "long-string", "long-key"],
)
def test_an_error_quotes_a_bad_value_by_a_short_excerpt(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert "\n" not in str(err.value) and len(str(err.value)) < MAX_LINE


def test_a_set_value_goes_through_the_same_bounds() -> None:
    laughs = "{" + BILLION_LAUGHS.replace("\n", ", ").rstrip(", ") + ", x: *l8}"
    with pytest.raises(ConfigError, match="more than 100000 values") as err:
        load_config("smoke.yaml", [f"name={laughs}"])
    assert len(str(err.value)) < MAX_LINE


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (BILLION_LAUGHS + "runs: *l8\n", "more than 100000 values"),
        ("runs:" + " [" * 5000, "nested deeper than 32 levels"),
        (bytes(range(256)) * 4, "not a text file"),
        ("runs:\n  - {name: a, config: smoke.yaml, name: b}\n", "duplicate key 'name'"),
    ],
    ids=["billion-laughs", "deep", "random-bytes", "duplicate-key"],
)
def test_a_sweep_plan_is_read_by_the_strict_loader(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    plan = tmp_path / "plan.yaml"
    if isinstance(content, bytes):
        plan.write_bytes(content)
    else:
        plan.write_text(content)
    with pytest.raises(UserError, match=message) as err:
        read_plan(plan)
    assert "\n" not in str(err.value) and len(str(err.value)) < MAX_LINE


# --- 4. names become paths only inside their folder --------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "../../somewhere", "a/b", ""])
def test_a_run_name_that_is_not_one_folder_name_is_refused_before_anything_is_written(
    tmp_path: Path, run_in_process: CliRunner, name: str
) -> None:
    workdir = tmp_path / "repo"
    workdir.mkdir()
    proc = run_in_process("train.py", "--config", "smoke.yaml", "--run-name", name, cwd=workdir)
    assert proc.returncode == 2
    [line] = error_lines(proc.stderr)
    assert line.startswith("error: --run-name: the run name ") and "is not a folder name" in line
    assert sorted(tmp_path.rglob("*")) == [workdir]


def test_a_config_name_that_is_a_path_is_refused(tmp_path: Path, run_in_process: CliRunner) -> None:
    (tmp_path / "c.yaml").write_text("name: ../../escaped\n")
    proc = run_in_process("train.py", "--config", "c.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    [line] = error_lines(proc.stderr)
    assert line.startswith("error: c.yaml: name: the run name '../../escaped-")


def test_a_sweep_plan_run_name_cannot_leave_the_output_folder(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("runs:\n  - {name: ../../../x, config: smoke.yaml}\n")
    with pytest.raises(RunNameError, match=r"run '../../../x': the run name '../../../x' is not"):
        read_plan(plan)


def test_a_run_folder_linked_out_of_its_output_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "r").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RunNameError, match="outside"):
        run_directory(tmp_path / "out", "r", "--run-name")
    assert run_directory(tmp_path / "out", "s", "--run-name") == tmp_path / "out" / "s"


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised() -> None:
    names = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "plain"]
    rows = [
        {
            "path": "-photo.png",
            "predicted": names[0],
            "probability": 0.5,
            "top_k": [{"class": names[0], "probability": 0.5}],
            "probabilities": dict.fromkeys(names, 0.1),
        }
    ]
    cells = list(csv.reader(io.StringIO(csv_text(rows))))
    assert cells[1][:4] == ["'-photo.png", "'" + names[0], "0.5", "'" + names[0]]
    assert cells[0][-1] == "p(plain)" and cells[1][-1] == "0.1"  # numbers stay numbers


# --- 5. run records are type-checked --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("summary.json", {"best_val_acc": "0.9"}, "summary.json: best_val_acc should be a finite"),
        ("summary.json", {"best_val_loss": float("nan")}, "summary.json: best_val_loss should"),
        ("summary.json", {"hardware": 3}, "summary.json: hardware should be text, got 3"),
        ("summary.json", {"time_budget": {"minutes": "x"}}, "summary.json: time_budget should"),
        ("metrics.json", {"val_acc": "high"}, "metrics.json: row 1: val_acc should be a number"),
        ("config.yaml", {"name": ["a"]}, "config.yaml: name should be text"),
    ],
)
def test_a_run_record_with_a_wrong_type_is_one_line_naming_the_run_file_and_key(
    tmp_path: Path, name: str, edit: dict[str, Any], message: str
) -> None:
    run_dir = tmp_path / "r"
    write_run_records(run_dir, best_epoch=1, epochs_run=1)
    path = run_dir / name
    if name == "config.yaml":
        path.write_text(json.dumps({"train": {"seed": 0}, **edit}))
    elif name == "metrics.json":
        path.write_text(json.dumps([{**json.loads(path.read_text())[0], **edit}]))
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(UserError, match=f"^{run_dir}/{message}") as err:
        compare_runs([run_dir], tmp_path / "out")
    assert "\n" not in str(err.value)


def test_an_eval_record_with_a_wrong_type_is_one_line(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    write_run_records(run_dir, best_epoch=1, epochs_run=1)
    (run_dir / "eval-test").mkdir()
    metrics = {"checkpoint": str(run_dir / "best.pt"), "split": "test", "epoch": 1}
    (run_dir / "eval-test" / "metrics.json").write_text(
        json.dumps({**metrics, "accuracy": None, "loss": 1.0})
    )
    with pytest.raises(UserError, match=r"eval-test/metrics\.json: accuracy should be a finite"):
        load_run(run_dir)


# --- smaller items ------------------------------------------------------------------------------


def test_a_dangling_output_folder_link_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").symlink_to(tmp_path / "gone")
    with pytest.raises(WriteError) as err, claim_run_dir(tmp_path / "checkpoints" / "r"):
        pass
    assert str(err.value) == (
        f"cannot write {tmp_path}/checkpoints: {tmp_path}/checkpoints is a symbolic link to "
        f"{tmp_path}/gone, which does not exist"
    )


def test_a_fifo_given_to_predict_is_not_said_to_be_missing(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="pipe: not a regular file"):
        find_images([str(fifo)])


def test_the_console_table_escapes_a_newline_in_a_class_name() -> None:
    row = {"path": "a\nb.png", "top_k": [{"class": "cat\ndog", "probability": 0.9}]}
    table = format_table([row])
    assert table.splitlines()[1].split() == ["a\\nb.png", "cat\\ndog", "0.9000"]
    assert len(table.splitlines()) == 2


def test_an_export_of_a_mid_epoch_last_pt_records_the_steps_it_holds() -> None:
    checkpoint = {
        "input_side": 32, "normalization": {"mean": [0.5] * 3, "std": [0.2] * 3},
        "class_names": ["a", "b"], "model_args": {"num_classes": 2}, "epoch": 0,
        "run_state": {"partial_epoch": {"steps": 7}},
    }  # fmt: skip
    metadata = export_metadata(checkpoint, softmax=False)
    assert (metadata["epoch"], metadata["steps_into_next_epoch"]) == (0, 7)


def test_an_edited_config_yaml_is_said_on_resume(tmp_path: Path) -> None:
    stored = {"name": "r", "train": {"epochs": 5, "seed": 0}}
    (tmp_path / "config.yaml").write_text("name: r\ntrain: {epochs: 5, seed: 0}\n")
    assert edited_config_warning(tmp_path, stored) is None
    (tmp_path / "config.yaml").write_text("name: r\ntrain: {epochs: 50, seed: 0}\n")
    assert edited_config_warning(tmp_path, stored) == (
        f"warning: {tmp_path}/config.yaml: edited (train.epochs: 50 in the file, 5 in the "
        "checkpoint); a resume uses the checkpoint's config and rewrites the file; change a "
        "key that may change with --set KEY=VALUE"
    )
