"""A finished fine-tuning run in use: load it once, then predict and evaluate many times.

`predict`, `evaluate`, `serve` and the Python API all go through `Finetuned`:

    ft = load_finetuned("runs/my-run")   # tokenizer, task, model built once
    ft.predict(["first text", "second"]) # cheap per call: encode, forward, decode
    ft.predict_scored(["a", "b"])        # [{"label", "score", "scores"}, ...]: serving's rows

This module depends on the model, the tasks and `runtime` (device, precision, loaders), never
on the trainer, so serving does not pull in training code. Fine-tuning reuses its
evaluation (`evaluate_examples`) for validation and for the final predictions files.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import re
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import FinetuneConfig, TaskConfig, load_config
from encoderlab.data.tables import iter_rows, table_format
from encoderlab.errors import UserError
from encoderlab.hf import run_encoder
from encoderlab.model import Encoder, Queries, without_init
from encoderlab.runs import (
    Run,
    atomic_write,
    check_tokenizer_fits,
    finite,
    load_run_weights,
    run_checkpoint,
    run_labels,
    run_model_config,
)
from encoderlab.runtime import autocast, autocast_dtype, bar_columns, resolve_device, to_device
from encoderlab.tasks import get_task
from encoderlab.tasks.base import (
    Example,
    Feature,
    Task,
    model_inputs,
    read_to_predict,
    show_messages,
    whole_unicode,
)
from encoderlab.tasks.pos import PosTask
from encoderlab.tasks.reading import reading_config
from encoderlab.tasks.records import header_for, split_for_role
from encoderlab.tasks.tagging import (
    CONLL_OUTPUTS,
    ENTITY_FORMATS,
    TaggingTask,
    check_conll_words,
    conll_text,
    entities,
    entity_tags,
    split_words,
    word_spans,
)
from encoderlab.tokenizer import load_tokenizer, special_ids


class TaskModel(nn.Module):
    """backbone(ids) -> hidden states -> head -> logits. Checkpoint keys: backbone.*, head.*"""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if getattr(self.head, "first_token_only", False) and isinstance(self.backbone, Encoder):
            # a [CLS] head: the last block asks its query and runs its per-position part
            # (out projection, feed-forward) for the first token alone (~90 % of a block);
            # the head sees (B,1,d), its h[:, 0] the same vectors
            first = Queries.first(input_ids)
            hidden = self.backbone(input_ids, attention_mask, token_type_ids, first)
            return self.head(hidden[:, None], attention_mask)
        hidden = self.backbone(input_ids, attention_mask, token_type_ids)
        return self.head(hidden, attention_mask)


class FeatureSet(torch.utils.data.Dataset):
    """Encoded features; `lengths` (tokens per feature) lets the trainer group rows by length."""

    def __init__(self, features: list[Feature]) -> None:
        self.features = features
        self.lengths = feature_lengths(features)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> Feature:
        return self.features[i]


# ---------------------------------------------------------------------------------------------
# Inference


def feature_lengths(features: list[Feature]) -> np.ndarray:
    """Tokens per feature (its unpadded length)."""
    return np.fromiter((len(f["input_ids"]) for f in features), np.int64, count=len(features))


@dataclass
class EvalBatches:
    """A fixed set's collated batches, longest rows first, built once and reused.

    Sorting by length leaves almost no padding; validation runs at every evaluation, so its
    batches are collated (and pinned, for a GPU) once. `rows[i]` are the features of batch i.
    """

    batches: list[dict[str, torch.Tensor]]
    rows: list[np.ndarray]
    lengths: np.ndarray

    @staticmethod
    def order(features: list[Feature], batch_size: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """(lengths, the features of each batch): longest rows first."""
        lengths = feature_lengths(features)
        order = np.argsort(-lengths, kind="stable")
        return lengths, [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    @classmethod
    def build(
        cls, task: Task, features: list[Feature], pad_id: int, batch_size: int, pin: bool = False
    ) -> EvalBatches:
        lengths, rows = cls.order(features, batch_size)
        batches = []
        for idx in rows:
            batch = task.collate([features[i] for i in idx], pad_id)
            if pin:
                batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
            batches.append(batch)
        return cls(batches, rows, lengths)


@torch.no_grad()
def predict_outputs(
    model: nn.Module,
    task: Task,
    features: list[Feature],
    pad_id: int,
    batch_size: int,
    device: torch.device,
    amp: torch.dtype | None = None,
    batches: EvalBatches | None = None,
    loss_counts: dict[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> list[np.ndarray]:
    """Logits per feature, in the order of `features`; token-level ones cut to the feature's
    real length. `batches`: the features' prebuilt batches (else built here). `loss_counts`:
    the task's loss counts of every batch are summed into it, from the same forward pass (a
    validation loss without a second pass over the set). `progress`: a bar on a terminal."""
    was_training = model.training
    model.eval()
    if batches is None:  # collated one batch at a time: a big file's padded set is not held
        lengths, rows = EvalBatches.order(features, batch_size)
        collated = (task.collate([features[i] for i in idx], pad_id) for idx in rows)
    else:
        lengths, rows, collated = batches.lengths, batches.rows, iter(batches.batches)
    outputs: list[np.ndarray] = [np.empty(0)] * len(features)
    bar = _RowsBar(len(features) if progress else 0)
    try:
        for batch, idx in zip(collated, rows, strict=True):
            bar.advance(len(idx))
            batch = to_device(batch, device)
            with autocast(device, amp):
                logits = model(*model_inputs(batch))
            if loss_counts is not None:  # summed on the device: read once, by the caller
                for k, v in task.loss(logits, batch)[1].items():
                    v = v.detach().float()
                    loss_counts[k] = loss_counts[k] + v if k in loss_counts else v
            logits = logits.float().cpu().numpy()
            for row, i in zip(logits, idx, strict=True):
                outputs[i] = row[: lengths[i]] if task.token_level else row
    finally:
        bar.close()
    model.train(was_training)
    return outputs


class _RowsBar:
    """Rows predicted, rows/s and ETA on a terminal (a file of 100k rows takes minutes on a
    CPU); silent otherwise. A step behind: a batch counts once it is under way."""

    def __init__(self, total: int, label: str = "predict", unit: str = "rows") -> None:
        self.bar = None
        self.unit = unit
        if not total or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(*bar_columns(label), console=Console(stderr=True), transient=True)
        self.task = self.bar.add_task(label, total=total, info="")
        self.t0 = time.perf_counter()
        self.done = 0
        self.bar.start()

    def advance(self, rows: int) -> None:
        if self.bar is None:
            return
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(
            self.task, completed=self.done, info=f"{rate:,.0f} {self.unit}/s" if self.done else ""
        )
        self.done += rows

    def close(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done)
            self.bar.stop()


def evaluate_examples(
    model: nn.Module,
    task: Task,
    examples: list[Example],
    features: list[Feature],
    cfg: FinetuneConfig,
    labels: list[str],
    pad_id: int,
    device: torch.device,
    batches: EvalBatches | None = None,
    with_loss: bool = False,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(metrics incl. "extra", prediction rows) for a labelled or unlabelled set.
    `batches`: the features' prebuilt batches, for a set evaluated again and again.
    `with_loss`: add the training objective's mean loss ("loss") on a labelled set.
    `progress`: a progress bar on a terminal (predict and evaluate of whole files)."""
    amp = autocast_dtype(cfg.train.precision, device)
    counts: dict[str, torch.Tensor] | None = {} if with_loss else None
    outputs = predict_outputs(
        model, task, features, pad_id, cfg.train.batch_size, device, amp, batches, counts, progress
    )
    preds = task.decode(outputs, features, examples, cfg.task, labels)
    labelled = any(task.has_gold(ex) for ex in examples)
    metrics = task.metrics(preds, examples, cfg.task, labels) if labelled else {}
    if counts and labelled:
        loss = task.train_metrics({k: float(v) for k, v in counts.items()})["loss"]
        metrics = {"loss": loss, **metrics}
    return metrics, with_truncation(task.prediction_rows(preds, examples, labels), features)


def with_truncation(rows: list[dict[str, Any]], features: list[Feature]) -> list[dict[str, Any]]:
    """Each example's row, told what its encoding cut (truncated_words: tagging,
    truncated_question_tokens: qa), so a reader sees which predictions saw less of the input.
    A QA example's windows all say the same."""
    for f in features:
        rows[f["example_index"]].update(f.get("truncated") or {})
    return rows


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and k != "extra"}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(finite(r), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:  # no temp file left behind (a full disk, a kill)
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str, newline: str | None = None) -> None:
    """`text` to `path` (its folder made) through a temp file, so a kill never leaves half a
    file there (runs.atomic_write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, newline)


def _given(overrides: list[str] | None) -> set[str]:
    """The task keys `--set task.KEY=...` gave for this file."""
    return {o.split("=", 1)[0].strip().removeprefix("task.") for o in overrides or []}


def write_submission(path: Path, table: list[list[Any]], delimiter: str = ",") -> None:
    """A task's submission table (header row first) as CSV, e.g. Kaggle's id,target
    (`delimiter="\t"`: a .tsv)."""
    text = io.StringIO(newline="")
    csv.writer(text, delimiter=delimiter).writerows(table)
    write_text_atomic(path, text.getvalue(), newline="")  # whole or not at all, \r\n as written


# --output suffixes predict does not write: JSON lines under such a name would be read wrong
_NOT_WRITTEN = (".parquet", ".xlsx", ".xls", ".gz", ".bz2", ".xz", ".zst", ".zip")


def check_output_writable(out: Path) -> None:
    """--output where this process cannot write (a read-only run, another user's folder): one
    line before the model runs over a big file, not an OSError after it."""
    folder = next((p for p in out.absolute().parents if p.exists()), None)
    if out.exists() and not os.access(out, os.W_OK):
        raise UserError(f"--output {out}: read-only here; give a file you can write")
    if folder is not None and not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--output {out}: cannot write in {folder}; give a folder you can write")


def output_kind(output: str) -> str:
    """What `predict --output FILE` writes, by the name's suffix in any case: "csv" or "tsv"
    (the task's submission table), "conll" (.conll/.iob/.bio) or "conllu" (a tagging run's
    words and tags), else "jsonl" (JSON lines). A suffix that names a format
    it does not write (.json, .parquet, a compressed file) is a one-line error."""
    suffix = Path(output).suffix.lower()
    if suffix in (".csv", ".tsv", ".conllu", ".json"):  # .json: a QA run's {id: answer}
        return suffix[1:]
    if suffix in CONLL_OUTPUTS:
        return "conll"
    if suffix in _NOT_WRITTEN:
        raise UserError(
            f"--output {output}: predict does not write {suffix} files; give a .csv or .tsv "
            "file (the id,label table), a .jsonl file (a JSON object per line), for a "
            "tagging run a .conll or .conllu file, or for a QA run a .json file"
        )
    return "jsonl"


# ---------------------------------------------------------------------------------------------
# Using a finished run: evaluate on another file, predict


@dataclass
class Finetuned:
    """A fine-tuning run loaded for use: built once, then `predict`/`evaluate` many times."""

    run: Run
    cfg: FinetuneConfig
    task: Task
    tokenizer: Tokenizer
    labels: list[str]
    model: TaskModel
    device: torch.device
    pad_id: int

    def run_examples(
        self,
        examples: list[Example],
        say: Callable[[str], None] | None = None,
        with_loss: bool = False,
        progress: bool = False,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(metrics, prediction rows) for examples in the task's format. `say` hears what
        encoding cut (words past task.max_len, long questions): otherwise those predictions
        would be silently worse. `with_loss`: add the mean loss, as the run's eval/valid.json.
        `progress`: a bar with rows/s and ETA on a terminal."""
        features = self.task.encode(examples, self.tokenizer, self.cfg.task, self.labels)
        if say is not None:
            show_messages(features, set(), say)
        metrics, rows = evaluate_examples(
            self.model,
            self.task,
            examples,
            features,
            self.cfg,
            self.labels,
            self.pad_id,
            self.device,
            with_loss=with_loss,
            progress=progress,
        )
        return metrics, self._finite(rows)

    def _finite(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`rows`, unless a score in them is NaN or infinite: weights that give such scores
        are damaged, and predictions from them would be garbage read as answers."""
        if not all(_finite_numbers(row) for row in rows):
            raise UserError(
                f"{self.run.path}: the model's scores are not finite numbers (NaN or inf): its "
                "weights are damaged (a diverged run, a bad copy); retrain it, or use another run"
            )
        return rows

    @property
    def second_text(self) -> str | None:
        """What each example needs besides its text: "context" (qa), "pair" (a second
        sentence) or None (one text)."""
        if self.task.hf_head == "span":
            return "context"
        return "pair" if self.pairs else None

    @property
    def pairs(self) -> bool:
        """Whether each example is two sentences: the pair type, or a regression run trained
        with task.text_pair_column (its task type alone does not say)."""
        is_pair = getattr(self.task, "is_pair", None)
        return bool(is_pair and is_pair(self.cfg.task))

    def examples_from_texts(self, texts: list[str], text_pair: str | None = None) -> list[Example]:
        return self.examples_from_pairs(texts, [text_pair] * len(texts))

    def predict(self, texts: list[str], text_pair: str | None = None) -> list[dict[str, Any]]:
        """One prediction row per text (a server calls this per request)."""
        _, rows = self.run_examples(self.examples_from_texts(texts, text_pair))
        return rows

    def examples_from_pairs(
        self, texts: list[str], pairs: list[str | None] | None = None
    ) -> list[Example]:
        """One example per text, each with its own second text (pair) or context (qa)."""
        seconds = pairs if pairs is not None else [None] * len(texts)
        for what, items in (("text", texts), ("pair/context", seconds)):
            for i, t in enumerate(items):  # the API hands anything a notebook holds
                if not isinstance(t, str) and not (t is None and what != "text"):
                    raise UserError(f"{what} {i} is {type(t).__name__}, not a string; give strings")
                if t is not None and not t.strip():  # as the CLI's --text "" is
                    raise UserError(f"{what} {i} is empty; give the text to label")
                if t is not None and not visible(t):
                    raise UserError(f"{what} {i} {INVISIBLE}; give the text to label")
                if t is not None:
                    _check_unicode(t, f"{what} {i}")
        if len(seconds) != len(texts):
            raise UserError(f"{len(texts)} texts but {len(seconds)} pairs/contexts; give one each")
        if hasattr(self.task, "is_pair"):  # else the model would read them silently wrong
            missing = [p is None for p in seconds]
            if self.pairs and any(missing):
                raise UserError("a sentence-pair model needs --text-pair as well as --text")
            if not self.pairs and not all(missing):
                raise UserError(
                    "this model reads one text at a time; --text-pair (pairs) is for "
                    "sentence-pair and QA models"
                )
        return [
            self.task.example_from_text(t, p, i)
            for i, (t, p) in enumerate(zip(texts, seconds, strict=True))
        ]

    def predict_examples_scored(
        self,
        examples: list[Example],
        batch_size: int | None = None,
        say: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """{label, score, scores, ...} per example, in order, `batch_size` (default: the run's
        train.batch_size) per forward pass: a server batches many requests into one call.
        What encoding cut is told to `say` and kept on each row (truncated_words: tagging,
        truncated_question_tokens: qa), so a client sees which answers saw less of the input."""
        if not examples:
            return []
        features = self.task.encode(examples, self.tokenizer, self.cfg.task, self.labels)
        if say is not None:
            show_messages(features, set(), say)
        amp = autocast_dtype(self.cfg.train.precision, self.device)
        outputs: list[Any] = [None] * len(features)
        lengths = [len(f["input_ids"]) for f in features]
        for chunk in length_batches(lengths, batch_size or self.cfg.train.batch_size):
            part = [features[i] for i in chunk]
            outs = predict_outputs(
                self.model, self.task, part, self.pad_id, len(part), self.device, amp
            )
            for i, out in zip(chunk, outs, strict=True):
                outputs[i] = out
        preds = self.task.decode(outputs, features, examples, self.cfg.task, self.labels)
        confidences = self.task.confidences(outputs, features, examples) or [None] * len(preds)
        rows = [
            scored(p, ex, self.labels, conf)
            for p, ex, conf in zip(preds, examples, confidences, strict=True)
        ]
        return with_truncation(self._finite(rows), features)

    def predict_scored(
        self, texts: list[str], pairs: list[str | None] | None = None
    ) -> list[dict[str, Any]]:
        """label/score/scores per text (pairs: the second sentences, or the QA contexts)."""
        return self.predict_examples_scored(self.examples_from_pairs(texts, pairs))

    def evaluate(
        self, data_path: str, say: Callable[[str], None] | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(metrics, prediction rows) on a labelled file in the task's format; `say` hears what
        reading skipped (rows without text, answers not in their context)."""
        path = split_for_role(data_path, "valid", "--data")
        examples = whole_unicode(self.task.read(path, self.cfg.task), path)
        if say is not None:
            show_messages(examples, set(), say)
        if not any(self.task.has_gold(ex) for ex in examples):
            raise UserError(
                f"{data_path}: no gold labels found{self.task.missing_gold_hint(self.cfg.task)}"
                f"{columns_found(data_path, self.cfg.task)}; evaluate needs labels (predict --input FILE "
                "predicts an unlabelled file)"
            )
        self.task.check_labels(examples, self.labels, data_path)
        return self.run_examples(examples, say, with_loss=True, progress=True)


def columns_found(path: str, task: TaskConfig) -> str:
    """ "; columns found: a, b" for a table file whose first row can be read, else "". Read
    as the task reads it: with `task.columns` (a file without a header row) the names given
    there, not the first row's texts."""
    try:
        if table_format(Path(path)) not in ("csv", "tsv", "jsonl"):
            return ""
        first = next(iter_rows(path, header=header_for(task)), None)
    except (UserError, OSError, ValueError):
        return ""
    if first is None or not isinstance(first[1], dict):
        return ""
    return "; columns found: " + ", ".join(map(str, first[1]))


def length_batches(lengths: list[int], max_batch: int, waste: float = 0.3) -> list[list[int]]:
    """Indices sorted by length and cut into batches of at most `max_batch` whose padding
    stays under `waste` of their real tokens (a batch of at least 4 is always allowed to grow).

    Why: a batch is padded to its longest sequence, and on a CPU padding costs as much as text;
    tweets of 10 and 64 tokens in one batch would spend most of the work on padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    batch: list[int] = []
    real = 0
    for i in order:
        n = lengths[i]
        too_padded = len(batch) >= 4 and n * (len(batch) + 1) > (1 + waste) * (real + n)
        if batch and (len(batch) >= max_batch or too_padded):
            batches.append(batch)
            batch, real = [], 0
        batch.append(i)
        real += n
    if batch:
        batches.append(batch)
    return batches


def scored(
    pred: Any, example: Example, labels: list[str], confidence: list[float] | None = None
) -> dict[str, Any]:
    """One decoded prediction as {label, score, scores} whatever the task type, so a client
    reads every model the same way. The shape of `decode`'s output says what it is:

    - a distribution over labels (classification, pair): score is the top probability and
      scores every label's probability;
    - a label set (multilabel): label is the list of labels chosen, score the lowest
      probability among them (None when none is chosen), scores every label's probability;
    - a span (qa): label is the answer text, score the span's probability in its window,
      p(start) x p(end) (None when no span was found), start/end its characters in the context;
      a run trained with task.unanswerable (SQuAD 2.0) answers "" with no_answer true and
      score the null's probability where it finds no answer in the context;
    - a tag per word (tagging): label is the tags joined by spaces, entities the spans
      (type, start/end word index, end exclusive, char_start/char_end: characters of the text
      given, text: that slice of it); with `confidence` (each word's tag probability) score is
      the lowest word's, tag_scores each word's, and each entity's score the lowest of its
      words; otherwise score None;
    - anything else (a number, say): label is the value itself.
    """
    if isinstance(pred, dict) and "labels" in pred:  # multilabel: a set, each label's probability
        probs = dict(zip(labels, pred["probs"], strict=True))
        return {
            "label": list(pred["labels"]),
            "score": round(float(min(probs[n] for n in pred["labels"])), 6)
            if pred["labels"]
            else None,
            "scores": {name: round(float(q), 6) for name, q in probs.items()},
        }
    if isinstance(pred, dict) and "probs" in pred:
        return {
            "label": pred["label"],
            "score": round(float(pred["prob"]), 6),
            "scores": {
                name: round(float(q), 6) for name, q in zip(labels, pred["probs"], strict=True)
            },
        }
    if isinstance(pred, dict) and "start_char" in pred:
        start = int(pred["start_char"])
        score = pred.get("score")
        return {
            "label": pred["text"],
            "score": None if score is None else round(float(score), 6),
            "scores": {},
            "start": start,
            "end": start + len(pred["text"]) if start >= 0 else -1,
        } | ({"no_answer": True} if pred.get("no_answer") else {})
    if isinstance(pred, list) and "tokens" in example:
        words = example["tokens"]
        raw = example.get("raw")  # the text as given: a file's words have none
        given = isinstance(raw, str) and list(words) in (raw.split(), split_words(raw))
        text = raw if given else " ".join(words)
        spans = word_spans(text, words)

        def lowest(a: int, b: int) -> float | None:
            if confidence is None or b <= a:
                return None
            return round(min(confidence[a:b]), 6)

        row = {
            "label": " ".join(pred),
            "score": lowest(0, len(words)),
            "scores": {},
            "tokens": words,
            "tags": list(pred),
            "entities": [
                {
                    "type": ty,
                    "start": a,
                    "end": b,
                    "char_start": spans[a][0],
                    "char_end": spans[b - 1][1],
                    "text": text[spans[a][0] : spans[b - 1][1]],
                }
                | ({"score": lowest(a, b)} if confidence is not None else {})
                for ty, a, b in (entities(pred) if entity_tags(labels or pred) else [])
            ],
        }
        if confidence is not None:
            row["tag_scores"] = [round(c, 6) for c in confidence]
        return row
    if isinstance(pred, dict) and "value" in pred:  # regression's decoded number
        pred = pred["value"]
    value = pred.item() if isinstance(pred, np.generic) else pred
    return {"label": value, "score": None, "scores": {}}


def load_finetuned(path: str | Path) -> Finetuned:
    run = Run.open(path)
    if not str(run.info.get("kind", "")).startswith("finetune"):
        raise UserError(
            f"{run.path}: is a {run.info.get('kind')} run; evaluate, predict and serve need a "
            "fine-tuning run (embed takes a pretraining run too)"
        )
    cfg = load_config(run.path / "config.yaml", schema=FinetuneConfig)
    task = get_task(cfg.task.type)
    if hasattr(task, "words_keep_punctuation"):  # tagging: words as its training data had them
        recorded = run.info.get("words_keep_punctuation")  # recorded since 2026-12-03
        by_format = cfg.task.format in ENTITY_FORMATS
        task.words_keep_punctuation = by_format if recorded is None else bool(recorded)
    tok = load_tokenizer(run.path / "tokenizer")
    labels = run_labels(run)
    model_cfg = run_model_config(run)
    check_tokenizer_fits(run, tok.get_vocab_size(), model_cfg)
    with without_init():  # load_run_weights sets every weight (a missing one is an error)
        model = TaskModel(
            run_encoder(run, model_cfg),
            task.head(cfg.head, model_cfg.d_model, max(len(labels), 1)),
        )
    load_run_weights(model, run_checkpoint(run) / "model.safetensors")
    for note in run.skip_notes():  # a damaged best checkpoint: say which weights answer instead
        print(note, file=sys.stderr)
    try:
        device = resolve_device(cfg.train.device)
    except UserError:  # trained on a device this machine lacks (cuda:3): answer where it can
        device = resolve_device("auto")
    model.to(device).eval()
    return Finetuned(run, cfg, task, tok, labels, model, device, special_ids(tok)["pad"])


def _eval_name(run_path: Path, data_path: str) -> str:
    """file-<stem> (never the run's own valid/test outputs); file-<stem>-2, -3, ... when an
    earlier evaluation of another file with that name is there, so it is not overwritten."""
    # a save_to_disk split (dir::validation) or an hf: name: characters a file name may hold
    stem = "file-" + re.sub(r"[^\w.-]+", "-", Path(data_path.replace("::", "-")).stem).strip("-")
    for k in range(1, 10_000):
        name = stem if k == 1 else f"{stem}-{k}"
        earlier = run_path / "eval" / f"{name}.json"
        if not earlier.is_file():
            return name
        try:
            was = json.loads(earlier.read_text(encoding="utf-8")).get("data")
        except (OSError, ValueError, AttributeError):
            continue  # not ours to overwrite
        if isinstance(was, str) and Path(was).resolve() == Path(data_path).resolve():
            return name  # the same file again: its results are replaced
    raise UserError(f"{run_path / 'eval'}: too many evaluations of files named {stem}")


INVISIBLE = "has no visible character (only spaces, zero-width or control characters)"


def visible(text: str) -> bool:
    """Whether `text` has a character a reader sees: zero-width spaces, byte-order marks and
    control characters alone tokenize to nothing, and the model would answer an empty input.
    By category (control, format, separator), so characters newer than this Python's Unicode
    (unassigned to it: an emoji of 2023) and private-use ones count as seen."""
    return any(unicodedata.category(c) not in _UNSEEN for c in text)


_UNSEEN = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _finite_numbers(value: Any) -> bool:
    """Whether every float in `value` (a row: numbers, lists and dicts of them) is finite."""
    if isinstance(value, (float, np.floating)):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_numbers(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite_numbers(v) for v in value)
    return True


def _check_unicode(text: str, what: str) -> None:
    """A lone surrogate (bytes that were not UTF-8 on a command line: Python keeps them as
    \\udcXX) cannot be tokenized: one line instead of the tokenizer's TypeError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = text[e.start]
        raise UserError(
            f"{what} is not valid Unicode ({bad!r} at character {e.start}: bytes that are not "
            "UTF-8, e.g. Latin-1 typed into a terminal?); give UTF-8 text"
        ) from None


def check_evaluate_writes(run_dir: str | Path, folders: tuple[str, ...] = ()) -> None:
    """Evaluation writes its metrics and predictions into the run: a run this process cannot
    write (a read-only copy, another user's) is one line before the model runs, not an
    OSError after it. `folders`: others it writes as well (the API's inputs/)."""
    run = Path(run_dir)
    for sub in ("predictions", "eval", *folders):
        target = run / sub if (run / sub).is_dir() else run
        if target.is_dir() and not os.access(target, os.W_OK | os.X_OK):
            raise UserError(
                f"{target}: read-only here, and evaluate writes its metrics and predictions "
                "into the run; copy the run to a folder you can write, or use `encoderlab "
                "predict RUN --input FILE --output FILE` (predictions, no metrics)"
            )


def evaluate_file(
    run_dir: str | Path,
    data_path: str,
    say: Callable[[str], None] = print,
    overrides: list[str] | None = None,
    loaded: Finetuned | None = None,
) -> dict[str, Any]:
    """`encoderlab evaluate`: metrics and predictions files (`loaded`: the run already loaded;
    `overrides`: `--set task.X=...`, how to read this file: its columns, filters)."""
    check_evaluate_writes(loaded.run.path if loaded is not None else run_dir)
    ft = loaded if loaded is not None else load_finetuned(run_dir)
    if overrides:  # a loaded model (API, server) keeps its own reading options
        task_cfg = reading_config(ft.cfg.task, overrides)
        ft = dataclasses.replace(ft, cfg=ft.cfg.model_copy(update={"task": task_cfg}))
    if ft.cfg.task.max_examples is not None and "max_examples" not in _given(overrides):
        # the cap chose the run's training rows; the file given here is evaluated whole
        whole = ft.cfg.task.model_copy(update={"max_examples": None})
        ft = dataclasses.replace(ft, cfg=ft.cfg.model_copy(update={"task": whole}))
    metrics, rows = ft.evaluate(data_path, say)
    name = _eval_name(ft.run.path, data_path)
    write_jsonl(ft.run.path / "predictions" / f"{name}.jsonl", rows)
    (ft.run.path / "eval").mkdir(exist_ok=True)
    same = ft.task.one_answer(rows)
    out = {"data": str(data_path), **metrics, **({"learned_nothing": same} if same else {})}
    (ft.run.path / "eval" / f"{name}.json").write_text(
        json.dumps(finite(out), indent=1, ensure_ascii=False)
    )
    say("  ".join(f"{k} {v:.4f}" for k, v in scalar_metrics(metrics).items()))
    if same is not None:
        say(f"warning: on {data_path} the model {same}")
    say(f"predictions: {ft.run.path / 'predictions' / f'{name}.jsonl'}")
    say(f"metrics: {ft.run.path / 'eval' / f'{name}.json'}")
    return metrics


def predict(
    run_dir: str | Path,
    texts: list[str] | None = None,
    text_pair: str | None = None,
    input_path: str | None = None,
    output: str | None = None,
    say: Callable[[str], None] = print,
    overrides: list[str] | None = None,
) -> list[dict[str, Any]]:
    """`encoderlab predict`; `overrides`: `--set task.X=...`, how to read --input (its columns)."""
    if output and Path(output).is_dir():  # before the model is loaded and run
        raise UserError(f"--output {output} is a folder; give a file name (.csv or .jsonl)")
    kind = output_kind(output) if output else None
    if output:
        check_output_writable(Path(output))
    if output and input_path and Path(output).resolve() == Path(input_path).resolve():
        raise UserError(f"--output {output} is the --input file; give another file name")
    if (
        output
        and Path(output).exists()
        and Path(run_dir).resolve() in Path(output).resolve().parents
    ):
        raise UserError(  # config.yaml, labels.json, submission.csv: the run's own record
            f"--output {output} is one of the run's own files; give a new file name"
        )
    decisions = {"task.threshold", "task.null_threshold"}  # how outputs become answers
    if (
        overrides
        and not input_path
        and any(o.split("=", 1)[0].strip() not in decisions for o in overrides)
    ):
        raise UserError(
            "--set says how to read --input; give --input FILE, or drop --set (with --text only "
            "task.threshold and task.null_threshold apply)"
        )
    if input_path and (texts or text_pair is not None):  # one of them was silently dropped
        given = "--text" if texts else "--text-pair"
        raise UserError(f"{given} and --input: give one or the other (--input FILE reads them all)")
    rows_out = say
    if input_path and not output:  # stdout is the JSON lines: messages go to stderr
        say = _to_stderr
    ft = load_finetuned(run_dir)
    task_cfg = reading_config(ft.cfg.task, overrides) if overrides else ft.cfg.task
    if overrides:  # truncation, window_stride, ...: how the file is encoded too, as evaluate
        ft = dataclasses.replace(ft, cfg=ft.cfg.model_copy(update={"task": task_cfg}))
    if input_path:
        examples = read_to_predict(
            ft.task, split_for_role(input_path, "test", "--input"), task_cfg, keep=_given(overrides)
        )
        numbered = kind in ("csv", "tsv") and task_cfg.id_column is not None
        if numbered and getattr(examples, "ids_from_file", True) is False:
            examples.warnings.append(
                f"{input_path}: no id column '{task_cfg.id_column}'; the submission numbers the "
                "rows from 0 (--set task.id_column=COLUMN takes the file's own ids)"
            )
        show_messages(examples, set(), say)  # rows it skipped: a submission would lack them
    elif texts:
        examples = ft.examples_from_texts(texts, text_pair)
    else:
        raise UserError("give --text TEXT or --input FILE")
    if kind in ("csv", "tsv") and ft.task.submission([], task_cfg) is None:
        raise UserError(  # before the model runs; a .csv of JSON lines would be garbage
            f"--output {output}: a {ft.task.type} run writes no {kind.upper()} table; give "
            + _outputs_written(ft)
        )
    if kind == "json" and ft.task.submission_json([]) is None:
        raise UserError(
            f"--output {output}: a .json file is a QA run's answers ({{id: answer}}); for a "
            f"{ft.task.type} run give {_outputs_written(ft)}"
        )
    if kind in ("conll", "conllu"):
        _check_conll_output(ft, examples, str(output), kind)
    _, rows = ft.run_examples(examples, say, progress=input_path is not None)
    if output:
        out = Path(output)
        written = f"{len(rows):,} predictions"
        table = ft.task.submission(rows, task_cfg) if kind in ("csv", "tsv") else None
        if table is not None:
            write_submission(out, table, "\t" if kind == "tsv" else ",")
        elif kind == "json":
            answers = ft.task.submission_json(rows)
            write_text_atomic(out, json.dumps(answers, ensure_ascii=False))
            if len(answers) != len(rows):  # {id: answer}: a repeated id keeps one answer
                written = f"{len(answers):,} answers (for {len(rows):,} questions; ids repeat)"
        elif kind in ("conll", "conllu"):
            text = conll_text(examples, rows, ft.labels, conllu=kind == "conllu")
            write_text_atomic(out, text)
        else:
            write_jsonl(out, rows)
        say(f"wrote {written} to {out}")
    elif texts:
        for ex, r in zip(examples, rows, strict=True):
            say(ft.task.show_prediction(ex, r))
    else:  # --input without --output: the rows as JSON lines (`> predictions.jsonl`)
        for r in rows:
            rows_out(json.dumps(finite(r), ensure_ascii=False))
    return rows


def _outputs_written(ft: Finetuned) -> str:
    """The --output kinds a run of this task writes, for a refusal to name the ones it can."""
    kinds = ["a .jsonl file (a JSON object per line)"]
    if isinstance(ft.task, TaggingTask):
        conllu = " or .conllu" if isinstance(ft.task, PosTask) else ""
        kinds.append(f"a .conll{conllu} file (a word and its tag per line)")
    elif ft.task.submission_json([]) is not None:
        kinds.append("a .json file of its answers ({id: answer})")
    else:
        try:
            table = ft.task.submission([], ft.cfg.task) is not None
        except UserError:  # a table that needs task.id_column set: still a kind it writes
            table = True
        if table:
            kinds.append("a .csv or .tsv table (id, prediction)")
    return " or ".join(kinds)


def _check_conll_output(ft: Finetuned, examples: list[Example], output: str, kind: str) -> None:
    """A CoNLL file is words and their tags: for tagging and pos runs, words without spaces."""
    if not isinstance(ft.task, TaggingTask):
        raise UserError(
            f"--output {output}: a {ft.task.type} run writes no CoNLL file (that is for tagging "
            f"and pos runs); give {_outputs_written(ft)}"
        )
    if kind == "conllu" and not isinstance(ft.task, PosTask):
        raise UserError(
            f"--output {output}: CoNLL-U has no column for entity tags; give "
            + _outputs_written(ft)
        )
    check_conll_words(examples, output, conllu=kind == "conllu")


def _to_stderr(message: str) -> None:
    """A warning or note beside JSON lines on stdout (`> predictions.jsonl` stays valid)."""
    print(message, file=sys.stderr, flush=True)
