"""Steps 7–8: translate text with a trained model.  The CLI, notebooks and demos all call this."""

from dataclasses import dataclass

import numpy as np
import torch

from attnmt.config import Config
from attnmt.data import pad
from attnmt.errors import AttnmtError
from attnmt.model import EncoderDecoderAttention
from attnmt.search import greedy_search, max_output_lengths
from attnmt.tokenization import Tokenizer
from attnmt.vocab import EOS, Vocabulary


@dataclass
class Translation:
    """One translated sentence.  ``attention[i, j]`` is how much target token i attended to source
    token j: shape (len(tokens), len(src_tokens)); None for a model without attention."""

    text: str
    tokens: list[str]  # target tokens as emitted, ending with <eos>
    src_tokens: list[str]  # source tokens as the encoder saw them, ending with <eos>
    score: float  # log-probability of the output under the model
    attention: np.ndarray | None


@dataclass
class Translator:
    """A trained model with its vocabularies and config: what a model directory holds."""

    model: EncoderDecoderAttention
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    config: Config

    def translate(self, sentences: list[str], *, batch_size: int = 64) -> list[Translation]:
        """Translate many sentences, batched by length; results come back in input order."""
        if batch_size < 1:
            raise AttnmtError(f"batch size must be at least 1, got {batch_size}")
        tokenized = [self.src_tokenizer.tokenize(s) for s in sentences]
        order = sorted(range(len(sentences)), key=lambda i: len(tokenized[i]))
        results: list[Translation | None] = [None] * len(sentences)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            for i, translation in zip(
                chunk, self._translate_tokens([tokenized[i] for i in chunk]), strict=True
            ):
                results[i] = translation
        return results

    @torch.no_grad()
    def _translate_tokens(self, batch: list[list[str]]) -> list[Translation]:
        self.model.eval()
        device = next(self.model.parameters()).device
        src_tokens = [[*tokens, EOS] for tokens in batch]
        src, src_pad_mask = pad([self.src_vocab.encode(tokens) for tokens in src_tokens])
        src, src_pad_mask = src.to(device), src_pad_mask.to(device)
        hypotheses = greedy_search(self.model, src, src_pad_mask, max_output_lengths(src_pad_mask))
        translations = []
        for source, hyp in zip(src_tokens, hypotheses, strict=True):
            if len(source) == 1:  # empty input: nothing to translate
                translations.append(Translation("", [], [], 0.0, np.zeros((0, 0), np.float32)))
                continue
            tokens = self.tgt_vocab.decode(hyp.tokens)
            attention = None if hyp.attention is None else hyp.attention.float().cpu().numpy()
            text = self.tgt_tokenizer.detokenize(tokens)
            translations.append(Translation(text, [*tokens, EOS], source, hyp.score, attention))
        return translations


def translate_sentence(model: Translator, sentence: str) -> Translation:
    """Translate one sentence greedily until ``<eos>`` (or 2 × its length + 10 tokens)."""
    return model.translate([sentence])[0]
