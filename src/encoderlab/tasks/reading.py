"""`evaluate --set`: change how a finished run reads another file, and nothing else.

A run's task settings are part of what it learned (its type, labels, max_len); the reading
options below only say where in a file the data sits (and the two decision thresholds how
its outputs become answers), so they may differ per file.
"""

from __future__ import annotations

from encoderlab.config import TRUNCATION_OPTIONS, TaskConfig, apply_overrides, build
from encoderlab.errors import UserError
from encoderlab.tasks.registry import task_kind

READING_KEYS = (
    "format",
    "sheet",
    "text_column",
    "text_pair_column",
    "label_column",
    "id_column",
    "columns",
    "where",
    "max_examples",
    "positive_label",
    "tag_column",
    "tag_scheme",
    "truncation",
    "head_tokens",
    "window_stride",
    "max_windows",
    "label_separator",
    # decision rules rather than reading, equally free per file: a multilabel run's
    # probability threshold, a SQuAD 2.0 run's null-score margin
    "threshold",
    "null_threshold",
)


def reading_config(task: TaskConfig, overrides: list[str]) -> TaskConfig:
    """`task` with the `--set task.KEY=VALUE` reading options applied (validated as usual)."""
    data = {"task": task.model_dump(mode="json")}
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        name = key.removeprefix("task.")
        if not key.startswith("task.") or name not in READING_KEYS:
            raise UserError(
                f"--set {text!r}: --set takes the task's reading options only: "
                + ", ".join(f"task.{k}" for k in READING_KEYS)
            )
    data = apply_overrides(data, overrides)
    given = {text.split("=", 1)[0].strip().removeprefix("task.") for text in overrides}
    if "truncation" in given:  # another truncation: the run's options for its own one go
        for name, needs in TRUNCATION_OPTIONS.items():
            if name not in given and data["task"]["truncation"] != needs:
                data["task"][name] = None
    if "threshold" in given and task_kind(task.type) != "multilabel":
        raise UserError(
            f"--set task.threshold: a {task.type} run has no label threshold (multilabel runs do)"
        )
    if "null_threshold" in given and not task.unanswerable:
        raise UserError(
            "--set task.null_threshold: this run never answers nothing; the margin is for runs "
            "fine-tuned with task.unanswerable: true (SQuAD 2.0)"
        )
    return build(TaskConfig, data["task"], "--set", at="task")
