// attnmt's page: ask /translate for a translation with its attention and, for each word, the words the
// model would have put there instead; draw it, light up what hovering points at; a picked word is sent
// back as a prefix and the model writes the rest; /score reads the user's own translation.
"use strict";

const $ = (id) => document.getElementById(id);
const TOP_K = 6; // alternatives offered per word
const panels = []; // one per model shown side by side
let modelInfo = {}; // name → what GET /models says of it
const topK = (model) => (modelInfo[model] && modelInfo[model].alternatives ? TOP_K : 0); // an export may give none

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

// SentencePiece marks a word's start with ▁; the page shows the pieces without it
const shown = (tokens) => tokens.map((t) => (t === "<eos>" ? "⏎" : t.replace(/^\u2581/, "") || t));
const probability = (logProb) => Math.exp(logProb);
const colour = (p) => `hsl(${Math.round(120 * p)}, 80%, 82%)`; // red: unlikely … green: likely

class Panel {
  constructor(index) {
    this.root = $("panel-template").content.firstElementChild.cloneNode(true);
    this.root.id = `panel-${index}`;
    this.root.dataset.version = "0"; // counts what the panel has drawn: tests and timings wait on it
    this.history = []; // earlier states, for undo
    this.state = null;
    this.asked = 0; // the latest request: an older answer arriving late is dropped
    this.part(".undo").addEventListener("click", () => this.undo());
    this.part(".kind").addEventListener("change", () => this.fillLayers());
    this.part(".layer").addEventListener("change", () => this.draw());
    this.part(".head").addEventListener("change", () => this.draw());
    this.root.addEventListener("keydown", (e) => this.onKey(e));
    $("panels").append(this.root);
  }

  part(selector) {
    return this.root.querySelector(selector);
  }

  all(selector) {
    return this.root.querySelectorAll(selector);
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

  // The translation begins with ``prefix`` (up to the word picked at ``position``); the model writes the rest.
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

  // The translation as buttons, one per token, coloured by how likely the model finds it there.
  showWords() {
    const { tokens, log_probs: logProbs } = this.state;
    const words = shown(tokens).map((text, i) => {
      const word = document.createElement("button");
      word.type = "button";
      word.className = "word";
      if (/^[^\u2581]/.test(tokens[i]) && tokens.some((t) => t.startsWith("\u2581"))) word.classList.add("piece");
      word.textContent = text;
      word.dataset.index = i;
      let label = tokens[i] === "<eos>" ? "end of sentence" : text;
      if (logProbs) { // absent where the model gives no alternatives
        const p = probability(logProbs[i]);
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

  // The words the model would have put at position i instead, best first; Enter or a click picks one.
  openChoices(i) {
    this.closeChoices();
    const { tokens, candidates } = this.state;
    const word = this.all(".word")[i];
    const list = this.part(".choices");
    const title = document.createElement("p");
    title.className = "choices-title";
    title.textContent = candidates ? `Instead of “${shown([tokens[i]])[0]}”:` : "This model gives no alternatives.";
    const options = (candidates ? candidates[i] : []).map((c) => {
      const option = document.createElement("button");
      const p = probability(c.log_prob);
      option.type = "button";
      option.className = "choice";
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", String(c.token === tokens[i]));
      option.textContent = `${c.token === "<eos>" ? "⏎ (end)" : shown([c.token])[0]}  ${(100 * p).toFixed(1)} %`;
      option.style.borderLeftColor = colour(p);
      option.dataset.token = c.token;
      if (c.prefix === undefined) {
        option.disabled = true; // no text begins with <eos> or <unk>
      } else {
        option.dataset.prefix = c.prefix;
        option.addEventListener("click", () => this.pick(c.prefix, i));
      }
      return option;
    });
    list.replaceChildren(title, ...options);
    list.hidden = false;
    list.dataset.position = i;
    word.setAttribute("aria-expanded", "true");
    word.classList.add("open");
    const first = options.find((o) => !o.disabled);
    if (first) first.focus();
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
      const options = [...this.all(".choice:not([disabled])")];
      const at = options.indexOf(target);
      const step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 }[event.key];
      if (step) options[(at + step + options.length) % options.length].focus();
      else if (event.key === "Escape") this.closeChoices(true);
      else if (event.key === "Home") options[0].focus();
      else if (event.key === "End") options[options.length - 1].focus();
      else return this.undoKey(event);
      event.preventDefault();
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
    return layer[0].map((row, i) => row.map((_, j) => layer.reduce((sum, h) => sum + h[i][j], 0) / layer.length));
  }

  labels() {
    const kind = this.part(".kind").value, src = shown(this.state.src_tokens), tgt = shown(this.state.tokens);
    if (kind === "encoder") return [src, src, "English", "English"];
    if (kind === "decoder") return [tgt, ["<sos>", ...tgt.slice(0, -1)], "French", "French so far"];
    return [tgt, src, "French", "English"];
  }

  draw() {
    const weights = this.matrix();
    const [rows, columns, rowsLabel, columnsLabel] = this.labels();
    this.part(".rows-label").textContent = rowsLabel;
    this.part(".columns-label").textContent = columnsLabel;
    this.part(".row-tokens").replaceChildren(...rows.map((w, i) => this.token(w, "row", i)));
    this.part(".column-tokens").replaceChildren(...columns.map((w, j) => this.token(w, "column", j)));
    const grid = this.part(".heatmap");
    grid.style.gridTemplateColumns = `max-content repeat(${columns.length}, 1.9em)`;
    const cells = [document.createElement("span")];
    columns.forEach((w, j) => cells.push(this.heading(w, "column", j)));
    rows.forEach((w, i) => {
      cells.push(this.heading(w, "row", i));
      columns.forEach((_, j) => {
        const cell = document.createElement("span");
        cell.className = "cell";
        cell.dataset.row = i;
        cell.dataset.column = j;
        cell.style.background = `rgba(20, 70, 180, ${weights[i][j]})`;
        cell.title = `${rows[i]} → ${columns[j]}: ${weights[i][j].toFixed(3)}`;
        cell.addEventListener("mouseenter", () => this.focusRow(i, weights));
        cells.push(cell);
      });
    });
    grid.replaceChildren(...cells);
    grid.onmouseleave = () => this.clearFocus();
  }

  token(word, axis, index) {
    const span = document.createElement("span");
    span.className = `token ${axis}`;
    span.dataset.index = index;
    span.textContent = word;
    span.addEventListener("mouseenter", () => (axis === "row" ? this.focusRow : this.focusColumn).call(this, index, this.matrix()));
    span.addEventListener("mouseleave", () => this.clearFocus());
    return span;
  }

  heading(word, axis, index) {
    const span = this.token(word, axis, index);
    span.className = `heading ${axis}`;
    return span;
  }

  // Hovering target word i: each source word j lights up as much as i attended to it.
  focusRow(i, weights) {
    this.clearFocus();
    this.all(`.row[data-index="${i}"]`).forEach((e) => e.classList.add("focus"));
    this.all(".column-tokens .token").forEach((e, j) => light(e, weights[i][j]));
    this.all(`.cell[data-row="${i}"]`).forEach((e) => e.classList.add("focus"));
  }

  // Hovering source word j: each target word lights up as much as it attended to j.
  focusColumn(j, weights) {
    this.clearFocus();
    this.all(`.column[data-index="${j}"]`).forEach((e) => e.classList.add("focus"));
    this.all(".row-tokens .token").forEach((e, i) => light(e, weights[i][j]));
    this.all(`.cell[data-column="${j}"]`).forEach((e) => e.classList.add("focus"));
  }

  clearFocus() {
    this.all(".focus").forEach((e) => e.classList.remove("focus"));
    this.all(".lit").forEach((e) => {
      e.classList.remove("lit");
      e.style.background = "";
      delete e.dataset.weight;
    });
  }
}

function light(element, weight) {
  element.classList.add("lit");
  element.dataset.weight = weight.toFixed(3);
  element.style.background = `rgba(255, 170, 0, ${Math.min(1, weight * 1.5)})`;
}

const shownPanels = () => panels.filter((p) => !p.root.hidden);

async function translateAll(event) {
  event.preventDefault();
  const sentence = $("source").value.trim() || $("source").placeholder;
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
$("source").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) translateAll(e);
});
loadModels().catch((error) => ($("status").textContent = `Cannot reach the service: ${error.message}`));
