"""The trainer on a toy task: exact resume, schedules, accumulation, stops, non-finite loss."""

import json
import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from encoderlab.config import TrainConfig
from encoderlab.errors import UserError
from encoderlab.runs import Run, optimizer_from_flat, optimizer_to_flat
from encoderlab.train import Objective, fit, lr_factor


class Toy(torch.utils.data.Dataset):
    def __init__(self, n=50):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


def collate(items):
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))

    def forward(self, x):
        return self.body(x)


def objective(fail_at=None, nan=False):
    calls = {"n": 0}

    def step(model, batch):
        calls["n"] += 1
        if fail_at is not None and calls["n"] == fail_at:
            raise RuntimeError("simulated crash")
        logits = model(batch["input_ids"])
        loss = nn.functional.cross_entropy(logits, batch["labels"])
        if nan:
            loss = loss * float("nan")
        n = torch.tensor(float(len(batch["labels"])))
        correct = (logits.argmax(-1) == batch["labels"]).sum().float()
        return loss, {"loss_sum": loss.detach() * n, "n": n, "correct": correct}

    def metrics(c):
        return {"loss": c["loss_sum"] / c["n"], "acc": c["correct"] / c["n"]}

    return Objective(step=step, metrics=metrics, primary="acc", primary_mode="max")


def new_run(tmp_path, name, cfg):
    return Run.create(tmp_path / "runs", name, cfg, kind="toy")


def train(
    tmp_path,
    cfg,
    run=None,
    resume=False,
    obj=None,
    name="toy",
    fused=False,
    data=None,
    evaluator=None,
):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=fused)
    run = run or new_run(tmp_path, name, cfg)
    result = fit(
        model,
        opt,
        data if data is not None else Toy(),
        Toy(20),
        collate,
        obj or objective(),
        cfg,
        run,
        seed=1,
        resume=resume,
        evaluator=evaluator,
        say=lambda m: None,
    )
    return run, result, model


def train_losses(run):
    return [(r["step"], r["train/loss"]) for r in run.metrics() if r["kind"] == "train"]


def resume_config() -> TrainConfig:
    """Accumulation, a schedule, checkpoints and evaluations that do not fall together: what
    the exact-resume tests crash in the middle of."""
    return TrainConfig(
        batch_size=4,
        grad_accum=2,
        epochs=3,
        lr=1e-2,
        log_every=1,
        checkpoint_every=5,
        eval_every=4,
        schedule="cosine",
        warmup_steps=3,
    )


def test_resume_after_crash_reproduces_uninterrupted_losses(tmp_path):
    cfg = resume_config()
    full, _, full_model = train(tmp_path, cfg, name="full")
    crashed = new_run(tmp_path, "crashed", cfg)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tmp_path, cfg, run=crashed, obj=objective(fail_at=37))
    assert crashed.info["status"] == "failed"
    assert crashed.latest_checkpoint() is not None
    _, result, resumed_model = train(tmp_path, cfg, run=Run.open(crashed.path), resume=True)
    assert result.step == full.info["steps"] == 21  # 13 micro-batches/epoch -> 7 steps x 3
    a, b = train_losses(full), train_losses(crashed)
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-6, atol=1e-7)
    for p, q in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    evals = [r for r in crashed.metrics() if r["kind"] == "eval"]
    assert len({r["step"] for r in evals}) == len(evals), "no duplicate records after resume"


def test_epoch_records_and_learning(tmp_path):
    cfg = TrainConfig(batch_size=8, epochs=6, lr=3e-2, log_every=2, schedule="constant")
    run, result, _ = train(tmp_path, cfg)
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4, 5, 6]
    assert epochs[-1]["valid/acc"] > 0.7
    info = run.info
    assert info["status"] == "finished" and info["best"]["metric"] == "valid/acc"
    assert (run.path / "tb").is_dir() and any((run.path / "tb").iterdir())


def test_max_steps_and_time_budget(tmp_path):
    run, result, _ = train(tmp_path, TrainConfig(batch_size=4, epochs=None, max_steps=7))
    assert result.step == 7 and result.stopped_because == "max_steps"
    run, result, _ = train(
        tmp_path, TrainConfig(batch_size=4, epochs=None, time_budget_min=0.0001), name="t"
    )
    assert result.stopped_because == "time budget" and result.step >= 1


def test_early_stopping(tmp_path):
    cfg = TrainConfig(
        batch_size=10,
        epochs=50,
        lr=1e-9,
        eval_every=1,
        early_stop_metric="valid/acc",
        early_stop_patience=2,
    )
    _, result, _ = train(tmp_path, cfg)
    assert result.stopped_because.startswith("early stop") and result.step < 20


def test_early_stop_mode_follows_the_metric_unless_set():
    from encoderlab.train import _primary

    obj = objective()
    assert _primary(TrainConfig(early_stop_metric="valid/mlm_loss"), obj)[1] == "min"
    assert _primary(TrainConfig(early_stop_metric="valid/rmse"), obj)[1] == "min"
    assert _primary(TrainConfig(early_stop_metric="valid/acc"), obj)[1] == "max"
    set_max = TrainConfig(early_stop_metric="valid/loss", early_stop_mode="max")
    assert _primary(set_max, obj) == ("valid/loss", "max")


def test_early_stop_metric_not_evaluated_is_an_error_before_training(tmp_path):
    from encoderlab.errors import UserError

    cfg = TrainConfig(batch_size=10, epochs=2, eval_every=1, early_stop_metric="valid/accuracy")
    obj = objective()
    obj.metric_names = ("loss", "acc")
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    run = new_run(tmp_path, "typo", cfg)
    with pytest.raises(UserError, match=r"early_stop_metric=valid/accuracy.*valid/acc, valid/loss"):
        fit(model, torch.optim.AdamW(model.parameters()), Toy(), Toy(20), collate, obj, cfg, run,
            seed=0, say=lambda m: None)  # fmt: skip
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True))
    assert not [r for r in run.metrics() if r["kind"] == "train"]


def test_a_primary_metric_that_is_never_measured_is_said_once(tmp_path):
    cfg = TrainConfig(batch_size=10, epochs=3, eval_every=2, early_stop_metric="valid/f1")
    torch.manual_seed(0)
    said = []
    run = new_run(tmp_path, "f1", cfg)
    fit(Net(), torch.optim.AdamW(Net().parameters()), Toy(), Toy(20), collate, objective(), cfg,
        run, seed=0, say=said.append)  # fmt: skip
    warnings = [m for m in said if m.startswith("warning: valid/f1 was not measured")]
    assert len(warnings) == 1 and "valid/acc" in warnings[0], said


def test_nonfinite_loss_skips_then_stops_cleanly(tmp_path):
    cfg = TrainConfig(batch_size=4, epochs=5, max_nonfinite=3)
    torch.manual_seed(0)
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    run = new_run(tmp_path, "nan", cfg)
    result = fit(
        model, opt, Toy(), None, collate, objective(nan=True), cfg, run, seed=0, say=lambda m: None
    )
    assert result.step == 3 and "not finite" in result.stopped_because
    assert run.info["status"] == "failed" and run.info["nonfinite_steps"] == 3
    for p, q in zip(before, model.parameters(), strict=True):
        assert torch.equal(p, q), "skipped steps must not touch the weights"
    assert run.latest_checkpoint() is not None


def test_schedules():
    def f(**kw):
        cfg = TrainConfig(**kw)
        return [lr_factor(cfg, s, 100, 0.0) for s in range(100)]

    warm = f(schedule="constant", warmup_steps=10)
    assert warm[0] == pytest.approx(0.1) and warm[9] == 1.0 and warm[50] == 1.0
    lin = f(schedule="linear")
    assert (
        lin[0] == 1.0
        and lin[99] < 0.02
        and all(a >= b for a, b in zip(lin[:-1], lin[1:], strict=True))
    )
    cos = f(schedule="cosine", min_lr_ratio=0.1)
    assert cos[50] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)), abs=0.02)
    assert min(cos) >= 0.1
    exp = f(schedule="exponential", decay_gamma=0.9)
    assert exp[2] == pytest.approx(0.81)
    one = f(schedule="onecycle")
    assert one[0] < 0.1 and max(one) == pytest.approx(1.0, abs=0.04) and one[-1] < 0.01


def test_killed_checkpoint_write_leaves_last_good_one(tmp_path):
    cfg = TrainConfig(batch_size=4, epochs=1, checkpoint_every=3)
    run, _, _ = train(tmp_path, cfg)
    good = run.latest_checkpoint()
    broken = run.checkpoint_dir / ".tmp-step-00099999-1"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"half")
    assert run.latest_checkpoint() == good
    state, _ = run.load_checkpoint(Net())
    assert state["step"] == int(good.name.split("-")[1])
    assert len(run.checkpoints()) <= cfg.keep_checkpoints + 1  # + the best one
    assert not list(good.glob("*.pt")) and not list(good.glob("*.bin"))
    json.loads((good / "state.json").read_text())


def test_optimizer_state_round_trips_without_pickle():
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 8)).sum().backward()
    opt.step()
    tensors, meta = optimizer_to_flat(opt)
    json.dumps(meta)
    other = torch.optim.AdamW(Net().parameters(), lr=5.0)
    optimizer_from_flat(other, tensors, meta)
    assert other.param_groups[0]["lr"] == 1e-3
    for k, v in opt.state_dict()["state"][0].items():
        torch.testing.assert_close(other.state_dict()["state"][0][k], v)


class Poisoned(Toy):
    """Example 17 is NaN: the batch holding it has a non-finite loss, once per epoch."""

    def __init__(self):
        super().__init__()
        self.x[17] = float("nan")


def train_fused(tmp_path, cfg, run=None, resume=False, obj=None, name="fused"):
    """`train` with a fused AdamW on data holding a NaN (see `Poisoned`)."""
    return train(tmp_path, cfg, run, resume, obj, name, fused=True, data=Poisoned())


def test_nonfinite_step_is_skipped_on_the_device_and_resumes_exactly(tmp_path, monkeypatch):
    """With a fused optimizer a NaN loss skips its step without reading anything back per
    step: the skip counters are read at log time only, and a resumed run still matches."""
    from encoderlab import train as train_module

    cfg = TrainConfig(
        batch_size=4, grad_accum=2, epochs=3, lr=1e-2, log_every=5, checkpoint_every=4
    )
    reads = {"settle": 0, "bool": 0}
    settle = train_module.LoopState.settle

    def counted_settle(self):
        reads["settle"] += self.pending is not None
        return settle(self)

    real_bool = torch.Tensor.__bool__

    def counted_bool(self):
        reads["bool"] += 1
        return real_bool(self)

    monkeypatch.setattr(train_module.LoopState, "settle", counted_settle)
    monkeypatch.setattr(torch.Tensor, "__bool__", counted_bool)
    full, result, full_model = train_fused(tmp_path, cfg, name="full")
    monkeypatch.setattr(torch.Tensor, "__bool__", real_bool)
    assert result.step == 21 and result.stopped_because == "finished"
    assert full.info["nonfinite_steps"] == 3, "one poisoned batch per epoch, each skipped"
    assert reads["bool"] == 0, "no tensor is read back as a bool in the loop"
    # reads at logs (every 5 steps and epoch ends), checkpoints and the end, not per step
    assert 0 < reads["settle"] <= 21 // 5 + 3 + 21 // 4 + 2
    for p in full_model.parameters():
        assert torch.isfinite(p).all(), "the NaN step's update was not applied"
    logged = [v for _, v in train_losses(full)]
    assert logged and all(math.isfinite(v) for v in logged), "the NaN is kept out of the logs"

    crashed = new_run(tmp_path, "crashed", cfg)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_fused(tmp_path, cfg, run=crashed, obj=objective(fail_at=30))
    _, result, resumed_model = train_fused(tmp_path, cfg, run=Run.open(crashed.path), resume=True)
    assert result.step == 21 and crashed.info["nonfinite_steps"] == 3
    a, b = train_losses(full), train_losses(crashed)
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-6, atol=1e-7)
    for p, q in zip(full_model.parameters(), resumed_model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_deferred_nonfinite_still_stops_a_diverged_run(tmp_path):
    cfg = TrainConfig(batch_size=4, epochs=5, max_nonfinite=3, log_every=2)
    torch.manual_seed(0)
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    run = new_run(tmp_path, "nan", cfg)
    result = fit(
        model, opt, Toy(), None, collate, objective(nan=True), cfg, run, seed=0, say=lambda m: None
    )
    assert result.step == 4 and "not finite" in result.stopped_because  # read at the log step
    assert run.info["status"] == "failed" and run.info["nonfinite_steps"] == 4
    for p, q in zip(before, model.parameters(), strict=True):
        assert torch.equal(p, q), "skipped steps must not touch the weights"
    state = json.loads((run.latest_checkpoint() / "state.json").read_text())
    assert state["nonfinite_total"] == 4 and opt.state_dict()["state"][0]["step"] == 0


def test_checkpoints_by_time_interval(tmp_path, monkeypatch):
    """train.checkpoint_minutes: a checkpoint once that much training time has passed since
    the last one, whatever the step count (a fake clock advances 25 s per step)."""
    from encoderlab import train as train_module

    now = {"t": 0.0}
    monkeypatch.setattr(train_module.Clock, "seconds", lambda self: now["t"])
    obj = objective()
    step = obj.step

    def slow_step(model, batch):
        now["t"] += 25.0 / 2  # two micro-batches per step
        return step(model, batch)

    obj.step = slow_step
    cfg = TrainConfig(
        batch_size=4,
        grad_accum=2,
        epochs=None,
        max_steps=12,
        checkpoint_minutes=1.0,
        keep_checkpoints=100,
    )
    run, result, _ = train(tmp_path, cfg, obj=obj)
    saved = [int(p.name[5:]) for p in run.checkpoints()]
    # 75 s >= 60 s after the last one; 7: the epoch's end (evaluated); 12: the run's end
    assert saved == [3, 6, 7, 10, 12]


def test_warmup_and_decay_are_fractions_of_a_binding_time_budget():
    cfg = TrainConfig(warmup_ratio=0.1, schedule="linear", time_budget_min=1)
    # 10,000 planned steps the budget will never reach: the budget's progress drives the lr
    assert lr_factor(cfg, 3, 10_000, 0.05) == pytest.approx(0.5)
    assert lr_factor(cfg, 9, 10_000, 0.1) == pytest.approx(1.0)
    assert lr_factor(cfg, 40, 10_000, 0.55) == pytest.approx(0.5)
    assert lr_factor(cfg, 80, 10_000, 1.0) == pytest.approx(0.0)
    # budget-only runs (no planned steps) warm up too: warmup_ratio used to be ignored
    assert lr_factor(cfg, 3, None, 0.05) == pytest.approx(0.5)
    # when the steps run out first, the schedule follows the steps as without a budget
    assert lr_factor(cfg, 50, 100, 0.2) == lr_factor(cfg, 50, 100, 0.0)
    assert lr_factor(cfg, 5, 100, 0.01) == pytest.approx(0.6)


def test_a_budget_bound_warmup_never_lifts_the_lr_above_train_lr():
    """The steps' warmup (rounded down: 26 steps x 0.1 = 2) ended while the budget's share was
    still inside its 10 %: (step + 1) / warmup gave 1.5x train.lr, 2x with one warmup step."""
    cfg = TrainConfig(warmup_ratio=0.1, epochs=1, schedule="linear", time_budget_min=1)
    for step, total, progress in ((2, 26, 0.0885), (1, 15, 0.0833), (64, 645, 0.0996)):
        assert lr_factor(cfg, step, total, progress) <= 1.0
    assert lr_factor(cfg, 2, 26, 0.0885) == pytest.approx(1.0)  # warmup: ceil(2.6) = 3 steps
    # rounded up, as transformers does: 15 steps x 0.1 warm up over 2 (int(1.5) gave 1: none)
    assert lr_factor(TrainConfig(warmup_ratio=0.1), 0, 15, 0.0) == pytest.approx(0.5)


@pytest.mark.slow  # 7-10 s: the default suite keeps its 5-minute bar
def test_budget_run_ends_within_its_budget_including_the_end(tmp_path):
    """A whole-run budget leaves time for the final evaluation and the caller's predictions
    (here a slow evaluator and 100 tail rows) and ends near the budget, not after it."""
    import time

    slow = {"s": 0.2}

    def evaluator(model):
        time.sleep(slow["s"])
        return {"acc": 0.5}

    cfg = TrainConfig(batch_size=4, epochs=None, time_budget_min=0.1, eval_every=20, log_every=5)
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    run = new_run(tmp_path, "budget", cfg)
    said = []
    t0 = time.perf_counter()
    time.sleep(0.5)  # setup before fit: the budget counts it
    result = fit(
        model,
        opt,
        Toy(),
        Toy(20),
        collate,
        objective(),
        cfg,
        run,
        seed=0,
        evaluator=evaluator,
        say=said.append,
        started=t0,
        tail_rows=100,
    )
    time.sleep(slow["s"] * 100 / 20)  # the caller's predictions: 100 rows at the timed speed
    total = time.perf_counter() - t0
    assert result.stopped_because == "time budget"
    assert 6 * 0.6 < total < 6 * 1.25, total
    assert result.train_seconds < 6 - 2, "training left time for the end of the run"
    assert any("expect" in m and "time budget" in m for m in said), said
    assert run.info["expected_steps"] > 0
    # training time only: the loop alone fills the budget
    cfg2 = cfg.model_copy(update={"budget_covers": "train"})
    run2 = new_run(tmp_path, "budget2", cfg2)
    result2 = fit(
        Net(),
        torch.optim.AdamW(Net().parameters()),
        Toy(),
        Toy(20),
        collate,
        objective(),
        cfg2,
        run2,
        seed=0,
        evaluator=evaluator,
        say=said.append,
        started=t0,
        tail_rows=100,
    )
    assert result2.train_seconds >= 6


def test_warmup_longer_than_the_run_is_a_warning(tmp_path):
    cfg = TrainConfig(batch_size=4, epochs=2, warmup_steps=500, log_every=5)
    said = []
    torch.manual_seed(0)
    model = Net()
    fit(
        model,
        torch.optim.AdamW(model.parameters()),
        Toy(),
        None,
        collate,
        objective(),
        cfg,
        new_run(tmp_path, "warm", cfg),
        seed=0,
        say=said.append,
    )
    warn = [m for m in said if "warmup_steps=500 is longer than the run" in m]
    assert len(warn) == 1 and "26 steps" in warn[0], said  # once, before the first step
    assert said.index(warn[0]) == 0 or not any("speed" in m for m in said[: said.index(warn[0])])


def test_an_evaluation_cut_short_by_ctrl_c_is_done_on_resume(tmp_path):
    """Ctrl-C during an evaluation checkpointed the step but never logged its evaluation:
    the resumed run's curve had a hole there, and that step never competed for the best."""

    def evaluator_stopping_at(call):
        calls = []

        def evaluator(m):
            calls.append(1)
            if len(calls) == call:
                raise KeyboardInterrupt
            return {"acc": float(sum(p.detach().sum() for p in m.parameters()))}

        return evaluator

    def run_fit(run, resume=False, interrupt_at=None):
        train(tmp_path, cfg, run=run, resume=resume, evaluator=evaluator_stopping_at(interrupt_at))

    cfg = resume_config()
    full = new_run(tmp_path, "full", cfg)
    run_fit(full)
    cut = new_run(tmp_path, "cut", cfg)
    with pytest.raises(KeyboardInterrupt):
        run_fit(cut, interrupt_at=2)  # the evaluation at step 8
    assert cut.info["status"] == "interrupted"
    assert [r["step"] for r in cut.metrics() if r["kind"] == "eval"] == [4]
    run_fit(Run.open(cut.path), resume=True)

    def evals(run):
        return [
            (r["step"], r["valid/acc"]) for r in run.metrics() if r["kind"] in ("eval", "epoch")
        ]

    assert [s for s, _ in evals(cut)] == [s for s, _ in evals(full)]
    np.testing.assert_allclose([v for _, v in evals(cut)], [v for _, v in evals(full)], rtol=1e-6)
    a, b = train_losses(full), train_losses(cut)
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-6, atol=1e-7)


def train_until_ctrl_c(tmp_path, cfg, run) -> None:
    """Train `run` until the SIGINT a patched hook sends ends it (Python's own handler, as
    under the CLI: KeyboardInterrupt), whatever handler pytest has."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path, cfg, run=run)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_in_a_steps_bookkeeping_waits_for_it_to_finish(tmp_path, monkeypatch):
    """A Ctrl-C that landed after a train record was written but before its loss window was
    reset left a checkpoint holding both: the resumed run's next logged loss averaged steps
    twice. The step's bookkeeping now finishes first."""
    import os
    import signal

    cfg = resume_config()
    full = new_run(tmp_path, "full", cfg)
    train(tmp_path, cfg, run=full)
    cut = new_run(tmp_path, "cut", cfg)
    real_log = Run.log

    def log_then_ctrl_c(self, record):
        real_log(self, record)
        if record.get("kind") == "train" and record["step"] == 6:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises at its next instruction

    monkeypatch.setattr(Run, "log", log_then_ctrl_c)
    train_until_ctrl_c(tmp_path, cfg, cut)
    monkeypatch.setattr(Run, "log", real_log)
    assert cut.info["status"] == "interrupted"
    train(tmp_path, cfg, run=Run.open(cut.path), resume=True)
    a, b = train_losses(full), train_losses(cut)
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(  # a plain step, an evaluation's, the last one (also unlogged)
    "at, change",
    [(6, {}), (8, {}), (21, {}), (17, {"log_every": 5, "epochs": None, "max_steps": 17})],
)
def test_a_ctrl_c_held_through_a_step_leaves_its_evaluation_and_end_to_the_resume(
    tmp_path, monkeypatch, at, change
):
    """A Ctrl-C held through a step landed before the loop marked that step's evaluation as
    owed: the resumed run never evaluated it (another best checkpoint), and after the last
    step the resume was refused as "already finished", with no final evaluation, ever."""
    import os
    import signal

    from encoderlab.pretraining import check_not_finished
    from encoderlab.train import Recorder

    cfg = resume_config().model_copy(update=change)
    full = new_run(tmp_path, "full", cfg)
    train(tmp_path, cfg, run=full)
    cut = new_run(tmp_path, "cut", cfg)
    real_stepped = Recorder.stepped

    def stepped_then_ctrl_c(self, state, tokens):
        real_stepped(self, state, tokens)
        if state.step == at:
            os.kill(os.getpid(), signal.SIGINT)  # held until the step's bookkeeping is done

    monkeypatch.setattr(Recorder, "stepped", stepped_then_ctrl_c)
    train_until_ctrl_c(tmp_path, cfg, cut)
    monkeypatch.setattr(Recorder, "stepped", real_stepped)
    cut = Run.open(cut.path)
    assert cut.info["status"] == "interrupted"
    check_not_finished(cut, cfg, "")  # not refused: the run owes its end
    train(tmp_path, cfg, run=cut, resume=True)

    def evals(run):
        return [(r["step"], r["kind"], r["valid/acc"]) for r in run.metrics() if "valid/acc" in r]

    assert [e[:2] for e in evals(cut)] == [e[:2] for e in evals(full)]
    np.testing.assert_allclose([e[2] for e in evals(cut)], [e[2] for e in evals(full)], rtol=1e-6)
    a, b = train_losses(full), train_losses(cut)
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-6, atol=1e-7)
    lrs = [[r["lr"] for r in run.metrics() if r["kind"] == "train"] for run in (full, cut)]
    np.testing.assert_allclose(lrs[1], lrs[0], rtol=1e-6)  # the end's log too
    assert Run.open(cut.path).info["status"] == "finished"
    assert Run.open(cut.path).info.get("best") == Run.open(full.path).info.get("best")


def test_a_ctrl_c_in_the_last_checkpoint_or_an_evaluations_line_resumes_to_the_same_end(
    tmp_path, monkeypatch
):
    """A Ctrl-C while the last checkpoint was taken left a run "interrupted" whose resume was
    refused as already finished (a fine-tuning run then never wrote its predictions); one
    after an evaluation was logged, before it was marked done, logged it twice on resume."""
    import os
    import signal

    from encoderlab.pretraining import check_not_finished
    from encoderlab.train import Recorder

    cfg = resume_config()
    full = new_run(tmp_path, "full", cfg)
    train(tmp_path, cfg, run=full)
    real_checkpoint, real_log = Recorder.checkpoint, Run.log

    def last_checkpoint_ctrl_c(self, state, force=False):
        if state.step == 21 and not force:
            raise KeyboardInterrupt
        return real_checkpoint(self, state, force)

    def eval_logged_then_ctrl_c(self, record):
        real_log(self, record)
        if record.get("kind") == "eval" and record["step"] == 8:
            os.kill(os.getpid(), signal.SIGINT)  # before the best and the mark

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    for name, (owner, method, patched) in {
        "end": (Recorder, "checkpoint", last_checkpoint_ctrl_c),
        "eval": (Run, "log", eval_logged_then_ctrl_c),
    }.items():
        cut = new_run(tmp_path, name, cfg)
        monkeypatch.setattr(owner, method, patched)
        try:
            with pytest.raises(KeyboardInterrupt):
                train(tmp_path, cfg, run=cut)
        finally:
            monkeypatch.setattr(Recorder, "checkpoint", real_checkpoint)
            monkeypatch.setattr(Run, "log", real_log)
        cut = Run.open(cut.path)
        assert cut.info["status"] == "interrupted"
        check_not_finished(cut, cfg, "")  # not refused
        train(tmp_path, cfg, run=cut, resume=True)

        def evals(run):
            return [
                (r["step"], r["kind"]) for r in Run.open(run.path).metrics() if "valid/acc" in r
            ]

        assert evals(cut) == evals(full), name
        assert Run.open(cut.path).info["status"] == "finished"
        with pytest.raises(UserError, match="already finished"):
            check_not_finished(Run.open(cut.path), cfg, "")
    signal.signal(signal.SIGINT, previous)


class _Clock:
    def __init__(self, setup_s: float) -> None:
        self.setup_s, self.t = setup_s, 0.0

    def seconds(self) -> float:
        return self.t


def test_a_whole_run_budget_schedules_over_the_training_seconds_alone():
    """The set-up and the end of the run (final evaluation, predictions, last checkpoint) used
    to count as spent at step 0: a budget run started part-way into its warmup (the budget
    recipe at its peak lr on step 1), and a budget they filled trained a step at lr 0."""
    from encoderlab.train import CHECKPOINT_ALLOWANCE_S, Plan, StopRule

    plan = Plan(micro_per_epoch=10**6, steps_per_epoch=10**6, total_steps=None, budget_s=60.0)
    clock = _Clock(setup_s=10.0)
    rule = StopRule(TrainConfig(), plan, clock, "loss")
    window = 60.0 - 10.0 - CHECKPOINT_ALLOWANCE_S
    assert rule.budget_used(0) == 0.0
    clock.t = window / 2
    assert rule.budget_used(10) == pytest.approx(0.5)
    clock.t = window
    assert rule.budget_used(20) == pytest.approx(1.0)
    state = type("S", (), {"step": 20, "evals_since_best": 0})()
    assert rule.reason(state, False) == "time budget"  # the stop and the schedule's end agree
    cramped = StopRule(TrainConfig(), Plan(10**6, 10**6, None, 5.0), _Clock(10.0), "loss")
    assert cramped.budget_used(0) == 1.0  # nothing left for training: the schedule's end


def test_schedules_under_a_budget_decay_from_the_end_of_warmup():
    # exponential: the decay counts steps after warmup (it used to count from step 0 and fall
    # 400-fold the moment a budget's warmup ended)
    exp = TrainConfig(schedule="exponential", decay_gamma=0.99, warmup_ratio=0.3, time_budget_min=1)
    assert lr_factor(exp, 599, None, 0.2999) == pytest.approx(1.0, abs=0.01)
    assert lr_factor(exp, 601, None, 0.3004) == pytest.approx(0.99**1, rel=0.01)
    assert lr_factor(exp, 1000, None, 0.5) == pytest.approx(0.99**400, rel=0.01)
    # warmup_steps under a budget: no jump when warmup ends (it fell 20 % in one step)
    steps = TrainConfig(schedule="linear", warmup_steps=100, time_budget_min=1)
    at_end = lr_factor(steps, 99, None, 0.099)
    after = lr_factor(steps, 101, None, 0.101)
    assert at_end == pytest.approx(1.0) and after == pytest.approx(1.0, abs=0.01)
    assert lr_factor(steps, 550, None, 0.55) == pytest.approx(0.5, abs=0.01)
    # onecycle: an explicit warmup_ratio of 0 is no warmup (OneCycleLR's 30 % is the default)
    assert lr_factor(TrainConfig(schedule="onecycle", warmup_ratio=0.0), 0, 100, 0.0) == 1.0
    assert lr_factor(TrainConfig(schedule="onecycle"), 0, 100, 0.0) == pytest.approx(1 / 30)


def test_a_run_that_ends_on_an_evaluation_logs_its_last_training_window(tmp_path):
    cfg = TrainConfig(batch_size=4, epochs=None, max_steps=25, eval_every=5, log_every=10)
    run = new_run(tmp_path, "last-window", cfg)
    fit(
        Net(),
        torch.optim.AdamW(Net().parameters()),
        Toy(),
        Toy(20),
        collate,
        objective(),
        cfg,
        run,
        seed=0,
    )
    steps = [m["step"] for m in run.metrics() if m.get("kind") == "train"]
    assert steps[-2:] == [20, 25], steps  # steps 21-25 used to go unlogged


def test_a_budget_forecast_counts_the_evaluations_the_steps_bring_along():
    """A run evaluating every 10 steps, each evaluation as long as 10 steps: half the budget
    goes to evaluations, so the forecast is half the steps the training speed alone gives."""
    from encoderlab.train import Clock, LoopState, Plan, StopRule

    class Ticking(Clock):
        def __init__(self) -> None:
            super().__init__(0.0)
            self.now = 0.0

        def seconds(self) -> float:
            return self.now

    cfg = TrainConfig(
        batch_size=4, epochs=None, time_budget_min=1, eval_every=10, budget_covers="train"
    )
    plan = Plan.of(cfg, rows=4_000)  # 1,000 steps an epoch: the epoch-end evaluation is far
    clock = Ticking()
    rule = StopRule(cfg, plan, clock, "acc", valid_rows=100, eval_row_s=0.01)  # 1 s/evaluation
    state = LoopState()
    said = None
    while said is None:
        state.step += 1
        clock.now += 0.1  # 0.1 s a step
        said = rule.forecast(state, None, None)
    left_steps = rule.expected_steps - state.step
    assert left_steps == pytest.approx((60 - clock.now) / 0.2, abs=2), said
    assert "ended by the time budget" in said


def test_a_forecast_names_the_epochs_when_they_end_the_run_before_max_steps():
    """max_steps: 300 with the default one epoch of 121 steps said "ended by the steps"."""
    from encoderlab.train import Clock, LoopState, Plan, StopRule

    cfg = TrainConfig(batch_size=4, epochs=1, max_steps=300)
    rule = StopRule(cfg, Plan.of(cfg, rows=484), Clock(0.0), "acc")
    state, said = LoopState(), None
    while said is None:
        state.step += 1
        said = rule.forecast(state, None, None)
    assert rule.expected_steps == 121
    assert "ended by the epochs (train.epochs=1, before train.max_steps=300;" in said, said


def test_the_end_of_a_budget_run_is_priced_at_the_rows_mean_length():
    """The timed forward pass ran on whichever training batch was at hand, under length
    grouping often one of the longest, and priced every evaluated and predicted row at its
    length: a MiniLM run's end was forecast at 44 s, took 15, and the 1-minute run ended 34 %
    under its budget. Now a row costs the batch's seconds per token times the mean row length
    seen so far."""
    from encoderlab.train import Clock, Engine, LoopState, Plan, StopRule

    class Echo(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return input_ids

    class Objective:
        def step(self, model, batch):
            time.sleep(0.05)
            return torch.zeros(()), {"n": torch.ones(())}

    model = Echo()
    model.dummy = torch.nn.Parameter(torch.zeros(1))
    eng = Engine(model, torch.optim.SGD(model.parameters(), lr=0.1), Objective(),
                 torch.device("cpu"), None, [0.1])  # fmt: skip
    mask = torch.zeros(8, 64, dtype=torch.long)
    mask[:, :16] = 1  # 8 rows of 16 tokens padded to 64: 128 real tokens
    batch = {"input_ids": torch.zeros(8, 64, dtype=torch.long), "attention_mask": mask}
    cfg = TrainConfig(time_budget_min=1)
    rule = StopRule(cfg, Plan.of(cfg, rows=100), Clock(0.0), "acc")
    state = LoopState()
    state.tokens, state.samples = 3_200, 400  # 8 tokens a row on average so far
    rule.time_forward(eng, batch, state)
    per_token = rule.forward_row_s / 8
    assert 0.05 / 128 <= per_token < 0.08 / 128  # the batch's seconds per real token


def test_a_whole_run_budget_counts_the_set_up_of_every_session_after_a_resume(tmp_path):
    """Each resume's clock counted only its own set-up: a run interrupted twice overran its
    budget by the set-ups before (+9 % on a 1-minute fine-tuning, +4.5 % for pretraining that
    built its token cache in the first session)."""
    import time as time_module

    cfg = TrainConfig(batch_size=4, lr=1e-2, epochs=None, max_steps=6, log_every=1,
                      time_budget_min=10.0, checkpoint_every=3)  # fmt: skip
    run = new_run(tmp_path, "setup", cfg)

    def session(resume: bool, setup_s: float, steps: int):
        torch.manual_seed(0)
        model = Net()  # a resume loads its weights from the checkpoint
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        cfg.max_steps = steps
        return fit(model, opt, Toy(), Toy(20), collate, objective(), cfg, run, seed=1,
                   resume=resume, say=lambda m: None,
                   started=time_module.perf_counter() - setup_s)  # fmt: skip

    session(False, 5.0, 3)
    first = json.loads((run.latest_checkpoint() / "state.json").read_text())
    assert 5.0 <= first["setup_seconds"] < 6.0
    session(True, 3.0, 6)
    second = json.loads((run.latest_checkpoint() / "state.json").read_text())
    assert 8.0 <= second["setup_seconds"] < 9.5
