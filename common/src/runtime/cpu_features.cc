#include "tandem/cpu_features.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tandem {

std::string CpuFeatures::Describe() const {
  if (!known) return "unknown";
  std::vector<std::string> set;
  if (amx_bf16) set.push_back("amx_bf16");
  if (avx512_bf16) set.push_back("avx512_bf16");
  if (avx512f) set.push_back("avx512f");
  if (avx2) set.push_back("avx2");
  return set.empty() ? "none of amx_bf16 avx512_bf16 avx512f avx2" : absl::StrJoin(set, " ");
}

CpuFeatures ParseCpuInfo(absl::string_view cpuinfo) {
  CpuFeatures f;
  bool have_flags = false;
  for (absl::string_view line : absl::StrSplit(cpuinfo, '\n')) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      if (have_flags) break;  // the end of the first processor's block
      continue;
    }
    const absl::string_view key = absl::StripAsciiWhitespace(line.substr(0, colon));
    const absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (key == "model name" && f.model_name.empty()) {
      f.model_name = std::string(value);
    } else if ((key == "flags" || key == "Features") && !have_flags) {
      have_flags = true;
      for (absl::string_view flag : absl::StrSplit(value, ' ', absl::SkipEmpty())) {
        if (flag == "avx2") f.avx2 = true;
        if (flag == "avx512f") f.avx512f = true;
        if (flag == "avx512_bf16") f.avx512_bf16 = true;
        if (flag == "amx_bf16") f.amx_bf16 = true;
      }
    }
  }
  f.known = have_flags;
  return f;
}

const CpuFeatures& HostCpuFeatures() {
  static const CpuFeatures* features = [] {
    std::ifstream in("/proc/cpuinfo");
    std::stringstream text;
    if (in) text << in.rdbuf();
    return new CpuFeatures(ParseCpuInfo(text.str()));
  }();
  return *features;
}

absl::StatusOr<ComputePrecision> ParseComputePrecision(absl::string_view name) {
  if (name == "auto") return ComputePrecision::kAuto;
  if (name == "fp32" || name == "float32") return ComputePrecision::kFp32;
  if (name == "bf16" || name == "bfloat16") return ComputePrecision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown precision '", name, "' (auto, fp32, bf16)"));
}

bool UseBf16Autocast(ComputePrecision precision, const CpuFeatures& cpu, std::string* why) {
  bool bf16 = false;
  std::string reason;
  switch (precision) {
    case ComputePrecision::kFp32:
      reason = "fp32 (asked for)";
      break;
    case ComputePrecision::kBf16:
      bf16 = true;
      reason = cpu.FastBf16Matmul()
                   ? "bf16 autocast (asked for)"
                   : absl::StrCat("bf16 autocast (asked for, although the CPU has no fast bf16 "
                                  "matmul: ", cpu.Describe(), ")");
      break;
    case ComputePrecision::kAuto:
      bf16 = cpu.FastBf16Matmul();
      reason = absl::StrCat(bf16 ? "bf16 autocast" : "fp32", " (auto: CPU has ", cpu.Describe(),
                            ")");
      break;
  }
  if (why != nullptr) *why = reason;
  return bf16;
}

}  // namespace tandem
