import pytest
import torch

from attnmt.device import autocast, resolve_precision, select_device
from attnmt.errors import AttnmtError


def test_auto_picks_a_device_that_exists():
    device = select_device("auto")
    assert device.type == (
        "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    )
    assert select_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", ""])
def test_an_unknown_device_names_the_key_and_choices(name):
    with pytest.raises(AttnmtError, match=r"train\.device: .* is not one of auto, cpu, cuda"):
        select_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_an_absent_gpu_is_a_clear_error():
    with pytest.raises(AttnmtError, match=r"train\.device: cuda:3 is not available"):
        select_device("cuda:3")


def test_cpu_trains_in_fp32_unless_asked():
    cpu = torch.device("cpu")
    assert resolve_precision(cpu) == "fp32"
    assert resolve_precision(cpu, "bf16") == "bf16"
    linear = torch.nn.Linear(4, 4)
    with autocast(cpu, "bf16"):
        assert linear(torch.ones(2, 4)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert linear(torch.ones(2, 4)).dtype == torch.float32
