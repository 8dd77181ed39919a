"""What differs between runs (for legends and labels), comparison groups, and the one-line
conclusion each group's numbers support."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from encoderlab.reporting import fmt
from encoderlab.reporting.diffs import ExampleDiff
from encoderlab.reporting.load import RunData
from encoderlab.reporting.metrics import (
    in_percent,
    metric_value,
    n_evaluated,
    percent,
    primary_value,
    progress,
)
from encoderlab.runs import live_status
from encoderlab.tasks.registry import task_kind

# config keys that name or describe a run rather than change it
IGNORED = {"name", "description", "runs_dir"}
METRIC_NAMES = {
    "acc": "validation accuracy",
    "f1": "validation F1",
    "mlm_acc": "validation MLM accuracy",
}
# differences that do not change what is learned (listed after the ones that do)
BOOKKEEPING = {
    "train.threads",
    "train.device",
    "train.eval_every",
    "train.eval_batches",
    "train.log_every",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.checkpoint_minutes",
    "train.checkpoint_at_eval",
    "data.num_workers",
    "data.cache_dir",
    "task.test",
}
PRETRAIN_UNIT = "held-out blocks"  # fine-tuning tasks declare theirs (example_unit)


def flat_config(run: RunData) -> dict[str, str]:
    """config.yaml as dotted keys, with model.* replaced by the model the run really used."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = fmt.general(node) if not isinstance(node, list) else str(node)

    walk({k: v for k, v in run.config.items() if k not in IGNORED and k != "model"}, "")
    walk({"model": run.model}, "")
    return out


def differing_fields(runs: list[RunData]) -> list[str]:
    """Config keys whose values differ between the runs: fields that change the experiment
    first, then bookkeeping (threads, logging cadence) and keys only some configs have (a
    config written by an older or newer encoderlab)."""
    if len(runs) < 2:
        return []
    flats = [flat_config(r) for r in runs]
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    differ = [k for k in keys if len({f.get(k, fmt.DASH) for f in flats}) > 1]

    def minor(key: str) -> bool:
        return key in BOOKKEEPING or any(key not in f for f in flats)

    return [k for k in differ if not minor(k)] + [k for k in differ if minor(k)]


def _short(value: str, limit: int = 48) -> str:
    """A long value cut to `limit` characters. Paths keep their prefix (`scratch:`, `hf:`) and
    as many trailing components as fit: cutting `scratch:/long/runs/pre` from the left would
    make it read like `/long/runs/pre`, the pretrained initialisation it is not."""
    if len(value) <= limit:
        return value
    prefix, _, path = value.rpartition(":") if ":" in value.split("/", 1)[0] else ("", "", value)
    prefix = f"{prefix}:" if prefix else ""
    parts = path.rstrip("/").split("/")
    if len(parts) > 1:
        kept = parts[-1]
        for part in reversed(parts[:-1]):
            if len(prefix) + len(kept) + len(part) + 3 > limit:
                break
            kept = f"{part}/{kept}"
        short = f"{prefix}…/{kept}"
        if len(short) <= limit:
            return short
    return "…" + value[-(limit - 1) :]


def labels(runs: list[RunData], max_fields: int = 4) -> dict[str, str]:
    """run name -> "key=value, ..." over the fields that differ between the runs. Where one value
    of a field is the most common (a study whose arms each change one thing from a baseline), a
    run shows that field only where it departs from it: the 6-layer arm reads "model.n_layer=6",
    not the first four fields that differ anywhere, and the baseline reads "common settings".
    The run name where nothing differs (or the labels would not tell the runs apart)."""
    keys = differing_fields(runs)
    flats = [flat_config(r) for r in runs]
    common: dict[str, str] = {}
    for k in keys:
        counts = Counter(f.get(k, fmt.DASH) for f in flats).most_common(2)
        if counts[0][1] >= 2 and (len(counts) == 1 or counts[0][1] > counts[1][1]):
            common[k] = counts[0][0]
    out: dict[str, str] = {}
    for r, flat in zip(runs, flats, strict=True):
        shown = [k for k in keys if k not in common or flat.get(k, fmt.DASH) != common[k]]
        parts = [f"{k}={_short(flat.get(k, fmt.DASH))}" for k in shown[:max_fields]]
        if len(shown) > max_fields:
            parts.append(f"(+{len(shown) - max_fields} more)")
        out[r.name] = ", ".join(parts) or ("common settings" if keys else r.name)
    if len(set(out.values())) < len(out):
        out = {r.name: f"{r.name}: {out[r.name]}" if keys else r.name for r in runs}
    return out


# per task type (others: a label column, and the class a binary F1 is of)
_SCORED_BY = {"qa": ("f1",), "tagging": ("tag_column",), "pos": ("tag_column",)}


def data_key(run: RunData) -> str:
    """Which validation data the run is measured on (runs are compared only on the same)."""
    if run.task == "pretrain":
        data = run.config.get("data") or {}
        corpus = data.get("corpus")
        corpus = ", ".join(map(str, corpus)) if isinstance(corpus, list) else corpus
        sources = [
            f"{s.get('name')}: {', '.join(map(str, s.get('files') or []))}"
            + (f" (weight {s['weight']:g})" if isinstance(s.get("weight"), (int, float)) else "")
            for s in data.get("sources") or []
            if isinstance(s, dict)
        ]  # data.sources: the mixed corpora are the data too
        corpus = "; ".join([*([corpus] if corpus else []), *sources]) or "(no corpus named)"
        # masked-token accuracy depends on what a token is: a smaller vocabulary or shorter
        # blocks score higher without a better model, so they are other measurements
        tok = run.config.get("tokenizer") or {}
        tokens = (
            f"{tok.get('kind')} {tok.get('vocab_size')}" if not tok.get("path") else tok["path"]
        )
        objective = run.config.get("objective") or "mlm"  # ELECTRA's metrics are other ones
        return (
            f"{corpus} (valid_ratio {data.get('valid_ratio')}, seed {run.config.get('seed')}, "
            f"tokenizer {tokens}, block_len {data.get('block_len')}"
            + (f", objective {objective}" if objective != "mlm" else "")
            + ")"
        )
    task = run.config.get("task") or {}
    data = str(run.info.get("valid_source") or task.get("valid") or task.get("train"))
    gold = _scored_by(run)
    return f"{data} ({', '.join(gold)})" if gold else data


def _scored_by(run: RunData, skip: str = "") -> list[str]:
    """The settings the gold labels and scores come from (`label_column 'target'`): the gold
    labels come from a column, and some scores are defined by a setting (F1 over characters
    or words; the class whose F1 is meant): runs that differ are not comparable."""
    task = run.config.get("task") or {}
    keys = _SCORED_BY.get(task_kind(run.task), ("label_column", "positive_label"))
    return [f"{k} {task[k]!r}" for k in keys if task.get(k) is not None and k != skip]


@dataclass
class Group:
    task: str
    data: str
    runs: list[RunData] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.task} on {self.data}"


def _digest(run: RunData) -> str | None:
    """The hash of the validation examples the run read (run.json `data.valid.sha256`,
    recorded since 2026-12-01), None for a run without it or a pretraining run."""
    recorded = run.info.get("data")
    valid = recorded.get("valid") if isinstance(recorded, dict) else None
    digest = valid.get("sha256") if isinstance(valid, dict) else None
    return digest if isinstance(digest, str) and run.task != "pretrain" else None


def same_data(run: RunData, by_hash: bool = True) -> tuple[str, str]:
    """What makes two runs' validation data the same: the hash of the examples read where the
    run has it, not the path it was given: a dev.csv of another folder, or a split of another
    ratio under the same rounded name, is other data; the same file by another path is the
    same. The scoring settings of data_key stay part of it. A run without the hash goes by
    data_key, and so do the runs compared with it (`by_hash` False): a run made before the
    hash was recorded is still compared with today's runs on the same file."""
    digest = _digest(run)
    if digest is None or not by_hash:
        return run.task, data_key(run)
    # the hash covers the labels read: which column they came from is in it already
    return run.task, f"sha256 {digest} {', '.join(_scored_by(run, skip='label_column'))}"


def group_runs(runs: list[RunData]) -> list[Group]:
    """Runs measured on the same validation data, each group in the order its first run
    came. A run without the hash (made before 2026-12-01) joins the one hashed group of its
    task on the same file and settings, if exactly one; else it goes by data_key alone. (One
    such run used to send every run of its task to data_key, so runs on other examples under
    one file name were ranked and paired as one set.)"""
    hashed = [r for r in runs if r.task == "pretrain" or _digest(r) is not None]
    by_name: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for r in hashed:
        by_name.setdefault((r.task, data_key(r)), set()).add(same_data(r))
    groups: dict[tuple[str, str], Group] = {}
    for r in runs:
        key = same_data(r)
        if r.task != "pretrain" and _digest(r) is None:
            matches = by_name.get((r.task, data_key(r)), set())
            key = next(iter(matches)) if len(matches) == 1 else same_data(r, by_hash=False)
        if key not in groups:
            shown = data_key(r)
            if any(g.task == r.task and g.data == shown for g in groups.values()):
                # the same name, other examples
                shown += f" (other examples: {key[1].split()[1][:8]})"
            groups[key] = Group(r.task, shown)
        groups[key].runs.append(r)
    return list(groups.values())


def _named(run: RunData, names: dict[str, str], value: str = "") -> str:
    """`name (label, value)`, leaving out the label where it is just the name."""
    label = names.get(run.name, run.name)
    inside = [x for x in (label if label != run.name else "", value) if x]
    return f"{run.name} ({', '.join(inside)})" if inside else run.name


SCALED = {"mcc", "pearson", "spearman"}  # correlations: shown x100 (as the tables' headers say)


def _value(task: str, metric: str, value: float) -> str:
    """A metric as the conclusions write it: `61.20 %` for a rate or a percentage, `38.48
    (x100)` for a correlation, the number itself otherwise (mse is no percentage)."""
    if metric in SCALED:
        return f"{value:.2f} (x100)"
    return f"{value:.2f} %" if in_percent(task, metric) else f"{value:.4g}"


def _margin(task: str, metric: str, value: float) -> str:
    return f"{value:.2f} points" if in_percent(task, metric) else f"{value:.4g}"


def _p_text(p: float | None) -> str:
    if p is None:
        return ""
    verdict = "beyond" if p < 0.05 else "not beyond"
    return f" (sign test p = {p:.3g}: {verdict} chance at the 5 % level)"


def _paired(
    wins: int, losses: int, unit: str, info: Any, names: tuple[str, str], p: float | None
) -> str:
    """`; of the N <unit> where exactly one <is right>, A wins x and B y (sign test ...)`."""
    n = wins + losses
    right = getattr(info, "right_means", "is right")
    if n == 0:  # "of the 0 questions where exactly one ..." said it the long way
        return f"; no {unit[:-1]} where exactly one {right}"
    return (
        f"; of the {n:,} {unit if n != 1 else unit[:-1]} where exactly one {right}, "
        f"{names[0]} wins {wins:,} and {names[1]} {losses:,}{_p_text(p)}"
    )


def _unfinished(run: RunData) -> str:
    """How a run that did not finish stands (`interrupted at step 810`), "" for one that
    finished (or stopped early, which is finishing)."""
    status = live_status(run.info, run.path)
    if status.startswith(("finished", "failed", "stopped", "?")) or status in ("done",):
        return ""
    _, step = progress(run)
    return f"{status.split(' (')[0]} at step {step:,}" if step is not None else status


def conclusion(
    group: Group, names: dict[str, str], diffs: dict[tuple[str, str], ExampleDiff]
) -> str:
    """One sentence: the best run on the primary metric, its margin over the next, and the
    number of examples behind it (with the paired sign test where predictions exist)."""
    metric = group.runs[0].primary
    what = METRIC_NAMES.get(metric, f"validation {metric}")
    info = group.runs[0].task_info
    unit = PRETRAIN_UNIT if group.task == "pretrain" else getattr(info, "example_unit", "examples")
    sign = 1 if group.runs[0].primary_mode == "min" else -1  # best first
    failed = [r for r in group.runs if r.info.get("status") == "failed"]  # diverged, crashed
    scored = [
        (percent(r.task, metric, metric_value(r, metric)), r) for r in group.runs if r not in failed
    ]
    missing = [r.name for v, r in scored if v is None]
    scored = sorted([(v, r) for v, r in scored if v is not None], key=lambda t: sign * t[0])
    tail = f" No {what} yet: {', '.join(missing)}." if missing else ""
    if failed:
        tail += f" Failed, not ranked: {', '.join(_named(r, names) for r in failed)}."
    unfinished = [r for _, r in scored if _unfinished(r)]
    if unfinished:  # ranked by their best evaluation so far, which a finished run re-checks
        tail += (
            " Not finished (judged by their best evaluation so far): "
            + ", ".join(f"{r.name} ({_unfinished(r)})" for r in unfinished)
            + "."
        )
    if not scored:
        return f"{group.title}: no run has a {what} yet ({', '.join(missing)})."
    best_v, best = scored[0]
    n = n_evaluated(best)
    over = f" over {fmt.count(n)} {unit if n != 1 else unit[:-1]}" if n else ""
    if len(scored) == 1:
        return (
            f"{group.title}: only {_named(best, names)} has a {what}: "
            f"{_value(best.task, metric, best_v)}{over}; nothing to compare.{tail}"
        )
    next_v, nxt = scored[1]
    ns = [n_evaluated(r) for _, r in scored[:2]]  # the best's, then the next's
    if ns[0] != ns[1]:
        over = " over " + " and ".join(fmt.count(x) for x in ns) + f" {unit}"
    margin = abs(best_v - next_v)
    pair = diffs.get((best.name, nxt.name))
    if pair is not None:
        wins, losses = len(pair.a_right_b_wrong), len(pair.b_right_a_wrong)
    elif (rev := diffs.get((nxt.name, best.name))) is not None:
        pair, wins, losses = rev, len(rev.b_right_a_wrong), len(rev.a_right_b_wrong)
    paired = ""
    if pair is not None:
        paired = _paired(wins, losses, unit, info, (best.name, nxt.name), pair.p_value)
    if margin == 0:
        return (
            f"{group.title}: {_named(best, names)} and {_named(nxt, names)}"
            f" tie on {what} at {_value(best.task, metric, best_v)}{over}{paired}.{tail}"
        )
    return (
        f"{group.title}: best on {what} is {_named(best, names)} with "
        f"{_value(best.task, metric, best_v)}, {_margin(best.task, metric, margin)} "
        f"{'below' if sign == 1 else 'above'} "
        f"{_named(nxt, names, _value(nxt.task, metric, next_v))}{over}{paired}.{tail}"
    )


def pair_finding(a: RunData, b: RunData, diff: ExampleDiff | None, names: tuple[str, str]) -> str:
    """One sentence on a pair a study names in `compare:` (e.g. pretrained vs scratch): both
    primary metrics, the margin, and the paired sign test where both runs predicted."""
    label_a, label_b = names
    by_hash = _digest(a) is not None and _digest(b) is not None
    if same_data(a, by_hash) != same_data(b, by_hash) or a.primary != b.primary:
        return (
            f"{label_a} vs {label_b}: not comparable ({a.task} {a.primary} on {data_key(a)} "
            f"vs {b.task} {b.primary} on {data_key(b)})."
        )
    metric = a.primary
    what = METRIC_NAMES.get(metric, f"validation {metric}")
    va, vb = (percent(r.task, metric, primary_value(r)) for r in (a, b))
    if va is None or vb is None:
        return f"{label_a} vs {label_b}: {what} missing for {label_a if va is None else label_b}."
    better = va > vb if a.primary_mode != "min" else va < vb
    verdict = "ahead" if better else ("level" if va == vb else "behind")
    info = a.task_info
    examples = PRETRAIN_UNIT if a.task == "pretrain" else getattr(info, "example_unit", "examples")
    n = n_evaluated(a)
    over = f" over {fmt.count(n)} {examples}" if n else ""
    paired = ""
    if diff is not None:
        wins, losses = len(diff.a_right_b_wrong), len(diff.b_right_a_wrong)
        paired = _paired(wins, losses, examples, info, names, diff.p_value)
    return (
        f"{label_a} vs {label_b}: {what} {_value(a.task, metric, va)} vs "
        f"{_value(b.task, metric, vb)} ({'+' if va >= vb else '-'}"
        f"{_margin(a.task, metric, abs(va - vb))}, {label_a} {verdict}){over}{paired}."
    )
