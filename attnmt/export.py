"""``attnmt export``: a trained model as a model directory another engine runs.

``--to onnx``: a GRU model or a Transformer as two ONNX graphs, the encoder and one decoding step
(:mod:`attnmt.onnx_model`), run by ONNX Runtime under attnmt's own search; float32, or int8 weights
(ONNX Runtime's dynamic quantization of the matrix products and embeddings).

``--to web``: the ONNX export and a static page that translates with it in the browser
(:mod:`attnmt.site`).

``--to ctranslate2``: a trained Transformer as a CTranslate2 model, the engine OpenNMT-py models are
deployed with (int8 on any CPU, no PyTorch at run time).

The weights go through CTranslate2's own specification classes (``ctranslate2.specs``), mapped one to
one onto :class:`attnmt.transformer.Transformer`:

    attnmt                                      CTranslate2 TransformerSpec
    embedding × √d_model + sinusoids (§3.4)     embeddings, scale_embeddings, position_encodings
    sinusoids sin/cos *interleaved*             the table given explicitly (its default concatenates)
    pre-norm layers, one final norm per stack   pre_norm=True, layer_norm; LayerNorm ε 1e-5
    self-attention W^Q, W^K, W^V, W^O           linear[0] = [W^Q; W^K; W^V] fused, linear[1] = W^O
    cross-attention                             linear[0] = W^Q, linear[1] = [W^K; W^V], linear[2] = W^O
    feed-forward with ReLU                      ffn.linear_0, ffn.linear_1, Activation.RELU
    tied output layer (§3.4), no bias           decoder.projection = the target embedding
    <pad> <unk> <sos> <eos> = 0 1 2 3           vocabularies as attnmt's, <sos> starts, <eos> ends
    source tokens + <eos>                       given with the tokens (add_source_eos would drop its attention)

The exported directory is also an attnmt model directory (see :mod:`attnmt.modeldir`): beside
CTranslate2's ``model.bin``, ``config.json`` and vocabularies it holds attnmt's vocabularies, the
SentencePiece models and ``config.yaml`` (the experiment config, the quantization, every file's SHA-256),
so ``attnmt translate`` / ``evaluate`` / ``serve`` run it through :mod:`attnmt.ctranslate2_model`.
"""

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from attnmt.ctranslate2_model import POSITIONS, require_ctranslate2
from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_text, sha256
from attnmt.modeldir import (
    CONFIG,
    FORMAT_VERSION,
    SRC_SPM,
    SRC_VOCAB,
    TGT_SPM,
    TGT_VOCAB,
    engine_of,
    load_model,
)
from attnmt.onnx_model import export_graphs, quantize_graphs, require
from attnmt.site import check_tokenizer, check_vendored, write_site
from attnmt.transformer import Transformer, sinusoidal_positions
from attnmt.translator import Translator
from attnmt.vocab import EOS, SOS, UNK

QUANTIZATIONS = ("int8", "int8_float32", "int16", "float32", "bfloat16")
LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's


def export_ctranslate2(model_dir: Path, output: Path, quantization: str = "float32") -> Path:
    """Export the Transformer in ``model_dir`` to a new directory ``output`` with its weights stored as
    ``quantization``; written beside it and renamed into place, so a failed export leaves nothing."""
    require_ctranslate2()
    if quantization not in QUANTIZATIONS:
        raise AttnmtError(f"--quantization: {quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    translator = _exportable(model_dir, output)
    if not isinstance(translator.model, Transformer):
        raise AttnmtError(
            f"{model_dir}: a {translator.config.model.architecture.upper()} model; CTranslate2 has no "
            "recurrent layers (translate it with --int8 instead)"
        )
    spec = transformer_spec(translator.model, heads=translator.config.model.heads)
    spec.register_source_vocabulary(translator.src_vocab.itos)
    spec.register_target_vocabulary(translator.tgt_vocab.itos)
    spec.validate()
    spec.optimize(quantization=quantization)
    header = {"engine": "ctranslate2", "quantization": quantization, "positions": POSITIONS}
    return _write(Path(model_dir), output, translator, header, lambda staging: spec.save(str(staging)))


ONNX_QUANTIZATIONS = ("float32", "int8")


def export_onnx(model_dir: Path, output: Path, quantization: str = "float32", *, site: bool = False) -> Path:
    """Export the model in ``model_dir`` (a GRU model or a Transformer) to a new directory ``output`` as
    ONNX graphs with ``quantization`` weights; with ``site``, the web page that runs them too."""
    require("onnx")
    if quantization not in ONNX_QUANTIZATIONS:
        raise AttnmtError(f"--quantization {quantization}: the ONNX export is float32 or int8")
    if site:
        check_vendored()
    translator = _exportable(model_dir, output)
    if site:
        check_tokenizer(translator.config)

    def save(staging: Path) -> None:
        names = export_graphs(translator.model, staging)
        if quantization == "int8":
            quantize_graphs(staging, names)
        if site:
            write_site(staging, translator)

    header = {"engine": "onnx", "quantization": quantization}
    return _write(Path(model_dir), output, translator, header, save)


def _exportable(model_dir: Path, output: Path) -> Translator:
    """The PyTorch model in ``model_dir``, once ``output`` is known to be a new directory."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise AttnmtError(f"{output}: exists and is not empty; choose a new directory")
    if Path(model_dir).is_dir() and engine_of(model_dir) != "pytorch":
        raise AttnmtError(f"{model_dir}: an export already; export the model it was exported from")
    return load_model(model_dir)


def _write(
    model_dir: Path, output: Path, translator: Translator, header: dict, save: Callable[[Path], object]
) -> Path:
    """A model directory at ``output``: what ``save`` writes, attnmt's vocabularies and tokenizers, and
    ``config.yaml`` (``header`` and every file's SHA-256) last; written beside ``output`` and renamed
    into place, so a failed export leaves nothing."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp"))
    try:
        save(staging)
        copied = [SRC_VOCAB, TGT_VOCAB, *(n for n in (SRC_SPM, TGT_SPM) if (model_dir / n).is_file())]
        for name in copied:
            shutil.copyfile(model_dir / name, staging / name)
        header = {
            "format_version": FORMAT_VERSION,
            **header,
            "parameters": translator.parameter_count,
            "files": {p.name: sha256(p) for p in sorted(staging.iterdir())},
            "config": translator.config.to_dict(),
        }
        atomic_write_text(staging / CONFIG, yaml.safe_dump(header, sort_keys=False, allow_unicode=True))
        os.chmod(staging, 0o777 & ~_umask())
        if output.exists():
            output.rmdir()  # empty, checked above
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def transformer_spec(model: Transformer, *, heads: int):
    """CTranslate2's ``TransformerSpec`` filled with ``model``'s weights (see the table above).  The
    attention it returns (``return_attention``) is the last layer's cross-attention averaged over all
    ``heads``, as :meth:`Transformer.step` returns it."""
    from ctranslate2.specs import common_spec, transformer_spec

    layers = len(model.encoder_layers)
    spec = transformer_spec.TransformerSpec.from_config(
        layers, heads, pre_norm=True, activation=common_spec.Activation.RELU,
        alignment_layer=-1, alignment_heads=heads,
    )  # fmt: skip
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = UNK, SOS, EOS
    spec.config.decoder_start_token = SOS  # sources come with their <eos> (attention keeps its column)
    spec.config.layer_norm_epsilon = LAYER_NORM_EPSILON
    positions = sinusoidal_positions(POSITIONS, model.d_model)  # attnmt's own layout: sin, cos interleaved
    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = _weight(model.source_embedding.weight)
    decoder.embeddings.weight = _weight(model.embedding.weight)
    decoder.projection.weight = _weight(model.embedding.weight)  # tied, no bias
    for stack, norm in ((encoder, model.encoder_norm), (decoder, model.decoder_norm)):
        stack.scale_embeddings = True  # × √d_model
        stack.position_encodings.encodings = positions
        _layer_norm(stack.layer_norm, norm)
    for layer_spec, layer in zip(encoder.layer, model.encoder_layers, strict=True):
        _attention(layer_spec.self_attention, layer.self_attn, layer.self_attn_norm, self_attention=True)
        _feed_forward(layer_spec.ffn, layer.ff, layer.ff_norm)
    for layer_spec, layer in zip(decoder.layer, model.decoder_layers, strict=True):
        _attention(layer_spec.self_attention, layer.self_attn, layer.self_attn_norm, self_attention=True)
        _attention(layer_spec.attention, layer.cross_attn, layer.cross_attn_norm, self_attention=False)
        _feed_forward(layer_spec.ffn, layer.ff, layer.ff_norm)
    return spec


def _weight(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().float().cpu().contiguous().clone()


def _linear(spec, *linears: torch.nn.Linear) -> None:
    """One CTranslate2 linear layer from one or several attnmt ones stacked (fused projections)."""
    spec.weight = _weight(torch.cat([linear.weight for linear in linears]))
    spec.bias = _weight(torch.cat([linear.bias for linear in linears]))


def _layer_norm(spec, norm: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _weight(norm.weight), _weight(norm.bias)


def _attention(spec, attention, norm: torch.nn.LayerNorm, *, self_attention: bool) -> None:
    """Pre-norm multi-head attention: CTranslate2 normalises the input with ``spec.layer_norm``."""
    _layer_norm(spec.layer_norm, norm)
    if self_attention:
        _linear(spec.linear[0], attention.W_q, attention.W_k, attention.W_v)
    else:
        _linear(spec.linear[0], attention.W_q)
        _linear(spec.linear[1], attention.W_k, attention.W_v)
    _linear(spec.linear[-1], attention.W_o)


def _feed_forward(spec, ff: torch.nn.Sequential, norm: torch.nn.LayerNorm) -> None:
    _layer_norm(spec.layer_norm, norm)
    _linear(spec.linear_0, ff[0])
    _linear(spec.linear_1, ff[2])
