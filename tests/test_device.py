import os
import subprocess
import sys
import time

import pytest
import torch

from attnmt import device
from attnmt.config import ModelConfig
from attnmt.corpora import toy_pairs
from attnmt.data import TranslationDataset, collate
from attnmt.device import autocast, candidate_precisions, cpu_has_native_bf16, faster_precision, select_device
from attnmt.errors import AttnmtError
from attnmt.model import build_model
from attnmt.training import update


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


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_a_cpu_is_timed_against_bf16_exactly_where_bf16_is_native(monkeypatch, native):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert candidate_precisions(cpu) == (("fp32", "bf16") if native else ("fp32",))
    assert candidate_precisions(cpu, "fp32") == ("fp32",)  # asked for: kept, whatever the CPU
    assert candidate_precisions(cpu, "bf16") == ("bf16",)
    assert candidate_precisions(torch.device("mps")) == ("fp32",)


@pytest.mark.parametrize(("bf16_ms", "chosen"), [(5, "bf16"), (10, "fp32"), (20, "fp32")])
def test_the_timed_precision_is_bf16_only_where_it_is_clearly_faster(bf16_ms, chosen):
    calls = []

    def run_update(i: int) -> None:
        bf16 = torch.is_autocast_enabled("cpu")
        calls.append(("bf16" if bf16 else "fp32", i))
        time.sleep((bf16_ms if bf16 else 10) / 1000)

    precision, seconds = faster_precision(torch.device("cpu"), ("fp32", "bf16"), run_update, updates=3)
    assert precision == chosen
    assert calls == [(p, i) for p in ("fp32", "bf16") for i in range(5)]  # the same updates each way
    assert bf16_ms / 1000 <= seconds["bf16"] < 2.5 * bf16_ms / 1000  # per update, not the sum of 3


@pytest.mark.parametrize(
    ("instructions", "kernels", "native"),
    [
        ({"avx512_bf16": True}, "AVX512", True),
        ({"amx_bf16": True}, "AVX512", True),
        ({"avx512_bf16": True}, "AVX2", False),  # ATEN_CPU_CAPABILITY=avx2: torch's bf16 kernels emulate
        ({"avx512_bf16": True}, "DEFAULT", False),
        ({"avx512_f": True, "avx2": True}, "AVX512", False),  # AVX-512 without its bf16 extension
        ({"avx2": True}, "AVX2", False),
    ],
)
def test_native_bf16_needs_the_instructions_and_torchs_avx512_kernels(
    monkeypatch, instructions, kernels, native
):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: instructions)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: kernels)
    assert cpu_has_native_bf16() is native


def test_a_forced_lower_kernel_level_trains_in_fp32():
    """What torch really reports under ATEN_CPU_CAPABILITY, on any CPU (``default`` exists on all)."""
    code = "import torch, attnmt.device as d; print(*d.candidate_precisions(torch.device('cpu')))"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "fp32"


def test_autocast_computes_matrix_products_in_bf16_only_when_asked():
    cpu = torch.device("cpu")
    linear = torch.nn.Linear(4, 4)
    with autocast(cpu, "bf16"):
        assert linear(torch.ones(2, 4)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert linear(torch.ones(2, 4)).dtype == torch.float32


def _losses_of_a_few_updates(precision: str, updates: int = 6) -> list[float]:
    """Per-update training losses of a small attention GRU on the toy set, the same seed every time."""
    pairs = toy_pairs()[:64]
    data = TranslationDataset(pairs, *TranslationDataset.build_vocabs(pairs))
    batches = [collate(data, list(range(i, i + 16))) for i in range(0, 64, 16)]
    torch.manual_seed(0)
    config = ModelConfig(embed_size=32, hidden_size=64, dropout=0.0)
    model = build_model(config, len(data.src_vocab), len(data.tgt_vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(updates):
        with autocast(torch.device("cpu"), precision):
            losses.append(update(model, optimizer, [batches[step % len(batches)]])[0])
    return losses


@pytest.mark.skipif(
    not cpu_has_native_bf16(),
    reason="this CPU (or the forced ATEN_CPU_CAPABILITY) has no native bf16 (AVX-512 BF16 or AMX): "
    "bf16 would be emulated there, and precision auto never picks it",
)
def test_bf16_training_tracks_fp32_where_bf16_is_native():
    fp32, bf16 = _losses_of_a_few_updates("fp32"), _losses_of_a_few_updates("bf16")
    assert bf16 != fp32  # bf16 really ran: its rounding shows
    assert fp32[-1] < 0.95 * fp32[0] and bf16[-1] < 0.95 * bf16[0]  # both learn
    # Autocast rounds the inputs of each matrix product to bf16 (8 significant bits: a relative error
    # up to 2^-9 ≈ 0.2 %) but sums in fp32 and takes the loss in fp32, so the rounding errors average
    # out over the ~90 target tokens of a batch: at most 0.014 % apart over 12 updates on an AVX-512
    # BF16 EPYC.  0.2 % leaves room for other CPUs' kernels and stays under what one update changes
    # the loss by here (0.8-5 %): a bf16 run that lagged an update or drifted away would fail.
    assert bf16 == pytest.approx(fp32, rel=2e-3)


_FAULTS = """
import json, resource, sys, torch
from attnmt import device
if not device.reuse_freed_memory():
    sys.exit(3)
def page_faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(12 << 20)  # 48 MiB, touched, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps([page_faults() for _ in range(8)]))
"""


def test_freed_memory_is_reused_without_fresh_page_faults():
    """After ``reuse_freed_memory`` a 48 MiB tensor freed and made again comes back from memory the process
    kept, not from the system: glibc's defaults map such a block anew every time (12,289 page faults each
    of 8 times, 2-core AVX2 EPYC), here the later ones take none.  Measured in a fresh process: threads
    that earlier tests left (a server's, a pool's) may take the freed block, and then it is mapped anew."""
    import json

    run = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, timeout=120)
    if run.returncode == 3:
        pytest.skip("not Linux with glibc: its malloc cannot be told to keep freed memory")
    assert run.returncode == 0, run.stderr
    faults = json.loads(run.stdout)
    assert faults[-1] < 1_200, faults  # a tenth of the block's 12,288 pages
