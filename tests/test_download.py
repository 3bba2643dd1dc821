"""`attnmt download` against a local HTTP server on 127.0.0.1: nothing here touches the network."""

import functools
import gzip
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from attnmt import download as dl
from attnmt.cli import main
from attnmt.corpora import load_pairs

TATOEBA_LINES = [
    f"Sentence number {i}.\tPhrase numéro {i}.\tCC-BY 2.0 (France) Attribution: tatoeba.org"
    for i in range(60)
]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www over HTTP on a free loopback port; yields (directory, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(www))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def _tatoeba_zip(www: Path) -> str:
    with zipfile.ZipFile(www / "fra-eng.zip", "w") as z:
        z.writestr("fra.txt", "\n".join(TATOEBA_LINES) + "\n")
        z.writestr("_about.txt", "about")
    return hashlib.sha256((www / "fra-eng.zip").read_bytes()).hexdigest()


def _multi30k_files(www: Path) -> dict[str, str]:
    digests = {}
    for name in dl.MULTI30K:
        lang = name.split(".")[-2]
        (www / name).write_bytes(gzip.compress("".join(f"{lang} line {i}\n" for i in range(5)).encode()))
        digests[name] = hashlib.sha256((www / name).read_bytes()).hexdigest()
    return digests


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_tatoeba_downloads_unpacks_and_reads(server, tmp_path, capsys):
    www, url = server
    digest = _tatoeba_zip(www)
    data = tmp_path / "data"
    assert main(["download", "tatoeba", "--data-dir", str(data), "--mirror", url, "--sha256", digest]) == 0
    assert _leftovers(data) == ["tatoeba-eng-fra"]
    directory = data / "tatoeba-eng-fra"
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "SHA256SUMS", "eng-fra.tsv.gz"]
    assert (directory / "SHA256SUMS").read_text().split() == [digest, "fra-eng.zip"]
    splits = [load_pairs(f"tatoeba:{s}", root=data) for s in ("train", "dev", "test")]
    assert sum(len(s) for s in splits) == len(TATOEBA_LINES)
    assert ("Sentence number 7.", "Phrase numéro 7.") in [p for s in splits for p in s]
    capsys.readouterr()
    assert main(["download", "tatoeba", "--data-dir", str(data), "--mirror", url]) == 0  # a second time
    assert "already in" in capsys.readouterr().err


def test_a_checksum_mismatch_leaves_nothing_behind(server, tmp_path, capsys):
    www, url = server
    _tatoeba_zip(www)
    data = tmp_path / "data"
    assert main(["download", "tatoeba", "--data-dir", str(data), "--mirror", url, "--sha256", "0" * 64]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert _leftovers(data) == []


def test_multi30k_checks_its_pinned_checksums(server, tmp_path, capsys):
    """The test server's small files are not the real Multi30k: the pinned SHA-256s reject them."""
    www, url = server
    _multi30k_files(www)
    data = tmp_path / "data"
    assert main(["download", "multi30k", "--data-dir", str(data), "--mirror", url]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("attnmt: error: ") and "checksum mismatch" in last
    assert _leftovers(data) == []


def test_multi30k_downloads_with_matching_checksums(server, tmp_path, monkeypatch):
    www, url = server
    monkeypatch.setattr(dl, "MULTI30K", _multi30k_files(www))
    target = dl.download("multi30k", tmp_path / "data", mirror=url, progress=False)
    assert sorted(p.name for p in target.iterdir()) == sorted([*dl.MULTI30K, "README.md"])
    pairs = load_pairs("multi30k:val", root=tmp_path / "data")
    assert pairs[2] == ("en line 2", "fr line 2")


def test_a_missing_file_is_a_clear_error(server, tmp_path, capsys):
    _, url = server  # serves nothing
    data = tmp_path / "data"
    assert main(["download", "tatoeba", "--data-dir", str(data), "--mirror", url]) == 1
    err = capsys.readouterr().err
    assert "fra-eng.zip: download failed" in err and "404" in err
    assert _leftovers(data) == []


def test_an_archive_without_the_corpus_is_rejected(server, tmp_path, capsys):
    www, url = server
    with zipfile.ZipFile(www / "fra-eng.zip", "w") as z:
        z.writestr("deu.txt", "Hallo\tBonjour\n")
    assert main(["download", "tatoeba", "--data-dir", str(tmp_path / "d"), "--mirror", url]) == 1
    assert "no fra.txt" in capsys.readouterr().err
    assert _leftovers(tmp_path / "d") == []
