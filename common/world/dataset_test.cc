#include "common/world/dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/base/test_util.h"
#include "common/world/image_tokenizer.h"
#include "common/world/png_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace duet::world {
namespace {

using ::testing::HasSubstr;

class DatasetTest : public ::testing::Test {
 protected:
  MakeDataOptions TinyOptions(const std::string& out) const {
    MakeDataOptions o;
    o.out_dir = out;
    o.sft_pairs = 60;
    o.rl_prompts = 200;
    o.rl_images = 20;
    o.eval_per_category = 30;
    o.codebook_size = 16;
    o.tokenizer_images = 50;
    o.tokenizer_iterations = 3;
    o.seed = 5;
    return o;
  }

  void WriteLines(const std::string& path, const std::string& contents) {
    ASSERT_TRUE(WriteFileAtomically(path, contents).ok());
  }

  const testing::ScratchDir scratch_{"dataset_test"};
  const std::string dir_ = scratch_.path();
};

// The hard understanding split: position and mixed scenes only, canonical captions,
// no image shared with the training or standard-eval images, and the same split whether
// MakeData writes it or MakeHardUnderstandingSplit adds it to an existing folder.
TEST_F(DatasetTest, HardSplitHoldsOnlyHardScenesAndNoTrainingImage) {
  const std::string out = dir_ + "/data";
  ASSERT_TRUE(MakeData(TinyOptions(out)).ok());
  std::set<std::vector<uint8_t>> other_pixels;
  for (const char* file : {kSftFile, kEvalUndFile}) {
    absl::StatusOr<std::vector<PairRecord>> pairs = ReadPairs(JoinPath(out, file));
    ASSERT_TRUE(pairs.ok()) << pairs.status();
    for (const PairRecord& r : *pairs) other_pixels.insert(ReadPng(r.image, 24, 24)->rgb);
  }
  absl::StatusOr<std::vector<ImageRecord>> rl =
      ReadImages(JoinPath(out, kRlUndImagesFile));
  ASSERT_TRUE(rl.ok());
  for (const ImageRecord& r : *rl) other_pixels.insert(ReadPng(r.image, 24, 24)->rgb);

  absl::StatusOr<std::vector<PairRecord>> hard =
      ReadPairs(JoinPath(out, kEvalUndHardFile));
  ASSERT_TRUE(hard.ok()) << hard.status();
  ASSERT_EQ(hard->size(), 400u);
  std::map<Category, int> per_category;
  std::set<std::vector<uint8_t>> hard_pixels;
  for (const PairRecord& r : *hard) {
    ++per_category[r.category];
    EXPECT_TRUE(r.category == Category::kPosition || r.category == Category::kMixed)
        << r.caption;
    EXPECT_EQ(r.parsed.NumObjects(), r.category == Category::kMixed ? 3 : 2) << r.caption;
    absl::StatusOr<Image> image = ReadPng(r.image, 24, 24);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(other_pixels.count(image->rgb), 0u) << r.image;
    EXPECT_TRUE(hard_pixels.insert(image->rgb).second) << "duplicate " << r.image;
  }
  EXPECT_EQ(per_category[Category::kPosition], 200);
  EXPECT_EQ(per_category[Category::kMixed], 200);

  // Added to the folder afterwards (same seed): the same records and pixels.
  absl::StatusOr<std::string> made = ReadFileToString(JoinPath(out, kEvalUndHardFile));
  const std::vector<uint8_t> first_pixels = ReadPng((*hard)[0].image, 24, 24)->rgb;
  std::filesystem::remove_all(JoinPath(out, "images/eval_hard"));
  std::filesystem::remove(JoinPath(out, kEvalUndHardFile));
  HardSplitOptions o;
  o.seed = TinyOptions(out).seed;
  ASSERT_TRUE(MakeHardUnderstandingSplit(out, o).ok());
  EXPECT_EQ(*ReadFileToString(JoinPath(out, kEvalUndHardFile)), *made);
  EXPECT_EQ(ReadPng((*hard)[0].image, 24, 24)->rgb, first_pixels);

  o.per_category = 0;
  EXPECT_EQ(MakeHardUnderstandingSplit(out, o).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DatasetTest, MakeDataWritesEverythingReadable) {
  const std::string out = dir_ + "/data";
  ASSERT_TRUE(MakeData(TinyOptions(out)).ok());

  absl::StatusOr<ImageTokenizer> tok = ImageTokenizer::Load(JoinPath(out, kCodebookFile));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ(tok->codebook_size(), 16);

  // Pixels of every non-eval image.
  std::set<std::vector<uint8_t>> train_pixels;

  absl::StatusOr<std::vector<PairRecord>> sft = ReadPairs(JoinPath(out, kSftFile));
  ASSERT_TRUE(sft.ok()) << sft.status();
  ASSERT_EQ(sft->size(), 60u);
  std::vector<int> per_category(kNumCategoryValues);
  for (const PairRecord& r : *sft) {
    ++per_category[static_cast<int>(r.category)];
    EXPECT_EQ(r.parsed.category, r.category);
    if (r.category == Category::kMixed) {
      EXPECT_EQ(r.parsed.NumObjects(), 3) << r.caption;
    }
    absl::StatusOr<Image> image =
        ReadPng(r.image, /*expect_width=*/24, /*expect_height=*/24);
    ASSERT_TRUE(image.ok()) << image.status();
    train_pixels.insert(image->rgb);
  }
  // mixed_fraction 0.2 of 60: 12 mixed pairs, the other 48 rotate over the four.
  EXPECT_EQ(per_category, std::vector<int>(5, 12));

  absl::StatusOr<std::vector<ImageRecord>> rl_images =
      ReadImages(JoinPath(out, kRlUndImagesFile));
  ASSERT_TRUE(rl_images.ok()) << rl_images.status();
  ASSERT_EQ(rl_images->size(), 20u);
  for (const ImageRecord& r : *rl_images) {
    EXPECT_NE(r.category, Category::kMixed);
    absl::StatusOr<Image> image =
        ReadPng(r.image, /*expect_width=*/24, /*expect_height=*/24);
    ASSERT_TRUE(image.ok()) << image.status();
    train_pixels.insert(image->rgb);
  }

  absl::StatusOr<std::vector<PairRecord>> eval_und =
      ReadPairs(JoinPath(out, kEvalUndFile));
  ASSERT_TRUE(eval_und.ok()) << eval_und.status();
  ASSERT_EQ(eval_und->size(), 120u);
  for (const PairRecord& r : *eval_und) {
    EXPECT_NE(r.category, Category::kMixed) << r.caption;
    absl::StatusOr<Image> image =
        ReadPng(r.image, /*expect_width=*/24, /*expect_height=*/24);
    ASSERT_TRUE(image.ok()) << image.status();
    EXPECT_EQ(train_pixels.count(image->rgb), 0u) << r.image;
  }

  absl::StatusOr<std::vector<PromptRecord>> rl_prompts =
      ReadPrompts(JoinPath(out, kRlGenPromptsFile));
  ASSERT_TRUE(rl_prompts.ok()) << rl_prompts.status();
  ASSERT_EQ(rl_prompts->size(), 200u);
  std::set<std::string> rl_strings;
  for (const PromptRecord& r : *rl_prompts) {
    EXPECT_NE(r.category, Category::kMixed) << r.prompt;
    rl_strings.insert(r.prompt);
  }

  absl::StatusOr<std::vector<PromptRecord>> eval_gen =
      ReadPrompts(JoinPath(out, kEvalGenFile));
  ASSERT_TRUE(eval_gen.ok()) << eval_gen.status();
  ASSERT_EQ(eval_gen->size(), 120u);
  std::set<std::string> held_out;
  for (const PromptRecord& r : *eval_gen) {
    EXPECT_NE(r.category, Category::kMixed) << r.prompt;
    if (r.category == Category::kTwoObjects || r.category == Category::kPosition) {
      EXPECT_EQ(rl_strings.count(r.prompt), 0u) << r.prompt;
      EXPECT_TRUE(held_out.insert(r.prompt).second) << "duplicate " << r.prompt;
    }
  }

  absl::StatusOr<std::string> manifest_text =
      ReadFileToString(JoinPath(out, kManifestFile));
  ASSERT_TRUE(manifest_text.ok());
  const nlohmann::json manifest = nlohmann::json::parse(*manifest_text);
  EXPECT_EQ(manifest["counts"]["sft_pairs"], 60);
  EXPECT_EQ(manifest["counts"]["eval_und"], 120);
  EXPECT_EQ(manifest["seed"], 5);
  EXPECT_EQ(manifest["world"]["grid"], 3);
  EXPECT_EQ(manifest["tokenizer"]["codebook_size"], 16);
  EXPECT_EQ(manifest["mixed_fraction"], 0.2);
  EXPECT_EQ(manifest["counts"]["sft_mixed_pairs"], 12);

  // The raw JSONL names the category "mixed" in sft.jsonl and nowhere else.
  EXPECT_THAT(ReadFileToString(JoinPath(out, kSftFile)).value(),
              HasSubstr("\"category\":\"mixed\""));
  for (const char* file :
       {kRlGenPromptsFile, kRlUndImagesFile, kEvalGenFile, kEvalUndFile}) {
    EXPECT_EQ(ReadFileToString(JoinPath(out, file)).value().find("mixed"),
              std::string::npos)
        << file;
  }
}

TEST_F(DatasetTest, MixedFractionZeroAndOne) {
  for (double fraction : {0.0, 1.0}) {
    const std::string out = dir_ + "/f" + std::to_string(static_cast<int>(fraction));
    MakeDataOptions o = TinyOptions(out);
    o.mixed_fraction = fraction;
    ASSERT_TRUE(MakeData(o).ok());
    absl::StatusOr<std::vector<PairRecord>> sft = ReadPairs(JoinPath(out, kSftFile));
    ASSERT_TRUE(sft.ok()) << sft.status();
    ASSERT_EQ(sft->size(), 60u);
    const auto mixed = std::count_if(sft->begin(), sft->end(), [](const PairRecord& r) {
      return r.category == Category::kMixed;
    });
    EXPECT_EQ(mixed, fraction == 0.0 ? 0 : 60) << fraction;
  }
}

TEST_F(DatasetTest, MakeDataIsDeterministic) {
  ASSERT_TRUE(MakeData(TinyOptions(dir_ + "/a")).ok());
  ASSERT_TRUE(MakeData(TinyOptions(dir_ + "/b")).ok());
  for (const char* file :
       {kSftFile, kRlGenPromptsFile, kEvalGenFile, kEvalUndFile, kManifestFile,
        "images/sft/000007.png", "images/eval/000003.png", kCodebookFile}) {
    EXPECT_EQ(ReadFileToString(JoinPath(dir_ + "/a", file)).value(),
              ReadFileToString(JoinPath(dir_ + "/b", file)).value())
        << file;
  }
}

TEST_F(DatasetTest, MakeDataRejectsBadOptions) {
  MakeDataOptions o = TinyOptions(dir_ + "/bad");
  o.sft_pairs = -1;
  EXPECT_EQ(MakeData(o).code(), absl::StatusCode::kInvalidArgument);
  o = TinyOptions(dir_ + "/bad");
  o.codebook_size = 513;
  EXPECT_EQ(MakeData(o).code(), absl::StatusCode::kInvalidArgument);
  o = TinyOptions(dir_ + "/bad");
  o.eval_per_category = 300;
  EXPECT_EQ(MakeData(o).code(), absl::StatusCode::kInvalidArgument);
  o = TinyOptions("");
  EXPECT_EQ(MakeData(o).code(), absl::StatusCode::kInvalidArgument);
  for (double fraction : {-0.1, 1.5, std::nan("")}) {
    o = TinyOptions(dir_ + "/bad");
    o.mixed_fraction = fraction;
    EXPECT_EQ(MakeData(o).code(), absl::StatusCode::kInvalidArgument) << fraction;
  }
}

TEST_F(DatasetTest, ReadersResolvePathsAndSkipBlankLines) {
  const std::string path = dir_ + "/pairs.jsonl";
  WriteLines(
      path,
      "{\"image\": \"images/x.png\", \"caption\": \"a red circle\"}\n\n"
      "{\"image\": \"/abs/y.png\", \"caption\": \"two blue squares\", "
      "\"category\": \"counting\"}\n"
      "{\"image\": \"z.png\", \"caption\": \"a red cross and two yellow squares\", "
      "\"category\": \"mixed\"}\n");
  absl::StatusOr<std::vector<PairRecord>> pairs = ReadPairs(path);
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  ASSERT_EQ(pairs->size(), 3u);
  EXPECT_EQ((*pairs)[2].category, Category::kMixed);
  EXPECT_EQ((*pairs)[2].parsed.phrases.size(), 2u);
  EXPECT_EQ((*pairs)[0].image, dir_ + "/images/x.png");
  EXPECT_EQ((*pairs)[0].category, Category::kSingle);
  EXPECT_EQ((*pairs)[1].image, "/abs/y.png");
  EXPECT_EQ((*pairs)[1].parsed.count, 2);
}

TEST_F(DatasetTest, ReaderErrorsNameFileAndLine) {
  const std::string path = dir_ + "/bad.jsonl";
  const std::string good = "{\"image\": \"a.png\", \"caption\": \"a red circle\"}\n";
  struct Case {
    std::string line;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"not json", "not valid JSON"},
           {"[1, 2]", "not a JSON object"},
           {"{\"caption\": \"a red circle\"}", "no \"image\""},
           {"{\"image\": 3, \"caption\": \"a red circle\"}", "\"image\" is not a string"},
           {"{\"image\": \"a.png\", \"caption\": \"a red dog\"}", "\"dog\""},
           {"{\"image\": \"a.png\", \"caption\": \"a red circle\", \"category\": "
            "\"counting\"}",
            "disagrees"},
           {"{\"image\": \"a.png\", \"caption\": \"a red circle\", \"category\": "
            "\"mixed\"}",
            "disagrees"},
           {"{\"image\": \"a.png\", \"caption\": \"a red circle\", \"category\": "
            "\"blah\"}",
            "unknown category"},
       }) {
    WriteLines(path, good + good + c.line + "\n");
    absl::Status s = ReadPairs(path).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_THAT(s.message(), HasSubstr(path + ":3: ")) << s;
    EXPECT_THAT(s.message(), HasSubstr(c.message)) << s;
  }
  WriteLines(path, "{\"prompt\": \"a red circle and a red circle\"}\n");
  EXPECT_EQ(ReadPrompts(path).status().code(), absl::StatusCode::kInvalidArgument);
  WriteLines(path, "{\"image\": \"a.png\"}\n");
  EXPECT_THAT(ReadImages(path).status().message(), HasSubstr("no \"category\""));
  EXPECT_EQ(ReadPairs(dir_ + "/missing.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace duet::world
