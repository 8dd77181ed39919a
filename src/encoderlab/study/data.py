"""A study's data, made before its arms run: a generated data set (synthetic:), a data file
split by group (split:), and strings out of a JSON file as a corpus (texts:). Each is written
into the study's output folder, where the arms' overrides find it through a placeholder.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from encoderlab.data.tables import groups_for_valid, read_rows, write_rows
from encoderlab.errors import UserError
from encoderlab.runs import atomic_write
from encoderlab.study.spec import SplitSpec, Study, TextsSpec

_SPLIT_FORMATS = {".json": "json", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv"}


def prepare_data(study: Study, say: Callable[[str], None]) -> dict[str, Path]:
    """Write the study's synthetic:, split: and texts: data (those it has); returns where each
    placeholder ({synthetic}, {split}, {texts}) points, written or not."""
    out = study.out
    paths = {"synthetic": out / "data", "split": out / "split", "texts": out / "texts.txt"}
    if study.synthetic is not None:
        from encoderlab.synthetic import write_dataset

        params = study.synthetic.model_dump()
        files = write_dataset(paths["synthetic"], **params)
        say(f"synthetic data ({params['kind']}): {', '.join(str(f) for f in files)}")

    if study.spec.split is not None:
        files, groups = write_split(study.spec.split, paths["split"])
        say(
            f"split of {study.spec.split.file} by {study.spec.split.group} "
            f"({groups[0]:,} / {groups[1]:,} groups): {', '.join(str(f) for f in files)}"
        )

    if study.spec.texts is not None:
        spec = study.spec.texts
        n = write_texts(spec, paths["texts"])
        what = spec.path if spec.format == "json" else "conll sentences"
        say(f"texts ({what} of {', '.join(spec.files)}): {n:,} in {paths['texts']}")
    return paths


def generated_files(study: Study) -> list[str]:
    """What the study writes over on every run, relative to its folder: its data files and
    its report (whose old figures it deletes). Anything else it writes is new or appended."""
    files = ["report"]
    if study.spec.synthetic is not None:
        files += ["data/train.csv", "data/valid.csv"]
    if study.spec.split is not None:
        ext = Path(study.spec.split.file).suffix.lower()
        files += [f"split/train{ext}", f"split/valid{ext}"]
    if study.spec.texts is not None:
        files.append("texts.txt")
    return files


def write_split(spec: SplitSpec, out_dir: Path) -> tuple[list[Path], tuple[int, int]]:
    """Write out_dir/train.<ext> and valid.<ext> (the input's format): groups shuffled with the
    seed move to valid until it holds valid_ratio of the rows, as QA splits by article. Returns
    the two files and the number of groups on each side."""
    path = Path(spec.file)
    if not path.is_file():
        raise UserError(f"split.file: {path} not found (relative to the working directory)")
    fmt = _SPLIT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path}: split: use a .json (list), .jsonl, .csv or .tsv file")
    try:
        rows = [row for _, row in read_rows(path, fmt, data_key=False)]
    except UserError as e:
        raise UserError(f"split.file: {e}") from None
    if any(spec.group not in r for r in rows):
        raise UserError(f"{path}: split.group '{spec.group}': not a field of every row")
    order = list(dict.fromkeys(str(r[spec.group]) for r in rows))
    if len(order) < 2:
        raise UserError(f"{path}: split.group '{spec.group}': fewer than two groups")
    sizes = Counter(str(r[spec.group]) for r in rows)
    valid = groups_for_valid(order, sizes, spec.valid_ratio * len(rows), spec.seed)
    parts = {
        "train": [r for r in rows if str(r[spec.group]) not in valid],
        "valid": [r for r in rows if str(r[spec.group]) in valid],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, part in parts.items():
        f = out_dir / f"{name}{path.suffix.lower()}"
        write_rows(f, part, fmt, fieldnames=list(rows[0]) if rows else None)
        files.append(f)
    return files, (len(order) - len(valid), len(valid))


def select(node: Any, path: str) -> list[Any]:
    """Values at a dotted path: a key, `*` (every item of a list or every value of an object)
    or `a:b` (a slice of a list, either end optional)."""
    nodes = [node]
    for part in path.split("."):
        nxt: list[Any] = []
        for n in nodes:
            if part == "*" and isinstance(n, dict):
                nxt += n.values()
            elif part == "*" and isinstance(n, list):
                nxt += n
            elif ":" in part and isinstance(n, list):
                a, b = (int(x) if x.strip() else None for x in part.split(":", 1))
                nxt += n[a:b]
            elif isinstance(n, dict) and part in n:
                nxt.append(n[part])
        nodes = nxt
    return nodes


def write_texts(spec: TextsSpec, out_file: Path) -> int:
    """Write the documents of spec's files (see TextsSpec) to out_file, one a line (whitespace,
    line breaks included, squeezed to single spaces); returns how many."""
    docs: list[str] = []
    for name in spec.files:
        path = Path(name)
        if not path.is_file():
            raise UserError(f"texts.file: {path} not found (relative to the working directory)")
        found = _conll_sentences(path) if spec.format == "conll" else _json_strings(path, spec)
        docs += [" ".join(x.split()) for x in found if isinstance(x, str) and x.strip()]
    if not docs:
        where = f"texts.path {spec.path!r}" if spec.format == "json" else "texts (conll)"
        raise UserError(f"{', '.join(spec.files)}: {where} selects no strings")
    text = "\n".join(docs) + "\n"
    # unchanged text keeps its mtime: the corpus cache (keyed on size and mtime) stays valid
    if not (out_file.is_file() and out_file.read_text(encoding="utf-8") == text):
        out_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out_file, text)
    return len(docs)


def _json_strings(path: Path, spec: TextsSpec) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return select(data, spec.path or "")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: texts: not a JSON file ({e})") from None
    except ValueError:
        raise UserError(f"texts.path {spec.path!r}: a slice is a:b with integers") from None


def _conll_sentences(path: Path) -> list[str]:
    """The sentences of a CoNLL file (a blank line between sentences), as the words of its
    first column; -DOCSTART- lines are document markers, not text."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: texts: not a UTF-8 text file ({e})") from None
    sentences: list[str] = []
    words: list[str] = []
    for line in [*lines, ""]:
        cols = line.split()
        if cols and not cols[0].startswith("-DOCSTART-"):
            words.append(cols[0])
        elif words:
            sentences.append(" ".join(words))
            words = []
    return sentences
