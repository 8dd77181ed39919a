"""The training loop, shared by pretraining and fine-tuning, in one visible function: `fit`.

The trainer knows nothing about tasks beyond an `Objective`: "loss and summable counts from a
batch" and "metrics from summed counts". Everything that decides which batch comes next
(epoch, position in the epoch, sampler seed, RNG states, optimizer) is checkpointed, so a
resumed run logs the same losses an uninterrupted one would have.

Under torchrun (see `encoderlab.distributed`) `fit` trains with DistributedDataParallel: the
global batch is still train.batch_size rows, dealt out row by row to the ranks, and each
rank's loss is weighted by its share of the batch's loss units (masked tokens, labelled rows),
so the averaged gradient, the logged counts and the schedule equal a single process's.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from encoderlab import distributed
from encoderlab.config import TrainConfig
from encoderlab.errors import UserError
from encoderlab.runs import ReadOnlyRun, Run
from encoderlab.runtime import (
    Batch,
    autocast,
    autocast_dtype,
    batch_tokens,
    epoch_order,
    make_loader,
    share,
    to_device,
)


@dataclass
class Objective:
    """A task as the trainer sees it.

    step(model, batch) -> (loss to backpropagate, counts to sum over batches)
    metrics(summed counts) -> named metrics, e.g. {"loss": ..., "acc": ...}
    primary: the metric (of `metrics`, on valid) that defines "best" when
    train.early_stop_metric is not set; higher is better unless primary_mode is "min".
    units: the count the loss is a mean over (e.g. "masked"); data-parallel ranks weight their
    losses by it so the gradient is that of the whole batch. None: the loss is a mean over rows.
    """

    step: Callable[[nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    metrics: Callable[[dict[str, float]], dict[str, float]]
    primary: str = "loss"
    primary_mode: str = "min"
    units: str | None = None


@dataclass
class FitResult:
    step: int
    epoch: int
    stopped_because: str
    best: dict[str, Any] = field(default_factory=dict)
    last_eval: dict[str, float] = field(default_factory=dict)
    tokens_per_s: float = 0.0
    train_seconds: float = 0.0


class StopRun(Exception):
    """Raised inside the loop to end a run cleanly with a reason (already checkpointed)."""


# ---------------------------------------------------------------------------------------------
# Small pieces: seeds, devices, schedules, batch order


def lr_factor(cfg: TrainConfig, step: int, total_steps: int | None, progress: float) -> float:
    """Multiplier on cfg.lr at optimizer step `step` (0-based): warmup, then the schedule.

    `progress` in [0, 1] is used when the total number of steps is unknown (a time budget).
    """
    warmup = cfg.warmup_steps
    if warmup == 0 and total_steps:
        ratio = cfg.warmup_ratio or (0.3 if cfg.schedule == "onecycle" else 0.0)
        warmup = int(ratio * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "exponential":
        return max(cfg.min_lr_ratio, cfg.decay_gamma ** (step - warmup))
    if total_steps:
        frac = (step - warmup) / max(1, total_steps - warmup)
    else:
        frac = progress
    frac = min(max(frac, 0.0), 1.0)
    floor = cfg.min_lr_ratio
    if cfg.schedule == "linear":
        return floor + (1.0 - floor) * (1.0 - frac)
    if cfg.schedule == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
    if cfg.schedule == "onecycle":  # warm up, then anneal (cosine) to lr/1e4 as OneCycleLR does
        floor = floor or 1e-4
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ValueError(f"unknown schedule {cfg.schedule}")


def check_batch_size(cfg: TrainConfig) -> None:
    """Under torchrun, train.batch_size is the global batch: each process takes an equal part."""
    world = distributed.world()
    if cfg.batch_size % world:
        raise UserError(
            f"train.batch_size={cfg.batch_size} is the global batch and must divide evenly "
            f"among the {world} processes; make it a multiple of {world}"
        )


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    return out


def _restore_rng(state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    if "python_rng" in state:
        v, internal, gauss = state["python_rng"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy_rng" in state:
        name, keys, pos, has_gauss, gauss = state["numpy_rng"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


def _rng_json() -> dict[str, Any]:
    v, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, gauss_np = np.random.get_state()
    return {
        "python_rng": [v, list(internal), gauss],
        "numpy_rng": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss_np)],
    }


def _sum_counts(acc: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> None:
    for k, v in counts.items():
        v = v.detach().float()
        acc[k] = acc[k] + v if k in acc else v


def _floats(acc: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in acc.items()}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    collate: Callable,
    objective: Objective,
    cfg: TrainConfig,
    device: torch.device,
    amp: torch.dtype | None = None,
) -> dict[str, float]:
    """Sum the objective's counts over the validation set (or its first eval_batches).

    Under torchrun every rank must call this: each evaluates its share of every batch, the
    counts are summed over ranks, and every rank returns the whole set's metrics.
    """
    was_training = model.training
    model.eval()
    rank, world = distributed.rank(), distributed.world()
    loader = make_loader(
        dataset, collate, cfg.batch_size, np.arange(len(dataset)), rank=rank, world=world
    )
    acc: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(loader):
        if cfg.eval_batches is not None and i >= cfg.eval_batches:
            break
        batch = to_device(batch, device)
        with autocast(device, amp):
            _, counts = objective.step(model, batch)
        if share(len(dataset), cfg.batch_size, i, rank, world) == 0:  # a stand-in row
            counts = {k: v * 0 for k, v in counts.items()}
        _sum_counts(acc, counts)
    if world > 1:
        acc = {k: v.float() for k, v in distributed.sum_counts(acc).items()}
    model.train(was_training)
    return objective.metrics(_floats(acc)) if acc else {}


def _better(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value > best if mode == "max" else value < best


# ---------------------------------------------------------------------------------------------
# The loop


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_set: Dataset,
    valid_set: Dataset | None,
    collate: Callable,
    objective: Objective,
    cfg: TrainConfig,
    run: Run,
    seed: int,
    resume: bool = False,
    num_workers: int = 0,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    evaluator: Callable[[nn.Module], dict[str, float]] | None = None,
    say: Callable[[str], None] = print,
) -> FitResult:
    """Train until epochs / max_steps / time budget / early stop; checkpoint as it goes.

    `evaluator(model) -> metrics` replaces the default evaluation (summed objective counts
    over valid_set) when a task needs whole-set decoding, e.g. QA's EM/F1.

    Under torchrun every rank calls this with the same arguments; rank 0 alone writes to the
    run, prints, evaluates with `evaluator` and calls `on_eval`.
    """
    rank, world = distributed.rank(), distributed.world()
    if rank > 0:
        run, say = ReadOnlyRun(run.path), distributed.main_says(say)
    device = next(model.parameters()).device
    amp = autocast_dtype(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type) if amp == torch.float16 else None
    base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    for g, lr in zip(optimizer.param_groups, base_lrs, strict=True):
        g["initial_lr"] = lr

    if len(train_set) == 0:
        raise UserError("the training set is empty; check the data section of the config")
    check_batch_size(cfg)
    micro_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum)
    total_steps = None
    if cfg.max_steps is not None:
        total_steps = cfg.max_steps
    if cfg.epochs is not None:
        by_epochs = cfg.epochs * steps_per_epoch
        total_steps = by_epochs if total_steps is None else min(total_steps, by_epochs)
    budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min is not None else None
    primary = cfg.early_stop_metric or f"valid/{objective.primary}"
    primary_mode = cfg.early_stop_mode if cfg.early_stop_metric else objective.primary_mode

    # -- state that a checkpoint carries --
    st: dict[str, Any] = {
        "step": 0,
        "epoch": 0,
        "micro": 0,  # next micro-batch index within the epoch
        "tokens": 0,
        "samples": 0,
        "train_seconds": 0.0,
        "nonfinite_total": 0,
        "nonfinite_streak": 0,
        "best_value": None,
        "best_step": None,
        "evals_since_best": 0,
        "window": {},  # summed counts since the last train log
        "window_steps": 0,
        "last_eval": {},
    }
    if resume:
        loaded, tensors = run.load_checkpoint(model, optimizer)
        st.update({k: v for k, v in loaded.items() if k in st})
        _restore_rng(loaded, tensors)
        run.truncate_metrics(st["step"])
        say(f"resumed {run.path} at step {st['step']} (epoch {st['epoch']}, batch {st['micro']})")
    model.train()
    net: nn.Module = model  # what the training forward runs: the model, or its DDP wrapper
    ddp: DistributedDataParallel | None = None
    if world > 1:
        # Every rank starts from rank 0's weights (DDP broadcasts them). Dropout masks must
        # differ between ranks, as between the rows of one batch: ranks > 0 draw from their own
        # seed (rank 0 keeps the stream a single process has, and checkpoints it).
        if rank > 0:
            state = np.random.SeedSequence([seed, rank, st["step"]]).generate_state(1)
            torch.manual_seed(int(state[0]))
        ddp = DistributedDataParallel(
            model,
            device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=_foreign_modules(model),
        )
        net = ddp
    run.update(
        status="running",
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        train_examples=len(train_set),
        valid_examples=len(valid_set) if valid_set is not None else 0,
        device=str(device),
        processes=world,
        precision=str(amp).replace("torch.", "") if amp else "fp32",
    )
    window: dict[str, torch.Tensor] = {
        k: torch.tensor(v, device=device) for k, v in st["window"].items()
    }
    window_tokens, window_t0 = 0, time.perf_counter()
    run_t0 = time.perf_counter() - st["train_seconds"]

    def train_seconds() -> float:
        return time.perf_counter() - run_t0

    def budget_seconds() -> float:
        """Seconds trained as rank 0 counts them: LR under a time budget and the decision to
        stop must agree on every rank, or their weights drift apart."""
        return distributed.main_value(train_seconds())

    last_saved = [-1]

    def checkpoint() -> None:
        if last_saved[0] == st["step"]:
            return
        last_saved[0] = st["step"]
        st["train_seconds"] = train_seconds()
        st["window"] = _floats(window)
        run.save_checkpoint(
            model,
            optimizer,
            {**st, **_rng_json(), "saved_at": time.time()},
            tensors=_rng_tensors(device),
            keep=cfg.keep_checkpoints,
        )
        run.update(steps=st["step"], epoch=st["epoch"], train_seconds=round(st["train_seconds"], 2))

    def do_eval() -> dict[str, float]:
        if valid_set is None or len(valid_set) == 0:
            return {}
        t0 = time.perf_counter()
        if evaluator is not None:  # whole-set decoding: rank 0 does it all, the others wait
            raw = distributed.on_main(lambda: evaluator(model))
        else:
            raw = evaluate(model, valid_set, collate, objective, cfg, device, amp)
        metrics = {f"valid/{k}": v for k, v in raw.items()}
        record = {
            "step": st["step"],
            "epoch": round(st["step"] / steps_per_epoch, 4),
            "kind": "eval",
            **metrics,
            "eval_seconds": round(time.perf_counter() - t0, 3),
        }
        run.log(record)
        st["last_eval"] = metrics
        say("  ".join([f"step {st['step']}"] + [f"{k} {v:.4f}" for k, v in metrics.items()]))
        value = metrics.get(primary)
        if value is not None:
            if _better(value, st["best_value"], primary_mode):
                st["best_value"], st["best_step"] = value, st["step"]
                st["evals_since_best"] = 0
                run.update(
                    best={"metric": primary, "value": value, "step": st["step"]},
                    best_checkpoint=f"step-{st['step']:08d}",
                )
            else:
                st["evals_since_best"] += 1
        if on_eval is not None and rank == 0:
            on_eval(st["step"], metrics)
        return metrics

    def log_train() -> None:
        nonlocal window, window_tokens, window_t0
        if st["window_steps"] == 0:
            return
        now = time.perf_counter()
        metrics = objective.metrics(_floats(window))
        record = {
            "step": st["step"],
            "epoch": round(st["step"] / steps_per_epoch, 4),
            "kind": "train",
            **{f"train/{k}": v for k, v in metrics.items()},
            "lr": optimizer.param_groups[0]["lr"],
            "tokens_per_s": round(window_tokens / max(now - window_t0, 1e-9), 1),
            "tokens": st["tokens"],
            "time": round(train_seconds(), 2),
        }
        run.log(record)
        if progress.bar is None and now - last_print[0] >= 20:  # no live bar: a line now and then
            last_print[0] = now
            shown = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("train/"))
            say(f"step {st['step']}  {shown}  {record['tokens_per_s']:,.0f} tok/s")
        window, window_tokens, window_t0 = {}, 0, now
        st["window_steps"] = 0

    last_print = [0.0]

    progress = _Progress(total_steps, budget_s, initial=st["step"], show=rank == 0)
    stopped = "finished"
    pending = [0]  # micro-batches read but not yet stepped: given back on Ctrl-C
    try:
        while True:
            if cfg.epochs is not None and st["epoch"] >= cfg.epochs:
                break
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(st["epoch"])
            order = epoch_order(len(train_set), seed, st["epoch"])
            loader = make_loader(
                train_set,
                collate,
                cfg.batch_size,
                order,
                start=st["micro"],
                num_workers=num_workers,
                seed=seed + st["epoch"],
                rank=rank,
                world=world,
            )
            group: list[tuple[Batch, bool]] = []  # (micro-batch, False for a stand-in row)
            for batch in loader:
                real = share(len(train_set), cfg.batch_size, st["micro"], rank, world) > 0
                group.append((batch, real))
                pending[0] = len(group)
                st["micro"] += 1
                end_of_epoch = st["micro"] >= micro_per_epoch
                if len(group) < cfg.grad_accum and not end_of_epoch:
                    continue
                # ---- one optimizer step over the accumulated micro-batches ----
                lr_scale = lr_factor(
                    cfg, st["step"], total_steps, budget_seconds() / budget_s if budget_s else 0.0
                )
                for g, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                    g["lr"] = lr * lr_scale
                finite = True
                step_counts: dict[str, torch.Tensor] = {}
                step_tokens = samples = 0
                for i, (mb, real) in enumerate(group):
                    tokens = batch_tokens(mb) if real else 0  # on the host: no GPU sync
                    rows = len(mb["input_ids"]) if real else 0
                    mb = to_device(mb, device)
                    # DDP averages gradients once per step, in the last micro-batch's backward
                    last = i == len(group) - 1
                    with contextlib.nullcontext() if ddp is None or last else ddp.no_sync():
                        with autocast(device, amp):
                            loss, counts = objective.step(net, mb)
                        if ddp is None:
                            finite = bool(torch.isfinite(loss.detach()))
                        else:
                            loss, counts, tokens, rows, finite = _across_ranks(
                                loss, counts, objective.units, real, tokens, rows, world
                            )
                        step_tokens += tokens
                        samples += rows
                        if not finite:
                            break
                        loss = loss / len(group)
                        (scaler.scale(loss) if scaler else loss).backward()
                    _sum_counts(step_counts, counts)
                if finite:
                    if scaler:
                        scaler.unscale_(optimizer)
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    if scaler:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                    st["nonfinite_streak"] = 0
                    for k, v in step_counts.items():
                        window[k] = window[k] + v if k in window else v
                    st["window_steps"] += 1
                else:
                    st["nonfinite_total"] += 1
                    st["nonfinite_streak"] += 1
                optimizer.zero_grad(set_to_none=True)
                group = []
                pending[0] = 0
                st["step"] += 1
                st["tokens"] += step_tokens
                st["samples"] += samples
                window_tokens += step_tokens
                progress.update(
                    st["step"],
                    train_seconds(),
                    window,
                    objective,
                    window_tokens,
                    time.perf_counter() - window_t0,
                )

                # ---- bookkeeping after the step ----
                if st["nonfinite_streak"] >= cfg.max_nonfinite:
                    checkpoint()
                    raise StopRun(
                        f"loss was not finite for {st['nonfinite_streak']} steps in a row "
                        f"(at step {st['step']}); saved the last good weights. Lower train.lr, "
                        "set train.grad_clip, or use train.precision=fp32"
                    )
                if end_of_epoch:
                    st["epoch"] += 1
                    st["micro"] = 0
                if st["step"] % cfg.log_every == 0 or end_of_epoch:
                    log_train()
                evaluated = False
                if cfg.eval_every and st["step"] % cfg.eval_every == 0 or end_of_epoch:
                    do_eval()
                    evaluated = True
                    if end_of_epoch:
                        run.log(
                            {
                                "step": st["step"],
                                "epoch": st["epoch"],
                                "kind": "epoch",
                                **st["last_eval"],
                                "time": round(train_seconds(), 2),
                            }
                        )
                out_of_steps = total_steps is not None and st["step"] >= total_steps
                out_of_time = budget_s is not None and budget_seconds() >= budget_s
                early = (
                    evaluated
                    and (cfg.early_stop_metric is not None)
                    and st["evals_since_best"] >= cfg.early_stop_patience
                )
                if (
                    evaluated
                    or out_of_steps
                    or out_of_time
                    or early
                    or (cfg.checkpoint_every and st["step"] % cfg.checkpoint_every == 0)
                ):
                    if (out_of_steps or out_of_time or early) and not evaluated:
                        log_train()
                        do_eval()
                    checkpoint()
                if out_of_steps:
                    raise StopRun("max_steps" if cfg.max_steps == st["step"] else "finished")
                if out_of_time:
                    raise StopRun("time budget")
                if early:
                    raise StopRun(
                        f"early stop: no better {primary} in {cfg.early_stop_patience} evaluations"
                    )
    except StopRun as stop:
        stopped = str(stop)
    except KeyboardInterrupt:
        progress.close()
        st["micro"] -= pending[0]
        last_saved[0] = -1
        checkpoint()
        run.update(status="interrupted", message="interrupted by the user")
        run.close()
        raise
    except Exception as e:
        progress.close()
        run.update(status="failed", message=f"{type(e).__name__}: {e}")
        run.close()
        raise
    finally:
        progress.close()
    if stopped == "finished":
        checkpoint()
    non_finite_stop = stopped.startswith("loss was not finite")
    run.update(
        status="failed" if non_finite_stop else "finished",
        stopped_because=stopped,
        finished=time.time(),
        nonfinite_steps=st["nonfinite_total"],
        tokens=st["tokens"],
        tokens_per_s=round(st["tokens"] / max(train_seconds(), 1e-9), 1),
    )
    run.close()
    return FitResult(
        step=st["step"],
        epoch=st["epoch"],
        stopped_because=stopped,
        best=run.info.get("best", {}),
        last_eval=st["last_eval"],
        tokens_per_s=st["tokens"] / max(train_seconds(), 1e-9),
        train_seconds=train_seconds(),
    )


def _foreign_modules(model: nn.Module) -> bool:
    """Whether the model holds modules encoderlab did not write (a wrapped transformers model),
    which may own parameters the loss never reaches (its pooler): DDP must then look for them."""
    return any(
        not type(m).__module__.startswith(("encoderlab.", "torch.")) for m in model.modules()
    )


def _across_ranks(
    loss: torch.Tensor,
    counts: dict[str, torch.Tensor],
    units: str | None,
    real: bool,
    tokens: int,
    rows: int,
    world: int,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], int, int, bool]:
    """One micro-batch under DDP: sum its counts over the ranks (one all_reduce) and weight this
    rank's loss by its share of the batch's loss units.

    Each rank's loss is a mean over its own units (masked tokens, labelled rows), whose number
    differs between ranks; DDP then averages the gradients. Scaling by units * world / total
    makes that average the gradient of the whole batch's mean, as one process computes it.
    Returns (loss to backpropagate, counts of the whole batch, its tokens, its rows, whether
    every rank's loss is finite: a non-finite loss anywhere skips the step everywhere).
    """
    keep = 1.0 if real else 0.0  # a stand-in row counts for nothing
    local = {k: v.detach().float() * keep for k, v in counts.items()}
    mine = local[units] if units is not None else torch.tensor(float(rows), device=loss.device)
    total = distributed.sum_counts(
        {
            **local,
            "_units": mine,
            "_nonfinite": (~torch.isfinite(loss.detach())).float(),
            "_tokens": float(tokens),
            "_rows": float(rows),
        }
    )
    weight = mine.to(total["_units"]) * world / total["_units"].clamp_min(1.0)
    return (
        loss * weight.to(loss),
        {k: total[k].float() for k in counts},
        int(total["_tokens"]),
        int(total["_rows"]),
        bool(total["_nonfinite"] == 0),
    )


class _Progress:
    """A rich progress bar with loss, tokens/s and ETA; silent when stderr is not a terminal."""

    def __init__(
        self, total: int | None, budget_s: float | None, initial: int, show: bool = True
    ) -> None:
        self.bar = None
        if not show or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.budget_s = budget_s
        self.task = self.bar.add_task("train", total=total, completed=initial, info="")
        self.bar.start()

    def update(self, step, seconds, window, objective, tokens, window_s) -> None:
        if self.bar is None:
            return
        info = f"{tokens / max(window_s, 1e-9):,.0f} tok/s"
        if window and step % 5 == 0:
            metrics = objective.metrics(_floats(window))
            info = "  ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:2]) + "  " + info
            self._info = info
        self.bar.update(self.task, completed=step, info=getattr(self, "_info", info))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
