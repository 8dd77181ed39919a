"""`embedding_init: cooccurrence`: token vectors from the corpus's PPMI matrix, a warm start
that groups tokens by the contexts they occur in, counted on training text only."""

import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli as cli
from encoderlab.data.cooccurrence import cooccurrence_embeddings, count_pairs
from encoderlab.runs import Run
from encoderlab.tokenizer import load_tokenizer, special_ids
from test_pretrain_cli import write_config


class Store:
    """A ShardStore's reading side over in-memory documents (one shard each list)."""

    def __init__(self, *shards: list[list[int]]) -> None:
        self._tokens = [np.array([t for doc in docs for t in doc], np.int64) for docs in shards]
        self._offsets = [np.cumsum([0] + [len(d) for d in docs]) for docs in shards]
        self.shards = [{} for _ in shards]
        self.n_tokens = sum(len(t) for t in self._tokens)

    def tokens(self, i: int) -> np.ndarray:
        return self._tokens[i]

    def offsets(self, i: int) -> np.ndarray:
        return self._offsets[i]


def pairs(store: Store, vocab: int = 10, **kw) -> dict[tuple[int, int], float]:
    keys, weights, _ = count_pairs(store, vocab, **kw)
    return {(int(k) // vocab, int(k) % vocab): float(w) for k, w in zip(keys, weights, strict=True)}


def test_pairs_are_weighted_by_distance_both_ways_within_one_document():
    got = pairs(Store([[1, 2, 3], [4, 5]]), window=2)
    assert got[(1, 2)] == got[(2, 1)] == 1.0 and got[(1, 3)] == 0.5
    assert (3, 4) not in got and (4, 3) not in got  # the next document is not context
    assert got[(4, 5)] == 1.0


def test_specials_and_validation_blocks_make_no_pair():
    store = Store([[1, 2, 3, 4, 5, 6]])
    assert not any(2 in p for p in pairs(store, skip_ids=(2,)))
    held = pairs(store, held_out={0: [(3, 6)]})  # tokens 4, 5, 6 are a validation block
    assert set(held) == {(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)}


def test_a_large_corpus_is_sampled_from_every_shard():
    store = Store([[1, 2] * 50], [[3, 4] * 50])
    keys, _, read = count_pairs(store, 10, max_tokens=20)
    seen = {int(k) // 10 for k in keys}
    assert read == 20 and {1, 2, 3, 4} <= seen


def test_tokens_used_alike_get_similar_vectors():
    rng = np.random.default_rng(0)
    docs = []
    for _ in range(300):  # 1 and 2 both sit between 5 and 6; 3 and 4 between 7 and 8
        a, b = rng.choice([1, 2]), rng.choice([3, 4])
        docs.append([5, int(a), 6, 9, 7, int(b), 8])
    vectors, covered, _ = cooccurrence_embeddings(Store(docs), 10, 4, std=0.02, seed=0)
    assert covered[1:10].all() and not covered[0]  # token 0 never occurs: its row is not set
    cos = torch.nn.functional.cosine_similarity
    same, other = cos(vectors[1], vectors[2], dim=0), cos(vectors[1], vectors[3], dim=0)
    assert same > 0.9 and other < 0.5
    assert vectors[covered].std().item() == pytest.approx(0.02, rel=1e-3)  # the random init's
    again, _, _ = cooccurrence_embeddings(Store(docs), 10, 4, std=0.02, seed=0)
    assert torch.equal(vectors, again)


def test_pretraining_starts_from_the_vectors_and_a_resume_does_not_redo_them(
    tmp_path, corpus_txt, capsys, monkeypatch
):
    import encoderlab.pretraining as pretraining

    started = []  # each run's token embeddings as training begins

    def fit(model, *args, **kwargs):
        started.append(model.encoder.embeddings.tok.weight.detach().clone())
        return real_fit(model, *args, **kwargs)

    real_fit = pretraining.fit
    monkeypatch.setattr(pretraining, "fit", fit)
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg, "--set", "name=plain") == 0
    capsys.readouterr()
    assert cli("pretrain", cfg, "--set", "embedding_init=cooccurrence") == 0
    out = capsys.readouterr().out
    plain, warm = started
    tok = load_tokenizer(next((tmp_path / "runs").glob("plain-*")) / "tokenizer")
    specials = sorted(set(special_ids(tok).values()))
    assert torch.equal(plain[specials], warm[specials])  # [PAD], [MASK], ... keep their rows
    changed = (plain != warm).any(dim=1)
    lines = corpus_txt.read_text().splitlines()
    used = {i for e in tok.encode_batch(lines, add_special_tokens=False) for i in e.ids}
    assert set(changed.nonzero().flatten().tolist()) == used  # pieces never used stay random
    assert warm[changed].std().item() == pytest.approx(0.02, rel=0.05)  # model.init_std
    assert "embedding_init cooccurrence:" in out and "token vectors from the co-occurrence" in out
    run = Run.open(next((tmp_path / "runs").glob("tiny-*")))
    assert yaml.safe_load((run.path / "config.yaml").read_text())["embedding_init"] == (
        "cooccurrence"
    )
    assert cli("pretrain", "--resume", run.path, "--set", "train.max_steps=10") == 0
    assert "embedding_init" not in capsys.readouterr().out


def test_electra_starts_its_shared_embeddings_from_the_vectors(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt], train={"max_steps": 2})
    assert (
        cli("pretrain", cfg, "--set", "objective=electra", "--set", "embedding_init=cooccurrence")
        == 0
    )
    assert "embedding_init cooccurrence:" in capsys.readouterr().out


def test_an_unknown_embedding_init_is_one_line(tmp_path, corpus_txt, capsys):
    cfg = write_config(tmp_path, [corpus_txt])
    assert cli("pretrain", cfg, "--set", "embedding_init=glove") == 2
    err = capsys.readouterr().err
    assert "embedding_init" in err and "cooccurrence" in err and "Traceback" not in err
