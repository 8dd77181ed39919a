"""Audit of tagging windows, --print-config, live run status and tokens/s (session 20)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from conftest import WORDS, run_cli
from encoderlab.config import FinetuneConfig, load_config
from encoderlab.finetuning import DEFAULTS, finetune

TAGS = ("O", "B-PER", "I-PER", "B-LOC")


def _conll(path: Path, n: int, seed: int, lo: int = 3, hi: int = 12) -> Path:
    rng = random.Random(seed)
    blocks = []
    for _ in range(n):
        k = rng.randint(lo, hi)
        blocks.append("\n".join(f"{rng.choice(WORDS)} {rng.choice(TAGS)}" for _ in range(k)))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def _tagging_cfg(tmp_path: Path, **task) -> dict:
    return {
        "name": "ner",
        "runs_dir": str(tmp_path / "runs"),
        "task": {
            "type": "tagging",
            "train": str(_conll(tmp_path / "train.conll", 40, 0)),
            "format": "conll",
            "max_len": 10,
            **task,
        },
        "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 32},
        "train": {"batch_size": 16, "epochs": 1, "threads": 1},
    }


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory) -> Path:
    """A tiny finished tagging run (task.truncation: head, max_len 10)."""
    tmp = tmp_path_factory.mktemp("ner")
    run, _ = finetune(FinetuneConfig.model_validate(_tagging_cfg(tmp)), say=lambda m: None)
    return run.path


def _with_saved_truncation(run: Path, tmp_path: Path, task_type: str, value: str) -> Path:
    """A copy of `run` whose config.yaml says what a run made before the refusal saved."""
    import shutil

    copy = tmp_path / "old-run"
    shutil.copytree(run, copy)
    saved = yaml.safe_load((copy / "config.yaml").read_text(encoding="utf-8"))
    saved["task"]["truncation"] = value
    if task_type != "tagging":
        saved["task"]["type"] = task_type
    (copy / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")
    (copy / "run.lock").unlink(missing_ok=True)
    return copy


def test_run_saved_with_tagging_head_tail_still_predicts(ner_run, tmp_path, capsys):
    """head_tail on tagging was a silent no-op (read as head) before it was refused: a run
    made then must still predict, evaluate and resume as it trained (head)."""
    old = _with_saved_truncation(ner_run, tmp_path, "tagging", "head_tail")
    capsys.readouterr()
    assert run_cli("predict", old, "--text", "the river city") == 0, capsys.readouterr().err
    cfg = load_config(old / "config.yaml", schema=FinetuneConfig)
    assert cfg.task.truncation == "head"  # what it read with
    # a new config (not a run's) is still refused
    fresh = tmp_path / "new.yaml"
    fresh.write_text(yaml.safe_dump(_tagging_cfg(tmp_path, truncation="head_tail")))
    assert run_cli("finetune", fresh) != 0
    assert "head_tail is for classification" in capsys.readouterr().err


def test_run_saved_with_qa_windows_still_loads(ner_run, tmp_path):
    old = _with_saved_truncation(ner_run, tmp_path, "qa", "windows")
    cfg = load_config(old / "config.yaml", schema=FinetuneConfig)
    assert cfg.task.truncation == "head"


def test_predict_input_honours_set_truncation(ner_run, tmp_path, capsys):
    """`predict --input FILE --set task.truncation=windows` is accepted as a reading option;
    it was ignored (the run's head truncation encoded the file), as evaluate did not."""
    data = _conll(tmp_path / "long.conll", 3, 1, lo=20, hi=25)
    out = tmp_path / "p.jsonl"
    capsys.readouterr()
    code = run_cli(
        "predict", ner_run, "--input", data, "--output", out, "--set", "task.truncation=windows"
    )
    said = capsys.readouterr()
    text = said.out + said.err
    assert code == 0, text
    assert "overlapping windows" in text and "cut" not in text, text


def test_predict_input_rows_say_how_many_words_were_cut(ner_run, tmp_path):
    """CLI `predict --input` rows carry truncated_words as API and served rows do: a reader
    of the file sees which sentences were predicted from their start alone."""
    import json

    data = _conll(tmp_path / "mixed.conll", 6, 2, lo=3, hi=25)
    out = tmp_path / "p.jsonl"
    assert run_cli("predict", ner_run, "--input", data, "--output", out) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    sizes = [len(b.splitlines()) for b in data.read_text(encoding="utf-8").strip().split("\n\n")]
    assert len(rows) == len(sizes)
    assert all("truncated_words" in r for r in rows)
    assert any(r["truncated_words"] > 0 for r in rows)
    assert any(r["truncated_words"] == 0 for r in rows)


def test_print_config_of_self_pretrain_runs_as_the_config_does(tmp_path, capsys):
    """--print-config on a self_pretrain config: the saved output gives the run the config
    gives (the lr for an encoder pretrained here; the budget recipe's pre-LN, no dropout)."""
    from encoderlab.selfpretrain import pretrain_config

    raw = _tagging_cfg(tmp_path)
    raw["self_pretrain"] = {"steps": 2}
    given = tmp_path / "sp.yaml"
    given.write_text(yaml.safe_dump(raw), encoding="utf-8")
    capsys.readouterr()
    assert run_cli("finetune", given, "--print-config") == 0
    printed = tmp_path / "printed.yaml"
    printed.write_text(capsys.readouterr().out, encoding="utf-8")
    cfg = load_config(given, schema=FinetuneConfig)
    again = load_config(printed, schema=FinetuneConfig)
    assert again.train.lr == DEFAULTS["own"]["tagging"]["lr"]  # what the run itself picks
    files = ["corpus.txt"]
    assert pretrain_config(again, files) == pretrain_config(cfg, files)


def test_a_status_probe_does_not_refuse_the_runs_writer(ner_run, tmp_path):
    """`runs list` asks a running run's lock with a shared flock for an instant
    (`_lock_held`); a writer taking the lock in that instant (a --resume of a killed run) was
    refused as "in use by another encoderlab process"."""
    import fcntl
    import os
    import shutil
    import threading

    from encoderlab.runs import LOCK_FILE, release_lock, take_lock

    run = tmp_path / "run"
    shutil.copytree(ner_run, run)
    fd = os.open(run / LOCK_FILE, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the probe, caught in its instant
    done = threading.Timer(0.02, lambda: os.close(fd))
    done.start()
    try:
        take_lock(run)
    finally:
        done.join()
    release_lock(run)


def test_export_of_an_old_head_tail_tagging_run_does_not_warn_of_a_truncation_it_never_used(
    ner_run, tmp_path
):
    """Its config.yaml says head_tail, a no-op for tagging then: the run read as head, so an
    export's "predictions differ for long texts" warning would be false."""
    from encoderlab.hf import _say_truncation
    from encoderlab.runs import Run

    old = _with_saved_truncation(ner_run, tmp_path, "tagging", "head_tail")
    out = tmp_path / "export"
    out.mkdir()
    said: list[str] = []
    _say_truncation(Run(old), out, 10, said.append)
    assert said == [] and not (out / "README.md").exists()
