"""The corpus reader: every format, compression, and a clear one-line error for each bad input."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import sys
from pathlib import Path

import pytest

from encoderlab.data.corpus import describe_sources, iter_documents
from encoderlab.errors import UserError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def docs(*paths: Path, **kw) -> list[str]:
    return list(iter_documents(list(paths), **kw))


def error(*paths: Path | str, **kw) -> str:
    with pytest.raises(UserError) as e:
        list(iter_documents(list(paths), **kw))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# --- formats ---------------------------------------------------------------------------------


def test_txt_lines_strips_and_skips_blank(tmp_path):
    p = write(tmp_path / "a.txt", "  first line \n\n\t\nsecond line\r\nthird")
    assert docs(p) == ["first line", "second line", "third"]


def test_txt_paragraphs(tmp_path):
    p = write(tmp_path / "a.txt", "p1 l1\np1 l2\n\n\n p2 \n   \np3\n")
    assert docs(p, txt_unit="paragraph") == ["p1 l1\np1 l2", "p2", "p3"]


def test_unknown_suffix_is_text_and_bom_is_dropped(tmp_path):
    p = write(tmp_path / "notes.md", "\ufeffhello\nworld\n")
    assert docs(p) == ["hello", "world"]


def test_jsonl_and_json_lines(tmp_path):
    a = write(
        tmp_path / "a.jsonl", '{"text": " one "}\n\n{"text": ""}\n{"text": null}\n{"text": "two"}\n'
    )
    b = write(tmp_path / "b.json", '{"body": "three", "id": 1}\n')
    assert docs(a) == ["one", "two"]
    assert docs(b, text_field="body") == ["three"]
    assert docs(a, b, text_field="text", max_documents=1) == ["one"]


def test_csv_with_quotes_newlines_and_big_fields(tmp_path):
    big = "word " * 60_000  # over csv's default 128 KiB field limit
    p = write(
        tmp_path / "a.csv",
        f'id,text\n1,"hello, ""quoted""\nsecond line"\n2,\n\n3,{big}\n',
    )
    out = docs(p)
    assert out[0] == 'hello, "quoted"\nsecond line'
    assert out[1] == big.strip()
    assert len(out) == 2


def test_tsv_column_and_unbalanced_quotes(tmp_path):
    p = write(tmp_path / "a.tsv", 'id\treview\n1\t"great film\n2\tbad " film\n')
    assert docs(p, text_column="review") == ['"great film', 'bad " film']


def test_real_csv_with_multiline_fields():
    path = SHARED / "disaster_tweets" / "train.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present (shared data sets are not in every checkout)")
    out = list(iter_documents([path]))
    assert len(out) == 7613  # SOURCE.txt: 7,613 rows, some with newlines inside quotes


@pytest.mark.parametrize(
    "suffix,compress",
    [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)],
)
def test_compressed(tmp_path, suffix, compress):
    txt = write(tmp_path / f"a.txt{suffix}", compress(b"alpha\n\nbeta\n"))
    jl = write(tmp_path / f"b.jsonl{suffix}", compress(b'{"text": "gamma"}\n'))
    cs = write(tmp_path / f"c.csv{suffix}", compress(b"text\ndelta\n"))
    assert docs(txt, jl, cs) == ["alpha", "beta", "gamma", "delta"]


def test_zst_roundtrip_or_clear_error(tmp_path, monkeypatch):
    try:
        import zstandard
    except ImportError:
        zstandard = None
    if zstandard is not None:
        p = write(tmp_path / "a.jsonl.zst", zstandard.ZstdCompressor().compress(b'{"text":"z"}\n'))
        assert docs(p) == ["z"]
    p = write(tmp_path / "b.txt.zst", b"\x28\xb5\x2f\xfd")
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import now raises ImportError
    msg = error(p)
    assert "b.txt.zst" in msg and "pip install 'encoderlab[corpus]'" in msg


def test_max_documents_spans_files_and_stops_reading(tmp_path):
    a = write(tmp_path / "a.txt", "1\n2\n")
    b = write(tmp_path / "b.txt", "3\n4\n")
    bad = write(tmp_path / "c.txt", b"\xff\n")  # never reached
    assert docs(a, b, bad, max_documents=3) == ["1", "2", "3"]
    assert docs(a, max_documents=0) == []


def test_streams_lazily(tmp_path):
    p = write(tmp_path / "a.txt", b"x\n\xff\n")
    it = iter_documents([p])
    assert next(it) == "x"  # the bad second line is not read yet
    with pytest.raises(UserError, match="a.txt:2"):
        next(it)


def test_glob(tmp_path):
    write(tmp_path / "b.txt", "b\n")
    write(tmp_path / "a.txt", "a\n")
    assert docs(tmp_path / "*.txt") == ["a", "b"]


# --- errors ----------------------------------------------------------------------------------


def test_bad_json_line(tmp_path):
    p = write(tmp_path / "corpus.jsonl", '{"text": "ok"}\n' * 16 + '{"text": "x" "y"}\n')
    msg = error(p)
    assert "corpus.jsonl:17: not valid JSON (Expecting ','" in msg
    assert "fix or remove the line" in msg


def test_missing_json_field(tmp_path):
    p = write(tmp_path / "data.jsonl", '{"text": "a"}\n\n{"title": "t", "body": "b"}\n')
    msg = error(p)
    assert "data.jsonl:3: no field 'text' (fields: title, body); set data.text_field" in msg


def test_json_not_an_object_or_not_a_string(tmp_path):
    p = write(tmp_path / "a.jsonl", '"just a string"\n')
    assert "a.jsonl:1: expected a JSON object, got a string" in error(p)
    p = write(tmp_path / "b.jsonl", '{"text": ["x"]}\n')
    assert "b.jsonl:1: field 'text' is an array, not a string" in error(p)


def test_json_array_file_gets_a_conversion_hint(tmp_path):
    p = write(tmp_path / "dev.json", '[\n  {"text": "a"}\n]\n')
    msg = error(p)
    assert "dev.json" in msg and "one object per line" in msg and "jq" in msg


def test_missing_csv_column(tmp_path):
    p = write(tmp_path / "x.csv", "id,review\n1,good\n")
    assert "x.csv: no column 'text' (columns: id, review); set data.text_column" in error(p)


def test_short_csv_row(tmp_path):
    p = write(tmp_path / "x.csv", "id,text\n1,fine\n2\n")
    msg = error(p, text_column="text")
    assert "x.csv:3: row has 1 fields but the header has 2" in msg


def test_missing_file(tmp_path):
    msg = error(tmp_path / "a.txt")
    assert "a.txt: corpus file not found" in msg and "data.corpus" in msg


def test_missing_file_detected_before_reading(tmp_path):
    a = write(tmp_path / "a.txt", "x\n")
    with pytest.raises(UserError, match="nope.txt: corpus file not found"):
        iter_documents([a, tmp_path / "nope.txt"])  # at call time, not after reading a.txt


def test_directory_and_empty_glob(tmp_path):
    assert "is a directory" in error(tmp_path)
    assert "matches no files" in error(tmp_path / "*.jsonl")


def test_empty_file(tmp_path):
    p = write(tmp_path / "a.txt", "")
    assert "a.txt: no text found (empty file)" in error(p)
    q = write(tmp_path / "b.txt", "\n  \n\n")
    assert "b.txt: no text found (only blank lines)" in error(q)
    r = write(tmp_path / "c.csv", "")
    assert "c.csv: no text found (empty file)" in error(r)
    s = write(tmp_path / "d.jsonl", '{"text": ""}\n')
    assert "d.jsonl: no text found (every 'text' field is empty)" in error(s)


def test_not_utf8(tmp_path):
    p = write(tmp_path / "a.txt", b"ok\n" * 11 + b"abcd\xffxyz\n")
    msg = error(p)
    assert "a.txt:12: not UTF-8 text (byte 0xff at column 5); convert the file to UTF-8" in msg


def test_not_utf8_in_csv_and_gz(tmp_path):
    p = write(tmp_path / "a.csv", b"text\nfine\ncaf\xe9\n")
    assert "a.csv:3: not UTF-8 text (byte 0xe9 at column 4)" in error(p)
    q = write(tmp_path / "b.txt.gz", gzip.compress(b"x\n\xff\n"))
    assert "b.txt.gz:2: not UTF-8 text" in error(q)


def test_korean_in_cp949_is_told_to_convert_from_cp949_not_latin1(tmp_path):
    """`iconv -f cp1252` on Korean text gives mojibake that then trains silently; the hint
    names the encoding the bytes are in. Latin-1 text keeps the Latin-1 hint."""
    ko = "영화 정말 재미있어요 ㅋㅋ\n굳 최고의 영화\n"
    p = write(tmp_path / "ko.txt", ko.encode("cp949"))
    assert "`iconv -f cp949 -t utf-8`" in error(p)
    for latin in ("café crème brûlée\n", "Ángel señor\n", "Müller über Öl\n"):
        q = write(tmp_path / "fr.txt", latin.encode("cp1252"))
        assert "`iconv -f cp1252 -t utf-8`" in error(q), latin


def test_corpus_stats_per_source_tokens_add_up_and_show_the_unknown_rate(tmp_path):
    """Each source's tokens used to count the [SEP] after each document while the total did not
    (the sources summed to more than the total), and a source's [UNK] rate (a Korean source
    under an English vocabulary) was lost in the overall one."""
    from encoderlab.config import DataConfig, TokenizerConfig
    from encoderlab.data.shards import ShardStore, corpus_stats, format_stats, prepare_shards
    from encoderlab.tokenizer import train_tokenizer

    en = write(tmp_path / "en.txt", "the river runs by the city\nrain on the roof\n" * 20)
    ko = write(tmp_path / "ko.txt", "강 도시 비 해\n" * 10)
    tok = train_tokenizer(
        ["the river runs by the city", "rain on the roof"] * 20,
        TokenizerConfig(kind="wordpiece", vocab_size=60, min_frequency=1),
    )
    data = DataConfig(
        sources=[{"name": "en", "files": [str(en)]}, {"name": "ko", "files": [str(ko)]}],
        cache_dir=str(tmp_path / "cache"),
    )
    root = prepare_shards(data, tok, lambda m: None, workers=1)
    stats = corpus_stats(ShardStore(root))
    by = stats["by_source"]
    assert by["en"]["tokens"] + by["ko"]["tokens"] == stats["tokens"]
    assert by["ko"]["unk_rate"] > 0.5 and by["en"]["unk_rate"] == 0.0
    assert "source ko: 10 documents" in format_stats(stats, root)
    assert f"unknown-token rate {by['ko']['unk_rate']:.4%}" in format_stats(stats, root)


def test_corrupt_gzip(tmp_path):
    p = write(tmp_path / "a.txt.gz", b"not gzip at all")
    msg = error(p)
    assert "a.txt.gz" in msg and "cannot read" in msg


def test_no_paths():
    assert "data.corpus" in error()
    with pytest.raises(UserError, match="data.corpus"):
        describe_sources([])


def test_bad_options(tmp_path):
    p = write(tmp_path / "a.txt", "x\n")
    with pytest.raises(UserError, match="data.txt_unit"):
        iter_documents([p], txt_unit="sentence")
    with pytest.raises(UserError, match="data.max_documents"):
        iter_documents([p], max_documents=-1)


# --- describe_sources ------------------------------------------------------------------------


def test_describe_sources_changes_with_the_file(tmp_path):
    p = write(tmp_path / "a.txt", "x\n")
    (d1,) = describe_sources([p])
    assert d1["path"] == str(p.resolve()) and d1["size"] == 2
    assert isinstance(d1["mtime_ns"], int)
    json.dumps(d1)  # cache keys are built from JSON
    write(p, "xyz\n")
    (d2,) = describe_sources([str(p)])
    assert d2["size"] == 4
    with pytest.raises(UserError, match="corpus file not found"):
        describe_sources([tmp_path / "gone.txt"])


def test_an_empty_corpus_entry_is_named_by_its_key_not_taken_for_this_folder(tmp_path):
    """`--set data.corpus=` or `tokenizer.train_files: ['']`: Path('') is '.', so it was ':
    is a directory ... use a glob such as '/*.txt'' (the root); an empty
    tokenizer.train_files said 'set data.corpus'."""
    from encoderlab.data.corpus import resolve_sources

    p = write(tmp_path / "a.txt", "x\n")
    with pytest.raises(UserError) as e:
        resolve_sources([p, ""], where="tokenizer.train_files")
    assert str(e.value) == "tokenizer.train_files: entry 2 is empty; remove it or give a file"
    with pytest.raises(UserError) as e:
        resolve_sources([], where="tokenizer.train_files")
    assert str(e.value).startswith("no corpus files given; set tokenizer.train_files to a list")
    with pytest.raises(UserError, match=r"^data.corpus: entry 1 is empty"):
        docs(Path(" "))


def test_a_missing_reader_package_is_named_before_the_token_cache_is_made(tmp_path, monkeypatch):
    """With a tokenizer given, a .zst (or .parquet, .xlsx) corpus without its package failed
    only when read: the cache folder, its .lock and units.json (and the other files' shards)
    were left behind."""
    from encoderlab.config import DataConfig, TokenizerConfig
    from encoderlab.data.shards import prepare_shards
    from encoderlab.tokenizer import train_tokenizer

    plain = write(tmp_path / "a.txt", "alpha beta gamma\n" * 20)
    packed = write(tmp_path / "b.txt.zst", b"\x28\xb5\x2f\xfd")
    tok = train_tokenizer(["alpha beta gamma"] * 20, TokenizerConfig(vocab_size=60))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    cache = tmp_path / "cache"
    data = DataConfig(corpus=[str(plain), str(packed)], cache_dir=str(cache))
    with pytest.raises(UserError) as e:
        prepare_shards(data, tok, log=lambda m: None)
    assert str(e.value) == (
        f"{packed}: reading .zst files needs zstandard; run `pip install 'encoderlab[corpus]'`"
    )
    assert not cache.exists()


def test_a_tsv_read_as_csv_is_told_to_read_as_tsv(tmp_path):
    """NSMC's TSV with format csv: "no column 'document' (columns: id<TAB>document<TAB>label)",
    which did not say what to do."""
    from encoderlab.data.corpus import iter_documents

    f = write(tmp_path / "ratings.txt", "id\tdocument\tlabel\n1\tgood film\t1\n")
    with pytest.raises(UserError, match=r"a tab-separated file read as CSV; set data.format=tsv"):
        list(iter_documents([f], fmt="csv", text_column="document"))
