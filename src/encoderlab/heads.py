"""Task heads: small modules that turn encoder hidden states (B,T,d) into logits.

Every head has the same call: head(hidden, attention_mask) -> logits, so the fine-tuning
model never asks which one it holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import HeadConfig


class ClsHead(nn.Module):
    """Linear on the first token ([CLS]) — BERT's sentence classifier."""

    first_token_only = True  # reads h[:, 0] alone: see TaskModel.forward

    def __init__(self, d_model: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, n_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.drop(h[:, 0]))


class PoolerHead(nn.Module):
    """BERT's sequence classifier: dense d->d and tanh on [CLS] (the "pooler"), dropout, linear.

    It is what `BertForSequenceClassification` computes, so a run with this head exports to
    transformers, and an imported checkpoint's trained pooler can initialise `dense`.
    """

    first_token_only = True  # reads h[:, 0] alone: see TaskModel.forward

    def __init__(self, d_model: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, n_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.drop(torch.tanh(self.dense(h[:, 0]))))


class MeanHead(nn.Module):
    """Linear on the mean of the real (non-padding) tokens."""

    def __init__(self, d_model: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, n_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            pooled = h.mean(dim=1)
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return self.out(self.drop(pooled))


class CnnHead(nn.Module):
    """Kim (2014): 1-D convolutions of several widths over the top layer, ReLU,
    max-over-time pooling, dropout, linear. Padding positions never win the max.

    A text shorter than a kernel has one window for it, its tokens followed by zero vectors,
    whether its batch is padded or not (padded positions are zeroed and its first window kept),
    so a row's prediction does not depend on the rows batched with it."""

    def __init__(
        self, d_model: int, n_labels: int, dropout: float, filters: int, kernels: list[int]
    ) -> None:
        super().__init__()
        self.kernels = list(kernels)
        self.convs = nn.ModuleList(nn.Conv1d(d_model, filters, k) for k in self.kernels)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(filters * len(self.kernels), n_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = h.transpose(1, 2)  # (B,d,T)
        if mask is not None:
            x = x * mask.unsqueeze(1).to(x.dtype)
        pad = max(self.kernels) - x.shape[-1]
        if pad > 0:  # sequences shorter than the widest kernel
            x = F.pad(x, (0, pad))
            if mask is None:  # the zero vectors are padding too: only the first window sees them
                mask = torch.ones(x.shape[0], x.shape[-1] - pad, dtype=torch.long, device=x.device)
            mask = F.pad(mask, (0, pad))
        pooled = []
        for k, conv in zip(self.kernels, self.convs, strict=True):
            c = F.relu(conv(x))  # (B,filters,T-k+1)
            if mask is not None:
                # a window is valid when its last token is real; the first always (for a
                # text shorter than k, as when the batch is unpadded)
                first = torch.arange(c.shape[-1], device=c.device) == 0
                valid = (mask[:, k - 1 :].bool() | first).unsqueeze(1)
                c = c.masked_fill(~valid, 0.0)
            pooled.append(c.max(dim=-1).values)
        return self.out(self.drop(torch.cat(pooled, dim=-1)))


class TokenHead(nn.Module):
    """Per-token logits: NER tags (n_labels) or QA start/end (n_labels = 2)."""

    def __init__(self, d_model: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, n_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.out(self.drop(h))


def sequence_head(cfg: HeadConfig, d_model: int, n_labels: int) -> nn.Module:
    """The head for a whole-sequence label (classification and sentence pairs)."""
    if cfg.type == "cls":
        return ClsHead(d_model, n_labels, cfg.dropout)
    if cfg.type == "mean":
        return MeanHead(d_model, n_labels, cfg.dropout)
    if cfg.type == "pooler":
        return PoolerHead(d_model, n_labels, cfg.dropout)
    return CnnHead(d_model, n_labels, cfg.dropout, cfg.cnn_filters, cfg.cnn_kernels)
