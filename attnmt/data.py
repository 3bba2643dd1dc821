"""Step 1, data preparation: sentence pairs → token ids → padded, length-bucketed batches.

Mask convention, used everywhere in attnmt: ``src_pad_mask`` is a bool tensor (B, S) that is True
where the source position is padding.  It is built only by :func:`pad_mask`.
"""

import array
import random
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from attnmt.corpora import Pair
from attnmt.preprocess import count_tokens, encode_pair, word_vocabularies
from attnmt.tokenization import Tokenizer, WordTokenizer
from attnmt.vocab import Vocabulary


class EncodedPairs(Protocol):
    """What batching and training read from a dataset: a :class:`TranslationDataset`, or the
    memory-mapped ``attnmt.prepared.PreparedDataset``."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        """Pair ``i``'s (source ids, target ids)."""

    def length_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) ids per pair, as two integer arrays."""


class TranslationDataset(torch.utils.data.Dataset):
    """Sentence pairs as token ids: source ``w1 … wn <eos>``, target ``<sos> w1 … wm <eos>``."""

    def __init__(
        self,
        pairs: list[Pair],
        src_vocab: Vocabulary,
        tgt_vocab: Vocabulary,
        *,
        src_lang: str = "en",
        tgt_lang: str = "fr",
        src_tokenizer: Tokenizer | None = None,
        tgt_tokenizer: Tokenizer | None = None,
    ):
        """Tokenizers default to the word tokenizer of each language."""
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.src_tokenizer = src_tokenizer or WordTokenizer(src_lang)
        self.tgt_tokenizer = tgt_tokenizer or WordTokenizer(tgt_lang)
        self.pairs = pairs
        tokenizers = self.src_tokenizer, self.tgt_tokenizer, src_vocab, tgt_vocab
        encoded = [encode_pair(pair, tokenizers) for pair in pairs]
        self.src_ids = [s for s, _ in encoded]
        self.tgt_ids = [t for _, t in encoded]

    @staticmethod
    def build_vocabs(
        pairs: list[Pair],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        src_tokenizer: Tokenizer | None = None,
        tgt_tokenizer: Tokenizer | None = None,
        joint: bool = False,
    ) -> tuple[Vocabulary, Vocabulary]:
        """Source and target vocabularies of the tokenized pairs; with ``joint``, one shared by both."""
        counts = count_tokens(
            pairs, src_tokenizer or WordTokenizer("en"), tgt_tokenizer or WordTokenizer("fr")
        )
        return word_vocabularies(counts, min_freq=min_freq, max_size=max_size, joint=joint)

    def __len__(self) -> int:
        return len(self.pairs)

    def lengths(self) -> list[tuple[int, int]]:
        """(source, target) ids per pair: the sizes batching counts."""
        return [(len(s), len(t)) for s, t in zip(self.src_ids, self.tgt_ids, strict=True)]

    def length_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) ids per pair as two int64 arrays: what batch planning reads."""
        return (
            np.fromiter(map(len, self.src_ids), dtype=np.int64, count=len(self.src_ids)),
            np.fromiter(map(len, self.tgt_ids), dtype=np.int64, count=len(self.tgt_ids)),
        )

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.src_ids[i], self.tgt_ids[i]


@dataclass
class Batch:
    """A padded batch.  ``tgt_in`` is the decoder input (``<sos> w1 … wm``), ``tgt_out`` what it must
    predict (``w1 … wm <eos>``)."""

    src: Tensor  # (B, S) token ids
    src_pad_mask: Tensor  # (B, S) True = padding
    tgt_in: Tensor  # (B, T)
    tgt_out: Tensor  # (B, T), padded with Vocabulary.pad_id
    indices: list[int]  # dataset positions of the rows

    @property
    def num_tokens(self) -> int:
        return int((self.tgt_out != Vocabulary.pad_id).sum())

    def to(self, device: torch.device) -> "Batch":
        return Batch(
            self.src.to(device),
            self.src_pad_mask.to(device),
            self.tgt_in.to(device),
            self.tgt_out.to(device),
            self.indices,
        )


def pad_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(B,) lengths → (B, max_len) bool mask, True at padding positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def pad(sequences: list[list[int]]) -> tuple[Tensor, Tensor]:
    """Right-pad id lists with ``<pad>``: returns ids (B, L) and the padding mask (B, L)."""
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.full((len(sequences), int(lengths.max())), Vocabulary.pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return ids, pad_mask(lengths)


def collate(dataset: EncodedPairs, indices: list[int]) -> Batch:
    """The batch of ``dataset``'s rows at ``indices``."""
    rows = [dataset[i] for i in indices]
    src, src_pad_mask = pad([s for s, _ in rows])
    tgt_in, _ = pad([t[:-1] for _, t in rows])
    tgt_out, _ = pad([t[1:] for _, t in rows])
    return Batch(src, src_pad_mask, tgt_in, tgt_out, indices)


@dataclass(frozen=True)
class BatchPlan:
    """An epoch's batches, compactly: batch ``b`` is ``indices[offsets[b]:offsets[b + 1]]``."""

    indices: np.ndarray  # (N,) example indices, batch after batch (C int: int32 on every usual platform)
    offsets: np.ndarray  # (batches + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, b: int) -> np.ndarray:
        return self.indices[self.offsets[b] : self.offsets[b + 1]]

    def as_lists(self) -> list[list[int]]:
        return [self[b].tolist() for b in range(len(self))]


def plan_batches(
    src_lengths: np.ndarray, tgt_lengths: np.ndarray, batch_tokens: int, *, shuffle: bool, seed: int = 0
) -> BatchPlan:
    """:func:`bucketed_batches` from two length arrays, as a :class:`BatchPlan`: the same batches, with
    no Python object per example (the shuffles run on ``array`` buffers, the sorts in numpy)."""
    src, tgt = np.asarray(src_lengths), np.asarray(tgt_lengths)
    n = len(src)
    rng = random.Random(seed)
    if n > np.iinfo(np.intc).max:
        raise ValueError(f"{n:,} examples: more than a C int indexes")
    order = array.array("i", bytes(np.dtype(np.intc).itemsize * n))  # 4 bytes an example, not 8
    np.frombuffer(order, dtype=np.intc)[:] = np.arange(n)
    if shuffle:
        rng.shuffle(order)  # the very draws random.shuffle makes on a list: the batches of before
    shortest = int((src + tgt).min()) if n else 1
    pool = max(1, 50 * batch_tokens // max(1, shortest)) if shuffle else max(1, n)
    width = int(src.max(initial=0)) + 1  # (total, source) sorts as total × width + source
    indices, starts = np.empty(n, dtype=np.intc), []
    for begin in range(0, n, pool):
        chunk = np.frombuffer(order, dtype=np.intc)[begin : begin + pool]
        s, t = src[chunk].astype(np.int64), tgt[chunk].astype(np.int64)
        by_length = np.argsort((s + t) * width + s, kind="stable")  # stable, as sorted() is
        indices[begin : begin + len(chunk)] = chunk[by_length]
        starts += [begin + k for k in _cut(s[by_length].tolist(), t[by_length].tolist(), batch_tokens)]
    del order
    sizes = np.diff(np.array([*starts, n], dtype=np.int64)).tolist()
    batches = list(zip(starts, sizes, strict=True))
    if shuffle:
        rng.shuffle(batches)
        indices = np.concatenate([indices[b : b + size] for b, size in batches] or [indices])
    offsets = np.cumsum([0] + [size for _, size in batches], dtype=np.int64)
    return BatchPlan(indices, offsets)


def _cut(src: list[int], tgt: list[int], batch_tokens: int) -> list[int]:
    """Where batches start in a sorted pool: a batch grows while rows × (longest source + longest
    target) stays within ``batch_tokens``."""
    starts, size, longest_src, longest_tgt = [], 0, 0, 0
    for row, (s, t) in enumerate(zip(src, tgt, strict=True)):
        wide_src, wide_tgt = max(longest_src, s), max(longest_tgt, t)
        if size and (size + 1) * (wide_src + wide_tgt) > batch_tokens:
            size, wide_src, wide_tgt = 0, s, t
        if size == 0:
            starts.append(row)
        size, longest_src, longest_tgt = size + 1, wide_src, wide_tgt
    return starts


def bucketed_batches(
    lengths: list[tuple[int, int]], batch_tokens: int, *, shuffle: bool, seed: int = 0
) -> list[list[int]]:
    """Group indices into batches of similar shape holding at most ``batch_tokens`` tokens each, padding
    included: rows × (longest source + longest target); a longer single example gets a batch of its own.
    ``lengths[i]`` is example i's (source, target) length.

    Examples are sorted by total length, then by source length, so a batch's rows have nearly the same
    split and both sides waste little on padding.  With ``shuffle``, indices are shuffled, sorted inside
    pools of about 50 batches, cut into batches, and the batches shuffled: a pure function of ``seed``.
    See :func:`plan_batches` for the same from length arrays.
    """
    src = np.fromiter((s for s, _ in lengths), dtype=np.int64, count=len(lengths))
    tgt = np.fromiter((t for _, t in lengths), dtype=np.int64, count=len(lengths))
    return plan_batches(src, tgt, batch_tokens, shuffle=shuffle, seed=seed).as_lists()
