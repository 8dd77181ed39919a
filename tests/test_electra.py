"""ELECTRA pretraining (objective: electra) and per-source validation metrics: the model, that it
learns replaced-token detection, exact resume, fine-tuning and HF export of the discriminator,
and valid/<source>/... metrics when the corpus mixes sources."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import run_cli as cli
from encoderlab.config import Config, CorpusSource, ElectraConfig, ModelConfig, load_config
from encoderlab.data.masking import MaskingSpec, mask_batch
from encoderlab.electra import ElectraLM, generator_config
from encoderlab.errors import UserError
from encoderlab.objectives import electra_objective, mlm_objective
from encoderlab.pretraining import pretrain
from encoderlab.runs import Run, encoder_weights, run_model_config
from encoderlab.tokenizer import load_tokenizer

KO = "강 도시 모델 학습 데이터 작은 큰 빠른 음악 영화 이야기 밤 낮 비 해".split()
EN = "river city model train data small large quick music film story night day rain sun".split()


def quiet(msg: str) -> None:
    pass


def tiny_model(**over) -> ModelConfig:
    base = dict(vocab_size=40, d_model=32, n_head=2, d_ff=64, n_layer=2, max_len=32)
    return ModelConfig(**(base | over))


# ---------------------------------------------------------------------------------------------
# The model


def test_generator_is_narrower_and_shares_the_embeddings():
    cfg = tiny_model(d_model=64, n_head=4, d_ff=256)
    gen = generator_config(cfg, ElectraConfig(generator_scale=0.25))
    assert (gen.d_model, gen.n_head, gen.head_dim, gen.d_ff, gen.n_layer) == (16, 1, 16, 64, 2)
    explicit = generator_config(cfg, ElectraConfig(generator_d_model=32, generator_n_layer=1))
    assert (explicit.d_model, explicit.n_head, explicit.n_layer) == (32, 2, 1)
    model = ElectraLM(cfg, ElectraConfig())
    assert model.generator.head.decoder.weight is model.encoder.embeddings.tok.weight
    assert model.generator.project.weight.shape == (16, 64)
    # the checkpoint stores the shared matrix once, under the discriminator's name
    names = set(model.state_dict())
    assert "encoder.embeddings.tok.weight" in names and "disc_head.out.weight" in names


def _masked_batch(ids: np.ndarray, epoch: int, spec: MaskingSpec) -> dict[str, torch.Tensor]:
    lengths = np.full(len(ids), ids.shape[1])
    inputs, labels = mask_batch(ids, lengths, np.arange(len(ids)) + epoch * 1000, epoch, spec)
    return {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels)}


def test_replacements_only_at_masked_positions_and_no_gradient_through_sampling():
    torch.manual_seed(0)
    model = ElectraLM(tiny_model(), ElectraConfig())
    spec = MaskingSpec(mask_id=4, vocab_size=40, special_ids=(0, 1, 2, 3, 4), seed=1)
    ids = np.random.default_rng(0).integers(5, 40, size=(6, 20))
    batch = _masked_batch(ids, 0, spec)
    out = model(**batch)
    masked = batch["labels"] != -100
    assert not (out.replaced & ~masked).any()
    assert out.disc_logits.shape == ids.shape and torch.isfinite(out.loss)
    out.loss.backward()
    assert model.generator.blocks[0].ff.fc1.weight.grad.abs().sum() > 0  # MLM trains it
    assert model.disc_head.out.weight.grad.abs().sum() > 0
    # evaluation samples from a fixed generator: the same replacements every time
    model.eval()
    with torch.no_grad():
        a, b = model(**batch).replaced, model(**batch).replaced
    assert torch.equal(a, b)


def test_discriminator_learns_replaced_token_detection():
    """Each row draws its tokens from one of 4 groups of 5: a replacement from another group
    stands out, so after some steps the discriminator beats the majority class (all original)
    and the generator learns the groups."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def data(n: int) -> np.ndarray:
        group = rng.integers(0, 4, size=(n, 1))
        return 5 + 5 * group + rng.integers(0, 5, size=(n, 24))

    cfg = tiny_model(dropout=0.0, attn_dropout=0.0)
    model = ElectraLM(cfg, ElectraConfig(generator_scale=0.5))
    objective = electra_objective(50.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    spec = MaskingSpec(mask_id=4, vocab_size=40, special_ids=(0, 1, 2, 3, 4), seed=2)
    losses = []
    for step in range(400):
        loss, _ = objective.step(model, _masked_batch(data(16), step, spec))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-20:]) < 0.7 * np.mean(losses[:20])
    model.eval()
    with torch.no_grad():
        _, counts = objective.step(model, _masked_batch(data(64), 999, spec))
    m = objective.metrics({k: float(v) for k, v in counts.items()})
    majority = 1.0 - m["replaced"]
    assert m["replaced"] > 0.03, m  # the generator still proposes wrong tokens
    assert m["disc_acc"] > majority + 0.1 * m["replaced"], m
    assert m["disc_f1"] > 0.15 and m["mlm_loss"] < 2.5, m  # 2.5: log 12; chance is log 35


def test_config_rejects_bad_electra_settings(tmp_path):
    with pytest.raises(UserError, match="objective"):
        load_config(None, ["objective=bert"])
    with pytest.raises(UserError, match="generator_scale"):
        load_config(None, ["objective=electra", "electra.generator_scale=0"])
    with pytest.raises(UserError, match="electra.generator"):
        load_config(None, ["electra.generator=3"])


# ---------------------------------------------------------------------------------------------
# Runs: two sources, resume, fine-tuning, export


def write_sources(tmp: Path) -> dict[str, Path]:
    rng = random.Random(0)
    out = {}
    for name, words in (("ko", KO), ("en", EN)):
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 24))) for _ in range(150)]
        out[name] = tmp / f"{name}.txt"
        out[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def config(tmp: Path, sources: dict[str, Path], name: str, **over) -> Config:
    cfg = {
        "name": name,
        "runs_dir": str(tmp / "runs"),
        "objective": "electra",
        "tokenizer": {"kind": "wordpiece", "vocab_size": 150},
        "data": {
            "sources": [{"name": k, "files": [str(v)]} for k, v in sources.items()],
            "block_len": 32,
            "valid_ratio": 0.15,
            "cache_dir": str(tmp / "cache"),
        },
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 2, "max_len": 32},
        "train": {
            "batch_size": 8,
            "lr": 3e-3,
            "epochs": None,
            "max_steps": 6,
            "eval_every": 3,
            "log_every": 1,
            "schedule": "constant",
            "loggers": ["tensorboard"],
        },
    }
    for key, value in over.items():
        if isinstance(value, dict):
            cfg[key] = {**cfg.get(key, {}), **value}
        else:
            cfg[key] = value
    return Config.model_validate(cfg)


@pytest.fixture(scope="module")
def electra_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("electra")
    run, _ = pretrain(config(tmp, write_sources(tmp), "el"), say=quiet)
    return run.path


def test_electra_run_records_per_source_metrics(electra_run):
    run = Run.open(electra_run)
    assert run.info["objective"] == "electra" and run.info["status"] == "finished"
    evals = [r for r in run.metrics() if r["kind"] == "eval"]
    last = evals[-1]
    for key in ("mlm_acc", "disc_acc", "disc_f1", "disc_loss", "loss"):
        assert f"valid/{key}" in last
    for source in ("ko", "en"):
        for key in ("mlm_acc", "mlm_loss", "disc_acc", "disc_f1"):
            assert 0.0 <= last[f"valid/{source}/{key}"] <= (1.0 if "loss" not in key else 50.0)
    train = [r for r in run.metrics() if r["kind"] == "train"]
    assert "train/disc_acc" in train[-1] and not any("/ko/" in k for k in train[-1])
    assert run.info["best"]["metric"] == "valid/disc_f1"
    # the generator is part of the checkpoint (resume), the discriminator is the encoder
    tensors = load_file(str(run.latest_checkpoint() / "model.safetensors"))
    assert any(k.startswith("generator.blocks.") for k in tensors)
    assert "embeddings.tok.weight" in encoder_weights(run.latest_checkpoint())


def _train_losses(run: Run) -> list[tuple[int, float]]:
    return [(r["step"], r["train/loss"]) for r in run.metrics() if r["kind"] == "train"]


def test_electra_resume_is_exact(tmp_path, electra_run):
    """6 steps in one go == 3 steps, then resume to 6: same losses, same weights."""
    sources = write_sources(tmp_path)
    tok = {"path": str(electra_run / "tokenizer")}  # one tokenizer (training one is not exact)
    full, _ = pretrain(config(tmp_path, sources, "full", tokenizer=tok), say=quiet)
    half, _ = pretrain(
        config(tmp_path, sources, "half", tokenizer=tok, train={"max_steps": 3}), say=quiet
    )
    resumed, _ = pretrain(resume=half.path, overrides=["train.max_steps=6"], say=quiet)
    assert _train_losses(resumed) == _train_losses(full)
    a = load_file(str(full.latest_checkpoint() / "model.safetensors"))
    b = load_file(str(resumed.latest_checkpoint() / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_finetune_from_an_electra_run_takes_the_discriminator(tmp_path, electra_run):
    rng = random.Random(1)
    rows = ["id,text,label"] + [
        f"{i},{' '.join(rng.choice(EN) for _ in range(6))} {'good' if i % 2 else 'bad'},{i % 2}"
        for i in range(60)
    ]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    cfg = {
        "name": "ft",
        "runs_dir": str(tmp_path / "runs"),
        "freeze": "all",
        "task": {"type": "classification", "train": str(tmp_path / "train.csv"), "max_len": 32},
        "train": {"batch_size": 16, "epochs": 1},
    }
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli("finetune", path, "--set", f"init={electra_run}") == 0
    ft = Run.open(next((tmp_path / "runs").iterdir()))
    assert ft.info["init"].startswith(str(electra_run))
    before = load_file(str(Run.open(electra_run).latest_checkpoint() / "model.safetensors"))
    after = load_file(str(ft.latest_checkpoint() / "model.safetensors"))
    for key in ("blocks.0.attn.qkv.weight", "blocks.1.ff.fc2.weight", "embeddings.tok.weight"):
        assert torch.equal(after[f"backbone.{key}"], before[f"encoder.{key}"]), key


def test_export_electra_run_loads_in_transformers(tmp_path, electra_run):
    transformers = pytest.importorskip("transformers")
    from encoderlab import hf
    from encoderlab.runs import run_model_config

    out = hf.export_run(electra_run, tmp_path / "hf", say=quiet)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["ElectraForPreTraining"]
    assert "ELECTRA pretraining" in (out / "README.md").read_text()
    run = Run.open(electra_run)
    ours = ElectraLM(run_model_config(run), ElectraConfig())
    run.load_checkpoint(ours)
    ours.eval()
    tok = load_tokenizer(electra_run / "tokenizer")
    texts = ["강 도시 모델 학습", "river city night day rain sun quick music"]
    encoded = [tok.encode(t).ids for t in texts]
    width = max(map(len, encoded))
    ids = torch.tensor([e + [0] * (width - len(e)) for e in encoded])
    mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encoded])
    theirs = transformers.AutoModelForPreTraining.from_pretrained(str(out)).eval()
    assert type(theirs).__name__ == "ElectraForPreTraining"
    with torch.no_grad():
        hidden = ours.encoder(ids, mask)
        logits = ours.disc_head(hidden)
        res = theirs(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    real = mask.bool()
    assert float((res.hidden_states[-1] - hidden)[real].abs().max()) < 1e-4
    assert float((res.logits - logits)[real].abs().max()) < 1e-4
    # and it comes back as a converted encoder (init: hf:<dir>)
    imp = hf.import_checkpoint(str(out), say=quiet)
    assert imp.converted
    with torch.no_grad():
        again = imp.encoder.eval()(ids, mask)
    assert float((again - hidden)[real].abs().max()) < 1e-4


# ---------------------------------------------------------------------------------------------
# Per-source metrics of the MLM objective


def test_mlm_per_source_metrics_add_up():
    """valid/<source>/... are the same counts split by source: the masked-weighted mean of the
    per-source accuracies is the overall accuracy."""
    from encoderlab.model import MaskedLM

    torch.manual_seed(0)
    model = MaskedLM(tiny_model()).eval()
    spec = MaskingSpec(mask_id=4, vocab_size=40, special_ids=(0, 1, 2, 3, 4), seed=3)
    ids = np.random.default_rng(1).integers(5, 40, size=(8, 20))
    batch = _masked_batch(ids, 0, spec)
    batch["source"] = torch.tensor([0, 1, 1, 0, 1, 1, 1, 0])
    objective = mlm_objective(["ko", "en"])
    with torch.no_grad():
        _, counts = objective.step(model, batch)
    c = {k: float(v) for k, v in counts.items()}
    m = objective.metrics(c)
    assert c["ko/masked"] + c["en/masked"] == c["masked"]
    mixed = (m["ko/mlm_acc"] * c["ko/masked"] + m["en/mlm_acc"] * c["en/masked"]) / c["masked"]
    assert mixed == pytest.approx(m["mlm_acc"])
    mixed_loss = (m["ko/mlm_loss"] * c["ko/masked"] + m["en/mlm_loss"] * c["en/masked"]) / c[
        "masked"
    ]
    assert mixed_loss == pytest.approx(m["mlm_loss"], rel=1e-5)
    # without a source column (training batches) there is nothing per source
    del batch["source"]
    with torch.no_grad():
        _, plain = objective.step(model, batch)
    assert not any("/" in k for k in plain)


def test_mlm_run_with_two_sources_reports_them(tmp_path):
    sources = write_sources(tmp_path)
    cfg = config(tmp_path, sources, "mlm", objective="mlm", train={"max_steps": 3})
    run, _ = pretrain(cfg, say=quiet)
    last = [r for r in run.metrics() if r["kind"] == "eval"][-1]
    assert {"valid/ko/mlm_acc", "valid/en/mlm_acc", "valid/ko/mlm_loss"} <= set(last)
    assert run.info["objective"] == "mlm"
    tb = list((run.path / "tb").rglob("events.*"))
    assert tb and any(b"valid/ko/mlm_acc" in f.read_bytes() for f in tb)


def test_two_sources_may_read_two_columns_of_one_file(tmp_path):
    """A parallel corpus (one column per language) as two sources was refused as "listed
    twice": the check keyed on the file alone, not on how each source reads it. The same file
    read the same way by two sources is still refused."""
    rng = random.Random(0)
    table = tmp_path / "parallel.csv"
    rows = [
        (" ".join(rng.choice(KO) for _ in range(12)), " ".join(rng.choice(EN) for _ in range(12)))
        for _ in range(150)
    ]
    table.write_text("ko,en\n" + "".join(f"{k},{e}\n" for k, e in rows), encoding="utf-8")
    cfg = config(tmp_path, {}, "parallel", objective="mlm", train={"max_steps": 2})
    cfg.data.sources = [
        CorpusSource(name=lang, files=[str(table)], text_column=lang) for lang in ("ko", "en")
    ]
    run, _ = pretrain(cfg, say=quiet)
    last = [r for r in run.metrics() if r["kind"] == "eval"][-1]
    assert {"valid/ko/mlm_acc", "valid/en/mlm_acc"} <= set(last)
    vocab = load_tokenizer(run.path / "tokenizer").get_vocab()
    assert "강" in vocab and "river" in vocab  # each column was read, by its own source
    cfg.data.sources = [CorpusSource(name=n, files=[str(table)], text_column="en") for n in "ab"]
    cfg.name = "twice"
    with pytest.raises(UserError, match="listed twice in data.corpus / data.sources"):
        pretrain(cfg, say=quiet)


def test_a_capped_evaluation_samples_every_source(tmp_path):
    """train.eval_batches took the validation set's first batches, which are the first
    source's: the other's metrics were never measured (and early stopping on them never
    stopped). The cap now takes a fixed sample of the whole set."""
    sources = write_sources(tmp_path)
    train = {"max_steps": 3, "eval_batches": 1, "batch_size": 8}
    run, _ = pretrain(config(tmp_path, sources, "capped", objective="mlm", train=train), say=quiet)
    evals = [r for r in run.metrics() if r["kind"] == "eval"]
    assert evals and all({"valid/ko/mlm_acc", "valid/en/mlm_acc"} <= set(r) for r in evals)


def test_report_shows_the_electra_run_per_source(tmp_path, electra_run):
    from encoderlab.reporting.build import build_report
    from encoderlab.reporting.load import load_runs
    from encoderlab.reporting.metrics import percent, source_metrics

    (data,) = load_runs([electra_run])
    assert data.primary == "disc_f1"
    by_source = source_metrics(data)
    assert set(by_source) == {"ko", "en"} and "disc_f1" in by_source["ko"]
    assert percent("pretrain", "ko/mlm_acc", 0.5) == 50.0  # a rate, shown in percent
    build_report([electra_run], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "validation per source" in md and "| ko " in md and "| en " in md


def test_every_source_gets_validation_blocks_and_none_reports_a_perfect_zero():
    """A small source the random split left out of validation used to report
    valid/<source>/mlm_loss 0.0 (nothing measured, a perfect score); it now gets a validation
    block of its own, and a source with nothing measured has no metric at all."""
    from encoderlab.data.tokens import Examples, split_spans

    sources = np.array([0] * 2000 + [1] * 3, dtype=np.int16)
    examples = Examples(np.arange(len(sources), dtype=np.int64), 30, np.array([0, len(sources)]))
    plain_train, plain_valid = split_spans(examples, 0.01, seed=0)
    assert not (sources[plain_valid.ids] == 1).any()  # the draw this test is about
    train, valid = split_spans(examples, 0.01, seed=0, sources=sources)
    assert (sources[valid.ids] == 1).sum() == 1 and len(train) + len(valid) == len(sources)
    assert set(valid.ids) >= set(plain_valid.ids)  # the others' split is kept
    assert not set(train.ids) & set(valid.ids)
    for objective in (mlm_objective(["ko", "en"]), electra_objective(50.0, ["ko", "en"])):
        counts = {"masked": 10.0, "correct": 5.0, "loss_sum": 20.0, "positions": 40.0}
        counts |= {"ko/masked": 10.0, "ko/correct": 5.0, "ko/loss_sum": 20.0}
        counts |= {"ko/positions": 40.0, "en/masked": 0.0, "en/correct": 0.0}
        counts |= {"en/loss_sum": 0.0, "en/positions": 0.0}
        m = objective.metrics(counts)
        assert m["ko/mlm_loss"] == 2.0 and not any(k.startswith("en/") for k in m), m


def test_the_split_never_takes_all_of_a_sources_examples():
    """A one-document source drawn into validation was not trained on at all (the mixture
    skipped it without a word); a source keeps at least one training example."""
    from encoderlab.data.tokens import Examples, split_spans

    for seed in range(12):
        sources = np.array([0] * 60 + [1] + [2] * 2, dtype=np.int16)
        examples = Examples(np.arange(len(sources), dtype=np.int64), 30, np.array([0, 63]))
        train, valid = split_spans(examples, 0.25, seed=seed, sources=sources)
        assert set(sources[train.ids]) == {0, 1, 2}, seed
        assert len(train) + len(valid) == len(sources) and not set(train.ids) & set(valid.ids)
        assert (sources[valid.ids] == 2).sum() == 1  # two examples: one each side
    # two one-document sources: the split keeps a validation example (one source goes there)
    pair = Examples(np.arange(2, dtype=np.int64), 30, np.array([0, 2]))
    for seed in range(4):
        _, valid = split_spans(pair, 0.3, seed=seed, sources=np.array([0, 1], dtype=np.int16))
        assert len(valid) == 1


def test_mixing_weights_near_the_float_limit_are_a_mix_not_a_traceback():
    from encoderlab.data.tokens import mix_selection

    sources = np.array([0] * 30 + [1] * 10)
    picked = mix_selection(sources, [1e308, 1e308], seed=0, epoch=0)
    assert len(picked) == 40 and (sources[picked] == 1).sum() == 20
    picked = mix_selection(sources, [1e308, 1e-300], seed=0, epoch=0)
    assert len(picked) == 40 and (sources[picked] == 0).sum() == 40


@pytest.mark.parametrize(
    "over, expected",
    [
        ({"model": {"mlm_head": "plain"}}, "model.mlm_head=plain applies to objective: mlm"),
        ({"model": {"tie_mlm": False}}, "model.tie_mlm=false applies to objective: mlm"),
        (
            {"electra": {"generator_scale": 0.5, "generator_d_model": 8}},
            "give the generator two widths (16 and 8)",
        ),
        # an electra: section on a masked-LM run trained MLM without a word
        (
            {"objective": "mlm", "electra": {"disc_weight": 10}},
            "electra.disc_weight applies to objective: electra",
        ),
    ],
)
def test_settings_electra_would_ignore_are_refused_before_a_run(tmp_path, over, expected):
    """They trained exactly as without them (same parameter count), and an mlm_head: plain
    ELECTRA run was then refused by export for a head it never had."""
    sources = write_sources(tmp_path)
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        pretrain(config(tmp_path, sources, "bad", **over), say=quiet)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # the same settings agreeing, or left at their defaults, are fine
    ok = {"electra": {"generator_scale": 0.5, "generator_d_model": 16}}
    pretrain(config(tmp_path, sources, "ok", **ok, train={"max_steps": 1}), say=quiet)


def test_a_deeper_generator_is_refused_in_layers_not_width():
    with pytest.raises(UserError, match="generator_n_layer=3 .*discriminator's depth"):
        generator_config(tiny_model(), ElectraConfig(generator_n_layer=3))


def test_the_generator_sees_word_order_under_alibi():
    """model.position: alibi has no position table, so the distance bias is all the order a
    model sees; the generator's blocks were given the padding mask alone and predicted from a
    bag of words (reordering the context left its logits exactly the same)."""
    from encoderlab.model import Queries

    torch.manual_seed(0)
    cfg = tiny_model(n_head=4, position="alibi", init_std=0.3)  # scores far from uniform
    model = ElectraLM(cfg, ElectraConfig(generator_scale=1.0)).eval()
    ids = torch.randint(5, 40, (2, 12))
    ids[:, 5] = 4
    moved = ids.clone()
    moved[:, [1, 2, 9, 10]] = ids[:, [10, 9, 2, 1]]
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0  # a padded key
    rows = torch.tensor([5, 12 + 5])
    q = Queries.at(rows, ids.shape)
    from encoderlab.model import key_mask

    with torch.no_grad():
        a = model.generator(model.encoder.embeddings(ids, None), key_mask(mask), q)
        b = model.generator(model.encoder.embeddings(moved, None), key_mask(mask), q)
        every = Queries.at(torch.arange(24), ids.shape)
        full = model.generator(model.encoder.embeddings(ids, None), key_mask(mask), every)
    assert float((a - b).abs().max()) > 1e-3
    torch.testing.assert_close(a, full[rows], rtol=1e-5, atol=1e-5)  # the queries' shortcut


def test_model_show_of_an_electra_run_counts_the_generator_and_discriminator(electra_run, capsys):
    """model show printed the MaskedLM's parameters only; an ELECTRA run trains more."""
    run = Run.open(electra_run)
    cfg = load_config(electra_run / "config.yaml")
    want = sum(p.numel() for p in ElectraLM(run_model_config(run), cfg.electra).parameters())
    capsys.readouterr()
    assert cli("model", "show", electra_run) == 0
    out = capsys.readouterr().out
    assert "objective: electra" in out and f"{want:,} parameters in all" in out, out


def test_an_electra_run_bert_cannot_hold_is_refused_before_anything_is_written(
    tmp_path, electra_run, capsys
):
    """A pre-LN (or ALiBi) ELECTRA run: --to-hf said "or export it --to-onnx", which said
    "export its encoder with --to-hf"; both at once wrote the --to-hf folder, then failed."""
    import shutil

    pytest.importorskip("onnx")
    run = tmp_path / "run"
    shutil.copytree(electra_run, run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["model"]["norm"] = "pre"
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert cli("export", run, "--to-hf", tmp_path / "hf", "--to-onnx", tmp_path / "m.onnx") == 2
    err = capsys.readouterr().err.strip()
    assert "no MLM logits to export to ONNX" in err and "\n" not in err, err
    assert not (tmp_path / "hf").exists() and not (tmp_path / "m.onnx").exists()
    assert cli("export", run, "--to-hf", tmp_path / "hf") == 2
    err = capsys.readouterr().err.strip()
    assert "pre-LN" in err and "or fine-tune it" in err and "or export it --to-onnx" not in err


def test_text_short_of_a_block_and_blank_sources_are_named_for_what_they_are(tmp_path):
    """Many files each short of a block said "fewer than one block" of a corpus holding many;
    a source short of one block was blamed on empty files or filters; a blank source file was
    to be removed "from data.corpus", a key the config did not use."""
    sources = write_sources(tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    for i in range(40):
        (small / f"{i}.txt").write_text(" ".join(EN[:12]) + "\n", encoding="utf-8")
    many = config(tmp_path, sources, "many", objective="mlm")
    many = many.model_copy(
        update={"data": many.data.model_copy(update={"sources": [], "corpus": [f"{small}/*.txt"]})}
    )
    with pytest.raises(UserError, match=r"in 40 files, but no file holds a block .*mode=sentence"):
        pretrain(many, say=quiet)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("river city night\n", encoding="utf-8")
    short = config(tmp_path, {**sources, "t": tiny}, "short", objective="mlm")
    with pytest.raises(UserError, match=r"data.sources\[2\] \(t\): its \d+ tokens do not fill a"):
        pretrain(short, say=quiet)
    blank = tmp_path / "blank.txt"
    blank.write_text("   \n\n  \n", encoding="utf-8")
    with pytest.raises(UserError, match=r"blank.txt: no text found .*remove it from data.sources"):
        pretrain(config(tmp_path, {**sources, "b": blank}, "blank", objective="mlm"), say=quiet)
