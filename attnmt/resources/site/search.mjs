// attnmt's greedy and beam search (attnmt/search.py), for one sentence, written again for the page so
// that it chooses exactly the tokens attnmt does. ``model.step(tokens, state)`` reads one token per row
// and gives { logProbs: Float32Array (rows × V), state, attention: Float32Array (rows × S) or null };
// ``model.reorder(state, rows, sameSource)`` keeps the given rows (the source's part as it is with
// ``sameSource``). Scores add in float32, as in PyTorch.

export const PAD = 0, SOS = 2, EOS = 3;

// The most words a translation may have (search.max_output_length): ``sourceLength`` counts its <eos>.
export const maxOutputLength = (sourceLength) => 2 * sourceLength + 10;

// GNMT's length penalty, |Y| counting <eos> (search.length_penalty).
const lengthPenalty = (length, alpha) => ((5 + length) / 6) ** alpha;

// Rule out, in row ``row``, what may not follow ``words`` words (search.constrain).
function constrain(logProbs, row, vocab, words, maxLength) {
  const at = row * vocab;
  logProbs[at + PAD] = -Infinity;
  logProbs[at + SOS] = -Infinity;
  if (words >= maxLength) {
    const eos = logProbs[at + EOS];
    logProbs.fill(-Infinity, at, at + vocab);
    logProbs[at + EOS] = eos;
  }
}

const rowOf = (array, row, width) => (array ? array.slice(row * width, (row + 1) * width) : null);

// The likeliest word at each step until <eos>: { tokens (without <eos>), score, attention (a row per
// token, <eos> last, or null) }.
export async function greedy(model, state, sourceLength) {
  const maxLength = maxOutputLength(sourceLength);
  const tokens = [], rows = [];
  let score = 0, previous = SOS;
  for (let t = 0; t <= maxLength; t++) {
    const out = await model.step([previous], state);
    const vocab = out.logProbs.length;
    constrain(out.logProbs, 0, vocab, t, maxLength);
    let best = 0;
    for (let v = 1; v < vocab; v++) if (out.logProbs[v] > out.logProbs[best]) best = v;
    score = Math.fround(score + out.logProbs[best]);
    state = out.state;
    if (out.attention) rows.push(out.attention);
    if (best === EOS) break;
    tokens.push(best);
    previous = best;
  }
  return { tokens, score, attention: rows.length ? rows : null };
}

// The ``size`` best of ``scores`` (flat), best first, the lower index first among equals.
function topK(scores, size) {
  const best = []; // [score, index], best first
  for (let i = 0; i < scores.length; i++) {
    const s = scores[i];
    if (best.length === size && !(s > best[size - 1][0])) continue;
    let at = best.length === size ? size - 1 : best.length;
    while (at > 0 && s > best[at - 1][0]) at--;
    best.splice(at, 0, [s, i]);
    if (best.length > size) best.pop();
  }
  return best;
}

// Beam search (search.beam_search with n_best 1): ``size`` prefixes kept; a hypothesis ends when <eos>
// is among the ``size`` best extensions; done when the best ended one ranks at or above the best live
// prefix as that would rank ending at the next step.
export async function beam(model, state, sourceLength, size, alpha = 1) {
  const maxLength = maxOutputLength(sourceLength);
  let out = await model.step([SOS], state);
  const vocab = out.logProbs.length, width = out.attention ? out.attention.length : 0;
  const tiled = new Array(size).fill(0);
  let logProbs = new Float32Array(size * vocab);
  for (let j = 0; j < size; j++) logProbs.set(out.logProbs, j * vocab);
  let attention = out.attention ? new Float32Array(size * width) : null;
  if (attention) for (let j = 0; j < size; j++) attention.set(out.attention, j * width);
  state = model.reorder(out.state, tiled, false);
  let beams = Array.from({ length: size }, (_, j) => ({ score: j ? -Infinity : 0, tokens: [], rows: [] }));
  const finished = [];
  for (;;) {
    const t = beams[0].tokens.length;
    const cumulative = new Float32Array(size * vocab);
    for (let j = 0; j < size; j++) {
      constrain(logProbs, j, vocab, t, maxLength);
      for (let v = 0; v < vocab; v++) cumulative[j * vocab + v] = beams[j].score + logProbs[j * vocab + v];
    }
    const extensions = topK(cumulative, 2 * size).map(([score, index]) => ({
      score, token: index % vocab, row: Math.floor(index / vocab),
    }));
    const through = (row) => (attention ? [...beams[row].rows, rowOf(attention, row, width)] : []);
    extensions.slice(0, size).forEach(({ score, token, row }) => {
      if (token === EOS && Number.isFinite(score)) {
        const tokens = beams[row].tokens;
        finished.push({ ranked: score / lengthPenalty(tokens.length + 1, alpha), tokens, score, rows: through(row) });
      }
    });
    const going = extensions.filter((e) => e.token !== EOS).slice(0, size);
    beams = going.map(({ score, token, row }) => ({
      score, tokens: [...beams[row].tokens, token], rows: through(row),
    }));
    const bestLive = Math.max(...beams.map((b) => b.score));
    const bestEnded = Math.max(...finished.map((f) => f.ranked));
    if (finished.length && bestEnded >= bestLive / lengthPenalty(t + 2, alpha)) break;
    state = model.reorder(state, going.map((e) => e.row), true);
    out = await model.step(beams.map((b) => b.tokens[t]), state);
    ({ logProbs, attention, state } = out);
  }
  let best = finished[0];
  for (const f of finished) if (f.ranked > best.ranked) best = f;
  return { tokens: best.tokens, score: best.score, attention: width ? best.rows : null };
}
