"""Tatoeba English→French pre-encoded once for every toolkit the benchmarks compare.

One joint 8k SentencePiece BPE model is trained exactly as ``attnmt train`` trains it (same function,
same cleaned pairs), so attnmt's own run ends up with the very same pieces; every split is written as
space-separated pieces for the other toolkits, which read it as words.

    python bench/prepare.py runs/bench/data
"""

import argparse
import dataclasses
import json
from pathlib import Path

from attnmt.config import DataConfig
from attnmt.corpora import clean, group_references, load_pairs
from attnmt.preprocess import build_tokenizers
from attnmt.tokenization import SubwordTokenizer

DATA = DataConfig(
    train="tatoeba:train", dev="tatoeba:dev", test="tatoeba:test", tokenizer="bpe", vocab_size=8000,
    joint_vocab=True,
)  # fmt: skip


TESTS = {"test": "tatoeba:test", "test_long": "long:tatoeba:test"}  # file stem → data spec


def prepare(out: Path, train_spec: str = DATA.train) -> Path:
    """Write spm.model, vocab.txt and {train,dev}.{en,fr} (pieces) into ``out``, the SentencePiece model
    trained on ``train_spec`` as ``attnmt train`` trains it, and each test split of ``TESTS``; skip
    what is done."""
    if (out / "done").is_file():
        write_tests(out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    data = dataclasses.replace(DATA, train=train_spec)
    train, _ = clean(load_pairs(data.train), max_words=data.max_words)
    sp, _ = build_tokenizers(data, train)
    sp.save(out / "spm.model")
    (out / "vocab.txt").write_text("".join(p + "\n" for p in sp.pieces()), encoding="utf-8")
    dev = load_pairs(DATA.dev)
    for name, pairs in (("train", train), ("dev", dev)):
        for side, lang in ((0, "en"), (1, "fr")):
            lines = (" ".join(sp.tokenize(pair[side])) + "\n" for pair in pairs)
            (out / f"{name}.{lang}").write_text("".join(lines), encoding="utf-8")
    write_tests(out)
    (out / "done").write_text("")
    return out


def write_tests(out: Path, splits: dict[str, str] = TESTS) -> None:
    """For each split of ``splits`` (file stem → data spec) not yet written: STEM.txt (plain English),
    STEM.en (its pieces) and STEM.refs.json (every French reference per source sentence)."""
    sp = SubwordTokenizer.load(out / "spm.model")
    for stem, spec in splits.items():
        if (out / f"{stem}.refs.json").is_file():
            continue
        sources, references = group_references(load_pairs(spec))
        (out / f"{stem}.txt").write_text("".join(s + "\n" for s in sources), encoding="utf-8")
        (out / f"{stem}.en").write_text(
            "".join(" ".join(sp.tokenize(s)) + "\n" for s in sources), encoding="utf-8"
        )
        (out / f"{stem}.refs.json").write_text(json.dumps(references, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    print(prepare(parser.parse_args().out))
