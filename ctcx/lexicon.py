"""Lexicons and hotwords for :func:`ctcx.beam_search`: word lists compiled into token tries.

A :class:`Lexicon` restricts the words a hypothesis may contain; a
:class:`Hotwords` adds a bonus to words the user expects. Both spell their
words with the decoder's tokens (the longest token string first) and store a
trie in CSR form, as tensors the kernels read; compile one once and pass it to
every call.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

__all__ = ["Lexicon", "Hotwords"]


def _token_table(fn: str, tokens: Sequence[str], blank: int, word_delimiter: Optional[int],
                 keep_delimiter: bool = False) -> Dict[str, int]:
    """Validate tokens, blank and word_delimiter (ValueError naming ``fn``); return
    {token string: class id} of the classes words are spelled with: all but the
    blank, and but the delimiter unless ``keep_delimiter`` (a char LM's unit)."""
    tokens = tuple(tokens)
    if not tokens or not all(isinstance(t, str) for t in tokens):
        raise ValueError(f"{fn}: tokens must be a non-empty sequence of strings, one per class")
    C = len(tokens)
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < C:
        raise ValueError(f"{fn}: blank = {blank!r} must be a class id in [0, {C})")
    if word_delimiter is not None and (isinstance(word_delimiter, bool) or not isinstance(word_delimiter, int)
                                       or not 0 <= word_delimiter < C or word_delimiter == blank):
        raise ValueError(f"{fn}: word_delimiter = {word_delimiter!r} must be None or a class id in [0, {C}) other "
                         f"than the blank {blank}")
    pieces: Dict[str, int] = {}
    for c, t in enumerate(tokens):
        if c == blank or (c == word_delimiter and not keep_delimiter):
            continue
        if not t:
            raise ValueError(f"{fn}: tokens[{c}] is empty")
        if t in pieces:
            raise ValueError(f"{fn}: tokens[{c}] = {t!r} repeats tokens[{pieces[t]}]")
        pieces[t] = c
    return pieces


def spell(fn: str, word: str, pieces: Dict[str, int]) -> List[int]:
    """``word`` as class ids (the longest token string first); ValueError naming it if impossible."""
    if not isinstance(word, str) or not word:
        raise ValueError(f"{fn}: words must be non-empty strings, got {word!r}")
    longest = max(len(t) for t in pieces)
    out, i = [], 0
    while i < len(word):
        for size in range(min(longest, len(word) - i), 0, -1):
            c = pieces.get(word[i:i + size])
            if c is not None:
                out.append(c)
                i += size
                break
        else:
            raise ValueError(f"{fn}: word {word!r} cannot be spelled with the tokens (stuck at {word[i:]!r})")
    return out


class _Trie:
    def __init__(self, spellings: Iterable[List[int]]) -> None:
        self.children: List[Dict[int, int]] = [{}]
        self.depth = [0]
        self.ends: Dict[int, int] = {}  # node -> index of the word ending there
        for index, spelling in enumerate(spellings):
            node = 0
            for c in spelling:
                nxt = self.children[node].get(c)
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][c] = nxt
                    self.children.append({})
                    self.depth.append(self.depth[node] + 1)
                node = nxt
            self.ends.setdefault(node, index)

    def csr(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first, tokens, nodes = [0], [], []
        for kids in self.children:
            for c in sorted(kids):
                tokens.append(c)
                nodes.append(kids[c])
            first.append(len(tokens))
        as_int = lambda v: torch.tensor(v, dtype=torch.int32)  # noqa: E731
        return as_int(first), as_int(tokens), as_int(nodes)

    def parents(self) -> List[int]:
        parent = [-1] * len(self.children)
        for n, kids in enumerate(self.children):
            for child in kids.values():
                parent[child] = n
        return parent


class Lexicon:
    """The words a hypothesis may contain, compiled once into a token trie.

    With a lexicon, :func:`ctcx.beam_search` returns only hypotheses made of
    lexicon words separated by single ``word_delimiter`` tokens (no empty
    word, so no leading, trailing or doubled delimiter, and no empty
    hypothesis); without a delimiter, a hypothesis is one lexicon word.
    Prefixes that leave the lexicon are never formed (as flashlight's lexicon
    decoder does), so the beam is spent on words that exist.

    Args:
        words: the allowed words (strings; duplicates are ignored).
        tokens: the string of each class id (C entries, the blank's and the
            delimiter's entries unused for spelling).
        word_delimiter: the class id between words, or None.
        blank: the blank's class id.

    Raises:
        ValueError: an empty word list, a word that cannot be spelled with
            the tokens (named), bad tokens, blank or word_delimiter.
    """

    def __init__(self, words: Iterable[str], tokens: Sequence[str], word_delimiter: Optional[int] = None,
                 *, blank: int = 0) -> None:
        fn = "ctcx.Lexicon"
        pieces = _token_table(fn, tokens, blank, word_delimiter)
        self.tokens, self.blank, self.word_delimiter = tuple(tokens), blank, word_delimiter
        self.words: List[str] = list(dict.fromkeys(words))
        if not self.words:
            raise ValueError(f"{fn}: words is empty")
        trie = _Trie(spell(fn, w, pieces) for w in self.words)
        self.first, self.token, self.node = trie.csr()
        self.end = torch.zeros(len(trie.children), dtype=torch.int32)
        self.end[list(trie.ends)] = 1

    def tensors(self, device: torch.device) -> List[torch.Tensor]:
        """The kernels' form: [first, token, node, end] on ``device``."""
        return [t.to(device) for t in (self.first, self.token, self.node, self.end)]

    def __repr__(self) -> str:
        return f"Lexicon({len(self.words)} words, {len(self.end)} trie nodes)"


class Hotwords:
    """Words to favour, with a bonus each (in nats, added to the fused score), as a token trie.

    While the current word of a hypothesis is a prefix of hotwords it earns
    the largest ``bonus x matched tokens / hotword tokens`` among them (so a
    hotword is not lost to pruning halfway); a finished word keeps the bonus
    of the hotword it equals, and no other (the partial credit is withdrawn).
    Words are split at ``word_delimiter``; without one the whole hypothesis
    is a word. A plain ``{word: bonus}`` dict passed to :func:`ctcx.beam_search`
    is compiled into this on each call.

    Args:
        hotwords: a mapping word -> bonus (finite float; negative values
            penalise), or an iterable of words (bonus 10.0 each, the partial
            credit scaled accordingly).
        tokens, word_delimiter, blank: as for :class:`Lexicon`.

    Raises:
        ValueError: no hotwords, a word that cannot be spelled or holds the
            delimiter, a bonus that is not a finite number.
    """

    DEFAULT_BONUS = 10.0

    def __init__(self, hotwords: Union[Mapping[str, float], Iterable[str]], tokens: Sequence[str],
                 word_delimiter: Optional[int] = None, *, blank: int = 0) -> None:
        fn = "ctcx.Hotwords"
        pieces = _token_table(fn, tokens, blank, word_delimiter)
        self.tokens, self.blank, self.word_delimiter = tuple(tokens), blank, word_delimiter
        items = list(hotwords.items()) if isinstance(hotwords, Mapping) else [(w, self.DEFAULT_BONUS) for w in hotwords]
        if not items:
            raise ValueError(f"{fn}: no hotwords given")
        for w, bonus in items:
            if isinstance(bonus, bool) or not isinstance(bonus, (int, float)) or not abs(float(bonus)) < float("inf"):
                raise ValueError(f"{fn}: the bonus of {w!r} must be a finite number, got {bonus!r}")
        self.bonus: Dict[str, float] = {w: float(b) for w, b in items}
        spellings = [spell(fn, w, pieces) for w in self.bonus]
        trie = _Trie(spellings)
        self.first, self.token, self.node = trie.csr()
        V = len(trie.children)
        full = [0.0] * V
        partial: List[Optional[float]] = [None] * V
        for (w, bonus), spelling in zip(self.bonus.items(), spellings):
            node = 0
            for depth, c in enumerate(spelling, start=1):
                node = trie.children[node][c]
                share = bonus * depth / len(spelling)
                partial[node] = share if partial[node] is None else max(partial[node], share)
            full[node] = bonus
        self.partial = torch.tensor([p or 0.0 for p in partial], dtype=torch.float32)
        self.full = torch.tensor(full, dtype=torch.float32)
        self.max_gain = 2.0 * max(abs(b) for b in self.bonus.values())

    def tensors(self, device: torch.device) -> List[torch.Tensor]:
        """The kernels' form: [first, token, node, partial, full] on ``device``."""
        return [t.to(device) for t in (self.first, self.token, self.node, self.partial, self.full)]

    def __repr__(self) -> str:
        return f"Hotwords({len(self.bonus)} words)"
