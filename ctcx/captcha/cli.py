"""Command line of the captcha trainer (``examples/train_captcha.py``).

    train_captcha.py [train] [options]          train (the default command); --resume continues a run
    train_captcha.py eval DIR... -c CKPT        score a checkpoint on labelled folders
    train_captcha.py predict PATH... -c CKPT    read image files or folders
    train_captcha.py export -c CKPT -o M.onnx   ONNX export, checked against onnxruntime
    train_captcha.py generate DIR --count N     draw a labelled folder of captchas
    train_captcha.py calibrate DIR... -c CKPT   fit the confidences' temperature on labelled folders
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import List, Optional

from .config import DECODERS, STYLES, TrainConfig
from .curves import can_plot
from .labels import CHARSETS, parse_length_range

__all__ = ["COMMANDS", "build_parser", "config_from_args", "main"]

COMMANDS = ("train", "eval", "predict", "export", "generate", "calibrate")
_DEFAULTS = TrainConfig()
_DEFAULT_CHECKPOINT = str(Path(_DEFAULTS.out_dir) / "checkpoint.pt")


def _channels(text: str) -> tuple:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints such as 16,48,96,128, got {text!r}")


def _length(text: str) -> tuple:
    try:
        return parse_length_range(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err))


def _size(text: str) -> tuple:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        if width > 0 and height > 0:
            return width, height
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels such as 160x60, got {text!r}")


def _option(group, *flags: str, help: str, **kwargs) -> None:
    """Add an option; options with a value show their default in --help."""
    if kwargs.get("action") not in ("store_true", "append") and kwargs.get("default") not in (None, ""):
        help += " (default: %(default)s)"
    group.add_argument(*flags, help=help, **kwargs)


def _bad_images_option(group, default: str = "skip") -> None:
    _option(group, "--bad-images", default=default, choices=("skip", "error"),
            help="images that cannot be read (empty, cut short, not an image, too many pixels): skip them "
                 "and list them at the start (skip), or stop with their name (error)")


def _temperature(text: str) -> float:
    from .calibration import check_temperature

    try:
        return check_temperature(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 such as 1.5, got {text!r}")


def _temperature_option(group) -> None:
    _option(group, "--temperature", type=_temperature, default=None, metavar="T",
            help="compute confidences with this temperature instead of the checkpoint's (see calibrate)")


def _decode_options(group) -> None:
    _option(group, "--decode", default="greedy", choices=DECODERS + ("all",),
            help="greedy best path, prefix beam search, beam search constrained to the label lengths "
                 "seen in training, or all three")
    _option(group, "--beam-width", type=int, default=_DEFAULTS.beam_width, help="beams kept per frame")


def _reading_options(group) -> None:
    _option(group, "--read-as", default="", metavar="CHARSET",
            help="read with only these characters (a preset such as 0-9A-Z, or the characters): a model's "
                 "other classes are merged into their other case where that is listed, else dropped "
                 "(ctcx.captcha.evaluate.fold_charset); default: the checkpoint's charset")
    _option(group, "--length", type=_length, default=None,
            help="label lengths for the constrained decoder, N or MIN-MAX (default: the checkpoint's)")
    _option(group, "--crop-margins", action=argparse.BooleanOptionalAction, default=None,
            help="cut plain margins around the picture before resizing, or not (default: as the checkpoint "
                 "was trained)")


def _draw_options(group) -> None:
    d = _DEFAULTS
    _option(group, "--charset", default="",
            help=f"a preset ({', '.join(CHARSETS)}) or the characters themselves; default 0-9A-Z for "
                 f"drawn captchas, inferred from the training labels for --data-dir")
    _option(group, "--length", type=_length, default=f"{d.min_length}",
            help="characters per drawn captcha: N or MIN-MAX such as 4-6")
    _option(group, "--image-size", type=_size, default=f"{d.image_width}x{d.image_height}",
            help="size of the drawn captchas, WIDTHxHEIGHT pixels")
    _option(group, "--style", default=d.style, choices=STYLES,
            help="captcha: the captcha library's style; general: a new style every image (ctcx's own "
                 "renderer and the captcha library with every font found, many sizes; see "
                 "ctcx.captcha.synth), for pretraining a reader of styles it never saw")
    _option(group, "--font", dest="fonts", action="append", default=[], metavar="TTF",
            help="a TrueType font to draw with (repeat for several; default: the captcha library's)")
    _option(group, "--font-size", dest="font_sizes", action="append", type=int, default=[], metavar="PT",
            help="a font size to draw with (repeat for several; default: the captcha library's)")
    _option(group, "--seed", type=int, default=d.seed,
            help="seeds weights, batch order, split and the drawn captchas (labels and images)")


def _train_parser(p: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    run = p.add_argument_group("run")
    _option(run, "--out", dest="out_dir", default=d.out_dir, metavar="DIR",
            help="where checkpoint.pt, log.csv and curves.png go")
    _option(run, "--resume", action="store_true",
            help="continue the run in --out from its checkpoint (all other settings come from it, "
                 "except --device, --threads and --workers)")
    _option(run, "--overwrite", action="store_true", help="start afresh even if --out holds a checkpoint")
    _option(run, "--device", default=d.device, choices=("auto", "cpu", "cuda"),
            help="auto = CUDA when available, else CPU")
    _option(run, "--threads", type=int, default=d.threads, help="torch CPU threads, 0 = torch's default")
    _option(run, "--no-progress", action="store_true", help="hide the progress bars")

    data = p.add_argument_group("data")
    _draw_options(data)
    _option(data, "--data-dir", default="", metavar="DIR",
            help="train on this folder (LABEL_anything.ext, LABEL.ext or labels.tsv/txt) instead of drawing")
    _option(data, "--val-dir", default="", metavar="DIR",
            help="validation folder for --data-dir (default: a seeded --val-split of --data-dir)")
    _option(data, "--val-split", type=float, default=d.val_split,
            help="fraction of --data-dir held out for validation when there is no --val-dir")
    _bad_images_option(data, d.bad_images)
    _option(data, "--augment", action="store_true",
            help="distort training images when they are drawn or read (small affine, blur, noise); "
                 "off by default")
    _option(data, "--oversample", default=d.oversample, metavar="CHARS:FACTOR[,...]",
            help="drawn training data: draw these characters FACTOR times as often as the others (groups "
                 "count when all their characters are in the charset; validation stays uniform); '' = uniform")
    _option(data, "--jitter", type=float, default=d.jitter,
            help="strength of the random affine map given to every training image at every step "
                 "(rotation, slant, scale, shift); 0 = off")
    _option(data, "--input-height", type=int, default=None,
            help=f"model input height in pixels, a multiple of 16 (default: {d.input_height}, or "
                 f"--init-from's)")
    _option(data, "--input-width", type=int, default=None,
            help=f"model input width in pixels (multiple of 4); 0 keeps each image's aspect ratio, times "
                 f"--width-scale (default: {d.input_width}, or --init-from's)")
    _option(data, "--width-scale", type=float, default=None,
            help=f"with --input-width 0: stretch images this much horizontally after scaling them to "
                 f"--input-height (1.25 keeps the 160 columns of a 160x60 captcha at height 48) (default: "
                 f"{d.width_scale}, or --init-from's)")
    _option(data, "--rgb", dest="channels", action="store_const", const=3, default=None,
            help="feed RGB instead of grayscale (default: grayscale, or --init-from's)")
    _option(data, "--crop-margins", action=argparse.BooleanOptionalAction, default=None,
            help="cut plain margins around the picture before resizing (captchas drawn in a band of a "
                 "larger canvas) (default: off, or --init-from's)")
    _option(data, "--pool-size", type=int, default=d.pool_size,
            help="drawn captchas kept in memory and sampled into batches; 0 = every batch freshly drawn")
    _option(data, "--fresh-per-step", type=int, default=d.fresh_per_step,
            help="freshly drawn captchas replacing the oldest in the pool each step")
    _option(data, "--workers", type=int, default=d.workers, help="DataLoader processes drawing or reading images")
    _option(data, "--eval-size", type=int, default=d.eval_size, help="validation captchas drawn (drawn data)")
    _option(data, "--eval-every", type=int, default=d.eval_every,
            help="score the validation set every this many steps (0 = only at the end)")

    model = p.add_argument_group("model and optimisation")
    _option(model, "--preset", default=None, choices=("tiny", "small", "base"),
            help=f"model size: tiny (CPU), small, base (GPU) (default: {d.preset}, or --init-from's)")
    _option(model, "--conv-channels", type=_channels, default=None, metavar="C1,C2,C3,C4",
            help="override the preset's conv widths")
    _option(model, "--head", default=None, choices=("conv", "gru"),
            help="override the preset's sequence head: 1-D convolutions over the frames (tiny), or a "
                 "bidirectional GRU (small, base)")
    _option(model, "--pool-first", default=None, action=argparse.BooleanOptionalAction,
            help="override the preset's block order: conv, pool, BatchNorm, ReLU (tiny), or the classic "
                 "conv, BatchNorm, ReLU, pool (--no-pool-first; small, base)")
    _option(model, "--rnn-hidden", type=int, default=None,
            help="override the preset's head width (conv channels, or GRU units per direction)")
    _option(model, "--rnn-layers", type=int, default=None, help="override the preset's head depth (conv blocks or GRU layers)")
    _option(model, "--dropout", type=float, default=d.dropout, help="dropout between GRU layers and before the classifier")
    _option(model, "--init-from", default="", metavar="CKPT",
            help="start from this checkpoint's weights (fine-tuning), or from a reader shipped with ctcx "
                 "('general'): the model and its input size follow it unless given; any charset (shared "
                 "characters keep their classifier rows, new ones start fresh), image size, label length or "
                 "data; optimizer and schedule start fresh")
    _option(model, "--steps", type=int, default=d.steps, help="optimizer steps")
    _option(model, "--batch-size", type=int, default=d.batch_size, help="images per step (per process under torchrun)")
    _option(model, "--lr", type=float, default=d.lr, help="peak learning rate")
    _option(model, "--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    _option(model, "--schedule", default=d.schedule, choices=("onecycle", "cosine"),
            help="learning-rate schedule: one-cycle, or linear warm-up then cosine decay")
    _option(model, "--warmup", type=float, default=d.warmup, help="fraction of steps warming up")
    _option(model, "--clip-grad", type=float, default=d.clip_grad, help="gradient-norm clip, 0 = off")
    _option(model, "--amp", default=d.amp, choices=("auto", "off", "bf16", "fp16"),
            help="autocast: auto = bf16 on a GPU that has it, and on a CPU where a probe of a few "
                 "steps finds bf16 at least 1.25x faster")
    _option(model, "--ema", type=float, default=d.ema,
            help="decay per step of the moving average of the weights that is evaluated and saved; 0 = off")
    _option(model, "--save-every", type=int, default=d.save_every, help="checkpoint every this many steps")
    _decode_options(model)


def build_parser(command: str = "train") -> argparse.ArgumentParser:
    """The argparse parser of one command (see :data:`COMMANDS`)."""
    prog = "train_captcha.py" + ("" if command == "train" else f" {command}")
    checkpoint = dict(default=_DEFAULT_CHECKPOINT, metavar="CKPT", help="a checkpoint written by training")
    if command == "train":
        p = argparse.ArgumentParser(
            prog=prog, epilog=f"other commands: {', '.join(COMMANDS[1:])} (see train_captcha.py COMMAND --help)",
            description="Train a CRNN with ctcx's CTC loss on captchas drawn on the fly (or a folder), "
                        "evaluate it on the whole validation set, and write a resumable checkpoint, a CSV "
                        "log and a PNG of the curves. Under torchrun, trains with DistributedDataParallel.")
        _train_parser(p)
    elif command == "eval":
        p = argparse.ArgumentParser(prog=prog, description="Score a checkpoint on labelled folders: exact "
                                    "match, exact match ignoring case, character error rate; and its "
                                    "confidences: expected calibration error, exact match of the 80% and "
                                    "90% most confident readings.")
        p.add_argument("dirs", nargs="+", metavar="DIR", help="folders as for --data-dir")
        _option(p, "-c", "--checkpoint", **checkpoint)
        _bad_images_option(p)
        _decode_options(p)
        _reading_options(p)
        _temperature_option(p)
    elif command == "predict":
        p = argparse.ArgumentParser(prog=prog, description="Read images; prints path, label, confidence (the "
                                    "probability of the label, with the checkpoint's fitted temperature) and "
                                    "per-character probabilities, tab-separated.")
        p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")
        _option(p, "-c", "--checkpoint", **checkpoint)
        _option(p, "-o", "--output", default="", metavar="FILE", help="write the table here (atomically)")
        _bad_images_option(p)
        _option(p, "--spans", action="store_true",
                help="add where each character sits, from the most probable alignment of the reading "
                     "(ctcx.forced_align): its span in CTC frames (char_frames) and in the image's pixel "
                     "columns (char_columns), and its cell, the columns nearer to its span than to its "
                     "neighbours' (char_cells); all [start, end)")
        _option(p, "--draw", default="", metavar="DIR",
                help="also write each image with a box over every character's columns to DIR "
                     "(NAME.spans.png; never over an input image)")
        _decode_options(p)
        _reading_options(p)
        _temperature_option(p)
    elif command == "export":
        p = argparse.ArgumentParser(prog=prog, description="Export a checkpoint to ONNX (dynamic batch and "
                                    "width, charset and preprocessing in the metadata) and check it "
                                    "against onnxruntime: same readings, logits within 1e-4.")
        _option(p, "-c", "--checkpoint", **checkpoint)
        _option(p, "-o", "--output", default="runs/captcha/crnn.onnx", metavar="FILE", help="the .onnx file")
        _option(p, "--check-dir", default="", metavar="DIR",
                help="check on these images (default: 64 captchas drawn as in training)")
        _option(p, "--opset", type=int, default=17, help="ONNX opset")
    elif command == "calibrate":
        p = argparse.ArgumentParser(prog=prog, description="Fit the temperature T of a checkpoint's "
                                    "confidences on labelled folders (the T minimising the labels' mean CTC "
                                    "negative log-likelihood) and write it into the checkpoint, atomically; "
                                    "prints the expected calibration error of the greedy readings before "
                                    "and after. Training does this on its validation set at the end.")
        p.add_argument("dirs", nargs="+", metavar="DIR", help="folders as for --data-dir, fitted on together")
        _option(p, "-c", "--checkpoint", **checkpoint)
        _bad_images_option(p)
    else:
        p = argparse.ArgumentParser(prog=prog, description="Draw captchas into a new folder as LABEL_INDEX.png "
                                    "(or INDEX.png plus labels.tsv), e.g. to try folder training.")
        p.add_argument("dir", metavar="DIR", help="the folder to create (must not exist or be empty)")
        _option(p, "--count", type=int, default=1000, help="images to draw")
        _option(p, "--labels-file", action="store_true", help="name files INDEX.png and list labels in labels.tsv")
        _option(p, "--workers", type=int, default=2, help="processes drawing")
        _draw_options(p)
    return p


# what --init-from's checkpoint decides unless given: the model, and the input it was trained on
_FOLLOWS_INIT = ("preset", "conv_channels", "rnn_hidden", "rnn_layers", "head", "pool_first", "channels",
                 "input_height", "input_width", "width_scale", "crop_margins")


def _follow_init_from(values: dict) -> None:
    """Fill the model and input options left unset (None) from ``--init-from``'s config, else the defaults."""
    source = {}
    if values.get("init_from"):
        from .checkpoint import read_checkpoint

        source = read_checkpoint(values["init_from"])["config"]
    for name in _FOLLOWS_INIT:
        if values[name] is None and name in source:
            values[name] = tuple(source[name]) if isinstance(source[name], list) else source[name]
    for name in ("preset", "channels", "input_height", "input_width", "width_scale", "crop_margins"):
        if values[name] is None:
            values[name] = getattr(_DEFAULTS, name)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that parsed ``train`` flags describe.

    Raises:
        ValueError: if a value is out of range (from TrainConfig).
    """
    names = ("charset", "fonts", "font_sizes", "data_dir", "val_dir", "val_split", "bad_images", "augment",
             "oversample", "style",
             "jitter", "input_height", "input_width", "width_scale", "channels", "crop_margins", "preset", "conv_channels", "rnn_hidden", "rnn_layers",
             "head", "pool_first", "dropout", "init_from",
             "steps", "batch_size", "lr", "weight_decay", "schedule", "warmup", "clip_grad", "amp", "ema",
             "pool_size", "fresh_per_step", "workers", "eval_size", "eval_every", "save_every", "beam_width",
             "seed", "device", "threads", "out_dir")
    values = {name: getattr(args, name) for name in names}
    _follow_init_from(values)
    (min_length, max_length), (width, height) = args.length, args.image_size  # argparse's type converted them
    return TrainConfig(**values, min_length=min_length, max_length=max_length, image_width=width,
                       image_height=height, decoders=DECODERS if args.decode == "all" else (args.decode,))


def _decoders(args) -> tuple:
    return DECODERS if args.decode == "all" else (args.decode,)


def _describe(decoder: str, beam_width: int, config: TrainConfig) -> str:
    lengths = f"{config.min_length}" if config.min_length == config.max_length \
        else f"{config.min_length}-{config.max_length}"
    return {"greedy": "greedy", "beam": f"beam {beam_width}",
            "constrained": f"beam {beam_width}, length {lengths}"}[decoder]


def _print_scores(where: str, config: TrainConfig, results: dict, beam_width: int) -> None:
    for decoder, r in results.items():
        print(f"{where}: {r.count} images, {_describe(decoder, beam_width, config)}: exact match "
              f"{r.accuracy:.2%}, ignoring case {r.accuracy_ci:.2%}, character error rate {r.cer:.2%}")


def _train(args: argparse.Namespace) -> None:
    from .train import train

    config = config_from_args(args)
    result = train(config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if result.evaluations:
        _print_scores("validation", result.config, result.evaluations, result.config.beam_width)
    minutes, seconds = divmod(round(result.seconds), 60)
    beside = "log.csv and curves.png" if can_plot() else "log.csv"
    print(f"checkpoint: {result.checkpoint} ({minutes} min {seconds} s); {beside} beside it")


def _folder_images(items, config: TrainConfig) -> list:
    """The preprocessed uint8 images of (path, label) items, as the checkpoint's config says."""
    from .folder import FolderImages

    dataset = FolderImages(items, **config.preprocessing)
    return [dataset[i][0] for i in range(len(dataset))]


def _labelled_images(directory: str, config: TrainConfig, bad_images: str, note_suffix: str) -> tuple:
    """The preprocessed images and labels of a labelled folder (unreadable images left out, with a warning)."""
    from .folder import read_folder, readable_items

    items, note = readable_items(read_folder(directory), directory, bad_images)
    if note:
        print(f"warning: {note}{note_suffix}", file=sys.stderr)
    if not items:
        raise ValueError(f"no readable images in {directory}")
    return items, _folder_images(items, config), [label for _, label in items]


def _temperature_used(args: argparse.Namespace, checkpoint: dict) -> tuple:
    """(T, a phrase saying where it comes from): --temperature, else the checkpoint's."""
    from .calibration import describe_calibration, stored_temperature

    if args.temperature is not None:
        return args.temperature, f"T = {args.temperature:.3g}, from --temperature"
    return stored_temperature(checkpoint), describe_calibration(checkpoint)


def _reading(args: argparse.Namespace, config: TrainConfig) -> tuple:
    """(charset to read with, (min_length, max_length)) from --read-as and --length, else the checkpoint's."""
    from .labels import resolve_charset

    read_as = resolve_charset(args.read_as) if args.read_as else config.charset
    return read_as, (args.length or (config.min_length, config.max_length))


def _cropping(args: argparse.Namespace, config: TrainConfig) -> TrainConfig:
    """``config`` with --crop-margins/--no-crop-margins applied to its preprocessing, if given."""
    if args.crop_margins is None:
        return config
    return dataclasses.replace(config, crop_margins=args.crop_margins)


def _eval(args: argparse.Namespace) -> None:
    from .checkpoint import load_checkpoint
    from .evaluate import evaluate
    from .train import resolve_device

    model, config, checkpoint = load_checkpoint(args.checkpoint, resolve_device("auto"))
    config = _cropping(args, config)
    temperature, source = _temperature_used(args, checkpoint)
    read_as, (min_length, max_length) = _reading(args, config)
    shown = dataclasses.replace(config, min_length=min_length, max_length=max_length)  # what is described
    print(f"confidences: {source}")
    for directory in args.dirs:
        items, images, labels = _labelled_images(directory, config, args.bad_images, "; they are not scored")
        outside = [(p, label) for p, label in items if set(label) - set(read_as)]
        if outside:
            whose = "the checkpoint's" if read_as == config.charset else "--read-as's"
            print(f"warning: {len(outside)} of {len(items)} labels in {directory} have characters outside "
                  f"{whose} charset {read_as!r} (first: {outside[0][1]!r} in {outside[0][0].name}); "
                  f"they count as errors", file=sys.stderr)
        results = {d: evaluate(model, images, labels, config.charset, d, args.beam_width, min_length,
                               max_length, temperature, read_as) for d in _decoders(args)}
        _print_scores(directory, shown, results, args.beam_width)
        for decoder, r in results.items():
            print(f"  {_describe(decoder, args.beam_width, shown)} confidence: ECE {r.ece:.2%}; exact match "
                  f"{r.accuracy_at_80:.2%} of the 80% most confident, {r.accuracy_at_90:.2%} of the 90%")


def _image_paths(paths: List[str]) -> List[Path]:
    from .folder import IMAGE_SUFFIXES

    out = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise ValueError(f"no images in {path}")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return out


def _predict(args: argparse.Namespace) -> None:
    from .checkpoint import atomic_write, load_checkpoint
    from .evaluate import FRAME_COLUMNS, predict
    from .folder import load_image, readable_items
    from .images import margin_box, preprocess
    from .spans import char_cells, draw_spans
    from .train import resolve_device

    model, config, checkpoint = load_checkpoint(args.checkpoint, resolve_device("auto"))
    config = _cropping(args, config)
    temperature, _ = _temperature_used(args, checkpoint)
    if args.temperature is None and not checkpoint.get("calibration"):
        print(f"note: {args.checkpoint} is not calibrated (T = 1): its confidences may be too high; fit T "
              f"with: calibrate DIR -c {args.checkpoint}", file=sys.stderr)
    items, note = readable_items([(p, "") for p in _image_paths(args.paths)], "the input", args.bad_images)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    if not items:
        raise ValueError("no readable images to read")
    paths = [p for p, _ in items]
    draw_dir = Path(args.draw) if args.draw else None
    if draw_dir is not None:
        drawn = [draw_dir / f"{p.stem}.spans.png" for p in paths]
        inputs = {p.resolve() for p in paths}
        clash = next((d for d in drawn if d.resolve() in inputs), None)
        if clash is not None:
            raise ValueError(f"--draw: {clash} is one of the input images; choose another folder")
        if len(set(drawn)) < len(drawn):
            raise ValueError("--draw: two input images share a file name stem; draw them in separate runs")
    originals = [load_image(p) for p in paths]
    images = [preprocess(image, **config.preprocessing) for image in originals]
    locate = args.spans or draw_dir is not None
    read_as, (min_length, max_length) = _reading(args, config)
    readings = predict(model, images, config.charset, args.decode, args.beam_width, min_length,
                       max_length, locate=locate, temperature=temperature, read_as=read_as)

    def columns(reading, original, image):  # model-input columns -> the image's own pixel columns
        box = margin_box(original) if config.crop_margins else None
        left, right = (box[0], box[2]) if box else (0, original.size[0])
        scale = (right - left) / image.shape[-1]
        return [(left + round(a * scale), left + round(b * scale)) for a, b in reading.char_columns]

    def pairs(spans) -> str:
        return " ".join(f"{a}-{b}" for a, b in spans)

    header = "path\tlabel\tconfidence\tchar_probs" + ("\tchar_frames\tchar_columns\tchar_cells"
                                                         if args.spans else "")
    lines = [header]
    for p, r, o, i in zip(paths, readings, originals, images):
        line = f"{p}\t{r.text}\t{r.confidence:.4f}\t{' '.join(f'{q:.4f}' for q in r.char_probs)}"
        if args.spans:
            frames = [(a // FRAME_COLUMNS, b // FRAME_COLUMNS) for a, b in r.char_columns]
            spans = columns(r, o, i)
            line += f"\t{pairs(frames)}\t{pairs(spans)}\t{pairs(char_cells(spans, o.size[0]))}"
        lines.append(line)
    if draw_dir is not None:
        for target, r, o, i in zip(drawn, readings, originals, images):
            picture = draw_spans(o, r.text, columns(r, o, i))
            atomic_write(target, lambda tmp: picture.save(tmp, format="PNG"))
        print(f"{len(drawn)} images with their characters' spans written to {draw_dir}")
    if args.output:
        atomic_write(args.output, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
        print(f"{len(readings)} readings written to {args.output}")
    else:
        print("\n".join(lines))


def _export(args: argparse.Namespace) -> None:
    from .calibration import describe_calibration
    from .checkpoint import load_checkpoint
    from .export import check_onnx, export_onnx

    model, config, checkpoint = load_checkpoint(args.checkpoint, "cpu")
    if args.check_dir:
        from .folder import read_folder
        images = _folder_images(read_folder(args.check_dir), config)
    else:
        from .drawn import DrawnCaptchas, DrawSpec
        spec = DrawSpec(config.charset, config.min_length, config.max_length,
                        (config.image_width, config.image_height), config.fonts, config.font_sizes,
                        style=config.style)
        dataset = DrawnCaptchas(spec, config.seed, "export-check", **config.preprocessing)
        images = [dataset[i][0] for i in range(64)]
    path = export_onnx(model, config, args.output, args.opset, calibration=checkpoint.get("calibration"))
    worst, count = check_onnx(path, model, config.charset, images)
    print(f"{path}: onnxruntime matches torch on {count} images (same greedy readings, largest logit "
          f"difference {worst:.2g}); confidences: {describe_calibration(checkpoint)}")


def _calibrate(args: argparse.Namespace) -> None:
    from .calibration import describe_calibration
    from .checkpoint import load_checkpoint, update_checkpoint
    from .evaluate import fit_calibration
    from .train import resolve_device

    model, config, checkpoint = load_checkpoint(args.checkpoint, resolve_device("auto"))
    images, labels = [], []
    for directory in args.dirs:
        _, more_images, more_labels = _labelled_images(directory, config, args.bad_images, "; they are left out")
        images += more_images
        labels += more_labels
    calibration = fit_calibration(model, images, labels, config.charset)
    if calibration["fitted_on"] < len(labels):
        print(f"warning: {len(labels) - calibration['fitted_on']} of {len(labels)} labels have characters outside "
              f"the charset {config.charset!r} or are too long for their image; they are left out",
              file=sys.stderr)
    update_checkpoint(args.checkpoint, {"calibration": calibration})
    print(f"was {describe_calibration(checkpoint)}; now T = {calibration['temperature']:.3g}, fitted on "
          f"{calibration['fitted_on']} images")
    print(f"ECE of the greedy readings: {calibration['ece_before']:.2%} at T = 1, {calibration['ece_after']:.2%} "
          f"at T = {calibration['temperature']:.3g}; written to {args.checkpoint}")


def _generate(args: argparse.Namespace) -> None:
    from torch.utils.data import DataLoader

    from .checkpoint import atomic_write
    from .drawn import DrawSpec, draw_captcha
    from .labels import resolve_charset

    directory = Path(args.dir)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"{directory} exists and is not an empty folder; choose a new one")
    if args.count < 1:
        raise ValueError(f"--count must be >= 1, got {args.count}")
    spec = DrawSpec(resolve_charset(args.charset or "0-9A-Z"), *args.length, args.image_size,
                    tuple(args.fonts), tuple(args.font_sizes), style=args.style)
    directory.mkdir(parents=True, exist_ok=True)
    digits = len(str(args.count - 1))

    def write(index: int) -> str:
        image, label = draw_captcha(spec, args.seed, "generate", index)
        name = f"{index:0{digits}d}.png" if args.labels_file else f"{label}_{index:0{digits}d}.png"
        atomic_write(directory / name, lambda tmp: image.save(tmp, format="PNG"))
        return f"{name}\t{label}"

    lines = []
    for chunk in DataLoader(range(args.count), batch_size=50, num_workers=args.workers,
                            collate_fn=lambda indices: [write(i) for i in indices]):
        lines += chunk
    if args.labels_file:
        atomic_write(directory / "labels.tsv", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    print(f"{args.count} captchas written to {directory}")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Bad input (missing or empty folder, unreadable checkpoint, out-of-range
    flag, existing checkpoint without --resume/--overwrite) prints one error
    line and returns 2; an interrupted training run saves a checkpoint and
    returns 130.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "train"
    parser = build_parser(command)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    run = {"train": _train, "eval": _eval, "predict": _predict, "export": _export, "generate": _generate,
           "calibrate": _calibrate}[command]
    try:
        run(args)
    except (FileNotFoundError, NotADirectoryError, FileExistsError, ValueError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except AssertionError as err:  # an export that onnxruntime does not reproduce
        print(f"{parser.prog}: check failed: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted after {time.perf_counter() - started:.0f} s", file=sys.stderr)
        return 130
    return 0
