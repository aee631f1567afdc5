// TLS test material made at test time (no private key is committed): a
// throw-away certificate authority, a server certificate for localhost /
// 127.0.0.1 and a client certificate (CN "edge-1") signed by it, and a client
// certificate signed by a second, untrusted authority. Generated once per
// process with Debian's `openssl` command (EC P-256 keys, valid 2 days) into a
// temporary directory removed at exit.
#ifndef TANDEM_TESTS_E2E_TLS_MATERIAL_H_
#define TANDEM_TESTS_E2E_TLS_MATERIAL_H_

#include <string>

namespace tandem::e2e {

struct TlsMaterial {
  std::string ca_cert;                       // the trusted authority
  std::string server_cert, server_key;       // signed by ca_cert
  std::string client_cert, client_key;       // CN edge-1, signed by ca_cert
  std::string rogue_client_cert, rogue_client_key;  // signed by another authority
  std::string error;                         // non-empty when openssl failed
};

// Paths to the files; `error` says what went wrong (then skip or fail).
const TlsMaterial& TestTlsMaterial();

}  // namespace tandem::e2e

#endif  // TANDEM_TESTS_E2E_TLS_MATERIAL_H_
