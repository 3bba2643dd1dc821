"""Step 4, the decoder: a GRU that writes the target and, before each word, attends over the source.

Luong et al. (2015, §3) global attention: the GRU state h_t is the query, the context c_t the
attention-weighted source states, and the word distribution comes from the attentional state

    h̃_t = tanh(W_c [c_t; h_t])        p(y_t | y_<t, x) = softmax(W_s h̃_t)      (eqs. 5–6)

Because attention sits after the GRU, a teacher-forced target runs through the GRU in one call.  With
``input_feeding`` (Luong et al. §3.3) the GRU also reads the previous step's attentional state h̃_{t-1},
so that it knows what it attended to before; then the steps run one by one.

``attention=None`` is the decoder of Cho et al. (2014) without attention: the context is one fixed
vector, the encoder's final state, fed to every step (into the GRU input and the output layer).
"""

import torch
from torch import Tensor, nn

from attnmt.attention import Attention


class Decoder(nn.Module):
    def __init__(
        self,
        *,
        vocab_size: int,
        embed_size: int,
        hidden_size: int,
        attention: Attention | None,
        layers: int = 1,
        dropout: float = 0.0,
        input_feeding: bool = False,
        tie_embeddings: bool = False,
    ):
        super().__init__()
        if tie_embeddings and embed_size != hidden_size:
            raise ValueError(
                f"tied embeddings need embed_size == hidden_size, got {embed_size}, {hidden_size}"
            )
        self.attention = attention
        self.input_feeding = input_feeding and attention is not None
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        # the fixed-vector baseline reads its context at every step; input feeding reads h̃_{t-1}
        feeds = attention is None or self.input_feeding
        rnn_input = embed_size + hidden_size if feeds else embed_size
        self.rnn = nn.GRU(
            rnn_input, hidden_size, num_layers=layers, batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip
        self.combine = nn.Linear(2 * hidden_size, hidden_size)  # W_c
        # W_s; tied: the embedding matrix itself (Press & Wolf 2017), with a bias of its own
        self.output = None if tie_embeddings else nn.Linear(hidden_size, vocab_size)
        self.output_bias = nn.Parameter(torch.zeros(vocab_size)) if tie_embeddings else None

    def forward(
        self,
        tokens: Tensor,
        hidden: Tensor,
        memory: Tensor,
        keys: Tensor,
        src_pad_mask: Tensor,
        fixed_context: Tensor,
        feed: Tensor,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Run T steps given the previous target tokens.

        tokens (B, T); hidden (L, B, H); memory (B, S, H) encoder states; keys (B, S, ·) their
        projection; src_pad_mask (B, S); fixed_context (B, H) the encoder's final state; feed (B, H)
        the attentional state h̃ of the step before (zeros before the first; read with input feeding).
        Returns logits (B, T, V), the new hidden (L, B, H), the last h̃ (B, H) and attention weights
        (B, T, S), or None without attention.  With ``keep`` (B, T) bool, logits only where it is True:
        (N, V), so that training spends nothing on the word distributions of padding.
        """
        attentional, _, hidden, weights = self.attentional_states(
            tokens, hidden, memory, keys, src_pad_mask, fixed_context, feed
        )
        feed = attentional[:, -1]  # (B, H)
        if keep is not None:
            attentional = attentional[keep]  # (N, H)
        return self.logits(self.dropout(attentional)), hidden, feed, weights

    def attentional_states(
        self,
        tokens: Tensor,
        hidden: Tensor,
        memory: Tensor,
        keys: Tensor,
        src_pad_mask: Tensor,
        fixed_context: Tensor,
        feed: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """:meth:`forward` up to the word scores: h̃ (B, T, H), the top GRU layer's output at each step
        (B, T, H), the new hidden (L, B, H), attention weights (B, T, S) or None."""
        embedded = self.dropout(self.embedding(tokens))  # (B, T, E)
        mask = src_pad_mask.unsqueeze(1)  # (B, 1, S)
        if self.attention is None:
            context = fixed_context.unsqueeze(1).expand(-1, tokens.size(1), -1)  # (B, T, H)
            outputs, hidden = self.rnn(torch.cat([embedded, context], dim=-1), hidden)  # (B, T, H)
            return torch.tanh(self.combine(torch.cat([context, outputs], dim=-1))), outputs, hidden, None
        if self.input_feeding:
            steps, step_outputs, step_weights = [], [], []
            for t in range(tokens.size(1)):
                rnn_in = torch.cat([embedded[:, t : t + 1], feed.unsqueeze(1)], dim=-1)  # (B, 1, E + H)
                output, hidden = self.rnn(rnn_in, hidden)  # (B, 1, H)
                attended, w = self._attend(output, keys, memory, mask)  # (B, 1, H), (B, 1, S)
                feed = attended.squeeze(1)
                steps.append(attended)
                step_outputs.append(output)
                step_weights.append(w)
            cat = torch.cat
            return cat(steps, dim=1), cat(step_outputs, dim=1), hidden, cat(step_weights, dim=1)  # (B, T, ·)
        outputs, hidden = self.rnn(embedded, hidden)  # (B, T, H)
        attentional, weights = self._attend(outputs, keys, memory, mask)
        return attentional, outputs, hidden, weights

    def logits(self, attentional: Tensor) -> Tensor:
        """Attentional states (…, H) → word scores (…, V): W_s h̃ + b."""
        if self.output is None:
            return nn.functional.linear(attentional, self.embedding.weight, self.output_bias)
        return self.output(attentional)

    def tied_output(self) -> nn.Linear:
        """The tied output layer (embedding matrix, own bias) as a layer of its own (a copy), for
        :func:`attnmt.device.quantize_int8`."""
        layer = nn.Linear(*reversed(self.embedding.weight.shape))
        layer.weight = nn.Parameter(self.embedding.weight.detach().clone())
        layer.bias = nn.Parameter(self.output_bias.detach().clone())
        return layer

    def _attend(self, outputs: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """GRU outputs (B, T, H) → attentional states h̃ (B, T, H), weights (B, T, S)."""
        context, weights = self.attention(outputs, keys, memory, mask)
        return torch.tanh(self.combine(torch.cat([context, outputs], dim=-1))), weights
