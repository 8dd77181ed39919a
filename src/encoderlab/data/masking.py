"""Masked-LM corruption (BERT's 15% -> 80/10/10), vectorised over a whole batch.

Every random number is a counter-based hash of (seed, epoch, example index, position, stream),
never a draw from a stateful stream. So a batch is masked in a handful of numpy array ops
(~0.1 ms for 32 x 128 instead of ~4 ms example by example), and an example's mask is still a
pure function of its key: independent of batch order, DataLoader workers and how DDP deals the
rows out; static masking (epoch key 0) repeats every epoch, dynamic masking re-draws each
epoch, and a resumed run sees exactly the masks the uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

IGNORE_INDEX = -100

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_CHOOSE, _ACTION, _TOKEN = 1, 2, 3  # independent streams per position
_COUNT = 0  # per row (at position 0): whether the row's count rounds up


@dataclass(frozen=True)
class MaskingSpec:
    mask_id: int
    vocab_size: int
    special_ids: tuple[int, ...]  # never masked, never drawn as random replacements
    rate: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1
    dynamic: bool = True
    seed: int = 0


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of uint64 whose outputs look independent."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _u64(values: np.ndarray | int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).astype(np.uint64)  # negatives wrap: still a key


def example_keys(spec: MaskingSpec, index: np.ndarray, epoch: int) -> np.ndarray:
    """One uint64 key per example from (seed, epoch if dynamic else 0, example index)."""
    epoch_key = epoch if spec.dynamic else 0
    head = _mix(_u64([spec.seed % 2**63]) + _GOLDEN)
    head = _mix(head ^ (_u64([epoch_key]) + _GOLDEN))
    return _mix(head ^ (_u64(np.atleast_1d(index)) * _GOLDEN))


def _uniform(keys: np.ndarray, pos: np.ndarray, stream: int) -> np.ndarray:
    """Floats in [0, 1), one per (key, position) pair broadcast together, for one stream."""
    salt = _mix(pos.astype(np.uint64) * np.uint64(4) + np.uint64(stream) + _GOLDEN)
    return (_mix(keys ^ salt) >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


@lru_cache(maxsize=8)
def _replacements(vocab_size: int, special_ids: tuple[int, ...]) -> np.ndarray:
    """The ids a random replacement is drawn from: the vocabulary minus the special tokens."""
    return np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.asarray(special_ids))


def mask_batch(
    ids: np.ndarray, lengths: np.ndarray, index: np.ndarray, epoch: int, spec: MaskingSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Mask a padded (n, T) batch: row r holds example `index[r]`, real for `lengths[r]` tokens.

    Returns (corrupted ids, labels); labels are IGNORE_INDEX except at chosen positions.
    Each row gets floor(rate * candidates) chosen positions, one more with probability the
    fraction left over, so the mean is rate * candidates (rounding it, as until 2026-12-03,
    masked every 64-token block at 9 of 62, 14.5 % for 15 %, and 32-token ones at 13.3 %);
    at least one (so short sentences still train), among its non-special real tokens.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n, width = ids.shape
    keys = example_keys(spec, index, epoch)
    candidate = ~np.isin(ids, spec.special_ids) & (np.arange(width)[None, :] < lengths[:, None])
    count = candidate.sum(axis=1)
    exact = spec.rate * count
    up = _uniform(keys, np.zeros(n, dtype=np.int64), _COUNT) < exact - np.floor(exact)
    want = np.where(count > 0, np.maximum(1, np.floor(exact) + up), 0).astype(np.int64)
    # the `want` candidates with the smallest scores are chosen: a uniform sample without
    # replacement per row, from one sort of the batch (ties have probability ~2^-53)
    scores = np.where(candidate, _uniform(keys[:, None], np.arange(width)[None, :], _CHOOSE), 2.0)
    cutoff = np.sort(scores, axis=1)[np.arange(n), np.maximum(want - 1, 0)]
    chosen = (scores <= cutoff[:, None]) & (want[:, None] > 0)
    labels = np.where(chosen, ids, IGNORE_INDEX)
    rows, cols = np.nonzero(chosen)
    action = _uniform(keys[rows], cols, _ACTION)
    out = ids.copy()
    to_mask = action < spec.mask_token_prob
    out[rows[to_mask], cols[to_mask]] = spec.mask_id
    to_random = (action >= spec.mask_token_prob) & (
        action < spec.mask_token_prob + spec.random_token_prob
    )
    if to_random.any():
        r, c = rows[to_random], cols[to_random]
        pool = _replacements(spec.vocab_size, tuple(spec.special_ids))
        pick = (_uniform(keys[r], c, _TOKEN) * len(pool)).astype(np.int64)
        out[r, c] = pool[np.minimum(pick, len(pool) - 1)]
    return out, labels


def mask_example(
    ids: np.ndarray, spec: MaskingSpec, index: int, epoch: int
) -> tuple[np.ndarray, np.ndarray]:
    """One example's (corrupted ids, labels): row `index` of any batch it is masked in."""
    ids = np.asarray(ids, dtype=np.int64)
    out, labels = mask_batch(ids[None, :], np.array([len(ids)]), np.array([index]), epoch, spec)
    return out[0], labels[0]
