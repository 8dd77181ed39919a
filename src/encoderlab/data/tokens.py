"""Tokenize a corpus once into a memory-mapped token file, and serve MLM examples from it.

The cache lives in `<cache_dir>/<key>/` where the key hashes the source files (path, size,
mtime), the reading options and the tokenizer. Layout:
  tokens.bin   every document's ids followed by one [SEP], back to back (uint16 or uint32)
  offsets.npy  int64 start of each document in tokens.bin, plus the end (n_docs + 1 values)
  meta.json    counts, sources, tokenizer hash
Training reads tokens.bin through np.memmap, so memory does not grow with the corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from encoderlab.config import DataConfig
from encoderlab.data.corpus import describe_sources, iter_documents
from encoderlab.data.masking import IGNORE_INDEX, MaskingSpec, example_rng, mask_tokens
from encoderlab.errors import UserError
from encoderlab.tokenizer import special_ids, tokenizer_hash

_ENCODE_BATCH = 1000


@dataclass
class TokenStore:
    """A read-only view of a prepared token cache."""

    path: Path
    tokens: np.ndarray  # memmap, 1-D
    offsets: np.ndarray  # n_docs + 1
    meta: dict[str, Any]

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def open(cls, path: Path) -> TokenStore:
        meta = json.loads((path / "meta.json").read_text())
        dtype = np.dtype(meta["dtype"])
        offsets = np.load(path / "offsets.npy", allow_pickle=False)
        n = int(offsets[-1])
        tokens = (
            np.memmap(path / "tokens.bin", dtype=dtype, mode="r", shape=(n,))
            if n
            else np.zeros(0, dtype)
        )
        return cls(path=path, tokens=tokens, offsets=offsets, meta=meta)


def cache_key(data: DataConfig, tok: Tokenizer) -> str:
    desc = {
        "sources": describe_sources(data.corpus),
        "text_field": data.text_field,
        "text_column": data.text_column,
        "txt_unit": data.txt_unit,
        "max_documents": data.max_documents,
        "format": data.format,
        "tokenizer": tokenizer_hash(tok),
        "cache_version": 1,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]


def prepare_tokens(data: DataConfig, tok: Tokenizer, log: Any = print) -> TokenStore:
    """Return the cached token store for this corpus + tokenizer, building it if needed."""
    key = cache_key(data, tok)
    root = Path(data.cache_dir)
    final = root / key
    if (final / "meta.json").is_file():
        return TokenStore.open(final)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        meta = _write_store(data, tok, tmp, log)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first; theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TokenStore.open(final)


def _write_store(data: DataConfig, tok: Tokenizer, out: Path, log: Any) -> dict[str, Any]:
    vocab = tok.get_vocab_size()
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max else np.uint32
    sep = special_ids(tok)["sep"]
    offsets = [0]
    t0 = time.perf_counter()
    n_docs = 0
    with open(out / "tokens.bin", "wb") as f:
        for batch in _batched(
            iter_documents(
                data.corpus,
                text_field=data.text_field,
                text_column=data.text_column,
                txt_unit=data.txt_unit,
                max_documents=data.max_documents,
                fmt=data.format,
            ),
            _ENCODE_BATCH,
        ):
            encs = tok.encode_batch(batch, add_special_tokens=False)
            chunk = []
            for enc in encs:
                ids = enc.ids
                if not ids:
                    continue
                chunk.append(np.asarray(ids, dtype=dtype))
                chunk.append(np.asarray([sep], dtype=dtype))
                offsets.append(offsets[-1] + len(ids) + 1)
            if chunk:
                np.concatenate(chunk).tofile(f)
            n_docs += len(batch)
    if len(offsets) == 1:
        raise UserError(f"{', '.join(data.corpus)}: no documents to train on (empty corpus)")
    np.save(out / "offsets.npy", np.asarray(offsets, dtype=np.int64), allow_pickle=False)
    seconds = time.perf_counter() - t0
    n_tokens = offsets[-1]
    log(
        f"tokenized {len(offsets) - 1:,} documents into {n_tokens:,} tokens "
        f"in {seconds:.1f}s ({n_tokens / max(seconds, 1e-9):,.0f} tokens/s)"
    )
    return {
        "dtype": np.dtype(dtype).name,
        "n_docs": len(offsets) - 1,
        "n_tokens": int(n_tokens),
        "sources": describe_sources(data.corpus),
        "tokenizer_hash": tokenizer_hash(tok),
        "vocab_size": vocab,
        "seconds": round(seconds, 3),
    }


def _batched(items: Iterator[str], n: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------
# Examples: spans of the token file, split into train/valid, masked on the fly


def example_spans(store: TokenStore, data: DataConfig) -> np.ndarray:
    """[start, end) of each example's content in tokens.bin (specials added later).

    packed: the token stream (documents separated by [SEP]) cut into equal blocks;
    sentence: one example per document, long documents cut into several.
    """
    width = data.block_len - (2 if data.add_special else 0)
    if data.mode == "packed":
        n = store.n_tokens // width
        if n == 0:
            raise UserError(
                f"corpus has {store.n_tokens} tokens, fewer than one block of "
                f"data.block_len={data.block_len}; add text or lower data.block_len"
            )
        starts = np.arange(n, dtype=np.int64) * width
        return np.stack([starts, starts + width], axis=1)
    spans = []
    for doc_start, doc_end in zip(store.offsets[:-1], store.offsets[1:], strict=True):
        end = doc_end - 1  # drop the separator stored after each document
        for s in range(int(doc_start), int(end), width):
            spans.append((s, min(s + width, int(end))))
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


def split_spans(spans: np.ndarray, valid_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if valid_ratio <= 0 or len(spans) < 2:
        return spans, spans[:0]
    order = np.random.default_rng([seed, 7]).permutation(len(spans))
    n_valid = min(len(spans) - 1, max(1, int(round(valid_ratio * len(spans)))))
    return spans[np.sort(order[n_valid:])], spans[np.sort(order[:n_valid])]


class MLMDataset(torch.utils.data.Dataset):
    """Examples from a token store with masks drawn per (seed, example, epoch)."""

    def __init__(
        self,
        store_path: Path,
        spans: np.ndarray,
        spec: MaskingSpec,
        cls_id: int | None,
        sep_id: int | None,
    ) -> None:
        self.store_path = store_path
        self.spans = spans
        self.spec = spec
        self.cls_id, self.sep_id = cls_id, sep_id
        self.epoch = 0
        self._store: TokenStore | None = None  # opened lazily: memmaps do not cross processes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if self._store is None:
            self._store = TokenStore.open(self.store_path)
        start, end = self.spans[i]
        ids = np.asarray(self._store.tokens[start:end], dtype=np.int64)
        if self.cls_id is not None:
            ids = np.concatenate([[self.cls_id], ids, [self.sep_id]])
        inputs, labels = mask_tokens(ids, self.spec, example_rng(self.spec, i, self.epoch))
        return {"input_ids": inputs, "labels": labels}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        return state


def collate_mlm(pad_id: int):
    """Pad to the longest example in the batch (dynamic padding)."""

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
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.from_numpy(labels),
        }

    return collate


def build_mlm_datasets(
    data: DataConfig, tok: Tokenizer, seed: int, log: Any = print
) -> tuple[MLMDataset, MLMDataset | None, TokenStore]:
    store = prepare_tokens(data, tok, log)
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
    spans = example_spans(store, data)
    train, valid = split_spans(spans, data.valid_ratio, seed)
    cls_id, sep_id = (ids["cls"], ids["sep"]) if data.add_special else (None, None)
    valid_spec = MaskingSpec(**{**spec.__dict__, "dynamic": False})  # same masks every eval
    return (
        MLMDataset(store.path, train, spec, cls_id, sep_id),
        MLMDataset(store.path, valid, valid_spec, cls_id, sep_id) if len(valid) else None,
        store,
    )
