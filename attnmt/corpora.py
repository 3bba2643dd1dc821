"""Where sentence pairs come from: corpus readers, the Tatoeba split, cleaning, and data specs.

A *data spec* names a set of pairs, in configs and on the command line:

    toy                          the built-in English–French set
    tatoeba:train|dev|test       Tatoeba English–French, split by a hash of the English sentence
    multi30k:train|val|test_2016_flickr
    path/to/pairs.tsv            source<TAB>target lines (a third column, e.g. attribution, is ignored)
    path/to/src.txt,path/to/tgt.txt   two line-aligned files
    long:SPEC                    SPEC's sentences joined into long ones (see join_consecutive)
    SPEC+SPEC                    the pairs of both, in order (e.g. tatoeba:train+long:tatoeba:train)
    SPEC@SHARE                   a fixed share (0–1] of SPEC's pairs, picked by a hash of each source
                                 (all references of a source together); ``+`` binds loosest, so
                                 tatoeba:train+long:tatoeba:train@0.25 is the pairs and a quarter of
                                 the joined ones.  A path whose last ``@`` is followed by something
                                 other than a number is read as a path.

Corpus files may be gzipped (``.gz``).  They live in the data directory: ``--data-dir``, else
``$ATTNMT_DATA``, else ``$XDG_DATA_HOME/attnmt`` (``~/.local/share/attnmt``), in the layout
``tatoeba-eng-fra/eng-fra.tsv.gz`` and ``multi30k/{split}.{lang}.gz``.

A spec is parsed once, into a :class:`DataSpec`.  ``load_pairs`` returns its pairs as a list;
``iter_pairs`` streams the same pairs, for corpora too big to hold (``attnmt.prepared``), and
``spec_files`` names the files a spec reads.

Cleaning (:func:`clean`) is the one set of rules both ways of training apply, the in-memory one and
``attnmt.prepared``'s, which runs :func:`check_pairs` chunk by chunk and :func:`select_kept` once.
"""

import gzip
import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from itertools import compress
from pathlib import Path

import numpy as np

from attnmt.errors import AttnmtError

Pair = tuple[str, str]

TATOEBA_SPLITS = ("train", "dev", "test")
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr")
DEV_FRACTION = TEST_FRACTION = 0.015


def data_dir(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return Path(explicit)
    if os.environ.get("ATTNMT_DATA"):
        return Path(os.environ["ATTNMT_DATA"])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "attnmt"


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a UTF-8 file, gzipped or not; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise AttnmtError(f"{path}: file not found")
    number = 0
    try:
        with _open_binary(path) as f:
            for number, raw in enumerate(f, 1):
                try:
                    yield number, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise AttnmtError(f"{path}:{number}: not valid UTF-8") from None
    except (OSError, EOFError) as e:  # a corrupt or truncated .gz
        raise AttnmtError(f"{path}:{number + 1}: cannot read ({e})") from None


def _open_binary(path: Path) -> io.BufferedReader:
    """A file read in 1 MiB blocks; a .gz one decompressed by the block (GzipFile's own line reading
    is Python code, three times slower)."""
    if path.suffix == ".gz":
        return io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=1 << 20)
    return open(path, "rb", buffering=1 << 20)


def read_tsv(path: Path) -> list[Pair]:
    """``source<TAB>target`` lines, with an optional third column (ignored)."""
    return list(iter_tsv(path))


def iter_tsv(path: Path) -> Iterator[Pair]:
    """:func:`read_tsv`'s pairs one at a time."""
    for number, line in read_lines(path):
        fields = line.split("\t")
        if len(fields) not in (2, 3) or not fields[0].strip() or not fields[1].strip():
            raise AttnmtError(f"{path}:{number}: expected 'source<TAB>target', both non-empty")
        yield fields[0], fields[1]


def iter_parallel(src_path: Path, tgt_path: Path) -> Iterator[Pair]:
    """:func:`read_parallel`'s pairs one at a time; a file shorter than the other is found at its end."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    number = 0
    for number, s in src:
        t = next(tgt, None)
        if t is None:
            rest = sum(1 for _ in src)
            raise AttnmtError(
                f"{src_path}:{number}: has {number + rest} lines but {tgt_path} has {number - 1}"
            )
        if not s.strip() or not t[1].strip():
            raise AttnmtError(
                f"{src_path if not s.strip() else tgt_path}:{number}: empty line in a parallel corpus"
            )
        yield s, t[1]
    rest = sum(1 for _ in tgt)
    if rest:
        raise AttnmtError(f"{tgt_path}:{number + 1}: has {number + rest} lines but {src_path} has {number}")


def read_parallel(src_path: Path, tgt_path: Path) -> list[Pair]:
    """Two line-aligned files: line i of one translates line i of the other."""
    return list(iter_parallel(src_path, tgt_path))


def tatoeba_split(english: str) -> str:
    """``train``, ``dev`` or ``test`` for an English sentence: a hash of its normalised form, so all its
    translations share a split and the split never changes as the corpus grows."""
    h = _unit_hash(" ".join(unicodedata.normalize("NFC", english).casefold().split()))
    return "test" if h < TEST_FRACTION else "dev" if h < TEST_FRACTION + DEV_FRACTION else "train"


def toy_pairs(src_lang: str = "en", tgt_lang: str = "fr") -> list[Pair]:
    """The built-in English–French set written for attnmt (a few hundred everyday sentences, some without final punctuation, as people type them)."""
    with resources.as_file(resources.files("attnmt") / "resources" / "toy_en_fr.tsv") as path:
        return _oriented(read_tsv(path), "toy", src_lang, tgt_lang)


@dataclass(frozen=True)
class DataSpec:
    """A data spec, parsed (see the module docstring)."""

    text: str  # as written: what messages name
    kind: str  # parts (A+B) | share (A@SHARE) | long | toy | tatoeba | multi30k | tsv | parallel
    parts: tuple["DataSpec", ...] = ()  # parts: A and B; share, long: the spec they draw on
    split: str = ""  # tatoeba, multi30k
    share: float = 1.0  # share: the fraction of pairs picked
    paths: tuple[Path, ...] = ()  # tsv: the file; parallel: the source and the target file

    @classmethod
    def parse(cls, text: str) -> "DataSpec":
        name, _, split = text.partition(":")
        if "+" in text and not Path(text).exists():
            return cls(text, "parts", parts=tuple(cls.parse(part) for part in text.split("+")))
        if share := _share(text):
            return cls(text, "share", parts=(cls.parse(share[0]),), share=share[1])
        if text == "toy":
            return cls(text, "toy")
        if name == "long":
            return cls(text, "long", parts=(cls.parse(split),))
        if name in ("tatoeba", "multi30k"):
            splits = TATOEBA_SPLITS if name == "tatoeba" else MULTI30K_SPLITS
            if split not in splits:
                raise AttnmtError(f"{text}: unknown split; choose one of {', '.join(splits)}")
            return cls(text, name, split=split)
        if "," in text:
            return cls(text, "parallel", paths=tuple(Path(p) for p in text.split(",", 1)))
        return cls(text, "tsv", paths=(Path(text),))


def load_pairs(
    spec: str, *, src_lang: str = "en", tgt_lang: str = "fr", root: Path | None = None
) -> list[Pair]:
    """The (source, target) pairs a data spec names (see the module docstring), uncleaned."""
    return list(iter_pairs(spec, src_lang=src_lang, tgt_lang=tgt_lang, root=root))


def iter_pairs(
    spec: str, *, src_lang: str = "en", tgt_lang: str = "fr", root: Path | None = None
) -> Iterator[Pair]:
    """:func:`load_pairs`' pairs one at a time: corpus files and Tatoeba are streamed (gzip included),
    never held whole; the toy set and ``long:`` specs (small, and joined across lines) are read whole."""
    return _pairs(DataSpec.parse(spec), src_lang, tgt_lang, root)


def spec_files(
    spec: str, *, src_lang: str = "en", tgt_lang: str = "fr", root: Path | None = None
) -> list[Path]:
    """The files a data spec reads: what identifies its data."""
    return _files(DataSpec.parse(spec), src_lang, tgt_lang, root)


def _pairs(spec: DataSpec, src_lang: str, tgt_lang: str, root: Path | None) -> Iterator[Pair]:
    if spec.kind == "parts":
        for part in spec.parts:
            yield from _pairs(part, src_lang, tgt_lang, root)
    elif spec.kind == "share":
        yield from (p for p in _pairs(spec.parts[0], src_lang, tgt_lang, root) if _picked(p[0], spec.share))
    elif spec.kind == "long":
        yield from join_consecutive(list(_pairs(spec.parts[0], src_lang, tgt_lang, root)))
    elif spec.kind == "toy":
        yield from toy_pairs(src_lang, tgt_lang)
    elif spec.kind == "tatoeba":
        _oriented([], "tatoeba", src_lang, tgt_lang)  # refuse another language pair before reading
        for en, fr in iter_tsv(*_files(spec, src_lang, tgt_lang, root)):
            if tatoeba_split(en) == spec.split:
                yield (en, fr) if src_lang == "en" else (fr, en)
    elif spec.kind == "tsv":
        yield from iter_tsv(*spec.paths)
    else:  # multi30k, parallel: two line-aligned files
        yield from iter_parallel(*_files(spec, src_lang, tgt_lang, root))


def _files(spec: DataSpec, src_lang: str, tgt_lang: str, root: Path | None) -> list[Path]:
    if spec.parts:  # parts, share, long
        return [f for part in spec.parts for f in _files(part, src_lang, tgt_lang, root)]
    if spec.kind == "toy":
        return [Path(str(resources.files("attnmt") / "resources" / "toy_en_fr.tsv"))]
    if spec.kind == "tatoeba":
        return [_find(data_dir(root) / "tatoeba-eng-fra" / "eng-fra.tsv", "tatoeba")]
    if spec.kind == "multi30k":
        directory = data_dir(root) / "multi30k"
        return [_find(directory / f"{spec.split}.{lang}", "multi30k") for lang in (src_lang, tgt_lang)]
    return list(spec.paths)


def group_references(pairs: list[Pair]) -> tuple[list[str], list[list[str]]]:
    """Unique sources (first-seen order) and all their targets, for multi-reference BLEU."""
    refs: dict[str, list[str]] = {}
    for src, tgt in pairs:
        refs.setdefault(src, []).append(tgt)
    return list(refs), list(refs.values())


LONG_LENGTHS = (10, 20, 30, 40, 50, 60)
_SHARE = re.compile(r"(.+)@(\d+(?:\.\d*)?|\.\d+)")


def join_consecutive(pairs: list[Pair]) -> list[Pair]:
    """A long-sentence test set from short pairs: consecutive sources (with their first reference) are
    joined with spaces until the k-th joined source has at least ``LONG_LENGTHS[k % 6]`` words, so
    lengths spread evenly over 10–60+ words.  Deterministic: the same pairs give the same set."""
    sources, references = group_references(pairs)
    joined, src, tgt, words = [], [], [], 0
    for source, refs in zip(sources, references, strict=True):
        src.append(source)
        tgt.append(refs[0])
        words += len(source.split())
        if words >= LONG_LENGTHS[len(joined) % len(LONG_LENGTHS)]:
            joined.append((" ".join(src), " ".join(tgt)))
            src, tgt, words = [], [], 0
    return joined


# -- cleaning --------------------------------------------------------------------------------------

MAX_RATIO = 3.0  # the length-ratio limit of clean (the one training uses)
REASONS = ("empty", "too_long", "bad_ratio")  # why clean_pair drops a pair: code 1, 2, 3 (0: kept)


@dataclass
class CleaningReport:
    read: int = 0
    empty: int = 0
    too_long: int = 0
    bad_ratio: int = 0
    duplicates: int = 0
    kept: int = 0

    def __str__(self) -> str:
        return (
            f"{self.read:,} pairs read; dropped {self.empty:,} empty, {self.too_long:,} too long, "
            f"{self.bad_ratio:,} with a length ratio over the limit, {self.duplicates:,} duplicates; "
            f"kept {self.kept:,}"
        )


def clean(
    pairs: list[Pair], *, max_words: int = 80, max_ratio: float = MAX_RATIO
) -> tuple[list[Pair], CleaningReport]:
    """NFC, whitespace collapsed; drop empty sides, sides over ``max_words`` words, length ratios over
    ``max_ratio`` (when the longer side has more than 5 words) and exact duplicates."""
    normalised, codes, hashes = check_pairs(pairs, max_words=max_words, max_ratio=max_ratio)
    keep, report = select_kept(codes, hashes)
    return list(compress(normalised, keep.tolist())), report


def clean_pair(
    src: str, tgt: str, *, max_words: int, max_ratio: float = MAX_RATIO
) -> tuple[Pair, str | None]:
    """One pair normalised (:func:`normalise`) and why :func:`clean` drops it (``empty``, ``too_long``,
    ``bad_ratio``: a :class:`CleaningReport` count), or None; duplicates aside."""
    src, tgt = normalise((src, tgt))
    ns, nt = len(src.split()), len(tgt.split())
    if not ns or not nt:
        return (src, tgt), "empty"
    if max(ns, nt) > max_words:
        return (src, tgt), "too_long"
    if max(ns, nt) > 5 and max(ns, nt) > max_ratio * min(ns, nt):
        return (src, tgt), "bad_ratio"
    return (src, tgt), None


def normalise(pair: Pair) -> Pair:
    """NFC, whitespace collapsed: the text cleaning keeps."""
    nfc = unicodedata.normalize
    return " ".join(nfc("NFC", pair[0]).split()), " ".join(nfc("NFC", pair[1]).split())


def check_pairs(
    pairs: Iterable[Pair], *, max_words: int, max_ratio: float = MAX_RATIO
) -> tuple[list[Pair], np.ndarray, np.ndarray]:
    """:func:`clean_pair` on each pair: the pairs normalised; a code per pair (0: passes the rules, else
    1 + its index in REASONS); and a 64-bit hash of each normalised pair that passes, what finds the
    duplicates."""
    normalised, codes, hashes = [], bytearray(), bytearray()
    for pair in pairs:
        (src, tgt), reason = clean_pair(*pair, max_words=max_words, max_ratio=max_ratio)
        normalised.append((src, tgt))
        if reason is None:
            codes.append(0)
            hashes += hashlib.blake2b(f"{len(src)}:{src}\t{tgt}".encode(), digest_size=8).digest()
        else:
            codes.append(1 + REASONS.index(reason))
    return normalised, np.array(codes, dtype=np.uint8), np.frombuffer(hashes, dtype="<u8").astype(np.uint64)


def select_kept(codes: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, CleaningReport]:
    """Which pairs :func:`clean` keeps, from :func:`check_pairs`' codes and hashes (of any number of
    pairs together): those that pass, the first of equal ones; and the report."""
    first = np.zeros(len(hashes), dtype=bool)
    first[np.unique(hashes, return_index=True)[1]] = True  # the first occurrence of each pair
    keep = codes == 0
    keep[keep] = first
    report = CleaningReport(read=len(codes), kept=int(keep.sum()))
    for number, reason in enumerate(REASONS, 1):
        setattr(report, reason, int((codes == number).sum()))
    report.duplicates = len(hashes) - report.kept
    return keep, report


# -- helpers ---------------------------------------------------------------------------------------


def _share(spec: str) -> tuple[str, float] | None:
    """``SPEC@SHARE`` → (SPEC, SHARE), SHARE a number in (0, 1]; None for a spec without a share (an
    existing file, or no number after its last ``@``)."""
    match = _SHARE.fullmatch(spec)
    if match is None or Path(spec).exists():
        return None
    base, share = match[1], float(match[2])
    if not 0 < share <= 1:
        raise AttnmtError(f"{spec}: the share after '@' must be in (0, 1], e.g. {base}@0.25")
    return base, share


def _picked(source: str, share: float) -> bool:
    """Whether a pair belongs to a ``SHARE`` subsample: a hash of its source, so every run picks the same
    pairs and no pattern in the order (such as ``long:``'s cycle of lengths) is aliased."""
    return _unit_hash(source) < share


def _unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by ``text`` (SHA-256), the same on every machine and Python."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def _oriented(pairs: list[Pair], corpus: str, src_lang: str, tgt_lang: str) -> list[Pair]:
    if (src_lang, tgt_lang) == ("en", "fr"):
        return pairs
    if (src_lang, tgt_lang) == ("fr", "en"):
        return [(fr, en) for en, fr in pairs]
    raise AttnmtError(f"{corpus} is English–French; got {src_lang}→{tgt_lang}")


def _find(path: Path, corpus: str) -> Path:
    for candidate in (path.with_name(path.name + ".gz"), path):
        if candidate.is_file():
            return candidate
    raise AttnmtError(
        f"{path}(.gz): {corpus} data not found; point --data-dir or ATTNMT_DATA at a directory that has it"
    )
