// StreamRegistry: the session streams a server has open — admission against
// ServerOptions::max_streams / max_streams_per_identity, and one reaper thread
// that ends idle streams (SessionReactor::CheckIdle) and streams stuck ending.
// Also what shutdown and key revocation go through to reach every stream.
//
// Thread-safe. Never calls into a reactor under its own lock.
#ifndef TANDEM_CLOUD_SERVER_STREAM_REGISTRY_H_
#define TANDEM_CLOUD_SERVER_STREAM_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/service_context.h"

namespace tandem::cloud {

class SessionReactor;

class StreamRegistry {
 public:
  // Starts the reaper thread. `service` must outlive the registry.
  explicit StreamRegistry(ServiceContext* service);
  // Stops the reaper (the streams themselves are ended by the server's shutdown).
  ~StreamRegistry();
  StreamRegistry(const StreamRegistry&) = delete;
  StreamRegistry& operator=(const StreamRegistry&) = delete;

  // Takes a slot for a new stream of `identity`; ResourceExhausted (naming the
  // limit) when max_streams or max_streams_per_identity is reached. A granted
  // slot is given back by Remove.
  absl::Status Reserve(const std::string& identity);
  // Gives back a slot that Reserve granted but that no reactor took.
  void Release(const std::string& identity);
  // Records the reactor of a reserved slot (held weakly: the reactor owns itself).
  void Add(const std::shared_ptr<SessionReactor>& reactor);
  // The reactor is done (its OnDone): forgets it and frees its slot.
  void Remove(SessionReactor* reactor, const std::string& identity);

  // Calls `f` for every stream still registered, outside the lock.
  void ForEach(const std::function<void(SessionReactor&)>& f);
  int64_t size() const;
  // Waits until no stream is registered or `deadline` passes (a drain waiting
  // for edges to leave); true when none is.
  bool WaitEmpty(absl::Time deadline);
  // How often the reaper looks (a quarter of the shortest timeout, 10 ms..1 s).
  absl::Duration scan_interval() const { return scan_interval_; }

 private:
  void ReaperLoop();

  ServiceContext* service_;
  absl::Duration scan_interval_;
  mutable absl::Mutex mu_;
  std::unordered_map<SessionReactor*, std::weak_ptr<SessionReactor>> streams_ ABSL_GUARDED_BY(mu_);
  int64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, int64_t> per_identity_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread reaper_;
};

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_STREAM_REGISTRY_H_
