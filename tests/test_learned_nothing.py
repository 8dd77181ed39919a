"""A run whose best checkpoint gives one answer to everything says so (console, eval JSON,
report), so a majority-class accuracy is never read as a result."""

import json

from encoderlab.finetuning import finetune
from encoderlab.inference import evaluate_file
from encoderlab.reporting import build_report
from encoderlab.tasks import get_task
from test_finetune import base_cfg, build, write_csv


def cls_rows(preds, golds):
    return [{"gold": g, "prediction": p} for p, g in zip(preds, golds, strict=True)]


def test_classification_one_label_for_every_row_is_named():
    task = get_task("classification")
    same = task.one_answer(cls_rows(["0"] * 40, ["0"] * 24 + ["1"] * 16))
    assert same == "answers '0' for all 40 examples (60% of them are '0')"
    nearly = task.one_answer(cls_rows(["1"] * 199 + ["0"], ["0"] * 100 + ["1"] * 100))
    assert nearly is not None and nearly.startswith("answers '1' for 199 of the 200 examples")


def test_classification_that_varies_or_cannot_be_judged_is_not_flagged():
    task = get_task("classification")
    assert task.one_answer(cls_rows(["0"] * 30 + ["1"] * 10, ["0"] * 20 + ["1"] * 20)) is None
    # the gold is one label too: answering it is right, not a collapse
    assert task.one_answer(cls_rows(["0"] * 40, ["0"] * 40)) is None
    assert task.one_answer(cls_rows(["0"] * 5, ["0", "1", "0", "1", "1"])) is None  # too few
    unlabelled = [{"gold": None, "prediction": "0"}] * 40
    assert task.one_answer(unlabelled) is None
    assert get_task("pair").one_answer(cls_rows(["a"] * 20, ["a", "b"] * 10)) is not None


def test_regression_constant_prediction_is_named():
    task = get_task("regression")
    gold = [float(i % 5) for i in range(50)]
    flat = task.one_answer([{"gold": g, "prediction": 2.0 + 1e-4 * i} for i, g in enumerate(gold)])
    assert flat is not None and flat.startswith("predicts about 2 for all 50 examples")
    spread = task.one_answer([{"gold": g, "prediction": 0.5 * g} for g in gold])
    assert spread is None


def test_tagging_without_any_entity_is_named():
    task = get_task("tagging")
    rows = [{"gold": "B-PER O", "n_gold_entities": 1, "n_pred_entities": 0}] * 12
    assert task.one_answer(rows) == "tags no entity in all 12 sentences (they hold 12)"
    found = rows[:-1] + [{"gold": "B-PER O", "n_gold_entities": 1, "n_pred_entities": 1}]
    assert task.one_answer(found) is None
    no_gold = [{"gold": "O O", "n_gold_entities": 0, "n_pred_entities": 0}] * 12
    assert task.one_answer(no_gold) is None


def test_a_run_that_cannot_learn_warns_and_records_it(tmp_path):
    """Every text the same: the model cannot tell the rows apart, so it answers one label."""
    rows = [{"id": i, "text": "the very same words", "target": int(i % 3 == 0)} for i in range(300)]
    train = write_csv(tmp_path / "same.csv", rows, ["id", "text", "target"])
    cfg = base_cfg(tmp_path, task={"train": str(train)}, train={"epochs": 1})
    said: list[str] = []
    run, _ = finetune(build(cfg), say=said.append)
    warnings = [s for s in said if s.startswith("warning: the best checkpoint answers")]
    assert len(warnings) == 1, said
    assert "it learned nothing; try train.lr=3e-4, the usual rate" in warnings[0]
    assert "(this run: 3e-3)" in warnings[0]
    ev = json.loads((run.path / "eval" / "valid.json").read_text())
    assert ev["learned_nothing"].startswith("answers '0' for all ")

    evaluated: list[str] = []
    evaluate_file(run.path, str(train), say=evaluated.append)
    assert any("the model answers '0' for all 300 examples" in s for s in evaluated), evaluated

    html = build_report([run.path], tmp_path / "report")
    md = (html.parent / "report.md").read_text()
    assert f"{run.path.name}: the best checkpoint answers '0' for all" in md
    # the floor every classification report gives: the majority label of its validation set
    assert "always answering '0', the most common label, scores accuracy" in md


def test_baseline_is_the_majority_label_share():
    rows = cls_rows(["1"] * 40, ["0"] * 30 + ["1"] * 10)
    assert get_task("classification").baseline(rows) == (
        "always answering '0', the most common label, scores accuracy 0.750 on these 40 examples"
    )
    assert get_task("classification").baseline(rows[:5]) is None  # too few to say
    assert get_task("regression").baseline([{"gold": 1.0, "prediction": 2.0}] * 20) is None
