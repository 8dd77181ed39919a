"""What training and inference share at run time: seeds, devices, precision, batch order, loaders.

Inference (`predict`, `evaluate`, serving) imports this module and not the trainer.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from encoderlab import distributed

Batch = dict[str, torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'auto' is the GPU if there is one; under torchrun each process takes GPU LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and distributed.launched():
        device = torch.device("cuda", distributed.local_rank())
    return device


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


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The example order of one epoch: a pure function of (seed, epoch), so resume can skip ahead."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, 1, epoch]).permutation(n)


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
    """pin_memory (default: when there is a GPU) lets `to_device` copy without blocking."""
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
