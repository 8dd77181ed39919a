"""Masked-LM corruption (BERT's 15% -> 80/10/10), drawn per example from a seeded generator.

Each example's mask comes from `np.random.default_rng([seed, index, epoch])`, never from a
global stream. That makes masking independent of batch order and DataLoader workers, so
static masking is reproducible from the seed, dynamic masking re-draws each epoch, and a
resumed run sees exactly the masks the uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = -100


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


def example_rng(spec: MaskingSpec, index: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, index, epoch if spec.dynamic else 0])


def mask_tokens(
    ids: np.ndarray, spec: MaskingSpec, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return (corrupted ids, labels); labels are IGNORE_INDEX except at chosen positions.

    The number of chosen positions is round(rate * candidates), at least one, so short
    sentences still train and the rate is exact rather than approximate per example.
    """
    ids = np.asarray(ids, dtype=np.int64)
    candidates = np.flatnonzero(~np.isin(ids, spec.special_ids))
    labels = np.full(ids.shape, IGNORE_INDEX, dtype=np.int64)
    if candidates.size == 0:
        return ids.copy(), labels
    n = max(1, int(round(spec.rate * candidates.size)))
    chosen = rng.choice(candidates, size=n, replace=False)
    labels[chosen] = ids[chosen]
    out = ids.copy()
    action = rng.random(n)
    to_mask = chosen[action < spec.mask_token_prob]
    to_random = chosen[
        (action >= spec.mask_token_prob) & (action < spec.mask_token_prob + spec.random_token_prob)
    ]
    out[to_mask] = spec.mask_id
    if to_random.size:
        out[to_random] = _random_tokens(spec, rng, to_random.size)
    return out, labels


def _random_tokens(spec: MaskingSpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw replacement ids from the vocabulary minus the special tokens."""
    draws = rng.integers(0, spec.vocab_size, size=n)
    specials = np.asarray(spec.special_ids)
    bad = np.isin(draws, specials)
    while bad.any():  # rare: specials are a handful of ids in thousands
        draws[bad] = rng.integers(0, spec.vocab_size, size=int(bad.sum()))
        bad = np.isin(draws, specials)
    return draws
