#include "server/outbox.h"

#include <utility>

namespace tandem::cloud {

Outbox::Outbox(Stream* stream, ServerCounters* counters)
    : stream_(stream), counters_(counters), writer_([this] { WriterLoop(); }) {}

Outbox::~Outbox() { Close(); }

bool Outbox::Send(wire::ServerMessage message) {
  absl::MutexLock lock(&mu_);
  if (closing_ || broken_) return false;
  queue_.push_back(std::move(message));
  return true;
}

void Outbox::Close() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  // Close is called by the stream's own thread only (Run, then the destructor).
  if (writer_.joinable()) writer_.join();
}

void Outbox::WriterLoop() {
  while (true) {
    wire::ServerMessage message;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || closing_;
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty() || broken_) return;  // closing with nothing left
      message = std::move(queue_.front());
      queue_.pop_front();
    }
    const int64_t bytes = static_cast<int64_t>(message.ByteSizeLong());
    if (!stream_->Write(message)) {
      absl::MutexLock lock(&mu_);
      broken_ = true;
      queue_.clear();
      return;
    }
    counters_->bytes_out += bytes;
  }
}

}  // namespace tandem::cloud
