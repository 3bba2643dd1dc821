"""Decoding speed and BLEU, greedy against beam search, on a test set.

ATTNMT_DATA=../shared/data python bench/decode.py runs/tatoeba-gru-attention [--data tatoeba:test] [--beams 1 5] [--int8]
"""

import argparse
import time
from pathlib import Path

import torch

from attnmt.corpora import group_references, load_pairs
from attnmt.device import quantize_int8, reuse_freed_memory
from attnmt.metrics import corpus_scores
from attnmt.modeldir import load_model
from attnmt.translator import DecodeOptions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", default="tatoeba:test")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--int8", action="store_true", help="as `attnmt translate --int8`")
    args = parser.parse_args()
    reuse_freed_memory()  # as every attnmt command does
    translator = load_model(args.model_dir)
    if args.int8:
        translator.model = quantize_int8(translator.model.eval())
    sources, references = group_references(load_pairs(args.data))
    print(f"{args.model_dir} on {args.data}: {len(sources):,} sentences, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")  # fmt: skip
    print("| beam | BLEU | chrF | seconds | sentences/s |\n|---|---|---|---|---|")
    for beam in args.beams:
        started = time.perf_counter()
        options = DecodeOptions(beam_size=beam, alpha=args.alpha)
        hyps = translator.translate(sources, options, batch_size=args.batch_size)
        seconds = time.perf_counter() - started
        scores = corpus_scores([h.text for h in hyps], references)
        print(
            f"| {beam} | {scores.bleu:.2f} | {scores.chrf:.2f} | {seconds:.1f} | {len(sources) / seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
