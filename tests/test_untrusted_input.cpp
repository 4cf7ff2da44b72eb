// Tests of the limits every reader of untrusted files checks (docs/reliability.md): JSON nesting,
// safetensors sizes / duplicates / scale / non-finite values, user regexes, adapter and config
// validation, vocabulary ids, METEOR on long lines, server request bodies. Each case is a finding
// of issue 20's probe or of the fuzzers (tests/fuzz/), and fails on the code before its fix.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/image.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/limits.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/metrics/meteor.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/name_pattern.hpp"
#include "fourierft/serve/request.hpp"
#include "../examples/cli/cmd_inspect.hpp"

using namespace fourierft;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_untrusted_input" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}
// A safetensors file from a header string (padded to 8 bytes) and raw data bytes.
void write_safetensors(const fs::path& path, std::string header, const std::string& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::uint64_t n = header.size();
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &n, 8);
  write_text(path, bytes + header + data);
}
std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
// Restores the process-wide limits a test changes.
struct LimitsGuard {
  io::InputLimits saved = io::input_limits();
  ~LimitsGuard() { io::input_limits() = saved; }
};

// Two "query" / "value" layers, as PEFT's RoBERTa targets name them.
struct PairNet : nn::Module<float> {
  nn::Linear<float> query, value;
  explicit PairNet(Rng& rng) : query(6, 6, rng), value(6, 6, rng) {
    this->register_module("query", query);
    this->register_module("value", value);
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// JSON

TEST_CASE("JSON: nesting beyond the cap is a FormatError naming the source, before parsing") {
  CHECK_THROWS_WITH_AS(io::parse_json(nested(100000), "deep.json"),
                       doctest::Contains("deep.json: JSON nested deeper than 256 levels at byte 256"),
                       FormatError);
  CHECK(io::parse_json(nested(256), "ok.json").is_array());
  // Brackets inside strings (and escaped quotes) are not nesting.
  const std::string text = "{\"a\": \"" + std::string(5000, '[') + "\\\"" + "\"}";
  CHECK(io::parse_json(text, "strings.json").at("a").get<std::string>().size() == 5001);
  LimitsGuard guard;
  io::input_limits().json_max_depth = 3;
  CHECK(io::parse_json("[[[1]]]", "three.json").is_array());
  CHECK_THROWS_AS(io::parse_json("[[[[1]]]]", "four.json"), FormatError);
}

TEST_CASE("JSON: a number out of double's range is a FormatError naming the source") {
  // nlohmann reports it as out_of_range.406, not a parse_error: it used to escape as a non-fourierft
  // exception ("unexpected error: [json.exception.out_of_range.406] ...", no file).
  CHECK_THROWS_WITH_AS(io::parse_json(R"({"scaling": 1e400})", "adapter_config.json"),
                       doctest::Contains("adapter_config.json: invalid JSON: number overflow"),
                       FormatError);
  const fs::path dir = scratch("overflow_number");
  write_safetensors(dir / "n.safetensors",
                    R"({"w":{"dtype":"F32","shape":[1e400],"data_offsets":[0,4]}})",
                    std::string(4, '\0'));
  CHECK_THROWS_WITH_AS((void)io::SafetensorsFile(dir / "n.safetensors"),
                       doctest::Contains("n.safetensors: header is not valid JSON: number overflow"),
                       FormatError);
}

TEST_CASE("JSON: every file reader refuses a deeply nested document, naming the file") {
  const fs::path dir = scratch("deep");
  const std::string deep = "{\"model_type\": \"gpt2\", \"x\": " + nested(100000) + "}";
  write_text(dir / "config.json", deep);
  CHECK_THROWS_WITH_AS(io::read_gpt2_config(dir), doctest::Contains((dir / "config.json").string().c_str()),
                       FormatError);
  write_text(dir / "adapter_config.json", deep);
  CHECK_THROWS_WITH_AS(io::JsonObject::read(dir / "adapter_config.json"),
                       doctest::Contains("nested deeper"), FormatError);
  write_text(dir / "vocab.json", "{\"a\": " + nested(100000) + "}");
  write_text(dir / "merges.txt", "#version: 0.2\n");
  CHECK_THROWS_WITH_AS(io::BpeTokenizer::from_files(dir / "vocab.json", dir / "merges.txt"),
                       doctest::Contains("vocab.json: JSON nested deeper"), FormatError);
  write_text(dir / "tokenizer.json", "{\"model\": " + nested(100000) + "}");
  CHECK_THROWS_WITH_AS(io::HfTokenizer::from_file(dir / "tokenizer.json"),
                       doctest::Contains("tokenizer.json: JSON nested deeper"), FormatError);
  write_safetensors(dir / "deep.safetensors", "{\"__metadata__\": " + nested(100000) + "}", "");
  CHECK_THROWS_WITH_AS((void)io::SafetensorsFile(dir / "deep.safetensors"),
                       doctest::Contains("deep.safetensors (safetensors header): JSON nested deeper"),
                       FormatError);
}

TEST_CASE("JSON: a wrong-typed field quotes at most 40 characters of its value") {
  io::Json big = io::Json::object();
  for (int i = 0; i < 10000; ++i) big["key" + std::to_string(i)] = nested(50);
  io::Json doc = {{"n_embd", big}};
  const io::JsonObject j(doc, "config.json");
  try {
    (void)j.get<std::int64_t>("n_embd");
    FAIL("no error");
  } catch (const FormatError& e) {
    const std::string message = e.what();
    CHECK(message.starts_with("config.json: key 'n_embd' should be an integer but is an object ("));
    CHECK(message.size() < 120);
    CHECK(message.find("...)") != std::string::npos);
  }
  // Short values are quoted whole, exactly as nlohmann dumps them.
  CHECK(io::json_excerpt(io::Json::parse(R"({"a":[1,2.5,"x"],"b":null})")) ==
        io::Json::parse(R"({"a":[1,2.5,"x"],"b":null})").dump());
  CHECK(io::json_excerpt(io::Json(std::string(100, 'z'))).size() == 40);
}

// ---------------------------------------------------------------------------
// safetensors

TEST_CASE("safetensors: numel x dtype size cannot wrap; inspect never prints a negative total") {
  const fs::path dir = scratch("overflow");
  const fs::path path = dir / "wrap.safetensors";
  // [2^62] F32 is 2^64 bytes, which wraps to 0: two such tensors "fit" in an empty data section.
  write_safetensors(path,
                    R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]},)"
                    R"("b":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})",
                    "");
  CHECK_THROWS_WITH_AS((void)io::SafetensorsFile(path),
                       doctest::Contains("tensor 'a' (F32, shape (4611686018427387904)) needs more "
                                         "than 2^64 bytes"),
                       FormatError);
  std::ostringstream out;
  CHECK_THROWS_AS(cli::inspect({path.string()}, out), FormatError);
  CHECK(out.str().find("total parameters: -") == std::string::npos);
  CHECK(cli::detail::with_commas(std::numeric_limits<Index>::min()) ==
        "-9,223,372,036,854,775,808");
}

TEST_CASE("safetensors: a key given twice inside a tensor entry or __metadata__ is refused") {
  const fs::path dir = scratch("duplicates");
  write_safetensors(dir / "entry.safetensors",
                    R"({"w":{"dtype":"F32","shape":[1],"dtype":"F64","data_offsets":[0,4]}})",
                    std::string(4, '\0'));
  CHECK_THROWS_WITH_AS((void)io::SafetensorsFile(dir / "entry.safetensors"),
                       doctest::Contains("entry.safetensors: tensor 'w': key 'dtype' appears more "
                                         "than once"),
                       FormatError);
  write_safetensors(dir / "meta.safetensors",
                    R"({"__metadata__":{"format":"pt","format":"np"},)"
                    R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                    std::string(4, '\0'));
  CHECK_THROWS_WITH_AS((void)io::SafetensorsFile(dir / "meta.safetensors"),
                       doctest::Contains("meta.safetensors: __metadata__: key 'format' appears "
                                         "more than once"),
                       FormatError);
  write_safetensors(dir / "top.safetensors",
                    R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                    R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                    std::string(2, '\0'));
  CHECK_THROWS_WITH_AS((void)io::SafetensorsFile(dir / "top.safetensors"),
                       doctest::Contains("tensor 'w' appears more than once in the header"),
                       FormatError);
  // A metadata value of the wrong type is quoted briefly, not dumped.
  write_safetensors(dir / "meta_type.safetensors",
                    R"({"__metadata__":{"format":)" + nested(200) + "}}", "");
  try {
    io::SafetensorsFile file(dir / "meta_type.safetensors");
    FAIL("no error");
  } catch (const FormatError& e) {
    CHECK(std::string(e.what()).size() < 200);
  }
}

TEST_CASE("safetensors: a header of 200k tensors opens in linear time, in header order") {
  const fs::path dir = scratch("many");
  constexpr int count = 200000;
  std::string header = "{";
  for (int i = 0; i < count; ++i)
    header += "\"t" + std::to_string(count - i) + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" +
              std::to_string(i) + "," + std::to_string(i + 1) + "]},";
  header.back() = '}';
  write_safetensors(dir / "many.safetensors", header, std::string(count, 'x'));
  const auto start = std::chrono::steady_clock::now();
  const io::SafetensorsFile file(dir / "many.safetensors");
  const double elapsed = seconds_since(start);
  INFO("opened in " << elapsed << " s");
  CHECK(elapsed < 60.0);  // the quadratic header parse took > 60 s in Release (3 s now; ASan 19 s)
  REQUIRE(file.size() == count);
  CHECK(file.names().front() == "t200000");  // data order = header order here
  CHECK(file.names().back() == "t1");
  CHECK(file.num_elements() == count);
}

TEST_CASE("safetensors: NaN or infinity in a floating-point tensor is an error naming it") {
  const fs::path dir = scratch("nonfinite");
  Tensor<float> w({2, 3});
  for (Index i = 0; i < 6; ++i) w[i] = float(i);
  w[4] = std::numeric_limits<float>::quiet_NaN();
  Tensor<float> fine({3});
  fine.fill(1.5f);
  io::SafetensorsWriter writer;
  writer.add("bad.weight", w);
  writer.add("bad.bf16", w, io::Dtype::BF16);
  writer.add("fine", fine);
  writer.add("empty", Tensor<float>({0}));
  writer.save(dir / "model.safetensors");
  for (const io::ReadMode mode : {io::ReadMode::map, io::ReadMode::stream}) {
    const io::SafetensorsFile file(dir / "model.safetensors", mode);
    CHECK_THROWS_WITH_AS(file.load<float>("bad.weight"),
                         doctest::Contains("tensor 'bad.weight' (F32, shape (2, 3)) holds NaN or "
                                           "infinity at element 4"),
                         FormatError);
    CHECK_THROWS_WITH_AS(file.load_half("bad.bf16", io::Dtype::BF16),
                         doctest::Contains("tensor 'bad.bf16' (BF16, shape (2, 3)) holds NaN"),
                         FormatError);
    CHECK_THROWS_AS(file.load_half("bad.weight", io::Dtype::BF16), FormatError);
    CHECK(file.load<double>("fine")[2] == 1.5);
    CHECK(file.load<float>("empty").numel() == 0);  // no memcpy from or to a null buffer
  }
  LimitsGuard guard;
  io::input_limits().allow_nonfinite_weights = true;
  CHECK(std::isnan(io::SafetensorsFile(dir / "model.safetensors").load<float>("bad.weight")[4]));
  // Infinity in F16 (exponent all ones, mantissa 0) counts too.
  const std::uint16_t inf16 = 0x7C00;
  io::input_limits().allow_nonfinite_weights = false;
  write_safetensors(dir / "inf.safetensors",
                    R"({"h":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}})",
                    std::string(reinterpret_cast<const char*>(&inf16), 2));
  CHECK_THROWS_AS((void)io::SafetensorsFile(dir / "inf.safetensors").load<float>("h"), FormatError);
}

// ---------------------------------------------------------------------------
// User regexes

TEST_CASE("NamePattern: the same full-match answers as std::regex on module-name patterns") {
  const std::vector<std::string> patterns = {
      R"(.*\.(query|value))", "query", R"((.*\.)?(q_proj|v_proj))",
      R"(model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj)", R"([a-z_.0-9]+)", "[^.]+", "a{2,3}",
      "(ab|a)*b", "x?y+z*", R"(^.*value$)", R"((?:attn|mlp)\..*)",
      R"(roberta\.encoder\.layer\.(1[0-1]|[0-9])\.attention\.self\.(query|value))", R"(\w+\.\w+)",
      "a|", "()*a", R"([\d-]+)", R"(.*\.[qv])", "a{2,}", "a{0}b", R"(\S+\s?)", "a*?b+?"};
  const std::vector<std::string> names = {
      "roberta.encoder.layer.0.attention.self.query", "roberta.encoder.layer.11.attention.self.value",
      "roberta.encoder.layer.12.attention.self.value", "query", "value",
      "model.layers.3.self_attn.q_proj", "model.layers.3.mlp.up_proj", "aa", "aaa", "aaaa", "abab",
      "ababb", "yyz", "xy", "attn.c_proj", "mlp.x", "", "a", "b", "1-2-3", "lm_head", "h.0.q",
      "h.0.v.x", "aab", "x y"};
  for (const std::string& p : patterns) {
    const peft::NamePattern pattern(p, "test");
    const std::regex reference(p);
    for (const std::string& name : names) {
      INFO(p << " on " << name);
      CHECK(pattern.full_match(name) == std::regex_match(name, reference));
    }
  }
}

TEST_CASE("NamePattern: no backtracking blow-up, no recursion, errors name the key") {
  const std::string name(20000, 'a');
  const auto start = std::chrono::steady_clock::now();
  CHECK_FALSE(peft::NamePattern("(.*.*)*X", "test").full_match(name));
  CHECK_FALSE(peft::NamePattern("(a*)*(a*)*b", "test").full_match(name));
  CHECK(peft::NamePattern("(a|aa)*", "test").full_match(name));
  CHECK(seconds_since(start) < 30.0);  // std::regex: exponential (years); 6 ms in Release here; generous for loaded sanitizer runs
  // 20,000 nested groups crashed std::regex's recursive compiler.
  const std::string where = "adapter_config.json: key 'target_modules'";
  CHECK_THROWS_WITH_AS(peft::NamePattern(std::string(20000, '(') + std::string(20000, ')'), where),
                       doctest::Contains("adapter_config.json: key 'target_modules': regex "),
                       FormatError);
  CHECK_THROWS_WITH_AS(peft::NamePattern(std::string(100, '(') + std::string(100, ')'), where),
                       doctest::Contains("groups nested deeper than 64"), FormatError);
  for (const char* bad : {"a**", "(?=a)", "\\1", "[abc", "a{1001}", "(a", "a)", "*a", "a{3,2}"})
    CHECK_THROWS_AS(peft::NamePattern(bad, where), FormatError);
}

TEST_CASE("adapter_config.json: regexes, sizes and fused slices are checked with the file and key") {
  const fs::path dir = scratch("adapter_config");
  auto read = [&](const io::Json& j) {
    io::write_json(dir / "adapter_config.json", j);
    return peft::adapter_spec_from_json(io::JsonObject::read(dir / "adapter_config.json"));
  };
  const std::string file = (dir / "adapter_config.json").string();
  io::Json base = {{"peft_type", "FOURIERFT"}, {"target_modules", {"query", "value"}},
                   {"n_frequency", 4}};
  CHECK_NOTHROW(read(base));
  io::Json j = base;
  j.erase("target_modules");
  CHECK_THROWS_WITH_AS(read(j), (file + ": key 'target_modules' is missing").c_str(), FormatError);
  j = base;
  j["target_modules"] = std::string(20000, '(');
  CHECK_THROWS_WITH_AS(read(j), doctest::Contains((file + ": key 'target_modules': regex").c_str()),
                       FormatError);
  j = base;
  j["n_frequency_pattern"] = {{"(?<=x)q", 3}};
  CHECK_THROWS_WITH_AS(read(j), doctest::Contains((file + ": key 'n_frequency_pattern.(?<=x)q'").c_str()),
                       FormatError);
  j = base;
  j["n_frequency"] = 0;
  CHECK_THROWS_WITH_AS(read(j), (file + ": key 'n_frequency' should be >= 1 but is 0").c_str(),
                       FormatError);
  j = base;
  j["fourierft_fused_slices"] = {{{"module", "query"}, {"num_blocks", 0}, {"slices", {{"q", 0}}}}};
  CHECK_THROWS_WITH_AS(read(j),
                       (file + ": key 'fourierft_fused_slices[0].num_blocks' should be >= 1 but is 0")
                           .c_str(),
                       FormatError);
  j["fourierft_fused_slices"][0]["num_blocks"] = 2;
  j["fourierft_fused_slices"][0]["slices"]["q"] = 2;
  CHECK_THROWS_WITH_AS(read(j), doctest::Contains("key 'fourierft_fused_slices[0].slices.q' is block 2"),
                       FormatError);
  // A config built in code with num_blocks 0 divided by zero (SIGFPE).
  Rng rng(3);
  PairNet net(rng);
  peft::FourierFTConfig config;
  config.n_frequency = 4;
  config.target_modules = {{"query"}, ""};
  config.fused_slices = {{"query", 0, {{"q", 0}}}};
  CHECK_THROWS_AS(peft::apply_fourierft(net, config, rng), ValueError);
}

TEST_CASE("adapter files: entry tensors with overflowing or unmatched shapes name file and tensor") {
  const fs::path dir = scratch("entries");
  Rng rng(4);
  PairNet net(rng);
  peft::FourierFTConfig config;
  config.n_frequency = 4;
  config.target_modules = {{"query", "value"}, ""};
  config.frequency_bias = peft::FrequencyBias{1, 3};
  const peft::AdapterSpec spec{.config = config};
  peft::apply_adapter(net, spec, rng);
  peft::save_adapter(net, spec, dir);
  // The saved adapter loads back; then one extra entry tensor at a time.
  const fs::path model_file = dir / "adapter_model.safetensors";
  const io::SafetensorsFile saved(model_file);
  auto rewrite_with = [&](const std::string& extra_name, const Tensor<std::int64_t>& extra) {
    io::SafetensorsWriter w;
    std::vector<Tensor<float>> floats;
    std::vector<Tensor<std::int64_t>> ints;
    floats.reserve(saved.size());
    ints.reserve(saved.size());
    for (const std::string& name : saved.names()) {
      if (io::is_floating(saved.info(name).dtype)) {
        floats.push_back(saved.load<float>(name));
        w.add(name, floats.back());
      } else {
        ints.push_back(saved.load_int(name));
        w.add(name, ints.back());
      }
    }
    if (!extra_name.empty()) w.add(extra_name, extra);
    w.save(model_file);
  };
  {
    PairNet fresh(rng);
    CHECK_NOTHROW(peft::load_adapter(fresh, dir));
  }
  Tensor<std::int64_t> one({2, 1});
  rewrite_with("fourierft_entries.4294967296x4294967296.n1", one);
  {
    PairNet fresh(rng);
    CHECK_THROWS_WITH_AS(peft::load_adapter(fresh, dir),
                         doctest::Contains("tensor 'fourierft_entries.4294967296x4294967296.n1': "
                                           "explicit_entries: weight shape (4294967296, 4294967296) "
                                           "has more than 2^40 entries"),
                         FormatError);
  }
  rewrite_with("fourierft_entries.99999999999999999999x1.n1", one);
  {
    PairNet fresh(rng);
    CHECK_THROWS_WITH_AS(peft::load_adapter(fresh, dir),
                         doctest::Contains("cannot read the entry shape from tensor name"),
                         FormatError);
  }
  rewrite_with("fourierft_entries.5x6.n1", one);  // a valid shape no layer has
  {
    PairNet fresh(rng);
    CHECK_THROWS_WITH_AS(peft::load_adapter(fresh, dir),
                         doctest::Contains((model_file.string() +
                                            ": tensor 'fourierft_entries.5x6.n1' holds entries "
                                            "for a weight shape no adapted layer has")
                                               .c_str()),
                         FormatError);
  }
}

TEST_CASE("adapter folders: sizes that do not fit the model name adapter_config.json and the key") {
  // Before, these errors named only internal functions (uniform_entries, apply_fourierft,
  // modules_to_save) and no file.
  const fs::path dir = scratch("misfit");
  const std::string file = (dir / "adapter_config.json").string();
  Rng rng(5);
  PairNet net(rng);
  peft::FourierFTConfig config;
  config.n_frequency = 4;
  config.target_modules = {{"query", "value"}, ""};
  const peft::AdapterSpec spec{.config = config};
  peft::apply_adapter(net, spec, rng);
  peft::save_adapter(net, spec, dir);
  const io::Json saved = io::read_json(dir / "adapter_config.json");
  auto load_with = [&](const std::string& key, const io::Json& value) {
    io::Json j = saved;
    j[key] = value;
    io::write_json(dir / "adapter_config.json", j);
    PairNet fresh(rng);
    peft::load_adapter(fresh, dir);
  };
  // 37 coefficients cannot fit a 6 x 6 weight.
  CHECK_THROWS_WITH_AS(load_with("n_frequency", 37),
                       doctest::Contains((file + ": key 'n_frequency' does not fit layer 'query' of "
                                                 "the model: ").c_str()),
                       FormatError);
  CHECK_THROWS_WITH_AS(load_with("n_frequency_pattern", {{"value", 40}}),
                       doctest::Contains((file + ": key 'n_frequency_pattern' does not fit layer "
                                                 "'value'").c_str()),
                       FormatError);
  // 6 outputs do not split into 4 blocks.
  CHECK_THROWS_WITH_AS(
      load_with("fourierft_fused_slices", {{{"module", "query"}, {"num_blocks", 4}, {"slices", {{"q", 0}}}}}),
      doctest::Contains((file + ": key 'fourierft_fused_slices' does not fit layer 'query'").c_str()),
      FormatError);
  CHECK_THROWS_WITH_AS(load_with("modules_to_save", {"classifier"}),
                       (file + ": key 'modules_to_save' names 'classifier', which is no module of the "
                               "model").c_str(),
                       FormatError);
  // The same sizes in a config built in code keep the function's own error (no file to name).
  peft::FourierFTConfig too_many = config;
  too_many.n_frequency = 37;
  PairNet other(rng);
  CHECK_THROWS_AS(peft::apply_fourierft(other, too_many, rng), ValueError);
}

// ---------------------------------------------------------------------------
// Configs and vocabularies: limits before allocation

TEST_CASE("config.json: sizes describing a huge model are refused before allocation") {
  const fs::path dir = scratch("config");
  io::Json gpt2 = {{"model_type", "gpt2"}, {"vocab_size", 100}, {"n_embd", 8}, {"n_layer", 2},
                   {"n_head", 2},          {"n_positions", 16}};
  auto read = [&](const io::Json& j) {
    io::write_json(dir / "config.json", j);
    return io::read_gpt2_config(dir);
  };
  CHECK(read(gpt2).n_layer == 2);
  io::Json j = gpt2;
  j["n_layer"] = 1000000000;
  CHECK_THROWS_WITH_AS(read(j),
                       doctest::Contains((dir / "config.json").string().append(
                           ": the sizes (vocab_size 100, n_embd 8, n_layer 1000000000").c_str()),
                       FormatError);
  j = gpt2;
  j["n_embd"] = std::int64_t{1} << 62;
  j["n_head"] = 1;
  CHECK_THROWS_WITH_AS(read(j), doctest::Contains("FOURIERFT_MAX_PARAMETERS"), FormatError);
  io::Json llama = {{"model_type", "llama"},        {"vocab_size", 100},
                    {"hidden_size", 8},             {"intermediate_size", 16},
                    {"num_hidden_layers", 2},       {"num_attention_heads", 2},
                    {"max_position_embeddings", 32}};
  io::write_json(dir / "config.json", llama);
  CHECK(io::read_config<io::LlamaConfig>(dir).num_hidden_layers == 2);
  llama["intermediate_size"] = std::int64_t{1} << 40;
  io::write_json(dir / "config.json", llama);
  CHECK_THROWS_AS(io::read_config<io::LlamaConfig>(dir), FormatError);
  // The cap is adjustable: a tiny one refuses even the small model.
  LimitsGuard guard;
  io::input_limits().max_model_parameters = 100;
  CHECK_THROWS_AS(read(gpt2), FormatError);
}

TEST_CASE("vocab.json / tokenizer.json: an id far beyond the token count is refused") {
  const fs::path dir = scratch("vocab");
  write_text(dir / "vocab.json", R"({"a": 0, "b": 67108864})");
  write_text(dir / "merges.txt", "#version: 0.2\n");
  CHECK_THROWS_WITH_AS(io::BpeTokenizer::from_files(dir / "vocab.json", dir / "merges.txt"),
                       doctest::Contains("vocab.json: token 'b' has id 67108864, but the file lists "
                                         "only 2 tokens"),
                       FormatError);
  write_text(dir / "tokenizer.json",
             R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1073741000}, "merges": []}})");
  CHECK_THROWS_WITH_AS(io::HfTokenizer::from_file(dir / "tokenizer.json"),
                       doctest::Contains("has id 1073741000, but the file lists only 2 tokens"),
                       FormatError);
}

TEST_CASE("tokenizer.json: a missing or non-array list in a post-processor, normalizer or decoder names the field") {
  // Found by fuzz_hf_tokenizer: TemplateProcessing without "pair" threw json's out_of_range
  // (std::terminate in the harness, "unexpected error" naming no file in the CLI).
  const fs::path dir = scratch("tokenizer_lists");
  const io::Json base = io::read_json(fs::path(FOURIERFT_SOURCE_DIR) /
                                      "examples/checkpoints/llama-tiny-qnli-e2e/tokenizer.json");
  const std::string file = (dir / "tokenizer.json").string();
  auto load_with = [&](const std::string& key, const io::Json& value) {
    io::Json j = base;
    j[key] = value;
    io::write_json(dir / "tokenizer.json", j);
    (void)io::HfTokenizer::from_file(dir / "tokenizer.json");
  };
  const io::Json special = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
  const io::Json sequence = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  const io::Json specials = {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}};
  io::Json processor = {{"type", "TemplateProcessing"},
                        {"single", {special, sequence}},
                        {"pair", {special, sequence, special}},
                        {"special_tokens", specials}};
  CHECK_NOTHROW(load_with("post_processor", processor));
  processor.erase("pair");
  CHECK_THROWS_WITH_AS(load_with("post_processor", processor),
                       (file + ": post_processor.pair is missing").c_str(), FormatError);
  processor["pair"] = "A B";
  CHECK_THROWS_WITH_AS(load_with("post_processor", processor),
                       doctest::Contains((file + ": post_processor.pair should be an array").c_str()),
                       FormatError);
  CHECK_THROWS_WITH_AS(load_with("post_processor", {{"type", "Sequence"}}),
                       (file + ": post_processor.processors is missing").c_str(), FormatError);
  CHECK_THROWS_WITH_AS(load_with("post_processor", {{"type", "RobertaProcessing"}, {"sep", {"</s>", 2}}}),
                       (file + ": post_processor.cls is missing").c_str(), FormatError);
  CHECK_THROWS_WITH_AS(load_with("normalizer", {{"type", "Sequence"}, {"normalizers", {{"a", 1}}}}),
                       doctest::Contains((file + ": normalizer.normalizers should be an array").c_str()),
                       FormatError);
  CHECK_THROWS_WITH_AS(load_with("decoder", {{"type", "Sequence"}}),
                       (file + ": decoder.decoders is missing").c_str(), FormatError);
  // BpeTokenizer's own tokenizer.json reader had the same gap in RobertaProcessing.
  io::Json roberta = base;
  roberta["post_processor"] = {{"type", "RobertaProcessing"}, {"sep", {"</s>", 2}}};
  io::write_json(dir / "tokenizer.json", roberta);
  CHECK_THROWS_WITH_AS(io::BpeTokenizer::from_tokenizer_json(dir / "tokenizer.json"),
                       doctest::Contains("post_processor.cls is missing"), FormatError);
}

// ---------------------------------------------------------------------------
// METEOR on long lines

TEST_CASE("METEOR: 20k-word lines align in seconds; identical lines still score 1") {
  Rng rng(7);
  const char* words[] = {"the", "a", "cat", "cats", "running", "runs", "dog", "eat", "food",
                         "is",  "in", "near", "city", "centre", "family", "price", "range"};
  std::string h, r;
  for (int i = 0; i < 20000; ++i) {
    h += std::string(i ? " " : "") + words[rng.next_u64() % 17];
    r += std::string(i ? " " : "") + words[rng.next_u64() % 17];
  }
  auto start = std::chrono::steady_clock::now();
  const double score = metrics::meteor({h}, {{r}});
  CHECK(score > 0.0);
  CHECK(score < 1.0);
  CHECK(seconds_since(start) < 120.0);  // was > 300 s and 4 GB (generous: sanitizer builds)
  // Identical: every word matched in one chunk, fragmentation 0, so METEOR = Fmean = 1.
  start = std::chrono::steady_clock::now();
  CHECK(metrics::meteor({h}, {{h}}) == doctest::Approx(1.0).epsilon(1e-12));
  std::string same;  // one word repeated: every reference word has 5,000 candidates
  for (int i = 0; i < 5000; ++i) same += "the ";
  CHECK(metrics::meteor({same}, {{same}}) == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(seconds_since(start) < 120.0);
}

// ---------------------------------------------------------------------------
// Images (found by tests/fuzz/fuzz_image)

namespace {
std::vector<std::uint8_t> file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
}  // namespace

TEST_CASE("images: JPEGs stb_image 2.27 misread are refused by libjpeg, naming the file") {
  // A DHT table of 272 codes (16 counts of 17): stb_image 2.27 wrote past its 257-entry size list
  // (ASan / UBSan; found by fuzz_image three times: plain, after fill bytes before SOI, and with
  // the table cut off by the end of the data).
  std::vector<std::uint8_t> jpeg = {0xFF, 0xD8, 0xFF, 0xC4};
  const std::size_t length = 2 + 1 + 16 + 272;
  jpeg.push_back(static_cast<std::uint8_t>(length >> 8));
  jpeg.push_back(static_cast<std::uint8_t>(length & 0xFF));
  jpeg.push_back(0x00);  // class 0 (DC), table 0
  for (int k = 0; k < 16; ++k) jpeg.push_back(17);
  for (int k = 0; k < 272; ++k) jpeg.push_back(static_cast<std::uint8_t>(k));
  jpeg.insert(jpeg.end(), {0xFF, 0xD9});
  CHECK_THROWS_WITH_AS(io::decode_image(jpeg, "bad.jpg"),
                       "bad.jpg: corrupt JPEG (Bogus Huffman table definition)", FormatError);
  jpeg.insert(jpeg.begin(), 0xFF);  // fill bytes before SOI: not a JPEG (Pillow agrees)
  CHECK_THROWS_WITH_AS(io::decode_image(jpeg, "fill.jpg"),
                       "fill.jpg: not a PNG or JPEG image (it starts with bytes ff ff d8 ff)",
                       FormatError);
  const std::vector<std::uint8_t> cut = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x13, 0x00, 0xFF, 0xFF};
  CHECK_THROWS_WITH_AS(io::decode_image(cut, "cut.jpg"), doctest::Contains("cut.jpg: corrupt JPEG ("),
                       FormatError);
  // An 818-byte JPEG whose entropy-coded data drove stb_image 2.27's bit reader to a shift by 32
  // (UBSan, stbi__grow_buffer_unsafe; the finding that moved JPEG decoding to libjpeg-turbo).
  const fs::path corpus = fs::path(FOURIERFT_SOURCE_DIR) / "tests/fuzz/corpus/fuzz_image";
  CHECK_THROWS_WITH_AS(io::decode_image(file_bytes(corpus / "stb_jpeg_code_bits.jpg"), "bits.jpg"),
                       doctest::Contains("bits.jpg: corrupt JPEG ("), FormatError);
  // A real JPEG cut short: refused (libjpeg would fill the rest with grey; Pillow refuses too).
  const std::vector<std::uint8_t> good =
      file_bytes(fs::path(FOURIERFT_FIXTURES_DIR) / "data/cifar10-mini/test/airplane/0000.jpg");
  const io::Image image = io::decode_image(good, "0000.jpg");
  CHECK(image.height == 32);
  CHECK(image.width == 32);
  const std::vector<std::uint8_t> truncated(good.begin(), good.begin() + std::ptrdiff_t(good.size() / 2));
  CHECK_THROWS_WITH_AS(io::decode_image(truncated, "half.jpg"),
                       "half.jpg: corrupt JPEG (Premature end of JPEG file)", FormatError);
}

TEST_CASE("images: a progressive JPEG with more scans than the limit is refused") {
  // Each scan is a pass over the whole image: a few KB of scans could take minutes.
  const std::vector<std::uint8_t> progressive =
      file_bytes(fs::path(FOURIERFT_FIXTURES_DIR) / "data/pil-reference/made_progressive.jpg");
  int scans = 0;  // SOS markers (0xFF 0xDA; entropy-coded 0xFF bytes are followed by 0x00)
  for (std::size_t i = 0; i + 1 < progressive.size(); ++i)
    scans += progressive[i] == 0xFF && progressive[i + 1] == 0xDA;
  REQUIRE(scans == 10);
  LimitsGuard guard;
  io::input_limits().jpeg_max_scans = scans;
  const io::Image image = io::decode_image(progressive, "p.jpg");  // at the limit: decoded
  CHECK(image.width == 77);
  io::input_limits().jpeg_max_scans = scans - 1;
  CHECK_THROWS_WITH_AS(io::decode_image(progressive, "p.jpg"),
                       "p.jpg: more than 9 progressive scans, the limit (FOURIERFT_JPEG_MAX_SCANS)",
                       FormatError);
}

// ---------------------------------------------------------------------------
// Server request bodies (found by tests/fuzz/fuzz_serve_request)

TEST_CASE("server requests: nesting is bounded before the chat template; rejections are 400s naming the field") {
  const fs::path tiny_llama = fs::path(FOURIERFT_SOURCE_DIR) / "examples/checkpoints/llama-tiny-qnli-e2e";
  const io::HfTokenizer tokenizer = io::HfTokenizer::load(tiny_llama);
  const io::ChatTemplate chat_template = io::ChatTemplate::load(tiny_llama / "tokenizer_config.json");
  const serve::ServerOptions options;
  auto parse = [&](const std::string& body, bool chat, const io::ChatTemplate* with = nullptr) {
    return serve::parse_completion_request(body, chat, tokenizer, with, options);
  };
  auto rejection = [&](const std::string& body, bool chat, const io::ChatTemplate* with = nullptr) {
    try {
      (void)parse(body, chat, with);
    } catch (const serve::ApiError& e) {
      return e;
    }
    FAIL("accepted: ", body.substr(0, 80));
    return serve::ApiError(0, "", "", "", "");
  };
  // An extra field of a message nested 100k deep overflowed the stack of the template's
  // recursive conversion of the messages (ASan: stack-overflow in jinja::from_json).
  const std::string message = R"({"model": "base", "messages": [{"role": "user", "content": "hi", "x": )";
  const serve::ApiError deep = rejection(message + nested(100000) + "}]}", true, &chat_template);
  CHECK(deep.status == 400);
  CHECK(deep.code == "invalid_json");
  CHECK(std::string(deep.what()).find("the body: JSON nested deeper than 256 levels") != std::string::npos);
  const serve::CompletionRequest shallow = parse(message + nested(3) + "}]}", true, &chat_template);
  CHECK(shallow.chat);
  CHECK(!shallow.prompt.empty());
  CHECK(shallow.max_tokens == options.default_max_tokens);
  // Each malformed field is named.
  CHECK(rejection(R"({"model": "base", "prompt": [0, -1]})", false).param == "prompt");
  CHECK(rejection(R"({"model": "base", "prompt": "x", "top_p": 0})", false).param == "top_p");
  CHECK(rejection(R"({"model": "base", "prompt": "x", "max_tokens": 100000})", false).param == "max_tokens");
  CHECK(rejection(R"({"prompt": "x"})", false).param == "model");
  CHECK(rejection(R"({"model": "base", "messages": [{"role": "user", "content": "hi"}]})", true).code ==
        "no_chat_template");
  CHECK(rejection("[1, 2]", false).status == 400);
}

TEST_CASE("images: a zero-length IDAT before the image data decodes without undefined behaviour") {
  // stb_image copied it with memcpy(nullptr, p, 0) (UBSan: null pointer passed as argument 1;
  // found by tests/fuzz/fuzz_image). The chunk carries nothing, so the image is unchanged.
  std::ifstream in(fs::path(FOURIERFT_FIXTURES_DIR) / "data/pil-reference/mode_L.png", std::ios::binary);
  const std::vector<std::uint8_t> png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(png.size() > 33);
  // After the signature (8 bytes) and IHDR (4 + 4 + 13 + 4): length 0, "IDAT", a CRC.
  std::vector<std::uint8_t> with_empty(png.begin(), png.begin() + 33);
  const std::vector<std::uint8_t> empty_idat = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
  with_empty.insert(with_empty.end(), empty_idat.begin(), empty_idat.end());
  with_empty.insert(with_empty.end(), png.begin() + 33, png.end());
  const io::Image expected = io::decode_image(png, "mode_L.png");
  CHECK(io::decode_image(with_empty, "empty_idat.png") == expected);
  CHECK(io::detail::checked_png_chunks(with_empty, "x.png") == png);
  CHECK(io::detail::checked_png_chunks(png, "x.png").empty());  // nothing to drop: decoded as it is
}

TEST_CASE("images: a PNG chunk declaring more bytes than the file has is refused before stb_image") {
  // fuzz_image: a 122-byte PNG whose second IDAT declares 0x5778 0af1 bytes; stb_image 2.27 grew
  // its buffer to that before reading (malloc of 2 GB, libFuzzer's out-of-memory).
  const fs::path corpus = fs::path(FOURIERFT_SOURCE_DIR) / "tests/fuzz/corpus/fuzz_image";
  CHECK_THROWS_WITH_AS(io::decode_image(file_bytes(corpus / "png_idat_declares_2gb.png"), "big.png"),
                       doctest::Contains("big.png: corrupt PNG: chunk 'IDAT' at byte "), FormatError);
  // A real PNG cut inside a chunk: refused the same way, naming the chunk.
  const std::vector<std::uint8_t> png =
      file_bytes(fs::path(FOURIERFT_FIXTURES_DIR) / "data/pil-reference/mode_L.png");
  const std::vector<std::uint8_t> cut(png.begin(), png.begin() + 60);
  CHECK_THROWS_WITH_AS(io::decode_image(cut, "cut.png"),
                       doctest::Contains("cut.png: corrupt PNG: chunk '"), FormatError);
  CHECK(io::decode_image(png, "mode_L.png").width == 32);
}

TEST_CASE("images: pixels declared beyond the cap are refused before decoding") {
  // fuzz_image: a 973-byte JPEG declaring 1312 x 54560 pixels took 10 CPU seconds (ASan) and
  // 215 MB to decode. The same JPEG header on a fixture, with that size written into its SOF0.
  std::ifstream in(fs::path(FOURIERFT_FIXTURES_DIR) / "data/cifar10-mini/test/airplane/0000.jpg",
                   std::ios::binary);
  std::vector<std::uint8_t> jpeg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t sof = 2;
  while (sof + 9 < jpeg.size() && !(jpeg[sof] == 0xFF && (jpeg[sof + 1] == 0xC0 || jpeg[sof + 1] == 0xC2)))
    sof += 2 + (std::size_t(jpeg[sof + 2]) << 8 | jpeg[sof + 3]);
  REQUIRE(sof + 9 < jpeg.size());
  const io::Image original = io::decode_image(jpeg, "0000.jpg");
  LimitsGuard guard;
  io::input_limits().image_max_pixels = double(original.height * original.width);
  CHECK(io::decode_image(jpeg, "0000.jpg") == original);  // at the cap: decoded
  const std::uint16_t height = 54560, width = 1312;
  jpeg[sof + 5] = height >> 8, jpeg[sof + 6] = height & 0xFF;
  jpeg[sof + 7] = width >> 8, jpeg[sof + 8] = width & 0xFF;
  io::input_limits() = io::InputLimits{};
  CHECK_THROWS_WITH_AS(io::decode_image(jpeg, "bomb.jpg"),
                       "bomb.jpg: 1312 x 54560 pixels is over the limit of 67108864 "
                       "(FOURIERFT_IMAGE_MAX_PIXELS)",
                       FormatError);
}
