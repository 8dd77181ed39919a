"""Part-of-speech (and any per-word) tagging: a tag per word that is not an entity chunk.

Read like tagging (`tasks.tagging`): CoNLL columns with `task.tag_column` (CoNLL-2003's POS
tags are column 1), CoNLL-U (Universal Dependencies; KLUE-DP's tsv too) with `task.format:
conllu` or a `.conllu` name (UPOS, column 3, unless task.tag_column says 4 for XPOS), or
datasets' rows (words in `tokens`, tags in `pos_tags`, `upos`, `tags`, ...). Tags are taken as
they are (`task.tag_scheme` plain): no B-/I- rules, no entity chunks. Metrics: word accuracy
(the primary, as taggers report it), macro-F1 over the tags, per-tag precision/recall/F1; a
sentence counts as right when every word's tag is.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from encoderlab.config import TaskConfig
from encoderlab.errors import UserError
from encoderlab.tasks.base import MIN_ROWS_TO_JUDGE, ONE_ANSWER_SHARE, Example, Examples
from encoderlab.tasks.registry import register
from encoderlab.tasks.tagging import TaggingTask

_BIO = re.compile(r"^(O|[BI]-\S+)$")


@register
class PosTask(TaggingTask):
    """A plain tag per word (part of speech, morphology) from the word's first sub-token."""

    type = "pos"
    primary_metric = "acc"
    reported_metrics = ("acc", "macro_f1")
    metric_names = reported_metrics
    report_details = "per_class"
    untagged = "_"  # a word cut by max_len: no tag (scored as wrong)

    def missing_gold_hint(self, cfg: TaskConfig) -> str:
        return (
            " (no tag on any word: CoNLL columns (task.tag_column), CoNLL-U (task.format "
            "conllu) or rows of words and tags carry them; plain sentences are for predict)"
        )

    def read(self, path: str, cfg: TaskConfig, labelled: bool | None = None) -> Examples:
        """As tagging reads, plus a warning when the tags are entity chunks (B-ORG, I-PER):
        CoNLL-2003's last column is NER, its POS tags are column 1."""
        examples = super().read(path, cfg, labelled)
        tags = {t for ex in examples if ex["tags"] for t in ex["tags"]}
        if tags and sum(bool(_BIO.match(t)) for t in tags) >= len(tags) / 2:
            examples.warnings.append(
                f"{path}: its tags look like entity chunks ({', '.join(sorted(tags)[:3])}, ...): "
                "task.type tagging scores entities; for part-of-speech tags point "
                "task.tag_column at their column (CoNLL-2003: 1)"
            )
        return examples

    def label_names(self, examples: list[Example]) -> list[str]:
        tags = sorted({t for ex in examples if ex["tags"] for t in ex["tags"]})
        if len(tags) < 2:
            raise UserError(
                f"the training data has {len(tags)} tag(s) ({', '.join(tags)}); tagging needs "
                "at least two: check task.tag_column (CoNLL-2003's POS tags are column 1)"
            )
        return tags

    def metrics(
        self, predictions: list[Any], examples: list[Example], cfg: TaskConfig, labels: list[str]
    ) -> dict[str, Any]:
        """Word accuracy, macro-F1 over the tags in gold or predictions, per-tag scores."""
        pairs = [(g, p) for ex, p in zip(examples, predictions, strict=True) if (g := ex["tags"])]
        if not pairs:
            return {}
        words = [(a, b) for g, p in pairs for a, b in zip(g, p, strict=True)]
        gold, pred = Counter(a for a, _ in words), Counter(b for _, b in words)
        right = Counter(a for a, b in words if a == b)
        per_class = {}
        for tag in sorted(set(gold) | (set(pred) - {self.untagged})):
            p = right[tag] / pred[tag] if pred[tag] else 0.0
            r = right[tag] / gold[tag] if gold[tag] else 0.0
            per_class[tag] = {
                "precision": p,
                "recall": r,
                "f1": 2 * p * r / (p + r) if p + r else 0.0,
                "support": gold[tag],
            }
        return {
            "acc": sum(right.values()) / len(words),
            "macro_f1": sum(s["f1"] for s in per_class.values()) / max(len(per_class), 1),
            "extra": {"per_class": per_class, "examples": len(pairs), "words": len(words)},
        }

    def one_answer(self, rows: list[dict[str, Any]]) -> str | None:
        """One tag for 99 % of the labelled words or more, where the gold tags vary."""
        pairs = [
            (a, b)
            for r in rows
            if r.get("gold") is not None
            for a, b in zip(r["gold"].split(), r["prediction"].split(), strict=False)
        ]
        if len(pairs) < MIN_ROWS_TO_JUDGE:
            return None
        tag, n = Counter(b for _, b in pairs).most_common(1)[0]
        share = sum(a == tag for a, _ in pairs) / len(pairs)
        if n < ONE_ANSWER_SHARE * len(pairs) or share >= ONE_ANSWER_SHARE:
            return None
        return f"tags every word '{tag}' ({len(pairs):,} words; {share:.0%} of them are '{tag}')"

    def baseline(self, rows: list[dict[str, Any]]) -> str | None:
        tags = [t for r in rows if r.get("gold") is not None for t in r["gold"].split()]
        if len(tags) < MIN_ROWS_TO_JUDGE:
            return None
        tag, n = Counter(tags).most_common(1)[0]
        return (
            f"always answering '{tag}', the most common tag, scores accuracy "
            f"{n / len(tags):.3f} on these {len(tags):,} words"
        )

    def prediction_rows(
        self, predictions: list[Any], examples: list[Example], labels: list[str]
    ) -> list[dict[str, Any]]:
        rows = super().prediction_rows(predictions, examples, labels)
        for row in rows:  # entity counts mean nothing for plain tags
            row.pop("n_gold_entities", None)
            row.pop("n_pred_entities", None)
        return rows
