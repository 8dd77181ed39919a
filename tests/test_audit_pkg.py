"""The package as a user installs it: build metadata, and the one-line refusals of a missing
optional package (an extra not installed), each before anything is written."""

import csv
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_cli as cli
from conftest import synthetic_lines
from encoderlab.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_build_backend_reads_the_license_field():
    """`license = "Apache-2.0"` (an SPDX string, PEP 639) is read by setuptools 77 and later;
    older ones stop the build ("project.license must be valid exactly by one definition"), so
    build-system.requires must not admit them."""
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    if not isinstance(meta["project"].get("license"), str):
        return
    reqs = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert reqs, "setuptools is the build backend"
    floor = re.search(r">=\s*(\d+)", reqs[0])
    assert floor and int(floor.group(1)) >= 77, reqs[0]


def test_serve_without_uvicorn_is_the_install_hint(monkeypatch, tmp_path):
    """starlette there (it comes with fastapi, mlflow, ...) but uvicorn not: the same one line
    as without the extra, not a ModuleNotFoundError traceback."""
    from encoderlab import serve

    if serve.Starlette is None:
        pytest.skip("starlette not installed")
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(UserError, match=re.escape("pip install 'encoderlab[serve]'")):
        serve.serve(tmp_path / "run")


def test_export_to_hf_and_onnx_without_onnx_writes_nothing(monkeypatch, tmp_path, capsys):
    """--to-hf OUT --to-onnx M with onnx missing: refused before the transformers checkpoint
    is written (not OUT written, then the error)."""
    called: list[Path] = []

    def fake_export_run(run, out, say=print):
        called.append(out)
        Path(out).mkdir(parents=True)

    monkeypatch.setattr("encoderlab.hf.export_run", fake_export_run)
    monkeypatch.setitem(sys.modules, "onnx", None)
    out = tmp_path / "hf"
    code = cli("export", tmp_path / "run", "--to-hf", out, "--to-onnx", tmp_path / "m.onnx")
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "pip install 'encoderlab[onnx]'" in err and len(err.splitlines()) == 1
    assert not called and not out.exists()


def _pretrain_config(tmp_path: Path, loggers: list[str]) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(200)) + "\n", encoding="utf-8")
    cfg = {
        "name": "tiny",
        "runs_dir": str(tmp_path / "runs"),
        "tokenizer": {"kind": "wordpiece", "vocab_size": 200},
        "data": {"corpus": [str(corpus)], "cache_dir": str(tmp_path / "cache"), "block_len": 32},
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
        "train": {"max_steps": 2, "epochs": None, "loggers": loggers},
    }
    f = tmp_path / "pretrain.yaml"
    f.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return f


def _finetune_config(tmp_path: Path, loggers: list[str]) -> Path:
    train = tmp_path / "train.csv"
    with train.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i, line in enumerate(synthetic_lines(60)):
            w.writerow([line, i % 2])
    cfg = {
        "name": "tiny-ft",
        "runs_dir": str(tmp_path / "runs"),
        "task": {"type": "classification", "train": str(train), "valid_ratio": 0.2, "max_len": 32},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 200},
        "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
        "train": {"max_steps": 2, "epochs": None, "loggers": loggers},
    }
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return f


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_missing_tracker_is_refused_before_tokenizer_and_data(
    command, tracker, monkeypatch, tmp_path, capsys
):
    """train.loggers naming a tracker that is not installed: one line naming the extra, exit
    2, before a tokenizer is trained or a token cache written (it used to be caught only when
    the run folder was made, after all of that)."""
    monkeypatch.setitem(sys.modules, tracker, None)  # importlib.util.find_spec: None
    monkeypatch.chdir(tmp_path)
    make = _pretrain_config if command == "pretrain" else _finetune_config
    code = cli(command, make(tmp_path, ["tensorboard", tracker]))
    out, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: train.loggers: {tracker} is not installed; pip install 'encoderlab[track]' "
        f"(or {tracker}), or remove {tracker} from train.loggers"
    ]
    assert "tokenizer" not in out, out
    assert not (tmp_path / "cache").exists() and not (tmp_path / ".cache").exists()
    assert not (tmp_path / "runs").exists()


def test_extras_named_in_hints_exist():
    """Every `pip install 'encoderlab[X]'` the package prints names an extra pyproject has."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    named = set()
    for f in (ROOT / "src" / "encoderlab").rglob("*.py"):
        named |= set(re.findall(r"encoderlab\[(\w+)\]", f.read_text(encoding="utf-8")))
    assert named, "the install hints name extras"
    assert named <= set(extras), sorted(named - set(extras))


def test_optuna_sweep_without_optuna_is_one_line_before_the_sweep_folder(
    monkeypatch, tmp_path, capsys
):
    """ray[tune] there, optuna not (`pip install 'ray[tune]'` alone), search: optuna: one line
    naming the extra, before Ray starts or the sweep folder is claimed (it was Ray's
    AssertionError "Optuna must be installed!", a traceback, after both)."""
    import types

    ray = types.ModuleType("ray")  # stands in for Ray: the check must come before any use
    ray.tune = types.ModuleType("ray.tune")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setitem(sys.modules, "ray.tune", ray.tune)
    monkeypatch.setitem(sys.modules, "optuna", None)
    monkeypatch.chdir(tmp_path)
    base = _finetune_config(tmp_path, ["tensorboard"])
    sweep = {
        "base": base.name,
        "space": {"train.lr": {"choice": [3e-3, 1e-3]}},
        "metric": "valid/acc",
        "mode": "max",
        "search": "optuna",
        "num_samples": 2,
        "resources": {"cpu": 1},
        "out": str(tmp_path / "out"),
    }
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump(sweep), encoding="utf-8")
    code = cli("sweep", f)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "pip install 'encoderlab[sweep]'" in err, err
    assert "optuna" in err
    assert not (tmp_path / "out").exists()
