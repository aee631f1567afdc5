// `tandem tokenize`: text on stdin -> ids on stdout (space-separated, one
// line), or with --decode ids on stdin -> text on stdout.
//
//   tandem tokenize --tokenizer FILE_OR_DIR [--decode] [--no-special]
//
// --no-special: when encoding, do not add the post-processor's special tokens
// (e.g. BOS); when decoding, drop special tokens from the output.
#include <limits>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "tandem/flags.h"
#include "tandem/tokenizer.h"

namespace {

constexpr char kUsage[] =
    "usage: tandem tokenize --tokenizer FILE_OR_DIR [--decode] [--no-special]\n"
    "  Reads text on stdin and prints its token ids on one line; with --decode\n"
    "  reads whitespace-separated ids and prints the text. The text is taken\n"
    "  verbatim, including any final newline.\n";

int Fail(const std::string& message) {
  std::cerr << "tandem tokenize: " << message << "\n";
  return 1;
}

}  // namespace

int RunTokenizeCommand(int argc, char** argv) {
  // argv[0] is the sub-command name; tolerate callers that strip it too.
  const int first = (argc > 0 && std::string(argv[0]).rfind("--", 0) != 0) ? 1 : 0;
  auto flags = tandem::flags::Flags::Parse(argc - first, argv + first, {"tokenizer"},
                                           {"decode", "no-special", "help"});
  if (!flags.ok()) {
    std::cerr << kUsage;
    return Fail(std::string(flags.status().message()));
  }
  if (flags->Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  const std::string tokenizer_path = flags->Get("tokenizer");
  const bool decode = flags->Has("decode");
  const bool special = !flags->Has("no-special");
  if (tokenizer_path.empty()) {
    std::cerr << kUsage;
    return Fail("--tokenizer is required");
  }
  auto tokenizer = tandem::Tokenizer::Load(tokenizer_path);
  if (!tokenizer.ok()) return Fail(std::string(tokenizer.status().message()));

  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (decode) {
    std::vector<int32_t> ids;
    std::istringstream in(input);
    std::string word;
    while (in >> word) {
      auto id = tandem::flags::ParseInt("a token id", word, 0, std::numeric_limits<int32_t>::max());
      if (!id.ok()) return Fail(std::string(id.status().message()));
      ids.push_back(static_cast<int32_t>(*id));
    }
    auto text = (*tokenizer)->Decode(ids, /*skip_special_tokens=*/!special);
    if (!text.ok()) return Fail(std::string(text.status().message()));
    std::cout << *text;
    std::cout.flush();
    return 0;
  }
  auto ids = (*tokenizer)->Encode(input, /*add_special_tokens=*/special);
  if (!ids.ok()) return Fail(std::string(ids.status().message()));
  for (size_t i = 0; i < ids->size(); ++i) std::cout << (i ? " " : "") << (*ids)[i];
  std::cout << "\n";
  return 0;
}
