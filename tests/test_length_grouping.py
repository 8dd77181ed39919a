"""Length-grouped fine-tuning batches, sorted evaluation batches and the reuse of the last
evaluation for the final predictions."""

import csv
import json

import numpy as np
import pytest
import torch

from conftest import shared
from encoderlab.finetuning import LastEvaluation, finetune
from encoderlab.inference import EvalBatches, TaskModel, predict_outputs
from encoderlab.runtime import Batches, epoch_order, padding_share
from encoderlab.tasks import get_task
from test_finetune import base_cfg, build, quiet


def lengths_of(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 60, size=n)


def test_grouped_order_is_a_function_of_seed_and_epoch_and_covers_every_row_once():
    lengths = lengths_of(1003)
    a = epoch_order(1003, seed=7, epoch=2, lengths=lengths, batch_size=16, window=10)
    b = epoch_order(1003, seed=7, epoch=2, lengths=lengths, batch_size=16, window=10)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == list(range(1003))  # every row once, the short batch included
    other_epoch = epoch_order(1003, seed=7, epoch=3, lengths=lengths, batch_size=16, window=10)
    other_seed = epoch_order(1003, seed=8, epoch=2, lengths=lengths, batch_size=16, window=10)
    assert not np.array_equal(a, other_epoch) and not np.array_equal(a, other_seed)
    # without lengths the order is the plain shuffle it always was
    np.testing.assert_array_equal(
        epoch_order(1003, 7, 2), np.random.default_rng([7, 1, 2]).permutation(1003)
    )


def test_grouped_batches_hold_similar_lengths_in_no_particular_order():
    lengths = lengths_of(3200)
    order = epoch_order(3200, 0, 0, lengths=lengths, batch_size=32, window=100)
    spans = [np.ptp(lengths[order[i : i + 32]]) for i in range(0, 3200, 32)]
    assert max(spans) <= 2  # one window of 100 batches: neighbours in a sorted list
    longest = [lengths[order[i : i + 32]].max() for i in range(0, 3200, 32)]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)
    assert padding_share(order, lengths, 32) < 0.05 < padding_share(np.arange(3200), lengths, 32)


def test_grouped_resume_mid_epoch_and_ranks_deal_the_same_batches():
    """A resumed epoch (Batches from batch k) and the ranks' shares are those of one process."""
    lengths = lengths_of(500)
    order = epoch_order(500, 3, 1, lengths=lengths, batch_size=12, window=5)
    full = list(Batches(order, 12))
    assert list(Batches(order, 12, start=17)) == full[17:]
    ranks = [list(Batches(order, 12, rank=r, world=3)) for r in range(3)]
    for b, rows in enumerate(full):
        dealt = sorted(i for r in range(3) for i in ranks[r][b])
        assert dealt == sorted(rows)


def test_padding_share_drops_on_real_disaster_tweets():
    with open(shared("disaster_tweets", "train.csv"), encoding="utf-8", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    # words + [CLS]/[SEP] as a tokenizer-free stand-in for the token count
    lengths = np.array([min(len(t.split()) + 2, 64) for t in texts])
    n = len(lengths)
    random_share = padding_share(epoch_order(n, 0, 0), lengths, 32)
    grouped = padding_share(epoch_order(n, 0, 0, lengths=lengths, batch_size=32), lengths, 32)
    assert random_share > 0.3 and grouped < 0.03, (random_share, grouped)


def test_sorted_evaluation_batches_return_outputs_in_the_original_order():
    torch.manual_seed(0)
    from encoderlab.config import HeadConfig, ModelConfig
    from encoderlab.model import Encoder

    for kind, task in (("sequence", get_task("classification")), ("token", get_task("tagging"))):
        cfg = ModelConfig(vocab_size=50, d_model=16, n_head=2, d_ff=32, n_layer=1, max_len=32)
        n_labels = 3
        model = TaskModel(Encoder(cfg), task.head(HeadConfig(type="cls"), 16, n_labels)).eval()
        rng = np.random.default_rng(1)
        features = []
        for i in range(23):
            n = int(rng.integers(3, 20))
            feat = {
                "input_ids": rng.integers(5, 50, size=n),
                "token_type_ids": np.zeros(n, dtype=np.int64),
                "label": 0,
                "labels": np.zeros(n, dtype=np.int64),
                "example_index": i,
            }
            features.append(feat)
        device = torch.device("cpu")
        batched = predict_outputs(model, task, features, 0, 4, device)
        batches = EvalBatches.build(task, features, 0, 4)
        assert [len(r) for r in batches.rows] == [4, 4, 4, 4, 4, 3]
        longest = [int(batches.lengths[r].max()) for r in batches.rows]
        assert longest == sorted(longest, reverse=True)
        for feat, out in zip(features, batched, strict=True):
            alone = predict_outputs(model, task, [feat], 0, 1, device)[0]
            assert out.shape == alone.shape, kind
            np.testing.assert_allclose(out, alone, rtol=1e-4, atol=1e-5)


def test_last_evaluation_is_reused_only_for_its_own_step():
    last = LastEvaluation(None, None, [], None, 0, torch.device("cpu"), None)
    assert last.of("step-00000010") is None  # nothing evaluated yet
    seen = []
    last.on_eval = lambda step, metrics: seen.append(step)
    last.evaluated(10, {"valid/acc": 1.0})
    assert last.of("step-00000010") is last and seen == [10]
    assert last.of("step-00000020") is None


@pytest.mark.parametrize("epochs", [1, 3])
def test_final_predictions_reuse_the_last_evaluation_when_it_is_the_best(
    tmp_path, monkeypatch, epochs
):
    """The best checkpoint's valid predictions are evaluated again only when the best is not
    the last evaluation, and are the same either way."""
    import encoderlab.finetuning as ft_module

    real = ft_module.evaluate_examples
    calls = []

    def counting(model, task, examples, *args, **kwargs):
        calls.append(len(examples))
        return real(model, task, examples, *args, **kwargs)

    monkeypatch.setattr(ft_module, "evaluate_examples", counting)
    run, _ = finetune(build(base_cfg(tmp_path, train={"epochs": epochs})), say=quiet)
    evals = [r for r in run.metrics() if r["kind"] == "eval"]
    best_is_last = run.info["best"]["step"] == evals[-1]["step"]
    assert len(calls) == len(evals) + (0 if best_is_last else 1)
    if epochs == 1:
        assert best_is_last  # one evaluation: it is the best
    rows = [
        json.loads(x) for x in (run.path / "predictions" / "valid.jsonl").read_text().splitlines()
    ]
    # the rows written are those of evaluating the best checkpoint afresh
    from encoderlab.inference import load_finetuned

    ft = load_finetuned(run.path)
    valid = ft.task.split(ft.task.read(ft.cfg.task.train, ft.cfg.task), ft.cfg.task, 0)[1]
    metrics, fresh = ft.run_examples(valid)
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in fresh]
    assert run.info["final"]["acc"] == pytest.approx(metrics["acc"])


def test_a_run_saved_before_grouping_resumes_in_its_own_order(tmp_path, monkeypatch):
    """A run whose config.yaml predates train.group_by_length resumes ungrouped: the same
    losses as an uninterrupted ungrouped run."""
    import encoderlab.finetuning as ft_module
    from encoderlab.runs import Run
    from encoderlab.tokenizer import save_tokenizer, train_tokenizer
    from test_finetune import main_code, only_run_named, sentiment_rows

    tok = train_tokenizer([r["text"] for r in sentiment_rows(240, 0)], build({}).tokenizer)
    save_tokenizer(tok, tmp_path / "tok")
    over = {
        "train": {"epochs": 2, "checkpoint_every": 5, "log_every": 1, "group_by_length": False},
        "freeze": "embeddings",
        "tokenizer": {"path": str(tmp_path / "tok")},
    }
    ref, _ = finetune(build(base_cfg(tmp_path, name="ref", **over)), say=quiet)
    real_fit = ft_module.fit

    def crashing_fit(*args, **kwargs):
        step, calls = args[5].step, []

        def boom(model, batch):
            calls.append(1)
            if len(calls) == 8:
                raise RuntimeError("simulated crash")
            return step(model, batch)

        args[5].step = boom
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(ft_module, "fit", crashing_fit)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(build(base_cfg(tmp_path, name="old", **over)), say=quiet)
    monkeypatch.setattr(ft_module, "fit", real_fit)
    old = only_run_named(tmp_path, "old")
    saved = old.path / "config.yaml"
    text = saved.read_text()
    assert "group_by_length: false" in text
    saved.write_text(text.replace("  group_by_length: false\n", ""))
    assert main_code(["finetune", "--resume", old.path]) == 0
    a = [r["train/loss"] for r in ref.metrics() if r["kind"] == "train"]
    b = [r["train/loss"] for r in Run.open(old.path).metrics() if r["kind"] == "train"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
