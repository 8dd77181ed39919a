"""The sweep file: its schema (the base config, the searched `space`, metric and mode, search
algorithm, scheduler, resources, budget), read and checked into a `Sweep`. Every key of the
space and of the fixed overrides must name a config field: a typo fails before Ray starts.
"""

from __future__ import annotations

import copy
import glob
import itertools
import math
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from encoderlab.config import (
    Config,
    FinetuneConfig,
    Section,
    _format_validation_error,
    build,
    check_plain_name,
    named_data_files,
    read_yaml,
    set_dotted,
)
from encoderlab.errors import UserError
from encoderlab.tasks.registry import metric_mode


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dist(_Spec):
    """One searched field: exactly one of grid / choice / uniform / loguniform / randint."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None  # both ends included

    @model_validator(mode="after")
    def _one(self) -> Dist:
        given = [
            k
            for k in ("grid", "choice", "uniform", "loguniform", "randint")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of grid: [...], choice: [...], uniform: [lo, hi], "
                f"loguniform: [lo, hi], randint: [lo, hi] (got {', '.join(given) or 'none'})"
            )
        values = self.grid if self.grid is not None else self.choice
        if values is not None and not values:
            raise ValueError("the list of values is empty")
        for kind in ("uniform", "loguniform", "randint"):
            lo_hi = getattr(self, kind)
            if lo_hi is not None:
                lo, hi = lo_hi
                if kind == "randint" and lo > hi:  # both ends included: [3, 3] is 3
                    raise ValueError(f"randint: need lo <= hi (got [{lo}, {hi}])")
                if kind != "randint" and not lo < hi:
                    raise ValueError(f"{kind}: need lo < hi (got [{lo}, {hi}])")
                if kind == "loguniform" and lo <= 0:
                    raise ValueError("loguniform: lo must be > 0")
        return self

    @property
    def kind(self) -> str:
        for k in ("grid", "choice", "uniform", "loguniform", "randint"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError


class Scheduler(_Spec):
    type: Literal["none", "asha"] = "none"
    grace_period: int = 1  # evaluations before a trial can be stopped
    reduction_factor: float = 2.0
    max_t: int = 100  # evaluations at most per trial (ASHA's last rung)

    @model_validator(mode="after")
    def _check(self) -> Scheduler:
        if self.grace_period < 1 or self.max_t < self.grace_period:
            raise ValueError("need 1 <= grace_period <= max_t")
        if self.reduction_factor <= 1:
            raise ValueError("reduction_factor must be > 1")
        return self


class Resources(_Spec):
    cpu: float = 1.0
    gpu: float = 0.0  # a fraction shares one GPU between trials

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):  # -1 used to reach Ray (a traceback)
            raise ValueError("must be > 0 (CPUs per trial, e.g. 1 or 0.5)")
        return v

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, v: float) -> float:
        if not (math.isfinite(v) and v >= 0):
            raise ValueError("must be >= 0 (GPUs per trial, e.g. 0, 1 or 0.5)")
        return v


class SweepSpec(_Spec):
    name: str | None = None  # default: the sweep file's name (its folder's for sweep.yaml)
    base: str  # config file, relative to the sweep file
    kind: Literal["auto", "finetune", "pretrain"] = "auto"  # auto: finetune if it has `task:`
    space: dict[str, Dist]
    metric: str = "valid/acc"
    mode: Literal["max", "min"] | None = None  # default: min for losses and errors, else max
    num_samples: int = 1  # grid: repeats of the whole grid; random/optuna: trials
    search: Literal["grid", "random", "optuna"] = "random"
    scheduler: Scheduler = Scheduler()
    resources: Resources = Resources()
    max_concurrent: int | None = None
    time_budget_min: float | None = None
    overrides: dict[str, Any] = {}  # fixed dotted overrides for every trial
    out: str | None = None  # default sweeps/<name>

    @model_validator(mode="before")
    @classmethod
    def _scheduler_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("scheduler"), str):
            data = {**data, "scheduler": {"type": data["scheduler"]}}
        return data

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if not self.space:
            raise ValueError("space is empty; name at least one config field to search")
        if self.num_samples < 1:
            raise ValueError("num_samples must be at least 1")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if self.mode is None:  # as train.early_stop_mode: "max" ranked valid/loss worst-first
            self.mode = metric_mode(self.metric.rsplit("/", 1)[-1])
        return self

    @field_validator("out")
    @classmethod
    def _out(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():  # it read as the default folder, without a word
            raise ValueError("is empty; give a folder (or leave out: for sweeps/<name>)")
        return v

    @field_validator("time_budget_min")
    @classmethod
    def _budget(cls, v: float | None) -> float | None:
        if v is not None and not (math.isfinite(v) and v > 0):
            # -1 ended the sweep before its first trial; 0 read as no budget at all
            raise ValueError("must be > 0 minutes (leave it out for no budget)")
        return v


class Sweep:
    """A loaded sweep file: the spec plus everything resolved against the file and the cwd."""

    def __init__(self, path: Path, spec: SweepSpec, base: Path, schema: type[Section]) -> None:
        self.path = path
        self.spec = spec
        self.base = base
        self.schema = schema
        stem = path.stem if path.stem != "sweep" else path.resolve().parent.name
        self.name = check_plain_name(spec.name, f"{path}: name") or stem
        self.out = Path(spec.out or Path("sweeps") / self.name).resolve()
        self.cwd = Path.cwd().resolve()
        self.held = False  # this process holds the out folder's lock (folder.hold)

    @property
    def kind(self) -> str:
        return "finetune" if self.schema is FinetuneConfig else "pretrain"


def _field_exists(schema: type[BaseModel], dotted: str) -> str | None:
    """None when `dotted` names a config field; otherwise the one-line reason."""
    section: Any = schema
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        fields = getattr(section, "model_fields", None)
        if fields is None or part not in fields:
            where = ".".join(parts[:i]) or "the top level"
            valid = ", ".join(fields) if fields else "(none: it is a value)"
            return f"unknown config field '{dotted}'; valid keys in {where}: {valid}"
        section = _section_class(fields[part].annotation)
        if section is None and i < len(parts) - 1:
            return f"'{'.'.join(parts[: i + 1])}' is a value, not a section"
    return None


def _section_class(ann: Any) -> type[BaseModel] | None:
    """The config section a field holds: its class, also when the field may be null
    (`self_pretrain: SelfPretrainConfig | None`)."""
    for t in (ann, *typing.get_args(ann)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _takes_whole_numbers(schema: type[BaseModel], dotted: str) -> bool:
    """Whether the field `dotted` (which exists) is an int (or int | None) field."""
    section: Any = schema
    *path, last = dotted.split(".")
    for part in path:
        section = _section_class(section.model_fields[part].annotation)
    ann = section.model_fields[last].annotation
    kinds = {t for t in (typing.get_args(ann) or (ann,)) if t is not type(None)}
    return kinds == {int}


def _check_ranges(p: Path, spec: SweepSpec, schema: type[BaseModel]) -> None:
    """uniform / loguniform draw fractions: on a whole-number field (batch_size, n_layer)
    every trial failed after Ray started."""
    for key, dist in spec.space.items():
        if dist.kind in ("uniform", "loguniform") and _takes_whole_numbers(schema, key):
            lo, hi = getattr(dist, dist.kind)
            raise UserError(
                f"{p}: space '{key}': {dist.kind}: draws fractions and {key} takes whole "
                f"numbers; write randint: [{math.ceil(lo)}, {math.floor(hi)}] (or choice: [...])"
            )


def load_sweep(path: str | Path) -> Sweep:
    p = Path(path)
    data = read_yaml(p)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as e:
        raise UserError(_format_validation_error(e, SweepSpec, str(p))) from None
    base = (p.parent / spec.base) if not Path(spec.base).is_absolute() else Path(spec.base)
    base_data = read_yaml(base)
    if spec.kind == "auto":
        schema: type[Section] = FinetuneConfig if "task" in base_data else Config
    else:
        schema = FinetuneConfig if spec.kind == "finetune" else Config
    sweep = Sweep(p, spec, base, schema)
    for section, keys in (("space", spec.space), ("overrides", spec.overrides)):
        for key in keys:
            if key in _SWEEP_SETS:  # the sweep names each trial and puts it in its runs/
                raise UserError(
                    f"{p}: {section} key '{key}': the sweep sets {key} for every trial (its "
                    "runs go to <out>/runs); drop it, or set out: in the sweep file"
                    if key == "runs_dir"
                    else f"{p}: {section} key '{key}': the sweep names every trial; drop it"
                )
            why = _field_exists(schema, key)
            if why:
                raise UserError(f"{p}: {section} key '{key}': {why}")
    _check_grid(p, spec)
    _check_ranges(p, spec, schema)
    _check_metric(p, spec, base, schema)
    _check_values(p, spec, base, schema)
    return sweep


_SWEEP_SETS = ("name", "runs_dir")  # what trial_config sets itself: searching it did nothing


def _check_grid(p: Path, spec: SweepSpec) -> None:
    """`grid:` means every combination, which only `search: grid` runs: random and optuna
    sampled it like `choice:`, so a 2 x 2 grid quietly ran one trial."""
    if spec.search == "grid":
        return
    for key, dist in spec.space.items():
        if dist.kind == "grid":
            raise UserError(
                f"{p}: space '{key}': grid: is for search: grid (every combination); with "
                f"search: {spec.search} write choice: {_flow(dist.grid)}"
            )


def _flow(values: Any) -> str:
    """`[0.001, cls]`: a YAML value as the sweep file would write it, on one line."""
    import yaml

    return yaml.safe_dump(values, default_flow_style=True, width=10**6).strip()


def check_data_files(sweep: Sweep) -> None:
    """The data files the trials will read exist (from sweep.cwd, where the trials run): a missing
    one used to fail every trial after Ray started. Paths a trial's values set, hub names
    (`hf:...`) and globs are left to the trials."""
    data = read_yaml(sweep.base)
    for key, value in sweep.spec.overrides.items():
        set_dotted(data, key.split("."), value, f"{sweep.path}: {key}")
    try:
        cfg = build(sweep.schema, data, "")
    except UserError:
        return  # only the trials' values make it valid: they will say
    for key, value in named_data_files(cfg):
        if key in sweep.spec.space:
            continue
        if ":" in value.split("/")[0] or glob.has_magic(value) or (sweep.cwd / value).exists():
            continue
        where = sweep.path if key in sweep.spec.overrides else sweep.base
        raise UserError(
            f"{where}: {key}={value}: no such file (from {sweep.cwd}, where the trials run); "
            "fix the path"
        )


def _candidates(dist: Dist) -> list[Any]:
    """The values a trial may get: the listed ones, or both ends of a range."""
    listed = dist.grid if dist.grid is not None else dist.choice
    if listed is not None:
        return list(listed)
    return list(getattr(dist, dist.kind))


def _check_values(p: Path, spec: SweepSpec, base: Path, schema: type[Section]) -> None:
    """A searched value no trial can run with (`train.lr: {grid: [-1]}`) is refused now: it
    used to fail its trials one by one and the sweep still ended with exit code 0. A value is
    judged together with every combination of the other fields' candidates, so one that only
    some combinations allow (n_head with d_model) stays: those trials fail on their own."""
    data = read_yaml(base)
    for key, value in spec.overrides.items():
        set_dotted(data, key.split("."), value, f"{p}: {key}")
    candidates = {k: _candidates(d) for k, d in spec.space.items()}
    if math.prod(len(c) for c in candidates.values()) > 1024:
        return  # too many to try; the trials will say
    keys = list(candidates)
    built: dict[tuple[int, ...], str | None] = {}  # a combination (value indices): why not

    def reason(idx: tuple[int, ...]) -> str | None:
        if idx not in built:
            trial = copy.deepcopy(data)
            for k, j in zip(keys, idx, strict=True):
                set_dotted(trial, k.split("."), candidates[k][j], f"{p}: space {k}")
            try:
                build(schema, trial, "")
                built[idx] = None
            except UserError as e:
                built[idx] = str(e).removeprefix(": ")
        return built[idx]

    combos = list(itertools.product(*(range(len(candidates[k])) for k in keys)))
    if not any(reason(idx) is None for idx in combos):
        raise UserError(f"{p}: no trial of this space has a valid config; e.g. {built[combos[0]]}")
    for i, key in enumerate(keys):
        for j, value in enumerate(candidates[key]):
            with_it = [idx for idx in combos if idx[i] == j]
            if all(reason(idx) for idx in with_it):  # stops at the first that works
                raise UserError(
                    f"{p}: space '{key}': no trial can run with {value!r} "
                    f"({built[with_it[0]]}); remove it or change its range"
                )


def _check_metric(p: Path, spec: SweepSpec, base: Path, schema: type[Section]) -> None:
    """`metric` must be one the base config's runs report (a typo used to fail every trial
    at its first evaluation). A base the trials' overrides alone make valid is not judged."""
    from encoderlab.objectives import validation_metric_names

    data = read_yaml(base)
    try:
        for key, value in spec.overrides.items():
            set_dotted(data, key.split("."), value, f"{p}: {key}")
        known = sorted(f"valid/{n}" for n in validation_metric_names(build(schema, data, "")))
    except UserError:
        return
    if known and spec.metric not in known:
        raise UserError(f"{p}: metric '{spec.metric}': the runs report {', '.join(known)}")
