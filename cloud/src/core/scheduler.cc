#include "core/scheduler.h"

#include <utility>
#include <vector>

#include <c10/core/InferenceMode.h>

#include "core/batch_runner.h"

namespace tandem::cloud {

Scheduler::Scheduler(std::shared_ptr<const CloudModel> model, SessionTable* table)
    : model_(std::move(model)), table_(table) {
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Stop() {
  table_->RequestStop();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Loop() {
  c10::InferenceMode inference;
  std::vector<WorkItem> items;
  std::vector<Delivery> deliveries;
  while (table_->WaitForWork(&items)) {
    const double seconds = RunBatch(*model_, &items);
    table_->Complete(&items, seconds, &deliveries);
    items.clear();  // releases the sessions (a closed one frees its caches here)
    Deliver(&deliveries);
    table_->Delivered();
  }
}

}  // namespace tandem::cloud
