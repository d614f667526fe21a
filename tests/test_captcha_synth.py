"""The general style mix (ctcx.captcha.synth): reproducible, varied, and wired into drawing and training."""
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctcx.captcha import TrainConfig
from ctcx.captcha.drawn import DrawnCaptchas, DrawSpec, draw_captcha
from ctcx.captcha.synth import PILLOW_DEFAULT_FONT, draw_general, font_files, render

CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _pixels(image):
    return np.asarray(image.convert("RGB"))


def test_font_files_can_draw_the_charset_and_leave_out_symbol_fonts():
    fonts = font_files(CHARS)
    assert PILLOW_DEFAULT_FONT in fonts
    names = [Path(f).name for f in fonts if f != PILLOW_DEFAULT_FONT]
    assert "DroidSansMono.ttf" in names  # the captcha library's own font
    assert len(names) == len(set(names))
    assert not {"cmex10.ttf", "cmsy10.ttf"} & set(names)  # letters mapped to symbols
    # matplotlib's STIX size variants have no letters at all
    assert not [n for n in names if n.startswith("STIXSiz")]


def test_render_is_a_pure_function_of_its_random_state():
    first = render("Ab3xY9", random.Random("k"))
    again = render("Ab3xY9", random.Random("k"))
    other = render("Ab3xY9", random.Random("k2"))
    assert first.mode == "RGB"
    assert np.array_equal(_pixels(first), _pixels(again))
    assert first.size != other.size or not np.array_equal(_pixels(first), _pixels(other))


def test_render_sizes_and_styles_vary_within_the_documented_space():
    sizes, means, dark = set(), [], 0
    for i in range(60):
        rng = random.Random(i)
        label = "".join(rng.choice(CHARS) for _ in range(rng.randint(4, 8)))
        image = render(label, rng)
        w, h = image.size
        assert 96 <= w <= 320 and 36 <= h <= 80
        sizes.add((w, h))
        gray = _pixels(image).mean(axis=2)
        means.append(gray.mean())
        dark += gray.mean() < 110
        assert gray.std() > 10  # something is drawn
    assert len(sizes) > 40
    assert dark >= 3  # light text on dark backgrounds happens (20% of images)
    assert np.std(means) > 15


def test_render_draws_the_label_not_just_noise():
    # the same style (random state) with different labels gives different images
    a = render("AAAA", random.Random(5))
    b = render("WXYZ", random.Random(5))
    assert a.size == b.size
    assert np.abs(_pixels(a).astype(int) - _pixels(b).astype(int)).mean() > 1


def test_render_rejects_an_empty_label_and_no_fonts():
    with pytest.raises(ValueError, match="label must not be empty"):
        render("", random.Random(0))
    with pytest.raises(ValueError, match="no fonts"):
        render("ab", random.Random(0), fonts=[])


def test_general_mix_uses_both_sources_reproducibly():
    sizes = set()
    for i in range(40):
        image = draw_general("7KqZ", random.Random(f"g{i}"))
        again = draw_general("7KqZ", random.Random(f"g{i}"))
        assert np.array_equal(_pixels(image), _pixels(again))
        sizes.add(image.size)
    library_sizes = {(160, 60), (120, 40), (140, 50), (180, 60), (200, 70), (220, 80), (260, 80), (300, 90)}
    assert sizes & library_sizes and sizes - library_sizes  # both sources drew


def test_drawn_general_stream_is_reproducible_and_fits_a_fixed_input_width():
    spec = DrawSpec(CHARS, 4, 8, style="general")
    image, label = draw_captcha(spec, 3, "train", 9)
    again, label_again = draw_captcha(spec, 3, "train", 9)
    assert label == label_again and 4 <= len(label) <= 8
    assert np.array_equal(_pixels(image), _pixels(again))
    data = DrawnCaptchas(spec, 3, "train", height=32, width=128)
    shapes = {data[i][0].shape for i in range(12)}
    assert shapes == {(1, 32, 128)}


def test_config_needs_a_fixed_width_to_pool_general_images():
    with pytest.raises(ValueError, match="input_width"):
        TrainConfig(style="general")
    config = TrainConfig(style="general", input_width=160, charset="0-9a-zA-Z", min_length=4, max_length=8)
    assert TrainConfig.from_dict(config.to_dict()).style == "general"
    assert TrainConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "style"}).style == "captcha"
    with pytest.raises(ValueError, match="style must be one of"):
        TrainConfig(style="fancy")


def test_generate_command_draws_general_images(tmp_path):
    from ctcx.captcha.cli import main

    main(["generate", str(tmp_path / "g"), "--count", "6", "--style", "general", "--length", "4-6",
          "--charset", "0-9a-zA-Z"])
    files = sorted((tmp_path / "g").glob("*.png"))
    assert len(files) == 6
    assert len({Image.open(f).size for f in files}) > 1
