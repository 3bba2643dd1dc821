import numpy as np

from attnmt.alignment import hard_alignment, pharaoh, replace_unknowns

# target rows: "chat", "<unk>", "<eos>"; source columns: "the", "cat", "Felix", "<eos>"
WEIGHTS = np.array(
    [
        [0.2, 0.7, 0.05, 0.05],
        [0.1, 0.3, 0.4, 0.2],
        [0.0, 0.0, 0.1, 0.9],
    ]
)
SRC = ["the", "cat", "Felix", "<eos>"]
TGT = ["chat", "<unk>", "<eos>"]


def test_argmax_alignment_links_each_target_word_to_one_source_word():
    assert hard_alignment(WEIGHTS) == [(1, 0), (2, 1)]
    assert pharaoh(hard_alignment(WEIGHTS)) == "1-0 2-1"


def test_thresholded_alignment_keeps_every_strong_link_and_never_eos():
    assert pharaoh(hard_alignment(WEIGHTS, threshold=0.3)) == "1-0 1-1 2-1"
    assert hard_alignment(WEIGHTS, threshold=0.95) == []


def test_unknown_words_become_the_most_attended_source_word():
    assert replace_unknowns(TGT, SRC, WEIGHTS) == ["chat", "Felix", "<eos>"]
    assert replace_unknowns(TGT, SRC, WEIGHTS, {"Felix": "Félix"}) == ["chat", "Félix", "<eos>"]


def test_the_source_eos_is_never_copied():
    weights = np.array([[0.3, 0.7], [0.0, 1.0]])  # <unk> attends mostly to <eos>
    assert replace_unknowns(["<unk>", "<eos>"], ["Paris", "<eos>"], weights) == ["Paris", "<eos>"]
