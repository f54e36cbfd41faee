"""``fit``, the training recipe: where to train -> data and model -> fast path -> optimiser,
step and run state -> epochs (train, validate, count, save) -> summary.

Takes a typed ``Config`` and a run directory; knows nothing of YAML files or the command line.
"""

from __future__ import annotations

import dataclasses
import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from data import DataBundle, check_same_data, create_data
from data.mix import BatchMixer
from models import apply_layout, create_model, model_args
from training.autotune import choose_fast_path
from training.budget import plan_budgets
from training.clocks import SaveClock, Stopwatch
from training.compute import train_gflop_per_image
from training.distributed import Distributed, start_processes
from training.early_stopping import EarlyStopping
from training.finetune import (
    frozen_norms_for_epoch,
    start_from_pretrained,
    with_pretrained_defaults,
)
from training.interrupt import StopOnSignal, stopped_by_signal
from training.loop import (
    EpochHooks,
    EpochStats,
    NonFiniteLossError,
    StepContext,
    default_sync_every,
    epoch_generator,
    evaluate_loss_accuracy,
    partial_epoch_record,
    restore_generator,
    train_one_epoch,
)
from training.optimizer import WeightAverage, build_optimizer
from training.run import Run
from training.run_state import RunState, restore
from training.schedule import LrSchedule
from training.summary import epoch_row, format_epoch, write_summary
from training.tensorboard import TensorBoardLog
from utils.config import Config, TrainConfig, config_to_dict, save_config
from utils.device import FastPath, emulated_bf16_warning, recorded_fast_path
from utils.hardware import describe_hardware
from utils.run_log import write_history


def fit(
    cfg: Config,
    run_dir: Path,
    checkpoint: dict[str, Any] | None = None,
    stop_after_epochs: int | None = None,
) -> RunState:
    """Train per ``cfg``, writing checkpoints and metrics to ``run_dir``; resume from
    ``checkpoint`` when given. ``stop_after_epochs`` ends this call early (resumable).
    Under torchrun every rank calls this; rank 0 alone writes files. Returns the run state."""
    # 1. Where to train, once; a resumed run must see the processes and data it trained with.
    cfg = with_pretrained_defaults(cfg)
    trained_world_size = checkpoint["run_state"].get("world_size") if checkpoint else None
    dist, device = start_processes(cfg.train, trained_world_size)
    # 2. Data and model.
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    data = create_data(
        cfg.data, cfg.train.seed, device, cfg.train.channels_last, dist.rank, dist.world_size
    )
    if checkpoint is not None:
        check_same_data(checkpoint.get("data_fingerprint"), data.fingerprint, cfg.data.root)
    model = create_model(**model_args(cfg.model, len(data.class_names)))
    if cfg.model.pretrained and checkpoint is None:  # a resumed run has its own weights
        start_from_pretrained(model, cfg.model.pretrained, len(data.class_names), dist)
    model = model.to(device)
    # 3. The fast path (precision, layout): a resumed run keeps its own, a new one measures.
    if checkpoint is not None:
        fast_path = recorded_fast_path(checkpoint).on(device)
    else:
        fast_path = choose_fast_path(
            cfg.train, device, dist, model, data.input_side, cfg.data.batch_size
        )
    model, train_module = prepare_model(model, cfg.train, fast_path, dist, device)
    # 4. The step's objects, early stopping, and the run's progress (restored on resume).
    run = Run(
        cfg=cfg,
        run_dir=run_dir,
        dist=dist,
        device=device,
        fast_path=fast_path,
        data=data,
        model=model,
        ctx=step_context(
            cfg, data, fast_path=fast_path, dist=dist, model=model, train_module=train_module
        ),
        early_stopping=EarlyStopping(**vars(cfg.early_stopping)),
    )
    state = RunState(world_size=dist.world_size)
    if checkpoint is not None:
        state = restore(
            checkpoint,
            model,
            run.ctx.optimizer,
            run.early_stopping,
            scaler=run.ctx.scaler,
            ema=run.ctx.ema,
        )
        state.world_size = dist.world_size
    # 5. Budgets, and the schedules laid out for the steps they buy.
    run.budget, run.budget_steps = plan_budgets(
        cfg, data, state.budget, gflop_per_image=run.ctx.gflop_per_image, dist=dist, device=device
    )
    run.replan_schedules()
    if dist.enabled:  # distinct dropout masks per rank
        torch.manual_seed(cfg.train.seed + 1_000 * dist.rank + 100_003 * state.epoch)
    hardware = f"{describe_hardware(device)} x{dist.world_size}"
    if dist.is_main:
        run.tensorboard = TensorBoardLog(run_dir, cfg.train.tensorboard, resumed_step(state))
        start_run_dir(run, hardware)
    # 6. Epochs: train, validate, count, save; a signal stops at the next step, place saved.
    first_epoch = state.epoch
    with StopOnSignal() as signals:

        def stop_requested() -> bool:
            return dist.any([signals.requested()])[0]

        while state.epoch < run.epochs and not state.stopped_early:
            if stop_after_epochs is not None and state.epoch - first_epoch >= stop_after_epochs:
                return state
            run.ctx.keep_frozen(frozen_norms_for_epoch(cfg, model, state.epoch, dist))
            epoch = train_epoch_with_saves(run, state, signals.requested)
            if epoch.partial is not None:
                if not dist.enabled:  # per-rank RNG and sums are not gathered: redo the epoch
                    state.partial_epoch = epoch.partial
                    run.save(state)
                raise signal_stop(signals.signum, state, run_dir)
            state.partial_epoch = None
            train_seconds = epoch.stopwatch.elapsed()
            scores = {"train": epoch.stats, **validate(run)}
            epoch_seconds = epoch.stopwatch.elapsed()
            state.epoch += 1
            state.step += epoch.stats.steps
            state.train_seconds += epoch_seconds
            state.train_pflop += dist.sum([epoch.stats.gflop])[0] / 1e6
            row = epoch_row(
                dist,
                scores,
                state=state,
                lr=run.ctx.schedule.lr(state.step - 1),
                train_seconds=train_seconds,
                epoch_seconds=epoch_seconds,
            )
            state.history.append(row)
            if run.budget and run.budget.after_epoch(
                train_seconds=train_seconds,
                gflop=epoch.stats.gflop,
                val_seconds=epoch_seconds - train_seconds,
                step=state.step,
                spent=state.train_seconds,
            ):
                run.replan_schedules(announce=True)
            out_of_patience = run.early_stopping.update(row["val_loss"])
            state.stopped_early = dist.broadcast_from_main([out_of_patience])[0]
            finish_epoch(run, state, row)
            if stop_requested() and state.epoch < run.epochs and not state.stopped_early:
                raise signal_stop(signals.signum, state, run_dir)
    # 7. The outcome.
    if dist.is_main:
        write_summary(state, run_dir, hardware, fast_path, run.budget)
        run.tensorboard.finish(
            config_to_dict(cfg),
            {"best_val_loss": state.best_val_loss, "best_val_acc": state.best_val_acc},
        )
    return state


def step_context(
    cfg: Config,
    data: DataBundle,
    *,
    fast_path: FastPath,
    dist: Distributed,
    model: nn.Module,
    train_module: nn.Module,
) -> StepContext:
    """The objects a training step uses: optimiser, loss, precision, mixing, weight average.
    The schedules are laid out once the budget is known (``Run.replan_schedules``)."""
    lr = cfg.optim.lr * (dist.world_size if cfg.optim.scale_lr else 1)
    device = next(model.parameters()).device
    mixer = BatchMixer(cfg.train.mixup_alpha, cfg.train.cutmix_alpha)
    arguments = model_args(cfg.model, len(data.class_names))
    return StepContext(
        model=train_module,
        optimizer=build_optimizer(model, cfg.optim, lr),
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing),
        schedule=LrSchedule(cfg.schedule, lr, cfg.train.epochs, len(data.train)),
        autocast=fast_path.autocast(device),
        scaler=torch.amp.GradScaler("cuda") if fast_path.precision == "fp16" else None,
        skip_nonfinite=cfg.train.nonfinite_loss == "skip",
        mixer=mixer if mixer.enabled else None,
        ema=WeightAverage(model, cfg.train.ema_decay) if cfg.train.ema_decay else None,
        gflop_per_image=functools.partial(train_gflop_per_image, arguments),
        sync_every=cfg.train.sync_every or default_sync_every(device),
        any_rank=dist.any,
    )


def prepare_model(
    model: nn.Module,
    cfg: TrainConfig,
    fast_path: FastPath,
    dist: Distributed,
    device: torch.device,
) -> tuple[nn.Module, nn.Module]:
    """The model in its memory layout, and the module that trains it: DDP-wrapped under
    torchrun (with SyncBatchNorm when asked), compiled with ``train.compile``."""
    if fast_path.channels_last:
        model = apply_layout(model, list(fast_path.nchw_stages))
    train_module = model
    if dist.enabled:
        if cfg.sync_batchnorm:
            model = train_module = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [dist.local_rank] if device.type == "cuda" else None
        # no per-step buffer broadcast: training uses batch statistics, and validation and
        # checkpoints take rank 0's running statistics (Distributed.share_buffers_from_main)
        train_module = DistributedDataParallel(
            model, device_ids=device_ids, broadcast_buffers=False
        )
    return model, torch.compile(train_module) if cfg.compile else train_module


def resumed_step(state: RunState) -> int | None:
    """The global step a resumed run goes on from (into a partly done epoch); None when new."""
    if not state.epoch and state.partial_epoch is None:
        return None
    return state.step + (state.partial_epoch or {}).get("steps", 0)


def start_run_dir(run: Run, hardware: str) -> None:
    """Write the resolved config beside the run and say what is about to train."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run.cfg, run.run_dir / "config.yaml")
    tqdm.write(
        f"run {run.run_dir} | {hardware} | {run.fast_path.describe()} | "
        f"{len(run.data.train.labels)} train / {len(run.data.val.labels)} val images"
    )
    if warning := emulated_bf16_warning(run.fast_path.precision, run.device):
        tqdm.write(warning, file=sys.stderr)
    if run.dist.enabled and run.cfg.train.save_every_minutes is not None:
        tqdm.write(
            "warning: train.save_every_minutes is ignored under torchrun: an epoch cut "
            "short restarts there, so last.pt is written at epoch ends only",
            file=sys.stderr,
        )


@dataclasses.dataclass
class EpochResult:
    stats: EpochStats  # cumulative over the epoch, resumed part included
    stopwatch: Stopwatch  # the epoch's seconds so far
    partial: dict[str, Any] | None  # where a stop cut the epoch short; None when it ran out


def train_epoch_with_saves(
    run: Run, state: RunState, stop_requested: Callable[[], bool]
) -> EpochResult:
    """Train one epoch, or the rest of a partial one, to the end of the epoch or of the
    budget's steps. ``stop_requested`` is this process's answer; the epoch loop agrees on it
    with the other ranks. Every ``train.save_every_minutes`` the partial epoch goes to
    last.pt as a stop would save it, and training goes on unchanged (single-process only:
    under torchrun an epoch cut short restarts)."""
    cfg, dist, epoch = run.cfg, run.dist, state.epoch
    gen = epoch_generator(cfg.train.seed + 7_919 * dist.rank, epoch, run.device)
    stats, prior_seconds = EpochStats(), 0.0
    if state.partial_epoch is not None:  # continue where a stopped run left this epoch
        partial = dict(state.partial_epoch)
        if not restore_generator(gen, partial.pop("generator")):
            tqdm.write(
                f"warning: epoch {epoch + 1} was cut short on another kind of device, whose "
                "random generator this one cannot continue; the rest of the epoch draws "
                "other augmentations than the first part would have",
                file=sys.stderr,
            )
        prior_seconds = partial.pop("seconds", 0.0)
        stats = EpochStats(**partial)
    stopwatch = Stopwatch(prior_seconds)
    clock = SaveClock(None if dist.enabled else cfg.train.save_every_minutes)

    def save(stats: EpochStats) -> None:
        record = partial_epoch_record(stats, gen, stopwatch.elapsed())
        run.save(dataclasses.replace(state, partial_epoch=record))
        clock.restart()

    if run.tensorboard:
        run.tensorboard.start_epoch(stats.loss_sum, stats.seen)

    def after_step(stats: EpochStats) -> None:
        step = state.step + stats.steps
        if run.tensorboard:
            lr = run.ctx.schedule.lr(step - 1)
            run.tensorboard.step(step, stats.loss_sum, stats.seen, lr)
        spent = state.train_seconds + stopwatch.elapsed()
        if run.budget is not None and run.budget.after_step(step, stats.gflop, spent):
            run.replan_schedules(announce=True)

    def epoch_steps() -> int:  # a budget may end the run early, and plan again on the way
        return min(len(run.data.train), run.total_steps - state.step)

    hooks = EpochHooks(
        stop_requested=stop_requested,
        save_due=clock.due,
        save=save,
        after_step=after_step,
        epoch_steps=epoch_steps,
        progress=dist.is_main,
        desc=f"epoch {epoch + 1}/{run.epochs}",
    )
    if run.budget is not None:
        run.budget.start_epoch()
    batches = run.data.train.batches(epoch, start_batch=stats.steps)  # after a resumed part
    try:
        stats = train_one_epoch(
            run.ctx,
            batches,
            run.data.train_transform,
            gen=gen,
            first_step=state.step,
            total=epoch_steps(),
            stats=stats,
            hooks=hooks,
        )
    except NonFiniteLossError as err:
        raise NonFiniteLossError(f"epoch {epoch + 1}: {err}") from None
    partial = partial_epoch_record(stats, gen, stopwatch.elapsed()) if stats.interrupted else None
    return EpochResult(stats, stopwatch, partial)


def validate(run: Run) -> dict[str, EpochStats]:
    """Loss and accuracy on the validation split, with rank 0's BatchNorm statistics: "val"
    for the weights the run keeps (the average, with ``train.ema_decay``), "raw_val" for the
    raw weights beside an average."""
    models = {"val": run.model}
    if run.ctx.ema is not None:
        models = {"val": run.ctx.ema.module, "raw_val": run.model}
    scores = {}
    for name, model in models.items():
        run.dist.share_buffers_from_main(model)
        scores[name] = evaluate_loss_accuracy(
            model,
            run.data.val.batches(),
            run.data.eval_transform,
            run.ctx.autocast,
            total=len(run.data.val),
            progress=run.dist.is_main,
        )
    return scores


def finish_epoch(run: Run, state: RunState, row: dict[str, Any]) -> None:
    """Keep the epoch of ``row`` as the best when its validation loss is the lowest yet, save
    (best.pt too when it is), and log it."""
    improved = row["val_loss"] < state.best_val_loss
    if improved:
        state.best_epoch = row["epoch"]
        state.best_val_loss, state.best_val_acc = row["val_loss"], row["val_acc"]
    run.save(state, improved)
    if run.dist.is_main:
        write_history(state.history, run.run_dir)
        tqdm.write(format_epoch(row, run.epochs, improved))
        run.tensorboard.epoch(state.step, row)


def signal_stop(signum: int | None, state: RunState, run_dir: Path) -> Exception:
    """The error that ends a run stopped by a signal, saying where and how to resume."""
    steps = state.partial_epoch["steps"] if state.partial_epoch else None
    return stopped_by_signal(signum or signal.SIGTERM, state.epoch, steps, run_dir)
