// A session-table Chunk (cloud/src/core/session.h) of hidden-state rows
// [n, D] starting at position `first`, for the scheduler's internal tests.
#ifndef TANDEM_TESTS_CLOUD_CHUNK_ROWS_H_
#define TANDEM_TESTS_CLOUD_CHUNK_ROWS_H_

#include <cstdint>

#include <ATen/ATen.h>

#include "core/session.h"

namespace tandem::cloud::testing {

inline Chunk Rows(int64_t first, const at::Tensor& rows) {
  Chunk c;
  c.first = first;
  c.rows = rows.size(0);
  c.hidden = rows.clone();
  return c;
}

}  // namespace tandem::cloud::testing

#endif  // TANDEM_TESTS_CLOUD_CHUNK_ROWS_H_
