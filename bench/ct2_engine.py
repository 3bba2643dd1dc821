"""CTranslate2 alone on an attnmt export: how fast the engine translates the test sentences when driven
directly (length-sorted batches of 64, one hypothesis, no attention), to set apart what
``attnmt translate`` adds around it (equal-length batches, every beam returned, attention).
``--layouts`` splits the threads between translators and their matrix products: ``1x2`` is one
translator computing on 2 threads, ``2x1`` two translators on one thread each, the batches submitted
asynchronously so that both work at once.  ``--wrapper`` drives it as ``attnmt translate`` does
(sentences of one length per batch, every beam hypothesis returned, attention), to find which of those
costs time.

    python bench/ct2_engine.py runs/bench/race/transformer/attnmt/ctranslate2-float32 \
        runs/bench/data/test.txt --compute-types float32 int8_float32 --passes 2 --layouts 1x2 2x1
"""

import argparse
import itertools
import time
from pathlib import Path

import ctranslate2
import torch

from attnmt.tokenization import SubwordTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("export", type=Path, help="an `attnmt export --to ctranslate2` directory")
    parser.add_argument("sources", type=Path, help="English sentences, one per line")
    parser.add_argument("--compute-types", nargs="+", default=["default"])
    parser.add_argument("--passes", type=int, default=2, help="greedy then beam 5, this many times")
    threads = torch.get_num_threads()
    parser.add_argument("--layouts", nargs="+", default=[f"1x{threads}"], help="INTERxINTRA threads")
    parser.add_argument(
        "--wrapper", action="store_true",
        help="batches of equal-length sentences, all beam hypotheses, attention (as attnmt's wrapper)",
    )  # fmt: skip
    args = parser.parse_args()
    tokenizer = SubwordTokenizer.load(args.export / "src.spm")
    lines = args.sources.read_text(encoding="utf-8").splitlines()
    sources = [[*tokenizer.tokenize(line), "<eos>"] for line in lines]
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    if args.wrapper:  # as attnmt.ctranslate2_model._same_length_batches
        groups = [list(g) for _, g in itertools.groupby(order, key=lambda i: len(sources[i]))]
        chunks = [g[s : s + 64] for g in groups for s in range(0, len(g), 64)]
    else:
        chunks = [order[s : s + 64] for s in range(0, len(order), 64)]
    batches = [[sources[i] for i in chunk] for chunk in chunks]
    print(f"{len(batches)} batches")
    print(f"CTranslate2 {ctranslate2.__version__}, {torch.get_num_threads()} threads, "
          f"compute types here: {sorted(ctranslate2.get_supported_compute_types('cpu'))}")  # fmt: skip
    for compute_type, layout in itertools.product(args.compute_types, args.layouts):
        inter, intra = map(int, layout.split("x"))
        engine = ctranslate2.Translator(
            str(args.export),
            device="cpu",
            compute_type=compute_type,
            inter_threads=inter,
            intra_threads=intra,
        )
        for _ in range(args.passes):
            for beam in (1, 5):
                started = time.perf_counter()
                pending = [
                    engine.translate_batch(
                        batch,
                        beam_size=beam,
                        length_penalty=0.0,
                        max_input_length=0,
                        asynchronous=True,
                        max_decoding_length=2 * max(map(len, batch)) + 10,
                        return_end_token=True,
                        return_scores=True,
                        num_hypotheses=beam if args.wrapper else 1,
                        return_attention=args.wrapper,
                    )
                    for batch in batches
                ]
                for result in itertools.chain.from_iterable(pending):
                    result.result()
                rate = len(sources) / (time.perf_counter() - started)
                print(f"{compute_type:14s} {layout} beam {beam}: {rate:6.0f} sentences/s", flush=True)


if __name__ == "__main__":
    main()
