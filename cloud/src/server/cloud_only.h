// Cloud-only mode: the Continuation.Generate RPC (proto/tandem.proto). The
// client sends prompt token ids; this runs the whole model ([0, L) + head, the
// layers a token-resync server already holds) and streams the tokens.
//
// Limits, as for Session streams: the caller has authenticated the call; a
// generation counts as a session against ContextLimits::max_sessions (cloud-
// only generations are counted apart from the ContextManager's sessions), its
// positions against max_positions, and its KV cache against the memory budget
// left over by the ContextManager and the other cloud-only generations (the
// KV is not evictable: a request that does not fit is RESOURCE_EXHAUSTED).
//
// Compute: each generation runs on its gRPC handler thread, outside the
// scheduler — cloud-only requests are not batched with each other or with
// continuation work (docs/decisions.md).
#ifndef TANDEM_CLOUD_SERVER_CLOUD_ONLY_H_
#define TANDEM_CLOUD_SERVER_CLOUD_ONLY_H_

#include <string>

#include <grpcpp/grpcpp.h>

#include "server/service_context.h"
#include "tandem/wire/tandem.grpc.pb.h"

namespace tandem::cloud {

// Serves one Generate call. Never throws; every failure is a grpc::Status.
grpc::Status ServeCloudOnly(ServiceContext* service, grpc::ServerContext* context,
                            const std::string& identity, const wire::GenerateRequest& request,
                            grpc::ServerWriter<wire::GenerateReply>* writer);

}  // namespace tandem::cloud

#endif  // TANDEM_CLOUD_SERVER_CLOUD_ONLY_H_
