"""encoderlab: train, fine-tune and compare BERT-style Transformer encoders on a budget.

The Python API (see `encoderlab.api`), the same functions the CLI calls:

    import encoderlab as el
    run = el.finetune("configs/disaster_tweets.yaml", overrides={"train.epochs": 1},
                      train=df_train, valid=df_valid)
    model = el.load(run)
    model.predict(["Forest fire near La Ronge"])  # [{"label", "score", "scores"}]
    el.evaluate(run, data=df_test); el.report([run], out="report/"); el.pretrain(...)

The API is imported on first use, so `import encoderlab` (and the CLI) stays fast.

`finetune`, `pretrain` and `report` are also the names of submodules, and importing a
submodule sets the package attribute of that name to the module. So those three attributes
are the modules themselves, made callable: `el.finetune(...)` calls `encoderlab.api.finetune`,
while `import encoderlab.finetune as m`, `m.fit = ...` and `monkeypatch.setattr(
"encoderlab.finetune.fit", ...)` still reach the module.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

__all__ = ["Model", "UserError", "evaluate", "finetune", "load", "pretrain", "report"]
_MODULE_NAMED = frozenset({"finetune", "pretrain", "report"})  # API names that are submodules


class _CallableModule(ModuleType):
    """A submodule that, called, runs the API function of its name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        api = importlib.import_module("encoderlab.api")
        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def _callable(module: ModuleType) -> ModuleType:
    if type(module) is ModuleType:
        module.__class__ = _CallableModule
        api = importlib.import_module("encoderlab.api")
        func = getattr(api, module.__name__.rsplit(".", 1)[1])
        module.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
    return module


class _Package(ModuleType):
    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name in _MODULE_NAMED and isinstance(value, ModuleType):
            return _callable(value)
        return value


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name == "UserError":
        from encoderlab.errors import UserError

        return UserError
    if name in _MODULE_NAMED:
        return _callable(importlib.import_module(f"encoderlab.{name}"))
    if name in __all__:
        return getattr(importlib.import_module("encoderlab.api"), name)
    raise AttributeError(f"module 'encoderlab' has no attribute {name!r}")
