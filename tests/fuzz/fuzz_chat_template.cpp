// libFuzzer harness: a Jinja chat template and the messages (JSON) it renders, separated by
// "\n#--\n". Rendering must end (no unbounded recursion or loop) and fail only with an Error.
#include <cstdint>

#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
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
