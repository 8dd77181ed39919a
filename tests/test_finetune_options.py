"""Fine-tuning options combined as a new user combines them: freezing with unfreeze_last, heads
on tasks that bring their own, the logged learning rate under layer_lr_decay and freezing, and a
pooler head started from a run that trained one. Small models, a few steps each."""

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from encoderlab.config import FinetuneConfig
from encoderlab.config import build as load_build
from encoderlab.errors import UserError
from encoderlab.finetuning import Backbone, finetune, shape_backbone
from encoderlab.model import Encoder
from encoderlab.runs import Run
from test_finetune import FILL, base_cfg, build, quiet, write_csv


def _backbone(tmp_path: Path, n_layer: int = 2) -> tuple[Backbone, dict]:
    raw = base_cfg(tmp_path)
    mc = build(raw).model.model_copy(update={"vocab_size": 50, "n_layer": n_layer})
    return Backbone(Encoder(mc), None, mc, "scratch"), raw  # type: ignore[arg-type]


def _steps(raw: dict, steps: int = 2) -> dict:
    raw["train"] = {**raw["train"], "epochs": None, "max_steps": steps, "log_every": 1}
    return raw


def test_unfreeze_last_with_freeze_embeddings_is_refused_not_ignored(tmp_path):
    """freeze: embeddings leaves every block trainable, so unfreeze_last changed nothing: the
    run trained all layers although the config asked for the top k alone."""
    backbone, raw = _backbone(tmp_path)
    with pytest.raises(UserError) as err:  # when the config is read, before anything runs
        load_build(FinetuneConfig, {**raw, "freeze": "embeddings", "unfreeze_last": 1}, "ft.yaml")
    line = str(err.value)
    assert "\n" not in line and "unfreeze_last=1" in line and "set freeze: all" in line, line
    with pytest.raises(UserError, match=r"config key 'unfreeze_last': .*greater than or equal"):
        load_build(FinetuneConfig, {**raw, "freeze": "all", "unfreeze_last": -1}, "ft.yaml")
    # freeze: all with unfreeze_last still trains exactly the top block (and nothing below)
    backbone, _ = _backbone(tmp_path)
    shape_backbone(backbone, build({**raw, "freeze": "all", "unfreeze_last": 1}))
    enc = backbone.encoder
    assert all(p.requires_grad for p in enc.blocks[1].parameters())
    assert not any(p.requires_grad for p in enc.blocks[0].parameters())
    assert not any(p.requires_grad for p in enc.embeddings.parameters())


def test_unfreeze_last_beyond_the_layers_names_the_limit_and_drop_last(tmp_path):
    backbone, raw = _backbone(tmp_path, n_layer=2)
    cfg = build({**raw, "freeze": "all", "unfreeze_last": 2, "drop_last": 1})
    with pytest.raises(UserError) as err:
        shape_backbone(backbone, cfg)
    line = str(err.value)
    assert "\n" not in line and "after drop_last=1" in line and "at most 1" in line, line


def _conll(tmp_path: Path) -> Path:
    rng = random.Random(0)
    lines = ["-DOCSTART- -X- O O", ""]
    for _ in range(24):
        words = [rng.choice(FILL) for _ in range(6)]
        i = rng.randint(0, 5)
        for j, w in enumerate(words):
            lines.append("john NNP I-NP B-PER" if j == i else f"{w} NN I-NP O")
        lines.append("")
    f = tmp_path / "train.conll"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_head_settings_the_runs_head_does_not_use_are_a_warning(tmp_path):
    """head.type=cnn on tagging trained the token head without a word."""
    task = {"type": "tagging", "train": str(_conll(tmp_path)), "format": "conll"}
    raw = _steps(base_cfg(tmp_path, task=task, head={"type": "cnn", "cnn_filters": 8}))
    said: list[str] = []
    run, _ = finetune(build(raw), say=said.append)
    warned = [m for m in said if "head.type=cnn" in m]
    assert len(warned) == 1 and warned[0].startswith("warning: "), said
    assert "head.cnn_filters=8" in warned[0] and "tagging" in warned[0]
    assert run.info["status"] == "finished"
    # a tagging config that names no head, or its saved config.yaml (every default written
    # out), says nothing
    for saved in (False, True):
        said.clear()
        plain = _steps(base_cfg(tmp_path, name="plain", task=task))
        if saved:
            plain["head"] = {"type": "cls", "dropout": 0.1, "cnn_filters": 100}
            plain["head"]["cnn_kernels"] = [3, 4, 5]
        finetune(build(plain), say=said.append)
        assert not [m for m in said if "head." in m], said
    # ... and a cnn kernel wider than task.max_len, refused for the cnn head that would read
    # nothing, is not refused where no cnn head is built
    wide = {"type": "cnn", "cnn_kernels": [9]}
    raw = _steps(base_cfg(tmp_path, name="wide", task={**task, "max_len": 8}, head=wide))
    said.clear()
    finetune(build(raw), say=said.append)
    assert [m for m in said if "head.type=cnn, head.cnn_kernels=[9] not used" in m], said
    # classification: a file may keep cnn settings for a `--set head.type=cnn` arm
    said.clear()
    raw = _steps(base_cfg(tmp_path, name="cls", head={"cnn_kernels": [2, 3]}))
    finetune(build(raw), say=said.append)
    assert not [m for m in said if "not used" in m], said


def _logged_lrs(run: Run) -> list[float]:
    return [r["lr"] for r in run.metrics() if r["kind"] == "train"]


@pytest.mark.parametrize(
    "over",
    [
        {"layer_lr_decay": 0.5},  # group 0 was the embeddings': train.lr * 0.5 ** 2
        {"freeze": "all", "head_lr": 5e-2},  # group 0 was the head's
    ],
)
def test_the_logged_lr_is_train_lr_under_layer_decay_and_freezing(tmp_path, over):
    raw = _steps(base_cfg(tmp_path, **over), steps=2)
    raw["train"] |= {"warmup_steps": 0, "schedule": "constant"}
    run, _ = finetune(build(raw), say=quiet)
    lrs = _logged_lrs(run)
    assert lrs and all(lr == pytest.approx(raw["train"]["lr"]) for lr in lrs), lrs


def test_pooler_head_from_a_run_with_a_trained_pooler_starts_from_it(tmp_path):
    """init: RUN (a fine-tuning run with the pooler head, e.g. one started from hf:, whose
    pooler is the hub model's, fine-tuned) dropped that pooler: a random one replaced it."""
    first, _ = finetune(build(_steps(base_cfg(tmp_path, head={"type": "pooler"}))), say=quiet)
    trained = load_file(str(first.latest_checkpoint() / "model.safetensors"))
    raw = _steps(base_cfg(tmp_path, name="again", init=str(first.path), head={"type": "pooler"}))
    raw["train"] |= {"lr": 1e-12, "warmup_steps": 0}  # the weights stay where they started
    said: list[str] = []
    again, _ = finetune(build(raw), say=said.append)
    assert any("pooler head: dense layer initialised" in m for m in said), said
    now = load_file(str(again.latest_checkpoint() / "model.safetensors"))
    for key in ("head.dense.weight", "head.dense.bias"):
        assert torch.allclose(now[key], trained[key], atol=1e-6), key
    # the classifier on top is new (a new task's labels); a cls-head run brings no pooler
    cls, _ = finetune(build(_steps(base_cfg(tmp_path, name="cls"))), say=quiet)
    said.clear()
    raw = _steps(base_cfg(tmp_path, name="from-cls", init=str(cls.path), head={"type": "pooler"}))
    finetune(build(raw), say=said.append)
    assert not any("pooler head" in m for m in said), said
    assert json.loads((again.path / "run.json").read_text())["status"] == "finished"


def test_unknown_tokens_under_a_tokenizer_trained_on_the_task_name_its_vocab_size(tmp_path):
    """A wordpiece vocabulary too small for the characters of Korean text (42 % [UNK] on
    KLUE-STS at vocab 200) was told to "train a tokenizer on it and pretrain": it was trained on
    it. The fix is a larger tokenizer.vocab_size."""
    rng = random.Random(0)
    syllables = [chr(0xAC00 + i) for i in range(0, 11000, 37)]  # ~300 distinct Hangul

    def text() -> str:
        return " ".join("".join(rng.choice(syllables) for _ in range(2)) for _ in range(6))

    rows = [{"id": str(i), "text": text(), "target": i % 2} for i in range(40)]
    train = write_csv(tmp_path / "ko.csv", rows, ["id", "text", "target"])
    raw = _steps(base_cfg(tmp_path, task={"train": str(train)}), steps=1)
    said: list[str] = []
    finetune(build(raw), say=said.append)
    warned = [m for m in said if "[UNK]" in m]
    assert len(warned) == 1 and "tokenizer.vocab_size=120" in warned[0], said
    assert "raise tokenizer.vocab_size" in warned[0] and "pretrain" not in warned[0]


def test_a_task_trained_tokenizer_far_short_of_its_vocab_size_is_a_warning(tmp_path):
    """`tokenizer train` and pretraining warn when the vocabulary is under half the size
    asked for; fine-tuning's own tokenizer (init: scratch) came out at 2,754 of 8,000 without
    a word."""
    raw = _steps(base_cfg(tmp_path))
    raw["tokenizer"] = {**raw.get("tokenizer", {}), "vocab_size": 5000}
    said: list[str] = []
    finetune(build(raw), say=said.append)
    short = [m for m in said if m.startswith("warning: the tokenizer has")]
    assert len(short) == 1 and "of the 5,000 asked for" in short[0], said


def test_class_weights_balance_the_training_loss():
    """balanced is scikit-learn's n / (classes * count) (the weights average 1 over the
    examples), the loss is the weighted sum over the labelled rows / their number; multilabel
    weighs a label's positives by its negatives / positives (BCE's pos_weight)."""
    from encoderlab.config import TaskConfig
    from encoderlab.tasks import get_task
    from encoderlab.tasks.classification import class_weight_vector

    gold = ["a"] * 8 + ["b"] * 2
    w = class_weight_vector("balanced", ["a", "b"], gold)
    assert w.tolist() == pytest.approx([10 / 16, 10 / 4])
    assert sum(w[0 if g == "a" else 1] for g in gold) == pytest.approx(len(gold))
    assert class_weight_vector({"b": 3.0}, ["a", "b"], gold).tolist() == [1.0, 3.0]
    with pytest.raises(UserError, match="task.class_weights: 'c' is not one of the labels"):
        class_weight_vector({"c": 2.0}, ["a", "b"], gold)
    task = get_task("classification")
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, -100])
    loss, counts = task.loss(logits, {"labels": labels, "class_weights": w})
    ce = torch.nn.functional.cross_entropy(logits[:2], labels[:2], reduction="none")
    assert loss.item() == pytest.approx(((ce * w[labels[:2]]).sum() / 2).item())
    assert counts["n"].item() == 2
    ml = get_task("multilabel")
    examples = [{"label": s} for s in [("x",), ("x", "y"), (), ("x",)]]
    pos = ml.loss_weights(
        examples, ["x", "y"], TaskConfig(type="multilabel", class_weights="balanced")
    )
    assert pos.tolist() == pytest.approx([1 / 3, 3.0])  # x: 3 positives, 1 negative; y: 1, 3
    assert ml.loss_weights(examples, ["x", "y"], TaskConfig(type="multilabel")) is None


def test_class_weights_in_a_run_are_said_and_trained_with(tmp_path):
    from conftest import sentiment_rows

    rows = sentiment_rows(400, 0)
    keep = [r for r in rows if r["target"] == 0] + [r for r in rows if r["target"] == 1][:30]
    train = write_csv(tmp_path / "imb.csv", keep, ["id", "text", "target"])
    said: list[str] = []
    cfg = build(base_cfg(tmp_path, task={"train": str(train), "class_weights": "balanced"}))
    finetune(cfg, say=said.append)
    line = next(m for m in said if m.startswith("class weights (balanced): "))
    w0, w1 = (float(part.split()[1]) for part in line.split(": ", 1)[1].split(", "))
    assert w1 > 1 > w0  # the rare class weighs more


def test_a_collapsed_run_on_imbalanced_classes_is_told_the_settings_for_it(tmp_path):
    from types import SimpleNamespace

    from encoderlab.finetuning import _imbalance_hint

    cfg = build(base_cfg(tmp_path))
    skewed = SimpleNamespace(train=[{"label": "0"}] * 9 + [{"label": "1"}])
    hint = _imbalance_hint(cfg, skewed)
    assert "imbalanced (90% of the training rows are '0')" in hint
    assert "task.class_weights: balanced" in hint and "task.metric: macro_f1" in hint
    assert _imbalance_hint(cfg, SimpleNamespace(train=[{"label": "0"}, {"label": "1"}] * 5)) == ""
    cfg.task.class_weights = "balanced"  # already weighted: nothing to add
    assert _imbalance_hint(cfg, skewed) == ""
