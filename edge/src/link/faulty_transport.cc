#include "link/faulty_transport.h"

#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"

namespace tandem::edge::link {
namespace {

class FaultyStream : public TransportStream {
 public:
  FaultyStream(std::unique_ptr<TransportStream> inner, std::shared_ptr<Faults> faults)
      : inner_(std::move(inner)), faults_(std::move(faults)), rng_(faults_->seed) {}

  bool Write(const wire::ClientMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (faults_->write_delay > absl::ZeroDuration()) absl::SleepFor(faults_->write_delay);
    ++writes_;
    if (faults_->break_after_writes > 0 && writes_ > faults_->break_after_writes) {
      inner_->Cancel();
      return false;
    }
    wire::ClientMessage m = message;
    if (faults_->rewrite_up) faults_->rewrite_up(&m);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    if (u(rng_) < faults_->drop_up) return true;
    if (!held_ && u(rng_) < faults_->reorder_up) {
      held_ = std::move(m);
      return true;
    }
    if (!inner_->Write(m)) return false;
    if (held_) {
      wire::ClientMessage late = std::move(*held_);
      held_.reset();
      return inner_->Write(late);
    }
    return true;
  }
  bool Read(wire::ServerMessage* message) override {
    if (!inner_->Read(message)) return false;
    if (faults_->read_delay > absl::ZeroDuration()) absl::SleepFor(faults_->read_delay);
    return true;
  }
  void WritesDone() override {
    absl::MutexLock lock(&mu_);
    if (held_) inner_->Write(*held_);
    held_.reset();
    inner_->WritesDone();
  }
  void Cancel() override { inner_->Cancel(); }

 private:
  std::unique_ptr<TransportStream> inner_;
  std::shared_ptr<Faults> faults_;
  absl::Mutex mu_;
  std::mt19937_64 rng_;
  int64_t writes_ = 0;
  std::optional<wire::ClientMessage> held_;
};

class FaultyTransport : public Transport {
 public:
  FaultyTransport(std::unique_ptr<Transport> inner, std::shared_ptr<Faults> faults)
      : inner_(std::move(inner)), faults_(std::move(faults)) {}
  absl::StatusOr<std::unique_ptr<TransportStream>> Open(const std::string& session_id,
                                                        absl::Time deadline) override {
    if (faults_->refuse_open) return absl::UnavailableError("injected: cannot connect");
    absl::StatusOr<std::unique_ptr<TransportStream>> stream = inner_->Open(session_id, deadline);
    if (!stream.ok()) return stream.status();
    return std::unique_ptr<TransportStream>(
        std::make_unique<FaultyStream>(*std::move(stream), faults_));
  }

 private:
  std::unique_ptr<Transport> inner_;
  std::shared_ptr<Faults> faults_;
};

}  // namespace

std::unique_ptr<Transport> MakeFaultyTransport(std::unique_ptr<Transport> inner,
                                               std::shared_ptr<Faults> faults) {
  return std::make_unique<FaultyTransport>(std::move(inner), std::move(faults));
}

}  // namespace tandem::edge::link
