"""Step 1, data preparation: sentence pairs → token ids → padded, length-bucketed batches.

Mask convention, used everywhere in attnmt: ``src_pad_mask`` is a bool tensor (B, S) that is True
where the source position is padding.  It is built only by :func:`pad_mask`.
"""

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from attnmt.corpora import Pair
from attnmt.tokenization import Tokenizer, WordTokenizer
from attnmt.vocab import Vocabulary


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
        self.src_ids = [
            [*src_vocab.encode(self.src_tokenizer.tokenize(s)), Vocabulary.eos_id] for s, _ in pairs
        ]
        self.tgt_ids = [
            [Vocabulary.sos_id, *tgt_vocab.encode(self.tgt_tokenizer.tokenize(t)), Vocabulary.eos_id]
            for _, t in pairs
        ]

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
        src_tokenizer = src_tokenizer or WordTokenizer("en")
        tgt_tokenizer = tgt_tokenizer or WordTokenizer("fr")
        src_tokens = [src_tokenizer.tokenize(s) for s, _ in pairs]
        tgt_tokens = [tgt_tokenizer.tokenize(t) for _, t in pairs]
        if joint:
            vocab = Vocabulary.build(src_tokens + tgt_tokens, min_freq=min_freq, max_size=max_size)
            return vocab, vocab
        src = Vocabulary.build(src_tokens, min_freq=min_freq, max_size=max_size)
        return src, Vocabulary.build(tgt_tokens, min_freq=min_freq, max_size=max_size)

    def __len__(self) -> int:
        return len(self.pairs)

    def lengths(self) -> list[tuple[int, int]]:
        """(source, target) ids per pair: the sizes batching counts."""
        return [(len(s), len(t)) for s, t in zip(self.src_ids, self.tgt_ids, strict=True)]

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


def collate(dataset: TranslationDataset, indices: list[int]) -> Batch:
    src, src_pad_mask = pad([dataset.src_ids[i] for i in indices])
    tgt_in, _ = pad([dataset.tgt_ids[i][:-1] for i in indices])
    tgt_out, _ = pad([dataset.tgt_ids[i][1:] for i in indices])
    return Batch(src, src_pad_mask, tgt_in, tgt_out, indices)


def bucketed_batches(
    lengths: list[tuple[int, int]], batch_tokens: int, *, shuffle: bool, seed: int = 0
) -> list[list[int]]:
    """Group indices into batches of similar shape holding at most ``batch_tokens`` tokens each, padding
    included: rows × (longest source + longest target); a longer single example gets a batch of its own.
    ``lengths[i]`` is example i's (source, target) length.

    Examples are sorted by total length, then by source length, so a batch's rows have nearly the same
    split and both sides waste little on padding.  With ``shuffle``, indices are shuffled, sorted inside
    pools of about 50 batches, cut into batches, and the batches shuffled: a pure function of ``seed``.
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    shortest = min((s + t for s, t in lengths), default=1)
    pool = max(1, 50 * batch_tokens // max(1, shortest)) if shuffle else max(1, len(order))
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        batch: list[int] = []
        longest_src = longest_tgt = 0
        for i in sorted(order[start : start + pool], key=lambda i: (sum(lengths[i]), lengths[i][0])):
            src, tgt = lengths[i]
            src, tgt = max(longest_src, src), max(longest_tgt, tgt)
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
