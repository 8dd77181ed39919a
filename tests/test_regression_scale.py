"""Regression scores far from 0 (prices, ratings out of 1,000): the model learns standardised
scores and predictions come back in the file's units, also through export. Before 2026-12-03
the head learned the raw scores: an output that starts near 0 and moves by about lr per step,
so targets of 1,000-1,400 ended at a constant near 30 (Pearson 0.45, where the same data
scaled to 0-4 reached 0.998)."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import crashing_fit, run_cli
from encoderlab.config import FinetuneConfig
from encoderlab.finetuning import finetune
from encoderlab.inference import load_finetuned
from encoderlab.tasks import register
from encoderlab.tasks.regression import RegressionTask

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def scored_csv(path: Path, n: int, seed: int) -> Path:
    """Texts whose score is 1,000 + 100 x (how many of its words are 'alpha')."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "score"])
        for i in range(n):
            words = [rng.choice(WORDS[1:]) for _ in range(6)]
            k = rng.randint(0, 4)
            for j in rng.sample(range(6), k):
                words[j] = "alpha"
            w.writerow([i, " ".join(words), 1000 + 100 * k])
    return path


def config(tmp_path: Path, **task) -> FinetuneConfig:
    return FinetuneConfig.model_validate(
        {
            "name": "scores",
            "runs_dir": str(tmp_path / "runs"),
            "task": {
                "type": "regression",
                "train": str(scored_csv(tmp_path / "train.csv", 240, 0)),
                "label_column": "score",
                "max_len": 16,
            }
            | task,
            "tokenizer": {"kind": "wordpiece", "vocab_size": 60, "min_frequency": 1},
            "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 16},
            "head": {"type": "pooler"},
            "train": {"batch_size": 16, "lr": 3e-3, "epochs": 8, "warmup_ratio": 0.0},
        }
    )


def test_scores_far_from_zero_are_learned_and_predicted_in_their_units(tmp_path):
    run, _ = finetune(config(tmp_path), say=lambda m: None)
    saved = yaml.safe_load((run.path / "config.yaml").read_text())["task"]
    gold = np.array([1000 + 100 * k for k in range(5)])
    assert 1150 < saved["target_mean"] < 1250 and 120 < saved["target_std"] < 160
    final = run.info["final"]
    assert final["pearson"] > 0.9, final
    rows = load_finetuned(run.path).predict(["alpha alpha beta gamma delta eta", "beta " * 6])
    two, none = (r["prediction"] for r in rows)
    assert abs(two - 1200) < 60 and abs(none - 1000) < 60, (two, none)
    assert gold.min() - 100 < none < two < gold.max() + 100
    # the raw scores, as runs before learned them (target_mean 0, target_std 1): a constant
    raw, _ = finetune(config(tmp_path, target_mean=0.0, target_std=1.0), say=lambda m: None)
    raw_rows = load_finetuned(raw.path).predict(["alpha alpha beta gamma delta eta"])
    assert raw_rows[0]["prediction"] < 500


@register
class PriceTask(RegressionTask):
    """A plugin's task built on regression (its scale too)."""

    type = "test-price"


@pytest.mark.parametrize("task_type", ["regression", "test-price"])
def test_a_runs_exports_give_the_score_in_its_units(tmp_path, task_type):
    """The exported head is the run's head with the scale folded in: transformers and
    onnxruntime give the number `predict` gives, not its z-score (a plugin's subclass of
    regression was exported unscaled)."""
    transformers = pytest.importorskip("transformers")
    ort = pytest.importorskip("onnxruntime")
    cfg = config(tmp_path, type=task_type)
    cfg.train.epochs = 1
    run, _ = finetune(cfg, say=lambda m: None)
    text = "alpha beta alpha gamma delta eta"
    (row,) = load_finetuned(run.path).predict([text])
    assert (
        run_cli("export", run.path, "--to-hf", tmp_path / "hf", "--to-onnx", tmp_path / "m.onnx")
        == 0
    )
    pipe = transformers.pipeline("text-classification", model=str(tmp_path / "hf"))
    assert pipe(text)[0]["score"] == pytest.approx(row["prediction"], rel=1e-4)
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    enc = tok([text], return_tensors="np")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    (logits,) = session.run(["logits"], {k: enc[k].astype(np.int64) for k in names})
    assert float(logits[0, 0]) == pytest.approx(row["prediction"], rel=1e-4)
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    assert meta["task"] == task_type


def test_a_run_made_before_the_scale_resumes_without_one(tmp_path, monkeypatch):
    """A resume read the task data afresh and fitted a scale that its config.yaml (from before
    2026-12-03) never recorded: the run went on learning z-scores while predict and evaluate
    read its outputs as raw scores (mse 1.45e6 against 45)."""
    import encoderlab.finetuning as ft_module
    from encoderlab import train as train_module

    real_fit = train_module.fit
    cfg = config(tmp_path)
    cfg.train.epochs, cfg.train.checkpoint_every = 2, 5
    monkeypatch.setattr(ft_module, "fit", crashing_fit(12))
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(cfg, say=lambda m: None)
    monkeypatch.setattr(ft_module, "fit", real_fit)
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    del saved["task"]["target_mean"], saved["task"]["target_std"]  # as a run made before
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    assert run_cli("finetune", "--resume", run_dir) == 0
    assert "target_mean" not in (run_dir / "config.yaml").read_text()
    rows = [
        json.loads(x)
        for x in (run_dir / "predictions" / "valid.jsonl").read_text().split("\n")
        if x
    ]
    again = load_finetuned(run_dir).predict([r["input"] for r in rows[:5]])
    assert [round(r["prediction"], 3) for r in rows[:5]] == [
        round(a["prediction"], 3) for a in again
    ]
