#include "common/world/text_tokenizer.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace duet::world {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(TextTokenizerTest, VocabularyFitsTheTextRange) {
  const TokenLayout layout;
  const TextTokenizer tok(layout);
  EXPECT_EQ(TextTokenizer::Words().size(), static_cast<size_t>(TextTokenizer::kNumWords));
  std::set<int64_t> ids;
  for (std::string_view w : TextTokenizer::Words()) {
    const int64_t id = tok.WordId(w);
    EXPECT_TRUE(layout.IsText(id)) << w;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), TextTokenizer::Words().size());
  EXPECT_EQ(tok.WordId("a"), layout.text_begin);
  EXPECT_EQ(tok.WordId("dog"), -1);
}

TEST(TextTokenizerTest, EncodeDecodeRoundTrip) {
  const TextTokenizer tok;
  for (const char* text : {"a red circle left of a blue square", "three cyan crosses",
                           "a magenta triangle and a yellow square",
                           "a green cross below a red circle", "of of and"}) {
    absl::StatusOr<std::vector<int64_t>> ids = tok.Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    absl::StatusOr<std::string> back = tok.Decode(*ids);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, text);
  }
  EXPECT_THAT(tok.Encode("a red circle").value(), ElementsAre(8, 11, 17));
  EXPECT_TRUE(tok.Encode("").value().empty());
  EXPECT_EQ(tok.Decode({}).value(), "");
}

TEST(TextTokenizerTest, Errors) {
  const TextTokenizer tok;
  absl::Status s = tok.Encode("a red dog").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("\"dog\""));
  EXPECT_EQ(tok.Encode("a Red circle").status().code(),
            absl::StatusCode::kInvalidArgument);
  for (int64_t bad : {0, 2, 7, 31, 32, 543, -1}) {
    s = tok.Decode({8, bad}).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << bad;
    EXPECT_THAT(s.message(), HasSubstr(std::to_string(bad)));
  }
}

}  // namespace
}  // namespace duet::world
