"""ctcx.ctc_loss vs PyTorch's native CTC loss, side by side in one process.

    python benchmarks/bench_ctc_loss.py                 # CPU, the issue's configs
    python benchmarks/bench_ctc_loss.py --repeats 20 --configs 150,32,5000,20

Per config (T, N, C, L), float32, reduction='mean', every input length = T
and every target length = L, forward + backward:
- op:     the loss alone, ``log_probs`` a leaf tensor (native vs ctcx.ctc_loss);
- e2e:    ``log_softmax`` then the loss, from logits (native vs ctcx.ctc_loss);
- logits: native ``log_softmax`` + loss vs ``ctcx.ctc_loss_with_logits``.
Each time is the median of --repeats runs after warm-up; speedup = native / ctcx.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, List, Tuple

import torch
import torch.nn.functional as F

import ctcx

DEFAULT_CONFIGS = [(150, 32, 5000, 20), (500, 16, 1000, 100), (150, 32, 28, 40), (32, 64, 37, 5)]


def make_inputs(T: int, N: int, C: int, L: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, N, C, generator=g).to(device)
    targets = torch.randint(1, C, (N, L), generator=g).to(device)
    input_lengths = torch.full((N,), T, dtype=torch.long, device=device)
    target_lengths = torch.full((N,), L, dtype=torch.long, device=device)
    return logits, targets, input_lengths, target_lengths


def timed(fn: Callable[[], None], repeats: int, device: str) -> float:
    """Median wall time of fn() in milliseconds, after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_config(T: int, N: int, C: int, L: int, device: str, repeats: int) -> List[Tuple[str, float, float]]:
    logits, targets, il, tl = make_inputs(T, N, C, L, device)
    log_probs = logits.log_softmax(-1).detach().requires_grad_()
    logits = logits.requires_grad_()
    losses = {"native": F.ctc_loss, "ctcx": ctcx.ctc_loss}

    def op(loss_fn):
        def run():
            log_probs.grad = None
            loss_fn(log_probs, targets, il, tl).backward()
        return run

    def e2e(loss_fn):
        def run():
            logits.grad = None
            loss_fn(logits.log_softmax(-1), targets, il, tl).backward()
        return run

    # Same answer before timing anything.
    b = F.ctc_loss(logits.log_softmax(-1), targets, il, tl)
    for a in (ctcx.ctc_loss(logits.log_softmax(-1), targets, il, tl),
              ctcx.ctc_loss_with_logits(logits, targets, il, tl)):
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-4):
            sys.exit(f"mismatch at {(T, N, C, L)}: ctcx {a.item()} vs native {b.item()}")

    def fused():
        logits.grad = None
        ctcx.ctc_loss_with_logits(logits, targets, il, tl).backward()

    rows = []
    for mode, make in (("op", op), ("e2e", e2e)):
        native = timed(make(losses["native"]), repeats, device)
        mine = timed(make(losses["ctcx"]), repeats, device)
        rows.append((mode, native, mine))
    rows.append(("logits", rows[1][1], timed(fused, repeats, device)))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median taken)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--configs", nargs="*", default=None,
                        help="configs as T,N,C,L (default: the four of the foundation issue)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs] if args.configs else DEFAULT_CONFIGS

    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"dtype=float32 reduction=mean repeats={args.repeats}")
    print(f"{'T,N,C,L':>18} {'mode':>6} {'native ms':>10} {'ctcx ms':>9} {'speedup':>8}")
    for T, N, C, L in configs:
        for mode, native, mine in bench_config(T, N, C, L, args.device, args.repeats):
            print(f"{f'{T},{N},{C},{L}':>18} {mode:>6} {native:10.2f} {mine:9.2f} {native / mine:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
