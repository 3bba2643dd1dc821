"""Steps 7–8: translate text with a trained model.  The CLI, notebooks and demos all call this."""

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from attnmt.config import Config
from attnmt.data import pad
from attnmt.device import quantize_int8, select_device
from attnmt.engine import (
    DecodeOptions,
    Engine,
    Score,
    Translation,
    check_top_k,
    empty_translation,
    target_tokens,
)
from attnmt.errors import AttnmtError
from attnmt.model import Seq2Seq
from attnmt.search import Hypothesis, beam_search, greedy_search, max_output_lengths, score_targets
from attnmt.tokenization import Tokenizer
from attnmt.vocab import EOS, Vocabulary

T = TypeVar("T")


@dataclass
class Translator(Engine):
    """A trained PyTorch model with its vocabularies and config: what a model directory holds."""

    model: Seq2Seq
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    config: Config

    @property
    def has_attention(self) -> bool:
        return self.model.has_attention

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def place(self, device: str = "auto", *, int8: bool = False) -> None:
        where = select_device(device, source="--device")
        self.model.to(where)
        if int8:
            if where.type != "cpu":
                raise AttnmtError(f"--int8: runs on the CPU only, not on {where} (add --device cpu)")
            self.model = quantize_int8(self.model.eval())

    def translate_n_best(
        self,
        sentences: list[str],
        options: DecodeOptions = DecodeOptions(),
        *,
        batch_size: int = 64,
        prefix: list[str] | None = None,
    ) -> list[list[Translation]]:
        """The ``options.n_best`` best translations of each sentence, best first, in input order.

        With ``prefix`` (one text per sentence, "" for none), each translation begins with its prefix's
        tokens, as the target tokenizer splits that text alone, and search continues from there; the
        prefix's log-probabilities count in the score.  With SentencePiece, a word cut short ("Nous so")
        is split as a whole word would be, so the model continues from pieces it rarely saw written that
        way; with word tokens the last word is a whole word.  An empty sentence still translates to ""."""
        if batch_size < 1:
            raise AttnmtError(f"batch size must be at least 1, got {batch_size}")
        tokenized = [self.src_tokenizer.tokenize(s) for s in sentences]
        prefixes = None if prefix is None else self._target_ids(prefix, len(sentences), "prefix")

        def translate(chunk: list[int]) -> list[list[Translation]]:
            chunk_prefixes = None if prefixes is None else [prefixes[i] for i in chunk]
            return self._translate_tokens([tokenized[i] for i in chunk], options, chunk_prefixes)

        return _by_length(tokenized, batch_size, translate, side_by_side=self._device.type == "cpu")

    def score(
        self, sources: list[str], targets: list[str], *, batch_size: int = 64, top_k: int = 0
    ) -> list[Score]:
        """How probable the model finds each ``targets[i]`` as the translation of ``sources[i]``: the
        log-probability of each of its tokens and of ``<eos>``, and the attention, read by forced
        decoding (batched by source length; results in input order).  With ``top_k``, also the
        ``top_k`` most likely tokens at each position (``Score.candidates``)."""
        if len(sources) != len(targets):
            raise AttnmtError(f"targets: {len(targets)} for {len(sources)} sources; give one per source")
        src_tokens = [[*self.src_tokenizer.tokenize(s), EOS] for s in sources]
        return self._score_all(
            src_tokens, self._target_ids(targets, len(sources), "targets"), batch_size, top_k
        )

    def score_translations(
        self, translations: list[Translation], *, batch_size: int = 64, top_k: int = 0
    ) -> list[Score]:
        """The :meth:`score` of each translation as ``translate`` returned it, read from its own tokens
        (its text is not tokenised again, so an ``<unk>`` or a subword split stays as search wrote it):
        per-token log-probabilities and, with ``top_k``, the likeliest tokens at each position."""
        src_tokens = [t.src_tokens or [EOS] for t in translations]  # an empty input has no tokens
        target_ids = [self.tgt_vocab.encode(t.tokens[:-1]) for t in translations]
        return self._score_all(src_tokens, target_ids, batch_size, top_k)

    def _score_all(
        self, src_tokens: list[list[str]], target_ids: list[list[int]], batch_size: int, top_k: int
    ) -> list[Score]:
        if batch_size < 1:
            raise AttnmtError(f"batch size must be at least 1, got {batch_size}")
        check_top_k(top_k)

        def score(chunk: list[int]) -> list[Score]:
            return self._score_ids([src_tokens[i] for i in chunk], [target_ids[i] for i in chunk], top_k)

        return _by_length(src_tokens, batch_size, score, side_by_side=self._device.type == "cpu")

    @property
    def _device(self) -> torch.device:
        return model_device(self.model)

    def _target_ids(self, texts: list[str], count: int, name: str) -> list[list[int]]:
        """Target texts as the model's target ids, one text per sentence (``name`` for messages)."""
        return [self.tgt_vocab.encode(row) for row in target_tokens(self, texts, count, name)]

    @torch.inference_mode()
    def _score_ids(
        self, src_tokens: list[list[str]], targets: list[list[int]], top_k: int = 0
    ) -> list[Score]:
        self.model.eval()
        src, src_pad_mask = self._source_batch(src_tokens)
        scores = []
        for source, ids, scored in zip(
            src_tokens,
            targets,
            score_targets(self.model, src, src_pad_mask, targets, top_k=top_k),
            strict=True,
        ):
            attention = None if scored.attention is None else scored.attention.cpu().numpy()
            tokens = [*self.tgt_vocab.decode(ids), EOS]
            score = Score(tokens, source, scored.log_probs, sum(scored.log_probs), attention)
            if scored.top_ids is not None and scored.top_log_probs is not None:
                score.candidates = [
                    list(zip(self.tgt_vocab.decode(row_ids), row_log_probs, strict=True))
                    for row_ids, row_log_probs in zip(
                        scored.top_ids.tolist(), scored.top_log_probs.tolist(), strict=True
                    )
                ]
            scores.append(score)
        return scores

    def _source_batch(self, src_tokens: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Source tokens (<eos> last) as ids (B, S) and padding mask (B, S) on the model's device."""
        device = self._device
        src, src_pad_mask = pad([self.src_vocab.encode(tokens) for tokens in src_tokens])
        return src.to(device), src_pad_mask.to(device)

    @torch.inference_mode()
    def _translate_tokens(
        self, batch: list[list[str]], options: DecodeOptions, prefixes: list[list[int]] | None = None
    ) -> list[list[Translation]]:
        self.model.eval()
        src_tokens = [[*tokens, EOS] for tokens in batch]
        src, src_pad_mask = self._source_batch(src_tokens)
        lengths = max_output_lengths(src_pad_mask)
        if options.beam_size == 1:
            hypotheses = [
                [h] for h in greedy_search(self.model, src, src_pad_mask, lengths, prefixes=prefixes)
            ]
        else:
            hypotheses = beam_search(
                self.model,
                src,
                src_pad_mask,
                lengths,
                beam_size=options.beam_size,
                n_best=options.n_best,
                alpha=options.alpha,
                prefixes=prefixes,
            )
        return [
            [self._translation(source, hyp) for hyp in n_best]
            for source, n_best in zip(src_tokens, hypotheses, strict=True)
        ]

    @torch.no_grad()
    def attention_maps(self, translation: Translation) -> dict[str, np.ndarray]:
        """Every layer's and head's weights behind ``translation`` (as ``translate`` returned it),
        recomputed in one teacher-forced pass: ``cross`` (layers, heads, T, S) for every model, and
        for the Transformer its self-attention, ``encoder`` (layers, heads, S, S) and ``decoder``
        (layers, heads, T, T) — row i of the last attends over <sos> and the tokens before token i."""
        if not translation.tokens:
            return {}
        self.model.eval()
        device = self._device
        src = torch.tensor([self.src_vocab.encode(translation.src_tokens)], device=device)
        tgt_in = torch.tensor(
            [[Vocabulary.sos_id, *self.tgt_vocab.encode(translation.tokens[:-1])]], device=device
        )
        maps = self.model.attention_maps(src, torch.zeros_like(src, dtype=torch.bool), tgt_in)
        return {kind: weights[0].float().cpu().numpy() for kind, weights in maps.items()}

    def _translation(self, source: list[str], hyp: Hypothesis) -> Translation:
        if len(source) == 1:  # empty input: nothing to translate
            return empty_translation()
        tokens = self.tgt_vocab.decode(hyp.tokens)
        attention = None if hyp.attention is None else hyp.attention.float().cpu().numpy()
        return Translation(
            self.tgt_tokenizer.detokenize(tokens), [*tokens, EOS], source, hyp.score, attention
        )


def model_device(model: Seq2Seq) -> torch.device:
    """Where ``model`` computes: its parameters' device; the CPU for a model whose weights live
    elsewhere (an ONNX Runtime session)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _by_length(
    sources: list[list[str]], batch_size: int, run: Callable[[list[int]], list[T]], *, side_by_side: bool
) -> list[T]:
    """``run`` over batches of sentence indices sorted by source length (little padding); the results
    come back in input order.  With ``side_by_side`` (a model on the CPU), the batches run on as many
    threads as torch computes with, one core each: a small batch leaves a second core mostly idle within
    a step (docs/benchmarks.md).  They start longest first, so that the last to finish are short and the
    cores end together."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    threads = torch.get_num_threads()
    outputs: Iterable[list[T]]
    if side_by_side and threads > 1 and len(batches) > 1:
        outputs = _one_core_each(run, batches[::-1], threads)[::-1]
    else:
        outputs = map(run, batches)
    results: list[T | None] = [None] * len(sources)
    for chunk, output in zip(batches, outputs, strict=True):
        for i, result in zip(chunk, output, strict=True):
            results[i] = result
    return results


def _one_core_each(
    run: Callable[[list[int]], list[T]], batches: list[list[int]], threads: int
) -> list[list[T]]:
    """``run`` on each batch, ``threads`` batches at a time, each computing on one thread and under the
    caller's CPU autocast (validation in bf16).  While it runs, a thread that first computes with torch
    starts with one thread too (torch's thread count is the process's).  On an error or Ctrl-C, the
    batches not started are dropped."""
    autocast, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    def one(batch: list[int]) -> list[T]:
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            return run(batch)

    torch.set_num_threads(1)  # threads started from now on compute alone (torch reads this when they start)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="attnmt-batch")
    try:
        return list(pool.map(one, batches))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        torch.set_num_threads(threads)


def translate_sentence(model: Translator, sentence: str) -> Translation:
    """Translate one sentence greedily until ``<eos>`` (or 2 × its length + 10 tokens)."""
    return model.translate([sentence], DecodeOptions(beam_size=1))[0]
