"""``attnmt export --to web``: a static folder whose page translates in the browser, offline.

The folder is an ONNX export (``attnmt translate SITE`` runs it) and beside it, flat:

    index.html, site.mjs       the page and its script, which draws the attention as the explorer does
    translator.mjs             the graphs in onnxruntime-web (WebAssembly), searched by search.mjs
    search.mjs, tokenizers.mjs  attnmt's greedy and beam search, SentencePiece BPE (read from the
                               export's own src.spm / tgt.spm) and word tokenizers, written again in
                               JavaScript to give exactly attnmt's tokens
    heatmap.js, style.css      the explorer's heatmap and style (attnmt/resources/web)
    page.json                  what the page needs to know of the model
    ort.wasm.min.mjs, ort-wasm-simd-threaded.{mjs,wasm}, onnxruntime-web-LICENSE.txt
                               onnxruntime-web, from npm at build time (``make site-vendor``)

Nothing is fetched from anywhere but the folder.  Any static file server serves it; ``file://`` does
not (browsers refuse modules and WebAssembly fetched from files), and the page says so.
"""

import json
import shutil
from pathlib import Path

from attnmt.config import Config
from attnmt.errors import AttnmtError
from attnmt.translator import Translator

RESOURCES = Path(__file__).parent / "resources"
PAGE = RESOURCES / "site"
VENDOR = PAGE / "vendor"  # what `make site-vendor` copies out of npm's onnxruntime-web
VENDORED = {  # the file in VENDOR → its name in the site
    "ort.wasm.min.mjs": "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs": "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
    "LICENSE": "onnxruntime-web-LICENSE.txt",
}
PAGE_FILES = ("index.html", "site.mjs", "translator.mjs", "search.mjs", "tokenizers.mjs")
SHARED_FILES = ("heatmap.js", "style.css")  # the explorer's, in attnmt/resources/web
EXAMPLE = "We are happy."


def check_vendored() -> None:
    """That onnxruntime-web has been copied out of npm, or an error saying how."""
    missing = [name for name in VENDORED if not (VENDOR / name).is_file()]
    if missing:
        raise AttnmtError(
            f"{VENDOR / missing[0]}: missing; onnxruntime-web comes from npm at build time: run "
            "`make site-vendor` in attnmt's source tree (needs npm)"
        )


def check_tokenizer(config: Config) -> None:
    """That the page can tokenize as the model does: SentencePiece BPE or words, not unigram."""
    if config.data.tokenizer == "unigram":
        raise AttnmtError(
            "data.tokenizer: unigram; the page's tokenizers speak SentencePiece BPE and words (train with bpe)"
        )


def write_site(directory: Path, translator: Translator) -> None:
    """The page's files in ``directory``, beside the graphs of ``translator``'s model."""
    data, model = translator.config.data, translator.config.model
    for name in PAGE_FILES:
        shutil.copyfile(PAGE / name, directory / name)
    for name in SHARED_FILES:
        shutil.copyfile(RESOURCES / "web" / name, directory / name)
    for source, name in VENDORED.items():
        shutil.copyfile(VENDOR / source, directory / name)
    page = {
        "architecture": model.architecture,
        "attention": translator.has_attention,
        "tokenizer": data.tokenizer,
        "src_lang": data.src_lang,
        "tgt_lang": data.tgt_lang,
        "example": EXAMPLE if data.src_lang == "en" else "",
        # one vocabulary (and SentencePiece model) written for both sides: the page reads the source's
        "joint_vocabulary": data.joint_vocab,
    }
    (directory / "page.json").write_text(json.dumps(page, indent=1), encoding="utf-8")
