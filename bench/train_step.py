"""Time training updates of the Tatoeba-sized GRU model on random batches, fp32 against bf16 autocast.

python bench/train_step.py [--attention additive] [--updates 5] [--batch-tokens 6000]
"""

import argparse
import time

import torch

from attnmt.config import ModelConfig
from attnmt.data import Batch, pad_mask
from attnmt.model import build_model
from attnmt.training import update


def random_batch(vocab: int, tokens: int, length: int, generator: torch.Generator) -> Batch:
    rows = tokens // length
    src = torch.randint(4, vocab, (rows, length), generator=generator)
    tgt = torch.randint(4, vocab, (rows, length + 1), generator=generator)
    mask = pad_mask(torch.full((rows,), length))
    return Batch(
        src=src, src_pad_mask=mask, tgt_in=tgt[:, :-1], tgt_out=tgt[:, 1:], indices=list(range(rows))
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attention", default="additive")
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--batch-tokens", type=int, default=6000)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=8000)
    args = parser.parse_args()
    config = ModelConfig(attention=args.attention, embed_size=256, hidden_size=512, dropout=0.2)
    g = torch.Generator().manual_seed(0)
    batch = random_batch(args.vocab, args.batch_tokens, args.length, g)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {batch.num_tokens} target tokens/update"
    )
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model(config, args.vocab, args.vocab)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        with autocast:
            update(model, optimizer, [batch])  # warm-up
        start = time.perf_counter()
        for _ in range(args.updates):
            with autocast:
                loss, n = update(model, optimizer, [batch])
        seconds = (time.perf_counter() - start) / args.updates
        print(f"{precision}: {seconds:.2f} s/update, {n / seconds:,.0f} target tokens/s, loss {loss:.3f}")


if __name__ == "__main__":
    main()
