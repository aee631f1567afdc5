// CloudLink: LinkCore (the policy) driven by a Transport and two threads — a
// worker that connects, writes and wakes for deadlines, and a reader per stream.
#include "tandem/edge/cloud_link.h"

#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "link/link_core.h"
#include "link/transport.h"
#include "link/transport_registry.h"
#include "tandem/codec.h"
#include "tandem/status_macros.h"

namespace tandem::edge {
namespace {

std::string NewSessionId() {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device device;
  std::string id(32, 'x');  // 32 x 6 bits = 192 random bits
  for (char& c : id) c = kAlphabet[device() % 64];
  return id;
}

// One stream and its reader thread (worker thread only).
struct Connection {
  uint64_t id = 0;
  std::unique_ptr<link::TransportStream> stream;
  std::thread reader;
  absl::Notification reader_done;
};

}  // namespace

const char* ResyncPolicyName(ResyncPolicy p) {
  switch (p) {
    case ResyncPolicy::kAuto: return "auto";
    case ResyncPolicy::kHiddenStates: return "hidden_states";
    case ResyncPolicy::kTokenIds: return "token_ids";
  }
  return "?";
}

struct CloudLink::Impl {
  Impl(const CloudOptions& o, const CodecSpec& codec, link::ModelIdentity model,
       std::unique_ptr<link::Transport> t)
      : options(o), transport(std::move(t)), core(o, codec, std::move(model)) {}

  const CloudOptions options;
  std::unique_ptr<link::Transport> transport;
  ContextSink* forward = nullptr;

  mutable absl::Mutex mu;
  link::LinkCore core ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::unique_ptr<Connection> connection;  // worker thread only
  std::thread worker;

  void WorkerLoop();
  void ReaderLoop(Connection* connection);
  void Connect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void Disconnect(bool polite) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

absl::StatusOr<std::unique_ptr<CloudLink>> CloudLink::Create(const CloudOptions& options,
                                                             uint64_t fingerprint, int64_t split,
                                                             std::vector<int64_t> exit_layers,
                                                             int64_t hidden_size) {
  if (options.address.empty()) return absl::InvalidArgumentError("CloudOptions.address is empty");
  TANDEM_RETURN_IF_ERROR(options.Validate());
  absl::StatusOr<std::unique_ptr<link::Transport>> transport;
  if (options.transport) {
    transport = options.transport();
  } else if (link::TransportFactory factory = link::DefaultTransportFactory()) {
    transport = factory(options);
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        "collaborative mode (cloud address '", options.address,
        "') needs a transport and none is linked: link the CMake target Tandem::edge_grpc "
        "(tandem_edge_grpc in Tandem's tree) for gRPC, or set CloudOptions::transport"));
  }
  if (!transport.ok()) return transport.status();
  return CreateWithTransport(options, *std::move(transport), fingerprint, split,
                             std::move(exit_layers), hidden_size);
}

absl::StatusOr<std::unique_ptr<CloudLink>> CloudLink::CreateWithTransport(
    const CloudOptions& options, std::unique_ptr<link::Transport> transport, uint64_t fingerprint,
    int64_t split, std::vector<int64_t> exit_layers, int64_t hidden_size) {
  TANDEM_RETURN_IF_ERROR(options.Validate());
  absl::StatusOr<CodecSpec> codec = ParseCodecSpec(options.codec);
  if (!codec.ok()) return codec.status();
  if (transport == nullptr) return absl::InvalidArgumentError("CloudLink needs a transport");
  auto link = std::unique_ptr<CloudLink>(new CloudLink());
  link->impl_ = std::make_unique<Impl>(
      options, *codec, link::ModelIdentity{fingerprint, split, std::move(exit_layers), hidden_size},
      std::move(transport));
  Impl* impl = link->impl_.get();
  impl->worker = std::thread([impl] { impl->WorkerLoop(); });
  return link;
}

CloudLink::~CloudLink() {
  if (impl_ == nullptr) return;
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stop = true;
    impl_->core.Finish();
  }
  if (impl_->worker.joinable()) impl_->worker.join();
}

void CloudLink::set_forward(ContextSink* sink) { impl_->forward = sink; }

// --- decode thread ----------------------------------------------------------

void CloudLink::OnBegin(const SequenceInfo& info) {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->core.Begin(info, NewSessionId(), absl::Now());
  }
  if (impl_->forward != nullptr) impl_->forward->OnBegin(info);
}

void CloudLink::OnInput(int64_t first_position, absl::Span<const int32_t> ids) {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->core.Input(first_position, ids);
  }
  if (impl_->forward != nullptr) impl_->forward->OnInput(first_position, ids);
}

void CloudLink::OnContext(int64_t first_position, const at::Tensor& hidden_at_split) {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->core.Context(first_position, hidden_at_split, absl::Now());
  }
  if (impl_->forward != nullptr) impl_->forward->OnContext(first_position, hidden_at_split);
}

void CloudLink::OnTruncate(int64_t position) {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->core.Truncate(position);
  }
  if (impl_->forward != nullptr) impl_->forward->OnTruncate(position);
}

void CloudLink::OnFinish(int64_t next_position) {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->core.Finish();
  }
  if (impl_->forward != nullptr) impl_->forward->OnFinish(next_position);
}

absl::Status CloudLink::Submit(const ContinueRequest& request, absl::Time deadline) {
  absl::MutexLock lock(&impl_->mu);
  return impl_->core.Submit(request, deadline, absl::Now());
}

std::vector<CloudVerdict> CloudLink::TakeVerdicts(absl::Time wait_until) {
  absl::MutexLock lock(&impl_->mu);
  auto any = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return impl_->core.has_verdicts() || impl_->core.in_flight() == 0;
  };
  if (wait_until > absl::Now()) impl_->mu.AwaitWithDeadline(absl::Condition(&any), wait_until);
  return impl_->core.TakeVerdicts();
}

bool CloudLink::connected() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->core.ready();
}

bool CloudLink::WaitUntilConnected(absl::Time deadline) const {
  absl::MutexLock lock(&impl_->mu);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) { return impl_->core.ready(); };
  return impl_->mu.AwaitWithDeadline(absl::Condition(&ready), deadline);
}

bool CloudLink::WaitUntilUploaded(absl::Time deadline) const {
  absl::MutexLock lock(&impl_->mu);
  auto uploaded = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return impl_->core.uploaded();
  };
  return impl_->mu.AwaitWithDeadline(absl::Condition(&uploaded), deadline);
}

int64_t CloudLink::in_flight() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->core.in_flight();
}

CloudLinkStats CloudLink::stats() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->core.stats();
}

// --- worker and reader ----------------------------------------------------------

void CloudLink::Impl::ReaderLoop(Connection* conn) {
  wire::ServerMessage message;
  while (conn->stream->Read(&message)) {
    absl::MutexLock lock(&mu);
    core.Received(conn->id, message, absl::Now());
  }
  conn->reader_done.Notify();
  absl::MutexLock lock(&mu);
  core.StreamBroken(conn->id, absl::Now());
}

void CloudLink::Impl::Connect() {
  const std::string session_id = core.session_id();
  mu.Unlock();
  absl::StatusOr<std::unique_ptr<link::TransportStream>> stream =
      transport->Open(session_id, absl::Now() + options.connect_timeout);
  mu.Lock();
  if (!stream.ok()) {
    core.ConnectFailed(absl::Now());
    return;
  }
  auto conn = std::make_unique<Connection>();
  conn->stream = *std::move(stream);
  const wire::ClientMessage open = core.Opened(&conn->id);
  Connection* raw = conn.get();
  connection = std::move(conn);
  mu.Unlock();
  const bool written = raw->stream->Write(open);
  raw->reader = std::thread([this, raw] { ReaderLoop(raw); });
  mu.Lock();
  if (!written) core.StreamBroken(raw->id, absl::Now());
}

void CloudLink::Impl::Disconnect(bool polite) {
  if (connection == nullptr) {
    core.Disconnected(absl::Now());
    return;
  }
  Connection* conn = connection.get();
  mu.Unlock();
  if (polite) {
    wire::ClientMessage message;
    message.mutable_close();
    conn->stream->Write(message);
    conn->stream->WritesDone();
    // The server ends the stream after Close; don't wait long for it.
    conn->reader_done.WaitForNotificationWithTimeout(absl::Milliseconds(200));
  }
  conn->stream->Cancel();
  if (conn->reader.joinable()) conn->reader.join();
  mu.Lock();
  connection.reset();
  core.Disconnected(absl::Now());
}

void CloudLink::Impl::WorkerLoop() {
  absl::MutexLock lock(&mu);
  while (!stop) {
    link::LinkCore::Plan plan = core.Poll(absl::Now());
    if (plan.want == link::LinkCore::Want::kDisconnect) {
      Disconnect(plan.polite);
      continue;
    }
    if (plan.want == link::LinkCore::Want::kConnect) {
      if (connection != nullptr) Disconnect(/*polite=*/false);
      Connect();
      continue;
    }
    if (!plan.writes.empty() && connection != nullptr) {
      Connection* conn = connection.get();
      mu.Unlock();
      bool ok = true;
      for (const wire::ClientMessage& message : plan.writes) {
        if (!(ok = conn->stream->Write(message))) break;
      }
      mu.Lock();
      if (!ok) core.StreamBroken(conn->id, absl::Now());
      continue;
    }
    // Nothing to do until something changes or the plan's wake time.
    const uint64_t seen = core.version();
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return stop || core.version() != seen;
    };
    const absl::Time wake = std::min(plan.wake, absl::Now() + absl::Seconds(1));
    mu.AwaitWithDeadline(absl::Condition(&changed), wake);
  }
  core.Finish();
  if (connection != nullptr) Disconnect(/*polite=*/true);
}

}  // namespace tandem::edge
