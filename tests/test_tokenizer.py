"""Tokenizer training, saving/loading, transformers compatibility and error messages."""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from pathlib import Path

import pytest

from encoderlab.config import DataConfig, TokenizerConfig
from encoderlab.errors import UserError
from encoderlab.tokenizer import (
    SPECIAL_TOKENS,
    load_tokenizer,
    save_tokenizer,
    special_ids,
    tokenizer_hash,
    train_tokenizer,
    train_tokenizer_from_files,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KINDS = ["bpe", "char_bpe", "wordpiece", "unigram"]

_SENTENCES = [
    "The film was a beautiful and moving story about a family.",
    "I did not enjoy the movie; the acting felt wooden and the plot was thin.",
    "A quiet, patient drama that rewards the viewer with real emotion.",
    "Critics praised the director for the bold camera work and the score.",
    "The sequel is louder, longer and much less interesting than the original.",
    "Her performance carries the film through its slower second half.",
    "Nothing in this comedy is funny, and the jokes land with a thud.",
    "It's an ambitious science fiction epic with stunning visual effects!",
    "Fans of the novel will recognise the characters, but not the ending.",
    "The documentary explains the history of jazz in New Orleans clearly.",
]
# ~2,000 short documents of ordinary English, enough for every kind to learn merges
TEXTS = [f"{s} ({i % 7} of {i % 13}) review number {i}." for i, s in enumerate(_SENTENCES * 200)]


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    return {k: train_tokenizer(TEXTS, TokenizerConfig(kind=k, vocab_size=400)) for k in KINDS}


def squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


@pytest.mark.parametrize("kind", KINDS)
def test_train_each_kind(trained, kind):
    tok = trained[kind]
    assert tok.get_vocab_size() <= 400
    assert tok.get_vocab_size() > 300  # learned real pieces, not just the alphabet
    assert [tok.id_to_token(i) for i in range(5)] == SPECIAL_TOKENS
    assert special_ids(tok) == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    text = "The director praised the beautiful film."
    enc = tok.encode(text)
    assert enc.ids[0] == 2 and enc.ids[-1] == 3
    assert 1 not in enc.ids  # no [UNK] for text made of known characters
    assert len(enc.ids) < len(text)  # merges happened
    assert squash(tok.decode(enc.ids)) == squash(text)
    pair = tok.encode("a film", "the movie")
    assert pair.ids.count(3) == 2 and pair.type_ids[0] == 0 and pair.type_ids[-1] == 1


def test_bpe_is_byte_level_and_roundtrips_exactly(trained):
    tok = trained["bpe"]
    text = "Unseen symbols ☃ and emoji 🎬 still encode."
    enc = tok.encode(text)
    assert 1 not in enc.ids
    assert tok.decode(enc.ids) == text
    assert "Ġthe" in tok.get_vocab()
    # the prefix space makes a first word the same token as the word mid-sentence
    assert (
        tok.encode("film", add_special_tokens=False).ids
        == tok.encode("a film", add_special_tokens=False).ids[1:]
    )


def test_offsets_point_into_the_text(trained):
    for kind in KINDS:
        tok = trained[kind]
        text = "The film was moving"
        enc = tok.encode(text, add_special_tokens=False)
        start, end = enc.offsets[0]
        assert text[start:end].strip("▁ ") == text[start:end], kind  # no leading space in spans
        assert enc.offsets[-1][1] == len(text), kind


def test_wordpiece_uses_hash_prefix(trained):
    assert any(t.startswith("##") for t in trained["wordpiece"].get_vocab())


def test_lowercase_option():
    lower = train_tokenizer(
        TEXTS, TokenizerConfig(kind="wordpiece", vocab_size=300, lowercase=True)
    )
    assert lower.encode("THE FILM").ids == lower.encode("the film").ids
    vocab = set(lower.get_vocab()) - set(SPECIAL_TOKENS)
    assert not any(c.isupper() for t in vocab for c in t)
    cased = train_tokenizer(TEXTS, TokenizerConfig(kind="wordpiece", vocab_size=300))
    assert cased.encode("The").ids != cased.encode("the").ids


def test_nfkc_normalization(trained):
    tok = trained["wordpiece"]
    # fullwidth letters and the "ﬁ" ligature become their plain forms
    assert tok.encode("ｆｉｌｍ").ids == tok.encode("film").ids == tok.encode("ﬁlm").ids


def _korean_texts(n: int = 1500) -> list[str]:
    path = SHARED / "nsmc" / "ratings_test.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present (shared data sets are not in every checkout)")
    with open(path, encoding="utf-8") as f:
        rows = (line.rstrip("\n").split("\t") for line in itertools.islice(f, 1, n + 1))
        return [r[1] for r in rows if len(r) == 3 and r[1].strip()]


_JAMO = re.compile("[\u1100-\u11ff\u3130-\u318f]")
_SYLLABLE = re.compile("[\uac00-\ud7a3]")


@pytest.mark.parametrize("kind", KINDS)
def test_korean_keeps_hangul_syllables_whole(kind):
    texts = _korean_texts()
    tok = train_tokenizer(texts, TokenizerConfig(kind=kind, vocab_size=1500))
    assert tok.get_vocab_size() <= 1500
    sample = "정말 재미있는 영화였어요 배우들의 연기가 최고"
    enc = tok.encode(sample, add_special_tokens=False)
    if kind == "bpe":  # byte-level: tokens are bytes, but decoding must give syllables back
        assert tok.decode(enc.ids) == sample
        pieces = [tok.decode([i]) for i in enc.ids]
    else:
        pieces = enc.tokens
        assert squash(tok.decode(enc.ids)) == squash(sample)
    assert not any(_JAMO.search(p) for p in pieces)
    assert any(_SYLLABLE.search(p) for p in pieces)
    vocab_jamo = [t for t in tok.get_vocab() if _JAMO.search(t)]
    # standalone jamo (ㅋㅋ) are in the data; NFKC maps them to conjoining jamo, nothing more
    native_jamo = {unicodedata.normalize("NFKC", c) for t in texts for c in t if _JAMO.match(c)}
    assert all(set(_JAMO.findall(t)) <= native_jamo for t in vocab_jamo)


def test_unigram_drops_rare_characters_when_vocab_is_small():
    texts = _korean_texts(1000)
    # far fewer pieces than the corpus has distinct characters: a list can be read twice
    tok = train_tokenizer(texts, TokenizerConfig(kind="unigram", vocab_size=300))
    assert tok.get_vocab_size() <= 300
    # a one-shot iterator cannot be re-read: a clear error instead
    with pytest.raises(UserError, match=r"tokenizer.vocab_size=300 is too small .*unigram"):
        train_tokenizer(iter(texts), TokenizerConfig(kind="unigram", vocab_size=300))


def test_finetune_scratch_tokenizer_drops_rare_characters_too():
    # fine-tuning trained its tokenizer from a one-shot iterator, so a Korean task with more
    # characters than vocab_size failed where `tokenizer train` on the same text succeeded
    from encoderlab.config import FinetuneConfig
    from encoderlab.finetuning import build_backbone

    texts = _korean_texts(1000)
    examples = [{"id": str(i), "line": i, "text": t, "label": "0"} for i, t in enumerate(texts)]
    cfg = FinetuneConfig.model_validate(
        {
            "task": {"type": "classification", "train": "unused.csv"},
            "tokenizer": {"kind": "unigram", "vocab_size": 300},
            "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 32},
        }
    )
    backbone = build_backbone(cfg, examples, lambda msg: None)
    assert backbone.tokenizer.get_vocab_size() <= 300


@pytest.mark.parametrize("kind,minimum", [("bpe", 261), ("wordpiece", 21), ("unigram", 21)])
def test_too_small_vocab(kind, minimum):
    with pytest.raises(UserError) as e:
        train_tokenizer(TEXTS, TokenizerConfig(kind=kind, vocab_size=minimum - 1))
    msg = str(e.value)
    assert "tokenizer.vocab_size" in msg and f"at least {minimum}" in msg and "\n" not in msg


def test_small_vocab_is_respected_for_character_kinds():
    for kind in ("wordpiece", "char_bpe"):
        tok = train_tokenizer(TEXTS, TokenizerConfig(kind=kind, vocab_size=40))
        assert tok.get_vocab_size() <= 40, kind


def test_no_text():
    with pytest.raises(UserError, match="no text to train the tokenizer on"):
        train_tokenizer([], TokenizerConfig(kind="wordpiece", vocab_size=100))


def test_train_from_files(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS), encoding="utf-8")
    # byte-level BPE: the one kind whose training is deterministic (see test_training_determinism)
    cfg = TokenizerConfig(kind="bpe", vocab_size=300, max_train_documents=50)
    tok = train_tokenizer_from_files([p], cfg, DataConfig(text_field="body"))
    assert tokenizer_hash(tok) == tokenizer_hash(train_tokenizer(TEXTS[:50], cfg))
    # paths=None: tokenizer.train_files, else data.corpus
    tok2 = train_tokenizer_from_files(None, cfg, DataConfig(corpus=[str(p)], text_field="body"))
    assert tokenizer_hash(tok2) == tokenizer_hash(tok)


def test_train_from_files_skips_bad_records_as_the_token_cache_does_and_says_so(tmp_path):
    """A bad line stopped a pretraining that trained its tokenizer, while one given
    tokenizer.path skipped it (the README promises the latter): both skip it now, and say so.
    A corpus with a mix takes turns under a document cap (the first corpus took it all)."""
    p = tmp_path / "c.jsonl"
    good = [json.dumps({"text": t}) for t in TEXTS[:40]]
    p.write_text("".join(f'{g}\n{{"text": broken}}\n' for g in good), encoding="utf-8")
    said: list[str] = []
    tok = train_tokenizer_from_files(
        [p], TokenizerConfig(vocab_size=100), DataConfig(), said.append
    )
    assert len(said) == 1 and "c.jsonl: 40 documents, 40 bad records skipped" in said[0], said
    assert "c.jsonl:2: not valid JSON" in said[0]
    ko, en = tmp_path / "ko.txt", tmp_path / "en.txt"
    ko.write_text("가나다 라마바\n" * 300, encoding="utf-8")
    en.write_text("hello world\n" * 300)
    sources = [{"name": "ko", "files": [str(ko)]}, {"name": "en", "files": [str(en)]}]
    mixed = DataConfig(sources=sources, max_documents=100)
    tok = train_tokenizer_from_files(None, TokenizerConfig(vocab_size=60, min_frequency=1), mixed)
    assert tok.token_to_id("hello") is not None and tok.token_to_id("가") is not None
    with pytest.raises(UserError, match="corpus file not found"):
        train_tokenizer_from_files([tmp_path / "x.txt"], TokenizerConfig(), DataConfig())


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_identity(trained, tmp_path, kind):
    tok = trained[kind]
    out = save_tokenizer(tok, tmp_path / "tok")
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in out.iterdir()
    }
    for src in (out, out / "tokenizer.json", str(out)):
        loaded = load_tokenizer(src)
        assert tokenizer_hash(loaded) == tokenizer_hash(tok)
        for text in TEXTS[:20]:
            assert loaded.encode(text).ids == tok.encode(text).ids


def test_training_determinism():
    """Byte-level BPE retrains to the same tokenizer; the others may not.

    tokenizers assigns ids to "##x" / "x</w>" pieces in hash-map order and breaks merge ties
    by id (huggingface/tokenizers#1794), and unigram's scores vary in the last digits, so a
    retrained wordpiece/char_bpe/unigram tokenizer can differ. Reuse a saved tokenizer
    (tokenizer.path) when runs must be comparable; token caches key on tokenizer_hash, so a
    different tokenizer never reuses stale tokens.
    """
    cfg = TokenizerConfig(kind="bpe", vocab_size=300)
    assert tokenizer_hash(train_tokenizer(TEXTS, cfg)) == tokenizer_hash(
        train_tokenizer(TEXTS, cfg)
    )


def test_hash_is_stable_and_discriminating(trained):
    h = tokenizer_hash(trained["wordpiece"])
    assert re.fullmatch("[0-9a-f]{16}", h)
    assert h == tokenizer_hash(trained["wordpiece"])
    assert len({tokenizer_hash(t) for t in trained.values()}) == len(KINDS)
    tok = trained["wordpiece"]
    tok.enable_truncation(16)  # batching settings do not change the ids of a text
    try:
        assert tokenizer_hash(tok) == h
    finally:
        tok.no_truncation()


@pytest.mark.parametrize("kind", KINDS)
def test_transformers_loads_the_same_tokenizer(trained, tmp_path, kind):
    transformers = pytest.importorskip("transformers")
    tok = trained[kind]
    out = save_tokenizer(tok, tmp_path / "tok", model_max_length=128)
    for cls in (transformers.PreTrainedTokenizerFast, transformers.AutoTokenizer):
        hf = cls.from_pretrained(out)
        assert (hf.pad_token, hf.unk_token, hf.cls_token, hf.sep_token, hf.mask_token) == tuple(
            SPECIAL_TOKENS
        )
        assert (hf.pad_token_id, hf.mask_token_id) == (0, 4)
        assert hf.model_max_length == 128
        for text in TEXTS[:10] + ["Ünïcödé — 10% off!"]:
            assert hf(text)["input_ids"] == tok.encode(text).ids
        pair = hf("a film", "the movie")
        ref = tok.encode("a film", "the movie")
        assert pair["input_ids"] == ref.ids and pair["token_type_ids"] == ref.type_ids
        batch = hf(["short", "a much longer text here"], padding=True)
        assert batch["input_ids"][0][-1] == 0


def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="tokenizer not found.*tokenizer.path"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(UserError, match="has no tokenizer.json"):
        load_tokenizer(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="bad.json: not a valid tokenizer.json"):
        load_tokenizer(bad)


def test_load_rejects_missing_specials(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "hello": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    with pytest.raises(UserError) as e:
        load_tokenizer(path)
    assert "[SEP], [MASK]" in str(e.value) and "tokenizer.json" in str(e.value)
    with pytest.raises(UserError, match=r"\[SEP\], \[MASK\]"):
        special_ids(tok)


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_one_long_line_without_spaces_does_not_stall_training(kind):
    """A 150,000-character run of 'ㅋ' (or a base64 blob, a minified file) took the trainers
    time quadratic in its length: 300,000 characters kept bpe busy over 100 s, 3 MB for most
    of an hour, and Ctrl-C could not stop it. Runs are cut into MAX_TRAIN_WORD pieces."""
    import time

    texts = [*_SENTENCES * 20, "ㅋ" * 150_000, "x" + "ab" * 75_000]
    t0 = time.perf_counter()
    tok = train_tokenizer(texts, TokenizerConfig(kind=kind, vocab_size=600))
    assert time.perf_counter() - t0 < 10  # ~0.1 s now; over 30 s before
    assert tok.encode("The film was a story.").tokens[1:3] in (["The", "film"], ["ĠThe", "Ġfilm"])


def test_a_later_files_missing_column_is_found_before_the_pass_over_the_first(
    tmp_path, monkeypatch
):
    """It was found only once the files before it had been read (hours, on a real corpus)."""
    import encoderlab.tokenizer as tokenizer_mod

    big = tmp_path / "big.txt"
    big.write_text("\n".join(TEXTS) + "\n")
    table = tmp_path / "t.tsv"
    table.write_text("id\tdocument\n1\tgood film\n")

    def no_pass(*args, **kwargs):
        raise AssertionError("training started before the files were checked")

    monkeypatch.setattr(tokenizer_mod, "train_tokenizer", no_pass)
    with pytest.raises(UserError, match=r"t.tsv: no column 'text'"):
        train_tokenizer_from_files([big, table], TokenizerConfig(vocab_size=100), DataConfig())


def test_tokenizer_train_takes_several_text_columns_and_refuses_one_twice(tmp_path, capsys):
    """A repeated --text-column kept the last (English dropped without a word); a column
    listed twice in data.text_column gave every document twice."""
    from conftest import run_cli

    table = tmp_path / "multi.csv"
    rows = [f"{i},the film number {i} was good,영화 {i} 번은 좋았다" for i in range(60)]
    table.write_text("id,en,ko\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--corpus", table, "--vocab-size", 80, "--out"]
    assert run_cli(*args, out, "--text-column", "en", "--text-column", "ko") == 0
    vocab = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert any("영" in k for k in vocab) and any(k.startswith("f") for k in vocab)
    capsys.readouterr()
    assert run_cli(*args, tmp_path / "t2", "--text-column", "en", "--text-column", "en") == 2
    assert "a column is given twice" in capsys.readouterr().err
    with pytest.raises(Exception, match="a column is listed twice"):
        DataConfig(text_column=["en", "en"])


def test_a_sources_entry_error_names_that_entrys_own_key(tmp_path):
    """It said "set data.text_field", which the entry's own text_field overrides."""
    corpus = tmp_path / "en.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    sources = [{"name": "en", "files": [str(corpus)], "text_field": "body"}]
    with pytest.raises(UserError, match=r"no field 'body' .*set data\.sources\[0\]\.text_field"):
        train_tokenizer_from_files(
            None, TokenizerConfig(vocab_size=100), DataConfig(sources=sources)
        )
    with pytest.raises(Exception, match="'tsvv'"):
        DataConfig(sources=[{"name": "en", "files": [str(corpus)], "format": "tsvv"}])


def test_a_bad_tokenizer_file_names_the_option_it_was_given_by(tmp_path):
    """`corpus prepare --tokenizer x` with a file that is no tokenizer.json was told to
    "point tokenizer.path at a file", an option it never used."""
    from encoderlab.errors import UserError
    from encoderlab.tokenizer import load_tokenizer

    bad = tmp_path / "a.txt"
    bad.write_text("not json\n")
    with pytest.raises(UserError, match=r"not a valid tokenizer.json .*; point --tokenizer at a"):
        load_tokenizer(bad, "--tokenizer")
