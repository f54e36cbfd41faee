"""benchmarks/gpu_check.sh's time boxes, which run here without a GPU: a part is cut at its own
limit or at the check's deadline, whichever comes first, and a part with no time left is
skipped, so the check ends within the device time it was given."""

import os
import subprocess
from pathlib import Path

from tests.conftest import REPO


def test_parts_are_cut_at_their_limit_or_the_deadline_and_late_ones_skipped(
    tmp_path: Path,
) -> None:
    parts = (
        "part quick 5 true; part failing 5 false || echo $? >> $timings;"
        " part slow 1 sleep 5; part long 60 sleep 60; part late 5 true || echo $? >> $timings"
    )
    env = {**os.environ, "GPU_CHECK_SECONDS": "12", "logs": str(tmp_path)}
    env["timings"] = str(tmp_path / "timings.txt")
    script = f"source {REPO / 'benchmarks/timebox.sh'}; {parts}"
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=60)
    lines = (tmp_path / "timings.txt").read_text().splitlines()
    quick, failing, failing_rc, slow, long, late, late_rc = lines
    assert quick == "quick: rc 0, 0 s"
    assert (failing, failing_rc) == ("failing: rc 1, 0 s", "1")  # a part returns its rc
    assert slow == "slow: rc 124, 1 s"  # its own limit
    assert long.startswith("long: rc 124, ") and int(long.split()[-2]) <= 11  # the deadline
    assert (late, late_rc) == ("late: skipped, the check is out of time", "125")
    assert (tmp_path / "quick.log").is_file() and not (tmp_path / "late.log").exists()


def run_check(tree: Path, python: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GPU_CHECK_SECONDS": "60", "PYTHON": str(python)}
    script = REPO / "benchmarks/gpu_check.sh"
    return subprocess.run(
        ["bash", str(script), "out"], cwd=tree, env=env, text=True, capture_output=True, timeout=60
    )


def test_the_check_trains_seeds_side_by_side_scores_finished_runs_and_packs_no_weights(
    tmp_path: Path,
) -> None:
    """The script's plumbing, with a stand-in for Python that fails the best.yaml runs, leaves a
    weights file in each run and notes when each run started and ended."""
    data = tmp_path / "tree/shared/data"
    (tmp_path / "cifar10-jpg/train/cat").mkdir(parents=True)
    data.mkdir(parents=True)
    archive = ["tar", "-czf", data / "cifar10-jpg.tar.gz", "-C", tmp_path, "cifar10-jpg"]
    subprocess.run(archive, check=True)
    python = tmp_path / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        'case "$*" in *best.yaml*) exit 3;; esac\n'
        "if [[ $1 == train.py ]]; then\n"
        '  run=$(sed -E "s/.*--run-name ([^ ]+).*output_dir=([^ ]+).*/\\2\\/\\1/" <<< "$*")\n'
        f'  echo "start $(basename $run)" >> {tmp_path}/events; sleep 1\n'
        f'  echo "end $(basename $run)" >> {tmp_path}/events\n'
        '  mkdir -p "$run" && touch "$run/best.pt" "$run/summary.json"\n'
        "fi\n"
    )
    python.chmod(0o755)
    result = run_check(tmp_path / "tree", python)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "tree/out"
    parts = [line.split(":")[0] for line in (out / "timings.txt").read_text().splitlines()]
    assert parts[:4] == ["unpack", "gpu", "cuda_tests", "throughput"]
    baseline = {f"{kind}-baseline-s{seed}" for kind in ("train", "test") for seed in (0, 1, 2)}
    assert set(parts[4:10]) == baseline  # the first config whole before the next
    assert "train-best-30ep-s0" in parts and "test-best-30ep-s0" not in parts  # it failed
    assert "test-optimized-s2" in parts and parts[-2:] == ["test-budget-075-s0", "total"]
    events = (tmp_path / "events").read_text().split("\n")
    starts = [f"start baseline-s{seed}" for seed in (0, 1, 2)]
    assert sorted(events[:3]) == starts  # side by side: each seed starts before one ends
    packed = subprocess.run(
        ["tar", "-tzf", out / "gpu_check.tar.gz"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "logs/train-baseline-s1.log" in packed and "runs/baseline-s1/summary.json" in packed
    assert "runs/budget-075-s0/summary.json" in packed
    assert not [name for name in packed if name.endswith(".pt")]
    assert sorted(path.name for path in out.iterdir()) == ["gpu_check.tar.gz", "timings.txt"]


def test_the_check_without_the_data_archive_says_where_to_put_it(tmp_path: Path) -> None:
    result = run_check(tmp_path, Path("/bin/true"))
    assert result.returncode == 1
    assert "copy it into shared/data/" in (tmp_path / "out/timings.txt").read_text()
