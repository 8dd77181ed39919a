"""Hyperparameter sweeps on Ray Tune: one YAML file, every trial an ordinary encoderlab run.

    encoderlab sweep examples/disaster_tweets/sweep.yaml            # local Ray, all cores
    encoderlab sweep sweep.yaml --address ray://head:10001           # an existing cluster
    encoderlab sweep sweep.yaml --resume                             # after an interruption

A sweep file names a `base` config (fine-tuning or pretraining, relative to the sweep file),
a `space` of dotted config fields ({grid|choice|uniform|loguniform|randint}), the `metric` and
`mode`, the search algorithm (grid, random, optuna = TPE), a scheduler (none or ASHA, in
evaluations), resources per trial, concurrency and a time budget. Output in `out/`
(default `sweeps/<name>`):

  runs/<name>-<trial>-... one encoderlab run directory per trial (`encoderlab report` works)
  trials/<trial_id>.json  what each trial tried, its run directory, status and error
  trials.csv, trials.md   the ranked table; best.yaml: the best trial's config
  plots/<field>.png       the metric against each searched field
  report/                 the encoderlab report of the trial runs
  tune/                   Ray Tune's experiment state (what --resume restores)

Trials report to Tune after every evaluation, and only once that evaluation's checkpoint is on
disk, so a trial ASHA stops early is a valid run (marked `stopped early` in run.json) with a
checkpoint. A trial that raises (out of memory, non-finite loss, a bad combination of values)
is recorded as failed with its error and the sweep goes on.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from encoderlab.config import (
    Config,
    FinetuneConfig,
    Section,
    _format_validation_error,
    build,
    check_plain_name,
    read_yaml,
    save_config,
)
from encoderlab.errors import UserError

STATUSES = ("completed", "stopped early", "failed", "interrupted")


# ---------------------------------------------------------------------------------------------
# The sweep file


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dist(_Spec):
    """One searched field: exactly one of grid / choice / uniform / loguniform / randint."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None  # both ends included

    @model_validator(mode="after")
    def _one(self) -> Dist:
        given = [
            k
            for k in ("grid", "choice", "uniform", "loguniform", "randint")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of grid: [...], choice: [...], uniform: [lo, hi], "
                f"loguniform: [lo, hi], randint: [lo, hi] (got {', '.join(given) or 'none'})"
            )
        values = self.grid if self.grid is not None else self.choice
        if values is not None and not values:
            raise ValueError("the list of values is empty")
        for kind in ("uniform", "loguniform", "randint"):
            lo_hi = getattr(self, kind)
            if lo_hi is not None:
                lo, hi = lo_hi
                if not lo < hi or (kind == "randint" and lo > hi):
                    raise ValueError(f"{kind}: need lo < hi (got [{lo}, {hi}])")
                if kind == "loguniform" and lo <= 0:
                    raise ValueError("loguniform: lo must be > 0")
        return self

    @property
    def kind(self) -> str:
        for k in ("grid", "choice", "uniform", "loguniform", "randint"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError


class Scheduler(_Spec):
    type: Literal["none", "asha"] = "none"
    grace_period: int = 1  # evaluations before a trial can be stopped
    reduction_factor: float = 2.0
    max_t: int = 100  # evaluations at most per trial (ASHA's last rung)

    @model_validator(mode="after")
    def _check(self) -> Scheduler:
        if self.grace_period < 1 or self.max_t < self.grace_period:
            raise ValueError("need 1 <= grace_period <= max_t")
        if self.reduction_factor <= 1:
            raise ValueError("reduction_factor must be > 1")
        return self


class Resources(_Spec):
    cpu: float = 1.0
    gpu: float = 0.0  # a fraction shares one GPU between trials


class SweepSpec(_Spec):
    name: str | None = None  # default: the sweep file's name (its folder's for sweep.yaml)
    base: str  # config file, relative to the sweep file
    kind: Literal["auto", "finetune", "pretrain"] = "auto"  # auto: finetune if it has `task:`
    space: dict[str, Dist]
    metric: str = "valid/acc"
    mode: Literal["max", "min"] = "max"
    num_samples: int = 1  # grid: repeats of the whole grid; random/optuna: trials
    search: Literal["grid", "random", "optuna"] = "random"
    scheduler: Scheduler = Scheduler()
    resources: Resources = Resources()
    max_concurrent: int | None = None
    time_budget_min: float | None = None
    overrides: dict[str, Any] = {}  # fixed dotted overrides for every trial
    out: str | None = None  # default sweeps/<name>

    @model_validator(mode="before")
    @classmethod
    def _scheduler_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("scheduler"), str):
            data = {**data, "scheduler": {"type": data["scheduler"]}}
        return data

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if not self.space:
            raise ValueError("space is empty; name at least one config field to search")
        if self.num_samples < 1:
            raise ValueError("num_samples must be at least 1")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        return self


class Sweep:
    """A loaded sweep file: the spec plus everything resolved against the file and the cwd."""

    def __init__(self, path: Path, spec: SweepSpec, base: Path, schema: type[Section]) -> None:
        self.path = path
        self.spec = spec
        self.base = base
        self.schema = schema
        stem = path.stem if path.stem != "sweep" else path.resolve().parent.name
        self.name = check_plain_name(spec.name, f"{path}: name") or stem
        self.out = Path(spec.out or Path("sweeps") / self.name).resolve()
        self.cwd = Path.cwd().resolve()

    @property
    def kind(self) -> str:
        return "finetune" if self.schema is FinetuneConfig else "pretrain"


def _field_exists(schema: type[BaseModel], dotted: str) -> str | None:
    """None when `dotted` names a config field; otherwise the one-line reason."""
    section: Any = schema
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = getattr(section, "model_fields", None)
        if fields is None or part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            valid = ", ".join(fields) if fields else "(none: it is a value)"
            return f"unknown config field '{dotted}'; valid keys in {where}: {valid}"
        ann = fields[part].annotation
        section = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if section is None and i < len(parts) - 1:
            return f"'{'.'.join(parts[: i + 1])}' is a value, not a section"
    return None


def load_sweep(path: str | Path) -> Sweep:
    p = Path(path)
    data = read_yaml(p)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        raise UserError(_format_validation_error(e, SweepSpec, str(p))) from None
    base = (p.parent / spec.base) if not Path(spec.base).is_absolute() else Path(spec.base)
    base_data = read_yaml(base)
    if spec.kind == "auto":
        schema: type[Section] = FinetuneConfig if "task" in base_data else Config
    else:
        schema = FinetuneConfig if spec.kind == "finetune" else Config
    for section, keys in (("space", spec.space), ("overrides", spec.overrides)):
        for key in keys:
            why = _field_exists(schema, key)
            if why:
                raise UserError(f"{p}: {section} key '{key}': {why}")
    return Sweep(p, spec, base, schema)


# ---------------------------------------------------------------------------------------------
# One trial


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _plain(value: Any) -> Any:
    """numpy scalars (what samplers return) -> Python values for YAML/JSON."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def trial_config(sweep: Sweep, values: dict[str, Any], name: str) -> Any:
    """base + overrides + the trial's values, validated (a bad combination is a UserError)."""
    data = read_yaml(sweep.base)
    for key, value in {**sweep.spec.overrides, **values}.items():
        _set_dotted(data, key, _plain(value))
    data["runs_dir"] = str(sweep.out / "runs")
    data["name"] = name
    if sweep.spec.resources.cpu >= 1 and "train.threads" not in sweep.spec.overrides:
        _set_dotted(data, "train.threads", int(sweep.spec.resources.cpu))
    return build(sweep.schema, data, f"{sweep.path} (trial {name})")


def error_kind(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".lower()
    if isinstance(e, MemoryError) or "outofmemory" in text or "out of memory" in text:
        return "out of memory"
    if isinstance(e, UserError):
        return "bad config"
    if "not finite" in text or "nan" in type(e).__name__.lower():
        return "nan loss"
    return "error"


class NonFiniteLoss(RuntimeError):
    pass


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"[:500]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _has_checkpoint_at(run_dir: Path, step: int) -> bool:
    ckpts = run_dir / "checkpoints"
    if not ckpts.is_dir():
        return False
    for p in ckpts.iterdir():
        if p.name.startswith("step-") and (p / "state.json").is_file():
            try:
                if int(p.name[5:]) >= step:
                    return True
            except ValueError:
                continue
    return False


class _Reporter:
    """Reports each evaluation to Tune from a side thread once its checkpoint is on disk.

    `fit` calls `on_eval` before it writes that evaluation's checkpoint; reporting from here
    would let ASHA end the process before the checkpoint exists. The side thread waits for it
    (training goes on meanwhile); when Tune stops the trial, only this thread is told to exit.
    """

    def __init__(self, sweep: Sweep, find_run: Callable[[], Path | None]) -> None:
        self.sweep = sweep
        self.find_run = find_run
        self.q: queue.Queue = queue.Queue()
        self.fit_done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="tune-reporter")
        self.thread.start()

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        run_dir = self.find_run()
        evals = 0
        if run_dir is not None and (run_dir / "metrics.jsonl").is_file():
            for line in (run_dir / "metrics.jsonl").read_text().splitlines():
                evals += '"kind": "eval"' in line
        value = metrics.get(self.sweep.spec.metric)
        if value is None:
            raise UserError(
                f"{self.sweep.path}: metric '{self.sweep.spec.metric}' is not among the "
                f"evaluation's metrics: {', '.join(metrics)}"
            )
        payload = {
            "score": float(value),
            "evals": max(evals, 1),
            "step": int(step),
            "run_dir": str(run_dir) if run_dir else "",
            **{k.replace("/", "_"): float(v) for k, v in metrics.items()},
        }
        self.q.put((run_dir, step, payload))

    def _loop(self) -> None:
        from ray import tune

        while True:
            item = self.q.get()
            if item is None:
                return
            run_dir, step, payload = item
            while run_dir is not None and not self.fit_done.is_set():
                if _has_checkpoint_at(run_dir, step):
                    break
                time.sleep(0.05)
            tune.report(payload)  # Tune ends this thread here (SystemExit) to stop the trial

    def close(self) -> None:
        self.fit_done.set()
        self.q.put(None)
        self.thread.join()


def _report_finished(sweep: Sweep, reporter: _Reporter, run_dir: Path) -> None:
    from encoderlab.runs import Run

    evals = [r for r in Run(run_dir).metrics() if r.get("kind") == "eval"]
    if evals:
        last = evals[-1]
        reporter.on_eval(int(last["step"]), {k: v for k, v in last.items() if "/" in k})


def _find_run_dir(runs_dir: Path, name: str) -> Path | None:
    found = sorted(p for p in runs_dir.glob(f"{name}-*") if (p / "run.json").is_file())
    return found[-1] if found else None


def run_trial(values: dict[str, Any], sweep: Sweep) -> None:
    """The Tune trainable: build the trial's config, run it in-process, report every eval."""
    from ray import tune

    if sweep.cwd.is_dir():  # paths in configs are relative to where the sweep was started
        os.chdir(sweep.cwd)
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    name = f"{sweep.name}-{trial_id.replace('_', '-')}"  # + the run's timestamp
    side = sweep.out / "trials" / f"{trial_id}.json"
    values = {k: _plain(v) for k, v in values.items() if k in sweep.spec.space}
    record: dict[str, Any] = json.loads(side.read_text()) if side.is_file() else {}
    record.update(trial_id=trial_id, name=name, values=values, status="running", error=None)
    record.setdefault("started", time.time())
    record.pop("ended", None)
    _write_json(side, record)
    runs_dir = sweep.out / "runs"
    previous = _find_run_dir(runs_dir, name)  # set when Tune restarts an interrupted trial
    reporter = _Reporter(sweep, lambda: _find_run_dir(runs_dir, name))
    try:
        from encoderlab.runs import Run

        quiet: Callable[[str], None] = lambda msg: None  # noqa: E731
        resume = None
        if previous is not None and Run(previous).info.get("status") == "finished":
            _report_finished(sweep, reporter, previous)  # ended just before the interruption
            reporter.close()
            record.update(status="completed", run_dir=str(previous), ended=time.time())
            _write_json(side, record)
            return
        if previous is not None and Run(previous).latest_checkpoint() is not None:
            resume = previous  # continue where it was interrupted, in the same run directory
        else:
            if previous is not None:  # interrupted before its first checkpoint: start again
                import shutil

                shutil.rmtree(previous, ignore_errors=True)
            cfg = trial_config(sweep, values, name)
        record["run_dir"] = str(previous) if resume else None
        if sweep.kind == "finetune":
            from encoderlab.finetune import finetune

            if resume is not None:
                run, result = finetune(say=quiet, resume=resume, on_eval=reporter.on_eval)
            else:
                run, result = finetune(cfg, say=quiet, on_eval=reporter.on_eval)
        else:
            from encoderlab.pretrain import pretrain

            if resume is not None:
                run, result = pretrain(resume=resume, say=quiet, on_eval=reporter.on_eval)
            else:
                run, result = pretrain(cfg, say=quiet, on_eval=reporter.on_eval)
        record["run_dir"] = str(run.path)
        if run.info.get("status") == "failed":
            raise NonFiniteLoss(result.stopped_because)
    except BaseException as e:
        if isinstance(e, SystemExit):
            raise
        run_dir = _find_run_dir(runs_dir, name)
        record.update(
            status="failed",
            error=_one_line(e),
            error_kind=error_kind(e),
            run_dir=str(run_dir) if run_dir else record.get("run_dir"),
            traceback=traceback.format_exc(limit=20),
            ended=time.time(),
        )
        _write_json(side, record)
        reporter.close()
        raise
    reporter.close()
    record.update(status="completed", ended=time.time(), stopped_because=result.stopped_because)
    _write_json(side, record)


# ---------------------------------------------------------------------------------------------
# The sweep


def _param_space(sweep: Sweep) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for key, d in sweep.spec.space.items():
        if d.kind == "grid":
            if sweep.spec.search == "grid":
                space[key] = tune.grid_search(d.grid)
            else:
                space[key] = tune.choice(d.grid)
        elif d.kind == "choice":
            space[key] = tune.choice(d.choice)
        elif d.kind == "uniform":
            space[key] = tune.uniform(*d.uniform)
        elif d.kind == "loguniform":
            space[key] = tune.loguniform(*d.loguniform)
        else:
            lo, hi = d.randint
            space[key] = tune.randint(lo, hi + 1)
    return space


def _trainable(sweep: Sweep):
    from ray import tune

    res = sweep.spec.resources
    fn = tune.with_parameters(run_trial, sweep=sweep)
    return tune.with_resources(fn, {"cpu": res.cpu, "gpu": res.gpu})


def start_ray(address: str | None) -> bool:
    """Join `address`, or start a local Ray; True when this call started it (shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=f"/tmp/encoderlab-ray-{os.getuid()}",
            configure_logging=False,
        )
    return True


def run_sweep(
    path: str | Path,
    resume: bool = False,
    address: str | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Run (or resume) the sweep in `path`; write the table, best.yaml, plots and the report.
    Returns the sweep's output folder."""
    sweep = load_sweep(path)
    try:
        from ray import tune
    except ImportError:
        raise UserError(
            "sweeps need Ray Tune: pip install 'encoderlab[sweep]' (ray[tune] and optuna)"
        ) from None
    spec = sweep.spec
    tune_dir = sweep.out / "tune"
    if resume and not tune.Tuner.can_restore(str(tune_dir)):
        raise UserError(f"{sweep.out}: no sweep to resume there; run without --resume first")
    if not resume and tune_dir.exists():
        raise UserError(
            f"{sweep.out}: a sweep already ran there; use --resume to continue it, or set "
            "`out:` / `name:` in the sweep file for a new one"
        )
    sweep.out.mkdir(parents=True, exist_ok=True)
    (sweep.out / "sweep.yaml").write_text(
        yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    started = start_ray(address)
    try:
        trainable = _trainable(sweep)
        if resume:
            say(f"resuming the sweep in {sweep.out}")
            tuner = tune.Tuner.restore(
                str(tune_dir),
                trainable=trainable,
                resume_unfinished=True,
                resume_errored=False,  # a failed trial fails again (bad config, OOM): skip it
                restart_errored=False,
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(sweep),
                tune_config=_tune_config(sweep),
                run_config=tune.RunConfig(
                    name="tune",
                    storage_path=str(sweep.out),
                    failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                    verbose=0,
                ),
            )
        t0 = time.perf_counter()
        grid = tuner.fit()
        say(f"sweep ran for {time.perf_counter() - t0:.0f}s")
        tune_status = _tune_statuses(grid, tune_dir)
    finally:
        if started:
            import ray

            ray.shutdown()
    rows = collect(sweep, tune_status)
    write_outputs(sweep, rows, say)
    return sweep.out


def _tune_config(sweep: Sweep):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    spec = sweep.spec
    search_alg = None
    if spec.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=0)
    scheduler = None
    if spec.scheduler.type == "asha":
        s = spec.scheduler
        scheduler = ASHAScheduler(
            time_attr="evals",
            max_t=s.max_t,
            grace_period=s.grace_period,
            reduction_factor=s.reduction_factor,
        )
    return tune.TuneConfig(
        metric="score",
        mode=spec.mode,
        search_alg=search_alg,
        scheduler=scheduler,
        num_samples=spec.num_samples,
        max_concurrent_trials=spec.max_concurrent,
        time_budget_s=spec.time_budget_min * 60 if spec.time_budget_min else None,
    )


def _tune_statuses(grid, tune_dir: Path) -> dict[str, str]:
    """trial id (or trial directory name) -> 'ok' (terminated), 'error' or 'unfinished'.

    Read from the saved experiment state: after Ctrl-C the in-memory trials read TERMINATED,
    while the saved state keeps them PENDING, which is what --resume goes by."""
    from ray.tune import ExperimentAnalysis

    out: dict[str, str] = {}
    try:
        trials = ExperimentAnalysis(str(tune_dir)).trials
    except Exception:  # noqa: BLE001 - fall back to what the result grid says
        trials = None
    if trials:
        for t in trials:
            out[t.trial_id] = {"TERMINATED": "ok", "ERROR": "error"}.get(t.status, "unfinished")
        return out
    for r in grid:  # older/newer Ray without the trial list: errors are all we can tell
        seen = "error" if r.error is not None else "ok"
        out[Path(r.path).name] = seen
        tid = (r.metrics or {}).get("trial_id")
        if tid:
            out[tid] = seen
    return out


# ---------------------------------------------------------------------------------------------
# Results


def _tune_view(tune_status: dict[str, str], trial_id: str) -> str | None:
    if trial_id in tune_status:
        return tune_status[trial_id]
    for key, value in tune_status.items():
        if trial_id in key:
            return value
    return None


def collect(sweep: Sweep, tune_status: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per trial from trials/*.json and each trial's run directory; marks runs that
    Tune stopped early. Ranked: best metric first, failed trials last."""
    from encoderlab.runs import Run

    rows = []
    for f in sorted((sweep.out / "trials").glob("*.json")):
        rec = json.loads(f.read_text())
        run_dir = Path(rec["run_dir"]) if rec.get("run_dir") else None
        if run_dir is None:
            found = _find_run_dir(sweep.out / "runs", rec["name"])
            run_dir = found
        status = rec["status"]
        wall = _wall(rec, run_dir)
        info: dict[str, Any] = {}
        seen = _tune_view(tune_status or {}, rec["trial_id"])
        if run_dir is not None and (run_dir / "run.json").is_file():
            run = Run(run_dir)
            info = run.info
            run_status = info.get("status")
            if status == "failed" or run_status == "failed":
                status = "failed"
                if not rec.get("error"):
                    rec["error"] = info.get("message") or info.get("stopped_because")
            elif run_status == "finished":
                status = "completed"  # fit ran to its end (Tune may have stopped it at max_t)
            elif run_status == "stopped early":
                status = "stopped early"
            elif seen == "ok":
                status = "stopped early"
                run.update(
                    status="stopped early",
                    stopped_because=f"stopped early by the sweep's scheduler "
                    f"({sweep.spec.scheduler.type}) at step {info.get('steps', 0)}",
                    finished=time.time(),
                    pid=None,
                )
                info = run.info
            elif seen == "error":
                status = "failed"
                rec["error"] = rec.get("error") or "the trial's worker died (see tune/ logs)"
            else:  # the sweep was interrupted while it ran: --resume continues its run
                status = "interrupted"
        elif status == "running":
            status = "failed" if seen == "error" else "interrupted"
        if status != rec["status"]:
            rec["status"] = status
            _write_json(f, rec)
        value = None
        evals = 0
        if run_dir is not None:
            for m in Run(run_dir).metrics() if (run_dir / "metrics.jsonl").is_file() else []:
                if m.get("kind") == "eval" and sweep.spec.metric in m:
                    evals += 1
                    v = m[sweep.spec.metric]
                    if value is None or (v > value if sweep.spec.mode == "max" else v < value):
                        value = v
        rows.append(
            {
                "trial": rec["trial_id"],
                **{k: rec["values"].get(k) for k in sweep.spec.space},
                "metric": value,
                "evals": evals,
                "steps": info.get("steps", 0),
                "train_s": round(float(info.get("train_seconds", 0.0)), 1),
                "wall_s": round(wall, 1),
                "status": status,
                "error": rec.get("error") or "",
                "run_dir": str(run_dir) if run_dir else "",
            }
        )
    sign = -1 if sweep.spec.mode == "max" else 1
    rows.sort(key=lambda r: (r["metric"] is None, sign * (r["metric"] or 0.0), r["trial"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _wall(rec: dict[str, Any], run_dir: Path | None) -> float:
    """Seconds from the trial's start to its end (or its run's last update)."""
    start = rec.get("started")
    if not start:
        return 0.0
    end = rec.get("ended")
    if end is None and run_dir is not None and (run_dir / "run.json").is_file():
        end = (run_dir / "run.json").stat().st_mtime
    return max(0.0, float(end or start) - float(start))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_outputs(sweep: Sweep, rows: list[dict[str, Any]], say: Callable[[str], None]) -> None:
    out = sweep.out
    fields = ["rank", "trial", *sweep.spec.space, "metric", "evals", "steps", "train_s", "wall_s"]
    fields += ["status", "error", "run_dir"]
    with open(out / "trials.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in fields})
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    metric = sweep.spec.metric
    md = [f"# Sweep {sweep.name}", ""]
    md.append(
        f"{len(rows)} trials: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "interrupted")
        + f". Ranked by {metric} ({sweep.spec.mode}, best evaluation of each trial)."
    )
    md += ["", "| " + " | ".join(f if f != "metric" else metric for f in fields) + " |"]
    md.append("|" + "---|" * len(fields))
    for r in rows:
        cells = []
        for k in fields:
            v = r.get(k)
            if k == "run_dir" and v:
                v = os.path.relpath(v, out)
            cells.append(_fmt(v).replace("|", "\\|"))
        md.append("| " + " | ".join(cells) + " |")
    (out / "trials.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    summary = {"name": sweep.name, "metric": metric, "mode": sweep.spec.mode, **counts}
    best = next((r for r in rows if r["metric"] is not None and r["run_dir"]), None)
    if best is not None:
        from encoderlab.config import load_config

        cfg = load_config(Path(best["run_dir"]) / "config.yaml", schema=sweep.schema)
        base_name = read_yaml(sweep.base).get("name", sweep.name)
        cfg = cfg.model_copy(update={"runs_dir": "runs", "name": f"{base_name}-best"})
        save_config(cfg, out / "best.yaml")
        summary["best"] = {k: best[k] for k in ("trial", "metric", "run_dir")}
        summary["best"]["values"] = {k: best[k] for k in sweep.spec.space}
    _write_json(out / "summary.json", summary)
    write_plots(sweep, rows)
    run_dirs = [Path(r["run_dir"]) for r in rows if r["run_dir"] and Path(r["run_dir"]).is_dir()]
    if run_dirs:
        try:
            from encoderlab.report import build_report

            build_report(run_dirs, out / "report", title=f"Sweep {sweep.name}")
        except Exception as e:  # the table and best.yaml stand on their own
            say(f"warning: the report of the trial runs failed: {_one_line(e)}")
    say(
        f"{len(rows)} trials: {counts['completed']} completed, {counts['stopped early']} "
        f"stopped early, {counts['failed']} failed"
        + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
    )
    if best is not None:
        shown = ", ".join(f"{k}={_fmt(best[k])}" for k in sweep.spec.space)
        say(f"best: {metric} {best['metric']:.4f} with {shown} ({best['run_dir']})")
        say(f"best config: {out / 'best.yaml'}")
    if counts["interrupted"]:
        say(f"interrupted: continue with `encoderlab sweep {sweep.path} --resume`")
    say(f"table: {out / 'trials.md'}")


def write_plots(sweep: Sweep, rows: list[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir = sweep.out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    colors = {"completed": "tab:blue", "stopped early": "tab:orange", "interrupted": "tab:gray"}
    written = []
    for key, dist in sweep.spec.space.items():
        pts = [r for r in rows if r["metric"] is not None and r.get(key) is not None]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        numeric = dist.kind in ("uniform", "loguniform", "randint") or all(
            isinstance(r[key], (int, float)) and not isinstance(r[key], bool) for r in pts
        )
        if numeric:
            xs = [float(r[key]) for r in pts]
            if dist.kind == "loguniform" or (
                xs and min(xs) > 0 and max(xs) / max(min(xs), 1e-300) >= 100
            ):
                ax.set_xscale("log")
        else:
            cats = list(dict.fromkeys(str(v) for v in (dist.grid or dist.choice or [])))
            cats += [c for c in dict.fromkeys(str(r[key]) for r in pts) if c not in cats]
            xs = [cats.index(str(r[key])) for r in pts]
            ax.set_xticks(range(len(cats)), cats)
        for status, color in colors.items():
            sel = [(x, r["metric"]) for x, r in zip(xs, pts, strict=True) if r["status"] == status]
            if sel:
                ax.scatter(*zip(*sel, strict=True), c=color, label=status, alpha=0.8)
        ax.set_xlabel(key)
        ax.set_ylabel(sweep.spec.metric)
        ax.set_title(f"{sweep.spec.metric} vs {key}")
        if pts:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = plot_dir / f"{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def sweep_command(path: str, resume: bool = False, address: str | None = None) -> Path:
    """`encoderlab sweep SWEEP.yaml [--resume] [--address ADDR]`: the CLI's entry point."""
    return run_sweep(path, resume=resume, address=address)


__all__ = [
    "Dist",
    "SweepSpec",
    "Sweep",
    "collect",
    "load_sweep",
    "run_sweep",
    "sweep_command",
    "trial_config",
]
