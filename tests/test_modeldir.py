import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from attnmt.config import config_from_dict
from attnmt.corpora import toy_pairs
from attnmt.errors import AttnmtError
from attnmt.files import sha256
from attnmt.modeldir import load_model, save_model
from attnmt.training import train

SENTENCES = ["I am happy.", "We are sad.", "The cat is happy.", "Unseen words here", ""]


@pytest.fixture(scope="module")
def translator():
    config = config_from_dict({"model": {"embed_size": 8, "hidden_size": 16}, "train": {"epochs": 1}})
    return train(config, pairs=toy_pairs()[:20], progress=False)


@pytest.fixture(scope="module")
def saved(translator, tmp_path_factory):
    directory = tmp_path_factory.mktemp("saved") / "model"
    save_model(translator, directory)
    return directory


@pytest.fixture
def model_dir(saved, tmp_path):
    """A fresh copy of the saved model that a test may damage."""
    return Path(shutil.copytree(saved, tmp_path / "model"))


def _header(directory: Path) -> dict:
    return yaml.safe_load((directory / "config.yaml").read_text(encoding="utf-8"))


def _write_header(directory: Path, header: dict) -> None:
    (directory / "config.yaml").write_text(yaml.safe_dump(header, sort_keys=False), encoding="utf-8")


def _update_checksum(directory: Path, name: str) -> None:
    header = _header(directory)
    header["files"][name] = sha256(directory / name)
    _write_header(directory, header)


WEIGHTS = object()  # stands for the weights file, whose name follows its content


def _weights(directory: Path) -> Path:
    return directory / _header(directory)["weights"]


def test_save_writes_the_documented_files(saved):
    names = sorted(p.name for p in saved.iterdir())
    weights = _weights(saved).name
    assert names == ["config.yaml", weights, "src_vocab.json", "tgt_vocab.json"]
    assert weights.startswith("model-") and weights.endswith(".safetensors")
    header = _header(saved)
    assert header["format_version"] == 2
    assert set(header["files"]) == {weights, "src_vocab.json", "tgt_vocab.json"}
    assert config_from_dict(header["config"]).model.hidden_size == 16


def test_save_leaves_no_temporary_files(saved):
    assert not [p.name for p in saved.iterdir() if p.name.startswith(".")]


def test_load_gives_identical_translations(translator, saved):
    loaded = load_model(saved)
    for before, after in zip(translator.translate(SENTENCES), loaded.translate(SENTENCES), strict=True):
        assert after.text == before.text
        assert after.tokens == before.tokens
        assert after.src_tokens == before.src_tokens
        assert after.score == before.score
        assert np.array_equal(after.attention, before.attention)


def test_load_gives_identical_weights_vocab_and_config(translator, saved):
    loaded = load_model(saved)
    expected = translator.model.state_dict()
    state = loaded.model.state_dict()
    assert state.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name
    assert loaded.src_vocab.itos == translator.src_vocab.itos
    assert loaded.tgt_vocab.itos == translator.tgt_vocab.itos
    assert loaded.config == translator.config
    assert not loaded.model.training


def test_save_overwrites_an_existing_model(translator, model_dir):
    save_model(translator, model_dir)
    assert load_model(model_dir).tgt_vocab.itos == translator.tgt_vocab.itos
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")]


def test_missing_directory(tmp_path):
    with pytest.raises(AttnmtError, match="no_such_model"):
        load_model(tmp_path / "no_such_model")


def _remove_config(d):
    (d / "config.yaml").unlink()


def _flip_byte(d):
    path = _weights(d)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(d):
    path = _weights(d)
    path.write_bytes(path.read_bytes()[:-100])


def _truncate_keep_checksum(d):
    _truncate(d)
    _update_checksum(d, _weights(d).name)


def _remove_vocab(d):
    (d / "tgt_vocab.json").unlink()


def _remove_weights(d):
    (_weights(d)).unlink()


def _edit_vocab(d):
    path = d / "src_vocab.json"
    path.write_text(path.read_text(encoding="utf-8").replace("happy", "sad"), encoding="utf-8")


def _future_format(d):
    header = _header(d)
    header["format_version"] = 99
    _write_header(d, header)


def _config_not_yaml(d):
    (d / "config.yaml").write_text("format_version: 1\nfiles: [unclosed\n", encoding="utf-8")


def _config_not_mapping(d):
    (d / "config.yaml").write_text("- just\n- a list\n", encoding="utf-8")


def _bad_config_value(d):
    header = _header(d)
    header["config"]["model"]["attention"] = "luong"
    _write_header(d, header)


def _unknown_engine(d):
    header = _header(d)
    header["engine"] = "marian"
    _write_header(d, header)


def _weights_key_missing(d):
    header = _header(d)
    del header["weights"]
    _write_header(d, header)


def _hidden_size_changed(d):
    header = _header(d)
    header["config"]["model"]["hidden_size"] = 32
    _write_header(d, header)


@pytest.mark.parametrize(
    ("damage", "file", "message"),
    [
        pytest.param(_remove_config, "config.yaml", "missing", id="config-missing"),
        pytest.param(_flip_byte, WEIGHTS, "checksum", id="flipped-byte"),
        pytest.param(_truncate, WEIGHTS, "checksum", id="truncated"),
        pytest.param(_truncate_keep_checksum, WEIGHTS, "safetensors", id="truncated-checksum-updated"),
        pytest.param(_remove_vocab, "tgt_vocab.json", "missing", id="vocab-missing"),
        pytest.param(_remove_weights, WEIGHTS, "missing", id="weights-missing"),
        pytest.param(_edit_vocab, "src_vocab.json", "checksum", id="vocab-edited"),
        pytest.param(_future_format, "config.yaml", "format_version 99", id="format-version"),
        pytest.param(_config_not_yaml, "config.yaml", "YAML", id="config-not-yaml"),
        pytest.param(_config_not_mapping, "config.yaml", "format_version", id="config-not-mapping"),
        pytest.param(_bad_config_value, "config.yaml", "model.attention", id="bad-config-value"),
        pytest.param(_hidden_size_changed, WEIGHTS, "do not fit", id="hidden-size-changed"),
        pytest.param(
            _unknown_engine,
            "config.yaml",
            "engine 'marian' is not one of pytorch, ctranslate2, onnx",
            id="engine",
        ),
        pytest.param(
            _weights_key_missing, "config.yaml", "weights: expected a .safetensors", id="weights-key"
        ),
    ],
)
def test_damaged_model_is_refused_naming_the_file(model_dir, damage, file, message):
    file = _weights(model_dir).name if file is WEIGHTS else file
    damage(model_dir)
    with pytest.raises(AttnmtError) as info:
        load_model(model_dir)
    assert str(model_dir / file) in str(info.value)
    assert message in str(info.value)


class _Exploit:
    """Unpickling this creates the marker file: proof that loading ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize(
    "dump",
    [
        pytest.param(lambda obj, path: path.write_bytes(pickle.dumps(obj)), id="pickle"),
        pytest.param(lambda obj, path: torch.save(obj, path), id="torch-save"),
    ],
)
def test_pickle_weights_are_refused_without_running_code(model_dir, tmp_path, dump):
    """A pickle with a matching checksum (a tampered directory) is refused, never unpickled."""
    marker = tmp_path / "code-was-executed"
    weights = _weights(model_dir)
    dump({"encoder.embedding.weight": _Exploit(marker)}, weights)
    _update_checksum(model_dir, weights.name)
    with pytest.raises(AttnmtError) as info:
        load_model(model_dir)
    assert str(weights) in str(info.value)
    assert "safetensors" in str(info.value)
    assert not marker.exists()
