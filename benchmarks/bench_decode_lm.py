"""Decoding with a language model and a lexicon on a real word-reading task:
ctcx against pyctcdecode + KenLM and flashlight-text, side by side in one process.

    python benchmarks/bench_decode.py --lm runs/words     # after benchmarks/word_task.py and its training

Reads, under the task folder (benchmarks/word_task.py): ``model/checkpoint.pt``
(the reader), ``test/`` (2,000 images of words no training image shows),
``train/`` (its validation split, the images the trainer held out, tunes the
weights), ``char5.arpa``, ``words2.arpa`` and ``lexicon.txt``.

Decoders (beam width --beam, default 32, for all):
- greedy (``ctcx.greedy_decode``) and ``ctcx.beam_search`` without LM;
- ctcx + char 5-gram (``lm=NgramLM(char5.arpa)``), ctcx + lexicon, ctcx +
  lexicon + char 5-gram, ctcx + lexicon + word LM (``words2.arpa``, a whole
  hypothesis is one word): each exact (no pruning) and with
  ``beam_threshold=10`` (pyctcdecode's default beam_prune_logp);
- pyctcdecode 0.5.0 + KenLM with ``words2.arpa`` and the lexicon as its
  unigrams (its LM is word-level; it cannot use a char LM), its defaults
  otherwise (beam_prune_logp -10, token_min_logp -5);
- flashlight-text 0.0.7 (torchaudio's ``ctc_decoder``): its lexicon decoder
  with ``words2.arpa`` and the lexicon, and its lexicon-free decoder with
  ``char5.arpa``, at torchaudio's default beam_threshold 50.
Each LM decoder's weights (alpha, beta) are tuned on --tune images of the
validation split over a small grid, then used on the test set. Reported:
word accuracy (exact match), character error rate, and seconds per image at
one thread (every peer is single-threaded; "vs ctcx" compares equal cores).
ctcx is also timed at torch's thread count.

Needs, beside requirements.txt: ``pip install pyctcdecode==0.5.0 flashlight-text==0.0.7`` and
``CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install kenlm==0.2.0`` (a missing peer is skipped with a note).
"""
from __future__ import annotations

import importlib.util
import logging
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch

import ctcx
from ctcx.captcha.checkpoint import load_checkpoint
from ctcx.captcha.folder import FolderImages, read_folder, split_items
from ctcx.captcha.images import to_model_input
from ctcx.captcha.metrics import character_error_rate, exact_match
from ctcx.captcha.model import CRNN

ALPHAS = (0.1, 0.3, 0.6, 1.0, 1.5)
WORD_SCORES = (0.0, -3.0, -10.0)  # flashlight's lexicon decoder (see Decoders)
THRESHOLD = 10.0  # ctcx's approximate rows: pyctcdecode's default beam_prune_logp
FLASHLIGHT_THRESHOLD = 50.0  # torchaudio ctc_decoder's default beam_threshold
BETAS = (0.0, 1.0, 2.5)


def task_posteriors(model: CRNN, config, items) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
    """(T, N, C) float32 log-probabilities padded to the longest image, (N,) frames, labels."""
    dataset = FolderImages(items, **config.preprocessing)
    images = [dataset[i][0] for i in range(len(dataset))]
    by_width: Dict[int, List[int]] = {}
    for i, image in enumerate(images):
        by_width.setdefault(image.shape[-1], []).append(i)
    outs: Dict[int, torch.Tensor] = {}
    model.eval()
    with torch.no_grad():
        for indices in by_width.values():
            batch = torch.from_numpy(np.stack([images[i] for i in indices]))
            lp = model(to_model_input(batch)).float().log_softmax(-1)
            for j, i in enumerate(indices):
                outs[i] = lp[:, j]
    T = max(x.shape[0] for x in outs.values())
    C = next(iter(outs.values())).shape[1]
    lp = torch.full((T, len(images), C), float("-inf"))
    lp[:, :, 0] = 0.0  # padding frames: certain blanks (never read: lengths stop before them)
    lengths = torch.zeros(len(images), dtype=torch.long)
    for i, x in outs.items():
        lp[:x.shape[0], i] = x
        lengths[i] = x.shape[0]
    return lp, lengths, [label for _, label in items]


def scores(texts: Sequence[str], references: Sequence[str]) -> Tuple[float, float]:
    return exact_match(list(texts), list(references)), character_error_rate(list(texts), list(references))


class Decoders:
    """name -> (decode(lp, lengths, alpha, beta) -> texts, what to tune: True (both
    weights), "alpha" (flashlight's lexicon-free decoder has no insertion score), "word_score"
    (alpha and a word penalty) or False)."""

    def __init__(self, task: Path, charset: str, beam: int) -> None:
        self.charset, self.beam = charset, beam
        self.tokens = ["<b>"] + list(charset)
        self.words = [w for w in (task / "lexicon.txt").read_text().split("\n") if w]
        self.char_lm = ctcx.NgramLM.from_arpa(task / "char5.arpa", self.tokens)
        self.word_lm = ctcx.NgramLM.from_arpa(task / "words2.arpa", self.tokens, unit="word")
        self.lexicon = ctcx.Lexicon(self.words, self.tokens)
        self.task = task
        self.table: Dict[str, Tuple[Callable, object]] = {
            "greedy": (self.greedy, False),
            "ctcx beam": (lambda lp, n, a, b: self.ctcx(lp, n), False),
        }
        for cut in (None, THRESHOLD):
            tag = "" if cut is None else f", threshold {cut:g}"
            self.table.update({
                f"ctcx + char 5-gram{tag}": (lambda lp, n, a, b, cut=cut: self.ctcx(
                    lp, n, lm=self.char_lm, lm_weight=a, insertion_bonus=b, beam_threshold=cut), True),
                f"ctcx + lexicon{tag}": (lambda lp, n, a, b, cut=cut: self.ctcx(
                    lp, n, lexicon=self.lexicon, beam_threshold=cut), False),
                f"ctcx + lexicon + char 5-gram{tag}": (lambda lp, n, a, b, cut=cut: self.ctcx(
                    lp, n, lm=self.char_lm, lexicon=self.lexicon, lm_weight=a, insertion_bonus=b,
                    beam_threshold=cut), True),
                f"ctcx + lexicon + word LM{tag}": (lambda lp, n, a, b, cut=cut: self.ctcx(
                    lp, n, lm=self.word_lm, lexicon=self.lexicon, lm_weight=a, insertion_bonus=b,
                    beam_threshold=cut), True),
            })
        self._peers()

    def greedy(self, lp, lengths, alpha, beta):
        return ["".join(self.charset[c - 1] for c in row) for row in ctcx.greedy_decode(lp, lengths)]

    def ctcx(self, lp, lengths, **fusion):
        r = ctcx.beam_search(lp, lengths, beam_width=self.beam, **fusion)
        return [s[0] for s in ctcx.decode_strings(r.tokens, r.lengths, self.charset)]

    def _peers(self) -> None:
        if importlib.util.find_spec("pyctcdecode") and importlib.util.find_spec("kenlm"):
            logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
            from pyctcdecode import build_ctcdecoder

            cache: Dict[Tuple[float, float], object] = {}

            def pyctc(lp, lengths, alpha, beta):
                if (alpha, beta) not in cache:
                    cache[(alpha, beta)] = build_ctcdecoder([""] + list(self.charset),
                                                            kenlm_model_path=str(self.task / "words2.arpa"),
                                                            unigrams=self.words, alpha=alpha, beta=beta)
                decoder = cache[(alpha, beta)]
                arrays = [lp[:int(n), i].numpy() for i, n in enumerate(lengths)]
                return [decoder.decode(a, beam_width=self.beam).replace(" ", "") for a in arrays]
            self.table["pyctcdecode + KenLM word LM + unigrams"] = (pyctc, True)
        else:
            print("pyctcdecode or kenlm not installed: skipped")
        if importlib.util.find_spec("flashlight"):
            from flashlight.lib.text import decoder as fl
            from flashlight.lib.text.dictionary import Dictionary

            # Flashlight's CTC criterion needs a silence token apart from the
            # blank (with sil = blank it reads "dead" as "deeadd"): a class
            # that never scores, appended as column C ("|", as torchaudio's).
            token_dict = Dictionary(self.tokens + ["|"])
            C = len(self.tokens) + 1
            self.silence = C - 1

            def lexicon_free(lp, lengths, alpha, beta):
                lm = fl.KenLM(str(self.task / "char5.arpa"), token_dict)
                options = fl.LexiconFreeDecoderOptions(beam_size=self.beam, beam_size_token=C,
                                                       beam_threshold=FLASHLIGHT_THRESHOLD, lm_weight=alpha, sil_score=0.0, log_add=True,
                                                       criterion_type=fl.CriterionType.CTC)
                decoder = fl.LexiconFreeDecoder(options, lm, self.silence, 0, [])
                return [self._flashlight_tokens(decoder, lp, i, int(n)) for i, n in enumerate(lengths)]

            word_dict = Dictionary(list(self.words))  # create_word_dict fails in 0.0.7 (no <unk> yet)
            word_dict.add_entry("<unk>")
            unk = word_dict.get_index("<unk>")
            lexicon_lm = fl.KenLM(str(self.task / "words2.arpa"), word_dict)
            trie = fl.Trie(C, self.silence)
            start = lexicon_lm.start(False)
            for w in self.words:
                index = word_dict.get_index(w)
                _, score = lexicon_lm.score(start, index)
                trie.insert([token_dict.get_index(ch) for ch in w], index, score)
            trie.smear(fl.SmearingMode.MAX)

            def lexicon_decoder(lp, lengths, alpha, beta):
                options = fl.LexiconDecoderOptions(beam_size=self.beam, beam_size_token=C,
                                                   beam_threshold=FLASHLIGHT_THRESHOLD,
                                                   lm_weight=alpha, word_score=beta, unk_score=float("-inf"),
                                                   sil_score=0.0, log_add=True, criterion_type=fl.CriterionType.CTC)
                decoder = fl.LexiconDecoder(options, trie, lexicon_lm, self.silence, 0, unk, [], False)
                out = []
                for i, n in enumerate(lengths):
                    x = self._with_silence(lp[:int(n), i])
                    result = decoder.decode(x.ctypes.data, int(n), C)[0]
                    out.append("".join(word_dict.get_entry(w) for w in result.words if w >= 0))
                return out
            # Its word_score is paid per word; without silence between words it
            # would otherwise split one word into several ("gee" + "tt" for "get").
            self.table["flashlight lexicon + KenLM word LM"] = (lexicon_decoder, "word_score")
            self.table["flashlight lexicon-free + KenLM char 5-gram"] = (lexicon_free, "alpha")
        else:
            print("flashlight-text not installed: skipped")

    @staticmethod
    def _with_silence(x: torch.Tensor) -> np.ndarray:
        """(T, C + 1) float32 C-contiguous: x and a silence column that never scores."""
        return torch.cat([x, torch.full((x.shape[0], 1), -1e30)], 1).contiguous().numpy()

    def _flashlight_tokens(self, decoder, lp, i, n) -> str:
        x = self._with_silence(lp[:n, i])
        path = decoder.decode(x.ctypes.data, n, len(self.tokens) + 1)[0].tokens
        out, prev = [], None
        for t in path:
            if t != prev and 0 < t < len(self.tokens):
                out.append(self.tokens[t])
            prev = t
        return "".join(out)


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(task: Path, beam: int = 32, tune: int = 500, repeats: int = 3) -> None:
    model, config, _ = load_checkpoint(task / "model" / "checkpoint.pt", "cpu")
    items = read_folder(task / "train")
    _, validation = split_items(items, config.val_split, config.seed)
    tune_items = validation[:tune]
    test_items = read_folder(task / "test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    dev_lp, dev_n, dev_ref = task_posteriors(model, config, tune_items)
    lp, lengths, refs = task_posteriors(model, config, test_items)
    decoders = Decoders(task, config.charset, beam)
    print(f"task {task}: {len(refs)} test images (T up to {lp.shape[0]}, C = {lp.shape[2]}), weights tuned on "
          f"{len(dev_ref)} validation images, beam {beam}, alpha in {ALPHAS}, beta in {BETAS}")
    print(f"{'decoder':46s} {'alpha':>5s} {'beta':>5s} {'word acc':>9s} {'CER':>7s} {'ms/img 1 thr':>12s}"
          f" {'vs ctcx lex+LM thr':>18s}")
    rows = []
    for name, (decode, tuned) in decoders.table.items():
        best = (0.0, 0.0)
        if tuned:
            betas = {True: BETAS, "alpha": (0.0,), "word_score": WORD_SCORES}[tuned]
            grid = [(a, b) for a in ALPHAS for b in betas]
            best = max(grid, key=lambda ab: scores(decode(dev_lp, dev_n, *ab), dev_ref)[0])
        texts = decode(lp, lengths, *best)
        acc, cer = scores(texts, refs)
        seconds = timed(lambda: decode(lp, lengths, *best), repeats if name.startswith(("ctcx", "greedy")) else 1)
        rows.append((name, best, acc, cer, seconds))
    reference = next((r[4] for r in rows if r[0] == f"ctcx + lexicon + word LM, threshold {THRESHOLD:g}"), None)
    for name, (a, b), acc, cer, seconds in rows:
        ratio = f"{seconds / reference:9.1f}x" if reference else ""
        print(f"{name:46s} {a:5.2f} {b:5.2f} {100 * acc:8.2f}% {100 * cer:6.2f}% {1000 * seconds / len(refs):12.3f}"
              f" {ratio:>18s}")
    torch.set_num_threads(threads)
    for name in (f"ctcx + char 5-gram, threshold {THRESHOLD:g}", f"ctcx + lexicon + word LM, threshold {THRESHOLD:g}"):
        decode = decoders.table[name][0]
        a, b = next(r[1] for r in rows if r[0] == name)
        seconds = timed(lambda: decode(lp, lengths, a, b), repeats)
        print(f"{name} at {threads} threads: {1000 * seconds / len(refs):.3f} ms/img")
