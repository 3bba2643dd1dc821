"""Training checkpoints: everything needed to continue a run bit for bit.

    MODEL_DIR/checkpoints/step-00001000/
        model.safetensors       weights
        optimizer.safetensors   Adam's moment estimates
        state.json              step, data position, schedule, RNG state, best score, elapsed time, config,
                                format version and the SHA-256 of both weight files

A checkpoint is written into a hidden temporary directory and renamed into place, so a run killed at
any moment leaves only complete checkpoints (and perhaps a temporary directory, ignored and removed).
"""

import json
import os
import shutil
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_bytes, atomic_write_text, sha256, sha256_bytes

FORMAT_VERSION = 2  # 2: state.json holds the weight files' SHA-256


def checkpoint_dir(model_dir: Path) -> Path:
    return Path(model_dir) / "checkpoints"


def save_checkpoint(
    model_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically, then delete all but the newest ``keep``."""
    root = checkpoint_dir(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(tmp, model, optimizer, state)
    except BaseException:  # a full disk, a signal: leave no half-written directory behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _discard(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in sorted(root.glob("step-*"))[:-keep]:
        _discard(old)
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def _discard(checkpoint: Path) -> None:
    """Delete a checkpoint directory: renamed out of sight first (one atomic step), so that a kill
    mid-delete never leaves a ``step-…`` directory with some of its files gone."""
    if checkpoint.exists():
        aside = checkpoint.with_name(f".tmp-{checkpoint.name}-discarded")
        shutil.rmtree(aside, ignore_errors=True)  # left by an earlier kill
        os.replace(checkpoint, aside)
        shutil.rmtree(aside, ignore_errors=True)


def _write(
    tmp: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    tmp.mkdir()
    weights = safetensors.torch.save(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    )
    atomic_write_bytes(tmp / "model.safetensors", weights)
    opt = optimizer.state_dict()
    moments = safetensors.torch.save(
        {
            f"{i}.{name}": t.detach().cpu().contiguous()
            for i, s in opt["state"].items()
            for name, t in s.items()
        }
    )
    atomic_write_bytes(tmp / "optimizer.safetensors", moments)
    state = {**state, "format_version": FORMAT_VERSION, "param_groups": opt["param_groups"]}
    state["sha256"] = {
        "model.safetensors": sha256_bytes(weights),
        "optimizer.safetensors": sha256_bytes(moments),
    }
    state["torch_rng"] = torch.get_rng_state().tolist()
    if torch.cuda.is_available():  # dropout on a GPU draws from its own generator
        state["cuda_rng"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    atomic_write_text(tmp / "state.json", json.dumps(state))


def latest_checkpoint(model_dir: Path) -> Path | None:
    checkpoints = sorted(checkpoint_dir(model_dir).glob("step-*"))
    return checkpoints[-1] if checkpoints else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore weights, optimizer and torch RNG from ``path``; returns the rest of the saved state."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AttnmtError(f"{path}: unreadable checkpoint ({e})") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        version = state.get("format_version") if isinstance(state, dict) else None
        raise AttnmtError(
            f"{path}: checkpoint format {version!r} is not {FORMAT_VERSION}, the one this attnmt reads; "
            "resume it with the attnmt that wrote it, or start a new run"
        )
    for name in ("model.safetensors", "optimizer.safetensors"):
        try:
            digest = sha256(path / name)
        except OSError as e:
            raise AttnmtError(f"{path / name}: unreadable checkpoint ({e.strerror})") from None
        if digest != state.get("sha256", {}).get(name):
            raise AttnmtError(f"{path / name}: checksum does not match state.json: the checkpoint is corrupt")
    try:
        weights = safetensors.torch.load_file(path / "model.safetensors")
        moments = safetensors.torch.load_file(path / "optimizer.safetensors")
    except (OSError, ValueError, safetensors.SafetensorError) as e:
        raise AttnmtError(f"{path}: unreadable checkpoint ({e})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError:
        raise AttnmtError(f"{path}: weights do not fit the configured model") from None
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in moments.items():
        index, name = key.split(".", 1)
        opt_state.setdefault(int(index), {})[name] = tensor
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda_rng"]])
    return state


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def average_checkpoints(model_dir: Path, last: int) -> dict[str, torch.Tensor]:
    """The element-wise mean of the weights in the newest ``last`` checkpoints of ``model_dir``
    (Vaswani et al. 2017, §6.1: "averaging the last 5 checkpoints")."""
    checkpoints = sorted(checkpoint_dir(model_dir).glob("step-*"))[-last:]
    if len(checkpoints) < last:
        raise AttnmtError(
            f"{checkpoint_dir(model_dir)}: {len(checkpoints)} checkpoint(s), {last} needed "
            "(train with a larger train.keep_checkpoints)"
        )
    total: dict[str, torch.Tensor] = {}
    for path in checkpoints:
        try:
            weights = safetensors.torch.load_file(path / "model.safetensors")
        except (OSError, safetensors.SafetensorError) as e:
            raise AttnmtError(f"{path}: unreadable checkpoint ({e})") from None
        if total and weights.keys() != total.keys():
            raise AttnmtError(f"{path}: weights differ in names from {checkpoints[0]}")
        for name, tensor in weights.items():
            total[name] = total.get(name, 0) + tensor.double()
    return {name: (tensor / last).to(weights[name].dtype) for name, tensor in total.items()}
