// The page of `attnmt export --to web`: load the model from this folder, translate what is typed in
// the browser, and draw the translation's attention (a row per target token) with the explorer's
// heatmap. window.attnmt.translate is the same translation for scripts (the tests, bench/site.py).
import { Translator } from "./translator.mjs";

const status = $("status");
function language(code) {
  try {
    return new Intl.DisplayNames(["en"], { type: "language" }).of(code) || code;
  } catch {
    return code;
  }
}

async function start() {
  performance.mark("attnmt:script"); // the page's modules fetched and running
  const translator = await Translator.load();
  performance.mark("attnmt:loaded"); // the model ready to translate
  const { page } = translator;
  const heatmap = new Heatmap($("attention-view"));
  $("source").placeholder = page.example;
  $("source").lang = page.src_lang;
  $("translation").lang = page.tgt_lang;

  async function show(sentence) {
    const started = performance.now();
    const t = await translator.translate(sentence, Number($("beam").value));
    const ms = performance.now() - started;
    $("translation").textContent = t.text;
    $("meta").textContent = `${(ms).toFixed(0)} ms in this page · log p = ${t.score.toFixed(3)}`;
    document.querySelector(".no-attention").hidden = Boolean(t.attention) || !t.tokens.length;
    $("attention-view").hidden = !t.attention;
    if (t.attention) heatmap.draw(t.attention, shown(t.tokens), shown(t.srcTokens), language(page.tgt_lang), language(page.src_lang));
    const result = $("result");
    result.dataset.version = String(Number(result.dataset.version) + 1);
    return t;
  }

  window.attnmt = { translate: (sentence, beamSize = 1) => translator.translate(sentence, beamSize), page };
  $("form").addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "";
    try {
      const typed = $("source").value;
      await show(typed.trim() ? typed : page.example);
    } catch (error) {
      status.textContent = `Could not translate: ${error.message}`;
    }
  });
  $("translate").disabled = false;
  status.textContent = "";
  if (page.example) {
    await show(page.example);
    document.body.dataset.firstTranslationMs = performance.now().toFixed(1); // since the page began loading
  }
}

start().catch((error) => {
  status.textContent = `The model could not be loaded: ${error.message}`;
  document.body.dataset.failed = "true";
});
