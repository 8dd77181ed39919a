"""The command line as a user meets it: usage errors, `--set` values and config files that
YAML reads in surprising ways, Ctrl-C at any moment, output to a terminal, file or pipe."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import encoderlab
from conftest import run_cli as cli
from encoderlab.config import FinetuneConfig, load_config, parse_override, read_yaml
from encoderlab.errors import UserError
from test_hardening import one_line_error

SRC = Path(encoderlab.__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# usage errors and help


@pytest.mark.parametrize(
    "args, where",
    [
        (["finetune", "--set"], "encoderlab finetune --help"),
        (["runs", "list", "--runs-dir"], "encoderlab runs list --help"),
        (["predict", "somerun", "--text"], "encoderlab predict --help"),
    ],
)
def test_an_option_without_its_value_points_to_its_own_commands_help(args, where, capsys):
    """click raises this one without a context: the hint named `encoderlab --help`."""
    assert cli(*args) == 2
    err = one_line_error(capsys)
    assert "requires an argument" in err and f"`{where}`" in err, err


def test_dash_h_is_help_on_every_level(capsys):
    for args in ([], ["finetune"], ["runs", "list"], ["corpus", "stats"]):
        assert cli(*args, "-h") == 0, args
        assert "Usage: encoderlab" in capsys.readouterr().out, args


def test_help_to_a_pipe_has_no_escape_codes():
    env = {**os.environ, "PYTHONPATH": str(SRC), "TERM": "xterm-256color"}
    env.pop("FORCE_COLOR", None)
    code = "from encoderlab.cli import main; main(['finetune', '--help'])"
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert p.returncode == 0 and "Usage: encoderlab finetune" in p.stdout, p.stderr
    assert "\x1b" not in p.stdout + p.stderr


# ---------------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_while_torch_is_half_imported_is_one_line_and_130(tmp_path, monkeypatch, capsys):
    """A Ctrl-C in a command's first seconds lands inside `import torch`; the line that says
    what was interrupted imported encoderlab.runs (and torch) again, which fails on the half
    imported module: a traceback and exit code 1 instead of 130."""
    import encoderlab.runs

    def interrupted_import(*args, **kwargs):
        half = types.ModuleType("encoderlab.runs")  # what a half-done import leaves
        monkeypatch.setitem(sys.modules, "encoderlab.runs", half)
        raise KeyboardInterrupt

    monkeypatch.setattr(encoderlab.runs, "list_runs", interrupted_import)
    assert cli("runs", "list", "--runs-dir", tmp_path) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().startswith("interrupted"), err


# ---------------------------------------------------------------------------------------------
# --set values


@pytest.mark.parametrize(
    "text, value",
    [
        ("name=exp #2", "exp #2"),  # YAML dropped ` #2` as a comment: the run was named `exp`
        ("description=lr 3e-4 # try", "lr 3e-4 # try"),
        ("task.train=#data.csv", "#data.csv"),  # the whole value was a comment: None
        ("description='a #b'", "a #b"),  # quoted: YAML keeps it
        ("task.train=data/#1.csv", "data/#1.csv"),
        ("data.corpus=[a.txt, '#b.txt']", ["a.txt", "#b.txt"]),
        ("train.lr=1e-4", 1e-4),
        ("description=x=y", "x=y"),
        ("init=hf:org/model", "hf:org/model"),
    ],
)
def test_a_hash_in_a_set_value_is_text_not_a_comment(text, value):
    # parse_override: the CLI's --set, the API's list overrides and a study arm's `set:`
    assert parse_override(text)[1] == value


def test_a_set_value_that_starts_with_a_hash_reaches_the_config(tmp_path, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(f"runs_dir: {tmp_path / 'runs'}\ntask:\n  train: a.csv\n")
    assert cli("finetune", cfg, "--set", f"task.train={tmp_path}/#1.csv") == 2  # a file
    assert cli("finetune", cfg, "-s", "task.train=#1.csv") == 2  # it was None: "not set"
    err = capsys.readouterr().err
    assert err.count("#1.csv: file not found") == 2 and "not set" not in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "override, key",
    [
        ("task.label_column=no", "task.label_column"),  # was column 0, silently
        ("task.text_column=on", "task.text_column"),  # was column 1
        ("task.id_column=off", "task.id_column"),
        ("task.text_pair_column=yes", "task.text_pair_column"),
    ],
)
def test_a_yaml_boolean_is_not_taken_as_a_column_position(override, key):
    # a pair task: classification refuses a second text column whatever its value
    with pytest.raises(UserError, match=rf"'{key}': YAML reads an unquoted yes/no.*quote it"):
        load_config(None, ["task.type=pair", override], FinetuneConfig)


def test_a_quoted_word_is_a_column_name_and_booleans_still_work_where_they_belong():
    cfg = load_config(
        None,
        ["task.label_column='no'", "task.id_column=null", "train.compile=yes", "train.tf32=off"],
        FinetuneConfig,
    )
    assert cfg.task.label_column == "no" and cfg.task.id_column is None
    assert cfg.train.compile is True and cfg.train.tf32 is False
    assert load_config(None, ["task.label_column=0"], FinetuneConfig).task.label_column == 0


def test_a_boolean_column_in_a_config_file_is_one_line_naming_the_file(tmp_path, capsys):
    cfg = tmp_path / "ft.yaml"
    cfg.write_text(
        f"runs_dir: {tmp_path / 'runs'}\ntask:\n  train: {tmp_path / 'no.csv'}\n"
        "  label_column: no\n"
    )
    assert cli("finetune", cfg) == 2
    err = one_line_error(capsys)
    assert str(cfg) in err and "task.label_column" in err and "quote it" in err, err
    assert not (tmp_path / "runs").exists()


def test_a_boolean_for_a_text_key_says_to_quote_it():
    with pytest.raises(UserError, match=r"'name': .*got True: YAML reads .* quote it"):
        load_config(None, ["name=on"], FinetuneConfig)


# ---------------------------------------------------------------------------------------------
# config files


def test_dates_stay_text_and_exponents_are_numbers(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(
        "name: 2024-06-01\ndescription: 2024-06-01 12:00:00\nlr: 1e-4\ngrid: [1e-4, 3E-3]\n"
    )
    data = read_yaml(f)
    assert data["name"] == "2024-06-01" and data["description"] == "2024-06-01 12:00:00"
    assert data["lr"] == 1e-4 and data["grid"] == [1e-4, 3e-3]
    assert load_config(None, ["name=2024-06-01"], FinetuneConfig).name == "2024-06-01"
    assert parse_override("train.lr=5E-4")[1] == 5e-4


def test_a_config_that_is_not_utf8_names_its_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_bytes(b"name: a\ndescription: caf\xe9\n")
    with pytest.raises(UserError, match=r"c\.yaml:2: not UTF-8"):
        read_yaml(f)
    f.write_bytes(b"# long comment\n" * 2000 + b"name: caf\xe9\n")  # past a read chunk
    with pytest.raises(UserError, match=r"c\.yaml:2001: not UTF-8"):
        read_yaml(f)


def test_a_tab_indent_says_to_indent_with_spaces(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n\tmax_steps: 3\n")
    with pytest.raises(UserError, match=r"c\.yaml:2: .*indent with spaces, not tabs"):
        read_yaml(f)


def test_a_byte_order_mark_and_crlf_lines_read_as_plain_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_bytes(b"\xef\xbb\xbfname: bom\r\ntrain:\r\n  max_steps: 3\r\n")
    assert read_yaml(f) == {"name": "bom", "train": {"max_steps": 3}}


# ---------------------------------------------------------------------------------------------
# output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_said_under_a_live_progress_bar_goes_above_it(monkeypatch):
    """rich redirects stdout through the bar while it is live, but a Console writing to
    sys.stdout unwraps that redirect: the line was glued to the end of the bar."""
    from rich.console import Console
    from rich.file_proxy import FileProxy

    from encoderlab.cli import say

    bar_console = Console(file=io.StringIO(), force_terminal=True)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", FileProxy(bar_console, terminal))
    say("step 17  valid/acc 0.4333")
    assert "step 17  valid/acc 0.4333" in bar_console.file.getvalue()
    assert terminal.getvalue() == ""


def test_a_line_said_under_a_bar_still_reaches_a_redirected_stdout(monkeypatch):
    """`encoderlab finetune ... > out.txt` on a terminal: the bar is on stderr, the lines stay
    in the file."""
    from rich.console import Console
    from rich.file_proxy import FileProxy

    from encoderlab.cli import say

    bar_console = Console(file=io.StringIO(), force_terminal=True)
    out_file = io.StringIO()
    monkeypatch.setattr(sys, "stdout", FileProxy(bar_console, out_file))
    say("step 17  valid/acc 0.4333")
    assert "step 17" in out_file.getvalue() and "step 17" not in bar_console.file.getvalue()


def test_runs_list_shows_no_1970_date_for_a_damaged_run(tmp_path, capsys):
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "run.json").write_text('{"status": "runn')
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "run.json").write_text(json.dumps({"created": "yesterday"}))
    assert cli("runs", "list", "--runs-dir", tmp_path) == 0
    out = capsys.readouterr().out
    assert "damaged run.json" in out and "1970" not in out, out


def test_a_closed_pipe_ends_the_output_not_the_command(tmp_path):
    """`encoderlab ... | head -1`: rich exited 1 (the code of a bug) when the reader went away,
    and a training run piped to head ended at its next line. The rest of the output now goes
    nowhere and the command finishes (exit 0, nothing on stderr)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "encoderlab", "runs", "list", "--runs-dir", str(tmp_path / "none")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read()
    proc.stderr.close()
    assert (proc.wait(timeout=60), err) == (0, b"")


def test_a_data_path_beside_the_config_but_not_here_says_so(tmp_path, monkeypatch, capsys):
    """Paths in a config are relative to the working directory: `finetune exp/ft.yaml` whose
    ft.yaml says `train: train.csv` said only "train.csv: file not found". It now says where
    the file is and how to point at it, before a run folder is made."""
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "train.csv").write_text("text,target\na b,0\nc d,1\n")
    (exp / "ft.yaml").write_text(
        "task: {type: classification, train: train.csv, label_column: target}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert cli("finetune", "exp/ft.yaml", "--set", f"runs_dir={tmp_path / 'runs'}") == 2
    err = one_line_error(capsys)
    assert "exp/ft.yaml: task.train=train.csv: no such file from here" in err
    assert "it is beside the config; write task.train: exp/train.csv or run from exp" in err
    assert not (tmp_path / "runs").exists()
    monkeypatch.chdir(exp)  # from the config's folder it is found
    assert load_config(Path("ft.yaml"), schema=FinetuneConfig).task.train == "train.csv"


def test_the_api_list_overrides_keep_a_hash_as_text():
    """The `#` fix lived in the CLI's --set callback: the API's list overrides (and a study
    arm's `set:`) still named a run `exp` for `name=exp #2`."""
    from encoderlab.api import make_config
    from encoderlab.config import FinetuneConfig

    cfg = make_config({}, ["name=exp #2", "task.train=#1.csv"], FinetuneConfig)
    assert cfg.name == "exp #2" and cfg.task.train == "#1.csv"


def test_print_config_shows_the_resolved_config_and_writes_nothing(tmp_path, capsys, monkeypatch):
    """--print-config: the config a run would use, defaults fitted to the init and task,
    printed as YAML; saved and run again, it reads back the same."""
    import yaml

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli("finetune", "--print-config", "--set", "task.train=t.csv", "--set", "init=hf:x") == 0
    hub = yaml.safe_load(capsys.readouterr().out)
    assert hub["init"] == "hf:x" and hub["task"]["train"] == "t.csv"
    assert hub["train"]["lr"] == 1e-4 and hub["head"]["type"] == "pooler"  # the hub defaults
    assert (
        cli("finetune", "--print-config", "-s", "task.train=t.csv", "-s", "task.type=tagging") == 0
    )
    out = capsys.readouterr().out
    scratch = yaml.safe_load(out)
    assert scratch["train"]["lr"] == 1e-3 and scratch["task"]["type"] == "tagging"
    saved = tmp_path / "mine.yaml"
    saved.write_text(out)
    assert cli("finetune", saved, "--print-config") == 0
    assert capsys.readouterr().out == out  # it round-trips
    # an explicit lr far off for the init: the warning on stderr, the YAML still clean
    assert (
        cli("finetune", saved, "--print-config", "--set", "init=hf:x", "-s", "train.lr=1e-2") == 0
    )
    captured = capsys.readouterr()
    assert "warning: train.lr=0.01 is far outside" in captured.err
    assert yaml.safe_load(captured.out)["train"]["lr"] == 1e-2
    assert cli("pretrain", "--print-config", "--set", "recipe=budget") == 0
    pre = yaml.safe_load(capsys.readouterr().out)
    assert pre["recipe"] == "budget" and pre["model"]["norm"] == "pre"  # the recipe filled in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]  # no runs/, nothing
    assert cli("finetune", "--print-config", "--resume", tmp_path) == 2
    assert "config.yaml" in one_line_error(capsys)
    assert cli("finetune", "--print-config", "--set", "train.nope=1") == 2
    assert "nope" in one_line_error(capsys)


def test_runs_list_shows_the_steps_a_killed_run_logged(tmp_path, capsys):
    """run.json's steps are written at checkpoints: a run killed at step 810 before its first
    one was listed with 0 steps (the report, reading metrics.jsonl, said 810)."""
    run = tmp_path / "killed-20261203"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"kind": "finetune/classification", "steps": 0}))
    lines = [
        json.dumps({"step": s, "kind": "train", "train/loss": 0.5}) for s in range(10, 820, 10)
    ]
    (run / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 8')  # cut by the kill
    assert cli("runs", "list", "--runs-dir", tmp_path) == 0
    row = next(x for x in capsys.readouterr().out.splitlines() if "killed" in x)
    assert " 810 " in row, row


def test_every_commands_summary_is_one_paragraph_without_line_breaks():
    """Typer's help keeps a docstring's line breaks: `encoderlab --help` showed the
    quickstart's and export's summaries broken mid-sentence."""
    import click
    from typer.main import get_command

    from encoderlab.cli import app

    def walk(cmd, path=()):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield " ".join(path), cmd

    broken = [p for p, cmd in walk(get_command(app)) if "\n" in (cmd.help or "").split("\n\n")[0]]
    assert broken == []


def test_init_hf_without_transformers_is_one_line_before_any_defaults_warning(
    tmp_path, monkeypatch, capsys
):
    """`finetune ft.yaml --set init=hf:DIR` with the file's scratch lr printed the
    learning-rate warning and then the [hf] error: two lines where one was promised."""
    import sys

    from conftest import run_cli

    cfg = tmp_path / "ft.yaml"
    cfg.write_text(
        "task: {type: classification, train: train.csv}\ntrain: {lr: 0.001}\n"
        f"runs_dir: {tmp_path / 'runs'}\n"
    )
    monkeypatch.setitem(sys.modules, "transformers", None)
    capsys.readouterr()
    assert run_cli("finetune", cfg, "--set", f"init=hf:{tmp_path}") == 2
    out = capsys.readouterr()
    assert out.err.strip().splitlines() == [
        "error: Hugging Face interop needs transformers: pip install 'encoderlab[hf]'"
    ]
    assert not (tmp_path / "runs").exists()
