"""Numbers read off a run's records: final and best values, per-epoch rows, curve series.

Rates (accuracy, macro-F1, MLM accuracy, entity F1; also MCC and Pearson/Spearman, shown x100
as GLUE does) are stored as fractions and QA's EM/F1 as percentages; `percent` puts them all
on one 0-100 scale for tables, curves and conclusions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from encoderlab.reporting.load import RunData
from encoderlab.tasks.registry import task_class

RATES = {
    "acc", "macro_f1", "mlm_acc", "span_acc", "start_acc", "end_acc", "precision", "recall",
    "weighted_f1", "micro_f1", "mcc", "roc_auc", "f1_strict", "pearson", "spearman", "disc_acc", "disc_f1",
}  # fmt: skip
TRAIN_ACC = ("train/acc", "train/mlm_acc", "train/span_acc")
TRAIN_LOSS = ("train/loss", "train/mlm_loss")
VALID_LOSS = ("valid/loss", "valid/mlm_loss")
SOURCE_METRICS = ("mlm_loss", "mlm_acc", "disc_acc", "disc_f1")  # valid/<source>/<metric>
TEST_ACC = ("test/acc",)


def _in_percent(task: str, metric: str) -> bool:
    """Whether the task stores `metric` on a 0-100 scale already (QA's em and f1)."""
    info = None if task == "pretrain" else task_class(task)
    return metric in getattr(info, "percent_metrics", ())


def is_rate(task: str, metric: str) -> bool:
    metric = metric.rsplit("/", 1)[-1]  # valid/ko/mlm_acc (per source) is a rate too
    return metric in RATES or (metric == "f1" and not _in_percent(task, metric))


def in_percent(task: str, metric: str) -> bool:
    """Whether `percent` puts the metric on a 0-100 scale (a rate, or QA's em/f1)."""
    metric = metric.rsplit("/", 1)[-1]
    return _in_percent(task, metric) or is_rate(task, metric)


def percent(task: str, metric: str, value: float | None) -> float | None:
    """value on a 0-100 scale (QA's em/f1 already are; fractions are multiplied by 100)."""
    if value is None:
        return None
    metric = metric.rsplit("/", 1)[-1]
    if _in_percent(task, metric):
        return float(value)
    return 100.0 * float(value) if is_rate(task, metric) else float(value)


def first_key(records: list[dict[str, Any]], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if any(key in r for r in records):
            return key
    return None


def final_metrics(run: RunData) -> dict[str, float]:
    """The run's final validation metrics (no prefix): run.json "final" (a fine-tuning run's
    best checkpoint re-evaluated), else the last evaluation record."""
    final = run.info.get("final")
    if isinstance(final, dict):
        return {k: float(v) for k, v in final.items() if isinstance(v, (int, float))}
    evals = run.of_kind("eval")
    if not evals:
        return {}
    return {
        k.split("/", 1)[1]: float(v)
        for k, v in evals[-1].items()
        if k.startswith("valid/") and isinstance(v, (int, float))
    }


def best_primary(run: RunData) -> tuple[float | None, int | None]:
    """(best value of valid/<primary>, its step), from run.json or the evaluation records."""
    key = f"valid/{run.primary}"
    best = run.info.get("best")
    if isinstance(best, dict) and best.get("metric") == key and best.get("value") is not None:
        return float(best["value"]), best.get("step")
    scored = [(r[key], r.get("step")) for r in run.of_kind("eval") if key in r]
    if not scored:
        return None, None
    pick = min if run.primary_mode == "min" else max
    value, step = pick(scored, key=lambda t: t[0])
    return float(value), step


def primary_value(run: RunData) -> float | None:
    """The number the run is judged by: the final value of the primary metric (a fine-tuning
    run's best checkpoint, re-evaluated), else the best. A fine-tuning run without a final
    evaluation (stopped, or still running) is judged by its best evaluation, since its best
    weights are what it predicts with; a pretraining run by its last (its latest weights)."""
    if run.task != "pretrain" and not isinstance(run.info.get("final"), dict):
        best = best_primary(run)[0]
        if best is not None:
            return best
    value = final_metrics(run).get(run.primary)
    return value if value is not None else best_primary(run)[0]


def metric_value(run: RunData, metric: str) -> float | None:
    """The run's final value of `metric`, else (for its own primary metric) the best: what a
    comparison group judges every run by, whichever metric each run chose (task.metric)."""
    if metric == run.primary:
        return primary_value(run)
    return final_metrics(run).get(metric)


def last_train(run: RunData, keys: tuple[str, ...]) -> float | None:
    for r in reversed(run.of_kind("train")):
        for key in keys:
            if key in r:
                return float(r[key])
    return None


def progress(run: RunData) -> tuple[float | None, int | None]:
    """(epoch, step) the run has reached. run.json's steps/epoch are written at checkpoints
    only, so a run still running, or killed, has logged further (or, before its first
    checkpoint, run.json says 0): the later of the two is shown."""
    epoch, steps = run.info.get("epoch"), run.info.get("steps")
    logged = [r for r in run.records if isinstance(r.get("step"), int)]
    last = max(logged, key=lambda r: r["step"], default=None)
    if last is not None and (not isinstance(steps, int) or last["step"] > steps):
        return last.get("epoch", epoch), last["step"]
    if epoch is None and run.records:
        epoch = run.records[-1].get("epoch")
    return epoch, steps


def wall_seconds(run: RunData) -> float | None:
    """Training time: run.json's (written at checkpoints), or the last logged time where
    the run has logged past its last checkpoint."""
    times = [r["time"] for r in run.records if isinstance(r.get("time"), (int, float))]
    saved = run.info.get("train_seconds")
    if saved is not None:
        return max(float(saved), float(times[-1])) if times else float(saved)
    return float(times[-1]) if times else None


def tokens_per_s(run: RunData) -> float | None:
    if run.info.get("tokens_per_s") is not None:
        return float(run.info["tokens_per_s"])
    rates = [r["tokens_per_s"] for r in run.of_kind("train") if "tokens_per_s" in r]
    return sum(rates) / len(rates) if rates else None


def n_evaluated(run: RunData) -> int | None:
    """How many validation examples (QA: questions; pretraining: blocks) the metric is over."""
    ev = run.evaluation or {}
    extra = ev.get("extra") if isinstance(ev.get("extra"), dict) else {}
    for value in (extra.get("examples"), ev.get("questions")):
        if isinstance(value, int):
            return value
    if run.predictions:
        return len(run.predictions)
    for r in reversed(run.records):  # a run still going: its last evaluation's count (QA's
        q = r.get("valid/questions")  # run.json valid_examples counts windows, not questions)
        if r.get("kind") == "eval" and isinstance(q, (int, float)) and q > 0:
            return int(q)
    n = run.info.get("valid_examples")
    return int(n) if isinstance(n, int) else None


@dataclass
class EpochRow:
    epoch: float
    step: int
    train_loss: float | None
    train_acc: float | None  # percent
    valid_metric: float | None  # percent (the primary metric)
    valid_loss: float | None
    test_acc: float | None  # percent
    time: float | None


def _window_mean(train: list[dict[str, Any]], key: str | None, lo: int, hi: int) -> float | None:
    """Mean of `key` over the train records logged in steps (lo, hi], weighted by the steps
    each record covers (a log window is log_every steps, the last one of an epoch fewer)."""
    if key is None:
        return None
    total = weight = 0.0
    prev = lo
    for r in train:
        step = int(r.get("step", 0))
        if lo < step <= hi and key in r:
            w = max(step - prev, 1)
            total += w * float(r[key])
            weight += w
            prev = step
    return total / weight if weight else None


def epoch_rows(run: RunData) -> tuple[list[EpochRow], bool]:
    """A row per finished epoch (train loss/acc averaged over the epoch); a run with no
    finished epoch gets a row per evaluation instead (second value False)."""
    train = run.of_kind("train")
    loss_key = first_key(train, TRAIN_LOSS)
    acc_key = first_key(train, TRAIN_ACC)
    per_epoch = bool(run.of_kind("epoch"))
    source = run.of_kind("epoch") if per_epoch else run.of_kind("eval")
    primary = f"valid/{run.primary}"
    rows = []
    prev_step = 0
    for r in source:
        step = int(r.get("step", 0))
        lo = prev_step if per_epoch else _prev_train_step(train, step)
        train_acc = _window_mean(train, acc_key, lo, step)
        valid_loss = next((r[k] for k in VALID_LOSS if k in r), None)
        test_acc = next((r[k] for k in TEST_ACC if k in r), None)
        rows.append(
            EpochRow(
                epoch=float(r.get("epoch", 0)),
                step=step,
                train_loss=_window_mean(train, loss_key, lo, step),
                train_acc=percent(run.task, acc_key or "acc", train_acc),
                valid_metric=percent(run.task, run.primary, r.get(primary)),
                valid_loss=None if valid_loss is None else float(valid_loss),
                test_acc=percent(run.task, "acc", test_acc),
                time=r.get("time", _time_at(train, step)),
            )
        )
        prev_step = step
    return rows, per_epoch


def _prev_train_step(train: list[dict[str, Any]], step: int) -> int:
    """Per-evaluation rows use the last train window ending at `step`."""
    before = [int(r["step"]) for r in train if int(r.get("step", 0)) < step]
    return before[-1] if before else 0


def _time_at(train: list[dict[str, Any]], step: int) -> float | None:
    for r in train:
        if int(r.get("step", 0)) == step and "time" in r:
            return float(r["time"])
    return None


def series(run: RunData, kind: str, keys: tuple[str, ...], x: str = "step"):
    """(xs, ys) of the first of `keys` found in records of `kind`; rates as percent."""
    recs = run.of_kind(kind)
    key = first_key(recs, keys)
    if key is None:
        return [], [], None
    xs, ys = [], []
    for r in recs:
        if key in r and x in r:
            xs.append(float(r[x]))
            value = float(r[key])
            ys.append(value if "loss" in key else percent(run.task, key, value))
    return xs, ys, key


def source_metrics(run: RunData) -> dict[str, dict[str, float]]:
    """A mixed-corpus pretraining run's final validation metrics per source (data.sources),
    {source: {metric: value}}, from keys valid/<source>/<metric>; empty for other runs."""
    out: dict[str, dict[str, float]] = {}
    for key, value in final_metrics(run).items():
        source, _, metric = key.rpartition("/")
        if source and "/" not in source and metric in SOURCE_METRICS:
            out.setdefault(source, {})[metric] = value
    return out
