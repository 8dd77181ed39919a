"""Fine-tuning: a backbone (scratch / pretraining run) + a task head, trained with `fit`.

After training, the best checkpoint (on the task's primary validation metric) is evaluated
once more and its predictions are written, so two runs can be compared example by example:
  predictions/valid.jsonl, eval/valid.json (metrics incl. confusion matrix / per-class /
  per-type), and for a test file predictions/test.jsonl plus submission.csv.

Under torchrun every rank reads and encodes the task data (it is not cached), rank 0 trains
a scratch tokenizer and creates the run, and rank 0 alone writes the final predictions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from inspect import signature
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model
from tokenizers import Tokenizer
from torch import nn

from encoderlab import distributed
from encoderlab.config import (
    FinetuneConfig,
    ModelConfig,
    TaskConfig,
    load_config,
    read_yaml,
    save_config,
)
from encoderlab.errors import UserError
from encoderlab.heads import PoolerHead, TokenHead
from encoderlab.hf import import_checkpoint, require_transformers, run_encoder, save_wrapped_config
from encoderlab.inference import (
    EvalBatches,
    FeatureSet,
    TaskModel,
    columns_found,
    evaluate_examples,
    scalar_metrics,
    write_jsonl,
    write_submission,
    write_text_atomic,
)
from encoderlab.loggers import check_installed
from encoderlab.model import Encoder, num_params, param_groups, prepare_training, without_init
from encoderlab.objectives import validation_metric_names
from encoderlab.pretraining import check_not_finished
from encoderlab.runs import (
    ReadOnlyRun,
    Run,
    check_runs_dir,
    check_tokenizer_fits,
    finite,
    load_encoder_weights,
    run_checkpoint,
    run_model_config,
)
from encoderlab.runtime import resolve_device, seed_everything, set_threads
from encoderlab.selfpretrain import self_pretrain
from encoderlab.tasks import get_task
from encoderlab.tasks.base import (
    WHERE_READ,
    Example,
    Feature,
    Task,
    example_texts,
    model_inputs,
    read_to_predict,
    show_messages,
    whole_unicode,
)
from encoderlab.tasks.records import split_for_role
from encoderlab.tasks.registry import task_class, task_kind
from encoderlab.tasks.tagging import ENTITY_FORMATS, keeps_punctuation
from encoderlab.tokenizer import (
    load_tokenizer,
    save_tokenizer,
    short_vocab_warning,
    special_ids,
    tokenizer_hash,
    train_tokenizer,
    unused_beside_path,
)
from encoderlab.train import (
    FitResult,
    Objective,
    check_batch_size,
    check_early_stop_metric,
    fit,
)

# ---------------------------------------------------------------------------------------------
# Defaults that fit the starting point

# Measured with short step-limited runs (MiniLM-L6 for "pretrained", a 2-layer d=96 encoder
# for "scratch"; disaster tweets and CoNLL-2003, 40 / 80 steps of 16): a hub encoder wants a
# learning rate ten times smaller than that small one from scratch, and token tagging a larger one
# than sentence classification (lr 5e-4: entity F1 0.66, 1e-4: 0.45, 5e-5: lower). An encoder
# this tool pretrained ("own": a run directory, or self_pretrain) had minutes of MLM, not a
# GPU-month: it wants a rate between those two, and the right one falls with its width (disaster
# tweets, cls head, 3 epochs, best epoch, seeds 0-2, 2026-11-29: d96 x 2 after 800 MLM steps
# 76.8 / 76.5 / 76.0 % at lr 1e-3 / 4e-4 / 2e-4; the d256 x 4 study stage 76.0 (seed 0) / 78.3
# / 79.1; lr 1e-4 on d96 x 2 0.719 earlier): 4e-4 is within a point of the best at both sizes.
# Tagging takes 5e-4 (CoNLL-2003, 3 epochs, the study's d256 x 4 ALiBi stage at 23 % masked
# accuracy, seeds 0 / 1, 2026-11-30: entity F1 77.4 / 77.5 at 5e-4, 75.9 / 76.6 at 1e-3; the
# earlier learned-position stage at 13 %: 66.0 vs 66.4; one epoch there: 62.9 at 1e-3, 56.3 at
# 2e-4). From scratch, 3e-4 (2026-12-02, the schema's d256 x 4 post-LN model, configs naming
# only the task, 3-minute budgets): at 1e-3 a sequence classifier sat at chance for most of its
# run, disaster tweets 0.672 vs 0.769 at 3e-4, NSMC 0.653 vs 0.832 (1e-4: 0.829); a d128 x 2
# one tied (0.838 / 0.838). Tagging trains at either (a token head gets every word's gradient):
# CoNLL-2003 F1 0.679 / 0.690, KLUE-NER 0.613 / 0.569 at 1e-3 / 3e-4, so it keeps 1e-3.
# "*" holds for every task type without its own entry.
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "pretrained": {
        "*": {"lr": 1e-4, "warmup_ratio": 0.1, "epochs": 3},
        "tagging": {"lr": 5e-4},
        "pos": {"lr": 5e-4},
    },
    "own": {
        "*": {"lr": 4e-4, "warmup_ratio": 0.1, "epochs": 3},
        "tagging": {"lr": 5e-4},
        "pos": {"lr": 5e-4},
    },
    "scratch": {
        "*": {"lr": 3e-4, "warmup_ratio": 0.1, "epochs": 3},
        "tagging": {"lr": 1e-3},
        "pos": {"lr": 1e-3},
    },
}
# pos (a tag per word, like tagging) takes tagging's settings; not measured on its own
# The model settings a config with `init: scratch` leaves unset, by task type: ALiBi positions
# for tagging (local context is what tags need first). CoNLL-2003 from scratch, 3-minute
# budgets, the schema's d256 x 4 encoder, lr 1e-3 (2026-12-02): entity F1 0.679 with a learned
# position table, 0.741 with ALiBi (in 1,054 steps against 1,317); 3 epochs of the conll2003
# configs (2026-11-30): 73.9 vs 69.4; KLUE-NER 58.9 vs 57.8, and 0.621 vs 0.613 (2026-12-02).
# Sequence tasks keep the table (disaster tweets over seeds 0-2: level; NSMC 0.834 vs 0.832),
# which a transformers export needs.
SCRATCH_MODEL: dict[str, dict[str, Any]] = {
    "tagging": {"position": "alibi"},
    "pos": {"position": "alibi"},
}
# learning rates that train (by init and task type); an explicit train.lr below a third of the
# low end or above the high end gets a one-line warning
LR_RANGE: dict[str, dict[str, tuple[float, float]]] = {
    "pretrained": {"*": (1e-5, 3e-4), "tagging": (5e-5, 1e-3), "pos": (5e-5, 1e-3)},
    "own": {"*": (3e-5, 5e-3)},  # a long own pretraining may want a hub model's smaller lr
    "scratch": {"*": (1e-4, 5e-3)},
}


def init_kind(init: str) -> str:
    """ "scratch" (random weights, also scratch:<run>), "pretrained" (hf:, a hub encoder) or
    "own" (a run directory: this tool's pretraining, or self_pretrain's)."""
    init = init.strip()
    if init == "scratch" or init.startswith("scratch:"):
        return "scratch"
    if init.startswith("hf:") or _started_from_hub(Path(init)):
        return "pretrained"
    return "own"


def _started_from_hub(run_dir: Path, depth: int = 3) -> bool:
    """A fine-tuning run that started from hf: (or from a run that did) holds the hub
    encoder's weights, fine-tuned a little: what it wants next is a hub model's learning
    rate, not an own pretraining's. run.json's init is "hf:..." or "<run dir>@<checkpoint>"."""
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict):
        return False
    if info.get("init_kind") in ("pretrained", "own", "scratch"):  # recorded since 2026-12-01
        return info["init_kind"] == "pretrained"
    source = str(info.get("init", "")).strip()
    if source.startswith("hf:"):
        return True
    parent = source.rsplit("@", 1)[0]
    return depth > 1 and "@" in source and _started_from_hub(Path(parent), depth - 1)


def resolve_defaults(cfg: FinetuneConfig, say: Callable[[str], None] = print) -> FinetuneConfig:
    """`cfg` with what the user left unset (train.lr / warmup_ratio / epochs, head.type, and
    from scratch model.position) fitted to the init and task; an explicit lr far outside what
    trains for the init is a warning.

    "Unset" is pydantic's `model_fields_set`, so it does not matter whether the YAML has a
    `train:` section; `train.lr: null` asks for the default explicitly. The result is what the
    run saves in config.yaml, so a resumed run reads the same values back."""
    # self_pretrain: fine-tuning starts from the run it makes (--print-config asks before)
    kind = "own" if cfg.self_pretrain is not None else init_kind(cfg.init)
    table = DEFAULTS[kind]
    task_type = task_kind(cfg.task.type)  # a plugin built on tagging takes tagging's
    chosen = {**table["*"], **table.get(task_type, {})}
    given = cfg.train.model_fields_set
    train_update = {
        k: v for k, v in chosen.items() if k not in given or (k == "lr" and cfg.train.lr is None)
    }
    if "warmup_steps" in given:
        train_update.pop("warmup_ratio", None)
    train = cfg.train.model_copy(update=train_update)
    update: dict[str, Any] = {"train": train}
    # scratch:<run> and self_pretrain take their run's architecture
    fresh = kind == "scratch" and cfg.init.strip() == "scratch"
    shape = SCRATCH_MODEL.get(task_type, {}) if fresh else {}
    model_update = {k: v for k, v in shape.items() if k not in cfg.model.model_fields_set}
    if model_update:
        update["model"] = cfg.model.model_copy(update=model_update)
    hf = cfg.init.strip().startswith("hf:")
    sequence_head = getattr(task_class(cfg.task.type), "hf_head", None) == "sequence"
    if hf and sequence_head and "type" not in cfg.head.model_fields_set:  # its trained pooler
        update["head"] = cfg.head.model_copy(update={"type": "pooler"})
    if kind == "scratch" and (cfg.freeze != "none" or cfg.drop_last):
        say(  # a random encoder, frozen (or cut): a deliberate control, or a slip
            f"warning: init {cfg.init} starts from random weights, and "
            f"{'freeze=' + cfg.freeze if cfg.freeze != 'none' else f'drop_last={cfg.drop_last}'} "
            "keeps or cuts them as they are: the head learns from random features"
        )
    low, high = LR_RANGE[kind].get(task_type, LR_RANGE[kind]["*"])
    if "lr" not in train_update and not low / 3 <= train.lr <= high:
        what = {
            "pretrained": "a pretrained encoder from the hub",
            "own": "an encoder pretrained here",
            "scratch": "an encoder from scratch",
        }[kind]
        say(
            f"warning: train.lr={train.lr:g} is far outside what works for fine-tuning {what} "
            f"(init {cfg.init}): usually {low:g} to {high:g}; --set train.lr=null picks "
            f"{chosen['lr']:g}"
        )
    return cfg.model_copy(update=update)


def _lr_hint(cfg: FinetuneConfig) -> str:
    """What to try after a run that learned nothing: the usual learning rate for its init
    and task when it trained at another, else a lower one; or more training."""
    kind = "own" if cfg.self_pretrain is not None else init_kind(cfg.init)
    usual = {**DEFAULTS[kind]["*"], **DEFAULTS[kind].get(task_kind(cfg.task.type), {})}["lr"]
    lr = cfg.train.lr if cfg.train.lr is not None else usual
    if not math.isclose(lr, usual, rel_tol=0.01):
        return (
            f"try train.lr={_sci(usual)}, the usual rate for this init and task (this run: "
            f"{_sci(lr)}), or train longer"
        )
    return f"try a lower train.lr than this init's and task's usual {_sci(lr)}, or train longer"


def _imbalance_hint(cfg: FinetuneConfig, data: TaskData) -> str:
    """For a collapsed classifier on imbalanced classes (one of 80 % or more of the training
    rows) trained unweighted: the two settings made for that."""
    if task_kind(cfg.task.type) not in ("classification", "pair"):
        return ""
    if cfg.task.class_weights != "none":
        return ""
    gold = [ex["label"] for ex in data.train if ex.get("label") is not None]
    if not gold:
        return ""
    label, n = Counter(gold).most_common(1)[0]
    if n < 0.8 * len(gold):
        return ""
    return (
        f"; the classes are imbalanced ({n / len(gold):.0%} of the training rows are "
        f"'{label}'): task.class_weights: balanced weighs the rare ones up, and task.metric: "
        "macro_f1 picks the best checkpoint by a metric that sees them"
    )


def _sci(x: float) -> str:
    return np.format_float_scientific(x, trim="-", exp_digits=1)  # 3e-4, 2.5e-4


# ---------------------------------------------------------------------------------------------
# Backbones


@dataclass
class Backbone:
    encoder: nn.Module
    tokenizer: Tokenizer
    model_cfg: ModelConfig
    source: str  # what the weights are: "scratch", "runs/...@step-N", "hf:..."
    pooler: dict[str, torch.Tensor] | None = None  # hf: a trained pooler for the pooler head
    hf_config: Any = None  # hf: a wrapped transformers model's config, saved with the run


def build_backbone(
    cfg: FinetuneConfig, train_examples: list[Example], say: Callable[[str], None]
) -> Backbone:
    init = cfg.init.strip()
    if init.startswith("hf:"):
        with distributed.main_first():  # a hub download lands in the cache once
            imp = import_checkpoint(
                init.removeprefix("hf:"), say, cfg.hf_trust_remote_code, cfg.hf_allow_pickle
            )
        _check_same_tokenizer(cfg, imp.tokenizer, init)
        _say_unused_sections(
            cfg, _unused_model_fields(cfg, imp.model_cfg), _unused_tokenizer_fields(cfg), say
        )
        return Backbone(
            imp.encoder, imp.tokenizer, imp.model_cfg, imp.source, imp.pooler, imp.hf_config
        )
    if init == "scratch":
        if cfg.tokenizer.path:
            if warning := unused_beside_path(cfg.tokenizer):
                say(warning)
            tok = load_tokenizer(cfg.tokenizer.path)
        else:
            say(f"training a {cfg.tokenizer.kind} tokenizer on the task's training text")
            # rank 0 trains, every rank gets its vocabulary (training is not deterministic);
            # a list, not a one-shot iterator: unigram's retry without the rarest characters
            # (a Korean task with more characters than vocab_size) reads the text twice
            text = distributed.on_main(
                lambda: train_tokenizer(list(example_texts(train_examples)), cfg.tokenizer).to_str()
            )
            tok = Tokenizer.from_str(text)
            if warning := short_vocab_warning(tok, cfg.tokenizer):  # as `tokenizer train` says
                say(warning)
        model_cfg = cfg.model.model_copy(
            update={
                "vocab_size": cfg.model.vocab_size or tok.get_vocab_size(),
                "pad_id": special_ids(tok)["pad"],
            }
        )
        return Backbone(Encoder(model_cfg), tok, model_cfg, "scratch")
    random_init = init.startswith("scratch:")
    run = Run.open(init.removeprefix("scratch:"))
    tok = load_tokenizer(run.path / "tokenizer")
    _check_same_tokenizer(cfg, tok, str(run.path))
    model_cfg = run_model_config(run)
    check_tokenizer_fits(run, tok.get_vocab_size(), model_cfg)
    _say_unused_sections(
        cfg, _unused_model_fields(cfg, model_cfg), _unused_tokenizer_fields(cfg, run), say
    )
    with contextlib.nullcontext() if random_init else without_init():  # loaded below
        encoder = run_encoder(run, model_cfg)
    # a wrapped backbone's config travels on to this run, so it can be rebuilt from it too
    hf_config = None if isinstance(encoder, Encoder) else encoder.model.config
    if random_init:
        return Backbone(
            encoder, tok, model_cfg, f"scratch (architecture of {run.path})", None, hf_config
        )
    ckpt = run_checkpoint(run)
    for note in run.skip_notes():  # a damaged best checkpoint: say which weights start it
        say(note)
    load_encoder_weights(encoder, ckpt)
    pooler = trained_pooler(ckpt, model_cfg.d_model)
    return Backbone(encoder, tok, model_cfg, f"{run.path}@{ckpt.name}", pooler, hf_config)


def trained_pooler(ckpt: Path, d_model: int) -> dict[str, torch.Tensor] | None:
    """The dense layer of a fine-tuning run's pooler head (one started from hf: fine-tunes the
    hub model's trained pooler), for the pooler head of a run that starts from it; None for a
    pretraining run or another head. It used to be dropped: a random pooler replaced it."""
    keys = ("head.dense.weight", "head.dense.bias")
    with safe_open(str(ckpt / "model.safetensors"), framework="pt") as f:
        if not set(keys) <= set(f.keys()):
            return None
        weight, bias = (f.get_tensor(k) for k in keys)
    if tuple(weight.shape) != (d_model, d_model) or tuple(bias.shape) != (d_model,):
        return None
    return {"weight": weight.float(), "bias": bias.float()}


def _unused_model_fields(cfg: FinetuneConfig, used: ModelConfig) -> list[tuple[str, Any, Any]]:
    """The model section only shapes an encoder built from scratch: the settings in it that the
    backbone brings differently, as (key, asked, brought)."""
    given = cfg.model.model_fields_set - {"vocab_size", "pad_id"}
    return [
        (f"model.{f}", getattr(cfg.model, f), getattr(used, f))
        for f in sorted(given)
        if getattr(cfg.model, f) != getattr(used, f)
    ]


def _unused_tokenizer_fields(cfg: FinetuneConfig, run: Run | None = None) -> list[str]:
    """The tokenizer section only shapes a tokenizer trained for `init: scratch`; a backbone
    brings its own (its embeddings were trained with it). Settings a run's tokenizer was
    made with anyway are not unused."""
    made_with: dict[str, Any] = {}
    if run is not None:
        with contextlib.suppress(UserError):
            made_with = read_yaml(run.path / "config.yaml").get("tokenizer") or {}
    given = sorted(cfg.tokenizer.model_fields_set - {"path"})
    return [
        f"tokenizer.{f}" for f in given if made_with.get(f, object()) != getattr(cfg.tokenizer, f)
    ]


def _say_unused_sections(
    cfg: FinetuneConfig,
    model_fields: list[tuple[str, Any, Any]],
    tokenizer_fields: list[str],
    say: Callable[[str], None],
) -> None:
    """Settings the backbone replaces: a warning for those the user wrote for this init, one
    note for a config file written for `init: scratch` that --set gave another init (the
    shipped configs' hub recipe: their sections are for scratch, and going unused is expected)."""
    init = cfg.init.strip()
    expected = [k for k, *_ in model_fields if cfg.written_for_scratch(k)]
    expected += [k for k in tokenizer_fields if cfg.written_for_scratch(k)]
    if expected:
        say(
            f"note: init={init} brings its own architecture and tokenizer; the config's model "
            "and tokenizer sections (written for init: scratch) are not used"
        )
    model_fields = [m for m in model_fields if m[0] not in expected]
    tokenizer_fields = [k for k in tokenizer_fields if k not in expected]
    if model_fields:
        ours = ", ".join(f"{k}={asked}" for k, asked, _ in model_fields)
        theirs = ", ".join(f"{k.split('.', 1)[1]}={got}" for k, _, got in model_fields)
        say(
            f"warning: {ours} not used: init={init} brings its own architecture ({theirs}); "
            "the model section only shapes an encoder trained from scratch (init: scratch)"
        )
    if tokenizer_fields:
        ours = ", ".join(
            f"{k}={getattr(cfg.tokenizer, k.split('.', 1)[1])}" for k in tokenizer_fields
        )
        say(
            f"warning: {ours} not used: init={init} brings its own tokenizer; the tokenizer "
            "section only shapes one trained for an encoder from scratch (init: scratch)"
        )


def _check_same_tokenizer(cfg: FinetuneConfig, tok: Tokenizer, where: str) -> None:
    if cfg.tokenizer.path and tokenizer_hash(load_tokenizer(cfg.tokenizer.path)) != tokenizer_hash(
        tok
    ):
        raise UserError(
            f"tokenizer.path={cfg.tokenizer.path} does not match the tokenizer of {where}, "
            "whose embeddings were trained with it; remove tokenizer.path (its own is used)"
        )


def shape_backbone(backbone: Backbone, cfg: FinetuneConfig) -> None:
    """The fine-tuning dropout, drop_last, then freezing, applied to an encoderlab Encoder."""
    enc = backbone.encoder
    if cfg.dropout is not None:  # every hidden dropout of the backbone (attention's stays)
        for module in enc.modules():
            if isinstance(module, nn.Dropout):
                module.p = cfg.dropout
        backbone.model_cfg = backbone.model_cfg.model_copy(update={"dropout": cfg.dropout})
    if not isinstance(enc, Encoder):  # a wrapped transformers model: no block structure here
        if cfg.drop_last or cfg.unfreeze_last or cfg.freeze == "embeddings":
            raise UserError(
                f"{backbone.source}: drop_last, unfreeze_last and freeze: embeddings need a "
                "converted encoder; this checkpoint runs wrapped, so use freeze: none or all"
            )
        if cfg.freeze == "all":
            for p in enc.parameters():
                p.requires_grad_(False)
        return
    n = len(enc.blocks)
    if cfg.drop_last:
        if cfg.drop_last >= n:
            raise UserError(
                f"drop_last={cfg.drop_last} would remove all {n} layers; use at most {n - 1}"
            )
        enc.blocks = enc.blocks[: n - cfg.drop_last]
        backbone.model_cfg = backbone.model_cfg.model_copy(update={"n_layer": n - cfg.drop_last})
        n -= cfg.drop_last
    if cfg.freeze == "none":
        return
    frozen = enc.parameters() if cfg.freeze == "all" else enc.embeddings.parameters()
    for p in frozen:
        p.requires_grad_(False)
    if cfg.unfreeze_last:
        if cfg.unfreeze_last > n:
            after = f" after drop_last={cfg.drop_last}" if cfg.drop_last else ""
            raise UserError(
                f"unfreeze_last={cfg.unfreeze_last} but the encoder has {n} layer(s){after}; "
                f"use unfreeze_last of at most {n} (or freeze: none to train every layer)"
            )
        for block in enc.blocks[n - cfg.unfreeze_last :]:
            for p in block.parameters():
                p.requires_grad_(True)
        if getattr(enc, "ln_f", None) is not None:
            for p in enc.ln_f.parameters():
                p.requires_grad_(True)


def make_optimizer_groups(model: TaskModel, cfg: FinetuneConfig) -> list[dict]:
    """Backbone at train.lr (each block lower by `layer_lr_decay`, if set), head at head_lr;
    no weight decay on biases and norms."""
    lr = cfg.train.lr
    parts = [(m, lr * scale) for m, scale in _layer_lr_scales(model.backbone, cfg)]
    parts.append((model.head, cfg.head_lr or lr))
    groups = []
    for part, part_lr in parts:
        for g in param_groups(part, cfg.train.weight_decay):
            groups.append({**g, "lr": part_lr})
    return groups


def _layer_lr_scales(backbone: nn.Module, cfg: FinetuneConfig) -> list[tuple[nn.Module, float]]:
    """(module, lr multiplier) covering the backbone: with layer_lr_decay d, block i of n gets
    d ** (n - 1 - i), the embeddings d ** n; lower layers hold the more general features
    (Howard & Ruder 2018; Clark et al. 2020 fine-tune ELECTRA with d = 0.8)."""
    decay = cfg.layer_lr_decay
    if decay is None:
        return [(backbone, 1.0)]
    if not isinstance(backbone, Encoder):
        raise UserError(
            "layer_lr_decay needs encoderlab's own encoder; this hf: checkpoint runs wrapped "
            "(no layer structure here): remove layer_lr_decay"
        )
    n = len(backbone.blocks)
    parts = [(backbone.embeddings, decay**n)]
    parts += [(block, decay ** (n - 1 - i)) for i, block in enumerate(backbone.blocks)]
    if backbone.ln_f is not None:
        parts.append((backbone.ln_f, 1.0))
    return parts


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class TaskData:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    labels: list[str]
    valid_source: str
    shown: set[str] = field(default_factory=set)  # task messages already printed


def data_fingerprint(data: TaskData) -> dict[str, Any]:
    """What the run trains and validates on, as read and split (not the files: a moved or
    touched file is the same data): a count and a hash of the examples for each."""

    def digest(examples: list[Example]) -> str:
        h = hashlib.sha256()
        for ex in examples:  # where it was read from is not what it holds
            kept = {k: v for k, v in ex.items() if k not in WHERE_READ}
            h.update(json.dumps(kept, sort_keys=True, default=str, ensure_ascii=False).encode())
        return h.hexdigest()[:16]

    return {
        role: {"examples": len(rows), "sha256": digest(rows)}
        for role, rows in (("train", data.train), ("valid", data.valid))
    }


def check_same_data(run: Run, cfg: FinetuneConfig, data: TaskData) -> None:
    """A resume continues mid-epoch in the order the run drew from its training data and keeps
    its validation split: on other data it would do neither, and could validate on examples it
    had trained on. Refused; runs from before the fingerprint pass."""
    saved = run.info.get("data")
    if not isinstance(saved, dict):
        return
    now = data_fingerprint(data)
    for role, key in (("train", "task.train"), ("valid", "task.valid")):
        if saved.get(role) != now[role]:
            source = getattr(cfg.task, role) or f"{cfg.task.train} (its validation split)"
            was, got = (saved.get(role) or {}).get("examples"), now[role]["examples"]
            counts = (
                f"{was:,} examples then, {got:,} now"
                if isinstance(was, int) and was != got
                else f"{got:,} examples, with other content"
            )
            raise UserError(
                f"{run.path}: {key} ({source}) is not the data this run started with ({counts}); "
                "resuming would continue its epoch and validation on other data: restore the "
                "file, or start a new run"
            )


def _same_data(a: str, b: str) -> bool:
    """Whether two task paths name the same file, or the same split of the same data set (a
    DatasetDict folder without `::split` is its train split)."""

    def key(path: str) -> tuple[str, str]:
        if path.startswith("hf:"):
            base, _, split = path.partition("::")
            return base, split or "train"
        base, sep, split = path.rpartition("::") if "::" in path else (path, "", "")
        return str(Path(base).expanduser().resolve()), split or "train"

    return key(a) == key(b)


def read_task_data(
    task: Task, cfg: FinetuneConfig, say: Callable[[str], None], fit: bool = True
) -> TaskData:
    """The task's examples, split and labelled; `fit`: fill the settings learned from the
    training data (task.fit_settings) that the config left unset: not when resuming, whose
    config says what the run trained with (a regression run from before 2026-12-03 has no
    scale, and learned the scores as they are)."""
    t = cfg.task
    if not t.train:
        raise UserError("task.train is not set: give the training file (csv/tsv/jsonl/json/...)")
    read = [whole_unicode(task.read(t.train, t), t.train)]
    train: list[Example] = read[0]
    task.settle_no_gold(train, t.train)  # SNLI's '-': no label, or a class; valid files follow
    if t.format == "auto" and read[0].read_as:  # the run records what it was trained on, so
        t.format = read[0].read_as  # predict reads an unlabelled file the same way
    if hasattr(task, "words_keep_punctuation"):  # tagging: raw text split as training words are
        task.words_keep_punctuation = keeps_punctuation(train) or t.format in ENTITY_FORMATS
    if not any(task.has_gold(ex) for ex in train):
        raise UserError(
            f"{t.train}: no gold labels found{task.missing_gold_hint(t)}{columns_found(t.train, t)}"
        )
    if t.valid:
        valid_path = split_for_role(t.valid, "valid")
        if _same_data(valid_path, t.train):
            say(
                f"warning: task.valid ({t.valid}) is the training data itself: validation "
                "scores will flatter the model; give held-out data, or leave task.valid unset "
                "(task.valid_ratio splits the training file)"
            )
        # labelled: an unlabelled valid file trained with no model selection and no metric
        labelled = {"labelled": True} if "labelled" in signature(task.read).parameters else {}
        read.append(whole_unicode(task.read(valid_path, t, **labelled), valid_path))
        valid: list[Example] = read[-1]
        source = valid_path
    else:
        train, valid = task.split(train, t, cfg.seed)
        source = f"{t.valid_ratio * 100:g}% of {t.train} (seed {cfg.seed})"  # 0.29: 29, not 28
    test: list[Example] = []
    if t.test:
        read.append(read_to_predict(task, split_for_role(t.test, "test"), t))  # every row
        test = read[-1]
        if read[-1].ids_from_file is False:
            raise UserError(
                f"{t.test}: no id column '{t.id_column}' for the submission file; "
                "set task.id_column to the test file's id column"
            )
    # a split's validation part comes from the training file: its labels are the file's (a
    # rare tag the split sent to validation alone is still a known one)
    labels = task.label_names(train if t.valid else [*train, *valid])
    if t.valid:
        task.check_labels(valid, labels, t.valid)
    if t.positive_label is not None and t.positive_label not in labels:
        raise UserError(  # before the run exists: it used to fail at the first evaluation
            f"task.positive_label={t.positive_label!r} is not a label of {t.train} (labels: "
            f"{', '.join(labels)})"
        )
    if t.metric == "roc_auc":
        _check_both_classes(valid, t.valid or source)
    if warning := _spread_warning(t, train, valid, labels):
        say(warning)
    train = [ex for ex in train if task.trainable(ex)]  # what reading counted and said
    if t.train_examples is not None:
        train = _label_budget(train, t.train_examples, cfg.seed, say)
    if fit:
        task.fit_settings(t, train)
    data = TaskData(train, valid, test, labels, source)
    for result in read:
        show_messages(result, data.shown, say)
    return data


def _spread_warning(
    t: TaskConfig, train: list[Example], valid: list[Example], labels: list[str]
) -> str | None:
    """A label column with a different value in most rows (the text column named by mistake)
    trained as many one-example classes, and a split that held out nothing trained without
    validation (no best checkpoint, no early stopping), both without a word."""
    rows = len(train) + (0 if t.valid else len(valid))
    many = isinstance(t.label_column, str) and rows >= 20 and len(labels) > rows / 2
    column = f"; is task.label_column ('{t.label_column}') the label?" if many else ""
    if not valid and not t.valid and t.valid_ratio > 0:
        why = f"; {len(labels):,} labels: one needs two examples to hold one out" if many else ""
        return (
            f"warning: task.valid_ratio={t.valid_ratio:g} held out no examples of {t.train} "
            f"({rows:,} rows{why}), so the run trains without validation (no best checkpoint, "
            f"no early stopping){column or '; give task.valid, or raise task.valid_ratio'}"
        )
    if many:
        return f"warning: {t.train}: {len(labels):,} different labels in {rows:,} rows{column}"
    return None


def _check_both_classes(valid: list[Example], where: str) -> None:
    """ROC-AUC is undefined on a validation set of one class: every evaluation would score
    nan, the first checkpoint would stay "best" and early stopping would end the run."""
    gold = {ex.get("label") for ex in valid} - {None}
    if len(gold) == 1 and isinstance(next(iter(gold)), str):  # (multilabel: per label)
        raise UserError(
            f"task.metric=roc_auc needs both labels in the validation set; {where} holds only "
            f"'{gold.pop()}' ({len(valid)} examples); use task.metric mcc or acc, or a "
            "validation set with both labels"
        )


def _label_budget(
    train: list[Example], n: int, seed: int, say: Callable[[str], None]
) -> list[Example]:
    """task.train_examples: a seeded random subset of the training examples, in file order (the
    label set stays the whole file's, so every seed's model has the same head)."""
    if n >= len(train):
        say(
            f"warning: task.train_examples={n:,} is not fewer than the {len(train):,} training "
            "examples there are; all of them are used"
        )
        return train
    keep = np.sort(np.random.default_rng([seed, 17]).choice(len(train), size=n, replace=False))
    say(f"training on {n:,} of {len(train):,} examples (task.train_examples, seed {seed})")
    return [train[i] for i in keep]


# ---------------------------------------------------------------------------------------------
# The command


def finetune(
    cfg: FinetuneConfig | None = None,
    say: Callable[[str], None] = print,
    resume: str | Path | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    started: float | None = None,
) -> tuple[Run, FitResult]:
    """Start a fine-tuning run from `cfg` (after its self_pretrain: stage, if it has one), or
    continue the run at `resume` from its last checkpoint (same data split, tokenizer,
    architecture and freezing as it started with). `started`: time.perf_counter() when the
    command began (the CLI's imports), where a whole-run time budget starts; default now.
    Under torchrun: on every rank, see `encoderlab.distributed`."""
    if resume is None and cfg is not None:
        check_installed(cfg.train.loggers)  # a missing tracker: before any stage or data
    if resume is None and cfg is not None and cfg.self_pretrain is not None:
        check_before_stage(cfg)  # a label-column typo was found only after the pretraining
        # one process group for both stages: a group made anew per stage reused torchrun's
        # store keys, and a rank that came late read the last group's addresses and hung
        with distributed.session(resolve_device(cfg.train.device)):
            cfg = self_pretrain(cfg, say)  # init: the pretraining run it made or found
            # that stage had its own budget: fine-tuning's starts after it
            return _finetune_from(cfg, say, None, on_eval, None)
    return _finetune_from(cfg, say, resume, on_eval, started)


def _finetune_from(
    cfg: FinetuneConfig | None,
    say: Callable[[str], None],
    resume: str | Path | None,
    on_eval: Callable[[int, dict[str, float]], None] | None,
    started: float | None,
) -> tuple[Run, FitResult]:
    if started is None:
        started = time.perf_counter()  # a whole-run time budget counts from here
    run: Run | None = None
    if resume is not None:
        run = Run.open(resume)
        if not str(run.info.get("kind", "")).startswith("finetune"):
            raise UserError(
                f"{run.path}: is not a fine-tuning run; use `encoderlab pretrain --resume`"
            )
        run.resumable_checkpoint()
        cfg = load_config(run.path / "config.yaml", schema=FinetuneConfig)
        if "group_by_length" not in cfg.train.model_fields_set:
            cfg.train.group_by_length = False  # a run started before grouping: same order
        if run.info.get("outputs") == "pending" and run.info.get("status") == "finished":
            return run, _write_outputs_again(run, cfg, say)  # stopped while writing them
        check_not_finished(run, cfg.train, "To train longer, start a new fine-tuning run")
    else:
        assert cfg is not None
        check_runs_dir(cfg.runs_dir)  # before the data, tokenizer and self-pretraining
        if cfg.init.strip().startswith("hf:"):
            require_transformers()  # its one line before the defaults' warnings, not after them
        cfg = resolve_defaults(cfg, distributed.main_says(say))
    assert cfg is not None
    with distributed.session(resolve_device(cfg.train.device)):
        run, result = _finetune(cfg, run, distributed.main_says(say), on_eval, started)
    if distributed.is_main():
        run.update(wall_seconds=round(time.perf_counter() - started, 1))
    run.close()  # the run directory is free again (a later write takes the lock anew)
    return run, result


def check_before_stage(cfg: FinetuneConfig) -> None:
    """What fine-tuning would refuse about its data (labels, columns, test ids), said before
    minutes of pretraining (selfpretrain.check_finetuning_fits: the encoder's shape). Reads
    the data once more, on a copy: reading fixes task.format."""
    task = get_task(cfg.task.type, cfg.task)
    read_task_data(task, cfg.model_copy(deep=True), say=lambda m: None)


def check_segments(features: list[Feature], n_segments: int) -> None:
    """A pair's second text is segment 1: an encoder with one segment embedding cannot read it
    (it failed with an IndexError deep in the model, leaving a run without a checkpoint)."""
    if n_segments == 0:  # no segment embedding: type ids are ignored
        return
    used = max(
        (int(np.max(f["token_type_ids"])) for f in features if len(f.get("token_type_ids", ()))),
        default=0,
    )
    if used >= n_segments:
        raise UserError(
            f"model.n_segments={n_segments}: this task's pairs put their second text in segment "
            f"{used}; set model.n_segments=2 (or 0: no segment embedding)"
        )


UNKNOWN_SHARE_WARNING = 0.01  # English text under an English vocabulary: 0.0 %; Korean: 4-6 %


def unknown_token_share(features: list[Feature], tok: Tokenizer) -> float:
    """Share of the text's tokens (specials and padding left out) that are [UNK]."""
    ids = special_ids(tok)
    rows = [np.asarray(f["input_ids"]) for f in features if "input_ids" in f]
    if not rows:
        return 0.0
    flat = np.concatenate(rows)
    unknown = int((flat == ids["unk"]).sum())
    text = int((~np.isin(flat, list(ids.values()))).sum()) + unknown
    return unknown / text if text else 0.0


def warn_unknown_tokens(
    features: list[Feature],
    tok: Tokenizer,
    source: str,
    say: Callable[[str], None],
    trained_vocab: int | None = None,
) -> None:
    """A checkpoint whose vocabulary cannot spell the task's text (MiniLM's English vocabulary
    on Korean reviews: 5.9 % of tokens, a third of the words) trains, but cannot learn what it
    cannot read: say so before the time is spent. `trained_vocab`: the tokenizer.vocab_size of
    a tokenizer this run trained on the task's own text, which lacks characters only when it is
    too small (wordpiece 200 on Korean: 42 % [UNK]); the fix is then a larger one, not another
    tokenizer trained on the text (which it was)."""
    share = unknown_token_share(features, tok)
    if share <= UNKNOWN_SHARE_WARNING:
        return
    if trained_vocab is not None:
        say(
            f"warning: {share:.1%} of the training text's tokens are [UNK] under the tokenizer "
            f"trained on it: tokenizer.vocab_size={trained_vocab} is too small to hold the "
            "text's characters; raise tokenizer.vocab_size"
        )
        return
    say(
        f"warning: {share:.1%} of the training text's tokens are [UNK] under the tokenizer of "
        f"{source}: the model cannot read those words (another script or language?); use a "
        "checkpoint made for this text, or train a tokenizer on it and pretrain"
    )


def _finetune(
    cfg: FinetuneConfig,
    run: Run | None,
    say: Callable[[str], None],
    on_eval: Callable[[int, dict[str, float]], None] | None,
    started: float | None = None,
) -> tuple[Run, FitResult]:
    check_batch_size(cfg.train)
    task = get_task(cfg.task.type, cfg.task)  # task.metric: its primary metric
    check_early_stop_metric(cfg.train, validation_metric_names(cfg))
    stop_on = cfg.train.early_stop_metric
    if stop_on and cfg.task.metric and stop_on != f"valid/{cfg.task.metric}":
        say(
            f"warning: train.early_stop_metric={stop_on} also picks the best weights (and so "
            f"the predictions), not task.metric={cfg.task.metric}; set both to one metric"
        )
    set_threads(cfg.train.threads, say)
    seed_everything(cfg.seed)
    data = read_task_data(task, cfg, say, fit=run is None)
    if run is not None:
        check_same_data(run, cfg, data)
    test_ids = [ex["id"] for ex in data.test]
    if len(set(test_ids)) != len(test_ids):
        raise UserError(f"{cfg.task.test}: ids in column '{cfg.task.id_column}' are not unique")
    backbone = _backbone(cfg, run, data, say)
    tok = backbone.tokenizer
    pad_id = special_ids(tok)["pad"]
    train_f = task.encode(data.train, tok, cfg.task, data.labels)
    valid_f = task.encode(data.valid, tok, cfg.task, data.labels)
    test_f = task.encode(data.test, tok, cfg.task, data.labels) if data.test else []
    for features in (train_f, valid_f, test_f):
        show_messages(features, data.shown, say)
    check_segments(train_f, backbone.model_cfg.n_segments)
    trained_here = run is None and cfg.init.strip() == "scratch" and not cfg.tokenizer.path
    trained_vocab = cfg.tokenizer.vocab_size if trained_here else None
    warn_unknown_tokens(train_f, tok, backbone.source, say, trained_vocab)
    n_labels = max(len(data.labels), 1)
    device = resolve_device(cfg.train.device)
    model = TaskModel(backbone.encoder, task.head(cfg.head, backbone.model_cfg.d_model, n_labels))
    if run is None:  # a resumed run said it when it started
        for line in unused_head_settings(cfg, model.head):
            say(line)
    if backbone.pooler is not None and isinstance(model.head, PoolerHead):
        model.head.dense.load_state_dict(backbone.pooler)
        say("pooler head: dense layer initialised from the checkpoint's pooler")
    model, optimizer = prepare_training(
        model, cfg.train, device, lambda m: make_optimizer_groups(m, cfg)
    )

    resuming = run is not None
    run = _open_run(cfg, run, task.type, backbone, data)
    _describe_run(run, cfg, model, backbone.source, task, data, say)

    weights = task.loss_weights(data.train, data.labels, cfg.task)
    if weights is not None and not resuming:
        shown = ", ".join(
            f"{n} {w:.3g}" for n, w in zip(data.labels, weights.tolist(), strict=True)
        )
        say(
            f"class weights ({cfg.task.class_weights if isinstance(cfg.task.class_weights, str) else 'given'}): {shown}"
        )
    weights = weights.to(device) if weights is not None else None

    def objective_step(m: nn.Module, batch: dict[str, torch.Tensor]):
        logits = m(*model_inputs(batch))
        return task.loss(logits, batch if weights is None else {**batch, "class_weights": weights})

    objective = Objective(
        step=objective_step,
        metrics=task.train_metrics,
        primary=task.primary_metric,
        primary_mode=task.primary_mode,
        units="n",  # every task's loss is a mean over its "n" count (labelled rows or tokens)
        metric_names=validation_metric_names(cfg),
    )

    last = LastEvaluation(task, data, valid_f, cfg, pad_id, device, on_eval)
    result = fit(
        model,
        optimizer,
        FeatureSet(train_f),
        FeatureSet(valid_f) if valid_f else None,
        lambda b: task.collate(b, pad_id),
        objective,
        cfg.train,
        run,
        seed=cfg.seed,
        resume=resuming,
        evaluator=last.evaluate if valid_f else None,
        on_eval=last.evaluated,
        say=say,
        started=started,
        # write_evaluation's test predictions; its valid predictions reuse fit's last
        # evaluation (already priced by fit) whenever the best checkpoint is the last one
        tail_rows=len(test_f),
        keep_best=True,  # checkpoints/best-<step>/: the weights `run_checkpoint` gives
    )
    if not distributed.is_main():
        return run, result
    # the best checkpoint's predictions, for reports and example-level comparisons
    ckpt = run_checkpoint(run)
    load_model(model, str(ckpt / "model.safetensors"))  # handles tensors saved once when shared
    reuse = last.of(ckpt.name)  # the best checkpoint is the last one evaluated
    write_evaluation(
        run, model, task, cfg, data, valid_f, test_f, pad_id, device, ckpt.name, say, reuse
    )
    run.update(outputs="written")
    return run, result


def unused_head_settings(cfg: FinetuneConfig, head: nn.Module) -> list[str]:
    """Warnings for head settings a qa or tagging run cannot use (any head.type but cls, the
    cnn settings): those tasks score every token with their own linear head, and the settings
    went unused without a word. (A sequence task's file may keep cnn settings for a
    `--set head.type=cnn` arm: not warned.)"""
    if not isinstance(head, TokenHead):
        return []
    given = cfg.head.model_fields_set  # and not a default: a saved config.yaml writes them all
    fields = type(cfg.head).model_fields
    keys = [
        k
        for k in ("type", "cnn_filters", "cnn_kernels")
        if k in given and getattr(cfg.head, k) != fields[k].get_default(call_default_factory=True)
    ]
    if not keys:
        return []
    shown = ", ".join(f"head.{k}={getattr(cfg.head, k)}" for k in keys)
    return [
        f"warning: {shown} not used: task.type={cfg.task.type} scores every token with its "
        "own linear head (head.dropout applies); remove " + " and ".join(f"head.{k}" for k in keys)
    ]


def _write_outputs_again(run: Run, cfg: FinetuneConfig, say: Callable[[str], None]) -> FitResult:
    """A run stopped (Ctrl-C, kill -9) after training, while writing its best checkpoint's
    predictions and submission: --resume writes them, and trains nothing."""
    from encoderlab.inference import load_finetuned

    ft = load_finetuned(run.path)
    say(f"resuming {run.path}: trained; writing its best checkpoint's predictions")
    data = read_task_data(ft.task, cfg, say, fit=False)
    valid_f = ft.task.encode(data.valid, ft.tokenizer, cfg.task, ft.labels)
    test_f = ft.task.encode(data.test, ft.tokenizer, cfg.task, ft.labels)
    ckpt = run_checkpoint(run)
    write_evaluation(
        run, ft.model, ft.task, cfg, data, valid_f, test_f, ft.pad_id, ft.device, ckpt.name, say
    )
    run.update(outputs="written")
    info = run.info
    return FitResult(
        step=int(info.get("steps", 0)),
        epoch=int(info.get("epoch", 0) or 0),
        stopped_because=str(info.get("stopped_because", "finished")),
        best=dict(info.get("best") or {}),
        train_seconds=float(info.get("train_seconds", 0.0)),
    )


def _open_run(
    cfg: FinetuneConfig, run: Run | None, task_type: str, backbone: Backbone, data: TaskData
) -> Run:
    """The run to train in: `run` when resuming, else a new one (created by the main process
    with its tokenizer, model config and labels); read-only on the other DDP ranks."""
    if run is None:

        def create() -> str:
            new = Run.create(cfg.runs_dir, cfg.name, cfg, kind=f"finetune/{task_type}")
            save_tokenizer(backbone.tokenizer, new.path / "tokenizer")
            (new.path / "model_config.json").write_text(
                backbone.model_cfg.model_dump_json(indent=1)
            )
            if backbone.hf_config is not None:
                save_wrapped_config(backbone.hf_config, new.path)
            (new.path / "labels.json").write_text(json.dumps(data.labels, ensure_ascii=False))
            save_config(_as_trained(cfg, backbone.model_cfg), new.path / "config.yaml")
            new.update(outputs="pending", data=data_fingerprint(data))  # outputs: "written"
            # once its final predictions are; data: what a resume must find again
            return str(new.path)

        run = Run(distributed.on_main(create))
    return run if distributed.is_main() else ReadOnlyRun(run.path)


def _as_trained(cfg: FinetuneConfig, model_cfg: ModelConfig) -> FinetuneConfig:
    """The config a run saves: with a backbone from a run or the hub, its `model:` section is
    the architecture that backbone brought (it held the schema's defaults, e.g. post-LN for a
    pre-LN encoder); vocab_size and pad_id stay as written (the tokenizer sets them)."""
    if cfg.init.strip() == "scratch":
        return cfg
    keep = {"vocab_size": cfg.model.vocab_size, "pad_id": cfg.model.pad_id}
    return cfg.model_copy(update={"model": model_cfg.model_copy(update=keep)})


def _describe_run(
    run: Run,
    cfg: FinetuneConfig,
    model: nn.Module,
    source: str,
    task: Task,
    data: TaskData,
    say: Callable[[str], None],
) -> None:
    """What the run is, in run.json and in three lines for the user."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run.update(
        params=num_params(model),
        trainable_params=trainable,
        init=source,
        # what its weights are at heart, for runs that start from this one (init_kind): a
        # parent moved or deleted since can no longer be followed back to hf:
        init_kind=init_kind(cfg.init),
        task=task.type,
        # tagging: raw text to tag is split as the training words were (load_finetuned)
        **(
            {"words_keep_punctuation": task.words_keep_punctuation}
            if hasattr(task, "words_keep_punctuation")
            else {}
        ),
        description=cfg.description,
        train_examples_raw=len(data.train),
        valid_examples_raw=len(data.valid),
        test_examples=len(data.test),
        valid_source=data.valid_source,
        **({"self_pretrain": cfg.self_pretrain.run} if cfg.self_pretrain else {}),
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    say(
        f"{task.type}: {len(data.train):,} train / {len(data.valid):,} valid examples"
        f"{f' / {len(data.test):,} test' if data.test else ''}; labels: {len(data.labels)}; "
        f"backbone: {source}"
    )
    say(f"Total params: {num_params(model):,} (trainable {trainable:,})")
    say(f"run {run.path}")


@dataclass
class LastEvaluation:
    """Validation during fine-tuning, which remembers its last result and the step it was made
    at. When the best checkpoint is that step, its weights were the ones evaluated: the final
    predictions reuse the result instead of evaluating the same weights a second time. The
    validation batches are collated (sorted by length, pinned for a GPU) once, at the first
    evaluation."""

    task: Task
    data: TaskData
    features: list
    cfg: FinetuneConfig
    pad_id: int
    device: torch.device
    on_eval: Callable[[int, dict[str, float]], None] | None
    step: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    batches: EvalBatches | None = None

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """fit's `evaluator`: the valid set's scalar metrics, with the validation loss from
        the same pass."""
        if self.batches is None:
            self.batches = EvalBatches.build(
                self.task,
                self.features,
                self.pad_id,
                self.cfg.train.batch_size,
                pin=self.device.type == "cuda",
            )
        self.metrics, self.rows = evaluate_examples(
            model,
            self.task,
            self.data.valid,
            self.features,
            self.cfg,
            self.data.labels,
            self.pad_id,
            self.device,
            self.batches,
            with_loss=True,
        )
        self.step = None  # until fit says which step it was (`evaluated`)
        return scalar_metrics(self.metrics)

    def evaluated(self, step: int, metrics: dict[str, float]) -> None:
        """fit's `on_eval`: the step of the evaluation just made; then the caller's on_eval."""
        self.step = step
        if self.on_eval is not None:
            self.on_eval(step, metrics)

    def of(self, checkpoint: str) -> LastEvaluation | None:
        """This result if it was made with the weights of `checkpoint` (a best-N or step-N
        folder name)."""
        made = self.step is not None and checkpoint.rsplit("-", 1)[-1] == f"{self.step:08d}"
        return self if made else None


def _backbone(
    cfg: FinetuneConfig, run: Run | None, data: TaskData, say: Callable[[str], None]
) -> Backbone:
    """A resumed run's architecture (weights come from its checkpoint), or a new backbone,
    shaped (drop_last, freezing) as the config says."""
    if run is not None:  # the architecture the run trained; weights come from its checkpoint
        saved_labels = json.loads((run.path / "labels.json").read_text())
        if saved_labels != data.labels:
            raise UserError(f"{cfg.task.train}: its labels changed since {run.path} started")
        model_cfg = run_model_config(run)
        backbone = Backbone(
            run_encoder(run, model_cfg),
            load_tokenizer(run.path / "tokenizer"),
            model_cfg,
            str(run.info.get("init", "")),
        )
        shape_backbone(backbone, cfg.model_copy(update={"drop_last": 0}))
    else:
        backbone = build_backbone(cfg, data.train, say)
        if cfg.task.max_len > backbone.model_cfg.max_len:
            raise UserError(
                f"task.max_len={cfg.task.max_len} is longer than the encoder's max_len="
                f"{backbone.model_cfg.max_len}; lower task.max_len"
            )
        shape_backbone(backbone, cfg)
    return backbone


def write_evaluation(
    run, model, task, cfg, data, valid_f, test_f, pad_id, device, ckpt_name, say, reuse=None
) -> None:
    """Write the best checkpoint's (loaded in `model`) valid and test predictions and metrics.
    `reuse`: a LastEvaluation of these same weights, whose valid rows are written as they are."""
    if data.valid:
        if reuse is not None:
            metrics, rows = reuse.metrics, reuse.rows
        else:
            metrics, rows = evaluate_examples(  # with the loss, as a reused evaluation has
                model, task, data.valid, valid_f, cfg, data.labels, pad_id, device, with_loss=True
            )
        write_jsonl(run.path / "predictions" / "valid.jsonl", rows)
        out = {"checkpoint": ckpt_name, "data": data.valid_source, **metrics}
        if (same := task.one_answer(rows)) is not None:
            out["learned_nothing"] = same
        (run.path / "eval").mkdir(exist_ok=True)
        (run.path / "eval" / "valid.json").write_text(
            json.dumps(finite(out), indent=1, ensure_ascii=False)
        )
        run.update(final={"checkpoint": ckpt_name, **scalar_metrics(metrics)})
        say(
            "best checkpoint "
            + ckpt_name
            + ": "
            + "  ".join(f"{k} {v:.4f}" for k, v in scalar_metrics(metrics).items())
        )
        if same is not None:
            hint = _lr_hint(cfg) + _imbalance_hint(cfg, data)
            say(f"warning: the best checkpoint {same}: it learned nothing; {hint}")
    loss = metrics.get("loss", 0.0) if data.valid else 0.0
    if data.test and isinstance(loss, float) and not math.isfinite(loss):
        say(  # a diverged run's weights: every answer would come from NaN scores
            "warning: the best checkpoint's scores are not finite (validation loss "
            f"{loss}): the run diverged; no test predictions or submission written; lower "
            "train.lr and run again"
        )
    elif data.test:
        _, rows = evaluate_examples(  # a test set of many rows: a bar on a terminal
            model, task, data.test, test_f, cfg, data.labels, pad_id, device, progress=True
        )
        write_jsonl(run.path / "predictions" / "test.jsonl", rows)
        table = task.submission(rows, cfg.task)
        answers = task.submission_json(rows)
        if table is not None:
            write_submission(run.path / "submission.csv", table)
            say(f"submission: {run.path / 'submission.csv'} ({len(rows):,} rows)")
        elif answers is not None:
            write_text_atomic(run.path / "submission.json", json.dumps(answers, ensure_ascii=False))
            say(f"submission: {run.path / 'submission.json'} ({len(answers):,} answers)")
