"""Train, save and load subword tokenizers (Hugging Face `tokenizers` only).

Every tokenizer encoderlab trains has the same five special tokens at ids 0..4, wraps inputs
as `[CLS] A [SEP]` / `[CLS] A [SEP] B [SEP]` with type ids, and is saved in a layout that
`transformers.AutoTokenizer.from_pretrained` loads as is, so a pretrained encoder can be
handed to anyone without encoderlab.

Normalization is NFKC (+ lowercase when asked), never NFD: NFD and BertNormalizer's accent
stripping decompose Hangul syllables into jamo, which wrecks Korean vocabularies.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from encoderlab.errors import UserError

if TYPE_CHECKING:
    from encoderlab.config import DataConfig, TokenizerConfig

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_SPECIAL_NAMES = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
ROLES = tuple(_SPECIAL_NAMES)
# Conventional names per role, tried in order when a tokenizer does not say which token plays
# it: BERT's, then RoBERTa's (ALBERT mixes both: <pad> <unk> with [CLS] [SEP] [MASK]).
_CANDIDATES = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "mask": ("[MASK]", "<mask>"),
}
# A `tokenizers.Tokenizer` has no notion of roles; the names read from tokenizer_config.json
# (or given by hf.py) ride along on the object under this attribute.
_ROLE_ATTR = "_encoderlab_special_tokens"
_BYTE_ALPHABET = 256
_TRAIN_BATCH = 1000
KINDS = ("bpe", "char_bpe", "wordpiece", "unigram")


# Fewer pieces than this make a model that predicts the one or two tokens there are: MLM loss
# 0.0 and perfect accuracy that mean nothing.
MIN_PIECES = 16
MAX_VOCAB = 2**20


def min_vocab_size(kind: str) -> int:
    """Smallest vocab a kind can be trained to: the specials, plus the 256 bytes for byte-level
    or MIN_PIECES pieces for the others."""
    base = len(SPECIAL_TOKENS)
    return base + _BYTE_ALPHABET if kind == "bpe" else base + MIN_PIECES


def _check_cfg(cfg: TokenizerConfig) -> None:
    if cfg.kind not in KINDS:
        raise UserError(f"tokenizer.kind={cfg.kind!r}: must be one of {', '.join(KINDS)}")
    need = min_vocab_size(cfg.kind)
    if cfg.vocab_size < need:
        why = (
            f"{len(SPECIAL_TOKENS)} special tokens + {_BYTE_ALPHABET} bytes"
            if cfg.kind == "bpe"
            else f"{len(SPECIAL_TOKENS)} special tokens + {MIN_PIECES} pieces"
        )
        raise UserError(
            f"tokenizer.vocab_size={cfg.vocab_size} is too small for kind '{cfg.kind}': "
            f"it needs at least {need} ({why}); raise tokenizer.vocab_size"
        )
    if cfg.vocab_size > MAX_VOCAB:  # the trainer would try to allocate it and abort
        raise UserError(
            f"tokenizer.vocab_size={cfg.vocab_size:,} is larger than any useful vocabulary "
            f"(at most {MAX_VOCAB:,}; multilingual models use ~250,000); lower it"
        )
    if cfg.min_frequency < 0:
        raise UserError(f"tokenizer.min_frequency={cfg.min_frequency}: must be 0 or more")


def _normalizer(lowercase: bool) -> normalizers.Normalizer:
    steps: list[normalizers.Normalizer] = [normalizers.NFKC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    return normalizers.Sequence(steps)


def _template(tok: Tokenizer) -> processors.PostProcessor:
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    return processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )


def _build(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    """An untrained tokenizer and its trainer for cfg.kind."""
    n_special = len(SPECIAL_TOKENS)
    # Character kinds add every character of the alphabet (and, for wordpiece/char_bpe, its
    # "##c" / "c</w>" variant) before any merge; capping the alphabet keeps the result within
    # vocab_size even on scripts with thousands of characters. Rare characters become [UNK].
    alphabet_cap = max(1, (cfg.vocab_size - n_special) // 2)
    common: dict[str, Any] = {
        "vocab_size": cfg.vocab_size,
        "special_tokens": SPECIAL_TOKENS,
        "show_progress": sys.stderr.isatty(),  # the trainer's own bar, on a terminal only
    }
    if cfg.kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        # add_prefix_space makes "the" at the start of a text the same token as " the" later;
        # Strip drops that added space again when decoding.
        tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(
            min_frequency=cfg.min_frequency,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            **common,
        )
    elif cfg.kind == "char_bpe":
        tok = Tokenizer(models.BPE(unk_token="[UNK]", end_of_word_suffix="</w>"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.BPEDecoder(suffix="</w>")
        trainer = trainers.BpeTrainer(
            min_frequency=cfg.min_frequency,
            end_of_word_suffix="</w>",
            limit_alphabet=alphabet_cap,
            **common,
        )
    elif cfg.kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            min_frequency=cfg.min_frequency,
            continuing_subword_prefix="##",
            limit_alphabet=alphabet_cap,
            **common,
        )
    else:  # unigram
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(unk_token="[UNK]", **common)
    tok.normalizer = _normalizer(cfg.lowercase)
    return tok, trainer


# The trainers' time grows with the square of a word's length: one 3 MB line without a space
# (a base64 blob, "ㅋㅋㅋ…", a minified file) kept `tokenizer train` busy for most of an hour,
# deaf to Ctrl-C. Longer runs without whitespace are cut into pieces of this many characters
# for training only; no vocabulary keeps a piece that long (WordPiece encodes any word over
# 100 characters as [UNK]), and ordinary text has no such run.
MAX_TRAIN_WORD = 1000
_RUN = re.compile(r"\S+")
_LONG_RUN = re.compile(rf"\S{{{MAX_TRAIN_WORD + 1}}}")


def _cut_long_runs(text: str) -> str:
    """`text` with every whitespace-free run longer than MAX_TRAIN_WORD cut by spaces."""
    if len(text) <= MAX_TRAIN_WORD or not _LONG_RUN.search(text):  # one scan, in C: the norm
        return text
    parts: list[str] = []
    last = 0
    for m in _RUN.finditer(text):
        if m.end() - m.start() > MAX_TRAIN_WORD:
            run = m.group()
            parts.append(text[last : m.start()])
            parts.append(
                " ".join(run[i : i + MAX_TRAIN_WORD] for i in range(0, len(run), MAX_TRAIN_WORD))
            )
            last = m.end()
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


class _Feeder:
    """Batches documents for the trainer and keeps any exception the source raises.

    An exception raised inside an iterator that Rust is consuming comes back wrapped (or is
    lost); keeping it here lets a UserError from the corpus reader reach the user intact.
    """

    def __init__(self, texts: Iterable[str], track_chars: bool) -> None:
        self.texts = texts
        self.error: BaseException | None = None
        self.n_docs = 0
        self.chars: set[str] | None = set() if track_chars else None

    def __iter__(self) -> Iterator[list[str]]:
        batch: list[str] = []
        try:
            for text in self.texts:
                if not text:
                    continue
                if self.chars is not None:
                    self.chars.update(text)
                batch.append(_cut_long_runs(text))
                self.n_docs += 1
                if len(batch) >= _TRAIN_BATCH:
                    yield batch
                    batch = []
        except Exception as e:
            self.error = e
            return
        if batch:
            yield batch


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    """Train a tokenizer of cfg.kind on the texts, streaming them once.

    Unigram must hold every character of the corpus in its vocabulary; on scripts with
    thousands of characters (Korean, Chinese) that can exceed vocab_size. When `texts` can be
    iterated again (a list, or the files behind train_tokenizer_from_files), the rarest
    characters are then dropped from the training text (like SentencePiece's
    character_coverage) and training is retried; they encode as [UNK].
    """
    _check_cfg(cfg)
    try:
        tok = _train(texts, cfg, drop=None)
    except _TooManyChars as e:
        if iter(texts) is texts:  # a one-shot iterator: cannot read it twice
            raise UserError(e.message()) from None
        keep = _common_chars(texts, cfg)
        tok = _train(texts, cfg, drop=keep)
    need = min_vocab_size(cfg.kind)
    if tok.get_vocab_size() < need:  # e.g. a binary file: a model on it would learn nothing
        raise UserError(
            f"the corpus gave a vocabulary of only {tok.get_vocab_size()} tokens (at least "
            f"{need} are needed): it is too small or not text; give more text"
        )
    return tok


class _TooManyChars(Exception):
    def __init__(self, cfg: TokenizerConfig, n_chars: int) -> None:
        self.cfg, self.n_chars = cfg, n_chars

    def message(self) -> str:
        need = self.n_chars + len(SPECIAL_TOKENS)
        return (
            f"tokenizer.vocab_size={self.cfg.vocab_size} is too small for kind 'unigram' on this "
            f"corpus: unigram keeps every character, and the text has about {self.n_chars}; "
            f"raise tokenizer.vocab_size above {need}, or use tokenizer.kind=wordpiece or bpe"
        )


_CHAR_COVERAGE = 0.9995


def _common_chars(texts: Iterable[str], cfg: TokenizerConfig) -> set[str]:
    """The most frequent characters covering 99.95% of the text, at most half the vocab."""
    counts: Counter[str] = Counter()
    norm = _normalizer(cfg.lowercase)
    for text in texts:
        counts.update(norm.normalize_str(text))
    counts.pop(" ", None)
    total = sum(counts.values())
    cap = max(1, (cfg.vocab_size - len(SPECIAL_TOKENS)) // 2)
    keep: set[str] = set()
    covered = 0
    for ch, n in counts.most_common(cap):
        if covered >= _CHAR_COVERAGE * total:
            break
        keep.add(ch)
        covered += n
    return keep


def _train(texts: Iterable[str], cfg: TokenizerConfig, drop: set[str] | None) -> Tokenizer:
    tok, trainer = _build(cfg)
    source: Iterable[str] = texts
    if drop is not None:
        norm, keep = _normalizer(cfg.lowercase), drop
        source = (
            "".join(c if c in keep or c.isspace() else " " for c in norm.normalize_str(t))
            for t in texts
        )
    feeder = _Feeder(source, track_chars=cfg.kind == "unigram" and drop is None)
    try:
        tok.train_from_iterator(feeder, trainer=trainer)
    except Exception as e:
        if feeder.error is not None:
            raise feeder.error from None
        if "not large enough to contain all chars" in str(e):
            chars = "".join(feeder.chars or ())
            n_chars = len(set(_normalizer(cfg.lowercase).normalize_str(chars)))
            raise _TooManyChars(cfg, n_chars) from None
        raise
    if feeder.error is not None:
        raise feeder.error
    if feeder.n_docs == 0:
        raise UserError(
            "no text to train the tokenizer on; check tokenizer.train_files / data.corpus"
        )
    for i, name in enumerate(SPECIAL_TOKENS):  # the trainers put them first; make sure
        if tok.token_to_id(name) != i:
            raise AssertionError(f"special token {name} got id {tok.token_to_id(name)}, not {i}")
    if cfg.kind == "bpe":
        tok.post_processor = processors.Sequence(
            [processors.ByteLevel(trim_offsets=True), _template(tok)]
        )
    else:
        tok.post_processor = _template(tok)
    return tok


class _Documents:
    """Re-iterable view of corpus files, so training can take a second pass if it must.

    `groups` are (files, reading options) pairs: one per corpus of a mix (data.sources).
    Read tolerantly, as the token cache reads them (a bad line stopped a pretraining whose
    tokenizer it trained, and was skipped by one given tokenizer.path); `reports` says what
    the last pass skipped. Under a document cap the groups take turns, so the first corpus
    of a mix does not take the whole cap.
    """

    def __init__(
        self,
        groups: list[tuple[Sequence[str | Path], dict[str, Any]]],
        cap: int | None,
        keys: list[str] | None = None,
    ):
        self.groups, self.cap = groups, cap
        self.keys = keys or ["data.corpus"] * len(groups)  # the config key of each group
        self.reports: list[Any] = []

    def __iter__(self) -> Iterator[str]:
        self.reports = []
        streams = [
            self._group(paths, options, key)
            for (paths, options), key in zip(self.groups, self.keys, strict=True)
        ]
        if self.cap is None:
            yield from itertools.chain.from_iterable(streams)
            return
        n = 0
        while streams and n < self.cap:
            for stream in list(streams):
                doc = next(stream, None)
                if doc is None:
                    streams.remove(stream)
                    continue
                n += 1
                yield doc
                if n >= self.cap:
                    return

    def _group(
        self, paths: Sequence[str | Path], options: dict[str, Any], key: str
    ) -> Iterator[str]:
        from encoderlab.data.corpus import FileReport, iter_source, no_text_message, resolve_sources

        for src in resolve_sources(paths, options.get("fmt", "auto")):
            report = FileReport(path=str(src))
            self.reports.append(report)
            yield from iter_source(src, **options, report=report)
            if report.documents == 0 and not report.n_problems:  # empty: a mistake, as before
                raise UserError(no_text_message(src, options, key))

    def warnings(self) -> list[str]:
        return [f"warning: {r.summary()}" for r in self.reports if r.n_problems]


def short_vocab_warning(tok: Tokenizer, cfg: TokenizerConfig) -> str | None:
    """A vocabulary well short of the size asked for: the corpus is small, or min_frequency
    left few pieces frequent enough (words then split into characters)."""
    got = tok.get_vocab_size()
    if got >= 0.5 * cfg.vocab_size:  # a small corpus falls a little short; this is more
        return None
    why = f"min_frequency={cfg.min_frequency} (bpe, wordpiece)" if cfg.kind != "unigram" else ""
    return (
        f"warning: the tokenizer has {got:,} tokens of the {cfg.vocab_size:,} asked for: the "
        f"corpus is small{f', or {why} left few pieces frequent enough' if why else ''}; "
        "words split into more, shorter pieces"
    )


UNKNOWN_SAMPLE = 5000  # documents from the start of the corpus checked for [UNK]
UNKNOWN_SHARE = 0.05  # as pretraining warns: English on English text ~0 %, Korean under a 300 ~70 %


def unknown_warning(tok: Tokenizer, texts: Iterable[str], cfg: TokenizerConfig) -> str | None:
    """A warning when more than 5 % of the tokens of the first UNKNOWN_SAMPLE documents are
    [UNK]: a WordPiece of 300 on Korean text keeps 147 of its thousands of syllables and
    writes most words as [UNK], which `tokenizer train` saved without a word."""
    unk = special_ids(tok)["unk"]
    docs = list(itertools.islice(texts, UNKNOWN_SAMPLE))
    encoded = tok.encode_batch(docs, add_special_tokens=False)
    total = sum(len(enc.ids) for enc in encoded)
    share = sum(enc.ids.count(unk) for enc in encoded) / total if total else 0.0
    if share <= UNKNOWN_SHARE:
        return None
    return (
        f"warning: {share:.1%} of the tokens of the corpus's first documents are [UNK] under "
        f"this tokenizer: tokenizer.vocab_size={cfg.vocab_size} is too small for the text's "
        "characters (a Korean or Chinese corpus has thousands); raise tokenizer.vocab_size, or "
        "use tokenizer.kind=bpe (byte-level: no [UNK])"
    )


def train_tokenizer_from_files(
    paths: Sequence[str | Path] | None,
    cfg: TokenizerConfig,
    data_cfg: DataConfig,
    say: Callable[[str], None] | None = None,
) -> Tokenizer:
    """Train on corpus files read with the data section's format options.

    `paths=None` means cfg.train_files, or the pretraining corpus (data.corpus and every
    corpus of data.sources) when those are unset. The document cap is the smaller of
    tokenizer.max_train_documents and data.max_documents: a tokenizer should not see text the
    model will never be trained on. `say`: where the lines and records skipped are told.
    """
    from encoderlab.data.corpus import FileReport, iter_source, no_text_message, resolve_sources

    options = {
        "text_field": data_cfg.text_field,
        "text_column": data_cfg.text_column,
        "txt_unit": data_cfg.txt_unit,
        "fmt": data_cfg.format,
        "sheet": data_cfg.sheet,
    }
    if paths is not None or cfg.train_files is not None or not data_cfg.sources:
        where = "--corpus" if paths is not None else "tokenizer.train_files"
        if paths is None and cfg.train_files is None:
            where = "data.corpus"
        if paths is None:
            paths = cfg.train_files if cfg.train_files is not None else data_cfg.corpus
        groups = [(paths, options)]
        keys = [where]
    else:
        groups = [(data_cfg.corpus, options)] if data_cfg.corpus else []
        keys = ["data.corpus"] * len(groups)
        for i, src in enumerate(data_cfg.sources):
            keys.append(f"data.sources[{i}].files ({src.name})")
            own = {
                "text_field": src.text_field or data_cfg.text_field,
                "text_column": src.text_column
                if src.text_column is not None
                else data_cfg.text_column,
                "fmt": src.format or data_cfg.format,
            }
            groups.append((src.files, {**options, **own}))
    for (files, opts), where in zip(groups, keys, strict=True):
        for src in resolve_sources(files, opts["fmt"], where):  # a missing file: now
            # a later file's missing column or field: now, not after reading the ones before
            report = FileReport()
            first = iter_source(src, **opts, report=report)
            try:
                found = next(first, None)
            except UserError as e:
                raise UserError(_own_keys(str(e), where, data_cfg)) from None
            first.close()
            if found is None and not report.n_problems:  # an empty file: after the rest, too
                raise UserError(no_text_message(src, opts, where))
    caps = [c for c in (cfg.max_train_documents, data_cfg.max_documents) if c is not None]
    docs = _Documents(groups, min(caps) if caps else None, keys)
    try:
        tok = train_tokenizer(docs, cfg)
    except UserError as e:  # too little text: what was skipped may be why
        skipped = [r.summary() for r in docs.reports if r.n_problems]
        if not skipped:
            raise
        raise UserError(f"{e}; skipped: {' | '.join(skipped)}") from None
    for warning in docs.warnings() if say is not None else []:
        say(warning)
    return tok


def _own_keys(message: str, where: str, data_cfg: DataConfig) -> str:
    """An error of a data.sources entry names that entry's own key where it sets one (it said
    "set data.text_field", which its own text_field overrides)."""
    if not where.startswith("data.sources["):
        return message
    i = int(where.split("[", 1)[1].split("]", 1)[0])
    src = data_cfg.sources[i]
    for key, own in (("text_field", src.text_field), ("text_column", src.text_column)):
        if own is not None:
            message = message.replace(f"data.{key}", f"data.sources[{i}].{key}")
    return message


def check_new_tokenizer_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """`check_output_dir`, and a UserError if `out_dir` holds a tokenizer already (a run's own
    is never replaced: its model was trained on those ids): `tokenizer train --out`."""
    out = check_output_dir(out_dir)
    # resolved: `--out .` inside a run's tokenizer/ (whose parent reads as "."), or a symlink
    # to it, replaced the tokenizer its model reads
    where = out.resolve()
    run = next((p for p in (where, *where.parents) if (p / "run.json").is_file()), None)
    if run is not None and (out / "tokenizer.json").exists() and where == run / "tokenizer":
        pass  # a run's own tokenizer: the message below says why it stays
    elif run is not None:
        raise UserError(f"--out {out}: inside run {run}; give a folder outside run directories")
    if (out / "tokenizer.json").exists():
        if (where.parent / "run.json").is_file():
            raise UserError(
                f"--out {out}: the tokenizer of run {where.parent}, whose model reads its ids; "
                "give another folder"
            )
        if not overwrite:
            raise UserError(
                f"--out {out} holds a tokenizer already; give another folder, or --overwrite"
            )
    theirs = [name for name in _TOKENIZER_FILES if (out / name).exists()]
    if theirs and not overwrite and not (out / "tokenizer.json").exists():
        # a model folder's tokenizer_config.json was written over, and its vocab.txt left
        # beside a tokenizer.json that transformers then loads instead
        raise UserError(
            f"--out {out} holds another tokenizer's files ({', '.join(theirs)}); give another "
            "folder, or --overwrite"
        )
    return out


# What save_tokenizer writes (and the files of other tokenizers transformers would load, or
# mix with ours, from the same folder)
_TOKENIZER_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "added_tokens.json",
)


def check_output_dir(out_dir: str | Path) -> Path:
    """`out_dir` as a Path, or a UserError if it (or a folder above it) is an existing file;
    called before training, so a long training run is not lost to a bad --out."""
    out = Path(out_dir)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise UserError(
                f"--out {out}: {p} is a file; the tokenizer is written as a folder "
                "(tokenizer.json and two small files inside); give a folder name"
            )
    return out


def save_tokenizer(
    tok: Tokenizer, out_dir: str | Path, model_max_length: int | None = None
) -> Path:
    """Write tokenizer.json plus the two small files transformers needs; return the directory.

    With tokenizer_config.json naming the special tokens, `AutoTokenizer.from_pretrained(dir)`
    gives a fast tokenizer with pad/unk/cls/sep/mask set, matching this one id for id.
    """
    names = special_tokens(tok)  # refuse to write a tokenizer transformers could not use
    out = check_output_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    tokens = {f"{k}_token": v for k, v in names.items()}
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **tokens,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
    }
    if model_max_length is not None:
        config["model_max_length"] = model_max_length
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(tokens, indent=2) + "\n")
    return out


def unused_beside_path(cfg: TokenizerConfig) -> str | None:
    """A warning naming the tokenizer settings a given `tokenizer.path` makes unused (they only
    shape a tokenizer trained here), so that a run's config.yaml saying `lowercase: true` beside
    a cased tokenizer is not the only trace of them; None when there are none. A config file's
    section that `--set tokenizer.path=` replaced is expected to go unused (a study's arm)."""
    if not cfg.path:
        return None
    fields = type(cfg).model_fields
    given = [
        f
        for f in sorted(cfg.model_fields_set - {"path"} - cfg._replaced_by_path)
        if getattr(cfg, f) != fields[f].default
    ]
    if not given:
        return None
    shown = ", ".join(
        f"tokenizer.{f}={str(v).lower() if isinstance(v, bool) else v}"
        for f in given
        for v in [getattr(cfg, f)]
    )
    return (
        f"warning: {shown} not used: tokenizer.path={cfg.path} is a tokenizer already trained, "
        "and these only shape one trained here; drop them, or drop tokenizer.path to train one"
    )


def load_tokenizer(path: str | Path, given_as: str = "tokenizer.path") -> Tokenizer:
    """Load a tokenizer.json (or a directory holding one) that has all five special tokens.
    `given_as`: where the user gave the path (a config key or a command-line option)."""
    p = Path(path).expanduser()
    file = p / "tokenizer.json" if p.is_dir() else p
    if not file.is_file():
        where = f"{p} has no tokenizer.json" if p.is_dir() else f"{p}: tokenizer not found"
        fix = (
            f"set {given_as} to a tokenizer.json or a directory holding one (or unset it to "
            "train a tokenizer)"
            if given_as == "tokenizer.path"
            else f"give {given_as} a tokenizer.json or a directory holding one (`encoderlab "
            "tokenizer train` makes one)"
        )
        raise UserError(f"{where}; {fix}")
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(
            f"{file}: not a valid tokenizer.json ({first}); point {given_as} at a file "
            "written by `tokenizers` or encoderlab"
        ) from None
    # encoderlab pads and truncates itself; a checkpoint's fixed padding (sentence-transformers
    # ships Fixed(128)) would otherwise pad every encoded text
    tok.no_padding()
    tok.no_truncation()
    named = read_special_names(file.parent) if file.name == "tokenizer.json" else {}
    if named:
        set_special_tokens(tok, named, source=file.parent)
    missing = _missing_roles(tok)
    if missing:
        raise UserError(
            f"{file}: tokenizer lacks the special tokens {', '.join(missing)}; encoderlab needs "
            f"pad, unk, cls, sep and mask tokens ({' '.join(SPECIAL_TOKENS)}, or RoBERTa's "
            "<pad> <unk> <s> </s> <mask>, or names in tokenizer_config.json); train one with "
            "encoderlab, or use a BERT-style tokenizer"
        )
    return tok


def _token_name(value: Any) -> str | None:
    """A special token as transformers writes it: a string or an AddedToken dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def read_special_names(directory: str | Path) -> dict[str, str]:
    """Role -> token from tokenizer_config.json / special_tokens_map.json (transformers' files).

    tokenizer_config.json wins where both name a role; a file that is not JSON is a UserError,
    since it would otherwise silently fall back to guessed names.
    """
    names: dict[str, str] = {}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):
        f = Path(directory) / fname
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{f}: not valid JSON ({e}); fix or delete the file") from None
        if not isinstance(data, dict):
            continue
        for role in ROLES:
            name = _token_name(data.get(f"{role}_token"))
            if name:
                names[role] = name
    return names


def set_special_tokens(tok: Tokenizer, names: dict[str, str], source: Any = "tokenizer") -> None:
    """Say which tokens play pad/unk/cls/sep/mask (e.g. RoBERTa's <pad> <unk> <s> </s> <mask>).

    Names must be in the vocabulary; roles not given keep their conventional names.
    """
    absent = [f"{r}_token={n!r}" for r, n in names.items() if tok.token_to_id(n) is None]
    if absent:
        raise UserError(
            f"{source}: names special tokens the vocabulary lacks ({', '.join(absent)}); "
            "fix tokenizer_config.json / special_tokens_map.json"
        )
    known = {r: n for r, n in names.items() if r in _SPECIAL_NAMES}
    setattr(tok, _ROLE_ATTR, {**getattr(tok, _ROLE_ATTR, {}), **known})


def _resolve_roles(tok: Tokenizer) -> tuple[dict[str, str], list[str]]:
    named: dict[str, str] = getattr(tok, _ROLE_ATTR, {})
    found: dict[str, str] = {}
    missing: list[str] = []
    for role in ROLES:
        options = (named[role],) if role in named else _CANDIDATES[role]
        hit = next((t for t in options if tok.token_to_id(t) is not None), None)
        if hit is None:
            missing.append(options[0])
        else:
            found[role] = hit
    return found, missing


def _missing_roles(tok: Tokenizer) -> list[str]:
    return _resolve_roles(tok)[1]


def special_tokens(tok: Tokenizer) -> dict[str, str]:
    """Role -> token string for pad, unk, cls, sep and mask; UserError if any is missing."""
    found, missing = _resolve_roles(tok)
    if missing:
        raise UserError(
            f"the tokenizer lacks the special tokens {', '.join(missing)}; encoderlab needs "
            f"pad, unk, cls, sep and mask tokens ({' '.join(SPECIAL_TOKENS)} or RoBERTa's "
            "<pad> <unk> <s> </s> <mask>)"
        )
    return found


def tokenizer_hash(tok: Tokenizer) -> str:
    """A stable 16-hex-digit id of what the tokenizer does, for keying token caches.

    Padding and truncation settings are left out: they change batches, not token ids. Floats
    (unigram scores) are rounded: tokenizers' JSON writer does not round-trip their last digit,
    so a saved and reloaded tokenizer would otherwise hash differently.
    """
    state = json.loads(tok.to_str(), parse_float=lambda x: format(float(x), ".12g"))
    state.pop("padding", None)
    state.pop("truncation", None)
    blob = json.dumps(state, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def special_ids(tok: Tokenizer) -> dict[str, int]:
    """Ids of pad, unk, cls, sep and mask; UserError if any is missing.

    The tokens are the ones tokenizer_config.json named (see `set_special_tokens`), else the
    conventional BERT names, else RoBERTa's, so imported checkpoints work without renaming.
    """
    ids: dict[str, int] = {}
    for role, token in special_tokens(tok).items():
        i = tok.token_to_id(token)
        assert i is not None
        ids[role] = i
    return ids


def pair_separator(tok: Tokenizer) -> list[int]:
    """The ids between the two texts of a pair (sentence pairs, QA's question and context):
    [SEP], or RoBERTa's </s></s> where the tokenizer's own pair template has two, so that a
    run trains on the input transformers builds for its export (`tokenizer(a, b)`)."""
    sep = special_ids(tok)["sep"]
    if tok.post_processor is None:
        return [sep]
    ids = tok.encode("a", "b", add_special_tokens=True).ids
    return [sep, sep] if ids.count(sep) >= 3 else [sep]
