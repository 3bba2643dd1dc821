import copy
import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnmt import training
from attnmt.checkpoint import latest_checkpoint
from attnmt.config import config_from_dict
from attnmt.corpora import toy_pairs
from attnmt.data import TranslationDataset, bucketed_batches, collate
from attnmt.errors import AttnmtError
from attnmt.model import build_model
from attnmt.modeldir import load_model
from attnmt.tokenization import SubwordTokenizer
from attnmt.training import loss_fn, train, update

PAIRS = toy_pairs()[:120]


def _config(**train):
    defaults = {"epochs": None, "batch_tokens": 200, "validate_every": 7, "seed": 3, "precision": "fp32"}
    return config_from_dict(
        {"model": {"embed_size": 16, "hidden_size": 32, "dropout": 0.3}, "train": defaults | train}
    )


def _weights(translator):
    return {k: v.clone() for k, v in translator.model.state_dict().items()}


def test_resume_continues_bit_for_bit(tmp_path):
    """Dropout, data order, Adam moments and the position in the epoch all survive a restart."""
    whole = train(_config(max_steps=30), pairs=PAIRS, model_dir=tmp_path / "a", progress=False)
    train(_config(max_steps=14), pairs=PAIRS, model_dir=tmp_path / "b", progress=False)
    resumed = train(_config(max_steps=30), pairs=PAIRS, model_dir=tmp_path / "b", resume=True, progress=False)
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "b" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [7, 14, 21, 28, 30]


def _scripted_bleu(monkeypatch, *scores: float) -> None:
    """Validations report these dev BLEU scores, in order: a model this small scores about 0 every time,
    which cannot steer the best-model choice or the plateau schedule."""
    real, scripted = training.corpus_scores, iter(scores)
    monkeypatch.setattr(
        training,
        "corpus_scores",
        lambda hyps, refs: dataclasses.replace(real(hyps, refs), bleu=next(scripted)),
    )


@pytest.mark.parametrize(("schedule", "decays"), [("constant", 0), ("plateau", 1)])
def test_resume_trains_with_a_changed_learning_rate(tmp_path, monkeypatch, schedule, decays):
    """The train section may change on resume: a new train.lr holds from the next update on, times the
    plateau decays the run had already earned."""
    _scripted_bleu(monkeypatch, 20.0, 10.0, 5.0)  # updates 7, 14 (worse: one decay, patience 1), 21
    config = _config(max_steps=14, lr=0.003, schedule=schedule, decay_patience=1, decay_factor=0.5)
    config.data.dev = "toy"
    train(config, pairs=PAIRS, model_dir=tmp_path, progress=False)
    config.train.lr, config.train.max_steps = 0.001, 21
    train(config, pairs=PAIRS, model_dir=tmp_path, resume=True, progress=False)
    log = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == [0.003, 0.003, 0.001 * 0.5**decays]  # each the rate of its update
    state = json.loads((latest_checkpoint(tmp_path) / "state.json").read_text())
    assert state["param_groups"][0]["lr"] == 0.001 * 0.5**decays  # what Adam used at update 21


def test_the_budget_schedule_anneals_to_the_last_update(tmp_path):
    config = _config(max_steps=20, lr=0.002, schedule="budget", warmup_steps=0, decay_share=0.5)
    train(config, pairs=PAIRS, model_dir=tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    # each the rate of its update: update 7 at the peak, 14 and 20 on the way down the last half of 20
    assert [r["step"] for r in log] == [7, 14, 20]
    assert [r["lr"] for r in log] == pytest.approx([0.002, 0.002 * 7 / 10, 0.002 * 1 / 10])


def test_resume_refuses_a_different_model(tmp_path):
    train(_config(max_steps=7), pairs=PAIRS, model_dir=tmp_path, progress=False)
    changed = _config(max_steps=14)
    changed.model.hidden_size = 64
    with pytest.raises(AttnmtError, match=r"model\.hidden_size"):
        train(changed, pairs=PAIRS, model_dir=tmp_path, resume=True, progress=False)


def test_gradient_accumulation_equals_one_larger_batch():
    config = _config(max_steps=1)
    config.model.dropout = 0.0
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(PAIRS)
    dataset = TranslationDataset(PAIRS, src_vocab, tgt_vocab)
    first, second = bucketed_batches(dataset.lengths(), 150, shuffle=True, seed=0)[:2]
    torch.manual_seed(0)
    model = build_model(config.model, len(src_vocab), len(tgt_vocab))
    twin = copy.deepcopy(model)
    opt, twin_opt = torch.optim.Adam(model.parameters()), torch.optim.Adam(twin.parameters())
    loss, n = update(model, opt, [collate(dataset, first), collate(dataset, second)])
    twin_loss, twin_n = update(twin, twin_opt, [collate(dataset, first + second)])
    assert n == twin_n
    assert loss == pytest.approx(twin_loss, rel=1e-5)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("architecture", ["gru", "transformer"])
def test_the_loss_skips_padding_yet_equals_the_loss_over_all_positions(architecture):
    """Training computes word distributions only at real target positions; the loss (and so every
    gradient) is the one that the full (B, T, V) logits with padding ignored give."""
    config = _config(max_steps=1)
    config.model.architecture = architecture
    src_vocab, tgt_vocab = TranslationDataset.build_vocabs(PAIRS)
    dataset = TranslationDataset(PAIRS, src_vocab, tgt_vocab)
    batch = collate(dataset, list(range(0, 40, 3)))
    assert (batch.tgt_out == 0).any()  # the batch has padding
    torch.manual_seed(0)
    model = build_model(config.model, len(src_vocab), len(tgt_vocab)).eval()
    logits, _ = model(batch.src, batch.src_pad_mask, batch.tgt_in)
    full = torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0, reduction="sum"
    )
    torch.testing.assert_close(loss_fn(model, batch), full)


def test_the_model_directory_keeps_the_best_validated_model(tmp_path, monkeypatch):
    _scripted_bleu(monkeypatch, 10.0, 30.0, 20.0)  # the best at update 14 of 21
    config = _config(max_steps=21)
    config.data.dev = "toy"  # any data spec; the toy set is the only one always present
    last = train(config, pairs=PAIRS, model_dir=tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [7, 14, 21]
    assert all({"dev_loss", "dev_ppl", "bleu", "chrf", "bleu_signature"} <= r.keys() for r in log)
    checkpoints = sorted((tmp_path / "checkpoints").iterdir())
    assert [c.name for c in checkpoints] == ["step-00000014", "step-00000021"]  # keep_checkpoints: 2
    best = safetensors.torch.load_file(checkpoints[0] / "model.safetensors")
    kept = load_model(tmp_path).model.state_dict()
    assert all(torch.equal(kept[name], best[name]) for name in best)
    assert not torch.equal(kept["decoder.output.weight"], last.model.state_dict()["decoder.output.weight"])


@pytest.mark.slow
def test_a_run_killed_with_sigkill_still_loads_and_resumes(tmp_path):
    args = ["--set", "model.embed_size=16", "--set", "model.hidden_size=32", "--set", "train.epochs=1000"]
    args += ["--set", "train.validate_every=3", "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-m", "attnmt.cli", "train", "--model-dir", str(tmp_path), *args]
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "checkpoints").glob("step-*"))) < 2:
        time.sleep(0.05)
    time.sleep(0.37)  # somewhere in the middle of the next steps or checkpoint write
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = load_model(tmp_path).model.state_dict()  # loads: every file whole, its SHA-256 as recorded
    step = int(latest_checkpoint(tmp_path).name.split("-")[1])
    assert step >= 6
    at_checkpoint = safetensors.torch.load_file(latest_checkpoint(tmp_path) / "model.safetensors")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "attnmt.cli",
            "train",
            "--model-dir",
            str(tmp_path),
            "--resume",
            *args[:-1],
            "--set",
            f"train.max_steps={step + 3}",
            "--quiet",
        ],
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert latest_checkpoint(tmp_path).name == f"step-{step + 3:08d}"
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]
    # the model left by the kill was one the run validated: that of its last checkpoint, or the next
    # validation's (killed between writing the model and its checkpoint), which the resumed run retrained
    validated = (at_checkpoint, load_model(tmp_path).model.state_dict())
    assert any(all(torch.equal(killed[name], w[name]) for name in killed) for w in validated)


@pytest.fixture
def umask_022():
    """The common default umask, so that what the test sees does not depend on the machine's."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


@pytest.fixture(scope="module")
def subwords():
    sentences = [s for pair in toy_pairs() for s in pair]
    return SubwordTokenizer.train(sentences, vocab_size=400, model_type="bpe")


@settings(max_examples=200, deadline=None)  # any text but "▁", SentencePiece's space, read as one
@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\u2581")))
def test_subword_round_trip_on_any_text(subwords, text):
    import unicodedata

    assert subwords.detokenize(subwords.tokenize(text)) == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_subword_model_directory_shows_plain_text(tmp_path, model_type, umask_022):
    config = _config(max_steps=5)
    config.data.tokenizer, config.data.vocab_size, config.data.joint_vocab = model_type, 500, True
    trained = train(config, pairs=PAIRS, model_dir=tmp_path, progress=False)
    assert trained.src_vocab.itos == trained.tgt_vocab.itos  # joint
    loaded = load_model(tmp_path)
    for a, b in zip(
        trained.translate(["She loves cats."]), loaded.translate(["She loves cats."]), strict=True
    ):
        assert a.text == b.text and "▁" not in a.text
    assert (tmp_path / "src.spm").is_file() and (tmp_path / "tgt.spm").is_file()
    for path in [p for p in tmp_path.iterdir() if p.is_file()]:  # models are for sharing
        assert os.stat(path).st_mode & stat.S_IROTH, f"{path.name} is not readable by others"


def test_auto_precision_times_its_choice_once_and_leaves_the_run_as_that_precision_trains_it(
    tmp_path, monkeypatch
):
    """Where bf16 is native, auto times both precisions on a copy of the model: the run then equals
    one asked for in the chosen precision, bit for bit, and a resumed run keeps the choice untimed."""
    monkeypatch.setattr(
        training, "candidate_precisions", lambda device, p: ("fp32", "bf16") if p == "auto" else (p,)
    )
    timed = []

    def bf16_chosen(device, precisions, run_update, updates=6):  # real updates timed, bf16 taken
        timed.append(training_faster_precision(device, precisions, run_update, updates)[1])
        return "bf16", timed[-1]

    training_faster_precision = training.faster_precision
    monkeypatch.setattr(training, "faster_precision", bf16_chosen)
    train(_config(max_steps=14, precision="auto"), pairs=PAIRS, model_dir=tmp_path / "auto", progress=False)
    auto = train(_config(max_steps=30, precision="auto"), pairs=PAIRS, model_dir=tmp_path / "auto", resume=True,
                 progress=False)  # fmt: skip
    assert len(timed) == 1 and set(timed[0]) == {"fp32", "bf16"}
    log = [json.loads(line) for line in (tmp_path / "auto" / "train.jsonl").read_text().splitlines()]
    assert {r["precision"] for r in log} == {"bf16"}
    asked = train(_config(max_steps=30, precision="bf16"), pairs=PAIRS, progress=False)
    a, b = _weights(auto), _weights(asked)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_mixed_precision_learns_and_keeps_fp32_weights(tmp_path):
    config = _config(max_steps=21, precision="bf16")
    config.data.dev = "toy"
    translator = train(config, pairs=PAIRS, model_dir=tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert log[-1]["dev_loss"] < log[0]["dev_loss"]
    assert all(p.dtype == torch.float32 for p in translator.model.parameters())
