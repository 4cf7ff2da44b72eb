// tests/process.hpp — running a program as a user would, for the end-to-end tests (run_examples,
// run_pretrain): its exit status and output, fresh output folders, files and log.jsonl records.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/io/json.hpp"

namespace fourierft::testing {

// The whole file as bytes ("" if it cannot be read).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Run {
  int status = -1;
  std::string output;  // stdout and stderr
};

// Runs `program args` (each argument single-quoted), its stdout and stderr going to `log`; returns
// the exit status (-1 if it did not exit normally) and the output.
inline Run run(const std::string& program, const std::vector<std::string>& args,
               const std::filesystem::path& log) {
  std::string command = "'" + program + "'";
  for (const std::string& a : args) command += " '" + a + "'";
  command += " > '" + log.string() + "' 2>&1";
  const int rc = std::system(command.c_str());
  Run r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.output = read_file(log);
  return r;
}

// a followed by b: common options plus one run's own.
inline std::vector<std::string> concat(std::vector<std::string> a,
                                       const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// root / name, emptied (or created): a test case's own output folder.
inline std::filesystem::path fresh_dir(const std::filesystem::path& root, const std::string& name) {
  const std::filesystem::path dir = root / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The records of a log.jsonl with the given "event".
inline std::vector<io::Json> events(const std::filesystem::path& log, const std::string& event) {
  std::vector<io::Json> out;
  std::istringstream lines(read_file(log));
  for (std::string line; std::getline(lines, line);) {
    const io::Json j = io::parse_json(line, log.string());
    if (j.at("event") == event) out.push_back(j);
  }
  return out;
}

}  // namespace fourierft::testing
