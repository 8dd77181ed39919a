"""The Task interface: everything a task type provides, so fine-tuning stays task-agnostic.

A new task type is one new module: a class implementing `Task` (subclass `TaskBase` for the
defaults) decorated with `encoderlab.tasks.register`. Its name, primary metric and mode,
how raw text becomes an example, what counts as a gold label, its submission file and how
reports show it are declared on the class; nothing else in encoderlab names task types.

Data flow (all plain Python / numpy until collate):
  read(path)            -> examples: list[dict], each with "id" (str) and "line" (int, where
                           it came from, for error messages) plus task fields; gold labels
                           are None when the file has none (a test set)
  split(examples)       -> (train, valid) when no valid file is given
  label_names(examples) -> the label set, saved with the run (empty for QA)
  encode(examples)      -> features: list[dict] of numpy arrays/ints; every feature has
                           "input_ids", "token_type_ids" and "example_index" (position in
                           `examples`); QA may give several features (windows) per example
  collate(features)     -> dict of tensors; must include input_ids and attention_mask
  head(...)             -> nn.Module: head(hidden (B,T,d), attention_mask) -> logits
  loss(logits, batch)   -> (loss, summable counts) for the trainer; train_metrics(counts)
  decode(outputs, ...)  -> one prediction per example, from per-feature logits (numpy,
                           token-level logits cut to the feature's real length)
  metrics(preds, examples)         -> flat dict of floats (logged) + "extra" non-scalars
  prediction_rows(preds, examples) -> rows for predictions files and example-level diffs
read and encode keep no state on the task: what they had to skip or repair comes back on
their results (`Examples.warnings` / `.notes`, `Features.warnings`) for the caller to show.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import HeadConfig, TaskConfig
from encoderlab.data.tables import HALF_PAIR, groups_for_valid, lone_surrogate
from encoderlab.errors import UserError

Example = dict[str, Any]
Feature = dict[str, Any]
# `one_answer`: a validation set this small says nothing either way; "one answer" is this
# share of the rows or more
MIN_ROWS_TO_JUDGE = 10
ONE_ANSWER_SHARE = 0.99


class Examples(list):
    """What `read` returns: the examples, plus what reading found (problems it counted,
    facts worth a log line, whether ids came from the file), so the task holds no state."""

    def __init__(
        self,
        items: Any = (),
        warnings: list[str] | None = None,
        notes: list[str] | None = None,
        ids_from_file: bool = True,
        read_as: str | None = None,
    ) -> None:
        super().__init__(items)
        self.warnings: list[str] = list(warnings or [])
        self.notes: list[str] = list(notes or [])
        self.ids_from_file = ids_from_file
        self.read_as = read_as  # the format `task.format: auto` found, where a task detects one


class Features(list):
    """What `encode` returns: the features, plus the problems encoding counted."""

    def __init__(
        self, items: Any = (), warnings: list[str] | None = None, notes: list[str] | None = None
    ) -> None:
        super().__init__(items)
        self.warnings: list[str] = list(warnings or [])
        self.notes: list[str] = list(notes or [])  # facts worth a line (e.g. windows used)


class Task(Protocol):
    type: str  # the name configs use (task.type) and runs record
    token_level: bool  # logits per token (tagging, qa) rather than per sequence
    primary_metric: str  # the validation metric that picks the best checkpoint
    primary_mode: str  # "max" or "min"
    example_unit: str  # what reports count: examples, questions
    right_means: str  # report wording for a right prediction
    reported_metrics: tuple[str, ...]  # scalar metrics `metrics` returns (report columns)
    metric_names: tuple[str, ...]  # what task.metric may choose as the primary metric
    report_details: (
        str | None
    )  # report section: "confusion", "answers", "per_type", "per_class" or None
    percent_metrics: frozenset[str]  # metrics already stored on a 0-100 scale
    hf_head: str | None  # the transformers head `export` writes: sequence, token, span
    hf_problem_type: str | None  # transformers config.problem_type, where the head says less

    def has_gold(self, example: Example) -> bool: ...

    def trainable(self, example: Example) -> bool: ...

    def fit_settings(self, cfg: TaskConfig, train: list[Example]) -> None: ...

    def settle_no_gold(self, train: list[Example], path: str) -> None: ...

    def example_from_text(self, text: str, text_pair: str | None, i: int) -> Example: ...

    def check_labels(self, examples: list[Example], labels: list[str], path: str) -> None: ...

    def submission(self, rows: list[dict[str, Any]], cfg: TaskConfig) -> list[list[Any]] | None: ...

    def show_prediction(self, example: Example, row: dict[str, Any]) -> str: ...

    def missing_gold_hint(self, cfg: TaskConfig) -> str: ...

    def one_answer(self, rows: list[dict[str, Any]]) -> str | None: ...

    def baseline(self, rows: list[dict[str, Any]]) -> str | None: ...

    def read(self, path: str, cfg: TaskConfig) -> list[Example]: ...

    def split(
        self, examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]: ...

    def label_names(self, examples: list[Example]) -> list[str]: ...

    def encode(
        self, examples: list[Example], tok: Tokenizer, cfg: TaskConfig, labels: list[str]
    ) -> list[Feature]: ...

    def collate(self, features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]: ...

    def head(self, cfg: HeadConfig, d_model: int, n_labels: int) -> nn.Module: ...

    def loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def train_metrics(self, counts: dict[str, float]) -> dict[str, float]: ...

    def decode(
        self,
        outputs: list[np.ndarray],
        features: list[Feature],
        examples: list[Example],
        cfg: TaskConfig,
        labels: list[str],
    ) -> list[Any]: ...

    def confidences(
        self, outputs: list[np.ndarray], features: list[Feature], examples: list[Example]
    ) -> list[list[float]] | None: ...

    def metrics(
        self, predictions: list[Any], examples: list[Example], cfg: TaskConfig, labels: list[str]
    ) -> dict[str, Any]: ...

    def prediction_rows(
        self, predictions: list[Any], examples: list[Example], labels: list[str]
    ) -> list[dict[str, Any]]: ...


class TaskBase:
    """Defaults for the declarative part of `Task`; a task class overrides what differs."""

    type: ClassVar[str]
    token_level: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "acc"
    primary_mode: ClassVar[str] = "max"
    report_details: ClassVar[str | None] = None
    example_unit: ClassVar[str] = "examples"  # what reports count ("questions" for QA)
    right_means: ClassVar[str] = "is right"  # report wording: when a prediction counts as right
    reported_metrics: ClassVar[tuple[str, ...]] = ()  # scalar metrics `metrics` returns
    # what task.metric may name (the primary metric that picks the best checkpoint); a task
    # whose `metrics` gives more than it reports in tables lists them here
    metric_names: ClassVar[tuple[str, ...]] = ()
    hf_head: ClassVar[str | None] = None  # "sequence", "token", "span": exports to transformers
    hf_problem_type: ClassVar[str | None] = None  # e.g. "multi_label_classification"
    percent_metrics: ClassVar[frozenset[str]] = frozenset()

    def has_gold(self, example: Example) -> bool:
        return example.get("label") is not None

    @staticmethod
    def split_by_group(
        examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """(train, valid) with every `task.group_column` value on one side only (read into each
        example's "group"); valid holds ~valid_ratio of the rows, not stratified by label."""
        if any("group" not in ex for ex in examples):
            raise UserError(
                f"task.group_column '{cfg.group_column}': the training file has no such column; "
                "name one of its columns, or drop task.group_column"
            )
        sizes = Counter(ex["group"] for ex in examples)
        if len(sizes) < 2:
            raise UserError(
                f"task.group_column '{cfg.group_column}': every training row has the same value "
                f"({next(iter(sizes), '')!r}), so nothing can be held out; name another column or "
                "give task.valid a file"
            )
        target = max(1, round(cfg.valid_ratio * len(examples)))
        held_out = groups_for_valid(list(sizes), sizes, target, seed)
        train = [ex for ex in examples if ex["group"] not in held_out]
        valid = [ex for ex in examples if ex["group"] in held_out]
        return train, valid

    @staticmethod
    def random_split(
        examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """(train, valid): a seeded random valid_ratio share held out, for labels there is
        no stratifying by (numbers, label sets); by task.group_column's groups when set."""
        if cfg.group_column is not None:
            return TaskBase.split_by_group(examples, cfg, seed)
        rng = np.random.default_rng([seed, 11])
        order = rng.permutation(len(examples))
        k = min(max(int(round(cfg.valid_ratio * len(examples))), 1), len(examples) - 1)
        chosen = set(order[:k].tolist())
        train = [ex for i, ex in enumerate(examples) if i not in chosen]
        valid = [ex for i, ex in enumerate(examples) if i in chosen]
        return train, valid

    def example_from_text(self, text: str, text_pair: str | None, i: int) -> Example:
        raise UserError(f"--text is not supported for task type {self.type}")

    def confidences(
        self, outputs: list[np.ndarray], features: list[Feature], examples: list[Example]
    ) -> list[list[float]] | None:
        """Per-example, per-unit probabilities of what `decode` chose, for tasks whose decoded
        prediction carries no score of its own (tagging: one per word); None otherwise."""
        return None

    def trainable(self, example: Example) -> bool:
        """Whether a training example gives a target (all do, but a QA question whose answers
        cannot be placed in its context: scored in evaluation, left out of training)."""
        return True

    def settle_no_gold(self, train: list[Example], path: str) -> None:
        """Drop the training rows a convention marks as having no gold label, deciding for
        the run (classification: SNLI's '-'); the default: none."""

    def fit_settings(self, cfg: TaskConfig, train: list[Example]) -> None:
        """Fill task settings learned from the training examples that the config left unset
        (regression: the scores' scale), before the run's config.yaml records them."""

    def loss_weights(
        self, examples: list[Example], labels: list[str], cfg: TaskConfig
    ) -> torch.Tensor | None:
        """Per-label weights of the training loss (task.class_weights); None: unweighted."""
        return None

    def check_labels(self, examples: list[Example], labels: list[str], path: str) -> None:
        """Refuse gold labels the model never saw in training (default: every label is fine)."""

    def submission(self, rows: list[dict[str, Any]], cfg: TaskConfig) -> list[list[Any]] | None:
        """A test set's submission table (header row first), or None: the task has none."""
        return None

    def submission_json(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        """A test set's submission as one JSON object, or None: the task has none (QA: the
        {question id: answer} file the official SQuAD/KorQuAD evaluation scripts read)."""
        return None

    def show_prediction(self, example: Example, row: dict[str, Any]) -> str:
        """One line for `predict --text`."""
        return f"{row['prediction']}  {row.get('input', '')}"

    def missing_gold_hint(self, cfg: TaskConfig) -> str:
        """What to add to "no gold labels found" for this task's files."""
        return ""

    def one_answer(self, rows: list[dict[str, Any]]) -> str | None:
        """What a model that learned nothing gives the same answer to, read from its
        labelled prediction rows ("answers '0' for all 761 examples"), or None. A run whose
        metric looks like a number but is that of a constant answer must say so."""
        return None

    def baseline(self, rows: list[dict[str, Any]]) -> str | None:
        """What the simplest answer scores on these labelled prediction rows ("always
        answering '0', the most common label, scores accuracy 0.570"): the floor a report
        sets its runs against; None where the task has no such answer."""
        return None


def pad_stack(arrays: list[np.ndarray], pad: int, dtype=np.int64) -> torch.Tensor:
    """Right-pad 1-D arrays to the longest one (dynamic padding)."""
    length = max(len(a) for a in arrays)
    out = np.full((len(arrays), length), pad, dtype=dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return torch.from_numpy(out)


def base_collate(features: list[Feature], pad_id: int) -> dict[str, Any]:
    """input_ids / token_type_ids / attention_mask, padded to the batch's longest feature, and
    `has_padding` (a host bool: whether any row was padded; see `model_inputs`)."""
    ids = [np.asarray(f["input_ids"]) for f in features]
    lengths = [len(a) for a in ids]
    return {
        "input_ids": pad_stack(ids, pad_id),
        "token_type_ids": pad_stack([np.asarray(f["token_type_ids"]) for f in features], 0),
        "attention_mask": pad_stack([np.ones(n, dtype=np.int64) for n in lengths], 0),
        "has_padding": min(lengths) < max(lengths),
    }


def model_inputs(
    batch: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(input_ids, attention_mask, token_type_ids) for a task model; the mask is None when
    the collate saw no padding. Known on the host, so the encoder need not ask the device
    (`attention_mask.all()`, a GPU sync per batch) before it may drop the mask."""
    mask = batch["attention_mask"] if batch.get("has_padding", True) else None
    return batch["input_ids"], mask, batch.get("token_type_ids")


def token_counts(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy and accuracy over the positions that carry a label."""
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat = labels.reshape(-1)
    keep = flat != ignore_index
    n = keep.sum()
    # sum / max(n, 1): the mean, or a differentiable 0 without labels, with no host sync
    summed = nn.functional.cross_entropy(
        flat_logits.float(), flat, ignore_index=ignore_index, reduction="sum"
    )
    loss = summed / n.clamp_min(1)
    correct = ((flat_logits.argmax(-1) == flat) & keep).sum()
    return loss, {"loss_sum": loss.detach().float() * n, "n": n.float(), "correct": correct.float()}


def counts_to_metrics(c: dict[str, float]) -> dict[str, float]:
    n = max(c.get("n", 0.0), 1.0)
    return {"loss": c.get("loss_sum", 0.0) / n, "acc": c.get("correct", 0.0) / n}


TEXT_FIELDS = ("text", "text_pair", "question", "context")  # an example's text, never its label


def example_texts(examples: list[Example]) -> Iterator[str]:
    """Every piece of text in a task's examples (both sentences of a pair, a question and its
    context, a tagged sentence's words joined by spaces), never a label: what a scratch
    tokenizer is trained on and what self-pretraining masks."""
    for ex in examples:
        for key in TEXT_FIELDS:
            if ex.get(key):
                yield ex[key]
        if ex.get("tokens"):
            yield " ".join(ex["tokens"])


def show_messages(result: list, shown: set[str], say: Callable[[str], None]) -> None:
    """Print the warnings/notes a read or encode returned (counted problems, conversions),
    each once per run."""
    messages = [f"warning: {w}" for w in getattr(result, "warnings", [])]
    messages += [f"note: {n}" for n in getattr(result, "notes", [])]
    for m in messages:
        if m not in shown:
            shown.add(m)
            say(m)


# the run's choice of its training rows (a cap, a filter), which a file to predict does not
# take: a submission needs every row
TRAINING_ROWS = {"max_examples": None, "where": []}


def read_to_predict(
    task: Any, path: str, cfg: TaskConfig, keep: tuple[str, ...] | set[str] = ()
) -> Any:
    """A file to predict, read so that every row gets a prediction (its labels, if any, are
    not read): what a submission needs, so task.max_examples and task.where do not apply
    unless named in `keep` (--set gave them for this file). Tasks whose `read` takes no
    `labelled` read as usual."""
    whole = {k: v for k, v in TRAINING_ROWS.items() if k not in keep}
    cfg = cfg.model_copy(update=whole)
    if "labelled" in inspect.signature(task.read).parameters:
        return whole_unicode(task.read(path, cfg, labelled=False), path)
    return whole_unicode(task.read(path, cfg), path)


# an example's bookkeeping: its file, line, JSON path, a CoNLL -DOCSTART- before it
WHERE_READ = ("file", "line", "where", "docstart")


def whole_unicode(examples: Any, path: str) -> Any:
    """`examples`, unless one holds a lone surrogate (a JSON \\ud800 escape without its pair),
    which no tokenizer takes: one line naming the file, line and field. Only what the task
    read is checked, so a broken field it does not use (a tweet's metadata) is no error."""
    for ex in examples:
        kept = {k: v for k, v in ex.items() if k not in WHERE_READ}
        try:
            json.dumps(kept, ensure_ascii=False, default=str).encode("utf-8")
        except UnicodeEncodeError:
            line = ex.get("line")
            at = lone_surrogate(kept) or "a field"
            raise UserError(f"{path}{f':{line}' if line else ''}: {at} {HALF_PAIR}") from None
    return examples
