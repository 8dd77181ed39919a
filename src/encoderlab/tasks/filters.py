"""`task.where`: row filters for task files, e.g. drop Rotten Tomatoes' "plot" rows.

A filter is one condition on one column, `COLUMN OP VALUE` with OP one of ==, !=, in,
not in (`in` takes a YAML list: `lang in [en, de]`). Values compare as text, so
`label != 2` works on csv cells and json numbers alike. The value is the text written
(`lang != no` is the text "no", not YAML's false); numbers compare by value (`2` matches a
cell "2.0") and true/false in any case (`== True` matches a pandas csv's "True" and a json
true). Pure parsing: config validation calls `parse_where` to refuse a bad filter before
anything is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

from encoderlab.errors import UserError

_PATTERN = re.compile(r"^\s*(?P<col>.+?)\s+(?P<op>==|!=|not\s+in|in)\s+(?P<value>.+?)\s*$")


def parse_where(text: str) -> tuple[str, str, frozenset[str]]:
    """(column, op, allowed values as text): op is "in" or "not in" (== and != are one-value
    forms of them). A malformed filter is a one-line UserError with an example."""
    m = _PATTERN.match(text)
    if m is None:
        raise UserError(
            f"task.where {text!r}: expected COLUMN OP VALUE with OP ==, !=, in or not in, "
            "e.g. 'type != plot' or 'lang in [en, de]'"
        )
    col, op, raw = m["col"].strip("'\""), " ".join(m["op"].split()), m["value"]
    try:  # every scalar as the text written: YAML would read `no` as false, `2.0` as 2.0
        value = yaml.load(raw, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        value = raw
    if op in ("in", "not in"):
        if not isinstance(value, list):
            raise UserError(f"task.where {text!r}: '{op}' needs a list, e.g. [en, de]")
        values = ["" if v in _NULL else v for v in value]
    else:
        written = raw.strip()
        values = [written.strip("'\"")]
        if written[:1] not in ("'", '"') and written in _NULL:  # 'null' quoted: the text
            values = [""]
        op = "in" if op == "==" else "not in"
    if any(not isinstance(v, str) for v in values):
        raise UserError(f"task.where {text!r}: give plain values, e.g. 'lang in [en, de]'")
    return col, op, frozenset(_as_text(v) for v in values)


# 2.0, .5, 5. (not 007: an id keeps its zeros)
_DECIMAL = re.compile(r"^[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)$")
_NULL = ("null", "Null", "NULL", "~")  # YAML's null: an empty (or missing) cell, as before


def _as_text(value: Any) -> str:
    """A cell or a written value as the text they compare by."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = "" if value is None else str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower()
    if _DECIMAL.match(text) and "." in text:
        number = float(text)
        return str(int(number)) if number.is_integer() else repr(number)
    return text


def row_filter(
    filters: list[str], get: Callable[[dict[str, Any], str], Any]
) -> Callable[[dict[str, Any]], bool] | None:
    """A predicate over rows that is true when every filter holds (None: no filters). `get`
    reads a column from a row (nested keys, positions)."""
    parsed = [parse_where(f) for f in filters]
    if not parsed:
        return None

    def keep(row: dict[str, Any]) -> bool:
        for col, op, values in parsed:
            if (_as_text(get(row, col)) in values) != (op == "in"):
                return False
        return True

    return keep


def filter_columns(filters: list[str]) -> list[str]:
    """The columns the filters read (to check they exist)."""
    return [parse_where(f)[0] for f in filters]
