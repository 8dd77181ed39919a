"""What training and inference share at run time: seeds, devices, precision, batch order, loaders.

Inference (`predict`, `evaluate`, serving) imports this module and not the trainer.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from encoderlab import distributed
from encoderlab.errors import UserError

Batch = dict[str, torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int | None, say: Callable[[str], None]) -> None:
    """train.threads for torch; more than the machine's cores make the threads wait for each
    other (64 on 2 cores ran a step ~10x slower), which deserves a line."""
    if not threads:
        return
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and threads > cores:
        say(
            f"warning: train.threads={threads} is more than the {cores} cores this process may "
            f"use: the threads wait for each other; set train.threads={cores} (or null)"
        )
    torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:
    """'auto' is the GPU if there is one; under torchrun each process takes GPU LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(
            f"train.device={name}: not a device; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and device.index is None and distributed.launched():
        device = torch.device("cuda", distributed.local_rank())
    _check_available(device, name)
    return device


def _check_available(device: torch.device, name: str) -> None:
    """A device this machine lacks is the config's mistake, said before any work starts."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(
                f"train.device={name}: no CUDA GPU here (torch {torch.__version__}); "
                "use train.device=cpu or auto"
            )
        if device.index is not None and device.index >= count:
            raise UserError(
                f"train.device={name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"train.device={name}: MPS is not available here; use cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"train.device={name}: not supported; use auto, cpu, cuda, cuda:N or mps")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None means plain fp32. 'auto' picks bf16 on a GPU that has it, else fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


GROUP_WINDOW = 100  # batches whose rows are sorted by length together


def epoch_order(
    n: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    lengths: np.ndarray | None = None,
    batch_size: int = 1,
    window: int = GROUP_WINDOW,
) -> np.ndarray:
    """The example order of one epoch: a pure function of (seed, epoch), so resume can skip ahead.

    With `lengths` (shuffled orders only) the order is length-grouped, see `grouped_order`.
    """
    if not shuffle:
        return np.arange(n)
    order = np.random.default_rng([seed, 1, epoch]).permutation(n)
    if lengths is None:
        return order
    return grouped_order(order, np.asarray(lengths), batch_size, seed, epoch, window)


def grouped_order(
    order: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    window: int = GROUP_WINDOW,
) -> np.ndarray:
    """A shuffled order re-arranged so that each batch holds rows of similar length.

    Batches are padded to their longest row; in a random order ~40-55 % of the positions of
    short-text fine-tuning are padding. Here the shuffled order is cut into windows of
    `window` batches, each window is sorted by length (stable, so ties keep the shuffle) and
    cut into batches, and the full batches of the whole epoch are shuffled again, so the
    length of a batch says nothing about where in the epoch it comes. Padding drops to 1-2 %
    while every row is still seen once per epoch, in an order that is a pure function of
    (seed, epoch, lengths): resume and the ranks' deal (rows of one global batch) stay exact.
    The epoch's short last batch (n not a multiple of batch_size) stays last.
    """
    n = len(order)
    span = max(1, window) * batch_size
    pieces = [
        order[i : i + span][np.argsort(lengths[order[i : i + span]], kind="stable")]
        for i in range(0, n, span)
    ]
    grouped = np.concatenate(pieces) if pieces else order
    full = n // batch_size
    batches = grouped[: full * batch_size].reshape(full, batch_size)
    shuffled = batches[np.random.default_rng([seed, 2, epoch]).permutation(full)]
    return np.concatenate([shuffled.reshape(-1), grouped[full * batch_size :]])


def padding_share(order: np.ndarray, lengths: np.ndarray, batch_size: int) -> float:
    """The share of the positions of an epoch's padded batches that are padding."""
    lengths = np.asarray(lengths)[order]
    real = padded = 0
    for i in range(0, len(lengths), batch_size):
        chunk = lengths[i : i + batch_size]
        real += int(chunk.sum())
        padded += int(chunk.max()) * len(chunk)
    return 1.0 - real / max(padded, 1)


def share(n: int, batch_size: int, b: int, rank: int = 0, world: int = 1) -> int:
    """Rows of global batch `b` (of an epoch of n examples) that go to `rank` of `world`."""
    return len(range(rank, min(batch_size, n - b * batch_size), world))


class Batches(torch.utils.data.Sampler):
    """Lists of indices for one epoch, starting at batch `start`.

    With world > 1 each global batch of `batch_size` rows is dealt out row by row and this
    yields rank `rank`'s rows, so the ranks' shares together are exactly the one-process batch.
    A rank left without rows (the epoch's last batch is shorter than world) gets the batch's
    first row as a stand-in that the trainer weights 0: every rank must join every backward.
    """

    def __init__(
        self, order: np.ndarray, batch_size: int, start: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        self.order, self.batch_size, self.start = order, batch_size, start
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, math.ceil(len(self.order) / self.batch_size) - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.start, math.ceil(len(self.order) / self.batch_size)):
            rows = self.order[b * self.batch_size : (b + 1) * self.batch_size]
            mine = rows[self.rank :: self.world]
            yield (mine if len(mine) else rows[:1]).tolist()


def make_loader(
    dataset: Dataset,
    collate: Callable,
    batch_size: int,
    order: np.ndarray,
    start: int = 0,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A loader over `order` from batch `start` (this rank's rows under DDP).

    pin_memory (None: when there is a GPU) lets `to_device`'s non_blocking copy run
    asynchronously; from pageable memory the host waits for the copy, and so for the GPU
    work queued before it, every micro-batch. Workers (`num_workers`) pay off only when
    collating is slow: fine-tuning features are encoded ahead, and padding 32 of them takes
    0.3 ms (measured on a loaded CPU) against a step of 100+ ms, so fine-tuning keeps 0.
    """
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    # An explicit generator keeps DataLoader from drawing from the global torch RNG, which
    # would shift dropout masks and break exact resume.
    return DataLoader(
        dataset,
        batch_sampler=Batches(order, batch_size, start, rank, world),
        collate_fn=collate,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,  # one loader per epoch (and resume): nothing to keep
        pin_memory=pin_memory,
    )


def batch_tokens(batch: Batch) -> int:
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def autocast(device: torch.device, amp: torch.dtype | None) -> contextlib.AbstractContextManager:
    if amp is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp)


# ---------------------------------------------------------------------------------------------
# Progress bars


def bar_columns(label: str, bar_width: int = 30, bytes_done: bool = False) -> list[Any]:
    """The columns of a rich progress bar: label, bar, done/total (`bytes_done`: in bytes),
    the task's `info` field, elapsed time and ETA. On a narrow terminal the info text (and
    then the bar) gives way: rich shortened every column alike, so an 80-column terminal
    showed "300/…" and "ETA 0:00:…". The ETA is the task's `eta` field (seconds) when one is
    set, e.g. what a time budget has left, else rich's estimate from the bar's speed."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Column
    from rich.text import Text

    class Info(ProgressColumn):
        def render(self, task: Any) -> Text:  # one line, cut with an ellipsis when narrow
            return Text(str(task.fields.get("info", "")), no_wrap=True, overflow="ellipsis")

    class Eta(ProgressColumn):
        max_refresh = 0.5  # rich's own ETA column's pace: the figure does not flicker

        def render(self, task: Any) -> Text:
            return Text(f"ETA {clock_text(eta_seconds(task))}", style="progress.remaining")

    def kept() -> Column:
        return Column(no_wrap=True)

    return [
        TextColumn(f"[bold]{label}", table_column=kept()),
        BarColumn(bar_width=bar_width),
        (DownloadColumn if bytes_done else MofNCompleteColumn)(table_column=kept()),
        Info(),
        TimeElapsedColumn(table_column=kept()),
        Eta(table_column=kept()),
    ]


def eta_seconds(task: Any) -> float | None:
    """A bar task's seconds to go: its `eta` field when set, else rich's estimate."""
    if task.finished:
        return 0.0
    eta = task.fields.get("eta")
    return max(float(eta), 0.0) if eta is not None else task.time_remaining


def clock_text(seconds: float | None) -> str:
    """Seconds as H:MM:SS (rich's style); -:--:-- while unknown."""
    if seconds is None:
        return "-:--:--"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"
