"""Data-parallel training under `torchrun`: process group set-up and the few collectives used.

`torchrun --nproc_per_node N -m encoderlab pretrain ...` starts N copies of the command with
WORLD_SIZE / RANK / LOCAL_RANK / MASTER_ADDR / MASTER_PORT set; `session` turns those into a
process group (gloo on CPU, nccl on CUDA, one GPU per process chosen by LOCAL_RANK) and takes
it down again, also on error. Without torchrun (WORLD_SIZE unset or 1) every helper here is a
no-op that returns its input, so single-process code paths need no branches.

Conventions: rank 0 is the only rank that writes (run directory, checkpoints, logs) and
prints; data preparation (tokenizer training, token caches) runs on rank 0 first, and the
others then reuse what it made.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from encoderlab.errors import UserError

T = TypeVar("T")


def launched() -> bool:
    """True when started by torchrun (or any launcher setting WORLD_SIZE) with several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def local_rank() -> int:
    """This process's index on its node: which GPU it uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0: the one that writes files and prints."""
    return rank() == 0


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[None]:
    """Join the process group torchrun described (if any) for the duration of a command.

    Ranks other than 0 print nothing from here on: their stdout goes to os.devnull, so
    progress and summary lines appear once; their stderr stays, so errors are still seen.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield  # a single process, or a caller that already set up the group
        return
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed; run without torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if not is_main():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    try:
        yield
        # every rank done with its collectives before any tears the group down: a rank that
        # left early was seen to abort at exit ("terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where tensors for collectives must live: this process's GPU for nccl, else the CPU."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def main_says(say: Callable[[str], None]) -> Callable[[str], None]:
    """`say` on rank 0, a no-op on the others: each line is printed once."""
    return say if is_main() else _silent


def _silent(msg: str) -> None:
    pass


def barrier() -> None:
    if active():
        dist.barrier()


def sum_counts(counts: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Each count summed over all ranks (float64 on the collective device); every rank must
    pass the same keys. One all_reduce for the whole dict.

    Nothing here waits for a GPU: the plain numbers travel in one pinned, non-blocking copy
    (a blocking one would wait for all the work queued before it), and nccl's all_reduce is
    queued on the stream like any kernel. Reading a result (float(), int()) is what waits."""
    keys = sorted(counts)
    if not keys:
        return {}
    device = _collective_device()
    numbers = [k for k in keys if not isinstance(counts[k], torch.Tensor)]
    host = torch.tensor([float(counts[k]) for k in numbers], dtype=torch.float64)
    if device.type == "cuda":
        host = host.pin_memory().to(device, non_blocking=True)
    copied = dict(zip(numbers, host.unbind(), strict=True))
    flat = torch.stack(
        [
            copied[k] if k in copied else counts[k].to(device, torch.float64).reshape(())
            for k in keys
        ]
    )
    if active():
        dist.all_reduce(flat)
    return dict(zip(keys, flat.unbind(), strict=True))


def main_values(**xs: float) -> dict[str, float]:
    """Rank 0's numbers on every rank (one small all_reduce): for what must agree across
    ranks although each measures it, such as the seconds trained under a time budget."""
    if not active():
        return dict(xs)
    summed = sum_counts({k: v if is_main() else 0.0 for k, v in xs.items()})
    return {k: float(summed[k]) for k in xs}


def broadcast(value: T) -> T:
    """Rank 0's value (anything picklable) on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """fn() on rank 0 only; every rank returns its result (which must pickle).

    A UserError on rank 0 is raised on every rank, so all of them stop with the same line;
    any other failure stops the other ranks with a pointer to rank 0's traceback.
    """
    if not active():
        return fn()
    if not is_main():
        return _outcome(broadcast(None))
    with _announce() as box:
        box[0] = fn()
    return box[0]


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0, then on the others: for preparing a cache once (rank 0 builds
    it, the others find it ready). A failure on rank 0 stops the others before their turn."""
    if not active():
        yield
        return
    if not is_main():
        _outcome(broadcast(None))
        yield
        return
    with _announce():
        yield


@contextlib.contextmanager
def _announce() -> Iterator[list[Any]]:
    """On rank 0: tell the waiting ranks how the block ended (its value, a UserError, a crash)."""
    box: list[Any] = [None]
    try:
        yield box
    except UserError as e:
        broadcast(("user", str(e)))
        raise
    except BaseException as e:
        try:
            broadcast(("crash", f"{type(e).__name__}: {e}"))
        except RuntimeError:  # the others are gone too (a Ctrl-C or SIGTERM reached them all):
            pass  # the interrupt, not "connection closed by peer", is what ended the command
        raise
    broadcast(("ok", box[0]))


def _outcome(message: tuple[str, Any]) -> Any:
    kind, value = message
    if kind == "user":
        raise UserError(value)
    if kind == "crash":
        raise RuntimeError(f"rank 0 failed ({value}); see its traceback")
    return value
