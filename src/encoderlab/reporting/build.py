"""build_report: read runs, compute every section, write report.md, report.html and the PNGs."""

from __future__ import annotations

import hashlib
import itertools
import time
from pathlib import Path

from encoderlab.errors import UserError
from encoderlab.reporting import figures, fmt
from encoderlab.reporting.compare import Group, conclusion, differing_fields, group_runs, labels
from encoderlab.reporting.diffs import ExampleDiff, example_diff
from encoderlab.reporting.load import RunData, load_runs
from encoderlab.reporting.metrics import final_metrics, percent
from encoderlab.reporting.render import (
    Bullets,
    Document,
    Figure,
    Paragraph,
    Section,
    to_html,
    to_markdown,
)
from encoderlab.reporting.tables import (
    confusion_table,
    diff_tables,
    epoch_table,
    hyperparameter_table,
    per_class_table,
    record_table,
    source_table,
)

DIFF_LIMIT = 20  # examples listed each way per pair
ALL_PAIRS_UP_TO = 4  # groups with more runs compare the best run against each other run


def _slug(text: str) -> str:
    """A file-name/anchor-safe form of a run name; long ones keep their end, where run names
    differ (the timestamp) and where a path names its run, and a hash of the whole (two runs
    of one name in long paths ending alike shared one figure)."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in text)
    if len(safe) <= 80 and safe == text:
        return safe
    # shortened, or a character replaced (lr0.1 and lr0-1 were one figure): the whole's hash
    return f"{safe[-71:]}-{hashlib.sha256(text.encode('utf-8', 'replace')).hexdigest()[:8]}"


def _pairs(group: Group) -> list[tuple[RunData, RunData]]:
    runs = [r for r in group.runs if r.predictions]
    if len(runs) <= ALL_PAIRS_UP_TO:
        return list(itertools.combinations(runs, 2))
    from encoderlab.reporting.metrics import metric_value

    metric, sign = runs[0].primary, -1 if runs[0].primary_mode == "min" else 1
    values = {id(r): metric_value(r, metric) for r in runs}
    # the best the conclusion names: a failed run (diverged, crashed) is not ranked there
    ranked = [r for r in runs if r.info.get("status") != "failed"] or runs
    best = max(
        ranked, key=lambda r: float("-inf") if values[id(r)] is None else sign * values[id(r)]
    )
    return [(best, r) for r in runs if r is not best]


def _curve_sections(groups, group_labels, fig_dir: Path) -> list[Section]:
    out = []
    for gi, g in enumerate(groups, 1):
        keys = differing_fields(g.runs)
        legend = ", ".join(keys) if keys else "nothing in the configs (legend: run names)"
        blocks: list = [
            Paragraph(f"{len(g.runs)} run(s). What differs between them: {legend}."),
        ]
        for x in ("step", "epoch"):
            if x == "epoch" and not any(r.of_kind("epoch") for r in g.runs):
                continue
            png = figures.curves(
                g.runs, group_labels[gi - 1], fig_dir / f"curves-{gi}-{x}.png", x=x
            )
            if png is not None:
                caption = (
                    f"{g.title}: loss and {g.runs[0].primary} by {x} "
                    "(dashed: train log windows, solid: validation)"
                )
                blocks.append(Figure(png, caption))
        if len(blocks) == 1:
            blocks.append(Paragraph("No metrics logged yet."))
        out.append(Section(f"Curves {gi}: {g.title}", blocks, level=3, anchor=f"curves-{gi}"))
    return out


def _task_blocks(run: RunData, fig_dir: Path) -> list:
    blocks = _details_blocks(run, fig_dir)
    interval = _interval_paragraph(run)
    return blocks + ([interval] if interval is not None else [])


def _interval_paragraph(run: RunData) -> Paragraph | None:
    """The evaluation's bootstrap 95% intervals (eval/valid.json extra.ci95), one sentence."""
    extra = (run.evaluation or {}).get("extra") or {}
    ci = extra.get("ci95")
    if not isinstance(ci, dict) or not ci:
        return None
    final = final_metrics(run)
    parts = []
    for name, bounds in ci.items():
        if None in bounds:  # no interval: the scores were not finite
            continue
        lo, hi = (percent(run.task, name, b) for b in bounds)
        value = percent(run.task, name, final.get(name))
        shown = "" if value is None else f"{value:.2f} "
        parts.append(f"{name} {shown}[{lo:.2f}, {hi:.2f}]")
    if not parts:
        return None
    n = extra.get("examples")
    samples = extra.get("bootstrap_samples", "")
    return Paragraph(
        f"95% bootstrap confidence intervals ({samples} resamples of the {fmt.count(n)} "
        f"validation examples): {'; '.join(parts)}."
    )


def _details_blocks(run: RunData, fig_dir: Path) -> list:
    by_source = source_table(run)  # a pretraining run on a mix: valid/<source>/...
    blocks: list = [by_source] if by_source is not None else []
    ev = run.evaluation or {}
    extra = ev.get("extra") or {}
    details = getattr(run.task_info, "report_details", None)
    if details == "confusion":
        table = confusion_table(run)
        if table is None:
            return [
                Paragraph("No eval/valid.json with a confusion matrix (the run has not finished).")
            ]
        png = figures.confusion(
            extra["labels"],
            extra["confusion"],
            f"{run.name}",
            fig_dir / f"confusion-{_slug(run.name)}.png",
        )
        blocks += [
            Figure(png, f"{run.name}: confusion matrix (rows gold, columns predicted)"),
            table,
        ]
        per_class = per_class_table(run)
        if per_class is not None:
            blocks.append(per_class)
    elif details == "answers":
        final = final_metrics(run)
        failed, total = final.get("answers_failed"), final.get("questions")
        if failed is None:
            return [Paragraph("No final QA evaluation yet.")]
        blocks.append(
            Paragraph(
                f"answers failed: {int(failed):,} of {fmt.count(total)} questions "
                f"(F1 = 0); EM {final.get('em', 0):.2f}, F1 {final.get('f1', 0):.2f}"
            )
        )
    elif details == "per_class":  # multilabel: per-label scores, no confusion matrix
        table = per_class_table(run)
        blocks.append(table if table is not None else Paragraph("No per-label scores yet."))
    elif details == "per_type":
        table = per_class_table(run, key="per_type")
        blocks.append(table if table is not None else Paragraph("No per-type scores yet."))
    return blocks


def _diff_blocks(diff: ExampleDiff) -> list:
    a, b = diff.a.name, diff.b.name
    summary = (
        f"{diff.compared:,} validation examples with gold labels in both runs: both right "
        f"{diff.both_right:,}, both wrong {diff.both_wrong:,}, only {a} right "
        f"{len(diff.a_right_b_wrong):,}, only {b} right {len(diff.b_right_a_wrong):,}."
    )
    if diff.p_value is not None:
        summary += f" Sign test on the disagreements: p = {diff.p_value:.3g}."
    return [Paragraph(summary), *diff_tables(diff, DIFF_LIMIT)]


REPORT_MARK = "comparison group(s) (same task, same validation data); generated"


def _check_not_users(out: Path) -> None:
    """report.md / report.html replace only an earlier report's: a user's own file of that
    name in --out is refused before anything is written."""
    for name in ("report.md", "report.html"):
        path = out / name
        if not path.is_file():
            continue
        try:
            ours = REPORT_MARK in path.read_text(encoding="utf-8", errors="replace")[:200_000]
        except OSError:
            ours = False
        if not ours:
            raise UserError(
                f"--out {out}: {path} is not an encoderlab report; choose another --out folder"
            )


FIGURE_NAMES = ("curves-*.png", "confusion-*.png")  # what figures.py writes here


def _remove_stale_figures(out: Path, fig_dir: Path) -> None:
    """A rerun into the folder of an earlier report leaves no stale figures. Only then, and
    only files named as this module names them: a user's own PNGs in --out/figures are kept
    (_check_not_users has made sure a report.md / report.html there is ours)."""
    if not any((out / name).is_file() for name in ("report.md", "report.html")):
        return
    for pattern in FIGURE_NAMES:
        for old in fig_dir.glob(pattern):
            old.unlink()


def _baseline(group: Group) -> str | None:
    """The floor of a group's task on its validation set (a classifier's majority label),
    from the first run with predictions."""
    info = group.runs[0].task_info
    rows = next((r.predictions for r in group.runs if r.predictions), None)
    if info is None or not rows or not hasattr(info, "baseline"):
        return None
    floor = info().baseline(rows)
    return f"{group.title}: {floor}, the floor to judge these runs by." if floor else None


def build_report(
    run_dirs: list[Path] | Path | str,
    out_dir: Path | str,
    title: str | None = None,
    findings: list[str] | None = None,
) -> Path:
    """Write out_dir/report.md, out_dir/report.html (self-contained) and out_dir/figures/*.png
    for the given run directories (or folders of runs); returns the path of report.html.
    `findings` (a study's `compare:` lines) open the conclusions."""
    paths = [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)
    runs = load_runs(paths)
    if not runs:
        raise UserError(
            f"{', '.join(map(str, paths)) or '(no paths)'}: no run directories to report on"
        )
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file; give a folder for the report")
    _check_not_users(out)
    fig_dir = out / "figures"
    try:
        fig_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # /proc/x, a read-only mount: the user's choice of path
        raise UserError(f"--out {out}: cannot make this folder ({e.strerror or e})") from None
    _remove_stale_figures(out, fig_dir)

    groups = group_runs(runs)
    group_labels = [labels(g.runs) for g in groups]
    diffs: dict[tuple[str, str], ExampleDiff] = {}
    for g in groups:
        for a, b in _pairs(g):
            d = example_diff(a, b)
            if d is not None:
                diffs[(a.name, b.name)] = d

    if title is None:
        title = (
            f"encoderlab report: {Path(paths[0]).name}"
            if len(paths) == 1 and len(runs) > 1
            else f"encoderlab report: {len(runs)} run(s)"
        )
    intro = [
        Paragraph(
            f"{len(runs)} run(s) in {len(groups)} comparison group(s) (same task, same validation "
            f"data); generated {fmt.timestamp(time.time())}."
        )
    ]
    sections: list[Section] = []

    lines = list(findings or [])
    lines += [conclusion(g, group_labels[i], diffs) for i, g in enumerate(groups)]
    lines += [line for g in groups if (line := _baseline(g)) is not None]
    lines += [
        f"{r.name}: the best checkpoint {r.evaluation['learned_nothing']} on validation, so it "
        "learned nothing; its scores are that one answer's"
        for r in runs
        if r.evaluation and isinstance(r.evaluation.get("learned_nothing"), str)
    ]
    sections.append(Section("Conclusions", [Bullets(lines)]))

    sections.append(Section("Hyperparameters", [hyperparameter_table(runs)]))

    legend_note = Paragraph(
        "One figure per comparison group; one colour per run, named by the config fields that "
        "differ between the runs of the group (the run name where nothing differs)."
    )
    sections.append(Section("Curves", [legend_note]))
    sections += _curve_sections(groups, group_labels, fig_dir)

    sections.append(Section("Per-epoch results"))
    sections += [
        Section(f"Per epoch: {r.name}", [epoch_table(r)], level=3, anchor=f"epochs-{_slug(r.name)}")
        for r in runs
    ]

    sections += _task_sections(runs, fig_dir)
    sections += _diff_sections(diffs)

    sections.append(Section("Training records"))
    sections += [
        Section(f"Record: {r.name}", [record_table(r)], level=3, anchor=f"record-{_slug(r.name)}")
        for r in runs
    ]

    doc = Document(title, intro, sections)
    (out / "report.md").write_text(to_markdown(doc, out), encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(to_html(doc), encoding="utf-8")
    return html_path


def _task_sections(runs: list[RunData], fig_dir: Path) -> list[Section]:
    """Confusion matrices and task details: one subsection per fine-tuning run (and per
    pretraining run on a mix of sources)."""
    task_sections = [
        Section(
            f"{r.task}: {r.name}", _task_blocks(r, fig_dir), level=3, anchor=f"task-{_slug(r.name)}"
        )
        for r in runs
        if r.task != "pretrain" or source_table(r) is not None  # pretraining: sources of a mix
    ]
    head = Section(
        "Confusion matrices and task details",
        [] if task_sections else [Paragraph("No fine-tuning runs.")],
    )
    return [head, *task_sections]


def _diff_sections(diffs: dict[tuple[str, str], ExampleDiff]) -> list[Section]:
    """Example-level differences: one subsection per pair of runs with predictions on the
    same validation examples."""
    diff_sections = [
        Section(f"{a} vs {b}", _diff_blocks(d), level=3, anchor=f"diff-{_slug(a)}-{_slug(b)}")
        for (a, b), d in diffs.items()
    ]
    note = Paragraph(
        "Pairs of runs on the same task and the same validation examples (matched by "
        f"id); up to {DIFF_LIMIT} examples listed each way. QA counts exact match as "
        "right; tagging counts a sentence as right when every tag is."
    )
    none = (
        [] if diff_sections else [Paragraph("No two runs with predictions on the same examples.")]
    )
    return [Section("Example-level differences", [note, *none]), *diff_sections]


def report_command(paths: list[str], out: str) -> Path:
    """`encoderlab report RUN_OR_FOLDER... --out DIR`: the CLI's entry point."""
    if not paths:
        raise UserError("encoderlab report: pass at least one run directory or folder of runs")
    if not str(out).strip():  # Path("") is the current folder: files where not asked
        raise UserError("--out '': give the folder to write the report to (e.g. --out report)")
    return build_report([Path(p) for p in paths], Path(out))
