#include "tandem/cpu_features.h"

#include <string>

#include "gtest/gtest.h"

namespace tandem {
namespace {

constexpr char kAmxXeon[] =
    "processor\t: 0\n"
    "vendor_id\t: GenuineIntel\n"
    "model name\t: Intel(R) Xeon(R) Processor\n"
    "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile\n"
    "\n"
    "processor\t: 1\n"
    "model name\t: Some Other Name\n"
    "flags\t\t: fpu sse2\n";

constexpr char kAvx2Only[] =
    "processor\t: 0\n"
    "model name\t: AMD EPYC 7B12\n"
    "flags\t\t: fpu sse2 avx avx2 fma bmi2\n";

TEST(CpuFeaturesTest, ReadsTheFirstProcessorsFlagsAndName) {
  const CpuFeatures f = ParseCpuInfo(kAmxXeon);
  EXPECT_TRUE(f.known);
  EXPECT_EQ(f.model_name, "Intel(R) Xeon(R) Processor");
  EXPECT_TRUE(f.avx2);
  EXPECT_TRUE(f.avx512f);
  EXPECT_TRUE(f.avx512_bf16);
  EXPECT_TRUE(f.amx_bf16);
  EXPECT_TRUE(f.FastBf16Matmul());
  EXPECT_EQ(f.Describe(), "amx_bf16 avx512_bf16 avx512f avx2");
}

TEST(CpuFeaturesTest, Avx2AloneIsNotFastBf16) {
  const CpuFeatures f = ParseCpuInfo(kAvx2Only);
  EXPECT_TRUE(f.known);
  EXPECT_TRUE(f.avx2);
  EXPECT_FALSE(f.avx512f);
  EXPECT_FALSE(f.FastBf16Matmul());
  EXPECT_EQ(f.Describe(), "avx2");
}

TEST(CpuFeaturesTest, FlagNamesMustMatchWholeWords) {
  // "avx512_bf16x" or "noamx_bf16" are not the flags we look for.
  const CpuFeatures f = ParseCpuInfo("flags\t: avx512_bf16x noamx_bf16 avx2\n");
  EXPECT_FALSE(f.avx512_bf16);
  EXPECT_FALSE(f.amx_bf16);
  EXPECT_TRUE(f.avx2);
}

TEST(CpuFeaturesTest, NoFlagsMeansUnknownAndNotFast) {
  const CpuFeatures f = ParseCpuInfo("");
  EXPECT_FALSE(f.known);
  EXPECT_FALSE(f.FastBf16Matmul());
  EXPECT_EQ(f.Describe(), "unknown");
}

TEST(CpuFeaturesTest, ParsesPrecisionNames) {
  EXPECT_EQ(*ParseComputePrecision("auto"), ComputePrecision::kAuto);
  EXPECT_EQ(*ParseComputePrecision("fp32"), ComputePrecision::kFp32);
  EXPECT_EQ(*ParseComputePrecision("bfloat16"), ComputePrecision::kBf16);
  const auto bad = ParseComputePrecision("fp8");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("auto, fp32, bf16"), std::string::npos);
}

TEST(CpuFeaturesTest, AutoFollowsTheCpuAndExplicitChoicesWin) {
  const CpuFeatures amx = ParseCpuInfo(kAmxXeon);
  const CpuFeatures avx2 = ParseCpuInfo(kAvx2Only);
  std::string why;
  EXPECT_TRUE(UseBf16Autocast(ComputePrecision::kAuto, amx, &why));
  EXPECT_EQ(why, "bf16 autocast (auto: CPU has amx_bf16 avx512_bf16 avx512f avx2)");
  EXPECT_FALSE(UseBf16Autocast(ComputePrecision::kAuto, avx2, &why));
  EXPECT_EQ(why, "fp32 (auto: CPU has avx2)");
  EXPECT_FALSE(UseBf16Autocast(ComputePrecision::kFp32, amx, &why));
  EXPECT_TRUE(UseBf16Autocast(ComputePrecision::kBf16, avx2, &why));
  EXPECT_NE(why.find("no fast bf16"), std::string::npos);
  EXPECT_FALSE(UseBf16Autocast(ComputePrecision::kAuto, ParseCpuInfo(""), nullptr));
}

}  // namespace
}  // namespace tandem
