"""The analysis tools in tools/ run and check their arguments (their figures are in README)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_glyph_pair_draws_trains_and_reports():
    pytest.importorskip("captcha")
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "glyph_pair.py"), "--pair", "0O", "--train", "400",
                          "--test", "200", "--epochs", "1", "--threads", "1", "--scale", "0.8"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "drew 400 + 200 characters '0O'" in out.stdout and "size (51, 38)" in out.stdout
    accuracy = float(re.search(r"epoch 1: 0 vs O at scale 0.8: ([\d.]+)% of 200 fresh", out.stdout).group(1))
    assert 0 <= accuracy <= 100


def test_glyph_pair_rejects_a_bad_pair():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "glyph_pair.py"), "--pair", "00"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--pair must be two different characters" in out.stderr
