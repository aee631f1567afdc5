// CloudOnlySession: the SDK side of cloud-only mode (DESIGN.md, "Modes to
// compare"): the device holds no weights, only the tokenizer; it sends the
// prompt's token ids and the cloud (`tandem-cloud`, Continuation.Generate) runs
// the whole model and streams the tokens back. This is the baseline the
// collaborative modes are compared against, and what an app uses when the
// device cannot run any layer.
//
//   tandem::edge::CloudOnlyOptions options;
//   options.model_dir = dir;                       // tokenizer only
//   options.cloud.address = "cloud.example.com:50051";
//   auto session = tandem::edge::CloudOnlySession::Create(options);
//   auto summary = (*session)->Generate("In the beginning", {},
//       [](const tandem::edge::TokenInfo& t) { std::cout << t.text; return true; });
//
// Unlike collaborative mode there is no fallback: an unreachable or failing
// cloud is an error (Unavailable, DeadlineExceeded, or the server's status).
//
// Thread-safety: Generate runs on the caller's thread and calls `on_token`
// there; one Generate at a time per session (a concurrent second call fails
// with FailedPrecondition). Cancel() may be called from any thread. No
// exception leaves this class.
//
// Library: Tandem::edge_grpc (it speaks gRPC directly; Tandem::edge alone does
// not define it).
#ifndef TANDEM_EDGE_CLOUD_ONLY_SESSION_H_
#define TANDEM_EDGE_CLOUD_ONLY_SESSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tandem/edge/cloud_options.h"
#include "tandem/edge/edge_session.h"
#include "tandem/tokenizer.h"

namespace tandem::edge {

struct CloudOnlyOptions {
  // Checkpoint directory the tokenizer is read from (tokenizer.json or
  // tokenizer.model). No weights are loaded.
  std::string model_dir;
  // Connection: address (required), api_key, tls_root_certs_file,
  // tls_server_name, connect_timeout and max_message_bytes are used; the
  // codec, upload and resync fields do not apply (no hidden state is sent).
  CloudOptions cloud;
  // Deadline of one whole Generate call (prefill and every token).
  absl::Duration generation_timeout = absl::Seconds(120);
  // SplitFingerprint the server's model must have; 0 = accept any model. The
  // server refuses a mismatch (FailedPrecondition).
  uint64_t expected_fingerprint = 0;
};

class CloudOnlySession {
 public:
  // Loads the tokenizer and creates the channel (connecting lazily).
  // InvalidArgument without an address; the tokenizer's errors; NotFound for
  // a missing TLS root file.
  static absl::StatusOr<std::unique_ptr<CloudOnlySession>> Create(const CloudOnlyOptions& options);
  ~CloudOnlySession();
  CloudOnlySession(const CloudOnlySession&) = delete;
  CloudOnlySession& operator=(const CloudOnlySession&) = delete;

  // Streams a continuation of `prompt`. GenerateOptions as for EdgeSession,
  // except that stop_strings are not supported here yet (InvalidArgument).
  // TokenInfo: source kCloud, exit_layer kCloudLayer, confidence NaN,
  // seconds = time since the previous token arrived (since the call began for
  // the first). GenerationSummary: prefill_seconds = time to the first token,
  // decode_seconds = the rest; counts.cloud = every token; cloud.bytes_up /
  // bytes_down = serialized messages; cloud.cloud_compute_seconds = the
  // server's own prefill + decode time; cloud.requests = 1.
  absl::StatusOr<GenerationSummary> Generate(
      const std::string& prompt, const GenerateOptions& options,
      const std::function<bool(const TokenInfo&)>& on_token = nullptr);
  // Same on token ids (TokenInfo::text stays empty).
  absl::StatusOr<GenerationSummary> GenerateIds(
      const std::vector<int32_t>& prompt_ids, const GenerateOptions& options,
      const std::function<bool(const TokenInfo&)>& on_token = nullptr);

  // Stops the running Generate (it returns OK with stop_reason kCancelled).
  void Cancel();

  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  CloudOnlySession() = default;
  absl::StatusOr<GenerationSummary> Run(const std::vector<int32_t>& prompt_ids,
                                        const GenerateOptions& options, bool with_text,
                                        const std::function<bool(const TokenInfo&)>& on_token);
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::atomic<bool> running_{false};
};

}  // namespace tandem::edge

#endif  // TANDEM_EDGE_CLOUD_ONLY_SESSION_H_
