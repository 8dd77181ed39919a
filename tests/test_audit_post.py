"""Post-processing audit: given the same logits, predictions are what the field's reference
code makes of them.

* QA: transformers' postprocess_qa_predictions (examples/pytorch/question-answering/utils_qa.py,
  SQuAD v1: no null answer) with BERT's token_is_max_context, except for one documented choice:
  the n_best starts and ends are taken among the tokens that may hold an answer (context
  tokens; starts in their max-context window) rather than among all tokens and then filtered,
  so the chosen span is never worse than the reference's by the start+end logit sum.
* Tagging: transformers' run_ner conventions: the word's label on its first sub-token, -100
  on the rest and on specials, the word's prediction read at its first sub-token; invalid
  BIO predictions (I- after O) are scored raw, as seqeval's default mode does.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from encoderlab.config import TaskConfig, TokenizerConfig
from encoderlab.tasks.qa import QATask
from encoderlab.tasks.tagging import IGNORE, TaggingTask
from encoderlab.tokenizer import train_tokenizer

WORDS = (
    "the tower was built in paris by gustave eiffel for the world fair of 1889 and it "
    "stood as the tallest structure made by people until the chrysler building rose in "
    "new york while the river seine runs past its base toward the sea"
).split()


@pytest.fixture(scope="module")
def tok():
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 30)) for _ in range(200)]
    return train_tokenizer(texts, TokenizerConfig(kind="wordpiece", vocab_size=300))


def _reference_qa(examples, features, outputs, n_best, max_answer_len, eligible_top_k):
    """utils_qa.postprocess_qa_predictions (v1) with BERT's token_is_max_context; offsets
    (start, end) of the best span per example, (-1, -1) for its "empty" answer.
    eligible_top_k: take the top n_best among answer-eligible tokens (encoderlab's choice)."""
    per_example = collections.defaultdict(list)
    for i, f in enumerate(features):
        per_example[f["example_index"]].append(i)
    out = []
    for ei in range(len(examples)):
        prelim = []
        for fi in per_example[ei]:
            f, logits = features[fi], outputs[fi]
            start_logits, end_logits = logits[:, 0], logits[:, 1]
            off = [
                None if o[0] < 0 or o[1] <= o[0] else (int(o[0]), int(o[1])) for o in f["offsets"]
            ]
            max_ctx = {str(k): bool(v) for k, v in enumerate(f["max_context"])}
            if eligible_top_k:
                ok = np.array([o is not None for o in off])
                s_rank = np.where(ok & f["max_context"], start_logits, -np.inf)
                e_rank = np.where(ok, end_logits, -np.inf)
                starts = np.argsort(-s_rank, kind="stable")[:n_best].tolist()
                ends = np.argsort(-e_rank, kind="stable")[:n_best].tolist()
            else:
                starts = np.argsort(start_logits)[-1 : -n_best - 1 : -1].tolist()
                ends = np.argsort(end_logits)[-1 : -n_best - 1 : -1].tolist()
            for s in starts:
                for e in ends:
                    if off[s] is None or off[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_len:
                        continue
                    if not max_ctx.get(str(s), False):
                        continue
                    prelim.append((float(start_logits[s] + end_logits[e]), off[s][0], off[e][1]))
        prelim.sort(key=lambda p: p[0], reverse=True)  # stable: the first found wins a tie
        out.append(prelim[0] if prelim else (0.0, -1, -1))
    return out


def _qa_examples() -> list[dict]:
    rng = np.random.default_rng(1)
    examples = []
    for i in range(12):
        context = " ".join(rng.choice(WORDS, int(rng.integers(20, 140))))
        examples.append(
            {
                "id": str(i),
                "question": " ".join(rng.choice(WORDS, 6)),
                "context": context,
                "answers": [{"text": context.split()[0], "answer_start": 0}],
            }
        )
    return examples


def test_qa_decode_is_the_reference_postprocessing(tok) -> None:
    task = QATask()
    cfg = TaskConfig(
        type="qa", max_len=48, doc_stride=12, max_query_len=8, n_best=5, max_answer_len=6
    )
    examples = _qa_examples()
    features = task.encode(examples, tok, cfg, [])
    windows = collections.Counter(f["example_index"] for f in features)
    assert max(windows.values()) >= 3  # long contexts: several doc_stride windows
    rng = np.random.default_rng(2)
    strict_differs = 0
    for trial in range(30):
        outputs = [rng.normal(size=(len(f["input_ids"]), 2)).astype(np.float32) for f in features]
        if trial % 2:  # a trained model's shape: question tokens low, [CLS] high
            for f, o in zip(features, outputs, strict=True):
                o[f["offsets"][:, 0] < 0] -= 3.0
                o[0] += 3.0
        preds = task.decode(outputs, features, examples, cfg, [])
        ref = _reference_qa(examples, features, outputs, cfg.n_best, cfg.max_answer_len, True)
        strict = _reference_qa(examples, features, outputs, cfg.n_best, cfg.max_answer_len, False)
        for p, (score, a, b), (s_score, s_a, s_b) in zip(preds, ref, strict, strict=True):
            assert (p["start_char"], p["start_char"] + len(p["text"])) == (a, b)
            # the reference's top-k over all tokens can only miss spans, never find better ones
            if (a, b) != (s_a, s_b):
                strict_differs += 1
                assert s_a == -1 or score >= s_score
    assert strict_differs > 0  # the documented difference is exercised


def test_tagging_labels_and_predictions_follow_run_ner(tok) -> None:
    task = TaggingTask()
    cfg = TaskConfig(type="tagging", max_len=20)
    rng = np.random.default_rng(3)
    types = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    examples = []
    for i in range(40):
        words = [
            str(w) + "s" * int(rng.integers(0, 3)) for w in rng.choice(WORDS, rng.integers(1, 25))
        ]
        examples.append(
            {"id": str(i), "line": i, "tokens": words, "tags": list(rng.choice(types, len(words)))}
        )
    labels = task.label_names(examples)
    index = {t: k for k, t in enumerate(labels)}
    features = task.encode(examples, tok, cfg, labels)
    encs = tok.encode_batch(
        [ex["tokens"] for ex in examples], is_pretokenized=True, add_special_tokens=False
    )
    outputs = [
        rng.normal(size=(len(f["input_ids"]), len(labels))).astype(np.float32) for f in features
    ]
    preds = task.decode(outputs, features, examples, cfg, labels)
    assert any(f["n_cut"] for f in features)
    for ex, f, enc, out, pred in zip(examples, features, encs, outputs, preds, strict=True):
        # run_ner's tokenize_and_align_labels (label_all_tokens=False), truncated to max_len
        word_ids = [None, *list(enc.word_ids)[: cfg.max_len - 2], None]
        want, prev = [], None
        for w in word_ids:
            want.append(IGNORE if w is None or w == prev else index[ex["tags"][w]])
            prev = w
        assert f["labels"].tolist() == want
        # run_ner reads predictions where the label is not -100; words cut by max_len are O
        read = [labels[int(out[p].argmax())] for p, lab in enumerate(want) if lab != IGNORE]
        assert pred == read + ["O"] * (len(ex["tokens"]) - len(read))


def test_invalid_bio_predictions_are_scored_raw_as_seqeval() -> None:
    seqeval = pytest.importorskip("seqeval.metrics")
    from seqeval.scheme import IOB2

    task = TaggingTask()
    rng = np.random.default_rng(4)
    types = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    examples, preds = [], []
    for i in range(200):
        n = int(rng.integers(1, 12))
        gold = [str(t) for t in rng.choice(types, n)]
        # a gold file's I- starts are read as B- (conlleval's reading), as the reader does
        gold = [
            ("B-" + t[2:]) if t.startswith("I-") and (k == 0 or gold[k - 1][2:] != t[2:]) else t
            for k, t in enumerate(gold)
        ]
        examples.append({"id": str(i), "tokens": ["w"] * n, "tags": gold})
        preds.append([str(t) for t in rng.choice(types, n)])
    assert any(p[0].startswith("I-") for p in preds)  # invalid BIO predictions are present
    m = task.metrics(preds, examples, TaskConfig(type="tagging"), types)
    gold = [ex["tags"] for ex in examples]
    assert m["f1"] == pytest.approx(seqeval.f1_score(gold, preds))
    assert m["f1_strict"] == pytest.approx(
        seqeval.f1_score(gold, preds, mode="strict", scheme=IOB2)
    )
