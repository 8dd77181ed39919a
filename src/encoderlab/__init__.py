"""encoderlab: train, fine-tune and compare BERT-style Transformer encoders on a budget.

The Python API (`encoderlab.api`), the same functions the CLI calls:

    import encoderlab as el
    run = el.finetune("configs/disaster_tweets.yaml", overrides={"train.epochs": 1},
                      train=df_train, valid=df_valid)
    model = el.load(run)
    model.predict(["Forest fire near La Ronge"])  # [{"label", "score", "scores"}]
    el.evaluate(run, data=df_test); el.report([run], out="report/"); el.pretrain(...)
    el.embed(run, ["a text", "another"])          # (2, dim) float32, L2-normalised

The API is imported on first use, so `import encoderlab` (and the CLI) stays fast. The modules
behind it are named for the stage (`finetuning`, `pretraining`, `reporting`), so no submodule
import ever shadows an API function of the package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Model",
    "UserError",
    "embed",
    "evaluate",
    "finetune",
    "load",
    "load_embedder",
    "pretrain",
    "report",
]


def __getattr__(name: str) -> Any:
    if name == "UserError":
        from encoderlab.errors import UserError

        return UserError
    if name in __all__:
        return getattr(importlib.import_module("encoderlab.api"), name)
    raise AttributeError(f"module 'encoderlab' has no attribute {name!r}")
