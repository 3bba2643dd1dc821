"""Learnability: real training runs, small enough for CI, that must reach a clear bar."""

import pytest

from attnmt.config import config_from_dict
from attnmt.corpora import toy_pairs
from attnmt.synthetic import reversal_pairs
from attnmt.training import train
from attnmt.translator import DecodeOptions

TRANSFORMER = {"architecture": "transformer", "hidden_size": 64, "heads": 4, "ff_size": 128, "layers": 2}


def reversal_accuracy(attention: str, **model) -> float:
    """Exact-match accuracy on 300 new sequences after 1,000 updates (about a minute on 2 cores)."""
    config = config_from_dict(
        {
            "model": {"attention": attention, "embed_size": 32, "hidden_size": 128, "dropout": 0.0, **model},
            "train": {"epochs": 100, "max_steps": 1000, "batch_tokens": 1700, "lr": 0.003, "seed": 0},
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
    assert reversal_accuracy("additive") >= 0.95  # measured 0.993


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["dot", "general", "scaled_dot"])
def test_every_attention_variant_learns_to_reverse(attention):
    assert reversal_accuracy(attention) >= 0.85  # measured 0.913, 0.903, 0.967


@pytest.mark.slow
def test_the_transformer_learns_to_reverse_sequences():
    """2 + 2 layers, d_model 64: the same 1,000 updates as the GRU variants, and their bar."""
    assert reversal_accuracy("scaled_dot", **TRANSFORMER) >= 0.85  # measured 0.890 (1 thread)


@pytest.mark.slow
def test_without_attention_the_same_budget_does_far_worse():
    """One fixed context vector cannot hold a 20-symbol sequence (Cho et al. 2014's bottleneck)."""
    assert reversal_accuracy("none") <= 0.5  # measured 0.303


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
