"""Data-parallel training under torchrun (2 CPU processes, gloo) against one process.

The same config with the same global batch must log the same losses and evaluations (dropout
off, fp32), write one run directory, and resume from its checkpoint under torchrun or in a
single process, continuing the one-process curve.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli as cli
from conftest import synthetic_lines
from encoderlab import distributed
from encoderlab.config import TrainConfig
from encoderlab.errors import UserError
from encoderlab.runs import Run
from encoderlab.runtime import Batches, share
from encoderlab.train import AGREE_EVERY, check_batch_size
from test_finetune import sentiment_rows, write_csv

MODEL = {
    "d_model": 32,
    "n_head": 2,
    "d_ff": 64,
    "n_layer": 1,
    "max_len": 32,
    "dropout": 0.0,
    "attn_dropout": 0.0,
}
TRAIN = {
    "lr": 3e-3,
    "schedule": "constant",  # a run cut at max_steps then resumed keeps the same LR
    "log_every": 1,
    "threads": 1,
    "precision": "fp32",
    "device": "cpu",
}


def torchrun(*args, cwd: Path) -> str:
    """`torchrun --nproc_per_node 2 --standalone -m encoderlab ARGS`, checked; its stdout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*cmd, "-m", "encoderlab", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # torch 2.13 warned on every rank about DDP's `broadcast_buffers` on every run
    assert "FutureWarning" not in done.stderr, done.stderr[-3000:]
    return done.stdout


def the_run(runs_dir: Path) -> Run:
    found = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(found) == 1, found  # rank 0 alone creates the run
    return Run.open(found[0])


def records(run: Run) -> list[dict]:
    return [r for r in run.metrics() if r["kind"] in ("train", "eval", "epoch")]


def assert_same_curves(a: Run, b: Run) -> float:
    """Same records at the same steps, numbers equal within float tolerance; the largest
    difference of a loss or metric."""
    ra, rb = records(a), records(b)
    assert [(r["kind"], r["step"]) for r in ra] == [(r["kind"], r["step"]) for r in rb]
    worst = 0.0
    for x, y in zip(ra, rb, strict=True):
        keys = [k for k in x if k.startswith(("train/", "valid/"))]
        assert keys == [k for k in y if k.startswith(("train/", "valid/"))]
        for k in keys:
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-5), (x["step"], k)
            worst = max(worst, abs(x[k] - y[k]))
        if x["kind"] == "train":
            assert y["tokens"] == x["tokens"]  # tokens are counted over all ranks
    return worst


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_rows_are_dealt_to_ranks_and_add_up_to_the_one_process_batch():
    order = np.random.default_rng(0).permutation(21)  # batches of 8, 8 and 5
    single = [set(b) for b in Batches(order, 8)]
    for world in (2, 4, 8):
        parts = [list(Batches(order, 8, rank=r, world=world)) for r in range(world)]
        for b, whole in enumerate(single):
            real = [set(p[b]) for r, p in enumerate(parts) if share(21, 8, b, r, world)]
            assert set().union(*real) == whole and sum(map(len, real)) == len(whole)
    # 5 rows for 8 ranks: ranks 5-7 get a stand-in row (weighted 0 by the trainer)
    assert [share(21, 8, 2, r, 8) for r in range(8)] == [1, 1, 1, 1, 1, 0, 0, 0]
    assert list(Batches(order, 8, start=2, rank=7, world=8)) == [[int(order[16])]]


def test_helpers_are_plain_calls_in_one_process():
    assert not distributed.active() and distributed.world() == 1 and distributed.is_main()
    assert distributed.on_main(lambda: "made") == "made"
    with distributed.main_first():
        pass
    summed = distributed.sum_counts({"n": 3, "loss_sum": torch.tensor(1.5)})
    assert {k: float(v) for k, v in summed.items()} == {"n": 3.0, "loss_sum": 1.5}
    assert distributed.main_values(x=2.5) == {"x": 2.5}


def test_global_batch_must_divide_among_processes(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: 2)
    check_batch_size(TrainConfig(batch_size=8))
    with pytest.raises(UserError, match="multiple of 2"):
        check_batch_size(TrainConfig(batch_size=7))


class FakeClock:
    """A rank's clock: `step_s` seconds per step, `lag` seconds behind rank 0."""

    def __init__(self, step_s: float, lag: float = 0.0) -> None:
        self.step_s, self.lag, self.setup_s, self.step = step_s, lag, 0.0, 0

    def seconds(self) -> float:
        return self.step * self.step_s - self.lag


def _two_ranks_under_a_budget(monkeypatch, eval_every: int, measure: bool, budget: float = 50.0):
    """Two ranks' StopRules on fake clocks (rank 1 slower and later), a `budget`-second budget:
    each rank's stop step, learning-rate progress per step and agreement calls, and the step
    where rank 0's clock alone stops."""
    from encoderlab.train import Plan, StopRule

    plan = Plan(micro_per_epoch=10**6, steps_per_epoch=10**6, total_steps=None, budget_s=budget)
    clocks = [FakeClock(0.1), FakeClock(0.13, lag=0.5)]
    rules = [StopRule(TrainConfig(), plan, c, "loss") for c in clocks]
    if measure:  # each rank's own forecast speed, as `forecast` measures it in a real run
        rules[0].step_s, rules[1].step_s = 0.1, 0.13
    calls = []

    def rank0_values(rank):
        def values(**xs: float) -> dict[str, float]:
            calls.append(rank)
            zero = rules[0]
            agreed = {"spent": zero._spent(), "measured": zero.step_s or 0.0}
            return {**agreed, "fixed": zero._fixed_s()} if rank else xs

        return values

    monkeypatch.setattr(distributed, "active", lambda: True)
    stopped, lrs = [None, None], [[], []]
    for step in range(1, 1000):
        for rank, (rule, clock) in enumerate(zip(rules, clocks, strict=True)):
            monkeypatch.setattr(distributed, "main_values", rank0_values(rank))
            clock.step = clocks[0].step = step - 1  # the lr is set before the step ...
            lrs[rank].append(rule.budget_used(step - 1))
            clock.step = clocks[0].step = step  # ... the stop is decided after it
            state = type("S", (), {"step": step, "evals_since_best": 0})()
            if rule.reason(state, evaluated=step % eval_every == 0) and stopped[rank] is None:
                stopped[rank] = step
        if all(stopped):
            break
    monkeypatch.setattr(distributed, "active", lambda: False)
    alone = StopRule(TrainConfig(), plan, FakeClock(0.1), "loss")  # rank 0's clock, every step
    exact = next(
        s
        for s in range(1, 1000)
        if setattr(alone.clock, "step", s) or alone.reason(type("S", (), {"step": s})(), False)
    )
    return stopped, lrs, calls, exact


def test_a_time_budget_under_ddp_agrees_without_a_collective_per_step(monkeypatch):
    """Every rank must stop at the same step and use the same learning rate, so they use rank
    0's clock; agreeing on it is a collective call (and a host sync). It happens every
    AGREE_EVERY steps, after evaluations and at every step near the end; in between each rank
    extrapolates from agreed numbers: the same answers on both ranks, and the stop within a
    step of where rank 0's clock alone would put it."""
    stopped, lrs, calls, exact = _two_ranks_under_a_budget(monkeypatch, 100, measure=False)
    assert stopped[0] == stopped[1]  # both ranks leave the loop at the same step
    assert lrs[0] == lrs[1]  # and follow the same schedule, close to rank 0's own clock
    # training seconds over the 48 s left for training (2 s: the end of the run)
    truth = [(s - 1) * 0.1 / 48 for s in range(1, len(lrs[0]) + 1)]
    assert max(abs(a - b) for a, b in zip(lrs[0], truth, strict=True)) <= AGREE_EVERY * 0.1 / 48
    assert 450 < exact <= stopped[0] <= exact + 1
    # far fewer collectives than checks: agreements every AGREE_EVERY steps, after each of the
    # 4 evaluations, and every step for the last 2 * AGREE_EVERY
    per_rank = calls.count(0)
    assert per_rank == calls.count(1)
    assert per_rank <= stopped[0] / AGREE_EVERY + 4 + 2 * AGREE_EVERY + 2
    assert per_rank < stopped[0] / 4


def test_a_time_budget_under_ddp_stops_on_time_with_evaluations_closer_than_agreements(
    monkeypatch,
):
    """Evaluations every 10 steps re-agree the clock before AGREE_EVERY steps have passed, so
    no interval ever times the speed: rank 0's measured seconds per step, agreed with the
    clock, carry the extrapolation, and the stop still lands within a step of rank 0's own
    (it came up to 10 steps late when the speed stayed unknown)."""
    budget = 50.35  # rank 0's clock alone stops at step 484, between two evaluations
    stopped, lrs, _, exact = _two_ranks_under_a_budget(monkeypatch, 10, True, budget)
    assert exact == 484
    assert stopped[0] == stopped[1] and lrs[0] == lrs[1]
    assert exact <= stopped[0] <= exact + 1
    window = budget - 2  # the training seconds: 2 s are the end of the run
    truth = [(s - 1) * 0.1 / window for s in range(1, len(lrs[0]) + 1)]
    assert max(abs(a - b) for a, b in zip(lrs[0], truth, strict=True)) <= 10 * 0.1 / window


@pytest.mark.slow
def test_torchrun_pretrain_matches_one_process_and_resumes(tmp_path):
    """2 ranks x 4 rows = one process's 8 rows, grad_accum 2: same losses per step; cut at step
    4, resumed under torchrun to 8, then in one process to 10, still on the same curve."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(400)) + "\n", encoding="utf-8")
    tok = tmp_path / "tok"  # one vocabulary for all runs (WordPiece training varies by process)
    assert cli("tokenizer", "train", "--corpus", corpus, "--vocab-size", 200, "--out", tok) == 0

    def config(name: str, max_steps: int) -> Path:
        return write_yaml(
            tmp_path / f"{name}.yaml",
            {
                "name": "tiny",
                "runs_dir": str(tmp_path / name),
                "tokenizer": {"path": str(tok)},
                "data": {
                    "corpus": [str(corpus)],
                    "cache_dir": str(tmp_path / "cache"),
                    "block_len": 32,
                    "valid_ratio": 0.1,
                },
                "model": MODEL,
                "train": {
                    **TRAIN,
                    "batch_size": 8,
                    "grad_accum": 2,
                    "epochs": None,
                    "max_steps": max_steps,
                    "eval_every": 4,
                },
            },
        )

    assert cli("pretrain", config("one", 10)) == 0
    one = the_run(tmp_path / "one")

    torchrun("pretrain", config("ddp", 4), cwd=tmp_path)
    ddp = the_run(tmp_path / "ddp")
    assert ddp.info["processes"] == 2 and ddp.info["steps"] == 4
    out = torchrun("pretrain", "--resume", ddp.path, "--set", "train.max_steps=8", cwd=tmp_path)
    assert out.count("resumed") == 1 and out.count("run directory:") == 1  # rank 0 prints
    assert ddp.info["status"] == "finished" and ddp.info["steps"] == 8
    # a checkpoint of 2 ranks is an ordinary one: a single process continues it
    assert cli("pretrain", "--resume", ddp.path, "--set", "train.max_steps=10") == 0

    assert [p.name for p in (tmp_path / "ddp").iterdir()] == [ddp.path.name]
    worst = assert_same_curves(one, ddp)
    print(f"max |difference| one process vs 2 ranks: {worst:.2e}")
    steps = [r["step"] for r in ddp.metrics() if r["kind"] == "train"]
    assert steps == list(range(1, 11))


@pytest.mark.slow
def test_torchrun_stops_every_rank_at_the_time_budget(tmp_path):
    """A 12-second whole-run budget under torchrun: both ranks stop at the same step (a rank
    that went on would wait forever in its next collective, and the test would time out),
    the run says why, and it ends near the budget."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(400)) + "\n", encoding="utf-8")
    budget_min = 0.2
    cfg = {
        "name": "timed",
        "runs_dir": str(tmp_path / "runs"),
        "tokenizer": {"kind": "wordpiece", "vocab_size": 200},
        "data": {"corpus": [str(corpus)], "block_len": 32, "valid_ratio": 0.1},
        "model": MODEL,
        "train": {**TRAIN, "batch_size": 8, "epochs": None, "time_budget_min": budget_min}
        | {"eval_every": 50, "log_every": 10, "schedule": "linear"},
    }
    torchrun("pretrain", write_yaml(tmp_path / "timed.yaml", cfg), cwd=tmp_path)
    run = the_run(tmp_path / "runs")
    assert run.info["status"] == "finished" and run.info["processes"] == 2
    assert run.info["stopped_because"] == "time budget"
    assert run.info["steps"] > 2 * AGREE_EVERY
    assert run.info["train_seconds"] < budget_min * 60 * 1.2


@pytest.mark.slow
def test_torchrun_finetune_matches_one_process(tmp_path):
    """Classification over 2 epochs of 97 rows in batches of 8: the last batch has one row, so
    rank 1 joins with a stand-in weighted 0; the losses still match one process."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(97, 0), ["id", "text", "target"])
    valid = write_csv(tmp_path / "valid.csv", sentiment_rows(21, 1), ["id", "text", "target"])
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(r["text"] for r in sentiment_rows(97, 0)) + "\n")
    tok = tmp_path / "tok"
    assert cli("tokenizer", "train", "--corpus", texts, "--vocab-size", 120, "--out", tok) == 0

    def config(name: str) -> Path:
        return write_yaml(
            tmp_path / f"{name}.yaml",
            {
                "name": "ft",
                "runs_dir": str(tmp_path / name),
                "task": {
                    "type": "classification",
                    "train": str(train),
                    "valid": str(valid),
                    "label_column": "target",
                    "max_len": 32,
                },
                "tokenizer": {"path": str(tok)},
                "model": MODEL,
                "head": {"dropout": 0.0},
                "train": {**TRAIN, "batch_size": 8, "epochs": 2, "schedule": "linear"},
            },
        )

    assert cli("finetune", config("one")) == 0
    torchrun("finetune", config("ddp"), cwd=tmp_path)
    one, ddp = the_run(tmp_path / "one"), the_run(tmp_path / "ddp")
    worst = assert_same_curves(one, ddp)
    print(f"max |difference| one process vs 2 ranks: {worst:.2e}")
    assert ddp.info["final"]["acc"] == pytest.approx(one.info["final"]["acc"])
    assert json.loads((ddp.path / "eval" / "valid.json").read_text())["checkpoint"]
    assert len([r for r in ddp.metrics() if r["kind"] == "epoch"]) == 2


NAN_ON_ONE_RANK = """
import json, os, sys
import torch
from torch import nn
from encoderlab import distributed
from encoderlab.config import TrainConfig
from encoderlab.model import make_optimizer
from encoderlab.runs import ReadOnlyRun, Run
from encoderlab.train import Objective, fit

out = sys.argv[1]
calls = {"n": 0}


def step(model, batch):
    calls["n"] += 1
    loss = nn.functional.mse_loss(model(batch["input_ids"]), batch["y"], reduction="sum")
    if distributed.rank() == 1 and calls["n"] == 3:
        loss = loss * float("nan")  # rank 1's loss at its 3rd step only
    n = torch.tensor(float(len(batch["y"])))
    return loss / n, {"loss_sum": loss.detach(), "n": n}


data = [{"input_ids": torch.full((4,), float(i)), "y": torch.ones(1)} for i in range(32)]
with distributed.session(torch.device("cpu")):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = make_optimizer(model, lr=1e-2)  # fused: a non-finite loss is skipped on the device
    cfg = TrainConfig(batch_size=8, epochs=1, log_every=2, max_nonfinite=3, device="cpu")
    run = Run(distributed.on_main(lambda: str(Run.create(out, "nan", cfg, kind="pretrain").path)))
    if not distributed.is_main():
        run = ReadOnlyRun(run.path)
    objective = Objective(
        step=step, metrics=lambda c: {"loss": c["loss_sum"] / c["n"]}, primary="loss",
        primary_mode="min", units="n",
    )
    collate = lambda items: {k: torch.stack([it[k] for it in items]) for k in items[0]}
    result = fit(model, opt, data, None, collate, objective, cfg, run, seed=0, say=lambda m: None)
    weights = [p.detach().flatten().tolist() for p in model.parameters()]
    with open(f"{out}/rank{distributed.rank()}.json", "w") as f:
        json.dump({"step": result.step, "weights": weights, "info": dict(run.info)}, f)
# as `encoderlab` does on every rank but 0 (cli._end_torchrun_worker): no interpreter teardown,
# where gloo's threads were seen to abort a finished rank (SIGABRT) once in CI
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.slow
def test_a_nonfinite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    """The non-finite check stays on the device under DDP too (the flag is summed with the
    counts): rank 1's NaN at its third step skips that update on both ranks, which keep equal
    weights, train on, and log the skipped step once."""
    script = tmp_path / "nan_ddp.py"
    script.write_text(NAN_ON_ONE_RANK)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone"]
    done = subprocess.run(
        [*cmd, str(script), str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["step"] == r1["step"] == 4  # 32 rows / 8: every step taken, one of them skipped
    assert r0["weights"] == r1["weights"]
    run = the_run(tmp_path)
    assert run.info["nonfinite_steps"] == 1 and run.info["status"] == "finished"
    assert run.info["tokens"] == 32 * 4  # both ranks' tokens, the skipped step's included


WORKER_EXIT = """
import atexit, sys
from encoderlab.cli import main
atexit.register(lambda: print("teardown ran", flush=True))
main(["runs", "list", "--runs-dir", sys.argv[1]])
"""


@pytest.mark.parametrize("rank, tears_down", [("1", False), ("0", True)])
def test_a_finished_torchrun_worker_exits_without_interpreter_teardown(tmp_path, rank, tears_down):
    """Every rank but 0 ends a successful command with os._exit (gloo's threads were seen to
    abort a finished rank at teardown); rank 0, which writes and prints, ends normally."""
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": rank}
    done = subprocess.run(
        [sys.executable, "-c", WORKER_EXIT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert ("teardown ran" in done.stdout) is tears_down


@pytest.mark.parametrize("rank", ["0", "1"])
def test_ctrl_c_under_torchrun_is_said_once_by_rank_0(tmp_path, monkeypatch, capsys, rank):
    """Every rank gets the Ctrl-C; rank 1 created no run, so it printed the generic line
    beside rank 0's `continue with ... --resume RUN`. Ranks > 0 stay quiet now."""
    import encoderlab.pretraining as pretraining

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pretraining, "pretrain", interrupted)
    monkeypatch.setenv("RANK", rank)
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"runs_dir": str(tmp_path / "runs")}))
    capsys.readouterr()
    assert cli("pretrain", f) == 130
    err = capsys.readouterr().err
    assert ("interrupted" in err) == (rank == "0"), err


@pytest.mark.slow
def test_torchrun_self_pretraining_then_fine_tuning_runs_in_one_process_group(tmp_path):
    """Each stage made its own process group; torchrun's store keys were reused and a rank
    that came late read the last group's addresses: 3 of 3 fresh runs hung."""
    train = write_csv(tmp_path / "train.csv", sentiment_rows(97, 0), ["id", "text", "target"])
    cfg = write_yaml(
        tmp_path / "sp.yaml",
        {
            "name": "sp",
            "runs_dir": str(tmp_path / "runs"),
            "task": {"type": "classification", "train": str(train), "label_column": "target",
                     "max_len": 32},
            "self_pretrain": {"text": ["task"], "steps": 6, "recipe": "budget"},
            "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
            "model": MODEL,
            "train": {**TRAIN, "batch_size": 8, "epochs": 1},
        },
    )  # fmt: skip
    out = torchrun("finetune", cfg, cwd=tmp_path)
    assert "self_pretrain: fine-tuning from" in out
    found = [p for p in (tmp_path / "runs").iterdir() if (p / "run.json").is_file()]
    runs = {Run.open(p).info["kind"]: Run.open(p) for p in found}
    assert runs["pretrain"].info["status"] == "finished"
    ft = next(r for k, r in runs.items() if k.startswith("finetune"))
    assert ft.info["status"] == "finished"


def test_an_interrupt_on_rank_0_stays_the_interrupt_when_the_others_are_gone(monkeypatch):
    """A SIGTERM to every rank during rank-0-only setup: telling the others ("crash") failed
    with "connection closed by peer", and that traceback (exit 1) replaced the interrupt."""

    def peers_gone(value):
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(distributed, "broadcast", peers_gone)
    with pytest.raises(KeyboardInterrupt):
        with distributed._announce():
            raise KeyboardInterrupt
