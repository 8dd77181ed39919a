"""The metrics the field reports, in numpy (no scipy/sklearn needed), and bootstrap intervals.

Classification metrics come from confusion matrices (rows gold, columns predicted) and work on
a stack of them (..., K, K), so a bootstrap computes a thousand at once. The definitions are
sklearn's: Matthews correlation in its multi-class form (Gorodkin 2004, 0 when undefined, as
GLUE's CoLA reports it), F1 0 for a class never predicted, macro F1 over the classes in gold
or predictions, weighted F1 by gold support,
ROC-AUC as the Mann-Whitney statistic with tied scores sharing their rank.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
_CHUNK = 100  # resamples built at once (memory: chunk x examples indices)


def confusion_matrix(gold: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """k x k counts of (gold, predicted) class indices."""
    return np.bincount(gold * k + pred, minlength=k * k).reshape(k, k)


def class_scores(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-class F1 (..., K), gold support (..., K))."""
    cm = cm.astype(np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    gold = cm.sum(-1)
    pred = cm.sum(-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(gold + pred > 0, 2 * tp / (gold + pred), 0.0)
    return f1, gold


def accuracy(cm: np.ndarray) -> np.ndarray:
    cm = cm.astype(np.float64)
    return np.trace(cm, axis1=-2, axis2=-1) / np.maximum(cm.sum((-2, -1)), 1)


def macro_f1(cm: np.ndarray) -> np.ndarray:
    """Mean F1 over the classes that occur in gold or predictions, as sklearn's
    f1_score(average="macro"): a class absent from both (a label of the training data that
    this validation set, or a bootstrap resample of it, lacks) is left out, not averaged in
    as 0."""
    f1 = class_scores(cm)[0]
    present = (cm.sum(-1) + cm.sum(-2)) > 0
    return f1.sum(-1) / np.maximum(present.sum(-1), 1)


def weighted_f1(cm: np.ndarray) -> np.ndarray:
    f1, support = class_scores(cm)
    return (f1 * support).sum(-1) / np.maximum(support.sum(-1), 1)


def class_f1(cm: np.ndarray, k: int) -> np.ndarray:
    """F1 of class `k` alone: binary F1 of the positive class (MRPC, QQP)."""
    return class_scores(cm)[0][..., k]


def mcc(cm: np.ndarray) -> np.ndarray:
    """Matthews correlation coefficient, multi-class form; 0 where it is undefined."""
    cm = cm.astype(np.float64)
    s = cm.sum((-2, -1))
    c = np.trace(cm, axis1=-2, axis2=-1)
    t, p = cm.sum(-1), cm.sum(-2)
    num = c * s - (t * p).sum(-1)
    den = np.sqrt((s * s - (p * p).sum(-1)) * (s * s - (t * t).sum(-1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, 0.0)


def ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, ties given their average rank (each row of a (B, n)
    array of resamples ranked on its own, as Spearman's bootstrap needs)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="mergesort")
    xs = np.take_along_axis(x, order, -1)
    edge = np.ones((*x.shape[:-1], 1), dtype=bool)
    starts = np.concatenate([edge, xs[..., 1:] != xs[..., :-1]], -1)  # a new value begins
    ends = np.concatenate([starts[..., 1:], edge], -1)  # the last of its value
    pos = np.broadcast_to(np.arange(n), x.shape)
    first = np.maximum.accumulate(np.where(starts, pos, 0), -1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, pos, n), -1), -1), -1)
    out = np.empty_like(x)
    np.put_along_axis(out, order, (first + last) / 2.0 + 1.0, -1)
    return out


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; nan when only one class is present."""
    pos = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = ranks(score)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis; 0 when either side is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (xc * yc).sum(-1) / den, 0.0)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the (average-tie) ranks."""
    return float(pearson(ranks(x), ranks(y)))


def bootstrap_ci(
    n: int,
    statistic: Callable[[np.ndarray], np.ndarray],
    samples: int = BOOTSTRAP_SAMPLES,
    level: float = 0.95,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile interval of `statistic` over resamples of n examples with replacement.
    `statistic` takes a (B, n) array of example indices and returns B values; the seed is
    fixed so a report says the same thing each time it is built."""
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, samples, _CHUNK):
        b = min(_CHUNK, samples - start)
        values.append(np.asarray(statistic(rng.integers(0, n, size=(b, n)))))
    v = np.concatenate(values)
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(v, [tail, 100 - tail])
    return float(lo), float(hi)


def confusion_stack(gold: np.ndarray, pred: np.ndarray, k: int, idx: np.ndarray) -> np.ndarray:
    """Confusion matrices (B, k, k) of the resamples `idx` (B, n)."""
    codes = (gold * k + pred)[idx]
    offsets = np.arange(idx.shape[0])[:, None] * (k * k)
    flat = np.bincount((codes + offsets).ravel(), minlength=idx.shape[0] * k * k)
    return flat.reshape(idx.shape[0], k, k)
