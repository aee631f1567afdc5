#include "tandem/edge/context_sink.h"

#include <algorithm>

#include <ATen/ATen.h>

namespace tandem::edge {

void RecordingSink::OnBegin(const SequenceInfo& info) {
  (void)info;
  chunks_.clear();
  first_positions_.clear();
  row_counts_.clear();
  next_position_ = 0;
  in_order_ = true;
  ++begins_;
}

void RecordingSink::OnContext(int64_t first_position, const at::Tensor& hidden_at_split) {
  if (first_position != next_position_) in_order_ = false;
  const int64_t rows = hidden_at_split.size(0);
  chunks_.push_back(hidden_at_split.to(at::kFloat).clone());
  first_positions_.push_back(first_position);
  row_counts_.push_back(rows);
  next_position_ = first_position + rows;
}

void RecordingSink::OnTruncate(int64_t position) {
  ++truncations_;
  // Drop whole chunks past `position`, cut the one that straddles it.
  while (!chunks_.empty() && first_positions_.back() >= position) {
    chunks_.pop_back();
    first_positions_.pop_back();
    row_counts_.pop_back();
  }
  if (!chunks_.empty() && first_positions_.back() + row_counts_.back() > position) {
    const int64_t keep = position - first_positions_.back();
    chunks_.back() = chunks_.back().narrow(0, 0, keep).clone();
    row_counts_.back() = keep;
  }
  next_position_ = std::min(next_position_, position);
}

void RecordingSink::OnFinish(int64_t next_position) {
  (void)next_position;
  ++finishes_;
}

at::Tensor RecordingSink::Rows() const {
  if (chunks_.empty()) return at::Tensor();
  return at::cat(chunks_, 0);
}

}  // namespace tandem::edge
