"""The web page end to end: `attnmt serve` in a subprocess, the page in a real headless Chromium: the
heatmap and hovering, and the explorer (click a word, pick another, undo; your own translation scored;
two models side by side)."""

import importlib.util
import math
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
    """A toy GRU, a toy Transformer, a toy GRU without attention and (with ctranslate2 installed) the
    Transformer exported to CTranslate2, served on 127.0.0.1; yields the base URL."""
    root = tmp_path_factory.mktemp("web")
    tiny = ["--set", "train.epochs=3", "--set", "model.hidden_size=32", "--quiet"]
    assert main(["train", "--model-dir", str(root / "gru"), *tiny]) == 0
    transformer = ["--set", "model.architecture=transformer"]
    assert main(["train", "--model-dir", str(root / "transformer"), *transformer, *tiny]) == 0
    assert main(["train", "--model-dir", str(root / "baseline"), "--set", "model.attention=none", *tiny]) == 0
    served = ["gru", "transformer", "baseline"]
    if importlib.util.find_spec("ctranslate2"):  # an engine that gives no alternatives
        assert (
            main(["export", str(root / "transformer"), "--to", "ctranslate2", "-o", str(root / "exported")])
            == 0
        )
        served.append("exported")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "attnmt.cli", "serve", *(str(root / m) for m in served), "--port", str(port)],
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


def open_page(browser, server: str):
    """A fresh page on the server, and the list every request outside 127.0.0.1 lands in."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests_outside = []
    page.on("request", lambda r: r.url.startswith(server) or requests_outside.append(r.url))
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    return page, requests_outside


def translate(page, sentence: str, model: str, compare: str = "", beam: str = "5") -> None:
    page.select_option("#model", model)
    page.select_option("#compare", compare)
    page.select_option("#beam", beam)
    page.fill("#source", sentence)
    page.click("#translate")
    for panel in ["#panel-0", "#panel-1"][: 2 if compare else 1]:
        page.wait_for_selector(f"{panel}:not([aria-busy]) .word")


def drawn(page, panel: str, version: int) -> None:
    """Wait until ``panel`` has drawn its ``version``-th state."""
    page.wait_for_selector(f'{panel}[data-version="{version}"]:not([aria-busy])')


@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_type_translate_see_the_heatmap_and_hover(server, browser, tmp_path, model):
    page, requests_outside = open_page(browser, server)
    translate(page, "She loves cats.", model)
    panel = page.locator("#panel-0")
    expected = httpx.post(
        f"{server}/translate", json={"sentences": ["She loves cats."], "model": model, "beam": 5}
    )
    assert panel.locator(".text").inner_text() == expected.json()["translations"][0]["text"]
    target, source = panel.locator(".row-tokens .token"), panel.locator(".column-tokens .token")
    assert panel.locator(".heatmap .cell").count() == target.count() * source.count()

    target.first.hover()  # the source words light up by how much the first target word attended to them
    weights = [float(w) for w in panel.locator(".column-tokens .token.lit").evaluate_all(
        "es => es.map(e => e.dataset.weight)")]  # fmt: skip
    assert len(weights) == source.count() and sum(weights) == pytest.approx(1, abs=0.01)
    source.first.hover()  # and the reverse: the target words light up
    assert panel.locator(".row-tokens .token.lit").count() == target.count()
    assert panel.locator(".column-tokens .token.lit").count() == 0

    if model == "transformer":  # every layer and head, and self-attention
        assert panel.locator(".layer option").count() == 1 and panel.locator(".head option").count() == 5
        panel.locator(".kind").select_option("encoder")
        panel.locator(".head").select_option("2")
        assert panel.locator(".heatmap .cell").count() == source.count() ** 2
    shot = Path(SCREENSHOT) if SCREENSHOT and model == "gru" else tmp_path / f"{model}.png"
    target.first.hover()
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert requests_outside == []
    page.close()


# ---- the explorer ------------------------------------------------------------------------------------


def api_translation(server: str, model: str, sentence: str, prefix: str, beam: int) -> dict:
    body = {"sentences": [sentence], "model": model, "beam": beam, "prefix": [prefix], "attention": True}
    return httpx.post(f"{server}/translate", json=body).json()["translations"][0]


def rows(panel) -> int:
    return panel.locator(".row-tokens .token").count()


@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_click_a_word_pick_another_and_the_rest_follows_then_undo(server, browser, model):
    page, requests_outside = open_page(browser, server)
    sentence = "She loves cats and dogs."
    translate(page, sentence, model, beam="1")
    panel = page.locator("#panel-0")
    before_text, before_rows = panel.locator(".text").inner_text(), rows(panel)
    assert before_rows == panel.locator(".word").count()  # one heatmap row per word, <eos> included

    panel.locator(".word").nth(1).click()  # the second word: what else the model would have written
    choices = panel.locator(".choice:not([disabled])")
    assert choices.count() >= 2
    shown = [float(p) for p in panel.locator(".choice").evaluate_all(
        "es => es.map(e => parseFloat(e.textContent.split(/\\s+/).at(-2)))")]  # fmt: skip
    assert shown == sorted(shown, reverse=True)  # best first, as percentages
    picked = choices.nth(1)
    prefix, token = picked.get_attribute("data-prefix"), picked.get_attribute("data-token")
    picked.click()
    drawn(page, "#panel-0", 2)
    expected = api_translation(server, model, sentence, prefix, beam=1)
    assert panel.locator(".text").inner_text() == expected["text"]
    assert expected["text"].startswith(prefix) and expected["tokens"][1] == token
    assert rows(panel) == len(expected["tokens"]) == panel.locator(".word").count()
    assert panel.locator(".heatmap .cell").count() == len(expected["tokens"]) * len(expected["src_tokens"])

    panel.locator(".undo").click()  # back to the model's own translation
    drawn(page, "#panel-0", 3)
    assert panel.locator(".text").inner_text() == before_text and rows(panel) == before_rows
    assert panel.locator(".undo").is_disabled()
    assert requests_outside == []
    page.close()


def test_the_keyboard_does_what_the_mouse_does(server, browser):
    page, requests_outside = open_page(browser, server)
    sentence = "We are happy."
    translate(page, sentence, "gru", beam="1")
    panel = page.locator("#panel-0")
    before = panel.locator(".text").inner_text()
    panel.locator(".word").first.focus()
    page.keyboard.press("ArrowRight")  # to the second word
    page.keyboard.press("Enter")  # its alternatives open, the first focused
    assert panel.locator(".choices").is_visible()
    assert page.evaluate("document.activeElement.classList.contains('choice')")
    page.keyboard.press("Escape")  # closes, back on the word
    assert panel.locator(".choices").is_hidden()
    assert page.evaluate("document.activeElement.dataset.index") == "1"
    page.keyboard.press(" ")  # Space opens too
    page.keyboard.press("ArrowDown")  # the second alternative
    prefix = page.evaluate("document.activeElement.dataset.prefix")
    page.keyboard.press("Enter")  # picks it
    drawn(page, "#panel-0", 2)
    assert panel.locator(".text").inner_text() == api_translation(server, "gru", sentence, prefix, 1)["text"]
    page.keyboard.press("u")  # undo
    drawn(page, "#panel-0", 3)
    assert panel.locator(".text").inner_text() == before
    assert requests_outside == []
    page.close()


@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_your_translation_shows_one_probability_per_token_and_its_attention(server, browser, model):
    page, requests_outside = open_page(browser, server)
    sentence, yours = "She loves cats.", "Elle aime les chiens ."
    translate(page, sentence, model)
    page.fill("#yours", yours)
    page.click("#score-yours")
    drawn(page, "#panel-0", 2)
    panel = page.locator("#panel-0")
    expected = httpx.post(
        f"{server}/score", json={"sources": [sentence], "targets": [yours], "model": model}
    ).json()["scores"][0]
    words = panel.locator(".word")
    probabilities = [float(p) for p in words.evaluate_all("es => es.map(e => e.dataset.probability)")]
    assert words.all_inner_texts() == ["Elle", "aime", "les", "chiens", ".", "⏎"]
    assert probabilities == pytest.approx([math.exp(lp) for lp in expected["log_probs"]], abs=1e-4)
    assert rows(panel) == len(expected["tokens"])
    assert panel.locator(".heatmap .cell").count() == len(expected["tokens"]) * len(expected["src_tokens"])
    assert "your translation" in panel.locator(".what").inner_text()
    assert requests_outside == []
    page.close()


def test_two_models_side_by_side_each_with_its_heatmap_and_one_without_attention_says_so(server, browser):
    page, requests_outside = open_page(browser, server)
    translate(page, "He is tired.", "gru", compare="transformer")
    first, second = page.locator("#panel-0"), page.locator("#panel-1")
    assert first.locator(".heatmap .cell").count() > 0 and second.locator(".heatmap .cell").count() > 0
    assert first.locator(".model-name").inner_text() == "gru"
    assert second.locator(".model-name").inner_text() == "transformer"
    for panel, name in ((first, "gru"), (second, "transformer")):
        answer = httpx.post(f"{server}/translate", json={"sentences": ["He is tired."], "model": name})
        assert panel.locator(".text").inner_text() == answer.json()["translations"][0]["text"]

    translate(page, "He is tired.", "transformer", compare="baseline")
    assert page.locator("#panel-1 .no-attention").is_visible()
    assert page.locator("#panel-1 .heatmap").is_hidden()
    assert page.locator("#panel-0 .heatmap .cell").count() > 0
    page.locator("#panel-1 .word").first.click()  # words and alternatives need no attention
    assert page.locator("#panel-1 .choice").count() > 0
    assert requests_outside == []
    page.close()


def test_an_engine_without_alternatives_shows_its_translation_and_says_it_has_none(server, browser):
    page, requests_outside = open_page(browser, server)
    if page.locator('#model option[value="exported"]').count() == 0:
        pytest.skip("ctranslate2 is not installed")
    translate(page, "We are happy.", "exported", compare="transformer")
    first, second = page.locator("#panel-0"), page.locator("#panel-1")
    assert first.locator(".heatmap .cell").count() > 0
    first.locator(".word").first.click()
    assert first.locator(".choices").inner_text() == "This model gives no alternatives."
    second.locator(".word").first.click()
    assert second.locator(".choice").count() > 0  # the PyTorch model beside it gives them
    page.fill("#yours", "Nous sommes heureux .")
    page.click("#score-yours")
    drawn(page, "#panel-0", 2)
    drawn(page, "#panel-1", 2)
    assert first.locator(".word").count() == second.locator(".word").count() == 5
    assert first.locator(".heatmap .cell").count() == second.locator(".heatmap .cell").count() > 0
    assert requests_outside == []
    page.close()
