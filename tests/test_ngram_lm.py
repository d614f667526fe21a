"""ctcx.NgramLM: ARPA loading, back-off scores against an independent reference
scorer and against KenLM's own scores, and the errors of malformed files."""
import gzip
import json
import math
import random
from pathlib import Path

import pytest
import torch

import ctcx
from ctcx._reference import ArpaReference
from ctcx.lm import ARPAError

from arpa_files import random_arpa

DATA = Path(__file__).parent / "data" / "lm"
CHARS = ["<b>", "a", "b", "c", "d", "|"]  # ARPA words cannot hold spaces: "|" stands for one


@pytest.mark.parametrize("order", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("unit", ["char", "word"])
def test_scores_match_the_reference_scorer(tmp_path, order, unit):
    rng = random.Random(order * 7 + len(unit))
    if unit == "char":
        path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], order, seed=order, positive_bows=True)
        lm = ctcx.NgramLM.from_arpa(path, CHARS)
        alphabet = ["a", "b", "c", "d", "|"]  # "d" is not in the LM: <unk>
    else:
        words = ["ab", "ba", "c", "abc", "d"]
        path = random_arpa(tmp_path / "lm.arpa", words, order, seed=order, unk=False)
        lm = ctcx.NgramLM.from_arpa(path, CHARS, unit="word", word_delimiter=5)
        alphabet = words + ["cab", "dd"]  # unlisted words: <unk>
    ref = ArpaReference(str(path))
    assert lm.order == ref.order
    for _ in range(60):
        seq = [rng.choice(alphabet) for _ in range(rng.randint(0, 9))]
        for bos, eos in ((True, True), (False, False), (True, False)):
            assert lm.score(seq, bos=bos, eos=eos) == pytest.approx(ref.score(seq, bos=bos, eos=eos), rel=1e-7, abs=2e-5)


def test_scores_match_kenlm_on_the_same_files():
    # tests/data/lm/kenlm_scores.json holds KenLM 0.2.0's own log10 scores
    # (tools/kenlm_reference.py, run where kenlm installs), so this runs without it.
    stored = json.loads((DATA / "kenlm_scores.json").read_text())
    assert stored["files"]
    for name, entry in stored["files"].items():
        lm = ctcx.NgramLM.from_arpa(DATA / name, entry["tokens"], unit=entry["unit"],
                                    word_delimiter=entry["word_delimiter"])
        for sentence, bos, eos, log10 in entry["scores"]:
            units = sentence.split(" ") if sentence else []
            assert lm.score(units, bos=bos, eos=eos) / math.log(10) == pytest.approx(log10, abs=1e-4), (name, sentence)


def test_units_the_file_does_not_list_score_as_unk(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b"], 2, seed=1, unk=False)
    lm = ctcx.NgramLM.from_arpa(path, ["-", "a", "b", "c"])
    ref = ArpaReference(str(path))
    assert lm.token_units.tolist() == [-1, 1, 2, lm.unk]
    # No <unk> in the file: KenLM's convention, log10 -100.
    assert lm.advance(lm.begin(False), "c")[0] == pytest.approx(-100 * math.log(10), rel=1e-6)
    assert lm.score("acb") == pytest.approx(ref.score(["a", "c", "b"]), abs=1e-5)


def test_gzipped_files_load(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b"], 3, seed=2)
    with gzip.open(tmp_path / "lm.arpa.gz", "wt", encoding="utf-8") as f:
        f.write(path.read_text())
    plain = ctcx.NgramLM.from_arpa(path, ["-", "a", "b"])
    zipped = ctcx.NgramLM.from_arpa(tmp_path / "lm.arpa.gz", ["-", "a", "b"])
    assert torch.equal(plain.keys, zipped.keys) and torch.equal(plain.values, zipped.values)


GOOD = """\\data\\
ngram 1=4
ngram 2=2

\\1-grams:
-1.0\t<s>\t-0.3
-0.7\t</s>
-0.5\ta\t-0.2
-0.6\tb\t-0.25

\\2-grams:
-0.2\t<s> a
-0.4\ta b

\\end\\
"""


@pytest.mark.parametrize("edit, line, message", [
    (lambda s: s.replace("\\data\\", "data"), None, "no \\\\data\\\\ section"),
    (lambda s: s.replace("ngram 2=2", "ngram 2=3"), 11, "promises 3 2-grams but the section .* lists 2"),
    (lambda s: s.replace("-0.5\ta", "-0.5x\ta"), 8, "'-0.5x' is not a number"),
    (lambda s: s.replace("-0.6\tb\t-0.25", "-0.6\tb\t-0.25\t7"), 9, "needs 2 or 3 fields"),
    (lambda s: s.replace("-0.4\ta b", "-0.4\ta z"), 13, "'z' of this 2-gram is not among the unigrams"),
    (lambda s: s.replace("-0.6\tb\t-0.25", "-0.6\tq\t-0.25"), 9, "unigram 'q' is not one of the tokens"),
    (lambda s: s.replace("-0.4\ta b", "-0.4\t<s> a"), 13, r"listed again \(first on line 12\)"),
    (lambda s: s.replace("\\2-grams:", "\\3-grams:"), 11, "expected the section '\\\\2-grams:'"),
    (lambda s: s.replace("\\end\\", ""), None, "without '\\\\end\\\\'"),
    (lambda s: s.replace("-0.7\t</s>", "0.7\t</s>"), 7, "above 0"),
    (lambda s: s.replace("-0.7\t</s>", "nan\t</s>"), 7, "not a log10 probability"),
    (lambda s: s.replace("ngram 2=2", "ngram 3=2"), 3, "orders 1, 2, ... in turn"),
])
def test_malformed_files_are_refused_naming_the_line(tmp_path, edit, line, message):
    path = tmp_path / "bad.arpa"
    path.write_text(edit(GOOD), encoding="utf-8")
    with pytest.raises(ARPAError, match=message) as err:
        ctcx.NgramLM.from_arpa(path, ["-", "a", "b"])
    if line is not None:
        assert f"line {line}:" in str(err.value)
    assert str(path) in str(err.value)


def test_orders_above_six_and_words_that_cannot_be_spelled_are_refused(tmp_path):
    path = tmp_path / "seven.arpa"
    path.write_text("\\data\\\n" + "".join(f"ngram {k}=1\n" for k in range(1, 8)) + "\n", encoding="utf-8")
    with pytest.raises(ARPAError, match="order 7 is above the highest supported order 6"):
        ctcx.NgramLM.from_arpa(path, ["-", "a"])
    words = random_arpa(tmp_path / "w.arpa", ["ab", "a-b"], 2, seed=3)
    with pytest.raises(ARPAError, match=r"line \d+: word 'a-b' cannot be spelled"):
        ctcx.NgramLM.from_arpa(words, ["-", "a", "b", " "], unit="word", word_delimiter=3)


def test_bad_arguments_are_refused(tmp_path):
    path = tmp_path / "lm.arpa"
    path.write_text(GOOD, encoding="utf-8")
    cases = [
        (dict(tokens=["-", "a", "b"], unit="syllable"), "unit must be 'char' or 'word'"),
        (dict(tokens=["-", "a", "a"]), r"tokens\[2\] = 'a' repeats tokens\[1\]"),
        (dict(tokens=["-", "a", ""]), r"tokens\[2\] is empty"),
        (dict(tokens=["-", "a", "b"], blank=3), "blank = 3 must be a class id"),
        (dict(tokens=["-", "a", "b"], word_delimiter=0), "word_delimiter = 0 must be None or a class id"),
        (dict(tokens=[]), "tokens must be a non-empty sequence"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            ctcx.NgramLM.from_arpa(path, **kwargs)
    with pytest.raises(FileNotFoundError):
        ctcx.NgramLM.from_arpa(tmp_path / "missing.arpa", ["-", "a", "b"])


def test_word_lm_spells_its_words_into_a_trie(tmp_path):
    path = random_arpa(tmp_path / "w.arpa", ["ab", "abc", "b"], 2, seed=4)
    lm = ctcx.NgramLM.from_arpa(path, ["-", "a", "b", "c", " "], unit="word", word_delimiter=4)
    assert lm.words == ["ab", "abc", "b"]
    first, tok, node, word = (t.tolist() for t in (lm.trie_children, lm.trie_tokens, lm.trie_nodes, lm.trie_words))

    def walk(spelling):
        n = 0
        for c in spelling:
            kids = dict(zip(tok[first[n]:first[n + 1]], node[first[n]:first[n + 1]]))
            n = kids[c]
        return n

    assert word[walk([1, 2])] == 0 and word[walk([1, 2, 3])] == 1 and word[walk([2])] == 2
    assert word[walk([1])] == -1 and word[0] == -1
