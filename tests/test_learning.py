"""Learnability: real training runs, small enough for CI, that must reach a clear bar.

The bars hold on any x86 CPU: float order differs between torch's kernel levels (and ``precision:
auto`` trains in bf16 where the CPU has it natively), so each comment gives the spread measured over
seeds and kernel levels — ``ATEN_CPU_CAPABILITY=default``, ``avx2``, and this project's AVX-512 BF16
machine's own (bf16) — with torch 2.13.0, 2 threads, and the bar sits outside it.  Re-measure with
``python tests/test_learning.py NAME --seeds 0 1 [--steps N]`` under each ``ATEN_CPU_CAPABILITY``.
"""

import pytest

from attnmt.config import config_from_dict
from attnmt.corpora import toy_pairs
from attnmt.synthetic import reversal_pairs
from attnmt.training import train
from attnmt.translator import DecodeOptions

TRANSFORMER = {"architecture": "transformer", "hidden_size": 64, "heads": 4, "ff_size": 128, "layers": 2}


def reversal_accuracy(attention: str, steps: int = 1000, seed: int = 0, **model) -> float:
    """Exact-match accuracy on 300 new sequences after ``steps`` updates (1,000: about 30 s on 2 cores)."""
    config = config_from_dict(
        {
            "model": {"attention": attention, "embed_size": 32, "hidden_size": 128, "dropout": 0.0, **model},
            "train": {"epochs": 100, "max_steps": steps, "batch_tokens": 1700, "lr": 0.003, "seed": seed},
        }
    )
    if config.model.architecture == "transformer":  # warmup, then inverse square root (Vaswani et al.)
        config.train.schedule, config.train.warmup_steps = "inverse_sqrt", 100
    model = train(config, pairs=reversal_pairs(20_000, seed=0), progress=False)
    test = reversal_pairs(300, seed=1)
    outputs = model.translate([src for src, _ in test], DecodeOptions(beam_size=1))
    return sum(out.text == ref for out, (_, ref) in zip(outputs, test, strict=True)) / len(test)


@pytest.mark.slow
def test_attention_model_learns_to_reverse_sequences():
    # measured 0.913 and 0.983 (seeds 0, 1; AVX-512, bf16), 0.967 (AVX2), 0.957 (default), seed 0
    assert reversal_accuracy("additive") >= 0.85


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["dot", "general", "scaled_dot"])
def test_every_attention_variant_learns_to_reverse(attention):
    # measured, seed 0: dot 0.913 (AVX2) 0.953 (default) 0.947 (AVX-512, bf16); general 0.903 (AVX2)
    # 0.973 (AVX-512, bf16); scaled_dot 0.967 (AVX2) 0.967 (AVX-512, bf16)
    assert reversal_accuracy(attention) >= 0.85


@pytest.mark.slow
def test_the_transformer_learns_to_reverse_sequences():
    """2 + 2 layers, d_model 64, 2,500 updates.  At the GRUs' 1,000 it sits on the cliff where reversal is
    learnt: 0.557–0.897 over seeds 0–1 and the three kernel levels (0.827 on AVX-512 in fp32, seed 0), so
    no bar both holds and proves much.  At 2,500: 0.897 and 0.977 (seeds 0, 1; AVX-512, bf16), 0.933
    (AVX2) and 0.950 (default), seed 0 — the bar leaves 0.1 below the lowest and stays far above the
    fixed vector's 0.29–0.30."""
    assert reversal_accuracy("scaled_dot", steps=2500, **TRANSFORMER) >= 0.8


@pytest.mark.slow
def test_without_attention_the_same_budget_does_far_worse():
    """One fixed context vector cannot hold a 20-symbol sequence (Cho et al. 2014's bottleneck)."""
    assert reversal_accuracy("none") <= 0.5  # measured 0.303 (AVX2, default), 0.287 (AVX-512, bf16)


@pytest.mark.slow
def test_toy_set_trains_french_to_english():
    config = config_from_dict({"data": {"src_lang": "fr", "tgt_lang": "en"}, "train": {"epochs": 30}})
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

    from attnmt.device import resolve_precision

    parser = argparse.ArgumentParser(description="reversal accuracy of one learning-test model, per seed")
    parser.add_argument("name", choices=["none", "dot", "general", "additive", "scaled_dot", "transformer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for seed in args.seeds:
        model = TRANSFORMER if args.name == "transformer" else {}
        attention = "scaled_dot" if args.name == "transformer" else args.name
        accuracy = reversal_accuracy(attention, args.steps, seed, **model)
        kernels = torch.backends.cpu.get_cpu_capability()
        precision = resolve_precision(torch.device("cpu"))
        print(json.dumps({"name": args.name, "seed": seed, "steps": args.steps, "kernels": kernels,
                          "precision": precision, "accuracy": round(accuracy, 4)}))  # fmt: skip
