"""model.py's options against references written here from the papers and transformers' BERT
(not from model.py): post/pre-LN, activations and GLUs, positions (learned, sinusoidal, ALiBi),
padding, `Queries`, the CPU training attention path, `cpu_dropout`, the MLM head and its tying,
ELECTRA's labels and loss, and the init. fp32, dropout 0 unless said otherwise."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import encoderlab.model as model_module
from encoderlab.config import ElectraConfig, ModelConfig
from encoderlab.electra import ElectraLM
from encoderlab.model import IGNORE_INDEX, Encoder, MaskedLM, Queries, cpu_dropout

V = 37
ACTIVATIONS = ["relu", "gelu", "swish", "geglu", "swiglu"]
# d_model 24 / 4 heads of 6; d_model 21 (odd) / 3 heads (not a power of two) of 5: 15 != 21
SHAPES = [dict(d_model=24, n_head=4), dict(d_model=21, n_head=3, d_head=5)]


def cfg_of(**kw) -> ModelConfig:
    base = dict(vocab_size=V, d_ff=20, n_layer=2, max_len=16, dropout=0.0, attn_dropout=0.0)
    return ModelConfig(**(base | kw))


# ---------------------------------------------------------------------------------------------
# References


def ref_slopes(n: int) -> list[float]:
    """Press et al.'s get_slopes, as published with the ALiBi paper's code."""

    def power_of_2(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + ref_slopes(2 * closest)[0::2][: n - closest]


def ref_sinusoid(T: int, d: int) -> torch.Tensor:
    """Vaswani et al.: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(same)."""
    pe = torch.zeros(T, d, dtype=torch.float64)
    for pos in range(T):
        for i in range(0, d, 2):
            angle = pos / 10000 ** (i / d)
            pe[pos, i] = math.sin(angle)
            if i + 1 < d:
                pe[pos, i + 1] = math.cos(angle)
    return pe.float()


def ref_encoder(P: dict, cfg: ModelConfig, ids, am=None, tt=None) -> torch.Tensor:
    """transformers' BertModel forward (extended mask: finfo.min on padded keys), plus pre-LN,
    GLU feed-forwards (Shazeer 2020) and ALiBi (-m_h |i - j|, MosaicBERT), written out."""
    B, T = ids.shape
    d, H, hd, eps = cfg.d_model, cfg.n_head, cfg.head_dim, cfg.layernorm_eps

    def ln(x, name):
        return F.layer_norm(x, (d,), P[f"{name}.weight"], P[f"{name}.bias"], eps)

    def lin(x, name):
        return x @ P[f"{name}.weight"].T + P[f"{name}.bias"]

    x = F.embedding(ids, P["embeddings.tok.weight"], padding_idx=cfg.pad_id)
    if cfg.position == "learned":
        x = x + P["embeddings.pos.weight"][:T]
    elif "sinusoidal" in cfg.position:
        scale = 1 / math.sqrt(d) if cfg.position == "scaled_sinusoidal" else 1.0
        x = x + ref_sinusoid(T, d) * scale
    if cfg.n_segments:
        x = x + P["embeddings.seg.weight"][tt if tt is not None else torch.zeros_like(ids)]
    x = ln(x, "embeddings.ln")
    bias = torch.zeros(B, H, T, T)
    if cfg.position == "alibi":
        dist = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs().float()
        bias = bias - torch.tensor(ref_slopes(H))[:, None, None] * dist
    if am is not None:
        bias = bias + (1.0 - am[:, None, None, :].float()) * torch.finfo(torch.float32).min

    def attn(h, i):
        inner = H * hd
        wq, wk, wv = P[f"blocks.{i}.attn.qkv.weight"].split(inner)
        bq, bk, bv = P[f"blocks.{i}.attn.qkv.bias"].split(inner)
        q, k, v = ((h @ w.T + b).view(B, T, H, hd).transpose(1, 2) for w, b in
                   ((wq, bq), (wk, bk), (wv, bv)))  # fmt: skip
        probs = (q @ k.transpose(-1, -2) / math.sqrt(hd) + bias).softmax(-1)
        return lin((probs @ v).transpose(1, 2).reshape(B, T, inner), f"blocks.{i}.attn.out")

    act = {"relu": F.relu, "gelu": lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2))),
           "swish": lambda t: t * torch.sigmoid(t)}  # fmt: skip

    def ff(h, i):
        a = lin(h, f"blocks.{i}.ff.fc1")
        if cfg.activation in ("geglu", "swiglu"):
            gate, lin_part = a.split(cfg.d_ff, dim=-1)  # act(xW) * (xV)
            a = act["gelu" if cfg.activation == "geglu" else "swish"](gate) * lin_part
        else:
            a = act[cfg.activation](a)
        return lin(a, f"blocks.{i}.ff.fc2")

    for i in range(cfg.n_layer):
        if cfg.norm == "pre":
            x = x + attn(ln(x, f"blocks.{i}.ln1"), i)
            x = x + ff(ln(x, f"blocks.{i}.ln2"), i)
        else:
            x = ln(x + attn(x, i), f"blocks.{i}.ln1")
            x = ln(x + ff(x, i), f"blocks.{i}.ln2")
    return ln(x, "ln_f") if cfg.norm == "pre" else x


def batch(T: int = 9):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, V, (4, T), generator=g)
    am = torch.ones(4, T, dtype=torch.long)
    am[1, 5:] = 0
    am[2, 1:] = 0  # only [CLS] is real
    am[3] = 0  # all padding: must stay finite and must not reach the gradients
    ids[am == 0] = 0
    tt = (torch.arange(T) >= 4).long().expand(4, T)
    return ids, am, tt


def close(a, b, what, tol=1e-5):
    """Within tol of the reference, relative to its largest entry (at least 1)."""
    diff = (a - b).abs().max().item() if a.numel() else 0.0
    scale = max(1.0, b.abs().max().item() if b.numel() else 0.0)
    assert torch.isfinite(a).all() and diff <= tol * scale, (what, diff, scale)
    return diff


def grads(out, weights, params):
    return torch.autograd.grad((out * weights).sum(), params, retain_graph=True)


# ---------------------------------------------------------------------------------------------
# The encoder against the reference, full and with Queries, eval (SDPA) and the CPU train path


def identity_dropout(monkeypatch):
    monkeypatch.setattr(model_module, "cpu_dropout", lambda t, p: t)


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "scaled_sinusoidal", "alibi"])
@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_equals_the_reference_in_states_and_gradients(norm, position, monkeypatch):
    """Every activation and both head shapes; padding with a row of only [CLS] and one of only
    padding; the full forward and `Queries` (masked rows, [CLS]); eval (SDPA) and the CPU
    training path (attention written out, its dropout made the identity)."""
    identity_dropout(monkeypatch)
    ids, am, tt = batch()
    B, T = ids.shape
    real_rows = torch.tensor([True, True, True, False])
    rows = torch.tensor([1, 4, 8, 9, 12, 18])  # flat (B*T) positions at real tokens
    for shape in SHAPES:
        for activation in ACTIVATIONS:
            torch.manual_seed(0)
            cfg = cfg_of(norm=norm, position=position, activation=activation, **shape)
            model = Encoder(cfg)
            for p in model.parameters():  # away from the init: biases, LN gains non-trivial
                p.data.add_(torch.randn_like(p) * 0.3)
            names, params = zip(*model.named_parameters(), strict=True)
            P = dict(zip(names, params, strict=True))
            ref = ref_encoder(P, cfg, ids, am, tt)
            d = cfg.d_model
            w = torch.randn(B, T, d) * real_rows[:, None, None]
            ref_g = grads(ref, w, params)
            wq = torch.randn(len(rows), d)
            ref_qg = grads(ref.reshape(-1, d)[rows], wq, params)
            wc = torch.randn(B, d) * real_rows[:, None]
            ref_cg = grads(ref[:, 0], wc, params)
            for train, attn_p in ((False, 0.0), (True, 0.0), (True, 0.1)):
                for blk in model.blocks:
                    blk.attn.attn_dropout = attn_p  # 0.1: the written-out CPU attention
                model.train(train)
                tag = (cfg.activation, shape["d_model"], train, attn_p)
                out = model(ids, am, tt)
                assert torch.isfinite(out).all(), tag
                close(out[real_rows], ref[real_rows], ("states",) + tag)
                for a, b, n in zip(grads(out, w, params), ref_g, names, strict=True):
                    close(a, b, ("grad", n) + tag, tol=3e-5)
                q = model(ids, am, tt, queries=Queries.at(rows, (B, T)))
                close(q, ref.reshape(-1, d)[rows], ("queries",) + tag)
                for a, b, n in zip(grads(q, wq, params), ref_qg, names, strict=True):
                    close(a, b, ("queries grad", n) + tag, tol=3e-5)
                c = model(ids, am, tt, queries=Queries.first(ids))
                assert torch.isfinite(c).all(), tag
                close(c[real_rows], ref[real_rows, 0], ("cls",) + tag)
                for a, b, n in zip(grads(c, wc, params), ref_cg, names, strict=True):
                    close(a, b, ("cls grad", n) + tag, tol=3e-5)


def test_cpu_training_attention_keeps_a_row_of_all_padding_finite():
    """The written-out CPU attention (training, attn_dropout > 0) hid padded keys with -inf: a
    row of only padding gave NaN states, and through 0 * NaN, NaN gradients to the weights."""
    torch.manual_seed(0)
    model = MaskedLM(cfg_of(d_model=16, n_head=2, attn_dropout=0.1)).train()
    ids, am, tt = batch()
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 2] = ids[0, 2]
    assert torch.isfinite(model.encoder(ids, am, tt)).all()
    model(ids, am, tt, labels=labels).loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_positions_and_slopes_equal_the_papers():
    """Sinusoidal tables (odd widths too) and ALiBi slopes for every head count up to 16;
    without token_type_ids the segment embedding is row 0's, as with all-zero ids."""
    for d in (6, 7, 16):
        table = model_module.sinusoidal_table(12, d)
        close(table, ref_sinusoid(12, d), ("sinusoid", d), tol=1e-6)
    for n in range(1, 17):
        close(model_module.alibi_slopes(n), torch.tensor(ref_slopes(n)), ("slopes", n), 1e-7)
    torch.manual_seed(0)
    model = Encoder(cfg_of(d_model=16, n_head=2)).eval()
    ids, am, _ = batch()
    P = dict(model.named_parameters())
    close(model(ids, am)[:3], ref_encoder(P, model.cfg, ids, am)[:3], "no token_type_ids")
    close(model(ids)[:3], ref_encoder(P, model.cfg, ids)[:3], "no mask")


def test_masked_lm_equals_transformers_bert_with_padding():
    """A post-LN gelu MaskedLM, its weights copied by hand into transformers' BertForMaskedLM
    (eager attention): the same logits at real positions, and the same mean loss."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = cfg_of(d_model=24, n_head=4, d_ff=40)
    ours = MaskedLM(cfg).eval()
    for p in ours.parameters():
        p.data.add_(torch.randn_like(p) * 0.1)
    hf_cfg = BertConfig(
        vocab_size=V, hidden_size=24, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=40, max_position_embeddings=16, type_vocab_size=2,
        layer_norm_eps=cfg.layernorm_eps, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, pad_token_id=0, hidden_act="gelu",
    )  # fmt: skip
    hf = BertForMaskedLM._from_config(hf_cfg, attn_implementation="eager").eval()
    s = {k: v.detach() for k, v in ours.state_dict().items()}
    names = {  # transformers' module -> ours
        "bert.embeddings.word_embeddings": "encoder.embeddings.tok",
        "bert.embeddings.position_embeddings": "encoder.embeddings.pos",
        "bert.embeddings.token_type_embeddings": "encoder.embeddings.seg",
        "bert.embeddings.LayerNorm": "encoder.embeddings.ln",
        "cls.predictions.transform.dense": "mlm_head.dense",
        "cls.predictions.transform.LayerNorm": "mlm_head.ln",
    }
    for i in range(2):
        for theirs, mine in (
            ("attention.output.dense", "attn.out"),
            ("attention.output.LayerNorm", "ln1"),
            ("intermediate.dense", "ff.fc1"),
            ("output.dense", "ff.fc2"),
            ("output.LayerNorm", "ln2"),
        ):
            names[f"bert.encoder.layer.{i}.{theirs}"] = f"encoder.blocks.{i}.{mine}"
    tw = ("weight", "bias")
    w = {f"{k}.{t}": s[f"{v}.{t}"] for k, v in names.items() for t in tw if f"{v}.{t}" in s}
    w["cls.predictions.bias"] = s["mlm_head.decoder.bias"]
    for i, t in ((i, t) for i in range(2) for t in tw):
        q, k, v = s[f"encoder.blocks.{i}.attn.qkv.{t}"].chunk(3)  # rows [q; k; v]
        for name, part in (("query", q), ("key", k), ("value", v)):
            w[f"bert.encoder.layer.{i}.attention.self.{name}.{t}"] = part
    missing, unexpected = hf.load_state_dict(w, strict=False)
    assert not unexpected and set(missing) <= {
        "cls.predictions.decoder.weight",
        "cls.predictions.decoder.bias",
    }
    hf.tie_weights()
    ids, am, tt = batch()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=am, token_type_ids=tt).logits
        mine = ours(ids, am, tt).logits
    real = am.bool()
    close(mine[real], theirs[real], "BertForMaskedLM logits")
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 2], labels[1, 4], labels[2, 0] = 5, 7, 9
    with torch.no_grad():
        hf_loss = hf(input_ids=ids, attention_mask=am, token_type_ids=tt, labels=labels).loss
        out = ours(ids, am, tt, labels=labels)
    close(out.loss, hf_loss, "MLM loss")
    assert out.n_masked == 3 and out.logits.shape == (3, V)


# ---------------------------------------------------------------------------------------------
# cpu_dropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_cpu_dropout_is_bernoulli_scaled_independent_and_seeded(p):
    """Keep-probability 1 - p within 5 sd, kept values x / (1 - p), masks of two calls (and of
    neighbouring elements, which share a random word) independent, a seed repeats them."""
    n = 200_003
    x = torch.randn(n)
    torch.manual_seed(5)
    y1, y2 = cpu_dropout(x, p), cpu_dropout(x, p)
    k1, k2 = y1 != 0, y2 != 0
    q = 1 - p
    sd = math.sqrt(q * p / n)
    assert abs(k1.float().mean().item() - q) < 5 * sd
    assert torch.allclose(y1[k1], x[k1] / q, rtol=1e-6)
    both = (k1 & k2).float().mean().item()  # P(kept twice) = q^2 if independent
    assert abs(both - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / n), both
    for shift in (1, 2, 3, 4):  # lanes of one word and of the next
        pair = (k1[:-shift] & k1[shift:]).float().mean().item()
        assert abs(pair - q * q) < 5 * math.sqrt(q * q * (1 - q * q) / n), (shift, pair)
    torch.manual_seed(5)
    assert torch.equal(cpu_dropout(x, p), y1)
    z = cpu_dropout(torch.ones(3, 5, 7).transpose(0, 2), p)  # any shape and layout
    assert z.shape == (7, 5, 3) and set(z.unique().tolist()) <= {0.0, torch.tensor(1 / q).item()}


def test_cpu_dropout_near_one_drops_nearly_everything():
    """p within 1/131072 of 1 rounded to a threshold of 32768, outside int16: the comparison
    wrapped and kept every element, scaled by 1 / (1 - p) (200,000x at p = 0.999995)."""
    torch.manual_seed(0)
    for p in (0.999995, 0.99999):
        kept = (cpu_dropout(torch.ones(100_000), p) != 0).float().mean().item()
        assert kept < 1e-4, (p, kept)  # 1/65536 at most (the mask's resolution)


# ---------------------------------------------------------------------------------------------
# MLM head, tying, checkpoints, init


def ref_head(P: dict, plain: bool, h: torch.Tensor) -> torch.Tensor:
    if not plain:  # BertPredictionHeadTransform: dense, gelu, LayerNorm
        h = h @ P["mlm_head.dense.weight"].T + P["mlm_head.dense.bias"]
        h = F.layer_norm(0.5 * h * (1 + torch.erf(h / math.sqrt(2))), h.shape[-1:],
                         P["mlm_head.ln.weight"], P["mlm_head.ln.bias"], 1e-12)  # fmt: skip
    return h @ P["encoder.embeddings.tok.weight"].T + P["mlm_head.decoder.bias"]


@pytest.mark.parametrize("head", ["bert", "plain"])
def test_mlm_heads_and_tying_survive_a_checkpoint_round_trip(head, tmp_path):
    from encoderlab.model import make_optimizer
    from encoderlab.runs import Run, load_run_weights

    torch.manual_seed(0)
    cfg = cfg_of(d_model=16, n_head=2, mlm_head=head, norm="pre")
    model = MaskedLM(cfg)
    tok, dec = model.encoder.embeddings.tok.weight, model.mlm_head.decoder.weight
    assert dec is tok and dec.data_ptr() == tok.data_ptr()
    assert hasattr(model.mlm_head, "dense") == (head == "bert")
    ids, am, tt = batch()
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 3], labels[1, 1], labels[2, 0] = 4, 6, 8
    opt = make_optimizer(model, lr=1e-2)
    out = model(ids, am, tt, labels=labels)
    out.loss.backward()
    opt.step()
    P = {n: p for n, p in model.named_parameters(remove_duplicate=False)}
    with torch.no_grad():
        h = model.encoder(ids, am, tt)
        logits = ref_head(P, head == "plain", h[labels != IGNORE_INDEX])
        out = model(ids, am, tt, labels=labels)
    close(out.logits, logits, "head logits")
    close(out.loss, F.cross_entropy(logits, labels[labels != IGNORE_INDEX]), "loss")
    run = Run.create(tmp_path / "runs", "tie", cfg, kind="toy")
    try:
        ckpt = run.save_checkpoint(model, opt, {"step": 1})
        for load in ("checkpoint", "weights"):
            torch.manual_seed(1)
            back = MaskedLM(cfg)
            if load == "checkpoint":
                run.load_checkpoint(back, make_optimizer(back, lr=1e-2), ckpt)
            else:
                load_run_weights(back, ckpt / "model.safetensors")
            btok = back.encoder.embeddings.tok.weight
            assert back.mlm_head.decoder.weight is btok, load
            assert btok.data_ptr() == back.mlm_head.decoder.weight.data_ptr()
            for (n, a), b in zip(
                model.state_dict().items(), back.state_dict().values(), strict=True
            ):
                assert torch.equal(a, b), (load, n)
            with torch.no_grad():
                back.encoder.embeddings.tok.weight.add_(1.0)  # still one tensor after loading
            assert torch.equal(back.mlm_head.decoder.weight, btok)
    finally:
        run.close()


def test_init_is_berts():
    """N(0, init_std) weights and embeddings, zero biases, identity LayerNorms, zero pad row,
    in the MLM model and every part of ELECTRA's."""
    for std in (0.02, 0.05):
        torch.manual_seed(0)
        cfg = cfg_of(vocab_size=300, d_model=64, n_head=4, d_ff=128, max_len=64, init_std=std,
                     pad_id=3)  # fmt: skip
        for model in (MaskedLM(cfg), ElectraLM(cfg, ElectraConfig(generator_scale=0.5))):
            seen = 0
            for name, m in model.named_modules():
                if isinstance(m, torch.nn.LayerNorm):
                    assert torch.equal(m.weight, torch.ones_like(m.weight)), name
                    assert not m.bias.any(), name
                elif isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                    w = m.weight.detach()
                    if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None:
                        assert not w[m.padding_idx].any(), name
                        w = torch.cat([w[: m.padding_idx], w[m.padding_idx + 1 :]])
                    sd = std / math.sqrt(2 * w.numel())  # the sd of a sample sd
                    assert abs(w.std().item() - std) < 6 * sd + 1e-6, (name, w.std())
                    assert abs(w.mean().item()) < 6 * std / math.sqrt(w.numel()), name
                    bias = getattr(m, "bias", None)
                    assert bias is None or not bias.any(), name
                    seen += 1
            assert seen >= 10


# ---------------------------------------------------------------------------------------------
# ELECTRA


def test_electra_shares_embeddings_labels_replacements_and_weights_its_loss():
    """Clark et al.: the generator reads the discriminator's embeddings and projects onto its
    token matrix; a sampled token equal to the original is labelled original; the loss is
    the generator's MLM mean + disc_weight x the discriminator's BCE mean over real tokens,
    and sampling passes no gradient from the discriminator to the generator."""
    torch.manual_seed(0)
    cfg = cfg_of(d_model=16, n_head=2, position="alibi")
    model = ElectraLM(cfg, ElectraConfig(generator_scale=0.5, disc_weight=50.0))
    emb = model.encoder.embeddings
    assert model.generator.head.decoder.weight is emb.tok.weight
    ids, am, tt = batch()
    labels = torch.full_like(ids, IGNORE_INDEX)
    t = 11  # the generator will sample this token everywhere
    for (r, c), original in zip(((0, 1), (0, 4), (1, 2), (2, 0)), (t, 5, t, 6), strict=True):
        labels[r, c] = original
    masked = labels != IGNORE_INDEX
    inp = ids.masked_fill(masked, 4)  # [MASK]
    with torch.no_grad():
        model.generator.head.decoder.bias[t] = 1e3
    for train in (True, False):
        model.train(train)
        model.zero_grad()
        out = model(inp, labels, am, tt)
        assert torch.equal(out.replaced, masked & (labels != t))  # t == original: not replaced
        disc_ids = inp.masked_fill(masked, t)
        disc_logits = model.disc_head(model.encoder(disc_ids, am, tt))
        close(out.disc_logits, disc_logits, "discriminator input")
        per = F.binary_cross_entropy_with_logits(
            disc_logits, out.replaced.float(), reduction="none"
        )
        disc = per[am.bool()].mean()
        mlm = F.cross_entropy(out.gen_logits, labels[masked])
        close(out.disc_loss, disc, "disc loss")
        close(out.mlm_loss, mlm, "mlm loss")
        close(out.loss, mlm + 50.0 * disc, "weighted loss")
        out.disc_loss.backward(retain_graph=True)
        gen = [p.grad for p in model.generator.parameters() if p is not emb.tok.weight]
        assert all(g is None or not g.any() for g in gen)
        assert model.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
        model.zero_grad()
        out.mlm_loss.backward()
        assert model.disc_head.out.weight.grad is None or not model.disc_head.out.weight.grad.any()
        for p in (emb.tok.weight, emb.pos.weight if emb.pos is not None else emb.ln.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0  # the generator trains them
