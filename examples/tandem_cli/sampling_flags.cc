#include "sampling_flags.h"

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "tandem/status_macros.h"

namespace tandem::cli {

const char kSamplingHelp[] =
    "  --temperature T      0 = greedy (default: generation_config.json's, else 0)\n"
    "  --top-k K            sample among the K most likely (0 = all)\n"
    "  --top-p P            nucleus sampling mass in (0, 1]\n"
    "  --seed S             sampling seed (default 0)\n";

absl::StatusOr<SamplingParams> SamplingFromFlags(const flags::Flags& flags,
                                                 const GenerationConfig& generation,
                                                 std::string* description) {
  SamplingParams p;
  const bool any = flags.Has("temperature") || flags.Has("top-k") || flags.Has("top-p");
  if (!any && generation.sampling.has_value()) {
    p = *generation.sampling;
    *description = p.temperature == 0.0f
                       ? "greedy (generation_config.json)"
                       : absl::StrCat("generation_config.json: temperature ", p.temperature,
                                      ", top-k ", p.top_k, ", top-p ", p.top_p);
  } else {
    TANDEM_ASSIGN_OR_RETURN(double temperature, flags.GetDouble("temperature", 0.0, 0.0, 1e4));
    TANDEM_ASSIGN_OR_RETURN(
        p.top_k, flags.GetInt<int32_t>("top-k", 0, 0, std::numeric_limits<int32_t>::max()));
    TANDEM_ASSIGN_OR_RETURN(double top_p, flags.GetDouble("top-p", 1.0, 0.0, 1.0));
    p.temperature = static_cast<float>(temperature);
    p.top_p = static_cast<float>(top_p);
    *description = p.temperature == 0.0f
                       ? "greedy"
                       : absl::StrCat("temperature ", p.temperature, ", top-k ", p.top_k,
                                      ", top-p ", p.top_p);
  }
  TANDEM_ASSIGN_OR_RETURN(
      p.seed, flags.GetInt<uint64_t>("seed", 0, 0, std::numeric_limits<uint64_t>::max()));
  TANDEM_RETURN_IF_ERROR(p.Validate());
  return p;
}

}  // namespace tandem::cli
