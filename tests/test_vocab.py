import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnmt.errors import AttnmtError
from attnmt.vocab import Vocabulary

SPECIALS = ["<pad>", "<unk>", "<sos>", "<eos>"]


def test_specials_come_first_in_fixed_order():
    vocab = Vocabulary(["b", "a"])
    assert vocab.itos[:4] == SPECIALS
    assert [vocab.stoi[s] for s in SPECIALS] == [0, 1, 2, 3]
    assert (vocab.pad_id, vocab.unk_id, vocab.sos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert vocab.itos[4:] == ["b", "a"]
    assert len(vocab) == 6


def test_specials_in_the_token_list_are_not_duplicated():
    vocab = Vocabulary(["<eos>", "x", "<pad>"])
    assert vocab.itos == [*SPECIALS, "x"]


def test_build_orders_by_frequency_then_alphabetically():
    sentences = [["b", "a", "c"], ["c", "a"], ["c", "d"]]
    vocab = Vocabulary.build(sentences)
    assert vocab.itos[4:] == ["c", "a", "b", "d"]


@pytest.mark.parametrize(
    ("min_freq", "max_size", "expected"),
    [
        (1, None, ["the", "cat", "dog", "a", "mat", "sat"]),
        (2, None, ["the", "cat", "dog"]),
        (3, None, ["the"]),
        (5, None, []),
        (1, 2, ["the", "cat"]),
        (1, 4, ["the", "cat", "dog", "a"]),
        (2, 10, ["the", "cat", "dog"]),
        (1, 0, []),
    ],
)
def test_build_honours_min_freq_and_max_size(min_freq, max_size, expected):
    sentences = [["the", "cat", "sat"], ["the", "dog"], ["the", "cat", "dog", "a", "mat"]]
    vocab = Vocabulary.build(sentences, min_freq=min_freq, max_size=max_size)
    assert vocab.itos == SPECIALS + expected
    counts = Counter(token for sentence in sentences for token in sentence)  # what prepare counts
    assert Vocabulary.from_counts(counts, min_freq=min_freq, max_size=max_size).itos == vocab.itos


def test_build_is_deterministic_whatever_the_input_order():
    sentences = [["z", "y", "x", "w"], ["x", "w"], ["v"]]
    first = Vocabulary.build(sentences, max_size=3)
    second = Vocabulary.build([list(reversed(s)) for s in reversed(sentences)], max_size=3)
    assert first.itos == second.itos == [*SPECIALS, "w", "x", "v"]


def test_unknown_token_encodes_to_unk():
    vocab = Vocabulary(["hello"])
    assert vocab.encode(["hello", "world", ""]) == [4, vocab.unk_id, vocab.unk_id]
    assert "world" not in vocab
    assert "hello" in vocab


_TOKENS = st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=30)


@settings(max_examples=100, deadline=None)
@given(tokens=_TOKENS, data=st.data())
def test_encode_decode_round_trip(tokens, data):
    vocab = Vocabulary(tokens)
    known = vocab.itos[4:]
    sentence = data.draw(st.lists(st.sampled_from(known), max_size=20)) if known else []
    ids = vocab.encode(sentence)
    assert all(4 <= i < len(vocab) for i in ids)
    assert vocab.decode(ids) == sentence


@settings(max_examples=50, deadline=None)
@given(tokens=st.lists(st.text(), unique=True, max_size=30))
def test_save_load_round_trip(tokens):
    vocab = Vocabulary(tokens)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vocab.json"
        vocab.save(path)
        loaded = Vocabulary.load(path)
    assert loaded.itos == vocab.itos
    assert loaded.stoi == vocab.stoi


def test_save_writes_no_temporary_files(tmp_path):
    Vocabulary(["a", "b"]).save(tmp_path / "vocab.json")
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(None, id="missing"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"words": ["<pad>", "<unk>", "<sos>", "<eos>"]}', id="no-tokens-key"),
        pytest.param(b'["<pad>", "<unk>", "<sos>", "<eos>"]', id="json-list"),
        pytest.param(b'{"tokens": "<pad> <unk> <sos> <eos>"}', id="tokens-not-a-list"),
        pytest.param(b'{"tokens": ["<pad>", "<unk>", "<sos>", "<eos>", 5]}', id="non-string-token"),
        pytest.param(b'{"tokens": ["a", "b"]}', id="no-specials"),
        pytest.param(b'{"tokens": ["<unk>", "<pad>", "<sos>", "<eos>", "a"]}', id="specials-out-of-order"),
        pytest.param(b'{"tokens": ["<pad>", "<unk>", "<sos>"]}', id="specials-incomplete"),
        pytest.param(b'{"tokens": ["<pad>", "<unk>", "<sos>", "<eos>", "a", "a"]}', id="duplicate-token"),
        pytest.param(b'{"tokens": ["<pad>", "<unk>", "<sos>", "<eos>", "<pad>"]}', id="duplicate-special"),
    ],
)
def test_load_errors_name_the_file(tmp_path, content):
    path = tmp_path / "my_vocab.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AttnmtError, match=re.escape("my_vocab.json")):
        Vocabulary.load(path)


def test_saved_file_is_json_with_tokens(tmp_path):
    """Other tools read the vocabulary file: it is plain JSON with the id-ordered token list."""
    path = tmp_path / "vocab.json"
    Vocabulary(["été", "a"]).save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"tokens": [*SPECIALS, "été", "a"]}
