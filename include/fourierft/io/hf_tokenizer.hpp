// fourierft/io/hf_tokenizer.hpp — HfTokenizer: Hugging Face tokenizer.json (+ tokenizer_config.json)
// for the LLaMA family: SentencePiece-style BPE with byte fallback (Llama 2, Mistral), byte-level BPE
// with a split regex (Llama 3, Qwen), added / special tokens, BOS/EOS templates, decoding.
#pragma once

// The pipeline, as HF's `tokenizers` library runs it (tokenizer/added_vocabulary.rs, models/bpe):
//  1. Added tokens with normalized = false are cut out of the raw text (leftmost-longest match;
//     lstrip / rstrip take the whitespace beside them, single_word needs non-word characters
//     around). Each becomes its id. With SpecialText::plain (HF's split_special_tokens) those
//     marked special are left as text; non-special added tokens (Qwen's <think>) still match.
//  2. Each remaining piece is normalized (Sequence, Prepend, Replace, NFC), then added tokens with
//     normalized = true are cut out of it the same way.
//  3. Pre-tokenizers split each piece into words (Sequence, Split with a regex or string, Metaspace,
//     ByteLevel). ByteLevel maps every byte to one printable character (GPT-2's table).
//  4. BPE per word: start from its characters (bytes for byte-level) looked up in model.vocab; a
//     character not in it becomes its <0xXX> byte tokens (byte_fallback), else unk_token (one
//     per run of unknown characters with fuse_unk), else nothing. ignore_merges (Llama 3): a word
//     that is itself in the vocabulary is emitted whole. Then merges by rank (detail::bpe_merge).
//  5. With add_special_tokens: the template (TemplateProcessing, or add_bos_token / add_eos_token
//     of tokenizer_config.json as transformers' LlamaTokenizerFast builds it).
// decode(): ids -> token strings (added tokens' content), then the decoder chain (Replace,
// ByteFallback, Fuse, Strip, ByteLevel, Metaspace); invalid UTF-8 becomes U+FFFD as in Rust's
// from_utf8_lossy. Text must be valid UTF-8 (HF takes strings): invalid input is a ValueError.
// Anything else in a file (another model type, normalizer, pre-tokenizer, processor, decoder or
// option) is a FormatError naming the file and the field: never a silent fallback.
//
// Thread safety: as BpeTokenizer, immutable after loading, with a per-thread word cache.

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/detail/unicode_nfc_data.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/json.hpp"

namespace fourierft::io {

namespace detail {

// ---- Unicode NFC (UAX #15: canonical decomposition, canonical ordering, canonical composition) --
inline std::uint8_t combining_class(char32_t c) {
  const auto& r = fourierft::detail::nfc_data::combining_ranges;
  const auto it = std::upper_bound(std::begin(r), std::end(r), c,
                                   [](char32_t v, const auto& e) { return v < e.first; });
  if (it == std::begin(r)) return 0;
  const auto& e = *(it - 1);
  return c <= e.last ? e.ccc : 0;
}
inline const fourierft::detail::nfc_data::Decomposition* canonical_decomposition(char32_t c) {
  const auto& d = fourierft::detail::nfc_data::decompositions;
  const auto it = std::lower_bound(std::begin(d), std::end(d), c,
                                   [](const auto& e, char32_t v) { return e.cp < v; });
  return it != std::end(d) && it->cp == c ? &*it : nullptr;
}
// Hangul syllables are composed algorithmically (Unicode ch. 3.12).
inline constexpr char32_t hangul_s = 0xAC00, hangul_l = 0x1100, hangul_v = 0x1161,
                          hangul_t = 0x11A7;
inline constexpr char32_t hangul_v_count = 21, hangul_t_count = 28, hangul_n = 588,
                          hangul_count = 11172;

inline void decompose_into(char32_t c, std::vector<char32_t>& out) {
  if (c >= hangul_s && c < hangul_s + hangul_count) {
    const char32_t s = c - hangul_s;
    out.push_back(hangul_l + s / hangul_n);
    out.push_back(hangul_v + (s % hangul_n) / hangul_t_count);
    if (s % hangul_t_count != 0) out.push_back(hangul_t + s % hangul_t_count);
    return;
  }
  if (const auto* d = canonical_decomposition(c)) {
    decompose_into(d->first, out);
    if (d->second != 0) decompose_into(d->second, out);
    return;
  }
  out.push_back(c);
}
inline std::optional<char32_t> compose_pair(char32_t a, char32_t b) {
  if (a >= hangul_l && a < hangul_l + 19 && b >= hangul_v && b < hangul_v + hangul_v_count)
    return hangul_s + ((a - hangul_l) * hangul_v_count + (b - hangul_v)) * hangul_t_count;
  if (a >= hangul_s && a < hangul_s + hangul_count && (a - hangul_s) % hangul_t_count == 0 &&
      b > hangul_t && b < hangul_t + hangul_t_count)
    return a + (b - hangul_t);
  static const std::unordered_map<std::uint64_t, char32_t> table = [] {
    std::unordered_map<std::uint64_t, char32_t> t;
    for (const auto& d : fourierft::detail::nfc_data::decompositions)
      if (d.composes) t.emplace((std::uint64_t{d.first} << 21) | d.second, d.cp);
    return t;
  }();
  const auto it = table.find((std::uint64_t{a} << 21) | b);
  if (it == table.end()) return std::nullopt;
  return it->second;
}
// NFC of valid UTF-8. Text without a byte >= 0xCC (code points below U+0300, where no combining
// mark or composable pair starts) is already NFC and returned as is.
inline std::string nfc(std::string_view s) {
  if (std::none_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) >= 0xCC; }))
    return std::string(s);
  std::vector<char32_t> cps;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s, i);
    decompose_into(decode_utf8(s, i, n), cps);
    i += n;
  }
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (std::size_t i = 0; i < cps.size();) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i),
                     cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Composition: a character joins the last starter unless blocked (a character between them
  // has a class >= its own, or is a starter).
  std::vector<char32_t> out;
  std::optional<std::size_t> starter;
  std::uint8_t last_class = 0;
  for (char32_t c : cps) {
    const std::uint8_t cc = combining_class(c);
    if (starter) {
      const bool adjacent = out.size() - 1 == *starter;
      if (adjacent || (last_class != 0 && last_class < cc)) {
        if (const auto composed = compose_pair(out[*starter], c)) {
          out[*starter] = *composed;
          continue;
        }
      }
    }
    if (cc == 0) starter = out.size();
    last_class = cc;
    out.push_back(c);
  }
  std::string result;
  for (char32_t c : out) append_utf8(result, c);
  return result;
}

// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
inline std::string utf8_lossy(std::string_view s) {
  if (first_invalid_utf8(s) == std::string_view::npos) return std::string(s);
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s, i);
    if (n > 0) {
      out.append(s, i, n);
      i += n;
      continue;
    }
    // The longest prefix of a valid sequence starting here (at least the one byte).
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                             : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
    std::size_t k = 1;
    while (k < need && i + k < s.size()) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      unsigned char lo = 0x80, hi = 0xBF;
      if (k == 1) {
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
      }
      if (b < lo || b > hi) break;
      ++k;
    }
    out += "\xEF\xBF\xBD";
    i += k;
  }
  return out;
}

// Replaces every occurrence of `from` (non-empty) in s by `to`.
inline std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  std::size_t pos = 0;
  for (std::size_t at; (at = s.find(from, pos)) != std::string_view::npos; pos = at + from.size()) {
    out.append(s, pos, at - pos);
    out += to;
  }
  out.append(s, pos);
  return out;
}

}  // namespace detail

// One entry of tokenizer.json's added_tokens.
struct HfAddedToken {
  std::string content;
  std::int64_t id = 0;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

class HfTokenizer {
 public:
  // tokenizer.json, plus tokenizer_config.json from the same folder when it exists (bos/eos/unk/
  // pad tokens, add_bos_token / add_eos_token, chat_template).
  static HfTokenizer from_file(const std::filesystem::path& tokenizer_json) {
    HfTokenizer t;
    t.load_tokenizer_json(tokenizer_json);
    const auto config = tokenizer_json.parent_path() / "tokenizer_config.json";
    if (std::filesystem::exists(config)) t.load_config(config);
    t.owner_ = std::make_shared<const int>(0);
    return t;
  }
  // A folder holding tokenizer.json, or the file itself.
  static HfTokenizer load(const std::filesystem::path& path) {
    if (std::filesystem::is_directory(path)) {
      check<IoError>(std::filesystem::exists(path / "tokenizer.json"), path.string(),
                     ": no tokenizer.json in this folder");
      return from_file(path / "tokenizer.json");
    }
    return from_file(path);
  }

  // ---- text <-> ids ---------------------------------------------------------------------------
  // Ids of `text` without BOS/EOS. Added and special tokens written in the text become their
  // single id (HF's default, SpecialText::parse); SpecialText::plain encodes special ones as
  // ordinary text (HF's split_special_tokens: for untrusted input).
  std::vector<std::int64_t> encode(std::string_view text,
                                   SpecialText special = SpecialText::parse) const {
    std::vector<std::int64_t> ids;
    encode_append(text, special, ids);
    return ids;
  }
  // encode() plus the special tokens of the template (HF's add_special_tokens = True).
  std::vector<std::int64_t> encode_for_model(std::string_view text,
                                             SpecialText special = SpecialText::parse) const {
    return apply_template(single_, {encode(text, special), {}});
  }
  std::vector<std::int64_t> encode_for_model(std::string_view a, std::string_view b,
                                             SpecialText special = SpecialText::parse) const {
    check(!pair_.empty(), source_, ": this tokenizer has no pair template");
    return apply_template(pair_, {encode(a, special), encode(b, special)});
  }
  // Text of the ids through the file's decoder; special tokens dropped if skip_special.
  std::string decode(std::span<const std::int64_t> ids, bool skip_special = false) const {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (std::int64_t id : ids) {
      check_id(id, "decode");
      if (skip_special && is_special(id)) continue;
      tokens.push_back(ids_.tokens[static_cast<std::size_t>(id)]);
    }
    if (decoders_.empty()) {
      std::string out;
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (i > 0) out += ' ';
        out += tokens[i];
      }
      return out;
    }
    for (const Decoder& d : decoders_) tokens = run_decoder(d, std::move(tokens));
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
  }

  // ---- vocabulary ------------------------------------------------------------------------------
  // Largest id + 1 over model.vocab and added_tokens: the embedding rows ids index.
  Index vocab_size() const { return ids_.size(); }
  std::optional<std::int64_t> token_id(std::string_view token) const {
    if (const auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
    const auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  const std::string& id_to_token(std::int64_t id) const {
    check_id(id, "id_to_token");
    return ids_.tokens[static_cast<std::size_t>(id)];
  }
  bool is_special(std::int64_t id) const {
    return id >= 0 && static_cast<std::size_t>(id) < id_special_.size() &&
           id_special_[static_cast<std::size_t>(id)];
  }
  // bos / eos / unk / pad as tokenizer_config.json names them (unk also from model.unk_token).
  const SpecialTokens& special_tokens() const { return specials_; }
  const std::vector<HfAddedToken>& added_tokens() const { return added_; }
  // The ids encode_for_model puts before / after the text (single sequence).
  std::vector<std::int64_t> template_prefix() const { return template_side(true); }
  std::vector<std::int64_t> template_suffix() const { return template_side(false); }
  // tokenizer_config.json's chat_template ("" if none); rendering it is left to the caller.
  const std::string& chat_template() const { return chat_template_; }
  const std::string& source() const { return source_; }

 private:
  using TokenMap = detail::TokenMap;

  // A string or regex pattern ({"String": ...} or {"Regex": ...}).
  struct Pattern {
    std::string literal;
    std::optional<detail::Regex> regex;
    // Match spans [begin, end) of s, left to right, non-overlapping.
    std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view s) const {
      std::vector<std::pair<std::size_t, std::size_t>> out;
      if (!regex) {
        if (literal.empty()) return out;
        for (std::size_t at = s.find(literal); at != std::string_view::npos;
             at = s.find(literal, at + literal.size()))
          out.emplace_back(at, at + literal.size());
        return out;
      }
      for (std::size_t pos = 0; pos <= s.size();) {
        const auto m = regex->find(s, pos);
        if (!m) break;
        if (m->second == m->first) {  // an empty match: skip one character
          pos = m->first + std::max<std::size_t>(1, detail::utf8_sequence_length(s, m->first));
          continue;
        }
        out.push_back(*m);
        pos = m->second;
      }
      return out;
    }
  };
  struct Normalizer {
    enum class Kind { prepend, replace, nfc } kind;
    std::string text;  // prepend: what; replace: the replacement
    Pattern pattern;   // replace
  };
  enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };
  enum class PrependScheme { always, first, never };
  struct PreTokenizer {
    enum class Kind { split, metaspace, byte_level } kind;
    Pattern pattern;  // split
    Behavior behavior = Behavior::isolated;
    bool invert = false;
    std::string replacement;  // metaspace
    PrependScheme prepend = PrependScheme::always;
    bool split = true;
    bool add_prefix_space = false, use_regex = false;  // byte_level
  };
  struct Decoder {
    enum class Kind { replace, byte_fallback, fuse, strip, byte_level, metaspace } kind;
    Pattern pattern;
    std::string text;  // replace: content; strip: the character; metaspace: replacement
    std::size_t start = 0, stop = 0;
    PrependScheme prepend = PrependScheme::always;
  };
  // A template item: a sequence (0 = A, 1 = B) or fixed ids.
  struct TemplateItem {
    int sequence = -1;
    std::vector<std::int64_t> ids;
  };
  // A piece of text during encoding; `first` if it starts at offset 0 of the input.
  struct Piece {
    std::string text;
    bool first;
  };

  HfTokenizer() = default;

  // ---- loading ---------------------------------------------------------------------------------
  [[noreturn]] void unsupported(const std::string& field, const std::string& type,
                                const char* supported) const {
    throw FormatError(str_cat(source_, ": ", field, " is '", type, "', which is not supported (",
                              supported, ")"));
  }
  static std::string field(const std::string& parent, const std::string& key) {
    return parent.empty() ? key : parent + "." + key;
  }
  JsonObject object_at(const Json& j, const std::string& path) const {
    return JsonObject(j, source_, path);
  }
  // o[key] as an array; missing or of another type: FormatError naming the file and the field
  // (json's own at() / operator[] would throw its exceptions, which name neither).
  const Json& array_at(const JsonObject& o, const char* key, const std::string& where) const {
    const auto it = o.json().find(key);
    check<FormatError>(it != o.json().end(), source_, ": ", where, ".", key, " is missing");
    check<FormatError>(it->is_array(), source_, ": ", where, ".", key, " should be an array but is ",
                       json_excerpt(*it));
    return *it;
  }
  Pattern pattern_of(const JsonObject& o, const std::string& where) const {
    const auto p = o.get<JsonObject>("pattern");
    Pattern out;
    if (p.has("String")) {
      out.literal = p.get<std::string>("String");
    } else {
      check<FormatError>(p.has("Regex"), source_, ": ", where,
                         ".pattern should hold \"String\" or \"Regex\"");
      const auto re = p.get<std::string>("Regex");
      try {
        out.regex.emplace(re.c_str());
      } catch (const ValueError& e) {
        throw FormatError(str_cat(source_, ": ", where, ".pattern.Regex: ", e.what()));
      }
    }
    return out;
  }
  PrependScheme prepend_scheme(const JsonObject& o, const std::string& where) const {
    if (!o.has("prepend_scheme"))  // files older than tokenizers 0.14: add_prefix_space
      return o.get_or<bool>("add_prefix_space", true) ? PrependScheme::always
                                                      : PrependScheme::never;
    const auto s = o.get<std::string>("prepend_scheme");
    if (s == "always") return PrependScheme::always;
    if (s == "first") return PrependScheme::first;
    if (s == "never") return PrependScheme::never;
    unsupported(where + ".prepend_scheme", s, "always, first, never");
  }

  void load_tokenizer_json(const std::filesystem::path& path) {
    source_ = path.string();
    const JsonObject root(read_json(path), source_);
    std::size_t tokens = 0;  // ids are bounded by the file's token count (IdTable::expect_tokens)
    if (const auto m = root.json().find("model"); m != root.json().end() && m->is_object())
      if (const auto v = m->find("vocab"); v != m->end()) tokens += v->size();
    if (const auto a = root.json().find("added_tokens"); a != root.json().end() && a->is_array())
      tokens += a->size();
    ids_.expect_tokens(tokens);
    load_model(root.get<JsonObject>("model"));
    if (root.has("added_tokens")) load_added_tokens(root.json().at("added_tokens"));
    if (root.has("normalizer")) add_normalizer(root.get<JsonObject>("normalizer"), "normalizer");
    if (root.has("pre_tokenizer"))
      add_pre_tokenizer(root.get<JsonObject>("pre_tokenizer"), "pre_tokenizer");
    for (std::size_t i = 0; i + 1 < pre_tokenizers_.size(); ++i)
      check<FormatError>(pre_tokenizers_[i].kind != PreTokenizer::Kind::byte_level, source_,
                         ": a ByteLevel pre-tokenizer followed by another is not supported");
    byte_level_ = !pre_tokenizers_.empty() &&
                  pre_tokenizers_.back().kind == PreTokenizer::Kind::byte_level;
    if (root.has("post_processor"))
      add_post_processor(root.get<JsonObject>("post_processor"), "post_processor");
    if (root.has("decoder")) add_decoder(root.get<JsonObject>("decoder"), "decoder");
    finish_model();
  }

  void load_model(const JsonObject& model) {
    const auto type = model.get<std::string>("type");
    if (type != "BPE") unsupported("model.type", type, "BPE");
    const auto vocab = model.get<JsonObject>("vocab");
    for (const auto& item : vocab.json().items()) {
      check<FormatError>(item.value().is_number_integer(), source_, ": model.vocab: token '",
                         item.key(), "' has id ", json_excerpt(item.value()),
                         ", expected an integer");
      add_token(item.key(), item.value().get<std::int64_t>(), "model.vocab");
      vocab_.emplace(item.key(), item.value().get<std::int64_t>());
    }
    if (model.has("dropout") && model.get<double>("dropout") != 0.0)
      unsupported("model.dropout", std::to_string(model.get<double>("dropout")), "null or 0");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (model.has(key) && !model.get<std::string>(key).empty())
        unsupported(str_cat("model.", key), model.get<std::string>(key), "null or \"\"");
    byte_fallback_ = model.get_or<bool>("byte_fallback", false);
    fuse_unk_ = model.get_or<bool>("fuse_unk", false);
    ignore_merges_ = model.get_or<bool>("ignore_merges", false);
    if (model.has("unk_token")) {
      const auto unk = model.get<std::string>("unk_token");
      const auto it = vocab_.find(unk);
      check<FormatError>(it != vocab_.end(), source_, ": model.unk_token '", unk,
                         "' is not in model.vocab");
      unk_id_ = static_cast<std::int32_t>(it->second);
      specials_.unk = it->second;
    }
    const auto lookup = [this](std::string_view t) -> std::optional<std::int64_t> {
      const auto it = vocab_.find(t);
      if (it == vocab_.end()) return std::nullopt;
      return it->second;
    };
    detail::for_each_json_merge(
        model.json(), source_,
        [&](std::string_view a, std::string_view b, const std::string& where) {
          detail::add_merge(merges_, lookup, a, b, where);
        });
  }

  void load_added_tokens(const Json& list) {
    check<FormatError>(list.is_array(), source_, ": added_tokens should be an array");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const JsonObject o = object_at(list[i], str_cat("added_tokens[", i, "]"));
      HfAddedToken a;
      a.content = o.get<std::string>("content");
      a.id = o.get<std::int64_t>("id");
      a.special = o.get_or<bool>("special", false);
      a.lstrip = o.get_or<bool>("lstrip", false);
      a.rstrip = o.get_or<bool>("rstrip", false);
      a.single_word = o.get_or<bool>("single_word", false);
      a.normalized = o.get_or<bool>("normalized", !a.special);
      check<FormatError>(!a.content.empty(), source_, ": added_tokens[", i, "].content is empty");
      const auto known = vocab_.find(a.content);
      if (known != vocab_.end())
        check<FormatError>(known->second == a.id, source_, ": added_tokens[", i, "] '", a.content,
                           "' has id ", a.id, " but model.vocab gives it ", known->second);
      else if (ids_.has(a.id))
        throw FormatError(str_cat(source_, ": added_tokens[", i, "] '", a.content, "' has id ",
                                  a.id, ", which model.vocab gives to '",
                                  ids_.tokens[static_cast<std::size_t>(a.id)], "'"));
      else
        add_token(a.content, a.id, str_cat("added_tokens[", i, "]"));
      ids_.tokens[static_cast<std::size_t>(a.id)] = a.content;  // decode uses the added content
      added_ids_.emplace(a.content, a.id);
      added_.push_back(std::move(a));
    }
  }

  void add_normalizer(const JsonObject& o, const std::string& where) {
    const auto type = o.get<std::string>("type");
    if (type == "Sequence") {
      const Json& list = array_at(o, "normalizers", where);
      for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string w = str_cat(where, ".normalizers[", i, "]");
        add_normalizer(object_at(list[i], w), w);
      }
    } else if (type == "Prepend") {
      normalizers_.push_back({Normalizer::Kind::prepend, o.get<std::string>("prepend"), {}});
    } else if (type == "Replace") {
      normalizers_.push_back(
          {Normalizer::Kind::replace, o.get<std::string>("content"), pattern_of(o, where)});
    } else if (type == "NFC") {
      normalizers_.push_back({Normalizer::Kind::nfc, {}, {}});
    } else {
      unsupported(where + ".type", type, "Sequence, Prepend, Replace, NFC");
    }
  }

  void add_pre_tokenizer(const JsonObject& o, const std::string& where) {
    const auto type = o.get<std::string>("type");
    PreTokenizer p;
    if (type == "Sequence") {
      const Json& list = array_at(o, "pretokenizers", where);
      for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string w = str_cat(where, ".pretokenizers[", i, "]");
        add_pre_tokenizer(object_at(list[i], w), w);
      }
      return;
    } else if (type == "Split") {
      p.kind = PreTokenizer::Kind::split;
      p.pattern = pattern_of(o, where);
      const auto b = o.get<std::string>("behavior");
      if (b == "Removed") p.behavior = Behavior::removed;
      else if (b == "Isolated") p.behavior = Behavior::isolated;
      else if (b == "MergedWithPrevious") p.behavior = Behavior::merged_with_previous;
      else if (b == "MergedWithNext") p.behavior = Behavior::merged_with_next;
      else if (b == "Contiguous") p.behavior = Behavior::contiguous;
      else unsupported(where + ".behavior", b,
                       "Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
      p.invert = o.get_or<bool>("invert", false);
    } else if (type == "Metaspace") {
      p.kind = PreTokenizer::Kind::metaspace;
      p.replacement = o.get_or<std::string>("replacement", "\xE2\x96\x81");
      check<FormatError>(detail::utf8_sequence_length(p.replacement, 0) == p.replacement.size(),
                         source_, ": ", where, ".replacement should be one character");
      p.prepend = prepend_scheme(o, where);
      p.split = o.get_or<bool>("split", true);
    } else if (type == "ByteLevel") {
      p.kind = PreTokenizer::Kind::byte_level;
      p.add_prefix_space = o.get_or<bool>("add_prefix_space", true);
      p.use_regex = o.get_or<bool>("use_regex", true);
      if (p.use_regex) p.pattern.regex.emplace(detail::gpt2_split_pattern);
    } else {
      unsupported(where + ".type", type, "Sequence, Split, Metaspace, ByteLevel");
    }
    pre_tokenizers_.push_back(std::move(p));
  }

  // A special token of a template: {"id": "<s>", "ids": [1], ...} in special_tokens.
  std::vector<std::int64_t> template_ids(const JsonObject& specials, const std::string& name,
                                         const std::string& where) const {
    check<FormatError>(specials.has(name), source_, ": ", where, " names '", name,
                       "', which special_tokens does not define");
    const auto ids = specials.get<JsonObject>(name).get<std::vector<std::int64_t>>("ids");
    for (std::int64_t id : ids)
      check<FormatError>(ids_.has(id), source_, ": ", where, ": id ", id, " of '", name,
                         "' is not in the vocabulary");
    return ids;
  }
  std::vector<TemplateItem> parse_template(const JsonObject& o, const char* key,
                                           const std::string& where) const {
    std::vector<TemplateItem> out;
    const auto specials = o.get<JsonObject>("special_tokens");
    const Json& list = array_at(o, key, where);
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string w = str_cat(where, ".", key, "[", i, "]");
      const JsonObject item = object_at(list[i], w);
      if (item.has("Sequence")) {
        const auto seq = item.get<JsonObject>("Sequence").get<std::string>("id");
        check<FormatError>(seq == "A" || seq == "B", source_, ": ", w, ".Sequence.id is '", seq,
                           "', expected A or B");
        out.push_back({seq == "A" ? 0 : 1, {}});
      } else {
        check<FormatError>(item.has("SpecialToken"), source_, ": ", w,
                           " should hold \"Sequence\" or \"SpecialToken\"");
        const auto name = item.get<JsonObject>("SpecialToken").get<std::string>("id");
        out.push_back({-1, template_ids(specials, name, w)});
      }
    }
    return out;
  }
  std::int64_t pair_id(const JsonObject& o, const char* key) const {
    check<FormatError>(o.has(key), source_, ": post_processor.", key, " is missing");
    const Json& v = o.json().at(key);  // ["<s>", 0]
    check<FormatError>(
        v.is_array() && v.size() == 2 && v[0].is_string() && v[1].is_number_integer(), source_,
        ": post_processor.", key, " should be [\"token\", id]");
    return v[1].get<std::int64_t>();
  }
  void add_post_processor(const JsonObject& o, const std::string& where) {
    const auto type = o.get<std::string>("type");
    if (type == "Sequence") {
      const Json& list = array_at(o, "processors", where);
      for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string w = str_cat(where, ".processors[", i, "]");
        add_post_processor(object_at(list[i], w), w);
      }
    } else if (type == "ByteLevel") {
      // Only adjusts offsets: no ids.
    } else if (type == "TemplateProcessing") {
      single_ = parse_template(o, "single", where);
      pair_ = parse_template(o, "pair", where);
    } else if (type == "RobertaProcessing" || type == "BertProcessing") {
      const std::int64_t cls = pair_id(o, "cls"), sep = pair_id(o, "sep");
      single_ = {{-1, {cls}}, {0, {}}, {-1, {sep}}};
      pair_ = type == "RobertaProcessing"
                  ? std::vector<TemplateItem>{{-1, {cls}}, {0, {}}, {-1, {sep, sep}}, {1, {}},
                                              {-1, {sep}}}
                  : std::vector<TemplateItem>{{-1, {cls}}, {0, {}}, {-1, {sep}}, {1, {}},
                                              {-1, {sep}}};
    } else {
      unsupported(where + ".type", type,
                  "Sequence, ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing");
    }
  }

  void add_decoder(const JsonObject& o, const std::string& where) {
    const auto type = o.get<std::string>("type");
    Decoder d;
    if (type == "Sequence") {
      const Json& list = array_at(o, "decoders", where);
      for (std::size_t i = 0; i < list.size(); ++i) {
        const std::string w = str_cat(where, ".decoders[", i, "]");
        add_decoder(object_at(list[i], w), w);
      }
      return;
    } else if (type == "Replace") {
      d.kind = Decoder::Kind::replace;
      d.pattern = pattern_of(o, where);
      d.text = o.get<std::string>("content");
    } else if (type == "ByteFallback") {
      d.kind = Decoder::Kind::byte_fallback;
    } else if (type == "Fuse") {
      d.kind = Decoder::Kind::fuse;
    } else if (type == "Strip") {
      d.kind = Decoder::Kind::strip;
      d.text = o.get<std::string>("content");
      check<FormatError>(detail::utf8_sequence_length(d.text, 0) == d.text.size(), source_, ": ",
                         where, ".content should be one character");
      d.start = o.get<std::size_t>("start");
      d.stop = o.get<std::size_t>("stop");
    } else if (type == "ByteLevel") {
      d.kind = Decoder::Kind::byte_level;
    } else if (type == "Metaspace") {
      d.kind = Decoder::Kind::metaspace;
      d.text = o.get_or<std::string>("replacement", "\xE2\x96\x81");
      d.prepend = prepend_scheme(o, where);
    } else {
      unsupported(where + ".type", type,
                  "Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, Metaspace");
    }
    decoders_.push_back(std::move(d));
  }

  void add_token(const std::string& token, std::int64_t id, const std::string& where) {
    ids_.add(token, id, source_ + ": " + where);
  }

  void finish_model() {
    id_special_.assign(ids_.tokens.size(), false);
    for (const HfAddedToken& a : added_) {
      if (a.special) id_special_[static_cast<std::size_t>(a.id)] = true;
      // Normalized added tokens are matched in normalized text, so their content is normalized.
      std::string content = a.normalized ? normalize(a.content) : a.content;
      auto& table = a.normalized ? normalized_added_ : raw_added_;
      table[static_cast<unsigned char>(content[0])].push_back({std::move(content), &a - &added_[0]});
    }
    for (auto* table : {&raw_added_, &normalized_added_})
      for (auto& bucket : *table)
        std::stable_sort(bucket.begin(), bucket.end(), [](const auto& x, const auto& y) {
          return x.first.size() > y.first.size();  // longest first
        });
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      const auto it = vocab_.find(std::string_view(name));
      byte_fallback_ids_[static_cast<std::size_t>(b)] =
          it == vocab_.end() ? -1 : static_cast<std::int32_t>(it->second);
      std::string symbol;
      detail::append_utf8(symbol, detail::byte_to_unicode()[static_cast<std::size_t>(b)]);
      const auto s = vocab_.find(symbol);
      byte_char_ids_[static_cast<std::size_t>(b)] =
          s == vocab_.end() ? -1 : static_cast<std::int32_t>(s->second);
    }
  }

  // tokenizer_config.json: special token names, add_bos_token / add_eos_token, chat_template.
  void load_config(const std::filesystem::path& path) {
    const std::string config_source = path.string();
    const JsonObject config(read_json(path), config_source);
    const auto token_of = [&](const char* key) -> std::optional<std::int64_t> {
      if (!config.has(key)) return std::nullopt;
      const Json& v = config.json().at(key);
      std::string name;
      if (v.is_string()) {
        name = v.get<std::string>();
      } else {
        check<FormatError>(v.is_object() && v.contains("content") && v.at("content").is_string(),
                           config_source, ": ", key,
                           " should be a string or {\"content\": ...}, got ", json_excerpt(v));
        name = v.at("content").get<std::string>();
      }
      const auto id = token_id(name);
      check<FormatError>(id.has_value(), config_source, ": ", key, " '", name, "' is not in ",
                         source_);
      return id;
    };
    specials_.bos = token_of("bos_token");
    specials_.eos = token_of("eos_token");
    if (const auto unk = token_of("unk_token")) specials_.unk = unk;
    specials_.pad = token_of("pad_token");
    // transformers' LlamaTokenizerFast rebuilds the template from these two keys:
    //   single = [bos] $A [eos],  pair = [bos] $A [eos] [bos] $B [eos]  (each if asked for).
    if (config.has("add_bos_token") || config.has("add_eos_token")) {
      const bool bos = config.get_or<bool>("add_bos_token", false);
      const bool eos = config.get_or<bool>("add_eos_token", false);
      check<FormatError>(!bos || specials_.bos, config_source,
                         ": add_bos_token is true but bos_token is not set");
      check<FormatError>(!eos || specials_.eos, config_source,
                         ": add_eos_token is true but eos_token is not set");
      const auto side = [&](bool add, const std::optional<std::int64_t>& id) {
        return TemplateItem{-1, add ? std::vector<std::int64_t>{*id} : std::vector<std::int64_t>{}};
      };
      single_ = {side(bos, specials_.bos), {0, {}}, side(eos, specials_.eos)};
      pair_ = {side(bos, specials_.bos), {0, {}},  side(eos, specials_.eos),
               side(bos, specials_.bos), {1, {}},  side(eos, specials_.eos)};
    }
    if (config.has("chat_template")) {
      const Json& t = config.json().at("chat_template");
      if (t.is_string()) {
        chat_template_ = t.get<std::string>();
      } else {  // [{"name": "default", "template": ...}, ...]
        check<FormatError>(t.is_array(), config_source,
                           ": chat_template should be a string or a list of {name, template}");
        for (const Json& e : t)
          if (e.is_object() && e.value("name", "") == "default")
            chat_template_ = e.value("template", "");
      }
    }
  }

  // ---- encoding --------------------------------------------------------------------------------
  using AddedTable = std::array<std::vector<std::pair<std::string, std::ptrdiff_t>>, 256>;
  struct Segment {
    std::size_t begin, end;
    std::int64_t id;  // -1: text
  };
  // HF's AddedVocabulary::find_matches: text pieces and added tokens, in order.
  std::vector<Segment> split_added(std::string_view s, const AddedTable& table,
                                   SpecialText special) const {
    std::vector<Segment> out;
    std::size_t start_offset = 0;
    for (std::size_t i = 0; i < s.size();) {
      const auto& bucket = table[static_cast<unsigned char>(s[i])];
      const std::pair<std::string, std::ptrdiff_t>* found = nullptr;
      for (const auto& entry : bucket)
        if (s.compare(i, entry.first.size(), entry.first) == 0) {
          found = &entry;
          break;
        }
      if (found == nullptr) {
        ++i;
        continue;
      }
      const HfAddedToken& token = added_[static_cast<std::size_t>(found->second)];
      std::size_t start = i, stop = i + found->first.size();
      i = stop;  // matches never overlap, kept or not
      if (special == SpecialText::plain && token.special) continue;
      if (token.single_word && !is_single_word(s, start, stop)) continue;
      if (token.lstrip)
        start = std::max(start - detail::trailing_space(s.substr(0, start)), start_offset);
      if (token.rstrip) stop += detail::leading_space(s.substr(stop));
      if (start_offset < start) out.push_back({start_offset, start, -1});
      out.push_back({start, stop, token.id});
      start_offset = i = stop;
    }
    if (start_offset < s.size() || out.empty()) out.push_back({start_offset, s.size(), -1});
    return out;
  }
  // single_word: no word character (\w, Unicode) just before `begin` or just after `end`.
  static bool is_single_word(std::string_view s, std::size_t begin, std::size_t end) {
    static const detail::Regex word(R"(\w)", PCRE2_ANCHORED);
    const auto is_word = [&](std::size_t from, std::size_t to) {
      const auto m = word.find(s.substr(from, to - from), 0);
      return m && m->second == to - from;
    };
    std::size_t before = begin;  // start of the character that ends at `begin`
    while (before > 0 && (static_cast<unsigned char>(s[--before]) & 0xC0) == 0x80) {
    }
    const bool word_before = begin > 0 && is_word(before, begin);
    const bool word_after = end < s.size() && is_word(end, end + detail::utf8_sequence_length(s, end));
    return !word_before && !word_after;
  }

  std::string normalize(std::string_view text) const {
    std::string s(text);
    for (const Normalizer& n : normalizers_) {
      switch (n.kind) {
        case Normalizer::Kind::prepend:
          if (!s.empty()) s = n.text + s;
          break;
        case Normalizer::Kind::replace: {
          std::string out;
          std::size_t pos = 0;
          for (const auto& [b, e] : n.pattern.find_all(s)) {
            out.append(s, pos, b - pos);
            out += n.text;
            pos = e;
          }
          out.append(s, pos);
          s = std::move(out);
          break;
        }
        case Normalizer::Kind::nfc:
          s = detail::nfc(s);
          break;
      }
    }
    return s;
  }

  // HF's SplitDelimiterBehavior on the match spans of one piece.
  static void split_piece(Piece&& piece, const Pattern& pattern, Behavior behavior, bool invert,
                          std::vector<Piece>& out) {
    struct Part {
      std::size_t begin, end;
      bool match;
    };
    const std::string& s = piece.text;
    std::vector<Part> parts;
    std::size_t pos = 0;
    for (const auto& [b, e] : pattern.find_all(s)) {
      if (pos < b) parts.push_back({pos, b, invert});
      parts.push_back({b, e, !invert});
      pos = e;
    }
    if (pos < s.size()) parts.push_back({pos, s.size(), invert});
    std::vector<Part> kept;
    switch (behavior) {
      case Behavior::removed:
        for (const Part& p : parts)
          if (!p.match) kept.push_back(p);
        break;
      case Behavior::isolated:
        kept = parts;
        break;
      case Behavior::contiguous:
        for (const Part& p : parts)
          if (!kept.empty() && p.match && kept.back().match) kept.back().end = p.end;
          else kept.push_back(p);
        break;
      case Behavior::merged_with_previous: {
        bool previous_match = false;
        for (const Part& p : parts) {
          if (p.match && !previous_match && !kept.empty()) kept.back().end = p.end;
          else kept.push_back(p);
          previous_match = p.match;
        }
        break;
      }
      case Behavior::merged_with_next: {
        bool next_match = false;
        for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
          if (it->match && !next_match && !kept.empty()) kept.back().begin = it->begin;
          else kept.push_back(*it);
          next_match = it->match;
        }
        std::reverse(kept.begin(), kept.end());
        break;
      }
    }
    for (const Part& p : kept)
      if (p.end > p.begin)
        out.push_back({s.substr(p.begin, p.end - p.begin), piece.first && p.begin == 0});
  }

  std::vector<Piece> pre_tokenize(Piece piece) const {
    std::vector<Piece> pieces;
    pieces.push_back(std::move(piece));
    for (const PreTokenizer& p : pre_tokenizers_) {
      std::vector<Piece> next;
      for (Piece& w : pieces) {
        switch (p.kind) {
          case PreTokenizer::Kind::split:
            split_piece(std::move(w), p.pattern, p.behavior, p.invert, next);
            break;
          case PreTokenizer::Kind::metaspace: {
            w.text = detail::replace_all(w.text, " ", p.replacement);
            const bool prepend = p.prepend == PrependScheme::always ||
                                 (p.prepend == PrependScheme::first && w.first);
            if (prepend && !w.text.starts_with(p.replacement)) w.text = p.replacement + w.text;
            if (p.split) {
              Pattern on;
              on.literal = p.replacement;
              split_piece(std::move(w), on, Behavior::merged_with_next, false, next);
            } else {
              next.push_back(std::move(w));
            }
            break;
          }
          case PreTokenizer::Kind::byte_level:
            if (p.add_prefix_space && !w.text.starts_with(' ')) w.text = " " + w.text;
            if (p.use_regex) split_piece(std::move(w), p.pattern, Behavior::isolated, false, next);
            else next.push_back(std::move(w));
            break;
        }
      }
      pieces = std::move(next);
    }
    return pieces;
  }

  void encode_append(std::string_view text, SpecialText special,
                     std::vector<std::int64_t>& ids) const {
    if (const std::size_t bad = detail::first_invalid_utf8(text); bad != std::string_view::npos)
      throw ValueError(str_cat("encode: the text is not valid UTF-8 (byte ", bad, ")"));
    detail::WordCache& cache = detail::thread_word_cache(owner_);
    for (const Segment& raw : split_added(text, raw_added_, special)) {
      if (raw.id >= 0) {
        ids.push_back(raw.id);
        continue;
      }
      const std::string normalized = normalize(text.substr(raw.begin, raw.end - raw.begin));
      for (const Segment& seg : split_added(normalized, normalized_added_, special)) {
        if (seg.id >= 0) {
          ids.push_back(seg.id);
          continue;
        }
        if (seg.end == seg.begin) continue;
        Piece piece{normalized.substr(seg.begin, seg.end - seg.begin),
                    raw.begin == 0 && seg.begin == 0};
        for (const Piece& word : pre_tokenize(std::move(piece))) encode_word(word.text, cache, ids);
      }
    }
  }

  // BPE of one word (see step 4 at the top), through this thread's cache.
  void encode_word(std::string_view word, detail::WordCache& cache,
                   std::vector<std::int64_t>& ids) const {
    if (word.empty()) return;
    if (const auto it = cache.words.find(word); it != cache.words.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
    std::vector<std::int32_t> symbols;
    if (ignore_merges_) {
      std::string token;
      if (byte_level_) {
        for (char b : word)
          detail::append_utf8(token, detail::byte_to_unicode()[static_cast<unsigned char>(b)]);
      }
      const auto it = vocab_.find(byte_level_ ? std::string_view(token) : word);
      if (it != vocab_.end()) symbols.push_back(static_cast<std::int32_t>(it->second));
    }
    if (symbols.empty()) {
      symbols = initial_symbols(word);
      symbols = detail::bpe_merge(std::move(symbols), merges_);
    }
    ids.insert(ids.end(), symbols.begin(), symbols.end());
    if (word.size() < 256 && cache.words.size() < detail::WordCache::capacity)
      cache.words.emplace(word, std::move(symbols));
  }
  // Characters (bytes, for byte-level) as ids, with byte fallback and unk (HF's merge_word).
  std::vector<std::int32_t> initial_symbols(std::string_view word) const {
    std::vector<std::int32_t> symbols;
    symbols.reserve(word.size());
    bool pending_unk = false;
    const auto unknown = [&] {
      if (!unk_id_) return;  // no unk_token: the character is dropped, as HF does
      if (pending_unk && fuse_unk_) return;
      symbols.push_back(*unk_id_);
      pending_unk = true;
    };
    for (std::size_t i = 0; i < word.size();) {
      const std::size_t n = byte_level_ ? 1 : detail::utf8_sequence_length(word, i);
      const std::string_view c = word.substr(i, n);
      i += n;
      std::int32_t id = -1;
      if (byte_level_) {
        id = byte_char_ids_[static_cast<unsigned char>(c[0])];
      } else if (const auto it = vocab_.find(c); it != vocab_.end()) {
        id = static_cast<std::int32_t>(it->second);
      }
      if (id >= 0) {
        symbols.push_back(id);
        pending_unk = false;
        continue;
      }
      if (byte_fallback_ &&
          std::all_of(c.begin(), c.end(), [&](char b) {
            return byte_fallback_ids_[static_cast<unsigned char>(b)] >= 0;
          })) {
        for (char b : c) symbols.push_back(byte_fallback_ids_[static_cast<unsigned char>(b)]);
        pending_unk = false;
        continue;
      }
      unknown();
    }
    return symbols;
  }

  std::vector<std::int64_t> apply_template(const std::vector<TemplateItem>& items,
                                           std::array<std::vector<std::int64_t>, 2> seqs) const {
    if (items.empty()) {  // no template: A, then B
      seqs[0].insert(seqs[0].end(), seqs[1].begin(), seqs[1].end());
      return std::move(seqs[0]);
    }
    std::vector<std::int64_t> out;
    for (const TemplateItem& item : items) {
      const auto& part = item.sequence >= 0 ? seqs[static_cast<std::size_t>(item.sequence)] : item.ids;
      out.insert(out.end(), part.begin(), part.end());
    }
    return out;
  }
  std::vector<std::int64_t> template_side(bool prefix) const {
    std::vector<std::int64_t> out;
    bool seen_sequence = false;
    for (const TemplateItem& item : single_) {
      if (item.sequence >= 0) seen_sequence = true;
      else if (seen_sequence != prefix) out.insert(out.end(), item.ids.begin(), item.ids.end());
    }
    return out;
  }

  // ---- decoding --------------------------------------------------------------------------------
  std::vector<std::string> run_decoder(const Decoder& d, std::vector<std::string> tokens) const {
    switch (d.kind) {
      case Decoder::Kind::replace:
        for (std::string& t : tokens) {
          std::string out;
          std::size_t pos = 0;
          for (const auto& [b, e] : d.pattern.find_all(t)) {
            out.append(t, pos, b - pos);
            out += d.text;
            pos = e;
          }
          out.append(t, pos);
          t = std::move(out);
        }
        return tokens;
      case Decoder::Kind::byte_fallback: {
        std::vector<std::string> out;
        std::string bytes;
        std::size_t count = 0;
        const auto flush = [&] {
          if (count == 0) return;
          if (detail::first_invalid_utf8(bytes) == std::string_view::npos) out.push_back(bytes);
          else
            for (std::size_t k = 0; k < count; ++k) out.push_back("\xEF\xBF\xBD");
          bytes.clear();
          count = 0;
        };
        for (std::string& t : tokens) {
          const auto hex = [&](char c) { return std::isxdigit(static_cast<unsigned char>(c)); };
          if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>' && hex(t[3]) && hex(t[4])) {
            bytes += static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16));
            ++count;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        return out;
      }
      case Decoder::Kind::fuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        return {all};
      }
      case Decoder::Kind::strip:
        for (std::string& t : tokens) {
          std::size_t begin = 0, end = t.size();
          for (std::size_t k = 0; k < d.start && t.compare(begin, d.text.size(), d.text) == 0;
               ++k)
            begin += d.text.size();
          for (std::size_t k = 0; k < d.stop && end >= begin + d.text.size() &&
                                  t.compare(end - d.text.size(), d.text.size(), d.text) == 0;
               ++k)
            end -= d.text.size();
          t = t.substr(begin, end - begin);
        }
        return tokens;
      case Decoder::Kind::byte_level: {
        static const std::unordered_map<char32_t, char> unicode_to_byte = [] {
          std::unordered_map<char32_t, char> m;
          for (int b = 0; b < 256; ++b)
            m[detail::byte_to_unicode()[static_cast<std::size_t>(b)]] = static_cast<char>(b);
          return m;
        }();
        std::string bytes;
        for (const std::string& t : tokens) {
          std::string mapped;
          bool all_mapped = true;
          for (std::size_t i = 0; i < t.size() && all_mapped;) {
            const std::size_t n = detail::utf8_sequence_length(t, i);
            const auto it = n == 0 ? unicode_to_byte.end()
                                   : unicode_to_byte.find(detail::decode_utf8(t, i, n));
            if (it == unicode_to_byte.end()) all_mapped = false;
            else mapped += it->second;
            i += std::max<std::size_t>(n, 1);
          }
          bytes += all_mapped ? mapped : t;  // a token outside the byte alphabet: its own text
        }
        return {detail::utf8_lossy(bytes)};
      }
      case Decoder::Kind::metaspace:
        for (std::size_t i = 0; i < tokens.size(); ++i) {
          const bool drop = i == 0 && d.prepend != PrependScheme::never;
          tokens[i] = detail::replace_all(tokens[i], d.text, drop ? "" : " ");
        }
        return tokens;
    }
    return tokens;
  }

  void check_id(std::int64_t id, const char* what) const { ids_.check_id(id, what, source_); }

  std::string source_;                  // tokenizer.json, for messages
  TokenMap vocab_;                      // model.vocab
  TokenMap added_ids_;                  // added_tokens content -> id
  detail::IdTable ids_;                 // id -> token string (added tokens: their content)
  std::vector<bool> id_special_;
  detail::MergeTable merges_;
  std::vector<HfAddedToken> added_;
  AddedTable raw_added_, normalized_added_;  // by first byte, longest first
  std::vector<Normalizer> normalizers_;
  std::vector<PreTokenizer> pre_tokenizers_;
  std::vector<Decoder> decoders_;
  std::vector<TemplateItem> single_, pair_;
  SpecialTokens specials_;
  std::string chat_template_;
  std::optional<std::int32_t> unk_id_;
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false, byte_level_ = false;
  std::array<std::int32_t, 256> byte_fallback_ids_{}, byte_char_ids_{};
  std::shared_ptr<const int> owner_;  // lifetime token keying each thread's word cache
};

}  // namespace fourierft::io
