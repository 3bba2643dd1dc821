"""`DecodeOptions`: one set of decoding defaults for the Python API, the CLI and the server, checked once."""

import math

import pytest
from fastapi.testclient import TestClient

from attnmt.cli import main
from attnmt.config import Config
from attnmt.corpora import toy_pairs
from attnmt.data import TranslationDataset
from attnmt.errors import AttnmtError
from attnmt.model import build_model
from attnmt.modeldir import save_model
from attnmt.server import create_app
from attnmt.tokenization import WordTokenizer
from attnmt.translator import DecodeOptions, Translation, Translator, translate_sentence


@pytest.fixture
def untrained() -> Translator:
    config = Config()
    config.model.embed_size, config.model.hidden_size = 8, 16
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(toy_pairs())
    model = build_model(config.model, len(src_vocab), len(tgt_vocab))
    return Translator(model, src_vocab, tgt_vocab, WordTokenizer("en"), WordTokenizer("fr"), config)


@pytest.fixture
def searches(monkeypatch) -> list[DecodeOptions]:
    """The options every search of any translator is asked for, in order (the search itself skipped)."""
    seen = []

    def record(self, batch, options):
        seen.append(options)
        return [[Translation("x", ["x", "<eos>"], [*tokens, "<eos>"], -1.0, None)] for tokens in batch]

    monkeypatch.setattr(Translator, "_translate_tokens", record)
    return seen


def test_the_defaults_are_beam_5_alpha_1_one_best():
    assert DecodeOptions() == DecodeOptions(beam_size=5, alpha=1.0, n_best=1)


def test_python_cli_and_server_decode_with_the_same_defaults(untrained, searches, tmp_path, capsys):
    save_model(untrained, tmp_path / "m")
    with TestClient(create_app({"m": untrained})) as client:
        surfaces = {
            "Translator.translate": lambda: untrained.translate(["We are happy."]),
            "Translator.translate_n_best": lambda: untrained.translate_n_best(["We are happy."]),
            "attnmt translate": lambda: main(["translate", str(tmp_path / "m"), "--text", "Hi."]),
            "attnmt evaluate": lambda: main(["evaluate", str(tmp_path / "m"), "--data", "toy"]),
            "POST /translate": lambda: client.post("/translate", json={"sentences": ["Hi."]}),
        }
        for surface, run in surfaces.items():
            searches.clear()
            run()
            assert searches and set(searches) == {DecodeOptions()}, surface


def test_translate_sentence_is_greedy_as_documented(untrained, searches):
    translate_sentence(untrained, "We are happy.")
    assert searches == [DecodeOptions(beam_size=1)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beam_size": 0}, "beam_size: must be at least 1, got 0"),
        ({"n_best": 0}, "n_best: must be between 1 and beam_size (5), got 0"),
        ({"beam_size": 2, "n_best": 3}, "n_best: must be between 1 and beam_size (2), got 3"),
        ({"alpha": -0.5}, "alpha: must be a finite number of at least 0, got -0.5"),
        ({"alpha": math.nan}, "alpha: must be a finite number of at least 0, got nan"),
    ],
)
def test_impossible_options_are_refused_naming_the_option(options, message):
    with pytest.raises(AttnmtError) as error:
        DecodeOptions(**options)
    assert str(error.value) == message


def test_options_cannot_change_once_made():
    options = DecodeOptions(beam_size=1)
    with pytest.raises(AttributeError):
        options.beam_size = 0  # would skip the checks
