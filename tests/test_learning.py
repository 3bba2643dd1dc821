"""Learnability: real training runs, small enough for CI, that must reach a clear bar.

The bars hold on any x86 CPU: float order differs between torch's kernel levels (and ``precision:
auto`` may train in bf16 where the CPU has it natively), so each comment gives the spread measured over
seeds and kernel levels (``ATEN_CPU_CAPABILITY=default`` and ``avx2``; torch 2.13.0, 2 threads, a
2-core AVX2-only EPYC, 2026-12-07) and the bar sits well below it.  The ``budget`` schedule (hold, then
fall to 0) learns in 400 updates more than a constant rate learnt in 1,000; AVX-512 BF16's bf16 training was
not re-measured with it (under the constant rate it stayed within the other levels' spread).  Re-measure
with ``python tests/test_learning.py NAME --seeds 0 1 [--steps N]`` under each ``ATEN_CPU_CAPABILITY``.
"""

import pytest

from attnmt.config import config_from_dict
from attnmt.corpora import toy_pairs
from attnmt.synthetic import reversal_pairs
from attnmt.training import train
from attnmt.translator import DecodeOptions

TRANSFORMER = {"architecture": "transformer", "hidden_size": 64, "heads": 4, "ff_size": 128, "layers": 2}


def reversal_accuracy(attention: str, steps: int = 400, seed: int = 0, **model) -> float:
    """Exact-match accuracy on 300 new sequences after ``steps`` updates of the ``budget`` schedule:
    the learning rate held, then falling linearly to 0 over the last 30 % (the Transformer warms up
    over its first 100 updates)."""
    transformer = model.get("architecture") == "transformer"
    config = config_from_dict(
        {
            "model": {"attention": attention, "embed_size": 32, "hidden_size": 128, "dropout": 0.0, **model},
            "train": {"epochs": 100, "max_steps": steps, "batch_tokens": 1700, "lr": 0.003, "seed": seed,
                      "schedule": "budget", "warmup_steps": 100 if transformer else 0},
        }
    )  # fmt: skip
    model = train(config, pairs=reversal_pairs(20_000, seed=0), progress=False)
    test = reversal_pairs(300, seed=1)
    outputs = model.translate([src for src, _ in test], DecodeOptions(beam_size=1))
    return sum(out.text == ref for out, (_, ref) in zip(outputs, test, strict=True)) / len(test)


@pytest.mark.slow
def test_attention_model_learns_to_reverse_sequences():
    # measured 0.983 and 0.99 (seeds 0, 1; AVX2), 0.983 (default, seed 0); at 600 updates 0.997-1.0
    assert reversal_accuracy("additive") >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["dot", "general", "scaled_dot"])
def test_every_attention_variant_learns_to_reverse(attention):
    # measured, seed 0: dot 0.963 (AVX2) 0.963 (default), seed 1 0.98 (default); general 0.977 (AVX2)
    # 0.99 (default); scaled_dot 0.933 (AVX2) 0.933 (default), seed 1 0.93 (default)
    assert reversal_accuracy(attention) >= 0.85


@pytest.mark.slow
def test_the_transformer_learns_to_reverse_sequences():
    """2 + 2 layers, d_model 64, 1,000 updates (100 of warm-up).  At 700 it sits on the cliff where
    reversal is learnt (0.897 and 0.77, seeds 0 and 1, AVX2); at 1,000: 0.98 and 0.973 (AVX2), 0.993
    (default, seed 0) — far above the fixed vector's 0.31."""
    assert reversal_accuracy("scaled_dot", steps=1000, **TRANSFORMER) >= 0.85


@pytest.mark.slow
def test_without_attention_the_same_budget_does_far_worse():
    """One fixed context vector cannot hold a 20-symbol sequence (Cho et al. 2014's bottleneck)."""
    assert reversal_accuracy("none") <= 0.5  # measured 0.263 (AVX2, default)


@pytest.mark.slow
def test_toy_set_trains_french_to_english():
    # 20 epochs: exact on 1.0 of the sample (AVX2 and default kernels, 2026-12-07)
    config = config_from_dict({"data": {"src_lang": "fr", "tgt_lang": "en"}, "train": {"epochs": 20}})
    pairs = toy_pairs("fr", "en")
    model = train(config, progress=False)
    sample = pairs[::10]
    outputs = model.translate([fr for fr, _ in sample], DecodeOptions(beam_size=1))
    exact = sum(out.text == en for out, (_, en) in zip(outputs, sample, strict=True)) / len(sample)
    assert exact >= 0.9
    assert model.translate(["Ils sont heureux."])[0].text == "They are happy."


if __name__ == "__main__":  # the spread behind the bars: one line per run
    import argparse
    import json

    import torch

    from attnmt.device import candidate_precisions

    parser = argparse.ArgumentParser(description="reversal accuracy of one learning-test model, per seed")
    parser.add_argument("name", choices=["none", "dot", "general", "additive", "scaled_dot", "transformer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for seed in args.seeds:
        model = TRANSFORMER if args.name == "transformer" else {}
        attention = "scaled_dot" if args.name == "transformer" else args.name
        accuracy = reversal_accuracy(attention, args.steps, seed, **model)
        kernels = torch.backends.cpu.get_cpu_capability()
        precisions = candidate_precisions(torch.device("cpu"))  # two: auto timed them, a log tells which
        print(json.dumps({"name": args.name, "seed": seed, "steps": args.steps, "kernels": kernels,
                          "precisions": precisions, "accuracy": round(accuracy, 4)}))  # fmt: skip
