"""ctcx vs native CTC loss at small sizes, calls interleaved, on a busy CPU.

    python benchmarks/bench_ctc_loss_interleaved.py --threads 2 --configs 32,64,37,5 40,64,37,4

At the captcha trainer's sizes a call takes a few hundred microseconds, and
on a shared machine a thread that loses its core costs a whole scheduler
quantum (milliseconds): the medians of bench_ctc_loss.py, which times one
function after the other, then measure the scheduler. Here every repeat
calls each function once, in turn, so ctcx and native see the same
background load, and the lower decile (p10: the calls nothing preempted) is
printed beside the median. Same modes as bench_ctc_loss.py (float32,
reduction='mean', input lengths T, target lengths L, forward + backward):
op (log_probs a leaf), e2e (log_softmax + loss), logits (native log_softmax +
loss vs ctcx.ctc_loss_with_logits). Speedup = native / ctcx at each statistic.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ctcx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also under PYTHONSAFEPATH
from bench_ctc_loss import make_inputs  # noqa: E402


def quantile(values, q):
    values = sorted(values)
    return values[int(len(values) * q)] / 1e3  # microseconds


def run_config(T: int, N: int, C: int, L: int, repeats: int) -> None:
    logits, targets, il, tl = make_inputs(T, N, C, L, "cpu")
    lp = logits.log_softmax(-1).detach().requires_grad_()
    x = logits.clone().requires_grad_()

    def step(leaf, make):
        def run():
            leaf.grad = None
            make().backward()
        return run

    fns = {
        ("op", "native"): step(lp, lambda: F.ctc_loss(lp, targets, il, tl)),
        ("op", "ctcx"): step(lp, lambda: ctcx.ctc_loss(lp, targets, il, tl)),
        ("e2e", "native"): step(x, lambda: F.ctc_loss(x.log_softmax(-1), targets, il, tl)),
        ("e2e", "ctcx"): step(x, lambda: ctcx.ctc_loss(x.log_softmax(-1), targets, il, tl)),
        ("logits", "ctcx"): step(x, lambda: ctcx.ctc_loss_with_logits(x, targets, il, tl)),
    }
    times = {key: [] for key in fns}
    for i in range(repeats + 20):  # the first 20 rounds warm up
        for key, fn in fns.items():
            t0 = time.perf_counter_ns()
            fn()
            if i >= 20:
                times[key].append(time.perf_counter_ns() - t0)
    times[("logits", "native")] = times[("e2e", "native")]
    for mode in ("op", "e2e", "logits"):
        nat, mine = times[(mode, "native")], times[(mode, "ctcx")]
        cells = []
        for name, q in (("p10", 0.1), ("p50", 0.5)):
            a, b = quantile(nat, q), quantile(mine, q)
            cells.append(f"{name} {a:8.1f} {b:7.1f} {a / b:5.2f}x")
        print(f"{f'{T},{N},{C},{L}':>14} {mode:>6}  " + "   ".join(cells), flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=1000, help="interleaved rounds (default 1000)")
    parser.add_argument("--configs", nargs="*", default=["32,64,37,5", "40,64,37,4"],
                        help="configs as T,N,C,L (default: the captcha trainer's two)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs]
    if any(len(c) != 4 for c in configs):
        parser.error(f"--configs: expected T,N,C,L for each config, got {args.configs}")
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} repeats={args.repeats} "
          "(us per call: native, ctcx, speedup)")
    for T, N, C, L in configs:
        run_config(T, N, C, L, args.repeats)


if __name__ == "__main__":
    main()
