"""What a keystroke costs a translator who types: every character of each reference, one at a time,
with a proposal asked for after each (`Completer.complete`, as the explorer's type-along mode and
`POST /complete` do).  A keystroke either *follows* the ghost text (the character typed is the one
proposed: the proposal still holds, and the decoded prefixes it walks are already kept) or *departs*
from it (the model decodes afresh from the longest prefix kept).  Each keystroke's latency is set
against the time to translate its sentence afresh with the same search (`Translator.translate`, one
sentence): the cost `attnmt simulate` reports as "keystroke ÷ fresh" is that of departures only,
since its translator accepts what the model got right instead of typing it.

    ATTNMT_DATA=../shared/data python bench/keystrokes.py runs/gru-12min [--data tatoeba:test] [--limit N] [--int8]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from attnmt.completion import Completer
from attnmt.corpora import group_references, load_pairs
from attnmt.device import quantize_int8, reuse_freed_memory
from attnmt.engine import DecodeOptions
from attnmt.modeldir import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", default="tatoeba:test")
    parser.add_argument("--limit", type=int, help="the first N sentences")
    parser.add_argument("--int8", action="store_true", help="as `attnmt simulate --int8`")
    args = parser.parse_args()
    reuse_freed_memory()  # as every attnmt command does
    translator = load_model(args.model_dir)
    if args.int8:
        translator.model = quantize_int8(translator.model.eval())
    completer = Completer(translator, max_sources=1)
    options = DecodeOptions(beam_size=1)
    sources, references = group_references(load_pairs(args.data))
    pairs = list(zip(sources, [r[0] for r in references], strict=True))[: args.limit]
    latencies: dict[str, list[float]] = {"follows": [], "departs": []}
    fresh_times: dict[str, list[float]] = {"follows": [], "departs": []}  # per keystroke, its sentence's
    for source, reference in pairs:
        started = time.perf_counter()
        translator.translate([source], options)
        fresh = time.perf_counter() - started
        proposal = completer.complete(source, "", options).text
        for end in range(1, len(reference) + 1):
            kind = "follows" if proposal.startswith(reference[:end]) else "departs"
            started = time.perf_counter()
            proposal = completer.complete(source, reference[:end], options).text
            latencies[kind].append(time.perf_counter() - started)
            fresh_times[kind].append(fresh)
    keystrokes = sum(len(v) for v in latencies.values())
    print(f"{args.model_dir}{' --int8' if args.int8 else ''} on {args.data}: {len(pairs):,} sentences, "
          f"{keystrokes:,} keystrokes, greedy, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"capability {torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
    print(
        "| keystrokes | count | share | latency p50 / p95 / max ms | keystroke ÷ fresh |\n|---|---:|---:|---:|---:|"
    )
    latencies["all"] = latencies["follows"] + latencies["departs"]
    fresh_times["all"] = fresh_times["follows"] + fresh_times["departs"]
    for kind, values in latencies.items():
        ms = np.array(values) * 1000
        mean_ratio = np.mean(values) / np.mean(fresh_times[kind])  # as `attnmt simulate`: mean ÷ mean
        print(f"| {kind} | {len(values):,} | {len(values) / keystrokes:.1%} | {np.percentile(ms, 50):.1f} / "
              f"{np.percentile(ms, 95):.1f} / {ms.max():.1f} | {mean_ratio:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
