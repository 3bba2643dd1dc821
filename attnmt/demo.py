"""``attnmt demo``: the eight steps of attention-based translation, on the built-in set, in a minute."""

import time
from pathlib import Path

import torch

from attnmt.config import Config
from attnmt.corpora import toy_pairs
from attnmt.data import TranslationDataset, collate
from attnmt.model import build_model
from attnmt.plotting import attention_table, plot_attention
from attnmt.tokenization import tokenize
from attnmt.training import train
from attnmt.translator import translate_sentence

NEW_SENTENCE = "We are happy"


def run_demo(*, seed: int = 0, heatmap: Path = Path("attnmt-demo-attention.png")) -> str:
    """Run the demo, printing as it goes; returns the translation of "We are happy"."""
    started = time.perf_counter()
    config = Config()
    config.train.seed = seed
    torch.manual_seed(seed)
    pairs = toy_pairs()
    dataset = _show_the_data(pairs)
    example = next(i for i, (en, _) in enumerate(pairs) if en == "She loves cats.")
    _show_the_untrained_model(config, dataset, example)

    _step(6, f"Training: cross-entropy + Adam, {config.train.epochs} epochs over the {len(pairs)} pairs")
    translator = train(config, pairs=pairs, progress=True)

    _step(7, "translate_sentence: greedy decoding until <eos>")
    for sentence in ("She loves cats.", "They are happy."):
        print(f"  {sentence!r} → {translate_sentence(translator, sentence).text!r}")

    _step(8, f"A new sentence: {NEW_SENTENCE!r}")
    result = translate_sentence(translator, NEW_SENTENCE)
    print(f"  {NEW_SENTENCE!r} → {result.text!r}\n")
    print(attention_table(result.attention, result.src_tokens, result.tokens))
    plot_attention(result.attention, result.src_tokens, result.tokens, heatmap)
    print(f"\n  attention heatmap saved to {heatmap}")
    print(f"\ndone in {time.perf_counter() - started:.0f} s")
    return result.text


def _show_the_data(pairs: list[tuple[str, str]]) -> TranslationDataset:
    """Step 1: the pairs as tokens and ids."""
    _step(1, "Data: sentence pairs → tokens → ids (TranslationDataset, Vocabulary)")
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(pairs)
    en, fr = next(p for p in pairs if p[0] == "She loves cats.")
    print(f"  {len(pairs)} English–French pairs built into attnmt, e.g. {en!r} → {fr!r}")
    print(f"  tokens {tokenize(en)} → ids {src_vocab.encode(tokenize(en))} (+ <eos>)")
    print(f"  vocabularies: {len(src_vocab)} English and {len(tgt_vocab)} French tokens, specials included")
    sources = [s for s, _ in pairs]
    pieces = [s for s in sources if s.startswith("We are")][:2] + [
        s for s in sources if s.endswith(" happy.")
    ][:3]
    print(f"  {NEW_SENTENCE!r} is not in the data; the model must compose it from {pieces} …")
    return TranslationDataset(pairs, src_vocab, tgt_vocab)


def _show_the_untrained_model(config: Config, dataset: TranslationDataset, example: int) -> None:
    """Steps 2–5: what each part of the model makes of pair ``example`` before training."""
    model = build_model(config.model, len(dataset.src_vocab), len(dataset.tgt_vocab))
    batch = collate(dataset, [example])
    with torch.no_grad():
        model.eval()
        encoded = model.encode(batch.src, batch.src_pad_mask)
        logits, _, weights = model.decode(batch.tgt_in, model.init_state(encoded))

    _step(2, "Encoder: a bidirectional GRU gives every source token a state")
    print(
        f"  {batch.src.size(1)} source tokens → states {tuple(encoded.states.shape)} (batch, tokens, hidden)"
    )

    _step(3, f"Attention ({config.model.attention}): each decoder step scores every source state")
    print("  softmax over the scores gives weights that sum to 1; the context is their weighted average")
    print(f"  untrained weights of the first target word: {[round(w, 2) for w in weights[0, 0].tolist()]}")

    _step(4, "Decoder: a GRU writes French one word at a time, attending before each word")
    print(
        f"  {batch.tgt_in.size(1)} target steps → logits {tuple(logits.shape)} (batch, steps, French vocab)"
    )

    _step(5, "EncoderDecoderAttention: encoder + attention + decoder in one model")
    print(f"  {sum(p.numel() for p in model.parameters()):,} parameters")


def _step(number: int, title: str) -> None:
    print(f"\nStep {number} · {title}", flush=True)
