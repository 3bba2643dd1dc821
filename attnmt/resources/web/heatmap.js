// The attention heatmap, shared by the explorer (served by `attnmt serve`) and the page that
// `attnmt export --to web` writes: a grid of weights between the words (or tokens) of two sides, and
// hovering a word or a cell lights up what it attended to. A classic script: it defines globals.
"use strict";

const $ = (id) => document.getElementById(id);

// SentencePiece marks a word's start with ▁; the page shows the pieces without it
const shown = (tokens) => tokens.map((t) => (t === "<eos>" ? "⏎" : t.replace(/^\u2581/, "") || t));
const isPiece = (token) => token.startsWith("\u2581");
const isSpecial = (token) => /^<.+>$/.test(token);

// A translator reads words, not subword pieces: the [first, last) token spans of the words of ``tokens``.
// A SentencePiece word is its ▁ piece and the pieces after it; a word model's token is a word, and so is
// a special token (<sos>, <eos>).
function wordSpans(tokens, pieces = tokens.some(isPiece)) {
  const spans = [];
  tokens.forEach((t, i) => {
    if (!spans.length || !pieces || isPiece(t) || isSpecial(t) || isSpecial(tokens[i - 1])) spans.push([i, i + 1]);
    else spans[spans.length - 1][1] = i + 1;
  });
  return spans;
}

const spelled = (tokens, spans) => shown(spans.map(([first, last]) => tokens.slice(first, last).join("")));

// Attention between words: a word's row is the mean of its tokens' rows (so it still sums to 1), its
// column the sum of its tokens' columns.
function betweenWords(weights, rowSpans, columnSpans) {
  return rowSpans.map(([a, b]) => columnSpans.map(([c, d]) => {
    let total = 0;
    for (let i = a; i < b; i++) for (let j = c; j < d; j++) total += weights[i][j];
    return total / (b - a);
  }));
}

// Something drawn inside its own element, ``root``.
class View {
  part(selector) {
    return this.root.querySelector(selector);
  }

  all(selector) {
    return this.root.querySelectorAll(selector);
  }
}

// An attention map: the grid, and above it the words of both sides; hovering a word or a cell lights up
// the words it attended to (or that attended to it).
class Heatmap extends View {
  constructor(parent) {
    super();
    this.root = $("heatmap-template").content.firstElementChild.cloneNode(true);
    parent.append(this.root);
  }

  // ``weights[i][j]``: how much row word i attended to column word j.
  draw(weights, rows, columns, rowsLabel, columnsLabel) {
    this.weights = weights;
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
        cell.addEventListener("mouseenter", () => this.focusRow(i));
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
    span.addEventListener("mouseenter", () => (axis === "row" ? this.focusRow(index) : this.focusColumn(index)));
    span.addEventListener("mouseleave", () => this.clearFocus());
    return span;
  }

  heading(word, axis, index) {
    const span = this.token(word, axis, index);
    span.className = `heading ${axis}`;
    return span;
  }

  // Hovering row word i: each column word lights up as much as i attended to it.
  focusRow(i) {
    this.clearFocus();
    this.all(`.row[data-index="${i}"]`).forEach((e) => e.classList.add("focus"));
    this.all(".column-tokens .token").forEach((e, j) => light(e, this.weights[i][j]));
    this.all(`.cell[data-row="${i}"]`).forEach((e) => e.classList.add("focus"));
  }

  // Hovering column word j: each row word lights up as much as it attended to j.
  focusColumn(j) {
    this.clearFocus();
    this.all(`.column[data-index="${j}"]`).forEach((e) => e.classList.add("focus"));
    this.all(".row-tokens .token").forEach((e, i) => light(e, this.weights[i][j]));
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
