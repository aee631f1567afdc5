#include "link/in_process_transport.h"

#include <utility>

namespace tandem::edge::link {

class InProcessStream : public TransportStream {
 public:
  InProcessStream(std::shared_ptr<InProcessPeer> peer, std::shared_ptr<InProcessPeer::Stream> s)
      : peer_(std::move(peer)), stream_(std::move(s)) {}
  bool Write(const wire::ClientMessage& message) override {
    absl::MutexLock lock(&peer_->mu_);
    if (stream_->closed) return false;
    stream_->up.push_back(message);
    return true;
  }
  bool Read(wire::ServerMessage* message) override {
    absl::MutexLock lock(&peer_->mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(peer_->mu_) {
      return stream_->closed || !stream_->down.empty();
    };
    peer_->mu_.Await(absl::Condition(&ready));
    if (stream_->down.empty()) return false;
    *message = std::move(stream_->down.front());
    stream_->down.pop_front();
    return true;
  }
  void WritesDone() override {}
  void Cancel() override {
    absl::MutexLock lock(&peer_->mu_);
    stream_->closed = true;
  }

 private:
  std::shared_ptr<InProcessPeer> peer_;
  std::shared_ptr<InProcessPeer::Stream> stream_;
};

class InProcessTransport : public Transport {
 public:
  explicit InProcessTransport(std::shared_ptr<InProcessPeer> peer) : peer_(std::move(peer)) {}
  absl::StatusOr<std::unique_ptr<TransportStream>> Open(const std::string& session_id,
                                                        absl::Time deadline) override {
    (void)deadline;
    absl::MutexLock lock(&peer_->mu_);
    if (peer_->refuse_) return absl::UnavailableError("in-process peer refuses");
    if (peer_->current_ != nullptr) peer_->current_->closed = true;
    peer_->current_ = std::make_shared<InProcessPeer::Stream>();
    ++peer_->streams_;
    peer_->last_session_id_ = session_id;
    return std::unique_ptr<TransportStream>(
        std::make_unique<InProcessStream>(peer_, peer_->current_));
  }

 private:
  std::shared_ptr<InProcessPeer> peer_;
};

bool InProcessPeer::Receive(wire::ClientMessage* message, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return current_ != nullptr && !current_->up.empty();
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (current_ == nullptr || current_->up.empty()) return false;
  *message = std::move(current_->up.front());
  current_->up.pop_front();
  return true;
}

void InProcessPeer::Send(const wire::ServerMessage& message) {
  absl::MutexLock lock(&mu_);
  if (current_ != nullptr && !current_->closed) current_->down.push_back(message);
}

void InProcessPeer::Break() {
  absl::MutexLock lock(&mu_);
  if (current_ != nullptr) current_->closed = true;
}

int InProcessPeer::streams() const {
  absl::MutexLock lock(&mu_);
  return streams_;
}

std::string InProcessPeer::last_session_id() const {
  absl::MutexLock lock(&mu_);
  return last_session_id_;
}

void InProcessPeer::set_refuse(bool refuse) {
  absl::MutexLock lock(&mu_);
  refuse_ = refuse;
}

std::unique_ptr<Transport> MakeInProcessTransport(std::shared_ptr<InProcessPeer> peer) {
  return std::make_unique<InProcessTransport>(std::move(peer));
}

}  // namespace tandem::edge::link
