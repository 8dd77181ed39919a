"""The metrics the field reports, against known values (sklearn's and seqeval's documented
examples), the regression task end to end, `task.metric` picking the best checkpoint, and
bootstrap intervals in report.md."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, shared
from encoderlab.config import FinetuneConfig, TaskConfig, build, load_config
from encoderlab.errors import UserError
from encoderlab.finetuning import finetune
from encoderlab.reporting import build_report
from encoderlab.tasks import get_task, scores
from encoderlab.tasks.tagging import entity_scores

ROOT = Path(__file__).resolve().parents[1]


def cm(gold, pred, k):
    return scores.confusion_matrix(np.array(gold), np.array(pred), k)


def test_mcc_known_values() -> None:
    assert scores.mcc(cm([1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 1], 2)) == pytest.approx(1 / 3)
    # sklearn's docstring: matthews_corrcoef([+1, +1, +1, -1], [+1, -1, +1, +1]) = -0.33...
    assert scores.mcc(cm([1, 1, 1, 0], [1, 0, 1, 1], 2)) == pytest.approx(-1 / 3)
    assert scores.mcc(cm([0, 1, 0], [0, 0, 0], 2)) == 0.0  # undefined: 0, as sklearn
    assert scores.mcc(cm([0, 1, 2], [0, 1, 2], 3)) == pytest.approx(1.0)


def test_f1_variants_known_values() -> None:
    # sklearn's f1_score docstring: macro 0.267, weighted 0.267 (micro = accuracy 0.333)
    m = cm([0, 1, 2, 0, 1, 2], [0, 2, 1, 0, 0, 1], 3)
    assert scores.macro_f1(m) == pytest.approx(0.26666666)
    assert scores.weighted_f1(m) == pytest.approx(0.26666666)
    assert scores.accuracy(m) == pytest.approx(1 / 3)
    # binary f1 of the positive class: tp 2, fp 1, fn 1 -> 2/3; weighted by support 3:1
    b = cm([1, 1, 1, 0], [1, 1, 0, 1], 2)
    assert scores.class_f1(b, 1) == pytest.approx(2 / 3)
    assert scores.weighted_f1(b) == pytest.approx((3 * 2 / 3 + 1 * 0) / 4)


def test_macro_f1_leaves_out_a_class_absent_from_gold_and_predictions() -> None:
    # sklearn f1_score([0, 1, 0, 1], [0, 1, 1, 1], average="macro") = 0.7333: class 2, a
    # training label this validation set lacks and nobody predicts, is not averaged in as 0
    m = cm([0, 1, 0, 1], [0, 1, 1, 1], 3)
    assert scores.macro_f1(m) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert scores.macro_f1(cm([1, 1, 1], [1, 1, 1], 2)) == 1.0  # perfect, one class present
    # a class only in gold or only in predictions still counts, with F1 0
    assert scores.macro_f1(cm([0, 1, 2, 0], [0, 1, 1, 0], 3)) == pytest.approx((1 + 2 / 3) / 3)
    # the same on a bootstrap stack: each resample averages over its own classes
    stack = np.stack([m, cm([0, 1, 2], [0, 1, 2], 3)])
    assert scores.macro_f1(stack) == pytest.approx([(2 / 3 + 4 / 5) / 2, 1.0])
    task = get_task("classification")
    examples = [{"label": g} for g in ["a", "b", "a", "b"]]
    preds = [{"label": p, "probs": [0.0, 0.0, 0.0]} for p in ["a", "b", "b", "b"]]
    got = task.metrics(preds, examples, TaskConfig(), ["a", "b", "c"])
    assert got["macro_f1"] == pytest.approx(0.7333333333)


def test_roc_auc_and_correlations_known_values() -> None:
    # sklearn's roc_auc_score docstring example
    assert scores.roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert scores.roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    x, y = np.array([1, 2, 3, 4, 5.0]), np.array([2, 4, 5, 4, 5.0])
    assert float(scores.pearson(x, y)) == pytest.approx(0.7745966692)  # scipy.stats.pearsonr
    assert scores.spearman(x, y) == pytest.approx(0.7378647873)  # scipy.stats.spearmanr (ties)
    assert scores.ranks(np.array([3.0, 1.0, 3.0])).tolist() == [2.5, 1.0, 2.5]


def test_bootstrap_interval_is_fixed_and_brackets_the_value() -> None:
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, gold, 1 - gold)
    acc = float(scores.accuracy(scores.confusion_matrix(gold, pred, 2)))

    def stat(idx):
        return scores.accuracy(scores.confusion_stack(gold, pred, 2, idx))

    lo, hi = scores.bootstrap_ci(400, stat)
    assert lo < acc < hi and 0.03 < hi - lo < 0.12  # about +-1.96 * sqrt(.8*.2/400)
    assert scores.bootstrap_ci(400, stat) == (lo, hi)


def test_seqeval_strict_iob2() -> None:
    # seqeval's README: an I- that starts a chunk counts in the default mode, not in strict
    gold, pred = [["B-NP", "I-NP", "O"]], [["I-NP", "I-NP", "O"]]
    assert entity_scores(gold, pred)["f1"] == 1.0
    assert entity_scores(gold, pred, strict=True)["f1"] == 0.0
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC"]]
    assert entity_scores(gold, pred, strict=True)["f1"] == pytest.approx(2 / 3)


def test_classification_metrics_binary_and_multiclass() -> None:
    task = get_task("classification")
    examples = [{"label": g} for g in ["no", "yes", "yes", "no", "yes"]]
    probs = [0.2, 0.9, 0.4, 0.6, 0.8]  # P(yes)
    preds = [{"label": "yes" if p > 0.5 else "no", "probs": [1 - p, p]} for p in probs]
    m = task.metrics(preds, examples, TaskConfig(), ["no", "yes"])
    # gold yes,yes,yes / no,no; predicted yes for 2 of 3 yes and 1 of 2 no
    assert m["f1"] == pytest.approx(2 / 3) and m["acc"] == pytest.approx(0.6)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert m["mcc"] == pytest.approx(1 / 6)
    assert m["extra"]["positive_label"] == "yes"
    for name in ("acc", "macro_f1", "weighted_f1", "mcc", "f1"):
        lo, hi = m["extra"]["ci95"][name]
        assert lo <= m[name] <= hi
    m = task.metrics(preds, examples, TaskConfig(positive_label="no"), ["no", "yes"])
    assert m["f1"] == pytest.approx(0.5)  # class "no": tp 1, fp 1, fn 1
    with pytest.raises(UserError, match="positive_label='maybe' is not a label"):
        task.metrics(preds, examples, TaskConfig(positive_label="maybe"), ["no", "yes"])


def test_task_metric_is_validated_and_sets_the_primary() -> None:
    with pytest.raises(UserError, match="task.metric=pearson: classification computes acc, "):
        build(FinetuneConfig, {"task": {"metric": "pearson"}}, "x.yaml")
    t = get_task("tagging", TaskConfig(type="tagging", metric="f1_strict"))
    assert (t.primary_metric, t.primary_mode) == ("f1_strict", "max")
    t = get_task("regression", TaskConfig(type="regression", metric="mse"))
    assert (t.primary_metric, t.primary_mode) == ("mse", "min")
    assert get_task("classification").primary_metric == "acc"


def test_klue_sts_reads_as_pair_regression() -> None:
    path = str(shared("klue", "klue-sts-v1.1_dev.json"))
    cfg = load_config(ROOT / "configs" / "klue_sts.yaml", schema=FinetuneConfig)
    assert Path(cfg.task.train).name == Path(path).name
    ex = get_task("regression").read(path, cfg.task)
    # the annotators' mean score (labels.real-label), not its one-decimal rounding (4.9)
    assert len(ex) == 519 and ex[0]["label"] == pytest.approx(4.857142857) and ex[0]["text_pair"]
    assert all(0.0 <= e["label"] <= 5.0 for e in ex)


WORDS = "the movie plot was and it a very with actor scene music".split()


def _scored_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.randint(0, 4)
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))] + ["good"] * k
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "text": " ".join(words), "score": float(k)})
    return rows


def _tiny(tmp_path: Path, task: dict, rows: list[dict], epochs: int = 4) -> FinetuneConfig:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return build(
        FinetuneConfig,
        {
            "name": "tiny",
            "runs_dir": str(tmp_path / "runs"),
            "task": {"train": str(train), "max_len": 24, **task},
            "tokenizer": {"kind": "wordpiece", "vocab_size": 80},
            "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32,
                      "dropout": 0.0},
            "train": {"batch_size": 16, "lr": 3e-3, "epochs": epochs, "log_every": 5},
        },
        "test",
    )  # fmt: skip


def _evals(run_path: Path, key: str) -> list[float]:
    recs = [json.loads(x) for x in (run_path / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in recs if r.get("kind") == "eval" and key in r]


def test_regression_end_to_end_and_min_metric_picks_best(tmp_path: Path) -> None:
    cfg = _tiny(
        tmp_path, {"type": "regression", "label_column": "score", "metric": "mse"},
        _scored_rows(200, 0), epochs=5,
    )  # fmt: skip
    run, _ = finetune(cfg, say=lambda m: None)
    ev = json.loads((run.path / "eval" / "valid.json").read_text())
    assert ev["pearson"] > 0.5 and set(ev["extra"]["ci95"]) == {"pearson", "spearman", "mse"}
    info = json.loads((run.path / "run.json").read_text())
    mses = _evals(run.path, "valid/mse")
    assert info["best"]["metric"] == "valid/mse" and info["best"]["value"] == min(mses)
    rows = [
        json.loads(x)
        for x in (run.path / "predictions" / "valid.jsonl").read_text().split("\n")
        if x
    ]
    assert isinstance(rows[0]["prediction"], float) and rows[0]["correct"] is None


def test_task_metric_picks_the_checkpoint_and_report_shows_intervals(tmp_path: Path) -> None:
    rows = [{"id": r["id"], "text": r["text"], "label": int(r["score"] >= 2)}
            for r in _scored_rows(200, 1)]  # fmt: skip
    cfg = _tiny(tmp_path, {"metric": "mcc"}, rows)
    run, _ = finetune(cfg, say=lambda m: None)
    info = json.loads((run.path / "run.json").read_text())
    assert info["best"]["metric"] == "valid/mcc"
    assert info["best"]["value"] == max(_evals(run.path, "valid/mcc"))
    ev = json.loads((run.path / "eval" / "valid.json").read_text())
    assert {"mcc", "f1", "roc_auc", "weighted_f1"} <= set(ev)
    build_report([run.path], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "95% bootstrap confidence intervals (1000 resamples" in md
    assert "mcc " in md and "MCC (x100)" in md
    # evaluate --set: another file's layout (no header row, labels in the first column)
    other = tmp_path / "other.tsv"
    other.write_text("".join(f"{r['label']}\t{r['text']}\n" for r in rows[:30]), encoding="utf-8")
    code = run_cli("evaluate", run.path, "--data", other, "--set", "task.columns=[label, text]")
    assert code == 0
    got = json.loads((run.path / "eval" / "file-other.json").read_text())
    assert got["extra"]["examples"] == 30 and "mcc" in got
    assert run_cli("evaluate", run.path, "--data", other, "--set", "train.lr=1") == 2


def test_ranks_rank_each_resample_on_its_own():
    """Spearman's bootstrap reused the full set's ranks; each resample (a row of indices,
    with repeats) is now ranked again, ties at their average rank, as scipy's rankdata."""
    from encoderlab.tasks.scores import ranks

    rng = np.random.default_rng(0)
    rows = rng.integers(0, 5, size=(40, 25)).astype(float)
    for row, got in zip(rows, ranks(rows), strict=True):
        below, equal = (row[None, :] < row[:, None]).sum(1), (row[None, :] == row[:, None]).sum(1)
        assert np.allclose(got, below + (equal + 1) / 2)
    assert ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_the_positive_class_of_glue_style_names_is_the_one_not_negated():
    """GLUE's class names from Hugging Face datasets sort the negated one second, so binary F1
    and ROC-AUC were of "not_duplicate" (QQP), "not_equivalent" (MRPC): the wrong class."""
    from encoderlab.config import TaskConfig
    from encoderlab.tasks.classification import _positive

    cfg = TaskConfig()
    for labels, positive in (
        (["duplicate", "not_duplicate"], "duplicate"),
        (["equivalent", "not_equivalent"], "equivalent"),
        (["spam", "nonspam"], "spam"),
        (["0", "1"], "1"),
        (["negative", "positive"], "positive"),
        (["ham", "spam"], "spam"),
    ):
        assert labels[_positive(labels, cfg)] == positive
    given = TaskConfig(positive_label="not_duplicate")
    assert _positive(["duplicate", "not_duplicate"], given) == 1


def test_a_diverged_regression_has_no_correlation_rather_than_a_made_up_one():
    """NaN predictions gave pearson 0.0 (a NaN denominator taken as 0) and spearman 0.22
    (NaNs ranked last), with a bootstrap interval around them."""
    import math

    task = get_task("regression")
    examples = [{"id": str(i), "line": i, "text": "x", "label": float(i)} for i in range(20)]
    preds = [{"value": float("nan")} for _ in range(19)] + [{"value": 3.0}]
    m = task.metrics(preds, examples, TaskConfig(type="regression"), ["score"])
    assert math.isnan(m["pearson"]) and math.isnan(m["spearman"]) and math.isnan(m["mse"])
    assert "19 predictions are not finite" in m["extra"]["undefined"]
