// SuiteRunner: runs the benchmark suite's measurements in one process — a
// `tandem-cloud` server (in-process, on loopback), the link emulator in front
// of it, and edge sessions of every mode talking to it over real gRPC
// (DESIGN.md, "Modes to compare"). bench/README.md explains every figure.
//
// Thread-safety: single-threaded (one measurement at a time).
#ifndef TANDEM_BENCH_SUITE_SUITE_RUNNER_H_
#define TANDEM_BENCH_SUITE_SUITE_RUNNER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/bench/link_emulator.h"

namespace tandem::bench {

// The modes of DESIGN.md. Names are what results and reports use.
//   cloud-only       the prompt goes up, the cloud runs the whole model, tokens stream down
//   edge-full        the whole model on the edge, no network
//   naive-split      every token's hidden state at S goes up (fp16) and the edge waits
//   standalone       edge layers + exits, never the network
//   collab-blocking  early exit + context upload + cloud continuation, waiting per answer
//   collab-pipelined the same with drafts verified in flight (CloudOptions'
//                    default window: max_in_flight 32, adaptive), confirmed delivery
// naive-split and collab-blocking pin CloudOptions::max_in_flight = 0.
const std::vector<std::string>& AllModes();
bool ModeUsesNetwork(const std::string& mode);

struct SuiteOptions {
  std::string model_dir;
  // Held-out text: prompts and teacher-forced windows are cut from it.
  std::string text_file;
  int threads = 1;              // compute threads (edge and cloud each; torch + BLAS)
  int64_t split = 0;            // 0 = exits.json's
  // For models without trained exits (the scale run): fresh heads at these
  // thresholds (max-prob), applied to every exit.
  bool fresh_heads = false;
  std::vector<int64_t> exit_layers;
  double fresh_threshold = 0.5;
  std::string headline_codec = "int8";
  // Drop-and-recover: a black-hole cut this long into each generation, this long.
  absl::Duration drop_after = absl::Milliseconds(250);
  absl::Duration drop_length = absl::Milliseconds(1500);
  absl::Duration request_timeout = absl::Seconds(1);
};

// One generation in one setting.
struct GenerationRecord {
  std::string mode, profile, codec;
  double compute_ratio = 1;
  int prompt_index = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  bool ok = true;
  std::string error;
  double ttft_s = 0;                    // call to first token
  std::vector<double> itl_s;            // between consecutive tokens
  double total_s = 0;
  int64_t wire_bytes_up = 0;            // through the link emulator (TCP payload)
  int64_t wire_bytes_down = 0;
  int64_t message_bytes_up = 0;         // serialized gRPC messages (SDK counters)
  int64_t message_bytes_down = 0;
  int64_t round_trips = 0;              // waits on the cloud (Continue requests; 1 for cloud-only)
  int64_t failed_requests = 0;
  int64_t resyncs = 0;
  double cloud_busy_s = 0;              // server time in the model
  double cloud_flops = 0;               // counted from shapes
  int64_t cloud_rows = 0;               // rows the cloud ran through its layers
  int64_t edge_tokens = 0;              // decided by an exit on the edge
  int64_t cloud_tokens = 0;
  int64_t fallback_tokens = 0;
  double nll_sum = 0;                   // of the generated tokens under the full model, nats
  // Pipelined verification (edge::SpeculationStats; zero for the other modes).
  int64_t drafts = 0, drafts_accepted = 0, drafts_rejected = 0, drafts_unverified = 0;
  int64_t rolled_back = 0;              // tokens dropped by rollbacks
  int64_t wasted_steps = 0;             // edge decode steps a rollback discarded
  double speculation_wait_s = 0;        // decode thread blocked on verdicts
  double mean_in_flight = 0;
  int32_t final_window = 0;
  int64_t agree_along_output = 0;       // tokens equal to the full model's greedy choice given
                                        // the produced prefix
  std::vector<int32_t> ids;
};

// Teacher-forced decisions over held-out windows, as calibration measures.
struct TeacherForcedRecord {
  std::string mode, codec;
  int64_t positions = 0, agreed = 0, promised_agreed = 0;
  int64_t at_edge = 0, cloud = 0, fallback = 0;
  int64_t message_bytes_up = 0;         // SDK counters over the whole pass
  double seconds = 0;
};

// A point of the agreement-vs-edge-share curve (thresholds scaled by `scale`),
// measured with the calibration rule (exits, else the full model) in-process.
struct SweepPoint {
  double scale = 1, coverage = 0, agreement = 0;
};

// Per-token compute measured at start-up (for the compute-ratio emulation):
// the lower decile of decode steps and the fastest prefill, over the prompts
// given to Calibrate.
struct ComputeCalibration {
  double edge_prefill_s = 0, edge_step_s = 0;
  double full_prefill_s = 0, full_step_s = 0;
};

class SuiteRunner {
 public:
  static absl::StatusOr<std::unique_ptr<SuiteRunner>> Create(const SuiteOptions& options);
  ~SuiteRunner();

  // `count` prompts of `length` tokens from the text (deterministic).
  std::vector<std::vector<int32_t>> Prompts(int count, int length) const;
  // Windows of `length` tokens after the prompts' region.
  std::vector<std::vector<int32_t>> Windows(int count, int length) const;

  absl::StatusOr<ComputeCalibration> Calibrate(const std::vector<std::vector<int32_t>>& prompts,
                                               int tokens);

  // One generation. Errors are recorded in the record (ok = false), not
  // returned: a cloud-only run across a cut fails, and that is a result.
  // `compute_ratio` > 1 emulates an edge that many times slower than this
  // CPU by sleeping (ratio - 1) x the calibrated edge compute per token.
  GenerationRecord Generate(const std::string& mode, const std::string& profile,
                            const std::string& codec, double compute_ratio, int prompt_index,
                            const std::vector<int32_t>& prompt, int tokens,
                            const ComputeCalibration& calibration);

  absl::StatusOr<TeacherForcedRecord> TeacherForced(const std::string& mode,
                                                    const std::string& codec,
                                                    const std::vector<std::vector<int32_t>>& windows);

  absl::StatusOr<std::vector<SweepPoint>> Sweep(const std::vector<double>& scales, int64_t tokens);

  // Model facts for the report: layers, split, exits, weight bytes.
  std::map<std::string, double> ModelFacts() const;
  LinkEmulator& link();

 private:
  SuiteRunner() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::bench

#endif  // TANDEM_BENCH_SUITE_SUITE_RUNNER_H_
