"""The web page end to end: `attnmt serve` in a subprocess, the page in a real headless Chromium."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from attnmt.cli import main

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = os.environ.get("ATTNMT_SCREENSHOT")  # where to keep the picture (the README's comes from here)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A toy GRU and a toy Transformer served on 127.0.0.1; yields the base URL."""
    root = tmp_path_factory.mktemp("web")
    tiny = ["--set", "train.epochs=3", "--quiet"]
    assert main(["train", "--model-dir", str(root / "gru"), "--set", "model.hidden_size=32", *tiny]) == 0
    transformer = ["--set", "model.architecture=transformer", "--set", "model.hidden_size=32"]
    assert main(["train", "--model-dir", str(root / "transformer"), *transformer, *tiny]) == 0
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "attnmt.cli", "serve", str(root / "gru"), str(root / "transformer"),
         "--port", str(port)],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"the server did not start: {process.stderr.read1().decode()}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium: `apt-get install chromium` (make test does so where it can)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_type_translate_see_the_heatmap_and_hover(server, browser, tmp_path, model):
    page = browser.new_page(viewport={"width": 1000, "height": 800})
    requests_outside = []
    page.on("request", lambda r: r.url.startswith(server) or requests_outside.append(r.url))
    page.goto(server)
    page.select_option("#model", model)
    page.fill("#source", "She loves cats.")
    page.click("#translate")
    page.wait_for_selector("#heatmap .cell")
    translation = page.inner_text("#translation")
    expected = httpx.post(
        f"{server}/translate", json={"sentences": ["She loves cats."], "model": model, "beam": 5}
    )
    assert translation == expected.json()["translations"][0]["text"]
    target, source = page.locator("#row-tokens .token"), page.locator("#column-tokens .token")
    assert page.locator("#heatmap .cell").count() == target.count() * source.count()

    target.first.hover()  # the source words light up by how much the first target word attended to them
    weights = [float(w) for w in page.locator("#column-tokens .token.lit").evaluate_all(
        "es => es.map(e => e.dataset.weight)")]  # fmt: skip
    assert len(weights) == source.count() and sum(weights) == pytest.approx(1, abs=0.01)
    source.first.hover()  # and the reverse: the target words light up
    assert page.locator("#row-tokens .token.lit").count() == target.count()
    assert page.locator("#column-tokens .token.lit").count() == 0

    if model == "transformer":  # every layer and head, and self-attention
        assert page.locator("#layer option").count() == 1 and page.locator("#head option").count() == 5
        page.select_option("#kind", "encoder")
        page.select_option("#head", "2")
        assert page.locator("#heatmap .cell").count() == source.count() ** 2
    shot = Path(SCREENSHOT) if SCREENSHOT and model == "gru" else tmp_path / f"{model}.png"
    target.first.hover()
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert requests_outside == []
    page.close()
