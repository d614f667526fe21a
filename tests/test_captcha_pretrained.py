"""Shipped readers (ctcx.captcha.pretrained): found by name, sha256-checked, read-only; --init-from follows them."""
import hashlib
import importlib
import shutil

import pytest
import torch

from ctcx.captcha import TrainConfig, build_model, save_checkpoint
from ctcx.captcha.checkpoint import load_checkpoint, read_checkpoint, update_checkpoint
from ctcx.captcha.cli import build_parser, config_from_args

shipped = importlib.import_module("ctcx.captcha.pretrained")  # the module (ctcx.captcha.pretrained is its loader)


def _checkpoint(path, **overrides):
    values = dict(conv_channels=(8, 16, 16, 16), rnn_hidden=16, input_height=32, input_width=96, preset="small",
                  head="conv", pool_first=True, charset="0-9a-z", max_length=6, min_length=4)
    values.update(overrides)
    config = TrainConfig(**values)
    torch.manual_seed(0)
    model = build_model(config)
    save_checkpoint(path, {"config": config.to_dict(), "charset": config.charset, "step": 7, "complete": True,
                           "state_dict": model.state_dict()})
    return config, model


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry holding one reader, 'demo', in a folder of its own."""
    folder = tmp_path / "weights"
    folder.mkdir()
    config, model = _checkpoint(folder / "demo.pt")
    digest = hashlib.sha256((folder / "demo.pt").read_bytes()).hexdigest()
    monkeypatch.setattr(shipped, "_FOLDER", folder)
    monkeypatch.setattr(shipped, "PRETRAINED", {"demo": {"file": "demo.pt", "sha256": digest}})
    monkeypatch.chdir(tmp_path)
    return folder, config, model


def test_a_name_loads_the_shipped_file_after_its_sha256_check(registry):
    folder, config, model = registry
    assert shipped.pretrained_path("demo") == folder / "demo.pt"
    loaded, loaded_config, raw = shipped.pretrained("demo")
    assert loaded_config == config and raw["step"] == 7
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert load_checkpoint("demo")[1] == config  # every checkpoint argument takes the name


def test_a_changed_or_missing_file_and_an_unknown_name_are_refused(registry):
    folder, _, _ = registry
    with pytest.raises(ValueError, match="no pretrained reader named 'nope'; shipped: \\['demo'\\]"):
        shipped.pretrained_path("nope")
    data = bytearray((folder / "demo.pt").read_bytes())
    data[-10] ^= 1
    (folder / "demo.pt").write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="sha256"):
        read_checkpoint("demo")
    (folder / "demo.pt").unlink()
    with pytest.raises(FileNotFoundError, match="missing from this installation"):
        read_checkpoint("demo")


def test_a_file_of_the_same_name_wins_and_the_shipped_file_is_never_rewritten(registry, tmp_path):
    folder, _, _ = registry
    before = (folder / "demo.pt").read_bytes()
    with pytest.raises(ValueError, match="shipped with ctcx, not a file to change"):
        update_checkpoint("demo", {"calibration": {"temperature": 2.0}})
    assert (folder / "demo.pt").read_bytes() == before
    shutil.copy(folder / "demo.pt", tmp_path / "demo")  # a user's own file called "demo"
    update_checkpoint("demo", {"calibration": {"temperature": 2.0}})
    assert read_checkpoint(tmp_path / "demo")["calibration"]["temperature"] == 2.0
    assert (folder / "demo.pt").read_bytes() == before


def test_init_from_sets_the_model_and_input_unless_given(registry):
    _, config, _ = registry
    args = build_parser("train").parse_args(["--init-from", "demo", "--charset", "0-9A-Z"])
    derived = config_from_args(args)
    for name in ("preset", "conv_channels", "rnn_hidden", "rnn_layers", "head", "pool_first", "input_height",
                 "input_width", "width_scale", "channels"):
        assert getattr(derived, name) == getattr(config, name), name
    assert derived.charset == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    given = config_from_args(build_parser("train").parse_args(["--init-from", "demo", "--input-width", "128"]))
    assert given.input_width == 128 and given.conv_channels == config.conv_channels
    plain = config_from_args(build_parser("train").parse_args([]))
    default = TrainConfig()
    assert (plain.preset, plain.conv_channels, plain.input_height, plain.input_width, plain.channels) == \
        (default.preset, default.conv_channels, default.input_height, default.input_width, default.channels)


def test_the_shipped_general_reader_loads_and_reads_a_drawn_captcha():
    import ctcx.captcha
    from ctcx.captcha import pretrained

    model, config, raw = ctcx.captcha.pretrained("general")  # sha256-checked; as the README calls it
    assert pretrained is shipped.pretrained and callable(ctcx.captcha.pretrained)
    assert config.charset == "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert config.style == "general" and config.input_width == 160 and raw["complete"]
    assert 0.2 < raw["calibration"]["temperature"] < 5
    assert "optimizer" not in raw  # stripped for shipping: readers, not resumable runs
    from ctcx.captcha.drawn import DrawSpec, draw_captcha
    from ctcx.captcha.evaluate import predict
    from ctcx.captcha.images import preprocess

    spec = DrawSpec("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", 4, 4)
    drawn = [draw_captcha(spec, 11, "pretrained-test", i) for i in range(40)]
    images = [preprocess(image, **config.preprocessing) for image, _ in drawn]
    readings = predict(model, images, config.charset, "constrained", 10, 4, 4, locate=False,
                       read_as=spec.charset)
    right = sum(r.text == label for r, (_, label) in zip(readings, drawn))
    assert right >= 20  # 78% on captcha-36x4 zero-shot (README); chance is nil
