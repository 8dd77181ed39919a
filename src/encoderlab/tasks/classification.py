"""Single-sentence and sentence-pair classification (one module: a pair is a second column).

Files: .csv / .tsv (header row), .jsonl (an object per line), .json (an array of objects,
e.g. KLUE-NLI; or SQuAD-like {"data": [...]}) — columns named by task.text_column,
task.text_pair_column, task.label_column, task.id_column. Labels are kept as strings
("0"/"1", "entailment", ...) and the sorted label set is saved with the run.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import HeadConfig, TaskConfig
from encoderlab.data.tables import read_rows
from encoderlab.errors import UserError
from encoderlab.heads import sequence_head
from encoderlab.tasks.base import Example, Examples, Feature, TaskBase, base_collate
from encoderlab.tasks.registry import register
from encoderlab.tokenizer import special_ids

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

# SNLI/MNLI mark pairs without annotator consensus with "-": they have no gold label.
NO_LABEL = {"-", ""}


def _format(path: Path, cfg: TaskConfig) -> str:
    if cfg.format != "auto":
        return cfg.format
    name = path.name.lower()
    for suffix in ("csv", "tsv", "jsonl", "json"):
        if name.endswith("." + suffix):
            return suffix
    raise UserError(
        f"{path}: cannot tell the format from the name; set task.format (csv|tsv|jsonl|json)"
    )


def read_records(path: str | Path, cfg: TaskConfig) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for every row of a table-like file (see encoderlab.data.tables)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: file not found (task data)")
    return read_rows(p, _format(p, cfg), key="task.format")


def _column(p: str, rows: list[tuple[int, dict]], name: str, what: str) -> None:
    if rows and name not in rows[0][1]:
        cols = ", ".join(map(str, rows[0][1].keys()))
        raise UserError(f"{p}: no column '{name}' (columns: {cols}); set task.{what}")


@register
class ClassificationTask(TaskBase):
    """[CLS] text [SEP] (text_pair [SEP]) -> one label."""

    type = "classification"
    pair = False
    primary_metric = "acc"
    hf_head = "sequence"  # hf export: the transformers head its head maps to
    reported_metrics = ("acc", "macro_f1")  # scalar metrics its evaluation gives
    report_details = "confusion"

    # -- reading -------------------------------------------------------------------------------

    def read(self, path: str, cfg: TaskConfig, labelled: bool | None = None) -> Examples:
        rows = read_records(path, cfg)
        if not rows:
            raise UserError(f"{path}: no rows")
        _column(path, rows, cfg.text_column, "text_column")
        if self.pair:
            if not cfg.text_pair_column:
                raise UserError("task.type is pair but task.text_pair_column is not set")
            _column(path, rows, cfg.text_pair_column, "text_pair_column")
        has_labels = cfg.label_column in rows[0][1]
        if labelled and not has_labels:
            _column(path, rows, cfg.label_column, "label_column")
        has_ids = bool(cfg.id_column) and cfg.id_column in rows[0][1]
        # a submission needs the file's own ids
        examples: Examples = Examples(ids_from_file=has_ids)
        empty, unlabelled = [], []
        for n, row in rows:
            text = _text(row.get(cfg.text_column))
            pair = _text(row.get(cfg.text_pair_column)) if self.pair else None
            if not text or (self.pair and not pair):
                empty.append(n)
                continue
            label = None
            if has_labels:
                raw = row.get(cfg.label_column)
                label = None if raw is None else str(raw).strip()
                if label in NO_LABEL:
                    unlabelled.append(n)
                    continue
            ex: Example = {
                "id": str(row[cfg.id_column]) if has_ids else str(len(examples)),
                "line": n,
                "text": text,
                "label": label,
            }
            if self.pair:
                ex["text_pair"] = pair
            examples.append(ex)
            if cfg.max_examples and len(examples) >= cfg.max_examples:
                break
        if empty:
            examples.warnings.append(
                f"{path}: skipped {len(empty)} rows with empty text (first at line {empty[0]})"
            )
        if unlabelled:
            examples.warnings.append(
                f"{path}: skipped {len(unlabelled)} rows without a gold label (first at line {unlabelled[0]})"
            )
        if not examples:
            raise UserError(f"{path}: no usable rows (all {len(rows)} had empty text or no label)")
        return examples

    def split(
        self, examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Stratified by label: each label keeps its share in both parts."""
        rng = np.random.default_rng([seed, 11])
        by_label: dict[Any, list[int]] = {}
        for i, ex in enumerate(examples):
            by_label.setdefault(ex["label"], []).append(i)
        valid_idx: list[int] = []
        for idx in by_label.values():
            idx = list(rng.permutation(idx))
            k = int(round(cfg.valid_ratio * len(idx)))
            valid_idx.extend(idx[: min(k, len(idx) - 1)] if len(idx) > 1 else [])
        chosen = set(valid_idx)
        train = [ex for i, ex in enumerate(examples) if i not in chosen]
        valid = [ex for i, ex in enumerate(examples) if i in chosen]
        return train, valid

    def label_names(self, examples: list[Example]) -> list[str]:
        names = sorted({ex["label"] for ex in examples if ex["label"] is not None}, key=_label_key)
        if len(names) == 1:  # a model that always answers it scores a perfect, meaningless 1.0
            raise UserError(
                f"the training data has one label only ({names[0]!r}); classification needs at "
                "least two: check task.label_column and the training file"
            )
        return names

    def check_labels(self, examples: list[Example], labels: list[str], path: str) -> None:
        known = set(labels)
        for ex in examples:
            if ex["label"] is not None and ex["label"] not in known:
                raise UserError(
                    f"{path}:{ex['line']}: label '{ex['label']}' never appears in the training "
                    f"data (labels: {', '.join(labels)}); fix the label or add training examples"
                )

    def missing_gold_hint(self, cfg: TaskConfig) -> str:
        return f" (no column '{cfg.label_column}'); set task.label_column"

    def example_from_text(self, text: str, text_pair: str | None, i: int) -> Example:
        if not self.pair:
            return {"id": str(i), "line": 0, "text": text, "label": None}
        if not text_pair:
            raise UserError("a sentence-pair model needs --text-pair as well as --text")
        return {"id": str(i), "line": 0, "text": text, "text_pair": text_pair, "label": None}

    def submission(self, rows: list[dict[str, Any]], cfg: TaskConfig) -> list[list[Any]]:
        """Kaggle style: id,<label column> (e.g. id,target), one row per test example."""
        if not cfg.id_column:
            raise UserError("a submission file needs task.id_column (the test file's id column)")
        return [[cfg.id_column, cfg.label_column], *([r["id"], r["prediction"]] for r in rows)]

    def show_prediction(self, example: Example, row: dict[str, Any]) -> str:
        shown = row.get("probability")
        return (
            f"{row['prediction']}"
            + (f"  (p={shown:.3f})" if shown is not None else "")
            + f"  {row.get('input', '')}"
        )

    # -- encoding ------------------------------------------------------------------------------

    def encode(
        self, examples: list[Example], tok: Tokenizer, cfg: TaskConfig, labels: list[str]
    ) -> list[Feature]:
        ids = special_ids(tok)
        index = {name: i for i, name in enumerate(labels)}
        first = tok.encode_batch([ex["text"] for ex in examples], add_special_tokens=False)
        second = (
            tok.encode_batch([ex["text_pair"] for ex in examples], add_special_tokens=False)
            if self.pair
            else [None] * len(examples)
        )
        budget = cfg.max_len - (3 if self.pair else 2)
        features = []
        for i, (ex, a, b) in enumerate(zip(examples, first, second, strict=True)):
            a_ids, b_ids = list(a.ids), list(b.ids) if b is not None else []
            while len(a_ids) + len(b_ids) > budget:  # drop from the longer side, as BERT does
                if len(a_ids) >= len(b_ids):
                    a_ids.pop()
                else:
                    b_ids.pop()
            input_ids = [ids["cls"], *a_ids, ids["sep"]]
            types = [0] * len(input_ids)
            if self.pair:
                input_ids += [*b_ids, ids["sep"]]
                types += [1] * (len(b_ids) + 1)
            features.append(
                {
                    "input_ids": np.asarray(input_ids, dtype=np.int64),
                    "token_type_ids": np.asarray(types, dtype=np.int64),
                    "example_index": i,
                    "label": index.get(ex["label"], -100) if ex["label"] is not None else -100,
                }
            )
        return features

    def collate(self, features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
        batch = base_collate(features, pad_id)
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
        return batch

    def head(self, cfg: HeadConfig, d_model: int, n_labels: int) -> nn.Module:
        return sequence_head(cfg, d_model, n_labels)

    # -- training signal -----------------------------------------------------------------------

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]):
        labels = batch["labels"]
        keep = labels != -100
        n = keep.sum()
        # the mean over labelled rows as sum / max(n, 1): 0 (still differentiable) when no row
        # is labelled, and no `if n` that would wait for the device every micro-batch
        summed = nn.functional.cross_entropy(
            logits.float(), labels, ignore_index=-100, reduction="sum"
        )
        loss = summed / n.clamp_min(1)
        correct = ((logits.argmax(-1) == labels) & keep).sum()
        return loss, {
            "loss_sum": loss.detach().float() * n,
            "n": n.float(),
            "correct": correct.float(),
        }

    def train_metrics(self, c: dict[str, float]) -> dict[str, float]:
        n = max(c.get("n", 0.0), 1.0)
        return {"loss": c.get("loss_sum", 0.0) / n, "acc": c.get("correct", 0.0) / n}

    # -- predictions and metrics ---------------------------------------------------------------

    def decode(self, outputs, features, examples, cfg, labels) -> list[dict[str, Any]]:
        preds: list[dict[str, Any]] = [{} for _ in examples]
        for out, feat in zip(outputs, features, strict=True):
            z = out.astype(np.float64)
            p = np.exp(z - z.max())
            p /= p.sum()
            k = int(p.argmax())
            preds[feat["example_index"]] = {
                "label": labels[k],
                "prob": float(p[k]),
                "probs": p.tolist(),
            }
        return preds

    def metrics(self, predictions, examples, cfg, labels) -> dict[str, Any]:
        gold = [ex["label"] for ex in examples]
        pred = [p["label"] for p in predictions]
        pairs = [(g, q) for g, q in zip(gold, pred, strict=True) if g is not None]
        if not pairs:
            return {}
        index = {name: i for i, name in enumerate(labels)}
        confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
        for g, q in pairs:
            confusion[index[g], index[q]] += 1
        per_class = {}
        f1s = []
        for name, i in index.items():
            tp = confusion[i, i]
            prec = tp / max(confusion[:, i].sum(), 1)
            rec = tp / max(confusion[i, :].sum(), 1)
            f1 = 2 * prec * rec / max(prec + rec, 1e-12)
            f1s.append(f1)
            per_class[name] = {
                "precision": float(prec),
                "recall": float(rec),
                "f1": float(f1),
                "support": int(confusion[i, :].sum()),
            }
        return {
            "acc": float(np.trace(confusion) / len(pairs)),
            "macro_f1": float(np.mean(f1s)),
            "extra": {
                "examples": len(pairs),
                "labels": labels,
                "confusion": confusion.tolist(),
                "per_class": per_class,
            },
        }

    def prediction_rows(self, predictions, examples, labels) -> list[dict[str, Any]]:
        rows = []
        for ex, p in zip(examples, predictions, strict=True):
            row = {"id": ex["id"], "input": ex["text"]}
            if self.pair:
                row["input_pair"] = ex["text_pair"]
            row.update(
                gold=ex["label"],
                prediction=p["label"],
                probability=round(p["prob"], 6),
                correct=None if ex["label"] is None else ex["label"] == p["label"],
            )
            rows.append(row)
        return rows


@register
class PairTask(ClassificationTask):
    """[CLS] text [SEP] text_pair [SEP] -> one label (NLI, paraphrase)."""

    type = "pair"
    pair = True


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _label_key(label: str) -> tuple[int, Any]:
    """Numeric labels sort as numbers ("2" < "10"), names alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def label_counts(examples: list[Example]) -> dict[str, int]:
    return dict(Counter(ex["label"] for ex in examples if ex["label"] is not None))
