"""Regression on a sentence or a sentence pair: one number per example (STS-B, KLUE-STS).

Read like classification (`tasks.classification`: the same files, columns, filters and long
document handling; `task.text_pair_column` makes it a pair task), but the label is a number,
the head has one output trained with mean squared error, and the metrics are Pearson (the
primary one, as GLUE and KLUE report STS), Spearman and MSE. With windows, a document's
prediction is the mean of its windows' outputs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from encoderlab.config import HeadConfig, TaskConfig
from encoderlab.errors import UserError
from encoderlab.heads import sequence_head
from encoderlab.tasks import scores
from encoderlab.tasks.base import (
    MIN_ROWS_TO_JUDGE,
    ONE_ANSWER_SHARE,
    Example,
    Feature,
    base_collate,
)
from encoderlab.tasks.classification import (
    DASH,
    NO_LABEL,
    ClassificationTask,
    ColumnPairs,
    input_row,
    pooled_logits,
)
from encoderlab.tasks.registry import register


@register
class RegressionTask(ColumnPairs, ClassificationTask):
    """[CLS] text [SEP] (text_pair [SEP]) -> one number."""

    type = "regression"
    primary_metric = "pearson"
    reported_metrics = ("pearson", "spearman", "mse")
    metric_names = reported_metrics
    report_details = None
    hf_head = "sequence"  # a one-label sequence head: transformers' regression
    hf_problem_type = "regression"  # else transformers' pipeline puts the number through a sigmoid

    def parse_label(self, raw: Any, path: str, line: int) -> float | None:
        if raw is None or (isinstance(raw, str) and raw.strip() in (*NO_LABEL, DASH)):
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise UserError(
                f"{path}:{line}: label {raw!r} is not a number; task.type regression needs a "
                "numeric task.label_column (e.g. labels.label for KLUE-STS)"
            ) from None
        if not math.isfinite(value):
            raise UserError(f"{path}:{line}: label {raw!r} is not a finite number")
        return value

    def split(
        self, examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """A random share (labels are numbers: nothing to stratify by), or whole groups of
        task.group_column."""
        return self.random_split(examples, cfg, seed)

    def check_spellings(self, examples: list[Example], path: str) -> None:
        """Labels are numbers already."""

    def label_names(self, examples: list[Example]) -> list[str]:
        values = {ex["label"] for ex in examples if ex["label"] is not None}
        if len(values) == 1:  # nothing to learn, and a correlation with it is undefined
            raise UserError(
                f"every training label is {values.pop():g}; regression needs scores that "
                "vary: check task.label_column and the training file"
            )
        return ["score"]  # the one output (an HF export: num_labels 1, i.e. regression)

    def check_labels(self, examples: list[Example], labels: list[str], path: str) -> None:
        """Any number is a fine label."""

    def missing_gold_hint(self, cfg: TaskConfig) -> str:
        return f" (no numeric column '{cfg.label_column}'); set task.label_column"

    def show_prediction(self, example: Example, row: dict[str, Any]) -> str:
        return f"{row['prediction']:.4f}  {row.get('input', '')}"

    def label_value(self, ex: Example, labels: list[str]) -> float:
        return float("nan") if ex["label"] is None else float(ex["label"])

    def fit_settings(self, cfg: TaskConfig, train: list[Example]) -> None:
        fit_target_scale(cfg, [ex["label"] for ex in train])

    def encode(self, examples, tok, cfg: TaskConfig, labels: list[str]):
        """Classification's features, their scores standardised (task.target_mean / target_std)."""
        features = super().encode(examples, tok, cfg, labels)
        mean, std = cfg.target_scale()
        if (mean, std) != (0.0, 1.0):
            for f in features:
                f["label"] = (f["label"] - mean) / std  # nan (no gold) stays nan
        return features

    def collate(self, features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
        batch = base_collate(features, pad_id)
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.float32)
        return batch

    def head(self, cfg: HeadConfig, d_model: int, n_labels: int) -> nn.Module:
        return sequence_head(cfg, d_model, 1)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]):
        target = batch["labels"]
        keep = ~torch.isnan(target)
        n = keep.sum()
        pred = logits.float()[:, 0]
        if int(n):
            loss = nn.functional.mse_loss(pred[keep], target[keep])
        else:
            loss = pred.sum() * 0
        return loss, {"loss_sum": loss.detach().float() * n, "n": n.float()}

    def train_metrics(self, c: dict[str, float]) -> dict[str, float]:
        return {"loss": c.get("loss_sum", 0.0) / max(c.get("n", 0.0), 1.0)}

    def decode(self, outputs, features, examples, cfg, labels) -> list[dict[str, Any]]:
        preds: list[dict[str, Any]] = [{} for _ in examples]
        mean, std = cfg.target_scale()
        for i, z in pooled_logits(outputs, features).items():
            preds[i] = {"value": float(z[0]) * std + mean}
        return preds

    def metrics(self, predictions, examples, cfg, labels) -> dict[str, Any]:
        keep = [i for i, ex in enumerate(examples) if ex["label"] is not None]
        if not keep:
            return {}
        gold = np.array([examples[i]["label"] for i in keep], dtype=np.float64)
        pred = np.array([predictions[i]["value"] for i in keep], dtype=np.float64)
        if not np.isfinite(pred).all():  # a diverged run: no correlation, not 0 (or 0.22)
            bad = int((~np.isfinite(pred)).sum())
            return {
                "pearson": float("nan"),
                "spearman": float("nan"),
                "mse": float("nan"),
                "extra": {
                    "examples": len(keep),
                    "undefined": f"pearson, spearman and mse: {bad:,} predictions are not finite",
                },
            }
        if np.ptp(gold) == 0:  # correlations with a constant are undefined, not 0
            return {
                "mse": float(((gold - pred) ** 2).mean()),
                "extra": {
                    "examples": len(keep),
                    "undefined": f"pearson and spearman: every gold score is {gold[0]:g}",
                },
            }
        stats = {
            "pearson": lambda idx: scores.pearson(gold[idx], pred[idx]),
            # each resample ranked again: ties among repeated examples are ties in it
            "spearman": lambda idx: scores.pearson(
                scores.ranks(gold[idx]), scores.ranks(pred[idx])
            ),
            "mse": lambda idx: ((gold[idx] - pred[idx]) ** 2).mean(-1),
        }
        return {
            "pearson": float(scores.pearson(gold, pred)),
            "spearman": scores.spearman(gold, pred),
            "mse": float(((gold - pred) ** 2).mean()),
            "extra": {
                "examples": len(keep),
                "ci95": {k: list(scores.bootstrap_ci(len(keep), fn)) for k, fn in stats.items()},
                "bootstrap_samples": scores.BOOTSTRAP_SAMPLES,
            },
        }

    def baseline(self, rows: list[dict[str, Any]]) -> str | None:
        return None  # a constant has no correlation to report

    def one_answer(self, rows: list[dict[str, Any]]) -> str | None:
        """About the same number for every labelled row: a spread under 1 % of the gold's."""
        labelled = [r for r in rows if r.get("gold") is not None]
        if len(labelled) < MIN_ROWS_TO_JUDGE:
            return None
        pred = np.array([r["prediction"] for r in labelled], dtype=np.float64)
        gold = np.array([r["gold"] for r in labelled], dtype=np.float64)
        if not np.isfinite(pred).all() or not np.isfinite(gold).all():
            return None  # not a constant answer; the metrics show the non-finite values
        if not gold.std() > 0 or pred.std() >= (1 - ONE_ANSWER_SHARE) * gold.std():
            return None
        return (
            f"predicts about {pred.mean():.3g} for all {len(labelled):,} examples (spread "
            f"{pred.std():.2g}; the gold values' {gold.std():.2g})"
        )

    def prediction_rows(self, predictions, examples, labels) -> list[dict[str, Any]]:
        rows = []
        for ex, p in zip(examples, predictions, strict=True):
            row = input_row(ex)
            row.update(gold=ex["label"], prediction=round(p["value"], 6), correct=None)
            rows.append(row)
        return rows


def fit_target_scale(cfg: TaskConfig, scores: list[float]) -> None:
    """Fill task.target_mean / target_std the user left unset from the training scores:
    an output layer that starts near 0 and moves by about lr per step never reached scores of
    1,000 (Pearson 0.45 where the same data scaled to 0-4 gave 0.998)."""
    values = np.asarray([v for v in scores if v is not None and not math.isnan(v)], np.float64)
    if len(values) < 2:
        return
    if cfg.target_mean is None:
        cfg.target_mean = float(values.mean())
    if cfg.target_std is None:
        std = float(values.std())
        cfg.target_std = std if std > 1e-12 else 1.0
