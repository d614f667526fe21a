"""ctcx.ctc_loss vs PyTorch's native CTC loss, side by side in one process.

    python benchmarks/bench_ctc_loss.py                 # CPU, the issue's configs
    python benchmarks/bench_ctc_loss.py --repeats 20 --configs 150,32,5000,20
    python benchmarks/bench_ctc_loss.py --device cuda --quick   # GPU, what tools/gpu_check.py runs

Per config (T, N, C, L), float32, reduction='mean', every input length = T
and every target length = L, forward + backward:
- op:     the loss alone, ``log_probs`` a leaf tensor (native vs ctcx.ctc_loss);
- e2e:    ``log_softmax`` then the loss, from logits (native vs ctcx.ctc_loss);
- logits: native ``log_softmax`` + loss vs ``ctcx.ctc_loss_with_logits``.
Each time is the median of --repeats runs after warm-up; speedup = native / ctcx.

On CUDA three more figures per config:
- cudnn:  PyTorch's cuDNN CTC (``F.ctc_loss`` with concatenated int32 targets
  on the CPU and list lengths, the only form it takes; printed only where
  ``torch._use_cudnn_ctc_loss`` says it applies) vs ``ctcx.ctc_loss``, op mode;
- peak:   the peak of ``torch.cuda.max_memory_allocated`` above the inputs, for
  native ``log_softmax`` + loss and for ``ctc_loss_with_logits``, forward +
  backward, and the saving counted in (T, N, C) tensors of the input dtype;
- bandwidth (configs with T*N*C >= --bandwidth-min): the least traffic a
  fused logits loss needs, forward + backward (read the logits in the forward,
  read them again and write the gradient in the backward: 3 * T*N*C elements),
  divided by its time, against the copy bandwidth of a (T, N, C) tensor
  measured here (bytes read + written by ``copy_`` / time).
``--quick`` adds (256, 64, 8192, 30) (T*N*C = 1.3e8) to the default configs on
CUDA and takes 3 repeats; ``--dry-run`` prints the plan and exits.
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
BANDWIDTH_CONFIG = (256, 64, 8192, 30)


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
    if device == "cuda":
        cudnn = cudnn_time(log_probs, targets, T, L, repeats)
        if cudnn is not None:
            rows.append(("cudnn", cudnn, rows[0][2]))
    return rows


def cudnn_time(log_probs: torch.Tensor, targets: torch.Tensor, T: int, L: int, repeats: int):
    """PyTorch's cuDNN CTC, fed the one form it takes, or None where it does not apply."""
    flat = targets.flatten().to("cpu", torch.int32)
    il, tl = [T] * targets.shape[0], [L] * targets.shape[0]
    if not torch._use_cudnn_ctc_loss(log_probs, flat, il, tl, 0):
        return None
    ours = ctcx.ctc_loss(log_probs, targets, il, tl)
    theirs = F.ctc_loss(log_probs, flat, il, tl)
    if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4):
        sys.exit(f"mismatch with cuDNN: ctcx {ours.item()} vs cuDNN {theirs.item()}")

    def run():
        log_probs.grad = None
        F.ctc_loss(log_probs, flat, il, tl).backward()
    return timed(run, repeats, "cuda")


def peak_bytes(fn: Callable[[], None], leaf: torch.Tensor) -> int:
    """Peak CUDA memory allocated by fn() above the inputs (leaf without its gradient)."""
    fn()  # warm-up: workspaces and caches do not count
    leaf.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def memory_line(T: int, N: int, C: int, L: int) -> str:
    logits, targets, il, tl = make_inputs(T, N, C, L, "cuda")
    logits.requires_grad_()

    def native():
        logits.grad = None
        F.ctc_loss(logits.log_softmax(-1), targets, il, tl).backward()

    def fused():
        logits.grad = None
        ctcx.ctc_loss_with_logits(logits, targets, il, tl).backward()

    a, b = peak_bytes(native, logits), peak_bytes(fused, logits)
    tensor = T * N * C * logits.element_size()
    return (f"peak memory above the inputs: log_softmax + native {a / 2**20:.1f} MiB, "
            f"ctc_loss_with_logits {b / 2**20:.1f} MiB: {(a - b) / tensor:.2f} (T, N, C) tensors less")


def bandwidth_line(T: int, N: int, C: int, L: int, device: str, repeats: int) -> str:
    logits, targets, il, tl = make_inputs(T, N, C, L, device)
    logits.requires_grad_()

    def fused():
        logits.grad = None
        ctcx.ctc_loss_with_logits(logits, targets, il, tl).backward()

    dst = torch.empty_like(logits)
    copy_ms = timed(lambda: dst.copy_(logits.detach()), repeats, device)
    tensor = T * N * C * logits.element_size()
    copy_bw = 2 * tensor / (copy_ms * 1e-3)  # bytes read + written per second
    fused_ms = timed(fused, repeats, device)
    fused_bw = 3 * tensor / (fused_ms * 1e-3)
    return (f"bandwidth: ctc_loss_with_logits fwd+bwd {fused_ms:.3f} ms moves at least 3 x {tensor / 1e9:.3f} GB: "
            f"{fused_bw / 1e9:.0f} GB/s = {100 * fused_bw / copy_bw:.0f}% of the copy bandwidth "
            f"{copy_bw / 1e9:.0f} GB/s (copy_ of one (T, N, C) tensor, {copy_ms:.3f} ms)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per measurement, median taken (default 10; 3 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--configs", nargs="*", default=None,
                        help="configs as T,N,C,L (default: the four of the foundation issue)")
    parser.add_argument("--quick", action="store_true",
                        help="3 repeats, and on CUDA the bandwidth config (256,64,8192,30) added")
    parser.add_argument("--bandwidth-min", type=float, default=1e8,
                        help="configs with T*N*C at least this get the bandwidth figure")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 10)
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs] if args.configs else list(DEFAULT_CONFIGS)
    if args.quick and args.device == "cuda" and not args.configs:
        configs.append(BANDWIDTH_CONFIG)
    if any(len(c) != 4 for c in configs):
        parser.error(f"--configs: expected T,N,C,L for each config, got {args.configs}")

    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"dtype=float32 reduction=mean repeats={repeats} configs={configs}")
    if args.dry_run:
        return
    if args.device == "cuda":
        if not (torch.cuda.is_available() and ctcx.cuda_available()):
            raise SystemExit("--device cuda needs a GPU and ctcx built with its CUDA kernels")
        print(f"GPU: {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}")
    print(f"{'T,N,C,L':>18} {'mode':>6} {'peer ms':>10} {'ctcx ms':>9} {'speedup':>8}")
    for T, N, C, L in configs:
        for mode, native, mine in bench_config(T, N, C, L, args.device, repeats):
            print(f"{f'{T},{N},{C},{L}':>18} {mode:>6} {native:10.3f} {mine:9.3f} {native / mine:7.2f}x", flush=True)
        if args.device == "cuda":
            print(f"{'':>18} {memory_line(T, N, C, L)}", flush=True)
        if T * N * C >= args.bandwidth_min:
            print(f"{'':>18} {bandwidth_line(T, N, C, L, args.device, repeats)}", flush=True)


if __name__ == "__main__":
    main()
