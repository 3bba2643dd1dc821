"""A model exported with ``attnmt export --to onnx``, translating through ONNX Runtime.

The export is two graphs.  ``encoder.onnx`` reads the source: for a GRU one sentence at a time (a lone
sentence needs no packing), giving its states, their attention keys, the decoder's first hidden state
and the fixed context; for a Transformer a padded batch, giving every decoder layer's cross-attention
keys and values.  ``step.onnx`` is one decoding step of any batch with its state in and out — a GRU's
hidden state and input feed, a Transformer's per-layer self-attention keys and values so far — and the
attention row the explorer draws.  :class:`OnnxGRU` and :class:`OnnxTransformer` keep
:class:`attnmt.model.Seq2Seq` on top of them, so attnmt's own search drives them: greedy and beam,
prefixes, n-best, scoring, alternatives and completion as you type behave as with the PyTorch model.
:class:`OnnxTranslator` is such a model in a :class:`attnmt.translator.Translator`: an
:class:`attnmt.engine.Engine` like the other two.
"""

import importlib
import logging
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from attnmt.config import Config
from attnmt.ctranslate2_model import POSITIONS
from attnmt.engine import stay_on_cpu
from attnmt.errors import AttnmtError
from attnmt.model import EncoderDecoderAttention, EncoderOutput, RNNState, Seq2Seq, step_by_step
from attnmt.tokenization import Tokenizer
from attnmt.transformer import Transformer, sinusoidal_positions
from attnmt.translator import Translator
from attnmt.vocab import Vocabulary

ENCODER, STEP = "encoder.onnx", "step.onnx"
OPSET = 17


def require(module: str):
    """``onnx`` (to export) or ``onnxruntime`` (to run an export), or an error saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AttnmtError(
            f"{module} is not installed: pip install 'attnmt[onnx]' (or pip install {module})"
        ) from None


class EncoderGraph(nn.Module):
    """What ``encoder.onnx`` computes: src (1, S) ids → states (1, S, H), keys (1, S, ·), hidden (L, 1, H),
    fixed context (1, H) — :meth:`EncoderDecoderAttention.init_state` of one unpadded sentence."""

    def __init__(self, model: EncoderDecoderAttention):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        encoder = self.model.encoder
        states, final = encoder.rnn(encoder.embedding(src))  # one sentence: nothing to pack
        if encoder.bidirectional:
            final = torch.cat([final[0::2], final[1::2]], dim=-1)
        state = self.model.init_state(EncoderOutput(states, final, torch.zeros_like(src, dtype=torch.bool)))
        return state.memory, state.keys, state.hidden, state.fixed_context


class StepGraph(nn.Module):
    """What ``step.onnx`` computes: one step of :meth:`EncoderDecoderAttention.step` on any batch →
    log-probabilities (B, V), hidden (L, B, H), feed (B, H), attention (B, S) (zeros without attention)."""

    def __init__(self, model: EncoderDecoderAttention):
        super().__init__()
        self.model = model

    def forward(self, tokens, hidden, feed, memory, keys, src_pad_mask, fixed_context):
        state = RNNState(hidden, memory, keys, src_pad_mask, fixed_context, feed)
        log_probs, state, attention = self.model.step(tokens, state)
        if attention is None:
            attention = torch.zeros_like(src_pad_mask, dtype=log_probs.dtype)
        return log_probs, state.hidden, state.feed, attention


class TransformerEncoderGraph(nn.Module):
    """What a Transformer's ``encoder.onnx`` computes: src (B, S), src_pad_mask (B, S) → every decoder
    layer's cross-attention keys and values, stacked: (L, B, h, S, d_k) each."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_pad_mask: Tensor) -> tuple[Tensor, Tensor]:
        memory = self.model.init_state(self.model.encode(src, src_pad_mask)).memory
        return torch.stack([k for k, _ in memory]), torch.stack([v for _, v in memory])


class TransformerStepGraph(nn.Module):
    """What a Transformer's ``step.onnx`` computes: :meth:`Transformer.step` at ``position`` (the number
    of tokens decoded before), the past self-attention keys and values (L, B, h, P, d_k) in, and with the
    new position's out, with the last layer's cross-attention averaged over heads (B, S)."""

    def __init__(self, model: Transformer):
        super().__init__()
        self.model = model
        self.register_buffer("positions", sinusoidal_positions(POSITIONS, model.d_model), persistent=False)

    def forward(self, tokens, position, past_keys, past_values, memory_keys, memory_values, src_pad_mask):
        model = self.model
        x = model.embedding(tokens[:, None]) * math.sqrt(model.d_model) + self.positions[position]
        pad_mask, keys, values, last = src_pad_mask[:, None, None, :], [], [], len(model.decoder_layers) - 1
        for i, layer in enumerate(model.decoder_layers):
            x, (k, v), _, cross = layer(
                x, (past_keys[i], past_values[i]), None, (memory_keys[i], memory_values[i]), pad_mask,
                layer.self_attn.qkv(), need_cross_weights=i == last,
            )  # fmt: skip
            keys.append(k)
            values.append(v)
        log_probs = torch.log_softmax(model.logits(model.decoder_norm(x))[:, 0].float(), dim=-1)
        return log_probs, torch.stack(keys), torch.stack(values), cross.mean(1)[:, 0]


def export_graphs(model: Seq2Seq, directory: Path) -> list[str]:
    """Write ``encoder.onnx`` and ``step.onnx`` for ``model`` (a GRU model or a Transformer) into
    ``directory``; their names."""
    graphs = _transformer_graphs(model) if isinstance(model, Transformer) else _gru_graphs(model)
    for module, args, name, inputs, outputs, axes in graphs:
        with warnings.catch_warnings():  # the tracer's notes on shape checks it records as constants
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(), args, str(directory / name), input_names=inputs, output_names=outputs,
                dynamic_axes=axes, opset_version=OPSET, dynamo=False,
            )  # fmt: skip
    return [ENCODER, STEP]


def quantize_graphs(directory: Path, names: list[str]) -> None:
    """Replace the graphs ``names`` in ``directory`` by their int8 versions: ONNX Runtime's dynamic
    quantization (int8 weights, activations quantized as they come) of their matrix products and
    embedding tables.  Each output column has its own scale: with one per matrix the Transformer lost
    0.4 BLEU (beam 5) to float32.  Weights use 7 bits of the 8 (``reduce_range``): x86 kernels without
    VNNI add byte products in 16 bits, which full-range weights can overflow, so an export would
    compute differently there than on other CPUs and in the browser; with 7 bits every CPU computes the
    same."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for name in names:
        staged = directory / f"{name}.int8"
        logging.disable(logging.WARNING)  # its advice to pre-process, on the root logger
        try:
            quantize_dynamic(
                directory / name, staged, weight_type=QuantType.QInt8, reduce_range=True, per_channel=True
            )
        finally:
            logging.disable(logging.NOTSET)
        staged.replace(directory / name)


def _gru_graphs(model: EncoderDecoderAttention) -> list[tuple]:
    """Each graph: the module, example inputs, file name, input and output names, dynamic axes."""
    src = torch.tensor([[4, 5, 6]])
    with torch.no_grad():
        memory, keys, hidden, fixed = EncoderGraph(model.eval())(src)
    tokens, mask, feed = torch.tensor([2]), torch.zeros_like(src, dtype=torch.bool), torch.zeros_like(fixed)
    return [
        (EncoderGraph(model), (src,), ENCODER, ["src"], ["memory", "keys", "hidden", "fixed_context"],
         {"src": {1: "S"}, "memory": {1: "S"}, "keys": {1: "S"}}),
        (StepGraph(model), (tokens, hidden, feed, memory, keys, mask, fixed), STEP,
         ["tokens", "hidden", "feed", "memory", "keys", "src_pad_mask", "fixed_context"],
         ["log_probs", "next_hidden", "next_feed", "attention"],
         {"tokens": {0: "B"}, "hidden": {1: "B"}, "feed": {0: "B"}, "memory": {0: "B", 1: "S"},
          "keys": {0: "B", 1: "S"}, "src_pad_mask": {0: "B", 1: "S"}, "fixed_context": {0: "B"},
          "log_probs": {0: "B"}, "next_hidden": {1: "B"}, "next_feed": {0: "B"}, "attention": {0: "B", 1: "S"}}),
    ]  # fmt: skip


def _transformer_graphs(model: Transformer) -> list[tuple]:
    src = torch.tensor([[4, 5, 6], [7, 3, 0]])
    mask = src == 0
    with torch.no_grad():
        memory_keys, memory_values = TransformerEncoderGraph(model.eval())(src, mask)
    layers, _, heads, _, d_k = memory_keys.shape
    past = torch.zeros(layers, 2, heads, 1, d_k)
    cache = {0: "L", 1: "B", 3: "P"}
    return [
        (TransformerEncoderGraph(model), (src, mask), ENCODER, ["src", "src_pad_mask"],
         ["memory_keys", "memory_values"],
         {"src": {0: "B", 1: "S"}, "src_pad_mask": {0: "B", 1: "S"}, "memory_keys": {1: "B", 3: "S"},
          "memory_values": {1: "B", 3: "S"}}),
        (TransformerStepGraph(model), (torch.tensor([2, 2]), torch.tensor(1), past, past, memory_keys, memory_values, mask),
         STEP, ["tokens", "position", "past_keys", "past_values", "memory_keys", "memory_values", "src_pad_mask"],
         ["log_probs", "next_keys", "next_values", "attention"],
         {"tokens": {0: "B"}, "past_keys": cache, "past_values": cache, "memory_keys": {1: "B", 3: "S"},
          "memory_values": {1: "B", 3: "S"}, "src_pad_mask": {0: "B", 1: "S"}, "log_probs": {0: "B"},
          "next_keys": cache, "next_values": cache, "attention": {0: "B", 1: "S"}}),
    ]  # fmt: skip


class _OnnxSeq2Seq(nn.Module):
    """:class:`attnmt.model.Seq2Seq` through two ONNX Runtime sessions: no parameters of its own (the
    weights are in the graphs), a state that knows how to ``reorder`` itself."""

    def __init__(self, encoder, step):
        super().__init__()
        self.encoder_session, self.step_session = encoder, step
        self.step_inputs = {i.name for i in step.get_inputs()}  # the exporter drops what a graph never reads

    def _run(self, inputs: dict[str, Tensor]) -> list[Tensor]:
        feed = {name: value.numpy() for name, value in inputs.items() if name in self.step_inputs}
        return [torch.from_numpy(out) for out in self.step_session.run(None, feed)]

    def init_state(self, encoded):
        return encoded  # encode gives the state the first step reads

    def steps(self, tokens: Tensor, state):
        return step_by_step(self, tokens, state)  # the step graph reads one token

    def reorder(self, state, index: Tensor, *, same_source: bool = False):
        return state.reorder(index, same_source=same_source)

    def attention_maps(self, src: Tensor, src_pad_mask: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
        """The attention a teacher-forced pass gives step by step, as ``cross`` (B, 1, 1, T, S): the
        weights ``step`` returns (a Transformer's last layer, heads averaged)."""
        if not self.has_attention:
            return {}
        state, rows = self.encode(src, src_pad_mask), []
        for t in range(tgt_in.size(1)):
            _, state, attention = self.step(tgt_in[:, t], state)
            rows.append(attention)
        return {"cross": torch.stack(rows, dim=1)[:, None, None]}


class OnnxGRU(_OnnxSeq2Seq):
    """A GRU model's two graphs as :class:`attnmt.model.Seq2Seq`."""

    def __init__(self, encoder, step, has_attention: bool):
        super().__init__(encoder, step)
        self._attention = has_attention

    @property
    def has_attention(self) -> bool:
        return self._attention

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> RNNState:
        """Each sentence alone through the encoder graph, then padded into one batch."""
        outputs = [
            self.encoder_session.run(None, {"src": ids[~pad][None].numpy()})
            for ids, pad in zip(src, src_pad_mask, strict=True)
        ]  # per sentence: memory (1, s, H), keys (1, s, ·), hidden (L, 1, H), fixed context (1, H)
        width = src.size(1)
        memory, keys = (
            torch.from_numpy(
                np.concatenate([np.pad(o[i], [(0, 0), (0, width - o[i].shape[1]), (0, 0)]) for o in outputs])
            )
            for i in (0, 1)
        )
        hidden = torch.from_numpy(np.concatenate([o[2] for o in outputs], axis=1))
        fixed = torch.from_numpy(np.concatenate([o[3] for o in outputs]))
        return RNNState(hidden, memory, keys, src_pad_mask, fixed, torch.zeros_like(fixed))

    def step(self, prev_tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState, Tensor | None]:
        log_probs, hidden, feed, attention = self._run({"tokens": prev_tokens, **vars(state)})
        return log_probs, replace(state, hidden=hidden, feed=feed), attention if self._attention else None


@dataclass
class _Cache:
    """An exported Transformer's decoding state, batch rows aligned: what ``step.onnx`` reads."""

    past_keys: Tensor  # (L, B, h, P, d_k): every layer's self-attention keys so far
    past_values: Tensor
    memory_keys: Tensor  # (L, B, h, S, d_k): every layer's cross-attention keys
    memory_values: Tensor
    src_pad_mask: Tensor  # (B, S)

    def reorder(self, index: Tensor, *, same_source: bool = False) -> "_Cache":
        """Row i of the result is row ``index[i]``; with ``same_source``, the source's part stays."""
        cache = replace(self, past_keys=self.past_keys[:, index], past_values=self.past_values[:, index])
        if same_source:
            return cache
        return replace(
            cache, memory_keys=self.memory_keys[:, index], memory_values=self.memory_values[:, index],
            src_pad_mask=self.src_pad_mask[index],
        )  # fmt: skip


class OnnxTransformer(_OnnxSeq2Seq):
    """A Transformer's two graphs as :class:`attnmt.model.Seq2Seq`."""

    has_attention = True

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> _Cache:
        inputs = {"src": src.numpy(), "src_pad_mask": src_pad_mask.numpy()}
        keys, values = (torch.from_numpy(out) for out in self.encoder_session.run(None, inputs))
        nothing = keys.new_zeros(*keys.shape[:3], 0, keys.shape[4])  # no past before the first step
        return _Cache(nothing, nothing, keys, values, src_pad_mask)

    def step(self, prev_tokens: Tensor, state: _Cache) -> tuple[Tensor, _Cache, Tensor]:
        position = torch.tensor(state.past_keys.size(3))
        log_probs, keys, values, attention = self._run(
            {"tokens": prev_tokens, "position": position, **vars(state)}
        )
        return log_probs, replace(state, past_keys=keys, past_values=values), attention


@dataclass
class OnnxTranslator(Translator):
    """A model exported to ONNX, searched by attnmt step by step on the CPU through ONNX Runtime."""

    exported_parameters: int = 0
    quantization: str = "float32"  # as exported: float32 or int8

    @property
    def parameter_count(self) -> int:
        return self.exported_parameters

    def place(self, device: str = "auto", *, int8: bool = False) -> None:
        stay_on_cpu(device, int8, "an ONNX export", self.quantization, "export with --quantization int8")


def load_onnx(
    directory: Path,
    header: dict,
    config: Config,
    vocabularies: tuple[Vocabulary, Vocabulary],
    tokenizers: tuple[Tokenizer, Tokenizer],
) -> OnnxTranslator:
    """The exported model in ``directory`` (its files already checked against ``header``)."""
    onnxruntime = require("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # batches run side by side, one core each (Translator._by_length)
    try:
        encoder, step = (
            onnxruntime.InferenceSession(str(directory / name), options, providers=["CPUExecutionProvider"])
            for name in (ENCODER, STEP)
        )
    except Exception as e:  # onnxruntime raises its own exception types
        raise AttnmtError(f"{directory}: ONNX Runtime cannot load this model ({e})") from None
    if config.model.architecture == "transformer":
        model = OnnxTransformer(encoder, step)
    else:
        model = OnnxGRU(encoder, step, has_attention=config.model.attention != "none")
    parameters, quantization = int(header.get("parameters", 0)), header.get("quantization", "float32")
    return OnnxTranslator(model, *vocabularies, *tokenizers, config, parameters, quantization)
