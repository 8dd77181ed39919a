"""Multi-label classification: reading label sets in each shape, the loss, the metrics, and a
run end to end (train, predict, evaluate, submission, serving's answer, transformers export)."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from conftest import FILL, GOOD, run_cli, shared
from encoderlab.config import FinetuneConfig, TaskConfig
from encoderlab.errors import UserError
from encoderlab.finetuning import finetune
from encoderlab.inference import scored
from encoderlab.tasks import get_task

SPORT = "football tennis goal match referee stadium".split()


def topic_rows(n: int, seed: int) -> list[dict]:
    """Two independent labels: 'good' (a praising word) and 'sport' (a sports word); a row
    may have both, one or neither."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILL) for _ in range(rng.randint(3, 8))]
        labels = []
        for name, pool in (("good", GOOD), ("sport", SPORT)):
            if rng.random() < 0.5:
                words.insert(rng.randint(0, len(words)), rng.choice(pool))
                labels.append(name)
        rows.append({"id": f"{seed}-{i}", "text": " ".join(words), "labels": labels})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def read(path: Path, **task) -> list[dict]:
    cfg = TaskConfig(type="multilabel", **task)
    return get_task("multilabel").read(str(path), cfg)


# -- reading ---------------------------------------------------------------------------------


def test_label_sets_read_from_lists_separated_text_literals_and_flag_columns(tmp_path):
    lists = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"text": "x", "labels": ["sport", "good"]},
            {"text": "y", "labels": []},  # no label applies: a gold of its own
            {"text": "z", "labels": [3, 27]},  # GoEmotions' ids without names: as text
        ],
    )
    assert [ex["label"] for ex in read(lists, label_column="labels")] == [
        ("good", "sport"),
        (),
        ("3", "27"),
    ]
    text = write_csv(
        tmp_path / "b.csv",
        ["text", "labels"],
        [["x", "sport, good"], ["y", ""], ["z", "['a', 'b']"], ["w", "[3, 27]"]],
    )
    assert [ex["label"] for ex in read(text, label_column="labels")] == [
        ("good", "sport"),
        (),
        ("a", "b"),
        ("3", "27"),
    ]
    piped = write_csv(tmp_path / "c.csv", ["text", "labels"], [["x", "a|b"]])
    got = read(piped, label_column="labels", label_separator="|")
    assert got[0]["label"] == ("a", "b")
    # Jigsaw's shape: a 0/1 column per label, -1 (an unscored test row) is no gold
    flags = write_csv(
        tmp_path / "d.csv",
        ["id", "text", "toxic", "insult"],
        [["1", "x", "1", "0"], ["2", "y", "0", "0"], ["3", "z", "-1", "-1"], ["4", "w", "1", "1"]],
    )
    examples = read(flags, label_column=["toxic", "insult"])
    assert [(ex["id"], ex["label"]) for ex in examples] == [
        ("1", ("toxic",)),
        ("2", ()),
        ("4", ("insult", "toxic")),
    ]
    assert "skipped 1 rows without a gold label" in examples.warnings[0]


def test_pandas_and_numpy_list_texts_nan_and_flag_columns_training_never_sets(tmp_path):
    cells = [
        ["a", "['joy' 'surprise']"],  # numpy's repr (pd.read_parquet, then to_csv)
        ["b", "('anger',)"],  # a tuple
        ["c", "[ 3 27]"],  # numpy ints
        ["d", "(none)"],  # parentheses without quotes: a label's own name
        ["e", "()"],  # an empty tuple: no label applies
        ["f", "{'joy', 'anger'}"],  # a set (a column of sets, to_csv): "{'joy'" was a label
        ["g", "set()"],  # an empty set: was a label named "set()"
        ["h", "{braces}"],  # braces without quotes: a label's own name
    ]
    got = read(write_csv(tmp_path / "n.csv", ["text", "labels"], cells), label_column="labels")
    assert [ex["label"] for ex in got] == [
        ("joy", "surprise"),
        ("anger",),
        ("3", "27"),
        ("(none)",),
        (),
        ("anger", "joy"),
        (),
        ("{braces}",),
    ]
    single = write_jsonl(
        tmp_path / "one.jsonl", [{"text": "x", "labels": [str(i % 2)]} for i in range(12)]
    )
    assert "every row has exactly one label" in read(single, label_column="labels").notes[-1]
    nan = write_jsonl(tmp_path / "nan.jsonl", [{"text": "x", "labels": ["a"]}])
    nan.write_text(nan.read_text() + '{"text": "y", "labels": NaN}\n', encoding="utf-8")
    assert [ex["label"] for ex in read(nan, label_column="labels")] == [("a",)]  # NaN: no gold
    # a 0/1 column that no training row sets is still a label (an output, a submission column)
    flags = write_csv(
        tmp_path / "f.csv", ["text", "toxic", "threat"], [["x", "1", "0"], ["y", "0", "0"]]
    )
    examples = read(flags, label_column=["toxic", "threat"])
    assert get_task("multilabel").label_names(examples) == ["toxic", "threat"]


@pytest.mark.parametrize(
    "header,row,task,expected",
    [
        (["text", "toxic"], ["x", "maybe"], {"label_column": ["toxic"]}, "d.csv:2: label column 'toxic' holds 'maybe'"),
        (["text", "labels"], ["x", "[a, b"], {"label_column": "labels"}, "looks like a list but is not one"),
        (["text", "labels"], ["x", "[__import__('os')]"], {"label_column": "labels"}, "mixes quoted and unquoted"),
        (["text", "toxic"], ["x", "1"], {"label_column": ["toxic", "insult"]}, "no column 'insult'"),
        (["text", "labels"], ["x", "['a', b]"], {"label_column": "labels"}, "mixes quoted and unquoted"),
    ],
)  # fmt: skip
def test_bad_label_cells_are_one_line_errors(tmp_path, header, row, task, expected):
    path = write_csv(tmp_path / "d.csv", header, [row])
    with pytest.raises(UserError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        read(path, **task)


def test_a_label_holding_the_separator_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [{"text": "x", "labels": ["sports,games"]}])
    with pytest.raises(
        UserError, match="s.jsonl:1: label 'sports,games' holds task.label_separator"
    ):
        read(path, label_column="labels")
    assert read(path, label_column="labels", label_separator="|")[0]["label"] == ("sports,games",)
    huge = tmp_path / "h.jsonl"
    huge.write_text('{"text": "x", "labels": [' + "9" * 5000 + "]}\n", encoding="utf-8")
    with pytest.raises(UserError, match="h.jsonl"):
        read(huge, label_column="labels")


def test_label_column_list_and_threshold_are_checked_in_the_config():
    with pytest.raises(ValidationError, match="is for task.type multilabel"):
        TaskConfig(type="classification", label_column=["a", "b"])
    with pytest.raises(ValidationError, match="name each column once"):
        TaskConfig(type="multilabel", label_column=["a", "a"])
    with pytest.raises(ValidationError, match="name at least one label column"):
        TaskConfig(type="multilabel", label_column=[])
    with pytest.raises(ValidationError, match="threshold=1.0 must be between 0 and 1"):
        TaskConfig(type="multilabel", threshold=1.0)


def test_label_names_and_unknown_labels(tmp_path):
    task = get_task("multilabel")
    train = read(
        write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "labels": ["b", "a"]}]),
        label_column="labels",
    )
    assert task.label_names(train) == ["a", "b"]
    valid = read(
        write_jsonl(tmp_path / "v.jsonl", [{"text": "x", "labels": ["c"]}]), label_column="labels"
    )
    with pytest.raises(UserError, match="v.jsonl:1: label 'c' never appears in the training data"):
        task.check_labels(valid, ["a", "b"], str(tmp_path / "v.jsonl"))
    empty = read(
        write_jsonl(tmp_path / "e.jsonl", [{"text": "x", "labels": []}] * 3), label_column="labels"
    )
    with pytest.raises(UserError, match="no training row has a label"):
        task.label_names(empty)


# -- the loss and the metrics ----------------------------------------------------------------


def test_loss_is_binary_cross_entropy_over_rows_with_gold():
    task = get_task("multilabel")
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.2, -0.4], [5.0, 5.0, 5.0]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, -1.0, -1.0]])  # row 3: no gold
    loss, counts = task.loss(logits, {"labels": target})
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:2], target[:2])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert counts["n"].item() == 2 and counts["correct"].item() == 1  # row 1's set is right
    loss.backward()
    assert torch.all(logits.grad[2] == 0)  # the unlabelled row teaches nothing


def test_metrics_match_hand_counts():
    task = get_task("multilabel")
    labels = ["a", "b", "c"]
    gold = [("a",), ("a", "b"), (), ("c",)]
    examples = [{"id": str(i), "label": g} for i, g in enumerate(gold)]
    probs = [[0.9, 0.2, 0.1], [0.8, 0.1, 0.7], [0.1, 0.1, 0.2], [0.3, 0.6, 0.4]]
    preds = [
        {"labels": [labels[j] for j, p in enumerate(ps) if p >= 0.5], "probs": ps} for ps in probs
    ]
    m = task.metrics(preds, examples, TaskConfig(type="multilabel"), labels)
    # tp: a 2; b 0 (fn 1, fp 1); c 0 (fp 1, fn 1) -> micro 2*2 / (2*2 + 2 + 2)
    assert m["micro_f1"] == pytest.approx(4 / 8)
    assert m["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert m["acc"] == pytest.approx(2 / 4)  # rows 1 and 3 exactly right
    # ROC-AUC per label: a 1.0 (both positives above both negatives); b: its positive 0.1
    # ties one negative (0.1) and is below 0.2 and 0.6: 0.5 / 3; c: 0.4 above 0.1 and 0.2,
    # below 0.7: 2 / 3
    assert m["roc_auc"] == pytest.approx((1.0 + 0.5 / 3 + 2 / 3) / 3)
    extra = m["extra"]
    assert extra["per_class"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert set(extra["ci95"]) == {"micro_f1", "macro_f1", "acc"}
    # one cut for every label: at 0.8 (a's two rows) micro-F1 is 2*2 / (2 + 0 + 4) = 2/3, the
    # best (0.4 also gives 2/3; the first found is kept)
    assert extra["best_threshold"] == 0.8
    assert extra["best_threshold_micro_f1"] == pytest.approx(2 / 3)
    # each label's own best cut: a 0.8 (F1 1.0), b 0.1 (its gold ties a negative: 2/5), c 0.4
    # (2/3); applied together: tp 4, fp 4, fn 0 -> 8 / 12
    assert extra["best_thresholds"] == {"a": 0.8, "b": 0.1, "c": 0.4}
    assert extra["best_thresholds_micro_f1"] == pytest.approx(2 / 3)
    cut = TaskConfig(type="multilabel", threshold={"b": 0.05, "c": 0.35})
    outputs = [np.log(np.array(ps) / (1 - np.array(ps))) for ps in probs]  # logits
    features = [{"example_index": i} for i in range(len(probs))]
    decoded = task.decode(outputs, features, examples, cut, labels)
    assert [d["labels"] for d in decoded] == [["a", "b"], ["a", "b", "c"], ["b"], ["b", "c"]]
    with pytest.raises(UserError, match=r"task.threshold: 'joy' is not one of this run's labels"):
        task.decode(
            outputs,
            features,
            examples,
            TaskConfig(type="multilabel", threshold={"joy": 0.3}),
            labels,
        )
    with pytest.raises(ValidationError, match="threshold=1.5 must be between 0 and 1"):
        TaskConfig(type="multilabel", threshold={"a": 1.5})
    lo, hi = extra["ci95"]["micro_f1"]
    assert lo <= m["micro_f1"] <= hi


def test_one_answer_and_baseline_name_label_sets():
    task = get_task("multilabel")
    rows = [{"gold": ["a"] if i % 3 else [], "prediction": []} for i in range(30)]
    assert task.one_answer(rows) == "answers no label for all 30 examples (33% of them are that)"
    rows[0]["prediction"] = ["a"]
    assert task.one_answer(rows) is None  # one row of 30 differs: not 99 %
    floor = task.baseline(rows)
    assert floor.startswith("always answering 'a', the most common label set, scores micro-F1 0.")


# -- end to end ------------------------------------------------------------------------------


def _cfg(tmp_path: Path, **task) -> FinetuneConfig:
    train = write_jsonl(tmp_path / "train.jsonl", topic_rows(300, 0))
    test = write_jsonl(
        tmp_path / "test.jsonl",
        [{k: v for k, v in r.items() if k != "labels"} for r in topic_rows(20, 5)],
    )
    return FinetuneConfig.model_validate(
        {
            "name": "ml",
            "runs_dir": str(tmp_path / "runs"),
            "task": {"type": "multilabel", "train": str(train), "test": str(test), "label_column": "labels", "max_len": 32, **task},
            "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
            "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 2, "max_len": 32, "dropout": 0.0},
            "train": {"batch_size": 16, "lr": 3e-3, "epochs": 6, "log_every": 5, "warmup_steps": 0},
        }
    )  # fmt: skip


def test_multilabel_learns_and_writes_predictions_submission_and_answers(tmp_path, capsys):
    run, _ = finetune(_cfg(tmp_path), say=lambda m: None)
    final = run.info["final"]
    assert final["micro_f1"] > 0.9 and final["acc"] > 0.8, final
    rows = [
        json.loads(x) for x in (run.path / "predictions" / "valid.jsonl").read_text().splitlines()
    ]
    assert {"gold", "prediction", "probabilities", "correct"} <= rows[0].keys()
    assert np.mean([r["correct"] for r in rows]) == pytest.approx(final["acc"])
    with open(run.path / "submission.csv") as f:
        sub = list(csv.reader(f))
    assert sub[0] == ["id", "labels"] and len(sub) == 21
    assert {s for r in sub[1:] for s in r[1].split(",") if s} <= {"good", "sport"}
    assert run_cli("predict", run.path, "--text", "football great movie") == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("good (0.") and ", sport (0." in out
    strict = [
        "predict",
        run.path,
        "--text",
        "football great movie",
        "--set",
        "task.threshold=0.9999",
    ]
    assert run_cli(*strict) == 0  # a decision rule, also for --text
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("(no label)")
    assert (
        run_cli(
            "evaluate", run.path, "--data", tmp_path / "train.jsonl", "--set", "task.threshold=0.99"
        )
        == 0
    )
    strict = json.loads((run.path / "eval" / "file-train.json").read_text())
    assert strict["extra"]["threshold"] == 0.99  # a stricter cut, per file, as a reading option
    # a cut per label, as evaluate's best_thresholds gives them
    per_label = ["--set", "task.threshold={sport: 0.9999}"]
    assert run_cli("predict", run.path, "--text", "football great movie", *per_label) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("good (0.")
    assert run_cli("predict", run.path, "--text", "x", "--set", "task.threshold={joy: 0.3}") == 2
    assert "'joy' is not one of this run's labels (good, sport)" in capsys.readouterr().err
    answer = scored({"labels": ["sport"], "probs": [0.2, 0.9]}, {}, ["good", "sport"])
    assert answer == {"label": ["sport"], "score": 0.9, "scores": {"good": 0.2, "sport": 0.9}}


def test_flag_columns_give_one_probability_column_each_even_one_never_set(tmp_path):
    rows = [
        [r["id"], r["text"], int("good" in r["labels"]), int("sport" in r["labels"]), 0]
        for r in topic_rows(120, 2)
    ]
    train = write_csv(tmp_path / "flags.csv", ["id", "text", "good", "sport", "never"], rows)
    test = write_csv(tmp_path / "t.csv", ["id", "text"], [["a", "great match"], ["b", "the plot"]])
    cfg = _cfg(tmp_path, train=str(train), test=str(test), label_column=["good", "sport", "never"])
    cfg.train.epochs = 2
    run, _ = finetune(cfg, say=lambda m: None)
    assert json.loads((run.path / "labels.json").read_text()) == ["good", "sport", "never"]
    with open(run.path / "submission.csv") as f:
        sub = list(csv.reader(f))
    assert sub[0] == ["id", "good", "sport", "never"] and [r[0] for r in sub[1:]] == ["a", "b"]
    assert all(0.0 <= float(x) <= 1.0 for r in sub[1:] for x in r[1:])


@pytest.mark.slow
def test_multilabel_on_conll_sentences_and_its_transformers_export(tmp_path):
    """A real multi-label task made at test time from CoNLL-2003 (which entity types does a
    sentence hold; nothing is written outside tmp_path): scratch learns above the floor, and
    the transformers export gives the run's probabilities."""
    transformers = pytest.importorskip("transformers")

    def sentences(path: Path, limit: int) -> list[dict]:
        rows, words, types = [], [], set()
        for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if words:
                    rows.append(
                        {"id": str(len(rows)), "text": " ".join(words), "labels": sorted(types)}
                    )
                words, types = [], set()
                if len(rows) == limit:
                    break
                continue
            words.append(parts[0])
            if parts[-1] != "O":
                types.add(parts[-1].split("-")[-1])
        return rows

    train = write_jsonl(tmp_path / "train.jsonl", sentences(shared("conll2003", "eng.train"), 3000))
    valid = write_jsonl(tmp_path / "valid.jsonl", sentences(shared("conll2003", "eng.testa"), 600))
    cfg = FinetuneConfig.model_validate(
        {
            "runs_dir": str(tmp_path / "runs"),
            "task": {"type": "multilabel", "train": str(train), "valid": str(valid), "label_column": "labels", "max_len": 64},
            "model": {"d_model": 128, "n_head": 2, "d_ff": 256, "n_layer": 2, "max_len": 64},
            "head": {"type": "pooler"},
            "train": {"epochs": 3, "batch_size": 32, "lr": 1e-3},
        }
    )  # fmt: skip
    run, _ = finetune(cfg, say=lambda m: None)
    final = run.info["final"]
    assert final["micro_f1"] > 0.55, final  # always answering the most common set scores ~0.3
    out = tmp_path / "hf"
    assert run_cli("export", run.path, "--to-hf", out) == 0
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.problem_type == "multi_label_classification"
    tok = transformers.AutoTokenizer.from_pretrained(out)
    rows = [
        json.loads(x) for x in (run.path / "predictions" / "valid.jsonl").read_text().splitlines()
    ][:8]
    batch = tok(
        [r["input"] for r in rows],
        truncation=True,
        max_length=64,
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        probs = torch.sigmoid(model(**batch).logits).numpy()
    names = [model.config.id2label[i] for i in range(probs.shape[1])]
    for r, p in zip(rows, probs, strict=True):
        assert [r["probabilities"][n] for n in names] == pytest.approx(p.tolist(), abs=1e-4)


def test_the_validation_split_is_stratified_per_label():
    """Each label has valid_ratio of its examples in validation, to within one, rare labels
    and empty label sets included; the split is the same for a seed and whole groups stay
    whole with task.group_column."""
    from collections import Counter

    from encoderlab.tasks.multilabel import iterative_stratification

    rng = random.Random(0)
    names = [f"l{i}" for i in range(12)]
    weights = [1 / (i + 1) ** 1.5 for i in range(12)]  # l11 has ~40 of 4,000 examples
    sets = [
        tuple(sorted(set(rng.choices(names, weights, k=rng.choice([0, 1, 1, 2, 3])))))
        for _ in range(4000)
    ]
    held = iterative_stratification(sets, 400, seed=0)
    assert len(held) == 400
    total = Counter(x for s in sets for x in s)
    valid = Counter(x for i in held for x in sets[i])
    for x, n in total.items():
        assert abs(valid[x] - 0.1 * n) <= 1, (x, valid[x], n)
    assert (
        iterative_stratification(sets, 400, seed=0)
        == held
        != iterative_stratification(sets, 400, seed=1)
    )
    task = get_task("multilabel")
    examples = [{"id": str(i), "label": s, "group": str(i // 4)} for i, s in enumerate(sets)]
    train, val = task.split(examples, TaskConfig(type="multilabel", valid_ratio=0.1), 0)
    assert {ex["id"] for ex in val} == {str(i) for i in held} and len(train) == 3600
    grouped = TaskConfig(type="multilabel", valid_ratio=0.1, group_column="g")
    train, val = task.split(examples, grouped, 0)
    assert not {ex["group"] for ex in train} & {ex["group"] for ex in val}


def test_the_model_card_applies_a_threshold_per_label(capsys):
    """The exported model card's snippet decides as the run does, with a cut per label."""
    from types import SimpleNamespace

    from encoderlab import hf

    lines = hf._card_usage("BertForSequenceClassification", 64, False, 2, threshold={"sport": 0.9})
    out = SimpleNamespace(logits=torch.tensor([[2.0, 1.0]]))  # sigmoid: 0.88, 0.73
    model = SimpleNamespace(config=SimpleNamespace(id2label={0: "good", 1: "sport"}))
    namespace = {"tokenizer": lambda *a, **k: {}, "model": lambda **k: out}
    namespace["model"].config = model.config  # type: ignore[attr-defined]
    exec("\n".join(lines), namespace)  # noqa: S102 - the card's own lines, written here
    assert capsys.readouterr().out.strip() == "['good']"  # sport's 0.73 is under its 0.9
    assert hf._card_threshold({"task": {"threshold": {"sport": 0.9}}}) == {"sport": 0.9}


def test_thresholds_found_and_checked_before_any_work(tmp_path, capsys):
    """A label with no positive gets the cut that predicts none; a label task.threshold names
    that the run does not have stops a run before its folder is made; the stratified split
    holds exactly valid_ratio of the rows however the labels fall."""
    from encoderlab.tasks.multilabel import iterative_stratification

    task = get_task("multilabel")
    probs = [[0.9, 0.8], [0.8, 0.3], [0.1, 0.2], [0.2, 0.1]]
    examples = [{"id": str(i), "label": g} for i, g in enumerate([("a",), ("a",), (), ()])]
    preds = [{"labels": [], "probs": p} for p in probs]
    extra = task.metrics(preds, examples, TaskConfig(type="multilabel"), ["a", "b"])["extra"]
    assert extra["best_thresholds"]["b"] > 0.999 and extra["best_thresholds_micro_f1"] == 1.0
    rng = np.random.default_rng(2)
    names = [f"l{j}" for j in range(20)]
    sets = [tuple(x for x in names if rng.random() < 0.1) for _ in range(2000)]
    assert len(iterative_stratification(sets, 200, 2)) == 200
    assert len(iterative_stratification([()] * 10, 3, 0)) == 3
    assert len(iterative_stratification([("a",)] * 10, 3, 0)) == 3
    cfg = _cfg(tmp_path)
    cfg.task.threshold = {"nope": 0.3}
    with pytest.raises(UserError, match="'nope' is not one of this run's labels"):
        finetune(cfg, say=lambda m: None)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    with pytest.raises(ValidationError, match="threshold is for task.type multilabel"):
        TaskConfig(type="classification", threshold=0.3)
    assert TaskConfig(type="multilabel", threshold={1: 0.3}).threshold == {"1": 0.3}
    with pytest.raises(ValidationError, match="threshold for 'a': True is not a number"):
        TaskConfig(type="multilabel", threshold={"a": True})


def test_a_perfect_model_is_not_called_collapsed_when_its_sets_are_written_in_other_orders():
    """one_answer compared the gold tuple (sorted) with the prediction (in the columns'
    order): a model right on every row 'answered pos, neg for all 20 (0% of them are that)'."""
    task = get_task("multilabel")
    rows = [{"gold": ["neg", "pos"], "prediction": ["pos", "neg"], "correct": True}] * 20
    assert task.one_answer(rows) is None
    # and prediction rows write gold in the labels' order, as the prediction is
    ex = [{"id": "0", "line": 2, "text": "x", "label": ("neg", "pos")}]
    (row,) = task.prediction_rows(
        [{"labels": ["pos", "neg"], "probs": [0.9, 0.8]}], ex, ["pos", "neg"]
    )
    assert row["gold"] == ["pos", "neg"] == row["prediction"] and row["correct"] is True


def test_the_split_never_holds_out_every_example_of_a_label():
    """The top-up to exactly k held out a rare label's only example (5 of 200 random splits):
    an output never trained on a positive, scored as a miss, without a word."""
    from encoderlab.config import TaskConfig

    sets = [("13", "32"), ("14",), ("22",), ("14", "18"), ("14",), ("22",), ("32",), ("15",)]
    sets += [("19",), ("24",), ("14",), ("14",), ("14", "18"), ("14",), ("24",), ("4", "9")]
    sets += [("15", "16"), ("16", "26"), ("14",), ("32",), ("28",)]
    ex = [{"id": str(i), "line": i + 2, "text": f"t{i}", "label": s} for i, s in enumerate(sets)]
    task = get_task("multilabel")
    train, valid = task.split(ex, TaskConfig(type="multilabel", valid_ratio=0.1), 199)
    assert len(valid) == 2 and len(train) == 19
    assert {x for e in valid for x in e["label"]} <= {x for e in train for x in e["label"]}
    rng = random.Random(0)
    for seed in range(200):
        n, k = rng.randint(20, 200), rng.randint(3, 40)
        weights = [1 / (j + 1) ** 1.5 for j in range(k)]
        sets = [
            tuple(
                sorted(set(rng.choices([str(j) for j in range(k)], weights, k=rng.randint(0, 3))))
            )
            for _ in range(n)
        ]
        ex = [{"id": str(i), "line": i, "text": "t", "label": s} for i, s in enumerate(sets)]
        train, valid = task.split(ex, TaskConfig(type="multilabel", valid_ratio=0.1), seed)
        assert len(train) + len(valid) == n and abs(len(valid) - round(0.1 * n)) <= 1
        trained = {x for e in train for x in e["label"]}
        assert {x for e in valid for x in e["label"]} <= trained, seed
