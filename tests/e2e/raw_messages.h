// Protocol messages the raw-client tests (raw_client.h) send to a server of
// the shipped model: an Open and fp32-encoded rows.
#ifndef TANDEM_TESTS_E2E_RAW_MESSAGES_H_
#define TANDEM_TESTS_E2E_RAW_MESSAGES_H_

#include <cstdint>
#include <string>

#include <ATen/core/Tensor.h>

#include "tandem/wire/tandem.pb.h"

namespace tandem::e2e {

// Open of session `session_id` for the shipped model at `split`, fp32 codec.
wire::ClientMessage ShippedFp32Open(const std::string& session_id, int64_t split = 4);

// Encodes rows [n, D] as fp32 into `out`; a failure fails the current test.
void EncodeFp32(const at::Tensor& rows, wire::EncodedHidden* out);

}  // namespace tandem::e2e

#endif  // TANDEM_TESTS_E2E_RAW_MESSAGES_H_
