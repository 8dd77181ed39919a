"""The one table reader (encoderlab.data.tables): csv / tsv / jsonl / json into rows, the same
one-line errors for every reader (fine-tuning, studies, corpora), a UTF-8 byte-order mark
dropped, streaming, and rows written back in the format they were read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoderlab.config import TaskConfig
from encoderlab.data.corpus import iter_documents
from encoderlab.data.tables import iter_rows, read_rows, table_format, write_rows
from encoderlab.errors import UserError
from encoderlab.study import SplitSpec, write_split
from encoderlab.tasks.classification import read_records

BOM = "\ufeff"


def _write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_text((BOM if bom else "") + text, encoding="utf-8")
    return path


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    "name, text",
    [
        ("a.csv", 'id,text\n1,"hello, world"\n2,bye\n'),
        ("a.tsv", "id\ttext\n1\thello, world\n2\tbye\n"),
        ("a.jsonl", '{"id": "1", "text": "hello, world"}\n\n{"id": "2", "text": "bye"}\n'),
        ("a.json", '[{"id": "1", "text": "hello, world"}, {"id": "2", "text": "bye"}]'),
    ],
)
@pytest.mark.parametrize("bom", [False, True])
def test_every_format_reads_the_same_rows(tmp_path, name, text, bom):
    rows = read_rows(_write(tmp_path / name, text, bom))
    assert [r for _, r in rows] == [
        {"id": "1", "text": "hello, world"},
        {"id": "2", "text": "bye"},
    ]
    # the first key is "id", not "\ufeffid": the byte-order mark is gone
    assert all(BOM not in k for _, r in rows for k in r)
    if name != "a.json":
        assert [n for n, _ in rows] == ([2, 3] if name.endswith("sv") else [1, 3])


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl"])
def test_bom_is_dropped_for_every_reader(tmp_path, suffix):
    """Fine-tuning, studies and the pretraining corpus all see 'text', not '\ufefftext'."""
    sep = "\t" if suffix == "tsv" else ","
    body = '{"text": "hi"}\n' if suffix == "jsonl" else f"text{sep}label\nhi{sep}1\n"
    f = _write(tmp_path / f"a.{suffix}", body, bom=True)
    assert read_records(f, TaskConfig())[0][1]["text"] == "hi"
    assert list(iter_documents([f])) == ["hi"]


def test_csv_line_numbers_name_the_first_line_of_a_multiline_row(tmp_path):
    f = _write(tmp_path / "a.csv", 'text,label\n"two\nlines",1\nnext,0\n')
    assert [(n, r["text"]) for n, r in read_rows(f)] == [(2, "two\nlines"), (4, "next")]


def test_tsv_has_no_quoting(tmp_path):
    f = _write(tmp_path / "a.tsv", 'text\tlabel\nhe said "hi\t1\n')
    assert read_rows(f)[0][1] == {"text": 'he said "hi', "label": "1"}


def test_short_csv_row_reads_none_and_long_row_is_an_error(tmp_path):
    f = _write(tmp_path / "a.csv", "id,text,label\n1,hello\n")
    assert read_rows(f)[0][1] == {"id": "1", "text": "hello", "label": None}
    g = _write(tmp_path / "b.csv", "id,text\n1,hello,world\n")
    assert "b.csv:2: row has 3 fields but the header has 2" in _error(read_rows, g)


def test_iter_rows_streams(tmp_path):
    f = _write(tmp_path / "a.jsonl", '{"a": 1}\n{"a": 2}\nnot json\n')
    rows = iter_rows(f)
    assert next(rows) == (1, {"a": 1})  # the bad third line is not read yet
    assert next(rows) == (2, {"a": 2})
    with pytest.raises(UserError, match=r"a\.jsonl:3: not valid JSON"):
        next(rows)


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("a.jsonl", '{"a": 1}\n{"a": oops}\n', "a.jsonl:2: not valid JSON"),
        ("a.jsonl", '{"a": 1}\n"text"\n', "a.jsonl:2: expected a JSON object, got a string"),
        ("a.jsonl", '[\n{"a": 1}\n]\n', "a multi-line JSON document, not JSON lines"),
        ("a.json", '[{"a": 1},\n{"a": }]', "a.json:2: not valid JSON"),
        ("a.json", '{"a": 1}', "expected a JSON array of objects"),
        ("a.json", '[{"a": 1}, 3]', "item 2 of the array is a number, not an object"),
        ("a.csv", "", "a.csv: empty file (no header row)"),
        ("a.csv", "a,b\nx\ry,1\n", "a.csv:2: not valid CSV"),
        ("a.txt", "a,b\n", "cannot tell the format from the name; set format"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, name, content, expected):
    assert expected in _error(read_rows, _write(tmp_path / name, content))


@pytest.mark.parametrize(
    "name, content",
    [
        ("a.csv", b"a\nx\ncaf\xe9\n"),
        ("a.jsonl", b'{"a": "x"}\n\n{"a": "caf\xe9"}\n'),
        ("a.json", b'[{"a": "x"},\n\n{"a": "caf\xe9"}]'),
    ],
)
def test_not_utf8_names_the_line(tmp_path, name, content):
    f = tmp_path / name
    f.write_bytes(content)
    msg = _error(read_rows, f)
    assert f"{name}:3: not UTF-8 text (byte 0xe9" in msg and "convert the file to UTF-8" in msg


def test_format_names_the_setting(tmp_path):
    f = tmp_path / "data.txt"
    assert "set task.format" in _error(table_format, f, "auto", "task.format")
    assert "unknown task.format 'xml'" in _error(table_format, f, "xml", "task.format")
    assert table_format(f, "tsv") == "tsv"


def test_data_key_is_unwrapped_only_when_asked(tmp_path):
    f = _write(tmp_path / "a.json", json.dumps({"version": 1, "data": [{"a": 1}]}))
    assert read_rows(f) == [(1, {"a": 1})]
    assert "expected a JSON array of objects, got an object" in _error(read_rows, f, data_key=False)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json"])
def test_write_rows_reads_back(tmp_path, fmt):
    rows = [{"text": 'a "quoted", text', "n": "1"}, {"text": "two", "n": "2"}]
    f = tmp_path / f"out.{fmt}"
    write_rows(f, rows, fmt)
    assert [r for _, r in read_rows(f)] == rows


def test_study_split_of_a_tsv_keeps_stray_quotes(tmp_path):
    """split: reads a .tsv as fine-tuning does (no quoting) and writes it back the same way."""
    lines = ["premise\thypothesis\tlabel"]
    lines += [f'p{i}\the said "hi {j}\t{j}' for i in range(10) for j in range(3)]
    src = _write(tmp_path / "nli.tsv", "\n".join(lines) + "\n", bom=True)
    files, _ = write_split(SplitSpec(file=str(src), group="premise"), tmp_path / "split")
    back = [r for f in files for _, r in read_records(f, TaskConfig(text_column="hypothesis"))]
    assert sorted(r["hypothesis"] for r in back) == sorted(ln.split("\t")[1] for ln in lines[1:])
    assert all(set(r) == {"premise", "hypothesis", "label"} for r in back)


def test_study_split_errors_name_the_setting(tmp_path):
    f = _write(tmp_path / "a.jsonl", '{"g": 1}\n{"g": oops}\n')
    msg = _error(write_split, SplitSpec(file=str(f), group="g"), tmp_path / "split")
    assert msg.startswith("split.file: ") and "a.jsonl:2: not valid JSON" in msg


@pytest.mark.parametrize(
    "text, line",
    [
        ('text,target\n"hello there,1\nok,0\n', 2),  # swallowed the rest of the file
        ('text,target\nok,0\nfine,1\n"never closed,1', 4),  # last line, no newline
        ('text,target\nok,0\n"a ""quoted"" word,1\n', 3),  # doubled quotes, still open
    ],
)
def test_unterminated_quote_names_the_line_it_opened(tmp_path, text, line):
    """Not "no column 'target'" or a row holding the rest of the file: the quote that never
    closes, where it opened, for every reader of a .csv."""
    f = _write(tmp_path / "a.csv", text)
    msg = _error(read_rows, f)
    assert f"a.csv:{line}: unterminated quoted field" in msg
    assert "a.csv:" in _error(read_records, f, TaskConfig(label_column="target"))
    assert f"a.csv:{line}: unterminated" in _error(lambda: list(iter_documents([f])))


def test_quoted_fields_that_close_are_not_unterminated(tmp_path):
    f = _write(tmp_path / "a.csv", 'text,target\n"two\nlines",1\n"last ""one""",0')
    assert [r["text"] for _, r in read_rows(f)] == ["two\nlines", 'last "one"']


@pytest.mark.parametrize("orient", [None, "split", "index", "records", "columns"])
def test_every_pandas_to_json_layout_reads_as_the_same_rows(tmp_path, orient):
    """pandas' DataFrame.to_json writes {"column": {"index": value}} by default (and split,
    index, records layouts on request): each reads as the frame's rows, in order."""
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"text": ["a b", "c d", "e"], "label": [1, 0, 1]})
    path = tmp_path / "frame.json"
    df.to_json(path, orient=orient) if orient else df.to_json(path)
    rows = [row for _, row in read_rows(path)]
    assert rows == [
        {"text": "a b", "label": 1},
        {"text": "c d", "label": 0},
        {"text": "e", "label": 1},
    ]


def test_a_tsv_quoted_across_a_line_break_is_refused_at_its_row(tmp_path):
    """pandas' to_csv(sep="\\t") quotes a text with a line break; read without quoting, as
    tab-separated files are, the row came apart: a row "without a gold label" skipped, and a
    submission with one row more than the input."""
    f = tmp_path / "pd.tsv"
    f.write_text(
        'id\ttext\tlabel\n1\t"She said ""great"" movie"\tpos\n2\t"first line\nsecond"\tneg\n'
    )
    with pytest.raises(UserError, match=r"pd.tsv:3: a cell opens a quote .* write it as \.csv"):
        list(iter_rows(f))
    # quotes in a whole row, as NSMC's reviews have them, are text
    ok = tmp_path / "ok.tsv"
    ok.write_text('id\tdocument\tlabel\n1\t"최고" 라고 했다\t1\n2\t"open quote only\t0\n')
    assert [r["document"] for _, r in iter_rows(ok)] == ['"최고" 라고 했다', '"open quote only']


def test_a_short_tsv_row_with_a_stray_quote_is_a_short_row_not_a_refusal(tmp_path):
    """A row one column short whose text opens a quote stopped the whole file, though no later
    line closed it: only a quote closed on a later line is a cell across a line break."""
    f = tmp_path / "short.tsv"
    f.write_text('id\ttext\tlabel\n1\t"unclosed\n2\tfine text\tneg\n3\tmore\tpos\n')
    rows = [r for _, r in iter_rows(f)]
    assert [r["id"] for r in rows] == ["1", "2", "3"] and rows[0]["label"] is None
    across = tmp_path / "across.tsv"
    across.write_text('id\ttext\tlabel\n1\t"first\nmiddle\nlast"\tneg\n')
    with pytest.raises(UserError, match=r"across.tsv:2: .* and line 4 closes it"):
        list(iter_rows(across))
    # pandas doubles a quote inside the cell: a middle line holding one still continues it
    quoted = tmp_path / "quoted.tsv"
    quoted.write_text('id\ttext\tlabel\n1\t"first\nhe said ""hi"" then\nlast"\tpos\n')
    with pytest.raises(UserError, match=r"quoted.tsv:2: .* and line 4 closes it"):
        list(iter_rows(quoted))
    # a whole row ending in a quote (12" pipe) cannot be the rest of a stray quote's row
    stray = tmp_path / "stray.tsv"
    stray.write_text('id\ttext\tlabel\n1\t"unclosed\n2\ta 12" pipe\tneg\n3\tmore\tpos\n')
    assert [r["label"] for _, r in iter_rows(stray)] == [None, "neg", "pos"]


def test_a_header_row_repeated_mid_file_is_refused_at_its_line(tmp_path):
    """Two csv files joined with cat: the second header row was read as a row, its label cell
    a class named "label" (a binary task became three classes, unsaid)."""
    joined = _write(tmp_path / "train.csv", "id,text,label\n1,a,pos\nid,text,label\n2,b,neg\n")
    msg = _error(lambda: list(iter_rows(joined)))
    assert msg == (
        f"{joined}:3: the header row again (id, text, label), as when two files are joined with "
        "cat; remove it (keep one header row)"
    )
    # a one-column file may well hold its column's name as a value; rows by position too
    assert len(list(iter_rows(_write(tmp_path / "one.csv", "text\na\ntext\n")))) == 2
    assert len(list(iter_rows(_write(tmp_path / "pos.csv", "a,b\na,b\n"), header=False))) == 2


def test_a_key_twice_in_a_json_row_is_refused_where_it_is(tmp_path):
    """json keeps the last of two equal keys: {"label": "x", "label": "y"} read as y, unsaid
    (a csv header naming a column twice was already refused)."""
    jsonl = _write(
        tmp_path / "d.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b", "label": "x", "label": "y"}\n',
    )
    assert _error(lambda: list(iter_rows(jsonl))) == (
        f"{jsonl}:2: an object has the key 'label' twice, and only its last value would be "
        "read; keep one of them"
    )
    array = _write(tmp_path / "d.json", '[{"text": "a", "text": "b", "label": "x"}]')
    assert "an object has the key 'text' twice" in _error(lambda: list(iter_rows(array)))
    nested = _write(tmp_path / "n.jsonl", '{"text": "a", "meta": {"k": 1}, "label": "x"}\n')
    assert list(iter_rows(nested)) == [(1, {"text": "a", "meta": {"k": 1}, "label": "x"})]


def test_a_pandas_table_numbered_both_ways_is_refused_not_read_transposed(tmp_path):
    """DataFrame(...).to_json() of a frame without column names: {"0": {"0": text, ...},
    "1": {"0": label, ...}} was read as orient="index", so its two columns became two rows."""
    both = _write(
        tmp_path / "p.json",
        '{"0": {"0": "good film", "1": "bad film"}, "1": {"0": "pos", "1": "neg"}}',
    )
    assert "columns and rows are both numbered" in _error(lambda: list(iter_rows(both)))
    by_column = _write(
        tmp_path / "c.json", '{"text": {"0": "good", "1": "bad"}, "label": {"0": "p", "1": "n"}}'
    )
    assert [r for _, r in iter_rows(by_column)] == [
        {"text": "good", "label": "p"},
        {"text": "bad", "label": "n"},
    ]
    by_index = _write(tmp_path / "i.json", '{"0": {"text": "good", "label": "p"}}')
    assert [r for _, r in iter_rows(by_index)] == [{"text": "good", "label": "p"}]
