#include "tls_material.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

namespace tandem::e2e {
namespace {

namespace fs = std::filesystem;

class Generator {
 public:
  Generator() {
    const char* base = std::getenv("TEST_TMPDIR");
    dir_ = fs::path(base ? base : fs::temp_directory_path().string()) /
           absl::StrCat("tandem_tls_", getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Make();
  }
  ~Generator() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const TlsMaterial& material() const { return m_; }

 private:
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  bool Run(const std::string& args) {
    if (!m_.error.empty()) return false;
    const std::string log = Path("openssl.log");
    const std::string command = absl::StrCat("openssl ", args, " >>", log, " 2>&1");
    if (std::system(command.c_str()) != 0) {
      std::ifstream in(log);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      m_.error = absl::StrCat("`", command, "` failed: ", text);
      return false;
    }
    return true;
  }

  // A CA: self-signed, allowed to sign certificates.
  void Authority(const std::string& name) {
    Run(absl::StrCat("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2",
                     " -subj /CN=tandem-test-", name, " -keyout ", Path(name + ".key"), " -out ",
                     Path(name + ".crt"),
                     " -addext basicConstraints=critical,CA:TRUE",
                     " -addext keyUsage=critical,keyCertSign,cRLSign"));
  }

  // A leaf certificate for `cn` signed by `ca`, with extensions `ext`.
  void Leaf(const std::string& name, const std::string& cn, const std::string& ca,
            const std::string& ext) {
    std::ofstream(Path(name + ".ext")) << ext << "\n";
    Run(absl::StrCat("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=", cn,
                     " -keyout ", Path(name + ".key"), " -out ", Path(name + ".csr")));
    Run(absl::StrCat("x509 -req -days 2 -in ", Path(name + ".csr"), " -CA ", Path(ca + ".crt"),
                     " -CAkey ", Path(ca + ".key"), " -CAcreateserial -extfile ",
                     Path(name + ".ext"), " -out ", Path(name + ".crt")));
  }

  void Make() {
    Authority("ca");
    Authority("rogue-ca");
    Leaf("server", "localhost", "ca",
         "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth");
    Leaf("client", "edge-1", "ca", "extendedKeyUsage=clientAuth");
    Leaf("rogue-client", "edge-1", "rogue-ca", "extendedKeyUsage=clientAuth");
    m_.ca_cert = Path("ca.crt");
    m_.server_cert = Path("server.crt");
    m_.server_key = Path("server.key");
    m_.client_cert = Path("client.crt");
    m_.client_key = Path("client.key");
    m_.rogue_client_cert = Path("rogue-client.crt");
    m_.rogue_client_key = Path("rogue-client.key");
  }

  fs::path dir_;
  TlsMaterial m_;
};

}  // namespace

const TlsMaterial& TestTlsMaterial() {
  static const Generator generator;  // its files are removed at exit
  return generator.material();
}

}  // namespace tandem::e2e
