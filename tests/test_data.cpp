// Tests of include/fourierft/io/{glue,e2e,image,image_folder}.hpp on the committed slices in
// tests/fixtures/data (always) and on ../shared/data (full files; skipped when it is absent).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/e2e.hpp"
#include "fourierft/io/glue.hpp"
#include "fourierft/io/image.hpp"
#include "fourierft/io/image_folder.hpp"
#include "fourierft/io/json.hpp"

using namespace fourierft;
using namespace fourierft::io;
namespace fs = std::filesystem;

namespace {

const fs::path fixtures = fs::path(FOURIERFT_FIXTURES_DIR) / "data";
const fs::path shared = fs::path(FOURIERFT_SHARED_DATA_DIR);
const bool no_shared_data = !fs::is_directory(shared / "glue");

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_data_tmp" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
fs::path write_file(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}
std::map<std::int64_t, Index> label_counts(const GlueDataset& d) {
  std::map<std::int64_t, Index> counts;
  for (const auto& ex : d.examples) ++counts[ex.label.value_or(-1)];
  return counts;
}

}  // namespace

// ---- GLUE ---------------------------------------------------------------------------------------

TEST_CASE("read_glue: every committed slice, in both layouts, with the task's labels and metric") {
  struct Case {
    const char* file;
    GlueTask task;
    bool labelled, pair;
    const char* layout;
  };
  const Case cases[] = {
      {"sst2/train.tsv", GlueTask::sst2, true, false, "header (label, sentence)"},
      {"sst2/dev.tsv", GlueTask::sst2, true, false, "header (label, content)"},
      {"sst2/test.tsv", GlueTask::sst2, true, false, "header (label, content)"},
      {"cola/train.tsv", GlueTask::cola, true, false,
       "GLUE CoLA, no header (source, label, mark, sentence)"},
      {"cola/dev.tsv", GlueTask::cola, true, false,
       "GLUE CoLA, no header (source, label, mark, sentence)"},
      {"cola/test.tsv", GlueTask::cola, false, false, "header (sentence)"},
      {"mrpc/train.tsv", GlueTask::mrpc, true, true, "header (Quality, #1 String, #2 String)"},
      {"mrpc/dev.tsv", GlueTask::mrpc, true, true, "header (Quality, #1 String, #2 String)"},
      {"mrpc/test.tsv", GlueTask::mrpc, false, true, "header (#1 String, #2 String)"},
      {"stsb/train.tsv", GlueTask::stsb, true, true, "header (score, sentence1, sentence2)"},
      {"stsb/dev.tsv", GlueTask::stsb, true, true, "header (score, sentence1, sentence2)"},
      {"stsb/test.tsv", GlueTask::stsb, false, true, "header (sentence1, sentence2)"},
      {"qnli/dev.tsv", GlueTask::qnli, true, true, "header (label, question, sentence)"},
      {"qnli/test.tsv", GlueTask::qnli, false, true, "header (question, sentence)"},
      {"rte/train.tsv", GlueTask::rte, true, true, "header (label, sentence1, sentence2)"},
      {"rte/dev.tsv", GlueTask::rte, true, true, "header (label, sentence1, sentence2)"},
      {"rte/test.tsv", GlueTask::rte, false, true, "header (label, sentence1, sentence2)"},
  };
  for (const Case& c : cases) {
    INFO("file: " << c.file);
    const GlueDataset d = read_glue(fixtures / "glue" / c.file, c.task);
    CHECK(d.examples.size() == 200);
    CHECK(d.labelled == c.labelled);
    CHECK(d.layout == c.layout);
    CHECK(d.skipped == 0);
    for (const GlueExample& ex : d.examples) {
      CHECK(ex.text_b.has_value() == c.pair);
      CHECK(ex.text_a.find('\r') == std::string::npos);  // CRLF handled
      if (!c.labelled) {
        CHECK_FALSE(ex.label.has_value());
        CHECK_FALSE(ex.score.has_value());
      } else if (c.task == GlueTask::stsb) {
        REQUIRE(ex.score.has_value());
        CHECK(*ex.score >= 0.0f);
        CHECK(*ex.score <= 5.0f);
      } else {
        REQUIRE(ex.label.has_value());
        CHECK(*ex.label >= 0);
        CHECK(*ex.label < d.num_labels);
      }
    }
  }
  // Exact first and last rows (BOM, CRLF and the missing final newline of CoLA dev included).
  const GlueDataset sst2 = read_glue(fixtures / "glue/sst2/train.tsv", "SST-2");
  CHECK(sst2.examples[0].text_a == "hide new secretions from the parental units");
  CHECK(sst2.examples[0].label == 0);
  CHECK(sst2.examples[0].line == 2);
  CHECK(sst2.metric == "accuracy");
  CHECK(sst2.label_names == std::vector<std::string>{"negative", "positive"});
  const GlueDataset cola = read_glue(fixtures / "glue/cola/dev.tsv", GlueTask::cola);
  CHECK(cola.examples.back().text_a == "John talked to Bill about himself.");
  CHECK(cola.examples.back().label == 1);
  CHECK(cola.examples.back().line == 200);
  CHECK(cola.metric == "matthews_correlation");
  const GlueDataset mrpc = read_glue(fixtures / "glue/mrpc/dev.tsv", GlueTask::mrpc);
  CHECK(mrpc.examples[0].label == 1);
  // TSV without quoting: the lone quote is text.
  CHECK(mrpc.examples[0].text_b ==
        "\"The foodservice pie business does not fit our long-term growth strategy.");
  CHECK(mrpc.metric == "accuracy_f1");
  const GlueDataset stsb = read_glue(fixtures / "glue/stsb/train.tsv", GlueTask::stsb);
  CHECK(stsb.num_labels == 1);
  CHECK(stsb.metric == "pearson_spearman");
  CHECK(stsb.examples[0].text_a == "A plane is taking off.");
  CHECK(stsb.examples[0].text_b == "An air plane is taking off.");
  CHECK(*stsb.examples[0].score == doctest::Approx(5.0).epsilon(1e-7));
  const GlueDataset qnli = read_glue(fixtures / "glue/qnli/dev.tsv", GlueTask::qnli);
  CHECK(qnli.examples[0].text_a == "What came into force after the new constitution was herald?");
  CHECK(qnli.examples[0].label == 0);  // "entailment"
  const GlueDataset rte = read_glue(fixtures / "glue/rte/dev.tsv", GlueTask::rte);
  CHECK(rte.examples[0].text_b == "Christopher Reeve had an accident.");
  CHECK(rte.examples[0].label == 1);  // integer labels: 1 = not_entailment
}

TEST_CASE("read_glue: every file of ../shared/data/glue, with the README's row and label counts" *
          doctest::skip(no_shared_data)) {
  struct Case {
    const char* file;
    GlueTask task;
    Index rows;
    std::map<std::int64_t, Index> labels;  // label -> rows; {-1: rows} when unlabelled
  };
  const Case cases[] = {
      {"sst2/train.tsv", GlueTask::sst2, 67349, {{0, 29780}, {1, 37569}}},
      {"sst2/dev.tsv", GlueTask::sst2, 872, {{0, 428}, {1, 444}}},
      {"sst2/test.tsv", GlueTask::sst2, 1821, {{0, 912}, {1, 909}}},
      {"cola/train.tsv", GlueTask::cola, 8551, {{1, 6023}, {0, 2528}}},
      {"cola/dev.tsv", GlueTask::cola, 1043, {{1, 721}, {0, 322}}},
      {"cola/test.tsv", GlueTask::cola, 1063, {{-1, 1063}}},
      {"mrpc/train.tsv", GlueTask::mrpc, 3668, {{1, 2474}, {0, 1194}}},
      {"mrpc/dev.tsv", GlueTask::mrpc, 408, {{1, 279}, {0, 129}}},
      {"mrpc/test.tsv", GlueTask::mrpc, 1725, {{-1, 1725}}},
      {"stsb/train.tsv", GlueTask::stsb, 5749, {{-1, 5749}}},  // scores, not labels
      {"stsb/dev.tsv", GlueTask::stsb, 1500, {{-1, 1500}}},
      {"stsb/test.tsv", GlueTask::stsb, 1379, {{-1, 1379}}},
      {"qnli/dev.tsv", GlueTask::qnli, 5463, {{0, 2702}, {1, 2761}}},
      {"qnli/test.tsv", GlueTask::qnli, 5463, {{-1, 5463}}},
      {"rte/train.tsv", GlueTask::rte, 2490, {{0, 1249}, {1, 1241}}},
      {"rte/dev.tsv", GlueTask::rte, 277, {{0, 146}, {1, 131}}},
      {"rte/test.tsv", GlueTask::rte, 3000, {{-1, 3000}}},
  };
  for (const Case& c : cases) {
    INFO("file: " << c.file);
    const GlueDataset d = read_glue(shared / "glue" / c.file, c.task);
    CHECK(static_cast<Index>(d.examples.size()) == c.rows);
    CHECK(label_counts(d) == c.labels);
  }
  Index scored = 0;
  for (const auto& ex : read_glue(shared / "glue/stsb/dev.tsv", GlueTask::stsb).examples)
    scored += ex.score.has_value();
  CHECK(scored == 1500);
}

TEST_CASE("read_glue: BOM, CRLF and a missing final newline; MNLI in both layouts") {
  const fs::path dir = scratch("glue");
  const auto sst2 = read_glue(
      write_file(dir / "sst2.tsv", "\xEF\xBB\xBFsentence\tlabel\r\ngood film\t1\r\nbad\t0"),
      "sst2");
  REQUIRE(sst2.examples.size() == 2);
  CHECK(sst2.examples[0].text_a == "good film");
  CHECK(sst2.examples[0].label == 1);
  CHECK(sst2.examples[1].text_a == "bad");
  CHECK(sst2.examples[1].label == 0);
  CHECK(sst2.layout == "header (label, sentence)");

  // GLUE's MNLI columns (dev_matched.tsv header) with string labels; rows written for this test.
  const std::string glue_header =
      "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
      "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n";
  const auto mnli =
      read_glue(write_file(dir / "dev_matched.tsv",
                           glue_header + "0\t1\t1e\tfiction\t( a )\t( b )\t(A)\t(B)\tA man "
                                         "sleeps.\tA person rests.\tentailment\tentailment\n"
                                         "1\t2\t2n\tfiction\t( a )\t( b )\t(A)\t(B)\tIt "
                                         "rains.\tIt is dry.\tcontradiction\tcontradiction\n"),
                "mnli-m");
  REQUIRE(mnli.examples.size() == 2);
  CHECK(mnli.num_labels == 3);
  CHECK(mnli.examples[0].text_a == "A man sleeps.");
  CHECK(mnli.examples[0].text_b == "A person rests.");
  CHECK(mnli.examples[0].label == 0);
  CHECK(mnli.examples[1].label == 2);
  const auto hf =
      read_glue(write_file(dir / "mnli_hf.tsv",
                           "premise\thypothesis\tlabel\tidx\nA.\tB.\t1\t0\nC.\tD.\t-1\t1\n"),
                GlueTask::mnli, {.on_error = OnError::skip});
  CHECK(hf.examples.size() == 1);    // the second row mixes -1 into a labelled file
  CHECK(hf.examples[0].label == 1);  // neutral
  CHECK(hf.skipped == 1);

  CHECK(glue_task_from_name("STS-B") == GlueTask::stsb);
  CHECK(glue_task_from_name("mnli_mismatched") == GlueTask::mnli);
  CHECK_THROWS_WITH_AS(glue_task_from_name("qqp"),
                       "unknown GLUE task 'qqp' (cola, sst2, mrpc, stsb, qnli, rte, mnli, mnli-mm)",
                       ValueError);
}

TEST_CASE("read_glue: a malformed row names the file and line, or is skipped and counted") {
  const fs::path dir = scratch("glue_errors");
  const fs::path bad =
      write_file(dir / "train.tsv", "label\tsentence\n1\tfine\nno tab here\n0\tok\n");
  const std::string fields =
      bad.string() + ":3: expected 2 tab-separated fields (as the header), found 1";
  CHECK_THROWS_WITH_AS(read_glue(bad, GlueTask::sst2), fields.c_str(), FormatError);
  const GlueDataset skipped = read_glue(bad, GlueTask::sst2, {.on_error = OnError::skip});
  CHECK(skipped.examples.size() == 2);
  CHECK(skipped.skipped == 1);
  CHECK(skipped.errors == std::vector<std::string>{fields});
  CHECK(skipped.examples[1].line == 4);

  const fs::path label = write_file(dir / "label.tsv", "sentence\tlabel\nfine\tmaybe\n");
  const std::string label_msg =
      label.string() + ":2: label 'maybe' is not one of 0..1 or 'negative', 'positive'";
  CHECK_THROWS_WITH_AS(read_glue(label, GlueTask::sst2), label_msg.c_str(), FormatError);
  const fs::path range = write_file(dir / "range.tsv", "sentence\tlabel\nfine\t2\n");
  CHECK_THROWS_AS(read_glue(range, GlueTask::sst2), FormatError);

  const fs::path score = write_file(
      dir / "stsb.tsv", "sentence1\tsentence2\tscore\na\tb\t4.5\nc\td\t7.25\ne\tf\thigh\n");
  const std::string score_msg = score.string() + ":3: score 7.25 is outside [0, 5]";
  CHECK_THROWS_WITH_AS(read_glue(score, GlueTask::stsb), score_msg.c_str(), FormatError);
  const auto scores = read_glue(score, GlueTask::stsb, {.on_error = OnError::skip});
  CHECK(scores.skipped == 2);
  CHECK(scores.errors[1] == score.string() + ":4: score 'high' is not a number");

  const fs::path no_header = write_file(dir / "noheader.tsv", "1\tgood\n");
  const std::string header_msg =
      no_header.string() +
      ":1: expected a header with a 'sentence' or 'content' column, got '1\tgood'";
  CHECK_THROWS_WITH_AS(read_glue(no_header, GlueTask::sst2), header_msg.c_str(), FormatError);
  const fs::path no_b = write_file(dir / "rte.tsv", "sentence1\tlabel\na\t0\n");
  const std::string no_b_msg =
      no_b.string() + ":1: the header has no 'sentence2' column for the second text";
  CHECK_THROWS_WITH_AS(read_glue(no_b, GlueTask::rte), no_b_msg.c_str(), FormatError);

  const std::string missing = "cannot open '" + (dir / "nope.tsv").string() + "' for reading";
  CHECK_THROWS_WITH_AS(read_glue(dir / "nope.tsv", GlueTask::rte), missing.c_str(), IoError);
}

// ---- E2E ----------------------------------------------------------------------------------------

TEST_CASE("read_e2e_csv / read_e2e_lora: committed slices, references grouped by MR") {
  const E2EDataset dev = read_e2e_csv(fixtures / "e2e/devset.csv");
  CHECK(dev.examples.size() == 434);
  CHECK(dev.groups.size() == 50);
  CHECK(dev.examples[0].mr == "name[Alimentum], area[city centre], familyFriendly[no]");
  CHECK(dev.examples[0].ref ==
        "There is a place in the city centre, Alimentum, that is not family-friendly.");
  CHECK(dev.examples.back().line == 435);
  CHECK(dev.groups[0].mr == dev.examples[0].mr);
  std::size_t refs = 0;
  for (const auto& g : dev.groups) refs += g.refs.size();
  CHECK(refs == dev.examples.size());
  CHECK(dev.groups[0].refs[0] == dev.examples[0].ref);

  const E2EDataset test = read_e2e_csv(fixtures / "e2e/testset_w_refs.csv");
  CHECK(test.examples.size() == 322);
  CHECK(test.groups.size() == 50);
  CHECK(test.groups.back().refs.back() ==
        "In the city centre, near the Rainbow Vegetarian Café, there is a non family-friendly pub "
        "and fast food place named Giraffe.");
  const E2EDataset mrs = read_e2e_csv(fixtures / "e2e/testset.csv");
  CHECK_FALSE(mrs.has_refs);
  CHECK(mrs.examples.size() == 50);
  CHECK(mrs.groups.size() == 50);
  CHECK(mrs.groups[0].refs.empty());

  // The LoRA files hold the same rows; e2e_lora_context turns each official MR into LoRA's context.
  for (auto [csv, lora] : {std::pair{&dev, "e2e/lora_format/valid.txt"},
                           std::pair{&test, "e2e/lora_format/test.txt"}}) {
    const E2EDataset l = read_e2e_lora(fixtures / lora);
    REQUIRE(l.examples.size() == csv->examples.size());
    CHECK(l.groups.size() == 50);
    for (std::size_t i = 0; i < l.examples.size(); ++i) {
      INFO(lora << " line " << i + 1);
      CHECK(e2e_lora_context(csv->examples[i].mr) == l.examples[i].mr);
    }
  }
  const E2EDataset valid = read_e2e_lora(fixtures / "e2e/lora_format/valid.txt");
  CHECK(valid.examples[0].mr == "name : Alimentum | area : city centre | family friendly : no");
  CHECK(valid.examples[0].ref ==
        "There is a place in the city centre , Alimentum , that is not family - friendly .");
}

TEST_CASE("read_e2e: every file of ../shared/data/e2e, with the README's counts" *
          doctest::skip(no_shared_data)) {
  struct Case {
    const char* file;
    bool lora;
    std::size_t rows, mrs;
  };
  for (const Case& c :
       {Case{"devset.csv", false, 4672, 547}, Case{"testset_w_refs.csv", false, 4693, 630},
        Case{"testset.csv", false, 630, 630}, Case{"lora_format/valid.txt", true, 4672, 547},
        Case{"lora_format/test.txt", true, 4693, 630}}) {
    INFO("file: " << c.file);
    const E2EDataset d =
        c.lora ? read_e2e_lora(shared / "e2e" / c.file) : read_e2e_csv(shared / "e2e" / c.file);
    CHECK(d.examples.size() == c.rows);
    CHECK(d.groups.size() == c.mrs);
  }
  for (auto [csv, lora] : {std::pair{"devset.csv", "lora_format/valid.txt"},
                           std::pair{"testset_w_refs.csv", "lora_format/test.txt"}}) {
    const E2EDataset a = read_e2e_csv(shared / "e2e" / csv),
                     b = read_e2e_lora(shared / "e2e" / lora);
    Index same = 0;
    for (std::size_t i = 0; i < a.examples.size(); ++i)
      same += e2e_lora_context(a.examples[i].mr) == b.examples[i].mr;
    CHECK(same == static_cast<Index>(a.examples.size()));
  }
}

TEST_CASE("read_e2e_csv: RFC 4180 quoting, CRLF, BOM; malformed files name the line") {
  const fs::path dir = scratch("e2e");
  const E2EDataset d = read_e2e_csv(write_file(
      dir / "ok.csv",
      "\xEF\xBB\xBF\"mr\",\"ref\"\r\n\"name[A], food[B]\",\"Say \"\"hi\"\", then\r\nleave.\"\r\n"
      "name[C],plain text\r\n\"name[A], food[B]\",Second"));
  REQUIRE(d.examples.size() == 3);
  CHECK(d.examples[0].mr == "name[A], food[B]");
  CHECK(d.examples[0].ref == "Say \"hi\", then\r\nleave.");
  CHECK(d.examples[1].line == 4);  // the quoted line break moved it down a line
  CHECK(d.examples[1].ref == "plain text");
  REQUIRE(d.groups.size() == 2);
  CHECK(d.groups[0].refs == std::vector<std::string>{"Say \"hi\", then\r\nleave.", "Second"});

  const fs::path open =
      write_file(dir / "open.csv", "mr,ref\nname[A],ok\nname[B],\"never closed\n");
  const std::string open_msg =
      open.string() + ":3: quoted field not closed before the end of the file";
  CHECK_THROWS_WITH_AS(read_e2e_csv(open), open_msg.c_str(), FormatError);
  const fs::path after = write_file(dir / "after.csv", "mr,ref\n\"name[A]\"x,ok\n");
  const std::string after_msg = after.string() +
                                ":2: unexpected character 'x' after a closing quote (expected a "
                                "comma or the end of the row)";
  CHECK_THROWS_WITH_AS(read_e2e_csv(after), after_msg.c_str(), FormatError);
  const fs::path count = write_file(dir / "count.csv", "mr,ref\nname[A],ok\nname[B],a,b\n");
  const std::string count_msg =
      count.string() + ":3: expected 2 comma-separated fields (as the header), found 3";
  CHECK_THROWS_WITH_AS(read_e2e_csv(count), count_msg.c_str(), FormatError);
  const fs::path header = write_file(dir / "header.csv", "meaning,text\n");
  const std::string header_msg =
      header.string() + ":1: expected the header mr,ref (or MR), got 'meaning,text'";
  CHECK_THROWS_WITH_AS(read_e2e_csv(header), header_msg.c_str(), FormatError);
  const fs::path lora = write_file(dir / "lora.txt", "a : b||ok\nno separator\n");
  const std::string lora_msg =
      lora.string() + ":2: expected one 'context||reference' separator, got 'no separator'";
  CHECK_THROWS_WITH_AS(read_e2e_lora(lora), lora_msg.c_str(), FormatError);

  CHECK(e2e_lora_context("name[The Eagle], eatType[coffee shop], priceRange[more than £30], "
                         "customer rating[5 out of 5]") ==
        "name : The Eagle | Type : coffee shop | price : more than £ 30 | customer rating : 5 out "
        "of 5");
  CHECK_THROWS_WITH_AS(e2e_lora_context("name[A], stars[5]"),
                       "e2e_lora_context: unknown slot 'stars' in MR 'name[A], stars[5]'",
                       ValueError);
  CHECK_THROWS_AS(e2e_lora_context("name[A"), ValueError);
}

TEST_CASE("e2e_lm_example / e2e_lm_batch: LoRA's prompt, targets and loss mask") {
  const BpeTokenizer gpt2 = BpeTokenizer::load(fs::path(FOURIERFT_FIXTURES_DIR) / "tokenizer/gpt2");
  const std::string context = "name : Alimentum | area : city centre";
  const LmExample ex = e2e_lm_example(gpt2, context, "Alimentum is in the city centre .");
  CHECK(ex.context.back() == 50256);
  CHECK(ex.completion.back() == 50256);
  CHECK(gpt2.decode(ex.context) == context + "<|endoftext|>");
  CHECK(gpt2.decode(ex.completion) == " Alimentum is in the city centre .<|endoftext|>");
  CHECK(gpt2.id_to_token(ex.completion[0]).starts_with("Ġ"));  // the leading space joins the word

  // Hand-made ids: context {11, 12, 13}, completion {21, 22}; and a longer row.
  const std::vector<LmExample> rows = {{{11, 12, 13}, {21, 22}}, {{31}, {41, 42, 43, 44, 45}}};
  const LmBatch b = e2e_lm_batch(rows, 5);
  REQUIRE(b.input.shape() == Shape{2, 5});
  const std::vector<std::int64_t> input(b.input.data().begin(), b.input.data().end());
  const std::vector<std::int64_t> target(b.target.data().begin(), b.target.data().end());
  const std::vector<float> mask(b.mask.data().begin(), b.mask.data().end());
  CHECK(input == std::vector<std::int64_t>{11, 12, 13, 21, 22, 31, 41, 42, 43, 44});
  CHECK(target == std::vector<std::int64_t>{12, 13, 21, 22, 0, 41, 42, 43, 44, 0});
  // Loss on the completion tokens only: positions whose target is 21, 22 (row 0); 41..44 (row 1,
  // whose 45 was cut by max_length 5).
  CHECK(mask == std::vector<float>{0, 0, 1, 1, 0, 1, 1, 1, 1, 0});
  CHECK(b.lengths == std::vector<Index>{5, 5});
  CHECK(e2e_lm_batch(std::span(rows).first(1), 512).input.shape() == Shape{1, 5});
}

// ---- images -------------------------------------------------------------------------------------

namespace {
const Json& pil_reference() {
  static const Json j = read_json(fixtures / "pil-reference" / "reference.json");
  return j;
}
}  // namespace

TEST_CASE("decode_image: PNG colour types as Pillow's convert('RGB'); JPEG as Pillow, bit for bit") {
  for (const Json& m : pil_reference().at("modes")) {
    INFO("png: " << m.at("png").get<std::string>());
    const Image img = read_image(fixtures / m.at("png").get<std::string>());
    const Image rgb = read_image(fixtures / m.at("rgb").get<std::string>());
    CHECK(img.height == 32);
    CHECK(img.width == 32);
    CHECK(img == rgb);
  }
  // libjpeg-turbo with Pillow's settings: CIFAR-10 JPEGs, and Pillow-written progressive,
  // greyscale, 4:4:4 and 4:2:0 JPEGs of an odd size. (All 6,000 CIFAR-10 JPEGs of ../shared/data
  // decode to Pillow's bytes too: docs/data.md.)
  CHECK(pil_reference().at("decoded").size() == 7);
  for (const Json& d : pil_reference().at("decoded")) {
    INFO("jpeg: " << d.at("jpeg").get<std::string>());
    const Image a = read_image(fixtures / d.at("jpeg").get<std::string>());
    const Image b = read_image(fixtures / d.at("png").get<std::string>());
    CHECK(a.height == b.height);
    CHECK(a.width == b.width);
    CHECK(a == b);
  }
}

TEST_CASE("resize: bit-exact with Pillow (bilinear and bicubic, up, down, crop then resize)") {
  const Image source = read_image(fixtures / pil_reference().at("source").get<std::string>());
  for (const Json& c : pil_reference().at("resize")) {
    INFO("case: " << c.at("png").get<std::string>());
    const Resample filter = c.at("resample") == "bilinear" ? Resample::bilinear : Resample::bicubic;
    Image in = source;
    if (!c.at("crop_left_top_right_bottom").is_null()) {
      const auto box = c.at("crop_left_top_right_bottom").get<std::vector<Index>>();
      in = crop(source, box[1], box[0], box[3] - box[1], box[2] - box[0]);
    }
    const Image out = resize(in, c.at("height").get<Index>(), c.at("width").get<Index>(), filter);
    const Image expected = read_image(fixtures / c.at("png").get<std::string>());
    CHECK(out == expected);
  }
  CHECK(resize(source, 32, 32) == source);
}

TEST_CASE("ImageProcessor: ViT normalisation, preprocessor_config.json, CHW layout") {
  const Image source = read_image(fixtures / pil_reference().at("source").get<std::string>());
  ImageProcessor p;
  p.height = p.width = 32;  // no resize: values are (x / 255 - 0.5) / 0.5
  const Tensor<float> t = p.eval(source);
  REQUIRE(t.shape() == Shape{3, 32, 32});
  for (Index c = 0; c < 3; ++c)
    for (Index y : {0, 7, 31})
      for (Index x : {0, 13, 31})
        CHECK(t.at({c, y, x}) ==
              doctest::Approx((source.at(y, x, c) / 255.0 - 0.5) / 0.5).epsilon(1e-6));

  const fs::path dir = scratch("processor");
  const fs::path config = write_file(dir / "preprocessor_config.json", R"({
    "do_normalize": true, "do_rescale": true, "do_resize": true,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    "image_processor_type": "ViTImageProcessor", "resample": 3,
    "rescale_factor": 0.00392156862745098, "size": {"height": 384, "width": 320}})");
  const ImageProcessor q = ImageProcessor::from_json(config);
  CHECK(q.height == 384);
  CHECK(q.width == 320);
  CHECK(q.resample == Resample::bicubic);
  CHECK(q.image_mean[1] == doctest::Approx(0.456).epsilon(1e-7));
  CHECK(q.image_std[2] == doctest::Approx(0.225).epsilon(1e-7));
  CHECK(ImageProcessor::from_json(write_file(dir / "old.json", R"({"size": 224})")).width == 224);
  const fs::path bad = write_file(dir / "bad.json", R"({"resample": 0})");
  const std::string bad_msg =
      bad.string() + ": resample 0 is not supported (2 = bilinear, 3 = bicubic)";
  CHECK_THROWS_WITH_AS(ImageProcessor::from_json(bad), bad_msg.c_str(), FormatError);
}

TEST_CASE("random_resized_crop_box: torchvision's rules, seeded, with the central fallback") {
  Rng a(3), b(3);
  for (int i = 0; i < 200; ++i) {
    const CropBox box = random_resized_crop_box(32, 48, a);
    CHECK(box == random_resized_crop_box(32, 48, b));
    CHECK(box.top >= 0);
    CHECK(box.left >= 0);
    CHECK(box.top + box.height <= 32);
    CHECK(box.left + box.width <= 48);
    // h and w are sqrt(area / aspect) and sqrt(area * aspect) rounded: some unrounded a (width)
    // and b (height) within half a pixel have a / b in [3/4, 4/3] and a * b in [0.08, 1] x 32 x 48.
    const double w = static_cast<double>(box.width), h = static_cast<double>(box.height);
    CHECK((w + 0.5) / (h - 0.5) >= 0.75);
    CHECK((w - 0.5) / (h + 0.5) <= 4.0 / 3.0);
    CHECK((w + 0.5) * (h + 0.5) >= 0.08 * 32 * 48);
    CHECK((w - 0.5) * (h - 0.5) <= 32 * 48);
  }
  // No try fits a 2 x 1000 image: fallback h = 2, w = round(2 * 4/3) = 3, centred.
  Rng r(1);
  CHECK(random_resized_crop_box(2, 1000, r) == CropBox{0, 498, 2, 3});
  CHECK(random_resized_crop_box(1000, 2, r) == CropBox{498, 0, 3, 2});

  Image img(2, 3);
  for (std::size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<std::uint8_t>(i);
  const Image f = hflip(img);
  CHECK(f.at(0, 0, 0) == img.at(0, 2, 0));
  CHECK(f.at(1, 2, 1) == img.at(1, 0, 1));
  const Image c = center_crop(img, 1, 1);
  CHECK(c.at(0, 0, 2) == img.at(0, 1, 2));  // top = round(0.5) = 0 (halves to even), left = 1
}

TEST_CASE("ImageFolder: sorted classes and files, eval and augmented batches") {
  const ImageFolder train(fixtures / "cifar10-mini/train");
  CHECK(train.classes() == std::vector<std::string>{"airplane", "cat", "ship"});
  REQUIRE(train.size() == 60);
  CHECK(train.items()[0].path.filename() == "0000.jpg");
  CHECK(train.items()[20].label == 1);
  CHECK(train.items()[59].path.filename() == "0019.jpg");
  CHECK(ImageFolder(fixtures / "cifar10-mini/test").size() == 30);

  ImageProcessor p;  // 224 x 224, mean = std = 0.5
  const std::vector<Index> idx = {0, 25, 59};
  const ImageBatch eval = train.batch(idx, p);
  CHECK(eval.pixels.shape() == Shape{3, 3, 224, 224});
  CHECK(std::vector<std::int64_t>(eval.labels.data().begin(), eval.labels.data().end()) ==
        std::vector<std::int64_t>{0, 1, 2});
  const Tensor<float> one = p.eval(train.load(25));
  CHECK(
      std::equal(one.data().begin(), one.data().end(), eval.pixels.data().begin() + 3 * 224 * 224));

  Rng r1(5), r2(5), r3(6);
  const ImageBatch a = train.batch(idx, p, &r1), b = train.batch(idx, p, &r2),
                   c = train.batch(idx, p, &r3);
  CHECK(std::equal(a.pixels.data().begin(), a.pixels.data().end(), b.pixels.data().begin()));
  CHECK_FALSE(std::equal(a.pixels.data().begin(), a.pixels.data().end(), c.pixels.data().begin()));
  const auto [lo, hi] = std::minmax_element(a.pixels.data().begin(), a.pixels.data().end());
  CHECK(*lo >= -1.0f);
  CHECK(*hi <= 1.0f);
  // The augmented batch is the drawn crop + flip of each image, drawn in index order.
  Rng r4(5);
  const Augmentation first = draw_augmentation(32, 32, r4);
  std::vector<float> expect(3 * 224 * 224);
  p.train(train.load(0), first, expect);
  CHECK(std::equal(expect.begin(), expect.end(), a.pixels.data().begin()));
}

TEST_CASE("images: corrupt, empty, truncated or missing files name the file") {
  const fs::path dir = scratch("images");
  const std::string png = [] {
    std::ifstream in(fixtures / "pil-reference/train_cat_0001.png", std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }();
  const fs::path garbage = write_file(dir / "root/cat/0000.jpg", "this is not an image");
  const fs::path truncated = write_file(dir / "truncated.png", png.substr(0, png.size() / 2));
  const fs::path empty = write_file(dir / "empty.png", "");

  const std::string garbage_msg =
      garbage.string() + ": not a PNG or JPEG image (it starts with bytes 74 68 69 73)";
  CHECK_THROWS_WITH_AS(read_image(garbage), garbage_msg.c_str(), FormatError);
  CHECK_THROWS_WITH_AS(
      read_image(truncated),
      doctest::Contains((truncated.string() + ": corrupt PNG: chunk 'IDAT' at byte 33 declares").c_str()),
      FormatError);
  const std::string empty_msg = empty.string() + ": empty file, expected a PNG or JPEG image";
  CHECK_THROWS_WITH_AS(read_image(empty), empty_msg.c_str(), FormatError);
  const std::string missing = "cannot open '" + (dir / "none.png").string() + "' for reading";
  CHECK_THROWS_WITH_AS(read_image(dir / "none.png"), missing.c_str(), IoError);

  // In a folder: the batch fails on the corrupt file, by name.
  write_file(dir / "root/dog/0000.png", png);
  const ImageFolder folder(dir / "root");
  const std::vector<Index> all = {0, 1};
  CHECK_THROWS_WITH_AS(folder.batch(all, ImageProcessor{}), garbage_msg.c_str(), FormatError);
  fs::create_directories(dir / "root/empty_class");
  const std::string empty_class = "ImageFolder: class folder '" +
                                  (dir / "root/empty_class").string() +
                                  "' has no .png, .jpg or .jpeg files";
  CHECK_THROWS_WITH_AS(ImageFolder(dir / "root"), empty_class.c_str(), FormatError);
}

TEST_CASE("ImageFolder: ../shared/data/images/cifar10, every test image decodes" *
          doctest::skip(!fs::is_directory(shared / "images/cifar10"))) {
  const ImageFolder train(shared / "images/cifar10/train");
  CHECK(train.size() == 5000);
  CHECK(train.classes().size() == 10);
  CHECK(train.classes()[3] == "cat");
  const ImageFolder test(shared / "images/cifar10/test");
  REQUIRE(test.size() == 1000);
  Index ok = 0;
  for (Index i = 0; i < test.size(); ++i) {
    const Image im = test.load(i);
    ok += im.height == 32 && im.width == 32;
  }
  CHECK(ok == 1000);
  CHECK(test.items()[999].label == 9);  // truck
}
