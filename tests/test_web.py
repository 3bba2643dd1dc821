"""The web page end to end: `attnmt serve` in a subprocess, the page in a real headless Chromium: the
heatmap and hovering, the explorer (click a word, pick another, undo; your own translation scored;
two models side by side; words, not subword pieces), and translating as you type."""

import importlib.util
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from attnmt.cli import main

pytestmark = pytest.mark.slow
SCREENSHOT = os.environ.get("ATTNMT_SCREENSHOT")  # where to keep the picture (the README's comes from here)
SCREENSHOT_TYPING = os.environ.get("ATTNMT_SCREENSHOT_TYPING")  # the same, of translating as you type
TOP_K = 6  # the alternatives the page asks for per word


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A toy GRU, a toy Transformer, a toy GRU without attention, a toy GRU on SentencePiece pieces and
    (with ctranslate2 installed) the Transformer exported to CTranslate2, served on 127.0.0.1; yields the
    base URL."""
    root = tmp_path_factory.mktemp("web")
    tiny = ["--set", "train.epochs=3", "--set", "model.hidden_size=32", "--quiet"]
    assert main(["train", "--model-dir", str(root / "gru"), *tiny]) == 0
    transformer = ["--set", "model.architecture=transformer"]
    assert main(["train", "--model-dir", str(root / "transformer"), *transformer, *tiny]) == 0
    assert main(["train", "--model-dir", str(root / "baseline"), "--set", "model.attention=none", *tiny]) == 0
    pieces = ["--set", "data.tokenizer=bpe", "--set", "data.vocab_size=400"]
    assert main(["train", "--model-dir", str(root / "pieces"), *pieces, *tiny]) == 0
    served = ["gru", "transformer", "baseline", "pieces"]
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


def word_spans(tokens: list[str]) -> list[tuple[int, int]]:
    """The words of SentencePiece ``tokens`` as [first, last) spans: a ▁ piece and the pieces after it;
    <eos> a word of its own."""
    starts = [i for i, t in enumerate(tokens) if t.startswith("▁") or t == "<eos>"]
    return list(zip(starts, [*starts[1:], len(tokens)], strict=True))


def test_a_sentencepiece_translation_shows_words_not_pieces(server, browser):
    page, requests_outside = open_page(browser, server)
    sentence, yours = "She loves cats.", "Elle adorait les chatons ."
    translate(page, sentence, "pieces")
    page.fill("#yours", yours)
    page.click("#score-yours")
    drawn(page, "#panel-0", 2)
    panel = page.locator("#panel-0")
    body = {"sources": [sentence], "targets": [yours], "model": "pieces", "top_k": TOP_K}
    expected = httpx.post(f"{server}/score", json=body).json()["scores"][0]
    tokens, spans = expected["tokens"], word_spans(expected["tokens"])
    assert len(tokens) > len(spans)  # some words are several pieces
    words = panel.locator(".word")
    assert words.all_inner_texts() == [*yours.split(), "⏎"]
    probabilities = [float(p) for p in words.evaluate_all("es => es.map(e => e.dataset.probability)")]
    by_word = [math.exp(sum(expected["log_probs"][a:b])) for a, b in spans]  # the product of its pieces'
    assert probabilities == pytest.approx(by_word, abs=1e-4)
    source_words = len(word_spans(expected["src_tokens"]))
    assert panel.locator(".row-tokens .token").all_inner_texts() == words.all_inner_texts()
    assert panel.locator(".heatmap .cell").count() == len(spans) * source_words

    split = next(i for i, (a, b) in enumerate(spans) if b - a > 1)  # a word of several pieces
    words.nth(split).click()  # lists the alternatives of its first piece
    first_piece = [c["token"] for c in expected["candidates"][spans[split][0]]]
    assert panel.locator(".choice").evaluate_all("es => es.map(e => e.dataset.token)") == first_piece
    assert panel.locator(".choices-title").inner_text() == f"Instead of “{yours.split()[split]}”:"
    assert requests_outside == []
    page.close()


def test_a_long_translation_side_by_side_wraps_clear_of_the_english_label(server, browser):
    page, requests_outside = open_page(browser, server)
    translate(page, "He is tired.", "gru", compare="transformer")
    page.fill("#yours", " ".join(["il est très fatigué et elle est très heureuse ,"] * 6) + " .")
    page.click("#score-yours")
    for panel in ("#panel-0", "#panel-1"):
        drawn(page, panel, 2)
        box = page.locator(panel).bounding_box()
        french = page.locator(f"{panel} .row-tokens").bounding_box()
        english = page.locator(f"{panel} .columns-label").bounding_box()
        assert french["height"] > 3 * english["height"]  # it wraps, over several lines ...
        assert french["y"] + french["height"] <= english["y"]  # ... all above the English label
        for part in (".translation", ".row-tokens", ".column-tokens"):
            inside = page.locator(f"{panel} {part}").bounding_box()
            assert inside["x"] >= box["x"] and inside["x"] + inside["width"] <= box["x"] + box["width"] + 1
    assert requests_outside == []
    page.close()


# ---- translating as you type ---------------------------------------------------------------------------


def complete(server: str, model: str, sentence: str, typed: str) -> dict:
    body = {"source": sentence, "typed": typed, "model": model, "attention": True, "top_k": TOP_K}
    return httpx.post(f"{server}/complete", json=body).json()


def start_typing(page, sentence: str, model: str) -> None:
    """Translate as you type, ``model`` translating ``sentence``, the caret in the empty French box."""
    page.check("#typing-mode")
    page.select_option("#model", model)
    page.fill("#source", sentence)
    page.focus("#typed")


def proposal(page, typed: str) -> str:
    """Wait until the page has drawn the proposal that completes ``typed``; its ghost text."""
    page.wait_for_function(
        "typed => { const s = document.querySelector('#typing'); "
        "return s.dataset.typed === typed && !s.hasAttribute('aria-busy'); }",
        arg=typed,
    )
    assert page.input_value("#typed") == typed
    return page.locator("#typing .proposal").text_content()


def next_word_end(completion: dict) -> int:
    typed = len(completion["text"]) - len(completion["proposal"])
    return next(w["end"] for w in completion["words"] if w["end"] > typed)


def focused(page) -> str:
    return page.evaluate("document.activeElement.id")


@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_typing_shows_the_proposal_tab_takes_a_word_end_takes_all(server, browser, tmp_path, model):
    page, requests_outside = open_page(browser, server)
    sentence = "We are happy."
    start_typing(page, sentence, model)
    page.keyboard.type("Nous")
    expected = complete(server, model, sentence, "Nous")
    assert expected["proposal"] and proposal(page, "Nous") == expected["proposal"]
    shown = page.locator("#typing .ghost-word").evaluate_all("es => es.map(e => e.dataset.probability)")
    proposed = [w for w in expected["words"] if w["end"] > len("Nous")]
    assert [float(p) for p in shown] == pytest.approx([math.exp(w["log_prob"]) for w in proposed], abs=1e-4)
    # the heatmap: a row per word of the whole translation, typed and proposed
    rows = page.locator("#typing .row-tokens .token")
    assert rows.all_inner_texts() == [*expected["text"].split(), "⏎"]
    columns = page.locator("#typing .column-tokens .token").count()
    assert columns == len(expected["src_tokens"])  # a word model: a word per token
    assert page.locator("#typing .heatmap .cell").count() == rows.count() * columns
    rows.first.hover()
    weights = page.locator("#typing .column-tokens .token.lit").evaluate_all(
        "es => es.map(e => e.dataset.weight)"
    )
    assert sum(float(w) for w in weights) == pytest.approx(1, abs=0.01)
    shot = Path(SCREENSHOT_TYPING) if SCREENSHOT_TYPING and model == "gru" else tmp_path / f"{model}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(b"\x89PNG")

    page.keyboard.press("Tab")  # the next word, up to its end, and nothing else
    typed = expected["text"][: next_word_end(expected)]
    expected = complete(server, model, sentence, typed)
    assert proposal(page, typed) == expected["proposal"] and focused(page) == "typed"
    assert page.locator("#typing .row-tokens .token").all_inner_texts() == [*expected["text"].split(), "⏎"]

    departing = " d" if not expected["proposal"].startswith(" d") else " l"  # not what the model proposes
    page.keyboard.type(departing)
    typed += departing
    expected = complete(server, model, sentence, typed)
    assert proposal(page, typed) == expected["proposal"]

    page.keyboard.press("End")  # all of it
    typed = expected["text"]
    assert proposal(page, typed) == complete(server, model, sentence, typed)["proposal"]
    assert requests_outside == []
    page.close()


def test_typing_click_a_proposed_word_pick_another_and_the_model_goes_on_from_it(server, browser):
    page, requests_outside = open_page(browser, server)
    sentence, model = "She loves cats and dogs.", "gru"
    start_typing(page, sentence, model)
    expected = complete(server, model, sentence, "")
    assert proposal(page, "") == expected["proposal"]
    page.locator("#typing .ghost-word").nth(1).click()  # the second word: what else the model would put there
    page.wait_for_selector("#typing .choice")  # asked for when opened
    alternatives = expected["words"][1]["alternatives"]
    options = page.locator("#typing .choice")
    assert options.evaluate_all("es => es.map(e => e.dataset.typed)") == [a["typed"] for a in alternatives]
    picked = options.nth(1)
    typed = picked.get_attribute("data-typed")
    picked.click()
    expected = complete(server, model, sentence, typed)
    assert proposal(page, typed) == expected["proposal"] and focused(page) == "typed"
    assert page.locator("#typing .choices").is_hidden()
    assert page.locator("#typing .row-tokens .token").count() == len(expected["text"].split()) + 1
    assert requests_outside == []
    page.close()


def test_typing_with_the_keyboard_only(server, browser):
    page, requests_outside = open_page(browser, server)
    sentence, model = "He is tired.", page.input_value("#model")  # the first model
    page.focus("#source")
    page.keyboard.type(sentence)
    page.keyboard.press("Tab")  # to the mode switch
    page.keyboard.press("Space")  # translate as you type
    page.keyboard.press("Shift+Tab")  # back to the English
    page.keyboard.press("Enter")  # on to the French
    assert focused(page) == "typed"
    assert proposal(page, "") == complete(server, model, sentence, "")["proposal"]

    page.keyboard.press("ArrowDown")  # the next word's alternatives, the first focused
    page.wait_for_selector("#typing .choice:focus")  # asked for when opened
    assert page.locator("#typing .choices").is_visible()
    assert page.evaluate("document.activeElement.classList.contains('choice')")
    page.keyboard.press("Escape")  # closes, back in the box
    assert page.locator("#typing .choices").is_hidden() and focused(page) == "typed"
    page.keyboard.press("ArrowDown")
    page.wait_for_selector("#typing .choice:focus")
    page.keyboard.press("ArrowDown")  # the second alternative
    typed = page.evaluate("document.activeElement.dataset.typed")
    page.keyboard.press("Enter")  # picks it
    expected = complete(server, model, sentence, typed)
    assert proposal(page, typed) == expected["proposal"] and focused(page) == "typed"

    page.keyboard.press("Tab")  # the next word
    typed = expected["text"][: next_word_end(expected)]
    assert proposal(page, typed) == complete(server, model, sentence, typed)["proposal"]
    page.keyboard.press("End")  # the rest
    typed = complete(server, model, sentence, typed)["text"]
    proposal(page, typed)
    page.keyboard.press("Escape")  # no proposal now: Tab leaves the box
    assert page.locator("#typing .proposal").text_content() == ""
    page.keyboard.press("Tab")
    assert focused(page) != "typed"
    assert requests_outside == []
    page.close()


def test_typing_with_a_sentencepiece_model_groups_its_pieces_into_words(server, browser):
    page, requests_outside = open_page(browser, server)
    sentence, model = "She loves cats.", "pieces"
    start_typing(page, sentence, model)
    page.keyboard.type("Elle a")  # a word begun
    expected = complete(server, model, sentence, "Elle a")
    assert proposal(page, "Elle a") == expected["proposal"]
    rows = page.locator("#typing .row-tokens .token").all_inner_texts()
    assert rows == [*expected["text"].split(), "⏎"] and len(rows) < len(expected["tokens"])
    source_words = len(word_spans(expected["src_tokens"]))
    assert page.locator("#typing .column-tokens .token").count() == source_words
    assert page.locator("#typing .heatmap .cell").count() == len(rows) * source_words
    assert requests_outside == []
    page.close()
