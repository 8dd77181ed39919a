"""Time to quality: MLM accuracy after M minutes, encoderlab's budget recipe vs the HF Trainer.

Not a test; run it by hand on an otherwise idle machine:

    python benchmarks/time_to_quality.py --minutes 10 --threads 1     # ~12 min on 2 cores
    python benchmarks/time_to_quality.py --minutes 0.5                # a ~3 minute check
    python benchmarks/time_to_quality.py --minutes 10 --downstream 4  # + disaster tweets

`--downstream F` adds what the pretraining is for: disaster tweets (../shared/data) fine-tuned
for F minutes from encoderlab's pretrained model against the same architecture and tokenizer
from scratch given the same compute: the M minutes of pretraining ran on --threads threads
beside the Trainer, the fine-tuning runs (one after the other) on 2 x --threads, so scratch
gets F + M / 2 minutes (equal core-minutes; until 2026-12-01 it got M + F, ~60 % more
compute). Each arm prints its last evaluation and the best of its evaluations.

The HF side needs transformers and accelerate (Trainer requires it): pip install -e '.[dev]'.

What is compared, on WikiText-2 valid+test (one document a line):

* one WordPiece 8k lowercase tokenizer, trained once on the whole corpus, used by both;
* 5% of the documents held out (seed 0); both train only on the rest;
* encoderlab: `recipe: budget` (configs/pretrain_budget.yaml's choices), time_budget_min=M;
* transformers: BertForMaskedLM (post-LN, dropout 0.1) + DataCollatorForLanguageModeling
  (15%) + Trainer with its usual settings: lr 5e-4, linear warmup (6%) and decay, batch 32,
  128-token blocks grouped the run_mlm way. Its max_steps is what M minutes allow at the
  step rate of a short calibration run, so its schedule decays fully; a TrainerCallback also
  stops it at M minutes;
* the same shape on both sides (d256, 4 heads, d_ff 1024, --layers);
* both trained at the same time in two processes with --threads each, so machine noise hits
  both alike; data preparation is outside the M minutes on both sides.

Evaluation: the held-out documents as one token stream, 15% of its tokens masked once
(80/10/10, seed 0). Each model sees that stream cut into blocks of its own training length
(128 for HF, the recipe's block_len for encoderlab) with [CLS]/[SEP] around each block; both
views hold exactly the same masked tokens with the same replacements, so the accuracies are
over the same predictions (HF gets the longer context). Prints both accuracies and, last,
`ratio X.XXx` = encoderlab / HF.
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from encoderlab.config import Config, TokenizerConfig, load_config
from encoderlab.model import IGNORE_INDEX, MaskedLM
from encoderlab.tokenizer import load_tokenizer, save_tokenizer, special_ids, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CORPUS = [
    ROOT / "../shared/data/wikitext-2/valid.txt",
    ROOT / "../shared/data/wikitext-2/test.txt",
]
SHAPE = {"d_model": 256, "n_head": 4, "d_ff": 1024}
HF_BLOCK = 128
TWEETS = ROOT / "../shared/data/disaster_tweets/train.csv"


def read_documents(paths: list[Path]) -> list[str]:
    """One document a non-blank line, as encoderlab's txt_unit=line reads them."""
    docs: list[str] = []
    for p in paths:
        docs += [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    return [d for d in docs if d]


def split_documents(docs: list[str], ratio: float, seed: int) -> tuple[list[str], list[str]]:
    held = set(np.random.default_rng(seed).permutation(len(docs))[: int(ratio * len(docs))])
    train = [d for i, d in enumerate(docs) if i not in held]
    return train, [d for i, d in enumerate(docs) if i in held]


# ---------------------------------------------------------------------------------------------
# The held-out set: one masked token stream, cut into blocks of any length


def masked_stream(tok, docs: list[str], rate: float, seed: int) -> dict[str, np.ndarray]:
    """The documents' ids joined by [SEP], with BERT's 80/10/10 masking drawn once."""
    ids = special_ids(tok)
    parts = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        parts += [enc.ids, [ids["sep"]]]
    target = np.asarray([i for p in parts for i in p], dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = (rng.random(len(target)) < rate) & ~np.isin(target, list(ids.values()))
    r = rng.random(len(target))
    inputs = target.copy()
    inputs[chosen & (r < 0.8)] = ids["mask"]
    rand = chosen & (r >= 0.8) & (r < 0.9)
    inputs[rand] = rng.integers(len(ids), tok.get_vocab_size(), int(rand.sum()))
    labels = np.where(chosen, target, IGNORE_INDEX)
    return {"inputs": inputs, "labels": labels, "cls": ids["cls"], "sep": ids["sep"]}


def blocks(stream: dict, block_len: int, batch: int = 64):
    """Batches of (input_ids, attention_mask, labels), [CLS] piece [SEP], last one padded."""
    width = block_len - 2
    n = len(stream["inputs"])
    rows = []
    for start in range(0, n, width):
        piece = stream["inputs"][start : start + width]
        lab = stream["labels"][start : start + width]
        rows.append(
            (
                np.concatenate([[stream["cls"]], piece, [stream["sep"]]]),
                np.concatenate([[IGNORE_INDEX], lab, [IGNORE_INDEX]]),
            )
        )
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        length = max(len(r[0]) for r in chunk)
        ids = torch.zeros(len(chunk), length, dtype=torch.long)
        labels = torch.full((len(chunk), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(len(chunk), length, dtype=torch.long)
        for j, (x, y) in enumerate(chunk):
            ids[j, : len(x)] = torch.from_numpy(x)
            labels[j, : len(y)] = torch.from_numpy(y)
            mask[j, : len(x)] = 1
        yield ids, mask, labels


@torch.no_grad()
def accuracy(logits_of, stream: dict, block_len: int) -> tuple[float, int]:
    """Masked-token accuracy of `logits_of(ids, mask) -> (B,T,V)` over the stream's masks."""
    correct = total = 0
    for ids, mask, labels in blocks(stream, block_len):
        at = labels != IGNORE_INDEX
        pred = logits_of(ids, mask).argmax(-1)
        correct += int((pred[at] == labels[at]).sum())
        total += int(at.sum())
    return correct / max(total, 1), total


def encoderlab_logits(model: torch.nn.Module):
    """`logits_of` for a MaskedLM or a BertForMaskedLM (both return `.logits` without labels)."""
    model.eval()
    return lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits


# ---------------------------------------------------------------------------------------------
# The two sides, each run in its own process


def budget_config(
    work: Path, minutes: float, threads: int, layers: int, overrides: list[str] | None = None
) -> Config:
    """encoderlab's side: the budget recipe, everything else left to it (`overrides`: --set
    KEY=VALUE, to measure a variant of the recipe)."""
    from encoderlab.config import apply_overrides

    data = apply_overrides(
        {
            "name": "budget",
            "recipe": "budget",
            "runs_dir": str(work / "runs"),
            "tokenizer": {"path": str(work / "tokenizer")},
            "data": {
                "corpus": [str(work / "train.txt")],
                "valid_ratio": 0.0,
                "cache_dir": str(work / "cache"),
            },
            "model": {**SHAPE, "n_layer": layers, "max_len": 512},
            "train": {
                "time_budget_min": minutes,
                "budget_covers": "train",  # data preparation outside the M minutes, as HF's
                "threads": threads,
                "device": "cpu",
                "log_every": 50,
            },
        },
        list(overrides or []),
    )
    return Config.model_validate(data)


def run_encoderlab(
    work: Path, minutes: float, threads: int, layers: int, overrides: list[str] | None = None
) -> dict:
    from encoderlab.pretraining import pretrain

    cfg = budget_config(work, minutes, threads, layers, overrides)
    run, result = pretrain(cfg, say=lambda _m: None)
    return {"run": str(run.path), "steps": result.step, "seconds": result.train_seconds}


def hf_blocks(tok_path: Path, docs: list[str]) -> list[list[int]]:
    """run_mlm's group_texts: each document [CLS] ... [SEP], all concatenated, 128-token chunks."""
    tok = load_tokenizer(tok_path)
    ids = [i for enc in tok.encode_batch(docs) for i in enc.ids]
    n = len(ids) // HF_BLOCK * HF_BLOCK
    return [ids[i : i + HF_BLOCK] for i in range(0, n, HF_BLOCK)]


def run_hf(work: Path, minutes: float, threads: int, layers: int) -> dict:
    import transformers
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        PreTrainedTokenizerFast,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    tok = PreTrainedTokenizerFast.from_pretrained(str(work / "tokenizer"))
    train = [{"input_ids": b} for b in hf_blocks(work / "tokenizer", read_lines(work))]
    collator = DataCollatorForLanguageModeling(tokenizer=tok, mlm_probability=0.15)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=SHAPE["d_model"],
        num_attention_heads=SHAPE["n_head"],
        intermediate_size=SHAPE["d_ff"],
        num_hidden_layers=layers,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    budget_s = minutes * 60

    class Clock(TrainerCallback):
        """Records when each step ends; stops training once `budget` seconds have passed."""

        def __init__(self, budget: float) -> None:
            self.budget = budget

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())
            if self.ends[-1] - self.t0 >= self.budget:
                control.should_training_stop = True
            return control

    # transformers 5 dropped warmup_ratio: there a float below 1 in warmup_steps is the
    # share; before it, warmup_steps=0.06 was a step count (no warmup at all)
    fields = inspect.signature(TrainingArguments.__init__).parameters
    warmup = {"warmup_ratio": 0.06} if "warmup_ratio" in fields else {"warmup_steps": 0.06}

    def trainer(max_steps: int, clock: Clock) -> Trainer:
        torch.manual_seed(0)
        args = TrainingArguments(
            output_dir=str(work / "hf"),
            per_device_train_batch_size=32,
            learning_rate=5e-4,
            weight_decay=0.01,
            lr_scheduler_type="linear",
            **warmup,  # 6 % of max_steps
            max_steps=max_steps,
            logging_steps=10**9,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
            disable_tqdm=True,
        )
        model = BertForMaskedLM(config)
        return Trainer(
            model=model, args=args, train_dataset=train, data_collator=collator, callbacks=[clock]
        )

    calib = Clock(float("inf"))
    trainer(3 + 10, calib).train()  # 10 steps timed after 3 warm-up steps, to pick max_steps
    per_step = (calib.ends[-1] - calib.ends[2]) / 10
    max_steps = max(10, int(budget_s / per_step))
    t = trainer(max_steps, Clock(budget_s))
    t0 = time.perf_counter()
    out = t.train()
    seconds = time.perf_counter() - t0
    t.model.save_pretrained(str(work / "hf" / "model"))
    return {"model": str(work / "hf" / "model"), "steps": out.global_step, "seconds": seconds}


def read_lines(work: Path) -> list[str]:
    return (work / "train.txt").read_text(encoding="utf-8").splitlines()


# ---------------------------------------------------------------------------------------------


def prepare(work: Path, tokenizer: str | None, seed: int) -> list[str]:
    """Tokenizer and train/held-out split into `work`; returns the held-out documents."""
    docs = read_documents(CORPUS)
    if tokenizer:
        tok = load_tokenizer(tokenizer)
    else:
        cfg = TokenizerConfig(kind="wordpiece", vocab_size=8000, lowercase=True)
        tok = train_tokenizer(docs, cfg)
    save_tokenizer(tok, work / "tokenizer", model_max_length=512)
    train, held = split_documents(docs, 0.05, seed)
    (work / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    return held


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for each side")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokenizer", help="an existing tokenizer (default: train WordPiece 8k)")
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    ap.add_argument(
        "--downstream",
        type=float,
        metavar="F",
        help="also fine-tune disaster tweets for F minutes from the pretrained model vs scratch",
    )
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change encoderlab's side (e.g. --set model.position=alibi); repeatable",
    )
    ap.add_argument("--side", choices=["encoderlab", "hf"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side == "encoderlab":  # a child process: train one side, print its result as JSON
        where = (Path(args.work), args.minutes, args.threads, args.layers)
        print(json.dumps(run_encoderlab(*where, args.overrides)))
        return
    if args.side == "hf":
        print(json.dumps(run_hf(Path(args.work), args.minutes, args.threads, args.layers)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        held = prepare(work, args.tokenizer, seed=0)
        print(f"{args.minutes} min each, {args.threads} thread(s) each, {args.layers} layers")
        base = [sys.executable, __file__, "--work", str(work), "--minutes", str(args.minutes)]
        base += ["--threads", str(args.threads), "--layers", str(args.layers)]
        given = [arg for o in args.overrides for arg in ("--set", o)]
        if args.overrides:
            print(f"encoderlab's side with {' '.join(args.overrides)}")
        procs = {
            side: subprocess.Popen(
                [*base, "--side", side, *(given if side == "encoderlab" else [])],
                stdout=subprocess.PIPE,
                text=True,
            )
            for side in ("encoderlab", "hf")
        }
        res = {}
        for side, p in procs.items():
            out, _ = p.communicate()
            if p.returncode != 0:
                sys.exit(f"{side} side failed (exit {p.returncode})")
            res[side] = json.loads(out.strip().splitlines()[-1])
        ratio = report(work, held, res, args.threads)
        if args.downstream:
            downstream(work, res["encoderlab"]["run"], args.minutes, args.downstream, args.threads)
        print(f"ratio {ratio:.2f}x")


def tweets_config(work: Path, init: str, minutes: float, threads: int) -> Any:
    from encoderlab.config import FinetuneConfig

    return FinetuneConfig.model_validate(
        {
            "name": "tweets",
            "runs_dir": str(work / "runs"),
            "init": init,
            "task": {
                "type": "classification",
                "train": str(TWEETS),
                "text_column": "text",
                "label_column": "target",
                "valid_ratio": 0.1,
                "max_len": 64,
            },
            "head": {"type": "cls"},
            "train": {
                # both arms at the rate the disaster_tweets study measured best for this
                # d256 x 4 pre-LN shape whatever its init (scratch 78.5 % at 2e-4 vs 77.1 at
                # 1e-3; a pretrained one overfits after its first epoch at 1e-3)
                "lr": 2e-4,
                "batch_size": 32,
                "epochs": None,
                "time_budget_min": minutes,
                "threads": 2 * threads,
                "device": "cpu",
                "log_every": 50,
            },
        }
    )


def downstream(work: Path, run_dir: str, minutes: float, fine: float, threads: int) -> None:
    """Disaster tweets: F minutes of fine-tuning after the M of pretraining, vs scratch (same
    shape and tokenizer) for the same core-minutes: F + M / 2 (the pretraining had half the
    threads the fine-tuning runs get)."""
    from encoderlab.finetuning import finetune

    if not TWEETS.exists():
        print(f"downstream: skipped, {TWEETS} not found (../shared/data beside the repository)")
        return
    for label, init, budget in (
        ("pretrained", run_dir, fine),
        ("scratch", f"scratch:{run_dir}", fine + minutes / 2),
    ):
        run, result = finetune(tweets_config(work, init, budget, threads), say=lambda _m: None)
        assert result.best.get("metric") == "valid/acc", result.best
        print(
            f"downstream {label:10s} {budget:5.1f} min fine-tuning ({result.step} steps): "
            f"disaster tweets valid accuracy {result.last_eval.get('valid/acc', float('nan')):.3f}"
            f" at the end, best {result.best.get('value', float('nan')):.3f} (run {run.path.name})"
        )


def report(work: Path, held: list[str], res: dict, threads: int) -> float:
    from safetensors.torch import load_model
    from transformers import BertForMaskedLM

    from encoderlab.runs import Run, run_checkpoint, run_model_config

    torch.set_num_threads(2 * threads)
    stream = masked_stream(load_tokenizer(work / "tokenizer"), held, 0.15, seed=0)
    run = Run.open(res["encoderlab"]["run"])
    ours = MaskedLM(run_model_config(run))
    load_model(ours, str(run_checkpoint(run) / "model.safetensors"))
    block = load_config(run.path / "config.yaml").data.block_len
    acc_ours, n = accuracy(encoderlab_logits(ours), stream, block)
    hf = BertForMaskedLM.from_pretrained(res["hf"]["model"])
    acc_hf, _ = accuracy(encoderlab_logits(hf), stream, HF_BLOCK)
    for side, acc, blk in (("encoderlab budget", acc_ours, block), ("HF Trainer", acc_hf, 128)):
        r = res["encoderlab" if side.startswith("enc") else "hf"]
        print(
            f"{side:18s} {r['steps']:6d} steps in {r['seconds'] / 60:5.1f} min, eval blocks "
            f"{blk:3d}: masked-token accuracy {acc:.3f}"
        )
    print(f"held-out masked tokens: {n:,}")
    return acc_ours / max(acc_hf, 1e-9)


if __name__ == "__main__":
    main()
