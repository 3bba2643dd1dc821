// attnmt's page: ask /translate for a translation with its attention, draw it, light up what hovering points at.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // the last translation, as the API returned it

async function loadModels() {
  const response = await fetch("/models");
  const models = await response.json();
  $("model").replaceChildren(...models.map((m) => new Option(`${m.name} (${m.architecture}, ${m.attention})`, m.name)));
}

async function translate(event) {
  event.preventDefault();
  const sentence = $("source").value.trim() || $("source").placeholder;
  const beam = Number($("beam").value);
  const body = {
    sentences: [sentence], model: $("model").value, beam,
    n_best: $("alternatives").checked ? beam : 1, attention: true,
  };
  $("status").textContent = "Translating…";
  $("translate").disabled = true;
  try {
    const response = await fetch("/translate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
    current = data.translations[0];
    $("status").textContent = "";
    show(data.model, current);
  } catch (error) {
    $("status").textContent = `Error: ${error.message}`;
  } finally {
    $("translate").disabled = false;
  }
}

function show(model, t) {
  $("result").hidden = false;
  $("translation").textContent = t.text;
  $("model-name").textContent = model;
  $("score").textContent = t.score.toFixed(3);
  $("alternatives-list").replaceChildren(...(t.alternatives || []).map((a) => {
    const item = document.createElement("li");
    item.textContent = `${a.text}  (log p ${a.score.toFixed(3)})`;
    return item;
  }));
  const kinds = Object.keys(t.maps || {});
  $("kind").replaceChildren(...kinds.map((k) => new Option(
    { cross: "target → source", encoder: "encoder self-attention", decoder: "decoder self-attention" }[k], k)));
  $("view").hidden = kinds.length === 0;
  fillLayers();
}

function fillLayers() {
  const maps = current.maps[$("kind").value];
  const layers = maps.length, heads = maps[0].length;
  $("layer").replaceChildren(...[...Array(layers).keys()].map((i) => new Option(`${i + 1}`, i)));
  $("layer").value = layers - 1;
  $("head").replaceChildren(new Option("average", "avg"), ...[...Array(heads).keys()].map((i) => new Option(`${i + 1}`, i)));
  $("layer").disabled = layers === 1;
  $("head").disabled = heads === 1;
  draw();
}

function matrix() {
  const layer = current.maps[$("kind").value][Number($("layer").value)];
  const head = $("head").value;
  if (head !== "avg") return layer[Number(head)];
  return layer[0].map((row, i) => row.map((_, j) => layer.reduce((sum, h) => sum + h[i][j], 0) / layer.length));
}

// SentencePiece marks a word's start with ▁; the page shows the pieces without it
const shown = (tokens) => tokens.map((t) => t.replace(/^\u2581/, "") || t);

function labels() {
  const kind = $("kind").value, src = shown(current.src_tokens), tgt = shown(current.tokens);
  if (kind === "encoder") return [src, src, "English", "English"];
  if (kind === "decoder") return [tgt, ["<sos>", ...tgt.slice(0, -1)], "French", "French so far"];
  return [tgt, src, "French", "English"];
}

function draw() {
  const weights = matrix();
  const [rows, columns, rowsLabel, columnsLabel] = labels();
  $("rows-label").textContent = rowsLabel;
  $("columns-label").textContent = columnsLabel;
  $("row-tokens").replaceChildren(...rows.map((w, i) => token(w, "row", i)));
  $("column-tokens").replaceChildren(...columns.map((w, j) => token(w, "column", j)));
  const grid = $("heatmap");
  grid.style.gridTemplateColumns = `max-content repeat(${columns.length}, 1.9em)`;
  const cells = [document.createElement("span")];
  columns.forEach((w, j) => cells.push(heading(w, "column", j)));
  rows.forEach((w, i) => {
    cells.push(heading(w, "row", i));
    columns.forEach((_, j) => {
      const cell = document.createElement("span");
      cell.className = "cell";
      cell.dataset.row = i;
      cell.dataset.column = j;
      cell.style.background = `rgba(20, 70, 180, ${weights[i][j]})`;
      cell.title = `${rows[i]} → ${columns[j]}: ${weights[i][j].toFixed(3)}`;
      cell.addEventListener("mouseenter", () => focusRow(i, weights));
      cells.push(cell);
    });
  });
  grid.replaceChildren(...cells);
  grid.onmouseleave = clearFocus;
}

function token(word, axis, index) {
  const span = document.createElement("span");
  span.className = `token ${axis}`;
  span.dataset.index = index;
  span.textContent = word;
  span.addEventListener("mouseenter", () => (axis === "row" ? focusRow : focusColumn)(index, matrix()));
  span.addEventListener("mouseleave", clearFocus);
  return span;
}

function heading(word, axis, index) {
  const span = token(word, axis, index);
  span.className = `heading ${axis}`;
  return span;
}

// Hovering target word i: each source word j lights up as much as i attended to it.
function focusRow(i, weights) {
  clearFocus();
  document.querySelectorAll(`.row[data-index="${i}"]`).forEach((e) => e.classList.add("focus"));
  document.querySelectorAll("#column-tokens .token").forEach((e, j) => light(e, weights[i][j]));
  document.querySelectorAll(`.cell[data-row="${i}"]`).forEach((e) => e.classList.add("focus"));
}

// Hovering source word j: each target word lights up as much as it attended to j.
function focusColumn(j, weights) {
  clearFocus();
  document.querySelectorAll(`.column[data-index="${j}"]`).forEach((e) => e.classList.add("focus"));
  document.querySelectorAll("#row-tokens .token").forEach((e, i) => light(e, weights[i][j]));
  document.querySelectorAll(`.cell[data-column="${j}"]`).forEach((e) => e.classList.add("focus"));
}

function light(element, weight) {
  element.classList.add("lit");
  element.dataset.weight = weight.toFixed(3);
  element.style.background = `rgba(255, 170, 0, ${Math.min(1, weight * 1.5)})`;
}

function clearFocus() {
  document.querySelectorAll(".focus").forEach((e) => e.classList.remove("focus"));
  document.querySelectorAll(".lit").forEach((e) => {
    e.classList.remove("lit");
    e.style.background = "";
    delete e.dataset.weight;
  });
}

$("form").addEventListener("submit", translate);
$("source").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) translate(e);
});
$("kind").addEventListener("change", fillLayers);
$("layer").addEventListener("change", draw);
$("head").addEventListener("change", draw);
loadModels().catch((error) => ($("status").textContent = `Cannot reach the service: ${error.message}`));
