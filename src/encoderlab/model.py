"""A BERT-style Transformer encoder and its masked-language-model head, in one file.

Read it top to bottom: embeddings -> attention -> feed-forward -> block -> encoder -> MLM head.
The names of the submodules are part of the checkpoint format (hf.py maps them to and from
Hugging Face BERT), so keep them stable:

    encoder.embeddings.{tok,pos,seg,ln}  (pos: learned positions only; sinusoidal tables and
                                       ALiBi slopes are computed, not saved)
    encoder.blocks.{i}.{ln1,attn.qkv,attn.out,ln2,ff.fc1,ff.fc2}
    encoder.ln_f                      (pre-LN only)
    mlm_head.{dense,ln,decoder}       (decoder.weight is embeddings.tok.weight when tied;
                                       mlm_head=plain has the decoder only)

Four choices here are about speed rather than modelling, and the trainer reuses them:
the MLM head and the last block's queries run only on the positions a head reads (`Queries`:
the ~15% masked ones, or [CLS]; the vocabulary projection is the single biggest matmul of a
small encoder), its loss and accuracy come from one pass (`vocab_cross_entropy`),
`make_optimizer` builds AdamW with the fused kernel, and `Dropout` draws its CPU masks the
cheaper way.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from encoderlab.config import ModelConfig, TrainConfig
from encoderlab.errors import UserError

IGNORE_INDEX = -100  # label value for positions the MLM loss skips (same as PyTorch/HF)
# SDPA's kernels on a GPU, all but cuDNN's: it builds a plan for every new (batch, length)
# shape, and with fine-tuning's varying lengths that was most of the first epoch on an H200
# (2026-11-29, MiniLM on tweets: 26 s of SDPA calls in a 58 s run; the first evaluation
# 12.8 s, the next ones 0.2 s). Flash and memory-efficient attention need no plan per shape.
GPU_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


# ---------------------------------------------------------------------------------------------
# Embeddings


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """Fixed positions of Vaswani et al.: sin on even features, cos on odd ones."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)[:, : d_model // 2]
    return table


def cpu_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout with its mask drawn from 16 random bits per element, four per int64 draw: the
    same Bernoulli(1 - p) mask (p to 1/65536) for about half the time of `bernoulli_` on a
    CPU. The mask is one float tensor, already scaled by 1/(1-p), so it costs one multiply
    forward and one backward."""
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
    words.random_(-(2**63), None)  # the full 64-bit range: four uniform int16 lanes
    # at most 65535/65536 dropped: a p within 1/131072 of 1 rounded to 65536, a threshold
    # past int16's range that wrapped round to keep everything (times 1/(1-p))
    threshold = min(round(p * 65536), 65535) - 32768
    keep = words.view(torch.int16)[:n].view(x.shape) >= threshold
    return x * keep.to(x.dtype).mul_(1 / (1 - p))


class Dropout(nn.Dropout):
    """nn.Dropout that uses `cpu_dropout` on a CPU, where `bernoulli_` was a tenth of a
    fine-tuning step. Elsewhere (GPUs) PyTorch's fused kernel is the faster one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.p >= 1.0:
            return super().forward(x)
        return cpu_dropout(x, self.p)


class Embeddings(nn.Module):
    """token + position (+ segment), then LayerNorm and dropout, as BERT does."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.vocab_size is not None
        if not 0 <= cfg.pad_id < cfg.vocab_size:
            raise ValueError(
                f"pad_id={cfg.pad_id} is outside the vocabulary (size {cfg.vocab_size})"
            )
        self.max_len = cfg.max_len
        # padding_idx: the pad row gets no gradient from the lookup (BERT does the same)
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.position == "learned" else None
        table = None  # alibi: positions enter as attention biases (Encoder) instead
        if "sinusoidal" in cfg.position:
            table = sinusoidal_table(cfg.max_len, cfg.d_model)
            if cfg.position == "scaled_sinusoidal":
                table = table / math.sqrt(cfg.d_model)
        # not persistent: it is a function of the config, so checkpoints need not carry it
        self.register_buffer("pos_table", table, persistent=False)
        self.seg = nn.Embedding(cfg.n_segments, cfg.d_model) if cfg.n_segments > 0 else None
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.layernorm_eps)
        self.drop = Dropout(cfg.dropout)

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        T = input_ids.shape[1]
        x = self.tok(input_ids)
        if self.pos is not None:
            x = x + self.pos.weight[:T]  # (B,T,d) + (T,d)
        elif self.pos_table is not None:
            x = x + self.pos_table[:T]
        if self.seg is not None:
            if token_type_ids is None:
                # all segment 0: add the one row instead of a (B,T) lookup and its scatter backward
                x = x + self.seg.weight[0]
            else:
                x = x + self.seg(token_type_ids)
        # token_type_ids are ignored when the model has no segment embedding (n_segments = 0)
        return self.drop(self.ln(x))


# ---------------------------------------------------------------------------------------------
# Attention and feed-forward


class SelfAttention(nn.Module):
    """Multi-head self-attention; one fused qkv matmul, the softmax inside PyTorch's SDPA.

    n_head * head_dim may differ from d_model: `out` projects back to d_model either way.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.head_dim
        inner = cfg.n_head * cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * inner)  # rows: [q; k; v], each head-major
        self.out = nn.Linear(inner, cfg.d_model)
        self.attn_dropout = cfg.attn_dropout

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, queries: Queries | None = None
    ) -> torch.Tensor:
        """x: (B,T,d). mask: bool (B,1,1,T), True where the key is a real token; None: all real;
        or a float bias added to the scores (ALiBi: (H,T,T), or (B,H,Tq,T) with padding).

        queries: ask attention queries for those positions alone (keys and values for all)
        and return their (N,d) outputs instead of (B,T,d); see `Queries`.
        """
        B, T, _ = x.shape
        H, hd = self.n_head, self.head_dim
        if queries is None:
            q, k, v = self.qkv(x).view(B, T, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)
        else:  # the q rows of the fused weight on the wanted positions, k and v on all
            w, b = self.qkv.weight, self.qkv.bias
            xq = queries.gather(x)  # (B,M,d)
            q = F.linear(xq, w[: H * hd], b[: H * hd]).view(B, -1, H, hd).transpose(1, 2)
            kv = F.linear(x, w[H * hd :], b[H * hd :]).view(B, T, 2, H, hd)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
        if mask is not None and mask.is_floating_point() and mask.dtype != q.dtype:
            # an ALiBi bias (float32) in autocast's dtype; its padded keys stay finite, so a
            # row that is all padding averages instead of giving NaN
            mask = mask.to(q.dtype).clamp_min(torch.finfo(q.dtype).min)
        if self.training and self.attn_dropout > 0 and x.device.type == "cpu":
            # SDPA drops attention weights with `bernoulli_` on its slow path; the same maths
            # with `cpu_dropout` makes a CPU fine-tuning step a few per cent faster
            scores = (q * hd**-0.5) @ k.transpose(-2, -1)  # (B,H,Tq,T)
            if mask is not None and mask.dtype == torch.bool:  # finite: a row of all padding
                # averages (-inf gave NaN there, and NaN gradients to every weight it touched)
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            elif mask is not None:
                scores = scores + mask
            y = cpu_dropout(scores.softmax(-1), self.attn_dropout) @ v
        else:
            with sdpa_kernel(GPU_ATTENTION) if x.is_cuda else contextlib.nullcontext():
                y = F.scaled_dot_product_attention(
                    q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
                )  # (B,H,Tq,hd)
        y = y.transpose(1, 2).reshape(-1, H * hd)  # (B*Tq, H*hd)
        if queries is None:
            return self.out(y).view(B, T, -1)
        return self.out(queries.keep(y))


class FeedForward(nn.Module):
    """Position-wise MLP. geglu/swiglu are the gated variants of Shazeer (2020):
    act(x W) * (x V) then W2, with W and V fused into one fc1 of width 2 * d_ff."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gated = cfg.activation in ("geglu", "swiglu")
        self.act = {
            "relu": F.relu,
            "gelu": F.gelu,
            "swish": F.silu,
            "geglu": F.gelu,
            "swiglu": F.silu,
        }[cfg.activation]
        self.fc1 = nn.Linear(cfg.d_model, (2 if self.gated else 1) * cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.gated:
            a, b = h.chunk(2, dim=-1)
            h = self.act(a) * b
        else:
            h = self.act(h)
        return self.fc2(h)


class Block(nn.Module):
    """One Transformer layer.

    post-LN (original BERT): x = LN(x + drop(attn(x))); x = LN(x + drop(ff(x)))
    pre-LN  (more stable at depth / high lr): x = x + drop(attn(LN(x))); x = x + drop(ff(LN(x)))
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.layernorm_eps)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.layernorm_eps)
        self.ff = FeedForward(cfg)
        self.drop = Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, queries: Queries | None = None
    ) -> torch.Tensor:
        """queries: see Encoder.forward; every position still serves as a key and value."""
        keep = x if queries is None else queries.select(x)
        if self.pre_norm:
            x = keep + self.drop(self.attn(self.ln1(x), mask, queries))
            return x + self.drop(self.ff(self.ln2(x)))
        x = self.ln1(keep + self.drop(self.attn(x, mask, queries)))
        return self.ln2(x + self.drop(self.ff(x)))


def key_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B,T) 1/0 -> SDPA's (B,1,1,T) bool: every query may look at every real key; padded
    keys are hidden. Padded *queries* still get (ignored) outputs, which keeps kernels dense.

    A mask without padding is dropped, since SDPA is faster without one (flash kernels), but
    only where finding that out is free: on a GPU it would wait for the device, so there the
    callers pass None themselves when their collate saw no padding (`tasks.base.model_inputs`).
    """
    if attention_mask is None:
        return None
    on_host = attention_mask.device.type == "cpu" and not torch.compiler.is_compiling()
    if on_host and bool(attention_mask.all()):
        return None
    return attention_mask[:, None, None, :].bool()


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's per-head slopes (Press et al. 2022): a geometric series 2^(-8/n) ... 2^(-8); for
    a head count that is not a power of two, the closest one's slopes plus every other slope
    of the next (as the paper's code and MosaicBERT do)."""

    def series(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    closest = 2 ** math.floor(math.log2(n_head))
    slopes = series(closest) + series(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes)


def alibi_bias(
    slopes: torch.Tensor, qpos: torch.Tensor, T: int, mask: torch.Tensor | None
) -> torch.Tensor:
    """Attention scores' bias -slope_h * |i - j|, both directions (MosaicBERT's): attention
    starts out local, so MLM learns from the neighbours from the first steps instead of
    waiting for the position table to be learned. slopes (H,1,1); qpos (Tq,), or (B,1,M) for
    `Queries`; returns float32 (H,Tq,T) or (B,H,M,T), padded keys at the float32 minimum."""
    kpos = torch.arange(T, device=slopes.device)
    bias = -slopes.float() * (qpos[..., :, None] - kpos).abs()
    if mask is not None:
        bias = bias.masked_fill(~mask, torch.finfo(torch.float32).min)
    return bias


@dataclass
class Queries:
    """The positions whose final states a head reads: the MLM head the masked ones (~15 %), a
    [CLS] head the first. The last block asks its attention queries and runs everything after
    attention (out projection, feed-forward) for these alone, which is all its output feeds.

    pos (B,M): positions in each row, padded with 0 where rows want fewer than M;
    slots (N,): the wanted ones among those B*M, flat, in order; None: all of them.
    """

    pos: torch.Tensor
    slots: torch.Tensor | None = None

    @classmethod
    def first(cls, input_ids: torch.Tensor) -> Queries:
        return cls(torch.zeros(input_ids.shape[0], 1, dtype=torch.long, device=input_ids.device))

    @classmethod
    def at(cls, rows: torch.Tensor, shape: tuple[int, int]) -> Queries:
        """From ascending flat indices into B*T positions (what nonzero() gives); the states
        come back in the order of `rows`. It reads one number to the host (the longest row's
        count), so collates call it there and the forward has no sync."""
        B, T = shape
        row, col = rows // T, rows % T
        counts = torch.bincount(row, minlength=B)
        width = max(int(counts.max()), 1) if rows.numel() else 1
        rank = torch.arange(rows.numel(), device=rows.device) - (counts.cumsum(0) - counts)[row]
        pos = torch.zeros(B, width, dtype=torch.long, device=rows.device)
        pos[row, rank] = col
        return cls(pos, row * width + rank)

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,d) -> (B,M,d)"""
        return x.gather(1, self.pos[..., None].expand(-1, -1, x.shape[-1]))

    def keep(self, flat: torch.Tensor) -> torch.Tensor:
        """(B*M,d) -> (N,d)"""
        return flat if self.slots is None else flat.index_select(0, self.slots)

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """(B,T,d) -> (N,d)"""
        return self.keep(self.gather(x).reshape(-1, x.shape[-1]))


# ---------------------------------------------------------------------------------------------
# The encoder and the MLM model


def init_weights(module: nn.Module, std: float) -> None:
    """BERT's init: N(0, std) weights, zero biases, identity LayerNorms, zero pad embedding."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@contextlib.contextmanager
def without_init() -> Iterator[None]:
    """Build modules whose every weight a strict checkpoint load sets next, without
    initialising them first: that init is most of building a model (a BERT-base encoder 3 s
    on 2 CPU cores, MiniLM 0.6 s), spent on values the load overwrites. Only for such
    modules: a parameter no load sets would keep whatever memory was there. Like
    transformers' no_init_weights it swaps torch.nn.init's functions while the block runs,
    so a model built in another thread meanwhile would skip its init too."""
    names = [n for n in vars(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    for n in names:
        setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


class Encoder(nn.Module):
    """The backbone: ids -> hidden states (B,T,d_model). Task heads sit on top of this."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("ModelConfig.vocab_size is None; set it (usually from the tokenizer)")
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        # pre-LN leaves the residual stream un-normalised, so normalise once at the end
        self.ln_f = nn.LayerNorm(cfg.d_model, eps=cfg.layernorm_eps) if cfg.norm == "pre" else None
        # a function of the config, not saved (None without ALiBi)
        slopes = alibi_slopes(cfg.n_head)[:, None, None] if cfg.position == "alibi" else None
        self.register_buffer("alibi_slopes", slopes, persistent=False)
        init_weights(self, cfg.init_std)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        queries: Queries | None = None,
    ) -> torch.Tensor:
        """input_ids (B,T); attention_mask (B,T), 1 = real token, 0 = padding, None = no padding.

        Returns (B,T,d), or with `queries` only those positions' states, (N,d), at a saving:
        the last block asks attention queries and runs its per-position part for them alone.
        For MLM (~15 % of positions) that removes ~80 % of the last block's work, for a [CLS]
        head nearly all but its keys and values; the states are the same either way.
        """
        T = input_ids.shape[1]
        if T > self.cfg.max_len:
            raise UserError(
                f"sequence length {T} is longer than model.max_len={self.cfg.max_len}; "
                "truncate the input (data.block_len) or use a model with a larger max_len"
            )
        mask = key_mask(attention_mask)
        x = self.embeddings(input_ids, token_type_ids)
        slopes, last = self.alibi_slopes, len(self.blocks) - 1
        bias = mask  # with ALiBi: the distance bias, padded keys hidden in it
        if slopes is not None:
            bias = alibi_bias(slopes, torch.arange(T, device=x.device), T, mask)
        for i, block in enumerate(self.blocks):
            asked = queries if i == last else None
            if asked is not None and slopes is not None:  # the queries sit at asked.pos
                bias = alibi_bias(slopes, asked.pos[:, None, :], T, mask)
            x = block(x, bias, asked)
        if last < 0 and queries is not None:  # no blocks (n_layer >= 1 is validated)
            x = queries.select(x)
        return self.ln_f(x) if self.ln_f is not None else x


class MLMHead(nn.Module):
    """BERT's prediction head: dense -> gelu -> LayerNorm -> vocabulary projection (+ bias).

    model.mlm_head=plain drops the dense+LayerNorm transform: the encoder's (already
    normalised) output goes straight onto the vocabulary projection, which is then the only
    submodule (`decoder`), so checkpoints keep the same names for what remains.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.vocab_size is not None
        self.plain = cfg.mlm_head == "plain"
        if not self.plain:
            self.dense = nn.Linear(cfg.d_model, cfg.d_model)
            self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.layernorm_eps)
        self.decoder = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.plain:
            return self.decoder(h)
        return self.decoder(self.ln(F.gelu(self.dense(h))))


class _VocabCrossEntropy(torch.autograd.Function):
    """Cross-entropy per row of (N,V) logits, and whether the target is the row's argmax.

    F.cross_entropy + argmax make four (N,V) tensors per step (log-probabilities, the
    zero-filled gradient of the loss, the gradient of the logits, and argmax's slow pass);
    here the one exp(logits - max) tensor becomes the gradient in place (so the graph is
    backpropagated once: a second backward is autograd's in-place error). On a 2-core CPU
    that is ~17 ms less of a ~440 ms pretraining step (2026-12-02).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor):  # type: ignore[override]
        x = logits.float()
        top, argmax = x.max(dim=1)  # one pass for both: argmax alone is slower on a CPU
        e = torch.sub(x, top[:, None]).exp_()
        s = e.sum(dim=1)
        loss = top + s.log() - x.gather(1, target[:, None]).squeeze(1)
        correct = argmax == target
        ctx.save_for_backward(e, s, target)
        ctx.dtype = logits.dtype
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, _grad_correct: torch.Tensor | None):  # type: ignore[override]
        e, s, target = ctx.saved_tensors
        g = grad_loss.float()
        grad = e.mul_((g / s)[:, None])  # softmax * g, in the tensor forward made
        grad.scatter_add_(1, target[:, None], -g[:, None])  # minus g at the target
        return grad.to(ctx.dtype), None


def vocab_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean cross-entropy over the rows, number of rows whose target is the argmax)."""
    loss, correct = _VocabCrossEntropy.apply(logits, target)
    return loss.mean(), correct.sum()


@dataclass
class MLMOutput:
    loss: torch.Tensor | None  # mean cross-entropy over the masked positions; None without labels
    logits: torch.Tensor  # (n_masked, V) with labels, (B,T,V) without
    n_correct: torch.Tensor  # int64 scalar: argmax == label at masked positions
    n_masked: torch.Tensor  # int64 scalar: number of positions with a label


class MaskedLM(nn.Module):
    """Encoder + MLM head, for pretraining."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.mlm_head = MLMHead(cfg)
        init_weights(self.mlm_head, cfg.init_std)
        if cfg.tie_mlm:
            self.mlm_head.decoder.weight = self.encoder.embeddings.tok.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_rows: torch.Tensor | None = None,
        queries: Queries | None = None,
    ) -> MLMOutput:
        """labels (B,T): the original id at predicted positions, IGNORE_INDEX (-100) elsewhere.

        masked_rows: those positions' flat indices, and queries: `Queries.at(masked_rows)`, if
        the caller has them (the MLM collate computes both on the host): finding them here is
        a nonzero() and a count, device-to-host syncs.
        """
        if labels is None:
            h = self.encoder(input_ids, attention_mask, token_type_ids)
            zero = torch.zeros((), dtype=torch.long, device=h.device)
            return MLMOutput(loss=None, logits=self.mlm_head(h), n_correct=zero, n_masked=zero)
        # Only ~15% of positions carry a label: the loss depends on nothing else, so the head
        # (with its d x V matmul, the biggest of a small model) and the last block's queries
        # and per-position part run on those rows only.
        idx = masked_rows
        if idx is None:
            idx = (labels.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)
        if queries is None:
            queries = Queries.at(idx, labels.shape)
        target = labels.reshape(-1).index_select(0, idx)
        h = self.encoder(input_ids, attention_mask, token_type_ids, queries)  # (N,d)
        logits = self.mlm_head(h)
        if idx.numel() > 0:
            loss, n_correct = vocab_cross_entropy(logits, target)
        else:  # nothing to predict: a zero that still backpropagates (mean of nothing is NaN)
            loss = logits.sum() * 0.0
            n_correct = torch.zeros((), dtype=torch.long, device=h.device)
        n_masked = torch.full((), idx.numel(), dtype=torch.long, device=h.device)  # a fill, no copy
        return MLMOutput(loss=loss, logits=logits, n_correct=n_correct, n_masked=n_masked)


# ---------------------------------------------------------------------------------------------
# Parameter counting and the optimizer


def _embedding_params(model: nn.Module) -> set[int]:
    return {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}


def num_params(model: nn.Module, non_embedding: bool = False) -> int:
    """Unique parameters (a tied matrix counts once); non_embedding drops the embedding tables."""
    skip = _embedding_params(model) if non_embedding else set()
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def param_summary(model: nn.Module) -> str:
    return (
        f"Total params: {num_params(model):,}\n"
        f"Non-embedding params: {num_params(model, non_embedding=True):,}"
    )


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices (ndim >= 2), not biases or LayerNorm gains.

    Works for any module (task heads too); frozen parameters are left out, tied ones appear once.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for p in module.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


_FUSED_DTYPES = {torch.float32, torch.float16, torch.bfloat16, torch.float64}


def make_optimizer(
    model_or_groups: nn.Module | Iterable[dict],
    lr: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `param_groups`, with the fused kernel (one pass over all parameters per step
    instead of a dozen elementwise ops per tensor). It is supported on CPU and CUDA; other
    devices fall back to foreach."""
    groups = (
        param_groups(model_or_groups, weight_decay)
        if isinstance(model_or_groups, nn.Module)
        else list(model_or_groups)
    )
    devices = {p.device.type for g in groups for p in g["params"]}
    dtypes = {p.dtype for g in groups for p in g["params"]}
    fused = devices <= {"cpu", "cuda"} and dtypes <= _FUSED_DTYPES
    kwargs: dict = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(
        groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **kwargs
    )


def prepare_training(
    model: nn.Module,
    train: TrainConfig,
    device: torch.device,
    groups: Callable[[nn.Module], list[dict]] | None = None,
) -> tuple[nn.Module, torch.optim.AdamW]:
    """The one model-building step of pretraining and fine-tuning: the model on its device
    (the place for options such as compiling it), then the fused AdamW of `make_optimizer`
    over `groups(model)` (default: `param_groups` of the whole model)."""
    model.to(device)
    params = model if groups is None else groups(model)
    optimizer = make_optimizer(params, train.lr, train.weight_decay, train.betas, train.adam_eps)
    return model, optimizer
