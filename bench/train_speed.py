"""Training updates per second of an attnmt checkout on real Tatoeba batches: for before/after timings.

    ATTNMT_DATA=../shared/data PYTHONPATH=CHECKOUT python bench/train_speed.py [--arch gru] [--updates 60] [--profile]

Builds the benchmark's matched model (bench/compare.py's SETTINGS) with the checkout's own code,
batches Tatoeba with its batcher and times ``--updates`` updates after 3 warm-up ones.  Prints
updates/s, target tokens/s and source + target tokens/s (padding excluded; the source counts its `<eos>`).
"""

import argparse
import contextlib
import time

import torch
from compare import model_config, tatoeba_dataset

import attnmt.training as training
from attnmt.data import bucketed_batches, collate
from attnmt.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", choices=["gru", "transformer"], default="gru")
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--batch-tokens", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's operator table")
    args = parser.parse_args()
    dataset = tatoeba_dataset()
    vocab = len(dataset.src_vocab)
    torch.manual_seed(0)
    model = build_model(model_config(args.arch), vocab, vocab, True)
    fused = hasattr(training, "FUSED_ADAM")  # the checkout's own choice
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused or None)
    batches = [
        collate(dataset, b)
        for b in bucketed_batches(dataset.lengths(), args.batch_tokens, shuffle=True, seed=1)[
            : args.updates + 3
        ]
    ]
    for batch in batches[:3]:
        training.update(model, optimizer, [batch])
    src = tgt = 0
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    started = time.perf_counter()
    with profiler if args.profile else contextlib.nullcontext():
        for batch in batches[3:]:
            src += int((~batch.src_pad_mask).sum())
            tgt += training.update(model, optimizer, [batch])[1]
    seconds = time.perf_counter() - started
    print(
        f"{args.arch}: {args.updates / seconds:.2f} updates/s, {tgt / seconds:,.0f} target tokens/s, "
        f"{(src + tgt) / seconds:,.0f} source + target pieces/s ({(src + tgt) / args.updates:,.0f} per update)"
    )
    if args.profile:
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
