// Tests of include/fourierft/metrics and the score-e2e subcommand. Reference values live in
// tests/fixtures/metrics/*_reference.json, made by scripts/make_metric_fixtures.sh with sklearn /
// scipy (GLUE) and the E2E scorer's own code (mteval-v13a.pl, pycocoevalcap, METEOR 1.5 classes).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../examples/cli/cmd_score_e2e.hpp"
#include "fourierft/metrics/classification.hpp"
#include "fourierft/metrics/generation.hpp"

using namespace fourierft;
using namespace fourierft::metrics;

namespace {

const std::string fixtures = std::string(FOURIERFT_FIXTURES_DIR) + "/metrics/";

nlohmann::json load_json(const std::string& name) {
  std::ifstream in(fixtures + name);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

std::vector<std::int64_t> ints(const nlohmann::json& j) { return j.get<std::vector<std::int64_t>>(); }
std::vector<double> reals(const nlohmann::json& j) { return j.get<std::vector<double>>(); }

// The pre-tokenised files hold what coco_tokenize produced when the references were made.
std::vector<std::string> tok_hyps(const std::string& name) {
  std::vector<std::string> out;
  for (const auto& l : text::read_lines(fixtures + name + "_hyps.tok")) out.push_back(l);
  return out;
}
std::vector<std::vector<std::string>> tok_refs(const std::string& name) {
  std::vector<std::vector<std::string>> groups(1);
  for (const auto& l : text::read_lines(fixtures + name + "_refs.tok")) {
    if (l.empty()) groups.emplace_back();
    else groups.back().push_back(l);
  }
  if (groups.back().empty()) groups.pop_back();
  return groups;
}

std::string write_temp(const std::string& name, const std::string& content) {
  const std::string path = std::string(FOURIERFT_BINARY_DIR) + "/test_metrics_" + name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// GLUE metrics against sklearn / scipy.

TEST_CASE("accuracy, F1 and Matthews correlation match sklearn") {
  const auto ref = load_json("glue_reference.json");
  const auto& b = ref["binary"];
  const auto pred = ints(b["pred"]), label = ints(b["label"]);
  CHECK(accuracy(pred, label) == doctest::Approx(b["accuracy"].get<double>()).epsilon(1e-12));
  CHECK(f1_binary(pred, label) == doctest::Approx(b["f1"].get<double>()).epsilon(1e-12));
  CHECK(matthews_corrcoef(pred, label) == doctest::Approx(b["mcc"].get<double>()).epsilon(1e-12));

  const auto& m = ref["multiclass"];
  CHECK(accuracy(ints(m["pred"]), ints(m["label"])) ==
        doctest::Approx(m["accuracy"].get<double>()).epsilon(1e-12));
  CHECK(matthews_corrcoef(ints(m["pred"]), ints(m["label"])) ==
        doctest::Approx(m["mcc"].get<double>()).epsilon(1e-12));
}

TEST_CASE("degenerate cases: one predicted class gives MCC 0, no positives give F1 0") {
  const auto ref = load_json("glue_reference.json");
  const auto& one = ref["all_one_class"];
  CHECK(one["mcc"].get<double>() == 0.0);
  CHECK(matthews_corrcoef(ints(one["pred"]), ints(one["label"])) == 0.0);
  CHECK(f1_binary(ints(one["pred"]), ints(one["label"])) ==
        doctest::Approx(one["f1"].get<double>()).epsilon(1e-12));
  const auto& none = ref["no_positive"];
  CHECK(f1_binary(ints(none["pred"]), ints(none["label"])) == none["f1"].get<double>());
  const std::vector<double> constant = {2, 2, 2}, varying = {1, 2, 3};
  CHECK(std::isnan(pearson(constant, varying)));
}

TEST_CASE("Pearson and Spearman (average ranks for ties) match scipy") {
  const auto ref = load_json("glue_reference.json")["regression"];
  const auto x = reals(ref["x"]), y = reals(ref["y"]);
  CHECK(pearson(x, y) == doctest::Approx(ref["pearson"].get<double>()).epsilon(1e-12));
  CHECK(spearman(x, y) == doctest::Approx(ref["spearman"].get<double>()).epsilon(1e-12));
  CHECK(average_ranks(x) == reals(ref["rank_x"]));
}

TEST_CASE("classification metrics: bad input names the metric and the sizes or the entry") {
  const std::vector<std::int64_t> a = {0, 1, 1}, b = {0, 1}, three = {0, 2, 1};
  CHECK_THROWS_WITH_AS(accuracy(a, b), "accuracy: 3 predictions but 2 labels", ValueError);
  CHECK_THROWS_WITH_AS(f1_binary(three, a),
                       "f1_binary: entry 1 has prediction 2 and label 1; expected 0 or 1", ValueError);
  CHECK_THROWS_WITH_AS(matthews_corrcoef(std::vector<std::int64_t>{}, std::vector<std::int64_t>{}),
                       "matthews_corrcoef: no predictions", ValueError);
  const std::vector<double> x = {1, NAN}, y = {1, 2};
  CHECK_THROWS_WITH_AS(spearman(x, y), "spearman: entry 1 is NaN", ValueError);
}

// ---------------------------------------------------------------------------------------------
// Tokenisers and the stemmer.

TEST_CASE("mteval_tokenize matches mteval-v13a.pl's tokenization sub") {
  // Expected strings printed by the Perl sub itself (scripts/make_metric_fixtures.sh copy).
  CHECK(mteval_tokenize("It's £20-25, isn't it? Yes.") == "it's £20 - 25 , isn't it ? yes .");
  CHECK(mteval_tokenize("Café Rouge (near the river) & co.: 5.0/5 stars, 1,000 seats...") ==
        "café rouge ( near the river ) & co . : 5.0 / 5 stars , 1,000 seats . . .");
  CHECK(mteval_tokenize("The Eagle's price range is £20-£25 &amp; it is kid-friendly.") ==
        "the eagle's price range is £20 - £25 & it is kid-friendly .");
  CHECK(mteval_tokenize("A.B.C. costs 3.50 - 4,5 or 20-25.") ==
        "a . b . c . costs 3.50 - 4,5 or 20 - 25 .");
  CHECK(mteval_tokenize("ÉCOLE Ünïcode x.y") == "École Ünïcode x . y");  // ASCII-only lowercase
}

TEST_CASE("coco_tokenize follows the PTB rules the E2E texts need") {
  // Hand-checked against the PTB conventions (CoreNLP itself is not available to us).
  CHECK(coco_tokenize("It's a kid-friendly place, isn't it?") == "it 's a kid-friendly place is n't it");
  CHECK(coco_tokenize("Prices are £20-25. The Vaults' food can't be beaten!") ==
        "prices are # 20-25 the vaults food ca n't be beaten");
  CHECK(coco_tokenize("Rated 5 out of 5 (high); 1,000 seats... near Café Rouge -- cheap.") ==
        "rated 5 out of 5 high 1,000 seats near café rouge cheap");
  CHECK(coco_tokenize("  \"The Eagle\" serves hors d'oeuvres  and you cannot miss it  ") ==
        "the eagle serves hors d'oeuvres and you can not miss it");
  CHECK(coco_tokenize("In the U.S. it costs $5.50") == "in the u.s. it costs $ 5.50");
  CHECK(coco_tokenize("It\u2019s near, isn\u2019t it") == "it 's near is n't it");
  CHECK(coco_tokenize("") == "");
  // The committed .tok files pin the tokenisation the reference values were computed on.
  const auto hyps = read_hypotheses(fixtures + "e2e_hyps.txt");
  const auto tok = tok_hyps("e2e");
  REQUIRE(hyps.size() == tok.size());
  for (std::size_t i = 0; i < hyps.size(); ++i) CHECK(coco_tokenize(hyps[i]) == tok[i]);
}

TEST_CASE("meteor_normalize matches METEOR 1.5's Normalizer (English, -norm) plus lowercase") {
  // Expected strings printed by Normalizer.normalizeLine(line, LANG_EN, true).toLowerCase().
  CHECK(meteor_normalize("it 's located near # 20-25 non-family-friendly") ==
        "it ' s located near # 20 25 non family friendly");
  CHECK(meteor_normalize("the eagle is n't kid-friendly , a.b.c. u.s. st. end.") ==
        "the eagle is n 't kid friendly , abc us st. end .");
  CHECK(meteor_normalize("l'amour d'oeuvre 1990's ``quoted'' it\u2019s") ==
        "l 'amour d 'oeuvre 1990 's \" quoted \" it 's");
  CHECK(meteor_normalize("a..b ... c.. x,y 1,000 5,a b,5") == "a .. b ... c .. x , y 1,000 5 , a b , 5");
}

TEST_CASE("snowball_english_stem matches Snowball 2.2's english stemmer") {
  // Pairs printed by Debian's python3-snowballstemmer 2.2 (stemmer('english')); the header was
  // also compared with it on 23,770 words of the E2E and GLUE texts, all equal.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"friendly", "friend"},   {"rated", "rate"},       {"rating", "rate"},
      {"families", "famili"},   {"located", "locat"},    {"prices", "price"},
      {"skies", "sky"},         {"dying", "die"},        {"news", "news"},
      {"generously", "generous"}, {"organization", "organ"}, {"proceeding", "proceed"},
      {"hoping", "hope"},       {"ties", "tie"},         {"cries", "cri"},
      {"restaurants", "restaur"}, {"kids", "kid"},     {"children", "children"},
      {"centre", "centr"},      {"customers", "custom"}, {"moderately", "moder"},
      {"hopeful", "hope"},      {"happily", "happili"}};
  for (const auto& [word, stem] : cases) {
    INFO(word);
    CHECK(snowball_english_stem(word) == stem);
  }
}

// ---------------------------------------------------------------------------------------------
// E2E metrics against the official scorer's code.

TEST_CASE("BLEU and NIST equal mteval-v13a.pl on 20 E2E test MRs (multi-reference)") {
  for (const std::string name : {"e2e", "small"}) {
    INFO(name);
    const auto ref = load_json(name + "_reference.json");
    const auto hyps = read_hypotheses(fixtures + name + "_hyps.txt");
    const auto refs = read_reference_groups(fixtures + name + "_refs.txt");
    const BleuNist s = mteval_bleu_nist(hyps, refs);
    CHECK(std::abs(s.bleu - ref["BLEU"].get<double>()) < 1e-9);
    CHECK(std::abs(s.nist - ref["NIST"].get<double>()) < 1e-9);
  }
}

TEST_CASE("ROUGE-L, CIDEr-D and METEOR equal pycocoevalcap / METEOR 1.5 on the tokenised text") {
  for (const std::string name : {"e2e", "small"}) {
    INFO(name);
    const auto ref = load_json(name + "_reference.json");
    const auto hyps = tok_hyps(name);
    const auto refs = tok_refs(name);
    CHECK(std::abs(rouge_l(hyps, refs) - ref["ROUGE_L"].get<double>()) < 1e-12);
    CHECK(std::abs(cider_d(hyps, refs) - ref["CIDEr"].get<double>()) < 1e-12);
    CHECK(std::abs(meteor(hyps, refs) - ref["METEOR"].get<double>()) < 1e-12);
    MeteorOptions with_function_words;
    for (const auto& w : ref["function_words"]) with_function_words.function_words.insert(w.get<std::string>());
    CHECK(std::abs(meteor(hyps, refs, with_function_words) -
                   ref["METEOR_with_function_words"].get<double>()) < 1e-12);
  }
}

TEST_CASE("score_e2e on raw text gives all five reference values; CSV and text refs agree") {
  const auto ref = load_json("e2e_reference.json");
  std::string format;
  const E2EScores s = cli::score_e2e_files(fixtures + "e2e_refs.txt", fixtures + "e2e_hyps.txt", &format);
  CHECK(format == "plain-text");
  CHECK(std::abs(s.bleu - ref["BLEU"].get<double>()) < 1e-9);
  CHECK(std::abs(s.nist - ref["NIST"].get<double>()) < 1e-9);
  CHECK(std::abs(s.meteor - ref["METEOR"].get<double>()) < 1e-12);
  CHECK(std::abs(s.rouge_l - ref["ROUGE_L"].get<double>()) < 1e-12);
  CHECK(std::abs(s.cider - ref["CIDEr"].get<double>()) < 1e-12);
  const E2EScores c = cli::score_e2e_files(fixtures + "e2e_refs.csv", fixtures + "e2e_hyps.txt", &format);
  CHECK(format == "CSV");
  CHECK(c.bleu == s.bleu);
  CHECK(c.nist == s.nist);
  CHECK(c.meteor == s.meteor);
  CHECK(c.rouge_l == s.rouge_l);
  CHECK(c.cider == s.cider);
}

TEST_CASE("reference files: grouping rules and errors that name the file and line") {
  const auto one_per_line = write_temp("single.txt", "first ref\nsecond ref\n");
  CHECK(read_reference_groups(one_per_line) ==
        std::vector<std::vector<std::string>>{{"first ref"}, {"second ref"}});
  const auto crlf = write_temp("crlf.txt", "\xEF\xBB\xBF" "a b\r\n c d \r\n\r\ne f\r\n\r\n\r\n");
  CHECK(read_reference_groups(crlf) == std::vector<std::vector<std::string>>{{"a b", "c d"}, {"e f"}});
  const auto doubled = write_temp("doubled.txt", "a\n\n\nb\n");
  CHECK_THROWS_WITH_AS(read_reference_groups(doubled),
                       (doubled + ":3: empty reference group (blank line at the start or two in a row)").c_str(),
                       FormatError);
  CHECK_THROWS_AS(read_reference_groups(fixtures + "no_such_file.txt"), IoError);
  const auto bad_csv = write_temp("bad.csv", "mr,ref\n\"name[A]\",\"ok\"\n\"name[B]\",\"x\",\"y\"\n");
  CHECK_THROWS_WITH_AS(cli::score_e2e_files(bad_csv, fixtures + "e2e_hyps.txt"),
                       (bad_csv + ":3: expected 2 fields (mr,ref), found 3").c_str(), FormatError);
  const auto open_quote = write_temp("open.csv", "\"mr\",\"ref\"\n\"name[A]\",\"never closed\n");
  CHECK_THROWS_WITH_AS(cli::score_e2e_files(open_quote, fixtures + "e2e_hyps.txt"),
                       (open_quote + ":2: quoted field is not closed").c_str(), FormatError);
}

TEST_CASE("score-e2e: a count mismatch names both files and both counts") {
  std::string nineteen;
  const auto hyps = read_hypotheses(fixtures + "e2e_hyps.txt");
  for (std::size_t i = 0; i + 1 < hyps.size(); ++i) nineteen += hyps[i] + "\n";
  const auto short_hyps = write_temp("short_hyps.txt", nineteen);
  const std::string refs = fixtures + "e2e_refs.txt";
  CHECK_THROWS_WITH_AS(cli::score_e2e_files(refs, short_hyps),
                       (refs + " has 20 reference groups but " + short_hyps +
                        " has 19 outputs (one output per group expected)").c_str(),
                       ValueError);
}
