"""Token embeddings from the corpus's co-occurrence counts: a warm start for a short pretraining.

A few CPU-minutes of masked LM teach the embeddings little beyond token frequencies; counting
which tokens occur near which, weighting the counts by positive pointwise mutual information
(PPMI, context distribution smoothed by 0.75) and keeping the top singular vectors gives vectors
that group words by use (Levy & Goldberg 2014: as good as word2vec's) in seconds. The encoder
then starts from them (`embedding_init: cooccurrence`). Counts come from training tokens only
(validation blocks are left out) and from at most `max_tokens` of them, taken from every shard
in proportion, so the time stays seconds on any corpus.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from encoderlab.data.shards import ShardStore

WINDOW = 5  # tokens either side; a pair k apart counts 1/k (as GloVe weights its window)
MAX_TOKENS = 5_000_000
CHUNK = 1_000_000  # tokens counted at a time: bounds the pair arrays (~10 pairs per token)
SMOOTHING = 0.75  # context counts raised to this power (Levy et al. 2015)


def count_pairs(
    store: ShardStore,
    vocab_size: int,
    skip_ids: tuple[int, ...] = (),
    held_out: dict[int, list[tuple[int, int]]] | None = None,
    window: int = WINDOW,
    max_tokens: int = MAX_TOKENS,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Weighted co-occurrence counts of token pairs within one document and `window` tokens,
    both orders: (pair keys a * vocab_size + b, weights, tokens read). `held_out`: token ranges
    per shard (validation blocks) that no pair may touch; `skip_ids` (specials) pair with none."""
    total = max(store.n_tokens, 1)
    share = min(1.0, max_tokens / total)
    keys: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    read = 0
    for shard in range(len(store.shards)):
        tokens = store.tokens(shard)
        take = min(len(tokens), math.ceil(len(tokens) * share))
        doc_starts = np.asarray(store.offsets(shard))
        for start in range(0, take, CHUNK):
            end = min(take, start + CHUNK)
            ids = np.asarray(tokens[start:end], dtype=np.int64)
            doc = np.searchsorted(doc_starts, np.arange(start, end), side="right")
            usable = ~np.isin(ids, skip_ids)
            for lo, hi in (held_out or {}).get(shard, []):
                usable[max(lo - start, 0) : max(min(hi, end) - start, 0)] = False
            chunk_keys, chunk_weights = _pairs(ids, doc, usable, vocab_size, window)
            keys.append(chunk_keys)
            weights.append(chunk_weights)
            read += end - start
            if len(keys) > 1:  # merge as we go: memory is the distinct pairs, not every pair
                merged = _sum_by_key(np.concatenate(keys), np.concatenate(weights))
                keys, weights = [merged[0]], [merged[1]]
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0), read
    key, weight = _sum_by_key(np.concatenate(keys), np.concatenate(weights))
    return key, weight, read


def _pairs(
    ids: np.ndarray, doc: np.ndarray, usable: np.ndarray, vocab_size: int, window: int
) -> tuple[np.ndarray, np.ndarray]:
    keys, weights = [], []
    for k in range(1, window + 1):
        if k >= len(ids):
            break
        ok = (doc[:-k] == doc[k:]) & usable[:-k] & usable[k:]
        a, b = ids[:-k][ok], ids[k:][ok]
        keys += [a * vocab_size + b, b * vocab_size + a]
        weights += [np.full(2 * len(a), 1.0 / k)]
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0)
    return _sum_by_key(np.concatenate(keys), np.concatenate(weights))


def _sum_by_key(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse, weights=weights, minlength=len(unique))


def ppmi_vectors(
    keys: np.ndarray, weights: np.ndarray, vocab_size: int, dim: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(vocab_size, dim) vectors from the PPMI matrix's top singular vectors, each scaled by
    the square root of its singular value, and which rows got one (tokens seen in a pair)."""
    rows, cols = keys // vocab_size, keys % vocab_size
    row_sum = np.bincount(rows, weights=weights, minlength=vocab_size)
    context = np.bincount(cols, weights=weights, minlength=vocab_size) ** SMOOTHING
    total = weights.sum()
    if total <= 0:
        return torch.zeros(vocab_size, dim), torch.zeros(vocab_size, dtype=torch.bool)
    pmi = np.log(weights * total) - np.log(row_sum[rows]) - np.log(context[cols] / context.sum())
    positive = pmi > 0
    matrix = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([rows[positive], cols[positive]])),
        torch.from_numpy(pmi[positive].astype(np.float32)),
        (vocab_size, vocab_size),
        check_invariants=False,
    ).coalesce()
    covered = torch.from_numpy(row_sum > 0)
    rank = min(dim, vocab_size - 1, int(covered.sum()))
    vectors = torch.zeros(vocab_size, dim)
    if rank < 1 or matrix._nnz() == 0:
        return vectors, torch.zeros(vocab_size, dtype=torch.bool)
    with torch.random.fork_rng(devices=[]):  # the same vectors for a seed, on every rank
        torch.manual_seed(seed)
        u, s, _ = torch.svd_lowrank(matrix, q=rank, niter=4)
    vectors[:, :rank] = u * s.sqrt()
    return vectors, covered


def cooccurrence_embeddings(
    store: ShardStore,
    vocab_size: int,
    dim: int,
    std: float,
    skip_ids: tuple[int, ...] = (),
    held_out: dict[int, list[tuple[int, int]]] | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """PPMI-SVD vectors centred and scaled to `std` (the random init's), the rows that got
    one, and how many tokens were counted."""
    keys, weights, read = count_pairs(store, vocab_size, skip_ids, held_out)
    vectors, covered = ppmi_vectors(keys, weights, vocab_size, dim, seed)
    if covered.any():
        part = vectors[covered]
        part = part - part.mean(0)
        scale = part.std()
        vectors[covered] = part / scale * std if scale > 0 else part
    return vectors, covered, read
