"""Strip a finished training checkpoint down to what reading and fine-tuning need,
write it to ctcx/captcha/weights/NAME.pt and print its sha256 for
PRETRAINED in ctcx/captcha/pretrained.py.

Kept: config, charset, step, the weights (``state_dict``: the moving average
a run evaluates), calibration, final metrics, and where it came from
(``init``). Dropped: optimizer, scheduler, RNG and stream states, the raw
training weights and the history (a shipped reader cannot be resumed).

    python tools/ship_pretrained.py runs/general/checkpoint.pt general
"""
import argparse
import hashlib
from pathlib import Path

from ctcx.captcha.checkpoint import read_checkpoint, save_checkpoint

KEEP = ("config", "charset", "step", "complete", "state_dict", "calibration", "metrics", "init", "elapsed")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a finished run's checkpoint.pt")
    parser.add_argument("name", help="the reader's name, e.g. general")
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parent.parent / "ctcx" / "captcha"
                        / "weights", help="where shipped readers live (default: ctcx/captcha/weights)")
    args = parser.parse_args(argv)
    saved = read_checkpoint(args.checkpoint)
    if not saved.get("complete"):
        parser.error(f"{args.checkpoint} is not a finished run (complete is False)")
    out = args.folder / f"{args.name}.pt"
    kept = {k: saved[k] for k in KEEP if k in saved}
    kept["config"] = dict(kept["config"], out_dir=f"runs/{args.name}")  # not the trainer machine's own path
    save_checkpoint(out, kept)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"wrote {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out} "
          f"({out.stat().st_size / 1e6:.2f} MB)")
    print(f'PRETRAINED["{args.name}"] = {{"file": "{args.name}.pt", "sha256": "{digest}"}}')


if __name__ == "__main__":
    main()
