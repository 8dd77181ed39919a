"""Typed configuration: one schema, loaded from YAML, overridden with dotted `--set a.b=c`.

Every section forbids unknown keys so a typo is an error, not a silently ignored setting.
The fully resolved config is what a run saves, so a run directory always says what it did.
"""

from __future__ import annotations

import copy
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from encoderlab.errors import UserError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """`n_layer: true` or `seed: yes` would otherwise be taken as 1, silently."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(name)
                if isinstance(value, str) and _integral_text(value) and _numeric(field.annotation):
                    data = {**data, name: int(float(value))}  # `max_steps: 1e4`: YAML's string
                if isinstance(value, bool) and _numeric(field.annotation):
                    raise ValueError(
                        f"{name}: {str(value).lower()} (yes/no) is not a number; give one"
                    )
        return data

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """`train:` with every key commented out is YAML's null: the section's defaults, as
        if it were left out (it was "Input should be a valid dictionary or instance of ...")."""
        if isinstance(data, dict):
            empty = [
                name
                for name, field in cls.model_fields.items()
                if data.get(name, ...) is None
                and _plain_class(field.annotation)
                and issubclass(field.annotation, Section)
            ]
            if empty:
                data = {k: v for k, v in data.items() if k not in empty}
        return data


def _plain_class(annotation: Any) -> bool:
    """A class, not `list[X]` (which Python 3.10 also calls a type, and issubclass refuses)."""
    return isinstance(annotation, type) and typing.get_origin(annotation) is None


def _integral_text(value: str) -> bool:
    """'1e4', '2.5e3': YAML 1.1 reads exponents without a dot as strings; whole numbers only."""
    if not re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value.strip()):
        return False
    number = float(value)
    return math.isfinite(number) and number.is_integer()


def _numeric(annotation: Any) -> bool:
    """int or float, possibly optional; not bool, str or a union with them."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = set(typing.get_args(annotation)) - {type(None)}
        return bool(args) and args <= {int, float}
    return False


def plain_name_problem(value: str) -> str | None:
    """Why `value` is not a plain name (one path component), or None if it is one.

    Names become folder names under runs_dir / studies / sweeps; `../x`, `/tmp/x` or `a/b`
    would write elsewhere (or fail half way)."""
    if not value or not value.strip():
        return "is empty"
    if value in (".", "..") or any(c in value for c in "/\\\0"):
        return "must be a plain name without folders ('/', '\\', '..')"
    if value != value.strip() or any(ord(c) < 32 for c in value):
        return "must not start or end with spaces or hold control characters"
    return None


def check_plain_name(value: str | None, key: str = "name") -> str | None:
    """`value` unchanged if it is None or a plain name; else a one-line UserError naming `key`."""
    problem = None if value is None else plain_name_problem(value)
    if problem is not None:
        raise UserError(f"{key} {value!r}: {problem}, e.g. my-run")
    return value


def _plain_name(value: str) -> str:
    """pydantic field validator: the same rule, reported against the config key."""
    problem = plain_name_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}, e.g. my-run")
    return value


def _positive_finite(name: str, value: float | None, zero_ok: bool = False) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{name} must be a finite number {'>= 0' if zero_ok else '> 0'}")


class ModelConfig(Section):
    """The encoder's shape. Names follow the papers; hf.py maps them to Hugging Face's."""

    vocab_size: int | None = None  # None: taken from the tokenizer
    d_model: int = 256
    n_head: int = 4
    d_head: int | None = None  # None: d_model // n_head
    d_ff: int = 1024
    n_layer: int = 4
    dropout: float = 0.1
    attn_dropout: float = 0.1
    activation: Literal["relu", "gelu", "swish", "geglu", "swiglu"] = "gelu"
    norm: Literal["post", "pre"] = "post"
    layernorm_eps: float = 1e-12
    max_len: int = 512
    pad_id: int = 0
    # sinusoidal: Vaswani's fixed table (amplitude 1, which drowns token embeddings drawn at
    # std 0.02: MLM stalls); scaled_sinusoidal: that table over sqrt(d_model), as Cramming's;
    # alibi: no table, a per-head bias -slope * |i - j| on the attention scores (Press et al.
    # 2022, both directions as in MosaicBERT): attention starts local, MLM leaves its plateau sooner
    position: Literal["learned", "sinusoidal", "scaled_sinusoidal", "alibi"] = "learned"
    n_segments: int = 2  # 0: no segment embedding
    tie_mlm: bool = True  # MLM output projection shares the token embedding matrix
    # bert: dense -> gelu -> LayerNorm -> vocabulary projection; plain: the hidden state goes
    # straight onto the (tied) vocabulary projection, d x d + 2d fewer parameters
    mlm_head: Literal["bert", "plain"] = "bert"
    init_std: float = 0.02

    @model_validator(mode="after")
    def _check_shape(self) -> ModelConfig:
        for name in ("d_model", "n_head", "d_ff", "n_layer", "max_len", "d_head", "vocab_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be at least 1")
        if self.d_head is None and self.d_model % self.n_head != 0:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_head={self.n_head}; "
                "change one of them or set model.d_head explicitly"
            )
        if self.n_segments < 0 or self.pad_id < 0:
            raise ValueError("n_segments and pad_id must be >= 0")
        _positive_finite("layernorm_eps", self.layernorm_eps)
        _positive_finite("init_std", self.init_std, zero_ok=True)
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.attn_dropout < 1.0:
            raise ValueError("dropout and attn_dropout must be in [0, 1)")
        return self

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_head


TokenizerKind = Literal["bpe", "char_bpe", "wordpiece", "unigram"]


class TokenizerConfig(Section):
    """Either `path` to an existing tokenizer, or the recipe to train one on the corpus."""

    path: str | None = None  # tokenizer.json or a directory holding one
    kind: TokenizerKind = "wordpiece"
    vocab_size: int = 8000
    lowercase: bool = False
    min_frequency: int = 2
    train_files: list[str] | None = None  # None: the pretraining corpus
    max_train_documents: int | None = None  # None: all
    # set by load_config: the file's settings that a --set tokenizer.path replaced (a file
    # written to train a tokenizer, pointed at a trained one: expected to go unused)
    _replaced_by_path: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _check(self) -> TokenizerConfig:
        if self.max_train_documents is not None and self.max_train_documents < 1:
            raise ValueError(  # 0 read as "no text to train on", naming other keys
                f"max_train_documents={self.max_train_documents} must be at least 1 (or null)"
            )
        return self


CorpusFormat = Literal["auto", "txt", "jsonl", "csv", "tsv", "parquet", "xlsx", "hf"]


class CorpusSource(Section):
    """One named corpus of a mix; reading options left unset fall back to the data section's."""

    name: str
    files: list[str]
    weight: float | None = None  # share of training examples; None: its natural size
    format: CorpusFormat | None = None  # a typo was refused only when the files were read
    text_field: str | None = None
    text_column: str | list[str] | None = None


Script = Literal["hangul", "latin", "han", "kana", "cyrillic", "arabic", "devanagari", "thai"]


class FilterConfig(Section):
    """Document filters applied while tokenizing; what each removed is counted in the manifest."""

    dedup: bool = False  # drop exact duplicates (after stripping), keeping the first
    min_chars: int = 1
    max_chars: int | None = None
    script: Script | None = None  # with min_script_ratio: e.g. hangul 0.5 for a Korean subset
    min_script_ratio: float = 0.0  # share of the document's letters written in `script`
    min_chars_per_token: float | None = None  # junk: text the tokenizer shreds (e.g. 1.5)

    @model_validator(mode="after")
    def _check(self) -> FilterConfig:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError("max_chars must be >= min_chars")
        if not 0.0 <= self.min_script_ratio <= 1.0:
            raise ValueError("min_script_ratio must be in [0, 1]")
        if self.min_script_ratio > 0 and self.script is None:
            raise ValueError("min_script_ratio needs filters.script (e.g. hangul)")
        return self


class DataConfig(Section):
    """Where the text comes from and how it becomes MLM examples."""

    corpus: list[str] = []
    sources: list[CorpusSource] = []  # named corpora to mix (e.g. ko:en 1:1), besides `corpus`

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_file(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # `corpus: a.txt` means [a.txt]

    filters: FilterConfig = FilterConfig()
    prepare_workers: int | None = None  # tokenizing processes; None: one per core (max 8)
    shard_mb: float = 8  # big uncompressed text files are tokenized in pieces of this size
    max_valid_examples: int | None = 5000  # caps valid_ratio on big corpora
    format: Literal["auto", "txt", "jsonl", "csv", "tsv", "parquet", "xlsx", "hf"] = (
        "auto"  # auto: from each suffix; a save_to_disk directory or hf:<name> is "hf"
    )
    text_field: str = "text"  # .jsonl key
    text_column: str | list[str] = "text"  # csv/tsv/parquet/xlsx/hf column; a list: one doc each
    sheet: str | None = None  # .xlsx sheet; None: the first
    txt_unit: Literal["line", "paragraph"] = (
        "line"  # a .txt document: a line, or blank-line-separated
    )
    max_documents: int | None = None
    mode: Literal["packed", "sentence"] = "packed"
    block_len: int = 128
    add_special: bool = True  # [CLS] ... [SEP] around every block / sentence
    valid_ratio: float = 0.05
    cache_dir: str = ".cache/encoderlab"
    num_workers: int = 0
    mask_rate: float = 0.15
    mask_token_prob: float = 0.8  # of the chosen positions: replaced by [MASK]
    random_token_prob: float = 0.1  # ... replaced by a random token; the rest stay unchanged
    masking: Literal["static", "dynamic"] = "dynamic"

    @model_validator(mode="after")
    def _check_rates(self) -> DataConfig:
        if not 0.0 < self.mask_rate < 1.0:
            raise ValueError("mask_rate must be in (0, 1)")
        if self.mask_token_prob < 0 or self.random_token_prob < 0:
            raise ValueError("mask_token_prob and random_token_prob must be >= 0")
        if self.mask_token_prob + self.random_token_prob > 1.0 + 1e-9:
            raise ValueError("mask_token_prob + random_token_prob must be <= 1")
        if self.mask_token_prob + self.random_token_prob == 0:  # every target shown as itself
            raise ValueError(
                "mask_token_prob and random_token_prob are both 0: every chosen token would be "
                "left as it is and MLM would learn to copy; BERT uses 0.8 and 0.1"
            )
        if not 0.0 <= self.valid_ratio < 1.0:
            raise ValueError("valid_ratio must be in [0, 1)")
        columns = self.text_column if isinstance(self.text_column, list) else []
        if len(set(columns)) < len(columns):  # every document twice, copies in validation
            raise ValueError(f"text_column={columns}: a column is listed twice; list each once")
        if self.block_len < 4:
            raise ValueError("block_len must be at least 4")
        _positive_finite("shard_mb", self.shard_mb)
        if self.num_workers < 0:  # the DataLoader refused it after the run directory existed
            raise ValueError(f"num_workers={self.num_workers} must be >= 0 (0: no workers)")
        for name in ("max_documents", "max_valid_examples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be at least 1 (or null: all)")
        weights = [s.weight for s in self.sources]
        if any(w is not None for w in weights) and (
            self.corpus or any(w is None or not 0 < w < math.inf for w in weights)
        ):
            raise ValueError(
                "mixing weights: give every entry of data.sources a finite weight > 0 and move "
                "data.corpus into data.sources"
            )
        names = [s.name for s in self.sources]
        if any(not n or not re.fullmatch(r"[\w.-]+", n) for n in names):
            raise ValueError(  # it names metrics (valid/<name>/mlm_acc) and report columns
                "data.sources names: letters, digits, '.', '_' or '-' only (got "
                f"{', '.join(repr(n) for n in names)})"
            )
        if len(set(names)) != len(names) or "corpus" in names and self.corpus:
            raise ValueError("data.sources names must be unique (and not 'corpus')")
        return self


class TrainConfig(Section):
    """The optimisation loop, shared by pretraining and fine-tuning."""

    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    schedule: Literal["constant", "linear", "cosine", "exponential", "onecycle"] = "linear"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    min_lr_ratio: float = 0.0  # floor of linear/cosine decay, as a fraction of lr
    decay_gamma: float = 0.999  # exponential schedule: lr *= gamma each step after warmup
    grad_clip: float | None = 1.0
    epochs: int | None = 1
    max_steps: int | None = None
    time_budget_min: float | None = None
    # what the budget covers: the whole run (setup, evaluations, the final evaluation and
    # predictions) or the training loop alone
    budget_covers: Literal["run", "train"] = "run"
    eval_every: int | None = None  # optimizer steps; None: only at epoch end
    eval_batches: int | None = None  # cap on validation batches: a fixed sample of the set
    log_every: int = 10
    checkpoint_every: int | None = None  # optimizer steps (see also checkpoint_minutes)
    keep_checkpoints: int = 2
    early_stop_metric: str | None = None  # e.g. "valid/mlm_acc"; checked before training
    # None: "min" for losses and errors (…loss, mse, rmse, mae), else "max"
    early_stop_mode: Literal["max", "min"] | None = None
    early_stop_patience: int = 3
    max_nonfinite: int = 5  # consecutive non-finite losses before the run saves and stops
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:1 | mps
    threads: int | None = None  # CPU threads for torch; None: torch's default (all cores)
    checkpoint_minutes: float | None = 5.0  # also checkpoint this often (training time)
    # also write a full (resumable) checkpoint at every evaluation; the best evaluation's
    # weights are kept either way (fine-tuning). Sweeps' trials turn it on.
    checkpoint_at_eval: bool = False
    compile: bool = False  # torch.compile the training forward (GPU; slower start)
    tf32: bool = True  # fp32 matmuls on TF32 tensor cores (Ampere+ GPUs; no effect on CPU)
    # experiment trackers the records go to (encoderlab.loggers); mlflow/wandb: encoderlab[track]
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = ["tensorboard"]
    # batches of rows of similar length (sorted within shuffled windows of ~100 batches): far
    # less padding when rows differ in length (fine-tuning); pretraining blocks are one length
    group_by_length: bool = True

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be at least 1")
        if self.epochs is None and self.max_steps is None and self.time_budget_min is None:
            raise ValueError("set at least one of epochs, max_steps, time_budget_min")
        if self.max_steps is not None and "epochs" not in self.model_fields_set:
            # max_steps is the length of the run (as in the HF Trainer), not capped by an
            # epochs default the user never wrote (max_steps=50 ended after 3 steps)
            self.epochs = None
        if self.lr is not None and (not math.isfinite(self.lr) or self.lr <= 0):
            raise ValueError(f"lr must be positive and finite, e.g. 5e-4 (got lr={self.lr})")
        for name in ("max_steps", "epochs", "log_every", "eval_every", "checkpoint_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be at least 1 (or null)")
        for name in ("keep_checkpoints", "max_nonfinite", "early_stop_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        orphans = [
            k
            for k in ("early_stop_patience", "early_stop_mode")
            if getattr(self, k) != type(self).model_fields[k].default
        ]
        if orphans and self.early_stop_metric is None:
            raise ValueError(  # they did nothing without a metric to watch
                f"{' and '.join(orphans)} need{'s' if len(orphans) == 1 else ''} "
                "early_stop_metric (e.g. valid/loss) to "
                "stop early; set it, or drop them"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads} must be at least 1 (or null: all cores)")
        if self.warmup_steps < 0 or (self.eval_batches is not None and self.eval_batches < 1):
            raise ValueError("warmup_steps must be >= 0 and eval_batches >= 1 (or null)")
        _positive_finite("time_budget_min", self.time_budget_min)
        _positive_finite("checkpoint_minutes", self.checkpoint_minutes)
        _positive_finite("weight_decay", self.weight_decay, zero_ok=True)
        _positive_finite("adam_eps", self.adam_eps)
        _positive_finite("grad_clip", self.grad_clip, zero_ok=True)
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas={list(self.betas)}: each must be in [0, 1)")
        if not 0.0 <= self.warmup_ratio < 1.0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("warmup_ratio must be in [0, 1) and min_lr_ratio in [0, 1]")
        if not 0.0 < self.decay_gamma <= 1.0:
            raise ValueError(f"decay_gamma={self.decay_gamma} must be in (0, 1]")
        return self


class ElectraConfig(Section):
    """ELECTRA (Clark et al. 2020): a small MLM generator proposes replacements and the model
    (the discriminator, the encoder a run exports and fine-tunes) spots them at every position."""

    generator_scale: float = 0.25  # generator width (d_model, d_ff, heads) / the discriminator's
    generator_d_model: int | None = None  # explicit generator width; overrides generator_scale
    generator_n_layer: int | None = None  # None: as many layers as the discriminator
    disc_weight: float = 50.0  # loss = generator MLM loss + disc_weight * replaced-token loss
    temperature: float = 1.0  # replacements are sampled from softmax(generator logits / this)

    @model_validator(mode="after")
    def _check(self) -> ElectraConfig:
        if not 0.0 < self.generator_scale <= 1.0:
            raise ValueError("generator_scale must be in (0, 1], e.g. 0.25")
        for name in ("generator_d_model", "generator_n_layer"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be at least 1 (or null)")
        _positive_finite("disc_weight", self.disc_weight)
        _positive_finite("temperature", self.temperature)
        return self


class FinetuneTrainConfig(TrainConfig):
    """The fine-tuning loop. Its defaults hold whether or not the YAML has a `train:` section;
    lr, warmup and epochs left unset are then fitted to the init (scratch or pretrained) and the
    task by `finetune.resolve_defaults`, and the resolved values are saved with the run."""

    lr: float | None = None  # type: ignore[assignment]  # None: the init's and task's default
    warmup_ratio: float = 0.1
    epochs: int | None = 3


# The settings a pretraining recipe fills in: every key here that the config file (or --set)
# did not set takes the recipe's value. "bert" is the original BERT setup (the schema's
# defaults); "budget" is what paid off when pretraining gets minutes, not days (README, "A
# budget recipe"): pre-LN, no dropout, one-cycle lr 1e-3, short blocks and bigger batches, and
# ALiBi positions, which leave MLM's frequent-token plateau within ~150 steps where a learned
# position table took 350-700 (or never, on small models), run to run.
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "bert": {},
    "budget": {
        "model": {"norm": "pre", "dropout": 0.0, "attn_dropout": 0.0, "position": "alibi"},
        "data": {"block_len": 64, "mask_rate": 0.15},
        "train": {
            "batch_size": 64,
            "lr": 1e-3,
            "schedule": "onecycle",
            "warmup_ratio": 0.1,
        },
    },
}


class Config(Section):
    """A whole pretraining run."""

    name: str = "pretrain"
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**63)  # numpy and torch take no negative or wider seed
    runs_dir: str = "runs"
    recipe: Literal["bert", "budget"] = "bert"  # fills the settings left unset; see RECIPES
    model: ModelConfig = ModelConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    # what a batch's loss is: masked-LM, or ELECTRA's replaced-token detection (section electra)
    objective: Literal["mlm", "electra"] = "mlm"
    electra: ElectraConfig = ElectraConfig()
    # where the token embeddings start: random, or vectors from the corpus's co-occurrence
    # counts (PPMI + SVD, seconds; data/cooccurrence.py), which a stage of minutes builds on
    embedding_init: Literal["random", "cooccurrence"] = "random"

    _name = field_validator("name")(_plain_name)

    @model_validator(mode="after")
    def _check_fit(self) -> Config:
        resolve_recipe(self)
        if self.data.block_len > self.model.max_len:
            raise ValueError(
                f"data.block_len={self.data.block_len} is longer than model.max_len="
                f"{self.model.max_len}; lower data.block_len or raise model.max_len"
            )
        return self


def resolve_recipe(cfg: Config) -> Config:
    """Fill every setting `cfg` leaves unset with its recipe's value, in place.

    Runs once, when the config is validated; the run saves the result, so config.yaml holds
    every resolved value and reloading it (resume, --set) changes nothing. Keys the user set,
    even to the schema's default, win over the recipe.
    """
    for section, values in RECIPES[cfg.recipe].items():
        part = getattr(cfg, section)
        for key, value in values.items():
            if key not in part.model_fields_set:
                setattr(part, key, value)
    t = cfg.train
    if cfg.recipe == "budget" and t.time_budget_min is not None:
        # a time budget is the length of the run: train until it is spent, not one epoch
        if "epochs" not in t.model_fields_set and "max_steps" not in t.model_fields_set:
            t.epochs = None
    return cfg


# options that mean something only under one truncation, or for some task types: refused
# elsewhere (TaskConfig._check_unused_options), dropped from runs saved before (as_the_run_read)
TRUNCATION_OPTIONS = {
    "head_tokens": "head_tail",
    "window_stride": "windows",
    "max_windows": "windows",
}
# the task types that read no second text (pair, regression and multilabel do)
ONE_TEXT_TASKS = ("classification", "tagging", "pos", "qa")
TASK_OPTIONS = {
    "qa": ("doc_stride", "max_query_len", "max_answer_len", "n_best", "f1"),
    "tagging/pos": ("tag_column",),
    "regression": ("target_mean", "target_std"),
}


class TaskConfig(Section):
    """What to fine-tune on: the task type, its files and how to read and encode them."""

    type: str = "classification"  # a registered task type (encoderlab.tasks.registry)
    train: str | None = None
    valid: str | None = None  # None: split off train (stratified by label; by article for QA)
    test: str | None = None  # predictions (and a submission file) for a file without labels
    valid_ratio: float = 0.1
    # the split keeps rows that share this column's value on one side (KLUE-NLI's premise, the
    # sentences of one document): a held-out row whose premise was trained on is not held out
    group_column: str | int | None = None
    # a seeded random subset of this many training examples (after the validation split):
    # how a model does with few labels, where pretraining pays most
    train_examples: int | None = Field(None, ge=1)
    format: str = "auto"  # auto (from the suffix) | csv | tsv | jsonl | json | parquet | xlsx | squad | conll ...
    sheet: str | None = None  # .xlsx: the sheet to read; None: the first
    # a column: a header name (json: a key; "a.b" reads a nested key), or an integer position
    # (0 is the first): integers read a .csv/.tsv as having no header row. text_column may be a
    # list (AG News' title and description): their cells joined by a space are the text
    text_column: str | int | list[str | int] = "text"
    text_pair_column: str | int | None = None  # pair: the second sentence
    # multilabel: a list of columns, one per label (Jigsaw's toxic, insult, ... holding 0/1)
    label_column: str | int | list[str | int] = "label"
    id_column: str | int | None = "id"
    columns: list[str] | None = None  # a .csv/.tsv without a header row: its column names
    where: list[str] = []  # row filters, all must hold: "type != plot", "lang in [en, de]"
    metric: str | None = None  # the primary metric (picks the best checkpoint); None: the task's
    positive_label: str | None = None  # binary f1/roc_auc: the positive class; None: the second
    # multilabel: what separates labels in a text cell ("sports,politics"; GoEmotions' "3,27")
    label_separator: str = ","
    # classification / pair / multilabel: weigh the training loss by class. balanced: a class
    # by n / (classes * its count) (multilabel: a label's positives by its negatives /
    # positives); {label: weight} for some labels (the rest 1). The validation loss is not
    # weighted.
    class_weights: Literal["none", "balanced"] | dict[str, float] = "none"
    # multilabel: a label is predicted where its probability is at least this; a mapping
    # {label: cut} gives labels their own (the others keep 0.5)
    threshold: float | dict[str, float] = 0.5
    max_len: int = 128
    max_examples: int | None = Field(None, ge=1)  # cap on examples read from each file (quick runs)
    # classification/regression documents longer than max_len: head (keep the start), head_tail
    # (the first head_tokens and the end), windows (overlapping windows, logits averaged);
    # tagging sentences: head (cut the end) or windows (each word read where it has most context)
    truncation: Literal["head", "head_tail", "windows"] = "head"
    head_tokens: int | None = None  # head_tail: tokens kept from the start; None: a quarter
    window_stride: int | None = None  # windows: tokens between window starts; None: half a window
    max_windows: int | None = None  # windows: per document (the rest of it is cut); None: all
    # extractive QA
    doc_stride: int = 64
    max_query_len: int = 64
    max_answer_len: int = 30
    n_best: int = 20
    f1: Literal["word", "char"] = "word"  # char: KorQuAD's character-level F1
    # SQuAD 2.0: keep questions without an answer in their context (is_impossible, or empty
    # answers among answered rows), train them to point at [CLS], and answer "" where the null
    # score ([CLS] start + end) beats the best span's by more than null_threshold
    unanswerable: bool = False
    null_threshold: float = 0.0
    # tagging
    # plain: tags as they are, no entity scheme (task.type pos sets it: part-of-speech tags)
    tag_scheme: Literal["auto", "bio", "iob1", "plain"] = "auto"
    tag_column: int = -1  # CoNLL: which whitespace-separated column holds the tag
    # regression: the model learns (score - target_mean) / target_std and predictions are mapped
    # back, so scores far from 0 (prices, 1-1000 ratings) train as STS's 0-5 do; None: the
    # training scores' mean and standard deviation (the run's config.yaml records them)
    target_mean: float | None = None
    target_std: float | None = Field(None, gt=0)

    def target_scale(self) -> tuple[float, float]:
        """Regression: (mean, std) the model's output is in units of, score = output * std +
        mean; (0, 1) for runs made before 2026-12-03, which learned the scores as they are."""
        return self.target_mean or 0.0, self.target_std or 1.0

    @field_validator("type")
    @classmethod
    def _registered(cls, value: str) -> str:
        # asked at validation time, so a task type registered by a plugin (or a test) is valid
        from encoderlab.tasks.registry import task_names

        names = task_names()
        if value not in names:
            raise ValueError(f"unknown task type; registered types: {', '.join(names)}")
        return value

    @field_validator("class_weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        """{label: weight} with the labels as text (YAML reads `{1: 5}` with a number key)."""
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"class_weights for '{k}': {v!r} is not a number")
            return {str(k): float(v) for k, v in value.items()}
        return value

    @field_validator("threshold", mode="before")
    @classmethod
    def _cuts(cls, value: Any) -> Any:
        """A number, or {label: number}: YAML reads `{1: 0.3}` with a number key, and labels
        are text ("1" from a 0/1 column); `yes` or a nested value is no probability."""

        def number(v: Any, where: str) -> Any:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{where} {v!r} is not a number; give a probability such as 0.3")
            return v

        if isinstance(value, dict):
            return {str(k): number(v, f"threshold for '{k}':") for k, v in value.items()}
        return number(value, "threshold") if isinstance(value, bool) else value

    @field_validator("positive_label", mode="before")
    @classmethod
    def _label_as_text(cls, value: Any) -> Any:
        # labels are read as text ("1" from a csv); YAML reads `positive_label: 1` as a number
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, bool):  # YAML 1.1: yes/no/on/off/true/false
            raise ValueError(
                f"YAML read this label as {str(value).lower()}; quote it, e.g. positive_label: 'yes'"
            )
        return value

    @field_validator("where", mode="before")
    @classmethod
    def _one_filter(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def _kind(self) -> str:
        """The built-in task type this one is or is built on: a plugin type subclassing
        TaggingTask takes tagging's options (tag_column, tag_scheme) and its rules."""
        from encoderlab.tasks.registry import task_kind

        return task_kind(self.type)

    def _check_label_decisions(self) -> None:
        """class_weights and threshold: for the tasks that have them, with sensible values."""
        if self.class_weights != "none" and self._kind() not in (
            "classification",
            "pair",
            "multilabel",
        ):
            raise ValueError(
                "class_weights is for task.type classification, pair and multilabel; drop it"
            )
        if isinstance(self.class_weights, dict):
            if not self.class_weights:
                raise ValueError("class_weights={}: give balanced, or {label: weight}")
            bad = next((w for w in self.class_weights.values() if not 0 < w < float("inf")), None)
            if bad is not None:
                raise ValueError(f"class_weights: {bad} is not a positive weight")
        if self._kind() != "multilabel" and self.threshold != 0.5:
            raise ValueError(
                "threshold is for task.type multilabel (a label's probability cut); drop it"
            )

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        if not 0.0 < self.valid_ratio < 1.0:
            raise ValueError("valid_ratio must be in (0, 1)")
        if self.max_len < 8:
            raise ValueError("max_len must be at least 8")
        if self.group_column is not None and self._kind() in ("tagging", "pos", "qa"):
            raise ValueError(
                f"group_column splits classification, pair and regression files; {self.type} "
                + ("splits by article already" if self._kind() == "qa" else "reads no columns")
                + ": drop task.group_column or give task.valid a file"
            )
        if self._kind() == "pos":  # its tags are plain labels, never entity chunks
            if self.tag_scheme not in ("auto", "plain"):
                raise ValueError(
                    f"tag_scheme={self.tag_scheme} is for entity tags (task.type tagging); "
                    "pos reads its tags as they are: drop task.tag_scheme"
                )
            self.__dict__["tag_scheme"] = "plain"  # (assigning would validate again)
        elif self.tag_scheme == "plain":
            raise ValueError(
                "tag_scheme=plain reads tags without an entity scheme: that is task.type pos "
                "(part-of-speech and other per-word tags)"
            )
        # a truncation a task does not read was a silent no-op
        if self._kind() in ("tagging", "pos") and self.truncation == "head_tail":
            raise ValueError(
                "truncation=head_tail is for classification; tagging reads long sentences "
                "with truncation: windows (or head, which cuts their end)"
            )
        if self._kind() == "qa" and self.truncation != "head":
            raise ValueError(
                f"truncation={self.truncation}: qa always reads long contexts in overlapping "
                "windows (task.doc_stride); drop task.truncation"
            )
        for name in ("head_tokens", "window_stride", "max_windows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be at least 1 (or null)")
        for name in ("text_column", "text_pair_column", "label_column", "id_column"):
            value = getattr(self, name)
            for one in value if isinstance(value, list) else [value]:
                if isinstance(one, int) and one < 0:
                    raise ValueError(f"{name}={value}: a column position counts from 0")
        if isinstance(self.text_column, list):
            if not self.text_column:
                raise ValueError("text_column=[]: name at least one column")
            if len(set(map(str, self.text_column))) < len(self.text_column):
                raise ValueError(f"text_column={self.text_column}: name each column once")
            if self._kind() in ("tagging", "pos", "qa"):
                raise ValueError(
                    f"text_column={self.text_column}: a list of columns joins a row's texts for "
                    f"classification, pair and regression; {self.type} reads one column"
                )
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise ValueError("columns: each name once")
        if isinstance(self.label_column, list):
            if self._kind() != "multilabel":
                raise ValueError(
                    f"label_column={self.label_column}: a list of label columns (one per label) "
                    "is for task.type multilabel; name one column"
                )
            if not self.label_column:
                raise ValueError("label_column=[]: name at least one label column")
            if len(set(map(str, self.label_column))) < len(self.label_column):
                raise ValueError(f"label_column={self.label_column}: name each column once")
        cuts = self.threshold.values() if isinstance(self.threshold, dict) else [self.threshold]
        if isinstance(self.threshold, dict) and not self.threshold:
            raise ValueError("threshold={}: give a number, or {label: number} for some labels")
        bad = next((t for t in cuts if not 0.0 < t < 1.0), None)
        if bad is not None:
            raise ValueError(f"threshold={bad} must be between 0 and 1 (a probability)")
        if not self.label_separator:
            raise ValueError('label_separator="" splits nothing; give a character such as ","')
        if not math.isfinite(self.null_threshold):
            raise ValueError(f"null_threshold={self.null_threshold}: give a finite number")
        self._check_label_decisions()
        if self._kind() != "qa" and (self.unanswerable or self.null_threshold):
            raise ValueError(
                "unanswerable / null_threshold are for task.type qa (SQuAD 2.0's questions "
                "without an answer); drop them"
            )
        if self.null_threshold and not self.unanswerable:  # it did nothing, silently
            raise ValueError(
                f"null_threshold={self.null_threshold:g} is the margin for answering nothing, "
                "which only a run with unanswerable: true does (SQuAD 2.0); set "
                "task.unanswerable: true or drop null_threshold"
            )
        # QA: 0 dropped every question (or allowed no answer) and trained on, silently
        for name in ("max_query_len", "max_answer_len", "n_best"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.doc_stride < 0:
            raise ValueError(f"doc_stride={self.doc_stride} must be >= 0")
        from encoderlab.tasks.filters import parse_where  # no task code: a pure parser
        from encoderlab.tasks.registry import task_class, task_metrics

        for text in self.where:
            parse_where(text)
        metrics = task_metrics(task_class(self.type))
        if self.metric is not None and self.metric not in metrics:
            raise ValueError(
                f"task.metric={self.metric}: {self.type} computes {', '.join(metrics)}; "
                "set task.metric to one of them"
            )
        self._check_unused_options()
        return self

    def _check_unused_options(self) -> None:
        """An option of another truncation or task type was accepted and did nothing
        (window_stride without windows, doc_stride on a classifier). Compared with the
        defaults, not with what was written: a saved config.yaml writes every key."""
        for name, needs in TRUNCATION_OPTIONS.items():
            if getattr(self, name) is not None and self.truncation != needs:
                raise ValueError(
                    f"{name}={getattr(self, name)} applies to truncation: {needs}, and this task "
                    f"has truncation: {self.truncation}; set truncation: {needs} or drop {name}"
                )
        fields = type(self).model_fields
        for owner, names in TASK_OPTIONS.items():
            if self._kind() in owner.split("/"):
                continue
            for name in names:
                if getattr(self, name) != fields[name].default:
                    raise ValueError(
                        f"{name}={getattr(self, name)} is a {owner} option and does nothing for "
                        f"task.type {self.type}; drop it"
                    )
        if self.text_pair_column is not None and self._kind() in ONE_TEXT_TASKS:
            raise ValueError(
                f"text_pair_column={self.text_pair_column!r} reads a second text, which task.type "
                f"{self.type} does not: use task.type: pair for two texts per row, or drop it"
            )
        if self.tag_scheme not in ("auto", "plain") and self._kind() != "tagging":
            raise ValueError(
                f"tag_scheme={self.tag_scheme} is a tagging option and does nothing for "
                f"task.type {self.type}; drop it"
            )


class HeadConfig(Section):
    """The layer(s) on top of the encoder. qa and tagging tasks use their own span/token head."""

    # pooler: BERT's own classifier (dense+tanh on [CLS], then linear); exports to transformers
    type: Literal["cls", "mean", "cnn", "pooler"] = "cls"
    dropout: float = 0.1
    cnn_filters: int = 100  # per kernel size (Kim 2014)
    cnn_kernels: list[int] = [3, 4, 5]

    @model_validator(mode="after")
    def _check(self) -> HeadConfig:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.cnn_filters < 1 or not self.cnn_kernels or min(self.cnn_kernels) < 1:
            raise ValueError("cnn_filters and every cnn_kernels entry must be at least 1")
        return self


class SelfPretrainConfig(Section):
    """MLM pretraining on the task's own text (and any corpus) before fine-tuning on it, as an
    ordinary pretraining run <name>-mlm in runs_dir (Krishna et al. 2022: downstream data sets
    make surprisingly good pretraining corpora). See `encoderlab.selfpretrain`."""

    # "task": the task's train, valid and test text (never labels); anything else: corpus
    # files or globs, relative to the working directory like the task's files
    text: list[str] = ["task"]
    minutes: float | None = None  # the pretraining budget: minutes and/or optimizer steps
    steps: int | None = None
    recipe: Literal["bert", "budget"] = "budget"  # see RECIPES
    set: list[str] = []  # overrides of the pretraining config, e.g. [train.batch_size=32]
    run: str | None = None  # written by encoderlab: the pretraining run fine-tuning starts from

    @field_validator("text", "set", mode="before")
    @classmethod
    def _one_item(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> SelfPretrainConfig:
        if self.minutes is None and self.steps is None:
            raise ValueError("give the pretraining budget: minutes (e.g. 5) and/or steps")
        _positive_finite("minutes", self.minutes)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps={self.steps} must be at least 1")
        if not self.text or any(not t.strip() for t in self.text):
            raise ValueError("text: list 'task' and/or corpus files, e.g. [task, corpus.txt]")
        for text in self.set:
            if "=" not in text or not text.split("=", 1)[0].strip():
                raise ValueError(f"set: {text!r} is not KEY=VALUE (e.g. model.n_layer=4)")
        return self


class FinetuneConfig(Section):
    """A fine-tuning run: a backbone (scratch / pretraining run / hf:...) plus a task head."""

    name: str = "finetune"
    description: str = ""
    seed: int = Field(0, ge=0, lt=2**63)  # numpy and torch take no negative or wider seed
    runs_dir: str = "runs"
    init: str = "scratch"  # scratch | runs/<pretrain-run> | hf:<dir or hub name>
    freeze: Literal["none", "all", "embeddings"] = "none"
    unfreeze_last: int = Field(0, ge=0)  # with freeze=all: train the top k blocks again
    drop_last: int = Field(0, ge=0)  # remove the top k blocks before fine-tuning
    head_lr: float | None = None  # None: train.lr
    # layer-wise lr decay: the top block trains at train.lr, each block below at `decay` times
    # the one above, the embeddings one step further (ELECTRA fine-tunes with 0.8); None: off
    layer_lr_decay: float | None = Field(None, gt=0.0, le=1.0)
    # the backbone's dropout while fine-tuning; None: what it brings (a pretraining run made
    # with the budget recipe brings 0, which overfits a small labelled set)
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    task: TaskConfig = Field(default_factory=TaskConfig)  # validated per config, not at import
    head: HeadConfig = HeadConfig()
    model: ModelConfig = ModelConfig()  # used for scratch; a pretraining run brings its own
    tokenizer: TokenizerConfig = TokenizerConfig()  # scratch: trained on the task's train file
    train: FinetuneTrainConfig = FinetuneTrainConfig()
    # opt-ins for hf: checkpoints; off, encoderlab never runs a checkpoint's own Python code
    # (config.json auto_map) and never unpickles weights (pytorch_model.bin): safetensors only
    hf_trust_remote_code: bool = False
    hf_allow_pickle: bool = False
    # pretrain on the task's text first, then fine-tune from that run (init stays scratch)
    self_pretrain: SelfPretrainConfig | None = None
    # set by load_config: the keys --set gave, where the file was written for init: scratch
    # and --set chose another init (the shipped configs' hub recipe: the file's model and
    # tokenizer sections are expected to go unused); None otherwise
    _scratch_file_set_keys: frozenset[str] | None = PrivateAttr(default=None)

    _name = field_validator("name")(_plain_name)

    def written_for_scratch(self, key: str) -> bool:
        """Whether `key` (e.g. tokenizer.vocab_size) comes from a file written for init:
        scratch that --set gave another init, not from --set itself."""
        keys = self._scratch_file_set_keys
        return keys is not None and key not in keys

    @field_validator("init", mode="before")
    @classmethod
    def _init_text(cls, value: Any) -> Any:
        # `--set init=hf:` reads as the mapping {hf: None}; `init=` as ""
        if isinstance(value, dict) and len(value) == 1 and next(iter(value.values())) is None:
            raise ValueError(
                f"give what comes after {next(iter(value))}:, e.g. hf:DIR or scratch:RUN"
            )
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty: give scratch, a run directory or hf:DIR")
        return value

    @field_validator("self_pretrain")
    @classmethod
    def _one_init(cls, value: SelfPretrainConfig | None, info: ValidationInfo) -> Any:
        init = str(info.data.get("init", "scratch")).strip()
        if value is not None and init not in ("scratch", value.run):
            raise ValueError(
                f"init={init} and self_pretrain both choose the starting weights; "
                "self_pretrain pretrains them itself: remove init (or self_pretrain)"
            )
        return value

    @model_validator(mode="after")
    def _check_fit(self) -> FinetuneConfig:
        if self.unfreeze_last and self.freeze != "all":  # with embeddings: every block trains
            raise ValueError(
                f"unfreeze_last={self.unfreeze_last} trains the top blocks again after freeze: "
                f"all; with freeze: {self.freeze} every block trains already: set freeze: all, "
                "or remove unfreeze_last"
            )
        if self.freeze == "all" and not self.unfreeze_last and self.layer_lr_decay is not None:
            raise ValueError(  # only the head trains: there is no layer to decay
                f"layer_lr_decay={self.layer_lr_decay} scales the learning rate of the encoder's "
                "layers, and freeze: all trains none of them; set unfreeze_last, or drop "
                "layer_lr_decay"
            )
        if self.train.eval_batches is not None:  # it used to be accepted and do nothing
            raise ValueError(
                "train.eval_batches caps pretraining's evaluations; fine-tuning evaluates every "
                "validation row (its metrics need them all): drop it"
            )
        if self.head_lr is not None and (not math.isfinite(self.head_lr) or self.head_lr <= 0):
            raise ValueError(f"head_lr={self.head_lr} must be a finite number > 0 (or null)")
        from encoderlab.tasks.registry import task_class  # the registry names task types

        token_level = getattr(task_class(self.task.type), "token_level", False)  # no cnn head
        if (
            self.head.type == "cnn"
            and not token_level
            and max(self.head.cnn_kernels) > self.task.max_len
        ):
            raise ValueError(  # every window would be masked: the head would read nothing
                f"head.cnn_kernels {self.head.cnn_kernels} has a kernel wider than "
                f"task.max_len={self.task.max_len}; use kernels of at most {self.task.max_len}"
            )
        return self


# ---------------------------------------------------------------------------------------------
# Loading, overriding, saving


_UNION_TAG = re.compile(r"(str|int|float|bool|none|dict|list)(\[.*\])?|.*\[.*\]")


def _format_validation_error(
    err: ValidationError, model: type[BaseModel], source: str, at: str = ""
) -> str:
    """One line: the first problem, its dotted key, and the keys that would have been valid.
    `at`: the section `model` is within (`task` for a TaskConfig built alone)."""
    first = err.errors()[0]
    # pydantic names the member of a union it tried ('str', 'list[str]'): not a config key
    raw = list(first["loc"])
    # ...but an unknown key is the last part, whatever it is called (`train.list`)
    last = [str(raw.pop())] if first["type"] == "extra_forbidden" and raw else []
    loc = [str(p) for p in raw if not (isinstance(p, str) and _UNION_TAG.fullmatch(p))] + last
    key = ".".join([at, *loc] if at else loc) or "(top level)"
    got = first.get("input")
    if first["type"] == "extra_forbidden":
        section: Any = model
        for part in loc[:-1]:
            if part.isdigit():  # an item of a list of sections (data.sources.0.name)
                continue
            field = section.model_fields.get(part)
            inner = _section_class(field.annotation) if field is not None else None
            if inner is None:
                break
            section = inner
        valid = ", ".join(section.model_fields) if hasattr(section, "model_fields") else ""
        return f"{source}: unknown config key '{key}'; valid keys here: {valid}"
    if first["type"] == "model_type" and (got is None or not isinstance(got, dict)):
        # `train: fast` or `train: [..]`: say it is a section, not "instance of TrainConfig"
        if loc and loc[-1].isdigit():  # an entry of a list of sections (data.sources)
            return (
                f"{source}: config key '{key}': a mapping of keys ({{name: ..., ...}}), not {got!r}"
            )
        return (
            f"{source}: config key '{key}': a section of keys (e.g. {key}: {{...}} or one "
            f"key per line under {key}:), not {got!r}"
        )
    msg = first["msg"].removeprefix("Value error, ")
    got_txt = "" if isinstance(got, dict) else f" (got {got!r})"
    if isinstance(got, bool) and first["type"] == "string_type":  # `name: on`, `--set x=no`
        got_txt = f" (got {got}: {_YAML_BOOLEANS}; quote it, e.g. {loc[-1]}: 'on')"
    return f"{source}: config key '{key}': {msg}{got_txt}"


_YAML_BOOLEANS = "YAML reads an unquoted yes/no/on/off/true/false as a boolean"


def _booleans_taken_as_numbers(data: Any, value: Any, path: tuple[str, ...] = ()) -> Any:
    """The first (dotted key, boolean) of `data` that validation turned into a number: a
    column key that takes a name or a position (`label_column: no` read column 0)."""
    if isinstance(data, dict) and isinstance(value, BaseModel):
        pairs = [(k, getattr(value, k)) for k in data if k in type(value).model_fields]
        return next(
            filter(None, (_booleans_taken_as_numbers(data[k], v, (*path, k)) for k, v in pairs)),
            None,
        )
    if isinstance(data, list) and isinstance(value, (list, tuple)) and len(data) == len(value):
        found = (
            _booleans_taken_as_numbers(d, v, (*path, str(i)))
            for i, (d, v) in enumerate(zip(data, value, strict=True))
        )
        return next(filter(None, found), None)
    if isinstance(data, bool) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return ".".join(path), data
    return None


def _section_class(annotation: Any) -> type[BaseModel] | None:
    """The section class a field holds: X, X | None, list[X] (for the keys of its errors)."""
    if _plain_class(annotation):
        return annotation if issubclass(annotation, BaseModel) else None
    for arg in typing.get_args(annotation):
        found = _section_class(arg)
        if found is not None:
            return found
    return None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=c` -> (["a", "b"], yaml-parsed c), so `--set train.lr=2e-4` gives a float.
    Parsed as config files are (see _UniqueKeyLoader: a date stays text, 1e-4 is a number)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.lr=2e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise UserError(f"--set {text!r}: the key before '=' is empty")
    if "[" in key:  # data.sources[0].weight: read as a key named "sources[0]", then "unknown"
        head = key.split("[", 1)[0]
        raise UserError(
            f"--set {text!r}: a key takes no [index]; set the whole list, e.g. "
            f"--set '{head}=[{{...}}, {{...}}]'"
        )
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() != "" else ""  # noqa: S506
    except yaml.YAMLError:
        value = raw
    if raw.strip() in ("|", ">", "|-", ">-", "|+", ">+", "-", "?", "!"):
        # YAML: an empty block scalar, a list of one null, a null key, an empty tag:
        value = raw.strip()  # task.label_separator=| or =- means the character
    if re.search(r"(?:^|\s)#", raw) and "#" not in str(value):
        # YAML took ` #...` for a comment (`name=run #3` named the run `run`; `task.train=#1.csv`
        # set nothing): one override has no comments, so the value is the text as written
        value = raw.strip()
    return key.split("."), value


def set_dotted(data: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    """data[a][b][c] = value for path [a, b, c], making sections on the way: the one place
    `--set` strings and typed values (a sweep's) go into a config. `source` starts errors."""
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise UserError(f"{source}: '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        set_dotted(data, path, value, f"--set {text!r}")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, except that a key given twice in one mapping is an error: YAML
    would silently keep the last one (a second `train:` block replacing the first)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    merged = _merged_keys(loader, node)  # `<<: *base` keys, which the mapping may override
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if first is not key_node and id(first) not in merged and id(key_node) not in merged:
            line, again = first.start_mark.line + 1, key_node.start_mark.line + 1
            where = f"lines {line} and {again}" if line != again else f"on line {line}"
            raise yaml.constructor.ConstructorError(
                None, None, f"'{key}' is given twice ({where}); keep one", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=deep)


def _merged_keys(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> set[int]:
    """Flatten the mapping's merge keys (as PyYAML does) and return the ids of the key nodes
    they brought in."""
    merge_tag = "tag:yaml.org,2002:merge"
    merged: set[int] = set()
    for key_node, value_node in node.value:
        if key_node.tag != merge_tag:
            continue
        subs = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for sub in subs:
            if isinstance(sub, yaml.MappingNode):
                loader.flatten_mapping(sub)
                merged.update(id(k) for k, _ in sub.value)
    loader.flatten_mapping(node)
    return merged


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
# Two YAML 1.1 surprises of yaml.safe_load, as YAML 1.2 and JSON read them instead: a date
# (`name: 2024-06-01`) stays text (it became a datetime.date, which every text key refused),
# and an exponent without a dot (`lr: 1e-4`, `grid: [1e-4, 1e-3]`) is a number, not a string.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def read_yaml(
    path: str | Path, what: str = "config file", keys: str = "sections (model:, train:, ...)"
) -> dict[str, Any]:
    """A YAML mapping from `path`; any problem is a one-line UserError naming the file."""
    p = Path(path)
    if p.is_dir():
        own = p / "config.yaml"
        hint = f"; a run's own config is {own}" if own.is_file() else ""
        raise UserError(f"{p}: a folder, not a {what}; give the YAML file{hint}")
    if not p.is_file():
        raise UserError(f"{p}: {what} not found")
    raw = p.read_bytes()
    try:  # the whole file decoded at once, so an error's offset is the file's (for its line)
        data = yaml.load(raw.decode("utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        what = getattr(e, "problem", None) or str(e).strip().splitlines()[0]  # one line
        tabs = "; indent with spaces, not tabs" if "'\\t'" in what else ""
        raise UserError(f"{where}: not valid YAML ({what}){tabs}") from None
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{p}:{line}: not UTF-8 text; save the config as UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{p}: the top level must be a mapping of {keys}")
    return data


def named_data_files(cfg: Any) -> list[tuple[str, str]]:
    """(config key, path) of the data files a config reads: the task's files for fine-tuning,
    the corpus for pretraining; empty ones left out. What studies and sweeps check up front."""
    task = getattr(cfg, "task", None)
    if task is not None:
        named = [(f"task.{k}", getattr(task, k)) for k in ("train", "valid", "test")]
        sp = getattr(cfg, "self_pretrain", None)  # its corpus files (not 'task': the above)
        named += [("self_pretrain.text", t) for t in (sp.text if sp else []) if t.strip() != "task"]
    else:
        named = [("data.corpus", c) for c in cfg.data.corpus]
    return [(key, value) for key, value in named if isinstance(value, str) and value]


def build(schema: type[Section], data: dict[str, Any], source: str, at: str = "") -> Any:
    """`data` validated into `schema`, or a one-line UserError naming the key (`at`: the
    section `schema` is within, for a section built alone)."""
    try:
        cfg = schema.model_validate(data)
    except ValidationError as e:
        message = _format_validation_error(e, schema, source, at)
        if schema is Config and isinstance(data, dict) and "task" in data:
            message += " (it has task:, so it is a fine-tuning config: use encoderlab finetune)"
        raise UserError(message) from None
    found = _booleans_taken_as_numbers(data, cfg)
    if found is not None:
        key, value = found
        raise UserError(
            f"{source}: config key '{key}': {_YAML_BOOLEANS} ({str(value).lower()}), which "
            f"would be taken as {int(value)}; quote it, e.g. {key.split('.')[-1]}: "
            f"'{'yes' if value else 'no'}'"
        )
    return cfg


def mark_replaced_tokenizer(cfg: Any, file_data: Any, keys: list[str]) -> None:
    """Note the file's tokenizer settings that an override's tokenizer.path replaced (a study
    arm's or sweep's `tokenizer.path=...` over a file written to train one): expected to go
    unused, so `tokenizer.unused_beside_path` does not name them."""
    file_tok = file_data.get("tokenizer") if isinstance(file_data, dict) else None
    if "tokenizer.path" in keys and isinstance(file_tok, dict) and not file_tok.get("path"):
        cfg.tokenizer._replaced_by_path = frozenset(file_tok) - {
            k.split(".", 1)[1] for k in keys if k.startswith("tokenizer.")
        }


def load_config(
    path: str | Path | None,
    overrides: list[str] | None = None,
    schema: type[Section] = Config,
    typed: Mapping[str, Any] | None = None,
    overrides_source: str = "--set",
) -> Any:
    """Read YAML (or start from defaults), apply `--set` overrides ("KEY=VALUE" texts) and
    `typed` ones ({"train.lr": 1e-3}: the Python API's), validate into `schema`."""
    data = read_yaml(path) if path is not None else {}
    if path is not None and (Path(path).parent / "run.json").is_file():  # a run's own config
        data = as_the_run_read(data)
    merged = apply_overrides(copy.deepcopy(data), list(overrides or []))
    for key, value in (typed or {}).items():
        set_dotted(merged, str(key).split("."), value, f"overrides[{key!r}]")
    source = str(path) if path is not None else overrides_source
    given = bool(overrides) or bool(typed)
    cfg = build_overridden(schema, data, merged if given else data, source, overrides_source)
    if path is not None:
        _check_paths_from_here(cfg, Path(path))
    keys = [o.split("=", 1)[0].strip() for o in overrides or []] + [str(k) for k in typed or {}]
    mark_replaced_tokenizer(cfg, data, keys)
    file_init = str(data.get("init", "scratch")).strip() if isinstance(data, dict) else None
    if (
        isinstance(cfg, FinetuneConfig)
        and path is not None
        and file_init == "scratch" != cfg.init.strip()
    ):
        cfg._scratch_file_set_keys = frozenset(keys)
    return cfg


def as_the_run_read(data: Any) -> Any:
    """A run's saved config as the run read its data: task.truncation head_tail (tagging) or
    anything but head (qa) were no-ops, read as head, in runs made before they were refused;
    refused now, they would stop such a run from being predicted, evaluated or resumed."""
    task = data.get("task") if isinstance(data, dict) else None
    if not isinstance(task, dict):
        return data
    task = dict(task)
    from encoderlab.tasks.registry import task_kind  # the registry imports no task code

    kind = task_kind(str(task.get("type", "classification")))
    truncation = task.get("truncation") or "head"
    if (kind in ("tagging", "pos") and truncation == "head_tail") or kind == "qa":
        task["truncation"] = truncation = "head"
    # options refused since 2026-12-03 because they did nothing: a run saved with them read
    # its data without them, so it loads (predict, evaluate, resume) as it ran
    for name, needs in TRUNCATION_OPTIONS.items():
        if truncation != needs:
            task.pop(name, None)
    for owner, names in TASK_OPTIONS.items():
        if kind not in owner.split("/"):
            for name in names:
                task.pop(name, None)
    if kind not in ("tagging", "pos"):
        if task.get("tag_scheme") not in (None, "auto", "plain"):
            task.pop("tag_scheme")
    if not task.get("unanswerable"):
        task.pop("null_threshold", None)
    if kind in ONE_TEXT_TASKS:
        task.pop("text_pair_column", None)
    data = {**data, "task": task}
    if data.get("freeze") == "all" and not data.get("unfreeze_last"):
        data.pop("layer_lr_decay", None)
    return data


def _check_paths_from_here(cfg: Any, path: Path) -> None:
    """Data paths are relative to the working directory. One that is missing from here but
    exists beside the config file (`encoderlab finetune exp/ft.yaml` whose ft.yaml says
    `train: train.csv`) is a one-line error that says so, not "file not found" after the
    run folder is made."""
    here, beside = Path.cwd(), path.parent
    if beside.resolve() == here.resolve():
        return
    for key, value in named_data_files(cfg):
        rel = Path(value)
        if rel.is_absolute() or ":" in value.split("/")[0] or any(c in value for c in "*?["):
            continue
        if not rel.exists() and (beside / rel).exists():
            raise UserError(
                f"{path}: {key}={value}: no such file from here ({here}): paths in a config "
                f"are relative to the working directory, and it is beside the config; write "
                f"{key}: {beside / rel} or run from {beside}"
            )


def build_overridden(
    schema: type[Section], data: Any, merged: Any, source: str, overrides_source: str
) -> Any:
    """`merged` (`data` with overrides applied) validated. When the config alone is valid, its
    error names the overrides (`overrides_source`), where the mistake is, not the file."""
    try:
        return build(schema, merged, source)
    except UserError:
        if merged is not data and _valid(schema, data):
            build(schema, merged, overrides_source)
        raise


def _valid(schema: type[Section], data: dict[str, Any]) -> bool:
    try:
        build(schema, data, "")
    except UserError:
        return False
    return True


def to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_config(cfg: BaseModel, path: str | Path) -> None:
    Path(path).write_text(to_yaml(cfg), encoding="utf-8")
