// tandem_idle_streams: what idle session streams cost a `tandem-cloud`
// process — its threads and resident memory (/proc/<pid>/status) with 0, 100
// and 500 streams that send nothing ("silent") or only an Open ("open-only",
// each session at the model's full context), then after the clients leave.
// A fresh server for every row. Prints a Markdown table.
//
//   tandem_idle_streams --server build/cloud/tandem-cloud --model models/tandem-tiny \
//       --streams 0,100,500 --label after
//
// Loopback only; stops by itself. Any tandem-cloud binary works (--server of
// an older build gives the "before" figures).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "raw_client.h"
#include "server_process.h"
#include "tandem/fingerprint.h"
#include "tandem/flags.h"
#include "tandem/model.h"
#include "tandem/status_macros.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::load {
namespace {

constexpr int64_t kSplit = 4;

struct Row {
  std::string kind;
  int streams = 0;
  ProcessSample before, with, after;
};

absl::StatusOr<Row> Measure(const std::string& binary, const std::vector<std::string>& args,
                            uint64_t fingerprint, const std::string& kind, int n) {
  ServerProcess server(binary, args);
  TANDEM_RETURN_IF_ERROR(server.Start(0));
  Row row;
  row.kind = kind;
  row.streams = n;
  row.before = SettledSample(server.pid());
  std::vector<std::unique_ptr<e2e::RawClient>> clients;
  for (int i = 0; i < n; ++i) {
    clients.push_back(std::make_unique<e2e::RawClient>(server.address()));
    if (kind == "open-only") {
      wire::ClientMessage m;
      wire::Open* open = m.mutable_open();
      open->set_protocol_version(wire::kProtocolVersion);
      open->set_model_fingerprint(fingerprint);
      open->set_split(kSplit);
      open->mutable_codec()->set_format(wire::HIDDEN_FORMAT_FP32);
      open->set_session_id(absl::StrCat("idle-streams-session-", 100000 + i));
      clients.back()->Send(m);
    }
  }
  if (kind == "open-only") {
    for (auto& c : clients) {
      wire::ServerMessage reply;
      if (!c->Read(&reply)) return absl::UnavailableError("a stream ended before its Ack");
    }
  }
  if (!WaitForMetric(server.address(), "tandem_streams_active", n, absl::Seconds(60))) {
    return absl::DeadlineExceededError(absl::StrCat("the server never held ", n, " streams"));
  }
  row.with = SettledSample(server.pid());
  for (auto& c : clients) {
    c->Cancel();
    (void)c->Finish();
  }
  clients.clear();
  if (!WaitForMetric(server.address(), "tandem_streams_active", 0, absl::Seconds(60))) {
    return absl::DeadlineExceededError("the streams did not end");
  }
  row.after = SettledSample(server.pid());
  server.Stop();
  return row;
}

absl::Status Run(int argc, char** argv) {
  TANDEM_ASSIGN_OR_RETURN(flags::Flags f,
                          flags::Flags::Parse(argc - 1, argv + 1,
                                              {"server", "model", "streams", "label", "kinds"}, {}));
  if (!f.Has("server") || !f.Has("model")) {
    return absl::InvalidArgumentError("--server BIN and --model DIR are required");
  }
  TANDEM_ASSIGN_OR_RETURN(std::vector<int64_t> counts, f.GetIntList("streams", 0, 5000));
  if (counts.empty()) counts = {0, 100, 500};
  const std::string label = f.Get("label", "server");
  std::vector<std::string> kinds = {"silent", "open-only"};
  if (f.Has("kinds")) kinds = absl::StrSplit(f.Get("kinds"), ',');
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Load(f.Get("model")));
  TANDEM_ASSIGN_OR_RETURN(uint64_t fingerprint, SplitFingerprint(*model, kSplit));
  model.reset();
  const std::vector<std::string> args = {"--model", f.Get("model"), "--split",
                                         std::to_string(kSplit), "--quiet",
                                         "--stats-interval", "0", "--threads", "1"};
  std::cout << "| server | streams | kind | threads: before | with streams | after | "
               "RSS MiB: before | with streams | after |\n"
               "|---|---:|---|---:|---:|---:|---:|---:|---:|\n";
  for (const std::string& kind : kinds) {
    for (int64_t n : counts) {
      if (n == 0 && kind != kinds.front()) continue;
      TANDEM_ASSIGN_OR_RETURN(Row row, Measure(f.Get("server"), args, fingerprint, kind,
                                               static_cast<int>(n)));
      std::cout << absl::StrFormat("| %s | %d | %s | %d | %d | %d | %.0f | %.0f | %.0f |\n", label,
                                   row.streams, n == 0 ? "-" : row.kind, row.before.threads,
                                   row.with.threads, row.after.threads, row.before.rss_kib / 1024.0,
                                   row.with.rss_kib / 1024.0, row.after.rss_kib / 1024.0)
                << std::flush;
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace tandem::load

int main(int argc, char** argv) {
  absl::Status status = tandem::load::Run(argc, argv);
  if (!status.ok()) {
    std::cerr << "tandem_idle_streams: " << status << "\n";
    return 1;
  }
  return 0;
}
