"""Token tagging: readers (CoNLL / KLUE NER / KMOU), IOB1->BIO, sub-token labels, conlleval F1."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from conftest import shared
from encoderlab.config import HeadConfig, ModelConfig, TaskConfig, TokenizerConfig
from encoderlab.errors import UserError
from encoderlab.model import Encoder
from encoderlab.tasks.tagging import (
    TaggingTask,
    detect_format,
    entities,
    entity_scores,
    split_words,
    word_spans,
)
from encoderlab.tokenizer import train_tokenizer


def cfg(**kw) -> TaskConfig:
    return TaskConfig(type="tagging", **kw)


def write(tmp_path: Path, name: str, text: str, bom: bool = False) -> str:
    p = tmp_path / name
    p.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return str(p)


CONLL_IOB1 = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

In IN I-PP O
Bonn NNP I-NP I-LOC
Kohl NNP I-NP I-PER
Clinton NNP I-NP B-PER
met VBD I-VP O
"""

CONLL_BIO = """John B-PER
Smith I-PER
lives O
in O
New B-LOC
York I-LOC

Mary B-PER
met O
Bob B-PER
"""


# -- entities and scores ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, want",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["O", "I-PER", "I-PER", "O"], [("PER", 1, 3)]),  # I- without B- starts an entity
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),  # a type change ends one
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["I-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
        (["B-PER", "O", "I-PER"], [("PER", 0, 1), ("PER", 2, 3)]),
        (["I-MISC", "I-PER", "B-PER", "O"], [("MISC", 0, 1), ("PER", 1, 2), ("PER", 2, 3)]),
        (["O", "O"], []),
        ([], []),
        # seqeval's README / test sequence (inclusive ends there: MISC 3..5, PER 7..8)
        (
            ["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O", "B-PER", "I-PER"],
            [("MISC", 3, 6), ("PER", 7, 9)],
        ),
    ],
)
def test_entities_follow_conlleval(tags, want):
    assert entities(tags) == want


def test_entity_scores_match_seqeval_readme():
    # seqeval README: f1_score(y_true, y_pred) == 0.50
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    s = entity_scores(y_true, y_pred)
    assert (s["precision"], s["recall"], s["f1"]) == (0.5, 0.5, 0.5)
    assert s["per_type"]["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_type"]["PER"]["f1"] == 1.0


def test_entity_scores_partial_and_empty():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    # PER right, LOC predicted with the wrong type, an extra ORG
    pred = [["B-PER", "I-PER", "B-ORG", "B-MISC"]]
    s = entity_scores(gold, pred)
    assert s["correct"] == 1 and s["predicted"] == 3 and s["gold"] == 2
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(0.5)
    assert s["f1"] == pytest.approx(0.4)
    none = entity_scores(gold, [["O"] * 4])
    assert none["precision"] == 0.0 and none["f1"] == 0.0
    # I-PER I-PER predicted for gold B-PER I-PER: the same chunk under conlleval rules
    assert entity_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])["f1"] == 1.0


def test_metrics_and_prediction_rows():
    task = TaggingTask()
    examples = [
        {"id": "a", "line": 1, "tokens": ["John", "lives", "here"], "tags": ["B-PER", "O", "O"]},
        {"id": "b", "line": 5, "tokens": ["in", "Paris"], "tags": ["O", "B-LOC"]},
        {"id": "c", "line": 9, "tokens": ["unlabelled"], "tags": None},
    ]
    preds = [["B-PER", "O", "O"], ["O", "B-PER"], ["O"]]
    labels = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    m = task.metrics(preds, examples, cfg(), labels)
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5
    assert m["acc"] == pytest.approx(4 / 5)
    assert set(m["extra"]["per_type"]) == {"PER", "LOC"}
    assert m["extra"]["per_type"]["LOC"]["support"] == 1
    rows = task.prediction_rows(preds, examples, labels)
    assert rows[0] == {
        "id": "a",
        "line": 1,
        "tokens": "John lives here",
        "gold": "B-PER O O",
        "prediction": "B-PER O O",
        "correct": True,
        "n_gold_entities": 1,
        "n_pred_entities": 1,
    }
    assert rows[1]["correct"] is False
    assert rows[2]["gold"] is None and rows[2]["correct"] is None


# -- CoNLL ------------------------------------------------------------------------------------


def test_conll_iob1_is_detected_and_converted(tmp_path):
    path = write(tmp_path, "eng.train", CONLL_IOB1)
    task = TaggingTask()
    ex = task.read(path, cfg())
    assert [e["line"] for e in ex] == [3, 9, 12]
    assert ex[0]["tokens"] == ["EU", "rejects", "German", "call", "."]
    assert ex[0]["tags"] == ["B-ORG", "O", "B-MISC", "O", "O"]
    assert ex[1]["tags"] == ["B-PER", "I-PER"]
    # IOB1's B- separates two adjacent PER entities; "Kohl" starts one after a LOC
    assert ex[2]["tags"] == ["O", "B-LOC", "B-PER", "B-PER", "O"]
    assert any("IOB1" in n for n in ex.notes)
    assert ex.warnings == []
    assert task.label_names(ex) == [
        "O",
        "B-LOC",
        "B-MISC",
        "B-ORG",
        "B-PER",
        "I-LOC",
        "I-MISC",
        "I-ORG",
        "I-PER",
    ]
    # the chunk column instead of NER
    chunks = TaggingTask().read(path, cfg(tag_column=2))
    assert chunks[0]["tags"][:2] == ["B-NP", "B-VP"]


def test_conll_bio_kept_and_errors_counted(tmp_path):
    task = TaggingTask()
    ex = task.read(write(tmp_path, "bio.txt", CONLL_BIO), cfg())
    assert ex[0]["tags"] == ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC"]
    assert ex.warnings == [] and ex.notes == []
    # BIO with one error: the I- start is repaired and reported, not silently
    noisy = CONLL_BIO + "\nin O\nRome I-LOC\n"
    task = TaggingTask()
    ex = task.read(write(tmp_path, "noisy.txt", noisy), cfg())
    assert ex[-1]["tags"] == ["O", "B-LOC"]
    assert len(ex.warnings) == 1 and "1 I- tags start an entity" in ex.warnings[0]
    assert "noisy.txt:13" in ex.warnings[0]


def test_conll_explicit_scheme_that_contradicts_the_file(tmp_path):
    path = write(tmp_path, "eng.train", CONLL_IOB1)
    with pytest.raises(UserError, match=r"eng\.train:3: task\.tag_scheme=bio.*IOB1.*iob1 or auto"):
        TaggingTask().read(path, cfg(tag_scheme="bio"))
    assert TaggingTask().read(path, cfg(tag_scheme="iob1"))[0]["tags"][0] == "B-ORG"


def test_conll_tabs_unlabelled_and_caps(tmp_path):
    tsv = write(tmp_path, "tabs.conll", "New York\tB-LOC\nis\tO\n\nok\tO\n")
    ex = TaggingTask().read(tsv, cfg())
    assert ex[0]["tokens"] == ["New York", "is"] and ex[0]["tags"] == ["B-LOC", "O"]
    plain = write(tmp_path, "test.txt", "a\nb\n\nc\n")
    ex = TaggingTask().read(plain, cfg())
    assert [e["tags"] for e in ex] == [None, None] and ex[1]["tokens"] == ["c"]
    with pytest.raises(UserError, match="must be labelled"):
        TaggingTask().read(plain, cfg(), labelled=True)
    assert len(TaggingTask().read(write(tmp_path, "b.txt", CONLL_BIO), cfg(max_examples=1))) == 1


@pytest.mark.parametrize(
    "text, kw, pattern",
    [
        ("a NN O\nb O\n", {}, r"bad\.txt:2: 2 columns, but the first token line \(.*:1\) has 3"),
        ("a E-PER\n", {}, r"bad\.txt:1: tag 'E-PER' .*BIOES"),
        ("a B_PS\n", {}, r"bad\.txt:1: tag 'B_PS' .*2016klp"),
        ("a NN O\n", {"tag_column": 5}, r"bad\.txt:1: task\.tag_column=5"),
        ("a O\n", {"format": "xml"}, r"task\.format='xml' is not a tagging format"),
        ("\n\n  \n", {}, r"bad\.txt: empty file"),
        ("-DOCSTART- O\n\n", {}, r"bad\.txt: no sentences"),
    ],
)
def test_bad_input_names_file_line_and_fix(tmp_path, text, kw, pattern):
    with pytest.raises(UserError, match=pattern):
        TaggingTask().read(write(tmp_path, "bad.txt", text), cfg(**kw))


def test_plain_sentences_one_per_line_are_read_as_sentences(tmp_path):
    """`predict --input plain.txt` on a CoNLL run read each line's last word as its tag
    ("tag 'call' is not O, B-TYPE or I-TYPE"). A file with no tag anywhere whose lines differ
    in length cannot be columns: it is one sentence per line, and says so."""
    text = "EU rejects German call to boycott British lamb .\nPeter Blackburn\n\nBRUSSELS 1996\n"
    path = write(tmp_path, "plain.txt", text)
    for fmt in ("conll", "auto", "lines"):
        ex = TaggingTask().read(path, cfg(format=fmt))
        assert [e["tokens"] for e in ex] == [
            "EU rejects German call to boycott British lamb .".split(),
            ["Peter", "Blackburn"],
            ["BRUSSELS", "1996"],
        ]
        assert [e["tags"] for e in ex] == [None] * 3 and [e["line"] for e in ex] == [1, 2, 4]
        if fmt != "lines":
            (warning,) = ex.warnings
            assert warning.startswith(f"{path}: no tags and no CoNLL columns: read as one")
        assert ex.read_as == "lines"
    # one line is a sentence too (a CoNLL file of one word with a non-tag column is not real)
    (one,) = TaggingTask().read(write(tmp_path, "one.txt", "Peter Blackburn said\n"), cfg())
    assert one["tokens"] == ["Peter", "Blackburn", "said"] and one["tags"] is None
    # lines as long as each other could be columns: refused in one line naming the format
    same = write(tmp_path, "same.txt", "Peter Blackburn\nGerman call\n")
    with pytest.raises(UserError, match=r"same\.txt:1: tag 'Blackburn' .*task\.format=lines"):
        TaggingTask().read(same, cfg(format="conll"))
    assert len(TaggingTask().read(same, cfg(format="lines"))) == 2
    # CoNLL stays CoNLL: tags anywhere, or unlabelled columns of equal width (word POS)
    labelled = TaggingTask().read(write(tmp_path, "l.txt", "EU NNP B-ORG\nrejects VBZ O\n"), cfg())
    assert labelled[0]["tags"] == ["B-ORG", "O"] and not labelled.warnings
    with pytest.raises(UserError, match="2 columns, but the first token line"):
        TaggingTask().read(write(tmp_path, "typo.txt", "EU NNP B-ORG\nrejects O\nx y z w\n"), cfg())
    with pytest.raises(UserError, match="tag 'NNP'"):
        TaggingTask().read(write(tmp_path, "pos.txt", "EU NNP\nrejects VBZ\n"), cfg())


@pytest.mark.parametrize("fmt, layout", [("klue-ner", "KLUE NER rows"), ("kmou", "KMOU markup")])
def test_plain_sentences_for_a_korean_run(tmp_path, fmt, layout):
    """A KLUE run read each line as one character of one sentence (lines glued together), a
    KMOU run found no sentences: plain sentences, one per line, are read as such."""
    path = write(tmp_path, "plain.txt", "김철수는 서울에 갔다.\n이영희는\n")
    ex = TaggingTask().read(path, cfg(format=fmt))
    assert [e["tokens"] for e in ex] == [["김철수는", "서울에", "갔다."], ["이영희는"]]
    assert ex.warnings == [f"{path}: no tags and no {layout}: read as one sentence per line, "
                           "words split at whitespace (task.format=lines)"]  # fmt: skip
    # their own unlabelled layouts are not plain sentences
    chars = write(tmp_path, "u.tsv", "".join(f"{c}\n" for c in "김씨는 만났다."))
    assert TaggingTask().read(chars, cfg(format="klue-ner"))[0]["tokens"] == ["김씨는", "만났다."]
    raw = write(tmp_path, "k.txt", "; 김씨는 만났다.\n")
    assert TaggingTask().read(raw, cfg(format="kmou"))[0]["tokens"] == ["김씨는", "만났다."]


def test_entities_get_character_spans_of_the_text_as_given():
    text = "Peter\tBlackburn  said in\u00a0Bonn "
    words = text.split()
    assert [text[a:b] for a, b in word_spans(text, words)] == words
    assert word_spans(text, words)[1] == (6, 15)
    assert word_spans("a a  a", ["a", "a", "a"]) == [(0, 1), (2, 3), (5, 6)]
    ex = TaggingTask().example_from_text(text, None, 0)
    assert ex["tokens"] == words and ex["raw"] == text


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        TaggingTask().read(str(tmp_path / "nope.txt"), cfg())


# -- KLUE NER ---------------------------------------------------------------------------------

KLUE_HEADER = "## 토큰, 레이블 구분자 : \\t\n## 컬럼명 : CHAR\tNE_TAG\n"


def klue_sentence(sid: str, marked: str) -> str:
    """A KLUE block written from <text:TYPE> markup, the way the real file is laid out."""
    rows = []
    pos = 0
    for m in re.finditer(r"<([^<>]+):([A-Z]+)>", marked):
        rows += [f"{c}\tO" for c in marked[pos : m.start()]]
        rows += [f"{c}\t{'B' if k == 0 else 'I'}-{m[2]}" for k, c in enumerate(m[1])]
        pos = m.end()
    rows += [f"{c}\tO" for c in marked[pos:]]
    return f"## {sid}\t{marked}\n" + "\n".join(rows) + "\n"


def test_klue_words_get_the_tag_of_their_first_entity_character(tmp_path):
    text = (
        KLUE_HEADER
        + klue_sentence("s0", "'<토즈 스터디센터:OG>'는 <매주 일요일:DT> 열린다.")
        + "\n"
        + klue_sentence("s1", "<김:PS>모(<33:QT>)씨 등 <16명:QT>을")
        + "\n"
    )
    path = write(tmp_path, "klue-ner.tsv", text)
    assert detect_format(text.split("\n")) == "klue-ner"
    task = TaggingTask()
    ex = task.read(path, cfg())
    assert [e["id"] for e in ex] == ["s0", "s1"]
    assert ex[0]["line"] == 3
    assert ex[0]["tokens"] == ["'토즈", "스터디센터'는", "매주", "일요일", "열린다."]
    assert ex[0]["tags"] == ["B-OG", "I-OG", "B-DT", "I-DT", "O"]
    # 김모(33)씨 holds two entities: the word keeps PS, QT is dropped and counted
    assert ex[1]["tokens"] == ["김모(33)씨", "등", "16명을"]
    assert ex[1]["tags"] == ["B-PS", "O", "B-QT"]
    assert len(ex.warnings) == 1 and "1 entities share a word" in ex.warnings[0]


def test_an_entity_dropped_in_a_shared_word_leaves_no_fragment_and_joins_nothing(tmp_path):
    """KLUE dev 00373 and 02238: the second entity starts inside the first one's last word, so
    it is dropped; its later words used to continue the first entity (one PS entity of three
    words, in neither annotation) or become a fragment entity of their own ("칼초)가", OG)."""
    text = (
        KLUE_HEADER
        + klue_sentence("a", "<슈퍼 마리오:PS>(<밥 호킨스:PS>) 영화")
        + "\n"
        + klue_sentence("b", "<다비네 아스토리:PS>(<칼리아리 칼초:OG>)가 <서울:LC>에")
        + "\n"
    )
    ex = TaggingTask().read(write(tmp_path, "klue-ner.tsv", text), cfg())
    assert ex[0]["tags"] == ["B-PS", "I-PS", "O", "O"]
    assert ex[1]["tokens"] == ["다비네", "아스토리(칼리아리", "칼초)가", "서울에"]
    assert ex[1]["tags"] == ["B-PS", "I-PS", "O", "B-LC"]
    assert len(ex.warnings) == 1 and "2 entities share a word" in ex.warnings[0]


def test_klue_bad_row(tmp_path):
    text = KLUE_HEADER + "## s0\t가나\n가\tO\n나\tO\tX\n"
    with pytest.raises(UserError, match=r"klue\.tsv:5: 3 tab-separated columns, expected 2"):
        TaggingTask().read(write(tmp_path, "klue.tsv", text), cfg(format="klue-ner"))


def test_klue_space_row_without_its_space_is_refused(tmp_path):
    # an editor or script that strips leading whitespace turns ' \tO' into '\tO': read as it
    # was, every word of the sentence ran together into one (silently)
    text = KLUE_HEADER + "## s0\t<가:PS> 나\n가\tB-PS\n\tO\n나\tO\n"
    with pytest.raises(UserError, match=r"klue\.tsv:5: no character before the tab"):
        TaggingTask().read(write(tmp_path, "klue.tsv", text), cfg(format="klue-ner"))


# -- KMOU -------------------------------------------------------------------------------------

KMOU_KLP = """; 다석 선생이 함석헌 등에게
$<다석:PS> 선생이 <함석헌:PS> 등에게
1\t다석\tNNP\tB_PS
2\t선생\tNNG\tO
2\t이\tJKS\tO
3\t함석헌\tNNP\tB_PS
4\t등\tNNB\tO
4\t에게\tJKB\tO

; 89년 여름에 서울에서
$<89년 여름:DT>에 <서울:LC>에서
1\t89\tSN\tB_DT
"""

KMOU_CORPUS = """## 1
## 오에 겐자부로는 일본 작가
## <오에 겐자부로:PER>는 <일본:LOC> 작가
오에\t오에\tNNG\tB-PER
_\t_\t_\tI-PER
겐자부로\t겐자부로\tNNP\tI-PER

## 2
## <2> 문제
## <<2>:NOH> 문제
<2>\t<2>\tSW\tB-NOH
"""


def test_kmou_2016klp_markup(tmp_path):
    path = write(tmp_path, "ner.train", KMOU_KLP)
    task = TaggingTask()
    ex = task.read(path, cfg())  # auto: "; " then "$"
    assert len(ex) == 2 and ex[0]["line"] == 1 and ex[1]["line"] == 10
    assert ex[0]["tokens"] == ["다석", "선생이", "함석헌", "등에게"]
    assert ex[0]["tags"] == ["B-PS", "O", "B-PS", "O"]
    assert ex[1]["tags"] == ["B-DT", "I-DT", "B-LC"]
    assert ex.warnings == []


def test_kmou_corpus_directory_bom_and_mismatch(tmp_path):
    d = tmp_path / "corpus"
    d.mkdir()
    write(d, "00002_NER.txt", KMOU_CORPUS, bom=True)
    write(d, "00003_NER.txt", KMOU_CORPUS.split("\n## 2")[0])
    task = TaggingTask()
    ex = task.read(str(d), cfg())
    assert [e["id"] for e in ex] == ["00002_NER/1", "00002_NER/2", "00003_NER/1"]
    assert ex[0]["tokens"] == ["오에", "겐자부로는", "일본", "작가"]
    assert ex[0]["tags"] == ["B-PER", "I-PER", "B-LOC", "O"]
    # a literal "<" inside an entity cannot be told from markup: warned, not silent
    assert len(ex.warnings) == 1 and "does not match the raw sentence" in ex.warnings[0]
    assert "00002_NER.txt:8" in ex.warnings[0]


def test_kmou_block_without_markup_line(tmp_path):
    bad = "; 문장\n1\t문장\tNNG\tO\n"
    with pytest.raises(UserError, match=r"x\.txt:2: expected the '\$' line"):
        TaggingTask().read(write(tmp_path, "x.txt", bad), cfg(format="kmou"))


# -- encoding ---------------------------------------------------------------------------------

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def wordpiece(words: list[str]) -> Tokenizer:
    vocab = {t: i for i, t in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Replace("~", "")
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok


LABELS = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]


def test_label_on_first_sub_token_only():
    tok = wordpiece(["john", "lives", "in", "new", "##york", "city", "##s", "."])
    ex = [
        {
            "id": "0",
            "line": 1,
            "file": "f",
            "tokens": ["john", "lives", "in", "newyork", "citys", "~", "."],
            "tags": ["B-PER", "O", "O", "B-LOC", "I-LOC", "O", "O"],
        }
    ]
    task = TaggingTask()
    feats = task.encode(ex, tok, cfg(), LABELS)
    (f,) = feats
    v = tok.get_vocab()
    assert f["input_ids"].tolist() == [
        v["[CLS]"],
        v["john"],
        v["lives"],
        v["in"],
        v["new"],
        v["##york"],
        v["city"],
        v["##s"],
        v["[UNK]"],  # "~" normalizes to nothing: kept as [UNK] so the word has a slot
        v["."],
        v["[SEP]"],
    ]
    assert f["labels"].tolist() == [-100, 2, 0, 0, 1, -100, 3, -100, 0, 0, -100]
    assert f["word_index"].tolist() == [-1, 0, 1, 2, 3, 3, 4, 4, 5, 6, -1]
    assert f["token_type_ids"].tolist() == [0] * 11 and f["example_index"] == 0
    assert any("no sub-token" in w for w in feats.warnings)
    # decode reads each word at its first sub-token and ignores the rest
    logits = np.full((11, len(LABELS)), -5.0)
    for pos, k in [(1, 2), (2, 0), (3, 0), (4, 1), (5, 2), (6, 3), (7, 2), (8, 0), (9, 0)]:
        logits[pos, k] = 5.0
    (pred,) = task.decode([logits], [f], ex, cfg(), LABELS)
    assert pred == ex[0]["tags"]


def test_truncation_counts_cut_words_and_decodes_them_as_o():
    tok = wordpiece(["a", "##a"])
    ex = [{"id": "0", "line": 7, "file": "f", "tokens": ["aa"] * 5, "tags": ["B-PER"] * 5}]
    task = TaggingTask()
    feats = task.encode(ex, tok, cfg(max_len=8), LABELS)
    (f,) = feats
    # 6 slots: 3 whole words; the 4th, 5th words are cut
    assert len(f["input_ids"]) == 8 and f["n_cut"] == 2
    assert f["labels"].tolist() == [-100, 2, -100, 2, -100, 2, -100, -100]
    assert any("cut 2 words from 1 sentences" in w for w in feats.warnings)
    # the warning names the file and the first cut sentence; the feature says what a served
    # row must report (predict, serve and the API used to drop it: words silently O)
    (warning,) = feats.warnings
    assert warning.startswith("f: task.max_len=8 cut") and "(first: f:7)" in warning
    assert f["truncated"] == {"truncated_words": 2}
    typed = task.example_from_text("aa " * 5, None, 0)
    (typed_warning,) = task.encode([typed], tok, cfg(max_len=8), LABELS).warnings
    assert (
        typed_warning.startswith("task.max_len=8 cut 2 words")
        and "(first: text 0)" in typed_warning
    )
    logits = np.zeros((8, len(LABELS)))
    logits[:, 2] = 1.0
    assert task.decode([logits], [f], ex, cfg(), LABELS) == [["B-PER"] * 3 + ["O"] * 2]


@pytest.mark.parametrize("budget, stride", [(6, 3), (6, 1), (6, 6), (10, 5), (4, 100)])
def test_word_windows_cover_every_word_within_the_budget(budget, stride):
    from encoderlab.tasks.tagging import window_owners, word_windows

    rng = np.random.default_rng(budget * 7 + stride)
    for _ in range(200):
        sizes = [int(x) for x in rng.integers(1, budget + 1, size=int(rng.integers(1, 40)))]
        spans = word_windows(sizes, budget, stride)
        assert spans[0][0] == 0 and spans[-1][1] == len(sizes)
        for (a, b), (c, d) in itertools.pairwise(spans):
            assert a < c <= b < d  # each window moves on and reads a word the last did not
        for a, b in spans:
            assert b - a == 1 or sum(sizes[a:b]) <= budget
        owner = window_owners(spans, sizes)
        assert all(spans[k][0] <= w < spans[k][1] for w, k in enumerate(owner))


def test_windows_read_every_word_of_a_long_sentence_once():
    """truncation: windows on tagging: the words past max_len were cut and counted as misses
    (and `task.truncation: windows` was silently ignored for tagging)."""
    tok = wordpiece(["a", "##a", "b"])
    words = ["aa", "b", "b", "aa", "b", "aa", "aa", "b", "b", "b", "aa", "b"]  # 17 sub-tokens
    tags = ["B-PER" if w == "aa" else "O" for w in words]
    ex = [{"id": "0", "line": 3, "file": "f", "tokens": words, "tags": tags}]
    task = TaggingTask()
    feats = task.encode(ex, tok, cfg(max_len=8, truncation="windows"), LABELS)
    assert len(feats) > 2 and not feats.warnings  # nothing cut
    assert any("read in overlapping windows" in n for n in feats.notes)
    seen: list[int] = []
    for f in feats:
        assert len(f["input_ids"]) <= 8 and f["n_cut"] == 0
        firsts = [
            w for k, w in enumerate(f["word_index"].tolist()) if w >= 0 and f["labels"][k] != -100
        ]
        seen += firsts
        # a word is labelled (trained) exactly where it is read
        assert (f["labels"] != -100).sum() == len(firsts)
    assert sorted(seen) == list(range(len(words)))  # every word once
    # decode takes each word from the window that owns it: a window's logits say its number
    outputs = []
    for k, f in enumerate(feats):
        logits = np.zeros((len(f["input_ids"]), len(LABELS)))
        logits[:, 2 if k % 2 == 0 else 0] = 1.0  # even windows say B-PER, odd ones O
        outputs.append(logits)
    (pred,) = task.decode(outputs, list(feats), ex, cfg(), LABELS)
    owner = {w: k for k, f in enumerate(feats) for w in f["word_index"].tolist() if w >= 0}
    assert pred == [("B-PER" if owner[w] % 2 == 0 else "O") for w in range(len(words))]
    (conf,) = task.confidences(outputs, list(feats), ex)
    assert all(c > 0 for c in conf)  # no word left at "cut, probability 0"
    # max_windows caps them: the rest is cut, and said
    capped = task.encode(ex, tok, cfg(max_len=8, truncation="windows", max_windows=2), LABELS)
    assert len(capped) == 2 and capped[0]["n_cut"] > 0
    assert any("raise task.max_windows" in w for w in capped.warnings)
    # head (the default) is as before: cut, and the warning names windows
    (head,) = task.encode(ex, tok, cfg(max_len=8), LABELS).warnings
    assert "task.truncation: windows reads all of them" in head


def test_a_truncation_a_task_does_not_read_is_refused():
    with pytest.raises(ValueError, match="head_tail is for classification"):
        cfg(truncation="head_tail")
    with pytest.raises(ValueError, match="qa always reads long contexts in overlapping windows"):
        TaskConfig(type="qa", truncation="windows")


def test_unknown_tag_and_shared_tokenizer_settings():
    tok = wordpiece(["a"])
    tok.enable_truncation(3)
    tok.enable_padding(length=20)
    task = TaggingTask()
    ok = [{"id": "0", "line": 3, "file": "v.txt", "tokens": ["a"] * 6, "tags": ["O"] * 6}]
    (f,) = task.encode(ok, tok, cfg(), LABELS)
    assert len(f["input_ids"]) == 8  # neither truncated to 3 nor padded to 20
    assert tok.truncation is not None and tok.padding is not None  # left as they were
    bad = [{"id": "0", "line": 3, "file": "v.txt", "tokens": ["a", "a"], "tags": ["O", "B-ORG"]}]
    with pytest.raises(UserError, match=r"v\.txt:3: tag 'B-ORG' \(word 2, 'a'\) never appears"):
        task.encode(bad, tok, cfg(), LABELS)
    with pytest.raises(UserError, match=r"valid\.txt:3: tag 'B-ORG'"):
        task.check_labels(bad, LABELS, "valid.txt")


def test_collate_loss_split_and_labels():
    task = TaggingTask()
    feats = [
        {
            "input_ids": np.array([2, 5, 3]),
            "token_type_ids": np.zeros(3),
            "labels": [-100, 1, -100],
        },
        {
            "input_ids": np.array([2, 5, 6, 7, 3]),
            "token_type_ids": np.zeros(5),
            "labels": [-100, 0, 2, -100, -100],
        },
    ]
    batch = task.collate(feats, pad_id=0)
    assert batch["labels"].tolist() == [[-100, 1, -100, -100, -100], [-100, 0, 2, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    logits = torch.zeros(2, 5, 3)
    logits[0, 1, 1] = logits[1, 1, 0] = logits[1, 2, 0] = 3.0
    loss, counts = task.loss(logits, batch)
    assert loss.item() > 0 and counts["n"].item() == 3 and counts["correct"].item() == 2
    assert task.train_metrics({k: float(v) for k, v in counts.items()})["acc"] == pytest.approx(
        2 / 3
    )
    head = task.head(HeadConfig(dropout=0.0), 16, 5)
    assert head(torch.zeros(2, 4, 16)).shape == (2, 4, 5)

    examples = [{"id": str(i), "tags": ["O"], "tokens": ["x"]} for i in range(50)]
    train, valid = task.split(examples, cfg(valid_ratio=0.2), seed=3)
    assert len(valid) == 10 and len(train) == 40
    assert {e["id"] for e in train} | {e["id"] for e in valid} == {str(i) for i in range(50)}
    assert task.split(examples, cfg(valid_ratio=0.2), seed=3)[1] == valid
    assert task.split(examples, cfg(valid_ratio=0.2), seed=4)[1] != valid
    # B- and I- for every type seen, "O" first
    assert task.label_names([{"tags": ["B-PER", "O"]}, {"tags": None}]) == ["O", "B-PER", "I-PER"]


# -- end to end -------------------------------------------------------------------------------

OVERFIT = """John B-PER
Smith I-PER
lives O
in O
New B-LOC
York I-LOC
. O

Mary B-PER
works O
for O
Acme B-ORG
Corp I-ORG
in O
Paris B-LOC
. O

The O
United B-ORG
Nations I-ORG
met O
in O
Geneva B-LOC
with O
Bob B-PER
. O

Alice B-PER
visited O
Berlin B-LOC
and O
Rome B-LOC
. O
"""


@pytest.mark.parametrize("tc", [cfg(max_len=32), cfg(max_len=8, truncation="windows")])
def test_tiny_model_overfits_four_sentences(tmp_path, tc):
    """Also read in windows of 6 sub-tokens: every word of the longer sentences is tagged,
    from the window where it has most context, and trained there."""
    torch.manual_seed(0)
    task = TaggingTask()
    examples = task.read(write(tmp_path, "train.txt", OVERFIT), tc)
    labels = task.label_names(examples)
    texts = [" ".join(e["tokens"]) for e in examples]
    # byte-level BPE: the kind whose training is deterministic (a WordPiece vocabulary varied
    # run to run, and with it whether 100 steps were enough)
    tok = train_tokenizer(texts, TokenizerConfig(kind="bpe", vocab_size=300, min_frequency=1))
    feats = task.encode(examples, tok, tc, labels)
    if tc.truncation == "windows":
        assert len(feats) > len(examples) and not feats.warnings  # windows, nothing cut
    else:
        assert any(
            f["input_ids"].shape[0] > len(e["tokens"]) + 2
            for f, e in zip(feats, examples, strict=True)
        )
    mc = ModelConfig(
        vocab_size=tok.get_vocab_size(),
        d_model=32,
        n_head=2,
        d_ff=64,
        n_layer=1,
        dropout=0.0,
        attn_dropout=0.0,
        max_len=32,
    )
    enc, head = Encoder(mc), task.head(HeadConfig(dropout=0.0), 32, len(labels))
    params = [*enc.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-2)
    batch = task.collate(feats, pad_id=0)

    def forward() -> torch.Tensor:
        h = enc(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return head(h, batch["attention_mask"])

    for _ in range(100):
        loss, _ = task.loss(forward(), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = forward().numpy()
    outputs = [logits[i, : len(f["input_ids"])] for i, f in enumerate(feats)]
    preds = task.decode(outputs, feats, examples, tc, labels)
    m = task.metrics(preds, examples, tc, labels)
    assert m["f1"] == 1.0 and m["acc"] == 1.0, (preds, m)
    assert all(r["correct"] for r in task.prediction_rows(preds, examples, labels))


# -- the real files ---------------------------------------------------------------------------


def test_conll2003_real():
    d = shared("conll2003")  # counts from SOURCE.txt
    task = TaggingTask()
    train = task.read(str(d / "eng.train"), cfg())
    assert len(train) == 14041 and sum(len(e["tokens"]) for e in train) == 203621
    assert task.label_names(train) == [
        "O",
        "B-LOC",
        "B-MISC",
        "B-ORG",
        "B-PER",
        "I-LOC",
        "I-MISC",
        "I-ORG",
        "I-PER",
    ]
    assert train[0]["tokens"][:3] == ["EU", "rejects", "German"]
    assert train[0]["tags"][:3] == ["B-ORG", "O", "B-MISC"]
    assert any("IOB1" in n for n in train.notes)  # the original release is IOB1
    # no I- entity start is left after conversion
    assert all(
        not (t.startswith("I-") and (k == 0 or e["tags"][k - 1][2:] != t[2:]))
        for e in train
        for k, t in enumerate(e["tags"])
    )
    assert len(task.read(str(d / "eng.testa"), cfg())) == 3250
    assert len(task.read(str(d / "eng.testb"), cfg())) == 3453


def test_klue_ner_real():
    path = shared("klue", "klue-ner-v1.1_dev.tsv")
    task = TaggingTask()
    ex = task.read(str(path), cfg())
    assert len(ex) == 5000
    assert ex[0]["id"] == "klue-ner-v1_dev_00000-wikitree" and ex[0]["line"] == 6
    assert ex[0]["tokens"][0] == "경찰은" and ex[0]["tags"][0] == "B-OG"
    types = {t[2:] for t in task.label_names(ex) if t != "O"}
    assert types == {"PS", "LC", "OG", "DT", "TI", "QT"}


def test_kmou_real():
    base = shared("kmou_ner")
    for name, n in [("ner.train", 2928), ("ner.dev", 366), ("ner.test", 366)]:
        task = TaggingTask()
        ex = task.read(str(base / "2016klp" / name), cfg())
        assert len(ex) == n, name
    assert {t[2:] for t in task.label_names(ex) if t != "O"} == {"PS", "LC", "OG", "DT", "TI"}
    task = TaggingTask()
    corpus = task.read(str(base / "corpus"), cfg())
    assert len(corpus) == 23964
    types = {t[2:] for t in task.label_names(corpus) if t != "O"}
    assert types == {"PER", "LOC", "ORG", "DAT", "TIM", "DUR", "MNY", "PNT", "NOH", "POH"}


def test_a_tag_the_split_sends_to_validation_alone_is_still_known(tmp_path):
    """With a split, the label set is the training file's: a rare tag whose only sentence
    went to validation was refused as 'never appears in the training data' (it does)."""
    from encoderlab.config import FinetuneConfig
    from encoderlab.finetuning import read_task_data
    from encoderlab.tasks import get_task

    lines = [f"w{i} O\nx{i} B-PER\n" for i in range(9)] + ["Zorg B-RARE\nattacks O\n"]
    f = write(tmp_path, "rare.txt", "\n".join(lines))
    for seed in range(6):
        cfg = FinetuneConfig.model_validate(
            {"seed": seed, "task": {"type": "tagging", "train": f, "valid_ratio": 0.5}}
        )
        data = read_task_data(get_task("tagging"), cfg, lambda m: None)
        assert "B-RARE" in data.labels
        assert len(data.train) + len(data.valid) == 10


def test_the_detected_format_is_what_the_run_records(tmp_path):
    """`task.format: auto` saved as is let predict detect an unlabelled KLUE file (no ## lines)
    as CoNLL: every eojeol a sentence, every character a word. The run records what it found."""
    from encoderlab.config import FinetuneConfig
    from encoderlab.finetuning import read_task_data
    from encoderlab.tasks import get_task

    blocks = [klue_sentence(f"s{i}", f"<김:PS>씨는 <{i}명:QT>을 만났다.") for i in range(6)]
    path = write(tmp_path, "klue-ner.tsv", KLUE_HEADER + "\n".join(blocks))
    cfg = FinetuneConfig.model_validate({"task": {"type": "tagging", "train": path}})
    assert cfg.task.format == "auto"
    read_task_data(get_task("tagging"), cfg, lambda m: None)
    assert cfg.task.format == "klue-ner"
    # an unlabelled file in the run's format reads as sentences of words, not characters
    unlabelled = write(tmp_path, "u.tsv", "".join(f"{c}\n" for c in "김씨는 만났다.") + "\n")
    (ex,) = TaggingTask().read(unlabelled, cfg.task)
    assert ex["tokens"] == ["김씨는", "만났다."]


def test_a_docstart_line_with_a_tab_does_not_set_the_separator(tmp_path):
    text = "-DOCSTART-\tO\n\nJohn B-PER\nSmith I-PER\n\nMary B-PER\nruns O\n"
    ex = TaggingTask().read(write(tmp_path, "d.txt", text), cfg())
    assert [e["tokens"] for e in ex] == [["John", "Smith"], ["Mary", "runs"]]
    assert [e["tags"] for e in ex] == [["B-PER", "I-PER"], ["B-PER", "O"]]


def test_a_file_to_predict_is_read_without_its_tags(tmp_path):
    """predict --input of a KMOU file on a KLUE-trained run stopped at a gold tag the run
    does not know (B-PER), though predicting needs no tags: a file to predict is read
    without them."""
    path = write(tmp_path, "other.txt", "EU B-ORGANIZATION\nrejects O\n\nPeter B-PERSON\n")
    got = TaggingTask().read(path, cfg(), labelled=False)
    assert [e["tokens"] for e in got] == [["EU", "rejects"], ["Peter"]]
    assert [e["tags"] for e in got] == [None, None]
    assert TaggingTask().read(path, cfg())[0]["tags"] == ["B-ORGANIZATION", "O"]  # as before


def test_a_data_set_folder_reads_its_data_files_only(tmp_path):
    """A treebank folder as UD ships it: README and LICENSE are left out (not read as
    sentences), the .conllu files are read and the raw .txt beside them is not; a folder with
    the train and the held-out files of a data set is refused (it would train on the test set)."""
    from test_task_pos import CONLLU

    ud = tmp_path / "UD_English-Tiny"
    ud.mkdir()
    (ud / "README.md").write_text("# Summary\nA tiny treebank.\n")
    (ud / "LICENSE.txt").write_text("CC BY-SA 4.0\n")
    (ud / "en_tiny-ud-train.conllu").write_text(CONLLU)
    (ud / "en_tiny-ud-train.txt").write_text("I don't know. Go!\n")
    ex = TaggingTask().read(str(ud), TaskConfig(type="pos"))
    assert [e["tokens"] for e in ex] == [["I", "do", "n't", "know", "."], ["Go", "!"]]
    assert ex.notes[-1] == (
        f"{ud}: left out LICENSE.txt, README.md, en_tiny-ud-train.txt (the .conllu files are "
        "read; the rest are not data)"
    )
    (ud / "en_tiny-ud-dev.conllu").write_text(CONLLU)
    with pytest.raises(UserError) as e:
        TaggingTask().read(str(ud), TaskConfig(type="pos"))
    assert str(e.value) == (
        f"{ud}: holds a data set's train and held-out files (en_tiny-ud-train.conllu, "
        f"en_tiny-ud-dev.conllu); reading the folder would train on both: point task.train at "
        f"{ud / 'en_tiny-ud-train.conllu'} and task.valid at {ud / 'en_tiny-ud-dev.conllu'}"
    )
    conll = tmp_path / "conll2003"  # eng.train, eng.testa, eng.testb
    conll.mkdir()
    for name in ("eng.train", "eng.testa"):
        (conll / name).write_text(CONLL_IOB1)
    with pytest.raises(UserError, match=r"\(eng.train, eng.testa\)"):
        TaggingTask().read(str(conll), cfg())
    wnut = tmp_path / "wnut17"  # WNUT-17's own names: no separator before "train"
    wnut.mkdir()
    for name in ("wnut17train.conll", "emerging.dev.conll"):
        (wnut / name).write_text(CONLL_IOB1)
    with pytest.raises(UserError, match=r"\(wnut17train.conll, emerging.dev.conll\)"):
        TaggingTask().read(str(wnut), cfg())
    news = tmp_path / "news"  # data files whose names start like documentation's
    news.mkdir()
    for name in ("sources_news.conll", "notices.conll", "constraint.conll", "README.md"):
        (news / name).write_text(CONLL_IOB1)
    ex = TaggingTask().read(str(news), cfg())
    assert {e["id"].split("/")[0] for e in ex} == {"sources_news", "notices", "constraint"}
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README").write_text("nothing here\n")
    with pytest.raises(UserError, match="holds no data file, only README"):
        TaggingTask().read(str(docs), cfg())


def test_a_file_to_predict_is_not_refused_for_tags_it_throws_away(tmp_path):
    """predict on a CoNLL file with POS tags, BIOES tags or another scheme's tags stopped at
    a tag check of tags it then discards; a labelled read still checks them."""
    from encoderlab.tasks.base import read_to_predict

    cases = {
        "pos.conll": "EU NNP\nrejects VBZ\ncall NN\n\nPeter NNP\nruns VBZ\n",
        "bioes.conll": "EU S-ORG\nrejects O\n\nPeter B-PER\nBlackburn E-PER\n",
    }
    cfg = TaskConfig(type="tagging")
    for name, body in cases.items():
        path = tmp_path / name
        path.write_text(body)
        examples = read_to_predict(TaggingTask(), str(path), cfg)
        assert [ex["tokens"][0] for ex in examples] == [body.split()[0], "Peter"]
        assert all(ex["tags"] is None for ex in examples)
        with pytest.raises(UserError):
            TaggingTask().read(str(path), cfg, labelled=True)
    iob1 = tmp_path / "iob1.conll"
    iob1.write_text("EU I-ORG\nrejects O\nGerman I-MISC\n")
    bio = TaskConfig(type="tagging", tag_scheme="bio")
    assert len(read_to_predict(TaggingTask(), str(iob1), bio)) == 1


def test_raw_text_to_tag_has_its_punctuation_apart_as_word_level_data_has_it():
    """ "(EU)" was one word whose first sub-token, "(", is O in all CoNLL data: the entity was
    missed, and "France." came back as an entity's text. Character-markup runs (KLUE-NER,
    KMOU) learned words with their punctuation: theirs stay as the whitespace left them."""
    text = 'The (EU) rejects "German" calls, says the U.S. and don\'t... France.'
    words = split_words(text)
    assert words == ["The", "(", "EU", ")", "rejects", '"', "German", '"', "calls", ",", "says",
                     "the", "U.S.", "and", "don't", "...", "France", "."]  # fmt: skip
    assert [text[a:b] for a, b in word_spans(text, words)] == words
    task = TaggingTask()
    assert task.example_from_text(text, None, 0)["tokens"] == words
    task.words_keep_punctuation = True
    assert task.example_from_text(text, None, 0)["tokens"] == text.split()


def test_titles_keep_their_dot_as_conll_writes_them():
    """ "Mr. Smith" came apart as "Mr", ".", "Smith": CoNLL-2003 (and the Penn Treebank) have
    "Mr." as one word, so the model read a sentence end before every name with a title."""
    text = "Mr. Smith of Apple Inc. met (Dr.) Jones on Sept. 3. Mr.. x"
    words = split_words(text)
    assert words == ["Mr.", "Smith", "of", "Apple", "Inc.", "met", "(", "Dr.", ")", "Jones",
                     "on", "Sept.", "3", ".", "Mr", "..", "x"]  # fmt: skip
    assert [text[a:b] for a, b in word_spans(text, words)] == words
    assert split_words("mr. smith") == ["mr", ".", "smith"]  # a title is capitalised


def test_plain_sentences_ending_like_a_tag_are_still_sentences(tmp_path):
    """A file of sentences was read as CoNLL (and refused) as soon as one line ended in a
    tag-like word ("Neither do I", "send an E-mail"); a CoNLL file with a typo still is."""
    text = "the film was good\nNeither do I\nplease send an E-mail\nwe went home\nso late\n"
    ex = TaggingTask().read(str(write(tmp_path, "s.txt", text)), cfg())
    assert [e["tokens"][-1] for e in ex] == ["good", "I", "E-mail", "home", "late"]
    typo = "EU B-ORG\nrejects O\nGerman B-MISC extra\ncall O\n"
    with pytest.raises(UserError, match="columns, but the first token line"):
        TaggingTask().read(str(write(tmp_path, "t.txt", typo)), cfg())


def test_conll_predictions_keep_the_files_docstart_lines(tmp_path):
    """-DOCSTART- and its blank line were dropped, so `paste gold pred` (conlleval's input)
    was a line off from the first document on."""
    from encoderlab.tasks.tagging import conll_text

    gold = "-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\nPeter NNP I-NP I-PER\n"
    examples = TaggingTask().read(str(write(tmp_path, "g.conll", gold)), cfg())
    rows = [{"prediction": " ".join("O" for _ in ex["tokens"])} for ex in examples]
    pred = conll_text(examples, rows, ["O", "B-ORG"], conllu=False).splitlines()
    assert pred[:5] == ["-DOCSTART- O", "", "EU O", "rejects O", ""]
    layout = [bool(x.strip()) for x in gold.splitlines()]  # word lines where gold has them
    assert [bool(line.strip()) for line in pred][: len(layout)] == layout


def test_invisible_format_characters_stay_on_their_word():
    """A right-to-left mark or a BOM was peeled off as a word of its own (an entity whose text
    no one can see, and an extra [UNK] among the words the model reads)."""
    text = "\ufeffJohn visited \u200fParis\u200f (EU)."
    assert split_words(text) == ["\ufeffJohn", "visited", "\u200fParis\u200f", "(", "EU", ")", "."]
    # stepped over: the punctuation behind them still comes apart, they stay on the edge word
    assert split_words('\ufeff"Hello Paris.\u200e') == ['\ufeff"', "Hello", "Paris", ".\u200e"]
    assert split_words("\u200b") == ["\u200b"]
    # between a word and its punctuation, one stays on the word
    assert split_words("word\u200b. (\u200bword)") == ["word\u200b", ".", "(", "\u200bword", ")"]
    # what the peeling gives otherwise is unchanged: runs of one mark are one word, an
    # abbreviation keeps its dot, alternating marks come apart one by one
    assert split_words("wow!?! U.S. ((x)) a.!.") == [
        "wow",
        "!",
        "?",
        "!",
        "U.S.",
        "((",
        "x",
        "))",
        "a.!.",
    ]


def test_prediction_rows_name_each_sentences_first_line():
    """Ids number the sentences read, so row i was not line i of a file with blank lines
    between sentences; each row now says the line its sentence starts on."""
    task = TaggingTask()
    examples = [
        {"id": "0", "line": 3, "tokens": ["EU", "rejects"], "tags": None},
        {"id": "1", "line": 0, "tokens": ["Peter"], "tags": None},  # typed text: no line
    ]
    rows = task.prediction_rows([["B-ORG", "O"], ["B-PER"]], examples, ["O", "B-ORG", "B-PER"])
    assert rows[0]["line"] == 3 and "line" not in rows[1]
    assert list(rows[0])[:3] == ["id", "line", "tokens"]
