"""The Transformer (Vaswani et al. 2017, "Attention is all you need"): attention and no recurrence.

Read it next to the paper's Figure 1.  Differences from the paper, each the field's later default:
layer normalisation comes *before* each sub-layer (pre-norm, Xiong et al. 2020), with one final
normalisation per stack, which trains without a long warm-up at small budgets; and when source and
target share a vocabulary, one embedding matrix serves the encoder, the decoder and the output layer
(§3.4 shares the last two).

The model keeps the decoder contract of :mod:`attnmt.model` — ``encode`` / ``init_state`` / ``step`` /
``reorder`` — so the same greedy and beam search decode it.  ``step`` runs one position with a cache
of every layer's past keys and values: each step costs what one new position costs, not a re-run of
the whole prefix.  The attention it returns for display is the last layer's cross-attention, averaged
over heads, the only weights it computes: every other attention takes PyTorch's fused kernel, and each
self-attention projects queries, keys and values in one matrix product.
:meth:`Transformer.attention_maps` gives every layer and head.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from attnmt.attention import MultiHeadAttention


def sinusoidal_positions(length: int, d_model: int, start: int = 0) -> Tensor:
    """§3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(…) → (length, d_model)."""
    position = torch.arange(start, start + length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class FeedForward(nn.Sequential):
    """§3.3, eq. 2: FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, applied at every position alike."""

    def __init__(self, d_model: int, ff_size: int):
        super().__init__(nn.Linear(d_model, ff_size), nn.ReLU(), nn.Linear(ff_size, d_model))


class EncoderLayer(nn.Module):
    """Figure 1, left: self-attention, then the feed-forward network, each as x + Dropout(f(LayerNorm(x)))."""

    def __init__(self, d_model: int, heads: int, ff_size: int, dropout: float):
        super().__init__()
        self.self_attn_norm, self.self_attn = nn.LayerNorm(d_model), MultiHeadAttention(d_model, heads)
        self.ff_norm, self.ff = nn.LayerNorm(d_model), FeedForward(d_model, ff_size)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, pad_mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, S, d), pad_mask (B, 1, 1, S) → (B, S, d), self-attention weights (B, h, S, S) or None."""
        h = self.self_attn_norm(x)
        q, keys, values = self.self_attn.project_self(h, self.self_attn.qkv())
        attended, weights = self.self_attn.attend(q, keys, values, pad_mask, need_weights)
        x = x + self.dropout(attended)
        return x + self.dropout(self.ff(self.ff_norm(x))), weights


class DecoderLayer(nn.Module):
    """Figure 1, right: masked self-attention, attention over the encoder output, feed-forward."""

    def __init__(self, d_model: int, heads: int, ff_size: int, dropout: float):
        super().__init__()
        self.self_attn_norm, self.self_attn = nn.LayerNorm(d_model), MultiHeadAttention(d_model, heads)
        self.cross_attn_norm, self.cross_attn = nn.LayerNorm(d_model), MultiHeadAttention(d_model, heads)
        self.ff_norm, self.ff = nn.LayerNorm(d_model), FeedForward(d_model, ff_size)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        past: tuple[Tensor, Tensor] | None,
        causal_mask: Tensor | None,
        memory: tuple[Tensor, Tensor],
        pad_mask: Tensor,
        qkv: Callable[[Tensor], Tensor],
        *,
        need_self_weights: bool = False,
        need_cross_weights: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None, Tensor | None]:
        """x (B, T, d): the new positions; past: the earlier positions' self-attention keys and values
        (B, h, P, d_k) or None; memory: the encoder output's projected keys and values (B, h, S, d_k);
        qkv: the self-attention's ``qkv()``.  Returns (B, T, d), the keys and values of
        all P + T positions, and the self- and cross-attention weights (B, h, T, P + T) and (B, h, T, S)
        where asked for, else None."""
        h = self.self_attn_norm(x)
        q, keys, values = self.self_attn.project_self(h, qkv)
        if past is not None:
            keys, values = torch.cat([past[0], keys], dim=2), torch.cat([past[1], values], dim=2)
        attended, self_weights = self.self_attn.attend(q, keys, values, causal_mask, need_self_weights)
        x = x + self.dropout(attended)
        h = self.cross_attn_norm(x)
        attended, cross_weights = self.cross_attn(h, *memory, pad_mask, need_cross_weights)
        x = x + self.dropout(attended)
        return x + self.dropout(self.ff(self.ff_norm(x))), (keys, values), self_weights, cross_weights


@dataclass
class TransformerEncoding:
    states: Tensor  # (B, S, d) the encoder stack's output
    src_pad_mask: Tensor  # (B, S) True = padding
    self_attention: list[Tensor]  # per layer (B, h, S, S) when asked for, else empty


@dataclass
class TransformerState:
    """The decoder's cache, batch rows aligned; ``reorder`` keeps it so."""

    memory: list[tuple[Tensor, Tensor]]  # per layer: the encoder output as cross-attention keys, values
    past: list[tuple[Tensor, Tensor]] | None  # per layer: self-attention keys, values so far (B, h, P, d_k)
    src_pad_mask: Tensor  # (B, S)
    qkv: list[Callable[[Tensor], Tensor]]  # per layer: W^Q, W^K, W^V as one product, stacked once

    @property
    def position(self) -> int:
        return 0 if self.past is None else self.past[0][0].size(2)


class Transformer(nn.Module):
    """Encoder–decoder Transformer: ``layers`` encoder and decoder layers of width ``d_model``."""

    def __init__(
        self,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        d_model: int,
        heads: int,
        ff_size: int,
        layers: int,
        dropout: float,
        shared_vocab: bool = False,
    ):
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(tgt_vocab_size, d_model, padding_idx=0)  # target; also output layer
        nn.init.normal_(self.embedding.weight, std=d_model**-0.5)
        self.src_embedding = None if shared_vocab else nn.Embedding(src_vocab_size, d_model, padding_idx=0)
        if self.src_embedding is not None:
            nn.init.normal_(self.src_embedding.weight, std=d_model**-0.5)
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(d_model, heads, ff_size, dropout) for _ in range(layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(d_model, heads, ff_size, dropout) for _ in range(layers)
        )
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.output: nn.Module | None = None  # the output layer is the embedding (§3.4); int8: a copy

    has_attention = True

    @property
    def source_embedding(self) -> nn.Embedding:
        return self.embedding if self.src_embedding is None else self.src_embedding

    def embed(self, embedding: nn.Embedding, tokens: Tensor, start: int = 0) -> Tensor:
        """§3.4–3.5: embeddings × √d_model plus the positions' sinusoids, then dropout."""
        positions = sinusoidal_positions(tokens.size(1), self.d_model, start).to(tokens.device)
        return self.dropout(embedding(tokens) * math.sqrt(self.d_model) + positions)

    def encode(self, src: Tensor, src_pad_mask: Tensor, need_weights: bool = False) -> TransformerEncoding:
        """src (B, S) → the encoder output (with every layer's self-attention if asked)."""
        x, mask, weights = self.embed(self.source_embedding, src), src_pad_mask[:, None, None, :], []
        for layer in self.encoder_layers:
            x, w = layer(x, mask, need_weights)
            if need_weights:
                weights.append(w)
        return TransformerEncoding(self.encoder_norm(x), src_pad_mask, weights)

    def init_state(self, encoded: TransformerEncoding) -> TransformerState:
        memory = [layer.cross_attn.project(encoded.states, encoded.states) for layer in self.decoder_layers]
        qkv = [layer.self_attn.qkv() for layer in self.decoder_layers]
        return TransformerState(memory, None, encoded.src_pad_mask, qkv)

    def decode(
        self,
        tokens: Tensor,
        state: TransformerState,
        need_weights: bool = False,
        keep: Tensor | None = None,
        *,
        need_last_cross_weights: bool = False,
    ) -> tuple[Tensor, TransformerState, list[Tensor | None], list[Tensor | None]]:
        """tokens (B, T) at positions P…P+T-1 after the P cached ones → logits (B, T, V) (or (N, V) where
        ``keep`` is True), the state with them cached, and per layer the self- and cross-attention
        weights: every layer's with ``need_weights``, the last layer's cross-attention alone with
        ``need_last_cross_weights``, None where not asked.  Attention whose weights nobody asked for
        takes PyTorch's fused kernel."""
        start, length = state.position, tokens.size(1)
        x = self.embed(self.embedding, tokens, start)
        causal = None  # one new position sees every cached one: nothing to hide
        if length > 1:  # position P+i may not see P+j for j > i (Figure 1, "masked")
            causal = torch.ones(length, start + length, dtype=torch.bool, device=tokens.device).triu(
                start + 1
            )
        pad_mask = state.src_pad_mask[:, None, None, :]
        past, self_weights, cross_weights, last = [], [], [], len(self.decoder_layers) - 1
        for i, layer in enumerate(self.decoder_layers):
            previous = None if state.past is None else state.past[i]
            x, cache, sw, cw = layer(
                x, previous, causal, state.memory[i], pad_mask, state.qkv[i],
                need_self_weights=need_weights,
                need_cross_weights=need_weights or (need_last_cross_weights and i == last),
            )  # fmt: skip
            past.append(cache)
            self_weights.append(sw)
            cross_weights.append(cw)
        if keep is not None:
            x = x[keep]  # (N, d_model)
        logits = self.logits(self.decoder_norm(x))
        return logits, replace(state, past=past), self_weights, cross_weights

    def logits(self, x: Tensor) -> Tensor:
        """Decoder states (…, d) → word scores (…, V): the embedding matrix as the output layer (§3.4),
        or its int8 copy (``tied_output``)."""
        return x @ self.embedding.weight.T if self.output is None else self.output(x)

    def tied_output(self) -> nn.Linear:
        """The tied output layer as a layer of its own (a copy), for :func:`attnmt.device.quantize_int8`."""
        layer = nn.Linear(self.d_model, self.embedding.num_embeddings, bias=False)
        layer.weight = nn.Parameter(self.embedding.weight.detach().clone())
        return layer

    def step(self, prev_tokens: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState, Tensor]:
        """prev_tokens (B,) → log-probabilities (B, V), the state, last-layer cross-attention averaged over
        heads (B, S): the only weights search uses, so the only ones computed."""
        logits, state, _, cross = self.decode(prev_tokens.unsqueeze(1), state, need_last_cross_weights=True)
        return torch.log_softmax(logits.squeeze(1).float(), dim=-1), state, cross[-1].mean(1).squeeze(1)

    def steps(self, tokens: Tensor, state: TransformerState) -> tuple[Tensor, list[TransformerState], Tensor]:
        """tokens (B, T) → what T calls of ``step`` give, in one pass (:class:`~attnmt.model.Seq2Seq`):
        the state after each token is the cache cut there."""
        logits, after, _, cross = self.decode(tokens, state, need_last_cross_weights=True)
        start = state.position
        states = [
            replace(after, past=[(k[:, :, : start + t + 1], v[:, :, : start + t + 1]) for k, v in after.past])
            for t in range(tokens.size(1))
        ]
        return torch.log_softmax(logits.float(), dim=-1), states, cross[-1].mean(1)

    def reorder(
        self, state: TransformerState, index: Tensor, *, same_source: bool = False
    ) -> TransformerState:
        """Select (and repeat) batch rows: row i of the result is row ``index[i]`` of ``state``; with
        ``same_source`` (:class:`~attnmt.model.Seq2Seq`), the encoder's keys, values and mask stay."""

        def pick(pairs):
            return [(k.index_select(0, index), v.index_select(0, index)) for k, v in pairs]

        state = replace(state, past=None if state.past is None else pick(state.past))
        if same_source:
            return state
        return replace(
            state, memory=pick(state.memory), src_pad_mask=state.src_pad_mask.index_select(0, index)
        )

    def forward(
        self,
        src: Tensor,
        src_pad_mask: Tensor,
        tgt_in: Tensor,
        teacher_forcing: float = 1.0,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, None]:
        """Teacher-forced pass, all positions at once: src (B, S), tgt_in (B, T) → logits (B, T, V),
        or (N, V) at the positions where ``keep`` (B, T) is True."""
        state = self.init_state(self.encode(src, src_pad_mask))
        logits, _, _, _ = self.decode(tgt_in, state, keep=keep)
        return logits, None

    @torch.no_grad()
    def attention_maps(self, src: Tensor, src_pad_mask: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
        """Every layer's and head's weights for a teacher-forced pass: ``cross`` (B, L, h, T, S),
        ``encoder`` self-attention (B, L, h, S, S), ``decoder`` self-attention (B, L, h, T, T)."""
        encoded = self.encode(src, src_pad_mask, need_weights=True)
        _, _, decoder, cross = self.decode(tgt_in, self.init_state(encoded), need_weights=True)
        return {
            "cross": torch.stack(cross, 1),
            "encoder": torch.stack(encoded.self_attention, 1),
            "decoder": torch.stack(decoder, 1),
        }
