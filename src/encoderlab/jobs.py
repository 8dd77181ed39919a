"""What studies and sweeps (jobs of many runs) share: their state files, written atomically,
and what they ask of a run directory (its run.json, its checkpoints, which one a run made).

One place, so the two read run directories the same way (through `encoderlab.runs`) and a
state file is never left half-written by a Ctrl-C.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from encoderlab.runs import Run, atomic_write


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace `path` with `data` as JSON in one step: a reader sees the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False, default=str))


def run_info(run_dir: Path) -> dict[str, Any]:
    """The run's run.json, or {} while there is none (or it cannot be read yet)."""
    try:
        return Run(run_dir).info
    except (OSError, ValueError):  # ValueError: a half-written file, runs.DamagedRunFile
        return {}


def one_line(e: BaseException) -> str:
    """An exception as one line (its type and first line), for a state file or a table."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:500]


def last_line(text: str) -> str:
    """The last non-blank line of a process's output: usually why it failed."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
