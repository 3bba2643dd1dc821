"""Prepared corpora: the arrays hold exactly the pairs, batches and model of the in-memory path; the
manifest rebuilds on any change that matters and never lets a half-written directory pass as complete;
memory stays flat as the corpus grows."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from attnmt import prepared
from attnmt.config import config_from_dict
from attnmt.corpora import clean, load_pairs
from attnmt.data import TranslationDataset, plan_batches
from attnmt.errors import AttnmtError
from attnmt.prepared import MANIFEST, PreparedDataset, ensure_prepared, prepare, why_stale
from attnmt.preprocess import build_tokenizers
from attnmt.synthetic import synthetic_pairs, write_synthetic_tsv
from attnmt.tokenization import SubwordTokenizer
from attnmt.training import train

TINY = {"model": {"embed_size": 16, "hidden_size": 32, "dropout": 0.3}}


def _corpus(path: Path, n: int = 400) -> Path:
    """Synthetic pairs plus what cleaning drops: duplicates, a side too long, a bad length ratio."""
    pairs = list(synthetic_pairs(n, seed=4))
    pairs += [*pairs[:25], ("w " * 81, "x"), ("one two three four five six seven", "un"), *pairs[30:40]]
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    return path


def _config(train: str, **data):
    return config_from_dict(
        TINY
        | {
            "data": {"train": train, **data},
            "train": {
                "epochs": None,
                "max_steps": 6,
                "batch_tokens": 300,
                "validate_every": 3,
                "seed": 3,
                "precision": "fp32",
            },
        }
    )


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: bit-identical models, and no spinning against the other core's work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 100 pairs, so that a few hundred pairs go through the worker processes."""
    monkeypatch.setattr(prepared, "CHUNK", 100)


@pytest.mark.parametrize("tokenizer", ["word", "bpe"])
def test_prepared_arrays_hold_the_pairs_batches_and_model_of_the_in_memory_path(
    tmp_path, small_chunks, tokenizer
):
    config = _config(str(_corpus(tmp_path / "c.tsv")), tokenizer=tokenizer, vocab_size=400)
    pairs, report = clean(load_pairs(config.data.train))
    in_memory = train(config, pairs=pairs, progress=False)
    from_arrays = train(config, model_dir=tmp_path / "m", progress=False)

    dataset = PreparedDataset(tmp_path / "m" / "prepared")
    assert (
        dataset.manifest["counts"] == report.__dict__
        and report.duplicates == 35
        and report.too_long == report.bad_ratio == 1
    )
    t = in_memory
    memory = TranslationDataset(
        pairs, t.src_vocab, t.tgt_vocab, src_tokenizer=t.src_tokenizer, tgt_tokenizer=t.tgt_tokenizer
    )
    assert len(dataset) == len(memory) and all(dataset[i] == memory[i] for i in range(len(memory)))
    plans = [plan_batches(*d.length_arrays(), 300, shuffle=True, seed=7) for d in (dataset, memory)]
    assert np.array_equal(plans[0].indices, plans[1].indices)
    assert np.array_equal(plans[0].offsets, plans[1].offsets)
    a, b = in_memory.model.state_dict(), from_arrays.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_prepared_arrays_continues_bit_for_bit(tmp_path):
    config = _config(str(_corpus(tmp_path / "c.tsv")))
    whole = train(
        config_from_dict(config.to_dict(), ["train.max_steps=10"]), model_dir=tmp_path / "a", progress=False
    )
    train(config_from_dict(config.to_dict(), ["train.max_steps=4"]), model_dir=tmp_path / "b", progress=False)
    resumed = train(
        config_from_dict(config.to_dict(), ["train.max_steps=10"]),
        model_dir=tmp_path / "b",
        resume=True,
        progress=False,
    )
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_gzipped_corpus_prepares_as_the_plain_one(tmp_path):
    plain = _corpus(tmp_path / "c.tsv")
    zipped = tmp_path / "c.tsv.gz"
    import gzip

    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    for name, path in (("plain", plain), ("zipped", zipped)):
        prepare(tmp_path / name, _config(str(path)).data, workers=1)
    a, b = PreparedDataset(tmp_path / "plain"), PreparedDataset(tmp_path / "zipped")
    assert np.array_equal(a.src_ids, b.src_ids) and np.array_equal(a.tgt_offsets, b.tgt_offsets)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("input", "c.tsv changed"),
        ("data.vocab_size=500", "data.vocab_size changed"),
        ("data.tokenizer=unigram", "data.tokenizer changed"),
        ("data.max_words=6", "data.max_words changed"),
    ],
)
def test_a_changed_input_tokenizer_or_cleaning_setting_rebuilds(tmp_path, change, reason):
    corpus = _corpus(tmp_path / "c.tsv")
    config = _config(str(corpus), tokenizer="bpe", vocab_size=400)
    directory, said = tmp_path / "prepared", []
    ensure_prepared(directory, config.data, workers=1)
    before = json.loads((directory / MANIFEST).read_text())
    ensure_prepared(directory, config.data, workers=1, say=said.append)
    assert said == [f"prepared data {directory}: up to date"]
    if change == "input":
        time.sleep(0.01)
        with corpus.open("a", encoding="utf-8") as f:
            f.write("A new sentence here.\tUne nouvelle phrase ici.\n")
    else:
        config = config_from_dict(config.to_dict(), [change])
    assert reason in why_stale(directory, config.data, None)
    ensure_prepared(directory, config.data, workers=1, say=said.append)
    assert reason in said[1]
    after = json.loads((directory / MANIFEST).read_text())
    assert after != before and why_stale(directory, config.data, None) is None


def test_a_prepare_that_fails_midway_leaves_nothing_complete_and_the_next_rebuilds(tmp_path, monkeypatch):
    config = _config(str(_corpus(tmp_path / "c.tsv")))
    directory = tmp_path / "prepared"
    real = prepared._encode_pass

    def interrupted(*args, **kwargs):
        real(*args, **kwargs)  # the arrays are written; the manifest is not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(prepared, "_encode_pass", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(directory, config.data, workers=1)
    assert not directory.exists() and why_stale(directory, config.data, None) == "not prepared yet"
    assert list(tmp_path.glob(".prepared*")) == []
    monkeypatch.setattr(prepared, "_encode_pass", real)
    ensure_prepared(directory, config.data, workers=1)
    assert len(PreparedDataset(directory)) == json.loads((directory / MANIFEST).read_text())["pairs"]


PREPARE = """
import sys
from pathlib import Path
from attnmt.config import config_from_dict
from attnmt.prepared import prepare
prepare(Path(sys.argv[1]), config_from_dict({"data": {"train": sys.argv[2]}}).data, workers=1)
"""


@pytest.mark.slow
def test_a_prepare_killed_midway_leaves_nothing_complete_and_the_next_rebuilds(tmp_path):
    corpus = write_synthetic_tsv(tmp_path / "c.tsv.gz", 150_000)
    directory = tmp_path / "prepared"
    process = subprocess.Popen([sys.executable, "-c", PREPARE, str(directory), str(corpus)])
    while not list(tmp_path.glob(".prepared.tmp-*/src.ids")):  # encoding has begun
        assert process.poll() is None, "prepare ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not directory.exists()
    config = config_from_dict({"data": {"train": str(corpus)}})
    assert why_stale(directory, config.data, None) == "not prepared yet"
    ensure_prepared(directory, config.data, workers=1)
    assert why_stale(directory, config.data, None) is None
    assert list(tmp_path.glob(".prepared.tmp-*")) == []  # the killed run's leftovers are gone


MEASURE = """
import resource, sys
from pathlib import Path
from attnmt.config import config_from_dict
config = config_from_dict({"data": {"train": sys.argv[2], "max_vocab_size": 2000},
                           "model": {"embed_size": 16, "hidden_size": 32},
                           "train": {"epochs": None, "max_steps": 5, "batch_tokens": 2000}})
if sys.argv[1] == "prepare":
    from attnmt.prepared import prepare
    prepare(Path(sys.argv[3]), config.data, workers=1)
else:
    config.data.prepared = sys.argv[3]
    from attnmt.training import train
    train(config, model_dir=Path(sys.argv[3]).parent / "model", progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _peak_mb(step: str, corpus: Path, directory: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, step, str(corpus), str(directory)],
        check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    return float(out.stdout.split()[-1])


SIZES = (50_000, 500_000)


@pytest.mark.slow
def test_memory_grows_by_less_than_the_bounds_from_50_thousand_to_half_a_million_pairs(tmp_path):
    """Prepare holds hashes and flags, about 40 bytes a pair while it finds the duplicates: < 28 MB more
    for 450,000 more pairs (measured: 20 MB).  Training holds the length arrays, the offsets' pages and
    the epoch's plan, about 70 bytes a pair: < 50 MB more (measured: 34 MB; the pairs' text held in
    memory, two strings and a tuple a pair, would cost about 125 MB).  Vocabularies are capped: the
    synthetic corpus has more rare words the longer it is, and a larger output layer is not the data's
    cost.  bench/scale.py measures the same up to 13.6 million pairs."""

    def peaks_of(n: int) -> tuple[float, float]:  # a chain of processes: write, prepare, train
        corpus, directory = tmp_path / f"{n}.tsv.gz", tmp_path / str(n) / "prepared"
        write = "import sys; from attnmt.synthetic import write_synthetic_tsv; write_synthetic_tsv(sys.argv[1], int(sys.argv[2]))"
        subprocess.run([sys.executable, "-c", write, str(corpus), str(n)], check=True)
        return _peak_mb("prepare", corpus, directory), _peak_mb("train", corpus, directory)

    with ThreadPoolExecutor(2) as pool:  # the two sizes side by side, one core each
        peaks = dict(zip(SIZES, pool.map(peaks_of, SIZES), strict=True))
    print(f"peak RSS (prepare, train) in MB: {peaks}")  # shown with pytest -s
    (small_prepare, small_train), (large_prepare, large_train) = peaks[SIZES[0]], peaks[SIZES[1]]
    assert large_prepare - small_prepare < 28, peaks
    assert large_train - small_train < 50, peaks


def test_an_unwritable_prepared_directory_is_named(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    config = _config(str(_corpus(tmp_path / "c.tsv")), prepared=str(tmp_path / "file" / "prepared"))
    with pytest.raises(AttnmtError, match=r"file/prepared: cannot write there"):
        train(config, progress=False)


@pytest.mark.parametrize("joint", [False, True])
def test_sentencepiece_trains_on_a_sample_of_at_most_spm_sample_kept_pairs(tmp_path, monkeypatch, joint):
    corpus = _corpus(tmp_path / "c.tsv")
    kept = {s for s, _ in clean(load_pairs(str(corpus)))[0]} | {
        t for _, t in clean(load_pairs(str(corpus)))[0]
    }
    seen = []
    real = SubwordTokenizer.train.__func__

    def recording(cls, sentences, **options):
        seen.append(list(sentences))
        return real(cls, sentences, **options)

    monkeypatch.setattr(SubwordTokenizer, "train", classmethod(recording))
    config = _config(str(corpus), tokenizer="bpe", vocab_size=400, spm_sample=100, joint_vocab=joint)
    prepare(tmp_path / "prepared", config.data, workers=1)
    pairs, _ = clean(load_pairs(str(corpus)))
    build_tokenizers(config.data, pairs)  # the in-memory path samples as many
    for sentences in seen:  # a sampled pair found a duplicate later is left out: at most spm_sample
        assert 0.85 * (200 if joint else 100) <= len(sentences) <= (200 if joint else 100)
        assert set(sentences) <= kept and len(set(sentences)) > 0.9 * len(sentences)
