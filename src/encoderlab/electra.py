"""ELECTRA pretraining (Clark et al. 2020): a small MLM generator fills the masked positions with
samples, and the model proper, the discriminator, learns on *every* position whether its token
was replaced. At small compute this teaches the encoder more per step than MLM's 15% of labels.

The discriminator is an ordinary `Encoder` under the name `encoder`, so a run's checkpoint reads
like an MLM run's for everything that wants "the pretrained encoder" (`runs.encoder_weights`,
fine-tuning, export). Checkpoint names:

    encoder.*                                  the discriminator (model.py's names)
    disc_head.{dense,out}                      replaced-token logit per position
                                               (HF: discriminator_predictions.{dense,dense_prediction})
    generator.{project,blocks.i,ln_f,head.{dense,ln,decoder}}

The generator reads the discriminator's embeddings (token, position, segment, LayerNorm) and,
when narrower, projects them to its width; its output projection is the token embedding matrix
(tied, so safetensors stores it once, as encoder.embeddings.tok.weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoderlab.config import Config, ElectraConfig, ModelConfig
from encoderlab.errors import UserError
from encoderlab.model import (
    IGNORE_INDEX,
    Block,
    Encoder,
    Queries,
    alibi_bias,
    alibi_slopes,
    init_weights,
    key_mask,
    vocab_cross_entropy,
)

_ACT = {"relu": F.relu, "gelu": F.gelu, "swish": F.silu, "geglu": F.gelu, "swiglu": F.silu}


def check_new_run(cfg: Config) -> None:
    """Settings a new ELECTRA run would silently ignore, refused before anything is made (a
    resumed run keeps what it started with): the MLM head options, which only objective: mlm
    has (the generator always projects through dense + LayerNorm onto the tied embeddings), and
    a generator width given twice, by electra.generator_scale and electra.generator_d_model."""
    m, e = cfg.model, cfg.electra
    if cfg.objective != "electra":
        # compared by value: a saved config.yaml writes the whole (default) section
        changed = [k for k, v in e.model_dump().items() if v != type(e).model_fields[k].default]
        if changed:
            raise UserError(
                f"electra.{changed[0]} applies to objective: electra, and this run trains "
                f"masked LM (objective: {cfg.objective}): set objective=electra, or drop "
                f"electra.{changed[0]}"
            )
        return
    if m.mlm_head != "bert" or not m.tie_mlm:
        key = f"model.mlm_head={m.mlm_head}" if m.mlm_head != "bert" else "model.tie_mlm=false"
        raise UserError(
            f"{key} applies to objective: mlm; ELECTRA's generator always has a dense + "
            "LayerNorm head tied to the token embeddings, and its discriminator no MLM head: "
            f"drop {key.split('=')[0]}"
        )
    default = type(e).model_fields["generator_scale"].default
    if (
        e.generator_d_model is not None
        and e.generator_scale != default
        and e.generator_d_model != max(1, round(m.d_model * e.generator_scale))
    ):
        raise UserError(
            f"electra.generator_scale={e.generator_scale:g} and electra.generator_d_model="
            f"{e.generator_d_model} give the generator two widths "
            f"({max(1, round(m.d_model * e.generator_scale))} and {e.generator_d_model}); "
            "keep one of them"
        )


def generator_config(cfg: ModelConfig, electra: ElectraConfig) -> ModelConfig:
    """The generator's shape: the discriminator's scaled in width (d_model, d_ff, heads of the
    same size), same depth unless electra.generator_n_layer says otherwise."""
    width = electra.generator_d_model or max(1, round(cfg.d_model * electra.generator_scale))
    for key, value, limit, of, usual in (
        ("generator_d_model", width, cfg.d_model, "model.d_model", "1/4 to 1/2 of the width"),
        (
            "generator_n_layer",
            electra.generator_n_layer or cfg.n_layer,
            cfg.n_layer,
            "model.n_layer",
            "the discriminator's depth",
        ),
    ):
        if value > limit:  # as generator_scale > 1 is refused: a generator that outplays the
            raise UserError(  # discriminator leaves it nothing to learn (Clark et al. 2020)
                f"electra.{key}={value} is larger than the discriminator's {of}={limit}; "
                f"the generator must be at most as big (ELECTRA uses {usual})"
            )
    n_head = max(1, min(cfg.n_head, width // cfg.head_dim))
    return ModelConfig.model_validate(
        {
            **cfg.model_dump(),
            "d_model": width,
            "n_head": n_head,
            "d_head": None if width % n_head == 0 else max(1, width // n_head),
            "d_ff": max(1, round(cfg.d_ff * width / cfg.d_model)),
            "n_layer": electra.generator_n_layer or cfg.n_layer,
        }
    )


class GeneratorHead(nn.Module):
    """dense (generator width -> embedding width) -> gelu -> LayerNorm -> vocabulary."""

    def __init__(self, width: int, cfg: ModelConfig) -> None:
        super().__init__()
        assert cfg.vocab_size is not None
        self.dense = nn.Linear(width, cfg.d_model)
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.layernorm_eps)
        self.decoder = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.ln(F.gelu(self.dense(h))))


class Generator(nn.Module):
    """The Transformer blocks and MLM head of the small generator (embeddings: the caller's)."""

    def __init__(self, cfg: ModelConfig, gen: ModelConfig, tok_weight: nn.Parameter) -> None:
        super().__init__()
        self.project = nn.Linear(cfg.d_model, gen.d_model) if gen.d_model != cfg.d_model else None
        self.blocks = nn.ModuleList(Block(gen) for _ in range(gen.n_layer))
        self.ln_f = nn.LayerNorm(gen.d_model, eps=gen.layernorm_eps) if gen.norm == "pre" else None
        self.head = GeneratorHead(gen.d_model, cfg)
        init_weights(self, cfg.init_std)
        self.head.decoder.weight = tok_weight  # after init: init would redraw the embeddings
        # ALiBi: the embeddings carry no position, so the distance bias is the generator's only
        # sense of order (without it, it was a bag of words); slopes for its own head count
        slopes = alibi_slopes(gen.n_head)[:, None, None] if gen.position == "alibi" else None
        self.register_buffer("alibi_slopes", slopes, persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, queries: Queries) -> torch.Tensor:
        """Embedded input (B,T,d) -> vocabulary logits (N,V) at the masked positions; `mask`:
        the padded keys (`model.key_mask`), as the encoder's blocks take them."""
        if self.project is not None:
            x = self.project(x)
        if not self.blocks:
            x = queries.select(x)
        slopes, last, T = self.alibi_slopes, len(self.blocks) - 1, x.shape[1]
        bias = mask  # with ALiBi: the distance bias, padded keys hidden in it (as Encoder)
        if slopes is not None:
            bias = alibi_bias(slopes, torch.arange(T, device=x.device), T, mask)
        for i, block in enumerate(self.blocks):
            asked = queries if i == last else None
            if asked is not None and slopes is not None:  # the queries sit at asked.pos
                bias = alibi_bias(slopes, asked.pos[:, None, :], T, mask)
            x = block(x, bias, asked)
        return self.head(self.ln_f(x) if self.ln_f is not None else x)


class DiscriminatorHead(nn.Module):
    """dense -> activation -> one logit per position: was this token replaced?"""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.out = nn.Linear(cfg.d_model, 1)
        self.act = _ACT[cfg.activation]  # ungated: BERT/ELECTRA's hidden_act

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.dense(h))).squeeze(-1)


@dataclass
class ElectraOutput:
    loss: torch.Tensor  # mlm_loss + disc_weight * disc_loss
    mlm_loss: torch.Tensor  # the generator's mean cross-entropy over the masked positions
    disc_loss: torch.Tensor  # mean binary cross-entropy over the real (non-pad) positions
    gen_logits: torch.Tensor  # (N,V) at masked_rows
    gen_correct: torch.Tensor  # int64 scalar: masked positions its argmax gets right
    target: torch.Tensor  # (N,) the original ids there
    rows: torch.Tensor  # (N,) flat indices of the masked positions
    disc_logits: torch.Tensor  # (B,T)
    replaced: torch.Tensor  # (B,T) bool: the sampled token differs from the original
    real: torch.Tensor | None  # (B,T) bool, None when nothing is padded


class ElectraLM(nn.Module):
    """Generator + discriminator, trained together; `encoder` is the discriminator."""

    def __init__(self, cfg: ModelConfig, electra: ElectraConfig) -> None:
        super().__init__()
        self.cfg, self.electra = cfg, electra
        self.encoder = Encoder(cfg)
        self.disc_head = DiscriminatorHead(cfg)
        init_weights(self.disc_head, cfg.init_std)
        gen = generator_config(cfg, electra)
        self.generator = Generator(cfg, gen, self.encoder.embeddings.tok.weight)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        masked_rows: torch.Tensor | None = None,
        queries: Queries | None = None,
    ) -> ElectraOutput:
        """input_ids: the MLM-corrupted batch; labels: original ids at the masked positions,
        IGNORE_INDEX elsewhere (what `collate_mlm` gives); masked_rows: their flat indices;
        queries: `Queries.at(masked_rows)` (both from the collate, or found here)."""
        idx = masked_rows
        if idx is None:
            idx = (labels.reshape(-1) != IGNORE_INDEX).nonzero().squeeze(1)
        if queries is None:
            queries = Queries.at(idx, labels.shape)
        target = labels.reshape(-1).index_select(0, idx)
        emb = self.encoder.embeddings(input_ids, token_type_ids)
        gen_logits = self.generator(emb, key_mask(attention_mask), queries)  # (N,V)
        if idx.numel() > 0:
            mlm_loss, gen_correct = vocab_cross_entropy(gen_logits, target)
        else:  # nothing masked: a zero that still backpropagates
            mlm_loss = gen_logits.sum() * 0.0
            gen_correct = torch.zeros((), dtype=torch.long, device=gen_logits.device)
        with torch.no_grad():  # sampling passes no gradient to the generator
            logits = gen_logits.float() / self.electra.temperature
            # evaluation draws from its own seeded generator: the validation metrics are
            # comparable between evaluations, and evaluating leaves training's RNG untouched
            fixed = None if self.training else torch.Generator(logits.device).manual_seed(0)
            u = torch.rand(logits.shape, generator=fixed, device=logits.device)
            u = u.clamp_(1e-9, 1.0 - 1e-7)
            sampled = (logits - torch.log(-torch.log(u))).argmax(dim=-1)  # Gumbel-max: a sample
            flat = input_ids.reshape(-1)
            disc_ids = flat.index_copy(0, idx, sampled).view_as(input_ids)
            replaced = torch.zeros_like(flat, dtype=torch.bool)
            replaced = replaced.index_copy(0, idx, sampled != target).view_as(input_ids)
        h = self.encoder(disc_ids, attention_mask, token_type_ids)
        disc_logits = self.disc_head(h)  # (B,T)
        per = F.binary_cross_entropy_with_logits(
            disc_logits.float(), replaced.float(), reduction="none"
        )
        real = None if attention_mask is None else attention_mask.bool()
        if real is None:
            disc_loss = per.mean()
        else:
            disc_loss = (per * real).sum() / real.sum().clamp_min(1)
        return ElectraOutput(
            loss=mlm_loss + self.electra.disc_weight * disc_loss,
            mlm_loss=mlm_loss,
            disc_loss=disc_loss,
            gen_logits=gen_logits,
            gen_correct=gen_correct,
            target=target,
            rows=idx,
            disc_logits=disc_logits,
            replaced=replaced,
            real=real,
        )
