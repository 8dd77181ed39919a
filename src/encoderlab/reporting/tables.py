"""The report's tables, as plain header + string rows (rendered to Markdown or HTML later)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from encoderlab.reporting import fmt
from encoderlab.reporting.diffs import ExampleDiff
from encoderlab.reporting.load import RunData
from encoderlab.reporting.metrics import (
    SOURCE_METRICS,
    TRAIN_ACC,
    best_primary,
    epoch_rows,
    final_metrics,
    is_rate,
    last_train,
    percent,
    progress,
    source_metrics,
    tokens_per_s,
    wall_seconds,
)
from encoderlab.runs import live_status


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    title: str = ""
    note: str = ""
    row_headers: bool = False  # first column names the row (confusion matrix, records)
    extra: dict[str, Any] = field(default_factory=dict)


# (header, metric): metric columns shown when at least one run has the metric
METRIC_COLUMNS = [
    ("micro-F1 (%)", "micro_f1"),
    ("macro-F1 (%)", "macro_f1"),
    ("weighted-F1 (%)", "weighted_f1"),
    ("MCC (x100)", "mcc"),
    ("F1 (%)", "f1"),
    ("strict F1 (%)", "f1_strict"),
    ("ROC-AUC (%)", "roc_auc"),
    ("Pearson (x100)", "pearson"),
    ("Spearman (x100)", "spearman"),
    ("MSE", "mse"),
    ("EM (%)", "em"),
    # SQuAD 2.0, as the official script splits it: answerable, unanswerable, best threshold
    ("HasAns F1 (%)", "has_ans_f1"),
    ("NoAns acc (%)", "no_ans_acc"),
    ("best F1 (%)", "best_f1"),
    ("MLM acc (%)", "mlm_acc"),
    ("replaced-token F1 (%)", "disc_f1"),
]


def _metric_cell(run: RunData, metric: str) -> str:
    """final (and / best when the metric is the run's primary one and a best exists)."""
    final = final_metrics(run).get(metric)
    if metric != run.primary:
        return fmt.pct(percent(run.task, metric, final))
    best, _ = best_primary(run)
    if final is None and best is None:
        return fmt.DASH
    return (
        f"{fmt.pct(percent(run.task, metric, final))} / {fmt.pct(percent(run.task, metric, best))}"
    )


def _epochs_steps(run: RunData) -> str:
    epoch, steps = progress(run)
    return f"{fmt.general(epoch)} ep / {fmt.count(steps)} steps"


def _batch(run: RunData) -> str:
    train = run.config.get("train") or {}
    batch, accum = train.get("batch_size"), train.get("grad_accum") or 1
    return fmt.general(batch) + (f"×{accum}" if accum and accum > 1 else "")


def _reports(run: RunData, metric: str) -> bool:
    """Whether the run's task reports `metric`: its `metric_names` (for classification with
    two labels also the positive class's f1 and roc_auc), else its `reported_metrics`."""
    info = run.task_info
    return metric in (getattr(info, "metric_names", ()) or getattr(info, "reported_metrics", ()))


def hyperparameter_table(runs: list[RunData]) -> Table:
    has = {m for r in runs for m in final_metrics(r)}
    metric_cols = [(h, m) for h, m in METRIC_COLUMNS if m in has]
    if any("answers_failed" in final_metrics(r) for r in runs):
        metric_cols.append(("answers failed", "answers_failed"))
    headers = [
        "run", "task", "vocab", "batch", "lr", "weight decay", "d_model", "heads", "d_ff",
        "layers", "dropout", "epochs / steps", "params", "wall time", "tokens/s",
        "train acc (%)", "valid acc (%) final / best",
    ] + [h for h, _ in metric_cols] + ["status"]  # fmt: skip
    rows = []
    for r in runs:
        train, m = r.config.get("train") or {}, r.model
        train_acc = last_train(r, TRAIN_ACC)
        acc_key = next((k for k in TRAIN_ACC if any(k in x for x in r.of_kind("train"))), "acc")
        valid_acc = _metric_cell(r, "acc") if _reports(r, "acc") else fmt.DASH
        row = [
            r.name,
            r.task,
            fmt.general(m.get("vocab_size")),
            _batch(r),
            fmt.general(train.get("lr")),
            fmt.general(train.get("weight_decay")),
            fmt.general(m.get("d_model")),
            fmt.general(m.get("n_head")),
            fmt.general(m.get("d_ff")),
            fmt.general(m.get("n_layer")),
            fmt.general(m.get("dropout")),
            _epochs_steps(r),
            fmt.count(r.info.get("params")),
            fmt.seconds(wall_seconds(r)),
            fmt.count(tokens_per_s(r)),
            fmt.pct(percent(r.task, acc_key, train_acc)),
            valid_acc,
        ]
        final = final_metrics(r)
        for _, metric in metric_cols:
            if metric == "answers_failed":
                failed, total = final.get("answers_failed"), final.get("questions")
                row.append(fmt.DASH if failed is None else f"{int(failed):,} of {fmt.count(total)}")
            elif metric == "f1" and not _reports(r, "f1"):
                row.append(fmt.DASH)
            else:
                row.append(
                    _metric_cell(r, metric) if metric in final or metric == r.primary else fmt.DASH
                )
        row.append(live_status(r.info, r.path) if r.info.get("status") else fmt.DASH)
        rows.append(row)
    note = (
        "Accuracies and F1 in percent; final = the run's final evaluation (fine-tuning: the best "
        "checkpoint re-evaluated), best = the best evaluation during training; train acc = the "
        "last train log window."
    )
    return Table(headers, rows, title="Hyperparameters and results", note=note)


def epoch_table(run: RunData) -> Table:
    rows_, per_epoch = epoch_rows(run)
    metric = {"acc": "valid acc (%)", "mlm_acc": "valid MLM acc (%)"}.get(
        run.primary, f"valid {run.primary} (%)"
    )
    headers = ["epoch" if per_epoch else "step (epoch)", "train loss", "train acc (%)", metric]
    show_vloss = any(r.valid_loss is not None for r in rows_)
    show_test = any(r.test_acc is not None for r in rows_)
    headers += ["valid loss"] * show_vloss + ["test acc (%)"] * show_test + ["time"]
    rows = []
    for r in rows_:
        first = fmt.general(int(r.epoch)) if per_epoch else f"{r.step:,} ({r.epoch:.2f})"
        row = [first, fmt.num(r.train_loss), fmt.pct(r.train_acc), fmt.pct(r.valid_metric)]
        row += [fmt.num(r.valid_loss)] * show_vloss + [fmt.pct(r.test_acc)] * show_test
        row.append(fmt.seconds(r.time))
        rows.append(row)
    note = (
        "train loss/acc: mean over the epoch's log windows"
        if per_epoch
        else "no finished epoch: one row per evaluation; train loss/acc of the log window before it"
    )
    return Table(headers, rows, title=run.name, note=note)


def confusion_table(run: RunData) -> Table | None:
    extra = (run.evaluation or {}).get("extra") or {}
    labels, matrix = extra.get("labels"), extra.get("confusion")
    if not labels or not matrix:
        return None
    headers = ["gold \\ predicted", *map(str, labels), "total"]
    rows = [
        [str(lab), *(f"{int(v):,}" for v in line), f"{sum(line):,}"]
        for lab, line in zip(labels, matrix, strict=False)
    ]
    return Table(headers, rows, title=f"{run.name}: confusion matrix", row_headers=True)


def per_class_table(run: RunData, key: str = "per_class") -> Table | None:
    extra = (run.evaluation or {}).get("extra") or {}
    scores = extra.get(key)
    if not isinstance(scores, dict) or not scores:
        return None
    headers = ["class" if key == "per_class" else "entity type", "precision (%)", "recall (%)"]
    headers += ["F1 (%)", "support"]
    rows = [
        [
            str(name),
            fmt.pct(100 * s.get("precision", 0.0)),
            fmt.pct(100 * s.get("recall", 0.0)),
            fmt.pct(100 * s.get("f1", 0.0)),
            fmt.count(s.get("support")),
        ]
        for name, s in scores.items()
    ]
    return Table(headers, rows, title=f"{run.name}: per {headers[0]}", row_headers=True)


def source_table(run: RunData) -> Table | None:
    """A mixed-corpus pretraining run's final validation metrics for each source."""
    by_source = source_metrics(run)
    if not by_source:
        return None
    metrics = [m for m in SOURCE_METRICS if any(m in v for v in by_source.values())]
    headers = ["source"] + [f"{m} (%)" if is_rate(run.task, m) else m for m in metrics]
    rows = []
    for name, values in by_source.items():
        cells = []
        for m in metrics:
            value = values.get(m)
            if is_rate(run.task, m):
                cells.append(fmt.pct(percent(run.task, m, value)))
            else:
                cells.append(fmt.DASH if value is None else f"{value:.4f}")
        rows.append([name, *cells])
    return Table(headers, rows, title=f"{run.name}: validation per source", row_headers=True)


def record_table(run: RunData) -> Table:
    i = run.info
    sizes = [
        f"train {fmt.count(i.get('train_examples'))}",
        f"valid {fmt.count(i.get('valid_examples'))}",
    ]
    if i.get("test_examples"):
        sizes.append(f"test {fmt.count(i.get('test_examples'))}")
    if i.get("corpus_tokens"):
        sizes.append(f"corpus {fmt.count(i['corpus_tokens'])} tokens")
    git = ((run.env.get("git") or {}).get("encoderlab") or {}).get("rev")
    argv = run.env.get("argv")
    fields = [
        ("description", i.get("description") or fmt.DASH),
        ("kind", i.get("kind")),
        ("status", live_status(i, run.path) if i.get("status") else None),
        ("started", fmt.timestamp(i.get("created"))),
        ("finished", fmt.timestamp(i.get("finished"))),
        ("training time", fmt.seconds(wall_seconds(run))),
        ("dataset sizes", ", ".join(sizes)),
        ("validation data", i.get("valid_source")),
        ("steps per epoch", fmt.count(i.get("steps_per_epoch"))),
        ("steps", f"{fmt.count(progress(run)[1])} of {fmt.count(i.get('total_steps'))}"),
        ("device", i.get("device")),
        ("precision", i.get("precision")),
        ("init", i.get("init")),
        (
            "params",
            f"{fmt.count(i.get('params'))} (trainable {fmt.count(i.get('trainable_params'))})",
        ),
        ("stopped because", i.get("stopped_because")),
        ("notes", i.get("message") or i.get("notes")),
        ("non-finite steps", i.get("nonfinite_steps")),
        ("git revision", git),
        ("command", " ".join(map(str, argv)) if isinstance(argv, list) else None),
        ("directory", str(run.path)),
    ]
    rows = [
        [k, fmt.clip(v, 400)]
        for k, v in fields
        if v not in (None, "", fmt.DASH + " of " + fmt.DASH)
    ]
    return Table(["field", "value"], rows, title=run.name, row_headers=True)


def _row_text(row: dict[str, Any]) -> str:
    if "question" in row:
        question, context = fmt.clip(row.get("question"), 200), fmt.clip(row.get("context"), 200)
        return f"Q: {question} | context: {context}"
    if "tokens" in row:
        return fmt.clip(row.get("tokens"))
    text = fmt.clip(row.get("input"))
    if row.get("input_pair") is not None:
        text += " ‖ " + fmt.clip(row.get("input_pair"))
    return text


def _pred(row: dict[str, Any]) -> str:
    pred = fmt.clip(row.get("prediction"), 120)
    if row.get("probability") is not None:
        pred += f" ({row['probability']:.2f})"
    elif row.get("f1") is not None and "question" in row:
        pred += f" (F1 {row['f1']:.0f})"
    return pred


def diff_tables(diff: ExampleDiff, limit: int = 20) -> list[Table]:
    tables = []
    for right, wrong, pairs in (
        (diff.a, diff.b, diff.a_right_b_wrong),
        (diff.b, diff.a, diff.b_right_a_wrong),
    ):
        a_first = right is diff.a
        rows = []
        for ra, rb in pairs[:limit]:
            r_right, r_wrong = (ra, rb) if a_first else (rb, ra)
            rows.append(
                [
                    str(ra.get("id")),
                    _row_text(ra),
                    fmt.clip(ra.get("gold"), 120),
                    _pred(r_right),
                    _pred(r_wrong),
                ]
            )
        shown = f" (first {limit} shown)" if len(pairs) > limit else ""
        tables.append(
            Table(
                ["id", "example", "gold", f"{right.name} (right)", f"{wrong.name} (wrong)"],
                rows,
                title=f"{right.name} right, {wrong.name} wrong: {len(pairs):,}{shown}",
            )
        )
    return tables
