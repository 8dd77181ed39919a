"""Reports on run directories: tables, curves, confusion matrices, example-level diffs and a
conclusion per comparison group, as report.md and a self-contained report.html.

    build_report([Path("runs/a"), Path("runs/b")], Path("report"))  # or a folder: "runs/matrix"
    report_command(["runs/a", "runs/b"], "report/")  # what `encoderlab report` calls

Modules: load (run directories -> RunData), metrics (numbers from records), compare (what
differs, groups, conclusions), diffs (example-level), tables, figures, render (Markdown/HTML),
build (assembling the document).
"""

from encoderlab.reporting.build import build_report, report_command
from encoderlab.reporting.load import RunData, find_runs, load_run, load_runs

__all__ = ["RunData", "build_report", "find_runs", "load_run", "load_runs", "report_command"]
