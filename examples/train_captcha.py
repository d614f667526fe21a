"""Train a CRNN captcha reader with ctcx.CTCLoss, or score a checkpoint on a folder.

    python examples/train_captcha.py                    # train (about 12 min on 2 CPU cores)
    python examples/train_captcha.py --eval-dir DIR     # score runs/captcha/crnn.pt on DIR
    python examples/train_captcha.py --help             # every option

The trainer itself lives in ctcx.captcha (importable and tested); this file is its front door.
"""
import sys

from ctcx.captcha.cli import main

if __name__ == "__main__":
    sys.exit(main())
