"""Step 4, the decoder: a GRU that writes the target and, before each word, attends over the source.

Luong et al. (2015, §3) global attention: the GRU state h_t is the query, the context c_t the
attention-weighted source states, and the word distribution comes from the attentional state

    h̃_t = tanh(W_c [c_t; h_t])        p(y_t | y_<t, x) = softmax(W_s h̃_t)      (eqs. 5–6)

Because attention sits after the GRU, a teacher-forced target runs through the GRU in one call.

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
    ):
        super().__init__()
        self.attention = attention
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        rnn_input = embed_size if attention is not None else embed_size + hidden_size
        self.rnn = nn.GRU(
            rnn_input, hidden_size, num_layers=layers, batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip
        self.combine = nn.Linear(2 * hidden_size, hidden_size)  # W_c
        self.output = nn.Linear(hidden_size, vocab_size)  # W_s

    def forward(
        self,
        tokens: Tensor,
        hidden: Tensor,
        memory: Tensor,
        keys: Tensor,
        src_pad_mask: Tensor,
        fixed_context: Tensor,
        keep: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Run T steps given the previous target tokens.

        tokens (B, T); hidden (L, B, H); memory (B, S, H) encoder states; keys (B, S, ·) their
        projection; src_pad_mask (B, S); fixed_context (B, H) the encoder's final state.
        Returns logits (B, T, V), the new hidden (L, B, H) and attention weights (B, T, S), or None
        without attention.  With ``keep`` (B, T) bool, logits only where it is True: (N, V), so that
        training spends nothing on the word distributions of padding.
        """
        embedded = self.dropout(self.embedding(tokens))  # (B, T, E)
        if self.attention is None:
            context = fixed_context.unsqueeze(1).expand(-1, tokens.size(1), -1)  # (B, T, H)
            outputs, hidden = self.rnn(torch.cat([embedded, context], dim=-1), hidden)  # (B, T, H)
            weights = None
        else:
            outputs, hidden = self.rnn(embedded, hidden)  # (B, T, H)
            context, weights = self.attention(outputs, keys, memory, src_pad_mask.unsqueeze(1))
        attentional = torch.tanh(self.combine(torch.cat([context, outputs], dim=-1)))  # (B, T, H)
        if keep is not None:
            attentional = attentional[keep]  # (N, H)
        return self.output(self.dropout(attentional)), hidden, weights
