"""Fuzzed readers: whatever bytes a user's file holds, a reader returns a result or raises a
one-line `UserError`, never another exception (a traceback) or a message over several lines.

Covered: the table reader (.csv/.tsv/.jsonl/.json), the CoNLL (tagging) and SQuAD (qa) task
readers, config `--set` overrides, and the report loader on damaged run.json/metrics.jsonl.
Examples are few (`MAX`) and without deadline so the default suite stays fast; set
HYPOTHESIS_PROFILE=deep for a longer search."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="fuzz tests need hypothesis (dev extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from encoderlab.config import FinetuneConfig, TaskConfig, load_config  # noqa: E402
from encoderlab.data.tables import read_rows  # noqa: E402
from encoderlab.errors import UserError  # noqa: E402
from encoderlab.reporting.load import load_run  # noqa: E402
from encoderlab.tasks.registry import get_task  # noqa: E402

MAX = 150 if os.environ.get("HYPOTHESIS_PROFILE") != "deep" else 3000
FUZZ = settings(
    max_examples=MAX,
    deadline=None,
    derandomize=os.environ.get("HYPOTHESIS_PROFILE") != "deep",  # the same examples in CI
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Characters that matter to the formats, plus text, a byte-order mark and a NUL.
SYNTAX = list(',"\t\n\r{}[]:;-_.= \\') + ["\ufeff", "\x00", "null", "true", "1", "-0.5e3"]
WORDS = ["text", "target", "label", "id", "data", "paragraphs", "qas", "answers", "context"]
WORDS += ["question", "answer_start", "title", "O", "B-PER", "I-PER", "B-LOC", "-DOCSTART-"]
WORDS += ["a", "word", "é", "한국", "\u200b"]


def _text() -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(SYNTAX + WORDS), max_size=60).map("".join)


# Random bytes, text built from the formats' syntax, and text with a bad UTF-8 byte inside.
CONTENT = st.one_of(
    st.binary(max_size=300),
    _text().map(lambda t: t.encode("utf-8")),
    st.tuples(_text(), st.binary(min_size=1, max_size=3), _text()).map(
        lambda p: p[0].encode() + p[1] + p[2].encode()
    ),
)


def _json_like() -> st.SearchStrategy[Any]:
    leaf = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 300),
        st.floats(allow_nan=True),
        st.sampled_from(WORDS),
        st.text(max_size=8),
    )
    return st.recursive(
        leaf,
        lambda kids: st.one_of(
            st.lists(kids, max_size=4),
            st.dictionaries(st.sampled_from(WORDS), kids, max_size=5),
        ),
        max_leaves=25,
    )


# SQuAD-shaped JSON whose parts may be of any type, as bytes.
SQUAD = st.builds(
    lambda data: json.dumps({"version": "1.1", "data": data}).encode(),
    st.lists(
        st.fixed_dictionaries(
            {
                "title": _json_like(),
                "paragraphs": st.one_of(
                    _json_like(),
                    st.lists(
                        st.fixed_dictionaries(
                            {
                                "context": st.one_of(
                                    st.sampled_from(["a word here", ""]), _json_like()
                                ),
                                "qas": st.one_of(
                                    _json_like(),
                                    st.lists(
                                        st.fixed_dictionaries(
                                            {
                                                "id": _json_like(),
                                                "question": st.one_of(
                                                    st.just("what word?"), _json_like()
                                                ),
                                                "answers": st.one_of(
                                                    _json_like(),
                                                    st.lists(
                                                        st.fixed_dictionaries(
                                                            {
                                                                "text": st.one_of(
                                                                    st.just("word"), _json_like()
                                                                ),
                                                                "answer_start": st.one_of(
                                                                    st.integers(-3, 20),
                                                                    _json_like(),
                                                                ),
                                                            }
                                                        ),
                                                        max_size=2,
                                                    ),
                                                ),
                                            }
                                        ),
                                        max_size=2,
                                    ),
                                ),
                            }
                        ),
                        max_size=2,
                    ),
                ),
            }
        ),
        max_size=2,
    ),
)


def one_line_or_result(fn: Callable[[], Any]) -> None:
    """The property: a result, or a UserError whose message is one non-empty line."""
    try:
        fn()
    except UserError as e:
        msg = str(e)
        assert msg.strip() and "\n" not in msg, f"UserError over several lines: {msg!r}"


_ROOT: list[Path] = []  # this module's folder under pytest's own temporary directory


@pytest.fixture(scope="module", autouse=True)
def _fuzz_root(tmp_path_factory: pytest.TempPathFactory):
    """Hypothesis examples write under pytest's tmp (kept for the last 3 sessions, then
    removed), not straight into /tmp, where a thousand folders per run would pile up."""
    _ROOT.append(tmp_path_factory.mktemp("fuzz"))
    yield
    _ROOT.pop()


def _in_file(suffix: str, content: bytes) -> Path:
    d = Path(tempfile.mkdtemp(prefix="fuzz-", dir=_ROOT[-1]))
    path = d / f"data{suffix}"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
@FUZZ
@given(content=CONTENT)
def test_table_reader(suffix, content):
    path = _in_file(suffix, content)
    one_line_or_result(lambda: read_rows(path))
    one_line_or_result(lambda: read_rows(path, header=False) if suffix in (".csv", ".tsv") else 0)


@FUZZ
@given(
    content=st.one_of(
        CONTENT,
        st.lists(
            st.tuples(
                st.sampled_from(WORDS), st.sampled_from(["O", "B-PER", "I-LOC", "X", "", "B-"])
            ),
            max_size=12,
        ).map(lambda rows: "\n".join(f"{w} {t}" if w else "" for w, t in rows).encode()),
    )
)
def test_conll_reader(content):
    path = _in_file(".txt", content)
    cfg = TaskConfig(type="tagging", format="conll")
    one_line_or_result(lambda: get_task("tagging", cfg).read(str(path), cfg))


@FUZZ
@given(content=st.one_of(SQUAD, CONTENT))
def test_squad_reader(content):
    path = _in_file(".json", content)
    cfg = TaskConfig(type="qa")
    one_line_or_result(lambda: get_task("qa", cfg).read(str(path), cfg))


KEYS = ["train.lr", "train", "model.d_model", "model", "task.type", "task.train", "name"]
KEYS += ["head.type", "train.loggers", "data.corpus", "x.y", "", ".", "train..lr", "a.b.c"]
VALUES = ["2e-4", "", "[1", "{a: 1}", "nan", "-1", "'x'", "null", "[]", "a: b: c", "1e999"]
VALUES += ["!!python/object:os.system", "&a [*a]", "2024-01-01", "\n", "\t", "yes", "0x10"]


@FUZZ
@given(
    sets=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)).map("=".join),
            st.tuples(st.sampled_from(KEYS), st.text(max_size=12)).map("=".join),
            st.text(max_size=20),
        ),
        max_size=4,
    ),
    schema=st.sampled_from([None, FinetuneConfig]),
)
def test_config_overrides(sets, schema):
    kwargs = {} if schema is None else {"schema": schema}
    one_line_or_result(lambda: load_config(None, sets, **kwargs))


@FUZZ
@given(
    run_json=st.one_of(CONTENT, _json_like().map(lambda v: json.dumps(v).encode())),
    metrics=st.one_of(
        CONTENT,
        st.lists(_json_like().map(json.dumps), max_size=5).map(lambda ls: "\n".join(ls).encode()),
    ),
    config=st.one_of(
        st.just(b"name: x\n"), CONTENT, _json_like().map(lambda v: json.dumps(v).encode())
    ),
)
def test_report_loader(run_json, metrics, config):
    run = Path(tempfile.mkdtemp(prefix="fuzz-run-", dir=_ROOT[-1]))
    (run / "run.json").write_bytes(run_json)
    (run / "metrics.jsonl").write_bytes(metrics)
    (run / "config.yaml").write_bytes(config)
    one_line_or_result(lambda: load_run(run))
