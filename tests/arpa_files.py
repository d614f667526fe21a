"""Random ARPA files for the language-model tests: valid back-off models of a
given order over given words (every n-gram's prefix listed, as ARPA requires)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence


def random_arpa(path: Path, words: Sequence[str], order: int, seed: int, unk: bool = True,
                density: float = 0.5, positive_bows: bool = False, suffix_closed: bool = False) -> Path:
    """Write an ARPA file of ``order`` over ``words`` (+ <s>, </s>, optional <unk>) to ``path``.

    suffix_closed: list an n-gram only when its suffix is listed too, as
    KenLM's probing tables expect (ARPA itself only requires prefixes).
    """
    rng = random.Random(seed)
    vocab = list(words) + ["</s>"] + (["<unk>"] if unk else [])
    grams = [[("<s>",)] + [(w,) for w in vocab]]
    for k in range(2, order + 1):
        level = []
        lower = set(grams[-1])
        for g in grams[-1]:
            if g[-1] == "</s>":
                continue
            for w in vocab:
                if suffix_closed and k > 2 and g[1:] + (w,) not in lower:
                    continue
                if rng.random() < density:
                    level.append(g + (w,))
        if not level:
            break
        grams.append(level)
    top = len(grams)
    low = 0.0 if positive_bows else -0.05
    lines = ["\\data\\"] + [f"ngram {k}={len(g)}" for k, g in enumerate(grams, start=1)] + [""]
    for k, level in enumerate(grams, start=1):
        lines.append(f"\\{k}-grams:")
        for g in level:
            p = -99.0 if g == ("<s>",) else round(rng.uniform(-2.5, -0.05), 4)
            if k < top and g[-1] != "</s>" and rng.random() < 0.8:
                lines.append(f"{p}\t{' '.join(g)}\t{round(rng.uniform(-1.0, low + (0.4 if positive_bows else 0)), 4)}")
            else:
                lines.append(f"{p}\t{' '.join(g)}")
        lines.append("")
    lines.append("\\end\\")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
