"""Sharded parallel tokenization: same tokens whatever the workers, resume, filters, mixing."""

import gzip
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import default_sigint, run_cli, shared, synthetic_lines
from encoderlab.config import CorpusSource, DataConfig, FilterConfig, TokenizerConfig
from encoderlab.data import shards as shards_mod
from encoderlab.data.corpus import iter_documents
from encoderlab.data.shards import ShardStore, corpus_stats, prepare_shards
from encoderlab.data.tokens import (
    build_mlm_datasets,
    collate_mlm,
    example_spans,
    split_spans,
)
from encoderlab.errors import UserError
from encoderlab.model import Queries
from encoderlab.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    """One saved tokenizer for the module: WordPiece training is not reproducible across runs."""
    text = shared("wikitext-2", "valid.txt").read_text(encoding="utf-8").splitlines()
    tok = train_tokenizer(iter(text), TokenizerConfig(kind="wordpiece", vocab_size=2000))
    return save_tokenizer(tok, tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture
def tok(tok_dir):
    return load_tokenizer(tok_dir)


def wiki_files() -> list[str]:
    return [str(shared("wikitext-2", "valid.txt")), str(shared("wikitext-2", "test.txt"))]


def shard_tokens(root: Path) -> list[list[int]]:
    """Every document's ids, shard by shard, without the [SEP] stored after each."""
    store = ShardStore(root)
    docs = []
    for i in range(len(store.shards)):
        toks, offs = np.asarray(store.tokens(i)), np.asarray(store.offsets(i))
        docs += [toks[a : b - 1].tolist() for a, b in zip(offs[:-1], offs[1:], strict=True)]
    return docs


def test_shards_equal_sequential_tokenization_whatever_the_workers(tmp_path, tok):
    files = wiki_files()
    logs: list[str] = []
    one = DataConfig(corpus=files, cache_dir=str(tmp_path / "a"), shard_mb=0.2)
    root1 = prepare_shards(one, tok, logs.append, workers=1)
    two = DataConfig(corpus=files, cache_dir=str(tmp_path / "b"), shard_mb=0.2)
    root2 = prepare_shards(two, tok, logs.append, workers=2)

    m1 = json.loads((root1 / "manifest.json").read_text())
    m2 = json.loads((root2 / "manifest.json").read_text())
    assert len(m1["shards"]) >= 10  # the two ~1.2 MB files were cut into byte ranges
    assert [s["sha256"] for s in m1["shards"]] == [s["sha256"] for s in m2["shards"]]
    for s in m2["shards"]:  # checksums in the manifest are those of the files on disk
        data = (root2 / f"shard-{s['index']:05d}.bin").read_bytes()
        assert hashlib.sha256(data).hexdigest() == s["sha256"]
    assert m2["tokenizer_hash"] and m2["sources"][0]["files"][0]["size"] > 0

    expected = [
        e.ids
        for e in tok.encode_batch(list(iter_documents(files)), add_special_tokens=False)
        if e.ids
    ]
    assert shard_tokens(root2) == expected
    assert m2["totals"]["docs"] == len(expected)


def test_an_interrupted_prepare_resumes_and_redoes_only_what_is_missing(tmp_path, tok, monkeypatch):
    data = DataConfig(corpus=wiki_files(), cache_dir=str(tmp_path / "c"), shard_mb=0.2)
    real = shards_mod.tokenize_unit
    calls: list[int] = []

    def interrupted(unit, index, *args):
        if index == 4:
            raise KeyboardInterrupt
        calls.append(index)
        return real(unit, index, *args)

    monkeypatch.setattr(shards_mod, "tokenize_unit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_shards(data, tok, lambda m: None, workers=1)
    root = next(Path(data.cache_dir).iterdir())
    assert calls == [0, 1, 2, 3] and not (root / "manifest.json").exists()
    assert all((root / f"shard-{i:05d}.json").is_file() for i in range(4))

    # a torn shard (data file shorter than its record says) is redone too
    with open(root / "shard-00001.bin", "r+b") as f:
        f.truncate(10)
    monkeypatch.setattr(shards_mod, "tokenize_unit", real)
    logs: list[str] = []
    prepare_shards(data, tok, logs.append, workers=1)
    assert any("resuming: 3 of" in m for m in logs), logs

    fresh = DataConfig(corpus=wiki_files(), cache_dir=str(tmp_path / "d"), shard_mb=0.2)
    assert shard_tokens(prepare_shards(fresh, tok, lambda m: None, workers=2)) == shard_tokens(root)


def test_exact_duplicates_are_removed_across_files_and_shards(tmp_path, tok):
    lines = synthetic_lines(300, seed=1)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(lines + lines[:50]) + "\n")  # 50 repeats within a
    b.write_text("\n".join(lines[100:200] + synthetic_lines(20, seed=2)) + "\n")  # 100 across
    unique = len(set(lines + synthetic_lines(20, seed=2)))
    data = DataConfig(
        corpus=[str(a), str(b)],
        cache_dir=str(tmp_path / "c"),
        shard_mb=0.005,
        filters=FilterConfig(dedup=True),
    )
    root = prepare_shards(data, tok, lambda m: None, workers=2)
    m = json.loads((root / "manifest.json").read_text())
    assert m["totals"]["docs"] == unique
    assert m["totals"]["documents_read"] == 350 + 120
    assert m["dropped"]["duplicate_or_over_max"] == 470 - unique
    kept = [tok.decode(d) for d in shard_tokens(root)]
    assert len(set(kept)) == len(kept)
    # the first occurrence is the one kept: the order of first appearances is preserved
    first_seen = list(dict.fromkeys(lines + synthetic_lines(20, seed=2)))
    assert kept == [tok.decode(tok.encode(s, add_special_tokens=False).ids) for s in first_seen]


def test_length_script_and_junk_filters_count_what_they_drop(tmp_path, tok):
    rng = random.Random(0)
    english = synthetic_lines(60, seed=3)
    korean = ["오늘 영화는 정말 재미있었다 배우들의 연기가 좋았다 " + str(i) for i in range(40)]
    junk = [  # letters between punctuation: a pre-tokenizer splits it into single characters
        "".join(rng.choice("qxzjkvwpb") + rng.choice("$#%&*@!") for _ in range(40))
        for _ in range(15)
    ]
    short = ["ok", "no", "hi!"]
    f = tmp_path / "mixed.txt"
    f.write_text("\n".join(english + korean + junk + short) + "\n")

    def prepared(**filters):
        data = DataConfig(
            corpus=[str(f)],
            cache_dir=str(tmp_path / "c"),
            filters=FilterConfig(**filters),
        )
        root = prepare_shards(data, tok, lambda m: None, workers=1)
        return json.loads((root / "manifest.json").read_text())

    m = prepared(min_chars=5, max_chars=70)
    assert m["dropped"]["too_short"] == 3
    assert m["dropped"]["too_long"] == sum(len(s) > 70 for s in english + korean + junk)

    m = prepared(script="hangul", min_script_ratio=0.5)
    assert m["totals"]["docs"] == 40 and m["dropped"]["script"] == 60 + 15 + 3

    # random characters shred into about one character per token; real text does not
    m = prepared(min_chars=5, min_chars_per_token=1.8)
    assert m["dropped"]["junk"] == 15 and m["totals"]["docs"] == 60 + 40


def test_a_corpus_empty_after_filtering_is_a_one_line_error(tmp_path, tok):
    f = tmp_path / "en.txt"
    f.write_text("\n".join(synthetic_lines(30)) + "\n")
    data = DataConfig(
        corpus=[str(f)],
        cache_dir=str(tmp_path / "c"),
        filters=FilterConfig(script="hangul", min_script_ratio=0.5),
    )
    with pytest.raises(UserError) as e:
        prepare_shards(data, tok, lambda m: None, workers=1)
    msg = str(e.value)
    assert "\n" not in msg and "all 30 documents were filtered out" in msg
    assert "30 script" in msg and "data.filters" in msg


def test_a_corpus_with_no_readable_document_says_why(tmp_path, tok):
    """A UTF-16 file gave "no documents found; check data.corpus/data.sources and the files"
    with no hint why: the error now carries what reading skipped, with its fix."""
    f = tmp_path / "u16.txt"
    f.write_bytes("\n".join(synthetic_lines(5)).encode("utf-16"))
    data = DataConfig(corpus=[str(f)], cache_dir=str(tmp_path / "c"))
    with pytest.raises(UserError) as e:
        prepare_shards(data, tok, lambda m: None, workers=1)
    msg = str(e.value)
    assert "\n" not in msg and "no documents found" in msg, msg
    assert "non-UTF-8 lines skipped" in msg and "iconv -f utf-16 -t utf-8" in msg, msg


def test_bad_input_is_counted_per_file_and_the_rest_goes_on(tmp_path, tok, monkeypatch):
    good = synthetic_lines(50, seed=4)
    txt = tmp_path / "latin1.txt"
    txt.write_bytes(("\n".join(good[:20]) + "\n").encode() + b"caf\xe9 au lait\n" + b"fin\n")
    jl = tmp_path / "cut.jsonl"
    jl.write_text("".join(json.dumps({"text": s}) + "\n" for s in good[20:30]) + '{"text": "cu')
    gz = tmp_path / "two.txt.gz"
    member2 = bytearray(gzip.compress(("\n".join(good[40:50]) + "\n").encode()))
    member2[len(member2) // 2 :] = b"\x00" * (len(member2) - len(member2) // 2)
    gz.write_bytes(gzip.compress(("\n".join(good[30:40]) + "\n").encode()) + bytes(member2))
    gone = tmp_path / "gone.txt"
    gone.write_text("soon deleted\n")

    real_plan = shards_mod.plan_units

    def plan_then_delete(data):
        units = real_plan(data)
        gone.unlink()  # vanished between listing and reading
        return units

    monkeypatch.setattr(shards_mod, "plan_units", plan_then_delete)
    logs: list[str] = []
    data = DataConfig(corpus=[str(txt), str(jl), str(gz), str(gone)], cache_dir=str(tmp_path / "c"))
    root = prepare_shards(data, tok, logs.append, workers=1)
    m = json.loads((root / "manifest.json").read_text())
    probs = m["problems"]
    assert (
        probs[str(txt)]["bad_encoding_lines"] == 1 and "latin1.txt:21" in probs[str(txt)]["summary"]
    )
    assert probs[str(jl)]["truncated_last_line"] is True
    assert probs[str(gz)]["corrupt"]
    assert probs[str(gone)]["vanished"] is True
    assert sum("warning:" in m for m in logs) == 4
    assert m["totals"]["docs"] >= 20 + 1 + 10 + 10  # everything readable was kept


def test_mixing_weights_give_each_source_its_share_per_epoch(tmp_path, tok):
    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    big.write_text("\n".join(synthetic_lines(2000, seed=5)) + "\n")
    small.write_text("\n".join(synthetic_lines(100, seed=6)) + "\n")
    data = DataConfig(
        sources=[
            CorpusSource(name="big", files=[str(big)], weight=1),
            CorpusSource(name="small", files=[str(small)], weight=1),
        ],
        cache_dir=str(tmp_path / "c"),
        block_len=32,
        valid_ratio=0.0,
    )
    train, _, store = build_mlm_datasets(data, tok, seed=0, log=lambda m: None)
    natural = len(train.spans)
    assert len(train) == natural  # an epoch keeps its natural size
    share = np.bincount(train.sources[train.selection], minlength=2) / len(train)
    assert abs(share[0] - 0.5) < 0.01 and abs(share[1] - 0.5) < 0.01
    first = train.selection.copy()
    train.set_epoch(1)
    assert not np.array_equal(first, train.selection)  # a fresh subset of the big source
    batch = collate_mlm(0)([train[i] for i in range(4)])
    assert batch["input_ids"].shape == (4, 32)
    stats = corpus_stats(store)
    assert set(stats["by_source"]) == {"big", "small"}


def test_a_missing_file_of_a_source_names_that_source(tmp_path, tok):
    """A file of data.sources that is not there was reported as "check the path (data.corpus
    or --corpus)", a key the config did not use: the error names the source's own key."""
    from encoderlab.tokenizer import train_tokenizer_from_files

    here = tmp_path / "here.txt"
    here.write_text("\n".join(synthetic_lines(50, seed=1)) + "\n")
    data = DataConfig(
        sources=[
            CorpusSource(name="en", files=[str(tmp_path / "*.txt")]),
            CorpusSource(name="ko", files=[str(tmp_path / "gone.txt")]),
        ],
        cache_dir=str(tmp_path / "c"),
    )
    want = r"gone.txt: corpus file not found; check the path \(data.sources\[1\].files \(ko\)\)$"
    with pytest.raises(UserError, match=want):
        build_mlm_datasets(data, tok, seed=0, log=lambda m: None)
    with pytest.raises(UserError, match=want):
        train_tokenizer_from_files(None, TokenizerConfig(vocab_size=100), data)
    data.sources[1].files = [str(tmp_path / "*.none")]
    with pytest.raises(
        UserError,
        match=r"\*.none: the pattern matches no files; check "
        r"data.sources\[1\].files \(ko\)$",
    ):
        build_mlm_datasets(data, tok, seed=0, log=lambda m: None)


def test_sentence_mode_covers_every_document_exactly_once(tmp_path, tok):
    data = DataConfig(
        corpus=wiki_files()[:1], cache_dir=str(tmp_path / "c"), shard_mb=0.3, mode="sentence"
    )
    store = ShardStore(prepare_shards(data, tok, lambda m: None, workers=1))
    spans = example_spans(store, data)
    rebuilt = [
        np.asarray(store.tokens(s)[a:b]).tolist() for s, a, b in map(spans.span, range(len(spans)))
    ]  # pieces of at most block_len - 2 tokens
    assert max(len(p) for p in rebuilt) <= data.block_len - 2
    flat = [t for p in rebuilt for t in p]
    assert flat == [t for d in shard_tokens(store.path) for t in d]


def test_dataloader_workers_read_the_same_batches(tmp_path, tok):
    data = DataConfig(corpus=wiki_files()[:1], cache_dir=str(tmp_path / "c"), block_len=64)
    train, _, _ = build_mlm_datasets(data, tok, seed=0, log=lambda m: None)
    collate = collate_mlm(0)

    def batches(workers):
        loader = torch.utils.data.DataLoader(
            train, batch_size=16, collate_fn=collate, num_workers=workers
        )
        return [b for _, b in zip(range(5), loader, strict=False)]

    for a, b in zip(batches(0), batches(2), strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(a["labels"], b["labels"])
        # the masked positions, flat and laid out per row for the last block's queries
        rows = a["masked_rows"]
        assert torch.equal(rows, (a["labels"].reshape(-1) != -100).nonzero().squeeze(1))
        queries = Queries(a["masked_pos"], a["masked_slots"])
        assert torch.equal(
            queries.select(a["labels"][..., None]).squeeze(1), a["labels"].reshape(-1)[rows]
        )


def test_corpus_stats_and_prepare_commands(tmp_path, tok_dir, capsys):
    args = [
        "--corpus",
        str(shared("wikitext-2", "valid.txt")),
        "--tokenizer",
        str(tok_dir),
        "--set",
        f"data.cache_dir={tmp_path / 'c'}",
    ]
    assert run_cli("corpus", "prepare", *args, "--workers", "1") == 0
    out = capsys.readouterr().out
    assert "documents" in out and "unknown-token rate" in out and "length histogram" in out
    assert run_cli("corpus", "stats", *args, "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["docs"] > 2000 and 0 <= stats["unk_rate"] < 0.01
    # prepare's own line counts the same tokens as stats (without the [SEP] after each document)
    assert f"documents into {stats['tokens']:,} tokens" in out, out
    assert sum(h["docs"] for h in stats["histogram"]) == stats["docs"]

    assert run_cli("corpus", "stats", "--corpus", str(tmp_path / "nope.txt")) == 2
    err = capsys.readouterr().err
    assert "tokenizer" in err or "not found" in err

    # several files after --corpus, as `tokenizer train` takes them: the same as two --corpus
    two = [str(shared("wikitext-2", "valid.txt")), str(shared("wikitext-2", "test.txt"))]
    rest = args[2:]
    assert run_cli("corpus", "stats", "--corpus", *two, *rest, "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    pairs = ["--corpus", two[0], "--corpus", two[1]]
    assert run_cli("corpus", "stats", *pairs, *rest, "--json") == 0
    assert json.loads(capsys.readouterr().out) == listed
    assert listed["docs"] > stats["docs"]
    assert run_cli("corpus", "stats", "a.yaml", "b.yml") == 2
    assert "give one config file, not 2" in capsys.readouterr().err


def test_pretrain_on_a_weighted_mix_trains_its_tokenizer_on_every_source(tmp_path):
    import yaml

    from encoderlab.runs import Run

    en, ko = tmp_path / "en.txt", tmp_path / "ko.jsonl"
    en.write_text("\n".join(synthetic_lines(300, seed=7)) + "\n")
    ko.write_text(
        "".join(
            json.dumps({"body": f"오늘 본 영화 {i}번은 정말 재미있었다 배우 연기가 좋았다"}) + "\n"
            for i in range(40)
        )
    )
    cfg = {
        "name": "mix",
        "runs_dir": str(tmp_path / "runs"),
        "tokenizer": {"kind": "wordpiece", "vocab_size": 300},
        "data": {
            "cache_dir": str(tmp_path / "cache"),
            "block_len": 32,
            "sources": [
                {"name": "en", "files": [str(en)], "weight": 1},
                {"name": "ko", "files": [str(ko)], "weight": 1, "text_field": "body"},
            ],
        },
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
        "train": {"batch_size": 8, "max_steps": 4, "epochs": None, "log_every": 1},
    }
    f = tmp_path / "mix.yaml"
    f.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    assert run_cli("pretrain", str(f)) == 0
    run = Run.open(next((tmp_path / "runs").iterdir()))
    tok = load_tokenizer(run.path / "tokenizer")
    assert tok.token_to_id("영화") is not None  # the Korean source was in tokenizer training
    assert run.info["steps"] == 4


@pytest.mark.slow  # 11-24 s: the default suite keeps its 5-minute bar
def test_ctrl_c_during_a_parallel_prepare_keeps_finished_shards(tmp_path, tok_dir):
    import signal
    import subprocess
    import sys
    import time

    cache = tmp_path / "c"
    cmd = [
        sys.executable, "-m", "encoderlab", "corpus", "prepare", *wiki_files_args(),
        "--tokenizer", str(tok_dir), "--set", f"data.cache_dir={cache}",
        "--set", "data.shard_mb=0.05", "--workers", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=default_sigint,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not list(cache.glob("*/shard-*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    said = " ".join(out.split())  # the console may wrap long lines
    assert "run the same command again" in said and "interrupted" in said
    root = next(cache.iterdir())
    done = len(list(root.glob("shard-*.json")))
    assert 1 <= done < 46 and not (root / "manifest.json").exists()

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {done} of 46" in again.stdout
    fresh = DataConfig(corpus=wiki_files(), cache_dir=str(tmp_path / "f"), shard_mb=0.05)
    tok = load_tokenizer(tok_dir)
    assert shard_tokens(root) == shard_tokens(prepare_shards(fresh, tok, lambda m: None, 1))


def wiki_files_args() -> list[str]:
    return [arg for f in wiki_files() for arg in ("--corpus", f)]


def test_packed_blocks_are_numbered_across_shards_without_a_span_table(tmp_path, tok):
    data = DataConfig(corpus=wiki_files(), cache_dir=str(tmp_path / "c"), shard_mb=0.3)
    store = ShardStore(prepare_shards(data, tok, lambda m: None, workers=1))
    blocks = example_spans(store, data)
    width = data.block_len - 2
    assert blocks.ids.ndim == 1 and blocks.ids.dtype == np.int64  # 8 bytes per example
    expected = [
        (i, k * width, (k + 1) * width)
        for i, shard in enumerate(store.shards)
        for k in range(shard["tokens"] // width)
    ]
    assert [blocks.span(j) for j in range(len(blocks))] == expected
    assert blocks.shards().tolist() == [e[0] for e in expected]
    train, valid = split_spans(blocks, 0.1, seed=0, max_valid=50)
    assert len(valid) == 50 and len(train) + len(valid) == len(blocks)
    assert not set(train.ids.tolist()) & set(valid.ids.tolist())


UNGUARDED_SCRIPT = """
import sys
from pathlib import Path
from encoderlab.config import DataConfig
from encoderlab.data.shards import prepare_shards
from encoderlab.tokenizer import load_tokenizer

out = Path(sys.argv[1])
with open(out / "ran.txt", "a") as f:  # the script's top level, as a user writes it
    f.write("ran\\n")
data = DataConfig(corpus=sys.argv[3:], cache_dir=str(out / "cache"), shard_mb=0.2)
prepare_shards(data, load_tokenizer(sys.argv[2]), print, workers=2)
print("prepared")
"""


def test_a_script_without_a_main_guard_tokenizes_with_workers_once(tmp_path, tok_dir):
    """The README's API snippets have no `if __name__ == "__main__":`; the tokenizing
    workers (spawned) must not run the user's script again: it ran twice, made a second run
    and then hung on a worker that died in its bootstrapping."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(tok_dir), *wiki_files()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "prepared" in done.stdout and "2 workers" in done.stdout
    assert (tmp_path / "ran.txt").read_text() == "ran\n"


def test_a_cache_dir_that_cannot_be_made_is_one_line_naming_the_key(tmp_path, tok):
    """It was a FileNotFoundError traceback (exit 1), after the tokenizer had been trained."""
    from encoderlab.errors import UserError

    corpus = tmp_path / "c.txt"
    corpus.write_text("a line of text\n" * 20)
    (tmp_path / "a_file").write_text("x")
    for bad in ("/proc/no-such-folder", str(tmp_path / "a_file" / "sub")):
        data = DataConfig(corpus=[str(corpus)], cache_dir=bad)
        with pytest.raises(UserError, match=r"data\.cache_dir=.*set data\.cache_dir to a folder"):
            prepare_shards(data, tok, lambda m: None, workers=1)


def test_many_small_files_in_packed_mode_say_what_share_the_blocks_leave_out(tmp_path, tok):
    """One article per file: each file's tail, short of a block, was dropped without a word
    (35% of a corpus of 100 short files)."""
    from encoderlab.data.tokens import build_mlm_datasets

    folder = tmp_path / "arts"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i}.txt").write_text(" ".join(synthetic_lines(3, seed=i)) + "\n")
    said: list[str] = []
    data = DataConfig(corpus=[str(folder / "*.txt")], block_len=32, cache_dir=str(tmp_path / "c"))
    build_mlm_datasets(data, tok, 0, said.append)
    assert any("leave out" in m and "data.mode=sentence" in m for m in said), said
    said.clear()
    one = tmp_path / "one.txt"
    one.write_text("".join(p.read_text() for p in sorted(folder.iterdir())))
    data = DataConfig(corpus=[str(one)], block_len=32, cache_dir=str(tmp_path / "c"))
    build_mlm_datasets(data, tok, 0, said.append)
    assert not any("leave out" in m for m in said), said


def test_max_documents_taken_by_the_first_source_is_the_reason_given(tmp_path, tok):
    """The later source's error blamed its files and filters."""
    from encoderlab.data.tokens import build_mlm_datasets
    from encoderlab.errors import UserError

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(synthetic_lines(50, seed=1)) + "\n")
    b.write_text("\n".join(synthetic_lines(50, seed=2)) + "\n")
    sources = [
        {"name": "a", "files": [str(a)], "weight": 1},
        {"name": "b", "files": [str(b)], "weight": 1},
    ]
    data = DataConfig(
        sources=sources, max_documents=30, block_len=32, cache_dir=str(tmp_path / "c")
    )
    with pytest.raises(
        UserError, match=r"data.sources\[1\] \(b\).*data.max_documents=30 was taken"
    ):
        build_mlm_datasets(data, tok, 0, lambda m: None)
