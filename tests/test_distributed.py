"""Data-parallel training with torchrun (gloo on CPU) gives the model one process would train, and a
seed fixes the model.  `attnmt train` trains from the arrays it prepares in the model directory, so the
processes here share memory-mapped data, each reading its own batches' rows."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from attnmt.config import config_from_dict
from attnmt.training import train

TINY = {
    "model.embed_size": 16, "model.hidden_size": 32, "model.dropout": 0.0, "train.epochs": "null",
    "train.max_steps": 6, "train.batch_tokens": 200, "train.validate_every": 3,
}  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _sets(overrides: dict) -> list[str]:
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    (path,) = model_dir.glob("model-*.safetensors")
    return safetensors.torch.load_file(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait(*processes: subprocess.Popen) -> None:
    for p in processes:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode()[-3000:]


def _assert_same_model(a: Path, b: Path) -> None:
    """Equal weights (within float tolerance) after the same 6 updates, logged at updates 3 and 6."""
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-5), name
    for model_dir in (a, b):
        log = [json.loads(line) for line in (model_dir / "train.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [3, 6]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process, two batches per update."""
    model_dir = tmp_path_factory.mktemp("single") / "model"
    command = [sys.executable, "-m", "attnmt.cli", "train", "--model-dir", str(model_dir), "--quiet"]
    _wait(_run([*command, *_sets({**TINY, "train.accumulate": 2})]))
    return model_dir


@pytest.mark.slow
def test_two_processes_train_the_model_of_one_with_gradient_accumulation(single, tmp_path):
    model_dir = tmp_path / "ddp"
    command = [*TORCHRUN, "--standalone", "--nproc-per-node=2", "-m", "attnmt.cli", "train",
               "--model-dir", str(model_dir), "--quiet", *_sets(TINY)]  # fmt: skip
    _wait(_run(command))
    _assert_same_model(single, model_dir)
    assert len(list((model_dir / "checkpoints").glob("step-*"))) == 2  # rank 0 alone wrote them
    assert (model_dir / "prepared" / "manifest.json").is_file()  # both trained from the prepared arrays
    assert not list(model_dir.glob(".prepared*"))  # prepared once, by rank 0, nothing left half-done


@pytest.mark.slow
def test_two_machines_rendezvous_on_localhost_and_train_the_same_model(single, tmp_path):
    model_dir, port = tmp_path / "nodes", _free_port()
    node = [*TORCHRUN, "--nnodes=2", "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}"]
    train_args = ["-m", "attnmt.cli", "train", "--model-dir", str(model_dir), "--quiet", *_sets(TINY)]
    launches = [_run([*node, f"--node-rank={rank}", *train_args]) for rank in (0, 1)]
    _wait(*launches)
    _assert_same_model(single, model_dir)


def test_the_same_config_and_seed_give_the_same_model():
    config = config_from_dict({}, [f"{k}={v}" for k, v in TINY.items()] + ["model.dropout=0.2"])
    first, second = (
        train(config, progress=False).model.state_dict(),
        train(config, progress=False).model.state_dict(),
    )
    assert all(torch.equal(first[name], second[name]) for name in first)
    other = train(
        config_from_dict({}, [f"{k}={v}" for k, v in TINY.items()] + ["train.seed=1"]), progress=False
    )
    assert not torch.equal(other.model.state_dict()["decoder.output.weight"], first["decoder.output.weight"])
