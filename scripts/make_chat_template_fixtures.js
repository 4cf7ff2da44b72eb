// make_chat_template_fixtures.js — writes tests/fixtures/chat_templates/reference.json: chat templates
// rendered by real Jinja renderers, for tests/test_jinja.cpp to match byte for byte.
//
// Run once (the outputs are committed; node_modules never is):
//   cd scripts/jinja_ref && npm install            # @huggingface/jinja 0.5.13, @huggingface/ollama-utils 0.0.18
//   node scripts/make_chat_template_fixtures.js    # from the repository root; needs ../shared/data
//
// What it does:
//   1. extracts the real templates it may commit into tests/fixtures/chat_templates/*.jinja: Qwen3's
//      (../shared/data/tokenizers/qwen3/tokenizer_config.json, Apache-2.0), and the `gguf` field
//      (the model's tokenizer_config.json chat_template) of several entries of @huggingface/ollama-utils'
//      chat-template-automap (MIT): TinyLlama-Chat, Llama-2-chat, Mistral-Instruct, Gemma 2, Phi-3,
//      Qwen2, SmolLM2. The own templates in constructs/*.jinja are written by hand.
//   2. renders every template against several message sets, add_generation_prompt false and true,
//      with two renderers:
//        A  @huggingface/jinja (what Hugging Face's JS libraries use), trim_blocks + lstrip_blocks;
//        B  Python jinja2 (python3 -c; the library transformers uses) set up as transformers'
//           _compile_jinja_template does: ImmutableSandboxedEnvironment(trim_blocks, lstrip_blocks,
//           loopcontrols, a {% generation %} tag), tojson = json.dumps(ensure_ascii=False, ...),
//           raise_exception, strftime_now; variables as apply_chat_template passes them (messages,
//           tools=None, documents=None, add_generation_prompt, the special tokens, extra kwargs).
//      A case goes to "cases" when A and B agree (same text, or both raise the same raise_exception
//      message); to "python_only" when they differ (B is what transformers produces; A's output is
//      kept beside it for the record), so no case rests on A's departures from jinja2 alone.
//   3. Llama-3's template (Llama Materials: not committed) and the two ../shared configs are
//      rendered by path ("shared:<dir>/<file>"); the test skips those when ../shared is absent.
// Objects in the inputs are given with sorted keys, as fourierft's Json (nlohmann::json) holds them.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const repo = path.resolve(__dirname, '..');
const fixtures = path.join(repo, 'tests/fixtures/chat_templates');
const shared = path.resolve(repo, '../shared/data/tokenizers');
const modules = path.join(__dirname, 'jinja_ref/node_modules');
const { Template } = require(path.join(modules, '@huggingface/jinja'));
const jinjaVersion = require(path.join(modules, '@huggingface/jinja/package.json')).version;
const ollamaVersion = require(path.join(modules, '@huggingface/ollama-utils/package.json')).version;

// ------------------------------------------------------------------------------------ templates
function automapTemplate(model) {
  const source = fs.readFileSync(path.join(modules, '@huggingface/ollama-utils/src/chat-template-automap.ts'), 'utf8');
  const at = source.indexOf(`model: "${model}"`);
  if (at < 0) throw new Error(`ollama-utils has no entry ${model}`);
  const gguf = source.indexOf('gguf: ', at);
  // The field is one JS string literal (double-quoted or template); evaluate just that literal.
  const quote = source[gguf + 6];
  let end = gguf + 7;
  while (source[end] !== quote) end += source[end] === '\\' ? 2 : 1;
  return Function(`"use strict"; return ${source.slice(gguf + 6, end + 1)};`)();
}

const automap = {
  'tinyllama_chat.jinja': 'library/tinyllama:1.1b',
  'llama2_chat.jinja': 'library/llama2:7b',
  'mistral_instruct.jinja': 'library/mistral:7b-instruct-fp16',
  'gemma2.jinja': 'library/gemma2:2b',
  'phi3.jinja': 'library/phi3:3.8b',
  'qwen2.jinja': 'library/qwen2:0.5b',
  'smollm2.jinja': 'library/smollm2:135m',
};
for (const [file, model] of Object.entries(automap)) fs.writeFileSync(path.join(fixtures, file), automapTemplate(model));
const qwen3Config = JSON.parse(fs.readFileSync(path.join(shared, 'qwen3/tokenizer_config.json'), 'utf8'));
fs.writeFileSync(path.join(fixtures, 'qwen3.jinja'), qwen3Config.chat_template);

// The two shared templates must equal the automap copies (they were taken from the same entries).
const tinyllamaConfig = JSON.parse(fs.readFileSync(path.join(shared, 'llama2/tokenizer_config.json'), 'utf8'));
if (tinyllamaConfig.chat_template !== fs.readFileSync(path.join(fixtures, 'tinyllama_chat.jinja'), 'utf8'))
  throw new Error('tinyllama template differs from ../shared');
if (fs.readFileSync(path.join(shared, 'llama2/llama2_chat_template.jinja'), 'utf8') !==
    fs.readFileSync(path.join(fixtures, 'llama2_chat.jinja'), 'utf8'))
  throw new Error('llama2 template differs from ../shared');

const llamaTokens = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' };
const templates = [
  // [template reference, text, special tokens passed as HF passes special_tokens_map]
  ['qwen3.jinja', { eos_token: '<|im_end|>', pad_token: '<|endoftext|>' }],
  ['tinyllama_chat.jinja', llamaTokens],
  ['llama2_chat.jinja', llamaTokens],
  ['mistral_instruct.jinja', llamaTokens],
  ['gemma2.jinja', { bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>', unk_token: '<unk>' }],
  ['phi3.jinja', { bos_token: '<s>', eos_token: '<|endoftext|>', unk_token: '<unk>' }],
  ['qwen2.jinja', { eos_token: '<|im_end|>', pad_token: '<|endoftext|>' }],
  ['smollm2.jinja', { bos_token: '<|im_start|>', eos_token: '<|im_end|>', pad_token: '<|im_end|>', unk_token: '<|endoftext|>' }],
  ['shared:llama3/tokenizer_config.json', null],
  ['shared:qwen3/tokenizer_config.json', null],
  ['shared:llama2/tokenizer_config.json', null],
];
for (const file of fs.readdirSync(path.join(fixtures, 'constructs')).sort())
  templates.push([`constructs/${file}`, { bos_token: '<s>', eos_token: '</s>' }]);

function readTemplate(ref) {
  if (!ref.startsWith('shared:')) return [fs.readFileSync(path.join(fixtures, ref), 'utf8'), null];
  const config = JSON.parse(fs.readFileSync(path.join(shared, ref.slice(7)), 'utf8'));
  const tokens = {};
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token']) {
    const v = config[key];
    const s = typeof v === 'string' ? v : v && typeof v.content === 'string' ? v.content : '';
    if (s) tokens[key] = s;
  }
  return [config.chat_template, tokens];
}

// ------------------------------------------------------------------------------------- messages
const m = (role, content) => ({ content, role });
const messageSets = {
  multi_turn: [m('system', 'You are a helpful assistant.'), m('user', 'What is 2+2?'), m('assistant', 'It is 4.'),
               m('user', 'And 3+3?')],
  no_system: [m('user', 'Hello!'), m('assistant', 'Hi, how can I help?'), m('user', 'Tell me a joke.')],
  single_user: [m('user', 'Name three colours.')],
  ends_with_assistant: [m('user', 'Say yes.'), m('assistant', 'Yes.')],
  special_characters: [m('system', '  Be brief.\n'), m('user', ' héllo wörld — 世界 🙂\n\ttabs, "quotes", \'single\', {{ braces }}, {% tags %}, <|im_end|> \\ end  '),
                       m('assistant', '\n\nanswer with trailing spaces   \n'), m('user', 'ok\r\nbye')],
  empty_content: [m('user', ''), m('assistant', ''), m('user', 'x')],
  thinking: [m('user', 'Why is the sky blue?'), m('assistant', '<think>\nRayleigh scattering.\n</think>\n\nBecause of scattering.'),
             m('user', 'Thanks!')],
  thinking_last: [m('user', 'Why?'), m('assistant', '<think>\nreason here\n</think>\n\nBecause.')],
  system_only: [m('system', 'Only a system prompt.')],
  bad_roles: [m('user', 'one'), m('user', 'two')],
  unknown_role: [m('user', 'hi'), m('narrator', 'meanwhile'), m('user', 'hi again')],
};

const cases = [];
for (const [ref, givenTokens] of templates) {
  const [text, configTokens] = readTemplate(ref);
  const tokens = givenTokens || configTokens;
  const isConstruct = ref.startsWith('constructs/');
  const sets = isConstruct ? ['multi_turn', 'special_characters'] : Object.keys(messageSets);
  for (const set of sets) {
    for (const addGenerationPrompt of isConstruct ? [false] : [false, true]) {
      cases.push({ template: ref, messages: set, add_generation_prompt: addGenerationPrompt, variables: {}, text, tokens });
    }
  }
  if (ref.includes('qwen3')) {
    for (const set of ['multi_turn', 'thinking', 'thinking_last'])
      for (const flag of [false, true])
        cases.push({ template: ref, messages: set, add_generation_prompt: true, variables: { enable_thinking: flag }, text, tokens });
    const tools = [{ function: { description: 'Current weather', name: 'get_weather',
                                 parameters: { properties: { city: { type: 'string' } }, required: ['city'], type: 'object' } },
                     type: 'function' }];
    cases.push({ template: ref, messages: 'multi_turn', add_generation_prompt: true, variables: { tools }, text, tokens });
  }
}

// ----------------------------------------------------------------------------------- renderers
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

// @huggingface/jinja has its own raise_exception (it throws an Error carrying the message).
function renderJs(c) {
  const context = { messages: sortKeys(messageSets[c.messages]), tools: null, documents: null,
                    add_generation_prompt: c.add_generation_prompt, ...c.tokens, ...sortKeys(c.variables) };
  try {
    return { text: new Template(c.text).render(context) };
  } catch (e) {
    return { error: String(e.message || e) };
  }
}

const python = String.raw`
import json, sys
from datetime import datetime
import jinja2
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

class Raised(jinja2.exceptions.TemplateError):
    pass

class Generation(Extension):
    tags = {"generation"}
    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)
    def _body(self, caller):
        return caller()

def raise_exception(message):
    raise Raised(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, loopcontrols])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda f: datetime.now().strftime(f)
out = []
for job in json.load(sys.stdin):
    try:
        context = dict(messages=job["messages"], tools=None, documents=None,
                       add_generation_prompt=job["add_generation_prompt"], **job["tokens"])
        context.update(job["variables"])
        out.append({"text": env.from_string(job["text"]).render(**context)})
    except Raised as e:
        out.append({"raised": e.message})
    except Exception as e:
        out.append({"error": type(e).__name__ + ": " + str(e)})
json.dump(out, sys.stdout, ensure_ascii=False)
`;
const jobs = cases.map((c) => ({ text: c.text, tokens: c.tokens, messages: sortKeys(messageSets[c.messages]),
                                  add_generation_prompt: c.add_generation_prompt, variables: sortKeys(c.variables) }));
const run = spawnSync('python3', ['-c', python], { input: JSON.stringify(jobs), maxBuffer: 1 << 28 });
if (run.status !== 0) throw new Error(`python3 failed: ${run.stderr}`);
const pythonResults = JSON.parse(run.stdout.toString('utf8'));
const jinja2Version = spawnSync('python3', ['-c', 'import jinja2; print(jinja2.__version__)']).stdout.toString().trim();

// -------------------------------------------------------------------------------------- output
const agreed = [], pythonOnly = [];
cases.forEach((c, i) => {
  const a = renderJs(c), b = pythonResults[i];
  const entry = { template: c.template, messages: c.messages, add_generation_prompt: c.add_generation_prompt,
                  variables: sortKeys(c.variables) };
  if (!c.template.startsWith('shared:')) entry.special_tokens = c.tokens;
  if ('text' in b) entry.expected = b.text;
  else if ('raised' in b) entry.raised = b.raised;
  else entry.error = b.error;
  const same = ('text' in a && 'text' in b && a.text === b.text) || ('error' in a && 'raised' in b && a.error === b.raised) ||
               ('error' in a && 'error' in b);
  if (same) agreed.push(entry);
  else pythonOnly.push({ ...entry, huggingface_jinja: a });
});

const output = {
  generator: 'scripts/make_chat_template_fixtures.js',
  renderers: { huggingface_jinja: jinjaVersion, python_jinja2: jinja2Version, ollama_utils: ollamaVersion },
  message_sets: sortKeys(messageSets),
  cases: agreed,
  python_only: pythonOnly,
};
fs.writeFileSync(path.join(fixtures, 'reference.json'), JSON.stringify(output, null, 1) + '\n');
console.log(`${agreed.length} cases agree, ${pythonOnly.length} only from Python jinja2:`);
for (const c of pythonOnly) console.log(`  ${c.template} ${c.messages} agp=${c.add_generation_prompt} ${JSON.stringify(c.variables)}`);
