"""Decoding, written against the model's decoder contract only (:class:`attnmt.model.Seq2Seq`)."""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Self

import torch
from torch import Tensor

from attnmt.model import DecoderState, Seq2Seq
from attnmt.vocab import Vocabulary


@dataclass
class Hypothesis:
    tokens: list[int]  # without <sos> and <eos>
    score: float  # sum of log-probabilities, <eos> included
    attention: Tensor | None  # (len(tokens) + 1, S): one row per emitted token, <eos> last


def constrain(
    log_probs: Tensor, words: int, max_lengths: Tensor, min_lengths: Tensor | None = None
) -> Tensor:
    """Rule out, in place, what may not follow ``words`` words: ``<pad>`` and ``<sos>`` always, all
    but ``<eos>`` in rows out of room (``max_lengths`` words written), ``<eos>`` in rows short of
    ``min_lengths``.  log_probs (R, V), lengths (R,) → log_probs."""
    log_probs[:, [Vocabulary.pad_id, Vocabulary.sos_id]] = float("-inf")  # never generated
    out_of_room = (words >= max_lengths).nonzero().squeeze(1)  # rows that must end; mostly none
    if len(out_of_room):
        eos = log_probs[out_of_room, Vocabulary.eos_id]
        log_probs[out_of_room] = float("-inf")
        log_probs[out_of_room, Vocabulary.eos_id] = eos
    if min_lengths is not None:
        log_probs[:, Vocabulary.eos_id].masked_fill_(words < min_lengths, float("-inf"))
    return log_probs


def forced_tokens(prefixes: list[list[int]] | None, batch: int, device: torch.device) -> Tensor | None:
    """The target prefixes search must continue, one id list per sentence (empty: none), as (B, P)
    padded with -1; None when no sentence has one.  A prefix holds words: no ``<pad>``, ``<sos>``,
    ``<eos>``."""
    if prefixes is None or not any(prefixes):
        return None
    if len(prefixes) != batch:
        raise ValueError(f"{len(prefixes)} prefixes for {batch} sentences")
    if any(t in (Vocabulary.pad_id, Vocabulary.sos_id, Vocabulary.eos_id) for p in prefixes for t in p):
        raise ValueError("a prefix may not hold <pad>, <sos> or <eos>")
    forced = torch.full((batch, max(map(len, prefixes))), -1, dtype=torch.long)
    for row, prefix in enumerate(prefixes):
        forced[row, : len(prefix)] = torch.tensor(prefix, dtype=torch.long)
    return forced.to(device)


def fit_prefixes(max_lengths: Tensor, forced: Tensor | None) -> Tensor:
    """``max_lengths`` (B,) grown where a prefix is longer: the prefix is written whole, then ``<eos>``."""
    return max_lengths if forced is None else torch.maximum(max_lengths, (forced >= 0).sum(dim=1))


def force(log_probs: Tensor, words: int, forced: Tensor | None) -> Tensor:
    """Rule out, in place, all but the forced next word in rows still inside their prefix (``words``
    written, fewer than the prefix holds); that word keeps its log-probability.  log_probs (R, V),
    forced (R, P) padded with -1, or None → log_probs."""
    if forced is None or words >= forced.size(1):
        return log_probs
    rows = (forced[:, words] >= 0).nonzero().squeeze(1)  # the rows inside their prefix
    tokens = forced[rows, words]
    kept = log_probs[rows, tokens]
    log_probs[rows] = float("-inf")
    log_probs[rows, tokens] = kept
    return log_probs


def max_output_length(source_length: int) -> int:
    """The most words a translation may have: 2 × the source's tokens (its ``<eos>`` counted) + 10.
    The translation's own ``<eos>`` comes on top."""
    return 2 * source_length + 10


def max_output_lengths(src_pad_mask: Tensor) -> Tensor:
    """:func:`max_output_length` of each sentence of a batch."""
    return max_output_length((~src_pad_mask).sum(dim=1))


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_pad_mask: Tensor,
    max_lengths: Tensor,
    *,
    prefixes: list[list[int]] | None = None,
) -> list[Hypothesis]:
    """Pick the most probable word at each step until ``<eos>``, which comes at the latest after
    ``max_lengths`` (B,) words.

    src (B, S), src_pad_mask (B, S) → one :class:`Hypothesis` per sentence.  A sentence that has
    ended leaves the batch, so the model's work follows the sentences still being written.
    ``prefixes`` (one id list per sentence, empty for none) are written first, as if chosen: their
    log-probabilities count in the score and their attention rows are kept; ``max_lengths`` counts their
    words and grows to fit a longer prefix.
    """
    batch, device = src.size(0), src.device
    forced = forced_tokens(prefixes, batch, device)  # (B, P) or None
    max_lengths = fit_prefixes(max_lengths.to(device), forced)
    state = model.init_state(model.encode(src, src_pad_mask))
    longest = int(max_lengths.max())
    tokens = torch.full((batch, longest + 1), Vocabulary.pad_id, dtype=torch.long, device=device)
    attention: Tensor | None = None  # (B, T, S)
    scores = torch.zeros(batch, device=device)
    active = torch.arange(batch, device=device)  # the sentences still being written
    lengths = max_lengths
    prev = torch.full((batch,), Vocabulary.sos_id, dtype=torch.long, device=device)
    for t in range(longest + 1):  # t words written so far
        log_probs, state, attn = model.step(prev, state)  # (A, V), state, (A, S)
        constrain(log_probs, t, lengths)  # <eos> once out of room
        prev = force(log_probs, t, None if forced is None else forced[active]).argmax(dim=-1)
        scores.index_add_(0, active, log_probs.gather(1, prev[:, None]).squeeze(1))
        tokens[active, t] = prev
        if attn is not None:
            if attention is None:
                attention = torch.zeros(batch, longest + 1, attn.size(-1), device=device)
            attention[active, t] = attn.float()
        going = (prev != Vocabulary.eos_id).nonzero().squeeze(1)
        if len(going) < len(active):
            if len(going) == 0:
                break
            state, prev = model.reorder(state, going), prev[going]
            active, lengths = active[going], lengths[going]
    hypotheses = []
    for b, row in enumerate(tokens.tolist()):
        length = row.index(Vocabulary.eos_id)
        weights = None if attention is None else attention[b, : length + 1, : int((~src_pad_mask[b]).sum())]
        hypotheses.append(Hypothesis(row[:length], float(scores[b]), weights))
    return hypotheses


@dataclass
class ScoredTarget:
    log_probs: list[float]  # one per target token, <eos> last
    attention: Tensor | None  # (len(log_probs), S): the weights behind each token
    # (len(log_probs), k) each: the k most likely tokens at each position and their log-probabilities,
    # best first, given the target's tokens before it; None unless asked for
    top_ids: Tensor | None = None
    top_log_probs: Tensor | None = None


@torch.inference_mode()
def score_targets(
    model: Seq2Seq, src: Tensor, src_pad_mask: Tensor, targets: list[list[int]], *, top_k: int = 0
) -> list[ScoredTarget]:
    """Forced decoding: read each given target (ids without ``<sos>``/``<eos>``) through ``step``, one
    sentence per row, and keep the log-probability of each of its tokens and of the ``<eos>`` after
    them, with the attention behind each; with ``top_k``, also the ``top_k`` most likely tokens at each
    position (``<pad>`` and ``<sos>``, never generated, left out).  src (B, S), src_pad_mask (B, S) →
    one per sentence."""
    batch, device = src.size(0), src.device
    gold = torch.full((batch, max(map(len, targets)) + 1), Vocabulary.pad_id, dtype=torch.long)
    for row, target in enumerate(targets):
        gold[row, : len(target) + 1] = torch.tensor([*target, Vocabulary.eos_id], dtype=torch.long)
    gold = gold.to(device)  # (B, T + 1)
    state = model.init_state(model.encode(src, src_pad_mask))
    prev = torch.full((batch,), Vocabulary.sos_id, dtype=torch.long, device=device)
    log_probs, weights, top_log_probs, top_ids = [], [], [], []
    for t in range(gold.size(1)):  # rows past their <eos> read <pad>; what they give is cut below
        step_log_probs, state, attn = model.step(prev, state)  # (B, V), state, (B, S) | None
        log_probs.append(step_log_probs.gather(1, gold[:, t : t + 1]).squeeze(1))
        weights.append(attn)
        if top_k:
            likely = step_log_probs.float().clone()  # (B, V)
            likely[:, [Vocabulary.pad_id, Vocabulary.sos_id]] = float("-inf")  # never generated
            best = likely.topk(min(top_k, likely.size(1) - 2), dim=1)  # (B, k) each
            top_log_probs.append(best.values)
            top_ids.append(best.indices)
        prev = gold[:, t]
    read = torch.stack(log_probs, dim=1).float().cpu()  # (B, T + 1)
    top_id = torch.stack(top_ids, dim=1).cpu() if top_k else None  # (B, T + 1, k)
    top_log_prob = torch.stack(top_log_probs, dim=1).cpu() if top_k else None  # (B, T + 1, k)
    attention = None if weights[0] is None else torch.stack(weights, dim=1).float()  # (B, T + 1, S)
    src_lengths = (~src_pad_mask).sum(dim=1).tolist()
    scored = []
    for b, target in enumerate(targets):
        n = len(target) + 1
        scored.append(
            ScoredTarget(
                read[b, :n].tolist(),
                None if attention is None else attention[b, :n, : src_lengths[b]],
                None if top_id is None else top_id[b, :n],
                None if top_log_prob is None else top_log_prob[b, :n],
            )
        )
    return scored


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT's length penalty (Wu et al. 2016, eq. 14): ((5 + |Y|) / 6) ** alpha, |Y| counting <eos>.
    Hypotheses are ranked by log-probability / penalty; alpha = 0 ranks by log-probability alone."""
    return ((5 + length) / 6) ** alpha


def beam_step(cumulative: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``size`` best extensions of each sentence's beams, best first (fairseq's ``BeamSearch.step``).

    cumulative (A, K, V): each beam's score plus the log-probability of each next token.
    Returns scores, token ids and back-pointers (the beam each extends), each (A, size).
    """
    batch, beams, vocab = cumulative.shape
    scores, flat = cumulative.reshape(batch, beams * vocab).topk(size, dim=1)  # (A, size)
    return scores, flat % vocab, flat // vocab


class Extensions(NamedTuple):
    """One step's extensions of the beams, (A, 2K) each, every sentence's best first."""

    scores: Tensor  # cumulative log-probability, the new token included
    tokens: Tensor  # the new token
    rows: Tensor  # the row of the beams each extends (b·K + beam)


@dataclass
class Beams:
    """The live prefixes of the sentences still searched, K each: row b·K + j is beam j of the
    sentence ``sentences[b]`` of the batch.  A finished sentence leaves (:meth:`select`)."""

    sentences: list[int]  # (A,) the batch index of each sentence still searched
    scores: Tensor  # (A, K) cumulative log-probability of each prefix
    tokens: Tensor  # (A·K, t) the prefixes, without <sos>
    attention: Tensor | None  # (A·K, t, S) the weights behind each prefix token; None without attention
    max_lengths: Tensor  # (A·K,) the most words, per row
    min_lengths: Tensor  # (A·K,) the fewest words, per row
    forced: Tensor | None = None  # (A·K, P) the target prefix each row must write, padded with -1

    @classmethod
    def start(
        cls,
        beam_size: int,
        max_lengths: Tensor,
        min_lengths: Tensor | None = None,
        forced: Tensor | None = None,
    ) -> Self:
        """K beams per sentence, all the empty prefix; only the first is expanded (the rest score -inf).
        max_lengths, min_lengths (B,); forced (B, P) or None.  While a sentence writes its forced
        prefix, only one extension is possible, so the other beams stay at -inf until it ends."""
        batch, device = len(max_lengths), max_lengths.device
        scores = torch.full((batch, beam_size), float("-inf"), device=device)
        scores[:, 0] = 0.0
        min_lengths = torch.zeros_like(max_lengths) if min_lengths is None else min_lengths.to(device)
        return cls(
            sentences=list(range(batch)),
            scores=scores,
            tokens=torch.zeros(batch * beam_size, 0, dtype=torch.long, device=device),
            attention=None,
            max_lengths=max_lengths.repeat_interleave(beam_size),
            min_lengths=min_lengths.repeat_interleave(beam_size),
            forced=None if forced is None else forced.repeat_interleave(beam_size, dim=0),
        )

    @property
    def size(self) -> int:
        return self.scores.size(1)

    def last_tokens(self) -> Tensor:
        """(A·K,) what each row feeds the model next: its last token (the first step, ``<sos>`` alone,
        :func:`beam_search` takes once per sentence before the beams exist as rows)."""
        return self.tokens[:, -1]

    def attention_through(self, step: Tensor | None) -> Tensor | None:
        """Each row's attention with this step's weights ``step`` (A·K, S) last: (A·K, t + 1, S)."""
        if step is None:
            return None
        return step[:, None] if self.attention is None else torch.cat([self.attention, step[:, None]], 1)

    def advance(self, extensions: Extensions, attention: Tensor | None) -> tuple[Self, Tensor]:
        """The K best extensions that do not end in ``<eos>`` become the beams.  attention (A·K, t + 1, S)
        or None: each row's weights through this step.  Returns the new beams and the row each came
        from (A·K,), for ``model.reorder``."""
        k = self.size
        going = extensions.tokens != Vocabulary.eos_id  # at most K of 2K end (one <eos> per beam)
        pick = (going & (going.cumsum(dim=1) <= k)).nonzero()[:, 1].view(-1, k)  # (A, K) places in 2K
        origin = extensions.rows.gather(1, pick).view(-1)  # (A·K,)
        new_tokens = extensions.tokens.gather(1, pick).view(-1, 1)  # (A·K, 1)
        advanced = dataclasses.replace(
            self,
            scores=extensions.scores.gather(1, pick),
            tokens=torch.cat([self.tokens.index_select(0, origin), new_tokens], dim=1),
            attention=None if attention is None else attention.index_select(0, origin),
        )
        return advanced, origin

    def select(self, kept: list[int]) -> tuple[Self, Tensor]:
        """Only the sentences at places ``kept`` of ``sentences``: their beams and rows (len(kept)·K,)."""
        k, device = self.size, self.scores.device
        places = torch.tensor(kept, device=device)
        rows = (places[:, None] * k + torch.arange(k, device=device)).view(-1)
        beams = dataclasses.replace(
            self,
            sentences=[self.sentences[b] for b in kept],
            scores=self.scores.index_select(0, places),
            tokens=self.tokens.index_select(0, rows),
            attention=None if self.attention is None else self.attention.index_select(0, rows),
            max_lengths=self.max_lengths.index_select(0, rows),
            min_lengths=self.min_lengths.index_select(0, rows),
            forced=None if self.forced is None else self.forced.index_select(0, rows),
        )
        return beams, rows


Finished = list[tuple[float, Hypothesis]]  # a sentence's ended hypotheses with their penalised scores


def finalize_hypotheses(
    finished: list[Finished],
    beams: Beams,
    extensions: Extensions,
    attention: Tensor | None,
    *,
    src_lengths: list[int],
    alpha: float,
) -> None:
    """Move the extensions that end into ``finished[sentence]`` as (score / length_penalty, hypothesis)
    (fairseq's ``finalize_hypos``): an ``<eos>`` among a sentence's K best extensions, with a finite
    score.  attention (A·K, t + 1, S) or None: each row's weights through this step, cut at the source's
    length ``src_lengths[sentence]``."""
    k = beams.size  # only the K best can end
    ends = (extensions.tokens[:, :k] == Vocabulary.eos_id) & extensions.scores[:, :k].isfinite()
    for b, i in ends.nonzero().tolist():
        sentence, row, score = beams.sentences[b], int(extensions.rows[b, i]), float(extensions.scores[b, i])
        prefix = beams.tokens[row].tolist()
        weights = None if attention is None else attention[row, :, : src_lengths[sentence]].clone()
        finished[sentence].append(
            (score / length_penalty(len(prefix) + 1, alpha), Hypothesis(prefix, score, weights))
        )


def is_finished(finished: Finished, best_live: float, next_length: int, n_best: int, alpha: float) -> bool:
    """A sentence is done when its ``n_best``-th best ended hypothesis ranks at or above its best live
    prefix (log-probability ``best_live``) as that would rank ending at the next step, ``next_length``
    tokens with ``<eos>``."""
    if len(finished) < n_best:
        return False
    nth = sorted(penalised for penalised, _ in finished)[-n_best]
    return nth >= best_live / length_penalty(next_length, alpha)


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_pad_mask: Tensor,
    max_lengths: Tensor,
    *,
    beam_size: int = 5,
    n_best: int = 1,
    alpha: float = 1.0,
    min_lengths: Tensor | None = None,
    prefixes: list[list[int]] | None = None,
) -> list[list[Hypothesis]]:
    """Keep the ``beam_size`` best prefixes of every sentence at once (B × K rows through the model).

    A hypothesis ends when ``<eos>`` is among its sentence's ``beam_size`` best extensions; a sentence
    is done when it has ``n_best`` ended hypotheses that rank above its best live prefix as that prefix
    would rank if it ended at the next step (as Hugging Face's ``early_stopping=False``).  Log
    probabilities only fall, so with ``alpha`` 0 nothing better can come; with ``alpha`` > 0 a longer
    one still could, but searching on for it costs much time for little BLEU (docs/benchmarks.md).
    ``min_lengths`` / ``max_lengths`` (B,) bound the number of words, ``<eos>`` not counted.
    ``prefixes`` (one id list per sentence, empty for none) are written first, as in
    :func:`greedy_search`; a sentence keeps one live hypothesis until its prefix is written.
    Returns, per sentence, the ``n_best`` hypotheses by descending score / length_penalty.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    k, device = beam_size, src.device
    forced = forced_tokens(prefixes, src.size(0), device)  # (B, P) or None
    max_lengths = fit_prefixes(max_lengths.to(device), forced)
    beams = Beams.start(k, max_lengths, min_lengths, forced)
    tiled = torch.arange(src.size(0), device=device).repeat_interleave(k)  # (B·K,) each row's sentence
    # the first step once per sentence (every beam is the empty prefix), then the rows repeated K times
    sos = torch.full((src.size(0),), Vocabulary.sos_id, dtype=torch.long, device=device)
    log_probs, state, attn = model.step(sos, model.init_state(model.encode(src, src_pad_mask)))
    attn = None if attn is None else attn.index_select(0, tiled)
    first = Step(log_probs.index_select(0, tiled), model.reorder(state, tiled), attn)
    src_lengths = (~src_pad_mask).sum(dim=1).tolist()
    return search_beams(model, first, beams, src_lengths=src_lengths, n_best=n_best, alpha=alpha)


class Step(NamedTuple):
    """What one decoding step gives: the next token's log-probabilities (R, V), the state, attention
    (R, S) or None."""

    log_probs: Tensor
    state: DecoderState
    attention: Tensor | None


def search_beams(
    model: Seq2Seq,
    step: Step,
    beams: Beams,
    *,
    src_lengths: list[int],
    n_best: int,
    alpha: float,
    restrict: Callable[[Tensor], Tensor | None] | None = None,
) -> list[list[Hypothesis]]:
    """Beam search's loop (:func:`beam_search`), from ``beams`` and the ``step`` that read their last
    tokens.  ``restrict`` (tokens written so far (A·K, t) → allowed next tokens (A·K, V) bool, or None
    for all) narrows each row's next token further, as completing a word being typed does."""
    k, device = beams.size, beams.scores.device
    log_probs, state, attn = step
    finished: list[Finished] = [[] for _ in range(len(beams.sentences))]
    while True:
        t = beams.tokens.size(1)  # words written so far
        force(constrain(log_probs, t, beams.max_lengths, beams.min_lengths), t, beams.forced)
        allowed = None if restrict is None else restrict(beams.tokens)
        if allowed is not None:
            log_probs.masked_fill_(~allowed, float("-inf"))
        cumulative = beams.scores[:, :, None] + log_probs.view(*beams.scores.shape, -1)  # (A, K, V)
        scores, tokens, back = beam_step(cumulative, 2 * k)  # (A, 2K): ≤ K end in <eos>, ≥ K go on
        rows = back + k * torch.arange(len(back), device=device)[:, None]  # (A, 2K)
        extensions, attention = Extensions(scores, tokens, rows), beams.attention_through(attn)
        finalize_hypotheses(finished, beams, extensions, attention, src_lengths=src_lengths, alpha=alpha)
        beams, origin = beams.advance(extensions, attention)
        best_live = beams.scores.max(dim=1).values.tolist()
        going = [
            b
            for b, sentence in enumerate(beams.sentences)
            if not is_finished(finished[sentence], best_live[b], t + 2, n_best, alpha)
        ]
        if not going:
            break
        state = model.reorder(state, origin, same_source=True)  # each row takes its new beam's place
        if len(going) < len(beams.sentences):  # the finished sentences leave the batch
            beams, kept_rows = beams.select(going)
            state = model.reorder(state, kept_rows)
        log_probs, state, attn = model.step(beams.last_tokens(), state)  # (A·K, V), state, (A·K, S)
    return [[h for _, h in sorted(f, key=lambda x: -x[0])[:n_best]] for f in finished]
