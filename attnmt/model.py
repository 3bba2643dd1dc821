"""Step 5, the whole translator: encoder + attention + decoder, and :class:`Seq2Seq`, the decoder
contract search decodes with:

    state = model.init_state(model.encode(src, src_pad_mask))
    log_probs, state, attn = model.step(prev_tokens, state)    # (B, V), state, (B, S) or None
    log_probs, states, attn = model.steps(tokens, state)       # T tokens in one pass: (B, T, V), …
    state = model.reorder(state, index)                         # keep/duplicate batch rows
    state = model.reorder(state, index, same_source=True)       # beams of each sentence change places
"""

from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from attnmt.attention import make_attention
from attnmt.config import ModelConfig
from attnmt.decoders import Decoder
from attnmt.encoders import Encoder
from attnmt.transformer import Transformer

Encoded = Any  # what a model's encode returns; only the model itself reads it
DecoderState = Any  # what a model keeps between steps; search passes it back and reorders it


@runtime_checkable
class Seq2Seq(Protocol):
    """The decoder contract: all that :mod:`attnmt.search`, and the callers that show attention, know
    about a model.  :class:`EncoderDecoderAttention` and :class:`~attnmt.transformer.Transformer` keep
    it without inheriting from it; so does a new architecture.  (Both are also ``nn.Module``s, which
    training and saving rely on; a Protocol cannot say that too.)"""

    @property
    def has_attention(self) -> bool:
        """Whether ``step`` returns attention weights (the fixed-vector baseline has none)."""

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> Encoded:
        """src (B, S), src_pad_mask (B, S) True = padding → the encoded source."""

    def init_state(self, encoded: Encoded) -> DecoderState:
        """The state before the first step (its input is ``<sos>``)."""

    def step(self, prev_tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor | None]:
        """prev_tokens (B,) → log-probabilities (B, V), the next state, attention (B, S) or None."""

    def steps(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, list[DecoderState], Tensor | None]:
        """tokens (B, T) read one after another, in one pass where the model can (:func:`step_by_step`
        where it cannot): what T calls of ``step`` give — log-probabilities (B, T, V), the state after
        each token, attention (B, T, S) or None — equal to them up to float rounding."""

    def reorder(self, state: DecoderState, index: Tensor, *, same_source: bool = False) -> DecoderState:
        """Select (and repeat) batch rows: row i of the result is row ``index[i]`` of ``state``.  With
        ``same_source``, row ``index[i]`` reads the same source as row i (beam search's beams trading
        places within each sentence), so what depends on the source alone is kept as it is."""

    def attention_maps(self, src: Tensor, src_pad_mask: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
        """The weights of a teacher-forced pass by kind: ``cross`` (B, layers, heads, T, S) at least."""


def step_by_step(
    model: Seq2Seq, tokens: Tensor, state: DecoderState
) -> tuple[Tensor, list[DecoderState], Tensor | None]:
    """:meth:`Seq2Seq.steps` as T calls of ``step``."""
    log_probs, states, attention = [], [], []
    for t in range(tokens.size(1)):
        lp, state, attn = model.step(tokens[:, t], state)
        log_probs.append(lp)
        states.append(state)
        attention.append(attn)
    return torch.stack(log_probs, 1), states, None if attention[0] is None else torch.stack(attention, 1)


@dataclass
class EncoderOutput:
    states: Tensor  # (B, S, H)
    final: Tensor  # (L, B, H)
    src_pad_mask: Tensor  # (B, S) True = padding


@dataclass
class RNNState:
    """Everything a decoding step needs, batch rows aligned; ``reorder`` keeps it so."""

    hidden: Tensor  # (L, B, H)
    memory: Tensor  # (B, S, H)
    keys: Tensor  # (B, S, ·) attention.project_keys(memory)
    src_pad_mask: Tensor  # (B, S)
    fixed_context: Tensor  # (B, H)
    feed: Tensor  # (B, H) the last attentional state h̃ (read by an input-feeding decoder)

    def reorder(self, index: Tensor, *, same_source: bool = False) -> "RNNState":
        """Row i of the result is row ``index[i]``; with ``same_source`` (:class:`Seq2Seq`), the encoder
        states, their keys and the mask stay."""
        state = replace(
            self, hidden=self.hidden.index_select(1, index), feed=self.feed.index_select(0, index)
        )
        if same_source:
            return state
        return replace(
            state,
            memory=self.memory.index_select(0, index),
            keys=self.keys.index_select(0, index),
            src_pad_mask=self.src_pad_mask.index_select(0, index),
            fixed_context=self.fixed_context.index_select(0, index),
        )


class EncoderDecoderAttention(nn.Module):
    """A GRU encoder–decoder where the decoder attends over all encoder states at every step.

    The decoder starts from the encoder's final state, or with ``bridge`` from a learned
    tanh(W h_final + b) of it (OpenNMT's bridge), so that the two GRUs need not share one state space.
    """

    def __init__(self, encoder: Encoder, decoder: Decoder, bridge: bool = False):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        size = decoder.combine.out_features
        self.bridge = nn.Sequential(nn.Linear(size, size), nn.Tanh()) if bridge else None

    @property
    def has_attention(self) -> bool:
        return self.decoder.attention is not None

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> EncoderOutput:
        states, final = self.encoder(src, src_pad_mask)
        return EncoderOutput(states, final, src_pad_mask)

    def init_state(self, encoded: EncoderOutput) -> RNNState:
        attention = self.decoder.attention
        keys = attention.project_keys(encoded.states) if attention is not None else encoded.states
        final = encoded.final  # (L, B, H)
        return RNNState(
            hidden=final if self.bridge is None else self.bridge(final),
            memory=encoded.states,
            keys=keys,
            src_pad_mask=encoded.src_pad_mask,
            fixed_context=final[-1],
            feed=final.new_zeros(final.shape[1:]),
        )

    def decode(
        self, tokens: Tensor, state: RNNState, keep: Tensor | None = None
    ) -> tuple[Tensor, RNNState, Tensor | None]:
        """tokens (B, T) → logits (B, T, V) (or (N, V) where ``keep`` is True), the state after them,
        attention (B, T, S) or None."""
        logits, hidden, feed, weights = self.decoder(
            tokens, state.hidden, state.memory, state.keys, state.src_pad_mask, state.fixed_context,
            state.feed, keep,
        )  # fmt: skip
        return logits, replace(state, hidden=hidden, feed=feed), weights

    def step(self, prev_tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState, Tensor | None]:
        """prev_tokens (B,) → log-probabilities (B, V), next state, attention (B, S) or None."""
        logits, state, weights = self.decode(prev_tokens.unsqueeze(1), state)
        return (
            torch.log_softmax(logits.squeeze(1).float(), dim=-1),
            state,
            None if weights is None else weights.squeeze(1),
        )

    def steps(self, tokens: Tensor, state: RNNState) -> tuple[Tensor, list[RNNState], Tensor | None]:
        """tokens (B, T) → what T calls of ``step`` give (:class:`Seq2Seq`): one GRU call and one output
        layer product for them all (a one-layer GRU's state after each token is its output there)."""
        decoder = self.decoder
        if decoder.rnn.num_layers > 1:  # the lower layers' state after each token is not returned
            return step_by_step(self, tokens, state)
        attentional, outputs, _, weights = decoder.attentional_states(
            tokens,
            state.hidden,
            state.memory,
            state.keys,
            state.src_pad_mask,
            state.fixed_context,
            state.feed,
        )
        log_probs = torch.log_softmax(decoder.logits(decoder.dropout(attentional)).float(), dim=-1)
        states = [
            replace(state, hidden=outputs[:, t].unsqueeze(0), feed=attentional[:, t])
            for t in range(tokens.size(1))
        ]
        return log_probs, states, weights

    def reorder(self, state: RNNState, index: Tensor, *, same_source: bool = False) -> RNNState:
        """Select (and repeat) batch rows: row i of the result is row ``index[i]`` of ``state``."""
        return state.reorder(index, same_source=same_source)

    @torch.no_grad()
    def attention_maps(self, src: Tensor, src_pad_mask: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
        """The weights of a teacher-forced pass as ``cross`` (B, 1, 1, T, S): one layer, one head."""
        _, _, weights = self.decode(tgt_in, self.init_state(self.encode(src, src_pad_mask)))
        return {} if weights is None else {"cross": weights[:, None, None]}

    def forward(
        self,
        src: Tensor,
        src_pad_mask: Tensor,
        tgt_in: Tensor,
        teacher_forcing: float = 1.0,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced training pass: src (B, S), tgt_in (B, T) → logits (B, T, V), attention.
        With ``keep`` (B, T) bool, logits only at those positions: (N, V).

        With ``teacher_forcing`` < 1 (in training), each step's input is the gold previous word with
        that probability and otherwise the model's own last prediction, so steps run one by one.
        """
        state = self.init_state(self.encode(src, src_pad_mask))
        if not self.training or teacher_forcing >= 1.0:
            logits, _, weights = self.decode(tgt_in, state, keep)
            return logits, weights
        steps, attns = [], []
        token = tgt_in[:, 0]
        for t in range(tgt_in.size(1)):
            logits, state, weights = self.decode(token.unsqueeze(1), state)
            steps.append(logits)
            attns.append(weights)
            if t + 1 < tgt_in.size(1):
                gold = bool(torch.rand(()) < teacher_forcing)
                token = tgt_in[:, t + 1] if gold else logits[:, 0].argmax(-1)
        weights = None if attns[0] is None else torch.cat(attns, dim=1)
        logits = torch.cat(steps, dim=1)
        return (logits if keep is None else logits[keep]), weights


def build_model(
    config: ModelConfig, src_vocab_size: int, tgt_vocab_size: int, shared_vocab: bool = False
) -> Seq2Seq:
    """Build the model the way the diagram draws it: encoder → attention → decoder; or the Transformer
    (whose embeddings are one matrix when ``shared_vocab``: source and target use one vocabulary)."""
    if config.architecture == "transformer":
        return Transformer(
            src_vocab_size=src_vocab_size,
            tgt_vocab_size=tgt_vocab_size,
            d_model=config.hidden_size,
            heads=config.heads,
            ff_size=config.ff_size,
            layers=config.layers,
            dropout=config.dropout,
            shared_vocab=shared_vocab,
        )
    encoder = Encoder(
        vocab_size=src_vocab_size,
        embed_size=config.embed_size,
        hidden_size=config.hidden_size,
        layers=config.layers,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
    )
    attention = (
        None
        if config.attention == "none"
        else make_attention(config.attention, query_size=config.hidden_size, key_size=config.hidden_size)
    )
    decoder = Decoder(
        vocab_size=tgt_vocab_size,
        embed_size=config.embed_size,
        hidden_size=config.hidden_size,
        attention=attention,
        layers=config.layers,
        dropout=config.dropout,
        input_feeding=config.input_feeding,
        tie_embeddings=config.tie_embeddings,
    )
    model = EncoderDecoderAttention(encoder, decoder, bridge=config.bridge)
    if config.init_range is not None:  # OpenNMT's param_init: every weight uniform in ±init_range
        for parameter in model.parameters():
            nn.init.uniform_(parameter, -config.init_range, config.init_range)
    return model
