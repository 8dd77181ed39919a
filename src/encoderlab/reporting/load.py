"""Reading run directories into RunData: run.json, config.yaml, metrics.jsonl and, for a
fine-tuning run, eval/valid.json and predictions/valid.jsonl. Read only; nothing is written.

A run still in progress is read as it stands (a metrics line cut short is skipped). A damaged
run (a truncated run.json, metrics lines that are not UTF-8 JSON) is still reported: what
cannot be read is left out, with one warning line on stderr and in RunData.warnings.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoderlab.config import read_yaml
from encoderlab.errors import first_line
from encoderlab.runs import DAMAGED_HINT, DamagedRunFile, Run, find_runs
from encoderlab.tasks.registry import metric_mode, task_class

PRETRAIN_PRIMARY = "mlm_acc"  # fine-tuning tasks declare theirs (encoderlab.tasks.registry)


@dataclass
class RunData:
    """Everything a report needs from one run directory."""

    path: Path
    info: dict[str, Any]  # run.json
    config: dict[str, Any]  # config.yaml as written (not re-validated: the schema may move on)
    model: dict[str, Any]  # the model the run really used (model_config.json, else config.model)
    records: list[dict[str, Any]]  # metrics.jsonl
    env: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] | None = None  # eval/valid.json
    predictions: list[dict[str, Any]] | None = None  # predictions/valid.jsonl
    warnings: list[str] = field(default_factory=list)  # what could not be read
    shown_as: str = ""  # the name in a report where two runs share a folder name (load_runs)

    @property
    def name(self) -> str:
        return self.shown_as or self.path.name

    @property
    def task(self) -> str:
        """A registered task type's name, or pretrain."""
        if self.info.get("task"):
            return str(self.info["task"])
        kind = str(self.info.get("kind", ""))
        if kind.startswith("finetune/"):
            return kind.split("/", 1)[1]
        task = self.config.get("task")
        if kind == "finetune" or (not kind and isinstance(task, dict)):  # no kind: run.json lost
            return str((task or {}).get("type", "classification"))
        return "pretrain"

    @property
    def primary(self) -> str:
        """The task's primary metric, without the valid/ prefix."""
        if self.task == "pretrain":  # ELECTRA runs are judged by replaced-token F1
            return "disc_f1" if self.config.get("objective") == "electra" else PRETRAIN_PRIMARY
        chosen = (self.config.get("task") or {}).get("metric")  # task.metric, if the run set it
        if isinstance(chosen, str) and chosen:
            return chosen
        return getattr(task_class(self.task), "primary_metric", "acc")

    @property
    def primary_mode(self) -> str:
        """ "max" or "min": which way the primary metric improves."""
        chosen = (self.config.get("task") or {}).get("metric") if self.task != "pretrain" else None
        if isinstance(chosen, str) and chosen:
            return metric_mode(chosen)
        return getattr(self.task_info, "primary_mode", "max")

    @property
    def task_info(self) -> object | None:
        """The task's registered class (what it declares), None for pretraining or an
        unknown task type."""
        return None if self.task == "pretrain" else task_class(self.task)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == kind]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _jsonl(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):  # cut short by a kill, or damaged
            continue
        if isinstance(row, dict):  # a line that is JSON but not a row is damage too
            rows.append(row)
    return rows


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _scores_ok(value: Any) -> bool:
    """per_class / per_type: {name: {precision, recall, f1, support: numbers}}."""
    return isinstance(value, dict) and all(
        isinstance(s, dict) and all(_number(v) for v in s.values()) for s in value.values()
    )


def _extra_problems(extra: dict[str, Any]) -> list[str]:
    """The parts of eval/valid.json's `extra` the report cannot draw (a damaged file, or one
    another version wrote): each would be a traceback in a table or a figure."""
    bad = []
    labels, matrix = extra.get("labels"), extra.get("confusion")
    if labels is not None or matrix is not None:
        square = (
            isinstance(labels, list)
            and isinstance(matrix, list)
            and len(matrix) == len(labels)
            and all(
                isinstance(row, list) and len(row) == len(labels) and all(map(_number, row))
                for row in matrix
            )
        )
        if not square:
            bad += ["labels", "confusion"]
    bad += [k for k in ("per_class", "per_type") if k in extra and not _scores_ok(extra[k])]
    ci = extra.get("ci95")
    if ci is not None and not (
        isinstance(ci, dict)
        and all(
            isinstance(b, list) and len(b) == 2 and (all(map(_number, b)) or b == [None, None])
            for b in ci.values()  # [null, null]: no interval (a diverged run's NaN scores)
        )
    ):
        bad.append("ci95")
    return bad


def _evaluation(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    """eval/valid.json, less what cannot be reported (with a warning naming it)."""
    ev = _json(path)
    if ev is None:
        return None
    if not isinstance(ev, dict):
        warnings.append(f"{path}: not a JSON object; reported without it")
        return None
    extra = ev.get("extra")
    if extra is None:
        return ev
    if not isinstance(extra, dict):
        warnings.append(f"{path}: 'extra' is not a JSON object; reported without it")
        return {**ev, "extra": {}}
    bad = _extra_problems(extra)
    if bad:
        warnings.append(f"{path}: unreadable {', '.join(bad)} in 'extra'; reported without them")
        return {**ev, "extra": {k: v for k, v in extra.items() if k not in bad}}
    return ev


def _run_info(run: Run, warnings: list[str]) -> dict[str, Any]:
    try:
        info = run.info
    except DamagedRunFile as e:  # its message names the file, the fault and the fix
        warnings.append(f"{str(e).removesuffix('; ' + DAMAGED_HINT)}; reported without it")
        return {}
    except (OSError, ValueError) as e:  # unreadable (permissions, I/O), or not UTF-8
        reason = e.strerror if isinstance(e, OSError) and e.strerror else first_line(e)
        warnings.append(f"{run.path / 'run.json'}: unreadable ({reason}); reported without it")
        return {}
    return info if isinstance(info, dict) else {}


def load_run(path: str | Path) -> RunData:
    run = Run.open(path)
    config = read_yaml(run.path / "config.yaml", "run config")  # one line when damaged
    model = _json(run.path / "model_config.json")
    if not isinstance(model, dict):
        model = dict(config.get("model") or {})
    if model.get("vocab_size") is None:
        model["vocab_size"] = (config.get("tokenizer") or {}).get("vocab_size")
    warnings: list[str] = []
    info = _run_info(run, warnings)
    bad: list[int] = []
    records = run.metrics(bad_lines=bad)
    if bad:
        warnings.append(
            f"{run.path / 'metrics.jsonl'}: skipped {len(bad)} line(s) that are not UTF-8 JSON "
            f"(line {', '.join(map(str, bad[:3]))}{', ...' if len(bad) > 3 else ''})"
        )
    evaluation = _evaluation(run.path / "eval" / "valid.json", warnings)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    return RunData(
        path=run.path,
        info=info,
        config=config,
        model=model,
        records=records,
        env=_json(run.path / "env.json") or {},
        evaluation=evaluation,
        predictions=_jsonl(run.path / "predictions" / "valid.jsonl"),
        warnings=warnings,
    )


def load_runs(paths: list[str | Path]) -> list[RunData]:
    """The runs under `paths`. Runs with the same folder name (a copy of a run in another
    folder) are named parent/name, else by their whole path: the report keys figures,
    example-level differences and labels by name, so one would silently replace the other."""
    runs = [load_run(p) for p in find_runs(paths)]
    for name in {r.name for r in runs}:
        same = [r for r in runs if r.name == name]
        if len(same) < 2:
            continue
        longer = [f"{r.path.parent.name}/{r.path.name}" for r in same]
        if len(set(longer)) < len(longer):
            longer = [str(r.path) for r in same]
        for r, shown in zip(same, longer, strict=True):
            r.shown_as = shown
    return runs
