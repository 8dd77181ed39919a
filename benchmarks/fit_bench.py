"""Shared by pretrain_throughput.py and gpu.py: encoderlab's real `fit` on synthetic MLM data,
the useful FLOPs of an MLM step, and a matmul peak measured on the spot.

Not a test. "Useful" FLOPs count what a BERT MLM step needs: every layer on every position,
the MLM head on the masked positions only, forward + backward = 3 x forward, so both models
are measured against the same figure whatever work they actually do.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from encoderlab.config import ModelConfig, TrainConfig
from encoderlab.data.masking import MaskingSpec, mask_batch
from encoderlab.data.tokens import collate_mlm
from encoderlab.model import MaskedLM, make_optimizer
from encoderlab.objectives import mlm_objective
from encoderlab.runs import Run
from encoderlab.train import fit

N_SPECIAL = 5  # ids 0..4: pad, cls, sep, mask, unk (as in pretrain_throughput.py)


class RandomBlocks(torch.utils.data.Dataset):
    """Fixed random token blocks, masked by the real per-batch masking (dynamic)."""

    def __init__(self, n: int, seq: int, vocab: int, rate: float, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.ids = rng.integers(N_SPECIAL, vocab, size=(n, seq), dtype=np.int64)
        self.ids[:, 0], self.ids[:, -1] = 1, 2
        self.spec = MaskingSpec(3, vocab, tuple(range(N_SPECIAL)), rate=rate, seed=seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, np.ndarray]]:
        index = np.asarray(indices)
        ids = self.ids[index]
        lengths = np.full(len(index), ids.shape[1])
        out, labels = mask_batch(ids, lengths, index, self.epoch, self.spec)
        return [{"input_ids": o, "labels": lab} for o, lab in zip(out, labels, strict=True)]


def useful_flops_per_step(cfg: ModelConfig, batch: int, seq: int, rate: float) -> float:
    """The model's FLOPs (forward + backward, 3x the forward's matmuls): every layer at every
    position, the MLM head at the masked ones. How MFU is usually counted; what a side skips
    beyond that (encoderlab's last block at unmasked positions) is not taken off."""
    d, f, v = cfg.d_model, cfg.d_ff, cfg.vocab_size
    gated = cfg.activation in ("geglu", "swiglu")
    per_token_layer = 2 * (4 * d * d + (3 if gated else 2) * d * f) + 4 * seq * d
    head = 2 * (d * d + d * v)
    forward = batch * seq * (cfg.n_layer * per_token_layer + rate * head)
    return 3.0 * forward


def executed_flops_per_step(
    cfg: ModelConfig, batch: int, seq: int, masked: float, query_slots: float | None
) -> float:
    """The matmul FLOPs a side really runs per step (forward + backward). `masked`: labelled
    positions per step; `query_slots`: encoderlab's last block runs its query, out projection
    and feed-forward at these (`Queries` pads each row to the batch's longest masked count;
    keys and values still everywhere) and its head at the masked positions; None: a model
    that runs every layer and its head at every position (BertForMaskedLM)."""
    d, f, v = cfg.d_model, cfg.d_ff, cfg.vocab_size
    gated = cfg.activation in ("geglu", "swiglu")
    tokens = batch * seq
    per_token_layer = 2 * (4 * d * d + (3 if gated else 2) * d * f) + 4 * seq * d
    head = 2 * (d * d + d * v)
    if query_slots is None:
        return 3.0 * tokens * (cfg.n_layer * per_token_layer + head)
    per_query = 2 * (2 * d * d + (3 if gated else 2) * d * f) + 4 * seq * d
    last = tokens * 2 * (2 * d * d) + query_slots * per_query
    return 3.0 * (tokens * (cfg.n_layer - 1) * per_token_layer + last + masked * head)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048) -> float:
    """The best of a few timed n x n matmuls: what this device does right now."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 50 if device.type == "cuda" else 3
    best = float("inf")
    for _ in range(3):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / reps)
    return 2 * n**3 / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def fit_tokens_per_s(
    cfg: ModelConfig,
    device: torch.device,
    batch: int,
    seq: int,
    steps: int,
    warmup: int,
    rate: float = 0.15,
    precision: str = "fp32",
    compile: bool = False,
    eval_every: int = 100,
    log_every: int = 10,
    valid_rows: int = 192,
    workers: int = 0,
) -> dict[str, float]:
    """encoderlab's `fit` (evaluation, logging and checkpoint cadence of configs/pretrain.yaml)
    for warmup + steps steps from the same init as the bare loop (torch.manual_seed(0)).

    tokens/s is taken between the train record at `warmup` (train.log_every is lowered to
    the warmup when that is shorter, so there is one) and the last one
    (so warmup and compilation are not counted); `workers` DataLoader processes mask and
    collate the batches (0: the main process, as the bare loop's batches are made ahead); the
    last evaluation `fit` runs is timed and
    charged once per `eval_every` steps, as the configured cadence would (an evaluation inside
    the timed window is taken out of it, so none is counted twice).
    """
    torch.manual_seed(0)
    model = MaskedLM(cfg).to(device)
    opt = make_optimizer(model, lr=1e-4, weight_decay=0.01)
    train_set = RandomBlocks(batch * (steps + warmup), seq, cfg.vocab_size, rate, seed=1)
    valid_set = RandomBlocks(valid_rows, seq, cfg.vocab_size, rate, seed=2)
    tcfg = TrainConfig(
        batch_size=batch,
        epochs=None,
        max_steps=steps + warmup,
        lr=1e-4,
        warmup_steps=100,
        eval_every=eval_every,
        log_every=min(log_every, max(1, warmup)),  # a record right after the warmup
        precision=precision,
        compile=compile,
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.create(Path(tmp), "bench", tcfg, kind="pretrain")
        fit(
            model,
            opt,
            train_set,
            valid_set,
            collate_mlm(0),
            mlm_objective(),
            tcfg,
            run,
            0,
            say=lambda m: None,
            num_workers=workers,
        )
        records = run.metrics()
    train = [r for r in records if r["kind"] == "train"]
    start = next(r for r in train if r["step"] >= warmup)
    end = train[-1]
    evals = [r for r in records if r["kind"] == "eval"]
    # an evaluation inside the timed window (made after the record at its step) is taken out
    # of the window's seconds: it is charged once, below, at the configured cadence
    inside = sum(r["eval_seconds"] for r in evals if start["step"] <= r["step"] < end["step"])
    seconds = end["time"] - start["time"] - inside
    steps_timed = end["step"] - start["step"]
    eval_s = evals[-1]["eval_seconds"] if evals else 0.0
    per_step = seconds / max(steps_timed, 1) + eval_s / eval_every
    return {
        "tokens_per_s": batch * seq / per_step,
        "step_s": per_step,
        "eval_s": eval_s,
        "steps_timed": steps_timed,
        "loss": end.get("train/mlm_loss", float("nan")),
    }
