"""The run directory under damage and contention: broken checkpoints are passed over, a failed
resume writes nothing, one process owns a run at a time, killed writes are cleaned up,
reports read damaged runs, and trackers get every record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import run_cli, synthetic_lines
from encoderlab import loggers
from encoderlab.config import Config, TrainConfig
from encoderlab.errors import UserError
from encoderlab.runs import LOCK_FILE, Run, checkpoint_problem, release_lock, take_lock
from encoderlab.train import fit
from test_train import Net, Toy, collate, objective

SRC = str(Path(__file__).resolve().parents[1] / "src")


def quiet(msg: str) -> None:
    pass


def toy_run(tmp_path: Path, steps: int = 6, **train) -> Run:
    """A toy run with checkpoints at every 2nd step (keep 3)."""
    cfg = TrainConfig(
        batch_size=4, epochs=None, max_steps=steps, checkpoint_every=2, keep_checkpoints=3, **train
    )
    run = Run.create(tmp_path / "runs", "toy", Config(name="toy", train=cfg), kind="toy")
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    fit(model, opt, Toy(), Toy(20), collate, objective(), cfg, run, seed=0, say=quiet)
    return run


def resume_toy(run: Run, said: list[str]) -> int:
    cfg = TrainConfig(batch_size=4, epochs=None, max_steps=8, checkpoint_every=2)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    res = fit(model, opt, Toy(), Toy(20), collate, objective(), cfg, run, 0, True, say=said.append)
    return res.step


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def snapshot(run: Run) -> dict[str, bytes]:
    return {n: (run.path / n).read_bytes() for n in ("run.json", "metrics.jsonl")}


# ---------------------------------------------------------------------------------------------
# Broken checkpoints


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda c: truncate(c / "model.safetensors"), "model.safetensors is cut short"),
        (lambda c: truncate(c / "optimizer.safetensors", 0.9), "optimizer.safetensors is cut"),
        (lambda c: (c / "state.json").write_text('{"step": 6, "ep'), "state.json does not parse"),
        (lambda c: (c / "model.safetensors").write_bytes(b"\x01"), "model.safetensors is cut"),
        (
            lambda c: (c / "state.json").write_text(
                (c / "state.json").read_text().replace('"step": 6', '"step": "abc"')
            ),
            "state.json's step is 'abc', not a whole number",
        ),
    ],
)
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, damage, why):
    run = Run.open(toy_run(tmp_path).path)
    latest = run.latest_checkpoint()
    assert latest is not None and latest.name == "step-00000006"
    damage(latest)
    assert why in (checkpoint_problem(latest) or "")
    run = Run.open(run.path)
    said: list[str] = []
    assert resume_toy(run, said) == 8
    assert any(m.startswith("warning: skipping") and why in m for m in said)
    assert any("resumed" in m and "at step 4" in m for m in said)
    steps = [r["step"] for r in run.metrics() if r["kind"] == "train"]
    assert steps == sorted(set(steps)), "records after the fallback step are logged once"


def test_failed_resume_leaves_the_run_untouched(tmp_path, capsys):
    """Every checkpoint broken: one line, exit 2, run.json and metrics.jsonl as they were."""
    from encoderlab.finetuning import finetune
    from test_hf import ft_config

    run, _ = finetune(ft_config(tmp_path, "classification", train={"max_steps": 4}), say=quiet)
    evals = [r for r in run.metrics() if r["kind"] == "eval"]
    assert evals and all("valid/loss" in r and "valid/acc" in r for r in evals)
    broken = Run.open(run.path)
    for ckpt in broken.checkpoints() + broken.best_folders():  # the best weights too
        truncate(ckpt / "model.safetensors")
    before = snapshot(run)
    assert run_cli("finetune", "--resume", run.path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    assert "every checkpoint is damaged" in err and "cut short" in err  # not "start over"
    assert snapshot(run) == before
    # export of such a run: one line, no traceback
    assert run_cli("export", run.path, "--to-hf", tmp_path / "hf") == 2
    err = capsys.readouterr().err.strip()
    assert "no intact checkpoint" in err and "cut short" in err and "\n" not in err


def test_export_passes_over_a_broken_best_checkpoint(tmp_path, capsys):
    pytest.importorskip("transformers")
    from encoderlab.finetuning import finetune
    from test_hf import ft_config

    train = {"max_steps": 4, "eval_every": 2, "checkpoint_every": 2}
    cfg = ft_config(tmp_path, "classification", train=train)
    run, _ = finetune(cfg, say=quiet)
    run = Run.open(run.path)
    assert len(run.checkpoints()) >= 2
    best = run.checkpoint_dir / run.info["best_checkpoint"]
    truncate(best / "model.safetensors")
    other = Run.open(run.path).latest_checkpoint()
    assert other is not None and other != best
    assert run_cli("export", run.path, "--to-hf", tmp_path / "hf") == 0
    captured = capsys.readouterr()
    assert "warning: skipping" in captured.err and best.name in captured.err  # stderr: warnings
    assert f"{other.name})" in captured.out and (tmp_path / "hf" / "config.json").is_file()


# ---------------------------------------------------------------------------------------------
# One process per run directory


HOLD = textwrap.dedent(
    """
    import sys, time
    from encoderlab.runs import Run
    run = Run(sys.argv[1])
    run.update(holder=True)  # the first write takes the lock, held while `run` lives
    print("locked", flush=True)
    time.sleep(120)
    """
)


def hold_lock(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_is_refused_and_a_dead_owners_lock_is_taken_over(tmp_path):
    run = toy_run(tmp_path, steps=4)
    proc = hold_lock(run.path)
    try:
        owner = json.loads((run.path / LOCK_FILE).read_text())
        assert owner["pid"] == proc.pid
        before = snapshot(run)
        with pytest.raises(UserError) as e:
            resume_toy(Run.open(run.path), [])
        msg = str(e.value)
        assert "in use by another encoderlab process" in msg and str(proc.pid) in msg
        assert "\n" not in msg
        assert snapshot(run) == before  # the refused process wrote nothing
    finally:
        proc.kill()  # a kill -9: the lock file still names the dead pid
        proc.wait()
    assert json.loads((run.path / LOCK_FILE).read_text())["pid"] == proc.pid
    stale = run.checkpoint_dir / ".tmp-step-00000005-999999"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    said: list[str] = []
    assert resume_toy(Run.open(run.path), said) == 8
    assert not stale.exists(), "the new owner removes the killed write's folder"
    assert (run.path / LOCK_FILE).read_text() == ""  # given back at the end of the run


RACE = textwrap.dedent(
    """
    import sys, time
    from encoderlab.errors import UserError
    from encoderlab.runs import take_lock
    while time.time() < float(sys.argv[2]):
        pass
    try:
        take_lock(sys.argv[1])
        print("won", flush=True)
        time.sleep(3)
    except UserError as e:
        print("refused", str(e).count("\\n"), flush=True)
    """
)


def test_two_processes_racing_for_one_run_one_wins(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    start = str(time.time() + 1.5)
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(run_dir), start],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["refused 0", "won"]


EXIT_WHILE_WRITING = textwrap.dedent(
    """
    import atexit, sys
    from pathlib import Path
    lock = Path(sys.argv[1]) / "run.lock"
    # registered first, so it runs after every exit handler registered later (atexit is LIFO)
    atexit.register(lambda: print("at exit:", "held" if lock.read_text() else "free", flush=True))
    from encoderlab.runs import Run
    run = Run(sys.argv[1])
    run.update(step=1)  # held by `run`, which a daemon thread would go on writing
    keep = [run]
    """
)


def test_a_run_stays_held_until_its_process_is_gone(tmp_path):
    """A Ray worker ending a sweep trial exits while its daemon training thread still writes
    the run: the lock was given back at interpreter exit, the sweep's driver took the run as
    finished and marked it, and the thread's next write took the lock again and refused the
    driver's (a trial "stopped early" with no reason in run.json). The kernel drops the flock
    when the process is gone; nothing gives the run back earlier."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-c", EXIT_WHILE_WRITING, str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert out.strip().splitlines()[-1] == "at exit: held", out
    take_lock(run_dir)  # free once the process is gone
    release_lock(run_dir)


def test_the_same_process_may_reopen_its_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    take_lock(run_dir)
    take_lock(run_dir)  # reentrant within a process
    a, b = Run(run_dir), Run(run_dir)
    a.update(x=1)
    b.update(y=2)
    a.close()
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    b.close()
    release_lock(run_dir)
    release_lock(run_dir)
    assert (run_dir / LOCK_FILE).read_text() == ""


# ---------------------------------------------------------------------------------------------
# Pretraining resume: no false "corpus files changed"


def test_pretrain_resume_does_not_claim_the_corpus_changed(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(100)) + "\n", encoding="utf-8")
    from encoderlab.pretraining import pretrain

    cfg = Config.model_validate(
        {
            "name": "pt",
            "runs_dir": str(tmp_path / "runs"),
            "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
            "data": {"corpus": [str(corpus)], "block_len": 32, "cache_dir": str(tmp_path / "c")},
            "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 32},
            "train": {"batch_size": 8, "lr": 3e-3, "epochs": None, "max_steps": 2},
        }
    )
    run, _ = pretrain(cfg, say=quiet)
    said: list[str] = []
    pretrain(resume=run.path, overrides=["train.max_steps=3"], say=said.append)
    assert not any("corpus files changed" in m for m in said), said
    assert len(list((tmp_path / "c").iterdir())) == 1, "the resume reused the token cache"
    # the same text written anew (another mtime, another cache key): the same tokens, resumes
    text = corpus.read_text(encoding="utf-8")
    corpus.write_text(text + "", encoding="utf-8")
    os.utime(corpus, ns=(1, 1))
    said.clear()
    pretrain(resume=run.path, overrides=["train.max_steps=4"], say=said.append)
    assert not any("corpus" in m and "warning" in m for m in said), said
    # other text: its validation blocks would be drawn anew over trained-on text (a warning
    # before 2026-12-03, and the resume went on)
    corpus.write_text("\n".join(synthetic_lines(100, seed=1)) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="the corpus now gives other text than this run started"):
        pretrain(resume=run.path, overrides=["train.max_steps=5"], say=said.append)
    # a run made before the tokens were recorded: the warning, as then
    info = json.loads((run.path / "run.json").read_text())
    info.pop("tokens_digest")
    (run.path / "run.json").write_text(json.dumps(info))
    said.clear()
    pretrain(resume=run.path, overrides=["train.max_steps=5"], say=said.append)
    assert any("corpus files changed" in m for m in said)


# ---------------------------------------------------------------------------------------------
# Reports on damaged runs


def test_report_reads_damaged_runs_with_one_line_warnings(tmp_path, capsys):
    from encoderlab.reporting import build_report, load_run

    good = toy_run(tmp_path, steps=4)
    with open(good.path / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 9, "kind": "train", "train/loss": \xff\xfe}\n')
        f.write(b'{"step": 10, "kind": "tr')  # a last line still being written: no warning
    data = load_run(good.path)
    err = capsys.readouterr().err.strip()
    assert len(data.warnings) == 1 and "skipped 1 line(s) that are not UTF-8 JSON" in err
    assert "\n" not in err and data.records and max(r["step"] for r in data.records) == 4
    run_json = good.path / "run.json"
    run_json.write_text(run_json.read_text()[:15])
    data = load_run(good.path)
    assert data.info == {} and any("run.json: damaged (" in w for w in data.warnings)
    assert (build_report([good.path], tmp_path / "report")).is_file()


# ---------------------------------------------------------------------------------------------
# Trackers


class FakeLogger:
    def __init__(self) -> None:
        self.records: list[tuple[int, dict]] = []
        self.closed = False

    def log(self, record: dict, step: int) -> None:
        self.records.append((step, loggers.numbers(record)))

    def close(self) -> None:
        self.closed = True


def test_records_fan_out_to_every_configured_logger(tmp_path, monkeypatch):
    fakes: list[FakeLogger] = []

    def fake_open(run_dir: Path, remember) -> list[FakeLogger]:
        assert loggers.configured(run_dir) == ["mlflow", "wandb"]
        fakes.extend([FakeLogger(), FakeLogger()])
        return list(fakes)

    monkeypatch.setattr("encoderlab.runs.open_loggers", fake_open)
    monkeypatch.setattr("encoderlab.runs.check_installed", lambda names: None)
    run = toy_run(tmp_path, steps=4, loggers=["mlflow", "wandb"], eval_every=2)
    assert not (run.path / "tb").exists(), "tensorboard is not in train.loggers"
    lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    for fake in fakes:
        assert fake.closed and len(fake.records) == len(lines)
        assert any("valid/loss" in values for _, values in fake.records)
        assert [s for s, _ in fake.records] == [r["step"] for r in lines]


def test_a_missing_tracker_package_is_one_line_before_the_run_exists(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a)
    )
    cfg = Config(train=TrainConfig(epochs=1, loggers=["tensorboard", "wandb"]))
    with pytest.raises(UserError, match=r"train.loggers: wandb is not installed.*\[track\]"):
        Run.create(tmp_path / "runs", "toy", cfg, kind="toy")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_flat_params_and_numbers():
    assert loggers.flat_params({"train": {"lr": 1e-3, "betas": [0.9, 0.99]}, "seed": 0}) == {
        "train.lr": 1e-3,
        "train.betas": [0.9, 0.99],
        "seed": 0,
    }
    rec = {"step": 3, "kind": "eval", "time": 1.0, "valid/acc": 0.5, "ok": True, "note": "x"}
    assert loggers.numbers(rec) == {"valid/acc": 0.5}


def test_mlflow_logs_params_and_metrics_to_a_local_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run = toy_run(tmp_path, steps=4, loggers=["mlflow"], eval_every=2)
    run_id = run.info["trackers"]["mlflow"]
    client = mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    got = client.get_run(run_id)
    assert got.data.params["train.batch_size"] == "4" and got.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "valid/loss")
    assert [m.step for m in history] == [2, 4]


def test_a_zombie_owner_counts_as_gone():
    """Without flock, a lock naming a dead-but-unreaped process (a zombie) is stale."""
    from encoderlab.runs import pid_alive

    child = subprocess.Popen(["true"])
    deadline = time.time() + 10
    while time.time() < deadline and Path(f"/proc/{child.pid}/stat").is_file():
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            break
        time.sleep(0.01)
    else:
        pytest.skip("no /proc here to see a zombie")
    try:
        assert not pid_alive(child.pid)  # exited, not yet waited for
        assert pid_alive(os.getpid())
    finally:
        child.wait()
    assert not pid_alive(child.pid)


def test_damaged_metrics_fields_are_left_out_not_a_report_traceback(tmp_path):
    """A null loss, a step "x" or an epoch "two" in metrics.jsonl (an edit, another tool's
    append) crashed `report` with a TypeError from float(); a record without a number for its
    step is skipped as a bad line, a field that is no number is left out."""
    from encoderlab.runs import Run

    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "config.yaml").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 10, "kind": "train", "train/loss": 0.5}\n'
        '{"step": 20, "kind": "train", "train/loss": null, "epoch": "two"}\n'
        '{"step": "x", "kind": "train", "train/loss": 0.4}\n'
        '{"step": 30, "kind": "eval", "valid/loss": NaN}\n'
    )
    bad: list[int] = []
    records = Run.open(tmp_path).metrics(bad_lines=bad)
    assert [r["step"] for r in records] == [10, 20, 30] and bad == [3]
    assert records[1] == {"step": 20, "kind": "train"}
    assert records[2]["valid/loss"] != records[2]["valid/loss"]  # NaN, a diverged run's, kept
