"""Task types for fine-tuning; each module implements the `Task` interface of base.py."""

from __future__ import annotations

from encoderlab.tasks.base import Task


def get_task(kind: str) -> Task:
    if kind == "classification":
        from encoderlab.tasks.classification import ClassificationTask

        return ClassificationTask(pair=False)
    if kind == "pair":
        from encoderlab.tasks.classification import ClassificationTask

        return ClassificationTask(pair=True)
    if kind == "qa":
        from encoderlab.tasks.qa import QATask

        return QATask()
    if kind == "tagging":
        from encoderlab.tasks.tagging import TaggingTask

        return TaggingTask()
    raise ValueError(f"unknown task type {kind!r}")


# The metric that defines "best" for each task type (on the validation set, higher is better).
PRIMARY_METRIC = {"classification": "acc", "pair": "acc", "qa": "f1", "tagging": "f1"}
