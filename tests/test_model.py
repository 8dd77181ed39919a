"""The encoder, the MLM head, parameter accounting and the model summary."""

from __future__ import annotations

import io
import re

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console

from encoderlab.config import ModelConfig
from encoderlab.errors import UserError
from encoderlab.model import (
    IGNORE_INDEX,
    Encoder,
    MaskedLM,
    Queries,
    alibi_bias,
    alibi_slopes,
    make_optimizer,
    num_params,
    param_groups,
    param_summary,
    sinusoidal_table,
    vocab_cross_entropy,
    without_init,
)
from encoderlab.summary import layer_rows, print_model_summary, render_summary

V = 50


def tiny(**kw) -> ModelConfig:
    base = dict(vocab_size=V, d_model=32, n_head=4, d_ff=64, n_layer=2, max_len=16)
    base.update(kw)
    return ModelConfig(**base)


def ids_batch(B: int = 3, T: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, V, (B, T), generator=g)


def some_labels(ids: torch.Tensor) -> torch.Tensor:
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 1] = ids[0, 1]
    labels[0, 7] = ids[0, 7]
    labels[1, 0] = 5
    labels[2, 9] = ids[2, 9]
    return labels


def test_output_shapes():
    torch.manual_seed(0)
    model = MaskedLM(tiny())
    ids = ids_batch(3, 10)
    assert model.encoder(ids).shape == (3, 10, 32)
    out = model(ids)
    assert out.logits.shape == (3, 10, V)
    assert out.loss is None


@pytest.mark.parametrize("activation", ["relu", "gelu", "swish", "geglu", "swiglu"])
@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("position", ["learned", "sinusoidal", "scaled_sinusoidal", "alibi"])
def test_every_variant_trains_one_step(activation, norm, position):
    torch.manual_seed(0)
    model = MaskedLM(tiny(activation=activation, norm=norm, position=position))
    ids = ids_batch()
    out = model(ids, labels=some_labels(ids))
    assert out.logits.shape == (4, V)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert (model.encoder.ln_f is not None) == (norm == "pre")
    width = 2 * 64 if activation in ("geglu", "swiglu") else 64
    assert model.encoder.blocks[0].ff.fc1.out_features == width


def test_head_dim_independent_of_d_model():
    cfg = tiny(d_model=30, n_head=3, d_head=16)
    model = MaskedLM(cfg)
    attn = model.encoder.blocks[0].attn
    assert attn.qkv.weight.shape == (3 * 3 * 16, 30)
    assert attn.out.weight.shape == (30, 3 * 16)
    assert model.encoder(ids_batch()).shape == (3, 10, 30)


def test_sinusoidal_positions_are_fixed_and_not_saved():
    model = MaskedLM(tiny(position="sinusoidal"))
    table = model.encoder.embeddings.pos_table
    assert torch.allclose(table, sinusoidal_table(16, 32))
    assert torch.allclose(table[3, 0], torch.sin(torch.tensor(3.0)))
    assert torch.allclose(table[3, 1], torch.cos(torch.tensor(3.0)))
    assert not any("pos" in k for k in model.state_dict())
    # scaled: the same table over sqrt(d_model), the token embeddings' scale (std 0.02) not
    # drowned; existing sinusoidal checkpoints keep their meaning
    scaled = MaskedLM(tiny(position="scaled_sinusoidal")).encoder.embeddings.pos_table
    assert torch.allclose(scaled, sinusoidal_table(16, 32) / 32**0.5)


def test_alibi_under_bf16_autocast_keeps_all_padding_rows_finite():
    """The float32 bias goes to autocast's dtype (its padded keys clamped to that dtype's
    minimum), a row that is all padding stays a number, the others match float32."""
    torch.manual_seed(0)
    model = Encoder(tiny(position="alibi")).eval()
    ids = ids_batch()
    mask = torch.ones_like(ids)
    mask[1] = 0
    mask[2, 5:] = 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, mask)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[2, :5].float(), model(ids, mask)[2, :5], atol=0.1)


def test_alibi_slopes_and_bias():
    """Press et al.'s slopes (8 heads: 1/2 ... 1/256; 12 heads: the 8-head series and every
    other slope of the 16-head one), a bias that falls with distance both ways, no
    position parameters, nothing saved."""
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0**-k for k in range(1, 9)]))
    twelve = alibi_slopes(12)
    assert torch.allclose(twelve[:8], alibi_slopes(8))
    assert torch.allclose(twelve[8:], torch.tensor([2.0**-k for k in (0.5, 1.5, 2.5, 3.5)]))
    bias = alibi_bias(alibi_slopes(2)[:, None, None], torch.arange(4), 4, None)
    assert torch.equal(bias[0, 1], torch.tensor([-1 / 16, 0.0, -1 / 16, -2 / 16]))
    assert torch.equal(bias[1], bias[1].T)  # symmetric: no direction is preferred
    model = MaskedLM(tiny(position="alibi"))
    assert model.encoder.embeddings.pos is None and model.encoder.embeddings.pos_table is None
    assert not any("pos" in k or "alibi" in k for k in model.state_dict())
    # positions matter: the first token's state changes when two others swap places (a
    # mirror image would not change it: the bias only sees distances)
    ids = ids_batch(1, 10)
    swapped = ids.clone()
    swapped[0, [2, 7]] = ids[0, [7, 2]]
    states = model.encoder.eval()(ids)
    assert not torch.allclose(states[0, 0], model.encoder(swapped)[0, 0], atol=1e-4)


@pytest.mark.parametrize("position", ["learned", "alibi"])
@pytest.mark.parametrize("norm", ["post", "pre"])
def test_padding_is_masked(norm, position):
    torch.manual_seed(0)
    model = Encoder(tiny(norm=norm, position=position)).eval()
    ids = ids_batch(2, 10)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    mask[1, 3:] = 0
    other = ids.clone()
    other[mask == 0] = (other[mask == 0] + 7) % V  # different ids where padded
    a, b = model(ids, mask), model(other, mask)
    real = mask.bool()
    assert torch.allclose(a[real], b[real], atol=1e-6)
    # ... and the mask matters: without it, the real positions do change
    assert not torch.allclose(model(ids)[real], model(other)[real], atol=1e-4)


@pytest.mark.parametrize("position", ["learned", "alibi"])
def test_all_ones_mask_equals_no_mask_and_all_padding_is_finite(position):
    torch.manual_seed(0)
    model = Encoder(tiny(position=position)).eval()
    ids = ids_batch()
    assert torch.allclose(model(ids, torch.ones_like(ids)), model(ids), atol=1e-6)
    mask = torch.ones_like(ids)
    mask[1] = 0  # a sequence that is all padding must not produce NaN for the others
    out = model(ids, mask)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[0], model(ids[:1])[0], atol=1e-5)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_mlm_head_only_at_labelled_positions(norm):
    torch.manual_seed(0)
    model = MaskedLM(tiny(norm=norm)).eval()
    ids = ids_batch()
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0
    labels = some_labels(ids)
    labels[2, 9] = IGNORE_INDEX  # not on a padded position
    labels[2, 3] = 11
    out = model(ids, mask, labels=labels)
    full = model(ids, mask).logits
    sel = labels != IGNORE_INDEX
    assert out.logits.shape == (int(sel.sum()), V)
    assert torch.allclose(out.logits, full[sel], atol=1e-5)
    expected = F.cross_entropy(full[sel], labels[sel])
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert out.n_masked.item() == int(sel.sum())
    assert out.n_correct.item() == int((full[sel].argmax(-1) == labels[sel]).sum())


def test_queries_lay_out_flat_rows_per_sequence():
    rows = torch.tensor([1, 7, 20, 29, 39])  # B=4, T=10: row 0 twice, row 2 twice, row 3 once
    q = Queries.at(rows, (4, 10))
    assert q.pos.tolist() == [[1, 7], [0, 0], [0, 9], [9, 0]]
    x = torch.arange(4 * 10 * 3, dtype=torch.float32).view(4, 10, 3)
    assert torch.equal(q.select(x), x.reshape(-1, 3)[rows])  # the order of `rows`
    empty = Queries.at(torch.zeros(0, dtype=torch.long), (4, 10))
    assert empty.select(x).shape == (0, 3)
    assert torch.equal(Queries.first(torch.ones(4, 10)).select(x), x[:, 0])


@pytest.mark.parametrize("position", ["learned", "alibi"])
@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("where", ["first", "rows"])
def test_queries_give_the_full_forwards_states_and_gradients(norm, where, position):
    """The last block asks attention queries only where a head reads (the first position, or
    some rows): the same states and the same gradients as the full forward (with ALiBi, the
    queries' biases are those of their own positions)."""
    torch.manual_seed(0)
    model = Encoder(tiny(norm=norm, n_layer=3, position=position)).eval()
    ids = ids_batch()
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    rows = torch.tensor([0, 10, 13, 15, 22, 29]) if where == "rows" else torch.arange(0, 30, 10)
    queries = Queries.at(rows, ids.shape) if where == "rows" else Queries.first(ids)
    for m in (mask, None):
        part = model(ids, m, queries=queries)
        full = model(ids, m).reshape(-1, 32)[rows]
        assert part.shape == (len(rows), 32)
        assert torch.allclose(part, full, atol=1e-5)
    weights = torch.randn(len(rows), 32)
    (model(ids, mask, queries=queries) * weights).sum().backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    (model(ids, mask).reshape(-1, 32)[rows] * weights).sum().backward()
    for n, p in model.named_parameters():
        if p.grad is not None and p.grad.abs().max() > 0:
            assert n in fast, n
            assert torch.allclose(fast[n], p.grad, atol=1e-5), n


def test_no_labelled_position_gives_zero_loss_that_backpropagates():
    model = MaskedLM(tiny())
    ids = ids_batch()
    out = model(ids, labels=torch.full_like(ids, IGNORE_INDEX))
    assert out.loss.item() == 0.0
    assert out.n_masked.item() == 0
    out.loss.backward()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_vocab_cross_entropy_equals_cross_entropy_and_argmax(dtype):
    """The fused loss gives F.cross_entropy's value and gradient and argmax's count."""
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(40, 300, generator=g, dtype=torch.float64)).to(dtype)
    target = torch.randint(0, 300, (40,), generator=g)
    target[:15] = x.float().argmax(1)[:15]  # some right, some wrong
    ours = x.clone().requires_grad_()
    loss, n_correct = vocab_cross_entropy(ours, target)
    (2.5 * loss).backward()
    ref = x.clone().requires_grad_()
    (2.5 * F.cross_entropy(ref.float(), target)).backward()
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-2}[dtype]
    assert loss.dtype == torch.float32 and ours.grad.dtype == dtype
    assert abs(loss.item() - F.cross_entropy(x.float(), target).item()) < tol
    assert torch.allclose(ours.grad.double(), ref.grad.double(), atol=tol)
    assert n_correct.dtype == torch.long
    assert n_correct.item() == (x.float().argmax(1) == target).sum().item()
    assert 15 <= n_correct.item() < 40


def test_mlm_loss_and_accuracy_are_cross_entropy_and_argmax_at_the_masked_positions():
    torch.manual_seed(0)
    model = MaskedLM(tiny()).eval()
    ids = torch.randint(5, V, (3, 12))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, 2:9:3] = ids[:, 2:9:3]
    out = model(ids, labels=labels)
    full = model(ids).logits[labels != IGNORE_INDEX]
    target = labels[labels != IGNORE_INDEX]
    assert torch.allclose(out.loss, F.cross_entropy(full, target), atol=1e-5)
    assert out.n_correct.item() == (full.argmax(-1) == target).sum().item()


def test_without_init_builds_for_a_strict_load_and_restores_init_after():
    torch.manual_seed(0)
    trained = Encoder(tiny())
    init_fns = {n: getattr(torch.nn.init, n) for n in ("normal_", "kaiming_uniform_", "ones_")}
    with without_init():
        probe = torch.full((3,), 7.0)
        assert torch.nn.init.normal_(probe) is probe and probe.eq(7.0).all()  # left alone
        loaded = Encoder(tiny())
    loaded.load_state_dict(trained.state_dict(), strict=True)
    ids = ids_batch()
    assert torch.equal(loaded.eval()(ids), trained.eval()(ids))
    assert {n: getattr(torch.nn.init, n) for n in init_fns} == init_fns
    with pytest.raises(RuntimeError), without_init():
        raise RuntimeError("a failed load")
    assert {n: getattr(torch.nn.init, n) for n in init_fns} == init_fns
    fresh = Encoder(tiny())  # initialised again after the block
    assert torch.equal(fresh.blocks[0].ln1.weight, torch.ones(32))
    assert 0.01 < fresh.blocks[0].attn.qkv.weight.std().item() < 0.03


def test_sequence_longer_than_max_len_is_a_clear_error():
    model = MaskedLM(tiny(max_len=8))
    with pytest.raises(UserError, match="max_len=8"):
        model(ids_batch(1, 9))


def test_vocab_size_is_required():
    with pytest.raises(ValueError, match="vocab_size"):
        Encoder(ModelConfig())


def test_tied_weights_are_one_tensor():
    model = MaskedLM(tiny(tie_mlm=True))
    tok = model.encoder.embeddings.tok.weight
    assert model.mlm_head.decoder.weight is tok
    with torch.no_grad():
        tok[3, 0] = 123.0
    assert model.mlm_head.decoder.weight[3, 0].item() == 123.0
    untied = MaskedLM(tiny(tie_mlm=False))
    assert untied.mlm_head.decoder.weight is not untied.encoder.embeddings.tok.weight
    assert num_params(untied) == num_params(model) + V * 32


def expected_params(V, d, H, hd, ff, L, max_len, n_seg, gated, pre, tied):
    inner = H * hd
    emb = V * d + max_len * d + n_seg * d
    block = (d * 3 * inner + 3 * inner) + (inner * d + d) + 2 * d
    block += d * (2 if gated else 1) * ff + (2 if gated else 1) * ff + ff * d + d + 2 * d
    head = d * d + d + 2 * d + V + (0 if tied else V * d)
    total = emb + 2 * d + L * block + (2 * d if pre else 0) + head
    non_emb = total - emb
    return total, non_emb


@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(activation="swiglu", norm="pre", tie_mlm=False, n_segments=0, d_head=12, n_head=3),
    ],
)
def test_param_counts_match_formula(kw):
    cfg = tiny(**kw)
    model = MaskedLM(cfg)
    total, non_emb = expected_params(
        V,
        cfg.d_model,
        cfg.n_head,
        cfg.head_dim,
        cfg.d_ff,
        cfg.n_layer,
        cfg.max_len,
        cfg.n_segments,
        cfg.activation in ("geglu", "swiglu"),
        cfg.norm == "pre",
        cfg.tie_mlm,
    )
    assert num_params(model) == total
    assert num_params(model, non_embedding=True) == non_emb
    text = param_summary(model)
    assert f"Total params: {total:,}" in text.splitlines()
    assert f"Non-embedding params: {non_emb:,}" in text.splitlines()


def test_param_counts_match_bert_base():
    # BERT-base MLM as Hugging Face counts it: 109,514,298 parameters with the decoder tied
    cfg = ModelConfig(vocab_size=30522, d_model=768, n_head=12, d_ff=3072, n_layer=12, max_len=512)
    model = MaskedLM(cfg)
    assert num_params(model) == 109_514_298


def test_param_groups_decay_only_matrices():
    model = MaskedLM(tiny())
    groups = param_groups(model, weight_decay=0.1)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    decay_ids = {id(p) for p in decay["params"]}
    no_decay_ids = {id(p) for p in no_decay["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    for n, p in model.named_parameters():
        if n.endswith("bias") or ".ln" in n:
            assert id(p) in no_decay_ids, n
    assert id(model.encoder.embeddings.tok.weight) in decay_ids
    # every parameter exactly once, the tied matrix included
    all_ids = [id(p) for g in groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == len(names)
    # frozen parameters are left out; works on any module
    head = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    head[0].weight.requires_grad_(False)
    g = param_groups(head, 0.01)
    assert sum(len(x["params"]) for x in g) == 3


def test_make_optimizer_steps():
    torch.manual_seed(0)
    model = MaskedLM(tiny())
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["fused"] or opt.defaults["foreach"]
    before = model.encoder.blocks[0].attn.qkv.weight.detach().clone()
    ids = ids_batch()
    model(ids, labels=some_labels(ids)).loss.backward()
    opt.step()
    assert not torch.equal(before, model.encoder.blocks[0].attn.qkv.weight)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = MaskedLM(tiny(dropout=0.0, attn_dropout=0.0))
    ids = ids_batch()
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    out = model(ids, token_type_ids=types, labels=some_labels(ids))
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(0)
    model = MaskedLM(tiny(dropout=0.2, attn_dropout=0.2))
    ids = ids_batch()
    model.eval()
    assert torch.equal(model(ids).logits, model(ids).logits)
    model.train()
    assert not torch.equal(model(ids).logits, model(ids).logits)


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = MaskedLM(tiny(dropout=0.0, attn_dropout=0.0, n_layer=2, d_model=64, d_ff=128))
    ids = ids_batch(4, 12, seed=1)
    g = torch.Generator().manual_seed(2)
    chosen = torch.rand(ids.shape, generator=g) < 0.3
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    inputs = torch.where(chosen, torch.zeros_like(ids) + 3, ids)
    opt = make_optimizer(model, lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(50):
        out = model(inputs, labels=labels)
        first = first if first is not None else out.loss.item()
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    assert first > 3.5  # ~ log(50) at init
    assert out.loss.item() < 0.1 * first
    assert out.n_correct.item() == out.n_masked.item()


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_summary_rows_match_the_model(norm):
    model = MaskedLM(tiny(norm=norm))
    rows = layer_rows(model, seq_len=12, batch=2)
    names = [r.name for r in rows]
    expected = ["encoder.embeddings", "encoder.blocks.0", "encoder.blocks.1"]
    expected += ["encoder.ln_f"] if norm == "pre" else []
    assert names == expected + ["mlm_head"]
    assert rows[0].input_shape == (2, 12)
    assert all(r.output_shape == (2, 12, 32) for r in rows[:-1])
    assert rows[-1].output_shape == (2, 12, V)
    assert sum(r.params for r in rows) == num_params(model)
    assert rows[-1].note  # the tied decoder is said so, and counted with the embeddings
    assert model.training  # the dummy pass restores the mode


def test_render_summary_prints_totals_and_checks_input():
    cfg = tiny()
    buf = io.StringIO()
    print_model_summary(cfg, 16, Console(file=buf, width=120))
    text = buf.getvalue()
    total = num_params(MaskedLM(cfg))
    assert re.search(rf"Total params.*{total:,}", text)
    assert "encoder.blocks.1" in text
    with pytest.raises(UserError, match="vocab_size"):
        render_summary(ModelConfig(), 16)
    with pytest.raises(UserError, match="max_len"):
        render_summary(cfg, 17)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_plain_mlm_head_trains_without_the_transform(norm):
    """mlm_head=plain: hidden state straight onto the tied embedding, d*d + 3d fewer params."""
    torch.manual_seed(0)
    bert = MaskedLM(tiny(norm=norm))
    model = MaskedLM(tiny(norm=norm, mlm_head="plain"))
    d = 32
    assert num_params(bert) - num_params(model) == d * d + d + 2 * d  # dense + LayerNorm
    assert [n for n, _ in model.mlm_head.named_parameters()] == ["decoder.weight", "decoder.bias"]
    assert model.mlm_head.decoder.weight is model.encoder.embeddings.tok.weight
    ids = ids_batch()
    full = model.eval()(ids).logits
    assert full.shape == (*ids.shape, V)
    labels = some_labels(ids)
    sel = labels != IGNORE_INDEX
    out = model(ids, labels=labels)
    assert torch.allclose(out.logits, full[sel], atol=1e-5)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_key_mask_drops_an_all_real_mask_only_where_checking_is_free():
    from encoderlab.model import key_mask

    full = torch.ones(2, 5, dtype=torch.long)
    padded = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert key_mask(None) is None
    assert key_mask(full) is None  # on the host: asking costs nothing
    assert key_mask(padded).shape == (2, 1, 1, 5)
    assert key_mask(padded)[0, 0, 0].tolist() == [True, True, True, False, False]
    # off the host (a meta tensor stands in for a GPU one) the mask is kept as given: reading
    # `.all()` there would wait for the device; callers pass None when nothing is padded
    on_device = key_mask(full.to("meta"))
    assert on_device is not None and on_device.shape == (2, 1, 1, 5)


def test_collate_says_on_the_host_whether_a_batch_is_padded():
    from encoderlab.tasks.base import base_collate, model_inputs

    def feature(n):
        return {"input_ids": list(range(1, n + 1)), "token_type_ids": [0] * n}

    same = base_collate([feature(4), feature(4)], pad_id=0)
    mixed = base_collate([feature(4), feature(2)], pad_id=0)
    assert same["has_padding"] is False and mixed["has_padding"] is True
    assert model_inputs(same)[1] is None
    assert model_inputs(mixed)[1] is mixed["attention_mask"]
    assert model_inputs({"input_ids": same["input_ids"], "attention_mask": 1})[1] == 1


def test_cpu_dropout_keeps_one_minus_p_scales_and_backpropagates_through_its_mask():
    from encoderlab.model import Dropout

    torch.manual_seed(0)
    drop = Dropout(0.1)
    x = torch.randn(200, 500, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.005  # 100,000 draws: sd ~0.001
    assert torch.allclose(y[kept], x[kept] / 0.9)
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.9)
    drop.eval()
    assert drop(x) is x or torch.equal(drop(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert Dropout(1.0).train()(x).abs().sum() == 0
    assert isinstance(drop, torch.nn.Dropout)  # `dropout:` at fine-tuning finds it


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_cpu_dropout_mask_bits_are_unbiased_in_every_lane(p):
    """The mask reads four 16-bit lanes of each random int64 word: every lane (element i % 4)
    must keep 1 - p of its elements, odd sizes included, and a seed repeats the mask."""
    from encoderlab.model import cpu_dropout

    torch.manual_seed(1)
    x = torch.ones(400_003)
    kept = cpu_dropout(x, p) != 0
    for lane in range(4):
        share = kept[lane::4].float().mean().item()
        assert abs(share - (1 - p)) < 0.005, (lane, share)  # 100,000 draws: sd <= 0.0016
    assert not torch.equal(kept, cpu_dropout(x, p) != 0)  # a fresh mask per call
    torch.manual_seed(1)
    assert torch.equal(kept, cpu_dropout(x, p) != 0)  # exact resume needs the same masks


def test_cpu_training_attention_is_sdpa_with_the_cheaper_dropout(monkeypatch):
    """On a CPU, training-mode attention with dropout is written out (scores, mask, softmax,
    `cpu_dropout`, @ v) instead of SDPA's bernoulli path: without the dropout it must equal
    SDPA's result, padded keys included, in values and gradients."""
    import encoderlab.model as model_module
    from encoderlab.model import SelfAttention, key_mask

    torch.manual_seed(0)
    attn = SelfAttention(tiny(attn_dropout=0.1))
    x = torch.randn(3, 7, attn.qkv.in_features, requires_grad=True)
    mask = key_mask(torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5]))
    calls = []

    def no_drop(t, p):
        calls.append((tuple(t.shape), p))
        return t

    monkeypatch.setattr(model_module, "cpu_dropout", no_drop)
    written = attn.train()(x, mask)
    (gx_written,) = torch.autograd.grad(written.square().sum(), x)
    sdpa = attn.eval()(x, mask)  # eval: SDPA with dropout_p 0
    (gx_sdpa,) = torch.autograd.grad(sdpa.square().sum(), x)
    assert calls == [((3, attn.n_head, 7, 7), 0.1)]  # the attention weights were dropped
    assert torch.allclose(written, sdpa, atol=1e-5)
    assert torch.allclose(gx_written, gx_sdpa, atol=1e-4)
    monkeypatch.undo()
    assert not torch.allclose(attn.train()(x, mask), sdpa, atol=1e-3)  # real dropout acts
