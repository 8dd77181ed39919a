"""Task data in the shapes the Hugging Face Hub and spreadsheets give: Parquet and .xlsx
tables for classification, and token tagging from rows of word and tag lists (.jsonl, .json,
.parquet, a save_to_disk folder), tag ids named by a datasets ClassLabel."""

import json
from pathlib import Path

import pytest

from conftest import sentiment_rows
from encoderlab.config import TaskConfig
from encoderlab.errors import UserError
from encoderlab.tasks import get_task

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")
openpyxl = pytest.importorskip("openpyxl")

NER = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
SENTENCES = [
    (["Anna", "Berg", "lives", "in", "Oslo"], ["B-PER", "I-PER", "O", "O", "B-LOC"]),
    (["Rain", "in", "New", "York"], ["O", "O", "B-LOC", "I-LOC"]),
    (["Tom", "left"], ["B-PER", "O"]),
]


def task_cfg(**kw) -> TaskConfig:
    return TaskConfig(type=kw.pop("type", "classification"), train="unused", **kw)


def hf_ner(path: Path, kind: str) -> Path:
    """The sentences as datasets writes them: tokens + ner_tags (ClassLabel ids)."""
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NER)),
        }
    )
    rows = [
        {"id": f"s{i}", "tokens": w, "ner_tags": [NER.index(t) for t in tags]}
        for i, (w, tags) in enumerate(SENTENCES)
    ]
    ds = datasets.Dataset.from_list(rows, features=features)
    if kind == "parquet":
        ds.to_parquet(str(path))
    else:
        ds.save_to_disk(str(path))
    return path


def test_parquet_classification_names_class_labels_from_datasets_metadata(tmp_path):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    rows = [{"text": f"review {i}", "label": i % 2} for i in range(6)]
    path = tmp_path / "train-00000-of-00001.parquet"
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    examples = get_task("classification").read(str(path), task_cfg())
    assert [ex["label"] for ex in examples] == ["neg", "pos"] * 3
    assert examples[1]["text"] == "review 1" and examples[1]["line"] == 2


def test_parquet_without_metadata_keeps_values_and_reads_nested_keys(tmp_path):
    table = pa.table({"body": ["a b", "c d"], "meta": [{"y": 1}, {"y": 0}]})
    path = tmp_path / "plain.pq"
    pq.write_table(table, path)
    cfg = task_cfg(text_column="body", label_column="meta.y")
    examples = get_task("classification").read(str(path), cfg)
    assert [(ex["text"], ex["label"]) for ex in examples] == [("a b", "1"), ("c d", "0")]


def test_a_float_label_column_with_a_missing_cell_keeps_whole_number_labels(tmp_path):
    """pandas stores a 0/1 column with one NaN as floats: the labels stay '0' and '1' (as a
    test csv, a submission and the API spell them), not '0.0' and '1.0'."""
    table = pa.table({"text": ["a", "b", "c", "d"], "label": [1.0, 0.0, None, 2.5]})
    path = tmp_path / "floats.parquet"
    pq.write_table(table, path)
    examples = get_task("classification").read(str(path), task_cfg(text_column="text"))
    assert [ex["label"] for ex in examples] == ["1", "0", "2.5"]
    assert "skipped 1 rows without a gold label" in examples.warnings[0]


def test_a_label_written_another_way_in_another_file_takes_the_runs_spelling(tmp_path):
    """A run trained on text '0.0'/'1.0' (or before whole-number floats read as '1') reads a
    file of float cells, which now give '0'/'1', as the same labels."""
    table = pa.table({"text": ["a", "b"], "label": [1.0, 0.0]})
    path = tmp_path / "floats.parquet"
    pq.write_table(table, path)
    task = get_task("classification")
    examples = task.read(str(path), task_cfg(text_column="text"))
    task.check_labels(examples, ["0.0", "1.0"], str(path))
    assert [ex["label"] for ex in examples] == ["1.0", "0.0"]
    with pytest.raises(UserError, match="label '2' never appears"):
        task.check_labels([{"label": "2", "line": 3}], ["0.0", "1.0"], str(path))


def test_a_damaged_parquet_file_is_one_line(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match="not a readable Parquet file"):
        get_task("classification").read(str(path), task_cfg())


def write_xlsx(path: Path, sheets: dict[str, list[list]]) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


def test_xlsx_reads_the_first_sheet_or_the_named_one(tmp_path):
    path = write_xlsx(
        tmp_path / "labels.xlsx",
        {
            "notes": [["text", "label"], ["great film", 1], [None, None], ["dull", 0]],
            "more": [["text", "label"], ["fine", "pos"]],
        },
    )
    first = get_task("classification").read(str(path), task_cfg())
    assert [(ex["text"], ex["label"], ex["line"]) for ex in first] == [
        ("great film", "1", 2),
        ("dull", "0", 4),  # the empty row 3 is skipped; lines are Excel's row numbers
    ]
    more = get_task("classification").read(str(path), task_cfg(sheet="more"))
    assert [ex["label"] for ex in more] == ["pos"]
    with pytest.raises(
        UserError, match=r"no sheet 'Sheet9' \(sheets: notes, more\); set task.sheet"
    ):
        get_task("classification").read(str(path), task_cfg(sheet="Sheet9"))


def test_xlsx_header_problems_are_one_line(tmp_path):
    twice = write_xlsx(tmp_path / "twice.xlsx", {"s": [["text", "text"], ["a", "b"]]})
    with pytest.raises(UserError, match="names column 'text' twice"):
        get_task("classification").read(str(twice), task_cfg())
    positions = write_xlsx(tmp_path / "pos.xlsx", {"s": [["text", "label"], ["a", 1]]})
    with pytest.raises(UserError, match="names its columns itself"):
        get_task("classification").read(str(positions), task_cfg(text_column=0, label_column=1))


@pytest.mark.parametrize("kind", ["parquet", "save_to_disk"])
def test_tagging_reads_datasets_token_classification_rows(tmp_path, kind):
    path = hf_ner(tmp_path / ("ner.parquet" if kind == "parquet" else "ner_hf"), kind)
    examples = get_task("tagging").read(str(path), task_cfg(type="tagging"), labelled=True)
    assert [(ex["tokens"], ex["tags"]) for ex in examples] == [(w, t) for w, t in SENTENCES]
    assert [ex["id"] for ex in examples] == ["s0", "s1", "s2"]
    assert examples.read_as is None  # told by the path, not recorded as the run's format


def test_tagging_jsonl_rows_with_string_tags_convert_iob1(tmp_path):
    path = tmp_path / "ner.jsonl"
    iob1 = [["I-PER", "I-PER", "O"], ["O", "I-LOC"], ["I-PER", "O"]]
    words = [["Anna", "Berg", "sings"], ["in", "Oslo"], ["Tom", "left"]]
    path.write_text(
        "".join(
            json.dumps({"words": w, "labels": t}) + "\n" for w, t in zip(words, iob1, strict=True)
        )
    )
    examples = get_task("tagging").read(str(path), task_cfg(type="tagging"), labelled=True)
    assert [ex["tags"] for ex in examples] == [
        ["B-PER", "I-PER", "O"],
        ["O", "B-LOC"],
        ["B-PER", "O"],
    ]
    assert any("IOB1 tags (3 entities start with I-" in n for n in examples.notes)
    assert "ner.jsonl:1 (word 1)" in examples.notes[0]


def test_tagging_rows_refuse_what_cannot_be_tags(tmp_path):
    task, cfg = get_task("tagging"), task_cfg(type="tagging")
    ids = tmp_path / "ids.jsonl"
    ids.write_text(json.dumps({"tokens": ["a", "b"], "ner_tags": [0, 3]}) + "\n")
    with pytest.raises(
        UserError, match=r"ids.jsonl:1: 'ner_tags' holds tag ids .* without their names"
    ):
        task.read(str(ids), cfg, labelled=True)
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(UserError, match="holds 1 tags for 2 words; give one tag per word"):
        task.read(str(short), cfg, labelled=True)
    bioes = tmp_path / "bioes.jsonl"
    bioes.write_text(json.dumps({"tokens": ["a"], "tags": ["S-PER"]}) + "\n")
    with pytest.raises(UserError, match=r"bioes.jsonl:1 \(word 1\): tag 'S-PER' .*BIOES"):
        task.read(str(bioes), cfg, labelled=True)
    text = tmp_path / "text.jsonl"
    text.write_text(json.dumps({"sentence": "a b", "tags": ["O", "O"]}) + "\n")
    with pytest.raises(UserError, match="no column of words .* columns found: sentence, tags"):
        task.read(str(text), cfg, labelled=True)
    with pytest.raises(UserError, match=r"no column 'toks' \(task.text_column\)"):
        task.read(str(text), task_cfg(type="tagging", text_column="toks"), labelled=True)


def test_tagging_rows_without_tags_are_for_predict_only(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"tokens": ["Anna", "sings"]}) + "\n")
    task = get_task("tagging")
    examples = task.read(str(path), task_cfg(type="tagging"), labelled=False)
    assert examples[0]["tokens"] == ["Anna", "sings"] and examples[0]["tags"] is None
    with pytest.raises(UserError, match="no column of tags .* set task.label_column"):
        task.read(str(path), task_cfg(type="tagging"), labelled=True)


def test_tagging_from_parquet_end_to_end_then_predict_jsonl(tmp_path):
    """A run trained on datasets' parquet predicts a .jsonl of word lists."""
    from encoderlab.config import FinetuneConfig
    from encoderlab.finetuning import finetune
    from encoderlab.inference import evaluate_file, predict

    path = hf_ner(tmp_path / "ner.parquet", "parquet")
    rows = pq.read_table(path).to_pylist() * 8
    big = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(path)), big)
    cfg = FinetuneConfig.model_validate(
        {
            "runs_dir": str(tmp_path / "runs"),
            "task": {"type": "tagging", "train": str(big), "max_len": 16},
            "tokenizer": {"kind": "wordpiece", "vocab_size": 60},
            "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 16},
            "train": {"max_steps": 4, "batch_size": 8},
        }
    )
    run, _ = finetune(cfg, say=lambda m: None)
    assert json.loads((run.path / "labels.json").read_text()) == sorted(
        NER, key=lambda t: (t != "O", t)
    )
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"tokens": ["Anna", "Berg", "left"]}) + "\n")
    rows_out = predict(run.path, input_path=str(plain), say=lambda m: None)
    assert [r["tokens"] for r in rows_out] == ["Anna Berg left"]
    assert len(rows_out[0]["prediction"].split()) == 3
    # the run was trained on rows; a CoNLL file and plain sentences still read as themselves
    conll = tmp_path / "dev.conll"
    conll.write_text("Anna B-PER\nleft O\n\nTom B-PER\nstayed O\n")
    metrics = evaluate_file(run.path, str(conll), say=lambda m: None)
    assert metrics["extra"]["examples"] == 2
    lines = tmp_path / "plain.txt"
    lines.write_text("Anna left early\nTom stayed\n")
    assert len(predict(run.path, input_path=str(lines), say=lambda m: None)) == 2


def squad_rows() -> list[dict]:
    ctx = "Oslo is the capital of Norway. Bergen is on the west coast."
    return [
        {
            "id": "q1",
            "title": "Norway",
            "context": ctx,
            "question": "What is the capital?",
            "answers": {"text": ["Oslo"], "answer_start": [0]},
        },
        {
            "id": "q2",
            "title": "Norway",
            "context": ctx,
            "question": "Which city is on the west coast?",
            "answers": {"text": ["Bergen", "Bergen"], "answer_start": [31, 33]},  # one off by 2
        },
        {
            "id": "q3",
            "title": "",
            "context": "Rain falls.",
            "question": "What falls?",
            "answers": {"text": ["Rain"], "answer_start": [0]},
        },
    ]


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "json-lines", "save_to_disk"])
def test_qa_reads_datasets_squad_rows(tmp_path, kind):
    ds = datasets.Dataset.from_list(squad_rows())
    path = tmp_path / {"parquet": "sq.parquet", "jsonl": "sq.jsonl"}.get(kind, "sq.json")
    if kind == "parquet":
        ds.to_parquet(str(path))
    elif kind == "save_to_disk":
        path = tmp_path / "sq_hf"
        ds.save_to_disk(str(path))
    else:
        ds.to_json(str(path))  # JSON lines, whatever the suffix
    examples = get_task("qa").read(str(path), task_cfg(type="qa"))
    assert [ex["id"] for ex in examples] == ["q1", "q2", "q3"]
    assert examples[1]["answers"] == [
        {"text": "Bergen", "answer_start": 31},
        {"text": "Bergen", "answer_start": 31},  # found 2 characters from where it was said
    ]
    # the split key: the title, or the context where a row has none
    assert [ex["article"] for ex in examples] == ["Norway", "Norway", "Rain falls."]
    assert any("found within" in w for w in examples.warnings)


def test_qa_rows_with_empty_answers_among_answered_are_squad2_unanswerable(tmp_path):
    rows = squad_rows()
    rows[2]["answers"] = {"text": [], "answer_start": []}
    path = tmp_path / "v2.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = get_task("qa").read(str(path), task_cfg(type="qa"))
    assert [ex["id"] for ex in examples] == ["q1", "q2"]
    assert any("1 unanswerable questions (SQuAD 2.0" in w for w in examples.warnings)


def test_qa_rows_refuse_what_is_not_a_question(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": 1, "context": "c", "query": "q?"}) + "\n")
    with pytest.raises(
        UserError, match=r"bad.jsonl:1: a question row needs 'context' and 'question'"
    ):
        get_task("qa").read(str(path), task_cfg(type="qa"))
    odd = tmp_path / "odd.jsonl"
    odd.write_text(
        json.dumps({"context": "c", "question": "q?", "answers": {"text": ["c"]}}) + "\n"
    )
    with pytest.raises(UserError, match="'answers' must be"):
        get_task("qa").read(str(odd), task_cfg(type="qa"))


def test_a_json_file_of_json_lines_reads_as_jsonl(tmp_path):
    path = tmp_path / "rows.json"
    rows = sentiment_rows(5, 0)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = get_task("classification").read(str(path), task_cfg(label_column="target"))
    assert [ex["text"] for ex in examples] == [r["text"] for r in rows]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"text": "a", "label": 1},\n')
    with pytest.raises(UserError, match="not valid JSON"):
        get_task("classification").read(str(broken), task_cfg())


def test_a_folder_of_data_files_is_not_one_example_per_file(tmp_path):
    """A Hub download's data/ folder of Parquet shards, or binary files among label folders."""
    hub = tmp_path / "hub" / "data"
    hub.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a"], "label": [1]}), hub / "train-00000-of-00001.parquet")
    with pytest.raises(
        UserError, match=r"hub: holds data files \(data/train-00000-of-00001.parquet\)"
    ):
        get_task("classification").read(str(hub.parent), task_cfg())
    with pytest.raises(UserError, match="holds data files"):
        get_task("tagging").read(str(hub), task_cfg(type="tagging"), labelled=False)
    spam = tmp_path / "spam"
    (spam / "ham").mkdir(parents=True)
    (spam / "ham" / "1.txt").write_text("hello")
    (spam / "ham" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(UserError, match=r"logo.png: a binary file \(NUL bytes\)"):
        get_task("classification").read(str(spam), task_cfg())


def test_xls_and_a_workbook_that_is_not_one_are_one_line(tmp_path):
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0 old workbook")
    with pytest.raises(
        UserError, match=r"Excel 97-2003 workbook \(.xls\).*save it as .xlsx or .csv"
    ):
        get_task("classification").read(str(old), task_cfg())
    fake = tmp_path / "fake.csv"
    fake.write_text("text,label\na,1\n")
    with pytest.raises(UserError, match="not a readable .xlsx workbook"):
        get_task("classification").read(str(fake), task_cfg(format="xlsx"))


def test_xlsx_with_a_wrong_dimension_tag_reads_every_row(tmp_path):
    path = write_xlsx(
        tmp_path / "dim.xlsx", {"s": [["text", "label"]] + [[f"t{i}", i % 2] for i in range(30)]}
    )
    import shutil
    import zipfile

    fixed = tmp_path / "dim2.xlsx"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(fixed, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                text = data.decode()
                start = text.index("<dimension")
                end = text.index("/>", start) + 2
                data = (text[:start] + '<dimension ref="A1:B3"/>' + text[end:]).encode()
            zout.writestr(item, data)
    shutil.move(fixed, path)
    assert len(get_task("classification").read(str(path), task_cfg())) == 30


def test_tagging_rows_say_which_tags_are_missing(tmp_path):
    task = get_task("tagging")
    pos = tmp_path / "pos.jsonl"
    pos.write_text(json.dumps({"tokens": ["a", "b"], "pos_tags": ["DT", "NN"]}) + "\n")
    with pytest.raises(
        UserError,
        match=r"pos.jsonl: no column of tags .* columns found: tokens, pos_tags; set task.label_column",
    ):
        task.read(str(pos), task_cfg(type="tagging"), labelled=True)
    gap = tmp_path / "gap.jsonl"
    gap.write_text(
        json.dumps({"tokens": ["a"], "tags": ["O"]})
        + "\n"
        + json.dumps({"tokens": ["b"], "tags": None})
        + "\n"
    )
    with pytest.raises(
        UserError, match=r"gap.jsonl:2: this row has no tags \('tags' missing or null\)"
    ):
        task.read(str(gap), task_cfg(type="tagging"), labelled=True)
    # a file to predict: its tags are not read, so tags of another scheme do not stop it
    bioes = tmp_path / "bioes.jsonl"
    bioes.write_text(json.dumps({"tokens": ["Anna"], "tags": ["S-PER"]}) + "\n")
    assert task.read(str(bioes), task_cfg(type="tagging"), labelled=False)[0]["tags"] is None


def test_class_ids_outside_the_names_are_refused_and_minus_one_is_no_label(tmp_path):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ok = tmp_path / "ok.parquet"
    datasets.Dataset.from_list(
        [{"text": "a", "label": 1}, {"text": "b", "label": -1}], features=features
    ).to_parquet(str(ok))
    rows = get_task("classification").read(str(ok), task_cfg())
    assert [ex["label"] for ex in rows] == ["pos"]  # the -1 row has no label: skipped
    table = pq.read_table(ok)
    bad = tmp_path / "bad.parquet"
    pq.write_table(
        pa.table({"text": ["a", "b"], "label": [1, 5]}).replace_schema_metadata(
            table.schema.metadata
        ),
        bad,
    )
    with pytest.raises(
        UserError,
        match=r"bad.parquet:2: 'label' holds class id 5, but its ClassLabel names 2 \(neg, pos\)",
    ):
        get_task("classification").read(str(bad), task_cfg())


def test_a_dataset_saved_after_set_format_reads_plain_values(tmp_path):
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_list(
        [{"text": "a b", "label": 1}, {"text": "c", "label": 0}], features=features
    )
    ds.set_format("numpy")
    ds.save_to_disk(str(tmp_path / "np"))
    rows = get_task("classification").read(str(tmp_path / "np"), task_cfg())
    assert [(ex["text"], ex["label"]) for ex in rows] == [("a b", "pos"), ("c", "neg")]


def test_qa_rows_late_answers_and_a_json_array(tmp_path):
    rows = squad_rows()
    late = [
        dict(rows[2], id=f"u{i}", answers={"text": [], "answer_start": []}) for i in range(1001)
    ]
    path = tmp_path / "late.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [*late, rows[0]]))
    examples = get_task("qa").read(str(path), task_cfg(type="qa"))
    assert [ex["id"] for ex in examples] == ["q1"]  # 1,001 unanswerable rows come first
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows))
    assert [ex["id"] for ex in get_task("qa").read(str(array), task_cfg(type="qa"))] == [
        "q1",
        "q2",
        "q3",
    ]


def test_evaluate_and_predict_may_name_another_sheet():
    from encoderlab.tasks.reading import reading_config

    task = task_cfg(sheet="Data")
    assert reading_config(task, ["task.sheet=Sheet1"]).sheet == "Sheet1"


def test_tagging_rows_that_repeat_an_id_are_said(tmp_path):
    path = tmp_path / "ids.jsonl"
    rows = [
        {"id": "a", "tokens": ["x"], "tags": ["O"]},
        {"id": "a", "tokens": ["y"], "tags": ["O"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    examples = get_task("tagging").read(str(path), task_cfg(type="tagging"), labelled=True)
    assert any(
        "1 rows repeat an earlier row's id (first at row 2: id 'a', as at row 1)" in w
        for w in examples.warnings
    )


def test_a_folder_of_only_unlabelled_text_says_why_it_has_no_labels(tmp_path):
    (tmp_path / "train" / "unsup").mkdir(parents=True)
    (tmp_path / "train" / "unsup" / "1.txt").write_text("some review")
    with pytest.raises(
        UserError,
        match=r"no labels \(every file is at the top of the folder or in one of unlabelled text: unlabeled, unlabelled, unsup\)",
    ):
        get_task("classification").read(str(tmp_path / "train"), task_cfg(), labelled=True)


def test_xlsx_rows_with_blank_cells_at_their_end_read_as_empty(tmp_path):
    """Excel leaves a row's trailing blank cells out of the file."""
    sheet = [["text", "label"], ["no label yet", None]] + [[f"t{i}", i % 2] for i in range(12)]
    sheet += [[None, 1]]  # and a row without text
    path = write_xlsx(tmp_path / "blanks.xlsx", {"s": sheet})
    examples = get_task("classification").read(str(path), task_cfg())
    assert len(examples) == 12 and all(ex["label"] in ("0", "1") for ex in examples)
    assert any("skipped 1 rows without a gold label" in w for w in examples.warnings)


def test_xlsx_formulas_saved_without_their_values_are_refused_at_their_cell(tmp_path):
    """openpyxl (and pandas writing "=..." strings) saves formulas without values: read for
    values, the labels were empty, and the rows were skipped as unlabelled, unsaid."""
    sheet = [["text", "label"]] + [[f"review {i}", i % 2] for i in range(6)]
    sheet += [["a formula's label", "=B2"]]
    path = write_xlsx(tmp_path / "formulas.xlsx", {"s": sheet})
    with pytest.raises(
        UserError, match=r"formulas.xlsx: row 8, column 'label' holds the formula =B2"
    ):
        get_task("classification").read(str(path), task_cfg())
    # a workbook whose formulas were computed (Excel, LibreOffice) holds their values: another
    # formula's empty result ("" from an IF) reads as empty, and is no refusal
    import zipfile

    sheet[3] = ["an empty result", '=IF(B2=9,"x","")']
    two = write_xlsx(tmp_path / "two.xlsx", {"s": sheet})
    computed = tmp_path / "computed.xlsx"
    with zipfile.ZipFile(two) as src, zipfile.ZipFile(computed, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("sheet1.xml"):  # what Excel saves: the value beside it
                data = data.replace(b"<f>B2</f>", b"<f>B2</f><v>1</v>")
            dst.writestr(item, data)
    examples = get_task("classification").read(str(computed), task_cfg())
    assert examples[-1]["label"] == "1" and len(examples) == 6  # the empty-label row skipped
    # formulas in cells not read (a column without a header, a row of formulas only) are no
    # sign of a computed workbook
    helper = [[*row, "=1+1" if i else None] for i, row in enumerate(sheet[:3])]
    helper += [["=A2", "=B2"], ["text", "=B2"]]
    path = write_xlsx(tmp_path / "helper.xlsx", {"s": helper})
    with pytest.raises(UserError, match=r"helper.xlsx: row 5, column 'label' holds the formula"):
        get_task("classification").read(str(path), task_cfg())


def test_tagging_rows_to_predict_need_no_tags_column_even_when_one_is_named(tmp_path):
    path = tmp_path / "topredict.jsonl"
    path.write_text(json.dumps({"tokens": ["Anna", "sings"]}) + "\n")
    cfg = task_cfg(type="tagging", label_column="ner_tags")
    from encoderlab.tasks.base import read_to_predict

    assert read_to_predict(get_task("tagging"), str(path), cfg)[0]["tokens"] == ["Anna", "sings"]


def test_tagging_rows_prefer_word_and_tag_lists_over_a_text_or_label_column(tmp_path):
    path = tmp_path / "ud.jsonl"
    row = {"text": "John runs", "label": 1, "tokens": ["John", "runs"], "ner_tags": ["B-PER", "O"]}
    path.write_text(json.dumps(row) + "\n")
    (ex,) = get_task("tagging").read(str(path), task_cfg(type="tagging"), labelled=True)
    assert ex["tokens"] == ["John", "runs"] and ex["tags"] == ["B-PER", "O"]


def test_a_tagging_folder_of_conll_files_named_tsv_still_reads(tmp_path):
    folder = tmp_path / "bio"
    folder.mkdir()
    (folder / "train.tsv").write_text("Anna\tB-PER\nsings\tO\n\n")
    (folder / "devel.tsv").write_text("Tom\tB-PER\n\n")
    examples = get_task("tagging").read(str(folder), task_cfg(type="tagging"), labelled=True)
    assert sorted(ex["id"] for ex in examples) == ["devel/0", "train/0"]


def test_a_utf16_text_file_in_a_label_folder_is_text(tmp_path):
    (tmp_path / "spam" / "pos").mkdir(parents=True)
    (tmp_path / "spam" / "pos" / "a.txt").write_bytes("great film".encode("utf-16"))
    (tmp_path / "spam" / "neg").mkdir()
    (tmp_path / "spam" / "neg" / "b.txt").write_text("dull")
    examples = get_task("classification").read(str(tmp_path / "spam"), task_cfg())
    assert sorted(ex["text"] for ex in examples) == ["dull", "great film"]


def test_labels_that_look_like_label_lists_get_a_multilabel_hint(tmp_path):
    path = tmp_path / "ml.csv"
    path.write_text('text,label\na,"MISC,ORG"\nb,PER\nc,"LOC,PER"\n', encoding="utf-8")
    examples = get_task("classification").read(str(path), task_cfg())
    assert "2 labels hold a comma ('LOC,PER', 'MISC,ORG')" in examples.warnings[-1]
    assert "task.type multilabel" in examples.warnings[-1]


def test_fasttext_lines_read_as_labelled_rows(tmp_path):
    """fastText's supervised format (`__label__pos text`, Amazon/Yelp review dumps): a .txt
    whose first line starts with __label__ is read so (with a note), task.format: fasttext
    reads any name; several labels on a line are for multilabel."""
    path = tmp_path / "train.txt"
    path.write_text(
        "__label__pos a fine film\n__label__neg  dull\n\nno label here\n", encoding="utf-8"
    )
    examples = get_task("classification").read(str(path), task_cfg())
    assert [(ex["text"], ex["label"]) for ex in examples] == [
        ("a fine film", "pos"),
        ("dull", "neg"),
    ]
    assert "read as fasttext" in examples.notes[0]
    assert "skipped 1 rows without a gold label (first at line 4)" in examples.warnings[0]
    multi = tmp_path / "multi.ft"
    multi.write_text("__label__a __label__b both\n__label__b one\n", encoding="utf-8")
    with pytest.raises(UserError, match="multi.ft:1: this row has several labels"):
        get_task("classification").read(str(multi), task_cfg(format="fasttext"))
    got = get_task("multilabel").read(str(multi), task_cfg(type="multilabel", format="fasttext"))
    assert [ex["label"] for ex in got] == [("a", "b"), ("b",)]
