"""Fine-tuning: a backbone (scratch / pretraining run) + a task head, trained with `fit`.

After training, the best checkpoint (on the task's primary validation metric) is evaluated
once more and its predictions are written, so two runs can be compared example by example:
  predictions/valid.jsonl, eval/valid.json (metrics incl. confusion matrix / per-class /
  per-type), and for a test file predictions/test.jsonl plus submission.csv.

Under torchrun every rank reads and encodes the task data (it is not cached), rank 0 trains
a scratch tokenizer and creates the run, and rank 0 alone writes the final predictions.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model
from tokenizers import Tokenizer
from torch import nn

from encoderlab import distributed
from encoderlab.config import Config, FinetuneConfig, ModelConfig, load_config, save_config
from encoderlab.errors import UserError
from encoderlab.heads import PoolerHead
from encoderlab.model import Encoder, num_params, param_groups
from encoderlab.pretrain import check_not_finished
from encoderlab.runs import ReadOnlyRun, Run
from encoderlab.runtime import (
    autocast,
    autocast_dtype,
    make_loader,
    resolve_device,
    seed_everything,
    to_device,
)
from encoderlab.tasks import PRIMARY_METRIC, get_task
from encoderlab.tasks.base import Example, Feature, Task
from encoderlab.tokenizer import (
    load_tokenizer,
    save_tokenizer,
    special_ids,
    tokenizer_hash,
    train_tokenizer,
)
from encoderlab.train import FitResult, Objective, check_batch_size, fit


class TaskModel(nn.Module):
    """backbone(ids) -> hidden states -> head -> logits. Checkpoint keys: backbone.*, head.*"""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden = self.backbone(input_ids, attention_mask, token_type_ids)
        return self.head(hidden, attention_mask)


class FeatureSet(torch.utils.data.Dataset):
    def __init__(self, features: list[Feature]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> Feature:
        return self.features[i]


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


def example_texts(examples: list[Example]) -> Iterator[str]:
    """Every piece of text in a task's examples: what a scratch tokenizer is trained on."""
    for ex in examples:
        for key in ("text", "text_pair", "question", "context"):
            if ex.get(key):
                yield ex[key]
        if ex.get("tokens"):
            yield " ".join(ex["tokens"])


def run_checkpoint(run: Run) -> Path:
    """A fine-tuning run's best checkpoint (on its validation metric); a pretraining run's
    latest, since its final weights are what "the pretrained encoder" means."""
    best = run.info.get("best_checkpoint")
    finetuned = str(run.info.get("kind", "")).startswith("finetune")
    if finetuned and best and (run.checkpoint_dir / best / "state.json").is_file():
        return run.checkpoint_dir / best
    latest = run.latest_checkpoint()
    if latest is None:
        raise UserError(f"{run.path}: has no complete checkpoint to take weights from")
    return latest


def run_model_config(run: Run) -> ModelConfig:
    """The encoder architecture a run trained (after any drop_last)."""
    saved = run.path / "model_config.json"
    if saved.is_file():
        return ModelConfig.model_validate(json.loads(saved.read_text()))
    cfg = load_config(run.path / "config.yaml", schema=Config)
    return cfg.model


def encoder_weights(run: Run, ckpt: Path) -> dict[str, torch.Tensor]:
    """The backbone's tensors from a pretraining (encoder.*) or fine-tuning (backbone.*) run."""
    tensors = load_file(str(ckpt / "model.safetensors"))
    prefix = "backbone." if any(k.startswith("backbone.") for k in tensors) else "encoder."
    out = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if "embeddings.tok.weight" not in out and "mlm_head.decoder.weight" in tensors:
        out["embeddings.tok.weight"] = tensors["mlm_head.decoder.weight"]  # tied, saved once
    return out


def build_backbone(
    cfg: FinetuneConfig, train_examples: list[Example], say: Callable[[str], None]
) -> Backbone:
    init = cfg.init.strip()
    if init.startswith("hf:"):
        from encoderlab import hf

        with distributed.main_first():  # a hub download lands in the cache once
            imp = hf.import_checkpoint(
                init.removeprefix("hf:"), say, cfg.hf_trust_remote_code, cfg.hf_allow_pickle
            )
        _check_same_tokenizer(cfg, imp.tokenizer, init)
        return Backbone(
            imp.encoder, imp.tokenizer, imp.model_cfg, imp.source, imp.pooler, imp.hf_config
        )
    if init == "scratch":
        if cfg.tokenizer.path:
            tok = load_tokenizer(cfg.tokenizer.path)
        else:
            say(f"training a {cfg.tokenizer.kind} tokenizer on the task's training text")
            # rank 0 trains, every rank gets its vocabulary (training is not deterministic)
            text = distributed.on_main(
                lambda: train_tokenizer(example_texts(train_examples), cfg.tokenizer).to_str()
            )
            tok = Tokenizer.from_str(text)
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
    encoder = run_encoder(run, model_cfg)
    # a wrapped backbone's config travels on to this run, so it can be rebuilt from it too
    hf_config = None if isinstance(encoder, Encoder) else encoder.model.config
    if random_init:
        return Backbone(
            encoder, tok, model_cfg, f"scratch (architecture of {run.path})", None, hf_config
        )
    ckpt = run_checkpoint(run)
    missing, unexpected = encoder.load_state_dict(encoder_weights(run, ckpt), strict=False)
    if missing:
        raise UserError(
            f"{ckpt}: checkpoint lacks {len(missing)} encoder tensors (e.g. {missing[0]}); "
            "is it an encoderlab run of the same architecture?"
        )
    return Backbone(encoder, tok, model_cfg, f"{run.path}@{ckpt.name}", None, hf_config)


def _check_same_tokenizer(cfg: FinetuneConfig, tok: Tokenizer, where: str) -> None:
    if cfg.tokenizer.path and tokenizer_hash(load_tokenizer(cfg.tokenizer.path)) != tokenizer_hash(
        tok
    ):
        raise UserError(
            f"tokenizer.path={cfg.tokenizer.path} does not match the tokenizer of {where}, "
            "whose embeddings were trained with it; remove tokenizer.path (its own is used)"
        )


def run_encoder(run: Run, model_cfg: ModelConfig) -> nn.Module:
    """The (untrained) backbone module of a run: encoderlab's Encoder, or the wrapped
    transformers model an hf: run kept the config of."""
    from encoderlab.hf import WRAPPED_DIR

    if (run.path / WRAPPED_DIR / "config.json").is_file():
        from encoderlab.hf import wrapped_encoder

        wrapped = wrapped_encoder(run.path)
        assert wrapped is not None
        return wrapped
    return Encoder(model_cfg)


def shape_backbone(backbone: Backbone, cfg: FinetuneConfig) -> None:
    """drop_last, then freezing, applied to an encoderlab Encoder."""
    enc = backbone.encoder
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
            raise UserError(f"unfreeze_last={cfg.unfreeze_last} but the encoder has {n} layers")
        for block in enc.blocks[n - cfg.unfreeze_last :]:
            for p in block.parameters():
                p.requires_grad_(True)
        if getattr(enc, "ln_f", None) is not None:
            for p in enc.ln_f.parameters():
                p.requires_grad_(True)


def make_optimizer_groups(model: TaskModel, cfg: FinetuneConfig) -> list[dict]:
    """Backbone at train.lr, head at head_lr; no weight decay on biases and norms."""
    groups = []
    for part, lr in ((model.backbone, cfg.train.lr), (model.head, cfg.head_lr or cfg.train.lr)):
        for g in param_groups(part, cfg.train.weight_decay):
            groups.append({**g, "lr": lr})
    return groups


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class TaskData:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    labels: list[str]
    valid_source: str


def read_task_data(task: Task, cfg: FinetuneConfig, say: Callable[[str], None]) -> TaskData:
    t = cfg.task
    if not t.train:
        raise UserError("task.train is not set: give the training file (csv/tsv/jsonl/json/...)")
    train = task.read(t.train, t)
    if not any(_has_gold(ex) for ex in train):
        hint = (
            f" (no column '{t.label_column}'); set task.label_column"
            if task.type in ("classification", "pair")
            else ""
        )
        raise UserError(f"{t.train}: no gold labels found{hint}")
    if t.valid:
        valid = task.read(t.valid, t)
        source = t.valid
    else:
        train, valid = task.split(train, t, cfg.seed)
        source = f"{int(t.valid_ratio * 100)}% of {t.train} (seed {cfg.seed})"
    test = []
    if t.test:
        test = task.read(t.test, t)
        if getattr(task, "ids_from_file", True) is False:
            raise UserError(
                f"{t.test}: no id column '{t.id_column}' for the submission file; "
                "set task.id_column to the test file's id column"
            )
    labels = task.label_names(train)
    check = getattr(task, "check_labels", None)
    if check is not None and t.valid:
        check(valid, labels, t.valid)
    report_task_messages(task, say)
    return TaskData(train, valid, test, labels, source)


def report_task_messages(task: Task, say: Callable[[str], None]) -> None:
    """Print the warnings/notes a task collected (counted problems, conversions) once each."""
    shown = task.__dict__.setdefault("_shown_messages", set())
    messages = [f"warning: {w}" for w in getattr(task, "warnings", [])]
    messages += [f"note: {n}" for n in getattr(task, "notes", [])]
    for m in messages:
        if m not in shown:
            shown.add(m)
            say(m)


# ---------------------------------------------------------------------------------------------
# Inference


@torch.no_grad()
def predict_outputs(
    model: nn.Module,
    task: Task,
    features: list[Feature],
    pad_id: int,
    batch_size: int,
    device: torch.device,
    amp: torch.dtype | None = None,
) -> list[np.ndarray]:
    """Logits per feature, token-level ones cut to the feature's real length."""
    was_training = model.training
    model.eval()
    loader = make_loader(
        FeatureSet(features),
        lambda b: task.collate(b, pad_id),
        batch_size,
        np.arange(len(features)),
    )
    outputs: list[np.ndarray] = []
    for batch in loader:
        batch = to_device(batch, device)
        with autocast(device, amp):
            logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        logits = logits.float().cpu().numpy()
        lengths = batch["attention_mask"].sum(1).cpu().numpy()
        for row, n in zip(logits, lengths, strict=True):
            outputs.append(row[: int(n)] if task.token_level else row)
    model.train(was_training)
    return outputs


def evaluate_examples(
    model: nn.Module,
    task: Task,
    examples: list[Example],
    features: list[Feature],
    cfg: FinetuneConfig,
    labels: list[str],
    pad_id: int,
    device: torch.device,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics incl. "extra", prediction rows) for a labelled or unlabelled set."""
    amp = autocast_dtype(cfg.train.precision, device)
    outputs = predict_outputs(model, task, features, pad_id, cfg.train.batch_size, device, amp)
    preds = task.decode(outputs, features, examples, cfg.task, labels)
    labelled = any(_has_gold(ex) for ex in examples)
    metrics = task.metrics(preds, examples, cfg.task, labels) if labelled else {}
    return metrics, task.prediction_rows(preds, examples, labels)


def _has_gold(ex: Example) -> bool:
    return ex.get("label") is not None or ex.get("tags") is not None or bool(ex.get("answers"))


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "extra"}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_submission(
    path: Path, rows: list[dict[str, Any]], cfg: FinetuneConfig, test_file: str
) -> None:
    """Kaggle style: id,<label column> (e.g. id,target), one row per test example."""
    if not cfg.task.id_column:
        raise UserError("a submission file needs task.id_column (the test file's id column)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow([cfg.task.id_column, cfg.task.label_column])
        for r in rows:
            w.writerow([r["id"], r["prediction"]])


# ---------------------------------------------------------------------------------------------
# The command


def finetune(
    cfg: FinetuneConfig | None = None,
    say: Callable[[str], None] = print,
    resume: str | Path | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[Run, FitResult]:
    """Start a fine-tuning run from `cfg`, or continue the run at `resume` from its last
    checkpoint (same data split, tokenizer, architecture and freezing as it started with).
    Under torchrun: on every rank, see `encoderlab.distributed`."""
    run: Run | None = None
    if resume is not None:
        run = Run.open(resume)
        if not str(run.info.get("kind", "")).startswith("finetune"):
            raise UserError(
                f"{run.path}: is not a fine-tuning run; use `encoderlab pretrain --resume`"
            )
        if run.latest_checkpoint() is None:
            raise UserError(f"{run.path}: has no complete checkpoint yet; start a new run instead")
        cfg = load_config(run.path / "config.yaml", schema=FinetuneConfig)
        check_not_finished(run, cfg.train, "To train longer, start a new fine-tuning run")
    assert cfg is not None
    with distributed.session(resolve_device(cfg.train.device)):
        return _finetune(cfg, run, distributed.main_says(say), on_eval)


def _finetune(
    cfg: FinetuneConfig,
    run: Run | None,
    say: Callable[[str], None],
    on_eval: Callable[[int, dict[str, float]], None] | None,
) -> tuple[Run, FitResult]:
    check_batch_size(cfg.train)
    task = get_task(cfg.task.type)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.seed)
    data = read_task_data(task, cfg, say)
    test_ids = [ex["id"] for ex in data.test]
    if len(set(test_ids)) != len(test_ids):
        raise UserError(f"{cfg.task.test}: ids in column '{cfg.task.id_column}' are not unique")
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
    tok = backbone.tokenizer
    pad_id = special_ids(tok)["pad"]
    train_f = task.encode(data.train, tok, cfg.task, data.labels)
    valid_f = task.encode(data.valid, tok, cfg.task, data.labels)
    test_f = task.encode(data.test, tok, cfg.task, data.labels) if data.test else []
    report_task_messages(task, say)
    n_labels = max(len(data.labels), 1)
    device = resolve_device(cfg.train.device)
    model = TaskModel(backbone.encoder, task.head(cfg.head, backbone.model_cfg.d_model, n_labels))
    if backbone.pooler is not None and isinstance(model.head, PoolerHead):
        model.head.dense.load_state_dict(backbone.pooler)
        say("pooler head: dense layer initialised from the checkpoint's pooler")
    model.to(device)
    optimizer = torch.optim.AdamW(
        make_optimizer_groups(model, cfg),
        lr=cfg.train.lr,
        betas=cfg.train.betas,
        eps=cfg.train.adam_eps,
    )

    resuming = run is not None
    if run is None:

        def create() -> str:
            new = Run.create(cfg.runs_dir, cfg.name, cfg, kind=f"finetune/{task.type}")
            save_tokenizer(tok, new.path / "tokenizer")
            (new.path / "model_config.json").write_text(
                backbone.model_cfg.model_dump_json(indent=1)
            )
            if backbone.hf_config is not None:
                from encoderlab.hf import save_wrapped_config

                save_wrapped_config(backbone.hf_config, new.path)
            (new.path / "labels.json").write_text(json.dumps(data.labels, ensure_ascii=False))
            save_config(cfg, new.path / "config.yaml")
            return str(new.path)

        run = Run(distributed.on_main(create))
    if not distributed.is_main():
        run = ReadOnlyRun(run.path)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run.update(
        params=num_params(model),
        trainable_params=trainable,
        init=backbone.source,
        task=task.type,
        description=cfg.description,
        train_examples_raw=len(data.train),
        valid_examples_raw=len(data.valid),
        test_examples=len(data.test),
        valid_source=data.valid_source,
        pid=os.getpid(),
    )
    say(
        f"{task.type}: {len(data.train):,} train / {len(data.valid):,} valid examples"
        f"{f' / {len(data.test):,} test' if data.test else ''}; labels: {len(data.labels)}; "
        f"backbone: {backbone.source}"
    )
    say(f"Total params: {num_params(model):,} (trainable {trainable:,})")
    say(f"run {run.path}")

    def objective_step(m: nn.Module, batch: dict[str, torch.Tensor]):
        logits = m(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return task.loss(logits, batch)

    primary = PRIMARY_METRIC[task.type]
    objective = Objective(
        step=objective_step,
        metrics=task.train_metrics,
        primary=primary,
        primary_mode="max",
        units="n",  # every task's loss is a mean over its "n" count (labelled rows or tokens)
    )

    def evaluator(m: nn.Module) -> dict[str, float]:
        metrics, _ = evaluate_examples(
            m, task, data.valid, valid_f, cfg, data.labels, pad_id, device
        )
        return scalar_metrics(metrics)

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
        evaluator=evaluator if valid_f else None,
        on_eval=on_eval,
        say=say,
    )
    if not distributed.is_main():
        return run, result
    # the best checkpoint's predictions, for reports and example-level comparisons
    ckpt = run_checkpoint(run)
    load_model(model, str(ckpt / "model.safetensors"))  # handles tensors saved once when shared
    write_evaluation(run, model, task, cfg, data, valid_f, test_f, pad_id, device, ckpt.name, say)
    return run, result


def write_evaluation(
    run, model, task, cfg, data, valid_f, test_f, pad_id, device, ckpt_name, say
) -> None:
    if data.valid:
        metrics, rows = evaluate_examples(
            model, task, data.valid, valid_f, cfg, data.labels, pad_id, device
        )
        write_jsonl(run.path / "predictions" / "valid.jsonl", rows)
        out = {"checkpoint": ckpt_name, "data": data.valid_source, **metrics}
        (run.path / "eval").mkdir(exist_ok=True)
        (run.path / "eval" / "valid.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
        run.update(final={"checkpoint": ckpt_name, **scalar_metrics(metrics)})
        say(
            "best checkpoint "
            + ckpt_name
            + ": "
            + "  ".join(f"{k} {v:.4f}" for k, v in scalar_metrics(metrics).items())
        )
    if data.test:
        _, rows = evaluate_examples(
            model, task, data.test, test_f, cfg, data.labels, pad_id, device
        )
        write_jsonl(run.path / "predictions" / "test.jsonl", rows)
        if task.type in ("classification", "pair"):
            write_submission(run.path / "submission.csv", rows, cfg, cfg.task.test)
            say(f"submission: {run.path / 'submission.csv'} ({len(rows):,} rows)")


# ---------------------------------------------------------------------------------------------
# Using a finished run: evaluate on another file, predict


@dataclass
class Finetuned:
    run: Run
    cfg: FinetuneConfig
    task: Task
    tokenizer: Tokenizer
    labels: list[str]
    model: TaskModel
    device: torch.device

    @property
    def pad_id(self) -> int:
        return special_ids(self.tokenizer)["pad"]


def load_finetuned(path: str | Path) -> Finetuned:
    run = Run.open(path)
    if not str(run.info.get("kind", "")).startswith("finetune"):
        raise UserError(
            f"{run.path}: is a {run.info.get('kind')} run; evaluate/predict need a fine-tuning run"
        )
    cfg = load_config(run.path / "config.yaml", schema=FinetuneConfig)
    task = get_task(cfg.task.type)
    tok = load_tokenizer(run.path / "tokenizer")
    labels = json.loads((run.path / "labels.json").read_text())
    model_cfg = run_model_config(run)
    model = TaskModel(
        run_encoder(run, model_cfg), task.head(cfg.head, model_cfg.d_model, max(len(labels), 1))
    )
    load_model(model, str(run_checkpoint(run) / "model.safetensors"))
    device = resolve_device(cfg.train.device)
    model.to(device).eval()
    return Finetuned(run, cfg, task, tok, labels, model, device)


def evaluate_file(
    run_dir: str | Path, data_path: str, say: Callable[[str], None] = print
) -> dict[str, Any]:
    ft = load_finetuned(run_dir)
    examples = ft.task.read(data_path, ft.cfg.task)
    check = getattr(ft.task, "check_labels", None)
    if check is not None:
        check(examples, ft.labels, data_path)
    features = ft.task.encode(examples, ft.tokenizer, ft.cfg.task, ft.labels)
    metrics, rows = evaluate_examples(
        ft.model, ft.task, examples, features, ft.cfg, ft.labels, ft.pad_id, ft.device
    )
    name = f"file-{Path(data_path).stem}"  # never the run's own valid/test outputs
    write_jsonl(ft.run.path / "predictions" / f"{name}.jsonl", rows)
    (ft.run.path / "eval").mkdir(exist_ok=True)
    (ft.run.path / "eval" / f"{name}.json").write_text(
        json.dumps({"data": str(data_path), **metrics}, indent=1, ensure_ascii=False)
    )
    say("  ".join(f"{k} {v:.4f}" for k, v in scalar_metrics(metrics).items()))
    say(f"predictions: {ft.run.path / 'predictions' / f'{name}.jsonl'}")
    say(f"metrics: {ft.run.path / 'eval' / f'{name}.json'}")
    return metrics


def predict(
    run_dir: str | Path,
    texts: list[str] | None = None,
    text_pair: str | None = None,
    input_path: str | None = None,
    output: str | None = None,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    ft = load_finetuned(run_dir)
    if input_path:
        examples = ft.task.read(input_path, ft.cfg.task)
    elif texts:
        examples = [_example_from_text(ft, t, text_pair, i) for i, t in enumerate(texts)]
    else:
        raise UserError("give --text TEXT or --input FILE")
    features = ft.task.encode(examples, ft.tokenizer, ft.cfg.task, ft.labels)
    _, rows = evaluate_examples(
        ft.model, ft.task, examples, features, ft.cfg, ft.labels, ft.pad_id, ft.device
    )
    if output:
        out = Path(output)
        if out.suffix == ".csv" and ft.task.type in ("classification", "pair"):
            write_submission(out, rows, ft.cfg, input_path or "--text")
        else:
            write_jsonl(out, rows)
        say(f"wrote {len(rows):,} predictions to {out}")
    elif texts and ft.task.type == "tagging":
        for ex, r in zip(examples, rows, strict=True):
            say(
                " ".join(
                    f"{w}/{t}" for w, t in zip(ex["tokens"], r["prediction"].split(), strict=False)
                )
            )
    elif texts and ft.task.type == "qa":
        for r in rows:
            say(f"{r['prediction']!r}  (score {r.get('score')})")
    elif texts:
        for r in rows:
            shown = r.get("probability")
            say(
                f"{r['prediction']}"
                + (f"  (p={shown:.3f})" if shown is not None else "")
                + f"  {r.get('input', '')}"
            )
    return rows


def _example_from_text(ft: Finetuned, text: str, text_pair: str | None, i: int) -> Example:
    kind = ft.task.type
    if kind == "classification":
        return {"id": str(i), "line": 0, "text": text, "label": None}
    if kind == "pair":
        if not text_pair:
            raise UserError("a sentence-pair model needs --text-pair as well as --text")
        return {"id": str(i), "line": 0, "text": text, "text_pair": text_pair, "label": None}
    if kind == "tagging":
        return {"id": str(i), "line": 0, "tokens": text.split(), "tags": None}
    if kind == "qa":
        if not text_pair:
            raise UserError("a QA model needs --text QUESTION and --text-pair CONTEXT")
        return {
            "id": str(i),
            "line": 0,
            "title": "",
            "question": text,
            "context": text_pair,
            "answers": [],
        }
    raise UserError(f"--text is not supported for task type {kind}")
