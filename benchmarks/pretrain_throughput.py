"""Pretraining throughput: encoderlab's MaskedLM vs transformers' BertForMaskedLM.

Not a test; run it by hand:

    python benchmarks/pretrain_throughput.py --steps 20 --threads 2
    python benchmarks/pretrain_throughput.py --device cuda --steps 50 --compile

It also runs encoderlab's real `fit` (synthetic data through the real masking and collate;
the evaluation and logging cadence of configs/pretrain.yaml, checkpoints as configured by
default) and prints `fit/bare` (fit's tokens/s over the bare loop's), and the useful GFLOP/s of
each side against a matmul peak measured on the spot (see fit_bench.py). The last line is
`ratio X.XXx`: encoderlab's bare loop over transformers'.

Both models have the same shape (BERT post-LN, exact gelu, tied decoder, dropout 0.1), start
from the SAME weights (copied from encoderlab's init into the HF model, and checked to give
the same eval loss), and train on the SAME batches (random ids, 15% of positions chosen,
80/10/10 mask/random/keep, labels -100 elsewhere), in one process, alternating chunks of
steps so that machine noise hits both alike. Warmup steps (and compilation) are not timed.

encoderlab: MaskedLM + make_optimizer (AdamW over param_groups, fused kernel), its batches
with the masked positions found on the host as its MLM collate finds them for `fit`.
transformers: BertForMaskedLM (sdpa attention) + fused AdamW over the Trainer's parameter
groups (the Trainer's default optimizer since torch 2.8).

Peak memory: on CUDA torch.cuda.max_memory_allocated per model. On CPU a process's peak RSS
cannot be split between two models, so each model is also run alone for a few steps in a
child process (`--memory-only NAME`) and that child's ru_maxrss is reported.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
import warnings

import torch
from fit_bench import (
    executed_flops_per_step,
    fit_tokens_per_s,
    matmul_peak_gflops,
    useful_flops_per_step,
)

from encoderlab.config import ModelConfig
from encoderlab.model import MaskedLM, Queries, make_optimizer

PAD, CLS, SEP, MASK = 0, 1, 2, 3
N_SPECIAL = 5


def model_config(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        vocab_size=args.vocab,
        d_model=args.d_model,
        n_head=args.n_head,
        d_ff=args.d_ff,
        n_layer=args.n_layer,
        dropout=args.dropout,
        attn_dropout=args.dropout,
        activation="gelu",
        norm="post",
        max_len=512,
        n_segments=2,
        tie_mlm=True,
    )


def make_batches(n: int, args: argparse.Namespace, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Random token ids with BERT masking; identical for both models."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(N_SPECIAL, args.vocab, (args.batch, args.seq), generator=g)
        ids[:, 0], ids[:, -1] = CLS, SEP
        chosen = torch.rand(ids.shape, generator=g) < args.mask_rate
        chosen[:, 0] = chosen[:, -1] = False
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        r = torch.rand(ids.shape, generator=g)
        inputs = ids.clone()
        inputs[chosen & (r < 0.8)] = MASK
        rand_pos = chosen & (r >= 0.8) & (r < 0.9)
        inputs[rand_pos] = torch.randint(N_SPECIAL, args.vocab, (int(rand_pos.sum()),), generator=g)
        batch = {"input_ids": inputs, "labels": labels}
        if not args.no_mask:
            batch["attention_mask"] = torch.ones_like(ids)
        out.append(batch)
    return out


def on_device(batches: list[dict], device: torch.device, ours: bool) -> list[dict]:
    """The batches as each side gets them: encoderlab's with the masked positions found on
    the host, as its MLM collate gives them to `fit` (found in the forward, they cost two
    device-to-host syncs per step on a GPU); transformers' as they are."""
    out = []
    for b in batches:
        moved = {k: v.to(device) for k, v in b.items()}
        if ours:
            rows = (b["labels"].reshape(-1) != -100).nonzero().squeeze(1)
            q = Queries.at(rows, tuple(b["labels"].shape))
            moved["masked_rows"] = rows.to(device)
            moved["queries"] = Queries(q.pos.to(device), q.slots.to(device))
        out.append(moved)
    return out


def copy_weights_to_hf(ours: MaskedLM, hf: torch.nn.Module) -> None:
    """encoderlab -> BertForMaskedLM: the encoder through hf.py's export mapping, plus the head."""
    from encoderlab.hf import bert_state

    sd = ours.state_dict()
    enc = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
    new = bert_state(enc, ours.cfg, "bert.")
    new.update(
        {
            "cls.predictions.transform.dense.weight": sd["mlm_head.dense.weight"],
            "cls.predictions.transform.dense.bias": sd["mlm_head.dense.bias"],
            "cls.predictions.transform.LayerNorm.weight": sd["mlm_head.ln.weight"],
            "cls.predictions.transform.LayerNorm.bias": sd["mlm_head.ln.bias"],
            "cls.predictions.decoder.weight": sd["mlm_head.decoder.weight"],
            "cls.predictions.decoder.bias": sd["mlm_head.decoder.bias"],
            "cls.predictions.bias": sd["mlm_head.decoder.bias"],
        }
    )
    missing, unexpected = hf.load_state_dict({k: v.clone() for k, v in new.items()}, strict=False)
    missing = [
        k for k in missing if not k.endswith("position_ids") and not k.endswith("token_type_ids")
    ]
    assert not missing and not unexpected, (missing, unexpected)


def peer_model(cfg: ModelConfig) -> torch.nn.Module:
    """BertForMaskedLM of encoderlab's shape (sdpa attention, tied decoder)."""
    from transformers import BertConfig, BertForMaskedLM

    from encoderlab.hf import bert_config_fields

    hcfg = BertConfig(
        **bert_config_fields(cfg, cfg.pad_id), tie_word_embeddings=True, attn_implementation="sdpa"
    )
    return BertForMaskedLM(hcfg)


def build_models(args: argparse.Namespace, device: torch.device):
    torch.manual_seed(0)
    cfg = model_config(args)
    ours = MaskedLM(cfg).to(device)
    peer = peer_model(cfg).to(device)
    copy_weights_to_hf(ours, peer)
    assert peer.cls.predictions.decoder.weight is peer.bert.embeddings.word_embeddings.weight
    return ours, peer


def check_same_math(ours, peer, batch_ours, batch_peer) -> float:
    ours.eval()
    peer.eval()
    with torch.no_grad():
        a = ours(**batch_ours).loss.item()
        b = peer(**batch_peer).loss.item()
    ours.train()
    peer.train()
    return abs(a - b)


def optimizers(args, ours, peer):
    hp = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8}
    opt_ours = make_optimizer(ours, weight_decay=0.01, **hp) if ours is not None else None
    # the peer: the fused AdamW too, the Trainer's default optimizer (adamw_torch_fused) since
    # torch 2.8, over the Trainer's groups (no decay for biases and LayerNorm weights)
    opt_peer = None
    if peer is not None:
        decay = [p for n, p in peer.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in peer.named_parameters() if p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": 0.01},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        opt_peer = torch.optim.AdamW(groups, fused=True, **hp)
    return opt_ours, opt_peer


def step(model, opt, batch) -> torch.Tensor:
    out = model(**batch)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return out.loss.detach()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def memory_only(args: argparse.Namespace) -> None:
    """Child process: a few steps of one model alone; print its peak RSS in MiB. Only that
    side is built and imported (encoderlab's alone does not import transformers)."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    if args.memory_only == "encoderlab":
        model = MaskedLM(model_config(args))
        opt = optimizers(args, model, None)[0]
    else:
        model = peer_model(model_config(args))
        opt = optimizers(args, None, model)[1]
    base = peak_rss_mib()
    for b in on_device(make_batches(3, args), device, ours=args.memory_only == "encoderlab"):
        step(model, opt, b)
    peak = peak_rss_mib()
    print(f"{peak:.1f} {peak - base:.1f}")


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM (Linux) restarts at exec, unlike ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    p.add_argument("--chunk", type=int, default=5, help="alternate models every CHUNK steps")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile encoderlab's model")
    p.add_argument("--compile-peer", action="store_true", help="torch.compile the HF model too")
    p.add_argument("--no-mask", action="store_true", help="pass no attention_mask (packed data)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--n-layer", type=int, default=3)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--mask-rate", type=float, default=0.15)
    p.add_argument("--no-fit", action="store_true", help="skip the run of encoderlab's fit")
    p.add_argument("--memory-only", choices=["encoderlab", "transformers"], help=argparse.SUPPRESS)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_only:
        memory_only(args)
        return

    device = torch.device(args.device)
    ours, peer = build_models(args, device)
    n_batches = args.warmup + args.steps
    made = make_batches(min(n_batches, 16), args)
    batches = {
        "encoderlab": on_device(made, device, ours=True),
        "transformers": on_device(made, device, ours=False),
    }
    diff = check_same_math(ours, peer, batches["encoderlab"][0], batches["transformers"][0])
    opt_ours, opt_peer = optimizers(args, ours, peer)
    run_ours = torch.compile(ours) if args.compile else ours
    run_peer = torch.compile(peer) if args.compile_peer else peer

    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"batch {args.batch} x {args.seq}, d_model {args.d_model}, heads {args.n_head}, "
        f"d_ff {args.d_ff}, layers {args.n_layer}, vocab {args.vocab}, dropout {args.dropout}"
    )
    print(f"same weights, eval loss |encoderlab - transformers| = {diff:.2e}")
    print(
        f"optimizer: encoderlab {opt_ours.defaults.get('fused') and 'fused' or 'foreach'} AdamW, "
        "transformers fused AdamW (the Trainer's default)"
    )

    runs = {"encoderlab": (run_ours, opt_ours), "transformers": (run_peer, opt_peer)}
    warm_s = {}
    for name, (model, opt) in runs.items():
        sync(device)
        t0 = time.perf_counter()
        for i in range(args.warmup):
            step(model, opt, batches[name][i % len(made)])
        sync(device)
        warm_s[name] = time.perf_counter() - t0

    times: dict[str, list[float]] = {name: [] for name in runs}
    peak_mem = dict.fromkeys(runs, 0)
    losses: dict[str, list[float]] = {name: [] for name in runs}
    done = 0
    while done < args.steps:
        n = min(args.chunk, args.steps - done)
        for name, (model, opt) in runs.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            for i in range(done, done + n):
                b = batches[name][(args.warmup + i) % len(made)]
                sync(device)
                t0 = time.perf_counter()
                loss = step(model, opt, b)
                sync(device)
                times[name].append(time.perf_counter() - t0)
                losses[name].append(loss.item())
            if device.type == "cuda":
                peak_mem[name] = max(peak_mem[name], torch.cuda.max_memory_allocated())
        done += n

    tokens = args.batch * args.seq
    tps = {}
    print(
        f"\n{'':14}{'tokens/s':>10}{'ms/step (median)':>18}{'warmup s':>10}{'loss first->last':>20}"
    )
    for name in runs:
        med = statistics.median(times[name])
        tps[name] = tokens * len(times[name]) / sum(times[name])
        print(
            f"{name:14}{tps[name]:>10,.0f}{med * 1e3:>18.1f}{warm_s[name]:>10.1f}"
            f"{losses[name][0]:>12.3f} -> {losses[name][-1]:.3f}"
        )
    ratio = tps["encoderlab"] / tps["transformers"]
    print(f"\nencoderlab / transformers (bare loops): {ratio:.2f}x")
    if not args.no_fit:
        report_fit(args, device, tps)
    if args.compile or args.compile_peer:
        for name in runs:
            extra = warm_s[name] - args.warmup * statistics.median(times[name])
            print(f"compile + warmup overhead ({name}): {extra:.1f} s (not in tokens/s)")

    if device.type == "cuda":
        for name in runs:
            print(f"peak CUDA memory allocated ({name}): {peak_mem[name] / 2**20:,.0f} MiB")
    else:
        print(f"peak RSS of this process (both models): {peak_rss_mib():,.0f} MiB")
        for name in runs:
            cmd = [sys.executable, __file__, "--memory-only", name] + [
                a for a in sys.argv[1:] if a not in ("--compile", "--compile-peer")
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            peak, growth = res.stdout.split()[-2:]
            print(
                f"peak RSS alone ({name}): {float(peak):,.0f} MiB (+{float(growth):,.0f} MiB while training)"
            )
    print(f"ratio {ratio:.2f}x")


def report_fit(args: argparse.Namespace, device: torch.device, tps: dict[str, float]) -> None:
    """encoderlab's fit vs its bare loop, and everyone's useful GFLOP/s vs the matmul peak."""
    cfg = model_config(args)
    got = fit_tokens_per_s(
        cfg,
        device,
        args.batch,
        args.seq,
        args.steps,
        args.warmup,
        args.mask_rate,
        compile=args.compile,
    )
    print(
        f"fit (pretrain.yaml cadence: eval every 100, log every 10): "
        f"{got['tokens_per_s']:,.0f} tokens/s over {got['steps_timed']} steps "
        f"(+ {got['eval_s']:.2f} s eval / 100 steps), loss {got['loss']:.3f}"
    )
    print(f"fit/bare {got['tokens_per_s'] / tps['encoderlab']:.2f}")
    flops_per_token = useful_flops_per_step(cfg, args.batch, args.seq, args.mask_rate) / (
        args.batch * args.seq
    )
    peak = matmul_peak_gflops(device, torch.float32)
    rates = {"encoderlab fit": got["tokens_per_s"], **tps}
    shown = ", ".join(
        f"{name} {r * flops_per_token / 1e9:,.1f} ({r * flops_per_token / 1e9 / peak:.0%})"
        for name, r in rates.items()
    )
    print(f"useful GFLOP/s (of the fp32 matmul peak {peak:,.1f} measured now): {shown}")
    # what each side's matmuls really run: encoderlab skips most of its last block at the
    # unmasked positions, transformers runs its head at every position
    made = make_batches(8, args)
    labels = [b["labels"] for b in made]
    masked = sum(int((lab != -100).sum()) for lab in labels) / len(labels)
    slots = sum(lab.shape[0] * int((lab != -100).sum(1).max()) for lab in labels) / len(labels)
    step_flops = {
        "encoderlab": executed_flops_per_step(cfg, args.batch, args.seq, masked, slots),
        "transformers": executed_flops_per_step(cfg, args.batch, args.seq, masked, None),
    }
    step_flops["encoderlab fit"] = step_flops["encoderlab"]
    tokens = args.batch * args.seq
    shown = ", ".join(
        f"{name} {r / tokens * step_flops[name] / 1e9:,.1f} "
        f"({r / tokens * step_flops[name] / 1e9 / peak:.0%})"
        for name, r in rates.items()
    )
    print(f"executed GFLOP/s (the matmuls each side runs, same peak): {shown}")


if __name__ == "__main__":
    main()
