"""Train a CRNN captcha reader with ctcx's CTC loss; evaluate, predict, export.

    python examples/train_captcha.py                        # train on drawn 0-9A-Z x4 (CPU default)
    python examples/train_captcha.py --resume               # continue an interrupted run
    python examples/train_captcha.py eval DIR...            # score runs/captcha/checkpoint.pt on folders
    python examples/train_captcha.py predict PATH...        # read images (labels + per-character probabilities)
    python examples/train_captcha.py export -o crnn.onnx    # ONNX, checked against onnxruntime
    python examples/train_captcha.py generate DIR --count N # draw a labelled folder
    torchrun --nproc_per_node=2 examples/train_captcha.py   # DistributedDataParallel
    python examples/train_captcha.py COMMAND --help         # every option

The trainer itself lives in ctcx.captcha (importable and tested); this file is its front door.
"""
import sys

from ctcx.captcha.cli import main

if __name__ == "__main__":
    sys.exit(main())
