"""Stream documents (plain strings) out of corpus files, whatever their format.

Files are read line by line (or record batch by record batch), never whole, so a corpus may be
larger than memory. Problems in the user's files become one-line `UserError`s that name the
file and line and say how to fix them, because a traceback from deep inside the csv or json
module helps nobody.

Formats, chosen by suffix (after removing a `.gz`, `.bz2`, `.xz` or `.zst` compression suffix)
unless `data.format` names one:
  .jsonl / .json   one JSON object per line; the document is its `text_field`
  .csv / .tsv      a header row, then one document per row from column `text_column`
                   (.tsv is split on tabs with no quoting, as most TSV writers expect)
  .parquet         read by record batches; the document is column `text_column`
  .xlsx            the first sheet (or `data.sheet`); first row is the header, as for csv
  directory        written by Hugging Face `save_to_disk` (`dir::split` picks a split of a
                   DatasetDict, default "train"); `hf:<name>[:<config>][::split]` streams a
                   dataset from the Hub
  anything else    plain text: a document per non-empty line, or per blank-line-separated
                   paragraph (`txt_unit="paragraph"`)

`text_column` may be a list: each listed column's non-empty cell is then its own document, in
column order, row by row (a parallel corpus with one column per language).

Two ways to read: strict (`report=None`, the default) raises a `UserError` at the first bad
line; tolerant (with a `FileReport`) counts and skips bad lines, stops a file at corrupt
compressed data and goes on, because one bad record should not sink a 100 GB tokenization.
Mistakes in the configuration (a column not in the header, a JSON field no record has, a JSON
array file) raise in both modes: every record would be skipped, so counting them helps nobody.

Uncompressed line-based files can be read in byte ranges (`byte_range=(start, end)`), so one
big file can be tokenized by several processes: a line belongs to the range holding its
first byte, so ranges that tile a file yield every document exactly once.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from encoderlab.data.tables import (
    COMPRESSED,
    HALF_PAIR,
    Where,
    csv_rows,
    decoded_lines,
    json_type,
    jsonl_objects,
    open_binary,
    refuse_bare_cr,
    wrong_length,
)
from encoderlab.data.tables import READ_ERRORS as _READ_ERRORS
from encoderlab.errors import UserError

_JSON = {".jsonl", ".json", ".ndjson"}
_CSV = {".csv": ",", ".tsv": "\t"}
_PARQUET = {".parquet", ".pq"}
_XLSX = {".xlsx", ".xlsm"}
_FORMATS = ("auto", "txt", "jsonl", "csv", "tsv", "parquet", "xlsx", "hf")
_GLOB_CHARS = set("*?[")
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_HF_BATCH = 1000
_PARQUET_BATCH = 1024
_MAX_EXAMPLES = 3


# --- public API ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One corpus entry after resolution: a file, a `save_to_disk` directory, or a Hub name.

    `str(source)` is the label used in messages and reports.
    """

    kind: Literal["file", "hf_disk", "hf_hub"]
    path: Path | None = None  # the file or directory; None for the Hub
    name: str | None = None  # Hub dataset name (hf_hub)
    config: str | None = None  # Hub dataset config (hf_hub)
    split: str | None = None  # None: "train" (a single Dataset on disk has no split)

    def __str__(self) -> str:
        if self.kind == "hf_hub":
            base = f"hf:{self.name}" + (f":{self.config}" if self.config else "")
        else:
            base = str(self.path)
        return base + (f"::{self.split}" if self.split else "")


@dataclass
class FileReport:
    """What tolerant reading of one source (or one byte range of it) skipped, and why.

    Pass one to `iter_source`; it is filled while the iterator is consumed. Reports of the
    byte ranges of one file add up with `merge`.
    """

    path: str = ""
    documents: int = 0
    bad_encoding_lines: int = 0  # lines that are not UTF-8 (skipped)
    bad_records: int = 0  # invalid JSON, not an object, field missing or not text, short row
    truncated_last_line: bool = False  # a last line with no newline that does not parse
    corrupt: str | None = None  # decompression / read error; the file was read up to there
    vanished: bool = False  # gone or unreadable between listing and reading
    examples: list[str] = field(default_factory=list)  # the first problems, with file:line

    @property
    def n_problems(self) -> int:
        return (
            self.bad_encoding_lines
            + self.bad_records
            + int(self.truncated_last_line)
            + int(self.corrupt is not None)
            + int(self.vanished)
        )

    def merge(self, other: FileReport) -> None:
        """Add another report (e.g. of the next byte range of the same file) to this one."""
        self.documents += other.documents
        self.bad_encoding_lines += other.bad_encoding_lines
        self.bad_records += other.bad_records
        self.truncated_last_line |= other.truncated_last_line
        self.corrupt = self.corrupt or other.corrupt
        self.vanished |= other.vanished
        room = _MAX_EXAMPLES - len(self.examples)
        if room > 0:
            self.examples.extend(other.examples[:room])

    def summary(self) -> str:
        """One line for a log: the counts, then the first problem."""
        parts = [f"{self.documents:,} documents"]
        if self.vanished:
            parts.append("vanished before it was read")
        if self.bad_encoding_lines:
            parts.append(f"{self.bad_encoding_lines:,} non-UTF-8 lines skipped")
        if self.bad_records:
            parts.append(f"{self.bad_records:,} bad records skipped")
        if self.truncated_last_line:
            parts.append("last line cut short")
        if self.corrupt is not None:
            parts.append(f"corrupt, read up to there ({self.corrupt})")
        line = f"{self.path}: " + ", ".join(parts)
        if self.examples and not (self.corrupt is not None and self.n_problems == 1):
            line += f"; first: {self.examples[0]}"
        return line


def resolve_sources(
    entries: Sequence[str | Path] | str | Path | None,
    fmt: str = "auto",
    where: str = "data.corpus",
) -> list[Source]:
    """Expand globs and check that every corpus entry exists, before any reading starts.
    `where`: the config key the entries came from, which the errors name.

    Entries are files, globs, `save_to_disk` directories (optionally `dir::split`) and
    `hf:<name>[:<config>][::split]` Hub names (with fmt="hf" the `hf:` may be left out).
    Failing early matters: a missing third file should not be discovered an hour into
    tokenizing the first two.
    """
    if entries is None or isinstance(entries, (str, Path)):
        entries = [] if entries is None else [entries]
    if not entries:
        example = f" (e.g. --set '{where}=[train.txt]')" if "[" not in where else ""
        raise UserError(  # an entry of data.sources has no --set of its own
            f"no corpus files given; set {where} to a list of .txt/.jsonl/.csv/.tsv/"
            f".parquet/.xlsx files, dataset directories or hf:<name> entries{example}"
        )
    _check_format(fmt)
    out: list[Source] = []
    for i, raw in enumerate(entries):
        text = str(raw)
        if not text.strip():  # Path('') is '.': "is a directory ... a glob such as '/*.txt'"
            raise UserError(f"{where}: entry {i + 1} is empty; remove it or give a file")
        if text.startswith("hf:"):
            out.append(_hub_source(text[3:], text))
            continue
        base, sep, split = text.rpartition("::") if "::" in text else (text, "", "")
        p = Path(base).expanduser()
        if sep:
            if not split or not p.is_dir() or not _is_hf_dir(p):
                if fmt == "hf" and not p.exists():
                    out.append(_hub_source(text, text))
                    continue
                raise UserError(
                    f"{text}: '::split' works only after a directory written by "
                    f"Hugging Face save_to_disk; check {where}"
                )
            out.append(Source("hf_disk", p, split=split))
            continue
        if p.is_file():
            out.append(Source("file", p))
            continue
        if p.is_dir():
            if _is_hf_dir(p):
                out.append(Source("hf_disk", p))
                continue
            raise UserError(
                f"{text}: is a directory, not a corpus file or a Hugging Face save_to_disk "
                f"directory; list its files in {where} or use a glob such as "
                f"'{text.rstrip('/')}/*.txt'"
            )
        if _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            found = [
                Source("file", m) if m.is_file() else Source("hf_disk", m)
                for m in matches
                if m.is_file() or (m.is_dir() and _is_hf_dir(m))
            ]
            if not found:
                raise UserError(f"{text}: the pattern matches no files; check {where}")
            out.extend(found)
            continue
        if fmt == "hf":
            out.append(_hub_source(text, text))
            continue
        raise UserError(f"{text}: corpus file not found; check the path ({where})")
    check_read_once([(s.path, s.split) for s in out if s.path is not None], where)
    return out


def check_read_once(
    paths: Sequence[tuple[Path, str | None]], where: str, reading: Sequence[str] = ()
) -> None:
    """A file listed twice (by two names, two globs, two sources) would be read twice: its
    blocks repeat in training, and a random validation split holds copies of training text.
    `reading`: each entry's reading options (hashable), so that two sources may read one file
    differently (a parallel corpus: one source per language column)."""
    seen: set[tuple] = set()
    for i, (path, split) in enumerate(paths):
        key = (path.resolve(), split, reading[i] if reading else None)
        if key in seen:
            raise UserError(
                f"{path}: listed twice in {where} (resolved to {key[0]}); its text would be "
                "read twice and leak into validation: list each file once"
            )
        seen.add(key)


def resolve_paths(paths: Sequence[str | Path] | str | Path | None, fmt: str = "auto") -> list[Path]:
    """`resolve_sources`, as local paths (files and dataset directories).

    Kept for callers that only need to fail early on a missing file; Hub entries have no path
    and are left out (they are still checked for syntax).
    """
    return [s.path for s in resolve_sources(paths, fmt) if s.path is not None]


def describe_sources(
    paths: Sequence[str | Path], fmt: str = "auto", where: str = "data.corpus"
) -> list[dict[str, Any]]:
    """A cheap, JSON-able key per corpus source for caches built from it.

    A file: its resolved path, size and mtime (a changed file changes one of them; hashing the
    content would mean reading a possibly huge corpus on every run). A dataset directory: a
    hash of its files' sizes and mtimes. A Hub dataset: its name, config and split.
    """
    out: list[dict[str, Any]] = []
    for s in resolve_sources(paths, fmt, where):
        if s.kind == "file":
            assert s.path is not None
            st = s.path.stat()
            out.append(
                {"path": str(s.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
            )
        elif s.kind == "hf_disk":
            assert s.path is not None
            h = hashlib.sha256()
            total = 0
            for root, dirs, files in os.walk(s.path):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root, name)
                    st = f.stat()
                    total += st.st_size
                    h.update(f"{f.relative_to(s.path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            out.append(
                {
                    "path": str(s.path.resolve()),
                    "split": s.split,
                    "size": total,
                    "files": h.hexdigest()[:20],
                }
            )
        else:
            out.append({"hf": s.name, "config": s.config, "split": s.split})
    return out


def splittable(path: Source | str | Path, fmt: str = "auto", txt_unit: str = "line") -> bool:
    """Whether `iter_source(..., byte_range=...)` can read this file in pieces.

    True for uncompressed JSON lines and for uncompressed plain text read a line at a time:
    there a newline always ends a document. Paragraphs, csv (quoted newlines), compressed
    files and columnar formats must be read whole by one reader.
    """
    if isinstance(path, Source):
        if path.kind != "file" or path.path is None:
            return False
        path = path.path
    path = Path(path)
    if path.suffix.lower() in COMPRESSED:
        return False
    kind = _kind(path, fmt)
    if kind in _JSON:
        return True
    return kind == "txt" and txt_unit == "line"


def iter_source(
    source: Source | str | Path,
    *,
    text_field: str = "text",
    text_column: str | Sequence[str] = "text",
    txt_unit: str = "line",
    fmt: str = "auto",
    sheet: str | None = None,
    report: FileReport | None = None,
    byte_range: tuple[int, int] | None = None,
) -> Iterator[str]:
    """Yield the stripped, non-empty documents of one corpus source.

    `source` is a resolved `Source`, or one entry as in data.corpus (not a glob; a plain path
    is taken as a file even if it no longer exists, so that it is reported as vanished).

    Strict (`report=None`): the first bad line raises a `UserError`, as does a source with no
    documents at all (unless `byte_range` is given: a piece of a file may well be empty).
    Tolerant (with `report`): bad lines are counted in it and skipped, a corrupt compressed
    stream ends the file, a vanished file yields nothing; configuration mistakes still raise.

    `byte_range=(start, end)` reads only the lines whose first byte lies in [start, end);
    only for `splittable` files. `end` may be past the end of the file.
    """
    if txt_unit not in ("line", "paragraph"):
        raise UserError(f"data.txt_unit={txt_unit!r}: must be 'line' or 'paragraph'")
    _check_format(fmt)
    columns = _columns(text_column)
    src = source if isinstance(source, Source) else _as_source(source, fmt)
    if byte_range is not None:
        start, end = byte_range
        if start < 0 or end < start:
            raise ValueError(f"byte_range={byte_range}: need 0 <= start <= end")
        if not splittable(src, fmt, txt_unit):
            raise ValueError(f"{src}: cannot be read in byte ranges (see splittable())")
    if report is not None and not report.path:
        report.path = str(src)
    ctx = _Ctx(str(src), report, byte_range)
    docs = _iter_source(src, ctx, text_field, columns, txt_unit, fmt, sheet)
    return _counted(docs, src, ctx, text_field, columns, fmt)


def iter_documents(
    paths: Sequence[str | Path],
    *,
    text_field: str = "text",
    text_column: str | Sequence[str] = "text",
    txt_unit: str = "line",
    max_documents: int | None = None,
    fmt: str = "auto",
    sheet: str | None = None,
) -> Iterator[str]:
    """Yield stripped, non-empty documents from the sources in order, stopping at max_documents.

    Strict: the first bad line raises. Every source must yield at least one document: an empty
    file in a corpus list is almost always a mistake (a wrong path, a failed export), so it is
    reported rather than skipped.
    """
    if txt_unit not in ("line", "paragraph"):
        raise UserError(f"data.txt_unit={txt_unit!r}: must be 'line' or 'paragraph'")
    if max_documents is not None and max_documents < 0:
        raise UserError(f"data.max_documents={max_documents}: must be positive (or null for all)")
    _check_format(fmt)
    _columns(text_column)
    sources = resolve_sources(paths, fmt)
    options = {
        "text_field": text_field,
        "text_column": text_column,
        "txt_unit": txt_unit,
        "fmt": fmt,
        "sheet": sheet,
    }
    return _iter_all(sources, options, max_documents)


# --- resolution helpers ----------------------------------------------------------------------


def _check_format(fmt: str) -> None:
    if fmt not in _FORMATS:
        raise UserError(f"data.format={fmt!r}: must be one of {', '.join(_FORMATS)}")


def _columns(text_column: str | Sequence[str]) -> list[str]:
    cols = [text_column] if isinstance(text_column, str) else list(text_column)
    if not cols or not all(isinstance(c, str) and c for c in cols):
        raise UserError(
            f"data.text_column={text_column!r}: give a column name or a list of column names"
        )
    return cols


def _is_hf_dir(p: Path) -> bool:
    return any((p / m).is_file() for m in _HF_MARKERS)


def is_hf_dir(p: Path) -> bool:
    """Whether `p` is a directory Hugging Face `save_to_disk` wrote."""
    return _is_hf_dir(p)


def _hub_source(spec: str, text: str) -> Source:
    spec, split_sep, split = spec.partition("::")
    name, config_sep, config = spec.partition(":")
    if not name or (config_sep and not config) or (split_sep and not split):
        raise UserError(
            f"{text}: not a Hugging Face dataset name; write hf:<name>, hf:<name>:<config> "
            "or hf:<name>:<config>::<split> in data.corpus"
        )
    return Source("hf_hub", name=name, config=config or None, split=split or None)


def _as_source(entry: str | Path, fmt: str) -> Source:
    """One data.corpus entry as a Source, without globbing or requiring that it exist."""
    text = str(entry)
    if text.startswith("hf:"):
        return _hub_source(text[3:], text)
    if "::" in text:
        base, _, split = text.rpartition("::")
        return Source("hf_disk", Path(base).expanduser(), split=split or None)
    p = Path(text).expanduser()
    if p.is_dir():
        return Source("hf_disk", p)
    if fmt == "hf" and not p.exists():
        return _hub_source(text, text)
    return Source("file", p)


def require_readers(
    entries: Sequence[str | Path], fmt: str = "auto", key: str = "data.corpus"
) -> None:
    """The one-line error a reader would give for a package it lacks (an extra not installed),
    given before a token cache or run folder is made: found only when the file was read, it
    left a half-made cache behind (a .lock and units.json; with other files, their shards)."""
    for src in resolve_sources(entries, fmt, key):
        if src.kind != "file":
            needs = file_packages("hf:")
        else:
            assert src.path is not None
            kind = _kind(src.path, fmt)  # data.format may name what the suffix does not
            needs = file_packages(str(src.path)) + file_packages(f"file{kind}")
        for module, what, extra in dict.fromkeys(needs):
            if not installed(module):
                raise UserError(
                    f"{src}: {what} needs {module}; run `pip install 'encoderlab[{extra}]'`"
                )


def installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (None in sys.modules: not)."""
    import sys
    from importlib.util import find_spec

    return sys.modules[module] is not None if module in sys.modules else bool(find_spec(module))


def file_packages(name: str) -> list[tuple[str, str, str]]:
    """(module, what needs it, extra) for reading a data file or entry by its name: a
    .parquet / .xlsx / .zst file, an hf: dataset."""
    if name.startswith("hf:"):
        return [("datasets", "reading Hugging Face datasets", "hf")]
    lower = name.lower()
    plain = lower.removesuffix(".zst")
    out = []
    if plain.endswith(".parquet"):
        out.append(("pyarrow", "reading .parquet files", "corpus"))
    if plain.endswith(".xlsx"):
        out.append(("openpyxl", "reading .xlsx files", "corpus"))
    if lower.endswith(".zst"):
        out.append(("zstandard", "reading .zst files", "corpus"))
    return out


def _kind(path: Path, fmt: str) -> str:
    """The format of a file: a suffix such as '.jsonl', or 'txt'."""
    if fmt != "auto":
        return fmt if fmt in ("txt", "hf") else "." + fmt
    suffix = _format_suffix(path)
    if suffix in _JSON or suffix in _CSV or suffix in _PARQUET or suffix in _XLSX:
        return suffix
    return "txt"


def _format_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


# --- reading ---------------------------------------------------------------------------------


class _Ctx(Where):
    """A read of one corpus source: strict without a `report`; tolerant with one, which counts
    the bad lines it skips (by kind) and keeps the first few messages."""

    __slots__ = ("report",)

    def __init__(
        self, label: str, report: FileReport | None, byte_range: tuple[int, int] | None
    ) -> None:
        super().__init__(label, byte_range)
        self.report = report

    def problem(self, kind: str, msg: str) -> None:
        """Raise in strict mode; count and remember the message in tolerant mode."""
        r = self.report
        if r is None:
            raise UserError(msg)
        if kind == "truncated_last_line":
            r.truncated_last_line = True
        else:
            setattr(r, kind, getattr(r, kind) + 1)
        if len(r.examples) < _MAX_EXAMPLES:
            r.examples.append(msg)

    def stop(self, msg: str, *, vanished: bool = False) -> None:
        """The rest of the source cannot be read: raise, or note it and let the caller end."""
        r = self.report
        if r is None:
            raise UserError(msg)
        if vanished:
            r.vanished = True
        else:
            r.corrupt = msg.split(": ", 1)[-1] if ": " in msg else msg
        if len(r.examples) < _MAX_EXAMPLES:
            r.examples.append(msg)


def _iter_all(sources: list[Source], options: dict[str, Any], limit: int | None) -> Iterator[str]:
    n = 0
    if limit == 0:
        return
    for src in sources:
        for doc in iter_source(src, **options):
            yield doc
            n += 1
            if limit is not None and n >= limit:
                return


def _counted(
    docs: Iterator[str],
    src: Source,
    ctx: _Ctx,
    text_field: str,
    columns: list[str],
    fmt: str,
) -> Iterator[str]:
    n = 0
    for doc in docs:
        n += 1
        if ctx.report is not None:
            ctx.report.documents += 1
        yield doc
    if n == 0 and ctx.report is None and ctx.end is None:
        raise UserError(_empty_message(src, text_field, columns, fmt))


def no_text_message(src: Source, options: dict[str, Any], key: str = "data.corpus") -> str:
    """What strict reading says of a source without a document, for a tolerant reader whose
    report shows one that had no bad line either (an empty file: a wrong path, a failed
    export); `key`: the config key that lists it."""
    columns = _columns(options.get("text_column", "text"))
    return _empty_message(
        src, options.get("text_field", "text"), columns, options.get("fmt", "auto"), key
    )


def _empty_message(
    src: Source, text_field: str, columns: list[str], fmt: str, key: str = "data.corpus"
) -> str:
    cols = ", ".join(f"'{c}'" for c in columns)
    what = f"column{'s' if len(columns) > 1 else ''} {cols} empty in every row"
    if src.kind != "file":
        return f"{src}: no text found ({what}); remove it from {key}"
    assert src.path is not None
    if _file_is_empty(src.path):
        return f"{src}: no text found (empty file); remove it from {key}"
    kind = _kind(src.path, fmt)
    if kind in _JSON:
        what = f"every '{text_field}' field is empty"
    elif kind == "txt":
        what = "only blank lines"
    return f"{src}: no text found ({what}); remove it from {key}"


def _file_is_empty(path: Path) -> bool:
    try:
        with open_binary(path) as fh:
            return fh.read(1) == b""
    except (UserError, *_READ_ERRORS):
        return False


def _iter_source(
    src: Source,
    ctx: _Ctx,
    text_field: str,
    columns: list[str],
    txt_unit: str,
    fmt: str,
    sheet: str | None,
) -> Iterator[str]:
    if src.kind != "file":
        yield from _iter_hf(src, ctx, columns)
        return
    path = src.path
    assert path is not None
    kind = _kind(path, fmt)
    if kind in _PARQUET:
        yield from _iter_parquet(path, ctx, columns)
        return
    if kind in _XLSX:
        yield from _iter_xlsx(path, ctx, columns, sheet)
        return
    if path.suffix.lower() == ".xls" and fmt == "auto":
        raise UserError(f"{path}: old .xls workbooks cannot be read; save it as .xlsx or .csv")
    if kind == "hf":
        raise UserError(
            f"{path}: data.format=hf needs a save_to_disk directory or an hf:<name> entry, "
            "not a file; set data.format to the file's format (or auto)"
        )
    try:
        fh = open_binary(path)
    except OSError as e:
        ctx.stop(f"{path}: cannot open ({e.strerror or e})", vanished=True)
        return
    with fh:
        lines = decoded_lines(path, ctx, fh)
        if kind not in _JSON and kind not in _CSV and not ctx.start:  # plain text, read from
            lines = _no_bare_cr(path, lines)  # its first byte: one document a line
        if kind in _JSON:
            yield from _iter_jsonl(path, ctx, lines, text_field)
        elif kind in _CSV:
            yield from _iter_csv(path, ctx, lines, columns, _CSV[kind])
        elif txt_unit == "paragraph":
            yield from _iter_paragraphs(lines)
        else:
            lines = _refuse_table_as_text(path, lines, columns, text_field)
            for _, _, line in lines:
                doc = line.strip()
                if doc:
                    yield doc


def _refuse_table_as_text(
    path: Path, lines: Iterator[tuple[int, int, str]], columns: list[str], text_field: str
) -> Iterator[tuple[int, int, str]]:
    """A table or JSON lines named .txt, whose first line names the configured text column or
    field: read as text, its header, ids and labels would be trained on. Refused at line 1."""
    first = next(lines, None)
    if first is None:
        return iter(())
    head = first[2].strip()
    split = [c.strip().strip('"') for c in re.split(r"[\t,]", head)]
    cells = set(split)
    # a column called "text" is a common word: only a line of name-like cells is a header
    header = len(split) > 1 and all(re.fullmatch(r"[\w.-]{1,40}", c) for c in split)
    named = [c for c in columns if c in cells and (c != "text" or header)]
    keyed = head.startswith("{") and f'"{text_field}"' in head
    if keyed and text_field == "text":
        keyed = isinstance(_json_object(head), dict)
    if named or keyed:
        what = f"column '{named[0]}'" if named else f"field '{text_field}'"
        raise UserError(
            f"{path}:1: this file is read as plain text (from its name), but its first line "
            f"names the {what}; set data.format to tsv, csv or "
            "jsonl to read its columns"
        )
    return itertools.chain([first], lines)


def _json_object(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _no_bare_cr(
    path: Path, lines: Iterator[tuple[int, int, str]]
) -> Iterator[tuple[int, int, str]]:
    """`lines`, after refusing a file of bare-CR line ends at its first line (refuse_bare_cr)."""
    first = next(lines, None)
    if first is None:
        return iter(())
    refuse_bare_cr(path, first[2])
    return itertools.chain([first], lines)


def _iter_paragraphs(lines: Iterable[tuple[int, int, str]]) -> Iterator[str]:
    para: list[str] = []
    for _, _, line in lines:
        line = line.strip()
        if line:
            para.append(line)
        elif para:
            yield "\n".join(para)
            para = []
    if para:
        yield "\n".join(para)


def _iter_jsonl(
    path: Path, ctx: _Ctx, lines: Iterable[tuple[int, int, str]], field: str
) -> Iterator[str]:
    # A field that no record has is a wrong data.text_field, not bad data: raise even when
    # tolerant. Only a read from the start of the file can tell.
    seen_field = ctx.start > 0
    for lineno, offset, obj in jsonl_objects(path, ctx, lines, field):
        if field not in obj:
            fields = ", ".join(map(str, obj)) or "none"
            msg = f"{ctx.loc(lineno, offset)}: no field '{field}' (fields: {fields}); set data.text_field"
            if not seen_field:
                raise UserError(msg)
            ctx.problem("bad_records", msg)
            continue
        seen_field = True
        value = obj[field]
        if value is None:
            continue
        if not isinstance(value, str):
            ctx.problem(
                "bad_records",
                f"{ctx.loc(lineno, offset)}: field '{field}' is {json_type(value)}, not a string; "
                "set data.text_field to a text field",
            )
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a JSON escape of half a surrogate pair: no tokenizer takes it
            ctx.problem("bad_records", f"{ctx.loc(lineno, offset)}: field '{field}' {HALF_PAIR}")
            continue
        doc = value.strip()
        if doc:
            yield doc


def _column_indexes(label: str | Path, header: list[str], columns: list[str]) -> list[int]:
    missing = [c for c in columns if c not in header]
    if missing:
        if len(header) == 1 and "\t" in header[0]:  # a TSV read as CSV: one column, tabs in it
            raise UserError(
                f"{label}: its header is one column holding tabs ({header[0].split(chr(9))[0]}"
                "<TAB>...): a tab-separated file read as CSV; set data.format=tsv"
            )
        cols = ", ".join(h for h in header) or "none"
        raise UserError(
            f"{label}: no column '{missing[0]}' (columns: {cols}); set data.text_column"
        )
    return [header.index(c) for c in columns]


def _iter_csv(
    path: Path,
    ctx: _Ctx,
    lines: Iterable[tuple[int, int, str]],
    columns: list[str],
    delimiter: str,
) -> Iterator[str]:
    header: list[str] | None = None
    idxs: list[int] = []
    need = 0
    for lineno, offset, row in csv_rows(ctx, lines, delimiter):
        if header is None:
            header = [h.strip() for h in row]
            idxs = _column_indexes(path, header, columns)
            need = max(idxs)
            continue
        if need >= len(row):
            ctx.problem(
                "bad_records", wrong_length(ctx.loc(lineno, offset), row, header, delimiter)
            )
            continue
        for i in idxs:
            doc = row[i].strip()
            if doc:
                yield doc


# --- columnar formats ------------------------------------------------------------------------


def _iter_parquet(path: Path, ctx: _Ctx, columns: list[str]) -> Iterator[str]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(
            f"{path}: reading .parquet files needs pyarrow; run `pip install 'encoderlab[corpus]'`"
        ) from None
    try:
        pf = pq.ParquetFile(path)
    except (FileNotFoundError, PermissionError) as e:
        ctx.stop(f"{path}: cannot open ({e.strerror or e})", vanished=True)
        return
    except (OSError, pa.ArrowException) as e:
        ctx.stop(f"{path}: not a readable Parquet file ({_first_line(e)}); check the file")
        return
    with pf:
        schema = pf.schema_arrow
        _column_indexes(path, list(schema.names), columns)
        for c in columns:
            t = schema.field(c).type
            if pa.types.is_dictionary(t):
                t = t.value_type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(pa, t)):
                raise UserError(
                    f"{path}: column '{c}' holds {t}, not text; set data.text_column to a "
                    "text column"
                )
        try:
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, columns=columns):
                cells = [batch.column(i).to_pylist() for i in range(len(columns))]
                for row in zip(*cells, strict=True):
                    for value in row:
                        if value:
                            doc = value.strip()
                            if doc:
                                yield doc
        except (OSError, pa.ArrowException) as e:
            ctx.stop(f"{path}: cannot read the file ({_first_line(e)}); is it truncated?")


def _is_string_view(pa: Any, t: Any) -> bool:
    check = getattr(pa.types, "is_string_view", None)
    return bool(check and check(t))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _iter_xlsx(path: Path, ctx: _Ctx, columns: list[str], sheet: str | None) -> Iterator[str]:
    try:
        import openpyxl
    except ImportError:
        raise UserError(
            f"{path}: reading .xlsx files needs openpyxl; run `pip install 'encoderlab[corpus]'`"
        ) from None
    from xml.etree.ElementTree import ParseError

    bad = (*_READ_ERRORS, zipfile.BadZipFile, ParseError, KeyError, ValueError)
    try:
        with warnings.catch_warnings():  # "no default style" and other cosmetic complaints
            warnings.simplefilter("ignore")
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (FileNotFoundError, PermissionError) as e:
        ctx.stop(f"{path}: cannot open ({e.strerror or e})", vanished=True)
        return
    except bad as e:
        ctx.stop(f"{path}: not a readable .xlsx workbook ({_first_line(e)}); check the file")
        return
    try:
        if sheet is None:
            ws = wb.worksheets[0]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            names = ", ".join(wb.sheetnames)
            raise UserError(f"{path}: no sheet '{sheet}' (sheets: {names}); set data.sheet")
        label = f"{path}[{ws.title}]" if sheet is not None else path
        rows = ws.iter_rows(values_only=True)
        try:
            header_row = next(rows, None)
            if header_row is None:
                return
            header = ["" if h is None else str(h).strip() for h in header_row]
            idxs = _column_indexes(label, header, columns)
            for row in rows:
                for i in idxs:
                    value = row[i] if i < len(row) else None  # trailing empty cells are cut
                    if value is None:
                        continue
                    doc = (value if isinstance(value, str) else str(value)).strip()
                    if doc:
                        yield doc
        except bad as e:
            ctx.stop(f"{path}: cannot read the workbook ({_first_line(e)}); is it truncated?")
    finally:
        wb.close()


# --- Hugging Face datasets -------------------------------------------------------------------


def _import_datasets(label: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise UserError(
            f"{label}: reading Hugging Face datasets needs the datasets package; "
            "run `pip install 'encoderlab[hf]'`"
        ) from None
    return datasets


def open_hf(src: Source, stop: Callable[..., None], key: str = "data.corpus") -> Any | None:
    """The Dataset a `save_to_disk` directory (its `::split` of a DatasetDict, default train)
    or an `hf:` Hub name (streamed) holds, or None after `stop(msg, vanished=...)` (which a
    strict reader makes raise). `key` names the setting in messages. Fine-tuning tasks read
    their `task.train: dir` and `hf:name` files through this too."""
    datasets = _import_datasets(str(src))
    if src.kind == "hf_disk":
        assert src.path is not None
        if not src.path.is_dir() or not _is_hf_dir(src.path):
            stop(f"{src}: the dataset directory is gone or unreadable", vanished=True)
            return None
        try:
            ds = datasets.load_from_disk(str(src.path))
        except (FileNotFoundError, PermissionError) as e:
            stop(f"{src}: cannot open ({e.strerror or e})", vanished=True)
            return None
        except Exception as e:
            stop(f"{src}: not a readable save_to_disk directory ({_first_line(e)})")
            return None
        if isinstance(ds, datasets.DatasetDict):
            split = src.split or "train"
            if split not in ds:
                raise UserError(
                    f"{src}: no split '{split}' (splits: {', '.join(ds)}); "
                    f"write {src.path}::<split> in {key}"
                )
            ds = ds[split]
        elif src.split:
            raise UserError(
                f"{src}: a single dataset, not a DatasetDict; remove '::{src.split}' from {key}"
            )
        return ds
    try:
        return datasets.load_dataset(
            src.name, src.config, split=src.split or "train", streaming=True
        )
    except Exception as e:
        raise UserError(
            f"{src}: cannot load from the Hugging Face Hub ({_first_line(e)}); check the "
            "name and the internet connection, or save it with save_to_disk and list that "
            f"directory in {key}"
        ) from None


def as_source(entry: str | Path, fmt: str = "auto") -> Source:
    """One entry (a file, a save_to_disk directory with an optional ::split, hf:<name>) as
    a Source, without globbing or requiring that it exist."""
    return _as_source(entry, fmt)


def _iter_hf(src: Source, ctx: _Ctx, columns: list[str]) -> Iterator[str]:
    ds = open_hf(src, ctx.stop)
    if ds is None:
        return
    names = ds.column_names
    if names is not None:
        _column_indexes(src, list(names), columns)
        features = getattr(ds, "features", None) or {}
        for c in columns:
            feature = features.get(c)
            if feature is not None and getattr(feature, "dtype", None) not in (
                "string",
                "large_string",
                "string_view",
            ):
                raise UserError(
                    f"{src}: column '{c}' holds {features[c]}, not text; set data.text_column "
                    "to a text column"
                )
        ds = ds.select_columns(columns)
    row = 0
    try:
        for batch in ds.iter(batch_size=_HF_BATCH):
            if names is None:  # a streamed dataset may only know its columns now
                names = list(batch)
                _column_indexes(src, names, columns)
            cells = [batch[c] for c in columns]
            for values in zip(*cells, strict=True):
                row += 1
                for c, value in zip(columns, values, strict=True):
                    if value is None:
                        continue
                    if not isinstance(value, str):
                        ctx.problem(
                            "bad_records",
                            f"{src}: row {row}: column '{c}' is {type(value).__name__}, "
                            "not text; set data.text_column to a text column",
                        )
                        continue
                    doc = value.strip()
                    if doc:
                        yield doc
    except UserError:
        raise
    except Exception as e:
        ctx.stop(f"{src}: cannot read row {row + 1} ({_first_line(e)})")
