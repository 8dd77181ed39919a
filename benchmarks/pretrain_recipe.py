"""The budget recipe, one choice at a time: MLM accuracy at an equal number of training tokens.

Not a test; run it by hand (its figures are the README's "A budget recipe" table):

    python benchmarks/pretrain_recipe.py --tokens 2e6          # 13 arms, ~60 min on 2 idle cores
    python benchmarks/pretrain_recipe.py --tokens 3e5 --arms bert,budget --d-model 128 --layers 3

Arms change one thing from `recipe: budget` (or are the `bert` baseline: post-LN, dropout 0.1,
lr 5e-4 linear, 128-token blocks, batch 32) and all train on the same number of tokens
(steps = tokens / (batch x block_len)), so a loaded machine changes their speed, not their
accuracy. One WordPiece 8k lowercase tokenizer for every arm (a smaller vocabulary raises
accuracy without a better model); the same held-out documents and the same masks for every
arm (time_to_quality.py's masked stream, 15%, whatever rate an arm trains with), cut into
blocks of the arm's own length. Prints a table and, last, `ratio X.XXx` = budget / bert.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model
from time_to_quality import accuracy, encoderlab_logits, masked_stream, prepare

from encoderlab.config import Config
from encoderlab.model import MaskedLM
from encoderlab.pretraining import pretrain
from encoderlab.runs import Run, run_checkpoint, run_model_config
from encoderlab.tokenizer import load_tokenizer

BERT = {
    "model": {"norm": "post", "dropout": 0.1, "attn_dropout": 0.1},
    "data": {"block_len": 128},
    "train": {"batch_size": 32, "lr": 5e-4, "schedule": "linear", "warmup_ratio": 0.1},
}
# name -> (recipe, what the arm sets on top of it)
ARMS: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "bert": ("bert", BERT),
    "budget": ("budget", {}),
    "post-LN": ("budget", {"model": {"norm": "post"}}),
    "dropout 0.1": ("budget", {"model": {"dropout": 0.1, "attn_dropout": 0.1}}),
    "lr 5e-4": ("budget", {"train": {"lr": 5e-4}}),
    "lr 2e-3": ("budget", {"train": {"lr": 2e-3}}),
    "linear schedule": ("budget", {"train": {"schedule": "linear"}}),
    "warmup 30%": ("budget", {"train": {"warmup_ratio": 0.3}}),
    "128-token blocks + batch 32": (
        "budget",
        {"data": {"block_len": 128}, "train": {"batch_size": 32}},
    ),
    "batch 32": ("budget", {"train": {"batch_size": 32}}),
    "mask 25%": ("budget", {"data": {"mask_rate": 0.25}}),
    "plain MLM head": ("budget", {"model": {"mlm_head": "plain"}}),
    # the recipe's positions are ALiBi since 2026-12-01: the one-change arm is the table
    "learned positions": ("budget", {"model": {"position": "learned"}}),
}


def arm_config(name: str, work: Path, shape: dict, tokens: float, threads: int) -> Config:
    recipe, changes = ARMS[name]
    data: dict[str, Any] = {
        "name": "arm",
        "recipe": recipe,
        "runs_dir": str(work / "runs"),
        "tokenizer": {"path": str(work / "tokenizer")},
        "data": {
            "corpus": [str(work / "train.txt")],
            "valid_ratio": 0.0,
            "cache_dir": str(work / "cache"),
        },
        "model": dict(shape),
        "train": {"threads": threads, "device": "cpu", "log_every": 10**6, "epochs": None},
    }
    for section, values in changes.items():
        data[section].update(values)
    probe = Config.model_validate({**data, "train": {**data["train"], "max_steps": 1}})
    steps = max(1, int(tokens / (probe.train.batch_size * probe.data.block_len)))
    data["train"]["max_steps"] = steps
    return Config.model_validate(data)


def run_arm(name: str, work: Path, shape: dict, tokens: float, threads: int, stream) -> dict:
    cfg = arm_config(name, work, shape, tokens, threads)
    run, result = pretrain(cfg, say=lambda _m: None)
    model = MaskedLM(run_model_config(Run.open(run.path)))
    load_model(model, str(run_checkpoint(run) / "model.safetensors"))
    acc, n = accuracy(encoderlab_logits(model), stream, cfg.data.block_len)
    return {
        "arm": name,
        "acc": acc,
        "steps": result.step,
        "s_per_step": result.train_seconds / max(1, result.step),
        "masked": n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=float, default=2e6, help="training tokens for every arm")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated arm names")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokenizer", help="an existing tokenizer (default: train WordPiece 8k)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    args = ap.parse_args()
    names = [a.strip() for a in args.arms.split(",")]
    unknown = [a for a in names if a not in ARMS]
    if unknown:
        ap.error(f"unknown arm(s) {unknown}; arms: {', '.join(ARMS)}")
    shape = {
        "d_model": args.d_model,
        "n_head": 4,
        "d_ff": 4 * args.d_model,
        "n_layer": args.layers,
        "max_len": 128,
    }
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        held = prepare(work, args.tokenizer, seed=0)
        stream = masked_stream(load_tokenizer(work / "tokenizer"), held, 0.15, seed=0)
        print(f"{args.tokens:.2g} tokens per arm, d{args.d_model} x {args.layers} layers")
        print("| arm | valid MLM acc | steps | s/step |")
        print("|---|---|---|---|")
        rows = {}
        for name in names:
            r = run_arm(name, work, shape, args.tokens, args.threads, stream)
            rows[name] = r
            print(f"| {name} | {r['acc']:.3f} | {r['steps']} | {r['s_per_step']:.2f} |", flush=True)
            with (work / "results.jsonl").open("a") as f:
                f.write(json.dumps(r) + "\n")
        print(f"held-out masked tokens: {r['masked']:,}")
        if "bert" in rows and "budget" in rows:
            print(f"ratio {rows['budget']['acc'] / max(rows['bert']['acc'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
