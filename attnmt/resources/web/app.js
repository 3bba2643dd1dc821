// attnmt's page: ask /translate for a translation with its attention and, for each word, the words the
// model would have put there instead; draw it, light up what hovering points at; a picked word is sent
// back as a prefix and the model writes the rest; /score reads the user's own translation. Translate as
// you type: /complete proposes the rest of what the user types, shown as ghost text to take or leave.
"use strict";

const TOP_K = 6; // alternatives offered per word
const TYPING_DELAY = 40; // ms of quiet after a keystroke before a proposal is asked for
const panels = []; // one per model shown side by side
let modelInfo = {}; // name → what GET /models says of it
const topK = (model) => (modelInfo[model] && modelInfo[model].alternatives ? TOP_K : 0); // an export may give none
const sourceText = () => $("source").value.trim() || $("source").placeholder;

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

async function loadModels() {
  const models = await (await fetch("/models")).json();
  modelInfo = Object.fromEntries(models.map((m) => [m.name, m]));
  const option = (m) => new Option(`${m.name} (${m.architecture}, ${m.attention})`, m.name);
  $("model").replaceChildren(...models.map(option));
  $("compare").replaceChildren(new Option("nothing", ""), ...models.map(option));
}

function translateRequest(sentence, model, prefix) {
  const beam = Number($("beam").value);
  const body = {
    sentences: [sentence], model, beam, n_best: $("alternatives").checked ? beam : 1, attention: true, top_k: topK(model),
  };
  if (prefix !== undefined) body.prefix = [prefix];
  return body;
}

// What a panel shows, from a /translate answer or a /score answer: the same fields either way.
async function translated(model, source, prefix) {
  const t = (await post("/translate", translateRequest(source, model, prefix))).translations[0];
  return {
    kind: prefix === undefined ? "translation" : "continued from your word", source, text: t.text, score: t.score,
    tokens: t.tokens, src_tokens: t.src_tokens, log_probs: t.log_probs, candidates: t.candidates,
    maps: t.maps, alternatives: t.alternatives || [],
  };
}

async function scored(model, source, target) {
  const body = { sources: [source], targets: [target], model, attention: true, top_k: topK(model) };
  const s = (await post("/score", body)).scores[0];
  return {
    kind: "your translation", source, text: target, score: s.total, tokens: s.tokens, src_tokens: s.src_tokens,
    log_probs: s.log_probs, candidates: s.candidates, maps: s.attention ? { cross: [[s.attention]] } : {},
    alternatives: [],
  };
}

const probability = (logProb) => Math.exp(logProb);
const colour = (p) => `hsl(${Math.round(120 * p)}, 80%, 82%)`; // red: unlikely … green: likely
const sum = (numbers) => numbers.reduce((a, b) => a + b, 0);

// One alternative in a list of choices: its text, its probability, and that on the colour scale.
function choice(text, p, selected) {
  const option = document.createElement("button");
  option.type = "button";
  option.className = "choice";
  option.setAttribute("role", "option");
  option.setAttribute("aria-selected", String(selected));
  option.textContent = `${text}  ${(100 * p).toFixed(1)} %`;
  option.style.borderLeftColor = colour(p);
  return option;
}

// Fill the choices ``list`` and focus its first option that can be picked.
function showChoices(list, title, options) {
  const heading = document.createElement("p");
  heading.className = "choices-title";
  heading.textContent = title;
  list.replaceChildren(heading, ...options);
  list.hidden = false;
  const first = options.find((o) => !o.disabled);
  if (first) first.focus();
}

// Arrows, Home and End move among the choices, Escape calls ``close``: whether the key was one of these.
function choiceKey(event, close) {
  const options = [...event.target.parentElement.querySelectorAll(".choice:not([disabled])")];
  const at = options.indexOf(event.target);
  const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[event.key];
  if (step) options[(at + step + options.length) % options.length].focus();
  else if (event.key === "Escape") close();
  else if (event.key === "Home") options[0].focus();
  else if (event.key === "End") options[options.length - 1].focus();
  else return false;
  event.preventDefault();
  return true;
}

class Panel extends View {
  constructor(index) {
    super();
    this.root = $("panel-template").content.firstElementChild.cloneNode(true);
    this.root.id = `panel-${index}`;
    this.root.dataset.version = "0"; // counts what the panel has drawn: tests and timings wait on it
    this.history = []; // earlier states, for undo
    this.state = null;
    this.spans = []; // the words of the translation shown: [first, last) spans of its tokens
    this.asked = 0; // the latest request: an older answer arriving late is dropped
    this.heatmap = new Heatmap(this.part(".attention-view"));
    this.part(".undo").addEventListener("click", () => this.undo());
    this.part(".kind").addEventListener("change", () => this.fillLayers());
    this.part(".layer").addEventListener("change", () => this.draw());
    this.part(".head").addEventListener("change", () => this.draw());
    this.root.addEventListener("keydown", (e) => this.onKey(e));
    $("panels").append(this.root);
  }

  // A new state from ``ask`` (a promise); ``keep`` puts the one shown now on the undo stack.
  async change(ask, keep) {
    const asked = ++this.asked;
    this.root.setAttribute("aria-busy", "true");
    try {
      const state = await ask;
      if (asked !== this.asked) return;
      if (keep && this.state) this.history.push(this.state);
      this.show(state);
    } catch (error) {
      $("status").textContent = `Error (${this.model}): ${error.message}`;
    } finally {
      if (asked === this.asked) this.root.removeAttribute("aria-busy");
    }
  }

  start(model, sentence) {
    this.model = model;
    this.history = [];
    this.state = null;
    return this.change(translated(model, sentence), false);
  }

  // The translation begins with ``prefix`` (up to the word picked, the ``position``-th); the model writes the rest.
  async pick(prefix, position) {
    this.closeChoices();
    await this.change(translated(this.model, this.state.source, prefix), true);
    const word = this.all(".word")[position];
    if (word) word.focus(); // the keyboard stays where it was
  }

  score(target) {
    return this.change(scored(this.model, this.state.source, target), true);
  }

  undo() {
    if (!this.history.length) return;
    this.closeChoices();
    this.show(this.history.pop());
  }

  show(state) {
    this.state = state;
    this.part(".model-name").textContent = this.model;
    this.part(".what").textContent = `— ${state.kind}`;
    this.part(".text").textContent = state.text;
    this.part(".score").textContent = state.score.toFixed(3);
    this.part(".undo").disabled = this.history.length === 0;
    this.showWords();
    this.part(".alternatives-list").replaceChildren(...state.alternatives.map((a) => {
      const item = document.createElement("li");
      item.textContent = `${a.text}  (log p ${a.score.toFixed(3)})`;
      return item;
    }));
    const kinds = Object.keys(state.maps || {});
    this.part(".no-attention").hidden = kinds.length > 0;
    this.part(".attention-view").hidden = kinds.length === 0;
    if (kinds.length) {
      this.part(".kind").replaceChildren(...kinds.map((k) => new Option(
        { cross: "target → source", encoder: "encoder self-attention", decoder: "decoder self-attention" }[k], k)));
      this.fillLayers();
    }
    this.root.dataset.version = `${Number(this.root.dataset.version) + 1}`;
  }

  // The translation as buttons, one per word, coloured by how likely the model finds it there: the
  // product of its pieces' probabilities.
  showWords() {
    const { tokens, log_probs: logProbs } = this.state;
    this.spans = wordSpans(tokens);
    const texts = spelled(tokens, this.spans);
    const words = this.spans.map(([first, last], i) => {
      const word = document.createElement("button");
      word.type = "button";
      word.className = "word";
      word.textContent = texts[i];
      word.dataset.index = i;
      let label = tokens[first] === "<eos>" ? "end of sentence" : texts[i];
      if (logProbs) { // absent where the model gives no alternatives
        const p = probability(sum(logProbs.slice(first, last)));
        word.dataset.probability = p.toFixed(4);
        word.style.background = colour(p);
        word.title = `p = ${p.toFixed(3)}`;
        label += `, probability ${p.toFixed(2)}`;
      }
      word.setAttribute("aria-haspopup", "listbox");
      word.setAttribute("aria-expanded", "false");
      word.setAttribute("aria-label", label);
      word.addEventListener("click", () => this.openChoices(i));
      return word;
    });
    this.part(".translation").replaceChildren(...words);
  }

  // What the model would have put in place of word i (of its first piece), best first; Enter or a click picks one.
  openChoices(i) {
    this.closeChoices();
    const { tokens, candidates } = this.state;
    const first = this.spans[i][0];
    const word = this.all(".word")[i];
    const options = (candidates ? candidates[first] : []).map((c) => {
      const option = choice(c.token === "<eos>" ? "⏎ (end)" : shown([c.token])[0], probability(c.log_prob), c.token === tokens[first]);
      option.dataset.token = c.token;
      if (c.prefix === undefined) {
        option.disabled = true; // no text begins with <eos> or <unk>
      } else {
        option.dataset.prefix = c.prefix;
        option.addEventListener("click", () => this.pick(c.prefix, i));
      }
      return option;
    });
    const list = this.part(".choices");
    list.dataset.position = i;
    word.setAttribute("aria-expanded", "true");
    word.classList.add("open");
    showChoices(list, candidates ? `Instead of “${word.textContent}”:` : "This model gives no alternatives.", options);
  }

  closeChoices(refocus = false) {
    const list = this.part(".choices");
    if (list.hidden) return;
    const word = this.all(".word")[Number(list.dataset.position)];
    list.hidden = true;
    list.replaceChildren();
    if (word) {
      word.setAttribute("aria-expanded", "false");
      word.classList.remove("open");
      if (refocus) word.focus();
    }
  }

  // Arrows move among the words and among the alternatives, Escape closes them, u undoes.
  onKey(event) {
    const target = event.target;
    if (target.classList.contains("choice")) {
      if (!choiceKey(event, () => this.closeChoices(true))) this.undoKey(event);
    } else if (target.classList.contains("word")) {
      const words = [...this.all(".word")];
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) words[Math.min(words.length - 1, Math.max(0, words.indexOf(target) + step))].focus();
      else if (event.key === "ArrowDown") this.openChoices(words.indexOf(target));
      else if (event.key === "Escape") this.closeChoices(true);
      else return this.undoKey(event);
      event.preventDefault();
    } else {
      this.undoKey(event);
    }
  }

  undoKey(event) {
    if ((event.key === "u" || (event.key === "z" && (event.ctrlKey || event.metaKey))) && this.history.length) {
      event.preventDefault();
      this.undo();
      const first = this.part(".word");
      if (first) first.focus();
    }
  }

  fillLayers() {
    const maps = this.state.maps[this.part(".kind").value];
    const layers = maps.length, heads = maps[0].length;
    const layer = this.part(".layer"), head = this.part(".head");
    layer.replaceChildren(...[...Array(layers).keys()].map((i) => new Option(`${i + 1}`, i)));
    layer.value = layers - 1;
    head.replaceChildren(new Option("average", "avg"), ...[...Array(heads).keys()].map((i) => new Option(`${i + 1}`, i)));
    layer.disabled = layers === 1;
    head.disabled = heads === 1;
    this.draw();
  }

  matrix() {
    const layer = this.state.maps[this.part(".kind").value][Number(this.part(".layer").value)];
    const head = this.part(".head").value;
    if (head !== "avg") return layer[Number(head)];
    return layer[0].map((row, i) => row.map((_, j) => layer.reduce((total, h) => total + h[i][j], 0) / layer.length));
  }

  // The map chosen, between words: the tokens of its rows and columns, and what they are.
  draw() {
    const { tokens, src_tokens: src } = this.state;
    const [rows, columns, rowsLabel, columnsLabel] = {
      cross: [tokens, src, "French", "English"],
      encoder: [src, src, "English", "English"],
      decoder: [tokens, ["<sos>", ...tokens.slice(0, -1)], "French", "French so far"],
    }[this.part(".kind").value];
    const rowSpans = wordSpans(rows), columnSpans = wordSpans(columns);
    const weights = betweenWords(this.matrix(), rowSpans, columnSpans);
    this.heatmap.draw(weights, spelled(rows, rowSpans), spelled(columns, columnSpans), rowsLabel, columnsLabel);
  }
}

// Translate as you type: what is typed in the French box goes to /complete with the source, and the
// model's proposal for the rest shows after it in grey, each word on the colour scale. Tab takes the next
// proposed word, End all of them, ↓ or a click lists the words the model would put in a word's place
// (picking one types it), Esc hides the proposal; typing anything else asks again from there. The
// heatmap follows the whole translation, typed and proposed, word by word.
class Typing extends View {
  constructor() {
    super();
    this.root = $("typing");
    this.box = $("typed");
    this.state = null; // the /complete answer drawn last, with the text it completed as ``typed``
    this.hidden = false; // Esc hid the proposal
    this.asked = 0; // the latest keystroke: answers to earlier ones are dropped
    this.timer = 0;
    this.heatmap = new Heatmap(this.part(".attention-view"));
    this.box.addEventListener("input", () => this.predict());
    this.box.addEventListener("keydown", (e) => this.onKey(e));
    this.part(".choices").addEventListener("keydown", (e) => choiceKey(e, () => this.closeChoices(true)));
  }

  // Forget the proposal (the source or the model changed) and ask anew.
  restart() {
    this.state = null;
    this.predict();
  }

  // Ask for a proposal once typing pauses; until it comes, the one shown stays as far as it still holds.
  predict() {
    const asked = ++this.asked;
    this.closeChoices();
    this.root.setAttribute("aria-busy", "true");
    this.drawGhost();
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.ask(asked), TYPING_DELAY);
  }

  async ask(asked) {
    const model = $("model").value, typed = this.box.value;
    const body = { source: sourceText(), typed, model, attention: true }; // alternatives when asked
    try {
      const state = await post("/complete", body);
      if (asked !== this.asked) return;
      $("status").textContent = "";
      this.show({ ...state, typed });
    } catch (error) {
      if (asked !== this.asked) return;
      $("status").textContent = `Error (${model}): ${error.message}`;
      this.state = null;
      this.drawGhost();
      this.part(".attention-view").hidden = true;
    } finally {
      if (asked === this.asked) this.root.removeAttribute("aria-busy");
    }
  }

  show(state) {
    this.state = state;
    this.hidden = false;
    this.drawGhost();
    const map = state.attention !== undefined;
    this.part(".no-attention").hidden = map;
    this.part(".attention-view").hidden = !map;
    if (map) this.drawMap();
    this.root.dataset.typed = state.typed; // what the drawn proposal completes: tests wait on it
    this.root.dataset.version = `${Number(this.root.dataset.version) + 1}`;
  }

  // The answer whose proposal is shown: the latest, while what is typed still begins its text.
  proposed() {
    const state = this.state;
    return state && !this.hidden && state.text.startsWith(this.box.value) ? state : null;
  }

  // The next proposed word: the first that ends after what is typed.
  next() {
    const state = this.proposed();
    return state && state.words.find((w) => w.end > this.box.value.length);
  }

  // What is typed, invisible over the box's own text, then the proposal in grey, one span per word.
  drawGhost() {
    const typed = this.box.value, state = this.proposed();
    const parts = [];
    let at = typed.length;
    (state ? state.words : []).forEach((word, i) => {
      if (word.end <= at) return;
      if (word.start > at) parts.push(state.text.slice(at, word.start));
      parts.push(this.ghostWord(state.text.slice(Math.max(at, word.start), word.end), word, i));
      at = word.end;
    });
    if (state) parts.push(state.text.slice(at));
    this.part(".typed-text").textContent = typed;
    this.part(".proposal").replaceChildren(...parts);
  }

  ghostWord(text, word, i) {
    const span = document.createElement("span");
    const p = probability(word.log_prob);
    span.className = "ghost-word";
    span.textContent = text;
    span.dataset.index = i;
    span.dataset.probability = p.toFixed(4);
    span.style.setProperty("--colour", colour(p));
    span.title = `${word.text}: p = ${p.toFixed(3)}`;
    span.addEventListener("mousedown", (e) => e.preventDefault()); // the caret stays in the box
    span.addEventListener("click", () => this.openChoices(i));
    return span;
  }

  // Type ``text`` in place of what is typed, and ask what follows it.
  take(text) {
    this.box.value = text;
    this.box.focus();
    this.box.setSelectionRange(text.length, text.length);
    this.predict();
  }

  onKey(event) {
    const next = this.next(), box = this.box;
    const atEnd = box.selectionStart === box.value.length;
    if (!next || event.ctrlKey || event.metaKey || event.altKey || event.shiftKey) return;
    if (event.key === "Tab") this.take(this.state.text.slice(0, next.end));
    else if (event.key === "End" && atEnd) this.take(this.state.text);
    else if (event.key === "ArrowDown" && atEnd) this.openChoices(this.state.words.indexOf(next));
    else if (event.key === "Escape") {
      this.hidden = true;
      this.drawGhost();
    } else return;
    event.preventDefault();
  }

  // The words the model would put in place of proposed word i, best first: picking one types it. They
  // are asked for when first wanted (a keystroke does not pay for every word's alternatives).
  async openChoices(i) {
    this.closeChoices();
    const state = this.state, word = state.words[i], model = $("model").value;
    if (word.alternatives === undefined && topK(model)) {
      const body = { source: sourceText(), typed: state.typed, model, top_k: topK(model), word: i };
      const answer = await post("/complete", body);
      if (state !== this.state) return; // typing went on meanwhile
      word.alternatives = answer.words[i] ? answer.words[i].alternatives : [];
    }
    const options = (word.alternatives || []).map((a) => {
      const option = choice(a.text, probability(a.log_prob), a.text === word.text);
      option.dataset.typed = a.typed;
      option.addEventListener("click", () => this.take(a.typed));
      return option;
    });
    this.all(`.ghost-word[data-index="${i}"]`).forEach((e) => e.classList.add("open"));
    const title = word.alternatives ? `Instead of “${word.text}”:` : "This model gives no alternatives.";
    showChoices(this.part(".choices"), title, options);
  }

  closeChoices(refocus = false) {
    const list = this.part(".choices");
    list.hidden = true;
    list.replaceChildren();
    this.all(".ghost-word.open").forEach((e) => e.classList.remove("open"));
    if (refocus) this.box.focus();
  }

  // The heatmap of the whole translation, a row per word: the typed words before the first one /complete
  // lists, grouped as wordSpans does, then its words, then ⏎.
  drawMap() {
    const { tokens, src_tokens: src, words, attention } = this.state;
    const end = tokens.length - 1; // <eos>
    const head = wordSpans(tokens.slice(0, words.length ? words[0].first : end), tokens.some(isPiece));
    const rowSpans = [...head, ...words.map((w) => [w.first, w.last]), [end, end + 1]];
    const rows = [...spelled(tokens, head), ...words.map((w) => w.text), "⏎"];
    const columnSpans = wordSpans(src);
    const weights = betweenWords(attention, rowSpans, columnSpans);
    this.heatmap.draw(weights, rows, spelled(src, columnSpans), "French", "English");
  }
}

const typing = new Typing();
const typingMode = () => $("typing-mode").checked;
const shownPanels = () => panels.filter((p) => !p.root.hidden);

function setMode() {
  document.body.classList.toggle("typing", typingMode());
  $("status").textContent = "";
  if (typingMode()) typing.restart();
}

async function translateAll(event) {
  event.preventDefault();
  const sentence = sourceText();
  const names = [$("model").value, $("compare").value].filter(Boolean);
  while (panels.length < names.length) panels.push(new Panel(panels.length));
  panels.forEach((p, i) => (p.root.hidden = i >= names.length));
  $("panels").classList.toggle("side-by-side", names.length > 1);
  $("status").textContent = "Translating…";
  $("translate").disabled = true;
  try {
    await Promise.all(names.map((name, i) => panels[i].start(name, sentence)));
    if ($("status").textContent === "Translating…") $("status").textContent = "";
    $("yours-form").hidden = false;
  } finally {
    $("translate").disabled = false;
  }
}

async function scoreYours(event) {
  event.preventDefault();
  const target = $("yours").value.trim();
  if (!target) return;
  $("status").textContent = "";
  await Promise.all(shownPanels().filter((p) => p.state).map((p) => p.score(target)));
}

$("form").addEventListener("submit", translateAll);
$("yours-form").addEventListener("submit", scoreYours);
$("typing-mode").addEventListener("change", setMode);
$("source").addEventListener("input", () => typingMode() && typing.restart());
$("model").addEventListener("change", () => typingMode() && typing.restart());
$("source").addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || e.shiftKey) return;
  if (!typingMode()) return translateAll(e);
  e.preventDefault(); // the French box is where the translation goes on
  $("typed").focus();
});
loadModels().then(setMode).catch((error) => ($("status").textContent = `Cannot reach the service: ${error.message}`));
