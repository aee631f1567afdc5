// `tandem tokenize`: text on stdin -> ids on stdout (space-separated, one
// line), or with --decode ids on stdin -> text on stdout.
//
//   tandem tokenize --tokenizer FILE_OR_DIR [--decode] [--no-special]
//
// --no-special: when encoding, do not add the post-processor's special tokens
// (e.g. BOS); when decoding, drop special tokens from the output.
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
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
  std::string tokenizer_path;
  bool decode = false;
  bool special = true;
  // argv[0] is the sub-command name; tolerate callers that strip it too.
  int first = (argc > 0 && std::string(argv[0]).rfind("--", 0) != 0) ? 1 : 0;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--tokenizer" && i + 1 < argc) {
      tokenizer_path = argv[++i];
    } else if (arg.rfind("--tokenizer=", 0) == 0) {
      tokenizer_path = arg.substr(12);
    } else if (arg == "--decode") {
      decode = true;
    } else if (arg == "--no-special") {
      special = false;
    } else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else {
      std::cerr << kUsage;
      return Fail("unknown or incomplete argument: " + arg);
    }
  }
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
      char* end = nullptr;
      long v = std::strtol(word.c_str(), &end, 10);
      if (end == word.c_str() || *end != '\0' || v < INT32_MIN || v > INT32_MAX) {
        return Fail("not a token id: " + word);
      }
      ids.push_back(static_cast<int32_t>(v));
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
