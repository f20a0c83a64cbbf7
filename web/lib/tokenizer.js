// The CLIP BPE tokenizer, giving the ids of transformers' CLIPTokenizer (its `tokenizers`
// pipeline: NFC, whitespace runs to one space, lowercase; CLIP's split regex; byte-level
// symbols; BPE with "</w>" ending each word; <|startoftext|> ... <|endoftext|>; truncation
// and padding to the model's length). Runs in the page and under node (the unit tests).

const SPLIT = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\p{White_Space}\p{L}\p{N}]+/gu;
const WHITESPACE_RUN = /\p{White_Space}+/gu;
const BOS = "<|startoftext|>";
const EOS = "<|endoftext|>";

// GPT-2's reversible byte -> printable character map (the "byte-level" alphabet).
function byteAlphabet() {
  const printable = [];
  for (let b = 33; b <= 126; ++b) printable.push(b);
  for (let b = 161; b <= 172; ++b) printable.push(b);
  for (let b = 174; b <= 255; ++b) printable.push(b);
  const map = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; ++b) {
    map[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  }
  return map;
}

const BYTE_CHARS = byteAlphabet();
const UTF8 = new TextEncoder();

export class TokenizerError extends Error {}

export class ClipTokenizer {
  // vocab: {token: id}; merges: the text of merges.txt; pad: the padding token, from the
  // tokenizer's own files (CLIP pads with <|endoftext|>, SDXL's second tokenizer with "!").
  constructor(vocab, merges, { maxLength = 77, pad = EOS } = {}) {
    if (vocab === null || typeof vocab !== "object" || Array.isArray(vocab)) {
      throw new TokenizerError("vocab.json is not a JSON object of token -> id");
    }
    this.vocab = new Map(Object.entries(vocab));
    for (const [token, id] of this.vocab) {
      if (!Number.isSafeInteger(id) || id < 0) throw new TokenizerError(`vocab.json: the id of ${JSON.stringify(token)} is ${JSON.stringify(id)}, not a token id`);
    }
    for (const special of [BOS, EOS]) {
      if (!this.vocab.has(special)) throw new TokenizerError(`vocab.json lacks the special token ${special}`);
    }
    if (typeof merges !== "string") throw new TokenizerError("merges.txt is not text");
    this.ranks = new Map();
    const lines = merges.split("\n");
    let rank = 0;
    for (const [index, raw] of lines.entries()) {
      const line = raw.trim();
      if (line === "" || (index === 0 && line.startsWith("#version"))) continue;
      const parts = line.split(" ");
      if (parts.length !== 2) throw new TokenizerError(`merges.txt line ${index + 1} is not a pair: ${JSON.stringify(line)}`);
      this.ranks.set(`${parts[0]} ${parts[1]}`, rank++);
    }
    this.maxLength = maxLength;
    this.bos = this.vocab.get(BOS);
    this.eos = this.vocab.get(EOS);
    if (!this.vocab.has(pad)) throw new TokenizerError(`vocab.json lacks the pad token ${JSON.stringify(pad)}`);
    this.pad = this.vocab.get(pad);
    // transformers splits the text on special tokens before anything else; the pad token is one
    // (SDXL's "!": "cat!!" is "cat", "!", "!", not "cat", "!!").
    const specials = [...new Set([BOS, EOS, pad])].sort((a, b) => b.length - a.length);
    this.specialSplit = new RegExp(`(${specials.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "u");
    this.cache = new Map();
  }

  static async fetch(baseUrl, fetcher = fetch) {
    const load = async (name, kind) => {
      let response;
      try {
        response = await fetcher(new URL(name, baseUrl).href);
      } catch (err) {
        throw new TokenizerError(`tokenizer/${name} could not be fetched: ${err.message || err}`);
      }
      if (!response.ok) throw new TokenizerError(`tokenizer/${name} could not be fetched: HTTP ${response.status}`);
      try {
        return kind === "json" ? await response.json() : await response.text();
      } catch (err) {
        throw new TokenizerError(`tokenizer/${name} is not valid ${kind}: ${err.message || err}`);
      }
    };
    return new ClipTokenizer(await load("vocab.json", "json"), await load("merges.txt", "text"));
  }

  normalize(text) {
    return String(text).normalize("NFC").replace(WHITESPACE_RUN, " ").toLowerCase();
  }

  // Byte-level BPE of one pre-token; returns the token strings.
  bpe(word) {
    const hit = this.cache.get(word);
    if (hit) return hit;
    const symbols = Array.from(word);
    if (symbols.length === 0) return [];
    symbols[symbols.length - 1] += "</w>";
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < symbols.length; ++i) {
        const rank = this.ranks.get(`${symbols[i]} ${symbols[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      symbols.splice(best, 2, symbols[best] + symbols[best + 1]);
    }
    this.cache.set(word, symbols);
    return symbols;
  }

  // Ids of the text alone (no special tokens, no truncation).
  tokenIds(text) {
    const ids = [];
    const segments = this.normalize(text).split(this.specialSplit);
    for (const [index, segment] of segments.entries()) {
      if (index % 2 === 1) ids.push(this.vocab.get(segment)); // a special token (the split's captures)
      else this.textIds(segment, ids);
    }
    return ids;
  }

  // Ids of text without special tokens, appended to `ids`.
  textIds(text, ids) {
    for (const piece of text.match(SPLIT) || []) {
      const mapped = Array.from(UTF8.encode(piece), (b) => BYTE_CHARS[b]).join("");
      for (const token of this.bpe(mapped)) {
        const id = this.vocab.get(token);
        if (id !== undefined) {
          ids.push(id);
        } else {
          // No fused unknowns in CLIP's BPE: each unknown symbol becomes one <|endoftext|>.
          const symbols = Array.from(token.replace(/<\/w>$/, "")).length;
          for (let k = 0; k < symbols; ++k) ids.push(this.eos);
        }
      }
    }
    return ids;
  }

  // What the pipeline feeds the text encoder: BOS, ids cut to fit, EOS, then the pad token.
  // Returns {ids: Int32Array(maxLength), tokens: count before truncation, truncated}.
  encode(text) {
    const body = this.tokenIds(text);
    const room = this.maxLength - 2;
    const kept = body.slice(0, room);
    const ids = new Int32Array(this.maxLength).fill(this.pad);
    ids[0] = this.bos;
    ids.set(kept, 1);
    ids[kept.length + 1] = this.eos;
    return { ids, tokens: body.length, truncated: body.length > room };
  }
}
