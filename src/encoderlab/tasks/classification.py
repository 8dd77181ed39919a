"""Single-sentence and sentence-pair classification (one module: a pair is a second column).

Data: .csv / .tsv (a header row, or `task.columns` / column positions without one), .jsonl,
.json (an array of objects, e.g. KLUE-NLI; or SQuAD-like {"data": [...]}), a Hugging Face
save_to_disk folder or hf:<name>, or a folder of label folders (see `tasks.records`);
`task.where` filters rows. Columns are named by task.text_column, task.text_pair_column,
task.label_column, task.id_column. Labels are kept as strings ("0"/"1", "entailment", ...)
and the sorted label set is saved with the run.

Long documents (`task.truncation`): head keeps the start (BERT), head_tail the start and the
end (Sun et al. 2019), windows reads the whole text as overlapping windows — each window is a
training example, and predictions average the windows' logits per document. How many
documents were cut is reported, never silent.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import HeadConfig, TaskConfig
from encoderlab.errors import UserError
from encoderlab.heads import sequence_head
from encoderlab.tasks import records, scores
from encoderlab.tasks.base import (
    MIN_ROWS_TO_JUDGE,
    ONE_ANSWER_SHARE,
    Example,
    Examples,
    Feature,
    Features,
    TaskBase,
    base_collate,
)
from encoderlab.tasks.records import get, require_column
from encoderlab.tasks.registry import register
from encoderlab.tokenizer import pair_separator, special_ids

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

NO_LABEL = {""}
# SNLI and MNLI write "-" where annotators did not agree: no gold label. Read so when the
# training file's "-" rows are few (SNLI: 1-2 %) and no "+" is a label beside them; otherwise
# "-" is a class (+ / - / 0 sentiment), whose rows were dropped before 2026-12-03
DASH, DASH_SHARE = "-", 0.05
BINARY_METRICS = ("f1", "roc_auc")  # of the positive class: two labels only


def read_records(path: str | Path, cfg: TaskConfig) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for every row of a task's data (see encoderlab.tasks.records)."""
    return records.read_records(path, cfg)


@register
class ClassificationTask(TaskBase):
    """[CLS] text [SEP] (text_pair [SEP]) -> one label."""

    type = "classification"
    pair = False
    primary_metric = "acc"
    hf_head = "sequence"  # hf export: the transformers head its head maps to
    reported_metrics = ("acc", "macro_f1", "weighted_f1", "mcc")  # scalar metrics it gives
    # what task.metric may name: the above, and for two labels f1 (positive class) and roc_auc
    metric_names = (*reported_metrics, *BINARY_METRICS)
    report_details = "confusion"

    # -- reading -------------------------------------------------------------------------------

    def read(self, path: str, cfg: TaskConfig, labelled: bool | None = None) -> Examples:
        """labelled=True: a train/valid file (labels required); False: a file to predict,
        whose every row is kept and whose labels, if any, are not read (a row without text
        left out of a labelled file's submission was a missing id); None: as the file is."""
        notes: list[str] = []
        pair = self.is_pair(cfg)
        rows = records.read_records(path, cfg, notes)
        if not rows:
            raise UserError(f"{path}: no rows" + (" left after task.where" if cfg.where else ""))
        texts = records.text_columns(cfg)
        for col in texts:
            require_column(path, rows, col, "text_column")
        if pair:
            if cfg.text_pair_column is None:
                raise UserError("task.type is pair but task.text_pair_column is not set")
            require_column(path, rows, cfg.text_pair_column, "text_pair_column")
        has_labels = labelled is not False and self.has_label_column(path, rows, cfg)
        if labelled and not has_labels and Path(path).is_dir():
            where = "every file is at the top of the folder or in one of unlabelled text"
            raise UserError(
                f"{path}: no labels ({where}: {', '.join(sorted(records.UNLABELLED_FOLDERS))}); "
                "put each file under a folder named after its label (e.g. spam/0001.txt)"
            )
        if labelled and not has_labels:
            self.require_label_column(path, rows, cfg)
        # the split's groups; a file to evaluate on needs no such column (split_by_group asks)
        grouped = has_labels and records.has_column(rows[0][1], cfg.group_column)
        has_ids = records.has_column(rows[0][1], cfg.id_column)
        # a submission needs the file's own ids
        examples: Examples = Examples(ids_from_file=has_ids, notes=notes)
        empty, unlabelled = [], []
        for n, row in rows:
            for col in texts:
                records.require_cell(path, n, row, col, "text_column")
            if pair:
                records.require_cell(path, n, row, cfg.text_pair_column, "text_pair_column")
            text = " ".join(
                part for col in texts if (part := _text(get(row, col), path, n, "text_column"))
            )
            second = (
                _text(get(row, cfg.text_pair_column), path, n, "text_pair_column") if pair else None
            )
            if not text or (pair and not second):
                empty.append(n)
                if has_labels:  # nothing to learn from, nothing to score
                    continue
                # a file to predict keeps every row: a submission needs every id
            label = None
            if has_labels:
                label = self.row_label(row, cfg, path, n)
                if label is None:
                    unlabelled.append(n)
                    continue
            ex: Example = {
                "id": _row_id(get(row, cfg.id_column), path, n, cfg)
                if has_ids
                else str(len(examples)),
                "line": n,
                "text": text,
                "label": label,
            }
            if pair:
                ex["text_pair"] = second
            if grouped:
                records.require_cell(path, n, row, cfg.group_column, "group_column")
                ex["group"] = str(_scalar(get(row, cfg.group_column), path, n, "group_column"))
            examples.append(ex)
            if cfg.max_examples and len(examples) >= cfg.max_examples:
                break
        if empty and has_labels:
            examples.warnings.append(
                f"{path}: skipped {len(empty)} rows with empty text (first at line {empty[0]})"
            )
        elif empty:
            examples.warnings.append(
                f"{path}: {len(empty)} rows have empty text (first at line {empty[0]}); their "
                "predictions come from no text at all"
            )
        if unlabelled:
            examples.warnings.append(
                f"{path}: skipped {len(unlabelled)} rows without a gold label (first at line "
                f"{unlabelled[0]})"
            )
        if not examples:
            raise UserError(f"{path}: no usable rows (all {len(rows)} had empty text or no label)")
        if has_ids:
            _warn_repeated_ids(examples, path)
        self.check_spellings(examples, path)
        listed = sorted({x for ex in examples if isinstance(x := ex["label"], str) and "," in x})
        if len(listed) >= 2:
            examples.warnings.append(
                f"{path}: {len(listed)} labels hold a comma ('{listed[0]}', '{listed[1]}'): "
                "if a row has several labels, task.type multilabel reads them as a set"
            )
        return examples

    def check_spellings(self, examples: list[Example], path: str) -> None:
        """Labels that are one value written two ways ('1' and '1.0', 1 and true in JSON)
        would become two classes: refused, naming a line of each."""
        first: dict[Any, tuple[str, int]] = {}
        for ex in examples:
            label = ex["label"]
            if label is None:
                continue
            value = _label_value(label)
            seen = first.setdefault(value, (label, ex["line"]))
            if seen[0] != label:
                raise UserError(
                    f"{path}: labels '{seen[0]}' (line {seen[1]}) and '{label}' (line "
                    f"{ex['line']}) are one value written two ways and would train as two "
                    "classes; write every label one way"
                )

    def has_label_column(self, path: str, rows: list, cfg: TaskConfig) -> bool:
        """Whether a file's (first) row has the gold label's column(s)."""
        return records.has_column(rows[0][1], cfg.label_column)

    def require_label_column(self, path: str, rows: list, cfg: TaskConfig) -> None:
        require_column(path, rows, cfg.label_column, "label_column")

    def row_label(self, row: dict[str, Any], cfg: TaskConfig, path: str, line: int) -> Any:
        """A row's gold label (None: the row has none), from its label column(s)."""
        return self.parse_label(get(row, cfg.label_column), path, line)

    def is_pair(self, cfg: TaskConfig) -> bool:
        """Whether examples have a second text (the pair type; regression: a pair column)."""
        return self.pair

    def parse_label(self, raw: Any, path: str, line: int) -> Any:
        """The gold label of a cell, None for a row without one (skipped when labelled)."""
        if isinstance(raw, list) and len(raw) > 1 and all(isinstance(x, (str, int)) for x in raw):
            raise UserError(
                f"{path}:{line}: this row has several labels ({', '.join(map(str, raw[:4]))}); "
                "classification takes one per row, task.type: multilabel any number"
            )
        _scalar(raw, path, line, "label_column")
        label = None if raw is None else str(whole(raw)).strip()
        if label is not None and label.lower() == "nan":  # pandas' missing value, as text
            return None
        return None if label in NO_LABEL else label

    def split(
        self, examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Stratified by label: each label keeps its share in both parts (by task.group_column's
        groups instead when it is set)."""
        if cfg.group_column is not None:
            return self.split_by_group(examples, cfg, seed)
        rng = np.random.default_rng([seed, 11])
        by_label: dict[Any, list[int]] = {}
        for i, ex in enumerate(examples):
            by_label.setdefault(ex["label"], []).append(i)
        valid_idx: list[int] = []
        for idx in by_label.values():
            idx = list(rng.permutation(idx))
            k = int(round(cfg.valid_ratio * len(idx)))
            valid_idx.extend(idx[: min(k, len(idx) - 1)] if len(idx) > 1 else [])
        largest = max(by_label.values(), key=len)
        if not valid_idx and cfg.valid_ratio > 0 and len(largest) > 1:
            valid_idx = [largest[-1]]  # a tiny valid_ratio still validates on something
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

    def settle_no_gold(self, train: list[Example], path: str) -> None:
        """Whether '-' is a class or SNLI's "no gold label", decided once, by the training
        file: its '-' rows are dropped (with a warning) when they are few and no '+' is a
        label beside them. Other files follow the run's labels (`check_labels`)."""
        dashes = [i for i, ex in enumerate(train) if ex.get("label") == DASH]
        labels = {ex.get("label") for ex in train}
        if not dashes or len(dashes) >= DASH_SHARE * len(train) or "+" in labels:
            return
        _drop_dashes(train, dashes, path)

    def check_labels(self, examples: list[Example], labels: list[str], path: str) -> None:
        """A gold label the run never saw is refused; one value written another way ('1' for
        the run's '1.0', a float cell for a text one) takes the run's spelling. '-' rows of a
        run for which '-' is no class are SNLI's rows without a gold label: dropped."""
        if DASH not in labels:
            dashes = [i for i, ex in enumerate(examples) if ex.get("label") == DASH]
            if dashes:
                _drop_dashes(examples, dashes, path)
        known = set(labels)
        by_value = {_label_value(name): name for name in labels}
        for ex in examples:
            if ex["label"] is not None and ex["label"] not in known:
                ex["label"] = by_value.get(_label_value(ex["label"]), ex["label"])
            if ex["label"] is not None and ex["label"] not in known:
                raise UserError(
                    f"{path}:{ex['line']}: label '{ex['label']}' never appears in the training "
                    f"data (labels: {', '.join(labels[:12])}{', ...' if len(labels) > 12 else ''}"
                    "); fix the label or add training examples"
                )

    def missing_gold_hint(self, cfg: TaskConfig) -> str:
        return f" (no column '{cfg.label_column}'); set task.label_column"

    def example_from_text(self, text: str, text_pair: str | None, i: int) -> Example:
        if not self.pair:
            if text_pair:
                raise UserError(
                    "this model classifies one text at a time; --text-pair (pairs) is for "
                    "sentence-pair and QA models"
                )
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
    ) -> Features:
        self.check_metric(cfg, labels)
        ids = special_ids(tok)
        pair = self.is_pair(cfg)
        between = pair_separator(tok) if pair else []
        budget = cfg.max_len - 2 - len(between)
        features = Features()
        cut = windowed = 0
        for i, ex, a_ids, b_ids in _token_ids(examples, tok, pair):
            pieces, lost = fit_pieces(a_ids, b_ids, budget, cfg)
            cut += lost
            windowed += len(pieces) > 1
            label = self.label_value(ex, labels)
            for a_part, b_part in pieces:
                input_ids = [ids["cls"], *a_part, *(between or [ids["sep"]])]
                types = [0] * len(input_ids)
                if pair:
                    input_ids += [*b_part, ids["sep"]]
                    types += [1] * (len(b_part) + 1)
                feature = {
                    "input_ids": np.asarray(input_ids, dtype=np.int64),
                    "token_type_ids": np.asarray(types, dtype=np.int64),
                    "example_index": i,
                    "label": label,
                }
                if lost:  # its row says so (predict, the API, serve), as tagging's words do
                    feature["truncated"] = {"truncated": True}
                features.append(feature)
        if cut:
            features.warnings.append(truncation_message(cut, len(examples), cfg))
        if windowed:
            features.warnings.append(
                f"{windowed:,} of {len(examples):,} examples were longer than task.max_len="
                f"{cfg.max_len} and were read as {len(features):,} windows in all "
                "(truncation: windows; logits averaged per example)"
            )
        return features

    def check_metric(self, cfg: TaskConfig, labels: list[str]) -> None:
        """task.metric that this label set cannot give (binary f1/roc_auc of three labels)."""
        if cfg.metric in BINARY_METRICS and len(labels) != 2:
            raise UserError(
                f"task.metric={cfg.metric} is for two labels, the data has {len(labels)}; "
                "use acc, macro_f1, weighted_f1 or mcc"
            )

    def label_value(self, ex: Example, labels: list[str]) -> Any:
        """The training target of a feature: the label's index, -100 for none."""
        if ex["label"] is None or ex["label"] not in labels:
            return -100
        return labels.index(ex["label"])

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
            logits.float(),
            labels,
            weight=batch.get("class_weights"),
            ignore_index=-100,
            reduction="sum",
        )
        loss = summed / n.clamp_min(1)
        correct = ((logits.argmax(-1) == labels) & keep).sum()
        return loss, {
            "loss_sum": loss.detach().float() * n,
            "n": n.float(),
            "correct": correct.float(),
        }

    def loss_weights(
        self, examples: list[Example], labels: list[str], cfg: TaskConfig
    ) -> torch.Tensor | None:
        """Each class's weight in the training loss (task.class_weights), or None: balanced
        is n / (classes * count), scikit-learn's, so the weights average 1 over the examples
        and the loss keeps its scale; a mapping weighs the labels it names (the rest 1)."""
        return class_weight_vector(cfg.class_weights, labels, [ex["label"] for ex in examples])

    def train_metrics(self, c: dict[str, float]) -> dict[str, float]:
        n = max(c.get("n", 0.0), 1.0)
        return {"loss": c.get("loss_sum", 0.0) / n, "acc": c.get("correct", 0.0) / n}

    # -- predictions and metrics ---------------------------------------------------------------

    def decode(self, outputs, features, examples, cfg, labels) -> list[dict[str, Any]]:
        preds: list[dict[str, Any]] = [{} for _ in examples]
        for i, z in pooled_logits(outputs, features).items():
            p = np.exp(z - z.max())
            p /= p.sum()
            k = int(p.argmax())
            preds[i] = {"label": labels[k], "prob": float(p[k]), "probs": p.tolist()}
        return preds

    def metrics(self, predictions, examples, cfg, labels) -> dict[str, Any]:
        keep = [i for i, ex in enumerate(examples) if ex["label"] is not None]
        if not keep:
            return {}
        index = {name: i for i, name in enumerate(labels)}
        k = len(labels)
        gold = np.array([index[examples[i]["label"]] for i in keep], dtype=np.int64)
        pred = np.array([index[predictions[i]["label"]] for i in keep], dtype=np.int64)
        confusion = scores.confusion_matrix(gold, pred, k)
        f1s, support = scores.class_scores(confusion)
        per_class = {}
        for name, i in index.items():
            per_class[name] = {
                "precision": float(confusion[i, i] / max(confusion[:, i].sum(), 1)),
                "recall": float(confusion[i, i] / max(confusion[i, :].sum(), 1)),
                "f1": float(f1s[i]),
                "support": int(support[i]),
            }
        stats = {
            "acc": scores.accuracy,
            "macro_f1": scores.macro_f1,
            "weighted_f1": scores.weighted_f1,
            "mcc": scores.mcc,
        }
        out: dict[str, Any] = {}
        positive = None
        if k == 2:
            positive = _positive(labels, cfg)
            stats["f1"] = lambda cm: scores.class_f1(cm, positive)
            out["roc_auc"] = scores.roc_auc(
                gold == positive, np.array([predictions[i]["probs"][positive] for i in keep])
            )
        out = {name: float(fn(confusion)) for name, fn in stats.items()} | out
        ci = {
            name: list(
                scores.bootstrap_ci(
                    len(keep), lambda idx, fn=fn: fn(scores.confusion_stack(gold, pred, k, idx))
                )
            )
            for name, fn in stats.items()
        }
        out["extra"] = {
            "examples": len(keep),
            "labels": labels,
            "confusion": confusion.tolist(),
            "per_class": per_class,
            "ci95": ci,
            "bootstrap_samples": scores.BOOTSTRAP_SAMPLES,
        }
        if positive is not None:
            out["extra"]["positive_label"] = labels[positive]
        return out

    def one_answer(self, rows: list[dict[str, Any]]) -> str | None:
        """One label for (almost) every labelled row (99 % or more) where the gold labels
        vary: what a collapsed classifier does, whose accuracy is then the label's share."""
        labelled = [r for r in rows if r.get("gold") is not None]
        if len(labelled) < MIN_ROWS_TO_JUDGE:
            return None
        label, n = Counter(r["prediction"] for r in labelled).most_common(1)[0]
        share = sum(r["gold"] == label for r in labelled) / len(labelled)
        if n < ONE_ANSWER_SHARE * len(labelled) or share >= ONE_ANSWER_SHARE:
            return None
        every = "all" if n == len(labelled) else f"{n:,} of the"
        return f"answers '{label}' for {every} {len(labelled):,} examples ({share:.0%} of them are '{label}')"

    def baseline(self, rows: list[dict[str, Any]]) -> str | None:
        golds = [r["gold"] for r in rows if r.get("gold") is not None]
        if len(golds) < MIN_ROWS_TO_JUDGE:
            return None
        label, n = Counter(golds).most_common(1)[0]
        return (
            f"always answering '{label}', the most common label, scores accuracy "
            f"{n / len(golds):.3f} on these {len(golds):,} examples"
        )

    def prediction_rows(self, predictions, examples, labels) -> list[dict[str, Any]]:
        rows = []
        for ex, p in zip(examples, predictions, strict=True):
            row = input_row(ex)
            row.update(
                gold=ex["label"],
                prediction=p["label"],
                probability=round(p["prob"], 6),
                correct=None if ex["label"] is None else ex["label"] == p["label"],
            )
            rows.append(row)
        return rows


class ColumnPairs:
    """For task types that read one text or a pair as the config says (task.text_pair_column),
    not as the type says: regression and multilabel. Mixed in before ClassificationTask."""

    def is_pair(self, cfg: TaskConfig) -> bool:
        return cfg.text_pair_column is not None

    def example_from_text(self, text: str, text_pair: str | None, i: int) -> Example:
        ex: Example = {"id": str(i), "line": 0, "text": text, "label": None}
        if text_pair:
            ex["text_pair"] = text_pair
        return ex


@register
class PairTask(ClassificationTask):
    """[CLS] text [SEP] text_pair [SEP] -> one label (NLI, paraphrase)."""

    type = "pair"
    pair = True


_NEGATIONS = ("not_", "not-", "not ", "non_", "non-", "non", "no_", "no-", "no ")


def _positive(labels: list[str], cfg: TaskConfig) -> int:
    """The positive class of a binary task: task.positive_label, else the one of two labels
    that the other negates (GLUE's class names from Hugging Face datasets: "duplicate" of
    "not_duplicate", "equivalent" of "not_equivalent", sorted first), else the second label
    ("1", "true", "positive", "spam" sort second)."""
    if cfg.positive_label is None:
        for i, name in enumerate(labels[:2]):
            other = labels[1 - i].lower()
            if any(other == f"{neg}{name.lower()}" for neg in _NEGATIONS):
                return i
        return 1
    if cfg.positive_label not in labels:
        raise UserError(
            f"task.positive_label={cfg.positive_label!r} is not a label (labels: "
            f"{', '.join(labels)})"
        )
    return labels.index(cfg.positive_label)


def fit_pieces(
    a: list[int], b: list[int], budget: int, cfg: TaskConfig
) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(the (text, pair) token pieces that become features, 1 if text was lost else 0).

    head: the ends cut as Hugging Face tokenizers' `longest_first` cuts them, so an exported
    model reads the same ids (`longest_first`). head_tail and windows work on the first text;
    a pair's second text keeps at most half the budget when both are long."""
    if len(a) + len(b) <= budget:
        return [(a, b)], 0
    if cfg.truncation == "head":
        n_a, n_b = longest_first(len(a), len(b), budget)
        return [(list(a[:n_a]), list(b[:n_b]))], 1
    kept_b = b[: max(budget - len(a), budget // 2)]
    lost = int(len(kept_b) < len(b))
    b = kept_b
    room = budget - len(b)
    if cfg.truncation == "head_tail":
        head = min(cfg.head_tokens or room // 4, room)
        return [(a[:head] + a[len(a) - (room - head) :] if room > head else a[:head], b)], 1
    stride = min(cfg.window_stride or max(room // 2, 1), room)
    starts = list(range(0, max(len(a) - room, 0) + stride, stride))
    starts = [s for s in starts if s == 0 or s + room - stride < len(a)]
    if cfg.max_windows is not None and len(starts) > cfg.max_windows:
        starts, lost = starts[: cfg.max_windows], 1
    return [(a[s : s + room], b) for s in starts], lost


def longest_first(n_a: int, n_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of each text Hugging Face tokenizers keep (TruncationStrategy::
    LongestFirst, what AutoTokenizer(a, b, truncation=True) does): the longer text is cut to
    what the shorter leaves, or, when both are long, the shorter keeps budget // 2 and the
    longer the rest (BERT's _truncate_seq_pair, popping a token at a time, gives a tie's extra
    token to the first text instead: an export then read other ids for 1 pair in 4)."""
    if n_a + n_b <= budget:
        return n_a, n_b
    short, long_ = min(n_a, n_b), max(n_a, n_b)
    long_ = short if short > budget else max(short, budget - short)
    if short + long_ > budget:
        short, long_ = budget // 2, budget // 2 + budget % 2
    return (long_, short) if n_a > n_b else (short, long_)


def truncation_message(cut: int, total: int, cfg: TaskConfig) -> str:
    """How many examples lost text, and what to do about it."""
    how = {
        "head": "their end was cut (truncation: head); task.truncation: head_tail keeps the "
        "end as well, windows reads all of it",
        "head_tail": "their middle was cut (truncation: head_tail); task.truncation: windows "
        "reads all of it",
        "windows": f"their end past task.max_windows={cfg.max_windows} windows was cut",
    }[cfg.truncation]
    return (
        f"{cut:,} of {total:,} examples were longer than task.max_len={cfg.max_len} tokens: " + how
    )


def input_row(ex: Example) -> dict[str, Any]:
    """A prediction row's id, the file line it was read from (ids number the rows read, so
    a skipped row shifts them; the line does not) and input (and second sentence): what
    every sentence task's rows start with."""
    row: dict[str, Any] = {"id": ex["id"]}
    if ex.get("line"):
        row["line"] = ex["line"]
    row["input"] = ex["text"]
    if "text_pair" in ex:
        row["input_pair"] = ex["text_pair"]
    return row


def pooled_logits(outputs: list[np.ndarray], features: list[Feature]) -> dict[int, np.ndarray]:
    """Per example index: the mean of its features' logits (one feature: its logits)."""
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for out, feat in zip(outputs, features, strict=True):
        i = feat["example_index"]
        z = np.asarray(out, dtype=np.float64)
        sums[i] = sums[i] + z if i in sums else z
        counts[i] = counts.get(i, 0) + 1
    return {i: z / counts[i] for i, z in sums.items()}


def _row_id(value: Any, path: str, line: int, cfg: TaskConfig) -> str:
    """A row's id from the file: one that is missing or empty would reach a submission as
    'None' or nothing, so it is refused at its line."""
    text = "" if value is None else str(_scalar(value, path, line, "id_column")).strip()
    if not text:
        raise UserError(
            f"{path}:{line}: no id in this row (task.id_column '{cfg.id_column}'); fill it in, "
            "or set task.id_column=null to number the rows"
        )
    return text


def _warn_repeated_ids(examples: Examples, path: str) -> None:
    seen: dict[str, int] = {}
    repeated = [ex for ex in examples if seen.setdefault(ex["id"], ex["line"]) != ex["line"]]
    if repeated:
        ex = repeated[0]
        examples.warnings.append(
            f"{path}: {len(repeated)} rows repeat an earlier row's id (first at line "
            f"{ex['line']}: id {ex['id']!r}, as at line {seen[ex['id']]}); a submission keyed "
            "by id would hold them twice"
        )


def _text(value: Any, path: str, line: int, key: str) -> str:
    return "" if value is None else str(_scalar(value, path, line, key)).strip()


def _scalar(value: Any, path: str, line: int, key: str) -> Any:
    """A cell's value, refused when it is a JSON list or object: its Python repr would become
    the text or the label (`['a', 'b']`) without a word."""
    if isinstance(value, (list, dict)):
        kind = "list" if isinstance(value, list) else "object"
        raise UserError(
            f"{path}:{line}: the task.{key} value is a JSON {kind}, not a single value; give "
            "a string (or point task." + key + " at a nested key with dots, e.g. a.b)"
        )
    return value


def whole(value: Any) -> Any:
    """A float that is a whole number as an int: a label column pandas or Parquet holds as
    floats because one cell is missing (NaN) gives 1.0 for 1, and the label '1.0' would then
    match no '1' in a test file, a submission or an API call."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _drop_dashes(examples: list[Example], dashes: list[int], path: str) -> None:
    """Remove the '-' rows (SNLI and MNLI: annotators did not agree) and say so."""
    first = examples[dashes[0]].get("line")
    for i in reversed(dashes):
        del examples[i]
    warnings = getattr(examples, "warnings", None)
    if warnings is not None:
        warnings.append(
            f"{path}: skipped {len(dashes)} rows without a gold label ('{DASH}', as SNLI and "
            f"MNLI mark one)" + (f" (first at line {first})" if first else "")
        )


def _label_value(label: str) -> Any:
    """What a label means, for finding one value written two ways: a number, true/false as
    1/0 (a JSON boolean's str is 'True'), otherwise the text itself."""
    low = label.lower()
    if low in ("true", "false"):
        return float(low == "true")
    try:
        return float(label)
    except ValueError:
        return label


def _label_key(label: str) -> tuple[int, Any]:
    """Numeric labels sort as numbers ("2" < "10"), names alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def label_counts(examples: list[Example]) -> dict[str, int]:
    return dict(Counter(ex["label"] for ex in examples if ex["label"] is not None))


ENCODE_CHUNK = 4096  # texts per encode_batch: the tokenizer's result objects of a whole file
# (offsets, masks, words per token) took ~5 KB a row, 0.5 GB per 100k rows, kept to the end


def _token_ids(
    examples: list[Example], tok: Tokenizer, pair: bool
) -> Iterator[tuple[int, Example, list[int], list[int]]]:
    """(index, example, ids of its text, ids of its pair text or []) for every example,
    tokenized ENCODE_CHUNK at a time (in parallel within a chunk) and kept as ids only."""
    for start in range(0, len(examples), ENCODE_CHUNK):
        chunk = examples[start : start + ENCODE_CHUNK]
        first = tok.encode_batch([ex["text"] for ex in chunk], add_special_tokens=False)
        second = (
            tok.encode_batch([ex.get("text_pair") or "" for ex in chunk], add_special_tokens=False)
            if pair
            else None
        )
        for j, ex in enumerate(chunk):
            yield start + j, ex, list(first[j].ids), list(second[j].ids) if second else []
        del first, second


def class_weight_vector(
    setting: str | dict[str, float], labels: list[str], gold: list[Any]
) -> torch.Tensor | None:
    """task.class_weights as a tensor over `labels`, from the training examples' gold labels
    (None: unweighted)."""
    if setting == "none":
        return None
    if isinstance(setting, dict):
        return torch.tensor(per_label(setting, labels, 1.0, "task.class_weights", "the labels"))
    counts = Counter(g for g in gold if g is not None)
    n = sum(counts.values())
    return torch.tensor([n / (len(labels) * max(counts.get(name, 0), 1)) for name in labels])


def per_label(
    setting: dict[str, float], labels: list[str], default: float, key: str, whose: str
) -> list[float]:
    """A {label: value} setting over `labels` in their order (`default` for the rest); a
    label name that is not among them is a one-line error naming `key`."""
    unknown = [name for name in setting if name not in labels]
    if unknown:
        shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
        raise UserError(
            f"{key}: '{unknown[0]}' is not one of {whose} ({shown}); fix the label's name"
        )
    return [float(setting.get(name, default)) for name in labels]
