#include "common/world/bundle.h"

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "common/base/file_util.h"
#include "common/base/test_util.h"
#include "common/model/safetensors.h"
#include "common/model/test_models.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace duet::world {
namespace {

using ::testing::HasSubstr;

constexpr int kCodebookSize = 16;

// A codebook of flat gray patches: entry i has every value 10 i / 255 (entry 0 is black),
// so the entries are pairwise distinct.
std::vector<float> GrayCodebook(int size, const WorldConfig& world) {
  const int d = world.patch_px * world.patch_px * 3;
  std::vector<float> codebook(static_cast<size_t>(size) * d);
  for (int i = 0; i < size; ++i) {
    for (int j = 0; j < d; ++j)
      codebook[static_cast<size_t>(i) * d + j] = 10.0f * i / 255.0f;
  }
  return codebook;
}

// A small bundle: the default world (36 image tokens), 16 codes, a 2-layer 32-wide model.
absl::StatusOr<ModelBundle> MakeBundle(uint64_t seed) {
  const WorldConfig world;
  absl::StatusOr<ImageTokenizer> image = ImageTokenizer::FromCodebook(
      GrayCodebook(kCodebookSize, world), kCodebookSize, world);
  if (!image.ok()) return image.status();
  const TokenLayout layout = LayoutForCodebook(kCodebookSize, world);
  ModelConfig config = duet::testing::TinyTestConfig(layout.vocab_size());
  config.max_position_embeddings = MaxSequenceLength(layout);
  absl::StatusOr<Transformer> model = Transformer::Create(config, seed);
  if (!model.ok()) return model.status();
  return ModelBundle{*std::move(model), layout, world, TextTokenizer(layout),
                     *std::move(image)};
}

class BundleTest : public ::testing::Test {
 protected:
  // Saves a fresh bundle to dir_.
  void SaveFreshBundle() {
    absl::StatusOr<ModelBundle> bundle = MakeBundle(/*seed=*/1);
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    ASSERT_TRUE(SaveBundle(dir_, *bundle).ok());
  }

  void Overwrite(const std::string& name, const std::string& contents) {
    ASSERT_TRUE(WriteFileAtomically(JoinPath(dir_, name), contents).ok());
  }

  const testing::ScratchDir scratch_{"bundle_test"};
  const std::string dir_ = scratch_.Join("model");  // not created: SaveBundle makes it
};

TEST(LayoutForCodebookTest, PlacesTheCodesAfterTheText) {
  const TokenLayout layout = LayoutForCodebook(kCodebookSize, WorldConfig());
  EXPECT_EQ(layout.image_begin, TokenLayout().image_begin);
  EXPECT_EQ(layout.image_end, layout.image_begin + kCodebookSize);
  EXPECT_EQ(layout.vocab_size(), layout.image_end);
  EXPECT_EQ(layout.image_tokens, 36);
  EXPECT_GE(layout.text_end - layout.text_begin, TextTokenizer::kNumWords);

  WorldConfig big;
  big.grid = 4;  // 32 px: 8 x 8 patches
  EXPECT_EQ(LayoutForCodebook(512, big).image_tokens, 64);
  EXPECT_EQ(LayoutForCodebook(512, big).vocab_size(), TokenLayout().image_begin + 512);
}

TEST(MaxSequenceLengthTest, HoldsTheLongestTemplateRoundedToEight) {
  const TokenLayout layout = LayoutForCodebook(kCodebookSize, WorldConfig());
  // <bos> <task> 12 caption tokens <boi> 36 image tokens <eoi> <eos> = 53 -> 56.
  EXPECT_EQ(MaxSequenceLength(layout), 56);
  TokenLayout l = layout;
  l.max_caption_tokens = 3;
  l.image_tokens = 3;  // 2 + 3 + 1 + 3 + 2 = 11 -> 16
  EXPECT_EQ(MaxSequenceLength(l), 16);
  l.image_tokens = 0;  // 8 exactly stays 8
  EXPECT_EQ(MaxSequenceLength(l), 8);
}

TEST_F(BundleTest, SaveLoadRoundTrip) {
  absl::StatusOr<ModelBundle> bundle = MakeBundle(/*seed=*/7);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  ASSERT_TRUE(SaveBundle(dir_, *bundle).ok());  // creates the folder
  for (const char* name :
       {"config.json", "model.safetensors", "codebook.safetensors", "duet.json"}) {
    EXPECT_TRUE(PathExists(JoinPath(dir_, name))) << name;
  }

  absl::StatusOr<ModelBundle> loaded = LoadBundle(dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const TokenLayout& a = bundle->layout;
  const TokenLayout& b = loaded->layout;
  EXPECT_EQ(b.vocab_size(), a.vocab_size());
  EXPECT_EQ(b.image_begin, a.image_begin);
  EXPECT_EQ(b.image_tokens, a.image_tokens);
  EXPECT_EQ(b.text_begin, a.text_begin);
  EXPECT_EQ(b.text_end, a.text_end);
  EXPECT_EQ(b.max_caption_tokens, a.max_caption_tokens);
  EXPECT_EQ(b.eos, a.eos);
  EXPECT_EQ(loaded->world.grid, bundle->world.grid);
  EXPECT_EQ(loaded->world.cell_px, bundle->world.cell_px);
  EXPECT_EQ(loaded->world.patch_px, bundle->world.patch_px);
  EXPECT_EQ(loaded->image.codebook_size(), kCodebookSize);
  EXPECT_EQ(loaded->image.codebook(), bundle->image.codebook());

  const ModelConfig& ca = bundle->model.config();
  const ModelConfig& cb = loaded->model.config();
  EXPECT_EQ(cb.vocab_size, ca.vocab_size);
  EXPECT_EQ(cb.hidden_size, ca.hidden_size);
  EXPECT_EQ(cb.num_hidden_layers, ca.num_hidden_layers);
  EXPECT_EQ(cb.num_key_value_heads, ca.num_key_value_heads);
  EXPECT_EQ(cb.max_position_embeddings, ca.max_position_embeddings);
  const TensorMap wa = bundle->model.StateDict();
  const TensorMap wb = loaded->model.StateDict();
  ASSERT_EQ(wa.size(), wb.size());
  for (const auto& [name, t] : wa) {
    ASSERT_EQ(wb.count(name), 1u) << name;
    EXPECT_TRUE(torch::equal(wb.at(name), t)) << name;
  }

  // The layout in duet.json is the one the bundle uses.
  absl::StatusOr<TokenLayout> read = ReadTokenLayout(dir_);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->image_begin, a.image_begin);
  EXPECT_EQ(read->image_end, a.image_end);
  EXPECT_EQ(read->image_tokens, a.image_tokens);
  EXPECT_EQ(read->max_caption_tokens, a.max_caption_tokens);
  EXPECT_EQ(read->draw, a.draw);
}

TEST_F(BundleTest, LoaderAndDescriptionAgreeOnTheLayout) {
  // Workers read the layout from duet.json (ReadTokenLayout), the learner through
  // LoadBundle: they must never disagree. A layout other than the codebook's may be
  // refused (by SaveBundle or LoadBundle) or kept, but not silently replaced.
  absl::StatusOr<ModelBundle> bundle = MakeBundle(/*seed=*/2);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  bundle->layout.max_caption_tokens = 8;  // shorter captions than the default 12
  absl::Status saved = SaveBundle(dir_, *bundle);
  if (!saved.ok()) {
    EXPECT_EQ(saved.code(), absl::StatusCode::kInvalidArgument) << saved;
    return;
  }
  absl::StatusOr<TokenLayout> described = ReadTokenLayout(dir_);
  ASSERT_TRUE(described.ok()) << described.status();
  EXPECT_EQ(described->max_caption_tokens, 8);
  absl::StatusOr<ModelBundle> loaded = LoadBundle(dir_);
  if (!loaded.ok()) {
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument)
        << loaded.status();
    return;
  }
  EXPECT_EQ(loaded->layout.max_caption_tokens, described->max_caption_tokens);
}

TEST_F(BundleTest, LoadedModelComputesTheSameLogits) {
  absl::StatusOr<ModelBundle> bundle = MakeBundle(/*seed=*/3);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  ASSERT_TRUE(SaveBundle(dir_, *bundle).ok());
  absl::StatusOr<ModelBundle> loaded = LoadBundle(dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  torch::manual_seed(5);
  torch::Tensor tokens =
      torch::randint(0, bundle->layout.vocab_size(), {2, 12}, torch::kInt64);
  absl::StatusOr<torch::Tensor> la = bundle->model.Forward(tokens);
  absl::StatusOr<torch::Tensor> lb = loaded->model.Forward(tokens);
  ASSERT_TRUE(la.ok()) << la.status();
  ASSERT_TRUE(lb.ok()) << lb.status();
  EXPECT_TRUE(torch::allclose(*la, *lb, /*rtol=*/1e-6, /*atol=*/1e-7));
}

TEST_F(BundleTest, SavingAgainOverwrites) {
  SaveFreshBundle();
  absl::StatusOr<ModelBundle> other = MakeBundle(/*seed=*/99);
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE(SaveBundle(dir_, *other).ok());
  absl::StatusOr<ModelBundle> loaded = LoadBundle(dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const TensorMap want = other->model.StateDict();
  const TensorMap got = loaded->model.StateDict();
  for (const auto& [name, t] : want) EXPECT_TRUE(torch::equal(got.at(name), t)) << name;
}

TEST_F(BundleTest, TokenizersOfALoadedBundle) {
  SaveFreshBundle();
  absl::StatusOr<ModelBundle> bundle = LoadBundle(dir_);
  ASSERT_TRUE(bundle.ok()) << bundle.status();

  absl::StatusOr<std::vector<int64_t>> caption =
      bundle->EncodeCaption("a red circle left of a blue square");
  ASSERT_TRUE(caption.ok()) << caption.status();
  for (int64_t id : *caption) EXPECT_TRUE(bundle->layout.IsText(id)) << id;
  std::vector<int64_t> with_eos = *caption;
  with_eos.push_back(bundle->layout.eos);
  absl::StatusOr<std::string> text = bundle->DecodeCaption(with_eos);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "a red circle left of a blue square");
  EXPECT_EQ(bundle->EncodeCaption("a red dog").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bundle->EncodeCaption("").status().code(),
            absl::StatusCode::kInvalidArgument);

  std::vector<int64_t> ids(bundle->layout.image_tokens);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = bundle->layout.image_begin + static_cast<int64_t>(i % kCodebookSize);
  absl::StatusOr<Image> image = bundle->DecodeImage(ids);
  ASSERT_TRUE(image.ok()) << image.status();
  EXPECT_EQ(image->width, 24);
  EXPECT_EQ(image->height, 24);
  absl::StatusOr<std::vector<int64_t>> again = bundle->EncodeImage(*image);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, ids);

  std::vector<int64_t> bad = ids;
  bad[5] = bundle->layout.image_end;  // one past the codebook
  EXPECT_FALSE(bundle->DecodeImage(bad).ok());
  bad[5] = bundle->layout.text_begin;
  EXPECT_FALSE(bundle->DecodeImage(bad).ok());
  EXPECT_FALSE(
      bundle->DecodeImage(std::vector<int64_t>(ids.begin(), ids.end() - 1)).ok());
  EXPECT_FALSE(bundle->EncodeImage(Image(23, 24)).ok());
}

TEST_F(BundleTest, MissingFolderIsNotFound) {
  absl::StatusOr<ModelBundle> loaded = LoadBundle(scratch_.Join("does_not_exist"));
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound) << loaded.status();
}

TEST_F(BundleTest, EmptyFolderIsNotFound) {
  ASSERT_TRUE(MakeDirs(dir_).ok());
  EXPECT_EQ(LoadBundle(dir_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(BundleTest, MissingFileIsAnError) {
  for (const char* name :
       {"config.json", "model.safetensors", "codebook.safetensors", "duet.json"}) {
    SCOPED_TRACE(name);
    SaveFreshBundle();
    ASSERT_TRUE(std::filesystem::remove(JoinPath(dir_, name)));
    absl::StatusOr<ModelBundle> loaded = LoadBundle(dir_);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound) << loaded.status();
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(name));
  }
}

TEST_F(BundleTest, MalformedDescriptionIsInvalidArgument) {
  for (const char* text : {"", "not json", "[1, 2]", "{}",
                           R"({"format": "duet-bundle-v0"})", R"({"format": 1})"}) {
    SCOPED_TRACE(text);
    SaveFreshBundle();
    Overwrite("duet.json", text);
    absl::StatusOr<ModelBundle> loaded = LoadBundle(dir_);
    EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument)
        << loaded.status();
  }
}

TEST_F(BundleTest, MalformedModelConfigIsInvalidArgument) {
  SaveFreshBundle();
  Overwrite("config.json", "{\"hidden_size\": \"big\"}");
  EXPECT_EQ(LoadBundle(dir_).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BundleTest, TruncatedWeightsAreDataLoss) {
  for (const char* name : {"model.safetensors", "codebook.safetensors"}) {
    SCOPED_TRACE(name);
    SaveFreshBundle();
    absl::StatusOr<std::string> bytes = ReadFileToString(JoinPath(dir_, name));
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    Overwrite(name, bytes->substr(0, bytes->size() - 100));
    EXPECT_EQ(LoadBundle(dir_).status().code(), absl::StatusCode::kDataLoss);
  }
}

TEST_F(BundleTest, CodebookThatDoesNotMatchTheModelIsInvalidArgument) {
  SaveFreshBundle();
  // A bigger codebook implies a bigger vocabulary than the saved model's.
  const WorldConfig world;
  absl::StatusOr<ImageTokenizer> bigger = ImageTokenizer::FromCodebook(
      GrayCodebook(kCodebookSize + 4, world), kCodebookSize + 4, world);
  ASSERT_TRUE(bigger.ok()) << bigger.status();
  ASSERT_TRUE(bigger->Save(JoinPath(dir_, "codebook.safetensors")).ok());
  absl::StatusOr<ModelBundle> loaded = LoadBundle(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument)
      << loaded.status();
  EXPECT_THAT(std::string(loaded.status().message()), HasSubstr("vocab_size"));
}

TEST_F(BundleTest, WeightsOfTheWrongShapeAreInvalidArgument) {
  SaveFreshBundle();
  const std::string path = JoinPath(dir_, "model.safetensors");
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ(file->tensors.count("model.embed_tokens.weight"), 1u);
  file->tensors["model.embed_tokens.weight"] = torch::zeros({3, 32});
  ASSERT_TRUE(WriteSafetensors(path, file->tensors, file->metadata).ok());
  absl::StatusOr<ModelBundle> loaded = LoadBundle(dir_);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument)
      << loaded.status();
  EXPECT_THAT(std::string(loaded.status().message()),
              HasSubstr("model.embed_tokens.weight"));
}

}  // namespace
}  // namespace duet::world
