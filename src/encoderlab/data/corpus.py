"""Stream documents (plain strings) out of corpus files, whatever their format.

Files are read line by line, never whole, so a corpus may be larger than memory. Problems in
the user's files become one-line `UserError`s that name the file and line and say how to fix
them, because a traceback from deep inside the csv or json module helps nobody.

Formats, chosen by suffix (after removing a `.gz`, `.bz2`, `.xz` or `.zst` compression suffix):
  .jsonl / .json   one JSON object per line; the document is its `text_field`
  .csv / .tsv      a header row, then one document per row from column `text_column`
                   (.tsv is split on tabs with no quoting, as most TSV writers expect)
  anything else    plain text: a document per non-empty line, or per blank-line-separated
                   paragraph (`txt_unit="paragraph"`)
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import io
import json
import lzma
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from encoderlab.errors import UserError

_COMPRESSED = {".gz", ".bz2", ".xz", ".zst"}
_JSON = {".jsonl", ".json", ".ndjson"}
_CSV = {".csv": ",", ".tsv": "\t"}
_GLOB_CHARS = set("*?[")

# Documents (a review, a Wikipedia article) can be long; the csv default of 128 KiB is not.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def resolve_paths(paths: Sequence[str | Path] | str | Path | None) -> list[Path]:
    """Expand globs and check that every corpus file exists, before any reading starts.

    Failing early matters: a missing third file should not be discovered an hour into
    tokenizing the first two.
    """
    if paths is None or isinstance(paths, (str, Path)):
        paths = [] if paths is None else [paths]
    if not paths:
        raise UserError(
            "no corpus files given; set data.corpus to a list of .txt/.jsonl/.csv/.tsv files "
            "(e.g. --set 'data.corpus=[train.txt]')"
        )
    out: list[Path] = []
    for raw in paths:
        text = str(raw)
        p = Path(text).expanduser()
        if p.is_file():
            out.append(p)
            continue
        if p.is_dir():
            raise UserError(
                f"{text}: is a directory, not a corpus file; list its files in data.corpus "
                f"or use a glob such as '{text.rstrip('/')}/*.txt'"
            )
        if _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise UserError(f"{text}: the pattern matches no files; check data.corpus")
            out.extend(files)
            continue
        raise UserError(f"{text}: corpus file not found; check the path in data.corpus")
    return out


def describe_sources(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Resolved path, size and mtime of each corpus file: a cheap key for caches built from them.

    A changed file changes its size or mtime, so a cache keyed on this is rebuilt; hashing the
    content instead would mean reading a possibly huge corpus on every run.
    """
    out = []
    for p in resolve_paths(paths):
        st = p.stat()
        out.append({"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def iter_documents(
    paths: Sequence[str | Path],
    *,
    text_field: str = "text",
    text_column: str = "text",
    txt_unit: str = "line",
    max_documents: int | None = None,
    fmt: str = "auto",
) -> Iterator[str]:
    """Yield stripped, non-empty documents from the files in order, stopping at max_documents.

    Every file must yield at least one document: an empty file in a corpus list is almost
    always a mistake (a wrong path, a failed export), so it is reported rather than skipped.
    """
    if txt_unit not in ("line", "paragraph"):
        raise UserError(f"data.txt_unit={txt_unit!r}: must be 'line' or 'paragraph'")
    if max_documents is not None and max_documents < 0:
        raise UserError(f"data.max_documents={max_documents}: must be positive (or null for all)")
    if fmt not in ("auto", "txt", "jsonl", "csv", "tsv"):
        raise UserError(f"data.format={fmt!r}: must be auto, txt, jsonl, csv or tsv")
    files = resolve_paths(paths)
    return _iter_all(files, text_field, text_column, txt_unit, max_documents, fmt)


def _iter_all(
    files: list[Path],
    text_field: str,
    text_column: str,
    txt_unit: str,
    limit: int | None,
    fmt: str = "auto",
) -> Iterator[str]:
    n = 0
    if limit == 0:
        return
    for path in files:
        n_file = 0
        for doc in _iter_file(path, text_field, text_column, txt_unit, fmt):
            n_file += 1
            yield doc
            n += 1
            if limit is not None and n >= limit:
                return
        if n_file == 0:
            raise UserError(_empty_message(path, text_field, text_column))


def _empty_message(path: Path, text_field: str, text_column: str) -> str:
    if _file_is_empty(path):
        return f"{path}: no text found (empty file); remove it from data.corpus"
    kind = _format_suffix(path)
    if kind in _JSON:
        what = f"every '{text_field}' field is empty"
    elif kind in _CSV:
        what = f"column '{text_column}' is empty in every row"
    else:
        what = "only blank lines"
    return f"{path}: no text found ({what}); remove it from data.corpus"


def _file_is_empty(path: Path) -> bool:
    try:
        with _open_binary(path) as fh:
            return fh.read(1) == b""
    except UserError:
        return False


def _format_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _open_binary(path: Path) -> IO[bytes]:
    """Open a file for binary reading, decompressing on the fly by suffix."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".gz":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        if suffix == ".bz2":
            return bz2.open(path, "rb")  # type: ignore[return-value]
        if suffix == ".xz":
            return lzma.open(path, "rb")  # type: ignore[return-value]
        if suffix == ".zst":
            try:
                import zstandard
            except ImportError:
                raise UserError(
                    f"{path}: reading .zst files needs the zstandard package; "
                    "run `pip install zstandard` or decompress the file"
                ) from None
            raw = open(path, "rb")  # noqa: SIM115 - closed with the reader
            reader = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
            return io.BufferedReader(reader)  # type: ignore[arg-type]
        return open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise UserError(f"{path}: cannot open ({e.strerror or e})") from None


def _decoded_lines(path: Path, fh: IO[bytes]) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) pairs; a bad byte is reported with its line and column."""
    lineno = 0
    try:
        for lineno, raw in enumerate(fh, start=1):  # noqa: B007 - used after the loop on errors
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                bad = raw[e.start]
                raise UserError(
                    f"{path}:{lineno}: not UTF-8 text (byte 0x{bad:02x} at column {e.start + 1}); "
                    "convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
                ) from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]  # byte-order mark written by some Windows editors
            yield lineno, text
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise UserError(
            f"{path}:{lineno + 1}: cannot read the file ({e}); is it truncated or not really "
            f"{path.suffix} compressed?"
        ) from None
    except Exception as e:  # zstandard.ZstdError and friends, without importing zstandard
        if type(e).__module__.startswith("zstandard"):
            raise UserError(f"{path}:{lineno + 1}: cannot decompress the file ({e})") from None
        raise


def _iter_file(
    path: Path, text_field: str, text_column: str, txt_unit: str, fmt: str = "auto"
) -> Iterator[str]:
    kind = _format_suffix(path) if fmt == "auto" else "." + fmt
    with _open_binary(path) as fh:
        lines = _decoded_lines(path, fh)
        if kind in _JSON:
            yield from _iter_jsonl(path, lines, text_field)
        elif kind in _CSV:
            yield from _iter_csv(path, lines, text_column, _CSV[kind])
        elif txt_unit == "paragraph":
            yield from _iter_paragraphs(lines)
        else:
            for _, line in lines:
                doc = line.strip()
                if doc:
                    yield doc


def _iter_paragraphs(lines: Iterable[tuple[int, str]]) -> Iterator[str]:
    para: list[str] = []
    for _, line in lines:
        line = line.strip()
        if line:
            para.append(line)
        elif para:
            yield "\n".join(para)
            para = []
    if para:
        yield "\n".join(para)


def _iter_jsonl(path: Path, lines: Iterable[tuple[int, str]], field: str) -> Iterator[str]:
    for lineno, line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            if lineno == 1 and stripped in ("[", "{"):
                raise UserError(
                    f"{path}: a multi-line JSON document, not JSON lines; write one object per "
                    f"line (e.g. `jq -c '.[]' {path.name} > {path.stem}.jsonl`)"
                ) from None
            raise UserError(
                f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); "
                "fix or remove the line"
            ) from None
        if not isinstance(obj, dict):
            hint = (
                f"write one object per line (e.g. `jq -c '.[]' {path.name} > {path.stem}.jsonl`)"
                if isinstance(obj, list)
                else f'each line must be an object like {{"{field}": "..."}}'
            )
            raise UserError(
                f"{path}:{lineno}: expected a JSON object, got {_json_type(obj)}; {hint}"
            )
        if field not in obj:
            fields = ", ".join(map(str, obj)) or "none"
            raise UserError(
                f"{path}:{lineno}: no field '{field}' (fields: {fields}); set data.text_field"
            )
        value = obj[field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise UserError(
                f"{path}:{lineno}: field '{field}' is {_json_type(value)}, not a string; "
                "set data.text_field to a text field"
            )
        doc = value.strip()
        if doc:
            yield doc


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    for t, name in names.items():
        if isinstance(value, t):
            return name
    return "null" if value is None else "a number"


def _iter_csv(
    path: Path, lines: Iterable[tuple[int, str]], column: str, delimiter: str
) -> Iterator[str]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader((line for _, line in lines), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader, None)
        if header is None:
            return  # empty file: reported by the caller
        header = [h.strip() for h in header]
        if column not in header:
            cols = ", ".join(h for h in header) or "none"
            raise UserError(f"{path}: no column '{column}' (columns: {cols}); set data.text_column")
        idx = header.index(column)
        start = reader.line_num + 1
        for row in reader:
            if not row:  # a blank line
                start = reader.line_num + 1
                continue
            if idx >= len(row):
                raise UserError(
                    f"{path}:{start}: row has {len(row)} fields but the header has "
                    f"{len(header)}; fix the row (a stray quote or {_sep_name(delimiter)}?)"
                )
            doc = row[idx].strip()
            start = reader.line_num + 1
            if doc:
                yield doc
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: not valid CSV ({e}); fix the row") from None


def _sep_name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else f"'{delimiter}'"
