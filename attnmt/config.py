"""Experiment configuration: one typed dataclass tree, loaded from YAML, overridable, saved with the model.
The defaults train the demo's model on the built-in toy set.

Every mistake — an unknown key, a wrong type, a value out of range — is an :class:`AttnmtError`
that names the key (``model.atention: unknown key; did you mean model.attention?``).
"""

import dataclasses
import difflib
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from attnmt.attention import ATTENTION_TYPES
from attnmt.device import PRECISIONS
from attnmt.errors import AttnmtError


@dataclass
class DataConfig:
    train: str = "toy"  # a data spec (attnmt.corpora): toy, tatoeba:train, multi30k:train, FILE.tsv, SRC,TGT
    dev: str | None = None  # validation data spec; BLEU on it picks the best checkpoint
    test: str | None = None  # held-out data spec, for `attnmt evaluate` (never used in training)
    src_lang: str = "en"
    tgt_lang: str = "fr"
    tokenizer: str = "word"  # word | bpe | unigram (the last two: SentencePiece trained on the train data)
    vocab_size: int = 8000  # SentencePiece pieces (bpe, unigram)
    joint_vocab: bool = False  # one SentencePiece model and vocabulary for both languages
    min_freq: int = 1  # rarer tokens become <unk>
    max_vocab_size: int | None = None  # per language, besides the specials
    max_words: int = 80  # cleaning: pairs with a longer side are dropped from training
    spm_sample: int = 1_000_000  # SentencePiece trains on at most this many pairs, a random sample
    prepared: str | None = None  # where `attnmt prepare` writes the encoded corpus; null: MODEL_DIR/prepared


@dataclass
class ModelConfig:
    architecture: str = "gru"  # gru (attnmt.model) | transformer (attnmt.transformer)
    attention: str = "additive"  # gru: none | dot | general | additive | scaled_dot
    embed_size: int = 64  # gru; the Transformer's embeddings are hidden_size wide (d_model)
    hidden_size: int = 128  # gru: the GRU state; transformer: d_model
    layers: int = 1  # gru: stacked GRUs; transformer: encoder layers and decoder layers, each
    bidirectional: bool = True  # gru encoder
    heads: int = 4  # transformer: attention heads per layer
    ff_size: int = 512  # transformer: inner size of the feed-forward sub-layers
    dropout: float = 0.1
    input_feeding: bool = False  # gru: the decoder GRU also reads the last attentional state (Luong §3.3)
    bridge: bool = (
        False  # gru: the decoder starts from tanh(W · encoder final state + b), not the state itself
    )
    tie_embeddings: bool = False  # gru: the output layer is the decoder's embedding matrix (embed = hidden)
    init_range: float | None = (
        None  # gru: every weight uniform in ±init_range (OpenNMT: 0.1); null: PyTorch's
    )


@dataclass
class TrainConfig:
    epochs: int | None = 40  # stop after this many passes over the data ...
    max_steps: int | None = None  # ... or this many updates ...
    max_minutes: float | None = None  # ... or this much training time, whichever comes first
    batch_tokens: int = 400  # a batch holds at most this many source + target tokens, padding included
    accumulate: int = 1  # batches per update (gradient accumulation)
    lr: float = 3e-3  # Adam
    schedule: str = "constant"  # constant | plateau (decay when dev BLEU stalls) | inverse_sqrt | budget
    warmup_steps: int = 4000  # inverse_sqrt, budget: updates of linear warm-up (budget: 0 for none)
    decay_share: float = 0.3  # budget: lr falls linearly to 0 over this last share of max_steps/max_minutes
    decay_factor: float = 0.5  # plateau: lr *= decay_factor ...
    decay_patience: int = 2  # ... after this many validations without a better dev BLEU
    early_stopping: int | None = None  # stop after this many validations without a better dev BLEU
    clip_norm: float = 1.0  # gradient norm clipping
    label_smoothing: float = 0.0  # ε of Szegedy et al. 2016 (Vaswani et al. 2017 use 0.1)
    teacher_forcing: float = 1.0  # probability of feeding the gold previous word
    validate_every: int = 500  # updates between validations (when data.dev is set)
    keep_checkpoints: int = 2  # the last N checkpoints are kept (the best model is always kept)
    seed: int = 0
    device: str = "auto"  # auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (CUDA ≥ 8.0: bf16; AVX-512 BF16/AMX CPUs: the faster, timed) | fp32 | bf16


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_CHOICES = {
    "data.tokenizer": ("word", "bpe", "unigram"),
    "model.architecture": ("gru", "transformer"),
    "model.attention": ("none", *ATTENTION_TYPES),
    "train.schedule": ("constant", "plateau", "inverse_sqrt", "budget"),
    "train.precision": PRECISIONS,
}
_POSITIVE = {
    "data.vocab_size", "data.min_freq", "data.max_vocab_size", "data.max_words", "data.spm_sample",
    "model.embed_size", "model.hidden_size", "model.layers", "model.heads", "model.ff_size", "model.init_range",
    "train.epochs", "train.max_steps", "train.max_minutes", "train.batch_tokens", "train.accumulate", "train.lr",
    "train.decay_share", "train.decay_patience", "train.early_stopping", "train.clip_norm",
    "train.validate_every", "train.keep_checkpoints",
}  # fmt: skip
_FRACTION = {
    "model.dropout", "train.teacher_forcing", "train.decay_factor", "train.label_smoothing", "train.decay_share",
}  # fmt: skip


def config_from_dict(data: Any, overrides: list[str] = (), source: str = "config") -> Config:
    """Build a validated :class:`Config` from nested dicts, then apply ``key=value`` overrides."""
    config = _build(Config, data if data is not None else {}, "", source)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep:
            raise AttnmtError(f"override {override!r}: expected key=value, e.g. train.lr=0.0005")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            raise AttnmtError(f"override {override!r}: the value is not valid YAML") from None
        _set(config, key.strip(), value, "--set")
    _validate(config, source)
    return config


def load_config(path: Path, overrides: list[str] = ()) -> Config:
    """Read a YAML experiment file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AttnmtError(f"{path}: config file not found") from None
    except OSError as e:
        raise AttnmtError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise AttnmtError(f"{path}: not valid UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise AttnmtError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    return config_from_dict(data, overrides, source=str(path))


def _build(cls: type, data: Any, prefix: str, source: str) -> Any:
    if not isinstance(data, dict):
        raise AttnmtError(f"{source}: {prefix.rstrip('.') or 'top level'}: expected a mapping")
    obj = cls()
    for name, value in data.items():
        kind = _field_type(obj, str(name), prefix, source)
        if dataclasses.is_dataclass(kind):
            value = _build(kind, value, f"{prefix}{name}.", source)
        else:
            value = _check_type(value, kind, f"{prefix}{name}", source)
        setattr(obj, name, value)
    return obj


def _set(config: Config, dotted: str, value: Any, source: str) -> None:
    *parents, name = dotted.split(".")
    obj, prefix = config, ""
    for parent in parents:
        if not dataclasses.is_dataclass(_field_type(obj, parent, prefix, source)):
            raise AttnmtError(f"{source}: {prefix}{parent}: has no sub-keys")
        obj, prefix = getattr(obj, parent), f"{prefix}{parent}."
    kind = _field_type(obj, name, prefix, source)
    if dataclasses.is_dataclass(kind):
        value = _build(kind, value, f"{dotted}.", source)
    else:
        value = _check_type(value, kind, dotted, source)
    setattr(obj, name, value)


def _field_type(obj: Any, name: str, prefix: str, source: str) -> Any:
    hints = get_type_hints(type(obj))
    if name not in hints:
        valid = [prefix + k for k in hints]
        close = difflib.get_close_matches(prefix + name, valid, n=1)
        hint = f"did you mean {close[0]}?" if close else f"valid keys: {', '.join(valid)}"
        raise AttnmtError(f"{source}: {prefix}{name}: unknown key; {hint}")
    return hints[name]


def _check_type(value: Any, kind: Any, key: str, source: str) -> Any:
    allowed = get_args(kind) if get_origin(kind) in (Union, types.UnionType) else (kind,)
    if value is None and type(None) in allowed:
        return None
    for t in allowed:
        if t is float and isinstance(value, int | float | str) and not isinstance(value, bool):
            try:  # YAML reads 1e-3 (no dot) as a string
                number = float(value)
            except ValueError:
                continue
            if math.isfinite(number):
                return number
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t in (str, bool) and isinstance(value, t):
            return value
    names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
    raise AttnmtError(f"{source}: {key}: expected {names}, got {value!r}")


def _validate(config: Config, source: str) -> None:
    for section in dataclasses.fields(config):
        sub = getattr(config, section.name)
        for f in dataclasses.fields(sub):
            key, value = f"{section.name}.{f.name}", getattr(sub, f.name)
            if key in _CHOICES and value not in _CHOICES[key]:
                raise AttnmtError(f"{source}: {key}: {value!r} is not one of {', '.join(_CHOICES[key])}")
            if key in _POSITIVE and value is not None and value <= 0:
                raise AttnmtError(f"{source}: {key}: must be positive, got {value}")
            if key in _FRACTION and not 0.0 <= value <= 1.0:
                raise AttnmtError(f"{source}: {key}: must be between 0 and 1, got {value}")
    model = config.model
    if model.architecture == "gru" and model.bidirectional and model.hidden_size % 2:
        raise AttnmtError(f"{source}: model.hidden_size: must be even for a bidirectional encoder")
    if model.architecture == "gru" and model.tie_embeddings and model.embed_size != model.hidden_size:
        raise AttnmtError(
            f"{source}: model.tie_embeddings: needs model.embed_size ({model.embed_size}) equal to "
            f"model.hidden_size ({model.hidden_size})"
        )
    if model.architecture == "transformer":
        if model.hidden_size % model.heads:
            raise AttnmtError(
                f"{source}: model.hidden_size: {model.hidden_size} is not divisible by model.heads ({model.heads})"
            )
        if config.train.teacher_forcing < 1.0:
            raise AttnmtError(f"{source}: train.teacher_forcing: the Transformer trains with 1.0 only")
    train = config.train
    if train.epochs is None and train.max_steps is None and train.max_minutes is None:
        raise AttnmtError(f"{source}: train: set at least one of epochs, max_steps, max_minutes")
    if train.warmup_steps < 0 or (train.schedule == "inverse_sqrt" and train.warmup_steps == 0):
        raise AttnmtError(f"{source}: train.warmup_steps: must be positive, got {train.warmup_steps}")
    if train.schedule == "budget" and train.max_steps is None and train.max_minutes is None:
        raise AttnmtError(f"{source}: train.schedule: budget decays over max_steps or max_minutes; set one")
    if config.data.src_lang == config.data.tgt_lang:
        raise AttnmtError(f"{source}: data.tgt_lang: must differ from data.src_lang")
