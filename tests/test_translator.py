"""`DecodeOptions`: one set of decoding defaults for the Python API, the CLI and the server, checked once;
forced prefixes and scoring a given translation through the Python API."""

import math
import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from attnmt.cli import main
from attnmt.config import Config
from attnmt.corpora import toy_pairs
from attnmt.data import TranslationDataset
from attnmt.errors import AttnmtError
from attnmt.model import build_model
from attnmt.modeldir import save_model
from attnmt.server import create_app
from attnmt.tokenization import SubwordTokenizer, WordTokenizer, tokenize
from attnmt.translator import DecodeOptions, Translation, Translator, translate_sentence
from attnmt.vocab import Vocabulary


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

    def record(self, batch, options, prefixes=None):
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


# ---- forced prefixes and scoring --------------------------------------------------------------------

SENTENCES = ["We are happy.", "She loves cats and dogs.", "He is tired.", "They are here."]


def _untrained(architecture: str, seed: int = 0) -> Translator:
    torch.manual_seed(seed)
    config = Config()
    config.model.architecture, config.model.embed_size, config.model.hidden_size = architecture, 16, 32
    config.model.heads, config.model.ff_size, config.model.layers = 4, 64, 2
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(toy_pairs())
    model = build_model(config.model, len(src_vocab), len(tgt_vocab)).eval()
    return Translator(model, src_vocab, tgt_vocab, WordTokenizer("en"), WordTokenizer("fr"), config)


@pytest.fixture(params=["gru", "transformer"], scope="module")
def translator(request) -> Translator:
    return _untrained(request.param)


@pytest.mark.parametrize("beam", [1, 4])
def test_each_translation_begins_with_its_own_prefix(translator, beam):
    prefix = ["Nous sommes", "", "Il", "Ils ne sont pas"]
    translations = translator.translate(SENTENCES, DecodeOptions(beam_size=beam), prefix=prefix)
    plain = translator.translate(SENTENCES, DecodeOptions(beam_size=beam))
    for p, t, alone in zip(prefix, translations, plain, strict=True):
        assert t.tokens[: len(tokenize(p))] == tokenize(p)
        assert t.text.startswith(p)
        assert t.attention.shape == (len(t.tokens), len(t.src_tokens))  # the prefix's rows included
        if not p:
            assert (t.text, t.score) == (alone.text, alone.score)


@pytest.mark.parametrize("beam", [1, 4])
def test_an_empty_prefix_is_plain_translation(translator, beam):
    options = DecodeOptions(beam_size=beam, n_best=2 if beam > 1 else 1)
    plain = translator.translate_n_best(SENTENCES, options)
    empty = translator.translate_n_best(SENTENCES, options, prefix=[""] * len(SENTENCES))
    assert [[(t.text, t.score) for t in n] for n in empty] == [[(t.text, t.score) for t in n] for n in plain]


def test_a_prefix_word_out_of_vocabulary_is_written_as_unk(translator):
    (t,) = translator.translate(["We are happy."], DecodeOptions(beam_size=1), prefix=["Zorglub"])
    assert t.tokens[0] == "<unk>"


def test_a_wrong_number_of_prefixes_or_targets_is_refused_naming_it(translator):
    with pytest.raises(AttnmtError, match="prefix: 1 for 2 sentences; give one per sentence"):
        translator.translate(["Hi.", "Yes."], prefix=["Nous"])
    with pytest.raises(AttnmtError, match="targets: 3 for 2 sources"):
        translator.score(["Hi.", "Yes."], ["a", "b", "c"])


@pytest.mark.parametrize("beam", [1, 4])
def test_a_translations_score_is_the_score_of_its_text(translator, beam):
    translations = translator.translate(SENTENCES, DecodeOptions(beam_size=beam), prefix=["Nous", "", "", ""])
    scores = translator.score(SENTENCES, [t.text for t in translations])
    compared = 0
    for t, s in zip(translations, scores, strict=True):
        if tokenize(t.text) != t.tokens[:-1]:  # e.g. <unk> is not a word once written as text
            continue
        compared += 1
        assert s.tokens == t.tokens and s.src_tokens == t.src_tokens
        assert len(s.log_probs) == len(s.tokens) and s.total == pytest.approx(sum(s.log_probs))
        assert s.total == pytest.approx(t.score, abs=1e-4)
        np.testing.assert_allclose(s.attention, t.attention, atol=1e-5)
    assert compared >= 2


def test_score_is_the_teacher_forced_log_probability_of_each_token(translator):
    sources, targets = ["We are happy.", "She loves cats."], ["Nous sommes heureux .", "Elle aime Zorglub ."]
    scores = translator.score(sources, targets, batch_size=1)
    assert scores[1].tokens == ["Elle", "aime", "<unk>", ".", "<eos>"]
    for s in scores:
        src = torch.tensor([translator.src_vocab.encode(s.src_tokens)])
        target = torch.tensor([[Vocabulary.sos_id, *translator.tgt_vocab.encode(s.tokens)]])
        with torch.no_grad():
            logits, _ = translator.model(src, torch.zeros_like(src, dtype=torch.bool), target[:, :-1])
        forward = torch.log_softmax(logits.float(), -1).gather(2, target[:, 1:, None]).flatten()
        np.testing.assert_allclose(s.log_probs, forward.numpy(), atol=1e-4)
        assert s.attention.shape == (len(s.tokens), len(s.src_tokens))


def test_a_subword_prefix_is_the_pieces_of_its_text():
    pieces = SubwordTokenizer.train([t for _, t in toy_pairs()], vocab_size=400, model_type="bpe")
    base = _untrained("gru")
    tgt_vocab = Vocabulary(pieces.pieces())
    model = build_model(base.config.model, len(base.src_vocab), len(tgt_vocab)).eval()
    subword = Translator(model, base.src_vocab, tgt_vocab, base.src_tokenizer, pieces, base.config)
    (t,) = subword.translate(["We are happy."], DecodeOptions(beam_size=2), prefix=["Nous sommes"])
    assert t.tokens[: len(pieces.tokenize("Nous sommes"))] == pieces.tokenize("Nous sommes")
    assert t.text.startswith("Nous sommes")


# ---- the likeliest tokens at each position (the explorer's alternatives) ----------------------------


def test_candidates_are_the_likeliest_tokens_given_the_tokens_before(translator):
    (s,) = translator.score(["She loves cats."], ["Elle aime les chats ."], top_k=4)
    src = torch.tensor([translator.src_vocab.encode(s.src_tokens)])
    target = torch.tensor([[Vocabulary.sos_id, *translator.tgt_vocab.encode(s.tokens)]])
    with torch.no_grad():
        logits, _ = translator.model(src, torch.zeros_like(src, dtype=torch.bool), target[:, :-1])
    log_probs = torch.log_softmax(logits.float(), -1)[0]  # (T, V)
    log_probs[:, [Vocabulary.pad_id, Vocabulary.sos_id]] = float("-inf")  # never generated: never offered
    best = log_probs.topk(4, dim=-1)
    assert len(s.candidates) == len(s.tokens)
    for i, candidates in enumerate(s.candidates):
        assert [token for token, _ in candidates] == translator.tgt_vocab.decode(best.indices[i].tolist())
        np.testing.assert_allclose([lp for _, lp in candidates], best.values[i].numpy(), atol=1e-4)
        if s.tokens[i] in dict(candidates):  # the token read there has the same log p as its candidate
            assert dict(candidates)[s.tokens[i]] == pytest.approx(s.log_probs[i], abs=1e-5)
    assert translator.score(["She loves cats."], ["Elle aime les chats ."])[0].candidates == []


def test_a_greedy_translation_takes_the_first_candidate_at_every_position(translator):
    prefix = ["", "Elle", "", ""]
    translations = translator.translate(SENTENCES, DecodeOptions(beam_size=1), prefix=prefix)
    scores = translator.score_translations(translations, top_k=3, batch_size=2)
    for p, t, s in zip(prefix, translations, scores, strict=True):
        assert s.tokens == t.tokens and s.total == pytest.approx(t.score, abs=1e-4)
        chosen = slice(len(tokenize(p)), -1)  # a prefix word is forced, and <eos> may be (out of room)
        assert [c[0][0] for c in s.candidates[chosen]] == t.tokens[chosen]


def test_a_negative_top_k_is_refused_naming_it(translator):
    with pytest.raises(AttnmtError, match="top_k: must be at least 0, got -1"):
        translator.score(["Hi."], ["Salut ."], top_k=-1)


def test_a_model_without_attention_still_offers_candidates():
    torch.manual_seed(0)
    config = Config()
    config.model.attention, config.model.embed_size, config.model.hidden_size = "none", 8, 16
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(toy_pairs())
    model = build_model(config.model, len(src_vocab), len(tgt_vocab)).eval()
    baseline = Translator(model, src_vocab, tgt_vocab, WordTokenizer("en"), WordTokenizer("fr"), config)
    translations = baseline.translate(["We are happy."], DecodeOptions(beam_size=1))
    (s,) = baseline.score_translations(translations, top_k=2)
    assert s.attention is None and len(s.candidates) == len(s.tokens)
    assert [c[0][0] for c in s.candidates[:-1]] == s.tokens[:-1]


@pytest.fixture
def two_threads():
    """torch computes with 2 threads during the test (on any machine), as before afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("beam", [1, 4])
def test_batches_translated_side_by_side_equal_one_batch_at_a_time(translator, beam, two_threads):
    sentences = [f"{s} {'and ' * (i % 5)}{s}" for i, s in enumerate(SENTENCES * 5)]  # varied lengths
    options = DecodeOptions(beam_size=beam, n_best=min(beam, 2))
    side_by_side = translator.translate_n_best(sentences, options, batch_size=3)
    torch.set_num_threads(1)  # one batch after another, on the one thread each batch had above
    one_at_a_time = translator.translate_n_best(sentences, options, batch_size=3)
    for a, b in zip(side_by_side, one_at_a_time, strict=True):
        assert [(t.tokens, t.src_tokens, t.score) for t in a] == [
            (t.tokens, t.src_tokens, t.score) for t in b
        ]
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.attention, y.attention)


def test_each_batch_side_by_side_computes_on_one_thread_and_the_count_comes_back(
    translator, two_threads, monkeypatch
):
    seen, lock = [], threading.Lock()
    real = Translator._translate_tokens

    def spy(self, batch, options, prefixes=None):
        with lock:
            seen.append(torch.get_num_threads())
            fail = len(seen) == 3
        if fail:
            raise AttnmtError("the third batch fails")
        return real(self, batch, options, prefixes)

    monkeypatch.setattr(Translator, "_translate_tokens", spy)
    translator.translate(SENTENCES * 2, DecodeOptions(beam_size=1), batch_size=4)
    assert seen == [1, 1] and torch.get_num_threads() == 2
    with pytest.raises(AttnmtError, match="third batch"):
        translator.translate(SENTENCES * 2, DecodeOptions(beam_size=1), batch_size=4)
    assert torch.get_num_threads() == 2  # back, though a batch failed


def test_batches_side_by_side_keep_the_callers_autocast(translator, two_threads, monkeypatch):
    """Validation translates the dev set under bf16 autocast where the CPU has native bf16."""
    seen = []
    real = Translator._translate_tokens

    def spy(self, batch, options, prefixes=None):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real(self, batch, options, prefixes)

    monkeypatch.setattr(Translator, "_translate_tokens", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        translator.translate(SENTENCES * 2, DecodeOptions(beam_size=1), batch_size=4)
    translator.translate(SENTENCES * 2, DecodeOptions(beam_size=1), batch_size=4)
    assert [enabled for enabled, _ in seen] == [True, True, False, False]
    assert seen[0][1] == torch.bfloat16


def test_batches_side_by_side_start_longest_first(translator, two_threads, monkeypatch):
    """So that the last batches to finish are short and neither core waits long for the other."""
    started, lock = [], threading.Lock()
    real = Translator._translate_tokens

    def spy(self, batch, options, prefixes=None):
        with lock:
            started.append(max(map(len, batch)))
        return real(self, batch, options, prefixes)

    monkeypatch.setattr(Translator, "_translate_tokens", spy)
    sentences = [f"{s} {'and ' * i}{s}" for i, s in enumerate(SENTENCES * 3)]  # lengths grow with i
    translations = translator.translate(sentences, DecodeOptions(beam_size=1), batch_size=2)
    assert sorted(started[:2], reverse=True) == sorted(started, reverse=True)[:2]  # the two longest first
    assert min(started) in started[-2:]
    assert [t.src_tokens[:-1] for t in translations] == [
        translator.src_tokenizer.tokenize(s) for s in sentences
    ]
