"""self_pretrain: one fine-tuning config pretrains an MLM on the task's text, then fine-tunes
from that run; reruns reuse (or resume) it; the task's text never includes its labels."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import sentiment_rows
from encoderlab.config import FinetuneConfig, load_config
from encoderlab.errors import UserError
from encoderlab.finetuning import DEFAULTS, finetune
from encoderlab.selfpretrain import pretrain_config, task_texts
from test_finetune import base_cfg, main_code, write_csv


def sp_cfg(tmp_path: Path, **sp) -> dict:
    """A tiny fine-tuning config with a 4-step self-pretraining stage; the encoder is frozen
    so its fine-tuned tensors must be exactly the pretrained ones."""
    cfg = base_cfg(tmp_path, freeze="all", train={"epochs": 1, "threads": 1})
    del cfg["train"]["lr"]
    cfg["self_pretrain"] = {
        "steps": 4,
        "set": [f"data.cache_dir={tmp_path / 'cache'}", "train.checkpoint_every=2"],
        **sp,
    }
    return cfg


def mlm_runs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "runs").glob("ft-mlm-*"))


def test_one_call_pretrains_on_the_task_text_then_finetunes_from_that_run(tmp_path):
    said: list[str] = []
    run, _ = finetune(FinetuneConfig.model_validate(sp_cfg(tmp_path)), say=said.append)
    (pre,) = mlm_runs(tmp_path)
    info = json.loads((pre / "run.json").read_text())
    assert info["kind"] == "pretrain" and info["status"] == "finished" and info["steps"] == 4
    assert run.info["self_pretrain"] == str(pre) and run.info["init"].startswith(str(pre))
    saved = load_config(run.path / "config.yaml", schema=FinetuneConfig)  # resumable as saved
    assert saved.init == str(pre) and saved.self_pretrain.run == str(pre)
    assert saved.train.lr == DEFAULTS["own"]["*"]["lr"]  # an encoder pretrained here, lr unset
    # the tokenizer pretraining trained is the one fine-tuning uses; the weights are its weights
    tok = "tokenizer/tokenizer.json"
    assert (run.path / tok).read_text() == (pre / tok).read_text()
    before = load_file(str(sorted((pre / "checkpoints").iterdir())[-1] / "model.safetensors"))
    after = load_file(str(run.latest_checkpoint() / "model.safetensors"))
    for key in ("blocks.0.attn.qkv.weight", "blocks.1.ff.fc2.weight", "embeddings.tok.weight"):
        torch.testing.assert_close(
            after[f"backbone.{key}"], before[f"encoder.{key}"], rtol=0, atol=0
        )
    # the MLM text: the task's texts, one a line, without the label column
    text = (tmp_path / "runs" / ".data" / "ft-mlm.txt").read_text().splitlines()
    rows = sentiment_rows(240, 0)
    assert set(text) == {r["text"] for r in rows}
    pcfg = yaml.safe_load((pre / "config.yaml").read_text())
    assert pcfg["model"]["d_model"] == 32 and pcfg["model"]["n_layer"] == 2
    assert pcfg["model"]["norm"] == "pre" and pcfg["tokenizer"]["vocab_size"] == 120
    assert pcfg["data"]["block_len"] == 32  # the budget recipe's 64 capped at model.max_len

    # the same command again: the finished run is reused, not pretrained again
    said.clear()
    again, _ = finetune(FinetuneConfig.model_validate(sp_cfg(tmp_path)), say=said.append)
    assert mlm_runs(tmp_path) == [pre] and again.info["self_pretrain"] == str(pre)
    assert sum("self_pretrain: reusing" in m for m in said) == 1, said

    # an interrupted pretraining run (its last checkpoint lost) resumes instead of restarting
    shutil.rmtree(pre / "checkpoints" / "step-00000004")
    info.update(status="interrupted")
    (pre / "run.json").write_text(json.dumps(info))
    said.clear()
    finetune(FinetuneConfig.model_validate(sp_cfg(tmp_path)), say=said.append)
    assert any("resuming the interrupted" in m for m in said), said
    info = json.loads((pre / "run.json").read_text())
    assert mlm_runs(tmp_path) == [pre] and info["status"] == "finished" and info["steps"] == 4

    # other settings: a new pretraining run
    finetune(FinetuneConfig.model_validate(sp_cfg(tmp_path, steps=3)), say=said.append)
    assert len(mlm_runs(tmp_path)) == 2


def test_corpus_files_join_the_task_text(tmp_path, corpus_txt):
    cfg = sp_cfg(tmp_path, text=["task", str(tmp_path / "corp*.txt")], steps=2)
    cfg["self_pretrain"]["set"] = [f"data.cache_dir={tmp_path / 'cache'}"]
    pcfg = pretrain_config(FinetuneConfig.model_validate(cfg), ["a.txt", str(corpus_txt)])
    assert pcfg.data.corpus == ["a.txt", str(corpus_txt)] and pcfg.name == "ft-mlm"
    assert pcfg.train.max_steps == 2 and pcfg.train.epochs is None
    run, _ = finetune(FinetuneConfig.model_validate(cfg), say=lambda m: None)
    (pre,) = mlm_runs(tmp_path)
    saved = yaml.safe_load((pre / "config.yaml").read_text())
    assert saved["data"]["corpus"][1:] == [str(tmp_path / "corp*.txt")]
    assert json.loads((pre / "run.json").read_text())["corpus_docs"] > 400  # 240 tweets + 400


def test_set_overrides_and_the_bert_recipe(tmp_path):
    cfg = sp_cfg(tmp_path, recipe="bert", minutes=2, steps=None)
    cfg["self_pretrain"]["set"] = ["model.n_layer=3", "train.batch_size=8"]
    pcfg = pretrain_config(FinetuneConfig.model_validate(cfg), ["a.txt"])
    assert pcfg.model.n_layer == 3 and pcfg.train.batch_size == 8
    assert pcfg.model.norm == "post" and pcfg.train.time_budget_min == 2
    assert pcfg.train.max_steps is None and pcfg.train.epochs is None
    assert pcfg.embedding_init == "random"
    cfg["self_pretrain"]["set"] = ["embedding_init=cooccurrence"]  # few labels: README
    pcfg = pretrain_config(FinetuneConfig.model_validate(cfg), ["a.txt"])
    assert pcfg.embedding_init == "cooccurrence"


def test_a_tokenizer_section_that_set_tokenizer_path_replaced_is_not_named_in_its_stage(
    tmp_path,
):
    """`finetune sp.yaml --set tokenizer.path=...` named the file's tokenizer settings as
    unused in its self_pretrain stage: rebuilding the stage's config forgot that --set had
    replaced them (a run without self_pretrain said nothing, rightly)."""
    from encoderlab.config import load_config
    from encoderlab.tokenizer import unused_beside_path

    f = tmp_path / "sp.yaml"
    f.write_text(yaml.safe_dump(sp_cfg(tmp_path, steps=2) | {"tokenizer": {"vocab_size": 150}}))
    cfg = load_config(f, [f"tokenizer.path={tmp_path / 'tok'}"], FinetuneConfig)
    assert unused_beside_path(cfg.tokenizer) is None
    assert unused_beside_path(pretrain_config(cfg, ["a.txt"]).tokenizer) is None
    cfg = load_config(f, [f"tokenizer.path={tmp_path}", "tokenizer.lowercase=true"], FinetuneConfig)
    said = unused_beside_path(pretrain_config(cfg, ["a.txt"]).tokenizer)
    assert said is not None and "tokenizer.lowercase=true not used" in said


def assert_refused_before_pretraining(tmp_path, capsys, cfg: dict, expected: str) -> None:
    """`finetune` of `cfg` exits 2 with one line holding `expected`, and no MLM run exists."""
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump(cfg))
    code = main_code(["finetune", f])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and "Traceback" not in err and err.strip().count("\n") == 0, err
    assert not mlm_runs(tmp_path)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"init": "runs/some-run"}, "init=runs/some-run and self_pretrain"),
        ({"init": "scratch:runs/x"}, "self_pretrain pretrains them itself"),
        ({"self_pretrain": {"text": ["task"]}}, "pretraining budget"),
        ({"self_pretrain": {"steps": 2, "set": ["oops"]}}, "not KEY=VALUE"),
        ({"self_pretrain": {"steps": 2, "sets": []}}, "unknown config key 'self_pretrain.sets'"),
        ({"self_pretrain": {"minutes": -1}}, "minutes must be"),
        ({"self_pretrain": {"steps": 2, "text": ["task", "no/such/*.txt"]}}, "matches no file"),
        (
            {"self_pretrain": {"steps": 2, "set": ["model.n_head=5"]}},
            "self_pretrain.set: config key",
        ),
    ],
)
def test_bad_combinations_are_one_line_errors(tmp_path, capsys, change, expected):
    cfg = {**base_cfg(tmp_path), "self_pretrain": {"steps": 2}, **change}
    assert_refused_before_pretraining(tmp_path, capsys, cfg, expected)


# ---------------------------------------------------------------------------------------------
# The task's text: every text field, never a label


def _texts(tmp_path: Path, task: dict) -> list[str]:
    cfg = base_cfg(tmp_path, task=task)
    cfg["self_pretrain"] = {"steps": 1}
    return task_texts(FinetuneConfig.model_validate(cfg))


def test_classification_text_has_train_valid_and_test_text_but_no_labels(tmp_path):
    rows = [{"id": str(i), "text": f"tweet {i} here", "target": "zzpos"} for i in range(20)]
    rows[1]["text"] = rows[0]["text"]  # a duplicate is one document
    train = write_csv(tmp_path / "tr.csv", rows, ["id", "text", "target"])
    valid = write_csv(
        tmp_path / "va.csv",
        [{"id": "v", "text": "valid one", "target": "zzpos"}],
        ["id", "text", "target"],
    )
    test = write_csv(tmp_path / "te.csv", [{"id": "t", "text": "test\none"}], ["id", "text"])
    task = {"train": str(train), "valid": str(valid), "test": str(test)}
    texts = _texts(tmp_path, {**task, "label_column": "target"})
    assert len(texts) == 19 + 2 and "valid one" in texts and "test one" in texts
    assert not any("zzpos" in t for t in texts)


def test_pair_text_has_both_sentences_and_no_labels(tmp_path):
    rows = [
        {"a": f"premise {i}", "b": f"hypothesis {i}", "gold": "zzentail" if i % 2 else "zzno"}
        for i in range(12)
    ]
    f = write_csv(tmp_path / "pairs.csv", rows, ["a", "b", "gold"])
    task = {
        "type": "pair",
        "train": str(f),
        "text_column": "a",
        "text_pair_column": "b",
        "label_column": "gold",
        "id_column": None,
    }
    texts = _texts(tmp_path, task)
    assert {"premise 3", "hypothesis 3"} <= set(texts) and len(texts) == 24
    assert not any("zz" in t for t in texts)


def test_regression_text_has_no_scores(tmp_path):
    rows = [{"id": str(i), "text": f"sentence {i}", "score": 1000.5 + i} for i in range(10)]
    f = write_csv(tmp_path / "r.csv", rows, ["id", "text", "score"])
    texts = _texts(tmp_path, {"type": "regression", "train": str(f), "label_column": "score"})
    assert len(texts) == 10 and not any("1000" in t for t in texts)


def test_tagging_text_is_the_words_joined_without_tags(tmp_path):
    lines = []
    for i in range(8):
        lines += ["john NNP B-NP B-PER", f"walks{i} VBZ I-VP O", ""]
    f = tmp_path / "ner.conll"
    f.write_text("\n".join(lines))
    texts = _texts(tmp_path, {"type": "tagging", "train": str(f), "format": "conll"})
    assert texts == [f"john walks{i}" for i in range(8)]


def test_qa_text_is_questions_and_contexts_once_without_answers_fields(tmp_path):
    ctx = "the capital of zzland is oslo ."
    qas = [
        {
            "id": f"q{i}",
            "question": f"question {i} ?",
            "answers": [{"text": "oslo", "answer_start": ctx.index("oslo")}],
        }
        for i in range(3)
    ]
    data = {"data": [{"title": "t", "paragraphs": [{"context": ctx, "qas": qas}]}]}
    f = tmp_path / "squad.json"
    f.write_text(json.dumps(data))
    texts = _texts(tmp_path, {"type": "qa", "train": str(f), "max_len": 32})
    assert texts == ["question 0 ?", ctx, "question 1 ?", "question 2 ?"]


def test_no_train_file_is_a_user_error(tmp_path):
    cfg = base_cfg(tmp_path)
    cfg["task"]["train"] = None
    cfg["self_pretrain"] = {"steps": 1}
    with pytest.raises(UserError, match="task.train"):
        task_texts(FinetuneConfig.model_validate(cfg))


# ---------------------------------------------------------------------------------------------
# The Python API and studies


def test_python_api_self_pretrains_on_in_memory_rows(tmp_path):
    import encoderlab as el

    cfg = sp_cfg(tmp_path)
    cfg["task"]["train"] = None
    rows = sentiment_rows(120, 3)
    run = el.finetune(cfg, overrides={"self_pretrain.steps": 2}, train=rows, say=lambda m: None)
    (pre,) = mlm_runs(tmp_path)
    assert json.loads((run / "run.json").read_text())["self_pretrain"] == str(pre)
    text = (tmp_path / "runs" / ".data" / "ft-mlm.txt").read_text().splitlines()
    assert set(text) == {r["text"] for r in rows}


@pytest.mark.slow  # ~10 s: the arm is a process of its own
def test_a_study_arm_with_self_pretrain(tmp_path):
    from encoderlab.study import run_study

    cfg = sp_cfg(tmp_path)
    (tmp_path / "base.yaml").write_text(
        yaml.safe_dump(
            {k: v for k, v in cfg.items() if k not in ("self_pretrain", "name", "runs_dir")}
        )
    )
    study = tmp_path / "study.yaml"
    sets = json.dumps(cfg["self_pretrain"]["set"])
    study.write_text(
        yaml.safe_dump(
            {
                "base": "base.yaml",
                "out": str(tmp_path / "out"),
                "arms": [
                    {
                        "name": "own",
                        "overrides": ["self_pretrain.steps=2", f"self_pretrain.set={sets}"],
                    }
                ],
            }
        )
    )
    run_study(study, say=lambda m: None)
    arm = json.loads((tmp_path / "out" / "study.json").read_text())["arms"]["own"]
    assert arm["status"] == "done", arm
    (pre,) = (tmp_path / "out" / "runs").glob("own-mlm-*")
    assert json.loads((Path(arm["run_dir"]) / "run.json").read_text())["self_pretrain"] == str(pre)


def test_a_scratch_lr_after_self_pretraining_is_no_warning(tmp_path):
    from encoderlab.finetuning import resolve_defaults

    sp = {"steps": 2, "run": "runs/x-mlm"}  # as `self_pretrain` leaves it: init is its run
    cfg = FinetuneConfig.model_validate(
        {**base_cfg(tmp_path), "init": "runs/x-mlm", "self_pretrain": sp}
    )
    said: list[str] = []
    assert resolve_defaults(cfg, said.append).train.lr == 3e-3 and not said
    cfg.train.lr = None
    assert resolve_defaults(cfg, said.append).train.lr == DEFAULTS["own"]["*"]["lr"] and not said
    cfg.train.lr = 1e-2
    resolve_defaults(cfg, said.append)
    assert len(said) == 1 and "far outside" in said[0]


# ---------------------------------------------------------------------------------------------
# Reruns that should reuse the pretraining run, and mistakes said before pretraining


def test_rerunning_a_runs_saved_config_reuses_its_pretraining_run(tmp_path):
    """A fine-tuning run's config.yaml writes out every model key, the schema's defaults too
    (post-LN); rerun, they used to override the budget recipe (pre-LN) and pretrain anew."""
    run, _ = finetune(FinetuneConfig.model_validate(sp_cfg(tmp_path)), say=lambda m: None)
    (pre,) = mlm_runs(tmp_path)
    said: list[str] = []
    saved = load_config(run.path / "config.yaml", schema=FinetuneConfig)
    again, _ = finetune(saved, say=said.append)
    assert mlm_runs(tmp_path) == [pre] and again.info["self_pretrain"] == str(pre)
    assert any("self_pretrain: reusing" in m for m in said), said
    # an edited model key pretrains anew, with the recipe still filling what was not given
    edited = load_config(
        run.path / "config.yaml", ["model.n_layer=1", "train.epochs=1"], FinetuneConfig
    )
    finetune(edited, say=lambda m: None)
    (new,) = set(mlm_runs(tmp_path)) - {pre}
    pcfg = yaml.safe_load((new / "config.yaml").read_text())
    assert pcfg["model"]["n_layer"] == 1 and pcfg["model"]["norm"] == "pre"


def test_threads_and_cadence_do_not_pretrain_again_and_a_resume_takes_them(tmp_path):
    finetune(FinetuneConfig.model_validate(sp_cfg(tmp_path)), say=lambda m: None)
    (pre,) = mlm_runs(tmp_path)
    cfg = sp_cfg(tmp_path)
    cfg["train"]["threads"] = 2
    cfg["self_pretrain"]["set"] = [*cfg["self_pretrain"]["set"], "train.log_every=3"]
    said: list[str] = []
    finetune(FinetuneConfig.model_validate(cfg), say=said.append)
    assert mlm_runs(tmp_path) == [pre] and any("reusing" in m for m in said), said
    # interrupted: resumed, with the threads this command asks for
    shutil.rmtree(pre / "checkpoints" / "step-00000004")
    info = json.loads((pre / "run.json").read_text())
    (pre / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    said.clear()
    finetune(FinetuneConfig.model_validate(cfg), say=said.append)
    assert mlm_runs(tmp_path) == [pre] and any("resuming the interrupted" in m for m in said)
    saved = yaml.safe_load((pre / "config.yaml").read_text())
    assert saved["train"]["threads"] == 2 and saved["train"]["log_every"] == 3


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"task": {"max_len": 64}}, "task.max_len=64 is longer than the max_len=32"),
        ({"drop_last": 2}, "drop_last=2 would remove all 2 layers"),
        ({"freeze": "all", "unfreeze_last": 3}, "unfreeze_last=3 but the pretrained encoder"),
        (
            {"freeze": "all", "unfreeze_last": 2, "drop_last": 1},
            "unfreeze_last=2 but the pretrained encoder has 2 layers (model.n_layer), 1 after "
            "drop_last=1; use unfreeze_last of at most 1",
        ),
        ({"task": {"train": "no-such.csv"}, "sp": {"text": ["CORPUS"]}}, "no-such.csv"),
        # fine-tuning's data and the encoder's segments: they were found after the stage
        ({"task": {"label_column": "targt"}}, "no column 'targt'"),
        (
            {"task": {"type": "pair", "text_pair_column": "text"}, "model": {"n_segments": 1}},
            "model.n_segments=1: this task's second text is segment 1",
        ),
        ({"task": {"test": "TRAIN", "id_column": "nope"}}, "no id column 'nope'"),
        ({"sp": {"set": ["train.log_evry=5"]}}, "self_pretrain.set: unknown config key"),
    ],
)
def test_what_finetuning_would_refuse_is_said_before_pretraining(
    tmp_path, capsys, corpus_txt, change, expected
):
    cfg = base_cfg(tmp_path)
    sp = {"steps": 2, "set": [f"data.cache_dir={tmp_path / 'cache'}"], **change.pop("sp", {})}
    sp["text"] = [str(corpus_txt) if t == "CORPUS" else t for t in sp.get("text", ["task"])]
    for key, value in change.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    if cfg["task"].get("test") == "TRAIN":
        cfg["task"]["test"] = cfg["task"]["train"]
    cfg["self_pretrain"] = sp
    assert_refused_before_pretraining(tmp_path, capsys, cfg, expected)


def test_a_corpus_named_in_set_is_part_of_the_key(tmp_path, corpus_txt):
    """self_pretrain.set may replace data.corpus (or add tokenizer.train_files); the key used
    to hash only self_pretrain.text's files, so an edited corpus reused the stale run."""
    cfg = sp_cfg(tmp_path, steps=2)
    cfg["self_pretrain"]["set"] += [f"data.corpus=[{corpus_txt}]"]
    finetune(FinetuneConfig.model_validate(cfg), say=lambda m: None)
    finetune(FinetuneConfig.model_validate(cfg), say=lambda m: None)
    assert len(mlm_runs(tmp_path)) == 1  # unchanged: reused
    with corpus_txt.open("a", encoding="utf-8") as f:
        f.write("one more line of text for the corpus\n")
    said: list[str] = []
    finetune(FinetuneConfig.model_validate(cfg), say=said.append)
    assert len(mlm_runs(tmp_path)) == 2 and not any("reusing" in m for m in said), said


def test_ctrl_c_during_self_pretraining_says_to_run_the_same_command_again(
    tmp_path, capsys, monkeypatch
):
    """stderr said `encoderlab pretrain --resume RUN` while stdout said to rerun the command;
    the command is what the user ran, and it resumes the pretraining run itself."""
    import encoderlab.selfpretrain as sp

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sp, "pretrain", interrupted)
    f = tmp_path / "ft.yaml"
    f.write_text(yaml.safe_dump({**base_cfg(tmp_path), "self_pretrain": {"steps": 2}}))
    capsys.readouterr()
    assert main_code(["finetune", f]) == 130
    err = capsys.readouterr().err
    assert "interrupted during self-pretraining; run the same command again" in err, err
    assert "--resume" not in err


def test_task_text_includes_unlabelled_rows_such_as_imdb_unsup(tmp_path):
    from encoderlab.config import FinetuneConfig
    from encoderlab.selfpretrain import task_texts

    for label in ("pos", "neg", "unsup"):
        (tmp_path / "train" / label).mkdir(parents=True)
        (tmp_path / "train" / label / "1.txt").write_text(f"a {label} review")
    cfg = FinetuneConfig.model_validate(
        {"task": {"type": "classification", "train": str(tmp_path / "train")}}
    )
    assert sorted(task_texts(cfg)) == ["a neg review", "a pos review", "a unsup review"]


def test_model_show_shows_the_encoder_the_mlm_stage_builds(tmp_path, capsys):
    """With self_pretrain the fine-tuned encoder is the pretraining run's, which the recipe
    fills in (budget: pre-LN): `model show` shows that one, not the model: section's defaults."""
    from conftest import run_cli

    train = tmp_path / "t.csv"
    train.write_text("text,label\ngood film,1\nbad film,0\n", encoding="utf-8")
    cfg = tmp_path / "sp.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "task": {"train": str(train), "max_len": 32},
                "self_pretrain": {"text": ["task"], "steps": 10, "recipe": "budget"},
                "model": {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 64},
            }
        )
    )
    assert run_cli("model", "show", cfg) == 0
    assert "pre-LN" in capsys.readouterr().out
    assert run_cli("model", "show", cfg, "--set", "self_pretrain.recipe=bert") == 0
    assert "post-LN" in capsys.readouterr().out


def test_blocks_fit_the_max_len_self_pretrain_set_gives(tmp_path):
    """Blocks are capped at the encoder's max_len as self_pretrain.set leaves it: the
    fine-tuning config's 32 used to cut blocks for a set model.max_len=128 too, and a set
    max_len below the recipe's 64-token blocks was an error about a key nobody set."""

    def pretraining(model: dict, sets: list[str]):
        cfg = sp_cfg(tmp_path)
        cfg["model"] = {k: v for k, v in cfg["model"].items() if k != "max_len"} | model
        cfg["task"]["max_len"] = 16
        cfg["self_pretrain"]["set"] = sets
        return pretrain_config(FinetuneConfig.model_validate(cfg), ["a.txt"])

    wide = pretraining({"max_len": 32}, ["model.max_len=128"])
    assert (wide.model.max_len, wide.data.block_len) == (128, 64)  # the budget recipe's blocks
    narrow = pretraining({}, ["model.max_len=32"])
    assert (narrow.model.max_len, narrow.data.block_len) == (32, 32)
    assert pretraining({"max_len": 32}, []).data.block_len == 32  # the fine-tuning config's
    chosen = pretraining({}, ["model.max_len=32", "data.block_len=16"])
    assert chosen.data.block_len == 16


def test_two_configs_of_one_name_keep_their_own_pretraining(tmp_path):
    """Two fine-tuning configs with the same name share <runs_dir>/.data/<name>-mlm.txt and
    rewrite it in turn; the key counted its size and time, so A, B, A pretrained three times."""
    a = sp_cfg(tmp_path, steps=2)
    b = json.loads(json.dumps(a))
    other = write_csv(tmp_path / "b.csv", sentiment_rows(240, 7), ["id", "text", "target"])
    b["task"]["train"] = str(other)
    for cfg in (a, b):
        finetune(FinetuneConfig.model_validate(cfg), say=lambda m: None)
    assert len(mlm_runs(tmp_path)) == 2
    said: list[str] = []
    finetune(FinetuneConfig.model_validate(a), say=said.append)
    assert len(mlm_runs(tmp_path)) == 2 and any("self_pretrain: reusing" in m for m in said)


def test_the_test_files_text_is_read_whole_whatever_the_training_filter(tmp_path):
    """task.where chose the training rows; self_pretrain applied it to the test file too, and
    a Kaggle test file without the filter's column was refused before fine-tuning began."""
    cfg = sp_cfg(tmp_path, steps=2)
    cfg["task"]["where"] = ["target != 7"]
    test = write_csv(tmp_path / "test.csv", sentiment_rows(20, 9), ["id", "text"])
    cfg["task"]["test"] = str(test)
    cfg["task"]["id_column"] = "id"
    texts = task_texts(FinetuneConfig.model_validate(cfg))
    assert {" ".join(r["text"].split()) for r in sentiment_rows(20, 9)} <= set(texts)
