"""Checkpoint writes off the training thread: snapshot now, write in the background.

Writing a checkpoint (weights, optimizer moments, RNG states) means hundreds of MB for a small
encoder, and training waited for every byte of it. Copying the tensors is quick, so the
training thread takes CPU copies (`snapshot`: on a GPU non-blocking copies into pinned memory,
then one sync) and goes on, while a side thread writes the files (`BackgroundWriter`). The
files themselves are written as before (a temporary folder renamed into place, see
`encoderlab.runs`), so a kill at any moment still leaves the previous checkpoint intact.

At most one write is in flight: the next save waits for the previous one, and so do `flush`
and the end of the run, which is also where a failed write's error (a full disk) is raised, on
the training thread, so it reaches the one-line error path rather than dying in the thread.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from safetensors.torch import _remove_duplicate_names  # what save_model drops: shared tensors


def snapshot(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of `tensors` that training may go on changing the originals of.
    On a GPU the copies are non-blocking, into pinned memory, and waited for once at the end."""
    out: dict[str, torch.Tensor] = {}
    on_gpu = False
    for name, t in tensors.items():
        t = t.detach()
        if t.device.type == "cuda":
            out[name] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            out[name].copy_(t, non_blocking=True)
            on_gpu = True
        elif t.device.type == "cpu":
            out[name] = t.clone(memory_format=torch.contiguous_format)
        else:  # e.g. mps: a blocking copy
            out[name] = t.to("cpu").contiguous()
    if on_gpu:
        torch.cuda.synchronize()
    return out


def model_snapshot(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str] | None]:
    """The model's tensors as safetensors' `save_model` writes them (a tensor shared by two
    names, e.g. a tied MLM decoder, once; the metadata names the dropped alias), copied."""
    state = model.state_dict()
    metadata: dict[str, str] = {}
    for kept, aliases in _remove_duplicate_names(state).items():
        for alias in aliases:
            metadata.setdefault(alias, kept)
            del state[alias]
    return snapshot(state), metadata or None


class BackgroundWriter:
    """Runs one write at a time in a side thread. `submit` waits for the previous write first;
    `wait` waits for the current one. Either raises, on the caller's thread, the error a write
    failed with (once)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, write: Callable[[], object]) -> None:
        self.wait()
        # a Ctrl-C between making the thread and starting it would leave one that `wait`
        # cannot join (seen in CI): the interrupt is held until the thread runs
        with interrupts_held():
            self._thread = threading.Thread(
                target=self._run, args=(write,), name="encoderlab-checkpoint-writer", daemon=True
            )
            self._thread.start()

    def _run(self, write: Callable[[], object]) -> None:
        try:
            write()
        except BaseException as e:  # raised on the training thread by `wait`
            self._error = e

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()  # a Ctrl-C here leaves the thread known: waited for again
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


INTERRUPTS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl-C, and what the CLI reads as one


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold an interrupt (Ctrl-C, SIGTERM, SIGHUP) that arrives inside the block and deliver
    it after, as its handler would have (KeyboardInterrupt, under Python's and the CLI's): a
    block of bookkeeping is never left half done. Ignored signals stay ignored; only the main
    thread can set handlers: elsewhere, as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[int, Any] = {}
    for name in INTERRUPTS:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) not in (signal.SIG_IGN, None):
            previous[signum] = signal.signal(signum, lambda n, frame: held.append(n))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(held):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)
