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

``load_pairs`` returns a spec's pairs as a list; ``iter_pairs`` streams the same pairs, for corpora too
big to hold (``attnmt.prepared``), and ``spec_files`` names the files a spec reads.
"""

import gzip
import hashlib
import io
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
    src, tgt = list(read_lines(src_path)), list(read_lines(tgt_path))
    if len(src) != len(tgt):
        short, long_ = (src_path, tgt_path) if len(src) < len(tgt) else (tgt_path, src_path)
        raise AttnmtError(
            f"{long_}:{min(len(src), len(tgt)) + 1}: has {max(len(src), len(tgt))} lines "
            f"but {short} has {min(len(src), len(tgt))}"
        )
    for (number, s), (_, t) in zip(src, tgt, strict=True):
        if not s.strip() or not t.strip():
            path = src_path if not s.strip() else tgt_path
            raise AttnmtError(f"{path}:{number}: empty line in a parallel corpus")
    return [(s, t) for (_, s), (_, t) in zip(src, tgt, strict=True)]


def tatoeba_split(english: str) -> str:
    """``train``, ``dev`` or ``test`` for an English sentence: a hash of its normalised form, so all its
    translations share a split and the split never changes as the corpus grows."""
    h = _unit_hash(" ".join(unicodedata.normalize("NFC", english).casefold().split()))
    return "test" if h < TEST_FRACTION else "dev" if h < TEST_FRACTION + DEV_FRACTION else "train"


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
    pairs: list[Pair], *, max_words: int = 80, max_ratio: float = 3.0
) -> tuple[list[Pair], CleaningReport]:
    """NFC, whitespace collapsed; drop empty sides, sides over ``max_words`` words, length ratios over
    ``max_ratio`` (when the longer side has more than 5 words) and exact duplicates."""
    report, seen, kept = CleaningReport(read=len(pairs)), set(), []
    for src, tgt in pairs:
        (src, tgt), reason = clean_pair(src, tgt, max_words=max_words, max_ratio=max_ratio)
        if reason is not None:
            setattr(report, reason, getattr(report, reason) + 1)
        elif (src, tgt) in seen:
            report.duplicates += 1
        else:
            seen.add((src, tgt))
            kept.append((src, tgt))
    report.kept = len(kept)
    return kept, report


def clean_pair(src: str, tgt: str, *, max_words: int, max_ratio: float) -> tuple[Pair, str | None]:
    """One pair normalised (NFC, whitespace collapsed) and why :func:`clean` drops it (``empty``,
    ``too_long``, ``bad_ratio``: a :class:`CleaningReport` count), or None; duplicates aside."""
    src, tgt = (" ".join(unicodedata.normalize("NFC", s).split()) for s in (src, tgt))
    ns, nt = len(src.split()), len(tgt.split())
    if not ns or not nt:
        return (src, tgt), "empty"
    if max(ns, nt) > max_words:
        return (src, tgt), "too_long"
    if max(ns, nt) > 5 and max(ns, nt) > max_ratio * min(ns, nt):
        return (src, tgt), "bad_ratio"
    return (src, tgt), None


def toy_pairs(src_lang: str = "en", tgt_lang: str = "fr") -> list[Pair]:
    """The built-in English–French set written for attnmt (a few hundred everyday sentences, some without final punctuation, as people type them)."""
    with resources.as_file(resources.files("attnmt") / "resources" / "toy_en_fr.tsv") as path:
        return _oriented(read_tsv(path), "toy", src_lang, tgt_lang)


def load_pairs(
    spec: str, *, src_lang: str = "en", tgt_lang: str = "fr", root: Path | None = None
) -> list[Pair]:
    """The (source, target) pairs a data spec names (see the module docstring), uncleaned."""
    name, _, split = spec.partition(":")
    if "+" in spec and not Path(spec).exists():
        return [
            p
            for part in spec.split("+")
            for p in load_pairs(part, src_lang=src_lang, tgt_lang=tgt_lang, root=root)
        ]
    if share := _share(spec):
        base, share = share
        pairs = load_pairs(base, src_lang=src_lang, tgt_lang=tgt_lang, root=root)
        return [p for p in pairs if _picked(p[0], share)]
    if spec == "toy":
        return toy_pairs(src_lang, tgt_lang)
    if name == "long":
        return join_consecutive(load_pairs(split, src_lang=src_lang, tgt_lang=tgt_lang, root=root))
    if name == "tatoeba":
        if split not in TATOEBA_SPLITS:
            raise AttnmtError(f"{spec}: unknown split; choose one of {', '.join(TATOEBA_SPLITS)}")
        path = _find(data_dir(root) / "tatoeba-eng-fra" / "eng-fra.tsv", "tatoeba")
        pairs = [p for p in read_tsv(path) if tatoeba_split(p[0]) == split]
        return _oriented(pairs, "tatoeba", src_lang, tgt_lang)
    if name == "multi30k":
        if split not in MULTI30K_SPLITS:
            raise AttnmtError(f"{spec}: unknown split; choose one of {', '.join(MULTI30K_SPLITS)}")
        directory = data_dir(root) / "multi30k"
        files = [_find(directory / f"{split}.{lang}", "multi30k") for lang in (src_lang, tgt_lang)]
        return read_parallel(*files)
    if "," in spec:
        src_path, tgt_path = spec.split(",", 1)
        return read_parallel(Path(src_path), Path(tgt_path))
    return read_tsv(Path(spec))


def iter_pairs(
    spec: str, *, src_lang: str = "en", tgt_lang: str = "fr", root: Path | None = None
) -> Iterator[Pair]:
    """:func:`load_pairs`' pairs one at a time: corpus files and Tatoeba are streamed (gzip included),
    never held whole; the toy set and ``long:`` specs (small, and joined across lines) are read whole."""
    name, _, split = spec.partition(":")
    if "+" in spec and not Path(spec).exists():
        for part in spec.split("+"):
            yield from iter_pairs(part, src_lang=src_lang, tgt_lang=tgt_lang, root=root)
    elif share := _share(spec):
        base, share = share
        pairs = iter_pairs(base, src_lang=src_lang, tgt_lang=tgt_lang, root=root)
        yield from (p for p in pairs if _picked(p[0], share))
    elif name == "tatoeba" and split in TATOEBA_SPLITS:
        _oriented([], "tatoeba", src_lang, tgt_lang)  # refuse another language pair before reading
        path = _find(data_dir(root) / "tatoeba-eng-fra" / "eng-fra.tsv", "tatoeba")
        for en, fr in iter_tsv(path):
            if tatoeba_split(en) == split:
                yield (en, fr) if src_lang == "en" else (fr, en)
    elif name == "multi30k" and split in MULTI30K_SPLITS:
        directory = data_dir(root) / "multi30k"
        yield from iter_parallel(
            *(_find(directory / f"{split}.{lang}", "multi30k") for lang in (src_lang, tgt_lang))
        )
    elif spec != "toy" and name not in ("long", "tatoeba", "multi30k"):
        if "," in spec:
            yield from iter_parallel(*(Path(p) for p in spec.split(",", 1)))
        else:
            yield from iter_tsv(Path(spec))
    else:
        yield from load_pairs(spec, src_lang=src_lang, tgt_lang=tgt_lang, root=root)


def spec_files(
    spec: str, *, src_lang: str = "en", tgt_lang: str = "fr", root: Path | None = None
) -> list[Path]:
    """The files a data spec reads: what identifies its data."""
    name, _, split = spec.partition(":")
    if "+" in spec and not Path(spec).exists():
        return [
            f
            for part in spec.split("+")
            for f in spec_files(part, src_lang=src_lang, tgt_lang=tgt_lang, root=root)
        ]
    if share := _share(spec):
        return spec_files(share[0], src_lang=src_lang, tgt_lang=tgt_lang, root=root)
    if spec == "toy":
        return [Path(str(resources.files("attnmt") / "resources" / "toy_en_fr.tsv"))]
    if name == "long":
        return spec_files(split, src_lang=src_lang, tgt_lang=tgt_lang, root=root)
    if name == "tatoeba":
        return [_find(data_dir(root) / "tatoeba-eng-fra" / "eng-fra.tsv", "tatoeba")]
    if name == "multi30k":
        return [
            _find(data_dir(root) / "multi30k" / f"{split}.{lang}", "multi30k")
            for lang in (src_lang, tgt_lang)
        ]
    return [Path(p) for p in spec.split(",", 1)] if "," in spec else [Path(spec)]


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
