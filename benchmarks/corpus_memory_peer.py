"""The peer side of corpus_memory.py: the Hugging Face way to pretrain on a corpus.

Run by corpus_memory.py as a child process (its memory is sampled from outside), in the two
steps of transformers' examples/pytorch/language-modeling/run_mlm.py:

    prepare  datasets.load_dataset ("text" for the .txt files, "json" for the .jsonl.zst one),
             .map(tokenize, batched, num_proc=WORKERS) with the same tokenizers.Tokenizer
             ([CLS] ... [SEP] per line, as run_mlm's tokenizer call gives them), then run_mlm's
             group_texts into BLOCK-token blocks (num_proc=WORKERS), saved with save_to_disk
    pretrain load_from_disk, BertForMaskedLM of the same shape as the encoderlab side, the
             Trainer with DataCollatorForLanguageModeling (15 %), batch 32, STEPS steps,
             WORKERS DataLoader workers, no evaluation, no checkpoint
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def prepare(files: list[Path], tokenizer: Path, out: Path, block: int, workers: int) -> None:
    import datasets
    from tokenizers import Tokenizer

    datasets.disable_progress_bars()
    tok = Tokenizer.from_file(str(tokenizer / "tokenizer.json"))
    cache = tempfile.mkdtemp(prefix="hf-cache-", dir=out.parent)
    parts = []
    txt = [str(f) for f in files if f.suffix == ".txt"]
    other = [str(f) for f in files if f.suffix != ".txt"]
    if txt:
        parts.append(datasets.load_dataset("text", data_files=txt, split="train", cache_dir=cache))
    if other:
        parts.append(
            datasets.load_dataset("json", data_files=other, split="train", cache_dir=cache)
        )
    ds = datasets.concatenate_datasets(parts)

    def tokenize(batch: dict) -> dict:
        return {"input_ids": [e.ids for e in tok.encode_batch(batch["text"])]}

    ds = ds.map(tokenize, batched=True, num_proc=workers, remove_columns=ds.column_names)

    def group_texts(batch: dict) -> dict:  # run_mlm.py's, for the one column
        ids = [t for row in batch["input_ids"] for t in row]
        n = len(ids) // block * block
        return {"input_ids": [ids[i : i + block] for i in range(0, n, block)]}

    ds = ds.map(group_texts, batched=True, num_proc=workers)
    ds.save_to_disk(str(out))
    print(len(ds))


def pretrain(data: Path, tokenizer: Path, out: Path, args: argparse.Namespace) -> None:
    import datasets
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        PreTrainedTokenizerFast,
        Trainer,
        TrainingArguments,
    )

    ds = datasets.load_from_disk(str(data))
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer / "tokenizer.json"),
        pad_token="[PAD]",
        mask_token="[MASK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        unk_token="[UNK]",
    )
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=args.d_model,
        num_attention_heads=args.n_head,
        intermediate_size=args.d_ff,
        num_hidden_layers=args.n_layer,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    training = TrainingArguments(
        output_dir=str(out),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        dataloader_num_workers=args.workers,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=max(args.steps, 1),
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    Trainer(
        model=BertForMaskedLM(config),
        args=training,
        train_dataset=ds,
        data_collator=collator,
    ).train()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["prepare", "pretrain"])
    ap.add_argument("--files", nargs="*", type=Path, default=[])
    ap.add_argument("--tokenizer", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="the prepared dataset's folder")
    ap.add_argument("--out", type=Path, default=None, help="the Trainer's output folder")
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-head", type=int, default=2)
    ap.add_argument("--d-ff", type=int, default=512)
    ap.add_argument("--n-layer", type=int, default=2)
    args = ap.parse_args()
    if args.step == "prepare":
        prepare(args.files, args.tokenizer, args.data, args.block, args.workers)
    else:
        pretrain(args.data, args.tokenizer, args.out or args.data.parent / "hf-trainer", args)


if __name__ == "__main__":
    main()
