"""One small ctcx call per case, for compute-sanitizer to watch (tools/gpu_check.py).

    compute-sanitizer --tool racecheck python tools/sanitize_case.py loss
    compute-sanitizer --tool memcheck  python tools/sanitize_case.py beam
    python tools/sanitize_case.py loss --device cpu     # the same call on the CPU (dry run)

Cases (float32; every input is already on the device, so the only kernels
that run are ctcx's and a few of torch's for the inputs themselves):
- ``loss``: ``ctc_loss`` and ``ctc_loss_with_logits`` forward and backward on
  five samples of mixed input and target lengths, padded and concatenated
  targets, an infeasible sample with ``zero_infinity=True``, repeated labels,
  and a 250-label target that makes the recursion block 16 warps wide;
- ``beam``: ``beam_search`` with beam_width 300 over C = 700, whose step
  scratch (76 KiB, measured by the CUDA-on-CPU harness's ``beam-optin-shared``
  case) lives in opt-in shared memory above the default 48 KiB.
Each case then checks its result against the CPU op and exits 1 on a mismatch,
so a sanitizer run that finds nothing still proves the call computed the
right numbers.
"""
from __future__ import annotations

import argparse
import sys

import torch

import ctcx


def loss_case(device: str) -> list:
    g = torch.Generator().manual_seed(0)
    T, N, C, S = 510, 5, 40, 250
    x = torch.randn(T, N, C, generator=g, dtype=torch.float64)
    targets = torch.randint(1, C, (N, S), generator=g)
    targets[1, 1:6] = targets[1, 0]  # repeated labels need a blank between them
    il = torch.tensor([T, 37, T - 3, 4, 500])
    tl = torch.tensor([S, 12, 0, 9, 240])  # sample 3: 9 labels in 4 frames, infeasible
    flat = torch.cat([targets[i, : tl[i]] for i in range(N)])
    results = []
    for dev in (device, "cpu"):
        out = []
        for fn, make in ((ctcx.ctc_loss, lambda v: v.log_softmax(-1)), (ctcx.ctc_loss_with_logits, lambda v: v)):
            for tgt in (targets, flat):
                leaf = x.float().to(dev).requires_grad_()
                loss = fn(make(leaf), tgt.to(dev), il.to(dev), tl.to(dev), reduction="sum", zero_infinity=True)
                loss.backward()
                out += [loss.detach().cpu().double(), leaf.grad.cpu().double()]
        results.append(out)
    return results


def beam_case(device: str) -> list:
    g = torch.Generator().manual_seed(17)
    log_probs = (torch.randn(3, 1, 700, generator=g) * 1.5).log_softmax(-1)
    results = []
    for dev in (device, "cpu"):
        r = ctcx.beam_search(log_probs.to(dev), beam_width=300, top_k=8)
        results.append([r.tokens.cpu(), r.lengths.cpu(), r.scores.cpu().double()])
    return results


def align_case(device: str) -> list:
    g = torch.Generator().manual_seed(21)
    T, N, C, S = 700, 4, 30, 300  # 601 states: three rounds of the block's 256 threads
    log_probs = torch.randn(T, N, C, generator=g).log_softmax(-1)
    targets = torch.randint(1, C, (N, S), generator=g)
    il, tl = torch.tensor([T, 650, 10, 0]), torch.tensor([S, 200, 9, 0])
    results = []
    for dev in (device, "cpu"):
        labels, scores = ctcx.forced_align(log_probs.to(dev), targets.to(dev), il, tl, allow_impossible=True)
        results.append([labels.cpu(), scores.cpu().double()])
    return results


CASES = {"loss": loss_case, "beam": beam_case, "align": align_case}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args(argv)
    if args.device == "cuda" and not (torch.cuda.is_available() and ctcx.cuda_available()):
        print("sanitize_case: --device cuda needs a GPU and ctcx built with its CUDA kernels", file=sys.stderr)
        return 2
    ours, cpu = CASES[args.case](args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
    for i, (a, b) in enumerate(zip(ours, cpu)):
        if a.is_floating_point():
            ok = torch.allclose(a, b, rtol=1e-4, atol=1e-4, equal_nan=True)
        else:
            ok = torch.equal(a, b)
        if not ok:
            print(f"sanitize_case {args.case}: output {i} differs from the CPU op", file=sys.stderr)
            return 1
    print(f"sanitize_case {args.case} on {args.device}: {len(ours)} outputs agree with the CPU op")
    return 0


if __name__ == "__main__":
    sys.exit(main())
