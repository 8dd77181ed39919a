"""The Python API for notebooks and scripts: the functions the CLI calls, with Python inputs.

    import encoderlab as el
    run = el.finetune("configs/disaster_tweets.yaml", overrides={"train.epochs": 1},
                      train=df_train, valid=df_valid)  # DataFrame, list of dicts, Dataset or path
    model = el.load(run)                               # loaded once
    model.predict(["Forest fire near La Ronge"])       # [{"label", "score", "scores"}]
    el.evaluate(run, data=df_test)                     # metrics dict
    el.report([run_a, run_b], out="report/")           # report.html
    el.pretrain("configs/pretrain.yaml", overrides={"train.max_steps": 100})
    el.embed("hf:path/to/all-MiniLM-L6-v2", ["a text", "another"])  # (2, 384) float32

A run is returned as its directory (a Path), which every function here and every CLI
command takes. In-memory data is written to a file in the task's format and read by the same
readers as files (see `encoderlab.memdata`), so it is validated the same way, with the same
one-line `UserError`s.
"""

from __future__ import annotations

import contextlib
import copy
import json
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from encoderlab.config import (
    Config,
    FinetuneConfig,
    Section,
    apply_overrides,
    build_overridden,
    load_config,
    set_dotted,
)
from encoderlab.errors import UserError
from encoderlab.inference import Finetuned, check_evaluate_writes, evaluate_file, load_finetuned
from encoderlab.memdata import (
    in_rows_terms,
    is_in_memory,
    read_format,
    say_in_rows_terms,
    write_rows,
)
from encoderlab.tasks.registry import task_kind

ConfigLike = str | Path | Mapping[str, Any] | Section | None
Overrides = Mapping[str, Any] | Sequence[str] | None
Say = Callable[[str], None]


def make_config(config: ConfigLike, overrides: Overrides, schema: type[Section]) -> Any:
    """A validated config from a YAML path, a dict or a config object, with overrides given
    as {"train.epochs": 1} (typed values) or ["train.epochs=1"] (as `--set` parses them)."""
    if config is None:
        data: dict[str, Any] = {}
        source = "overrides"
    elif isinstance(config, (str, Path)):  # as the CLI reads it: the same notes and hints
        if isinstance(overrides, Mapping):
            return load_config(config, None, schema, overrides, "overrides")
        return load_config(config, _override_list(overrides), schema, None, "overrides")
    elif isinstance(config, Section):
        if not isinstance(config, schema):  # a pretraining config given to finetune, ...
            raise UserError(
                f"config: a {type(config).__name__} where a {schema.__name__} is needed; "
                "give the config of this step"
            )
        data, source = _set_fields(config), "config"
    elif isinstance(config, Mapping):
        data, source = dict(config), "config"
    else:
        raise UserError(f"config: expected a YAML path, a dict or a config, not {type(config)}")
    merged = copy.deepcopy(data)
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            set_dotted(merged, str(key).split("."), value, f"overrides[{key!r}]")
    elif overrides:
        merged = apply_overrides(merged, _override_list(overrides))
    # a mistake in the overrides is named there, not in the (valid) file or dict
    return build_overridden(schema, data, merged if overrides else data, source, "overrides")


def _with_splits(overrides: Overrides, unset: dict[str, None]) -> Overrides:
    """`overrides` with the given splits' task.<split> keys set to null first (the arguments
    replace them after the config is read)."""
    if not unset:
        return overrides
    if overrides is None or isinstance(overrides, Mapping):
        return {**unset, **(overrides or {})}
    return [f"{k}=null" for k in unset] + _override_list(overrides)


def _format_shows(path: str, chosen: str, kind: str) -> bool:
    """Whether a split's file is read as `chosen` with task.format auto: its name ends in that
    format (.csv for csv, .jsonl.gz for jsonl, .conllu for conllu), or it is a hub data set or
    a folder of a table task (a save_to_disk folder, a folder per label). A tagging or pos
    file of any other name is read by what it holds, and a folder of them file by file."""
    from encoderlab.data.tables import plain_name

    if path.startswith("hf:"):
        return True
    base = path.split("::")[0]
    if Path(base).is_dir():
        return kind not in ("tagging", "pos")
    name = plain_name(base)
    return name.endswith(f".{chosen.lower()}")


def _set_fields(section: Section) -> dict[str, Any]:
    """What was set in `section` and in its sections, however it was set (written, passed, or
    assigned later: `cfg.train.lr = 1e-5` marks train's lr, not cfg's train). An unset default
    stays one: TrainConfig's epochs would cap the max_steps an override gives, and fine-tuning
    fits lr and epochs to the init."""
    out: dict[str, Any] = {}
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, Section):
            inner = _set_fields(value)
            if inner or name in section.model_fields_set:
                out[name] = inner
        elif name in section.model_fields_set:
            out[name] = section.model_dump(mode="json", include={name})[name]
    return out


def _run_path(run: Any, what: str = "run") -> Path:
    """A run directory from a Path/str, a Run, a loaded Model or Finetuned (`what`: the
    argument it came as, for the error)."""
    if isinstance(run, Model):
        return run.finetuned.run.path
    path = getattr(getattr(run, "run", None), "path", None) or getattr(run, "path", None)
    path = path if path is not None else run
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise UserError(
            f"{what}: expected a run directory (a path), a Model or what finetune returned, not "
            f"{type(run).__name__}"
        )
    return Path(path)


def finetune(
    config: ConfigLike = None,
    overrides: Overrides = None,
    train: Any = None,
    valid: Any = None,
    test: Any = None,
    resume: str | Path | None = None,
    say: Say | None = print,
) -> Path:
    """Fine-tune and return the run directory. train/valid/test override task.train/valid/
    test: a path, or in-memory rows (DataFrame, list of dicts, datasets.Dataset), which are
    written under <runs_dir>/.data/ and read like files (task.format then reads 'auto')."""
    from encoderlab.finetuning import finetune as run_finetune

    say = _quiet_if_none(say)
    if resume is not None:
        given = [
            n
            for n, v in (
                ("config", config),
                ("overrides", overrides),
                ("train", train),
                ("valid", valid),
                ("test", test),
            )
            if v is not None
        ]
        if given:  # as the CLI's `finetune --resume` refuses a config or --set
            raise UserError(
                f"resume continues a run with its saved config; drop {', '.join(given)}"
            )
        with _process_state_kept():
            run, _ = run_finetune(None, say=say, resume=_run_path(resume, "resume"))
        return run.path
    # the splits given here replace the config's own files: those are not looked for
    splits = (("train", train), ("valid", valid), ("test", test))
    given: dict[str, None] = {f"task.{s}": None for s, d in splits if d is not None}
    cfg: FinetuneConfig = make_config(config, _with_splits(overrides, given), FinetuneConfig)
    folder = Path(cfg.runs_dir) / ".data"
    written: dict[Path, str] = {}
    chosen = cfg.task.format
    for split, data in splits:
        if data is None:
            continue
        if is_in_memory(data):
            data = write_rows(data, cfg.task.type, folder, split)
            written[data] = split
            cfg.task.format = "auto"
        setattr(cfg.task, split, str(data))
    files = [s for s in ("train", "valid", "test") if getattr(cfg.task, s)]
    files = [s for s in files if Path(getattr(cfg.task, s)) not in written]
    if written and not files:  # a DataFrame's columns 0, 1: the rows' keys "0", "1"
        for key in ("text_column", "text_pair_column", "label_column", "id_column"):
            value = getattr(cfg.task, key)
            if isinstance(value, int):
                setattr(cfg.task, key, str(value))
            elif isinstance(value, list):  # several text columns: [0, 1]
                setattr(cfg.task, key, [str(v) if isinstance(v, int) else v for v in value])
    # task.format is every split's, and the rows' file is read by its name (auto): a file
    # whose name does not say its format (valid.txt holding csv) would be misread
    kind = task_kind(cfg.task.type)
    unnamed = [s for s in files if not _format_shows(str(getattr(cfg.task, s)), chosen, kind)]
    if written and unnamed and chosen not in ("auto", read_format(cfg.task.type)):
        raise UserError(
            f"task.format={chosen} is every split's, and the in-memory rows are written as "
            f"{read_format(cfg.task.type)}: name task.{unnamed[0]} "
            f"({getattr(cfg.task, unnamed[0])}) so that its format shows (e.g. .csv), or "
            "give it in memory too"
        )
    try:
        with _process_state_kept():
            run, _ = run_finetune(cfg, say=say_in_rows_terms(say, written))
    except UserError as e:  # about the rows given, not the file they were written to
        raise in_rows_terms(e, written) from None
    return run.path


def pretrain(
    config: ConfigLike = None,
    overrides: Overrides = None,
    resume: str | Path | None = None,
    say: Say | None = print,
) -> Path:
    """Masked-LM pretraining (or continue `resume`); returns the run directory."""
    from encoderlab.pretraining import pretrain as run_pretrain

    say = _quiet_if_none(say)
    if resume is not None:
        listed = None if overrides is None else _override_list(overrides)
        with _process_state_kept():
            run, _ = run_pretrain(
                None, resume=_run_path(resume, "resume"), overrides=listed, say=say
            )
    else:
        cfg = make_config(config, overrides, Config)
        with _process_state_kept():
            run, _ = run_pretrain(cfg, say=say)
    return run.path


def _override_list(overrides: Overrides) -> list[str]:
    if isinstance(overrides, Mapping):
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    if overrides is None:
        return []
    if isinstance(overrides, str) or not isinstance(overrides, Sequence):
        raise UserError(  # a str would be read one character at a time
            'overrides: give a dict {"train.epochs": 1} or a list ["train.epochs=1"], not '
            f"{type(overrides).__name__}"
        )
    return [str(o) for o in overrides]


@contextlib.contextmanager
def _process_state_kept() -> Iterator[None]:
    """A run sets torch's thread count (train.threads) and seeds the global random number
    generators; a notebook's next run and its own code get them back as they were (a second
    run with threads: null ran on the first one's count, and recorded it)."""
    import random

    import numpy as np
    import torch

    threads = torch.get_num_threads()
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def _quiet_if_none(say: Say | None) -> Say:
    """say=None: print nothing (a notebook's way of asking for quiet); anything else must be
    a function of one line (say="quiet" failed only after the data was read)."""
    if say is None:
        return lambda line: None
    if not callable(say):
        raise UserError(f"say: give a function such as print, or None for quiet; not {say!r}")
    return say


def _batch_size(value: Any) -> int:
    """A whole number of at least 1 (numpy's integers too), as an int."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise UserError(f"batch_size: give a whole number of at least 1, not {value!r}")
    return int(value)


def _texts(value: Any, name: str) -> list[Any]:
    """A str (one text) or a collection of texts: a list, a tuple, a pandas Series
    (`df["text"]`), a 1-D numpy array, a generator. A dict (it would be read as its keys), a
    set (no order for the rows), a number or bytes is refused; so is a non-string item, where
    the texts are read."""
    if isinstance(value, str):
        return [value]
    if hasattr(value, "columns") and hasattr(value, "iloc"):  # iterating one gives its names
        raise UserError(f"{name}: a DataFrame; give the column of texts, e.g. df['text']")
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (set, frozenset)):  # rows come back in an order no one chose
        raise UserError(f"{name}: a set has no order to give the rows back in; give a list")
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # numpy array, pandas Series
        if value.ndim == 1:
            return list(value.tolist())
        raise UserError(f"{name}: give one text per item (a 1-D array), not {value.ndim}-D")
    if isinstance(value, Iterable) and not isinstance(value, (Mapping, bytes, bytearray)):
        return list(value)
    raise UserError(f"{name}: give a string or a list of strings, not {type(value).__name__}")


class Model:
    """A fine-tuned run loaded once: `predict` many times, cheaply."""

    def __init__(self, finetuned: Finetuned) -> None:
        self.finetuned = finetuned

    @property
    def task(self) -> str:
        return self.finetuned.task.type

    @property
    def labels(self) -> list[str]:
        return list(self.finetuned.labels)

    @property
    def path(self) -> Path:
        return self.finetuned.run.path

    def predict(
        self,
        texts: str | Sequence[str],
        pairs: str | Sequence[str] | None = None,
        batch_size: int | None = None,
        say: Say | None = print,
    ) -> list[dict[str, Any]]:
        """{label, score, scores} per text, in order (what `encoderlab serve` answers).
        pairs: the second sentence of each pair, or each question's context (qa). `say` hears
        warnings (words past task.max_len, cut questions; None: quiet); the rows say it too."""
        texts = _texts(texts, "texts")
        seconds = None
        if pairs is not None:
            seconds = [pairs] * len(texts) if isinstance(pairs, str) else _texts(pairs, "pairs")
        if batch_size is not None:
            batch_size = _batch_size(batch_size)
        _check_pairs(self.finetuned, seconds)
        examples = self.finetuned.examples_from_pairs(texts, seconds)
        return self.finetuned.predict_examples_scored(examples, batch_size, _quiet_if_none(say))

    def evaluate(self, data: Any, say: Say | None = print) -> dict[str, Any]:
        return evaluate(self, data, say=say)

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, task={self.task!r}, labels={self.labels})"


def _check_pairs(ft: Finetuned, seconds: list[Any] | None) -> None:
    """pairs= as the model needs it, said in the API's words (the task's own messages name
    the CLI's --text-pair)."""
    need = ft.second_text
    if need is None and seconds is not None:
        raise UserError(
            "pairs: this model reads one text at a time; drop pairs= (it is for sentence-pair "
            "and QA models)"
        )
    missing = (
        None if seconds is None else next((i for i, p in enumerate(seconds) if p is None), None)
    )
    if need is not None and (seconds is None or missing is not None):
        where = "" if missing is None else f" (pairs[{missing}] is None)"
        if need == "context":
            raise UserError(
                f"pairs: a QA model needs each question's context{where}; give "
                "predict(questions, pairs=contexts), one context per question"
            )
        raise UserError(
            f"pairs: a sentence-pair model needs each text's second sentence{where}; give "
            "predict(texts, pairs=second_texts), one per text"
        )


def load(run: Any) -> Model:
    """Load a fine-tuning run (its directory, or what `finetune` returned) once."""
    return Model(load_finetuned(_run_path(run)))


def evaluate(run: Any, data: Any, say: Say | None = print) -> dict[str, Any]:
    """Metrics on labelled data (a path or in-memory rows); like `encoderlab evaluate`, it
    writes predictions/file-<name>.jsonl and eval/file-<name>.json in the run. In-memory rows
    are written to the run's inputs/ folder first (the eval file names what was scored)."""
    if data is None or not (isinstance(data, (str, Path)) or is_in_memory(data)):
        raise UserError(
            f"data: give the labelled file (a path) or rows (a DataFrame, a list of dicts) to "
            f"evaluate on, not {type(data).__name__}"
        )
    ft = run.finetuned if isinstance(run, Model) else load_finetuned(_run_path(run))
    overrides = None
    written: dict[Path, str] = {}
    if is_in_memory(data):  # read as written, not in the run's own file format (KLUE, KMOU)
        check_evaluate_writes(ft.run.path, ("inputs",))
        data = write_rows(data, ft.task.type, ft.run.path / "inputs", "eval", named="data")
        written[data] = "data"
        overrides = [f"task.format={read_format(ft.task.type)}"]
    said = say_in_rows_terms(_quiet_if_none(say), written)
    try:
        return evaluate_file(ft.run.path, str(data), say=said, overrides=overrides, loaded=ft)
    except UserError as e:  # about the rows given, not the file they were written to
        raise in_rows_terms(e, written) from None


def report(runs: Any, out: str | Path = "report") -> Path:
    """A report comparing runs (directories, folders of runs, or what `finetune` returned);
    returns report.html (report.md beside it)."""
    from encoderlab.reporting import report_command

    if not isinstance(out, (str, Path)) or not str(out).strip():
        raise UserError(f"out: give the folder to write the report to, not {out!r}")
    if Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"out={out}: is a file; give a folder for the report")
    return report_command([str(_run_path(r)) for r in _run_items(runs)], str(out))


def _run_items(runs: Any) -> list[Any]:
    """One run, or any collection of them (a list, a set, a generator, a dict's values): a
    set of runs was refused as "run: expected a run directory ..., not set"."""
    if isinstance(runs, (str, Path, Model, Mapping)) or hasattr(runs, "path"):
        return [runs]  # a Mapping: refused by _run_path, not read as its keys
    try:
        return list(runs)
    except TypeError:  # not iterable: _run_path names its type
        return [runs]


def load_embedder(source: Any, say: Say | None = print) -> Any:
    """The encoder of a run (its directory, or what `finetune`/`pretrain` returned) or of
    `"hf:<model>"`, loaded once to `embed` many times (see `encoderlab.embedding`)."""
    from encoderlab.embedding import load_embedder as load

    text = source if isinstance(source, str) and source.startswith("hf:") else _run_path(source)
    return load(str(text), _quiet_if_none(say))


def embed(
    source: Any,
    texts: str | Sequence[str],
    pooling: str | None = None,
    normalize: bool = True,
    batch_size: int = 64,
    say: Say | None = print,
) -> Any:
    """A float32 array (len(texts), dim), row i the vector of texts[i]: mean-pooled (or the
    model's own pooling; `pooling="cls"`), L2-normalised unless `normalize=False`. `source`:
    a run, `"hf:<model>"`, or what `load_embedder` returned (loaded once)."""
    from encoderlab.embedding import Embedder

    texts = _texts(texts, "texts")
    batch_size = _batch_size(batch_size)
    if type(normalize).__name__ not in ("bool", "bool_"):  # "no" is truthy: normalised, unsaid
        raise UserError(f"normalize: give True or False, not {normalize!r}")
    normalize = bool(normalize)  # numpy's bool too
    say = _quiet_if_none(say)
    embedder = source if isinstance(source, Embedder) else load_embedder(source, say)
    vectors, cut = embedder.embed(texts, pooling, normalize, batch_size)
    if cut:
        say(
            f"warning: {len(cut):,} of {len(texts):,} texts were longer than the encoder's max_len "
            f"of {embedder.max_len} tokens: their end was cut"
        )
    return vectors
