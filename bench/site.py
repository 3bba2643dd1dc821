"""The page of `attnmt export --to web` in headless Chromium: its folder's size, the time from opening it
to its first translation on screen, its speed translating a test set one sentence at a time, and how
often it writes exactly the tokens `attnmt translate` writes with the same export (ONNX Runtime in
Python), with the BLEU of both.

    attnmt export runs/gru-12min --to web --quantization int8 -o runs/gru-12min-site
    ATTNMT_DATA=../shared/data python bench/site.py runs/gru-12min-site [--data tatoeba:test] [--beams 1 5]

The folder is served by `python -m http.server`, as its README says a user may; every request outside
it is counted (there should be none).
"""

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from attnmt.corpora import group_references, load_pairs
from attnmt.engine import DecodeOptions
from attnmt.metrics import corpus_scores
from attnmt.modeldir import load_model

MARKS = {  # the page's performance marks on the way to its first translation (attnmt/resources/site/)
    "script": "its script running",
    "sessions": "WebAssembly compiled and both graphs ready",
    "loaded": "the whole model loaded",
}
TRANSLATE_ALL = """async ([sentences, beam]) => {
  const started = performance.now(), out = [];
  for (const s of sentences) out.push((await window.attnmt.translate(s, beam)).tokens);
  return { ms: performance.now() - started, tokens: out };
}"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("site", type=Path)
    parser.add_argument("--data", default="tatoeba:test")
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--loads", type=int, default=5, help="page loads timed (each with an empty cache)")
    parser.add_argument("--screenshot", type=Path, help="save the page translating --example here (PNG)")
    parser.add_argument("--example", default="The children I met yesterday were playing in the park.")
    args = parser.parse_args()
    sources, references = group_references(load_pairs(args.data))
    size = sum(p.stat().st_size for p in args.site.iterdir())
    engine = load_model(args.site)
    words = sum(len(s.split()) for s in sources)
    with sync_playwright() as p, _served(args.site) as url:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        print(f"{args.site}: {size:,} bytes; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs; Chromium {browser.version}")  # fmt: skip
        first, loaded, again, outside = [], [], [], []
        marks: dict[str, list[float]] = {name: [] for name in MARKS}
        for _ in range(args.loads):
            context = browser.new_context()  # an empty cache: a first visit
            for visit in (first, again):  # then the same visitor coming back (the browser's caches kept)
                page = context.new_page()
                page.on("request", lambda r: r.url.startswith(url) or outside.append(r.url))
                page.goto(url)
                page.wait_for_function(
                    "document.body.dataset.firstTranslationMs || document.body.dataset.failed"
                )
                visit.append(float(page.evaluate("document.body.dataset.firstTranslationMs")))
                if visit is first:
                    loaded.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
                    for name, values in marks.items():
                        values.append(
                            page.evaluate(f"performance.getEntriesByName('attnmt:{name}')[0].startTime")
                        )
                page.close()
            context.close()
        print(f"first translation on screen, ms after navigation ({args.loads} loads): first visit (empty "
              f"cache) median {_median(first):.0f}, min {min(first):.0f}, max {max(first):.0f}, the load event "
              f"ending at a median {_median(loaded):.0f}; coming back (cache kept) median {_median(again):.0f}, "
              f"min {min(again):.0f}, max {max(again):.0f}")  # fmt: skip
        print("first visit, median ms after navigation: " + ", ".join(
            f"{MARKS[name]} {_median(values):.0f}" for name, values in marks.items()
        ) + f", first translation on screen {_median(first):.0f}")  # fmt: skip
        page = browser.new_page()
        page.on("request", lambda r: r.url.startswith(url) or outside.append(r.url))
        page.goto(url)
        page.wait_for_function("document.body.dataset.firstTranslationMs")
        if args.screenshot:
            page.set_viewport_size({"width": 1000, "height": 760})
            page.fill("#source", args.example)
            page.select_option("#beam", "5")
            page.click("#translate")
            page.wait_for_function("document.querySelector('#result').dataset.version === '2'")
            page.screenshot(path=args.screenshot, full_page=True)
        print(f"{args.data}: {len(sources):,} sentences, {words:,} source words, one at a time")
        print(
            "| beam | page words/s | page sentences/s | tokens as `attnmt translate` | BLEU page | BLEU attnmt translate |"
        )
        print("|---|---|---|---|---|---|")
        for beam in args.beams:
            result = page.evaluate(TRANSLATE_ALL, [sources, beam])
            seconds = result["ms"] / 1000
            options = DecodeOptions(beam_size=beam)
            theirs = [engine.translate([s], options)[0] for s in sources]  # one at a time, as the page
            same = sum(t == o.tokens for t, o in zip(result["tokens"], theirs, strict=True))
            texts = [engine.tgt_tokenizer.detokenize(t[:-1]) for t in result["tokens"]]
            bleu = corpus_scores(texts, references).bleu
            bleu_theirs = corpus_scores([t.text for t in theirs], references).bleu
            print(f"| {beam} | {words / seconds:,.0f} | {len(sources) / seconds:,.1f} | "
                  f"{same:,} of {len(sources):,} ({100 * same / len(sources):.1f} %) | {bleu:.2f} | {bleu_theirs:.2f} |")  # fmt: skip
        browser.close()
    print(f"requests outside the folder: {len(outside)}")


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


class _served:
    """``python -m http.server`` serving ``directory`` on a free port of 127.0.0.1."""

    def __init__(self, directory: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.directory = directory

    def __enter__(self) -> str:
        command = [
            sys.executable,
            "-m",
            "http.server",
            str(self.port),
            "-b",
            "127.0.0.1",
            "-d",
            str(self.directory),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait()


if __name__ == "__main__":
    main()
