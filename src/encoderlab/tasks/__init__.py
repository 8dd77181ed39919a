"""Task types for fine-tuning; each module implements the `Task` interface of base.py and
registers its class in the registry (registry.py), the only place task names live."""

from __future__ import annotations

from encoderlab.tasks.registry import get_task, register, task_class, task_names

__all__ = ["get_task", "register", "task_class", "task_names"]
