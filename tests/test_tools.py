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


def test_glyph_pair_context_mode_draws_what_the_library_draws_and_centres_the_character():
    pytest.importorskip("captcha")
    import random

    import numpy as np
    from captcha.image import ImageCaptcha

    from ctcx.captcha.drawn import _SHIM, library_drawer

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import glyph_pair
    finally:
        sys.path.pop(0)
    library_drawer((160, 60), (), ())  # points captcha.image's secrets at the seeded stand-in
    recording, plain = glyph_pair.recording_captcha(), ImageCaptcha()
    darker = []
    for seed, text in enumerate(["0O0O", "A0BC", "XYZO", "0123"] * 5):
        _SHIM.rng = random.Random(seed)
        ours = np.asarray(recording.generate_image(text))
        _SHIM.rng = random.Random(seed)
        theirs = np.asarray(plain.generate_image(text))
        assert np.array_equal(ours, theirs)  # the same image, pixel for pixel
        assert [c for c, _ in recording.boxes] == list(text)
        centres = [x for _, x in recording.boxes]
        assert centres == sorted(centres) and 0 < centres[0] and centres[-1] < 160
        grey = ours.astype(np.float64).mean(axis=2)
        darker += [grey[:, int(x)].mean() < grey.mean() for x in centres]
    assert np.mean(darker) > 0.8  # ink at the recorded centres
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "glyph_pair.py"), "--pair", "0O", "--context", "64",
                          "--train", "300", "--test", "100", "--epochs", "1", "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "drew 300 + 100 characters '0O'" in out.stdout and "size (60, 64)" in out.stdout
    assert re.search(r"epoch 1: 0 vs O in captchas \(window 64 px\) at scale 1.0: [\d.]+% of 100 fresh", out.stdout)
    assert "would still miss about" in out.stdout


def test_glyph_pair_rejects_a_bad_pair():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "glyph_pair.py"), "--pair", "00"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--pair must be two different characters" in out.stderr
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "glyph_pair.py"), "--pair", "0o", "--context", "80"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--context needs" in out.stderr


def test_ship_pretrained_strips_a_finished_run_to_a_loadable_reader(tmp_path):
    import hashlib

    import torch

    from ctcx.captcha import TrainConfig, build_model, load_checkpoint, save_checkpoint

    config = TrainConfig(conv_channels=(8, 16, 16, 16), rnn_hidden=16, input_height=32, out_dir="/somewhere/mine")
    model = build_model(config)
    run = {"config": config.to_dict(), "charset": config.charset, "step": 5, "complete": True,
           "state_dict": model.state_dict(), "optimizer": {"state": {}}, "history": [{"step": 1}],
           "calibration": {"temperature": 1.5, "fitted_on": 3, "ece_before": 0.1, "ece_after": 0.05}}
    save_checkpoint(tmp_path / "run.pt", run)
    out = subprocess.run([sys.executable, str(ROOT / "tools/ship_pretrained.py"), str(tmp_path / "run.pt"), "demo",
                          "--folder", str(tmp_path / "weights")], capture_output=True, text=True, check=True).stdout
    shipped = tmp_path / "weights/demo.pt"
    digest = re.search(r'"sha256": "([0-9a-f]{64})"', out).group(1)
    assert digest == hashlib.sha256(shipped.read_bytes()).hexdigest()
    loaded, loaded_config, raw = load_checkpoint(shipped)
    assert "optimizer" not in raw and "history" not in raw and raw["calibration"]["temperature"] == 1.5
    assert loaded_config.out_dir == "runs/demo"  # not the training machine's own path
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    save_checkpoint(tmp_path / "unfinished.pt", dict(run, complete=False))
    failed = subprocess.run([sys.executable, str(ROOT / "tools/ship_pretrained.py"), str(tmp_path / "unfinished.pt"),
                             "demo", "--folder", str(tmp_path / "weights")], capture_output=True, text=True)
    assert failed.returncode == 2 and "not a finished run" in failed.stderr
