#include "common/model/transformer.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "common/base/file_util.h"
#include "common/base/test_util.h"
#include "common/model/safetensors.h"
#include "common/model/test_models.h"

namespace duet {
namespace {

ModelConfig TinyConfig(int64_t kv_heads = 2) {
  return testing::TinyTestConfig(/*vocab_size=*/64, kv_heads);
}

TEST(TransformerTest, PresetsHaveTheAdvertisedSize) {
  EXPECT_NEAR(ModelConfig::Preset("tiny", 544, 64)->NumParameters(), 1.0e6, 0.15e6);
  EXPECT_NEAR(ModelConfig::Preset("small", 544, 64)->NumParameters(), 25e6, 3e6);
  EXPECT_NEAR(ModelConfig::Preset("base", 544, 64)->NumParameters(), 95e6, 10e6);
  EXPECT_EQ(ModelConfig::Preset("huge", 544, 64).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto m = Transformer::Create(*ModelConfig::Preset("tiny", 544, 64), 1);
  ASSERT_TRUE(m.ok());
  int64_t n = 0;
  for (const auto& p : m->parameters()) n += p.numel();
  EXPECT_EQ(n, m->config().NumParameters());
}

class KvCacheTest : public ::testing::TestWithParam<int64_t> {};

TEST_P(KvCacheTest, IncrementalDecodingEqualsFullForward) {
  auto model = Transformer::Create(TinyConfig(GetParam()), 7);
  ASSERT_TRUE(model.ok());
  torch::InferenceMode guard;
  torch::manual_seed(3);
  torch::Tensor tokens = torch::randint(0, 64, {3, 20}, torch::kInt64);
  torch::Tensor full = *model->Forward(tokens);
  KvCache cache = model->NewCache(torch::zeros({3}, torch::kInt64), 20);
  std::vector<torch::Tensor> parts = {model->Step(tokens.narrow(1, 0, 7), cache)};
  for (int64_t t = 7; t < 20; ++t)
    parts.push_back(model->Step(tokens.narrow(1, t, 1), cache));
  torch::Tensor inc = torch::cat(parts, 1);
  EXPECT_LE((inc - full).abs().max().item<float>(), 1e-5);
}

TEST_P(KvCacheTest, LeftPaddedRowEqualsUnpaddedRow) {
  auto model = Transformer::Create(TinyConfig(GetParam()), 9);
  ASSERT_TRUE(model.ok());
  torch::InferenceMode guard;
  torch::Tensor row = torch::randint(1, 64, {1, 10}, torch::kInt64);
  torch::Tensor alone = *model->Forward(row);
  torch::Tensor padded = torch::cat({torch::zeros({1, 4}, torch::kInt64), row}, 1);
  KvCache cache = model->NewCache(torch::full({1}, 4, torch::kInt64), 14);
  torch::Tensor out = model->Step(padded, cache).narrow(1, 4, 10);
  EXPECT_LE((out - alone).abs().max().item<float>(), 1e-5);
  EXPECT_FALSE(torch::isnan(out).any().item<bool>());
}

INSTANTIATE_TEST_SUITE_P(HeadLayouts, KvCacheTest, ::testing::Values(4, 2, 1));

TEST(TransformerTest, SaveLoadRoundTripIsBitExact) {
  auto model = Transformer::Create(TinyConfig(), 11);
  ASSERT_TRUE(model.ok());
  const testing::ScratchDir scratch("roundtrip");
  const std::string& dir = scratch.path();
  ASSERT_TRUE(model->Save(dir).ok());
  auto loaded = Transformer::Load(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  TensorMap a = model->StateDict(), b = loaded->StateDict();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, b[name])) << name;
  }
  EXPECT_TRUE(a.count("model.layers.1.self_attn.k_proj.weight"));
  EXPECT_TRUE(a.count("lm_head.weight"));
}

TEST(TransformerTest, TiedEmbeddingsShareStorage) {
  ModelConfig c = TinyConfig();
  c.tie_word_embeddings = true;
  auto model = Transformer::Create(c, 1);
  ASSERT_TRUE(model.ok());
  EXPECT_FALSE(model->StateDict().count("lm_head.weight"));
  const testing::ScratchDir scratch("tied");
  const std::string& dir = scratch.path();
  ASSERT_TRUE(model->Save(dir).ok());
  EXPECT_TRUE(Transformer::Load(dir).ok());
}

class BadCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = Transformer::Create(TinyConfig(), 5);
    ASSERT_TRUE(model.ok());
    ASSERT_TRUE(model->Save(dir_).ok());
    tensors_ = model->StateDict();
  }
  std::string weights() const { return JoinPath(dir_, "model.safetensors"); }
  const testing::ScratchDir scratch_{"bad"};
  const std::string dir_ = scratch_.path();
  TensorMap tensors_;
};

TEST_F(BadCheckpointTest, TruncatedFileIsDataLoss) {
  std::string bytes = *ReadFileToString(weights());
  ASSERT_TRUE(WriteFileAtomically(weights(), bytes.substr(0, bytes.size() / 2)).ok());
  auto loaded = Transformer::Load(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss) << loaded.status();
  ASSERT_TRUE(WriteFileAtomically(weights(), bytes.substr(0, 5)).ok());
  EXPECT_EQ(Transformer::Load(dir_).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(BadCheckpointTest, CorruptHeaderIsDataLoss) {
  std::string bytes = *ReadFileToString(weights());
  bytes[10] = '#';
  ASSERT_TRUE(WriteFileAtomically(weights(), bytes).ok());
  EXPECT_EQ(Transformer::Load(dir_).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(BadCheckpointTest, ConfigThatDoesNotMatchTheWeights) {
  ModelConfig c = TinyConfig();
  c.intermediate_size = 40;
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir_, "config.json"), c.ToJson()).ok());
  auto loaded = Transformer::Load(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("gate_proj"), std::string::npos)
      << loaded.status();
}

TEST_F(BadCheckpointTest, MissingTensor) {
  tensors_.erase("model.layers.1.mlp.up_proj.weight");
  ASSERT_TRUE(WriteSafetensors(weights(), tensors_).ok());
  auto loaded = Transformer::Load(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("model.layers.1.mlp.up_proj.weight"),
            std::string::npos);
}

TEST_F(BadCheckpointTest, WrongDtype) {
  tensors_["model.norm.weight"] = tensors_["model.norm.weight"].to(torch::kInt32);
  ASSERT_TRUE(WriteSafetensors(weights(), tensors_).ok());
  auto loaded = Transformer::Load(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("dtype"), std::string::npos)
      << loaded.status();
}

TEST_F(BadCheckpointTest, HalfPrecisionWeightsLoad) {
  for (auto& [name, t] : tensors_) t = t.to(torch::kBFloat16);
  ASSERT_TRUE(WriteSafetensors(weights(), tensors_).ok());
  EXPECT_TRUE(Transformer::Load(dir_).ok());
}

TEST_F(BadCheckpointTest, MalformedConfig) {
  ASSERT_TRUE(
      WriteFileAtomically(JoinPath(dir_, "config.json"), "{\"hidden_size\": 32}").ok());
  auto loaded = Transformer::Load(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("vocab_size"), std::string::npos);
}

TEST(TransformerTest, TokenIdsOutsideTheVocabularyAreRejected) {
  auto model = Transformer::Create(TinyConfig(), 1);
  torch::Tensor tokens = torch::tensor({{1, 2, 64}}, torch::kInt64);
  auto out = model->Forward(tokens);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(out.status().message().find("64"), std::string::npos);
  EXPECT_EQ(model->Forward(torch::tensor({{-1}}, torch::kInt64)).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(model->Forward(torch::zeros({1, 33}, torch::kInt64)).status().code(),
            absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace duet
