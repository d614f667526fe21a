"""ctcx.beam_search vs other CTC beam search decoders, side by side in one process.

    python benchmarks/bench_decode.py                  # CPU: B=32, T=500, C in {32, 1000}, beam 10
    python benchmarks/bench_decode.py --device cuda    # GPU: beams 10 and 64, C=1000
    python benchmarks/bench_decode.py --device cuda --quick   # what tools/gpu_check.py runs
    python benchmarks/bench_decode.py --classes 32 --batch 8 --peer-budget 20

Inputs: "peaked" random posteriors, log_softmax(scale * N(0, 1) logits) with
a fixed seed, blank = 0, every sample T frames. No language model anywhere.

CPU peers (skipped with a note when not installed: ``pip install pyctcdecode
fast-ctc-decode``):
- pyctcdecode (``decode``, beam_width=10, its default pruning: tokens below
  log-prob -5 and beams 10 nats behind are dropped), serially, and on a
  ``multiprocessing`` pool with one process per core (``decode_batch``);
- fast-ctc-decode (``beam_search``, beam_size=10, its default
  beam_cut_threshold 0.0), serially, on probabilities.
ctcx runs with torch's thread count (one sample per thread) and with one
thread, so every peer is compared at equal cores. A slow peer decodes only
as many samples as fit in --peer-budget seconds; its time is then scaled to
the whole batch and marked "*". Top-1 agreement is with pyctcdecode (its
pruning makes a few differences expected; correctness is judged against a
brute-force oracle in tests/test_beam_search.py, not against peers).

GPU peer (``--device cuda``): torchaudio's ``cuda_ctc_decoder`` with
blank_skip_threshold 1.0 (no skipping, as ctcx by default) and 0.95 (its
default; ctcx then uses the same threshold), beams 10 and 64, against ctcx
CUDA and ctcx CPU. Times are wall-clock medians with the GPU synchronized.

``--quick``: 3 timed runs and a 10-second peer budget unless given;
``--dry-run`` prints the plan and exits.
"""
from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import statistics
import time
from typing import Callable, List, Optional, Sequence

import torch

import ctcx


def posteriors(B: int, T: int, C: int, scale: float, seed: int = 0) -> torch.Tensor:
    """(B, T, C) float32 log-probabilities: log_softmax of scaled Gaussian logits."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, C, generator=g) * scale).log_softmax(-1)


def labels_for(C: int) -> List[str]:
    """One distinct printable character per class; the blank (class 0) is ''."""
    return [""] + [chr(0x4E00 + c) for c in range(C - 1)]


def median_seconds(fn: Callable[[], object], repeats: int, sync: bool = False) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ctcx_top1(lp: torch.Tensor, labels: Sequence[str], **kwargs) -> List[str]:
    result = ctcx.beam_search(lp, batch_first=True, **kwargs)
    return [s[0] for s in ctcx.decode_strings(result.tokens, result.lengths, labels[1:])]


def timed_subset(decode_one: Callable[[int], str], B: int, budget: float):
    """Decode samples one by one until the budget is spent; returns (seconds
    scaled to B samples, decoded texts, whether it was scaled)."""
    texts = []
    start = time.perf_counter()
    while len(texts) < B:
        texts.append(decode_one(len(texts)))
        if time.perf_counter() - start > budget:
            break
    elapsed = time.perf_counter() - start
    return elapsed * B / len(texts), texts, len(texts) < B


def agreement(a: Sequence[str], b: Sequence[str]) -> str:
    n = min(len(a), len(b))
    return f"{100.0 * sum(x == y for x, y in zip(a, b)) / n:.1f}% of {n}" if n else "-"


def row(name: str, threads, seconds: float, scaled: bool = False, speedup: str = "",
        agree: str = "") -> None:
    t = f"{seconds:.3f}{'*' if scaled else ' '}"
    print(f"  {name:<34} {str(threads):>7} {t:>10} {speedup:>22} {agree:>18}", flush=True)


def header(what: str) -> None:
    print(f"\n{what}")
    print(f"  {'decoder':<34} {'threads':>7} {'seconds':>10} {'ctcx speedup':>22} {'top-1 = pyctcdecode':>18}")


def bench_cpu(args) -> None:
    have_pyctc = importlib.util.find_spec("pyctcdecode") is not None
    have_fast = importlib.util.find_spec("fast_ctc_decode") is not None
    if not have_pyctc:
        print("pyctcdecode not installed (pip install pyctcdecode): skipped")
    if not have_fast:
        print("fast-ctc-decode not installed (pip install fast-ctc-decode): skipped")
    threads = torch.get_num_threads()
    for C in args.classes:
        lp = posteriors(args.batch, args.frames, C, args.scale)
        labels = labels_for(C)
        header(f"B={args.batch} T={args.frames} C={C} beam={args.beam} scale={args.scale} (CPU)")
        ours = ctcx_top1(lp, labels, beam_width=args.beam)
        t_many = median_seconds(lambda: ctcx.beam_search(lp, beam_width=args.beam, batch_first=True),
                                args.repeats)
        torch.set_num_threads(1)
        t_one = median_seconds(lambda: ctcx.beam_search(lp, beam_width=args.beam, batch_first=True),
                               args.repeats)
        torch.set_num_threads(threads)
        reference: Optional[List[str]] = None
        peer_rows = []
        if have_pyctc:
            import logging
            logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
            from pyctcdecode import build_ctcdecoder
            decoder = build_ctcdecoder(labels)
            arrays = [x.numpy() for x in lp]
            seconds, texts, scaled = timed_subset(
                lambda b: decoder.decode(arrays[b], beam_width=args.beam), args.batch, args.peer_budget)
            reference = texts
            peer_rows.append(("pyctcdecode", 1, seconds, scaled, t_one))
            if threads > 1:
                with multiprocessing.get_context("fork").Pool(threads) as pool:
                    n = min(args.batch, max(threads, int(len(texts) * threads)))
                    start = time.perf_counter()
                    decoder.decode_batch(pool, arrays[:n], beam_width=args.beam)
                    seconds = (time.perf_counter() - start) * args.batch / n
                peer_rows.append((f"pyctcdecode (pool of {threads})", threads, seconds, n < args.batch, t_many))
        if have_fast:
            from fast_ctc_decode import beam_search as fast_beam_search
            probs = [x.exp().numpy() for x in lp]
            alphabet = ["_"] + labels[1:]
            seconds, _, scaled = timed_subset(
                lambda b: fast_beam_search(probs[b], alphabet, beam_size=args.beam)[0],
                args.batch, args.peer_budget)
            peer_rows.append(("fast-ctc-decode", 1, seconds, scaled, t_one))
        agree = agreement(ours, reference) if reference else "-"
        row("ctcx", threads, t_many, agree=agree)
        row("ctcx", 1, t_one)
        for name, n_threads, seconds, scaled, mine in peer_rows:
            row(name, n_threads, seconds, scaled,
                f"{seconds / mine:.1f}x at {n_threads} thread{'s' if n_threads > 1 else ''}")


def bench_cuda(args) -> None:
    if not (torch.cuda.is_available() and ctcx.cuda_available()):
        raise SystemExit("--device cuda needs a GPU and ctcx built with its CUDA kernels")
    decoder_factory = None
    try:
        from torchaudio.models.decoder import cuda_ctc_decoder as decoder_factory
    except Exception as exc:  # not installed, or built without its CUDA decoder
        print(f"torchaudio's cuda_ctc_decoder unavailable ({exc.__class__.__name__}: {exc}): skipped")
    for C in args.classes:
        lp_cpu = posteriors(args.batch, args.frames, C, args.scale)
        lp = lp_cpu.cuda()
        lengths = torch.full((args.batch,), args.frames, dtype=torch.int32, device="cuda")
        labels = labels_for(C)
        for beam in args.cuda_beams:
            print(f"\nB={args.batch} T={args.frames} C={C} beam={beam} scale={args.scale} (CUDA: "
                  f"{torch.cuda.get_device_name()})")
            print(f"  {'decoder':<42} {'seconds':>9} {'ctcx speedup':>13} {'top-1 = peer':>16}")
            cpu = ctcx_top1(lp_cpu, labels, beam_width=beam)
            t_cpu = median_seconds(lambda: ctcx.beam_search(lp_cpu, beam_width=beam, batch_first=True),
                                   args.repeats)
            print(f"  {f'ctcx CPU ({torch.get_num_threads()} threads)':<42} {t_cpu:9.4f}")
            for threshold in (1.0, 0.95):
                skip = None if threshold == 1.0 else threshold
                ours = ctcx_top1(lp, labels, beam_width=beam, blank_skip_threshold=skip)
                t_ours = median_seconds(lambda: ctcx.beam_search(
                    lp, beam_width=beam, batch_first=True, blank_skip_threshold=skip), args.repeats, sync=True)
                name = "ctcx CUDA" + ("" if skip is None else f" (blank_skip_threshold {skip})")
                vs_cpu = f"{agreement(ours, cpu)} (CPU)" if skip is None else ""
                print(f"  {name:<42} {t_ours:9.4f} {t_cpu / t_ours:12.1f}x {vs_cpu:>16}")
                if decoder_factory is None:
                    continue
                peer = decoder_factory(["<blk>"] + labels[1:], nbest=1, beam_size=beam,
                                       blank_skip_threshold=threshold)
                theirs = ["".join(labels[c] for c in hyps[0].tokens) for hyps in peer(lp, lengths)]
                t_peer = median_seconds(lambda: peer(lp, lengths), args.repeats, sync=True)
                print(f"  {f'torchaudio cuda_ctc_decoder ({threshold})':<42} {t_peer:9.4f} "
                      f"{t_peer / t_ours:12.1f}x {agreement(ours, theirs):>16}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--classes", type=int, nargs="+", default=None,
                        help="vocabulary sizes, blank included (default: 32 1000 on CPU, 1000 on CUDA)")
    parser.add_argument("--beam", type=int, default=10, help="beam width on the CPU")
    parser.add_argument("--cuda-beams", type=int, nargs="+", default=[10, 64])
    parser.add_argument("--scale", type=float, default=5.0, help="logit scale: larger is more peaked")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed ctcx runs, median taken (default 5; 3 with --quick)")
    parser.add_argument("--peer-budget", type=float, default=None,
                        help="seconds a slow CPU peer may spend before its time is extrapolated "
                             "(default 60; 10 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="3 repeats and a 10-second peer budget")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.classes = args.classes or ([32, 1000] if args.device == "cpu" else [1000])
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.peer_budget = args.peer_budget if args.peer_budget is not None else (10.0 if args.quick else 60.0)
    print(f"ctcx {ctcx.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"seconds for the whole batch; * = extrapolated from the samples decoded within --peer-budget")
    print(f"device={args.device} B={args.batch} T={args.frames} C={args.classes} "
          f"beams={args.cuda_beams if args.device == 'cuda' else [args.beam]} repeats={args.repeats} "
          f"peer_budget={args.peer_budget}")
    if args.dry_run:
        return
    (bench_cpu if args.device == "cpu" else bench_cuda)(args)


if __name__ == "__main__":
    main()
