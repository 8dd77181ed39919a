"""Pretraining: config -> tokenizer -> token cache -> encoder -> `fit` -> run directory.

The objective (masked-LM, or ELECTRA) and its model come from `objectives.pretraining_setup`.

Everything that can fail on bad input (tokenizer, corpus, config fit) runs before the run
directory is created, so a typo never leaves an empty run behind.

Under torchrun, rank 0 trains the tokenizer (every rank gets its exact vocabulary), builds the
token cache before the others open it, and creates the run directory; see `train.fit`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from encoderlab import distributed
from encoderlab.config import Config, TrainConfig, load_config, read_yaml, save_config, to_yaml
from encoderlab.data.cooccurrence import cooccurrence_embeddings
from encoderlab.data.shards import ShardStore
from encoderlab.data.tokens import MLMDataset, build_mlm_datasets, collate_mlm
from encoderlab.electra import check_new_run
from encoderlab.errors import UserError
from encoderlab.loggers import check_installed
from encoderlab.model import param_summary, prepare_training
from encoderlab.objectives import pretraining_setup
from encoderlab.runs import ReadOnlyRun, Run, atomic_write, check_runs_dir
from encoderlab.runtime import resolve_device, seed_everything, set_threads
from encoderlab.tokenizer import (
    load_tokenizer,
    save_tokenizer,
    short_vocab_warning,
    special_ids,
    train_tokenizer_from_files,
    unused_beside_path,
)
from encoderlab.train import FitResult, check_batch_size, check_early_stop_metric, fit


def obtain_tokenizer(cfg: Config, say: Callable[[str], None]):
    """Load `tokenizer.path`, or train one on `tokenizer.train_files` (default: the corpus)."""
    if cfg.tokenizer.path:
        if warning := unused_beside_path(cfg.tokenizer):
            say(warning)
        return load_tokenizer(cfg.tokenizer.path)
    if not (cfg.tokenizer.train_files or cfg.data.corpus or cfg.data.sources):
        raise UserError("no corpus: set data.corpus (a list of files or globs) or data.sources")
    say(f"training a {cfg.tokenizer.kind} tokenizer (vocab {cfg.tokenizer.vocab_size:,})")
    # the token cache's pass says what the corpus's files skip; other files are said here
    told = say if cfg.tokenizer.train_files is not None else None
    tok = train_tokenizer_from_files(None, cfg.tokenizer, cfg.data, say=told)
    if warning := short_vocab_warning(tok, cfg.tokenizer):
        say(warning)
    return tok


def fit_model_to_tokenizer(cfg: Config, tok) -> Config:
    """vocab_size and pad_id come from the tokenizer unless the config says otherwise."""
    vocab = tok.get_vocab_size()
    if cfg.model.vocab_size is None:
        cfg.model.vocab_size = vocab
    elif cfg.model.vocab_size < vocab:
        raise UserError(
            f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
            f"{vocab:,} tokens; remove model.vocab_size or raise it"
        )
    pad = special_ids(tok)["pad"]
    if "pad_id" in cfg.model.model_fields_set and cfg.model.pad_id != pad:
        raise UserError(
            f"model.pad_id={cfg.model.pad_id}, but the tokenizer's [PAD] is {pad}; leave "
            "model.pad_id out (the tokenizer sets it)"
        )
    cfg.model.pad_id = pad
    return cfg


def check_not_finished(run: Run, t: TrainConfig, hint: str | None = None) -> None:
    """Refuse to resume a run whose last checkpoint already reached the end `t` sets: the trainer
    takes a step before it checks, so it would train past max_steps / the last epoch. A run a
    time budget or early stopping ended goes on when `--set` gave it more budget or patience
    (or took the limit away). `hint`: what to do instead; None: the `--set` that trains on."""
    ckpt = run.latest_checkpoint()
    if ckpt is None:
        return
    state = json.loads((ckpt / "state.json").read_text())
    if state.get("eval_due") and run.info.get("status") != "finished":
        return  # a Ctrl-C cut the last step's evaluation or end short: the resume does them
    step, epoch = int(state.get("step", 0)), int(state.get("epoch", 0))
    before = _saved_train(run)
    why = str(run.info.get("stopped_because", ""))
    done = None
    longer = "To train longer, resume with a larger"
    if t.max_steps is not None and step >= t.max_steps:
        done = f"train.max_steps={t.max_steps}"
        extend = f"{longer} --set train.max_steps=N"
        if t.epochs is not None and epoch >= t.epochs:  # both ends reached: both move
            extend += " and --set train.epochs=null"
        hint = extend if hint is None else hint
    elif t.epochs is not None and epoch >= t.epochs and not state.get("micro"):
        done = f"train.epochs={t.epochs}"
        extend = f"{longer} --set train.epochs=N, or --set train.epochs=null and train.max_steps=N"
        hint = extend if hint is None else hint
    elif t.time_budget_min is not None and (
        state.get("train_seconds", 0) >= t.time_budget_min * 60
        or (why == "time budget" and t.time_budget_min <= (before.get("time_budget_min") or 0))
    ):  # a whole-run budget stops before its training seconds reach it
        done = f"train.time_budget_min={t.time_budget_min}"
        extend = "To train longer, resume with a larger --set train.time_budget_min=M"
        hint = extend if hint is None else hint  # fine-tuning: --resume takes no --set
    elif (
        run.info.get("status") == "finished"
        and why.startswith("early stop")
        and t.early_stop_metric is not None
        and t.early_stop_patience <= (before.get("early_stop_patience") or 0)
    ):
        done = "early stopping"
        hint = "To train on, resume with a larger --set train.early_stop_patience=N"
    if done is not None:
        raise UserError(
            f"{run.path}: already finished ({done}, at step {step}); nothing to resume. {hint}"
        )


def _saved_train(run: Run) -> dict[str, Any]:
    """The train section the run last ran with (its config.yaml, before this resume's --set)."""
    try:
        return read_yaml(run.path / "config.yaml").get("train") or {}
    except UserError:
        return {}


# what `--resume --set` may change: how long and how a run goes on, never what it trains
# (model, tokenizer, data, objective, optimiser and schedule, batch: the checkpoint holds those)
RESUME_KEYS = (
    *(f"train.{k}" for k in ("max_steps", "epochs", "time_budget_min", "budget_covers")),
    *(f"train.{k}" for k in ("eval_every", "eval_batches", "log_every", "checkpoint_every")),
    *(f"train.{k}" for k in ("checkpoint_minutes", "keep_checkpoints", "max_nonfinite")),
    *(f"train.{k}" for k in ("early_stop_metric", "early_stop_mode", "early_stop_patience")),
    *(f"train.{k}" for k in ("device", "threads", "compile", "tf32", "loggers")),
    "data.num_workers",
)


def _check_resume_overrides(overrides: list[str]) -> None:
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in RESUME_KEYS:
            raise UserError(
                f"--set {key}: a resumed run keeps what it trains (model, tokenizer, data, "
                "optimiser, schedule, batch); --resume may change only "
                + ", ".join(RESUME_KEYS)
                + "; start a new run for the rest"
            )


def pretrain(
    cfg: Config | None = None,
    resume: str | Path | None = None,
    overrides: list[str] | None = None,
    say: Callable[[str], None] = print,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    record: dict[str, Any] | None = None,
    started: float | None = None,
) -> tuple[Run, FitResult]:
    """Start a pretraining run from `cfg`, or continue the run at `resume` (under torchrun:
    on every rank, see `encoderlab.distributed`). `record`: more fields for its run.json, there
    from the start (self-pretraining finds its runs by them). `started`: time.perf_counter()
    when the command began, where a whole-run time budget starts (the tokenizer and the corpus
    shards are part of the run); default now."""
    if started is None:
        started = time.perf_counter()
    if resume is not None:
        opened = Run.open(resume)
        if str(opened.info.get("kind", "")).startswith("finetune"):
            raise UserError(
                f"{opened.path}: is a fine-tuning run; use `encoderlab finetune --resume`"
            )
        # a mistyped key is "unknown config key" (with the keys there are), not "not changeable"
        cfg = load_config(opened.path / "config.yaml", overrides)
        _check_resume_overrides(overrides or [])
    assert cfg is not None
    if resume is None:
        check_runs_dir(cfg.runs_dir)  # before the tokenizer and the data are made
        check_installed(cfg.train.loggers)  # a missing tracker too
        check_new_run(cfg)  # settings ELECTRA would ignore
    with distributed.session(resolve_device(cfg.train.device)):
        run, result = _pretrain(cfg, resume, distributed.main_says(say), on_eval, record, started)
    if distributed.is_main():
        run.update(wall_seconds=round(time.perf_counter() - started, 1))
    run.close()  # the run directory is free again (a later write takes the lock anew)
    return run, result


def _check_same_corpus(run: Run, store, say: Callable[[str], None]) -> None:
    """A resume goes on with the text its run started with: other text would redraw the
    validation split over blocks already trained on. Touched or moved files that give the same
    tokens resume; a run made before tokens were recorded (2026-12-03) gets a warning."""
    if run.info.get("data_key") in (None, store.path.name):
        return
    before = run.info.get("tokens_digest")
    if before is None:
        say("warning: the corpus files changed since this run started; resuming anyway")
    elif before != store.content_digest:
        raise UserError(
            f"{run.path}: the corpus now gives other text than this run started with "
            f"({store.n_docs:,} documents, {store.n_tokens:,} tokens), and its validation "
            "blocks would be drawn anew from text it trained on; restore the corpus files, or "
            "pretrain a new run"
        )


def warm_start_embeddings(
    net: torch.nn.Module,
    cfg: Config,
    store: ShardStore,
    valid_set: MLMDataset | None,
    tok: Tokenizer,
    say: Callable[[str], None],
) -> None:
    """`embedding_init: cooccurrence`: the token embeddings (tied to the MLM decoder, shared with
    ELECTRA's generator) start from the training text's PPMI vectors; [PAD], the other special
    tokens and tokens the text never pairs keep their random rows."""
    began = time.perf_counter()
    held_out: dict[int, list[tuple[int, int]]] = {}
    if valid_set is not None:  # the validation blocks stay unseen
        for j in range(len(valid_set.spans)):
            shard, start, end = valid_set.spans.span(j)
            held_out.setdefault(shard, []).append((start, end))
    specials = tuple(sorted(set(special_ids(tok).values())))
    weight = net.encoder.embeddings.tok.weight
    vectors, covered, read = cooccurrence_embeddings(
        store, weight.shape[0], weight.shape[1], cfg.model.init_std, specials, held_out, cfg.seed
    )
    covered[list(specials)] = False
    with torch.no_grad():
        weight[covered] = vectors[covered].to(weight.dtype)
    say(
        f"embedding_init cooccurrence: {int(covered.sum()):,} of {weight.shape[0]:,} token "
        f"vectors from the co-occurrence of {read:,} training tokens "
        f"({time.perf_counter() - began:.1f}s)"
    )


def _pretrain(
    cfg: Config,
    resume: str | Path | None,
    say: Callable[[str], None],
    on_eval: Callable[[int, dict[str, float]], None] | None,
    record: dict[str, Any] | None = None,
    started: float | None = None,
) -> tuple[Run, FitResult]:
    check_batch_size(cfg.train)
    if resume is not None:
        run = Run.open(resume)
        tok = load_tokenizer(run.path / "tokenizer")
        run.resumable_checkpoint()
        check_not_finished(run, cfg.train)
    else:
        # one tokenizer for all ranks: training one is not deterministic across processes
        text = distributed.on_main(lambda: obtain_tokenizer(cfg, say).to_str())
        tok = Tokenizer.from_str(text)
        cfg = fit_model_to_tokenizer(cfg, tok)

    set_threads(cfg.train.threads, say)
    seed_everything(cfg.seed)
    with distributed.main_first():  # rank 0 builds the token cache; the others open it
        train_set, valid_set, store = build_mlm_datasets(cfg.data, tok, cfg.seed, say)
    if resume is not None:
        _check_same_corpus(run, store, say)
    device = resolve_device(cfg.train.device)
    net, objective = pretraining_setup(cfg)
    if resume is None and cfg.embedding_init == "cooccurrence":
        warm_start_embeddings(net, cfg, store, valid_set, tok, say)
    check_early_stop_metric(cfg.train, objective.metric_names)  # before the run exists
    if cfg.train.early_stop_metric and not valid_set:
        raise UserError(
            f"train.early_stop_metric={cfg.train.early_stop_metric}: the run has no validation "
            "blocks to measure it on; raise data.valid_ratio (e.g. 0.05) or drop early stopping"
        )
    model, optimizer = prepare_training(net, cfg.train, device)
    if resume is None:

        def create() -> str:
            run = Run.create(cfg.runs_dir, cfg.name, cfg, kind="pretrain")
            save_tokenizer(tok, run.path / "tokenizer")
            save_config(cfg, run.path / "config.yaml")
            return str(run.path)

        run = Run(distributed.on_main(create))
    if not distributed.is_main():
        run = ReadOnlyRun(run.path)
    n_params = sum(p.numel() for p in model.parameters())
    run.update(
        params=n_params,
        description=cfg.description,
        data_key=store.path.name,
        tokens_digest=store.content_digest,
        corpus_tokens=store.n_tokens,
        corpus_docs=store.n_docs,
        objective=cfg.objective,
        pid=os.getpid(),
        host=socket.gethostname(),
        **(record or {}),
    )
    saved = run.path / "config.yaml"
    if resume is not None and distributed.is_main() and saved.read_text("utf-8") != to_yaml(cfg):
        atomic_write(saved, to_yaml(cfg))  # what --resume --set changed: the run says it
    say(param_summary(model))
    say(
        f"run {run.path}: {len(train_set):,} train / "
        f"{len(valid_set) if valid_set is not None else 0:,} valid examples of "
        f"{cfg.data.block_len} tokens, device {device}"
    )
    result = fit(
        model,
        optimizer,
        train_set,
        valid_set,
        collate_mlm(cfg.model.pad_id),
        objective,
        cfg.train,
        run,
        seed=cfg.seed,
        resume=resume is not None,
        num_workers=cfg.data.num_workers,
        on_eval=on_eval,
        say=say,
        started=started,
    )
    return run, result
