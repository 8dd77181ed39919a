"""Part-of-speech tagging (task.type pos): plain per-word tags from CoNLL columns, CoNLL-U and
rows; word accuracy and per-tag scores; a run end to end."""

import json
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from conftest import run_cli, shared
from encoderlab.config import FinetuneConfig, TaskConfig
from encoderlab.errors import UserError
from encoderlab.finetuning import finetune
from encoderlab.inference import scored
from encoderlab.tasks import get_task

CONLLU = """# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t_\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tGo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
2\t!\t!\tPUNCT\t.\t_\t1\tpunct\t_\t_
"""


def read(path: Path, **task) -> list[dict]:
    return get_task("pos").read(str(path), TaskConfig(type="pos", **task))


def test_conllu_reads_words_and_upos_or_xpos(tmp_path):
    path = tmp_path / "ud.conllu"  # the name says CoNLL-U
    path.write_text(CONLLU, encoding="utf-8")
    upos = read(path)
    assert [ex["tokens"] for ex in upos] == [["I", "do", "n't", "know", "."], ["Go", "!"]]
    assert [ex["id"] for ex in upos] == ["1", "2"]  # the file's `# sent_id`s
    partly = tmp_path / "partly.conllu"  # one sentence without an id: all by position
    partly.write_text(CONLLU.replace("# sent_id = 2\n", ""), encoding="utf-8")
    assert [ex["id"] for ex in read(partly)] == ["0", "1"]
    assert upos[0]["tags"] == ["PRON", "AUX", "PART", "VERB", "PUNCT"]  # ranges, empty nodes out
    assert read(path, tag_column=4)[0]["tags"] == ["PRP", "VBP", "RB", "VB", "."]
    untagged = tmp_path / "tokenized.conllu"  # UDPipe's tokenizer output: words, no tags
    untagged.write_text("1\tI\t_\t_\t_\n2\trun\t_\t_\t_\n", encoding="utf-8")
    task, cfg = get_task("pos"), TaskConfig(type="pos")
    assert task.read(str(untagged), cfg, labelled=False)[0]["tokens"] == ["I", "run"]
    with pytest.raises(UserError, match="tokenized.conllu:1: no word has a tag in column 3"):
        task.read(str(untagged), cfg, labelled=True)


@pytest.mark.parametrize(
    "text,task,expected",
    [
        ("1\tI\tI\tPRON\n2\trun\t_\t_\n", {}, r"x.conllu:2: word 'run' has no tag in column 3 \('_'\), but other words"),
        ("1\tNew\tYork\tcity\tPROPN\n2\tgo\tgo\tVERB\n", {}, "x.conllu:2: 4 tab-separated columns where CoNLL-U rows have 5"),
        ("1\t\t_\tDET\n", {}, r"x.conllu:1: no word in column 1 \(FORM\)"),
        ("1\tI\tI\tPRON\n", {"tag_column": 1}, "CoNLL-U's columns 0-2 are ID, FORM and LEMMA"),
        ("1\tI\tI\tNN P\n", {}, "tag 'NN P' is not a tag"),
    ],
)  # fmt: skip
def test_conllu_mistakes_are_one_line_errors(tmp_path, text, task, expected):
    path = tmp_path / "x.conllu"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=expected):
        read(path, **task)


def test_plain_sentences_of_equal_length_and_a_conllu_name_read_as_what_they_are(tmp_path):
    task = get_task("pos")
    run_cfg = TaskConfig(type="pos", format="conll")  # what a run trained on CoNLL records
    same = tmp_path / "same.txt"
    same.write_text("The cat\nA dog\nHe runs\n", encoding="utf-8")
    got = task.read(str(same), run_cfg, labelled=False)
    assert [ex["tokens"] for ex in got] == [["The", "cat"], ["A", "dog"], ["He", "runs"]]
    ud = tmp_path / "dev.conllu"
    ud.write_text(CONLLU, encoding="utf-8")
    assert task.read(str(ud), run_cfg)[1]["tokens"] == ["Go", "!"]  # not IDs as words
    conll_pos = TaskConfig(type="pos", format="conll", tag_column=1)  # CoNLL-2003's POS column
    assert task.read(str(ud), conll_pos)[1]["tags"] == ["VERB", "PUNCT"]  # UPOS, not column 1
    conllu_run = TaskConfig(type="pos", format="conllu")
    plain = tmp_path / "plain.txt"
    plain.write_text("I know\n", encoding="utf-8")
    assert task.read(str(plain), conllu_run, labelled=False)[0]["tokens"] == ["I", "know"]


def test_real_conll2003_pos_column_and_klue_dp():
    conll = read(shared("conll2003", "eng.testa"), tag_column=1, max_examples=2)
    assert conll[0]["tokens"][:3] == ["CRICKET", "-", "LEICESTERSHIRE"]
    assert conll[0]["tags"][:3] == ["NNP", ":", "NNP"]  # plain tags, no B-/I- check
    dp = read(shared("klue", "klue-dp-v1.1_dev.tsv"), format="conllu", max_examples=1)
    assert dp[0]["tokens"][0] == "'K팝스타3’" and dp[0]["tags"][0] == "SS+SL+NNP+SN+SS"


def test_rows_read_pos_tags_and_scheme_settings_are_checked(tmp_path):
    rows = tmp_path / "pos.jsonl"
    rows.write_text(json.dumps({"tokens": ["a", "dog"], "pos_tags": ["DT", "NN"]}) + "\n")
    assert read(rows)[0]["tags"] == ["DT", "NN"]
    for bad in (None, "", ["NN"], "NN P"):
        rows.write_text(json.dumps({"tokens": ["a", "dog"], "pos_tags": ["DT", bad]}) + "\n")
        with pytest.raises(UserError, match=r"pos.jsonl:1 \(word 2\)"):
            read(rows)
    ner = read(shared("conll2003", "eng.testa"), max_examples=50)  # the last column: NER
    assert "look like entity chunks" in ner.warnings[-1] and "task.tag_column" in ner.warnings[-1]
    assert TaskConfig(type="pos").tag_scheme == "plain"
    with pytest.raises(ValidationError, match="pos reads its tags as they are"):
        TaskConfig(type="pos", tag_scheme="bio")
    with pytest.raises(ValidationError, match="that is task.type pos"):
        TaskConfig(type="tagging", tag_scheme="plain")
    klue = tmp_path / "k.tsv"
    klue.write_text("## 1\t<서울:LC>\n서\tB-LC\n울\tI-LC\n", encoding="utf-8")
    with pytest.raises(UserError, match="whose markup is entities"):
        read(klue, format="klue-ner")


def test_word_accuracy_per_tag_scores_and_what_learned_nothing_looks_like():
    task = get_task("pos")
    examples = [{"tags": ["DT", "NN", "VB"]}, {"tags": ["NN", "NN"]}]
    preds = [["DT", "NN", "NN"], ["NN", "_"]]  # "_": a word cut by max_len
    m = task.metrics(preds, examples, TaskConfig(type="pos"), ["DT", "NN", "VB"])
    assert m["acc"] == pytest.approx(3 / 5)
    nn = m["extra"]["per_class"]["NN"]  # 2 right of 3 predicted NN, of 3 gold NN
    assert nn["precision"] == pytest.approx(2 / 3) and nn["recall"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    rows = [{"gold": "DT NN VB NN", "prediction": "NN NN NN NN"}] * 3
    assert task.one_answer(rows) == "tags every word 'NN' (12 words; 50% of them are 'NN')"
    assert task.baseline(rows).startswith(
        "always answering 'NN', the most common tag, scores accuracy 0.500"
    )


def test_pos_learns_end_to_end_and_answers_without_entities(tmp_path, capsys):
    rng = random.Random(0)
    nouns, verbs = ["dog", "cat", "river", "city"], ["runs", "sleeps", "flows", "grows"]
    lines = []
    for _ in range(300):
        words = [("the", "DT"), (rng.choice(nouns), "NN"), (rng.choice(verbs), "VB")]
        if rng.random() < 0.5:
            words.insert(1, (rng.choice(["big", "old", "red"]), "JJ"))
        lines += [f"{w} {t}" for w, t in words] + [""]
    data = tmp_path / "train.conll"
    data.write_text("\n".join(lines), encoding="utf-8")
    cfg = FinetuneConfig.model_validate(
        {
            "runs_dir": str(tmp_path / "runs"),
            "task": {"type": "pos", "train": str(data), "max_len": 16},
            "tokenizer": {"kind": "wordpiece", "vocab_size": 80},
            "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 16},
            "train": {"batch_size": 16, "lr": 3e-3, "epochs": 4, "warmup_steps": 0},
        }
    )
    run, _ = finetune(cfg, say=lambda m: None)
    assert run.info["final"]["acc"] > 0.95, run.info["final"]
    row = json.loads((run.path / "predictions" / "valid.jsonl").read_text().splitlines()[0])
    assert "n_gold_entities" not in row
    assert run_cli("predict", run.path, "--text", "the old cat sleeps") == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "the/DT old/JJ cat/NN sleeps/VB"
    # words to tag as CoNLL-U (UDPipe's tokenizer output), predictions out as CoNLL and CoNLL-U
    words = tmp_path / "new.conllu"
    words.write_text(
        "# sent_id = a\n1\tthe\t_\t_\t_\t_\t_\t_\t_\t_\n2\tdog\t_\t_\t_\t_\t_\t_\t_\t_\n\n"
    )
    conll, conllu = tmp_path / "out.conll", tmp_path / "out.conllu"
    assert run_cli("predict", run.path, "--input", words, "--output", conll) == 0
    assert conll.read_text() == "the DT\ndog NN\n\n"
    assert run_cli("predict", run.path, "--input", words, "--output", conllu) == 0
    got = conllu.read_text().splitlines()
    assert got[0] == "# sent_id = a"  # the input's own sentence id
    # Penn Treebank tags are not UD's seventeen: they go to XPOS (column 5), UPOS stays _
    assert got[1:] == ["1\tthe\t_\t_\tDT\t_\t_\t_\t_\t_", "2\tdog\t_\t_\tNN\t_\t_\t_\t_\t_", ""]
    assert get_task("pos").read(str(conllu), TaskConfig(type="pos", tag_column=4))[0]["tags"] == [
        "DT",
        "NN",
    ]
    # CoNLL-U's FORM may hold a space (UD v2: Vietnamese "Hà Nội"), CoNLL's words may not; an
    # id over two lines stays on the # sent_id line; a row with no words is skipped and said
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"id": "a\\nb", "tokens": ["the", "Hà Nội"]}\n{"id": "c", "tokens": []}\n',
        encoding="utf-8",
    )
    assert run_cli("predict", run.path, "--input", rows, "--set", "task.id_column=id",
                   "--output", conllu) == 0  # fmt: skip
    assert "skipped 1 rows with no words, an empty list" in capsys.readouterr().err
    got = conllu.read_text(encoding="utf-8").splitlines()
    assert got[0] == "# sent_id = a b" and got[2].split("\t")[1] == "Hà Nội"
    assert run_cli("predict", run.path, "--input", rows, "--output", conll) == 2
    answer = scored(["DT", "INTJ"], {"tokens": ["the", "oh"]}, ["DT", "INTJ"])
    assert answer["label"] == "DT INTJ" and answer["entities"] == []  # INTJ is no I- tag


def test_model_show_counts_what_a_run_from_scratch_builds(tmp_path, capsys):
    """A token task from scratch gets ALiBi positions unless the config says (the defaults
    table): `model show` shows that model, not the schema's learned position table."""
    import re

    cfg = tmp_path / "pos.yaml"
    data = tmp_path / "t.conll"
    data.write_text("the DT\ndog NN\n\na DT\ncat NN\n", encoding="utf-8")
    cfg.write_text(
        f"task: {{type: pos, train: {data}, max_len: 32}}\nmodel: {{d_model: 32, n_head: 2, d_ff: 64, n_layer: 1, max_len: 64}}\n"
    )

    def total(*extra: str) -> int:
        assert run_cli("model", "show", cfg, *extra) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if "Total params" in x)
        return int(re.search(r"([\d,]+)", line.split("│")[4]).group(1).replace(",", ""))

    assert total("--set", "model.position=learned") - total() == 64 * 32  # the position table
