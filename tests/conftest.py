"""Fixtures several test files share: models trained once per session."""

import shutil
from pathlib import Path

import pytest
import torch

from attnmt.cli import main
from attnmt.config import config_from_dict
from attnmt.modeldir import save_model
from attnmt.training import train

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def toy_transformer(tmp_path_factory) -> Path:
    """A toy Transformer (2 + 2 layers, d_model 32) trained 400 updates on the toy set, saved: about 7 s."""
    config = config_from_dict(
        {
            "model": {"architecture": "transformer", "hidden_size": 32, "heads": 4, "ff_size": 64, "layers": 2,
                      "dropout": 0.0},
            "train": {"epochs": 100, "max_steps": 400, "schedule": "inverse_sqrt", "warmup_steps": 100,
                      "precision": "fp32", "seed": 0},
        }
    )  # fmt: skip
    path = tmp_path_factory.mktemp("export") / "transformer"
    save_model(train(config, progress=False), path)
    return path


@pytest.fixture(scope="session")
def toy_exports(toy_transformer) -> dict[str, Path]:
    """:func:`toy_transformer` exported to CTranslate2 with float32 and int8 weights, by the command line."""
    pytest.importorskip(
        "ctranslate2", reason="ctranslate2 is not installed (pip install 'attnmt[ctranslate2]')"
    )
    paths = {}
    for quantization in ("float32", "int8"):
        paths[quantization] = toy_transformer.parent / f"ct2-{quantization}"
        argv = ["export", str(toy_transformer), "--to", "ctranslate2", "-o", str(paths[quantization])]
        assert main([*argv, "--quantization", quantization]) == 0
    return paths


@pytest.fixture(scope="session")
def toy_gru(tmp_path_factory) -> Path:
    """A small attention GRU (hidden 64) trained 10 epochs on the toy set, saved: about 8 s."""
    config = config_from_dict(
        {
            "model": {"embed_size": 32, "hidden_size": 64, "dropout": 0.0},
            "train": {"epochs": 10, "precision": "fp32"},
        }
    )
    path = tmp_path_factory.mktemp("gru") / "gru"
    save_model(train(config, progress=False), path)
    return path


@pytest.fixture(scope="session")
def toy_gru_onnx(toy_gru) -> Path:
    """:func:`toy_gru` exported to ONNX by the command line."""
    return _onnx_export(toy_gru)


@pytest.fixture(scope="session")
def toy_transformer_onnx(toy_transformer) -> Path:
    """:func:`toy_transformer` exported to ONNX by the command line."""
    return _onnx_export(toy_transformer)


def _onnx_export(model: Path) -> Path:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'attnmt[onnx]')")
    path = model.parent / "onnx"
    assert main(["export", str(model), "--to", "onnx", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Debian's), driven by Playwright."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium: `apt-get install chromium` (make test does so where it can)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()
