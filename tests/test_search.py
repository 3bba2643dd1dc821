"""Search against scripted models whose per-step distributions are written in the test; the beam
bookkeeping on hand-made tensors, without a model; invariants on a real untrained model."""

import math
from dataclasses import dataclass

import pytest
import torch

from attnmt.search import (
    Beams,
    Extensions,
    Hypothesis,
    beam_search,
    beam_step,
    constrain,
    finalize_hypotheses,
    greedy_search,
    is_finished,
    length_penalty,
    max_output_lengths,
    score_targets,
)

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

    def reorder(self, state, index, *, same_source=False):
        if same_source:  # search's promise: each row takes the place of a row of its own sentence
            assert torch.equal(state.row[index], state.row)
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


def test_the_maximum_length_counts_words_and_then_ends_with_eos():
    model = ScriptedModel([[{A: 0.9, EOS: 0.1}]])  # would never choose <eos>
    src, mask = _src(1)
    (hyp,) = greedy_search(model, src, mask, torch.tensor([3]))
    assert hyp.tokens == [A, A, A]  # 3 words, then <eos> (not counted)
    assert math.isclose(hyp.score, 3 * math.log(0.9) + math.log(0.1), rel_tol=1e-6)
    (empty,) = greedy_search(model, src, mask, torch.tensor([0]))
    assert empty.tokens == [] and math.isclose(empty.score, math.log(0.1), rel_tol=1e-6)


def test_maximum_output_length_grows_with_the_source():
    mask = torch.tensor([[False] * 5, [False] * 2 + [True] * 3])
    assert max_output_lengths(mask).tolist() == [20, 14]


def test_attention_rows_follow_the_tokens_and_padding_columns_are_cut():
    model = ScriptedModel([[{A: 1.0}, {EOS: 1.0}], [{B_: 1.0}, {C: 1.0}, {EOS: 1.0}]])
    src = torch.zeros(2, 4, dtype=torch.long)
    mask = torch.tensor([[False, False, True, True], [False, False, False, False]])  # row 0: 2 real tokens
    first, second = greedy_search(model, src, mask, torch.tensor([10, 10]))
    assert first.tokens == [A] and first.attention.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert second.tokens == [B_, C] and second.attention.tolist() == torch.eye(4)[:3].tolist()


# ---- beam search ---------------------------------------------------------------------------------

D = {  # next-token distributions by prefix; unlisted tokens get probability ~0 (log -1e9)
    (): {A: 0.6, B_: 0.4},
    (A,): {C: 0.5, EOS: 0.3, B_: 0.2},
    (B_,): {EOS: 0.8, C: 0.2},
    (A, C): {EOS: 1.0},
    (A, B_): {EOS: 1.0},
    (B_, C): {EOS: 1.0},
}
# Greedy: A (.6), C (.5), <eos> (1.0) → [A, C], p = .30.
# Beam 2, step 0: beams A (.6), B (.4).
#   step 1 extensions: B <eos> .32, A C .30, A <eos> .18, A B .12, B C .08.  The 2 best: B <eos> ends
#   [B] (p .32); A C and A B (.12) stay alive (A <eos> is 3rd, not among the 2 best: not ended).
#   step 2: A C <eos> .30 and A B <eos> .12 end; nothing is left alive.
# Ranked by log p (alpha 0): [B] .32 > [A, C] .30 > [A, B] .12.
# GNMT penalty, alpha 1: lp(|Y|) = (5 + |Y|) / 6 with <eos> counted:
#   [B]: log .32 / (7/6) = -0.977;  [A, C]: log .30 / (8/6) = -0.903;  [A, B]: log .12 / (8/6) = -1.590.
#   So [A, C] wins, though [B] ended first: after step 1 the live A C (log p -1.204), ended at the next
#   step, would rank at -1.204 / lp(3) = -0.903 > -0.977, so the beam goes on.


@dataclass
class PrefixState:
    prefixes: list[tuple[int, ...]]


class PrefixModel:
    """Distributions looked up by the prefix emitted so far (the same for every sentence)."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]]):
        self.table = table

    def encode(self, src, src_pad_mask):
        return src.size(0)

    def init_state(self, batch):
        return PrefixState([() for _ in range(batch)])

    def step(self, prev, state):
        prefixes = [p if t == SOS else (*p, t) for p, t in zip(state.prefixes, prev.tolist(), strict=True)]
        log_probs = torch.full((len(prefixes), V), -1e9)
        for i, prefix in enumerate(prefixes):
            for token, p in self.table.get(prefix, {EOS: 1.0}).items():
                log_probs[i, token] = math.log(p)
        attn = torch.full((len(prefixes), 4), 0.25)
        return log_probs, PrefixState(prefixes), attn

    def reorder(self, state, index, *, same_source=False):
        return PrefixState([state.prefixes[i] for i in index.tolist()])


SOS = 2


def test_beam_finds_a_more_probable_sentence_than_greedy():
    src, mask = _src(1)
    (greedy,) = greedy_search(PrefixModel(D), src, mask, torch.tensor([10]))
    assert greedy.tokens == [A, C]
    ((best,),) = beam_search(PrefixModel(D), src, mask, torch.tensor([10]), beam_size=2, alpha=0.0)
    assert best.tokens == [B_]
    assert math.isclose(best.score, math.log(0.32), rel_tol=1e-6)


def test_the_beam_takes_its_first_step_once_per_sentence():
    """Every beam starts as the empty prefix: the model reads <sos> once per sentence, not K times."""
    rows = []

    class Counting(ScriptedModel):
        def step(self, prev, state):
            rows.append(prev.size(0))
            return super().step(prev, state)

    scripts = [[{A: 0.7, B_: 0.3}, {C: 0.4, EOS: 0.6}, {EOS: 1.0}]] * 2
    src, mask = _src(2)
    hyps = beam_search(Counting(scripts), src, mask, torch.tensor([10, 10]), beam_size=3, n_best=2, alpha=0.0)
    assert rows[:2] == [2, 2 * 3]
    assert [[h.tokens for h in n_best] for n_best in hyps] == [[[A], [A, C]]] * 2  # p 0.42, 0.28


def test_the_beam_goes_on_after_its_first_hypothesis_ends_while_a_better_one_can_come():
    src, mask = _src(1)
    ((best,),) = beam_search(PrefixModel(D), src, mask, torch.tensor([10]), beam_size=2, alpha=1.0)
    assert best.tokens == [A, C]
    assert math.isclose(best.score, math.log(0.30), rel_tol=1e-6)  # the raw log-probability


class CountingPrefixModel(PrefixModel):
    steps = 0

    def step(self, prev, state):
        self.steps += 1
        return super().step(prev, state)


def test_the_beam_stops_when_no_live_prefix_ended_next_would_rank_higher():
    # [A] ends at step 1: log .45 / lp(2) = -0.684.  The live A C (log .36 = -1.022) would rank -0.766 if
    # it ended at step 2, so the search stops, though A C C … (p stays .36) would rank -0.41 at 10 tokens.
    model = CountingPrefixModel({(): {A: 0.9, B_: 0.1}, (A,): {EOS: 0.5, C: 0.4, B_: 0.1}, (A, C): {C: 1.0}})
    src, mask = _src(1)
    ((best,),) = beam_search(model, src, mask, torch.tensor([10]), beam_size=2, alpha=1.0)
    assert best.tokens == [A] and model.steps == 2


def test_n_best_lists_every_ended_hypothesis_by_penalised_score():
    src, mask = _src(1)
    (n_best,) = beam_search(PrefixModel(D), src, mask, torch.tensor([10]), beam_size=3, n_best=3, alpha=1.0)
    # beam 3: at step 1, A <eos> (.18) is 3rd of the extensions, so [A] ends too: log .18 / (7/6) = -1.470,
    # ahead of [A, B] (-1.590)
    assert [h.tokens for h in n_best] == [[A, C], [B_], [A]]
    penalised = [round(h.score / length_penalty(len(h.tokens) + 1, 1.0), 3) for h in n_best]
    assert penalised == [-0.903, -0.977, -1.47]
    assert all(h.attention.shape == (len(h.tokens) + 1, 4) for h in n_best)


def test_beam_respects_minimum_and_maximum_lengths():
    src, mask = _src(2)
    hyps = beam_search(
        PrefixModel(D),
        src,
        mask,
        torch.tensor([10, 2]),
        beam_size=2,
        alpha=0.0,
        min_lengths=torch.tensor([2, 0]),
    )
    assert hyps[0][0].tokens == [A, C]  # [B] is too short
    assert hyps[1][0].tokens == [B_]  # at most 2 words
    ((cut,),) = beam_search(PrefixModel(D), src[:1], mask[:1], torch.tensor([0]), beam_size=2)
    assert cut.tokens == [] and cut.score < -1e8  # no room for a word: <eos> at once, however improbable


def test_the_beam_maximum_length_counts_words_not_eos():
    # Every step: A .9, <eos> .1.  Beam 2, alpha 1, at most 3 words: the hypotheses that end are
    # [] log .1 / lp(1) = -2.303, [A] log .09 / lp(2) = -2.064, [A, A] log .081 / lp(3) = -1.885 and,
    # forced at the 4th step, [A, A, A] log .0729 / lp(4) = -2.619 / 1.5 = -1.745: the best.
    model = ScriptedModel([[{A: 0.9, EOS: 0.1}]])
    src, mask = _src(1)
    (n_best,) = beam_search(model, src, mask, torch.tensor([3]), beam_size=2, n_best=2, alpha=1.0)
    assert [h.tokens for h in n_best] == [[A, A, A], [A, A]]
    assert math.isclose(n_best[0].score, math.log(0.9**3 * 0.1), rel_tol=1e-6)


# ---- beam bookkeeping, without a model: step 1 of the beam-2 example above, by hand --------------------

INF = float("-inf")
LOG = torch.log  # log 0 = -inf: an impossible token


def _example_extensions(offset: int = 0) -> Extensions:
    """Step 1 of the beam-2 example: beam 0 = [A] (p .6), beam 1 = [B] (p .4), at rows offset, offset + 1."""
    p = torch.zeros(2, V)
    p[0, [C, EOS, B_]] = torch.tensor([0.5, 0.3, 0.2]) * 0.6  # A C .30, A <eos> .18, A B .12
    p[1, [EOS, C]] = torch.tensor([0.8, 0.2]) * 0.4  # B <eos> .32, B C .08
    scores, tokens, back = beam_step(LOG(p)[None], 4)
    return Extensions(scores[0:1], tokens[0:1], back[0:1] + offset)


def test_constrain_rules_out_pad_and_sos_and_enforces_both_length_bounds():
    log_probs = torch.randn(3, V)
    before = log_probs.clone()
    # after 2 words: row 0 may have at most 2 words, row 1 at least 3, row 2 is free
    constrain(log_probs, 2, max_lengths=torch.tensor([2, 5, 5]), min_lengths=torch.tensor([0, 3, 0]))
    allowed = log_probs.isfinite()
    assert torch.equal(log_probs[allowed], before[allowed])  # what stays allowed keeps its value
    allowed = allowed.tolist()
    assert allowed[0] == [t == EOS for t in range(V)]  # out of room: <eos> only
    assert allowed[1] == [t not in (0, SOS, EOS) for t in range(V)]  # too short to end
    assert allowed[2] == [t not in (0, SOS) for t in range(V)]  # <pad> and <sos> are never generated


def test_beam_step_returns_the_best_extensions_with_their_tokens_and_beams():
    # cumulative p: A C .30, A <eos> .18, A B .12 (beam 0), B <eos> .32, B C .08 (beam 1)
    extensions = _example_extensions()
    assert extensions.tokens.tolist() == [[EOS, C, EOS, B_]]
    assert extensions.rows.tolist() == [[1, 0, 0, 0]]  # the back-pointers: B, A, A, A
    torch.testing.assert_close(extensions.scores.exp(), torch.tensor([[0.32, 0.30, 0.18, 0.12]]))


def test_beams_start_as_one_empty_prefix_per_sentence():
    beams = Beams.start(3, max_lengths=torch.tensor([4, 6]))
    assert beams.scores.tolist() == [[0.0, INF, INF], [0.0, INF, INF]]  # only beam 0 is expanded
    assert beams.tokens.shape == (6, 0)  # the empty prefix, six times
    assert beams.max_lengths.tolist() == [4, 4, 4, 6, 6, 6] and beams.min_lengths.tolist() == [0] * 6


def _example_beams() -> Beams:
    """Sentences 0 and 2 of a batch after step 0: [A] .6 and [B] .4 each, one attention row per token."""
    return Beams(
        sentences=[0, 2],
        scores=LOG(torch.tensor([[0.6, 0.4], [0.6, 0.4]])),
        tokens=torch.tensor([[A], [B_], [A], [B_]]),
        attention=torch.tensor([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]], [[0.5, 0.5, 0.0]]]),
        max_lengths=torch.tensor([10] * 4),
        min_lengths=torch.tensor([0] * 4),
    )


def _example_step(beams: Beams) -> tuple[Extensions, torch.Tensor]:
    first, second = _example_extensions(), _example_extensions(offset=2)
    extensions = Extensions(*(torch.cat([f, s]) for f, s in zip(first, second, strict=True)))
    step = torch.tensor([[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.3, 0.7, 0.0], [0.4, 0.6, 0.0]])  # (A·K, S)
    return extensions, beams.attention_through(step)


def test_attention_through_a_step_appends_its_row():
    beams = _example_beams()
    _, attention = _example_step(beams)
    assert attention.shape == (4, 2, 3)
    assert torch.equal(attention[3], torch.tensor([[0.5, 0.5, 0.0], [0.4, 0.6, 0.0]]))  # past, then this step


def test_an_eos_among_the_k_best_ends_a_hypothesis_with_its_penalised_score():
    beams = _example_beams()
    extensions, attention = _example_step(beams)
    finished: list = [[], [], []]
    finalize_hypotheses(finished, beams, extensions, attention, src_lengths=[2, 1, 3], alpha=1.0)
    # K = 2: B <eos> (.32) is among the 2 best and ends; A <eos> (.18) is 3rd and does not
    assert finished[1] == []  # sentence 1 is not searched here
    for sentence, row, columns in [(0, 1, 2), (2, 3, 3)]:
        ((penalised, hyp),) = finished[sentence]
        assert hyp.tokens == [B_]
        assert math.isclose(hyp.score, math.log(0.32), rel_tol=1e-6)
        assert math.isclose(penalised, math.log(0.32) / (7 / 6), rel_tol=1e-6)  # lp(2) = (5 + 2) / 6
        assert hyp.attention.tolist() == attention[row, :, :columns].tolist()  # cut at the source length


def test_an_impossible_eos_ends_nothing():
    beams = _example_beams()
    extensions = Extensions(
        scores=torch.tensor([[-1.0, INF, INF, INF], [-1.0, -2.0, -3.0, -4.0]]),
        tokens=torch.tensor(
            [[A, EOS, EOS, C], [A, C, EOS, EOS]]
        ),  # <eos> at -inf; <eos> not among the K best
        rows=torch.tensor([[0, 1, 0, 1], [2, 3, 3, 2]]),
    )
    finished: list = [[], [], []]
    finalize_hypotheses(finished, beams, extensions, None, src_lengths=[3, 3, 3], alpha=1.0)
    assert finished == [[], [], []]


def test_the_k_best_candidates_that_go_on_become_the_beams():
    beams = _example_beams()
    extensions, attention = _example_step(beams)
    advanced, origin = beams.advance(extensions, attention)
    # extensions [B <eos>, A C, A <eos>, A B]: the two that do not end are A C (.30) and A B (.12)
    assert advanced.tokens.tolist() == [[A, C], [A, B_], [A, C], [A, B_]]
    assert origin.tolist() == [0, 0, 2, 2]  # both extend beam 0 ([A]): rows 0 and 2
    torch.testing.assert_close(advanced.scores.exp(), torch.tensor([[0.30, 0.12], [0.30, 0.12]]))
    assert advanced.last_tokens().tolist() == [C, B_, C, B_]
    assert advanced.attention[2].tolist() == attention[2].tolist()  # row 2's history follows it
    assert advanced.sentences == [0, 2]


def test_selected_sentences_keep_their_beams_and_rows():
    beams = _example_beams()
    kept, rows = beams.select([1])  # sentence 0 is done: only batch sentence 2 goes on
    assert rows.tolist() == [2, 3]
    assert kept.sentences == [2] and kept.tokens.tolist() == [[A], [B_]]
    assert kept.attention.tolist() == beams.attention[2:].tolist()
    assert kept.scores.tolist() == beams.scores[1:].tolist() and kept.max_lengths.tolist() == [10, 10]


def _ended(*penalised: float) -> list[tuple[float, Hypothesis]]:
    return [(s, Hypothesis([], s, None)) for s in penalised]


def test_a_sentence_is_finished_when_no_live_prefix_ending_next_would_rank_higher():
    # the beam-2 example after step 1: [B] ended at log .32 / lp(2) = -0.977; the live A C (log .30),
    # ending at the next step (3 tokens with <eos>), would rank at -1.204 / (8/6) = -0.903: go on
    assert not is_finished(_ended(-0.977), math.log(0.30), next_length=3, n_best=1, alpha=1.0)
    # the stopping example: [A] at -0.684 against A C (log .36 = -1.022) ending next: -0.766
    assert is_finished(_ended(-0.684), math.log(0.36), next_length=3, n_best=1, alpha=1.0)


def test_a_sentence_needs_n_best_ended_hypotheses_and_compares_the_nth():
    assert not is_finished(_ended(-0.1), -5.0, next_length=3, n_best=2, alpha=1.0)  # one of two ended
    # with alpha 0, raw log-probabilities: the 2nd best -0.9 against the live -0.8 (-0.8 > -0.9: go on)
    assert not is_finished(_ended(-0.1, -0.9), -0.8, next_length=3, n_best=2, alpha=0.0)
    assert is_finished(_ended(-0.1, -0.9, -3.0), -0.95, next_length=3, n_best=2, alpha=0.0)
    assert is_finished(_ended(-0.5), -0.5, next_length=3, n_best=1, alpha=0.0)  # a tie stops


# ---- beam search on a real (untrained) model -------------------------------------------------------


def _real_model_and_batch(seed: int = 0):
    from attnmt.config import ModelConfig
    from attnmt.data import pad
    from attnmt.model import build_model

    torch.manual_seed(seed)
    model = build_model(ModelConfig(embed_size=16, hidden_size=32, dropout=0.0), 30, 30).eval()
    g = torch.Generator().manual_seed(seed)
    sentences = [[*torch.randint(4, 30, (int(n),), generator=g).tolist(), EOS] for n in [3, 8, 1, 5, 6, 2]]
    src, mask = pad(sentences)
    return model, src, mask


def test_beam_one_without_penalty_is_greedy():
    model, src, mask = _real_model_and_batch()
    greedy = greedy_search(model, src, mask, max_output_lengths(mask))
    beam = beam_search(model, src, mask, max_output_lengths(mask), beam_size=1, alpha=0.0)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    for g, (b,) in zip(greedy, beam, strict=True):
        assert math.isclose(g.score, b.score, rel_tol=1e-5)
        torch.testing.assert_close(g.attention, b.attention)


def test_the_top_of_the_n_best_list_is_the_one_best():
    model, src, mask = _real_model_and_batch(1)
    one = beam_search(model, src, mask, max_output_lengths(mask), beam_size=4)
    many = beam_search(model, src, mask, max_output_lengths(mask), beam_size=4, n_best=4)
    assert [o[0].tokens for o in one] == [m[0].tokens for m in many]
    assert all(len(m) == 4 for m in many)


def test_batched_beam_equals_one_sentence_at_a_time():
    model, src, mask = _real_model_and_batch(2)
    lengths = max_output_lengths(mask)
    together = beam_search(model, src, mask, lengths, beam_size=3, n_best=2)
    for i in range(src.size(0)):
        real = int((~mask[i]).sum())
        (alone,) = beam_search(
            model, src[i : i + 1, :real], mask[i : i + 1, :real], lengths[i : i + 1], beam_size=3, n_best=2
        )
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        for a, t in zip(alone, together[i], strict=True):
            assert math.isclose(a.score, t.score, rel_tol=1e-4)
            torch.testing.assert_close(a.attention, t.attention, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_batched_greedy_equals_one_sentence_at_a_time(architecture):
    """Sentences that end early leave the batch; the others' results must not change."""
    from attnmt.config import ModelConfig
    from attnmt.model import build_model

    torch.manual_seed(4)
    config = ModelConfig(architecture=architecture, embed_size=16, hidden_size=32, dropout=0.0)
    model = build_model(config, 30, 30).eval()
    _, src, mask = _real_model_and_batch(4)
    lengths = torch.tensor([2, 9, 4, 7, 1, 6])  # also cut some sentences short
    together = greedy_search(model, src, mask, lengths)
    assert len({len(h.tokens) for h in together}) > 2  # they end at different steps
    for i in range(src.size(0)):
        real = int((~mask[i]).sum())
        (alone,) = greedy_search(model, src[i : i + 1, :real], mask[i : i + 1, :real], lengths[i : i + 1])
        assert alone.tokens == together[i].tokens
        assert math.isclose(alone.score, together[i].score, rel_tol=1e-4)
        torch.testing.assert_close(alone.attention, together[i].attention, atol=1e-5, rtol=1e-4)


def test_scores_are_the_teacher_forced_log_probabilities():
    model, src, mask = _real_model_and_batch(3)
    hyps = beam_search(model, src, mask, max_output_lengths(mask), beam_size=3, n_best=3, alpha=0.6)
    for i, n_best in enumerate(hyps):
        penalised = [h.score / length_penalty(len(h.tokens) + 1, 0.6) for h in n_best]
        assert penalised == sorted(penalised, reverse=True)
        for h in n_best:
            target = torch.tensor([[SOS, *h.tokens, EOS]])
            with torch.no_grad():
                logits, _ = model(src[i : i + 1], mask[i : i + 1], target[:, :-1])
            rescored = torch.log_softmax(logits.float(), -1).gather(2, target[:, 1:, None]).sum()
            assert math.isclose(h.score, float(rescored), rel_tol=1e-4, abs_tol=1e-4)


# ---- forced prefixes and forced decoding ---------------------------------------------------------------


def test_greedy_continues_a_forced_prefix_and_counts_its_probability():
    # unforced greedy writes [A, C] (.30); forced to start with B, it continues with B's best, <eos> (.8)
    src, mask = _src(2)
    forced, free = greedy_search(PrefixModel(D), src, mask, torch.tensor([10, 10]), prefixes=[[B_], []])
    assert forced.tokens == [B_] and math.isclose(forced.score, math.log(0.4 * 0.8), rel_tol=1e-6)
    assert forced.attention.shape == (2, 4)  # the forced token's row, then <eos>'s
    assert free.tokens == [A, C]


def test_the_beam_holds_only_the_forced_continuation_inside_the_prefix():
    # forced [B]: the A beam (.6) must not survive; B's extensions are B <eos> .32 and B C .08 (→ <eos> 1.0)
    src, mask = _src(1)
    (n_best,) = beam_search(
        PrefixModel(D), src, mask, torch.tensor([10]), beam_size=2, n_best=2, alpha=0.0, prefixes=[[B_]]
    )
    assert [h.tokens for h in n_best] == [[B_], [B_, C]]
    assert [round(math.exp(h.score), 6) for h in n_best] == [0.32, 0.08]


@pytest.mark.parametrize("beam_size", [1, 3])
def test_eos_cannot_come_before_the_prefix_ends(beam_size):
    model = ScriptedModel([[{EOS: 0.9, A: 0.05, B_: 0.05}]])  # would end at once
    src, mask = _src(1)
    if beam_size == 1:
        (hyp,) = greedy_search(model, src, mask, torch.tensor([10]), prefixes=[[B_, A]])
    else:
        ((hyp,),) = beam_search(model, src, mask, torch.tensor([10]), beam_size=beam_size, prefixes=[[B_, A]])
    assert hyp.tokens == [B_, A]
    assert math.isclose(hyp.score, math.log(0.05 * 0.05 * 0.9), rel_tol=1e-6)


def test_a_prefix_longer_than_the_maximum_is_written_whole_then_ends():
    model = ScriptedModel([[{A: 0.9, EOS: 0.1}]])
    src, mask = _src(1)
    (greedy,) = greedy_search(model, src, mask, torch.tensor([1]), prefixes=[[A, A, A]])
    ((beam,),) = beam_search(model, src, mask, torch.tensor([1]), beam_size=2, prefixes=[[A, A, A]])
    assert greedy.tokens == beam.tokens == [A, A, A]  # the maximum grew to 3 words, then <eos>


def test_a_prefix_of_special_tokens_or_of_the_wrong_count_is_refused():
    src, mask = _src(2)
    with pytest.raises(ValueError, match="<eos>"):
        greedy_search(PrefixModel(D), src, mask, torch.tensor([5, 5]), prefixes=[[A, EOS], []])
    with pytest.raises(ValueError, match="1 prefixes for 2 sentences"):
        beam_search(PrefixModel(D), src, mask, torch.tensor([5, 5]), prefixes=[[A]])


def _model_and_batch(architecture: str, seed: int):
    from attnmt.config import ModelConfig
    from attnmt.model import build_model

    torch.manual_seed(seed)
    config = ModelConfig(architecture=architecture, embed_size=16, hidden_size=32, dropout=0.0)
    _, src, mask = _real_model_and_batch(seed)
    return build_model(config, 30, 30).eval(), src, mask


PREFIXES = [[7, 8], [], [9], [10, 11, 12], [], [13]]  # one per sentence of the batch


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_outputs_start_with_their_prefix_and_an_empty_prefix_changes_nothing(architecture):
    model, src, mask = _model_and_batch(architecture, 5)
    lengths = max_output_lengths(mask)
    plain_greedy = greedy_search(model, src, mask, lengths)
    plain_beam = beam_search(model, src, mask, lengths, beam_size=3, n_best=2)
    greedy = greedy_search(model, src, mask, lengths, prefixes=PREFIXES)
    beam = beam_search(model, src, mask, lengths, beam_size=3, n_best=2, prefixes=PREFIXES)
    for i, prefix in enumerate(PREFIXES):
        assert greedy[i].tokens[: len(prefix)] == prefix
        assert all(h.tokens[: len(prefix)] == prefix for h in beam[i])
        if not prefix:  # batch-mates' prefixes do not change it either
            assert greedy[i].tokens == plain_greedy[i].tokens
            assert [h.tokens for h in beam[i]] == [h.tokens for h in plain_beam[i]]
    empty = [[]] * len(PREFIXES)
    assert [h.tokens for h in greedy_search(model, src, mask, lengths, prefixes=empty)] == [
        h.tokens for h in plain_greedy
    ]
    assert [
        [h.tokens for h in n]
        for n in beam_search(model, src, mask, lengths, beam_size=3, n_best=2, prefixes=empty)
    ] == [[h.tokens for h in n] for n in plain_beam]


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_a_prefixed_beam_does_not_depend_on_its_batch_mates_prefixes(architecture):
    model, src, mask = _model_and_batch(architecture, 6)
    lengths = max_output_lengths(mask)
    together = beam_search(model, src, mask, lengths, beam_size=3, n_best=2, prefixes=PREFIXES)
    for i, prefix in enumerate(PREFIXES):
        real = int((~mask[i]).sum())
        (alone,) = beam_search(
            model,
            src[i : i + 1, :real],
            mask[i : i + 1, :real],
            lengths[i : i + 1],
            beam_size=3,
            n_best=2,
            prefixes=[prefix],
        )
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        for a, t in zip(alone, together[i], strict=True):
            assert math.isclose(a.score, t.score, rel_tol=1e-4)
            torch.testing.assert_close(a.attention, t.attention, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_a_scored_target_is_its_teacher_forced_log_probabilities_and_its_greedy_score(architecture):
    model, src, mask = _model_and_batch(architecture, 7)
    greedy = greedy_search(model, src, mask, max_output_lengths(mask), prefixes=PREFIXES)
    targets = [h.tokens for h in greedy]
    scored = score_targets(model, src, mask, targets)
    for i, (hyp, s) in enumerate(zip(greedy, scored, strict=True)):
        assert len(s.log_probs) == len(hyp.tokens) + 1  # <eos> too
        assert math.isclose(sum(s.log_probs), hyp.score, rel_tol=1e-4, abs_tol=1e-4)
        torch.testing.assert_close(s.attention, hyp.attention, atol=1e-5, rtol=1e-4)
        real = int((~mask[i]).sum())
        target = torch.tensor([[SOS, *hyp.tokens, EOS]])
        with torch.no_grad():
            logits, _ = model(src[i : i + 1, :real], mask[i : i + 1, :real], target[:, :-1])
        forward = torch.log_softmax(logits.float(), -1).gather(2, target[:, 1:, None]).flatten()
        torch.testing.assert_close(torch.tensor(s.log_probs), forward, atol=1e-4, rtol=1e-4)
