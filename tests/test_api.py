"""The Python API (`import encoderlab as el`): in-memory data, load, predict, evaluate, report."""

import json
import random
import re
from pathlib import Path

import pytest

import encoderlab as el
from conftest import FILL, sentiment_rows
from encoderlab.errors import UserError
from encoderlab.memdata import to_rows, write_rows


def rows(n: int, seed: int) -> list[dict]:
    return sentiment_rows(n, seed, max_fill=8)


def config(tmp_path) -> dict:
    return {
        "name": "api",
        "runs_dir": str(tmp_path / "runs"),
        "task": {"type": "classification", "label_column": "target", "max_len": 32},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
        "train": {"batch_size": 16, "lr": 3e-3, "epochs": 3, "warmup_steps": 0},
    }


def quiet(msg: str) -> None:
    pass


def test_finetune_from_dicts_then_load_predict_evaluate_report(tmp_path):
    yaml_file = tmp_path / "cfg.yaml"
    import yaml

    yaml_file.write_text(yaml.safe_dump(config(tmp_path)))
    run = el.finetune(
        yaml_file,
        overrides={"train.epochs": 4, "name": "dicts"},
        train=rows(200, 0),
        valid=rows(40, 1),
        say=quiet,
    )
    info = json.loads((run / "run.json").read_text())
    assert run.name.startswith("dicts") and info["status"] == "finished"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 4
    train_file = saved["task"]["train"]  # the rows, as a file the run names (resumable)
    assert train_file.endswith(".jsonl") and "/.data/train-" in train_file
    assert len(open(train_file).read().splitlines()) == 200

    model = el.load(run)
    assert model.task == "classification" and model.labels == ["0", "1"]
    preds = model.predict(["a great lovely superb film", "awful dull sad plot"])
    assert [p["label"] for p in preds] == ["1", "0"]
    assert all(set(p["scores"]) == {"0", "1"} and 0.5 <= p["score"] <= 1 for p in preds)
    assert model.predict("nice")[0]["label"] in ("0", "1")  # one string is one text
    for bad in ([1], ["fine", None]):  # what a notebook may hand over: one line, not a TypeError
        with pytest.raises(el.UserError, match="not a string"):
            model.predict(bad)

    metrics = el.evaluate(model, data=rows(30, 2), say=quiet)
    assert metrics["acc"] > 0.8 and metrics["extra"]["examples"] == 30
    assert list((run / "eval").glob("file-eval-*.json"))  # as `encoderlab evaluate` writes

    html = el.report([run], out=tmp_path / "report")
    assert (
        html.name == "report.html" and run.name in (tmp_path / "report" / "report.md").read_text()
    )


def test_finetune_from_a_dataframe_and_a_dataset(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(rows(160, 3))
    df.loc[5, "text"] = None  # pandas' missing value: skipped and counted, as in a file
    said: list[str] = []
    run = el.finetune(config(tmp_path), overrides=["train.epochs=2"], train=df, say=said.append)
    assert any("skipped 1 rows with empty text" in m for m in said)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished"

    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(rows(40, 4))
    metrics = el.evaluate(run, data=ds, say=quiet)
    assert metrics["extra"]["examples"] == 40


def test_in_memory_data_fails_like_a_file(tmp_path):
    cfg = config(tmp_path)
    with pytest.raises(
        UserError, match=r"^train rows \(.*train-\w+\.jsonl\): no gold labels found \(no column"
    ):
        el.finetune(cfg, train=[{"text": "a", "label": 1}] * 20, say=quiet)
    with pytest.raises(UserError, match="train: no rows"):
        el.finetune(cfg, train=[], say=quiet)
    with pytest.raises(UserError, match="train: row 1 is a str"):
        el.finetune(cfg, train=[{"text": "a"}, "b"], say=quiet)
    with pytest.raises(UserError, match="train: expected a file path"):
        el.finetune(cfg, train=42, say=quiet)
    with pytest.raises(UserError, match="unknown config key 'train.epoch'"):
        el.finetune(cfg, overrides={"train.epoch": 1}, train=rows(10, 0), say=quiet)


def test_rows_for_tagging_and_qa_become_their_formats(tmp_path):
    conll = write_rows(
        [
            {"tokens": ["john", "runs"], "tags": ["B-PER", "O"]},
            {"tokens": ["mary"], "tags": ["B-PER"]},
        ],
        "tagging",
        tmp_path,
        "train",
    )
    assert conll.read_text() == "john B-PER\nruns O\n\nmary B-PER\n\n"
    hf_squad = {
        "id": "q1",
        "title": "t",
        "context": "the capital is oslo .",
        "question": "capital?",
        "answers": {"text": ["oslo"], "answer_start": [15]},
    }
    # QA rows stay datasets' squad rows (.jsonl), read by the row reader (SQuAD 2.0's empty
    # answers, the split by context where a row has no title)
    written = write_rows([hf_squad], "qa", tmp_path, "train")
    (row,) = [json.loads(line) for line in written.read_text().splitlines()]
    assert row == hf_squad and written.suffix == ".jsonl"
    again = write_rows([hf_squad], "qa", tmp_path, "train")
    assert len(list(tmp_path.glob("train-*.jsonl"))) == 1 and again == written  # same rows, file
    with pytest.raises(UserError, match="row 0, word 0"):
        write_rows([{"tokens": ["new york"], "tags": ["B-LOC"]}], "tagging", tmp_path, "x")
    assert to_rows([{"n": float("nan")}], "x") == [{"n": None}]


def test_import_encoderlab_is_light_and_exposes_the_api():
    import subprocess
    import sys

    code = "import sys, encoderlab as el; print('torch' in sys.modules, callable(el.finetune))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    with pytest.raises(AttributeError):
        el.no_such_function  # noqa: B018


def test_tagging_from_rows_predicts_entities(tmp_path):
    rng = random.Random(0)
    sentences = []
    for _ in range(60):
        words = [rng.choice(FILL) for _ in range(6)]
        tags = ["O"] * 6
        i = rng.randint(0, 5)
        words[i], tags[i] = rng.choice(["john", "mary", "anna"]), "B-PER"
        sentences.append({"tokens": words, "tags": tags})
    cfg = config(tmp_path)
    cfg["task"] = {"type": "tagging", "max_len": 32}
    run = el.finetune(cfg, overrides={"train.epochs": 6}, train=sentences, say=quiet)
    model = el.load(run)
    (row,) = model.predict("the movie john was")
    assert row["tokens"] == ["the", "movie", "john", "was"] and row["tags"][2] == "B-PER"
    entities = [{k: v for k, v in e.items() if k != "score"} for e in row["entities"]]
    assert {"type": "PER", "start": 2, "end": 3, "text": "john"} | {
        "char_start": 10,
        "char_end": 14,
    } in entities
    # each word's tag probability; the row's and each entity's score is its lowest word's
    assert len(row["tag_scores"]) == 4 and all(0 < p <= 1 for p in row["tag_scores"])
    assert row["score"] == min(row["tag_scores"])
    for e in row["entities"]:
        assert e["score"] == min(row["tag_scores"][e["start"] : e["end"]])
    # an entity is a slice of the text as given, with its characters (words were rejoined
    # by one space: 'john' happened to survive, 'the\tmovie' would not)
    text = "the\tmovie  john was"
    (row,) = model.predict(text)
    entities = [e for e in row["entities"] if e["type"] == "PER"]
    assert [(e["char_start"], e["char_end"], e["text"]) for e in entities] == [(11, 15, "john")]
    assert row["truncated_words"] == 0


def test_tagging_words_past_max_len_are_said_and_marked(tmp_path, capsys):
    """Words past task.max_len came back as O with no word of it anywhere but finetune's log:
    predict, evaluate and the API say so (stderr on the CLI) and API rows carry the count."""
    from conftest import run_cli

    rng = random.Random(0)
    sentences = [{"tokens": [rng.choice(FILL) for _ in range(4)] + ["john"],
                  "tags": ["O"] * 4 + ["B-PER"]} for _ in range(20)]  # fmt: skip
    cfg = config(tmp_path)
    cfg["task"] = {"type": "tagging", "max_len": 12}
    run = el.finetune(cfg, overrides={"train.max_steps": 2}, train=sentences, say=quiet)
    model = el.load(run)
    long = " ".join(["the movie john was"] * 10)  # 40 words; 10 tokens fit
    said: list[str] = []
    cut, whole = model.predict([long, "the movie"], say=said.append)
    assert cut["truncated_words"] > 0 and whole["truncated_words"] == 0
    assert cut["truncated_words"] == sum(p == 0.0 for p in cut["tag_scores"])
    (warning,) = said
    assert warning.startswith("warning: task.max_len=12 cut") and "(first: text 0)" in warning
    said.clear()
    metrics = el.evaluate(
        model, data=[{"tokens": long.split(), "tags": ["O"] * 40}], say=said.append
    )
    assert any(m.startswith("warning: ") and "cut" in m for m in said) and "loss" in metrics
    capsys.readouterr()
    assert run_cli("predict", run, "--text", long) == 0
    out = capsys.readouterr()
    assert "warning: task.max_len=12 cut" in out.err and "cut" not in out.out
    conll = tmp_path / "long.conll"
    conll.write_text("".join(f"{w} O\n" for w in long.split()), encoding="utf-8")
    assert run_cli("evaluate", run, "--data", conll) == 0
    assert f"warning: {conll}: task.max_len=12 cut" in capsys.readouterr().err
    # plain sentences, one per line, on a CoNLL run: read as sentences (the last word was
    # taken for a tag: "tag 'was' is not O, B-TYPE or I-TYPE")
    plain = tmp_path / "plain.txt"
    plain.write_text("the movie john was\nmary was\n", encoding="utf-8")
    assert run_cli("predict", run, "--input", plain) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert [r["tokens"] for r in rows] == ["the movie john was", "mary was"]
    assert "read as one sentence per line" in out.err


def test_pretrain_then_finetune_on_it(tmp_path, corpus_txt):
    from test_pretrain_cli import write_config

    cfg_file = write_config(tmp_path, [corpus_txt])
    pre = el.pretrain(cfg_file, overrides={"train.max_steps": 4, "train.eval_every": 2}, say=quiet)
    info = json.loads((pre / "run.json").read_text())
    assert info["kind"] == "pretrain" and info["status"] == "finished" and info["steps"] == 4
    cfg = config(tmp_path)
    del cfg["tokenizer"], cfg["model"]
    run = el.finetune(
        cfg, overrides={"init": str(pre), "train.epochs": 1}, train=rows(60, 5), say=quiet
    )
    assert json.loads((run / "run.json").read_text())["status"] == "finished"


def test_arguments_of_the_wrong_type_are_user_errors_not_library_tracebacks(tmp_path):
    """What a notebook hands the API by mistake: a UserError naming the argument, never a
    TypeError from inside, and never a silent reading (a dict's keys as texts, a str's
    characters as overrides)."""
    import pandas as pd

    from encoderlab.errors import UserError

    rows = [
        {"text": f"a {'good' if i % 2 else 'bad'} film {i}", "label": str(i % 2)} for i in range(40)
    ]
    cfg = {
        "runs_dir": str(tmp_path / "runs"),
        "task": {"type": "classification", "max_len": 16},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 100},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 16},
        "train": {"batch_size": 8, "max_steps": 2},
    }
    run = el.finetune(cfg, train=rows, say=lambda m: None)
    model = el.load(run)
    for bad in (5, None, {"text": "a"}, b"bytes"):
        with pytest.raises(UserError, match="texts: give a string or a list"):
            model.predict(bad)
    # what a notebook holds: a column of a DataFrame, a numpy array, a generator
    import numpy as np

    want = model.predict(["a b", "c"], say=None)
    for texts in (pd.Series(["a b", "c"]), np.array(["a b", "c"]), (t for t in ["a b", "c"])):
        assert model.predict(texts, say=None) == want, type(texts)
    with pytest.raises(UserError, match="texts: give one text per item .* not 2-D"):
        model.predict(np.array([["a", "b"]]))
    with pytest.raises(UserError, match="batch_size"):
        model.predict(["a"], batch_size=-1)
    for bad in (None, 3):
        with pytest.raises(UserError, match="run: expected a run directory"):
            el.load(bad)
    with pytest.raises(UserError, match="overrides: give a dict"):
        el.finetune(cfg, train=rows, overrides="train.epochs=1", say=lambda m: None)
    with pytest.raises(UserError, match="out: give the folder"):
        el.report([run], out=None)
    assert not (tmp_path / "None").exists()
    frame = pd.DataFrame({**{k: [r[k] for r in rows] for k in ("text", "label")},
                          "when": pd.date_range("2020-01-01", periods=40)})  # fmt: skip
    assert "acc" in el.evaluate(run, frame, say=lambda m: None)  # a date column is text
    assert "acc" in el.evaluate(run, frame, say=None)  # None: quiet
    with pytest.raises(UserError, match="row 0: .*set value"):
        el.evaluate(run, [{"text": "a", "label": "1", "tags": {1, 2}}], say=lambda m: None)


@pytest.mark.parametrize("fmt", ["klue-ner", "kmou"])
def test_evaluate_rows_on_a_run_trained_on_korean_files(tmp_path, fmt):
    """el.evaluate wrote tagging rows as CoNLL and read them as the run's task.format: a KLUE
    or KMOU run answered 'no gold labels found' / 'no sentences found', naming its own file."""
    from test_task_tagging import KLUE_HEADER, klue_sentence

    marked = [
        f"<{n}:PS>는 어제 <{p}:LC>에 갔다." for n, p in (("김철수", "서울"), ("이영희", "부산"))
    ]
    if fmt == "klue-ner":
        text = KLUE_HEADER + "\n".join(klue_sentence(f"s{i}", m) for i, m in enumerate(marked * 6))
    else:
        raw = [re.sub(r"<([^:]+):[A-Z]+>", r"\1", m) for m in marked]  # 2016klp blocks
        text = "\n".join(f"; {r}\n${m}\n" for r, m in zip(raw * 6, marked * 6, strict=True))
    train = tmp_path / "train.txt"
    train.write_text(text, encoding="utf-8")
    cfg = config(tmp_path)
    cfg["task"] = {"type": "tagging", "train": str(train), "format": fmt, "max_len": 32}
    run = el.finetune(cfg, overrides={"train.max_steps": 2}, say=quiet)
    rows = [{"tokens": ["김철수는", "어제", "서울에", "갔다."], "tags": ["B-PS", "O", "B-LC", "O"]}]
    metrics = el.evaluate(run, data=rows * 3, say=quiet)
    assert metrics["extra"]["examples"] == 3 and {"f1", "loss"} <= set(metrics)
    (written,) = (run / "eval").glob("file-eval-*.json")
    data = json.loads(written.read_text())["data"]
    assert data.startswith(str(run / "inputs")) and data.endswith(".conll")  # as README says


def test_qa_cut_questions_are_said_and_marked_and_evaluate_records_the_loss(tmp_path, capsys):
    from conftest import run_cli

    context = "the capital of norway is oslo and the capital of sweden is stockholm ."
    rows = [
        {"id": f"q{i}", "title": f"t{i % 4}", "context": context, "question": q,
         "answers": [{"text": a, "answer_start": context.index(a)}]}
        for i, (q, a) in enumerate([("capital of norway ?", "oslo"),
                                    ("capital of sweden ?", "stockholm")] * 6)
    ]  # fmt: skip
    cfg = config(tmp_path)
    cfg["task"] = {"type": "qa", "max_len": 32, "max_query_len": 8, "doc_stride": 8}
    run = el.finetune(cfg, overrides={"train.max_steps": 2}, train=rows, valid=rows, say=quiet)
    model = el.load(run)
    said: list[str] = []
    long_q = "what is the capital of norway , the country in the north of europe ?"
    cut, whole = model.predict([long_q, "capital ?"], pairs=context, say=said.append)
    assert cut["truncated_question_tokens"] > 0 and whole["truncated_question_tokens"] == 0
    (warning,) = said
    assert warning.startswith("warning: 1 questions are longer than task.max_query_len=8")
    # the API's words for a missing context (it said "--text QUESTION and --text-pair CONTEXT")
    with pytest.raises(UserError, match=r"^pairs: a QA model needs each question's context; "):
        model.predict([long_q])
    with pytest.raises(UserError, match=r"pairs\[1\] is None"):
        model.predict(["a", "b"], pairs=[context, None])
    # evaluate on the valid rows: the loss eval/valid.json has, and what was cut, on stderr
    valid = json.loads((run / "eval" / "valid.json").read_text())
    metrics = el.evaluate(model, data=rows, say=quiet)
    assert metrics["loss"] == pytest.approx(valid["loss"], rel=1e-4)
    (written,) = (run / "eval").glob("file-eval-*.json")
    assert json.loads(written.read_text())["loss"] == metrics["loss"]
    data = tmp_path / "long.jsonl"  # the rows as written, the first question made long
    lines = [json.loads(line) for line in Path(valid["data"]).read_text().splitlines()]
    lines[0]["question"] = long_q
    data.write_text("".join(json.dumps(x) + "\n" for x in lines))
    capsys.readouterr()
    assert run_cli("evaluate", run, "--data", data) == 0
    out = capsys.readouterr()
    assert f"warning: {data}: 1 questions are longer than task.max_query_len=8" in out.err
    assert "loss" in json.loads((run / "eval" / "file-long.json").read_text())


def test_report_takes_any_collection_of_runs(tmp_path):
    """A set or a generator of runs is a collection, as a list is: it was refused as
    "run: expected a run directory ..., not set"."""
    from test_report import classification_run

    a = classification_run(tmp_path / "runs", "cls", right={0, 1}, valid_accs=[0.2, 0.2])
    b = classification_run(tmp_path / "runs", "cnn", right={0}, valid_accs=[0.1, 0.1])
    html = el.report({a, b}, out=tmp_path / "set")
    assert a.name in html.read_text() and b.name in html.read_text()
    assert el.report((p for p in [a]), out=tmp_path / "gen").is_file()
    for bad in (5, {"run": str(a)}):
        with pytest.raises(UserError, match="run: expected a run directory"):
            el.report(bad, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_errors_about_in_memory_rows_name_the_row_not_the_file_written(tmp_path):
    """Rows are written to a file under runs_dir and read by the task's reader; its errors
    named that file (`.data/train-<hash>.json: data[3].paragraphs[0].qas[0]...`), a path the
    user never gave: they name the row now."""
    cfg = config(tmp_path)
    with pytest.raises(
        UserError, match=r"^train row 2: the task.label_column value is a JSON list"
    ) as e:
        el.finetune(cfg, train=rows(2, 0) + [{"text": "x", "target": [1]}], say=quiet)
    assert ".data" not in str(e.value)
    qa = {**cfg, "task": {"type": "qa", "max_len": 32, "max_query_len": 8}}
    ok = {
        "question": "who?",
        "context": "bob is here",
        "answers": [{"text": "bob", "answer_start": 0}],
    }
    bad = {**ok, "answers": [{"text": "bob", "answer_start": "x"}]}
    with pytest.raises(UserError, match=r"^train row 1: answers\[0\]\.answer_start: expected int"):
        el.finetune(qa, train=[ok, bad], say=quiet)
    tagging = {**cfg, "task": {"type": "tagging", "max_len": 32}}
    sentence = {"tokens": ["john", "runs"], "tags": ["B-PER", "O"]}
    wrong = {"tokens": ["mary", "sings"], "tags": ["B-PER", "Q-X"]}
    with pytest.raises(UserError, match=r"^train row 1, word 1: tag 'Q-X'"):
        el.finetune(tagging, train=[sentence, wrong], say=quiet)


def test_a_dataset_with_class_labels_gives_their_names(tmp_path):
    """datasets' own shapes: a ClassLabel label, and conll2003's tokens + ner_tags ids."""
    datasets = pytest.importorskip("datasets")
    from encoderlab.memdata import to_rows

    feats = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_list(
        [{"text": "a", "label": 1}, {"text": "b", "label": 0}], features=feats
    )
    assert [r["label"] for r in to_rows(ds, "train")] == ["pos", "neg"]
    ner = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    sentences = datasets.Dataset.from_list(
        [{"tokens": ["john", "runs"], "ner_tags": [1, 0]}], features=ner
    )
    conll = write_rows(to_rows(sentences, "train"), "tagging", tmp_path, "train")
    assert conll.read_text() == "john B-PER\nruns O\n\n"
    ids = [{"tokens": ["john"], "ner_tags": [1]}]  # ds.to_list() or to_pandas(): names lost
    with pytest.raises(
        UserError, match=r"train: row 0: 'ner_tags' holds tag ids without their names"
    ):
        write_rows(ids, "tagging", tmp_path, "train")


def test_in_memory_squad_v2_rows_read_as_the_same_rows_in_a_file(tmp_path):
    """In-memory QA rows were rewritten as SQuAD 1.1 JSON: SQuAD 2.0's empty answers were
    refused even with task.unanswerable, rows without a title became one article each (the
    same context on both sides of the split), and unequal answer lists lost answers."""
    from encoderlab.config import TaskConfig
    from encoderlab.memdata import read_format
    from encoderlab.tasks.qa import QATask

    context = "the capital is oslo ."
    rows = [
        {"id": "a", "context": context, "question": "capital?",
         "answers": {"text": ["oslo"], "answer_start": [15]}},
        {"id": "b", "context": context, "question": "moon?",
         "answers": {"text": [], "answer_start": []}},
    ]  # fmt: skip
    path = write_rows(rows, "qa", tmp_path, "train")
    cfg = TaskConfig(type="qa", unanswerable=True, format=read_format("qa"))
    examples = QATask().read(str(path), cfg)
    assert [ex["answers"] for ex in examples] == [[{"text": "oslo", "answer_start": 15}], []]
    assert {ex["article"] for ex in examples} == {context}  # one context, one side of a split
    uneven = [{**rows[0], "answers": {"text": ["oslo", "x"], "answer_start": [15]}}]
    with pytest.raises(UserError):
        QATask().read(str(write_rows(uneven, "qa", tmp_path, "bad")), cfg)


def test_a_config_object_keeps_its_unset_defaults_unset(tmp_path):
    """A loaded config given back with overrides was dumped whole, so the epochs default no
    one wrote capped an override's max_steps (50 steps ended after one epoch) and a
    fine-tuning config's lr default stopped being fitted to the init."""
    from encoderlab.api import make_config
    from encoderlab.config import Config as PretrainConfig
    from encoderlab.config import FinetuneConfig

    pre = make_config(PretrainConfig(), {"train.max_steps": 50}, PretrainConfig)
    assert (pre.train.max_steps, pre.train.epochs) == (50, None)
    written = make_config(
        PretrainConfig(train={"epochs": 2}), {"train.max_steps": 50}, PretrainConfig
    )
    assert (written.train.max_steps, written.train.epochs) == (50, 2)  # both written: both hold
    ft = FinetuneConfig.model_validate({"task": {"train": "t.csv"}})
    again = make_config(ft, {"init": "hf:some/model"}, FinetuneConfig)
    assert "lr" not in again.train.model_fields_set  # still fitted to the init when it runs


def test_a_config_changed_in_place_keeps_its_changes(tmp_path):
    """Dumping only the sections marked as set lost `cfg.task.type = ...` on a config built
    with no arguments (the task section itself was never marked)."""
    from encoderlab.api import make_config
    from encoderlab.config import FinetuneConfig

    cfg = FinetuneConfig()
    cfg.task.type = "tagging"
    cfg.task.train = "x.conll"
    cfg.train.lr = 1e-5
    cfg.seed = 7
    got = make_config(cfg, {"train.max_steps": 2}, FinetuneConfig)
    assert (got.task.type, got.task.train, got.train.lr, got.seed) == (
        "tagging",
        "x.conll",
        1e-5,
        7,
    )
    assert (got.train.max_steps, got.train.epochs) == (2, None)  # no epochs default caps it


def test_a_run_leaves_the_process_as_it_found_it_and_bad_arguments_are_one_line(tmp_path):
    """train.threads stayed set after the run (the next run with threads: null ran on it and
    recorded it), the global RNGs stayed reseeded; resume=5 and say="quiet" were TypeErrors
    from deep inside, a pretraining config given to finetune was taken as an empty one."""
    import random

    import torch

    from encoderlab.config import Config

    rows = [{"text": f"{'good' if i % 2 else 'bad'} film {i}", "label": i % 2} for i in range(40)]
    before = torch.get_num_threads()
    random.seed(123)
    expected = random.random()
    random.seed(123)
    cfg = {
        "runs_dir": str(tmp_path / "runs"),
        "tokenizer": {"vocab_size": 100},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 16},
        "train": {"max_steps": 2, "threads": 1 if before > 1 else 2},
        "task": {"max_len": 16},
    }
    el.finetune(cfg, train=rows, say=None)
    assert torch.get_num_threads() == before
    assert random.random() == expected
    for call, message in (
        (lambda: el.finetune(resume=5), "resume: expected a run directory"),
        (lambda: el.pretrain(resume=5), "resume: expected a run directory"),
        (lambda: el.finetune(cfg, train=rows, say="quiet"), "say: give a function"),
        (lambda: el.finetune(Config(), train=rows), "config: a Config where a FinetuneConfig"),
        (lambda: el.embed("x", ["a"], normalize="no"), "normalize: give True or False"),
        (lambda: el.embed("x", {"a", "b"}), "texts: a set has no order"),
    ):
        with pytest.raises(UserError, match=message):
            call()


def test_a_yaml_config_is_read_as_the_cli_reads_it(tmp_path, monkeypatch):
    """make_config read the YAML itself: no "the file is beside the config" hint (the CLI's),
    and a scratch config given init= got a warning per unused model key, not the CLI's note."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "train.jsonl").write_text('{"text": "a", "label": 1}\n')
    (exp / "ft.yaml").write_text("task: {train: train.jsonl}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no such file from here .* write task.train: exp"):
        el.finetune("exp/ft.yaml", overrides={"train.max_steps": 1}, say=None)


@pytest.mark.parametrize(
    "name, text, fmt",
    [
        ("valid.txt", "text,label\ngood,1\nbad,0\n", "csv"),
        ("valid.csv", "text\tlabel\ngood\t1\n", "tsv"),
    ],
)
def test_a_format_set_for_a_file_beside_in_memory_rows_is_not_silently_dropped(
    tmp_path, name, text, fmt
):
    """train= in memory set task.format to auto for every split, so a valid .txt file the
    config said was csv failed with "cannot tell the format from the name; set task.format";
    a tsv named .csv was read as csv (its name): only a name that says the format reads the
    same."""
    valid = tmp_path / name
    valid.write_text(text)
    rows = [{"text": f"film {i}", "label": i % 2} for i in range(20)]
    cfg = {"runs_dir": str(tmp_path / "runs"), "task": {"format": fmt, "valid": str(valid)}}
    with pytest.raises(UserError, match=rf"task.format={fmt} is every split's, .* name task.valid"):
        el.finetune(cfg, train=rows, say=None)


def test_a_dataframe_with_numbered_columns_is_read_by_their_numbers(tmp_path):
    """pd.DataFrame(list_of_lists) names its columns 0, 1: task.text_column: 0 was refused
    with a message about an internal .jsonl file ("column positions are for .csv/.tsv")."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame([[f"{'good' if i % 2 else 'bad'} film {i}", i % 2] for i in range(30)])
    cfg = {
        "runs_dir": str(tmp_path / "runs"),
        "tokenizer": {"vocab_size": 100},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 16},
        "train": {"max_steps": 1},
        "task": {"max_len": 16, "text_column": 0, "label_column": 1, "id_column": None},
    }
    run = el.finetune(cfg, train=df, say=None)
    assert sorted(json.loads((run / "labels.json").read_text())) == ["0", "1"]
    df[2] = df[0]  # two text columns by number
    cfg["task"] |= {"text_column": [0, 2], "label_column": 1}
    assert (el.finetune(cfg, train=df, say=None) / "run.json").is_file()


def test_warnings_about_in_memory_rows_name_the_rows_not_the_file_written(tmp_path):
    """A skipped row was reported at "<runs>/.data/train-<hash>.jsonl: ... (first at line 2)",
    a file the user never named, its line 2 being their row 1; evaluate's errors said "eval"
    where the argument is `data`."""
    rows = [{"text": f"{'good' if i % 2 else 'bad'} film {i}", "label": i % 2} for i in range(30)]
    rows[1]["text"] = ""
    cfg = {
        "runs_dir": str(tmp_path / "runs"),
        "tokenizer": {"vocab_size": 100},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 16},
        "train": {"max_steps": 1},
        "task": {"max_len": 16},
    }
    lines: list[str] = []
    run = el.finetune(cfg, train=rows, say=lines.append)
    skipped = [x for x in lines if "empty text" in x]
    assert (
        skipped and "train rows: skipped 1 rows" in skipped[0] and "(first at row 1)" in skipped[0]
    )
    assert not any(".data" in x for x in lines), lines
    with pytest.raises(UserError, match=r"^data row 0: the task.text_column value is a JSON list"):
        el.evaluate(run, [{"text": ["a", "b"], "label": 1}], say=None)


def test_a_row_error_naming_its_word_is_not_given_a_second_word(tmp_path):
    """`data row 2, word 0: tag 'B-FOO' (word 2, 'Y') ...`: the CoNLL line is the sentence's
    first, so the added word contradicted the one the message names."""
    from encoderlab.memdata import in_rows_terms

    conll = tmp_path / "x.conll"
    conll.write_text("a O\nBob B-PER\n\nx O\nY B-FOO\n")
    named = UserError(f"{conll}:4: tag 'B-FOO' (word 2, 'Y') never appears in the training data")
    assert str(in_rows_terms(named, {conll: "data"})).startswith("data row 1: tag 'B-FOO' (word 2")
    plain = UserError(f"{conll}:5: a bad tag")
    assert str(in_rows_terms(plain, {conll: "data"})) == "data row 1, word 1: a bad tag"


def test_a_format_set_beside_in_memory_rows_still_reads_a_file_named_by_its_format(tmp_path):
    """The check above refused a valid.csv with task.format=csv too (it worked before)."""
    valid = tmp_path / "valid.csv"
    valid.write_text("text,label\ngood film,1\nbad film,0\n")
    rows = [{"text": f"{'good' if i % 2 else 'bad'} film {i}", "label": i % 2} for i in range(20)]
    cfg = {
        "runs_dir": str(tmp_path / "runs"),
        "tokenizer": {"vocab_size": 100},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 16},
        "train": {"max_steps": 1},
        "task": {"max_len": 16, "format": "csv", "valid": str(valid)},
    }
    assert (el.finetune(cfg, train=rows, say=None) / "run.json").is_file()


def test_splits_given_as_arguments_replace_the_yaml_files_before_they_are_looked_for(
    tmp_path, monkeypatch
):
    """The config's own train.csv, beside it and not found from here, was refused although
    train= and valid= replaced it."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "train.csv").write_text("text,label\na,1\n")
    (exp / "ft.yaml").write_text(
        "task: {train: train.csv, max_len: 16}\ntokenizer: {vocab_size: 100}\n"
        "model: {d_model: 16, n_head: 2, d_ff: 32, n_layer: 1, max_len: 16}\n"
        f"train: {{max_steps: 1}}\nruns_dir: {tmp_path / 'runs'}\n"
    )
    monkeypatch.chdir(tmp_path)
    rows = [{"text": f"{'good' if i % 2 else 'bad'} film {i}", "label": i % 2} for i in range(20)]
    assert (el.finetune("exp/ft.yaml", train=rows, say=None) / "run.json").is_file()
