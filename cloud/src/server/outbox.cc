#include "server/outbox.h"

#include <utility>

namespace tandem::cloud {

Outbox::Outbox(Reactor* reactor, ServerCounters* counters)
    : reactor_(reactor), counters_(counters) {}

bool Outbox::Send(wire::ServerMessage message) {
  const wire::ServerMessage* start = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (finish_requested_ || broken_) return false;
    queue_.push_back(std::move(message));
    if (writing_) return true;
    writing_ = true;
    start = &queue_.front();  // deque::push_back keeps references to elements valid
  }
  reactor_->StartWrite(start);
  return true;
}

void Outbox::WriteDone(bool ok) {
  const wire::ServerMessage* next = nullptr;
  bool finish = false;
  grpc::Status status;
  {
    absl::MutexLock lock(&mu_);
    if (!queue_.empty()) {
      if (ok) counters_->bytes_out += static_cast<int64_t>(queue_.front().ByteSizeLong());
      queue_.pop_front();
    }
    if (!ok) {
      broken_ = true;
      queue_.clear();
    }
    if (!queue_.empty()) {
      next = &queue_.front();
    } else {
      writing_ = false;
      if (finish_requested_ && !finish_called_) {
        finish_called_ = true;
        finish = true;
        status = finish_status_;
      }
    }
  }
  if (next != nullptr) {
    reactor_->StartWrite(next);
  } else if (finish) {
    reactor_->Finish(std::move(status));
  }
}

void Outbox::Finish(grpc::Status status) {
  {
    absl::MutexLock lock(&mu_);
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = status;
    if (writing_) return;  // WriteDone finishes after the last queued reply
    finish_called_ = true;
  }
  reactor_->Finish(std::move(status));
}

}  // namespace tandem::cloud

namespace tandem::cloud {

void Outbox::SendAndFinish(wire::ServerMessage last, grpc::Status status) {
  const wire::ServerMessage* start = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = status;
    if (!broken_) queue_.push_back(std::move(last));
    if (writing_) return;  // WriteDone writes it, then finishes
    if (queue_.empty()) {
      finish_called_ = true;
    } else {
      writing_ = true;
      start = &queue_.front();
    }
  }
  if (start != nullptr) {
    reactor_->StartWrite(start);
  } else {
    reactor_->Finish(std::move(status));
  }
}

}  // namespace tandem::cloud
