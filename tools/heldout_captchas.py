"""Draw labelled captchas with generators ctcx never trains on (held-out test styles).

The general reader (issue 30) is trained only on the ``captcha`` library and
ctcx's own renderer (:mod:`ctcx.captcha.synth`); these two generators from the
package index are for measuring it on styles it never saw:

- ``claptcha`` (0.3.3): one font per image (GNU FreeFont's FreeSerif, shipped
  inside multicolorcaptcha's package, a font ctcx does not train on), 200x80,
  a warped line across, white noise 0.3;
- ``multicolorcaptcha`` (1.2.0): four 64x64 tiles side by side, each character
  in a random one of its ~40 bundled display fonts, random colours and
  rotation, one line and ten circles (its difficulty 1), 256x144 with the
  tiles in a band across the middle and the rest black, as the generator draws
  it (opaque RGBA; any transparency would be composited on white).

Labels are 4 characters of 0-9A-Z. Files are ``LABEL_INDEX.png`` (the layout
the trainer's ``--data-dir`` and ``eval`` read), each written atomically. The
same ``--seed`` gives the same images. Splits: use different seeds, e.g.
``--seed 1`` for 1,000 fine-tuning images and ``--seed 2`` for 1,000 test
images.

Run in its own virtualenv (these packages are not ctcx's dependencies):
    python -m venv venv-heldout
    venv-heldout/bin/pip install -r tools/requirements-heldout.txt
    venv-heldout/bin/python tools/heldout_captchas.py runs/heldout/claptcha/test --generator claptcha \\
        --count 1000 --seed 2
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GENERATORS = ("claptcha", "multicolorcaptcha")


def _freefont(name: str) -> str:
    import multicolorcaptcha

    path = Path(multicolorcaptcha.__file__).parent / "fonts" / "freefont-20120503" / name
    if not path.is_file():
        sys.exit(f"heldout_captchas: {path} is missing (multicolorcaptcha==1.2.0 ships it)")
    return str(path)


def _claptcha(rng: random.Random):
    from claptcha import Claptcha
    from PIL import ImageFont

    if not hasattr(ImageFont.FreeTypeFont, "getsize"):
        # claptcha 0.3.3 measures text with getsize, which Pillow 10 removed; old getsize was
        # the bounding box's right and bottom edges
        ImageFont.FreeTypeFont.getsize = lambda font, text: font.getbbox(text)[2:]
    font = _freefont("FreeSerif.ttf")

    def draw():
        label = "".join(rng.choice(CHARSET) for _ in range(4))
        return Claptcha(label, font, size=(200, 80), margin=(20, 20), noise=0.3).image[1], label

    return draw


def _multicolor(rng: random.Random):
    from multicolorcaptcha import CaptchaGenerator

    generator = CaptchaGenerator(0)

    def draw():
        captcha = generator.gen_captcha_image(difficult_level=1, chars_mode="ascii", multicolor=False)
        return captcha.image, captcha.characters

    return draw


def _save(image, path: Path) -> None:
    from PIL import Image

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
    os.close(fd)
    try:
        if image.mode in ("RGBA", "LA", "P"):  # transparent parts as a white page shows them
            image = image.convert("RGBA")
            page = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(page, image)
        image.convert("RGB").save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write LABEL_INDEX.png files into")
    parser.add_argument("--generator", choices=GENERATORS, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be >= 1")
    # both generators draw from the global random module: seeding it makes them reproducible
    random.seed(f"{args.generator}/{args.seed}")
    rng = random.Random(f"{args.generator}/{args.seed}/labels")
    draw = _claptcha(rng) if args.generator == "claptcha" else _multicolor(rng)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.count):
        image, label = draw()
        if len(label) != 4 or any(c not in CHARSET for c in label):
            sys.exit(f"heldout_captchas: {args.generator} gave the label {label!r}, not 4 of {CHARSET}")
        _save(image, args.out / f"{label}_{i}.png")
    print(f"wrote {args.count} {args.generator} captchas to {args.out}")


if __name__ == "__main__":
    main()
