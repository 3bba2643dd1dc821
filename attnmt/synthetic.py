"""Synthetic data.  A task where length matters: reverse a random sequence of symbols.  Every output
word depends on one input word far away, so a single fixed context vector must hold the whole sequence,
while attention can look the word up (Bahdanau et al. 2015 make the same argument).

And a parallel corpus of any size (:func:`synthetic_pairs`), varied so that cleaning keeps it, for
measuring how preparing and training scale with the corpus (``bench/scale.py``).
"""

import gzip
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

SYMBOLS = tuple(chr(ord("a") + i) for i in range(20))


def reversal_pairs(n: int, seed: int, min_len: int = 5, max_len: int = 20) -> list[tuple[str, str]]:
    """``n`` random sequences of ``min_len``–``max_len`` symbols (uniform length), each with its reversal."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        tokens = [rng.choice(SYMBOLS) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((" ".join(tokens), " ".join(reversed(tokens))))
    return pairs


# -- a synthetic parallel corpus of any size, for the scale benchmark and the memory tests -------------

VOCABULARY = 30_000  # word types per language


def _words(rng: np.random.Generator, consonants: str, vowels: list[str]) -> list[str]:
    """``VOCABULARY`` distinct pseudo-words of 1–4 syllables."""
    syllables = [c + v for c in consonants for v in vowels]
    words: dict[str, None] = {}
    while len(words) < VOCABULARY:
        parts = rng.integers(0, len(syllables), size=(VOCABULARY, 4))
        sizes = rng.integers(1, 5, size=VOCABULARY)
        for row, size in zip(parts.tolist(), sizes.tolist(), strict=True):
            words["".join(syllables[p] for p in row[:size])] = None
    return list(words)[:VOCABULARY]


def synthetic_pairs(n: int, seed: int = 0, *, chunk: int = 50_000) -> Iterator[tuple[str, str]]:
    """``n`` varied (source, target) pairs, a pure function of ``seed``: Zipf-distributed pseudo-words,
    3–40 words a sentence (mean about 9), the target a word-for-word mapping with the last two words
    swapped in half the sentences and its own punctuation.  Duplicates are rare (short sentences of
    frequent words), as in real corpora."""
    rng = np.random.default_rng(seed)
    english = _words(np.random.default_rng(1), "bcdfghklmnprstvwz", ["a", "e", "i", "o", "u", "ou", "ai"])
    french = _words(np.random.default_rng(2), "bcdfjlmnprstvz", ["a", "e", "é", "i", "o", "u", "eau", "è"])
    marks = [(".", "."), ("?", " ?"), ("!", " !")]
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        lengths = np.clip(3 + rng.poisson(6, size), 3, 40)
        ids = ((rng.zipf(1.3, int(lengths.sum())) - 1) % VOCABULARY).tolist()
        mark_of = rng.integers(0, 3, size).tolist()
        ends = np.cumsum(lengths).tolist()
        begin = 0
        for end, mark in zip(ends, mark_of, strict=True):
            sentence = ids[begin:end]
            begin = end
            target = [french[i] for i in sentence]
            if sentence[0] % 2:
                target[-1], target[-2] = target[-2], target[-1]
            en, fr = marks[mark]
            yield " ".join(english[i] for i in sentence).capitalize() + en, " ".join(target).capitalize() + fr


def write_synthetic_tsv(path: Path, n: int, seed: int = 0) -> Path:
    """:func:`synthetic_pairs` as a gzipped ``source<TAB>target`` file (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
        for src, tgt in synthetic_pairs(n, seed):
            f.write(f"{src}\t{tgt}\n")
    tmp.replace(path)
    return path
