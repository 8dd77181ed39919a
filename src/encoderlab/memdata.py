"""In-memory task data (a pandas DataFrame, a list of dicts, a `datasets.Dataset`) as a file.

Why a file rather than a second reader for rows: the task readers are where data is validated
(columns, empty texts, labels, answers inside contexts, tag schemes), with one-line errors.
Writing the rows, unchanged, to a file in the task's own format and reading that file back
gives in-memory data exactly the same checks and messages as a file on disk, and the run's
config.yaml then names a real file, so the run can be resumed, reported on and reproduced.

Files are content-addressed (`<dir>/<split>-<sha12>.<ext>`): the same rows map to the same
file, written once; a datasets.Dataset's class-label ids become their names first. Formats: a
table task's rows go to .jsonl (columns as given); tagging rows ({"tokens": [...], "tags":
[...]}, or datasets' "ner_tags") to CoNLL; QA rows ({"question", "context",
"answers"}, answers as a list of {"text", "answer_start"} or as the Hugging Face squad dict of
lists) to SQuAD v1.1 JSON. A task type that reads another format adds a writer to WRITERS.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from encoderlab.data.tables import NOT_UNICODE, lone_surrogate
from encoderlab.errors import UserError

Rows = list[dict[str, Any]]


def is_in_memory(data: Any) -> bool:
    """True for rows, a DataFrame or a Dataset; False for a path (str / Path) or None."""
    return data is not None and not isinstance(data, (str, os.PathLike))


def _plain(value: Any) -> Any:
    """numpy scalars -> Python, NaN (pandas' missing value) -> None, so rows are JSON."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        return [_plain(v) for v in value]
    return value


def to_rows(data: Any, what: str) -> Rows:
    """A list of plain dicts from a DataFrame, a Dataset or an iterable of mappings."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        items = data.to_dict(orient="records")
    elif hasattr(data, "to_list") and hasattr(data, "features"):  # datasets.Dataset
        # class-label ids as their names ("pos", "B-PER"), as a save_to_disk folder reads
        from encoderlab.tasks.records import label_names, named_labels

        names = {c: n for c, f in data.features.items() if (n := label_names(f)) is not None}
        plain = data.with_format(None) if hasattr(data, "with_format") else data
        items = [named_labels(r, names, f"{what} row {i}") for i, r in enumerate(plain.to_list())]
    elif isinstance(data, (list, tuple)):
        items = list(data)
    else:
        raise UserError(
            f"{what}: expected a file path, a pandas DataFrame, a datasets.Dataset or a list of "
            f"dicts, not {type(data).__name__}"
        )
    if not items:
        raise UserError(f"{what}: no rows; give at least one")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise UserError(
                f"{what}: row {i} is a {type(item).__name__}, not a dict of column -> value"
            )
    return [_plain(item) for item in items]


def _jsonl(rows: Rows, what: str) -> tuple[str, str]:
    lines = []
    for i, row in enumerate(rows):
        try:
            lines.append(json.dumps(row, ensure_ascii=False, default=_as_json) + "\n")
        except TypeError as e:
            raise UserError(f"{what}: row {i}: {e}; give strings, numbers or lists") from None
    return "jsonl", "".join(lines)


def _as_json(value: Any) -> Any:
    """A date or time (pandas' Timestamp, datetime) as its ISO text, as a CSV would hold it;
    anything else JSON cannot hold is refused by the caller, with its row."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"a {type(value).__name__} value, which a table file cannot hold")


# where tagging rows keep their words and tags (datasets' conll2003: tokens, ner_tags)
WORD_KEYS = ("tokens", "words")
TAG_KEYS = ("tags", "ner_tags", "labels", "ner")


def _conll(rows: Rows, what: str) -> tuple[str, str]:
    """One `word tag` line per word (just `word` without tags), a blank line per sentence."""
    lines: list[str] = []
    for i, row in enumerate(rows):
        words = next((row[k] for k in WORD_KEYS if k in row), None)
        key = next((k for k in TAG_KEYS if k in row), "tags")
        tags = row.get(key)
        if not isinstance(words, list) or not words:
            raise UserError(f"{what}: row {i} needs 'tokens', a non-empty list of words")
        if tags is not None and (not isinstance(tags, list) or len(tags) != len(words)):
            raise UserError(f"{what}: row {i}: '{key}' must be a list as long as 'tokens'")
        if tags is not None and any(isinstance(t, int) and not isinstance(t, bool) for t in tags):
            raise UserError(
                f"{what}: row {i}: '{key}' holds tag ids without their names; give the tags as "
                "strings, or a datasets.Dataset whose ClassLabel names them"
            )
        for k, word in enumerate(words):
            text = str(word)
            if not text or text.split() != [text]:
                raise UserError(f"{what}: row {i}, word {k} ({text!r}) is empty or has spaces")
            lines.append(f"{text} {tags[k]}" if tags is not None else text)
        lines.append("")
    return "conll", "\n".join(lines) + "\n"


# task type -> writer; every other task type reads tables (.jsonl)
WRITERS: dict[str, Callable[[Rows, str], tuple[str, str]]] = {
    "tagging": _conll,
}


# task type -> the task.format that reads what its writer wrote; every other task type (qa too:
# datasets' squad rows, read by the row reader, which knows SQuAD 2.0's empty answers and
# splits rows without a title by their context) reads jsonl
READ_AS: dict[str, str] = {"tagging": "conll"}


def read_format(task_type: str) -> str:
    """The task.format to read `write_rows`' file with, whatever format the run was trained on
    (a KLUE-NER run reads its in-memory rows as the CoNLL they were written as)."""
    return READ_AS.get(task_type, "jsonl")


def write_rows(
    data: Any, task_type: str, folder: str | Path, split: str, named: str | None = None
) -> Path:
    """`data` as a file in `folder` in the task's format; the same rows give the same file.
    `named`: what the caller's argument is called, for errors (`split` by default)."""
    what = named or split
    rows = to_rows(data, what)
    for i, row in enumerate(rows):
        if (at := lone_surrogate(row)) is not None:
            raise UserError(f"{what} row {i}: {at} is {NOT_UNICODE}")
    ext, text = WRITERS.get(task_type, _jsonl)(rows, what)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    path = Path(folder) / f"{split}-{digest}.{ext}"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path


_AT_LINE = r"(?P<path>{path}):(?P<line>\d+):"
_AT_ROW = r"(?P<path>{path}): row (?P<line>\d+)\."
_AT_ARTICLE = r"(?P<path>{path}): data\[(?P<row>\d+)\]\.paragraphs\[0\]\.(?:qas\[0\]\.)?"


def in_rows_terms(error: UserError, written: dict[Path, str]) -> UserError:
    """An error a task reader raised about a file `write_rows` wrote, reworded to name the
    caller's rows (`valid row 3: answers[0].answer_start: ...`): the file under runs_dir is an
    implementation detail the user never named. Other errors come back as they are."""
    text = str(error)
    for path, split in written.items():
        quoted = re.escape(str(path))
        at_article = re.search(_AT_ARTICLE.format(path=quoted), text)
        if at_article:
            return UserError(f"{split} row {at_article['row']}: {text[at_article.end() :]}")
        at_line = re.search(_AT_LINE.format(path=quoted), text)
        if at_line:
            where = _row_of_line(path, int(at_line["line"]), split)
            rest = text[at_line.end() :]
            if re.search(r"\(word \d+", rest):  # the message names its word: the row only
                where = re.sub(r", word \d+$", "", where)
            return UserError(f"{where}:{rest}")
        at_row = re.search(_AT_ROW.format(path=quoted), text)  # QA's "row <line>.answers..."
        if at_row:
            where = _row_of_line(path, int(at_row["line"]), split)
            return UserError(f"{where}: {text[at_row.end() :]}")
        if str(path) in text:
            return UserError(text.replace(str(path), f"{split} rows ({path})", 1))
    return error


def say_in_rows_terms(say: Callable[[str], None], written: dict[Path, str]) -> Callable:
    """`say` with warnings about a file `write_rows` wrote in the caller's terms: `data rows:
    skipped 1 rows with empty text (first at row 0)`, not the file under runs_dir and its
    line 2."""

    def reworded(line: str) -> None:
        for path, split in written.items():
            if str(path) in line:
                line = line.replace(str(path), f"{split} rows")
                if path.suffix == ".jsonl":  # line n of the file is row n-1 of the rows
                    line = re.sub(r"\bline (\d+)", lambda m: f"row {int(m[1]) - 1}", line)
        say(line)

    return reworded


def _row_of_line(path: Path, line: int, split: str) -> str:
    """`train row 4` for line 5 of a .jsonl; `train row 2, word 1` for a CoNLL line."""
    if path.suffix != ".conll":
        return f"{split} row {line - 1}"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()[: line - 1]
    except OSError:
        return f"{split} rows (line {line} of {path})"
    blanks = [i for i, x in enumerate(lines) if not x.strip()]  # one after each sentence
    word = len(lines) - (blanks[-1] + 1 if blanks else 0)
    return f"{split} row {len(blanks)}, word {word}"
