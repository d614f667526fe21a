"""Where a captcha training step's time goes, against what this machine can do, in one process.

    python benchmarks/bench_train.py                    # CPU, every part below (a few minutes)
    python benchmarks/bench_train.py --quick            # fewer repeats, no torch.compile
    python benchmarks/bench_train.py --device cuda      # the same on a GPU

Parts (the thread count is torch's unless --threads is given; every figure
is the median of --repeats timed runs after warm-up):

(a) peaks: a large ``torch.mm`` (2048 x 2048 x 2048) in float32 and bfloat16,
    and a channels-last 3x3 convolution (64 x 96 x 12 x 40 -> 128 channels,
    the shape of the tiny CRNN's busiest layer, bf16 under autocast),
    forward + backward, in GFLOP/s;
(b) the model's step alone, a fixed batch of 160x48 images, forward +
    ctc_loss_with_logits + backward + AdamW step: every preset, the old
    default architecture (GRU head, classic blocks: ``--head gru
    --no-pool-first``) beside the new one, float32 and bf16 autocast, eager and
    (unless --quick or --no-compile) ``torch.compile``d; FLOPs counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward), and
    achieved GFLOP/s as a fraction of (a)'s peak of the same dtype;
(c) the full training step with data: the trainer's default configuration
    (drawn captchas, pool, fresh captchas drawn by worker processes each step,
    EMA, clipping, the schedule), milliseconds per step and the time spent
    waiting for data, for the old default and the new one (each pool cut to
    4000 captchas: its drawing rate is timed, and scaled to the run's pool);
(d) a ``torch.profiler`` table of the old and new default's step by category: conv
    (forward and backward), normalisation / activation / pooling, sequence
    head and classifier (GRU, 1-D convs, matmuls), the CTC loss, the
    optimizer and the moving average, data, and the rest.

Results go in BENCHMARKS.md with the date, commit and ``lscpu`` model name.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

import ctcx
from ctcx.captcha.config import TrainConfig
from ctcx.captcha.model import PRESETS, build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script, also under PYTHONSAFEPATH
from bench_ctc_loss import timed  # noqa: E402  (median ms after two warm-up calls; CUDA events on a GPU)

ROOT = Path(__file__).resolve().parent.parent
OLD_DEFAULT = dict(conv_channels=(16, 48, 96, 128), head="gru", pool_first=False, rnn_hidden=96, rnn_layers=1)
"""The architecture of the default run up to commit 87f6206 (the tiny preset then)."""
OLD_RUN = dict(OLD_DEFAULT, pool_size=40000, fresh_per_step=24)
"""The old default run's data pipeline (its preprocessing is the new default's: 160x48)."""


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


# ---- (a) peaks ----------------------------------------------------------------------------------

def peaks(device: str, repeats: int) -> Dict[str, float]:
    """GFLOP/s of a large mm in float32 and bf16, and of the busiest conv's forward + backward in bf16."""
    out = {}
    n = 2048
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds = timed(lambda: torch.mm(a, b), repeats, device) / 1e3
        out[f"mm {str(dtype).split('.')[1]}"] = 2 * n ** 3 / seconds / 1e9
    conv = torch.nn.Conv2d(96, 128, 3, padding=1, bias=False).to(device).to(memory_format=torch.channels_last)
    x = torch.randn(64, 96, 12, 40, device=device).contiguous(memory_format=torch.channels_last).requires_grad_()

    def step():
        with torch.autocast(device, dtype=torch.bfloat16):
            y = conv(x)
        y.backward(torch.ones_like(y))
    flops = 2 * 64 * 12 * 40 * 128 * 96 * 9 * 3  # forward, input gradient, weight gradient
    out["conv bf16 fwd+bwd"] = flops / (timed(step, repeats, device) / 1e3) / 1e9
    return out


# ---- (b) the model's step alone -----------------------------------------------------------------

def model_step(config: TrainConfig, device: str, dtype: Optional[torch.dtype], compiled: bool):
    """A closure running one forward + loss + backward + AdamW step on a fixed batch, and its FLOPs."""
    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    net = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n = config.batch_size
    images = torch.rand(n, 1, config.input_height, 160, device=device).contiguous(memory_format=torch.channels_last)
    targets = torch.randint(1, config.num_classes, (n, 4), device=device)
    frames = torch.full((n,), 40, dtype=torch.long, device=device)
    lengths = torch.full((n,), 4, dtype=torch.long, device=device)

    def forward_backward():
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = net(images)
        loss = ctcx.ctc_loss_with_logits(logits, targets, frames, lengths, zero_infinity=True)
        loss.backward()

    def step():
        optimizer.zero_grad(set_to_none=True)
        forward_backward()
        optimizer.step()

    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    probe = copy.deepcopy(model)
    with counter:
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = probe(images)
        logits.float().sum().backward()
    return step, counter.get_total_flops()


def architectures() -> Dict[str, dict]:
    out = {"old default (tiny, GRU head, classic blocks)": dict(preset="tiny", **OLD_DEFAULT)}
    for preset in PRESETS:
        out[f"{preset}" + (" (the new default)" if preset == TrainConfig().preset else "")] = dict(preset=preset)
    return out


# ---- (c) the full step with data ----------------------------------------------------------------

def full_steps(overrides: dict, steps: int, device: str) -> Dict[str, float]:
    """Steps per second of the trainer's own loop (``ctcx.captcha.train``), pool drawing timed apart,
    and the seconds spent waiting for batches."""
    import tempfile

    from ctcx.captcha.train import train as run_training
    from ctcx.captcha.stream import BatchStream

    waits = {"next": 0.0, "fill": 0.0}
    real_next, real_fill = BatchStream.next, BatchStream.fill

    def next_timed(self):
        start = time.perf_counter()
        try:
            return real_next(self)
        finally:
            waits["next"] += time.perf_counter() - start

    def fill_timed(self, progress=None):
        start = time.perf_counter()
        try:
            return real_fill(self, progress)
        finally:
            waits["fill"] += time.perf_counter() - start

    marks: List[float] = []
    BatchStream.next, BatchStream.fill = next_timed, fill_timed
    try:
        with tempfile.TemporaryDirectory() as out:
            values = dict(steps=steps, eval_size=0, eval_every=0, save_every=0, log_every=10 ** 9,
                          device=device, out_dir=out, amp="bf16")
            values.update(overrides)
            config = TrainConfig(**values)
            start = time.perf_counter()
            run_training(config, progress=False, log=lambda _: None,
                         on_step=lambda step: marks.append(time.perf_counter()))
            total = time.perf_counter() - start
    finally:
        BatchStream.next, BatchStream.fill = real_next, real_fill
    # steady state: the second half of the steps (the first pay for warm-up and worker start)
    half = len(marks) // 2
    per_step = (marks[-1] - marks[half]) / (len(marks) - 1 - half)
    return dict(per_step=per_step, fill=waits["fill"], data=(waits["next"]) / len(marks), total=total)


# ---- (d) profile --------------------------------------------------------------------------------

CATEGORIES = (
    ("conv", ("convolution", "conv2d", "mkldnn_conv")),
    ("norm / act / pool", ("batch_norm", "relu", "threshold", "max_pool", "clamp")),
    ("head + classifier", ("gru", "rnn", "conv1d", "mm", "addmm", "linear", "tanh", "sigmoid", "bmm")),
    ("CTC loss", ("ctcx::", "ctc_loss", "log_softmax")),
    ("optimizer + EMA", ("optimizer", "adamw", "_foreach", "lerp", "clip_grad", "norm")),
)


def profile_step(config: TrainConfig, device: str, repeats: int) -> List[tuple]:
    """Self CPU time per category of ``repeats`` model steps (bf16), seconds per step."""
    from torch.profiler import ProfilerActivity, profile

    step, _ = model_step(config, device, torch.bfloat16, False)
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(repeats):
            step()
    totals: Dict[str, float] = {}
    for event in prof.key_averages(group_by_input_shape=True):
        name = event.key.lower()
        kind = next((k for k, words in CATEGORIES if any(w in name for w in words)), "other")
        shape = event.input_shapes[0] if event.input_shapes else []
        if kind == "conv" and (len(shape) == 3 or (len(shape) == 4 and shape[2] == 1)):
            kind = "head + classifier"  # a 1-D conv over the frames: (N, C, T), or (N, C, 1, T) inside oneDNN
        totals[kind] = totals.get(kind, 0.0) + event.self_cpu_time_total / 1e6 / repeats
    return sorted(totals.items(), key=lambda kv: -kv[1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per figure (default 8; 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps, no torch.compile")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--steps", type=int, default=0,
                        help="steps of each full training run in (c) (default 300; 60 with --quick)")
    parser.add_argument("--parts", default="", help="which parts to run, e.g. 'ab' (default: abcd on the CPU, "
                                                     "abc on CUDA: the profile's categories are CPU time)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    args.parts = args.parts or ("abc" if args.device == "cuda" else "abcd")
    if args.dry_run:
        print(f"bench_train plan: device {args.device}, parts {args.parts}, repeats "
              f"{args.repeats or (3 if args.quick else 8)}, steps {args.steps or (60 if args.quick else 300)}, "
              f"torch.compile {'no' if args.quick or args.no_compile else 'yes'}; models: {', '.join(architectures())}")
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 8)
    steps = args.steps or (60 if args.quick else 300)
    device = args.device
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip() or "unknown"
    where = torch.cuda.get_device_name() if device == "cuda" else cpu_model()
    print(f"# bench_train: {where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"ctcx {ctcx.__version__} at {commit}, {time.strftime('%Y-%m-%d')}", flush=True)

    peak = {}
    if "a" in args.parts or "b" in args.parts:
        peak = peaks(device, repeats)
        print("\n(a) peaks, GFLOP/s")
        for name, value in peak.items():
            print(f"  {name:<22} {value:8.1f}")

    if "b" in args.parts:
        print(f"\n(b) model step alone: batch {TrainConfig().batch_size} of 160x48, forward + loss + backward + "
              f"AdamW; ms per step, GFLOP per step (fwd + bwd), achieved GFLOP/s, % of the mm peak of that dtype")
        print(f"  {'model':<46} {'params':>9} {'mode':<14} {'ms':>8} {'GFLOP':>7} {'GFLOP/s':>8} {'% peak':>7}")
        compile_modes = [False] if args.quick or args.no_compile else [False, True]
        for name, overrides in architectures().items():
            config = TrainConfig(**overrides)
            params = sum(p.numel() for p in build_model(config).parameters())
            for dtype in (None, torch.bfloat16):
                for compiled in compile_modes:
                    mode = ("bf16" if dtype else "fp32") + (" compiled" if compiled else " eager")
                    try:
                        step, flops = model_step(config, device, dtype, compiled)
                        if compiled:
                            step()  # one warm-up more: the first calls compile
                        seconds = timed(step, repeats, device) / 1e3
                    except Exception as err:  # torch.compile may be unavailable (no compiler): say so
                        print(f"  {name:<46} {params:>9,} {mode:<14} failed: {type(err).__name__}: "
                              f"{str(err).splitlines()[0][:80]}")
                        continue
                    rate = flops / seconds / 1e9
                    ref = peak.get("mm bfloat16" if dtype else "mm float32", float("nan"))
                    print(f"  {name:<46} {params:>9,} {mode:<14} {seconds * 1e3:8.1f} {flops / 1e9:7.2f} "
                          f"{rate:8.1f} {100 * rate / ref:6.1f}%", flush=True)

    if "c" in args.parts:
        print(f"\n(c) the trainer's own loop with data, bf16, {steps} steps (steady state: the second half): "
              f"ms per step, ms per step waiting for data, pool drawing seconds")
        for name, overrides in (("old default (87f6206's run)", OLD_RUN), ("new default", {})):
            config = TrainConfig(**overrides)
            pool = min(config.pool_size, 4000)  # the pool's drawing rate, not its full size, is what's timed
            result = full_steps(dict(overrides, pool_size=pool), steps, device)
            print(f"  {name:<30} {result['per_step'] * 1e3:8.1f} ms/step  data wait {result['data'] * 1e3:6.1f} ms  "
                  f"pool of {pool}: {result['fill']:5.1f} s ({result['fill'] / pool * 1e3:.2f} ms per captcha; "
                  f"the run's pool of {config.pool_size} ~ {result['fill'] / pool * config.pool_size:.0f} s)",
                  flush=True)

    if "d" in args.parts:
        print("\n(d) profile of the model step (bf16, self CPU time by category, ms per step)")
        for name, overrides in (("old default", OLD_DEFAULT), ("new default", {})):
            rows = profile_step(TrainConfig(**overrides), device, repeats)
            total = sum(v for _, v in rows)
            print(f"  {name}:")
            for kind, value in rows:
                print(f"    {kind:<20} {value * 1e3:8.1f}  {100 * value / total:5.1f}%")
            print(f"    {'total':<20} {total * 1e3:8.1f}   (data wait: see (c))")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
