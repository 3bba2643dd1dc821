"""A trained model is a directory:

    config.yaml        format_version, the resolved experiment config, SHA-256 of every other file
    src_vocab.json     source vocabulary
    tgt_vocab.json     target vocabulary
    model.safetensors  the weights (safetensors: loading never runs code, unlike pickle)

Each file is written atomically and ``config.yaml`` last, so a directory is either the old model, the
new one, or refused by :func:`load_model` with a message naming the file.
"""

from pathlib import Path

import safetensors
import safetensors.torch
import yaml

from attnmt.config import config_from_dict
from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_bytes, atomic_write_text, sha256
from attnmt.model import build_model
from attnmt.translator import Translator
from attnmt.vocab import Vocabulary

FORMAT_VERSION = 1
CONFIG, SRC_VOCAB, TGT_VOCAB, WEIGHTS = (
    "config.yaml",
    "src_vocab.json",
    "tgt_vocab.json",
    "model.safetensors",
)


def save_model(translator: Translator, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    translator.src_vocab.save(directory / SRC_VOCAB)
    translator.tgt_vocab.save(directory / TGT_VOCAB)
    state = {k: v.detach().cpu().contiguous() for k, v in translator.model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS, safetensors.torch.save(state))
    header = {
        "format_version": FORMAT_VERSION,
        "files": {name: sha256(directory / name) for name in (SRC_VOCAB, TGT_VOCAB, WEIGHTS)},
        "config": translator.config.to_dict(),
    }
    atomic_write_text(directory / CONFIG, yaml.safe_dump(header, sort_keys=False, allow_unicode=True))


def load_model(directory: Path) -> Translator:
    """Load and check a model directory; any problem is an :class:`AttnmtError` naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AttnmtError(f"{directory}: model directory not found")
    header = _read_header(directory / CONFIG)
    for name in (SRC_VOCAB, TGT_VOCAB, WEIGHTS):
        path = directory / name
        if not path.is_file():
            raise AttnmtError(f"{path}: missing from the model directory")
        if sha256(path) != header["files"].get(name):
            raise AttnmtError(f"{path}: checksum does not match {CONFIG}: the file is corrupt or was changed")
    config = config_from_dict(header["config"], source=str(directory / CONFIG))
    src_vocab, tgt_vocab = (
        Vocabulary.load(directory / SRC_VOCAB),
        Vocabulary.load(directory / TGT_VOCAB),
    )
    model = build_model(config.model, len(src_vocab), len(tgt_vocab))
    try:
        state = safetensors.torch.load_file(directory / WEIGHTS)
    except (safetensors.SafetensorError, OSError, ValueError) as e:
        raise AttnmtError(f"{directory / WEIGHTS}: not a readable safetensors file ({e})") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        bad = sorted(set(expected) ^ set(found)) or [k for k in expected if expected[k] != found[k]]
        raise AttnmtError(f"{directory / WEIGHTS}: weights do not fit the configured model ({bad[0]})")
    model.load_state_dict(state)
    return Translator(model.eval(), src_vocab, tgt_vocab, config)


def _read_header(path: Path) -> dict:
    try:
        header = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AttnmtError(f"{path}: missing; this is not an attnmt model directory") from None
    except (UnicodeDecodeError, yaml.YAMLError):
        raise AttnmtError(f"{path}: not valid YAML") from None
    if not isinstance(header, dict) or not {"format_version", "files", "config"} <= header.keys():
        raise AttnmtError(f"{path}: expected keys format_version, files and config")
    if header["format_version"] != FORMAT_VERSION:
        raise AttnmtError(
            f"{path}: format_version {header['format_version']!r} is not supported "
            f"(this attnmt reads {FORMAT_VERSION})"
        )
    if not isinstance(header["files"], dict):
        raise AttnmtError(f"{path}: files: expected a mapping of file name to SHA-256")
    return header
