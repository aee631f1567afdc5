// A raw protocol client for loopback tests: writes the messages a test gives
// it and reads what comes back, with no edge logic in between.
#ifndef TANDEM_TESTS_E2E_RAW_CLIENT_H_
#define TANDEM_TESTS_E2E_RAW_CLIENT_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "tandem/wire/tandem.grpc.pb.h"

namespace tandem::e2e {

class RawClient {
 public:
  explicit RawClient(const std::string& address, const std::string& api_key = "") {
    channel_ = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    stub_ = wire::Continuation::NewStub(channel_);
    if (!api_key.empty()) context_.AddMetadata("authorization", "Bearer " + api_key);
    stream_ = stub_->Session(&context_);
  }
  bool Send(const wire::ClientMessage& m) { return stream_->Write(m); }
  // Abandons the stream at once (the server sees the client leave).
  void Cancel() { context_.TryCancel(); }
  // Blocks until a message arrives or the stream ends (false).
  bool Read(wire::ServerMessage* m) { return stream_->Read(m); }
  // Reads until the server ends the stream (without half-closing it first, so
  // a silent client stays silent); returns the final status.
  grpc::Status AwaitEnd() {
    wire::ServerMessage m;
    while (stream_->Read(&m)) {
    }
    return stream_->Finish();
  }
  // Reads until the stream ends; returns the final status and the last Error seen.
  grpc::Status Finish(wire::Error* last_error = nullptr) {
    stream_->WritesDone();
    wire::ServerMessage m;
    while (stream_->Read(&m)) {
      if (m.has_error() && last_error != nullptr) *last_error = m.error();
    }
    return stream_->Finish();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<wire::Continuation::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<wire::ClientMessage, wire::ServerMessage>> stream_;
};

}  // namespace tandem::e2e

#endif  // TANDEM_TESTS_E2E_RAW_CLIENT_H_
