"""What both training data paths share — in memory (:class:`data.TranslationDataset`) and prepared
(:mod:`attnmt.prepared`): the tokenizers and vocabularies a :class:`DataConfig` asks for, and a pair's
token ids.  Both paths clean with :func:`corpora.clean`'s rules first."""

import random
from collections import Counter
from collections.abc import Iterable

from attnmt.config import DataConfig
from attnmt.corpora import Pair
from attnmt.tokenization import SubwordTokenizer, Tokenizer, WordTokenizer
from attnmt.vocab import Vocabulary

Tokenizers = tuple[Tokenizer, Tokenizer, Vocabulary, Vocabulary]  # source, target; then their vocabularies


def build_tokenizers(data: DataConfig, pairs: list[Pair]) -> tuple[Tokenizer, Tokenizer]:
    """Word tokenizers, or SentencePiece models trained on ``pairs`` (jointly or per language), at most
    ``data.spm_sample`` of them, a random sample."""
    if data.tokenizer == "word":
        return WordTokenizer(data.src_lang), WordTokenizer(data.tgt_lang)
    if len(pairs) > data.spm_sample:
        pairs = [pairs[i] for i in sorted(random.Random(0).sample(range(len(pairs)), data.spm_sample))]
    options = {"vocab_size": data.vocab_size, "model_type": data.tokenizer}
    if data.joint_vocab:
        joint = SubwordTokenizer.train([s for s, _ in pairs] + [t for _, t in pairs], **options)
        return joint, joint
    return (
        SubwordTokenizer.train([s for s, _ in pairs], **options),
        SubwordTokenizer.train([t for _, t in pairs], **options),
    )


def build_vocabularies(
    data: DataConfig, pairs: Iterable[Pair], src_tok: Tokenizer, tgt_tok: Tokenizer
) -> tuple[Vocabulary, Vocabulary]:
    """Every SentencePiece piece for subwords; for words, the tokens of ``pairs`` (min_freq, max size)."""
    if isinstance(src_tok, SubwordTokenizer):
        src_vocab = Vocabulary(src_tok.pieces())
        return src_vocab, src_vocab if tgt_tok is src_tok else Vocabulary(tgt_tok.pieces())
    return word_vocabularies(
        count_tokens(pairs, src_tok, tgt_tok),
        min_freq=data.min_freq,
        max_size=data.max_vocab_size,
        joint=data.joint_vocab,
    )


def count_tokens(pairs: Iterable[Pair], src_tok: Tokenizer, tgt_tok: Tokenizer) -> tuple[Counter, Counter]:
    """How often each source and each target token occurs in ``pairs``."""
    counts: tuple[Counter, Counter] = (Counter(), Counter())
    for src, tgt in pairs:
        counts[0].update(src_tok.tokenize(src))
        counts[1].update(tgt_tok.tokenize(tgt))
    return counts


def word_vocabularies(
    counts: tuple[Counter, Counter], *, min_freq: int, max_size: int | None, joint: bool
) -> tuple[Vocabulary, Vocabulary]:
    """Source and target vocabularies from token counts; with ``joint``, one from both, shared."""
    if joint:
        vocab = Vocabulary.from_counts(counts[0] + counts[1], min_freq=min_freq, max_size=max_size)
        return vocab, vocab
    src, tgt = (Vocabulary.from_counts(c, min_freq=min_freq, max_size=max_size) for c in counts)
    return src, tgt


def encode_pair(pair: Pair, tokenizers: Tokenizers) -> tuple[list[int], list[int]]:
    """A pair's ids: source ``w1 … wn <eos>``, target ``<sos> w1 … wm <eos>``."""
    src_tok, tgt_tok, src_vocab, tgt_vocab = tokenizers
    return (
        [*src_vocab.encode(src_tok.tokenize(pair[0])), Vocabulary.eos_id],
        [Vocabulary.sos_id, *tgt_vocab.encode(tgt_tok.tokenize(pair[1])), Vocabulary.eos_id],
    )
