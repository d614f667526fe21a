"""Damaged and hostile inputs of the trainer (issue 28): broken image files
and folders, damaged and hostile checkpoints. Each is refused with a clear
error naming the file (the CLI: exit code 2, a one-line message); none runs
code, none crashes."""
import os
import random

import pytest
import torch

from PIL import Image

from ctcx.captcha import TrainConfig, load_checkpoint, read_checkpoint, train
from ctcx.captcha.cli import main
from ctcx.captcha.drawn import DrawSpec, draw_captcha


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck")
    config = TrainConfig(conv_channels=(8, 8, 8, 8), rnn_hidden=8, input_height=16, steps=2, batch_size=4,
                         pool_size=8, fresh_per_step=1, workers=0, eval_size=4, eval_every=0, threads=1,
                         device="cpu", amp="off", charset="digits", min_length=1, max_length=2, image_width=32,
                         image_height=16, out_dir=str(out))
    return train(config, progress=False, log=lambda _: None).checkpoint


def test_a_checkpoint_cut_at_any_byte_is_refused_clearly(checkpoint, tmp_path, capsys):
    data = checkpoint.read_bytes()
    rng = random.Random(0)
    for cut in sorted({0, 1, 10, len(data) // 2, len(data) - 1} | {rng.randrange(len(data)) for _ in range(10)}):
        damaged = tmp_path / f"cut{cut}.pt"
        damaged.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"{damaged}.* is not a ctcx captcha checkpoint"):
            load_checkpoint(damaged)
    assert main(["eval", str(tmp_path), "-c", str(tmp_path / f"cut{len(data) // 2}.pt")]) == 2
    assert "is not a ctcx captcha checkpoint" in capsys.readouterr().err


class _Payload:
    """Unpickling this runs os.system: the attack a checkpoint can carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_with_a_pickle_payload_does_not_run_it(checkpoint, tmp_path):
    marker = tmp_path / "ran"
    contents = read_checkpoint(checkpoint)
    contents["history"] = _Payload(marker)
    hostile = tmp_path / "hostile.pt"
    torch.save(contents, hostile)
    with pytest.raises(ValueError, match="hostile.pt is not a ctcx captcha checkpoint.*weights_only=True"):
        load_checkpoint(hostile)
    assert not marker.exists()


def test_a_checkpoint_of_another_architecture_or_tampered_is_refused(checkpoint, tmp_path):
    contents = read_checkpoint(checkpoint)
    other = dict(contents, config=dict(contents["config"], conv_channels=[16, 16, 16, 16]))
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"state_dict": contents["state_dict"]}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="bare.pt is not a ctcx captcha checkpoint"):
        load_checkpoint(tmp_path / "bare.pt")
    torch.save(dict(contents, charset="abc"), tmp_path / "charset.pt")
    with pytest.raises(ValueError, match="charset 'abc' disagrees with its config"):
        load_checkpoint(tmp_path / "charset.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt is not a ctcx captcha checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def good_folder(path, count=6):
    path.mkdir()
    for i in range(count):
        image, label = draw_captcha(DrawSpec("0123456789", 2, 2, (64, 32)), 0, "bad", i)
        image.save(path / f"{label}_{i}.png")
    return path


def broken_files(tmp_path):
    """name -> (bytes, what the message must say)."""
    good = next(good_folder(tmp_path / "source", 1).iterdir()).read_bytes()
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 M pixels, 60 KB on disk
    return {"11_empty.png": (b"", "cannot read image"),
            "22_cut.png": (good[: len(good) // 2], "cannot read image"),
            "33_text.png": (b"this is not an image", "cannot read image"),
            "44_bomb.png": (bomb.read_bytes(), "decompression bomb")}


def train_args(folder, out):
    return ["train", "--data-dir", str(folder), "--steps", "2", "--batch-size", "2", "--workers", "0",
            "--charset", "digits", "--input-height", "16", "--out", str(out), "--no-progress", "--threads", "1",
            "--amp", "off"]


def test_broken_images_in_a_training_folder_are_skipped_and_listed_or_stop_the_run(tmp_path, capsys):
    """A folder of good captchas plus every kind of broken file: training
    skips the broken ones, says how many and names them before it starts,
    and trains on the rest; --bad-images error stops instead, naming one."""
    folder = good_folder(tmp_path / "mixed")
    broken = broken_files(tmp_path)
    for name, (data, _) in broken.items():
        (folder / name).write_bytes(data)
    assert main(train_args(folder, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert f"skipped 4 of 10 images in {folder} that cannot be read" in out, out[-2000:]
    for name, (_, message) in list(broken.items())[:3]:  # the first three are named
        assert name in out and message in out
    assert "split 6 images" in out and (tmp_path / "run" / "checkpoint.pt").is_file()
    for name, (data, message) in broken.items():
        single = good_folder(tmp_path / name.split(".")[0])
        (single / name).write_bytes(data)
        code = main(train_args(single, tmp_path / "strict" / name) + ["--bad-images", "error"])
        err = capsys.readouterr().err
        assert code == 2 and name in err and message in err and "1 of 7 images" in err, (name, code, err[-500:])
        assert "Traceback" not in err
        assert not (tmp_path / "strict" / name / "checkpoint.pt").exists()


def test_eval_and_predict_score_the_readable_images_and_list_the_broken_ones(checkpoint, tmp_path, capsys):
    folder = good_folder(tmp_path / "mixed")
    (folder / "11_empty.png").write_bytes(b"")
    (folder / "22_text.png").write_bytes(b"not an image")
    assert main(["eval", str(folder), "-c", str(checkpoint)]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 of 8 images" in captured.err and "11_empty.png" in captured.err
    assert "6 images" in captured.out, captured.out
    assert main(["eval", str(folder), "-c", str(checkpoint), "--bad-images", "error"]) == 2
    assert "11_empty.png" in capsys.readouterr().err
    assert main(["predict", str(folder), "-c", str(checkpoint)]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 of 8 images" in captured.err
    read = [line.split("\t")[0] for line in captured.out.splitlines()[1:]]
    assert len(read) == 6 and not any("empty" in p or "text" in p for p in read), read
    empty = tmp_path / "only_broken"
    empty.mkdir()
    (empty / "1_a.png").write_bytes(b"")
    assert main(["eval", str(empty), "-c", str(checkpoint)]) == 2
    assert "no readable images" in capsys.readouterr().err


def test_bad_labels_files_and_labels_outside_the_charset_name_the_problem(tmp_path, capsys):
    """A labels file naming a missing image stops the run with its name; an
    image whose label has characters outside the charset is left out and
    reported by name."""
    folder = good_folder(tmp_path / "tsv")
    names = sorted(p.name for p in folder.iterdir())
    (folder / "labels.tsv").write_text("".join(f"{n}\t12\n" for n in names) + "missing.png\t34\n")
    assert main(["eval", str(folder), "-c", "nothing.pt"]) == 2  # the checkpoint is checked first
    code = main(["train", "--data-dir", str(folder), "--steps", "1", "--workers", "0", "--charset", "digits",
                 "--out", str(tmp_path / "r1"), "--no-progress"])
    assert code == 2 and "missing.png" in capsys.readouterr().err
    other = good_folder(tmp_path / "charset")
    (other / "ab_99.png").write_bytes(next(other.iterdir()).read_bytes())
    code = main(["train", "--data-dir", str(other), "--steps", "1", "--workers", "0", "--charset", "digits",
                 "--out", str(tmp_path / "r2"), "--no-progress"])
    out = capsys.readouterr().out  # skipped and reported, not fatal
    assert code == 0 and "left out 1 training images whose labels have characters outside the charset" in out
    assert "ab_99.png" in out


def test_labels_files_listing_an_image_twice_or_not_utf8_are_refused_by_line(tmp_path, capsys):
    folder = good_folder(tmp_path / "dup")
    names = sorted(p.name for p in folder.iterdir())
    (folder / "labels.tsv").write_text(f"{names[0]}\t12\n{names[1]}\t34\n{names[0]}\t56\n")
    code = main(train_args(folder, tmp_path / "r1"))
    err = capsys.readouterr().err
    assert code == 2 and f"labels.tsv:3: {names[0]} is listed again (first on line 1)" in err, err
    (folder / "labels.tsv").write_bytes(f"{names[0]}\t12\n".encode() + b"\xff\xfe\t34\n")
    code = main(train_args(folder, tmp_path / "r2"))
    err = capsys.readouterr().err
    assert code == 2 and "labels.tsv is not UTF-8 text" in err and "Traceback" not in err, err
    # a byte-order mark and Windows line ends are fine
    (folder / "labels.tsv").write_bytes("\ufeff".encode() + "".join(f"{n}\t{n[:2]}\r\n" for n in names).encode())
    assert main(train_args(folder, tmp_path / "r3")) == 0


def test_runs_killed_while_saving_lose_no_checkpoint_and_resume_exactly(tmp_path):
    """10 times: a run that checkpoints every step is killed with SIGKILL at
    a random moment (about half of a step's time is spent saving), then the
    checkpoint must load and be no older than before the kill, and --resume
    goes on from it; the last resume finishes the run, no temp file is left
    behind, and the weights equal those of a run never killed (resume is
    exact)."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    script = Path(__file__).resolve().parents[1] / "examples" / "train_captcha.py"
    steps = 200

    def command(out, *extra):
        return [sys.executable, str(script), "train", "--out", str(out), "--conv-channels", "8,8,8,8",
                "--rnn-hidden", "8", "--input-height", "16", "--steps", str(steps), "--batch-size", "4",
                "--pool-size", "8", "--fresh-per-step", "1", "--workers", "0", "--eval-size", "4",
                "--eval-every", "0", "--threads", "1", "--device", "cpu", "--amp", "off", "--charset", "digits",
                "--length", "1-2", "--image-size", "32x16", "--save-every", "1", "--no-progress", *extra]

    out, ckpt = tmp_path / "killed", tmp_path / "killed" / "checkpoint.pt"
    rng = random.Random(28)
    last = 0
    for trial in range(10):
        proc = subprocess.Popen(command(out, *(["--resume"] if ckpt.exists() else [])),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = ckpt.stat().st_mtime_ns if ckpt.exists() else 0
        deadline = time.monotonic() + 120
        while (not ckpt.exists() or ckpt.stat().st_mtime_ns == seen) and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.2))  # then a random moment among the next saves
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, (trial, proc.returncode, err[-1000:])
        step = read_checkpoint(ckpt)["step"]  # loads: never half a file
        assert last < step < steps, (trial, last, step)
        last = step
    done = subprocess.run(command(out, "--resume"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not list(out.glob(".*.tmp")), list(out.iterdir())
    reference = subprocess.run(command(tmp_path / "whole"), capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-2000:]
    a, b = read_checkpoint(ckpt), read_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert a["step"] == b["step"] == steps
    for name, value in b["state_dict"].items():
        assert torch.equal(a["state_dict"][name], value), name
