"""Hugging Face interop: import checkpoints as backbones, export runs that transformers loads.

This is the only module that imports `transformers`, and only inside functions, so the rest of
encoderlab works without it.

Import (`init: hf:<dir or hub name>`): BERT, RoBERTa (XLM-R, CamemBERT), MiniLM (BERT
architecture), DistilBERT and ELECTRA discriminators are converted into encoderlab's `Encoder`
(the fast path, and everything `Encoder` supports: drop_last, partial freezing, export). The
weight names map as follows (HF BERT -> encoderlab, see model.py):

    embeddings.word_embeddings         -> embeddings.tok
    embeddings.position_embeddings     -> embeddings.pos   (RoBERTa: rows from padding_idx+1 on)
    embeddings.token_type_embeddings   -> embeddings.seg   (one row only: folded into pos)
    embeddings.LayerNorm               -> embeddings.ln
    layer.i.attention.self.{q,k,v}     -> blocks.i.attn.qkv (stacked along dim 0)
    layer.i.attention.output.dense     -> blocks.i.attn.out
    layer.i.attention.output.LayerNorm -> blocks.i.ln1
    layer.i.intermediate.dense         -> blocks.i.ff.fc1
    layer.i.output.dense               -> blocks.i.ff.fc2
    layer.i.output.LayerNorm           -> blocks.i.ln2

Anything else (other model types, a non-exact activation like gelu_new, relative positions,
ELECTRA's embedding projection) runs as a wrapped `transformers.AutoModel` so the task still
trains; the run then keeps the HF config (hf_backbone/config.json) to rebuild it later.

Export (`encoderlab export RUN --to-hf OUT`) writes a BertConfig, model.safetensors with
BERT names and the run's tokenizer; features BertConfig cannot express are refused.

Nothing foreign runs: transformers is always told trust_remote_code=False (a checkpoint whose
config.json has an `auto_map` is refused unless the config sets hf_trust_remote_code: true),
and weights are read from safetensors only (pickled pytorch_model.bin is refused unless the
config sets hf_allow_pickle: true).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import (
    FinetuneConfig,
    ModelConfig,
    as_the_run_read,
    load_config,
    read_yaml,
)
from encoderlab.errors import UserError, first_line
from encoderlab.model import Encoder, without_init
from encoderlab.runs import (
    Run,
    encoder_weights,
    readable_as_umask,
    run_checkpoint,
    run_labels,
    run_model_config,
)
from encoderlab.tasks.registry import task_class, task_kind
from encoderlab.tokenizer import (
    load_tokenizer,
    save_tokenizer,
    set_special_tokens,
    special_ids,
    special_tokens,
)

PREFIX = "hf:"
WRAPPED_DIR = "hf_backbone"  # in a run directory: the HF config of a wrapped backbone
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")
_BERT_LIKE = ("bert", "electra", *_ROBERTA_LIKE)
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "silu": "swish", "swish": "swish"}
_EXPORT_ACT = {"gelu": "gelu", "relu": "relu", "swish": "silu"}
# buffers some transformers versions keep in state dicts; never weights
_IGNORABLE = ("embeddings.position_ids", "embeddings.token_type_ids")


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise UserError(
            "Hugging Face interop needs transformers: pip install 'encoderlab[hf]'"
        ) from None
    return transformers


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers logs every unused head weight when loading a base model; that is expected."""
    import logging as std_logging

    logging = require_transformers().utils.logging
    hub = std_logging.getLogger("huggingface_hub")  # offline: a warning per failed request
    before, hub_before = logging.get_verbosity(), hub.level
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    hub.setLevel(std_logging.ERROR)
    try:
        yield
    finally:
        logging.set_verbosity(before)
        hub.setLevel(hub_before)
        if bars:
            logging.enable_progress_bar()


TRUST_OPT_IN = "--set hf_trust_remote_code=true"
PICKLE_OPT_IN = "--set hf_allow_pickle=true"
_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def refuse_remote_code(config: dict[str, Any] | Any, where: str, trust: bool) -> None:
    """A config with `auto_map` names Python files of the checkpoint's own that transformers
    would import; without the explicit opt-in that is a one-line error, never a prompt."""
    auto_map = (
        config.get("auto_map") if isinstance(config, dict) else getattr(config, "auto_map", None)
    )
    if auto_map and not trust:
        raise UserError(
            f"{where}: its config.json has auto_map (the checkpoint's own Python code, "
            f"{', '.join(sorted(auto_map))}); encoderlab does not run it. If you trust that code, "
            f"opt in with {TRUST_OPT_IN} (hf_trust_remote_code: true in the config)"
        )


def _check_local_checkpoint(folder: Path, spec: str, trust: bool, allow_pickle: bool) -> None:
    """Before transformers touches a local folder: no foreign code, no pickled weights."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"init: hf:{spec}: cannot read config.json ({first_line(e)})") from None
    refuse_remote_code(config, f"init: hf:{spec}", trust)
    has_safe = any((folder / f).is_file() for f in _SAFETENSORS)
    pickled = [f for f in _PICKLES if (folder / f).is_file()]
    if pickled and not has_safe and not allow_pickle:
        raise UserError(
            f"init: hf:{spec}: has pickled weights only ({pickled[0]}); encoderlab loads "
            'safetensors only. Convert once: python -c "import transformers as t; '
            f"t.AutoModel.from_pretrained('{folder}').save_pretrained('{folder}-safe')\" (then "
            f"copy the tokenizer files there, init=hf:{folder}-safe), or opt in with {PICKLE_OPT_IN}"
        )


# ---------------------------------------------------------------------------------------------
# Import


class HFEncoder(nn.Module):
    """A transformers base model behind encoderlab's backbone call: ids -> last_hidden_state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        params = inspect.signature(model.forward).parameters
        # RoBERTa-style models have one token type; DistilBERT-style ones take none
        self.use_token_types = (
            "token_type_ids" in params and (getattr(model.config, "type_vocab_size", 0) or 0) > 1
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kwargs: dict[str, torch.Tensor] = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if self.use_token_types and token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.model(input_ids=input_ids, **kwargs).last_hidden_state


@dataclass
class Imported:
    encoder: nn.Module  # Encoder (converted) or HFEncoder (wrapped)
    tokenizer: Tokenizer
    model_cfg: ModelConfig
    source: str
    pooler: dict[str, torch.Tensor] | None  # the checkpoint's trained pooler dense, if it has one
    hf_config: Any | None  # wrapped only: the transformers config to save with the run

    @property
    def converted(self) -> bool:
        return isinstance(self.encoder, Encoder)


def resolve_source(spec: str) -> str:
    """A local directory (used directly) or a hub name (passed to transformers unchanged)."""
    name = spec.strip()
    if not name:
        raise UserError(
            "init: hf: needs a checkpoint directory or hub name, e.g. hf:bert-base-uncased"
        )
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").is_file():
            raise UserError(
                f"init: hf:{name}: {p} is not a checkpoint directory (no config.json); point it "
                "at a folder holding config.json and model.safetensors / pytorch_model.bin"
            )
        return str(p)
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise UserError(f"init: hf:{name}: directory not found; check the path")
    return name


def load_hf_tokenizer(source: str, trust_remote_code: bool = False) -> Tokenizer:
    """The checkpoint's tokenizer as a `tokenizers.Tokenizer`, with its special-token roles.

    transformers builds the fast tokenizer and its backend is taken: from tokenizer_config.json
    it applies the tokenizer class's own arguments, which win over tokenizer.json (a BERT
    tokenizer's do_lower_case, default true, lowercases whatever the file's normalizer says).
    A tokenizer.json alone, or one transformers cannot build on, is used directly.
    """
    local = Path(source)
    own_file = local.is_dir() and (local / "tokenizer.json").is_file()

    def as_saved() -> Tokenizer:
        tok = load_tokenizer(local)
        return _with_prefix_space(tok, special_tokens(tok), source)

    if own_file and not (local / "tokenizer_config.json").is_file():
        return as_saved()
    transformers = require_transformers()
    try:
        with _quiet_transformers():
            hf_tok = transformers.AutoTokenizer.from_pretrained(
                source, trust_remote_code=trust_remote_code
            )
    except Exception as e:
        if own_file:
            return as_saved()
        raise UserError(
            f"hf:{source}: could not load its tokenizer ({first_line(e)}); the checkpoint needs "
            "tokenizer.json, or vocab files transformers can turn into a fast tokenizer"
        ) from None
    backend = getattr(hf_tok, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        if own_file:
            return as_saved()
        raise UserError(
            f"hf:{source}: transformers gave a slow ({type(hf_tok).__name__}) tokenizer only; "
            "encoderlab needs a fast one (tokenizer.json)"
        )
    tok = Tokenizer.from_str(backend.to_str())
    tok.no_padding()
    tok.no_truncation()
    names = {}
    for role in ("pad", "unk", "cls", "sep", "mask"):
        value = getattr(hf_tok, f"{role}_token", None)
        if isinstance(value, str) and tok.token_to_id(value) is not None:
            names[role] = value
    set_special_tokens(tok, names, source=f"hf:{source}")
    special_ids(tok)  # all five roles, or a one-line error
    return _with_prefix_space(tok, names, source)


def _set_prefix_space(node: Any) -> bool:
    """Turn add_prefix_space on in every ByteLevel / RobertaProcessing part of a tokenizer's
    JSON (Sequences included); whether any was off."""
    changed = False
    if isinstance(node, dict):
        if node.get("type") in ("ByteLevel", "RobertaProcessing") and (
            node.get("add_prefix_space") is False
        ):
            node["add_prefix_space"] = True
            changed = True
        for value in node.values():
            changed |= _set_prefix_space(value)
    elif isinstance(node, list):
        for value in node:
            changed |= _set_prefix_space(value)
    return changed


def _with_prefix_space(tok: Tokenizer, names: dict[str, str], source: str) -> Tokenizer:
    """A byte-level BPE checkpoint tokenizer (RoBERTa, DeBERTa, GPT-2 style) with
    add_prefix_space on. Tagging encodes words one by one (is_pretokenized); without a prefix
    space each word is tokenized as if it began the text ("German" -> G erman, not the
    "ĠGerman" it is mid-sentence), which is why transformers requires add_prefix_space=True
    for pre-tokenized input. Running text changes only in its first word ("Hello" becomes
    "ĠHello", as in encoderlab's own byte-level BPE). Saved with the run, so predict and
    export tokenize the same way."""
    state = json.loads(tok.to_str())
    parts = [state.get("pre_tokenizer"), state.get("post_processor")]
    if not _set_prefix_space(parts[0]):
        return tok
    _set_prefix_space(parts[1])
    out = Tokenizer.from_str(json.dumps(state))
    set_special_tokens(out, names, source=f"hf:{source}")
    return out


def _map_layers(
    sd: dict[str, torch.Tensor],
    out: dict[str, torch.Tensor],
    used: set[str],
    n_layers: int,
    prefix: str,
    qkv: tuple[str, str, str],
    names: dict[str, str],
) -> None:
    """Each layer's weights into `out` (query/key/value fused into one qkv), noting keys used."""
    for i in range(n_layers):
        src = f"{prefix}{i}."
        for kind in ("weight", "bias"):
            keys = [f"{src}{x}.{kind}" for x in qkv]
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat([sd[k] for k in keys], dim=0)
            used.update(keys)
            for ours, theirs in names.items():
                out[f"blocks.{i}.{ours}.{kind}"] = sd[f"{src}{theirs}.{kind}"]
                used.add(f"{src}{theirs}.{kind}")


def _bert_like_state(
    cfg: Any, sd: dict[str, torch.Tensor], pad_id: int
) -> tuple[ModelConfig, dict[str, torch.Tensor]] | str:
    """BERT / RoBERTa / ELECTRA base-model weights -> (ModelConfig, Encoder state) or a reason."""
    raw = cfg.to_dict()
    if raw.get("position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type={raw['position_embedding_type']!r}"
    if raw.get("is_decoder") or raw.get("add_cross_attention"):
        return "it is a decoder (causal / cross-attention)"
    if "embeddings_project.weight" in sd:
        return "embedding_size differs from hidden_size (an embedding projection)"
    act = _ACTIVATIONS.get(str(raw.get("hidden_act")))
    if act is None:
        return f"hidden_act={raw.get('hidden_act')!r} (only exact gelu, relu, silu map)"
    offset = cfg.pad_token_id + 1 if cfg.model_type in _ROBERTA_LIKE else 0
    pos = sd["embeddings.position_embeddings.weight"][offset:]
    out: dict[str, torch.Tensor] = {
        "embeddings.tok.weight": sd["embeddings.word_embeddings.weight"],
        "embeddings.ln.weight": sd["embeddings.LayerNorm.weight"],
        "embeddings.ln.bias": sd["embeddings.LayerNorm.bias"],
    }
    n_seg = int(raw.get("type_vocab_size") or 0)
    seg = sd.get("embeddings.token_type_embeddings.weight")
    if n_seg == 1 and seg is not None:
        # a single token type is a constant vector: fold it into the positions, so pair tasks
        # (whose second segment has type 1) cannot index past a one-row table
        pos = pos + seg[0]
        n_seg = 0
    elif n_seg > 1 and seg is not None:
        out["embeddings.seg.weight"] = seg
    else:
        n_seg = 0
    out["embeddings.pos.weight"] = pos
    used = {
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    }
    names = {
        "attn.out": "attention.output.dense",
        "ln1": "attention.output.LayerNorm",
        "ff.fc1": "intermediate.dense",
        "ff.fc2": "output.dense",
        "ln2": "output.LayerNorm",
    }
    qkv = ("attention.self.query", "attention.self.key", "attention.self.value")
    _map_layers(sd, out, used, cfg.num_hidden_layers, "encoder.layer.", qkv, names)
    left = [k for k in sd if k not in used and not k.startswith("pooler.") and k not in _IGNORABLE]
    if left:
        return f"it has weights encoderlab's encoder lacks (e.g. {left[0]})"
    mc = ModelConfig(
        vocab_size=cfg.vocab_size,
        d_model=cfg.hidden_size,
        n_head=cfg.num_attention_heads,
        d_ff=cfg.intermediate_size,
        n_layer=cfg.num_hidden_layers,
        dropout=cfg.hidden_dropout_prob,
        attn_dropout=cfg.attention_probs_dropout_prob,
        activation=act,
        norm="post",
        layernorm_eps=cfg.layer_norm_eps,
        max_len=pos.shape[0],
        pad_id=pad_id,
        position="learned",
        n_segments=n_seg,
        init_std=getattr(cfg, "initializer_range", 0.02),
    )
    return mc, out


def _distilbert_state(
    cfg: Any, sd: dict[str, torch.Tensor], pad_id: int
) -> tuple[ModelConfig, dict[str, torch.Tensor]] | str:
    act = _ACTIVATIONS.get(str(cfg.activation))
    if act is None:
        return f"activation={cfg.activation!r} (only exact gelu, relu, silu map)"
    out = {
        "embeddings.tok.weight": sd["embeddings.word_embeddings.weight"],
        "embeddings.pos.weight": sd["embeddings.position_embeddings.weight"],
        "embeddings.ln.weight": sd["embeddings.LayerNorm.weight"],
        "embeddings.ln.bias": sd["embeddings.LayerNorm.bias"],
    }
    used = {
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    }
    names = {
        "attn.out": "attention.out_lin",
        "ln1": "sa_layer_norm",
        "ff.fc1": "ffn.lin1",
        "ff.fc2": "ffn.lin2",
        "ln2": "output_layer_norm",
    }
    qkv = ("attention.q_lin", "attention.k_lin", "attention.v_lin")
    _map_layers(sd, out, used, cfg.n_layers, "transformer.layer.", qkv, names)
    left = [k for k in sd if k not in used and k not in _IGNORABLE]
    if left:
        return f"it has weights encoderlab's encoder lacks (e.g. {left[0]})"
    mc = ModelConfig(
        vocab_size=cfg.vocab_size,
        d_model=cfg.dim,
        n_head=cfg.n_heads,
        d_ff=cfg.hidden_dim,
        n_layer=cfg.n_layers,
        dropout=cfg.dropout,
        attn_dropout=cfg.attention_dropout,
        activation=act,
        norm="post",
        layernorm_eps=1e-12,  # fixed in DistilBERT's code
        max_len=cfg.max_position_embeddings,
        pad_id=pad_id,
        position="learned",
        n_segments=0,
        init_std=getattr(cfg, "initializer_range", 0.02),
    )
    return mc, out


def convert_state(
    cfg: Any, sd: dict[str, torch.Tensor], pad_id: int
) -> tuple[ModelConfig, dict[str, torch.Tensor]] | str:
    """(ModelConfig, Encoder state dict) for a mappable base model, else why it does not map."""
    sd = {k: v.detach().float() for k, v in sd.items()}
    if cfg.model_type in _BERT_LIKE:
        return _bert_like_state(cfg, sd, pad_id)
    if cfg.model_type == "distilbert":
        return _distilbert_state(cfg, sd, pad_id)
    return f"model_type {cfg.model_type!r} has no converter"


def _wrapped_max_len(model: nn.Module, cfg: Any) -> int:
    """The longest input a wrapped model takes: its position table, less the rows RoBERTa-style
    embeddings skip (their position ids start at padding_idx + 1: roberta-prelayernorm,
    data2vec-text, MPNet, XLM-R XL, Longformer, ...; 514 rows hold 512 tokens). A longer
    task.max_len is then a one-line error before training, not an IndexError inside it."""
    raw = cfg.to_dict()
    max_pos = int(raw.get("max_position_embeddings") or 512)
    emb = getattr(model, "embeddings", None)
    table = getattr(emb, "position_embeddings", None)
    pad = getattr(emb, "padding_idx", None)
    if isinstance(table, nn.Embedding):
        max_pos = min(max_pos, table.num_embeddings)
        if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0:
            return max_pos - pad - 1
    if cfg.model_type in _ROBERTA_LIKE:
        max_pos -= (raw.get("pad_token_id") or 1) + 1
    return max_pos


def _wrapped_model_config(model: nn.Module, cfg: Any, vocab: int, pad_id: int) -> ModelConfig:
    """A ModelConfig describing a wrapped model closely enough for the task code (d_model, max_len)."""
    raw = cfg.to_dict()
    d = int(raw.get("hidden_size") or raw.get("dim") or raw.get("d_model") or 0)
    if d < 1:
        raise UserError(f"{cfg.model_type}: cannot tell the hidden size from its config.json")
    n_head = int(raw.get("num_attention_heads") or raw.get("n_heads") or 1)
    max_pos = _wrapped_max_len(model, cfg)
    return ModelConfig(
        vocab_size=max(int(raw.get("vocab_size") or vocab), vocab),
        d_model=d,
        n_head=n_head if d % n_head == 0 else 1,
        d_ff=int(raw.get("intermediate_size") or raw.get("hidden_dim") or 4 * d),
        n_layer=int(raw.get("num_hidden_layers") or raw.get("n_layers") or 1),
        max_len=max(max_pos, 8),
        pad_id=pad_id,
    )


def import_checkpoint(
    spec: str,
    say: Callable[[str], None] = print,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> Imported:
    """Load `hf:<spec>`: the encoder (converted where it maps, else wrapped) and its tokenizer.

    The checkpoint's own code runs only with `trust_remote_code`, pickled weights load only
    with `allow_pickle` (the config's hf_trust_remote_code / hf_allow_pickle)."""
    transformers = require_transformers()
    source = resolve_source(spec)
    if Path(source).is_dir():
        _check_local_checkpoint(Path(source), spec, trust_remote_code, allow_pickle)
    elif not os.environ.get("HF_HUB_OFFLINE"):  # no connection: ~25 s of retries, unsaid
        say(f"hf:{spec}: asking the Hugging Face Hub (HF_HUB_OFFLINE=1 reads only its cache)")
    try:  # the small file first: a wrong hub name or no connection fails fast, and clearly
        with _quiet_transformers():
            hf_config = transformers.AutoConfig.from_pretrained(
                source, trust_remote_code=trust_remote_code
            )
    except Exception as e:
        if not trust_remote_code and "trust_remote_code" in str(e):
            refuse_remote_code({"auto_map": {"AutoConfig": ""}}, f"init: hf:{spec}", False)
        where = (
            "a local directory"
            if Path(source).is_dir()
            # a relative path with a typo ("models/minilm" run from elsewhere) looks like a
            # hub name: say that it is no folder here either
            else f"the Hugging Face Hub (nor is it a folder under {Path.cwd()})"
        )
        raise UserError(
            f"init: hf:{spec}: could not load its config.json from {where} ({first_line(e)}); "
            "check the name (and the connection), or point init at a local checkpoint directory"
        ) from None
    refuse_remote_code(hf_config, f"init: hf:{spec}", trust_remote_code)  # hub checkpoints
    if getattr(hf_config, "is_encoder_decoder", False):
        raise UserError(
            f"init: hf:{spec} is an encoder-decoder model ({hf_config.model_type}); encoderlab "
            "fine-tunes encoders: give a BERT-family checkpoint (BERT, RoBERTa, DeBERTa, ...)"
        )
    tok = load_hf_tokenizer(source, trust_remote_code)
    _check_vocabulary(spec, tok, hf_config)
    pad_id = special_ids(tok)["pad"]
    direct = _import_from_files(Path(source), hf_config, tok, pad_id, spec)
    if direct is not None:
        return direct
    try:
        with _quiet_transformers():
            model, info = transformers.AutoModel.from_pretrained(
                source,
                output_loading_info=True,
                dtype=torch.float32,
                trust_remote_code=trust_remote_code,
                use_safetensors=None if allow_pickle else True,
            )
    except Exception as e:
        weights = (
            "model.safetensors" if not allow_pickle else "model.safetensors or pytorch_model.bin"
        )
        raise UserError(
            f"init: hf:{spec}: transformers could not load it ({first_line(e)}); it needs "
            f"config.json and {weights} (or a hub name when online)"
            + ("" if allow_pickle else f"; pickled weights only with {PICKLE_OPT_IN}")
        ) from None
    cfg = model.config
    vocab = int(getattr(cfg, "vocab_size", 0) or 0)
    if vocab and tok.get_vocab_size() > vocab:
        raise UserError(
            f"init: hf:{spec}: the tokenizer has {tok.get_vocab_size():,} tokens but the model "
            f"only {vocab:,} embeddings; the checkpoint's tokenizer files do not belong to it"
        )
    missing = set(info.get("missing_keys") or ())
    _check_weights_match(spec, missing, info.get("unexpected_keys") or (), model)
    sd = model.state_dict()
    pooler = _trained_pooler(model, sd, missing)
    converted = convert_state(cfg, sd, pad_id)
    if isinstance(converted, tuple):
        model_cfg, state = converted
        with without_init():  # the strict load sets every weight
            encoder = Encoder(model_cfg)
        encoder.load_state_dict(state, strict=True)
        return Imported(
            encoder, tok, model_cfg, f"hf:{spec} ({cfg.model_type}, converted)", pooler, None
        )
    say(
        f"note: hf:{spec} ({cfg.model_type}) does not map onto encoderlab's encoder: {converted}; "
        "it runs as a wrapped transformers model (no drop_last, freeze all/none only, no export)"
    )
    model_cfg = _wrapped_model_config(model, cfg, tok.get_vocab_size(), pad_id)
    return Imported(
        HFEncoder(model.float()),
        tok,
        model_cfg,
        f"hf:{spec} ({cfg.model_type}, wrapped)",
        pooler,
        cfg,
    )


def _trained_pooler(
    model: nn.Module, sd: dict[str, torch.Tensor], missing: set[str]
) -> dict[str, torch.Tensor] | None:
    """The checkpoint's trained pooler (dense d->d, then tanh on the first token) for the
    pooler head: BERT-style `pooler.dense`, or ALBERT's `pooler` with its `pooler_activation`
    tanh (which started random before: only BERT's names were looked for)."""
    for prefix in ("pooler.dense.", "pooler."):
        weight, bias = sd.get(f"{prefix}weight"), sd.get(f"{prefix}bias")
        if weight is None or bias is None or f"{prefix}weight" in missing:
            continue
        if weight.dim() != 2 or weight.shape[0] != weight.shape[1]:
            continue
        if prefix == "pooler." and not isinstance(
            getattr(model, "pooler_activation", None), nn.Tanh
        ):
            continue
        return {"weight": weight.detach().float().clone(), "bias": bias.detach().float().clone()}
    return None


def _check_vocabulary(spec: str, tok: Tokenizer, hf_config: Any) -> None:
    """A checkpoint folder without its vocabulary files gets a stand-in tokenizer of a few
    tokens from transformers, and every word becomes [UNK]: refuse it instead."""
    vocab = int(getattr(hf_config, "vocab_size", 0) or 0)
    if vocab and tok.get_vocab_size() < vocab // 2:
        raise UserError(
            f"init: hf:{spec}: its tokenizer has {tok.get_vocab_size():,} tokens for the model's "
            f"{vocab:,} embeddings: the vocabulary files (tokenizer.json, or vocab.txt / "
            "vocab.json + merges.txt) are missing or not the model's own; copy them from the "
            "model's original folder"
        )


def _check_weights_match(spec: str, missing: set[str], unexpected: Any, model: Any) -> None:
    """Weights the model's config asks for that the file lacks would start random, and the
    file's encoder weights the config has no place for would be dropped, both silently (the
    config.json does not describe these weights): refuse either. The pooler, buffers and task
    heads (a checkpoint saved from a task model) are not the encoder's."""
    prefix = f"{getattr(model, 'base_model_prefix', '') or '-'}."
    lacking = sorted(k for k in missing if not k.startswith("pooler.") and "position_ids" not in k)
    extra = sorted(
        k
        for k in (x.removeprefix(prefix) for x in unexpected)
        if k.startswith(("encoder.", "embeddings.", "layer.", "transformer."))
    )
    if lacking:
        raise UserError(
            f"init: hf:{spec}: the weights file lacks {len(lacking)} of the weights its "
            f"config.json describes (e.g. {lacking[0]}); they would start random. The config "
            "does not match the weights (layers, architecture): use the model's own config.json"
        )
    if extra:
        raise UserError(
            f"init: hf:{spec}: the weights file has {len(extra)} encoder weights its "
            f"config.json has no place for (e.g. {extra[0]}); they would be dropped. The config "
            "does not match the weights (layers, architecture): use the model's own config.json"
        )


def _base_state_from_files(folder: Path, model_type: str) -> dict[str, torch.Tensor] | None:
    """The base model's tensors read straight from a local single-file model.safetensors
    (names as `AutoModel` gives them: a task model's prefix such as "bert." stripped, its
    heads left out), or None where only transformers knows how to read the folder."""
    path = folder / "model.safetensors"
    if not path.is_file() or model_type not in (*_BERT_LIKE, "distilbert"):
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            word = "embeddings.word_embeddings.weight"
            prefix = next((k[: -len(word)] for k in names if k.endswith(word)), None)
            if prefix is None or prefix.count(".") > 1:  # "" or a task model's "bert."
                return None
            return {k[len(prefix) :]: f.get_tensor(k) for k in names if k.startswith(prefix)}
    except Exception:  # unreadable here: transformers gives the error (or reads it after all)
        return None


def _import_from_files(
    folder: Path, hf_config: Any, tok: Tokenizer, pad_id: int, spec: str
) -> Imported | None:
    """A BERT-like local checkpoint converted from its safetensors file, without building the
    transformers model (its modelling code is ~3 s of imports, then a random init that the
    weights overwrite). None when anything does not map: `import_checkpoint` then goes the
    general way, through `AutoModel`, which also gives the errors."""
    if not folder.is_dir():
        return None
    sd = _base_state_from_files(folder, hf_config.model_type)
    vocab = int(getattr(hf_config, "vocab_size", 0) or 0)
    if sd is None or (vocab and tok.get_vocab_size() > vocab):
        return None
    try:
        converted = convert_state(hf_config, sd, pad_id)
        if isinstance(converted, str):
            return None
        model_cfg, state = converted
        with without_init():  # the strict load sets every weight
            encoder = Encoder(model_cfg)
        encoder.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, ValueError):  # a missing or misshapen tensor
        return None
    pooler = None
    if "pooler.dense.weight" in sd and "pooler.dense.bias" in sd:
        pooler = {
            "weight": sd["pooler.dense.weight"].float().clone(),
            "bias": sd["pooler.dense.bias"].float().clone(),
        }
    source = f"hf:{spec} ({hf_config.model_type}, converted)"
    return Imported(encoder, tok, model_cfg, source, pooler, None)


def save_wrapped_config(hf_config: Any, run_dir: Path) -> None:
    """Keep what `wrapped_encoder` needs to rebuild a wrapped backbone (weights: checkpoints)."""
    hf_config.save_pretrained(str(run_dir / WRAPPED_DIR))


def _run_trusts_remote_code(run_dir: Path) -> bool:
    """The opt-in a run was started with (its config.yaml), so predict does what training did."""
    import yaml

    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(saved, dict) and saved.get("hf_trust_remote_code") is True


def wrapped_encoder(run_dir: Path) -> HFEncoder | None:
    """The wrapped backbone of a run, with untrained weights, or None if the run has none."""
    folder = Path(run_dir) / WRAPPED_DIR
    if not (folder / "config.json").is_file():
        return None
    trust = _run_trusts_remote_code(Path(run_dir))
    try:
        saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{folder}: cannot read config.json ({first_line(e)})") from None
    refuse_remote_code(saved, str(folder), trust)
    transformers = require_transformers()
    try:
        with _quiet_transformers():
            config = transformers.AutoConfig.from_pretrained(str(folder), trust_remote_code=trust)
            model = transformers.AutoModel.from_config(config, trust_remote_code=trust)
    except Exception as e:
        raise UserError(
            f"{folder}: cannot rebuild the wrapped backbone ({first_line(e)})"
        ) from None
    return HFEncoder(model.float())


def run_encoder(run: Run, model_cfg: ModelConfig) -> nn.Module:
    """The (untrained) backbone module of a run: encoderlab's Encoder, or the wrapped
    transformers model an hf: run kept the config of."""
    wrapped = wrapped_encoder(run.path)
    return wrapped if wrapped is not None else Encoder(model_cfg)


# ---------------------------------------------------------------------------------------------
# Export


def _say_truncation(run: Run, out: Path, max_len: int, say: Callable[[str], None]) -> None:
    """A run that reads long texts by head_tail or windows answers them otherwise than a
    transformers model, which keeps the first max_len tokens: said at export and in the card."""
    try:
        saved = as_the_run_read(read_yaml(run.path / "config.yaml", "run config"))
    except UserError:
        return
    truncation = (saved.get("task") or {}).get("truncation", "head")
    if truncation in (None, "head"):
        return
    line = (
        f"The run read texts longer than {max_len} tokens with task.truncation={truncation}; "
        "this checkpoint keeps their first tokens only (transformers truncates at the end), so "
        "for such texts its predictions differ from `encoderlab predict` on the run."
    )
    with open(out / "README.md", "a", encoding="utf-8") as f:
        f.write(f"\n**Long texts.** {line}\n")
    say(f"warning: {line}")


def export_problems(mc: ModelConfig) -> list[str]:
    """What of an encoder BertConfig cannot express; empty when it exports."""
    out = []
    if mc.norm == "pre":
        out.append("pre-LN (model.norm=pre); BERT is post-LN: train with model.norm=post")
    if mc.activation in ("geglu", "swiglu"):
        out.append(
            f"gated activation {mc.activation} (model.activation); BERT's FFN is ungated: train "
            "with model.activation=gelu"
        )
    if mc.position == "alibi":
        out.append(
            "ALiBi attention biases (model.position; the budget recipe's and scratch tagging's and pos' "
            "default); BERT learns its position table: train with model.position=learned"
        )
    elif mc.position != "learned":
        out.append(
            "sinusoidal positions (model.position); BERT learns its position table: train with "
            "model.position=learned"
        )
    if mc.head_dim * mc.n_head != mc.d_model:
        out.append(
            f"d_head x n_head = {mc.head_dim} x {mc.n_head} != d_model = {mc.d_model}; "
            "BERT needs them equal"
        )
    return out


def bert_config_fields(mc: ModelConfig, pad_id: int) -> dict[str, Any]:
    """transformers.BertConfig arguments describing encoderlab's encoder `mc` (see bert_state)."""
    return {
        "vocab_size": mc.vocab_size,
        "hidden_size": mc.d_model,
        "num_hidden_layers": mc.n_layer,
        "num_attention_heads": mc.n_head,
        "intermediate_size": mc.d_ff,
        "hidden_act": _EXPORT_ACT[mc.activation],
        "hidden_dropout_prob": mc.dropout,
        "attention_probs_dropout_prob": mc.attn_dropout,
        "max_position_embeddings": mc.max_len,
        "type_vocab_size": max(mc.n_segments, 2),
        "initializer_range": mc.init_std,
        "layer_norm_eps": mc.layernorm_eps,
        "pad_token_id": pad_id,
    }


def bert_state(
    enc: dict[str, torch.Tensor], mc: ModelConfig, prefix: str
) -> dict[str, torch.Tensor]:
    """encoderlab Encoder tensors -> BertModel names (no pooler), under `prefix`."""
    d = mc.d_model
    seg = enc.get("embeddings.seg.weight")
    if seg is None:  # no segment embedding: zero rows add nothing, whatever the type ids
        seg = torch.zeros(2, d)
    elif len(seg) < 2:  # n_segments 1: BERT has two rows; the second reads as the first
        seg = torch.cat([seg, seg[:1].expand(2 - len(seg), -1)])
    out = {
        "embeddings.word_embeddings.weight": enc["embeddings.tok.weight"],
        "embeddings.position_embeddings.weight": enc["embeddings.pos.weight"],
        "embeddings.token_type_embeddings.weight": seg,
        "embeddings.LayerNorm.weight": enc["embeddings.ln.weight"],
        "embeddings.LayerNorm.bias": enc["embeddings.ln.bias"],
    }
    names = {
        "attn.out": "attention.output.dense",
        "ln1": "attention.output.LayerNorm",
        "ff.fc1": "intermediate.dense",
        "ff.fc2": "output.dense",
        "ln2": "output.LayerNorm",
    }
    for i in range(mc.n_layer):
        dst = f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = enc[f"blocks.{i}.attn.qkv.{kind}"].chunk(3, dim=0)
            for name, t in (("query", q), ("key", k), ("value", v)):
                out[f"{dst}attention.self.{name}.{kind}"] = t
            for ours, theirs in names.items():
                out[f"{dst}{theirs}.{kind}"] = enc[f"blocks.{i}.{ours}.{kind}"]
    return {prefix + k: v for k, v in out.items()}


_AUTO_CLASS = {
    "BertForMaskedLM": "AutoModelForMaskedLM",
    "ElectraForPreTraining": "AutoModelForPreTraining",
    "BertForSequenceClassification": "AutoModelForSequenceClassification",
    "BertForTokenClassification": "AutoModelForTokenClassification",
    "BertForQuestionAnswering": "AutoModelForQuestionAnswering",
}


def _card_metrics(run: Run) -> list[str]:
    """Metric lines for the model card: the final evaluation of a fine-tuning run (eval/), or
    the best validation value run.json keeps."""
    out = []
    try:
        final = json.loads((run.path / "eval" / "valid.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        final = None
    if isinstance(final, dict):
        for key, value in final.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(f"| {key} | {value:.4g} |")
    best = run.info.get("best")
    if not out and isinstance(best, dict) and isinstance(best.get("value"), (int, float)):
        out.append(
            f"| {best.get('metric')} (best, step {best.get('step')}) | {best['value']:.4g} |"
        )
    return out


def _card_is_pair(run: Run, kind: str) -> bool:
    """Whether a fine-tuning run reads two texts (a pair task, a pair regression)."""
    if not kind.startswith("finetune/"):
        return False
    spec = task_class(kind.split("/", 1)[1])
    try:
        cfg = load_config(run.path / "config.yaml", schema=FinetuneConfig)
    except UserError:
        return False
    is_pair = getattr(spec, "is_pair", None) if spec is not None else None
    return bool(is_pair and is_pair(spec(), cfg.task))


def _card_task_value(cfg: dict, key: str) -> int:
    """The run's task.<key> (max_query_len, max_answer_len; the default where the config does
    not say)."""
    from encoderlab.config import TaskConfig

    value = (cfg.get("task") or {}).get(key) if isinstance(cfg, dict) else None
    return value if isinstance(value, int) else TaskConfig.model_fields[key].default


def _card_threshold(cfg: dict) -> float | dict[str, float]:
    """A multilabel run's task.threshold, one number or {label: cut} (the default where the
    config does not say)."""
    from encoderlab.config import TaskConfig

    value = (cfg.get("task") or {}).get("threshold") if isinstance(cfg, dict) else None
    if isinstance(value, dict) and all(isinstance(v, (int, float)) for v in value.values()):
        return {str(k): float(v) for k, v in value.items()}
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else TaskConfig.model_fields["threshold"].default


def _card_usage(
    arch: str,
    max_len: int,
    pair: bool,
    n_labels: int,
    max_query_len: int = 64,
    max_answer_len: int = 30,
    threshold: float | dict[str, float] | None = None,
) -> list[str]:
    """The model card's lines after loading: a batch the way the run encoded its input, and
    reading the output (a runnable snippet; tests/test_hf.py executes it on each export)."""
    cut = f"truncation=True, max_length={max_len}"
    if arch == "BertForQuestionAnswering":  # [CLS] question [SEP] context [SEP]
        return [
            'question, context = "Who lives in Paris?", "Marie lives in Paris."',
            f"# the run kept a question's first {max_query_len} tokens (task.max_query_len)",
            "q = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)",
            f'question = question[: q["offset_mapping"][:{max_query_len}][-1][1]]',
            f'batch = tokenizer(question, context, truncation="only_second", max_length={max_len},',
            '                  return_offsets_mapping=True, return_tensors="pt")',
            'offsets = batch.pop("offset_mapping")[0].tolist()',
            "out = model(**batch)  # start_logits, end_logits: (batch, sequence)",
            "starts, ends = out.start_logits[0].tolist(), out.end_logits[0].tolist()",
            "ctx = [i for i, s in enumerate(batch.sequence_ids(0)) if s == 1]  # context tokens",
            f"# as the run decodes: the best start + end logit sum over context spans of at most "
            f"{max_answer_len} tokens",
            "# (task.max_answer_len; a context longer than max_length: the run slides windows)",
            f"spans = [(s, e) for s in ctx for e in ctx if s <= e < s + {max_answer_len}]",
            "start, end = max(spans, key=lambda span: starts[span[0]] + ends[span[1]])",
            "print(context[offsets[start][0] : offsets[end][1]])",
        ]
    if arch == "BertForTokenClassification":  # words split at whitespace, a tag per word
        return [
            'words = "Peter Blackburn said".split()',
            f'batch = tokenizer([words], is_split_into_words=True, {cut}, return_tensors="pt")',
            "tags = model(**batch).logits.argmax(-1)[0].tolist()",
            "first = {}  # a word's tag is that of its first sub-token",
            "for pos, w in enumerate(batch.word_ids(0)):",
            "    if w is not None:",
            "        first.setdefault(w, pos)",
            "print([(words[w], model.config.id2label[tags[p]]) for w, p in first.items()])",
        ]
    if arch == "BertForSequenceClassification":
        texts = '["first sentence"], ["second sentence"]' if pair else '["some text"]'
        lines = [
            f'batch = tokenizer({texts}, {cut}, return_tensors="pt")',
            "logits = model(**batch).logits",
        ]
        if isinstance(threshold, dict):  # multilabel, a cut per label (0.5 for the rest)
            lines += [
                f"cuts = {threshold!r}  # as the run decides (task.threshold; 0.5 for the rest)",
                "probs = logits.sigmoid()[0].tolist()",
                "names = [model.config.id2label[i] for i in range(len(probs))]",
                "print([n for n, p in zip(names, probs) if p >= cuts.get(n, 0.5)])",
            ]
        elif threshold is not None:  # multilabel: every label whose sigmoid reaches it
            lines += [
                f"# as the run decides (task.threshold {threshold:g}): each label on its own",
                f"chosen = (logits.sigmoid()[0] >= {threshold:g}).nonzero().flatten().tolist()",
                "print([model.config.id2label[i] for i in chosen])",
            ]
        elif n_labels > 1:
            lines.append("print(model.config.id2label[int(logits.argmax(-1)[0])])")
        return lines
    return [
        f'batch = tokenizer(["some text"], {cut}, return_tensors="pt")',
        "logits = model(**batch).logits",
    ]


def write_model_card(
    run: Run,
    out: Path,
    arch: str,
    ckpt: Path,
    max_len: int,
    id2label: dict[int, str] | None,
) -> Path:
    """README.md for the exported folder: what the model is, what it was trained on, how
    well it did, the config, and how to load it."""
    import yaml

    info = run.info
    try:
        cfg = yaml.safe_load((run.path / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        cfg = {}
    kind = str(info.get("kind", ""))
    if kind == "pretrain":
        data = cfg.get("data") or {}
        corpus = data.get("corpus") or [s.get("name") for s in data.get("sources") or []]
        what = "ELECTRA" if arch.startswith("Electra") else "Masked-LM"
        about = (
            f"{what} pretraining on {', '.join(map(str, corpus)) or 'its corpus'} "
            f"({info.get('corpus_tokens', '?'):,} tokens, blocks of {data.get('block_len')})."
            if isinstance(info.get("corpus_tokens"), int)
            else f"{what} pretraining on {', '.join(map(str, corpus)) or 'its corpus'}."
        )
    else:
        task = cfg.get("task") or {}
        about = (
            f"Fine-tuned for {kind.split('/', 1)[-1]} on {task.get('train')} (validation: "
            f"{info.get('valid_source') or task.get('valid')}); backbone {info.get('init', '?')}."
        )
    metrics = _card_metrics(run)
    auto = _AUTO_CLASS[arch]
    labels = ", ".join(f"{i}: {n}" for i, n in (id2label or {}).items())
    lines = [
        "---",
        "library_name: transformers",
        "tags: [encoderlab, bert]",
        "---",
        "",
        f"# {info.get('name', run.path.name)} ({arch})",
        "",
        f"Exported by `encoderlab export` from run `{run.path.name}`, checkpoint `{ckpt.name}` "
        f"({info.get('steps', '?')} steps).",
        "",
        "## Data",
        "",
        about,
        "",
        "## Metrics",
        "",
        *(["| metric | value |", "| --- | --- |", *metrics] if metrics else ["(none recorded)"]),
        "",
        "## Labels",
        "",
        labels
        or (
            "(the discriminator's replaced-token head: no labels)"
            if arch.startswith("Electra")
            else "(a masked-LM head: no labels)"
        ),
        "",
        "## How to load",
        "",
        "```python",
        f"from transformers import AutoTokenizer, {auto}",
        "",
        'tokenizer = AutoTokenizer.from_pretrained("PATH")',
        f'model = {auto}.from_pretrained("PATH")',
        *_card_usage(
            arch,
            max_len,
            _card_is_pair(run, kind),
            len(id2label or {}),
            _card_task_value(cfg, "max_query_len"),
            _card_task_value(cfg, "max_answer_len"),
            _card_threshold(cfg) if kind.endswith("/multilabel") else None,
        ),
        "```",
        "",
        f"The tokenizer's model_max_length is {max_len}, the length the run encoded to.",
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


_SEQUENCE_HEADS = "the pooler head (head.type=pooler) for classification, pair, regression and multilabel, the token head of tagging and qa"
# why each sequence head has no exact transformers class (BertForSequenceClassification always
# puts its tanh pooler between [CLS] and the classifier)
_NO_HF_CLASS = {
    "cls": "a linear layer straight on [CLS], without BERT's dense+tanh pooler",
    "mean": "mean pooling over the tokens, which no BertFor* class does",
    "cnn": "convolutions over the tokens, which no BertFor* class does",
}


def _finetune_export(
    run: Run,
    kind: str,
    mc: ModelConfig,
    enc: dict[str, torch.Tensor],
    tensors: dict[str, torch.Tensor],
) -> tuple[str, dict[str, torch.Tensor], dict[str, Any], int]:
    """(architecture, BERT state, extra config fields, max_len) of a fine-tuning run, or a
    one-line refusal when its head has no exact transformers class."""
    cfg = load_config(run.path / "config.yaml", schema=FinetuneConfig)
    max_len = min(cfg.task.max_len, mc.max_len)  # what the task encoded to
    spec = task_class(kind.split("/", 1)[1])
    head_kind = getattr(spec, "hf_head", None)
    labels = run_labels(run)
    head = {k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")}
    state = bert_state(enc, mc, "bert.")
    extra = {"classifier_dropout": cfg.head.dropout}
    if head_kind == "sequence":
        if cfg.head.type != "pooler":
            raise UserError(
                f"{run.path}: cannot export head.type={cfg.head.type} to transformers "
                f"({_NO_HF_CLASS.get(cfg.head.type, 'no BertFor* class')}); export it with "
                f"--to-onnx instead (any head), or fine-tune with head.type=pooler "
                f"(BertForSequenceClassification); exportable heads: {_SEQUENCE_HEADS}"
            )
        arch = "BertForSequenceClassification"
        weight, bias = head["out.weight"], head["out.bias"]
        if task_kind(cfg.task.type) == "regression":  # transformers gives the score itself
            mean, std = cfg.task.target_scale()
            weight, bias = weight * std, bias * std + mean
        state.update(
            {
                "bert.pooler.dense.weight": head["dense.weight"],
                "bert.pooler.dense.bias": head["dense.bias"],
                "classifier.weight": weight,
                "classifier.bias": bias,
            }
        )
    elif head_kind == "token":
        arch = "BertForTokenClassification"
        state.update({"classifier.weight": head["out.weight"], "classifier.bias": head["out.bias"]})
    elif head_kind == "span":
        # channel 0 scores starts and channel 1 ends (tasks/qa.py), as qa_outputs splits them
        arch = "BertForQuestionAnswering"
        labels = ["start", "end"]
        state.update({"qa_outputs.weight": head["out.weight"], "qa_outputs.bias": head["out.bias"]})
    else:
        raise UserError(f"{run.path}: task type {kind[9:]!r} has no transformers export")
    extra["id2label"] = {i: name for i, name in enumerate(labels)}
    extra["label2id"] = {name: i for i, name in enumerate(labels)}
    if getattr(spec, "hf_problem_type", None):  # multilabel: sigmoid per label, not softmax
        extra["problem_type"] = spec.hf_problem_type
    return arch, state, extra, max_len


def _pretrain_export(
    run: Run, mc: ModelConfig, enc: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]
) -> tuple[str, dict[str, torch.Tensor], dict[str, Any], int]:
    """(architecture, state, extra config fields, max_len) of a pretraining run: an MLM run as
    BertForMaskedLM, an ELECTRA run (objectives.py) as its discriminator, ElectraForPreTraining
    (the generator stays behind: fine-tuning and feature extraction use the discriminator)."""
    if "disc_head.dense.weight" in tensors:  # ELECTRA: names in electra.py
        state = bert_state(enc, mc, "electra.")
        state.update(
            {
                "discriminator_predictions.dense.weight": tensors["disc_head.dense.weight"],
                "discriminator_predictions.dense.bias": tensors["disc_head.dense.bias"],
                "discriminator_predictions.dense_prediction.weight": tensors[
                    "disc_head.out.weight"
                ],
                "discriminator_predictions.dense_prediction.bias": tensors["disc_head.out.bias"],
            }
        )
        return "ElectraForPreTraining", state, {"embedding_size": mc.d_model}, mc.max_len
    if mc.activation != "gelu":
        raise UserError(
            f"{run.path}: cannot export to BertConfig: model.activation={mc.activation} with "
            "encoderlab's gelu MLM head; BertConfig has one hidden_act for both"
        )
    state = bert_state(enc, mc, "bert.")
    tok_w = enc["embeddings.tok.weight"]
    dec_w = tensors.get("mlm_head.decoder.weight", tok_w)
    dec_b = tensors["mlm_head.decoder.bias"]
    state.update(
        {
            "cls.predictions.transform.dense.weight": tensors["mlm_head.dense.weight"],
            "cls.predictions.transform.dense.bias": tensors["mlm_head.dense.bias"],
            "cls.predictions.transform.LayerNorm.weight": tensors["mlm_head.ln.weight"],
            "cls.predictions.transform.LayerNorm.bias": tensors["mlm_head.ln.bias"],
            "cls.predictions.bias": dec_b,
            "cls.predictions.decoder.bias": dec_b,
        }
    )
    if not mc.tie_mlm:
        state["cls.predictions.decoder.weight"] = dec_w
    return "BertForMaskedLM", state, {"tie_word_embeddings": mc.tie_mlm}, mc.max_len


def check_export_dir(out_dir: str | Path) -> None:
    """--to-hf writes config.json, README.md, model.safetensors and the tokenizer's files: into a
    new or empty folder, or over an earlier export (its model card says so),
    never over a user's own files or into a run directory."""
    out = Path(out_dir)
    if not str(out_dir).strip():
        raise UserError("--to-hf is empty; give the folder to write the checkpoint to")
    if out.exists() and not out.is_dir():
        raise UserError(f"--to-hf {out}: is a file; give a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    card = out / "README.md"
    try:
        ours = (out / "config.json").is_file() and "Exported by `encoderlab export` from run" in (
            card.read_text(encoding="utf-8")
        )
    except (OSError, UnicodeDecodeError):
        ours = False
    if not ours or (out / "run.json").exists():
        raise UserError(
            f"--to-hf {out}: the folder holds other files; give a new or empty folder "
            "(an earlier export there is replaced)"
        )


def export_run(
    run_dir: str | Path, out_dir: str | Path, say: Callable[[str], None] = print
) -> Path:
    """Write a run as a transformers BERT checkpoint: config.json, model.safetensors, tokenizer.

    Pretraining runs load with AutoModelForMaskedLM (ELECTRA runs: AutoModelForPreTraining,
    the discriminator as ElectraForPreTraining); fine-tuning runs with
    AutoModelFor{SequenceClassification,TokenClassification,QuestionAnswering}.
    """
    check_export_dir(out_dir)
    transformers = require_transformers()
    run = Run.open(run_dir)
    kind = str(run.info.get("kind", ""))
    if (run.path / WRAPPED_DIR / "config.json").is_file():
        raise UserError(
            f"{run.path}: its backbone is a wrapped transformers model, not encoderlab's encoder; "
            "export supports converted or encoderlab-trained encoders only"
        )
    mc = run_model_config(run)
    problems = export_problems(mc)
    if problems:
        electra_like = kind == "pretrain" and run.info.get("objective", "mlm") != "mlm"
        other = (  # --to-onnx takes MLM logits or a fine-tuned head (onnx_export.onnx_exportable)
            "or fine-tune it (a fine-tuning run exports --to-onnx with any architecture)"
            if electra_like
            else "or export it --to-onnx"
        )
        raise UserError(f"{run.path}: cannot export to BertConfig: {problems[0]}, {other}")
    tok = load_tokenizer(run.path / "tokenizer")
    ids = special_ids(tok)
    ckpt = run_checkpoint(run)
    for note in run.skip_notes():
        say(note)
    tensors = load_file(str(ckpt / "model.safetensors"))
    enc = encoder_weights(ckpt)
    common = bert_config_fields(mc, ids["pad"])
    if kind == "pretrain":
        if mc.mlm_head != "bert":
            raise UserError(f"{run.path}: cannot export model.mlm_head={mc.mlm_head}; use bert")
        arch, state, extra, max_len = _pretrain_export(run, mc, enc, tensors)
    elif kind.startswith("finetune/"):
        arch, state, extra, max_len = _finetune_export(run, kind, mc, enc, tensors)
    else:
        raise UserError(
            f"{run.path}: run kind {kind!r} cannot be exported; use a pretraining or fine-tuning run"
        )

    config_class = (
        transformers.ElectraConfig if arch.startswith("Electra") else transformers.BertConfig
    )
    config = config_class(**common, **extra, architectures=[arch])
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--to-hf {out}: exists and is not a directory; choose another path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # /proc/x, a read-only mount: the user's choice of path
        raise UserError(
            f"--to-hf {out}: cannot make this folder ({e.strerror or e}); give another path"
        ) from None
    config.save_pretrained(str(out))
    state = {k: v.detach().float().contiguous().clone() for k, v in state.items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    readable_as_umask(out / "model.safetensors")  # safetensors writes 0600
    save_tokenizer(tok, out, model_max_length=max_len)
    write_model_card(run, out, arch, ckpt, max_len, extra.get("id2label"))
    _say_truncation(run, out, max_len, say)
    names = special_tokens(tok)
    say(
        f"exported {run.path} ({arch}, {ckpt.name}) to {out}; "
        f"special tokens {' '.join(names.values())}"
    )
    return out
