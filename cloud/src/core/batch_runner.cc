#include "core/batch_runner.h"

#include <chrono>
#include <exception>
#include <utility>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "tandem/model.h"
#include "tandem/speculative.h"

namespace tandem::cloud {
namespace {

// One sequence in a packed forward.
struct Part {
  WorkItem* item = nullptr;
  at::Tensor input;  // [rows, D]
  int64_t first = 0;
  KVCache* cache = nullptr;
  at::Tensor output;  // [rows, D], set on success
};

void Fail(WorkItem* item, absl::Status status) {
  if (item->status.ok()) item->status = std::move(status);
}

absl::Status Internal(const char* where, const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  return absl::InternalError(
      absl::StrCat(where, ": ", c10 != nullptr ? c10->what_without_backtrace() : e.what()));
}

// Runs every part through [begin, end) in one packed call. If that fails, no
// part is trusted: caches are rolled back and each part runs alone, so only the
// parts that fail by themselves fail.
void RunPacked(const Model& model, int64_t begin, int64_t end, std::vector<Part>* parts) {
  if (parts->empty()) return;
  std::vector<PackedSegment> segments;
  std::vector<at::Tensor> inputs;
  for (const Part& p : *parts) {
    segments.push_back({p.input.size(0), p.first, p.cache});
    inputs.push_back(p.input);
  }
  absl::StatusOr<at::Tensor> out = absl::InternalError("not run");
  try {
    out = model.ForwardLayersPacked(begin, end, at::cat(inputs, 0), segments);
  } catch (const std::exception& e) {
    out = Internal("packed forward", e);
  }
  if (out.ok()) {
    int64_t offset = 0;
    for (Part& p : *parts) {
      p.output = out->narrow(0, offset, p.input.size(0));
      offset += p.input.size(0);
    }
    return;
  }
  if (parts->size() == 1) {
    parts->front().cache->Truncate(parts->front().first);
    Fail(parts->front().item, out.status());
    return;
  }
  for (Part& p : *parts) p.cache->Truncate(p.first);
  for (Part& p : *parts) {
    PackedSegment one{p.input.size(0), p.first, p.cache};
    absl::StatusOr<at::Tensor> alone = absl::InternalError("not run");
    try {
      alone = model.ForwardLayersPacked(begin, end, p.input, absl::MakeConstSpan(&one, 1));
    } catch (const std::exception& e) {
      alone = Internal("forward", e);
    }
    if (alone.ok()) {
      p.output = *alone;
    } else {
      p.cache->Truncate(p.first);
      Fail(p.item, alone.status());
    }
  }
}

// Token chunks -> rows at S: embed and run [0, S) against each session's
// prefix cache, packed across sessions. Returns per item the rows of its token
// chunks, in order (undefined when it has none).
std::vector<at::Tensor> RunTokens(const CloudModel& model, std::vector<WorkItem>* items) {
  std::vector<at::Tensor> rows(items->size());
  std::vector<Part> parts;
  std::vector<size_t> index;
  for (size_t i = 0; i < items->size(); ++i) {
    WorkItem& item = (*items)[i];
    std::vector<int64_t> ids;
    int64_t first = -1;
    for (const Chunk& c : item.chunks) {
      if (!c.is_tokens()) continue;
      if (first < 0) first = c.first;
      ids.insert(ids.end(), c.ids.begin(), c.ids.end());
    }
    if (ids.empty()) continue;
    if (item.session->prefix == nullptr) {
      Fail(&item, absl::InternalError("token ids queued without a [0, S) cache"));
      continue;
    }
    absl::StatusOr<at::Tensor> embedded =
        model.model().Embed(at::tensor(ids, at::TensorOptions().dtype(at::kLong)));
    if (!embedded.ok()) {
      Fail(&item, embedded.status());
      continue;
    }
    parts.push_back({&item, *embedded, first, item.session->prefix.get(), {}});
    index.push_back(i);
  }
  RunPacked(model.model(), 0, model.split(), &parts);
  for (size_t k = 0; k < parts.size(); ++k) rows[index[k]] = parts[k].output;
  return rows;
}

// The token after one Continue row: sampled, or its draft verified (the
// speculative sampling rule), with the chunk's sampling override if any.
absl::StatusOr<ContinueResult> Decide(Session* s, const Chunk& c, const at::Tensor& logits) {
  const SamplingParams session_params = s->sampler.params();
  if (c.sampling.has_value()) {
    SamplingParams once = *c.sampling;
    once.seed = session_params.seed;  // the generator stays the session's
    s->sampler.set_params(once);
  }
  ContinueResult r;
  r.position = c.first;
  absl::Status status;
  if (c.draft.has_value()) {
    absl::StatusOr<TokenDistribution> p = s->sampler.Distribution(logits);
    absl::StatusOr<DraftVerdict> verdict =
        p.ok() ? VerifyDraft(*p, c.draft->distribution, c.draft->token, &s->sampler)
               : absl::StatusOr<DraftVerdict>(p.status());
    if (verdict.ok()) {
      r.token = verdict->token;
      // Sample()'s convention, so a Token means the same with or without a draft.
      const float t = s->sampler.params().temperature > 0.0f ? s->sampler.params().temperature : 1.0f;
      r.probability = at::softmax(logits.to(at::kFloat) / t, -1)[r.token].item<float>();
      r.verdict = verdict->accepted ? Verdict::kAccepted : Verdict::kRejected;
    } else {
      status = verdict.status();
    }
  } else {
    float probability = 0.0f;
    absl::StatusOr<int32_t> token = s->sampler.Sample(logits, &probability);
    if (token.ok()) {
      r.token = *token;
      r.probability = probability;
    } else {
      status = token.status();
    }
  }
  s->sampler.set_params(session_params);
  if (!status.ok()) return status;
  return r;
}

// Decides the token after every Continue row of `item`, in order, up to the
// first rejected draft; `logits` [K, V] holds its Continue rows from `row` on.
void Sample(WorkItem* item, const at::Tensor& logits, int64_t row) {
  Session& s = *item->session;
  int64_t attributed = item->first_position;  // rows before this are someone's
  for (const Chunk& c : item->chunks) {
    if (!c.is_continue()) continue;
    at::Tensor l = logits[row++];
    absl::StatusOr<ContinueResult> r = Decide(&s, c, l);
    if (!r.ok()) {
      Fail(item, r.status());
      return;
    }
    r->rows_run = c.first + 1 - attributed;
    attributed = c.first + 1;
    if (s.return_logits) r->logits = l.clone();
    const bool rejected = r->verdict == Verdict::kRejected;
    item->results.push_back(*std::move(r));
    if (rejected) {  // the rows after it were built on the draft
      item->rejected_position = c.first;
      return;
    }
  }
}

void RunAll(const CloudModel& model, std::vector<WorkItem>* items) {
  std::vector<at::Tensor> token_rows = RunTokens(model, items);

  // [S, L) for every item still OK, in one packed forward.
  std::vector<Part> parts;
  for (size_t i = 0; i < items->size(); ++i) {
    WorkItem& item = (*items)[i];
    if (!item.status.ok()) continue;
    std::vector<at::Tensor> pieces;
    int64_t token_offset = 0;
    for (const Chunk& c : item.chunks) {
      if (c.is_tokens()) {
        pieces.push_back(token_rows[i].narrow(0, token_offset, c.rows));
        token_offset += c.rows;
      } else {
        pieces.push_back(c.hidden);
      }
    }
    at::Tensor input = pieces.size() == 1 ? pieces[0] : at::cat(pieces, 0);
    parts.push_back({&item, input, item.first_position, item.session->cache.get(), {}});
  }
  RunPacked(model.model(), model.split(), model.num_layers(), &parts);

  // One LM-head call for every Continue row.
  std::vector<at::Tensor> rows;
  std::vector<WorkItem*> asking;
  for (Part& p : parts) {
    if (!p.item->status.ok()) continue;
    bool any = false;
    for (const Chunk& c : p.item->chunks) {
      if (!c.is_continue()) continue;
      rows.push_back(p.output.narrow(0, c.first - p.first, 1));
      any = true;
    }
    if (any) asking.push_back(p.item);
  }
  if (rows.empty()) return;
  absl::StatusOr<at::Tensor> logits = model.model().Logits(at::cat(rows, 0));
  if (!logits.ok()) {
    for (WorkItem* item : asking) Fail(item, logits.status());
    return;
  }
  int64_t row = 0;
  for (WorkItem* item : asking) {
    Sample(item, *logits, row);
    for (const Chunk& c : item->chunks) row += c.is_continue() ? 1 : 0;
  }
}

}  // namespace

double RunBatch(const CloudModel& model, std::vector<WorkItem>* items) {
  const auto start = std::chrono::steady_clock::now();
  try {
    RunAll(model, items);
  } catch (const std::exception& e) {
    for (WorkItem& item : *items) Fail(&item, Internal("scheduler", e));
  } catch (...) {
    for (WorkItem& item : *items) Fail(&item, absl::InternalError("scheduler: unknown exception"));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (WorkItem& item : *items) {
    for (ContinueResult& r : item.results) r.compute_seconds = seconds;
  }
  return seconds;
}

}  // namespace tandem::cloud
