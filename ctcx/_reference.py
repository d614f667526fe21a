"""Short, obviously-correct reference implementations used by the tests.

Slow on purpose: plain Python loops over the textbook recursions, in float64.
"""
from __future__ import annotations

import itertools
import math
from typing import List, Optional, Sequence

import torch

NEG_INF = float("-inf")


def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(v - m) for v in values))


def ctc_nll_reference(log_probs: torch.Tensor, target: Sequence[int], blank: int = 0) -> float:
    """-log p(target | x) by the forward (alpha) recursion of Graves et al. 2006, eq. 5-8.

    log_probs: (T, C) log-probabilities of one sample (only its valid frames).
    """
    lp = log_probs.double().tolist()
    ext = [blank]
    for c in target:
        ext += [int(c), blank]
    S, T = len(ext), len(lp)
    if T == 0:
        return 0.0 if not target else math.inf
    alpha = [NEG_INF] * S
    alpha[0] = lp[0][ext[0]]
    if S > 1:
        alpha[1] = lp[0][ext[1]]
    for t in range(1, T):
        new = []
        for s in range(S):
            terms = [alpha[s]]
            if s >= 1:
                terms.append(alpha[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[s - 2])
            new.append(_logsumexp(terms) + lp[t][ext[s]])
        alpha = new
    return -_logsumexp(alpha[-2:] if S > 1 else alpha[-1:])


def ctc_loss_reference(log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: Sequence[int],
                       target_lengths: Sequence[int], blank: int = 0) -> torch.Tensor:
    """Per-sample CTC losses (N,) in float64 for (T, N, C) log_probs and padded (N, S) targets."""
    return torch.tensor([
        ctc_nll_reference(log_probs[: int(input_lengths[n]), n], targets[n, : int(target_lengths[n])].tolist(), blank)
        for n in range(log_probs.shape[1])
    ], dtype=torch.float64)


def collapse(path: Sequence[int], blank: int = 0) -> List[int]:
    """The CTC many-to-one map B: merge repeated symbols, then remove blanks."""
    return [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]


def ctc_nll_brute_force(log_probs: torch.Tensor, target: Sequence[int], blank: int = 0) -> float:
    """-log p(target | x) by enumerating all C**T alignments (tiny T and C only)."""
    lp = log_probs.double().tolist()
    T, C = len(lp), (len(lp[0]) if lp else 0)
    target = [int(c) for c in target]
    scores = [sum(lp[t][c] for t, c in enumerate(path))
              for path in itertools.product(range(C), repeat=T) if collapse(path, blank) == target]
    if T == 0:
        return 0.0 if not target else math.inf
    return -_logsumexp(scores) if scores else math.inf


def _satisfies(labelling: Sequence[int], min_length: int, max_length: float, allowed) -> bool:
    return (min_length <= len(labelling) <= max_length
            and (allowed is None or all(bool(allowed[c]) for c in labelling)))


def ctc_decode_brute_force(log_probs: torch.Tensor, blank: int = 0, min_length: int = 0,
                           max_length: int | None = None, allowed=None) -> List[tuple]:
    """Every labelling with its exact log P(labelling | x), best first, by
    enumerating all C**T alignments (tiny T and C only).

    log_probs: (T, C) of one sample. Labellings outside the constraints
    (length in [min_length, max_length], tokens with allowed[c] true) are left
    out. Returns [(tokens tuple, log-probability)].
    """
    lp = log_probs.double().tolist()
    T, C = len(lp), log_probs.shape[1]
    max_length = math.inf if max_length is None else max_length
    scores: dict = {}
    for path in itertools.product(range(C), repeat=T):
        scores.setdefault(tuple(collapse(path, blank)), []).append(sum(lp[t][c] for t, c in enumerate(path)))
    out = [(y, _logsumexp(v)) for y, v in scores.items() if _satisfies(y, min_length, max_length, allowed)]
    return sorted((h for h in out if h[1] > NEG_INF), key=lambda h: -h[1])


def prefix_beam_search_reference(log_probs: torch.Tensor, beam_width: int, blank: int = 0,
                                 min_length: int = 0, max_length: int | None = None,
                                 allowed=None) -> List[tuple]:
    """Textbook prefix beam search (Hannun et al. 2014, algorithm 1) in float64.

    log_probs: (T, C) of one sample. Each prefix keeps log P(blank-ending) and
    log P(non-blank-ending); a prefix reached from several parents sums them.
    Constraints as in ctcx.beam_search: no prefix longer than max_length, none
    that can no longer reach min_length in the frames left, only allowed
    tokens. The start frame of a prefix's last token follows its larger
    contribution (its own continuation vs. its parent's extension). Returns
    the final beam, best first: [(tokens tuple, log-probability, start frames tuple)].
    """
    lp = log_probs.double().tolist()
    T, C = len(lp), log_probs.shape[1]
    max_length = T if max_length is None else max_length
    tokens = [c for c in range(C) if c != blank and (allowed is None or bool(allowed[c]))]
    # prefix -> (log P blank-ending, log P non-blank-ending, start frames)
    beam = {(): (0.0, NEG_INF, ())} if T > 0 or min_length == 0 else {}
    for t in range(T):
        frame = lp[t]
        remaining = T - 1 - t
        carried: dict = {}   # prefix -> [pb, pnb] from the prefix itself
        extended: dict = {}  # prefix -> (log P, start frames) from its parent
        for y, (pb, pnb, times) in beam.items():
            total = _logsumexp([pb, pnb])
            carried[y] = [total + frame[blank], pnb + frame[y[-1]] if y else NEG_INF, times]
            if len(y) >= max_length:
                continue
            for c in tokens:
                from_parent = (pb if y and y[-1] == c else total) + frame[c]
                extended[y + (c,)] = (from_parent, times + (t,))
        beam = {}
        for y in set(carried) | set(extended):
            pb, pnb, times = carried.get(y, [NEG_INF, NEG_INF, ()])
            ext, ext_times = extended.get(y, (NEG_INF, ()))
            if ext > _logsumexp([pb, pnb]):
                times = ext_times
            pnb = _logsumexp([pnb, ext])
            if _logsumexp([pb, pnb]) > NEG_INF and len(y) + remaining >= min_length:
                beam[y] = (pb, pnb, times)
        best = sorted(beam, key=lambda y: -_logsumexp(beam[y][:2]))[:beam_width]
        beam = {y: beam[y] for y in best}
    return sorted(((y, _logsumexp([pb, pnb]), times) for y, (pb, pnb, times) in beam.items()),
                  key=lambda h: -h[1])


def _extended(target: Sequence[int], blank: int) -> List[int]:
    ext = [blank]
    for c in target:
        ext += [int(c), blank]
    return ext


def star_reference(row: Sequence[float], blank: int, before: int, after: int, penalty: float) -> float:
    """ctcx.forced_align's wildcard at one frame (``row``: its C log-probabilities)
    in the gap between labels ``before`` and ``after`` (-1 at an end): the best
    class that is none of blank, before, after, plus ``penalty``; -inf if none."""
    best = max((v for c, v in enumerate(row) if c not in (blank, before, after)), default=NEG_INF)
    return best + penalty


def forced_align_reference(log_probs: torch.Tensor, target: Sequence[int], blank: int = 0,
                           star_penalty: Optional[float] = None):
    """The most probable CTC alignment of ``target`` by the Viterbi recursion
    (Graves et al. 2006's forward recursion with max for sum), float64, with
    ctcx's tie rule: among equal predecessors the one that advanced least
    (stay, then one state, then two), and at the last frame the final blank
    before the last label.

    log_probs: (T, C) of one sample (its valid frames); star_penalty: None, or
    the wildcard's penalty (ctcx.forced_align's ``star=True``: a blank state
    takes the larger of the blank's score and the wildcard's,
    :func:`star_reference`, the blank's on a tie; a wildcard frame is labelled
    C). Returns (path, score):
    the class of every frame and the path's log-probability, or (None, -inf)
    when no alignment has a finite log-probability.
    """
    lp = log_probs.double().tolist()
    C = log_probs.shape[1]
    ext = _extended(target, blank)
    S, T = len(ext), len(lp)
    if T == 0:
        return ([], 0.0) if not target else (None, NEG_INF)

    def star(t, s):
        if star_penalty is None or s % 2:
            return NEG_INF
        return star_reference(lp[t], blank, ext[s - 1] if s else -1, ext[s + 1] if s + 1 < S else -1,
                              star_penalty)

    def on_star(t, s):
        return star(t, s) > lp[t][blank] if s % 2 == 0 else False

    def value(t, s):
        return star(t, s) if on_star(t, s) else lp[t][ext[s]]

    alpha = [NEG_INF] * S
    alpha[0] = value(0, 0)
    if S > 1:
        alpha[1] = value(0, 1)
    choices = []
    for t in range(1, T):
        new, step = [], []
        for s in range(S):
            best, move = alpha[s], 0
            if s >= 1 and alpha[s - 1] > best:
                best, move = alpha[s - 1], 1
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] and alpha[s - 2] > best:
                best, move = alpha[s - 2], 2
            new.append(best + value(t, s))
            step.append(move)
        alpha = new
        choices.append(step)
    s = S - 1
    if S > 1 and alpha[S - 2] > alpha[S - 1]:
        s = S - 2
    if alpha[s] == NEG_INF:
        return None, NEG_INF
    score = alpha[s]
    path = [0] * T
    for t in range(T - 1, -1, -1):
        path[t] = C if on_star(t, s) else ext[s]
        if t:
            s -= choices[t - 1][s]
    return path, score


def forced_align_brute_force(log_probs: torch.Tensor, target: Sequence[int], blank: int = 0,
                             star_penalty: Optional[float] = None):
    """Every valid CTC alignment of ``target`` (a path of T classes that
    collapses to it) with its log-probability, best first, by enumerating all
    C**T paths (tiny T and C only). With ``star_penalty``, class C is the
    wildcard: it may stand wherever a blank may, and in the gap after the
    k-th label it scores :func:`star_reference` with the k-th and (k+1)-th
    labels as neighbours. Returns [(path tuple, log-probability)]."""
    lp = log_probs.double().tolist()
    T, C = len(lp), log_probs.shape[1]
    target = [int(c) for c in target]
    classes = range(C + 1) if star_penalty is not None else range(C)
    out = []
    for path in itertools.product(classes, repeat=T):
        if collapse([blank if c == C else c for c in path], blank) != target:
            continue
        score, emitted, previous = 0.0, 0, blank
        for t, c in enumerate(path):
            if c == C:
                before = target[emitted - 1] if emitted else -1
                after = target[emitted] if emitted < len(target) else -1
                score += star_reference(lp[t], blank, before, after, star_penalty)
                previous = blank
            else:
                if c != blank and c != previous:
                    emitted += 1
                score += lp[t][c]
                previous = c
        out.append((path, score))
    return sorted(out, key=lambda p: -p[1])


class ArpaReference:
    """A back-off n-gram model read from an ARPA file into a dict, scored by the
    textbook recursion (Katz 1987): P(w | h) = p(h w) if listed, else
    bow(h) P(w | h minus its oldest word); natural logs. Independent of
    ctcx.NgramLM's hash tables. Words not listed score as <unk> (log10 -100
    when the file lists no <unk>)."""

    def __init__(self, path: str) -> None:
        self.grams: dict = {}
        order = 0
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if not fields:
                    continue
                if fields[0].startswith("\\") and fields[0].endswith("-grams:"):
                    order = int(fields[0][1:-7])
                elif fields[0] == "\\end\\":
                    order = 0
                elif order and not fields[0].startswith("\\"):
                    bow = float(fields[order + 1]) if len(fields) == order + 2 else 0.0
                    self.grams[tuple(fields[1:order + 1])] = (float(fields[0]) * math.log(10), bow * math.log(10))
                    self.order = max(getattr(self, "order", 0), order)
        self.grams.setdefault(("<unk>",), (-100 * math.log(10), 0.0))

    def prob(self, context: tuple, word: str) -> float:
        if (word,) not in self.grams:
            word = "<unk>"
        context = context[-(self.order - 1):] if self.order > 1 else ()
        while True:
            if context + (word,) in self.grams:
                return self.grams[context + (word,)][0]
            if not context:
                raise AssertionError("unigram missing")
            bow = self.grams.get(context, (0.0, 0.0))[1]
            return bow + self.prob(context[1:], word)

    def score(self, words: Sequence[str], bos: bool = True, eos: bool = True) -> float:
        context = ("<s>",) if bos else ()
        total = 0.0
        for w in list(words) + (["</s>"] if eos else []):
            total += self.prob(context, w)
            context = context + (w if (w,) in self.grams else "<unk>",)
        return total


def _split_words(y: Sequence[int], delimiter: Optional[int]) -> List[tuple]:
    if delimiter is None:
        return [tuple(y)]
    words, current = [], []
    for c in y:
        if c == delimiter:
            words.append(tuple(current))
            current = []
        else:
            current.append(c)
    return words + [tuple(current)]


def fused_score_reference(y: Sequence[int], tokens: Sequence[str], lm: Optional[ArpaReference] = None,
                          unit: str = "char", delimiter: Optional[int] = None, lm_weight: float = 0.5,
                          insertion_bonus: float = 0.0, lexicon=None, hotwords=None):
    """The fusion part of a finished hypothesis' score (ctcx/lm_fusion.h's
    definition), from its tokens ``y``: (extra, ln P_lm), or None when the
    lexicon (a set of words as strings) refuses it. hotwords: {word: bonus}."""
    words = _split_words(y, delimiter)
    text = ["".join(tokens[c] for c in w) for w in words]
    if lexicon is not None and (not y or any(t not in lexicon for t in text)):
        return None
    lm_total = 0.0
    if lm is not None and unit == "word":
        units = [t for t in text if t]
        lm_total = lm.score(units)
    else:
        units = list(y)
        if lm is not None:
            lm_total = lm.score([tokens[c] for c in y])
    hot = sum(hotwords.get(t, 0.0) for t in text if t) if hotwords else 0.0
    return lm_weight * lm_total + insertion_bonus * len(units) + hot, lm_total


def lm_decode_brute_force(log_probs: torch.Tensor, tokens: Sequence[str], blank: int = 0,
                          max_length: Optional[int] = None, **fusion) -> List[tuple]:
    """Every labelling of up to max_length (default T) tokens with its fused
    score, best first: [(tokens tuple, fused, ln P_ctc, ln P_lm)], by
    enumeration (exact CTC by the alpha recursion). ``fusion``: the keyword
    arguments of fused_score_reference."""
    T, C = log_probs.shape
    max_length = T if max_length is None else max_length
    symbols = [c for c in range(C) if c != blank]
    out = []
    for n in range(max_length + 1):
        for y in itertools.product(symbols, repeat=n):
            ctc = -ctc_nll_reference(log_probs, y, blank)
            if ctc == NEG_INF:
                continue
            part = fused_score_reference(y, tokens, **fusion)
            if part is None:
                continue
            out.append((y, ctc + part[0], ctc, part[1]))
    return sorted(out, key=lambda h: -h[1])


class FusionReference:
    """ctcx/lm_fusion.h's fusion state machine in plain Python (states are
    tuples), for the beam search reference below. lm: a ctcx.NgramLM (its
    Python scorer, not the kernel's), lexicon: a set of words, hotwords:
    {word: bonus}; tokens: the string of each class."""

    def __init__(self, tokens, lm=None, delimiter=None, lm_weight=0.5, insertion_bonus=0.0, lexicon=None,
                 hotwords=None):
        self.tokens, self.lm, self.delimiter = list(tokens), lm, delimiter
        self.alpha, self.beta, self.lexicon, self.hot = lm_weight, insertion_bonus, lexicon, hotwords or {}
        self.prefixes = {w[:i] for w in (lexicon or ()) for i in range(len(w) + 1)}
        self.hot_prefixes = {}
        for w, b in self.hot.items():
            for i in range(1, len(w) + 1):
                share = b * i / len(w)
                self.hot_prefixes[w[:i]] = max(self.hot_prefixes.get(w[:i], share), share)

    def begin(self):
        lm_state = self.lm.begin() if self.lm is not None else None
        return (lm_state, "", 0, 0.0, 0.0)  # lm state, current word, units, ln P_lm, hotword bonus done

    def extra(self, s):
        lm_state, word, units, lm, done = s
        partial = self.hot_prefixes.get(word, 0.0) if (self.hot and word) else 0.0
        return self.alpha * lm + self.beta * units + done + partial

    def step(self, s, c):
        lm_state, word, units, lm, done = s
        word_lm = self.lm is not None and self.lm.unit == "word"
        if c == self.delimiter:
            if self.lexicon is not None and word not in self.lexicon:
                return None
            done += self.hot.get(word, 0.0) if word else 0.0
            if word_lm:
                if word:
                    p, lm_state = self.lm.advance(lm_state, word)
                    lm, units = lm + p, units + 1
            else:
                if self.lm is not None:
                    p, lm_state = self.lm.advance(lm_state, self.tokens[c])
                    lm += p
                units += 1
            return (lm_state, "", units, lm, done)
        word += self.tokens[c]
        if self.lexicon is not None and word not in self.prefixes:
            return None
        if not word_lm:
            if self.lm is not None:
                p, lm_state = self.lm.advance(lm_state, self.tokens[c])
                lm += p
            units += 1
        return (lm_state, word, units, lm, done)

    def finish(self, s):
        lm_state, word, units, lm, done = s
        if self.lexicon is not None and word not in self.lexicon:
            return None
        done += self.hot.get(word, 0.0) if word else 0.0
        if self.lm is not None:
            if self.lm.unit == "word" and word:
                p, lm_state = self.lm.advance(lm_state, word)
                lm, units = lm + p, units + 1
            lm += self.lm.finish(lm_state)
        return self.alpha * lm + self.beta * units + done, lm


def lm_prefix_beam_search_reference(log_probs: torch.Tensor, beam_width: int, fusion: FusionReference,
                                    blank: int = 0, beam_threshold: float = math.inf) -> List[tuple]:
    """The fused prefix beam search of csrc/cpu/ctc_lm_beam_search_cpu.cpp
    without its pruning: every STAY and every extension of every prefix is a
    candidate, the best beam_width by (score, candidate id) survive (STAY k:
    id k; EXT(j, c): K + j C + c) among those within beam_threshold of the
    frame's best. log_probs: (T, C) of one sample. Returns
    the finished hypotheses, best first: [(tokens tuple, fused, ln P_ctc)]."""
    lp = log_probs.double().tolist()
    T, C = len(lp), log_probs.shape[1]
    K = beam_width
    s0 = fusion.begin()
    beam = [((), 0.0, NEG_INF, s0, fusion.extra(s0))]  # prefix, pb, pnb, state, extra
    for t in range(T):
        row = lp[t]
        where = {y: k for k, (y, *_rest) in enumerate(beam)}
        cands = []
        for k, (y, pb, pnb, st, extra) in enumerate(beam):
            total = _logsumexp([pb, pnb])
            new_pb = total + row[blank]
            carry = pnb + row[y[-1]] if y else NEG_INF
            j = where.get(y[:-1]) if y else None
            merged = NEG_INF
            if j is not None:
                _, jpb, jpnb, _, _ = beam[j]
                merged = (jpb if beam[j][0] and beam[j][0][-1] == y[-1] else _logsumexp([jpb, jpnb])) + row[y[-1]]
            new_pnb = _logsumexp([carry, merged])
            score = _logsumexp([new_pb, new_pnb])
            if score > NEG_INF:
                cands.append((score + extra, k, (y, new_pb, new_pnb, st, extra)))
        for j, (y, pb, pnb, st, extra) in enumerate(beam):
            total = _logsumexp([pb, pnb])
            for c in range(C):
                if c == blank or y + (c,) in where:
                    continue
                ctc = (pb if y and y[-1] == c else total) + row[c]
                if ctc == NEG_INF:
                    continue
                nst = fusion.step(st, c)
                if nst is None:
                    continue
                e = fusion.extra(nst)
                cands.append((ctc + e, K + j * C + c, (y + (c,), NEG_INF, ctc, nst, e)))
        cands.sort(key=lambda x: (-x[0], x[1]))
        beam = [x[2] for x in cands[:K] if cands and x[0] >= cands[0][0] - beam_threshold]
    out = []
    for y, pb, pnb, st, _ in beam:
        fin = fusion.finish(st)
        ctc = _logsumexp([pb, pnb])
        if fin is not None and ctc > NEG_INF:
            out.append((y, ctc + fin[0], ctc))
    return sorted(out, key=lambda h: -h[1])
