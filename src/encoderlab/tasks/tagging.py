"""Token tagging (NER): one tag per word, predicted from the word's first sub-token.

Examples are sentences: {"id", "line", "file", "tokens": [word, ...], "tags": [tag, ...] or
None}. Whatever the file format, tags come out as BIO (B-TYPE / I-TYPE / O), so one model,
one decoder and one metric serve every corpus.

Formats (task.format; "auto" looks at the file's first lines):

* ``conll``: whitespace-separated columns (tab-separated when the first token line has a
  tab), token first, tag in column task.tag_column (default: last); a blank line ends a
  sentence; ``-DOCSTART-`` lines are skipped. A file with a single column is unlabelled.
* ``klue-ner``: KLUE NER TSV: ``## id<TAB>marked sentence`` then one ``CHAR<TAB>TAG`` row
  per character (spaces included), character-level BIO.
* ``lines``: plain sentences, one per line, words split at whitespace (and a word's edge
  punctuation apart, but for runs of KLUE-NER / KMOU markup), no tags (an input for
  ``predict``). A file that has no tags and is plainly not laid out in the run's format (conll:
  lines of different numbers of words, or one line; klue-ner: no '##' line or tab and lines
  longer than a character; kmou: no sentence headers) is read this way too, with a warning:
  predict needs no tags.
* ``rows``: one sentence per row of a .jsonl / .json / .parquet file, a Hugging Face
  ``save_to_disk`` folder or ``hf:<name>`` (datasets' token-classification shape: a list of
  words in ``tokens`` or ``words`` and a list of tags in ``tags``, ``ner_tags``, ``labels``
  or ``ner``, or the columns task.text_column / task.label_column name). Tags are strings,
  or ids that a datasets ClassLabel names (ids without names are refused).
* ``kmou``: the KMOU corpus, in either of its bracket-annotated forms: 2016klp
  (``; raw sentence``, ``$<marked:PS> sentence``, morpheme rows) or corpus/*.txt
  (``## id``, ``## raw``, ``## <marked:PER> sentence``, morpheme rows). The ``<text:TYPE>``
  markup is read, not the morpheme rows: 2016klp's morphemes are lemmas (했 -> 하 았), so
  they are not the surface text a tokenizer sees. KMOU's other release format
  (2016klp/original/: morpheme rows with ``B_PS`` / ``I`` tags and no surface text) is not
  supported; read 2016klp/ner.* instead.

Korean (klue-ner, kmou) becomes word-level: the sentence is split at whitespace (eojeol),
and a word's tag is that of its first character inside an entity, so ``'<토즈:OG>'는`` is
B-OG although it starts with a quote and ends with a particle. A word whose first entity
character continues the previous word's entity (same type) is I-TYPE, otherwise B-TYPE. An
entity that shares a word with an earlier one (``김모(<33:QT>)씨`` after ``<김:PS>``) cannot
be a separate word-level entity; those are counted in `warnings`. Scores on these corpora are
therefore word-level entity F1, not KLUE's official character-level F1.

Tag schemes (conll only; the Korean readers produce BIO). An *entity start* is a B-X or I-X
whose previous tag in the sentence is not of type X. IOB1 (CoNLL-2003's original release)
starts entities with I- and uses B- only between two adjacent entities of one type; BIO starts
every entity with B-. task.tag_scheme "auto" calls a file IOB1 when more entity starts are I-
than B-, else BIO. The conversion is the same either way: an I-X entity start becomes B-X,
which is how conlleval reads it. What differs is the report: in a BIO file I- starts are
annotation errors and in an IOB1 file B- starts after O are, and the minority is counted in
`warnings`, never silently. An explicit tag_scheme that the majority contradicts is a
UserError (the config is wrong, not the file).

A directory path reads every non-hidden file in it (sorted; ids become ``<file stem>/<id>``),
which is how KMOU's corpus/ (1,427 files) is one data set.

read() and encode() return human-readable lines on their results: ``warnings`` (problems:
skipped blocks, repaired tags, dropped entities, truncated words), one line per kind of
problem with its count and first file:line, and (read) ``notes`` (facts worth a log line: the
detected scheme); the fine-tuning loop prints both.

Metrics are entity-level micro precision/recall/F1 with seqeval's default (conlleval) chunk
rules, checked equal to seqeval 1.2.2 on random tag sequences; per-type scores also list
types that were only predicted (support 0). f1_strict is seqeval's strict IOB2 mode (an I-
that starts nothing is no entity); `task.metric: f1_strict` makes it pick the checkpoint.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import HeadConfig, TaskConfig
from encoderlab.data.tables import plain_name, read_bytes, refuse_bare_cr
from encoderlab.errors import UserError
from encoderlab.heads import TokenHead
from encoderlab.tasks.base import (
    MIN_ROWS_TO_JUDGE,
    Example,
    Examples,
    Feature,
    Features,
    TaskBase,
    base_collate,
    counts_to_metrics,
    pad_stack,
    token_counts,
)
from encoderlab.tasks.records import (
    PARQUET_SUFFIXES,
    is_dataset_source,
    read_records,
    refuse_data_files,
)
from encoderlab.tasks.registry import register
from encoderlab.tokenizer import special_ids

IGNORE = -100
FORMATS = ("conll", "conllu", "klue-ner", "kmou", "lines", "rows")
ENTITY_FORMATS = ("klue-ner", "kmou")  # their markup is entities: no plain tags to read
ROW_FORMATS = ("jsonl", "json", "parquet", "hf")  # task.format values read as `rows`
ROW_SUFFIXES = (".jsonl", ".json", *PARQUET_SUFFIXES)
_NOT_LINES = (".parquet", ".pq", ".arrow", ".jsonl", ".xlsx", ".xlsm")  # in a folder of files
WORD_COLUMNS = ("tokens", "words")  # where a row keeps its words, unless task.text_column says
TAG_COLUMNS = ("tags", "ner_tags", "labels", "ner")
PLAIN_TAG_COLUMNS = ("pos_tags", "upos", "tags", "labels", "xpos")  # task.type pos's rows
_ALIASES = {"klue": "klue-ner", "klue_ner": "klue-ner", "kmou-ner": "kmou", "kmou_ner": "kmou"}
_TAG = re.compile(r"^[BI]-\S+$")
# what a tag column holds in any scheme (BIO, BIOES, BILOU, KMOU's B_PS): not a plain word
_TAG_LIKE = re.compile(r"^(O|I|[BIESLU][-_]\S+)$")
# <entity text:TYPE>; the text holds no angle brackets, so a literal "<" elsewhere is kept
_MARKUP = re.compile(r"<([^<>]+):([A-Z]+)>")


# ---------------------------------------------------------------------------------------------
# Entities and scores (seqeval default mode = conlleval)


def _split_tag(tag: str) -> tuple[str, str]:
    if tag == "O" or len(tag) < 3:
        return "O", ""
    return tag[0], tag[2:]


def entity_tags(labels: list[str]) -> bool:
    """Whether a tag set is entity chunks (BIO), not plain per-word tags (pos)."""
    return any(_TAG.match(tag) for tag in labels)


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end-exclusive) chunks by conlleval's rules, as seqeval's default mode.

    An entity ends at O, at a B-, or where the type changes; it starts at a B-, or at an
    I- that does not continue an entity of its type (so I-X after O starts one).
    """
    chunks: list[tuple[str, int, int]] = []
    start, typ = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, ty = _split_tag(tag)
        if start >= 0 and (prefix in ("B", "O") or ty != typ):
            chunks.append((typ, start, i))
            start = -1
        if prefix == "B" or (prefix == "I" and start < 0):
            start, typ = i, ty
    return chunks


# a word's leading and trailing punctuation, peeled off as words of their own ("(EU)" ->
# "(", "EU", ")"; "France." -> "France", "."), as CoNLL-style data is tokenised; inner
# punctuation stays ("don't", "U.S.", "e-mail": a dot after an inner dot is the word's own)


def _is_punct(c: str) -> bool:
    """Punctuation or a symbol (regex [^\\w\\s]), not an invisible format character: one
    between a word and its punctuation stays on the word."""
    return not (c.isalnum() or c == "_" or c.isspace() or _invisible(c))


def _invisible(c: str) -> bool:
    """A format character: a BOM, a zero-width space, a right-to-left mark."""
    return unicodedata.category(c) == "Cf"


# abbreviations written with one dot and no other, kept whole ("Mr. Smith", "Apple Inc."):
# CoNLL-2003 and the Penn Treebank have "Mr." as one token, which a model trained on them tags
TITLES = frozenset(
    "Mr Mrs Ms Dr Prof Sr Jr St Mt Ft Gen Gov Sen Rep Col Lt Capt Sgt Rev Hon Pres "
    "Inc Ltd Co Corp Bros vs etc Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec".split()
)


def split_words(text: str) -> list[str]:
    """Words of raw text to tag: whitespace-split, punctuation at a word's edges apart.
    Invisible format characters at a word's edges (a BOM, a right-to-left mark) are stepped
    over and stay on the first or last word (peeled off, each was an entity of its own, a
    text no one can see). Linear in the word's length: by index, so a word of 10,000
    alternating marks ("!?!?...", a request to serve) is not peeled one slice and one regex
    scan at a time."""
    words: list[str] = []
    for whole in text.split():
        start, end = 0, len(whole)  # the word within its edge format characters
        while start < end and _invisible(whole[start]):
            start += 1
        while end > start and _invisible(whole[end - 1]):
            end -= 1
        if start == end:  # nothing but format characters: one word, as the text has it
            words.append(whole)
            continue
        first = len(words)
        _peel(whole[start:end], words)
        words[first] = whole[:start] + words[first]
        words[-1] += whole[end:]
    return words


def _peel(chunk: str, words: list[str]) -> None:
    """`chunk`'s words onto `words`: its edge punctuation apart (split_words)."""
    start, end = 0, len(chunk)
    head: list[str] = []
    while end - start > 1 and _is_punct(chunk[start]):
        j = start
        while j < end and chunk[j] == chunk[start]:  # "((" or "..." is one word
            j += 1
        head.append(chunk[start:j])
        start = j
    tail: list[str] = []
    inner_dot = None  # built once, when a dot is first peeled
    while end - start > 1 and _is_punct(chunk[end - 1]):
        if chunk[end - 1] == ".":
            inner_dot = inner_dot or _inner_dots(chunk)
            if inner_dot(start, end - 1):
                break  # an abbreviation's dot
            if chunk[start : end - 1] in TITLES:
                break  # "Mr." is one word, as CoNLL and the Penn Treebank write it
        j = end
        while j > start and chunk[j - 1] == chunk[end - 1]:
            j -= 1
        if j == start:
            break
        tail.append(chunk[j:end])
        end = j
    words.extend(w for w in [*head, chunk[start:end], *reversed(tail)] if w)


def _inner_dots(chunk: str) -> Callable[[int, int], bool]:
    """Whether chunk[s:e] holds a dot once the dots at both its ends are stripped, in O(1)
    per question (what `"." in chunk[s:e].strip(".")` says, in O(e - s))."""
    n = len(chunk)
    dots = [0] * (n + 1)  # dots before each index
    for i, c in enumerate(chunk):
        dots[i + 1] = dots[i] + (c == ".")
    after = [n] * (n + 1)  # the first index from i on that is no dot
    for i in range(n - 1, -1, -1):
        after[i] = i if chunk[i] != "." else after[i + 1]
    before = [-1] * n  # the last index up to i that is no dot
    for i in range(n):
        before[i] = i if chunk[i] != "." else (before[i - 1] if i else -1)

    def inner(s: int, e: int) -> bool:
        if e <= s:
            return False
        first, last = after[s], before[e - 1]
        return first < last and dots[last] - dots[first + 1] > 0

    return inner


def keeps_punctuation(examples: list[Example]) -> bool:
    """Whether training words carry their edge punctuation, as eojeol do (KLUE-DP's "흘렸다.":
    13 % of its words), rather than have it apart (CoNLL-2003: 1.7 %, "'s" and the like), so
    raw text to tag is split the way the run learned words."""
    words = [w for ex in examples[:2000] for w in ex["tokens"]]
    peeled = sum(1 for w in words if len(w) > 1 and split_words(w) != [w])
    return bool(words) and peeled / len(words) >= 0.05


def word_spans(text: str, words: list[str]) -> list[tuple[int, int]]:
    """(start, end) characters of each word in `text`, the text they were split from at
    whitespace (`words == text.split()`), so an entity can be given as a slice of what the
    client sent (its words joined by a space are not, after a tab or two spaces)."""
    spans, pos = [], 0
    for w in words:
        # only whitespace lies between pos and the next word, which holds none: its first match
        start = text.find(w, pos)
        spans.append((start, start + len(w)))
        pos = start + len(w)
    return spans


def strict_entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, start, end-exclusive) chunks by seqeval's strict IOB2 mode: an entity is a B-X
    and the I-X that follow it; an I- that does not continue one is no entity at all."""
    chunks: list[tuple[str, int, int]] = []
    start, typ = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, ty = _split_tag(tag)
        if start >= 0 and not (prefix == "I" and ty == typ):
            chunks.append((typ, start, i))
            start = -1
        if prefix == "B":
            start, typ = i, ty
    return chunks


def _prf(correct: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = correct / n_pred if n_pred else 0.0
    r = correct / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def entity_scores(
    gold: list[list[str]], pred: list[list[str]], strict: bool = False
) -> dict[str, Any]:
    """Micro precision/recall/F1 over exact (type, span) matches, plus per-type scores;
    `strict`: entities by seqeval's strict IOB2 mode (mode="strict", scheme=IOB2)."""
    chunk = strict_entities if strict else entities
    counts: dict[str, list[int]] = {}  # type -> [correct, pred, gold]
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(chunk(g)), set(chunk(p))
        for t, *_ in gs:
            counts.setdefault(t, [0, 0, 0])[2] += 1
        for t, *_ in ps:
            counts.setdefault(t, [0, 0, 0])[1] += 1
        for t, *_ in gs & ps:
            counts[t][0] += 1
    total = [sum(c[k] for c in counts.values()) for k in range(3)]
    p, r, f = _prf(*total)
    per_type = {}
    for t in sorted(counts):
        tp, tr, tf = _prf(*counts[t])
        per_type[t] = {"precision": tp, "recall": tr, "f1": tf, "support": counts[t][2]}
    return {
        "precision": p,
        "recall": r,
        "f1": f,
        "correct": total[0],
        "predicted": total[1],
        "gold": total[2],
        "per_type": per_type,
    }


# ---------------------------------------------------------------------------------------------
# Reading


def _lines(path: Path) -> list[str]:
    """The file's lines without line ends; a BOM is dropped (one KMOU file has one)."""
    try:
        text = read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#x} at offset {e.start}); "
            "convert it to UTF-8"
        ) from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise UserError(
            f"{path}:{line}: NUL bytes: a binary file, not text (an archive, a spreadsheet?); "
            "give the text file itself"
        )
    # split on "\n" only: str.splitlines would also split at characters like U+2028 or \x85,
    # which a character-level file (KLUE) may hold as a token
    refuse_bare_cr(path, text.partition("\n")[0] + ("\n" if "\n" in text else ""))
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _blocks(lines: list[str], exact: bool = False) -> list[tuple[int, list[str]]]:
    """Blank-line-separated blocks as (1-based line of the first line, lines).

    exact: only an empty line separates (in KLUE's unlabelled form a space character's row
    is " ", which is not a separator).
    """
    out: list[tuple[int, list[str]]] = []
    cur: list[str] = []
    start = 0
    for n, line in enumerate(lines, 1):
        if (line == "") if exact else (line.strip() == ""):
            if cur:
                out.append((start, cur))
                cur = []
            continue
        if not cur:
            start = n
        cur.append(line)
    if cur:
        out.append((start, cur))
    return out


def detect_format(lines: list[str]) -> str:
    """klue-ner / kmou / conll from the first lines of a file."""
    head = [ln for ln in lines[:200] if ln.strip()]
    if not head:
        return "conll"
    if head[0].startswith("; ") and len(head) > 1 and head[1].startswith("$"):
        return "kmou"
    if head[0].startswith("##"):
        for ln in head:
            if not ln.startswith("##"):
                return "kmou" if len(ln.split("\t")) >= 3 else "klue-ner"
    return "conll"


def _check_tag(tag: str, where: str, columns: bool = False) -> None:
    """UserError for a tag that is not BIO; `columns`: it is a CoNLL column, which may be the
    last word of a plain sentence (a file of one sentence per line)."""
    if tag == "O" or _TAG.match(tag):
        return
    hint = ""
    if tag[:2] in ("E-", "S-", "L-", "U-"):
        hint = " (BIOES/BILOU tags: convert them to BIO first)"
    elif tag.startswith(("B_", "I_")) or tag == "I":
        hint = " (KMOU's 2016klp/original format: read 2016klp/ner.* with task.format=kmou)"
    elif columns:
        hint = " (plain sentences, one per line, without tags: task.format=lines)"
    raise UserError(
        f"{where}: tag '{tag}' is not O, B-TYPE or I-TYPE{hint}; fix the tag, or set "
        "task.tag_column if the tags are in another column (part-of-speech and other plain "
        "tags: task.type pos)"
    )


def _check_plain_tag(tag: str, where: str) -> None:
    """A plain tag (pos) is one non-empty word: '_' is CoNLL-U's "no tag" (and what a word cut
    by max_len is predicted), and a space would split it in prediction rows."""
    if not tag or tag == "_" or any(c.isspace() for c in tag):
        raise UserError(
            f"{where}: tag {tag!r} is not a tag (empty, '_' or with a space); give each word one "
            "tag, or set task.tag_column to the column that holds them"
        )


def _units_to_words(
    units: list[tuple[str, str]],
) -> tuple[list[str], list[str], int]:
    """Character units (char, char-level BIO tag) -> (words, word tags, entities dropped).

    Words are the runs between whitespace characters. A word's tag is the tag of its first
    character inside an entity (see the module docstring). Entities lost on the way (a later
    entity in a word that already has one) are counted: character-level entities minus
    word-level ones. A lost entity's later words are O: `<슈퍼 마리오:PS>(<밥 호킨스:PS>)` is
    one PS entity of two words, not three (until 2026-12-03 호킨스 continued it).
    """
    words: list[str] = []
    tags: list[str] = []
    chars: list[str] = []
    cents: list[tuple[int, bool, str]] = []  # per character: (entity id, starts it, type)
    carried = -1  # the entity the last word's tag stands for (-1: none)

    def flush() -> None:
        nonlocal carried
        if not chars:
            return
        tag, tagged = "O", -1
        for k, (ent, starts, ty) in enumerate(cents):
            if ent < 0:
                continue
            if k == 0 and not starts and ent == carried:
                tag, tagged = "I-" + ty, ent  # the previous word's entity goes on
                break
            if starts:
                tag, tagged = "B-" + ty, ent
                break
            # the rest of an entity that a word before could not carry (one word, one
            # entity): dropped with its start, not a fragment nor joined to another entity
        words.append("".join(chars))
        tags.append(tag)
        carried = tagged
        chars.clear()
        cents.clear()

    ent, prev_type = -1, ""
    for ch, t in units:
        prefix, ty = _split_tag(t)
        starts = prefix == "B" or (prefix == "I" and ty != prev_type)
        ent += starts
        prev_type = "" if prefix == "O" else ty
        if ch.isspace():
            flush()
        else:
            chars.append(ch)
            cents.append((ent if prefix != "O" else -1, starts, ty))
    flush()
    dropped = len(entities([t for _, t in units])) - len(entities(tags))
    return words, tags, max(0, dropped)


def _markup_units(marked: str) -> list[tuple[str, str]]:
    """``text <entity:TYPE> text`` -> per-character (char, BIO tag)."""
    units: list[tuple[str, str]] = []
    pos = 0
    for m in _MARKUP.finditer(marked):
        units.extend((c, "O") for c in marked[pos : m.start()])
        text, typ = m.group(1), m.group(2)
        units.extend((c, ("B-" if k == 0 else "I-") + typ) for k, c in enumerate(text))
        pos = m.end()
    units.extend((c, "O") for c in marked[pos:])
    return units


_MESSAGES = {
    "no_words": "skipped {n} rows with no words, an empty list (first at {first})",
    "dropped": "{n} entities share a word with an earlier entity and are dropped at word level "
    "(first at {first})",
    "char_i_start": "{n} character I- tags start an entity without a B- (first at {first}); "
    "read as entity starts",
    "kmou_skipped": "skipped {n} blocks without the '; ' + '$' or three '## ' header lines of the "
    "KMOU format (first at {first})",
    "kmou_mismatch": "in {n} sentences the <entity:TYPE> markup does not match the raw sentence "
    "(first at {first}); the marked text is used",
    "iob1_b_start": "{n} B- tags start an entity after a tag of another type (first at {first}); "
    "IOB1 uses B- only between adjacent entities of one type. Read as entity starts, as "
    "conlleval does",
    "bio_i_start": "{n} I- tags start an entity without a B- (first at {first}); read as B-, as "
    "conlleval does. Most entities start with B-, so the file is BIO with errors (set "
    "task.tag_scheme=iob1 if it is IOB1)",
    "iob1": "IOB1 tags ({n} entities start with I-, first at {first}); converted to BIO",
    # first: the layout the file lacks (_LAYOUTS)
    "lines": "no tags and no {first}: read as one sentence per line, words split at whitespace "
    "(task.format=lines)",
    "lines_apart": "no tags and no {first}: read as one sentence per line, words split at "
    "whitespace, punctuation apart (task.format=lines)",
}
_NOTES = {"iob1"}


class _Report:
    """Problems counted over one read() (every file of a directory): one line per kind."""

    def __init__(self) -> None:
        self.counts: dict[str, list[Any]] = {}  # kind -> [n, first place]
        self.formats: set[str] = set()  # what the files were read as
        self.notes: list[str] = []  # said as they are (the row reader's task.where count)
        self.warnings: list[str] = []  # likewise (rows that repeat an id)
        self.no_tags: str | None = None  # rows: why a sentence has no tags, for the error
        self.ignore_tags = False  # a file to predict: its tags are thrown away, not checked

    def add(self, kind: str, where: str, k: int = 1) -> None:
        if k > 0:
            self.counts.setdefault(kind, [0, where])[0] += k

    def lines(self, path: str) -> tuple[list[str], list[str]]:
        """(warnings, notes)."""
        warnings, notes = list(self.warnings), list(self.notes)
        for kind, (n, first) in self.counts.items():
            line = f"{path}: " + _MESSAGES[kind].format(n=n, first=first)
            (notes if kind in _NOTES else warnings).append(line)
        return warnings, notes


# files of a data set's folder that are about it, not in it (UD's README.md and LICENSE.txt)
_DOC_NAMES = ("readme", "license", "licence", "copying", "notice", "authors", "contributing")
_DOC_NAMES += ("changelog", "changes", "citation", "source")
_DOC_SUFFIXES = (".md", ".rst", ".html", ".pdf", ".xml", ".cff", ".yaml", ".yml", ".py", ".sh")
# a split's name in a file name: eng.train, en_ewt-ud-dev.conllu, wnut17train.conll, ner.test
_TRAIN_NAME = re.compile(r"(^|[^a-z])train(ing)?([^a-z]|$)")
_HELD_OUT_NAME = re.compile(
    r"(^|[^a-z])(dev|test[ab]?|testing|valid|validation|val|eval)([^a-z]|$)"
)


def _data_files(folder: Path, files: list[Path], report: _Report) -> list[Path]:
    """The files of a folder to read as one data set: without its documentation files, only
    its .conllu files where it has them (a UD treebank's .txt files are the same sentences as
    raw text), and refused when it holds a data set's train and held-out splits together (a
    UD or CoNLL-2003 folder), which would train on the test set."""
    docs = [
        f
        for f in files
        if f.name.lower().split(".")[0] in _DOC_NAMES or plain_name(f).endswith(_DOC_SUFFIXES)
    ]
    data = [f for f in files if f not in docs]
    conllu = [f for f in data if plain_name(f).endswith(".conllu")]
    left = [f for f in data if f not in conllu] if conllu else []
    data = conllu or data
    if not data:
        raise UserError(
            f"{folder}: holds no data file, only {', '.join(f.name for f in docs)}; point the "
            "task at the data files' folder or at a file"
        )
    train = [f for f in data if _TRAIN_NAME.search(plain_name(f))]
    held = [f for f in data if _HELD_OUT_NAME.search(plain_name(f))]
    if train and held:
        raise UserError(
            f"{folder}: holds a data set's train and held-out files ({train[0].name}, "
            f"{held[0].name}); reading the folder would train on both: point task.train at "
            f"{train[0]} and task.valid at {held[0]}"
        )
    skipped = [f.name for f in docs + left]
    if skipped:
        shown = ", ".join(skipped[:4]) + (
            f" and {len(skipped) - 4} more" if len(skipped) > 4 else ""
        )
        why = "not data" if not left else "the .conllu files are read; the rest are not data"
        report.notes.append(f"{folder}: left out {shown} ({why})")
    return data


class _Tally:
    """A count and where it first happened."""

    def __init__(self) -> None:
        self.n, self.first = 0, ""

    def add(self, where: str) -> None:
        self.n += 1
        self.first = self.first or where


Sentence = tuple[int, str, list[tuple[str, str]] | None, str | None]  # line, id, units, raw


def _word_examples(path: Path, sentences: list[Sentence], report: _Report) -> list[Example]:
    """(line, id, character units or None, raw text) -> word-level examples.

    Units None means the sentence has no annotation: its words are the raw text's.
    """
    examples = []
    for line, sid, units, raw in sentences:
        if units is None:
            words, tags = (raw or "").split(), None
        else:
            words, tags, lost = _units_to_words(units)
            report.add("dropped", f"{path}:{line}", lost)
        if words:
            examples.append(
                {"id": sid, "line": line, "file": str(path), "tokens": words, "tags": tags}
            )
    return examples


def _read_lines(
    path: Path, lines: list[str], split: Callable[[str], list[str]] = str.split
) -> list[Example]:
    """One unlabelled sentence per non-blank line, its words split by `split`."""
    examples: list[Example] = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            sid = str(len(examples))
            examples.append(
                {"id": sid, "line": n, "file": str(path), "tokens": split(line), "tags": None}
            )
    return examples


_LAYOUTS = {
    "conll": "CoNLL columns",
    "conllu": "CoNLL-U rows",
    "klue-ner": "KLUE NER rows",
    "kmou": "KMOU markup",
}


def _sentence_per_line(lines: list[str], fmt: str, cfg: TaskConfig) -> bool:
    """Whether a file to read as `fmt` is plain sentences, one per line, instead.

    conll: no line holds anything like a tag (in any scheme) in the tag column, and the
    lines' numbers of words differ (or there is one line). A CoNLL file has as many columns on
    every line, so a labelled file, one with a typo, or an unlabelled one with other columns
    (word POS) never passes. klue-ner: no '##' line, no tab, and a line longer than the one
    character a KLUE row holds. kmou: no '; ' or '## ' line (its sentence headers).
    """
    text = [ln for ln in lines if ln.strip()]
    if fmt == "conllu":  # CoNLL-U rows are tab-separated
        return bool(text) and not any("\t" in ln for ln in text)
    if fmt == "conll" and cfg.tag_scheme == "plain":
        # plain tags look like any word, so only the layout tells: sentences of a CoNLL file
        # are separated by blank lines; lines of text without one are sentences, one per line
        first = next(i for i, ln in enumerate(lines) if ln.strip()) if text else 0
        last = max((i for i, ln in enumerate(lines) if ln.strip()), default=0)
        return len(text) == 1 or not any(not ln.strip() for ln in lines[first:last])
    if fmt == "kmou":
        return bool(text) and not any(ln.startswith(("; ", "## ")) for ln in text)
    if fmt == "klue-ner":
        return not any(ln.startswith("##") or "\t" in ln for ln in text) and any(
            len(ln) > 1 for ln in text
        )
    rows = [ln.split() for ln in text if not ln.startswith("-DOCSTART-")]
    if fmt != "conll" or not rows or max(len(r) for r in rows) < 2:
        return False  # one word per line: CoNLL without tags
    wide = [r for r in rows if len(r) > 1]
    tagged = 0
    for r in wide:
        col = cfg.tag_column if cfg.tag_column >= 0 else len(r) + cfg.tag_column
        if not 0 < col < len(r):
            return False  # a tag_column the line lacks (the reader says so)
        tagged += bool(_TAG_LIKE.match(r[col]))
    if len(rows) == 1:
        return not tagged
    # a CoNLL file (with a typo: the reader names the line) has a tag on nearly every line; a
    # sentence that ends in "I" or "E-mail" is no reason to read a file of them as columns
    return 2 * tagged < len(wide) and len({len(r) for r in rows}) > 1


def _read_conll(path: Path, lines: list[str], cfg: TaskConfig, report: _Report) -> list[Example]:
    """CoNLL columns -> sentences; tags validated and converted to BIO."""
    sep: str | None = None  # "\t" or None (runs of spaces/tabs)
    n_cols, first_line = 0, 0
    sentences: list[tuple[int, list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    tag_col = 0
    docstarts: set[int] = set()  # sentences a -DOCSTART- line comes before (predictions keep it)

    def close() -> None:
        if words:
            sentences.append((start, list(words), list(tags)))
            words.clear()
            tags.clear()

    for n, line in enumerate(lines, 1):
        if not line.strip():
            close()
            continue
        if sep is None and n_cols == 0 and not line.startswith("-DOCSTART-"):
            # the separator of the first word line (a -DOCSTART- line may use another)
            sep = "\t" if "\t" in line.strip() else None
        cols = line.split("\t") if sep else re.split(r"[ \t]+", line.strip(" \t"))
        if cols[0] == "-DOCSTART-":
            close()
            docstarts.add(len(sentences))
            continue
        if n_cols == 0:
            n_cols, first_line = len(cols), n
            if n_cols > 1:
                tag_col = cfg.tag_column if cfg.tag_column >= 0 else n_cols + cfg.tag_column
                if not 0 < tag_col < n_cols:
                    raise UserError(
                        f"{path}:{n}: task.tag_column={cfg.tag_column} but the line has "
                        f"{n_cols} columns (token first); set task.tag_column to 1..{n_cols - 1}"
                        " or -1 (last)"
                    )
        elif len(cols) != n_cols:
            kind = "tab-separated" if sep else "whitespace-separated"
            raise UserError(
                f"{path}:{n}: {len(cols)} columns, but the first token line ({path}:"
                f"{first_line}) has {n_cols} ({kind}); fix the line (a token may not "
                "contain a separator) or the file's format"
            )
        if not words:
            start = n
        words.append(cols[0])
        if n_cols > 1:
            tag = cols[tag_col].strip()
            if report.ignore_tags:
                pass  # another scheme's (or POS) tags stopped a prediction that drops them
            elif cfg.tag_scheme != "plain":
                _check_tag(tag, f"{path}:{n}", columns=True)
            else:
                _check_plain_tag(tag, f"{path}:{n}")
            tags.append(tag)
    close()
    if n_cols > 1 and cfg.tag_scheme != "plain" and not report.ignore_tags:
        _fix_scheme(path, sentences, cfg.tag_scheme, report)
    return [
        {
            "id": str(i),
            "line": line,
            "file": str(path),
            "tokens": w,
            "tags": t if n_cols > 1 else None,
        }
        | ({"docstart": True} if i in docstarts else {})
        for i, (line, w, t) in enumerate(sentences)
    ]


def _read_conllu(path: Path, lines: list[str], cfg: TaskConfig, report: _Report) -> list[Example]:
    """CoNLL-U (Universal Dependencies; KLUE-DP's tsv is laid out the same way): '#' lines are
    comments, a blank line ends a sentence, tab-separated ID FORM LEMMA UPOS XPOS ...; the
    word is FORM, the tag column task.tag_column (-1, the default: 3, UPOS; 4 is XPOS).
    Multiword token ranges (1-2) and empty nodes (8.1) are not words of the sentence."""
    if cfg.tag_column != -1 and cfg.tag_column < 3:
        raise UserError(
            f"task.tag_column={cfg.tag_column}: CoNLL-U's columns 0-2 are ID, FORM and LEMMA; "
            "the tags are in 3 (UPOS, the default) or 4 (XPOS)"
        )
    col = 3 if cfg.tag_column == -1 else cfg.tag_column
    sentences: list[tuple[int, list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    start = n_cols = 0
    untagged: list[str] = []  # where a word has no tag ('_'): a file to predict, or an error
    sent_ids: list[str | None] = []  # each sentence's `# sent_id = ...`, where it has one
    sent_id: str | None = None
    for n, line in enumerate([*lines, ""], 1):
        if line.startswith("#"):
            key, eq, value = line[1:].partition("=")
            if eq and key.strip() == "sent_id" and value.strip():
                sent_id = value.strip()
            continue
        if not line.strip():
            if words:
                sentences.append((start, list(words), list(tags)))
                sent_ids.append(sent_id)
            sent_id = None
            words.clear()
            tags.clear()
            continue
        cols = line.rstrip("\r\n").split("\t")
        n_cols = n_cols or len(cols)
        if len(cols) <= col or len(cols) != n_cols:
            raise UserError(
                f"{path}:{n}: {len(cols)} tab-separated columns where CoNLL-U rows have "
                f"{n_cols} (ID, FORM, LEMMA, UPOS, ...; the tag in column {col}, "
                "task.tag_column); fix the line (a word may not hold a tab) or task.format"
            )
        if "-" in cols[0] or "." in cols[0]:  # a multiword token's range, an empty node
            continue
        if not cols[1].strip():
            raise UserError(f"{path}:{n}: no word in column 1 (FORM); fix the line")
        tag = cols[col].strip()
        if tag in ("", "_"):
            untagged.append(f"{path}:{n}: word '{cols[1]}' has no tag in column {col}")
        elif report.ignore_tags:
            pass
        elif cfg.tag_scheme == "plain":
            _check_plain_tag(tag, f"{path}:{n}")
        else:
            _check_tag(tag, f"{path}:{n}")
        if not words:
            start = n
        words.append(cols[1])
        tags.append(tag)
    tagged = len(untagged) < sum(len(w) for _, w, _ in sentences)
    if untagged and tagged:  # some words tagged, others not: the file is broken
        raise UserError(
            f"{untagged[0]} ('_'), but other words have tags; tag every word (task.tag_column: "
            "3 UPOS, 4 XPOS)"
        )
    if untagged:  # no word tagged: a file to predict (or, to train on, the wrong column)
        report.no_tags = (
            f"no word has a tag in column {col} (task.tag_column: 3 UPOS, 4 XPOS); point it "
            "at the column that holds the tags"
        )
    if sentences and tagged and cfg.tag_scheme != "plain" and not report.ignore_tags:
        _fix_scheme(path, sentences, cfg.tag_scheme, report)
    # the file's own sentence ids where every sentence has one and no two are the same (UD's
    # "weblog-...-0001"), so predictions name the sentences as the treebank does
    named = None not in sent_ids and len(set(sent_ids)) == len(sent_ids)
    return [
        {
            "id": str(sent_ids[i] if named else i),
            "line": line,
            "file": str(path),
            "tokens": w,
            "tags": t if tagged else None,
        }
        for i, (line, w, t) in enumerate(sentences)
    ]


def _fix_scheme(
    path: Path | str,
    sentences: list[tuple[int, list[str], list[str]]],
    scheme: str,
    report: _Report,
    word_per_line: bool = True,
) -> None:
    """Detect IOB1 vs BIO (module docstring) and rewrite I- entity starts as B-, in place.
    `word_per_line`: a sentence's words are on lines line, line + 1, ... (CoNLL); else each
    sentence is one row, and a place is named by row and word."""
    i_starts, b_starts = _Tally(), _Tally()
    for line, _, tags in sentences:
        prev = ""
        for k, tag in enumerate(tags):
            prefix, ty = _split_tag(tag)
            if prefix != "O" and prev != ty:
                where = f"{path}:{line + k}" if word_per_line else f"{path}:{line} (word {k + 1})"
                (i_starts if prefix == "I" else b_starts).add(where)
                if prefix == "I":
                    tags[k] = "B-" + ty
            prev = ty
    if not i_starts.n:
        return
    looks = "iob1" if i_starts.n > b_starts.n else "bio"
    if scheme != "auto" and scheme != looks:
        first = i_starts.first if looks == "iob1" else b_starts.first
        raise UserError(
            f"{first}: task.tag_scheme={scheme}, but the file looks {looks.upper()}: "
            f"{i_starts.n} entities start with I- and {b_starts.n} with B-; "
            f"set task.tag_scheme to {looks} or auto"
        )
    if looks == "iob1":
        report.add("iob1", i_starts.first, i_starts.n)
        report.add("iob1_b_start", b_starts.first, b_starts.n)
    else:
        report.add("bio_i_start", i_starts.first, i_starts.n)


def _in_rows(path: str, cfg: TaskConfig) -> bool:
    """Whether `path` holds one sentence per row (the `rows` format) rather than lines."""
    if cfg.format.lower() in (*ROW_FORMATS, "rows"):
        return True
    p = Path(path)  # a rows path wins over a line format (a run trained on CoNLL evaluating one)
    if is_dataset_source(path):
        return True
    return p.is_file() and plain_name(p).endswith(ROW_SUFFIXES)


def _row_examples(
    path: str, cfg: TaskConfig, report: _Report, labelled: bool | None
) -> list[Example]:
    """Sentences from rows of words and tags (the `rows` format), tags validated as BIO
    (not read at all when `labelled` is False: a file to predict)."""
    fmt = cfg.format.lower()  # a table format as it is; hf, rows or a line format: by the path
    read_cfg = cfg.model_copy(
        update={"format": fmt if fmt in ("jsonl", "json", "parquet") else "auto"}
    )
    rows = read_records(path, read_cfg, report.notes)
    if not rows:
        raise UserError(f"{path}: no rows; expected one sentence per row (task.type=tagging)")
    first = rows[0][1]
    words_col = _row_column(path, first, cfg.text_column, "text_column", WORD_COLUMNS)
    # a file to predict: its tags, if any, are not read (nor looked for)
    usual = PLAIN_TAG_COLUMNS if cfg.tag_scheme == "plain" else TAG_COLUMNS
    tags_col = (
        _row_column(path, first, cfg.label_column, "label_column", usual)
        if labelled is not False
        else None
    )
    if words_col is None:
        raise UserError(
            f"{path}: no column of words ({' or '.join(WORD_COLUMNS)}); columns found: "
            f"{', '.join(map(str, first))}; set task.text_column to the list of words"
        )
    if tags_col is None:
        plain = [c for c in PLAIN_TAG_COLUMNS[:2] if c in first and c not in usual]
        report.no_tags = (
            f"no column of tags ({' or '.join(usual)}) in its rows; columns found: "
            f"{', '.join(map(str, first))}; set task.label_column to the column of tags"
            + (f" ('{plain[0]}' holds part-of-speech tags: task.type pos)" if plain else "")
        )
    else:
        report.no_tags = f"this row has no tags ('{tags_col}' missing or null); tag every sentence"
    id_col = cfg.id_column if isinstance(cfg.id_column, str) else None
    sentences: list[tuple[int, list[str], list[str] | None, str]] = []
    for i, (line, row) in enumerate(rows):
        words = row.get(words_col)
        where = f"{path}:{line}"
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise UserError(
                f"{where}: '{words_col}' is not a list of words (a {type(words).__name__}); "
                "give each sentence as a list of strings"
            )
        tags = row.get(tags_col) if tags_col is not None else None
        if tags is not None:
            tags = _row_tags(where, tags_col, tags, len(words), cfg.tag_scheme == "plain")
        sid = row.get(id_col) if id_col is not None else None
        if words:
            sentences.append((line, list(words), tags, str(i if sid is None else sid)))
        else:
            report.add("no_words", where)
    seen: dict[str, int] = {}
    again = [(line, sid) for line, _, _, sid in sentences if seen.setdefault(sid, line) != line]
    if again:
        report.warnings.append(
            f"{path}: {len(again)} rows repeat an earlier row's id (first at row {again[0][0]}: "
            f"id {again[0][1]!r}, as at row {seen[again[0][1]]})"
        )
    tagged = [(line, w, t) for line, w, t, _ in sentences if t is not None]
    if tagged and cfg.tag_scheme != "plain":
        _fix_scheme(path, tagged, cfg.tag_scheme, report, word_per_line=False)
    return [
        {"id": sid, "line": line, "file": path, "tokens": w, "tags": t}
        for line, w, t, sid in sentences
    ]


def _row_column(
    path: str, row: dict[str, Any], name: str | int, key: str, usual: tuple[str, ...]
) -> str | None:
    """The column a row keeps its words or tags in: task.<key> when it is set, else (left
    at the schema's "text" / "label", which name a sentence's text and class elsewhere) the
    first of the usual names the row has."""
    if name == TaskConfig.model_fields[key].default:
        return next((c for c in usual if c in row), None)
    if not isinstance(name, str) or name not in row:
        raise UserError(
            f"{path}: no column '{name}' (task.{key}) in its first row; columns found: "
            f"{', '.join(map(str, row))}"
        )
    return name


def _row_tags(where: str, column: str, tags: Any, n_words: int, plain: bool = False) -> list[str]:
    """A row's tags as BIO strings (`plain`: as strings), refused in one line when they
    cannot be."""
    if not isinstance(tags, list) or len(tags) != n_words:
        got = f"{len(tags)} tags" if isinstance(tags, list) else f"a {type(tags).__name__}"
        raise UserError(
            f"{where}: '{column}' holds {got} for {n_words} words; give one tag per word"
        )
    if any(isinstance(t, int) and not isinstance(t, bool) for t in tags):
        raise UserError(
            f"{where}: '{column}' holds tag ids ({tags[:4]}...) without their names; write the "
            "tags as strings (B-PER, O, ... or NN, VB, ...), or keep the datasets ClassLabel that names them "
            "(save_to_disk and to_parquet keep it; to_json and to_csv do not)"
        )
    if plain:
        for k, tag in enumerate(tags):
            if not isinstance(tag, str):
                raise UserError(
                    f"{where} (word {k + 1}): tag {tag!r} is not a string; give one tag per "
                    "word as a string"
                )
            _check_plain_tag(tag.strip(), f"{where} (word {k + 1})")
    out = [str(t).strip() for t in tags]
    for k, tag in enumerate(out):
        if not plain:
            _check_tag(tag, f"{where} (word {k + 1})")
    return out


def _read_klue(path: Path, lines: list[str], report: _Report) -> list[Example]:
    """KLUE NER character rows -> word-level sentences (module docstring)."""
    sentences: list[Sentence] = []
    n_cols = 0
    for start, block in _blocks(lines, exact=True):
        header = [k for k, ln in enumerate(block) if ln.startswith("##")]
        rows = block[header[-1] + 1 :] if header else block
        if header and any(not ln.startswith("##") for ln in block[: header[-1]]):
            bad = next(k for k, ln in enumerate(block) if not ln.startswith("##"))
            raise UserError(
                f"{path}:{start + bad}: a '##' line follows character rows without a blank "
                "line; separate sentences with a blank line (KLUE NER format)"
            )
        if not rows:
            continue  # the file's comment header
        line = start + (header[-1] if header else 0)
        sid = block[header[-1]][2:].strip().split("\t")[0] if header else str(len(sentences))
        units: list[tuple[str, str]] = []
        prev_type = ""
        for k, row in enumerate(rows, start + len(header)):
            cols = row.split("\t")
            if n_cols == 0:
                n_cols = len(cols)
                if n_cols > 2:
                    raise UserError(
                        f"{path}:{k}: {n_cols} tab-separated columns; KLUE NER rows are "
                        "CHAR<TAB>TAG (set task.format if this is another format)"
                    )
            if len(cols) != n_cols:
                raise UserError(
                    f"{path}:{k}: {len(cols)} tab-separated columns, expected {n_cols} "
                    "(CHAR<TAB>TAG, a space character is ' <TAB>O'); fix the line"
                )
            if not cols[0]:  # a space row ' <TAB>O' stripped: the words would run together
                raise UserError(
                    f"{path}:{k}: no character before the tab; a space character's row is "
                    "' <TAB>O' (was the file's leading whitespace stripped?); restore the space"
                )
            tag = cols[1].strip() if n_cols == 2 else "O"
            _check_tag(tag, f"{path}:{k}")
            prefix, ty = _split_tag(tag)
            if prefix == "I" and prev_type != ty:
                report.add("char_i_start", f"{path}:{k}")
            prev_type = ty
            units.append((cols[0], tag))
        if n_cols == 2:
            sentences.append((line, sid, units, None))
        else:
            sentences.append((line, sid, None, "".join(c for c, _ in units)))
    return _word_examples(path, sentences, report)


def _read_kmou(path: Path, lines: list[str], report: _Report) -> list[Example]:
    """KMOU bracket markup (2016klp or corpus/) -> word-level sentences."""
    sentences: list[Sentence] = []
    for start, block in _blocks(lines):
        where = f"{path}:{start}"
        raw: str | None = None
        marked: str | None = None
        if block[0].startswith("; "):  # 2016klp: "; raw", "$marked", morpheme rows
            raw = block[0][2:]
            sid = str(len(sentences))
            if len(block) > 1 and block[1].startswith("$"):
                marked = block[1][1:]
            elif len(block) > 1:
                raise UserError(
                    f"{path}:{start + 1}: expected the '$' line with <entity:TYPE> markup "
                    "after the '; ' sentence line (KMOU 2016klp format); add it or remove "
                    "the morpheme rows"
                )
        elif block[0].startswith("## "):  # corpus: "## id", "## raw", "## marked", rows
            header = [ln[3:] for ln in block[:3] if ln.startswith("## ")]
            if len(header) < 3:
                report.add("kmou_skipped", where)
                continue
            sid, raw, marked = header[0].strip(), header[1], header[2]
        else:
            report.add("kmou_skipped", where)
            continue
        units = None
        if marked is not None:
            units = _markup_units(marked)
            if "".join(c for c, _ in units).split() != raw.split():
                report.add("kmou_mismatch", where)
        sentences.append((start, sid, units, raw))
    return _word_examples(path, sentences, report)


@register
class TaggingTask(TaskBase):
    """Named-entity (or any BIO) tagging: a label per word from its first sub-token."""

    type = "tagging"
    token_level = True
    primary_metric = "f1"
    hf_head = "token"  # hf export: the transformers head its head maps to
    # scalar metrics its evaluation gives; f1_strict: seqeval's strict IOB2 mode
    reported_metrics = ("acc", "f1", "precision", "recall", "f1_strict")
    report_details = "per_type"
    example_unit = "sentences"  # what reports count
    right_means = "tags every word right"  # a sentence counts as right in the sign test
    untagged = "O"  # the tag of a word cut by max_len
    # raw text: split as the run's training words were (keeps_punctuation; example_from_text)
    words_keep_punctuation = False

    def has_gold(self, example: Example) -> bool:
        return example.get("tags") is not None

    def example_from_text(self, text: str, text_pair: str | None, i: int) -> Example:
        if text_pair:
            raise UserError("a tagging model reads one text at a time; drop --text-pair")
        # raw: the text as given, so entities can be given as slices of it (word_spans);
        # punctuation apart, as word-level training data has it ("(EU)" was tagged as "(",
        # always O), but as the whitespace left it where the run learned from character
        # markup (KLUE-NER, KMOU), whose words keep their punctuation
        tokens = text.split() if self.words_keep_punctuation else split_words(text)
        return {"id": str(i), "line": 0, "tokens": tokens, "tags": None, "raw": text}

    def missing_gold_hint(self, cfg: TaskConfig) -> str:
        return (
            " (no tag on any word: a word and its tag per line (CoNLL), a KLUE NER or a KMOU "
            "file carries them; plain sentences are for predict)"
        )

    def show_prediction(self, example: Example, row: dict[str, Any]) -> str:
        tags = row["prediction"].split()
        return " ".join(f"{w}/{t}" for w, t in zip(example["tokens"], tags, strict=False))

    # -- reading -------------------------------------------------------------------------------

    def read(self, path: str, cfg: TaskConfig, labelled: bool | None = None) -> Examples:
        """Sentences of a file (or of every file in a directory, e.g. KMOU's corpus/).

        labelled=True: the file must carry tags (a train or valid file); False: a file to
        predict, whose tags, if any, are not read (another scheme's tags stopped predict).
        """
        report = _Report()
        report.ignore_tags = labelled is False
        if _in_rows(str(path), cfg):  # not recorded as the run's format: told by the path
            examples = _row_examples(str(path), cfg, report, labelled)[: cfg.max_examples]
        else:
            examples = self._read_files(Path(path), cfg, report)
        warnings, notes = report.lines(str(path))
        untagged = next((ex for ex in examples if ex["tags"] is None), None)
        if labelled and untagged is not None and report.no_tags is not None:
            whole = report.no_tags.startswith("no column")
            where = path if whole else f"{path}:{untagged['line']}"
            raise UserError(f"{where}: {report.no_tags}")
        if labelled and untagged is not None:
            raise UserError(
                f"{path}: no tags (a single column / no annotation), but this file must be "
                "labelled (train or valid); point it at an annotated file"
            )
        if labelled is False:
            for ex in examples:
                ex["tags"] = None
        read_as = next(iter(report.formats)) if len(report.formats) == 1 else None
        return Examples(examples, warnings, notes, read_as=read_as)

    def _read_files(self, p: Path, cfg: TaskConfig, report: _Report) -> list[Example]:
        """The sentences of a file, or of every file of a directory (ids `<stem>/<id>`)."""
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if not files:
                raise UserError(f"{p}: directory has no files; point the task at a data file")
            # a folder of CoNLL files may name them .tsv/.txt; files of rows are not lines
            refuse_data_files(p, [f for f in files if plain_name(f).endswith(_NOT_LINES)])
            files = _data_files(p, files, report)
        elif p.is_file():
            files = [p]
        else:
            raise UserError(f"{p}: file not found (task data); check the task's file paths")
        examples: list[Example] = []
        for f in files:
            cap = None if cfg.max_examples is None else cfg.max_examples - len(examples)
            if cap is not None and cap <= 0:
                break
            got = self._read_file(f, cfg, cap, report)
            if len(files) > 1:
                for ex in got:
                    ex["id"] = f"{f.stem}/{ex['id']}"
            examples.extend(got)
        return examples

    def _read_file(
        self, path: Path, cfg: TaskConfig, cap: int | None, report: _Report
    ) -> list[Example]:
        lines = _lines(path)
        if not any(ln.strip() for ln in lines):
            raise UserError(f"{path}: empty file; expected tagged sentences (task.type=tagging)")
        fmt = cfg.format.lower()
        fmt = _ALIASES.get(fmt, fmt)
        if plain_name(path).endswith(".conllu") and fmt in ("auto", "conll", "lines"):
            fmt = "conllu"  # the name says it, whatever the run was trained on
            if cfg.format.lower() != "auto":  # its tag_column counted another layout's columns
                cfg = cfg.model_copy(update={"tag_column": -1})
        elif fmt == "auto":
            fmt = detect_format(lines)
        if cfg.tag_scheme == "plain" and fmt in ENTITY_FORMATS:
            raise UserError(
                f"{path}: read as {fmt}, whose markup is entities (task.type tagging); plain "
                "tags are read from conll, conllu or rows files: set task.format"
            )
        # raw sentences: words as example_from_text splits them; a run of character markup
        # (KLUE-NER, KMOU) learned words with their punctuation
        keep = self.words_keep_punctuation or cfg.format.lower() in ENTITY_FORMATS
        if _sentence_per_line(lines, fmt, cfg):
            report.add("lines" if keep else "lines_apart", _LAYOUTS[fmt])
            fmt = "lines"
        report.formats.add(fmt)
        if fmt == "lines":
            examples = _read_lines(path, lines, str.split if keep else split_words)
        elif fmt == "conll":
            examples = _read_conll(path, lines, cfg, report)
        elif fmt == "conllu":
            examples = _read_conllu(path, lines, cfg, report)
        elif fmt == "klue-ner":
            examples = _read_klue(path, lines, report)
        elif fmt == "kmou":
            examples = _read_kmou(path, lines, report)
        else:
            raise UserError(
                f"task.format={cfg.format!r} is not a tagging format; use auto, "
                + ", ".join(FORMATS)
            )
        if not examples:
            raise UserError(f"{path}: no sentences found (read as {fmt}); check task.format")
        if cap is not None:
            examples = examples[:cap]
        return examples

    # -- labels and splits ---------------------------------------------------------------------

    def split(
        self, examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """A seeded random split of sentences (valid gets round(valid_ratio * n), at least 1)."""
        n = len(examples)
        if n < 2:
            raise UserError(
                f"cannot split {n} sentence(s) into train and valid; add data or set task.valid"
            )
        order = np.random.default_rng([seed, 17]).permutation(n)
        k = min(max(1, int(round(cfg.valid_ratio * n))), n - 1)
        chosen = set(order[:k].tolist())
        train = [ex for i, ex in enumerate(examples) if i not in chosen]
        valid = [ex for i, ex in enumerate(examples) if i in chosen]
        return train, valid

    def label_names(self, examples: list[Example]) -> list[str]:
        """The label set: O first, then B-X and I-X for every type X seen, sorted.

        Both prefixes of a type are included even when one never occurs (single-word entities
        only give B-X), so a valid file with a longer entity of a known type is not an error.
        """
        types = {_split_tag(t)[1] for ex in examples if ex["tags"] for t in ex["tags"] if t != "O"}
        return ["O", *sorted(f"{p}-{t}" for t in types for p in "BI")]

    def check_labels(self, examples: list[Example], labels: list[str], path: str) -> None:
        """UserError for a tag that the training data never had (before any encoding)."""
        known = set(labels)
        for ex in examples:
            for k, tag in enumerate(ex["tags"] or ()):
                if tag not in known:
                    raise UserError(_unknown_tag(ex, k, tag, labels, path))

    # -- encoding ------------------------------------------------------------------------------

    def encode(
        self, examples: list[Example], tok: Tokenizer, cfg: TaskConfig, labels: list[str]
    ) -> Features:
        """``[CLS] sub-tokens [SEP]``, the tag on each word's first sub-token, -100 elsewhere."""
        ids = special_ids(tok)
        index = {name: i for i, name in enumerate(labels)}
        if tok.truncation is not None or tok.padding is not None:
            tok = Tokenizer.from_str(tok.to_str())  # a private copy: leave the shared one alone
            tok.no_truncation()
            tok.no_padding()
        encs = tok.encode_batch(
            [list(ex["tokens"]) for ex in examples], is_pretokenized=True, add_special_tokens=False
        )
        budget = cfg.max_len - 2
        windows = cfg.truncation == "windows"
        cut_words, cut_sents, empty_words, windowed = 0, 0, 0, 0
        first_cut = ""
        features = Features()
        for i, (ex, enc) in enumerate(zip(examples, encs, strict=True)):
            n_words = len(ex["tokens"])
            pieces: list[list[int]] = [[] for _ in range(n_words)]
            for tid, w in zip(enc.ids, enc.word_ids, strict=True):
                if w is not None:
                    pieces[w].append(tid)
            for w in range(n_words):
                if not pieces[w]:  # e.g. a character the normalizer removes
                    pieces[w] = [ids["unk"]]
                    empty_words += 1
            tags = ex["tags"]
            if tags is not None:
                for w, tag in enumerate(tags):
                    if tag not in index:
                        raise UserError(_unknown_tag(ex, w, tag, labels, None))
            sizes = [min(len(piece), budget) for piece in pieces]
            if windows and sum(sizes) > budget:
                spans = word_windows(sizes, budget, cfg.window_stride or budget // 2)
                if cfg.max_windows is not None:
                    spans = spans[: cfg.max_windows]
                windowed += 1
            else:  # the words that fit, the last one cut to what room is left (as ever)
                spans = [first_window(sizes, budget)]
                if (last := spans[0][1] - 1) > 0:
                    sizes[last] = min(sizes[last], budget - sum(sizes[:last]))
            owner = window_owners(spans, sizes)
            kept = spans[-1][1] if spans else 0
            if kept < n_words:
                cut_words += n_words - kept
                cut_sents += 1
                first_cut = first_cut or (
                    f"{ex['file']}:{ex['line']}" if ex.get("file") else f"text {i}"
                )
            for k, (start, end) in enumerate(spans):
                words = [(w, pieces[w][: sizes[w]], owner[w] == k) for w in range(start, end)]
                labelled = [index[tags[w]] for w in range(start, end)] if tags else None
                features.append(
                    _window_feature(words, labelled, ids)
                    | {
                        "example_index": i,
                        "n_words": n_words,
                        "n_cut": n_words - kept,
                        # what a served or API row says of its cut (inference.scored rows)
                        "truncated": {"truncated_words": n_words - kept},
                    }
                )
        src = examples[0].get("file") if examples else None
        src = f"{src}: " if src else ""
        if cut_words:
            fix = (
                "raise task.max_windows"
                if windows
                else "task.truncation: windows reads all of them (or a larger task.max_len)"
            )
            features.warnings.append(
                f"{src}task.max_len={cfg.max_len} cut {cut_words} words from {cut_sents} "
                f"sentences (first: {first_cut}); they are predicted as {self.untagged} (and count "
                f"as misses); "
                f"{fix}"
            )
        if windowed:
            features.notes.append(
                f"{src}{windowed} sentences longer than task.max_len={cfg.max_len} tokens read "
                "in overlapping windows (truncation: windows; each word from the window where "
                "it has the most context)"
            )
        if empty_words:
            features.warnings.append(
                f"{src}{empty_words} words gave no sub-token (the tokenizer drops all their "
                "characters) and are encoded as [UNK]"
            )
        return features

    def collate(self, features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
        batch = base_collate(features, pad_id)
        batch["labels"] = pad_stack([np.asarray(f["labels"]) for f in features], IGNORE)
        return batch

    def head(self, cfg: HeadConfig, d_model: int, n_labels: int) -> nn.Module:
        return TokenHead(d_model, n_labels, cfg.dropout)

    # -- training signal -----------------------------------------------------------------------

    def loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy over first sub-tokens; counts give token (word) accuracy."""
        return token_counts(logits, batch["labels"], IGNORE)

    def train_metrics(self, counts: dict[str, float]) -> dict[str, float]:
        return counts_to_metrics(counts)

    # -- predictions and metrics ---------------------------------------------------------------

    def decode(
        self,
        outputs: list[np.ndarray],
        features: list[Feature],
        examples: list[Example],
        cfg: TaskConfig,
        labels: list[str],
    ) -> list[list[str]]:
        """A tag per word: argmax at its first sub-token; words cut by max_len get O (pos:
        '_', no tag)."""
        preds = [[self.untagged] * len(ex["tokens"]) for ex in examples]
        for out, feat in zip(outputs, features, strict=True):
            pred = preds[feat["example_index"]]
            words = np.asarray(feat["word_index"])[: len(out)]
            best = np.asarray(out).argmax(-1)
            prev = -1
            for pos, w in enumerate(words.tolist()):
                if w >= 0 and w != prev:
                    pred[w] = labels[int(best[pos])]
                prev = w
        return preds

    def confidences(
        self, outputs: list[np.ndarray], features: list[Feature], examples: list[Example]
    ) -> list[list[float]]:
        """The probability of each word's decoded tag (softmax at its first sub-token, as
        `decode` reads it); a word cut by max_len gets O with probability 0."""
        probs = [[0.0] * len(ex["tokens"]) for ex in examples]
        for out, feat in zip(outputs, features, strict=True):
            logits = np.asarray(out, dtype=np.float64)
            top = np.exp(logits - logits.max(-1, keepdims=True))
            top = top.max(-1) / top.sum(-1)
            words = np.asarray(feat["word_index"])[: len(logits)]
            prev = -1
            for pos, w in enumerate(words.tolist()):
                if w >= 0 and w != prev:
                    probs[feat["example_index"]][w] = float(top[pos])
                prev = w
        return probs

    def metrics(
        self, predictions: list[Any], examples: list[Example], cfg: TaskConfig, labels: list[str]
    ) -> dict[str, Any]:
        """Entity-level micro P/R/F1 (conlleval rules) and word accuracy, on labelled examples."""
        pairs = [
            (ex["tags"], p)
            for ex, p in zip(examples, predictions, strict=True)
            if ex["tags"] is not None
        ]
        if not pairs:
            return {}
        gold = [g for g, _ in pairs]
        pred = [p for _, p in pairs]
        scores = entity_scores(gold, pred)
        right = sum(a == b for g, p in pairs for a, b in zip(g, p, strict=True))
        total = sum(len(g) for g in gold)
        return {
            "precision": scores["precision"],
            "recall": scores["recall"],
            "f1": scores["f1"],
            "f1_strict": entity_scores(gold, pred, strict=True)["f1"],
            "acc": right / total if total else 0.0,
            "extra": {
                "per_type": scores["per_type"],
                "entities": {k: scores[k] for k in ("gold", "predicted", "correct")},
                "examples": len(pairs),
            },
        }

    def one_answer(self, rows: list[dict[str, Any]]) -> str | None:
        """No entity in any labelled sentence (every word O) where the gold has some."""
        labelled = [r for r in rows if r.get("gold") is not None]
        gold = sum(r.get("n_gold_entities") or 0 for r in labelled)
        if len(labelled) < MIN_ROWS_TO_JUDGE or not gold:
            return None
        if any(r.get("n_pred_entities") for r in labelled):
            return None
        return f"tags no entity in all {len(labelled):,} sentences (they hold {gold:,})"

    def prediction_rows(
        self, predictions: list[Any], examples: list[Example], labels: list[str]
    ) -> list[dict[str, Any]]:
        rows = []
        for ex, pred in zip(examples, predictions, strict=True):
            gold = ex["tags"]
            # the sentence's first line in its file: ids number the sentences read
            where = {"line": ex["line"]} if ex.get("line") else {}
            rows.append(
                {
                    "id": ex["id"],
                    **where,
                    "tokens": " ".join(ex["tokens"]),
                    "gold": None if gold is None else " ".join(gold),
                    "prediction": " ".join(pred),
                    "correct": None if gold is None else list(gold) == list(pred),
                    "n_gold_entities": None if gold is None else len(entities(gold)),
                    "n_pred_entities": len(entities(pred)),
                }
            )
        return rows


# ---------------------------------------------------------------------------------------------
# Predictions as CoNLL files (`predict --output x.conll / x.conllu`)

CONLL_OUTPUTS = (".conll", ".iob", ".bio", ".conllu")  # --output suffixes a tagging run writes
UPOS_TAGS = frozenset(
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
)


def check_conll_words(examples: list[Example], output: str, conllu: bool = False) -> None:
    """A word that would split into two columns or lines is refused before the model runs:
    CoNLL splits at any whitespace; CoNLL-U's FORM may hold a space (UD v2), not a tab or a
    line end."""
    for ex in examples:
        for word in ex["tokens"]:
            bad = (
                any(c in "\t\n\r" for c in word) or not word.strip()
                if conllu
                else not word or any(c.isspace() for c in word)
            )
            if bad or "\x00" in word:
                splits = "at a tab or a line end" if conllu else "at whitespace"
                raise UserError(
                    f"--output {output}: sentence {ex['id']} has the word {word!r}, which a "
                    f"{'CoNLL-U' if conllu else 'CoNLL'} line cannot hold (it splits {splits}); "
                    "give a .jsonl file"
                )


def conll_text(
    examples: list[Example], rows: list[dict[str, Any]], labels: list[str], conllu: bool
) -> str:
    """The predictions as CoNLL: `word tag`, a word per line and a blank line after each
    sentence (a -DOCSTART- line of the file read, and its blank line, where it had them). CoNLL-U: a `# sent_id` line, then the ten columns with the tag in UPOS (in XPOS
    when the run's tags are not UD's seventeen, e.g. Penn Treebank tags), the others `_`."""
    in_xpos = conllu and not set(labels) <= UPOS_TAGS
    out: list[str] = []
    for ex, row in zip(examples, rows, strict=True):
        tags = row["prediction"].split()
        if ex.get("docstart") and not conllu:  # kept: `paste gold pred` lines up for conlleval
            out += ["-DOCSTART- O", ""]
        if conllu:
            out.append(f"# sent_id = {' '.join(str(ex['id']).split())}")  # one line
        for k, (word, tag) in enumerate(zip(ex["tokens"], tags, strict=True)):
            if conllu:
                pos = ["_", tag] if in_xpos else [tag, "_"]
                out.append("\t".join([str(k + 1), word, "_", *pos, "_", "_", "_", "_", "_"]))
            else:
                out.append(f"{word} {tag}")
        out.append("")
    return "\n".join(out) + ("\n" if out else "")


def _unknown_tag(ex: Example, k: int, tag: str, labels: list[str], path: str | None) -> str:
    where = f"{path or ex.get('file', '?')}:{ex['line']}"
    shown = ", ".join(labels[:12]) + (", ..." if len(labels) > 12 else "")
    return (
        f"{where}: tag '{tag}' (word {k + 1}, '{ex['tokens'][k]}') never appears in the training "
        f"data (tags: {shown}); fix the tag or add training sentences with it"
    )


def tag_counts(examples: list[Example]) -> dict[str, int]:
    """Entities per type, for summaries."""
    c: Counter[str] = Counter()
    for ex in examples:
        if ex["tags"]:
            c.update(t for t, *_ in entities(ex["tags"]))
    return dict(c)


def first_window(sizes: list[int], budget: int) -> tuple[int, int]:
    """The words [0, end) that start within `budget` sub-tokens (the last may not fit whole)."""
    used, end = 0, 0
    while end < len(sizes) and used < budget:
        used += sizes[end]
        end += 1
    return 0, end


def word_windows(sizes: list[int], budget: int, stride: int) -> list[tuple[int, int]]:
    """Overlapping word ranges [start, end) that each fit in `budget` sub-tokens and together
    cover every word: a window starts at the first word `stride` tokens or more after the last
    one's start, or later where it must to take in the first word the last one left out."""
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        used, end = 0, start
        while end < len(sizes) and (end == start or used + sizes[end] <= budget):
            used += sizes[end]
            end += 1
        spans.append((start, end))
        if end >= len(sizes):
            return spans
        nxt, offset = start, 0
        while nxt < end and offset < stride:
            offset += sizes[nxt]
            nxt += 1
        start = max(nxt, start + 1)
        while start < end and sum(sizes[start : end + 1]) > budget:
            start += 1  # this window would end where the last one did: nothing new in it


def window_owners(spans: list[tuple[int, int]], sizes: list[int]) -> list[int]:
    """For each word, the window it is read from: the one where it has the most context on
    its shorter side (BERT's max-context rule, in sub-tokens); -1 for words in none."""
    owner = [-1] * len(sizes)
    best = [-1.0] * len(sizes)
    for k, (start, end) in enumerate(spans):
        left = 0
        total = sum(sizes[start:end])
        for w in range(start, end):
            right = total - left - sizes[w]
            score = min(left, right) + 0.01 * (left + right + sizes[w])
            if score > best[w]:
                owner[w], best[w] = k, score
            left += sizes[w]
    return owner


def _window_feature(
    words: list[tuple[int, list[int], bool]], labelled: list[int] | None, ids: dict[str, int]
) -> dict[str, Any]:
    """``[CLS] sub-tokens [SEP]`` of (word, its pieces, read here) triples: a word read here
    has its index and its label on its first piece; the others are context only (-1, -100)."""
    input_ids, word_index, label_ids = [ids["cls"]], [-1], [IGNORE]
    for k, (w, piece, mine) in enumerate(words):
        input_ids.extend(piece)
        word_index.extend([w if mine else -1] * len(piece))
        first = labelled[k] if labelled is not None and mine else IGNORE
        label_ids.extend([first] + [IGNORE] * (len(piece) - 1))
    input_ids.append(ids["sep"])
    word_index.append(-1)
    label_ids.append(IGNORE)
    return {
        "input_ids": np.asarray(input_ids, dtype=np.int64),
        "token_type_ids": np.zeros(len(input_ids), dtype=np.int64),
        "labels": np.asarray(label_ids, dtype=np.int64),
        "word_index": np.asarray(word_index, dtype=np.int64),
    }
