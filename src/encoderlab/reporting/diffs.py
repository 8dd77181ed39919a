"""Example-level comparison of two runs on the same validation examples, matched by id.

"Right" is a prediction row's `correct` (classification, pair, tagging: the whole sentence's
tags) or, for QA, exact match (`em`). Rows without gold answers are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from encoderlab.reporting.load import RunData

TEXT_FIELDS = ("input", "question", "tokens")  # what identifies an example's content


def is_right(row: dict[str, Any]) -> bool | None:
    if "correct" in row:
        return None if row["correct"] is None else bool(row["correct"])
    if "em" in row:
        return None if row["em"] is None else bool(row["em"])
    return None


def _content(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in (*TEXT_FIELDS, "input_pair"))


@dataclass
class ExampleDiff:
    a: RunData
    b: RunData
    compared: int  # shared ids with gold labels in both runs
    a_right_b_wrong: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    b_right_a_wrong: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    both_right: int = 0
    both_wrong: int = 0

    @property
    def p_value(self) -> float | None:
        """Two-sided exact sign test on the examples where exactly one run is right."""
        return sign_test(len(self.a_right_b_wrong), len(self.b_right_a_wrong))


def sign_test(b: int, c: int) -> float | None:
    n = b + c
    if n == 0:
        return None
    k = min(b, c)
    # P(X <= k) for X ~ Binomial(n, 1/2), doubled; summed in log space for large n
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top + math.log(sum(math.exp(v - top) for v in logs)) - n * math.log(2))
    return min(1.0, 2.0 * tail)


def example_diff(a: RunData, b: RunData) -> ExampleDiff | None:
    """None when either run has no predictions, their ids are not the same set, or an id
    holds a different example in the two runs (different validation sets): pairing runs on the
    ids they happen to share compared 80 examples with 52 as if they were one set."""
    if not a.predictions or not b.predictions:
        return None
    rows_b = {str(r.get("id")): r for r in b.predictions}
    if {str(r.get("id")) for r in a.predictions} != set(rows_b):
        return None
    diff = ExampleDiff(a, b, compared=0)
    for ra in a.predictions:
        rb = rows_b.get(str(ra.get("id")))
        if rb is None:
            continue
        if _content(ra) != _content(rb):
            return None
        right_a, right_b = is_right(ra), is_right(rb)
        if right_a is None or right_b is None:
            continue
        diff.compared += 1
        if right_a and not right_b:
            diff.a_right_b_wrong.append((ra, rb))
        elif right_b and not right_a:
            diff.b_right_a_wrong.append((ra, rb))
        elif right_a:
            diff.both_right += 1
        else:
            diff.both_wrong += 1
    return diff if diff.compared else None
