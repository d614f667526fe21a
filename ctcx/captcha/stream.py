"""Training batches from a dataset, resumable at any step.

Every sample a run consumes has a position 0, 1, 2, ...; position ``p`` maps
to a dataset key by :class:`PositionSampler`, and DataLoader worker
processes read (draw or load) the samples in that order. The whole state of
the stream is therefore the number of positions consumed plus one random
generator, which checkpoints store (:meth:`BatchStream.state_dict`).

Two ways to turn samples into batches (:class:`BatchStream`):

- fresh: every batch is the next ``batch_size`` samples (folders, or drawing
  on a machine with cores to spare);
- pool: a ring of ``pool_size`` samples, of which ``fresh_per_step`` are
  replaced each step, batches drawn from it at random. Drawing a captcha takes
  about 2 ms of CPU, so on a 2-core machine fresh drawing would starve
  training; the pool lets a few cheap workers keep the data moving.
"""
from __future__ import annotations

import os
import signal
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .images import pad_batch
from .labels import encode_label

__all__ = ["Batch", "Collate", "PositionSampler", "BatchStream"]


class Batch(NamedTuple):
    """A padded batch: uint8 images (N, C, H, W) and their widths (N,) in pixels;
    targets (N, S) int64 class indices padded with 0 and target_lengths (N,)."""

    images: torch.Tensor
    widths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor


class Collate:
    """DataLoader ``collate_fn``: ``(image, label)`` samples -> :class:`Batch` (labels encoded)."""

    def __init__(self, charset: str) -> None:
        self.charset = charset

    def __call__(self, samples: Sequence[Tuple[np.ndarray, str]]) -> Batch:
        images, widths = pad_batch([image for image, _ in samples])
        encoded = [encode_label(label, self.charset) for _, label in samples]
        targets = torch.zeros((len(encoded), max(map(len, encoded))), dtype=torch.long)
        for i, row in enumerate(encoded):
            targets[i, :len(row)] = torch.tensor(row)
        return Batch(images, widths, targets, torch.tensor([len(r) for r in encoded], dtype=torch.long))


class PositionSampler(Sampler):
    """Endless dataset keys for positions ``start, start + 1, ...`` of one process's stream.

    Process ``rank`` of ``world`` takes global positions ``q = p * world + rank``.
    Without ``epoch_size`` the key is ``q`` itself (drawn samples: every
    position is a new captcha). With ``epoch_size = n`` the key is
    ``(permutation_e[q % n], e)`` for epoch ``e = q // n``, each epoch's
    permutation seeded by ``(seed, e)``: a reshuffled pass over n items.
    """

    def __init__(self, start: int, seed: int, epoch_size: Optional[int] = None, rank: int = 0,
                 world: int = 1) -> None:
        self.start, self.seed, self.epoch_size, self.rank, self.world = start, seed, epoch_size, rank, world

    def __iter__(self) -> Iterator:
        position = self.start
        epoch, order = -1, None
        while True:
            q = position * self.world + self.rank
            if self.epoch_size is None:
                yield q
            else:
                if q // self.epoch_size != epoch:
                    epoch = q // self.epoch_size
                    generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                    order = torch.randperm(self.epoch_size, generator=generator).tolist()
                yield order[q % self.epoch_size], epoch
            position += 1


def _init_worker(_worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: leave Ctrl-C to the trainer (which stops at a step boundary)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _init_pool_worker(worker_id: int) -> None:
    """As :func:`_init_worker`, and draw with CPU that training leaves idle (nice +10)."""
    _init_worker(worker_id)
    try:
        os.nice(10)
    except OSError:  # not allowed here: drawing just competes more
        pass


class BatchStream:
    """Training batches from ``dataset``, fresh or through a pool (see the module docstring).

    Args:
        dataset: map-style, items ``(uint8 (C, H, W), label)``.
        charset: labels are encoded with it.
        batch_size: samples per batch, >= 1.
        pool_size: 0 = fresh batches; otherwise the ring size (all samples
            must then have the same shape).
        fresh_per_step: samples replaced in the pool per batch (pool mode).
        workers: DataLoader worker processes, 0 = read in this process.
        seed: seeds the epoch order (with ``epoch_size``) and, with ``rank``, the pool sampling.
        epoch_size: see :class:`PositionSampler`.
        rank, world: this process's share of the stream under DDP.
        state: a :meth:`state_dict` to continue from.

    Raises:
        ValueError: for batch_size < 1, pool_size < 0, or a pool smaller than a batch.
    """

    def __init__(self, dataset: Dataset, charset: str, batch_size: int, pool_size: int = 0,
                 fresh_per_step: int = 0, workers: int = 0, seed: int = 0,
                 epoch_size: Optional[int] = None, rank: int = 0, world: int = 1,
                 state: Optional[dict] = None) -> None:
        if batch_size < 1 or pool_size < 0:
            raise ValueError(f"BatchStream: batch_size must be >= 1 and pool_size >= 0, "
                             f"got {batch_size}, {pool_size}")
        self.batch_size, self.pool_size, self.fresh_per_step = batch_size, pool_size, fresh_per_step
        self.generator = torch.Generator().manual_seed(seed * 1000 + rank)
        self.consumed = 0
        if state is not None:
            self.consumed = int(state["consumed"])
            self.generator.set_state(state["generator"])
        start = max(0, self.consumed - pool_size)
        chunk = min(64, pool_size) if pool_size else batch_size
        self._loader = DataLoader(
            dataset, batch_size=chunk, sampler=PositionSampler(start, seed, epoch_size, rank, world),
            num_workers=workers, collate_fn=Collate(charset),
            worker_init_fn=_init_pool_worker if pool_size else _init_worker,
            prefetch_factor=4 if workers else None,
            generator=torch.Generator().manual_seed(seed))  # not the global RNG: resume restores that
        self._chunks = iter(self._loader)
        self._pending: Optional[Batch] = None  # rest of a chunk partly moved into the pool
        self._position = start  # next position the loader yields
        self.images: Optional[torch.Tensor] = None
        self.targets: Optional[torch.Tensor] = None
        self.target_lengths: Optional[torch.Tensor] = None
        self.widths: Optional[torch.Tensor] = None

    # -- state --------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """``consumed`` positions and the pool sampler's generator state (tensors and ints only)."""
        return {"consumed": self.consumed, "generator": self.generator.get_state()}

    def close(self) -> None:
        """Stop the DataLoader workers."""
        self._chunks = None

    # -- pool ---------------------------------------------------------------------------------------

    def _take(self, count: int) -> Batch:
        parts: List[Batch] = []
        while count > 0:
            chunk, self._pending = self._pending, None
            if chunk is None:
                chunk = next(self._chunks)
            n = min(count, len(chunk.images))
            parts.append(Batch(*(t[:n] for t in chunk)))
            if n < len(chunk.images):
                self._pending = Batch(*(t[n:] for t in chunk))
            count -= n
            self._position += n
        if len(parts) == 1:
            return parts[0]
        width = max(p.images.shape[3] for p in parts)
        length = max(p.targets.shape[1] for p in parts)
        images = torch.cat([torch.nn.functional.pad(p.images, (0, width - p.images.shape[3]), value=255)
                            for p in parts])
        targets = torch.cat([torch.nn.functional.pad(p.targets, (0, length - p.targets.shape[1]))
                             for p in parts])
        return Batch(images, torch.cat([p.widths for p in parts]), targets,
                     torch.cat([p.target_lengths for p in parts]))

    def _put(self, batch: Batch) -> None:
        """Write ``batch`` into the ring slots of its positions (slot = position % pool_size)."""
        if self.images is None:
            n, c, h, w = batch.images.shape
            self.images = torch.empty((self.pool_size, c, h, w), dtype=torch.uint8)
            self.widths = torch.zeros(self.pool_size, dtype=torch.long)
            self.targets = torch.zeros((self.pool_size, 1), dtype=torch.long)
            self.target_lengths = torch.zeros(self.pool_size, dtype=torch.long)
        if batch.images.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"a pool needs images of one shape: got {tuple(batch.images.shape[1:])} "
                             f"after {tuple(self.images.shape[1:])}; use pool_size 0 for varied sizes")
        if batch.targets.shape[1] > self.targets.shape[1]:
            self.targets = torch.nn.functional.pad(self.targets, (0, batch.targets.shape[1] - self.targets.shape[1]))
        first = self._position - len(batch.images)
        slots = torch.arange(first, self._position) % self.pool_size
        self.images[slots] = batch.images
        self.widths[slots] = batch.widths
        self.targets[slots] = 0
        self.targets[slots, :batch.targets.shape[1]] = batch.targets
        self.target_lengths[slots] = batch.target_lengths

    def fill(self, progress: Optional[Callable[[int], None]] = None) -> None:
        """Pool mode: read until the pool holds ``pool_size`` samples (again, after a resume).

        ``progress(n)`` is called with each n samples added. A no-op in fresh mode.
        """
        if not self.pool_size:
            return
        goal = max(self.consumed, self.pool_size)
        while self._position < goal:
            batch = self._take(min(64, goal - self._position))
            self._put(batch)
            if progress is not None:
                progress(len(batch.images))
        self.consumed = goal

    def next(self) -> Batch:
        """The next training batch."""
        if not self.pool_size:
            batch = self._take(self.batch_size)
            self.consumed = self._position
            return batch
        if self.images is None:
            self.fill()
        if self.fresh_per_step:
            self._put(self._take(self.fresh_per_step))
            self.consumed = self._position
        index = torch.randint(0, self.pool_size, (self.batch_size,), generator=self.generator)
        length = int(self.target_lengths[index].max())
        return Batch(self.images[index], self.widths[index], self.targets[index, :length],
                     self.target_lengths[index])
