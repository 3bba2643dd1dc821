"""Step 3, attention: a query looks at every encoder state and takes their weighted average.

Shape legend: B batch, T query positions (decoder steps), S key positions (source tokens),
H query size, K key/value size.

Every variant shares :class:`Attention`'s ``forward`` — masking, softmax and the weighted sum — and
supplies only ``score``, following Luong et al. (2015, §3.1, eq. 8):

    a_t(s) = softmax_s(score(h_t, h̄_s))        context c_t = Σ_s a_t(s) h̄_s

Parts of the score that depend only on the keys (``W h̄_s``) are computed once per sentence by
``project_keys`` and passed back in, never cached on the module, so search can reorder them freely.
"""

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    """Base class: ``forward(query, keys, values, mask) -> (context, weights)``."""

    def project_keys(self, keys: Tensor) -> Tensor:
        """(B, S, K) encoder states → the form ``score`` expects; once per sentence."""
        return keys

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        """(B, T, H) queries, (B, S, ·) projected keys → (B, T, S) unnormalised scores."""
        raise NotImplementedError

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Attend from ``query`` (…, T, H) over projected ``keys`` and ``values`` (…, S, K).

        ``mask`` is bool, broadcastable to (…, T, S), True where a key must not be attended
        (padding, or the future).  Returns the context (…, T, K) and the weights (…, T, S), which sum
        to 1 over the allowed keys and are exactly 0 elsewhere.
        """
        scores = self.score(query, keys)  # (…, T, S)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (…, T, S)
        return weights @ values, weights  # (…, T, K), (…, T, S)


class DotAttention(Attention):
    """score(h_t, h̄_s) = h_tᵀ h̄_s  (Luong 2015, eq. 8 "dot"); needs H = K."""

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return query @ keys.transpose(-1, -2)


class ScaledDotAttention(Attention):
    """score(q, k) = qᵀk / √d  (Vaswani et al. 2017, eq. 1): keeps softmax out of saturation for large d."""

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return query @ keys.transpose(-1, -2) / math.sqrt(query.size(-1))


class GeneralAttention(Attention):
    """score(h_t, h̄_s) = h_tᵀ W_a h̄_s  (Luong 2015, eq. 8 "general")."""

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        self.W_a = nn.Linear(key_size, query_size, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.W_a(keys)  # (B, S, H)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        return query @ keys.transpose(-1, -2)


class AdditiveAttention(Attention):
    """score(h_t, h̄_s) = v_aᵀ tanh(W_q h_t + W_k h̄_s)  (Bahdanau et al. 2015, eq. 6; Luong's "concat")."""

    def __init__(self, query_size: int, key_size: int, hidden_size: int):
        super().__init__()
        self.W_q = nn.Linear(query_size, hidden_size, bias=False)
        self.W_k = nn.Linear(key_size, hidden_size, bias=False)
        self.v_a = nn.Linear(hidden_size, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        return self.W_k(keys)  # (B, S, A)

    def score(self, query: Tensor, keys: Tensor) -> Tensor:
        hidden = torch.tanh(self.W_q(query).unsqueeze(-2) + keys.unsqueeze(-3))  # (B, T, S, A)
        return self.v_a(hidden).squeeze(-1)  # (B, T, S)


ATTENTION_TYPES = ("dot", "general", "additive", "scaled_dot")


def make_attention(kind: str, *, query_size: int, key_size: int) -> Attention:
    """The attention variant named ``kind`` (one of :data:`ATTENTION_TYPES`)."""
    if kind == "dot":
        return DotAttention()
    if kind == "scaled_dot":
        return ScaledDotAttention()
    if kind == "general":
        return GeneralAttention(query_size, key_size)
    if kind == "additive":
        return AdditiveAttention(query_size, key_size, hidden_size=query_size)
    raise ValueError(f"unknown attention {kind!r}; choose one of {', '.join(ATTENTION_TYPES)}")


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, §3.2.2): h heads of eq. 1 side by side,

        MultiHead(Q, K, V) = Concat(head_1, …, head_h) W^O,   head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

    Each head is the :class:`ScaledDotAttention` above, run on (B, h, ·, d_k) tensors.  ``project``
    turns keys and values into heads once, so a decoder can cache them (the encoder's for every step,
    its own as they grow); self-attention, whose queries, keys and values are one input, projects all
    three in one matrix product (``project_self``).  Only with ``need_weights`` does it compute the
    weights explicitly; otherwise PyTorch's fused ``scaled_dot_product_attention`` computes the same
    result faster and returns no weights.
    """

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads = heads
        self.attention = ScaledDotAttention()
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)
        self.W_qkv: nn.Module | None = None  # int8 self-attention only: W^Q, W^K, W^V as one layer

    def split(self, x: Tensor) -> Tensor:
        """(B, T, d_model) → (B, h, T, d_k)"""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def project(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        """(B, S, d_model) keys and values → per-head K W^K, V W^V, each (B, h, S, d_k)."""
        return self.split(self.W_k(keys)), self.split(self.W_v(values))

    def qkv(self) -> Callable[[Tensor], Tensor]:
        """x ↦ [x W^Q | x W^K | x W^V] in one matrix product, for ``project_self``: the int8 layer
        :func:`attnmt.device.quantize_int8` made (``stacked_layer``), or the float weights stacked, which a
        decoder does once per batch, not at every step."""
        if self.W_qkv is not None:
            return self.W_qkv
        weight, bias = self._stacked()
        return functools.partial(nn.functional.linear, weight=weight, bias=bias)

    def stacked_layer(self) -> nn.Linear:
        """W^Q, W^K, W^V as one (d_model → 3 d_model) layer of its own (a copy), for
        :func:`attnmt.device.quantize_int8`: one int8 product instead of three."""
        weight, bias = self._stacked()
        layer = nn.Linear(weight.size(1), weight.size(0))
        layer.weight, layer.bias = nn.Parameter(weight.detach()), nn.Parameter(bias.detach())
        return layer

    def _stacked(self) -> tuple[Tensor, Tensor]:
        """W^Q, W^K, W^V stacked into one (3 d_model, d_model) weight, and their biases (3 d_model)."""
        projections = (self.W_q, self.W_k, self.W_v)
        return torch.cat([p.weight for p in projections]), torch.cat([p.bias for p in projections])

    def project_self(self, x: Tensor, qkv: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Self-attention's x W^Q, x W^K, x W^V for x (B, T, d_model), each (B, h, T, d_k), in one matrix
        product (``qkv()``)."""
        q, k, v = qkv(x).chunk(3, dim=-1)  # each (B, T, d_model)
        return self.split(q), self.split(k), self.split(v)

    def attend(
        self, q: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Projected heads: q (B, h, T, d_k), keys and values (B, h, S, d_k); mask bool, broadcastable to
        (B, h, T, S), True where not allowed.  Returns (B, T, d_model) and the weights (B, h, T, S) with
        ``need_weights``, else None."""
        if need_weights:
            context, weights = self.attention(q, keys, values, mask)
        else:
            allowed = None if mask is None else ~mask
            context, weights = nn.functional.scaled_dot_product_attention(q, keys, values, allowed), None
        return self.W_o(context.transpose(1, 2).flatten(-2)), weights  # (B, T, d_model)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """query (B, T, d_model); keys, values projected heads (B, h, S, d_k): :meth:`attend` with the
        queries projected."""
        return self.attend(self.split(self.W_q(query)), keys, values, mask, need_weights)
