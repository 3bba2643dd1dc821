"""Corpora beyond memory: a data spec prepared once into memory-mapped token-id arrays.

``prepare`` streams the training pairs (gzip included) and cleans them with :func:`corpora.clean`'s
rules and duplicate hashes, chunk by chunk in worker processes (the first occurrence kept); builds the
tokenizers and vocabularies with :mod:`attnmt.preprocess`, as the in-memory path does (SentencePiece
on a bounded random sample, ``data.spm_sample`` pairs); encodes the pairs in worker processes; and
writes, per side, the ids of every kept pair end to end and their offsets, beside a manifest.  Two
passes over the input (three for word vocabularies, which count the kept pairs' words), each holding a
few chunks at a time; what grows with the corpus in memory is the hashes (8 bytes a passing pair) and
a keep flag (1 byte a pair).

A prepared directory::

    manifest.json              format, inputs (path, size, mtime), settings, counts, tokenizer hash
    src.ids, tgt.ids           token ids, pair after pair (uint16, or int32 past 65,535 types)
    src.offsets, tgt.offsets   int64, pairs + 1: pair i is ids[offsets[i]:offsets[i + 1]]
    src_vocab.json, tgt_vocab.json, src.spm, tgt.spm (subwords)

It is written into a temporary directory and renamed into place, the manifest last: a prepare killed
midway leaves nothing that reads as complete.  :class:`PreparedDataset` maps the arrays read-only, so
processes on one machine share them through the page cache and each reads only its batches' rows.
"""

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice
from pathlib import Path

import numpy as np

from attnmt.config import DataConfig
from attnmt.corpora import (
    MAX_RATIO,
    CleaningReport,
    Pair,
    check_pairs,
    iter_pairs,
    normalise,
    select_kept,
    spec_files,
)
from attnmt.errors import AttnmtError
from attnmt.files import atomic_write_text
from attnmt.preprocess import (
    Tokenizers,
    build_tokenizers,
    build_vocabularies,
    count_tokens,
    encode_pair,
    word_vocabularies,
)
from attnmt.tokenization import SubwordTokenizer, WordTokenizer
from attnmt.vocab import Vocabulary

FORMAT = 1
MANIFEST = "manifest.json"
CHUNK = 20_000  # pairs a worker cleans or encodes at a time


def settings(data: DataConfig) -> dict:
    """The data keys a prepared directory depends on: a change to any of them rebuilds it."""
    keys = ("train", "src_lang", "tgt_lang", "tokenizer", "vocab_size", "joint_vocab", "min_freq",
            "max_vocab_size", "max_words", "spm_sample")  # fmt: skip
    return {f"data.{k}": getattr(data, k) for k in keys} | {"max_ratio": MAX_RATIO}


def input_identities(data: DataConfig, root: Path | None) -> list[dict]:
    """Path, size and modification time of each file ``data.train`` reads."""
    files = spec_files(data.train, src_lang=data.src_lang, tgt_lang=data.tgt_lang, root=root)
    identities = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            raise AttnmtError(f"{path}: file not found (data.train: {data.train})") from None
        identities.append({"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return identities


def tokenizer_hash(tokenizers: Tokenizers) -> str:
    """SHA-256 over the tokenizers' models and the vocabularies."""
    digest = hashlib.sha256()
    for tokenizer in tokenizers[:2]:
        digest.update(tokenizer.model if isinstance(tokenizer, SubwordTokenizer) else b"word")
    for vocab in tokenizers[2:]:
        digest.update("\n".join(vocab.itos).encode("utf-8") + b"\0")
    return digest.hexdigest()


def why_stale(
    directory: Path, data: DataConfig, root: Path | None, tokenizers: Tokenizers | None = None
) -> str | None:
    """Why ``directory`` does not hold ``data`` prepared (a line for the user), or None if it does."""
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "not prepared yet"
    except (OSError, ValueError) as e:
        return f"{MANIFEST} unreadable ({e})"
    if manifest.get("format") != FORMAT:
        return f"format {manifest.get('format')} is not {FORMAT}"
    for key, value in settings(data).items():
        if manifest["settings"].get(key) != value:
            return f"{key} changed ({manifest['settings'].get(key)!r} → {value!r})"
    identities = input_identities(data, root)  # one spec: as many files
    for old, new in zip(manifest["inputs"], identities, strict=True):
        if old != new:
            return f"{new['path']} changed (size or modification time)"
    if tokenizers is not None and manifest["tokenizer_sha256"] != tokenizer_hash(tokenizers):
        return "the model's tokenizer or vocabulary differs"
    return None


def ensure_prepared(
    directory: Path,
    data: DataConfig,
    *,
    root: Path | None = None,
    tokenizers: Tokenizers | None = None,
    workers: int | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> dict:
    """Prepare ``data`` into ``directory`` unless it already holds it; returns the manifest."""
    reason = why_stale(directory, data, root, tokenizers)
    if reason is None:
        say(f"prepared data {directory}: up to date")
    else:
        say(f"preparing {data.train} into {directory}: {reason}")
        prepare(directory, data, root=root, tokenizers=tokenizers, workers=workers, say=say)
    return json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))


def prepare(
    directory: Path,
    data: DataConfig,
    *,
    root: Path | None = None,
    tokenizers: Tokenizers | None = None,
    workers: int | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> CleaningReport:
    """Clean, tokenise and encode ``data.train`` into ``directory`` (replaced as a whole, atomically).
    ``tokenizers`` (e.g. a resumed model's) are used as they are; else they are built here."""
    directory = Path(directory)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        for stale in directory.parent.glob(f".{directory.name}.tmp-*"):  # a prepare killed midway
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise AttnmtError(f"{directory}: cannot write there ({e.strerror or e})") from None
    try:
        identities = input_identities(data, root)
        with _Pool(workers) as pool:
            keep, report, sample = _clean_pass(
                pool, data, root, data.tokenizer != "word" and tokenizers is None
            )
            say(f"training data {data.train}: {report}")
            if not report.kept:
                raise AttnmtError(f"data.train: {data.train}: no training pairs left after cleaning")
            if tokenizers is None:
                tokenizers = _build_tokenizers(pool, data, root, keep, sample)
            pool.set_state(tokenizers=tokenizers)
            tokens = _encode_pass(pool, data, root, keep, tokenizers, tmp)
        _save_tokenizers(tokenizers, tmp)
        manifest = {
            "format": FORMAT, "inputs": identities, "settings": settings(data),
            "tokenizer_sha256": tokenizer_hash(tokenizers), "counts": dataclasses.asdict(report),
            "pairs": report.kept, "tokens": tokens, "dtype": _dtype(tokenizers).name,
        }  # fmt: skip
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1) + "\n")
        if directory.exists():
            old = directory.parent / f".{directory.name}.tmp-old-{os.getpid()}"
            directory.rename(old)
            shutil.rmtree(old)
        tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


class PreparedDataset:
    """A prepared directory's pairs, memory-mapped: ``dataset[i]`` is (source ids, target ids) as
    :class:`data.TranslationDataset` gives them; ``length_arrays()`` is what batch planning reads."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.manifest = json.loads((self.directory / MANIFEST).read_text(encoding="utf-8"))
        dtype = np.dtype(self.manifest["dtype"])
        self.src_ids, self.tgt_ids = (self._map(f"{side}.ids", dtype) for side in ("src", "tgt"))
        self.src_offsets, self.tgt_offsets = (
            self._map(f"{side}.offsets", np.int64) for side in ("src", "tgt")
        )

    def _map(self, name: str, dtype: np.dtype) -> np.ndarray:
        path = self.directory / name
        if path.stat().st_size == 0:
            return np.zeros(0, dtype=dtype)
        return np.memmap(path, dtype=dtype, mode="r")

    def tokenizers(self, data: DataConfig) -> Tokenizers:
        """The tokenizers and vocabularies the pairs were encoded with."""
        d = self.directory
        src_vocab, tgt_vocab = Vocabulary.load(d / "src_vocab.json"), Vocabulary.load(d / "tgt_vocab.json")
        if data.tokenizer == "word":
            return WordTokenizer(data.src_lang), WordTokenizer(data.tgt_lang), src_vocab, tgt_vocab
        src_tok = SubwordTokenizer.load(d / "src.spm")
        tgt_tok = src_tok if data.joint_vocab else SubwordTokenizer.load(d / "tgt.spm")
        return src_tok, tgt_tok, src_vocab, tgt_vocab

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    def length_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) ids per pair, as int32 arrays."""
        return tuple(np.diff(offsets).astype(np.int32) for offsets in (self.src_offsets, self.tgt_offsets))

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return (
            self.src_ids[self.src_offsets[i] : self.src_offsets[i + 1]].tolist(),
            self.tgt_ids[self.tgt_offsets[i] : self.tgt_offsets[i + 1]].tolist(),
        )


# -- the passes ------------------------------------------------------------------------------------


def _chunks(data: DataConfig, root: Path | None) -> Iterator[list[Pair]]:
    pairs = iter_pairs(data.train, src_lang=data.src_lang, tgt_lang=data.tgt_lang, root=root)
    while chunk := list(islice(pairs, CHUNK)):
        yield chunk


def _clean_pass(
    pool: "_Pool", data: DataConfig, root: Path | None, sampling: bool
) -> tuple[np.ndarray, CleaningReport, list[tuple[int, Pair]]]:
    """Pass 1: the rules and hashes of every pair; returns a keep flag per pair read, the report, and
    (``sampling``) a reservoir sample of up to ``data.spm_sample`` passing pairs with their positions."""
    pool.set_state(max_words=data.max_words, src_lang=data.src_lang, tgt_lang=data.tgt_lang)
    codes, hashes = [], []
    reservoir = _Reservoir(data.spm_sample) if sampling else None
    for (chunk,), (code, digest) in pool.map(_check_chunk, ((c,) for c in _chunks(data, root))):
        codes.append(code)
        hashes.append(digest)
        if reservoir is not None:
            reservoir.add([p for p, c in zip(chunk, code.tolist(), strict=True) if c == 0])
    code = np.concatenate(codes) if codes else np.zeros(0, np.uint8)
    digest = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    del codes, hashes
    keep, report = select_kept(code, digest)
    sample = []
    if reservoir is not None:  # positions among the passing pairs: a duplicate found later is left out
        first = keep[code == 0]
        sample = [(i, pair) for i, pair in sorted(reservoir.items) if first[i]]
    return keep, report, sample


def _build_tokenizers(
    pool: "_Pool", data: DataConfig, root: Path | None, keep: np.ndarray, sample: list[tuple[int, Pair]]
) -> Tokenizers:
    """SentencePiece on the sample, or word vocabularies from pass 2's token counts."""
    src_tok, tgt_tok = build_tokenizers(data, [normalise(pair) for _, pair in sample])
    if data.tokenizer != "word":
        return src_tok, tgt_tok, *build_vocabularies(data, [], src_tok, tgt_tok)
    counts: tuple[Counter, Counter] = (Counter(), Counter())
    for _, (src, tgt) in pool.map(_count_chunk, _with_keep(_chunks(data, root), keep)):
        counts[0].update(src)
        counts[1].update(tgt)
    vocabularies = word_vocabularies(
        counts, min_freq=data.min_freq, max_size=data.max_vocab_size, joint=data.joint_vocab
    )
    return src_tok, tgt_tok, *vocabularies


def _encode_pass(
    pool: "_Pool", data: DataConfig, root: Path | None, keep: np.ndarray, tokenizers: Tokenizers, out: Path
) -> dict[str, int]:
    """Pass 3: the kept pairs' ids, appended to ``out``'s arrays; returns the tokens per side."""
    dtype = _dtype(tokenizers)
    ends = {"src": 0, "tgt": 0}
    with contextlib.ExitStack() as stack:
        files = {
            name: stack.enter_context(open(out / name, "wb"))
            for name in ("src.ids", "tgt.ids", "src.offsets", "tgt.offsets")
        }
        for f in (files["src.offsets"], files["tgt.offsets"]):
            f.write(np.zeros(1, np.int64).tobytes())
        for _, encoded in pool.map(_encode_chunk, _with_keep(_chunks(data, root), keep)):
            for side, (lengths, ids) in zip(("src", "tgt"), encoded, strict=True):
                files[f"{side}.ids"].write(ids.astype(dtype).tobytes())
                files[f"{side}.offsets"].write((ends[side] + np.cumsum(lengths, dtype=np.int64)).tobytes())
                ends[side] += int(lengths.sum())
    return ends


def _save_tokenizers(tokenizers: Tokenizers, out: Path) -> None:
    src_tok, tgt_tok, src_vocab, tgt_vocab = tokenizers
    src_vocab.save(out / "src_vocab.json")
    tgt_vocab.save(out / "tgt_vocab.json")
    for name, tokenizer in (("src.spm", src_tok), ("tgt.spm", tgt_tok)):
        if isinstance(tokenizer, SubwordTokenizer):
            tokenizer.save(out / name)


def _dtype(tokenizers: Tokenizers) -> np.dtype:
    return np.dtype(np.uint16 if max(len(v) for v in tokenizers[2:]) <= 65_536 else np.int32)


def _with_keep(chunks: Iterable[list[Pair]], keep: np.ndarray) -> Iterator[tuple[list[Pair], np.ndarray]]:
    start = 0
    for chunk in chunks:
        yield chunk, keep[start : start + len(chunk)]
        start += len(chunk)


class _Reservoir:
    """A uniform random sample of at most ``size`` items of a stream (Vitter's algorithm R, seeded):
    every item while fewer than ``size`` have come, so a small corpus is sampled whole, in order."""

    def __init__(self, size: int) -> None:
        self.size, self.seen, self.items = size, 0, []
        self.rng = np.random.default_rng(0)

    def add(self, batch: list) -> None:
        room = max(0, self.size - self.seen)
        self.items += [(self.seen + k, item) for k, item in enumerate(batch[:room])]
        rest = np.arange(self.seen + room, self.seen + len(batch))
        slots = (self.rng.random(len(rest)) * (rest + 1)).astype(np.int64)
        for position, slot in zip(
            rest[slots < self.size].tolist(), slots[slots < self.size].tolist(), strict=True
        ):
            self.items[slot] = (position, batch[position - self.seen])
        self.seen += len(batch)


# -- the worker processes -------------------------------------------------------------------------

_STATE: dict = {}  # a worker's settings and tokenizers, set by _Pool.set_state


def _set_state(state: dict) -> None:
    _STATE.update(state)


def _check_chunk(chunk: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`corpora.check_pairs`' codes and hashes."""
    _, codes, hashes = check_pairs(chunk, max_words=_STATE["max_words"])
    return codes, hashes


def _kept(chunk: list[Pair], keep: np.ndarray) -> Iterator[Pair]:
    for pair, kept in zip(chunk, keep.tolist(), strict=True):
        if kept:
            yield normalise(pair)


def _count_chunk(chunk: list[Pair], keep: np.ndarray) -> tuple[Counter, Counter]:
    src_tok, tgt_tok = WordTokenizer(_STATE["src_lang"]), WordTokenizer(_STATE["tgt_lang"])
    return count_tokens(_kept(chunk, keep), src_tok, tgt_tok)


def _encode_chunk(chunk: list[Pair], keep: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(lengths, ids) per side of the kept pairs (:func:`preprocess.encode_pair`)."""
    sides: list[list[int]] = [[], [], [], []]  # source lengths, source ids, target lengths, target ids
    for pair in _kept(chunk, keep):
        s, t = encode_pair(pair, _STATE["tokenizers"])
        sides[0].append(len(s))
        sides[1] += s
        sides[2].append(len(t))
        sides[3] += t
    arrays = [np.array(x, dtype=np.int64) for x in sides]
    return [(arrays[0], arrays[1]), (arrays[2], arrays[3])]


class _Pool:
    """Worker processes fed one chunk each at a time, answers taken in order, at most two chunks per
    worker in flight (``multiprocessing.Pool.imap`` would read the whole corpus ahead).  With one worker
    or fewer, chunks are handled in this process."""

    def __init__(self, workers: int | None) -> None:
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.pool = None
        self.state: dict = {}

    def __enter__(self) -> "_Pool":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def set_state(self, **state) -> None:
        self.state |= state
        _set_state(state)
        if self.pool is not None:  # a fresh set of workers, started with the whole state
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def _start(self) -> None:
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else None)
        self.pool = context.Pool(self.workers, initializer=_set_state, initargs=(self.state,))

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator[tuple[tuple, object]]:
        """(arguments, ``fn(*arguments)``) for each task, in order."""
        tasks = iter(tasks)
        first = next(tasks, None)
        if first is None:
            return
        second = next(tasks, None)
        if self.workers <= 1 or second is None:  # one chunk: no processes to start
            for args in (first,) if second is None else chain((first, second), tasks):
                yield args, fn(*args)
            return
        if self.pool is None:
            self._start()
        pending: deque = deque()
        for args in chain((first, second), tasks):
            pending.append((args, self.pool.apply_async(fn, args)))
            if len(pending) >= 2 * self.workers:
                args, result = pending.popleft()
                yield args, result.get()
        while pending:
            args, result = pending.popleft()
            yield args, result.get()
