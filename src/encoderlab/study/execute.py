"""Running a study: the data first, then the stage and the arms in order, each in its own
process (`study.process`), its progress in study.json (`study.state`): done arms are skipped,
an interrupted one resumes from its checkpoint, a failed one starts over, and an arm whose
resolved command changed runs again (or takes up the intact run it made earlier with that
command); arms whose stage failed wait for it. The report of the arms' runs comes last.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from encoderlab.config import parse_override
from encoderlab.errors import UserError, signals_as_interrupt
from encoderlab.jobs import run_info
from encoderlab.runs import has_checkpoint, release_lock, take_lock, writer_alive
from encoderlab.runtime import clock_text
from encoderlab.study.data import generated_files, prepare_data
from encoderlab.study.process import launch
from encoderlab.study.spec import PLACEHOLDER_RE, Study, load_study, minilm_path
from encoderlab.study.state import STATE_FILE, State
from encoderlab.study.tables import compare_lines, format_table, summary_rows


def _resolve(text: str, values: dict[str, Callable[[], str]]) -> str:
    """The override with its placeholders filled in. A path is pasted as it is when the value
    then reads the same; one that YAML would read otherwise (a folder `exp #2`: '#' starts a
    comment; `a: b` a mapping) makes the whole value a quoted YAML (JSON) value instead."""
    found = {word: values[word]() for word in PLACEHOLDER_RE.findall(text)}
    plain = PLACEHOLDER_RE.sub(lambda m: found[m.group(1)], text)
    if not found or "=" not in text:
        return plain
    key, raw = text.split("=", 1)
    token = {word: f"zzstudyplaceholder{i}zz" for i, word in enumerate(found)}
    try:
        meant = yaml.safe_load(PLACEHOLDER_RE.sub(lambda m: token[m.group(1)], raw))
    except yaml.YAMLError:
        return plain
    meant = _fill_tokens(meant, {token[word]: value for word, value in found.items()})
    if parse_override(plain)[1] == meant:
        return plain
    return f"{key}={json.dumps(meant)}"


def _fill_tokens(value: Any, tokens: dict[str, str]) -> Any:
    if isinstance(value, str):
        for token, text in tokens.items():
            value = value.replace(token, text)
        return value
    if isinstance(value, list):
        return [_fill_tokens(v, tokens) for v in value]
    if isinstance(value, dict):
        return {k: _fill_tokens(v, tokens) for k, v in value.items()}
    return value


def _quoted(value: str) -> str:
    return json.dumps(value)  # a YAML double-quoted string: names/paths stay strings


def _file_sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def _config_digest(path: Path) -> str | None:
    """What the config says, not how it is written: an edited value means a new arm (a done
    arm runs again), an edited comment or layout does not (a pretraining stage is minutes)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return _file_sha(path)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _same_arm(recorded: dict[str, Any] | None, signature: dict[str, Any]) -> bool:
    """Whether a recorded arm is this one. Records from before `config_content` keyed on the
    file's bytes (`config_sha`): those still match while the file is unchanged."""
    if not recorded:
        return False
    recorded, signature = _where_config_is(recorded), _where_config_is(signature)
    if recorded == signature:
        return True
    if "config_sha" not in recorded or "config_content" in recorded:
        return False
    old = {k: v for k, v in recorded.items() if k != "config_sha"}
    new = {k: v for k, v in signature.items() if k != "config_content"}
    return old == new and recorded["config_sha"] == _file_sha(Path(signature["config"]))


def _where_config_is(signature: dict[str, Any]) -> dict[str, Any]:
    """The signature with its config as an absolute path: the same study run as `study.yaml`,
    `./study.yaml`, `../x/study.yaml` or `/abs/x/study.yaml` names one config file in as
    many ways, and each spelling used to rerun every done arm."""
    if not isinstance(signature.get("config"), str):
        return signature
    return {**signature, "config": str(Path(signature["config"]).absolute().resolve())}


def run_study(
    path: str | Path, profile: str | None = None, say: Callable[[str], None] = print
) -> Path:
    """Run (or continue) every arm of the study at `path`; returns <out>/report/report.html
    (or <out>/study.json when no arm produced a run)."""
    study = load_study(path, profile)
    out = study.out
    _check_out(study)
    out.mkdir(parents=True, exist_ok=True)
    take_lock(out)  # one process runs a study at a time: a second one is one line
    try:
        return _run_study(study, out, profile, say)
    finally:
        release_lock(out)


def _check_out(study: Study) -> None:
    """Before the study writes anything: its folder is a folder, holds no other study's state
    (two study files in one folder without name: took turns undoing each other's arms), and
    none of the files the study writes over unless it wrote them (`out: .` replaced a user's
    data/train.csv with generated data)."""
    out = study.out
    if out.exists() and not out.is_dir():
        raise UserError(f"{study.path}: out: {out} is a file; give out: a folder for the study")
    owned: list[str] | None = []
    if (out / STATE_FILE).is_file():
        data = State(out / STATE_FILE).data
        _check_owner(study, data)
        owned = data.get("files")  # None: a state from before this record; its files are its own
    if owned is None:
        return
    for rel in generated_files(study):
        if (out / rel).exists() and rel not in owned:
            raise UserError(
                f"{out / rel}: exists and this study did not write it; move it away or give the "
                f"study a folder of its own (out: in {study.path})"
            )


def _check_owner(study: Study, data: dict[str, Any]) -> None:
    """study.json names the study file it belongs to; another one that still exists owns the
    folder (a moved or renamed study file takes its state along)."""
    recorded = data.get("study")
    if not recorded:
        return
    try:
        same = Path(recorded).samefile(study.path)
    except OSError:  # the recorded file is gone: moved or renamed
        return
    if not same:
        raise UserError(
            f"{study.out}: holds the study of {recorded} (its study.json); give {study.path} a "
            "folder of its own with name: or out:"
        )


class _StageNotDone(UserError):
    """{pretrain} while the stage has no finished run: the arm waits for it, it did not fail."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"the pretraining stage '{stage}' did not finish; see its log")
        self.stage = stage


def _run_study(study: Study, out: Path, profile: str | None, say: Callable[[str], None]) -> Path:
    state = State(out / STATE_FILE)
    state.data.update(study=str(study.path.resolve()), name=study.name, profile=profile)
    state.data["files"] = sorted({*(state.data.get("files") or []), *generated_files(study)})
    state.save()
    say(
        f"study {study.name}{f' (profile {profile})' if profile else ''}: "
        f"{len(study.spec.arms)} arm(s){' after a pretraining stage' if study.spec.pretrain else ''}"
        f" -> {out}"
    )
    try:
        data = prepare_data(study, say)
    except UserError as e:  # split:, texts:, synthetic: are the study file's keys: name it
        where = str(study.path)
        raise UserError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
    stage_name = study.spec.pretrain.name if study.spec.pretrain else None

    def pretrain_dir() -> str:
        rec = state.arm(stage_name) if stage_name else {}
        if rec.get("status") != "done" or not rec.get("run_dir"):
            raise _StageNotDone(str(stage_name))
        return str(rec["run_dir"])

    values: dict[str, Callable[[], str]] = {
        "pretrain": pretrain_dir,
        "minilm": minilm_path,
        **{key: (lambda p=p: str(p)) for key, p in data.items()},
        "out": lambda: str(out),
    }

    with signals_as_interrupt():
        entries = study.entries()
        clock = _StudyClock()
        for k, entry in enumerate(entries, 1):
            left = [_kind_of_arm(e) for e in entries[k - 1 :] if not e["stage"]]
            where = f"{k} of {len(entries)}{clock.eta(left)}"
            started = state.arm(entry["name"]).get("started")
            t0 = time.perf_counter()
            _run_entry(study, state, entry, values, say, where)
            rec = state.arm(entry["name"])  # `started` is new only when it was launched here
            launched = rec.get("started") != started  # (not skipped, nor an earlier run reused)
            if not entry["stage"] and launched and rec.get("status") == "done":
                clock.arms.setdefault(_kind_of_arm(entry), []).append(time.perf_counter() - t0)
    return _write_up(study, state, say)


def _kind_of_arm(entry: dict[str, Any]) -> str:
    """ "hub" for an arm fine-tuned from a Hugging Face model (far bigger than a study's own
    encoders, so timed apart), else "own"."""
    for text in entry["overrides"]:
        key, _, value = text.partition("=")
        if key.strip() == "init" and value.strip().strip("'\"").startswith("hf:"):
            return "hub"
    return "own"


class _StudyClock:
    """The study's elapsed time and, once an arm of each kind still to go has run in this
    invocation, an estimate of what is left: each arm at the mean of those of its kind that
    ran (a study's arms share a config and budget, so they take alike, but a hub model's arm
    takes far longer than one of the study's own small encoders; the stage is not counted)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.arms: dict[str, list[float]] = {}

    def eta(self, kinds_left: list[str]) -> str:
        if not self.arms or not kinds_left:
            return ""
        elapsed = f"; study {clock_text(time.perf_counter() - self.start)} so far"
        if any(kind not in self.arms for kind in kinds_left):
            return elapsed  # an arm of a kind not timed yet: no estimate rather than a wrong one
        left = sum(sum(self.arms[k]) / len(self.arms[k]) for k in kinds_left)
        return f"{elapsed}, ~{clock_text(left)} left"


def _write_up(study: Study, state: State, say: Callable[[str], None]) -> Path:
    """The summary table and the report of the runs the arms ended with."""
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
    findings = compare_lines(study, rows)
    if findings:
        say("")
    for line in findings:
        say(line)
    from encoderlab.reporting import build_report

    html = build_report(
        run_dirs, study.out / "report", title=f"encoderlab study: {study.name}", findings=findings
    )
    state.data["report"] = str(html)
    state.save()
    failed = [r["arm"] for r in rows if r["status"] != "done"]
    if failed:
        say(f"not done: {', '.join(failed)} (run the study again to retry / resume them)")
    say(f"report: {html} (and {html.with_suffix('.md')}); state: {state.path}")
    return html


def _signature(study: Study, entry: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """What makes an arm the same arm: a done arm whose signature changed runs again."""
    signature: dict[str, Any] = {
        "command": entry["command"],
        "config": str(Path(entry["config"]).absolute().resolve()),
        "config_content": _config_digest(Path(entry["config"])),
        "overrides": overrides,
    }
    if any("{synthetic}" in t for t in entry["overrides"]) and study.synthetic is not None:
        # other generator settings mean other data: the arm runs again
        signature["synthetic"] = study.synthetic.model_dump()
    for key in ("split", "texts"):  # other data means another arm: it runs again
        spec = getattr(study.spec, key)
        if spec is not None and any(f"{{{key}}}" in t for t in entry["overrides"]):
            signature[key] = spec.model_dump()
    return signature


def _plan(
    study: Study,
    rec: dict[str, Any],
    entry: dict[str, Any],
    overrides: list[str],
    same: bool,
    say: Callable[[str], None],
    where: str = "",
) -> tuple[list[str], Path | None] | None:
    """The arm's command and the run it resumes (None: a new run), or None when it is done."""
    name = entry["name"]
    run_dir = Path(rec["run_dir"]) if rec.get("run_dir") else None
    if rec.get("status") == "done" and same and run_dir is not None and run_dir.is_dir():
        say(f"[{name}] done already ({run_dir}); skipped")
        return None
    prog = [sys.executable, "-m", "encoderlab", entry["command"]]
    if (
        same
        and rec.get("status") in ("running", "interrupted")
        and run_dir is not None
        and has_checkpoint(run_dir)
    ):
        info = run_info(run_dir)
        if info.get("status") == "running" and writer_alive(info, run_dir):
            raise UserError(
                f"{run_dir}: arm '{name}' is still running in process {info['pid']}; "
                "wait for it or stop it first"
            )
        say(f"[{name}] resuming {run_dir}{f' ({where})' if where else ''}")
        return [*prog, "--resume", str(run_dir)], run_dir
    sets = [*overrides, f"runs_dir={_quoted(str(study.runs_dir))}", f"name={_quoted(name)}"]
    cmd = [*prog, str(entry["config"])]
    for s in sets:
        cmd += ["--set", s]
    why = {"failed": "retrying", "done": "its command changed; rerunning"}.get(
        str(rec.get("status")), "starting"
    )
    if rec.get("status") == "done" and same:
        why = f"its run directory {run_dir} is gone; rerunning"
    if rec.get("status") in ("running", "interrupted"):
        why = "restarting (no checkpoint to resume)" if same else "its command changed"
    say(
        f"[{name}] {why}{f' ({where})' if where else ''}: {entry['command']} {entry['config']}"
        + "".join(f" --set {s}" for s in overrides)
    )
    return cmd, None


def _run_entry(
    study: Study,
    state: State,
    entry: dict[str, Any],
    values: dict[str, Callable[[], str]],
    say: Callable[[str], None],
    where: str = "",
) -> None:
    """One arm (or the stage): skipped when done, else run or resumed; `where` ("2 of 7")
    goes on the line that starts it, a study's progress."""
    name = entry["name"]
    rec = state.arm(name)
    try:
        overrides = [_resolve(t, values) for t in entry["overrides"]]
        for text in overrides:
            parse_override(text)
    except _StageNotDone as e:  # its record (a done run, say) stays for when the stage is back
        say(f"[{name}] waiting for the stage '{e.stage}', which did not finish; not run")
        state.set(name, waiting=e.stage)
        return
    except UserError as e:
        say(f"[{name}] failed: {e}")
        state.set(name, status="failed", message=str(e), command=None)
        return
    if rec.pop("waiting", None):
        state.save()
    signature = _signature(study, entry, overrides)
    same = _same_arm(rec.get("signature"), signature)
    earlier = None if same else _earlier_run(rec, signature)
    if earlier is not None:
        _reuse(state, name, earlier, say)
        return
    planned = _plan(study, rec, entry, overrides, same, say, where)
    if planned is None:
        return
    cmd, run_dir = planned
    if run_dir is None and name in study.notes:
        say(study.notes[name])
    _remember(rec)
    before = {p.name for p in study.runs_dir.iterdir()} if study.runs_dir.is_dir() else set()
    if run_dir is not None:
        before.discard(run_dir.name)
    prev_seconds = float(rec.get("seconds") or 0.0) if run_dir is not None else 0.0
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

    def seconds() -> float:
        return prev_seconds + time.perf_counter() - t0

    log = study.out / "logs" / f"{name}.log"
    try:
        rc, last = launch(cmd, log, study.runs_dir, name, before, on_run_dir, say)
    except KeyboardInterrupt:
        rec = state.arm(name)
        info = run_info(Path(rec["run_dir"])) if rec.get("run_dir") else {}
        if info.get("status") == "finished":  # it ended just as the Ctrl-C came
            state.set(name, status="done", message=None, seconds=seconds(), finished=time.time())
        else:
            state.set(
                name, status="interrupted", message="interrupted by the user", seconds=seconds()
            )
            say(f"[{name}] interrupted; run the study again to resume it")
        raise
    _record_end(state, name, rc, last, seconds(), say)


def _earlier_run(rec: dict[str, Any], signature: dict[str, Any]) -> dict[str, Any] | None:
    """A finished run this arm made before with the same signature, still intact: undoing an
    edit (of the stage, a config value) takes it up again instead of training anew."""
    for old in reversed(rec.get("earlier") or []):
        if (
            old.get("run_dir")
            and _same_arm(old.get("signature"), signature)
            and run_info(Path(old["run_dir"])).get("status") == "finished"
        ):
            return old
    return None


def _remember(rec: dict[str, Any]) -> None:
    """Keep a done record's run among the arm's earlier runs before it is replaced."""
    if rec.get("status") != "done" or not rec.get("run_dir") or not Path(rec["run_dir"]).is_dir():
        return
    kept = {k: rec.get(k) for k in _EARLIER_KEYS}
    earlier = [e for e in rec.get("earlier") or [] if e.get("run_dir") != rec["run_dir"]]
    rec["earlier"] = [*earlier, kept][-_EARLIER_MAX:]


_EARLIER_KEYS = ("signature", "run_dir", "command", "seconds", "finished")
_EARLIER_MAX = 10


def _reuse(state: State, name: str, old: dict[str, Any], say: Callable[[str], None]) -> None:
    rec = state.arm(name)
    _remember(rec)
    rec.pop("exit_code", None)
    state.set(name, status="done", message=None, **{k: old.get(k) for k in _EARLIER_KEYS})
    say(f"[{name}] done already with this command ({old['run_dir']}, an earlier run); skipped")


def _record_end(
    state: State, name: str, rc: int, last: str, seconds: float, say: Callable[[str], None]
) -> None:
    """Done, interrupted (with a checkpoint to resume) or failed, from the exit code and what
    the run's run.json says."""
    run_dir = Path(state.arm(name)["run_dir"]) if state.arm(name).get("run_dir") else None
    info = run_info(run_dir) if run_dir else {}
    if rc == 0 and info.get("status", "finished") == "finished":
        state.set(name, status="done", message=None, seconds=seconds, finished=time.time())
        say(f"[{name}] done in {seconds:.0f}s: {run_dir}")
    elif (
        # a SIGINT to the arm; not exit code 2, a resume refused (its data changed): the run
        # stays "interrupted", but resuming it again would be refused again, so it starts over
        (rc in (130, -2, -9, -15) or (info.get("status") == "interrupted" and rc != 2))
        and run_dir is not None
        and has_checkpoint(run_dir)
    ):
        msg = _killed_by(rc) or last or f"exit code {rc}"
        state.set(name, status="interrupted", message=msg, seconds=seconds)
        say(f"[{name}] interrupted (exit code {rc}): {msg}; run the study again to resume it")
    else:
        msg = _killed_by(rc) or last or f"exit code {rc}"
        if rc == 0:
            msg = str(info.get("message") or info.get("stopped_because") or "run did not finish")
        state.set(name, status="failed", message=msg, exit_code=rc, seconds=seconds)
        say(f"[{name}] FAILED (exit code {rc}): {msg}")


def _killed_by(rc: int) -> str | None:
    """A signal the arm did not handle (kill -9, the OOM killer): its last output line is then
    just where it was, not why it stopped, so the signal is the reason."""
    if rc >= 0:
        return None
    try:
        sig = signal.Signals(-rc).name
    except ValueError:
        sig = f"signal {-rc}"
    return f"killed by {sig} (exit code {rc})"


def study_command(path: str, profile: str | None, say: Callable[[str], None] = print) -> Path:
    """`encoderlab study run STUDY.yaml [--profile NAME]`: the CLI's entry point. Ctrl-C: a
    study's own hint (not a run's `--resume RUN`) and exit code 130."""
    try:
        written = run_study(path, profile=profile, say=say)
    except KeyboardInterrupt:
        say("study interrupted: run the same command again to continue (done arms are skipped)")
        raise SystemExit(130) from None
    study = load_study(path, profile)
    problem = _unfinished(study, State(study.out / STATE_FILE))
    if problem:  # the table and report are written; the exit code tells scripts
        raise UserError(problem)
    return written


def _unfinished(study: Study, state: State) -> str | None:
    """What failed, counted over the study file's arms as it is now (a failed arm since
    removed or renamed made every later run exit 2), the stage apart from them."""
    recs = state.data.get("arms", {})
    arms = [e["name"] for e in study.entries() if not e["stage"]]
    waiting = [n for n in arms if recs.get(n, {}).get("waiting")]
    failed = [n for n in arms if recs.get(n, {}).get("status") == "failed" and n not in waiting]
    stopped = [n for n in arms if recs.get(n, {}).get("status") == "interrupted"]
    stage = study.spec.pretrain.name if study.spec.pretrain else None
    if stage is None or recs.get(stage, {}).get("status") != "failed":
        if failed:
            return (
                f"{len(failed)} of {len(arms)} arm(s) failed ({', '.join(failed)}; see the "
                "table above); fix them and run the study again: done arms are kept"
            )
        if stopped:  # killed on its own (the OOM killer, say): the study is not complete
            return (
                f"{len(stopped)} of {len(arms)} arm(s) interrupted ({', '.join(stopped)}: "
                + "; ".join(str(recs[n].get("message", "stopped")) for n in stopped)
                + "); run the study again to resume them: done arms are kept"
            )
        return None
    line = f"the pretraining stage '{stage}' failed (see {study.out / 'logs' / stage}.log)"
    if waiting:
        line += f"; {len(waiting)} of {len(arms)} arm(s) wait for it ({', '.join(waiting)})"
    if failed:
        line += f"; {len(failed)} of {len(arms)} arm(s) failed ({', '.join(failed)})"
    return line + "; fix it and run the study again: done arms are kept"
