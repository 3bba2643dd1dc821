"""Step 2, the encoder: a GRU reads the source and keeps one state per source token."""

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Encoder(nn.Module):
    """Embedding + (bi)GRU.

    A bidirectional encoder gives each direction ``hidden_size // 2`` units and concatenates them, so
    states are ``hidden_size`` wide either way and the decoder can start from the final state as is.
    Padding is packed away: a sentence's states never depend on the padding in its batch.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        embed_size: int,
        hidden_size: int,
        layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if bidirectional and hidden_size % 2:
            raise ValueError("a bidirectional encoder needs an even hidden_size")
        self.bidirectional = bidirectional
        self.embedding = nn.Embedding(vocab_size, embed_size, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.rnn = nn.GRU(
            embed_size,
            hidden_size // 2 if bidirectional else hidden_size,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, src: Tensor, src_pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        """src (B, S) ids, src_pad_mask (B, S) → states (B, S, H), final state per layer (L, B, H)."""
        lengths = (~src_pad_mask).sum(dim=1).cpu()
        embedded = self.dropout(self.embedding(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        states, final = self.rnn(packed)  # final: (L * directions, B, H / directions)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=src.size(1))  # (B, S, H)
        if self.bidirectional:
            final = torch.cat([final[0::2], final[1::2]], dim=-1)  # (L, B, H): [forward; backward]
        return states, final
