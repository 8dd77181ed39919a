"""A study's summary table: one row per stage/arm (status, its run's primary metric, wall
time), kept in study.json and printed when the study ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from encoderlab.errors import UserError
from encoderlab.study.spec import Study
from encoderlab.study.state import State


def summary_rows(state: State, study: Study) -> list[dict[str, Any]]:
    from encoderlab.reporting import load_run
    from encoderlab.reporting.metrics import primary_value

    rows = []
    for entry in study.entries():
        rec = state.arm(entry["name"])
        row = {
            "arm": entry["name"],
            "status": rec.get("status", "pending"),
            "run_dir": rec.get("run_dir"),
            "metric": None,
            "value": None,
            "seconds": rec.get("seconds"),
            "message": rec.get("message"),
        }
        if rec.get("waiting"):  # its recorded run is of another stage: no metric to show
            row.update(
                status="waiting",
                run_dir=None,
                seconds=None,
                message=f"the stage '{rec['waiting']}' did not finish",
            )
        if row["run_dir"] and Path(row["run_dir"]).is_dir():
            try:
                run = load_run(Path(row["run_dir"]))
                row["metric"] = run.primary
                row["value"] = primary_value(run)
            except (UserError, OSError, ValueError):
                pass
        rows.append(row)
    state.data["summary"] = rows
    state.save()
    return rows


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    head = ("arm", "status", "metric", "wall")
    body = []
    for r in rows:
        metric = "-" if r["value"] is None else f"{r['metric']} {r['value']:.4f}"
        wall = "-" if r["seconds"] is None else f"{r['seconds']:.0f}s"
        status = r["status"]
        if status in ("failed", "waiting") and r.get("message"):
            status = f"{status}: {r['message'][:90]}"
        body.append((r["arm"], status, metric, wall))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [fmt(head), fmt(tuple("-" * w for w in widths)), *(fmt(b) for b in body)]


def compare_lines(study: Study, rows: list[dict[str, Any]]) -> list[str]:
    """The study's `compare:` pairs in words (both metrics, the margin, the paired sign test
    on the validation examples); a pair with an arm not done says so."""
    from encoderlab.reporting import load_run
    from encoderlab.reporting.compare import pair_finding
    from encoderlab.reporting.diffs import example_diff

    by_arm = {r["arm"]: r for r in rows}
    lines = []
    for a, b in study.spec.compare:
        missing = [n for n in (a, b) if by_arm[n]["status"] != "done" or not by_arm[n]["run_dir"]]
        if missing:
            states = ", ".join(f"{n}: {by_arm[n]['status']}" for n in missing)
            lines.append(f"{a} vs {b}: not both done ({states}).")
            continue
        try:
            ra, rb = (load_run(Path(by_arm[n]["run_dir"])) for n in (a, b))
        except (UserError, OSError, ValueError) as e:
            lines.append(f"{a} vs {b}: cannot read a run ({e}).")
            continue
        lines.append(pair_finding(ra, rb, example_diff(ra, rb), (a, b)))
    return lines
