"""Confidences: the label probability, temperature scaling, ECE and coverage; stored in checkpoints and ONNX."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ctcx._reference import collapse, ctc_nll_brute_force
from ctcx.captcha import load_checkpoint, predict, read_checkpoint
from ctcx.captcha.calibration import (CalibrationReport, accuracy_at_coverage, describe_calibration,
                                      expected_calibration_error, fit_temperature, label_log_probs,
                                      sequence_confidence, stored_temperature)
from ctcx.captcha.cli import main
from ctcx.captcha.drawn import DrawnCaptchas, DrawSpec
from ctcx.captcha.evaluate import evaluate, fit_calibration
from ctcx.captcha.folder import FolderImages, read_folder
from ctcx.captcha.images import to_model_input
from ctcx.captcha.train import load_data

from test_captcha_train import checkpoint_of, run, tiny

CHARSET = "abc"


def torch_confidence(logits, labels, temperature, input_lengths):
    """exp(-loss) of torch.nn.functional.ctc_loss in float64 (concatenated targets: empty labels allowed)."""
    targets = torch.tensor([CHARSET.index(c) + 1 for label in labels for c in label], dtype=torch.long)
    loss = F.ctc_loss((logits.double() / temperature).log_softmax(-1), targets, input_lengths,
                      [len(label) for label in labels], reduction="none")
    return loss.neg().exp()


# ---- the confidence of a reading ---------------------------------------------------------------

@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.7])
def test_confidence_is_the_label_probability_of_torch_ctc_loss(temperature):
    logits = 3 * torch.randn(9, 6, len(CHARSET) + 1)
    labels = ["abc", "", "aa", "cab", "b", "abca"]
    lengths = [9, 7, 5, 9, 1, 8]
    got = sequence_confidence(logits, labels, CHARSET, temperature, lengths)
    assert got.dtype == torch.float64 and got.shape == (6,)
    assert torch.allclose(got, torch_confidence(logits, labels, temperature, lengths), rtol=1e-10, atol=0)
    assert torch.allclose(label_log_probs(logits, labels, CHARSET, temperature, lengths), got.log(), rtol=1e-12)
    # a label its frames cannot carry ("aa" needs 3) has probability 0, not an error
    assert sequence_confidence(logits[:2, :1], ["aa"], CHARSET).item() == 0.0


def test_confidence_sums_every_alignment_and_all_labels_sum_to_one():
    logits = torch.randn(4, 1, 3)  # 4 frames, blank + "ab": 81 paths
    log_probs = (logits[:, 0].double() / 1.7).log_softmax(-1)
    labels = sorted({tuple(collapse(path)) for path in itertools.product(range(3), repeat=4)})
    texts = ["".join("ab"[c - 1] for c in label) for label in labels]
    got = sequence_confidence(logits.expand(4, len(texts), 3), texts, "ab", 1.7)
    expected = [math.exp(-ctc_nll_brute_force(log_probs, label)) for label in labels]
    assert got.tolist() == pytest.approx(expected, rel=1e-12)
    assert got.sum().item() == pytest.approx(1.0, abs=1e-12)  # every path collapses to exactly one label
    assert "" in texts  # the empty reading: the all-blank path
    assert got[texts.index("")].item() == pytest.approx(log_probs[:, 0].sum().exp().item(), rel=1e-12)


def test_bad_arguments_are_named():
    logits = torch.randn(5, 2, 4)
    cases = [
        (lambda: sequence_confidence(logits, ["a", "b"], CHARSET, 0.0), "temperature"),
        (lambda: sequence_confidence(logits, ["a", "b"], CHARSET, float("nan")), "temperature"),
        (lambda: sequence_confidence(logits, ["a", "b"], CHARSET, True), "temperature"),
        (lambda: sequence_confidence(logits[0], ["a", "b"], CHARSET), r"logits must be \(T, N, C\)"),
        (lambda: sequence_confidence(logits[:, :0], [], CHARSET), "no readings"),
        (lambda: sequence_confidence(logits.long(), ["a", "b"], CHARSET), "floating-point"),
        (lambda: sequence_confidence(logits, ["a", "b"], "ab"), "4 classes"),
        (lambda: sequence_confidence(logits, ["a"], CHARSET), "labels must be a sequence of 2"),
        (lambda: sequence_confidence(logits, ["a", "bz"], CHARSET), r"labels\[1\] = 'bz'.*\['z'\]"),
        (lambda: sequence_confidence(logits, ["a", "b"], CHARSET, 1.0, [5, 6]), "input_lengths"),
        (lambda: sequence_confidence(logits * math.inf, ["a", "b"], CHARSET), "NaN or infinite"),
        (lambda: fit_temperature(logits[:, :0], [], CHARSET), "no readings"),
        (lambda: fit_temperature(logits, ["a", "d"], CHARSET), r"labels\[1\]"),
        (lambda: fit_temperature(logits, ["a", "aaa"], CHARSET, [5, 4]), r"labels\[1\] = 'aaa' needs 5 frames"),
        (lambda: fit_temperature(logits, ["a", "b"], CHARSET, bounds=(2.0, 1.0)), "bounds"),
        (lambda: fit_temperature(logits, ["a", "b"], CHARSET, tolerance=0), "tolerance"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# ---- temperature scaling -----------------------------------------------------------------------

def sampled_labels(logits, temperature, generator):
    """A label per sample drawn from the tempered model: a path per frame, collapsed."""
    frames, count, classes = logits.shape
    probs = (logits.double() / temperature).softmax(-1).reshape(-1, classes)
    paths = torch.multinomial(probs, 1, generator=generator).reshape(frames, count)
    return ["".join(CHARSET[c - 1] for c in collapse(paths[:, n].tolist())) for n in range(count)]


def mean_nll(logits, labels, temperature, lengths=None):
    return -label_log_probs(logits, labels, CHARSET, temperature, lengths).mean().item()


@pytest.mark.parametrize("true_temperature", [0.6, 2.5])
def test_fit_temperature_recovers_the_temperature_labels_were_sampled_at(true_temperature):
    generator = torch.Generator().manual_seed(int(true_temperature * 10))
    logits = 3 * torch.randn(10, 2000, len(CHARSET) + 1, generator=generator)
    labels = sampled_labels(logits, true_temperature, generator)
    fitted = fit_temperature(logits, labels, CHARSET)
    assert fitted == pytest.approx(true_temperature, rel=0.06)
    # a minimum: zero slope in log T, and no temperature on a grid does better
    step = 1e-3
    slope = (mean_nll(logits, labels, fitted * math.exp(step)) - mean_nll(logits, labels, fitted * math.exp(-step))) \
        / (2 * step)
    assert abs(slope) < 1e-4
    best = mean_nll(logits, labels, fitted)
    assert all(mean_nll(logits, labels, t) >= best - 1e-12 for t in np.geomspace(0.1, 10, 41))
    assert fit_temperature(logits, labels, CHARSET) == fitted  # deterministic


def test_fit_temperature_handles_padding_and_stays_in_its_bounds():
    generator = torch.Generator().manual_seed(3)
    logits = 3 * torch.randn(8, 400, len(CHARSET) + 1, generator=generator)
    lengths = torch.randint(4, 9, (400,), generator=generator)
    labels = [sampled_labels(logits[:n, i:i + 1], 1.5, generator)[0] for i, n in enumerate(lengths.tolist())]
    padded = logits.clone()
    for i, n in enumerate(lengths.tolist()):
        padded[n:, i] = 1e3 * torch.randn(8 - n, len(CHARSET) + 1, generator=generator)  # ignored frames
    fitted = fit_temperature(padded, labels, CHARSET, lengths)
    assert fitted == pytest.approx(fit_temperature(logits, labels, CHARSET, lengths), rel=1e-9)
    assert fitted == pytest.approx(1.5, rel=0.15)
    # labels that are always right with logits that agree: the smaller T, the better, down to the bound
    sure = torch.zeros(3, 2, len(CHARSET) + 1)
    sure[:, 0, 1] = 2.0  # "a" on every frame
    sure[:, 1, 0] = 2.0  # blank on every frame: ""
    assert fit_temperature(sure, ["a", ""], CHARSET, bounds=(0.1, 10)) == pytest.approx(0.1, rel=1e-5)


# ---- calibration scores ------------------------------------------------------------------------

def test_expected_calibration_error_on_hand_made_inputs():
    confidences = [0.1, 0.5, 0.6, 0.9, 1.0, 0.0]
    correct = [False, True, True, True, False, False]
    # two bins: (0, 0.5] holds 0.1, 0.5 and 0.0: right 1/3, mean 0.2; (0.5, 1] holds 0.6, 0.9, 1.0: right 2/3, mean 5/6
    assert expected_calibration_error(confidences, correct, bins=2) == pytest.approx(
        0.5 * abs(1 / 3 - 0.2) + 0.5 * abs(2 / 3 - 5 / 6), abs=1e-15)
    assert expected_calibration_error(confidences, correct, bins=1) == pytest.approx(abs(0.5 - 3.1 / 6), abs=1e-15)
    # 15 bins: each confidence alone except nothing shared; |right - confidence| averaged
    assert expected_calibration_error(confidences, correct) == pytest.approx(
        (0.1 + 0.5 + 0.4 + 0.1 + 1.0 + 0.0) / 6, abs=1e-15)
    assert expected_calibration_error([0.75] * 4, [1, 1, 0, 1]) == 0.0  # calibrated
    assert expected_calibration_error(np.array([0.99, 0.96]), np.array([False, False]), bins=15) == \
        pytest.approx(0.975)


def test_accuracy_at_coverage_keeps_the_most_confident_earlier_first():
    confidences = [0.9, 0.2, 0.9, 0.5, 0.99]
    correct = [False, True, True, True, True]
    assert accuracy_at_coverage(confidences, correct, 0.2) == 1.0  # 0.99
    assert accuracy_at_coverage(confidences, correct, 0.4) == 0.5  # 0.99 and the first 0.9 (wrong)
    assert accuracy_at_coverage(confidences, correct, 0.6) == pytest.approx(2 / 3)
    assert accuracy_at_coverage(confidences, correct, 0.5) == pytest.approx(2 / 3)  # ceil(2.5) = 3 kept
    assert accuracy_at_coverage(confidences, correct, 1.0) == 0.8
    ten = [i / 10 for i in range(10)]
    assert accuracy_at_coverage(ten, [i >= 3 for i in range(10)], 0.7) == 1.0  # 7 kept, not 8
    report = CalibrationReport.of(confidences, correct, 1.25)
    assert (report.count, report.temperature, report.accuracy_at_80, report.accuracy_at_90) == (5, 1.25, 0.75, 0.8)
    assert report.ece == pytest.approx(expected_calibration_error(confidences, correct))
    assert "\n" not in str(report) and "80%" in str(report) and "T = 1.25" in str(report)


def test_score_arguments_are_checked():
    for call, message in [
        (lambda: expected_calibration_error([], []), "confidences must be a non-empty"),
        (lambda: expected_calibration_error([0.5, 0.5], [True]), "correct must have one entry"),
        (lambda: expected_calibration_error([1.5], [True]), r"confidences must lie in \[0, 1\]"),
        (lambda: expected_calibration_error([0.5], [2]), "correct must hold booleans"),
        (lambda: expected_calibration_error([0.5], [True], bins=0), "bins"),
        (lambda: accuracy_at_coverage([0.5], [True], 0.0), "coverage"),
        (lambda: accuracy_at_coverage([0.5], [True], 1.5), "coverage"),
        (lambda: accuracy_at_coverage([], [], 0.5), "confidences"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()


# ---- the model: predict, evaluate, training, checkpoints, ONNX, command line --------------------

@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """A freshly initialised tiny digit model's checkpoint, as training writes one (no calibration)."""
    path = tmp_path_factory.mktemp("untrained") / "checkpoint.pt"
    checkpoint_of(tiny(path.parent, charset="0123456789", min_length=1, max_length=2, image_width=64,
                       image_height=32), path)
    return path


def drawn_images(config, count, seed=5):
    data = DrawnCaptchas(DrawSpec(config.charset, 1, 2, (64, 32)), seed, "calibration", **config.preprocessing)
    return [data[i][0] for i in range(count)], [data[i][1] for i in range(count)]


def test_predict_and_evaluate_report_the_tempered_label_probability(untrained):
    model, config, _ = load_checkpoint(untrained)
    images, labels = drawn_images(config, 6)
    for decoder in ("greedy", "beam"):
        plain = predict(model, images, config.charset, decoder, locate=False)
        hot = predict(model, images, config.charset, decoder, locate=False, temperature=2.0)
        assert [p.text for p in hot] == [p.text for p in plain]  # the readings do not depend on T
        for p, q, image in zip(plain, hot, images):
            with torch.no_grad():
                logits = model(to_model_input(torch.tensor(image)[None]))
            assert p.confidence == pytest.approx(sequence_confidence(logits, [p.text], config.charset).item(),
                                                 rel=1e-5)
            assert q.confidence == pytest.approx(
                sequence_confidence(logits, [q.text], config.charset, 2.0).item(), rel=1e-5)
            tempered = (logits[:, 0].double() / 2.0).softmax(-1)
            assert all(prob <= tempered[:, config.charset.index(c) + 1].max().item() + 1e-6
                       for prob, c in zip(q.char_probs, q.text))
    result = evaluate(model, images, labels, config.charset, temperature=2.0)
    assert result.temperature == 2.0 and len(result.confidences) == 6
    correct = [t == r for t, r in zip(result.predictions, labels)]
    assert result.ece == pytest.approx(expected_calibration_error(result.confidences, correct))
    assert result.accuracy_at_90 == accuracy_at_coverage(result.confidences, correct, 0.9)
    with pytest.raises(ValueError, match="temperature"):
        predict(model, images, config.charset, temperature=-1.0)


def test_training_fits_the_temperature_on_its_validation_set_and_stores_it(tmp_path):
    result = run(tiny(tmp_path, charset="digits", min_length=1, max_length=2, image_width=64, image_height=32,
                      steps=20, eval_size=16, eval_every=0, save_every=10))
    saved = read_checkpoint(result.checkpoint)
    calibration = saved["calibration"]
    assert calibration == result.calibration
    assert set(calibration) == {"temperature", "fitted_on", "ece_before", "ece_after"}
    assert calibration["fitted_on"] == 16 and 0 <= calibration["ece_after"] <= 1
    assert stored_temperature(saved) == calibration["temperature"] > 0
    assert describe_calibration(saved) == f"T = {calibration['temperature']:.3g}, fitted on 16 images"
    data = load_data(result.config, progress=False)  # the same validation images, redrawn
    again = fit_calibration(result.model, data.val_images, data.val_labels, result.config.charset)
    assert again == pytest.approx(calibration, rel=1e-6)  # not bit for bit: here torch has more threads


def test_a_checkpoint_without_calibration_reads_as_t_1_not_calibrated(untrained, tmp_path, capsys):
    saved = read_checkpoint(untrained)
    assert "calibration" not in saved
    assert stored_temperature(saved) == 1.0 and describe_calibration(saved) == "T = 1, not calibrated"
    folder = tmp_path / "imgs"
    assert main(["generate", str(folder), "--count", "4", "--charset", "digits", "--length", "1-2",
                 "--image-size", "64x32", "--workers", "0"]) == 0
    capsys.readouterr()
    assert main(["predict", str(folder), "-c", str(untrained)]) == 0
    assert "is not calibrated (T = 1)" in capsys.readouterr().err
    assert main(["eval", str(folder), "-c", str(untrained), "--temperature", "3"]) == 0
    out = capsys.readouterr().out
    assert "confidences: T = 3, from --temperature" in out and "greedy confidence: ECE" in out


def test_calibrate_command_writes_the_temperature_into_the_checkpoint(untrained, tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(untrained.read_bytes())
    folder = tmp_path / "imgs"
    assert main(["generate", str(folder), "--count", "12", "--charset", "digits", "--length", "1-2",
                 "--image-size", "64x32", "--workers", "0", "--seed", "4"]) == 0
    capsys.readouterr()
    assert main(["calibrate", str(folder), "-c", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    saved = read_checkpoint(checkpoint)
    model, config, _ = load_checkpoint(untrained)
    data = FolderImages(read_folder(folder), **config.preprocessing)
    expected = fit_calibration(model, [image for image, _ in data], [label for _, label in data], config.charset)
    assert saved["calibration"] == expected and expected["fitted_on"] == 12
    assert "was T = 1, not calibrated" in out and f"now T = {expected['temperature']:.3g}, fitted on 12" in out
    assert f"{expected['ece_before']:.2%} at T = 1" in out
    before = read_checkpoint(untrained)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in before["state_dict"].items())
    assert main(["eval", str(folder), "-c", str(checkpoint)]) == 0
    assert f"confidences: T = {expected['temperature']:.3g}, fitted on 12 images" in capsys.readouterr().out
    # labels the model cannot give: a clear error, the checkpoint untouched
    letters = tmp_path / "letters"
    assert main(["generate", str(letters), "--count", "3", "--charset", "A-Z", "--length", "2",
                 "--image-size", "64x32", "--workers", "0"]) == 0
    written = checkpoint.read_bytes()
    assert main(["calibrate", str(letters), "-c", str(checkpoint)]) == 2
    assert "none of the 3 labels" in capsys.readouterr().err and checkpoint.read_bytes() == written


def test_onnx_metadata_carries_the_temperature_and_the_reader_applies_it(untrained, tmp_path):
    import onnxruntime  # noqa: F401  (pinned in requirements.txt, as in the export tests)
    from ctcx.captcha.drawn import draw_captcha
    from ctcx.captcha.export import OnnxReader, export_onnx

    model, config, _ = load_checkpoint(untrained)
    calibration = {"temperature": 0.37, "fitted_on": 5, "ece_before": 0.5, "ece_after": 0.25}
    reader = OnnxReader(export_onnx(model, config, tmp_path / "t.onnx", calibration=calibration))
    assert reader.temperature == 0.37 and reader.calibrated
    plain = OnnxReader(export_onnx(model, config, tmp_path / "plain.onnx"))
    assert plain.temperature == 1.0 and not plain.calibrated
    spec = DrawSpec(config.charset, 1, 2, (64, 32))
    pictures = [draw_captcha(spec, 6, "onnx", i)[0] for i in range(4)]
    images = [DrawnCaptchas(spec, 6, "onnx", **config.preprocessing)[i][0] for i in range(4)]
    for onnx_reader, temperature in ((reader, 0.37), (plain, 1.0)):
        got = onnx_reader.read_with_confidence(pictures)
        expected = predict(model, images, config.charset, locate=False, temperature=temperature)
        assert [text for text, _ in got] == [p.text for p in expected] == onnx_reader.read(pictures)
        assert [c for _, c in got] == pytest.approx([p.confidence for p in expected], rel=1e-3, abs=1e-6)
