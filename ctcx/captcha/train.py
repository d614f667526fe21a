"""Training: data, the loop (AMP, DDP, periodic evaluation), checkpoints, resume.

One process trains by default; under ``torchrun --nproc_per_node=N`` every
process trains a DistributedDataParallel replica on its own share of the
data stream (gloo on CPU, nccl on GPU) and only rank 0 evaluates and writes
files. The loss is ``ctcx.ctc_loss_with_logits`` on the model's logits in
the dtype autocast gives them (bf16 with ``amp="bf16"``). With ``jitter`` > 0
every batch gets random affine maps (:func:`~ctcx.captcha.images.jitter`) from
a generator of its own, and with ``ema`` > 0 a moving average of the weights
(``torch.optim.swa_utils.AveragedModel``) is what is evaluated and saved. At
the end, the temperature of the confidences is fitted on the validation set
(:mod:`~ctcx.captcha.calibration`) and stored in the checkpoint.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

import ctcx

from .checkpoint import read_checkpoint, save_checkpoint
from .config import TrainConfig
from .curves import PLOT_MISSING, can_plot, plot_curves, write_csv
from .drawn import DrawnCaptchas, DrawSpec, char_weights
from .evaluate import EvalResult, evaluate, fit_calibration
from .folder import FolderImages, read_folder, readable_items, split_items
from .images import jitter, to_model_input
from .labels import infer_charset
from .finetune import init_from_checkpoint
from .model import CRNN, build_model, count_parameters
from .precision import AMP_SPEEDUP, amp_dtype, bf16_pays, probe_cpu_bf16
from .stream import BatchStream

__all__ = ["TrainResult", "resolve_device", "amp_dtype", "load_data", "train", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    """What :func:`train` returns: the model (eval mode), its final scores and where things went."""

    model: CRNN
    config: TrainConfig
    evaluations: Dict[str, EvalResult]
    checkpoint: Path
    seconds: float
    history: List[Dict[str, float]] = field(default_factory=list)
    calibration: Optional[Dict[str, Any]] = None  # the checkpoint's entry; None without a validation set


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"`` / ``"cuda"`` as given.

    Under DDP on CUDA, process ``local_rank`` gets GPU ``local_rank``.

    Raises:
        ValueError: if ``name`` is ``"cuda"`` and CUDA is not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False")
        return torch.device("cuda", local_rank)
    return torch.device(name)


# ---- data ---------------------------------------------------------------------------------------

@dataclass
class Data:
    """A run's data: the training dataset (and its epoch size for folders) and the validation set."""

    config: TrainConfig  # with charset and label lengths filled in for folder data
    train: Any
    epoch_size: Optional[int]
    val_images: List[np.ndarray]
    val_labels: List[str]
    notes: List[str]


def _read_all(dataset, count: int, workers: int, desc: str, progress: bool) -> Tuple[List[np.ndarray], List[str]]:
    loader = DataLoader(dataset, batch_size=64, sampler=range(count), num_workers=workers,
                        collate_fn=list, prefetch_factor=4 if workers else None,
                        generator=torch.Generator())  # leaves the global RNG alone
    images, labels = [], []
    with tqdm(total=count, desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for chunk in loader:
            images += [image for image, _ in chunk]
            labels += [label for _, label in chunk]
            bar.update(len(chunk))
    return images, labels


def load_data(config: TrainConfig, validation: bool = True, progress: bool = True) -> Data:
    """Build the training dataset and read the validation set that ``config`` describes.

    Drawn data: training samples come from the ``"train"`` stream of
    :class:`~ctcx.captcha.drawn.DrawnCaptchas` (characters weighted by
    ``oversample``), ``eval_size`` validation samples from the separate
    ``"eval"`` stream (characters uniform, as in the test sets). A folder: ``val_dir``, or a
    seeded ``val_split`` of ``data_dir``; the charset is inferred from the
    training labels unless given, training labels with other characters are
    left out, and validation labels with unknown characters are kept (they
    count as errors); both are reported in ``notes``.

    Images that cannot be read are left out and reported in ``notes``, or
    with ``bad_images="error"`` raise (:func:`~ctcx.captcha.folder.readable_items`).

    Raises:
        FileNotFoundError, NotADirectoryError, ValueError: for missing or
            unusable folders (see :func:`~ctcx.captcha.folder.read_folder`).
    """
    size = config.preprocessing
    if config.drawn:
        spec = DrawSpec(config.charset, config.min_length, config.max_length,
                        (config.image_width, config.image_height), config.fonts, config.font_sizes,
                        style=config.style)
        weighted = dataclasses.replace(spec, weights=char_weights(config.charset, config.oversample))
        train_set = DrawnCaptchas(weighted, config.seed, "train", augment=config.augment, **size)
        images, labels = [], []
        if validation and config.eval_size:
            images, labels = _read_all(DrawnCaptchas(spec, config.seed, "eval", **size), config.eval_size,
                                       config.workers, "drawing validation captchas", progress)
        return Data(config, train_set, None, images, labels, [])

    notes = []
    items, note = readable_items(read_folder(config.data_dir), config.data_dir, config.bad_images, config.threads)
    notes += [note] if note else []
    if not items:
        raise ValueError(f"no readable images in {config.data_dir}")
    if config.val_dir:
        val_items, note = readable_items(read_folder(config.val_dir), config.val_dir, config.bad_images,
                                         config.threads)
        notes += [note] if note else []
        train_items = items
    else:
        train_items, val_items = split_items(items, config.val_split, config.seed)
        notes.append(f"split {len(items)} images of {config.data_dir} into {len(train_items)} for training "
                     f"and {len(val_items)} for validation (seed {config.seed}, fraction {config.val_split})")
    charset = config.charset or infer_charset(label for _, label in train_items)
    known = set(charset)
    outside = [(p, label) for p, label in train_items if set(label) - known]
    if outside:
        notes.append(f"left out {len(outside)} training images whose labels have characters outside the "
                     f"charset {charset!r} (first: {outside[0][1]!r} in {outside[0][0]})")
        train_items = [(p, label) for p, label in train_items if not set(label) - known]
    if not train_items:
        raise ValueError(f"no training images left in {config.data_dir}")
    unknown = [(p, label) for p, label in val_items if set(label) - known]
    if unknown:
        notes.append(f"{len(unknown)} of {len(val_items)} validation labels have characters outside the "
                     f"charset {charset!r} (first: {unknown[0][1]!r} in {unknown[0][0]}); they count as errors")
    lengths = [len(label) for _, label in train_items]
    config = dataclasses.replace(config, charset=charset, min_length=min(lengths), max_length=max(lengths))
    train_set = FolderImages(train_items, augment=config.augment, seed=config.seed, **size)
    images, labels = [], []
    if validation and val_items:
        images, labels = _read_all(FolderImages(val_items, **size), len(val_items), config.workers,
                                   "reading validation images", progress)
    return Data(config, train_set, len(train_items), images, labels, notes)


# ---- the loop -----------------------------------------------------------------------------------

class _Processes:
    """This process's place among torchrun's (one process when not launched by torchrun)."""

    def __init__(self, device_name: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device_name, self.local_rank)
        self.started = False
        if self.world > 1 and not dist.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.started = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, obj: Any) -> List[Any]:
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: Any) -> bool:
        if self.world == 1:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item())

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world

    def close(self) -> None:
        if self.started:
            dist.destroy_process_group()


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's parameters, bit for bit (names, dtypes, shapes,
    values). Buffers are left out: under DDP each process's last forward pass
    updates its own batch-norm statistics after rank 0's were broadcast."""
    h = hashlib.sha256()
    for name, value in model.named_parameters():
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(value.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _check_replicas_agree(model: torch.nn.Module, procs: "_Processes", log: Callable[[str], None]) -> None:
    """Under DDP every process must end with the same weights (gradients are
    all-reduced every step); a difference means the processes trained apart,
    and is an error rather than a checkpoint of one of them."""
    if procs.world == 1:
        return
    digests = procs.gather(weights_digest(model))
    if len(set(digests)) != 1:
        raise RuntimeError("the processes ended with different weights (sha256 per rank: "
                           + ", ".join(d[:12] for d in digests) + "): their gradients were not all-reduced")
    if procs.main:
        log(f"weights identical on all {procs.world} processes (sha256 {digests[0][:16]})")


class _StopRequest:
    """Turns the first SIGINT / SIGTERM into a request to stop at the next step boundary.

    ``requested`` is the signal's name once one arrived. A second signal
    acts as usual (Ctrl-C twice stops at once, without saving).
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = ""
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self._SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name
        self.restore()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _schedule(config: TrainConfig, optimizer: torch.optim.Optimizer):
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=max(config.warmup, 1e-3))
    warm = max(1, round(config.warmup * config.steps))
    cosine = lambda step: (step + 1) / warm if step < warm else \
        0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, config.steps - warm)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)


def _ema_update(decay: float):
    """AveragedModel's ``multi_avg_fn``: an exponential moving average whose decay
    ramps up as (1 + n) / (10 + n) after n updates until it reaches ``decay``,
    so that the first weights do not linger in short runs."""

    @torch.no_grad()
    def update(averaged, current, n_averaged) -> None:
        n = int(n_averaged)
        rate = 1.0 - min(decay, (1.0 + n) / (10.0 + n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, rate)
        else:  # integer buffers (batch norm's step count) follow the model
            for a, c in zip(averaged, current):
                a.copy_(c)

    return update


def _rng_state(device: torch.device, jitter_rng: torch.Generator) -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "jitter": jitter_rng.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Dict[str, Any], device: torch.device, jitter_rng: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if "jitter" in state:
        jitter_rng.set_state(state["jitter"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False, progress: bool = True,
          log: Callable[[str], None] = tqdm.write,
          on_step: Optional[Callable[[int], None]] = None) -> TrainResult:
    """Train the CRNN that ``config`` describes; evaluate; write checkpoint, log and curves.

    Outputs in ``config.out_dir``: ``checkpoint.pt`` (every ``save_every``
    steps, on Ctrl-C, and at the end; see :mod:`ctcx.captcha.checkpoint`),
    ``log.csv`` (see :data:`~ctcx.captcha.curves.CSV_COLUMNS`) and
    ``curves.png`` (skipped, with one logged line, where matplotlib is not
    installed: it is an optional dependency).

    Args:
        resume: continue the run in ``config.out_dir`` from its checkpoint:
            everything comes from the checkpoint except ``device``,
            ``threads`` and ``workers``, and training continues exactly as if
            it had never stopped (same batches, same random numbers).
        overwrite: start afresh even if ``out_dir`` holds a checkpoint.
        progress: show tqdm progress bars.
        log: where one-line status messages go.
        on_step: called with each finished step number (after any saving).

    Returns:
        TrainResult; ``evaluations`` maps each of ``config.decoders`` to its
        final :class:`~ctcx.captcha.evaluate.EvalResult` on the validation set.

    Raises:
        FileExistsError: if ``out_dir`` holds a checkpoint and neither
            ``resume`` nor ``overwrite`` is set (checked before any work).
        FileNotFoundError: if ``resume`` is set and there is no checkpoint.
        ValueError: if the checkpoint to resume has already finished, or
            bad data (see :func:`load_data`).
    """
    path = Path(config.out_dir) / CHECKPOINT_NAME
    saved = None
    if resume:
        saved = read_checkpoint(path)
        keep = {name: getattr(config, name) for name in ("device", "threads", "workers")}
        # checkpoints written before jitter and ema existed trained without them
        values = {"jitter": 0.0, "ema": 0.0, **saved["config"]}
        config = dataclasses.replace(TrainConfig.from_dict(values), out_dir=config.out_dir, **keep)
        if saved.get("complete"):
            raise ValueError(f"{path} is a finished run ({saved['step']} of {config.steps} steps); "
                             f"nothing to resume")
    elif path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; resume it (--resume), pass --overwrite to start afresh, "
                              f"or choose another --out directory")
    procs = _Processes(config.device)
    threads = torch.get_num_threads()  # config.threads applies to this run only
    try:
        return _train(config, saved, procs, path, progress, log, on_step)
    finally:
        procs.close()
        torch.set_num_threads(threads)


def _train(config: TrainConfig, saved: Optional[dict], procs: _Processes, path: Path, progress: bool,
           log: Callable[[str], None], on_step: Optional[Callable[[int], None]]) -> TrainResult:
    started = time.perf_counter()
    device = procs.device
    progress = progress and procs.main
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_data(config, validation=procs.main, progress=progress)
    config = data.config
    plots = can_plot()  # checked up front: a missing optional package costs a line, not the run
    if procs.main:
        for note in data.notes:
            log(note)
        if not plots:
            log(PLOT_MISSING)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    if saved is None and config.amp == "auto" and device.type == "cpu":
        config = _resolve_cpu_amp(config, data, model, procs, log)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _schedule(config, optimizer)
    dtype = amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step, history, elapsed, running = 0, [], 0.0, None
    stream_state = None
    jitter_rng = torch.Generator().manual_seed(config.seed * 1000 + procs.rank + 500)
    init = saved.get("init") if saved is not None else None
    if saved is None and config.init_from:
        init = init_from_checkpoint(model, config, config.init_from)
        if procs.main:
            log(f"weights from {init['path']} (step {init['step']}): {len(init['carried'])} characters carried "
                f"over" + (f", {len(init['new'])} new ({init['new']})" if init["new"] else ""))
    if saved is not None:
        model.load_state_dict(saved.get("train_state_dict", saved["state_dict"]))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        step, history, elapsed = saved["step"], list(saved["history"]), saved["elapsed"]
        running = saved.get("running_loss")
        if len(saved["streams"]) != procs.world:
            raise ValueError(f"{path} was written by {len(saved['streams'])} processes; resume it with as "
                             f"many (this run has {procs.world})")
        stream_state = saved["streams"][procs.rank]
        _set_rng_state(saved["rng"][procs.rank], device, jitter_rng)
    ema = None
    if config.ema:
        ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=_ema_update(config.ema), use_buffers=True)
        if saved is not None and "train_state_dict" in saved:
            ema.module.load_state_dict(saved["state_dict"])
            ema.n_averaged.fill_(saved["ema_steps"])
    scored = ema.module if ema is not None else model  # the weights evaluated and saved
    net = model
    if procs.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    stream = BatchStream(data.train, config.charset, config.batch_size,
                         pool_size=config.pool_size if config.drawn else 0,
                         fresh_per_step=config.fresh_per_step, workers=config.workers,
                         seed=config.seed, epoch_size=data.epoch_size,
                         rank=procs.rank, world=procs.world, state=stream_state)
    if procs.main:
        how = "bf16 autocast" if dtype == torch.bfloat16 else "fp16 autocast" if dtype else "float32"
        source = f"drawn {config.min_length}-{config.max_length} characters" if config.drawn \
            else f"{data.epoch_size} images of {config.data_dir}"
        log(f"training on {device}{f' x {procs.world} processes' if procs.world > 1 else ''}, {how}, "
            f"{count_parameters(model):,} parameters ({config.preset}), charset of {len(config.charset)}, "
            f"{source}, {config.steps} steps of {config.batch_size}, jitter {config.jitter:g}, "
            + (f"weights' moving average (decay {config.ema:g}) evaluated" if config.ema else "no moving average")
            + (f", resuming at step {step}" if step else ""))

    def elapsed_now() -> float:
        return elapsed + time.perf_counter() - started

    def score(decoder: str = "greedy") -> EvalResult:
        return evaluate(scored, data.val_images, data.val_labels, config.charset, decoder, config.beam_width,
                        config.min_length, config.max_length)

    def checkpoint(complete: bool, metrics: Optional[Dict[str, float]] = None,
                   calibration: Optional[Dict[str, Any]] = None) -> None:
        rng = procs.gather(_rng_state(device, jitter_rng))
        streams = procs.gather(stream.state_dict())
        if not procs.main:
            return
        save_checkpoint(path, {
            "config": config.to_dict(), "charset": config.charset, "step": step, "complete": complete,
            "state_dict": {k: v.detach().cpu() for k, v in scored.state_dict().items()},
            **({"train_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "ema_steps": int(ema.n_averaged)} if ema is not None else {}),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": rng, "streams": streams, "elapsed": elapsed_now(),
            "running_loss": running, "metrics": dict(metrics or {}), "history": history, "init": init,
            **({"calibration": calibration} if calibration is not None else {}),
        })
        write_csv(history, path.with_name("log.csv"))

    evaluations: Dict[str, EvalResult] = {}
    stop = _StopRequest()
    try:
        if config.drawn and config.pool_size:
            with tqdm(total=config.pool_size, desc="drawing the pool", unit="img", disable=not progress,
                      leave=False) as bar:
                stream.fill(bar.update)
        net.train()
        with tqdm(total=config.steps, initial=step, desc="training", unit="step", disable=not progress) as bar:
            while step < config.steps:
                batch = stream.next()
                images = jitter(to_model_input(batch.images).to(device, non_blocking=True), batch.widths,
                                jitter_rng, config.jitter)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = net(images)
                loss = ctcx.ctc_loss_with_logits(logits, batch.targets.to(device),
                                                 CRNN.output_lengths(batch.widths), batch.target_lengths,
                                                 blank=0, reduction="mean", zero_infinity=True)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                step += 1
                bar.update()

                record: Dict[str, float] = {}
                if step % config.log_every == 0 or step == config.steps:
                    value = procs.mean(loss.item())
                    running = value if running is None else 0.9 * running + 0.1 * value
                    record.update(loss=running, lr=scheduler.get_last_lr()[0])
                    bar.set_postfix(loss=f"{running:.3f}")
                if procs.main and data.val_labels and config.eval_every and step % config.eval_every == 0 \
                        and step < config.steps:
                    result = score()
                    net.train()
                    record.update(accuracy=result.accuracy, accuracy_ci=result.accuracy_ci, cer=result.cer)
                    log(f"step {step}: validation exact match {result.accuracy:.2%} "
                        f"(any case {result.accuracy_ci:.2%}), CER {result.cer:.2%}, {elapsed_now():.0f} s")
                procs.barrier()
                if record:
                    history.append({"step": step, "seconds": elapsed_now(), **record})
                    if procs.main:
                        write_csv(history, path.with_name("log.csv"))
                if config.save_every and step % config.save_every == 0 and step < config.steps:
                    checkpoint(complete=False)
                if on_step is not None:
                    on_step(step)
                if procs.any(stop.requested) and step < config.steps:
                    checkpoint(complete=False)
                    if procs.main:
                        log(f"stopped by {stop.requested or 'another process'}: saved step {step} to {path}; "
                            f"continue with --resume")
                    raise KeyboardInterrupt
    finally:
        stop.restore()
        stream.close()

    _check_replicas_agree(model, procs, log)
    if scored is not model:
        _check_replicas_agree(scored, procs, log)  # the weights saved
    metrics: Dict[str, float] = {}
    if procs.main and data.val_labels:
        for decoder in config.decoders:
            evaluations[decoder] = result = score(decoder)
            metrics.update({f"{decoder}_accuracy": result.accuracy, f"{decoder}_accuracy_ci": result.accuracy_ci,
                            f"{decoder}_cer": result.cer})
        greedy = evaluations.get("greedy") or next(iter(evaluations.values()))
        history[-1].update(accuracy=greedy.accuracy, accuracy_ci=greedy.accuracy_ci, cer=greedy.cer)
        metrics["val_size"] = greedy.count
    calibration = None
    if procs.main and data.val_labels:
        calibration = _calibrate(scored, data, config, log)
    metrics.update(seconds=elapsed_now(), samples=stream.consumed * procs.world)
    checkpoint(complete=True, metrics=metrics, calibration=calibration)
    if procs.main and plots:
        plot_curves(history, path.with_name("curves.png"),
                    title=f"{config.preset} CRNN, {config.steps} steps of {config.batch_size}")
    elif procs.main:
        log(PLOT_MISSING)
    return TrainResult(scored.eval(), config, evaluations, path, elapsed_now(), history, calibration)


def _calibrate(model: CRNN, data: "Data", config: TrainConfig, log: Callable[[str], None]
               ) -> Optional[Dict[str, Any]]:
    """The checkpoint's ``calibration`` entry, fitted on the validation set; None if no label is usable."""
    try:
        calibration = fit_calibration(model, data.val_images, data.val_labels, config.charset)
    except ValueError as err:  # no validation label the model can give
        log(f"no temperature fitted: {err}; confidences will use T = 1")
        return None
    log(f"temperature {calibration['temperature']:.3g} fitted on {calibration['fitted_on']} validation images: "
        f"ECE of the greedy readings {calibration['ece_before']:.2%} at T = 1, {calibration['ece_after']:.2%} after")
    return calibration


def _resolve_cpu_amp(config: TrainConfig, data: "Data", model: CRNN, procs: _Processes,
                     log: Callable[[str], None]) -> TrainConfig:
    """``amp="auto"`` on a CPU: bf16 if rank 0's probe finds it clearly faster, else off (every rank alike)."""
    sample = data.train[0][0]  # (C, H, W) uint8, as training preprocesses it
    example = to_model_input(torch.from_numpy(np.array(sample))[None].expand(
        config.batch_size, -1, -1, -1).contiguous())
    frames = example.shape[-1] // 4
    fp32, bf16 = probe_cpu_bf16(model, example, max(1, min(config.max_length, frames // 2)))
    choice = procs.gather("bf16" if bf16_pays(fp32, bf16) else "off")[0]
    if procs.main:
        log(f"--amp auto: {'bf16 autocast' if choice == 'bf16' else 'float32'} (a probe step took "
            f"{fp32 * 1e3:.0f} ms in float32, {bf16 * 1e3:.0f} ms in bf16; bf16 needs {AMP_SPEEDUP:g}x)")
    return dataclasses.replace(config, amp=choice)
