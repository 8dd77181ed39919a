"""`encoderlab quickstart`: the whole pretraining path on real text, in a few CPU minutes.

The text comes from PyPI (see data/quickstart.py), not from ../shared, so it works on a
fresh machine that has only a package registry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from encoderlab.config import Config, apply_overrides, build
from encoderlab.data.quickstart import quickstart_corpus
from encoderlab.pretraining import pretrain
from encoderlab.runs import Run
from encoderlab.train import FitResult


def quickstart_config(corpus: Path, minutes: float, runs_dir: Path) -> dict:
    """A small encoder that learns visibly within minutes on 2 CPU cores."""
    return {
        "name": "quickstart",
        "description": "quickstart: WordPiece 8k + 2-layer encoder, MLM on rotten-tomatoes text",
        "runs_dir": str(runs_dir),
        "tokenizer": {"kind": "wordpiece", "vocab_size": 8000, "lowercase": True},
        "data": {
            "corpus": [str(corpus)],
            "text_column": "text",
            "mode": "packed",
            "block_len": 64,
            "valid_ratio": 0.05,
        },
        "model": {"d_model": 128, "n_head": 4, "d_ff": 512, "n_layer": 2, "max_len": 64},
        "train": {
            "batch_size": 64,
            "lr": 2e-3,
            "warmup_steps": 30,
            "schedule": "linear",
            "epochs": None,
            "time_budget_min": minutes,
            "eval_every": 50,
            "eval_batches": 8,
            "log_every": 10,
        },
    }


def run_quickstart(
    minutes: float = 4.0,
    runs_dir: Path = Path("runs"),
    overrides: list[str] | None = None,
    say: Callable[[str], None] = print,
) -> tuple[Run, FitResult]:
    corpus = quickstart_corpus()
    say(f"quickstart text: {corpus}")
    data = apply_overrides(quickstart_config(corpus, minutes, runs_dir), list(overrides or []))
    cfg = build(Config, data, "quickstart")
    return pretrain(cfg, say=say)
