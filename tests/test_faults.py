"""Fault injection: a full disk (injected, and a real tmpfs where mounting is allowed), NaN
losses, damaged checkpoint files, and (slow) kill -9 at seeded random points of pretraining,
fine-tuning, corpus preparation and a study (the study with its arm, or the arm alone),
including in the middle of a checkpoint write. Each test asserts that no finished work is lost,
and that losses after a resume are the ones an uninterrupted run logs wherever resume is
promised to be exact (pretrain, finetune, a study's arm)."""

from __future__ import annotations

import errno
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
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

import encoderlab.runs as runs_mod
from conftest import frozen_when, kill_9, run_cli, synthetic_lines
from encoderlab.config import Config, TrainConfig
from encoderlab.jobs import run_info
from encoderlab.runs import Run, checkpoint_problem
from encoderlab.train import fit
from test_pretrain_cli import TINY
from test_train import Net, Toy, collate, objective

ENOSPC_RUST = 'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'  # noqa: E501 - as safetensors says it


def write_cfg(root: Path, corpus: Path, tok: Path, **train) -> Path:
    cfg = json.loads(json.dumps(TINY))
    cfg["runs_dir"] = str(root / "runs")
    cfg["data"] |= {"corpus": [str(corpus)], "cache_dir": str(root.parent / "cache")}
    cfg["tokenizer"] = {"path": str(tok)}
    cfg["train"] |= {"max_steps": 20, "checkpoint_every": 5, "eval_every": 10} | train
    root.mkdir(parents=True, exist_ok=True)
    f = root / "cfg.yaml"
    f.write_text(yaml.safe_dump(cfg))
    return f


def only_run(root: Path) -> Run:
    found = [p for p in (root / "runs").iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return Run.open(found[0])


def run_dirs(root: Path) -> list[Path]:
    return [p for p in (root / "runs").iterdir() if p.is_dir()] if (root / "runs").is_dir() else []


def train_losses(run: Run) -> list[tuple[int, float]]:
    return [(r["step"], r["train/mlm_loss"]) for r in run.metrics() if r["kind"] == "train"]


def same_losses(a: list[tuple[int, float]], b: list[tuple[int, float]], steps: int) -> None:
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, steps + 1))
    for (_, x), (_, y) in zip(a, b, strict=True):
        assert x == pytest.approx(y, rel=1e-5, abs=1e-6)


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A corpus, one tokenizer for every run (WordPiece training differs across processes)
    and an uninterrupted reference run of 20 steps."""
    root = tmp_path_factory.mktemp("faults")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(400)) + "\n", encoding="utf-8")
    tok = root / "tok"
    assert run_cli("tokenizer", "train", "--corpus", corpus, "--vocab-size", 200, "--out", tok) == 0
    assert run_cli("pretrain", write_cfg(root / "ref", corpus, tok)) == 0
    return {"root": root, "corpus": corpus, "tok": tok, "ref": only_run(root / "ref").path}


def failing_save_file(monkeypatch, fail_at: int) -> None:
    """safetensors' save_file raises its full-disk error on call number `fail_at`."""
    real, calls = runs_mod.save_file, [0]

    def save_file(*args, **kwargs):
        calls[0] += 1
        if calls[0] >= fail_at:
            raise SafetensorError(ENOSPC_RUST)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs_mod, "save_file", save_file)


# ---------------------------------------------------------------------------------------------
# A full disk


def test_disk_full_mid_run_is_one_line_and_resume_is_exact(setup, tmp_path, monkeypatch, capsys):
    cfg = write_cfg(tmp_path, setup["corpus"], setup["tok"])
    failing_save_file(monkeypatch, fail_at=3)  # checkpoints at 5 and 10 written, 15 fails
    assert run_cli("pretrain", cfg) == 2
    line = one_error_line(capsys.readouterr().err)
    run = only_run(tmp_path)
    assert "disk full" in line and f"--resume {run.path}" in line and "step-00000010" in line
    assert run.latest_checkpoint().name == "step-00000010"
    assert not list(run.checkpoint_dir.glob(".tmp-step-*")), "the failed write's space is freed"
    monkeypatch.undo()
    assert run_cli("pretrain", "--resume", run.path) == 0
    same_losses(train_losses(Run.open(setup["ref"])), train_losses(Run.open(run.path)), 20)


@pytest.mark.parametrize("where", ["run.json", "env.json", "tokenizer", "first checkpoint"])
def test_disk_full_at_start_leaves_no_run_directory(setup, tmp_path, monkeypatch, capsys, where):
    import encoderlab.pretraining as pretrain_mod

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "some/file")

    if where == "run.json":
        monkeypatch.setattr(runs_mod, "atomic_write", full)
    elif where == "env.json":
        monkeypatch.setattr(runs_mod, "environment", full)
    elif where == "tokenizer":
        monkeypatch.setattr(pretrain_mod, "save_tokenizer", full)
    else:
        failing_save_file(monkeypatch, fail_at=1)
    assert run_cli("pretrain", write_cfg(tmp_path, setup["corpus"], setup["tok"])) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "disk full" in line and "free space" in line
    assert run_dirs(tmp_path) == [], "no half-made run directory"


def test_a_bug_is_still_a_traceback(setup, tmp_path, monkeypatch):
    """Only a full disk becomes one line: any other error while writing stays a bug."""

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(runs_mod, "environment", broken)
    with pytest.raises(OSError, match="Input/output"):
        run_cli("pretrain", write_cfg(tmp_path, setup["corpus"], setup["tok"]))


def _mount_tmpfs(path: Path, size: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip(
            "a real full disk needs a tmpfs mount (root on Linux); the injected tests cover it"
        )
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the injected tests cover it")


def _du(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def test_a_real_full_disk_keeps_the_last_checkpoint(setup, tmp_path, capsys):
    """A tmpfs with room for the run and two checkpoints but not a third: the write fails, the
    run says so in one line, and after more room resume logs the uninterrupted run's losses."""
    ref = Run.open(setup["ref"])
    ckpt = _du(ref.latest_checkpoint())
    rest = _du(ref.path) - ckpt * len(ref.checkpoints())
    size = rest + ckpt * 5 // 2 + 8 * 1024  # two checkpoints and a half, and cfg.yaml
    mnt = tmp_path / "disk"
    _mount_tmpfs(mnt, size)
    try:
        cfg = write_cfg(mnt, setup["corpus"], setup["tok"])
        assert run_cli("pretrain", cfg) == 2
        line = one_error_line(capsys.readouterr().err)
        run = only_run(mnt)
        last = run.latest_checkpoint()
        assert "disk full" in line and last is not None and last.name in line
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        assert run_cli("pretrain", "--resume", run.path) == 0
        same_losses(train_losses(ref), train_losses(Run.open(run.path)), 20)
        shutil.rmtree(mnt / "runs")
        # a disk too small for even the run's first files: nothing is left behind
        subprocess.run(["mount", "-o", "remount,size=16k", str(mnt)], check=True)
        assert run_cli("pretrain", cfg) == 2
        assert "disk full" in one_error_line(capsys.readouterr().err)
        assert run_dirs(mnt) == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ---------------------------------------------------------------------------------------------
# NaN losses and damaged checkpoint files (the toy task of test_train: fast)


def _toy(tmp_path: Path, name: str, obj, steps: int = 12) -> tuple[Run, object]:
    cfg = TrainConfig(
        batch_size=4,
        epochs=None,
        max_steps=steps,
        checkpoint_every=2,
        keep_checkpoints=10,
        max_nonfinite=2,
    )
    run = Run.create(tmp_path / "runs", name, Config(name=name, train=cfg), kind="toy")
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    result = fit(model, opt, Toy(), Toy(20), collate, obj, cfg, run, seed=0, say=lambda m: None)
    return run, result


def test_nan_from_some_step_on_keeps_the_last_good_checkpoint(tmp_path):
    ref, _ = _toy(tmp_path, "ref", objective())
    good = objective()
    bad = objective(nan=True)
    calls = [0]

    class Obj:  # finite for the first 7 steps, NaN from then on
        metrics, primary, primary_mode = good.metrics, good.primary, good.primary_mode
        units = good.units

        @staticmethod
        def step(model, batch):
            calls[0] += model.training
            return (bad if calls[0] > 7 and model.training else good).step(model, batch)

    run, result = _toy(tmp_path, "nan", Obj())
    assert run.info["status"] == "failed" and "not finite" in result.stopped_because
    assert run.latest_checkpoint() is not None
    for ckpt in run.checkpoints():  # NaN steps are skipped: every checkpoint holds good weights
        kept = load_file(str(ckpt / "model.safetensors"))
        assert all(torch.isfinite(t).all() for t in kept.values()), f"NaN weights in {ckpt}"
        if int(ckpt.name[5:]) <= 7:  # the steps before the NaNs: as the reference saved them
            same = load_file(str(ref.checkpoint_dir / ckpt.name / "model.safetensors"))
            assert all(torch.equal(kept[k], same[k]) for k in same)


def _damage(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    how = rng.choice(["truncate", "header byte", "empty"])
    if how == "truncate":
        path.write_bytes(bytes(data[: rng.randrange(len(data))]))
    elif how == "empty":
        path.write_bytes(b"")
    else:  # a byte of the JSON header (tensor bytes carry no checksum: see the closing note)
        n = int.from_bytes(data[:8], "little") + 8 if path.suffix == ".safetensors" else len(data)
        i = rng.randrange(min(n, len(data)))
        data[i] = rng.randrange(256)
        path.write_bytes(bytes(data))
    return how


@pytest.mark.parametrize("seed", range(8))
def test_damaged_checkpoint_files_never_cost_a_traceback(tmp_path, seed):
    """Random damage to the newest checkpoint's files: resume takes the newest one that reads
    back whole, or says in one line that there is none."""
    rng = random.Random(seed)
    run, _ = _toy(tmp_path, "toy", objective(), steps=6)
    ckpts = run.checkpoints()
    for ckpt in rng.sample(ckpts, rng.randint(1, len(ckpts))):
        name = rng.choice(["model.safetensors", "optimizer.safetensors", "state.json"])
        _damage(ckpt / name, rng)
    intact = [c for c in Run.open(run.path).checkpoints() if checkpoint_problem(c) is None]
    cfg = TrainConfig(batch_size=4, epochs=None, max_steps=8, checkpoint_every=2, max_nonfinite=2)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    said: list[str] = []
    try:
        res = fit(
            model,
            opt,
            Toy(),
            Toy(20),
            collate,
            objective(),
            cfg,
            Run.open(run.path),
            0,
            True,
            say=said.append,
        )
    except runs_mod.UserError as e:
        assert "\n" not in str(e) and "no intact checkpoint" in str(e)
        return
    assert res.step == 8
    resumed = [m for m in said if m.startswith("resumed")]
    assert resumed and intact and f"at step {int(intact[-1].name[5:])}" in resumed[0]


# ---------------------------------------------------------------------------------------------
# kill -9 (slow: each run is a process of its own)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}


def _kill_then_resume(setup, tmp_path: Path, ready, cmd: list[str]) -> Path:
    """Run `cmd` frozen in slices until `ready(tmp_path)`, kill -9 it, and return the run."""
    for slice_s in (0.05, 0.01, 0.002, 0.0005):
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
        proc = frozen_when(cmd, ENV, lambda: ready(tmp_path), slice_s)
        if proc is not None:
            kill_9(proc)
            return only_run(tmp_path).path
    pytest.fail("the run finished within a 0.5 ms slice every time")


def _checkpoint_at_least(step: int):
    def ready(root: Path) -> bool:
        for d in run_dirs(root):
            last = Run(d).latest_checkpoint()
            if last is not None and int(last.name[5:]) >= step:
                return True
        return False

    return ready


def _writing_a_checkpoint(root: Path) -> bool:
    """A checkpoint write in progress after a complete one: the kill lands mid-write and there
    is something to resume (a kill in the very first write leaves nothing to resume, and the
    resume says so in one line)."""
    return any(
        list((d / "checkpoints").glob(".tmp-step-*")) and Run(d).latest_checkpoint() is not None
        for d in run_dirs(root)
    )


@pytest.mark.slow
@pytest.mark.parametrize("point", ["random-1", "random-2", "random-3", "checkpoint write"])
def test_pretrain_killed_anywhere_resumes_with_the_same_losses(setup, tmp_path, point):
    rng = random.Random(point)
    cfg = write_cfg(tmp_path, setup["corpus"], setup["tok"], checkpoint_every=1)
    ready = (
        _writing_a_checkpoint
        if point == "checkpoint write"
        else _checkpoint_at_least(rng.randint(1, 18))
    )
    cmd = [sys.executable, "-m", "encoderlab", "pretrain", str(cfg)]
    run_dir = _kill_then_resume(setup, tmp_path, ready, cmd)
    assert Run.open(run_dir).info["status"] == "running"
    done = subprocess.run(
        cmd[:4] + ["--resume", str(run_dir)], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert not list((run_dir / "checkpoints").glob(".tmp-step-*")), "the killed write is gone"
    same_losses(train_losses(Run.open(setup["ref"])), train_losses(Run.open(run_dir)), 20)


@pytest.mark.slow
def test_finetune_killed_in_a_checkpoint_write_resumes_with_the_same_losses(setup, tmp_path):
    from test_hf import sentiment_csv

    def cfg_file(root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        cfg = {
            "name": "ft",
            "runs_dir": str(root / "runs"),
            "task": {
                "type": "classification",
                "train": str(sentiment_csv(tmp_path / "t.csv", 64)),
                "max_len": 32,
                "label_column": "target",
                "valid_ratio": 0.25,
            },
            "head": {"type": "pooler"},
            "tokenizer": {"path": str(setup["tok"])},
            "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32},
            "train": {
                "batch_size": 8,
                "lr": 1e-3,
                "epochs": None,
                "max_steps": 16,
                "log_every": 1,
                "checkpoint_every": 1,
                "eval_every": 8,
            },
        }
        (root / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        return root / "cfg.yaml"

    def losses(run: Run) -> list[tuple[int, float]]:
        return [(r["step"], r["train/loss"]) for r in run.metrics() if r["kind"] == "train"]

    ref_cfg = cfg_file(tmp_path / "ref")
    subprocess.run(
        [sys.executable, "-m", "encoderlab", "finetune", str(ref_cfg)],
        env=ENV,
        check=True,
        capture_output=True,
    )
    cmd = [sys.executable, "-m", "encoderlab", "finetune", str(cfg_file(tmp_path))]
    run_dir = _kill_then_resume(setup, tmp_path, _writing_a_checkpoint, cmd)
    done = subprocess.run(
        cmd[:4] + ["--resume", str(run_dir)], env=ENV, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    same_losses(losses(only_run(tmp_path / "ref")), losses(Run.open(run_dir)), 16)


@pytest.mark.slow
def test_corpus_prepare_killed_keeps_its_finished_shards(setup, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("\n".join(synthetic_lines(20000, seed=3)) + "\n", encoding="utf-8")
    cfg = write_cfg(tmp_path, big, setup["tok"])
    data = yaml.safe_load(cfg.read_text())
    data["data"] |= {"cache_dir": str(tmp_path / "cache"), "shard_mb": 0.05}
    cfg.write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "encoderlab", "corpus", "prepare", str(cfg), "--workers", "1"]

    def shards_done() -> list[Path]:
        return sorted(tmp_path.glob("cache/*/shard-*.json"))

    proc = None
    for slice_s in (0.05, 0.01, 0.002):
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        proc = frozen_when(cmd, ENV, lambda: len(shards_done()) >= 2, slice_s)
        if proc is not None:
            break
    assert proc is not None, "prepare finished within one slice every time"
    kill_9(proc)
    before = {p.name: p.read_bytes() for p in shards_done()}
    assert not list(tmp_path.glob("cache/*/manifest.json")), "killed before the end"
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = {p.name: p.read_bytes() for p in shards_done()}
    assert all(after[name] == rec for name, rec in before.items()), "finished shards kept as is"
    # the same tokens as a prepare that was never interrupted
    whole = tmp_path / "whole"
    data["data"]["cache_dir"] = str(whole)
    cfg.write_text(yaml.safe_dump(data))
    subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    for name in after:
        shard = name.removesuffix(".json") + ".bin"
        assert (
            next(tmp_path.glob(f"cache/*/{shard}")).read_bytes()
            == next(whole.glob(f"*/{shard}")).read_bytes()
        )


# ---------------------------------------------------------------------------------------------
# kill -9 of a study (slow): the study process and the running arm's process group at once (a
# power cut: nothing cleans up), or the arm alone (the study goes on)

ARM_STEPS = 40  # the arm 'second': a checkpoint every step, killed somewhere in between
ARMS = {
    "first": ["train.max_steps=6"],
    "second": [f"train.max_steps={ARM_STEPS}"],
    "third": ["train.max_steps=4"],
}


def _study_yaml(root: Path, base: Path, arms: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "killed",
        "base": str(base),
        "out": str(root / "out"),
        "arms": [{"name": a, "overrides": ARMS[a]} for a in arms],
    }
    (root / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return root / "study.yaml"


def _arms(out: Path) -> dict:
    f = out / "study.json"
    return json.loads(f.read_text())["arms"] if f.is_file() else {}


def _ft_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [
        (r["step"], r["train/loss"]) for r in Run.open(run_dir).metrics() if r["kind"] == "train"
    ]


def _files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run directory: its bytes and mtime (a skipped arm touches neither)."""
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def study_setup(tmp_path_factory) -> dict:
    """base.yaml for tiny fine-tuning arms over one tokenizer (WordPiece training differs across
    processes), and the losses of the arm 'second' run uninterrupted (a study of that arm)."""
    from encoderlab.study import run_study
    from test_hf import sentiment_csv

    root = tmp_path_factory.mktemp("study-faults")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(200)) + "\n", encoding="utf-8")
    tok = root / "tok"
    assert run_cli("tokenizer", "train", "--corpus", corpus, "--vocab-size", 120, "--out", tok) == 0
    base = {
        "task": {
            "type": "classification",
            "train": str(sentiment_csv(root / "train.csv", 64)),
            "max_len": 32,
            "label_column": "target",
            "valid_ratio": 0.25,
        },
        "head": {"type": "pooler"},
        "tokenizer": {"path": str(tok)},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 32},
        "train": {
            "batch_size": 8,
            "lr": 1e-3,
            "epochs": None,
            "log_every": 1,
            "checkpoint_every": 1,
            "eval_every": 1000,
        },
    }
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    ref = _study_yaml(root / "ref", root / "base.yaml", ["second"])
    run_study(ref, say=lambda m: None)
    rec = _arms(root / "ref" / "out")["second"]
    assert rec["status"] == "done", rec
    losses = _ft_losses(Path(rec["run_dir"]))
    assert [s for s, _ in losses] == list(range(1, ARM_STEPS + 1))
    return {"base": root / "base.yaml", "ref_losses": losses}


def _freeze_arm_when(
    out: Path, arm: str, study: subprocess.Popen, ready, slice_s: float = 0.01
) -> tuple[int, Path] | None:
    """Find the arm's process (its run.json's pid; its own process group) and let it run in
    slices of `slice_s`, frozen (SIGSTOP) in between while `ready(run_dir)` looks: the frozen
    arm's pid and run directory once `ready` is true; None if the arm ended first (a loaded
    machine can deschedule this process for a whole tiny arm)."""
    deadline, pid, run_dir = time.monotonic() + 120, None, None
    while time.monotonic() < deadline:
        if study.poll() is not None:
            pytest.fail(f"the study exited ({study.returncode}) before its arm '{arm}' was ready")
        if pid is None:
            found = sorted((out / "runs").glob(f"{arm}-*")) if (out / "runs").is_dir() else []
            pid = run_info(found[0]).get("pid") if found else None
            run_dir = found[0] if pid else None
            time.sleep(0.01)
            continue
        assert run_dir is not None
        try:
            os.killpg(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return None
        if run_info(run_dir).get("status") not in ("created", "running"):  # not yet / still
            os.killpg(pid, signal.SIGCONT)
            return None
        if ready(run_dir):
            return pid, run_dir
        os.killpg(pid, signal.SIGCONT)
        time.sleep(slice_s)
    pytest.fail(f"the arm '{arm}' not ready after 120 s")


def _kill_arms(out: Path) -> None:
    """kill -9 whatever arm of a killed study may still run (each has its own group)."""
    for run_dir in (out / "runs").glob("*") if (out / "runs").is_dir() else []:
        pid = run_info(run_dir).get("pid")
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.skipif(sys.platform != "linux", reason="zombies are read from /proc")
def test_a_dead_arm_not_yet_reaped_is_not_running():
    """kill -9 of a study and its arm leaves the arm a zombie until init reaps it (seconds here;
    a container's init may never): the rerun must see it dead and resume the arm, not refuse
    it as still running."""
    from encoderlab.runs import pid_alive

    child = subprocess.Popen(["sleep", "60"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # dead, left unreaped
        assert Path(f"/proc/{child.pid}").exists() and not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid)


def _checkpoint_step(run_dir: Path) -> int:
    last = Run.open(run_dir).latest_checkpoint()
    assert last is not None
    return int(last.name[5:])


@pytest.mark.slow
def test_study_killed_keeps_finished_arms_and_the_rerun_completes(study_setup, tmp_path):
    """kill -9 of `encoderlab study run` and of its running arm, that one in the middle of a
    checkpoint write: the rerun skips the finished arm without touching a byte of it, resumes
    the killed one from its last checkpoint with the losses of an uninterrupted run, and
    writes the report."""
    study = _study_yaml(tmp_path, study_setup["base"], ["first", "second"])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "encoderlab", "study", "run", str(study)]

    def ready(run_dir: Path) -> bool:  # the study knows the run; a checkpoint half written
        return (
            _arms(out).get("second", {}).get("run_dir") == str(run_dir)
            and runs_mod.has_checkpoint(run_dir)
            and bool(list((run_dir / "checkpoints").glob(".tmp-step-*")))
        )

    for slice_s in (0.01, 0.002, 0.0005):  # a thinner slice when the write slipped through
        shutil.rmtree(out, ignore_errors=True)
        proc = subprocess.Popen(
            cmd,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            caught = _freeze_arm_when(out, "second", proc, ready, slice_s)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the study first: it gets no chance to react
            proc.wait()
        if caught is not None:
            break
        _kill_arms(out)
    else:
        pytest.fail("the arm 'second' finished within a 0.5 ms slice every time")
    pid, run_dir = caught
    os.killpg(pid, signal.SIGKILL)
    killed_at = _checkpoint_step(run_dir)
    before_kill = [r for r in Run.open(run_dir).metrics() if r["step"] <= killed_at]
    arms = _arms(out)
    assert arms["first"]["status"] == "done"
    assert arms["second"]["status"] == "running"  # stale: nothing was left to say otherwise
    first_dir = Path(arms["first"]["run_dir"])
    first_files, first_log = _files(first_dir), (out / "logs" / "first.log").read_bytes()

    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[first] done already" in done.stdout
    assert f"[second] resuming {run_dir}" in done.stdout
    assert f"resumed {run_dir} at step {killed_at} " in done.stdout
    after = _arms(out)
    assert after["first"] == arms["first"], "the finished arm is not started again"
    assert (
        _files(first_dir) == first_files and (out / "logs" / "first.log").read_bytes() == first_log
    )
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        [first_dir.name, run_dir.name]
    )
    assert after["second"]["status"] == "done" and after["second"]["run_dir"] == str(run_dir)
    assert Run.open(run_dir).info["status"] == "finished"
    assert not list((run_dir / "checkpoints").glob(".tmp-step-*")), "the killed write is gone"
    run = Run.open(run_dir)
    assert [r for r in run.metrics() if r["step"] <= killed_at] == before_kill
    same_losses(study_setup["ref_losses"], _ft_losses(run_dir), ARM_STEPS)
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "Record: first" in report and "Record: second" in report
    assert json.loads((out / "study.json").read_text())["report"] == str(
        out / "report" / "report.html"
    )


@pytest.mark.slow
def test_study_killed_arm_alone_is_recorded_and_the_rerun_resumes_it(study_setup, tmp_path):
    """kill -9 of the running arm only: the study records it as interrupted with a one-line
    reason, goes on to the next arm and exits 2 (not complete); the rerun resumes it with an
    uninterrupted run's losses and skips the others."""
    study = _study_yaml(tmp_path, study_setup["base"], ["first", "second", "third"])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "encoderlab", "study", "run", str(study)]

    def ready(run_dir: Path) -> bool:
        """Called with the arm frozen: once it has a checkpoint past step 5, it stays frozen
        while the study (which looks for its run directory every 0.5 s) records it, so an
        arm this fast (40 steps in half a second) cannot finish in between."""
        if not runs_mod.has_checkpoint(run_dir, min_step=5):
            return False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _arms(out).get("second", {}).get("run_dir") == str(run_dir):
                return True
            time.sleep(0.05)
        return False

    with open(tmp_path / "study.log", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        try:
            caught = _freeze_arm_when(out, "second", proc, ready)
            if caught is None:
                pytest.fail("the arm 'second' ended before it was caught")
            pid, run_dir = caught
            os.killpg(pid, signal.SIGKILL)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = (tmp_path / "study.log").read_text(encoding="utf-8")
    killed_at = _checkpoint_step(run_dir)
    arms = _arms(out)
    # the study is not complete: a script that goes on after `study run` must know (exit 2)
    assert proc.returncode == 2, text
    assert (
        "1 of 3 arm(s) interrupted (second: killed by SIGKILL (exit code -9)); "
        "run the study again to resume them" in text
    ), text
    assert [arms[a]["status"] for a in ("first", "second", "third")] == [
        "done",
        "interrupted",
        "done",
    ]
    msg = arms["second"]["message"]
    assert msg == "killed by SIGKILL (exit code -9)", msg
    assert f"[second] interrupted (exit code -9): {msg}; run the study again" in text

    lines: list[str] = []
    from encoderlab.study import run_study

    run_study(study, say=lines.append)
    text = "\n".join(lines)
    assert "[first] done already" in text and "[third] done already" in text
    assert f"[second] resuming {run_dir}" in text
    assert f"resumed {run_dir} at step {killed_at} " in text
    assert _arms(out)["second"]["status"] == "done"
    same_losses(study_setup["ref_losses"], _ft_losses(run_dir), ARM_STEPS)
