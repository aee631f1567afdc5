#include "tandem/cloud/cloud_model.h"

#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "tandem/fingerprint.h"
#include "testing/tiny_model.h"

namespace tandem::cloud {
namespace {

using ::tandem::testing::TempDir;
using ::tandem::testing::TinyGqaConfig;
using ::tandem::testing::WriteRandomModel;

const std::string kShipped = std::string(TANDEM_SOURCE_DIR) + "/models/tandem-tiny";

TEST(CloudModel, SplitZeroTakesTheDeepestExitOfExitsJson) {
  CloudModelOptions options;
  options.model_dir = kShipped;
  auto cloud = CloudModel::Create(options);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_EQ((*cloud)->split(), 4);  // exits.json: layers [2, 4], no "split"
  EXPECT_EQ((*cloud)->num_layers(), 8);
  EXPECT_TRUE((*cloud)->can_embed());
  auto expected = SplitFingerprint((*cloud)->model(), 4);
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ((*cloud)->fingerprint(), *expected);
}

TEST(CloudModel, WithoutTokenResyncLoadsOnlyTheCloudLayers) {
  CloudModelOptions options;
  options.model_dir = kShipped;
  options.split = 3;
  options.token_resync = false;
  auto cloud = CloudModel::Create(options);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_EQ((*cloud)->split(), 3);
  EXPECT_FALSE((*cloud)->can_embed());
  EXPECT_EQ((*cloud)->model().layer_begin(), 3);
  EXPECT_EQ((*cloud)->model().layer_end(), 8);
  // The fingerprint does not depend on what else was loaded.
  options.token_resync = true;
  auto with_prefix = CloudModel::Create(options);
  ASSERT_TRUE(with_prefix.ok());
  EXPECT_EQ((*cloud)->fingerprint(), (*with_prefix)->fingerprint());
  options.split = 4;
  auto other_split = CloudModel::Create(options);
  ASSERT_TRUE(other_split.ok());
  EXPECT_NE((*cloud)->fingerprint(), (*other_split)->fingerprint());
}

TEST(CloudModel, RejectsBadSplitsAndDirectories) {
  CloudModelOptions options;
  options.model_dir = kShipped;
  options.split = 8;  // the cloud would have no layer
  EXPECT_EQ(CloudModel::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.split = -1;
  EXPECT_EQ(CloudModel::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.split = 0;
  options.model_dir = kShipped + "/does-not-exist";
  EXPECT_EQ(CloudModel::Create(options).status().code(), absl::StatusCode::kNotFound);
  options.model_dir = "";
  EXPECT_EQ(CloudModel::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CloudModel, SplitZeroWithoutExitsJsonIsAnError) {
  TempDir dir;
  WriteRandomModel(TinyGqaConfig(), dir.path());
  CloudModelOptions options;
  options.model_dir = dir.path().string();
  auto cloud = CloudModel::Create(options);
  EXPECT_EQ(cloud.status().code(), absl::StatusCode::kInvalidArgument) << cloud.status();
  options.split = 2;
  cloud = CloudModel::Create(options);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_EQ((*cloud)->split(), 2);
}

TEST(CloudModel, FromModelChecksTheLayersItNeeds) {
  ModelOptions partial;
  partial.layer_begin = 3;
  auto model = Model::CreateRandom(TinyGqaConfig(), partial, 1);
  ASSERT_TRUE(model.ok());
  std::shared_ptr<const Model> shared(std::move(*model));
  EXPECT_EQ(CloudModel::FromModel(shared, 2).status().code(), absl::StatusCode::kInvalidArgument);
  auto cloud = CloudModel::FromModel(shared, 3);
  ASSERT_TRUE(cloud.ok()) << cloud.status();
  EXPECT_FALSE((*cloud)->can_embed());
  EXPECT_EQ(CloudModel::FromModel(nullptr, 2).status().code(), absl::StatusCode::kInvalidArgument);

  ModelOptions headless;
  headless.load_head = false;
  auto no_head = Model::CreateRandom(TinyGqaConfig(), headless, 1);
  ASSERT_TRUE(no_head.ok());
  EXPECT_FALSE(
      CloudModel::FromModel(std::shared_ptr<const Model>(std::move(*no_head)), 2).ok());
}

}  // namespace
}  // namespace tandem::cloud
