import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from attnmt.corpora import toy_pairs
from attnmt.tokenization import detokenize, tokenize


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("J'aime l'école, qu'il pleuve !", ["J'", "aime", "l'", "école", ",", "qu'", "il", "pleuve", "!"]),
        ("Jusqu'à demain, c'est ça.", ["Jusqu'", "à", "demain", ",", "c'", "est", "ça", "."]),
        ("L’homme qu’on aime", ["L’", "homme", "qu’", "on", "aime"]),
        ("Lorsqu'il pleut, puisqu'il faut", ["Lorsqu'", "il", "pleut", ",", "puisqu'", "il", "faut"]),
        ("Aujourd'hui, il fait beau.", ["Aujourd'hui", ",", "il", "fait", "beau", "."]),
        ("aujourd'hui", ["aujourd'hui"]),
        ("I don't know.", ["I", "don't", "know", "."]),
        ("Est-ce peut-être vrai ?", ["Est-ce", "peut-être", "vrai", "?"]),
        (
            "Hello, World! Why? Yes: no; (ok).",
            ["Hello", ",", "World", "!", "Why", "?", "Yes", ":", "no", ";", "(", "ok", ")", "."],
        ),
        ("It costs 3.5 euros, or 1,5 here.", ["It", "costs", "3.5", "euros", ",", "or", "1,5", "here", "."]),
        ("PARIS Paris paris", ["PARIS", "Paris", "paris"]),
        ("", []),
        ("  \t\n ", []),
    ],
)
def test_tokenize_examples(text, tokens):
    assert tokenize(text) == tokens


def test_tokenize_normalises_to_nfc():
    decomposed = "e\u0301cole"  # e + combining acute accent
    assert tokenize(decomposed) == ["\u00e9cole"]


@pytest.mark.parametrize(
    ("tokens", "en", "fr"),
    [
        (["J'", "aime", "l'", "école", "."], "J'aime l'école.", "J'aime l'école."),
        (["Jusqu'", "à", "demain", "!"], "Jusqu'à demain!", "Jusqu'à demain !"),
        (["Qu'", "est-ce", "que", "c'", "est", "?"], "Qu'est-ce que c'est?", "Qu'est-ce que c'est ?"),
        (["Note", ":", "oui", ";", "non", "."], "Note: oui; non.", "Note : oui ; non."),
        (["Il", "a", "3.5", "ans", ",", "non", "?"], "Il a 3.5 ans, non?", "Il a 3.5 ans, non ?"),
        (["(", "entre", "parenthèses", ")"], "(entre parenthèses)", "(entre parenthèses)"),
    ],
)
def test_detokenize_spacing_by_language(tokens, en, fr):
    assert detokenize(tokens, "en") == en
    assert detokenize(tokens, "fr") == fr


def test_detokenize_default_language_is_english():
    assert detokenize(["Why", "?"]) == "Why?"


_FRAGMENTS = ["l'", "L’", "qu'", "Jusqu'", "c'", "d’", "a", "il", "Été", "aujourd'hui", "don't", "peut-être",
              "3", "3.5", "1,5", "'", "’", "-", "_", " ", ".", ",", "!", "?", ":", ";", '"', "(", ")", "«", "»", "…"]  # fmt: skip
_BIASED_TEXT = st.lists(st.sampled_from(_FRAGMENTS) | st.characters(), max_size=12).map("".join)


@pytest.mark.parametrize("lang", ["en", "fr"])
@settings(max_examples=300, deadline=None)
@given(text=st.text() | _BIASED_TEXT)
@example(text="'l'a")  # a word that merely looks like clitic + word
@example(text="1.5l'a")
def test_tokenize_detokenize_tokenize_is_stable(text, lang):
    """The module's promise: detokenized text tokenizes back to the same tokens, whatever the input."""
    tokens = tokenize(text)
    assert tokenize(detokenize(tokens, lang)) == tokens


@pytest.mark.parametrize(("src_lang", "tgt_lang"), [("en", "fr"), ("fr", "en")])
def test_toy_pairs_detokenize_to_original_text(src_lang, tgt_lang):
    for source, target in toy_pairs(src_lang, tgt_lang):
        assert detokenize(tokenize(source), src_lang) == source
        assert detokenize(tokenize(target), tgt_lang) == target
