import random
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnmt.corpora import read_tsv, toy_pairs
from attnmt.data import TranslationDataset, bucketed_batches, collate, pad_mask, plan_batches
from attnmt.errors import AttnmtError
from attnmt.tokenization import tokenize
from attnmt.vocab import Vocabulary


def test_toy_set_size():
    assert 300 <= len(toy_pairs()) <= 1000


def test_toy_set_does_not_contain_the_demo_sentence():
    """The demo translates "We are happy" as a new sentence: it must not be in the training data."""
    for english, _ in toy_pairs():
        words = [t.lower() for t in tokenize(english) if t[0].isalnum()]
        assert words != ["we", "are", "happy"], english


def test_toy_set_contains_the_pieces_of_the_demo_sentence():
    english = [en for en, _ in toy_pairs()]
    assert any(s.startswith("We are ") for s in english)
    assert any(s.endswith(" are happy.") for s in english)


def test_toy_pairs_reversed_direction_swaps_sides():
    assert toy_pairs("fr", "en") == [(fr, en) for en, fr in toy_pairs("en", "fr")]


@pytest.mark.parametrize(("src_lang", "tgt_lang"), [("en", "de"), ("fr", "fr"), ("de", "fr")])
def test_toy_pairs_rejects_other_languages(src_lang, tgt_lang):
    with pytest.raises(AttnmtError):
        toy_pairs(src_lang, tgt_lang)


@pytest.mark.parametrize(("src_lang", "tgt_lang"), [("en", "fr"), ("fr", "en")])
def test_dataset_framing(src_lang, tgt_lang):
    pairs = toy_pairs(src_lang, tgt_lang)
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(pairs)
    dataset = TranslationDataset(pairs, src_vocab, tgt_vocab, src_lang=src_lang, tgt_lang=tgt_lang)
    assert len(dataset) == len(pairs)
    for i, (source, target) in enumerate(pairs):
        src_ids, tgt_ids = dataset[i]
        assert src_ids[-1] == Vocabulary.eos_id
        assert tgt_ids[0] == Vocabulary.sos_id
        assert tgt_ids[-1] == Vocabulary.eos_id
        assert src_vocab.decode(src_ids[:-1]) == tokenize(source)
        assert tgt_vocab.decode(tgt_ids[1:-1]) == tokenize(target)


def test_dataset_maps_unseen_tokens_to_unk():
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs([("a cat", "un chat")])
    dataset = TranslationDataset([("a dog", "un chien")], src_vocab, tgt_vocab)
    src_ids, tgt_ids = dataset[0]
    assert src_ids == [src_vocab.stoi["a"], Vocabulary.unk_id, Vocabulary.eos_id]
    assert tgt_ids == [Vocabulary.sos_id, tgt_vocab.stoi["un"], Vocabulary.unk_id, Vocabulary.eos_id]


def test_pad_mask_is_true_exactly_at_padding():
    mask = pad_mask(torch.tensor([3, 1, 4]))
    expected = torch.tensor(
        [
            [False, False, False, True],
            [False, True, True, True],
            [False, False, False, False],
        ]
    )
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=8), extra=st.integers(0, 3))
def test_pad_mask_counts_padding(lengths, extra):
    max_len = max(lengths) + extra
    mask = pad_mask(torch.tensor(lengths), max_len)
    assert mask.shape == (len(lengths), max_len)
    for row, length in zip(mask.tolist(), lengths, strict=True):
        assert row == [False] * length + [True] * (max_len - length)


def _dataset(pairs):
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(pairs)
    return TranslationDataset(pairs, src_vocab, tgt_vocab)


def test_collate_shifts_target_and_pads_with_zero():
    """tgt_in is <sos> w1 … wm and tgt_out is w1 … wm <eos>, each right-padded with <pad> = 0."""
    dataset = _dataset([("a b c", "w x y z"), ("a", "w"), ("b c", "x y")])
    indices = [0, 1, 2]
    batch = collate(dataset, indices)
    width = max(len(dataset.tgt_ids[i]) for i in indices) - 1
    for row, i in enumerate(indices):
        target = dataset.tgt_ids[i]
        assert batch.tgt_in[row].tolist() == target[:-1] + [0] * (width - len(target) + 1)
        assert batch.tgt_out[row].tolist() == target[1:] + [0] * (width - len(target) + 1)
    assert batch.indices == indices


def test_collate_pads_source_and_marks_padding():
    dataset = _dataset([("a b c", "w"), ("a", "w x")])
    batch = collate(dataset, [1, 0])
    assert batch.src.tolist() == [dataset.src_ids[1] + [0, 0], dataset.src_ids[0]]
    assert batch.src_pad_mask.tolist() == [[False, False, True, True], [False] * 4]
    assert batch.num_tokens == len(dataset.tgt_ids[1]) - 1 + len(dataset.tgt_ids[0]) - 1


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30)), min_size=1, max_size=200),
    batch_size=st.integers(1, 80),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_bucketed_batches_cover_every_index_once(lengths, batch_size, shuffle, seed):
    batches = bucketed_batches(lengths, batch_size, shuffle=shuffle, seed=seed)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:  # padded size within budget, unless one example alone exceeds it
        padded = len(batch) * (max(lengths[i][0] for i in batch) + max(lengths[i][1] for i in batch))
        assert padded <= batch_size or len(batch) == 1


@pytest.mark.parametrize("shuffle", [False, True])
def test_bucketed_batches_of_nothing_is_empty(shuffle):
    assert bucketed_batches([], 8, shuffle=shuffle) == []


def _lengths(n=3000):
    return [((i * 7919) % 23 + 1, (i * 104729) % 19 + 1) for i in range(n)]


def test_bucketed_batches_same_seed_same_batches():
    lengths = _lengths()
    assert bucketed_batches(lengths, 64, shuffle=True, seed=5) == bucketed_batches(
        lengths, 64, shuffle=True, seed=5
    )


def test_bucketed_batches_different_seed_different_order():
    lengths = _lengths()
    assert bucketed_batches(lengths, 64, shuffle=True, seed=1) != bucketed_batches(
        lengths, 64, shuffle=True, seed=2
    )


def test_bucketed_batches_unshuffled_are_sorted_by_length():
    lengths = _lengths(500)
    batches = bucketed_batches(lengths, 64, shuffle=False)
    flat = [(sum(lengths[i]), lengths[i][0]) for batch in batches for i in batch]
    assert flat == sorted(flat)
    assert bucketed_batches(lengths, 64, shuffle=False, seed=1) == batches


def test_bucketed_batches_shuffled_keep_lengths_close():
    """Shuffled batches still come from sorted pools, so both sides waste little on padding."""
    lengths = _lengths()
    batches = bucketed_batches(lengths, 256, shuffle=True, seed=3)
    for side in (0, 1):
        real = sum(lengths[i][side] for b in batches for i in b)
        padded = sum(len(b) * max(lengths[i][side] for i in b) for b in batches)
        assert real / padded > 0.9


def test_read_tsv_good_file(tmp_path):
    path = tmp_path / "good.tsv"
    path.write_bytes("I am happy.\tJe suis heureux.\r\nL'été.\tThe summer.\n".encode())
    assert read_tsv(path) == [("I am happy.", "Je suis heureux."), ("L'été.", "The summer.")]


@pytest.mark.parametrize(
    ("content", "line"),
    [
        pytest.param(b"a\tb\nno tab here\nc\td\n", 2, id="no-tab"),
        pytest.param(b"a\tb\nc\td\te\tf\n", 2, id="three-tabs"),
        pytest.param(b"a\tb\nc\t\n", 2, id="empty-target"),
        pytest.param(b"\tb\n", 1, id="empty-source"),
        pytest.param(b"a\tb\n   \t x\n", 2, id="blank-source"),
        pytest.param(b"a\tb\n\n", 2, id="empty-line"),
        pytest.param(b"a\tb\nc\td\n\xff\xfe\tx\n", 3, id="invalid-utf8"),
    ],
)
def test_read_tsv_errors_name_file_and_line(tmp_path, content, line):
    path = tmp_path / "corpus.tsv"
    path.write_bytes(content)
    with pytest.raises(AttnmtError, match=re.escape(f"corpus.tsv:{line}:")):
        read_tsv(path)


def test_read_tsv_invalid_utf8_message(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"a\tb\nc\td\nd\xe9j\xe0\tx\n")
    with pytest.raises(AttnmtError, match=re.escape("bad.tsv:3:")) as info:
        read_tsv(path)
    assert "UTF-8" in str(info.value)


def test_read_tsv_missing_file(tmp_path):
    with pytest.raises(AttnmtError, match=re.escape("nowhere.tsv")):
        read_tsv(tmp_path / "nowhere.tsv")


def _list_bucketed_batches(lengths, batch_tokens, *, shuffle, seed=0):
    """attnmt's batching before plans from arrays (lists of lists), kept as the oracle: runs resumed or
    reproduced across versions must see the very same batches."""
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    shortest = min((s + t for s, t in lengths), default=1)
    pool = max(1, 50 * batch_tokens // max(1, shortest)) if shuffle else max(1, len(order))
    batches = []
    for start in range(0, len(order), pool):
        batch, longest_src, longest_tgt = [], 0, 0
        for i in sorted(order[start : start + pool], key=lambda i: (sum(lengths[i]), lengths[i][0])):
            src, tgt = max(longest_src, lengths[i][0]), max(longest_tgt, lengths[i][1])
            if batch and (len(batch) + 1) * (src + tgt) > batch_tokens:
                batches.append(batch)
                batch, (src, tgt) = [], lengths[i]
            batch.append(i)
            longest_src, longest_tgt = src, tgt
        if batch:
            batches.append(batch)
    if shuffle:
        rng.shuffle(batches)
    return batches


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60)), max_size=400),
    batch_tokens=st.integers(1, 300),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**40),
)
def test_plans_from_arrays_give_the_batches_of_the_list_algorithm(lengths, batch_tokens, shuffle, seed):
    src = np.array([s for s, _ in lengths], dtype=np.int64)
    tgt = np.array([t for _, t in lengths], dtype=np.int64)
    plan = plan_batches(src, tgt, batch_tokens, shuffle=shuffle, seed=seed)
    expected = _list_bucketed_batches(lengths, batch_tokens, shuffle=shuffle, seed=seed)
    assert plan.as_lists() == expected
    assert bucketed_batches(lengths, batch_tokens, shuffle=shuffle, seed=seed) == expected


def test_a_plan_is_two_arrays_not_a_list_per_batch():
    rng = np.random.default_rng(0)
    src, tgt = rng.integers(1, 40, 20_000), rng.integers(1, 40, 20_000)
    plan = plan_batches(src, tgt, 2000, shuffle=True, seed=7)
    assert plan.indices.dtype.itemsize <= 4 and plan.offsets.dtype == np.int64  # 4 bytes an example
    assert sorted(plan.indices.tolist()) == list(range(20_000))
    assert plan.offsets[0] == 0 and plan.offsets[-1] == 20_000 and len(plan) == len(plan.offsets) - 1
    assert plan[3].tolist() == plan.indices[plan.offsets[3] : plan.offsets[4]].tolist()
