"""A Transformer exported with ``attnmt export --to ctranslate2``, translating through CTranslate2.

:class:`CTranslate2Translator` is an :class:`attnmt.engine.Engine`, as attnmt's own
:class:`attnmt.translator.Translator` is, without a step-by-step model (``model`` is None): no top-k
alternatives, no completion as you type.  How each of attnmt's search rules is kept:

- *Lengths.*  At most 2 × (source tokens + ``<eos>``) + 10 words, then ``<eos>``
  (:func:`attnmt.search.max_output_lengths`): sentences are batched by source length, so every
  sentence of a CTranslate2 call has its own bound.  CTranslate2 stops at the bound without ``<eos>``;
  such a hypothesis is closed here with ``<eos>`` and its log-probability (``score_batch``), as attnmt
  closes it.  ``<pad>`` and ``<sos>`` are never written (``suppress_sequences``); ``<eos>`` may come
  first (an empty translation), as in attnmt.
- *Length penalty.*  attnmt ranks ended hypotheses by log p / ((5 + |Y|) / 6)^α (GNMT, |Y| counting
  ``<eos>``); CTranslate2's own penalty is log p / |Y|^α.  So CTranslate2 searches with its penalty off
  (ranking by log p), returns all ``beam_size`` ended hypotheses, and they are ranked here by attnmt's
  penalty.  With α > 0 attnmt's beam may keep a longer hypothesis that CTranslate2 dropped on log p,
  so the best translations differ now and then (tests/test_export.py).
- *Scores* are log-probabilities with ``<eos>`` included, the forced prefix's too, as attnmt's, with
  one difference: CTranslate2 rules ``<pad>`` and ``<sos>`` out *before* its softmax, attnmt after, so a
  translation's score is higher by what the model gives those two.  ``score`` reads given translations
  with ``score_batch``: attnmt's numbers.
- *Beam search* stops when it has ``beam_size`` ended hypotheses (attnmt: when ``n_best`` of them rank
  above the best live one), so below the best, an n-best list may hold other alternatives.
- *Attention* is the last decoder layer's cross-attention averaged over all heads (the export sets
  ``alignment_layer=-1, alignment_heads=heads``): the weights attnmt's own search returns.  CTranslate2
  returns no other layer or head, so :meth:`~CTranslate2Translator.attention_maps` has only ``cross``,
  as one layer and one head: that average.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnmt.config import Config
from attnmt.engine import (
    DecodeOptions,
    Engine,
    Score,
    Translation,
    empty_translation,
    stay_on_cpu,
    target_tokens,
)
from attnmt.errors import AttnmtError
from attnmt.search import length_penalty, max_output_length
from attnmt.tokenization import Tokenizer
from attnmt.vocab import EOS, PAD, SOS, Vocabulary

NEVER_WRITTEN = [[PAD], [SOS]]  # as attnmt.search.constrain
POSITIONS = 4096  # rows of the position table: the longest source, and the longest translation, in tokens


def require_ctranslate2():
    """The ``ctranslate2`` module, or an error saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise AttnmtError(
            "ctranslate2 is not installed: pip install 'attnmt[ctranslate2]' (or pip install ctranslate2)"
        ) from None
    return ctranslate2


@dataclass
class _Hypothesis:
    tokens: list[str]  # target tokens, <eos> last
    score: float  # log-probability, <eos> included
    attention: np.ndarray  # (len(tokens), S)


@dataclass
class _Search:
    """A CTranslate2 search under way: its sources, each one's length bound, the results to come."""

    sources: list[list[str]]
    limits: list[int]
    pending: list[Any]  # ctranslate2.AsyncTranslationResult, one per source
    first: list[Any] | None  # a greedy first step's, for beam search over several sources (_first_step)


@dataclass
class CTranslate2Translator(Engine):
    """An exported model: a ``ctranslate2.Translator`` with attnmt's vocabularies, tokenizers and config."""

    engine: Any  # ctranslate2.Translator
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    config: Config
    quantization: str  # as exported: int8, int8_float32, int16, float32, bfloat16
    exported_parameters: int  # the parameters of the model it was exported from
    positions: int  # rows of the exported position table: the most tokens a source or translation has
    model = None  # CTranslate2 keeps its decoder to itself
    has_attention = True  # the last layer's cross-attention, averaged over its heads

    @property
    def parameter_count(self) -> int:
        return self.exported_parameters

    def place(self, device: str = "auto", *, int8: bool = False) -> None:
        stay_on_cpu(
            device, int8, "a CTranslate2 export", self.quantization, "export with --quantization int8 instead"
        )

    def translate_n_best(
        self,
        sentences: list[str],
        options: DecodeOptions = DecodeOptions(),
        *,
        batch_size: int = 64,
        prefix: list[str] | None = None,
    ) -> list[list[Translation]]:
        """The ``options.n_best`` best translations of each sentence, best first, in input order;
        ``prefix`` (one text per sentence, "" for none): what each translation begins with
        (CTranslate2's ``target_prefix``), as :meth:`attnmt.translator.Translator.translate_n_best`."""
        if batch_size < 1:
            raise AttnmtError(f"batch size must be at least 1, got {batch_size}")
        sources = self._fitting([[*self.src_tokenizer.tokenize(s), EOS] for s in sentences], "sentence")
        prefixes = (
            None
            if prefix is None
            else self._fitting(target_tokens(self, prefix, len(sentences), "prefix"), "prefix")
        )
        results: list[list[Translation]] = [[] for _ in sentences]
        # every batch is handed to CTranslate2 before the first is read: with several translators
        # (inter_threads) they translate side by side, longest first so that they end together
        chunks = list(_same_length_batches(sources, batch_size))[::-1]
        searches = [
            self._submit(
                [sources[i] for i in chunk],
                options,
                None if prefixes is None else [prefixes[i] for i in chunk],
            )
            for chunk in chunks
        ]
        for chunk, search in zip(chunks, searches, strict=True):
            for i, n_best in zip(chunk, self._ranked(search, options), strict=True):
                results[i] = [self._translation(sources[i], h) for h in n_best]
        return results

    def score(
        self, sources: list[str], targets: list[str], *, batch_size: int = 64, top_k: int = 0
    ) -> list[Score]:
        """How probable the model finds each ``targets[i]`` as the translation of ``sources[i]``: per-token
        log-probabilities (``<eos>`` last) from CTranslate2's ``score_batch``; the attention behind them
        from a forced translation (``target_prefix`` = the target).  No ``top_k``: CTranslate2 scores
        the tokens given, not the others."""
        if len(sources) != len(targets):
            raise AttnmtError(f"targets: {len(targets)} for {len(sources)} sources; give one per source")
        src_tokens = self._fitting([[*self.src_tokenizer.tokenize(s), EOS] for s in sources], "sources")
        wanted = self._fitting(target_tokens(self, targets, len(sources), "targets"), "targets")
        return self._score_tokens(src_tokens, wanted, batch_size, top_k)

    def score_translations(
        self, translations: list[Translation], *, batch_size: int = 64, top_k: int = 0
    ) -> list[Score]:
        """The :meth:`score` of each translation as ``translate`` returned it, read from its own tokens."""
        src_tokens = [t.src_tokens or [EOS] for t in translations]  # an empty input has no tokens
        return self._score_tokens(src_tokens, [t.tokens[:-1] for t in translations], batch_size, top_k)

    def _score_tokens(
        self, src_tokens: list[list[str]], target_tokens: list[list[str]], batch_size: int, top_k: int
    ) -> list[Score]:
        if batch_size < 1:
            raise AttnmtError(f"batch size must be at least 1, got {batch_size}")
        if top_k:
            raise AttnmtError("top_k: a CTranslate2 export gives no alternatives; send 0")
        scores: list[Score | None] = [None] * len(src_tokens)
        for chunk in _same_length_batches(src_tokens, batch_size):
            batch, wanted = [src_tokens[i] for i in chunk], [target_tokens[i] for i in chunk]
            read = self.engine.score_batch(batch, wanted, max_input_length=0)
            forced = self._forced(batch, wanted)
            for i, scored, attention in zip(chunk, read, forced, strict=True):
                log_probs = list(scored.log_probs)
                scores[i] = Score(
                    [*target_tokens[i], EOS], src_tokens[i], log_probs, sum(log_probs), attention
                )
        return scores

    def attention_maps(self, translation: Translation) -> dict[str, np.ndarray]:
        """The only weights CTranslate2 returns: ``cross`` (1, 1, T, S), the last layer's cross-attention
        averaged over its heads (one "layer", one "head"), as ``translation.attention`` holds them."""
        if not translation.tokens:
            return {}
        return {"cross": translation.attention[None, None]}

    def _fitting(self, rows: list[list[str]], name: str) -> list[list[str]]:
        """``rows`` if none is too long for the position table (with ``<sos>`` or ``<eos>`` and room for
        a last ``<eos>``); ``name`` names the texts in the error."""
        for i, row in enumerate(rows):
            if len(row) + 2 > self.positions:
                raise AttnmtError(
                    f"{name}[{i}]: {len(row)} tokens; this CTranslate2 export reads at most "
                    f"{self.positions - 2} (its position table has {self.positions} rows)"
                )
        return rows

    def _submit(
        self, sources: list[list[str]], options: DecodeOptions, prefixes: list[list[str]] | None
    ) -> _Search:
        """One asynchronous CTranslate2 call for sources of one length (``<eos>`` included), every
        beam hypothesis returned."""
        words = min(max_output_length(len(sources[0])), self.positions - 2)
        limits = [max(words, len(p)) for p in prefixes] if prefixes else [words] * len(sources)
        beam = options.beam_size
        pending = self.engine.translate_batch(
            sources, target_prefix=prefixes if prefixes and any(prefixes) else None,
            beam_size=beam, num_hypotheses=beam, length_penalty=0.0, patience=1.0,
            max_input_length=0, max_decoding_length=max(limits), min_decoding_length=0,
            suppress_sequences=NEVER_WRITTEN, return_end_token=True, return_scores=True, return_attention=True,
            asynchronous=True,
        )  # fmt: skip
        first = self._first_step(sources) if beam > 1 and len(sources) > 1 else None
        return _Search(sources, limits, pending, first)

    def _ranked(self, search: _Search, options: DecodeOptions) -> list[list[_Hypothesis]]:
        """Each sentence's ``options.n_best`` hypotheses of a submitted search, ranked by attnmt's
        length penalty."""
        sources, limits = search.sources, search.limits
        results = [p.result() for p in search.pending]
        found = [
            [_Hypothesis(list(t), s, np.asarray(a, np.float32)) for t, s, a in zip(*r, strict=True)]
            for r in ((r.hypotheses, r.scores, r.attention) for r in results)
        ]
        if search.first is not None:  # the first attention rows, set right
            for hyps, first in zip(found, search.first, strict=True):
                row = first.result().attention[0][0]
                for h in hyps:
                    h.attention[0] = row
        self._close_unfinished(sources, found, limits)

        def penalised(h: _Hypothesis) -> float:
            return h.score / length_penalty(len(h.tokens), options.alpha)

        return [sorted(hyps, key=penalised, reverse=True)[: options.n_best] for hyps in found]

    def _first_step(self, sources: list[list[str]]) -> list[Any]:
        """Beam search over a batch returns a wrong first attention row (CTranslate2 4.x: it mixes in
        other sentences' weights); the later rows are right.  The first row is the same for every
        hypothesis of a sentence (it depends on ``<sos>`` alone), so one greedy step, submitted with
        the search, gives it."""
        return self.engine.translate_batch(
            sources, beam_size=1, max_input_length=0, max_decoding_length=1, min_decoding_length=0,
            return_end_token=True, return_attention=True, asynchronous=True,
        )  # fmt: skip

    def _close_unfinished(
        self, sources: list[list[str]], found: list[list[_Hypothesis]], limits: list[int]
    ) -> None:
        """Hypotheses that ran out of room without ``<eos>`` (CTranslate2 stops there; attnmt writes
        ``<eos>`` next, the only word left): cut at their sentence's limit, closed with ``<eos>``, scored
        with its log-probability and given its attention row, as attnmt's search does.  Hypotheses that
        the cut makes equal are kept once."""
        unfinished = [(b, h) for b, hyps in enumerate(found) for h in hyps if h.tokens[-1:] != [EOS]]
        if not unfinished:
            return
        batch = [sources[b] for b, _ in unfinished]
        words = [h.tokens[: limits[b]] for b, h in unfinished]
        read = self.engine.score_batch(batch, words, max_input_length=0)
        for (_, h), tokens, scored, attention in zip(
            unfinished, words, read, self._forced(batch, words), strict=True
        ):
            h.tokens, h.score, h.attention = [*tokens, EOS], float(sum(scored.log_probs)), attention
        for b, hyps in enumerate(found):
            unique = {tuple(h.tokens): h for h in reversed(hyps)}  # the first of equal ones wins
            found[b] = [h for h in hyps if unique[tuple(h.tokens)] is h]

    def _forced(self, sources: list[list[str]], targets: list[list[str]]) -> list[np.ndarray]:
        """The attention behind each target token and its ``<eos>``: (len(target) + 1, S) per sentence."""
        results = self.engine.translate_batch(
            sources, target_prefix=targets, beam_size=1, max_input_length=0,
            max_decoding_length=max(map(len, targets)) + 1, min_decoding_length=0,
            suppress_sequences=NEVER_WRITTEN, return_end_token=True, return_attention=True,
        )  # fmt: skip
        return [
            np.asarray(r.attention[0], np.float32)[: len(t) + 1]
            for r, t in zip(results, targets, strict=True)
        ]

    def _translation(self, source: list[str], hyp: _Hypothesis) -> Translation:
        if len(source) == 1:  # empty input: nothing to translate
            return empty_translation()
        text = self.tgt_tokenizer.detokenize(hyp.tokens[:-1])
        return Translation(text, hyp.tokens, source, hyp.score, hyp.attention)


def _same_length_batches(sources: list[list[str]], batch_size: int) -> Iterator[list[int]]:
    """Indices of sources of one length, at most ``batch_size`` at a time: one CTranslate2 call each, so
    that every sentence in it has the same length bound, and no padding."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    for _, group in itertools.groupby(order, key=lambda i: len(sources[i])):
        indices = list(group)
        for start in range(0, len(indices), batch_size):
            yield indices[start : start + batch_size]


def load_ctranslate2(
    directory: Path,
    header: dict,
    config: Config,
    vocabularies: tuple[Vocabulary, Vocabulary],
    tokenizers: tuple[Tokenizer, Tokenizer],
) -> CTranslate2Translator:
    """The exported model in ``directory`` (its files already checked against ``header``) on the CPU,
    computing as exported: as many translators as PyTorch uses threads, one thread each, so that
    batches translate side by side (docs/benchmarks.md)."""
    ctranslate2 = require_ctranslate2()
    try:
        engine = ctranslate2.Translator(
            str(directory), device="cpu", compute_type="default",
            inter_threads=torch.get_num_threads(), intra_threads=1,
        )  # fmt: skip
    except (RuntimeError, ValueError, OSError) as e:
        raise AttnmtError(f"{directory}: CTranslate2 cannot load this model ({e})") from None
    return CTranslate2Translator(
        engine,
        *vocabularies,
        *tokenizers,
        config,
        str(header.get("quantization")),
        int(header.get("parameters", 0)),
        int(header.get("positions", POSITIONS)),
    )
