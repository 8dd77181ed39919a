"""Columnar and dataset sources, byte-range reading, and tolerant reading with FileReports."""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

import pytest

from conftest import shared, synthetic_lines
from encoderlab.data.corpus import (
    FileReport,
    Source,
    describe_sources,
    iter_documents,
    iter_source,
    resolve_paths,
    resolve_sources,
    splittable,
)
from encoderlab.errors import UserError


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(UserError) as e:
        out = fn(*args, **kw)
        if not isinstance(out, list):
            list(out)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def wiki_lines(n: int = 300) -> list[str]:
    """A few hundred non-blank lines of real English text."""
    text = shared("wikitext-2", "valid.txt").read_text(encoding="utf-8")
    return [ln.strip() for ln in text.splitlines() if ln.strip()][:n]


def mixed_lines(n: int, seed: int = 0) -> list[str]:
    """Lines with 2-, 3- and 4-byte UTF-8 characters, so cut points fall inside them."""
    rng = random.Random(seed)
    extra = ["한국어", "문장입니다", "café", "naïve", "日本語", "😀", "Ωμέγα"]
    return [
        " ".join(rng.choice(extra) if rng.random() < 0.4 else w for w in line.split())
        for line in synthetic_lines(n, seed)
    ]


# --- byte ranges ------------------------------------------------------------------------------


def read_in_ranges(path: Path, cuts: list[int], **kw) -> list[str]:
    bounds = [0, *sorted(cuts), path.stat().st_size]
    out: list[str] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        out.extend(iter_source(path, byte_range=(a, b), **kw))
    return out


def cut_points(data: bytes, rng: random.Random, k: int) -> list[int]:
    """Random cuts, plus cuts right at and after newlines and inside multi-byte characters."""
    size = len(data)
    newlines = [i for i, b in enumerate(data) if b == 0x0A]
    inside = [i for i, b in enumerate(data) if 0x80 <= b < 0xC0]  # continuation bytes
    cuts = [rng.randrange(size + 1) for _ in range(k)]
    cuts += rng.sample(newlines, min(k, len(newlines)))
    cuts += [i + 1 for i in rng.sample(newlines, min(k, len(newlines)))]
    cuts += rng.sample(inside, min(k, len(inside)))
    return cuts


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
@pytest.mark.parametrize("kind", ["txt", "jsonl"])
def test_byte_ranges_tile_the_file(tmp_path, kind, line_end):
    lines = mixed_lines(300)
    if kind == "txt":
        body = line_end.join(lines[:150]) + line_end * 3 + line_end.join(lines[150:])
        path = write(tmp_path / "a.txt", "\ufeff" + body + line_end)
    else:
        body = line_end.join(json.dumps({"text": ln}, ensure_ascii=False) for ln in lines)
        path = write(tmp_path / "a.jsonl", body)  # no newline at the end
    whole = list(iter_source(path))
    assert whole == lines
    data = path.read_bytes()
    rng = random.Random(1)
    for trial in range(30):
        cuts = cut_points(data, rng, k=trial % 7 + 1)
        assert read_in_ranges(path, cuts) == whole, cuts
    # degenerate ranges: empty, past the end, one byte
    assert list(iter_source(path, byte_range=(5, 5))) == []
    assert list(iter_source(path, byte_range=(len(data), len(data) + 100))) == []
    assert read_in_ranges(path, list(range(1, 700))) == whole  # every cut in the first lines


def test_byte_ranges_on_real_crlf_text():
    path = shared("wikitext-2", "wiki.test.raw")  # CRLF line ends
    whole = list(iter_source(path))
    size = path.stat().st_size
    rng = random.Random(0)
    cuts = [rng.randrange(size) for _ in range(16)]
    report = FileReport()
    bounds = [0, *sorted(cuts), size]
    pieces: list[str] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        part = FileReport(path=str(path))
        pieces.extend(iter_source(path, byte_range=(a, b), report=part))
        report.merge(part)
    assert pieces == whole and report.documents == len(whole) and report.n_problems == 0


def test_problems_are_counted_once_across_ranges(tmp_path):
    lines = mixed_lines(200)
    raw = "\n".join(lines[:100]).encode() + b"\nbad \xff line\n" + "\n".join(lines[100:]).encode()
    path = write(tmp_path / "a.txt", raw)
    rng = random.Random(2)
    for _ in range(10):
        bounds = [0, *sorted(cut_points(raw, rng, 3)), len(raw)]
        total, out = FileReport(), []
        for a, b in zip(bounds, bounds[1:], strict=False):
            part = FileReport()
            out.extend(iter_source(path, byte_range=(a, b), report=part))
            total.merge(part)
        assert out == lines and total.bad_encoding_lines == 1 and total.documents == 200


def test_splittable():
    assert splittable("a.txt") and splittable("a.jsonl") and splittable("x.json")
    assert splittable("notes.md") and splittable("a.data", "jsonl")
    assert not splittable("a.txt", txt_unit="paragraph")
    assert not splittable("a.txt.gz") and not splittable("a.jsonl.zst")
    assert not splittable("a.csv") and not splittable("a.tsv") and not splittable("a.parquet")
    assert not splittable("a.xlsx") and not splittable(Source("hf_hub", name="x"))
    assert splittable(Source("file", Path("a.jsonl")))


def test_byte_range_on_an_unsplittable_file_is_a_bug(tmp_path):
    p = write(tmp_path / "a.csv", "text\nx\n")
    with pytest.raises(ValueError, match="byte ranges"):
        list(iter_source(p, byte_range=(0, 3)))


def test_problems_in_a_later_range_name_the_byte_offset(tmp_path):
    p = write(tmp_path / "a.jsonl", '{"text": "a"}\n' * 10 + '{"text": 1}\n')
    msg = one_line_error(iter_source, p, byte_range=(20, 1000))
    assert "a.jsonl (byte 140): field 'text' is a number" in msg


# --- tolerant reading ---------------------------------------------------------------------------


def test_corrupt_second_zstd_frame(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    lines = wiki_lines(300)
    c = zstandard.ZstdCompressor(write_checksum=True)
    first = c.compress(("\n".join(lines[:150]) + "\n").encode())
    second = bytearray(c.compress(("\n".join(lines[150:]) + "\n").encode()))
    for i in range(20, len(second) - 8, 97):  # flip bytes inside the second frame's blocks
        second[i] ^= 0xFF
    path = write(tmp_path / "a.txt.zst", first + bytes(second))
    report = FileReport()
    out = list(iter_source(path, report=report))
    assert out == lines[:150]  # all of the good frame, none of the bad one
    assert report.corrupt is not None and report.n_problems == 1
    assert report.documents == len(out) and report.path == str(path)
    assert "a.txt.zst" in report.examples[0]
    assert "corrupt" in report.summary() and "\n" not in report.summary()
    msg = one_line_error(iter_documents, [path])
    assert "a.txt.zst:" in msg and "cannot" in msg


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_truncated_compressed_file(tmp_path, suffix):
    zstandard = pytest.importorskip("zstandard")
    lines = wiki_lines(3000)  # over 128 KiB, so the zstd frame has several blocks
    data = ("\n".join(lines) + "\n").encode()
    packed = zstandard.ZstdCompressor().compress(data) if suffix == ".zst" else gzip.compress(data)
    path = write(tmp_path / f"a.txt{suffix}", packed[: len(packed) * 2 // 3])
    report = FileReport()
    out = list(iter_source(path, report=report))
    assert 0 < len(out) < len(lines) and out[:-1] == lines[: len(out) - 1]
    assert report.corrupt is not None and report.n_problems == 1
    assert "cannot read the file" in one_line_error(iter_documents, [path])


def test_multi_frame_zstd_is_read_whole(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    c = zstandard.ZstdCompressor()
    path = write(
        tmp_path / "a.jsonl.zst", c.compress(b'{"text": "a"}\n') + c.compress(b'{"text": "b"}\n')
    )
    assert list(iter_source(path)) == ["a", "b"]


def test_corrupt_second_gzip_member(tmp_path):
    lines = wiki_lines(300)
    jl = [json.dumps({"text": ln}) for ln in lines]
    first = gzip.compress(("\n".join(jl[:150]) + "\n").encode())
    second = bytearray(gzip.compress(("\n".join(jl[150:]) + "\n").encode()))
    for i in range(12, len(second) - 8, 50):
        second[i] ^= 0x55
    path = write(tmp_path / "a.jsonl.gz", first + bytes(second))
    report = FileReport()
    out = list(iter_source(path, report=report))
    assert out == lines[:150] and report.corrupt and report.n_problems == 1
    msg = one_line_error(iter_documents, [path])
    assert "a.jsonl.gz:" in msg and "cannot read the file" in msg


def test_truncated_last_jsonl_line(tmp_path):
    lines = wiki_lines(200)
    body = "".join(json.dumps({"text": ln}) + "\n" for ln in lines)
    path = write(tmp_path / "a.jsonl", body + '{"text": "cut sho')
    report = FileReport()
    assert list(iter_source(path, report=report)) == lines
    assert report.truncated_last_line and report.n_problems == 1 and report.bad_records == 0
    assert f"a.jsonl:{len(lines) + 1}:" in report.examples[0]
    assert "last line cut short" in report.summary()
    msg = one_line_error(iter_documents, [path])
    assert f"a.jsonl:{len(lines) + 1}: not valid JSON" in msg and "cut short" in msg


def test_file_deleted_after_listing(tmp_path):
    a = write(tmp_path / "a.txt", "\n".join(wiki_lines(100)) + "\n")
    gone = write(tmp_path / "b.txt", "will vanish\n")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["x"]}), table)
    sources = resolve_sources([a, gone, table])
    gone.unlink()
    table.unlink()
    reports = [FileReport() for _ in sources]
    out = [d for s, r in zip(sources, reports, strict=True) for d in iter_source(s, report=r)]
    assert len(out) == 100 and reports[0].n_problems == 0
    assert reports[1].vanished and reports[1].documents == 0 and reports[1].n_problems == 1
    assert reports[2].vanished
    assert "vanished" in reports[1].summary()
    msg = one_line_error(lambda: list(iter_source(sources[1])))
    assert "b.txt: cannot open (No such file or directory)" in msg


def test_non_utf8_lines_in_text(tmp_path):
    lines = wiki_lines(100)
    raw = b"".join(ln.encode() + b"\n" for ln in lines[:50])
    raw += b"caf\xe9 au lait\n" + b"".join(ln.encode() + b"\n" for ln in lines[50:])
    path = write(tmp_path / "a.txt", raw)
    report = FileReport()
    assert list(iter_source(path, report=report)) == lines
    assert report.bad_encoding_lines == 1 and report.n_problems == 1
    assert report.examples == [
        f"{path}:51: not UTF-8 text (byte 0xe9 at column 4); convert the file to UTF-8 "
        "(from Windows-1252/Latin-1: `iconv -f cp1252 -t utf-8`)"
    ]
    assert "a.txt:51: not UTF-8" in one_line_error(iter_documents, [path])
    utf16 = write(tmp_path / "b.txt", "\n".join(lines[:5]).encode("utf-16"))  # a BOM, NULs
    assert "it looks like UTF-16: convert it with `iconv -f utf-16 -t utf-8`" in one_line_error(
        iter_documents, [utf16]
    )


def test_bad_records_are_counted_and_skipped(tmp_path):
    body = (
        b'{"text": "one"}\n'
        b"not json\n"
        b'["an", "array"]\n'
        b'{"title": "no text"}\n'
        b'{"text": 3}\n'
        b'{"text": "two"}\n'
        b"\xff\n"
    )
    path = write(tmp_path / "a.jsonl", body)
    report = FileReport()
    assert list(iter_source(path, report=report)) == ["one", "two"]
    assert report.bad_records == 4 and report.bad_encoding_lines == 1
    assert len(report.examples) == 3 and report.examples[0].startswith(f"{path}:2: not valid JSON")


def test_csv_short_rows_are_counted(tmp_path):
    path = write(tmp_path / "a.csv", "id,text\n1,fine\n2\n3,also fine\n")
    report = FileReport()
    assert list(iter_source(path, report=report)) == ["fine", "also fine"]
    assert report.bad_records == 1 and "a.csv:3: row has 1 fields" in report.examples[0]


def test_configuration_mistakes_raise_even_when_tolerant(tmp_path):
    report = FileReport()
    jl = write(tmp_path / "a.jsonl", '{"body": "x"}\n{"body": "y"}\n')
    assert "a.jsonl:1: no field 'text' (fields: body)" in one_line_error(
        iter_source, jl, report=report
    )
    bad_then_missing = write(tmp_path / "b.jsonl", 'oops\n{"body": "y"}\n')
    assert "b.jsonl:2: no field 'text'" in one_line_error(
        iter_source, bad_then_missing, report=FileReport()
    )
    arr = write(tmp_path / "c.json", '[{"text": "a"}, {"text": "b"}]\n')
    assert "one object per line" in one_line_error(iter_source, arr, report=FileReport())
    multi = write(tmp_path / "d.json", '[\n{"text": "a"}\n]\n')
    assert "multi-line JSON" in one_line_error(iter_source, multi, report=FileReport())
    cs = write(tmp_path / "e.csv", "id,body\n1,x\n")
    assert "e.csv: no column 'text' (columns: id, body)" in one_line_error(
        iter_source, cs, report=FileReport()
    )


def test_tolerant_empty_file_is_not_an_error(tmp_path):
    p = write(tmp_path / "a.txt", "")
    report = FileReport()
    assert list(iter_source(p, report=report)) == [] and report.documents == 0
    assert "a.txt: no text found (empty file)" in one_line_error(iter_source, p)


def test_report_merge_and_summary():
    a = FileReport("x.txt", documents=5, bad_records=2, examples=["x.txt:1: e1", "x.txt:2: e2"])
    b = FileReport(
        "x.txt", documents=3, bad_encoding_lines=1, examples=["x.txt (byte 9): e3", "e4"]
    )
    a.merge(b)
    assert (a.documents, a.bad_records, a.bad_encoding_lines, a.n_problems) == (8, 2, 1, 3)
    assert a.examples == ["x.txt:1: e1", "x.txt:2: e2", "x.txt (byte 9): e3"]
    line = a.summary()
    assert line.startswith("x.txt: 8 documents, 1 non-UTF-8 lines skipped, 2 bad records")
    assert "x.txt:1: e1" in line and "\n" not in line


# --- csv / parquet / xlsx columns ---------------------------------------------------------------


def test_csv_list_of_columns(tmp_path):
    p = write(tmp_path / "pairs.tsv", "ko\ten\n안녕\thello\n\tonly english\n고마워\t\n")
    out = list(iter_documents([p], text_column=["ko", "en"]))
    assert out == ["안녕", "hello", "only english", "고마워"]
    msg = one_line_error(iter_documents, [p], text_column=["ko", "fr"])
    assert "pairs.tsv: no column 'fr' (columns: ko, en)" in msg
    assert "data.text_column" in one_line_error(iter_documents, [p], text_column=[])


def test_parquet_batches_columns_and_errors(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    lines = mixed_lines(2500)
    ko = [None if i % 7 == 0 else f"문장 {i}" for i in range(len(lines))]
    table = pa.table({"id": list(range(len(lines))), "text": lines, "ko": ko})
    path = tmp_path / "a.parquet"
    pq.write_table(table, path, row_group_size=1000)
    assert list(iter_documents([path])) == lines
    both = list(iter_documents([path], text_column=["ko", "text"]))
    expected = [d for k, t in zip(ko, lines, strict=True) for d in (k, t) if d]
    assert both == expected
    report = FileReport()
    assert len(list(iter_source(path, report=report))) == 2500 and report.n_problems == 0
    msg = one_line_error(iter_documents, [path], text_column="body")
    assert "a.parquet: no column 'body' (columns: id, text, ko); set data.text_column" in msg
    assert "column 'id' holds int64, not text" in one_line_error(
        iter_documents, [path], text_column="id"
    )
    # dictionary-encoded strings are text too
    dict_path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": pa.array(["x", "y", "x"]).dictionary_encode()}), dict_path)
    assert list(iter_documents([dict_path])) == ["x", "y", "x"]
    # not a parquet file at all
    bad = write(tmp_path / "bad.parquet", b"PAR1 nonsense")
    assert "bad.parquet: not a readable Parquet file" in one_line_error(iter_documents, [bad])
    report = FileReport()
    assert list(iter_source(bad, report=report)) == [] and report.corrupt


def test_xlsx_parallel_corpus(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "notes"
    ws.append(["just a note"])
    pairs = wb.create_sheet("pairs")
    pairs.append(["id", "원문", "번역문"])
    pairs.append([1, "나는 학생이다.", "I am a student."])
    pairs.append([2, "  ", "Blank Korean cell."])
    pairs.append([3, "숫자 없음", None])
    pairs.append([4, 2024, "A year."])
    path = tmp_path / "ko-en.xlsx"
    wb.save(path)
    out = list(iter_documents([path], text_column=["원문", "번역문"], sheet="pairs"))
    assert out == [
        "나는 학생이다.",
        "I am a student.",
        "Blank Korean cell.",
        "숫자 없음",
        "2024",
        "A year.",
    ]
    msg = one_line_error(iter_documents, [path], text_column="text", sheet="pairs")
    assert "ko-en.xlsx[pairs]: no column 'text' (columns: id, 원문, 번역문)" in msg
    msg = one_line_error(iter_documents, [path], sheet="Sheet9")
    assert "ko-en.xlsx: no sheet 'Sheet9' (sheets: notes, pairs); set data.sheet" in msg
    assert "no text found" in one_line_error(iter_documents, [path], text_column="just a note")
    bad = write(tmp_path / "bad.xlsx", b"not a zip")
    assert "bad.xlsx: not a readable .xlsx workbook" in one_line_error(iter_documents, [bad])


# --- Hugging Face datasets ----------------------------------------------------------------------


@pytest.fixture
def hf_dirs(tmp_path):
    datasets = pytest.importorskip("datasets")
    lines = synthetic_lines(30)
    ds = datasets.Dataset.from_dict({"text": lines, "label": list(range(30))})
    one = tmp_path / "one"
    ds.save_to_disk(str(one))
    dd = datasets.DatasetDict(
        {"train": ds.select(range(20)), "validation": ds.select(range(20, 30))}
    )
    both = tmp_path / "both"
    dd.save_to_disk(str(both))
    return lines, one, both


def test_hf_save_to_disk(hf_dirs):
    lines, one, both = hf_dirs
    assert list(iter_documents([one])) == lines
    assert list(iter_documents([both])) == lines[:20]
    assert list(iter_documents([f"{both}::validation"])) == lines[20:]
    assert list(iter_documents([one, f"{both}::validation"], max_documents=32)) == (
        lines + lines[20:22]
    )
    sources = resolve_sources([one, f"{both}::validation"])
    assert [s.kind for s in sources] == ["hf_disk", "hf_disk"]
    assert str(sources[1]) == f"{both}::validation" and resolve_paths([one]) == [one]
    report = FileReport()
    assert len(list(iter_source(sources[1], report=report))) == 10 and report.documents == 10
    # a glob picks up dataset directories too
    assert [s.path for s in resolve_sources([str(one.parent / "*")])] == [both, one]


def test_hf_errors(hf_dirs, tmp_path, monkeypatch):
    _, one, both = hf_dirs
    assert "no split 'test' (splits: train, validation)" in one_line_error(
        iter_documents, [f"{both}::test"]
    )
    assert "no column 'body' (columns: text, label)" in one_line_error(
        iter_documents, [one], text_column="body"
    )
    assert "column 'label' holds" in one_line_error(iter_documents, [one], text_column="label")
    assert "a single dataset" in one_line_error(iter_documents, [f"{one}::train"])
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "is a directory" in one_line_error(iter_documents, [plain])
    monkeypatch.setitem(sys.modules, "datasets", None)  # import now raises ImportError
    assert "pip install 'encoderlab[hf]'" in one_line_error(iter_documents, [one])


def test_hf_hub_names_and_offline_error(monkeypatch):
    datasets = pytest.importorskip("datasets")
    s = resolve_sources(["hf:wikitext:wikitext-2-raw-v1::validation", "hf:user/corpus"])
    assert s[0] == Source("hf_hub", name="wikitext", config="wikitext-2-raw-v1", split="validation")
    assert s[1] == Source("hf_hub", name="user/corpus")
    assert str(s[0]) == "hf:wikitext:wikitext-2-raw-v1::validation"
    assert resolve_sources(["wikitext"], fmt="hf") == [Source("hf_hub", name="wikitext")]
    assert resolve_paths(["hf:x"]) == []
    assert describe_sources(["hf:x:y"]) == [{"hf": "x", "config": "y", "split": None}]
    assert "not a Hugging Face dataset name" in one_line_error(resolve_sources, ["hf:x:"])

    calls = []

    def offline(*args, **kw):
        calls.append((args, kw))
        raise ConnectionError("Couldn't reach 'wikitext' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    msg = one_line_error(iter_documents, ["hf:wikitext:wikitext-2-raw-v1"])
    assert msg.startswith("hf:wikitext:wikitext-2-raw-v1: cannot load from the Hugging Face Hub")
    assert "internet" in msg
    assert calls == [(("wikitext", "wikitext-2-raw-v1"), {"split": "train", "streaming": True})]


def test_describe_sources_of_a_dataset_directory(hf_dirs):
    _, one, _ = hf_dirs
    (d1,) = describe_sources([one])
    json.dumps(d1)
    assert d1["path"] == str(one.resolve()) and d1["size"] > 0
    arrow = next(one.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes() + b"\0")
    (d2,) = describe_sources([one])
    assert d2["files"] != d1["files"]


def test_a_table_or_json_lines_named_txt_is_refused_also_under_the_default_names(tmp_path):
    """JSON lines or a CSV whose column is the default "text", named .txt, were trained on as
    raw text: braces, field names, ids and labels. A prose line that starts with the word
    "text" is still text."""
    from encoderlab.data.corpus import iter_documents
    from encoderlab.errors import UserError

    cases = {
        "jl.txt": '{"text": "hello there", "id": 1}\n{"text": "more", "id": 2}\n',
        "csv.txt": "id,text,label\n1,hello,0\n",
        "tsv.txt": "text\tlabel\nhello\t0\n",
    }
    for name, body in cases.items():
        (tmp_path / name).write_text(body)
        with pytest.raises(UserError, match=rf"{name}:1: .*set data.format to tsv, csv or jsonl"):
            list(iter_documents([tmp_path / name]))
    prose = tmp_path / "prose.txt"
    prose.write_text("text, images, and video are here\n{not json but braces}\ntext\n")
    assert list(iter_documents([prose]))[0] == "text, images, and video are here"
    single = tmp_path / "single.txt"
    single.write_text("text\nanother line\n")
    assert list(iter_documents([single])) == ["text", "another line"]
