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

import attnmt.training as training
from attnmt.config import DataConfig, ModelConfig
from attnmt.corpora import clean, load_pairs
from attnmt.data import TranslationDataset, bucketed_batches, collate
from attnmt.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", choices=["gru", "transformer"], default="gru")
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--batch-tokens", type=int, default=2000)
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's operator table")
    args = parser.parse_args()
    data = DataConfig(train="tatoeba:train", tokenizer="bpe", vocab_size=8000, joint_vocab=True)
    pairs, _ = clean(load_pairs(data.train), max_words=data.max_words)
    tokenizer, _ = training.build_tokenizers(data, pairs)
    vocab, _ = training.build_vocabularies(data, pairs, tokenizer, tokenizer)
    dataset = TranslationDataset(pairs, vocab, vocab, src_tokenizer=tokenizer, tgt_tokenizer=tokenizer)
    config = (
        ModelConfig(attention="additive", embed_size=256, hidden_size=256, dropout=0.1)
        if args.arch == "gru"
        else ModelConfig(
            architecture="transformer", hidden_size=256, heads=4, ff_size=1024, layers=3, dropout=0.1
        )
    )
    torch.manual_seed(0)
    model = build_model(config, len(vocab), len(vocab), True)
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
