"""Self-pretraining: masked-LM on the fine-tuning task's own text (and any corpus), then
fine-tuning from it, from one fine-tuning config (Krishna et al. 2022, "Downstream datasets
make surprisingly good pretraining corpora"):

    self_pretrain:
      text: [task, ../shared/data/wikitext-2/valid.txt]   # task: its train/valid/test text
      minutes: 5                                          # and/or steps: N
      recipe: budget
      set: [model.n_layer=4]                              # pretraining config overrides

`self_pretrain(cfg)` makes (or finds) an ordinary pretraining run <name>-mlm in runs_dir with
the fine-tuning config's tokenizer settings and model shape, and returns the config with
`init` set to that run, so fine-tuning takes its weights and tokenizer like any other init.

The task's text is every text field of its examples (`tasks.base.example_texts`), labels never:
train, valid and test alike, so validation text is as familiar to the encoder as the test
text a submission is scored on. It is written, deduplicated, to <runs_dir>/.data/<name>-mlm.txt.

Reruns: the run records a key (a hash of the resolved pretraining config and of its text and
corpus files); the same command again reuses a finished run with that key and resumes an
interrupted one, so only a change of settings or text pretrains anew. Settings that change how
a run goes, not what it trains (threads, device, log/evaluation/checkpoint cadence: see
NEUTRAL), are left out of the key, and a resumed run takes their new values.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from encoderlab import distributed
from encoderlab.config import (
    RECIPES,
    Config,
    DataConfig,
    FinetuneConfig,
    ModelConfig,
    SelfPretrainConfig,
    apply_overrides,
    build,
    read_yaml,
)
from encoderlab.errors import Interrupted, UserError
from encoderlab.pretraining import check_not_finished, pretrain
from encoderlab.runs import RUN_FILE, Run, atomic_write, has_checkpoint
from encoderlab.runtime import resolve_device
from encoderlab.tasks import get_task
from encoderlab.tasks.base import example_texts, read_to_predict
from encoderlab.tasks.records import split_for_role
from encoderlab.tasks.registry import task_kind

KEY_FIELD = "self_pretrain_key"  # run.json: what the run was pretrained with (see run_key)
MODEL_FIELD = "self_pretrain_model"  # run.json: the model keys the fine-tuning config set
TASK = "task"
# train keys that change how a pretraining run goes, not what it trains: two runs that differ
# only in these give the same weights, so they are not part of the key (and `pretrain --resume
# --set` may change them). Evaluation cadence only where no early stopping depends on it.
NEUTRAL = (
    "threads",
    "device",
    "log_every",
    "checkpoint_every",
    "checkpoint_minutes",
    "keep_checkpoints",
    "loggers",
    "compile",
    "tf32",
)
NEUTRAL_EVAL = ("eval_every", "eval_batches")


def task_texts(cfg: FinetuneConfig) -> list[str]:
    """The text of the task's train, valid and test files (whitespace squeezed, duplicates
    and empty ones dropped, first occurrence first); no label ever."""
    if not cfg.task.train:
        raise UserError("task.train is not set: give the training file (csv/tsv/jsonl/json/...)")
    task = get_task(cfg.task.type, cfg.task)
    seen: dict[str, None] = {}
    t = cfg.task
    for path, keep in (
        (t.train, ("max_examples", "where")),
        (t.valid and split_for_role(t.valid, "valid"), ("max_examples", "where")),
        (t.test and split_for_role(t.test, "test"), ()),  # read whole, as fine-tuning reads it
    ):
        if path:
            # every row, labelled or not (aclImdb's unsup/ is the text this is for)
            rows = read_to_predict(task, path, cfg.task, keep=keep)
            for text in example_texts(rows):
                line = " ".join(str(text).split())
                if line:
                    seen.setdefault(line, None)
    return list(seen)


def corpus_entries(sp: SelfPretrainConfig) -> list[str]:
    """self_pretrain.text without 'task', each checked to name at least one file."""
    files = []
    for entry in sp.text:
        if entry.strip() == TASK:
            continue
        if not glob.glob(entry) and not Path(entry).is_file():
            raise UserError(
                f"self_pretrain.text: {entry!r} matches no file (paths are relative to the "
                "working directory); list 'task' and/or corpus files"
            )
        files.append(entry)
    return files


def pretrain_config(cfg: FinetuneConfig, corpus: list[str]) -> Config:
    """The pretraining config: the fine-tuning config's seed, runs_dir, tokenizer and model
    shape (what it set; the recipe fills the rest), the budget, then self_pretrain.set."""
    sp = cfg.self_pretrain
    assert sp is not None
    data: dict[str, Any] = {
        "name": f"{cfg.name}-mlm",
        "description": f"self-pretraining for {cfg.name} ({', '.join(sp.text)})",
        "seed": cfg.seed,
        "runs_dir": cfg.runs_dir,
        "recipe": sp.recipe,
        "model": model_settings(cfg),
        "tokenizer": cfg.tokenizer.model_dump(mode="json", exclude_unset=True),
        "data": {"corpus": corpus},
        "train": {
            "epochs": None,  # the budget is the length of the run
            "max_steps": sp.steps,
            "time_budget_min": sp.minutes,
            "threads": cfg.train.threads,
            "device": cfg.train.device,
            "precision": cfg.train.precision,
        },
    }
    apply_overrides(data, list(sp.set))
    # blocks must fit the encoder: its max_len as self_pretrain.set leaves it (else the
    # fine-tuning config's), unless self_pretrain.set chose the block length itself
    block_given = isinstance(data.get("data"), dict) and "block_len" in data["data"]
    recipe = RECIPES.get(str(data.get("recipe")), RECIPES[sp.recipe])
    block = recipe.get("data", {}).get("block_len", DataConfig().block_len)
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    max_len = model.get("max_len", cfg.model.max_len)
    if not block_given and isinstance(max_len, int) and max_len < block:
        data["data"]["block_len"] = max_len
    out = build(Config, data, "self_pretrain.set")
    out.tokenizer._replaced_by_path = cfg.tokenizer._replaced_by_path  # what --set replaced
    return out


def model_settings(cfg: FinetuneConfig) -> dict[str, Any]:
    """The model keys the fine-tuning config set (the recipe fills the rest). A config saved
    by a self-pretrained fine-tuning run (self_pretrain.run set) has every key written out, the
    schema's defaults too, which would override the recipe (post-LN, dropout 0.1 instead of
    the budget recipe's pre-LN, no dropout): there the keys its pretraining run recorded count,
    plus any value edited since."""
    given = cfg.model.model_dump(mode="json", exclude_unset=True)
    sp = cfg.self_pretrain
    if sp is None or not sp.run:
        return given
    try:
        recorded = json.loads((Path(sp.run) / RUN_FILE).read_text(encoding="utf-8"))[MODEL_FIELD]
        resolved = ModelConfig.model_validate(recorded).model_dump(mode="json")
    except (OSError, ValueError, KeyError, TypeError):
        return given  # a run made before this was recorded, or gone: as written
    edited = {k: v for k, v in cfg.model.model_dump(mode="json").items() if resolved[k] != v}
    return {**recorded, **edited}


def _key_dump(pcfg: Config) -> dict[str, Any]:
    """The resolved config without the NEUTRAL settings."""
    dump = pcfg.model_dump(mode="json")
    neutral = NEUTRAL + (NEUTRAL_EVAL if pcfg.train.early_stop_metric is None else ())
    for k in neutral:
        dump["train"].pop(k, None)
    dump["data"].pop("num_workers", None)
    return dump


def check_finetuning_fits(cfg: FinetuneConfig, pcfg: Config) -> None:
    """What fine-tuning would refuse about the encoder pretraining makes, said before the
    pretraining rather than after it (minutes later, and then a new run for the fix)."""
    m = pcfg.model
    task = get_task(cfg.task.type, cfg.task)
    two_texts = task_kind(cfg.task.type) == "qa" or getattr(task, "is_pair", lambda t: False)(
        cfg.task
    )
    if two_texts and m.n_segments == 1:  # check_segments, after the pretraining
        raise UserError(
            "model.n_segments=1: this task's second text is segment 1, which an encoder with "
            "one segment embedding has not got; set model.n_segments=2 (or 0 for none) before "
            "self_pretrain makes the encoder"
        )
    if cfg.task.max_len > m.max_len:
        raise UserError(
            f"task.max_len={cfg.task.max_len} is longer than the max_len={m.max_len} of the "
            "encoder self_pretrain would make (model.max_len, or model.max_len in "
            "self_pretrain.set); lower task.max_len or raise model.max_len"
        )
    if cfg.drop_last and cfg.drop_last >= m.n_layer:
        raise UserError(
            f"drop_last={cfg.drop_last} would remove all {m.n_layer} layers of the pretrained "
            f"encoder (model.n_layer={m.n_layer}); use at most {m.n_layer - 1}"
        )
    kept = m.n_layer - cfg.drop_last  # the layers fine-tuning keeps
    if cfg.unfreeze_last > kept:
        after = f", {kept} after drop_last={cfg.drop_last}" if cfg.drop_last else ""
        raise UserError(
            f"unfreeze_last={cfg.unfreeze_last} but the pretrained encoder has {m.n_layer} "
            f"layers (model.n_layer){after}; use unfreeze_last of at most {kept}"
        )


def run_key(
    pcfg: Config, text_files: list[str], legacy: bool = False, by_content: str | None = None
) -> str:
    """What makes a pretraining run the same: its resolved config (but the NEUTRAL settings)
    and its files' paths, sizes and modification times; the file `by_content` (the task's text,
    which two configs of one name share and rewrite in turn) by what it holds. `legacy`: the
    key of runs made before NEUTRAL was left out."""
    dump = pcfg.model_dump(mode="json") if legacy else _key_dump(pcfg)
    h = hashlib.sha256(json.dumps(dump, sort_keys=True).encode())
    for pattern in text_files:
        if by_content is not None and pattern == by_content and Path(pattern).is_file():
            digest = hashlib.sha256(Path(pattern).read_bytes()).hexdigest()
            h.update(f"{pattern}\0sha256:{digest}\0".encode())
            continue
        for f in sorted(glob.glob(pattern)) or [pattern]:
            try:
                st = Path(f).stat()
            except OSError:  # hf:<name>, or a file the pretraining will name as missing
                h.update(f"{f}\0\0".encode())
                continue
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:20]


def key_files(pcfg: Config) -> list[str]:
    """Every file the pretraining reads text from: data.corpus (the task's text file and
    self_pretrain.text's files, unless self_pretrain.set replaced them), data.sources and
    tokenizer.train_files, so that a change to any of them pretrains anew."""
    files = list(pcfg.data.corpus)
    for source in pcfg.data.sources:
        files += source.files
    return files + list(pcfg.tokenizer.train_files or [])


def reusable_run(runs_dir: str | Path, name: str, key: str, *also: str) -> tuple[str, Path] | None:
    """("reuse", run) for a finished run named `name` with `key` (or one of `also`: keys
    earlier versions gave the same settings), else ("resume", run) for the newest one with a
    checkpoint to continue from, else None."""
    root = Path(runs_dir)
    keys = {key, *also}
    found = []
    for f in root.glob(f"{glob.escape(name)}-*/{RUN_FILE}") if root.is_dir() else []:
        try:
            info = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("name") == name and info.get(KEY_FIELD) in keys:
            found.append((float(info.get("created", 0)), f.parent, info))
    found.sort(key=lambda x: x[0], reverse=True)
    for _, path, info in found:
        if info.get("status") == "finished":
            return "reuse", path
    for _, path, info in found:
        if info.get("status") in ("created", "running", "interrupted") and has_checkpoint(path):
            return "resume", path
    return None


def _plan(cfg: FinetuneConfig, say: Callable[[str], None]) -> tuple[Config, str, str, str]:
    """Rank 0's part: the text file written, the config built, an earlier run looked for.
    Returns (pretraining config, key, action, run directory or '')."""
    sp = cfg.self_pretrain
    assert sp is not None
    out = Path(cfg.runs_dir) / ".data" / f"{cfg.name}-mlm.txt"
    use_task = any(t.strip() == TASK for t in sp.text)
    files = [str(out)] * use_task + corpus_entries(sp)
    pcfg = pretrain_config(cfg, files)  # its settings checked before any text is read
    check_finetuning_fits(cfg, pcfg)
    texts = task_texts(cfg)  # read (and so checked) now, even when not pretrained on
    if use_task:
        body = "\n".join(texts) + "\n"
        # unchanged text keeps its mtime: the token cache (keyed on size and mtime) stays valid
        if not (out.is_file() and out.read_text(encoding="utf-8") == body):
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out, body)
        say(f"self_pretrain: {len(texts):,} texts of the task's files in {out}")
    read = key_files(pcfg)  # `files`, unless self_pretrain.set named others
    key = run_key(pcfg, read, by_content=str(out))
    # runs made before the task's text counted by content: by its size and time
    earlier = run_key(pcfg, read), run_key(pcfg, read, legacy=True)
    found = reusable_run(pcfg.runs_dir, pcfg.name, key, *earlier)
    action, path = found if found is not None else ("new", "")
    if action == "resume":
        try:  # killed after its last step: nothing left to train, so it is done
            check_not_finished(Run(Path(path)), pcfg.train, "")
        except UserError:
            action = "reuse"
    return pcfg, key, action, str(path)


def neutral_changes(run_dir: Path, pcfg: Config) -> list[str]:
    """`--set` overrides that give a resumed run this command's NEUTRAL settings (threads,
    device, ...) where its saved config has others: they are not in the key, so they may
    differ, and the resumed run should take the new ones."""
    try:
        saved = read_yaml(run_dir / "config.yaml")
    except UserError:
        return []
    now = pcfg.model_dump(mode="json")
    keys = [
        ("train", k)
        for k in NEUTRAL + (NEUTRAL_EVAL if pcfg.train.early_stop_metric is None else ())
    ] + [("data", "num_workers")]
    out = []
    for section, k in keys:
        before = (saved.get(section) or {}).get(k, now[section][k])
        if before != now[section][k]:
            out.append(f"{section}.{k}={json.dumps(now[section][k])}")
    return out


def self_pretrain(cfg: FinetuneConfig, say: Callable[[str], None] = print) -> FinetuneConfig:
    """Pretrain (or reuse / resume) the MLM run cfg.self_pretrain asks for; returns `cfg`
    with init (and self_pretrain.run) set to it. Under torchrun: on every rank."""
    sp = cfg.self_pretrain
    assert sp is not None
    main_say = distributed.main_says(say)
    with distributed.session(resolve_device(cfg.train.device)):
        pcfg, key, action, path = distributed.on_main(lambda: _plan(cfg, main_say))
    budget = " and ".join(
        x for x in (sp.minutes and f"{sp.minutes:g} min", sp.steps and f"{sp.steps} steps") if x
    )
    record = {
        KEY_FIELD: key,
        "self_pretrain_for": cfg.name,
        MODEL_FIELD: model_settings(cfg),
    }
    if action == "reuse":
        main_say(f"self_pretrain: reusing {path} (finished, same settings and text)")
    else:
        if action == "resume":
            main_say(f"self_pretrain: resuming the interrupted {path}")
        else:
            main_say(f"self_pretrain: pretraining {pcfg.name} for {budget} ({pcfg.recipe} recipe)")
        try:
            run, _ = pretrain(
                None if path else pcfg,
                resume=path or None,
                overrides=neutral_changes(Path(path), pcfg) if path else None,
                say=say,
                record=record,
            )
        except KeyboardInterrupt:  # the CLI's hint, in place of `pretrain --resume RUN`
            Interrupted.last = Interrupted(
                "interrupted during self-pretraining; run the same command again: it goes on "
                "from the pretraining run's last checkpoint (or starts it anew if it had none)"
            )
            raise Interrupted.last from None
        # rank 0's record: another rank may read run.json before rank 0 has written it
        status, why = distributed.broadcast(
            (run.info.get("status"), run.info.get("stopped_because"))
        )
        if status != "finished":
            raise UserError(
                f"{run.path}: self-pretraining stopped ({why}); fine-tuning needs a finished run"
            )
        path = str(run.path)
    main_say(f"self_pretrain: fine-tuning from {path}")
    return cfg.model_copy(
        update={"init": path, "self_pretrain": sp.model_copy(update={"run": path})}
    )
