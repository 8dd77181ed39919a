"""Extractive question answering (SQuAD v1.1 / KorQuAD 1.0): predict an answer span in a context.

The model sees `[CLS] question [SEP] context-window [SEP]` and scores every token as the start
and the end of the answer. Contexts longer than a window are cut into overlapping windows, so
one example gives several features; decoding picks the best span over all of them and maps it
back to characters of the original context through the tokenizer's offsets. A window that does
not hold the answer is trained to point at [CLS] (position 0), as in BERT.

Scores are those of the official evaluation scripts: SQuAD v1.1's word-level EM/F1, or
KorQuAD 1.0's character-level F1 (`task.f1: char`), since Korean attaches particles to words
and word-level F1 would punish "서울" against "서울에서" as a total miss.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from encoderlab.config import HeadConfig, TaskConfig
from encoderlab.data.tables import (
    groups_for_valid,
    plain_name,
    read_bytes,
)
from encoderlab.errors import UserError
from encoderlab.heads import TokenHead
from encoderlab.tasks.base import (
    MIN_ROWS_TO_JUDGE,
    ONE_ANSWER_SHARE,
    Example,
    Examples,
    Feature,
    Features,
    TaskBase,
    base_collate,
)
from encoderlab.tasks.records import PARQUET_SUFFIXES, is_dataset_source, read_records
from encoderlab.tasks.registry import register
from encoderlab.tokenizer import pair_separator, special_ids

# How far (in characters) from its answer_start an answer text may be found and still be
# accepted: off-by-a-few answer_start values are common in converted SQuAD-style data.
SEARCH_RADIUS = 100
# A window must keep at least this many context tokens after [CLS] question [SEP] ... [SEP].
MIN_CONTEXT_TOKENS = 8
_NEG = -1e9  # logit given to padding before the softmax (in float32)


# ---------------------------------------------------------------------------------------------
# Official scores


def squad_normalize(s: str) -> str:
    """SQuAD v1.1's normalize_answer: lower, drop punctuation and a/an/the, squeeze spaces."""
    s = s.lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


_KORQUAD_SYMBOLS = re.compile("['\"《》<>〈〉()‘’]")


def korquad_normalize(s: str) -> str:
    """KorQuAD 1.0's normalize_answer: quotes/brackets to spaces, lower, drop punctuation,
    squeeze spaces (no article removal)."""
    s = _KORQUAD_SYMBOLS.sub(" ", s).lower()
    exclude = set(string.punctuation)
    s = "".join(ch for ch in s if ch not in exclude)
    return " ".join(s.split())


def _f1(pred: list[str], gold: list[str]) -> float:
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, gold: str) -> float:
    """Word-level F1 in [0, 1] over normalised whitespace tokens (SQuAD v1.1)."""
    return _f1(squad_normalize(prediction).split(), squad_normalize(gold).split())


def korquad_f1(prediction: str, gold: str) -> float:
    """Character-level F1 in [0, 1] over the normalised text without spaces (KorQuAD 1.0)."""
    pred = [c for w in korquad_normalize(prediction).split() for c in w]
    ref = [c for w in korquad_normalize(gold).split() for c in w]
    return _f1(pred, ref)


def answer_scores(prediction: str, golds: list[str], mode: str = "word") -> tuple[bool, float]:
    """(exact match, F1 in [0, 1]), each the max over the gold answers, as the scripts do."""
    if not golds:
        return False, 0.0
    if mode == "char":
        norm, f1_fn = korquad_normalize, korquad_f1
    else:
        norm, f1_fn = squad_normalize, squad_f1
    p = norm(prediction)
    em = any(p == norm(g) for g in golds)
    return em, max(f1_fn(prediction, g) for g in golds)


# ---------------------------------------------------------------------------------------------
# Reading


def _need(node: Any, key: str, kind: type | tuple[type, ...], where: str, name: str) -> Any:
    """node[key] with the expected type, or a UserError naming the file and the key path."""
    if not isinstance(node, dict):
        raise UserError(f"{name}: {where}: expected a JSON object, got {type(node).__name__}")
    if key not in node:
        raise UserError(
            f"{name}: {where}: no '{key}'; SQuAD-format files need "
            '{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question", '
            '"answers": [{"text", "answer_start"}]}]}]}]}'
        )
    value = node[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UserError(
            f"{name}: {where}.{key}: expected {want}, got {type(value).__name__} {value!r:.40}"
        )
    return value


def _squad_data(path: str) -> list:
    """The 'data' list of a SQuAD-format JSON file, or a one-line UserError."""
    name, p = str(path), Path(path)
    if not p.is_file():
        raise UserError(f"{name}: QA file not found; check task.train / task.valid / task.test")
    try:
        raw = json.loads(read_bytes(p).decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"{name}: not UTF-8 text; save the file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise UserError(
            f"{name}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno}); "
            "QA files must be SQuAD v1.1 JSON"
        ) from None
    if not isinstance(raw, dict):
        raise UserError(
            f"{name}: the top level must be an object with a 'data' list (SQuAD v1.1 JSON)"
        )
    return _need(raw, "data", list, "(top level)", name)


class _Tally:
    """What reading a SQuAD file skipped or fixed, for its warnings."""

    def __init__(self) -> None:
        self.questions = self.bad = self.moved = self.dropped = self.impossible = 0
        self.kept_impossible = 0
        self.with_answers = self.without_answers = 0
        self.first_without = ""
        self.ids: Counter[str] = Counter()

    def warnings(self, name: str) -> list[str]:
        out = []
        if self.bad:
            dropped = self.dropped
            out.append(
                f"{name}: {self.bad} answers are not in their context near their answer_start: "
                "they count as gold answers in scoring (as in the official SQuAD script) but "
                "give no training target"
                + (
                    f"; {dropped} questions have no other answer: left out of training, "
                    "still scored in evaluation"
                    if dropped
                    else ""
                )
            )
        if self.moved:
            out.append(
                f"{name}: {self.moved} answers were not at their answer_start but found within "
                f"{SEARCH_RADIUS} characters of it; their answer_start was corrected"
            )
        if self.impossible:
            out.append(
                f"{name}: {self.impossible} unanswerable questions (SQuAD 2.0 is_impossible) "
                "were skipped (SQuAD v1.1 reading); task.unanswerable: true keeps them and "
                "trains the model to answer nothing"
            )
        dup = sum(c - 1 for c in self.ids.values() if c > 1)
        if dup:
            out.append(f"{name}: {dup} questions repeat an earlier question's id")
        return out


def _squad_questions(
    data: list, name: str, tally: _Tally, keep_impossible: bool = False
) -> Iterator[Example]:
    """Every usable question of a SQuAD 'data' list as an example, in file order; with
    `keep_impossible` SQuAD 2.0's unanswerable ones too (answers [], "impossible": True)."""
    for ai, article in enumerate(data):
        aw = f"data[{ai}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        title = title if isinstance(title, str) else str(title)
        key = title if title.strip() else aw
        for pi, para in enumerate(_need(article, "paragraphs", list, aw, name)):
            pw = f"{aw}.paragraphs[{pi}]"
            context = _need(para, "context", str, pw, name)
            for qi, qa in enumerate(_need(para, "qas", list, pw, name)):
                qw = f"{pw}.qas[{qi}]"
                qid = str(_need(qa, "id", (str, int), qw, name))
                question = _need(qa, "question", str, qw, name)
                tally.questions += 1
                impossible = qa.get("is_impossible") is True  # SQuAD 2.0: no span to extract
                if impossible and not keep_impossible:
                    tally.impossible += 1
                    continue
                answers: list[dict[str, Any]] | None = None
                if impossible:
                    if qa.get("answers"):
                        raise UserError(
                            f"{name}: {qw}: is_impossible is true but the question has answers; "
                            "drop one of them (SQuAD 2.0 keeps guesses in plausible_answers)"
                        )
                    tally.kept_impossible += 1
                    tally.with_answers += 1  # a gold of its own: "nothing"
                    answers = []
                elif qa.get("answers") != [] and "answers" in qa:  # [] = no gold (a test file)
                    tally.with_answers += 1
                    answers = _squad_answers(qa, context, qw, name, tally)
                    if not _placed(answers):
                        tally.dropped += 1
                else:
                    tally.without_answers += 1
                    tally.first_without = tally.first_without or qw
                tally.ids[qid] += 1
                yield {
                    "id": qid,
                    "line": tally.questions,
                    "where": qw,
                    "title": title,
                    "article": key,
                    "context": context,
                    "question": question,
                    "answers": answers,
                } | ({"impossible": True} if impossible else {})


ROW_SUFFIXES = (".jsonl", *PARQUET_SUFFIXES)


def _in_rows(path: str, cfg: TaskConfig) -> bool:
    """Whether `path` holds one question per row (datasets' squad shape: id, title, context,
    question, answers {text: [...], answer_start: [...]}) rather than SQuAD's nested JSON: a
    .jsonl or Parquet file, a save_to_disk folder, hf:<name>, or a .json file of JSON lines
    (what `Dataset.to_json` writes)."""
    if cfg.format in ("jsonl", "parquet", "hf"):
        return True
    if cfg.format not in ("auto", "json"):  # json: SQuAD's nested file, or rows: look
        return False
    p = Path(path)
    if is_dataset_source(path):
        return True
    name = plain_name(p)
    if name.endswith(ROW_SUFFIXES):
        return True
    if not (name.endswith(".json") and p.is_file()):
        return False
    head = read_bytes(p, 1 << 20).decode("utf-8-sig", errors="replace").lstrip()
    try:
        if head.startswith("["):  # a JSON array of rows? (SQuAD's own files are an object)
            rows = json.loads(read_bytes(p).decode("utf-8-sig"))
            row = rows[0] if isinstance(rows, list) and rows else None
        else:
            row = json.loads(head.split("\n", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return False  # the SQuAD reader says what is wrong with the file
    return isinstance(row, dict) and "question" in row and "context" in row


def _row_config(path: str, cfg: TaskConfig) -> TaskConfig:
    """`cfg` for the row reader: a .json file of JSON lines is read as jsonl, a folder or
    hf:<name> by what it is."""
    if cfg.format in ("auto", "json") and plain_name(path).endswith(".json"):  # array / lines
        return cfg.model_copy(update={"format": "json"})
    return cfg.model_copy(update={"format": "auto"}) if cfg.format == "hf" else cfg


def _row_questions(
    rows: list[tuple[int, dict[str, Any]]], name: str, tally: _Tally, keep_impossible: bool = False
) -> Iterator[Example]:
    """Every usable question of datasets' squad rows as an example; the article (the split
    key) is the row's title, or its context when it has none. A row with empty answers among
    rows with answers is SQuAD 2.0's unanswerable question (skipped, with a note, unless
    `keep_impossible`)."""
    answered = any(_row_answers(row, f"{name}:{line}") for line, row in rows)
    for position, (line, row) in enumerate(rows):
        where = f"{name}:{line}"
        context, question = row.get("context"), row.get("question")
        if not isinstance(context, str) or not isinstance(question, str):
            raise UserError(
                f"{where}: a question row needs 'context' and 'question' strings; columns found: "
                f"{', '.join(map(str, row))}"
            )
        # no id: the row's position from 0, as a classification row without one gets (and as
        # a list or a Dataset of rows counts them), whether the rows came from memory or a file
        qid = str(row.get("id") if row.get("id") is not None else position)
        title = row.get("title")
        title = title if isinstance(title, str) else ""
        tally.questions += 1
        raw = _row_answers(row, where)
        # SQuAD 2.0's unanswerable rows say so with empty answers; a row without the field
        # (or null) among answered ones is a gap in the data, refused below
        impossible = not raw and answered and row.get("answers") is not None
        if impossible and not keep_impossible:
            tally.impossible += 1
            continue
        answers: list[dict[str, Any]] | None = None
        if impossible:
            tally.kept_impossible += 1
            tally.with_answers += 1  # a gold of its own: "nothing"
            answers = []
        elif raw:
            tally.with_answers += 1
            qa = {"answers": raw}
            answers = _squad_answers(qa, context, f"row {line}", name, tally)
            if not _placed(answers):
                tally.dropped += 1
        else:
            tally.without_answers += 1
            tally.first_without = tally.first_without or f"row {line}"
        tally.ids[qid] += 1
        yield {
            "id": qid,
            "line": line,
            "where": f"row {line}",
            "title": title,
            "article": title if title.strip() else context,
            "context": context,
            "question": question,
            "answers": answers,
        } | ({"impossible": True} if impossible else {})


def _row_answers(row: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A row's answers as SQuAD's [{text, answer_start}]: from datasets' {text: [...],
    answer_start: [...]} or a list of such objects; [] when it has none."""
    value = row.get("answers")
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        texts, starts = value.get("text"), value.get("answer_start")
        if isinstance(texts, list) and isinstance(starts, list) and len(texts) == len(starts):
            return [{"text": t, "answer_start": a} for t, a in zip(texts, starts, strict=True)]
    raise UserError(
        f'{where}: \'answers\' must be {{"text": [...], "answer_start": [...]}} of equal '
        'lengths (datasets\' squad) or a list of {"text", "answer_start"}'
    )


def _squad_answers(
    qa: dict, context: str, qw: str, name: str, tally: _Tally
) -> list[dict[str, Any]]:
    """A question's answers, answer_start corrected when off a little; None for an answer not
    found in its context (it is still a gold text to score against)."""
    answers = []
    for ki, ans in enumerate(_need(qa, "answers", list, qw, name)):
        kw = f"{qw}.answers[{ki}]"
        text = _need(ans, "text", str, kw, name)
        start = _need(ans, "answer_start", int, kw, name)
        if start < 0:  # Python would count it from the context's end
            raise UserError(
                f"{name}: {kw}.answer_start: {start} is negative; it is the answer's character "
                "offset in its context (0 = the first character)"
            )
        found = locate_answer(context, text, start)
        if found is None:
            tally.bad += 1
        else:
            tally.moved += found != start
        answers.append({"text": text, "answer_start": found})
    return answers


def _placed(answers: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The answers found in their context: those a model can be trained to extract."""
    return [a for a in answers or [] if a["answer_start"] is not None]


def locate_answer(context: str, text: str, start: int) -> int | None:
    """Where `text` really starts in `context`: at `start`, or the nearest occurrence within
    SEARCH_RADIUS characters of it; None when it is not there (the answer cannot be trained)."""
    if not text:
        return None
    if context[start : start + len(text)] == text:
        return start
    lo = max(0, start - SEARCH_RADIUS)
    hi = min(len(context), start + len(text) + SEARCH_RADIUS)
    best: int | None = None
    i = context.find(text, lo, hi)
    while i != -1:
        if best is None or abs(i - start) < abs(best - start):
            best = i
        i = context.find(text, i + 1, hi)
    return best


# ---------------------------------------------------------------------------------------------
# Encoding helpers


def _trimmed_offsets(context: str, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Token offsets with surrounding whitespace removed (byte-level BPE and Metaspace tokens
    carry the space before a word); whitespace-only tokens become empty spans (a, a)."""
    out = np.asarray(offsets, dtype=np.int32).reshape(-1, 2).copy()
    for row in out:
        a, b = int(row[0]), int(row[1])
        if a < b and (context[a].isspace() or context[b - 1].isspace()):
            while a < b and context[a].isspace():
                a += 1
            while b > a and context[b - 1].isspace():
                b -= 1
            row[0], row[1] = a, b
    return out


def _continues(ch: str) -> bool:
    """Whether `ch` belongs to the character before it: a combining mark (the accent of
    'e\u0301') or a conjoining Hangul vowel or final consonant (NFD Korean: 한 is ᄒ ᅡ ᆫ)."""
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or "\u1160" <= ch <= "\u11ff"
        or "\ud7b0" <= ch <= "\ud7ff"
    )


def _whole_characters(context: str, offsets: np.ndarray) -> np.ndarray:
    """Token spans widened to whole characters, in place. Under NFKC an NFD syllable (3 code
    points) becomes one character, and the tokenizer maps a token made of it back to its first
    code point only; an answer ending there would end on a bare jamo (or before an accent).
    A span's end moves over the marks and jamo that continue its last character, and a start
    inside such a sequence moves back to its first code point. Then an end moves over the
    visible characters no token covers before the next token: NFKC composes compatibility
    jamo (ㄱㅏ becomes 가), and the token maps back to ㄱ alone, so an answer ㄱㅏ ended as ㄱ."""
    n = len(context)
    for row in offsets:
        a, b = int(row[0]), int(row[1])
        if a >= b:
            continue
        while a > 0 and _continues(context[a]):
            a -= 1
        while b < n and _continues(context[b]):
            b += 1
        row[0], row[1] = a, b
    following, widened = n, {}  # the next token's start; (a, b) -> b for tokens of one span
    for row in offsets[::-1]:
        a, b = int(row[0]), int(row[1])
        if a >= b:
            continue
        end = widened.get((a, b), b)
        while end < following and _uncovered_part(context[end]):
            end += 1
        widened[(a, b)] = end
        row[1] = end
        following = min(following, a)
    return offsets


def _uncovered_part(ch: str) -> bool:
    """A character no token covers that still belongs to the word before it (not a space, a
    control or a format character such as a zero-width space)."""
    return not ch.isspace() and unicodedata.category(ch) not in ("Cc", "Cf")


def _char_to_tokens(offsets: np.ndarray, a: int, b: int) -> tuple[int, int] | None:
    """First and last context token overlapping characters [a, b), or None."""
    if len(offsets) == 0:
        return None
    s, e = offsets[:, 0], offsets[:, 1]
    hit = np.flatnonzero((e > s) & (e > a) & (s < b))
    if len(hit) == 0:
        return None
    return int(hit[0]), int(hit[-1])


def _question_cut_warnings(examples: list[Example], q_encs: list, max_query_len: int) -> list[str]:
    """The warning for questions longer than max_query_len tokens (cut to it), or none."""
    cut = [ex for ex, q in zip(examples, q_encs, strict=True) if len(q.ids) > max_query_len]
    if not cut:
        return []
    src = f"{cut[0]['file']}: " if cut[0].get("file") else ""
    where = cut[0].get("where")
    first = f"id {cut[0].get('id')!r}" + (f" at {where}" if where else "")
    return [
        f"{src}{len(cut)} questions are longer than task.max_query_len={max_query_len} tokens "
        f"and were cut to it (first: {first}); fine-tune with a larger task.max_query_len to "
        "keep them whole"
    ]


def _windows(n: int, budget: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) token ranges of at most `budget` tokens, consecutive ones sharing
    `overlap` tokens; the last one ends at n. One (empty) window for an empty context."""
    step = max(1, budget - overlap)
    out, start = [], 0
    while True:
        end = min(n, start + budget)
        out.append((start, end))
        if end >= n:
            return out
        start += step


class _NoTruncation:
    """Temporarily switch off truncation and padding on a shared tokenizer, then restore them,
    so encode sees whole texts with true offsets and the caller's tokenizer is left as it was."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok

    def __enter__(self) -> Tokenizer:
        self.trunc, self.pad = self.tok.truncation, self.tok.padding
        if self.trunc is not None:
            self.tok.no_truncation()
        if self.pad is not None:
            self.tok.no_padding()
        return self.tok

    def __exit__(self, *exc: object) -> None:
        if self.trunc is not None:
            self.tok.enable_truncation(**self.trunc)
        if self.pad is not None:
            self.tok.enable_padding(**self.pad)


# ---------------------------------------------------------------------------------------------
# The task


@register
class QATask(TaskBase):
    """SQuAD v1.1-style extractive QA. The `warnings` of read's and encode's results say what
    they had to drop or repair (one line each, naming the file), for the CLI to show; nothing
    is silent."""

    type = "qa"
    token_level = True
    primary_metric = "f1"
    hf_head = "span"  # hf export: the transformers head its head maps to
    reported_metrics = ("em", "f1")  # scalar metrics its evaluation gives
    report_details = "answers"
    percent_metrics = frozenset({"em", "f1", "has_ans_em", "has_ans_f1", "no_ans_acc", "best_f1"})
    example_unit = "questions"
    right_means = "answer is an exact match"

    def __init__(self) -> None:
        # prediction_rows gets no config: it scores rows the way the last read/metrics call
        # was configured (task.f1), so KorQuAD rows use character F1 like its metrics
        self.f1_mode = "word"

    # -- reading -------------------------------------------------------------------------------

    def read(self, path: str, cfg: TaskConfig, labelled: bool = True) -> Examples:
        """SQuAD v1.1 JSON -> one example per question (`labelled=False`, to predict: every
        question, SQuAD 2.0's unanswerable ones too, whatever task.unanswerable says).

        Example keys: id, line (1-based number of the question in the file), where (its JSON
        path), title, article (the split key), context, question, answers (list of
        {text, answer_start}, answer_start fixed when found nearby; None for a file without
        answers). An answer whose text is not in the context near its answer_start keeps
        answer_start None: scored against, as the official scripts do, but no training target
        (`trainable`); they are counted in the result's `warnings`.
        """
        self.f1_mode = cfg.f1
        name = str(path)
        tally = _Tally()
        examples = Examples()
        keep = cfg.unanswerable or not labelled  # a prediction for every question
        if _in_rows(name, cfg):
            rows = read_records(name, _row_config(name, cfg))
            questions = _row_questions(rows, name, tally, keep)
        else:
            questions = _squad_questions(_squad_data(path), name, tally, keep)
        for example in questions:
            examples.append(example | {"file": name})  # encode's warnings name it
            if cfg.max_examples is not None and len(examples) >= cfg.max_examples:
                break
        if tally.with_answers and tally.without_answers:
            raise UserError(
                f"{name}: {tally.first_without}: no 'answers' (or an empty list), but other "
                "questions have them; give every question its answers (or none, for a test "
                "file); a SQuAD 2.0 question without an answer says is_impossible: true, and "
                "task.unanswerable: true keeps it"
            )
        examples.warnings.extend(tally.warnings(name))
        blank = [ex for ex in examples if not str(ex.get("question") or "").strip()]
        if blank:  # as classification says of rows with empty text
            examples.warnings.append(
                f"{name}: {len(blank):,} "
                + ("question is" if len(blank) == 1 else "questions are")
                + f" empty (first: {blank[0]['id']}, at "
                f"{blank[0].get('where') or blank[0].get('line')}); their answers come from the "
                "context alone"
            )
        if cfg.unanswerable and not tally.kept_impossible and any(ex["answers"] for ex in examples):
            examples.notes.append(
                f"{name}: task.unanswerable is on, but no question here is unanswerable "
                "(SQuAD v1.1 data): the model still learns to answer nothing where windows "
                "lack the answer"
            )
        if tally.kept_impossible and cfg.unanswerable:
            examples.notes.append(
                f"{name}: {tally.kept_impossible:,} of {len(examples):,} questions have no "
                "answer in their context (SQuAD 2.0; task.unanswerable)"
            )
        if not any(self.trainable(ex) for ex in examples):
            why = "; ".join(w.removeprefix(f"{name}: ") for w in tally.warnings(name))
            if examples:  # every answer misplaced: say that alone
                why = (
                    f"none of its {tally.bad} answers is in its context near its answer_start; "
                    "check the answers' text and answer_start offsets"
                )
            raise UserError(
                f"{name}: no usable questions (the file holds {tally.questions})"
                + (f": {why}" if why else "")
            )
        return examples

    def has_gold(self, example: Example) -> bool:
        return bool(example.get("answers")) or bool(example.get("impossible"))

    def trainable(self, example: Example) -> bool:
        if example.get("impossible"):  # SQuAD 2.0: every window's target is [CLS]
            return True
        return example.get("answers") is None or bool(_placed(example["answers"]))

    def example_from_text(self, text: str, text_pair: str | None, i: int) -> Example:
        if not text_pair:
            raise UserError("a QA model needs --text QUESTION and --text-pair CONTEXT")
        return {
            "id": str(i),
            "line": 0,
            "title": "",
            "question": text,
            "context": text_pair,
            "answers": [],
        }

    def submission_json(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """{question id: answer text} ("" for no answer), as SQuAD's evaluate-v1.1.py /
        evaluate-v2.0.py and KorQuAD's script take the predictions."""
        return {str(r["id"]): r["prediction"] or "" for r in rows}

    def show_prediction(self, example: Example, row: dict[str, Any]) -> str:
        score = row.get("score")
        shown = "(no answer)" if row.get("no_answer") else repr(row["prediction"])
        return f"{shown}  (score {'-' if score is None else f'{score:.3f}'})"

    def split(
        self, examples: list[Example], cfg: TaskConfig, seed: int
    ) -> tuple[list[Example], list[Example]]:
        """(train, valid) by article: paragraphs of one article share facts and wording, so a
        valid question from an article seen in training would overstate the score. Articles
        are shuffled with `seed` and moved to valid until it holds ~valid_ratio of questions."""
        counts: Counter[str] = Counter(ex["article"] for ex in examples)
        articles = sorted(counts)
        if len(articles) < 2:
            raise UserError(
                f"cannot split QA examples by article: they all come from one article "
                f"({articles[0] if articles else 'none'!r}); give task.valid a separate file"
            )
        target = max(1, round(cfg.valid_ratio * len(examples)))
        valid_articles = groups_for_valid(articles, counts, target, seed)
        train = [ex for ex in examples if ex["article"] not in valid_articles]
        valid = [ex for ex in examples if ex["article"] in valid_articles]
        return train, valid

    def label_names(self, examples: list[Example]) -> list[str]:
        return []

    # -- encoding ------------------------------------------------------------------------------

    def encode(
        self, examples: list[Example], tok: Tokenizer, cfg: TaskConfig, labels: list[str]
    ) -> Features:
        """One feature per context window.

        Feature keys: input_ids, token_type_ids (0 for [CLS] question [SEP], 1 after),
        example_index, window (its number within the example), start_position /
        end_position (token indices of the answer in this window; 0 = [CLS] when the window
        does not hold it), offsets ((T, 2) character offsets into the context for context
        tokens, -1 elsewhere) and max_context ((T,) bool: this window is the one where the
        token has the most context on both sides — decode only starts answers there, as BERT).

        The doc_stride overlap is capped at half of a window's context tokens, so windows
        always advance by at least half a window even when a long question leaves little room.
        """
        between = pair_separator(tok)  # [SEP], or RoBERTa's </s></s>
        budget_max = cfg.max_len - 2 - len(between)
        if budget_max - cfg.max_query_len < MIN_CONTEXT_TOKENS:
            raise UserError(
                f"task.max_query_len={cfg.max_query_len} leaves fewer than {MIN_CONTEXT_TOKENS} "
                f"context tokens per window in task.max_len={cfg.max_len}; lower "
                f"task.max_query_len (e.g. to {max(1, cfg.max_len // 4)}) or raise task.max_len"
            )
        ids = special_ids(tok)
        cls_id, sep_id = ids["cls"], ids["sep"]
        contexts = list(dict.fromkeys(ex["context"] for ex in examples))
        with _NoTruncation(tok):
            q_encs = tok.encode_batch([ex["question"] for ex in examples], add_special_tokens=False)
            c_encs = tok.encode_batch(contexts, add_special_tokens=False)
        ctx_tokens: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for text, enc in zip(contexts, c_encs, strict=True):
            ctx_tokens[text] = (
                np.asarray(enc.ids, dtype=np.int32),
                _whole_characters(text, _trimmed_offsets(text, enc.offsets)),
            )
        features = Features()
        n_unmapped = n_unheld = 0
        features.warnings.extend(_question_cut_warnings(examples, q_encs, cfg.max_query_len))
        for ei, (ex, q_enc) in enumerate(zip(examples, q_encs, strict=True)):
            q_ids = q_enc.ids[: cfg.max_query_len]
            # what a served or API row says of its cut (inference.scored rows)
            truncated = {"truncated_question_tokens": len(q_enc.ids) - len(q_ids)}
            c_ids, c_off = ctx_tokens[ex["context"]]
            budget = budget_max - len(q_ids)
            overlap = min(cfg.doc_stride, budget // 2)
            spans: list[tuple[int, int]] = []
            for ans in _placed(ex["answers"]):
                a = ans["answer_start"]
                span = _char_to_tokens(c_off, a, a + len(ans["text"]))
                if span is None:
                    n_unmapped += 1
                else:
                    spans.append(span)
            wins = _windows(len(c_ids), budget, overlap)
            best_window = _max_context_windows(len(c_ids), wins)
            head = [cls_id, *q_ids, *between]
            n_head = len(head)
            held = any(ts >= ws and te < we for ts, te in spans for ws, we in wins)
            n_unheld += bool(spans) and not held
            for wi, (ws, we) in enumerate(wins):
                n_ctx = we - ws
                input_ids = np.concatenate(
                    [np.asarray(head, dtype=np.int32), c_ids[ws:we], np.asarray([sep_id], np.int32)]
                )
                type_ids = np.zeros(len(input_ids), dtype=np.int8)
                type_ids[n_head:] = 1
                offsets = np.full((len(input_ids), 2), -1, dtype=np.int32)
                offsets[n_head : n_head + n_ctx] = c_off[ws:we]
                max_ctx = np.zeros(len(input_ids), dtype=bool)
                max_ctx[n_head : n_head + n_ctx] = best_window[ws:we] == wi
                start = end = 0
                for ts, te in spans:  # the first answer that fits in this window
                    if ts >= ws and te < we:
                        start, end = n_head + ts - ws, n_head + te - ws
                        break
                features.append(
                    {
                        "input_ids": input_ids,
                        "token_type_ids": type_ids,
                        "example_index": ei,
                        "window": wi,
                        "start_position": start,
                        "end_position": end,
                        "offsets": offsets,
                        "max_context": max_ctx,
                        "truncated": truncated,
                    }
                )
        if n_unmapped:
            features.warnings.append(
                f"{n_unmapped} answers cover no token of their context (whitespace only, or "
                "removed by the tokenizer's normalizer) and give no training target"
            )
        if n_unheld:  # every window of theirs is taught "no answer here", as in run_qa
            features.warnings.append(
                f"{n_unheld} of {len(examples):,} questions have an answer that no window holds "
                f"whole (windows overlap by task.doc_stride={cfg.doc_stride} tokens): they train "
                "as if their context had no answer and cannot be answered right; raise "
                "task.doc_stride or task.max_len"
            )
        return features

    def collate(self, features: list[Feature], pad_id: int) -> dict[str, torch.Tensor]:
        batch = base_collate(features, pad_id)
        batch["start_positions"] = torch.tensor(
            [f["start_position"] for f in features], dtype=torch.long
        )
        batch["end_positions"] = torch.tensor(
            [f["end_position"] for f in features], dtype=torch.long
        )
        return batch

    def head(self, cfg: HeadConfig, d_model: int, n_labels: int) -> nn.Module:
        """A linear start/end scorer per token; `n_labels` is ignored (always 2)."""
        return TokenHead(d_model, 2, cfg.dropout)

    # -- training ------------------------------------------------------------------------------

    def loss(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean of the start and end cross-entropies over each window's real tokens."""
        x = logits.float()
        mask = batch["attention_mask"].to(x.device).bool()
        start_logits = x[..., 0].masked_fill(~mask, _NEG)
        end_logits = x[..., 1].masked_fill(~mask, _NEG)
        start_pos = batch["start_positions"].to(x.device)
        end_pos = batch["end_positions"].to(x.device)
        loss = (F.cross_entropy(start_logits, start_pos) + F.cross_entropy(end_logits, end_pos)) / 2
        with torch.no_grad():
            s_ok = start_logits.argmax(-1) == start_pos
            e_ok = end_logits.argmax(-1) == end_pos
            n = torch.full((), float(x.shape[0]), device=x.device)  # filled there: no copy
            counts = {
                "loss_sum": loss.detach() * n,
                "n": n,
                "start_correct": s_ok.sum().float(),
                "end_correct": e_ok.sum().float(),
                "span_correct": (s_ok & e_ok).sum().float(),
            }
        return loss, counts

    def train_metrics(self, counts: dict[str, float]) -> dict[str, float]:
        """loss, and the share of windows whose start and end tokens are both argmax-exact."""
        n = max(float(counts.get("n", 0.0)), 1.0)
        return {
            "loss": float(counts.get("loss_sum", 0.0)) / n,
            "span_acc": float(counts.get("span_correct", 0.0)) / n,
            "start_acc": float(counts.get("start_correct", 0.0)) / n,
            "end_acc": float(counts.get("end_correct", 0.0)) / n,
        }

    # -- evaluation ----------------------------------------------------------------------------

    def decode(
        self,
        outputs: list[np.ndarray],
        features: list[Feature],
        examples: list[Example],
        cfg: TaskConfig,
        labels: list[str],
    ) -> list[dict[str, Any]]:
        """The best span per example over all its windows: top n_best starts x ends among
        context tokens, end >= start, at most max_answer_len tokens, ranked by the sum of the
        start and end logits (as the official SQuAD post-processing). {"text", "score",
        "start_char"}: score is the span's probability in its window, p(start) x p(end) over
        the window's context tokens (as transformers' QA pipeline gives it; a logit sum read
        as a confidence was above 1); text "" / score None / start_char -1 when no window
        offers a valid span. With task.unanswerable (SQuAD 2.0) the answer is "" (with
        "no_answer": True and score the null's probability) where the lowest null score over
        the windows, [CLS] start + end logits, beats the best span's by more than
        task.null_threshold (as transformers' run_qa post-processing)."""
        best: list[tuple[float, int, int] | None] = [None] * len(examples)
        null: list[tuple[float, float] | None] = [None] * len(examples)
        k = max(1, cfg.n_best)
        for out, feat in zip(outputs, features, strict=True):
            logits = np.asarray(out, dtype=np.float32)[: len(feat["input_ids"])]
            off = feat["offsets"]
            cand = (off[:, 0] >= 0) & (off[:, 1] > off[:, 0])
            ei = feat["example_index"]
            if cfg.unanswerable:
                value = float(logits[0, 0] + logits[0, 1])
                if null[ei] is None or value < null[ei][0]:
                    with_cls = cand.copy()
                    with_cls[0] = True
                    null[ei] = (value, _span_probability(logits, with_cls, 0, 0))
            start_cand = cand & feat["max_context"] if "max_context" in feat else cand
            s_idx = _top(logits[:, 0], start_cand, k)
            e_idx = _top(logits[:, 1], cand, k)
            if len(s_idx) == 0 or len(e_idx) == 0:
                continue
            length = e_idx[None, :] - s_idx[:, None]
            ok = (length >= 0) & (length < cfg.max_answer_len)
            if not ok.any():
                continue
            score = logits[s_idx, 0][:, None] + logits[e_idx, 1][None, :]
            score = np.where(ok, score, -np.inf)
            i, j = np.unravel_index(int(np.argmax(score)), score.shape)
            value = float(score[i, j])
            if best[ei] is None or value > best[ei][0]:
                prob = _span_probability(logits, cand, int(s_idx[i]), int(e_idx[j]))
                best[ei] = (value, int(off[s_idx[i], 0]), int(off[e_idx[j], 1]), prob)
        preds = []
        for ex, b, nb in zip(examples, best, null, strict=True):
            if nb is not None and (b is None or nb[0] - b[0] > cfg.null_threshold):
                pred = {"text": "", "score": nb[1], "start_char": -1, "no_answer": True}
            elif b is None:
                pred = {"text": "", "score": None, "start_char": -1}
            else:
                pred = {"text": ex["context"][b[1] : b[2]], "score": b[3], "start_char": b[1]}
            if nb is not None:  # for best_f1: the margin, and the span answering would give
                pred["null_margin"] = nb[0] - b[0] if b is not None else float("inf")
                pred["span_text"] = ex["context"][b[1] : b[2]] if b is not None else ""
            preds.append(pred)
        return preds

    def metrics(
        self,
        predictions: list[dict[str, Any]],
        examples: list[Example],
        cfg: TaskConfig,
        labels: list[str],
    ) -> dict[str, Any]:
        """em and f1 in percent (official SQuAD v1.1 script, or KorQuAD 1.0's character F1
        and its normalisation when task.f1 is char), answers_failed (questions with F1 0)
        and questions (how many had gold answers). With unanswerable questions (SQuAD 2.0)
        they score 1 for an empty answer and 0 for any other, as the official v2.0 script,
        and has_ans_em / has_ans_f1 / no_ans_acc split the scores by kind."""
        self.f1_mode = cfg.f1
        totals = {"has": [0, 0.0, 0.0], "no": [0, 0.0, 0.0]}  # kind: [n, em, f1]
        failed = 0
        for pred, ex in zip(predictions, examples, strict=True):
            if not self.has_gold(ex):
                continue
            em, f1 = _scores(pred, ex, cfg.f1)
            kind = totals["no" if ex.get("impossible") else "has"]
            kind[0] += 1
            kind[1] += em
            kind[2] += f1
            failed += f1 == 0.0
        n = totals["has"][0] + totals["no"][0]
        if n == 0:
            return {"questions": 0}
        out = {
            "em": 100.0 * (totals["has"][1] + totals["no"][1]) / n,
            "f1": 100.0 * (totals["has"][2] + totals["no"][2]) / n,
            "answers_failed": failed,
            "questions": n,
        }
        if cfg.unanswerable or totals["no"][0]:  # each kind's scores where it has questions
            has_n, no_n = totals["has"][0], totals["no"][0]
            if has_n:
                out["has_ans_em"] = 100.0 * totals["has"][1] / has_n
                out["has_ans_f1"] = 100.0 * totals["has"][2] / has_n
            if no_n:
                out["no_ans_acc"] = 100.0 * totals["no"][1] / no_n
            out["no_answer_questions"] = no_n
            out["extra"] = {"null_threshold": cfg.null_threshold}
            best = _best_null_threshold(predictions, examples, cfg.f1)
            if best is not None:
                out["best_f1"], out["extra"]["best_f1_null_threshold"] = best
        return out

    def one_answer(self, rows: list[dict[str, Any]]) -> str | None:
        """Nothing answered (an empty prediction) for 99 % of the scored questions or more,
        where most have an answer: what a SQuAD 2.0 model that learned only [CLS] does."""
        scored = [r for r in rows if r.get("em") is not None]
        if len(scored) < MIN_ROWS_TO_JUDGE:
            return None
        empty = sum(not (r.get("prediction") or "").strip() for r in scored)
        none = sum(r.get("gold") == "" for r in scored)
        if empty < ONE_ANSWER_SHARE * len(scored) or none >= ONE_ANSWER_SHARE * len(scored):
            return None
        every = "all" if empty == len(scored) else f"{empty:,} of the"
        return (
            f"answers nothing for {every} {len(scored):,} questions ({none / len(scored):.0%} "
            "of them have no answer)"
        )

    def prediction_rows(
        self, predictions: list[dict[str, Any]], examples: list[Example], labels: list[str]
    ) -> list[dict[str, Any]]:
        """One row per question; em/f1 (f1 in percent) scored as task.f1 was at the last
        read/metrics call, None for a question without gold answers. The context is cut to ~200 characters around the
        gold answer (or the prediction) so the rows stay readable."""
        rows = []
        for pred, ex in zip(predictions, examples, strict=True):
            golds = [a["text"] for a in ex["answers"] or []]
            text = _text(pred)
            em: bool | None = None
            f1: float | None = None
            if self.has_gold(ex):
                em, f1_frac = _scores(pred, ex, self.f1_mode)
                f1 = round(100.0 * f1_frac, 2)
            placed = _placed(ex["answers"])
            anchor = placed[0]["answer_start"] if placed else pred.get("start_char", -1)
            rows.append(
                {
                    "id": ex["id"],
                    "question": ex["question"],
                    "context": _snippet(ex["context"], anchor),
                    "gold": golds[0] if golds else ("" if ex.get("impossible") else None),
                    "answers": golds,
                    "prediction": text,
                    "score": pred.get("score") if isinstance(pred, dict) else None,
                    **(
                        {"no_answer": True}
                        if isinstance(pred, dict) and pred.get("no_answer")
                        else {}
                    ),
                    "em": em,
                    "f1": f1,
                }
            )
        return rows


# ---------------------------------------------------------------------------------------------
# Small helpers


def _max_context_windows(n: int, windows: list[tuple[int, int]]) -> np.ndarray:
    """For each context token, the window where it has the most context (BERT's
    _check_is_max_context: min(left, right) + 0.01 * length, first window on ties)."""
    best = np.zeros(n, dtype=np.int32)
    best_score = np.full(n, -np.inf)
    for wi, (ws, we) in enumerate(windows):
        pos = np.arange(ws, we)
        score = np.minimum(pos - ws, we - 1 - pos) + 0.01 * (we - ws)
        better = score > best_score[ws:we]
        best[ws:we][better] = wi
        best_score[ws:we][better] = score[better]
    return best


def _span_probability(logits: np.ndarray, context: np.ndarray, start: int, end: int) -> float:
    """p(start) x p(end), each a softmax of its logits over the window's context tokens."""
    p = 1.0
    for channel, token in ((0, start), (1, end)):
        z = logits[context, channel].astype(np.float64)
        p *= float(np.exp(logits[token, channel] - z.max()) / np.exp(z - z.max()).sum())
    return p


def _top(values: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values where `keep`, best first."""
    idx = np.flatnonzero(keep)
    if len(idx) > k:
        idx = idx[np.argpartition(-values[idx], k - 1)[:k]]
    return idx[np.argsort(-values[idx], kind="stable")]


def _best_null_threshold(
    predictions: list[dict[str, Any]], examples: list[Example], mode: str
) -> tuple[float, float] | None:
    """(F1 in percent, task.null_threshold that gives it): the official v2.0 script's
    best_f1, found on these questions. Start from answering nothing everywhere, then answer
    the questions in order of their null margin (null score - best span score), each with
    its best span; the best total and the margin where it is reached. Choosing it on the
    validation set flatters the validation F1: use it for a test set."""
    items = []  # (margin, F1 answering nothing, F1 answering with the span, unanswerable)
    for pred, ex in zip(predictions, examples, strict=True):
        margin = pred.get("null_margin")
        if not (ex.get("answers") or ex.get("impossible")) or margin is None or margin != margin:
            continue  # no gold, no null score (a v1.1 run), or a NaN from non-finite logits
        nothing = _scores({"text": ""}, ex, mode)[1]
        span = _scores({"text": pred["span_text"]}, ex, mode)[1]
        items.append((margin, nothing, span, bool(ex.get("impossible"))))
    margins = np.array([m for m, *_ in items], dtype=np.float64)
    finite = margins[np.isfinite(margins)]
    if not len(finite):
        return None
    order = np.argsort(margins, kind="stable")
    m = margins[order]
    gain = np.array([span - nothing for _, nothing, span, _ in items])[order]
    answered = sum(nothing for _, nothing, _, _ in items) + np.r_[0.0, np.cumsum(gain)]
    # candidate cuts: below every finite margin (answer only the -inf ones), then the end of
    # each run of equal finite margins (a cut answers a whole tie); answered[k]: the first k
    # questions in margin order answered
    ends = [int(np.sum(m == -np.inf))]
    ends += [
        k + 1 for k in range(len(m)) if np.isfinite(m[k]) and (k + 1 == len(m) or m[k + 1] != m[k])
    ]
    k = max(ends, key=lambda e: (answered[e], -e))
    cut = float(finite.min() - 1.0) if k == ends[0] else float(m[k - 1])
    # the F1 of that cut as `metrics` adds it up (by kind, in file order: the same rounding)
    sums = {True: 0.0, False: 0.0}
    for mg, nothing, span, impossible in items:
        sums[impossible] += span if mg <= cut else nothing
    return 100.0 * (sums[False] + sums[True]) / len(items), cut


def _scores(pred: Any, ex: Example, mode: str) -> tuple[bool, float]:
    """(exact match, F1) of a prediction for a question with gold: an unanswerable one
    (SQuAD 2.0) is right only when answered with nothing."""
    if ex.get("impossible"):  # as the official v2.0 script: the normalized answer is empty
        normalize = korquad_normalize if mode == "char" else squad_normalize
        empty = not normalize(_text(pred))
        return empty, float(empty)
    return answer_scores(_text(pred), [a["text"] for a in ex["answers"]], mode)


def _text(pred: Any) -> str:
    return pred.get("text", "") if isinstance(pred, dict) else str(pred or "")


def _snippet(context: str, anchor: int, width: int = 200) -> str:
    if len(context) <= width:
        return context
    anchor = max(0, anchor)
    lo = max(0, min(anchor - width // 3, len(context) - width))
    hi = lo + width
    return ("…" if lo > 0 else "") + context[lo:hi] + ("…" if hi < len(context) else "")
