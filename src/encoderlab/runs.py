"""The run directory: the only thing that writes one, and the only way to read one back.

runs/<name>-<timestamp>/
  run.json        name, kind, status, params, steps, best metric, timings (rewritten atomically)
  config.yaml     the fully resolved config
  env.json        package versions, git revision, device, command line
  metrics.jsonl   one JSON record per log/eval/epoch event
  tb/             TensorBoard event files
  tokenizer/      the tokenizer the run used
  checkpoints/step-00000123/  model.safetensors, optimizer.safetensors, state.json: all it
                  takes to resume (written by time, every checkpoint_every steps, at the end)
  checkpoints/best-00000120/  model.safetensors, best.json (step, metric, value): the best
                  evaluation's weights of a fine-tuning run (older runs: run.json's
                  best_checkpoint names a step-* checkpoint instead)
  run.lock        pid and host of the process writing the run (emptied when it closes the
                  run; a process that ended without closing it leaves its pid, and the lock
                  is free: the flock below is what holds it)
Checkpoints are written into a temporary folder and renamed into place, so a kill at any
moment leaves the previous checkpoint intact; nothing here ever loads a pickle. The training
loop snapshots the tensors and leaves the writing to a side thread (`save_checkpoint(...,
background=True)`, `flush`; see `encoderlab.checkpointing`).

A checkpoint whose files are cut short or whose state.json does not parse (a full disk, a
copy that stopped) is skipped: resume, export and fine-tuning take the newest one that is
intact. A run directory is written by one process at a time: the first write takes run.lock
(an flock held for as long as the process lives, so a lock left by a killed process is free
again), a second process is refused in one line, and the lock's owner removes the
`.tmp-step-*` and `.tmp-best-*` folders a killed checkpoint write left behind.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import platform
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from pydantic import BaseModel, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file

from encoderlab.checkpointing import BackgroundWriter, model_snapshot, snapshot
from encoderlab.config import Config, ModelConfig, check_plain_name, load_config, save_config
from encoderlab.errors import UserError, disk_full, disk_full_head, first_line
from encoderlab.loggers import check_installed, configured, open_loggers

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
TMP_PREFIX = ".tmp-step-"
TMP_BEST = ".tmp-best-"
BEST_PREFIX = "best-"  # checkpoints/best-<step>/: the best weights of a fine-tuning run
BEST_FILE = "best.json"


def atomic_write(path: Path, text: str, newline: str | None = None) -> None:
    """Replace `path` whole or not at all; a failed write (a full disk) leaves no temp file.
    `newline=""`: `text`'s line ends as they are (a CSV writer's \r\n on any system)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# ---------------------------------------------------------------------------------------------
# A full disk: one line, the last checkpoint kept, no half-made run directory left behind

# Run directories this process created (resolved): on a full disk, one without an intact
# checkpoint holds nothing to resume, so it is removed rather than left half made.
_CREATED: set[Path] = set()
# Run directories this process wrote to (resolved), for the message after a full disk.
_WRITTEN: dict[Path, None] = {}


def forget_written() -> None:
    """Start a new command: runs written before it are not its to tidy after a full disk."""
    _WRITTEN.clear()
    _CREATED.clear()


def live_status(info: dict[str, Any], path: Path | None = None) -> str:
    """A run's status as `runs list` and reports show it: one marked running whose process
    is gone was killed, and says whether --resume has a checkpoint to go on from."""
    status = str(info.get("status", "?"))
    if status == "finished" and info.get("outputs") == "pending" and not _writing(info, path):
        return "finished (outputs not written: --resume writes them)"  # stopped while writing
    if status != "running" or writer_alive(info, path) is not False:
        return status
    run = Run(path) if path is not None else None
    if run is not None and run.latest_checkpoint() is None:
        # a fine-tuning run's best weights still predict, evaluate and serve
        if run.best_folders():
            return "killed (best weights kept; not resumable)"
        return "killed (no checkpoint)"
    return "killed (resumable)"


def _writing(info: dict[str, Any], path: Path | None) -> bool:
    """Whether a finished fine-tuning run may still be writing its predictions: its lock is
    released when training ends, so its process (on this host) is asked as well."""
    if writer_alive(info, path) is not False:
        return True
    pid, host = info.get("pid"), info.get("host")
    return bool(pid) and host in (None, socket.gethostname()) and pid_alive(pid)


def writer_alive(info: dict[str, Any], path: Path | None = None) -> bool | None:
    """Whether the process writing a run is alive; None when this machine cannot tell.

    The run's lock is the witness: its writer holds a flock on it until it closes the run,
    and the kernel drops it when the writer dies, so a run copied from another machine (or
    left by a kill -9) reads as dead even where a local process has its old pid. Without
    flock (or the lock file, in older runs) the pid is asked, on the host that wrote it."""
    if path is not None:
        held = _lock_held(Path(path) / LOCK_FILE)
        if held is not None:
            return held
    pid = info.get("pid")
    if not pid:
        return None
    host = info.get("host")
    if host is not None and host != socket.gethostname():
        return None  # another machine's process: no pid of ours says anything about it
    return pid_alive(pid)


def _lock_held(lock: Path) -> bool | None:
    """True: some process holds `lock`'s flock; False: none does; None: cannot tell."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def recorded_start(run_dir: str | Path) -> Path | None:
    """The folder a run was started from, as env.json recorded it (it may be gone since)."""
    try:
        cwd = json.loads((Path(run_dir) / "env.json").read_text(encoding="utf-8")).get("cwd")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(cwd) if isinstance(cwd, str) and cwd else None


def last_logged_step(run_dir: Path) -> int | None:
    """The step of metrics.jsonl's last whole record, from its last 8 KB (a long run's file is
    not read whole to list it): run.json's steps are written at checkpoints only, so a run
    killed before its first one said 0 while it had logged 800."""
    f = Path(run_dir) / "metrics.jsonl"
    try:
        with open(f, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 8192))
            tail = fh.read().splitlines()
    except OSError:
        return None
    for raw in reversed(tail):
        try:
            step = json.loads(raw.decode("utf-8")).get("step")
        except (UnicodeDecodeError, ValueError, AttributeError):
            continue  # a line cut short by the kill, or the first, cut by the 8 KB window
        if isinstance(step, int) and not isinstance(step, bool):
            return step
    return None


def _number(value: Any) -> bool:
    """An int or float (NaN included: a diverged loss), not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity as None, through dicts and lists: JSON has no NaN,
    and files other tools read (eval/*.json, predictions) must parse there too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def started_in(run_dir: str | Path) -> Path | None:
    """The folder a run was started from (env.json's cwd), when it is not this one: its
    config's relative paths (corpus, task files, runs_dir) are relative to it."""
    cwd = recorded_start(run_dir)
    if cwd is None or not cwd.is_dir():
        return None
    return None if cwd.resolve() == Path.cwd().resolve() else cwd


def check_runs_dir(runs_dir: str | Path) -> None:
    """A runs folder this process cannot write (a read-only mount, another user's): one line
    before the work starts, not an OSError after the tokenizer and the data are made."""
    if not str(runs_dir).strip():
        raise UserError("runs_dir is empty: give the folder for the runs, e.g. runs_dir=runs")
    path = Path(runs_dir).absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"runs_dir {runs_dir}: a file, not a folder; give the folder for the runs")
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"runs_dir {runs_dir}: cannot write there ({existing} is read-only or not yours); "
            "set runs_dir to a folder you can write"
        )


def after_interrupt() -> str:
    """What Ctrl-C (or SIGTERM) left, in one line: the run this command wrote and how to go
    on with it, or that it had no checkpoint yet (so the command starts over)."""
    generic = "interrupted; finished work is kept (continue a run with --resume RUN)"
    written = [p for p in _WRITTEN if (p / "run.json").is_file()]
    if not written:
        return (
            generic  # nothing written here (or a study's or sweep's runs, in their own processes)
        )
    run = Run(written[-1])
    kind = str(run.info.get("kind", "pretrain")).split("/")[0]
    if kind not in ("pretrain", "finetune"):
        return generic
    if run.latest_checkpoint() is None:
        return f"interrupted before {run.path} had a checkpoint: nothing to resume there; run the command again"
    return f"interrupted; continue with `encoderlab {kind} --resume {run.path}`"


def after_disk_full(e: BaseException, rerun: str = "run the command again") -> str:
    """Tidy up after a full disk and say what happened, in one line: a run this process
    created without an intact checkpoint is removed (nothing there can be resumed); a run
    with one is kept, to be resumed once there is space."""
    head = disk_full_head(e)
    kept, removed = [], []
    for path in list(_WRITTEN):
        if path in _CREATED and Run(path).latest_checkpoint() is None:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        elif path.is_dir():
            kept.append(path)
        _WRITTEN.pop(path, None)
    _CREATED.clear()
    if kept:
        run = Run(kept[-1])
        kind = str(run.info.get("kind", "pretrain")).split("/")[0]
        last = run.latest_checkpoint()
        at = f" (last checkpoint {last.name} is intact)" if last is not None else ""
        return f"{head}; free space, then continue with `encoderlab {kind} --resume {kept[-1]}`{at}"
    gone = f"; the half-made run directory {removed[-1]} was removed" if removed else ""
    return f"{head}{gone}; free space, then {rerun}"


def git_revision() -> dict[str, Any]:
    """The revision of the encoderlab source tree (if it is a git checkout) and of the cwd."""
    out: dict[str, Any] = {}
    for label, where in (("encoderlab", Path(__file__).resolve().parent), ("cwd", Path.cwd())):
        try:
            rev = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
            )
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=where,
                capture_output=True,
                text=True,
                timeout=5,
            )
            if rev.returncode == 0:
                out[label] = {"rev": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def environment() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for pkg in ("encoderlab", "torch", "numpy", "tokenizers", "safetensors", "transformers"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    device: dict[str, Any] = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        device["cuda"] = torch.version.cuda
        device["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "argv": sys.argv,
        "cwd": os.getcwd(),  # where the config's relative paths start
        "packages": versions,
        "device": device,
        "git": git_revision(),
    }


DAMAGED_HINT = "restore it from a copy, or start a new run (reports read the run without it)"


class DamagedRunFile(UserError, ValueError):
    """run.json does not parse: one line for a command, a ValueError for readers that go on
    without it (reports, listings)."""


class Run:
    """A run directory, created once and reopened for resume, reports and listing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tb: Any = None
        self._tb_purge: int | None = None
        self._loggers: list[Any] | None = None  # the extra trackers (loggers.py), opened lazily
        self._unlock: weakref.finalize | None = None
        self.skipped: list[tuple[Path, str]] = []  # checkpoints passed over, and why
        self._writer = BackgroundWriter()  # checkpoint writes off the training thread

    def lock(self) -> None:
        """Own the run directory (see `take_lock`) until `close`, or until this object is
        gone; every write calls this first, so a refused process has written nothing."""
        if self._unlock is None or not self._unlock.alive:
            take_lock(self.path)
            self._unlock = weakref.finalize(self, release_lock, self.path)
            # not at interpreter exit: a daemon thread (a sweep trial's training, a checkpoint
            # write) may still be writing the run then; the kernel drops the flock at death
            self._unlock.atexit = False
            _WRITTEN[self.path.resolve()] = None

    def skip_notes(self) -> list[str]:
        """One warning line per checkpoint passed over as broken."""
        return [f"warning: skipping {p}: {why}" for p, why in self.skipped]

    def _skip(self, ckpt: Path, why: str) -> None:
        if (ckpt, why) not in self.skipped:
            self.skipped.append((ckpt, why))

    # -- creation and opening -----------------------------------------------------------------

    @classmethod
    def create(cls, runs_dir: str | Path, name: str, config: BaseModel, kind: str) -> Run:
        check_plain_name(name, "name")  # never a folder outside runs_dir
        check_runs_dir(runs_dir)
        check_installed(getattr(getattr(config, "train", None), "loggers", None) or [])
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(runs_dir)
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{name}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = root / f"{name}-{stamp}-{n}"
        path.mkdir()
        _CREATED.add(path.resolve())
        run = cls(path)
        try:
            save_config(config, path / "config.yaml")
            (path / "env.json").write_text(json.dumps(environment(), indent=1))
            run.update(name=name, kind=kind, status="created", created=time.time(), steps=0)
        except BaseException:  # a full disk: no half-made run directory
            run.close()
            shutil.rmtree(path, ignore_errors=True)
            _CREATED.discard(path.resolve())
            _WRITTEN.pop(path.resolve(), None)
            raise
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        p = Path(path)
        if not (p / RUN_FILE).is_file() or not (p / "config.yaml").is_file():
            if (p / "config.json").is_file():  # a transformers checkpoint (the hub's, an export)
                raise UserError(
                    f"{p}: a transformers checkpoint (config.json), not an encoderlab run "
                    f"directory; give it as hf:{p} (init: hf:{p}, embed hf:{p})"
                )
            raise UserError(
                f"{p}: not an encoderlab run directory (no {RUN_FILE} / config.yaml); "
                "pass a folder under runs/ (see `encoderlab runs list`)"
            )
        return cls(p)

    # -- run.json ----------------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        f = self.path / RUN_FILE
        if not f.is_file():
            return {}
        try:
            info = json.loads(f.read_text(encoding="utf-8"))
        except ValueError as e:  # cut short or overwritten: JSON or UTF-8 errors
            raise DamagedRunFile(f"{f}: damaged ({first_line(e)}); {DAMAGED_HINT}") from None
        if not isinstance(info, dict):
            raise DamagedRunFile(f"{f}: damaged (not a JSON object); {DAMAGED_HINT}")
        return info

    def update(self, **fields: Any) -> None:
        self.lock()
        info = self.info
        info.update(fields)
        atomic_write(self.path / RUN_FILE, json.dumps(finite(info), indent=1))

    # -- metrics -----------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl and its numbers to TensorBoard (and the other
        trackers `train.loggers` names)."""
        self.lock()
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(finite(record)) + "\n")  # a NaN (undefined ROC-AUC) is null
        if record.get("kind") == "epoch":  # the last evaluation's values again: trackers
            return  # have them at the evaluation's own step (two points each, stale ones)
        step = int(record.get("step", 0))
        tb = self.tensorboard()
        if tb is not None:
            for key, value in record.items():
                if key not in ("step", "kind", "time") and isinstance(value, (int, float)):
                    tb.add_scalar(key, value, step)
        for logger in self.loggers():
            logger.log(record, step)

    def loggers(self) -> list[Any]:
        """The trackers besides TensorBoard that config.yaml's train.loggers names, opened on
        first use with the run's config as their hyperparameters."""
        if self._loggers is None:
            self._loggers = []  # a tracker that fails to open is not retried every record
            self._loggers = open_loggers(self.path, self._remember_tracker)
        return self._loggers

    def _remember_tracker(self, tracker: str, run_id: str) -> None:
        self.update(trackers={**(self.info.get("trackers") or {}), tracker: run_id})

    def metrics(self, bad_lines: list[int] | None = None) -> list[dict[str, Any]]:
        """The records of metrics.jsonl; a line cut short by a kill, or not UTF-8 JSON, or
        without a numeric step, is skipped (its 1-based number appended to `bad_lines` when
        given); in a record kept, a field that is not a number (a null loss, an edited
        "two") is left out, as readers take every field but `kind` as one."""
        f = self.path / "metrics.jsonl"
        if not f.is_file():
            return []
        data = f.read_bytes()
        lines = data.splitlines()
        out = []
        for i, raw in enumerate(lines, 1):
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if isinstance(record, dict) and _number(record.get("step", 0)):
                out.append(
                    {
                        k: v
                        for k, v in record.items()
                        if _number(v) or (k == "kind" and isinstance(v, str))
                    }
                )
            elif raw.strip() and bad_lines is not None:
                if i < len(lines) or data.endswith(b"\n"):  # not a last line still being written
                    bad_lines.append(i)
        return out

    def truncate_metrics(self, step: int) -> None:
        """Drop records logged after `step`: a resumed run logs them again."""
        self.lock()
        kept = [r for r in self.metrics() if int(r.get("step", 0)) <= step]
        atomic_write(
            self.path / "metrics.jsonl", "".join(json.dumps(finite(r)) + "\n" for r in kept)
        )
        self._tb_purge = step + 1

    def tensorboard(self) -> Any:
        """The run's SummaryWriter, or None (tensorboard missing, or not in train.loggers)."""
        if self._tb is None:
            if "tensorboard" not in configured(self.path):
                self._tb = False
                return None
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard missing: metrics.jsonl still has everything
                self._tb = False
                return None
            fresh = not any((self.path / "tb").glob("events.out.tfevents.*"))
            self._tb = SummaryWriter(str(self.path / "tb"), purge_step=self._tb_purge)
            config = self.path / "config.yaml"
            if fresh and config.is_file():  # the run's config, once (its Text tab)
                text = config.read_text(encoding="utf-8")
                self._tb.add_text("config", "    " + text.replace("\n", "\n    "), 0)
        return self._tb or None

    def close(self) -> None:
        """Finish the checkpoint write in flight (raising its error), flush the trackers and
        give the run directory back (see `release_lock`)."""
        self.flush()
        if self._tb:
            self._tb.close()
        self._tb = None
        for logger in self._loggers or []:
            logger.close()
        self._loggers = None
        if self._unlock is not None:
            self._unlock()  # release_lock, once

    # -- checkpoints -------------------------------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary folders of a killed write are ignored)."""
        if not self.checkpoint_dir.is_dir():
            return []
        done = [
            p
            for p in self.checkpoint_dir.iterdir()
            if p.name.startswith("step-") and (p / "state.json").is_file()
        ]
        return sorted(done, key=lambda p: p.name)

    def latest_checkpoint(self) -> Path | None:
        """The newest intact checkpoint; why newer ones were skipped goes to `self.skipped`."""
        for ckpt in reversed(self.checkpoints()):
            problem = checkpoint_problem(ckpt)
            if problem is None:
                return ckpt
            self._skip(ckpt, problem)
        return None

    def resumable_checkpoint(self) -> Path:
        """`latest_checkpoint` for --resume, or the one line that says why there is none:
        nothing written yet, or every checkpoint damaged (which is not a reason to start over
        when weights are intact, so it says what is wrong instead)."""
        ckpt = self.latest_checkpoint()
        if ckpt is not None:
            return ckpt
        if not self.skipped:
            raise UserError(f"{self.path}: has no complete checkpoint yet; start a new run instead")
        where, why = self.skipped[-1]
        raise UserError(
            f"{self.path}: every checkpoint is damaged (the oldest, {where.name}: {why}); "
            "restore a checkpoint folder from a copy to resume, or start a new run"
        )

    def save_checkpoint(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        state: dict[str, Any],
        tensors: dict[str, torch.Tensor] | None = None,
        keep: int = 2,
        background: bool = False,
    ) -> Path:
        """Snapshot model, optimizer, extra tensors (RNG states) and JSON state now; write them
        into a temporary folder, then rename it into place and drop all but the `keep` newest.
        `background`: the writing happens in the run's writer thread (see `flush`)."""
        self.lock()
        step = int(state["step"])
        self._writer.wait()  # one write in flight; a failed one raises here
        weights, metadata = model_snapshot(model)
        opt_tensors, opt_meta = ({}, None)
        if optimizer is not None:
            opt_tensors, opt_meta = optimizer_to_flat(optimizer, to_cpu=False)
        extra = snapshot({**opt_tensors, **(tensors or {})})
        text = json.dumps({**state, "optimizer": opt_meta}, indent=1)
        spare = self.info.get("best_checkpoint")  # a run from before best weights were kept apart

        def write(tmp: Path) -> None:
            _save_weights(weights, metadata, tmp / "model.safetensors")
            save_file(extra, str(tmp / "optimizer.safetensors"))
            readable_as_umask(tmp / "optimizer.safetensors")
            atomic_write(tmp / "state.json", text)

        def write_and_prune() -> None:
            self._write_folder(f"step-{step:08d}", write)
            for old in self.checkpoints()[:-keep] if keep > 0 else []:
                if old.name != spare:
                    shutil.rmtree(old, ignore_errors=True)

        self._write(write_and_prune, background)
        return self.checkpoint_dir / f"step-{step:08d}"

    def save_best(
        self, model: torch.nn.Module, best: dict[str, Any], background: bool = False
    ) -> str:
        """Keep the model's weights (only) as the run's best: `checkpoints/best-<step>/` with
        model.safetensors and best.json (step, metric, value), renamed into place, then the
        older best folders removed. Returns the folder's name (run.json's best_checkpoint)."""
        self.lock()
        self._writer.wait()
        name = f"{BEST_PREFIX}{int(best['step']):08d}"
        weights, metadata = model_snapshot(model)
        text = json.dumps(best, indent=1)

        def write(tmp: Path) -> None:
            _save_weights(weights, metadata, tmp / "model.safetensors")
            atomic_write(tmp / BEST_FILE, text)

        def write_and_prune() -> None:
            self._write_folder(name, write)
            for old in self.best_folders():
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)

        self._write(write_and_prune, background)
        return name

    def _write(self, write: Callable[[], None], background: bool) -> None:
        if background:
            self._writer.submit(write)
        else:
            write()

    def flush(self) -> None:
        """Wait for the checkpoint being written in the background; raise its error, if any
        (a full disk), here on the caller's thread."""
        self._writer.wait()

    def _write_folder(self, name: str, write: Callable[[Path], None]) -> Path:
        """`write(tmp)` fills a temporary folder, which is then renamed to checkpoints/`name`:
        a kill at any moment leaves either the old folder or the new one, whole."""
        self.checkpoint_dir.mkdir(exist_ok=True)
        final = self.checkpoint_dir / name
        tmp = self.checkpoint_dir / f".tmp-{name}-{os.getpid()}"  # TMP_PREFIX, TMP_BEST
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            write(tmp)
            _fsync_dir(tmp)
        except BaseException as e:  # a full disk: free what the write took, keep the last one
            shutil.rmtree(tmp, ignore_errors=True)
            if disk_full(e) and not isinstance(e, OSError):  # safetensors' own error type
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp)) from e
            raise
        if final.exists():  # same step saved twice (e.g. by time, then at the end of the run)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.checkpoint_dir)
        return final

    # -- best weights ------------------------------------------------------------------------

    def best_folders(self) -> list[Path]:
        """The complete best-weights folders, newest first (normally one: a kill between the
        rename of a new one and the removal of the old can leave two)."""
        if not self.checkpoint_dir.is_dir():
            return []
        done = [
            p
            for p in self.checkpoint_dir.iterdir()
            if p.name.startswith(BEST_PREFIX) and (p / BEST_FILE).is_file()
        ]
        return sorted(done, key=lambda p: p.name, reverse=True)

    def load_checkpoint(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        path: Path | None = None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Restore model (and optimizer) in place from `path`, else from the newest checkpoint
        that reads back whole; return (state, extra tensors). Every file is read before
        anything is restored, so a broken checkpoint leaves model and optimizer as they were."""
        candidates = [path] if path is not None else list(reversed(self.checkpoints()))
        for ckpt in candidates:
            problem = checkpoint_problem(ckpt)
            if problem is None:
                try:
                    state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
                    tensors = load_file(str(ckpt / "optimizer.safetensors"))
                    load_model(model, str(ckpt / "model.safetensors"))
                    break
                except (OSError, ValueError, SafetensorError) as e:
                    problem = first_line(e)
            self._skip(ckpt, problem)
        else:
            why = f" ({ckpt.name}: {problem})" if candidates else ""
            raise UserError(
                f"{self.path}: has no intact checkpoint to resume from{why}; start a new run"
            )
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer_from_flat(optimizer, tensors, state["optimizer"])
        extra = {k: v for k, v in tensors.items() if not k.startswith("opt.")}
        return state, extra


def _save_weights(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None, path: Path
) -> None:
    """model.safetensors as safetensors' save_model writes it (see `model_snapshot`)."""
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    readable_as_umask(path)


@functools.cache
def _umask() -> int:
    """This process's umask, read without changing it (os.umask sets it, for every thread);
    read once, not at every checkpoint's two files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def readable_as_umask(path: Path) -> None:
    """Give a file safetensors wrote the mode every other file of the run has (0644 under the
    usual umask 022): safetensors 0.8 creates its files 0600, so a run directory shared with a
    group, copied to a shared folder or served by another account had readable configs and
    tokenizer but weights only their writer could read."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o666 & ~_umask())


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be whole (missing, cut short, a header that does not
    parse), or None. Reads the header only: cheap enough to ask of every checkpoint."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name} is cut short ({size} bytes)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"{path.name} is cut short (header of {n:,} bytes, file of {size:,})"
            header = json.loads(f.read(n).decode("utf-8"))
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, ValueError) as e:
        return f"{path.name} cannot be read ({first_line(e)})"
    if not isinstance(header, dict):
        return f"{path.name} has a malformed header"
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        offsets = meta.get("data_offsets") if isinstance(meta, dict) else None
        if not isinstance(offsets, list) or len(offsets) != 2:
            return f"{path.name} has a malformed header (tensor {name})"
        end = max(end, int(offsets[1]))
    if size < 8 + n + end:
        return f"{path.name} is cut short ({size:,} of {8 + n + end:,} bytes)"
    return None


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why a checkpoint folder cannot be loaded, or None when it is intact."""
    try:
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"state.json does not parse ({first_line(e)})"
    if not isinstance(state, dict) or "step" not in state:
        return "state.json has no step"
    for key in ("step", "epoch"):
        if key in state and (not isinstance(state[key], int) or isinstance(state[key], bool)):
            return f"state.json's {key} is {state[key]!r}, not a whole number"
    for name in ("model.safetensors", "optimizer.safetensors"):
        problem = safetensors_problem(ckpt / name)
        if problem is not None:
            return problem
    return None


# ---------------------------------------------------------------------------------------------
# The run lock: one writing process per run directory

# run directory (resolved) -> [the open lock file, how many Run objects in this process use it]
_HELD: dict[Path, list[int]] = {}


def pid_alive(pid: Any) -> bool:
    """Whether process `pid` runs on this host (a run.json's or a lock's pid). A zombie does
    not: a process killed with its parent (kill -9) waits, dead, for init to reap it, which a
    container's init may never do, and whoever looks must take over rather than wait."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    try:  # Linux: the state letter follows the parenthesised command name
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except FileNotFoundError:  # gone since (Linux), or a system without /proc
        return not Path("/proc/self/stat").exists()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X")


class RunNotWritable(UserError):
    """A run directory this process cannot write (a read-only copy, another user's)."""


def _read_owner(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        owner = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _refuse(run_dir: Path, owner: dict[str, Any]) -> UserError:
    who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
    hint = (
        "wait for it to finish or stop it"
        if owner.get("host") in (None, socket.gethostname())
        else f"if no process there uses it any more, delete {run_dir / LOCK_FILE}"
    )
    return UserError(f"{run_dir}: in use by another encoderlab process ({who}); {hint}")


def _flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: no flock on this system."""
    try:
        import fcntl
    except ImportError:
        return None
    # a status probe (`_lock_held`: runs list, reports) holds it shared for an instant: a
    # lock still held after a few tries is another writer's
    for _ in range(LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            time.sleep(0.005)
            continue
        return True
    return False


LOCK_TRIES = 40  # _flock's tries, 5 ms apart


def take_lock(run_dir: Path) -> None:
    """Make this process the one writer of `run_dir` (once more, if it already is), or raise
    a one-line UserError naming the owner.

    The lock file names the owner (pid, host). Where flock exists it is held on that file for
    as long as the owner has the run open, and the kernel drops it when the owner dies: a
    lock file nobody holds is stale and taken over. Without flock, a lock naming a pid no
    longer alive on this host is stale. The new owner removes `.tmp-*` folders."""
    key = Path(run_dir).resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        return
    try:
        fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if not isinstance(e, PermissionError) and e.errno != errno.EROFS:
            raise
        raise RunNotWritable(  # before a write: predict, serve, export and report only read
            f"{run_dir}: read-only here (cannot write {LOCK_FILE}); copy the run to a folder "
            "you can write to continue or change it (predict, serve, export and report read "
            "it as it is)"
        ) from None
    try:
        locked = _flock(fd)
        owner = _read_owner(fd)
        if locked is False:
            raise _refuse(key, owner)
        pid, host = owner.get("pid"), owner.get("host")
        if locked is None and isinstance(pid, int) and pid != os.getpid():
            if host not in (None, socket.gethostname()) or pid_alive(pid):
                raise _refuse(key, owner)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1]
    _clean_tmp(key / "checkpoints")


def release_lock(run_dir: Path) -> None:
    """One user of the lock is done; the last one empties the file and drops the flock."""
    key = Path(run_dir).resolve()
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    with contextlib.suppress(OSError):
        os.ftruncate(held[0], 0)
    os.close(held[0])  # closing drops the flock


def wait_for_writer(run_dir: Path, deadline: float) -> bool:
    """Wait (until `deadline`, a `time.monotonic()` value) for another process that holds
    `run_dir` to give it back, e.g. a sweep's trial worker still ending its run. True when
    the run directory was held and is free now: what the writer left is its last word."""
    key = Path(run_dir).resolve()
    if key in _HELD or not (key / LOCK_FILE).is_file():
        return False
    waited = False
    while True:
        try:
            take_lock(key)
        except RunNotWritable:  # nobody can hold it for writing here: nothing to wait for
            return False
        except UserError:
            if time.monotonic() >= deadline:
                return False
            waited = True
            time.sleep(0.1)
            continue
        release_lock(key)
        return waited


def drop_lock(run_dir: Path) -> None:
    """Give the run directory back whoever in this process still holds it: for a process that
    lives on after a run ended (a Ray worker), where a failed run's objects may linger."""
    held = _HELD.get(Path(run_dir).resolve())
    if held is not None:
        held[1] = 1
        release_lock(run_dir)


def _clean_tmp(checkpoint_dir: Path) -> None:
    """Folders of checkpoint writes a kill interrupted: only the lock's owner writes here."""
    if not checkpoint_dir.is_dir():
        return
    for p in checkpoint_dir.iterdir():
        if p.name.startswith((TMP_PREFIX, TMP_BEST)) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def optimizer_to_flat(
    opt: torch.optim.Optimizer, to_cpu: bool = True
) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON metadata.
    `to_cpu=False`: the tensors as they are (the optimizer's own), for a `snapshot`."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{pid}.{key}"] = value.detach().contiguous().cpu() if to_cpu else value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("opt."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, scalars in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(scalars)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every run under runs_dir (recursively one level of study folders), newest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    found = []
    for f in sorted(root.glob("*/" + RUN_FILE)) + sorted(root.glob("*/*/" + RUN_FILE)):
        try:
            info = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict):  # listed, so that it is not silently missing
            found.append({"path": str(f.parent), "status": "damaged run.json"})
            continue
        found.append({**_listable(info), "path": str(f.parent)})
    found.sort(key=lambda r: r.get("created", 0), reverse=True)
    return found


def _listable(info: dict[str, Any]) -> dict[str, Any]:
    """run.json's fields a listing shows, each of the type it shows (a hand-edited or damaged
    record keeps what is sound and drops the rest)."""

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    out = dict(info)
    for key in ("params", "steps", "created"):
        if not number(out.get(key)):
            out.pop(key, None)
    for key in ("kind", "status", "name"):
        if not isinstance(out.get(key), str):
            out.pop(key, None)
    best = out.get("best")
    if not (
        isinstance(best, dict) and isinstance(best.get("metric"), str) and number(best.get("value"))
    ):
        out.pop("best", None)
    return out


class ReadOnlyRun(Run):
    """A run as data-parallel ranks other than 0 see it: it reads like a Run (checkpoints to
    resume from, run.json), and every write is left to rank 0."""

    def lock(self) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass

    def log(self, record: dict[str, Any]) -> None:
        pass

    def truncate_metrics(self, step: int) -> None:
        pass

    def save_checkpoint(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        state: dict[str, Any],
        tensors: dict[str, torch.Tensor] | None = None,
        keep: int = 2,
        background: bool = False,
    ) -> Path:
        return self.checkpoint_dir / f"step-{int(state['step']):08d}"

    def save_best(
        self, model: torch.nn.Module, best: dict[str, Any], background: bool = False
    ) -> str:
        return f"{BEST_PREFIX}{int(best['step']):08d}"


# ---------------------------------------------------------------------------------------------
# Reading a finished run back: every module that needs a run's weights or shape asks here.


def is_run_dir(path: Path) -> bool:
    return (path / RUN_FILE).is_file() and (path / "config.yaml").is_file()


def has_checkpoint(run_dir: str | Path, min_step: int = 0) -> bool:
    """Whether the run holds a complete checkpoint (at `min_step` or later)."""
    for p in Run(Path(run_dir)).checkpoints():
        try:
            if int(p.name[5:]) >= min_step:
                return True
        except ValueError:
            continue
    return False


def find_run(runs_dir: str | Path, name: str, exclude: Iterable[str] = ()) -> Path | None:
    """The newest run directory under `runs_dir` of a run named `name` (its run.json says so),
    leaving out the directory names in `exclude` (runs that were there before)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    skip = set(exclude)
    found = []
    for p in runs_dir.iterdir():
        if p.is_dir() and p.name not in skip and (p / RUN_FILE).is_file():
            try:
                if Run(p).info.get("name") == name:
                    found.append(p)
            except (OSError, ValueError):
                continue
    return max(found, key=lambda p: (p.stat().st_mtime, p.name)) if found else None


def _created(path: Path) -> float:
    try:
        return float(json.loads((path / RUN_FILE).read_text()).get("created", 0.0))
    except (OSError, ValueError, TypeError, AttributeError):  # AttributeError: not a mapping
        return 0.0


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Each path is a run directory, or a folder holding run directories (one or two levels
    down, as `encoderlab runs list` reads them). Order: as given; runs inside a folder by
    creation time. A path that is neither is a UserError."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise UserError(f"{p}: no such directory; pass run directories or a folder of runs")
        if is_run_dir(p):
            found.append(p)
            continue
        if p.is_dir():
            inner = [d for d in sorted(p.glob("*/")) if is_run_dir(d)]
            inner += [d for d in sorted(p.glob("*/*/")) if is_run_dir(d)]
            for d in sorted(p.glob("*/")):  # a run's folder missing half of what makes one
                if not is_run_dir(d) and ((d / RUN_FILE).exists() or (d / "config.yaml").exists()):
                    missing = "config.yaml" if (d / RUN_FILE).exists() else RUN_FILE
                    print(f"warning: {d}: no {missing}; left out", file=sys.stderr)
            if inner:
                found += sorted(inner, key=lambda d: (_created(d), d.name))
                continue
        Run.open(p)  # raises the one-line "not an encoderlab run directory" UserError
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def run_checkpoint(run: Run) -> Path:
    """The folder of a run's weights (its model.safetensors): a fine-tuning run's best (on its
    validation metric: checkpoints/best-<step>/, or in runs written before best weights were
    kept apart the full checkpoint run.json's best_checkpoint names); a pretraining run's
    latest checkpoint, since its final weights are what "the pretrained encoder" means. A
    broken one is passed over for the next (the reason is kept in `run.skipped`), down to the
    newest intact checkpoint."""
    if str(run.info.get("kind", "")).startswith("finetune"):
        for best in run.best_folders():
            problem = weights_problem(best)
            if problem is None:
                return best
            run._skip(best, problem)
        old = run.info.get("best_checkpoint")
        gone = run.checkpoint_dir / str(old)
        if str(old).startswith("best-") and not gone.exists():  # deleted or moved by hand
            run._skip(gone, "missing, though run.json names it the best weights; the newest "
                      "checkpoint answers instead (restore the folder to use the best)")  # fmt: skip
        if str(old).startswith("step-") and (run.checkpoint_dir / old / "state.json").is_file():
            problem = checkpoint_problem(run.checkpoint_dir / old)
            if problem is None:
                return run.checkpoint_dir / old
            run._skip(run.checkpoint_dir / old, problem)
    latest = run.latest_checkpoint()
    if latest is None:
        why = ""
        if run.skipped:  # the reason, without "the newest checkpoint answers instead"
            why = f" ({run.skipped[-1][0].name}: {run.skipped[-1][1].split(';')[0]})"
        raise UserError(f"{run.path}: has no intact checkpoint to take weights from{why}")
    return latest


def weights_problem(folder: Path) -> str | None:
    """Why a best-weights folder cannot be loaded, or None when it is intact."""
    try:
        best = json.loads((folder / BEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"{BEST_FILE} does not parse ({first_line(e)})"
    if not isinstance(best, dict) or "step" not in best:
        return f"{BEST_FILE} has no step"
    return safetensors_problem(folder / "model.safetensors")


_CHANGED = "the run directory was changed after training: restore it, or fine-tune again"


def run_model_config(run: Run) -> ModelConfig:
    """The encoder architecture a run trained (after any drop_last)."""
    saved = run.path / "model_config.json"
    if saved.is_file():
        try:
            return ModelConfig.model_validate(json.loads(saved.read_text(encoding="utf-8")))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UserError(f"{saved}: {where}: {err['msg']}; {_CHANGED}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f"{saved}: not valid JSON ({first_line(e)}); {_CHANGED}") from None
    if str(run.info.get("kind", "")).startswith("finetune"):  # fine-tuning always writes it
        raise UserError(f"{saved}: missing; {_CHANGED}")
    cfg = load_config(run.path / "config.yaml", schema=Config)
    return cfg.model


def run_labels(run: Run) -> list:
    """The labels a fine-tuning run trained on (labels.json), in the head's output order."""
    path = run.path / "labels.json"
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; {_CHANGED}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({first_line(e)}); {_CHANGED}") from None
    if not isinstance(labels, list):
        raise UserError(f"{path}: not a JSON list of labels; {_CHANGED}")
    return labels


def load_run_weights(model: torch.nn.Module, weights: Path) -> None:
    """A checkpoint's weights into the model its run describes; a shape that does not match
    (labels.json, model_config.json or the tokenizer edited since) is the user's one line."""
    try:
        load_model(model, str(weights))
    except RuntimeError as e:
        shapes = re.search(
            r"size mismatch for (\S+): .*?torch\.Size\((\[.*?\])\).*?torch\.Size\((\[.*?\])\)",
            str(e),
        )
        detail = f"{shapes[1]} is {shapes[2]} there, {shapes[3]} here" if shapes else first_line(e)
        raise UserError(
            f"{weights}: does not fit the model its run describes ({detail}); {_CHANGED}"
        ) from None


def check_tokenizer_fits(run: Run, vocab_size: int, model_cfg: ModelConfig) -> None:
    """A run's tokenizer with more tokens than its model has embeddings (replaced after the
    run trained) would index past the embedding table at the first rare word."""
    if model_cfg.vocab_size is not None and vocab_size > model_cfg.vocab_size:
        raise UserError(
            f"{run.path / 'tokenizer'}: {vocab_size:,} tokens, but the model has "
            f"{model_cfg.vocab_size:,} embeddings; the run's tokenizer was replaced after "
            "training: restore it, or train the run again"
        )


def load_encoder_weights(encoder: torch.nn.Module, ckpt: Path) -> None:
    """The backbone's weights of a run's checkpoint into `encoder` (built from the run's
    model_config.json); a checkpoint that does not fit it is a one-line error."""
    try:
        missing, _ = encoder.load_state_dict(encoder_weights(ckpt), strict=False)
    except RuntimeError as e:  # a tensor of another shape: model_config.json was edited
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), "")
        raise UserError(
            f"{ckpt}: its weights do not fit the run's model_config.json ({first or 'shapes'}); "
            f"{_CHANGED}"
        ) from None
    if missing:
        raise UserError(
            f"{ckpt}: checkpoint lacks {len(missing)} encoder tensors (e.g. {missing[0]}); "
            "is it an encoderlab run of the same architecture?"
        )


def encoder_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The backbone's tensors from a pretraining (encoder.*) or fine-tuning (backbone.*) run."""
    tensors = load_file(str(ckpt / "model.safetensors"))
    prefix = "backbone." if any(k.startswith("backbone.") for k in tensors) else "encoder."
    out = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if "embeddings.tok.weight" not in out and "mlm_head.decoder.weight" in tensors:
        out["embeddings.tok.weight"] = tensors["mlm_head.decoder.weight"]  # tied, saved once
    return out
