import re

import pytest

from encoderlab.config import load_config, parse_override, to_yaml
from encoderlab.errors import UserError


def test_defaults_and_overrides_are_typed(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  n_layer: 2\ntrain:\n  lr: 1.0e-3\n")
    cfg = load_config(f, ["model.n_layer=6", "train.lr=2e-4", "data.corpus=[a.txt, b.jsonl]"])
    assert cfg.model.n_layer == 6
    assert cfg.train.lr == pytest.approx(2e-4)
    assert cfg.data.corpus == ["a.txt", "b.jsonl"]
    assert cfg.model.head_dim == cfg.model.d_model // cfg.model.n_head


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(None, ["model.activation=swiglu", "train.schedule=cosine"])
    f = tmp_path / "saved.yaml"
    f.write_text(to_yaml(cfg))
    again = load_config(f)
    assert again == cfg


def test_unknown_key_names_key_and_lists_valid_ones():
    with pytest.raises(UserError) as e:
        load_config(None, ["model.n_layr=3"])
    msg = str(e.value)
    assert "model.n_layr" in msg and "n_layer" in msg and "\n" not in msg


def test_unknown_section(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("modle:\n  n_layer: 2\n")
    with pytest.raises(UserError) as e:
        load_config(f)
    assert "modle" in str(e.value) and "model" in str(e.value) and str(f) in str(e.value)


def test_wrong_type_names_key_and_value():
    with pytest.raises(UserError) as e:
        load_config(None, ["train.lr=fast"])
    assert "train.lr" in str(e.value) and "'fast'" in str(e.value)


def test_shape_that_does_not_fit():
    with pytest.raises(UserError, match="not divisible"):
        load_config(None, ["model.d_model=250", "model.n_head=4"])
    cfg = load_config(None, ["model.d_model=250", "model.n_head=4", "model.d_head=64"])
    assert cfg.model.head_dim == 64
    with pytest.raises(UserError, match="block_len"):
        load_config(None, ["model.max_len=64", "data.block_len=128"])


def test_bad_yaml_and_missing_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  n_layer: [1,\n")
    with pytest.raises(UserError, match=r"c\.yaml:\d+: not valid YAML"):
        load_config(f)
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_override_syntax():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=hello") == (["a"], "hello")
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_override("train.lr")


def test_training_needs_a_stop_condition():
    with pytest.raises(UserError, match="epochs"):
        load_config(None, ["train.epochs=null"])
    assert load_config(None, ["train.epochs=null", "train.max_steps=5"]).train.max_steps == 5


def test_partial_train_section_keeps_the_fine_tuning_defaults(tmp_path):
    """Section defaults must not depend on whether the user wrote the section: a fine-tuning
    YAML with only `train: {time_budget_min: 4}` used to get pretraining's lr/epochs/warmup."""
    from encoderlab.config import FinetuneConfig, TrainConfig

    f = tmp_path / "ft.yaml"
    f.write_text("train:\n  time_budget_min: 4\n")
    partial = load_config(f, schema=FinetuneConfig).train
    whole = load_config(None, schema=FinetuneConfig).train
    assert partial.time_budget_min == 4
    assert partial.model_dump(exclude={"time_budget_min"}) == whole.model_dump(
        exclude={"time_budget_min"}
    )
    assert partial.epochs == 3 and partial.warmup_ratio == 0.1
    assert partial.lr is None  # chosen for the init by finetune.resolve_defaults
    assert (partial.epochs, partial.warmup_ratio) != (
        TrainConfig().epochs,
        TrainConfig().warmup_ratio,
    )
    assert partial.model_fields_set == {"time_budget_min"}
    assert load_config(f, ["train.lr=2e-5"], schema=FinetuneConfig).train.lr == 2e-5
    with pytest.raises(UserError, match="lr must be positive"):
        load_config(f, ["train.lr=-1"], schema=FinetuneConfig)


def test_budget_covers_is_checked():
    assert load_config(None).train.budget_covers == "run"
    assert load_config(None, ["train.budget_covers=train"]).train.budget_covers == "train"
    with pytest.raises(UserError, match="budget_covers"):
        load_config(None, ["train.budget_covers=everything"])


def test_budget_recipe_fills_what_the_config_leaves_unset(tmp_path):
    cfg = load_config(None, ["recipe=budget"])
    assert (cfg.model.norm, cfg.model.dropout, cfg.model.attn_dropout) == ("pre", 0.0, 0.0)
    assert cfg.model.position == "alibi"
    assert (cfg.data.block_len, cfg.data.mask_rate) == (64, 0.15)
    t = cfg.train
    assert (t.batch_size, t.lr, t.schedule, t.warmup_ratio) == (64, 1e-3, "onecycle", 0.1)
    assert t.epochs == 1 and t.warmup_steps == 0  # a step count is known: warmup_ratio applies
    # the resolved values are what a run saves; reading them back changes nothing
    f = tmp_path / "saved.yaml"
    f.write_text(to_yaml(cfg))
    assert load_config(f) == cfg
    assert load_config(f, ["train.lr=3e-4"]).train.lr == pytest.approx(3e-4)


def test_settings_the_user_gave_win_over_the_recipe(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("recipe: budget\nmodel:\n  norm: post\ntrain:\n  lr: 5.0e-4\n")
    cfg = load_config(f, ["data.block_len=128"])
    assert cfg.model.norm == "post" and cfg.model.dropout == 0.0
    assert cfg.train.lr == pytest.approx(5e-4)  # set to the schema's default: still the user's
    assert cfg.data.block_len == 128 and cfg.train.batch_size == 64


def test_bert_recipe_is_the_schemas_defaults():
    assert load_config(None, ["recipe=bert"]).model_dump() == load_config(None).model_dump()
    cfg = load_config(None)
    assert cfg.recipe == "bert" and cfg.model.norm == "post" and cfg.data.block_len == 128


def test_budget_recipe_under_a_time_budget_trains_until_it_is_spent():
    cfg = load_config(None, ["recipe=budget", "train.time_budget_min=5"])
    assert cfg.train.epochs is None and cfg.train.max_steps is None
    # warmup is a fraction of the budget (train.lr_factor), so no fixed step count is set
    assert cfg.train.warmup_steps == 0 and cfg.train.warmup_ratio == 0.1
    kept = load_config(None, ["recipe=budget", "train.time_budget_min=5", "train.epochs=2"])
    assert kept.train.epochs == 2 and kept.train.warmup_steps == 0


def test_unknown_recipe_names_the_key():
    with pytest.raises(UserError, match="recipe") as e:
        load_config(None, ["recipe=fast"])
    assert "\n" not in str(e.value)


def test_shipped_budget_config_is_the_recipe_under_a_time_budget():
    from pathlib import Path

    cfg = load_config(Path(__file__).parents[1] / "configs" / "pretrain_budget.yaml")
    assert cfg.recipe == "budget" and cfg.train.time_budget_min == 10
    assert cfg.model.norm == "pre" and cfg.data.block_len == 64 and cfg.train.epochs is None
    assert cfg.tokenizer.lowercase and cfg.model.n_layer == 4


def test_a_union_field_error_names_the_key_not_pydantics_member_tag():
    from encoderlab.config import FinetuneConfig

    with pytest.raises(UserError) as e:
        load_config(None, ["task.train=x.csv", "task.text_column=null"], FinetuneConfig)
    assert "config key 'task.text_column':" in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("override", "schema", "says"),
    [
        # each was accepted, then a traceback (seed: numpy / torch; num_workers: the DataLoader,
        # after the run directory existed; shard_mb: int(nan)) or a silently odd run
        ("seed=-1", "Config", "config key 'seed': Input should be greater than or equal to 0"),
        ("seed=99999999999999999999999", "FinetuneConfig", "config key 'seed'"),
        ("data.num_workers=-1", "Config", "num_workers=-1 must be >= 0"),
        ("data.shard_mb=.nan", "Config", "shard_mb must be a finite number > 0"),
        ("data.max_documents=0", "Config", "max_documents=0 must be at least 1"),
        ("data.max_valid_examples=0", "Config", "max_valid_examples=0 must be at least 1"),
        ("tokenizer.max_train_documents=0", "Config", "max_train_documents=0 must be at least 1"),
        ("task.max_query_len=0", "FinetuneConfig", "max_query_len=0 must be at least 1"),
        ("task.max_answer_len=0", "FinetuneConfig", "max_answer_len=0 must be at least 1"),
        ("task.n_best=0", "FinetuneConfig", "n_best=0 must be at least 1"),
        ("task.doc_stride=-1", "FinetuneConfig", "doc_stride=-1 must be >= 0"),
    ],
)
def test_values_out_of_range_are_one_line_before_anything_runs(override, schema, says):
    from encoderlab import config

    with pytest.raises(UserError) as e:
        load_config(None, [override], getattr(config, schema))
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_an_unknown_key_in_a_list_item_or_optional_section_lists_that_sections_keys():
    """data.sources.0.foo listed the data section's keys, self_pretrain.foo the top level's."""
    from encoderlab.config import FinetuneConfig

    with pytest.raises(UserError) as e:
        load_config(None, ["data.sources=[{name: a, files: [x.txt], wieght: 1}]"])
    assert str(e.value) == (
        "--set: unknown config key 'data.sources.0.wieght'; valid keys here: name, files, "
        "weight, format, text_field, text_column"
    )
    with pytest.raises(UserError) as e:
        load_config(None, ["self_pretrain.step=5"], FinetuneConfig)
    assert str(e.value).endswith(
        "unknown config key 'self_pretrain.step'; valid keys here: text, minutes, steps, "
        "recipe, set, run"
    )


def test_an_empty_section_is_its_defaults_and_a_value_for_a_section_says_so(tmp_path):
    """`train:` with its keys commented out is null in YAML: it was 'Input should be a valid
    dictionary or instance of TrainConfig'; `train: fast` said the same, naming a class."""
    f = tmp_path / "c.yaml"
    f.write_text("model:\n#  n_layer: 2\ntrain:\n  lr: 1.0e-3\ndata:\n  filters:\n")
    cfg = load_config(f, ["model.d_model=64"])
    assert cfg.model.d_model == 64 and cfg.model.n_layer == 4 and cfg.data.filters.min_chars == 1
    f.write_text("train: fast\n")
    with pytest.raises(UserError) as e:
        load_config(f)
    assert str(e.value) == (
        f"{f}: config key 'train': a section of keys (e.g. train: {{...}} or one key per line "
        "under train:), not 'fast'"
    )
    with pytest.raises(UserError) as e:
        load_config(None, ["data.sources=[ko.txt]"])
    assert str(e.value) == (
        "--set: config key 'data.sources.0': a mapping of keys ({name: ..., ...}), not 'ko.txt'"
    )


def test_max_steps_is_the_length_of_the_run_unless_epochs_is_written() -> None:
    """max_steps=50 used to end after one epoch (3 steps on a small corpus): the epochs default
    the user never wrote capped it. As in the HF Trainer, max_steps now sets the length."""
    from encoderlab.config import Config, FinetuneConfig, load_config
    from encoderlab.finetuning import resolve_defaults

    assert load_config(None, ["train.max_steps=50"], Config).train.epochs is None
    assert load_config(None, [], Config).train.epochs == 1
    both = load_config(None, ["train.max_steps=50", "train.epochs=2"], Config).train
    assert (both.epochs, both.max_steps) == (2, 50)  # written: whichever ends first
    ft = load_config(None, ["train.max_steps=50", "task.train=x.csv"], FinetuneConfig)
    assert resolve_defaults(ft, say=lambda m: None).train.epochs is None


def test_an_indexed_key_and_a_key_named_like_a_type_are_said_as_written() -> None:
    """`data.sources[0].weight=2` was "unknown config key 'data'" (while data is a key), and
    so was `train.list=2`: the key's part named like a pydantic union member was dropped."""
    from encoderlab.config import Config, load_config
    from encoderlab.errors import UserError

    with pytest.raises(UserError, match=r"a key takes no \[index\]; set the whole list"):
        load_config(None, ["data.sources[0].weight=2"], Config)
    with pytest.raises(UserError, match="unknown config key 'train.list'"):
        load_config(None, ["train.list=2"], Config)


def test_a_bare_bar_in_set_is_the_character() -> None:
    """`--set task.label_separator=|` (the README's multilabel separator) was YAML's empty
    block scalar: "label_separator="" splits nothing"."""
    from encoderlab.config import parse_override

    assert parse_override("task.label_separator=|") == (["task", "label_separator"], "|")
    assert parse_override("task.label_separator=>") == (["task", "label_separator"], ">")
    # `-` was YAML's list of one null: "Input should be a valid string (got [None])"
    for mark in ("-", "?", "!"):
        assert parse_override(f"task.positive_label={mark}")[1] == mark
    assert parse_override("train.lr=-1")[1] == -1 and parse_override("x=- a")[1] == ["a"]


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["task.window_stride=8"], "window_stride=8 applies to truncation: windows"),
        (["task.head_tokens=4"], "head_tokens=4 applies to truncation: head_tail"),
        (["task.doc_stride=10"], "doc_stride=10 is a qa option"),
        (["task.tag_scheme=iob1"], "tag_scheme=iob1 is a tagging option"),
        (["freeze=all", "layer_lr_decay=0.8"], "freeze: all trains none of them"),
        (
            ["task.text_pair_column=hypothesis"],
            "task.type classification does not: use task.type: pair",
        ),
    ],
)
def test_options_that_would_do_nothing_are_refused(sets, expected) -> None:
    """Each was accepted and did nothing (the tagging review's list)."""
    from encoderlab.config import FinetuneConfig, load_config
    from encoderlab.errors import UserError

    with pytest.raises(UserError, match=re.escape(expected)):
        load_config(None, ["task.train=x.csv", *sets], FinetuneConfig)
    # what they need makes them fine, and a saved config (every key written) reloads
    ok = load_config(None, ["task.train=x.csv", "task.truncation=windows", "task.window_stride=8"],
                     FinetuneConfig)  # fmt: skip
    assert FinetuneConfig.model_validate(ok.model_dump()).task.window_stride == 8


def test_a_frozen_encoder_from_scratch_is_a_warning() -> None:
    """freeze=all on init: scratch trained a head on random features without a word."""
    from encoderlab.config import FinetuneConfig, load_config
    from encoderlab.finetuning import resolve_defaults

    said: list[str] = []
    cfg = load_config(None, ["task.train=x.csv", "freeze=all"], FinetuneConfig)
    resolve_defaults(cfg, said.append)
    assert any("random features" in m and "freeze=all" in m for m in said), said
    said.clear()
    resolve_defaults(load_config(None, ["task.train=x.csv"], FinetuneConfig), said.append)
    assert not any("random features" in m for m in said)


def test_a_run_saved_with_options_refused_since_still_loads(tmp_path) -> None:
    """Runs made before window_stride without windows, doc_stride on a classifier, a lone
    null_threshold or layer_lr_decay under freeze: all were refused could no longer be
    predicted, evaluated or resumed: their config.yaml was refused."""
    import yaml

    from encoderlab.config import FinetuneConfig, load_config

    saved = {
        "freeze": "all",
        "layer_lr_decay": 0.8,
        "task": {"type": "classification", "train": "x.csv", "window_stride": 32,
                 "head_tokens": 4, "doc_stride": 10, "tag_scheme": "iob1", "null_threshold": 1.0,
                 "text_pair_column": "hypothesis"},
    }  # fmt: skip
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    cfg = load_config(tmp_path / "config.yaml", schema=FinetuneConfig)
    assert cfg.task.window_stride is None and cfg.layer_lr_decay is None
    assert cfg.task.text_pair_column is None  # read one text: it ran without its pair
    # a config file a user writes is still checked
    (tmp_path / "run.json").unlink()
    with pytest.raises(Exception, match="null_threshold are for task.type qa"):
        load_config(tmp_path / "config.yaml", schema=FinetuneConfig)
