"""Session 21: a time budget is kept by the whole command, and the run says how it kept it;
what a README walkthrough found."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from encoderlab.config import load_config
from encoderlab.pretraining import pretrain
from encoderlab.runs import Run
from test_audit_budget20 import _Ticking
from test_finetune import base_cfg, sentiment_rows, write_csv
from test_hardening import finetuned_run
from test_pretrain_cli import only_run, write_config


def test_pretraining_counts_its_set_up_in_a_whole_run_budget(tmp_path, corpus_txt):
    """A pretraining budget started at the first training step: the tokenizer and the corpus
    shards (minutes on a big corpus) came on top of it, where fine-tuning's budget counted
    them. A command that began 30 s ago with a 0.5-minute budget has nothing left to train."""
    cfg_file = write_config(
        tmp_path, [corpus_txt], train={"epochs": None, "max_steps": None, "time_budget_min": 0.5}
    )
    cfg = load_config(cfg_file)
    run, result = pretrain(cfg, say=lambda _m: None, started=time.perf_counter() - 30.0)
    assert result.stopped_because == "time budget"
    assert result.step <= 2, result.step
    assert run.info["wall_seconds"] >= 30.0
    assert run.info["time_budget_min"] == 0.5 and run.info["budget_covers"] == "run"


def test_the_done_line_says_how_the_run_kept_its_budget(tmp_path, capsys):
    cfg = base_cfg(tmp_path, train={"epochs": None, "time_budget_min": 0.1})
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    capsys.readouterr()
    assert run_cli("finetune", path) == 0
    out = capsys.readouterr().out
    done = next(line for line in out.splitlines() if line.startswith("done ("))
    assert "of its 0.1-min budget" in done, done
    wall = float(done.split("whole run ")[1].split("s")[0])
    info = only_run(tmp_path).info
    assert abs(wall - info["wall_seconds"]) < 1.0 and 0 < wall < 60, (wall, info["wall_seconds"])


def test_a_resumed_run_gives_this_commands_seconds_not_the_budgets(tmp_path, corpus_txt, capsys):
    cfg = write_config(
        tmp_path, [corpus_txt], train={"epochs": None, "max_steps": None, "time_budget_min": 0.02}
    )
    assert run_cli("pretrain", cfg) == 0
    run = only_run(tmp_path)
    capsys.readouterr()
    assert run_cli("pretrain", "--resume", run.path, "--set", "train.time_budget_min=0.04") == 0
    done = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("done ("))
    assert "this command" in done and "min budget" not in done, done


# ---------------------------------------------------------------------------------------------
# What a README walkthrough found (each failed before its fix)


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> Path:
    return finetuned_run(tmp_path_factory.mktemp("ft"))


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_predict_refuses_text_and_input_together(finetuned, tmp_path, capsys):
    """--text beside --input was dropped without a word (only the file was predicted)."""
    data = write_csv(tmp_path / "t.csv", sentiment_rows(5, 1), ["id", "text"])
    capsys.readouterr()
    assert run_cli("predict", finetuned, "--text", "hi", "--input", data) == 2
    assert "--text and --input: give one or the other" in _error(capsys)
    assert run_cli("predict", finetuned, "--text-pair", "b", "--input", data) == 2
    assert "--text-pair and --input" in _error(capsys)


def test_a_missing_best_checkpoint_is_said_not_silently_replaced(finetuned, tmp_path, capsys):
    """With checkpoints/best-* deleted by hand, predict answered from the newest full
    checkpoint (other weights than the run's best) without a warning."""
    copy = tmp_path / "copy"
    shutil.copytree(finetuned, copy)
    (copy / "run.lock").unlink(missing_ok=True)
    best = Run.open(copy).info["best_checkpoint"]
    assert best.startswith("best-")
    shutil.rmtree(copy / "checkpoints" / best)
    capsys.readouterr()
    assert run_cli("predict", copy, "--text", "a fine film") == 0
    said = capsys.readouterr()
    text = said.out + said.err
    assert f"warning: skipping {copy / 'checkpoints' / best}: missing" in text, text


def test_a_mistyped_key_on_resume_is_unknown_not_forbidden(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt], train={"max_steps": 3})
    assert run_cli("pretrain", cfg) == 0
    run = only_run(tmp_path)
    capsys.readouterr()
    assert run_cli("pretrain", "--resume", run.path, "--set", "train.max_step=40") == 2
    assert "unknown config key 'train.max_step'" in _error(capsys)
    assert run_cli("pretrain", "--resume", run.path, "--set", "model.n_layer=4") == 2
    assert "a resumed run keeps what it trains" in _error(capsys)


def test_model_show_of_a_fine_tuning_config_is_the_model_it_trains(tmp_path, capsys):
    """It showed the encoder with an MLM head (the pretraining model) for a fine-tuning config."""
    cfg = base_cfg(tmp_path, head={"type": "mean"})
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    capsys.readouterr()
    assert run_cli("model", "show", path) == 0
    out = capsys.readouterr().out
    assert "Encoder + mean head" in out and "mlm_head" not in out, out
    head = next(line for line in out.splitlines() if line.startswith("│ head"))
    assert "(1,2)" in head, head  # the training file's two labels


def test_errors_name_where_the_user_gave_the_value(tmp_path, corpus_txt, capsys):
    """--tokenizer was told to "set tokenizer.path"; an API override's unknown key was blamed
    on the (valid) config file."""
    import encoderlab as el
    from encoderlab.errors import UserError

    capsys.readouterr()
    assert run_cli("corpus", "stats", "--corpus", corpus_txt, "--tokenizer", tmp_path / "no") == 2
    err = _error(capsys)
    assert "give --tokenizer a tokenizer.json" in err and "tokenizer.path" not in err, err
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_cfg(tmp_path)), encoding="utf-8")
    for overrides in ({"train.lrr": 1}, ["train.lrr=1"]):
        with pytest.raises(UserError, match=r"^overrides: unknown config key 'train.lrr'"):
            el.finetune(cfg, overrides=overrides, say=None)
    assert not (tmp_path / "runs").exists()  # nothing written


def test_a_budgeted_runs_log_line_counts_to_the_forecast_not_the_epochs():
    """Without a bar (a log file, a study's arm) a 1-minute MiniLM run printed `step 20/645`
    after forecasting 47 steps, and its ETA left out the set-up the budget had spent."""
    from encoderlab.config import TrainConfig
    from encoderlab.train import Clock, Plan, Recorder

    def recorder(budget_s):
        plan = Plan(micro_per_epoch=215, steps_per_epoch=215, total_steps=645, budget_s=budget_s)
        clock = Clock(0.0, setup_s=5.0)
        return Recorder(None, print, None, TrainConfig(), plan, clock, None, None, "acc", "max",
                        None)  # fmt: skip

    rec = recorder(60.0)
    assert rec._of_total() == "/645"  # before the forecast
    rec.expected_steps = 47
    assert rec._of_total() == "/~47"
    assert rec._eta(step=20, seconds=20.0) == "  ETA 0:00:35"  # 60 - 5 of set-up - 20
    plain = recorder(None)
    plain.expected_steps = 47  # a forecast without a budget is the steps themselves
    assert plain._of_total() == "/645"


def test_a_report_written_over_an_earlier_one_says_so(finetuned, tmp_path, capsys):
    out = tmp_path / "rep"
    assert run_cli("report", finetuned, "--out", out) == 0
    assert "replaced" not in capsys.readouterr().out
    assert run_cli("report", finetuned, "--out", out) == 0
    assert "it replaced the earlier report there" in capsys.readouterr().out


def test_qa_predictions_show_a_rounded_score():
    from encoderlab.tasks.qa import QATask

    shown = QATask().show_prediction({}, {"prediction": "Paris", "score": 0.03736393733707667})
    assert shown == "'Paris'  (score 0.037)", shown
    assert QATask().show_prediction({}, {"prediction": "", "score": None}).endswith("(score -)")


def test_model_show_of_a_config_whose_data_is_elsewhere_still_shows_it(tmp_path, capsys):
    cfg = base_cfg(tmp_path)
    cfg["task"]["train"] = str(tmp_path / "not-here.csv")
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    capsys.readouterr()
    assert run_cli("model", "show", path) == 0
    out = capsys.readouterr().out
    assert "Total params" in out and "could not be read from here" in out, out


def test_a_forecast_charges_only_the_evaluations_its_steps_reach():
    """The epoch-end evaluation was charged pro rata on every step (1/steps_per_epoch of it),
    though a short budget never reaches the epoch's end: 1-minute CoNLL and KorQuAD runs under
    MiniLM forecast 6-12 % fewer steps than they made."""
    from encoderlab.config import TrainConfig
    from encoderlab.train import LoopState, Plan, StopRule

    cfg = TrainConfig(batch_size=4, epochs=None, time_budget_min=1, budget_covers="train")
    plan = Plan.of(cfg, rows=4_000)  # 1,000 steps an epoch: its evaluation is out of reach
    clock = _Ticking(setup_s=0.0)
    rule = StopRule(cfg, plan, clock, "acc", valid_rows=1_000, eval_row_s=0.05)  # 50 s each
    state, said = LoopState(), None
    while said is None:
        state.step += 1
        clock.now += 0.1
        said = rule.forecast(state, None, None)
    assert rule.expected_steps - state.step == pytest.approx((60 - clock.now) / 0.1, abs=2), said
    # an evaluation the steps do reach is paid for: 950 steps an epoch, 95 s of steps at most
    plan = Plan.of(cfg, rows=3_800)
    rule = StopRule(
        cfg, plan, _Ticking(setup_s=0.0), "acc", valid_rows=1_000, eval_row_s=0.01
    )  # 10 s
    rule.step_s = 0.1
    assert rule._steps_that_fit(900, 20.0) == 100  # 10 s of steps, then the evaluation at 950


def test_the_log_lines_forecast_follows_the_pace_after_slow_first_steps():
    """A 3-minute NSMC run timed its first steps at 0.119 s and forecast 1,254 steps; it then
    ran at ~0.105 s and made 1,407, its log lines reading "step 1390/~1,254"."""
    from encoderlab.config import TrainConfig
    from encoderlab.train import LoopState, Plan, StopRule

    cfg = TrainConfig(batch_size=4, epochs=None, time_budget_min=1, budget_covers="train")
    plan = Plan.of(cfg, rows=400_000)
    clock = _Ticking(setup_s=0.0)
    rule = StopRule(cfg, plan, clock, "acc")
    state, said = LoopState(), None
    while said is None:  # slow first steps
        state.step += 1
        clock.now += 0.2
        said = rule.forecast(state, None, None)
    first = rule.expected_steps
    assert first == pytest.approx(state.step + (60 - clock.now) / 0.2, abs=2), said
    assert rule.reforecast(state.step) == pytest.approx(first, abs=1)  # the same pace so far
    while clock.now < 30:  # then twice as fast
        state.step += 1
        clock.now += 0.1
    again = rule.reforecast(state.step)
    pace = (clock.now - rule._speed_from[1]) / (state.step - rule._speed_from[0])
    assert again == pytest.approx(state.step + 30 / pace, abs=2) and again > first
    assert rule.expected_steps == again  # what the next log line shows
    # no budget: nothing to re-estimate
    plain = StopRule(TrainConfig(batch_size=4, epochs=1), Plan.of(cfg, rows=400), clock, "acc")
    assert plain.reforecast(100) is None
