"""Numerics of the training loop: gradient accumulation equals one big batch, whatever the
micro-batches' loss units (masked tokens, labelled rows) and at an epoch's short end."""

import json

import pytest
import torch
from torch import nn

from encoderlab.config import TrainConfig
from encoderlab.runs import Run
from encoderlab.train import Objective, fit
from test_train import collate


class Rows(torch.utils.data.Dataset):
    """46 rows (not a multiple of 8: the epoch ends on a short batch); about a third of the
    rows unlabelled (-100), so micro-batches hold different numbers of labelled rows."""

    def __init__(self, n=46):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 8, generator=g)
        self.y = (self.x[:, 0] + self.x[:, 1] > 0).long()
        self.y[torch.rand(n, generator=g) < 0.35] = -100

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


def objective(units):
    """Cross-entropy, a mean over the labelled rows ("n") or, units None, over all rows."""

    def step(model, batch):
        logits = model(batch["input_ids"])
        labels = batch["labels"]
        if units is None:
            labels = labels.clamp_min(0)
        n = (labels != -100).sum().float()
        loss = nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
        loss = loss / n.clamp_min(1.0)
        return loss, {"loss_sum": loss.detach() * n, "n": n}

    def metrics(c):
        return {"loss": c["loss_sum"] / max(c["n"], 1.0)}

    return Objective(step, metrics, "loss", "min", units=units, metric_names=("loss",))


def train(tmp_path, name, units, fused, **kw):
    cfg = TrainConfig(lr=1e-2, epochs=2, log_every=1, checkpoint_minutes=None, **kw)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=fused)
    run = Run.create(tmp_path / "runs", name, cfg, kind="toy")
    fit(model, opt, Rows(), None, collate, objective(units), cfg, run, seed=1, say=lambda m: None)
    losses = [r["train/loss"] for r in run.metrics() if r["kind"] == "train"]
    return model, losses


@pytest.mark.parametrize("units", ["n", None])
@pytest.mark.parametrize("fused", [False, True])
def test_accumulation_gives_the_update_of_one_big_batch(tmp_path, units, fused):
    """batch 4 x grad_accum 2 == batch 8: micro-batches with more labelled rows count more,
    and the epoch's last group (4 + 2 rows) is a mean over its 6 rows. Each micro-batch's
    loss divided by grad_accum weighted them as equals (train losses up to 0.018 apart)."""
    big, big_losses = train(tmp_path, "big", units, fused, batch_size=8)
    acc, acc_losses = train(tmp_path, "acc", units, fused, batch_size=4, grad_accum=2)
    assert len(big_losses) == len(acc_losses) == 12  # ceil(46 / 8) = 6 steps per epoch
    assert acc_losses == pytest.approx(big_losses, abs=1e-5)
    for a, b in zip(acc.parameters(), big.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_nan_first_evaluation_is_never_the_best(tmp_path):
    """valid/loss NaN at the first evaluation (e.g. an fp16 overflow) became the best, and no
    finite value beat it (comparisons with NaN are false): no later best and an early stop
    after `patience` evaluations. Now NaN is never better and the finite values compete."""
    values = iter([float("nan"), 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    cfg = TrainConfig(
        batch_size=8,
        lr=1e-2,
        epochs=1,
        eval_every=1,
        early_stop_metric="valid/loss",
        early_stop_patience=2,
        checkpoint_minutes=None,
    )
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 2))
    run = Run.create(tmp_path / "runs", "nan", cfg, kind="toy")
    result = fit(
        model,
        torch.optim.AdamW(model.parameters(), lr=cfg.lr),
        Rows(),
        Rows(8),
        collate,
        objective("n"),
        cfg,
        run,
        seed=1,
        evaluator=lambda m: {"loss": next(values)},
        say=lambda m: None,
    )
    assert result.stopped_because == "finished" and result.step == 6
    assert result.best == {"metric": "valid/loss", "value": 0.5, "step": 6}

    # and the run's JSON files stay JSON (no NaN token, which other tools cannot parse): the
    # undefined value is null, and Run.metrics leaves it out
    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in a JSON file")

    json.loads((run.path / "run.json").read_text(), parse_constant=refuse)
    logged = [json.loads(line, parse_constant=refuse) for line in open(run.path / "metrics.jsonl")]
    first_eval = next(r for r in logged if "valid/loss" in r)
    assert first_eval["valid/loss"] is None and first_eval["step"] == 1
    read = [r["valid/loss"] for r in run.metrics() if "valid/loss" in r]
    assert read == [0.9, 0.8, 0.7, 0.6, 0.5, 0.5]  # (the epoch's record repeats the last)


def test_a_resume_rewrites_an_older_runs_nan_as_null(tmp_path):
    """Runs made before null replaced NaN: truncating metrics.jsonl for a resume wrote their
    NaN back."""
    run = Run.create(tmp_path / "runs", "old", TrainConfig(), kind="toy")
    lines = ['{"step": 1, "kind": "eval", "valid/loss": NaN}', '{"step": 2, "kind": "train"}']
    (run.path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    run.truncate_metrics(1)

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in metrics.jsonl")

    text = (run.path / "metrics.jsonl").read_text()
    assert [json.loads(line, parse_constant=refuse) for line in text.splitlines()] == [
        {"step": 1, "kind": "eval", "valid/loss": None}
    ]
