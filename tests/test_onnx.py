"""`export --to-onnx`: onnxruntime's logits equal PyTorch's within 1e-4 for any head, at two
different batch sizes and lengths from one graph (dynamic axes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from encoderlab.onnx_export import INPUTS, example_inputs, run_logits_model
from encoderlab.runs import Run

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from test_hf import ft_config, quiet  # noqa: E402

TOL = 1e-4


@pytest.mark.parametrize(
    "task, head, position",
    [
        ("classification", "cnn", "learned"),
        ("qa", "pooler", "learned"),
        ("pair", "cls", "alibi"),
        ("tagging", "pooler", "learned"),
    ],
)
def test_onnx_matches_pytorch_at_two_shapes(tmp_path, task, head, position):
    from encoderlab.finetuning import finetune

    cfg = ft_config(tmp_path, task, head={"type": head}, model={"position": position})
    run, _ = finetune(cfg, say=quiet)
    out = tmp_path / "onnx" / "model.onnx"
    mine = out.parent / "tokenizer" / "tokenizer.json"  # a user's own tokenizer beside it
    mine.parent.mkdir(parents=True)
    mine.write_text("{}")
    assert run_cli("export", run.path, "--to-onnx", out) == 0
    meta = json.loads(out.with_name("model.onnx.json").read_text())
    assert meta["inputs"] == list(INPUTS) and meta["opset"] >= 17
    # the head that made the logits: a token-level task's own (head.type is for sequence heads)
    assert meta["head"] == {"qa": "span", "tagging": "token"}.get(task, head)
    exported = json.loads((out.parent / "model.onnx.tokenizer" / "tokenizer.json").read_text())
    assert exported == json.loads((run.path / "tokenizer" / "tokenizer.json").read_text())
    assert mine.read_text() == "{}", "the export wrote over a tokenizer/ it was not asked for"
    model, _ = run_logits_model(Run.open(run.path))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    vocab = len(
        json.loads((run.path / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    )
    shapes = set()
    for batch, length in [(3, 11), (1, 29)]:
        x = example_inputs(vocab, batch, length, seed=batch)
        with torch.no_grad():
            want = model(*(x[k] for k in INPUTS)).numpy()
        (got,) = session.run(["logits"], {k: v.numpy() for k, v in x.items()})
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) < TOL
        shapes.add(got.shape)
    assert len(shapes) == 2
    if task == "qa":
        assert meta["labels"] == ["start", "end"] and got.shape[-1] == 2
        assert (meta["doc_stride"], meta["max_query_len"]) == (8, 4)  # its windows, to do alike
    assert meta["truncation"] == "head"


def test_a_run_that_read_long_texts_otherwise_says_so_at_onnx_export(tmp_path, capsys):
    """head_tail / windows runs answer long texts otherwise than a graph fed their first
    max_len tokens: the export said nothing and its .json had no truncation settings."""
    from encoderlab.finetuning import finetune

    cfg = ft_config(tmp_path, "classification")
    task = cfg.task.model_copy(update={"truncation": "head_tail", "head_tokens": 8})
    run, _ = finetune(cfg.model_copy(update={"task": task}), say=quiet)
    out = tmp_path / "model.onnx"
    capsys.readouterr()
    assert run_cli("export", run.path, "--to-onnx", out) == 0
    said = capsys.readouterr()
    assert "task.truncation=head_tail" in said.out + said.err
    meta = json.loads(out.with_name("model.onnx.json").read_text())
    assert (meta["truncation"], meta["head_tokens"]) == ("head_tail", 8)


def test_onnx_needs_a_file_name(tmp_path, capsys):
    from encoderlab.finetuning import finetune

    run, _ = finetune(ft_config(tmp_path, "classification"), say=quiet)
    assert run_cli("export", run.path, "--to-onnx", tmp_path / "out_dir") == 2
    err = capsys.readouterr().err.strip()
    assert "ending in .onnx" in err and "\n" not in err
    assert run_cli("export", run.path) == 2
    assert "--to-onnx" in capsys.readouterr().err
    # with --to-hf beside it: refused before the Hugging Face folder is written
    hf_out = tmp_path / "hf"
    assert run_cli("export", run.path, "--to-hf", hf_out, "--to-onnx", tmp_path / "m.txt") == 2
    assert "ending in .onnx" in capsys.readouterr().err and not hf_out.exists()


def test_onnx_export_never_writes_over_a_users_files(tmp_path, capsys):
    """A user's own x.onnx (or x.onnx.tokenizer) was replaced, or the export stopped half
    written; an earlier export's three outputs are replaced as before."""
    from encoderlab.finetuning import finetune

    run, _ = finetune(ft_config(tmp_path, "classification"), say=quiet)
    mine = tmp_path / "mine.onnx"
    mine.write_text("my precious model")
    assert run_cli("export", run.path, "--to-onnx", mine) == 2
    assert (
        "mine.onnx exists and is not from an earlier encoderlab export" in capsys.readouterr().err
    )
    assert mine.read_text() == "my precious model"
    blocked = tmp_path / "t.onnx"
    (tmp_path / "t.onnx.tokenizer").write_text("x")
    assert run_cli("export", run.path, "--to-onnx", blocked) == 2
    assert not blocked.exists() and not (tmp_path / "t.onnx.json").exists()
    fresh = tmp_path / "ok.onnx"
    assert run_cli("export", run.path, "--to-onnx", fresh) == 0
    assert run_cli("export", run.path, "--to-onnx", fresh) == 0  # an earlier export: replaced
