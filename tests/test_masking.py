import numpy as np

from encoderlab.data.masking import IGNORE_INDEX, MaskingSpec, mask_batch, mask_example

SPECIALS = (0, 1, 2, 3, 4)


def spec(**kw):
    return MaskingSpec(mask_id=4, vocab_size=1000, special_ids=SPECIALS, **kw)


def sample(n=128, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 1000, size=n)
    ids[0], ids[-1] = 2, 3  # [CLS] ... [SEP]
    ids[-10:-1] = 0  # padding never masked
    return ids


def test_rate_and_80_10_10_split():
    s = spec(seed=1)
    chosen = replaced_mask = replaced_random = kept = candidates = 0
    for i in range(400):
        ids = sample(seed=i)
        out, labels = mask_example(ids, s, i, 0)
        sel = labels != IGNORE_INDEX
        # floor(rate x candidates), or one more with the leftover fraction's probability: the
        # mean is the rate (rounding gave every row 17 of 117, 14.5 %)
        exact = 0.15 * np.isin(ids, SPECIALS, invert=True).sum()
        assert sel.sum() in (np.floor(exact), np.floor(exact) + 1)
        candidates += np.isin(ids, SPECIALS, invert=True).sum()
        assert not sel[np.isin(ids, SPECIALS)].any(), "special/pad tokens must never be masked"
        assert (labels[sel] == ids[sel]).all()
        assert (out[~sel] == ids[~sel]).all()
        chosen += sel.sum()
        replaced_mask += (out[sel] == 4).sum()
        kept += (out[sel] == ids[sel]).sum()
        replaced_random += ((out[sel] != 4) & (out[sel] != ids[sel])).sum()
        assert not np.isin(out[sel & (out != 4)], SPECIALS).any()
    assert abs(chosen / candidates - 0.15) < 0.001
    assert abs(replaced_mask / chosen - 0.8) < 0.02
    assert abs(replaced_random / chosen - 0.1) < 0.02
    assert abs(kept / chosen - 0.1) < 0.02


def test_configurable_split():
    s = spec(mask_token_prob=1.0, random_token_prob=0.0, rate=0.3)
    out, labels = mask_example(sample(), s, 0, 0)
    sel = labels != IGNORE_INDEX
    assert (out[sel] == 4).all()


def test_static_masks_repeat_every_epoch_dynamic_ones_do_not():
    ids = sample()
    st, dy = spec(dynamic=False, seed=3), spec(dynamic=True, seed=3)
    a = mask_example(ids, st, 5, 0)[1]
    b = mask_example(ids, st, 5, 1)[1]
    assert (a == b).all()
    c = mask_example(ids, dy, 5, 0)[1]
    d = mask_example(ids, dy, 5, 1)[1]
    assert (c != d).any()
    # reproducible from the seed alone
    assert (mask_example(ids, dy, 5, 1)[1] == d).all()
    other = spec(dynamic=False, seed=4)
    assert (mask_example(ids, other, 5, 0)[1] != a).any()


def test_all_special_sequence_masks_nothing():
    s = spec()
    out, labels = mask_example(np.array([2, 3, 0, 0]), s, 0, 0)
    assert (labels == IGNORE_INDEX).all() and (out == [2, 3, 0, 0]).all()


def batch_of(n=32, width=128, seed=0):
    rows = [sample(n=width - 7 * (i % 5), seed=seed + i) for i in range(n)]  # ragged lengths
    lengths = np.array([len(r) for r in rows])
    ids = np.zeros((n, width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    return ids, lengths, rows


def test_a_batch_is_masked_as_its_examples_are_one_by_one_in_any_order():
    s = spec(seed=7)
    ids, lengths, rows = batch_of()
    index = np.arange(100, 132)
    out, labels = mask_batch(ids, lengths, index, 2, s)
    for r, row in enumerate(rows):
        one_out, one_labels = mask_example(row, s, int(index[r]), 2)
        assert (one_out == out[r, : len(row)]).all() and (one_labels == labels[r, : len(row)]).all()
        assert (labels[r, len(row) :] == IGNORE_INDEX).all(), "padding is never chosen"
    flip = np.arange(32)[::-1]  # another batch order (another sampler, worker, DDP rank)
    out2, labels2 = mask_batch(ids[flip], lengths[flip], index[flip], 2, s)
    assert (out2 == out[flip]).all() and (labels2 == labels[flip]).all()
    again = mask_batch(ids, lengths, index, 2, s)  # deterministic per (seed, epoch, example)
    assert (again[0] == out).all() and (again[1] == labels).all()
    other_epoch = mask_batch(ids, lengths, index, 3, s)[1]
    other_seed = mask_batch(ids, lengths, index, 2, spec(seed=8))[1]
    assert (other_epoch != labels).any() and (other_seed != labels).any()


def test_batch_masking_statistics():
    """Over many batches: the count per row (floor or ceiling of rate x candidates, the rate
    on average), uniform positions, 80/10/10, and random replacements spread over the
    non-special vocabulary."""
    s = spec(seed=11)
    hits = np.zeros(128)
    replaced = []
    n_chosen = n_mask = n_keep = n_candidates = 0
    for b in range(40):
        ids, lengths, rows = batch_of(seed=1000 * b)
        out, labels = mask_batch(ids, lengths, np.arange(32) + 32 * b, 0, s)
        sel = labels != IGNORE_INDEX
        for r, row in enumerate(rows):
            candidates = np.isin(row, SPECIALS, invert=True).sum()
            exact = 0.15 * candidates
            assert sel[r].sum() in (max(1, np.floor(exact)), max(1, np.floor(exact) + 1))
            n_candidates += candidates
        assert not (sel & np.isin(ids, SPECIALS)).any()
        hits += sel.sum(0)
        n_chosen += sel.sum()
        n_mask += (out[sel] == 4).sum()
        n_keep += (out[sel] == ids[sel]).sum()
        rand = sel & (out != 4) & (out != ids)
        replaced.extend(out[rand].tolist())
    assert abs(n_chosen / n_candidates - 0.15) < 0.003
    assert abs(n_mask / n_chosen - 0.8) < 0.02 and abs(n_keep / n_chosen - 0.1) < 0.02
    assert abs(len(replaced) / n_chosen - 0.1) < 0.02
    assert min(replaced) >= 5 and max(replaced) < 1000
    assert abs(np.mean(replaced) - 502) < 40  # uniform over 5..999
    inner = hits[1:80]  # positions every row has as real, non-special tokens
    assert inner.std() / inner.mean() < 0.2, "chosen positions are spread evenly"


def test_each_visit_of_a_repeated_example_gets_its_own_mask(tmp_path):
    """A weighted mix repeats a small source's blocks within an epoch; every copy was keyed
    by its block alone, so all its visits had one mask (the epoch's 16 repeats alike)."""
    from encoderlab.config import CorpusSource, DataConfig, TokenizerConfig
    from encoderlab.data.tokens import build_mlm_datasets
    from encoderlab.tokenizer import train_tokenizer

    words = "river city model train data small large quick music film story night".split()
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(words, 12)) for _ in range(300)]
    (tmp_path / "big.txt").write_text("\n".join(lines[:280]) + "\n")
    (tmp_path / "small.txt").write_text("\n".join(lines[280:]) + "\n")
    tok = train_tokenizer(lines, TokenizerConfig(vocab_size=60))
    sources = [
        CorpusSource(name=n, files=[str(tmp_path / f"{n}.txt")], weight=1) for n in ("big", "small")
    ]
    data = DataConfig(sources=sources, cache_dir=str(tmp_path / "c"), block_len=16, valid_ratio=0.0)
    train, _, _ = build_mlm_datasets(data, tok, seed=0, log=lambda m: None)
    values, counts = np.unique(train.selection, return_counts=True)
    block = values[np.argmax(counts)]
    visits = [int(p) for p in np.flatnonzero(train.selection == block)]
    assert len(visits) >= 4
    masks = {e["labels"].tobytes() for e in train.__getitems__(visits)}
    assert len(masks) > len(visits) // 2
    # the same position masks alike one by one and in a batch (exact resume)
    first = train[visits[1]]["labels"]
    assert (train.__getitems__(visits)[1]["labels"] == first).all()
