"""Sweeps on Ray Tune: ASHA over a tiny model, a failing trial, resume, best.yaml, outputs."""

import csv
import json
import logging
import os
import random
import re
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
    said: list[str] = []
    out = run_sweep(write_sweep(tmp_path), say=said.append)
    rows = read_trials(out)
    assert len(rows) == 4, rows
    progress = [m for m in said if re.match(r"trial \d/4 \(", m)]  # one line per trial
    assert [m[:9] for m in progress] == [f"trial {k}/4" for k in (1, 2, 3, 4)], said
    assert f"best {float(rows[0]['metric']):.4f}" in progress[-1], (progress, rows)
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


@pytest.mark.slow  # a real Ray sweep; the default tier keeps one (every trial failed)
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

    # --resume continues the sweep as it started: Tune ignored an edited sweep file, and
    # trials of two configurations were ranked together (sweep.yaml rewritten to the new one)
    from encoderlab.sweep.folder import check_resume

    spec = yaml.safe_load(path.read_text())
    saved = (out / "sweep.yaml").read_text()
    path.write_text(yaml.safe_dump({**spec, "overrides": {"train.max_steps": 3}, "num_samples": 2}))
    with pytest.raises(
        UserError,
        match=r"sweep.yaml: num_samples, overrides.train.max_steps changed since the sweep in "
        r".*/out started; --resume continues it as it started: undo the change, or give the "
        r"changed sweep a new `out:` \(or a new `name:` where out: is not set\)$",
    ):
        run_sweep(path, resume=True, say=lambda m: None)
    path.write_text(yaml.safe_dump(spec))
    base = tmp_path / "base.yaml"
    base_text = base.read_text()
    base.write_text(base_text.replace("epochs: 3", "epochs: 4"))
    with pytest.raises(UserError, match=r"sweep.yaml: the base config .*base.yaml changed since"):
        run_sweep(path, resume=True, say=lambda m: None)
    base.write_text(base_text)
    # the trials' runs are named after the sweep: renamed, --resume would start them over
    path.write_text(yaml.safe_dump({**spec, "name": "renamed"}))
    with pytest.raises(
        UserError, match=r"sweep.yaml: name changed since the sweep in .* new `out:`$"
    ):
        run_sweep(path, resume=True, say=lambda m: None)
    path.write_text(yaml.safe_dump(spec))
    check_resume(load_sweep(path))  # as it started: it resumes
    assert (out / "sweep.yaml").read_text() == saved


@pytest.mark.slow
def test_interrupted_sweep_resumes_only_unfinished_trials(tmp_path, ray_local):
    """Ctrl-C a sweep (`encoderlab sweep` in a subprocess, on this module's Ray) once one
    trial has completed: exit 130 with the --resume line (it exited 0, "N trials: N
    completed"); --resume finishes the rest without re-running it or duplicating run
    directories."""
    import ray

    path = write_sweep(
        tmp_path,
        scheduler="none",
        max_concurrent=1,
        space={"train.lr": {"grid": [3e-3, 2e-3, 1e-3]}},
        overrides={"train.epochs": 40, "train.eval_every": 9},
    )
    out = tmp_path / "out"
    address = ray.get_runtime_context().gcs_address
    code = (
        f"from encoderlab.cli import main; main(['sweep', {str(path)!r}, '--address', {address!r}])"
    )
    from conftest import default_sigint

    err = open(tmp_path / "stderr.txt", "w")  # a file: Ray's logs would fill a pipe
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, preexec_fn=default_sigint, stderr=err
    )
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
        err.close()
    last = (tmp_path / "stderr.txt").read_text().strip().splitlines()[-1]
    assert (proc.returncode, last) == (
        130,
        f"interrupted; continue with `encoderlab sweep {path} --resume`",
    )
    first = read_trials(out)
    done = [r for r in first if r["status"] == "completed"]
    cut = [r for r in first if r["status"] == "interrupted"]
    assert len(done) == 1 and len(cut) == 1, first
    assert Run(cut[0]["run_dir"]).latest_checkpoint() is not None
    cut_step = int(cut[0]["steps"])
    stamps = {r["run_dir"]: (Path(r["run_dir"]) / "run.json").stat().st_mtime for r in done}

    said: list[str] = []
    run_sweep(path, resume=True, say=said.append)
    rows = read_trials(out)
    assert len(rows) == 3 and {r["status"] for r in rows} == {"completed"}, rows
    # the resumed sweep counts on from the trial it had finished, in this command's output
    progress = [m[:9] for m in said if re.match(r"trial \d/3 \(", m)]
    assert progress == ["trial 2/3", "trial 3/3"], said
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
    # what the sweep sets for every trial: searching it ran with no effect
    path = write_sweep(tmp_path, space={"runs_dir": {"choice": ["a", "b"]}})
    with pytest.raises(UserError, match="space key 'runs_dir': the sweep sets runs_dir"):
        load_sweep(path)
    path = write_sweep(tmp_path, overrides={"name": "x"})
    with pytest.raises(UserError, match="overrides key 'name': the sweep names every trial"):
        load_sweep(path)
    path = write_sweep(tmp_path, out="  ")  # it read as the default folder, without a word
    with pytest.raises(UserError, match=r"sweep.yaml: .*'out'.*is empty; give a folder"):
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
    # fractions on a whole-number field failed every trial after Ray started
    path = write_sweep(tmp_path, space={"train.batch_size": {"uniform": [8, 32]}})
    with pytest.raises(
        UserError, match=r"'train.batch_size': uniform: draws fractions .* randint: \[8, 32\]"
    ):
        load_sweep(path)
    # a section that may be null (self_pretrain) is searched like any other
    space = {"self_pretrain.steps": {"choice": [2, 3]}, "train.lr": {"loguniform": [1e-4, 1e-2]}}
    assert load_sweep(write_sweep(tmp_path, space=space, search="random")).spec.space


@pytest.mark.slow  # 6-19 s (three subprocesses or a Ray start): the 5-minute bar
def test_a_sweep_whose_every_trial_failed_exits_2_after_its_table(tmp_path, ray_local):
    path = write_sweep(
        tmp_path,
        scheduler="none",
        space={"train.lr": {"grid": [1e-3]}},
        overrides={"train.epochs": 1},
    )
    data = tmp_path / "train.csv"
    good = data.read_text()
    data.write_text(good.replace("target", "label"))  # not a config error: found at run time
    said: list[str] = []
    with pytest.raises(UserError, match="every trial failed"):
        run_sweep(path, say=said.append)
    out = tmp_path / "out"
    assert read_trials(out)[0]["status"] == "failed" and not (out / "best.yaml").exists()
    assert any(m.startswith("trial 1/1 (train.lr=0.001): failed;") for m in said), said

    # "fix the base config or the space, then run the sweep again": that sweep left nothing
    # to resume, so running it again starts it over (its rerun used to be refused)
    data.write_text(good)
    said.clear()
    run_sweep(path, say=said.append)
    assert any("left no result" in m and "starting it over" in m for m in said), said
    rows = read_trials(out)
    assert [r["status"] for r in rows] == ["completed"], trial_records(out)
    assert [p.name for p in (out / "runs").iterdir()] == [Path(rows[0]["run_dir"]).name]
    with pytest.raises(UserError, match="a sweep already ran there; use --resume"):
        run_sweep(path, say=lambda m: None)  # now it has a result to keep


def test_trials_checkpoint_at_every_evaluation_unless_the_sweep_says(tmp_path):
    """Tune stops a trial at an evaluation, and an interrupted trial resumes from its last
    full checkpoint: trials write one at each evaluation unless the sweep sets it."""
    from encoderlab.sweep.trial import trial_config

    values = {"train.lr": 1e-3, "head.type": "cls"}
    sweep = load_sweep(write_sweep(tmp_path))
    assert trial_config(sweep, values, "t").train.checkpoint_at_eval is True
    sweep = load_sweep(write_sweep(tmp_path, overrides={"train.checkpoint_at_eval": False}))
    assert trial_config(sweep, values, "t").train.checkpoint_at_eval is False


def test_a_sweep_that_gives_tokenizer_path_expects_the_bases_tokenizer_section_unused(tmp_path):
    """The base's tokenizer section (written to train one) was named as unused in every trial
    when the sweep's overrides pointed tokenizer.path at a trained tokenizer."""
    from encoderlab.sweep.trial import trial_config
    from encoderlab.tokenizer import unused_beside_path

    values = {"train.lr": 1e-3}
    path = write_sweep(tmp_path, overrides={"tokenizer.path": str(tmp_path / "tok")})
    assert unused_beside_path(trial_config(load_sweep(path), values, "t").tokenizer) is None
    path = write_sweep(
        tmp_path, overrides={"tokenizer.path": str(tmp_path / "tok"), "tokenizer.lowercase": True}
    )
    said = unused_beside_path(trial_config(load_sweep(path), values, "t").tokenizer)
    assert said is not None and said.startswith("warning: tokenizer.lowercase=true not used")


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


@pytest.mark.parametrize("exiting", [True, False])
def test_a_trial_whose_worker_exits_under_it_is_interrupted_not_failed(
    tmp_path, monkeypatch, exiting
):
    """A sweep stopped with Ctrl-C ends its Ray workers while their training threads run on:
    what then fails in the run (a checkpoint write refused after interpreter shutdown) made
    the trial "failed", so --resume skipped it. While the worker exits it is "interrupted" (its
    run resumable, given back); an error in a worker that lives on is still a failure."""
    from ray import tune

    import encoderlab.finetuning as finetuning
    import encoderlab.sweep.trial as trial

    class Context:
        def get_trial_id(self):
            return "abc_00000"

    real_finetune = finetuning.finetune

    def finetune_then_shutdown(cfg, say, on_eval):
        def eval_then_refused(step, metrics):
            if step >= 6:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown")
            on_eval(step, metrics)

        return real_finetune(cfg, say=say, on_eval=eval_then_refused)

    monkeypatch.setattr(tune, "get_context", Context)
    monkeypatch.setattr(tune, "report", lambda payload: None)
    monkeypatch.setattr(finetuning, "finetune", finetune_then_shutdown)
    monkeypatch.setattr(trial, "_worker_exiting", lambda: exiting)
    monkeypatch.setattr(trial._Reporter, "ended", lambda self: False)  # Tune said nothing
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path))
    (sweep.out / "trials").mkdir(parents=True)
    values = {"train.lr": 3e-3, "head.type": "cls"}
    if exiting:
        trial.run_trial(values, sweep)
    else:
        with pytest.raises(RuntimeError, match="after interpreter shutdown"):
            trial.run_trial(values, sweep)
    record = json.loads((sweep.out / "trials" / "abc_00000.json").read_text())
    run = Run(record["run_dir"])
    want = "interrupted" if exiting else "failed"
    assert (record["status"], run.info["status"]) == (want, want), record
    run.update(checked=True)  # given back: this process may write it again


def test_sweep_file_refuses_what_ray_would_run_otherwise(tmp_path):
    """grid: under random/optuna ran one trial of the grid; cpu -1 reached Ray (a traceback,
    then a resumed trial without its values); time_budget_min -1 ran no trial and 0 meant no
    budget; randint [16, 16] was refused although both ends are included."""
    from encoderlab.sweep.execute import _param_space

    grid = {"train.lr": {"grid": [1e-3, 3e-3]}, "head.type": {"grid": ["cls", "mean"]}}
    for search in ("random", "optuna"):
        with pytest.raises(
            UserError,
            match=r"sweep.yaml: space 'head.type': grid: is for search: grid \(every "
            rf"combination\); with search: {search} write choice: \[cls, mean\]$",
        ):
            load_sweep(write_sweep(tmp_path, search=search, space=grid))
    choice = {"train.lr": {"choice": [1e-3, 3e-3]}}
    assert load_sweep(write_sweep(tmp_path, search="random", space=choice)).spec.space
    for key, value, why in (
        ("cpu", -1, "must be > 0"),
        ("cpu", 0, "must be > 0"),
        ("gpu", -1, "must be >= 0"),
        ("gpu", float("nan"), "must be >= 0"),
    ):
        with pytest.raises(UserError, match=rf"sweep.yaml: config key 'resources.{key}': {why}"):
            load_sweep(write_sweep(tmp_path, resources={key: value}))
    for budget in (-1, 0):
        with pytest.raises(UserError, match=r"config key 'time_budget_min': must be > 0 minutes"):
            load_sweep(write_sweep(tmp_path, time_budget_min=budget))
    sweep = load_sweep(write_sweep(tmp_path, space={"train.batch_size": {"randint": [16, 16]}}))
    assert _param_space(sweep)["train.batch_size"].sample() == 16
    with pytest.raises(UserError, match=r"randint: need lo <= hi \(got \[16, 8\]\)"):
        load_sweep(write_sweep(tmp_path, space={"train.batch_size": {"randint": [16, 8]}}))


def test_a_searched_or_overridden_thread_count_wins_over_resources_cpu(tmp_path):
    from encoderlab.sweep.trial import trial_config

    values = {"train.lr": 1e-3, "head.type": "cls"}
    space = {"train.threads": {"grid": [1, 2]}}
    sweep = load_sweep(write_sweep(tmp_path, space=space, resources={"cpu": 1}))
    assert trial_config(sweep, {"train.threads": 2}, "t").train.threads == 2
    sweep = load_sweep(write_sweep(tmp_path, overrides={"train.threads": 2}))
    assert trial_config(sweep, values, "t").train.threads == 2
    sweep = load_sweep(write_sweep(tmp_path, resources={"cpu": 2}))
    assert trial_config(sweep, values, "t").train.threads == 2  # otherwise resources.cpu


def test_a_trial_without_its_values_fails_instead_of_running_the_base_config(tmp_path, monkeypatch):
    from ray import tune

    from encoderlab.sweep import run_trial

    class Context:
        def get_trial_id(self) -> str:
            return "ab12c_00000"

    monkeypatch.setattr(tune, "get_context", Context)
    sweep = load_sweep(write_sweep(tmp_path))
    with pytest.raises(
        UserError, match=r"trial ab12c_00000 got no value for head.type, train.lr from Ray Tune"
    ):
        run_trial({}, sweep)
    rec = json.loads((tmp_path / "out" / "trials" / "ab12c_00000.json").read_text())
    assert rec["status"] == "failed" and "got no value" in rec["error"], rec
    assert not (tmp_path / "out" / "runs").exists()


def _no_ray(monkeypatch) -> None:
    import encoderlab.sweep.execute as execute

    def start_ray(address):
        raise AssertionError(f"Ray was started (address {address})")

    monkeypatch.setattr(execute, "start_ray", start_ray)


def test_what_a_sweep_cannot_run_is_refused_before_ray_starts(tmp_path, monkeypatch):
    """More CPUs or GPUs than this machine has (Ray waited forever, or the time budget ended
    the sweep with 0 trials), an address nothing listens on (minutes of ray.init retries,
    and sweep.yaml left behind), a missing data file (every trial failed): one line, before
    Ray starts, and nothing written."""
    import torch

    _no_ray(monkeypatch)
    out = tmp_path / "out"
    cores = os.cpu_count() or 1
    with pytest.raises(
        UserError,
        match=rf"sweep.yaml: resources.cpu: {cores + 1} per trial, but this machine has {cores} CPU",
    ):
        run_sweep(write_sweep(tmp_path, resources={"cpu": cores + 1}), say=lambda m: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match=r"resources.gpu: 1 per trial, but torch sees 0 GPUs"):
        run_sweep(write_sweep(tmp_path, resources={"gpu": 1}), say=lambda m: None)
    path = write_sweep(tmp_path)
    t0 = time.monotonic()
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        with pytest.raises(
            UserError, match=rf"^--address {re.escape(address)}: nothing answers at 127.0.0.1:1 "
        ):
            run_sweep(path, address=address, say=lambda m: None)
    assert time.monotonic() - t0 < 30
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    base["task"]["train"] = str(tmp_path / "gone.csv")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    with pytest.raises(UserError, match=r"base.yaml: task.train=.*gone.csv: no such file"):
        run_sweep(path, say=lambda m: None)
    assert not out.exists()
    # self_pretrain's corpus files too
    base["task"]["train"] = str(write_data(tmp_path))
    base["self_pretrain"] = {"steps": 2, "text": ["task", str(tmp_path / "gone.txt")]}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    with pytest.raises(UserError, match=r"base.yaml: self_pretrain.text=.*gone.txt: no such file"):
        run_sweep(path, say=lambda m: None)
    assert not out.exists()


def test_a_sweep_writes_only_into_a_folder_of_its_own(tmp_path, monkeypatch):
    """`out:` at the folder of the user's sweep.yaml overwrote it (and would have overwritten
    best.yaml, trials.csv, report/ ...): a folder with files no sweep wrote is refused."""
    _no_ray(monkeypatch)
    path = write_sweep(tmp_path, out=str(tmp_path))
    mine = path.read_text()
    with pytest.raises(
        UserError,
        match=rf"sweep.yaml: out: {re.escape(str(tmp_path))} holds files no sweep wrote; set "
        r"`out:` to a new or empty folder$",
    ):
        run_sweep(path, say=lambda m: None)
    assert path.read_text() == mine
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match=r"out: .*a-file is a file"):
        run_sweep(write_sweep(tmp_path, out=str(tmp_path / "a-file")), say=lambda m: None)


@pytest.mark.slow  # a real Ray sweep; the default tier keeps one (every trial failed)
def test_a_trial_asha_ran_to_max_t_is_completed(tmp_path, ray_local):
    """ASHA stops every trial that reaches max_t: those were all "stopped early"."""
    space = {"train.lr": {"grid": [3e-3]}}
    scheduler = {"type": "asha", "grace_period": 1, "reduction_factor": 2, "max_t": 2}
    out = run_sweep(write_sweep(tmp_path, space=space, scheduler=scheduler), say=lambda m: None)
    [row] = read_trials(out)
    assert row["status"] == "completed" and int(row["evals"]) >= 2, trial_records(out)
    info = Run(row["run_dir"]).info
    assert "reached the sweep's scheduler.max_t (2 evaluations)" in info["stopped_because"], info


@pytest.mark.slow
def test_a_time_budget_that_ends_a_grid_sweep_says_what_never_ran(tmp_path, ray_local):
    """With scheduler none, the budget (not "the sweep's scheduler (none)") stopped the trial;
    the grid points it left were not counted anywhere."""
    path = write_sweep(
        tmp_path,
        scheduler="none",
        max_concurrent=1,
        time_budget_min=0.3,
        space={"train.lr": {"grid": [3e-3, 2e-3, 1e-3]}},
        overrides={"train.epochs": 3000},  # far longer than the budget
    )
    said: list[str] = []
    out = run_sweep(path, say=said.append)
    rows = read_trials(out)
    assert [r["status"] for r in rows] == ["stopped early"], trial_records(out)
    why = Run(rows[0]["run_dir"]).info["stopped_because"]
    assert why.startswith("stopped by the sweep's time budget (time_budget_min: 0.3) at step")
    assert json.loads((out / "summary.json").read_text())["never_ran"] == 2
    note = "2 grid points never ran: the time budget (time_budget_min: 0.3) ended the sweep first"
    assert any(note in m for m in said), said
    assert note in (out / "trials.md").read_text()


def test_ctrl_c_asks_tune_to_stop_and_a_second_one_stops_at_once(monkeypatch):
    """Tune's own SIGINT handler made an interrupted sweep return as if it had ended (exit 0,
    "N trials: N completed"): the sweep's handler asks Tune to stop through SIGUSR1 (Tune saves
    its state) and remembers it was interrupted; a second Ctrl-C stops at once."""
    from encoderlab.sweep.execute import _StopOnSignal

    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    tune_heard: list[int] = []
    with _StopOnSignal(lambda m: None) as stop:
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
        with pytest.raises(KeyboardInterrupt):  # Tune does not listen yet: stop now
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        assert not stop.hit
        signal.signal(signal.SIGUSR1, lambda s, f: tune_heard.append(s))  # as Tune's fit does
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while not tune_heard and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.hit and tune_heard == [signal.SIGUSR1]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert {s: signal.getsignal(s) for s in before} == before
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ


def test_an_interrupted_sweep_lists_the_trials_tune_had_not_started(tmp_path):
    """A trial Tune was starting when Ctrl-C came has no record yet, and the grid points it
    had not made were nowhere: the table lists the one and counts the others."""
    from encoderlab.sweep import collect, write_outputs

    sweep = load_sweep(write_sweep(tmp_path))
    sweep.out.mkdir()
    values = {"train.lr": 1e-3, "head.type": "cls"}
    rows = collect(
        sweep,
        {"ab12c_00001": "unfinished", "ab12c_00002": "ok"},  # 00002: ended before it started
        {"ab12c_00001": values, "ab12c_00002": values},
    )
    assert [(r["trial"], r["status"], r["train.lr"]) for r in rows] == [
        ("ab12c_00001", "interrupted", 1e-3)
    ]
    said: list[str] = []
    write_outputs(sweep, rows, said.append, never_ran=3, interrupted=True)
    counts = "1 trials: 0 completed, 0 stopped early, 0 failed, 1 interrupted; 3 grid points "
    assert counts + "not started yet (--resume runs them)" in said, said
    assert not [m for m in said if "--resume`" in m]  # the command's last line says it
    assert json.loads((sweep.out / "summary.json").read_text())["never_ran"] == 3
    assert "3 grid points not started yet" in (sweep.out / "trials.md").read_text()


def test_ctrl_c_before_the_sweep_started_says_to_run_it_again(tmp_path, monkeypatch, capsys):
    """It said "continue a run with --resume RUN", which is no way to go on with a sweep."""
    import encoderlab.sweep.execute as execute
    from conftest import run_cli

    def ctrl_c(address):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "start_ray", ctrl_c)
    path = write_sweep(tmp_path)
    assert run_cli("sweep", path) == 130
    assert capsys.readouterr().err.strip() == (
        f"interrupted before the sweep started; run `encoderlab sweep {path}` again"
    )
    assert not (tmp_path / "out").exists()


def _fake_trial(sweep, trial_id: str, status: str, accs: list[float]) -> None:
    """A trial's record and a run directory with its evaluations, as a worker leaves them."""
    from encoderlab.config import save_config
    from encoderlab.sweep.trial import trial_config

    values = {"train.lr": 1e-3, "head.type": "cls"}
    run_dir = sweep.out / "runs" / trial_id
    run_dir.mkdir(parents=True)
    save_config(trial_config(sweep, values, trial_id), run_dir / "config.yaml")
    run_status = {"completed": "finished"}.get(status, status)
    (run_dir / "run.json").write_text(json.dumps({"name": trial_id, "status": run_status}))
    evals = [{"kind": "eval", "step": 3 * i, "valid/acc": a} for i, a in enumerate(accs, 1)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    record = {"trial_id": trial_id, "name": trial_id, "values": values, "status": status}
    record |= {"run_dir": str(run_dir), "error": "NonFiniteLoss: loss was not finite"}
    (sweep.out / "trials").mkdir(exist_ok=True)
    (sweep.out / "trials" / f"{trial_id}.json").write_text(json.dumps(record))


def test_a_failed_trial_is_ranked_last_and_never_best(tmp_path):
    """A trial whose loss went NaN after a good evaluation ranked first and was "best" (its
    config in best.yaml diverges): failed trials rank after every other, whatever they hit."""
    from encoderlab.sweep import collect, write_outputs

    sweep = load_sweep(write_sweep(tmp_path, scheduler="none"))
    _fake_trial(sweep, "ab12c_00000", "failed", [0.9, 0.5])
    _fake_trial(sweep, "ab12c_00001", "completed", [0.6, 0.7])
    rows = collect(sweep, {"ab12c_00000": "error", "ab12c_00001": "ok"})
    assert [(r["trial"], r["status"]) for r in rows] == [
        ("ab12c_00001", "completed"),
        ("ab12c_00000", "failed"),
    ]
    said: list[str] = []
    write_outputs(sweep, rows, said.append)
    assert any(m.startswith("best: valid/acc 0.7000") for m in said), said
    assert json.loads((sweep.out / "summary.json").read_text())["best"]["trial"] == "ab12c_00001"


def test_best_yaml_of_a_self_pretraining_sweep_takes_the_best_trials_encoder(tmp_path):
    """best.yaml kept self_pretrain:, so fine-tuning it pretrained a new encoder under its new
    name (with minutes:, another one) instead of the one the best trial was scored with."""
    from encoderlab.config import load_config, save_config
    from encoderlab.sweep import collect, write_outputs

    path = write_sweep(tmp_path, scheduler="none", overrides={"self_pretrain.steps": 3})
    sweep = load_sweep(path)
    _fake_trial(sweep, "ab12c_00000", "completed", [0.6, 0.7])
    trial = sweep.out / "runs" / "ab12c_00000"
    mlm = str(sweep.out / "runs" / "ab12c_00000-mlm-20261203-120000")
    cfg = load_config(trial / "config.yaml", schema=FinetuneConfig)
    assert cfg.self_pretrain is not None and cfg.self_pretrain.steps == 3
    sp = cfg.self_pretrain.model_copy(update={"run": mlm})
    save_config(cfg.model_copy(update={"init": mlm, "self_pretrain": sp}), trial / "config.yaml")
    write_outputs(sweep, collect(sweep, {"ab12c_00000": "ok"}), lambda m: None)
    best = load_config(sweep.out / "best.yaml", schema=FinetuneConfig)
    assert best.init == mlm and best.self_pretrain is None and best.name == "tiny-best"


def test_mode_follows_the_metric_unless_given(tmp_path, capsys, monkeypatch):
    """`mode` defaulted to max whatever the metric: `metric: valid/loss` ranked the trial of
    the highest loss first and called it best. Now it defaults as train.early_stop_mode does,
    and a mode given against its metric is a warning."""
    import encoderlab.sweep.execute as execute
    from conftest import run_cli

    path = write_sweep(tmp_path, metric="valid/loss")
    spec = yaml.safe_load(path.read_text())
    del spec["mode"]
    path.write_text(yaml.safe_dump(spec))
    assert load_sweep(path).spec.mode == "min"
    spec["metric"] = "valid/acc"
    path.write_text(yaml.safe_dump(spec))
    assert load_sweep(path).spec.mode == "max"

    def stop(sweep, resume, address, say):
        raise UserError("stopped here")

    monkeypatch.setattr(execute, "_run_sweep", stop)
    spec |= {"metric": "valid/loss", "mode": "max"}
    path.write_text(yaml.safe_dump(spec))
    assert run_cli("sweep", path) == 2
    err = capsys.readouterr().err
    assert f"warning: {path}: mode: max ranks the highest valid/loss best; for mode: min" in err


def test_a_sweep_under_torchrun_is_refused(tmp_path, monkeypatch):
    """`torchrun -m encoderlab sweep` ran one whole sweep per process into one folder: twice
    the trials, each table listing both sweeps' trials with each other's run directories."""
    _no_ray(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    path = write_sweep(tmp_path)
    with pytest.raises(UserError, match=r"sweep.yaml: a sweep runs its own trials .* without "):
        run_sweep(path, say=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_a_second_sweep_in_the_folder_of_a_running_one_is_refused(tmp_path, monkeypatch):
    """A second `encoderlab sweep` on the folder of one still running (no trial finished
    yet) took it for a sweep that left no result: it deleted the running sweep's trials and
    runs, then ran the grid again beside it (6 trials in the table of a 3-point grid)."""
    _no_ray(monkeypatch)
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    (out / "trials").mkdir(parents=True)
    (out / ".encoderlab-sweep").write_text("encoderlab sweep tiny\n")
    (out / "trials" / "ab12c_00000.json").write_text(json.dumps({"status": "running"}))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from encoderlab.runs import take_lock; "
            f"take_lock({str(out)!r}); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for resume in (False, True):
            with pytest.raises(UserError, match=r"out: in use by another encoderlab process"):
                run_sweep(path, resume=resume, say=lambda m: None)
        assert (out / "trials" / "ab12c_00000.json").is_file()
    finally:
        holder.kill()
        holder.wait()


def test_a_resumed_sweep_runs_its_trials_where_it_started(tmp_path, monkeypatch):
    """--resume from another folder ran the trials there: the base config's relative data path
    named another file (or none). The start folder is in the sweep's marker; the data check
    and the trials go by it."""
    from encoderlab.sweep.folder import MARKER, claim, let_go, restore_cwd
    from encoderlab.sweep.spec import check_data_files

    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir(), elsewhere.mkdir()
    path = write_sweep(start)
    data = Path(yaml.safe_load((start / "base.yaml").read_text())["task"]["train"])
    (start / "data").mkdir()
    data.rename(start / "data" / "train.csv")
    base = yaml.safe_load((start / "base.yaml").read_text())
    base["task"]["train"] = "data/train.csv"  # relative: to the folder the sweep starts in
    (start / "base.yaml").write_text(yaml.safe_dump(base))
    monkeypatch.chdir(start)
    sweep = load_sweep(path)
    check_data_files(sweep)
    claim(sweep, False, lambda m: None)
    let_go(sweep)
    assert (sweep.out / MARKER).read_text().splitlines()[1] == f"cwd: {start.resolve()}"

    monkeypatch.chdir(elsewhere)
    resumed = load_sweep(path)
    with pytest.raises(UserError, match=r"data/train.csv: no such file \(from .*elsewhere, "):
        check_data_files(resumed)  # before --resume knows where the sweep started
    said: list[str] = []
    restore_cwd(resumed, said.append)
    assert resumed.cwd == start.resolve() and said == [
        f"the trials run in {start.resolve()}, where the sweep started"
    ]
    check_data_files(resumed)  # found from the start folder

    (sweep.out / MARKER).write_text("encoderlab sweep tiny\n")  # a sweep from before: as it was
    before = load_sweep(path)
    restore_cwd(before, said.append)
    assert before.cwd == elsewhere.resolve()
    (sweep.out / MARKER).write_text(f"encoderlab sweep tiny\ncwd: {tmp_path / 'gone'}\n")
    with pytest.raises(UserError, match=r"started in .*gone, which no longer exists"):
        restore_cwd(load_sweep(path), said.append)


def test_a_resumed_trial_counts_the_seconds_it_ran_not_the_pause(tmp_path):
    """A trial interrupted at 60 s and resumed an hour later showed a wall time of an hour."""
    from encoderlab.sweep.tables import _wall
    from encoderlab.sweep.trial import _restart_clock

    t = time.time()
    record = {"started": t - 3660, "ended": t - 3600}  # ran 60 s, stopped an hour ago
    _restart_clock(record, None)
    assert record["ran_s"] == pytest.approx(60) and "ended" not in record
    assert record["started"] == pytest.approx(time.time(), abs=1)
    record["ended"] = record["started"] + 30
    assert _wall(record, None) == pytest.approx(90)
    # killed without an end: the run's last update ends the attempt
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    os.utime(run / "run.json", (t - 100, t - 100))
    record = {"started": t - 140, "ran_s": 5.0}
    _restart_clock(record, run)
    assert record["ran_s"] == pytest.approx(45)


def _trial(status: str, best: float | None = None, **config):
    from types import SimpleNamespace

    analysis = {"score": {"max": best, "min": best}} if best is not None else {}
    return SimpleNamespace(status=status, metric_analysis=analysis, config=config)


def test_a_sweep_says_each_finished_trial_its_best_and_what_is_left(monkeypatch):
    """Off a terminal, a line per finished trial: how many of those planned, its best
    evaluation (as the table ranks it), the best so far, the time spent and to go. A sweep
    was minutes of silence (Ray's table is off)."""
    from encoderlab.sweep import progress as progress_module
    from encoderlab.sweep.progress import SweepProgress

    clock = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock[0])
    said: list[str] = []
    progress_module.say_with(said.append)
    p = SweepProgress(4, "valid/acc", "max", budget_s=600)
    p.setup()
    a, b = _trial("RUNNING", 0.71, lr=0.001), _trial("RUNNING", 0.75, lr=0.003)
    waiting = [_trial("PENDING", lr=0.01), _trial("PENDING", lr=0.03)]
    trials = [a, b, *waiting]
    clock[0] = 130.0
    p.on_trial_complete(0, trials, a)  # Tune calls this while its list still says RUNNING
    a.status = "TERMINATED"
    assert said == [  # the best so far counts the running trials' evaluations too
        "trial 1/4 (lr=0.001): valid/acc 0.7100; best 0.7500; 0:00:30 elapsed, ETA 0:01:30"
    ]
    clock[0] = 160.0
    p.on_trial_error(0, trials, waiting[0])
    assert said[-1] == ("trial 2/4 (lr=0.01): failed; best 0.7500; 0:01:00 elapsed, ETA 0:01:00")
    assert p.summary(trials) == (1, 1, 0.75)


def test_a_sweeps_eta_never_passes_its_time_budget_and_a_min_metric_ranks_low_first():
    from encoderlab.sweep.progress import SweepProgress

    p = SweepProgress(10, "valid/loss", "min", budget_s=300)
    assert p.eta_s(done=0, elapsed=100) == 200  # no pace yet: the budget's rest
    assert p.eta_s(done=1, elapsed=100) == 200  # the pace says 900 s: the budget ends first
    assert SweepProgress(10, "m", "max", None).eta_s(done=0, elapsed=5) is None
    trials = [_trial("TERMINATED", 0.9), _trial("TERMINATED", 0.4), _trial("ERROR")]
    assert p.summary(trials) == (3, 0, 0.4)
    p._live["done_before"] = 2  # resumed with two trials done: the pace is this command's
    assert p.eta_s(done=3, elapsed=20) == 140 and p.eta_s(done=2, elapsed=20) == 280


def test_the_sweeps_progress_pickles_without_its_bar():
    """Tune saves the callback with its experiment state (what --resume restores): the bar
    on the screen is not part of it."""
    import pickle

    from encoderlab.sweep.progress import SweepProgress

    p = SweepProgress(4, "valid/acc", "max", None)
    p._live["bar"] = lambda: None  # stands for the live rich bar, which does not pickle
    q = pickle.loads(pickle.dumps(p))
    assert q._live == {} and (q.planned, q.metric, q.mode) == (4, "valid/acc", "max")


def test_resume_refuses_a_sweep_renamed_by_its_file_name(tmp_path, monkeypatch):
    """A sweep without name: is named after its file; renamed, --resume with the same out:
    would have started every trial over (their runs are named after the sweep)."""
    from ray import tune

    from encoderlab.sweep.folder import MARKER, check_resume, claim, let_go

    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path))
    claim(sweep, False, lambda m: None)
    let_go(sweep)
    monkeypatch.setattr(tune.Tuner, "can_restore", staticmethod(lambda path: True))
    assert check_resume(load_sweep(tmp_path / "sweep.yaml")) is False  # as it started
    marker = sweep.out / MARKER
    marker.write_text(marker.read_text().replace(f"sweep {sweep.name}\n", "sweep exp-a\n"))
    with pytest.raises(UserError, match=r"name changed since the sweep in .* a new `out:`$"):
        check_resume(load_sweep(tmp_path / "sweep.yaml"))
