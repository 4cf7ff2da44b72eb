// pretrain — makes a small pre-trained transformer from scratch, in Hugging Face's format, so that
// the fine-tuning examples (and transformers) can start from it like from a hub checkpoint.
//
// What it does. Three modes, one training loop:
//   --mode mlm    RoBERTa masked-LM pretraining (RobertaForMaskedLM, decoder tied to the word
//                 embeddings) on a text corpus. Each line is encoded as "<s> line </s>", the lines
//                 are concatenated and cut into blocks of --max-len tokens (transformers'
//                 run_mlm.py without --line_by_line). Per step, 15% of the non-special tokens are
//                 chosen; of those 80% become <mask>, 10% a random token, 10% stay (BERT's recipe,
//                 HF's DataCollatorForLanguageModeling); the loss is the cross-entropy on the chosen.
//   --mode clm    GPT-2 causal-LM pretraining (GPT2LMHeadModel, head tied to wte): each line is
//                 encoded and followed by <|endoftext|>, concatenated, cut into blocks of --max-len
//                 (run_clm.py's group_texts); the loss predicts every next token.
//   --mode clm-llama  LLaMA causal-LM pretraining (LlamaForCausalLM: RMSNorm, RoPE, SwiGLU MLP,
//                 grouped-query attention with --kv-heads, no dropout), the same data and loss as
//                 clm. The folder is what transformers' LlamaForCausalLM.from_pretrained and
//                 AutoTokenizer read: config.json, model.safetensors, and a chat-ready tokenizer —
//                 tokenizer.json (the reduced byte-level BPE + <|endoftext|>, <|im_start|>,
//                 <|im_end|> as special added tokens), tokenizer_config.json (ChatML
//                 chat_template, eos_token <|im_end|>, pad_token <|endoftext|>, no BOS),
//                 generation_config.json. Corpus lines are separated by <|endoftext|>.
//   --mode image  ViT supervised pretraining (ViTForImageClassification) on an image folder
//                 <data>/train/<class>/*: random resized crop (area --crop-min..1) + horizontal
//                 flip, normalised with mean = std = 0.5; accuracy on <data>/test after each epoch.
// AdamW (no weight decay on biases and norms), linear warm-up and decay, gradient clipping. Text
// corpora: FILE.txt is one sentence per line; FILE.tsv a GLUE file (its sentences; the task is the
// name of its folder, cola/sst2/mrpc/stsb/qnli/rte as in the data pack, else SST-2);
// FILE.csv an E2E file (its ref column). --vocab-merges K keeps only the first K merges of the
// --tokenizer (vocabulary = its special tokens + the 256 bytes + K merged tokens): a small output
// layer, for laptop-sized models; the reduced vocab.json / merges.txt are what the model is saved
// with.
//
// Run (docs/examples/pretrain.md has the measured runs and what fine-tuning them gives):
//   pretrain --mode image --data examples/data/cifar5-pretrain --layers 4 --hidden 128 --heads 4
//       --image-size 32 --patch 4 --dropout 0.1 --epochs 8 --lr 1.5e-3 --weight-decay 0.05
//       --warmup-ratio 0.05 --seed 0 --threads 1 --dtype f16 --out out/vit-tiny-cifar5
//       (examples/checkpoints/vit-tiny-cifar5: its README has the full command and the accuracy)
//   pretrain --mode mlm --text ../shared/data/glue/sst2/train.tsv
//       --tokenizer ../shared/data/tokenizers/roberta --vocab-merges 8000 --out out/roberta-small
//   pretrain --mode clm --text ../shared/data/e2e/devset.csv,../shared/data/glue/sst2/train.tsv
//       --tokenizer ../shared/data/tokenizers/gpt2 --vocab-merges 8000 --max-len 256 --out out/gpt2-small
//   pretrain --mode clm-llama --text ../shared/data/e2e/devset.csv,../shared/data/glue/qnli/dev.tsv
//       --unique-lines --tokenizer ../shared/data/tokenizers/gpt2 --vocab-merges 4000 --layers 4
//       --hidden 128 --heads 4 --kv-heads 2 --intermediate 384 --max-len 256 --dtype bf16
//       --out out/llama-tiny
//       (examples/checkpoints/llama-tiny-qnli-e2e: its README has the full command and the loss)
// Options: --help. Ctrl-C saves the state; the same command with --resume continues.
//
// Output. At start: the model's sizes and parameter count, the data. Then step lines ("step 120 |
// loss 4.1327 | lr 5.0e-04 | 83 ms", a bar on a terminal) and one evaluation line per epoch (mlm:
// masked-token loss and accuracy on held-out blocks; clm: loss and perplexity; image: test
// accuracy). At the end <out>/model/ is the checkpoint folder — config.json, model.safetensors
// (--dtype f32 or f16), vocab.json + merges.txt + tokenizer_config.json (text) or
// preprocessor_config.json (image) or tokenizer.json + tokenizer_config.json +
// generation_config.json (clm-llama), pretrain.json (the command, seed, threads and the evaluation of
// the saved weights, reloaded from the folder) — written as <out>/model.tmp/ and renamed. Also in
// <out>: log.jsonl, results.json.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/dist/world.hpp"
#include "fourierft/fourierft.hpp"
#include "fourierft/io/e2e.hpp"
#include "fourierft/io/glue.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/image_batches.hpp"
#include "fourierft/io/image_folder.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/models/roberta.hpp"
#include "fourierft/models/vit.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/run.hpp"
#include "fourierft/train/seeds.hpp"
#include "fourierft/train/signals.hpp"

using namespace fourierft;
namespace fs = std::filesystem;

namespace {

const char* const usage = R"(usage: pretrain --mode mlm|clm|clm-llama|image [options]

Pretrains a small RoBERTa (mlm), GPT-2 (clm), LLaMA (clm-llama) or ViT (image) from scratch;
writes <out>/model/, a Hugging Face checkpoint folder.
data:
  --text FILE[,FILE]  mlm, clm: .txt one sentence per line, .tsv GLUE (task = folder name, else
                      SST-2; both sentences of pair tasks), .csv E2E (its references)
  --tokenizer DIR     mlm, clm: vocab.json + merges.txt (RoBERTa's for mlm, GPT-2's for clm
                      and clm-llama)
  --vocab-merges K    keep the first K merges of the tokenizer (0: all)                      [0]
  --unique-lines      drop a corpus line equal to an earlier one (QNLI repeats each sentence
                      once per question: repeats would leak into the held-out blocks)
  --max-len T         tokens per training block                                            [128]
  --eval-fraction F   share of the blocks held out for evaluation                         [0.02]
  --data DIR          image: train/<class>/* and test/<class>/*
  --crop-min S        image: smallest crop area of the random resized crop                 [0.35]
model size:
  --layers L, --hidden C, --heads NH    [4, 128, 4]
  --intermediate D    feed-forward width                                              [4 x hidden]
  --image-size S, --patch P             image: [32, 4]
  --dropout P         hidden dropout                                   [0.1; image, clm-llama 0]
  --attention-dropout P                                                                      [0]
  --kv-heads H        clm-llama: key/value heads (grouped-query attention)             [--heads]
  --rope-theta R      clm-llama: RoPE base                                               [10000]
  --tie-embeddings yes|no   clm-llama: lm_head = embed_tokens                              [yes]
  --dtype f32|f16|bf16      dtype of model.safetensors                                     [f32]
optimisation (AdamW, linear warm-up and decay):
  --lr LR [5e-4]  --epochs E [1]  --batch B [32]  --grad-accum K [1]  --warmup-ratio R [0.06]
  --weight-decay W [0.01]  --clip C [1]
run:
  --seed S [0]  --threads T  --out DIR [out/pretrain]  --log-every K [10]
  --resume            continue from DIR/state (after Ctrl-C, --stop-after or a crash)
  --stop-after S      save the state and stop after S optimizer steps (resume later)
  --save-every N      save the state every N optimizer steps too (a crash loses < N)  [epoch ends]
  --fast-fft          (accepted for symmetry with the fine-tuning programs; no FFT here)
)";


// "a,b,c" -> {"a", "b", "c"}
std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

// ===========================================================================================
// Text: corpus lines, the tokenizer, blocks
// ===========================================================================================

// The sentences of one corpus file: .tsv = a GLUE file (every sentence, both of a pair; the task
// is named by the file's folder, glue/<task>/*.tsv in the data pack, SST-2 when the folder is not a
// task name), .csv = E2E (its ref column), anything else one sentence per line (CR stripped, empty
// lines skipped).
std::vector<std::string> read_corpus(const fs::path& path) {
  std::vector<std::string> lines;
  const std::string ext = path.extension().string();
  if (ext == ".tsv") {
    std::string task = "sst2";
    for (const char* name : {"cola", "sst2", "mrpc", "stsb", "qnli", "rte"})
      if (path.parent_path().filename() == name) task = name;
    for (io::GlueExample& e : io::read_glue(path, task).examples) {
      lines.push_back(std::move(e.text_a));
      if (e.text_b && !e.text_b->empty()) lines.push_back(std::move(*e.text_b));
    }
  } else if (ext == ".csv") {
    const io::E2EDataset d = io::read_e2e_csv(path);
    check<FormatError>(d.has_refs, path.string(), ": an E2E file with references (mr,ref) was ",
                       "expected; testset.csv holds MRs only");
    for (const io::E2EExample& e : d.examples) lines.push_back(e.ref);
  } else {
    std::ifstream in(path, std::ios::binary);
    check<IoError>(static_cast<bool>(in), "cannot open the corpus '", path.string(), "'");
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty()) lines.push_back(line);
    }
  }
  check<FormatError>(!lines.empty(), path.string(), ": no sentences");
  return lines;
}

// vocab.json and merges.txt as read: a byte-level BPE tokenizer's two files.
struct BpeFiles {
  io::Json vocab;                   // {"token": id}
  std::vector<std::string> merges;  // "a b", in rank order (the "#version" line left out)
};

BpeFiles read_bpe_files(const fs::path& dir) {
  BpeFiles f;
  f.vocab = io::read_json(dir / "vocab.json");
  std::ifstream in(dir / "merges.txt", std::ios::binary);
  check<IoError>(static_cast<bool>(in), "cannot open '", (dir / "merges.txt").string(), "'");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    f.merges.push_back(line);
  }
  return f;
}

// The tokenizer with only its first `keep` merges: the vocabulary keeps the special tokens, the 256
// byte symbols and the K merge results, renumbered 0.. in the original id order (so RoBERTa's
// <s> <pad> </s> <unk> stay 0-3 and <mask> / <|endoftext|> stay last). BPE with a prefix of the
// merge list is still a byte-level BPE: every text encodes, with more and shorter tokens.
BpeFiles keep_first_merges(const BpeFiles& full, const io::BpeTokenizer& tokenizer, Index keep,
                           const fs::path& dir) {
  if (keep <= 0 || keep >= static_cast<Index>(full.merges.size())) return full;
  std::set<std::string> kept;
  for (int b = 0; b < 256; ++b) {
    std::string symbol;
    io::detail::append_utf8(symbol, io::detail::byte_to_unicode()[static_cast<std::size_t>(b)]);
    kept.insert(symbol);
  }
  BpeFiles out;
  for (Index r = 0; r < keep; ++r) {
    const std::string& m = full.merges[static_cast<std::size_t>(r)];
    const auto space = m.find(' ');
    check<FormatError>(space != std::string::npos, (dir / "merges.txt").string(), ": merge ",
                       r + 1, " '", m, "' is not two tokens separated by a space");
    const std::string a = m.substr(0, space), b = m.substr(space + 1);
    check<FormatError>(kept.count(a) && kept.count(b), (dir / "merges.txt").string(), ": merge ",
                       r + 1, " '", m, "' uses a token no earlier merge made");
    kept.insert(a + b);
    out.merges.push_back(m);
  }
  std::vector<std::pair<std::int64_t, std::string>> by_id;
  for (const auto& [token, id] : full.vocab.items()) {
    const auto i = id.get<std::int64_t>();
    if (kept.count(token) || tokenizer.is_special(i)) by_id.emplace_back(i, token);
  }
  std::sort(by_id.begin(), by_id.end());
  out.vocab = io::Json::object();
  for (std::size_t k = 0; k < by_id.size(); ++k) out.vocab[by_id[k].second] = static_cast<Index>(k);
  return out;
}

void write_bpe_files(const BpeFiles& f, const fs::path& dir) {
  fs::create_directories(dir);
  io::write_json(dir / "vocab.json", f.vocab);
  util::write_file_atomically(dir / "merges.txt", [&](std::ostream& out) {
    out << "#version: 0.2\n";
    for (const std::string& m : f.merges) out << m << '\n';
  });
}

// ---- clm-llama: the tokenizer as one Hugging Face tokenizer.json, with chat tokens ----------

// The tokens a chat model needs beyond GPT-2's: ChatML's turn markers, after <|endoftext|>.
constexpr const char* im_start = "<|im_start|>";
constexpr const char* im_end = "<|im_end|>";
constexpr const char* end_of_text = "<|endoftext|>";

// ChatML, the widely used template (as in the configs of ChatML models such as OpenHermes-2.5 and
// in transformers' chat-templating guide; its '\n' are Jinja escapes, as in those files):
// "<|im_start|>role\ncontent<|im_end|>\n" per message,
// then "<|im_start|>assistant\n" when add_generation_prompt.
constexpr const char* chatml_template =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
    "}}{% endif %}";

// The ids of the three special tokens in the saved vocabulary: <|endoftext|> as the reduced
// GPT-2 vocabulary numbers it (its last id), the two ChatML markers right after it.
struct ChatTokenIds {
  std::int64_t end_of_text = -1, im_start = -1, im_end = -1;
  Index vocab_size = 0;  // embedding rows: the BPE vocabulary + the two markers
  std::array<std::pair<const char*, std::int64_t>, 3> specials() const {
    return {{{"<|endoftext|>", end_of_text}, {"<|im_start|>", im_start}, {"<|im_end|>", im_end}}};
  }
};
ChatTokenIds chat_token_ids(const BpeFiles& bpe) {
  ChatTokenIds ids;
  check<FormatError>(bpe.vocab.contains(end_of_text), "the tokenizer has no ", end_of_text);
  ids.end_of_text = bpe.vocab.at(end_of_text).get<std::int64_t>();
  const auto n = static_cast<std::int64_t>(bpe.vocab.size());
  ids.im_start = n;
  ids.im_end = n + 1;
  ids.vocab_size = n + 2;
  return ids;
}

// tokenizer.json in the layout of the `tokenizers` library (GPT-2's and Qwen's byte-level BPE): no
// normalizer, ByteLevel pre-tokenizer (GPT-2's split regex, no prefix space), ByteLevel
// post-processor (adds no ids) and decoder; model BPE with the vocabulary and "a b" merges; the
// three special tokens as added tokens (special, not normalized).
io::Json hf_tokenizer_json(const BpeFiles& bpe, const ChatTokenIds& ids) {
  const auto byte_level = [](bool trim_offsets) {
    return io::Json{{"type", "ByteLevel"}, {"add_prefix_space", false},
                    {"trim_offsets", trim_offsets}, {"use_regex", true}};
  };
  io::Json added = io::Json::array();
  for (const auto& [content, id] : ids.specials())
    added.push_back({{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  io::Json vocab = bpe.vocab;  // the markers are added tokens only, as in Qwen's file
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", byte_level(true)},
          {"post_processor", byte_level(false)},
          {"decoder", byte_level(true)},
          {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
                     {"continuing_subword_prefix", ""}, {"end_of_word_suffix", ""},
                     {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
                     {"vocab", vocab}, {"merges", bpe.merges}}}};
}

// tokenizer_config.json for transformers' PreTrainedTokenizerFast: no BOS, EOS = <|im_end|> (the
// end of an assistant turn), pad = <|endoftext|>, the ChatML chat_template.
io::Json hf_tokenizer_config(const ChatTokenIds& ids, Index max_len) {
  io::Json decoder = io::Json::object();
  for (const auto& [content, id] : ids.specials())
    decoder[std::to_string(id)] = {{"content", content}, {"lstrip", false}, {"normalized", false},
                                   {"rstrip", false}, {"single_word", false}, {"special", true}};
  return {{"add_bos_token", false},
          {"add_prefix_space", false},
          {"added_tokens_decoder", decoder},
          {"additional_special_tokens", io::Json::array({im_start, im_end})},
          {"bos_token", nullptr},
          {"chat_template", chatml_template},
          {"clean_up_tokenization_spaces", false},
          {"eos_token", im_end},
          {"errors", "replace"},
          {"model_max_length", max_len},
          {"pad_token", end_of_text},
          {"split_special_tokens", false},
          {"tokenizer_class", "PreTrainedTokenizerFast"},
          {"unk_token", nullptr}};
}

// The saved tokenizer read back by io::HfTokenizer must be the one the model was trained with:
// the same ids for every sample text (and the text back from them), the special tokens where
// they were put, no BOS/EOS added. Throws FormatError naming the file and the first difference.
void check_saved_tokenizer(const fs::path& dir, const io::BpeTokenizer& trained,
                           const ChatTokenIds& ids, const std::vector<std::string>& samples) {
  const io::HfTokenizer saved = io::HfTokenizer::load(dir);
  const std::string file = (dir / "tokenizer.json").string();
  check<FormatError>(saved.vocab_size() == ids.vocab_size, file, ": ", saved.vocab_size(),
                     " tokens, the model has ", ids.vocab_size);
  for (const auto& [content, id] : ids.specials())
    check<FormatError>(saved.token_id(content) == id && saved.is_special(id), file, ": ", content,
                       " should be special token ", id);
  const io::SpecialTokens& s = saved.special_tokens();
  check<FormatError>(!s.bos && s.eos == ids.im_end && s.pad == ids.end_of_text &&
                         saved.template_prefix().empty() && saved.template_suffix().empty(),
                     file, ": tokenizer_config.json should give no BOS, eos ", im_end, " and pad ",
                     end_of_text, ", and add no ids");
  for (const std::string& text : samples) {
    const std::vector<std::int64_t> expected = trained.encode(text),
                                    got = saved.encode(text, io::SpecialText::plain);
    check<FormatError>(got == expected, file, ": encodes '", text, "' to ", got.size(),
                       " ids, the training tokenizer to ", expected.size(),
                       got.size() == expected.size() ? " (different ids)" : "");
    check<FormatError>(saved.decode(got) == text, file, ": decoding '", text, "' gives '",
                       saved.decode(got), "'");
  }
}

// The corpus as one id stream cut into blocks of T (the last partial block is dropped, as
// run_mlm.py / run_clm.py do). mlm: "<s> line </s>" per line; clm: "line <|endoftext|>".
std::vector<std::vector<std::int64_t>> make_blocks(const io::BpeTokenizer& tokenizer,
                                                   const std::vector<std::string>& lines,
                                                   bool masked_lm, std::int64_t eos, Index T) {
  io::EncodeOptions options;
  options.add_special_tokens = masked_lm;
  const auto encoded = tokenizer.encode_many(lines, {}, options);
  std::vector<std::vector<std::int64_t>> blocks(1);
  for (const auto& ids : encoded) {
    std::vector<std::int64_t> row = ids;
    if (!masked_lm) row.push_back(eos);
    for (std::int64_t id : row) {
      blocks.back().push_back(id);
      if (static_cast<Index>(blocks.back().size()) == T) blocks.emplace_back();
    }
  }
  blocks.pop_back();  // partial (or empty)
  return blocks;
}

// (B, T) ids of the blocks `rows`.
Tensor<std::int64_t> stack_blocks(const std::vector<std::vector<std::int64_t>>& blocks,
                                  std::span<const Index> rows) {
  const auto B = static_cast<Index>(rows.size());
  const auto T = static_cast<Index>(blocks.front().size());
  Tensor<std::int64_t> ids({B, T});
  for (Index b = 0; b < B; ++b)
    std::copy_n(blocks[static_cast<std::size_t>(rows[static_cast<std::size_t>(b)])].begin(), T,
                ids.ptr() + b * T);
  return ids;
}

// A data-parallel rank's loss on its shard of a micro-batch, and the shard's share of the
// micro-batch's loss (train::Run::accumulate's `share`).
struct ShardLoss {
  Var<float> loss;
  double share = 1.0;
};

// BERT's masking (HF DataCollatorForLanguageModeling, mlm_probability 0.15): each non-special
// token is chosen with probability p; a chosen one becomes <mask> (80%), a random non-special
// token (10%) or stays (10%), and its label is the original id; every other label is -100.
// At least one token per batch is chosen.
struct MaskedBatch {
  Tensor<std::int64_t> input_ids;  // (B, T), masked
  Tensor<std::int64_t> labels;     // (B, T), -100 where not chosen
};
MaskedBatch mask_tokens(const Tensor<std::int64_t>& ids, const std::vector<bool>& special,
                        const std::vector<std::int64_t>& ordinary, std::int64_t mask_id,
                        double p, Rng& rng) {
  MaskedBatch m{ids.clone(), Tensor<std::int64_t>::full(ids.shape(), -100)};
  Index chosen = 0, first_ordinary = -1;
  for (Index n = 0; n < ids.numel(); ++n) {
    if (special[static_cast<std::size_t>(ids[n])]) continue;
    if (first_ordinary < 0) first_ordinary = n;
    if (rng.uniform() >= p) continue;
    ++chosen;
    m.labels[n] = ids[n];
    const double u = rng.uniform();
    if (u < 0.8)
      m.input_ids[n] = mask_id;
    else if (u < 0.9)
      m.input_ids[n] = ordinary[rng.below(ordinary.size())];
  }
  if (chosen == 0 && first_ordinary >= 0) {
    m.labels[first_ordinary] = ids[first_ordinary];
    m.input_ids[first_ordinary] = mask_id;
  }
  return m;
}

// ===========================================================================================
// The three tasks: model, a micro-batch's loss, evaluation, saving. The loop in main() is shared.
// ===========================================================================================

struct Evaluation {
  std::string metric;  // "masked_lm_loss", "lm_loss", "accuracy"
  double value = 0;
  io::Json details = io::Json::object();
  std::string line;    // "eval loss 3.2140 | masked-token accuracy 0.4012"
};

// ---- mlm and clm --------------------------------------------------------------------------
struct TextTask {
  bool masked_lm = true;
  bool llama_lm = false;                      // clm-llama (masked_lm false)
  std::optional<io::BpeTokenizer> tokenizer;  // set once the files are chosen
  fs::path tokenizer_dir;  // the (reduced) vocab.json + merges.txt, copied into the checkpoint
  std::vector<std::vector<std::int64_t>> train, eval;  // blocks of T ids
  std::vector<bool> special;                           // by id
  std::vector<std::int64_t> ordinary;                  // non-special ids (random replacements)
  std::int64_t mask_id = -1, eos_id = -1;
  std::unique_ptr<models::RobertaForMaskedLM<float>> mlm;
  std::unique_ptr<models::GPT2LMHeadModel<float>> clm;
  std::unique_ptr<models::LlamaForCausalLM<float>> llama;
  BpeFiles bpe;                      // clm-llama: the (reduced) files, written as tokenizer.json
  ChatTokenIds chat_ids;             // clm-llama: the special tokens' ids
  std::vector<std::string> samples;  // clm-llama: corpus lines the saved tokenizer must encode alike

  nn::Module<float>& model() {
    if (masked_lm) return *mlm;
    return llama_lm ? static_cast<nn::Module<float>&>(*llama) : *clm;
  }
  Index size() const { return static_cast<Index>(train.size()); }
  Index items(Index rows) const {
    return rows * static_cast<Index>(train.front().size());
  }
  void reseed(std::uint64_t seed, std::uint64_t step) {
    if (masked_lm) train::reseed_dropout(*mlm, seed, step);
    else if (!llama_lm) train::reseed_dropout(*clm, seed, step);  // LLaMA has no dropout
  }

  // The loss of this rank's rows [begin, begin + count) of micro-batch `rows`, and its share of the
  // micro-batch's loss (1 in one process). mlm masking is drawn from `rng` over the whole micro-batch
  // (the one-process draws), so the shard's loss is a mean over its masked tokens and its share is
  // shard masked / micro-batch masked; clm blocks all score T − 1 tokens: share = count / B.
  // nullopt: the shard has nothing to score (no masked token in it).
  std::optional<ShardLoss> loss(Tape<float>& tape, const std::vector<std::vector<std::int64_t>>& blocks,
                                std::span<const Index> rows, Index begin, Index count, Rng& rng) {
    const auto B = static_cast<Index>(rows.size());
    if (masked_lm) {
      MaskedBatch m = mask_tokens(stack_blocks(blocks, rows), special, ordinary, mask_id, 0.15, rng);
      double share = 1.0;
      if (count != B) {
        const auto masked = [](const Tensor<std::int64_t>& labels) {
          return static_cast<double>(std::count_if(labels.ptr(), labels.ptr() + labels.numel(),
                                                   [](std::int64_t l) { return l != -100; }));
        };
        const double all = masked(m.labels);
        m = {slice_rows(m.input_ids, begin, count), slice_rows(m.labels, begin, count)};
        share = masked(m.labels) / all;
        if (share == 0) return std::nullopt;
      }
      const Var<float> hidden = mlm->roberta.forward(tape, m.input_ids);
      return ShardLoss{mlm->loss(tape, hidden, m.labels), share};
    }
    const Tensor<std::int64_t> ids = stack_blocks(blocks, rows.subspan(static_cast<std::size_t>(begin),
                                                                       static_cast<std::size_t>(count)));
    const double share = static_cast<double>(count) / static_cast<double>(B);
    if (llama_lm) return ShardLoss{models::causal_lm_loss(tape, llama->forward(tape, ids).logits, ids), share};
    return ShardLoss{models::causal_lm_loss(tape, clm->forward(tape, ids).logits, ids), share};
  }

  // Held-out blocks, masking fixed by the seed (the same positions every epoch): the mean loss
  // over scored tokens, and for mlm the share of masked tokens predicted exactly.
  Evaluation evaluate(nn::Module<float>& m, std::uint64_t seed, Index batch_size) {
    m.eval();
    Tape<float> tape;
    NoGradScope<float> no_grad(tape);
    double loss_sum = 0, scored = 0, correct = 0;
    Rng rng = train::step_rng(seed, train::Stream::masking, 0xE7A1);
    for (Index start = 0; start < static_cast<Index>(eval.size()); start += batch_size) {
      std::vector<Index> rows;
      for (Index i = start; i < std::min<Index>(static_cast<Index>(eval.size()), start + batch_size); ++i)
        rows.push_back(i);
      const Tensor<std::int64_t> ids = stack_blocks(eval, rows);
      if (masked_lm) {
        auto& model = dynamic_cast<models::RobertaForMaskedLM<float>&>(m);
        const MaskedBatch b = mask_tokens(ids, special, ordinary, mask_id, 0.15, rng);
        const std::vector<std::int64_t> at = models::masked_positions(b.labels);
        const Var<float> logits =
            model.scored_logits(tape, model.roberta.forward(tape, b.input_ids), at);
        const Index V = logits.size(1);
        for (std::size_t k = 0; k < at.size(); ++k) {
          const float* row = logits.data().data() + static_cast<Index>(k) * V;
          const float top = *std::max_element(row, row + V);
          double sum = 0;
          for (Index v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v] - top));
          const std::int64_t label = b.labels[at[k]];
          loss_sum += std::log(sum) - static_cast<double>(row[label] - top);
          correct += (std::max_element(row, row + V) - row) == label ? 1 : 0;
        }
        scored += static_cast<double>(at.size());
      } else {
        const Var<float> logits =
            llama_lm ? dynamic_cast<models::LlamaForCausalLM<float>&>(m).forward(tape, ids).logits
                     : dynamic_cast<models::GPT2LMHeadModel<float>&>(m).forward(tape, ids).logits;
        const double n = static_cast<double>(ids.size(0) * (ids.size(1) - 1));
        loss_sum += models::causal_lm_loss(tape, logits, ids).item() * n;
        scored += n;
      }
      tape.clear();
    }
    Evaluation e;
    e.value = scored > 0 ? loss_sum / scored : 0.0;
    char line[160];
    if (masked_lm) {
      e.metric = "masked_lm_loss";
      e.details = {{"masked_lm_loss", e.value}, {"masked_token_accuracy", correct / scored},
                   {"scored_tokens", scored}, {"eval_blocks", eval.size()}};
      std::snprintf(line, sizeof line, "eval masked-LM loss %.4f | masked-token accuracy %.4f",
                    e.value, correct / scored);
    } else {
      e.metric = "lm_loss";
      e.details = {{"lm_loss", e.value}, {"perplexity", std::exp(e.value)},
                   {"scored_tokens", scored}, {"eval_blocks", eval.size()}};
      std::snprintf(line, sizeof line, "eval LM loss %.4f | perplexity %.2f", e.value,
                    std::exp(e.value));
    }
    e.line = line;
    return e;
  }

  void save(const fs::path& dir, io::Dtype dtype) const {
    if (llama_lm) {
      llama->save_pretrained(dir, dtype);
      const auto T = static_cast<Index>(train.front().size());
      io::write_json(dir / "tokenizer.json", hf_tokenizer_json(bpe, chat_ids));
      io::write_json(dir / "tokenizer_config.json", hf_tokenizer_config(chat_ids, T));
      // generate() stops at the end of an assistant turn or of a document.
      io::write_json(dir / "generation_config.json",
                     {{"bos_token_id", chat_ids.end_of_text},
                      {"eos_token_id", io::Json::array({chat_ids.im_end, chat_ids.end_of_text})},
                      {"pad_token_id", chat_ids.end_of_text}});
      return;
    }
    if (masked_lm) mlm->save_pretrained(dir, dtype);
    else clm->save_pretrained(dir, dtype);
    fs::copy_file(tokenizer_dir / "vocab.json", dir / "vocab.json");
    fs::copy_file(tokenizer_dir / "merges.txt", dir / "merges.txt");
    io::write_json(dir / "tokenizer_config.json",
                   {{"tokenizer_class", masked_lm ? "RobertaTokenizer" : "GPT2Tokenizer"},
                    {"model_max_length", train.front().size()}});
  }
  // The saved folder read back the way the fine-tuning programs read it.
  // clm-llama also checks the saved tokenizer against the training one (check_saved_tokenizer).
  std::unique_ptr<nn::Module<float>> load(const fs::path& dir) const {
    if (llama_lm) {
      check_saved_tokenizer(dir, *tokenizer, chat_ids, samples);
      return models::LlamaForCausalLM<float>::from_pretrained(dir);
    }
    if (masked_lm) return models::RobertaForMaskedLM<float>::from_pretrained(dir);
    return models::GPT2LMHeadModel<float>::from_pretrained(dir);
  }
};

// ---- image ----------------------------------------------------------------------------------
struct ImageTask {
  std::unique_ptr<io::DecodedImageFolder> train_images, test_images;  // decoded once
  io::ImageProcessor processor;
  io::RandomResizedCropOptions crop;
  std::unique_ptr<models::ViTForImageClassification<float>> vit;

  nn::Module<float>& model() { return *vit; }
  Index size() const { return train_images->size(); }
  Index items(Index rows) const { return rows; }
  void reseed(std::uint64_t seed, std::uint64_t step) { train::reseed_dropout(*vit, seed, step); }

  // The loss of this rank's rows [begin, begin + count) of micro-batch `rows` (a mean over images:
  // share count / B). Every rank augments the whole micro-batch (the one-process draws).
  std::optional<ShardLoss> loss(Tape<float>& tape, std::span<const Index> rows, Index begin,
                                Index count, Rng& augment) {
    io::ImageBatch batch = train_images->batch(rows, processor, &augment, crop);
    const auto B = static_cast<Index>(rows.size());
    if (count != B) batch = io::batch_rows(batch, begin, count);
    return ShardLoss{vit->loss(tape, vit->forward(tape, batch.pixels).logits, batch.labels),
                     static_cast<double>(count) / static_cast<double>(B)};
  }

  // Test accuracy, evaluation transform (deterministic: the same count for the same weights).
  Evaluation evaluate(nn::Module<float>& m, std::uint64_t, Index batch_size) const {
    auto& model = dynamic_cast<models::ViTForImageClassification<float>&>(m);
    model.eval();
    Tape<float> tape;
    NoGradScope<float> no_grad(tape);
    Index correct = 0;
    std::vector<Index> per_class_correct(test_images->classes().size()), per_class(per_class_correct.size());
    const Index N = test_images->size();
    for (Index start = 0; start < N; start += batch_size) {
      std::vector<Index> rows;
      for (Index i = start; i < std::min(N, start + batch_size); ++i) rows.push_back(i);
      const io::ImageBatch batch = test_images->batch(rows, processor);
      const Var<float> logits = model.forward(tape, batch.pixels).logits;
      const Index L = logits.size(1);
      for (std::size_t b = 0; b < rows.size(); ++b) {
        const float* row = logits.data().data() + static_cast<Index>(b) * L;
        const auto label = static_cast<std::size_t>(batch.labels[static_cast<Index>(b)]);
        const bool hit = static_cast<std::size_t>(std::max_element(row, row + L) - row) == label;
        correct += hit ? 1 : 0;
        per_class_correct[label] += hit ? 1 : 0;
        ++per_class[label];
      }
      tape.clear();
    }
    Evaluation e;
    e.metric = "accuracy";
    e.value = static_cast<double>(correct) / static_cast<double>(N);
    io::Json classes = io::Json::object();
    for (std::size_t c = 0; c < per_class.size(); ++c)
      classes[test_images->classes()[c]] = static_cast<double>(per_class_correct[c]) /
                                           static_cast<double>(std::max<Index>(1, per_class[c]));
    e.details = {{"accuracy", e.value}, {"correct", correct}, {"images", N},
                 {"per_class_accuracy", classes}};
    char line[96];
    std::snprintf(line, sizeof line, "test accuracy %.4f (%lld/%lld)", e.value,
                  static_cast<long long>(correct), static_cast<long long>(N));
    e.line = line;
    return e;
  }

  void save(const fs::path& dir, io::Dtype dtype) const {
    vit->save_pretrained(dir, dtype);
    io::write_json(dir / "preprocessor_config.json",
                   {{"do_normalize", true}, {"do_rescale", true}, {"do_resize", true},
                    {"image_mean", processor.image_mean}, {"image_std", processor.image_std},
                    {"image_processor_type", "ViTImageProcessor"}, {"resample", 2},
                    {"rescale_factor", processor.rescale_factor},
                    {"size", {{"height", processor.height}, {"width", processor.width}}}});
  }
  std::unique_ptr<nn::Module<float>> load(const fs::path& dir) const {
    return models::ViTForImageClassification<float>::from_pretrained(dir);
  }
};

// AdamW groups: weights (2-D and more) decay; biases, norms, cls / position tables of rank < 2 do
// not (the usual pretraining split, as HF's Trainer makes it).
std::vector<optim::ParamGroup<float>> decay_groups(nn::Module<float>& model, double lr,
                                                   double weight_decay) {
  optim::ParamGroup<float> decay{.params = {}, .lr = lr, .weight_decay = weight_decay, .name = "decay"};
  optim::ParamGroup<float> no_decay{.params = {}, .lr = lr, .weight_decay = 0.0, .name = "no_decay"};
  for (const auto& [name, p] : model.named_parameters()) {
    const bool is_norm = name.find("LayerNorm") != std::string::npos ||
                         name.find("layer_norm") != std::string::npos ||
                         name.find("layernorm") != std::string::npos ||
                         name.find(".ln_") != std::string::npos;
    (p.dim() >= 2 && !is_norm ? decay : no_decay).params.push_back(p);
  }
  return {decay, no_decay};
}

Index count_parameters(nn::Module<float>& model) {
  Index n = 0;
  for (const auto& [name, p] : model.named_parameters()) n += p.numel();
  return n;
}

std::string command_line(int argc, char** argv) {
  std::string out = "pretrain";
  for (int i = 1; i < argc; ++i) out += std::string(" ") + argv[i];
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // whole lines, also into a file or a pipe
  const auto run_start = std::chrono::steady_clock::now();
  dist::World world = dist::world(argc, argv);  // one process, or this one's rank under mpirun
  try {
    // ---- options ---------------------------------------------------------------------------------
    util::Args args(argc, argv, {"--resume", "--fast-fft", "--unique-lines", "--help"});
    if (args.has("--help")) {
      std::cout << usage;
      return 0;
    }
    const std::string mode = args.str("--mode");
    check(mode == "mlm" || mode == "clm" || mode == "clm-llama" || mode == "image",
          "option --mode expects mlm, clm or image, got '", mode, "' (or clm-llama: clm with a ",
          "LLaMA model)");
    const bool is_image = mode == "image", is_llama = mode == "clm-llama";
    train::RunOptions opt;
    opt.lr = 5e-4;
    opt.weight_decay = 0.01;
    opt.warmup_ratio = 0.06;
    opt.out = "out/pretrain";
    train::read_loop_options(args, opt);
    const Index layers = args.integer("--layers", 4), hidden = args.integer("--hidden", 128);
    const Index heads = args.integer("--heads", 4);
    const Index intermediate = args.integer("--intermediate", 4 * hidden);
    const double dropout = args.real("--dropout", is_image || is_llama ? 0.0 : 0.1);
    const double attention_dropout = args.real("--attention-dropout", 0.0);
    const Index kv_heads = is_llama ? args.integer("--kv-heads", heads) : heads;
    const double rope_theta = is_llama ? args.real("--rope-theta", 10000.0) : 0.0;
    const std::string tie_embeddings = is_llama ? args.str("--tie-embeddings", "yes") : "yes";
    const std::string dtype_name = args.str("--dtype", "f32");
    const Index max_len = args.integer("--max-len", 128);
    const double eval_fraction = args.real("--eval-fraction", 0.02);
    const Index vocab_merges = args.integer("--vocab-merges", 0);
    const bool unique_lines = args.has("--unique-lines");
    const Index image_size = args.integer("--image-size", 32), patch = args.integer("--patch", 4);
    const double crop_min = args.real("--crop-min", 0.35);
    const std::string text_files = is_image ? "" : args.str("--text");
    const fs::path tokenizer_dir = is_image ? fs::path() : fs::path(args.str("--tokenizer"));
    const fs::path data_dir = is_image ? fs::path(args.str("--data")) : fs::path();
    args.reject_unknown();
    check(args.positional().empty(), "unexpected argument '",
          args.positional().empty() ? "" : args.positional()[0], "' (options start with --)");
    check(layers >= 1 && hidden >= 1 && heads >= 1 && intermediate >= 1,
          "options --layers, --hidden, --heads, --intermediate must be >= 1");
    check(hidden % heads == 0, "option --hidden (", hidden, ") must be a multiple of --heads (",
          heads, ")");
    check(dropout >= 0 && dropout < 1 && attention_dropout >= 0 && attention_dropout < 1,
          "options --dropout and --attention-dropout must be in [0, 1)");
    check(dtype_name == "f32" || dtype_name == "f16" || dtype_name == "bf16",
          "option --dtype expects f32, f16 or bf16, got '", dtype_name, "'");
    const io::Dtype dtype = dtype_name == "f16"    ? io::Dtype::F16
                            : dtype_name == "bf16" ? io::Dtype::BF16
                                                   : io::Dtype::F32;
    check(!is_llama || (dropout == 0 && attention_dropout == 0),
          "--mode clm-llama has no dropout (LLaMA uses none): drop --dropout / --attention-dropout");
    check(kv_heads >= 1 && heads % kv_heads == 0, "option --kv-heads (", kv_heads,
          ") must divide --heads (", heads, ")");
    check(rope_theta > 0 || !is_llama, "option --rope-theta must be > 0, got ", rope_theta);
    check(tie_embeddings == "yes" || tie_embeddings == "no",
          "option --tie-embeddings expects yes or no, got '", tie_embeddings, "'");
    check(max_len >= 4, "option --max-len must be >= 4, got ", max_len);
    check(eval_fraction > 0 && eval_fraction < 1, "option --eval-fraction must be in (0, 1), got ",
          eval_fraction);
    check(vocab_merges >= 0, "option --vocab-merges must be >= 0, got ", vocab_merges);
    check(image_size >= 1 && patch >= 1 && image_size % patch == 0, "option --image-size (",
          image_size, ") must be a positive multiple of --patch (", patch, ")");
    check(crop_min > 0 && crop_min <= 1, "option --crop-min must be in (0, 1], got ", crop_min);
    if (opt.threads > 0) set_num_threads(opt.threads);
    ops::spectral::reproducible_fft(!opt.fast_fft);
    std::printf("pretrain: mode %s, %d threads, seed %llu\n", mode.c_str(), num_threads(),
                static_cast<unsigned long long>(opt.seed));
    fs::create_directories(opt.out);

    // ---- data and model --------------------------------------------------------------------------
    TextTask text;
    ImageTask image;
    if (is_image) {
      image.train_images = std::make_unique<io::DecodedImageFolder>(data_dir / "train");
      image.test_images = std::make_unique<io::DecodedImageFolder>(data_dir / "test");
      check<FormatError>(image.train_images->classes() == image.test_images->classes(), "'",
                         (data_dir / "test").string(), "' has other classes than '",
                         (data_dir / "train").string(), "': they must be the same");
      image.processor.height = image.processor.width = image_size;
      image.crop.scale_min = crop_min;
      io::VitConfig c;
      c.hidden_size = hidden;
      c.num_hidden_layers = layers;
      c.num_attention_heads = heads;
      c.intermediate_size = intermediate;
      c.image_size = image_size;
      c.patch_size = patch;
      c.encoder_stride = patch;
      c.hidden_dropout_prob = dropout;
      c.attention_probs_dropout_prob = attention_dropout;
      c.id2label = image.train_images->classes();
      c.problem_type = "single_label_classification";
      image.vit = std::make_unique<models::ViTForImageClassification<float>>(c, opt.seed);
      std::string names;
      for (const std::string& n : c.id2label) names.append(names.empty() ? "" : ", ").append(n);
      std::printf("data: %s: train %lld images, test %lld, %zu classes (%s); %lld x %lld, train: "
                  "random resized crop (area %.2f..1) + flip\n", data_dir.string().c_str(),
                  static_cast<long long>(image.train_images->size()),
                  static_cast<long long>(image.test_images->size()), c.id2label.size(),
                  names.c_str(), static_cast<long long>(image_size),
                  static_cast<long long>(image_size), crop_min);
      std::printf("model: ViTForImageClassification, %lld layers, hidden %lld, %lld heads, mlp %lld, "
                  "patch %lld (%lld patches + CLS)\n", static_cast<long long>(layers),
                  static_cast<long long>(hidden), static_cast<long long>(heads),
                  static_cast<long long>(intermediate), static_cast<long long>(patch),
                  static_cast<long long>(c.num_patches()));
    } else {
      text.masked_lm = mode == "mlm";
      text.llama_lm = is_llama;
      // The tokenizer as given, then reduced to its first K merges; the files used are kept in
      // <out>/tokenizer/ (a resumed run reads the same ones) and copied into the checkpoint.
      const BpeFiles full = read_bpe_files(tokenizer_dir);
      const io::BpeTokenizer given =
          io::BpeTokenizer::from_files(tokenizer_dir / "vocab.json", tokenizer_dir / "merges.txt");
      text.tokenizer_dir = opt.out / "tokenizer";
      text.bpe = keep_first_merges(full, given, vocab_merges, tokenizer_dir);
      write_bpe_files(text.bpe, text.tokenizer_dir);
      text.tokenizer = io::BpeTokenizer::from_files(text.tokenizer_dir / "vocab.json",
                                                    text.tokenizer_dir / "merges.txt");
      const io::SpecialTokens specials = text.tokenizer->special_tokens();
      // clm-llama: the ChatML markers get the two ids after the BPE vocabulary (unused in
      // pretraining, there for instruction tuning).
      if (is_llama) text.chat_ids = chat_token_ids(text.bpe);
      const Index V = is_llama ? text.chat_ids.vocab_size : text.tokenizer->vocab_size();
      text.special.assign(static_cast<std::size_t>(V), false);
      for (std::int64_t id = 0; id < V; ++id) {
        text.special[static_cast<std::size_t>(id)] =
            id >= text.tokenizer->vocab_size() || text.tokenizer->is_special(id);
        if (!text.special[static_cast<std::size_t>(id)]) text.ordinary.push_back(id);
      }
      if (text.masked_lm) {
        check<FormatError>(specials.mask && specials.pad && specials.bos && specials.eos,
                           tokenizer_dir.string(), ": --mode mlm needs a RoBERTa vocabulary (<s>, ",
                           "<pad>, </s>, <mask>)");
        text.mask_id = *specials.mask;
      } else {
        check<FormatError>(specials.eos.has_value() && !specials.mask.has_value(),
                           tokenizer_dir.string(), ": --mode ", mode, " needs a GPT-2 ",
                           "vocabulary (<|endoftext|>, no <mask>); this one is RoBERTa's");
        text.eos_id = *specials.eos;
      }

      std::vector<std::string> lines;
      const std::vector<std::string> files = split_commas(text_files);
      check(!files.empty(), "option --text needs at least one file");
      for (const std::string& f : files) {
        std::vector<std::string> more = read_corpus(f);
        std::printf("corpus: %s: %zu sentences\n", f.c_str(), more.size());
        lines.insert(lines.end(), more.begin(), more.end());
      }
      if (unique_lines) {
        std::set<std::string> seen;
        const std::size_t before = lines.size();
        std::erase_if(lines, [&](const std::string& line) { return !seen.insert(line).second; });
        std::printf("corpus: %zu repeated lines dropped (--unique-lines)\n", before - lines.size());
      }
      // 200 lines spread over the corpus: the saved tokenizer.json must encode them alike.
      for (std::size_t i = 0; is_llama && i < lines.size(); i += std::max<std::size_t>(1, lines.size() / 200))
        text.samples.push_back(lines[i]);
      auto blocks = make_blocks(*text.tokenizer, lines, text.masked_lm, text.eos_id, max_len);
      const auto n_eval = std::max<std::size_t>(1, static_cast<std::size_t>(
                                                       eval_fraction * static_cast<double>(blocks.size())));
      check<FormatError>(blocks.size() >= n_eval + 1, "the corpus makes ", blocks.size(),
                         " blocks of ", max_len, " tokens: too few to train and hold out ", n_eval,
                         " (lower --max-len or add text)");
      text.eval.assign(blocks.end() - static_cast<std::ptrdiff_t>(n_eval), blocks.end());
      blocks.resize(blocks.size() - n_eval);
      text.train = std::move(blocks);
      std::printf("tokenizer: %s%s: vocabulary %lld\n", tokenizer_dir.string().c_str(),
                  vocab_merges > 0 ? str_cat(", first ", vocab_merges, " merges").c_str() : "",
                  static_cast<long long>(V));
      std::printf("data: %zu sentences -> %zu training blocks + %zu held out, %lld tokens each%s\n",
                  lines.size(), text.train.size(), text.eval.size(), static_cast<long long>(max_len),
                  text.masked_lm ? " (<s> sentence </s> ...), 15% masked per step" : "");
      if (text.masked_lm) {
        io::RobertaConfig c;
        c.vocab_size = V;
        c.hidden_size = hidden;
        c.num_hidden_layers = layers;
        c.num_attention_heads = heads;
        c.intermediate_size = intermediate;
        c.max_position_embeddings = max_len + 2;  // positions pad+1 .. pad+T
        c.type_vocab_size = 1;
        c.layer_norm_eps = 1e-5;
        c.hidden_dropout_prob = dropout;
        c.attention_probs_dropout_prob = attention_dropout;
        c.pad_token_id = *specials.pad;
        c.bos_token_id = *specials.bos;
        c.eos_token_id = *specials.eos;
        text.mlm = std::make_unique<models::RobertaForMaskedLM<float>>(c, opt.seed);
        std::printf("model: RobertaForMaskedLM, %lld layers, hidden %lld, %lld heads, intermediate "
                    "%lld, positions %lld, vocabulary %lld (decoder tied)\n",
                    static_cast<long long>(layers), static_cast<long long>(hidden),
                    static_cast<long long>(heads), static_cast<long long>(intermediate),
                    static_cast<long long>(c.max_position_embeddings), static_cast<long long>(V));
      } else if (is_llama) {
        io::LlamaConfig c;
        c.vocab_size = V;
        c.hidden_size = hidden;
        c.intermediate_size = intermediate;
        c.num_hidden_layers = layers;
        c.num_attention_heads = heads;
        c.num_key_value_heads = kv_heads;
        c.max_position_embeddings = max_len;  // the context it was trained on (RoPE: no table)
        c.rope_theta = rope_theta;
        c.tie_word_embeddings = tie_embeddings == "yes";
        c.bos_token_id = text.chat_ids.end_of_text;  // as Qwen: <|endoftext|>, never added
        c.pad_token_id = text.chat_ids.end_of_text;
        c.eos_token_id = text.chat_ids.im_end;
        c.eos_token_ids = {text.chat_ids.im_end, text.chat_ids.end_of_text};
        text.llama = std::make_unique<models::LlamaForCausalLM<float>>(c, opt.seed);
        std::printf("model: LlamaForCausalLM, %lld layers, hidden %lld, %lld heads (%lld key/value), "
                    "intermediate %lld, rope theta %g, vocabulary %lld (with %s, %s; lm_head %s)\n",
                    static_cast<long long>(layers), static_cast<long long>(hidden),
                    static_cast<long long>(heads), static_cast<long long>(kv_heads),
                    static_cast<long long>(intermediate), rope_theta, static_cast<long long>(V),
                    im_start, im_end, c.tie_word_embeddings ? "tied" : "untied");
      } else {
        io::Gpt2Config c;
        c.vocab_size = V;
        c.n_embd = hidden;
        c.n_layer = layers;
        c.n_head = heads;
        c.n_inner = intermediate == 4 * hidden ? std::nullopt : std::optional<Index>(intermediate);
        c.n_positions = max_len;
        c.resid_pdrop = c.embd_pdrop = dropout;
        c.attn_pdrop = attention_dropout;
        c.bos_token_id = c.eos_token_id = text.eos_id;
        text.clm = std::make_unique<models::GPT2LMHeadModel<float>>(c, opt.seed);
        std::printf("model: GPT2LMHeadModel, %lld layers, n_embd %lld, %lld heads, inner %lld, "
                    "n_positions %lld, vocabulary %lld (head tied)\n", static_cast<long long>(layers),
                    static_cast<long long>(hidden), static_cast<long long>(heads),
                    static_cast<long long>(intermediate), static_cast<long long>(max_len),
                    static_cast<long long>(V));
      }
    }
    nn::Module<float>& model = is_image ? image.model() : text.model();
    const Index N = is_image ? image.size() : text.size();
    std::printf("parameters: %s (%.1f MB in F32; saved as %s)\n",
                train::with_commas(count_parameters(model)).c_str(),
                4e-6 * static_cast<double>(count_parameters(model)), dtype_name.c_str());

    // ---- optimizer, schedule, state --------------------------------------------------------------
    optim::AdamW<float> optimizer(decay_groups(model, opt.lr, opt.weight_decay),
                                  {.lr = opt.lr, .weight_decay = opt.weight_decay});
    const std::int64_t steps_per_epoch = train::steps_per_epoch(N, opt.batch, opt.grad_accum);
    const std::int64_t total_steps = steps_per_epoch * opt.epochs;
    const std::int64_t warmup = optim::warmup_steps_for_ratio(total_steps, opt.warmup_ratio);
    const optim::Schedule schedule = optim::linear_warmup_decay(warmup, total_steps);
    std::printf("optim: AdamW lr %g, weight decay %g (not on biases and norms), clip %g, %d epochs "
                "x %lld steps of %lld x %lld %s, linear schedule, warmup %lld steps\n", opt.lr,
                opt.weight_decay, opt.clip, opt.epochs, static_cast<long long>(steps_per_epoch),
                static_cast<long long>(opt.batch), static_cast<long long>(opt.grad_accum),
                is_image ? "images" : "blocks", static_cast<long long>(warmup));

    io::Json settings = train::resume_settings(opt);
    settings.update({{"mode", mode}, {"layers", layers}, {"hidden", hidden}, {"heads", heads},
                     {"intermediate", intermediate}, {"dropout", dropout},
                     {"attention_dropout", attention_dropout}, {"examples", N},
                     {"max_len", is_image ? 0 : max_len}, {"vocab_merges", vocab_merges},
                     {"image_size", is_image ? image_size : 0}, {"patch", is_image ? patch : 0},
                     {"crop_min", is_image ? crop_min : 0.0}});
    if (unique_lines) settings["unique_lines"] = true;  // only when set: older states resume
    if (is_llama)  // only in this mode, so earlier clm / mlm states still resume
      settings.update({{"kv_heads", kv_heads}, {"rope_theta", rope_theta},
                       {"tie_embeddings", tie_embeddings}});
    train::InterruptFlag interrupt;  // Ctrl-C: save the state at the next step boundary and stop
    train::Run run(opt, model, optimizer, interrupt,
                   {.program = "pretrain", .settings = settings, .total_steps = total_steps,
                    .start_fields = {{"command", command_line(argc, argv)}},
                    .unit = is_image ? "img" : "tok",
                    .rate_key = is_image ? "images_per_s" : "tokens_per_s",
                    .lr_per_group = false, .comm = &world.comm()});

    // ---- the loop: forward, backward, clip, step, clear ------------------------------------------
    const std::vector<Var<float>> params = optimizer.parameters();
    Tape<float> tape;
    const Index eval_batch = is_image ? 100 : opt.batch;
    for (int epoch = run.epoch(); epoch < opt.epochs; ++epoch) {
      const auto batches = train::epoch_batches(N, opt.batch, opt.seed, epoch);
      for (const train::Step& step : run.steps(epoch, batches)) {
        optimizer.scale_lr(schedule(step.index));  // lr of this step
        model.train();
        if (is_image) image.reseed(opt.seed, static_cast<std::uint64_t>(step.index));
        else text.reseed(opt.seed, static_cast<std::uint64_t>(step.index));
        // Gradient accumulation: micro-batch m's backward is seeded with its share of the step's
        // examples, so the gradients add up to the mean loss's (a NaN loss stops before updates).
        for (Index m = step.begin; m < step.end; ++m) {
          // Masking (mlm) or crops and flips (image) of this micro-batch: a function of the step.
          Rng draws = train::step_rng(opt.seed, is_image ? train::Stream::augment : train::Stream::masking,
                                      train::mix_seed(static_cast<std::uint64_t>(step.index),
                                                      static_cast<std::uint64_t>(m)));
          // Under mpirun: this rank's shard; every rank draws for the whole micro-batch.
          const std::span<const Index> mine = run.shard(batches[m]);
          if (mine.empty()) continue;
          const auto begin = static_cast<Index>(mine.data() - batches[m].data());
          const auto count = static_cast<Index>(mine.size());
          const std::optional<ShardLoss> shard =
              is_image ? image.loss(tape, batches[m], begin, count, draws)
                       : text.loss(tape, text.train, batches[m], begin, count, draws);
          if (!shard) continue;
          tape.backward(shard->loss,
                        run.accumulate(step, shard->loss, batches[m].size(), shard->share));
          tape.clear();
        }
        run.reduce_gradients();  // Σ over MPI ranks
        if (opt.clip > 0) optim::clip_grad_norm(params, opt.clip);
        optimizer.step();
        optimizer.zero_grad();
        const Index items = is_image ? image.items(step.examples) : text.items(step.examples);
        if (const auto code = run.end_step(step, items)) return *code;  // Ctrl-C or --stop-after
      }

      // ---- evaluate after every epoch ------------------------------------------------------------
      const Evaluation e = is_image ? image.evaluate(model, opt.seed, eval_batch)
                                    : text.evaluate(model, opt.seed, eval_batch);
      run.record_epoch(epoch, {{e.metric, e.value}, {"details", e.details}});
      run.log({{"event", "eval"}, {"step", run.step()}, {"epoch", epoch + 1}, {"metric", e.metric},
               {"value", train::json_number(e.value)}, {"scores", e.details}});
      run.end_epoch(epoch, str_cat("epoch ", epoch + 1, " | ", e.line, " | ",
                                   train::format_duration(run.epoch_seconds())));
    }
    run.end_loop();
    if (!run.is_root()) return 0;  // saving and the final evaluation: rank 0 alone

    // ---- save: <out>/model.tmp, reloaded and evaluated, then renamed to <out>/model --------------
    const fs::path model_dir = opt.out / "model", tmp_dir = opt.out / "model.tmp",
                   old_dir = opt.out / "model.old";
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    if (is_image) image.save(tmp_dir, dtype);
    else text.save(tmp_dir, dtype);
    // What a user of the folder gets: the saved (maybe F16) weights, read back by the loader.
    const std::unique_ptr<nn::Module<float>> saved = is_image ? image.load(tmp_dir) : text.load(tmp_dir);
    const Evaluation final_eval = is_image ? image.evaluate(*saved, opt.seed, eval_batch)
                                           : text.evaluate(*saved, opt.seed, eval_batch);
    const double train_seconds = train::seconds_since(run_start);
    const io::Json record = {{"program", "examples/pretrain.cpp"},
                             {"command", command_line(argc, argv)},
                             {"mode", mode},
                             {"seed", opt.seed},
                             {"threads", num_threads()},
                             {"steps", run.step()},
                             {"epochs", opt.epochs},
                             {"dtype", dtype_name},
                             {"parameters", count_parameters(model)},
                             {"eval_of_saved_weights", final_eval.details},
                             {"seconds", train_seconds}};
    io::write_json(tmp_dir / "pretrain.json", record);
    if (fs::exists(model_dir, ec)) {
      fs::remove_all(old_dir, ec);
      fs::rename(model_dir, old_dir, ec);
      check<IoError>(!ec, "cannot move '", model_dir.string(), "' aside: ", ec.message());
    }
    fs::rename(tmp_dir, model_dir, ec);
    check<IoError>(!ec, "cannot rename '", tmp_dir.string(), "' to '", model_dir.string(), "': ",
                   ec.message());
    fs::remove_all(old_dir, ec);
    run.write_results({{"mode", mode}, {"eval_of_saved_weights", final_eval.details},
                       {"seconds", train_seconds}, {"model", model_dir.string()}});
    run.finish({{"metric", final_eval.metric}, {"value", train::json_number(final_eval.value)},
                {"model", model_dir.string()}});
    std::printf("saved %s (%s weights, reloaded): %s | total %s\n", model_dir.string().c_str(),
                dtype_name.c_str(), final_eval.line.c_str(),
                train::format_duration(train_seconds).c_str());
    return 0;
  } catch (const std::exception& e) {  // fourierft::Error names the file, tensor or option
    return world.fail(train::report_error("pretrain", e));
  }
}
