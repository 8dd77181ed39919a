"""The sweep's folder (`out:`): a marker written first, so a sweep writes only where a sweep
wrote before (never over the user's own files); the sweep file and base config as the sweep
started, which --resume compares with the current ones; and starting over a sweep that left
no result.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from encoderlab.errors import UserError
from encoderlab.runs import release_lock, take_lock
from encoderlab.sweep.spec import Sweep

MARKER = ".encoderlab-sweep"  # written first in every folder a sweep makes
BASE_COPY = "base-config.yaml"  # the base config's text when the sweep started
# everything a sweep writes besides the marker, sweep.yaml and BASE_COPY
OUTPUTS = ("tune", "trials", "runs", "plots", "report", "trials.csv", "trials.md")
OUTPUTS += ("summary.json", "best.yaml")
# where the sweep is, and which file (its text is compared); not `name`: the trials' runs are
# named after it, so a renamed sweep's resumed trials would find none and start over
IGNORED = ("out", "base")


def hold(sweep: Sweep) -> None:
    """One process runs the sweep in a folder a sweep made (its run.lock): a second one there
    took the running sweep for one that left no result, deleted its trials and ran the grid
    again beside it. A second one is refused in one line."""
    if not sweep.held and (sweep.out / MARKER).is_file():
        take_lock(sweep.out)
        sweep.held = True


def let_go(sweep: Sweep) -> None:
    if sweep.held:
        release_lock(sweep.out)
        sweep.held = False


def check_fresh(sweep: Sweep) -> bool:
    """A new sweep writes into a new or empty folder, or one a sweep made (its marker): `out: .`
    beside the user's sweep.yaml overwrote it. True when an earlier sweep there left no result
    (every trial failed, or none ran): that one is cleared and the sweep starts over."""
    out = sweep.out
    if out.exists() and not out.is_dir():
        raise UserError(f"{sweep.path}: out: {out} is a file; set `out:` to a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    earlier = any((out / name).exists() for name in ("tune", "trials", "runs"))
    if earlier and _has_result(out):
        raise UserError(
            f"{sweep.out}: a sweep already ran there; use --resume to continue it, or set "
            "`out:` / `name:` in the sweep file for a new one"
        )
    if not (out / MARKER).is_file():
        raise UserError(
            f"{sweep.path}: out: {out} holds files no sweep wrote; set `out:` to a new or "
            "empty folder"
        )
    return earlier


def _has_result(out: Path) -> bool:
    """Whether a trial of the sweep in `out` got anywhere (not failed: --resume goes on)."""
    for f in (out / "trials").glob("*.json"):
        try:
            status = json.loads(f.read_text(encoding="utf-8")).get("status")
        except (OSError, ValueError):
            return True  # unreadable: keep it
        if status != "failed":
            return True
    return False


def check_resume(sweep: Sweep) -> bool:
    """--resume continues the sweep as it started: a sweep file or base config edited since
    would mix trials of two configurations in one ranking. False (nothing to start over)."""
    from ray import tune

    out = sweep.out
    if not tune.Tuner.can_restore(str(out / "tune")):
        raise UserError(f"{out}: no sweep to resume there; run without --resume first")
    changed: list[str] = []
    saved = out / "sweep.yaml"
    if saved.is_file():
        before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        now = sweep.spec.model_dump(mode="json")
        changed = [k for k in _changed(before, now) if k.split(".")[0] not in IGNORED]
    copy = out / BASE_COPY
    if copy.is_file() and copy.read_text(encoding="utf-8") != sweep.base.read_text(
        encoding="utf-8"
    ):
        changed.append(f"the base config {sweep.base}")
    marker = out / MARKER  # its first line names the sweep: also a name from the file's name
    first = marker.read_text(encoding="utf-8").splitlines()[:1] if marker.is_file() else []
    started_as = first[0].removeprefix("encoderlab sweep ").strip() if first else sweep.name
    if started_as != sweep.name and "name" not in changed:
        changed.append("name")
    if changed == ["name"]:
        raise UserError(
            f"{sweep.path}: name changed since the sweep in {out} started; its trials' runs are "
            "named after it, so --resume would start them over: undo the change, or give the "
            "renamed sweep a new `out:`"
        )
    if changed:
        again = "; or run it without --resume to start over" if not _has_result(out) else ""
        raise UserError(
            f"{sweep.path}: {', '.join(changed)} changed since the sweep in {out} started; "
            "--resume continues it as it started: undo the change, or give the changed sweep "
            f"a new `out:` (or a new `name:` where out: is not set){again}"
        )
    return False


def restore_cwd(sweep: Sweep, say: Callable[[str], None]) -> None:
    """A resumed sweep's trials run where the sweep started, as its first trials did: from
    another folder, the paths relative to the start (data files, init=) named other files."""
    try:
        lines = (sweep.out / MARKER).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return
    started = next((Path(x[len("cwd: ") :]) for x in lines if x.startswith("cwd: ")), None)
    if started is None or started == sweep.cwd:
        return  # a sweep from before the marker named it: the trials run here
    if not started.is_dir():
        raise UserError(
            f"{sweep.out}: the sweep started in {started}, which no longer exists, and its "
            "trials' relative paths start there; restore that folder, or start the sweep "
            "again without --resume"
        )
    sweep.cwd = started
    say(f"the trials run in {started}, where the sweep started")


def _changed(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The keys whose values differ, one level into sections (`space.train.lr`)."""
    keys = [*now, *(k for k in before if k not in now)]
    out = []
    for key in keys:
        a, b = before.get(key), now.get(key)
        if a == b:
            continue
        if not prefix and isinstance(a, dict) and isinstance(b, dict):
            out += _changed(a, b, f"{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def claim(sweep: Sweep, start_over: bool, say: Callable[[str], None]) -> None:
    """Make the sweep's folder, its marker first, and keep the sweep file and base config as
    the sweep starts; an earlier sweep there that left no result is cleared first."""
    out = sweep.out
    hold(sweep)  # before anything is cleared: the sweep that made the folder may still run
    if start_over and (out / MARKER).is_file():  # only ever in a folder a sweep made
        for name in OUTPUTS:
            p = out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        say(
            f"the earlier sweep in {out} left no result (every trial failed, or none ran): "
            "starting it over"
        )
    out.mkdir(parents=True, exist_ok=True)
    # the folder the sweep started in: its trials run there, and so do a --resume's
    (out / MARKER).write_text(
        f"encoderlab sweep {sweep.name}\ncwd: {sweep.cwd}\n", encoding="utf-8"
    )
    hold(sweep)  # a new folder: one that started beside this one stops here
    (out / "sweep.yaml").write_text(
        yaml.safe_dump(sweep.spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    (out / BASE_COPY).write_text(sweep.base.read_text(encoding="utf-8"), encoding="utf-8")
