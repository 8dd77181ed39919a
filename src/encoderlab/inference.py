"""A finished fine-tuning run in use: load it once, then predict and evaluate many times.

`predict`, `evaluate`, a future `serve` and the Python API all go through `Finetuned`:

    ft = load_finetuned("runs/my-run")   # tokenizer, task, model built once
    ft.predict(["first text", "second"]) # cheap per call: encode, forward, decode

This module depends on the model, the tasks and `runtime` (device, precision, loaders), never
on the trainer, so serving does not pull in training code. Fine-tuning reuses its
evaluation (`evaluate_examples`) for validation and for the final predictions files.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import FinetuneConfig, load_config
from encoderlab.errors import UserError
from encoderlab.hf import run_encoder
from encoderlab.model import Encoder
from encoderlab.runs import Run, run_checkpoint, run_model_config
from encoderlab.runtime import autocast, autocast_dtype, resolve_device, to_device
from encoderlab.tasks import get_task
from encoderlab.tasks.base import Example, Feature, Task
from encoderlab.tokenizer import load_tokenizer, special_ids


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
        if getattr(self.head, "first_token_only", False) and isinstance(self.backbone, Encoder):
            # a [CLS] head: after the last block's attention everything is per position, so
            # the encoder runs that part (out projection, feed-forward: ~3/4 of a block) on
            # the first token alone; the head sees (B,1,d), its h[:, 0] the same vectors
            B, T = input_ids.shape
            first = torch.arange(0, B * T, T, device=input_ids.device)
            hidden = self.backbone(input_ids, attention_mask, token_type_ids, rows=first)
            return self.head(hidden[:, None], attention_mask)
        hidden = self.backbone(input_ids, attention_mask, token_type_ids)
        return self.head(hidden, attention_mask)


class FeatureSet(torch.utils.data.Dataset):
    """Encoded features; `lengths` (tokens per feature) lets the trainer group rows by length."""

    def __init__(self, features: list[Feature]) -> None:
        self.features = features
        self.lengths = feature_lengths(features)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> Feature:
        return self.features[i]


# ---------------------------------------------------------------------------------------------
# Inference


def feature_lengths(features: list[Feature]) -> np.ndarray:
    """Tokens per feature (its unpadded length)."""
    return np.fromiter((len(f["input_ids"]) for f in features), np.int64, count=len(features))


@dataclass
class EvalBatches:
    """A fixed set's collated batches, longest rows first, built once and reused.

    Sorting by length leaves almost no padding; validation runs at every evaluation, so its
    batches are collated (and pinned, for a GPU) once. `rows[i]` are the features of batch i.
    """

    batches: list[dict[str, torch.Tensor]]
    rows: list[np.ndarray]
    lengths: np.ndarray

    @classmethod
    def build(
        cls, task: Task, features: list[Feature], pad_id: int, batch_size: int, pin: bool = False
    ) -> EvalBatches:
        lengths = feature_lengths(features)
        order = np.argsort(-lengths, kind="stable")
        rows = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        batches = []
        for idx in rows:
            batch = task.collate([features[i] for i in idx], pad_id)
            if pin:
                batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
            batches.append(batch)
        return cls(batches, rows, lengths)


@torch.no_grad()
def predict_outputs(
    model: nn.Module,
    task: Task,
    features: list[Feature],
    pad_id: int,
    batch_size: int,
    device: torch.device,
    amp: torch.dtype | None = None,
    batches: EvalBatches | None = None,
) -> list[np.ndarray]:
    """Logits per feature, in the order of `features`; token-level ones cut to the feature's
    real length. `batches`: the features' prebuilt batches (else built here)."""
    was_training = model.training
    model.eval()
    if batches is None:
        batches = EvalBatches.build(task, features, pad_id, batch_size, device.type == "cuda")
    outputs: list[np.ndarray] = [np.empty(0)] * len(features)
    for batch, idx in zip(batches.batches, batches.rows, strict=True):
        batch = to_device(batch, device)
        with autocast(device, amp):
            logits = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        logits = logits.float().cpu().numpy()
        for row, i in zip(logits, idx, strict=True):
            outputs[i] = row[: batches.lengths[i]] if task.token_level else row
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
    batches: EvalBatches | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics incl. "extra", prediction rows) for a labelled or unlabelled set.
    `batches`: the features' prebuilt batches, for a set evaluated again and again."""
    amp = autocast_dtype(cfg.train.precision, device)
    outputs = predict_outputs(
        model, task, features, pad_id, cfg.train.batch_size, device, amp, batches
    )
    preds = task.decode(outputs, features, examples, cfg.task, labels)
    labelled = any(task.has_gold(ex) for ex in examples)
    metrics = task.metrics(preds, examples, cfg.task, labels) if labelled else {}
    return metrics, task.prediction_rows(preds, examples, labels)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "extra"}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_submission(path: Path, table: list[list[Any]]) -> None:
    """A task's submission table (header row first) as CSV, e.g. Kaggle's id,target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(table)


# ---------------------------------------------------------------------------------------------
# Using a finished run: evaluate on another file, predict


@dataclass
class Finetuned:
    """A fine-tuning run loaded for use: built once, then `predict`/`evaluate` many times."""

    run: Run
    cfg: FinetuneConfig
    task: Task
    tokenizer: Tokenizer
    labels: list[str]
    model: TaskModel
    device: torch.device
    pad_id: int

    def run_examples(self, examples: list[Example]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(metrics, prediction rows) for examples in the task's format."""
        features = self.task.encode(examples, self.tokenizer, self.cfg.task, self.labels)
        return evaluate_examples(
            self.model,
            self.task,
            examples,
            features,
            self.cfg,
            self.labels,
            self.pad_id,
            self.device,
        )

    def examples_from_texts(self, texts: list[str], text_pair: str | None = None) -> list[Example]:
        return [self.task.example_from_text(t, text_pair, i) for i, t in enumerate(texts)]

    def predict(self, texts: list[str], text_pair: str | None = None) -> list[dict[str, Any]]:
        """One prediction row per text (a server calls this per request)."""
        _, rows = self.run_examples(self.examples_from_texts(texts, text_pair))
        return rows

    def evaluate(self, data_path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(metrics, prediction rows) on a labelled file in the task's format."""
        examples = self.task.read(data_path, self.cfg.task)
        self.task.check_labels(examples, self.labels, data_path)
        return self.run_examples(examples)


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
    return Finetuned(run, cfg, task, tok, labels, model, device, special_ids(tok)["pad"])


def evaluate_file(
    run_dir: str | Path, data_path: str, say: Callable[[str], None] = print
) -> dict[str, Any]:
    ft = load_finetuned(run_dir)
    metrics, rows = ft.evaluate(data_path)
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
        examples = ft.examples_from_texts(texts, text_pair)
    else:
        raise UserError("give --text TEXT or --input FILE")
    _, rows = ft.run_examples(examples)
    if output:
        out = Path(output)
        table = ft.task.submission(rows, ft.cfg.task) if out.suffix == ".csv" else None
        if table is not None:
            write_submission(out, table)
        else:
            write_jsonl(out, rows)
        say(f"wrote {len(rows):,} predictions to {out}")
    elif texts:
        for ex, r in zip(examples, rows, strict=True):
            say(ft.task.show_prediction(ex, r))
    return rows
