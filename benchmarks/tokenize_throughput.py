"""Tokenization throughput: encoderlab's sharded prepare vs `datasets.Dataset.map`.

Not a test; run it by hand (a few minutes on 2 cores):

    python benchmarks/tokenize_throughput.py --mb 200 --workers 2

Same text (real English + Korean lines from ../shared/data, repeated to --mb MB, one document
per line), same tokenizer (a WordPiece 16k trained here on the base text, or --tokenizer),
same number of processes, both without special tokens:

  peer        datasets.Dataset.from_text (timed separately: "load"), then
              .map(batched=True, batch_size=1000, num_proc=--workers) calling the same
              tokenizers.Tokenizer's encode_batch: the usual Hugging Face recipe.
  encoderlab  prepare_shards: read the text file, tokenize in --workers processes, write
              memmap shards + manifest (end to end, nothing excluded).

The ratio printed is encoderlab tokens/s over the peer's (load + map); the peer's map alone is
printed too. The target in issue 7 is >= 1.0 with 2 workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from shared_text import base_lines, write_corpus  # noqa: E402

from encoderlab.config import DataConfig, TokenizerConfig  # noqa: E402
from encoderlab.data.shards import ShardStore, prepare_shards  # noqa: E402
from encoderlab.tokenizer import load_tokenizer, train_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=float, default=200, help="corpus size in MB")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tokenizer", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "encoderlab-bench")
    args = ap.parse_args()

    import datasets

    datasets.disable_progress_bars()

    work = args.work
    corpus = write_corpus(work / f"corpus-{args.mb:g}mb.txt", args.mb)
    size_mb = corpus.stat().st_size / 2**20
    if args.tokenizer:
        tok = load_tokenizer(args.tokenizer)
    else:
        tok = train_tokenizer(
            iter(base_lines()), TokenizerConfig(kind="wordpiece", vocab_size=16000)
        )
    print(
        f"corpus {corpus} ({size_mb:,.0f} MB), tokenizer vocab {tok.get_vocab_size():,}, "
        f"{args.workers} workers, {os.cpu_count()} cores"
    )

    # read once, so both sides find the text in the page cache (the peer goes first)
    with open(corpus, "rb") as f:
        while f.read(1 << 24):
            pass

    # -- peer: datasets --
    hf_cache = Path(tempfile.mkdtemp(prefix="hf-", dir=work))
    t0 = time.perf_counter()
    ds = datasets.Dataset.from_text(str(corpus), cache_dir=str(hf_cache), keep_in_memory=False)
    t_load = time.perf_counter() - t0

    def encode(batch):
        encs = tok.encode_batch(batch["text"], add_special_tokens=False)
        return {"input_ids": [e.ids for e in encs]}

    t0 = time.perf_counter()
    out = ds.map(
        encode,
        batched=True,
        batch_size=1000,
        num_proc=args.workers,
        remove_columns=["text"],
        load_from_cache_file=False,
    )
    t_map = time.perf_counter() - t0
    n_docs_peer = len(out)
    n_tok_peer = sum(len(x) for x in out.with_format("numpy")["input_ids"])
    del out, ds
    shutil.rmtree(hf_cache, ignore_errors=True)

    # -- encoderlab --
    cache = Path(tempfile.mkdtemp(prefix="shards-", dir=work))
    data = DataConfig(corpus=[str(corpus)], cache_dir=str(cache))  # the default pieces
    t0 = time.perf_counter()
    root = prepare_shards(data, tok, log=lambda m: None, workers=args.workers)
    t_ours = time.perf_counter() - t0
    store = ShardStore(root)
    n_docs_ours, n_tok_ours = store.n_docs, store.n_tokens - store.n_docs  # minus [SEP]s
    shutil.rmtree(cache, ignore_errors=True)

    if (n_docs_ours, n_tok_ours) != (n_docs_peer, n_tok_peer):
        print(
            f"WARNING: different output: encoderlab {n_docs_ours:,} docs / {n_tok_ours:,} "
            f"tokens vs datasets {n_docs_peer:,} / {n_tok_peer:,}"
        )
    peer = n_tok_peer / (t_load + t_map)
    ours = n_tok_ours / t_ours
    print(
        f"datasets   load {t_load:6.1f}s  map {t_map:6.1f}s  {n_tok_peer:,} tokens  "
        f"{peer:,.0f} tok/s end to end ({n_tok_peer / t_map:,.0f} map only)"
    )
    print(
        f"encoderlab prepare {t_ours:6.1f}s  {n_tok_ours:,} tokens  {ours:,.0f} tok/s "
        f"({size_mb / t_ours:.1f} MB/s)"
    )
    print(
        f"encoderlab / datasets: {ours / peer:.2f}x end to end, "
        f"{ours / (n_tok_peer / t_map):.2f}x vs map alone (target >= 1.0)"
    )
    print(f"ratio {ours / peer:.2f}x")  # the benchmarks' last line: end to end


if __name__ == "__main__":
    main()
