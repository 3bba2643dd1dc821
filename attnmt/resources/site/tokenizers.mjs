// The tokenizers of attnmt, written again for the page so that it reads a sentence into exactly the
// tokens attnmt does: SentencePiece BPE, read from the export's own .spm file (sentencepiece's
// algorithm, bpe_model.cc), and attnmt's word rules (attnmt/tokenization.py). The tests hold both to
// the Python ones, sentence by sentence.

export const SPACE = "\u2581"; // SentencePiece's mark of a space
const SPECIALS = new Set(["<pad>", "<unk>", "<sos>", "<eos>", "<s>", "</s>"]); // never in the text
const NORMAL = 1, USER_DEFINED = 4, BYTE = 6; // SentencePiece's piece types (sentencepiece_model.proto)
const UNK = "<unk>";

// The fields of one protobuf message, bytes[start, end): [field number, value], where a value is a
// number (varint), a byte offset (fixed 32/64 bits) or [start, end) (length-delimited).
function* fields(bytes, start = 0, end = bytes.length) {
  let at = start;
  const varint = () => {
    let value = 0, shift = 0, byte;
    do {
      byte = bytes[at++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
    } while (byte & 0x80);
    return value;
  };
  while (at < end) {
    const key = varint(), field = Math.floor(key / 8), wire = key % 8;
    if (wire === 0) yield [field, varint()];
    else if (wire === 1 || wire === 5) {
      yield [field, at];
      at += wire === 1 ? 8 : 4;
    } else if (wire === 2) {
      const length = varint();
      yield [field, [at, at + length]];
      at += length;
    } else throw new Error(`not a SentencePiece model: protobuf wire type ${wire}`);
  }
}

// SentencePiece BPE: the model's pieces, merged as sentencepiece merges them.
export class SentencePieceBPE {
  // ``bytes``: a SentencePiece model file (ModelProto): pieces = 1 {piece = 1, score = 2, type = 3},
  // normalizer_spec = 3 {name = 1, add_dummy_prefix = 3, remove_extra_whitespaces = 4,
  // escape_whitespaces = 5}. attnmt's models normalize nothing (identity) and fall back to bytes.
  constructor(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const text = new TextDecoder("utf-8", { ignoreBOM: true });
    this.scores = new Map(); // the pieces merges may make, with their scores
    this.pieces = new Set(); // every piece: a symbol outside them falls back to bytes
    this.addDummyPrefix = true;
    this.removeExtraWhitespaces = true;
    this.escapeWhitespaces = true;
    this.byteFallback = false; // without it, a symbol that is no piece is <unk>
    for (const [field, value] of fields(bytes)) {
      if (field === 1) {
        let piece = "", score = 0, type = NORMAL;
        for (const [f, v] of fields(bytes, ...value)) {
          if (f === 1) piece = text.decode(bytes.subarray(...v));
          else if (f === 2) score = view.getFloat32(v, true);
          else if (f === 3) type = v;
        }
        this.pieces.add(piece);
        if (type === NORMAL) this.scores.set(piece, score);
        if (type === BYTE) this.byteFallback = true;
        if (type === USER_DEFINED) throw new Error(`user-defined piece ${piece}: not supported here`);
      } else if (field === 3) {
        for (const [f, v] of fields(bytes, ...value)) {
          if (f === 1 && text.decode(bytes.subarray(...v)) !== "identity") {
            throw new Error("a SentencePiece model that normalizes text: not supported here (attnmt's do not)");
          } else if (f === 3) this.addDummyPrefix = Boolean(v);
          else if (f === 4) this.removeExtraWhitespaces = Boolean(v);
          else if (f === 5) this.escapeWhitespaces = Boolean(v);
        }
      }
    }
  }

  normalize(text) {
    text = text.normalize("NFC"); // attnmt's, before SentencePiece's own (identity) normalization
    if (this.removeExtraWhitespaces) text = text.replace(/ +/g, " ").replace(/^ | $/g, "");
    if (!text) return "";
    if (this.addDummyPrefix) text = " " + text;
    return this.escapeWhitespaces ? text.replaceAll(" ", SPACE) : text;
  }

  // Characters, then again and again the adjacent pair whose join is the best-scoring piece (the
  // leftmost of equals) merged; a symbol that is no piece becomes its UTF-8 bytes, <0xXX>.
  tokenize(text) {
    const symbols = Array.from(this.normalize(text));
    for (;;) {
      let best = -1, bestScore = -Infinity;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const score = this.scores.get(symbols[i] + symbols[i + 1]);
        if (score !== undefined && score > bestScore) {
          best = i;
          bestScore = score;
        }
      }
      if (best < 0) break;
      symbols.splice(best, 2, symbols[best] + symbols[best + 1]);
    }
    const utf8 = new TextEncoder();
    const fallback = (s) => (this.byteFallback ? Array.from(utf8.encode(s), byteToken) : [UNK]);
    return symbols.flatMap((s) => (this.pieces.has(s) ? [s] : fallback(s)));
  }

  // As sentencepiece's DecodePieces: ▁ is a space inside pieces, not inside bytes; the first ▁ of the
  // text (the dummy prefix) goes; a run of byte pieces is UTF-8, one U+FFFD per byte that is not.
  detokenize(tokens) {
    let text = "", bytes = [], leadingSpace = this.addDummyPrefix || this.removeExtraWhitespaces;
    const flush = () => {
      text += decodeBytes(bytes);
      bytes = [];
    };
    for (const token of tokens) {
      if (SPECIALS.has(token)) continue;
      const byte = /^<0x([0-9A-F]{2})>$/.exec(token);
      if (byte) {
        bytes.push(parseInt(byte[1], 16));
        continue;
      }
      flush();
      let piece = token;
      if (leadingSpace && !text && piece.startsWith(SPACE)) {
        piece = piece.slice(1);
        leadingSpace = false;
      }
      text += piece.replaceAll(SPACE, " ");
    }
    flush();
    return text;
  }
}

const byteToken = (b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
const strictUTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// UTF-8 bytes as text, one character at a time; a byte that begins no valid character is U+FFFD.
function decodeBytes(bytes) {
  let text = "";
  for (let at = 0; at < bytes.length;) {
    const lead = bytes[at], length = lead < 0x80 ? 1 : lead >> 5 === 6 ? 2 : lead >> 4 === 14 ? 3 : lead >> 3 === 30 ? 4 : 0;
    try {
      if (!length || at + length > bytes.length) throw new TypeError("not a character");
      text += strictUTF8.decode(new Uint8Array(bytes.slice(at, at + length)));
      at += length;
    } catch {
      text += "\ufffd";
      at += 1;
    }
  }
  return text;
}

// attnmt's word tokenizer: words, elided clitics (l', qu'), numbers, single punctuation marks.
const W = "\\p{L}\\p{N}_"; // Python's \w
const ELIDED = "(?:[Jj]usqu|[Ll]orsqu|[Pp]uisqu|[Qq]uoiqu|[Qq]u|[CcDdJjLlMmNnSsTt])['’]";
const S = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"; // Python's \s
const TOKEN = new RegExp(
  `${ELIDED}(?=[${W}])|\\p{Nd}+(?:[.,]\\p{Nd}+)+|[${W}]+(?:['’-][${W}]+)*|[^${W}${S}]`,
  "gu",
);
const CLITIC = new RegExp(`^${ELIDED}$`, "u");
const NO_SPACE_BEFORE = new Set(".,)]}%…»!?:;");
const NO_SPACE_AFTER = new Set("([{«");
const FRENCH_SPACE_BEFORE = new Set("!?:;»");
const FRENCH_SPACE_AFTER = new Set("«");

export class WordTokenizer {
  constructor(lang) {
    this.lang = lang;
  }

  tokenize(text) {
    return text.normalize("NFC").match(TOKEN) || [];
  }

  // Tokens joined with the spacing of the language (French: a space before ? ! : ;).
  detokenize(tokens) {
    const french = this.lang === "fr";
    let out = "", glue = true, openQuote = false;
    for (const token of tokens) {
      if (token === '"') {
        out += (!glue && !openQuote ? " " : "") + token;
        openQuote = !openQuote;
        glue = openQuote;
        continue;
      }
      const space = NO_SPACE_BEFORE.has(token) && !(french && FRENCH_SPACE_BEFORE.has(token)) ? false : !glue;
      out += (space ? " " : "") + token;
      glue = CLITIC.test(token) || (NO_SPACE_AFTER.has(token) && !(french && FRENCH_SPACE_AFTER.has(token)));
    }
    return out;
  }
}
