"""The training loop, shared by pretraining and fine-tuning: `fit`, readable top to bottom.

The trainer knows nothing about tasks beyond an `Objective`: "loss and summable counts from a
batch" and "metrics from summed counts". Everything that decides which batch comes next
(epoch, position in the epoch, sampler seed, RNG states, optimizer) is checkpointed, so a
resumed run logs the same losses an uninterrupted one would have.

Under torchrun (see `encoderlab.distributed`) `fit` trains with DistributedDataParallel: the
global batch is still train.batch_size rows, dealt out row by row to the ranks, and each
rank's loss is weighted by its share of the batch's loss units (masked tokens, labelled rows),
so the averaged gradient, the logged counts and the schedule equal a single process's.

Read in this order:
  LoopState       what a checkpoint carries besides weights, optimizer and RNG states
  optimizer_step  one step over the accumulated micro-batches (DDP weighting, non-finite
                  losses, clipping, fp16 scaler), on an `Engine` (model, optimizer, precision)
  StopRule        why the run ends: diverged, out of steps, out of time, early stop
  Recorder        what the loop writes down: the train log window, progress bar, evaluations,
                  best result, checkpoints, run.json
  fit             the loop itself, then small pieces (schedule, evaluation, RNG, DDP)

fit's arguments beyond the model, data and config: `started` is time.perf_counter() when the
run began (reading data, building the model) and `tail_rows` the rows the caller evaluates or
predicts after `fit` returns; a time budget that covers the whole run (train.budget_covers: run)
counts both. `keep_best` writes the weights of each evaluation better than the last best (what
a fine-tuning run's weights are). `evaluator(model) -> metrics` replaces the default evaluation
(summed objective counts over valid_set) when a task needs whole-set decoding, e.g. QA's EM/F1;
its metrics include the validation "loss" (one pass over the set, not two). Under torchrun every
rank calls `fit` with the same arguments; rank 0 alone writes to the run, prints, evaluates with
`evaluator` and calls `on_eval`, which may raise `StopRequested` to end the run there, as Ctrl-C
would (checkpointed, "interrupted").

Where speed work goes: the per-micro-batch `isfinite` sync is in `optimizer_step` (a deferred
check would return the flag as a tensor and let `LoopState.count` read it a step later); when to
checkpoint is `Recorder.checkpoint_due` (time intervals) and how is `Recorder.checkpoint` (a
snapshot; `encoderlab.checkpointing` writes it in the background); what the forward runs is
`Engine.net`, set up in `_data_parallel` (torch.compile).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from encoderlab import distributed
from encoderlab.checkpointing import interrupts_held
from encoderlab.config import TrainConfig
from encoderlab.errors import UserError
from encoderlab.runs import ReadOnlyRun, Run
from encoderlab.runtime import (
    Batch,
    autocast,
    autocast_dtype,
    bar_columns,
    batch_tokens,
    clock_text,
    epoch_order,
    make_loader,
    share,
    to_device,
)
from encoderlab.tasks.registry import metric_mode


@dataclass
class Objective:
    """A task as the trainer sees it.

    step(model, batch) -> (loss to backpropagate, counts to sum over batches)
    metrics(summed counts) -> named metrics, e.g. {"loss": ..., "acc": ...}
    primary: the metric (of `metrics`, on valid) that defines "best" when
    train.early_stop_metric is not set; higher is better unless primary_mode is "min".
    units: the count the loss is a mean over (e.g. "masked"); data-parallel ranks weight their
    losses by it so the gradient is that of the whole batch. None: the loss is a mean over rows.
    metric_names: what `metrics` (and the evaluator) report, for checking early_stop_metric.
    """

    step: Callable[[nn.Module, Batch], tuple[torch.Tensor, dict[str, torch.Tensor]]]
    metrics: Callable[[dict[str, float]], dict[str, float]]
    primary: str = "loss"
    primary_mode: str = "min"
    units: str | None = None
    # the names `metrics` gives (valid/<name> at evaluations); empty: not declared. What
    # train.early_stop_metric is checked against before training
    metric_names: tuple[str, ...] = ()


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


class StopRequested(Exception):
    """Raised by a caller's `on_eval` to end the run at this evaluation (Ray Tune stopped the
    trial): checkpointed and left "interrupted", so it resumes; `fit` raises it on."""


# ---------------------------------------------------------------------------------------------
# LoopState: the loop's counters, saved in state.json and restored on resume


@dataclass
class LoopState:
    """Where the loop is. Its fields are state.json's keys (runs written before this class
    existed resume from the same keys); `window` is live here and saved as floats."""

    step: int = 0
    epoch: int = 0
    micro: int = 0  # next micro-batch index within the epoch
    tokens: int = 0
    samples: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0  # of train_seconds, those spent evaluating (tokens/s leaves them out)
    # set-up seconds of every session so far (reading data, the tokenizer, the token cache,
    # the model): a whole-run budget counts them all, a resume's own and those before it
    setup_seconds: float = 0.0
    nonfinite_total: int = 0
    nonfinite_streak: int = 0
    best_value: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    window: dict[str, torch.Tensor] = field(default_factory=dict)  # counts since the train log
    window_steps: int = 0
    last_eval: dict[str, float] = field(default_factory=dict)
    # what the last step owes, until done: "step", "epoch" (an evaluation, and the epoch log),
    # "epoch_log" (the log alone), "check" (only whether the run ends there), "end" (the run's
    # last checkpoint and finish); a resume does what a Ctrl-C cut short (Recorder.owed)
    eval_due: str | None = None
    # steps counted on the device and not read yet: [finite steps, skipped steps, current
    # run of skipped steps, its longest since the last read]; see `settle`. Not saved.
    pending: torch.Tensor | None = field(default=None, repr=False)
    worst_streak: int = field(default=0, repr=False)
    # DDP's global [tokens, rows] counted on the device and not read yet (`settle`). Not saved.
    pending_seen: torch.Tensor | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        self.settle()
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _LIVE}
        return out | {"window": _floats(self.window), "last_eval": dict(self.last_eval)}

    @classmethod
    def from_json(cls, saved: dict[str, Any], device: torch.device) -> LoopState:
        state = cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})
        state.window = {k: torch.tensor(v, device=device) for k, v in state.window.items()}
        return state

    def count(self, step: Stepped) -> None:
        """Account for one optimizer step: a skipped (non-finite) one still moves the step,
        the data position and the token count on, but adds nothing to the log window.

        With `step.finite` a device tensor nothing is read back: the window and the skip
        counters accumulate on the device until `settle` (at log time)."""
        if isinstance(step.finite, torch.Tensor):
            self._count_on_device(step.finite, step.counts)
        elif step.finite:
            self.nonfinite_streak = 0
            _sum_counts(self.window, step.counts)
            self.window_steps += 1
        else:
            self.nonfinite_total += 1
            self.nonfinite_streak += 1
        self.step += 1
        if isinstance(step.tokens, torch.Tensor):  # DDP's totals: read at `settle`
            seen = torch.stack([step.tokens, torch.as_tensor(step.rows).to(step.tokens)])
            self.pending_seen = seen if self.pending_seen is None else self.pending_seen + seen
        else:
            self.tokens += step.tokens
            self.samples += int(step.rows)

    def _count_on_device(self, finite: torch.Tensor, counts: dict[str, torch.Tensor]) -> None:
        ok = finite.float()
        zero = torch.zeros((), device=finite.device)
        _sum_counts(
            self.window, {k: torch.where(finite, v.float(), zero) for k, v in counts.items()}
        )
        if self.pending is None:
            self.pending = torch.tensor([0.0, 0.0, self.nonfinite_streak, 0.0], device=ok.device)
        streak = (self.pending[2] + 1.0) * (1.0 - ok)
        self.pending = torch.stack(
            [
                self.pending[0] + ok,
                self.pending[1] + (1.0 - ok),
                streak,
                torch.maximum(self.pending[3], streak),
            ]
        )

    def settle(self) -> LoopState:
        """Read the device's step counters back (one sync) into the plain fields."""
        if self.pending is not None:
            ok, bad, streak, worst = (int(v) for v in self.pending.tolist())
            self.window_steps += ok
            self.nonfinite_total += bad
            self.nonfinite_streak = streak
            self.worst_streak = max(self.worst_streak, worst)
            self.pending = None
        if self.pending_seen is not None:
            tokens, rows = (round(v) for v in self.pending_seen.tolist())
            self.tokens += tokens
            self.samples += rows
            self.pending_seen = None
        return self


_LIVE = ("pending", "worst_streak", "pending_seen")  # LoopState fields that are not saved


# ---------------------------------------------------------------------------------------------
# optimizer_step: one step over the accumulated micro-batches


@dataclass
class Engine:
    """What a step runs on. `net` is what the training forward calls: the model or its DDP
    wrapper (a compiled model would go here too); checkpoints and clipping use `model`."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    objective: Objective
    device: torch.device
    amp: torch.dtype | None
    base_lrs: list[float]
    ddp: DistributedDataParallel | None = None
    compiled: nn.Module | None = None  # torch.compile of the model or of `ddp` (train.compile)
    scaler: torch.amp.GradScaler | None = field(init=False, default=None)  # fp16 only
    # what the optimizer trains, listed once: clipping walked the module tree every step
    trained: list[nn.Parameter] = field(init=False, default_factory=list)
    lr_scale: float = field(init=False, default=1.0)  # the schedule's factor of the last step

    def __post_init__(self) -> None:
        if self.amp == torch.float16:
            self.scaler = torch.amp.GradScaler(self.device.type)
        self.trained = [p for g in self.optimizer.param_groups for p in g["params"]]

    @property
    def net(self) -> nn.Module:
        if self.compiled is not None:
            return self.compiled
        return self.ddp if self.ddp is not None else self.model

    @property
    def defers(self) -> bool:
        """Whether a non-finite loss can skip the step on the device, without reading it back:
        the fused optimizers skip their update when `found_inf` is set (as under GradScaler).
        Under DDP the flag is summed over the ranks, so all of them skip the same steps; fp16's
        scaler keeps its own check."""
        return (
            self.scaler is None
            and bool(self.optimizer.defaults.get("fused"))
            and "found_inf" not in vars(self.optimizer)
        )

    def set_lr(self, scale: float) -> None:
        self.lr_scale = scale
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = lr * scale


@dataclass
class Stepped:
    """What one optimizer step saw: the batch's summed counts, tokens and rows (the whole
    global batch's under DDP, as device tensors when the engine `defers`), and whether every
    loss was finite (if not, nothing was applied)."""

    counts: dict[str, torch.Tensor]
    tokens: int | torch.Tensor
    rows: int | torch.Tensor
    finite: bool | torch.Tensor  # a bool tensor on the device when the engine `defers`
    local_tokens: int = 0  # this rank's own tokens, known on the host

    def shown_tokens(self) -> int:
        """Tokens for the progress bar without waiting for the device: under a deferring DDP
        step this rank's count times the ranks (the exact total reaches the logs)."""
        if isinstance(self.tokens, int):
            return self.tokens
        return self.local_tokens * distributed.world()


def optimizer_step(
    eng: Engine, group: list[tuple[Batch, bool]], grad_clip: float | None
) -> Stepped:
    """Forward and backward every micro-batch of `group` ((batch, False for a stand-in row)),
    then clip and step; a non-finite loss skips the step.

    Each micro-batch's loss (a mean over its loss units: masked tokens, labelled rows) counts
    by its share of the group's units, so the gradient is that of the mean over the whole
    group, as one batch of grad_accum * batch_size rows gives it: micro-batches with more
    masked tokens, or a short last one at an epoch's end, are not weighted as equals
    (`_Accumulated`). Under DDP gradients are averaged once, in the last micro-batch's
    backward, and each rank's loss is weighted by its share of the loss units
    (`_across_ranks`). When the engine `defers`, the non-finite check never leaves the
    device: every micro-batch runs, and the fused optimizer skips the update (weights,
    moments and step count) if any loss was not finite (under DDP: any rank's).
    """
    counts: dict[str, torch.Tensor] = {}
    tokens: int | torch.Tensor = 0
    rows: int | torch.Tensor = 0
    local_tokens = 0
    finite: bool | torch.Tensor = True
    bad: torch.Tensor | None = None  # deferred: whether any loss so far was not finite
    acc = _Accumulated()
    for i, (mb, real) in enumerate(group):
        mb_tokens = batch_tokens(mb) if real else 0  # on the host: no GPU sync
        mb_rows = len(mb["input_ids"]) if real else 0
        local_tokens += mb_tokens
        mb = to_device(mb, eng.device)
        last = i == len(group) - 1
        with contextlib.nullcontext() if eng.ddp is None or last else eng.ddp.no_sync():
            with autocast(eng.device, eng.amp):
                loss, mb_counts = eng.objective.step(eng.net, mb)
            flag: torch.Tensor | None = None  # deferred: this micro-batch's loss not finite
            units = _units(mb_counts, eng.objective.units, mb_rows)
            if eng.ddp is not None:
                loss, mb_counts, mb_tokens, mb_rows, all_finite, units = _across_ranks(
                    loss, mb_counts, eng.objective.units, real, mb_tokens, mb_rows
                )
                if eng.defers:
                    flag = ~all_finite
                else:  # a sync per micro-batch
                    finite, mb_tokens, mb_rows = bool(all_finite), int(mb_tokens), int(mb_rows)
            elif eng.defers:
                flag = ~torch.isfinite(loss.detach())
            else:
                finite = bool(torch.isfinite(loss.detach()))  # a GPU sync per micro-batch
            if flag is not None:
                bad = flag if bad is None else bad | flag
            tokens += mb_tokens
            rows += mb_rows
            if finite is False:
                break
            loss = acc.weigh(loss, units)
            (eng.scaler.scale(loss) if eng.scaler else loss).backward()
        _sum_counts(counts, mb_counts)
    if bad is not None:
        finite = ~bad
        eng.optimizer.found_inf = bad.float()  # read by the fused kernel: 1 skips the update
    try:
        if finite is not False:
            acc.rescale(eng.trained)
            _apply(eng, grad_clip)
    finally:
        vars(eng.optimizer).pop("found_inf", None)
    eng.optimizer.zero_grad(set_to_none=True)
    return Stepped(counts, tokens, rows, finite, local_tokens)


def _units(counts: dict[str, torch.Tensor], units: str | None, rows: int) -> torch.Tensor | float:
    """The loss units of one micro-batch: its `units` count, or its rows (0 for a stand-in)."""
    return counts[units].detach().float() if units is not None else float(rows)


class _Accumulated:
    """The weights of a group's micro-batch losses: the gradient of the whole group's mean.

    A micro-batch's units are known only after its forward, and the group's total only after
    the last one, so each loss is backpropagated at units / the first micro-batch's units
    (about 1: no change of scale for fp16) and `rescale` then multiplies the summed gradients
    by first / total. Device tensors throughout: no sync."""

    def __init__(self) -> None:
        self.first: torch.Tensor | float | None = None
        self.total: torch.Tensor | float = 0.0
        self.n = 0

    def weigh(self, loss: torch.Tensor, units: torch.Tensor | float) -> torch.Tensor:
        self.n += 1
        if self.first is None:
            self.first = _at_least_one(units)
        self.total = self.total + units
        return loss * (units / self.first)

    def rescale(self, params: list[nn.Parameter]) -> None:
        """Scale the accumulated gradients to the group's mean (nothing to do for one
        micro-batch: its weight was units / units, 1, or 0 when it had none)."""
        if self.first is None or self.n == 1:
            return
        factor = self.first / _at_least_one(self.total)
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        if isinstance(factor, torch.Tensor):
            factor = factor.to(grads[0].device)
        torch._foreach_mul_(grads, factor)


def _at_least_one(units: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(units, torch.Tensor):
        return units.clamp_min(1.0)
    return max(units, 1.0)


def _apply(eng: Engine, grad_clip: float | None) -> None:
    """Clip and step (through the fp16 scaler if there is one)."""
    if eng.scaler:
        eng.scaler.unscale_(eng.optimizer)
    if grad_clip:  # non-finite gradients make the norm NaN: no sync, and the step is skipped
        torch.nn.utils.clip_grad_norm_(eng.trained, grad_clip)
    if eng.scaler:
        eng.scaler.step(eng.optimizer)
        eng.scaler.update()
    else:
        eng.optimizer.step()


def _across_ranks(
    loss: torch.Tensor,
    counts: dict[str, torch.Tensor],
    units: str | None,
    real: bool,
    tokens: int,
    rows: int,
) -> tuple[
    torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
]:
    """One micro-batch under DDP: sum its counts over the ranks (one all_reduce) and weight this
    rank's loss by its share of the batch's loss units.

    Each rank's loss is a mean over its own units (masked tokens, labelled rows), whose number
    differs between ranks; DDP then averages the gradients. Scaling by units * world / total
    makes that average the gradient of the whole batch's mean, as one process computes it.
    Returns (loss to backpropagate, counts of the whole batch, its tokens, its rows, whether
    every rank's loss is finite: a non-finite loss anywhere skips the step everywhere, the
    batch's loss units); the last four as device tensors, so nothing here waits for the GPU.
    """
    keep = 1.0 if real else 0.0  # a stand-in row counts for nothing
    local = {k: v.detach().float() * keep for k, v in counts.items()}
    mine = local[units] if units is not None else float(rows)  # rows: 0 for a stand-in
    total = distributed.sum_counts(
        {
            **local,
            "_units": mine,
            "_nonfinite": (~torch.isfinite(loss.detach())).float(),
            "_tokens": float(tokens),
            "_rows": float(rows),
        }
    )
    scale = distributed.world() / total["_units"].clamp_min(1.0)
    weight = scale * (mine.to(scale) if isinstance(mine, torch.Tensor) else mine)
    return (
        loss * weight.to(loss),
        {k: total[k].float() for k in counts},
        total["_tokens"],
        total["_rows"],
        total["_nonfinite"] == 0,
        total["_units"].float(),
    )


# ---------------------------------------------------------------------------------------------
# StopRule: why the run ends


@dataclass(frozen=True)
class Plan:
    """How long the run is, fixed by the config and the training set's size.

    `tail_rows`: rows evaluated or predicted once training stops (the final evaluation, and the
    caller's predictions after `fit`), which a whole-run time budget must leave time for."""

    micro_per_epoch: int
    steps_per_epoch: int
    total_steps: int | None  # None: only a time budget (or early stopping) ends the run
    budget_s: float | None
    covers_run: bool = True  # the budget covers setup, evaluations and the end, not training only
    tail_rows: int = 0

    @classmethod
    def of(cls, cfg: TrainConfig, rows: int, tail_rows: int = 0) -> Plan:
        micro_per_epoch = math.ceil(rows / cfg.batch_size)
        steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum)
        total_steps = cfg.max_steps
        if cfg.epochs is not None:
            by_epochs = cfg.epochs * steps_per_epoch
            total_steps = by_epochs if total_steps is None else min(total_steps, by_epochs)
        budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min is not None else None
        covers_run = cfg.budget_covers == "run"
        return cls(micro_per_epoch, steps_per_epoch, total_steps, budget_s, covers_run, tail_rows)


class Clock:
    """Seconds trained, counting those before a resume; `setup_s`: the seconds before training
    started (reading data, building the model), this session's and those before a resume,
    which a whole-run budget counts too (before 2026-12-03 only this session's: each resume
    overran by the set-up before it)."""

    def __init__(self, already: float, setup_s: float = 0.0) -> None:
        self.t0 = time.perf_counter() - already
        self.setup_s = setup_s

    def seconds(self) -> float:
        return time.perf_counter() - self.t0


CHECKPOINT_ALLOWANCE_S = 2.0  # the last checkpoint's write and the best one's reload
AGREE_EVERY = 16  # DDP under a time budget: steps between agreements on rank 0's clock


@dataclass
class StopRule:
    """Why the run stops, or None. Every rank reaches the same answer (same steps, rank 0's
    clock), so every rank leaves the loop at the same step.

    Under a whole-run time budget training stops early enough for the end of the run (final
    evaluation, predictions, last checkpoint) to fit: their cost is estimated from the timed
    evaluations, or, before the first one, from the measured training speed."""

    cfg: TrainConfig
    plan: Plan
    clock: Clock
    primary: str  # the early-stopping metric, for the message
    valid_rows: int = 0  # rows of one evaluation
    eval_row_s: float | None = None  # measured seconds per evaluated row
    step_s: float | None = None  # measured seconds per optimizer step
    forward_row_s: float | None = None  # a timed forward pass: seconds per row, until evaluated
    expected_steps: int | None = None  # the forecast, once the speed is known
    _speed_from: tuple[int, float] | None = None  # (step, clock seconds) speed is timed from
    _agreed: tuple[int, float, float] | None = None  # DDP: (step, rank 0's spent s, s/step)
    _reagree: bool = False  # DDP: agree at the next check (an evaluation moved the clock)
    _agreed_fixed: float = 0.0  # DDP: rank 0's `_fixed_s` at the last agreement

    def diverged(self, state: LoopState) -> str | None:
        """Checked after a step whose counters were read (`LoopState.settle`): every step, or
        at log time when the check stays on the device. Too many skipped steps in a row."""
        streak = max(state.nonfinite_streak, state.worst_streak)
        if streak < self.cfg.max_nonfinite:
            return None
        return (
            f"loss was not finite for {streak} steps in a row "
            f"(at step {state.step}); saved the last good weights. Lower train.lr, "
            "set train.grad_clip, or use train.precision=fp32"
        )

    def reason(self, state: LoopState, evaluated: bool) -> str | None:
        """Checked after the step's logs and evaluation: steps, time budget, early stop."""
        cfg, plan = self.cfg, self.plan
        if plan.total_steps is not None and state.step >= plan.total_steps:
            return "max_steps" if cfg.max_steps == state.step else "finished"
        if evaluated:  # an evaluation moves the clock by more than steps do
            self._reagree = True
        if plan.budget_s is not None and self._agreed_spent(state.step, True) >= plan.budget_s:
            return "time budget"
        patience = cfg.early_stop_patience
        if evaluated and cfg.early_stop_metric is not None and state.evals_since_best >= patience:
            return f"early stop: no better {self.primary} in {patience} evaluations"
        return None

    def tail_s(self) -> float:
        """Seconds the end of the run needs once training stops (0 when the budget covers
        training only): the final evaluation, the caller's predictions, the last checkpoint."""
        if not self.plan.covers_run:
            return 0.0
        return (self.valid_rows + self.plan.tail_rows) * self._row_s() + CHECKPOINT_ALLOWANCE_S

    def _row_s(self) -> float:
        """Seconds an evaluated row takes: timed at evaluations, before them estimated from
        the timed forward pass (0 while neither is known)."""
        if self.eval_row_s is not None:
            return self.eval_row_s
        # nothing added for decoding and metrics: an evaluation row took 1.0-1.1 timed forward
        # rows on 2 cores (tweets under MiniLM, CoNLL, KorQuAD); 20 % added ended 1-minute
        # runs 7-17 % early
        return self.forward_row_s or 0.0

    def _fixed_s(self) -> float:
        """Budget seconds that are not training: under a whole-run budget the set-up before
        the first step and what the end of the run will need."""
        return self.clock.setup_s + self.tail_s() if self.plan.covers_run else 0.0

    def _spent(self) -> float:
        """Budget seconds spent, counting what the end of the run will need."""
        return self.clock.seconds() + self._fixed_s()

    def _agreed_spent(self, step: int, to_stop: bool = False) -> float:
        """`_spent` as rank 0 counts it: LR under a time budget and the decision to stop must
        agree on every rank, or their weights drift apart. One process: the clock itself.
        Under DDP rank 0's figure is agreed on (a collective call) every AGREE_EVERY steps,
        after an evaluation and, `to_stop`, at every step near the end, and extrapolated in
        between from the seconds per step between the last two agreements: numbers every
        rank holds, so the ranks agree without waiting for each other at every step."""
        if not distributed.active():
            return self._spent()
        last = self._agreed
        if last is not None and not self._reagree:
            at, spent, step_s = last
            guess = spent + (step - at) * step_s
            near_end = to_stop and guess + 2 * AGREE_EVERY * step_s >= (self.plan.budget_s or 0)
            if step - at < AGREE_EVERY and not near_end:
                return guess
        agreed = distributed.main_values(
            spent=self._spent(), measured=self.step_s or 0.0, fixed=self._fixed_s()
        )
        spent, self._agreed_fixed = agreed["spent"], agreed["fixed"]
        step_s = last[2] if last is not None else 0.0
        if last is not None and step - last[0] >= AGREE_EVERY and not self._reagree:
            step_s = max(spent - last[1], 0.0) / (step - last[0])  # timed over a whole interval
        elif step_s == 0.0:  # evaluations closer than AGREE_EVERY: rank 0's measured speed
            step_s = agreed["measured"]
        self._agreed, self._reagree = (step, spent, step_s), False
        return spent

    def budget_used(self, step: int) -> float:
        """The fraction of the time budget's training window spent: the schedule's progress
        when the budget binds (warmup and decay are fractions of it). 0 without a budget."""
        if not self.plan.budget_s:
            return 0.0
        spent, budget = self._agreed_spent(step), self.plan.budget_s
        # training seconds over the seconds left for training: the set-up and the end of the
        # run are not part of the schedule (counted as spent, warmup was mostly skipped)
        fixed = self._agreed_fixed if distributed.active() else self._fixed_s()
        if budget - fixed <= 0:
            return 1.0
        return min(max((spent - fixed) / (budget - fixed), 0.0), 1.0)

    def timed_eval(
        self, measure: Callable[[], dict[str, float]] | None
    ) -> Callable[[], dict[str, float]] | None:
        """`measure`, timed: its seconds per row price the run's final evaluation."""
        if measure is None:
            return None

        def timed() -> dict[str, float]:
            t0 = time.perf_counter()
            out = measure()
            if self.valid_rows:
                self.eval_row_s = (time.perf_counter() - t0) / self.valid_rows
            return out

        return timed

    def time_forward(self, eng: Engine, batch: Batch, state: LoopState) -> None:
        """Time evaluation-mode forward passes over a training batch (the faster of two, after
        an untimed one: the first is slower): before the first evaluation, what prices the end
        of the run under a whole-run budget."""
        was_training = eng.model.training
        eng.model.eval()
        batch = to_device(batch, eng.device)
        passes: list[float] = []
        for _ in range(3):  # the first evaluation-mode pass warms up (a third slower on a CPU)
            t0 = time.perf_counter()
            with torch.no_grad(), autocast(eng.device, eng.amp):
                _, counts = eng.objective.step(eng.model, batch)
                _floats(counts)  # waits for the device
            passes.append(time.perf_counter() - t0)
        seconds = min(passes[1:])  # of the two after it: 2 noisy cores priced one pass 15 % high
        eng.model.train(was_training)
        # priced per token, at the rows' mean length so far: the batch at hand may be one of
        # the longest (length grouping), and an evaluation's sorted batches hardly pad (a
        # MiniLM run's end was forecast at 44 s and took 15)
        rows = max(len(batch["input_ids"]), 1)
        tokens = max(batch_tokens(batch), 1)
        mean = state.tokens / state.samples if state.samples else tokens / rows
        self.forward_row_s = seconds / tokens * mean

    def _steps_that_fit(self, step: int, left: float) -> int:
        """Optimizer steps after `step` that `left` seconds pay for, with the evaluations
        those steps bring along (every eval_every steps and at each epoch's end): without
        them a forecast of a run that evaluates often came out up to twice the steps it made;
        charged pro rata, evaluations a short run never reaches made it 6-12 % too few."""
        assert self.step_s is not None
        eval_s = self.valid_rows * self._row_s() if self.valid_rows else 0.0
        per_epoch, every = self.plan.steps_per_epoch, self.cfg.eval_every

        def evals(n: int) -> int:
            done = (step + n) // per_epoch - step // per_epoch
            return done + ((step + n) // every - step // every if every else 0)

        lo, hi = 0, max(0, int(left / self.step_s))  # the most steps whose cost fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid * self.step_s + evals(mid) * eval_s <= left:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def forecast(self, state: LoopState, eng: Engine, batch: Batch) -> str | None:
        """Once, as soon as the speed is known (a few steps after the first): how many steps
        and epochs the run will take, and what ends it; warns when warmup outlasts the run."""
        now = self.clock.seconds()
        if self._speed_from is None:
            self._speed_from = (state.step, now)  # the first step is slower: time from here
            return None
        step0, t0 = self._speed_from
        done = state.step - step0
        if self.step_s is not None or done < 3 or (done < 20 and now - t0 < 5.0):
            return None
        self.step_s = (now - t0) / done
        timed = self.plan.covers_run or self.valid_rows  # the end of the run, evaluations
        if self.plan.budget_s is not None and timed and self.eval_row_s is None:
            self.time_forward(eng, batch, state)
        plan, expected, ends = self.plan, self.plan.total_steps, "steps"
        if (
            self.cfg.max_steps is not None
            and expected is not None
            and expected < self.cfg.max_steps
        ):
            ends = (  # both set: whichever comes first, and here it is not the one just given
                f"epochs (train.epochs={self.cfg.epochs}, before train.max_steps="
                f"{self.cfg.max_steps:,}; train.epochs: null runs them all)"
            )
        if plan.budget_s is not None:
            left = plan.budget_s - self._spent()
            by_time = state.step + self._steps_that_fit(state.step, left)
            if expected is None or by_time < expected:
                expected, ends = by_time, "time budget"
        if expected is None:
            return None
        self.expected_steps = expected
        budget = ""
        if plan.budget_s is not None:
            covers = "training only"
            if plan.covers_run:
                covers = f"whole run; its end, evaluation and predictions: ~{self.tail_s():.0f} s"
            budget = f"; budget {plan.budget_s / 60:g} min ({covers})"
        msg = (
            f"speed {self.step_s:.3g} s/step: expect {expected:,} steps "
            f"({expected / plan.steps_per_epoch:.2f} epochs), ended by the {ends}{budget}"
        )
        known = plan.total_steps and self.cfg.warmup_steps > plan.total_steps  # said at start
        if self.cfg.warmup_steps > expected and not known:
            msg += f"\nwarning: {long_warmup(self.cfg.warmup_steps, expected)}"
        if plan.budget_s is not None and plan.covers_run and self._spent() > plan.budget_s:
            msg += f"\nwarning: {self._overrun()}"
        return msg

    def reforecast(self, step: int) -> int | None:
        """The budget's forecast again, at the pace since the speed was first timed
        (evaluations included): the first steps are slower, so a 3-minute NSMC run that
        forecast 1,254 steps made 1,407, and its log lines read "step 1390/~1,254". Display
        only: the stop and the schedule go by the clock."""
        if self.expected_steps is None or self.plan.budget_s is None or self._speed_from is None:
            return self.expected_steps
        step0, t0 = self._speed_from
        if step - step0 < 20:
            return self.expected_steps
        pace = (self.clock.seconds() - t0) / (step - step0)
        expected = step + max(0, int((self.plan.budget_s - self._spent()) / pace))
        total = self.plan.total_steps
        self.expected_steps = min(expected, total) if total else expected
        return self.expected_steps

    def _overrun(self) -> str:
        """A whole-run budget the run cannot keep: its set-up, the steps made so far and its end
        (often one evaluation longer than the budget) already come to more."""
        budget, trained = self.plan.budget_s or 0.0, self.clock.seconds()
        return (
            f"the run will be longer than the {budget / 60:g} min budget (~{self._spent() / 60:.1f}"
            f" min: set-up ~{self.clock.setup_s:.0f} s, training so far ~{trained:.0f} s, its end "
            f"(evaluation and predictions) ~{self.tail_s():.0f} s); raise "
            "train.time_budget_min or use a smaller validation set"
        )


def long_warmup(warmup: int, steps: int) -> str:
    return (
        f"train.warmup_steps={warmup} is longer than the run (~{steps:,} steps): the learning "
        "rate never reaches train.lr; lower it or use train.warmup_ratio"
    )


# ---------------------------------------------------------------------------------------------
# Recorder: logs, progress, evaluations, best result, checkpoints


@dataclass
class Recorder:
    """Everything the loop writes down. On ranks > 0 `run` is a ReadOnlyRun, `say` is silent
    and `on_eval` is None, so every rank can call every method (evaluation is collective)."""

    run: Run
    say: Callable[[str], None]
    eng: Engine
    cfg: TrainConfig
    plan: Plan
    clock: Clock
    measure: Callable[[], dict[str, float]] | None  # valid metrics; None: nothing to evaluate
    on_eval: Callable[[int, dict[str, float]], None] | None
    primary: str  # the metric that defines "best", and whether higher ("max") is better
    primary_mode: str
    progress: _Progress
    keep_best: bool = False  # the best evaluation's weights (fine-tuning), see `evaluate`
    last_saved: int = -1  # the step last checkpointed
    last_saved_s: float = 0.0  # and when, in seconds trained (Clock)
    window_tokens: int = 0  # throughput since the last train log (not checkpointed)
    window_t0: float = field(default_factory=time.perf_counter)
    last_print: float = 0.0
    first_log: tuple[int, float] | None = None  # (step, seconds) of this process's first log
    expected_steps: int | None = None  # a time budget's forecast, once the speed is known
    _missing_said: bool = False  # the primary metric was missing from an evaluation, said once

    def stepped(self, state: LoopState, tokens: int) -> None:
        self.window_tokens += tokens
        window_s = time.perf_counter() - self.window_t0
        self.progress.update(
            state.step, state.window, self.eng.objective, self.window_tokens, window_s
        )

    def logged_lr(self) -> float:
        """train.lr under the schedule. The first optimizer group's lr was logged before: with
        layer_lr_decay that is the embeddings' (train.lr times decay ** n_layer), with
        freeze: all the head's (head_lr), so the curve misstated the run's learning rate."""
        base = self.cfg.lr if self.cfg.lr is not None else self.eng.base_lrs[0]
        return base * self.eng.lr_scale

    def log_train(self, state: LoopState) -> None:
        """One train record over the steps since the last one (nothing if all were skipped)."""
        if state.settle().window_steps == 0:
            return
        now = time.perf_counter()
        metrics = self.eng.objective.metrics(_floats(state.window))
        record = {
            "step": state.step,
            "epoch": round(state.step / self.plan.steps_per_epoch, 4),
            "kind": "train",
            **{f"train/{k}": v for k, v in metrics.items()},
            "lr": self.logged_lr(),
            "tokens_per_s": round(self.window_tokens / max(now - self.window_t0, 1e-9), 1),
            "tokens": state.tokens,
            "time": round(self.clock.seconds(), 2),
        }
        if not self.window_tokens:  # a resume logging the steps before it: their speed is gone
            del record["tokens_per_s"]
        self.run.log(record)
        if self.first_log is None:
            self.first_log = (state.step, record["time"])
        if self.progress.bar is None and now - self.last_print >= 20:  # no bar: a line at times
            self.last_print = now
            shown = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("train/"))
            speed = f"  {record['tokens_per_s']:,.0f} tok/s" if "tokens_per_s" in record else ""
            self.say(
                f"step {state.step}{self._of_total()}  {shown}"
                f"{speed}{self._eta(state.step, record['time'])}"
            )
        state.window, self.window_tokens, self.window_t0 = {}, 0, now
        state.window_steps = 0

    def _of_total(self) -> str:
        """ "/645" (the steps the run will make), or "/~47" when a time budget ends it first."""
        total, expected = self.plan.total_steps, self.expected_steps
        if expected is not None and self.plan.budget_s is not None and expected < (total or 1e18):
            return f"/~{expected:,}"
        return f"/{total:,}" if total else ""

    def _eta(self, step: int, seconds: float) -> str:
        """`  ETA 0:03:12` for a line without a bar (a log file, a study's arm): the steps
        left at this process's pace so far, or the budget left when that ends the run first."""
        step0, seconds0 = self.first_log or (step, seconds)
        left: list[float] = []
        if self.plan.total_steps and step > step0 and seconds > seconds0:
            left.append((self.plan.total_steps - step) * (seconds - seconds0) / (step - step0))
        if self.plan.budget_s:  # a whole-run budget counts the set-up as spent
            spent = seconds + (self.clock.setup_s if self.plan.covers_run else 0.0)
            left.append(max(self.plan.budget_s - spent, 0.0))
        return f"  ETA {clock_text(min(left))}" if left else ""

    def evaluate(self, state: LoopState) -> None:
        """Evaluate on valid, log it, keep the best, tell `on_eval`. A better result's weights
        are written (weights only, in the background) when `keep_best`; an evaluation writes
        no full checkpoint unless train.checkpoint_at_eval asks for one (see `checkpoint_due`)."""
        if self.measure is None:
            state.eval_due = "epoch_log" if state.eval_due == "epoch" else None
            return
        t0 = time.perf_counter()
        metrics = {f"valid/{k}": v for k, v in self.measure().items()}
        with interrupts_held():  # a Ctrl-C after the record, before the best: evaluated twice
            value = self._record_eval(state, metrics, time.perf_counter() - t0)
        self.say("  ".join([f"step {state.step}"] + [f"{k} {v:.4f}" for k, v in metrics.items()]))
        if value is None and state.best_step is None and not self._missing_said:
            self._missing_said = True  # e.g. f1 on a data set with more than two labels
            self.say(
                f"warning: {self.primary} was not measured ({', '.join(metrics)} were): no "
                "best step and no early stopping on it; set train.early_stop_metric to one of those"
                if metrics
                else "warning: validation measured nothing (no validation example has a gold "
                "label): no best step and no early stopping; give labelled validation data"
            )
        if self.on_eval is not None:
            self.on_eval(state.step, metrics)
        self.window_t0 += time.perf_counter() - t0  # tokens/s is training's: not the pause

    def _record_eval(self, state: LoopState, metrics: dict[str, float], eval_s: float) -> Any:
        """Log an evaluation, keep the best, mark it done; its primary metric's value."""
        state.eval_seconds += eval_s
        record = {
            "step": state.step,
            "epoch": round(state.step / self.plan.steps_per_epoch, 4),
            "kind": "eval",
            **metrics,
            "eval_seconds": round(eval_s, 3),
        }
        self.run.log(record)
        state.last_eval = metrics
        value = metrics.get(self.primary)
        if value is not None:
            if _better(value, state.best_value, self.primary_mode):
                state.best_value, state.best_step = value, state.step
                state.evals_since_best = 0
                best = {"metric": self.primary, "value": value, "step": state.step}
                if self.keep_best:
                    where = self.run.save_best(self.eng.model, best, background=True)
                    self.run.update(best=best, best_checkpoint=where)
                else:
                    self.run.update(best=best)
            else:
                state.evals_since_best += 1
        state.eval_due = "epoch_log" if state.eval_due == "epoch" else None
        return value

    def log_epoch(self, state: LoopState) -> None:
        record = {"step": state.step, "epoch": state.epoch, "kind": "epoch", **state.last_eval}
        self.run.log(record | {"time": round(self.clock.seconds(), 2)})
        state.eval_due = None

    def owed(self, state: LoopState, stop: StopRule) -> str | None:
        """On resume: what a Ctrl-C cut short after a step, done before the next one as the
        uninterrupted run did it: the step's evaluation (and epoch log), or ("check") only
        whether the run ends there; at the end, the last train log (and, for a step that did
        not evaluate, the final evaluation). The stop reason, if the run ends."""
        last = max(state.step - 1, 0)  # the last step's lr, for the train log the end may owe
        self.eng.set_lr(lr_factor(self.cfg, last, self.plan.total_steps, stop.budget_used(last)))
        evaluated = state.eval_due != "check"
        if state.eval_due in ("check", "end"):  # "end": all done but the last checkpoint
            state.eval_due = None
        if state.eval_due in ("step", "epoch"):
            self.evaluate(state)
        if state.eval_due == "epoch_log":
            self.log_epoch(state)
        why = stop.reason(state, evaluated)
        if why:
            self.log_train(state)
            if not evaluated:
                self.evaluate(state)
        return why

    def checkpoint_due(self, state: LoopState, evaluated: bool) -> bool:
        """A checkpoint not forced by the end: every checkpoint_every steps, checkpoint_minutes
        after the last one (a host clock: no device sync), and at evaluations when
        train.checkpoint_at_eval. Only rank 0 writes, so the ranks need not agree on the time."""
        if self.cfg.checkpoint_every and state.step % self.cfg.checkpoint_every == 0:
            return True
        if evaluated and self.cfg.checkpoint_at_eval:
            return True
        minutes = self.cfg.checkpoint_minutes
        return minutes is not None and self.clock.seconds() - self.last_saved_s >= minutes * 60

    def checkpoint(self, state: LoopState, force: bool = False) -> None:
        """Save weights, optimizer, RNG states and `state` (once per step unless forced): a
        snapshot now, the files written in the background (the next save, `Run.flush` and
        the end of the run wait for them and raise a failed write's error)."""
        if self.last_saved == state.step and not force:
            return
        self.last_saved = state.step
        state.train_seconds = self.last_saved_s = self.clock.seconds()
        state.setup_seconds = self.clock.setup_s
        self.run.save_checkpoint(
            self.eng.model,
            self.eng.optimizer,
            {**state.to_json(), **_rng_json(), "saved_at": time.time()},
            tensors=_rng_tensors(self.eng.device),
            keep=self.cfg.keep_checkpoints,
            background=True,
        )
        seconds = round(state.train_seconds, 2)
        self.run.update(steps=state.step, epoch=state.epoch, train_seconds=seconds)

    def interrupted(self, state: LoopState, message: str) -> None:
        """Ctrl-C: save where the loop is (micro-batches read but not stepped given back)."""
        self.progress.close()
        self._written(lambda: self.checkpoint(state, force=True))
        self.run.update(status="interrupted", message=message)
        self.run.close()

    def failed(self, error: BaseException) -> None:
        self.progress.close()
        with contextlib.suppress(Exception):  # `error` is the one to report
            self.run.flush()
        self.run.update(status="failed", message=f"{type(error).__name__}: {error}")
        self.run.close()

    def _written(self, save: Callable[[], None] | None) -> None:
        """`save`, then wait for the writes in flight: a failed one fails the run here."""
        try:
            if save is not None:
                save()
            self.run.flush()
        except Exception as e:
            self.failed(e)
            raise

    def finish(self, state: LoopState, stopped: str) -> FitResult:
        """The end: the last checkpoint (if the loop's end did not write one), every write
        done, run.json's final word; the run directory is given back."""
        self._written(functools.partial(self.checkpoint, state) if stopped == "finished" else None)
        state.settle()
        seconds = self.clock.seconds()
        # the training rate: evaluations are not training (they are in train_seconds)
        tokens_per_s = state.tokens / max(seconds - state.eval_seconds, 1e-9)
        self.run.update(
            status="failed" if stopped.startswith("loss was not finite") else "finished",
            stopped_because=stopped,
            finished=time.time(),
            nonfinite_steps=state.nonfinite_total,
            tokens=state.tokens,
            tokens_per_s=round(tokens_per_s, 1),
            eval_seconds=round(state.eval_seconds, 2),
        )
        self.run.close()
        return FitResult(
            step=state.step,
            epoch=state.epoch,
            stopped_because=stopped,
            best=self.run.info.get("best", {}),
            last_eval=state.last_eval,
            tokens_per_s=tokens_per_s,
            train_seconds=seconds,
        )


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
    started: float | None = None,
    tail_rows: int = 0,
    keep_best: bool = False,
) -> FitResult:
    """Train until epochs / max_steps / time budget / early stop; checkpoint as it goes.
    The arguments after `seed` are described under "fit's arguments" in the module docstring."""
    rank = distributed.rank()
    if rank > 0:
        run, say, on_eval = ReadOnlyRun(run.path), distributed.main_says(say), None
    if len(train_set) == 0:
        raise UserError("the training set is empty; check the data section of the config")
    check_batch_size(cfg)
    check_early_stop_metric(cfg, getattr(objective, "metric_names", ()))
    setup_s = time.perf_counter() - started if started is not None else 0.0
    plan = Plan.of(cfg, len(train_set), tail_rows)
    if plan.total_steps and cfg.warmup_steps > plan.total_steps:  # known now: say it now
        say(f"warning: {long_warmup(cfg.warmup_steps, plan.total_steps)}")
    device = next(model.parameters()).device
    amp = autocast_dtype(cfg.precision, device)
    eng = Engine(model, optimizer, objective, device, amp, _pin_base_lrs(optimizer))
    state = _resume(run, model, optimizer, device, say) if resume else LoopState()
    _prepare(eng, cfg, seed, state.step)
    _describe(run, plan, len(train_set), valid_set, device, amp)
    clock = Clock(state.train_seconds, state.setup_seconds + setup_s)
    primary, primary_mode = _primary(cfg, objective)
    stop = StopRule(cfg, plan, clock, primary, _eval_rows(valid_set, cfg))
    measure = stop.timed_eval(_measure(eng, valid_set, collate, cfg, evaluator))
    bar = _Progress(plan.total_steps, plan.budget_s, initial=state.step, show=rank == 0)
    rec = Recorder(
        run, say, eng, cfg, plan, clock, measure, on_eval, primary, primary_mode, bar, keep_best
    )
    rec.last_saved_s = clock.seconds()

    stopped = "finished"
    group: list[tuple[Batch, bool]] = []  # micro-batches read but not yet stepped
    try:
        if state.eval_due and (why := rec.owed(state, stop)):
            rec.checkpoint(state)
            raise StopRun(why)
        while cfg.epochs is None or state.epoch < cfg.epochs:
            if state.micro >= plan.micro_per_epoch:  # saved at an epoch's very end (a run
                state.epoch, state.micro = state.epoch + 1, 0  # stopped there before today)
                continue
            for batch, real in _epoch_batches(train_set, collate, cfg, seed, state, num_workers):
                group.append((batch, real))
                state.micro += 1
                end_of_epoch = state.micro >= plan.micro_per_epoch
                if len(group) < cfg.grad_accum and not end_of_epoch:
                    continue
                eng.set_lr(
                    lr_factor(cfg, state.step, plan.total_steps, stop.budget_used(state.step))
                )
                with interrupts_held():  # a Ctrl-C lands after the step and its bookkeeping
                    stepped = optimizer_step(eng, group, cfg.grad_clip)
                    group = []
                    state.count(stepped)
                    rec.stepped(state, stepped.shown_tokens())
                    if forecast := stop.forecast(state, eng, batch):
                        say(forecast)
                        run.update(expected_steps=stop.expected_steps)
                        rec.expected_steps = stop.expected_steps
                        bar.expect(stop.expected_steps, stop._spent)
                    log_now = state.step % cfg.log_every == 0 or end_of_epoch
                    if end_of_epoch:  # before any checkpoint: a resume starts the next epoch
                        state.epoch, state.micro = state.epoch + 1, 0
                    if not eng.defers or log_now:  # deferred: skipped steps read at log time
                        if why := stop.diverged(state.settle()):
                            rec.checkpoint(state)
                            raise StopRun(why)
                    if log_now:
                        rec.expected_steps = stop.reforecast(state.step)
                        rec.log_train(state)
                    evaluated = (
                        end_of_epoch or bool(cfg.eval_every) and state.step % cfg.eval_every == 0
                    )
                    # what this step still owes, until done: a Ctrl-C held above lands here,
                    # and a resume does it (Recorder.owed) before the next step
                    state.eval_due = ("epoch" if end_of_epoch else "step") if evaluated else "check"
                if evaluated:
                    rec.evaluate(state)
                    if end_of_epoch:
                        rec.log_epoch(state)
                why = stop.reason(state, evaluated)
                if why and not log_now:  # the end: log the last steps' window
                    rec.log_train(state)
                if why and not evaluated:  # ... and evaluate them
                    rec.evaluate(state)
                state.eval_due = "end" if why else None  # "end": owed until the run finishes
                if why or rec.checkpoint_due(state, evaluated):
                    rec.checkpoint(state)
                if why:
                    raise StopRun(why)
    except StopRun as stop_run:
        stopped = str(stop_run)
    except (KeyboardInterrupt, StopRequested) as stop_now:
        state.micro -= len(group)
        rec.interrupted(state, str(stop_now) or "interrupted by the user")
        raise
    except Exception as e:
        rec.failed(e)
        raise
    finally:
        bar.close()
    return rec.finish(state, stopped)


# ---------------------------------------------------------------------------------------------
# Small pieces fit uses: setup, batch order, schedule, evaluation, RNG states, progress bar


def _prepare(eng: Engine, cfg: TrainConfig, seed: int, step: int) -> None:
    """The model as the loop drives it: training mode, TF32 on GPUs (fp32 matmuls on tensor
    cores, Ampere and later), DistributedDataParallel under torchrun, torch.compile."""
    eng.model.train()
    if eng.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.tf32
    eng.ddp = _data_parallel(eng.model, seed, step)
    if cfg.compile:
        eng.compiled = torch.compile(eng.net)


def check_batch_size(cfg: TrainConfig) -> None:
    """Under torchrun, train.batch_size is the global batch: each process takes an equal part."""
    world = distributed.world()
    if cfg.batch_size % world:
        raise UserError(
            f"train.batch_size={cfg.batch_size} is the global batch and must divide evenly "
            f"among the {world} processes; make it a multiple of {world}"
        )


def _pin_base_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's configured lr (kept as "initial_lr"), which the schedule multiplies."""
    base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    for g, lr in zip(optimizer.param_groups, base_lrs, strict=True):
        g["initial_lr"] = lr
    return base_lrs


def _resume(
    run: Run,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    say: Callable[[str], None],
) -> LoopState:
    """Restore weights, optimizer, RNG states and the loop's position from the last checkpoint;
    drop the metrics logged after it (they are logged again)."""
    loaded, tensors = run.load_checkpoint(model, optimizer)
    for note in run.skip_notes():  # broken newer checkpoints it fell back past
        say(note)
    state = LoopState.from_json(loaded, device)
    _restore_rng(loaded, tensors)
    run.truncate_metrics(state.step)
    say(f"resumed {run.path} at step {state.step} (epoch {state.epoch}, batch {state.micro})")
    return state


def _data_parallel(model: nn.Module, seed: int, step: int) -> DistributedDataParallel | None:
    """The DDP wrapper under torchrun (None in one process).

    Every rank starts from rank 0's weights (DDP broadcasts them). Dropout masks must differ
    between ranks, as between the rows of one batch: ranks > 0 draw from their own seed (rank 0
    keeps the stream a single process has, and checkpoints it).
    """
    rank, world = distributed.rank(), distributed.world()
    if world == 1:
        return None
    if rank > 0:
        state = np.random.SeedSequence([seed, rank, step]).generate_state(1)
        torch.manual_seed(int(state[0]))
    device = next(model.parameters()).device
    # the buffers are constants (position tables, ALiBi slopes, transformers' position ids):
    # no broadcast from rank 0 before every forward (newer torch names it forward_sync_buffers
    # and warns on every rank about the old name)
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(
        model,
        device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=_foreign_modules(model),
        **{no_sync: False},
    )


def _foreign_modules(model: nn.Module) -> bool:
    """Whether the model holds modules encoderlab did not write (a wrapped transformers model),
    which may own parameters the loss never reaches (its pooler): DDP must then look for them."""
    return any(
        not type(m).__module__.startswith(("encoderlab.", "torch.")) for m in model.modules()
    )


def _describe(
    run: Run,
    plan: Plan,
    train_rows: int,
    valid_set: Dataset | None,
    device: torch.device,
    amp: torch.dtype | None,
) -> None:
    run.update(
        status="running",
        total_steps=plan.total_steps,
        steps_per_epoch=plan.steps_per_epoch,
        train_examples=train_rows,
        valid_examples=len(valid_set) if valid_set is not None else 0,
        device=str(device),
        processes=distributed.world(),
        precision=str(amp).replace("torch.", "") if amp else "fp32",
        # rounded: 0.12 x 60 / 60 is 0.11999999999999998 (config.yaml says 0.12)
        time_budget_min=round(plan.budget_s / 60, 9) if plan.budget_s is not None else None,
        budget_covers="run" if plan.covers_run else "train",
    )


def _primary(cfg: TrainConfig, objective: Objective) -> tuple[str, str]:
    """The metric that defines "best" (and early stopping), and "max" or "min"."""
    if cfg.early_stop_metric:
        mode = cfg.early_stop_mode or metric_mode(cfg.early_stop_metric.rsplit("/", 1)[-1])
        return cfg.early_stop_metric, mode
    return f"valid/{objective.primary}", objective.primary_mode


def check_early_stop_metric(cfg: TrainConfig, names: Iterable[str]) -> None:
    """train.early_stop_metric must be one of the run's validation metrics (`names`, without
    "valid/"): a typo would otherwise mean no early stopping and no best step, silently."""
    metric = cfg.early_stop_metric
    known = sorted(f"valid/{n}" for n in names)
    if metric is not None and known and metric not in known:
        raise UserError(
            f"train.early_stop_metric={metric}: not a validation metric of this run; "
            f"choose one of {', '.join(known)}"
        )


def _epoch_batches(
    train_set: Dataset,
    collate: Callable,
    cfg: TrainConfig,
    seed: int,
    state: LoopState,
    num_workers: int,
) -> Iterator[tuple[Batch, bool]]:
    """This rank's micro-batches of the epoch from state.micro on, each with False when it is
    a stand-in row (the global batch had fewer rows than ranks)."""
    rank, world = distributed.rank(), distributed.world()
    if hasattr(train_set, "set_epoch"):
        train_set.set_epoch(state.epoch)
    loader = make_loader(
        train_set,
        collate,
        cfg.batch_size,
        epoch_order(
            len(train_set),
            seed,
            state.epoch,
            lengths=getattr(train_set, "lengths", None) if cfg.group_by_length else None,
            batch_size=cfg.batch_size,
        ),
        start=state.micro,
        num_workers=num_workers,
        seed=seed + state.epoch,
        rank=rank,
        world=world,
    )
    for micro, batch in enumerate(loader, start=state.micro):
        yield batch, share(len(train_set), cfg.batch_size, micro, rank, world) > 0


def _eval_rows(valid_set: Dataset | None, cfg: TrainConfig) -> int:
    """Rows one evaluation covers (eval_batches caps it)."""
    rows = len(valid_set) if valid_set is not None else 0
    return min(rows, cfg.eval_batches * cfg.batch_size) if cfg.eval_batches else rows


def lr_factor(cfg: TrainConfig, step: int, total_steps: int | None, progress: float) -> float:
    """Multiplier on cfg.lr at optimizer step `step` (0-based): warmup, then the schedule.

    `progress` in [0, 1]: the share of the time budget spent (0 without a budget). When it runs
    ahead of step / total_steps the budget ends the run, so warmup (warmup_ratio) and decay are
    fractions of the budget rather than of steps the run will never reach.
    """
    ratio = cfg.warmup_ratio
    if cfg.schedule == "onecycle" and "warmup_ratio" not in cfg.model_fields_set:
        ratio = ratio or 0.3  # OneCycleLR's pct_start, unless the config set a ratio
    warmup = cfg.warmup_steps
    if warmup == 0 and total_steps:  # rounded up, as transformers' get_warmup_steps: a
        warmup = math.ceil(ratio * total_steps)  # ratio of a short run still warms up
    by_steps = step / total_steps if total_steps else 0.0
    decay_steps = step - warmup  # optimizer steps since warmup ended
    if progress > by_steps and cfg.warmup_steps == 0:  # the budget binds: fractions of it
        if progress < ratio:
            # never above 1: steps can end warmup before the budget's share does
            return min(1.0, max(progress / ratio, (step + 1) / warmup if warmup else 0.0))
        frac = (progress - ratio) / (1.0 - ratio)
        decay_steps = round(step * frac * (1.0 - ratio) / progress)  # at the speed so far
    else:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, total_steps - warmup) if total_steps else 0.0
        if progress > 0 and step > 0:  # a budget with warmup_steps: decay from warmup's end
            at_warmup_end = progress * warmup / step  # the budget's share then, at this speed
            frac = max(frac, (progress - at_warmup_end) / max(1.0 - at_warmup_end, 1e-9))
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "exponential":
        return max(cfg.min_lr_ratio, cfg.decay_gamma ** max(decay_steps, 0))
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


def _measure(
    eng: Engine,
    valid_set: Dataset | None,
    collate: Callable,
    cfg: TrainConfig,
    evaluator: Callable[[nn.Module], dict[str, float]] | None,
) -> Callable[[], dict[str, float]] | None:
    """The evaluation the Recorder runs: `evaluator` on rank 0 (whole-set decoding, which
    also gives the validation loss; the other ranks wait) or `evaluate` on every rank. None
    when there is no validation set."""
    if valid_set is None or len(valid_set) == 0:
        return None
    if evaluator is not None:
        return lambda: distributed.on_main(lambda: evaluator(eng.model))

    def objective_metrics() -> dict[str, float]:
        return evaluate(eng.model, valid_set, collate, eng.objective, cfg, eng.device, eng.amp)

    return objective_metrics


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
    order = np.arange(len(dataset))
    if cfg.eval_batches is not None:  # a fixed sample of the whole set, not its first rows
        order = np.random.default_rng(0).permutation(len(dataset))  # (the first source's)
    loader = make_loader(dataset, collate, cfg.batch_size, order, rank=rank, world=world)
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
    """Whether `value` beats `best`. NaN never does: as the first best it was beaten by
    nothing after it (every comparison with NaN is false), so that evaluation's weights were
    the run's and early stopping counted every later, finite one as no better."""
    if math.isnan(value):
        return False
    if best is None or math.isnan(best):  # runs saved before NaN was refused may hold one
        return True
    return value > best if mode == "max" else value < best


def _sum_counts(acc: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> None:
    for k, v in counts.items():
        v = v.detach().float()
        acc[k] = acc[k] + v if k in acc else v


def _floats(acc: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in acc.items()}


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


class _Progress:
    """A rich progress bar with tokens/s, loss and ETA; silent when stderr is not a terminal.

    Under a time budget, once `expect` is told the budget's clock, the ETA is the budget
    left and the bar's end the steps that fit in it at the speed measured on that clock
    (evaluations included). Retotalling a rich task clears its speed samples, so rich's own
    ETA of such a bar stayed at -:--:-- and its end jumped with every step's time."""

    def __init__(
        self, total: int | None, budget_s: float | None, initial: int, show: bool = True
    ) -> None:
        self.bar = None
        self.budget_s = budget_s
        self._info = ""  # the last metrics shown (they are read every 5th step)
        self._spent: Callable[[], float] | None = None  # the budget's clock, once forecast
        self._since: tuple[int, float] = (0, 0.0)  # (step, budget seconds) speed is timed from
        self._steps_cap: int | None = None  # max_steps, when a budget may end the run first
        if not show or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(*bar_columns("train"), console=Console(stderr=True), transient=False)
        self.task = self.bar.add_task("train", total=total, completed=initial, info="")
        self.bar.start()

    def expect(self, steps: int | None, spent: Callable[[], float]) -> None:
        """A time budget's forecast of the run's steps: the bar's end (and its ETA) when the
        budget ends the run first (it showed max_steps, or no end at all). Re-estimated at
        every update from the budget left and the speed since this call."""
        if self.bar is None or not steps or not self.budget_s:
            return
        self._steps_cap = self.bar.tasks[0].total
        self._spent = spent
        self._since = (int(self.bar.tasks[0].completed), spent())
        self._retotal(steps, max(self.budget_s - self._since[1], 0.0))

    def _retotal(self, steps: float, left_s: float) -> None:
        cap = self._steps_cap
        total = int(min(steps, cap)) if cap else int(steps)
        self.bar.update(self.task, total=max(total, int(self.bar.tasks[0].completed)), eta=left_s)

    def _budget(self, step: int) -> None:
        """The budget's ETA and the bar's end from the speed on the budget's clock."""
        spent = self._spent()
        left = max(self.budget_s - spent, 0.0)
        step0, spent0 = self._since
        if step <= step0 or spent <= spent0:
            self.bar.update(self.task, eta=left)
            return
        speed = (step - step0) / (spent - spent0)
        cap = self._steps_cap
        if cap and (cap - step) / speed < left:  # max_steps comes first
            left = (cap - step) / speed
        self._retotal(step + left * speed, left)

    def update(
        self,
        step: int,
        window: dict[str, torch.Tensor],
        objective: Objective,
        tokens: int,
        window_s: float,
    ) -> None:
        if self.bar is None:
            return
        info = f"{tokens / max(window_s, 1e-9):,.0f} tok/s"
        if window and step % 5 == 0:  # metrics read the window back from the GPU: not every step
            metrics = objective.metrics(_floats(window))
            shown = "  ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:2])
            self._info = info + "  " + shown  # throughput first: it is what a narrow bar keeps
        self.bar.update(self.task, completed=step, info=self._info or info)
        if self._spent is not None:
            self._budget(step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
