"""Issue #15's GPU target in one call: the disaster-tweets study's `full` profile on a lent GPU.

    python .devpkg/tweets.py --data .devpkg/data --out $OUT           # on the GPU machine
    python benchmarks/gpu_bundle/tweets.py --data ../shared/data --out /tmp/tw --cpu  # rehearsal

The device machine has the repository but not ../shared, nor the MiniLM package, so this writes
a copy of examples/disaster_tweets/study.yaml whose data paths point at --data (train.csv,
test.csv, wiki.valid.txt, wiki.test.txt, as prepare.sh packs them; or the ../shared/data layout)
and keeps the arms the target is about (own pretraining vs scratch after 3 epochs and after 1,
and MiniLM). Then it runs the study with `--profile full` (a 4-minute MLM stage on the tweets'
text and WikiText-2, then 3 epochs per arm) and prints its table and `compare:` lines. With
--cpu everything is shrunk to a check that it runs (a tiny encoder, 20-second stage, 10 steps
per arm): the figures mean nothing there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

STUDY = Path("examples/disaster_tweets/study.yaml")
ARMS = ["cls-head", "scratch", "cls-head-1-epoch", "scratch-1-epoch", "minilm"]
TINY_STAGE = [
    "model.d_model=64", "model.n_head=2", "model.d_ff=128", "model.n_layer=1",
    "tokenizer.vocab_size=2000", "train.time_budget_min=0.35", "train.eval_every=50",
]  # fmt: skip
TINY_ARMS = ["train.max_steps=10"]


def data_files(data: Path) -> dict[str, Path]:
    """The four files, in prepare.sh's flat layout or in ../shared/data's."""
    flat = {
        "train": data / "train.csv",
        "test": data / "test.csv",
        "wiki_valid": data / "wiki.valid.txt",
        "wiki_test": data / "wiki.test.txt",
    }
    shared = {
        "train": data / "disaster_tweets/train.csv",
        "test": data / "disaster_tweets/test.csv",
        "wiki_valid": data / "wikitext-2/valid.txt",
        "wiki_test": data / "wikitext-2/test.txt",
    }
    files = flat if flat["train"].is_file() else shared
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"tweets.py: missing {', '.join(missing)} (run prepare.sh)")
    return {k: p.resolve() for k, p in files.items()}


def has_minilm() -> bool:
    from encoderlab.errors import UserError
    from encoderlab.study import minilm_path

    try:
        minilm_path()
    except UserError as e:
        print(f"tweets.py: no MiniLM arm ({e})")
        return False
    return True


def write_study(out: Path, files: dict[str, Path], cpu: bool) -> Path:
    spec = yaml.safe_load(STUDY.read_text(encoding="utf-8"))
    here = STUDY.parent.resolve()
    spec["base"] = str(here / spec["base"])
    spec["pretrain"]["config"] = str(here / spec["pretrain"]["config"])
    corpus = [files["train"], files["test"], files["wiki_valid"], files["wiki_test"]]
    spec["pretrain"]["overrides"] = [
        *spec["pretrain"].get("overrides", []),
        "data.corpus=[" + ", ".join(str(p) for p in corpus) + "]",
    ]
    spec["overrides"] = [
        *spec.get("overrides", []),
        f"task.train={files['train']}",
        f"task.test={files['test']}",
    ]
    arms = ARMS if has_minilm() else [a for a in ARMS if a != "minilm"]
    spec["arms"] = [a for a in spec["arms"] if a["name"] in arms]
    spec["compare"] = [p for p in spec.get("compare", []) if set(p) <= set(arms)]
    spec["out"] = str(out / "study")
    spec["runs_dir"] = str(out / "runs")
    if cpu:
        full = spec["profiles"]["full"]
        full["pretrain"] = [*full["pretrain"], *TINY_STAGE]
        full["overrides"] = [*full["overrides"], *TINY_ARMS]
    path = out / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="prepare.sh's data/ or shared/data")
    ap.add_argument("--out", type=Path, required=True, help="where the study and runs go")
    ap.add_argument("--cpu", action="store_true", help="a tiny rehearsal on the CPU")
    args = ap.parse_args()
    from encoderlab.study import run_study

    args.out.mkdir(parents=True, exist_ok=True)
    path = write_study(args.out, data_files(args.data), args.cpu)
    t0 = time.perf_counter()
    report = run_study(path, profile="full", say=print)
    print(f"\ntweets study (profile full) in {time.perf_counter() - t0:.0f} s; report: {report}")


if __name__ == "__main__":
    main()
