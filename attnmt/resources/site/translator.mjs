// The exported model in the page: its two ONNX graphs run by onnxruntime-web (WebAssembly, on this
// machine's CPU), attnmt's search over them, its vocabularies and tokenizers. What
// attnmt/onnx_model.py does in Python, for one sentence at a time.
import * as ort from "./ort.wasm.min.mjs";
import { beam, greedy } from "./search.mjs";
import { SentencePieceBPE, WordTokenizer } from "./tokenizers.mjs";

const UNK = 1;

async function fetched(name) {
  const response = await fetch(name);
  if (!response.ok) throw new Error(`${name}: ${response.status} ${response.statusText}`);
  return response;
}

const int64 = (values, dims) => new ort.Tensor("int64", BigInt64Array.from(values, BigInt), dims);

// ``tensor`` with only the given ``rows`` along ``axis``, in that order (a batch reordered).
function gather(tensor, axis, rows) {
  const dims = tensor.dims, inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1), data = tensor.data;
  const out = new data.constructor(outer * rows.length * inner);
  for (let o = 0; o < outer; o++) {
    rows.forEach((row, r) => {
      const from = (o * dims[axis] + row) * inner;
      out.set(data.subarray(from, from + inner), (o * rows.length + r) * inner);
    });
  }
  return new ort.Tensor(tensor.type, out, [...dims.slice(0, axis), rows.length, ...dims.slice(axis + 1)]);
}

// What of ``values`` the session reads: the exporter drops the inputs a graph never uses.
const inputs = (session, values) => Object.fromEntries(session.inputNames.map((name) => [name, values[name]]));

// A GRU model's graphs: encoder.onnx reads the sentence; step.onnx one token per row, with the hidden
// state and input feed in and out, the source's states and attention keys alongside.
class GRU {
  constructor(encoder, step, attention) {
    Object.assign(this, { encoder, step_: step, attention });
  }

  async encode(ids) {
    const out = await this.encoder.run({ src: int64(ids, [1, ids.length]) });
    const fixed = out.fixed_context;
    return {
      hidden: out.hidden, memory: out.memory, keys: out.keys, fixed_context: fixed,
      feed: new ort.Tensor("float32", new Float32Array(fixed.data.length), fixed.dims),
      src_pad_mask: new ort.Tensor("bool", new Uint8Array(ids.length), [1, ids.length]),
    };
  }

  async step(tokens, state) {
    const out = await this.step_.run(inputs(this.step_, { tokens: int64(tokens, [tokens.length]), ...state }));
    return {
      logProbs: out.log_probs.data, attention: this.attention ? out.attention.data : null,
      state: { ...state, hidden: out.next_hidden, feed: out.next_feed },
    };
  }

  // With ``sameSource`` the rows all translate one sentence already: the source's part stays.
  reorder(state, rows, sameSource) {
    const moved = { ...state, hidden: gather(state.hidden, 1, rows), feed: gather(state.feed, 0, rows) };
    if (!sameSource) for (const name of ["memory", "keys", "fixed_context", "src_pad_mask"]) moved[name] = gather(state[name], 0, rows);
    return moved;
  }
}

// A Transformer's graphs: encoder.onnx gives every decoder layer's cross-attention keys and values;
// step.onnx reads one token per row at ``position`` with the self-attention keys and values so far.
class Transformer {
  attention = true;

  constructor(encoder, step) {
    Object.assign(this, { encoder, step_: step });
  }

  async encode(ids) {
    const src_pad_mask = new ort.Tensor("bool", new Uint8Array(ids.length), [1, ids.length]);
    const out = await this.encoder.run({ src: int64(ids, [1, ids.length]), src_pad_mask });
    const [layers, , heads, , size] = out.memory_keys.dims;
    const nothing = new ort.Tensor("float32", new Float32Array(0), [layers, 1, heads, 0, size]);
    return {
      past_keys: nothing, past_values: nothing, memory_keys: out.memory_keys, memory_values: out.memory_values,
      src_pad_mask,
    };
  }

  async step(tokens, state) {
    const position = int64([state.past_keys.dims[3]], []);
    const out = await this.step_.run(inputs(this.step_, { tokens: int64(tokens, [tokens.length]), position, ...state }));
    return {
      logProbs: out.log_probs.data, attention: out.attention.data,
      state: { ...state, past_keys: out.next_keys, past_values: out.next_values },
    };
  }

  reorder(state, rows, sameSource) {
    const moved = { ...state, past_keys: gather(state.past_keys, 1, rows), past_values: gather(state.past_values, 1, rows) };
    if (!sameSource) {
      for (const name of ["memory_keys", "memory_values"]) moved[name] = gather(state[name], 1, rows);
      moved.src_pad_mask = gather(state.src_pad_mask, 0, rows);
    }
    return moved;
  }
}

export class Translator {
  // The export in the page's own folder: page.json, the vocabularies, the tokenizers, the graphs, all
  // asked for at once (a joint vocabulary and its tokenizer once, for both sides).
  static async load() {
    ort.env.wasm.wasmPaths = new URL("./", import.meta.url).href; // this folder, never a CDN
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency) : 1;
    const json = async (name) => (await fetched(name)).json();
    const session = async (name) => ort.InferenceSession.create(
      new Uint8Array(await (await fetched(name)).arrayBuffer()), // fetched while WebAssembly compiles
      { executionProviders: ["wasm"] },
    );
    const sessions = Promise.all([session("encoder.onnx"), session("step.onnx")]).then((both) => {
      performance.mark("attnmt:sessions"); // WebAssembly compiled, both graphs fetched and ready
      return both;
    });
    const page = await json("page.json");
    const word = page.tokenizer === "word", joint = page.joint_vocabulary; // joint: the same files both sides
    const bpe = async (side) => new SentencePieceBPE(new Uint8Array(await (await fetched(`${side}.spm`)).arrayBuffer()));
    const srcVocab = json("src_vocab.json"), srcBpe = word ? null : bpe("src");
    const [src, tgt, srcSpm, tgtSpm, [encoder, step]] = await Promise.all([
      srcVocab, joint ? srcVocab : json("tgt_vocab.json"), srcBpe, word ? null : joint ? srcBpe : bpe("tgt"), sessions,
    ]);
    const srcTokenizer = srcSpm ?? new WordTokenizer(page.src_lang), tgtTokenizer = tgtSpm ?? new WordTokenizer(page.tgt_lang);
    const model = page.architecture === "transformer" ? new Transformer(encoder, step) : new GRU(encoder, step, page.attention);
    return new Translator(page, model, src.tokens, tgt.tokens, srcTokenizer, tgtTokenizer);
  }

  constructor(page, model, srcVocab, tgtVocab, srcTokenizer, tgtTokenizer) {
    Object.assign(this, { page, model, tgtVocab, srcTokenizer, tgtTokenizer });
    this.srcIds = new Map(srcVocab.map((token, id) => [token, id]));
  }

  // The translation of ``sentence`` (greedy for ``beamSize`` 1): its text, tokens (<eos> last), the
  // source tokens the encoder read (<eos> last), log-probability, attention (a row per token) or null.
  async translate(sentence, beamSize = 1, alpha = 1) {
    const srcTokens = [...this.srcTokenizer.tokenize(sentence), "<eos>"];
    if (srcTokens.length === 1) return { text: "", tokens: [], srcTokens: [], score: 0, attention: null };
    const ids = srcTokens.map((token) => this.srcIds.get(token) ?? UNK);
    const state = await this.model.encode(ids);
    const found = beamSize === 1
      ? await greedy(this.model, state, ids.length)
      : await beam(this.model, state, ids.length, beamSize, alpha);
    const tokens = found.tokens.map((id) => this.tgtVocab[id]);
    return {
      text: this.tgtTokenizer.detokenize(tokens), tokens: [...tokens, "<eos>"], srcTokens, score: found.score,
      attention: found.attention && found.attention.map((row) => Array.from(row)),
    };
  }
}
