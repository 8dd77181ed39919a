"""The task registry is the only place task types live: a toy task type (regression on a number
column), defined in one module written by this test, fine-tunes, evaluates, predicts and
reports through the same commands users run, with no other file touched."""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from encoderlab.config import FinetuneConfig
from encoderlab.errors import UserError
from encoderlab.tasks import registry

TOY_MODULE = '''
"""Regression on a number column: [CLS] text [SEP] -> one value, scored by mean absolute error."""

import csv
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoderlab.errors import UserError
from encoderlab.heads import sequence_head
from encoderlab.tasks import register
from encoderlab.tasks.base import Examples, Features, TaskBase, base_collate
from encoderlab.tokenizer import special_ids


@register
class ToyRegressionTask(TaskBase):
    type = "toy_regression"
    primary_metric = "mae"
    primary_mode = "min"
    reported_metrics = ("mae",)

    def read(self, path, cfg, labelled=None):
        if not Path(path).is_file():
            raise UserError(f"{path}: file not found")
        out = Examples()
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                raw = row.get(cfg.label_column)
                value = float(raw) if raw not in (None, "") else None
                out.append({"id": row["id"], "line": reader.line_num, "text": row["text"],
                            "label": value})
        if any(ex["label"] is None for ex in out) and any(ex["label"] is not None for ex in out):
            out.warnings.append(f"{path}: some rows have no value")
        return out

    def split(self, examples, cfg, seed):
        k = max(1, int(len(examples) * cfg.valid_ratio))
        return list(examples[k:]), list(examples[:k])

    def label_names(self, examples):
        return []

    def encode(self, examples, tok, cfg, labels):
        ids = special_ids(tok)
        feats = Features()
        for i, ex in enumerate(examples):
            body = tok.encode(ex["text"], add_special_tokens=False).ids[: cfg.max_len - 2]
            input_ids = np.asarray([ids["cls"], *body, ids["sep"]], dtype=np.int64)
            feats.append({"input_ids": input_ids, "token_type_ids": np.zeros_like(input_ids),
                          "example_index": i, "value": ex["label"]})
        return feats

    def collate(self, features, pad_id):
        batch = base_collate(features, pad_id)
        batch["values"] = torch.tensor(
            [f["value"] if f["value"] is not None else float("nan") for f in features]
        )
        return batch

    def head(self, cfg, d_model, n_labels):
        return sequence_head(cfg, d_model, 1)

    def loss(self, logits, batch):
        values = batch["values"]
        keep = ~torch.isnan(values)
        pred = logits[:, 0].float()
        err = (pred - torch.nan_to_num(values)) ** 2 * keep
        n = keep.sum()
        loss = err.sum() / n.clamp(min=1)
        return loss, {"loss_sum": err.sum().detach(), "n": n.float()}

    def train_metrics(self, c):
        return {"loss": c.get("loss_sum", 0.0) / max(c.get("n", 0.0), 1.0)}

    def decode(self, outputs, features, examples, cfg, labels):
        preds = [0.0] * len(examples)
        for out, feat in zip(outputs, features):
            preds[feat["example_index"]] = float(out[0])
        return preds

    def metrics(self, predictions, examples, cfg, labels):
        errs = [abs(p - ex["label"]) for p, ex in zip(predictions, examples)
                if ex["label"] is not None]
        return {"mae": float(np.mean(errs)), "extra": {"examples": len(errs)}} if errs else {}

    def prediction_rows(self, predictions, examples, labels):
        return [{"id": ex["id"], "input": ex["text"], "gold": ex["label"],
                 "prediction": round(p, 4), "correct": None}
                for ex, p in zip(examples, predictions)]

    def example_from_text(self, text, text_pair, i):
        return {"id": str(i), "line": 0, "text": text, "label": None}
'''


@pytest.fixture
def toy_task(tmp_path: Path):
    """Import the toy task's module (registering it), and unregister it afterwards."""
    path = tmp_path / "toy_regression_task.py"
    path.write_text(TOY_MODULE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("toy_regression_task", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["toy_regression_task"] = module
    spec.loader.exec_module(module)
    yield "toy_regression"
    registry._TASKS.pop("toy_regression", None)
    sys.modules.pop("toy_regression_task", None)


def number_rows(n: int, seed: int) -> list[dict]:
    """The value is how many times "up" appears among filler words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.randint(0, 4)
        words = ["up"] * k + [rng.choice("the a cat sat on mat".split()) for _ in range(3)]
        rng.shuffle(words)
        rows.append({"id": f"r{seed}-{i}", "text": " ".join(words), "value": k})
    return rows


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def test_unknown_task_type_names_the_registered_ones() -> None:
    with pytest.raises(
        UserError,
        match="registered types: classification, multilabel, pair, pos, qa, regression, tagging",
    ):
        from encoderlab.config import build

        build(FinetuneConfig, {"task": {"type": "toy_regression"}}, "x.yaml")


def test_toy_task_finetunes_evaluates_predicts_and_reports(
    tmp_path: Path, toy_task: str, capsys: pytest.CaptureFixture
) -> None:
    assert toy_task in registry.task_names()
    train = write_csv(tmp_path / "train.csv", number_rows(120, 0), ["id", "text", "value"])
    holdout = write_csv(tmp_path / "holdout.csv", number_rows(20, 1), ["id", "text", "value"])
    unlabelled = write_csv(tmp_path / "new.csv", number_rows(7, 2), ["id", "text"])
    runs = tmp_path / "runs"
    cfg = {
        "name": "toy",
        "runs_dir": str(runs),
        "task": {"type": toy_task, "train": str(train), "label_column": "value", "max_len": 16},
        "tokenizer": {"kind": "wordpiece", "vocab_size": 60},
        "model": {"d_model": 16, "n_head": 2, "d_ff": 32, "n_layer": 1, "max_len": 16},
        "train": {"batch_size": 16, "lr": 3e-3, "max_steps": 12, "eval_every": 6},
    }
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(cfg), encoding="utf-8")

    assert run_cli("finetune", config) == 0
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["kind"] == "finetune/toy_regression" and info["task"] == "toy_regression"
    assert info["best"]["metric"] == "valid/mae"  # the task's primary metric
    evals = [
        json.loads(x)["valid/mae"]
        for x in (run_dir / "metrics.jsonl").read_text().splitlines()
        if '"valid/mae"' in x
    ]
    assert info["best"]["value"] == pytest.approx(min(evals))  # mode min: lower is better
    valid = json.loads((run_dir / "eval" / "valid.json").read_text())
    assert valid["mae"] >= 0 and valid["extra"]["examples"] == info["valid_examples_raw"]
    assert not (run_dir / "submission.csv").exists()  # the toy task declares no submission

    assert run_cli("evaluate", run_dir, "--data", holdout) == 0
    ev = json.loads((run_dir / "eval" / "file-holdout.json").read_text())
    assert ev["extra"]["examples"] == 20 and ev["mae"] >= 0
    rows = (run_dir / "predictions" / "file-holdout.jsonl").read_text().splitlines()
    assert len(rows) == 20 and isinstance(json.loads(rows[0])["prediction"], float)

    out = tmp_path / "pred.jsonl"
    assert run_cli("predict", run_dir, "--input", unlabelled, "--output", out) == 0
    preds = [json.loads(x) for x in out.read_text().splitlines()]
    assert [p["id"] for p in preds] == [f"r2-{i}" for i in range(7)]
    assert all(p["gold"] is None for p in preds)
    assert run_cli("predict", run_dir, "--text", "up up the cat") == 0
    # it writes no table: a .json refusal names the kind it writes, not a table
    capsys.readouterr()
    assert run_cli("predict", run_dir, "--input", unlabelled, "--output", tmp_path / "p.json") == 2
    err = capsys.readouterr().err
    assert "give a .jsonl file" in err and ".csv" not in err, err
    assert not (tmp_path / "p.json").exists()

    from encoderlab.inference import load_finetuned

    ft = load_finetuned(run_dir)  # loaded once, predicts many times
    (one,) = ft.predict(["up up up cat"])
    assert one["input"] == "up up up cat" and isinstance(one["prediction"], float)

    assert run_cli("report", runs, "--out", tmp_path / "report") == 0
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert run_dir.name in md and "toy_regression" in md


def test_a_task_type_built_on_tagging_takes_tagging_options() -> None:
    """Options and rules went by the type's name: a plugin subclassing TaggingTask was
    refused task.tag_column and task.tag_scheme ("a tagging option and does nothing")."""
    from encoderlab.config import TaskConfig
    from encoderlab.tasks.registry import register, task_kind
    from encoderlab.tasks.tagging import TaggingTask

    @register
    class MedicalNer(TaggingTask):
        type = "medical_ner"

    try:
        assert task_kind("medical_ner") == "tagging" and task_kind("pos") == "pos"
        cfg = TaskConfig(type="medical_ner", tag_column=2, tag_scheme="iob1")
        assert (cfg.tag_column, cfg.tag_scheme) == (2, "iob1")
        with pytest.raises(ValueError, match="truncation=head_tail is for classification"):
            TaskConfig(type="medical_ner", truncation="head_tail")
        with pytest.raises(ValueError, match="tag_column=2 is a tagging/pos option"):
            TaskConfig(type="classification", tag_column=2)
        # fine-tuning defaults, --set decisions and reports follow the class too
        from encoderlab.config import FinetuneConfig
        from encoderlab.finetuning import resolve_defaults
        from encoderlab.tasks.multilabel import MultiLabelTask
        from encoderlab.tasks.reading import reading_config

        def fitted(kind: str) -> tuple:
            cfg = resolve_defaults(FinetuneConfig(task={"type": kind}), say=lambda _: None)
            return cfg.train.lr, cfg.model.position

        assert fitted("medical_ner") == fitted("tagging") != fitted("classification")

        @register
        class Topics(MultiLabelTask):
            type = "topics"

        topics = TaskConfig(type="topics")
        assert reading_config(topics, ["task.threshold=0.4"]).threshold == 0.4
    finally:
        registry._TASKS.pop("medical_ner", None)
        registry._TASKS.pop("topics", None)
