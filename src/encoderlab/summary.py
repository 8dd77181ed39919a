"""`encoderlab model show`: a layer-by-layer table of a model, from one dummy forward pass.

Shapes come from forward hooks on the top-level parts (embeddings, each block, the final norm,
the MLM head), so the table shows what the code really does, not what a formula says it should.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from encoderlab.config import ModelConfig
from encoderlab.errors import UserError
from encoderlab.model import Encoder, MaskedLM, num_params


@dataclass
class LayerRow:
    name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int  # parameters first seen in this part (a tied matrix counts where it first appears)
    note: str = ""


def _parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The top-level parts of an Encoder or of a model holding one as `.encoder`, in order."""
    encoder = model if isinstance(model, Encoder) else getattr(model, "encoder", None)
    if not isinstance(encoder, Encoder):
        raise TypeError(
            f"expected an Encoder or a model with an .encoder, got {type(model).__name__}"
        )
    prefix = "" if encoder is model else "encoder."
    parts: list[tuple[str, nn.Module]] = [(prefix + "embeddings", encoder.embeddings)]
    parts += [(f"{prefix}blocks.{i}", b) for i, b in enumerate(encoder.blocks)]
    if encoder.ln_f is not None:
        parts.append((prefix + "ln_f", encoder.ln_f))
    for name, child in model.named_children():
        if child is not encoder:  # heads: mlm_head, or a task head later
            parts.append((name, child))
    return parts


def _shape(t: object) -> tuple[int, ...]:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else ()


def layer_rows(model: nn.Module, seq_len: int, batch: int = 1) -> list[LayerRow]:
    """Run a dummy (batch, seq_len) forward in eval mode and record each part's shapes and params."""
    parts = _parts(model)
    records: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    hooks = []
    for name, module in parts:

        def hook(mod: nn.Module, args: tuple, out: object, name: str = name) -> None:
            records[name] = (_shape(args[0]) if args else (), _shape(out))

        hooks.append(module.register_forward_hook(hook))
    param = next(model.parameters())
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=param.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(ids)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()

    rows: list[LayerRow] = []
    seen: set[int] = set()
    for name, module in parts:
        n, shared = 0, False
        for p in module.parameters():
            if id(p) in seen:
                shared = True
                continue
            seen.add(id(p))
            n += p.numel()
        inp, out = records.get(name, ((), ()))
        rows.append(LayerRow(name, inp, out, n, "decoder tied" if shared else ""))
    return rows


class WithHead(nn.Module):
    """An encoder and a fine-tuning head, run as a fine-tuning model runs them (every position
    through every block: the table shows the shapes, not the first-token shortcut)."""

    def __init__(self, encoder: Encoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(input_ids), None)


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def render_summary(
    cfg: ModelConfig, seq_len: int, batch: int = 1, head: tuple[str, nn.Module] | None = None
) -> Table:
    """A rich Table for a MaskedLM built from `cfg`, or with `head` (what it is, the module)
    the fine-tuning model: the encoder and that head. One row per part, then the totals."""
    if cfg.vocab_size is None:
        raise UserError(
            "model.vocab_size is not set; it normally comes from the tokenizer. "
            "Set it, e.g. --set model.vocab_size=8000"
        )
    if not 1 <= seq_len <= cfg.max_len:
        raise UserError(
            f"sequence length {seq_len} must be between 1 and model.max_len={cfg.max_len}"
        )
    model = MaskedLM(cfg) if head is None else WithHead(Encoder(cfg), head[1])
    rows = layer_rows(model, seq_len, batch)
    title = (
        f"{'MaskedLM' if head is None else 'Encoder + ' + head[0]}: {cfg.n_layer} layers, "
        f"d {cfg.d_model}, {cfg.n_head}x{cfg.head_dim} heads, ff {cfg.d_ff} {cfg.activation}, "
        f"{cfg.norm}-LN, vocab {cfg.vocab_size:,}"
    )
    table = Table(title=title, show_footer=False)
    table.add_column("Layer", no_wrap=True)
    table.add_column("Input shape", no_wrap=True)
    table.add_column("Output shape", no_wrap=True)
    table.add_column("Params", justify="right", no_wrap=True)
    table.add_column("Note", style="dim")
    for r in rows:
        table.add_row(r.name, _fmt(r.input_shape), _fmt(r.output_shape), f"{r.params:,}", r.note)
    table.add_section()
    table.add_row(
        "Total params", "", "", f"{num_params(model):,}", "tied once" if head is None else ""
    )
    table.add_row("Non-embedding", "", "", f"{num_params(model, non_embedding=True):,}", "")
    return table


def print_model_summary(
    cfg: ModelConfig,
    seq_len: int,
    console: Console | None = None,
    head: tuple[str, nn.Module] | None = None,
) -> None:
    """What `encoderlab model show` prints."""
    console = console or Console()
    console.print(render_summary(cfg, seq_len, head=head))
