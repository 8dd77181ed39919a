"""Deterministic synthetic sequence tasks: small data sets a tiny Transformer can solve to
~100 %, for checking that a training setup works at all.

- `sorted`: is the sequence of digits in non-decreasing order? Negatives are random
  sequences, or (a `hard` share) a sorted sequence with one adjacent pair swapped.
- `repeat`: does any token occur twice? Negatives are all-distinct; a `hard` share of the
  positives repeat just one token.

Files: train.csv and valid.csv (id,text,label) with space-separated tokens (`d3 d1 ...`), so
any tokenizer keeps each token whole.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path


def _tok(i: int) -> str:
    return f"d{i}"


def _sorted_example(rng: random.Random, label: int, length: int, vocab: int, hard: float):
    seq = sorted(rng.randrange(vocab) for _ in range(length))
    if label == 1:
        return seq
    if rng.random() < hard:
        spots = [i for i in range(length - 1) if seq[i] != seq[i + 1]]
        if spots:
            i = rng.choice(spots)
            seq[i], seq[i + 1] = seq[i + 1], seq[i]
            return seq
    while True:
        seq = [rng.randrange(vocab) for _ in range(length)]
        if seq != sorted(seq):
            return seq


def _repeat_example(rng: random.Random, label: int, length: int, vocab: int, hard: float):
    if vocab < length + 1:
        raise ValueError("repeat needs vocab > length")
    seq = rng.sample(range(vocab), length)
    if label == 0:
        return seq
    i, j = rng.sample(range(length), 2)
    seq[j] = seq[i]
    if rng.random() >= hard:  # an easier positive: more repeats
        k = rng.randrange(length)
        seq[k] = seq[i]
    return seq


def examples(
    kind: str, n: int, length: int = 8, vocab: int = 10, hard: float = 0.5, seed: int = 0
) -> list[dict[str, str]]:
    """n balanced examples: {id, text, label} with label 'yes'/'no'."""
    make = {"sorted": _sorted_example, "repeat": _repeat_example}[kind]
    rng = random.Random(f"{kind}-{seed}-{length}-{vocab}-{hard}")
    rows = []
    for i in range(n):
        label = i % 2
        seq = make(rng, label, length, vocab, hard)
        rows.append(
            {
                "id": f"{kind}-{seed}-{i}",
                "text": " ".join(_tok(t) for t in seq),
                "label": "yes" if label else "no",
            }
        )
    rng.shuffle(rows)
    return rows


def _csv_text(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["id", "text", "label"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_dataset(
    out_dir: str | Path,
    kind: str = "sorted",
    n_train: int = 2000,
    n_valid: int = 500,
    length: int = 8,
    vocab: int = 10,
    hard: float = 0.5,
    seed: int = 0,
) -> list[Path]:
    """Write out_dir/train.csv and out_dir/valid.csv (unchanged files are not rewritten)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split, n, s in (("train", n_train, seed), ("valid", n_valid, seed + 1_000_003)):
        text = _csv_text(examples(kind, n, length, vocab, hard, s))
        path = out / f"{split}.csv"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
