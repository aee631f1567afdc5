// Fixtures for loopback end-to-end tests: the shipped model's halves (loaded
// once per process), in-process servers on free ports, collaborative edge
// options, prompts from the committed test slice, and the full model's
// teacher-forced predictions to measure agreement.
#ifndef TANDEM_TESTS_E2E_LOOPBACK_H_
#define TANDEM_TESTS_E2E_LOOPBACK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tandem/cloud/server.h"
#include "tandem/edge/edge_session.h"
#include "tandem/model.h"

namespace tandem::e2e {

std::string ShippedModelDir();
// The cloud half of the shipped model at its calibrated split (4), shared.
std::shared_ptr<const cloud::CloudModel> ShippedCloudModel();
// The whole shipped model, for references.
const Model& ShippedFullModel();

// A server on 127.0.0.1:`port` (0 = a free port) serving the shipped model.
std::unique_ptr<cloud::CloudServer> StartServer(cloud::ServerOptions options = {}, int port = 0);

// Edge options for the shipped model against `address` with `codec`. With
// `never_exit` every exit threshold is +inf, so every token is asked from the
// cloud (the split-exactness setting); otherwise the calibrated thresholds.
edge::EdgeOptions CollaborativeOptions(const std::string& address, const std::string& codec,
                                       bool never_exit);

// `count` different prompts of `length` tokens from tests/data/corpus/test_slice.txt.
std::vector<std::vector<int32_t>> Prompts(int count, int length);

// Greedy generation with the full model (the reference), EOS not stopping.
std::vector<int32_t> FullGreedy(const std::vector<int32_t>& prompt, int new_tokens);

// For each generated token g[i], whether it equals the full model's greedy
// choice given prompt + g[0..i) (teacher-forced along the produced sequence).
std::vector<bool> AgreesWithFull(const std::vector<int32_t>& prompt,
                                 const std::vector<int32_t>& generated);

// Teacher-forced collaborative decisions over `windows` of text (each window is
// one sequence: its first token is the prompt, then the text is fed token by
// token), compared with the full model's greedy choices.
struct TeacherForcedResult {
  int64_t positions = 0;
  int64_t agreed = 0;           // decided token == the full model's
  int64_t promised_agreed = 0;  // the calibration rule: exit token where an exit fired, else full
  int64_t at_edge = 0, cloud = 0, fallback = 0;
  double agreement() const { return positions ? double(agreed) / positions : 0; }
  double promised_agreement() const { return positions ? double(promised_agreed) / positions : 0; }
};
TeacherForcedResult TeacherForced(const edge::EdgeOptions& options,
                                  const std::vector<std::vector<int32_t>>& windows);

// Generation options used throughout: greedy, EOS does not stop.
edge::GenerateOptions Greedy(int new_tokens);

}  // namespace tandem::e2e

#endif  // TANDEM_TESTS_E2E_LOOPBACK_H_
