"""``attnmt export --to web``: a static folder whose page translates in the browser.  The page's
tokenizers (run by Node.js) give attnmt's tokens; the folder is an ONNX export the command line runs;
in Chromium the page translates to exactly the tokens attnmt gives for the same export, draws a heatmap
row per target token, and asks for nothing outside its folder."""

import functools
import http.server
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from attnmt.cli import main
from attnmt.config import config_from_dict
from attnmt.corpora import toy_pairs
from attnmt.engine import DecodeOptions
from attnmt.modeldir import load_model, save_model
from attnmt.site import PAGE, VENDOR
from attnmt.tokenization import SubwordTokenizer, WordTokenizer
from attnmt.training import train

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'attnmt[onnx]')")

NODE = shutil.which("node")
VENDORED = (VENDOR / "ort-wasm-simd-threaded.wasm").is_file()
SENTENCES = [src for src, _ in toy_pairs()[::9]] + [
    "We write long letters to our friends.",
    "Where is the zebra?",
]
ODD_TEXTS = [
    "  two  spaces ", "emoji 😀 ok", "Ça va ? « Oui » l'homme qu'il jusqu'à 3,5 km — aujourd'hui peut-être",
    "e\u0301cole", "日本語", "", " ", "x", '"Quoted," he said (twice).', "a\x1fb\x85c", "\ufeffHello",
]  # fmt: skip
PIECES = [  # what a model may write: spaces as bytes, broken UTF-8, a lone ▁, a byte-order mark
    ["<0x20>", "▁a"], ["<0x20>"], ["▁a", "<0xE2>", "<0x96>", "<0x81>"], ["<0xE2>", "<0x82>", "▁a"], ["▁", "▁a"],
    ["<0xEF>", "<0xBB>", "<0xBF>", "▁a"], ["▁a", "<0xF0>", "<0x9F>"], ["<0xC0>", "<0xAF>"],
]  # fmt: skip


@pytest.mark.skipif(NODE is None, reason="no Node.js: the page's tokenizers are checked with node")
def test_the_pages_tokenizers_give_attnmts_tokens_and_text(tmp_path):
    texts = [t for pair in toy_pairs() for t in pair] + ODD_TEXTS
    bpe = SubwordTokenizer.train(texts[: -len(ODD_TEXTS)], vocab_size=600, model_type="bpe")
    bpe.save(tmp_path / "bpe.spm")
    script = f"""
        import {{ SentencePieceBPE, WordTokenizer }} from {json.dumps((PAGE / "tokenizers.mjs").as_uri())};
        import fs from "fs";
        const [texts, pieces] = JSON.parse(fs.readFileSync(0, "utf8"));
        const tokenizers = {{
          bpe: new SentencePieceBPE(new Uint8Array(fs.readFileSync({json.dumps(str(tmp_path / "bpe.spm"))}))),
          word: new WordTokenizer("fr"),
        }};
        const out = {{}};
        for (const [kind, t] of Object.entries(tokenizers)) {{
          const tokens = texts.map((text) => t.tokenize(text));
          out[kind] = {{ tokens, texts: tokens.map((ts) => t.detokenize(ts)) }};
        }}
        out.pieces = pieces.map((ps) => tokenizers.bpe.detokenize(ps));
        console.log(JSON.stringify(out));
    """
    (tmp_path / "check.mjs").write_text(script)
    run = subprocess.run(
        [NODE, tmp_path / "check.mjs"], input=json.dumps([texts, PIECES]), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    for kind, tokenizer in (("bpe", bpe), ("word", WordTokenizer("fr"))):
        for text, tokens, joined in zip(texts, got[kind]["tokens"], got[kind]["texts"], strict=True):
            assert tokens == tokenizer.tokenize(text), (kind, text)
            assert joined == tokenizer.detokenize(tokenizer.tokenize(text)), (kind, text)
    assert any(t.startswith("<0x") for ts in got["bpe"]["tokens"] for t in ts)  # byte fallback was met
    assert got["pieces"] == [bpe.detokenize(pieces) for pieces in PIECES]


def _tiny(directory: Path, **model) -> Path:
    """A GRU trained a few seconds on the toy set, with ``model`` settings (and data.tokenizer,
    data.joint_vocab)."""
    data = {key: model.pop(key) for key in ("tokenizer", "joint_vocab") if key in model}
    if data.get("tokenizer") == "bpe":
        data["vocab_size"] = 600
    config = config_from_dict(
        {"data": data, "model": {"embed_size": 32, "hidden_size": 32, "dropout": 0.0, **model},
         "train": {"epochs": 6, "precision": "fp32"}}
    )  # fmt: skip
    save_model(train(config, progress=False), directory)
    return directory


@pytest.fixture(scope="module")
def sites(toy_gru, toy_transformer, tmp_path_factory) -> dict[str, Path]:
    """Exported --to web by the command line: the toy GRU and Transformer (word tokens), a GRU on
    SentencePiece pieces of a joint vocabulary, a GRU without attention, and the toy GRU and
    Transformer with int8 weights."""
    if not VENDORED:
        pytest.skip("onnxruntime-web is not vendored: `make site-vendor` (needs npm)")
    root = tmp_path_factory.mktemp("sites")
    models = {
        "gru": toy_gru, "transformer": toy_transformer, "gru-int8": toy_gru, "transformer-int8": toy_transformer,
        "pieces": _tiny(root / "pieces-model", tokenizer="bpe", joint_vocab=True),
        "baseline": _tiny(root / "baseline-model", attention="none"),
    }  # fmt: skip
    sites = {}
    for name, model in models.items():
        quantization = "int8" if name.endswith("int8") else "float32"
        sites[name] = root / name
        argv = ["export", str(model), "--to", "web", "--quantization", quantization, "-o", str(sites[name])]
        assert main(argv) == 0
    return sites


@pytest.mark.slow  # trained toy models
def test_the_site_is_an_onnx_export_whose_every_file_is_checked(sites, capsys):
    site = sites["pieces"]
    header = yaml.safe_load((site / "config.yaml").read_text())
    files = {p.name for p in site.iterdir()} - {"config.yaml"}
    assert set(header["files"]) == files  # the page, its script, onnxruntime-web: every file checksummed
    assert {"index.html", "site.mjs", "ort-wasm-simd-threaded.wasm", "onnxruntime-web-LICENSE.txt"} <= files
    page = json.loads((site / "page.json").read_text())
    assert page["tokenizer"] == "bpe" and page["joint_vocabulary"]  # one vocabulary: the page reads it once
    assert not json.loads((sites["gru"] / "page.json").read_text())["joint_vocabulary"]
    assert main(["translate", str(site), "--text", SENTENCES[0]]) == 0
    assert capsys.readouterr().out.strip() == load_model(site).translate([SENTENCES[0]])[0].text
    (site / "site.mjs").write_text((site / "site.mjs").read_text() + "\n// changed\n")
    try:
        assert main(["translate", str(site), "--text", SENTENCES[0]]) == 1
        err = capsys.readouterr().err
        assert "site.mjs: checksum does not match" in err and len(err.strip().splitlines()) == 1
    finally:
        (site / "site.mjs").write_text((site / "site.mjs").read_text().removesuffix("\n// changed\n"))


@contextmanager
def served(directory: Path) -> Iterator[str]:
    """``directory`` on a static file server on 127.0.0.1: its URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=directory))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_site(browser, url: str):
    """The page, once it has shown its first translation, and the list every request outside ``url``
    lands in."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    outside = []
    page.on("request", lambda r: r.url.startswith(url) or outside.append(r.url))
    page.goto(url)
    page.wait_for_function("document.body.dataset.firstTranslationMs || document.body.dataset.failed")
    assert not page.evaluate("document.body.dataset.failed"), page.inner_text("#status")
    return page, outside


@pytest.mark.slow  # trained toy models, Chromium
@pytest.mark.parametrize("name", ["gru", "transformer", "pieces", "baseline", "gru-int8", "transformer-int8"])
def test_the_page_translates_as_attnmt_does_with_the_same_export(browser, sites, name):
    site = sites[name]
    engine = load_model(site)
    # WebAssembly's float kernels round a little differently. float32: every weight within 1e-4. int8
    # re-quantizes what they give, so a last-bit difference can move a value a whole quantization step
    # here and there: the weights within 1e-3 on average, the score within 0.005 a token (0.067 over
    # a 29-token toy output, measured on an AVX-512 VNNI CPU; 0.05 in all failed there)
    int8 = name.endswith("int8")
    with served(site) as url:
        page, outside = open_site(browser, url)
        for beam in (1, 5):
            for sentence in SENTENCES:  # one at a time, as the page: no padding in either
                translation = engine.translate([sentence], DecodeOptions(beam_size=beam))[0]
                got = page.evaluate("([s, b]) => window.attnmt.translate(s, b)", [sentence, beam])
                assert got["tokens"] == translation.tokens and got["srcTokens"] == translation.src_tokens
                assert got["text"] == translation.text
                noise = 0.005 * len(translation.tokens)  # int8: a quantization step here and there, per token
                assert got["score"] == pytest.approx(translation.score, abs=noise if int8 else 1e-3)
                if translation.attention is None:
                    assert got["attention"] is None
                else:
                    difference = np.abs(np.array(got["attention"]) - translation.attention)
                    assert difference.mean() < 1e-3 if int8 else difference.max() < 1e-4
        page.fill("#source", SENTENCES[1])
        page.select_option("#beam", "5")
        version = page.get_attribute("#result", "data-version")
        page.click("#translate")
        page.wait_for_function(f"document.querySelector('#result').dataset.version !== '{version}'")
        translation = engine.translate([SENTENCES[1]])[0]
        assert page.inner_text("#translation") == translation.text
        rows = page.locator(".heatmap .heading.row").count()
        if engine.has_attention:  # a row per target token, <eos> included; a column per source token
            assert rows == len(translation.tokens)
            assert page.locator(".heatmap .heading.column").count() == len(translation.src_tokens)
        else:
            assert rows == 0 and page.is_visible(".no-attention")
        assert outside == []
        asked = page.evaluate("performance.getEntriesByType('resource').map((r) => r.name.split('/').pop())")
        joint = json.loads((site / "page.json").read_text())["joint_vocabulary"]
        assert ("tgt_vocab.json" in asked) != joint and "src_vocab.json" in asked
        page.close()


@pytest.mark.slow  # a trained toy model, Chromium
def test_opened_from_a_file_the_page_says_how_to_serve_it(browser, sites):
    page = browser.new_page()
    page.goto((sites["gru"] / "index.html").as_uri())
    assert "serve its folder" in page.inner_text("#status")
    page.close()


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> dict[str, Path]:
    """Models trained one step: a word GRU and one on SentencePiece unigram pieces."""
    root = tmp_path_factory.mktemp("untrained")
    models = {}
    for name, data in (("word", {}), ("unigram", {"tokenizer": "unigram", "vocab_size": 600})):
        config = config_from_dict(
            {"data": data, "model": {"embed_size": 8, "hidden_size": 16}, "train": {"max_steps": 1}}
        )
        models[name] = root / name
        save_model(train(config, progress=False), models[name])
    return models


def test_what_the_page_cannot_run_is_refused_in_one_line(untrained, tmp_path, capsys, monkeypatch):
    if VENDORED:
        argv = ["export", str(untrained["unigram"]), "--to", "web", "-o", str(tmp_path / "u")]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "data.tokenizer: unigram" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr("attnmt.site.VENDOR", tmp_path / "nothing")
    assert main(["export", str(untrained["word"]), "--to", "web", "-o", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "make site-vendor" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "u").exists() and not (tmp_path / "w").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
