"""Export to ONNX: the graphs compute what the PyTorch model computes, step by step, and the export is a
model directory that translate, evaluate, complete and serve run through ONNX Runtime."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnmt.cli import main
from attnmt.completion import Completer
from attnmt.config import config_from_dict
from attnmt.corpora import toy_pairs
from attnmt.engine import DecodeOptions
from attnmt.errors import AttnmtError
from attnmt.model import build_model
from attnmt.modeldir import load_model, save_model
from attnmt.training import train

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'attnmt[onnx]')")

from attnmt.onnx_model import ENCODER, STEP, OnnxGRU, OnnxTransformer, export_graphs, require

SENTENCES = [src for src, _ in toy_pairs()[::10]] + ["We write long letters to our friends.", ""]


MODELS = {
    **{f"gru-{attention}-{'feeding' if feeding else 'plain'}": {"attention": attention, "input_feeding": feeding,
       "embed_size": 16, "hidden_size": 32, "layers": 2, "bridge": True}
       for attention in ("additive", "dot", "general", "scaled_dot", "none") for feeding in (False, True)},
    "transformer": {"architecture": "transformer", "hidden_size": 32, "heads": 4, "ff_size": 64, "layers": 2},
}  # fmt: skip


@pytest.mark.parametrize("name", list(MODELS))
def test_the_graphs_give_the_models_log_probs_and_attention_at_every_step(name, tmp_path):
    """Two layers, a padded batch of two sentences, four greedy steps with the rows swapped after each
    (as beam search reorders them): within float32 rounding."""
    torch.manual_seed(0)
    model = build_model(config_from_dict({"model": MODELS[name]}).model, 30, 40).eval()
    export_graphs(model, tmp_path)
    sessions = [require("onnxruntime").InferenceSession(str(tmp_path / n)) for n in (ENCODER, STEP)]
    graphs = OnnxTransformer(*sessions) if name == "transformer" else OnnxGRU(*sessions, model.has_attention)
    src, swap = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]]), torch.tensor([1, 0])
    with torch.no_grad():
        ours, theirs = model.init_state(model.encode(src, src == 0)), graphs.encode(src, src == 0)
        tokens = torch.tensor([2, 2])
        for _ in range(4):
            expected, ours, weights = model.step(tokens, ours)
            got, theirs, row = graphs.step(tokens, theirs)
            assert torch.allclose(got, expected, atol=1e-5)
            assert (weights is None and row is None) or torch.allclose(row, weights, atol=1e-6)
            ours, theirs, tokens = (
                model.reorder(ours, swap),
                graphs.reorder(theirs, swap),
                expected.argmax(-1)[swap],
            )


@pytest.mark.slow  # a trained toy model
@pytest.mark.parametrize("beam", [1, 5])
@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_the_export_translates_as_the_pytorch_model(request, architecture, beam):
    """The same search over the same numbers: the same tokens, scores and attention."""
    model = request.getfixturevalue(f"toy_{architecture}")
    options = DecodeOptions(beam_size=beam, n_best=min(beam, 2))
    ours = load_model(model).translate_n_best(SENTENCES, options)
    theirs = load_model(request.getfixturevalue(f"toy_{architecture}_onnx")).translate_n_best(
        SENTENCES, options
    )
    for a, b in zip((t for n in ours for t in n), (t for n in theirs for t in n), strict=True):
        assert b.tokens == a.tokens and b.src_tokens == a.src_tokens
        assert b.score == pytest.approx(a.score, abs=1e-4)
        assert a.attention.shape == b.attention.shape and np.allclose(b.attention, a.attention, atol=1e-5)


@pytest.mark.slow  # a trained toy model
def test_the_export_scores_prefixes_and_completes_as_the_pytorch_model(toy_gru, toy_gru_onnx):
    pytorch, onnx = load_model(toy_gru), load_model(toy_gru_onnx)
    sources, prefix = ["We are happy.", "She loves cats."], ["Nous", "Elle aime les"]
    assert [t.tokens for t in onnx.translate(sources, prefix=prefix)] == [
        t.tokens for t in pytorch.translate(sources, prefix=prefix)
    ]
    (a,), (b,) = (
        pytorch.score(sources[:1], ["Nous sommes contents."], top_k=3),
        onnx.score(sources[:1], ["Nous sommes contents."], top_k=3),
    )
    assert np.allclose(b.log_probs, a.log_probs, atol=1e-4)
    assert [[t for t, _ in row] for row in b.candidates] == [[t for t, _ in row] for row in a.candidates]
    typed = "Nous so"
    assert (
        Completer(onnx).complete("We are happy.", typed).text
        == Completer(pytorch).complete("We are happy.", typed).text
    )


@pytest.mark.slow  # a trained toy model
def test_the_export_runs_from_the_command_line(toy_gru, toy_gru_onnx, tmp_path, capsys):
    argv = ["--beam", "1", "--text", "We are happy.", "--text", "She loves cats."]
    assert main(["translate", str(toy_gru), *argv]) == 0
    expected = capsys.readouterr().out
    assert main(["translate", str(toy_gru_onnx), *argv]) == 0
    assert capsys.readouterr().out == expected
    test = tmp_path / "test.tsv"
    test.write_text("We are happy.\tNous sommes heureux.\n", encoding="utf-8")
    assert main(["evaluate", str(toy_gru_onnx), "--data", str(test), "--beam", "1"]) == 0
    assert "1 sentences, 1 references" in capsys.readouterr().out


@pytest.mark.slow  # trained toy models
@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_an_int8_export_is_smaller_and_translates_as_float32_nearly_always(request, architecture, tmp_path):
    import onnx

    model = request.getfixturevalue(f"toy_{architecture}")
    exported = request.getfixturevalue(f"toy_{architecture}_onnx")
    argv = ["export", str(model), "--to", "onnx", "--quantization", "int8", "-o", str(tmp_path / "int8")]
    assert main(argv) == 0
    int8 = load_model(tmp_path / "int8")
    assert int8.quantization == "int8"
    assert "MatMulInteger" in {n.op_type for n in onnx.load(tmp_path / "int8" / STEP).graph.node}
    assert (tmp_path / "int8" / STEP).stat().st_size < (exported / STEP).stat().st_size
    options = DecodeOptions(beam_size=1)
    theirs = load_model(exported).translate(SENTENCES, options)
    same = sum(a.tokens == b.tokens for a, b in zip(int8.translate(SENTENCES, options), theirs, strict=True))
    assert same >= 0.75 * len(SENTENCES)
    with pytest.raises(AttnmtError, match=r"--int8: an ONNX export computes as exported \(int8\)"):
        int8.place("cpu", int8=True)


@pytest.mark.slow  # a trained toy model
def test_the_server_serves_the_export_with_alternatives(toy_gru_onnx):
    from fastapi.testclient import TestClient

    from attnmt.server import create_app

    with TestClient(create_app({"onnx": load_model(toy_gru_onnx)})) as client:
        answer = client.post("/translate", json={"sentences": ["We are happy."], "top_k": 2}).json()
        assert (
            answer["translations"][0]["text"] == load_model(toy_gru_onnx).translate(["We are happy."])[0].text
        )
        assert len(answer["translations"][0]["candidates"][0]) == 2
        completed = client.post("/complete", json={"source": "We are happy.", "typed": "Nous"}).json()
        assert completed["text"].startswith("Nous")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny GRU after one update, saved, and its ONNX export: for what is refused, in a second."""
    config = config_from_dict({"model": {"embed_size": 8, "hidden_size": 16}, "train": {"max_steps": 1}})
    model, export = tmp_path_factory.mktemp("tiny") / "gru", tmp_path_factory.mktemp("tiny") / "onnx"
    save_model(train(config, progress=False), model)
    assert main(["export", str(model), "--to", "onnx", "-o", str(export)]) == 0
    return model, export


def test_what_cannot_be_exported_or_run_is_refused_in_one_line(tiny, tmp_path, capsys):
    model, export = tiny
    cases = [
        (["export", str(model), "--to", "onnx", "--quantization", "int16", "-o", str(tmp_path / "q")],
         "--quantization int16: the ONNX export is float32 or int8"),
        (["export", str(export), "--to", "onnx", "-o", str(tmp_path / "again")], "an export already"),
        (["export", str(model), "--to", "onnx", "-o", str(export)], "exists and is not empty"),
        (["translate", str(export), "--int8", "--text", "Hi."], "--int8: an ONNX export computes as exported"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "q").exists() and not (tmp_path / "again").exists()


@pytest.mark.parametrize("how", ["truncated", "missing"])
def test_a_corrupted_export_is_refused_in_one_line(tiny, tmp_path, how):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny[1], broken)
    if how == "truncated":
        data = (broken / STEP).read_bytes()
        (broken / STEP).write_bytes(data[: len(data) // 2])
    else:
        (broken / ENCODER).unlink()
    message = "step.onnx: checksum does not match" if how == "truncated" else "encoder.onnx: missing"
    with pytest.raises(AttnmtError, match=message):
        load_model(broken)


def test_without_onnxruntime_the_export_says_how_to_install_it(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(AttnmtError, match=r"onnxruntime is not installed: pip install 'attnmt\[onnx\]'"):
        load_model(tiny[1])


@pytest.mark.slow  # a trained toy model
def test_a_transformer_export_draws_its_averaged_attention_and_refuses_a_layer(
    toy_transformer_onnx, tmp_path, capsys
):
    argv = ["attention", str(toy_transformer_onnx), "--text", "We are happy.", "-o"]
    assert main([*argv, str(tmp_path / "a.png")]) == 0 and (tmp_path / "a.png").is_file()
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "b.png"), "--head", "2"]) == 1
    assert "only the last layer's cross-attention averaged over its heads" in capsys.readouterr().err
