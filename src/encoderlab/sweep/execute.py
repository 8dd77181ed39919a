"""Driving Ray Tune: the search space, algorithm and scheduler from the sweep file, a local
Ray (or an existing cluster), the run (or its resumption), and then the results.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from encoderlab.errors import UserError
from encoderlab.sweep.spec import Sweep, load_sweep
from encoderlab.sweep.tables import collect, write_outputs
from encoderlab.sweep.trial import run_trial


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


class _TrialFailureFilter(logging.Filter):
    """Drops Ray Tune's own report of a failed trial (a Ray traceback per trial, then
    "Trials did not complete"): the trial's error is one line in trials.md and its traceback
    is kept in trials/<id>.json, so the console only says how many trials failed."""

    LOGGERS = ("ray.tune.execution.tune_controller", "ray.tune.tune")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not msg.startswith(("Trial task failed", "Trials did not complete"))


@contextlib.contextmanager
def quiet_trial_failures() -> Iterator[None]:
    """While a sweep runs, Ray Tune logs no tracebacks for trials that failed."""
    filt = _TrialFailureFilter()
    loggers = [logging.getLogger(name) for name in _TrialFailureFilter.LOGGERS]
    for lg in loggers:
        lg.addFilter(filt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(filt)


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
        with quiet_trial_failures():
            grid = tuner.fit()
        say(f"sweep ran for {time.perf_counter() - t0:.0f}s")
        tune_status = _tune_statuses(grid, tune_dir)
    finally:
        if started:
            import ray

            ray.shutdown()
    rows = collect(sweep, tune_status)
    write_outputs(sweep, rows, say)
    if rows and all(r["status"] == "failed" for r in rows):
        raise UserError(  # after the table, which has each trial's error
            f"every trial failed (their errors: {sweep.out / 'trials.md'}); fix the base config "
            "or the space, then run the sweep again"
        )
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


def sweep_command(path: str, resume: bool = False, address: str | None = None) -> Path:
    """`encoderlab sweep SWEEP.yaml [--resume] [--address ADDR]`: the CLI's entry point."""
    return run_sweep(path, resume=resume, address=address)
