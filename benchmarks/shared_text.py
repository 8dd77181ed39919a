"""Real text from ../shared/data, repeated to any size, for the corpus benchmarks.

English (WikiText-2 valid + test) and Korean (NSMC reviews, KorQuAD contexts) lines, stripped,
blank lines dropped, so that every tool sees exactly the same documents.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def base_lines() -> list[str]:
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED}: not found; these benchmarks use the shared data sets")
    lines: list[str] = []
    for name in ("valid.txt", "test.txt"):
        text = (SHARED / "wikitext-2" / name).read_text(encoding="utf-8")
        lines += [s.strip() for s in text.splitlines() if s.strip()]
    with open(SHARED / "nsmc" / "ratings_test.txt", encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        lines += [r["document"].strip() for r in rows if (r["document"] or "").strip()]
    squad = json.loads((SHARED / "korquad_v1" / "KorQuAD_v1.0_dev.json").read_text("utf-8"))
    for article in squad["data"]:
        for para in article["paragraphs"]:
            lines += [s.strip() for s in para["context"].splitlines() if s.strip()]
    return lines


def write_corpus(path: Path, megabytes: float) -> Path:
    """A text file of at least `megabytes` MB: the base lines repeated (cached by size)."""
    target = int(megabytes * 2**20)
    if path.is_file() and path.stat().st_size >= target:
        return path
    block = ("\n".join(base_lines()) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        written = 0
        while written < target:
            f.write(block)
            written += len(block)
    tmp.rename(path)
    return path
