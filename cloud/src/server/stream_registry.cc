#include "server/stream_registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/session_reactor.h"

namespace tandem::cloud {
namespace {

absl::Duration ScanInterval(const ServerOptions& options) {
  absl::Duration shortest = absl::Seconds(1);
  for (absl::Duration d : {options.stream_idle_timeout, options.stream_open_timeout}) {
    if (d > absl::ZeroDuration()) shortest = std::min(shortest, d / 4);
  }
  return std::max(shortest, absl::Milliseconds(10));
}

}  // namespace

StreamRegistry::StreamRegistry(ServiceContext* service)
    : service_(service), scan_interval_(ScanInterval(service->options)) {
  reaper_ = std::thread([this] { ReaperLoop(); });
}

StreamRegistry::~StreamRegistry() {
  stop_.Notify();
  reaper_.join();
}

absl::Status StreamRegistry::Reserve(const std::string& identity) {
  const ServerOptions& options = service_->options;
  absl::MutexLock lock(&mu_);
  if (options.max_streams > 0 && reserved_ >= options.max_streams) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the server has ", reserved_, " session streams open, its limit "
                     "(max_streams); try again later"));
  }
  int64_t& mine = per_identity_[identity];
  if (options.max_streams_per_identity > 0 && mine >= options.max_streams_per_identity) {
    return absl::ResourceExhaustedError(
        absl::StrCat("identity '", identity, "' has ", mine,
                     " session streams open, its limit (max_streams_per_identity)"));
  }
  ++mine;
  ++reserved_;
  return absl::OkStatus();
}

void StreamRegistry::Release(const std::string& identity) {
  absl::MutexLock lock(&mu_);
  --reserved_;
  auto it = per_identity_.find(identity);
  if (it != per_identity_.end() && --it->second <= 0) per_identity_.erase(it);
}

void StreamRegistry::Add(const std::shared_ptr<SessionReactor>& reactor) {
  absl::MutexLock lock(&mu_);
  streams_[reactor.get()] = reactor;
}

void StreamRegistry::Remove(SessionReactor* reactor, const std::string& identity) {
  {
    absl::MutexLock lock(&mu_);
    streams_.erase(reactor);
  }
  Release(identity);
}

void StreamRegistry::ForEach(const std::function<void(SessionReactor&)>& f) {
  std::vector<std::shared_ptr<SessionReactor>> live;
  {
    absl::MutexLock lock(&mu_);
    live.reserve(streams_.size());
    for (const auto& [raw, weak] : streams_) {
      if (std::shared_ptr<SessionReactor> r = weak.lock()) live.push_back(std::move(r));
    }
  }
  for (const std::shared_ptr<SessionReactor>& r : live) f(*r);
}

bool StreamRegistry::WaitEmpty(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return streams_.empty(); };
  mu_.AwaitWithDeadline(absl::Condition(&empty), deadline);
  return streams_.empty();
}

int64_t StreamRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(streams_.size());
}

void StreamRegistry::ReaperLoop() {
  while (!stop_.WaitForNotificationWithTimeout(scan_interval_)) {
    const absl::Time now = absl::Now();
    ForEach([now](SessionReactor& r) { r.CheckIdle(now); });
  }
}

}  // namespace tandem::cloud
