"""A GRU model exported with ``attnmt export --to onnx``, translating through ONNX Runtime.

The export is two graphs: ``encoder.onnx`` reads one sentence (no padding: a lone sentence needs no
packing) and gives its encoder states, their attention keys, the decoder's first hidden state and the
fixed context; ``step.onnx`` is one decoding step of any batch, its state — hidden state and input feed —
in and out, with the attention row.  :class:`OnnxGRU` keeps :class:`attnmt.model.Seq2Seq` on top of
them, so attnmt's own search drives it: greedy and beam, prefixes, n-best, scoring, alternatives and
completion as you type behave as with the PyTorch model.  :class:`OnnxTranslator` is that model in a
:class:`attnmt.translator.Translator`: an :class:`attnmt.engine.Engine` like the other two.
"""

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from attnmt.config import Config
from attnmt.errors import AttnmtError
from attnmt.model import EncoderDecoderAttention, RNNState
from attnmt.tokenization import Tokenizer
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
        state = self.model.init_state(_Encoded(states, final, torch.zeros_like(src, dtype=torch.bool)))
        return state.memory, state.keys, state.hidden, state.fixed_context


@dataclass
class _Encoded:  # as attnmt.model.EncoderOutput
    states: Tensor
    final: Tensor
    src_pad_mask: Tensor


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


def export_graphs(model: EncoderDecoderAttention, directory: Path) -> list[str]:
    """Write ``encoder.onnx`` and ``step.onnx`` for ``model`` into ``directory``; their names."""
    model = model.eval()
    src = torch.tensor([[4, 5, 6]])
    with torch.no_grad():
        memory, keys, hidden, fixed = EncoderGraph(model)(src)
    tokens, mask, feed = torch.tensor([2]), torch.zeros_like(src, dtype=torch.bool), torch.zeros_like(fixed)
    graphs = [
        (EncoderGraph(model).eval(), (src,), ENCODER, ["src"], ["memory", "keys", "hidden", "fixed_context"],
         {"src": {1: "S"}, "memory": {1: "S"}, "keys": {1: "S"}}),
        (StepGraph(model).eval(), (tokens, hidden, feed, memory, keys, mask, fixed), STEP,
         ["tokens", "hidden", "feed", "memory", "keys", "src_pad_mask", "fixed_context"],
         ["log_probs", "next_hidden", "next_feed", "attention"],
         {"tokens": {0: "B"}, "hidden": {1: "B"}, "feed": {0: "B"}, "memory": {0: "B", 1: "S"},
          "keys": {0: "B", 1: "S"}, "src_pad_mask": {0: "B", 1: "S"}, "fixed_context": {0: "B"},
          "log_probs": {0: "B"}, "next_hidden": {1: "B"}, "next_feed": {0: "B"}, "attention": {0: "B", 1: "S"}}),
    ]  # fmt: skip
    for module, args, name, inputs, outputs, axes in graphs:
        torch.onnx.export(
            module, args, str(directory / name), input_names=inputs, output_names=outputs,
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    return [ENCODER, STEP]


class OnnxGRU(nn.Module):
    """:class:`attnmt.model.Seq2Seq` through the two ONNX Runtime sessions (no parameters of its own:
    the weights are in the graphs)."""

    def __init__(self, encoder, step, has_attention: bool):
        super().__init__()
        self.encoder_session, self.step_session, self._attention = encoder, step, has_attention
        self.step_inputs = {i.name for i in step.get_inputs()}  # the exporter drops what a graph never reads

    @property
    def has_attention(self) -> bool:
        return self._attention

    def encode(self, src: Tensor, src_pad_mask: Tensor) -> RNNState:
        """Each sentence alone through the encoder graph, then padded into one batch."""
        outputs = [
            self.encoder_session.run(None, {"src": ids[~pad][None].numpy()})
            for ids, pad in zip(src, src_pad_mask, strict=True)
        ]
        width = src.size(1)

        def batch(i: int, axis: int = 0) -> Tensor:
            parts = [
                o[i] if o[i].ndim < 3 or axis else np.pad(o[i], [(0, 0), (0, width - o[i].shape[1]), (0, 0)])
                for o in outputs
            ]
            return torch.from_numpy(np.concatenate(parts, axis=axis))

        memory, keys, hidden, fixed = batch(0), batch(1), batch(2, axis=1), batch(3)
        return RNNState(hidden, memory, keys, src_pad_mask, fixed, torch.zeros_like(fixed))

    def init_state(self, encoded: RNNState) -> RNNState:
        return encoded

    def step(self, prev_tokens: Tensor, state: RNNState) -> tuple[Tensor, RNNState, Tensor | None]:
        inputs = {
            "tokens": prev_tokens, "hidden": state.hidden, "feed": state.feed, "memory": state.memory,
            "keys": state.keys, "src_pad_mask": state.src_pad_mask, "fixed_context": state.fixed_context,
        }  # fmt: skip
        log_probs, hidden, feed, attention = (
            torch.from_numpy(out)
            for out in self.step_session.run(
                None, {k: v.numpy() for k, v in inputs.items() if k in self.step_inputs}
            )
        )
        state = RNNState(hidden, state.memory, state.keys, state.src_pad_mask, state.fixed_context, feed)
        return log_probs, state, attention if self._attention else None

    def reorder(self, state: RNNState, index: Tensor, *, same_source: bool = False) -> RNNState:
        return state.reorder(index, same_source=same_source)

    def attention_maps(self, src: Tensor, src_pad_mask: Tensor, tgt_in: Tensor) -> dict[str, Tensor]:
        """The weights of a teacher-forced pass, step by step, as ``cross`` (B, 1, 1, T, S)."""
        if not self._attention:
            return {}
        state, rows = self.encode(src, src_pad_mask), []
        for t in range(tgt_in.size(1)):
            _, state, attention = self.step(tgt_in[:, t], state)
            rows.append(attention)
        return {"cross": torch.stack(rows, dim=1)[:, None, None]}


@dataclass
class OnnxTranslator(Translator):
    """A GRU exported to ONNX, searched by attnmt step by step on the CPU through ONNX Runtime."""

    exported_parameters: int = 0

    @property
    def parameter_count(self) -> int:
        return self.exported_parameters

    def place(self, device: str = "auto", *, int8: bool = False) -> None:
        """It stays where it is: on the CPU, computing as exported."""
        if device not in ("auto", "cpu"):
            raise AttnmtError(f"--device {device}: an ONNX export runs on the CPU here (use --device cpu)")
        if int8:
            raise AttnmtError("--int8: an ONNX export computes as exported (float32)")


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
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        encoder, step = (
            onnxruntime.InferenceSession(str(directory / name), options, providers=["CPUExecutionProvider"])
            for name in (ENCODER, STEP)
        )
    except Exception as e:  # onnxruntime raises its own exception types
        raise AttnmtError(f"{directory}: ONNX Runtime cannot load this model ({e})") from None
    model = OnnxGRU(encoder, step, has_attention=config.model.attention != "none")
    return OnnxTranslator(model, *vocabularies, *tokenizers, config, int(header.get("parameters", 0)))
