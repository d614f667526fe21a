"""The captcha trainer (ctcx.captcha and examples/train_captcha.py): small and fast runs."""
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ctcx.captcha import (CHARSET_36, CaptchaPool, TrainConfig, build_model, character_error_rate,
                          edit_distance, evaluate, exact_match, label_from_filename, load_checkpoint,
                          load_folder, train)
from ctcx.captcha.cli import build_parser, config_from_args, main
from ctcx.captcha.data import decode_label, draw_captchas, encode_label

REPO = Path(__file__).resolve().parents[1]
SHARED_36X4 = Path(__file__).resolve().parents[2] / "shared/data/captcha-36x4"


def tiny_config(tmp_path, **overrides):
    """A run that takes a few seconds: small model, small pool, few steps."""
    values = dict(conv_channels=(8, 16, 16, 16), rnn_hidden=16, steps=30, batch_size=16, lr=3e-3,
                  pool_size=128, fresh_per_step=4, workers=1, eval_size=32, eval_every=0, threads=1,
                  device="cpu", checkpoint=str(tmp_path / "ckpt" / "crnn.pt"))
    values.update(overrides)
    return TrainConfig(**values)


# ---- labels, metrics ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, label", [
    ("A3KD_00042.png", "A3KD"),
    ("01I4_00147.png", "01I4"),
    ("ab_c_7.png", "ab_c"),          # label is everything before the LAST underscore
    ("/some/dir/XY9Z_1.jpg", "XY9Z"),
])
def test_label_from_filename(name, label):
    assert label_from_filename(name) == label


@pytest.mark.parametrize("name", ["nounderscore.png", "_00042.png"])
def test_label_from_filename_rejects_names_without_label(name):
    with pytest.raises(ValueError, match="cannot read a label"):
        label_from_filename(name)


def test_encode_decode_label_round_trip():
    assert encode_label("09AZ", CHARSET_36) == [1, 10, 11, 36]
    assert decode_label([1, 10, 11, 36], CHARSET_36) == "09AZ"
    with pytest.raises(ValueError, match=r"\['a'\]"):
        encode_label("A1a2", CHARSET_36)


def test_edit_distance_known_values():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "ABCD") == 4
    assert edit_distance("ABCD", "ABCD") == 0
    assert edit_distance("ABCD", "BACD") == 2


def test_character_error_rate_and_exact_match():
    references = ["ABCD", "1234", "WXYZ"]
    predictions = ["ABCD", "124", "WXYQZ"]  # 0 + 1 deletion + 1 insertion edits over 12 characters
    assert character_error_rate(predictions, references) == pytest.approx(2 / 12)
    assert exact_match(predictions, references) == pytest.approx(1 / 3)
    assert character_error_rate(["", ""], ["AB", "CD"]) == 1.0
    with pytest.raises(ValueError, match="2 predictions for 3 references"):
        character_error_rate(predictions[:2], references)


# ---- config, model -----------------------------------------------------------------------------

def test_config_dict_round_trip_and_validation():
    config = TrainConfig(conv_channels=(8, 16, 24, 32), steps=7, charset="0123")
    plain = config.to_dict()
    assert plain["conv_channels"] == [8, 16, 24, 32] and plain["charset"] == "0123"
    assert TrainConfig.from_dict(plain) == config
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**plain, "from_the_future": 1})
    with pytest.raises(ValueError, match="input_height must be a multiple of 16"):
        TrainConfig(input_height=30)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        TrainConfig(batch_size=0)


def test_model_output_is_log_probs_with_blank_and_charset():
    config = TrainConfig(conv_channels=(8, 16, 16, 16), rnn_hidden=8)
    model = build_model(config)
    log_probs = model(torch.rand(3, 1, config.input_height, config.input_width))
    assert log_probs.shape == (config.input_width // 4, 3, len(CHARSET_36) + 1)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(config.input_width // 4, 3))


# ---- data --------------------------------------------------------------------------------------

def test_draw_captchas_shapes_and_labels():
    images, targets = draw_captchas(3, CHARSET_36, 4, (160, 60), (32, 96), random.Random(1))
    assert images.shape == (3, 32, 96) and images.dtype.name == "uint8"
    assert targets.shape == (3, 4) and targets.min() >= 1 and targets.max() <= 36
    assert images.min() < 128 < images.max()  # dark ink on light paper


def test_pool_fills_refreshes_and_samples():
    with CaptchaPool(20, "0123456789", 4, (160, 60), (32, 96), workers=1, chunk=8) as pool:
        held_out, held_out_targets = pool.take(5)
        pool.fill()
        assert pool.filled == 20 and pool.drawn == 20
        assert held_out.shape == (5, 32, 96) and held_out_targets.shape == (5, 4)
        images, targets, lengths = pool.sample(6, torch.Generator().manual_seed(0))
        assert images.shape == (6, 32, 96) and images.dtype == torch.uint8
        assert targets.shape == (6, 4) and 1 <= targets.min() and targets.max() <= 10
        assert lengths.tolist() == [4] * 6
        deadline = time.monotonic() + 30
        while pool.refresh(3) == 0 and time.monotonic() < deadline:  # the worker may still be drawing
            time.sleep(0.01)
        assert 20 < pool.drawn <= 23 and pool.filled == 20


def write_captchas(directory, labels):
    from captcha.image import ImageCaptcha
    directory.mkdir(parents=True, exist_ok=True)
    drawer = ImageCaptcha(160, 60)
    for i, label in enumerate(labels):
        drawer.generate_image(label).save(directory / f"{label}_{i:05d}.png")


def test_load_folder_reads_labels_and_reports_bad_input(tmp_path):
    write_captchas(tmp_path / "imgs", ["AB12", "Z9_X"])
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    images, labels, paths = load_folder(tmp_path / "imgs", 32, 96)
    assert images.shape == (2, 32, 96) and sorted(labels) == ["AB12", "Z9_X"]
    assert [label_from_filename(p) for p in paths] == labels
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_folder(tmp_path / "missing", 32, 96)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_folder(tmp_path / "empty", 32, 96)


# ---- training, checkpoints, evaluation ---------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the tests below."""
    config = tiny_config(tmp_path_factory.mktemp("run"), steps=40, eval_every=20)
    return train(config, progress=False, log=lambda _: None)


def test_training_lowers_the_loss_and_writes_a_self_describing_checkpoint(trained):
    losses = [record["loss"] for record in trained.history if "loss" in record]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert [record["step"] for record in trained.history if "accuracy" in record] == [20, 40]
    assert trained.history[-1]["accuracy"] == trained.evaluation.accuracy
    assert trained.evaluation.count == 32 and 0.0 <= trained.evaluation.accuracy <= 1.0

    raw = torch.load(trained.checkpoint, weights_only=True)
    assert {"format", "state_dict", "charset", "config", "metrics", "history"} <= set(raw)
    assert raw["charset"] == CHARSET_36
    assert TrainConfig.from_dict(raw["config"]) == trained.config
    assert raw["metrics"]["accuracy"] == trained.evaluation.accuracy

    model, config, _ = load_checkpoint(trained.checkpoint)
    assert config == trained.config
    x = torch.rand(2, 1, config.input_height, config.input_width)
    torch.testing.assert_close(model(x), trained.model(x))
    assert not list(trained.checkpoint.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_training_refuses_to_overwrite_a_checkpoint(trained):
    mtime = trained.checkpoint.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(trained.config, progress=False, log=lambda _: None)
    assert trained.checkpoint.stat().st_mtime_ns == mtime


def test_evaluate_scores_predictions(trained):
    images = torch.zeros(2, trained.config.input_height, trained.config.input_width, dtype=torch.uint8)
    result = evaluate(trained.model, images, ["AAAA", "BBBB"], trained.config.charset)
    assert result.count == 2 and len(result.predictions) == 2
    assert result.accuracy == exact_match(result.predictions, ["AAAA", "BBBB"])
    assert result.cer == pytest.approx(character_error_rate(result.predictions, ["AAAA", "BBBB"]))


def test_cli_eval_dir_on_generated_images(trained, tmp_path, capsys):
    write_captchas(tmp_path / "imgs", ["AB12", "XY9Z", "ab12"])  # lowercase: outside the charset
    assert main(["--eval-dir", str(tmp_path / "imgs"), "--checkpoint", str(trained.checkpoint)]) == 0
    out, err = capsys.readouterr()
    assert "3 images, greedy: exact-match accuracy" in out and "character error rate" in out
    assert "1 of 3 labels have characters outside" in err
    assert main(["--eval-dir", str(tmp_path / "imgs"), "--checkpoint", str(trained.checkpoint),
                 "--decode", "all", "--beam-width", "4"]) == 0
    out, _ = capsys.readouterr()
    assert "greedy:" in out and "beam search (beam 4):" in out and "beam search, length 4 (beam 4):" in out


def test_decoders_agree_with_the_ctcx_decoders(trained):
    """Even on a blank page the constrained decoder returns labels of exactly label_length characters."""
    blank_page = torch.full((1, trained.config.input_height, trained.config.input_width), 255, dtype=torch.uint8)
    images = blank_page
    labels = ["AB12"]
    greedy = evaluate(trained.model, images, labels, trained.config.charset)
    constrained = evaluate(trained.model, images, labels, trained.config.charset, decoder="constrained",
                           beam_width=8, label_length=4)
    assert all(len(p) == 4 for p in constrained.predictions)
    assert len(greedy.predictions) == 1
    with pytest.raises(ValueError, match="decoder must be one of"):
        evaluate(trained.model, images, labels, trained.config.charset, decoder="viterbi")
    with pytest.raises(ValueError, match="needs label_length"):
        evaluate(trained.model, images, labels, trained.config.charset, decoder="constrained")


def test_cli_eval_dir_on_shared_captcha_36x4(trained, capsys):
    if not SHARED_36X4.is_dir():
        pytest.skip(f"{SHARED_36X4} is not here")
    few = sorted(SHARED_36X4.glob("*.png"))[:20]
    images, labels, _ = load_folder(SHARED_36X4, trained.config.input_height, trained.config.input_width)
    assert len(labels) == 2000 and all(len(label) == 4 and set(label) <= set(CHARSET_36) for label in labels)
    assert [label_from_filename(p) for p in few] == labels[:20]
    result = evaluate(trained.model, images[:20], labels[:20], trained.config.charset)
    assert result.count == 20 and 0.0 <= result.cer


def test_cli_reports_bad_input_without_a_traceback(trained, tmp_path, capsys):
    assert main(["--eval-dir", str(tmp_path / "nowhere"), "--checkpoint", str(trained.checkpoint)]) == 2
    assert "error: no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--eval-dir", str(tmp_path / "empty"), "--checkpoint", str(trained.checkpoint)]) == 2
    assert "error: no images" in capsys.readouterr().err
    assert main(["--eval-dir", str(tmp_path), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "error: no checkpoint" in capsys.readouterr().err
    assert main(["--steps", "0", "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "steps must be a positive int, got 0" in capsys.readouterr().err


def test_cli_flags_map_onto_config():
    args = build_parser().parse_args(["--steps", "12", "--conv-channels", "8,8,16,16", "--lr", "0.01",
                                      "--checkpoint", "x.pt"])
    config = config_from_args(args)
    assert (config.steps, config.conv_channels, config.lr) == (12, (8, 8, 16, 16), 0.01)
    assert config.checkpoint == "x.pt"
    assert config_from_args(build_parser().parse_args([])) == TrainConfig()


def test_front_door_help():
    done = subprocess.run([sys.executable, str(REPO / "examples" / "train_captcha.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for flag in ("--eval-dir", "--checkpoint", "--steps", "--batch-size", "--device", "--overwrite"):
        assert flag in done.stdout
