"""A study end to end in seconds, for the default suite (test_study.py's full runs, with a
pretraining stage, resume and Ctrl-C, are marked slow): one arm that trains, one that fails;
run again, the done arm is skipped and the failed one retried."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from encoderlab.study import run_study
from test_finetune import sentiment_rows, write_csv


def tiny_base(tmp_path: Path, rows: int, epochs: int) -> dict:
    """base.yaml for a study: a seconds-long sentiment classifier on `rows` training rows."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(rows, 0), ["id", "text", "target"])
    base = {
        "task": {
            "type": "classification",
            "train": str(train),
            "label_column": "target",
            "max_len": 32,
        },
        "tokenizer": {"kind": "wordpiece", "vocab_size": 100},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 32},
        "train": {"batch_size": 16, "lr": 3e-3, "epochs": epochs, "log_every": 2},
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    return base


def test_a_tiny_study_runs_its_arms_records_failures_and_skips_done_ones(tmp_path: Path) -> None:
    base = tiny_base(tmp_path, rows=64, epochs=1)
    out = tmp_path / "out"
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "name": "quick",
                "base": "base.yaml",
                "out": str(out),
                "arms": [
                    {"name": "ok", "overrides": ["head.type=mean"]},
                    # a config that loads (the study checks that up front) on data it lacks
                    {"name": "broken", "overrides": ["task.label_column=nope"]},
                ],
                "compare": [["ok", "broken"]],
            }
        )
    )
    lines: list[str] = []
    html = run_study(study, say=lines.append)
    assert "ok vs broken: not both done (broken: failed)." in lines
    arms = json.loads((out / "study.json").read_text())["arms"]
    assert arms["ok"]["status"] == "done"
    assert arms["broken"]["status"] == "failed" and arms["broken"]["exit_code"] == 2
    assert "'nope'" in arms["broken"]["message"], arms["broken"]["message"]
    run_dir = Path(arms["ok"]["run_dir"])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert html == out / "report" / "report.html" and html.is_file()
    assert "Record: ok" in (out / "report" / "report.md").read_text(encoding="utf-8")

    lines.clear()
    run_study(study, say=lines.append)
    text = "\n".join(lines)
    assert "[ok] done already" in text and "[broken] retrying" in text
    assert sorted(p.name for p in (out / "runs").iterdir()) == [run_dir.name]

    # a comment or layout edit in the config is the same arm; an edited value is a new one
    edited = tmp_path / "base.yaml"
    edited.write_text("# measured on ...\n" + yaml.safe_dump(base, indent=4))
    lines.clear()
    run_study(study, say=lines.append)
    assert "[ok] done already" in "\n".join(lines)
    edited.write_text(yaml.safe_dump({**base, "train": {**base["train"], "lr": 2e-3}}))
    lines.clear()
    run_study(study, say=lines.append)
    assert "[ok] its command changed; rerunning" in "\n".join(lines)
    assert len(list((out / "runs").iterdir())) == 2


def test_an_arm_recorded_with_the_config_files_bytes_stays_done_until_the_file_changes(
    tmp_path: Path,
) -> None:
    """Studies recorded before the signature keyed on the config's content: not rerun."""
    from encoderlab.study.execute import _file_sha, _same_arm

    config = tmp_path / "finetune.yaml"
    config.write_text("train: {lr: 1.0e-3}\n")
    new = {"command": "finetune", "config": str(config), "config_content": "c", "overrides": []}
    old = {k: v for k, v in new.items() if k != "config_content"} | {
        "config_sha": _file_sha(config)
    }
    assert _same_arm(old, new)
    assert not _same_arm(old | {"overrides": ["train.lr=1"]}, new)
    config.write_text("# edited\ntrain: {lr: 1.0e-3}\n")
    assert not _same_arm(old, new)  # the old record cannot tell a comment from a value
    assert not _same_arm(None, new) and _same_arm(new, new)


def test_compare_names_the_pair_the_study_is_about_with_both_metrics_and_the_sign_test(
    tmp_path: Path,
) -> None:
    """`compare: [[a, b]]` prints one line per pair at the end and opens the report's
    conclusions with it: both validation metrics, the margin, the paired sign test."""
    from encoderlab.reporting import load_run
    from encoderlab.reporting.diffs import example_diff
    from encoderlab.reporting.metrics import primary_value

    tiny_base(tmp_path, rows=96, epochs=2)
    out = tmp_path / "out"
    study = tmp_path / "study.yaml"
    arms = [{"name": "mean", "overrides": ["head.type=mean"]}, {"name": "cls"}]
    study.write_text(
        yaml.safe_dump(
            {"base": "base.yaml", "out": str(out), "arms": arms, "compare": [["mean", "cls"]]}
        )
    )
    lines: list[str] = []
    run_study(study, say=lines.append)
    state = json.loads((out / "study.json").read_text())["arms"]
    a, b = (load_run(Path(state[n]["run_dir"])) for n in ("mean", "cls"))
    va, vb = 100 * primary_value(a), 100 * primary_value(b)
    diff = example_diff(a, b)
    wins, losses = len(diff.a_right_b_wrong), len(diff.b_right_a_wrong)
    [line] = [x for x in lines if x.startswith("mean vs cls: ")]
    assert f"validation accuracy {va:.2f} % vs {vb:.2f} % ({va - vb:+.2f} points" in line
    assert f"where exactly one is right, mean wins {wins:,} and cls {losses:,}" in line
    assert ("sign test p = " in line) == (wins + losses > 0)
    assert f"- {line}" in (out / "report" / "report.md").read_text(encoding="utf-8")


def test_a_missing_data_file_is_one_line_before_the_study_writes_anything(tmp_path: Path) -> None:
    import pytest

    from encoderlab.errors import UserError

    tiny_base(tmp_path, rows=32, epochs=1)
    out = tmp_path / "out"
    study = tmp_path / "study.yaml"
    arms = [{"name": "a", "overrides": [f"task.train={tmp_path / 'gone.csv'}"]}]
    study.write_text(
        yaml.safe_dump({"name": "m", "base": "base.yaml", "out": str(out), "arms": arms})
    )
    with pytest.raises(UserError, match=r"arm 'a': task.train=.*gone.csv: no such file"):
        run_study(study, say=lambda m: None)
    assert not out.exists()


def test_a_second_process_on_the_same_study_is_refused_in_one_line(tmp_path: Path) -> None:
    """Two `study run` of one study both trained the same arm and wrote study.json."""
    import subprocess
    import sys

    import pytest

    from encoderlab.errors import UserError

    tiny_base(tmp_path, rows=32, epochs=1)
    out = tmp_path / "out"
    out.mkdir()
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump({"name": "m", "base": "base.yaml", "out": str(out), "arms": [{"name": "a"}]})
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from encoderlab.runs import take_lock; "
            f"take_lock(__import__('pathlib').Path({str(out)!r})); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=r"out: in use by another encoderlab process \(pid"):
            run_study(study, say=lambda m: None)
        assert not (out / "study.json").exists()
    finally:
        holder.kill()
        holder.wait()
    run_study(study, say=lambda m: None)  # the lock of a process that is gone is free
    assert json.loads((out / "study.json").read_text())["arms"]["a"]["status"] == "done"
