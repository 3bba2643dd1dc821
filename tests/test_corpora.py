import gzip
from pathlib import Path

import numpy as np
import pytest

from attnmt.corpora import (
    DEV_FRACTION,
    TEST_FRACTION,
    DataSpec,
    check_pairs,
    clean,
    data_dir,
    group_references,
    iter_pairs,
    iter_parallel,
    join_consecutive,
    load_pairs,
    read_parallel,
    read_tsv,
    select_kept,
    spec_files,
    tatoeba_split,
)
from attnmt.errors import AttnmtError


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_tsv_with_an_attribution_column_and_gzip(tmp_path):
    path = _write(
        tmp_path / "c.tsv.gz", b"Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org\nHi.\tSalut.\n"
    )
    assert read_tsv(path) == [("Go.", "Va !"), ("Hi.", "Salut.")]


def test_parallel_files_with_different_line_counts_name_both(tmp_path):
    src = _write(tmp_path / "a.en", b"one\ntwo\nthree\n")
    tgt = _write(tmp_path / "a.fr", b"un\ndeux\n")
    with pytest.raises(AttnmtError, match=r"a\.en:3: has 3 lines but .*a\.fr has 2"):
        read_parallel(src, tgt)


@pytest.mark.parametrize(
    ("src", "tgt", "where"),
    [
        (b"one\n\n", b"un\ndeux\n", "a.en:2"),
        (b"one\ntwo\n", b"un\n \n", "a.fr:2"),
        (b"ok\n\xff\n", b"a\nb\n", "a.en:2"),
    ],
)
def test_parallel_file_errors_name_file_and_line(tmp_path, src, tgt, where):
    with pytest.raises(AttnmtError, match=where):
        read_parallel(_write(tmp_path / "a.en", src), _write(tmp_path / "a.fr", tgt))


def test_truncated_gzip_is_a_clear_error(tmp_path):
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress(b"a\tb\n" * 1000)[:40])
    with pytest.raises(AttnmtError, match=r"t\.tsv\.gz"):
        read_tsv(path)


def test_tatoeba_split_ignores_case_and_spacing_and_is_stable():
    assert tatoeba_split("I love cats.") == tatoeba_split("  i LOVE   cats. ")
    splits = [tatoeba_split(f"Sentence number {i}.") for i in range(40_000)]
    for name, fraction in (("dev", DEV_FRACTION), ("test", TEST_FRACTION)):
        assert 0.7 * fraction < splits.count(name) / len(splits) < 1.3 * fraction


def test_tatoeba_keeps_all_translations_of_a_sentence_together(tmp_path):
    lines = [f"Sentence {i}.\tPhrase {i}.\nSentence {i}.\tAutre phrase {i}.\n" for i in range(3000)]
    _write(tmp_path / "tatoeba-eng-fra" / "eng-fra.tsv.gz", "".join(lines).encode())
    splits = {name: load_pairs(f"tatoeba:{name}", root=tmp_path) for name in ("train", "dev", "test")}
    assert sum(len(p) for p in splits.values()) == 6000
    sources = {name: {s for s, _ in pairs} for name, pairs in splits.items()}
    assert not sources["train"] & sources["dev"] and not sources["train"] & sources["test"]
    assert not sources["dev"] & sources["test"]
    srcs, refs = group_references(splits["test"])
    assert srcs and all(len(r) == 2 for r in refs)
    fr_en = load_pairs("tatoeba:test", src_lang="fr", tgt_lang="en", root=tmp_path)
    assert fr_en == [(t, s) for s, t in splits["test"]]


def test_multi30k_reads_the_official_split(tmp_path):
    _write(tmp_path / "multi30k" / "val.en.gz", b"A dog runs.\nTwo men.\n")
    _write(tmp_path / "multi30k" / "val.fr.gz", b"Un chien court.\nDeux hommes.\n")
    assert load_pairs("multi30k:val", root=tmp_path) == [
        ("A dog runs.", "Un chien court."),
        ("Two men.", "Deux hommes."),
    ]
    assert load_pairs("multi30k:val", src_lang="fr", tgt_lang="en", root=tmp_path)[0] == (
        "Un chien court.",
        "A dog runs.",
    )


def test_user_corpora_as_tsv_or_two_files(tmp_path):
    tsv = _write(tmp_path / "p.tsv", b"a\tb\n")
    assert load_pairs(str(tsv)) == [("a", "b")]
    src, tgt = _write(tmp_path / "s.txt", b"x\n"), _write(tmp_path / "t.txt", b"y\n")
    assert load_pairs(f"{src},{tgt}") == [("x", "y")]


@pytest.mark.parametrize("spec", ["tatoeba:train", "multi30k:train"])
def test_missing_corpus_says_where_it_looked(tmp_path, spec):
    with pytest.raises(AttnmtError, match="ATTNMT_DATA") as info:
        load_pairs(spec, root=tmp_path)
    assert str(tmp_path) in str(info.value)


def test_unknown_split_lists_the_choices():
    with pytest.raises(AttnmtError, match="train, val, test_2016_flickr"):
        load_pairs("multi30k:test")


def test_data_directory_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNMT_DATA", str(tmp_path / "env"))
    assert data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert data_dir() == tmp_path / "env"
    monkeypatch.delenv("ATTNMT_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "attnmt"


def test_cleaning_counts_what_it_drops():
    pairs = [
        ("Hello  world", "Bonjour\u00a0le monde"),  # kept, whitespace collapsed
        ("Hello world", "Bonjour le monde"),  # duplicate once collapsed
        ("  ", "Vide"),
        (" ".join(["word"] * 90), "mot"),
        ("one two three four five six seven", "un"),  # ratio 7:1
        ("Cafe\u0301", "Café"),  # NFC
    ]
    kept, report = clean(pairs)
    assert kept == [("Hello world", "Bonjour le monde"), ("Café", "Café")]
    assert (report.read, report.empty, report.too_long, report.bad_ratio, report.duplicates, report.kept) == (
        6, 1, 1, 1, 1, 2,
    )  # fmt: skip


def test_cleaning_chunk_by_chunk_is_cleaning_at_once():
    """What attnmt.prepared does: the rules and hashes per chunk, the duplicates over them all."""
    pairs = [("a b", "c"), ("a  b", "c"), ("", "x"), ("d", "e"), ("a b", "c"), ("x " * 81, "y"), ("d", "e")]
    checked = [check_pairs(pairs[i : i + 3], max_words=80) for i in range(0, len(pairs), 3)]
    keep, report = select_kept(
        np.concatenate([c for _, c, _ in checked]), np.concatenate([h for *_, h in checked])
    )
    kept, whole = clean(pairs)
    assert keep.tolist() == [True, False, False, True, False, False, False]
    assert report == whole and kept == [("a b", "c"), ("d", "e")]


def test_a_spec_is_parsed_once_into_its_parts(tmp_path):
    spec = DataSpec.parse(f"tatoeba:train+long:{tmp_path / 'p.tsv'}@0.25")
    assert [part.kind for part in spec.parts] == ["tatoeba", "share"]
    share = spec.parts[1]
    assert (share.share, share.parts[0].kind, share.parts[0].parts[0].paths) == (
        0.25, "long", (tmp_path / "p.tsv",),
    )  # fmt: skip
    assert DataSpec.parse("a.en,a.fr") == DataSpec(
        "a.en,a.fr", "parallel", paths=(Path("a.en"), Path("a.fr"))
    )
    for read in (load_pairs, iter_pairs, spec_files):  # a spec's mistakes are found before reading
        with pytest.raises(AttnmtError, match="tatoeba:dev2: unknown split"):
            read(f"{tmp_path / 'missing.tsv'}+tatoeba:dev2")


def test_long_sentences_are_consecutive_pairs_joined(tmp_path):
    pairs = [(f"word {i} here .", f"mot {i} ici .") for i in range(200)] + [("word 0 here .", "second ref")]
    joined = join_consecutive(pairs)
    lengths = [len(s.split()) for s, _ in joined]
    assert lengths[:6] == [12, 20, 32, 40, 52, 60]  # 4-word sentences until at least 10, 20, ... 60 words
    assert joined[0] == ("word 0 here . word 1 here . word 2 here .", "mot 0 ici . mot 1 ici . mot 2 ici .")
    (tmp_path / "pairs.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    assert load_pairs(f"long:{tmp_path / 'pairs.tsv'}") == joined


def test_specs_joined_with_plus_give_both_sets_in_order(tmp_path):
    pairs = [(f"word {i} here .", f"mot {i} ici .") for i in range(40)]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    assert load_pairs(f"{tsv}+long:{tsv}") == pairs + join_consecutive(pairs)
    plus = tmp_path / "a+b.tsv"  # a file whose name has a "+" is still that file
    plus.write_text("x\ty\n", encoding="utf-8")
    assert load_pairs(str(plus)) == [("x", "y")]


def test_a_share_of_a_spec_is_a_fixed_hash_picked_subset(tmp_path):
    pairs = [(f"word {i} here .", f"mot {i} ici .") for i in range(3000)]
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    quarter = load_pairs(f"{tsv}@0.25")
    assert len(quarter) == 760 and quarter[:2] == [pairs[0], pairs[3]]  # the same pairs on every machine
    assert quarter == [p for p in pairs if p in set(quarter)]  # in the corpus's order
    assert set(load_pairs(f"{tsv}@0.5")) > set(quarter)  # a larger share keeps the smaller one's pairs
    assert load_pairs(f"{tsv}@1") == pairs
    joined = join_consecutive(pairs)  # a share of long: keeps every length of its cycle, unaliased
    lengths = {len(s.split()) for s, _ in load_pairs(f"{tsv}+long:{tsv}@0.25")[len(pairs) :]}
    assert {len(s.split()) for s, _ in joined} == lengths
    assert spec_files(f"{tsv}@0.25") == [tsv]


def test_a_path_with_an_at_sign_is_still_a_path(tmp_path):
    folder = tmp_path / "me@x"
    folder.mkdir()
    (folder / "s.txt").write_text("a\nb\n", encoding="utf-8")
    (folder / "t.txt").write_text("c\nd\n", encoding="utf-8")
    (folder / "p.tsv").write_text("a\tc\n", encoding="utf-8")
    assert load_pairs(f"{folder / 's.txt'},{folder / 't.txt'}") == [("a", "c"), ("b", "d")]
    assert load_pairs(f"{folder / 'p.tsv'}@1") == [("a", "c")]
    with pytest.raises(AttnmtError, match=r"a@b\.tsv: file not found"):
        load_pairs(str(tmp_path / "a@b.tsv"))


@pytest.mark.parametrize("share", ["0", "1.5", "2"])
def test_a_share_outside_0_to_1_is_refused_naming_the_spec(tmp_path, share):
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(AttnmtError, match=rf"pairs\.tsv@{share}: the share after '@' must be in \(0, 1\]"):
        load_pairs(f"{tsv}@{share}")


def test_streamed_pairs_are_load_pairs_for_every_kind_of_spec(tmp_path):
    lines = [f"Sentence {i}.\tPhrase {i}.\n" for i in range(2000)]
    _write(tmp_path / "tatoeba-eng-fra" / "eng-fra.tsv.gz", "".join(lines).encode())
    _write(tmp_path / "multi30k" / "val.en.gz", b"A dog runs.\nTwo men.\n")
    _write(tmp_path / "multi30k" / "val.fr.gz", b"Un chien court.\nDeux hommes.\n")
    tsv = _write(tmp_path / "p.tsv.gz", b"a b\tc d\tattribution\ne\tf\n")
    src, tgt = _write(tmp_path / "s.txt", b"x\ny\n"), _write(tmp_path / "t.txt", b"z\nw\n")
    specs = ["toy", "tatoeba:dev", "tatoeba:train", "multi30k:val", str(tsv), f"{src},{tgt}",
             "long:tatoeba:test", f"tatoeba:test+{tsv}", "tatoeba:train@0.3", f"tatoeba:test+long:{tsv}@0.5"]  # fmt: skip
    for spec in specs:
        for langs in ({}, {"src_lang": "fr", "tgt_lang": "en"}):
            assert list(iter_pairs(spec, root=tmp_path, **langs)) == load_pairs(spec, root=tmp_path, **langs)
    assert spec_files(f"tatoeba:test+{tsv}", root=tmp_path) == [
        tmp_path / "tatoeba-eng-fra" / "eng-fra.tsv.gz",
        tsv,
    ]


@pytest.mark.parametrize(
    ("src", "tgt", "message"),
    [
        (b"one\ntwo\nthree\n", b"un\ndeux\n", r"a\.en:3: has 3 lines but .*a\.fr has 2"),
        (b"one\n", b"un\ndeux\ntrois\n", r"a\.fr:2: has 3 lines but .*a\.en has 1"),
        (b"one\n\n", b"un\ndeux\n", "a.en:2"),
        (b"one\ntwo\n", b"un\n \n", "a.fr:2"),
    ],
)
def test_streamed_parallel_files_raise_what_read_parallel_raises(tmp_path, src, tgt, message):
    paths = _write(tmp_path / "a.en", src), _write(tmp_path / "a.fr", tgt)
    for read in (read_parallel, lambda *p: list(iter_parallel(*p))):
        with pytest.raises(AttnmtError, match=message):
            read(*paths)
