"""A study end to end in seconds, for the default suite (test_study.py's full runs, with a
pretraining stage, resume and Ctrl-C, are marked slow): one arm that trains, one that fails;
run again, the done arm is skipped and the failed one retried."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
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


@pytest.mark.slow  # 11-24 s: the default suite keeps its 5-minute bar
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
    # each arm's first line says where the study is
    assert any(x.startswith("[ok] starting (1 of 2): finetune ") for x in lines), lines
    # ... and, once an arm has run, how long the study has taken and about how long is left
    second = next(x for x in lines if x.startswith("[broken] starting (2 of 2; study 0:"))
    assert re.search(r"\(2 of 2; study 0:0\d:\d\d so far, ~0:0\d:\d\d left\): finetune ", second), (
        second
    )
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
    assert "[ok] done already" in text and "[broken] retrying (2 of 2)" in text
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


@pytest.mark.slow  # 11-24 s: the default suite keeps its 5-minute bar
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
    if wins + losses:
        assert f"where exactly one is right, mean wins {wins:,} and cls {losses:,}" in line
    else:  # both arms right and wrong on the same examples (tiny data: often the majority)
        assert line.endswith("; no example where exactly one is right."), line
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


@pytest.mark.slow  # 6-11 s: the default suite keeps its 5-minute bar
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


def _arm(name: str, *overrides: str) -> dict:
    """An arm of two fine-tuning steps (a process of a few seconds)."""
    return {"name": name, "overrides": ["train.max_steps=2", "train.epochs=null", *overrides]}


def test_a_failed_stage_leaves_the_arms_that_need_it_waiting_not_failed(tmp_path: Path) -> None:
    """Arms that could not start because the stage failed were recorded failed (a done one
    too, with its old metric) and counted with the stage: '3 of 3 arm(s) failed'."""
    import pytest

    from encoderlab.errors import UserError
    from encoderlab.study.execute import study_command

    tiny_base(tmp_path, rows=32, epochs=1)
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    pre = {"data": {"corpus": [str(tmp_path / "empty.txt")]}, "train": {"max_steps": 2}}
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(pre))
    out = tmp_path / "out"
    study = tmp_path / "study.yaml"
    arms = [_arm("a", "init={pretrain}"), _arm("b", "init=scratch:{pretrain}")]
    spec = {"base": "base.yaml", "out": str(out), "pretrain": {"config": "pre.yaml"}, "arms": arms}
    study.write_text(yaml.safe_dump(spec))
    lines: list[str] = []
    with pytest.raises(UserError) as e:
        study_command(str(study), None, say=lines.append)
    assert str(e.value) == (
        f"the pretraining stage 'pretrain' failed (see {out / 'logs' / 'pretrain.log'}); "
        "2 of 2 arm(s) wait for it (a, b); fix it and run the study again: done arms are kept"
    )
    assert "[a] waiting for the stage 'pretrain', which did not finish; not run" in lines
    state = json.loads((out / "study.json").read_text())["arms"]
    assert state["pretrain"]["status"] == "failed"
    for name in ("a", "b"):
        assert state[name] == {"status": "pending", "waiting": "pretrain"}
        [row] = [x for x in lines if x.startswith(f"{name} ")]
        assert "waiting: the stage 'pretrain' did not finish" in row and "failed" not in row


@pytest.mark.slow  # 6-11 s: the default suite keeps its 5-minute bar
def test_a_failed_arm_since_removed_from_the_study_file_no_longer_fails_it(
    tmp_path: Path,
) -> None:
    """The exit status counted the failed records in study.json, not the file's arms: an arm
    removed (or renamed) after it failed made every later run exit 2."""
    import pytest

    from encoderlab.errors import UserError
    from encoderlab.study.execute import study_command

    tiny_base(tmp_path, rows=32, epochs=1)
    out = tmp_path / "out"
    study = tmp_path / "study.yaml"
    spec = {"base": "base.yaml", "out": str(out), "arms": [_arm("ok")]}
    study.write_text(
        yaml.safe_dump({**spec, "arms": [*spec["arms"], _arm("bad", "task.label_column=x")]})
    )
    with pytest.raises(UserError, match=r"^1 of 2 arm\(s\) failed \(bad; see the table"):
        study_command(str(study), None, say=lambda m: None)
    study.write_text(yaml.safe_dump(spec))  # the broken arm dropped
    assert study_command(str(study), None, say=lambda m: None) == out / "report" / "report.html"
    assert json.loads((out / "study.json").read_text())["arms"]["bad"]["status"] == "failed"


@pytest.mark.slow  # 6-11 s: the default suite keeps its 5-minute bar
def test_a_study_file_does_not_take_over_another_ones_folder(tmp_path: Path, monkeypatch) -> None:
    """Two study files in one folder without name: shared studies/<folder> and undid each
    other's arms ('its command changed') on every run. And a done arm whose run directory was
    deleted was said to have a changed command."""
    import shutil

    import pytest

    from encoderlab.errors import UserError

    monkeypatch.chdir(tmp_path)
    tiny_base(tmp_path, rows=32, epochs=1)
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"base": "base.yaml", "arms": [_arm("x")]}))
    b.write_text(yaml.safe_dump({"base": "base.yaml", "arms": [_arm("x", "train.lr=1e-3")]}))
    run_study(a, say=lambda m: None)
    state_file = Path("studies") / tmp_path.name / "study.json"
    before = state_file.read_text()
    with pytest.raises(UserError) as e:
        run_study(b, say=lambda m: None)
    assert str(e.value) == (
        f"studies/{tmp_path.name}: holds the study of {a} (its study.json); give {b} a folder "
        "of its own with name: or out:"
    )
    assert state_file.read_text() == before
    run_dir = Path(json.loads(before)["arms"]["x"]["run_dir"])
    shutil.rmtree(run_dir)
    lines: list[str] = []
    run_study(a, say=lines.append)
    assert any(x.startswith(f"[x] its run directory {run_dir} is gone; rerunning") for x in lines)


@pytest.mark.slow  # 6-11 s: the default suite keeps its 5-minute bar
def test_a_study_never_writes_over_files_it_did_not_write(tmp_path: Path, monkeypatch) -> None:
    """With out: . the generated data replaced the user's own data/train.csv; out: naming a
    file was 'file exists; give another path' without naming out:."""
    import pytest

    from encoderlab.errors import UserError

    monkeypatch.chdir(tmp_path)
    tiny_base(tmp_path, rows=32, epochs=1)
    mine = tmp_path / "data" / "train.csv"
    mine.parent.mkdir()
    mine.write_text("id,text,target\n1,mine,1\n", encoding="utf-8")
    study = tmp_path / "study.yaml"
    data = ["task.train={synthetic}/train.csv", "task.valid={synthetic}/valid.csv"]
    arm = _arm("s", *data, "task.label_column=label")
    spec = {"base": "base.yaml", "out": ".", "synthetic": {"n_train": 20, "n_valid": 10}}
    study.write_text(yaml.safe_dump({**spec, "arms": [arm]}))
    with pytest.raises(UserError) as e:
        run_study(study, say=lambda m: None)
    assert str(e.value) == (
        f"data/train.csv: exists and this study did not write it; move it away or give the "
        f"study a folder of its own (out: in {study})"
    )
    assert mine.read_text(encoding="utf-8") == "id,text,target\n1,mine,1\n"
    assert not (tmp_path / "study.json").exists() and not (tmp_path / "run.lock").exists()

    mine.unlink()
    run_study(study, say=lambda m: None)
    lines: list[str] = []
    run_study(study, say=lines.append)  # its own data and report: written over freely
    assert "[s] done already" in "\n".join(lines)
    state = json.loads((tmp_path / "study.json").read_text())
    assert {"data/train.csv", "data/valid.csv", "report"} <= set(state["files"])
    del state["files"]  # a state written before the record: its files are its own
    (tmp_path / "study.json").write_text(json.dumps(state))
    run_study(study, say=lambda m: None)

    (tmp_path / "afile").write_text("x")
    study.write_text(yaml.safe_dump({**spec, "out": "afile", "arms": [arm]}))
    with pytest.raises(UserError, match=r"study.yaml: out: afile is a file; give out: a folder"):
        run_study(study, say=lambda m: None)


@pytest.mark.slow  # 6-11 s: the default suite keeps its 5-minute bar
def test_the_same_study_given_by_another_path_keeps_its_done_arms(
    tmp_path: Path, monkeypatch
) -> None:
    """`study run study.yaml`, then `study run /abs/.../study.yaml` (or `sub/../study.yaml`):
    the arm's recorded config path differed in spelling, so every done arm was trained again."""
    monkeypatch.chdir(tmp_path)
    tiny_base(tmp_path, rows=32, epochs=1)
    (tmp_path / "sub").mkdir()
    out = tmp_path / "out"
    spec = {"name": "p", "base": "base.yaml", "out": str(out), "arms": [_arm("a")]}
    Path("study.yaml").write_text(yaml.safe_dump(spec))
    run_study("study.yaml", say=lambda m: None)
    [run_dir] = list((out / "runs").iterdir())
    for spelling in (tmp_path / "study.yaml", "sub/../study.yaml", "./study.yaml"):
        lines: list[str] = []
        run_study(spelling, say=lines.append)
        assert f"[a] done already ({run_dir}); skipped" in lines, (spelling, lines)
    assert list((out / "runs").iterdir()) == [run_dir]
    # an edited config still reruns the arm
    base = yaml.safe_load(Path("base.yaml").read_text())
    base["train"]["lr"] = 2e-3
    Path("base.yaml").write_text(yaml.safe_dump(base))
    lines = []
    run_study(tmp_path / "study.yaml", say=lines.append)
    assert "[a] its command changed; rerunning" in "\n".join(lines)


@pytest.mark.slow  # 6-19 s (three subprocesses or a Ray start): the 5-minute bar
def test_placeholders_hold_paths_that_yaml_would_read_otherwise(tmp_path: Path) -> None:
    """A study folder named `exp #2: a`: pasted as it is into `task.train={split}/train.csv`,
    YAML read the value as 'exp' ('#' starts a comment) and the arm failed on a file that does
    not exist; now such a value goes in quoted, and one that reads the same stays as written."""
    from encoderlab.study.execute import _resolve

    def values(path: str) -> dict:
        return {"split": lambda: path, "pretrain": lambda: path}

    assert _resolve("init={pretrain}", values("runs/a")) == "init=runs/a"  # as before
    assert _resolve("init=scratch:{pretrain}", values("runs/a")) == "init=scratch:runs/a"
    from encoderlab.config import parse_override

    # the value the config gets (parse_override keeps a ' #' as text, so it may go in unquoted)
    resolved = _resolve("task.train={split}/t.csv", values("exp #2: a"))
    assert parse_override(resolved)[1] == "exp #2: a/t.csv", resolved
    assert parse_override(_resolve("task.train={split}", values("a: b")))[1] == "a: b"
    quoted = "data.corpus=['{split}', b.txt]"
    assert _resolve(quoted, values("x #1")) == "data.corpus=['x #1', b.txt]"
    assert _resolve("data.corpus=[{split}, b.txt]", values("x #1")) == (
        'data.corpus=["x #1", "b.txt"]'
    )
    rows = sentiment_rows(48, 0)
    for r in rows:
        r["movie"] = r["text"].split()[0]
    write_csv(tmp_path / "all.csv", rows, ["id", "text", "target", "movie"])
    tiny_base(tmp_path, rows=8, epochs=1)
    out = tmp_path / "exp #2: a"
    spec = {
        "name": "odd",
        "base": "base.yaml",
        "out": str(out),
        "split": {"file": str(tmp_path / "all.csv"), "group": "movie", "valid_ratio": 0.25},
        "arms": [{"name": "a", "overrides": ["task.train={split}/train.csv"]}],
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec))
    run_study(tmp_path / "study.yaml", say=lambda m: None)
    arm = json.loads((out / "study.json").read_text())["arms"]["a"]
    assert arm["status"] == "done", arm
    config = yaml.safe_load((Path(arm["run_dir"]) / "config.yaml").read_text())
    assert config["task"]["train"] == str(out / "split" / "train.csv")


def test_the_study_clock_estimates_from_the_arms_that_ran():
    from encoderlab.study.execute import _kind_of_arm, _StudyClock

    clock = _StudyClock()
    assert clock.eta(["own"] * 3) == ""  # nothing ran yet: no guess
    clock.arms["own"] = [100.0, 140.0]
    assert clock.eta(["own"] * 3).endswith("so far, ~0:06:00 left")  # 3 at the mean of 120 s
    assert clock.eta([]) == ""
    # a hub model's arm takes far longer than the study's own small encoders (the quickstart
    # said "~0:00:06 left" before a minute of MiniLM): no estimate until one has run
    assert clock.eta(["own", "hub"]).endswith("so far")
    clock.arms["hub"] = [60.0]
    assert clock.eta(["own", "hub"]).endswith("so far, ~0:03:00 left")
    hub = {"overrides": ['init="hf:{minilm}"', "train.lr=0.0001"]}
    assert _kind_of_arm(hub) == "hub" and _kind_of_arm({"overrides": ["init={pretrain}"]}) == "own"


@pytest.mark.parametrize(
    "override, missing, said",
    [
        ("init=hf:/models/minilm", "transformers", "init=hf:/models/minilm: fine-tuning a hub "
         "encoder needs transformers; run `pip install 'encoderlab[hf]'`"),
        ("task.train={parquet}", "pyarrow", "task.train={parquet}: reading .parquet files "
         "needs pyarrow; run `pip install 'encoderlab[corpus]'`"),
        ("train.loggers=[mlflow]", "mlflow", "train.loggers: mlflow is not installed"),
    ],
)  # fmt: skip
def test_an_arm_needing_an_extra_not_installed_is_one_line_before_anything_runs(
    tmp_path: Path, monkeypatch, override: str, missing: str, said: str
) -> None:
    """Such an arm failed only when its turn came: after the stage and the arms before it had
    run and written their runs (the quickstart's hub arm without transformers, too)."""
    import importlib.util

    from encoderlab.errors import UserError
    from encoderlab.study.spec import load_study

    tiny_base(tmp_path, rows=32, epochs=1)
    parquet = tmp_path / "train.parquet"
    parquet.write_bytes(b"PAR1")
    override = override.format(parquet=parquet)
    study = tmp_path / "study.yaml"
    arms = [{"name": "ok", "overrides": []}, {"name": "b", "overrides": [override]}]
    study.write_text(yaml.safe_dump({"name": "m", "base": "base.yaml", "arms": arms}))
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    monkeypatch.delitem(__import__("sys").modules, missing, raising=False)
    with pytest.raises(UserError) as e:
        load_study(study)
    assert f"arm 'b': {said.format(parquet=parquet)}" in str(e.value)
