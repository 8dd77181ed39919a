"""hf: imports across architectures (audit): wrapped RoBERTa-style position offsets, byte-level
BPE tokenizers without a prefix space on pre-tokenized words, ALBERT's pooler, and ONNX graphs
of encoders without a segment table. Tiny checkpoints built in tmp_path, offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import synthetic_lines
from encoderlab.config import TaskConfig
from encoderlab.errors import UserError
from encoderlab.tasks.registry import task_class
from encoderlab.tokenizer import load_tokenizer, save_tokenizer, special_ids

transformers = pytest.importorskip("transformers")

from encoderlab import hf  # noqa: E402
from test_hf import (  # noqa: E402
    TINY,
    bert_kw,
    byte_level_bpe,
    ft_config,
    make_checkpoint,
    quiet,
    save_random,
    write_roberta_tokenizer,
)


def write_gpt2_style_tokenizer(d: Path) -> int:
    """A byte-level BPE as roberta-base ships it: add_prefix_space off (a word at the start of a
    text has no "Ġ"), with the tokenizer_config.json transformers writes."""
    from tokenizers import processors

    d.mkdir(parents=True, exist_ok=True)
    tok = byte_level_bpe(add_prefix_space=False)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False
    )
    fast = transformers.RobertaTokenizerFast(tokenizer_object=tok, add_prefix_space=False)
    fast.save_pretrained(str(d))
    return len(fast)


def roberta_kw(n: int) -> dict:
    return bert_kw(n, max_position_embeddings=TINY["max_pos"] + 2) | {
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "type_vocab_size": 1,
    }


@pytest.mark.parametrize("arch", ["data2vec-text", "roberta-prelayernorm"])
def test_wrapped_roberta_style_model_keeps_its_position_offset(tmp_path, arch):
    """Their position ids start at padding_idx + 1, as RoBERTa's: 42 rows hold 40 tokens.
    The wrapped model's max_len used to be all 42, so task.max_len=42 passed the check and a
    long text ended in an IndexError inside transformers instead of a one-line error."""
    d = tmp_path / arch
    n = write_roberta_tokenizer(d)
    config_class = transformers.AutoConfig.for_model(arch).__class__
    save_random(d, config_class(**roberta_kw(n)))
    imp = hf.import_checkpoint(str(d), say=quiet)
    assert not imp.converted and imp.model_cfg.max_len == TINY["max_pos"]
    ids = torch.full((2, imp.model_cfg.max_len), 7)
    with torch.no_grad():  # the longest input it allows runs
        imp.encoder.eval()(ids, torch.ones_like(ids), torch.zeros_like(ids))
    from encoderlab.finetuning import finetune

    cfg = ft_config(tmp_path, "classification", init=f"hf:{d}")
    cfg.task.max_len = TINY["max_pos"] + 2
    with pytest.raises(UserError, match=r"task.max_len=42 is longer than the encoder's max_len=40"):
        finetune(cfg, say=quiet)


def test_byte_level_checkpoint_tokenizes_words_as_in_running_text(tmp_path):
    """Tagging encodes words one by one (is_pretokenized). With roberta-base's
    add_prefix_space=False each word was tokenized as if it began the text (no "Ġ"): tokens the
    model hardly saw mid-sentence, and more of them. transformers needs add_prefix_space=True
    for pre-tokenized input; the imported tokenizer now has it, and keeps it when saved."""
    d = tmp_path / "roberta"
    n = write_gpt2_style_tokenizer(d)
    save_random(d, transformers.RobertaConfig(**roberta_kw(n)))
    imp = hf.import_checkpoint(str(d), say=quiet)
    tok = imp.tokenizer
    assert special_ids(tok) == {"pad": 1, "unk": 3, "cls": 0, "sep": 2, "mask": 4}
    words = synthetic_lines(3)[2].split()
    running = tok.encode(" ".join(words), add_special_tokens=False)
    pieces = tok.encode(words, is_pretokenized=True, add_special_tokens=False)
    assert pieces.ids == running.ids
    firsts = {w: t for t, w in reversed(list(zip(pieces.tokens, pieces.word_ids, strict=True)))}
    assert len(firsts) == len(words) and all(t.startswith("Ġ") for t in firsts.values())
    # the tagging task's features hold the running-text tokens between <s> and </s>
    cfg = TaskConfig.model_validate({"type": "tagging", "train": "x", "max_len": 64})
    task = task_class("tagging")()
    example = {"tokens": words, "tags": ["O"] * len(words)}
    (feat,) = task.encode([example], tok, cfg, ["O"])
    assert feat["input_ids"].tolist() == [0, *running.ids, 2]
    # offsets still land on the words (QA reads answers through them)
    text = " ".join(words)
    (start, end), *_ = running.offsets
    assert text[start:end] == words[0][: end - start] and start == 0
    # the run's saved tokenizer (and so predict and export) tokenize the same way
    again = load_tokenizer(save_tokenizer(tok, tmp_path / "saved"))
    assert again.encode(words, is_pretokenized=True, add_special_tokens=False).ids == pieces.ids
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
    assert hf_tok([words], is_split_into_words=True)["input_ids"][0] == [0, *running.ids, 2]


def test_wrapped_albert_pooler_head_starts_from_the_trained_pooler(tmp_path):
    """ALBERT names its pooler `pooler` (Linear, then pooler_activation tanh), not BERT's
    `pooler.dense`: the pooler head used to start random while the trained one sat unused."""
    d = make_checkpoint(tmp_path, "albert")
    imp = hf.import_checkpoint(str(d), say=quiet)
    assert not imp.converted and imp.pooler is not None
    from safetensors.torch import load_file

    sd = load_file(str(d / "model.safetensors"))
    key = next(k for k in sd if k.endswith("pooler.weight"))
    assert torch.equal(imp.pooler["weight"], sd[key].float())
    assert torch.equal(imp.pooler["bias"], sd[key.replace("weight", "bias")].float())


def test_onnx_graph_of_an_encoder_without_segments_takes_all_three_inputs(tmp_path):
    """An encoder without a segment table (converted RoBERTa / XLM-R / DistilBERT, wrapped
    DeBERTa) never reads token_type_ids; the exporter dropped that input, and onnxruntime
    refused the documented three inputs ("Invalid input name: token_type_ids")."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from encoderlab.finetuning import finetune
    from encoderlab.onnx_export import INPUTS, example_inputs, export_onnx, run_logits_model
    from encoderlab.runs import Run

    cfg = ft_config(tmp_path, "classification", model={"n_segments": 0})
    run, _ = finetune(cfg, say=quiet)
    out = export_onnx(run.path, tmp_path / "model.onnx", say=quiet)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(INPUTS)
    assert json.loads(out.with_name("model.onnx.json").read_text())["inputs"] == list(INPUTS)
    model, _ = run_logits_model(Run.open(run.path))
    x = example_inputs(100, 3, 11)
    with torch.no_grad():
        want = model(*(x[k] for k in INPUTS)).numpy()
    (got,) = session.run(["logits"], {k: v.numpy() for k, v in x.items()})
    assert float(np.abs(got - want).max()) < 1e-4


def test_unknown_relative_name_says_it_is_no_local_folder_either(tmp_path, monkeypatch):
    """ "models/minilm" from the wrong directory looks like a hub name; offline, the error said
    only that the hub could not be reached."""
    monkeypatch.chdir(tmp_path)

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(UserError, match=r"nor is it a folder under") as e:
        hf.import_checkpoint("models/minilm", say=quiet)
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)


def test_pairs_from_a_roberta_tokenizer_have_its_double_separator(tmp_path):
    """Sentence pairs and QA were built as <s> a </s> b </s>; RoBERTa's own pair template (and
    so transformers' `tokenizer(a, b)` on an exported run) is <s> a </s></s> b </s>: the run
    trained on another input than its export is fed. A BERT tokenizer keeps one [SEP]."""
    from encoderlab.tokenizer import pair_separator

    d = tmp_path / "roberta"
    n = write_gpt2_style_tokenizer(d)
    save_random(d, transformers.RobertaConfig(**roberta_kw(n)))
    tok = hf.import_checkpoint(str(d), say=quiet).tokenizer
    assert pair_separator(tok) == [2, 2]
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(d))
    a, b = (" ".join(line.split()[:6]) for line in synthetic_lines(2))  # no cut at max_len
    cfg = TaskConfig.model_validate({"type": "pair", "train": "x", "max_len": 64})
    (feat,) = task_class("pair")().encode(
        [{"text": a, "text_pair": b, "label": "x"}], tok, cfg, ["x", "y"]
    )
    assert feat["input_ids"].tolist() == hf_tok(" " + a, " " + b)["input_ids"]
    qa_cfg = TaskConfig.model_validate(
        {"type": "qa", "train": "x", "max_len": 64, "max_query_len": 16}
    )
    example = {"id": "q", "question": a, "context": b, "answers": []}
    (qa_feat,) = task_class("qa")().encode([example], tok, qa_cfg, [])
    q_ids = tok.encode(a, add_special_tokens=False).ids
    assert qa_feat["input_ids"][: len(q_ids) + 3].tolist() == [0, *q_ids, 2, 2]
    # a BERT-style tokenizer: one [SEP] between the texts, as before
    bert = make_checkpoint(tmp_path, "bert")
    bert_tok = hf.import_checkpoint(str(bert), say=quiet).tokenizer
    sep = special_ids(bert_tok)["sep"]
    assert pair_separator(bert_tok) == [sep]
