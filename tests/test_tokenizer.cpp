// Tests of include/fourierft/io/bpe_tokenizer.hpp: ids equal to two independent reference
// tokenizers (tests/fixtures/tokenizer/reference.json, made by scripts/make_tokenizer_fixtures.js),
// byte-exact round trips, templates, truncation, padding, tokenizer.json, and error messages.
// And of io/hf_tokenizer.hpp: ids and decoded text equal tokenizers.js on the Llama 2, Llama 3,
// Mistral and Qwen3 tokenizer.json files (tests/fixtures/tokenizer/hf_reference.json, made by
// scripts/make_hf_tokenizer_fixtures.js); Mistral's file is committed, the others are read from
// ../shared/data/tokenizers and skipped when it is absent.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../examples/cli/cmd_tokenize.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/json.hpp"

using namespace fourierft;
using namespace fourierft::io;
namespace fs = std::filesystem;

namespace {

const fs::path tokenizer_dir = fs::path(FOURIERFT_FIXTURES_DIR) / "tokenizer";

const BpeTokenizer& gpt2() {
  static const BpeTokenizer t = BpeTokenizer::load(tokenizer_dir / "gpt2");
  return t;
}
const BpeTokenizer& roberta() {
  static const BpeTokenizer t = BpeTokenizer::load(tokenizer_dir / "roberta");
  return t;
}
const Json& reference() {
  static const Json j = read_json(tokenizer_dir / "reference.json");
  return j;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}
std::vector<std::int64_t> ids_of(const Json& j) { return j.get<std::vector<std::int64_t>>(); }

// A scratch folder under the build tree, emptied first.
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_tokenizer_tmp" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
void write_file(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("BpeTokenizer: GPT-2 and RoBERTa vocabularies load with their special tokens") {
  CHECK(gpt2().vocab_size() == 50257);
  CHECK(gpt2().template_kind() == Template::none);
  CHECK(gpt2().special_tokens().eos == 50256);
  CHECK(gpt2().special_tokens().bos == 50256);
  CHECK_FALSE(gpt2().special_tokens().pad.has_value());
  CHECK(gpt2().is_special(50256));

  // RoBERTa: 50,262 entries, ids up to 50264 (50261..50263 unused), so 50,265 embedding rows.
  CHECK(roberta().vocab_size() == 50265);
  CHECK(roberta().template_kind() == Template::roberta);
  const SpecialTokens& s = roberta().special_tokens();
  CHECK(s.bos == 0);
  CHECK(s.cls == 0);
  CHECK(s.pad == 1);
  CHECK(s.eos == 2);
  CHECK(s.sep == 2);
  CHECK(s.unk == 3);
  CHECK(s.mask == 50264);
  CHECK(roberta().token_id("<|endoftext|>") == 50260);
  CHECK_FALSE(roberta().is_special(50260));  // an ordinary entry for RoBERTa, as in HF
  CHECK(roberta().id_to_token(5) == "Ġthe");
  CHECK_THROWS_WITH_AS(roberta().decode(std::vector<std::int64_t>{50262}),
                       doctest::Contains("decode: id 50262 is not in the vocabulary (ids 0..50264"),
                       IndexError);
}

TEST_CASE("BpeTokenizer: ids equal the reference tokenizers on real sentences and hard cases") {
  const Json& cases = reference().at("single");
  REQUIRE(cases.size() > 300);
  for (const Json& c : cases) {
    const std::string text = from_hex(c.at("hex").get<std::string>());
    INFO("case: " << c.at("name").get<std::string>());
    const auto g = gpt2().encode(text), r = roberta().encode(text);
    CHECK(g == ids_of(c.at("gpt2")));
    CHECK(r == ids_of(c.at("roberta")));
    CHECK(gpt2().tokenize(text) == c.at("tokens").get<std::vector<std::string>>());
    CHECK(gpt2().decode(g) == text);  // exact bytes back, invalid UTF-8 included
    CHECK(roberta().decode(r) == text);
  }
}

TEST_CASE("BpeTokenizer: RoBERTa pair template <s> A </s></s> B </s> on RTE") {
  for (const Json& c : reference().at("pair")) {
    INFO("case: " << c.at("name").get<std::string>());
    CHECK(roberta().encode_for_model(c.at("a").get<std::string>(), c.at("b").get<std::string>()) ==
          ids_of(c.at("roberta")));
  }
  CHECK(roberta().encode_for_model("Hello world") == std::vector<std::int64_t>{0, 31414, 232, 2});
  CHECK(roberta().encode_for_model("Hello world", {.add_special_tokens = false}) ==
        std::vector<std::int64_t>{31414, 232});
  // GPT-2 adds nothing; a pair is A then B, as HF's GPT2Tokenizer.
  CHECK(gpt2().encode_for_model("Hello", " world") == std::vector<std::int64_t>{15496, 995});
}

TEST_CASE("BpeTokenizer: special-token strings are text unless parsed") {
  for (const Json& c : reference().at("special_roberta")) {
    const auto text = c.at("text").get<std::string>();
    INFO("text: " << text);
    CHECK(roberta().encode(text, SpecialText::parse) == ids_of(c.at("roberta")));
  }
  for (const Json& c : reference().at("special_gpt2")) {
    const auto text = c.at("text").get<std::string>();
    INFO("text: " << text);
    CHECK(gpt2().encode(text, SpecialText::parse) == ids_of(c.at("gpt2")));
  }
  const auto plain = gpt2().encode("a<|endoftext|>");
  CHECK(plain.size() > 2);
  CHECK(std::find(plain.begin(), plain.end(), 50256) == plain.end());
  const std::vector<std::int64_t> with_eos = {15496, 50256};
  CHECK(gpt2().decode(with_eos) == "Hello<|endoftext|>");
  CHECK(gpt2().decode(with_eos, /*skip_special=*/true) == "Hello");
}

TEST_CASE("truncated_lengths: HF tokenizers' longest_first table (limit 7)") {
  // Lengths 0, 2, 4, 8 paired every way; expected (n1, n2) from HF's truncation.rs unit test.
  const Index len[4] = {0, 2, 4, 8};
  // clang-format off
  const Index expect[4][4][2] = {{{0, 0}, {0, 2}, {0, 4}, {0, 7}},
                                 {{2, 0}, {2, 2}, {2, 4}, {2, 5}},
                                 {{4, 0}, {4, 2}, {3, 4}, {3, 4}},
                                 {{7, 0}, {5, 2}, {4, 3}, {3, 4}}};
  // clang-format on
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      INFO("n1 = " << len[i] << ", n2 = " << len[j]);
      const auto [a, b] = truncated_lengths(len[i], len[j], 7, Truncation::longest_first);
      CHECK(a == expect[i][j][0]);
      CHECK(b == expect[i][j][1]);
    }
  CHECK(truncated_lengths(10, -1, 7, Truncation::longest_first).first == 7);
  CHECK(truncated_lengths(10, 3, 7, Truncation::only_first) == std::pair<Index, Index>{4, 3});
  CHECK(truncated_lengths(3, 10, 7, Truncation::only_second) == std::pair<Index, Index>{3, 4});
  CHECK_THROWS_WITH_AS(truncated_lengths(2, 10, 7, Truncation::only_first),
                       "truncation only_first: the first sequence has 2 tokens but 5 must go",
                       ValueError);
}

TEST_CASE("BpeTokenizer: truncation keeps the head of each sequence and the template") {
  const std::string a = "one two three four five six seven eight nine ten";  // 10 tokens
  const std::string b = "alpha beta gamma";
  const auto ids_a = roberta().encode(a), ids_b = roberta().encode(b);
  REQUIRE(ids_a.size() == 10);
  const auto out = roberta().encode_for_model(a, b, {.max_length = 12});
  // 12 - 4 specials = 8 for text: b keeps its ids_b.size() tokens, a gets the rest.
  const std::size_t keep_a = 8 - ids_b.size();
  std::vector<std::int64_t> expected = {0};
  expected.insert(expected.end(), ids_a.begin(), ids_a.begin() + static_cast<long>(keep_a));
  expected.insert(expected.end(), {2, 2});
  expected.insert(expected.end(), ids_b.begin(), ids_b.end());
  expected.push_back(2);
  CHECK(out == expected);
  CHECK(roberta().encode_for_model(a, {.max_length = 5}) ==
        std::vector<std::int64_t>{0, ids_a[0], ids_a[1], ids_a[2], 2});
  CHECK_THROWS_WITH_AS(roberta().encode_for_model(a, b, {.max_length = 3}),
                       "encode: max_length 3 leaves no room for the 4 special tokens", ValueError);
}

TEST_CASE("BpeTokenizer: batches pad right or left with attention masks") {
  const std::vector<std::string> texts = {"Hello world", "a"};
  const TokenBatch right = roberta().encode_batch(texts);
  CHECK(right.input_ids.shape() == Shape{2, 4});
  CHECK(std::vector<std::int64_t>(right.input_ids.data().begin(), right.input_ids.data().end()) ==
        std::vector<std::int64_t>{0, 31414, 232, 2, 0, 102, 2, 1});
  CHECK(std::vector<std::int64_t>(right.attention_mask.data().begin(),
                                  right.attention_mask.data().end()) ==
        std::vector<std::int64_t>{1, 1, 1, 1, 1, 1, 1, 0});
  CHECK(right.lengths == std::vector<Index>{4, 3});

  const TokenBatch left = roberta().encode_batch(
      texts, {}, {.max_length = 6, .pad_to_max_length = true, .padding_side = Side::left});
  CHECK(left.input_ids.shape() == Shape{2, 6});
  CHECK(std::vector<std::int64_t>(left.input_ids.data().begin(), left.input_ids.data().end()) ==
        std::vector<std::int64_t>{1, 1, 0, 31414, 232, 2, 1, 1, 1, 0, 102, 2});
  CHECK(std::vector<std::int64_t>(left.attention_mask.data().begin(),
                                  left.attention_mask.data().end()) ==
        std::vector<std::int64_t>{0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1});

  const std::vector<std::string> second = {"x"};
  CHECK_THROWS_WITH_AS(roberta().encode_batch(texts, second),
                       "encode_batch: 2 first texts but 1 second texts", ValueError);
  CHECK_THROWS_WITH_AS(gpt2().encode_batch(texts),
                       "encode_batch: this tokenizer has no <pad> token (GPT-2); set "
                       "EncodeOptions::pad_id",
                       ValueError);
  const TokenBatch g = gpt2().encode_batch(texts, {}, {.pad_id = 50256});
  CHECK(g.input_ids.shape() == Shape{2, 2});
  CHECK(g.input_ids[3] == 50256);
  CHECK(g.attention_mask[3] == 0);
}

TEST_CASE("BpeTokenizer: encode_many (parallel for many rows) equals row-by-row encoding") {
  std::vector<std::string> texts, pairs;
  for (int rep = 0; rep < 3; ++rep)
    for (const Json& c : reference().at("single"))
      if (c.contains("text")) texts.push_back(c.at("text").get<std::string>());
  REQUIRE(texts.size() >= 1024);  // big enough for the OpenMP path
  for (std::size_t i = 0; i < texts.size(); ++i) pairs.push_back(texts[texts.size() - 1 - i]);
  const auto many = roberta().encode_many(texts, pairs, {.max_length = 64});
  REQUIRE(many.size() == texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    INFO("row " << i);
    CHECK(many[i] == roberta().encode_for_model(texts[i], pairs[i], {.max_length = 64}));
  }
}

TEST_CASE("BpeTokenizer: random bytes round-trip exactly; concurrent encoding agrees") {
  Rng rng(7);
  const std::vector<std::string> pieces = {
      "a",  "Z",    " ",        "  ",   "\n",   "\t",   "'s", "'ll",          "1",       "é",
      "中", "🤗", "\xF0\x9F", "\xFF", "\x80", "\xC3", ".",  "\xE2\x80\xA8", "\xC2\x85"};
  std::vector<std::string> texts;
  for (int n = 0; n < 300; ++n) {
    std::string s;
    const auto len = rng.below(40);
    for (std::uint64_t k = 0; k < len; ++k) {
      if (rng.bernoulli(0.2))
        s += static_cast<char>(rng.below(256));  // any byte at all
      else
        s += pieces[rng.below(pieces.size())];
    }
    texts.push_back(s);
  }
  std::vector<std::vector<std::int64_t>> serial;
  for (const std::string& s : texts) {
    serial.push_back(gpt2().encode(s));
    CHECK(gpt2().decode(serial.back()) == s);
  }
  // Two threads share one tokenizer (each with its own word cache): same ids as the serial pass.
  std::vector<std::vector<std::int64_t>> out[2];
  std::thread workers[2];
  for (int w = 0; w < 2; ++w)
    workers[w] = std::thread([&, w] {
      for (int rep = 0; rep < 5; ++rep)
        for (const std::string& s : texts) out[w].push_back(gpt2().encode(s));
    });
  for (auto& t : workers) t.join();
  for (int w = 0; w < 2; ++w)
    for (std::size_t i = 0; i < out[w].size(); ++i) CHECK(out[w][i] == serial[i % texts.size()]);
}

TEST_CASE("BpeTokenizer: very long words and whitespace runs encode and round-trip") {
  const std::string spaces(200000, ' ');
  const auto ids = gpt2().encode(spaces);
  CHECK(ids.size() == spaces.size());  // GPT-2 has no merge of two spaces
  CHECK(gpt2().decode(ids) == spaces);
  const std::string word(200000, 'a');
  const auto w = gpt2().encode(word);
  CHECK(w.size() <= word.size() / 4);
  CHECK(gpt2().decode(w) == word);
}

TEST_CASE("BpeTokenizer: tokenizer.json in HF's layout gives the same ids") {
  const fs::path dir = scratch("json");
  const Json vocab = read_json(tokenizer_dir / "roberta" / "vocab.json");
  Json merges = Json::array();
  {
    std::ifstream in(tokenizer_dir / "roberta" / "merges.txt");
    std::string line;
    std::getline(in, line);  // #version
    for (int n = 0; std::getline(in, line); ++n) {
      if (line.empty()) continue;
      // The first half as "a b", the second as ["a", "b"] (tokenizers >= 0.20 writes pairs).
      const bool as_pairs = n >= 25000;
      const auto sp = line.find(' ');
      if (as_pairs)
        merges.push_back(Json::array({line.substr(0, sp), line.substr(sp + 1)}));
      else
        merges.push_back(line);
    }
  }
  auto added = [](int id, const char* content, bool lstrip) {
    return Json{{"id", id},         {"content", content}, {"single_word", false},
                {"lstrip", lstrip}, {"rstrip", false},    {"normalized", !lstrip},
                {"special", true}};
  };
  Json root = {{"version", "1.0"},
               {"added_tokens", Json::array({added(0, "<s>", false), added(1, "<pad>", false),
                                             added(2, "</s>", false), added(3, "<unk>", false),
                                             added(50264, "<mask>", true),
                                             added(50265, "<extra>", false)})},
               {"normalizer", nullptr},
               {"pre_tokenizer",
                {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
               {"post_processor",
                {{"type", "RobertaProcessing"},
                 {"sep", Json::array({"</s>", 2})},
                 {"cls", Json::array({"<s>", 0})}}},
               {"decoder", {{"type", "ByteLevel"}}},
               {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  write_file(dir / "tokenizer.json", root.dump());
  const BpeTokenizer t = BpeTokenizer::load(dir);
  CHECK(t.special_tokens().mask == 50264);
  CHECK(t.special_tokens().pad == 1);
  for (const Json& c : reference().at("single")) {
    const std::string text = from_hex(c.at("hex").get<std::string>());
    INFO("case: " << c.at("name").get<std::string>());
    CHECK(t.encode(text) == ids_of(c.at("roberta")));
  }
  const Json& p = reference().at("pair")[0];
  CHECK(t.encode_for_model(p.at("a").get<std::string>(), p.at("b").get<std::string>()) ==
        ids_of(p.at("roberta")));
  CHECK(t.encode("two  <mask> <mask>x", SpecialText::parse) ==
        std::vector<std::int64_t>{7109, 50264, 50264, 1178});
  // An added token beyond model.vocab (as tokenizer.add_tokens writes them) gets its id.
  CHECK(t.vocab_size() == 50266);
  const auto extra = t.encode("a<extra>", SpecialText::parse);
  CHECK(extra == std::vector<std::int64_t>{102, 50265});
  CHECK(t.decode(extra) == "a<extra>");

  root["model"]["type"] = "WordPiece";
  write_file(dir / "tokenizer.json", root.dump());
  CHECK_THROWS_WITH_AS(BpeTokenizer::load(dir),
                       doctest::Contains("tokenizer.json: model.type is 'WordPiece' but only 'BPE' "
                                         "is supported"),
                       FormatError);
}

TEST_CASE("BpeTokenizer: bad files name the file, the line and what was expected") {
  const fs::path dir = scratch("errors");
  const fs::path vocab = dir / "vocab.json", merges = dir / "merges.txt";
  fs::copy_file(tokenizer_dir / "gpt2" / "vocab.json", vocab);

  const std::string missing = "cannot open '" + (dir / "missing.json").string() + "' for reading";
  CHECK_THROWS_WITH_AS(BpeTokenizer::from_files(dir / "missing.json", merges), missing.c_str(),
                       IoError);
  CHECK_THROWS_WITH_AS(BpeTokenizer::load(dir / "nowhere"),
                       doctest::Contains("no tokenizer.json, and no vocab.json + merges.txt"),
                       IoError);

  write_file(merges, "#version: 0.2\nĠ t\nĠt he\n");  // "Ġt he": "Ġthe" exists; "he" exists
  CHECK_NOTHROW(BpeTokenizer::from_files(vocab, merges));
  write_file(merges, "#version: 0.2\nĠ t\nĠthe\n");
  const std::string bad_line =
      merges.string() + ":3: expected two tokens separated by one space, got 'Ġthe'";
  CHECK_THROWS_WITH_AS(BpeTokenizer::from_files(vocab, merges), bad_line.c_str(), FormatError);
  write_file(merges, "#version: 0.2\nĠ t\nqqqqq t\n");
  const std::string unknown = merges.string() + ":3: 'qqqqq' is not in the vocabulary";
  CHECK_THROWS_WITH_AS(BpeTokenizer::from_files(vocab, merges), unknown.c_str(), FormatError);

  write_file(vocab, R"({"a": 0, "b": "1"})");
  const std::string bad_id =
      vocab.string() + ": token 'b' has id \"1\", expected a non-negative integer";
  CHECK_THROWS_WITH_AS(BpeTokenizer::from_files(vocab, merges), bad_id.c_str(), FormatError);
  write_file(vocab, R"({"a": 0, "b": 1})");
  const std::string no_bytes = vocab.string() +
                               ": the byte-level token 'Ā' for byte 0 is missing, so this is not "
                               "a byte-level vocabulary";
  CHECK_THROWS_WITH_AS(BpeTokenizer::from_files(vocab, merges), no_bytes.c_str(), FormatError);
  write_file(vocab, R"({"a": 0, "b": )");
  const std::string bad_json = vocab.string() + ": invalid JSON at byte";
  CHECK_THROWS_WITH_AS(BpeTokenizer::from_files(vocab, merges), doctest::Contains(bad_json.c_str()),
                       FormatError);
}

TEST_CASE("fourierft tokenize: ids per stdin line; --pair uses the RoBERTa template") {
  const std::string g_vocab = (tokenizer_dir / "gpt2/vocab.json").string();
  const std::string g_merges = (tokenizer_dir / "gpt2/merges.txt").string();
  const std::string r_vocab = (tokenizer_dir / "roberta/vocab.json").string();
  const std::string r_merges = (tokenizer_dir / "roberta/merges.txt").string();
  std::istringstream in("Hello world\r\n\n<|endoftext|> x\nlast line, no newline");
  std::ostringstream out;
  CHECK(cli::tokenize({"--vocab", g_vocab, "--merges", g_merges}, in, out) == 0);
  std::string expected;
  for (const char* line : {"Hello world", "", "<|endoftext|> x", "last line, no newline"}) {
    const auto ids = gpt2().encode(line);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) expected += ' ';
      expected += std::to_string(ids[i]);
    }
    expected += "\n";
  }
  CHECK(out.str() == expected);
  CHECK(out.str().starts_with("15496 995\n\n"));

  const Json& p = reference().at("pair")[0];
  std::istringstream pairs(p.at("a").get<std::string>() + "\t" + p.at("b").get<std::string>() +
                           "\n");
  std::ostringstream pair_out;
  CHECK(cli::tokenize({"--vocab", r_vocab, "--merges", r_merges, "--pair"}, pairs, pair_out) == 0);
  std::string pair_expected;
  for (std::int64_t id : ids_of(p.at("roberta"))) pair_expected += std::to_string(id) + " ";
  pair_expected.back() = '\n';
  CHECK(pair_out.str() == pair_expected);

  std::istringstream bad("one\ttwo\nno tab\n");
  std::ostringstream ignored;
  CHECK_THROWS_WITH_AS(
      cli::tokenize({"--vocab", r_vocab, "--merges", r_merges, "--pair"}, bad, ignored),
      "stdin:2: --pair expects two texts separated by one tab, found 1 fields", FormatError);
  std::istringstream none("a\tb\n");
  const std::string gpt2_pair =
      "tokenize: --pair needs a vocabulary with <s> and </s> (RoBERTa's); " + g_vocab + " has none";
  CHECK_THROWS_WITH_AS(
      cli::tokenize({"--vocab", g_vocab, "--merges", g_merges, "--pair"}, none, ignored),
      gpt2_pair.c_str(), ValueError);
  CHECK_THROWS_WITH_AS(cli::tokenize({"--merges", g_merges}, none, ignored),
                       "missing required option --vocab", ValueError);
  std::ostringstream help;
  CHECK(cli::tokenize({"--help"}, none, help) == 0);
  CHECK(help.str().find("no special tokens") != std::string::npos);
}

// ---- HfTokenizer (tokenizer.json) ---------------------------------------------------------------
namespace {

const Json& hf_reference() {
  static const Json j = read_json(tokenizer_dir / "hf_reference.json");
  return j;
}
// The committed Mistral file, or ../shared/data/tokenizers/<name>; nullopt (and a message) if absent.
std::optional<fs::path> hf_tokenizer_dir(const std::string& name) {
  const fs::path dir = name == "mistral" ? tokenizer_dir / "mistral"
                                         : fs::path(FOURIERFT_SHARED_DATA_DIR) / "tokenizers" / name;
  if (fs::exists(dir / "tokenizer.json")) return dir;
  MESSAGE("skipped: " << (dir / "tokenizer.json").string() << " is absent");
  return std::nullopt;
}
const HfTokenizer& mistral() {
  static const HfTokenizer t = HfTokenizer::load(tokenizer_dir / "mistral");
  return t;
}
// A copy of the Mistral tokenizer.json with `edit` applied, in a scratch folder (no config).
fs::path edited_mistral(const std::string& name, const std::function<void(Json&)>& edit) {
  const fs::path dir = scratch(name);
  Json root = read_json(tokenizer_dir / "mistral" / "tokenizer.json");
  edit(root);
  write_file(dir / "tokenizer.json", root.dump());
  return dir / "tokenizer.json";
}

}  // namespace

TEST_CASE("HfTokenizer: ids and decoded text equal tokenizers.js on Llama 2, Llama 3, Mistral, Qwen3") {
  for (const std::string name : {"llama2", "llama3", "mistral", "qwen3"}) {
    const auto dir = hf_tokenizer_dir(name);
    if (!dir) continue;
    const HfTokenizer t = HfTokenizer::load(*dir);
    const Json& cases = hf_reference().at("tokenizers").at(name).at("cases");
    REQUIRE(cases.size() >= 90);
    int round_trips = 0;
    for (const Json& c : cases) {
      const auto text = c.at("text").get<std::string>();
      INFO(name << " case: " << c.at("name").get<std::string>());
      const auto ids = t.encode(text);
      CHECK(ids == ids_of(c.at("ids")));
      CHECK(t.encode_for_model(text) == ids_of(c.at("ids_special")));
      CHECK(t.encode(text, SpecialText::plain) == ids_of(c.at("ids_split")));
      CHECK(t.decode(ids_of(c.at("ids"))) == c.at("decoded").get<std::string>());
      CHECK(t.decode(ids_of(c.at("ids_special")), /*skip_special=*/true) ==
            c.at("decoded_skip").get<std::string>());
      // Where HF's decode gives the text back, ours must too.
      if (c.at("decoded").get<std::string>() == text) {
        CHECK(t.decode(ids) == text);
        ++round_trips;
      }
    }
    CHECK(round_trips > 60);
  }
}

TEST_CASE("HfTokenizer: Mistral's special tokens, template and config") {
  const HfTokenizer& t = mistral();
  CHECK(t.vocab_size() == 32000);
  CHECK(t.special_tokens().bos == 1);
  CHECK(t.special_tokens().eos == 2);
  CHECK(t.special_tokens().unk == 0);
  CHECK_FALSE(t.special_tokens().pad.has_value());
  CHECK(t.template_prefix() == std::vector<std::int64_t>{1});
  CHECK(t.template_suffix().empty());
  CHECK(t.is_special(1));
  CHECK(t.token_id("<0x41>") == 68);  // byte-fallback tokens: <0x00> is id 3
  // Written special tokens are one id; SpecialText::plain (untrusted input) spells them out.
  const auto parsed = t.encode("a</s>"), plain = t.encode("a</s>", SpecialText::plain);
  CHECK(parsed.back() == 2);
  CHECK(std::find(plain.begin(), plain.end(), 2) == plain.end());
  CHECK(t.decode(plain) == "a</s>");
  // Byte fallback: a character outside the vocabulary is its UTF-8 bytes, and decodes back.
  const auto rare = t.encode("\xF0\x93\x80\x80");  // U+13000, an Egyptian hieroglyph
  CHECK(rare == std::vector<std::int64_t>{28705, 243, 150, 131, 131});  // ▁ <0xF0> <0x93> <0x80> <0x80>
  CHECK(t.decode(rare) == "\xF0\x93\x80\x80");
  CHECK(t.decode(std::vector<std::int64_t>{243}) == "\xEF\xBF\xBD");  // a lone <0xF0>: U+FFFD
  CHECK_THROWS_WITH_AS(t.encode("ab\xFF"), "encode: the text is not valid UTF-8 (byte 2)",
                       ValueError);
  CHECK_THROWS_WITH_AS(t.decode(std::vector<std::int64_t>{32000}),
                       doctest::Contains("decode: id 32000 is not in the vocabulary (ids 0..31999"),
                       IndexError);

  // add_eos_token and an {"content": ...} bos_token in tokenizer_config.json.
  const fs::path dir = scratch("hf_config");
  fs::copy_file(tokenizer_dir / "mistral" / "tokenizer.json", dir / "tokenizer.json");
  write_file(dir / "tokenizer_config.json",
             R"({"add_bos_token": true, "add_eos_token": true, "bos_token": {"content": "<s>"},
                 "eos_token": "</s>", "chat_template": "{{ bos_token }}"})");
  const HfTokenizer with_eos = HfTokenizer::load(dir);
  CHECK(with_eos.encode_for_model("Hello world") == std::vector<std::int64_t>{1, 22557, 1526, 2});
  std::vector<std::int64_t> pair = {1};  // <s> A </s> <s> B </s>
  for (const char* text : {"a", "b"}) {
    const auto ids = with_eos.encode(text);
    pair.insert(pair.end(), ids.begin(), ids.end());
    pair.insert(pair.end(), {2, 1});
  }
  pair.pop_back();
  CHECK(with_eos.encode_for_model("a", "b") == pair);
  CHECK(with_eos.chat_template() == "{{ bos_token }}");
  write_file(dir / "tokenizer_config.json", R"({"eos_token": "<nope>"})");
  CHECK_THROWS_WITH_AS(HfTokenizer::load(dir),
                       doctest::Contains("tokenizer_config.json: eos_token '<nope>' is not in"),
                       FormatError);
}

TEST_CASE("HfTokenizer: a byte-level file with a Split regex gives GPT-2's ids") {
  // GPT-2's vocabulary and merges in the Llama-3 layout: Split(GPT-2's regex, Isolated), then
  // ByteLevel without its own regex; the ids must equal the reference GPT-2 ids.
  const fs::path dir = scratch("hf_bytelevel");
  Json merges = Json::array();
  {
    std::ifstream in(tokenizer_dir / "gpt2" / "merges.txt");
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line))
      if (!line.empty()) merges.push_back(Json::array({line.substr(0, line.find(' ')),
                                                       line.substr(line.find(' ') + 1)}));
  }
  const Json root = {
      {"added_tokens", Json::array({{{"id", 50256}, {"content", "<|endoftext|>"},
                                     {"special", true}, {"normalized", false}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         Json::array({{{"type", "Split"},
                       {"pattern", {{"Regex", io::detail::gpt2_split_pattern}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"vocab", read_json(tokenizer_dir / "gpt2" / "vocab.json")},
        {"merges", merges}}}};
  write_file(dir / "tokenizer.json", root.dump());
  const HfTokenizer t = HfTokenizer::load(dir);
  int compared = 0;
  for (const Json& c : reference().at("single")) {
    if (!c.contains("text") || c.contains("python_whitespace")) continue;  // valid UTF-8 only
    const auto text = c.at("text").get<std::string>();
    INFO("case: " << c.at("name").get<std::string>());
    CHECK(t.encode(text, SpecialText::plain) == ids_of(c.at("gpt2")));
    CHECK(t.decode(ids_of(c.at("gpt2"))) == text);
    ++compared;
  }
  CHECK(compared > 300);
  CHECK(t.encode("a<|endoftext|>") == std::vector<std::int64_t>{64, 50256});
}

TEST_CASE("detail::nfc: the canonical examples of UAX #15") {
  using io::detail::nfc;
  CHECK(nfc("e\xCC\x81") == "\xC3\xA9");                   // e + U+0301 -> é
  CHECK(nfc("\xE2\x84\xAB") == "\xC3\x85");                // U+212B ANGSTROM SIGN -> U+00C5
  CHECK(nfc("\xE1\xB8\x8B\xCC\xA3") == "\xE1\xB8\x8D\xCC\x87");  // ḋ + dot below -> ḍ + dot above
  CHECK(nfc("q\xCC\x87\xCC\xA3") == "q\xCC\xA3\xCC\x87");  // reordered by combining class
  CHECK(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8") == "\xEA\xB0\x81");  // jamo -> 각 U+AC01
  CHECK(nfc("plain ASCII") == "plain ASCII");
}

TEST_CASE("HfTokenizer: unsupported or broken files name the file and the field") {
  const auto load_error = [](const fs::path& path) {
    try {
      HfTokenizer::load(path);
    } catch (const FormatError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const fs::path norm = edited_mistral("hf_err_norm", [](Json& j) {
    j["normalizer"]["normalizers"][1] = {{"type", "Lowercase"}};
  });
  CHECK(load_error(norm) == norm.string() +
                                ": normalizer.normalizers[1].type is 'Lowercase', which is not "
                                "supported (Sequence, Prepend, Replace, NFC)");
  const fs::path merge = edited_mistral("hf_err_merge", [](Json& j) {
    j["model"]["merges"][5] = "qqqqq t";
  });
  CHECK(load_error(merge) == merge.string() + ": model.merges[5]: 'qqqqq' is not in the vocabulary");
  const fs::path model = edited_mistral("hf_err_model", [](Json& j) { j["model"]["type"] = "Unigram"; });
  CHECK(load_error(model) ==
        model.string() + ": model.type is 'Unigram', which is not supported (BPE)");
  const fs::path pre = edited_mistral("hf_err_pre", [](Json& j) {
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
  });
  CHECK(load_error(pre) == pre.string() +
                               ": pre_tokenizer.type is 'Whitespace', which is not supported "
                               "(Sequence, Split, Metaspace, ByteLevel)");
  const fs::path dec = edited_mistral("hf_err_decoder", [](Json& j) {
    j["decoder"]["decoders"][2] = {{"type", "CTC"}};
  });
  CHECK(load_error(dec) == dec.string() +
                               ": decoder.decoders[2].type is 'CTC', which is not supported "
                               "(Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, "
                               "Metaspace)");
  const fs::path added = edited_mistral("hf_err_added", [](Json& j) {
    j["added_tokens"][1]["id"] = 7;
  });
  CHECK(load_error(added) ==
        added.string() + ": added_tokens[1] '<s>' has id 7 but model.vocab gives it 1");
  // Metaspace with prepend_scheme "first" and split, and its decoder, load (no Llama file uses it).
  const fs::path meta = edited_mistral("hf_metaspace", [](Json& j) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                          {"prepend_scheme", "first"}, {"split", true}};
    j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"},
                    {"prepend_scheme", "first"}, {"split", true}};
  });
  const HfTokenizer m = HfTokenizer::load(meta);
  // "Hello world" -> "▁Hello", "▁world": the same pieces as the Prepend + Replace normalizers.
  CHECK(m.encode("Hello world") == mistral().encode("Hello world"));
  CHECK(m.decode(m.encode("Hello world")) == "Hello world");
  // "first": a piece after a special token gets no ▁ ("<s>Hello" -> <s>, "Hello").
  CHECK(m.encode("<s>Hello") == std::vector<std::int64_t>{1, *mistral().token_id("Hello")});
}

TEST_CASE("HfTokenizer: added tokens honour single_word, lstrip and rstrip") {
  const fs::path path = edited_mistral("hf_added_flags", [](Json& j) {
    j["added_tokens"].push_back({{"id", 32000}, {"content", "xyz"}, {"single_word", true},
                                 {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                                 {"special", false}});
    j["added_tokens"].push_back({{"id", 32001}, {"content", "[M]"}, {"single_word", false},
                                 {"lstrip", true}, {"rstrip", true}, {"normalized", false},
                                 {"special", true}});
  });
  const HfTokenizer t = HfTokenizer::load(path);
  CHECK(t.vocab_size() == 32002);
  const auto has = [](const std::vector<std::int64_t>& ids, std::int64_t id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
  };
  CHECK(has(t.encode("a xyz b"), 32000));
  CHECK(has(t.encode("xyz"), 32000));
  CHECK_FALSE(has(t.encode("axyz b"), 32000));  // inside a word: not a single word
  CHECK_FALSE(has(t.encode("a xyzé"), 32000));  // é is a word character too
  // lstrip / rstrip: the spaces around [M] go with it, so the pieces are "a" and "b".
  std::vector<std::int64_t> expected = t.encode("a");
  expected.push_back(32001);
  for (std::int64_t id : t.encode("b")) expected.push_back(id);
  CHECK(t.encode("a  [M]  b") == expected);
  CHECK(t.decode(std::vector<std::int64_t>{32001}) == "[M]");
  // Special, so plain mode spells it out; "xyz" is not special and still matches.
  CHECK_FALSE(has(t.encode("a [M] xyz", SpecialText::plain), 32001));
  CHECK(has(t.encode("a [M] xyz", SpecialText::plain), 32000));
}

TEST_CASE("fourierft tokenize --tokenizer: ids per line, --add-special-tokens, --jsonl, --decode") {
  const std::string json = (tokenizer_dir / "mistral" / "tokenizer.json").string();
  const auto run = [&](std::vector<std::string> args, const std::string& input) {
    std::istringstream in(input);
    std::ostringstream out;
    CHECK(cli::tokenize(args, in, out) == 0);
    return out.str();
  };
  const auto line_of = [](const std::vector<std::int64_t>& ids) {
    std::string s;
    for (std::int64_t id : ids) {
      if (!s.empty()) s += ' ';
      s += std::to_string(id);
    }
    return s + "\n";
  };
  CHECK(run({"--tokenizer", json}, "Hello world\r\n\na</s>\n") ==
        "22557 1526\n\n" + line_of(mistral().encode("a</s>")));
  CHECK(run({"--tokenizer", json, "--add-special-tokens"}, "Hello world\n") == "1 22557 1526\n");
  CHECK(run({"--tokenizer", json, "--split-special-tokens"}, "a</s>\n") ==
        line_of(mistral().encode("a</s>", SpecialText::plain)));
  // --jsonl: a JSON string per line, so a text can hold a newline.
  CHECK(run({"--tokenizer", json, "--jsonl"}, "\"two\\nlines\"\n") ==
        line_of(mistral().encode("two\nlines")));
  CHECK(run({"--tokenizer", json, "--decode"}, "1 22557 1526\n") == "<s> Hello world\n");
  CHECK(run({"--tokenizer", json, "--decode", "--skip-special-tokens", "--jsonl"},
            "1 22557 13 1526\n") == "\"Hello\\n world\"\n");
  std::istringstream bad("\"ok\"\nnot json\n");
  std::ostringstream ignored;
  CHECK_THROWS_WITH_AS(cli::tokenize({"--tokenizer", json, "--jsonl"}, bad, ignored),
                       doctest::Contains("stdin:2: invalid JSON at byte"), FormatError);
  std::istringstream bad_ids("1 x2\n");
  CHECK_THROWS_WITH_AS(cli::tokenize({"--tokenizer", json, "--decode"}, bad_ids, ignored),
                       "stdin:1: 'x2' is not a token id", FormatError);
}
