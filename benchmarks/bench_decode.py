"""ctcx.beam_search vs other CTC beam search decoders, side by side in one process.

    python benchmarks/bench_decode.py                  # CPU: every workload below, beam 10
    python benchmarks/bench_decode.py --workloads captcha --checkpoint runs/default/checkpoint.pt
    python benchmarks/bench_decode.py --device cuda    # GPU: beams 10 and 64, C=1000
    python benchmarks/bench_decode.py --device cuda --quick   # what tools/gpu_check.py runs
    python benchmarks/bench_decode.py --lm runs/words  # LM and lexicon decoding on a word-reading task
                                                       # (benchmarks/bench_decode_lm.py)

CPU workloads (blank = 0, no language model anywhere):
- ``random``: B=32, T=500, C in --classes (default 32 and 1000), "peaked"
  random posteriors log_softmax(scale * N(0, 1) logits), fixed seed;
- ``captcha``: real posteriors, the CRNN of --checkpoint applied to the 2000
  images of ../shared/data/captcha-36x4 (which no run trains on): C=37, T set
  by the model (32 frames for the default run's 128x48 input).
  Without --checkpoint, runs/default/checkpoint.pt (the trainer's default
  run) when it exists, else a small model the benchmark trains once
  (``--preset tiny``, 1500 steps, a few minutes; kept in runs/bench-decode).
  Skipped with a note when the shared set is absent.

CPU decoders, all at beam width 10 (a missing one is skipped with a note;
``pip install pyctcdecode==0.5.0 fast-ctc-decode==0.3.7 fast-ctc-decoder==0.3.9
ctc-beam-decoder==0.2.0 flashlight-text==0.0.7``):
- ctcx.beam_search at torch's thread count (one sample per thread) and at one;
- pyctcdecode (``decode``; its default pruning: tokens below log-prob -5 and
  beams 10 nats behind dropped), serially and on a pool of one process per core;
- ctc-beam-decoder (C++, pyctcdecode's interface and default pruning);
- fast-ctc-decode (Rust, its default beam_cut_threshold 0) and
  fast-ctc-decoder (its successor, beam_cut_threshold 1e-6), on probabilities;
- flashlight-text's lexicon-free decoder (torchaudio's CPU CTC decoder): CTC
  criterion, log-add merging, a zero LM, every token considered, no threshold.
Every peer runs on one thread, so "ctcx speedup" (peer / ctcx at one thread)
compares equal cores. A slow peer decodes only the samples that fit in
--peer-budget seconds; its time is then scaled to the batch and marked "*".
Each decoder's top-1 is scored by its exact log-probability, log P(labelling
| x) by the CTC forward algorithm (``ctcx.ctc_loss`` in float64): "mean log P"
and the share of answers equal to ctcx's say whether a faster peer gave the
same answers; "better" counts samples where its answer is more probable than
ctcx's.

Greedy decoding (CPU, each workload, one thread): ``ctcx.greedy_decode``
(Python lists out) against the same in plain torch (argmax, a mask of the
kept frames, ``tolist``) at batch sizes 1, 32 and the whole batch, and the
op alone against ``torch.argmax`` alone; both must give the same lists.

GPU peer (``--device cuda``): torchaudio's ``cuda_ctc_decoder`` with
blank_skip_threshold 1.0 (no skipping, as ctcx by default) and 0.95 (its
default; ctcx then uses the same threshold), beams 10 and 64, against ctcx
CUDA and ctcx CPU. Times are wall-clock medians with the GPU synchronized.

``--quick``: 3 timed runs and a 10-second peer budget unless given;
``--dry-run`` prints the plan and exits.
"""
from __future__ import annotations

import os

# numpy's OpenBLAS threads spin on a core after any BLAS call and would slow
# whichever decoder is timed next; no decoder here uses BLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, List, Optional, Sequence  # noqa: E402

import torch  # noqa: E402

import ctcx  # noqa: E402


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


def timed_subset(decode_one: Callable[[int], List[int]], B: int, budget: float):
    """Decode samples one by one until the budget is spent; returns (seconds
    scaled to B samples, decoded token lists, whether it was scaled)."""
    out = []
    start = time.perf_counter()
    while len(out) < B:
        out.append(decode_one(len(out)))
        if time.perf_counter() - start > budget:
            break
    elapsed = time.perf_counter() - start
    return elapsed * B / len(out), out, len(out) < B


def agreement(a: Sequence, b: Sequence) -> str:
    n = min(len(a), len(b))
    return f"{100.0 * sum(x == y for x, y in zip(a, b)) / n:.1f}% of {n}" if n else "-"


def exact_log_probs(lp: torch.Tensor, answers: Sequence[Sequence[int]]) -> torch.Tensor:
    """log P(answer_b | x_b) (the CTC forward algorithm, float64) for the
    first len(answers) samples of lp (B, T, C)."""
    n = len(answers)
    longest = max([len(a) for a in answers] + [1])
    targets = torch.zeros(n, longest, dtype=torch.long)
    for i, a in enumerate(answers):
        targets[i, :len(a)] = torch.tensor(a, dtype=torch.long)
    x = lp[:n].double().transpose(0, 1)
    return -ctcx.ctc_loss(x, targets, [lp.shape[1]] * n, [len(a) for a in answers], reduction="none")


def ctcx_answers(lp: torch.Tensor, beam: int) -> List[List[int]]:
    r = ctcx.beam_search(lp, beam_width=beam, batch_first=True)
    return [r.tokens[b, 0, :r.lengths[b, 0]].tolist() for b in range(lp.shape[0])]


def cpu_peers(lp: torch.Tensor, labels: Sequence[str], beam: int) -> List[tuple]:
    """(name, decode_one(b) -> token list) for each installed peer."""
    B, T, C = lp.shape
    index = {ch: c for c, ch in enumerate(labels) if c}
    arrays = [x.numpy() for x in lp]
    peers = []
    if importlib.util.find_spec("pyctcdecode"):
        import logging
        logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
        from pyctcdecode import build_ctcdecoder
        decoder = build_ctcdecoder(list(labels))
        peers.append(("pyctcdecode 0.5.0",
                      lambda b: [index[ch] for ch in decoder.decode(arrays[b], beam_width=beam)]))
    else:
        print("pyctcdecode not installed: skipped")
    if importlib.util.find_spec("ctc_beam_decoder"):
        import ctc_beam_decoder
        cbd = ctc_beam_decoder.BeamSearchDecoder(list(labels))
        peers.append(("ctc-beam-decoder 0.2.0",
                      lambda b: [index[ch] for ch in cbd.decode(arrays[b], beam_width=beam)]))
    else:
        print("ctc-beam-decoder not installed: skipped")
    probs = [x.exp().numpy() for x in lp]
    alphabet = ["_"] + list(labels[1:])
    for module, name, kwargs in (("fast_ctc_decode", "fast-ctc-decode 0.3.7", {}),
                                 ("fast_ctc_decoder", "fast-ctc-decoder 0.3.9 (cut 1e-6)",
                                  {"beam_cut_threshold": 1e-6})):
        if importlib.util.find_spec(module):
            search = importlib.import_module(module).beam_search
            peers.append((name, lambda b, search=search, kwargs=kwargs:
                          [index[ch] for ch in search(probs[b], alphabet, beam_size=beam, **kwargs)[0]]))
        else:
            print(f"{module.replace('_', '-')} not installed: skipped")
    if importlib.util.find_spec("flashlight"):
        from flashlight.lib.text import decoder as fl
        options = fl.LexiconFreeDecoderOptions(beam_size=beam, beam_size_token=C, beam_threshold=1e30,
                                               lm_weight=0.0, sil_score=0.0, log_add=True,
                                               criterion_type=fl.CriterionType.CTC)
        fl_decoder = fl.LexiconFreeDecoder(options, fl.ZeroLM(), 0, 0, [])
        contiguous = [a.copy(order="C") for a in arrays]

        def flashlight_one(b):
            path = fl_decoder.decode(contiguous[b].ctypes.data, T, C)[0].tokens
            out, prev = [], None
            for t in path:  # one token per frame, and a silence (= blank) at each end
                if t != prev and t > 0:
                    out.append(t)
                prev = t
            return out
        peers.append(("flashlight-text 0.0.7", flashlight_one))
    else:
        print("flashlight-text not installed: skipped")
    return peers


def bench_workload(name: str, lp: torch.Tensor, labels: Sequence[str], args) -> None:
    B, T, C = lp.shape
    beam = args.beam
    threads = torch.get_num_threads()
    print(f"\n{name}: B={B} T={T} C={C} beam={beam} (CPU)")
    print(f"  {'decoder':<36} {'threads':>7} {'seconds':>9} {'ctcx speedup':>13} "
          f"{'top-1 = ctcx':>15} {'mean log P':>11} {'better':>7}")
    ours = ctcx_answers(lp, beam)
    ours_lp = exact_log_probs(lp, ours)
    t_many = median_seconds(lambda: ctcx.beam_search(lp, beam_width=beam, batch_first=True), args.repeats)
    torch.set_num_threads(1)
    t_one = median_seconds(lambda: ctcx.beam_search(lp, beam_width=beam, batch_first=True), args.repeats)
    torch.set_num_threads(threads)

    def line(decoder, n_threads, seconds, scaled, speedup, answers):
        n = len(answers)
        theirs = exact_log_probs(lp, answers)
        better = int((theirs > ours_lp[:n] + 1e-9).sum())
        t = f"{seconds:.4f}{'*' if scaled else ' '}"
        print(f"  {decoder:<36} {n_threads:>7} {t:>9} {speedup:>13} {agreement(answers, ours[:n]):>15} "
              f"{theirs.mean().item():11.3f} {better:>7}", flush=True)

    line("ctcx", threads, t_many, False, "", ours)
    line("ctcx", 1, t_one, False, "", ours)
    for decoder, decode_one in cpu_peers(lp, labels, beam):
        decode_one(0)  # warm-up
        seconds, answers, scaled = timed_subset(decode_one, B, args.peer_budget)
        line(decoder, 1, seconds, scaled, f"{seconds / t_one:.1f}x", answers)
        if decoder.startswith("pyctcdecode") and threads > 1:
            pyctcdecode_pool(lp, labels, args, threads, seconds, t_many, line)


def pyctcdecode_pool(lp, labels, args, threads, serial_seconds, t_many, line) -> None:
    """pyctcdecode's decode_batch on a pool of one process per core."""
    from pyctcdecode import build_ctcdecoder
    decoder = build_ctcdecoder(list(labels))
    index = {ch: c for c, ch in enumerate(labels) if c}
    B = lp.shape[0]
    n = min(B, max(threads, int(B * min(1.0, args.peer_budget / max(serial_seconds, 1e-9)) * threads)))
    arrays = [x.numpy() for x in lp[:n]]
    with multiprocessing.get_context("fork").Pool(threads) as pool:
        start = time.perf_counter()
        texts = decoder.decode_batch(pool, arrays, beam_width=args.beam)
        seconds = (time.perf_counter() - start) * B / n
    line(f"pyctcdecode 0.5.0 (pool of {threads})", threads, seconds, n < B, f"{seconds / t_many:.1f}x",
         [[index[ch] for ch in t] for t in texts])


ROOT = Path(__file__).resolve().parent.parent
SHARED_SET = ROOT.parent / "shared" / "data" / "captcha-36x4"
DEFAULT_CHECKPOINT = ROOT / "runs" / "default" / "checkpoint.pt"
OWN_CHECKPOINT = ROOT / "runs" / "bench-decode" / "checkpoint.pt"


def shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (printed paths carry no home folders)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def captcha_posteriors(checkpoint: Optional[str]) -> Optional[tuple]:
    """(log_probs (B, T, C), labels) of a CRNN on the shared set, or None without it."""
    if not SHARED_SET.is_dir():
        print(f"captcha workload skipped: {SHARED_SET} is absent")
        return None
    import numpy as np

    from ctcx.captcha.checkpoint import load_checkpoint
    from ctcx.captcha.folder import FolderImages, read_folder
    from ctcx.captcha.images import to_model_input

    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.exists() else OWN_CHECKPOINT
    if not path.exists():
        if checkpoint:
            raise SystemExit(f"--checkpoint {checkpoint}: no such file")
        print(f"no checkpoint given and none at {shown(DEFAULT_CHECKPOINT)}: training a small one into "
              f"{shown(path.parent)} "
              f"(once, a few minutes)", flush=True)
        subprocess.run([sys.executable, str(ROOT / "examples" / "train_captcha.py"), "--preset", "tiny",
                        "--steps", "1500", "--pool-size", "10000", "--eval-size", "500", "--no-progress",
                        "--out", str(path.parent)], check=True)
    model, config, saved = load_checkpoint(path, "cpu")
    items = read_folder(SHARED_SET)
    dataset = FolderImages(items, **config.preprocessing)
    images = torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))
    with torch.no_grad():
        lp = torch.cat([model(to_model_input(images[i:i + 250])).float().log_softmax(-1)
                        for i in range(0, len(images), 250)], 1)
    print(f"captcha posteriors: {shown(path)} (step {saved['step']}, {config.preset} preset) on the "
          f"{len(items)} images of {SHARED_SET.name}")
    return lp.transpose(0, 1).contiguous(), [""] + list(config.charset)


def plain_greedy(lp: torch.Tensor) -> List[List[int]]:
    """Best-path decoding in plain torch, (B, T, C) -> lists: argmax, a mask
    of kept frames (not blank, not a repeat), tolist."""
    best = lp.argmax(-1)
    keep = best != 0
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    return [row[m].tolist() for row, m in zip(best, keep)]


def bench_greedy(name: str, lp: torch.Tensor, args) -> None:
    """ctcx.greedy_decode (the API, lists out) vs plain torch, and the op
    alone vs torch.argmax alone, at several batch sizes, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print(f"\ngreedy, {name}: T={lp.shape[1]} C={lp.shape[2]}, one thread, milliseconds per call")
    print(f"  {'batch':>6} {'ctcx API':>9} {'plain torch':>12} {'ratio':>6} {'ctcx op':>9} {'argmax':>9} {'ratio':>6}")
    for B in sorted({b for b in (1, 32) if b < lp.shape[0]} | {lp.shape[0]}):
        x = lp[:B]
        if ctcx.greedy_decode(x, batch_first=True) != plain_greedy(x):
            raise SystemExit(f"greedy mismatch on {name} at batch {B}")
        lengths = torch.full((B,), x.shape[1], dtype=torch.long)
        tnc = x.transpose(0, 1)
        repeats = max(args.repeats, 20 if B < 100 else 5)
        api = median_seconds(lambda: ctcx.greedy_decode(x, batch_first=True), repeats) * 1e3
        plain = median_seconds(lambda: plain_greedy(x), repeats) * 1e3
        op = median_seconds(lambda: torch.ops.ctcx.ctc_greedy_decode(tnc, lengths, 0), repeats) * 1e3
        argmax = median_seconds(lambda: tnc.argmax(-1), repeats) * 1e3
        print(f"  {B:>6} {api:9.3f} {plain:12.3f} {plain / api:5.1f}x {op:9.3f} {argmax:9.3f} {op / argmax:5.2f}x",
              flush=True)
    torch.set_num_threads(threads)


def bench_cpu(args) -> None:
    if "random" in args.workloads:
        for C in args.classes:
            lp = posteriors(args.batch, args.frames, C, args.scale)
            bench_workload(f"random, scale {args.scale}", lp, labels_for(C), args)
            bench_greedy(f"random, scale {args.scale}", lp, args)
    if "captcha" in args.workloads:
        found = captcha_posteriors(args.checkpoint)
        if found:
            bench_workload("captcha-36x4, real CRNN posteriors", *found, args)
            bench_greedy("captcha-36x4, real CRNN posteriors", found[0], args)


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
    parser.add_argument("--beam", type=int, default=None, help="beam width on the CPU (default 10; 32 with --lm)")
    parser.add_argument("--cuda-beams", type=int, nargs="+", default=[10, 64])
    parser.add_argument("--scale", type=float, default=5.0, help="logit scale: larger is more peaked")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed ctcx runs, median taken (default 5; 3 with --quick)")
    parser.add_argument("--peer-budget", type=float, default=None,
                        help="seconds a slow CPU peer may spend before its time is extrapolated "
                             "(default 60; 10 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--workloads", nargs="+", default=["random", "captcha"], choices=["random", "captcha"],
                        help="CPU workloads (default: both)")
    parser.add_argument("--checkpoint", default=None,
                        help="captcha model for the captcha workload (default: runs/default/checkpoint.pt if "
                             "present, else one the benchmark trains)")
    parser.add_argument("--lm", default=None, metavar="TASK_DIR",
                        help="decoding with a language model on the task of benchmarks/word_task.py "
                             "(benchmarks/bench_decode_lm.py); the other options except --beam do not apply")
    parser.add_argument("--quick", action="store_true", help="3 repeats and a 10-second peer budget")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.lm:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_decode_lm import run

        print(f"ctcx {ctcx.__version__}, torch {torch.__version__}, {torch.get_num_threads()} threads")
        run(Path(args.lm), beam=args.beam or 32, repeats=args.repeats or 3)
        return
    args.beam = args.beam or 10
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
