"""``attnmt download``: fetch a public corpus into the data directory, in the layout the readers expect.

    DATA_DIR/multi30k/{train,val,test_2016_flickr}.{en,fr}.gz     Multi30k task 1, raw
    DATA_DIR/tatoeba-eng-fra/eng-fra.tsv.gz                       manythings.org fra-eng.zip, fra.txt

Everything is fetched into a hidden temporary directory beside the target and renamed into place
only once every file is complete and verified: an interrupted or failed download leaves nothing
half-written.  Multi30k's files are pinned by SHA-256 (their MD5s match those torchtext publishes).
manythings.org rebuilds ``fra-eng.zip`` as Tatoeba grows, so no checksum can be pinned for it: its
SHA-256 is printed and saved in ``SHA256SUMS``, and ``--sha256`` checks it against a known value.
"""

import gzip
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from attnmt import __version__
from attnmt.errors import AttnmtError
from attnmt.files import sha256

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
TATOEBA_URL = "https://www.manythings.org/anki/fra-eng.zip"


@dataclass(frozen=True)
class Remote:
    url: str
    sha256: str | None  # None: the publisher changes the file; checked only when the user gives one


MULTI30K = {
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}
CORPORA = ("tatoeba", "multi30k")
DIRECTORIES = {"tatoeba": "tatoeba-eng-fra", "multi30k": "multi30k"}

TATOEBA_README = """# Tatoeba English-French sentence pairs

`eng-fra.tsv.gz`: `English<TAB>French<TAB>attribution`, UTF-8, one pair per line; several French
translations may share one English sentence.  Downloaded by `attnmt download tatoeba` from {url}
(`fra.txt`, gzipped as is; SHA-256 of the archive in SHA256SUMS).

Source: the Tatoeba Project (tatoeba.org), as exported by manythings.org/anki, licensed CC-BY 2.0
France.  Attribution: the Tatoeba Project and its contributors.
"""
MULTI30K_README = """# Multi30k task 1, English-French (raw, untokenized)

`train` (29,000), `val` (1,014) and `test_2016_flickr` (1,000) sentence pairs; line i of `.en` and
`.fr` are translations of each other.  Downloaded by `attnmt download multi30k` from {url}

Source: the Multi30k dataset (github.com/multi30k/dataset, data/task1/raw).  Cite Elliott et al. 2016
and Elliott et al. 2017.
"""


def download(
    corpus: str,
    root: Path,
    *,
    mirror: str | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch ``corpus`` into ``root`` and return its directory; one already there is left as it is.

    ``mirror`` replaces the publisher's URL (a directory holding the same file names), e.g. a local
    copy; the pinned checksums still apply.
    """
    if corpus not in CORPORA:
        raise AttnmtError(f"{corpus!r}: unknown corpus; choose one of {', '.join(CORPORA)}")
    target = Path(root) / DIRECTORIES[corpus]
    if target.exists():
        return target
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}.", suffix=".tmp"))
    except OSError as e:
        raise AttnmtError(f"{root}: cannot write there ({e.strerror})") from None
    try:
        if corpus == "multi30k":
            base = mirror.rstrip("/") + "/" if mirror else MULTI30K_URL
            for name, digest in MULTI30K.items():
                fetch(Remote(base + name, digest), tmp / name, progress)
            (tmp / "README.md").write_text(MULTI30K_README.format(url=base), encoding="utf-8")
        else:
            url = mirror.rstrip("/") + "/fra-eng.zip" if mirror else TATOEBA_URL
            archive = tmp / "fra-eng.zip"
            fetch(Remote(url, expected_sha256), archive, progress)
            _unpack_tatoeba(archive, tmp / "eng-fra.tsv.gz")
            (tmp / "SHA256SUMS").write_text(f"{sha256(archive)}  fra-eng.zip\n", encoding="utf-8")
            archive.unlink()
            (tmp / "README.md").write_text(TATOEBA_README.format(url=url), encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch(remote: Remote, path: Path, progress: bool = True) -> None:
    """Download ``remote`` to ``path`` with a progress bar and check its SHA-256 (when known)."""
    request = urllib.request.Request(remote.url, headers={"User-Agent": f"attnmt/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response, open(path, "wb") as out:
            size = response.headers.get("Content-Length")
            with tqdm(
                total=int(size) if size else None, unit="B", unit_scale=True, desc=path.name,
                disable=not progress, leave=False,
            ) as bar:  # fmt: skip
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as e:
        raise AttnmtError(f"{remote.url}: download failed (HTTP {e.code} {e.reason})") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise AttnmtError(f"{remote.url}: download failed ({reason})") from None
    if remote.sha256 is not None and (actual := sha256(path)) != remote.sha256.lower():
        raise AttnmtError(f"{remote.url}: checksum mismatch (SHA-256 {actual}, expected {remote.sha256})")


def _unpack_tatoeba(archive: Path, output: Path) -> None:
    """``fra.txt`` from manythings' zip, gzipped as it is."""
    try:
        with zipfile.ZipFile(archive) as z, z.open("fra.txt") as src, gzip.open(output, "wb") as out:
            shutil.copyfileobj(src, out)
    except KeyError:
        raise AttnmtError(f"{archive.name}: no fra.txt in the archive") from None
    except zipfile.BadZipFile:
        raise AttnmtError(f"{archive.name}: not a zip archive") from None
