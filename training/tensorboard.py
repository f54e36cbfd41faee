"""Live curves in TensorBoard: per step the training loss and learning rate, per epoch the
metrics row, at the end the hyperparameters with the final metrics (the HParams tab).

Optional: ``train.tensorboard`` null (the default) logs when the ``tensorboard`` package is
installed; true asks for it (and says once how to install it when it is missing); false is
off. Events go to ``<run>/tensorboard``. Everything is logged at the global step, so a resumed
run passes the step after its checkpoint's as ``purge_step`` and TensorBoard drops what the
stopped run had logged past its checkpoint: the curves continue without duplicate steps.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

INSTALL_HINT = "pip install tensorboard  (or pip install -r requirements-tensorboard.txt)"


def flat_hparams(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``section.key`` -> value for the numbers, strings and booleans of a config."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat |= flat_hparams(value, f"{prefix}{key}.")
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix + key] = value
    return flat


class TensorBoardLog:
    """A ``SummaryWriter`` for rank 0, or nothing: every method is then a no-op."""

    def __init__(self, run_dir: Path, wanted: bool | None, resume_step: int | None) -> None:
        self.writer = None
        self.seen = self.loss_sum = 0.0
        if wanted is False:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if wanted:
                tqdm.write(
                    f"warning: TensorBoard is not installed: {INSTALL_HINT}", file=sys.stderr
                )
            return
        # events logged past the checkpoint (steps > resume_step) by the stopped run are dropped
        purge_step = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def start_epoch(self, loss_sum: float, seen: int) -> None:
        """Sums of a partial epoch a resumed run starts from, so step losses stay per step."""
        self.loss_sum, self.seen = loss_sum, seen

    def step(self, step: int, loss_sum: float, seen: int, lr: float) -> None:
        if self.writer is None or seen == self.seen:
            return
        loss = (loss_sum - self.loss_sum) / (seen - self.seen)
        self.loss_sum, self.seen = loss_sum, seen
        self.writer.add_scalar("train/step_loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, step: int, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if key in ("epoch", "lr") or not isinstance(value, (int, float)):
                continue
            split, _, name = key.partition("_")
            tag = f"{split}/{name}" if split in ("train", "val", "raw") else f"epoch/{key}"
            self.writer.add_scalar(tag, value, step)
        self.writer.add_scalar("epoch/epoch", row["epoch"], step)
        self.writer.flush()

    def finish(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        if self.writer is None:
            return
        self.writer.add_hparams(flat_hparams(config), metrics, run_name="hparams")
        self.writer.close()
