"""What a translation engine offers the command line, the server and the explorer: the :class:`Engine`
protocol, its options (:class:`DecodeOptions`) and its answers (:class:`Translation`, :class:`Score`).

Two engines keep it: attnmt's own :class:`attnmt.translator.Translator` (a PyTorch model, step by step)
and :class:`attnmt.ctranslate2_model.CTranslate2Translator` (an exported Transformer).  Both inherit
what is written once here: :meth:`Engine.translate`, :meth:`Engine.replace_unknowns` and the checks
of target texts (:func:`target_tokens`).  Callers ask an engine what it can do (``has_attention``,
``model``), never which class it is.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from attnmt.alignment import replace_unknowns
from attnmt.config import Config
from attnmt.device import select_device
from attnmt.errors import AttnmtError
from attnmt.model import Seq2Seq
from attnmt.tokenization import Tokenizer
from attnmt.vocab import EOS, PAD, SOS, Vocabulary


@dataclass(frozen=True)
class DecodeOptions:
    """How to search for translations: one set of options, and defaults, for the Python API, the CLI
    (``--beam``, ``--alpha``, ``--n-best``) and the server (``beam``, ``alpha``, ``n_best``)."""

    beam_size: int = 5  # 1 is greedy search
    alpha: float = 1.0  # GNMT length penalty: rank by log p / ((5 + |Y|) / 6)^alpha; 0 ranks by log p
    n_best: int = 1  # translations per sentence, best first: at most beam_size

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise AttnmtError(f"beam_size: must be at least 1, got {self.beam_size}")
        if not 1 <= self.n_best <= self.beam_size:
            raise AttnmtError(
                f"n_best: must be between 1 and beam_size ({self.beam_size}), got {self.n_best}"
            )
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise AttnmtError(f"alpha: must be a finite number of at least 0, got {self.alpha}")


@dataclass
class Translation:
    """One translated sentence.  ``attention[i, j]`` is how much target token i attended to source
    token j: shape (len(tokens), len(src_tokens)); None for a model without attention."""

    text: str
    tokens: list[str]  # target tokens as emitted, ending with <eos>
    src_tokens: list[str]  # source tokens as the encoder saw them, ending with <eos>
    score: float  # log-probability of the output under the model
    attention: np.ndarray | None


def empty_translation() -> Translation:
    """What an empty sentence translates to: nothing, with no tokens."""
    return Translation("", [], [], 0.0, np.zeros((0, 0), np.float32))


@dataclass
class Score:
    """How probable the model finds one given translation, read by forced decoding.
    ``attention[i, j]``: how much target token i attended to source token j while the model read it."""

    # the translation's tokens as the model read them (<unk> where out of vocabulary), <eos> last
    tokens: list[str]
    src_tokens: list[str]  # source tokens as the encoder saw them, ending with <eos>
    log_probs: list[float]  # log p of each token given the source and the tokens before it
    total: float  # their sum: the translation's log-probability
    attention: np.ndarray | None  # (len(tokens), len(src_tokens)); None for a model without attention
    # per token, the k tokens the model finds most likely in its place (given the tokens before it) with
    # their log-probabilities, best first; empty unless ``top_k`` was asked for
    candidates: list[list[tuple[str, float]]] = field(default_factory=list)


class Engine(Protocol):
    """A trained model with its vocabularies, tokenizers and config, ready to translate."""

    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    config: Config
    # the PyTorch model, which search drives step by step; None where the engine keeps its decoder to
    # itself.  Alternatives (top_k), completion as you type and averaging need it
    model: Seq2Seq | None

    @property
    def has_attention(self) -> bool:
        """Whether translations come with attention weights."""
        ...

    @property
    def parameter_count(self) -> int: ...

    def place(self, device: str = "auto", *, int8: bool = False) -> None:
        """Compute on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); with ``int8``, in
        int8 on the CPU.  An engine that cannot says so with an :class:`AttnmtError`."""
        ...

    def translate_n_best(
        self,
        sentences: list[str],
        options: DecodeOptions = DecodeOptions(),
        *,
        batch_size: int = 64,
        prefix: list[str] | None = None,
    ) -> list[list[Translation]]:
        """The ``options.n_best`` best translations of each sentence, best first, in input order.  With
        ``prefix`` (one text per sentence, "" for none) each translation begins with its prefix's tokens
        and search continues from there.  An empty sentence translates to ""."""
        ...

    def score(
        self, sources: list[str], targets: list[str], *, batch_size: int = 64, top_k: int = 0
    ) -> list[Score]:
        """How probable the model finds each ``targets[i]`` as the translation of ``sources[i]``, token
        by token, with the attention behind it; with ``top_k``, the likeliest tokens at each position."""
        ...

    def score_translations(
        self, translations: list[Translation], *, batch_size: int = 64, top_k: int = 0
    ) -> list[Score]:
        """The :meth:`score` of each translation as ``translate`` returned it, read from its own tokens."""
        ...

    def attention_maps(self, translation: Translation) -> dict[str, np.ndarray]:
        """Every attention map behind ``translation`` this engine can give: ``cross`` (layers, heads,
        T, S) always; a Transformer's ``encoder`` and ``decoder`` self-attention where it can."""
        ...

    def translate(
        self,
        sentences: list[str],
        options: DecodeOptions = DecodeOptions(),
        *,
        batch_size: int = 64,
        prefix: list[str] | None = None,
    ) -> list[Translation]:
        """The best translation of each sentence, in input order (see :meth:`translate_n_best`)."""
        n_bests = self.translate_n_best(sentences, options, batch_size=batch_size, prefix=prefix)
        return [n_best[0] for n_best in n_bests]

    def replace_unknowns(
        self, translation: Translation, dictionary: dict[str, str] | None = None
    ) -> Translation:
        """``translation`` with each ``<unk>`` replaced by the source word it attends to most, looked
        up in ``dictionary`` if given (Luong et al. 2015)."""
        if translation.attention is None:
            raise AttnmtError("unknown-word replacement needs attention; this model has none")
        tokens = replace_unknowns(
            translation.tokens, translation.src_tokens, translation.attention, dictionary
        )
        return dataclasses.replace(
            translation, text=self.tgt_tokenizer.detokenize(tokens[:-1]), tokens=tokens
        )


def target_tokens(engine: Engine, texts: list[str], count: int, name: str) -> list[list[str]]:
    """Target texts (a prefix, a translation to score) as the engine's target tokens, ``<unk>`` out of
    vocabulary: one text per sentence, none holding a token that is not a word (``name`` for messages)."""
    if len(texts) != count:
        raise AttnmtError(f"{name}: {len(texts)} for {count} sentences; give one per sentence")
    vocab = engine.tgt_vocab
    rows = [vocab.decode(vocab.encode(engine.tgt_tokenizer.tokenize(text))) for text in texts]
    for i, row in enumerate(rows):
        if any(token in (PAD, SOS, EOS) for token in row):
            raise AttnmtError(f"{name}[{i}]: holds <pad>, <sos> or <eos>, which are not words")
    return rows


def stay_on_cpu(device: str, int8: bool, engine: str, computes: str, advice: str = "") -> None:
    """:meth:`Engine.place` of an export, which runs on the CPU and computes as it was exported
    (``computes``, e.g. float32): ``device`` and ``int8`` may only ask for that, else an error names them."""
    if select_device(device, source="--device").type != "cpu" and device != "auto":
        raise AttnmtError(f"--device {device}: {engine} runs on the CPU here (use --device cpu)")
    if int8:
        raise AttnmtError(
            f"--int8: {engine} computes as exported ({computes}){'; ' + advice if advice else ''}"
        )


def check_top_k(top_k: int) -> None:
    if top_k < 0:
        raise AttnmtError(f"top_k: must be at least 0, got {top_k}")
