"""Captcha trainer run side: training, exact resume, DDP, evaluation, prediction, ONNX export, CLI."""
import copy
import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import torch

from ctcx._reference import ctc_nll_brute_force
from ctcx.captcha import TrainConfig, evaluate, load_checkpoint, predict, read_checkpoint, train
from ctcx.captcha.cli import build_parser, config_from_args, main
from ctcx.captcha.drawn import DrawnCaptchas, DrawSpec, draw_captcha
from ctcx.captcha.evaluate import _greedy, _locate
from ctcx.captcha.folder import read_folder

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared/data"
TRAIN = REPO / "examples/train_captcha.py"


def tiny(out_dir, **overrides):
    """A run of a few seconds: small model, small pool, few steps, one thread."""
    values = dict(conv_channels=(8, 16, 16, 16), rnn_hidden=16, input_height=32, steps=30, batch_size=16, pool_size=64,
                  fresh_per_step=4, workers=0, eval_size=24, eval_every=10, save_every=10, log_every=5,
                  threads=1, device="cpu", amp="off", out_dir=str(out_dir))
    values.update(overrides)
    return TrainConfig(**values)


def run(config, **kwargs):
    return train(config, progress=False, log=lambda _: None, **kwargs)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model that has learnt something: single digits 1-2 long, 300 steps."""
    out = tmp_path_factory.mktemp("trained")
    config = tiny(out, charset="digits", min_length=1, max_length=2, image_width=64, image_height=32,
                  input_height=16, steps=300, lr=2e-2, pool_size=512, eval_size=64, eval_every=150,
                  decoders=("greedy", "beam", "constrained"))
    return run(config)


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ---- training ----------------------------------------------------------------------------------

def test_training_learns_and_writes_checkpoint_log_and_plot(trained):
    losses = [row["loss"] for row in trained.history if "loss" in row]
    assert losses[-1] < 0.5 * losses[0]
    assert trained.evaluations["greedy"].accuracy > 0.2  # chance is under 1%; the run is deterministic
    out = trained.checkpoint.parent
    saved = read_checkpoint(trained.checkpoint)
    assert saved["complete"] and saved["step"] == 300 and saved["charset"] == "0123456789"
    for key in ("optimizer", "scheduler", "scaler", "rng", "streams", "history", "metrics", "elapsed"):
        assert key in saved
    assert saved["metrics"]["greedy_accuracy"] == trained.evaluations["greedy"].accuracy
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert rows[-1]["step"] == "300" and float(rows[-1]["accuracy"]) == trained.evaluations["greedy"].accuracy
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model, config, _ = load_checkpoint(trained.checkpoint)
    assert same_weights(model, trained.model) and config == trained.config


def test_final_evaluation_covers_the_whole_validation_set_with_every_decoder(trained):
    results = trained.evaluations
    assert set(results) == {"greedy", "beam", "constrained"}
    assert all(r.count == 64 for r in results.values())
    assert all(1 <= len(p) <= 2 for p in results["constrained"].predictions)
    assert results["beam"].accuracy >= results["greedy"].accuracy - 0.05


class Killed(Exception):
    pass


@pytest.mark.slow
def test_resume_after_a_kill_or_ctrl_c_continues_exactly(tmp_path):
    """dropout and 2 GRU layers: the torch RNG matters; the pool is refilled by redrawing."""
    config = dict(dropout=0.1, rnn_layers=2, charset="digits", min_length=3, max_length=4)
    straight = run(tiny(tmp_path / "straight", **config))

    def kill(step):
        if step == 17:  # after the periodic save at step 10: steps 11-17 are lost and redone
            raise Killed

    with pytest.raises(Killed):
        run(tiny(tmp_path / "killed", **config), on_step=kill)
    assert read_checkpoint(tmp_path / "killed/checkpoint.pt")["step"] == 10
    resumed = run(tiny(tmp_path / "killed", **config), resume=True)
    assert same_weights(resumed.model, straight.model)

    def interrupt(step):
        if step == 13:
            os.kill(os.getpid(), signal.SIGINT)  # handled at the step boundary: saved at step 13

    with pytest.raises(KeyboardInterrupt):
        run(tiny(tmp_path / "stopped", **config), on_step=interrupt)
    assert read_checkpoint(tmp_path / "stopped/checkpoint.pt")["step"] == 13
    resumed = run(tiny(tmp_path / "stopped", **config), resume=True)
    assert same_weights(resumed.model, straight.model)
    assert [r["step"] for r in resumed.history] == [r["step"] for r in straight.history]
    assert resumed.evaluations["greedy"].predictions == straight.evaluations["greedy"].predictions


def test_refuses_to_overwrite_or_resume_a_finished_run(trained, tmp_path):
    with pytest.raises(FileExistsError, match="--resume"):
        run(trained.config)
    with pytest.raises(ValueError, match="finished run"):
        run(trained.config, resume=True)
    with pytest.raises(FileNotFoundError):
        run(tiny(tmp_path / "none"), resume=True)


def test_bf16_autocast_trains_with_bf16_logits(tmp_path):
    result = run(tiny(tmp_path, amp="bf16", steps=10, eval_size=8))
    assert all(np.isfinite(row["loss"]) for row in result.history if "loss" in row)
    model = result.model
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.rand(1, 1, 32, 84)).dtype == torch.bfloat16


def test_amp_auto_on_cpu_takes_what_the_probe_finds_and_records_it(tmp_path, monkeypatch):
    """--amp auto on a CPU: bf16 exactly when the probe finds it 1.25x faster;
    the checkpoint records the choice (so a resume keeps it), the log says why."""
    import importlib

    from ctcx.captcha import precision
    train_module = importlib.import_module("ctcx.captcha.train")  # the package's name is the function

    assert precision.bf16_pays(1.0, 0.8) and not precision.bf16_pays(1.0, 0.81)
    for probe, want in (((0.05, 0.03), "bf16"), ((0.05, 0.045), "off")):
        monkeypatch.setattr(train_module, "probe_cpu_bf16", lambda *a, probe=probe, **k: probe)
        lines = []
        train(tiny(tmp_path / want, amp="auto", steps=4, eval_every=0, save_every=0), progress=False,
              log=lines.append)
        saved = read_checkpoint(tmp_path / want / "checkpoint.pt")
        assert saved["config"]["amp"] == want
        assert any(line.startswith("--amp auto: ") and "50 ms in float32" in line for line in lines), lines


def test_cpu_bf16_probe_times_both_and_leaves_model_and_rng_alone():
    from ctcx.captcha.model import build_model
    from ctcx.captcha.precision import probe_cpu_bf16

    model = build_model(tiny(".", conv_channels=(8, 16, 16, 16), rnn_hidden=16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    example = torch.rand(4, 1, 32, 84)
    state = torch.get_rng_state()
    fp32, bf16 = probe_cpu_bf16(model, example, 4, repeats=2)
    assert 0 < fp32 < float("inf") and 0 < bf16 < float("inf")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # batch-norm statistics too
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), state)


def test_the_moving_average_is_what_is_evaluated_saved_and_loaded(tmp_path):
    """With --ema the checkpoint's state_dict (what eval, predict, export and
    --init-from read) is the average, the raw weights are kept for resuming,
    and the final scores are the average's; --ema 0 saves the raw weights."""
    from ctcx.captcha.train import load_data

    result = run(tiny(tmp_path / "ema", steps=12, ema=0.9))
    saved = read_checkpoint(result.checkpoint)
    assert saved["ema_steps"] == 12
    assert all(torch.equal(v, saved["state_dict"][k]) for k, v in result.model.state_dict().items())
    raw = saved["train_state_dict"]
    assert not all(torch.equal(raw[k], v) for k, v in saved["state_dict"].items())
    model, config, _ = load_checkpoint(result.checkpoint)
    data = load_data(config, progress=False)
    again = evaluate(model, data.val_images, data.val_labels, config.charset, "greedy", 10, 4, 4)
    assert again.predictions == result.evaluations["greedy"].predictions
    plain = run(tiny(tmp_path / "plain", steps=12, ema=0.0))
    saved = read_checkpoint(plain.checkpoint)
    assert "train_state_dict" not in saved and "ema_steps" not in saved
    assert all(torch.equal(v, saved["state_dict"][k]) for k, v in plain.model.state_dict().items())


def test_folder_training_infers_charset_splits_and_reports_unknown_characters(tmp_path):
    assert main(["generate", str(tmp_path / "data"), "--count", "40", "--charset", "abc", "--length", "2-3",
                 "--image-size", "64x32", "--workers", "0"]) == 0
    (tmp_path / "val").mkdir()
    draw_captcha(DrawSpec("xyz", 2, 2, (64, 32)), 0, "v", 0)[0].save(tmp_path / "val" / "ax_0.png")
    draw_captcha(DrawSpec("abc", 2, 2, (64, 32)), 0, "v", 1)[0].save(tmp_path / "val" / "ab_1.png")
    notes = []
    result = train(tiny(tmp_path / "run", data_dir=str(tmp_path / "data"), val_dir=str(tmp_path / "val"),
                        input_height=16, steps=6, eval_every=0),
                   progress=False, log=notes.append)
    assert result.config.charset == "abc" and (result.config.min_length, result.config.max_length) == (2, 3)
    assert any("1 of 2 validation labels have characters outside" in n for n in notes)
    assert result.evaluations["greedy"].count == 2
    split = train(tiny(tmp_path / "split", data_dir=str(tmp_path / "data"), input_height=16, steps=4,
                       val_split=0.25), progress=False, log=notes.append)
    assert split.evaluations["greedy"].count == 10 and any("into 30 for training and 10" in n for n in notes)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(TRAIN),
               "--device", "cpu", "--steps", "6", "--batch-size", "8", "--pool-size", "32", "--fresh-per-step", "4",
               "--workers", "0", "--conv-channels", "8,16,16,16", "--rnn-hidden", "16", "--input-height", "32",
               "--eval-size", "16", "--save-every", "3", "--threads", "1", "--no-progress", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "x 2 processes" in done.stderr + done.stdout
    assert (done.stderr + done.stdout).count("--amp auto: ") == 1  # rank 0 probed and chose for both
    saved = read_checkpoint(out / "checkpoint.pt")
    assert saved["complete"] and saved["step"] == 6 and len(saved["streams"]) == 2
    assert [s["consumed"] for s in saved["streams"]] == [32 + 6 * 4] * 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "curves.png", "log.csv"]
    # Every rank ended with the same weights (each hashed its own; the trainer
    # compares them and fails the run otherwise), and rank 0 saved exactly those.
    from ctcx.captcha.train import weights_digest

    printed = done.stderr + done.stdout
    assert "weights identical on all 2 processes" in printed
    model, _, _ = load_checkpoint(out / "checkpoint.pt")
    assert f"(sha256 {weights_digest(model)[:16]})" in printed
    # A run written by 2 processes is resumed by 2, not 1: its stream and RNG
    # states are per process. (The checkpoint is made unfinished to get there.)
    from ctcx.captcha.checkpoint import save_checkpoint

    save_checkpoint(out / "checkpoint.pt", {**{k: v for k, v in saved.items() if k != "format"},
                                            "complete": False, "step": 3})
    config = config_from_args(build_parser().parse_args(
        ["--device", "cpu", "--steps", "6", "--batch-size", "8", "--pool-size", "32", "--fresh-per-step", "4",
         "--workers", "0", "--conv-channels", "8,16,16,16", "--rnn-hidden", "16", "--eval-size", "16",
         "--save-every", "3", "--threads", "1", "--out", str(out)]))
    with pytest.raises(ValueError, match="was written by 2 processes; resume it with as many \\(this run has 1\\)"):
        run(config, resume=True)


# ---- prediction, evaluation --------------------------------------------------------------------

def test_greedy_reading_and_character_probabilities():
    charset = "ab"
    frames = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1],
                           [0.3, 0.1, 0.6]]).log()[:, None]
    (reading,) = _greedy(frames, charset)
    assert reading.text == "aab"
    assert reading.char_probs == pytest.approx([0.8, 0.7, 0.6])
    # the label's probability, summed over its alignments, not the best path's 0.8 * 0.6 * 0.9 * 0.7 * 0.6
    assert reading.confidence == pytest.approx(math.exp(-ctc_nll_brute_force(frames[:, 0], [1, 1, 2])))
    assert reading.confidence > 0.8 * 0.6 * 0.9 * 0.7 * 0.6 * 1.05
    # where the characters sit: the best alignment of "aab" is a a - a b, 4 columns a frame
    _locate(frames, [reading], charset)
    assert reading.char_columns == [(0, 8), (12, 16), (16, 20)]


def test_the_align_example_prints_each_character_of_a_given_transcript(trained, tmp_path):
    """examples/align_captcha.py (README, "Forced alignment"): one line per
    character of the transcript, in order, inside the image; with --star a
    character left out of the transcript may go to the wildcard."""
    image, label = draw_captcha(DrawSpec("0123456789", 2, 2, (64, 32)), 0, "align", 3)
    image.save(tmp_path / "c.png")
    script = Path(__file__).resolve().parent.parent / "examples" / "align_captcha.py"

    def spans(*extra):
        out = subprocess.run([sys.executable, str(script), str(tmp_path / "c.png"), *extra, "-c",
                              str(trained.checkpoint)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        rows = [line.split() for line in out.stdout.splitlines()[1:]]
        return [(r[0], float(r[4].split("-")[0]), float(r[4].split("-")[1])) for r in rows]

    full = spans(label)
    assert [c for c, _, _ in full] == list(label)
    assert all(0 <= a < b <= 64 for _, a, b in full) and full[0][2] <= full[1][1]
    assert {c for c, _, _ in spans(label[1], "--star")} <= {label[1], "*"}
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "c.png"), "1x", "-c", str(trained.checkpoint)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "not in the model's charset" in bad.stderr


def test_char_cells_tile_the_text_around_the_spans_and_draw_spans_marks_them():
    from ctcx.captcha.spans import char_cells, draw_spans

    assert char_cells([(16, 20), (40, 48), (92, 96), (140, 144)], 160) == [(5, 31), (31, 69), (69, 118), (118, 160)]
    assert char_cells([(8, 12)], 50) == [(0, 50)] and char_cells([], 50) == []
    assert char_cells([(0, 4), (4, 8)], 10) == [(0, 4), (4, 8)]
    image = Image.new("L", (40, 20), 255)
    picture = draw_spans(image, "ab", [(4, 8), (24, 28)])
    assert picture.mode == "RGB" and picture.size[0] == 40 and picture.size[1] > 20
    pixels = np.asarray(picture)
    assert (pixels[0, 4] != 255).any() and (pixels[0, 25] != 255).any()  # the span bars
    assert (pixels[10, 16] != 255).any() and (pixels[10, 10] == 255).all()  # a cell boundary, blank inside
    with pytest.raises(ValueError, match="1 spans for the 2 characters"):
        draw_spans(image, "ab", [(4, 8)])


def test_predict_gives_each_image_the_same_reading_alone_or_in_a_mixed_batch(trained):
    config = trained.config
    images = [DrawnCaptchas(DrawSpec(config.charset, 1, 2, size), 1, "p", config.input_height)[i][0]
              for i, size in enumerate([(64, 32), (96, 32), (64, 32), (48, 32)])]
    together = predict(trained.model, images, config.charset)
    alone = [predict(trained.model, [im], config.charset)[0] for im in images]
    assert [p.text for p in together] == [p.text for p in alone]
    assert [p.confidence for p in together] == pytest.approx([p.confidence for p in alone], rel=1e-5)
    for p in together:
        assert len(p.char_probs) == len(p.text) and all(0 < q <= 1 for q in p.char_probs)
    beams = predict(trained.model, images, config.charset, "beam")
    assert all(0 < p.confidence <= 1 and len(p.char_probs) == len(p.text) for p in beams)
    for p, image in zip(together + beams, images + images):  # characters in order, inside the image
        assert len(p.char_columns) == len(p.text)
        bounds = [b for span in p.char_columns for b in span]
        assert bounds == sorted(bounds) and 0 <= bounds[0] and bounds[-1] <= image.shape[-1] if bounds else True
    assert [p.char_columns for p in together] == [p.char_columns for p in alone]


# ---- ONNX --------------------------------------------------------------------------------------

def test_onnx_export_matches_torch_with_dynamic_batch_and_width(trained, tmp_path):
    import onnxruntime  # noqa: F401  (pinned in requirements.txt: required, not skipped)
    from ctcx.captcha.export import OnnxReader, check_onnx, export_onnx

    config = trained.config
    path = export_onnx(trained.model, config, tmp_path / "m.onnx")
    spec = DrawSpec(config.charset, 1, 2, (64, 32))
    data = DrawnCaptchas(spec, 2, "onnx", **config.preprocessing)  # width_scale 1.25: the reader must apply it
    wide = DrawnCaptchas(DrawSpec(config.charset, 1, 2, (100, 32)), 2, "onnx", **config.preprocessing)
    images = [data[i][0] for i in range(12)] + [wide[i][0] for i in range(5)]
    worst, count = check_onnx(path, trained.model, config.charset, images)
    assert count == 17 and worst <= 1e-4
    reader = OnnxReader(path)
    assert reader.charset == config.charset and reader.preprocess["height"] == config.input_height
    assert config.width_scale == 1.25 and reader.preprocess["width_scale"] == 1.25
    pil = [draw_captcha(spec, 2, "onnx", i)[0] for i in range(12)]
    assert reader.read(pil) == [p.text for p in predict(trained.model, images[:12], config.charset)]
    # The check catches a real mismatch: the graph of this model against another model's weights.
    other = copy.deepcopy(trained.model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    with pytest.raises(AssertionError, match="onnxruntime (logits differ from torch|reads)"):
        check_onnx(path, other, config.charset, images)


def test_onnx_reader_cuts_margins_when_the_model_was_trained_to(tmp_path):
    from ctcx.captcha import build_model
    from ctcx.captcha.export import OnnxReader, export_onnx
    from ctcx.captcha.images import crop_margins, preprocess

    config = TrainConfig(charset="0123456789", crop_margins=True, input_width=64, input_height=32,
                         preset="tiny", threads=1)
    torch.manual_seed(0)
    path = export_onnx(build_model(config).eval(), config, tmp_path / "m.onnx")
    reader = OnnxReader(path)
    assert reader.preprocess["crop_margins"] is True
    pixels = np.zeros((144, 256, 3), np.uint8)
    pixels[48:96, 10:246] = np.random.default_rng(0).integers(60, 250, (48, 236, 3))
    image = Image.fromarray(pixels)
    assert np.array_equal(reader._pixels(image)[0], preprocess(crop_margins(image), 32, 1, 64))
    parser = build_parser()
    assert config_from_args(parser.parse_args(["--crop-margins"])).crop_margins is True
    assert config_from_args(parser.parse_args([])).crop_margins is False


# ---- command line ------------------------------------------------------------------------------

def test_cli_crop_margins_reads_a_captcha_placed_in_a_band_of_a_larger_canvas(trained, tmp_path, capsys):
    from ctcx.captcha.images import crop_margins, preprocess

    plain, banded = tmp_path / "plain", tmp_path / "banded"
    assert main(["generate", str(plain), "--count", "8", "--charset", "digits", "--length", "1-2",
                 "--image-size", "64x32", "--workers", "0"]) == 0
    banded.mkdir()
    for path in sorted(plain.iterdir()):  # each captcha pasted at (40, 50) into a 160x120 black canvas
        canvas = Image.new("RGB", (160, 120))
        with Image.open(path) as image:
            canvas.paste(image.convert("RGB"), (40, 50))
        canvas.save(banded / path.name)
    checkpoint = str(trained.checkpoint)
    for folder, flag in ((plain, []), (banded, ["--crop-margins"]), (banded, [])):
        assert main(["predict", str(folder), "-c", checkpoint, "-o", str(tmp_path / "p.tsv"), "--spans"]
                    + flag) == 0
        rows = [r.split("\t") for r in (tmp_path / "p.tsv").read_text().splitlines()[1:]]
        if folder is plain:
            expected = [r[1] for r in rows]
            continue
        columns = [[tuple(map(int, c.split("-"))) for c in r[5].split()] for r in rows]
        if flag:  # cropped: exactly the plain captcha, read as before; columns in the canvas's frame
            cropped = [preprocess(crop_margins(Image.open(banded / Path(r[0]).name)), **trained.config.preprocessing)
                       for r in rows]
            assert [p.text for p in predict(trained.model, cropped, trained.config.charset)] == [r[1] for r in rows]
            assert [r[1] for r in rows] == expected
            assert all(40 <= a < b <= 104 for c in columns for a, b in c)
        else:  # not cropped: the 32-pixel captcha shrinks to 4 pixels of the model's 16 and is misread
            assert sum(a == b for a, b in zip(expected, [r[1] for r in rows])) <= 4
    capsys.readouterr()
    assert main(["eval", str(banded), "-c", checkpoint, "--crop-margins"]) == 0
    assert "8 images" in capsys.readouterr().out


def test_cli_eval_predict_export_on_a_folder(trained, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "imgs"
    assert main(["generate", str(folder), "--count", "12", "--charset", "digits", "--length", "1-2",
                 "--image-size", "64x32", "--workers", "0"]) == 0
    checkpoint = str(trained.checkpoint)
    capsys.readouterr()
    assert main(["eval", str(folder), "-c", checkpoint, "--decode", "all"]) == 0
    out = capsys.readouterr().out
    assert out.count("12 images") == 3 and "ignoring case" in out and "beam 10, length 1-2" in out
    assert main(["predict", str(folder), "-c", checkpoint, "-o", str(tmp_path / "p.tsv")]) == 0
    rows = (tmp_path / "p.tsv").read_text().splitlines()
    assert rows[0] == "path\tlabel\tconfidence\tchar_probs" and len(rows) == 13
    assert main(["predict", str(folder), "-c", checkpoint, "-o", str(tmp_path / "s.tsv"), "--spans",
                 "--draw", str(tmp_path / "drawn")]) == 0
    rows = (tmp_path / "s.tsv").read_text().splitlines()
    assert rows[0] == "path\tlabel\tconfidence\tchar_probs\tchar_frames\tchar_columns\tchar_cells"
    assert len(rows) == 13
    for row in rows[1:]:  # per character a start-end pair: frames, the image's own columns, cells
        path, label, _, _, frames, columns, cells = row.split("\t")
        frames, columns, cells = ([tuple(map(int, c.split("-"))) for c in f.split()] for f in (frames, columns, cells))
        assert len(frames) == len(columns) == len(cells) == len(label)
        assert all(0 <= a < b <= 64 // 4 * 1.25 for a, b in frames)  # 64x32 images: 80 input columns, 20 frames
        assert all(0 <= a < b <= 64 for a, b in columns)
        bounds = [b for span in columns for b in span]
        assert bounds == sorted(bounds)  # reading order
        assert all(c[0] <= s[0] and s[1] <= c[1] for s, c in zip(columns, cells))  # a cell holds its span
        assert all(x[1] == y[0] for x, y in zip(cells, cells[1:]))  # cells tile the text
        drawn = tmp_path / "drawn" / f"{Path(path).stem}.spans.png"
        with Image.open(drawn) as picture:
            assert picture.size[0] == 64 and picture.size[1] > 32
    assert len(list((tmp_path / "drawn").iterdir())) == 12
    # never over an input image: a user's file that a drawing would replace stops the run first
    own = tmp_path / "own"
    own.mkdir()
    first, second = sorted(folder.iterdir())[:2]
    (own / first.name).write_bytes(first.read_bytes())
    (own / f"{first.stem}.spans.png").write_bytes(second.read_bytes())
    before = {p.name: p.read_bytes() for p in own.iterdir()}
    assert main(["predict", str(own), "-c", checkpoint, "--draw", str(own)]) == 2
    assert "is one of the input images" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in own.iterdir()} == before
    # onnxruntime is a pinned dependency (requirements.txt): the check always runs
    assert main(["export", "-c", checkpoint, "-o", str(tmp_path / "m.onnx"), "--check-dir", str(folder)]) == 0
    assert "onnxruntime matches torch on 12 images" in capsys.readouterr().out
    # An export that onnxruntime does not reproduce (here: the graph of other
    # weights) fails the command with exit code 1 and says why.
    from ctcx.captcha import export

    real_export = export.export_onnx

    def export_other_weights(model, *args, **kwargs):
        other = copy.deepcopy(model)
        with torch.no_grad():
            for p in other.parameters():
                p.add_(0.05 * torch.randn_like(p))
        return real_export(other, *args, **kwargs)

    monkeypatch.setattr(export, "export_onnx", export_other_weights)
    assert main(["export", "-c", checkpoint, "-o", str(tmp_path / "bad.onnx"), "--check-dir", str(folder)]) == 1
    captured = capsys.readouterr()
    assert "onnxruntime" in captured.out + captured.err


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    cases = [
        (["eval", str(tmp_path), "-c", str(tmp_path / "none.pt")], "no checkpoint at"),
        (["generate", str(tmp_path / "full"), "--count", "3"], "not an empty folder"),
        (["--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "no such directory"),
        (["--length", "25", "--out", str(tmp_path / "o")], "too few for labels of 25"),
        (["--resume", "--out", str(tmp_path / "o")], "no checkpoint at"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"
    (tmp_path / "ck.pt").write_bytes(b"garbage")
    assert main(["predict", str(tmp_path / "full"), "-c", str(tmp_path / "ck.pt")]) == 2


def test_cli_flags_map_onto_config():
    args = build_parser("train").parse_args(["--charset", "0-9a-zA-Z", "--length", "4-6", "--preset", "small",
                                             "--amp", "bf16", "--rgb", "--decode", "all", "--image-size", "200x70",
                                             "--font", "a.ttf", "--font", "b.ttf", "--width-scale", "1.5"])
    config = config_from_args(args)
    assert (config.min_length, config.max_length, config.channels, config.amp) == (4, 6, 3, "bf16")
    assert len(config.charset) == 62 and config.rnn_layers == 2 and config.fonts == ("a.ttf", "b.ttf")
    assert config.decoders == ("greedy", "beam", "constrained") and config.image_width == 200
    assert config.width_scale == 1.5
    assert config_from_args(build_parser("train").parse_args([])) == TrainConfig()


def test_front_door_help_for_every_command():
    for command in ([], ["eval"], ["predict"], ["export"], ["generate"]):
        done = subprocess.run([sys.executable, str(TRAIN), *command, "--help"], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and "usage: train_captcha.py" in done.stdout


@pytest.mark.parametrize("name", ["captcha-36x4", "captcha-62x4to6"])
def test_eval_reads_the_shared_sets(trained, name, capsys):
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here")
    items = read_folder(folder)
    assert len(items) == 2000
    assert main(["eval", str(folder), "-c", str(trained.checkpoint)]) == 0
    captured = capsys.readouterr()
    assert "2000 images, greedy" in captured.out and "outside the checkpoint's charset" in captured.err


def test_train_restores_the_thread_count(tmp_path):
    """--threads applies to the run only (it once left every later test single-threaded)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(tiny(tmp_path / "t", steps=2, eval_every=2, save_every=2, threads=1))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _DiskFull(Exception):
    pass


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path):
    """save_checkpoint writes through atomic_write: a write that fails part-way
    (here torch.save raising after it wrote some bytes) leaves the previous
    checkpoint loadable and no temporary file behind."""
    from ctcx.captcha import checkpoint as ckpt

    path = tmp_path / "run" / "checkpoint.pt"
    contents = {"state_dict": {"w": torch.arange(4.0)}, "charset": "ab", "config": {"charset": "ab"}, "step": 1}
    ckpt.save_checkpoint(path, contents)

    def partial_write(tmp):
        Path(tmp).write_bytes(b"half a checkpoint")
        raise _DiskFull("no space left on device")

    with pytest.raises(_DiskFull):
        ckpt.atomic_write(path, partial_write)
    assert read_checkpoint(path)["step"] == 1
    assert torch.equal(read_checkpoint(path)["state_dict"]["w"], torch.arange(4.0))
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]


def test_amp_fp16_trains_with_a_gradient_scaler(tmp_path):
    """--amp fp16: float16 autocast and a GradScaler, whose state is checkpointed;
    the run trains (finite weights) and its checkpoint loads."""
    config = tiny(tmp_path / "fp16", steps=6, eval_every=6, save_every=3, amp="fp16")
    result = run(config)
    saved = read_checkpoint(result.checkpoint)
    assert saved["config"]["amp"] == "fp16" and saved["step"] == 6
    assert saved["scaler"] and "scale" in saved["scaler"]  # an enabled GradScaler's state
    # The loss reaching backward is scaled: at the initial scale of 2**16 some
    # fp16 gradients of this run overflow (they reach 2 to 4), and each such
    # step is skipped and halves the scale. Backpropagating the unscaled loss
    # would skip none and keep 2**16.
    (taken,) = {int(state["step"]) for state in saved["optimizer"]["state"].values()}
    skipped = 6 - taken
    assert skipped >= 1 and saved["scaler"]["scale"] == 2.0 ** (16 - skipped)
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    model, _, _ = load_checkpoint(result.checkpoint, "cpu")
    assert model is not None


RESUME_VARIANTS = {
    "sigterm": {},
    "worker processes": {"workers": 1},
    "fresh batches": {"pool_size": 0},
    "bf16": {"amp": "bf16"},
    "fp16": {"amp": "fp16"},
    "jitter, no moving average": {"jitter": 1.0, "ema": 0.0},
    "folder with augment": {"augment": True},
    "GRU head, classic blocks": {"head": "gru", "pool_first": False},
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(RESUME_VARIANTS))
def test_exact_resume_in_every_data_and_precision_mode(tmp_path, variant):
    """Stopped by a signal at step 13 and resumed, a run ends with the weights
    of one never stopped: with SIGTERM, DataLoader workers, fresh batches,
    bf16 autocast, fp16 autocast (the gradient scaler's state resumes too),
    batch jitter (its generator resumes) without the weights' moving average
    (every other variant keeps one, which resumes too), and folder data with
    augmentation."""
    overrides = dict(RESUME_VARIANTS[variant])
    if variant == "folder with augment":
        assert main(["generate", str(tmp_path / "data"), "--count", "48", "--charset", "digits", "--length", "2",
                     "--image-size", "64x32", "--workers", "0"]) == 0
        overrides.update(data_dir=str(tmp_path / "data"), val_split=0.25)
    sig = signal.SIGTERM if variant == "sigterm" else signal.SIGINT
    straight = run(tiny(tmp_path / "straight", steps=20, **overrides))

    def interrupt(step):
        if step == 13:
            os.kill(os.getpid(), sig)  # handled at the step boundary: saved at step 13

    with pytest.raises(KeyboardInterrupt):
        run(tiny(tmp_path / "stopped", steps=20, **overrides), on_step=interrupt)
    assert read_checkpoint(tmp_path / "stopped/checkpoint.pt")["step"] == 13
    resumed = run(tiny(tmp_path / "stopped", steps=20, **overrides), resume=True)
    assert same_weights(resumed.model, straight.model)


@pytest.mark.slow
def test_sigterm_stops_the_command_with_exit_code_130_and_a_resumable_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(TRAIN), "--steps", "100000", "--batch-size", "8", "--pool-size", "32",
                             "--fresh-per-step", "2", "--workers", "0", "--threads", "1", "--eval-size", "8",
                             "--eval-every", "100000", "--save-every", "100000", "--rnn-hidden", "16",
                             "--conv-channels", "8,16,16,16", "--image-size", "64x32", "--no-progress",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "log.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(1.0)  # well into training
        proc.send_signal(signal.SIGTERM)
        printed, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopped by SIGTERM" in printed + err and "--resume" in printed + err
    saved = read_checkpoint(out / "checkpoint.pt")
    assert 0 < saved["step"] < 100000 and not saved["complete"]


# ---- fine-tuning (--init-from) -------------------------------------------------------------------

def checkpoint_of(config, path, step=7):
    """A checkpoint of a freshly initialised model of ``config``, as training writes one."""
    from ctcx.captcha.checkpoint import save_checkpoint
    from ctcx.captcha.model import build_model

    torch.manual_seed(1)
    model = build_model(config)
    save_checkpoint(path, {"config": config.to_dict(), "charset": config.charset, "step": step,
                           "complete": True, "state_dict": model.state_dict()})
    return model


def test_init_from_carries_weights_and_shared_characters(tmp_path):
    from ctcx.captcha.finetune import init_from_checkpoint
    from ctcx.captcha.model import build_model

    source = checkpoint_of(tiny(tmp_path, charset="0123456789"), tmp_path / "source.pt")
    # another charset, image size and label length; the same architecture
    config = tiny(tmp_path / "ft", charset="9A0B", image_width=120, image_height=40, min_length=2, max_length=5)
    torch.manual_seed(2)
    model = build_model(config)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    info = init_from_checkpoint(model, config, tmp_path / "source.pt")
    got, want = model.state_dict(), source.state_dict()
    for name, value in want.items():
        if not name.startswith("classifier."):
            assert torch.equal(got[name], value), name
    for name in ("classifier.weight", "classifier.bias"):
        # classes: 0 blank, then 9 A 0 B here; blank, then 0..9 in the source
        assert torch.equal(got[name][0], want[name][0])
        assert torch.equal(got[name][1], want[name][10])  # '9'
        assert torch.equal(got[name][3], want[name][1])  # '0'
        assert torch.equal(got[name][2], fresh[name][2]) and torch.equal(got[name][4], fresh[name][4])  # new
    assert info["carried"] == "90" and info["new"] == "AB" and info["step"] == 7
    assert info["charset"] == "0123456789" and len(info["sha256"]) == 64


def test_init_from_another_architecture_is_a_clear_error(tmp_path):
    checkpoint_of(tiny(tmp_path, charset="digits"), tmp_path / "source.pt")
    config = tiny(tmp_path / "ft", charset="digits", rnn_hidden=24, input_height=48,
                  init_from=str(tmp_path / "source.pt"))
    with pytest.raises(ValueError, match=r"rnn_hidden 16 \(this run: 24\), input_height 32 \(this run: 48\)"):
        run(config)
    assert not (tmp_path / "ft" / "checkpoint.pt").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        run(tiny(tmp_path / "ft2", charset="digits", init_from=str(tmp_path / "missing.pt")))


def test_fine_tuning_starts_from_the_source_records_it_and_resumes_exactly(trained, tmp_path):
    """From the digits model to digits + 'AB' (new rows fresh): it starts where
    the source left off, the checkpoint names its source, and a run stopped at
    step 13 and resumed ends with the weights of one never stopped."""
    settings = dict(charset="0123456789AB", min_length=1, max_length=2, image_width=64, image_height=32,
                    input_height=16, steps=20, lr=1e-3, pool_size=64)
    fine = dict(settings, init_from=str(trained.checkpoint))
    straight = run(tiny(tmp_path / "straight", **fine))
    scratch = run(tiny(tmp_path / "scratch", **settings))
    first_loss = [row["loss"] for row in straight.history if "loss" in row][0]
    assert first_loss < 0.5 * [row["loss"] for row in scratch.history if "loss" in row][0]
    saved = read_checkpoint(straight.checkpoint)
    assert saved["init"]["path"] == str(trained.checkpoint)
    assert saved["init"]["carried"] == "0123456789" and saved["init"]["new"] == "AB"
    assert saved["config"]["init_from"] == str(trained.checkpoint)
    assert read_checkpoint(scratch.checkpoint)["init"] is None

    def interrupt(step):
        if step == 13:
            os.kill(os.getpid(), signal.SIGINT)  # handled at the step boundary: saved at step 13

    with pytest.raises(KeyboardInterrupt):
        run(tiny(tmp_path / "stopped", **fine), on_step=interrupt)
    assert read_checkpoint(tmp_path / "stopped/checkpoint.pt")["step"] == 13
    resumed = run(tiny(tmp_path / "stopped", **fine), resume=True)
    assert same_weights(resumed.model, straight.model)
    assert read_checkpoint(resumed.checkpoint)["init"] == saved["init"]


def test_init_from_flag(trained):
    config = config_from_args(build_parser().parse_args(["--init-from", str(trained.checkpoint)]))
    assert config.init_from == str(trained.checkpoint)
    assert config.conv_channels == trained.config.conv_channels  # the model follows the checkpoint's
    with pytest.raises(FileNotFoundError, match="no checkpoint at runs/a/checkpoint.pt"):
        config_from_args(build_parser().parse_args(["--init-from", "runs/a/checkpoint.pt"]))


# ---- model heads, old checkpoints, optional plotting -------------------------------------------

def test_checkpoints_written_before_the_conv_head_load_as_the_gru_crnn(tmp_path):
    """A checkpoint whose config lacks ``head`` and ``pool_first`` (written before
    2026-12-07) rebuilds the classic CRNN (GRU head, conv-BN-ReLU-pool blocks) and
    reads with the weights it saved."""
    from ctcx.captcha.checkpoint import save_checkpoint
    from ctcx.captcha.model import build_model

    config = tiny(tmp_path, head="gru", pool_first=False)
    model = build_model(config).eval()
    assert isinstance(model.rnn, torch.nn.GRU) and isinstance(model.conv[3], torch.nn.MaxPool2d)
    old = config.to_dict()
    del old["head"], old["pool_first"]
    save_checkpoint(tmp_path / "old.pt", {"config": old, "charset": config.charset, "step": 1,
                                          "state_dict": model.state_dict()})
    loaded, loaded_config, _ = load_checkpoint(tmp_path / "old.pt")
    assert loaded_config.head == "gru" and loaded_config.pool_first is False
    x = torch.rand(3, 1, 32, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    # the new default is another architecture: its weights do not fit the old config
    fresh = build_model(tiny(tmp_path))
    assert fresh.head_kind == "conv" and isinstance(fresh.conv[1], torch.nn.MaxPool2d)
    with pytest.raises(RuntimeError):
        loaded.load_state_dict(fresh.state_dict())


@pytest.mark.parametrize("head,pool_first", [("conv", True), ("conv", False), ("gru", True)])
def test_every_head_and_block_order_gives_frames_and_exports(tmp_path, head, pool_first):
    """(T, N, classes) logits with T = W / 4 for each head and block order, and an
    ONNX graph that onnxruntime reads as torch does."""
    from ctcx.captcha.export import check_onnx, export_onnx
    from ctcx.captcha.model import build_model

    config = tiny(tmp_path, head=head, pool_first=pool_first, rnn_layers=2)
    torch.manual_seed(0)
    model = build_model(config)
    model.train()
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for _ in range(3):
            model(torch.rand(8, 1, 32, 96))
    model.eval()
    assert model(torch.rand(2, 1, 32, 96)).shape == (24, 2, config.num_classes)
    images = [np.random.default_rng(i).integers(0, 256, (1, 32, 64 + 8 * i), dtype=np.uint8) for i in range(4)]
    worst, count = check_onnx(export_onnx(model, config, tmp_path / "m.onnx"), model, config.charset, images)
    assert count == 4 and worst <= 1e-4


def test_a_run_without_matplotlib_skips_the_plot_with_one_line_and_succeeds(tmp_path, monkeypatch, capsys):
    """matplotlib is optional (``pip install .`` does not bring it): the run says so
    before training, trains, writes checkpoint and log.csv, and exits with 0."""
    from ctcx.captcha.curves import PLOT_MISSING

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "run"
    code = main(["--out", str(out), "--steps", "4", "--pool-size", "32", "--fresh-per-step", "2", "--batch-size", "8",
                 "--eval-size", "8", "--workers", "0", "--threads", "1", "--amp", "off", "--no-progress",
                 "--conv-channels", "8,8,8,8", "--rnn-hidden", "8", "--input-height", "32"])
    printed = capsys.readouterr()
    assert code == 0
    assert (out / "checkpoint.pt").exists() and (out / "log.csv").exists() and not (out / "curves.png").exists()
    text = printed.out + printed.err
    assert text.count(PLOT_MISSING) == 2  # once before training, once at the end
    assert "Traceback" not in text and "log.csv beside it" in text


# ---- reading with fewer characters (--read-as) ---------------------------------------------------

def test_fold_charset_merges_the_other_case_and_drops_the_rest():
    from ctcx.captcha.evaluate import fold_charset

    charset = "0aAbc"  # classes: blank, 0, a, A, b, c
    probs = torch.tensor([[0.1, 0.2, 0.15, 0.05, 0.3, 0.2]], dtype=torch.float64)
    folded = fold_charset(probs.log(), charset, "0AB").exp()
    # blank, 0, A (= a + A), B (= b); c is dropped and the frame renormalised
    expected = torch.tensor([[0.1, 0.2, 0.2, 0.3]], dtype=torch.float64) / 0.8
    assert torch.allclose(folded, expected)
    # a listed character never absorbs its other case when that one is listed too
    both = fold_charset(probs.log(), charset, "aA").exp()
    assert torch.allclose(both, torch.tensor([[0.1, 0.15, 0.05]], dtype=torch.float64) / 0.3)
    with pytest.raises(ValueError, match="cannot read 'Z'"):
        fold_charset(probs.log(), charset, "0Z")
    with pytest.raises(ValueError, match="distinct"):
        fold_charset(probs.log(), charset, "00")
    with pytest.raises(ValueError, match="last dimension 6, expected 4"):
        fold_charset(probs.log(), "abc", "a")


def test_read_as_drops_classes_and_keeps_other_readings(trained):
    from ctcx.captcha.evaluate import predict

    from ctcx.captcha.images import preprocess

    # the digits model read as digits without 9: a frame's 9 goes, the rest is renormalised
    spec = DrawSpec("0123456789", 1, 2, (64, 32))
    images = [preprocess(draw_captcha(spec, 0, "eval", i)[0], 16) for i in range(40)]
    full = predict(trained.model, images, "0123456789", locate=False)
    fewer = predict(trained.model, images, "0123456789", locate=False, read_as="012345678")
    assert any("9" in a.text for a in full)  # the test sees the fold at work
    for a, b in zip(full, fewer):
        assert "9" not in b.text
        if "9" not in a.text:  # no frame's best class was 9: the same best path, a likelier label
            assert b.text == a.text and b.confidence >= a.confidence - 1e-9
