"""Peak memory while preparing and then pretraining on corpora of growing size.

Not a test; run it by hand (about 30 minutes on 2 idle cores for the default sizes):

    python benchmarks/corpus_memory.py --sizes 0.25,2 --steps 50

For each size (GB) it writes a corpus by repeating the real English + Korean text of
../shared/data (8 files, one .jsonl.zst among them so the streaming decompressor is measured
too), then runs, each as a child process tree sampled every 0.1 s with psutil:

  prepare   `encoderlab corpus prepare` with 2 tokenizing workers
  pretrain  `encoderlab pretrain` for --steps steps on the shards with 2 DataLoader workers

and prints the peak memory of the whole tree (sum of PSS over main + workers) and of the main
process alone (RSS). Target (issue 7): below 1.5 GB, flat as the corpus grows.

The peer (corpus_memory_peer.py; `--no-peer` skips it) is the Hugging Face way, the two
steps of transformers' run_mlm.py, measured the same way on the same files: `datasets`
load_dataset + map(tokenize) + group_texts into 128-token blocks with 2 processes, saved with
save_to_disk; then the Trainer with DataCollatorForLanguageModeling on a BertForMaskedLM of
the same shape, batch 32, the same steps, 2 DataLoader workers. The last line is `ratio
X.XXx`: the peer's peak over encoderlab's (each the larger of its two steps) at the largest
size, so above 1 means encoderlab needs less memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))

from shared_text import base_lines  # noqa: E402

N_FILES = 8
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain.yaml"


def build_corpus(root: Path, gigabytes: float) -> list[Path]:
    """N_FILES files totalling `gigabytes`; the last one as .jsonl.zst."""
    import zstandard

    root.mkdir(parents=True, exist_ok=True)
    lines = base_lines()
    per_file = int(gigabytes * 2**30 / N_FILES)
    text_block = ("\n".join(lines) + "\n").encode("utf-8")
    json_block = "".join(json.dumps({"text": s}, ensure_ascii=False) + "\n" for s in lines).encode()
    files = []
    for k in range(N_FILES):
        zst = k == N_FILES - 1
        path = root / (f"part-{k}.jsonl.zst" if zst else f"part-{k}.txt")
        files.append(path)
        if path.is_file():
            continue
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as raw:
            out = zstandard.ZstdCompressor(level=3).stream_writer(raw) if zst else raw
            written, block = 0, json_block if zst else text_block
            while written < per_file:
                out.write(block)
                written += len(text_block)  # same amount of text as the plain files
            if zst:
                out.close()
        tmp.rename(path)
    return files


def peak_memory(cmd: list[str]) -> tuple[float, float, float]:
    """(peak total PSS GB, peak main-process RSS GB, seconds) of a process tree.

    PSS (proportional set size) splits pages shared between processes (forked DataLoader
    workers, memory-mapped shards) among them, so the sum over the tree is its real footprint;
    summing RSS would count each shared page once per process.
    """
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_pss = peak_main = 0
    while proc.poll() is None:
        pss = 0
        try:
            peak_main = max(peak_main, proc.memory_info().rss)
            for p in [proc, *proc.children(recursive=True)]:
                pss += p.memory_full_info().pss
        except psutil.Error:
            pass
        peak_pss = max(peak_pss, pss)
        time.sleep(0.1)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-3000:]}")
    return peak_pss / 2**30, peak_main / 2**30, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="0.25,2", help="corpus sizes in GB, comma-separated")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument(
        "--train-only", action="store_true", help="reuse shards a previous run left (no prepare)"
    )
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "encoderlab-bench")
    ap.add_argument("--no-peer", action="store_true", help="encoderlab alone (no datasets side)")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "encoderlab"]
    work = args.work
    tok_dir = work / "tokenizer-wp16k"
    if not (tok_dir / "tokenizer.json").is_file():
        base = work / "base.txt"
        base.parent.mkdir(parents=True, exist_ok=True)
        base.write_text("\n".join(base_lines()) + "\n", encoding="utf-8")
        subprocess.run(
            [
                *exe,
                "tokenizer",
                "train",
                "--corpus",
                str(base),
                "--vocab-size",
                "16000",
                "--out",
                str(tok_dir),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    print(f"{'corpus':>8} {'tokens':>14} | {'prepare':>28} | {'pretrain':>28}")
    peaks: dict[str, float] = {}
    for gb in [float(s) for s in args.sizes.split(",")]:
        files = build_corpus(work / f"corpus-{gb:g}gb", gb)
        cache = work / f"cache-{gb:g}gb"
        reuse = args.train_only and list(cache.glob("*/manifest.json"))
        if not reuse:
            shutil.rmtree(cache, ignore_errors=True)  # measure a prepare from scratch
        common = [
            "--set",
            f"data.corpus=[{','.join(map(str, files))}]",
            "--set",
            f"tokenizer.path={tok_dir}",
            "--set",
            f"data.cache_dir={cache}",
        ]
        prep = (
            (0.0, 0.0, 0.0)
            if reuse
            else peak_memory([*exe, "corpus", "prepare", "--workers", "2", *common])
        )
        manifest = json.loads(next(cache.glob("*/manifest.json")).read_text())
        train = peak_memory(
            [
                *exe,
                "pretrain",
                str(CONFIG),
                *common,
                "--set",
                f"runs_dir={work / 'runs'}",
                "--set",
                "name=memory",
                "--set",
                "model.d_model=128",
                "--set",
                "model.n_head=2",
                "--set",
                "model.d_ff=512",
                "--set",
                "model.n_layer=2",
                "--set",
                "data.block_len=128",
                "--set",
                "data.num_workers=2",
                "--set",
                "train.batch_size=32",
                "--set",
                f"train.max_steps={args.steps}",
                "--set",
                "train.eval_every=100000",
                "--set",
                "data.max_valid_examples=200",
            ]
        )
        row(f"{gb:>6g}GB {manifest['totals']['tokens']:>14,}", prep, train)
        peaks["encoderlab"] = max(prep[0], train[0])
        if not args.no_peer:
            peer_prep, peer_train = run_peer(work / f"peer-{gb:g}gb", files, tok_dir, args.steps)
            row(f"{'datasets + Trainer':>23}", peer_prep, peer_train)
            peaks["peer"] = max(peer_prep[0], peer_train[0])
    print("target: peak below 1.5 GB and flat as the corpus grows")
    if "peer" in peaks:
        print(
            f"largest corpus, peak of the whole pipeline: encoderlab {peaks['encoderlab']:.2f} GB, "
            f"datasets + Trainer {peaks['peer']:.2f} GB"
        )
        print(f"ratio {peaks['peer'] / peaks['encoderlab']:.2f}x")


def row(label: str, prep: tuple[float, float, float], train: tuple[float, float, float]) -> None:
    print(
        f"{label} | total {prep[0]:5.2f} GB main {prep[1]:5.2f} GB {prep[2]:5.0f}s | "
        f"total {train[0]:5.2f} GB main {train[1]:5.2f} GB {train[2]:5.0f}s",
        flush=True,
    )


def run_peer(
    root: Path, files: list[Path], tok_dir: Path, steps: int
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """run_mlm.py's two steps (corpus_memory_peer.py), each measured as a process tree."""
    shutil.rmtree(root, ignore_errors=True)  # measure a prepare from scratch
    root.mkdir(parents=True)
    peer = [sys.executable, str(Path(__file__).with_name("corpus_memory_peer.py"))]
    common = ["--tokenizer", str(tok_dir), "--data", str(root / "blocks"), "--workers", "2"]
    prep = peak_memory([*peer, "prepare", "--files", *map(str, files), *common])
    train = peak_memory([*peer, "pretrain", *common, "--steps", str(steps)])
    shutil.rmtree(root, ignore_errors=True)  # the Arrow copies are several times the corpus
    return prep, train


if __name__ == "__main__":
    main()
