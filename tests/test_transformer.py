"""The Transformer: masks, the decoding cache, fused = explicit attention, tied embeddings, averaging."""

from dataclasses import replace

import pytest
import safetensors.torch
import torch

from attnmt.attention import MultiHeadAttention
from attnmt.checkpoint import average_checkpoints, save_checkpoint
from attnmt.config import ModelConfig
from attnmt.device import quantize_int8
from attnmt.model import build_model
from attnmt.search import beam_search, greedy_search
from attnmt.transformer import Transformer, TransformerState, sinusoidal_positions
from attnmt.translator import DecodeOptions
from attnmt.vocab import Vocabulary

V = 23
SIZES = {"d_model": 32, "heads": 4, "ff_size": 64, "layers": 2, "dropout": 0.0}


def tiny(shared_vocab: bool = False, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(
        architecture="transformer", hidden_size=32, heads=4, ff_size=64, layers=2, dropout=0.0
    )
    return build_model(config, V, V, shared_vocab=shared_vocab).eval()


class ExplicitTransformer(Transformer):
    """Decoding the plain way, as before the fused path: three projections per self-attention and every
    layer's attention weights computed explicitly (no fused kernel).  The oracle for ``step``."""

    def step(self, prev_tokens, state: TransformerState):
        x = self.embed(self.embedding, prev_tokens[:, None], state.position)  # (B, 1, d)
        pad_mask, past = state.src_pad_mask[:, None, None, :], []
        for i, layer in enumerate(self.decoder_layers):
            h = layer.self_attn_norm(x)
            keys, values = layer.self_attn.project(h, h)
            if state.past is not None:
                keys, values = (
                    torch.cat([state.past[i][0], keys], 2),
                    torch.cat([state.past[i][1], values], 2),
                )
            past.append((keys, values))
            x = x + layer.self_attn(h, keys, values, need_weights=True)[0]
            h = layer.cross_attn_norm(x)
            attended, cross = layer.cross_attn(h, *state.memory[i], pad_mask, need_weights=True)
            x = x + attended
            x = x + layer.ff(layer.ff_norm(x))
        logits = self.decoder_norm(x[:, 0]) @ self.embedding.weight.T  # (B, V)
        return torch.log_softmax(logits, -1), replace(state, past=past), cross.mean(1)[:, 0]


def batch(seed: int = 1):
    """Two sources, the second padded after 4 tokens; targets of 6 tokens."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (2, 7), generator=g)
    src_pad_mask = torch.zeros(2, 7, dtype=torch.bool)
    src_pad_mask[1, 4:] = True
    src[src_pad_mask] = 0
    return src, src_pad_mask, torch.randint(4, V, (2, 6), generator=g)


def test_shapes():
    src, mask, tgt = batch()
    logits, _ = tiny()(src, mask, tgt)
    assert logits.shape == (2, 6, V)
    maps = tiny().attention_maps(src, mask, tgt)
    assert maps["cross"].shape == (2, 2, 4, 6, 7)
    assert maps["encoder"].shape == (2, 2, 4, 7, 7)
    assert maps["decoder"].shape == (2, 2, 4, 6, 6)


def test_padding_is_never_attended():
    model, (src, mask, tgt) = tiny(), batch()
    changed = src.clone()
    changed[1, 4:] = 5  # what sits under the padding mask
    assert torch.allclose(model(src, mask, tgt)[0], model(changed, mask, tgt)[0], atol=1e-6)
    cross = model.attention_maps(src, mask, tgt)["cross"]
    assert cross[1, ..., 4:].abs().max() == 0
    assert torch.allclose(cross.sum(-1), torch.ones(()))


@pytest.mark.parametrize("position", [1, 3, 5])
def test_causal_mask_future_targets_never_change_earlier_outputs(position):
    model, (src, mask, tgt) = tiny(), batch()
    changed = tgt.clone()
    changed[:, position:] = (changed[:, position:] + 7) % V
    before, after = model(src, mask, tgt)[0], model(src, mask, changed)[0]
    assert torch.allclose(before[:, :position], after[:, :position], atol=1e-6)
    assert not torch.allclose(before[:, position:], after[:, position:])
    decoder = model.attention_maps(src, mask, tgt)["decoder"]
    assert torch.equal(decoder.triu(1), torch.zeros_like(decoder))  # nothing above the diagonal


def test_cached_decoding_equals_a_full_pass_over_the_prefix():
    model, (src, mask, tgt) = tiny(), batch()
    full, _ = model(src, mask, tgt)
    state = model.init_state(model.encode(src, mask))
    for t in range(tgt.size(1)):
        log_probs, state, attn = model.step(tgt[:, t], state)
        assert torch.allclose(log_probs, torch.log_softmax(full[:, t], -1), atol=1e-5)
        assert attn.shape == (2, 7)
    assert state.position == tgt.size(1)


def test_cached_greedy_search_equals_uncached_greedy():
    model, (src, mask, _) = tiny(seed=3), batch()
    hypotheses = greedy_search(model, src, mask, torch.tensor([9, 9]))
    prefix = torch.full((2, 1), Vocabulary.sos_id)
    for _ in range(9):  # uncached: re-run the whole prefix at every step
        logits, _ = model(src, mask, prefix)
        logits[:, -1, [Vocabulary.pad_id, Vocabulary.sos_id]] = float("-inf")  # never generated
        prefix = torch.cat([prefix, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    for hyp, row in zip(hypotheses, prefix[:, 1:].tolist(), strict=True):
        assert hyp.tokens == row[: len(hyp.tokens)]
        assert len(hyp.tokens) == 9 or row[len(hyp.tokens)] == Vocabulary.eos_id


def test_beam_of_one_is_greedy():
    model, (src, mask, _) = tiny(seed=4), batch()
    greedy = greedy_search(model, src, mask, torch.tensor([8, 8]))
    beam = beam_search(model, src, mask, torch.tensor([8, 8]), beam_size=1, alpha=0.0)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    assert [h.score for h in greedy] == pytest.approx([b[0].score for b in beam], abs=1e-4)


def test_fused_decoding_finds_what_explicit_decoding_finds():
    model, (src, mask, _) = tiny(seed=5), batch()
    explicit = ExplicitTransformer(src_vocab_size=V, tgt_vocab_size=V, **SIZES)
    explicit.load_state_dict(model.state_dict())
    explicit.eval()
    lengths = torch.tensor([12, 12])
    for fused_hyp, explicit_hyp in zip(
        greedy_search(model, src, mask, lengths), greedy_search(explicit, src, mask, lengths), strict=True
    ):
        assert fused_hyp.tokens == explicit_hyp.tokens
        assert fused_hyp.score == pytest.approx(explicit_hyp.score, abs=1e-5)
        assert torch.allclose(fused_hyp.attention, explicit_hyp.attention, atol=1e-5)
    fused = beam_search(model, src, mask, lengths, beam_size=4, n_best=3, alpha=0.6)
    plain = beam_search(explicit, src, mask, lengths, beam_size=4, n_best=3, alpha=0.6)
    assert [[h.tokens for h in n_best] for n_best in fused] == [
        [h.tokens for h in n_best] for n_best in plain
    ]
    assert [h.score for n_best in fused for h in n_best] == pytest.approx(
        [h.score for n_best in plain for h in n_best], abs=1e-5
    )


def test_fused_attention_equals_the_explicit_path_that_returns_weights():
    torch.manual_seed(0)
    attention = MultiHeadAttention(32, 4)
    query, memory = torch.randn(3, 5, 32), torch.randn(3, 7, 32)
    mask = torch.zeros(3, 1, 1, 7, dtype=torch.bool)
    mask[0, ..., 5:] = True
    keys, values = attention.project(memory, memory)
    fused, none = attention(query, keys, values, mask)
    explicit, weights = attention(query, keys, values, mask, need_weights=True)
    assert none is None and weights.shape == (3, 4, 5, 7)
    assert torch.allclose(fused, explicit, atol=1e-5)


def test_stacked_self_attention_projections_equal_three_separate_ones():
    torch.manual_seed(0)
    attention, x = MultiHeadAttention(32, 4), torch.randn(3, 5, 32)
    stacked = attention.project_self(x, attention.qkv())
    separate = (attention.split(attention.W_q(x)), *attention.project(x, x))
    assert all(s.shape == (3, 4, 5, 8) for s in stacked)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(stacked, separate, strict=True))


def test_an_int8_transformer_projects_self_attention_in_one_int8_product():
    model, (src, mask, _) = tiny(seed=5), batch()
    quantized = quantize_int8(model)
    qkv = quantized.decoder_layers[0].self_attn.qkv()
    assert "quantized" in type(qkv).__module__ and qkv.weight().shape == (3 * 32, 32)
    assert model.decoder_layers[0].self_attn.W_qkv is None  # the float model is left as it was
    assert quantized.decoder_layers[0].cross_attn.W_qkv is None  # cross-attention projects apart
    assert model.output is None and type(quantized.output).__name__ == "Linear"  # an int8 copy of its own
    assert "quantized" in type(quantized.output).__module__
    state = quantized.init_state(quantized.encode(src, mask))
    reference = model.init_state(model.encode(src, mask))
    for token in (Vocabulary.sos_id, 7, 9):
        prev = torch.tensor([token, token])
        log_probs, state, attn = quantized.step(prev, state)
        expected, reference, _ = model.step(prev, reference)
        assert attn.shape == (2, 7)
        assert torch.allclose(log_probs, expected, atol=0.1)  # int8 rounding: close, not equal


def test_int8_self_attention_keeps_each_projections_range():
    """W^K a hundred times smaller than W^Q and W^V: one scale for the stacked layer would round it away."""
    model = tiny(seed=6)
    attention = model.decoder_layers[0].self_attn
    with torch.no_grad():
        attention.W_k.weight.mul_(0.01), attention.W_k.bias.mul_(0.01)
    x = torch.randn(4, 3, 32)
    quantized = quantize_int8(model).decoder_layers[0].self_attn
    int8 = quantized.project_self(x, quantized.qkv())
    for got, exact in zip(int8, attention.project_self(x, attention.qkv()), strict=True):
        assert (got - exact).norm() < 0.05 * exact.norm()


def _keys_before_stacking(layers: int) -> set[str]:
    """The weights' names (safetensors keys) of a Transformer with two vocabularies, as saved before
    self-attention's three projections were stacked: model directories written then hold these."""
    attention = {f"W_{p}.{t}" for p in "qkvo" for t in ("weight", "bias")}
    keys = {"embedding.weight", "src_embedding.weight"}
    keys |= {f"{stack}_norm.{t}" for stack in ("encoder", "decoder") for t in ("weight", "bias")}
    for i in range(layers):
        for stack, blocks in (
            ("encoder_layers", ["self_attn"]),
            ("decoder_layers", ["self_attn", "cross_attn"]),
        ):
            keys |= {f"{stack}.{i}.{block}.{a}" for block in blocks for a in attention}
            keys |= {f"{stack}.{i}.{part}_norm.{t}" for part in [*blocks, "ff"] for t in ("weight", "bias")}
            keys |= {f"{stack}.{i}.ff.{j}.{t}" for j in (0, 2) for t in ("weight", "bias")}
    return keys


def test_weights_saved_before_the_projections_were_stacked_still_load(tmp_path):
    model, (src, mask, _) = tiny(seed=6), batch()
    assert set(model.state_dict()) == _keys_before_stacking(layers=2)  # what modeldir.load checks
    old = {k: v.contiguous() for k, v in model.state_dict().items()}
    safetensors.torch.save_file(old, tmp_path / "model.safetensors")
    loaded = tiny(seed=7)
    loaded.load_state_dict(safetensors.torch.load_file(tmp_path / "model.safetensors"))
    lengths = torch.tensor([9, 9])
    assert [h.tokens for h in greedy_search(loaded, src, mask, lengths)] == [
        h.tokens for h in greedy_search(model, src, mask, lengths)
    ]


def _uses(parameter: torch.Tensor, output: torch.Tensor) -> int:
    """How many operations in ``output``'s autograd graph read ``parameter`` directly."""
    seen, stack, uses = set(), [output.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            uses += getattr(child, "variable", None) is parameter
            stack.append(child)
    return uses


def test_tied_embeddings_share_storage_with_a_joint_vocabulary():
    model = tiny(shared_vocab=True)
    assert model.source_embedding.weight is model.embedding.weight
    assert not any("src_embedding" in name for name in model.state_dict())
    src, mask, tgt = batch()
    logits = model(src, mask, tgt)[0]
    # one matrix, three uses: source embedding, target embedding, output layer
    assert _uses(model.embedding.weight, logits) == 3
    separate = tiny(shared_vocab=False)
    assert separate.source_embedding.weight.data_ptr() != separate.embedding.weight.data_ptr()
    separate.load_state_dict({**model.state_dict(), "src_embedding.weight": model.embedding.weight.detach()})
    separate_logits = separate(src, mask, tgt)[0]
    assert _uses(separate.embedding.weight, separate_logits) == 2  # target embedding, output layer
    assert _uses(separate.src_embedding.weight, separate_logits) == 1
    # ... so the shared matrix learns from all three: its gradient is the sum of the separate ones
    logits.sum().backward()
    separate_logits.sum().backward()
    both = separate.embedding.weight.grad + separate.src_embedding.weight.grad
    assert separate.src_embedding.weight.grad.abs().sum() > 0
    assert torch.allclose(model.embedding.weight.grad, both, atol=1e-5)


def test_sinusoids_follow_the_paper():
    table = sinusoidal_positions(50, 16)
    assert torch.allclose(table[:, 0], torch.sin(torch.arange(50.0)))
    assert torch.allclose(table[7, 3], torch.cos(torch.tensor(7 / 10_000 ** (2 / 16))))
    assert torch.equal(sinusoidal_positions(5, 16, start=45), table[45:])


def test_averaged_checkpoint_is_the_mean_of_the_weights(tmp_path):
    models = [tiny(seed=s) for s in range(3)]
    for step, model in enumerate(models, 1):
        optimizer = torch.optim.Adam(model.parameters())
        save_checkpoint(tmp_path, step, model, optimizer, {}, keep=3)
    averaged = average_checkpoints(tmp_path, last=2)
    for name, tensor in averaged.items():
        expected = (models[1].state_dict()[name] + models[2].state_dict()[name]) / 2
        assert torch.allclose(tensor, expected, atol=1e-7), name
    assert set(averaged) == set(
        safetensors.torch.load_file(tmp_path / "checkpoints/step-00000001/model.safetensors")
    )


@pytest.fixture(scope="module")
def transformer_dir(tmp_path_factory):
    """A toy Transformer trained through the CLI, 3 epochs, keeping 3 checkpoints."""
    from attnmt.cli import main

    path = tmp_path_factory.mktemp("transformer") / "toy"
    overrides = {
        "model.architecture": "transformer", "model.hidden_size": 32, "model.heads": 4, "model.ff_size": 64,
        "model.layers": 2, "data.joint_vocab": "true", "train.epochs": 3, "train.keep_checkpoints": 3,
        "train.label_smoothing": 0.1, "train.validate_every": 5,
    }  # fmt: skip
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    assert main(["train", "--model-dir", str(path), *sets, "--quiet"]) == 0
    return path


def test_a_transformer_model_directory_saves_loads_and_translates(transformer_dir, capsys):
    from attnmt.cli import main
    from attnmt.modeldir import load_model

    translator = load_model(transformer_dir)
    assert isinstance(translator.model, Transformer)
    assert translator.model.source_embedding.weight is translator.model.embedding.weight  # joint vocabulary
    assert main(["translate", str(transformer_dir), "--text", "We are happy.", "--beam", "1"]) == 0
    greedy = capsys.readouterr().out
    assert greedy.strip() == translator.translate(["We are happy."], DecodeOptions(beam_size=1))[0].text
    assert main(["evaluate", str(transformer_dir), "--data", "toy"]) == 0
    assert "BLEU" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kind", "layer", "head"), [("cross", None, None), ("encoder", "1", "2"), ("decoder", "2", None)]
)
def test_attention_command_draws_any_layer_and_head(transformer_dir, tmp_path, kind, layer, head):
    from attnmt.cli import main

    out = tmp_path / "map.png"
    args = ["attention", str(transformer_dir), "--text", "She loves cats.", "-o", str(out), "--kind", kind]
    args += [*(["--layer", layer] if layer else []), *(["--head", head] if head else [])]
    assert main(args) == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_attention_maps_default_view_is_what_search_returned(transformer_dir):
    from attnmt.modeldir import load_model

    translator = load_model(transformer_dir)
    translation = translator.translate(["He is tired."])[0]
    maps = translator.attention_maps(translation)
    assert set(maps) == {"cross", "encoder", "decoder"}
    layers, heads, rows, columns = maps["cross"].shape
    assert (layers, heads, rows, columns) == (2, 4, len(translation.tokens), len(translation.src_tokens))
    assert maps["cross"][-1].mean(0) == pytest.approx(translation.attention, abs=1e-5)


def test_attention_command_names_a_missing_layer_or_head(transformer_dir, tmp_path, capsys):
    from attnmt.cli import main

    base = ["attention", str(transformer_dir), "--text", "Hi.", "-o", str(tmp_path / "a.png")]
    assert main([*base, "--layer", "3"]) == 1
    assert "--layer 3: the model has 2 layer(s)" in capsys.readouterr().err
    assert main([*base, "--head", "5"]) == 1
    assert "--head 5: the model has 4 head(s)" in capsys.readouterr().err
    assert not (tmp_path / "a.png").exists()


def test_average_command_writes_a_new_model_and_keeps_the_old(transformer_dir, tmp_path, capsys):
    from attnmt.cli import main
    from attnmt.modeldir import load_model

    before = sorted(p.name for p in transformer_dir.iterdir())
    out = tmp_path / "averaged"
    assert main(["average", str(transformer_dir), "--last", "2", "-o", str(out)]) == 0
    assert sorted(p.name for p in transformer_dir.iterdir()) == before
    averaged = load_model(out).model.state_dict()
    expected = average_checkpoints(transformer_dir, 2)
    assert all(torch.equal(averaged[k], expected[k]) for k in expected)
    assert main(["average", str(transformer_dir), "--last", "9", "-o", str(tmp_path / "b")]) == 1
    assert "3 checkpoint(s), 9 needed" in capsys.readouterr().err
    assert main(["average", str(transformer_dir), "-o", str(out)]) == 1  # never over a model
