// `duet reward-server`'s judge: the Shapes oracle as a duet.v1.Reward service, called
// over real gRPC on loopback with known-true and known-false pairs of both directions.
#include "tools/oracle_reward.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/eval/oracle.h"
#include "common/model/test_models.h"
#include "common/rpc/reward_service.h"
#include "common/world/caption.h"
#include "common/world/render.h"

namespace duet {
namespace {

constexpr char kToken[] = "oracle-token";

// A bundle whose image tokenizer is trained on fresh renders (as make-data trains one);
// the transformer is a tiny random one (the oracle never runs it).
world::ModelBundle MakeBundle() {
  const world::WorldConfig config;
  std::mt19937_64 rng(/*seed=*/11);
  std::vector<world::Image> train;
  for (int i = 0; i < 2000; ++i) {
    train.push_back(world::Render(
        world::SampleScene(world::kAllCategories[i % 4], rng, config), config, rng()));
  }
  world::ImageTokenizer image =
      *world::ImageTokenizer::Train(train, /*codebook_size=*/512, /*iterations=*/10,
                                    /*seed=*/7, config);
  const TokenLayout layout = world::LayoutForCodebook(image.codebook_size(), config);
  Transformer model =
      *Transformer::Create(testing::TinyTestConfig(layout.vocab_size()), /*seed=*/1);
  return world::ModelBundle{std::move(model), layout, config,
                            world::TextTokenizer(layout), std::move(image)};
}

class OracleRewardTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { bundle_ = new world::ModelBundle(MakeBundle()); }
  static void TearDownTestSuite() { delete bundle_; }

  void SetUp() override {
    const world::ModelBundle* b = bundle_;
    service_ = std::make_unique<RewardService>(
        b->layout, kToken,
        [b](const std::vector<RewardQuery>& qs) { return OracleRewards(*b, qs); });
    auto server = StartRewardServer("127.0.0.1:0", grpc::InsecureServerCredentials(),
                                    service_.get(), &port_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    client_ = Client(kToken);
  }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<RewardClient> Client(const std::string& token) {
    RewardClient::Options o;
    o.address = "127.0.0.1:" + std::to_string(port_);
    o.auth_token = token;
    o.timeout = absl::Seconds(30);
    return std::move(*RewardClient::Create(o));
  }

  // A scene of `category`, its image's codes (as token ids), and its canonical caption;
  // the decoded image must read back as the scene (the tokenizer's bar, checked here).
  struct Example {
    world::Scene scene;
    std::vector<int64_t> image_ids;
    std::string caption;
  };
  Example MakeExample(world::Category category, std::mt19937_64& rng) {
    for (;;) {
      Example e;
      e.scene = world::SampleScene(category, rng, bundle_->world);
      e.image_ids = *bundle_->EncodeImage(world::Render(e.scene, bundle_->world, rng()));
      e.caption = world::FormatCaption(*world::CanonicalCaption(e.scene));
      const world::Image decoded = *bundle_->DecodeImage(e.image_ids);
      if (eval::ScoreGeneration(*world::ParseCaption(e.caption), decoded, bundle_->world)
              .correct)
        return e;
    }
  }
  std::vector<int64_t> Ids(const std::string& caption) {
    return *bundle_->EncodeCaption(caption);
  }

  static world::ModelBundle* bundle_;
  std::unique_ptr<RewardService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<RewardClient> client_;
};

world::ModelBundle* OracleRewardTest::bundle_ = nullptr;

TEST_F(OracleRewardTest, KnownTrueAndKnownFalsePairsOfBothDirections) {
  std::mt19937_64 rng(/*seed=*/5);
  const Example single = MakeExample(world::Category::kSingle, rng);
  const Example position = MakeExample(world::Category::kPosition, rng);
  const Example counting = MakeExample(world::Category::kCounting, rng);
  ASSERT_NE(single.caption, position.caption);
  const std::vector<RewardQuery> queries = {
      // generation: the image satisfies its own caption, not another scene's
      {Task::kGeneration, Ids(single.caption), single.image_ids},
      {Task::kGeneration, Ids(position.caption), position.image_ids},
      {Task::kGeneration, Ids(position.caption), single.image_ids},
      {Task::kGeneration, Ids(single.caption), counting.image_ids},
      // understanding: the caption is true of the image, or not (a trailing <eos> is
      // fine)
      {Task::kUnderstanding, single.image_ids, Ids(single.caption)},
      {Task::kUnderstanding, counting.image_ids,
       [&] {
         auto ids = Ids(counting.caption);
         ids.push_back(bundle_->layout.eos);
         return ids;
       }()},
      {Task::kUnderstanding, position.image_ids, Ids(single.caption)},
      // words of the vocabulary but not a sentence of the grammar: false, not an error
      {Task::kUnderstanding, single.image_ids, Ids("circle a red")},
  };
  absl::StatusOr<std::vector<double>> scores = client_->Score(queries);
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_EQ(*scores, (std::vector<double>{1, 1, 0, 0, 1, 1, 0, 0}))
      << single.caption << " / " << position.caption << " / " << counting.caption;
}

TEST_F(OracleRewardTest, APositionPromptWithTheRelationReversedIsFalse) {
  std::mt19937_64 rng(/*seed=*/9);
  const Example e = MakeExample(world::Category::kPosition, rng);
  world::Caption c = *world::ParseCaption(e.caption);
  std::swap(
      c.a, c.b);  // "A left of B" -> "B left of A": the same objects, the wrong way round
  const std::string reversed = world::FormatCaption(c);
  absl::StatusOr<std::vector<double>> scores =
      client_->Score({{Task::kGeneration, Ids(reversed), e.image_ids},
                      {Task::kUnderstanding, e.image_ids, Ids(reversed)}});
  ASSERT_TRUE(scores.ok()) << scores.status();
  EXPECT_EQ(*scores, (std::vector<double>{0, 0})) << e.caption << " vs " << reversed;
}

TEST_F(OracleRewardTest, APromptOutsideTheGrammarIsInvalidArgumentNamingTheQuery) {
  std::mt19937_64 rng(/*seed=*/3);
  const Example e = MakeExample(world::Category::kSingle, rng);
  absl::StatusOr<std::vector<double>> scores =
      client_->Score({{Task::kGeneration, Ids(e.caption), e.image_ids},
                      {Task::kGeneration, Ids("red red"), e.image_ids}});
  ASSERT_FALSE(scores.ok());
  EXPECT_EQ(scores.status().code(), absl::StatusCode::kInvalidArgument)
      << scores.status();
  EXPECT_NE(scores.status().message().find("queries[1].input"), std::string::npos)
      << scores.status();
}

TEST_F(OracleRewardTest, MissingOrWrongTokenIsUnauthenticated) {
  std::mt19937_64 rng(/*seed=*/4);
  const Example e = MakeExample(world::Category::kSingle, rng);
  for (const std::string token : {"", "guess"}) {
    absl::StatusOr<std::vector<double>> scores =
        Client(token)->Score({{Task::kGeneration, Ids(e.caption), e.image_ids}});
    EXPECT_EQ(scores.status().code(), absl::StatusCode::kUnauthenticated)
        << "'" << token << "': " << scores.status();
  }
}

}  // namespace
}  // namespace duet
