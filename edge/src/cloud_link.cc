#include "tandem/edge/cloud_link.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <thread>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tandem/codec.h"
#include "tandem/wire/tandem.grpc.pb.h"
#include "wire_convert.h"

namespace tandem::edge {
namespace {

using ClientStream = grpc::ClientReaderWriter<wire::ClientMessage, wire::ServerMessage>;

std::string NewSessionId() {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::random_device device;
  std::string id(32, 'x');  // 32 x 6 bits = 192 random bits
  for (char& c : id) c = kAlphabet[device() % 64];
  return id;
}

// One stream to the server: its context, the stream and its reader thread.
struct Connection {
  grpc::ClientContext context;
  std::unique_ptr<ClientStream> stream;
  std::thread reader;
  absl::Notification reader_done;
};

// The answer to the outstanding Continue.
struct Request {
  uint64_t id = 0;
  int64_t position = 0;
  bool sent = false;  // written on the current epoch
  bool done = false;
  absl::StatusOr<int32_t> result = absl::UnknownError("no answer");
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
  CloudOptions options;
  CodecSpec codec;
  uint64_t fingerprint = 0;
  int64_t split = 0;
  std::vector<int64_t> exit_layers;
  int64_t hidden_size = 0;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<wire::Continuation::Stub> stub;
  ContextSink* forward = nullptr;

  mutable absl::Mutex mu;
  // --- the sequence (decode thread writes, worker reads) ---
  bool active ABSL_GUARDED_BY(mu) = false;
  uint64_t generation ABSL_GUARDED_BY(mu) = 0;  // bumped by OnBegin / OnFinish
  std::string session_id ABSL_GUARDED_BY(mu);
  SequenceInfo info ABSL_GUARDED_BY(mu);
  std::vector<int32_t> ids ABSL_GUARDED_BY(mu);       // ids[p] = token fed at p
  std::vector<at::Tensor> rows ABSL_GUARDED_BY(mu);   // fp32 chunks, in order
  std::vector<int64_t> row_firsts ABSL_GUARDED_BY(mu);
  int64_t rows_available ABSL_GUARDED_BY(mu) = 0;
  // Rows the uploader may send as context: the newest row is held back until
  // the decode thread's next event, because a Continue for it may follow (and
  // carries it); a row sent as context can no longer be asked about.
  int64_t releasable ABSL_GUARDED_BY(mu) = 0;
  absl::Time oldest_unsent ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
  std::optional<Request> request ABSL_GUARDED_BY(mu);
  uint64_t next_request_id ABSL_GUARDED_BY(mu) = 0;
  // --- the stream (worker + reader) ---
  enum class LinkState { kDown, kOpening, kReady };
  LinkState state ABSL_GUARDED_BY(mu) = LinkState::kDown;
  uint64_t stream_generation ABSL_GUARDED_BY(mu) = 0;  // `generation` the stream serves (0: none)
  bool stream_broken ABSL_GUARDED_BY(mu) = false;
  uint32_t epoch ABSL_GUARDED_BY(mu) = 0;
  int64_t sent_next ABSL_GUARDED_BY(mu) = 0;  // next position to send on this epoch
  bool token_resync_allowed ABSL_GUARDED_BY(mu) = false;
  // The cloud ran out of memory for a token-id rebuild (it needs a second
  // cache for [0, S)): replay hidden states for the rest of the sequence.
  bool tokens_refused ABSL_GUARDED_BY(mu) = false;
  bool replaying ABSL_GUARDED_BY(mu) = false;  // sending positions the cloud lost
  absl::Time next_connect ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  int64_t attempts ABSL_GUARDED_BY(mu) = 0;      // connection attempts this sequence
  absl::Duration backoff ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;
  CloudLinkStats stats ABSL_GUARDED_BY(mu);
  std::unique_ptr<Connection> connection;  // worker thread only
  std::thread worker;

  void WorkerLoop();
  void ReaderLoop(Connection* connection, uint64_t stream_gen);
  // Worker: opens a stream for the current sequence; false on failure.
  bool Connect() ABSL_LOCKS_EXCLUDED(mu);
  // Worker: closes the stream (Close message if `polite`) and joins its reader.
  void Disconnect(bool polite) ABSL_LOCKS_EXCLUDED(mu);
  // Worker: writes one message; false when the stream broke.
  bool Write(const wire::ClientMessage& message, int64_t* bytes) ABSL_LOCKS_EXCLUDED(mu);
  // Rows [begin, end) of the history as one [N, D] fp32 tensor.
  at::Tensor RowsLocked(int64_t begin, int64_t end) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void FailRequestLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void MarkBrokenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

absl::StatusOr<std::unique_ptr<CloudLink>> CloudLink::Create(const CloudOptions& options,
                                                             uint64_t fingerprint, int64_t split,
                                                             std::vector<int64_t> exit_layers,
                                                             int64_t hidden_size) {
  if (options.address.empty()) return absl::InvalidArgumentError("CloudOptions.address is empty");
  absl::StatusOr<CodecSpec> codec = ParseCodecSpec(options.codec);
  if (!codec.ok()) return codec.status();
  if (options.request_timeout <= absl::ZeroDuration() ||
      options.connect_timeout <= absl::ZeroDuration() ||
      options.reconnect_initial_backoff <= absl::ZeroDuration() ||
      options.reconnect_max_backoff < options.reconnect_initial_backoff) {
    return absl::InvalidArgumentError("cloud timeouts and backoffs must be positive");
  }
  if (options.upload_batch_rows < 1) {
    return absl::InvalidArgumentError("upload_batch_rows must be >= 1");
  }
  if (options.max_message_bytes < 1024 ||
      options.max_message_bytes > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes ", options.max_message_bytes, " must be in [1024, 2147483647]"));
  }
  if (options.tls_client_cert_file.empty() != options.tls_client_key_file.empty() ||
      (!options.tls_client_cert_file.empty() && options.tls_root_certs_file.empty())) {
    return absl::InvalidArgumentError(
        "mutual TLS needs a client certificate, its key and tls_root_certs_file");
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!options.tls_root_certs_file.empty()) {
    std::ifstream in(options.tls_root_certs_file);
    if (!in) {
      return absl::NotFoundError(absl::StrCat("cannot read ", options.tls_root_certs_file));
    }
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    for (auto [path, out] : {std::pair{&options.tls_client_cert_file, &ssl.pem_cert_chain},
                             std::pair{&options.tls_client_key_file, &ssl.pem_private_key}}) {
      if (path->empty()) continue;
      std::ifstream file(*path);
      if (!file) return absl::NotFoundError(absl::StrCat("cannot read ", *path));
      std::stringstream text;
      text << file.rdbuf();
      *out = text.str();
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // Our own backoff decides when to retry; keep gRPC's from adding seconds.
  const int max_backoff_ms = static_cast<int>(absl::ToInt64Milliseconds(options.reconnect_max_backoff));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, std::max(50, max_backoff_ms));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);

  auto link = std::unique_ptr<CloudLink>(new CloudLink());
  link->impl_ = std::make_unique<Impl>();
  Impl& impl = *link->impl_;
  impl.options = options;
  impl.codec = *codec;
  impl.fingerprint = fingerprint;
  impl.split = split;
  impl.exit_layers = std::move(exit_layers);
  impl.hidden_size = hidden_size;
  impl.channel = grpc::CreateCustomChannel(options.address, credentials, args);
  impl.stub = wire::Continuation::NewStub(impl.channel);
  {
    absl::MutexLock lock(&impl.mu);
    impl.backoff = options.reconnect_initial_backoff;
  }
  impl.worker = std::thread([&impl] { impl.WorkerLoop(); });
  return link;
}

CloudLink::~CloudLink() {
  if (impl_ == nullptr) return;
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->stop = true;
    impl_->active = false;
    impl_->FailRequestLocked(absl::CancelledError("the cloud link is shutting down"));
  }
  if (impl_->worker.joinable()) impl_->worker.join();
}

void CloudLink::set_forward(ContextSink* sink) { impl_->forward = sink; }

// --- decode thread ----------------------------------------------------------

void CloudLink::OnBegin(const SequenceInfo& info) {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->FailRequestLocked(absl::CancelledError("a new sequence began"));
    impl_->active = true;
    ++impl_->generation;
    impl_->session_id = NewSessionId();
    impl_->info = info;
    impl_->ids.clear();
    impl_->rows.clear();
    impl_->row_firsts.clear();
    impl_->rows_available = 0;
    impl_->releasable = 0;
    impl_->oldest_unsent = absl::InfiniteFuture();
    impl_->next_connect = absl::InfinitePast();  // a new sequence tries at once
    impl_->attempts = 0;
    impl_->tokens_refused = false;
    impl_->backoff = impl_->options.reconnect_initial_backoff;
  }
  if (impl_->forward != nullptr) impl_->forward->OnBegin(info);
}

void CloudLink::OnInput(int64_t first_position, absl::Span<const int32_t> ids) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (first_position == static_cast<int64_t>(impl_->ids.size())) {
      impl_->ids.insert(impl_->ids.end(), ids.begin(), ids.end());
    }
    impl_->releasable = impl_->rows_available;  // a new step: nobody asks about old rows
  }
  if (impl_->forward != nullptr) impl_->forward->OnInput(first_position, ids);
}

void CloudLink::OnContext(int64_t first_position, const at::Tensor& hidden_at_split) {
  {
    absl::MutexLock lock(&impl_->mu);
    if (first_position == impl_->rows_available && hidden_at_split.size(0) > 0) {
      impl_->rows.push_back(hidden_at_split.detach().to(at::kFloat).contiguous().clone());
      impl_->row_firsts.push_back(first_position);
      impl_->rows_available += hidden_at_split.size(0);
      impl_->releasable = impl_->rows_available - 1;
      if (impl_->oldest_unsent == absl::InfiniteFuture()) impl_->oldest_unsent = absl::Now();
    }
  }
  if (impl_->forward != nullptr) impl_->forward->OnContext(first_position, hidden_at_split);
}

void CloudLink::OnFinish(int64_t next_position) {
  {
    absl::MutexLock lock(&impl_->mu);
    impl_->FailRequestLocked(absl::CancelledError("the sequence ended"));
    impl_->releasable = impl_->rows_available;
    impl_->active = false;
    ++impl_->generation;
  }
  if (impl_->forward != nullptr) impl_->forward->OnFinish(next_position);
}

absl::StatusOr<int32_t> CloudLink::Continue(int64_t position, const at::Tensor& hidden_at_split,
                                            const SamplingParams& sampling, absl::Time deadline) {
  (void)hidden_at_split;  // the same row is in the history (handed to OnContext first)
  (void)sampling;         // the session samples with the params given at OnBegin
  const absl::Time start = absl::Now();
  absl::MutexLock lock(&impl_->mu);
  ++impl_->stats.requests;
  if (!impl_->active) {
    ++impl_->stats.failed_requests;
    return absl::FailedPreconditionError("no sequence is active on the cloud link");
  }
  if (position >= impl_->rows_available) {
    ++impl_->stats.failed_requests;
    return absl::InternalError("Continue for a row the link was not given");
  }
  if (impl_->state != Impl::LinkState::kReady) {
    // The sequence's first connection (or a stream already waiting for its
    // Ack) is worth waiting for; a link that failed and is reconnecting in the
    // background is not: the edge decides at once.
    const bool opening = impl_->state == Impl::LinkState::kOpening ||
                         (impl_->attempts == 0 && impl_->active);
    const int64_t failures = impl_->stats.connect_failures;
    auto settled = [this, failures]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
      return impl_->state == Impl::LinkState::kReady || !impl_->active ||
             impl_->stats.connect_failures != failures;
    };
    if (opening) impl_->mu.AwaitWithDeadline(absl::Condition(&settled), deadline);
    if (impl_->state != Impl::LinkState::kReady) {
      ++impl_->stats.failed_requests;
      impl_->stats.last_error = absl::StrCat(
          "the cloud is not connected (opening=", opening, " state=", static_cast<int>(impl_->state),
          " attempts=", impl_->attempts, " connect failures +",
          impl_->stats.connect_failures - failures, ")");
      return absl::UnavailableError("the cloud is not connected");
    }
  }
  Request request;
  request.id = ++impl_->next_request_id;
  request.position = position;
  const uint64_t id = request.id;
  impl_->request = std::move(request);
  auto answered = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return !impl_->request.has_value() || impl_->request->id != id || impl_->request->done;
  };
  impl_->mu.AwaitWithDeadline(absl::Condition(&answered), deadline);
  absl::StatusOr<int32_t> result = absl::DeadlineExceededError("the cloud did not answer in time");
  if (impl_->request.has_value() && impl_->request->id == id) {
    if (impl_->request->done) result = impl_->request->result;
    impl_->request.reset();  // a late answer finds no request and is dropped
  } else {
    result = absl::CancelledError("the request was cancelled");
  }
  if (result.ok()) {
    ++impl_->stats.cloud_tokens;
    impl_->stats.request_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  } else {
    ++impl_->stats.failed_requests;
    impl_->stats.last_error = result.status().ToString();
  }
  return result;
}

bool CloudLink::connected() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->state == Impl::LinkState::kReady;
}

bool CloudLink::WaitUntilConnected(absl::Time deadline) const {
  absl::MutexLock lock(&impl_->mu);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return impl_->state == Impl::LinkState::kReady;
  };
  return impl_->mu.AwaitWithDeadline(absl::Condition(&ready), deadline);
}

bool CloudLink::WaitUntilUploaded(absl::Time deadline) const {
  absl::MutexLock lock(&impl_->mu);
  auto uploaded = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl_->mu) {
    return impl_->state == Impl::LinkState::kReady && impl_->sent_next >= impl_->releasable;
  };
  return impl_->mu.AwaitWithDeadline(absl::Condition(&uploaded), deadline);
}

CloudLinkStats CloudLink::stats() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->stats;
}

// --- worker -----------------------------------------------------------------

void CloudLink::Impl::FailRequestLocked(const absl::Status& status) {
  if (request.has_value() && !request->done) {
    request->done = true;
    request->result = status;
  }
}

void CloudLink::Impl::MarkBrokenLocked() {
  stream_broken = true;
  state = LinkState::kDown;
  if (request.has_value() && !request->done) {
    FailRequestLocked(absl::UnavailableError("the connection to the cloud was lost"));
  }
}

at::Tensor CloudLink::Impl::RowsLocked(int64_t begin, int64_t end) const {
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int64_t first = row_firsts[i], n = rows[i].size(0);
    const int64_t lo = std::max(begin, first), hi = std::min(end, first + n);
    if (lo < hi) parts.push_back(rows[i].narrow(0, lo - first, hi - lo));
  }
  return parts.size() == 1 ? parts[0] : at::cat(parts, 0);
}

bool CloudLink::Impl::Write(const wire::ClientMessage& message, int64_t* bytes) {
  *bytes = static_cast<int64_t>(message.ByteSizeLong());
  return connection != nullptr && connection->stream->Write(message);
}

bool CloudLink::Impl::Connect() {
  std::string id;
  SequenceInfo seq;
  uint64_t gen = 0;
  int64_t resume = 0;
  {
    absl::MutexLock lock(&mu);
    id = session_id;
    seq = info;
    gen = generation;
    // Resuming the same sequence on a new stream: the cloud may still hold
    // what was sent (it says so), else it asks for a resync.
    resume = stream_generation == gen ? sent_next : 0;
  }
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 absl::ToChronoMilliseconds(options.connect_timeout))) {
    return false;
  }
  auto conn = std::make_unique<Connection>();
  if (!options.api_key.empty()) {
    conn->context.AddMetadata("authorization", absl::StrCat("Bearer ", options.api_key));
  }
  conn->context.AddMetadata("tandem-session", id);
  conn->stream = stub->Session(&conn->context);
  if (conn->stream == nullptr) return false;
  wire::ClientMessage message;
  wire::Open* open = message.mutable_open();
  open->set_protocol_version(wire::kProtocolVersion);
  open->set_model_fingerprint(fingerprint);
  open->set_split(static_cast<uint32_t>(split));
  for (int64_t e : exit_layers) open->add_exit_layers(static_cast<uint32_t>(e));
  wire::ToProto(codec, open->mutable_codec());
  wire::ToProto(seq.sampling, open->mutable_sampling());
  open->set_session_id(id);
  open->set_capacity(static_cast<uint32_t>(seq.capacity));
  open->set_resume_next_position(static_cast<uint32_t>(resume));
  const int64_t bytes = static_cast<int64_t>(message.ByteSizeLong());
  if (!conn->stream->Write(message)) {
    conn->context.TryCancel();
    conn->stream->Finish();
    return false;
  }
  Connection* raw = conn.get();
  {
    absl::MutexLock lock(&mu);
    stats.bytes_up += bytes;
    state = LinkState::kOpening;
    stream_generation = gen;
    stream_broken = false;
    epoch = 0;
    sent_next = resume;
  }
  connection = std::move(conn);
  raw->reader = std::thread([this, raw, gen] { ReaderLoop(raw, gen); });
  return true;
}

void CloudLink::Impl::Disconnect(bool polite) {
  if (connection == nullptr) return;
  if (polite) {
    // A stream retired on purpose: its reader must not report it broken (that
    // would fail the next sequence's request and delay its connection).
    absl::MutexLock lock(&mu);
    stream_generation = 0;
  }
  if (polite) {
    wire::ClientMessage message;
    message.mutable_close();
    int64_t bytes = 0;
    if (Write(message, &bytes)) {
      absl::MutexLock lock(&mu);
      stats.bytes_up += bytes;
    }
    connection->stream->WritesDone();
    // The server ends the stream after Close; don't wait long for it.
    connection->reader_done.WaitForNotificationWithTimeout(absl::Milliseconds(200));
  }
  connection->context.TryCancel();
  if (connection->reader.joinable()) connection->reader.join();
  connection.reset();
  absl::MutexLock lock(&mu);
  state = LinkState::kDown;
}

void CloudLink::Impl::ReaderLoop(Connection* conn, uint64_t stream_gen) {
  wire::ServerMessage message;
  while (conn->stream->Read(&message)) {
    absl::MutexLock lock(&mu);
    stats.bytes_down += static_cast<int64_t>(message.ByteSizeLong());
    if (stream_gen != stream_generation) continue;  // a stream being torn down
    switch (message.kind_case()) {
      case wire::ServerMessage::kToken: {
        const wire::Token& token = message.token();
        stats.cloud_compute_seconds += token.compute_ms() / 1e3;
        if (request.has_value() && request->id == token.request_id() && !request->done) {
          request->done = true;
          request->result = token.token_id();
        }
        break;
      }
      case wire::ServerMessage::kAck: {
        if (state == LinkState::kOpening) {
          state = LinkState::kReady;
          token_resync_allowed = message.ack().token_resync();
          sent_next = message.ack().next_position();
          backoff = options.reconnect_initial_backoff;
        }
        break;
      }
      case wire::ServerMessage::kResync: {
        const wire::ResyncRequired& resync = message.resync();
        if (resync.epoch() <= epoch && state == LinkState::kReady) break;  // already handled
        epoch = resync.epoch();
        sent_next = std::min<int64_t>(resync.next_position(), rows_available);
        token_resync_allowed = resync.token_resync();
        replaying = true;
        state = LinkState::kReady;
        backoff = options.reconnect_initial_backoff;
        ++stats.resyncs;
        if (request.has_value() && !request->done) request->sent = false;  // resend after replay
        break;
      }
      case wire::ServerMessage::kError: {
        const wire::Error& error = message.error();
        const absl::Status status(static_cast<absl::StatusCode>(error.code()),
                                  absl::StrCat("cloud: ", error.message()));
        if (request.has_value() && !request->done &&
            (error.request_id() == request->id || error.fatal())) {
          request->done = true;
          request->result = status;
        }
        if (error.code() == static_cast<int32_t>(absl::StatusCode::kResourceExhausted)) {
          tokens_refused = true;
        }
        if (error.fatal()) MarkBrokenLocked();
        break;
      }
      default:
        break;
    }
  }
  conn->stream->Finish();
  conn->reader_done.Notify();
  absl::MutexLock lock(&mu);
  if (stream_gen == stream_generation) MarkBrokenLocked();
}

void CloudLink::Impl::WorkerLoop() {
  absl::MutexLock lock(&mu);
  while (true) {
    // Wake on any change; the timeout paces batching delays and backoff.
    const absl::Time now = absl::Now();
    absl::Duration wait = absl::Seconds(1);
    if (active && connection == nullptr) wait = std::max(absl::ZeroDuration(), next_connect - now);
    if (state == LinkState::kReady && releasable > sent_next) {
      wait = std::min(wait, std::max(absl::ZeroDuration(),
                                     oldest_unsent + options.upload_max_delay - now));
    }
    const uint64_t seen_generation = generation;
    const int64_t seen_rows = releasable;
    const int64_t seen_sent = sent_next;
    const uint32_t seen_epoch = epoch;
    const LinkState seen_state = state;
    const bool seen_request = request.has_value() && !request->sent && !request->done;
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return stop || generation != seen_generation || releasable != seen_rows ||
             sent_next != seen_sent || epoch != seen_epoch || state != seen_state ||
             (request.has_value() && !request->sent && !request->done) != seen_request ||
             (stream_broken && connection != nullptr);
    };
    if (!changed() && wait > absl::ZeroDuration()) {
      mu.AwaitWithTimeout(absl::Condition(&changed), wait);
    }
    if (stop) break;

    // The stream must serve the current sequence, or nothing.
    const bool stale = connection != nullptr && (!active || stream_generation != generation);
    if (stale || (connection != nullptr && stream_broken)) {
      const bool polite = !stream_broken;
      mu.Unlock();
      Disconnect(polite);
      mu.Lock();
      if (stream_broken && active) {
        next_connect = absl::Now() + backoff;
        backoff = std::min(backoff * 2, options.reconnect_max_backoff);
      }
      stream_broken = false;
      continue;
    }
    if (!active) continue;
    if (connection == nullptr) {
      if (absl::Now() < next_connect) continue;
      mu.Unlock();
      const bool ok = Connect();
      mu.Lock();
      ++attempts;
      if (ok) {
        ++stats.connects;
      } else {
        ++stats.connect_failures;
        next_connect = absl::Now() + backoff;
        backoff = std::min(backoff * 2, options.reconnect_max_backoff);
      }
      continue;
    }
    if (state != LinkState::kReady) continue;

    // What to send: everything before a pending request's position plus the
    // request itself; otherwise a batch of context when it is due.
    const bool want_request = request.has_value() && !request->sent && !request->done;
    int64_t context_end = sent_next;
    if (want_request) {
      context_end = request->position;
    } else if (releasable - sent_next >= options.upload_batch_rows ||
               (releasable > sent_next &&
                absl::Now() - oldest_unsent >= options.upload_max_delay)) {
      context_end = releasable;
    }
    if (want_request && request->position < sent_next) {
      // The cloud already has this row (sent as context): it cannot be asked.
      FailRequestLocked(absl::FailedPreconditionError("the row was already uploaded"));
      continue;
    }
    if (context_end <= sent_next && !want_request) continue;

    std::vector<wire::ClientMessage> messages;
    const uint32_t message_epoch = epoch;
    const int64_t begin = sent_next;
    // Replays from position 0 may go as token ids (the cloud runs [0, S)).
    const bool as_tokens =
        replaying && begin == 0 && token_resync_allowed && !tokens_refused &&
        options.resync != ResyncPolicy::kHiddenStates &&
        static_cast<int64_t>(ids.size()) >= context_end;
    int64_t token_positions = 0, hidden_positions = 0;
    if (context_end > begin) {
      // Chunks keep each message well under the size limit.
      const int64_t row_bytes = std::max<int64_t>(1, EncodedSizeUncompressed(1, hidden_size, codec));
      const int64_t chunk = as_tokens ? 4096
                                      : std::max<int64_t>(1, (options.max_message_bytes / 2) / row_bytes);
      for (int64_t p = begin; p < context_end; p += chunk) {
        const int64_t end = std::min(context_end, p + chunk);
        wire::ClientMessage message;
        wire::Context* context = message.mutable_context();
        context->set_epoch(message_epoch);
        context->set_first_position(static_cast<uint32_t>(p));
        if (as_tokens) {
          for (int64_t q = p; q < end; ++q) context->mutable_tokens()->add_ids(ids[q]);
        } else {
          absl::Status encoded;
          try {
            encoded = wire::EncodeRows(RowsLocked(p, end), codec, context->mutable_hidden());
          } catch (const c10::Error& e) {
            encoded = absl::InternalError(e.what_without_backtrace());
          }
          if (!encoded.ok()) {
            MarkBrokenLocked();  // cannot happen for finite rows; treat as a dead link
            break;
          }
        }
        messages.push_back(std::move(message));
      }
      (as_tokens ? token_positions : hidden_positions) = context_end - begin;
    }
    uint64_t request_id = 0;
    int64_t request_position = 0;
    if (want_request) {
      wire::ClientMessage message;
      wire::Continue* cont = message.mutable_continue_();
      cont->set_epoch(message_epoch);
      cont->set_request_id(request->id);
      cont->set_position(static_cast<uint32_t>(request->position));
      absl::Status encoded = wire::EncodeRows(RowsLocked(request->position, request->position + 1),
                                              codec, cont->mutable_hidden());
      if (!encoded.ok()) {
        FailRequestLocked(encoded);
        continue;
      }
      request_id = request->id;
      request_position = request->position;
      messages.push_back(std::move(message));
    }
    const bool was_replaying = replaying;
    mu.Unlock();
    bool ok = true;
    int64_t context_bytes = 0, continue_bytes = 0;
    for (const wire::ClientMessage& message : messages) {
      int64_t bytes = 0;
      ok = Write(message, &bytes);
      if (!ok) break;
      (message.has_continue_() ? continue_bytes : context_bytes) += bytes;
    }
    mu.Lock();
    stats.bytes_up += context_bytes + continue_bytes;
    stats.context_bytes += context_bytes;
    stats.continue_bytes += continue_bytes;
    if (!ok) {
      MarkBrokenLocked();
      continue;
    }
    if (epoch != message_epoch) continue;  // a resync arrived meanwhile: start over from it
    stats.context_rows += context_end - begin;
    if (was_replaying) {
      stats.resync_token_positions += token_positions;
      stats.resync_hidden_positions += hidden_positions;
      replaying = false;
    }
    sent_next = std::max(sent_next, context_end);
    if (request_id != 0) {
      // The row went out with the Continue, whether or not the request is
      // still waiting (its answer may already have arrived and been taken).
      sent_next = std::max(sent_next, request_position + 1);
      if (request.has_value() && request->id == request_id) request->sent = true;
    }
    oldest_unsent = sent_next < releasable ? absl::Now() : absl::InfiniteFuture();
  }
  mu.Unlock();
  Disconnect(/*polite=*/true);
  mu.Lock();
}

}  // namespace tandem::edge
