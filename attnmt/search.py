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
    """The longest output allowed per sentence: ``ratio`` × source length + ``extra`` tokens."""
    return ((~src_pad_mask).sum(dim=1) * ratio).long() + extra


@torch.no_grad()
def greedy_search(model, src: Tensor, src_pad_mask: Tensor, max_lengths: Tensor) -> list[Hypothesis]:
    """Pick the most probable word at each step until ``<eos>`` or ``max_lengths`` (B,) tokens.

    src (B, S), src_pad_mask (B, S) → one :class:`Hypothesis` per sentence.
    """
    batch = src.size(0)
    state = model.init_state(model.encode(src, src_pad_mask))
    prev = torch.full((batch,), Vocabulary.sos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    scores = torch.zeros(batch, device=src.device)
    tokens, attns = [], []
    for t in range(int(max_lengths.max())):
        log_probs, state, attn = model.step(prev, state)  # (B, V), state, (B, S)
        log_probs[:, [Vocabulary.pad_id, Vocabulary.sos_id]] = float("-inf")  # never generated
        prev = log_probs.argmax(dim=-1)
        prev = torch.where(t + 1 >= max_lengths, Vocabulary.eos_id, prev)  # out of room: end here
        prev = prev.masked_fill(finished, Vocabulary.pad_id)
        scores += log_probs.gather(1, prev[:, None]).squeeze(1).masked_fill(finished, 0.0)
        tokens.append(prev)
        attns.append(attn)
        finished |= prev == Vocabulary.eos_id
        if finished.all():
            break
    tokens = torch.stack(tokens, dim=1).tolist()  # (B, T)
    attention = None if attns[0] is None else torch.stack(attns, dim=1)  # (B, T, S)
    hypotheses = []
    for b, row in enumerate(tokens):
        length = row.index(Vocabulary.eos_id)
        weights = None if attention is None else attention[b, : length + 1, : int((~src_pad_mask[b]).sum())]
        hypotheses.append(Hypothesis(row[:length], float(scores[b]), weights))
    return hypotheses


def length_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """GNMT's length penalty (Wu et al. 2016, eq. 14): ((5 + |Y|) / 6) ** alpha, |Y| counting <eos>.
    Hypotheses are ranked by log-probability / penalty; alpha = 0 ranks by log-probability alone."""
    return ((5 + length) / 6) ** alpha


@torch.no_grad()
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
    is done when it has ``n_best`` ended hypotheses that no live prefix can still beat: log-probabilities
    only fall, so a prefix's best final ranking score is its score over the penalty at its longest
    length.  ``min_lengths`` / ``max_lengths`` (B,) bound the output length, ``<eos>`` excluded.
    Returns, per sentence, the ``n_best`` hypotheses by descending score / length_penalty.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    batch, k, device = src.size(0), beam_size, src.device
    rows = torch.arange(batch, device=device).repeat_interleave(k)  # (B*K,) sentence of each row
    state = model.reorder(model.init_state(model.encode(src, src_pad_mask)), rows)
    prev = torch.full((batch * k,), Vocabulary.sos_id, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start as the same empty prefix: expand only one of them
    history = torch.zeros(batch * k, 0, dtype=torch.long, device=device)  # tokens so far
    attn_history: Tensor | None = None  # (B*K, t, S)
    max_lengths, done = max_lengths.to(device), [False] * batch
    min_lengths = torch.zeros_like(max_lengths) if min_lengths is None else min_lengths.to(device)
    finished: list[list[tuple[float, Hypothesis]]] = [[] for _ in range(batch)]
    for t in range(int(max_lengths.max())):
        log_probs, state, attn = model.step(prev, state)  # (B*K, V), state, (B*K, S) or None
        vocab = log_probs.size(-1)
        log_probs[:, [Vocabulary.pad_id, Vocabulary.sos_id]] = float("-inf")
        must_end = (t + 1 >= max_lengths).repeat_interleave(k)  # out of room: <eos> only
        log_probs[must_end] = log_probs[must_end].masked_fill(
            torch.arange(vocab, device=device) != Vocabulary.eos_id, float("-inf")
        )
        log_probs[(t < min_lengths).repeat_interleave(k), Vocabulary.eos_id] = float("-inf")
        candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        top_scores, top = candidates.topk(2 * k, dim=1)  # (B, 2K): ≤ K end in <eos>, ≥ K go on
        beam, token = top // vocab, top % vocab
        source_row = (torch.arange(batch, device=device)[:, None] * k + beam).view(-1)
        if attn is not None:
            step_attn = attn.index_select(0, source_row).view(batch, 2 * k, 1, -1)
            past = None if attn_history is None else attn_history.index_select(0, source_row)
        ends = (token == Vocabulary.eos_id) & top_scores.isfinite()
        ends[:, k:] = False  # only an <eos> among the K best extensions ends a hypothesis
        for b, i in ends.nonzero().tolist():
            if done[b]:
                continue
            tokens = history[source_row[b * 2 * k + i]].tolist()
            weights = None
            if attn is not None:
                rows_attn = step_attn[b, i]
                if past is not None:
                    rows_attn = torch.cat([past[b * 2 * k + i], rows_attn], dim=0)
                weights = rows_attn[:, : int((~src_pad_mask[b]).sum())]
            score = float(top_scores[b, i])
            finished[b].append(
                (score / length_penalty(len(tokens) + 1, alpha), Hypothesis(tokens, score, weights))
            )
        # the K best extensions that do not end become the new beams
        alive = (token != Vocabulary.eos_id).float()
        rank = alive.cumsum(dim=1)
        keep = (alive > 0) & (rank <= k)
        pick = keep.nonzero()[:, 1].view(batch, k)  # (B, K) positions among the 2K candidates
        scores = top_scores.gather(1, pick)
        chosen = (torch.arange(batch, device=device)[:, None] * 2 * k + pick).view(-1)
        origin = source_row.index_select(0, chosen)
        prev = token.view(-1).index_select(0, chosen)
        state = model.reorder(state, origin)
        history = torch.cat([history.index_select(0, origin), prev[:, None]], dim=1)
        if attn is not None:
            new_attn = attn.index_select(0, origin)[:, None]
            attn_history = (
                new_attn
                if attn_history is None
                else torch.cat([attn_history.index_select(0, origin), new_attn], 1)
            )
        best_alive = scores.max(dim=1).values.tolist()  # ≤ 0: a prefix of t + 1 tokens ends at t + 2 … max
        for b, (best, longest) in enumerate(zip(best_alive, max_lengths.tolist(), strict=True)):
            if not done[b] and len(finished[b]) >= n_best:
                nth = sorted(s for s, _ in finished[b])[-n_best]
                best_possible = max(
                    best / length_penalty(t + 2, alpha), best / length_penalty(longest, alpha)
                )
                done[b] = nth >= best_possible
        if all(done):
            break
    return [[h for _, h in sorted(f, key=lambda x: -x[0])[:n_best]] for f in finished]
