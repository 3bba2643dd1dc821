"""Translate as you type: completion of typed text (word and SentencePiece vocabularies, greedy and beam,
GRU and Transformer, int8), the decoded prefixes a keystroke reuses, and the simulated translator."""

import math
import types

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from attnmt.cli import main
from attnmt.completion import Completer, Completion, Spelling, Word
from attnmt.config import Config
from attnmt.corpora import toy_pairs
from attnmt.data import TranslationDataset
from attnmt.device import quantize_int8
from attnmt.model import build_model
from attnmt.server import Limits, create_app
from attnmt.simulate import edit_distance, simulate
from attnmt.tokenization import SubwordTokenizer, WordTokenizer
from attnmt.translator import DecodeOptions, Translator
from attnmt.vocab import Vocabulary

SOURCE = "We are happy."
TYPINGS = ["", "N", "Nous", "Nous ", "Nous so", "Nous sommes ", "Nous sommes heu", "Nous sommes heureux"]


def _untrained(architecture: str, subword: bool = False, seed: int = 0) -> Translator:
    torch.manual_seed(seed)
    config = Config()
    config.model.architecture, config.model.embed_size, config.model.hidden_size = architecture, 16, 32
    config.model.heads, config.model.ff_size = 4, 64
    config.model.layers = 2 if architecture == "transformer" else 1  # one GRU layer: steps in one pass
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(toy_pairs())
    tgt_tokenizer = WordTokenizer("fr")
    if subword:
        tgt_tokenizer = SubwordTokenizer.train([t for _, t in toy_pairs()], vocab_size=400, model_type="bpe")
        tgt_vocab = Vocabulary(tgt_tokenizer.pieces())
    model = build_model(config.model, len(src_vocab), len(tgt_vocab)).eval()
    return Translator(model, src_vocab, tgt_vocab, WordTokenizer("en"), tgt_tokenizer, config)


@pytest.fixture(
    scope="module",
    params=[("gru", False), ("transformer", False), ("gru", True), ("transformer", True)],
    ids=["gru-words", "transformer-words", "gru-pieces", "transformer-pieces"],
)
def translator(request) -> Translator:
    return _untrained(*request.param)


@pytest.mark.parametrize("beam", [1, 3])
def test_the_typed_text_is_kept_and_the_word_being_typed_is_completed(translator, beam):
    completer = Completer(translator)
    for typed in TYPINGS:
        c = completer.complete(SOURCE, typed, DecodeOptions(beam_size=beam))
        assert c.text.startswith(typed) and c.proposal == c.text[len(typed) :]
        assert c.tokens[-1] == "<eos>" and "<unk>" not in c.tokens[len(c.tokens) - len(c.words) :]
        assert len(c.log_probs) == len(c.tokens) and c.attention.shape == (len(c.tokens), len(c.src_tokens))
        if typed and not typed.endswith(" "):  # the last typed word goes on as a word the model writes
            fragment = typed.split()[-1]
            word = c.words[0]
            assert word.start == len(typed) - len(fragment) and word.text.startswith(fragment)
            assert "".join(c.tokens[word.first : word.last]).replace("▁", "").startswith(fragment)
        for word in c.words:
            assert c.text[word.start : word.end] == word.text and " " not in word.text
            assert word.log_prob == pytest.approx(sum(c.log_probs[word.first : word.last]))


def test_words_cover_the_proposal_in_order(translator):
    c = Completer(translator).complete(SOURCE, "Nous so")
    assert " ".join(w.text for w in c.words) == c.text[c.words[0].start :].strip()
    assert [w.first for w in c.words[1:]] == [w.last for w in c.words[:-1]]
    assert c.words[-1].last == len(c.tokens) - 1  # up to <eos>


@pytest.mark.parametrize("typed", ["xyzq", "Nous 😀", "Nous sommes @@", "l'", "12,5"])
def test_a_fragment_no_token_spells_is_kept_and_search_goes_on(translator, typed):
    c = Completer(translator).complete(SOURCE, typed, DecodeOptions(beam_size=2))
    assert c.text.startswith(typed) and c.tokens[-1] == "<eos>"


def test_a_very_long_fragment_is_kept_as_typed_not_spelled(translator, monkeypatch):
    completer, spelled = Completer(translator), []
    spell = completer.spelling.constraint
    monkeypatch.setattr(completer.spelling, "constraint", lambda f: spelled.append(f) or spell(f))
    c = completer.complete(SOURCE, "Nous " + "ab" * 500)  # spelling it would cost its length squared
    assert c.text.startswith("Nous " + "ab" * 500) and spelled == []
    assert completer.complete(SOURCE, "Nous ab").text.startswith("Nous ab") and spelled == ["ab"]


def test_spelling_lets_tokens_split_a_word_only_where_the_tokenizer_would():
    vocab = Vocabulary(["chat", "chats", "s", "l'", "homme", "hommes", "aujourd'hui", "ho"])
    spelling = Spelling(vocab, WordTokenizer("fr"))
    assert spelling.constraint("cha").allowed(0) == [vocab.stoi["chat"], vocab.stoi["chats"]]
    assert spelling.constraint("chats").allowed(0) == [vocab.stoi["chats"]]  # never chat + s
    elided = spelling.constraint("l'h")
    assert elided.allowed(0) == [vocab.stoi["l'"]]
    assert sorted(elided.allowed(2)) == sorted(vocab.stoi[w] for w in ["homme", "hommes", "ho"])
    assert spelling.constraint("aujourd'").allowed(0) == [vocab.stoi["aujourd'hui"]]
    assert spelling.constraint("zz") is None


def test_spelling_with_pieces_starts_a_word_and_may_take_several_pieces():
    vocab = Vocabulary(["▁so", "▁som", "mes", "▁s", "om", "ommes", "s", "▁"])
    pieces = SubwordTokenizer.train([t for _, t in toy_pairs()], vocab_size=400, model_type="bpe")
    spelling = Spelling(vocab, pieces)  # the vocabulary's own pieces, not the model's
    constraint = spelling.constraint("somm")
    first = {vocab.itos[i] for i in constraint.allowed(0)}
    assert first == {"▁som", "▁s", "▁"}  # each can go on to spell "somm"; "s" starts no word, and
    # after "▁so" no token spells "mm"
    assert {vocab.itos[i] for i in constraint.allowed(4)} == {"mes"}  # after "▁som"
    assert constraint.spelled([vocab.stoi["▁som"]]) == 4
    assert constraint.spelled([vocab.stoi["▁som"], vocab.stoi["mes"]]) is None  # the word is spelled


def test_alternatives_are_whole_words_that_begin_with_what_is_kept(translator):
    completer = Completer(translator)
    c = completer.complete(SOURCE, "Nous so")
    for kept in ["", "so", "s"]:
        alternatives = completer.alternatives(SOURCE, c, c.words[0], 5, kept)
        assert 0 < len(alternatives) <= 5 and len({t for t, _ in alternatives}) == len(alternatives)
        for text, log_prob in alternatives:
            assert text.startswith(kept) and not any(ch.isspace() for ch in text) and log_prob < 0
            assert "<unk>" not in text and "<eos>" not in text
    assert completer.alternatives(SOURCE, c, c.words[0], 5, "😀zz") == []  # no word begins so


# ---- what a keystroke reuses ------------------------------------------------------------------------


@pytest.mark.parametrize("beam", [1, pytest.param(3, marks=pytest.mark.slow)])  # beam 3: 8 s in all
def test_reused_states_give_exactly_the_tokens_of_decoding_from_scratch(translator, beam):
    """Prefixes decoded in other passes (drafts, typed text read at once) give the same tokens and
    words; their scores and attention differ from step-by-step decoding by float rounding only."""
    kept, fresh = Completer(translator), Completer(translator, reuse=False)
    options = DecodeOptions(beam_size=beam)
    for typed in [*TYPINGS, "Nous", "", "Nous sommes heureux"]:  # on, back and on again
        a, b = kept.complete(SOURCE, typed, options), fresh.complete(SOURCE, typed, options)
        assert (a.text, a.tokens) == (b.text, b.tokens)
        assert [(w.text, w.start, w.first) for w in a.words] == [(w.text, w.start, w.first) for w in b.words]
        np.testing.assert_allclose(a.log_probs, b.log_probs, rtol=0, atol=1e-5)
        np.testing.assert_allclose(a.attention, b.attention, rtol=0, atol=1e-6)
        for x, y in zip(a.words, b.words, strict=True):
            ours, theirs = kept.alternatives(SOURCE, a, x, 3), fresh.alternatives(SOURCE, b, y, 3)
            assert [t for t, _ in ours] == [t for t, _ in theirs]
            np.testing.assert_allclose([p for _, p in ours], [p for _, p in theirs], rtol=0, atol=1e-5)


class _CountingSteps:
    """Counts the model's encodes and the tokens each decoding pass (``steps``) reads."""

    def __init__(self, translator: Translator, monkeypatch):
        self.reads: list[list[int]] = []
        self.encodes, steps, encode = 0, translator.model.steps, translator.model.encode

        def counted(tokens, state):
            self.reads.append(tokens[0].tolist())
            return steps(tokens, state)

        def counted_encode(*args, **kwargs):
            self.encodes += 1
            return encode(*args, **kwargs)

        monkeypatch.setattr(translator.model, "steps", counted)
        monkeypatch.setattr(translator.model, "encode", counted_encode)

    @property
    def tokens(self) -> int:
        return sum(map(len, self.reads))


def test_typing_along_the_proposal_steps_the_model_no_more(monkeypatch):
    translator = _untrained("transformer")
    counting = _CountingSteps(translator, monkeypatch)
    completer = Completer(translator)
    first = completer.complete(SOURCE, "")
    assert counting.encodes == 1 and counting.tokens == len(first.tokens)  # no draft: nothing before
    tokens = counting.tokens
    for end in range(1, len(first.text) + 1):  # the translator types what was proposed
        assert completer.complete(SOURCE, first.text[:end]).text == first.text
    assert (counting.encodes, counting.tokens) == (1, tokens)  # encoded once; every state reused


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_a_departure_decodes_only_after_the_longest_decoded_prefix(monkeypatch, architecture):
    translator = _untrained(architecture)
    counting = _CountingSteps(translator, monkeypatch)
    completer = Completer(translator)
    first = completer.complete(SOURCE, "")
    passes = len(counting.reads)
    other = completer.complete(SOURCE, first.text[: first.words[1].start] + "zzz ")  # <unk> at token 1
    new = counting.reads[passes:]
    assert new[0][0] == translator.tgt_vocab.encode(other.tokens)[1]  # states before tokens 0, 1 kept
    assert sum(map(len, new)) >= len(other.tokens) - 2  # every later token read (drafts: maybe more)


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_what_the_last_proposal_holds_is_read_as_a_draft_many_tokens_a_pass(monkeypatch, architecture):
    translator = _untrained(architecture)
    counting = _CountingSteps(translator, monkeypatch)
    completer = Completer(translator)
    first = completer.complete(SOURCE, "")
    entry = completer.sources[SOURCE]
    entry.nodes = {(): entry.nodes[()]}  # its states dropped (as a full source drops them), not its text
    passes = len(counting.reads)
    again = completer.complete(SOURCE, "")
    assert again.tokens == first.tokens
    np.testing.assert_allclose(again.log_probs, first.log_probs, rtol=0, atol=1e-5)
    read = len(first.tokens) - 1  # all but <eos>: a token a pass, each with a draft of the 16 after it
    assert read > 17 and len(counting.reads) - passes == math.ceil(read / 17)


def test_sources_and_states_are_bounded_and_expire(monkeypatch):
    translator = _untrained("gru")
    completer = Completer(translator, max_sources=2, max_states=8)
    for source in ["We are happy.", "She loves cats.", "He is tall."]:
        c = completer.complete(source, "")
    assert list(completer.sources) == ["She loves cats.", "He is tall."]  # least recently used out
    assert len(completer.sources["He is tall."].nodes) <= max(8, len(c.tokens))  # or the one path
    assert c.text == Completer(translator, reuse=False).complete("He is tall.", "").text
    now = [1e6]
    monkeypatch.setattr("attnmt.completion.time.monotonic", lambda: now[0])
    completer.complete("He is tall.", "")
    now[0] += completer.ttl + 1
    completer.complete("We are happy.", "")
    assert list(completer.sources) == ["We are happy."]


def test_int8_models_complete_too():
    for architecture in ["gru", "transformer"]:
        translator = _untrained(architecture)
        translator.model = quantize_int8(translator.model)
        c = Completer(translator).complete(SOURCE, "Nous so", DecodeOptions(beam_size=2))
        assert c.text.startswith("Nous so") and c.words[0].text.startswith("so")


def test_an_empty_source_is_refused_in_one_line(translator):
    from attnmt.errors import AttnmtError

    with pytest.raises(AttnmtError, match="source: empty"):
        Completer(translator).complete("  ", "Nous")


# ---- the simulated translator -------------------------------------------------------------------------


class _Scripted:
    """A completer whose proposal for each typed text is written out, alternatives per word text."""

    def __init__(self, proposals: dict[str, str], alternatives: dict[str, list[str]], unassisted: str):
        self.proposals, self.words_alternatives = proposals, alternatives
        self.translator = types.SimpleNamespace(
            translate=lambda sources, options: [types.SimpleNamespace(text=unassisted)]
        )
        self.asked: list[str] = []

    def complete(self, source, typed, options) -> Completion:
        self.asked.append(typed)
        text = self.proposals[typed]
        cut = len(typed) - len(typed.split()[-1]) if typed and not typed[-1].isspace() else len(typed)
        words, position = [], cut
        for word in text[cut:].split():
            start = text.index(word, position)
            words.append(Word(word, start, start + len(word), 0, 0, 0.0))
            position = start + len(word)
        return Completion(text, typed, [], [], [], None, words)

    def alternatives(self, source, completion, word, top_k, kept=""):
        return [(text, -1.0) for text in self.words_alternatives.get(word.text, []) if text.startswith(kept)]


def test_the_simulated_translator_counts_by_hand():
    reference = "le chat noir"  # 12 characters, 3 words
    proposals = {
        "": "le chien noir",  # wrong at 5 ("i" for "a")
        "le cha": "le chat blanc",  # wrong at 8
        "le chat n": "le chat noir",  # right
        "le ": "le chien noir",  # next word: wrong
        "le chat ": "le chat blanc",  # next word: wrong
        "le chat": "le chat noir",  # after taking the alternative "chat"
    }
    typing = _Scripted(proposals, {}, unassisted="le chien noir")
    effort = simulate(typing, "the black cat", reference, DecodeOptions(beam_size=1), top_k=0)
    # "": accept "le ch" (1 mouse action), type "a"; "le cha": accept "t " (1), type "n"; then accept (1)
    assert (effort.keystrokes, effort.mouse_actions, effort.characters) == (2, 3, 12)
    assert typing.asked[:3] == ["", "le cha", "le chat n"]
    assert (effort.words, effort.words_predicted, effort.unedited) == (3, 1, 0)  # "le" right only
    assert effort.edit_distance == 3  # chien → chat: i→a, e→t, delete n
    assert len(effort.latencies) == len(effort.fresh) == 3
    assert effort.causes == ["start", "keystroke", "keystroke"]

    picking = _Scripted(proposals, {"chien": ["chaton", "chat"]}, unassisted="le chien noir")
    effort = simulate(picking, "the black cat", reference, DecodeOptions(beam_size=1), top_k=5)
    # "": click "chien", take "chat" ("chaton" is not the reference's word); "le chat": accept
    assert (effort.keystrokes, effort.mouse_actions) == (0, 2)
    assert picking.asked[:2] == ["", "le chat"] and effort.causes == ["start", "pick"]
    summary = effort.summary()
    assert summary["ksmr"] == pytest.approx(2 / 12) and summary["next_word_accuracy"] == pytest.approx(1 / 3)
    assert math.isnan(summary["keystroke_vs_fresh"])  # no keystroke asked for a proposal
    effort.latencies, effort.fresh = [0.3, 0.1], [0.2, 0.2]
    assert effort.cost_vs_fresh("pick") == pytest.approx(0.5) and effort.cost_vs_fresh(
        "start"
    ) == pytest.approx(1.5)


def test_a_proposal_that_runs_past_the_reference_costs_a_keystroke_to_cut():
    typing = _Scripted({"": "oui merci", "oui ": "oui merci"}, {}, unassisted="oui merci")
    effort = simulate(typing, "yes", "oui", DecodeOptions(beam_size=1), top_k=0)
    assert (effort.keystrokes, effort.mouse_actions, effort.unedited) == (1, 1, 0)


def test_edit_distance():
    assert edit_distance("chien", "chat") == 3
    assert edit_distance("", "abc") == 3 and edit_distance("abc", "abc") == 0


def test_simulate_command_reports_every_measure(tmp_path, capsys):
    model = tmp_path / "toy"
    tiny = ["--set", "model.embed_size=16", "--set", "model.hidden_size=32", "--set", "train.epochs=2"]
    assert main(["train", "--model-dir", str(model), *tiny, "--quiet"]) == 0
    out = tmp_path / "sim.json"
    assert main(["simulate", str(model), "--data", "toy", "--limit", "4", "--json", str(out)]) == 0
    import json

    results = json.loads(out.read_text())["toy"]
    assert results["sentences"] == 4
    assert results["ksmr"] == pytest.approx(results["keystroke_ratio"] + results["mouse_action_ratio"])
    assert 0 <= results["next_word_accuracy"] <= 1 and results["latency_p95_ms"] > 0
    assert results["keystroke_vs_fresh"] > 0 or math.isnan(results["keystroke_vs_fresh"])
    assert "toy  4  " in capsys.readouterr().out


# ---- over HTTP ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app({"toy": _untrained("gru")}, Limits(max_chars=50))) as client:
        yield client


def test_complete_over_http_gives_the_python_completion(client):
    translator = _untrained("gru")
    expected = Completer(translator).complete(SOURCE, "Nous so", DecodeOptions(beam_size=2))
    body = {"source": SOURCE, "typed": "Nous so", "beam": 2, "top_k": 3, "attention": True}
    answer = client.post("/complete", json=body).json()
    assert answer["text"] == expected.text and answer["proposal"] == expected.proposal
    assert answer["tokens"] == expected.tokens and len(answer["attention"]) == len(expected.tokens)
    word = answer["words"][0]
    assert word["text"] == expected.words[0].text
    for alternative in word["alternatives"]:
        assert alternative["typed"] == "Nous " + alternative["text"]


def test_alternatives_can_be_asked_for_one_word_only(client):
    body = {"source": SOURCE, "typed": "Nous ", "top_k": 3, "word": 1}
    words = client.post("/complete", json=body).json()["words"]
    assert ["alternatives" in w for w in words] == [i == 1 for i in range(len(words))]
    assert words[1]["alternatives"] and all(a["typed"].startswith("Nous ") for a in words[1]["alternatives"])


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"source": " ", "typed": ""}, 422, "source: empty"),
        ({"source": SOURCE, "typed": "x" * 51}, 413, "typed: 51 characters, the limit is 50"),
        ({"source": "x" * 51, "typed": ""}, 413, "source: 51 characters"),
        ({"source": SOURCE, "typed": "", "model": "nope"}, 404, "model 'nope' is not loaded"),
        ({"source": SOURCE, "typed": "", "beam": 0}, 422, "beam: must be between 1 and 16"),
        ({"source": SOURCE, "typed": "", "top_k": 99}, 422, "top_k: must be between 0 and 20"),
        ({"source": SOURCE}, 422, "typed: Field required"),
    ],
)
def test_bad_completion_requests_get_clear_errors_and_the_server_keeps_answering(
    client, body, status, message
):
    answer = client.post("/complete", json=body)
    assert answer.status_code == status and message in answer.json()["error"]["message"]
    assert client.post("/complete", json={"source": SOURCE, "typed": "Nous 😀 zz"}).status_code == 200
    assert client.post("/translate", json={"sentences": [SOURCE]}).status_code == 200
