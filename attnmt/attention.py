"""Step 3, attention: a query looks at every encoder state and takes their weighted average.

Shape legend: B batch, T query positions (decoder steps), S key positions (source tokens),
H query size, K key/value size.

Every variant shares :class:`Attention`'s ``forward`` — masking, softmax and the weighted sum — and
supplies only ``score``, following Luong et al. (2015, §3.1, eq. 8):

    a_t(s) = softmax_s(score(h_t, h̄_s))        context c_t = Σ_s a_t(s) h̄_s

Parts of the score that depend only on the keys (``W h̄_s``) are computed once per sentence by
``project_keys`` and passed back in, never cached on the module, so search can reorder them freely.
"""

import math

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
