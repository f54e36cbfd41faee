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
    parts = "part quick 5 true; part slow 1 sleep 5; part long 60 sleep 60; part late 5 true"
    env = {**os.environ, "GPU_CHECK_SECONDS": "12", "out": str(tmp_path)}
    env["timings"] = str(tmp_path / "timings.txt")
    script = f"source {REPO / 'benchmarks/timebox.sh'}; {parts}"
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=60)
    quick, slow, long, late = (tmp_path / "timings.txt").read_text().splitlines()
    assert quick == "quick: rc 0, 0 s"
    assert slow == "slow: rc 124, 1 s"  # its own limit
    assert long.startswith("long: rc 124, ") and int(long.split()[-2]) <= 11  # the deadline
    assert late == "late: skipped, the check is out of time"
    assert (tmp_path / "quick.log").is_file() and not (tmp_path / "late.log").exists()
