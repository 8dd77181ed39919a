"""What is written when: full (resumable) checkpoints by time, steps and at the end, not at
every evaluation; the best evaluation's weights apart (checkpoints/best-<step>/), which
predict, evaluate and export use; runs written before that still load; checkpoint files are
written by a background writer from a snapshot, whose errors reach the one-line error path
and whose checkpoints resume exactly."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import signal
import threading
import time

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import encoderlab.runs as runs_mod
from conftest import run_cli
from encoderlab.checkpointing import BackgroundWriter
from encoderlab.config import TrainConfig
from encoderlab.errors import disk_full
from encoderlab.runs import Run, after_disk_full, forget_written, run_checkpoint
from encoderlab.train import fit
from test_train import Net, Toy, collate, new_run, objective, resume_config, train, train_losses

ENOSPC_RUST = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'  # noqa: E501 - as safetensors says it


def quiet(msg: str) -> None:
    pass


def toy_fit(tmp_path, cfg: TrainConfig, keep_best: bool = False, obj=None) -> Run:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    run = new_run(tmp_path, "toy", cfg)
    fit(model, opt, Toy(), Toy(20), collate, obj or objective(), cfg, run, 1, say=quiet,
        keep_best=keep_best)  # fmt: skip
    return Run.open(run.path)


def steps(folders) -> list[int]:
    return [int(p.name.split("-")[1]) for p in folders]


# ---------------------------------------------------------------------------------------------
# What is written when


def test_evaluations_write_no_full_checkpoint_between_intervals(tmp_path):
    cfg = TrainConfig(batch_size=4, epochs=None, max_steps=10, eval_every=2, keep_checkpoints=9)
    run = toy_fit(tmp_path, cfg, keep_best=True)
    evals = [r["step"] for r in run.metrics() if r["kind"] == "eval"]
    assert evals == [2, 4, 6, 8, 10]
    assert steps(run.checkpoints()) == [10], "only the end of the run (5 min not reached)"
    best = run.info["best"]
    assert [p.name for p in run.best_folders()] == [run.info["best_checkpoint"]]
    folder = run.best_folders()[0]
    assert folder.name == f"best-{best['step']:08d}"
    assert sorted(p.name for p in folder.iterdir()) == ["best.json", "model.safetensors"]
    assert json.loads((folder / "best.json").read_text()) == best
    assert not list(run.checkpoint_dir.glob(".tmp-*"))

    # the old behaviour on request (sweeps' trials): a full checkpoint at every evaluation
    cfg = cfg.model_copy(update={"checkpoint_at_eval": True, "checkpoint_every": 3})
    run = toy_fit(tmp_path / "at-eval", cfg)
    assert steps(run.checkpoints()) == [2, 3, 4, 6, 8, 9, 10]
    assert run.best_folders() == [] and "best_checkpoint" not in run.info  # not kept_best


def test_only_the_newest_best_weights_are_kept(tmp_path):
    """Each better evaluation replaces the best folder; the weights are those evaluated."""
    cfg = TrainConfig(batch_size=4, epochs=None, max_steps=12, eval_every=1, lr=1e-2)
    seen: list[tuple[int, float]] = []
    run = toy_fit(tmp_path, cfg, keep_best=True)
    for r in run.metrics():
        if r["kind"] == "eval" and (not seen or r["valid/acc"] > seen[-1][1]):
            seen.append((r["step"], r["valid/acc"]))
    assert len(seen) >= 2, "the toy improves more than once"
    assert steps(run.best_folders()) == [seen[-1][0]] == [run.info["best"]["step"]]


# ---------------------------------------------------------------------------------------------
# Fine-tuning: the best weights are what predict / evaluate / export / final predictions use


def finetuned_with_an_early_best(tmp_path, **train):
    """A tiny fine-tuning run whose best evaluation is not its last: "best" is the lowest
    validation loss, which this run's few rows of validation mostly see rise. Mostly: with
    another seed (or another WordPiece vocabulary: its trainer is not deterministic) about one
    run in six ends on its best, so this tries seeds until one has an early best."""
    from encoderlab.finetuning import finetune
    from test_hf import ft_config

    train = {"max_steps": 6, "eval_every": 1, "early_stop_metric": "valid/loss"} | train
    train |= {"early_stop_mode": "min", "early_stop_patience": 100, "lr": 3e-3}
    for seed in range(5):
        (tmp_path / f"seed{seed}").mkdir()
        cfg = ft_config(tmp_path / f"seed{seed}", "classification", train=train, seed=seed)
        run, _ = finetune(cfg, say=quiet)
        run = Run.open(run.path)
        if run.info["best"]["step"] < run.info["steps"]:
            return run
        run.close()
    raise AssertionError("five seeds, and every run's best evaluation was its last")


def test_predict_and_evaluate_use_the_best_weights_not_the_last(tmp_path):
    from encoderlab.inference import load_finetuned

    run = finetuned_with_an_early_best(tmp_path)
    best_step, last_step = run.info["best"]["step"], run.info["steps"]
    assert best_step < last_step == 6
    assert steps(run.checkpoints()) == [6]
    best = run_checkpoint(run)
    assert best.name == f"best-{best_step:08d}" == run.info["best_checkpoint"]
    saved = load_file(str(best / "model.safetensors"))
    last = load_file(str(run.checkpoints()[-1] / "model.safetensors"))
    assert any(not torch.equal(saved[k], last[k]) for k in saved), "best != last weights"
    loaded = load_finetuned(run.path).model.state_dict()
    for k, v in saved.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)
    # the run's final predictions are the best weights' (re-evaluated: not the last eval)
    assert run.info["final"]["checkpoint"] == best.name
    valid = json.loads((run.path / "eval" / "valid.json").read_text())
    assert valid["checkpoint"] == best.name
    assert run_cli("predict", run.path, "--text", "a great fine movie") == 0
    data = run.path.parent.parent / "data" / "train.csv"
    assert run_cli("evaluate", run.path, "--data", data) == 0
    assert (run.path / "eval" / "file-train.json").is_file()


def test_a_run_written_before_best_weights_were_kept_apart_still_loads(tmp_path, capsys):
    """Old layout: run.json's best_checkpoint names a full step-* checkpoint."""
    from encoderlab.inference import load_finetuned

    run = finetuned_with_an_early_best(tmp_path, checkpoint_at_eval=True, keep_checkpoints=9)
    best_step = run.info["best"]["step"]
    old = f"step-{best_step:08d}"
    assert old in [p.name for p in run.checkpoints()]
    for folder in run.best_folders():
        shutil.rmtree(folder)
    run.update(best_checkpoint=old)
    run.close()
    run = Run.open(run.path)
    assert run_checkpoint(run).name == old
    saved = load_file(str(run.checkpoint_dir / old / "model.safetensors"))
    loaded = load_finetuned(run.path).model.state_dict()
    for k, v in saved.items():
        torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)
    assert run_cli("predict", run.path, "--text", "a sad dull movie") == 0
    if importlib.util.find_spec("transformers") is not None:
        assert run_cli("export", run.path, "--to-hf", tmp_path / "hf") == 0
        assert f"{old})" in capsys.readouterr().out


def test_last_evaluation_is_reused_for_a_best_folder_of_its_step():
    from encoderlab.finetuning import LastEvaluation

    last = LastEvaluation(None, None, [], None, 0, torch.device("cpu"), None)  # type: ignore[arg-type]
    last.evaluated(12, {})
    assert last.of("best-00000012") is last and last.of("step-00000012") is last
    assert last.of("best-00000011") is None


# ---------------------------------------------------------------------------------------------
# The background writer


def test_a_background_save_writes_the_tensors_of_when_it_was_called(tmp_path, monkeypatch):
    real = runs_mod._save_weights

    def slow(*args, **kwargs):
        time.sleep(0.3)  # the training thread changes the weights meanwhile
        real(*args, **kwargs)

    monkeypatch.setattr(runs_mod, "_save_weights", slow)
    run = Run.create(tmp_path / "runs", "w", TrainConfig(), kind="toy")
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(3, 8)).sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moment = opt.state_dict()["state"][0]["exp_avg"].clone()
    run.save_checkpoint(model, opt, {"step": 1}, background=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    opt.state_dict()["state"][0]["exp_avg"].add_(1.0)
    run.save_best(model, {"step": 2, "metric": "m", "value": 1.0}, background=True)
    run.flush()
    ckpt = load_file(str(run.checkpoint_dir / "step-00000001" / "model.safetensors"))
    for k, v in before.items():
        assert torch.equal(ckpt[k], v)
    opt_saved = load_file(str(run.checkpoint_dir / "step-00000001" / "optimizer.safetensors"))
    assert torch.equal(opt_saved["opt.0.exp_avg"], moment)
    best = load_file(str(run.checkpoint_dir / "best-00000002" / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(best[k], v)
    run.close()


def test_the_writer_raises_a_failed_writes_error_once_on_the_callers_thread():
    writer = BackgroundWriter()
    threads: list[str] = []

    def fail():
        threads.append(threading.current_thread().name)
        raise OSError(errno.ENOSPC, "No space left on device")

    writer.submit(fail)
    with pytest.raises(OSError, match="No space"):
        writer.submit(lambda: None)  # the next save waits for the previous one and raises
    writer.submit(lambda: threads.append("ok"))
    writer.wait()
    writer.wait()  # nothing left to raise
    assert threads == ["encoderlab-checkpoint-writer", "ok"]


def test_a_ctrl_c_while_the_writer_starts_is_held_until_it_runs(monkeypatch):
    """CI saw a Ctrl-C land between making the writer thread and starting it: the next wait
    could not join it ("cannot join thread before it is started") and the run was marked
    failed instead of interrupted. The SIGINT now waits until the thread runs."""
    real_start, ran = threading.Thread.start, []

    def start_after_a_ctrl_c(thread):
        os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at once, here
        return real_start(thread)

    # Python's own handler (Ctrl-C -> KeyboardInterrupt), whatever an earlier test left
    monkeypatch.setattr(threading.Thread, "start", start_after_a_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _held_then_raised(ran)
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    writer = BackgroundWriter()
    writer.submit(lambda: ran.append(2))
    writer.wait()
    assert ran == [1, 2]


def _held_then_raised(ran: list[int]) -> None:
    writer = BackgroundWriter()
    with pytest.raises(KeyboardInterrupt):
        writer.submit(lambda: ran.append(1))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    writer.wait()  # joins the write that was started, no RuntimeError
    assert ran == [1]


def fail_save_file(monkeypatch, at: int) -> None:
    """The optimizer file of checkpoint number `at` hits a full disk (in the writer thread)."""
    real, calls = runs_mod.save_file, [0]

    def save_file(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            assert threading.current_thread().name == "encoderlab-checkpoint-writer"
            raise SafetensorError(ENOSPC_RUST)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs_mod, "save_file", save_file)


@pytest.mark.parametrize("at, kept", [(2, 4), (3, 8)])  # mid-run (raised at the next save), last
def test_a_failed_background_write_is_the_one_line_disk_full_error(tmp_path, monkeypatch, at, kept):
    forget_written()
    fail_save_file(monkeypatch, at)
    cfg = TrainConfig(batch_size=4, epochs=None, max_steps=12, checkpoint_every=4)
    with pytest.raises(OSError) as e:
        train(tmp_path, cfg)
    assert disk_full(e.value)
    (path,) = list((tmp_path / "runs").iterdir())
    run = Run.open(path)
    assert run.info["status"] == "failed"
    assert steps(run.checkpoints()) == [4, 8][: at - 1]
    assert not list(run.checkpoint_dir.glob(".tmp-*")), "the failed write's space is freed"
    line = after_disk_full(e.value)
    assert "\n" not in line and line.startswith("disk full")
    assert f"--resume {path}" in line and f"step-{kept:08d}" in line
    assert (path / runs_mod.LOCK_FILE).read_text() == ""  # given back
    forget_written()


def test_resume_is_exact_after_a_crash_while_a_write_is_in_flight(tmp_path, monkeypatch):
    """The reference pattern of test_train's resume test, with every checkpoint write slowed
    down: training runs on during each write, and the crash comes while one is in flight."""
    cfg = resume_config()
    full, _, full_model = train(tmp_path, cfg, name="full")
    real = runs_mod._save_weights

    def slow(*args, **kwargs):
        time.sleep(0.5)
        real(*args, **kwargs)

    monkeypatch.setattr(runs_mod, "_save_weights", slow)
    in_flight: list[bool] = []
    crash = objective(fail_at=37)  # call 37 (evaluations count): while step 10's write sleeps
    step = crash.step

    def watched(model, batch):
        names = [t.name for t in threading.enumerate()]
        in_flight.append("encoderlab-checkpoint-writer" in names)
        return step(model, batch)

    crash.step = watched
    crashed = new_run(tmp_path, "crashed", cfg)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tmp_path, cfg, run=crashed, obj=crash)
    assert in_flight[36], "the crash came while a checkpoint was being written"
    assert crashed.info["status"] == "failed"
    assert crashed.latest_checkpoint().name == "step-00000010"  # the failed run drained it
    _, result, resumed_model = train(tmp_path, cfg, run=Run.open(crashed.path), resume=True)
    assert result.step == full.info["steps"] == 21
    a, b = train_losses(full), train_losses(crashed)
    assert [s for s, _ in a] == [s for s, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        assert x == pytest.approx(y, rel=1e-6, abs=1e-7)
    for p, q in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
