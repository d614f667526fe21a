"""N-gram language models for CTC beam search: ARPA files loaded into flat tensors.

An ARPA file (the text format of SRILM, KenLM's ``lmplz`` and ``nltk``; any
order from 1 to 6, with back-off weights) becomes one open-addressing hash
table that the CPU kernel of :func:`ctcx.beam_search` reads directly: no Python
runs per query. Probabilities follow the usual back-off rule (Katz 1987, as
KenLM and SRILM compute it):

    ln P(w | h_1 .. h_m) = ln p(h_1 .. h_m w)                 if that n-gram is listed
                         = ln b(h_1 .. h_m) + ln P(w | h_2 .. h_m)   otherwise

with ``b`` = 1 (ln b = 0) for a context that is not listed. ARPA stores log10
values; ctcx keeps natural logs (log10 x ln 10) in float32.

Units: with ``unit="char"`` the LM's words are the tokens themselves (each
ARPA word is the string of one class id); with ``unit="word"`` the LM's words
are spelled with tokens and separated by the ``word_delimiter`` class.

``<unk>``: units the ARPA file does not list (a token of a char LM, a word of
a word LM, including partial words that are not words) score as ``<unk>``;
an ARPA file without ``<unk>`` gets one at log10 probability -100, as KenLM
does. ``<s>`` starts every sentence's context (it is never predicted) and
``</s>`` is scored when a hypothesis ends.
"""
from __future__ import annotations

import gzip
import math
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .lexicon import _Trie, _token_table, spell

__all__ = ["NgramLM", "LMState", "MAX_ORDER", "ARPAError"]

#: Highest n-gram order ctcx loads.
MAX_ORDER = 6

_LN10 = math.log(10.0)
_MASK = (1 << 64) - 1
# Hash of an n-gram: the splitmix64-style step of csrc/include/ctcx/ngram_lm.h,
# applied to its units newest first (the predicted unit, then its context
# backwards), so a query extends one hash per back-off level.
_SEED = 0x6A09E667F3BCC908
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_UNK_LOG10 = -100.0
_FROM_ARPA = "ctcx.NgramLM.from_arpa"


class ARPAError(ValueError):
    """A malformed ARPA file; the message names the file and line."""


def _extend(h: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Vectorized twin of ``ngram_extend`` in csrc/include/ctcx/ngram_lm.h (uint64 arrays)."""
    with np.errstate(over="ignore"):
        z = h + np.uint64(_GOLDEN) * (unit.astype(np.uint64) + np.uint64(1))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        return z ^ (z >> np.uint64(31))


def _extend1(h: int, unit: int) -> int:
    z = (h + _GOLDEN * (unit + 1)) & _MASK
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK
    return z ^ (z >> 31)


def _key(h: int) -> int:
    """A hash as the table stores it: int64, 0 reserved for empty slots."""
    h = h or 1
    return h - (1 << 64) if h >= 1 << 63 else h


@dataclass(frozen=True)
class LMState:
    """The context of a hypothesis: its last ``order - 1`` units, oldest first."""

    context: Tuple[int, ...]


class _Lines:
    """Lines of an ARPA file with their numbers, for error messages."""

    def __init__(self, path: str) -> None:
        self.path = path
        opener = gzip.open if path.endswith(".gz") else open
        try:
            with opener(path, "rt", encoding="utf-8") as f:
                self.lines = f.read().split("\n")
        except UnicodeDecodeError as err:
            raise ARPAError(f"{path}: not UTF-8 text ({err})") from None
        self.at = 0

    def error(self, message: str, line: Optional[int] = None) -> ARPAError:
        number = self.at if line is None else line
        return ARPAError(f"{self.path}, line {number}: {message}")

    def next(self) -> Optional[str]:
        """The next line that is not blank (stripped), or None at the end."""
        while self.at < len(self.lines):
            self.at += 1
            text = self.lines[self.at - 1].strip()
            if text:
                return text
        return None


def _float(lines: _Lines, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise lines.error(f"{what} {text!r} is not a number") from None
    if math.isnan(value) or value == math.inf:
        raise lines.error(f"{what} {text!r} is not a log10 probability")
    return value


def _read_arpa(path: str) -> Tuple[List[List[Tuple[Tuple[str, ...], float, float, int]]], str]:
    """Parse ``path``: per order, the n-grams as (words, log10 p, log10 bow, line)."""
    lines = _Lines(path)
    text = lines.next()
    while text is not None and text != "\\data\\":  # ARPA allows a free-text header
        text = lines.next()
    if text is None:
        raise ARPAError(f"{path}: no \\data\\ section; not an ARPA file")
    counts: Dict[int, int] = {}
    text = lines.next()
    while text is not None and text.startswith("ngram "):
        m = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)", text)
        if not m:
            raise lines.error(f"expected 'ngram N=COUNT', got {text!r}")
        order, count = int(m.group(1)), int(m.group(2))
        if order != len(counts) + 1:
            raise lines.error(f"ngram counts must be listed for orders 1, 2, ... in turn; got order {order}")
        counts[order] = count
        text = lines.next()
    if not counts:
        raise lines.error("the \\data\\ section lists no 'ngram N=COUNT' line")
    top = len(counts)
    if top > MAX_ORDER:
        raise ARPAError(f"{path}: order {top} is above the highest supported order {MAX_ORDER}")
    grams: List[List[Tuple[Tuple[str, ...], float, float, int]]] = []
    for order in range(1, top + 1):
        if text != f"\\{order}-grams:":
            raise lines.error(f"expected the section '\\{order}-grams:', got {text!r}"
                              if text is not None else f"the file ends before the section '\\{order}-grams:'")
        section: List[Tuple[Tuple[str, ...], float, float, int]] = []
        header_line = lines.at
        text = lines.next()
        while text is not None and not text.startswith("\\"):
            fields = text.split()
            if len(fields) not in (order + 1, order + 2) or (order == top and len(fields) != order + 1):
                want = f"{order + 1}" if order == top else f"{order + 1} or {order + 2}"
                raise lines.error(f"a {order}-gram line needs {want} fields (log10 p, {order} word(s)"
                                  f"{'' if order == top else ', optional back-off'}), got {len(fields)}: {text!r}")
            logp = _float(lines, fields[0], "probability")
            bow = _float(lines, fields[order + 1], "back-off weight") if len(fields) == order + 2 else 0.0
            if logp > 0:
                raise lines.error(f"probability {fields[0]} is a log10 probability above 0")
            section.append((tuple(fields[1:order + 1]), logp, bow, lines.at))
            text = lines.next()
        if len(section) != counts[order]:
            raise lines.error(f"the \\data\\ header promises {counts[order]} {order}-grams but the section "
                              f"'\\{order}-grams:' starting here lists {len(section)}", line=header_line)
        grams.append(section)
    if text != "\\end\\":
        raise lines.error(f"expected '\\end\\', got {text!r}" if text is not None
                          else "the file ends without '\\end\\'")
    return grams, path


class NgramLM:
    """A back-off n-gram language model over characters or words, for :func:`ctcx.beam_search`.

    Build it with :meth:`from_arpa`. Its tables are CPU tensors read by the
    decoders' kernels; :meth:`score`, :meth:`begin`, :meth:`advance` and
    :meth:`finish` evaluate it from Python (for tests and inspection).

    Attributes:
        order: the n-gram order (1..6).
        unit: ``"char"`` (a unit is a token) or ``"word"``.
        tokens: the string of each class id (the blank's entry unused).
        blank: the blank's class id.
        word_delimiter: the class id that separates words (``unit="word"``;
            optional for ``"char"``, where it is an ordinary unit).
        words: ``unit="word"``: the LM's words in unit-id order (the word of
            unit id i is ``words[i]``); ``"char"``: None (a unit id is a class id).
        bos, eos, unk: unit ids of ``<s>``, ``</s>`` and ``<unk>``.
        keys: (S,) int64 hash table of n-gram hashes (0: empty slot).
        values: (S, 2) float32 ln probability and ln back-off weight of each slot.
        token_units: (C,) int32, ``unit="char"``: the unit of each class (its
            own id, or ``unk`` when the LM does not list it; -1 for the blank).
        trie_children, trie_tokens, trie_nodes, trie_words: ``unit="word"``:
            the words spelled as tokens, a trie in CSR form: node n's children
            are ``trie_nodes[trie_children[n]:trie_children[n + 1]]`` reached by
            the tokens ``trie_tokens[...]`` (sorted); ``trie_words[n]`` is the
            unit id of the word ending at node n or -1. int32.
    """

    def __init__(self) -> None:  # use from_arpa
        self.order = 0
        self.unit = "char"
        self.tokens: Tuple[str, ...] = ()
        self.blank = 0
        self.word_delimiter: Optional[int] = None
        self.words: Optional[List[str]] = None
        self.bos = self.eos = self.unk = -1
        self.keys = torch.zeros(0, dtype=torch.int64)
        self.values = torch.zeros(0, 2, dtype=torch.float32)
        self.token_units = torch.zeros(0, dtype=torch.int32)
        self.trie_children = self.trie_tokens = self.trie_nodes = self.trie_words = torch.zeros(0, dtype=torch.int32)
        self._unit_ids: Dict[str, int] = {}
        self._table: Dict[int, Tuple[float, float]] = {}
        self._on_device: Dict[str, Tuple[List[torch.Tensor], List[int]]] = {}
        self._mask = 0
        self.max_log_prob = 0.0

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_arpa(cls, path: Union[str, os.PathLike], tokens: Sequence[str], unit: str = "char",
                  word_delimiter: Optional[int] = None, *, blank: int = 0) -> "NgramLM":
        """Load an ARPA file (plain or ``.gz``) for decoding ``tokens``.

        Args:
            path: the ARPA file.
            tokens: the string of each class id, C entries (the blank's entry
                is ignored); strings must be distinct and non-empty.
            unit: ``"char"``: every ARPA word is one token's string (or
                ``<s>``, ``</s>``, ``<unk>``); ``"word"``: ARPA words are
                spelled with the tokens (longest token string first) and
                separated by ``word_delimiter`` in the decoded output.
            word_delimiter: the class id between words; with ``unit="word"``
                and None, a whole hypothesis is one word (e.g. reading single
                words), scored when it ends.
            blank: the blank's class id.

        Raises:
            ARPAError (a ValueError): a malformed file (no ``\\data\\``, a
                missing or misordered section, counts that disagree with the
                sections, a line with the wrong number of fields, a value
                that is not a number, a positive log10 probability, an
                n-gram listed twice, a word of a higher order missing from
                the unigrams, a word that cannot be spelled with ``tokens``),
                naming the file and line.
            ValueError: bad ``tokens``, ``unit``, ``word_delimiter`` or ``blank``.
        """
        if unit not in ("char", "word"):
            raise ValueError(f"ctcx.NgramLM.from_arpa: unit must be 'char' or 'word', got {unit!r}")
        pieces = _token_table(_FROM_ARPA, tokens, blank, word_delimiter, keep_delimiter=unit == "char")
        tokens = tuple(tokens)
        C = len(tokens)
        grams, path = _read_arpa(os.fspath(path))
        lm = cls()
        lm.order, lm.unit, lm.tokens, lm.blank, lm.word_delimiter = len(grams), unit, tokens, blank, word_delimiter
        specials = ("<s>", "</s>", "<unk>")
        # Unit ids: a char LM's units are class ids (specials after them); a
        # word LM's are its words in unigram order (specials after them).
        ids: Dict[str, int] = {}
        if unit == "char":
            base = C
            for words, _, _, line in grams[0]:
                w = words[0]
                if w in specials:
                    continue
                if w not in pieces:
                    raise ARPAError(f"{path}, line {line}: unigram {w!r} is not one of the tokens")
                ids[w] = pieces[w]
        else:
            vocab = [words[0] for words, _, _, _ in grams[0] if words[0] not in specials]
            base = len(vocab)
            delim = tokens[word_delimiter] if word_delimiter is not None else None
            spelled: List[List[int]] = []
            for (words, _, _, line) in (g for g in grams[0] if g[0][0] not in specials):
                w = words[0]
                try:  # the delimiter is not among the pieces of a word LM
                    if delim is not None and delim in w:
                        raise ValueError(w)
                    spelled.append(spell(_FROM_ARPA, w, pieces))
                except ValueError:
                    raise ARPAError(f"{path}, line {line}: word {w!r} cannot be spelled with the tokens "
                                    f"(or holds the word delimiter {delim!r})") from None
                ids.setdefault(w, len(ids))
            lm.words = vocab
            lm._build_trie(spelled)
        lm.bos, lm.eos, lm.unk = base, base + 1, base + 2
        ids.update({"<s>": lm.bos, "</s>": lm.eos, "<unk>": lm.unk})
        lm._unit_ids = ids
        entries: Dict[Tuple[int, ...], Tuple[float, float, int]] = {}
        for order, section in enumerate(grams, start=1):
            for words, logp, bow, line in section:
                try:
                    key = tuple(ids[w] for w in words)
                except KeyError as err:
                    raise ARPAError(f"{path}, line {line}: word {err.args[0]!r} of this {order}-gram is not "
                                    f"among the unigrams") from None
                if key in entries:
                    raise ARPAError(f"{path}, line {line}: the {order}-gram {' '.join(words)!r} is listed "
                                    f"again (first on line {entries[key][2]})")
                entries[key] = (logp, bow, line)
        if (lm.unk,) not in entries:
            entries[(lm.unk,)] = (_UNK_LOG10, 0.0, 0)
        if unit == "char":
            lm.token_units = torch.tensor([-1 if c == blank else ids.get(t, lm.unk) for c, t in enumerate(tokens)],
                                          dtype=torch.int32)
        lm._build_table(entries)
        return lm

    def _build_trie(self, spelled: List[List[int]]) -> None:
        trie = _Trie(spelled)  # two ARPA words with one spelling: the first keeps it
        self.trie_children, self.trie_tokens, self.trie_nodes = trie.csr()
        word_of = [-1] * len(trie.children)
        for node, word_id in trie.ends.items():
            word_of[node] = word_id
        self.trie_words = torch.tensor(word_of, dtype=torch.int32)

    def _build_table(self, entries: Dict[Tuple[int, ...], Tuple[float, float, int]]) -> None:
        """The open-addressing table (linear probing, load <= 1/2), built by sorting.

        Keys are placed in order of their home slot; key i goes to
        max(home_i, slot_{i-1} + 1), so every run of occupied slots holds
        keys in home order and a lookup scans from the home slot to the key
        or to the first empty slot. The table grows past its power-of-two
        size by the longest run that spills over the end.
        """
        grams = list(entries)
        E = len(grams)
        width = max(len(g) for g in grams)
        units = np.full((E, width), -1, dtype=np.int64)
        for i, g in enumerate(grams):
            units[i, :len(g)] = g[::-1]  # newest first
        lengths = np.array([len(g) for g in grams])
        h = np.full(E, _SEED, dtype=np.uint64)
        for j in range(width):
            step = lengths > j
            h[step] = _extend(h[step], units[step, j])
        h[h == 0] = 1
        keys = h.view(np.int64)
        if len(np.unique(keys)) != E:
            raise ARPAError("two n-grams share a 64-bit hash (odds about 1e-10); please report this file")
        size = 1 << max(4, int(math.ceil(math.log2(2 * E))))
        home = (h & np.uint64(size - 1)).astype(np.int64)
        order = np.lexsort((keys, home))
        home_sorted = home[order]
        slot = np.arange(E) + np.maximum.accumulate(home_sorted - np.arange(E))
        total = max(size, int(slot[-1]) + 2)  # at least one empty slot past the last run
        table_keys = np.zeros(total, dtype=np.int64)
        table_vals = np.zeros((total, 2), dtype=np.float32)
        table_keys[slot] = keys[order]
        vals = np.array([entries[g][:2] for g in grams], dtype=np.float64) * _LN10
        table_vals[slot] = vals[order].astype(np.float32)
        # What one scored unit can add at most (0 for a normalised model; a
        # positive back-off weight could lift a query above 0).
        self.max_log_prob = max(0.0, float(vals[:, 0].max()) + (self.order - 1) * max(0.0, float(vals[:, 1].max())))
        self.keys = torch.from_numpy(table_keys)
        self.values = torch.from_numpy(table_vals)
        self._mask = size - 1
        self._table = {int(k): (float(v[0]), float(v[1])) for k, v in zip(keys[order], table_vals[slot])}

    def tensors(self, device: torch.device) -> Tuple[List[torch.Tensor], List[int]]:
        """The kernels' form (lm_tables, lm_info) on ``device``, kept per device."""
        cached = self._on_device.get(str(device))
        if cached is None:
            empty = torch.zeros(0, dtype=torch.int32)
            tables = [self.keys, self.values, self.token_units if self.unit == "char" else empty]
            tables += ([self.trie_children, self.trie_tokens, self.trie_nodes, self.trie_words]
                       if self.unit == "word" else [empty, empty, empty, empty])
            cached = ([t.to(device) for t in tables],
                      [self.order, self.bos, self.eos, self.unk, int(self.unit == "word"), self._mask])
            self._on_device[str(device)] = cached
        return cached

    # ------------------------------------------------------------- evaluation

    def _lookup(self, h: int) -> Optional[Tuple[float, float]]:
        return self._table.get(_key(h))

    def unit_id(self, unit: str) -> int:
        """The unit id of a unit string (a token's string or a word), ``unk`` if unlisted."""
        if unit in ("<s>", "</s>", "<unk>"):
            return self._unit_ids[unit]
        return self._unit_ids.get(unit, self.unk)

    def begin(self, bos: bool = True) -> LMState:
        """The state before the first unit: context ``<s>`` (or empty with ``bos=False``)."""
        return LMState((self.bos,) if bos and self.order > 1 else ())

    def advance(self, state: LMState, unit: Union[str, int]) -> Tuple[float, LMState]:
        """ln P(unit | state) and the state after it. ``unit``: a string or a unit id."""
        u = self.unit_id(unit) if isinstance(unit, str) else int(unit)
        ctx = state.context
        best_j = 0
        full, hist = _extend1(_SEED, u), _SEED
        bows = []
        hit = self._lookup(full)
        best = hit[0] if hit else self._lookup(_extend1(_SEED, self.unk))[0]
        for j in range(1, len(ctx) + 1):
            full = _extend1(full, ctx[-j])
            hist = _extend1(hist, ctx[-j])
            h = self._lookup(hist)
            bows.append(h[1] if h else 0.0)
            hit = self._lookup(full)
            if hit:
                best, best_j = hit[0], j
        logp = best + sum(bows[best_j:])
        keep = self.order - 1
        return logp, LMState((ctx + (u,))[-keep:] if keep else ())

    def finish(self, state: LMState) -> float:
        """ln P(</s> | state)."""
        return self.advance(state, self.eos)[0]

    def split(self, text: str) -> List[str]:
        """``text`` as units: a char LM's tokens (longest token string first), or a word LM's words."""
        if self.unit == "word":
            if self.word_delimiter is None:
                return [text] if text else []
            return [w for w in text.split(self.tokens[self.word_delimiter]) if w]
        pieces = {t: c for c, t in enumerate(self.tokens) if c != self.blank}
        return [self.tokens[c] for c in spell("ctcx.NgramLM.split", text, pieces)] if text else []

    def score(self, sequence: Union[str, Sequence[str]], bos: bool = True, eos: bool = True) -> float:
        """ln P(sequence), natural log (ARPA's log10 x ln 10), as KenLM's ``score`` computes it.

        Args:
            sequence: a string (split by :meth:`split`) or a sequence of unit strings.
            bos: start from the context ``<s>``.
            eos: add ln P(</s> | last context).
        """
        units = self.split(sequence) if isinstance(sequence, str) else list(sequence)
        state, total = self.begin(bos), 0.0
        for u in units:
            logp, state = self.advance(state, u)
            total += logp
        return total + (self.finish(state) if eos else 0.0)

    def __repr__(self) -> str:
        size = len(self._table)
        return (f"NgramLM(order={self.order}, unit={self.unit!r}, {size} n-grams, "
                f"{len(self.words) if self.words is not None else len(self.tokens)} units)")
