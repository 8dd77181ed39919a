"""What a pretraining batch's loss is: masked-LM (BERT) or ELECTRA's replaced-token detection.

Each objective is the trainer's `Objective`: step(model, batch) -> (loss, counts to sum), and
metrics(summed counts). `pretraining.py` only picks one (`pretraining_setup`).

Per-source metrics: when the corpus mixes several sources (data.sources), validation batches
carry `source` (B,), each row's corpus; the counts are then also summed per source, under
"<source>/<count>", and the metrics come out as e.g. valid/ko/mlm_acc next to valid/mlm_acc.
Every source's counts are always present (zero when a batch has none), so data-parallel ranks
sum the same keys. Training batches carry no `source`: the training step costs the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import Config, FinetuneConfig
from encoderlab.data.shards import corpus_sources
from encoderlab.electra import ElectraLM, ElectraOutput
from encoderlab.model import IGNORE_INDEX, MaskedLM, Queries
from encoderlab.runtime import Batch
from encoderlab.tasks.registry import task_class, task_metrics
from encoderlab.train import Objective

Counts = dict[str, torch.Tensor]


def by_source(names: list[str], source: torch.Tensor, values: dict[str, torch.Tensor]) -> Counts:
    """Each of `values` (one entry per item, `source` its corpus index) summed per source."""
    out: Counts = {}
    for key, v in values.items():
        sums = torch.zeros(len(names), dtype=torch.float32, device=v.device)
        sums.index_add_(0, source, v.detach().float())
        for i, name in enumerate(names):
            out[f"{name}/{key}"] = sums[i]
    return out


def _row_source(batch: Batch, rows: torch.Tensor) -> torch.Tensor:
    """The corpus index of each flat position in `rows` (B*T positions, row-major)."""
    width = batch["input_ids"].shape[1]
    return batch["source"].index_select(0, torch.div(rows, width, rounding_mode="floor"))


def _mlm_metrics(c: dict[str, float], prefix: str = "") -> dict[str, float]:
    n = max(c.get(f"{prefix}masked", 0.0), 1.0)
    return {
        "mlm_loss": c.get(f"{prefix}loss_sum", 0.0) / n,
        "mlm_acc": c.get(f"{prefix}correct", 0.0) / n,
    }


def _masked_objective(
    step: Callable, metrics: Callable[[dict[str, float]], dict[str, float]], primary: str, sources
) -> Objective:
    """An objective whose loss is a mean over masked positions and whose `primary` metric is
    better higher; its metric names are every metric `metrics` gives, per source too."""
    names = tuple(metrics({f"{name}/masked": 1.0 for name in sources}))
    return Objective(step, metrics, primary, "max", units="masked", metric_names=names)


def _per_source_metrics(
    names: list[str], c: dict[str, float], one: Callable[[dict[str, float], str], dict[str, float]]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:  # a source with nothing measured has no metric (not a perfect 0.0 loss)
        if c.get(f"{name}/masked", 0.0) > 0:
            out |= {f"{name}/{k}": v for k, v in one(c, f"{name}/").items()}
    return out


def masked_queries(batch: Batch) -> Queries | None:
    """The masked positions' `Queries`, if the collate laid them out (collate_mlm does)."""
    if "masked_pos" not in batch:
        return None
    return Queries(batch["masked_pos"], batch["masked_slots"])


def mlm_objective(sources: list[str] | None = None) -> Objective:
    """BERT's masked-LM loss; `sources`: the corpus names, for per-source validation metrics."""
    names = list(sources or [])

    def step(model: nn.Module, batch: Batch):
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch.get("attention_mask"),  # absent: nothing is padded
            labels=batch["labels"],
            masked_rows=batch.get("masked_rows"),  # found on the host by collate_mlm
            queries=masked_queries(batch),
        )
        n = out.n_masked
        counts = {"loss_sum": out.loss.detach().float() * n, "correct": out.n_correct, "masked": n}
        if names and "source" in batch:
            rows = batch.get("masked_rows")
            if rows is None:
                rows = (batch["labels"].reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)
            target = batch["labels"].reshape(-1).index_select(0, rows)
            with torch.no_grad():
                logits = out.logits.float()
                per = {
                    "loss_sum": F.cross_entropy(logits, target, reduction="none"),
                    "correct": (logits.argmax(-1) == target).float(),
                    "masked": torch.ones_like(target, dtype=torch.float32),
                }
            counts |= by_source(names, _row_source(batch, rows), per)
        return out.loss, counts

    def metrics(c: dict[str, float]) -> dict[str, float]:
        return _mlm_metrics(c) | _per_source_metrics(names, c, _mlm_metrics)

    return _masked_objective(step, metrics, "mlm_acc", names)


def _electra_metrics(c: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Generator MLM loss/accuracy, discriminator loss/accuracy and replaced-token F1."""
    positions = max(c.get(f"{prefix}positions", 0.0), 1.0)
    tp, fp, fn = (c.get(f"{prefix}{k}", 0.0) for k in ("tp", "fp", "fn"))
    return _mlm_metrics(c, prefix) | {
        "disc_loss": c.get(f"{prefix}disc_loss_sum", 0.0) / positions,
        "disc_acc": c.get(f"{prefix}disc_correct", 0.0) / positions,
        "disc_f1": 2 * tp / max(2 * tp + fp + fn, 1.0),
        "replaced": c.get(f"{prefix}n_replaced", 0.0) / positions,  # share of the positions
    }


@torch.no_grad()
def _position_values(out: ElectraOutput) -> dict[str, torch.Tensor]:
    """The discriminator's counts at each of the B*T positions (padding counts nothing)."""
    logits = out.disc_logits.detach().float()
    pred, truth = logits > 0, out.replaced
    real = torch.ones_like(pred) if out.real is None else out.real
    values = {
        "disc_loss_sum": F.binary_cross_entropy_with_logits(logits, truth.float(), reduction="none")
        * real,
        "disc_correct": (pred == truth) & real,
        "tp": pred & truth & real,
        "fp": pred & ~truth & real,
        "fn": ~pred & truth & real,
        "n_replaced": truth & real,
        "positions": real,
    }
    return {k: v.reshape(-1).float() for k, v in values.items()}


@torch.no_grad()
def _masked_values(out: ElectraOutput) -> dict[str, torch.Tensor]:
    """The generator's counts at each masked position."""
    logits = out.gen_logits.detach().float()
    return {
        "loss_sum": F.cross_entropy(logits, out.target, reduction="none"),
        "correct": (logits.argmax(-1) == out.target).float(),
        "masked": torch.ones_like(out.target, dtype=torch.float32),
    }


def electra_objective(disc_weight: float, sources: list[str] | None = None) -> Objective:
    """ELECTRA's generator MLM loss + disc_weight x replaced-token detection (see electra.py);
    the primary metric is the discriminator's replaced-token F1."""
    names = list(sources or [])

    def step(model: nn.Module, batch: Batch):
        out: ElectraOutput = model(
            input_ids=batch["input_ids"],
            labels=batch["labels"],
            attention_mask=batch.get("attention_mask"),
            masked_rows=batch.get("masked_rows"),
            queries=masked_queries(batch),
        )
        per_pos = _position_values(out)
        with torch.no_grad():
            n = torch.full((), out.rows.numel(), dtype=torch.float32, device=out.rows.device)
        counts = {k: v.sum() for k, v in per_pos.items()} | {
            "loss_sum": out.mlm_loss.detach().float() * n,
            "correct": out.gen_correct,
            "masked": n,
        }
        if names and "source" in batch:
            width = batch["input_ids"].shape[1]
            positions = torch.arange(per_pos["positions"].numel(), device=n.device)
            pos_source = batch["source"].index_select(0, positions // width)
            counts |= by_source(names, pos_source, per_pos)
            counts |= by_source(names, _row_source(batch, out.rows), _masked_values(out))
        return out.loss, counts

    def metrics(c: dict[str, float]) -> dict[str, float]:
        out = _electra_metrics(c)
        out["loss"] = out["mlm_loss"] + disc_weight * out["disc_loss"]
        return out | _per_source_metrics(names, c, _electra_metrics)

    return _masked_objective(step, metrics, "disc_f1", names)


def validation_metric_names(cfg: Config | FinetuneConfig) -> tuple[str, ...]:
    """The metrics (without "valid/") a run of `cfg` reports at its evaluations: its task's
    and the loss for fine-tuning, the objective's (per source of a mix too) for pretraining.
    Empty for a task type this process does not know."""
    if isinstance(cfg, FinetuneConfig):
        cls = task_class(cfg.task.type)
        return (*task_metrics(cls), "loss") if cls is not None else ()
    return _objective(cfg).metric_names


def _objective(cfg: Config) -> Objective:
    names = [s.name for s in corpus_sources(cfg.data)]
    sources = names if len(names) > 1 else None
    if cfg.objective == "electra":
        return electra_objective(cfg.electra.disc_weight, sources)
    return mlm_objective(sources)


def pretraining_setup(cfg: Config) -> tuple[nn.Module, Objective]:
    """The model and objective `cfg.objective` names (after `cfg.model` fits the tokenizer)."""
    model = ElectraLM(cfg.model, cfg.electra) if cfg.objective == "electra" else MaskedLM(cfg.model)
    return model, _objective(cfg)
