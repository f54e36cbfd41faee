"""Turn SIGINT/SIGTERM into a request to stop at the next step boundary."""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType, TracebackType

from utils.errors import UserError


class TrainingInterruptedError(UserError):
    """Training stopped on a signal after saving a resumable checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class StopOnSignal:
    """While active, SIGINT and SIGTERM set ``signum`` instead of killing the process.

    The loop polls ``requested()`` between steps, saves, and exits. A second signal while
    stopping is only acknowledged: the checkpoint being written is not cut short.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            print("already stopping: waiting for the checkpoint to be written", file=sys.stderr)
            return
        self.signum = signum
        name = signal.Signals(signum).name
        print(f"\n{name} received: stopping after this step", file=sys.stderr)

    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is not threading.main_thread():
            return self  # Python delivers signals to the main thread only
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self, kind: type | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def stopped_by_signal(
    signum: int, epochs_done: int, steps_into_epoch: int | None, run_dir: Path
) -> TrainingInterruptedError:
    """The error a run stopped by ``signum`` ends with: where it stopped, how to resume."""
    name = signal.Signals(signum).name
    if not (run_dir / "last.pt").is_file():  # data parallel: no save inside the first epoch
        message = f"{name}: stopped in epoch 1, before any checkpoint; start the run again"
        return TrainingInterruptedError(message, signum)
    where = (
        f"epoch {epochs_done + 1}, batch {steps_into_epoch}"
        if steps_into_epoch is not None
        else f"the end of epoch {epochs_done} (a partly done epoch restarts on resume)"
    )
    return TrainingInterruptedError(
        f"{name}: stopped at {where}; saved {run_dir / 'last.pt'}. "
        f"Resume with: {resume_command(run_dir)}",
        signum,
    )


def resume_command(run_dir: Path) -> str:
    """The command that resumes the run in ``run_dir``, quoted to paste back into a shell."""
    return shlex.join(["python", "train.py", "--resume", str(run_dir)])
