"""The study runner: a pretraining stage and three arms (one broken) over tiny synthetic data,
each in its own process; skipping done arms, retrying failed ones, resuming interrupted ones;
the report; one-line errors for bad study files; the synthetic data generator."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import synthetic_lines
from encoderlab.errors import UserError
from encoderlab.study import load_study, run_study
from encoderlab.synthetic import examples, write_dataset

MODEL = {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 2, "max_len": 64, "dropout": 0.0}


def _write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _task_csv(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    good, bad = "great fine lovely nice".split(), "awful poor sad dull".split()
    fill = "the movie plot was and it a very with actor".split()
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "target"])
        for i in range(n):
            label = i % 2
            words = [rng.choice(fill) for _ in range(rng.randint(3, 8))]
            words.insert(rng.randint(0, len(words)), rng.choice(good if label else bad))
            w.writerow([f"{seed}-{i}", " ".join(words), label])
    return path


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(200)) + "\n", encoding="utf-8")
    train = _task_csv(tmp_path / "train.csv", 160, 0)
    _write_yaml(
        tmp_path / "pre.yaml",
        {
            "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
            "data": {"corpus": [str(corpus)], "block_len": 32, "valid_ratio": 0.1},
            "model": MODEL,
            "train": {"batch_size": 16, "lr": 1e-3, "epochs": 1, "log_every": 5},
        },
    )
    _write_yaml(
        tmp_path / "base.yaml",
        {
            "task": {
                "type": "classification",
                "train": str(train),
                "label_column": "target",
                "max_len": 32,
            },
            "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
            "model": MODEL,
            "train": {"batch_size": 16, "lr": 3e-3, "epochs": 2, "log_every": 5},
        },
    )
    return _write_yaml(
        tmp_path / "study.yaml",
        {
            "name": "tiny",
            "base": "base.yaml",
            "out": str(tmp_path / "out"),
            "pretrain": {"config": "pre.yaml", "overrides": ["train.epochs=1"]},
            "arms": [
                {"name": "pretrained", "overrides": ["init={pretrain}"]},
                {"name": "broken", "overrides": ["train.lr=-1"]},
                {"name": "scratch", "overrides": ["init=scratch"]},
            ],
            "profiles": {"full": {"overrides": ["train.epochs=3"]}},
        },
    )


def _state(out: Path) -> dict:
    return json.loads((out / "study.json").read_text())["arms"]


def _run_dirs(out: Path, arm: str) -> list[Path]:
    return sorted((out / "runs").glob(f"{arm}-*"))


def test_study_runs_skips_retries_and_resumes(study_file: Path) -> None:
    out = study_file.parent / "out"
    lines: list[str] = []
    html = run_study(study_file, say=lines.append)

    arms = _state(out)
    assert [arms[a]["status"] for a in ("pretrain", "pretrained", "scratch")] == ["done"] * 3
    assert arms["broken"]["status"] == "failed"
    assert "lr must be positive" in arms["broken"]["message"]
    assert arms["broken"]["exit_code"] == 2
    pre_dir = Path(arms["pretrain"]["run_dir"])
    assert f"init={pre_dir}" in arms["pretrained"]["command"]  # {pretrain} resolved
    assert json.loads((pre_dir / "run.json").read_text())["kind"] == "pretrain"
    assert html == out / "report" / "report.html" and html.is_file()
    assert (out / "report" / "report.md").is_file()
    table = "\n".join(lines)
    assert "arm" in table and "pretrained" in table and "failed: " in table

    # again: done arms are skipped, the failed one is retried (and fails again)
    lines.clear()
    run_study(study_file, say=lines.append)
    text = "\n".join(lines)
    for arm in ("pretrain", "pretrained", "scratch"):
        assert f"[{arm}] done already" in text
        assert len(_run_dirs(out, arm)) == 1
    assert "[broken] retrying" in text
    assert _state(out)["broken"]["status"] == "failed"

    # an interrupted arm (killed mid-run: state says running, last checkpoint lost) resumes
    run_dir = Path(_state(out)["scratch"]["run_dir"])
    info = json.loads((run_dir / "run.json").read_text())
    ckpts = sorted((run_dir / "checkpoints").glob("step-*"))
    assert len(ckpts) >= 2
    shutil.rmtree(ckpts[-1])
    info_killed = {**info, "status": "running", "pid": 2**22 + 12345}
    info_killed.pop("best_checkpoint", None)
    (run_dir / "run.json").write_text(json.dumps(info_killed))
    state = json.loads((out / "study.json").read_text())
    state["arms"]["scratch"]["status"] = "running"
    (out / "study.json").write_text(json.dumps(state))

    lines.clear()
    run_study(study_file, say=lines.append)
    text = "\n".join(lines)
    assert f"[scratch] resuming {run_dir}" in text
    assert "resumed" in text  # the fine-tuning process continued from the checkpoint
    assert _run_dirs(out, "scratch") == [run_dir]  # no new run
    assert _state(out)["scratch"]["status"] == "done"
    after = json.loads((run_dir / "run.json").read_text())
    assert after["status"] == "finished" and after["steps"] == info["steps"]
    assert "--resume" in _state(out)["scratch"]["command"]


def _bad(tmp_path: Path, study: dict, profile: str | None = None) -> str:
    f = _write_yaml(tmp_path / "bad.yaml", study)
    with pytest.raises(UserError) as e:
        load_study(f, profile)
    msg = str(e.value)
    assert "\n" not in msg and str(f) in msg
    return msg


def test_bad_study_files_are_one_line_errors(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "base.yaml", {"task": {"type": "classification"}})
    ok = {"base": "base.yaml", "arms": [{"name": "a"}]}
    assert load_study(_write_yaml(tmp_path / "ok.yaml", ok)).entries()[0]["command"] == "finetune"
    assert "unknown key 'armz'" in _bad(tmp_path, {**ok, "armz": []})
    assert "'arms.0.overide'" in _bad(
        tmp_path, {"base": "base.yaml", "arms": [{"name": "a", "overide": []}]}
    )
    assert "not KEY=VALUE" in _bad(tmp_path, {**ok, "arms": [{"name": "a", "overrides": ["lr"]}]})
    assert "base: config file" in _bad(tmp_path, {**ok, "base": "nope.yaml"})
    assert "used twice" in _bad(tmp_path, {**ok, "arms": [{"name": "a"}, {"name": "a"}]})
    assert "no profile 'full'" in _bad(tmp_path, ok, profile="full")
    assert "without a stage" in _bad(
        tmp_path, {**ok, "arms": [{"name": "a", "overrides": ["init={pretrain}"]}]}
    )
    assert "'arms'" in _bad(tmp_path, {"base": "base.yaml", "arms": []})
    assert "command" in _bad(tmp_path, {**ok, "arms": [{"name": "a", "command": "train"}]})
    f = tmp_path / "broken.yaml"
    f.write_text("arms: [\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid YAML"):
        load_study(f)


def test_profile_and_default_out(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "base.yaml", {"task": {"type": "classification"}})
    f = _write_yaml(
        tmp_path / "s.yaml",
        {
            "name": "s",
            "base": "base.yaml",
            "arms": [{"name": "a", "overrides": ["train.lr=1e-3"]}],
            "profiles": {"full": {"overrides": ["train.epochs=5"], "arms": {"a": ["x.y=1"]}}},
        },
    )
    assert load_study(f).out == Path("studies/s")
    full = load_study(f, "full")
    assert full.out == Path("studies/s-full")
    assert full.entries()[0]["overrides"] == ["train.epochs=5", "train.lr=1e-3", "x.y=1"]


@pytest.mark.parametrize("kind", ["sorted", "repeat"])
def test_synthetic_data_is_deterministic_and_correct(tmp_path: Path, kind: str) -> None:
    a = write_dataset(tmp_path / "a", kind=kind, n_train=200, n_valid=50)
    b = write_dataset(tmp_path / "b", kind=kind, n_train=200, n_valid=50)
    assert [p.read_text() for p in a] == [p.read_text() for p in b]
    rows = examples(kind, 400)
    assert sum(r["label"] == "yes" for r in rows) == 200
    for r in rows:
        seq = [int(t[1:]) for t in r["text"].split()]
        truth = seq == sorted(seq) if kind == "sorted" else len(set(seq)) < len(seq)
        assert truth == (r["label"] == "yes")
