"""A trained model is a directory:

    config.yaml            format_version, the resolved experiment config, and the SHA-256 of every file below
    src_vocab.json         source vocabulary
    tgt_vocab.json         target vocabulary
    src.spm, tgt.spm       SentencePiece models (subword tokenizers only)
    model-<hash>.safetensors   the weights (safetensors: loading never runs code, unlike pickle)

A model exported with ``attnmt export --to ctranslate2`` or ``--to onnx`` (:mod:`attnmt.export`) is a
model directory too: ``config.yaml`` says ``engine: ctranslate2`` (the weights are CTranslate2's
``model.bin``) or ``engine: onnx`` (``encoder.onnx`` and ``step.onnx``), and :func:`load_model` returns
a :class:`attnmt.ctranslate2_model.CTranslate2Translator` or an
:class:`attnmt.onnx_model.OnnxTranslator`: every engine keeps :class:`attnmt.engine.Engine`.

Files are written atomically and ``config.yaml`` last.  The weights file is named after its content, so
replacing a model never overwrites the weights that the current ``config.yaml`` names: a run killed at
any moment leaves a directory that loads (the old model or the new one).
"""

from pathlib import Path

import safetensors
import safetensors.torch
import yaml

from attnmt.config import Config, config_from_dict
from attnmt.ctranslate2_model import load_ctranslate2
from attnmt.engine import Engine
from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_bytes, atomic_write_text, sha256, sha256_bytes
from attnmt.model import Seq2Seq, build_model
from attnmt.onnx_model import ENCODER, STEP, load_onnx
from attnmt.tokenization import SubwordTokenizer, WordTokenizer
from attnmt.translator import Translator
from attnmt.vocab import Vocabulary

FORMAT_VERSION = 2
ENGINES = ("pytorch", "ctranslate2", "onnx")  # config.yaml's engine: absent is pytorch
EXPORTED_FILES = {"ctranslate2": ("model.bin", "config.json"), "onnx": (ENCODER, STEP)}
CONFIG, SRC_VOCAB, TGT_VOCAB, SRC_SPM, TGT_SPM = (
    "config.yaml",
    "src_vocab.json",
    "tgt_vocab.json",
    "src.spm",
    "tgt.spm",
)


def save_model(translator: Translator, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    translator.src_vocab.save(directory / SRC_VOCAB)
    translator.tgt_vocab.save(directory / TGT_VOCAB)
    names = [SRC_VOCAB, TGT_VOCAB]
    for name, tokenizer in ((SRC_SPM, translator.src_tokenizer), (TGT_SPM, translator.tgt_tokenizer)):
        if isinstance(tokenizer, SubwordTokenizer):
            tokenizer.save(directory / name)
            names.append(name)
    state = {k: v.detach().cpu().contiguous() for k, v in translator.model.state_dict().items()}
    weights = safetensors.torch.save(state)
    weights_name = f"model-{sha256_bytes(weights)[:16]}.safetensors"
    atomic_write_bytes(directory / weights_name, weights)
    header = {
        "format_version": FORMAT_VERSION,
        "weights": weights_name,
        "files": {name: sha256(directory / name) for name in [*names, weights_name]},
        "config": translator.config.to_dict(),
    }
    atomic_write_text(directory / CONFIG, yaml.safe_dump(header, sort_keys=False, allow_unicode=True))
    for old in directory.glob("model-*.safetensors"):
        if old.name != weights_name:
            old.unlink()


def load_model(directory: Path) -> Engine:
    """Load and check a model directory; any problem is an :class:`AttnmtError` naming the file."""
    directory = Path(directory)
    if not directory.exists():
        raise AttnmtError(f"{directory}: model directory not found")
    if not directory.is_dir():
        raise AttnmtError(f"{directory}: is not a directory; expected a model directory")
    header = _read_header(directory / CONFIG)
    config = config_from_dict(header["config"], source=str(directory / CONFIG))
    subwords = config.data.tokenizer != "word"
    names = [SRC_VOCAB, TGT_VOCAB, *([SRC_SPM, TGT_SPM] if subwords else [])]
    if header["engine"] != "pytorch":  # an export: every file it lists, and the engine's own
        names += [n for n in header["files"] if n not in names]
        names += [n for n in EXPORTED_FILES[header["engine"]] if n not in names]
    else:
        names.append(header["weights"])
    for name in names:
        path = directory / name
        if not path.is_file():
            raise AttnmtError(f"{path}: missing from the model directory")
        if sha256(path) != header["files"].get(name):
            raise AttnmtError(f"{path}: checksum does not match {CONFIG}: the file is corrupt or was changed")
    vocabularies = Vocabulary.load(directory / SRC_VOCAB), Vocabulary.load(directory / TGT_VOCAB)
    if subwords:
        tokenizers = SubwordTokenizer.load(directory / SRC_SPM), SubwordTokenizer.load(directory / TGT_SPM)
    else:
        tokenizers = WordTokenizer(config.data.src_lang), WordTokenizer(config.data.tgt_lang)
    if header["engine"] == "ctranslate2":
        return load_ctranslate2(directory, header, config, vocabularies, tokenizers)
    if header["engine"] == "onnx":
        return load_onnx(directory, header, config, vocabularies, tokenizers)
    return Translator(
        _load_weights(directory / header["weights"], config, vocabularies), *vocabularies, *tokenizers, config
    )


def engine_of(directory: Path) -> str:
    """The engine the model directory is for: ``pytorch`` (trained by attnmt), ``ctranslate2`` or ``onnx``."""
    return _read_header(Path(directory) / CONFIG)["engine"]


def _load_weights(weights: Path, config: Config, vocabularies: tuple[Vocabulary, Vocabulary]) -> Seq2Seq:
    """The configured model with the weights of ``weights`` (a safetensors file), in eval mode."""
    src_vocab, tgt_vocab = vocabularies
    model = build_model(config.model, len(src_vocab), len(tgt_vocab), config.data.joint_vocab)
    try:
        state = safetensors.torch.load_file(weights)
    except (safetensors.SafetensorError, OSError, ValueError) as e:
        raise AttnmtError(f"{weights}: not a readable safetensors file ({e})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        bad = sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found[k]]
        raise AttnmtError(f"{weights}: weights do not fit the configured model ({bad[0]})")
    model.load_state_dict(state)
    return model.eval()


def _read_header(path: Path) -> dict:
    try:
        header = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AttnmtError(f"{path}: missing; this is not an attnmt model directory") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise AttnmtError(f"{path}: not valid YAML") from None
    if not isinstance(header, dict) or not {"format_version", "files", "config"} <= header.keys():
        raise AttnmtError(f"{path}: expected keys format_version, weights, files and config")
    if header["format_version"] != FORMAT_VERSION:
        raise AttnmtError(
            f"{path}: format_version {header['format_version']!r} is not supported "
            f"(this attnmt reads {FORMAT_VERSION})"
        )
    if not isinstance(header["files"], dict) or not all(
        isinstance(n, str) and Path(n).name == n and n != CONFIG for n in header["files"]
    ):
        raise AttnmtError(f"{path}: files: expected a mapping of file name to SHA-256")
    header.setdefault("engine", "pytorch")
    if header["engine"] not in ENGINES:
        raise AttnmtError(f"{path}: engine {header['engine']!r} is not one of {', '.join(ENGINES)}")
    if header["engine"] == "pytorch":
        weights = header.get("weights")
        if (
            not isinstance(weights, str)
            or Path(weights).name != weights
            or not weights.endswith(".safetensors")
        ):
            raise AttnmtError(f"{path}: weights: expected a .safetensors file name in the model directory")
    return header
