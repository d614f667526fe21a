"""Forced alignment: ctcx.forced_align against torchaudio.functional.forced_align.

    python benchmarks/bench_align.py                                   # ctcx alone
    python benchmarks/bench_align.py --peer-python /path/to/venv-ta/bin/python

torchaudio's aligner needs torch 2.9 (torchaudio is in maintenance; ctcx needs
torch >= 2.11), so it runs in a virtualenv of its own, driven from here in a
subprocess on the very same inputs (saved to a temporary file):

    python3 -m venv venv-ta
    venv-ta/bin/pip install torch==2.9.1 torchaudio==2.9.1 --index-url https://download.pytorch.org/whl/cpu

torchaudio aligns one sample per call (batch size 1), so its time for a
batch is the sum over the samples, each timed at the same thread count as
ctcx. Printed per configuration (T frames, N samples, C classes, L labels):
median milliseconds per batch of each (ctcx also with the wildcard, star=True), the ratio, and how many samples got
the same path (where they differ, the better log-probability wins; a tie
means both are most probable paths, pytorch/audio#4221 being the known case
where torchaudio's is not).
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

DEFAULT_CONFIGS = [(40, 64, 37, 4), (500, 16, 32, 100), (2000, 8, 40, 300)]

# What the peer's interpreter runs: load the inputs, align each sample with
# torchaudio at the given thread count, print the median batch time and the paths.
PEER = r"""
import json, statistics, sys, time, torch, torchaudio.functional as AF
path, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
d = torch.load(path)
lp, targets, il, tl = d["log_probs"], d["targets"], d["il"], d["tl"]   # (N, T, C) batch first
def run():
    out = []
    for n in range(lp.shape[0]):
        labels, scores = AF.forced_align(lp[n:n + 1, :il[n]], targets[n:n + 1, :tl[n]], blank=0)
        out.append(labels[0])
    return out
run()
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); paths = run(); times.append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"ms": statistics.median(times), "torch": torch.__version__,
                  "paths": [p.tolist() for p in paths]}))
"""


def make_inputs(T: int, N: int, C: int, L: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    log_probs = (torch.randn(N, T, C, generator=g) * 2).log_softmax(-1)
    targets = torch.randint(1, C, (N, L), generator=g)
    return log_probs, targets, [T] * N, [L] * N


def path_score(lp: torch.Tensor, path: List[int]) -> float:
    return float(lp[torch.arange(len(path)), torch.tensor(path)].double().sum())


def bench(config: Tuple[int, int, int, int], threads: int, repeats: int, peer: str | None) -> str:
    T, N, C, L = config
    lp, targets, il, tl = make_inputs(T, N, C, L)
    torch.set_num_threads(threads)
    ours_ms = timed(lambda: ctcx.forced_align(lp, targets, il, tl, batch_first=True), repeats, "cpu")
    star_ms = timed(lambda: ctcx.forced_align(lp, targets, il, tl, batch_first=True, star=True), repeats, "cpu")
    labels, _ = ctcx.forced_align(lp, targets, il, tl, batch_first=True)
    line = f"{f'{T},{N},{C},{L}':>16} {threads:>3} {ours_ms:10.2f} {star_ms:10.2f}"
    if not peer:
        return line
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "inputs.pt"
        torch.save({"log_probs": lp, "targets": targets, "il": il, "tl": tl}, data)
        out = subprocess.run([peer, "-c", PEER, str(data), str(threads), str(repeats)], capture_output=True,
                             text=True, timeout=3600)
    if out.returncode != 0:
        return line + f"  peer failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    same = worse = 0
    for n, theirs in enumerate(result["paths"]):
        mine = labels[n, : il[n]].tolist()
        if mine == theirs:
            same += 1
        elif path_score(lp[n], theirs) < path_score(lp[n], mine) - 1e-6:
            worse += 1
    return (line + f" {result['ms']:12.2f} {result['ms'] / ours_ms:7.1f}x {same:>5}/{N}"
            f" {worse:>6}  (torchaudio on torch {result['torch']})")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="*", default=None, metavar="T,N,C,L")
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--peer-python", default="", help="the interpreter of a venv with torchaudio 2.9 (see above)")
    p.add_argument("--dry-run", action="store_true", help="one tiny configuration, one repeat")
    args = p.parse_args(argv)
    configs = [tuple(int(v) for v in c.split(",")) for c in args.configs] if args.configs else DEFAULT_CONFIGS
    if args.dry_run:
        configs, args.repeats, args.threads = [(20, 3, 6, 4)], 1, [1]
    print(f"device=cpu torch={torch.__version__} ctcx={ctcx.__version__} repeats={args.repeats} "
          f"peer={'torchaudio via ' + args.peer_python if args.peer_python else 'none'}")
    print(f"{'T,N,C,L':>16} {'thr':>3} {'ctcx ms':>10} {'star=True':>10}" + (f" {'peer ms':>12} {'speedup':>8} {'same':>8} "
                                                            f"{'peer worse':>6}" if args.peer_python else ""))
    for config in configs:
        for threads in args.threads:
            print(bench(config, threads, args.repeats, args.peer_python or None), flush=True)


if __name__ == "__main__":
    main()
