// fourierft/io/bpe_tokenizer.hpp — BpeTokenizer: GPT-2 / RoBERTa byte-level BPE from Hugging Face
// files (vocab.json + merges.txt, or tokenizer.json); templates, truncation, padding, id batches.
#pragma once

// How text becomes ids (OpenAI's encoder.py, which HF's GPT2Tokenizer / RobertaTokenizer copy):
//  1. Pre-tokenise with GPT-2's regex (PCRE2, UTF + UCP: \p{L} letters, \p{N} numbers, \s the
//     Unicode White_Space set, as Python's `regex` and HF's Oniguruma have it):
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     ("Hello  world" -> "Hello", " ", " world": a space run leaves its last space to the word).
//  2. Map each byte of a piece to one printable character (bytes_to_unicode: ' ' -> 'Ġ',
//     '\n' -> 'Ċ'), so the vocabulary covers every byte and nothing is ever unknown.
//  3. BPE: start from single bytes; repeatedly merge the adjacent pair of lowest rank (its line in
//     merges.txt) until no pair has a rank. Each final symbol is a vocab.json entry -> its id.
// Invalid UTF-8 (not valid per RFC 3629) cannot reach Python or HF, which take strings; here each
// such byte is pre-tokenised as a symbol (as U+FFFD would be) and encoded as itself, so decode()
// gives back the exact input bytes.
//
// Thread safety: every const member may be called from many threads at once. A BpeTokenizer is
// immutable after loading; the only mutable state is a word cache (pre-token -> ids, at most
// 100,000 words, then no more are added), and each thread keeps its own, so lookups take no lock
// and threads never contend (a shared, locked cache made two threads slower than one). A thread's
// cache lives until the thread ends or, once the tokenizer (and every copy of it) is gone, until
// that thread next encodes with any tokenizer.

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <queue>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/json.hpp"

namespace fourierft::io {

// Where the special tokens go. roberta: <s> A </s> and <s> A </s></s> B </s>. none (GPT-2): no
// tokens are added and a pair is A followed by B, as HF's GPT2Tokenizer does.
enum class Template { none, roberta };
// HF's truncation strategies; the limit counts the template's special tokens.
enum class Truncation { longest_first, only_first, only_second };
enum class Side { right, left };
// SpecialText::parse turns special-token strings written in the text ("<mask>") into their ids;
// plain (the default) encodes them as ordinary text, byte by byte.
enum class SpecialText { plain, parse };

struct EncodeOptions {
  bool add_special_tokens = true;  // the template above
  Index max_length = 0;            // 0: no truncation; else the longest result, specials included
  Truncation truncation = Truncation::longest_first;
  bool pad_to_max_length = false;  // batches: pad to max_length (HF "max_length"), else longest
  Side padding_side = Side::right;
  // Default: the tokenizer's <pad> (GPT-2 has none).
  std::optional<std::int64_t> pad_id = std::nullopt;
};

// A padded batch: ids and mask are (B, T) int64, as PyTorch's input_ids / attention_mask.
struct TokenBatch {
  Tensor<std::int64_t> input_ids;
  Tensor<std::int64_t> attention_mask;  // 1 for a token, 0 for padding
  std::vector<Index> lengths;           // tokens of each row before padding
};

// The ids HF's tokenizer classes call bos/eos/... ; absent ones are nullopt.
struct SpecialTokens {
  std::optional<std::int64_t> bos, eos, unk, pad, mask, cls, sep;
};

// HF's truncate_encodings: the lengths (n1, n2) that fit `limit` tokens (specials excluded).
// longest_first with a pair: keep the shorter whole if the longer can take the rest, else give
// each half (the second sequence gets the odd token). n2 < 0 means "no second sequence".
inline std::pair<Index, Index> truncated_lengths(Index n1, Index n2, Index limit,
                                                 Truncation strategy) {
  check(limit >= 0, "truncation: the limit must be >= 0, got ", limit);
  const bool pair = n2 >= 0;
  const Index total = n1 + (pair ? n2 : 0);
  if (total <= limit) return {n1, n2};
  const Index remove = total - limit;
  switch (strategy) {
    case Truncation::longest_first: {
      if (!pair) return {limit, n2};
      Index a = n1, b = n2;
      const bool swapped = a > b;
      if (swapped) std::swap(a, b);  // a: the shorter
      b = a > limit ? a : std::max(a, limit - a);
      if (a + b > limit) {
        a = limit / 2;
        b = a + limit % 2;
      }
      if (swapped) std::swap(a, b);
      return {a, b};
    }
    case Truncation::only_first:
      check(n1 > remove, "truncation only_first: the first sequence has ", n1, " tokens but ",
            remove, " must go");
      return {n1 - remove, n2};
    case Truncation::only_second:
      check(pair, "truncation only_second: there is no second sequence");
      check(n2 > remove, "truncation only_second: the second sequence has ", n2, " tokens but ",
            remove, " must go");
      return {n1, n2 - remove};
  }
  return {n1, n2};
}

// Pads rows of ids into a (B, T) batch; T = `length`, or the longest row when length is 0.
inline TokenBatch pad_batch(std::span<const std::vector<std::int64_t>> rows, std::int64_t pad_id,
                            Index length = 0, Side side = Side::right) {
  Index longest = 0;
  for (const auto& r : rows) longest = std::max(longest, static_cast<Index>(r.size()));
  const Index T = length > 0 ? length : longest;
  check(T >= longest, "pad_batch: a row has ", longest, " tokens, more than the length ", T);
  const Index B = static_cast<Index>(rows.size());
  TokenBatch batch{Tensor<std::int64_t>::full({B, T}, pad_id), Tensor<std::int64_t>({B, T}), {}};
  for (Index b = 0; b < B; ++b) {
    const auto& r = rows[static_cast<std::size_t>(b)];
    const Index n = static_cast<Index>(r.size()), start = side == Side::left ? T - n : 0;
    std::copy(r.begin(), r.end(), batch.input_ids.ptr() + b * T + start);
    std::fill_n(batch.attention_mask.ptr() + b * T + start, n, std::int64_t{1});
    batch.lengths.push_back(n);
  }
  return batch;
}

namespace detail {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for
// themselves; the other 68 bytes, in order, become U+0100, U+0101, ... (' ' -> 'Ġ' U+0120).
inline const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

inline void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Length of the valid UTF-8 sequence starting at s[i] (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF), or 0 if s[i] does not start one.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (at(k) & 0xC0) == 0x80; };
  const unsigned char c = at(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if ((c == 0xE0 && at(1) < 0xA0) || (c == 0xED && at(1) >= 0xA0)) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if ((c == 0xF0 && at(1) < 0x90) || (c == 0xF4 && at(1) >= 0x90)) return 0;
    return 4;
  }
  return 0;
}

// The code point of the valid n-byte sequence at s[i].
inline char32_t decode_utf8(std::string_view s, std::size_t i, std::size_t n) {
  static constexpr unsigned char lead_mask[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  char32_t c = static_cast<unsigned char>(s[i]) & lead_mask[n];
  for (std::size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return c;
}

// Offset of the first byte that does not start a valid sequence, or npos. ASCII runs 8 at a time.
inline std::size_t first_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    if (i + 8 <= s.size()) {
      std::uint64_t word;
      std::memcpy(&word, s.data() + i, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

// A compiled PCRE2 pattern (UTF + UCP, JIT-compiled when the library supports it).
class Regex {
 public:
  explicit Regex(const char* pattern, std::uint32_t options = 0) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | options, &error, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      throw ValueError(str_cat("regex '", pattern, "' does not compile at offset ", offset, ": ",
                               reinterpret_cast<const char*>(message)));
    }
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // without JIT support pcre2_match interprets
    code_.reset(code, pcre2_code_free);
  }
  // The next match in s at or after `from` (s must be valid UTF-8): {begin, end}, or nullopt.
  std::optional<std::pair<std::size_t, std::size_t>> find(std::string_view s, std::size_t from,
                                                          std::uint32_t options = 0) const {
    // Match data only holds the result offsets: one per thread serves every pattern.
    thread_local std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> data(
        pcre2_match_data_create(1, nullptr), pcre2_match_data_free);
    const auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
    int rc = pcre2_match(code_.get(), subject, s.size(), from, options | PCRE2_NO_UTF_CHECK,
                         data.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // a huge whitespace run: the interpreter uses the heap
      rc = pcre2_match(code_.get(), subject, s.size(), from,
                       options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) return std::nullopt;
    check(rc > 0, "regex match failed with PCRE2 error ", rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.get());
    return std::pair<std::size_t, std::size_t>{ov[0], ov[1]};
  }

 private:
  std::shared_ptr<pcre2_code> code_;
};

// A string hash that also takes string_views, so maps look keys up without a copy.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Token string -> id.
using TokenMap = std::unordered_map<std::string, std::int64_t, StringHash, std::equal_to<>>;

// Pre-token -> ids for one tokenizer in one thread (no locks); see "Thread safety" at the top.
struct WordCache {
  static constexpr std::size_t capacity = 100000;
  std::unordered_map<std::string, std::vector<std::int32_t>, StringHash, std::equal_to<>> words;
};

// This thread's cache for the tokenizer whose lifetime token is `owner`. Caches of tokenizers that
// are gone (expired tokens) are dropped first, so a reused address cannot find a stale cache.
inline WordCache& thread_word_cache(const std::shared_ptr<const int>& owner) {
  struct Entry {
    std::weak_ptr<const int> owner;
    const int* key;
    WordCache cache;
  };
  thread_local std::vector<std::unique_ptr<Entry>> caches;  // one per tokenizer used here: few
  std::erase_if(caches, [](const auto& e) { return e->owner.expired(); });
  for (const auto& e : caches)
    if (e->key == owner.get()) return e->cache;
  caches.push_back(std::make_unique<Entry>(Entry{owner, owner.get(), {}}));
  return caches.back()->cache;
}

// GPT-2's pre-tokenisation regex (see the top of this file); ByteLevel's use_regex in tokenizer.json.
inline constexpr const char* gpt2_split_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// True if the valid UTF-8 character c is Unicode White_Space (PCRE2's \s with UCP).
inline bool is_space_char(std::string_view c) {
  static const Regex space(R"(\s)", PCRE2_ANCHORED);
  const auto m = space.find(c, 0);
  return m && m->second == c.size();
}
// Bytes of whitespace at the end / start of a piece (invalid UTF-8 stops the run).
inline std::size_t trailing_space(std::string_view s) {
  std::size_t end = s.size();
  while (end > 0) {
    std::size_t begin = end - 1;
    while (begin > 0 && end - begin < 4 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80)
      --begin;
    if (utf8_sequence_length(s, begin) != end - begin ||
        !is_space_char(s.substr(begin, end - begin)))
      break;
    end = begin;
  }
  return s.size() - end;
}
inline std::size_t leading_space(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0 || !is_space_char(s.substr(i, n))) break;
    i += n;
  }
  return i;
}

// ---- BPE merges, shared by BpeTokenizer and HfTokenizer ----------------------------------------
struct BpeMerge {
  std::int32_t rank, id;  // rank: position in the merges list (lower merges first); id: result
};
inline std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
         static_cast<std::uint32_t>(b);
}
using MergeTable = std::unordered_map<std::uint64_t, BpeMerge>;  // (left id, right id) -> merge

// Adds the merge `left right` (ids from `lookup`: string_view -> optional id); every token and
// the result must be in the vocabulary. A repeated pair keeps its first (lowest) rank, as HF's
// BPE loader does.
template <class Lookup>
void add_merge(MergeTable& merges, const Lookup& lookup, std::string_view left,
               std::string_view right, const std::string& where) {
  const auto a = lookup(left), b = lookup(right);
  check<FormatError>(a.has_value(), where, ": '", left, "' is not in the vocabulary");
  check<FormatError>(b.has_value(), where, ": '", right, "' is not in the vocabulary");
  std::string joined(left);
  joined += right;
  const auto c = lookup(joined);
  check<FormatError>(c.has_value(), where, ": the merge result '", joined,
                     "' is not in the vocabulary");
  merges.try_emplace(pair_key(static_cast<std::int32_t>(*a), static_cast<std::int32_t>(*b)),
                     BpeMerge{static_cast<std::int32_t>(merges.size()),
                              static_cast<std::int32_t>(*c)});
}

// tokenizer.json's model.merges: "a b" strings or ["a", "b"] pairs (tokenizers >= 0.20); calls
// add(left, right, where) for each, where = "<source>: model.merges[i]".
template <class Add>
void for_each_json_merge(const Json& model, const std::string& source, const Add& add) {
  const auto it = model.find("merges");
  check<FormatError>(it != model.end(), source, ": key 'model.merges' is missing");
  const Json& merges = *it;
  check<FormatError>(merges.is_array(), source, ": key 'model.merges' should be an array");
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const Json& m = merges[i];
    const std::string where = str_cat(source, ": model.merges[", i, "]");
    if (m.is_string()) {
      const auto& s = m.get_ref<const std::string&>();
      const std::size_t space = s.find(' ');
      check<FormatError>(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
                         where, ": expected \"a b\", got \"", s, "\"");
      add(std::string_view(s).substr(0, space), std::string_view(s).substr(space + 1), where);
    } else {
      check<FormatError>(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                         where, ": expected \"a b\" or [\"a\", \"b\"], got ", json_excerpt(m));
      add(std::string_view(m[0].get_ref<const std::string&>()),
          std::string_view(m[1].get_ref<const std::string&>()), where);
    }
  }
}

// BPE of one word given as initial symbol ids: repeatedly merges the adjacent pair of lowest
// rank, as HF's Rust BPE does (a heap of candidate pairs ordered by (rank, position); stale
// candidates, a side already merged, are skipped). Returns the final symbol ids.
inline std::vector<std::int32_t> bpe_merge(std::vector<std::int32_t> sym, const MergeTable& merges) {
  const auto n = static_cast<std::int32_t>(sym.size());
  if (n < 2) return sym;
  std::vector<std::int32_t> prev(sym.size()), next(sym.size());
  for (std::int32_t i = 0; i < n; ++i) {
    prev[static_cast<std::size_t>(i)] = i - 1;
    next[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    std::int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](std::int32_t pos) {
    const std::int32_t r = next[static_cast<std::size_t>(pos)];
    if (r < 0) return;
    const std::int32_t a = sym[static_cast<std::size_t>(pos)], b = sym[static_cast<std::size_t>(r)];
    const auto it = merges.find(pair_key(a, b));
    if (it != merges.end()) heap.push({it->second.rank, pos, a, b, it->second.id});
  };
  for (std::int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const auto p = static_cast<std::size_t>(c.pos);
    const std::int32_t r = next[p];
    if (sym[p] != c.left || r < 0 || sym[static_cast<std::size_t>(r)] != c.right) continue;
    sym[p] = c.merged;  // symbol p absorbs r
    sym[static_cast<std::size_t>(r)] = -1;
    next[p] = next[static_cast<std::size_t>(r)];
    if (next[p] >= 0) prev[static_cast<std::size_t>(next[p])] = c.pos;
    if (prev[p] >= 0) push(prev[p]);
    push(c.pos);
  }
  std::vector<std::int32_t> result;
  for (std::int32_t i = 0; i >= 0; i = next[static_cast<std::size_t>(i)])
    result.push_back(sym[static_cast<std::size_t>(i)]);
  return result;
}

// id -> token string, with gaps (RoBERTa leaves ids 50261..50263 unused).
struct IdTable {
  std::vector<std::string> tokens;  // "" for unused ids
  std::vector<bool> present;

  Index size() const { return static_cast<Index>(tokens.size()); }  // largest id + 1
  bool has(std::int64_t id) const {
    return id >= 0 && id < size() && present[static_cast<std::size_t>(id)];
  }
  // Ids stay below this. Loaders lower it to the file's token count plus room for gaps
  // (expect_tokens), so a 23 KB vocab.json cannot claim id 2^26 and make this table take 4 GB.
  std::int64_t id_limit = std::int64_t{1} << 30;
  static constexpr std::int64_t id_gap_allowance = 65536;
  void expect_tokens(std::size_t tokens_in_file) {
    id_limit = std::min<std::int64_t>(std::int64_t{1} << 30,
                                      static_cast<std::int64_t>(tokens_in_file) + id_gap_allowance);
  }
  // Puts `token` at a free id; `where` starts the messages ("vocab.json").
  void add(const std::string& token, std::int64_t id, const std::string& where) {
    check<FormatError>(id >= 0 && id < (std::int64_t{1} << 30), where, ": token '", token,
                       "' has id ", id, ", expected a non-negative integer below 2^30");
    check<FormatError>(id < id_limit, where, ": token '", token, "' has id ", id,
                       ", but the file lists only ", id_limit - id_gap_allowance,
                       " tokens (ids must be below ", id_limit, ")");
    const auto k = static_cast<std::size_t>(id);
    if (k >= tokens.size()) {
      tokens.resize(k + 1);
      present.resize(k + 1, false);
    }
    check<FormatError>(!present[k], where, ": id ", id, " is given to both '", tokens[k],
                       "' and '", token, "'");
    present[k] = true;
    tokens[k] = token;
  }
  // IndexError unless the id is in the table; `what` names the caller, `source` the file.
  void check_id(std::int64_t id, const char* what, const std::string& source) const {
    check<IndexError>(has(id), what, ": id ", id, " is not in the vocabulary (ids 0..", size() - 1,
                      " of ", source, ")");
  }
};

inline std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(str_cat("cannot open '", path.string(), "' for reading"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(str_cat("cannot read '", path.string(), "'"));
  return text.str();
}

}  // namespace detail

class BpeTokenizer {
 public:
  // vocab.json ({"token": id}) and merges.txt ("#version" line, then one "a b" merge per line,
  // ranked by order). Special tokens follow HF's classes: a vocabulary with <s> and </s> is
  // RoBERTa's (<s> <pad> </s> <unk> <mask>, roberta template), otherwise GPT-2's (<|endoftext|>).
  static BpeTokenizer from_files(const std::filesystem::path& vocab_json,
                                 const std::filesystem::path& merges_txt) {
    BpeTokenizer t;
    t.load_vocab(read_json(vocab_json), vocab_json.string());
    t.load_merges_txt(merges_txt);
    t.set_default_specials();
    t.finish();
    return t;
  }
  // tokenizer.json (HF `tokenizers`): model.type "BPE" with vocab and merges ("a b" strings or
  // ["a", "b"] pairs), a ByteLevel pre-tokenizer, added_tokens (those marked special are the
  // special tokens, lstrip / rstrip honoured; ones missing from model.vocab are added), and
  // post_processor RobertaProcessing (roberta template), ByteLevel or null (no template).
  static BpeTokenizer from_tokenizer_json(const std::filesystem::path& path) {
    BpeTokenizer t;
    const std::string source = path.string();
    const JsonObject root(read_json(path), source);
    const auto model = root.get<JsonObject>("model");
    const auto type = model.get<std::string>("type");
    check<FormatError>(type == "BPE", source, ": model.type is '", type,
                       "' but only 'BPE' is supported");
    const auto added = root.json().find("added_tokens");
    t.load_vocab(model.get<JsonObject>("vocab").json(), source + " (model.vocab)",
                 added != root.json().end() && added->is_array() ? added->size() : 0);
    t.load_merges_json(model, source);
    if (root.has("pre_tokenizer")) {
      const auto pre = root.get<JsonObject>("pre_tokenizer");
      const auto pre_type = pre.get<std::string>("type");
      check<FormatError>(pre_type == "ByteLevel", source, ": pre_tokenizer.type is '", pre_type,
                         "' but a byte-level BPE needs 'ByteLevel'");
      t.add_prefix_space_ = pre.get_or<bool>("add_prefix_space", false);
    }
    t.template_ = Template::none;
    if (root.has("post_processor")) {
      const auto post = root.get<JsonObject>("post_processor");
      const auto post_type = post.get<std::string>("type");
      if (post_type == "RobertaProcessing") {
        t.template_ = Template::roberta;
        t.specials_.cls = t.specials_.bos = t.id_of_pair(post, "cls");
        t.specials_.sep = t.specials_.eos = t.id_of_pair(post, "sep");
      } else {
        check<FormatError>(post_type == "ByteLevel", source, ": post_processor.type is '",
                           post_type,
                           "' but only RobertaProcessing, ByteLevel or null are supported");
      }
    }
    if (root.has("added_tokens")) {
      for (const Json& a : root.json().at("added_tokens")) {
        const JsonObject tok(a, source, "added_tokens[]");
        const auto content = tok.get<std::string>("content");
        const auto id = tok.get<std::int64_t>("id");
        if (const auto known = t.token_id(content))
          check<FormatError>(*known == id, source, ": added token '", content, "' has id ", id,
                             " but model.vocab gives it ", *known);
        else
          t.add_token(content, id, source);  // added after training, beyond model.vocab
        if (tok.get_or<bool>("special", false))
          t.special_list_.push_back(
              {content, id, tok.get_or<bool>("lstrip", false), tok.get_or<bool>("rstrip", false)});
      }
    }
    t.assign_named_specials();
    t.finish();
    return t;
  }
  // A model folder: tokenizer.json if present, else vocab.json + merges.txt.
  static BpeTokenizer load(const std::filesystem::path& dir) {
    if (std::filesystem::exists(dir / "tokenizer.json"))
      return from_tokenizer_json(dir / "tokenizer.json");
    check<IoError>(
        std::filesystem::exists(dir / "vocab.json") && std::filesystem::exists(dir / "merges.txt"),
        dir.string(), ": no tokenizer.json, and no vocab.json + merges.txt");
    return from_files(dir / "vocab.json", dir / "merges.txt");
  }

  // ---- plain text <-> ids --------------------------------------------------------------------
  // Ids of `text`; no template. Special-token strings in the text are plain text unless `parse`.
  std::vector<std::int64_t> encode(std::string_view text,
                                   SpecialText special = SpecialText::plain) const {
    std::vector<std::int64_t> ids;
    if (special == SpecialText::plain) {
      encode_append(text, ids);
      return ids;
    }
    // Split at special-token strings (earliest first, then longest); lstrip / rstrip tokens
    // swallow the whitespace beside them (RoBERTa's <mask> takes the spaces on its left).
    std::size_t pos = 0;
    while (pos <= text.size()) {
      std::size_t best = std::string_view::npos;
      const Special* found = nullptr;
      for (const Special& s : special_list_) {
        const std::size_t at = text.find(s.content, pos);
        if (at != std::string_view::npos &&
            (at < best || (at == best && s.content.size() > found->content.size()))) {
          best = at;
          found = &s;
        }
      }
      std::string_view piece = text.substr(pos, found ? best - pos : std::string_view::npos);
      if (found && found->lstrip) piece = piece.substr(0, piece.size() - detail::trailing_space(piece));
      encode_append(piece, ids);
      if (!found) break;
      ids.push_back(found->id);
      pos = best + found->content.size();
      if (found->rstrip) pos += detail::leading_space(text.substr(pos));
    }
    return ids;
  }
  // BPE token strings (vocab.json keys, bytes shown as in bytes_to_unicode: "Ġworld").
  std::vector<std::string> tokenize(std::string_view text) const {
    std::vector<std::string> tokens;
    for (std::int64_t id : encode(text)) tokens.push_back(id_to_token(id));
    return tokens;
  }
  // The bytes the ids stand for; special tokens give their text ("<s>") unless skipped.
  std::string decode(std::span<const std::int64_t> ids, bool skip_special = false) const {
    std::string out;
    for (std::int64_t id : ids) {
      check_id(id, "decode");
      if (skip_special && is_special(id)) continue;
      out += id_bytes_[static_cast<std::size_t>(id)];
    }
    return out;
  }

  // ---- model inputs ---------------------------------------------------------------------------
  // Encode, truncate (HF's strategies, keeping the head of each sequence), add the template.
  std::vector<std::int64_t> encode_for_model(std::string_view a,
                                             const EncodeOptions& options = {}) const {
    return build(encode(a), std::nullopt, options);
  }
  std::vector<std::int64_t> encode_for_model(std::string_view a, std::string_view b,
                                             const EncodeOptions& options = {}) const {
    return build(encode(a), encode(b), options);
  }
  // encode_for_model of many texts (or pairs: b empty or of a's size), in parallel (OpenMP) when
  // there are many: for tokenising a whole dataset up front.
  std::vector<std::vector<std::int64_t>> encode_many(std::span<const std::string> a,
                                                     std::span<const std::string> b = {},
                                                     const EncodeOptions& options = {}) const {
    check(b.empty() || b.size() == a.size(), "encode_many: ", a.size(), " first texts but ",
          b.size(), " second texts");
    std::vector<std::vector<std::int64_t>> rows(a.size());
    const auto n = static_cast<std::int64_t>(a.size());
#pragma omp parallel for schedule(dynamic, 64) if (n >= 1024)
    for (std::int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<std::size_t>(i);
      rows[k] = b.empty() ? encode_for_model(a[k], options) : encode_for_model(a[k], b[k], options);
    }
    return rows;
  }
  // A padded (B, T) batch of texts or pairs: encode_many, then pad_batch with the options' side,
  // pad id and length (max_length if pad_to_max_length, else the longest row).
  TokenBatch encode_batch(std::span<const std::string> a, std::span<const std::string> b = {},
                          const EncodeOptions& options = {}) const {
    check(b.empty() || b.size() == a.size(), "encode_batch: ", a.size(), " first texts but ",
          b.size(), " second texts");
    const std::int64_t pad = pad_id_for(options);
    return pad_batch(encode_many(a, b, options), pad,
                     options.pad_to_max_length ? options.max_length : 0, options.padding_side);
  }

  // ---- vocabulary ------------------------------------------------------------------------------
  // Largest id + 1: the embedding rows the ids index (RoBERTa: 50265; ids 50261..50263 are unused).
  Index vocab_size() const { return ids_.size(); }
  std::optional<std::int64_t> token_id(std::string_view token) const {
    const auto it = token_to_id_.find(token);
    if (it == token_to_id_.end()) return std::nullopt;
    return it->second;
  }
  const std::string& id_to_token(std::int64_t id) const {
    check_id(id, "id_to_token");
    return ids_.tokens[static_cast<std::size_t>(id)];
  }
  bool is_special(std::int64_t id) const {
    return std::any_of(special_list_.begin(), special_list_.end(),
                       [&](const Special& s) { return s.id == id; });
  }
  const SpecialTokens& special_tokens() const { return specials_; }
  Template template_kind() const { return template_; }
  // Special tokens a template adds: single (0 or 2) and pair (0 or 4).
  Index num_special_tokens(bool pair) const {
    return template_ == Template::roberta ? (pair ? 4 : 2) : 0;
  }

 private:
  struct Special {
    std::string content;
    std::int64_t id;
    bool lstrip = false, rstrip = false;
  };

  BpeTokenizer() = default;


  // ---- loading ---------------------------------------------------------------------------------
  // `extra_tokens`: tokens the file adds elsewhere (tokenizer.json's added_tokens), for the id bound.
  void load_vocab(const Json& vocab, const std::string& source, std::size_t extra_tokens = 0) {
    check<FormatError>(vocab.is_object(), source, ": expected a JSON object {\"token\": id}");
    ids_.expect_tokens(vocab.size() + extra_tokens);
    for (const auto& item : vocab.items()) {
      check<FormatError>(item.value().is_number_integer(), source, ": token '", item.key(),
                         "' has id ", json_excerpt(item.value()),
                         ", expected a non-negative integer");
      add_token(item.key(), item.value().get<std::int64_t>(), source);
    }
    // Each of the 256 byte symbols must be a token: that is what makes every input encodable.
    for (int b = 0; b < 256; ++b) {
      std::string symbol;
      detail::append_utf8(symbol, detail::byte_to_unicode()[static_cast<std::size_t>(b)]);
      const auto id = token_id(symbol);
      check<FormatError>(id.has_value(), source, ": the byte-level token '", symbol, "' for byte ",
                         b, " is missing, so this is not a byte-level vocabulary");
      byte_ids_[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(*id);
    }
    source_ = source;
  }
  // Adds token <-> id; the id must be free.
  void add_token(const std::string& token, std::int64_t id, const std::string& source) {
    ids_.add(token, id, source);
    token_to_id_.emplace(token, id);
  }
  void add_merge(std::string_view left, std::string_view right, const std::string& where) {
    detail::add_merge(merges_, [this](std::string_view t) { return token_id(t); }, left, right,
                      where);
  }
  void load_merges_txt(const std::filesystem::path& path) {
    const std::string text = detail::read_text_file(path);
    std::size_t line_start = 0;
    for (Index line = 1; line_start < text.size(); ++line) {
      std::size_t end = text.find('\n', line_start);
      if (end == std::string::npos) end = text.size();
      std::string_view row(text.data() + line_start, end - line_start);
      line_start = end + 1;
      if (!row.empty() && row.back() == '\r') row.remove_suffix(1);
      if (line == 1 && row.starts_with("#version")) continue;
      const std::string where = str_cat(path.string(), ":", line);
      const std::size_t space = row.find(' ');
      check<FormatError>(space != std::string_view::npos && space > 0 && space + 1 < row.size() &&
                             row.find(' ', space + 1) == std::string_view::npos,
                         where, ": expected two tokens separated by one space, got '", row, "'");
      add_merge(row.substr(0, space), row.substr(space + 1), where);
    }
  }
  void load_merges_json(const JsonObject& model, const std::string& source) {
    detail::for_each_json_merge(
        model.json(), source,
        [this](std::string_view a, std::string_view b, const std::string& where) {
          add_merge(a, b, where);
        });
  }
  std::int64_t id_of_pair(const JsonObject& post, const char* key) const {
    check<FormatError>(post.has(key), post.source(), ": post_processor.", key, " is missing");
    const Json& v = post.json().at(key);  // ["<s>", 0]
    check<FormatError>(
        v.is_array() && v.size() == 2 && v[0].is_string() && v[1].is_number_integer(),
        post.source(), ": post_processor.", key, " should be [\"token\", id]");
    return v[1].get<std::int64_t>();
  }
  void set_default_specials() {
    const bool roberta = token_id("<s>") && token_id("</s>");
    template_ = roberta ? Template::roberta : Template::none;
    const std::vector<const char*> names =
        roberta ? std::vector<const char*>{"<s>", "<pad>", "</s>", "<unk>", "<mask>"}
                : std::vector<const char*>{"<|endoftext|>"};
    for (const char* name : names)
      if (const auto id = token_id(name))
        special_list_.push_back({name, *id, std::string_view(name) == "<mask>", false});
    assign_named_specials();
  }
  // bos/eos/... by the names HF's GPT2Tokenizer and RobertaTokenizer use.
  void assign_named_specials() {
    auto find = [&](const char* name) -> std::optional<std::int64_t> {
      for (const Special& s : special_list_)
        if (s.content == name) return s.id;
      return std::nullopt;
    };
    if (template_ == Template::roberta || find("<s>")) {
      if (!specials_.bos) specials_.bos = specials_.cls = find("<s>");
      if (!specials_.eos) specials_.eos = specials_.sep = find("</s>");
      specials_.pad = find("<pad>");
      specials_.unk = find("<unk>");
      specials_.mask = find("<mask>");
    } else {
      specials_.bos = specials_.eos = specials_.unk = find("<|endoftext|>");
    }
    check<FormatError>(template_ != Template::roberta || (specials_.cls && specials_.sep), source_,
                       ": the roberta template needs <s> and </s>");
  }
  void finish() {
    id_bytes_.resize(ids_.tokens.size());
    std::unordered_map<char32_t, unsigned char> unicode_to_byte;
    for (int b = 0; b < 256; ++b)
      unicode_to_byte[detail::byte_to_unicode()[static_cast<std::size_t>(b)]] =
          static_cast<unsigned char>(b);
    for (std::size_t id = 0; id < ids_.tokens.size(); ++id) {
      if (!ids_.present[id]) continue;
      const std::string& token = ids_.tokens[id];
      if (is_special(static_cast<std::int64_t>(id))) {
        id_bytes_[id] = token;
        continue;
      }
      // Byte-level token: each character stands for one byte.
      std::string bytes;
      for (std::size_t i = 0; i < token.size();) {
        const std::size_t n = detail::utf8_sequence_length(token, i);
        const auto it =
            n == 0 ? unicode_to_byte.end() : unicode_to_byte.find(detail::decode_utf8(token, i, n));
        check<FormatError>(it != unicode_to_byte.end(), source_, ": token '", token, "' (id ", id,
                           ") has a character outside the byte-level alphabet");
        bytes += static_cast<char>(it->second);
        i += n;
      }
      id_bytes_[id] = std::move(bytes);
    }
    owner_ = std::make_shared<const int>(0);
  }

  // ---- encoding --------------------------------------------------------------------------------
  static const detail::Regex& pretokenizer() {
    static const detail::Regex regex(detail::gpt2_split_pattern);
    return regex;
  }

  void encode_append(std::string_view text, std::vector<std::int64_t>& ids) const {
    detail::WordCache& cache = detail::thread_word_cache(owner_);
    std::string prefixed;
    if (add_prefix_space_ && !text.empty() && detail::leading_space(text) == 0) {
      prefixed = " ";
      prefixed += text;
      text = prefixed;
    }
    if (detail::first_invalid_utf8(text) == std::string_view::npos) {
      std::size_t pos = 0;
      while (pos < text.size()) {
        const auto m = pretokenizer().find(text, pos);
        // Every character is \s, \p{L}, \p{N} or none of them, so matches tile the text.
        const std::size_t end = m ? m->second : text.size();
        encode_word(text.substr(pos, end - pos), cache, ids);
        pos = end;
      }
      return;
    }
    // Invalid UTF-8: run the regex on a copy where each invalid byte is U+FFFD, and map the
    // pieces back to the original bytes.
    std::string clean;
    std::vector<std::size_t> original;  // original offset of each byte of `clean`, plus the end
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = detail::utf8_sequence_length(text, i);
      if (n == 0) {
        clean += "\xEF\xBF\xBD";
        original.insert(original.end(), 3, i);
        ++i;
      } else {
        clean.append(text, i, n);
        for (std::size_t k = 0; k < n; ++k) original.push_back(i + k);
        i += n;
      }
    }
    original.push_back(text.size());
    std::size_t pos = 0;
    while (pos < clean.size()) {
      const auto m = pretokenizer().find(clean, pos);
      const std::size_t end = m ? m->second : clean.size();
      encode_word(text.substr(original[pos], original[end] - original[pos]), cache, ids);
      pos = end;
    }
  }

  // BPE of one pre-token (detail::bpe_merge from its bytes), through the cache.
  void encode_word(std::string_view word, detail::WordCache& cache,
                   std::vector<std::int64_t>& ids) const {
    if (word.empty()) return;
    if (const auto it = cache.words.find(word); it != cache.words.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
    std::vector<std::int32_t> sym(word.size());
    for (std::size_t i = 0; i < word.size(); ++i)
      sym[i] = byte_ids_[static_cast<unsigned char>(word[i])];
    std::vector<std::int32_t> result = detail::bpe_merge(std::move(sym), merges_);
    ids.insert(ids.end(), result.begin(), result.end());
    if (cache.words.size() < detail::WordCache::capacity)
      cache.words.emplace(word, std::move(result));
  }

  // Truncate (keeping the head of each sequence), then add the template.
  std::vector<std::int64_t> build(std::vector<std::int64_t> a,
                                  std::optional<std::vector<std::int64_t>> b,
                                  const EncodeOptions& options) const {
    const bool add = options.add_special_tokens && template_ == Template::roberta;
    if (options.max_length > 0) {
      const Index specials = add ? num_special_tokens(b.has_value()) : 0;
      check(options.max_length >= specials, "encode: max_length ", options.max_length,
            " leaves no room for the ", specials, " special tokens");
      const auto [n1, n2] =
          truncated_lengths(static_cast<Index>(a.size()), b ? static_cast<Index>(b->size()) : -1,
                            options.max_length - specials, options.truncation);
      a.resize(static_cast<std::size_t>(n1));
      if (b) b->resize(static_cast<std::size_t>(n2));
    }
    if (!add) {
      if (b) a.insert(a.end(), b->begin(), b->end());
      return a;
    }
    std::vector<std::int64_t> out{*specials_.cls};  // <s> A </s>  or  <s> A </s></s> B </s>
    out.insert(out.end(), a.begin(), a.end());
    out.push_back(*specials_.sep);
    if (b) {
      out.push_back(*specials_.sep);
      out.insert(out.end(), b->begin(), b->end());
      out.push_back(*specials_.sep);
    }
    return out;
  }
  std::int64_t pad_id_for(const EncodeOptions& options) const {
    if (options.pad_id) return *options.pad_id;
    check(specials_.pad.has_value(), "encode_batch: this tokenizer has no <pad> token (GPT-2); ",
          "set EncodeOptions::pad_id");
    return *specials_.pad;
  }
  void check_id(std::int64_t id, const char* what) const {
    ids_.check_id(id, what, source_);
  }

  std::string source_;  // vocab file, for messages
  detail::TokenMap token_to_id_;
  detail::IdTable ids_;                 // id -> vocab.json key
  std::vector<std::string> id_bytes_;   // id -> the bytes it decodes to
  std::array<std::int32_t, 256> byte_ids_{};
  detail::MergeTable merges_;  // (left id, right id) -> rank, merged id
  std::vector<Special> special_list_;
  SpecialTokens specials_;
  Template template_ = Template::none;
  bool add_prefix_space_ = false;
  std::shared_ptr<const int> owner_;  // lifetime token keying each thread's word cache
};

}  // namespace fourierft::io
