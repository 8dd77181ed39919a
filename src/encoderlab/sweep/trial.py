"""One trial of a sweep, run by Ray Tune in a worker: its config (the base, the fixed
overrides and the trial's values), the run itself (in-process, resumed when Tune restarts an
interrupted trial), every evaluation reported to Tune (from a side thread), and
trials/<trial_id>.json (what it tried, its run directory, status and error). A trial writes a
full checkpoint at every evaluation (train.checkpoint_at_eval, unless the sweep sets it).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from encoderlab.config import build, mark_replaced_tokenizer, read_yaml, set_dotted
from encoderlab.errors import UserError
from encoderlab.jobs import one_line, write_json
from encoderlab.runs import drop_lock, find_run
from encoderlab.sweep.spec import Sweep
from encoderlab.train import StopRequested


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
    file_data = copy.deepcopy(data)
    for key, value in {**sweep.spec.overrides, **values}.items():
        set_dotted(data, key.split("."), _plain(value), f"{sweep.path}: {key}")
    data["runs_dir"] = str(sweep.out / "runs")
    data["name"] = name
    searched = "train.threads" in sweep.spec.overrides or "train.threads" in values
    if sweep.spec.resources.cpu >= 1 and not searched:  # the sweep's own threads win
        set_dotted(data, ["train", "threads"], int(sweep.spec.resources.cpu), str(sweep.path))
    if "checkpoint_at_eval" not in (data.get("train") or {}):
        # a trial is short, and Tune stops it at an evaluation: resume from there
        set_dotted(data, ["train", "checkpoint_at_eval"], True, str(sweep.path))
    cfg = build(sweep.schema, data, f"{sweep.path} (trial {name})")
    mark_replaced_tokenizer(cfg, file_data, [*sweep.spec.overrides, *values])
    return cfg


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


class _Reporter:
    """Reports each evaluation to Tune from a side thread, without waiting for a checkpoint.

    When Tune stops the trial, only this thread is told to exit (training goes on meanwhile),
    and the next evaluation ends the run (checkpointed, "interrupted") rather than the worker's
    teardown cutting it off; the driver then calls it stopped early or interrupted, from what
    Tune says of the trial. ASHA needs no checkpoint to stop a trial; a trial interrupted
    otherwise resumes from its latest full checkpoint.
    """

    def __init__(self, sweep: Sweep, find_run: Callable[[], Path | None]) -> None:
        self.sweep = sweep
        self.find_run = find_run
        self.q: queue.Queue = queue.Queue()
        self.stopped = threading.Event()  # Tune stopped the trial (SystemExit in tune.report)
        self.thread = threading.Thread(target=self._loop, daemon=True, name="tune-reporter")
        self.thread.start()

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        if self.stopped.is_set():
            raise StopRequested(self.stop_reason())
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
        self.q.put(payload)

    def _loop(self) -> None:
        from ray import tune

        while True:
            payload = self.q.get()
            if payload is None:
                return
            try:
                tune.report(payload)  # Tune ends this thread here (SystemExit) to stop the trial
            except SystemExit:
                self.stopped.set()
                raise
            except Exception:  # noqa: BLE001 - no session to report to: Tune ended the trial
                self.stopped.set()  # between two evaluations; the next one ends the run
                return

    def ended(self) -> bool:
        """Tune stopped the trial: this thread was told, or Tune already tore the session
        down (an error the teardown caused may reach the run before this thread hears)."""
        if self.stopped.is_set():
            return True
        try:
            from ray.train._internal.session import get_session
        except ImportError:  # another Ray layout: only what this thread was told counts
            return False
        session = get_session()
        stop = getattr(session, "stop_event", None)
        return session is None or bool(stop is not None and stop.is_set())

    def stop_reason(self) -> str:
        return "stopped by Ray Tune (the sweep's scheduler, or the sweep was interrupted)"

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()


def _report_finished(sweep: Sweep, reporter: _Reporter, run_dir: Path) -> None:
    from encoderlab.runs import Run

    evals = [r for r in Run(run_dir).metrics() if r.get("kind") == "eval"]
    if evals:
        last = evals[-1]
        reporter.on_eval(int(last["step"]), {k: v for k, v in last.items() if "/" in k})


def _restart_clock(record: dict[str, Any], previous: Path | None) -> None:
    """A trial's wall time counts the seconds it ran, not the hours the sweep stood still
    between an interruption and --resume: the earlier attempts' seconds go to `ran_s`."""
    now = time.time()
    started = record.get("started")
    if started:
        end = record.get("ended")
        if end is None and previous is not None and (previous / "run.json").is_file():
            end = (previous / "run.json").stat().st_mtime  # killed before it wrote its end
        if end is not None:
            record["ran_s"] = float(record.get("ran_s", 0.0)) + max(0.0, end - started)
    record["started"] = now
    record.pop("ended", None)


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
    runs_dir = sweep.out / "runs"
    previous = find_run(runs_dir, name)  # set when Tune restarts an interrupted trial
    _restart_clock(record, previous)
    write_json(side, record)
    reporter = _Reporter(sweep, lambda: find_run(runs_dir, name))
    try:
        from encoderlab.runs import Run

        missing = [k for k in sweep.spec.space if k not in values]
        if missing:  # it would run the base config, as if it had tried them
            raise UserError(
                f"{sweep.path}: trial {trial_id} got no value for {', '.join(missing)} from "
                "Ray Tune's saved state; start the sweep again under a new `name:` or `out:`"
            )
        quiet: Callable[[str], None] = lambda msg: None  # noqa: E731
        resume = None
        if previous is not None and Run(previous).info.get("status") == "finished":
            _report_finished(sweep, reporter, previous)  # ended just before the interruption
            reporter.close()
            record.update(status="completed", run_dir=str(previous), ended=time.time())
            write_json(side, record)
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
            from encoderlab.finetuning import finetune

            if resume is not None:
                run, result = finetune(say=quiet, resume=resume, on_eval=reporter.on_eval)
            else:
                run, result = finetune(cfg, say=quiet, on_eval=reporter.on_eval)
        else:
            from encoderlab.pretraining import pretrain

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
        run_dir = find_run(runs_dir, name)
        if (reporter.ended() or _worker_exiting()) and run_dir is not None:  # see _worker_exiting
            if not isinstance(e, StopRequested):
                _mark_interrupted(run_dir, reporter.stop_reason())
            reporter.close()
            record.update(status="interrupted", run_dir=str(run_dir), ended=time.time())
            write_json(side, record)  # the driver says "stopped early" if Tune ended the trial
            return
        if run_dir is not None:
            drop_lock(run_dir)  # this Ray worker lives on; the driver writes the run next
        record.update(
            status="failed",
            error=one_line(e),
            error_kind=error_kind(e),
            run_dir=str(run_dir) if run_dir else record.get("run_dir"),
            traceback=traceback.format_exc(limit=20),
            ended=time.time(),
        )
        write_json(side, record)
        reporter.close()
        raise
    reporter.close()
    record.update(status="completed", ended=time.time(), stopped_because=result.stopped_because)
    write_json(side, record)


def _worker_exiting() -> bool:
    """The Ray worker's interpreter is shutting down under the training thread (Tune ended
    the trial, or the sweep was stopped): what fails then (e.g. a checkpoint write refused
    after shutdown) interrupted the run; it did not fail."""
    return not threading.main_thread().is_alive()


def _mark_interrupted(run_dir: Path, why: str) -> None:
    """A trial Tune stopped whose run then failed (the worker torn down under it): the run
    was stopped, not broken; its last checkpoint stands and it resumes from there. Marked
    while this worker still holds the run (when it does), then given back: the driver, which
    waits for the run to be free, reads this as the worker's last word."""
    from encoderlab.runs import Run

    run = Run(run_dir)
    with contextlib.suppress(UserError, OSError):
        run.update(status="interrupted", message=why)
    run.close()
    drop_lock(run_dir)
