"""The one exception type the CLI turns into a one-line message and exit code 2, how a
full disk is recognised (also one line and exit code 2: see runs.after_disk_full), and
SIGTERM / SIGHUP read as Ctrl-C (a run saves its checkpoint and exits 130 either way)."""

from __future__ import annotations

import contextlib
import errno
import signal
import threading
from collections.abc import Iterator
from typing import Any


class UserError(Exception):
    """Bad input from the user (a file, a config field, a flag), not a bug in encoderlab.

    The message must say what was wrong, where (file:line or config key) and how to fix it.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C with a next step of its own (a sweep's `--resume`): the CLI prints this message
    instead of a run's. Typer turns any Ctrl-C into exit code 130 on its way out of a command,
    so a command keeps the one it raised in `last` for the CLI (see sweep_command)."""

    last: Interrupted | None = None


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name when the message is empty):
    what a one-line error quotes of a library's exception."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _chain(e: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and all(cur is not seen for seen in out):
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def disk_full(e: BaseException) -> bool:
    """Whether `e` (or what caused it) is a full disk or quota: errno ENOSPC/EDQUOT, or the
    message safetensors, tokenizers (Rust) and worker processes give for it."""
    for cur in _chain(e):
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(cur)
        if "No space left on device" in text or "os error 28" in text or "StorageFull" in text:
            return True
    return False


def disk_full_head(e: BaseException) -> str:
    """ "disk full while writing FILE" (the file when the error names one)."""
    for cur in _chain(e):
        if isinstance(cur, OSError) and cur.filename:
            return f"disk full while writing {cur.filename}"
    return "disk full (no space left on device)"


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM / SIGHUP (a scheduler's stop, a closed terminal) stop the work as Ctrl-C does:
    a run saves its checkpoint first; a study stops its running arm (in a session of its own,
    it would not get them)."""
    names = ("SIGTERM", "SIGHUP")
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = {n: signal.signal(getattr(signal, n), handler) for n in names if hasattr(signal, n)}
    try:
        yield
    finally:
        for n, h in old.items():
            signal.signal(getattr(signal, n), h)
