"""A bounded load test on 127.0.0.1: concurrent clients, every answer checked against its own request."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from attnmt.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_many_concurrent_clients_no_failures_nothing_mixed_up(tmp_path):
    model_dir = tmp_path / "toy"
    tiny = ["--set", "model.hidden_size=32", "--set", "train.epochs=3", "--quiet"]
    assert main(["train", "--model-dir", str(model_dir), *tiny]) == 0
    out = tmp_path / "load.json"
    command = [sys.executable, str(ROOT / "bench/serve.py"), str(model_dir), "--data", "toy",
               "--clients", "24", "--requests", "10", "--modes", "batched", "--json", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(out.read_text())
    assert row["requests"] == 240 and row["errors"] == 0
    print(result.stdout)  # the figures, with -s
