"""Multi-label classification: any number of labels per text (GoEmotions, toxic comments, topics).

Read like classification (`tasks.classification`: the same files, columns, filters, long
documents; `task.text_pair_column` makes it a pair task), but a row's gold is a set of labels:
- a list cell (JSON lines, Parquet, a datasets `Sequence(ClassLabel)` such as GoEmotions'
  `labels`; a list pandas wrote into a csv, `['a', 'b']`, numpy's `['a' 'b']` or a tuple
  `('a', 'b')`, is parsed as quoted names, never evaluated),
- a text cell split at `task.label_separator` ("sports,politics"; GoEmotions' tsv "3,27"; an
  empty cell: no label applies),
- or one 0/1 column per label: `task.label_column` as a list (Jigsaw's toxic, insult, ...),
  whose column names are the labels, every one of them even if training never sets it (-1
  or an empty cell: the row has no gold, as Jigsaw's unscored test rows).
The head has one output per label trained with binary cross-entropy (transformers'
`multi_label_classification`); a label is predicted where its sigmoid is at least
`task.threshold`. Metrics: micro-F1 (the primary, over every label decision), macro-F1 over
the labels in gold or predictions, acc (the whole set right: sklearn's subset accuracy) and
ROC-AUC averaged over the labels that have both outcomes.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch import nn

from encoderlab.config import HeadConfig, TaskConfig
from encoderlab.errors import UserError
from encoderlab.heads import sequence_head
from encoderlab.tasks import records, scores
from encoderlab.tasks.base import (
    MIN_ROWS_TO_JUDGE,
    ONE_ANSWER_SHARE,
    Example,
    Feature,
    base_collate,
)
from encoderlab.tasks.classification import (
    ClassificationTask,
    ColumnPairs,
    _label_key,
    _label_value,
    class_weight_vector,
    input_row,
    per_label,
    pooled_logits,
    whole,
)
from encoderlab.tasks.records import get, require_column
from encoderlab.tasks.registry import register

_ON = {"1", "1.0", "true", "yes"}
_OFF = {"0", "0.0", "false", "no"}
_NO_GOLD = {"", "-1", "-1.0", "nan"}


@register
class MultiLabelTask(ColumnPairs, ClassificationTask):
    """[CLS] text [SEP] (text_pair [SEP]) -> a set of labels."""

    type = "multilabel"
    primary_metric = "micro_f1"
    reported_metrics = ("micro_f1", "macro_f1", "acc", "roc_auc")
    metric_names = reported_metrics
    report_details = "per_class"
    hf_head = "sequence"
    hf_problem_type = "multi_label_classification"  # transformers' config.problem_type

    # -- reading -------------------------------------------------------------------------------

    def has_label_column(self, path: str, rows: list, cfg: TaskConfig) -> bool:
        """All the label columns (a file with some of them is an error naming the first
        missing one: its rows would read as having no gold)."""
        present = [records.has_column(rows[0][1], col) for col in _columns(cfg)]
        if any(present) and not all(present):
            self.require_label_column(path, rows, cfg)
        return all(present)

    def require_label_column(self, path: str, rows: list, cfg: TaskConfig) -> None:
        for col in _columns(cfg):
            require_column(path, rows, col, "label_column")

    def row_label(
        self, row: dict[str, Any], cfg: TaskConfig, path: str, line: int
    ) -> tuple[str, ...] | None:
        """The row's label set as a sorted tuple (() when none applies), None without gold."""
        if isinstance(cfg.label_column, list):
            flags = [_flag(get(row, col), col, path, line) for col in cfg.label_column]
            if any(f is None for f in flags):
                return None
            chosen = [str(col) for col, on in zip(cfg.label_column, flags, strict=True) if on]
            return LabelSet(sorted(chosen, key=_label_key), space=_space(cfg.label_column))
        return _label_set(get(row, cfg.label_column), cfg.label_separator, path, line)

    def read(self, path: str, cfg: TaskConfig, labelled: bool | None = None) -> Any:
        """As classification reads, plus a note when every row has exactly one label: a
        softmax over the labels (task.type classification) fits that better."""
        examples = super().read(path, cfg, labelled)
        sets = [ex["label"] for ex in examples if ex["label"] is not None]
        if len(sets) >= MIN_ROWS_TO_JUDGE and all(len(s) == 1 for s in sets):
            examples.notes.append(
                f"{path}: every row has exactly one label; if that is the task, task.type "
                "classification (one softmax over the labels) fits it"
            )
        return examples

    def check_spellings(self, examples: list[Example], path: str) -> None:
        """One label written two ways ('1' and '1.0') would be two labels: refused."""
        first: dict[Any, tuple[str, int]] = {}
        for ex in examples:
            for label in ex["label"] or ():
                seen = first.setdefault(_label_value(label), (label, ex["line"]))
                if seen[0] != label:
                    raise UserError(
                        f"{path}: labels '{seen[0]}' (line {seen[1]}) and '{label}' (line "
                        f"{ex['line']}) are one value written two ways and would train as two "
                        "labels; write every label one way"
                    )

    def split(
        self, examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """Iterative stratification (Sechidis et al. 2011, as skmultilearn's): each label has
        about valid_ratio of its examples in validation (a random 10 % share gives a label
        with 20 examples none with probability 0.12, 4 or more with 0.13), and validation
        valid_ratio of the rows (fewer where more would hold out a label's last training
        example); or whole groups with task.group_column."""
        if cfg.group_column is not None:
            return self.split_by_group(examples, cfg, seed)
        sets = [tuple(ex["label"] or ()) for ex in examples]
        k = min(max(int(round(cfg.valid_ratio * len(examples))), 1), len(examples) - 1)
        held = iterative_stratification(sets, k, seed)
        train = [ex for i, ex in enumerate(examples) if i not in held]
        valid = [ex for i, ex in enumerate(examples) if i in held]
        return train, valid

    def label_names(self, examples: list[Example]) -> list[str]:
        """The labels seen in training; with one 0/1 column per label, every column (one that
        training never sets is still an output, a submission column and an HF label)."""
        space = next((ex["label"].space for ex in examples if _has_space(ex)), None)
        if space:
            return list(space)
        names = {label for ex in examples for label in ex["label"] or ()}
        if not names:
            raise UserError(
                "no training row has a label (every label set is empty); check "
                "task.label_column and task.label_separator"
            )
        return sorted(names, key=_label_key)

    def check_labels(self, examples: list[Example], labels: list[str], path: str) -> None:
        """Every gold label must be one the run has; one value written another way ('1' for
        '1.0') takes the run's spelling."""
        known = set(labels)
        by_value = {_label_value(name): name for name in labels}
        for ex in examples:
            if ex["label"] is None:
                continue
            spelled = [by_value.get(_label_value(x), x) for x in ex["label"]]
            if spelled != list(ex["label"]):
                ex["label"] = tuple(sorted(set(spelled), key=_label_key))
            for label in ex["label"]:
                if label not in known:
                    raise UserError(
                        f"{path}:{ex['line']}: label '{label}' never appears in the training "
                        f"data (labels: {_shown(labels)}); fix the label or add training "
                        "examples with it"
                    )

    def missing_gold_hint(self, cfg: TaskConfig) -> str:
        return f" (no label column {cfg.label_column}); set task.label_column"

    def submission(self, rows: list[dict[str, Any]], cfg: TaskConfig) -> list[list[Any]]:
        """One probability column per label when the labels are columns (Jigsaw's
        id,toxic,...), else id,<label column> with the predicted labels joined by
        task.label_separator."""
        if not cfg.id_column:
            raise UserError("a submission file needs task.id_column (the test file's id column)")
        if isinstance(cfg.label_column, list):
            names = [str(c) for c in cfg.label_column]
            return [
                [cfg.id_column, *names],
                *([r["id"], *(r["probabilities"][n] for n in names)] for r in rows),
            ]
        sep = cfg.label_separator
        return [
            [cfg.id_column, cfg.label_column],
            *([r["id"], sep.join(r["prediction"])] for r in rows),
        ]

    def show_prediction(self, example: Example, row: dict[str, Any]) -> str:
        chosen = ", ".join(f"{n} ({row['probabilities'][n]:.3f})" for n in row["prediction"])
        return f"{chosen or '(no label)'}  {row.get('input', '')}"

    # -- encoding and training -----------------------------------------------------------------

    def check_metric(self, cfg: TaskConfig, labels: list[str]) -> None:
        """Every metric of this task works for any number of labels."""

    def label_value(self, ex: Example, labels: list[str]) -> np.ndarray:
        """The target of a feature: 1/0 per label; -1 everywhere for a row without gold."""
        if ex["label"] is None:
            return np.full(len(labels), -1.0, dtype=np.float32)
        target = np.zeros(len(labels), dtype=np.float32)
        index = {name: j for j, name in enumerate(labels)}
        for label in ex["label"]:
            if label in index:  # a label training never saw: scored, never trained on
                target[index[label]] = 1.0
        return target

    def collate(self, features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
        batch = base_collate(features, pad_id)
        batch["labels"] = torch.from_numpy(np.stack([f["label"] for f in features]))
        return batch

    def head(self, cfg: HeadConfig, d_model: int, n_labels: int) -> nn.Module:
        return sequence_head(cfg, d_model, n_labels)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]):
        """Binary cross-entropy averaged over the labels, then over the rows with gold (as
        transformers' BCEWithLogitsLoss); `correct` counts rows whose whole set is right."""
        target = batch["labels"]
        keep = target[:, 0] >= 0
        n = keep.sum()
        z = logits.float()
        per_row = nn.functional.binary_cross_entropy_with_logits(
            z, target.clamp_min(0), reduction="none", pos_weight=batch.get("class_weights")
        ).mean(-1)
        loss = (per_row * keep).sum() / n.clamp_min(1)
        exact = (((z >= 0) == (target > 0.5)).all(-1) & keep).sum()
        return loss, {"loss_sum": loss.detach() * n, "n": n.float(), "correct": exact.float()}

    def loss_weights(self, examples, labels, cfg):  # type: ignore[no-untyped-def]
        """Each label's positives' weight (BCE's pos_weight, task.class_weights): balanced is
        its negatives / positives among the training rows (1 for a label they never have); a
        mapping weighs the labels it names (the rest 1)."""
        if not isinstance(cfg.class_weights, str) or cfg.class_weights == "none":
            return class_weight_vector(cfg.class_weights, labels, [])
        sets = [set(ex["label"]) for ex in examples if ex["label"] is not None]
        pos = Counter(x for s in sets for x in s)
        return torch.tensor([(len(sets) - pos[x]) / pos[x] if pos[x] else 1.0 for x in labels])

    def encode(self, examples, tok, cfg, labels):  # type: ignore[no-untyped-def]
        label_thresholds(cfg.threshold, labels)  # a label task.threshold names, before any work
        return super().encode(examples, tok, cfg, labels)

    # -- predictions and metrics ---------------------------------------------------------------

    def decode(self, outputs, features, examples, cfg, labels) -> list[dict[str, Any]]:
        preds: list[dict[str, Any]] = [{} for _ in examples]
        cuts = label_thresholds(cfg.threshold, labels)
        for i, z in pooled_logits(outputs, features).items():
            p = 1.0 / (1.0 + np.exp(-z))
            chosen = [labels[j] for j in np.flatnonzero(p >= cuts)]
            preds[i] = {"labels": chosen, "probs": p.tolist()}
        return preds

    def metrics(self, predictions, examples, cfg, labels) -> dict[str, Any]:
        keep = [i for i, ex in enumerate(examples) if ex["label"] is not None]
        if not keep:
            return {}
        index = {name: j for j, name in enumerate(labels)}
        gold = np.zeros((len(keep), len(labels)), dtype=bool)
        pred = np.zeros_like(gold)
        for r, i in enumerate(keep):
            gold[r, [index[g] for g in examples[i]["label"] if g in index]] = True
            pred[r, [index[p] for p in predictions[i]["labels"]]] = True
        prob = np.array([predictions[i]["probs"] for i in keep], dtype=np.float64)
        # per example (n, K) counts; a resample's totals are its examples' multiplicities
        # (B, n) times these, so memory grows with n + K, not n x K per resample
        tp, fp, fn = (x.astype(np.float64) for x in (gold & pred, ~gold & pred, gold & ~pred))
        exact = (gold == pred).all(-1).astype(np.float64)

        def counts(idx: np.ndarray) -> np.ndarray:
            idx = np.atleast_2d(idx)
            c = np.zeros((idx.shape[0], len(keep)))
            np.add.at(c, (np.arange(idx.shape[0])[:, None], idx), 1.0)
            return c

        stats = {
            "micro_f1": lambda idx: _micro_f1(*(counts(idx) @ x for x in (tp, fp, fn))),
            "macro_f1": lambda idx: _macro_f1(*(counts(idx) @ x for x in (tp, fp, fn))),
            "acc": lambda idx: counts(idx) @ exact / idx.shape[-1],
        }
        everything = np.arange(len(keep))
        out: dict[str, Any] = {name: float(fn_(everything)[0]) for name, fn_ in stats.items()}
        aucs = [scores.roc_auc(gold[:, j], prob[:, j]) for j in range(len(labels))]
        defined = [a for a in aucs if not np.isnan(a)]
        out["roc_auc"] = float(np.mean(defined)) if defined else float("nan")
        per_class = {}
        for j, name in enumerate(labels):
            t = int(tp[:, j].sum())
            p_, g = int(pred[:, j].sum()), int(gold[:, j].sum())
            per_class[name] = {
                "precision": t / max(p_, 1),
                "recall": t / max(g, 1),
                "f1": 2 * t / max(p_ + g, 1),
                "support": g,
            }
        best_f1, best_threshold = _best_threshold(prob, gold)
        # each label's own best cut (its F1's), and the micro-F1 of them all applied together
        own = {
            name: _best_threshold(prob[:, [j]], gold[:, [j]])[1] for j, name in enumerate(labels)
        }
        own_pred = prob >= np.array([own[name] for name in labels])
        own_f1 = float(
            _micro_f1(*((x.sum(0)) for x in (gold & own_pred, ~gold & own_pred, gold & ~own_pred)))
        )
        out["extra"] = {  # no "labels": reports read that key with a confusion matrix
            "examples": len(keep),
            "threshold": cfg.threshold,
            # the one threshold that maximizes micro-F1 here: it flatters this set, so it is
            # for other data (`--set task.threshold=...`), not a score
            "best_threshold": best_threshold,
            "best_threshold_micro_f1": best_f1,
            "best_thresholds": own,  # --set task.threshold="{joy: 0.31, ...}" applies them
            "best_thresholds_micro_f1": own_f1,
            "per_class": per_class,
            "ci95": {
                name: list(scores.bootstrap_ci(len(keep), fn_)) for name, fn_ in stats.items()
            },
            "bootstrap_samples": scores.BOOTSTRAP_SAMPLES,
        }
        return out

    def one_answer(self, rows: list[dict[str, Any]]) -> str | None:
        """One label set (often none at all) for 99 % of the labelled rows or more, where the
        gold sets vary: what a collapsed multi-label model does."""
        labelled = [r for r in rows if r.get("gold") is not None]
        if len(labelled) < MIN_ROWS_TO_JUDGE:
            return None
        # as sets: gold is written sorted, a prediction in the labels' (columns') order
        answer, n = Counter(_as_set(r["prediction"]) for r in labelled).most_common(1)[0]
        share = sum(_as_set(r["gold"]) == answer for r in labelled) / len(labelled)
        if n < ONE_ANSWER_SHARE * len(labelled) or share >= ONE_ANSWER_SHARE:
            return None
        every = "all" if n == len(labelled) else f"{n:,} of the"
        return f"answers {_set_name(answer)} for {every} {len(labelled):,} examples ({share:.0%} of them are that)"

    def baseline(self, rows: list[dict[str, Any]]) -> str | None:
        golds = [_as_set(r["gold"]) for r in rows if r.get("gold") is not None]
        if len(golds) < MIN_ROWS_TO_JUDGE:
            return None
        answer = Counter(golds).most_common(1)[0][0]
        tp = sum(len(set(g) & set(answer)) for g in golds)
        fp = sum(len(set(answer) - set(g)) for g in golds)
        fn = sum(len(set(g) - set(answer)) for g in golds)
        return (
            f"always answering {_set_name(answer)}, the most common label set, scores micro-F1 "
            f"{_micro_f1(tp, fp, fn):.3f} on these {len(golds):,} examples"
        )

    def prediction_rows(self, predictions, examples, labels) -> list[dict[str, Any]]:
        rows = []
        order = {name: j for j, name in enumerate(labels)}  # gold as the prediction is ordered
        for ex, p in zip(examples, predictions, strict=True):
            row = input_row(ex)
            gold = None if ex["label"] is None else list(ex["label"])
            if gold is not None:
                gold.sort(key=lambda g: order.get(g, len(order)))
            row.update(
                gold=gold,
                prediction=p["labels"],
                probabilities={n: round(q, 6) for n, q in zip(labels, p["probs"], strict=True)},
                correct=None if gold is None else sorted(gold) == sorted(p["labels"]),
            )
            rows.append(row)
        return rows


def _as_set(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A label set as one canonical tuple, whatever order it was written in."""
    return tuple(sorted(names, key=_label_key))


def _columns(cfg: TaskConfig) -> list[str | int]:
    value = cfg.label_column
    return list(value) if isinstance(value, list) else [value]


def _flag(raw: Any, col: str | int, path: str, line: int) -> bool | None:
    """A 0/1 label column's cell: True/False, None for no gold (empty, -1)."""
    if raw is None:
        return None
    text = str(raw).strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    if text in _NO_GOLD:
        return None
    raise UserError(
        f"{path}:{line}: label column '{col}' holds {raw!r}; with task.label_column a list of "
        "columns, each cell says whether its label applies: 1 or 0 (true/false; -1 or empty "
        "for a row without gold)"
    )


class LabelSet(tuple):
    """A row's label set, which with one 0/1 column per label also knows every label (the
    columns), so a label training never sets still gets an output."""

    space: tuple[str, ...] | None = None

    def __new__(cls, items: Any = (), space: tuple[str, ...] | None = None) -> LabelSet:
        obj = super().__new__(cls, items)
        obj.space = space
        return obj


_SPACES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _space(columns: list[str | int]) -> tuple[str, ...]:
    """The label columns as names, one shared tuple per list of columns."""
    names = tuple(str(c) for c in columns)
    return _SPACES.setdefault(names, names)


def _has_space(ex: Example) -> bool:
    return isinstance(ex.get("label"), LabelSet) and bool(ex["label"].space)


def _label_set(raw: Any, separator: str, path: str, line: int) -> tuple[str, ...] | None:
    """The label set of one cell: a list, a list written as text, or text split at the
    separator; None (no gold) for a missing cell."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if hasattr(raw, "tolist") and not isinstance(raw, (str, bytes)):  # a numpy array
        raw = raw.tolist()
    if isinstance(raw, dict):
        raise UserError(
            f"{path}:{line}: the task.label_column value is a JSON object; give a list of "
            "labels, or labels separated by task.label_separator"
        )
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() == "nan":  # pandas' missing value, as text
            return None
        if _written_list(text):
            raw = _list_text(text, path, line)
        else:
            raw = text.split(separator)
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    out = set()
    for item in items:
        if isinstance(item, (list, tuple, dict)) or item is None or _nan(item):
            raise UserError(
                f"{path}:{line}: a label in task.label_column is {_short(item)}; each label is "
                "a name or a number"
            )
        name = _name(item, path, line)
        if separator in name:
            raise UserError(
                f"{path}:{line}: label {_short(name)} holds task.label_separator "
                f"'{separator}', which joins labels in submissions and csv cells; set "
                "task.label_separator to a character no label has (e.g. '|')"
            )
        if name:
            out.add(name)
    return tuple(sorted(out, key=_label_key))


def _written_list(text: str) -> bool:
    """A list as Python, pandas or numpy print it: [...], or (...) / {...} (a set) holding
    quoted names (or nothing: an empty tuple, `set()`)."""
    if text.startswith("[") or text.endswith("]") or text.replace(" ", "") in ("()", "set()"):
        return True
    return any(text.startswith(o) and text.endswith(c) for o, c in ("()", "{}")) and (
        "'" in text or '"' in text
    )


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'" + r'|"((?:[^"\\]|\\.)*)"')


def _list_text(text: str, path: str, line: int) -> list[str]:
    """The names in a list written as text: quoted strings (`['a', 'b']`, numpy's `['a'
    'b']`, a tuple `('a',)`, a set `{'a', 'b'}`) or bare numbers/words (`[3, 27]`, numpy's `[ 3 27]`). Parsed,
    never evaluated."""
    if text.replace(" ", "") == "set()":  # an empty set, as Python prints one
        return []
    opened, closed = text[:1], text[-1:]
    pair = {"[": "]", "(": ")", "{": "}"}.get(opened)
    if pair is None or closed != pair:
        raise UserError(
            f"{path}:{line}: label cell {_short(text)} looks like a list but is not one; "
            'write it as ["a", "b"], or as labels separated by task.label_separator'
        )
    inner = text[1:-1]
    if "'" in inner or '"' in inner:
        names = [re.sub(r"\\(.)", r"\1", a or b) for a, b in _QUOTED.findall(inner)]
        rest = _QUOTED.sub("", inner)
        if rest.strip(" \t,") or not names:
            raise UserError(
                f"{path}:{line}: label cell {_short(text)} mixes quoted and unquoted labels; "
                "quote every label, or none"
            )
        return names
    return [x for x in re.split(r"[\s,]+", inner) if x]


def _name(item: Any, path: str, line: int) -> str:
    try:
        return str(whole(item)).strip()
    except ValueError:  # an int too long to print (Python's 4,300-digit limit)
        raise UserError(
            f"{path}:{line}: a label in task.label_column is too long a number"
        ) from None


def _nan(item: Any) -> bool:
    return isinstance(item, float) and math.isnan(item)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def label_thresholds(threshold: float | dict[str, float], labels: list[str]) -> np.ndarray:
    """The cut of each label, in the labels' order: task.threshold, or from a {label: cut}
    mapping (0.5 for labels it leaves out); a label the run does not have is an error."""
    if not isinstance(threshold, dict):
        return np.full(len(labels), float(threshold))
    return np.array(per_label(threshold, labels, 0.5, "task.threshold", "this run's labels"))


def _best_threshold(prob: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """(micro-F1, threshold): the single probability cut that maximizes micro-F1 over every
    (example, label) decision, predicting where p >= the cut (ties decided together). A cut
    must be a valid task.threshold (0 < t < 1): p = 0 is no candidate, p = 1 becomes the
    float just below 1; the F1 returned is that of the cut returned, applied."""
    p, g = prob.ravel(), gold.ravel().astype(bool)
    keep = np.isfinite(p)
    p, g = p[keep], g[keep]
    candidates = np.unique(p[(p > 0)])
    if not len(candidates):
        return 0.0, 0.5
    if not g.any():  # no positive: every cut only adds false positives; predict (almost) none
        cut = float(np.nextafter(1.0, 0.0))
        return 0.0, cut
    order = np.argsort(-p, kind="stable")
    ps, gs = p[order], g[order].astype(np.float64)
    tp, fp = np.cumsum(gs), np.cumsum(1.0 - gs)
    last = np.r_[ps[1:] != ps[:-1], True] & (ps > 0)  # a cut takes every decision of a tie
    f1 = np.where(last, 2 * tp / np.maximum(tp + fp + gs.sum(), 1), -1.0)
    cut = float(min(ps[int(np.argmax(f1))], np.nextafter(1.0, 0.0)))
    pred = p >= cut
    applied = 2 * (pred & g).sum() / max(pred.sum() + g.sum(), 1)
    return float(applied), cut


def _micro_f1(tp: Any, fp: Any, fn: Any) -> Any:
    """Micro-F1 from per-label counts (..., K), or from totals; 0 where nothing is gold or
    predicted."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    if tp.ndim:
        tp, fp, fn = tp.sum(-1), fp.sum(-1), fn.sum(-1)
    den = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 2 * tp / den, 0.0)


def _macro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Mean per-label F1 over the labels in gold or predictions (as classification's)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    den = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(den > 0, 2 * tp / den, 0.0)
    return f1.sum(-1) / np.maximum((den > 0).sum(-1), 1)


def _set_name(labels: tuple[str, ...]) -> str:
    return "no label" if not labels else "'" + ", ".join(labels) + "'"


def _shown(labels: list[str]) -> str:
    return ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")


def iterative_stratification(label_sets: list[tuple[str, ...]], k: int, seed: int) -> set[int]:
    """The indices of `k` examples to hold out, chosen so that each label's share among them
    is about its share overall: the label with the fewest examples left is placed first, each
    of its examples where that label still lacks most (validation wants k / n of the label's
    count), ties broken by how many examples each side still wants, then at random (Sechidis
    et al. 2011). Examples without a label, then the ones whose labels are furthest from
    their wish, make the held-out side k, less any that would take a label's last training
    example (`_every_label_trained`)."""
    n = len(label_sets)
    rng = np.random.default_rng([seed, 13])
    share = k / n
    want_total = [float(k), float(n - k)]  # held out, kept
    by_label: dict[str, list[int]] = {}
    for i, labels in enumerate(label_sets):
        for x in set(labels):
            by_label.setdefault(x, []).append(i)
    want = {x: [len(ids) * share, len(ids) * (1 - share)] for x, ids in by_label.items()}
    left_count = {x: len(ids) for x, ids in by_label.items()}
    # the label with the fewest examples left: a heap of (count, random tie-break, label),
    # stale entries skipped, so many labels cost O(log L) a step, not a scan of them all
    heap = [(c, float(rng.random()), x) for x, c in left_count.items()]
    heapq.heapify(heap)
    placed = [False] * n
    held: set[int] = set()
    while heap:
        count, _, label = heapq.heappop(heap)
        if left_count.get(label) != count:
            continue  # stale: its count changed since this entry was pushed
        for i in rng.permutation([i for i in by_label[label] if not placed[i]]).tolist():
            side = _side(want[label], want_total, rng)
            if side == 0:
                held.add(i)
            placed[i] = True
            want_total[side] -= 1
            for x in set(label_sets[i]):
                want[x][side] -= 1
                left_count[x] -= 1
                if left_count[x] and x != label:
                    heapq.heappush(heap, (left_count[x], float(rng.random()), x))
        left_count.pop(label, None)
    held = _exactly(held, label_sets, k, want, rng)
    return _every_label_trained(held, label_sets, by_label, k, rng)


def _every_label_trained(
    held: set[int],
    label_sets: list[tuple[str, ...]],
    by_label: dict[str, list[int]],
    k: int,
    rng: np.random.Generator,
) -> set[int]:
    """`held` with one example of every label that lost all of them to it put back, and as
    many others held out in their place whose labels keep a training example: the top-up to
    k could hold out a rare label's only example, an output never trained on a positive and
    scored as a miss (5 of 200 random splits)."""
    trained = {x: sum(i not in held for i in ids) for x, ids in by_label.items()}
    for x, ids in sorted(by_label.items()):
        if trained[x] == 0:
            back = min(ids, key=lambda i: (len(label_sets[i]), i))  # the fewest other labels
            held.discard(back)
            for y in set(label_sets[back]):
                trained[y] += 1
    for i in rng.permutation(len(label_sets)).tolist():
        if len(held) >= k:
            break
        if i not in held and all(trained[x] >= 2 for x in set(label_sets[i])):
            held.add(i)
            for x in set(label_sets[i]):
                trained[x] -= 1
    return held


def _exactly(
    held: set[int],
    label_sets: list[tuple[str, ...]],
    k: int,
    want: dict[str, list[float]],
    rng: np.random.Generator,
) -> set[int]:
    """`held` made k examples: empty label sets first (they move no label's share), then the
    examples whose labels validation has most too many of (to drop) or too few of (to add)."""
    excess = {x: -w[0] for x, w in want.items()}  # held out minus wished for, per label

    def surplus(i: int) -> float:
        return sum(excess[x] for x in set(label_sets[i]))

    empty = [i for i, labels in enumerate(label_sets) if not labels]
    if len(held) < k:
        pool = [i for i in rng.permutation(empty).tolist() if i not in held]
        others = [i for i in range(len(label_sets)) if i not in held and label_sets[i]]
        pool += sorted(others, key=surplus)  # the labels validation lacks most first
        for i in pool[: k - len(held)]:
            held.add(i)
            for x in set(label_sets[i]):
                excess[x] += 1
    elif len(held) > k:
        extra = [i for i in held if not label_sets[i]]
        extra += sorted((i for i in held if label_sets[i]), key=surplus, reverse=True)
        for i in extra[: len(held) - k]:
            held.discard(i)
    return held


def _side(label_want: list[float], total_want: list[float], rng: np.random.Generator) -> int:
    """0 (held out) or 1 (kept): where this label is wanted more, then more examples overall."""
    if label_want[0] != label_want[1]:
        return 0 if label_want[0] > label_want[1] else 1
    if total_want[0] != total_want[1]:
        return 0 if total_want[0] > total_want[1] else 1
    return int(rng.integers(2))
