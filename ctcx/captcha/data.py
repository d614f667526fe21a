"""Captcha images for training and evaluation.

- :func:`preprocess` and :func:`to_model_input`: the one image pipeline that
  training, evaluation and inference share (grayscale, resize, ink in [0, 1]).
- :func:`draw_captchas`: draw labelled images with ``captcha.image.ImageCaptcha``.
- :class:`CaptchaPool`: a ring buffer of drawn images that worker processes
  keep refreshing while the model trains, so drawing and training overlap.
- :func:`load_folder`: a folder of ``LABEL_anything.png`` files, as in
  ``shared/data/captcha-36x4``.

captcha 0.7.1 draws its distortions from :mod:`secrets`: only the labels
follow the seed, the images themselves cannot be reproduced.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import random
import signal
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "IMAGE_SUFFIXES", "preprocess", "to_model_input", "encode_label", "decode_label",
    "label_from_filename", "draw_captchas", "CaptchaPool", "load_folder",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def preprocess(image: Image.Image, height: int, width: int) -> np.ndarray:
    """Grayscale ``image`` and resize it (bilinear, antialiased) to ``(height, width)``.

    Returns:
        uint8 array of shape (height, width).
    """
    return np.asarray(image.convert("L").resize((width, height), Image.Resampling.BILINEAR))


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """Turn preprocessed uint8 images (N, H, W) into the model's float32 input (N, 1, H, W).

    Values are ink in [0, 1] (0 = white paper), so the conv stack's zero
    padding looks like the background.
    """
    return (1.0 - images.unsqueeze(1).float() / 255.0).contiguous(memory_format=torch.channels_last)


def encode_label(label: str, charset: str) -> List[int]:
    """Class indices of ``label``: ``charset[i]`` is class ``i + 1`` (0 is the CTC blank).

    Raises:
        ValueError: if ``label`` is empty or holds a character not in ``charset``.
    """
    if not label:
        raise ValueError("empty label")
    unknown = sorted(set(label) - set(charset))
    if unknown:
        raise ValueError(f"label {label!r} has characters {unknown} that are not in the charset {charset!r}")
    return [charset.index(c) + 1 for c in label]


def decode_label(indices: Sequence[int], charset: str) -> str:
    """Inverse of :func:`encode_label` for class indices in ``[1, len(charset)]``."""
    return "".join(charset[i - 1] for i in indices)


def label_from_filename(path: os.PathLike | str) -> str:
    """The label of a ``LABEL_INDEX.png`` file: its name before the last underscore.

    Raises:
        ValueError: if the name has no underscore or nothing before it.
    """
    stem = Path(path).stem
    label, sep, _ = stem.rpartition("_")
    if not sep or not label:
        raise ValueError(f"cannot read a label from {Path(path).name!r}: "
                         f"expected LABEL_INDEX{Path(path).suffix}")
    return label


def draw_captchas(count: int, charset: str, label_length: int, image_size: Tuple[int, int],
                  input_size: Tuple[int, int], rng: random.Random) -> Tuple[np.ndarray, np.ndarray]:
    """Draw ``count`` captchas with uniformly random labels from ``rng``.

    Args:
        image_size: (width, height) that ImageCaptcha draws, in pixels.
        input_size: (height, width) after :func:`preprocess`, in pixels.

    Returns:
        images: uint8 array (count, height, width), preprocessed.
        targets: int64 array (count, label_length) of class indices (1-based).
    """
    from captcha.image import ImageCaptcha  # imported here: the workers need it, importers may not

    drawer = ImageCaptcha(width=image_size[0], height=image_size[1])
    images = np.empty((count, *input_size), dtype=np.uint8)
    targets = np.empty((count, label_length), dtype=np.int64)
    for i in range(count):
        label = "".join(rng.choice(charset) for _ in range(label_length))
        images[i] = preprocess(drawer.generate_image(label), *input_size)
        targets[i] = encode_label(label, charset)
    return images, targets


def _draw_forever(out: "multiprocessing.Queue", stop: "multiprocessing.synchronize.Event",
                  seed: Tuple[int, int], chunk: int, charset: str, label_length: int,
                  image_size: Tuple[int, int], input_size: Tuple[int, int]) -> None:
    """Worker process body: draw chunks into ``out`` until ``stop`` is set or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    torch.set_num_threads(1)
    out.cancel_join_thread()  # on exit, drop what the parent will never read instead of hanging
    rng = random.Random(f"{seed[0]}/{seed[1]}")
    parent = multiprocessing.parent_process()

    def wanted() -> bool:  # a parent killed without closing the pool cannot set ``stop``
        return not stop.is_set() and parent.is_alive()

    while wanted():
        batch = draw_captchas(chunk, charset, label_length, image_size, input_size, rng)
        while wanted():
            try:
                out.put(batch, timeout=0.2)
                break
            except queue.Full:
                continue


class CaptchaPool:
    """Preprocessed captchas in a ring buffer that background processes keep fresh.

    ``workers`` processes draw chunks of images into a bounded queue; they
    block while it is full. :meth:`fill` waits until the pool is full, then
    lowers the workers' priority (nice +10, where the OS allows) so that
    drawing mostly soaks up CPU that training leaves idle. :meth:`refresh`
    swaps in whatever fresh images are ready, oldest first, without waiting;
    :meth:`sample` draws a random batch. Use the pool as a context manager,
    or call :meth:`close`, to stop the workers.

    Args:
        size: number of images held, at least 1.
        charset, label_length: what the labels are drawn from.
        image_size: (width, height) drawn by ImageCaptcha, in pixels.
        input_size: (height, width) after :func:`preprocess`, in pixels.
        workers: number of drawing processes, at least 1.
        seed: labels follow it (images do not, see the module docstring).
        chunk: images per message from a worker.

    Raises:
        ValueError: if size, workers or chunk is below 1.
    """

    def __init__(self, size: int, charset: str, label_length: int, image_size: Tuple[int, int],
                 input_size: Tuple[int, int], workers: int = 1, seed: int = 0, chunk: int = 64) -> None:
        for name, value in (("size", size), ("workers", workers), ("chunk", chunk)):
            if value < 1:
                raise ValueError(f"CaptchaPool: {name} must be >= 1, got {value}")
        self.size = size
        self.images = torch.empty((size, *input_size), dtype=torch.uint8)
        self.targets = torch.empty((size, label_length), dtype=torch.long)
        self.target_lengths = torch.full((size,), label_length, dtype=torch.long)
        self.filled = 0
        self.drawn = 0
        self._next = 0  # ring position of the oldest image
        self._pending: Optional[Tuple[np.ndarray, np.ndarray, int]] = None  # a chunk partly used
        ctx = multiprocessing.get_context("spawn")
        self._queue = ctx.Queue(maxsize=2 * workers)
        self._stop = ctx.Event()
        self._procs = [
            ctx.Process(target=_draw_forever, daemon=True,
                        args=(self._queue, self._stop, (seed, k), chunk, charset, label_length,
                              image_size, input_size))
            for k in range(workers)
        ]
        for p in self._procs:
            p.start()

    def __enter__(self) -> "CaptchaPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop and join the worker processes (idempotent)."""
        self._stop.set()
        deadline = time.monotonic() + 5
        # keep draining: a worker exits only once what it put has gone through the pipe
        while any(p.is_alive() for p in self._procs) and time.monotonic() < deadline:
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        for p in self._procs:
            if p.is_alive():
                p.terminate()
            p.join()
        self._procs = []

    def _get(self, block: bool) -> Optional[Tuple[np.ndarray, np.ndarray, int]]:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        if not self._procs:
            raise RuntimeError("CaptchaPool is closed")
        while True:
            try:
                images, targets = self._queue.get(timeout=1.0) if block else self._queue.get_nowait()
                return images, targets, 0
            except queue.Empty:
                if not block:
                    return None
                dead = [p for p in self._procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"a captcha drawing process died (exit code {dead[0].exitcode})")

    def take(self, count: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Wait for ``count`` fresh images and return them without adding them to the pool.

        Returns:
            images: uint8 (count, H, W); targets: int64 (count, label_length).
        """
        images = [np.empty((0, *self.images.shape[1:]), dtype=np.uint8)]
        targets = [np.empty((0, self.targets.shape[1]), dtype=np.int64)]
        while count > 0:
            chunk_images, chunk_targets, start = self._get(block=True)
            n = min(count, len(chunk_images) - start)
            images.append(chunk_images[start:start + n])
            targets.append(chunk_targets[start:start + n])
            if start + n < len(chunk_images):
                self._pending = (chunk_images, chunk_targets, start + n)
            count -= n
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(targets))

    def _insert(self, limit: int, block: bool) -> int:
        added = 0
        while added < limit:
            got = self._get(block)
            if got is None:
                break
            chunk_images, chunk_targets, start = got
            n = min(limit - added, len(chunk_images) - start, self.size - self._next)
            where = slice(self._next, self._next + n)
            self.images[where] = torch.from_numpy(chunk_images[start:start + n])
            self.targets[where] = torch.from_numpy(chunk_targets[start:start + n])
            if start + n < len(chunk_images):
                self._pending = (chunk_images, chunk_targets, start + n)
            self._next = (self._next + n) % self.size
            self.filled = min(self.size, self.filled + n)
            self.drawn += n
            added += n
        return added

    def fill(self, progress: Optional[Callable[[int], None]] = None) -> None:
        """Block until the pool is full, then lower the workers' priority.

        ``progress(n)`` is called with each n images added.
        """
        while self.filled < self.size:
            added = self._insert(self.size - self.filled, block=True)
            if progress is not None:
                progress(added)
        if hasattr(os, "setpriority"):
            for p in self._procs:
                try:
                    os.setpriority(os.PRIO_PROCESS, p.pid, os.getpriority(os.PRIO_PROCESS, p.pid) + 10)
                except OSError:  # the worker is gone, or the OS forbids it: drawing just competes more
                    pass

    def refresh(self, limit: int) -> int:
        """Replace up to ``limit`` of the oldest images with fresh ones that are ready; never waits.

        Returns:
            the number of images replaced.
        """
        return self._insert(limit, block=False)

    def sample(self, batch_size: int, generator: Optional[torch.Generator] = None
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A random batch (with replacement) of the images held.

        Returns:
            images: uint8 (B, H, W); targets: int64 (B, S) padded class
            indices; target_lengths: int64 (B,).

        Raises:
            RuntimeError: if the pool holds no images yet.
        """
        if self.filled == 0:
            raise RuntimeError("CaptchaPool.sample: the pool is empty, call fill() first")
        index = torch.randint(0, self.filled, (batch_size,), generator=generator)
        return self.images[index], self.targets[index], self.target_lengths[index]


def load_folder(directory: os.PathLike | str, height: int, width: int
                ) -> Tuple[torch.Tensor, List[str], List[Path]]:
    """Load every image in ``directory`` whose name is ``LABEL_anything.<image suffix>``.

    Returns:
        images: uint8 (N, height, width) preprocessed with :func:`preprocess`;
        labels: the N labels read from the file names; paths: the N files, sorted.

    Raises:
        FileNotFoundError / NotADirectoryError: if ``directory`` is missing or a file.
        ValueError: if it holds no images, or a file name has no label, or an
            image cannot be read (the message names the file).
    """
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"no such directory: {directory}")
    if not directory.is_dir():
        raise NotADirectoryError(f"not a directory: {directory}")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    labels = [label_from_filename(p) for p in paths]
    images = np.empty((len(paths), height, width), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                images[i] = preprocess(image, height, width)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read image {path}: {err}") from err
    return torch.from_numpy(images), labels, paths
