// fourierft/io/glue.hpp — GLUE readers (CoLA, SST-2, MRPC, STS-B, QNLI, RTE, MNLI) for the
// original GLUE TSV layouts and Hugging Face exports, told apart by the header; labels, metric.
#pragma once

// A file is tab-separated with no quoting (GLUE's loaders use quotechar=None), one row per line;
// a UTF-8 byte-order mark, CRLF line ends and a missing final newline are accepted. The columns
// are found by name in the header (first name found wins):
//   task   text_a                  text_b                 label
//   cola   sentence                -                      label
//          (GLUE's CoLA train and dev have no header: source, label, author's mark, sentence)
//   sst2   sentence, content       -                      label
//   mrpc   #1 String, sentence1    #2 String, sentence2   Quality, label
//   stsb   sentence1               sentence2              score, label (a float in [0, 5])
//   qnli   question                sentence               label
//   rte    sentence1               sentence2              label
//   mnli   sentence1, premise      sentence2, hypothesis  gold_label, label
// Labels are integers or the names of Hugging Face `datasets` (whose ids the HF exports carry):
//   cola unacceptable/acceptable, sst2 negative/positive, mrpc not_equivalent/equivalent,
//   qnli and rte entailment/not_entailment, mnli entailment/neutral/contradiction.
// A file without a label column, or whose labels are all -1 (HF's test exports), is unlabelled.
// MNLI matched and mismatched are two files of one layout (dev_matched.tsv, dev_mismatched.tsv).
// A malformed row (wrong field count, unknown label, bad score) is a FormatError naming the file
// and line, or, with OnError::skip, is counted and its message kept in GlueDataset::errors.

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"

namespace fourierft::io {

enum class GlueTask { cola, sst2, mrpc, stsb, qnli, rte, mnli };

struct GlueTaskSpec {
  GlueTask task;
  const char* name;
  std::vector<std::string> label_names;  // empty for STS-B (regression)
  const char* metric;  // "matthews_correlation", "accuracy", "accuracy_f1", "pearson_spearman"
  std::vector<std::string> text_a, text_b, label;  // header names, in order of preference
};

inline const GlueTaskSpec& glue_task_spec(GlueTask task) {
  // clang-format off
  static const std::vector<GlueTaskSpec> specs = {
      {GlueTask::cola, "cola", {"unacceptable", "acceptable"}, "matthews_correlation",
       {"sentence"}, {}, {"label"}},
      {GlueTask::sst2, "sst2", {"negative", "positive"}, "accuracy", {"sentence", "content"}, {},
       {"label"}},
      {GlueTask::mrpc, "mrpc", {"not_equivalent", "equivalent"}, "accuracy_f1",
       {"#1 String", "sentence1"}, {"#2 String", "sentence2"}, {"Quality", "label"}},
      {GlueTask::stsb, "stsb", {}, "pearson_spearman", {"sentence1"}, {"sentence2"},
       {"score", "label"}},
      {GlueTask::qnli, "qnli", {"entailment", "not_entailment"}, "accuracy", {"question"},
       {"sentence"}, {"label"}},
      {GlueTask::rte, "rte", {"entailment", "not_entailment"}, "accuracy", {"sentence1"},
       {"sentence2"}, {"label"}},
      {GlueTask::mnli, "mnli", {"entailment", "neutral", "contradiction"}, "accuracy",
       {"sentence1", "premise"}, {"sentence2", "hypothesis"}, {"gold_label", "label"}},
  };
  // clang-format on
  return specs[static_cast<std::size_t>(task)];
}

// "sst2", "SST-2", "sts-b", "mnli-mm", ... (case and '-' / '_' ignored; mnli-m/-mm are mnli).
inline GlueTask glue_task_from_name(std::string_view name) {
  std::string key;
  for (char c : name)
    if (c != '-' && c != '_') key += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (key == "mnlim" || key == "mnlimm" || key == "mnlimatched" || key == "mnlimismatched")
    key = "mnli";
  for (int t = 0; t <= static_cast<int>(GlueTask::mnli); ++t)
    if (key == glue_task_spec(static_cast<GlueTask>(t)).name) return static_cast<GlueTask>(t);
  throw ValueError(
      str_cat("unknown GLUE task '", name, "' (cola, sst2, mrpc, stsb, qnli, rte, mnli, mnli-mm)"));
}

struct GlueExample {
  std::string text_a;
  std::optional<std::string> text_b;  // pair tasks
  std::optional<std::int64_t> label;  // classification; nullopt when unlabelled
  std::optional<float> score;         // STS-B; nullopt when unlabelled
  Index line = 0;                     // 1-based line in the file
};

struct GlueDataset {
  GlueTask task = GlueTask::sst2;
  std::string path;
  std::string layout;    // how it was read: "header (label, sentence)", "GLUE CoLA, no header .."
  Index num_labels = 2;  // 1 for STS-B: regression, as HF's num_labels
  std::vector<std::string> label_names;
  std::string metric;
  bool labelled = false;
  std::vector<GlueExample> examples;
  Index skipped = 0;                // malformed rows left out (OnError::skip)
  std::vector<std::string> errors;  // their messages, "file:line: ..."
};

enum class OnError { raise, skip };

struct GlueReadOptions {
  OnError on_error = OnError::raise;
};

namespace detail {

inline std::vector<std::string_view> split_tabs(std::string_view row) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  for (;;) {
    const std::size_t tab = row.find('\t', start);
    fields.push_back(row.substr(start, tab == std::string_view::npos ? tab : tab - start));
    if (tab == std::string_view::npos) return fields;
    start = tab + 1;
  }
}

inline std::string join_names(const std::vector<std::string>& names, const char* sep) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : sep) + ("'" + n + "'");
  return out;
}

// The label or score of one row; `where` is "file:line".
struct ParsedLabel {
  std::optional<std::int64_t> label;
  std::optional<float> score;
  bool unlabelled = false;
};
inline ParsedLabel parse_glue_label(const GlueTaskSpec& spec, std::string_view field,
                                    const std::string& where) {
  ParsedLabel out;
  if (field == "-1") {  // HF's exports mark test rows so
    out.unlabelled = true;
    return out;
  }
  const std::string text(field);
  char* end = nullptr;
  if (spec.task == GlueTask::stsb) {
    const float v = std::strtof(text.c_str(), &end);
    check<FormatError>(!text.empty() && *end == '\0' && std::isfinite(v), where, ": score '", text,
                       "' is not a number");
    check<FormatError>(v >= 0.0f && v <= 5.0f, where, ": score ", text, " is outside [0, 5]");
    out.score = v;
    return out;
  }
  const long long v = std::strtoll(text.c_str(), &end, 10);
  const auto n = static_cast<long long>(spec.label_names.size());
  if (!text.empty() && *end == '\0' && v >= 0 && v < n) {
    out.label = v;
    return out;
  }
  for (long long i = 0; i < n; ++i)
    if (field == spec.label_names[static_cast<std::size_t>(i)]) {
      out.label = i;
      return out;
    }
  throw FormatError(str_cat(where, ": label '", text, "' is not one of 0..", n - 1, " or ",
                            join_names(spec.label_names, ", ")));
}

}  // namespace detail

// Reads one GLUE file of `task` (see the table at the top).
inline GlueDataset read_glue(const std::filesystem::path& path, GlueTask task,
                             const GlueReadOptions& options = {}) {
  const GlueTaskSpec& spec = glue_task_spec(task);
  GlueDataset data;
  data.task = task;
  data.path = path.string();
  data.label_names = spec.label_names;
  data.num_labels = spec.label_names.empty() ? 1 : static_cast<Index>(spec.label_names.size());
  data.metric = spec.metric;

  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(str_cat("cannot open '", data.path, "' for reading"));
  std::string row;
  Index line = 0;
  auto next_row = [&]() -> bool {
    if (!std::getline(in, row)) return false;
    ++line;
    if (line == 1 && row.starts_with("\xEF\xBB\xBF")) row.erase(0, 3);  // UTF-8 byte-order mark
    if (!row.empty() && row.back() == '\r') row.pop_back();
    return true;
  };
  check<FormatError>(next_row(), data.path, ": empty file, expected a ", spec.name, " TSV file");

  // Column positions from the header, or CoLA's headerless GLUE layout.
  Index n_fields = 0, col_a = -1, col_b = -1, col_label = -1;
  bool header = false;
  {
    const auto names = detail::split_tabs(row);
    auto find = [&](const std::vector<std::string>& wanted) -> Index {
      for (const auto& w : wanted)
        for (std::size_t i = 0; i < names.size(); ++i)
          if (names[i] == w) return static_cast<Index>(i);
      return -1;
    };
    col_a = find(spec.text_a);
    header = col_a >= 0;
    if (header) {
      n_fields = static_cast<Index>(names.size());
      col_b = find(spec.text_b);
      col_label = find(spec.label);
      check<FormatError>(spec.text_b.empty() || col_b >= 0, data.path, ":1: the header has no ",
                         detail::join_names(spec.text_b, " or "), " column for the second text");
      std::string cols;
      for (Index c : {col_label, col_a, col_b})
        if (c >= 0)
          cols += (cols.empty() ? "" : ", ") + std::string(names[static_cast<std::size_t>(c)]);
      data.layout = "header (" + cols + ")";
    } else {
      check<FormatError>(task == GlueTask::cola, data.path, ":1: expected a header with a ",
                         detail::join_names(spec.text_a, " or "), " column, got '", row, "'");
      n_fields = 4;  // source, label, author's mark, sentence
      col_label = 1;
      col_a = 3;
      data.layout = "GLUE CoLA, no header (source, label, mark, sentence)";
    }
  }
  data.labelled = col_label >= 0;

  bool any_labelled = false, any_unlabelled = false;
  bool have_row = header ? next_row() : true;
  for (; have_row; have_row = next_row()) {
    const std::string where = str_cat(data.path, ":", line);
    try {
      const auto fields = detail::split_tabs(row);
      check<FormatError>(static_cast<Index>(fields.size()) == n_fields, where, ": expected ",
                         n_fields, " tab-separated fields", header ? " (as the header)" : "",
                         ", found ", fields.size());
      GlueExample ex;
      ex.line = line;
      ex.text_a = fields[static_cast<std::size_t>(col_a)];
      if (col_b >= 0) ex.text_b = std::string(fields[static_cast<std::size_t>(col_b)]);
      if (col_label >= 0) {
        const auto parsed =
            detail::parse_glue_label(spec, fields[static_cast<std::size_t>(col_label)], where);
        check<FormatError>(!(parsed.unlabelled && any_labelled), where,
                           ": label -1 (unlabelled) but earlier rows have labels");
        check<FormatError>(parsed.unlabelled || !any_unlabelled, where,
                           ": a label, but earlier rows are unlabelled (-1)");
        (parsed.unlabelled ? any_unlabelled : any_labelled) = true;
        ex.label = parsed.label;
        ex.score = parsed.score;
      }
      data.examples.push_back(std::move(ex));
    } catch (const FormatError& e) {
      if (options.on_error == OnError::raise) throw;
      ++data.skipped;
      data.errors.push_back(e.what());
    }
  }
  check<IoError>(!in.bad(), "cannot read '", data.path, "'");
  if (any_unlabelled) data.labelled = false;
  return data;
}

inline GlueDataset read_glue(const std::filesystem::path& path, std::string_view task,
                             const GlueReadOptions& options = {}) {
  return read_glue(path, glue_task_from_name(task), options);
}

}  // namespace fourierft::io
