"""The task registry: the one place task types are known by name.

A task type is a class with a `type` name, decorated with `@register`; config validation,
fine-tuning, inference, export and reports look it up here. The built-in types live in the
modules listed below and are imported on the first lookup (as plugins are), so this module
imports no task code itself and config validation can consult it without an import cycle.
A task defined elsewhere (a test, a user's module) is available once its module is imported.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from encoderlab.errors import UserError

BUILTIN_MODULES = (
    "encoderlab.tasks.classification",
    "encoderlab.tasks.multilabel",
    "encoderlab.tasks.pos",
    "encoderlab.tasks.qa",
    "encoderlab.tasks.regression",
    "encoderlab.tasks.tagging",
)

_TASKS: dict[str, type] = {}
_builtins_loaded = False


def register(cls: type) -> type:
    """Class decorator: make task type `cls.type` known to every command."""
    name = getattr(cls, "type", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__}: a task class needs a `type` name to register")
    _TASKS[name] = cls
    return cls


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            import_module(module)


def task_names() -> list[str]:
    """Every registered task type, sorted (registration order depends on import order)."""
    _load_builtins()
    return sorted(_TASKS)


def task_class(name: str) -> Any | None:
    """The class registered as `name` (its declared metadata), or None if there is none."""
    _load_builtins()
    return _TASKS.get(name)


def task_kind(name: str) -> str:
    """The built-in type `name` is or is built on (a plugin class subclassing TaggingTask is
    "tagging"), so the options and rules of a built-in type follow its subclasses; `name`
    itself when it is none."""
    for cls in getattr(task_class(name), "__mro__", ()):
        own = cls.__dict__.get("type")
        if isinstance(own, str) and cls.__module__ in BUILTIN_MODULES:
            return own
    return name


def get_task(name: str, cfg: Any = None) -> Any:
    """A fresh task object of type `name`. With its TaskConfig `cfg`, `task.metric` becomes
    the object's primary_metric (and primary_mode): what picks the best checkpoint."""
    cls = task_class(name)
    if cls is None:
        raise UserError(f"unknown task type {name!r}; registered types: {', '.join(task_names())}")
    task = cls()
    metric = getattr(cfg, "metric", None)
    if metric is not None:
        names = task_metrics(cls)
        if metric not in names:
            raise UserError(f"task.metric={metric}: {name} computes {', '.join(names)}")
        task.primary_metric = metric
        task.primary_mode = metric_mode(metric)
    return task


def task_metrics(cls: Any) -> tuple[str, ...]:
    """The metrics a task class computes (what task.metric may name): its `metric_names`,
    else its `reported_metrics`."""
    return tuple(getattr(cls, "metric_names", ()) or getattr(cls, "reported_metrics", ()))


def metric_mode(metric: str) -> str:
    """ "min" for errors and losses, "max" for scores."""
    return "min" if metric in LOWER_IS_BETTER or metric.endswith("loss") else "max"


LOWER_IS_BETTER = frozenset({"mse", "rmse", "mae", "loss"})
