"""Captcha trainer data side: labels, preprocessing, reproducible drawing, folders, resumable streams."""
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctcx.captcha import CHARSETS, PRESETS, TrainConfig, build_model, count_parameters
from ctcx.captcha.drawn import DrawnCaptchas, DrawSpec, _drawer, char_weights, draw_captcha, parse_oversample
from ctcx.captcha.folder import FolderImages, read_folder, split_items
from ctcx.captcha.images import augment, crop_margins, jitter, output_width, pad_batch, preprocess, to_model_input
from ctcx.captcha.labels import (decode_label, encode_label, infer_charset, label_from_filename,
                                 parse_length_range, resolve_charset)
from ctcx.captcha.metrics import character_error_rate, edit_distance, exact_match
from ctcx.captcha.stream import BatchStream, PositionSampler

DIGITS = CHARSETS["digits"]


# ---- labels, metrics ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, label", [
    ("A3KD_00042.png", "A3KD"), ("ab_c_7.png", "ab_c"), ("/some/dir/XY9Z_1.jpg", "XY9Z"),
    ("Q7pX.png", "Q7pX"), ("x.jpeg", "x"),
])
def test_label_from_filename(name, label):
    assert label_from_filename(name) == label


def test_label_from_filename_rejects_an_empty_label():
    with pytest.raises(ValueError, match="cannot read a label"):
        label_from_filename("_00042.png")


def test_charsets_lengths_and_label_codes():
    assert resolve_charset("0-9A-Z") == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert len(resolve_charset("0-9a-zA-Z")) == 62 and resolve_charset("xyz") == "xyz"
    with pytest.raises(ValueError, match=r"repeats \['a'\]"):
        resolve_charset("abca")
    assert infer_charset(["ba", "ca1"]) == "1abc"
    assert parse_length_range("4") == (4, 4) and parse_length_range("4-6") == (4, 6)
    for bad in ("0", "6-4", "a", "1-2-3"):
        with pytest.raises(ValueError, match="MIN-MAX"):
            parse_length_range(bad)
    charset = resolve_charset("0-9A-Z")
    assert encode_label("09AZ", charset) == [1, 10, 11, 36] and decode_label([1, 10, 11, 36], charset) == "09AZ"
    with pytest.raises(ValueError, match=r"\['a'\]"):
        encode_label("A1a2", charset)


def test_metrics_known_values():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("ABCD", "BACD") == 2
    assert character_error_rate(["ABCD", "124", "WXYQZ"], ["ABCD", "1234", "WXYZ"]) == pytest.approx(2 / 12)
    assert exact_match(["ABCD", "124", "WXYQZ"], ["ABCD", "1234", "WXYZ"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="2 predictions for 3 references"):
        character_error_rate(["a", "b"], ["a", "b", "c"])


# ---- images ------------------------------------------------------------------------------------

def test_preprocess_keeps_the_aspect_ratio_or_a_fixed_width():
    image = Image.new("RGB", (160, 60), (255, 0, 0))
    gray = preprocess(image, 32)
    assert gray.shape == (1, 32, 84) and gray.dtype == np.uint8  # 160 * 32 / 60 = 85.3 -> 84
    assert int(gray[0, 0, 0]) == 76  # PIL's luma of pure red
    rgb = preprocess(image, 32, channels=3)
    assert rgb.shape == (3, 32, 84) and rgb[:, 5, 5].tolist() == [255, 0, 0]
    assert preprocess(image, 32, width=96).shape == (1, 32, 96)
    assert preprocess(image, 32, width=96, width_scale=2).shape == (1, 32, 96)  # a fixed width wins
    assert output_width((10, 100), 32) == 4  # never below one frame


def test_width_scale_stretches_horizontally_and_old_configs_mean_no_stretch():
    image = Image.new("L", (160, 60), 255)
    assert preprocess(image, 48).shape == (1, 48, 128)
    assert preprocess(image, 48, width_scale=1.25).shape == (1, 48, 160)  # the captcha's own 160 columns
    assert output_width((200, 70), 48, width_scale=1.25) == 172  # 137.1 * 1.25 = 171.4 -> 172
    config = TrainConfig()
    assert config.width_scale == 1.25 and config.preprocessing == dict(height=48, channels=1, width=0,
                                                                       width_scale=1.25, crop=False)
    old = config.to_dict()
    del old["width_scale"]  # a checkpoint written before the field existed
    assert TrainConfig.from_dict(old).width_scale == 1.0
    assert TrainConfig.from_dict(config.to_dict()).width_scale == 1.25
    data = DrawnCaptchas(DrawSpec(DIGITS, 2, 3, (64, 32)), 0, "train", height=16, width_scale=2.0)
    assert data[0][0].shape == (1, 16, 64)  # 32 * 2 columns
    for bad in (0, -1.0, 5.0, True, "1"):
        with pytest.raises(ValueError, match="width_scale must be a horizontal stretch"):
            TrainConfig(width_scale=bad)


def _banded(rng, margin=(0, 0, 0)):
    """A 256x144 canvas in ``margin`` colour with a noisy 'picture' in rows 48..95, columns 10..245."""
    pixels = np.empty((144, 256, 3), np.uint8)
    pixels[:] = margin
    pixels[48:96, 10:246] = rng.integers(60, 250, (48, 236, 3))
    return Image.fromarray(pixels)


def test_crop_margins_cuts_plain_margins_and_keeps_pictures_without_them():
    rng = np.random.default_rng(0)
    banded = _banded(rng)
    assert crop_margins(banded).tobytes() == banded.crop((10, 48, 246, 96)).tobytes()
    assert crop_margins(banded, pad=2).size == (236 + 4, 48 + 4)  # the picture and 2 pixels each side
    white = _banded(rng, (255, 255, 255))
    assert crop_margins(white, pad=0).size == (236, 48)
    # A few dots in a margin (under 2% of a row or column) do not stop the cut.
    dotted = np.asarray(_banded(rng)).copy()
    dotted[5, 100:103] = 200
    dotted[130, 30] = 255
    assert crop_margins(Image.fromarray(dotted), pad=0).size == (236, 48)
    # No plain margin, or a picture too small to be one: unchanged (the same object).
    noise = Image.fromarray(rng.integers(0, 255, (60, 160, 3), dtype=np.uint8))
    assert crop_margins(noise) is noise
    speck = np.zeros((60, 160, 3), np.uint8)
    speck[20:25, 40:140] = 255
    assert crop_margins(Image.fromarray(speck)).size == (160, 60)
    plain = Image.new("RGB", (160, 60), (200, 10, 10))
    assert crop_margins(plain) is plain
    # preprocess(crop=True) is crop then resize; the flag is off by default.
    assert np.array_equal(preprocess(banded, 48, 3, 160, crop=True), preprocess(crop_margins(banded), 48, 3, 160))
    assert not np.array_equal(preprocess(banded, 48, 3, 160, crop=True), preprocess(banded, 48, 3, 160))


def test_crop_margins_is_a_config_field_that_old_configs_lack_and_datasets_apply(tmp_path):
    assert TrainConfig().crop_margins is False and TrainConfig().preprocessing["crop"] is False
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "crop_margins"}
    assert TrainConfig.from_dict(old).crop_margins is False
    config = TrainConfig(crop_margins=True, input_width=160, channels=3)
    assert TrainConfig.from_dict(config.to_dict()).crop_margins is True
    with pytest.raises(ValueError, match="crop_margins"):
        TrainConfig(crop_margins="yes")
    image = _banded(np.random.default_rng(1))
    image.save(tmp_path / "AB12_0.png")
    items = read_folder(tmp_path)
    got = FolderImages(items, **config.preprocessing)[0][0]
    assert np.array_equal(got, preprocess(crop_margins(image), 48, 3, 160))
    drawn = DrawnCaptchas(DrawSpec("0123456789", 4, 4, (160, 60)), 0, "t", **config.preprocessing)
    assert drawn.crop is True


def test_pad_batch_pads_with_white_and_model_input_is_ink():
    a, b = np.zeros((1, 4, 8), np.uint8), np.zeros((1, 4, 4), np.uint8)
    images, widths = pad_batch([a, b])
    assert images.shape == (2, 1, 4, 8) and widths.tolist() == [8, 4]
    assert (images[1, :, :, 4:] == 255).all() and (images[1, :, :, :4] == 0).all()
    ink = to_model_input(images)
    assert ink.dtype == torch.float32 and ink[1, 0, 0, 7] == 0 and ink[1, 0, 0, 0] == 1
    with pytest.raises(ValueError, match="differ in"):
        pad_batch([a, np.zeros((1, 5, 8), np.uint8)])


def test_augment_is_mild_reproducible_and_keeps_the_size():
    image, _ = draw_captcha(DrawSpec(DIGITS, 4, 4), 0, "t", 0)
    one, two = augment(image, random.Random(3)), augment(image, random.Random(3))
    assert one.size == image.size and np.array_equal(np.asarray(one), np.asarray(two))
    diff = np.abs(np.asarray(one.convert("L"), np.int16) - np.asarray(image.convert("L"), np.int16))
    assert 0 < diff.mean() < 60


def _ink_batch(count=6, width=84):
    spec = DrawSpec(DIGITS, 4, 4)
    images = [preprocess(draw_captcha(spec, 0, "j", i)[0], 32, width=width) for i in range(count)]
    return to_model_input(pad_batch(images)[0])


def test_jitter_is_reproducible_mild_and_off_at_strength_zero():
    ink = _ink_batch()
    widths = torch.full((len(ink),), ink.shape[3])
    one = jitter(ink, widths, torch.Generator().manual_seed(5))
    two = jitter(ink, widths, torch.Generator().manual_seed(5))
    other = jitter(ink, widths, torch.Generator().manual_seed(6))
    assert one.shape == ink.shape and one.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(one, two) and not torch.equal(one, other)
    change = (one - ink).abs().mean(dim=(1, 2, 3))
    assert (change > 0.005).all() and (change < 0.2).all()  # every image moved, none beyond recognition
    assert 0.8 < one.sum() / ink.sum() < 1.1  # ink is moved, not made
    assert jitter(ink, widths, torch.Generator(), 0.0) is ink
    # a vanishing map is the identity up to rounding: the pixel-centre convention is right
    assert (jitter(ink, widths, torch.Generator().manual_seed(5), 1e-9) - ink).abs().max() < 1e-4


def test_jitter_maps_each_image_about_its_own_width():
    """An image padded into a wider batch gets the map it gets alone: the
    map is centred on its own columns, not the batch's."""
    ink = _ink_batch(count=2, width=64)
    padded = torch.nn.functional.pad(ink, (0, 40))  # ink 0 = white paper, as pad_batch pads
    widths = torch.tensor([64, 64])
    alone = jitter(ink, widths, torch.Generator().manual_seed(2))
    inside = jitter(padded, widths, torch.Generator().manual_seed(2))
    assert torch.allclose(inside[..., :64], alone, atol=1e-4)
    assert inside[..., 72:].abs().max() < 1e-4  # nothing spills far into the padding
    # centred on the batch instead (the width of the padded batch), the result differs
    assert not torch.allclose(jitter(padded, torch.tensor([104, 104]), torch.Generator().manual_seed(2))[..., :64],
                              alone, atol=1e-2)


def test_jitter_rejects_bad_arguments():
    ink = _ink_batch(count=2)
    with pytest.raises(ValueError, match="widths"):
        jitter(ink, torch.tensor([84]), torch.Generator())
    with pytest.raises(ValueError, match="strength must be >= 0"):
        jitter(ink, torch.tensor([84, 84]), torch.Generator(), -1.0)


# ---- drawn captchas ----------------------------------------------------------------------------

def test_drawing_is_reproducible_and_follows_the_length_range():
    spec = DrawSpec(DIGITS, 4, 6, (160, 60))
    first, label = draw_captcha(spec, 7, "train", 11)
    again, label_again = draw_captcha(spec, 7, "train", 11)
    assert label == label_again and np.array_equal(np.asarray(first), np.asarray(again))
    other, _ = draw_captcha(spec, 7, "eval", 11)
    assert not np.array_equal(np.asarray(first), np.asarray(other))
    lengths = {len(draw_captcha(spec, 7, "train", i)[1]) for i in range(60)}
    assert lengths == {4, 5, 6}
    data = DrawnCaptchas(spec, 7, "train", height=32)
    image, label = data[11]
    assert image.shape == (1, 32, 84) and label == label_again and set(label) <= set(DIGITS)


def test_oversample_draws_its_groups_more_often_and_only_in_training():
    charset = CHARSETS["0-9A-Z"]
    assert parse_oversample("0O:3, 1I:2") == {"0": 3.0, "O": 3.0, "1": 2.0, "I": 2.0}
    assert parse_oversample("") == {}
    for bad in ("0O", ":3", "0O:x", "0O:0", "0O:-1", "0O:3,O:2", "0O:nan"):
        with pytest.raises(ValueError, match="oversample"):
            parse_oversample(bad)
    weights = char_weights(charset, "0O:3")
    assert len(weights) == 36 and weights[0] == weights[charset.index("O")] == 3.0 and sum(weights) == 40
    # a group counts only when all its characters are in the charset; factor 1 is uniform
    assert char_weights(DIGITS, "0O:3") == () and char_weights(charset, "0O:1") == ()
    assert char_weights(DIGITS, "0O:3,12:2") == tuple(2.0 if c in "12" else 1.0 for c in DIGITS)
    # no weights: the stream drawn before the field existed (labels from rng.choice)
    spec = DrawSpec(charset, 4, 4)
    labels = [draw_captcha(spec, 3, "train", i)[1] for i in range(3)]
    rngs = [random.Random(f"3/train/{i}") for i in range(3)]
    assert labels == ["".join(r.choice(charset) for _ in range(4)) for r in rngs if r.randint(4, 4)]
    # weighted: 0 and O each 3/40 of the characters (4000 drawn: 300 expected, sd about 17)
    heavy = DrawSpec(charset, 4, 4, weights=weights)
    text = "".join(draw_captcha(heavy, 5, "train", i)[1] for i in range(1000))
    assert 230 < text.count("0") < 370 and 230 < text.count("O") < 370
    assert max(text.count(c) for c in charset if c not in "0O") < 170
    # the trainer: training stream weighted, validation stream uniform; old configs meant uniform
    config = TrainConfig(eval_size=6, workers=0)
    assert config.oversample == "0O:3"
    from ctcx.captcha.train import load_data
    data = load_data(config, progress=False)
    assert data.train.spec.weights == weights
    assert data.val_labels == [draw_captcha(spec, 0, "eval", i)[1] for i in range(6)]
    old = {k: v for k, v in config.to_dict().items() if k != "oversample"}
    assert TrainConfig.from_dict(old).oversample == ""
    with pytest.raises(ValueError, match="oversample"):
        TrainConfig(oversample="0O:zero")


# ---- folders -----------------------------------------------------------------------------------

def _png(path, color=255):
    Image.new("L", (80, 30), color).save(path)


def test_read_folder_layouts_and_errors(tmp_path):
    for name in ("AB12_0.png", "CD34.png", "not_an_image.txt"):
        (tmp_path / "a").mkdir(exist_ok=True)
        if name.endswith(".png"):
            _png(tmp_path / "a" / name)
        else:
            (tmp_path / "a" / name).write_text("x")
    assert [(p.name, label) for p, label in read_folder(tmp_path / "a")] == [("AB12_0.png", "AB12"),
                                                                            ("CD34.png", "CD34")]
    listed = tmp_path / "b"
    listed.mkdir()
    _png(listed / "1.png")
    _png(listed / "2.png")
    (listed / "labels.tsv").write_text("# path\tlabel\n1.png\tX_Y\n\n2.png\tzz\n")
    assert [(p.name, label) for p, label in read_folder(listed)] == [("1.png", "X_Y"), ("2.png", "zz")]
    (listed / "labels.tsv").write_text("1.png\tok\n2.png\n")
    with pytest.raises(ValueError, match=r"labels.tsv:2: expected 'path<TAB>label'"):
        read_folder(listed)
    (listed / "labels.tsv").write_text("3.png\tgone\n")
    with pytest.raises(FileNotFoundError, match="1 missing files"):
        read_folder(listed)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        read_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        read_folder(tmp_path / "nowhere")
    with pytest.raises(NotADirectoryError):
        read_folder(tmp_path / "a" / "CD34.png")
    (tmp_path / "a" / "broken_1.png").write_bytes(b"not a png")
    items = read_folder(tmp_path / "a")
    data = FolderImages(items, height=16)
    assert data[0][0].shape == (1, 16, 44) and data[0][1] == "AB12"
    with pytest.raises(ValueError, match="cannot read image .*broken_1.png"):
        data[[p.name for p, _ in items].index("broken_1.png")]


def test_split_is_seeded_disjoint_and_complete():
    items = [(f"{i}.png", str(i)) for i in range(50)]
    train, val = split_items(items, 0.2, seed=1)
    assert len(val) == 10 and len(train) == 40 and sorted(train + val) == sorted(items)
    assert split_items(items, 0.2, seed=1) == (train, val) and split_items(items, 0.2, seed=2) != (train, val)
    with pytest.raises(ValueError, match="fraction"):
        split_items(items, 1.0, 0)


# ---- streams -----------------------------------------------------------------------------------

def test_position_sampler_shares_epochs_between_processes():
    take = lambda sampler, n: [next(it) for it in [iter(sampler)] for _ in range(n)]
    rank0 = take(PositionSampler(0, seed=3, epoch_size=10, rank=0, world=2), 10)
    rank1 = take(PositionSampler(0, seed=3, epoch_size=10, rank=1, world=2), 10)
    first_epoch = [k for k, e in rank0 + rank1 if e == 0]
    assert sorted(first_epoch) == list(range(10))  # each epoch is one pass, split between the ranks
    assert take(PositionSampler(3, seed=3, epoch_size=10, rank=1, world=2), 7) == rank1[3:]
    assert take(PositionSampler(5, seed=0), 3) == [5, 6, 7]


@pytest.mark.parametrize("pool_size, workers", [(0, 0), (48, 0), (48, 1)])
def test_stream_resumes_with_the_same_batches(pool_size, workers):
    data = DrawnCaptchas(DrawSpec(DIGITS, 2, 3, (64, 32)), 0, "train", height=16)
    kwargs = dict(batch_size=8, pool_size=pool_size, fresh_per_step=4, workers=workers, seed=5)
    stream = BatchStream(data, DIGITS, **kwargs)
    for _ in range(3):
        stream.next()
    state = stream.state_dict()
    expected = [stream.next() for _ in range(3)]
    again = BatchStream(data, DIGITS, state=state, **kwargs)
    for got, want in zip((again.next() for _ in range(3)), expected):
        for a, b in zip(got, want):
            assert torch.equal(a, b)
    assert want.targets.shape[1] == int(want.target_lengths.max()) and set(want.target_lengths.tolist()) <= {2, 3}
    assert stream.consumed == (48 + 6 * 4 if pool_size else 6 * 8)


# ---- config, model -----------------------------------------------------------------------------

def test_config_round_trip_presets_and_validation():
    config = TrainConfig(preset="small", charset="0123", min_length=2, max_length=5, fonts=("a.ttf",))
    plain = config.to_dict()
    assert plain["conv_channels"] == list(PRESETS["small"]["conv_channels"]) and plain["fonts"] == ["a.ttf"]
    assert TrainConfig.from_dict(plain) == config
    assert TrainConfig(rnn_hidden=40).rnn_hidden == 40 and TrainConfig().charset == resolve_charset("0-9A-Z")
    assert TrainConfig(data_dir="d").charset == ""  # inferred from the folder later
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**plain, "from_the_future": 1})
    TrainConfig(max_length=20)  # 40 frames at 160x48 (width_scale 1.25) hold 39
    with pytest.raises(ValueError, match="too few for labels of 20"):
        TrainConfig(max_length=20, width_scale=1.0)  # 32 frames at 128x48
    with pytest.raises(ValueError, match="amp must be one of"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="min_length"):
        TrainConfig(min_length=5, max_length=4)
    with pytest.raises(ValueError, match="channels must be 1"):
        TrainConfig(channels=2)
    with pytest.raises(ValueError, match="jitter must be a strength"):
        TrainConfig(jitter=-0.5)
    with pytest.raises(ValueError, match="ema must be a decay"):
        TrainConfig(ema=1.0)
    with pytest.raises(ValueError, match="head must be one of"):
        TrainConfig(head="lstm")
    with pytest.raises(ValueError, match="pool_first must be True or False"):
        TrainConfig(pool_first="yes")


def test_preset_parameter_counts_match_the_documentation():
    counts = {name: count_parameters(build_model(TrainConfig(preset=name))) for name in PRESETS}
    assert counts == {"tiny": 243_925, "small": 1_162_629, "base": 3_738_085}
    low = {name: count_parameters(build_model(TrainConfig(preset=name, input_height=32))) for name in PRESETS}
    assert low == {"tiny": 207_061, "small": 1_015_173, "base": 3_344_869}
    import ctcx.captcha.model as model_module
    source = open(model_module.__file__).read()
    for count in [*counts.values(), *low.values()]:
        assert f"{count:,}" in source


def test_model_reads_variable_widths_and_rgb():
    model = build_model(TrainConfig(preset="tiny", channels=3, input_height=32)).eval()
    logits = model(torch.rand(2, 3, 32, 84))
    assert logits.shape == (21, 2, 37)
    with pytest.raises(ValueError, match="multiple of 16"):
        TrainConfig(input_height=40)


def test_fonts_and_font_sizes_reach_the_captcha_library():
    import captcha

    font = str(Path(captcha.__file__).parent / "data" / "DroidSansMono.ttf")
    spec = DrawSpec(DIGITS, 4, 4, (160, 60), (font,), (20, 24))
    image, _ = draw_captcha(spec, 0, "f", 0)
    default, _ = draw_captcha(DrawSpec(DIGITS, 4, 4, (160, 60)), 0, "f", 0)
    assert not np.array_equal(np.asarray(image), np.asarray(default))
    fonts = _drawer(spec).truefonts
    assert [(f.path, f.size) for f in fonts] == [(font, 20), (font, 24)]


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from ctcx.captcha.train import _schedule

    config = TrainConfig(schedule="cosine", steps=100, warmup=0.1, lr=1.0)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = _schedule(config, optimizer)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5, abs=0.02) and lrs[-1] < 0.001
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


@pytest.mark.parametrize("pool_size", [0, 48])
def test_worker_processes_draw_the_same_batches_as_the_main_process(pool_size):
    """Sample i is a pure function of the seed and i, wherever it is drawn: the
    batches read through a DataLoader worker equal those drawn in this process
    (the captcha library's `secrets` is pointed at a seeded generator there too)."""
    data = DrawnCaptchas(DrawSpec(DIGITS, 2, 3, (64, 32)), 0, "train", height=16)
    kwargs = dict(batch_size=8, pool_size=pool_size, fresh_per_step=4, seed=7)
    main_process = BatchStream(data, DIGITS, workers=0, **kwargs)
    worker = BatchStream(data, DIGITS, workers=1, **kwargs)
    for _ in range(3):
        for a, b in zip(main_process.next(), worker.next()):
            assert torch.equal(a, b)
