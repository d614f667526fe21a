"""Where does each character of a known transcript sit in a captcha?

    python examples/align_captcha.py IMAGE TEXT [-c runs/captcha/checkpoint.pt] [--star]

Runs the CRNN of a checkpoint written by ``train_captcha.py`` on IMAGE, then
aligns TEXT (the transcript you know, not necessarily what the model reads) to
the model's per-frame posteriors with :func:`ctcx.forced_align`, and prints
each character's span: CTC frames and the image's pixel columns. ``--star``
lets stretches the transcript does not account for go to a wildcard (printed
as ``*``) instead of pulling its characters off their places.
"""
from __future__ import annotations

import argparse

import torch

import ctcx
from ctcx.captcha import load_checkpoint, preprocess, to_model_input
from ctcx.captcha.folder import load_image


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("image")
    p.add_argument("text", help="the transcript to align")
    p.add_argument("-c", "--checkpoint", default="runs/captcha/checkpoint.pt")
    p.add_argument("--star", action="store_true", help="allow a wildcard in every gap of the transcript")
    args = p.parse_args(argv)

    model, config, _ = load_checkpoint(args.checkpoint, "cpu")
    image = load_image(args.image)
    pixels = preprocess(image, **config.preprocessing)  # uint8 (C, H, W) at the model's input size
    with torch.no_grad():
        log_probs = model.eval()(to_model_input(torch.tensor(pixels)[None])).float().log_softmax(-1)
    # (T, 1, C): class 0 is the blank, class i + 1 is config.charset[i]
    unknown = sorted(set(args.text) - set(config.charset))
    if unknown:
        p.error(f"characters {unknown} are not in the model's charset {config.charset!r}")
    targets = torch.tensor([[config.charset.index(c) + 1 for c in args.text]])
    labels, scores = ctcx.forced_align(log_probs, targets, star=args.star)
    columns_per_frame = image.size[0] / log_probs.shape[0]  # one frame covers this many pixel columns
    print(f"{args.image}: {len(args.text)} characters over {log_probs.shape[0]} frames, "
          f"path log-probability {scores.sum().item():.3f}")
    for span in ctcx.merge_tokens(labels, scores)[0]:
        char = "*" if span.token == log_probs.shape[-1] else config.charset[span.token - 1]
        cols = span.to_units(columns_per_frame)
        print(f"  {char}  frames {span.start:>3}-{span.end:<3} columns {cols.start:6.1f}-{cols.end:<6.1f} "
              f"mean probability {span.score:.3f}")


if __name__ == "__main__":
    main()
