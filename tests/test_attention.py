import pytest
import torch

from attnmt.attention import ATTENTION_TYPES, Attention, make_attention
from attnmt.data import pad_mask

B, T, S, H = 3, 4, 6, 8


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(B, T, H, generator=g)
    states = torch.randn(B, S, H, generator=g)
    mask = pad_mask(torch.tensor([6, 4, 1]), S)  # (B, S): the last sentence is one token long
    return query, states, mask


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_shapes_and_weights_sum_to_one_over_real_positions(kind):
    attention = make_attention(kind, query_size=H, key_size=H)
    query, states, mask = _inputs()
    context, weights = attention(query, attention.project_keys(states), states, mask[:, None, :])
    assert context.shape == (B, T, H)
    assert weights.shape == (B, T, S)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, T))
    assert torch.all(weights.masked_select(mask[:, None, :].expand(B, T, S)) == 0.0)  # exactly zero
    assert torch.all(weights[2, :, 0] == 1.0)  # a single real position takes all the weight


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_context_is_the_weighted_average_of_the_values(kind):
    attention = make_attention(kind, query_size=H, key_size=H)
    query, states, mask = _inputs(1)
    context, weights = attention(query, attention.project_keys(states), states, mask[:, None, :])
    torch.testing.assert_close(context, torch.einsum("bts,bsh->bth", weights, states))


@pytest.mark.parametrize("kind", ATTENTION_TYPES)
def test_padding_content_never_leaks_into_the_context(kind):
    attention = make_attention(kind, query_size=H, key_size=H)
    query, states, mask = _inputs(2)
    noisy = states.masked_fill(mask[..., None], 1e4)  # garbage where the padding is
    keys_clean, keys_noisy = attention.project_keys(states), attention.project_keys(noisy)
    clean_ctx, clean_w = attention(query, keys_clean, states, mask[:, None, :])
    noisy_ctx, noisy_w = attention(query, keys_noisy, noisy, mask[:, None, :])
    torch.testing.assert_close(noisy_w, clean_w)
    torch.testing.assert_close(noisy_ctx, clean_ctx)


def test_variants_differ_only_in_their_score():
    for kind in ATTENTION_TYPES:
        cls = type(make_attention(kind, query_size=H, key_size=H))
        assert "forward" not in vars(cls), f"{cls.__name__} must reuse Attention.forward"
        assert "score" in vars(cls)


def test_scaled_dot_is_dot_divided_by_root_d():
    query, states, _ = _inputs(3)
    dot = make_attention("dot", query_size=H, key_size=H).score(query, states)
    scaled = make_attention("scaled_dot", query_size=H, key_size=H).score(query, states)
    torch.testing.assert_close(scaled, dot / H**0.5)


def test_a_causal_mask_blocks_the_future():
    attention = make_attention("scaled_dot", query_size=H, key_size=H)
    x = torch.randn(1, 5, H)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)  # True above the diagonal = the future
    _, weights = attention(x, x, x, causal)
    assert torch.all(weights[0].triu(1) == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 5))


def test_unknown_attention_name_lists_the_choices():
    with pytest.raises(ValueError, match="additive"):
        make_attention("bahdanau", query_size=H, key_size=H)


def test_base_class_requires_a_score():
    with pytest.raises(NotImplementedError):
        Attention()(torch.zeros(1, 1, H), torch.zeros(1, 2, H), torch.zeros(1, 2, H))
