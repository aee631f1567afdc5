// A collaborative edge app built against the installed package: linking
// Tandem::edge_grpc (and calling nothing of it) must make gRPC the transport,
// so a cloud link to an address can be created. Nothing listens there and
// nothing connects yet. Exit code 0 on success.
#include <cstdio>

#include "tandem/edge/cloud_link.h"

int main() {
  tandem::edge::CloudOptions options;
  options.address = "127.0.0.1:1";
  auto link = tandem::edge::CloudLink::Create(options, 42, 2, {1, 2}, 8);
  if (!link.ok()) {
    std::fprintf(stderr, "%s\n", link.status().ToString().c_str());
    return 1;
  }
  std::printf("grpc consumer: a cloud link over the registered gRPC transport\n");
  return 0;
}
