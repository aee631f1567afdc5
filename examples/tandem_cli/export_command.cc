// tandem export: rewrites a checkpoint's weights in another dtype (e.g. the fp32
// training output as the fp16 shipped model), copying the tokenizer and exit
// heads beside it.
#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "tandem/flags.h"
#include "tandem/model.h"

namespace {

constexpr char kHelp[] =
    "usage: tandem export --model DIR --out DIR [--dtype float16|bfloat16|float32]\n";

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "tandem export: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int RunExportCommand(int argc, char** argv) {
  auto flags = tandem::flags::Flags::Parse(argc - 1, argv + 1, {"model", "out", "dtype"}, {"help"});
  if (!flags.ok() || flags->Has("help") || !flags->Has("model") || !flags->Has("out")) {
    if (!flags.ok()) std::fprintf(stderr, "%s\n", std::string(flags.status().message()).c_str());
    std::fputs(kHelp, stderr);
    return flags.ok() && flags->Has("help") ? 0 : 2;
  }
  const std::string dtype_name = flags->Get("dtype", "float16");
  at::ScalarType dtype;
  if (dtype_name == "float16") {
    dtype = at::kHalf;
  } else if (dtype_name == "bfloat16") {
    dtype = at::kBFloat16;
  } else if (dtype_name == "float32") {
    dtype = at::kFloat;
  } else {
    return Fail(absl::InvalidArgumentError("--dtype must be float16, bfloat16 or float32"));
  }
  namespace fs = std::filesystem;
  const fs::path in(flags->Get("model")), out(flags->Get("out"));
  auto model = tandem::Model::Load(in.string());
  if (!model.ok()) return Fail(model.status());
  if (absl::Status s = (*model)->Save(out.string(), dtype); !s.ok()) return Fail(s);
  for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                           "tandem_exits.safetensors", "exits.json"}) {
    if (!fs::exists(in / name) || fs::equivalent(in, out)) continue;
    std::error_code ec;
    fs::copy_file(in / name, out / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return Fail(absl::InternalError(std::string("copying ") + name + ": " + ec.message()));
  }
  std::printf("wrote %s (%s weights)\n", out.c_str(), dtype_name.c_str());
  return 0;
}
