"""Folders of labelled images that users already have.

Three layouts are read (see :func:`read_folder`):

- ``LABEL_anything.ext``: the label is the file name before the last underscore;
- ``LABEL.ext``: the whole name without its suffix;
- a ``labels.tsv`` or ``labels.txt`` in the folder, one ``path<TAB>label``
  line per image (path relative to the folder); then only the listed images
  are used.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .images import augment as augment_image
from .images import preprocess
from .labels import label_from_filename

__all__ = ["IMAGE_SUFFIXES", "LABEL_FILES", "BAD_IMAGES", "read_folder", "split_items", "load_image",
           "readable_items", "FolderImages"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LABEL_FILES = ("labels.tsv", "labels.txt")
BAD_IMAGES = ("skip", "error")  # what readable_items does with an image Pillow cannot read

Item = Tuple[Path, str]


def _read_label_file(directory: Path, listing: Path) -> List[Item]:
    items, seen = [], {}
    try:
        text = listing.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is dropped
    except UnicodeDecodeError as err:
        raise ValueError(f"{listing} is not UTF-8 text ({err}); save it as UTF-8") from None
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        path, sep, label = line.partition("\t")
        if not sep or not path or not label:
            raise ValueError(f"{listing}:{number}: expected 'path<TAB>label', got {line!r}")
        if path in seen:
            raise ValueError(f"{listing}:{number}: {path} is listed again (first on line {seen[path]}); "
                             f"each image needs one label")
        seen[path] = number
        items.append((directory / path, label))
    if not items:
        raise ValueError(f"{listing} lists no images")
    missing = [p for p, _ in items if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{listing} names {len(missing)} missing files, first: {missing[0]}")
    return items


def read_folder(directory: os.PathLike | str) -> List[Item]:
    """The (image path, label) pairs of a folder, sorted by path.

    Raises:
        FileNotFoundError / NotADirectoryError: if ``directory`` is missing or a file,
            or a labels file names a missing image.
        ValueError: if there are no images, a label cannot be read, a labels
            file lists an image twice (the message names the file and line)
            or is not UTF-8 text.
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"no such directory: {directory}")
    if not directory.is_dir():
        raise NotADirectoryError(f"not a directory: {directory}")
    for name in LABEL_FILES:
        if (directory / name).is_file():
            return sorted(_read_label_file(directory, directory / name))
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) and no {' or '.join(LABEL_FILES)} "
                         f"in {directory}")
    return [(p, label_from_filename(p)) for p in paths]


def split_items(items: Sequence[Item], fraction: float, seed: int) -> Tuple[List[Item], List[Item]]:
    """Shuffle ``items`` with ``seed`` and cut off ``fraction`` of them (at least one) for validation.

    Returns:
        (train, validation), each sorted by path.

    Raises:
        ValueError: if ``fraction`` is not in (0, 1) or fewer than 2 items are given.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    if len(items) < 2:
        raise ValueError(f"cannot split {len(items)} image(s) into training and validation")
    shuffled = list(items)
    random.Random(f"split/{seed}").shuffle(shuffled)
    cut = min(len(items) - 1, max(1, round(fraction * len(items))))
    return sorted(shuffled[cut:]), sorted(shuffled[:cut])


def load_image(path: Path) -> Image.Image:
    """Open ``path`` fully into memory.

    Raises:
        ValueError: if it is not a readable image, or has more pixels than
            Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS`` times
            2); the message names the file.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except Image.DecompressionBombError as err:  # not an OSError: a huge image, maybe a bomb
        raise ValueError(f"cannot read image {path}: too many pixels, a possible decompression bomb "
                         f"({err})") from err
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


def _problem(path: Path) -> str:
    """Why ``path`` cannot be read as an image ('' if it can)."""
    try:
        load_image(path)
    except ValueError as err:
        return str(err)
    return ""


def readable_items(items: Sequence[Item], where: str, bad_images: str = "skip",
                   threads: int = 0) -> Tuple[List[Item], str]:
    """The items whose images Pillow reads in full, and a note on the others.

    Every image is decoded once, up front (``threads`` at a time, 0 = up to
    8), so that a damaged file in a scraped folder (0 bytes, cut short, not
    an image, a decompression bomb) is found before training or scoring
    starts rather than in a data worker halfway through.

    Args:
        items: (path, label) pairs, e.g. from :func:`read_folder`.
        where: what to call the items' source in messages (a folder name).
        bad_images: ``"skip"`` leaves unreadable images out and describes
            them in the note (how many, the first three with the reason);
            ``"error"`` raises instead.

    Returns:
        (the readable items in their order, a note: '' when none was skipped).

    Raises:
        ValueError: with ``bad_images="error"`` if an image cannot be read
            (the message names the first and counts them), or if ``bad_images``
            is not one of :data:`BAD_IMAGES`.
    """
    if bad_images not in BAD_IMAGES:
        raise ValueError(f"bad_images must be one of {BAD_IMAGES}, got {bad_images!r}")
    items = list(items)
    workers = threads or min(8, os.cpu_count() or 1)
    if workers > 1 and len(items) > 1:
        from concurrent.futures import ThreadPoolExecutor  # Pillow decodes without the GIL

        with ThreadPoolExecutor(workers) as pool:
            problems = list(pool.map(_problem, [p for p, _ in items]))
    else:
        problems = [_problem(p) for p, _ in items]
    bad = [problem for problem in problems if problem]
    if not bad:
        return items, ""
    if bad_images == "error":
        raise ValueError(f"{len(bad)} of {len(items)} images in {where} cannot be read; first: {bad[0]} "
                         f"(--bad-images skip leaves them out)")
    shown = "; ".join(bad[:3]) + ("; ..." if len(bad) > 3 else "")
    note = (f"skipped {len(bad)} of {len(items)} images in {where} that cannot be read "
            f"(--bad-images error stops instead): {shown}")
    return [item for item, problem in zip(items, problems) if not problem], note


class FolderImages(Dataset):
    """Map-style dataset over (path, label) pairs: item ``i`` is ``(uint8 (C, H, W), label)``.

    Images are read and preprocessed when asked for (in DataLoader workers
    during training). With ``augment``, each read is distorted afresh by
    :func:`~ctcx.captcha.images.augment`, seeded by ``(seed, i, visit)``
    where ``visit`` counts how often the sampler has reached item ``i``.
    """

    def __init__(self, items: Sequence[Item], height: int, channels: int = 1, width: int = 0,
                 augment: bool = False, seed: int = 0, width_scale: float = 1.0, crop: bool = False) -> None:
        self.items = list(items)
        self.height, self.channels, self.width, self.augment, self.seed = height, channels, width, augment, seed
        self.width_scale, self.crop = width_scale, crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key) -> Tuple[np.ndarray, str]:
        index, visit = key if isinstance(key, tuple) else (key, 0)
        path, label = self.items[index]
        image = load_image(path)
        if self.augment:
            image = augment_image(image, random.Random(f"{self.seed}/folder/{index}/{visit}"))
        return preprocess(image, self.height, self.channels, self.width, self.width_scale, self.crop), label
