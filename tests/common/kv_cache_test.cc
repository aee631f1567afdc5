#include "tandem/kv_cache.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "testing/tiny_model.h"

namespace tandem {
namespace {

TEST(KVCache, AppendReturnsAllRowsAndTracksLengthPerLayer) {
  ModelConfig c = testing::TinyGqaConfig();  // 2 kv heads, head_dim 8
  auto cache = KVCache::Create(c, 1, 3, 10, at::kFloat);
  ASSERT_TRUE(cache.ok()) << cache.status();
  at::Tensor k = at::randn({2, 3, 8}), v = at::randn({2, 3, 8});
  at::Tensor keys, values;
  ASSERT_TRUE((*cache)->Append(1, k, v, &keys, &values).ok());
  EXPECT_EQ((*cache)->length(1), 3);
  EXPECT_EQ((*cache)->length(2), 0);
  EXPECT_EQ((*cache)->min_length(), 0);
  at::Tensor k2 = at::randn({2, 1, 8}), v2 = at::randn({2, 1, 8});
  ASSERT_TRUE((*cache)->Append(1, k2, v2, &keys, &values).ok());
  EXPECT_TRUE(at::equal(keys, at::cat({k, k2}, 1)));
  EXPECT_TRUE(at::equal(values, at::cat({v, v2}, 1)));
  EXPECT_TRUE(at::equal((*cache)->keys(1), keys));
}

TEST(KVCache, TruncateRollsBackEveryLayer) {
  ModelConfig c = testing::TinyGqaConfig();
  auto cache = KVCache::Create(c, 0, 2, 8, at::kFloat);
  ASSERT_TRUE(cache.ok());
  at::Tensor keys, values, k = at::randn({2, 5, 8});
  ASSERT_TRUE((*cache)->Append(0, k, k, &keys, &values).ok());
  ASSERT_TRUE((*cache)->Append(1, k.narrow(1, 0, 2), k.narrow(1, 0, 2), &keys, &values).ok());
  (*cache)->Truncate(3);
  EXPECT_EQ((*cache)->length(0), 3);
  EXPECT_EQ((*cache)->length(1), 2);
  EXPECT_TRUE(at::equal((*cache)->keys(0), k.narrow(1, 0, 3)));
  (*cache)->Clear();
  EXPECT_EQ((*cache)->length(0), 0);
  EXPECT_EQ((*cache)->used_bytes(), 0);
}

TEST(KVCache, ByteAccounting) {
  ModelConfig c = testing::TinyGqaConfig();
  auto cache = KVCache::Create(c, 0, 4, 16, at::kBFloat16);
  ASSERT_TRUE(cache.ok());
  // 4 layers * 16 positions * (k + v) * 2 heads * 8 dims * 2 bytes.
  EXPECT_EQ((*cache)->allocated_bytes(), 4 * 16 * 2 * 2 * 8 * 2);
  at::Tensor keys, values, k = at::randn({2, 3, 8}).to(at::kBFloat16);
  ASSERT_TRUE((*cache)->Append(2, k, k, &keys, &values).ok());
  EXPECT_EQ((*cache)->used_bytes(), 3 * 2 * 2 * 8 * 2);
}

TEST(KVCache, RefusesOverflowAndForeignLayers) {
  ModelConfig c = testing::TinyGqaConfig();
  auto cache = KVCache::Create(c, 0, 2, 4, at::kFloat);
  ASSERT_TRUE(cache.ok());
  at::Tensor keys, values, k = at::randn({2, 5, 8});
  EXPECT_EQ((*cache)->Append(0, k, k, &keys, &values).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*cache)->length(0), 0);
  EXPECT_EQ((*cache)->Append(2, k.narrow(1, 0, 1), k.narrow(1, 0, 1), &keys, &values).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(KVCache::Create(c, 0, 5, 4, at::kFloat).ok());
  EXPECT_FALSE(KVCache::Create(c, 0, 2, 0, at::kFloat).ok());
}

}  // namespace
}  // namespace tandem
