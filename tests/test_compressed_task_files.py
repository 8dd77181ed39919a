"""Task data compressed as .gz / .bz2 / .xz (what Kaggle and the Hub hand out: train.csv.gz,
dev.jsonl.bz2): read as the file inside, by the name without the compression suffix, and a
truncated or mislabelled archive is a one-line error naming the file."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import pytest

from conftest import run_cli
from encoderlab.config import TaskConfig
from encoderlab.data.tables import plain_name, read_rows
from encoderlab.errors import UserError
from encoderlab.tasks import get_task
from test_task_pos import CONLLU
from test_task_qa import squad_json
from test_task_tagging import CONLL_IOB1

OPENERS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


def packed(path: Path, text: str, suffix: str) -> Path:
    out = path.with_name(path.name + suffix)
    out.write_bytes(OPENERS[suffix](text.encode("utf-8")))
    return out


def test_plain_name_drops_only_a_compression_suffix():
    assert plain_name("data/Train.CSV.gz") == "train.csv"
    assert plain_name("a.jsonl.zst") == "a.jsonl"
    assert plain_name("a.tar") == "a.tar"
    assert plain_name("a.csv") == "a.csv"


TABLES = {
    "a.csv": 'id,text,label\n1,"good, really",pos\n2,bad,neg\n',
    "a.tsv": "id\ttext\tlabel\n1\tgood, really\tpos\n2\tbad\tneg\n",
    "a.jsonl": '{"id": "1", "text": "good, really", "label": "pos"}\n'
    '{"id": "2", "text": "bad", "label": "neg"}\n',
    "a.json": '[{"id": "1", "text": "good, really", "label": "pos"},'
    ' {"id": "2", "text": "bad", "label": "neg"}]',
}


@pytest.mark.parametrize("suffix", list(OPENERS))
@pytest.mark.parametrize("name", list(TABLES))
def test_compressed_tables_read_as_the_file_inside(tmp_path, name, suffix):
    plain = tmp_path / name
    plain.write_text(TABLES[name], encoding="utf-8")
    f = packed(plain, TABLES[name], suffix)
    assert read_rows(f) == read_rows(plain)
    examples = get_task("classification").read(str(f), TaskConfig())
    assert [(e["text"], e["label"]) for e in examples] == [("good, really", "pos"), ("bad", "neg")]


def test_compressed_txt_is_still_sniffed_for_fasttext_and_tsv(tmp_path):
    ft = packed(tmp_path / "train.txt", "__label__pos great film\n__label__neg dull\n", ".gz")
    got = get_task("classification").read(str(ft), TaskConfig())
    assert [(e["text"], e["label"]) for e in got] == [("great film", "pos"), ("dull", "neg")]
    tsv = packed(tmp_path / "ratings.txt", "id\tdocument\tlabel\n1\t좋다\t1\n2\t별로\t0\n", ".bz2")
    got = get_task("classification").read(str(tsv), TaskConfig(text_column="document"))
    assert [(e["text"], e["label"]) for e in got] == [("좋다", "1"), ("별로", "0")]


def test_compressed_conll_conllu_and_squad(tmp_path):
    conll = packed(tmp_path / "eng.train", CONLL_IOB1, ".gz")
    tags = get_task("tagging").read(str(conll), TaskConfig(type="tagging"))
    assert tags[0]["tags"] == ["B-ORG", "O", "B-MISC", "O", "O"]
    # .conllu.gz is CoNLL-U by its name, as .conllu is
    ud = packed(tmp_path / "ud.conllu", CONLLU, ".xz")
    pos = get_task("pos").read(str(ud), TaskConfig(type="pos"))
    assert pos[0]["tags"] == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    squad = squad_json(
        [("T", [("Paris is in France.", [("Where is Paris?", [("France", None)])])])]
    )
    qa = packed(tmp_path / "dev.json", json.dumps(squad), ".gz")
    (ex,) = get_task("qa").read(str(qa), TaskConfig(type="qa"))
    assert ex["answers"][0]["text"] == "France"


MANY_ROWS = "".join(f"review {i * 7919 % 10007} of {i},{i % 2}\n" for i in range(5000)).encode()
MANY_JSON = "".join(f'{{"text": "t{i * 7919 % 10007}", "label": "1"}}\n' for i in range(5000))
MANY_JSON = MANY_JSON.encode()


@pytest.mark.parametrize(
    "name, body, expected",
    [
        # cut short: the rows before the cut are not silently taken as the whole file
        ("cut.csv.gz", gzip.compress(b"text,label\n" + MANY_ROWS)[:3000], "truncated"),
        ("plain.csv.gz", b"text,label\nhi,1\n", "not really .gz compressed"),
        ("cut.jsonl.bz2", bz2.compress(MANY_JSON)[:3000], "truncated"),
        ("cut.conll.xz", lzma.compress(CONLL_IOB1.encode() * 50)[:200], "cannot read the file"),
        ("x.parquet.gz", gzip.compress(b"PAR1"), "compressed .parquet file"),
    ],
)
def test_a_broken_archive_is_one_line_naming_the_file(tmp_path, name, body, expected):
    f = tmp_path / name
    f.write_bytes(body)
    kind = "tagging" if ".conll" in name else "classification"
    with pytest.raises(UserError) as e:
        get_task(kind).read(str(f), TaskConfig(type=kind))
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg and expected in msg


def test_finetune_and_predict_on_gzipped_csv(tmp_path):
    rows = "".join(f"{i},{w} film,{w}\n" for i, w in enumerate(["good", "bad"] * 40))
    train = packed(tmp_path / "train.csv", "id,text,label\n" + rows, ".gz")
    test = packed(tmp_path / "test.csv", "id,text\n900,good film\n901,bad film\n", ".gz")
    config = tmp_path / "ft.yaml"
    config.write_text(
        f"task: {{train: {train}, test: {test}, id_column: id}}\n"
        f"runs_dir: {tmp_path / 'runs'}\n"
        "train: {max_steps: 3}\n"
        "model: {d_model: 32, n_layer: 1, n_head: 2, d_ff: 64}\n"
        "tokenizer: {vocab_size: 200}\n",
        encoding="utf-8",
    )
    code = run_cli("finetune", config)
    assert code == 0
    (run,) = (tmp_path / "runs").iterdir()
    ids = [ln.split(",")[0] for ln in (run / "submission.csv").read_text().splitlines()[1:]]
    assert ids == ["900", "901"]
    assert run_cli("predict", run, "--input", test, "--output", tmp_path / "p.csv") == 0
    assert [ln.split(",")[0] for ln in (tmp_path / "p.csv").read_text().splitlines()[1:]] == [
        "900",
        "901",
    ]


def test_a_tar_archive_is_refused_not_read_as_text(tmp_path):
    import tarfile

    inner = tmp_path / "words.txt"
    inner.write_text("John\nlives\n\nMary\n")
    for name in ("words.tar.gz", "words.tgz", "words.tar"):
        archive = tmp_path / name
        with tarfile.open(archive, "w:gz" if "gz" in name else "w") as tar:
            tar.add(inner, arcname="words.txt")
        for kind, fmt in (("tagging", "conll"), ("classification", "csv"), ("pair", "auto")):
            # format auto: the name told no format, and the error asked for task.format, whose
            # answer only led to this one
            with pytest.raises(UserError) as e:
                get_task(kind).read(str(archive), TaskConfig(type=kind, format=fmt))
            assert str(e.value).startswith(f"{archive}: a tar archive") and "tar xf" in str(e.value)
    # a binary file that is no archive: its NUL bytes are refused where the lines are read
    blob = tmp_path / "blob.conll"
    blob.write_bytes(b"John B-PER\n\x00\x00\x00 O\n")
    with pytest.raises(UserError, match=r"blob.conll:2: NUL bytes: a binary file, not text"):
        get_task("tagging").read(str(blob), TaskConfig(type="tagging"))
