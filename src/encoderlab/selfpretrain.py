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
interrupted one, so only a change of settings or text pretrains anew.
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
    SelfPretrainConfig,
    apply_overrides,
    build,
)
from encoderlab.errors import UserError
from encoderlab.pretraining import check_not_finished, pretrain
from encoderlab.runs import RUN_FILE, Run, atomic_write, has_checkpoint
from encoderlab.runtime import resolve_device
from encoderlab.tasks import get_task
from encoderlab.tasks.base import example_texts

KEY_FIELD = "self_pretrain_key"  # run.json: what the run was pretrained with (see run_key)
TASK = "task"


def task_texts(cfg: FinetuneConfig) -> list[str]:
    """The text of the task's train, valid and test files (whitespace squeezed, duplicates
    and empty ones dropped, first occurrence first); no label ever."""
    if not cfg.task.train:
        raise UserError("task.train is not set: give the training file (csv/tsv/jsonl/json/...)")
    task = get_task(cfg.task.type, cfg.task)
    seen: dict[str, None] = {}
    for path in (cfg.task.train, cfg.task.valid, cfg.task.test):
        if path:
            for text in example_texts(task.read(path, cfg.task)):
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
        "model": cfg.model.model_dump(mode="json", exclude_unset=True),
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
    block = RECIPES[sp.recipe].get("data", {}).get("block_len", DataConfig().block_len)
    if cfg.model.max_len < block:  # blocks must fit the encoder fine-tuning uses
        data["data"]["block_len"] = cfg.model.max_len
    apply_overrides(data, list(sp.set))
    return build(Config, data, "self_pretrain")


def run_key(pcfg: Config, text_files: list[str]) -> str:
    """What makes a pretraining run the same: its resolved config and its files' paths, sizes
    and modification times (the task's text file is rewritten only when its text changed)."""
    h = hashlib.sha256(json.dumps(pcfg.model_dump(mode="json"), sort_keys=True).encode())
    for pattern in text_files:
        for f in sorted(glob.glob(pattern)) or [pattern]:
            st = Path(f).stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:20]


def reusable_run(runs_dir: str | Path, name: str, key: str) -> tuple[str, Path] | None:
    """("reuse", run) for a finished run named `name` with `key`, else ("resume", run) for
    the newest one with a checkpoint to continue from, else None."""
    root = Path(runs_dir)
    found = []
    for f in root.glob(f"{glob.escape(name)}-*/{RUN_FILE}") if root.is_dir() else []:
        try:
            info = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("name") == name and info.get(KEY_FIELD) == key:
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
    if use_task:
        texts = task_texts(cfg)
        body = "\n".join(texts) + "\n"
        # unchanged text keeps its mtime: the token cache (keyed on size and mtime) stays valid
        if not (out.is_file() and out.read_text(encoding="utf-8") == body):
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out, body)
        say(f"self_pretrain: {len(texts):,} texts of the task's files in {out}")
    key = run_key(pcfg, files)
    found = reusable_run(pcfg.runs_dir, pcfg.name, key)
    action, path = found if found is not None else ("new", "")
    if action == "resume":
        try:  # killed after its last step: nothing left to train, so it is done
            check_not_finished(Run(Path(path)), pcfg.train, "")
        except UserError:
            action = "reuse"
    return pcfg, key, action, str(path)


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
    record = {KEY_FIELD: key, "self_pretrain_for": cfg.name}
    if action == "reuse":
        main_say(f"self_pretrain: reusing {path} (finished, same settings and text)")
    else:
        if action == "resume":
            main_say(f"self_pretrain: resuming the interrupted {path}")
        else:
            main_say(f"self_pretrain: pretraining {pcfg.name} for {budget} ({pcfg.recipe} recipe)")
        try:
            run, _ = pretrain(None if path else pcfg, resume=path or None, say=say, record=record)
        except KeyboardInterrupt:
            main_say("self_pretrain interrupted: run the same command again to resume it")
            raise
        if run.info.get("status") != "finished":
            raise UserError(
                f"{run.path}: self-pretraining stopped ({run.info.get('stopped_because')}); "
                "fine-tuning needs a finished run"
            )
        path = str(run.path)
    main_say(f"self_pretrain: fine-tuning from {path}")
    return cfg.model_copy(
        update={"init": path, "self_pretrain": sp.model_copy(update={"run": path})}
    )
