"""Where a run computes and in what precision.

``auto`` picks CUDA, then Apple MPS, then the CPU.  Precision ``auto`` is bf16 autocast on CUDA
with compute capability 8.0 and up, fp32 where bf16 is not native (torch emulates it there, and
training becomes many times slower than fp32, not faster), and on a CPU with AVX-512 BF16 or AMX-BF16
running torch's AVX-512 kernels whichever of the two trains faster, timed on the run's own model:
there bf16 trained the 12-minute GRU 1.8x faster per update on an AVX-512 BF16 EPYC and 1.7x slower
on an AMX Xeon (docs/benchmarks.md).
"""

import contextlib
import copy
import ctypes
import re
import sys
import time
import warnings
from collections.abc import Callable

import torch

from attnmt.errors import AttnmtError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("auto", "fp32", "bf16")


def select_device(name: str = "auto", source: str = "train.device") -> torch.device:
    """The device ``name`` names, checked to exist; ``auto`` is the best one present.  Errors name
    ``source``, where the value came from (a config key or a command-line option)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", name):
        raise AttnmtError(f"{source}: {name!r} is not one of {', '.join(DEVICES)}")
    device = torch.device(name)
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise AttnmtError(f"{source}: {name} is not available on this machine (use auto or cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise AttnmtError(f"{source}: mps is not available on this machine (use auto or cpu)")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX-512 BF16 or AMX-BF16) and torch uses
    its AVX-512 kernels.  A forced lower kernel level (``ATEN_CPU_CAPABILITY=avx2`` or ``default``)
    runs torch's own bf16 kernels without those instructions, so it counts as no."""
    capabilities = torch.cpu.get_capabilities()
    has_instructions = bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return has_instructions and torch.backends.cpu.get_cpu_capability() == "AVX512"


def candidate_precisions(device: torch.device, precision: str = "auto") -> tuple[str, ...]:
    """What ``precision`` may mean on ``device``: itself when named; under ``auto`` bf16 on CUDA with
    compute capability 8.0 and up, fp32 where bf16 is not native, and both on a CPU with native bf16,
    where only timing tells which is faster (:func:`faster_precision`)."""
    if precision != "auto":
        return (precision,)
    if device.type == "cuda":
        return ("bf16",) if torch.cuda.get_device_capability(device)[0] >= 8 else ("fp32",)
    if device.type == "cpu" and cpu_has_native_bf16():
        return ("fp32", "bf16")
    return ("fp32",)


def faster_precision(
    device: torch.device, precisions: tuple[str, ...], run_update: Callable[[int], object], updates: int = 6
) -> tuple[str, dict[str, float]]:
    """Of ``precisions``, the first unless another runs ``run_update(i)`` (update ``i`` of a run, the
    same ``i`` in each) at least 10 % faster on ``device``: where they are close, the first (fp32)
    keeps its exact arithmetic and two runs of a config their same choice.  Also the seconds per
    update of each: two updates warm each precision up, then ``updates`` are timed."""
    seconds = {}
    for precision in precisions:
        with autocast(device, precision):
            for i in range(2):
                run_update(i)
            tick = time.perf_counter()
            for i in range(2, 2 + updates):
                run_update(i)
            seconds[precision] = (time.perf_counter() - tick) / updates
    fastest = min(seconds, key=seconds.__getitem__)
    return fastest if seconds[fastest] * 1.1 <= seconds[precisions[0]] else precisions[0], seconds


def reuse_freed_memory() -> bool:
    """Have glibc's ``malloc`` keep freed memory for the next allocation instead of returning it to the
    system; whether it could (Linux with glibc only).  PyTorch's CPU tensors come from ``malloc``, which
    by default maps each large block (the logits, their gradients) fresh from the system and unmaps it
    when freed, so every update pays the page faults of touching new memory again; kept, those page
    faults are paid once (what that saves: docs/benchmarks.md).  The process's memory then stays at its
    peak until it ends."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, for one)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30) and mallopt(m_trim_threshold, 1 << 30))


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """The model with its linear and GRU layers computing in int8 (dynamic quantisation: int8 weights,
    activations quantised on the fly): faster CPU inference, for translation only.  A layer with one
    output (additive attention's v_a) stays float: quantising its input, every source position of every
    row at every step, costs more than its product.  An output layer tied to the embedding gets an int8
    copy of its own (``tied_output``): the largest product of a decoding step; a Transformer's
    self-attention projections become one int8 layer (``stacked_layer``).  Each output row of a weight
    has a scale of its own (per-channel), so three projections stacked in one layer keep their own
    ranges (the effect on BLEU and speed: docs/benchmarks.md)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    model = copy.deepcopy(model)
    for module in list(model.modules()):
        if hasattr(module, "tied_output") and module.output is None:
            module.output = module.tied_output()
        if hasattr(getattr(module, "self_attn", None), "stacked_layer"):  # cross-attention projects apart
            module.self_attn.W_qkv = module.self_attn.stacked_layer()
    layers = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.GRU)
        or (isinstance(module, torch.nn.Linear) and module.out_features > 1)
    }
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, layers, dtype=torch.qint8, inplace=True)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: matrix products in bf16, reductions and the loss in fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
