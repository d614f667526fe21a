"""A word-reading task for beam search with a language model: data, LMs, lexicon.

    python benchmarks/word_task.py --out runs/words           # about a minute

Writes, under --out:
- ``words.tsv``: the 20,000 most frequent English words of ``wordfreq``
  (``top_n_list("en")`` filtered to a-z, lower case) with frequency and rank;
  a word of rank r (0-based) is a *test* word when r % 10 == 9, else a
  *train* word (the split is by rank, never by hand: 2,000 test words that
  span every frequency);
- ``train/`` (``--train-images``, default 40,000, train words drawn uniformly)
  and ``test/`` (one image of every test word) with ``labels.tsv``: the word
  rendered by Pillow in one of the DejaVu fonts (sans, serif, mono, condensed,
  bold, oblique), 22-30 pt, dark ink on a light noisy background, up to 3
  random lines across, rotated within +-3 degrees, sometimes blurred, 40
  pixels high and as wide as the word needs. No test word appears in train/;
- ``char5.arpa``: a character 5-gram over all 20,000 words, each word a
  sentence of its letters weighted by its frequency (count = max(1,
  round(frequency x 1e6))), Witten-Bell back-off; built by the counting code
  below, not by the package;
- ``words2.arpa``: a word bigram model (one word per sentence, so in effect a unigram) over the same words and weights (for
  the peers whose LM is word-level: pyctcdecode and flashlight's lexicon
  decoder), and ``lexicon.txt``: the 20,000 words, one per line.

Train a reader on it with the project's trainer (about 10 minutes on 2 cores):
    python examples/train_captcha.py --data-dir runs/words/train --charset a-z \\
        --input-height 32 --width-scale 1.0 --steps 3000 --out runs/words/model
Then ``python benchmarks/bench_decode.py --lm runs/words`` compares the decoders.

Needs ``wordfreq==3.1.1`` (``pip install wordfreq==3.1.1``).
"""
from __future__ import annotations

import argparse
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
ORDER = 5


def top_words(count: int = 20000) -> List[Tuple[str, float]]:
    """The ``count`` most frequent a-z English words of wordfreq with their frequencies."""
    import wordfreq

    out: List[Tuple[str, float]] = []
    for word in wordfreq.top_n_list("en", 4 * count):
        if word and all(c in LETTERS for c in word):
            out.append((word, wordfreq.word_frequency(word, "en")))
            if len(out) == count:
                break
    return out


def fonts() -> List[Path]:
    found = sorted(p for p in FONT_DIR.glob("DejaVu*.ttf") if "Math" not in p.name and "ExtraLight" not in p.name)
    if not found:
        raise SystemExit(f"no DejaVu fonts in {FONT_DIR}; install fonts-dejavu-core")
    return found


def render(word: str, rng: random.Random, font_files: Sequence[Path]) -> Image.Image:
    """One image of ``word`` (the style space is in the module docstring)."""
    font = ImageFont.truetype(str(rng.choice(font_files)), rng.randint(22, 30))
    left, top, right, bottom = font.getbbox(word)
    pad_x, height = rng.randint(4, 14), 40
    width = right - left + 2 * pad_x
    paper = rng.randint(200, 255)
    image = Image.new("L", (width, height), paper)
    draw = ImageDraw.Draw(image)
    ink = rng.randint(0, 90)
    y = (height - (bottom - top)) // 2 - top + rng.randint(-3, 3)
    draw.text((pad_x - left, y), word, font=font, fill=ink)
    for _ in range(rng.randint(0, 3)):
        draw.line([(rng.randint(0, width), rng.randint(0, height)), (rng.randint(0, width), rng.randint(0, height))],
                  fill=rng.randint(60, 180), width=rng.randint(1, 2))
    image = image.rotate(rng.uniform(-3, 3), resample=Image.Resampling.BILINEAR, expand=False, fillcolor=paper)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    noise = Image.effect_noise(image.size, rng.uniform(10, 40))
    return Image.blend(image, noise, rng.uniform(0.05, 0.2))


def write_folder(directory: Path, words: Sequence[str], seed: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    font_files = fonts()
    rng = random.Random(seed)
    lines = []
    for i, word in enumerate(words):
        name = f"{i:06d}.png"
        render(word, rng, font_files).save(directory / name)
        lines.append(f"{name}\t{word}")
    (directory / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 else -99.0


def witten_bell_arpa(sentences: Sequence[Tuple[Sequence[str], int]], order: int, path: Path) -> None:
    """A back-off ARPA model of ``order`` from weighted sentences (Witten-Bell
    discounting; every listed n-gram's suffix is listed too, as KenLM wants).

    P(w | h) = c(h w) / (c(h) + T(h)) for seen w, where T(h) counts the distinct
    words seen after h; the rest, T(h) / (c(h) + T(h)), goes to the lower
    order through bow(h) = that mass / (1 - sum over seen w of P_lower(w | h')).
    """
    counts: List[Dict[Tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    for words, weight in sentences:
        seq = ["<s>"] + list(words) + ["</s>"]
        for n in range(1, order + 1):
            for i in range(len(seq) - n + 1):
                gram = tuple(seq[i:i + n])
                if gram == ("<s>",):
                    continue
                counts[n][gram] += weight
    context_total: List[Dict[Tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    followers: List[Dict[Tuple[str, ...], int]] = [defaultdict(int) for _ in range(order + 1)]
    for n in range(2, order + 1):
        for gram, c in counts[n].items():
            context_total[n][gram[:-1]] += c
            followers[n][gram[:-1]] += 1
    total = sum(counts[1].values())
    prob: List[Dict[Tuple[str, ...], float]] = [dict() for _ in range(order + 1)]
    prob[1] = {g: c / total for g, c in counts[1].items()}
    prob[1][("<s>",)] = 0.0
    for n in range(2, order + 1):
        for gram, c in counts[n].items():
            h = gram[:-1]
            prob[n][gram] = c / (context_total[n][h] + followers[n][h])

    def lower(gram: Tuple[str, ...]) -> float:
        """P(w | h') of the model one order down, with its own back-off."""
        g = gram
        weight = 1.0
        while True:
            if g in prob[len(g)]:
                return weight * prob[len(g)][g]
            weight *= bows.get(g[:-1], 1.0)
            g = g[1:]

    bows: Dict[Tuple[str, ...], float] = {}
    for n in range(2, order + 1):  # bow of the contexts of order n - 1, lowest orders first
        seen: Dict[Tuple[str, ...], List[Tuple[str, ...]]] = defaultdict(list)
        for gram in counts[n]:
            seen[gram[:-1]].append(gram)
        for h, grams in seen.items():
            left = followers[n][h] / (context_total[n][h] + followers[n][h])
            lower_mass = sum(lower(g[1:]) for g in grams)
            bows[h] = left / max(1e-12, 1.0 - lower_mass)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n in range(1, order + 1):
            f.write(f"ngram {n}={len(prob[n]) + (1 if n == 1 else 0)}\n")
        for n in range(1, order + 1):
            f.write(f"\n\\{n}-grams:\n")
            if n == 1:
                f.write("-100.0000\t<unk>\n")
            for gram in sorted(prob[n]):
                p = -99.0 if gram == ("<s>",) else _log10(prob[n][gram])
                if n < order and gram in bows:
                    f.write(f"{p:.6f}\t{' '.join(gram)}\t{_log10(bows[gram]):.6f}\n")
                else:
                    f.write(f"{p:.6f}\t{' '.join(gram)}\n")
        f.write("\n\\end\\\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/words")
    parser.add_argument("--train-images", type=int, default=40000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    words = top_words()
    weights = {w: max(1, round(f * 1e6)) for w, f in words}
    with open(out / "words.tsv", "w", encoding="utf-8") as f:
        f.write("word\tfrequency\trank\tsplit\n")
        for rank, (w, freq) in enumerate(words):
            f.write(f"{w}\t{freq:.3g}\t{rank}\t{'test' if rank % 10 == 9 else 'train'}\n")
    train = [w for r, (w, _) in enumerate(words) if r % 10 != 9]
    test = [w for r, (w, _) in enumerate(words) if r % 10 == 9]
    rng = random.Random(args.seed)
    write_folder(out / "train", [rng.choice(train) for _ in range(args.train_images)], args.seed)
    write_folder(out / "test", test, args.seed + 1)
    (out / "lexicon.txt").write_text("\n".join(w for w, _ in words) + "\n", encoding="utf-8")
    witten_bell_arpa([(list(w), weights[w]) for w, _ in words], ORDER, out / "char5.arpa")
    witten_bell_arpa([([w], weights[w]) for w, _ in words], 2, out / "words2.arpa")  # KenLM needs order >= 2
    print(f"wrote {out}: {len(train)} train words ({args.train_images} images), {len(test)} test words, "
          f"char5.arpa, words2.arpa, lexicon.txt")


if __name__ == "__main__":
    main()
