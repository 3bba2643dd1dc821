"""Step 1, data preparation: sentence pairs → token ids → padded, length-bucketed batches.

Mask convention, used everywhere in attnmt: ``src_pad_mask`` is a bool tensor (B, S) that is True
where the source position is padding.  It is built only by :func:`pad_mask`.
"""

import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

from attnmt.errors import AttnmtError
from attnmt.tokenization import tokenize
from attnmt.vocab import Vocabulary

Pair = tuple[str, str]


def read_tsv(path: Path) -> list[Pair]:
    """Read ``source<TAB>target`` lines; errors name the file and line."""
    pairs = []
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise AttnmtError(f"{path}:{number}: not valid UTF-8") from None
                fields = line.split("\t")
                if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
                    raise AttnmtError(f"{path}:{number}: expected 'source<TAB>target', both non-empty")
                pairs.append((fields[0], fields[1]))
    except (FileNotFoundError, IsADirectoryError):
        raise AttnmtError(f"{path}: file not found") from None
    return pairs


def toy_pairs(src_lang: str = "en", tgt_lang: str = "fr") -> list[Pair]:
    """The built-in English–French set written for attnmt (a few hundred everyday sentences)."""
    if {src_lang, tgt_lang} != {"en", "fr"}:
        raise AttnmtError(f"the toy set is English–French; got {src_lang}→{tgt_lang}")
    with resources.as_file(resources.files("attnmt") / "resources" / "toy_en_fr.tsv") as path:
        pairs = read_tsv(path)
    return pairs if src_lang == "en" else [(fr, en) for en, fr in pairs]


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
    ):
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.pairs = pairs
        self.src_ids = [[*src_vocab.encode(tokenize(s)), Vocabulary.eos_id] for s, _ in pairs]
        self.tgt_ids = [
            [Vocabulary.sos_id, *tgt_vocab.encode(tokenize(t)), Vocabulary.eos_id] for _, t in pairs
        ]

    @staticmethod
    def build_vocabs(
        pairs: list[Pair], *, min_freq: int = 1, max_size: int | None = None
    ) -> tuple[Vocabulary, Vocabulary]:
        """Source and target vocabularies of the tokenized pairs."""
        src = Vocabulary.build((tokenize(s) for s, _ in pairs), min_freq=min_freq, max_size=max_size)
        tgt = Vocabulary.build((tokenize(t) for _, t in pairs), min_freq=min_freq, max_size=max_size)
        return src, tgt

    def __len__(self) -> int:
        return len(self.pairs)

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


def bucketed_batches(lengths: list[int], batch_size: int, *, shuffle: bool, seed: int = 0) -> list[list[int]]:
    """Group indices into batches of similar length, so little compute goes to padding.

    With ``shuffle``, indices are shuffled, sorted by length inside pools of 50 batches, cut into
    batches, and the batches shuffled: the order is a pure function of ``seed``.
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    pool = batch_size * 50 if shuffle else max(1, len(order))
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches
