// libFuzzer harness: a Jinja chat template and the messages (JSON) it renders, separated by
// "\n#--\n". Rendering must end (no unbounded recursion or loop) and fail only with an Error.
#include <cstdint>

#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/limits.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Rendering runs ~30x slower under ASan + UBSan + coverage than in a Release build: fuzz with a
  // tenth of the loop cap and a fiftieth of the step cap (io::InputLimits::
  // template_max_loop_iterations, template_max_steps), so each input stays under the 1 s bar and
  // the caps' checks are what a loop or expression bomb meets.
  static const bool capped = [] {
    fourierft::io::input_limits().template_max_loop_iterations = 20000;
    fourierft::io::input_limits().template_max_steps = 100000;
    return true;
  }();
  (void)capped;
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 2);
  FOURIERFT_FUZZ_GUARD({
    const auto chat = fourierft::io::ChatTemplate::parse(std::string(parts[0]), "template");
    fourierft::io::Json messages = fourierft::io::Json::array(
        {{{"role", "user"}, {"content", "Hi"}}, {{"role", "assistant"}, {"content", "Hello"}}});
    if (!parts[1].empty()) messages = fourierft::io::parse_json(parts[1], "messages");
    (void)chat.render(messages, true);
  });
  return 0;
}
