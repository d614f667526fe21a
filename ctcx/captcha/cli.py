"""Command line of the captcha trainer: flags map onto :class:`TrainConfig`.

    python examples/train_captcha.py                      # train, evaluate, save
    python examples/train_captcha.py --eval-dir DIR       # score a checkpoint on LABEL_*.png files
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from .config import TrainConfig
from .data import load_folder
from .train import DECODERS, evaluate, load_checkpoint, resolve_device, train

__all__ = ["build_parser", "config_from_args", "main"]

_DEFAULTS = TrainConfig()


def _channels(text: str) -> tuple:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints such as 16,48,96,128, got {text!r}")


def _option(group, flag: str, help: str, **kwargs) -> None:
    """Add ``flag`` to ``group``; options with a value show their default in --help."""
    if kwargs.get("action") != "store_true" and kwargs.get("default") is not None:
        help += " (default: %(default)s)"
    group.add_argument(flag, help=help, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser; every option's default comes from :class:`TrainConfig`."""
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog="train_captcha.py",
        description="Train a CRNN (conv stack, bidirectional GRU, linear) with ctcx.CTCLoss on captchas "
                    "drawn on the fly by captcha.image.ImageCaptcha, evaluate it on held-out drawn "
                    "captchas, save a self-describing checkpoint and print its exact-match accuracy. "
                    "With --eval-dir, score an existing checkpoint on a folder of images instead.",
    )
    run = p.add_argument_group("what to do")
    _option(run, "--eval-dir", metavar="DIR",
            help="do not train: score --checkpoint on the images in DIR, named LABEL_anything.png "
                 "(label = file name before the last underscore); prints exact-match accuracy and "
                 "character error rate")
    _option(run, "--decode", default="greedy", choices=DECODERS + ("all",),
            help="how --eval-dir reads labels: greedy best path, prefix beam search, beam search "
                 "constrained to --label-length characters (the checkpoint's), or all three")
    _option(run, "--beam-width", type=int, default=10, help="beams kept per frame by beam decoding")
    _option(run, "--checkpoint", default=d.checkpoint, metavar="PATH",
            help="checkpoint that training writes and --eval-dir reads")
    _option(run, "--overwrite", action="store_true",
            help="let training replace an existing --checkpoint (otherwise it refuses to start)")
    _option(run, "--device", default=d.device, choices=("auto", "cpu", "cuda"),
            help="auto = CUDA when available, else CPU")
    _option(run, "--threads", type=int, default=d.threads,
            help="torch CPU threads for training, 0 = torch's default")
    _option(run, "--no-progress", action="store_true", help="hide the progress bars")

    data = p.add_argument_group("data (training)")
    _option(data, "--charset", default=d.charset, help="characters the labels are drawn from")
    _option(data, "--label-length", type=int, default=d.label_length, help="characters per captcha")
    _option(data, "--image-width", type=int, default=d.image_width, help="drawn image width, pixels")
    _option(data, "--image-height", type=int, default=d.image_height, help="drawn image height, pixels")
    _option(data, "--input-height", type=int, default=d.input_height,
            help="model input height after grayscale + resize, pixels, a multiple of 16")
    _option(data, "--input-width", type=int, default=d.input_width,
            help="model input width, pixels, a multiple of 4 (one CTC frame per 4 columns)")
    _option(data, "--pool-size", type=int, default=d.pool_size,
            help="drawn images kept in memory and sampled into batches")
    _option(data, "--fresh-per-step", type=int, default=d.fresh_per_step,
            help="at most this many freshly drawn images replace the oldest in the pool per step")
    _option(data, "--workers", type=int, default=d.workers, help="processes drawing captchas")
    _option(data, "--eval-size", type=int, default=d.eval_size,
            help="held-out drawn captchas (never trained on) scored at the end")
    _option(data, "--eval-every", type=int, default=d.eval_every,
            help="also score the held-out set every this many steps, 0 = only at the end")
    _option(data, "--seed", type=int, default=d.seed,
            help="seeds weights, batch sampling and labels (captcha 0.7.1 draws images from the "
                 "secrets module, so images are never reproducible)")

    model = p.add_argument_group("model and optimisation (training)")
    _option(model, "--conv-channels", type=_channels, default=",".join(map(str, d.conv_channels)),
            metavar="C1,C2,C3,C4", help="output channels of the four conv blocks")
    _option(model, "--rnn-hidden", type=int, default=d.rnn_hidden,
            help="bidirectional GRU hidden size per direction")
    _option(model, "--steps", type=int, default=d.steps, help="optimizer steps")
    _option(model, "--batch-size", type=int, default=d.batch_size, help="images per step")
    _option(model, "--lr", type=float, default=d.lr, help="peak learning rate of the one-cycle schedule")
    _option(model, "--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that parsed flags describe.

    Raises:
        ValueError: if a value is out of range (from TrainConfig).
    """
    names = ("charset", "label_length", "image_width", "image_height", "input_height", "input_width",
             "conv_channels", "rnn_hidden", "steps", "batch_size", "lr", "weight_decay", "pool_size",
             "fresh_per_step", "workers", "eval_size", "eval_every", "seed", "device", "threads",
             "checkpoint")
    return TrainConfig(**{name: getattr(args, name) for name in names})


def _evaluate_dir(args: argparse.Namespace) -> None:
    model, config, _ = load_checkpoint(args.checkpoint, resolve_device(args.device))
    images, labels, paths = load_folder(args.eval_dir, config.input_height, config.input_width)
    outside = [(label, path) for label, path in zip(labels, paths) if set(label) - set(config.charset)]
    if outside:
        label, path = outside[0]
        print(f"warning: {len(outside)} of {len(labels)} labels have characters outside the checkpoint's "
              f"charset {config.charset!r} (first: {label!r} in {path.name}); they count as errors",
              file=sys.stderr)
    for decoder in DECODERS if args.decode == "all" else (args.decode,):
        result = evaluate(model, images, labels, config.charset, decoder=decoder,
                          beam_width=args.beam_width, label_length=config.label_length)
        how = {"greedy": "greedy", "beam": f"beam search (beam {args.beam_width})",
               "constrained": f"beam search, length {config.label_length} (beam {args.beam_width})"}[decoder]
        print(f"{args.eval_dir}: {result.count} images, {how}: exact-match accuracy "
              f"{result.accuracy:.2%}, character error rate {result.cer:.2%}")


def _train(args: argparse.Namespace) -> None:
    config = config_from_args(args)
    result = train(config, overwrite=args.overwrite, progress=not args.no_progress)
    minutes, seconds = divmod(round(result.seconds), 60)
    if result.evaluation.count:
        print(f"held-out accuracy on {result.evaluation.count} drawn captchas: "
              f"{result.evaluation.accuracy:.2%} exact match, character error rate {result.evaluation.cer:.2%}")
    else:
        print("no held-out evaluation (--eval-size 0)")
    print(f"checkpoint: {result.checkpoint} ({minutes} min {seconds} s)")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Bad input (missing or empty folder, unreadable checkpoint, out-of-range
    flag, existing checkpoint without --overwrite) prints one error line and
    returns 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.eval_dir is not None:
            _evaluate_dir(args)
        else:
            _train(args)
    except (FileNotFoundError, NotADirectoryError, FileExistsError, ValueError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted after {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return 130
    return 0
