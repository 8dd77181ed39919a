"""A sweep's results: one row per trial (from trials/*.json and its run directory), ranked,
written as trials.csv and trials.md, with best.yaml, summary.json, one plot per searched
field and the report of the trial runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from encoderlab.config import read_yaml, save_config
from encoderlab.data.tables import write_rows
from encoderlab.errors import UserError
from encoderlab.jobs import one_line, write_json
from encoderlab.runs import find_run, wait_for_writer
from encoderlab.sweep.spec import Sweep

STATUSES = ("completed", "stopped early", "failed", "interrupted")
SETTLE_S = 30.0  # how long, in all, to wait for trial workers still ending their runs


def _tune_view(tune_status: dict[str, str], trial_id: str) -> str | None:
    if trial_id in tune_status:
        return tune_status[trial_id]
    for key, value in tune_status.items():
        if trial_id in key:
            return value
    return None


def collect(
    sweep: Sweep,
    tune_status: dict[str, str] | None = None,
    tune_configs: dict[str, dict[str, Any]] | None = None,
    budget_end: float | None = None,
) -> list[dict[str, Any]]:
    """One row per trial from trials/*.json and each trial's run directory; marks runs that
    Tune stopped early. Ranked: best metric first, failed trials last. A trial in Tune's
    saved state that never wrote its record (it was starting when the sweep was interrupted)
    gets a row from `tune_configs`. `budget_end`: when the sweep's time budget ran out."""
    rows = []
    deadline = time.monotonic() + SETTLE_S
    recorded = set()
    for f in sorted((sweep.out / "trials").glob("*.json")):
        rec = json.loads(f.read_text())
        recorded.add(rec["trial_id"])
        run_dir = Path(rec["run_dir"]) if rec.get("run_dir") else None
        if run_dir is None:
            found = find_run(sweep.out / "runs", rec["name"])
            run_dir = found
        if run_dir is not None and wait_for_writer(run_dir, deadline):
            rec = json.loads(f.read_text())  # the worker wrote its last word: read it again
        value, evals = _best(sweep, run_dir)
        seen = _tune_view(tune_status or {}, rec["trial_id"])
        status, info = _settle(sweep, rec, run_dir, seen, evals, budget_end)
        if status != rec["status"]:
            rec["status"] = status
            write_json(f, rec)
        rows.append(
            {
                "trial": rec["trial_id"],
                **{k: rec["values"].get(k) for k in sweep.spec.space},
                "metric": value,
                "evals": evals,
                "steps": info.get("steps", 0),
                "train_s": round(float(info.get("train_seconds", 0.0)), 1),
                "wall_s": round(_wall(rec, run_dir), 1),
                "status": status,
                "error": rec.get("error") or "",
                "run_dir": str(run_dir) if run_dir else "",
            }
        )
    for trial_id, config in (tune_configs or {}).items():
        seen = (tune_status or {}).get(trial_id)
        if trial_id in recorded or seen not in ("unfinished", "error"):
            continue  # recorded above, or ended before it started (the time budget): never ran
        rows.append(
            {
                "trial": trial_id,
                **{k: config.get(k) for k in sweep.spec.space},
                **{"metric": None, "evals": 0, "steps": 0, "train_s": 0.0, "wall_s": 0.0},
                "status": "interrupted" if seen == "unfinished" else "failed",
                "error": "" if seen == "unfinished" else "its worker died before it started",
                "run_dir": "",
            }
        )
    sign = -1 if sweep.spec.mode == "max" else 1
    # a failed trial's evaluations before it broke (a loss gone NaN) rank after every other:
    # it came first, and "best", when it had peaked above them
    rows.sort(
        key=lambda r: (
            r["status"] == "failed",
            r["metric"] is None,
            sign * (r["metric"] or 0.0),
            r["trial"],
        )
    )
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _best(sweep: Sweep, run_dir: Path | None) -> tuple[float | None, int]:
    """The trial's best value of the metric and how many evaluations reported it."""
    from encoderlab.runs import Run

    value = None
    evals = 0
    if run_dir is not None and (run_dir / "metrics.jsonl").is_file():
        for m in Run(run_dir).metrics():
            if m.get("kind") == "eval" and sweep.spec.metric in m:
                evals += 1
                v = m[sweep.spec.metric]
                if value is None or (v > value if sweep.spec.mode == "max" else v < value):
                    value = v
    return value, evals


def _settle(
    sweep: Sweep,
    rec: dict[str, Any],
    run_dir: Path | None,
    seen: str | None,
    evals: int,
    budget_end: float | None,
) -> tuple[str, dict[str, Any]]:
    """The trial's status (one of STATUSES) from its record, its run and what Tune says of it
    (`seen`), and its run's info; a run Tune stopped is marked so in run.json."""
    from encoderlab.runs import Run

    status = rec["status"]
    if run_dir is None or not (run_dir / "run.json").is_file():
        if status == "running":
            status = "failed" if seen == "error" else "interrupted"
        return status, {}
    run = Run(run_dir)
    info = run.info
    run_status = info.get("status")
    sched = sweep.spec.scheduler
    at_max_t = sched.type == "asha" and evals >= sched.max_t  # ASHA's last rung: all it runs
    if status == "failed" or run_status == "failed":
        status = "failed"
        if not rec.get("error"):
            rec["error"] = info.get("message") or info.get("stopped_because")
    elif run_status == "finished":
        status = "completed"  # fit ran to its end
    elif run_status == "stopped early":
        status = "completed" if at_max_t else "stopped early"
    elif seen == "ok":
        status = "completed" if at_max_t else "stopped early"
        why = (
            f"reached the sweep's scheduler.max_t ({sched.max_t} evaluations)"
            if at_max_t
            else _stopped_by(sweep, rec, budget_end)
        )
        with contextlib.suppress(UserError):  # a Ray worker that lives on may hold it
            run.update(
                status="stopped early",
                stopped_because=f"{why} at step {info.get('steps', 0)}",
                finished=time.time(),
                pid=None,
            )
        info = run.info
    elif seen == "error":
        status = "failed"
        rec["error"] = rec.get("error") or "the trial's worker died (see tune/ logs)"
    else:  # the sweep was interrupted while it ran: --resume continues its run
        status = "interrupted"
    return status, info


def _stopped_by(sweep: Sweep, rec: dict[str, Any], budget_end: float | None) -> str:
    """Who stopped a trial Tune ended before its run did: the time budget (what ends it
    without a scheduler, or when it ended after the budget ran out) or the scheduler."""
    spec = sweep.spec
    ended = rec.get("ended")
    if spec.time_budget_min and (
        spec.scheduler.type == "none"
        or (budget_end is not None and (ended is None or ended >= budget_end))
    ):
        return f"stopped by the sweep's time budget (time_budget_min: {spec.time_budget_min:g})"
    if spec.scheduler.type == "none":
        return "stopped by Ray Tune"
    return f"stopped early by the sweep's scheduler ({spec.scheduler.type})"


def _wall(rec: dict[str, Any], run_dir: Path | None) -> float:
    """Seconds the trial ran: from its (re)start to its end (or its run's last update), plus
    what earlier attempts ran before an interruption (`ran_s`)."""
    earlier = float(rec.get("ran_s") or 0.0)
    start = rec.get("started")
    if not start:
        return earlier
    end = rec.get("ended")
    if end is None and run_dir is not None and (run_dir / "run.json").is_file():
        end = (run_dir / "run.json").stat().st_mtime
    return earlier + max(0.0, float(end or start) - float(start))


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_outputs(
    sweep: Sweep,
    rows: list[dict[str, Any]],
    say: Callable[[str], None],
    never_ran: int = 0,
    interrupted: bool = False,
) -> None:
    """The table, best.yaml, summary.json, plots and report. `never_ran`: trials of the sweep
    that never started (the time budget ended it, or it was `interrupted`: the caller says
    how to go on then)."""
    out = sweep.out
    fields = ["rank", "trial", *sweep.spec.space, "metric", "evals", "steps", "train_s", "wall_s"]
    fields += ["status", "error", "run_dir"]
    write_rows(out / "trials.csv", rows, "csv", fieldnames=fields)
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    note = _never_ran(sweep, never_ran, interrupted)
    metric = sweep.spec.metric
    md = [f"# Sweep {sweep.name}", ""]
    md.append(
        f"{len(rows)} trials: "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n or s != "interrupted")
        + (f"; {note}" if note else "")
        + f". Ranked by {metric} ({sweep.spec.mode}, best evaluation of each trial)."
    )
    md += ["", "| " + " | ".join(f if f != "metric" else metric for f in fields) + " |"]
    md.append("|" + "---|" * len(fields))
    for r in rows:
        cells = []
        for k in fields:
            v = r.get(k)
            if k == "run_dir" and v:
                v = os.path.relpath(v, out)
            cells.append(_fmt(v).replace("|", "\\|"))
        md.append("| " + " | ".join(cells) + " |")
    (out / "trials.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    summary = {"name": sweep.name, "metric": metric, "mode": sweep.spec.mode, **counts}
    summary["never_ran"] = never_ran
    best = next(
        (r for r in rows if r["metric"] is not None and r["run_dir"] and r["status"] != "failed"),
        None,
    )
    if best is not None:
        from encoderlab.config import load_config

        cfg = load_config(Path(best["run_dir"]) / "config.yaml", schema=sweep.schema)
        base_name = read_yaml(sweep.base).get("name", sweep.name)
        cfg = cfg.model_copy(update={"runs_dir": "runs", "name": f"{base_name}-best"})
        sp = getattr(cfg, "self_pretrain", None)
        if sp is not None and sp.run and cfg.init == sp.run:
            # the best trial's own encoder: best.yaml fine-tunes from it (self_pretrain would
            # pretrain anew under the new name, and with minutes: another encoder)
            cfg = cfg.model_copy(update={"self_pretrain": None})
        save_config(cfg, out / "best.yaml")
        summary["best"] = {k: best[k] for k in ("trial", "metric", "run_dir")}
        summary["best"]["values"] = {k: best[k] for k in sweep.spec.space}
    else:  # no trial has a result: no best.yaml (not even an earlier one) to point at
        (out / "best.yaml").unlink(missing_ok=True)
    write_json(out / "summary.json", summary)
    write_plots(sweep, rows)
    run_dirs = [Path(r["run_dir"]) for r in rows if r["run_dir"] and Path(r["run_dir"]).is_dir()]
    if run_dirs:
        try:
            from encoderlab.reporting import build_report

            build_report(run_dirs, out / "report", title=f"Sweep {sweep.name}")
        except Exception as e:  # the table and best.yaml stand on their own
            say(f"warning: the report of the trial runs failed: {one_line(e)}")
    say(
        f"{len(rows)} trials: {counts['completed']} completed, {counts['stopped early']} "
        f"stopped early, {counts['failed']} failed"
        + (f", {counts['interrupted']} interrupted" if counts["interrupted"] else "")
        + (f"; {note}" if note else "")
    )
    if best is not None:
        shown = ", ".join(f"{k}={_fmt(best[k])}" for k in sweep.spec.space)
        say(f"best: {metric} {best['metric']:.4f} with {shown} ({best['run_dir']})")
        say(f"best config: {out / 'best.yaml'}")
    if counts["interrupted"] and not interrupted:
        say(f"interrupted: continue with `encoderlab sweep {sweep.path} --resume`")
    say(f"table: {out / 'trials.md'}")


def _never_ran(sweep: Sweep, n: int, interrupted: bool) -> str:
    if not n:
        return ""
    what = ("grid point" if sweep.spec.search == "grid" else "trial") + ("s" if n != 1 else "")
    if interrupted:
        return f"{n} {what} not started yet (--resume runs them)"
    budget = sweep.spec.time_budget_min
    why = f": the time budget (time_budget_min: {budget:g}) ended the sweep first" if budget else ""
    return f"{n} {what} never ran{why}"


def write_plots(sweep: Sweep, rows: list[dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir = sweep.out / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    colors = {"completed": "tab:blue", "stopped early": "tab:orange", "interrupted": "tab:gray"}
    written = []
    for key, dist in sweep.spec.space.items():
        pts = [r for r in rows if r["metric"] is not None and r.get(key) is not None]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        numeric = dist.kind in ("uniform", "loguniform", "randint") or all(
            isinstance(r[key], (int, float)) and not isinstance(r[key], bool) for r in pts
        )
        if numeric:
            xs = [float(r[key]) for r in pts]
            if dist.kind == "loguniform" or (
                xs and min(xs) > 0 and max(xs) / max(min(xs), 1e-300) >= 100
            ):
                ax.set_xscale("log")
        else:
            cats = list(dict.fromkeys(str(v) for v in (dist.grid or dist.choice or [])))
            cats += [c for c in dict.fromkeys(str(r[key]) for r in pts) if c not in cats]
            xs = [cats.index(str(r[key])) for r in pts]
            ax.set_xticks(range(len(cats)), cats)
        for status, color in colors.items():
            sel = [(x, r["metric"]) for x, r in zip(xs, pts, strict=True) if r["status"] == status]
            if sel:
                ax.scatter(*zip(*sel, strict=True), c=color, label=status, alpha=0.8)
        ax.set_xlabel(key)
        ax.set_ylabel(sweep.spec.metric)
        ax.set_title(f"{sweep.spec.metric} vs {key}")
        if pts:
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = plot_dir / f"{key.replace('/', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
