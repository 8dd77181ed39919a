"""One script for a lent GPU (under 10 minutes): pretraining throughput and MFU.

    python benchmarks/gpu.py --finetune           # CUDA, bf16 autocast
    python benchmarks/gpu.py --compile --shapes bert-base   # fit with torch.compile too
    python benchmarks/gpu.py --device cpu --tiny --finetune  # a check that it runs (fp32)

For a BERT-base-sized encoder (d 768, 12 layers, 12 heads, d_ff 3072, vocab 30522, seq 128) and
for the README's pretraining config (configs/pretrain.yaml's model), it prints tokens/s of
encoderlab's bare loop, of its real `fit` (fit_bench.py) and of transformers' BertForMaskedLM
bare loop with the same settings (same weights, batches, AdamW hyper-parameters), and MFU:
useful FLOPs (fit_bench.useful_flops_per_step) per second over the GPU's dense bf16 peak (a
table of known GPUs, else a bf16 matmul measured now; on CPU the fp32 matmul measured now).
On a GPU also the bare loop with the weights cast to bf16 once (no autocast; AdamW on them, no
fp32 master: a ceiling for what master weights could win over autocast's per-step casts).
With --compile, also `fit` with train.compile (compilation not timed: it happens in the warmup).
With --finetune it also runs finetune_throughput.py (encoderlab vs the HF Trainer, MiniLM, 3
epochs, bf16 both sides on a GPU; --model / --data pass a checkpoint folder and the tweets' csv).
The last line is `ratio X.XXx`: encoderlab fit over BertForMaskedLM on the BERT-base config.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from fit_bench import fit_tokens_per_s, matmul_peak_gflops, useful_flops_per_step
from pretrain_throughput import build_models, make_batches, model_config, on_device, optimizers

from encoderlab.runtime import autocast

# dense bf16 peaks from the vendors' sheets; the first key found in the device name counts
# (the PCIe H100 before the SXM one)
DENSE_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
}

SHAPES = {  # name: (d_model, n_head, d_ff, n_layer, vocab, seq, batch)
    "bert-base": (768, 12, 3072, 12, 30522, 128, 64),
    # the same at 4x the batch: how much of the MFU gap is kernel launches at batch 64
    "bert-base b256": (768, 12, 3072, 12, 30522, 128, 256),
    "pretrain.yaml": (256, 4, 1024, 4, 8000, 128, 32),
}
TINY = {
    "bert-base (tiny)": (64, 2, 128, 2, 1000, 32, 8),
    "bert-base b256 (tiny)": (64, 2, 128, 2, 1000, 32, 16),
    "pretrain.yaml (tiny)": (32, 2, 64, 1, 500, 32, 8),
}


def peak_gflops(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in DENSE_BF16_TFLOPS.items():
            if key in name:
                return tflops * 1e3, f"{name} dense bf16 spec"
        return matmul_peak_gflops(device, torch.bfloat16, 8192), f"{name} bf16 matmul measured"
    return matmul_peak_gflops(device, torch.float32), "cpu fp32 matmul measured"


def bare_tokens_per_s(
    sides: dict[str, tuple], device, amp, steps: int, warmup: int, chunk: int = 10
) -> dict[str, float]:
    """Forward, backward, AdamW step on prepared batches, for each side (name: model,
    optimizer, batches): warmup steps untimed, then the sides in turns of `chunk` steps, so a
    GPU's clocks and the machine's noise change for both alike (timed one after the other,
    the peer's own figure moved 261k -> 203k tokens/s between two invocations)."""

    def one(model, opt, b):
        with autocast(device, amp):
            loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for model, opt, batches in sides.values():
        for i in range(warmup):
            one(model, opt, batches[i % len(batches)])
    seconds = dict.fromkeys(sides, 0.0)
    for start in range(0, steps, chunk):
        for name, (model, opt, batches) in sides.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(start, min(start + chunk, steps)):
                one(model, opt, batches[(warmup + i) % len(batches)])
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - t0
    return {
        name: batches[0]["input_ids"].numel() * steps / seconds[name]
        for name, (_, _, batches) in sides.items()
    }


def measure(name: str, shape: tuple, args, device: torch.device, peak: float) -> float:
    d, h, f, n_layer, vocab, seq, batch = shape
    ns = argparse.Namespace(
        vocab=vocab, d_model=d, n_head=h, d_ff=f, n_layer=n_layer, dropout=0.1, batch=batch,
        seq=seq, mask_rate=0.15, no_mask=True,
    )  # fmt: skip
    amp = torch.bfloat16 if device.type == "cuda" else None
    precision = "bf16" if amp else "fp32"
    ours, peer = build_models(ns, device)
    opt_ours, opt_peer = optimizers(ns, ours, peer)
    made = make_batches(8, ns)
    batches, peer_batches = on_device(made, device, ours=True), on_device(made, device, ours=False)
    sides = {
        "encoderlab bare": (ours, opt_ours, batches),
        "BertForMaskedLM": (peer, opt_peer, peer_batches),
    }
    rates = bare_tokens_per_s(sides, device, amp, args.steps, args.warmup)
    if amp is not None:  # the ceiling of keeping weights in bf16 (no autocast casts per step):
        # the same model cast once, AdamW on the bf16 weights themselves (no fp32 master copy,
        # so not a training recipe; a measure of what master weights could win)
        ours.to(torch.bfloat16)
        opt_bf16 = optimizers(ns, ours, None)[0]
        rates["encoderlab bare, bf16 weights"] = bare_tokens_per_s(
            {"bf16": (ours, opt_bf16, batches)}, device, None, args.steps, args.warmup
        )["bf16"]
        del opt_bf16
    del sides, ours, peer, opt_ours, opt_peer
    got = fit_tokens_per_s(
        model_config(ns), device, batch, seq, args.steps, args.warmup, 0.15, precision
    )
    rates["encoderlab fit"] = got["tokens_per_s"]
    # masking and collating in 2 loader processes instead of the main one: how much of the
    # gap to the bare loop (whose batches are made ahead) is the host's data work
    rates["encoderlab fit, 2 workers"] = fit_tokens_per_s(
        model_config(ns), device, batch, seq, args.steps, args.warmup, 0.15, precision, workers=2
    )["tokens_per_s"]
    if args.compile:
        rates["encoderlab fit+compile"] = fit_tokens_per_s(
            model_config(ns), device, batch, seq, args.steps, args.warmup, 0.15, precision,
            compile=True,
        )["tokens_per_s"]  # fmt: skip
    per_token = useful_flops_per_step(model_config(ns), batch, seq, 0.15) / (batch * seq)
    print(f"\n{name}: d {d}, {n_layer} layers, seq {seq}, batch {batch}, {precision}")
    for who, r in rates.items():
        print(f"  {who:30}{r:>12,.0f} tokens/s   MFU {r * per_token / 1e9 / peak:6.1%}")
    print(
        f"  fit/bare {rates['encoderlab fit'] / rates['encoderlab bare']:.2f} (fit's evaluation "
        f"{got['eval_s']:.2f} s, charged once per 100 steps)"
    )
    ratio = rates["encoderlab fit"] / rates["BertForMaskedLM"]
    print(f"  encoderlab fit / BertForMaskedLM {ratio:.2f}x")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--tiny", action="store_true", help="small shapes: a check that it runs")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 50; tiny 6)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps (default 10; tiny 2)")
    p.add_argument("--compile", action="store_true", help="also fit with train.compile")
    p.add_argument("--shapes", nargs="+", default=None, help="names from SHAPES (default all)")
    p.add_argument("--finetune", action="store_true", help="also finetune_throughput.py")
    p.add_argument("--model", default=None, help="--finetune: the checkpoint (default MiniLM)")
    p.add_argument("--data", default=None, help="--finetune: disaster tweets' train.csv")
    args = p.parse_args()
    args.steps = args.steps or (6 if args.tiny else 100)
    args.warmup = args.warmup or (2 if args.tiny else 10)
    warnings.filterwarnings("ignore")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    peak, source = peak_gflops(device)
    print(f"torch {torch.__version__}, device {device}, peak {peak:,.0f} GFLOP/s ({source})")
    shapes = TINY if args.tiny else SHAPES
    if args.shapes:
        unknown = sorted(set(args.shapes) - set(shapes))
        if unknown:
            sys.exit(f"--shapes: unknown {unknown}; known: {sorted(shapes)}")
        shapes = {name: shapes[name] for name in args.shapes}
    ratios = [measure(name, shape, args, device, peak) for name, shape in shapes.items()]
    if args.finetune:
        finetune(args)
    print(f"ratio {ratios[0]:.2f}x")


def finetune(args) -> None:
    """finetune_throughput.py in a child process (its own threads and CUDA context)."""
    script = Path(__file__).with_name("finetune_throughput.py")
    extra = ["--device", args.device]
    extra += ["--max-steps", "5"] if args.tiny else ["--epochs", "3"]
    extra += ["--model", args.model] if args.model else []
    extra += ["--data", args.data] if args.data else []
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(script), *extra], capture_output=True, text=True)
    print(f"\nfine-tuning vs the HF Trainer ({time.perf_counter() - t0:.0f} s in all):")
    print(out.stdout[-1500:] + out.stderr[-1500:], flush=True)


if __name__ == "__main__":
    main()
