// Tests of include/fourierft/io/{safetensors,json}.hpp and util/atomic_file.hpp: byte-exact output
// against Hugging Face's own test vectors, round trips of every dtype, 16-bit float rounding against
// torch, every malformed-file error, JSON getters, and atomic writes.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/util/atomic_file.hpp"
#include "../examples/cli/cmd_inspect.hpp"

using namespace fourierft;
using namespace fourierft::io;
namespace fs = std::filesystem;

namespace {

// A fresh scratch directory under the build tree, removed at the start of each use.
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_safetensors" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes a hand-made file: 8-byte length (the header's, unless `length` overrides it), header, data.
fs::path write_raw(const fs::path& path, const std::string& header, const std::string& data,
                   std::int64_t length = -1) {
  std::ofstream out(path, std::ios::binary);
  const std::uint64_t n = length < 0 ? header.size() : static_cast<std::uint64_t>(length);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
  return path;
}

std::string bytes_of(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s.push_back(static_cast<char>(b));
  return s;
}

// The FormatError message a malformed file gives.
std::string error_of(const fs::path& path) {
  try {
    SafetensorsFile file(path);
  } catch (const FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ---------------------------------------------------------------------------
// Byte-exact output

TEST_CASE("safetensors: the writer reproduces Hugging Face's own test vectors byte for byte") {
  const fs::path dir = scratch("hf_vectors");
  // safetensors/src/tensor.rs, test_serialization_forced_alignement: "attn0", F32 [1, 1, 2, 3]
  // holding 0..5; a 65-byte header padded with 7 spaces to 72.
  SafetensorsWriter w;
  w.add("attn0", Tensor<float>::from_data({1, 1, 2, 3}, {0, 1, 2, 3, 4, 5}));
  w.save(dir / "attn0.safetensors");
  const std::string expected =
      bytes_of({72, 0, 0, 0, 0, 0, 0, 0}) +
      R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" + "       " +
      bytes_of(
          {0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64});
  CHECK(read_bytes(dir / "attn0.safetensors") == expected);

  // test_empty: no tensors, metadata {"framework": "pt"} -> a 35-byte header padded to 40.
  SafetensorsWriter empty;
  empty.set_metadata("framework", "pt");
  empty.save(dir / "empty.safetensors");
  CHECK(read_bytes(dir / "empty.safetensors") ==
        bytes_of({40, 0, 0, 0, 0, 0, 0, 0}) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
  CHECK(SafetensorsFile(dir / "empty.safetensors").size() == 0);
}

TEST_CASE("safetensors: tensors are ordered by dtype alignment, then by name, like HF's writer") {
  const fs::path dir = scratch("order");
  SafetensorsWriter w;
  w.add("b", Tensor<float>({2}));
  w.add("a", Tensor<float>({1}));
  w.add("emb", Tensor<float>({3}), Dtype::BF16);
  w.add("ids", Tensor<std::int64_t>({2}));
  w.add("z", Tensor<double>({1}), Dtype::F64);
  w.add("h", Tensor<float>({1}), Dtype::F16);
  w.save(dir / "order.safetensors");
  SafetensorsFile f(dir / "order.safetensors");
  CHECK(f.names() == std::vector<std::string>{"ids", "z", "a", "b", "emb", "h"});
  CHECK(f.sorted_names() == std::vector<std::string>{"a", "b", "emb", "h", "ids", "z"});
  CHECK(f.info("a").begin == 24);  // after I64 ids (16 bytes) and F64 z (8 bytes)
  // Header bytes are a multiple of 8, so the data starts aligned.
  CHECK(w.header().size() % 8 == 0);
}

// ---------------------------------------------------------------------------
// Round trips

TEST_CASE_TEMPLATE("safetensors: every dtype round-trips through a file, mapped or streamed", Real,
                   float, double) {
  const fs::path dir = scratch(std::is_same_v<Real, float> ? "roundtrip_f" : "roundtrip_d");
  Rng rng(5);
  const Tensor<Real> x = randn<Real>({3, 4, 5}, rng);
  const auto ids = Tensor<std::int64_t>::from_data({2, 3}, {0, -1, 50256, 1LL << 40, 7, -9});
  SafetensorsWriter w;
  w.add("f32", x);
  w.add("f64", x, Dtype::F64);
  w.add("f16", x, Dtype::F16);
  w.add("bf16", x, Dtype::BF16);
  w.add("ids", ids);
  w.add("ids32", Tensor<std::int64_t>::from_data({2}, {-5, 2147483647}), Dtype::I32);
  w.add("scalar", Tensor<Real>::scalar(Real(2.5)));
  w.add("empty", Tensor<Real>({0, 3}));
  w.set_metadata("format", "pt");
  w.set_metadata("note", "tab\there \"quoted\" ü");
  w.save(dir / "all.safetensors");

  for (ReadMode mode : {ReadMode::map, ReadMode::stream}) {
    SafetensorsFile f(dir / "all.safetensors", mode);
    CHECK(f.memory_mapped() == (mode == ReadMode::map));
    CHECK(f.size() == 8);
    CHECK(f.metadata().at("format") == "pt");
    CHECK(f.metadata().at("note") == "tab\there \"quoted\" ü");
    CHECK(f.info("f16").dtype == Dtype::F16);
    CHECK(f.info("f32").shape == Shape{3, 4, 5});
    const Tensor<Real> f32 = f.load<Real>("f32"), f64 = f.load<Real>("f64");
    const Tensor<Real> f16 = f.load<Real>("f16"), bf16 = f.load<Real>("bf16");
    for (Index i = 0; i < x.numel(); ++i) {
      CHECK(f32[i] == static_cast<Real>(static_cast<float>(x[i])));  // exact after one rounding
      CHECK(f64[i] == x[i]);
      // 11 and 8 significant bits: relative error at most 2^-11 and 2^-8.
      CHECK(std::abs(f16[i] - x[i]) <= std::abs(x[i]) * Real(0x1p-11) + Real(0x1p-24));
      CHECK(std::abs(bf16[i] - x[i]) <= std::abs(x[i]) * Real(0x1p-8));
    }
    const Tensor<std::int64_t> back = f.load_int("ids");
    CHECK(std::vector<std::int64_t>(back.data().begin(), back.data().end()) ==
          std::vector<std::int64_t>(ids.data().begin(), ids.data().end()));
    CHECK(f.load_int("ids32")[1] == 2147483647);
    CHECK(f.load<Real>("scalar").shape() == Shape{});
    CHECK(f.load<Real>("scalar").item() == Real(2.5));
    CHECK(f.load<Real>("empty").shape() == Shape{0, 3});
    CHECK(f.num_elements() == 4 * 60 + 6 + 2 + 1);
  }
}

TEST_CASE("safetensors: I16, I8, U8 and BOOL tensors load as int64") {
  const fs::path dir = scratch("small_ints");
  const std::string header = R"({"b":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]},)"
                             R"("i16":{"dtype":"I16","shape":[2],"data_offsets":[3,7]},)"
                             R"("i8":{"dtype":"I8","shape":[1],"data_offsets":[7,8]},)"
                             R"("u8":{"dtype":"U8","shape":[1],"data_offsets":[8,9]}})";
  const fs::path path = write_raw(dir / "ints.safetensors", header,
                                  bytes_of({1, 0, 2, 0xFE, 0xFF, 0x10, 0, 0x80, 200}));
  SafetensorsFile f(path);
  const Tensor<std::int64_t> b = f.load_int("b"), i16 = f.load_int("i16");
  CHECK(b[0] == 1);
  CHECK(b[1] == 0);
  CHECK(b[2] == 1);
  CHECK(i16[0] == -2);
  CHECK(i16[1] == 16);
  CHECK(f.load_int("i8")[0] == -128);
  CHECK(f.load_int("u8")[0] == 200);
  CHECK(f.names() == std::vector<std::string>{"b", "i16", "i8", "u8"});
}

// ---------------------------------------------------------------------------
// 16-bit floats, bit-exact against torch 1.13:
//   t = torch.tensor(vals, dtype=torch.float32); t.to(torch.float16).view(torch.int16)
//   (and .to(torch.bfloat16)), with vals given below as float32 bit patterns.

TEST_CASE("float -> F16 rounds to nearest even exactly as torch does") {
  const std::uint32_t in[] = {0x3f800000, 0xc0200000, 0x3dcccccd, 0x3eaaaaab, 0x477fe000,
                              0x477fef00, 0x477ff000, 0x47c35000, 0x33800000, 0x33000000,
                              0x33000001, 0x33c00000, 0x34200000, 0x38800000, 0x387fc000,
                              0x387fda40, 0x3f801000, 0x3f803000, 0x322bcc77, 0x7f800000,
                              0xff800000, 0x80000000, 0x40490fdb};
  const std::uint16_t out[] = {0x3c00, 0xc100, 0x2e66, 0x3555, 0x7bff, 0x7bff, 0x7c00, 0x7c00,
                               0x0001, 0x0000, 0x0001, 0x0002, 0x0002, 0x0400, 0x03ff, 0x03ff,
                               0x3c00, 0x3c02, 0x0000, 0x7c00, 0xfc00, 0x8000, 0x4248};
  for (std::size_t i = 0; i < std::size(in); ++i) {
    INFO("input bits 0x" << std::hex << in[i]);
    const std::uint16_t h = float_to_f16(std::bit_cast<float>(in[i]));
    CHECK(h == out[i]);
    // Back to float: exact for every representable half.
    CHECK(float_to_f16(f16_to_float(h)) == h);
  }
  CHECK(f16_to_float(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_float(0x7bff) == 65504.0f);
  CHECK(std::isnan(f16_to_float(float_to_f16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("float -> BF16 rounds to nearest even exactly as torch does") {
  const std::uint32_t in[] = {0x3f800000, 0x3f808000, 0x3f818000, 0x40490fdb, 0xbdcccccd,
                              0x7e967699, 0x7f7f6952, 0x7f7fc99e, 0x00000001, 0x7f7fffff,
                              0x7f800000, 0x80000000, 0x3a83126f};
  const std::uint16_t out[] = {0x3f80, 0x3f80, 0x3f82, 0x4049, 0xbdcd, 0x7e96, 0x7f7f,
                               0x7f80, 0x0000, 0x7f80, 0x7f80, 0x8000, 0x3a83};
  for (std::size_t i = 0; i < std::size(in); ++i) {
    INFO("input bits 0x" << std::hex << in[i]);
    CHECK(float_to_bf16(std::bit_cast<float>(in[i])) == out[i]);
  }
  CHECK(bf16_to_float(0x3f82) == 1.015625f);
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

// ---------------------------------------------------------------------------
// Malformed files: each is a FormatError naming the file and the tensor.

TEST_CASE("safetensors: every malformed file is a FormatError naming the file and the tensor") {
  const fs::path dir = scratch("malformed");
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string eight(8, '\0');
  auto path_of = [&](const char* name) { return (dir / name).string(); };

  SUBCASE("shorter than the length field") {
    std::ofstream(dir / "short.safetensors") << "abc";
    CHECK(error_of(dir / "short.safetensors") ==
          path_of("short.safetensors") +
              ": too short for a safetensors file (3 bytes; the header length alone takes 8)");
  }
  SUBCASE("header length past the end of the file") {
    write_raw(dir / "long.safetensors", "{}", "", 1000);
    CHECK(error_of(dir / "long.safetensors") ==
          path_of("long.safetensors") +
              ": header length 1000 runs past the end of the file (10 bytes, so at most 2)");
  }
  SUBCASE("invalid JSON") {
    write_raw(dir / "json.safetensors", R"({"w": {"dtype": "F32",,})", "");
    CHECK(error_of(dir / "json.safetensors")
              .starts_with(path_of("json.safetensors") +
                           ": header is not valid JSON (at header byte 23): "));
  }
  SUBCASE("header is not an object") {
    write_raw(dir / "array.safetensors", "[1, 2]", "");
    CHECK(error_of(dir / "array.safetensors") ==
          path_of("array.safetensors") + ": header is not a JSON object");
  }
  SUBCASE("unknown dtype") {
    write_raw(dir / "dtype.safetensors",
              R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab");
    CHECK(error_of(dir / "dtype.safetensors") ==
          path_of("dtype.safetensors") +
              ": tensor 'w' has unknown dtype 'F8_E4M3' (supported: "
              "F64, F32, BF16, F16, I64, I32, I16, I8, U8, BOOL)");
  }
  SUBCASE("missing or mistyped fields") {
    write_raw(dir / "shape.safetensors",
              R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]}})", eight);
    CHECK(error_of(dir / "shape.safetensors") ==
          path_of("shape.safetensors") +
              ": tensor 'w': shape [2,-1] should hold non-negative integers");
    write_raw(dir / "offsets.safetensors", R"({"w":{"dtype":"F32","shape":[2]}})", eight);
    CHECK(error_of(dir / "offsets.safetensors") ==
          path_of("offsets.safetensors") +
              ": tensor 'w': 'data_offsets' should be two non-negative integers [begin, end]");
    write_raw(dir / "entry.safetensors", R"({"w":[1,2]})", "");
    CHECK(error_of(dir / "entry.safetensors") ==
          path_of("entry.safetensors") + ": tensor 'w': header entry should be an object");
  }
  SUBCASE("offsets that do not match shape x dtype size") {
    write_raw(dir / "size.safetensors",
              R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
              std::string(20, '\0'));
    CHECK(error_of(dir / "size.safetensors") ==
          path_of("size.safetensors") +
              ": tensor 'w' (F32, shape (2, 3)) needs 24 bytes but data_offsets [0, 20] span 20");
  }
  SUBCASE("offsets past the end of the data") {
    write_raw(dir / "range.safetensors", "{" + ok_entry + "}", "1234");
    CHECK(error_of(dir / "range.safetensors") ==
          path_of("range.safetensors") +
              ": tensor 'w': data_offsets [0, 8] run past the end of the data section (4 bytes)");
  }
  SUBCASE("overlapping tensors") {
    write_raw(dir / "overlap.safetensors",
              "{" + ok_entry + R"(,"v":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight);
    CHECK(error_of(dir / "overlap.safetensors") ==
          path_of("overlap.safetensors") + ": tensors 'w' [0, 8) and 'v' [4, 8) overlap");
  }
  SUBCASE("a gap and trailing bytes, which Hugging Face's reader also rejects") {
    write_raw(dir / "gap.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
              eight);
    CHECK(error_of(dir / "gap.safetensors") ==
          path_of("gap.safetensors") + ": data bytes [0, 4) before tensor 'w' belong to no tensor");
    write_raw(dir / "tail.safetensors", "{" + ok_entry + "}", eight + "xy");
    CHECK(error_of(dir / "tail.safetensors") ==
          path_of("tail.safetensors") +
              ": the data section has 10 bytes but the tensors end at byte 8");
  }
  SUBCASE("a name given twice") {
    write_raw(dir / "dup.safetensors", "{" + ok_entry + "," + ok_entry + "}", eight);
    CHECK(error_of(dir / "dup.safetensors") ==
          path_of("dup.safetensors") + ": tensor 'w' appears more than once in the header");
  }
  SUBCASE("metadata that is not a string map") {
    write_raw(dir / "meta.safetensors", R"({"__metadata__":{"epoch":3}})", "");
    CHECK(error_of(dir / "meta.safetensors") ==
          path_of("meta.safetensors") +
              ": __metadata__ value of 'epoch' should be a string but is 3");
  }
  SUBCASE("the wrong kind of tensor for the request, or no such tensor") {
    SafetensorsWriter w;
    w.add("ids", Tensor<std::int64_t>({2}));
    w.add("w", Tensor<float>({2}));
    w.save(dir / "kinds.safetensors");
    SafetensorsFile f(dir / "kinds.safetensors");
    CHECK_THROWS_WITH_AS(
        f.load<float>("ids"),
        (path_of("kinds.safetensors") +
         ": tensor 'ids' has dtype I64 but a floating-point tensor (F16, BF16, F32, "
         "F64) was requested; use load_int for integer tensors")
            .c_str(),
        FormatError);
    CHECK_THROWS_WITH_AS(
        f.load_int("w"),
        (path_of("kinds.safetensors") +
         ": tensor 'w' has dtype F32 but an integer tensor (I64, I32, I16, I8, U8, "
         "BOOL) was requested")
            .c_str(),
        FormatError);
    CHECK_THROWS_WITH_AS(
        f.load<double>("nope"),
        (path_of("kinds.safetensors") + ": no tensor named 'nope' (the file holds 2 tensors)")
            .c_str(),
        FormatError);
  }
  SUBCASE("a missing file is an IoError") {
    CHECK_THROWS_AS(SafetensorsFile(dir / "absent.safetensors"), IoError);
  }
}

TEST_CASE("safetensors: the writer rejects duplicate names and impossible dtypes") {
  SafetensorsWriter w;
  w.add("a", Tensor<float>({1}));
  CHECK_THROWS_WITH_AS(w.add("a", Tensor<float>({1})),
                       "SafetensorsWriter::add: tensor 'a' was already added", ValueError);
  CHECK_THROWS_WITH_AS(w.add("b", Tensor<float>({1}), Dtype::I64),
                       "SafetensorsWriter::add: tensor 'b' holds floating-point values; it can be "
                       "written as F32, F64, F16 or BF16, not I64",
                       ValueError);
  CHECK_THROWS_WITH_AS(
      w.add("c", Tensor<std::int64_t>::from_data({1}, {1LL << 40}), Dtype::I32),
      "SafetensorsWriter::add: tensor 'c' holds 1099511627776, which does not fit I32", ValueError);
  CHECK_THROWS_AS(w.add("__metadata__", Tensor<float>({1})), ValueError);
}

// ---------------------------------------------------------------------------
// Atomic writes

TEST_CASE("write_file_atomically: replaces the file whole, or leaves it untouched") {
  const fs::path dir = scratch("atomic");
  const fs::path path = dir / "out.txt";
  util::write_file_atomically(path, std::string_view("first"));
  CHECK(read_bytes(path) == "first");
  // A callback that fails half way: the old content stays, no temporary file is left behind.
  CHECK_THROWS_WITH_AS(util::write_file_atomically(path,
                                                   [](std::ostream& out) {
                                                     out << "half";
                                                     throw ValueError("stop");
                                                   }),
                       "stop", ValueError);
  CHECK(read_bytes(path) == "first");
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  util::write_file_atomically(path, [](std::ostream& out) { out << "second"; });
  CHECK(read_bytes(path) == "second");
  // A directory that does not exist: IoError naming the path.
  const fs::path bad = dir / "missing" / "x.bin";
  CHECK_THROWS_WITH_AS(
      util::write_file_atomically(bad, std::string_view("x")),
      doctest::Contains(("cannot write '" + bad.string() + "': cannot create '").c_str()), IoError);
}

// ---------------------------------------------------------------------------
// JSON

TEST_CASE("json: read errors name the file and the byte; getters name the file and the key") {
  const fs::path dir = scratch("json");
  std::ofstream(dir / "bad.json") << R"({"a": 1,
  "b": ])";
  CHECK_THROWS_WITH_AS(
      read_json(dir / "bad.json"),
      doctest::Contains(((dir / "bad.json").string() + ": invalid JSON at byte 17: ").c_str()),
      FormatError);
  CHECK_THROWS_WITH_AS(read_json(dir / "absent.json"),
                       ("cannot open '" + (dir / "absent.json").string() + "' for reading").c_str(),
                       IoError);

  std::ofstream(dir / "config.json") << R"({"n_embd": "768", "n_layer": 12, "eps": 1e-5,
    "name": "gpt2", "labels": {"0": "neg", "1": "pos"}, "targets": ["query", "value"],
    "n_inner": null, "flag": true, "big": 5000000000, "nested": {"dim": 3, "bad": [1, "x"]}})";
  const auto cfg = JsonObject::read(dir / "config.json");
  const std::string file = (dir / "config.json").string();
  CHECK(cfg.get<int>("n_layer") == 12);
  CHECK(cfg.get<double>("eps") == doctest::Approx(1e-5).epsilon(1e-12));
  CHECK(cfg.get<double>("n_layer") == 12.0);  // integers are numbers too
  CHECK(cfg.get<std::string>("name") == "gpt2");
  CHECK(cfg.get<bool>("flag"));
  CHECK(cfg.get<std::int64_t>("big") == 5000000000LL);
  CHECK(cfg.get<std::vector<std::string>>("targets") == std::vector<std::string>{"query", "value"});
  CHECK(cfg.get<std::map<std::string, std::string>>("labels").at("1") == "pos");
  CHECK(cfg.get_or<int>("n_inner", 3072) == 3072);  // null: the fallback
  CHECK(cfg.get_or<int>("absent", 7) == 7);
  CHECK(!cfg.has("n_inner"));
  CHECK(!cfg.get_optional<int>("absent").has_value());
  CHECK(cfg.get<JsonObject>("nested").get<int>("dim") == 3);
  CHECK_THROWS_WITH_AS(
      cfg.get<int>("n_embd"),
      (file + ": key 'n_embd' should be an integer but is a string (\"768\")").c_str(),
      FormatError);
  CHECK_THROWS_WITH_AS(cfg.get<int>("n_head"), (file + ": key 'n_head' is missing").c_str(),
                       FormatError);
  CHECK_THROWS_WITH_AS(cfg.get<int>("big"),
                       (file + ": key 'big' should be an integer in range but is a number "
                               "(5000000000)")
                           .c_str(),
                       FormatError);
  CHECK_THROWS_WITH_AS(cfg.get<int>("n_inner"),
                       (file + ": key 'n_inner' should be an integer but is null").c_str(),
                       FormatError);
  CHECK_THROWS_WITH_AS(
      cfg.get<JsonObject>("nested").get<std::vector<int>>("bad"),
      (file + ": key 'nested.bad[1]' should be an integer but is a string (\"x\")").c_str(),
      FormatError);
}

TEST_CASE("json: write_json is atomic, sorted, 2-space indented like save_pretrained") {
  const fs::path dir = scratch("json_write");
  Json j;
  j["scaling"] = 150.0;
  j["peft_type"] = "FOURIERFT";
  j["target_modules"] = {"query", "value"};
  j["n_frequency"] = 1000;
  write_json(dir / "adapter_config.json", j);
  CHECK(read_bytes(dir / "adapter_config.json") ==
        "{\n  \"n_frequency\": 1000,\n  \"peft_type\": \"FOURIERFT\",\n  \"scaling\": 150.0,\n"
        "  \"target_modules\": [\n    \"query\",\n    \"value\"\n  ]\n}\n");
  CHECK(read_json(dir / "adapter_config.json") == j);
}

// ---------------------------------------------------------------------------
// `fourierft inspect`

TEST_CASE("fourierft inspect: names, dtypes, shapes, metadata and the parameter count") {
  const fs::path dir = scratch("inspect");
  SafetensorsWriter w;
  w.add("base_model.model.roberta.encoder.layer.0.attention.self.query.fourierft_spectrum",
        Tensor<float>({1000}));
  w.add("base_model.model.classifier.dense.weight", Tensor<float>({768, 768}), Dtype::BF16);
  w.add("ids", Tensor<std::int64_t>({2, 3}));
  w.set_metadata("format", "pt");
  const fs::path path = dir / "adapter_model.safetensors";
  w.save(path);
  std::ostringstream out;
  CHECK(cli::inspect({path.string()}, out) == 0);
  // clang-format off
  CHECK(out.str() ==
        path.string() + ": 3 tensors\n"
        "  name                                                                              dtype  shape       elements\n"
        "  ids                                                                               I64    (2, 3)      6\n"
        "  base_model.model.roberta.encoder.layer.0.attention.self.query.fourierft_spectrum  F32    (1000)      1,000\n"
        "  base_model.model.classifier.dense.weight                                          BF16   (768, 768)  589,824\n"
        "metadata:\n"
        "  format: pt\n"
        "total parameters: 590,830\n");
  // clang-format on
  std::ostringstream sorted;
  cli::inspect({path.string(), "--sorted"}, sorted);
  CHECK(sorted.str().find("  base_model.model.classifier.dense.weight ") <
        sorted.str().find("  base_model.model.roberta."));
  CHECK_THROWS_WITH_AS(cli::inspect({}, out),
                       "inspect: expected one FILE.safetensors, got 0 arguments (see --help)",
                       ValueError);
  CHECK_THROWS_WITH_AS(cli::inspect({path.string(), "--bogus=1"}, out), "unknown option --bogus",
                       ValueError);
}

// ---------------------------------------------------------------------------
// core/half.hpp: 16-bit conversions in bulk and HalfMatrix (frozen BF16 / F16 weights).

TEST_CASE("half_to_real: every BF16 and F16 bit pattern, run-time-dispatched and plain, exact") {
  std::vector<std::uint16_t> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
  for (const Dtype dtype : {Dtype::BF16, Dtype::F16}) {
    INFO(dtype_name(dtype));
    std::vector<float> fast(all.size());
    std::vector<double> wide(all.size());
    half_to_real(dtype, all.data(), fast.data(), all.size());  // the CPU's best kernel
    half_to_real(dtype, all.data(), wide.data(), all.size());  // the plain loop, in double
    Index mismatches = 0;
    for (std::size_t i = 0; i < all.size(); ++i) {
      const float scalar = dtype == Dtype::BF16 ? bf16_to_float(all[i]) : f16_to_float(all[i]);
      const float generic = dtype == Dtype::BF16 ? std::bit_cast<float>(std::uint32_t(all[i]) << 16)
                                                 : fourierft::detail::f16_to_float_branchless(all[i]);
      // Bit for bit, except that F16C quiets a signalling NaN (still a NaN of the same sign).
      auto same_bits = [&](float v) {
        return std::isnan(scalar) ? std::isnan(v) && std::signbit(v) == std::signbit(scalar)
                                  : std::bit_cast<std::uint32_t>(v) == std::bit_cast<std::uint32_t>(scalar);
      };
      const bool same = same_bits(fast[i]) &&
                        std::bit_cast<std::uint32_t>(generic) == std::bit_cast<std::uint32_t>(scalar) &&
                        (std::isnan(scalar) ? std::isnan(wide[i]) : wide[i] == double(scalar));
      // Round trip: every non-NaN pattern comes back; NaN stays NaN.
      const std::uint16_t back = dtype == Dtype::BF16 ? float_to_bf16(scalar) : float_to_f16(scalar);
      const bool round_trip = std::isnan(scalar) ? (back & 0x7FFF) > (dtype == Dtype::BF16 ? 0x7F80 : 0x7C00)
                                                 : back == all[i];
      if (!same || !round_trip) ++mismatches;
    }
    CHECK(mismatches == 0);
  }
  // Bulk rounding equals the scalar rounding, double rounded through float.
  const std::vector<double> values = {1.0 + 0x1p-8, 1.0 + 3 * 0x1p-8, 65519.0, 65520.0, 0x1p-25,
                                      3 * 0x1p-25, -0x1p-24, 1e-30, -2.5};
  std::vector<std::uint16_t> bf(values.size()), hf(values.size());
  real_to_half(Dtype::BF16, values.data(), bf.data(), values.size());
  real_to_half(Dtype::F16, values.data(), hf.data(), values.size());
  CHECK(bf[0] == 0x3F80);  // tie 1 + 2^-8 -> even (1.0)
  CHECK(bf[1] == 0x3F82);  // tie 1 + 3·2^-8 -> even (1 + 2^-6)
  CHECK(hf[2] == 0x7BFF);  // 65519 -> half's largest, 65504
  CHECK(hf[3] == 0x7C00);  // 65520 -> infinity
  CHECK(hf[4] == 0x0000);  // 2^-25: tie between 0 and the smallest subnormal -> 0 (even)
  CHECK(hf[5] == 0x0002);  // 3·2^-25 = 1.5 subnormal steps (2^-24) -> 2 (even)
  CHECK(hf[6] == 0x8001);  // -2^-24: the smallest subnormal, negative
  CHECK(hf[7] == 0x0000);  // underflow to zero
  CHECK(f16_to_float(hf[8]) == -2.5f);
}

TEST_CASE("HalfMatrix: rounding, tiles, views of a mapped file, copy on write, saving") {
  Rng rng(7);
  const Tensor<float> w = randn<float>({5, 7}, rng);
  const HalfMatrix m = HalfMatrix::from_values<float>(w.data(), 5, 7, Dtype::BF16);
  CHECK(m.shape() == Shape{5, 7});
  CHECK(m.bytes() == 70);
  const Tensor<float> back = m.to_tensor<float>();
  for (Index i = 0; i < 35; ++i) CHECK(back[i] == bf16_to_float(float_to_bf16(w[i])));
  std::vector<double> tile(2 * 3);
  m.tile_to<double>(1, 2, 4, 3, tile.data(), 3);  // rows 1..2, cols 4..6
  for (Index r = 0; r < 2; ++r)
    for (Index c = 0; c < 3; ++c) CHECK(tile[r * 3 + c] == double(back[(1 + r) * 7 + 4 + c]));
  CHECK_FALSE(HalfMatrix::placeholder(2, 2, Dtype::F16).has_data());
  CHECK_THROWS_AS(HalfMatrix(2, 2, Dtype::F32), Error);

  const fs::path dir = scratch("half");
  SafetensorsWriter writer;
  writer.add("w_bf16", m, Dtype::BF16);   // its bits as they are
  writer.add("w_f32", m, Dtype::F32);     // upcast
  writer.add("w_src", w);                 // F32, rounded by load_half
  writer.add("ids", Tensor<std::int64_t>({2, 2}));
  writer.save(dir / "m.safetensors");
  const SafetensorsFile file(dir / "m.safetensors");
  CHECK(file.info("w_bf16").dtype == Dtype::BF16);
  CHECK(file.load<float>("w_f32").data()[3] == back[3]);

  HalfMatrix viewed = file.load_half("w_bf16", Dtype::BF16);
  CHECK(viewed.memory_mapped());
  const HalfMatrix copied = file.load_half("w_bf16", Dtype::BF16, /*allow_view=*/false);
  CHECK_FALSE(copied.memory_mapped());
  const HalfMatrix rounded = file.load_half("w_src", Dtype::BF16);  // F32 file -> rounded
  const HalfMatrix streamed =
      SafetensorsFile(dir / "m.safetensors", ReadMode::stream).load_half("w_src", Dtype::BF16);
  for (Index i = 0; i < 35; ++i) {
    CHECK(viewed.data()[i] == m.data()[i]);
    CHECK(copied.data()[i] == m.data()[i]);
    CHECK(rounded.data()[i] == m.data()[i]);
    CHECK(streamed.data()[i] == m.data()[i]);
  }
  const HalfMatrix as_f16 = file.load_half("w_f32", Dtype::F16);
  CHECK(as_f16.data()[0] == float_to_f16(back[0]));
  // Writing to a view copies it first (every handle sees the copy); the file is untouched.
  const HalfMatrix alias = viewed;
  viewed.mutable_data()[0] = 0;
  CHECK_FALSE(viewed.memory_mapped());
  CHECK(alias.data()[0] == 0);
  CHECK(file.load_half("w_bf16", Dtype::BF16).data()[0] == m.data()[0]);
  CHECK_THROWS_WITH_AS(file.load_half("ids", Dtype::BF16),
                       ((dir / "m.safetensors").string() +
                        ": tensor 'ids' (I64, shape (2, 2)) cannot be held as a BF16 matrix: a "
                        "2-D floating-point tensor is needed").c_str(),
                       FormatError);
}
