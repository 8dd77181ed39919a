"""The run directory: the only thing that writes one, and the only way to read one back.

runs/<name>-<timestamp>/
  run.json        name, kind, status, params, steps, best metric, timings (rewritten atomically)
  config.yaml     the fully resolved config
  env.json        package versions, git revision, device, command line
  metrics.jsonl   one JSON record per log/eval/epoch event
  tb/             TensorBoard event files
  tokenizer/      the tokenizer the run used
  checkpoints/step-00000123/  model.safetensors, optimizer.safetensors, state.json
Checkpoints are written into a temporary folder and renamed into place, so a kill at any
moment leaves the previous checkpoint intact; nothing here ever loads a pickle.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from safetensors.torch import load_file, load_model, save_file, save_model

from encoderlab.config import Config, ModelConfig, check_plain_name, load_config, save_config
from encoderlab.errors import UserError

RUN_FILE = "run.json"


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
        "packages": versions,
        "device": device,
        "git": git_revision(),
    }


class Run:
    """A run directory, created once and reopened for resume, reports and listing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tb: Any = None
        self._tb_purge: int | None = None

    # -- creation and opening -----------------------------------------------------------------

    @classmethod
    def create(cls, runs_dir: str | Path, name: str, config: BaseModel, kind: str) -> Run:
        check_plain_name(name, "name")  # never a folder outside runs_dir
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(runs_dir)
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"{name}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = root / f"{name}-{stamp}-{n}"
        path.mkdir()
        run = cls(path)
        save_config(config, path / "config.yaml")
        (path / "env.json").write_text(json.dumps(environment(), indent=1))
        run.update(name=name, kind=kind, status="created", created=time.time(), steps=0)
        return run

    @classmethod
    def open(cls, path: str | Path) -> Run:
        p = Path(path)
        if not (p / RUN_FILE).is_file() or not (p / "config.yaml").is_file():
            raise UserError(
                f"{p}: not an encoderlab run directory (no {RUN_FILE} / config.yaml); "
                "pass a folder under runs/ (see `encoderlab runs list`)"
            )
        return cls(p)

    # -- run.json ----------------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        f = self.path / RUN_FILE
        return json.loads(f.read_text()) if f.is_file() else {}

    def update(self, **fields: Any) -> None:
        info = self.info
        info.update(fields)
        atomic_write(self.path / RUN_FILE, json.dumps(info, indent=1))

    # -- metrics -----------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl and its numbers to TensorBoard."""
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        step = int(record.get("step", 0))
        tb = self.tensorboard()
        if tb is not None:
            for key, value in record.items():
                if key not in ("step", "kind", "time") and isinstance(value, (int, float)):
                    tb.add_scalar(key, value, step)

    def metrics(self) -> list[dict[str, Any]]:
        f = self.path / "metrics.jsonl"
        if not f.is_file():
            return []
        out = []
        for line in f.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
        return out

    def truncate_metrics(self, step: int) -> None:
        """Drop records logged after `step`: a resumed run logs them again."""
        kept = [r for r in self.metrics() if int(r.get("step", 0)) <= step]
        atomic_write(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))
        self._tb_purge = step + 1

    def tensorboard(self) -> Any:
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard missing: metrics.jsonl still has everything
                self._tb = False
                return None
            self._tb = SummaryWriter(str(self.path / "tb"), purge_step=self._tb_purge)
        return self._tb or None

    def close(self) -> None:
        if self._tb:
            self._tb.close()
        self._tb = None

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
        found = self.checkpoints()
        return found[-1] if found else None

    def save_checkpoint(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        state: dict[str, Any],
        tensors: dict[str, torch.Tensor] | None = None,
        keep: int = 2,
    ) -> Path:
        """Write model, optimizer, extra tensors (RNG states) and JSON state; then rename."""
        step = int(state["step"])
        self.checkpoint_dir.mkdir(exist_ok=True)
        final = self.checkpoint_dir / f"step-{step:08d}"
        tmp = self.checkpoint_dir / f".tmp-step-{step:08d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_model(model, str(tmp / "model.safetensors"))
        opt_tensors, opt_meta = ({}, None)
        if optimizer is not None:
            opt_tensors, opt_meta = optimizer_to_flat(optimizer)
        save_file({**opt_tensors, **(tensors or {})}, str(tmp / "optimizer.safetensors"))
        state = {**state, "optimizer": opt_meta}
        atomic_write(tmp / "state.json", json.dumps(state, indent=1))
        _fsync_dir(tmp)
        if final.exists():  # same step saved twice (e.g. eval then end of run)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(self.checkpoint_dir)
        for old in self.checkpoints()[:-keep] if keep > 0 else []:
            if old.name != self.info.get("best_checkpoint"):
                shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        path: Path | None = None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Restore model (and optimizer) in place; return (state, extra tensors)."""
        ckpt = path or self.latest_checkpoint()
        if ckpt is None:
            raise UserError(f"{self.path}: has no complete checkpoint to resume from")
        load_model(model, str(ckpt / "model.safetensors"))
        state = json.loads((ckpt / "state.json").read_text())
        tensors = load_file(str(ckpt / "optimizer.safetensors"))
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer_from_flat(optimizer, tensors, state["optimizer"])
        extra = {k: v for k, v in tensors.items() if not k.startswith("opt.")}
        return state, extra


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


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON metadata."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in sd["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"opt.{pid}.{key}"] = value.detach().contiguous().cpu()
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
            info = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        info["path"] = str(f.parent)
        found.append(info)
    found.sort(key=lambda r: r.get("created", 0), reverse=True)
    return found


class ReadOnlyRun(Run):
    """A run as data-parallel ranks other than 0 see it: it reads like a Run (checkpoints to
    resume from, run.json), and every write is left to rank 0."""

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
    ) -> Path:
        return self.checkpoint_dir / f"step-{int(state['step']):08d}"


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
    except (OSError, ValueError, TypeError):
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
    """A fine-tuning run's best checkpoint (on its validation metric); a pretraining run's
    latest, since its final weights are what "the pretrained encoder" means."""
    best = run.info.get("best_checkpoint")
    finetuned = str(run.info.get("kind", "")).startswith("finetune")
    if finetuned and best and (run.checkpoint_dir / best / "state.json").is_file():
        return run.checkpoint_dir / best
    latest = run.latest_checkpoint()
    if latest is None:
        raise UserError(f"{run.path}: has no complete checkpoint to take weights from")
    return latest


def run_model_config(run: Run) -> ModelConfig:
    """The encoder architecture a run trained (after any drop_last)."""
    saved = run.path / "model_config.json"
    if saved.is_file():
        return ModelConfig.model_validate(json.loads(saved.read_text()))
    cfg = load_config(run.path / "config.yaml", schema=Config)
    return cfg.model


def encoder_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    """The backbone's tensors from a pretraining (encoder.*) or fine-tuning (backbone.*) run."""
    tensors = load_file(str(ckpt / "model.safetensors"))
    prefix = "backbone." if any(k.startswith("backbone.") for k in tensors) else "encoder."
    out = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if "embeddings.tok.weight" not in out and "mlm_head.decoder.weight" in tensors:
        out["embeddings.tok.weight"] = tensors["mlm_head.decoder.weight"]  # tied, saved once
    return out
