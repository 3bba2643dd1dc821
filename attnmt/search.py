"""Decoding, written against the model's decoder contract only (see :mod:`attnmt.model`)."""

from dataclasses import dataclass

import torch
from torch import Tensor

from attnmt.vocab import Vocabulary


@dataclass
class Hypothesis:
    tokens: list[int]  # without <sos> and <eos>
    score: float  # sum of log-probabilities, <eos> included
    attention: Tensor | None  # (len(tokens) + 1, S): one row per emitted token, <eos> last


def max_output_lengths(src_pad_mask: Tensor, ratio: float = 2.0, extra: int = 10) -> Tensor:
    """The most words an output may have, per sentence: ``ratio`` × source length (its ``<eos>``
    counted) + ``extra``.  The output's own ``<eos>`` comes on top."""
    return ((~src_pad_mask).sum(dim=1) * ratio).long() + extra


@torch.inference_mode()
def greedy_search(model, src: Tensor, src_pad_mask: Tensor, max_lengths: Tensor) -> list[Hypothesis]:
    """Pick the most probable word at each step until ``<eos>``, or ``<eos>`` after ``max_lengths`` (B,)
    words.

    src (B, S), src_pad_mask (B, S) → one :class:`Hypothesis` per sentence.  A sentence that has
    ended leaves the batch, so the model's work follows the sentences still being written.
    """
    batch, device = src.size(0), src.device
    state = model.init_state(model.encode(src, src_pad_mask))
    longest = int(max_lengths.max())
    tokens = torch.full((batch, longest + 1), Vocabulary.pad_id, dtype=torch.long, device=device)
    attention: Tensor | None = None  # (B, T, S)
    scores = torch.zeros(batch, device=device)
    active = torch.arange(batch, device=device)  # the sentences still being written
    lengths = max_lengths.to(device)
    prev = torch.full((batch,), Vocabulary.sos_id, dtype=torch.long, device=device)
    for t in range(longest + 1):  # t words written so far
        log_probs, state, attn = model.step(prev, state)  # (A, V), state, (A, S)
        log_probs[:, [Vocabulary.pad_id, Vocabulary.sos_id]] = float("-inf")  # never generated
        prev = log_probs.argmax(dim=-1)
        prev = torch.where(t >= lengths, Vocabulary.eos_id, prev)  # out of room: end here
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


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT's length penalty (Wu et al. 2016, eq. 14): ((5 + |Y|) / 6) ** alpha, |Y| counting <eos>.
    Hypotheses are ranked by log-probability / penalty; alpha = 0 ranks by log-probability alone."""
    return ((5 + length) / 6) ** alpha


@torch.inference_mode()
def beam_search(
    model,
    src: Tensor,
    src_pad_mask: Tensor,
    max_lengths: Tensor,
    *,
    beam_size: int = 5,
    n_best: int = 1,
    alpha: float = 1.0,
    min_lengths: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Keep the ``beam_size`` best prefixes of every sentence at once (B × K rows through the model).

    A hypothesis ends when ``<eos>`` is among its sentence's ``beam_size`` best extensions; a sentence
    is done when it has ``n_best`` ended hypotheses that rank above its best live prefix as that prefix
    would rank if it ended at the next step (as Hugging Face's ``early_stopping=False``).  Log
    probabilities only fall, so with ``alpha`` 0 nothing better can come; with ``alpha`` > 0 a longer
    one still could, but searching on for it cost 35–40 % more time for 0.02–0.14 dev BLEU
    (docs/benchmarks.md).
    ``min_lengths`` / ``max_lengths`` (B,) bound the number of words, ``<eos>`` not counted.
    Returns, per sentence, the ``n_best`` hypotheses by descending score / length_penalty.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    k, device = beam_size, src.device
    active = list(range(src.size(0)))  # the sentences still searched; a finished one leaves the batch
    rows = torch.arange(len(active), device=device).repeat_interleave(k)  # (A*K,) sentence of each row
    state = model.reorder(model.init_state(model.encode(src, src_pad_mask)), rows)
    prev = torch.full((len(active) * k,), Vocabulary.sos_id, dtype=torch.long, device=device)
    scores = torch.full((len(active), k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start as the same empty prefix: expand only one of them
    history = torch.zeros(len(active) * k, 0, dtype=torch.long, device=device)  # tokens so far
    attn_history: Tensor | None = None  # (A*K, t, S)
    longest = int(max_lengths.max())
    max_lengths = max_lengths.to(device)
    min_lengths = torch.zeros_like(max_lengths) if min_lengths is None else min_lengths.to(device)
    finished: list[list[tuple[float, Hypothesis]]] = [[] for _ in active]
    for t in range(longest + 1):  # t words written so far
        batch = len(active)
        log_probs, state, attn = model.step(prev, state)  # (A*K, V), state, (A*K, S) or None
        vocab = log_probs.size(-1)
        log_probs[:, [Vocabulary.pad_id, Vocabulary.sos_id]] = float("-inf")
        must_end = (t >= max_lengths).repeat_interleave(k)  # out of room: <eos> only
        log_probs[must_end] = log_probs[must_end].masked_fill(
            torch.arange(vocab, device=device) != Vocabulary.eos_id, float("-inf")
        )
        log_probs[(t < min_lengths).repeat_interleave(k), Vocabulary.eos_id] = float("-inf")
        candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        top_scores, top = candidates.topk(2 * k, dim=1)  # (A, 2K): ≤ K end in <eos>, ≥ K go on
        beam, token = top // vocab, top % vocab
        source_row = (torch.arange(batch, device=device)[:, None] * k + beam).view(-1)
        if attn is not None:
            step_attn = attn.index_select(0, source_row).view(batch, 2 * k, 1, -1)
            past = None if attn_history is None else attn_history.index_select(0, source_row)
        ends = (token == Vocabulary.eos_id) & top_scores.isfinite()
        ends[:, k:] = False  # only an <eos> among the K best extensions ends a hypothesis
        for b, i in ends.nonzero().tolist():
            sentence = active[b]
            tokens = history[source_row[b * 2 * k + i]].tolist()
            weights = None
            if attn is not None:
                rows_attn = step_attn[b, i]
                if past is not None:
                    rows_attn = torch.cat([past[b * 2 * k + i], rows_attn], dim=0)
                weights = rows_attn[:, : int((~src_pad_mask[sentence]).sum())]
            score = float(top_scores[b, i])
            finished[sentence].append(
                (score / length_penalty(len(tokens) + 1, alpha), Hypothesis(tokens, score, weights))
            )
        # the K best extensions that do not end become the new beams
        alive = (token != Vocabulary.eos_id).float()
        rank = alive.cumsum(dim=1)
        keep = (alive > 0) & (rank <= k)
        pick = keep.nonzero()[:, 1].view(batch, k)  # (A, K) positions among the 2K candidates
        scores = top_scores.gather(1, pick)
        chosen = (torch.arange(batch, device=device)[:, None] * 2 * k + pick).view(-1)
        origin = source_row.index_select(0, chosen)
        prev = token.view(-1).index_select(0, chosen)
        history = torch.cat([history.index_select(0, origin), prev[:, None]], dim=1)
        if attn is not None:
            new_attn = attn.index_select(0, origin)[:, None]
            attn_history = (
                new_attn
                if attn_history is None
                else torch.cat([attn_history.index_select(0, origin), new_attn], 1)
            )
        # a sentence is done when its n-th best ended hypothesis ranks above its best live prefix ended
        # at the next step (t + 2 tokens with <eos>)
        going = []
        for b, best in enumerate(scores.max(dim=1).values.tolist()):
            ended = finished[active[b]]
            if len(ended) >= n_best:
                nth = sorted(s for s, _ in ended)[-n_best]
                if nth >= best / length_penalty(t + 2, alpha):
                    continue
            going.append(b)
        if not going:
            break
        if len(going) < batch:  # the finished sentences leave the batch
            keep_sentences = torch.tensor(going, device=device)
            keep_rows = (keep_sentences[:, None] * k + torch.arange(k, device=device)).view(-1)
            origin = origin.index_select(0, keep_rows)
            prev, history = prev.index_select(0, keep_rows), history.index_select(0, keep_rows)
            if attn_history is not None:
                attn_history = attn_history.index_select(0, keep_rows)
            scores = scores.index_select(0, keep_sentences)
            max_lengths = max_lengths.index_select(0, keep_sentences)
            min_lengths = min_lengths.index_select(0, keep_sentences)
            active = [active[b] for b in going]
        state = model.reorder(state, origin)
    return [[h for _, h in sorted(f, key=lambda x: -x[0])[:n_best]] for f in finished]
