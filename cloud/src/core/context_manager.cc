#include "tandem/cloud/context_manager.h"

#include <exception>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "core/scheduler.h"
#include "core/session_table.h"
#include "tandem/status_macros.h"

namespace tandem::cloud {
namespace {

// A private copy of `rows` ([N, D] or, with `allow_vector`, [D]) in the compute
// dtype, contiguous, on the CPU. Refuses a wrong shape, a non-float dtype,
// more than `max_rows` rows and non-finite values.
absl::StatusOr<at::Tensor> CopyRows(const at::Tensor& rows, const CloudModel& model,
                                    int64_t max_rows, bool allow_vector, const char* what) {
  const int64_t dim = model.hidden_size();
  if (!rows.defined()) return absl::InvalidArgumentError(absl::StrCat(what, ": no rows"));
  if (!at::isFloatingType(rows.scalar_type())) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": rows must be floating point"));
  }
  const bool vector = allow_vector && rows.dim() == 1;
  if (!vector && rows.dim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": rows must be [N, ", dim, "]", allow_vector ? " or [D]" : ""));
  }
  if (rows.size(-1) != dim) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": rows have dimension ", rows.size(-1),
                                                   ", the model's hidden size is ", dim));
  }
  const int64_t n = vector ? 1 : rows.size(0);
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat(what, ": no rows"));
  if (n > max_rows) {
    return absl::OutOfRangeError(
        absl::StrCat(what, ": ", n, " rows exceed the per-session limit of ", max_rows));
  }
  try {
    at::Tensor copy = rows.detach()
                          .to(at::TensorOptions().device(at::kCPU).dtype(
                                  model.model().options().dtype),
                              /*non_blocking=*/false, /*copy=*/true)
                          .contiguous()
                          .view({n, dim});
    if (!at::isfinite(copy).all().item<bool>()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": rows hold non-finite values (NaN or infinity)"));
    }
    return copy;
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.what_without_backtrace()));
  }
}

}  // namespace

struct ContextManager::State {
  State(std::shared_ptr<const CloudModel> model, const ContextLimits& limits)
      : model(std::move(model)), table(this->model, limits) {}
  std::shared_ptr<const CloudModel> model;
  SessionTable table;
};

ContextManager::ContextManager(std::shared_ptr<const CloudModel> model, ContextLimits limits)
    : state_(std::make_unique<State>(std::move(model), limits)),
      scheduler_(std::make_unique<Scheduler>(state_->model, &state_->table)) {}

ContextManager::~ContextManager() {
  scheduler_->Stop();
  std::vector<Delivery> cancelled;
  state_->table.CancelAll(&cancelled);
  Deliver(&cancelled);
}

absl::StatusOr<int64_t> ContextManager::Open(const std::string& session_id,
                                             const std::string& owner,
                                             const SessionOptions& options) {
  return state_->table.Open(session_id, owner, options);
}

absl::StatusOr<int64_t> ContextManager::Truncate(const std::string& session_id,
                                                 const std::string& owner, int64_t position) {
  std::vector<Delivery> aborted;
  absl::StatusOr<int64_t> held = state_->table.Truncate(session_id, owner, position, &aborted);
  Deliver(&aborted);
  return held;
}

absl::StatusOr<ContextReceipt> ContextManager::AddContext(const std::string& session_id,
                                                          const std::string& owner,
                                                          int64_t first_position,
                                                          const at::Tensor& rows,
                                                          uint32_t branch) {
  TANDEM_ASSIGN_OR_RETURN(at::Tensor copy, CopyRows(rows, *state_->model,
                                                    limits().max_positions,
                                                    /*allow_vector=*/false, "AddContext"));
  Chunk chunk;
  chunk.first = first_position;
  chunk.rows = copy.size(0);
  chunk.hidden = std::move(copy);
  std::vector<Delivery> none;
  return state_->table.Enqueue(session_id, owner, branch, std::move(chunk), &none);
}

absl::Status ContextManager::AddContext(const std::string& session_id, const std::string& owner,
                                        int64_t first_position, const at::Tensor& rows) {
  return AddContext(session_id, owner, first_position, rows, /*branch=*/0).status();
}

absl::StatusOr<ContextReceipt> ContextManager::AddTokens(const std::string& session_id,
                                                         const std::string& owner,
                                                         int64_t first_position,
                                                         const std::vector<int32_t>& ids,
                                                         uint32_t branch) {
  if (!state_->model->can_embed()) {
    return absl::FailedPreconditionError(
        "AddTokens: this server does not hold layers [0, S) and the embedding");
  }
  if (ids.empty()) return absl::InvalidArgumentError("AddTokens: no token ids");
  if (static_cast<int64_t>(ids.size()) > limits().max_positions) {
    return absl::OutOfRangeError(absl::StrCat("AddTokens: ", ids.size(),
                                              " ids exceed the per-session limit of ",
                                              limits().max_positions));
  }
  const int64_t vocab = state_->model->config().vocab_size;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("AddTokens: token id ", id, " is outside the vocabulary of ", vocab));
    }
  }
  Chunk chunk;
  chunk.first = first_position;
  chunk.rows = static_cast<int64_t>(ids.size());
  chunk.ids = ids;
  std::vector<Delivery> none;
  return state_->table.Enqueue(session_id, owner, branch, std::move(chunk), &none);
}

absl::Status ContextManager::AddTokens(const std::string& session_id, const std::string& owner,
                                       int64_t first_position, const std::vector<int32_t>& ids) {
  return AddTokens(session_id, owner, first_position, ids, /*branch=*/0).status();
}

absl::Status ContextManager::Continue(const std::string& session_id, const std::string& owner,
                                      ContinueRequest request, ContinueCallback done) {
  if (!done) return absl::InvalidArgumentError("Continue: no callback");
  const at::Tensor& row = request.row;
  if (row.defined() && row.dim() == 2 && row.size(0) != 1) {
    return absl::InvalidArgumentError("Continue: exactly one row ([1, D] or [D])");
  }
  TANDEM_ASSIGN_OR_RETURN(at::Tensor copy, CopyRows(row, *state_->model, /*max_rows=*/1,
                                                    /*allow_vector=*/true, "Continue"));
  if (request.draft.has_value()) {
    absl::Status valid = ValidateDraft(request.draft->distribution, request.draft->token,
                                       state_->model->config().vocab_size);
    if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("Continue: ", valid.message()));
  }
  if (request.sampling.has_value()) {
    absl::Status valid = request.sampling->Validate();
    if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("Continue: ", valid.message()));
  }
  Chunk chunk;
  chunk.first = request.position;
  chunk.rows = 1;
  chunk.hidden = std::move(copy);
  chunk.done = std::move(done);
  chunk.draft = std::move(request.draft);
  chunk.sampling = request.sampling;
  std::vector<Delivery> stale;
  absl::StatusOr<ContextReceipt> receipt =
      state_->table.Enqueue(session_id, owner, request.branch, std::move(chunk), &stale);
  Deliver(&stale);
  return receipt.status();
}

absl::Status ContextManager::Continue(const std::string& session_id, const std::string& owner,
                                      int64_t position, const at::Tensor& row,
                                      ContinueCallback done) {
  ContinueRequest request;
  request.position = position;
  request.row = row;
  return Continue(session_id, owner, std::move(request), std::move(done));
}

absl::Status ContextManager::Close(const std::string& session_id, const std::string& owner) {
  std::vector<Delivery> cancelled;
  absl::Status status = state_->table.Close(session_id, owner, &cancelled);
  Deliver(&cancelled);
  return status;
}

absl::StatusOr<uint64_t> ContextManager::Attach(const std::string& session_id,
                                                const std::string& owner) {
  return state_->table.Attach(session_id, owner);
}

absl::StatusOr<int64_t> ContextManager::Detach(const std::string& session_id,
                                               const std::string& owner, uint64_t attachment) {
  std::vector<Delivery> cancelled;
  absl::StatusOr<int64_t> rows = state_->table.Detach(session_id, owner, attachment, &cancelled);
  Deliver(&cancelled);
  return rows;
}

int64_t ContextManager::ExpireIdle() { return state_->table.ExpireIdle(); }

bool ContextManager::Drain(absl::Time deadline) { return state_->table.Drain(deadline); }

absl::StatusOr<int64_t> ContextManager::Held(const std::string& session_id,
                                             const std::string& owner) const {
  return state_->table.Held(session_id, owner);
}

absl::StatusOr<SessionPosition> ContextManager::Position(const std::string& session_id,
                                                         const std::string& owner) const {
  return state_->table.Position(session_id, owner);
}

absl::StatusOr<std::vector<at::Tensor>> ContextManager::CacheSnapshot(
    const std::string& session_id, const std::string& owner) const {
  return state_->table.CacheSnapshot(session_id, owner);
}

ContextStats ContextManager::stats() const { return state_->table.stats(); }

const CloudModel& ContextManager::model() const { return *state_->model; }

const ContextLimits& ContextManager::limits() const { return state_->table.limits(); }

}  // namespace tandem::cloud
