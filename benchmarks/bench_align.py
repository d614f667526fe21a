"""Forced alignment: ctcx.forced_align against torchaudio.functional.forced_align.

    python benchmarks/bench_align.py                                   # ctcx alone
    python benchmarks/bench_align.py --peer-python venv-ta/bin/python  # and torchaudio
    python benchmarks/bench_align.py --device cuda --peer-python ...   # on a GPU

torchaudio's aligner needs torch 2.9 (torchaudio is in maintenance; ctcx needs
torch >= 2.11), so it runs in a virtualenv of its own, driven from here in a
subprocess on the very same inputs (saved to a temporary file):

    python3 -m venv venv-ta
    venv-ta/bin/pip install torch==2.9.1 'torchaudio==2.9.*'    # about 7 GB: a CUDA build, runs on the CPU too

torchaudio aligns one sample per call (batch size 1), so its time for a
batch is the loop over the samples, the way users call it, at the same
thread count as ctcx (on CUDA: the same GPU, timed with a synchronize).
Printed per configuration (T frames, N samples, C classes, L labels):
median milliseconds per batch (ctcx also with the wildcard, star=True), the
ratio, and agreement, for torchaudio and, when it is installed in the same
venv (``venv-ta/bin/pip install ctc-forced-aligner``; numpy in, one sample
per call, CPU only), ctc-forced-aligner: samples with the same path, samples whose paths
differ at an equal path log-probability (a tie: both most probable, within
1e-4), and samples where either side's path scores lower (torchaudio's can
on ties, pytorch/audio#4221; ctcx's never should).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Tuple

import torch

import ctcx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also under PYTHONSAFEPATH
from bench_ctc_loss import timed  # noqa: E402  (median ms after two warm-up calls)

DEFAULT_CONFIGS = [(500, 32, 32, 100), (2000, 8, 40, 300), (40, 256, 37, 5)]  # the last: captcha size

# What the peer's interpreter runs: load the inputs, align each sample with
# torchaudio at the given thread count, print the median batch time and the paths.
PEER = r"""
import json, statistics, sys, time, torch, torchaudio.functional as AF
path, threads, repeats, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
d = torch.load(path)
lp, targets, il, tl = d["log_probs"], d["targets"], d["il"], d["tl"]   # (N, T, C) batch first
lp, targets = lp.to(device), targets.to(device)
def torchaudio_run():
    out = []
    for n in range(lp.shape[0]):
        labels, scores = AF.forced_align(lp[n:n + 1, :il[n]], targets[n:n + 1, :tl[n]], blank=0)
        out.append(labels[0].tolist())
    if device == "cuda":
        torch.cuda.synchronize()
    return out
def timed(run):
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); paths = run(); times.append((time.perf_counter() - t0) * 1e3)
    return {"ms": statistics.median(times), "paths": paths}
result = {"torch": torch.__version__, "torchaudio": timed(torchaudio_run)}
try:  # ctc-forced-aligner (numpy in, one sample per call, CPU only), if installed beside torchaudio
    import numpy, ctc_forced_aligner
    arrays = [(lp[n, :il[n]].cpu().float().numpy()[None], targets[n, :tl[n]].cpu().numpy()[None])
              for n in range(lp.shape[0])]
    def cfa_run():
        return [ctc_forced_aligner.forced_align(x, y, blank=0)[0][0].tolist() for x, y in arrays]
    result["ctc-forced-aligner"] = timed(cfa_run) if device == "cpu" else None
except ImportError:
    result["ctc-forced-aligner"] = None
print(json.dumps(result))
"""


def make_inputs(T: int, N: int, C: int, L: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    log_probs = (torch.randn(N, T, C, generator=g) * 2).log_softmax(-1)
    targets = torch.randint(1, C, (N, L), generator=g)
    return log_probs, targets, [T] * N, [L] * N


def path_score(lp: torch.Tensor, path: List[int]) -> float:
    return float(lp[torch.arange(len(path)), torch.tensor(path)].double().sum())


def bench(config: Tuple[int, int, int, int], threads: int, repeats: int, peer: str | None, device: str) -> str:
    T, N, C, L = config
    lp, targets, il, tl = make_inputs(T, N, C, L)
    torch.set_num_threads(threads)
    x, y = lp.to(device), targets.to(device)
    ours_ms = timed(lambda: ctcx.forced_align(x, y, il, tl, batch_first=True), repeats, device)
    star_ms = timed(lambda: ctcx.forced_align(x, y, il, tl, batch_first=True, star=True), repeats, device)
    labels, _ = ctcx.forced_align(x, y, il, tl, batch_first=True)
    labels = labels.cpu()
    line = f"{f'{T},{N},{C},{L}':>16} {threads:>3} {ours_ms:10.2f} {star_ms:10.2f}"
    if not peer:
        return line
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "inputs.pt"
        torch.save({"log_probs": lp, "targets": targets, "il": il, "tl": tl}, data)
        out = subprocess.run([peer, "-c", PEER, str(data), str(threads), str(repeats), device], capture_output=True,
                             text=True, timeout=3600)
    if out.returncode != 0:
        return line + f"  peer failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for peer_name in ("torchaudio", "ctc-forced-aligner"):
        theirs_all = result.get(peer_name)
        if theirs_all is None:
            line += f"\n{'':>20} {peer_name}: not installed (or not on {device})"
            continue
        same = tied = peer_worse = ours_worse = 0
        for n, theirs in enumerate(theirs_all["paths"]):
            mine = labels[n, : il[n]].tolist()
            if mine == theirs:
                same += 1
                continue
            gap = path_score(lp[n], theirs) - path_score(lp[n], mine)
            if abs(gap) <= 1e-4:
                tied += 1
            elif gap < 0:
                peer_worse += 1
            else:
                ours_worse += 1
        line += (f"\n{'':>20} {peer_name:>18} {theirs_all['ms']:10.2f} ms, {peer_name} / ctcx "
                 f"{theirs_all['ms'] / ours_ms:.1f}x; same path {same}/{N}, tied {tied}, {peer_name} worse "
                 f"{peer_worse}, ctcx worse {ours_worse}")
    return line + f"\n{'':>20} (peers on torch {result['torch']})"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="*", default=None, metavar="T,N,C,L")
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--peer-python", default="", help="the interpreter of a venv with torchaudio 2.9 (see above)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where both align")
    p.add_argument("--dry-run", action="store_true", help="one tiny configuration, one repeat")
    args = p.parse_args(argv)
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs] if args.configs else DEFAULT_CONFIGS
    if args.dry_run:
        configs, args.repeats, args.threads = [(20, 3, 6, 4)], 1, [1]
    if args.device == "cuda" and not (torch.cuda.is_available() and ctcx.cuda_available()):
        p.error("--device cuda needs a GPU and ctcx built with its CUDA kernels")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device={name} torch={torch.__version__} ctcx={ctcx.__version__} repeats={args.repeats} "
          f"peer={'torchaudio via ' + args.peer_python if args.peer_python else 'none'}")
    print(f"{'T,N,C,L':>16} {'thr':>3} {'ctcx ms':>10} {'star=True':>10}   (peers below each line)")
    for config in configs:
        for threads in args.threads:
            print(bench(config, threads, args.repeats, args.peer_python or None, args.device), flush=True)


if __name__ == "__main__":
    main()
