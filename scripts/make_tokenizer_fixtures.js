// make_tokenizer_fixtures.js — writes tests/fixtures/tokenizer/reference.json: GPT-2 and RoBERTa
// token ids from two independent JavaScript tokenizers, for tests/test_tokenizer.cpp to match.
//
// Run once (the output is committed; node_modules never is):
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm init -y
//   npm install gpt-3-encoder@1.1.4 @huggingface/tokenizers@0.2.0
//   node /path/to/fourierft/scripts/make_tokenizer_fixtures.js
//
// References:
//   A  gpt-3-encoder (OpenAI's encoder.py ported to JS): pre-tokeniser regex + its own bpe().
//   B  @huggingface/tokenizers (tokenizers.js): a BPE model + ByteLevel pre-tokenizer built from
//      the same vocab.json / merges.txt; for RoBERTa also the RobertaProcessing template and the
//      added tokens of HF's roberta-base tokenizer.json (`<mask>` has lstrip).
// The script aborts unless A and B agree on every case both can take. RoBERTa ids come two ways:
// A's BPE token strings looked up in RoBERTa's vocab.json, and B run on the RoBERTa files.
//
// Two kinds of case need a stated convention, because JavaScript strings cannot carry them:
//   * invalid UTF-8: each byte that does not start a valid sequence (RFC 3629: no overlongs, no
//     surrogates, <= U+10FFFF) is one "invalid byte"; it is pre-tokenised like a symbol
//     (as U+FFFD would be: neither \s, \p{L} nor \p{N}) but encoded as its own byte. Here the
//     byte becomes a private-use character for the regex and is mapped back before BPE.
//   * `\s`: JavaScript's \s includes U+FEFF and excludes U+0085; Python's `regex` (OpenAI's
//     encoder.py), Oniguruma (HF tokenizers) and PCRE2 use Unicode White_Space (U+0085 yes,
//     U+FEFF no). Cases marked `python_whitespace` use that class; all other cases are checked
//     to split identically under both definitions.
'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');

const repo = path.resolve(__dirname, '..');
const fixtures = path.join(repo, 'tests/fixtures');
const tokdir = path.join(fixtures, 'tokenizer');
const datadir = path.join(fixtures, 'data');
const here = [process.cwd()];

// --- reference A: gpt-3-encoder, with its internals exported ------------------------------------
const gpt3Dir = path.dirname(require.resolve('gpt-3-encoder', {paths: here}));
for (const [a, b] of [['encoder.json', 'gpt2/vocab.json'], ['vocab.bpe', 'gpt2/merges.txt']]) {
  if (!fs.readFileSync(path.join(gpt3Dir, a)).equals(fs.readFileSync(path.join(tokdir, b))))
    throw new Error(`gpt-3-encoder's ${a} differs from tests/fixtures/tokenizer/${b}`);
}
const gpt3 = (() => {
  const file = path.join(gpt3Dir, 'Encoder.js');
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(gpt3Dir);
  m._compile(fs.readFileSync(file, 'utf8') +
                 '\nmodule.exports.bpe = bpe; module.exports.byte_encoder = byte_encoder;' +
                 '\nmodule.exports.encoder = encoder;',
             file);
  return m.exports;
})();

// --- reference B: tokenizers.js built from the committed vocab.json / merges.txt ----------------
const {Tokenizer} = require(require.resolve('@huggingface/tokenizers', {paths: here}));
function readMerges(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  return lines.filter((l, i) => !(i === 0 && l.startsWith('#version')) && l.length > 0);
}
function added(id, content, lstrip = false) {
  return {id, content, single_word: false, lstrip, rstrip: false, normalized: !lstrip,
          special: true};
}
function hfTokenizer(dir, addedTokens, postProcessor) {
  const json = {
    version: '1.0',
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: {type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true},
    post_processor: postProcessor,
    decoder: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true},
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
      end_of_word_suffix: '', fuse_unk: false, byte_fallback: false,
      vocab: JSON.parse(fs.readFileSync(path.join(dir, 'vocab.json'), 'utf8')),
      merges: readMerges(path.join(dir, 'merges.txt')),
    },
  };
  return new Tokenizer(json, {add_prefix_space: false});
}
const hfGpt2 = hfTokenizer(path.join(tokdir, 'gpt2'), [added(50256, '<|endoftext|>')],
                          {type: 'ByteLevel', add_prefix_space: true, trim_offsets: false,
                           use_regex: true});
const hfRoberta = hfTokenizer(
    path.join(tokdir, 'roberta'),
    [added(0, '<s>'), added(1, '<pad>'), added(2, '</s>'), added(3, '<unk>'),
     added(50264, '<mask>', true)],
    {type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true,
     add_prefix_space: false});
const robertaVocab = JSON.parse(fs.readFileSync(path.join(tokdir, 'roberta/vocab.json'), 'utf8'));

// --- bytes -> (regex string, per-code-point byte strings) ----------------------------------------
// Decodes UTF-8 by RFC 3629; an invalid byte becomes U+E000 + byte for the regex.
function utf8Length(b, i) {
  const c = b[i];
  const cont = (k) => i + k < b.length && (b[i + k] & 0xc0) === 0x80;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    if (c === 0xe0 && b[i + 1] < 0xa0) return 0;   // overlong
    if (c === 0xed && b[i + 1] >= 0xa0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c === 0xf0 && b[i + 1] < 0x90) return 0;   // overlong
    if (c === 0xf4 && b[i + 1] >= 0x90) return 0;  // > U+10FFFF
    return 4;
  }
  return 0;
}
function splitBytes(bytes) {
  let text = '';
  const pieces = [];  // bytes of each code point, in order
  let valid = true;
  for (let i = 0; i < bytes.length;) {
    const n = utf8Length(bytes, i);
    if (n === 0) {
      valid = false;
      text += String.fromCodePoint(0xe000 + bytes[i]);
      pieces.push(bytes.subarray(i, i + 1));
      i += 1;
    } else {
      text += bytes.subarray(i, i + n).toString('utf8');
      pieces.push(bytes.subarray(i, i + n));
      i += n;
    }
  }
  return {text, pieces, valid};
}

const jsPattern = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const ws = String.raw`\t-\r\x85\p{Z}`;  // Unicode White_Space
const pyPattern = new RegExp(String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^${ws}\p{L}\p{N}]+|[${ws}]+(?![^${ws}])|[${ws}]+`, 'gu');

// Reference A on raw bytes: pre-tokens (as byte strings), then gpt-3-encoder's bpe().
function referenceTokens(bytes, pythonWhitespace) {
  const {text, pieces} = splitBytes(bytes);
  const cps = Array.from(text);
  const split = (re) => Array.from(text.matchAll(re)).map((m) => [m.index, m[0]]);
  const js = split(jsPattern), py = split(pyPattern);
  const same = JSON.stringify(js) === JSON.stringify(py);
  if (!pythonWhitespace && !same)
    throw new Error(`\\s definitions disagree on ${JSON.stringify(text)}: mark it python_whitespace`);
  if (pythonWhitespace && same)
    throw new Error(`${JSON.stringify(text)} is marked python_whitespace but splits the same`);
  // UTF-16 index -> code point index, to map matches back to byte pieces.
  const cpAt = new Map();
  for (let u = 0, k = 0; k < cps.length; u += cps[k].length, ++k) cpAt.set(u, k);
  const tokens = [];
  for (const [index, match] of pythonWhitespace ? py : js) {
    const k0 = cpAt.get(index), k1 = k0 + Array.from(match).length;
    const word = Buffer.concat(pieces.slice(k0, k1));
    const unicode = Array.from(word).map((b) => gpt3.byte_encoder[b]).join('');
    tokens.push(...gpt3.bpe(unicode).split(' '));
  }
  return tokens;
}

function idsOf(tokens, vocab, what) {
  return tokens.map((t) => {
    if (!(t in vocab)) throw new Error(`${what}: token ${JSON.stringify(t)} not in vocab`);
    return vocab[t];
  });
}
function sameIds(a, b, what) {
  if (JSON.stringify(a) !== JSON.stringify(b))
    throw new Error(`${what}: references disagree\n  ${JSON.stringify(a)}\n  ${JSON.stringify(b)}`);
}

function singleCase(name, bytes, flags = {}) {
  const {text, valid} = splitBytes(bytes);
  const tokens = referenceTokens(bytes, !!flags.python_whitespace);
  const gpt2 = idsOf(tokens, gpt3.encoder, name);
  const roberta = idsOf(tokens, robertaVocab, name);
  if (valid && !flags.python_whitespace) sameIds(gpt2, gpt3.encode(text), `${name} (gpt-3-encoder)`);
  // tokenizers.js always parses special tokens written in the text; plain encode does not.
  if (valid && !flags.python_whitespace && !/<\|endoftext\|>|<s>|<\/s>|<pad>|<unk>|<mask>/.test(text)) {
    sameIds(gpt2, hfGpt2.encode(text, {add_special_tokens: false}).ids, `${name} (tokenizers.js gpt2)`);
    sameIds(roberta, hfRoberta.encode(text, {add_special_tokens: false}).ids,
            `${name} (tokenizers.js roberta)`);
    sameIds([0, ...roberta, 2], hfRoberta.encode(text).ids, `${name} (roberta template)`);
  }
  const entry = {name, hex: bytes.toString('hex')};
  if (valid) entry.text = text;
  if (flags.python_whitespace) entry.python_whitespace = true;
  Object.assign(entry, {tokens, gpt2, roberta});
  return entry;
}

// --- cases ---------------------------------------------------------------------------------------
const hard = [
  ['empty', ''], ['one space', ' '], ['newline', '\n'], ['letter', 'a'],
  ['hello', 'Hello world'], ['two spaces', 'Hello  world'], ['leading spaces', '   leading'],
  ['trailing spaces', 'trailing   '], ['many spaces', 'a          b'],
  ['tabs', 'tabs\tand\t\ttabs\t'], ['newlines', 'new\nlines\n\n\nmany\n'],
  ['crlf', 'windows\r\nline\r\n ends'], ['mixed whitespace', ' \t \n x \n\t y'],
  ['contractions', "it's we'll they're I've she'd I'm don't"],
  ['contractions upper', "IT'S WE'LL THEY'RE I'M"], ['bare quotes', "'s ' s '' 'x 'll's"],
  ['possessive', "the cat's toy and the dogs' bowls"],
  ['accents', 'Café résumé naïve façade'], ['accents upper', 'ÀÉÎÕÜ Ünïcödé Ærøskøbing'],
  ['combining', 'e\u0301 a\u0308 n\u0303 (decomposed)'],
  ['chinese', '北京欢迎你，我们是朋友。'], ['japanese', '日本語のテキストです'],
  ['korean', '한국어 텍스트'], ['greek', 'Ελληνικά γράμματα'], ['cyrillic', 'Русский текст'],
  ['hebrew', 'עברית'], ['arabic', 'العربية ٣٤٥ ١٢'], ['thai', 'ภาษาไทย สวัสดี'],
  ['hindi', 'हिन्दी भाषा'],
  ['emoji', 'emoji 🤗🎉 👍🏽 ok'], ['emoji zwj', '👨‍👩‍👧 family'], ['flags', '🇫🇷🇯🇵'],
  ['digits', 'digits 1234567890 3.14159 1,000,000'], ['digits mixed', 'abc123def 4x4 v2.0.1'],
  ['number forms', 'Ⅻ ½ ² ①'], ['math', '∑∫√∞≈ x² ≤ y'], ['currency', '€5 £20-25 ¥ ₹ $3'],
  ['punctuation', '$%^&*()_+-=[]{}|;:,.<>/?`~'], ['ellipsis', 'Wait... what?!?! —no—'],
  ['quotes', '“smart quotes” and ‘single’ «guillemets»'],
  ['code', '    def f(x):\n\t\treturn x**2  # square\n'],
  ['url', 'https://example.com/path?q=1&r=2#frag user@example.org'],
  ['long word', 'supercalifragilisticexpialidocious'], ['repeated', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'],
  ['control chars', 'a\u0000b\u0001c\u0007d\u007fe'], ['soft hyphen', 'co\u00adoperate'],
  ['nbsp', 'non\u00a0breaking\u00a0 space'], ['ideographic space', '中\u3000文 \u3000x'],
  ['line separator', 'line\u2028sep\u2029para'], ['zero width', 'zero\u200bwidth\u200djoin'],
  ['specials as text', '<|endoftext|> <s> </s> <pad> <mask> <unk>'],
  ['sst-like', "it 's a charming and often affecting journey . "],
  ['e2e-like', 'name : The Eagle | Type : coffee shop | price : £ 20 - 25 ||'],
].map(([n, t]) => [n, Buffer.from(t, 'utf8'), {}]);
const whitespaceCases = [
  ['NEL (U+0085)', 'x \u0085y \u0085\u0085 z'], ['BOM (U+FEFF)', 'a \ufeffb \ufeff c'],
].map(([n, t]) => [n, Buffer.from(t, 'utf8'), {python_whitespace: true}]);
const invalid = [
  ['invalid ff', 'ff'], ['invalid inside', '616263fffe646566'], ['truncated 2-byte', 'c3'],
  ['truncated 3-byte', '20e282'], ['overlong', 'c0af'], ['surrogate', 'eda080'],
  ['above U+10FFFF', 'f4908080'], ['space then invalid', '2061ff20ff'],
  ['mixed invalid', '8080207465787420c3a9c3'], ['invalid between words', '776f7264ff776f7264'],
  ['lone continuation', '61806263'], ['valid then truncated emoji', 'f09fa497f09fa4'],
].map(([n, h]) => [n, Buffer.from(h, 'hex'), {}]);

function tsvRows(file) {
  let text = fs.readFileSync(path.join(datadir, file), 'utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return text.split('\n').map((l) => l.replace(/\r$/, '')).filter((l, i) => l.length > 0 || i === 0);
}
// RFC 4180: "" inside quotes is a quote; rows end at CRLF or LF outside quotes.
function csvRows(file) {
  const s = fs.readFileSync(path.join(datadir, file), 'utf8');
  const rows = [];
  let row = [], field = '', quoted = false;
  for (let i = 0; i < s.length; ++i) {
    const c = s[i];
    if (quoted) {
      if (c === '"' && s[i + 1] === '"') field += '"', ++i;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), field = '';
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && s[i + 1] === '\n') ++i;
      row.push(field), rows.push(row), row = [], field = '';
    } else field += c;
  }
  if (field.length || row.length) row.push(field), rows.push(row);
  return rows;
}

const single = [];
for (const [n, b, f] of [...hard, ...whitespaceCases, ...invalid]) single.push(singleCase(n, b, f));
// SST-2 train (label<TAB>sentence): every sentence of the committed slice.
tsvRows('glue/sst2/train.tsv').slice(1).forEach((line, i) => {
  single.push(singleCase(`glue/sst2/train.tsv:${i + 2}`, Buffer.from(line.split('\t')[1], 'utf8')));
});
// E2E: the MR and the reference of the first 60 rows (raw text, as in the official CSV).
csvRows('e2e/devset.csv').slice(1, 61).forEach(([mr, ref], i) => {
  single.push(singleCase(`e2e/devset.csv:${i + 2} mr`, Buffer.from(mr, 'utf8')));
  single.push(singleCase(`e2e/devset.csv:${i + 2} ref`, Buffer.from(ref, 'utf8')));
});

// RoBERTa pairs <s> A </s></s> B </s> from tokenizers.js, checked against A + the template.
const pair = [];
tsvRows('glue/rte/train.tsv').slice(1, 51).forEach((line, i) => {
  const [a, b] = line.split('\t');
  const ids = hfRoberta.encode(a, {text_pair: b}).ids;
  const ra = singleCase('a', Buffer.from(a, 'utf8')).roberta;
  const rb = singleCase('b', Buffer.from(b, 'utf8')).roberta;
  sameIds(ids, [0, ...ra, 2, 2, ...rb, 2], `rte pair ${i + 2}`);
  pair.push({name: `glue/rte/train.tsv:${i + 2}`, a, b, roberta: ids});
});

// Special tokens written in the text (tokenizers.js; RoBERTa's <mask> strips spaces on its left).
const special = [
  '<s>Hello world</s>', 'The capital of France is <mask>.', 'two  <mask> <mask>x', '<pad><unk>',
  'not special: <S> <mask <|endoftext|>',
].map((text) => ({text, roberta: hfRoberta.encode(text, {add_special_tokens: false}).ids}));
const specialGpt2 = ['Hello<|endoftext|>world', ' <|endoftext|> <s>'].map((text) => ({
  text, gpt2: hfGpt2.encode(text, {add_special_tokens: false}).ids}));

const version = (dir) => JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
const hfDir = path.join(path.dirname(require.resolve('@huggingface/tokenizers', {paths: here})), '..');
const out = {
  generator: `scripts/make_tokenizer_fixtures.js: gpt-3-encoder ${version(gpt3Dir)}, ` +
      `@huggingface/tokenizers ${version(hfDir)}, node ${process.version}`,
  single, pair, special_roberta: special, special_gpt2: specialGpt2,
};
fs.writeFileSync(path.join(tokdir, 'reference.json'), JSON.stringify(out, null, 0) + '\n');
console.log(`wrote ${single.length} single, ${pair.length} pair, ` +
            `${special.length + specialGpt2.length} special cases to tests/fixtures/tokenizer/reference.json`);
