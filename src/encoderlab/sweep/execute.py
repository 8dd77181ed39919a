"""Driving Ray Tune: the search space, algorithm and scheduler from the sweep file, a local
Ray (or an existing cluster), the run (or its resumption), and then the results.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from encoderlab.distributed import launched
from encoderlab.errors import Interrupted, UserError, first_line
from encoderlab.sweep.folder import check_fresh, check_resume, claim, hold, let_go, restore_cwd
from encoderlab.sweep.spec import Sweep, check_data_files, load_sweep
from encoderlab.sweep.tables import collect, write_outputs
from encoderlab.sweep.trial import run_trial
from encoderlab.tasks.registry import metric_mode

CONNECT_TIMEOUT_S = 5.0  # how long --address may take to answer before the sweep gives up


def _param_space(sweep: Sweep) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for key, d in sweep.spec.space.items():
        if d.kind == "grid":  # search: grid only (spec._check_grid)
            space[key] = tune.grid_search(d.grid)
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
    is kept in trials/<id>.json, so the console only says how many trials failed. Also its
    words on an interrupted sweep (`Tuner.restore(...)`): the sweep says `--resume`."""

    LOGGERS = (
        "ray.tune.execution.tune_controller",
        "ray.tune.tune",
        "ray.tune.analysis.experiment_analysis",
    )
    DROPPED = (
        "Trial task failed",
        "Trials did not complete",
        "Stop signal received",
        "Experiment has been interrupted",
        "Failed to fetch metrics",  # a trial interrupted before its first report
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.DROPPED)


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
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as e:  # noqa: BLE001 - whatever Ray says, it is the address
            raise UserError(
                f"--address {address}: could not join a Ray cluster there ({first_line(e)}); "
                "start it (`ray start --head`) or fix --address"
            ) from None
    else:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=f"/tmp/encoderlab-ray-{os.getuid()}",
            configure_logging=False,
        )
    return True


def check_address(address: str) -> None:
    """A `[ray://]host:port` nothing listens on is refused in seconds: ray.init retried it for
    minutes. Other forms (`auto`, a hostname alone) are left to Ray."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\[\]/]+?)\]?:(\d+)", address.strip())
    if m is None:
        return
    host, port = m.group(1), int(m.group(2))
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise UserError(
            f"--address {address}: nothing answers at {host}:{port} "
            f"({e.strerror or first_line(e)}); start the Ray cluster (`ray start --head`) "
            "or fix --address"
        ) from None


def check_local_resources(sweep: Sweep) -> None:
    """A trial that asks for more than this machine has never starts: Ray waited for it
    forever (`gpu: 1` without a GPU), or the time budget ended the sweep with 0 trials."""
    res = sweep.spec.resources
    cores = os.cpu_count() or 1
    if res.cpu > cores:
        raise UserError(
            f"{sweep.path}: resources.cpu: {res.cpu:g} per trial, but this machine has {cores} "
            f"CPU core{'s' if cores != 1 else ''}; ask for at most {cores} (or join a cluster "
            "with --address)"
        )
    if res.gpu > 0:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if res.gpu > gpus:
            raise UserError(
                f"{sweep.path}: resources.gpu: {res.gpu:g} per trial, but torch sees {gpus} GPU"
                f"{'s' if gpus != 1 else ''} on this machine; set resources.gpu to "
                f"{'at most ' + str(gpus) if gpus else '0'} (or join a cluster with --address)"
            )


class _StopOnSignal:
    """Ctrl-C (or SIGTERM) while Tune runs stops the sweep as Tune's SIGUSR1 does: Tune saves
    its state, stops the running trials and returns, and `hit` says the sweep was interrupted
    (with its own SIGINT handler, Tune returned as if the sweep had ended: exit 0, "N trials:
    N completed"). A second one, or one before Tune listens, stops at once (KeyboardInterrupt).
    """

    ENV = "TUNE_DISABLE_SIGINT_HANDLER"

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.hit = False
        self._old: dict[int, Any] = {}
        self._env: str | None = None

    def __enter__(self) -> _StopOnSignal:
        self._env = os.environ.get(self.ENV)
        os.environ[self.ENV] = "1"  # SIGINT is ours; Tune still listens to SIGUSR1
        if threading.current_thread() is threading.main_thread():
            for name in ("SIGINT", "SIGTERM", "SIGUSR1"):
                if hasattr(signal, name):
                    sig = getattr(signal, name)
                    self._old[sig] = signal.getsignal(sig)
                    # SIGUSR1's default until Tune takes it: our SIGINT knows Tune listens
                    signal.signal(sig, signal.SIG_DFL if name == "SIGUSR1" else self)
        return self

    def __call__(self, signum: int, frame: Any) -> None:
        usr1 = getattr(signal, "SIGUSR1", None)
        tune_listens = usr1 is not None and signal.getsignal(usr1) not in (
            signal.SIG_DFL,
            signal.SIG_IGN,
            None,
        )
        if self.hit or not tune_listens:
            raise KeyboardInterrupt
        self.hit = True
        with contextlib.suppress(RuntimeError):  # a print this signal cut into
            self.say("stopping the sweep: its state is saved first (Ctrl-C again: stop now)")
        os.kill(os.getpid(), usr1)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        if self._env is None:
            os.environ.pop(self.ENV, None)
        else:
            os.environ[self.ENV] = self._env


def run_sweep(
    path: str | Path,
    resume: bool = False,
    address: str | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Run (or resume) the sweep in `path`; write the table, best.yaml, plots and the report.
    Returns the sweep's output folder. Ctrl-C: the table of what ran, then `Interrupted`,
    whose message says how to go on."""
    if launched():
        raise UserError(
            f"{path}: a sweep runs its own trials (resources: per trial): run `encoderlab sweep "
            f"{path}` without torchrun"
        )
    try:
        sweep = load_sweep(path)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted before the sweep started; run `encoderlab sweep {path}` again"
        ) from None
    _check_mode(sweep, say)
    try:
        return _run_sweep(sweep, resume, address, say)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        from ray import tune

        if tune.Tuner.can_restore(str(sweep.out / "tune")):
            raise Interrupted(_resume_hint(sweep)) from None
        raise Interrupted(
            f"interrupted before the sweep started; run `encoderlab sweep {sweep.path}` again"
        ) from None
    finally:
        let_go(sweep)


def _check_mode(sweep: Sweep, say: Callable[[str], None]) -> None:
    """A mode against its metric (`mode: max` kept from an example, `metric: valid/loss`)
    made the worst trial "best" without a word."""
    spec = sweep.spec
    usual = metric_mode(spec.metric.rsplit("/", 1)[-1])
    if "mode" in spec.model_fields_set and spec.mode != usual:
        most = "highest" if spec.mode == "max" else "lowest"
        say(
            f"warning: {sweep.path}: mode: {spec.mode} ranks the {most} {spec.metric} best; "
            f"for mode: {usual} (the usual one for it) change or remove `mode:`"
        )


def _resume_hint(sweep: Sweep) -> str:
    return f"interrupted; continue with `encoderlab sweep {sweep.path} --resume`"


def _run_sweep(sweep: Sweep, resume: bool, address: str | None, say: Callable[[str], None]) -> Path:
    try:
        from ray import tune  # noqa: F401 - here, so that a missing Ray Tune is one line
    except ImportError:
        raise UserError(
            "sweeps need Ray Tune: pip install 'encoderlab[sweep]' (ray[tune] and optuna)"
        ) from None
    if sweep.spec.search == "optuna":
        try:
            import optuna  # noqa: F401 - else Ray's OptunaSearch asserts, after the claim
        except ImportError:
            raise UserError(
                f"{sweep.path}: search: optuna needs optuna: pip install 'encoderlab[sweep]' "
                "(or optuna), or use search: random"
            ) from None
    hold(sweep)  # a sweep running in this folder stops this one here
    start_over = check_resume(sweep) if resume else check_fresh(sweep)
    if resume:
        restore_cwd(sweep, say)
    check_data_files(sweep)
    if address:
        check_address(address)
    else:
        check_local_resources(sweep)
    started = start_ray(address)  # nothing is written before Ray is there
    try:
        if not resume:
            claim(sweep, start_over, say)
        with quiet_trial_failures():
            tuner = _tuner(sweep, resume, say)
        from encoderlab.sweep.progress import close_all, say_with  # Ray Tune's: imports ray

        say_with(say)
        t0 = time.time()
        with quiet_trial_failures(), _StopOnSignal(say) as stop:
            try:
                grid = tuner.fit()
            finally:
                close_all()
            tune_status, tune_configs = _tune_trials(grid, sweep.out / "tune")
        say(f"sweep ran for {time.time() - t0:.0f}s")
    finally:
        if started:
            import ray

            ray.shutdown()
    return _finish(sweep, t0, tune_status, tune_configs, stop.hit, say)


def _tuner(sweep: Sweep, resume: bool, say: Callable[[str], None]):
    """A new Tuner for the sweep, or the one in tune/ (--resume)."""
    from ray import tune

    trainable = _trainable(sweep)
    if resume:
        say(f"resuming the sweep in {sweep.out}")
        return tune.Tuner.restore(
            str(sweep.out / "tune"),
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=False,  # a failed trial fails again (bad config, OOM): skip it
            restart_errored=False,
        )
    return tune.Tuner(
        trainable,
        param_space=_param_space(sweep),
        tune_config=_tune_config(sweep),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(sweep.out),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            verbose=0,  # Ray's table: instead, the trials done and the best so far
            callbacks=[_progress(sweep)],
        ),
    )


def _progress(sweep: Sweep):
    """The bar (or a line per finished trial) of a new sweep; a resumed one has it from the
    experiment state Tune saved."""
    from encoderlab.sweep.progress import SweepProgress  # Ray Tune's callback: imports ray

    spec = sweep.spec
    budget_s = spec.time_budget_min * 60 if spec.time_budget_min else None
    return SweepProgress(_planned(sweep), spec.metric, spec.mode, budget_s)


def _finish(
    sweep: Sweep,
    t0: float,
    tune_status: dict[str, str],
    tune_configs: dict[str, dict[str, Any]],
    interrupted: bool,
    say: Callable[[str], None],
) -> Path:
    """The table and the rest, then how the sweep ended: interrupted (exit 130), every trial
    failed or none ran (exit 2), or its folder."""
    budget_s = (sweep.spec.time_budget_min or 0) * 60
    budget_end = t0 + budget_s if budget_s and time.time() >= t0 + budget_s else None
    rows = collect(sweep, tune_status, tune_configs, budget_end)
    never_ran = max(0, _planned(sweep) - len(rows))
    write_outputs(sweep, rows, say, never_ran=never_ran, interrupted=interrupted)
    if interrupted:
        raise Interrupted(_resume_hint(sweep))
    if not rows:
        why = " before the time budget ended the sweep: raise time_budget_min" if budget_s else ""
        raise UserError(f"{sweep.path}: no trial ran{why}")
    if all(r["status"] == "failed" for r in rows):
        raise UserError(  # after the table, which has each trial's error
            f"every trial failed (their errors: {sweep.out / 'trials.md'}); fix the base config "
            "or the space, then run the sweep again"
        )
    return sweep.out


def _planned(sweep: Sweep) -> int:
    """How many trials the sweep runs when nothing cuts it short."""
    spec = sweep.spec
    if spec.search != "grid":
        return spec.num_samples
    sizes = [len(d.grid) for d in spec.space.values() if d.grid is not None]
    return math.prod(sizes) * spec.num_samples


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


def _tune_trials(grid, tune_dir: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """trial id (or trial directory name) -> 'ok' (terminated), 'error' or 'unfinished'; and
    trial id -> the values Tune gave it (a trial may not have written its record yet).

    Read from the saved experiment state: after Ctrl-C the in-memory trials read TERMINATED,
    while the saved state keeps them PENDING, which is what --resume goes by."""
    from ray.tune import ExperimentAnalysis

    out: dict[str, str] = {}
    configs: dict[str, dict[str, Any]] = {}
    try:
        trials = ExperimentAnalysis(str(tune_dir)).trials
    except Exception:  # noqa: BLE001 - fall back to what the result grid says
        trials = None
    if trials:
        for t in trials:
            out[t.trial_id] = {"TERMINATED": "ok", "ERROR": "error"}.get(t.status, "unfinished")
            configs[t.trial_id] = dict(t.config or {})
        return out, configs
    for r in grid:  # older/newer Ray without the trial list: errors are all we can tell
        seen = "error" if r.error is not None else "ok"
        out[Path(r.path).name] = seen
        tid = (r.metrics or {}).get("trial_id")
        if tid:
            out[tid] = seen
    return out, configs


def sweep_command(
    path: str,
    resume: bool = False,
    address: str | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """`encoderlab sweep SWEEP.yaml [--resume] [--address ADDR]`: the CLI's entry point."""
    try:
        return run_sweep(path, resume=resume, address=address, say=say)
    except Interrupted as e:
        Interrupted.last = e  # typer makes it exit code 130 on the way: the CLI prints this
        raise
