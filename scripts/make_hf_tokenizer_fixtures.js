// make_hf_tokenizer_fixtures.js — writes tests/fixtures/tokenizer/hf_reference.json: token ids and
// decoded text from Hugging Face tokenizer.json files (Llama 2, Llama 3, Mistral, Qwen3), made by
// tokenizers.js, for tests/test_tokenizer.cpp to compare io::HfTokenizer against.
//
// Run once (the output is committed; node_modules never is):
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm init -y && npm install @huggingface/tokenizers@0.2.0
//   node /path/to/fourierft/scripts/make_hf_tokenizer_fixtures.js [/path/to/shared/data/tokenizers]
//
// What it compares: for every text and tokenizer, @huggingface/tokenizers (tokenizers.js, a
// JavaScript implementation of tokenizer.json, given the file and its tokenizer_config.json) gives
//   ids          encode(text, add_special_tokens = false): added/special tokens written in the text
//                become their single id, as HF's default
//   ids_special  encode(text, add_special_tokens = true): plus what the post_processor adds (BOS)
//   ids_split    the same text with special tokens treated as ordinary text (HF's
//                split_special_tokens / encode_special_tokens): tokenizers.js has no such option, so
//                these come from a copy of tokenizer.json whose added_tokens list lacks the
//                `special: true` entries (non-special added tokens, e.g. Qwen's <think>, still match)
//   decoded      decode(ids), decoded_skip  decode(ids_special, skip_special_tokens = true), both with
//                clean_up_tokenization_spaces = false (the tokenizers library's own decode)
// The tokenizer files are read from ../shared/data/tokenizers (or argv[2]); their sha256 is recorded.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const repo = path.resolve(__dirname, '..');
const shared = process.argv[2] || path.resolve(repo, '../shared/data/tokenizers');
const here = [process.cwd()];
const {Tokenizer} = require(require.resolve('@huggingface/tokenizers', {paths: here}));

const common = [
  ['empty', ''], ['one space', ' '], ['two spaces', '  '], ['letter', 'a'],
  ['hello', 'Hello world'], ['double space', 'Hello  world'], ['leading spaces', '   leading spaces'],
  ['trailing spaces', 'trailing spaces   '], ['inner spaces', 'multiple    inner   spaces'],
  ['leading single space', ' leading single space'], ['newline', '\n'], ['space newline', ' \n '],
  ['newlines', 'new\nline and\n\n\nmany\n'], ['crlf', 'windows\r\nline\r\n ends'],
  ['tabs', 'tabs\tand\t\ttabs\t'],
  ['contractions', "it's we'll they're I've she'd I'm don't"],
  ['contractions upper', "IT'S WE'LL THEY'RE I'M Don'T"],
  ['digits', 'digits 1 12 123 1234 12345 1234567890'],
  ['numbers', '3.14159 1,000,000 2024-06-01 v2.0.1 abc123def 4x4'],
  ['accents', 'Café résumé naïve façade Ærøskøbing'],
  ['decomposed accents', 'e\u0301te\u0301 a\u0308 n\u0303 (NFC composes these)'],
  ['hangul jamo', '\u1100\u1161\u11a8 \uac00'],
  ['chinese', '北京欢迎你，我们是朋友。'], ['japanese', '日本語のテキストです'],
  ['korean', '한국어 텍스트'], ['greek', 'Ελληνικά γράμματα'], ['cyrillic', 'Русский текст'],
  ['arabic', 'العربية ٣٤٥'], ['hindi', 'हिन्दी भाषा'], ['thai', 'ภาษาไทย'],
  ['emoji', 'emoji 🤗🎉 👍🏽 ok'], ['emoji zwj', '👨‍👩‍👧 family'], ['flags', '🇫🇷🇯🇵'],
  ['rare cjk', '龘 𠜎 𪚥'], ['rare symbols', 'ꙮ 𓀀 ⨌ ␀'],
  ['control chars', 'a\u0001b\u0007c\u007fd'], ['line separator', 'line\u2028sep'],
  ['nbsp', 'non\u00a0breaking\u00a0 space'], ['ideographic space', '中\u3000文'],
  ['code', 'def f(x):\n    return x**2  # square\n\tpass\n'],
  ['url', 'https://example.com/path?q=1&r=2#frag user@example.org'],
  ['pangram', 'The quick brown fox jumps over the lazy dog.'],
  ['punctuation', '$%^&*()_+-=[]{}|;:,.<>/?`~'], ['ellipsis', 'Wait... what?!?! —no—'],
  ['quotes', '“smart quotes” and ‘single’ «guillemets»'],
  ['metaspace chars', '▁ already ▁▁ metaspace'], ['byte token text', '<0x41> is not A'],
  ['long word', 'supercalifragilisticexpialidocious'],
  ['repeated', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'],
];
const specials = {
  llama2: ['<s>Hello world</s>', 'Hello <s>.', ' <s> ', '<unk><s></s>', 'not special: <S> <s', 'a</s>b'],
  mistral: ['<s>Hello world</s>', 'Hello <s>.', ' <s> ', '<unk><s></s>', 'not special: <S> <s', 'a</s>b'],
  llama3: ['<|begin_of_text|>Hello<|end_of_text|>',
           '<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>', ' <|eot_id|> x',
           '<|reserved_special_token_5|>', '<|not_a_token|> <|eot_id', 'a<|eot_id|><|eot_id|>b'],
  qwen3: ['<|im_start|>user\nHi<|im_end|>\n', '<think>\nhmm\n</think>\n\nanswer', '<|endoftext|>x',
          '<tool_call>{"a": 1}</tool_call>', ' <|im_end|> ', 'not special: <|im_start <think'],
};
// Real sentences: the first 40 of the committed SST-2 slice.
const sst2 = fs.readFileSync(path.join(repo, 'tests/fixtures/data/glue/sst2/train.tsv'), 'utf8')
                 .split('\n').slice(1, 41).map((l, i) => [`sst2:${i + 2}`, l.split('\t')[1]]);

const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const out = {
  generator: 'scripts/make_hf_tokenizer_fixtures.js: @huggingface/tokenizers ' +
      JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve(
          '@huggingface/tokenizers', {paths: here})), '../package.json'), 'utf8')).version +
      `, node ${process.version}`,
  tokenizers: {},
};
for (const name of ['llama2', 'llama3', 'mistral', 'qwen3']) {
  const dir = path.join(shared, name);
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  const tok = new Tokenizer(json, config);
  const plainJson = {...json, added_tokens: json.added_tokens.filter((t) => !t.special)};
  const plain = new Tokenizer(plainJson, config);
  const texts = [...common, ...specials[name].map((t, i) => [`special ${i}`, t]), ...sst2];
  const cases = texts.map(([caseName, text]) => {
    const ids = tok.encode(text, {add_special_tokens: false}).ids;
    const idsSpecial = tok.encode(text, {add_special_tokens: true}).ids;
    // tokenizers.js refuses to decode no ids; HF's decode gives "".
    const decode = (x, skip) => x.length === 0 ? '' : tok.decode(x, {
      skip_special_tokens: skip, clean_up_tokenization_spaces: false});
    return {
      name: caseName, text, ids, ids_special: idsSpecial,
      ids_split: plain.encode(text, {add_special_tokens: false}).ids,
      decoded: decode(ids, false), decoded_skip: decode(idsSpecial, true),
    };
  });
  out.tokenizers[name] = {sha256: sha256(path.join(dir, 'tokenizer.json')), cases};
  console.log(`${name}: ${cases.length} cases`);
}
const file = path.join(repo, 'tests/fixtures/tokenizer/hf_reference.json');
fs.writeFileSync(file, JSON.stringify(out, null, 0) + '\n');
console.log(`wrote ${file}`);
