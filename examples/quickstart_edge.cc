// Quickstart: an edge app that streams text from a checkpoint directory in
// standalone mode (edge layers + exit heads, no network).
//   quickstart_edge DIR "In the beginning"
#include <iostream>

#include "tandem/edge/edge_session.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: quickstart_edge MODEL_DIR [PROMPT]\n";
    return 2;
  }
  tandem::edge::EdgeOptions options;
  options.model_dir = argv[1];           // split, exits, thresholds: from exits.json
  auto session = tandem::edge::EdgeSession::Create(options);
  if (!session.ok()) {
    std::cerr << session.status() << "\n";
    return 1;
  }
  const std::string prompt = argc > 2 ? argv[2] : "In the beginning";
  tandem::edge::GenerateOptions request;
  request.max_new_tokens = 48;
  std::cout << prompt;
  auto summary = (*session)->Generate(prompt, request, [](const tandem::edge::TokenInfo& t) {
    std::cout << t.text << std::flush;   // t.exit_layer says which exit decided it
    return true;                         // false stops generation
  });
  std::cout << "\n";
  if (!summary.ok()) {
    std::cerr << summary.status() << "\n";
    return 1;
  }
  std::cerr << summary->generated_tokens << " tokens in " << summary->total_seconds << " s\n";
  return 0;
}
