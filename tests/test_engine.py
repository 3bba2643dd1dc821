"""The engine contract: every test here runs against every engine — attnmt's own ``Translator``, a
CTranslate2 export of a toy Transformer, ONNX exports of a toy GRU and of that Transformer — through the members of
``attnmt.engine.Engine`` only, each compared with the PyTorch model it was exported from."""

import inspect
from pathlib import Path

import numpy as np
import pytest

from attnmt.ctranslate2_model import CTranslate2Translator
from attnmt.engine import DecodeOptions, Engine, Translation
from attnmt.errors import AttnmtError
from attnmt.modeldir import load_model
from attnmt.onnx_model import OnnxTranslator
from attnmt.search import length_penalty
from attnmt.translator import Translator

pytestmark = pytest.mark.slow  # trains a GRU and a Transformer and exports them three ways: about 15 s

SOURCES = ["We are happy.", "She loves cats.", "He is tired.", ""]


ENGINES = {  # engine → (the fixture of its model directory, the fixture of the model it came from)
    "pytorch": ("toy_transformer", "toy_transformer"),
    "ctranslate2": ("toy_exports", "toy_transformer"),
    "onnx": ("toy_gru_onnx", "toy_gru"),
    "onnx-transformer": ("toy_transformer_onnx", "toy_transformer"),
}


@pytest.fixture(scope="module", params=list(ENGINES))
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def source(request, kind) -> Path:
    """The PyTorch model directory the engine's model came from."""
    return request.getfixturevalue(ENGINES[kind][1])


@pytest.fixture(scope="module")
def engine(request, kind) -> Engine:
    return _load(request, kind)


def _load(request, kind: str) -> Engine:
    directory = request.getfixturevalue(ENGINES[kind][0])
    return load_model(directory["float32"] if kind == "ctranslate2" else directory)


SHARED = {"translate", "replace_unknowns"}  # written once in the Protocol, inherited by every engine


@pytest.mark.parametrize("cls", [Translator, CTranslate2Translator, OnnxTranslator])
def test_each_engine_implements_every_member_of_the_protocol_with_its_signature(cls):
    """A member an engine forgot would be the Protocol's empty stub, answering None: each is its own."""
    assert set(Engine.__annotations__) <= {f.name for f in cls.__dataclass_fields__.values()} | set(dir(cls))
    for name in (n for n in vars(Engine) if not n.startswith("_") and n not in SHARED):
        ours, stub = getattr(cls, name), getattr(Engine, name)
        assert ours is not stub, f"{cls.__name__}.{name} is the Protocol's stub"
        if callable(stub):
            assert inspect.signature(ours) == inspect.signature(stub), name
    assert all(getattr(cls, name) is getattr(Engine, name) for name in SHARED)


def test_translate_gives_the_best_of_n_best_in_input_order(engine, source):
    options = DecodeOptions(beam_size=4, n_best=2)
    n_bests = engine.translate_n_best(SOURCES, options)
    assert [len(n) for n in n_bests[:3]] == [2, 2, 2] and n_bests[3][0].text == ""
    best = engine.translate(SOURCES, options)
    assert [t.text for t in best] == [n[0].text for n in n_bests]
    assert best[0].text == load_model(source).translate(SOURCES[:1], options)[0].text
    for n_best in n_bests[:3]:  # ranked by the GNMT length penalty (DecodeOptions.alpha)
        ranked = [t.score / length_penalty(len(t.tokens), options.alpha) for t in n_best]
        assert ranked == sorted(ranked, reverse=True)


def test_an_empty_sentence_translates_to_nothing(engine):
    (empty,) = engine.translate([""], DecodeOptions(beam_size=1))
    assert empty.text == "" and empty.tokens == [] and empty.src_tokens == []


def test_a_prefix_begins_each_translation_and_one_per_sentence_is_asked(engine):
    prefix = ["Nous", "", "Il est très"]
    translations = engine.translate(SOURCES[:3], DecodeOptions(beam_size=2), prefix=prefix)
    assert translations[0].text.startswith("Nous") and translations[2].text.startswith("Il est très")
    with pytest.raises(AttnmtError, match=r"prefix: 1 for 3 sentences; give one per sentence"):
        engine.translate(SOURCES[:3], prefix=["Nous"])


def test_score_reads_each_token_unknown_words_as_unk(engine):
    sources, targets = (
        ["We are happy.", "She loves cats."],
        ["Nous sommes heureux.", "Elle aime les zorglubs."],
    )
    happy, unknown = engine.score(sources, targets)
    assert happy.tokens[-1] == "<eos>" and len(happy.log_probs) == len(happy.tokens)
    assert happy.total == pytest.approx(sum(happy.log_probs))
    assert happy.attention.shape == (len(happy.tokens), len(happy.src_tokens))
    assert "<unk>" in unknown.tokens and unknown.total < happy.total
    with pytest.raises(AttnmtError, match=r"targets: 1 for 2 sources"):
        engine.score(sources, targets[:1])


def test_score_translations_reads_what_translate_wrote(engine):
    translations = engine.translate(SOURCES[:3], DecodeOptions(beam_size=1))
    for t, s in zip(translations, engine.score_translations(translations), strict=True):
        assert s.tokens == t.tokens and s.src_tokens == t.src_tokens
        # CTranslate2 leaves <pad> and <sos> out before its softmax while searching: up to 0.04 here
        assert s.total == pytest.approx(t.score, abs=0.1)


def test_alternatives_come_from_a_step_by_step_model_only(engine):
    """``top_k``: the likeliest tokens at each position, where the engine exposes its model's steps."""
    if engine.model is None:
        with pytest.raises(AttnmtError, match="top_k: a CTranslate2 export gives no alternatives"):
            engine.score(["We are happy."], ["Nous sommes heureux."], top_k=3)
    else:
        (s,) = engine.score(["We are happy."], ["Nous sommes heureux."], top_k=3)
        assert len(s.candidates) == len(s.tokens) and all(len(row) == 3 for row in s.candidates)
        assert s.candidates[0][0][0] == "Nous"


def test_attention_maps_hold_the_cross_attention_of_the_translation(engine):
    (t,) = engine.translate(["We are happy."], DecodeOptions(beam_size=1))
    maps = engine.attention_maps(t)
    rows, columns = maps["cross"].shape[2:]
    assert (rows, columns) == (len(t.tokens), len(t.src_tokens))
    assert np.allclose(maps["cross"][-1].mean(0), t.attention, atol=1e-4)  # the last layer's, over heads
    assert engine.attention_maps(engine.translate([""])[0]) == {}


def test_unknown_words_are_replaced_by_the_source_word_attended_to(engine):
    t = Translation("<unk> !", ["<unk>", "!", "<eos>"], ["Zorglub", "!", "<eos>"], -1.0, np.eye(3))
    assert engine.replace_unknowns(t).text == "Zorglub !"
    assert engine.replace_unknowns(t, {"Zorglub": "Zorgloub"}).tokens == ["Zorgloub", "!", "<eos>"]


def test_what_the_engine_is(engine, source):
    assert engine.has_attention
    assert engine.parameter_count == load_model(source).parameter_count > 0
    assert engine.config == load_model(source).config
    assert len(engine.src_vocab) > 4 and engine.tgt_tokenizer.detokenize(["Nous", "sommes"]) == "Nous sommes"


def test_an_engine_computes_where_it_can_and_says_where_it_cannot(engine, kind, request):
    engine.place("cpu")  # every engine computes on the CPU
    fresh = _load(request, kind)  # place changes the engine: a fresh one
    if kind == "pytorch":
        fresh.place("cpu", int8=True)
        assert fresh.translate(["We are happy."])[0].text.startswith("Nous")
    else:  # an export computes as it was exported
        with pytest.raises(AttnmtError, match=r"--int8: an? (CTranslate2|ONNX) export computes as exported"):
            fresh.place("cpu", int8=True)
