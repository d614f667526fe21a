"""Damaged and hostile checkpoints (issue 28, the trainer's inputs): each is
refused with a clear ValueError naming the file; none runs code, none
crashes, and the CLI answers with exit code 2 and a one-line message."""
import os
import random

import pytest
import torch

from ctcx.captcha import TrainConfig, load_checkpoint, read_checkpoint, train
from ctcx.captcha.cli import main


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
