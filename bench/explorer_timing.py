"""Click to correct, timed in the browser: `attnmt serve` and the explorer page in headless Chromium.

    python bench/explorer_timing.py MODEL_DIR [--clicks 20] [--sentence "..."] [--beam 5]
                                    [--screenshot docs/explorer.png --correct veut=voulait]

The page translates one sentence; then, ``--clicks`` times, a word is clicked (each word in turn, the
last, ⏎, left out), the likeliest alternative that is not the word itself is picked, and the clock
(``performance.now()`` in the page) stops once the new translation, its words and its heatmap are drawn
and painted: one round trip of POST /translate with a prefix, top_k and attention, and the drawing.
Undo (not timed) returns to the first translation before the next click.  Prints p50 and p90 in ms.
``--screenshot`` first makes the correction ``--correct WORD=NEW`` (the word WORD of the translation
replaced by the alternative NEW) and keeps a picture of the corrected translation with its attention,
the row of the new word lit (the README's picture, docs/explorer.png).
Needs Chromium (Debian's ``chromium``) and the ``playwright`` Python package.
"""

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time

import httpx

# One click to correct, run inside the page: the word, then the first alternative that is another word;
# resolves with the milliseconds until the panel has drawn the new state and the browser has painted it.
CLICK_TO_CORRECT = """async (position) => {
  const panel = document.getElementById("panel-0");
  const version = Number(panel.dataset.version);
  const start = performance.now();
  panel.querySelectorAll(".word")[position].click();
  const choice = [...panel.querySelectorAll(".choice:not([disabled])")]
    .find((c) => c.getAttribute("aria-selected") !== "true");
  if (!choice) { panel.querySelector(".word").click(); return null; }
  choice.click();
  await new Promise((resolve) => {
    const drawn = () => Number(panel.dataset.version) > version && !panel.hasAttribute("aria-busy");
    const check = () => (drawn() ? resolve() : requestAnimationFrame(check));
    check();
  });
  await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  return performance.now() - start;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "attnmt.cli", "serve", model_dir, "--port", str(port)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.terminate()
    sys.exit(f"the server did not start: {process.stderr.read1().decode()}")


def picture(page, correct: str, path: str) -> None:
    """Replace the word WORD of the translation by its alternative NEW (``correct`` = "WORD=NEW") and
    keep a picture of the panel, the new word's attention row lit."""
    word, new = correct.split("=", 1)
    panel = page.locator("#panel-0")
    shown = panel.locator(".word").all_inner_texts()
    if word not in shown:
        sys.exit(f"--correct: {word!r} is not a word of the translation {shown}")
    position = shown.index(word)
    panel.locator(".word").nth(position).click()
    tokens = panel.locator(".choice").evaluate_all(
        "es => es.map((e) => e.dataset.token.replace(/^\u2581/, ''))"
    )
    if new not in tokens:
        sys.exit(f"--correct: {new!r} is not among the alternatives to {word!r}: {tokens}")
    version = panel.get_attribute("data-version")
    panel.locator(".choice").nth(tokens.index(new)).click()
    page.wait_for_selector(f'#panel-0:not([data-version="{version}"]):not([aria-busy])')
    panel.locator(".row-tokens .token").nth(position).hover()
    panel.screenshot(path=path)


def undo(page) -> None:
    page.click("#panel-0 .undo")
    page.wait_for_selector("#panel-0 .undo:disabled")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--sentence", default="She didn't want to go to school today.")
    parser.add_argument("--beam", choices=["1", "5"], default="5")
    parser.add_argument("--screenshot", help="where to keep a PNG of the corrected translation")
    parser.add_argument(
        "--correct", default="veut=voulait", metavar="WORD=NEW", help="the correction pictured"
    )
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no Chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    process, url = start_server(args.model_dir)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            outside = []
            page.on("request", lambda r: r.url.startswith(url) or outside.append(r.url))
            page.goto(url)
            page.wait_for_selector("#model option", state="attached")
            page.select_option("#beam", args.beam)
            page.fill("#source", args.sentence)
            page.click("#translate")
            page.wait_for_selector("#panel-0:not([aria-busy]) .heatmap .cell")
            first = page.inner_text("#panel-0 .text")
            words = page.locator("#panel-0 .word").count()
            if args.screenshot:
                picture(page, args.correct, args.screenshot)
                print(f"{first!r} → {page.inner_text('#panel-0 .text')!r}: {args.screenshot}")
                undo(page)
            timings: list[float] = []
            for click in range(args.clicks * 3):  # words with no other pickable alternative are skipped
                if len(timings) == args.clicks:
                    break
                ms = page.evaluate(CLICK_TO_CORRECT, click % (words - 1))
                if ms is None:
                    continue
                timings.append(ms)
                undo(page)
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    if outside:
        sys.exit(f"the page fetched from outside 127.0.0.1: {outside}")
    print(f"{args.model_dir}: {len(timings)} clicks on {words - 1} words, beam {args.beam}, "
          f"{cpu_name()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")  # fmt: skip
    print(f"click to correct: p50 {statistics.median(timings):.0f} ms, p90 {percentile(timings, 90):.0f} ms")


if __name__ == "__main__":
    main()
