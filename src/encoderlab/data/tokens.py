"""MLM examples served from token shards: blocks or sentences, split, mixed and masked.

The shards (data/shards.py) are memory-mapped, so memory does not grow with the corpus; an
example is only a (shard, start, end) triple until a DataLoader worker reads and masks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from encoderlab.config import DataConfig
from encoderlab.data.masking import IGNORE_INDEX, MaskingSpec, mask_batch
from encoderlab.data.shards import ShardStore, cache_key, corpus_sources, prepare_shards
from encoderlab.errors import UserError
from encoderlab.model import Queries
from encoderlab.tokenizer import special_ids

__all__ = ["cache_key", "prepare_tokens", "build_mlm_datasets", "collate_mlm", "MLMDataset"]


def prepare_tokens(data: DataConfig, tok: Tokenizer, log: Any = print) -> ShardStore:
    """The shards of this corpus + tokenizer, tokenized now if not cached."""
    return ShardStore(prepare_shards(data, tok, log))


@dataclass
class Examples:
    """Which token ranges of the shards are examples (specials are added when one is read).

    packed: `ids` are global block numbers, 8 bytes per example whatever the corpus size;
    block b of shard s starts at (b - first[s]) * width. sentence: `ids` are explicit
    (shard, start, end) rows, one per document or piece of a long document.
    """

    ids: np.ndarray
    width: int
    first: np.ndarray | None = None  # packed: first block number of each shard, then the total

    def __len__(self) -> int:
        return len(self.ids)

    def span(self, j: int) -> tuple[int, int, int]:
        if self.first is None:
            shard, start, end = self.ids[j]
            return int(shard), int(start), int(end)
        block = int(self.ids[j])
        shard = int(np.searchsorted(self.first, block, side="right")) - 1
        start = (block - int(self.first[shard])) * self.width
        return shard, start, start + self.width

    def shards(self) -> np.ndarray:
        if self.first is None:
            return self.ids[:, 0]
        return np.searchsorted(self.first, self.ids, side="right") - 1

    def subset(self, which: np.ndarray) -> Examples:
        return Examples(self.ids[which], self.width, self.first)


def example_spans(store: ShardStore, data: DataConfig) -> Examples:
    """The examples of the corpus.

    packed: each shard's token stream (documents separated by [SEP]) cut into equal blocks;
    blocks never cross shards, which loses under one block per shard.
    sentence: one example per document, long documents cut into several.
    """
    width = data.block_len - (2 if data.add_special else 0)
    if data.mode == "packed":
        per_shard = [shard["tokens"] // width for shard in store.shards]
        first = np.concatenate([[0], np.cumsum(per_shard)]).astype(np.int64)
        examples = Examples(np.arange(first[-1], dtype=np.int64), width, first)
    else:
        parts = []
        for i in range(len(store.shards)):
            offsets = np.asarray(store.offsets(i), dtype=np.int64)
            doc_starts, doc_ends = offsets[:-1], offsets[1:] - 1  # drop each document's [SEP]
            pieces = np.maximum(1, -(-(doc_ends - doc_starts) // width))
            first_piece = np.repeat(doc_starts, pieces)
            k = np.arange(len(first_piece)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
            starts = first_piece + k * width
            ends = np.minimum(starts + width, np.repeat(doc_ends, pieces))
            parts.append(np.stack([np.full(len(starts), i, np.int64), starts, ends], axis=1))
        rows = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
        examples = Examples(rows, width)
    if len(examples) == 0 and store.n_tokens >= width and len(store.shards) > 1:
        raise UserError(  # every file is short of a block, though together they hold several
            f"corpus has {store.n_tokens} tokens in {len(store.shards)} files, but no file holds "
            f"a block of data.block_len={data.block_len} (a packed block never spans two "
            "files); set data.mode=sentence, concatenate the files, or lower data.block_len"
        )
    if len(examples) == 0:
        raise UserError(
            f"corpus has {store.n_tokens} tokens, fewer than one block of "
            f"data.block_len={data.block_len}; add text or lower data.block_len"
        )
    return examples


def packed_loss(store: ShardStore, examples: Examples) -> float:
    """The share of the corpus's tokens no packed block holds (0 in sentence mode)."""
    if examples.first is None or not store.n_tokens:
        return 0.0
    return 1.0 - len(examples) * examples.width / store.n_tokens


def split_spans(
    examples: Examples,
    valid_ratio: float,
    seed: int,
    max_valid: int | None = None,
    sources: np.ndarray | None = None,
) -> tuple[Examples, Examples]:
    """A seeded random validation split. `sources` (each example's corpus, for per-source
    metrics): a source the draw left without a validation example gets one of its own (when
    it has two or more), so its metrics measure something, and one it left without a training
    example gets one back; other sources' splits are kept."""
    n = len(examples)
    if valid_ratio <= 0 or n < 2:
        return examples, examples.subset(slice(0, 0))
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_valid = min(n - 1, max(1, int(round(valid_ratio * n))))
    if max_valid is not None:
        n_valid = max(1, min(n_valid, max_valid))
    valid = np.sort(order[:n_valid])
    del order  # a big corpus has millions of examples: hold as few copies as possible
    if sources is not None:
        missing = np.setdiff1d(np.unique(sources), sources[valid])
        rng = np.random.default_rng([seed, 13])
        extra = [
            rng.choice(members)
            for s in missing
            if len(members := np.flatnonzero(sources == s)) >= 2
        ]
        if extra:
            valid = np.sort(np.concatenate([valid, np.asarray(extra, dtype=valid.dtype)]))
        # nor may the draw take all of a source's examples: it would not be trained on at all
        # (a one-document source in validation left the mixture without a word)
        drawn = np.zeros(n, dtype=bool)
        drawn[valid] = True
        for s in np.unique(sources):
            members = np.flatnonzero(sources == s)
            if drawn[members].all() and len(valid) > 1:  # (a validation split stays)
                valid = valid[valid != rng.choice(members)]
    keep = np.ones(n, dtype=bool)
    keep[valid] = False
    return examples.subset(keep), examples.subset(valid)


def span_sources(store: ShardStore, examples: Examples) -> np.ndarray:
    """The corpus (index into data.sources) each example comes from."""
    of_shard = np.asarray([s["source"] for s in store.shards], dtype=np.int16)
    return of_shard[examples.shards()]


def mix_selection(
    span_sources: np.ndarray | None, weights: list[float] | None, seed: int, epoch: int
) -> np.ndarray | None:
    """Which spans one epoch visits so that each source gets its weight's share of examples.

    The epoch keeps its natural size; a source below its share is repeated, one above it is
    subsampled, drawing a fresh subset every epoch so no text is left out for good.
    """
    if weights is None or span_sources is None:
        return None
    total = len(span_sources)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.max()  # weights near the float limit (1e308 each) would sum to inf
    targets = np.floor(total * (w / w.sum())).astype(np.int64)
    targets[: total - targets.sum()] += 1  # hand out the rounding remainder
    rng = np.random.default_rng([seed, 11, epoch])
    picked = []
    for s, target in enumerate(targets):
        members = np.flatnonzero(span_sources == s)
        if len(members) == 0:
            continue
        reps, rest = divmod(int(target), len(members))
        picked.append(np.tile(members, reps))
        picked.append(rng.choice(members, size=rest, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def _copy_numbers(selection: np.ndarray | None) -> np.ndarray | None:
    """For a sorted selection of span numbers, which copy of its span each entry is (0 for
    the first, 1 for the second, ...)."""
    if selection is None:
        return None
    return np.arange(len(selection)) - np.searchsorted(selection, selection, side="left")


class MLMDataset(torch.utils.data.Dataset):
    """Examples from token shards with masks drawn per (seed, example, epoch)."""

    def __init__(
        self,
        store: ShardStore,
        spans: Examples,
        spec: MaskingSpec,
        cls_id: int | None,
        sep_id: int | None,
        weights: list[float] | None = None,
        tag_sources: bool = False,
    ) -> None:
        """tag_sources: give each example its corpus (index into data.sources) as `source`,
        for per-source metrics."""
        self.store = store
        self.spans = spans
        self.spec = spec
        self.cls_id, self.sep_id = cls_id, sep_id
        self.weights = weights
        self.epoch = 0
        self.tag_sources = tag_sources
        mixed = weights is not None or tag_sources
        self.sources = span_sources(store, spans) if mixed else None
        self.selection = mix_selection(self.sources, weights, spec.seed, 0)
        self.copy = _copy_numbers(self.selection)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch and self.weights is not None:
            self.selection = mix_selection(self.sources, self.weights, self.spec.seed, epoch)
            self.copy = _copy_numbers(self.selection)
        self.epoch = epoch

    def _mask_key(self, i: int, j: int) -> int:
        """What draws example j's mask at epoch position i: j, and for the second and later
        copies of a repeated source's example (weights) j + copy x n, so each visit gets its
        own mask (every copy of a block got the same one, an epoch's repeats all alike)."""
        copy = 0 if self.copy is None else int(self.copy[i])
        return j + copy * len(self.spans)

    def __len__(self) -> int:
        return len(self.spans) if self.selection is None else len(self.selection)

    def _ids(self, i: int) -> tuple[int, np.ndarray]:
        """(example number, its token ids with [CLS] ... [SEP]) of position i of the epoch."""
        j = i if self.selection is None else int(self.selection[i])
        shard, start, end = self.spans.span(j)
        ids = np.asarray(self.store.tokens(shard)[start:end], dtype=np.int64)
        if self.cls_id is not None:
            ids = np.concatenate([[self.cls_id], ids, [self.sep_id]])
        return j, ids

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, np.ndarray]]:
        """A batch's examples, masked together (the DataLoader calls this with a batch's
        indices): the same masks as one by one, at a fraction of the cost."""
        read = [self._ids(i) for i in indices]
        lengths = np.array([len(ids) for _, ids in read])
        padded = np.zeros((len(read), int(lengths.max(initial=0))), dtype=np.int64)
        for row, (_, ids) in enumerate(read):
            padded[row, : len(ids)] = ids
        pairs = zip(indices, read, strict=True)
        keys = np.fromiter((self._mask_key(i, j) for i, (j, _) in pairs), np.int64, len(read))
        inputs, labels = mask_batch(padded, lengths, keys, self.epoch, self.spec)
        out = [{"input_ids": inputs[r, :k], "labels": labels[r, :k]} for r, k in enumerate(lengths)]
        if self.tag_sources and self.sources is not None:
            for e, (j, _) in zip(out, read, strict=True):
                e["source"] = int(self.sources[j])
        return out


def collate_mlm(pad_id: int):
    """Pad to the longest example in the batch (dynamic padding).

    Also computed here, on the host, so that the forward needs no device-to-host sync:
    `masked_rows`, the flat indices of the labelled positions, and `masked_pos` /
    `masked_slots`, their `model.Queries` layout (what MaskedLM.forward would otherwise find
    with a nonzero() and a count), and no `attention_mask` when nothing is padded (what the
    encoder would otherwise find with attention_mask.all()).
    """

    def collate(examples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        length = max(len(e["input_ids"]) for e in examples)
        n = len(examples)
        ids = np.full((n, length), pad_id, dtype=np.int64)
        labels = np.full((n, length), IGNORE_INDEX, dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.int64)
        for row, e in enumerate(examples):
            k = len(e["input_ids"])
            ids[row, :k] = e["input_ids"]
            labels[row, :k] = e["labels"]
            mask[row, :k] = 1
        rows = torch.from_numpy(np.flatnonzero(labels.reshape(-1) != IGNORE_INDEX))
        queries = Queries.at(rows, labels.shape)
        batch = {
            "input_ids": torch.from_numpy(ids),
            "labels": torch.from_numpy(labels),
            "masked_rows": rows,
            "masked_pos": queries.pos,
            "masked_slots": queries.slots,
        }
        if not mask.all():
            batch["attention_mask"] = torch.from_numpy(mask)
        if "source" in examples[0]:  # a mixed corpus's validation set: per-source metrics
            batch["source"] = torch.tensor([e["source"] for e in examples], dtype=torch.long)
        return batch

    return collate


UNKNOWN_WARNING = 0.05  # an English vocabulary on English text: ~0 %; on Korean: 75 %


def _check_every_source_has_text(store: ShardStore, examples: Examples, data: DataConfig) -> None:
    """A named source with no examples (empty files, or data.filters took all its text)
    would get its weight's share of nothing and report a perfect 0.0 validation loss."""
    if not len(examples):  # before a run directory exists for it
        raise UserError(
            f"no training examples: no file leaves a block of data.block_len={data.block_len} "
            "tokens after data.filters (a block never spans two files); lower data.block_len, "
            "loosen data.filters, or add text"
        )
    sources = corpus_sources(data)
    if len(sources) < 2:
        return
    counts = np.bincount(span_sources(store, examples), minlength=len(sources))
    for i, (source, n) in enumerate(zip(sources, counts, strict=True)):
        if n == 0:
            where = (
                "data.corpus"
                if source.name == "corpus"
                else f"data.sources[{i - bool(data.corpus)}]"
            )
            # the cap is taken in order: blamed when the sources before this one filled it
            before = sum(s["docs"] for s in store.shards if s["source"] < i)
            if data.max_documents is not None and before >= data.max_documents:
                raise UserError(
                    f"{where} ({source.name}): no text left to train on: data.max_documents="
                    f"{data.max_documents} was taken by the sources read before it; raise "
                    "data.max_documents or leave it unset"
                )
            tokens = sum(s["tokens"] for s in store.shards if s["source"] == i)
            if data.mode == "packed" and tokens > 0:  # text, too short for one block
                raise UserError(
                    f"{where} ({source.name}): its {tokens} tokens do not fill a block of "
                    f"data.block_len={data.block_len} (a packed block never spans two files); "
                    "add text to it, set data.mode=sentence, or lower data.block_len"
                )
            raise UserError(
                f"{where} ({source.name}): no text left to train on (its files are empty, or "
                "data.filters removed all of it); fix its files or filters, or drop it"
            )


def build_mlm_datasets(
    data: DataConfig, tok: Tokenizer, seed: int, log: Any = print
) -> tuple[MLMDataset, MLMDataset | None, ShardStore]:
    store = prepare_tokens(data, tok, log)
    totals = store.manifest["totals"]
    unknown = totals["unk"] / max(totals["tokens"] - totals["docs"], 1)
    if unknown > UNKNOWN_WARNING:  # a model cannot learn the words its tokenizer cannot spell
        log(
            f"warning: {unknown:.1%} of the corpus's tokens are [UNK] under this tokenizer "
            "(too small a vocabulary, or one trained on other text or another script); train "
            "the tokenizer on this corpus or raise tokenizer.vocab_size"
        )
    ids = special_ids(tok)
    spec = MaskingSpec(
        mask_id=ids["mask"],
        vocab_size=tok.get_vocab_size(),
        special_ids=tuple(sorted(set(ids.values()))),
        rate=data.mask_rate,
        mask_token_prob=data.mask_token_prob,
        random_token_prob=data.random_token_prob,
        dynamic=data.masking == "dynamic",
        seed=seed,
    )
    examples = example_spans(store, data)
    _check_every_source_has_text(store, examples, data)
    if (lost := packed_loss(store, examples)) > 0.05:
        log(
            f"warning: packed blocks of data.block_len={data.block_len} leave out "
            f"{lost:.0%} of the corpus's tokens (each shard's tail, short of a block: many small "
            "files make many shards); concatenate the files, or set data.mode=sentence"
        )
    weights = [s.weight for s in corpus_sources(data)]
    per_source = len(weights) > 1  # validation metrics per source, e.g. valid/ko/mlm_acc
    train, valid = split_spans(
        examples,
        data.valid_ratio,
        seed,
        data.max_valid_examples,
        span_sources(store, examples) if per_source else None,
    )
    cls_id, sep_id = (ids["cls"], ids["sep"]) if data.add_special else (None, None)
    mix = None if any(w is None for w in weights) else weights
    valid_spec = MaskingSpec(**{**spec.__dict__, "dynamic": False})  # same masks every eval
    return (
        MLMDataset(store, train, spec, cls_id, sep_id, mix),
        MLMDataset(store, valid, valid_spec, cls_id, sep_id, tag_sources=per_source)
        if len(valid)
        else None,
        store,
    )
