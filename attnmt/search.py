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
