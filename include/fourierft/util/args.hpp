// fourierft/util/args.hpp — the small command-line parser shared by the CLI and example programs.
// Options are `--name value` or `--name=value`; flags are `--name`; the rest are positionals.
#pragma once

#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"

namespace fourierft::util {

class Args {
 public:
  // `flags` lists the options that take no value (e.g. {"--pair", "--help"}).
  Args(std::vector<std::string> argv, std::set<std::string> flags = {}) {
    for (std::size_t i = 0; i < argv.size(); ++i) {
      const std::string& a = argv[i];
      if (a.rfind("--", 0) != 0 || a == "--") {
        positional_.push_back(a);
        continue;
      }
      if (const auto eq = a.find('='); eq != std::string::npos) {
        values_[a.substr(0, eq)] = a.substr(eq + 1);
      } else if (flags.count(a)) {
        values_[a] = "1";
      } else {
        check(i + 1 < argv.size(), "option ", a, " needs a value");
        values_[a] = argv[++i];
      }
    }
  }
  Args(int argc, char** argv, std::set<std::string> flags = {})
      : Args(std::vector<std::string>(argv + 1, argv + argc), std::move(flags)) {}

  bool has(const std::string& name) { return used(name).has_value(); }
  std::string str(const std::string& name, std::optional<std::string> fallback = std::nullopt) {
    if (auto v = used(name)) return *v;
    check(fallback.has_value(), "missing required option ", name);
    return *fallback;
  }
  long long integer(const std::string& name, std::optional<long long> fallback = std::nullopt) {
    auto v = used(name);
    if (!v) {
      check(fallback.has_value(), "missing required option ", name);
      return *fallback;
    }
    char* end = nullptr;
    const long long x = std::strtoll(v->c_str(), &end, 10);
    check(end != v->c_str() && *end == '\0', "option ", name, " expects a whole number, got '", *v,
          "'");
    return x;
  }
  double real(const std::string& name, std::optional<double> fallback = std::nullopt) {
    auto v = used(name);
    if (!v) {
      check(fallback.has_value(), "missing required option ", name);
      return *fallback;
    }
    char* end = nullptr;
    const double x = std::strtod(v->c_str(), &end);
    check(end != v->c_str() && *end == '\0', "option ", name, " expects a number, got '", *v, "'");
    return x;
  }
  const std::vector<std::string>& positional() const { return positional_; }
  // Call after reading every option: an option nobody asked for is a typo, and an error.
  void reject_unknown() const {
    for (const auto& [name, value] : values_)
      check(consumed_.count(name), "unknown option ", name);
  }

 private:
  std::optional<std::string> used(const std::string& name) {
    consumed_.insert(name);
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  std::map<std::string, std::string> values_;
  std::set<std::string> consumed_;
  std::vector<std::string> positional_;
};

}  // namespace fourierft::util
