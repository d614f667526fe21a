import pytest
import torch

import ctcx

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() and ctcx.cuda_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param
