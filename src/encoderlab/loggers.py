"""Experiment trackers besides TensorBoard: `train.loggers: [tensorboard, mlflow, wandb]`.

Each run's records (metrics.jsonl) fan out to the trackers its config names: the run's
config as hyperparameters once, then every numeric field of every record at its step, so
validation metrics (and loss) sit next to the training curves. TensorBoard is written by
`Run` itself (runs.py); this module opens the others.

  mlflow   a local file store, ./mlruns (or $MLFLOW_TRACKING_URI); experiment = run name,
           MLflow run name = run directory name. pip install 'encoderlab[track]'
  wandb    offline mode (nothing leaves the machine; `wandb sync RUN/wandb/offline-run-*`
           uploads later), files under the run directory. pip install 'encoderlab[track]'

Both are imported only when a config names them; a missing package is a one-line error
before any run directory is created. A resumed run continues the same MLflow / W&B run
(its id is kept in run.json under `trackers`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import yaml

from encoderlab.errors import UserError

KNOWN = ("tensorboard", "mlflow", "wandb")
DEFAULT = ["tensorboard"]
_SKIP = ("step", "kind", "time")  # record fields that are not metrics


class Logger(Protocol):
    """What a run hands its records to."""

    def log(self, record: dict[str, Any], step: int) -> None: ...

    def close(self) -> None: ...


def check_installed(names: Iterable[str]) -> None:
    """Refuse, in one line, a tracker whose package is missing (before anything is written)."""
    for name in names:
        if name in ("mlflow", "wandb") and importlib.util.find_spec(name) is None:
            raise UserError(
                f"train.loggers: {name} is not installed; pip install 'encoderlab[track]' "
                f"(or {name}), or remove {name} from train.loggers"
            )


def configured(run_dir: Path) -> list[str]:
    """train.loggers of the run's config.yaml (the default when it has none)."""
    try:
        cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return list(DEFAULT)
    train = cfg.get("train") if isinstance(cfg, dict) else None
    names = train.get("loggers", DEFAULT) if isinstance(train, dict) else DEFAULT
    return [str(n) for n in names] if isinstance(names, list) else list(DEFAULT)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted keys (train.lr, model.d_model): hyperparameter tables."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = value
    return out


def numbers(record: dict[str, Any]) -> dict[str, float]:
    """The metric fields of a record (numbers; not step/kind/time)."""
    return {
        k: float(v)
        for k, v in record.items()
        if k not in _SKIP and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


Remember = Callable[[str, str], None]  # (tracker, its run id) -> kept in run.json


def open_loggers(run_dir: Path, remember: Remember) -> list[Logger]:
    """The trackers besides TensorBoard that the run's config names, opened and given the
    config as hyperparameters; `remember` keeps a new tracker run's id for a resume."""
    run_dir = Path(run_dir)
    names = [n for n in configured(run_dir) if n != "tensorboard"]
    if not names:
        return []
    check_installed(names)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    opened: list[Logger] = []
    for name in names:
        kind = MLflowLogger if name == "mlflow" else WandbLogger
        opened.append(kind(run_dir, cfg, remember))
    return opened


def _info(run_dir: Path) -> dict[str, Any]:
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class MLflowLogger:
    """MLflow through its client API (no global active run, so runs in one process do not mix)."""

    def __init__(self, run_dir: Path, config: dict[str, Any], remember: Remember) -> None:
        import mlflow
        from mlflow.entities import Metric, Param

        self._metric = Metric
        uri = os.environ.get("MLFLOW_TRACKING_URI") or Path("mlruns").resolve().as_uri()
        if uri.startswith("file:"):  # MLflow 3 asks for this opt-in to use a plain folder
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        info = _info(run_dir)
        self.run_id = (info.get("trackers") or {}).get("mlflow")
        if self.run_id is None:
            experiment = str(info.get("name") or config.get("name") or "encoderlab")
            found = self.client.get_experiment_by_name(experiment)
            eid = found.experiment_id if found else self.client.create_experiment(experiment)
            created = self.client.create_run(
                eid, run_name=run_dir.name, tags={"encoderlab.run_dir": str(run_dir.resolve())}
            )
            self.run_id = created.info.run_id
            remember("mlflow", self.run_id)
            params = [
                Param(k, str(v)[:6000]) for k, v in flat_params(config).items() if v is not None
            ]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                self.client.log_batch(self.run_id, params=params[i : i + 100])
            self.client.log_dict(self.run_id, config, "config.yaml")
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def log(self, record: dict[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(k, v, now, step) for k, v in numbers(record).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class WandbLogger:
    """Weights & Biases in offline mode, its files under the run directory."""

    def __init__(self, run_dir: Path, config: dict[str, Any], remember: Remember) -> None:
        import wandb

        info = _info(run_dir)
        run_id = (info.get("trackers") or {}).get("wandb")
        self.run = wandb.init(
            mode="offline",
            dir=str(run_dir),
            project=str(info.get("name") or config.get("name") or "encoderlab"),
            name=run_dir.name,
            id=run_id,
            resume="allow" if run_id else None,
            config=config,
            reinit="create_new",
        )
        if run_id is None:
            remember("wandb", self.run.id)

    def log(self, record: dict[str, Any], step: int) -> None:
        values = numbers(record)
        if values:
            self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()
