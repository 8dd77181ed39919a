"""One reader for table files: .csv / .tsv (a header row), .jsonl (an object per line) and .json
(an array of objects). Fine-tuning (`tasks.classification`), studies (`split:`) and the
pretraining corpus (`data.corpus`) all read through it, so a file reads, and fails, the same
way everywhere.

Why one reader: the three used to differ in what they forgave (a byte-order mark, stray quotes
in a TSV) and in how they failed (a traceback from the csv module, an error with no line
number). Here every problem is a one-line `UserError` naming file:line, what is wrong and how
to fix it; a UTF-8 byte-order mark is dropped; a .tsv is split on tabs with no quoting (GLUE
files hold stray quotes); lines are streamed, so a corpus may be larger than memory.

Where a problem goes is a `Where`: this class raises at the first one (strict); the corpus
reader's subclass counts and skips bad lines instead (tolerant), and reads byte ranges.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import random
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from encoderlab.errors import UserError

FORMATS = ("csv", "tsv", "jsonl", "json", "fasttext")
FASTTEXT_LABEL = "__label__"  # fastText's label prefix: `__label__pos __label__new text ...`
DELIMITERS = {"csv": ",", "tsv": "\t"}
# Errors a decompressor or a failing disk raises part-way through a file.
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)
Row = tuple[int, dict[str, Any]]  # (first line of the row (json: item number), the row)

# Documents (a review, a Wikipedia article) can be long; the csv default of 128 KiB is not.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class Where:
    """Where one read reports problems, and how it names a line in messages.

    Strict: `problem` and `stop` raise. Line numbers are only known when reading from the
    start of a file; a read of a byte range names a line by its byte offset instead."""

    __slots__ = ("label", "start", "end")

    def __init__(self, label: str, byte_range: tuple[int, int] | None = None) -> None:
        self.label = label
        self.start, self.end = byte_range if byte_range is not None else (0, None)

    def loc(self, lineno: int, offset: int) -> str:
        return f"{self.label}:{lineno}" if self.start == 0 else f"{self.label} (byte {offset})"

    def problem(self, kind: str, msg: str) -> None:
        """A bad line (`kind` names the counter a tolerant reader adds it to)."""
        raise UserError(msg)

    def stop(self, msg: str, *, vanished: bool = False) -> None:
        """The rest of the file cannot be read."""
        raise UserError(msg)


COMPRESSED = (".gz", ".bz2", ".xz", ".zst")  # decompressed on the fly, by the name's suffix


def plain_name(path: str | Path) -> str:
    """The file's name in lower case without a compression suffix: what tells its format
    (`train.csv.gz` reads as a csv)."""
    name = Path(path).name.lower()
    return next((name[: -len(s)] for s in COMPRESSED if name.endswith(s)), name)


def refuse_tar(path: Path) -> None:
    """A tar archive is several files packed together: one line saying so, before a reader
    guesses at its format (it was told to set task.format, which only led here)."""
    name = path.name.lower()
    if plain_name(path).endswith(".tar") or name.endswith((".tgz", ".tbz2", ".txz")):
        raise UserError(
            f"{path}: a tar archive (a folder of files packed together), not a data file; "
            f"extract it (`tar xf {path.name}`) and point at the file inside"
        )


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for binary reading, decompressing on the fly by suffix.

    An OSError (the file is gone or unreadable) is left to the caller, which knows whether
    that is an error or a vanished file to report.
    """
    refuse_tar(path)
    suffix = path.suffix.lower()
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
                "run `pip install 'encoderlab[corpus]'` or decompress the file"
            ) from None
        raw = open(path, "rb")  # noqa: SIM115 - closed with the reader
        return io.BufferedReader(_ZstdFrames(raw, zstandard.ZstdDecompressor()))
    return open(path, "rb")  # noqa: SIM115


class _ZstdFrames(io.RawIOBase):
    """Decompress every frame of a .zst file, one frame at a time.

    Many .zst files (pzstd output, concatenated dumps) hold several frames. Handing out each
    frame's text before touching the next keeps it when a later frame is corrupt, and a last
    frame that stops short is reported as truncation rather than silently ended.
    """

    _CHUNK = 1 << 16

    def __init__(self, fh: IO[bytes], decompressor: Any) -> None:
        self._fh, self._dctx = fh, decompressor
        self._obj = decompressor.decompressobj()
        self._in_frame = False  # fed input to the current frame that has not ended yet
        self._carry = b""  # input after the end of a frame, for the next one
        self._out = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        while not self._out:
            data, self._carry = self._carry or self._fh.read(self._CHUNK), b""
            if not data:
                if self._in_frame:
                    raise EOFError("the file ends inside a zstd frame")
                return 0
            self._in_frame = True
            self._out = self._obj.decompress(data)
            if self._obj.eof:  # a frame ended: the next decompress starts a new one
                self._carry = self._obj.unused_data
                self._obj = self._dctx.decompressobj()
                self._in_frame = False
        n = min(len(buf), len(self._out))
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def read_bytes(path: Path, limit: int = -1) -> bytes:
    """The whole file (or its first `limit` bytes), decompressed by its suffix; a corrupt or
    truncated one is a one-line error naming it."""
    try:
        with open_binary(path) as fh:
            return fh.read(limit)
    except READ_ERRORS as e:
        why = getattr(e, "strerror", None) or e
        raise UserError(f"{path}: cannot read the file ({why}){_compressed_hint(path)}") from None
    except UserError:
        raise
    except Exception as e:  # zstandard.ZstdError, without importing zstandard
        if type(e).__module__.startswith("zstandard"):
            raise UserError(f"{path}: cannot decompress the file ({e})") from None
        raise


def _compressed_hint(path: Path) -> str:
    suffix = Path(path).suffix.lower()
    return f"; is it truncated or not really {suffix} compressed?" if suffix in COMPRESSED else ""


# --- lines -----------------------------------------------------------------------------------


def decoded_lines(path: Path, where: Where, fh: IO[bytes]) -> Iterator[tuple[int, int, str]]:
    """(1-based line number, byte offset, text with its line end) for each line in range.

    A line that is not UTF-8 is reported with its line and column (and skipped if tolerant);
    a byte-order mark at the start of the file is dropped. The offset is only tracked when
    reading a byte range; a whole-file read gives 0.
    """
    start, end = where.start, where.end
    lineno, pos = 0, 0
    try:
        if end is None:  # the whole file: the hot path, kept lean
            for lineno, raw in enumerate(fh, start=1):  # noqa: B007 - used on errors
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    _bad_encoding(where, raw, e, lineno, 0)
                    continue
                if lineno == 1:
                    _refuse_utf16(where, raw, 0)
                    text = text.removeprefix("\ufeff")  # a BOM some Windows editors write
                if "\x00" in text:
                    _nul_bytes(where, lineno, 0)
                    continue
                yield lineno, 0, text
            return
        if start > 0:
            # The line holding byte start-1 belongs to the previous range (if that byte is a
            # newline, the line is empty and the next one starts exactly at `start`).
            fh.seek(start - 1)
            pos = start - 1 + len(fh.readline())
        for raw in fh:
            if pos >= end:
                return
            lineno += 1
            offset = pos
            pos += len(raw)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                _bad_encoding(where, raw, e, lineno, offset)
                continue
            if offset == 0:
                _refuse_utf16(where, raw, lineno)
                text = text.removeprefix("\ufeff")
            if "\x00" in text:
                _nul_bytes(where, lineno, offset)
                continue
            yield lineno, offset, text
    except READ_ERRORS as e:
        where.stop(
            f"{where.loc(lineno + 1, pos)}: cannot read the file ({e}); is it truncated or not "
            f"really {path.suffix} compressed?"
        )
    except UserError:
        raise
    except Exception as e:  # zstandard.ZstdError and friends, without importing zstandard
        if type(e).__module__.startswith("zstandard"):
            where.stop(f"{where.loc(lineno + 1, pos)}: cannot decompress the file ({e})")
            return
        raise


def _refuse_utf16(where: Where, raw: bytes, lineno: int) -> None:
    """UTF-16 without a byte-order mark decodes as UTF-8 (a NUL after every ASCII letter),
    then reads as rows of garbage; a first line that is a third NUL bytes is not text."""
    if len(raw) >= 4 and raw.count(b"\x00") * 3 >= len(raw):
        where.stop(f"{where.loc(max(lineno, 1), 0)}: not UTF-8 text; {to_utf8(raw)}")


def _bad_encoding(
    where: Where, raw: bytes, e: UnicodeDecodeError, lineno: int, offset: int
) -> None:
    where.problem(
        "bad_encoding_lines",
        f"{where.loc(lineno, offset)}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
        f"{e.start + 1}); {to_utf8(raw)}",
    )


def _nul_bytes(where: Where, lineno: int, offset: int) -> None:
    """NUL bytes are never text: a zero-filled tail left by a crash, or a binary file."""
    where.problem(
        "bad_encoding_lines",
        f"{where.loc(lineno, offset)}: NUL bytes, not text (a zero-filled tail left by a crash, "
        "or a binary file?); remove them",
    )


def refuse_bare_cr(path: Path | str, first_line: str) -> None:
    """A file whose lines end in a bare CR (classic Mac OS) reads as a single line, so every
    example or document would run into one: refused at line 1 instead. Only when that line is
    the whole file (it has no LF end) and holds a CR inside it, so a CR inside one line of a
    normal file is left alone."""
    if not first_line.endswith("\n") and "\r" in first_line.rstrip("\r"):
        raise UserError(
            f"{path}:1: its lines end in a bare CR (old Mac style), so the whole file reads as "
            "one line; convert them to LF newlines (e.g. tr '\\r' '\\n' < old > new)"
        )


def to_utf8(raw: bytes) -> str:
    """How to convert a file whose bytes `raw` (its start, or the bad line) are not UTF-8:
    UTF-16 shows a byte-order mark or NUL bytes; Korean in CP949/EUC-KR decodes to Hangul
    (converted as Latin-1 it would silently become mojibake); otherwise most likely
    Windows-1252/Latin-1."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:200]:
        return "it looks like UTF-16: convert it with `iconv -f utf-16 -t utf-8`"
    if _looks_korean(raw):
        return "it looks like Korean in CP949/EUC-KR: convert it with `iconv -f cp949 -t utf-8`"
    return "convert the file to UTF-8 (from Windows-1252/Latin-1: `iconv -f cp1252 -t utf-8`)"


def _looks_korean(raw: bytes) -> bool:
    """Whether `raw` decodes as CP949 (EUC-KR and its extension) into text whose non-ASCII
    letters are nearly all Hangul: Latin-1 text almost never does (a lead byte there is an
    accented letter, rarely followed by a valid trail byte)."""
    try:
        text = raw.decode("cp949")
    except UnicodeDecodeError:
        return False
    wide = [c for c in text if ord(c) > 0x7F]
    hangul = sum("\uac00" <= c <= "\ud7a3" or "\u3131" <= c <= "\u318e" for c in wide)
    return hangul >= 2 and hangul >= 0.9 * len(wide)


def json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    for t, name in names.items():
        if isinstance(value, t):
            return name
    return "null" if value is None else "a number"


# --- rows ------------------------------------------------------------------------------------


def jsonl_objects(
    path: Path,
    where: Where,
    lines: Iterable[tuple[int, int, str]],
    field: str | None = None,
    unique: bool = False,
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(line, offset, object) for each non-blank line of a JSON-lines file. `field` (the key
    the caller wants) makes the hint for a line that is not an object concrete. `unique`: an
    object with a key twice is an error (a task's row would keep the last value, unsaid).

    A JSON array file (one document over many lines) raises even when tolerant: every line
    would be bad, so counting them helps nobody."""
    first = where.start == 0
    # never onto the input's own name: the shell would empty it before jq reads it
    jq = f"`jq -c '.[]' {path.name} > {path.stem}-rows.jsonl`"
    for lineno, offset, line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        is_first, first = first, False
        try:
            obj = _json_value(stripped, where.loc(lineno, offset), unique)
        except json.JSONDecodeError as e:
            if is_first and stripped in ("[", "{"):
                raise UserError(
                    f"{path}: a multi-line JSON document, not JSON lines; write one object per "
                    f"line (e.g. {jq})"
                ) from None
            what = f"{where.loc(lineno, offset)}: not valid JSON ({e.msg} at column {e.colno})"
            if line.endswith("\n"):
                where.problem("bad_records", f"{what}; fix or remove the line")
            else:
                where.problem(
                    "truncated_last_line",
                    f"{what} in the last line, which has no newline; was the file cut short? "
                    "fix or remove the line",
                )
            continue
        if not isinstance(obj, dict):
            if isinstance(obj, list):
                hint = f"write one object per line (e.g. {jq})"
            elif field is not None:
                hint = f'each line must be an object like {{"{field}": "..."}}'
            else:
                hint = "each line must be one JSON object"
            msg = (
                f"{where.loc(lineno, offset)}: expected a JSON object, got {json_type(obj)}; {hint}"
            )
            if is_first and isinstance(obj, list):
                raise UserError(msg)
            where.problem("bad_records", msg)
            continue
        yield lineno, offset, obj


def _opens_a_quote(row: list[str]) -> bool:
    """A cell that starts a quoted field which this line does not close (an odd number of
    quote characters in it): CSV quoting carried over a line break, if a later line closes it."""
    return any(c.startswith('"') and c.count('"') % 2 == 1 for c in row)


def _closes_a_quote(row: list[str]) -> bool:
    """A cell that ends a quote opened on an earlier line (`rest of the text"`)."""
    return any(not c.startswith('"') and c.count('"') % 2 == 1 for c in row)


def csv_rows(
    where: Where, lines: Iterable[tuple[int, int, str]], delimiter: str
) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, offset, fields) for each non-blank row, the header included. A row the
    csv module cannot parse is a problem; a .tsv (tab) has no quoting at all."""
    # The first line and offset of the row being read, for messages; set by the feeder.
    row_start = [1, 0, True]
    # The text of the row being read, and whether the feeder has run dry: a row the end of
    # the file closes may be one whose quote never closed, which the csv module (not strict)
    # would hand back as one field holding the rest of the file.
    row_text: list[str] = []
    ended = [False]

    def feed() -> Iterator[str]:
        for lineno, offset, text in lines:
            if row_start[2]:
                row_start[0], row_start[1], row_start[2] = lineno, offset, False
                row_text.clear()
            row_text.append(text)
            yield text
        ended[0] = True

    quoted = delimiter != "\t"
    quoting = csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    reader = csv.reader(feed(), delimiter=delimiter, quoting=quoting)
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:
            why = str(e)
            if "new-line character seen in unquoted field" in why:  # CR alone ends its lines
                why = "its lines end in a bare CR (old Mac style); convert them to LF newlines"
            where.problem(
                "bad_records", f"{where.loc(*row_start[:2])}: not valid CSV ({why}); fix the row"
            )
            row_start[2] = True
            continue
        if row is None:
            return
        lineno, offset = row_start[0], row_start[1]
        row_start[2] = True
        if quoted and ended[0] and row and _unterminated(row_text, delimiter):
            where.problem(
                "bad_records",
                f'{where.loc(lineno, offset)}: unterminated quoted field (a " opened here '
                'never closes); close the quote or double it ("") inside a quoted field',
            )
            return
        if row:  # not a blank line
            yield lineno, offset, row


def _unterminated(row_text: list[str], delimiter: str) -> bool:
    """Whether the text of a csv row ends inside a quoted field (a strict parse says so)."""
    try:
        for _ in csv.reader(row_text, delimiter=delimiter, strict=True):
            pass
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False


def sep_name(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else f"'{delimiter}'"


def wrong_length(loc: str, row: Sequence[str], header: Sequence[str], delimiter: str) -> str:
    """The message for a row with another number of fields than the header."""
    return (
        f"{loc}: row has {len(row)} fields but the header has {len(header)}; fix the row "
        f"(a stray quote or {sep_name(delimiter)}?)"
    )


# --- whole files -----------------------------------------------------------------------------


def table_format(path: Path, fmt: str = "auto", key: str = "format") -> str:
    """csv / tsv / jsonl / json: `fmt`, or from the name when it is auto. `key` names the
    setting that chooses it, for the messages."""
    refuse_tar(path)
    if fmt == "auto":
        name = plain_name(path)
        for suffix in FORMATS:
            if name.endswith("." + suffix):
                return suffix
        raise UserError(
            f"{path}: cannot tell the format from the name; set {key} (csv|tsv|jsonl|json|fasttext)"
        )
    if fmt not in FORMATS:
        raise UserError(f"{path}: unknown {key} '{fmt}'; use csv, tsv, jsonl, json or fasttext")
    return fmt


def iter_rows(
    path: str | Path,
    fmt: str = "auto",
    *,
    key: str = "format",
    data_key: bool = True,
    header: bool | Sequence[str] = True,
) -> Iterator[Row]:
    """(line, row) for every row of a table file, streamed (a .json array is read whole: its
    number is the item's, from 1). A csv row shorter than the header has None for the missing
    cells, as csv.DictReader gives; a longer one is an error. `data_key`: a .json object
    {"data": [...]} (SQuAD-like) is read as its list; a .json file of JSON lines (what
    `datasets`' to_json writes) is read as .jsonl. `header`: a .csv/.tsv without a header
    row has its columns named by the given list, or by position ("0", "1", ...) when False."""
    p = Path(path)
    fmt = table_format(p, fmt, key)
    if header is not True and fmt not in DELIMITERS:
        raise UserError(
            f"{p}: a {fmt} file names its fields itself; column positions and task.columns "
            "are for .csv/.tsv files without a header row"
        )
    if fmt == "json":
        yield from _json_rows(p, data_key)
        return
    where = Where(str(p))
    try:
        fh = open_binary(p)
    except OSError as e:
        raise UserError(f"{p}: cannot open ({e.strerror or e})") from None
    with fh:
        lines = decoded_lines(p, where, fh)
        if fmt == "fasttext":
            yield from _fasttext_rows(p, lines)
            return
        if fmt == "jsonl":
            for lineno, _, obj in jsonl_objects(p, where, lines, unique=True):
                yield lineno, obj
            return
        delimiter = DELIMITERS[fmt]
        names: list[str] | None = None if header is True else list(header or [])
        seen = False
        # a short row of a .tsv that opens a quote: (where, columns short, cells so far) until
        # a later line closes it within the row's columns (a cell quoted across a line break),
        # or a line that would not fit in the row ends it (a stray quote)
        opened: tuple[str, int, int] | None = None
        for lineno, offset, row in csv_rows(where, lines, delimiter):
            seen = True
            if names is None:
                names = [h.strip() for h in row]
                twice = sorted({n for n in names if n and names.count(n) > 1})
                if twice:  # a row would keep the last of them, unsaid
                    raise UserError(
                        f"{where.loc(lineno, offset)}: the header names column "
                        f"'{twice[0]}' twice; rename one"
                    )
                continue
            if not names:  # no header, columns by position: as many as the first row has
                names = [str(i) for i in range(len(row))]
            elif header is True and len(names) > 1 and [c.strip() for c in row] == names:
                raise UserError(  # its label cell would be a class named after the column
                    f"{where.loc(lineno, offset)}: the header row again ({', '.join(row)}), "
                    "as when two files are joined with cat; remove it (keep one header row)"
                )
            if len(row) > len(names):
                where.problem(
                    "bad_records", wrong_length(where.loc(lineno, offset), row, names, delimiter)
                )
            if opened is not None:
                cells = opened[2] + len(row) - 1  # the line goes on the open cell
                if cells <= len(names) and _closes_a_quote(row):
                    raise UserError(  # read as TSV is (no quoting), its rows came apart silently
                        f'{opened[0]}: a cell opens a quote (") and the row ends {opened[1]} '
                        f"column(s) short, and line {lineno} closes it: a text with a line "
                        "break, quoted as pandas or Excel write a .tsv; tab-separated files are "
                        "read without quoting, so write it as .csv (df.to_csv('x.csv')) or "
                        "without line breaks in cells"
                    )
                opened = (opened[0], opened[1], cells) if cells <= len(names) else None
            if delimiter == "\t" and len(row) < len(names) and _opens_a_quote(row):
                opened = (where.loc(lineno, offset), len(names) - len(row), len(row))
            cells: list[str | None] = [*row, *[None] * (len(names) - len(row))]
            yield lineno, dict(zip(names, cells, strict=True))
        if not seen:
            raise UserError(f"{p}: empty file" + (" (no header row)" if header is True else ""))


def _fasttext_rows(p: Path, lines: Iterator[tuple[int, int, str]]) -> Iterator[Row]:
    """fastText's supervised format: a line's leading `__label__X` words are its labels (one:
    "label" is the name; several: a list of them, for multilabel), the rest is "text"."""
    seen = False
    for lineno, _, line in lines:
        if lineno == 1:
            refuse_bare_cr(p, line)
        words = line.split()
        if not words:
            continue
        seen = True
        k = 0
        while k < len(words) and words[k].startswith(FASTTEXT_LABEL):
            k += 1
        labels = [w[len(FASTTEXT_LABEL) :] for w in words[:k]]
        label: Any = None if not labels else labels[0] if len(labels) == 1 else labels
        yield lineno, {"label": label, "text": " ".join(words[k:])}
    if not seen:
        raise UserError(f"{p}: empty file")


def read_rows(
    path: str | Path,
    fmt: str = "auto",
    *,
    key: str = "format",
    data_key: bool = True,
    header: bool | Sequence[str] = True,
) -> list[Row]:
    """Every row of a table file at once (see iter_rows)."""
    return list(iter_rows(path, fmt, key=key, data_key=data_key, header=header))


def read_text(path: Path) -> str:
    """The whole file as text (decompressed; a byte-order mark dropped); not UTF-8 is a
    one-line error naming the line and how to convert it."""
    raw = read_bytes(path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); {to_utf8(raw)}"
        ) from None


def _json_rows(path: Path, data_key: bool) -> Iterator[Row]:
    text = read_text(path)
    try:
        data = _json_value(text, str(path), unique=True)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and _object_line(text):  # JSON lines (datasets' to_json)
            yield from iter_rows(path, "jsonl")
            return
        raise UserError(
            f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno}); fix the file"
        ) from None
    data = _pandas_orient(data, path) or data
    if data_key and isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        alt = " (or {'data': [...]})" if data_key else ""
        raise UserError(f"{path}: expected a JSON array of objects{alt}, got {json_type(data)}")
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            raise UserError(
                f"{path}: item {i} of the array is {json_type(item)}, not an object; "
                "every item must be an object of fields"
            )
        yield i, item


def _pandas_orient(data: Any, path: Path | str = "") -> list[dict] | None:
    """The rows of what pandas' `DataFrame.to_json` writes other than an array of records:
    its default {"column": {"index": value}}, orient="index" {"index": {"column": value}}
    (told apart by digit-string outer keys, pandas' default index) and orient="split"
    {"columns": [...], "data": [[...]]}; None for anything else."""
    if not isinstance(data, dict) or not data:
        return None
    columns, rows = data.get("columns"), data.get("data")
    if isinstance(columns, list) and isinstance(rows, list):
        if all(isinstance(r, list) and len(r) == len(columns) for r in rows):
            return [dict(zip(map(str, columns), r, strict=True)) for r in rows]
        return None
    values = list(data.values())
    if not all(isinstance(v, dict) for v in values) or "data" in data:
        return None
    keys = list(values[0])
    if any(list(v) != keys for v in values):
        return None
    if all(str(k).isdigit() for k in data):  # orient="index": one object per row
        if all(str(k).isdigit() for k in keys):  # or columns named 0, 1, ... by default
            raise UserError(
                f"{path}: a pandas to_json table whose columns and rows are both numbered, so "
                "which is which cannot be told; write it with df.to_json(path, "
                "orient='records') (or name the columns)"
            )
        return values
    return [{col: data[col][k] for col in data} for k in keys]  # the default, by column


def _object_line(text: str) -> bool:
    """Whether the first line of `text` is a JSON object by itself."""
    first = next((line for line in text.split("\n") if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except ValueError:  # not JSON (or past json's limits)
        return False


class _KeyTwice(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) < len(pairs):
        seen: set[str] = set()
        raise _KeyTwice(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


def _json_value(text: str, where: str, unique: bool = False) -> Any:
    """json.loads, with json's own limits (an integer of over 4,300 digits) a one-line error
    at `where` rather than a traceback; a syntax error is left to the caller. (A lone
    surrogate escape is checked where a field is used: `lone_surrogate`.) `unique`: a key
    twice in one object is an error too (json keeps the last value, unsaid)."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys if unique else None)
    except json.JSONDecodeError:
        raise
    except _KeyTwice as e:
        raise UserError(
            f"{where}: an object has the key '{e}' twice, and only its last value would be "
            "read; keep one of them"
        ) from None
    except ValueError as e:
        raise UserError(
            f"{where}: a value JSON cannot read ({str(e).split(':')[0]}); fix it"
        ) from None


NOT_UNICODE = (
    "not valid Unicode (a lone surrogate: bytes that were not UTF-8, e.g. Latin-1 typed into a "
    "terminal, or a JSON \\ud800-\\udfff escape without its pair); give UTF-8 text"
)
HALF_PAIR = (
    "holds half of a UTF-16 surrogate pair (a \\ud800-\\udfff escape without its other half, "
    "e.g. text cut inside an emoji), not a character; fix the text"
)


def lone_surrogate(value: Any) -> str | None:
    """Where in `value` (a string, or lists and dicts of them) a string holds a lone surrogate,
    which cannot be encoded as UTF-8 nor tokenized: `the text`, `'[3]'`, `'answers[0].text'`;
    None when every string is whole."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"'{at.removeprefix('.')}'" if at else "the text"
        elif isinstance(item, dict):
            stack.extend((f"{at}.{k}", v) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{at}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None


def write_rows(
    path: Path, rows: Sequence[dict[str, Any]], fmt: str, fieldnames: Sequence[str] | None = None
) -> None:
    """Write rows as iter_rows reads them back: csv/tsv with a header (`fieldnames`, default
    the first row's keys; a .tsv without quoting, as it is read), jsonl, or a json array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in DELIMITERS:
        names = list(fieldnames if fieldnames is not None else (rows[0] if rows else []))
        quoting = {"quoting": csv.QUOTE_NONE, "quotechar": None} if fmt == "tsv" else {}
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=names, delimiter=DELIMITERS[fmt], **quoting)  # type: ignore[arg-type]
            w.writeheader()
            w.writerows({k: r.get(k) for k in names} for r in rows)
    elif fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        path.write_text(text, encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(list(rows), ensure_ascii=False), encoding="utf-8")
    else:
        raise ValueError(f"write_rows: unknown format {fmt!r}")


def groups_for_valid(
    order: list[str], sizes: Mapping[str, int], target: float, seed: int
) -> set[str]:
    """The groups a split holds out: `order` shuffled with `seed`, groups moved to valid until
    it holds `target` rows; the last group always stays in train. QA's split by article, a
    study's `split:` and `task.group_column` all split this way."""
    order = list(order)
    random.Random(seed).shuffle(order)
    valid: set[str] = set()
    n_valid = 0
    for group in order[:-1]:
        if n_valid >= target:
            break
        valid.add(group)
        n_valid += sizes[group]
    return valid
