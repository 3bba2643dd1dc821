"""Greedy search against a scripted model: the per-step distributions are written in the test."""

import math
from dataclasses import dataclass

import torch

from attnmt.search import greedy_search, max_output_lengths

EOS, A, B_, C = 3, 4, 5, 6
V = 7


@dataclass
class ScriptedState:
    step: torch.Tensor  # (B,) how many tokens each row has produced
    row: torch.Tensor  # (B,) which script the row follows


class ScriptedModel:
    """Row r at step t returns the distribution SCRIPTS[r][t] (the last one repeats)."""

    def __init__(self, scripts: list[list[dict[int, float]]]):
        self.scripts = scripts

    def encode(self, src, src_pad_mask):
        return src.size(0)

    def init_state(self, batch):
        return ScriptedState(torch.zeros(batch, dtype=torch.long), torch.arange(batch))

    def step(self, prev, state):
        log_probs = torch.full((prev.size(0), V), -1e9)
        for i, (t, r) in enumerate(zip(state.step.tolist(), state.row.tolist(), strict=True)):
            script = self.scripts[r]
            for token, p in script[min(t, len(script) - 1)].items():
                log_probs[i, token] = math.log(p)
        attn = torch.nn.functional.one_hot(state.step.clamp(max=3), 4).float()  # step t looks at source t
        return log_probs, ScriptedState(state.step + 1, state.row), attn

    def reorder(self, state, index):
        return ScriptedState(state.step[index], state.row[index])


def _src(batch: int, length: int = 4):
    return torch.zeros(batch, length, dtype=torch.long), torch.zeros(batch, length, dtype=torch.bool)


def test_greedy_takes_the_most_probable_token_until_eos():
    model = ScriptedModel([[{A: 0.6, B_: 0.4}, {C: 0.7, EOS: 0.3}, {EOS: 0.9, A: 0.1}]])
    src, mask = _src(1)
    (hyp,) = greedy_search(model, src, mask, torch.tensor([10]))
    assert hyp.tokens == [A, C]
    assert math.isclose(hyp.score, math.log(0.6) + math.log(0.7) + math.log(0.9), rel_tol=1e-6)
    assert hyp.attention.tolist() == torch.eye(4)[:3].tolist()  # one row per emitted token, <eos> included


def test_each_sentence_stops_at_its_own_eos_in_a_batch():
    short = [{EOS: 1.0}]
    long = [{A: 1.0}, {B_: 1.0}, {C: 1.0}, {EOS: 1.0}]
    model = ScriptedModel([long, short])
    src, mask = _src(2)
    hyps = greedy_search(model, src, mask, torch.tensor([10, 10]))
    assert [h.tokens for h in hyps] == [[A, B_, C], []]
    assert hyps[1].score == 0.0


def test_the_maximum_length_ends_a_hypothesis_with_eos():
    model = ScriptedModel([[{A: 0.9, EOS: 0.1}]])  # would never choose <eos>
    src, mask = _src(1)
    (hyp,) = greedy_search(model, src, mask, torch.tensor([4]))
    assert hyp.tokens == [A, A, A]
    assert math.isclose(hyp.score, 3 * math.log(0.9) + math.log(0.1), rel_tol=1e-6)


def test_maximum_output_length_grows_with_the_source():
    mask = torch.tensor([[False] * 5, [False] * 2 + [True] * 3])
    assert max_output_lengths(mask, ratio=2.0, extra=10).tolist() == [20, 14]


def test_attention_rows_follow_the_tokens_and_padding_columns_are_cut():
    model = ScriptedModel([[{A: 1.0}, {EOS: 1.0}], [{B_: 1.0}, {C: 1.0}, {EOS: 1.0}]])
    src = torch.zeros(2, 4, dtype=torch.long)
    mask = torch.tensor([[False, False, True, True], [False, False, False, False]])  # row 0: 2 real tokens
    first, second = greedy_search(model, src, mask, torch.tensor([10, 10]))
    assert first.tokens == [A] and first.attention.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert second.tokens == [B_, C] and second.attention.tolist() == torch.eye(4)[:3].tolist()
