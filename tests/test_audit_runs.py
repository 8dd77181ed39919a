"""Run directories as portable artefacts (moved, read-only, shared) and predict's output files."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_cli as cli
from encoderlab.config import Config
from encoderlab.errors import UserError
from encoderlab.runs import LOCK_FILE, Run, wait_for_writer
from test_finetune import base_cfg, sentiment_rows, write_csv


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("audit_ft")
    cfg = base_cfg(tmp, train={"epochs": None, "max_steps": 4, "threads": 1})
    cfg["model"]["n_layer"] = 1
    cfg["task"]["id_column"] = "id"
    f = tmp / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert cli("finetune", f) == 0
    (run_dir,) = (tmp / "runs").iterdir()
    return run_dir


@pytest.fixture
def unlabelled(tmp_path) -> Path:
    return write_csv(tmp_path / "in.csv", sentiment_rows(12, 3), ["id", "text"])


def test_checkpoint_weights_are_as_readable_as_the_rest_of_the_run(tmp_path):
    """safetensors writes its files 0600: a run shared with a group or served by another
    account had readable config and tokenizer but unreadable weights."""
    old = os.umask(0o022)
    try:
        run = Run.create(tmp_path / "runs", "perm", Config(), "pretrain")
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.AdamW(model.parameters())
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        ckpt = run.save_checkpoint(model, opt, {"step": 1})
        best = run.checkpoint_dir / run.save_best(model, {"step": 1, "metric": "m", "value": 1})
        run.close()
    finally:
        os.umask(old)
    for f in (
        ckpt / "model.safetensors",
        ckpt / "optimizer.safetensors",
        best / "model.safetensors",
    ):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, (f, oct(f.stat().st_mode))
    assert stat.S_IMODE((run.path / "run.json").stat().st_mode) == 0o644


@pytest.mark.parametrize("name", ["sub.tsv", "sub.TSV", "sub.CSV"])
def test_predict_writes_the_table_its_output_name_asks_for(finetuned, unlabelled, tmp_path, name):
    """.tsv and .CSV used to get JSON lines under a table's name."""
    out = tmp_path / name
    assert cli("predict", finetuned, "--input", unlabelled, "--output", out) == 0
    sep = "\t" if name.lower().endswith(".tsv") else ","
    lines = out.read_text().splitlines()
    assert lines[0] == f"id{sep}target", lines[0]
    assert [ln.split(sep)[0] for ln in lines[1:]] == [str(r["id"]) for r in sentiment_rows(12, 3)]


@pytest.mark.parametrize("name", ["sub.csv.gz", "sub.json", "sub.parquet"])
def test_predict_refuses_an_output_format_it_does_not_write(
    finetuned, unlabelled, tmp_path, capsys, name
):
    out = tmp_path / name
    capsys.readouterr()
    assert cli("predict", finetuned, "--input", unlabelled, "--output", out) == 2
    err = one_line_error(capsys)
    assert name in err and ".jsonl" in err, err
    assert not out.exists()


def test_a_moved_run_without_its_training_data_predicts_and_evaluates(
    finetuned, unlabelled, tmp_path, capsys
):
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(finetuned, moved)
    train = Path(yaml.safe_load((moved / "config.yaml").read_text())["task"]["train"])
    hidden = train.with_name("hidden.csv")
    train.rename(hidden)
    try:
        out = tmp_path / "p.jsonl"
        assert cli("predict", moved, "--input", unlabelled, "--output", out) == 0
        assert len(out.read_text().splitlines()) == 12
        assert cli("evaluate", moved, "--data", hidden) == 0
        assert (moved / "eval" / "file-hidden.json").is_file()
        assert not (finetuned / "eval" / "file-hidden.json").exists()  # the copy, not the original
    finally:
        hidden.rename(train)


def test_evaluate_on_a_read_only_run_is_one_line_before_the_model_runs(
    finetuned, tmp_path, capsys, monkeypatch
):
    data = write_csv(tmp_path / "l.csv", sentiment_rows(10, 4), ["id", "text", "target"])
    real = os.access
    ro = finetuned.resolve()

    def access(path, mode, *a, **k):  # a read-only run, even for root
        p = Path(path).resolve()
        if mode & os.W_OK and (p == ro or ro in p.parents):
            return False
        return real(path, mode, *a, **k)

    monkeypatch.setattr(os, "access", access)
    before = sorted(p.name for p in (finetuned / "eval").iterdir())
    capsys.readouterr()
    assert cli("evaluate", finetuned, "--data", data) == 2
    err = one_line_error(capsys)
    assert "read-only" in err and "predict" in err, err
    assert sorted(p.name for p in (finetuned / "eval").iterdir()) == before


def test_writing_to_a_read_only_run_is_one_line(tmp_path, monkeypatch):
    run = Run.create(tmp_path / "runs", "ro", Config(), "pretrain")
    run.close()
    real_open = os.open

    def no_write(path, flags, *a, **k):
        if Path(path).name == LOCK_FILE:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", no_write)
    with pytest.raises(UserError, match="read-only here") as e:
        Run(run.path).update(status="x")
    assert "\n" not in str(e.value) and "copy the run" in str(e.value)
    assert wait_for_writer(run.path, 0.0) is False  # nothing to wait for, no error
    assert json.loads((run.path / "run.json").read_text())["status"] == "created"


def test_predict_to_a_folder_it_cannot_write_is_one_line_before_the_model_loads(
    finetuned, unlabelled, tmp_path, capsys, monkeypatch
):
    import encoderlab.inference as inference

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m, *a, **k: False if Path(p) == locked else real(p, m, *a, **k)
    )

    def never(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(inference, "load_finetuned", never)
    capsys.readouterr()
    out = locked / "sub" / "p.csv"
    assert cli("predict", finetuned, "--input", unlabelled, "--output", out) == 2
    err = one_line_error(capsys)
    assert "--output" in err and "cannot write" in err, err
    assert not (locked / "sub").exists()


def test_predict_reads_every_row_whatever_cap_and_filter_the_run_trained_with(tmp_path, capsys):
    """task.max_examples and task.where chose the run's training rows; predict applied them to
    --input too (100 of 150 rows in a submission, a test file without the filter's column
    refused), and evaluate capped its file. A --set for the file still applies."""
    rows = sentiment_rows(120, 0)
    for i, r in enumerate(rows):
        r["lang"] = "de" if i % 4 == 0 else "en"
    train = write_csv(tmp_path / "langs.csv", rows, ["id", "text", "target", "lang"])
    cfg = base_cfg(tmp_path, train={"epochs": None, "max_steps": 2, "threads": 1})
    cfg["model"]["n_layer"] = 1
    cfg["task"] |= {"train": str(train), "id_column": "id", "max_examples": 40}
    cfg["task"]["where"] = ["lang != de"]
    test = write_csv(tmp_path / "test.csv", sentiment_rows(50, 5), ["id", "text"])  # no lang
    cfg["task"]["test"] = str(test)
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert cli("finetune", f) == 0
    (run,) = (tmp_path / "runs").iterdir()
    assert len((run / "submission.csv").read_text().splitlines()) == 1 + 50  # the run's own
    assert cli("predict", run, "--input", test, "--output", tmp_path / "sub.csv") == 0
    sub = (tmp_path / "sub.csv").read_text().splitlines()
    assert len(sub) == 1 + 50 and sub[1].startswith("5-0,")
    out = tmp_path / "five.csv"
    assert (
        cli("predict", run, "--input", test, "--output", out, "--set", "task.max_examples=5") == 0
    )
    assert len(out.read_text().splitlines()) == 1 + 5
    labelled = write_csv(tmp_path / "dev.csv", rows[:80], ["id", "text", "target", "lang"])
    capsys.readouterr()
    assert cli("evaluate", run, "--data", labelled) == 0
    (pred,) = (run / "predictions").glob("*dev.jsonl")
    assert len(pred.read_text().splitlines()) == 60  # the 80 rows but the 20 in German


def test_a_submission_is_written_whole_or_not_at_all(tmp_path):
    """write_submission truncated the file first: a failure (or a kill) mid-table left half a
    submission where the earlier one was."""
    from encoderlab.inference import write_submission

    out = tmp_path / "sub.csv"
    out.write_text("id,target\n1,0\n")

    class Unwritable:
        def __str__(self) -> str:
            raise OSError("no space left on device")

    with pytest.raises(OSError):
        write_submission(out, [["id", "target"], [2, 1], [3, Unwritable()]])
    assert out.read_text() == "id,target\n1,0\n" and [p.name for p in tmp_path.iterdir()] == [
        "sub.csv"
    ]
    write_submission(out, [["id", "target"], [2, 1]])
    assert out.read_bytes() == b"id,target\r\n2,1\r\n"


def test_prediction_rows_name_the_file_line_each_was_read_from(finetuned, tmp_path):
    """Ids number the rows read, so a skipped row (empty text) shifted every later id away
    from its row of the file; each row now says its line (a quoted newline counts)."""
    import csv

    rows = [["id", "text", "target"], [7, "a good film", 1], [8, "", 0], [9, "a bad film", 0]]
    rows += [[10, 'two\nlines "quoted"', 1], [11, "fine", 1]]
    dev = tmp_path / "dev.csv"
    with open(dev, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    assert cli("evaluate", finetuned, "--data", dev, "--set", "task.id_column=null") == 0
    (pred,) = sorted((finetuned / "predictions").glob("*dev*.jsonl"), key=os.path.getmtime)[-1:]
    got = [json.loads(line) for line in pred.read_text().splitlines()]
    assert [(r["id"], r["line"], r["input"]) for r in got] == [
        ("0", 2, "a good film"),
        ("1", 4, "a bad film"),
        ("2", 5, 'two\nlines "quoted"'),
        ("3", 7, "fine"),
    ]
