"""Rows of a classification-like task file, from wherever people keep their data.

  a .csv/.tsv/.jsonl/.json file   read by `encoderlab.data.tables` (with or without a header:
                                  `task.columns`, or integer column positions)
  a .parquet file                 pyarrow (the Hugging Face Hub's own format; class-label
                                  columns give their names from the file's datasets metadata)
  a .xlsx workbook                openpyxl: the first sheet (or `task.sheet`), a header row
  a save_to_disk directory        Hugging Face datasets, offline (`dir::split`, default train)
  hf:<name>[:<config>][::split]   the Hub, when online (both as the corpus reads them)
  a folder of label folders       spam/ham/... each text file one example, its label the folder
                                  name (a classic spam corpus layout); files directly in the
                                  folder have no label (a test set)
then `task.where` drops the rows its filters reject. Every row is a dict keyed by column name
(a folder's rows use the configured text/label/id column names), so the task reads them alike.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encoderlab.data.corpus import as_source, is_hf_dir, open_hf
from encoderlab.data.tables import (
    COMPRESSED,
    FASTTEXT_LABEL,
    plain_name,
    read_bytes,
    read_rows,
    table_format,
)
from encoderlab.errors import UserError, first_line
from encoderlab.tasks.filters import filter_columns, row_filter

if TYPE_CHECKING:  # the config module loads the task registry, which imports this one
    from encoderlab.config import TaskConfig

Row = tuple[int, dict[str, Any]]


def get(row: dict[str, Any], name: str | int | None) -> Any:
    """A cell: the column `name`, else a nested key written with dots ("labels.label")."""
    if name is None:
        return None
    key = str(name)
    if key in row:
        return row[key]
    node: Any = row
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def has_column(row: dict[str, Any], name: str | int | None) -> bool:
    if name is None:
        return False
    key = str(name)
    if key in row:
        return True
    node: Any = row
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def require_column(path: str, rows: list[Row], name: str | int, key: str) -> None:
    """A one-line error listing the columns found when the first row lacks `name`."""
    if rows and not has_column(rows[0][1], name):
        cols = ", ".join(map(str, rows[0][1].keys()))
        what = f"column {name}" if isinstance(name, int) else f"column '{name}'"
        hint = f"set task.{key}"
        (only,) = rows[0][1].keys() if len(rows[0][1]) == 1 else (None,)
        other = next((c for c in ";|" if only and c in str(only)), None)
        if other:  # one column whose name holds another separator: not this format's
            hint = f"the file looks separated by '{other}'; save it with commas (or tabs, .tsv)"
        raise UserError(f"{path}: no {what} (columns: {cols}); {hint}")


def require_cell(path: str, n: int, row: dict[str, Any], col: str | int, key: str) -> None:
    """A row whose `col` is missing altogether (a JSON record without the field, a csv row cut
    short) is an error at its line: an empty cell is a text to skip, a missing one a broken row."""
    if get(row, col) is not None:
        return
    if not has_column(row, col):
        fields = ", ".join(map(str, row.keys()))
        raise UserError(
            f"{path}:{n}: no field '{col}' in this record (fields: {fields}); add it, or set "
            f"task.{key}"
        )
    if plain_name(path).endswith((".csv", ".tsv")):
        raise UserError(
            f"{path}:{n}: the row ends before column '{col}'; fix the row (a missing field, or "
            "a stray quote that joined two rows?)"
        )


def is_dataset_source(path: str) -> bool:
    """A Hugging Face data set rather than a file: hf:<name>, dir::split or a save_to_disk
    folder."""
    p = Path(path)
    return path.startswith("hf:") or "::" in path or (p.is_dir() and is_hf_dir(p))


# the split a role reads from a DatasetDict named without `::split` (compared in any case)
ROLE_SPLITS = {"valid": ("validation", "valid", "val", "dev"), "test": ("test",)}
ROLE_KEYS = {"valid": "task.valid:", "test": "task.test:"}


def datasetdict_splits(folder: Path) -> list[str] | None:
    """The split names a `save_to_disk` DatasetDict folder lists (its dataset_dict.json), or
    None for anything else (a file, a single dataset, an unreadable listing)."""
    try:
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(s) for s in splits] if isinstance(splits, list) else None


def split_for_role(path: str, role: str, key: str | None = None) -> str:
    """`path` as the `role` ("valid" or "test") reads it. A DatasetDict named without
    `::split` is otherwise read at its train split, so task.valid or task.test (or evaluate /
    predict on it) would silently be the training data: the role's split is named instead
    (`dir::validation`, `hf:dir::test`), and a DatasetDict that has none of them is a one-line
    error listing its splits. A Hub name without a split (`hf:glue:sst2`), whose splits are
    not known offline, is refused for these roles; files, `::split` and single datasets are
    returned as given. `key`: how the message names the setting (`--data`)."""
    said = key or ROLE_KEYS[role]
    if "::" in path:
        return path
    hub = path.startswith("hf:")
    local = Path(path.removeprefix("hf:")).expanduser()
    if hub and not local.is_dir():
        raise UserError(
            f"{path}: a Hub data set without a split reads its train split, the training data; "
            f"name the split to read: {said} {path}::{ROLE_SPLITS[role][0]}"
        )
    splits = datasetdict_splits(local)
    if splits is None:  # a file, a single dataset, or a folder open_hf will say is broken
        return path
    if len(splits) == 1:
        return f"{path}::{splits[0]}"
    lower = {s.lower(): s for s in splits}
    chosen = next((lower[s] for s in ROLE_SPLITS[role] if s in lower), None)
    if chosen is None:
        raise UserError(
            f"{path}: a DatasetDict with the splits {', '.join(splits)} and no "
            f"{' / '.join(ROLE_SPLITS[role])} split; name the one to read: {said} "
            f"{path}::<split>"
        )
    return f"{path}::{chosen}"


def text_columns(cfg: TaskConfig) -> list[str | int]:
    """task.text_column as a list: the columns whose cells, joined, are a row's text."""
    return list(cfg.text_column) if isinstance(cfg.text_column, list) else [cfg.text_column]


def header_for(cfg: TaskConfig) -> bool | list[str]:
    """True: the file has a header row; a list: its column names; False: by position."""
    if cfg.columns is not None:
        return list(cfg.columns)
    named = (
        *text_columns(cfg),
        cfg.text_pair_column,
        cfg.label_column,
        cfg.id_column,
        cfg.group_column,
    )
    return not any(isinstance(c, int) for c in named)


def read_records(path: str | Path, cfg: TaskConfig, notes: list[str] | None = None) -> list[Row]:
    """(line number, record) for every row of a task's data (see the module docstring), after
    `task.where`; what was dropped or repaired is appended to `notes`."""
    text = str(path)
    p = Path(text)
    if is_dataset_source(text):
        rows = _hf_rows(text)
    elif p.is_dir():
        rows = _folder_rows(p, cfg, notes)
    elif not p.is_file():
        raise UserError(f"{p}: file not found (task data)")
    elif (columnar := columnar_format(p, cfg)) is not None:
        if cfg.columns is not None or not header_for(cfg):
            raise UserError(
                f"{p}: a .{columnar} file names its columns itself; column positions and "
                "task.columns are for .csv/.tsv files without a header row"
            )
        rows = parquet_rows(p) if columnar == "parquet" else _xlsx_rows(p, cfg.sheet)
    else:
        fmt = _txt_table(p, cfg)
        if fmt is not None and notes is not None:
            notes.append(
                f"{p}: read as {fmt} ("
                + (
                    f"its lines start with {FASTTEXT_LABEL}"
                    if fmt == "fasttext"
                    else f"tab-separated, its header names task.text_column "
                    f"'{text_columns(cfg)[0]}'"
                )
                + f"); task.format: {fmt} says so in the config"
            )
        fmt = fmt or table_format(p, cfg.format, "task.format")
        header = header_for(cfg)
        rows = read_rows(p, fmt, key="task.format", header=header)
        if header is not True and fmt in ("csv", "tsv"):
            _refuse_header_row(text, rows, cfg)
    return _filtered(text, rows, cfg, notes)


def _txt_table(p: Path, cfg: TaskConfig) -> str | None:
    """ "fasttext" for a .txt whose first line starts with __label__ (fastText's supervised
    format); "tsv" for a .txt file that is a table with a header naming task.text_column
    (NSMC's ratings_*.txt, many Kaggle files), which the suffix alone cannot tell; None
    otherwise."""
    first_text = text_columns(cfg)[0]
    named = isinstance(first_text, str) and cfg.columns is None  # a header row to look at
    if cfg.format != "auto" or not plain_name(p).endswith(".txt") or not named:
        return None
    first = read_bytes(p, 1 << 16).split(b"\n", 1)[0]  # a broken archive: said here
    try:
        line = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if line.startswith(FASTTEXT_LABEL):  # fastText's `__label__pos text`
        return "fasttext"
    fields = line.rstrip("\r\n").split("\t")
    return "tsv" if len(fields) > 1 and first_text in fields else None


# what a header row's text or label cell says (a data row almost never reads like this)
HEADER_NAMES = {"text", "sentence", "sentence1", "sentence2", "label", "labels", "target"}
HEADER_NAMES |= {"class", "category", "review", "tweet", "content", "document", "question"}


def _refuse_header_row(path: str, rows: list[Row], cfg: TaskConfig) -> None:
    """A file read by task.columns or column positions whose first row is its header would
    train on it as an example (its label a class of its own): refused at line 1."""
    if not rows:
        return
    line, first = rows[0]
    cells = [str(v).strip().lower() for v in first.values() if v is not None]
    if cfg.columns is not None:
        names = [c.lower() for c in cfg.columns]
        looks = cells[: len(names)] == names[: len(cells)] and len(cells) > 1
    else:
        said = {
            str(get(first, c) or "").strip().lower() for c in (*text_columns(cfg), cfg.label_column)
        }
        label = get(first, cfg.label_column)  # a header's label cell is on no other row
        looks = bool(said & HEADER_NAMES) and all(
            get(r, cfg.label_column) != label for _, r in rows[1:]
        )
    if looks:
        how = "task.columns" if cfg.columns is not None else "column positions"
        raise UserError(
            f"{path}:{line}: this row is a header ({', '.join(cells)}), which {how} would read "
            f"as an example; drop {how} and name the columns as the header does"
        )


def _filtered(path: str, rows: list[Row], cfg: TaskConfig, notes: list[str] | None) -> list[Row]:
    keep = row_filter(cfg.where, get)
    if keep is None or not rows:
        return rows
    for col in filter_columns(cfg.where):
        require_column(path, rows, col, "where")
    kept = [r for r in rows if keep(r[1])]
    if not kept:  # say what the filtered columns hold: a class-label column holds names
        seen = "; ".join(
            f"'{col}' holds " + ", ".join(repr(v) for v in _some_values(rows, col))
            for col in dict.fromkeys(filter_columns(cfg.where))
        )
        raise UserError(
            f"{path}: task.where ({' and '.join(cfg.where)}) keeps none of its {len(rows):,} "
            f"rows; {seen}"
        )
    if notes is not None:
        notes.append(
            f"{path}: task.where kept {len(kept):,} of {len(rows):,} rows "
            f"({len(rows) - len(kept):,} dropped)"
        )
    return kept


def _some_values(rows: list[Row], col: str, k: int = 5) -> list[Any]:
    """The first `k` distinct values of a column (for an error message)."""
    values: dict[str, Any] = {}
    for _, row in rows:
        value = get(row, col)
        values.setdefault(str(value), value)
        if len(values) >= k:
            break
    return list(values.values())


def _stop(msg: str, *, vanished: bool = False) -> None:
    raise UserError(msg)


def _hf_rows(text: str) -> list[Row]:
    """A save_to_disk directory or hf:<name>: each row a dict; class-label columns give their
    names ("neg", "pos"), and -1 (no label, e.g. GLUE test splits) gives None."""
    ds = open_hf(as_source(text), _stop, key="task.train/valid/test")
    assert ds is not None
    if hasattr(ds, "with_format"):  # saved after set_format("torch"/"numpy"/...): plain values
        ds = ds.with_format(None)
    features = getattr(ds, "features", None) or {}
    names = {col: n for col, f in features.items() if (n := label_names(f)) is not None}
    return [(i, named_labels(dict(row), names, f"{text}:{i}")) for i, row in enumerate(ds, 1)]


def label_names(feature: Any) -> list[str] | None:
    """The names of a datasets ClassLabel feature, or of the ClassLabel inside a list of them
    (a tagging data set's ner_tags), given as the feature object or as the JSON that datasets
    stores in a Parquet file's metadata; None for any other feature."""
    if isinstance(feature, dict):
        if feature.get("_type") == "ClassLabel":
            return [str(n) for n in feature.get("names") or []]
        inner = feature.get("feature")
    else:
        if type(feature).__name__ == "ClassLabel":
            return [str(n) for n in feature.names]
        inner = getattr(feature, "feature", None)
    return label_names(inner) if inner is not None else None


def named_labels(row: dict[str, Any], names: dict[str, list[str]], where: str) -> dict[str, Any]:
    """`row` with its class-label ids (or lists of ids) as names; -1 (datasets' "no label",
    as in GLUE's test splits) is None, any other id the names do not cover an error."""

    def name(value: Any, col: str, labels: list[str]) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return value
        if value == -1:
            return None
        if not 0 <= value < len(labels):
            shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
            raise UserError(
                f"{where}: '{col}' holds class id {value}, but its ClassLabel names "
                f"{len(labels)} ({shown}); fix the id (-1 means no label)"
            )
        return labels[value]

    for col, labels in names.items():
        value = row.get(col)
        if isinstance(value, list):
            row[col] = [name(v, col, labels) for v in value]
        else:
            row[col] = name(value, col, labels)
    return row


PARQUET_SUFFIXES = (".parquet", ".pq")
XLSX_SUFFIXES = (".xlsx", ".xlsm")


def columnar_format(p: Path, cfg: TaskConfig) -> str | None:
    """ "parquet" or "xlsx" when task.format or the file name says so; None otherwise."""
    name = plain_name(p)
    if name.endswith((*PARQUET_SUFFIXES, *XLSX_SUFFIXES)) and p.name.lower().endswith(COMPRESSED):
        raise UserError(
            f"{p}: a compressed {Path(name).suffix} file, which is not read; decompress it "
            f"({Path(name).suffix} files compress themselves)"
        )
    if name.endswith(".xls"):
        raise UserError(
            f"{p}: an Excel 97-2003 workbook (.xls), which cannot be read here; save it as "
            ".xlsx or .csv"
        )
    if cfg.format in ("parquet", "xlsx"):
        return cfg.format
    if cfg.format == "auto" and name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if cfg.format == "auto" and name.endswith(XLSX_SUFFIXES):
        return "xlsx"
    return None


def parquet_rows(p: Path) -> list[Row]:
    """Every row of a Parquet file as a dict (row numbers from 1), class-label ids named by
    the datasets metadata the Hugging Face Hub and `Dataset.to_parquet` write."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(
            f"{p}: reading .parquet files needs pyarrow; run `pip install 'encoderlab[corpus]'`"
        ) from None
    try:
        table = pq.read_table(p)
    except (OSError, pa.ArrowException) as e:
        raise UserError(
            f"{p}: not a readable Parquet file ({_quoted(e)}); check the file"
        ) from None
    names: dict[str, list[str]] = {}
    meta = (table.schema.metadata or {}).get(b"huggingface")
    if meta:
        try:
            features = json.loads(meta)["info"]["features"]
            names = {c: n for c, f in features.items() if (n := label_names(f)) is not None}
        except (ValueError, KeyError, TypeError, AttributeError):
            names = {}  # metadata some other tool wrote: the ids stay numbers
    return [
        (i, named_labels(_decoded(row, p, i), names, f"{p}:{i}"))
        for i, row in enumerate(table.to_pylist(), 1)
    ]


def _decoded(row: dict[str, Any], p: Path, i: int) -> dict[str, Any]:
    """Binary cells as text: older Hive/Spark/Impala writers store strings as bytes."""
    for col, value in row.items():
        if isinstance(value, bytes):
            try:
                row[col] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(
                    f"{p}:{i}: column '{col}' holds bytes that are not UTF-8 text; write it as "
                    "a string column"
                ) from None
    return row


def _xlsx_rows(p: Path, sheet: str | None) -> list[Row]:
    """The rows of a sheet under its header row (row numbers as Excel shows them); rows with
    no cell filled are skipped, numbers stay numbers."""
    try:
        import openpyxl
    except ImportError:
        raise UserError(
            f"{p}: reading .xlsx files needs openpyxl; run `pip install 'encoderlab[corpus]'`"
        ) from None
    from xml.etree.ElementTree import ParseError

    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings():  # "no default style" and other cosmetic complaints
            warnings.simplefilter("ignore")
            wb = openpyxl.load_workbook(p, read_only=True, data_only=True)
    except (
        OSError,
        zipfile.BadZipFile,
        ParseError,
        KeyError,
        ValueError,
        InvalidFileException,
    ) as e:
        raise UserError(
            f"{p}: not a readable .xlsx workbook ({_quoted(e)}); check the file"
        ) from None
    try:
        if sheet is not None and sheet not in wb.sheetnames:
            raise UserError(
                f"{p}: no sheet '{sheet}' (sheets: {', '.join(wb.sheetnames)}); set task.sheet"
            )
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        if hasattr(ws, "reset_dimensions"):  # a writer's <dimension> tag may cut rows short
            ws.reset_dimensions()
        cells = ws.iter_rows(values_only=True)
        header = ["" if h is None else str(h).strip() for h in next(cells, None) or ()]
        if not any(header):
            raise UserError(
                f"{p}: the sheet '{ws.title}' has no header row; put column names in row 1"
            )
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:
            raise UserError(f"{p}: the header names column '{twice[0]}' twice; rename one")
        rows: list[Row] = []
        blank: list[tuple[int, int]] = []  # (row, column) of empty cells in filled rows
        for n, values in enumerate(cells, 2):
            if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                continue
            # a row's blank cells at its end are not in the file: they read as None
            cells = {h: values[k] if k < len(values) else None for k, h in enumerate(header)}
            rows.append((n, {h: v for h, v in cells.items() if h}))
            blank.extend((n, k) for k, h in enumerate(header) if h and cells[h] is None)
    finally:
        wb.close()
    if blank:
        read = {n for n, _ in rows}
        _refuse_unsaved_formulas(p, ws.title, header, set(blank), read)
    return rows


def _refuse_unsaved_formulas(
    p: Path, title: str, header: list[str], blank: set, read: set[int]
) -> None:
    """An empty cell that holds a formula, in a workbook whose formulas have no saved values:
    it was written by a program that saves formulas without computing them (openpyxl, pandas
    with a formula string), so the values read as nothing and the rows would be trained on as
    unlabelled or empty. A formula with a value in a cell that was read shows a computed
    workbook (Excel, LibreOffice), whose formulas with an empty result are left alone. Read
    to the last empty cell, and on only to look for such a value before refusing; `read`:
    the rows that were read (not blank)."""
    import openpyxl

    last = max(n for n, _ in blank)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wb = openpyxl.load_workbook(p, read_only=True, data_only=False)
    first = None
    try:
        ws = wb[title]
        if hasattr(ws, "reset_dimensions"):  # as the values were read: every row
            ws.reset_dimensions()
        for n, values in enumerate(ws.iter_rows(min_row=2, values_only=True), 2):
            if n > last and first is None:
                return  # no empty formula cell: nothing to refuse, no need to read on
            for k, v in enumerate(values[: len(header)]):
                if not (isinstance(v, str) and v.startswith("=")) or not header[k]:
                    continue
                if (n, k) in blank:
                    first = first or (n, k, v)
                elif n in read:
                    return  # a formula with its value: the workbook was computed
    finally:
        wb.close()
    if first is not None:
        n, k, v = first
        raise UserError(
            f"{p}: row {n}, column '{header[k]}' holds the formula {v[:40]} with no saved "
            "value (the program that wrote the file does not compute formulas); open and save "
            "it in Excel or LibreOffice, or write values"
        )


# files that hold many examples: a folder of them (a Hub download's data/) is not a folder of
# one text file per example
DATA_SUFFIXES = (".parquet", ".pq", ".arrow", ".xlsx", ".xlsm", ".jsonl", ".json", ".csv", ".tsv")


def refuse_data_files(folder: Path, files: list[Path]) -> None:
    """A one-line error when a folder read as one example per file holds data files."""
    tables = [f for f in files if plain_name(f).endswith(DATA_SUFFIXES)]
    if tables:
        raise UserError(
            f"{folder}: holds data files ({tables[0].relative_to(folder)}), each of many "
            f"examples; point the task at the file itself (e.g. {tables[0]})"
        )


# sub-folders that hold unlabelled text by convention (aclImdb's train/unsup/), not a class
UNLABELLED_FOLDERS = {"unsup", "unlabeled", "unlabelled"}


TRAIN_FOLDERS = {"train", "training"}
HELD_OUT_FOLDERS = {"test", "testing", "dev", "val", "valid", "validation", "eval"}


def _refuse_split_folders(folder: Path, files: list[Path]) -> None:
    """aclImdb/ itself (train/ and test/, each of pos/ and neg/): its sub-folders are a data
    set's splits, and read as labels they would make "train" and "test" the two classes."""
    tops = sorted({f.relative_to(folder).parts[0] for f in files if f.parent != folder})
    train = [t for t in tops if t.lower() in TRAIN_FOLDERS]
    held = [t for t in tops if t.lower() in HELD_OUT_FOLDERS]
    if train and held:
        raise UserError(
            f"{folder}: its sub-folders {', '.join(t + '/' for t in train + held)} are a data "
            f"set's splits, not labels; point task.train at {folder / train[0]} and task.valid "
            f"at {folder / held[0]}"
        )


def _folder_rows(folder: Path, cfg: TaskConfig, notes: list[str] | None) -> list[Row]:
    """Each text file one row: label = its sub-folder's name (none for files at the top)."""
    text_col, label_col = str(text_columns(cfg)[0]), str(cfg.label_column)
    id_col = str(cfg.id_column) if cfg.id_column is not None else "id"
    files = sorted(f for f in folder.rglob("*") if f.is_file() and not _hidden(f, folder))
    if not files:
        raise UserError(
            f"{folder}: a folder with no files; put each example in a text file under a "
            "folder named after its label (e.g. spam/0001.txt, ham/0002.txt)"
        )
    refuse_data_files(folder, files)
    _refuse_split_folders(folder, files)
    rows: list[Row] = []
    repaired = 0
    for i, f in enumerate(files, 1):
        rel = f.relative_to(folder)
        raw = f.read_bytes()
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 text (Windows Notepad)
            raw = raw.decode("utf-16").encode("utf-8")
        elif b"\x00" in raw[:4096]:
            raise UserError(
                f"{f}: a binary file (NUL bytes), not an example's text; move it out of {folder}"
            )
        try:
            body = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            body = raw.decode("utf-8", errors="replace")
            repaired += 1
        label = rel.parts[0] if len(rel.parts) > 1 else None
        if label is not None and label.lower() in UNLABELLED_FOLDERS:
            label = None
        rows.append((i, {id_col: rel.as_posix(), text_col: body, label_col: label}))
    if all(r[label_col] is None for _, r in rows):  # files to predict: no label column at all
        for _, r in rows:
            del r[label_col]
    if notes is not None:
        labels = sorted({r[label_col] for _, r in rows if r.get(label_col) is not None})
        notes.append(
            f"{folder}: {len(rows):,} files, labels from folder names: {', '.join(labels) or '-'}"
        )
        tops = Counter(f.relative_to(folder).parts[0] for f in files if f.parent != folder)
        for name, n in sorted(tops.items()):
            if name.lower() in UNLABELLED_FOLDERS:
                notes.append(f"{folder}: {name}/ ({n:,} files) is unlabelled text, as in IMDB's")
        if repaired:
            notes.append(
                f"{folder}: {repaired:,} files were not UTF-8; their undecodable bytes were "
                "replaced (convert them with iconv to keep every character)"
            )
    return rows


def _hidden(f: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in f.relative_to(root).parts)


def _quoted(e: BaseException) -> str:
    """A library's exception as a one-line error quotes it: its type and first line."""
    name, text = type(e).__name__, first_line(e)
    return text if text == name else f"{name}: {text}"
