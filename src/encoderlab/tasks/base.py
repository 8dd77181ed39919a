"""The Task interface: everything a task type provides, so fine-tuning stays task-agnostic.

A new task type is one new module in this package implementing `Task`, registered in
`tasks/__init__.py`; nothing else changes.

Data flow (all plain Python / numpy until collate):
  read(path)            -> examples: list[dict], each with "id" (str) and "line" (int, where
                           it came from, for error messages) plus task fields; gold labels
                           are None when the file has none (a test set)
  split(examples)       -> (train, valid) when no valid file is given
  label_names(examples) -> the label set, saved with the run (empty for QA)
  encode(examples)      -> features: list[dict] of numpy arrays/ints; every feature has
                           "input_ids", "token_type_ids" and "example_index" (position in
                           `examples`); QA may give several features (windows) per example
  collate(features)     -> dict of tensors; must include input_ids and attention_mask
  head(...)             -> nn.Module: head(hidden (B,T,d), attention_mask) -> logits
  loss(logits, batch)   -> (loss, summable counts) for the trainer; train_metrics(counts)
  decode(outputs, ...)  -> one prediction per example, from per-feature logits (numpy,
                           token-level logits cut to the feature's real length)
  metrics(preds, examples)         -> flat dict of floats (logged) + "extra" non-scalars
  prediction_rows(preds, examples) -> rows for predictions files and example-level diffs
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import HeadConfig, TaskConfig

Example = dict[str, Any]
Feature = dict[str, Any]


class Task(Protocol):
    type: str
    token_level: bool  # logits per token (tagging, qa) rather than per sequence

    def read(self, path: str, cfg: TaskConfig) -> list[Example]: ...

    def split(
        self, examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]: ...

    def label_names(self, examples: list[Example]) -> list[str]: ...

    def encode(
        self, examples: list[Example], tok: Tokenizer, cfg: TaskConfig, labels: list[str]
    ) -> list[Feature]: ...

    def collate(self, features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]: ...

    def head(self, cfg: HeadConfig, d_model: int, n_labels: int) -> nn.Module: ...

    def loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def train_metrics(self, counts: dict[str, float]) -> dict[str, float]: ...

    def decode(
        self,
        outputs: list[np.ndarray],
        features: list[Feature],
        examples: list[Example],
        cfg: TaskConfig,
        labels: list[str],
    ) -> list[Any]: ...

    def metrics(
        self, predictions: list[Any], examples: list[Example], cfg: TaskConfig, labels: list[str]
    ) -> dict[str, Any]: ...

    def prediction_rows(
        self, predictions: list[Any], examples: list[Example], labels: list[str]
    ) -> list[dict[str, Any]]: ...


def pad_stack(arrays: list[np.ndarray], pad: int, dtype=np.int64) -> torch.Tensor:
    """Right-pad 1-D arrays to the longest one (dynamic padding)."""
    length = max(len(a) for a in arrays)
    out = np.full((len(arrays), length), pad, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return torch.from_numpy(out)


def base_collate(features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids / token_type_ids / attention_mask, padded to the batch's longest feature."""
    ids = [np.asarray(f["input_ids"]) for f in features]
    return {
        "input_ids": pad_stack(ids, pad_id),
        "token_type_ids": pad_stack([np.asarray(f["token_type_ids"]) for f in features], 0),
        "attention_mask": pad_stack([np.ones(len(a), dtype=np.int64) for a in ids], 0),
    }


def token_counts(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy and accuracy over the positions that carry a label."""
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat = labels.reshape(-1)
    keep = flat != ignore_index
    n = keep.sum()
    if int(n) == 0:
        loss = flat_logits.sum() * 0.0
    else:
        loss = nn.functional.cross_entropy(flat_logits.float(), flat, ignore_index=ignore_index)
    correct = ((flat_logits.argmax(-1) == flat) & keep).sum()
    return loss, {"loss_sum": loss.detach().float() * n, "n": n.float(), "correct": correct.float()}


def counts_to_metrics(c: dict[str, float]) -> dict[str, float]:
    n = max(c.get("n", 0.0), 1.0)
    return {"loss": c.get("loss_sum", 0.0) / n, "acc": c.get("correct", 0.0) / n}
