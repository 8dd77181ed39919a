"""Sweeps on Ray Tune: ASHA over a tiny model, a failing trial, resume, best.yaml, outputs."""

import csv
import json
import logging
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray.tune", reason="sweeps need Ray Tune: pip install 'encoderlab[sweep]'")

from encoderlab.config import FinetuneConfig, load_config  # noqa: E402
from encoderlab.errors import UserError  # noqa: E402
from encoderlab.runs import Run  # noqa: E402
from encoderlab.sweep import error_kind, load_sweep, run_sweep  # noqa: E402

GOOD = "great fine lovely superb nice happy".split()
BAD = "awful poor sad terrible dull broken".split()
FILL = "the movie plot was and it a very with actor scene music".split()


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (starting it takes seconds); run_sweep joins it."""
    import ray

    from encoderlab.sweep import start_ray

    started = start_ray(None)
    yield
    if started:
        ray.shutdown()


def write_data(root: Path) -> Path:
    rng = random.Random(0)
    path = root / "train.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "target"])
        for i in range(160):
            label = rng.randint(0, 1)
            words = [rng.choice(FILL) for _ in range(rng.randint(3, 8))]
            words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label else BAD))
            w.writerow([i, " ".join(words), label])
    return path


def write_sweep(root: Path, **spec) -> Path:
    base = {
        "name": "tiny",
        "task": {
            "type": "classification",
            "train": str(write_data(root)),
            "label_column": "target",
            "max_len": 16,
        },
        "tokenizer": {"kind": "wordpiece", "vocab_size": 80},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 16},
        "train": {"batch_size": 16, "lr": 3e-3, "epochs": 3, "eval_every": 3, "log_every": 5},
    }
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {
        "base": "base.yaml",
        "space": {"train.lr": {"grid": [3e-3, 1e-3]}, "head.type": {"grid": ["cls", "mean"]}},
        "metric": "valid/acc",
        "mode": "max",
        "search": "grid",
        "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 20},
        "resources": {"cpu": 1},
        "out": str(root / "out"),
        **spec,
    }
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def read_trials(out: Path) -> list[dict]:
    with open(out / "trials.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def trial_records(out: Path) -> str:
    """What each trial recorded (status, error, traceback) and its run's status: the message
    of a failed assertion on the trials' statuses, so a rare failure says why."""
    lines = []
    for f in sorted((out / "trials").glob("*.json")):
        rec = json.loads(f.read_text())
        run_json = Path(rec.get("run_dir") or "/nonexistent") / "run.json"
        run = json.loads(run_json.read_text()) if run_json.is_file() else {}
        lines.append(
            f"{f.stem}: {rec.get('status')} | run {run.get('status')} "
            f"({run.get('stopped_because') or run.get('message')}) | error {rec.get('error')}\n"
            f"{rec.get('traceback') or ''}"
        )
    return "\n".join(lines)


@pytest.mark.slow
def test_asha_sweep_lists_every_trial_and_writes_outputs(tmp_path, ray_local):
    out = run_sweep(write_sweep(tmp_path), say=lambda m: None)
    rows = read_trials(out)
    assert len(rows) == 4, rows
    assert {r["status"] for r in rows} <= {"completed", "stopped early"}, trial_records(out)
    assert {(r["train.lr"], r["head.type"]) for r in rows} == {
        (lr, h) for lr in ("0.003", "0.001") for h in ("cls", "mean")
    }
    assert float(rows[0]["metric"]) >= max(float(r["metric"]) for r in rows)
    for r in rows:  # each trial is an ordinary, finished-or-stopped run with a checkpoint
        run = Run.open(r["run_dir"])
        assert run.info["status"] in ("finished", "stopped early"), run.info
        assert run.latest_checkpoint() is not None, (r, run.info)
        assert Path(r["run_dir"]).parent == out / "runs"
    best = load_config(out / "best.yaml", schema=FinetuneConfig)
    assert str(best.train.lr) == rows[0]["train.lr"] and best.head.type == rows[0]["head.type"]
    assert (out / "plots" / "train.lr.png").is_file() and (
        out / "plots" / "head.type.png"
    ).is_file()
    assert (out / "report" / "report.md").is_file()
    table = (out / "trials.md").read_text()
    assert table.count("| ") > 4 and "valid/acc" in table

    # resuming a finished sweep re-runs nothing: same run directories, untouched
    before = {p: (p / "run.json").stat().st_mtime for p in (out / "runs").iterdir()}
    run_sweep(tmp_path / "sweep.yaml", resume=True, say=lambda m: None)
    after = {p: (p / "run.json").stat().st_mtime for p in (out / "runs").iterdir()}
    assert after.keys() == before.keys()
    assert all(after[p] == before[p] or Run(p).info["status"] == "stopped early" for p in after)
    assert len(read_trials(out)) == 4


def test_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, ray_local):
    path = write_sweep(
        tmp_path,
        # d_model 15 runs with one head, not with two: a failure of that combination alone
        space={"model.d_model": {"grid": [16, 15]}, "model.n_head": {"grid": [1, 2]}},
        scheduler="none",
    )
    seen: list[str] = []  # what Ray Tune logs (to the console) while the sweep runs
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("ray.tune").addHandler(handler)
    try:
        out = run_sweep(path, say=lambda m: None)
    finally:
        logging.getLogger("ray.tune").removeHandler(handler)
    assert not [m for m in seen if "Trial task failed" in m or "did not complete" in m], seen
    rows = {(r["model.d_model"], r["model.n_head"]): r for r in read_trials(out)}
    assert rows["15", "2"]["status"] == "failed"
    assert "not divisible" in rows["15", "2"]["error"] and rows["15", "2"]["run_dir"] == ""
    assert [rows[k]["status"] for k in (("16", "1"), ("16", "2"), ("15", "1"))] == ["completed"] * 3
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["completed"], summary["failed"]) == (3, 1)
    assert load_config(out / "best.yaml", schema=FinetuneConfig).model.d_model in (16, 15)


@pytest.mark.slow
def test_interrupted_sweep_resumes_only_unfinished_trials(tmp_path, ray_local):
    """Ctrl-C a sweep (in a subprocess, on this module's Ray) once one trial has completed;
    --resume finishes the rest without re-running it or duplicating run directories."""
    import ray

    path = write_sweep(
        tmp_path,
        scheduler="none",
        max_concurrent=1,
        space={"train.lr": {"grid": [3e-3, 2e-3, 1e-3]}},
        overrides={"train.epochs": 40, "train.eval_every": 9},
    )
    out = tmp_path / "out"
    code = f"from encoderlab.sweep import run_sweep; run_sweep({str(path)!r}, address={ray.get_runtime_context().gcs_address!r})"
    from conftest import default_sigint

    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, preexec_fn=default_sigint)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            recs = [json.loads(f.read_text()) for f in (out / "trials").glob("*.json")]
            running = [r for r in recs if r["status"] == "running"]
            if any(r["status"] == "completed" for r in recs) and any(
                list((out / "runs").glob(f"{r['name']}-*/checkpoints/step-*/state.json"))
                for r in running
            ):
                break  # one trial done, the next one part-way with a checkpoint
            time.sleep(0.1)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = read_trials(out)
    done = [r for r in first if r["status"] == "completed"]
    cut = [r for r in first if r["status"] == "interrupted"]
    assert len(done) == 1 and len(cut) == 1, first
    assert Run(cut[0]["run_dir"]).latest_checkpoint() is not None
    cut_step = int(cut[0]["steps"])
    stamps = {r["run_dir"]: (Path(r["run_dir"]) / "run.json").stat().st_mtime for r in done}

    run_sweep(path, resume=True, say=lambda m: None)
    rows = read_trials(out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}, rows
    assert len(list((out / "runs").iterdir())) == 3  # one run directory per trial
    for run_dir, stamp in stamps.items():  # finished trials were not run again
        assert (Path(run_dir) / "run.json").stat().st_mtime == stamp
    resumed = Run(cut[0]["run_dir"])  # the interrupted trial continued in its own run directory
    assert resumed.info["status"] == "finished" and resumed.info["steps"] > cut_step > 0
    steps = [r["step"] for r in resumed.metrics() if r["kind"] == "eval"]
    assert steps == sorted(set(steps))  # no evaluation logged twice


def test_sweep_file_errors_are_one_line(tmp_path):
    path = write_sweep(tmp_path, space={"train.lrr": {"grid": [1e-3]}})
    with pytest.raises(UserError, match=r"sweep.yaml: space key 'train.lrr': unknown config"):
        load_sweep(path)
    path = write_sweep(tmp_path, space={"train.lr": {"grid": [1e-3], "uniform": [0, 1]}})
    with pytest.raises(UserError, match=r"sweep.yaml: config key 'space.train.lr'"):
        load_sweep(path)
    path = write_sweep(tmp_path, serach="grid")
    with pytest.raises(UserError, match="unknown config key 'serach'"):
        load_sweep(path)
    # a metric the runs do not report used to fail every trial at its first evaluation
    path = write_sweep(tmp_path, metric="valid/accuracy")
    with pytest.raises(UserError, match=r"metric 'valid/accuracy': the runs report valid/acc, "):
        load_sweep(path)
    assert load_sweep(write_sweep(tmp_path, metric="valid/macro_f1")).spec.metric
    # a searched value no trial can run with used to fail its trials one by one (exit 0)
    path = write_sweep(tmp_path, space={"train.lr": {"grid": [1e-3, -1.0]}})
    with pytest.raises(UserError, match=r"space 'train.lr': no trial can run with -1.0 \("):
        load_sweep(path)
    path = write_sweep(tmp_path, space={"train.lr": {"uniform": [-1.0, -0.5]}})
    with pytest.raises(UserError, match="no trial of this space has a valid config"):
        load_sweep(path)
    # a value only some combinations allow stays: those trials fail on their own
    space = {"model.d_model": {"grid": [16, 15]}, "model.n_head": {"grid": [1, 2]}}
    assert load_sweep(write_sweep(tmp_path, space=space)).spec.space
    # list values (unhashable) are judged too
    space = {"head.cnn_kernels": {"grid": [[3, 4], [5]]}, "head.type": {"grid": ["cnn"]}}
    assert load_sweep(write_sweep(tmp_path, space=space)).spec.space


def test_a_sweep_whose_every_trial_failed_exits_2_after_its_table(tmp_path, ray_local):
    path = write_sweep(tmp_path, scheduler="none", space={"train.lr": {"grid": [1e-3]}})
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    base["task"]["train"] = str(tmp_path / "gone.csv")  # not a config error: found at run time
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    with pytest.raises(UserError, match="every trial failed"):
        run_sweep(path, say=lambda m: None)
    out = tmp_path / "out"
    assert read_trials(out)[0]["status"] == "failed" and not (out / "best.yaml").exists()


def test_trials_checkpoint_at_every_evaluation_unless_the_sweep_says(tmp_path):
    """Tune stops a trial at an evaluation, and an interrupted trial resumes from its last
    full checkpoint: trials write one at each evaluation unless the sweep sets it."""
    from encoderlab.sweep.trial import trial_config

    values = {"train.lr": 1e-3, "head.type": "cls"}
    sweep = load_sweep(write_sweep(tmp_path))
    assert trial_config(sweep, values, "t").train.checkpoint_at_eval is True
    sweep = load_sweep(write_sweep(tmp_path, overrides={"train.checkpoint_at_eval": False}))
    assert trial_config(sweep, values, "t").train.checkpoint_at_eval is False


def test_error_kinds():
    import torch

    assert error_kind(torch.OutOfMemoryError("CUDA out of memory")) == "out of memory"
    assert error_kind(MemoryError()) == "out of memory"
    assert error_kind(UserError("d_model=15 is not divisible by n_head=2")) == "bad config"
    assert error_kind(RuntimeError("loss was not finite for 5 steps in a row")) == "nan loss"
    assert error_kind(ValueError("something else")) == "error"


@pytest.mark.slow
def test_example_sweep_on_disaster_tweets(tmp_path, ray_local):
    """The shipped 4-trial ASHA example on the real data set, as CI runs it (< 2 min)."""
    from conftest import shared

    shared("disaster_tweets", "train.csv")
    root = Path(__file__).resolve().parents[1]
    spec = yaml.safe_load((root / "examples" / "disaster_tweets" / "sweep.yaml").read_text())
    spec["base"] = str(root / "configs" / "disaster_tweets.yaml")
    spec["out"] = str(tmp_path / "out")
    spec["time_budget_min"] = 60  # the example's 10 min can cut the grid short on a busy machine
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    t0 = time.perf_counter()
    out = run_sweep(path, say=lambda m: None)
    rows = read_trials(out)
    assert len(rows) == 4 and all(r["status"] in ("completed", "stopped early") for r in rows)
    assert float(rows[0]["metric"]) > 0.6
    report = (out / "report" / "report.md").read_text()
    assert all(Path(r["run_dir"]).name in report for r in rows)
    print(f"example sweep: {time.perf_counter() - t0:.0f}s, best {rows[0]['metric']}")


def test_a_report_tune_no_longer_takes_stops_the_trial_at_its_next_evaluation(
    tmp_path, monkeypatch
):
    """Tune can end a trial between two evaluations (its session gone, so `tune.report`
    fails with something other than SystemExit): the reporter must not die silently and
    leave the run training to its end; the next evaluation stops it."""
    from ray import tune

    from encoderlab.sweep.trial import _Reporter
    from encoderlab.train import StopRequested

    def no_session(payload):
        raise AttributeError("'NoneType' object has no attribute 'report'")

    monkeypatch.setattr(tune, "report", no_session)
    sweep = load_sweep(write_sweep(tmp_path))
    reporter = _Reporter(sweep, lambda: None)
    reporter.on_eval(3, {"valid/acc": 0.5})
    reporter.thread.join(timeout=10)
    assert reporter.stopped.is_set()
    with pytest.raises(StopRequested):
        reporter.on_eval(6, {"valid/acc": 0.6})
    reporter.close()
