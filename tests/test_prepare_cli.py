"""`attnmt prepare CONFIG`: the training data encoded once, then reused by `attnmt train`."""

import json
from pathlib import Path

from attnmt.cli import main
from attnmt.synthetic import synthetic_pairs

TINY = ["--set", "model.embed_size=16", "--set", "model.hidden_size=32", "--set", "train.epochs=null",
        "--set", "train.max_steps=2", "--quiet"]  # fmt: skip


def _corpus(path: Path) -> Path:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in synthetic_pairs(300, seed=2)), encoding="utf-8")
    return path


def _config(path: Path, corpus: Path, prepared: Path) -> Path:
    path.write_text(f"data:\n  train: {corpus}\n  prepared: {prepared}\n", encoding="utf-8")
    return path


def test_prepare_then_train_reuses_the_arrays(tmp_path, capsys):
    prepared = tmp_path / "prepared"
    config = _config(tmp_path / "c.yaml", _corpus(tmp_path / "c.tsv"), prepared)
    assert main(["prepare", str(config)]) == 0
    manifest = json.loads((prepared / "manifest.json").read_text())
    assert manifest["pairs"] == 300 and "300 pairs" in capsys.readouterr().err
    written = (prepared / "manifest.json").stat().st_mtime_ns
    assert main(["prepare", str(config)]) == 0
    assert "up to date" in capsys.readouterr().err
    assert main(["train", str(config), "--model-dir", str(tmp_path / "model"), *TINY]) == 0
    assert (prepared / "manifest.json").stat().st_mtime_ns == written  # reused, not rebuilt
    assert not (tmp_path / "model" / "prepared").exists()


def test_prepare_rebuilds_and_says_why(tmp_path, capsys):
    prepared = tmp_path / "prepared"
    config = _config(tmp_path / "c.yaml", _corpus(tmp_path / "c.tsv"), prepared)
    assert main(["prepare", str(config), "--workers", "1"]) == 0
    assert main(["prepare", str(config), "--set", "data.max_words=8"]) == 0
    assert "data.max_words changed (80 → 8)" in capsys.readouterr().err


def test_prepare_without_a_place_to_write_names_the_key(tmp_path, capsys):
    assert main(["prepare", "--set", f"data.train={_corpus(tmp_path / 'c.tsv')}"]) == 1
    assert "data.prepared" in capsys.readouterr().err
    assert main(["prepare", "--set", "data.train=toy", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "manifest.json").is_file()
