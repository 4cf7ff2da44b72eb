// fourierft/metrics/text.hpp — the small text toolkit the generation metrics share: UTF-8 code
// points, Unicode-aware lowercase and whitespace, Python's str.strip(), reading text files by line.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"

namespace fourierft::metrics::text {

// UTF-8 -> code points. A malformed byte becomes U+FFFD, as a lenient decoder would.
inline std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const int len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    char32_t c = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      const auto cont = static_cast<unsigned char>(s[i + k]);
      ok = ok && (cont >> 6) == 0x2;
      c = (c << 6) | (cont & 0x3F);
    }
    out.push_back(ok ? c : char32_t{0xFFFD});
    i += ok ? len : 1;
  }
  return out;
}

inline std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) {
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
  return out;
}

// Whitespace as Python's str.split()/strip() and Java's \s-with-Unicode see it.
inline bool is_space(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F) || c == 0x85 ||
         c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

inline bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }

// Lowercase for the scripts E2E-style text uses: ASCII, Latin-1, Latin Extended-A, Greek,
// Cyrillic (what Java's String.toLowerCase does for them; other code points are unchanged).
inline char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x178) return 0xFF;
    if (c == 0x138 || c == 0x149 || c == 0x17F) return c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

inline std::u32string to_lower(std::u32string s) {
  for (char32_t& c : s) c = to_lower(c);
  return s;
}
inline std::string to_lower(std::string_view s) {
  return encode_utf8(to_lower(decode_utf8(s)));
}

// Python's str.strip(): drops leading and trailing Unicode whitespace.
inline std::string strip(std::string_view s) {
  std::u32string u = decode_utf8(s);
  std::size_t b = 0, e = u.size();
  while (b < e && is_space(u[b])) ++b;
  while (e > b && is_space(u[e - 1])) --e;
  return encode_utf8(std::u32string_view(u).substr(b, e - b));
}

// Python's str.split() with no argument: runs of whitespace separate, no empty pieces.
inline std::vector<std::string> split_whitespace(std::string_view s) {
  std::vector<std::string> out;
  std::u32string u = decode_utf8(s), cur;
  for (char32_t c : u) {
    if (is_space(c)) {
      if (!cur.empty()) out.push_back(encode_utf8(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(encode_utf8(cur));
  return out;
}

// All lines of a text file as Python's universal newlines reads them (\n, \r\n, \r), without
// their ends; a UTF-8 byte-order mark at the start is dropped. A missing file is an IoError.
inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check<IoError>(in.good(), path, ": cannot open file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string data = buffer.str();
  if (data.rfind("\xEF\xBB\xBF", 0) == 0) data.erase(0, 3);
  std::vector<std::string> lines;
  std::string cur;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (c == '\n' || c == '\r') {
      lines.push_back(cur);
      cur.clear();
      if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') ++i;
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  return lines;
}

}  // namespace fourierft::metrics::text
