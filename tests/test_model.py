import dataclasses
import inspect

import pytest
import safetensors.torch
import torch

from attnmt.config import ModelConfig
from attnmt.data import pad, pad_mask
from attnmt.model import Seq2Seq, build_model, step_by_step

KINDS = ["none", "dot", "general", "additive", "scaled_dot"]
SRC_V, TGT_V = 13, 11


def _model(kind: str, **overrides):
    torch.manual_seed(0)
    config = ModelConfig(
        **{"attention": kind, "embed_size": 8, "hidden_size": 12, "layers": 2, "dropout": 0.0} | overrides
    )
    return build_model(config, SRC_V, TGT_V).eval()


def _batch():
    src, src_pad_mask = pad([[4, 5, 6, 7, 3], [8, 9, 3], [10, 3]])
    tgt, _ = pad([[2, 4, 5, 6], [2, 7, 8, 9], [2, 10, 4, 4]])
    return src, src_pad_mask, tgt


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("input_feeding", [False, True])
def test_extra_padding_changes_no_output(kind, bidirectional, input_feeding):
    model = _model(kind, bidirectional=bidirectional, input_feeding=input_feeding)
    src, src_pad_mask, tgt = _batch()
    logits, attn = model(src, src_pad_mask, tgt)
    wide = torch.cat([src, torch.zeros(3, 4, dtype=torch.long)], dim=1)  # 4 more pad columns
    wide_logits, wide_attn = model(wide, pad_mask((~src_pad_mask).sum(1), wide.size(1)), tgt)
    torch.testing.assert_close(wide_logits, logits, atol=1e-5, rtol=1e-5)
    if attn is not None:
        torch.testing.assert_close(wide_attn[..., : src.size(1)], attn, atol=1e-6, rtol=1e-5)
        assert torch.all(wide_attn[..., src.size(1) :] == 0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_a_sentence_translates_the_same_alone_or_in_a_batch(kind):
    model = _model(kind)
    src, src_pad_mask, tgt = _batch()
    logits, _ = model(src, src_pad_mask, tgt)
    alone, _ = model(src[2:, :2], src_pad_mask[2:, :2], tgt[2:])
    torch.testing.assert_close(alone, logits[2:], atol=1e-5, rtol=1e-5)


RECIPES = {  # the GRU's options that change how it computes
    "input_feeding": {"input_feeding": True},
    "bridge": {"bridge": True},
    "uniform_init": {"init_range": 0.1},
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("recipe", [None, *RECIPES])
def test_step_by_step_decoding_equals_the_teacher_forced_pass(kind, recipe):
    """Search calls step() one token at a time; training runs the whole target at once."""
    model = _model(kind, **RECIPES.get(recipe, {}))
    src, src_pad_mask, tgt = _batch()
    logits, attn = model(src, src_pad_mask, tgt)
    state = model.init_state(model.encode(src, src_pad_mask))
    for t in range(tgt.size(1)):
        log_probs, state, step_attn = model.step(tgt[:, t], state)
        torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1), atol=1e-5, rtol=1e-5)
        if attn is not None:
            torch.testing.assert_close(step_attn, attn[:, t], atol=1e-6, rtol=1e-5)


def test_reorder_selects_and_repeats_rows():
    model = _model("additive")
    src, src_pad_mask, tgt = _batch()
    state = model.init_state(model.encode(src, src_pad_mask))
    index = torch.tensor([2, 2, 0])
    reordered = model.reorder(state, index)
    direct = model.init_state(model.encode(src[index], src_pad_mask[index]))
    a, _, _ = model.step(tgt[index, 0], reordered)
    b, _, _ = model.step(tgt[index, 0], direct)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["additive", "none", "transformer"])
def test_beams_trading_places_within_their_sentences_keep_the_source_as_it_is(kind):
    """Beam search reorders with ``same_source`` at every step: what a full reorder computes."""
    model = (
        _model(kind, heads=2) if kind != "transformer" else _model("dot", architecture="transformer", heads=2)
    )
    src, src_pad_mask, tgt = _batch()
    tiled = torch.tensor([0, 0, 1, 1, 2, 2])  # two beams per sentence
    state = model.reorder(model.init_state(model.encode(src, src_pad_mask)), tiled)
    _, state, _ = model.step(torch.tensor([4, 5, 6, 7, 8, 9]), state)  # the beams now differ
    index = torch.tensor([1, 1, 3, 2, 4, 5])
    a, _, attn_a = model.step(tgt[tiled, 2], model.reorder(state, index, same_source=True))
    b, _, attn_b = model.step(tgt[tiled, 2], model.reorder(state, index))
    c, _, _ = model.step(tgt[tiled, 2], state)
    assert not torch.equal(a, c)  # the reorder changed what the rows compute
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    if attn_a is not None:
        torch.testing.assert_close(attn_a, attn_b, atol=0, rtol=0)


def test_without_attention_the_decoder_sees_one_fixed_context():
    model = _model("none")
    src, src_pad_mask, tgt = _batch()
    _, attn = model(src, src_pad_mask, tgt)
    assert attn is None
    state = model.init_state(model.encode(src, src_pad_mask))
    torch.testing.assert_close(state.fixed_context, model.encode(src, src_pad_mask).final[-1])


def test_teacher_forcing_below_one_feeds_back_predictions_in_training():
    model = _model("dot").train()
    src, src_pad_mask, tgt = _batch()
    forced, _ = model(src, src_pad_mask, tgt, teacher_forcing=1.0)
    free, _ = model(src, src_pad_mask, tgt, teacher_forcing=0.0)
    assert forced.shape == free.shape
    torch.testing.assert_close(free[:, 0], forced[:, 0])  # the first input is <sos> either way
    assert not torch.allclose(free, forced)


@pytest.mark.parametrize(
    ("architecture", "attention"), [("gru", "none"), ("gru", "additive"), ("transformer", "scaled_dot")]
)
def test_every_architecture_keeps_the_decoder_contract(architecture, attention):
    """Search, the translator and the attention views type their model as Seq2Seq; each architecture
    must have its members, taking the Protocol's arguments (any more with defaults)."""
    config = ModelConfig(
        architecture=architecture, attention=attention, embed_size=8, hidden_size=16, ff_size=16
    )
    model = build_model(config, SRC_V, TGT_V)
    assert isinstance(model, Seq2Seq)
    assert model.has_attention is (attention != "none")
    for name in ["encode", "init_state", "step", "steps", "reorder", "attention_maps"]:
        wanted = list(inspect.signature(getattr(Seq2Seq, name)).parameters)[1:]  # without self
        parameters = list(inspect.signature(getattr(model, name)).parameters.values())
        assert [p.name for p in parameters[: len(wanted)]] == wanted, name
        assert all(p.default is not inspect.Parameter.empty for p in parameters[len(wanted) :]), name


def test_a_model_without_a_contract_member_is_not_a_seq2seq():
    class NoReorder:
        has_attention = False

        def encode(self, src, src_pad_mask): ...
        def init_state(self, encoded): ...
        def step(self, prev_tokens, state): ...
        def steps(self, tokens, state): ...
        def attention_maps(self, src, src_pad_mask, tgt_in): ...

    assert not isinstance(NoReorder(), Seq2Seq)


def test_input_feeding_gives_the_gru_the_last_attentional_state():
    """Luong et al. §3.3: the decoder GRU reads [y_{t-1}; h̃_{t-1}], so h̃ changes what comes next."""
    plain, fed = _model("additive"), _model("additive", input_feeding=True)
    assert fed.decoder.rnn.input_size == plain.decoder.rnn.input_size + 12
    src, src_pad_mask, tgt = _batch()
    state = fed.init_state(fed.encode(src, src_pad_mask))
    torch.testing.assert_close(state.feed, torch.zeros(3, 12))  # nothing attended before the first word
    first, after, _ = fed.step(tgt[:, 0], state)
    assert after.feed.abs().sum() > 0
    altered, _, _ = fed.step(tgt[:, 0], dataclasses.replace(state, feed=torch.ones(3, 12)))
    assert not torch.allclose(first, altered)


def test_bridge_starts_the_decoder_from_a_learned_map_of_the_encoder_state():
    model = _model("additive", bridge=True)
    src, src_pad_mask, _ = _batch()
    encoded = model.encode(src, src_pad_mask)
    state = model.init_state(encoded)
    torch.testing.assert_close(state.hidden, torch.tanh(model.bridge[0](encoded.final)))


def test_uniform_init_puts_every_weight_in_range():
    model = _model("additive", init_range=0.1)
    values = torch.cat([p.flatten() for p in model.parameters()])
    assert values.abs().max() <= 0.1 and values.abs().max() > 0.09  # the range is used, not only bounded


def test_tied_embeddings_score_words_with_the_decoders_embedding_matrix(tmp_path):
    """Press & Wolf (2017): W_s is the target embedding; the model has no separate output matrix,
    and its weights save and load like any other (no shared tensors in the file)."""
    tied = _model("additive", embed_size=12, tie_embeddings=True)
    untied = _model("additive", embed_size=12)
    n_tied, n_untied = (sum(p.numel() for p in m.parameters()) for m in (tied, untied))
    assert n_untied - n_tied == TGT_V * 12  # one V × H matrix fewer
    h = torch.randn(2, 12)
    torch.testing.assert_close(
        tied.decoder.logits(h), h @ tied.decoder.embedding.weight.T + tied.decoder.output_bias
    )
    src, src_pad_mask, tgt = _batch()
    logits, _ = tied(src, src_pad_mask, tgt)
    safetensors.torch.save_file(tied.state_dict(), tmp_path / "model.safetensors")
    again = _model("additive", embed_size=12, tie_embeddings=True)
    with torch.no_grad():
        for p in again.parameters():
            p.add_(1.0)  # not the weights saved: the load must bring them back
    assert not torch.allclose(again(src, src_pad_mask, tgt)[0], logits)
    again.load_state_dict(safetensors.torch.load_file(tmp_path / "model.safetensors"))
    torch.testing.assert_close(again(src, src_pad_mask, tgt)[0], logits)


def test_tied_embeddings_need_equal_embedding_and_hidden_sizes():
    with pytest.raises(ValueError, match="embed_size == hidden_size"):
        _model("additive", tie_embeddings=True)  # embed 8, hidden 12


def test_int8_gives_a_tied_output_layer_an_int8_copy_and_leaves_the_model_as_it_was():
    from attnmt.device import quantize_int8

    model = _model("additive", embed_size=12, tie_embeddings=True)
    src, src_pad_mask, tgt = _batch()
    quantized = quantize_int8(model)
    assert model.decoder.output is None and "quantized" in type(quantized.decoder.output).__module__
    expected, _ = model(src, src_pad_mask, tgt)
    got, _ = quantized(src, src_pad_mask, tgt)
    assert torch.allclose(got, expected, atol=0.1)  # int8 rounding: close, not equal


@pytest.mark.parametrize(
    "overrides",
    [
        {"attention": "additive", "layers": 1},  # one pass: the GRU's outputs are its states
        {"attention": "none", "layers": 1},
        {"attention": "dot", "layers": 1, "input_feeding": True},
        {"attention": "additive", "layers": 2},  # step by step: lower layers' states are not returned
        {"architecture": "transformer", "attention": "scaled_dot", "ff_size": 16, "heads": 2},
    ],
    ids=["gru", "gru-fixed-vector", "gru-input-feeding", "gru-2-layers", "transformer"],
)
def test_reading_tokens_at_once_gives_what_stepping_gives(overrides):
    """``steps`` (drafts read in one pass) against T calls of ``step``: log-probabilities, attention,
    and the state after every token, which decoding goes on from."""
    overrides = dict(overrides)
    model = _model(**{"kind": overrides.pop("attention")} | overrides)
    src, src_pad_mask, tgt = _batch()
    with torch.inference_mode():
        state = model.init_state(model.encode(src, src_pad_mask))
        _, state, _ = model.step(tgt[:, 0], state)  # after <sos>: a state with a past
        log_probs, states, attention = model.steps(tgt[:, 1:], state)
        want_log_probs, want_states, want_attention = step_by_step(model, tgt[:, 1:], state)
        torch.testing.assert_close(log_probs, want_log_probs, atol=1e-5, rtol=1e-5)
        if want_attention is None:
            assert attention is None
        else:
            torch.testing.assert_close(attention, want_attention, atol=1e-6, rtol=1e-5)
        assert len(states) == len(want_states) == tgt.size(1) - 1
        for ours, theirs in zip(states, want_states, strict=True):  # go on from each
            torch.testing.assert_close(
                model.step(tgt[:, 1], ours)[0], model.step(tgt[:, 1], theirs)[0], atol=1e-5, rtol=1e-5
            )
