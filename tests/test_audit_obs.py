"""What a user watches while a run trains: the progress bar (helper audit of progress and logs)."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
import torch
from rich.console import Console

from encoderlab import train
from encoderlab.config import Config, TrainConfig
from encoderlab.runs import Run
from test_train import Net, Toy, collate, objective


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _on_a_terminal(monkeypatch) -> None:
    """stderr a terminal (in the test's body: pytest's capture sets sys.stderr per phase)."""
    monkeypatch.setattr("sys.stderr", _Tty())


def _shown(bar: train._Progress, width: int) -> str:
    """The bar's line as a terminal of `width` columns shows it."""
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(bar.bar.make_tasks_table(bar.bar.tasks))
    return console.file.getvalue().strip()


def test_an_80_column_terminal_shows_the_counts_and_the_eta_whole(monkeypatch):
    _on_a_terminal(monkeypatch)
    bar = train._Progress(total=1500, budget_s=None, initial=0)
    try:
        bar._info = "123,456 tok/s  mlm_loss 6.183  mlm_acc 0.047"
        bar.update(750, {}, None, 0, 1.0)
        for width in (80, 60):
            line = _shown(bar, width)
            assert "750/1500" in line, line  # was "750…"
            assert re.search(r"ETA (\d+:\d\d:\d\d|-:--:--)$", line), line  # was "ETA -:--:…"
            assert len(line) <= width
        assert "123,456 tok/s" in _shown(bar, 80)  # throughput is what the info keeps first
    finally:
        bar.close()


def test_a_time_budget_bar_shows_the_budget_left_and_a_steady_end(monkeypatch):
    _on_a_terminal(monkeypatch)
    clock = [10.0]  # budget seconds spent
    bar = train._Progress(total=None, budget_s=100.0, initial=0)
    try:
        bar.update(20, {}, None, 0, 1.0)
        bar.expect(200, lambda: clock[0])  # the forecast: 20 steps in the first 10 s
        totals = []
        for step in range(21, 61):
            clock[0] += 0.5 if step % 2 else 1.5  # 1 s a step on average, unevenly
            bar.update(step, {}, None, 0, 1.0)
            totals.append(bar.bar.tasks[0].total)
        # 60 steps at 50 s; 50 s left at 1 step/s: ends near step 110, and says so steadily
        assert 105 <= totals[-1] <= 115, totals[-5:]
        assert max(totals[-10:]) - min(totals[-10:]) <= 5, totals[-10:]  # it jumped 701..4096
        assert _shown(bar, 120).endswith("ETA 0:00:50")  # was -:--:-- all along
    finally:
        bar.close()


def test_a_time_budget_bar_ends_at_max_steps_when_they_come_first(monkeypatch):
    _on_a_terminal(monkeypatch)
    clock = [0.0]
    bar = train._Progress(total=80, budget_s=1000.0, initial=0)
    try:
        bar.update(10, {}, None, 0, 1.0)
        bar.expect(900, lambda: clock[0])
        for step in range(11, 41):
            clock[0] += 1.0
            bar.update(step, {}, None, 0, 1.0)
        assert bar.bar.tasks[0].total == 80
        assert _shown(bar, 120).endswith("ETA 0:00:40")  # 40 steps to go at 1 s, not 960 s
    finally:
        bar.close()


def _fit_with_slow_evaluations(tmp_path, pause: float, eval_every: int):
    """Six toy steps (milliseconds) with an evaluation of `pause` seconds every `eval_every`."""

    def slow_evaluator(model) -> dict[str, float]:
        time.sleep(pause)
        return {"loss": 1.0}

    cfg = TrainConfig(batch_size=4, epochs=None, max_steps=6, log_every=2, eval_every=eval_every)
    run = Run.create(tmp_path / "runs", "toy", Config(name="toy", train=cfg), kind="toy")
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    result = train.fit(
        model, opt, Toy(), Toy(8), collate, objective(), cfg, run, seed=0,
        evaluator=slow_evaluator, say=lambda m: None,
    )  # fmt: skip
    return run, result


def test_tokens_per_s_after_an_evaluation_leaves_the_evaluation_out(tmp_path):
    """The train record after an evaluation timed the evaluation as training: a pretraining
    run with a 0.36 s evaluation logged 23,220 tokens/s there and ~120,000 around it."""

    # a 1 s pause: two toy steps take milliseconds, but on a loaded CI machine the step-4
    # checkpoint and the metrics write once took over the 0.25 s a 0.5 s pause left them
    run, _ = _fit_with_slow_evaluations(tmp_path, pause=1.0, eval_every=4)
    records = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r for r in records if r["kind"] == "train"}
    tokens = logged[6]["tokens"] - logged[4]["tokens"]  # steps 5-6, after the step-4 evaluation
    # timed with the 1 s pause its rate was at most tokens / 1.0
    assert logged[6]["tokens_per_s"] > 2 * tokens / 1.0, logged[6]
    pause = logged[6]["time"] - logged[4]["time"]
    assert pause >= 1.0  # while the run's clock does count the evaluation


def test_the_runs_tokens_per_s_leaves_its_evaluations_out(tmp_path):
    """run.json's and the done line's tokens/s were over the loop's whole time, evaluations
    included: a run that evaluates often looked slower than it trains."""

    run, result = _fit_with_slow_evaluations(tmp_path, pause=0.4, eval_every=2)
    info = json.loads((run.path / "run.json").read_text())
    assert info["eval_seconds"] >= 1.19  # three evaluations of 0.4 s, counted
    assert result.train_seconds >= info["eval_seconds"]  # the run's clock keeps them
    # six toy steps take milliseconds: over the whole clock the rate is < tokens / 1.2 s
    assert info["tokens_per_s"] > 2 * info["tokens"] / 1.2, info
    assert result.tokens_per_s == pytest.approx(info["tokens_per_s"], rel=1e-3)


def test_tensorboard_has_each_evaluation_once_and_the_config(tmp_path):
    """The epoch record repeats the last evaluation: TensorBoard drew every valid/* point
    twice at each epoch's end (a stale one where the epoch ended after it). And the README
    promises each tracker the run's config: TensorBoard got none."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from encoderlab.config import Config
    from encoderlab.runs import Run

    run = Run.create(tmp_path / "runs", "tb", Config(), "pretrain")
    run.log({"step": 5, "epoch": 0.5, "kind": "train", "train/loss": 2.0})
    run.log({"step": 8, "epoch": 0.8, "kind": "eval", "valid/loss": 1.5})
    run.log({"step": 10, "epoch": 1.0, "kind": "epoch", "valid/loss": 1.5})
    run.close()
    acc = EventAccumulator(str(run.path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("valid/loss")] == [(8, 1.5)]
    assert [e.step for e in acc.Scalars("train/loss")] == [5]
    (config,) = acc.Tensors("config/text_summary")
    text = config.tensor_proto.string_val[0].decode()
    assert "train:" in text and "model:" in text


def test_a_line_without_a_bar_gives_the_steps_left_and_an_eta():
    """A log file or a study's arm (no bar) read `step 2160 ... tok/s`: no end, no ETA."""
    from types import SimpleNamespace

    plan = train.Plan(micro_per_epoch=10, steps_per_epoch=10, total_steps=1000, budget_s=None)
    clock = train.Clock(0.0)
    rec = SimpleNamespace(plan=plan, first_log=(100, 10.0), expected_steps=None, clock=clock)
    assert train.Recorder._of_total(rec) == "/1,000"
    assert train.Recorder._eta(rec, 400, 40.0) == "  ETA 0:01:00"  # 600 steps at 10 steps/s
    budget = train.Plan(micro_per_epoch=10, steps_per_epoch=10, total_steps=None, budget_s=300)
    rec = SimpleNamespace(plan=budget, first_log=(100, 10.0), expected_steps=None, clock=clock)
    assert train.Recorder._of_total(rec) == ""
    assert train.Recorder._eta(rec, 400, 240.0) == "  ETA 0:01:00"  # the budget left
    rec.first_log = None  # the first line: no pace yet, no budget either
    rec.plan = plan
    assert train.Recorder._eta(rec, 400, 40.0) == ""


def _table_line(progress, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(progress.make_tasks_table(progress.tasks))
    return console.file.getvalue().strip()


def test_predict_and_tokenizing_bars_keep_their_counts_and_eta_whole_at_80_columns(monkeypatch):
    """The predict and corpus bars had their own columns, which rich shortened alike on an
    80-column terminal ("ETA 0:0…"); they share the training bar's columns now."""
    from encoderlab.data.shards import _Bar
    from encoderlab.inference import _RowsBar

    _on_a_terminal(monkeypatch)
    rows = _RowsBar(98_765)
    try:
        rows.advance(50_000)
        rows.advance(1)
        for width in (80, 60):
            line = _table_line(rows.bar, width)
            assert "50000/98765" in line.replace(",", ""), line
            assert re.search(r"ETA (\d+:\d\d:\d\d|-:--:--)$", line) and len(line) <= width, line
    finally:
        rows.close()
    with _Bar(2_000_000_000, "tokenize corpus.txt") as bar:
        bar.advance(1_000_000_000, 123_456_789)
        line = _table_line(bar.bar, 80)
        assert "1.0/2.0 GB" in line and re.search(r"ETA \S+$", line) and len(line) <= 80, line
