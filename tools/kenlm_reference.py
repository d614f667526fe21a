"""Write tests/data/lm/kenlm_scores.json: KenLM's own log10 scores of random
sentences under the ARPA files in tests/data/lm, which tests/test_ngram_lm.py
compares ctcx.NgramLM with (so the test runs where kenlm does not install).

Run in a virtualenv with kenlm (it builds from source; CMake >= 4 needs
CMAKE_POLICY_VERSION_MINIMUM=3.5):
    python -m venv venv-lm && CMAKE_POLICY_VERSION_MINIMUM=3.5 venv-lm/bin/pip install kenlm==0.2.0
    venv-lm/bin/python tools/kenlm_reference.py
"""
import json
import random
from pathlib import Path

import kenlm

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "lm"
FILES = {
    "char3.arpa": {"tokens": ["<b>", "a", "b", "c", "d", " "], "unit": "char", "word_delimiter": None,
                   "alphabet": ["a", "b", "c", "d"]},
    "word4.arpa": {"tokens": ["<b>", "a", "b", "c", "d", " "], "unit": "word", "word_delimiter": 5,
                   "alphabet": ["ab", "ba", "c", "abc", "dd", "cab"]},
}


def main() -> None:
    rng = random.Random(0)
    out = {"kenlm": "0.2.0", "files": {}}
    for name, spec in FILES.items():
        model = kenlm.Model(str(DATA / name))
        scores = []
        for _ in range(200):
            sentence = " ".join(rng.choice(spec["alphabet"]) for _ in range(rng.randint(0, 8)))
            for bos, eos in ((True, True), (False, False), (True, False), (False, True)):
                scores.append([sentence, bos, eos, model.score(sentence, bos=bos, eos=eos)])
        entry = {k: v for k, v in spec.items() if k != "alphabet"}
        entry["scores"] = scores
        out["files"][name] = entry
    (DATA / "kenlm_scores.json").write_text(json.dumps(out, indent=0) + "\n")
    print("wrote", DATA / "kenlm_scores.json")


if __name__ == "__main__":
    main()
