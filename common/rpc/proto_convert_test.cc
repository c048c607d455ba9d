#include "common/rpc/proto_convert.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/model/test_models.h"
#include "gtest/gtest.h"

namespace duet {
namespace {

// Vocabulary [0, 48): text ids [8, 32), image ids [32, 48); at most 4 + 5 + 1 = 10
// tokens per sequence.
TokenLayout Layout() { return testing::TinyTestLayout(); }

RolloutRequest MakeRequest() {
  RolloutRequest r;
  r.task = Task::kUnderstanding;
  r.inputs = {{32, 33, 34, 35}, {47, 40, 32, 33}, {36, 36, 36, 36}};
  r.k = 2;
  r.sampling.temperature = 0.7;
  r.sampling.top_k = 5;
  r.sampling.top_p = 0.9;
  r.cfg_scale = 3.5;
  r.seed = 0xFEDCBA9876543210ULL;  // above INT64_MAX: must travel as uint64
  r.input_offset = 17;
  return r;
}

std::vector<Group> MakeGroups(const RolloutRequest& r) {
  std::vector<Group> groups;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    Group g;
    g.task = r.task;
    g.input = r.inputs[i];
    for (int64_t j = 0; j < r.k; ++j) {
      Sample s;
      const int64_t len = 1 + static_cast<int64_t>(i + j) % 3;
      for (int64_t t = 0; t < len; ++t) {
        s.output.push_back(8 + (i * 5 + j * 3 + t) % 24);
        s.policy_logprobs.push_back(-0.25f * static_cast<float>(t + 1) -
                                    static_cast<float>(i));
      }
      s.output.push_back(2);  // <eos>
      s.policy_logprobs.push_back(-0.125f);
      g.samples.push_back(std::move(s));
    }
    groups.push_back(std::move(g));
  }
  return groups;
}

v1::RolloutWork ValidWork() {
  v1::RolloutWork w;
  ToProto(MakeRequest(), &w);
  return w;
}

void ExpectInvalid(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(field), std::string::npos)
      << "message does not name '" << field << "': " << s;
}

TEST(TaskConvertTest, RoundTrip) {
  for (Task t : {Task::kGeneration, Task::kUnderstanding}) {
    absl::StatusOr<Task> back = FromProto(ToProto(t));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, t);
  }
  EXPECT_EQ(ToProto(Task::kGeneration), v1::TASK_GENERATION);
  EXPECT_EQ(ToProto(Task::kUnderstanding), v1::TASK_UNDERSTANDING);
}

TEST(TaskConvertTest, UnspecifiedOrUnknownIsInvalid) {
  EXPECT_EQ(FromProto(v1::TASK_UNSPECIFIED).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FromProto(static_cast<v1::TaskKind>(99)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RolloutWorkConvertTest, RoundTripKeepsEveryField) {
  const RolloutRequest r = MakeRequest();
  v1::RolloutWork w;
  ToProto(r, &w);
  EXPECT_EQ(w.task(), v1::TASK_UNDERSTANDING);
  EXPECT_EQ(w.inputs_size(), 3);
  EXPECT_TRUE(w.use_cfg());
  EXPECT_EQ(w.seed(), 0xFEDCBA9876543210ULL);

  // Through the wire bytes, as a worker sees it.
  v1::RolloutWork parsed;
  ASSERT_TRUE(parsed.ParseFromString(w.SerializeAsString()));
  absl::StatusOr<RolloutRequest> back = FromProto(parsed, Layout());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->task, r.task);
  EXPECT_EQ(back->inputs, r.inputs);
  EXPECT_EQ(back->k, r.k);
  EXPECT_EQ(back->sampling.temperature, r.sampling.temperature);
  EXPECT_EQ(back->sampling.top_k, r.sampling.top_k);
  EXPECT_EQ(back->sampling.top_p, r.sampling.top_p);
  ASSERT_TRUE(back->cfg_scale.has_value());
  EXPECT_EQ(*back->cfg_scale, 3.5);
  EXPECT_EQ(back->seed, r.seed);
  EXPECT_EQ(back->input_offset, r.input_offset);
}

TEST(RolloutWorkConvertTest, NoGuidanceStaysNoGuidance) {
  RolloutRequest r = MakeRequest();
  r.task = Task::kGeneration;
  r.inputs = {{1, 6, 8, 9, 10}};
  r.cfg_scale.reset();
  v1::RolloutWork w;
  ToProto(r, &w);
  EXPECT_FALSE(w.use_cfg());
  absl::StatusOr<RolloutRequest> back = FromProto(w, Layout());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->cfg_scale.has_value());
  EXPECT_EQ(back->task, Task::kGeneration);
  EXPECT_EQ(back->inputs, r.inputs);
}

TEST(RolloutWorkConvertTest, GuidanceScaleZeroIsKept) {
  RolloutRequest r = MakeRequest();
  r.cfg_scale = 0.0;  // guidance on, scale 0: not the same as no guidance
  v1::RolloutWork w;
  ToProto(r, &w);
  absl::StatusOr<RolloutRequest> back = FromProto(w, Layout());
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->cfg_scale.has_value());
  EXPECT_EQ(*back->cfg_scale, 0.0);
}

TEST(RolloutWorkConvertTest, UnsetTopPMeansOff) {
  v1::RolloutWork w = ValidWork();
  w.mutable_sampling()->clear_top_p();
  absl::StatusOr<RolloutRequest> back = FromProto(w, Layout());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sampling.top_p, 1.0);
}

TEST(RolloutWorkConvertTest, RejectsBadWork) {
  struct Case {
    const char* field;
    void (*mutate)(v1::RolloutWork*);
  };
  const Case cases[] = {
      {"task", [](v1::RolloutWork* w) { w->set_task(v1::TASK_UNSPECIFIED); }},
      {"inputs", [](v1::RolloutWork* w) { w->clear_inputs(); }},
      {"inputs[1]", [](v1::RolloutWork* w) { w->mutable_inputs(1)->clear_ids(); }},
      {"inputs[2]", [](v1::RolloutWork* w) { w->mutable_inputs(2)->set_ids(0, -1); }},
      {"inputs[0]", [](v1::RolloutWork* w) { w->mutable_inputs(0)->set_ids(3, 48); }},
      {"inputs[0]",
       [](v1::RolloutWork* w) {
         for (int i = 0; i < 7; ++i) w->mutable_inputs(0)->add_ids(32);  // 11 > 10 tokens
       }},
      {"k", [](v1::RolloutWork* w) { w->set_k(0); }},
      {"k", [](v1::RolloutWork* w) { w->set_k(65); }},
      {"k", [](v1::RolloutWork* w) { w->set_k(-3); }},
      {"temperature",
       [](v1::RolloutWork* w) { w->mutable_sampling()->set_temperature(-1); }},
      {"temperature",
       [](v1::RolloutWork* w) {
         w->mutable_sampling()->set_temperature(std::numeric_limits<double>::quiet_NaN());
       }},
      {"top_k", [](v1::RolloutWork* w) { w->mutable_sampling()->set_top_k(-1); }},
      {"top_p", [](v1::RolloutWork* w) { w->mutable_sampling()->set_top_p(1.5); }},
      {"top_p", [](v1::RolloutWork* w) { w->mutable_sampling()->set_top_p(-0.1); }},
      {"cfg_scale",
       [](v1::RolloutWork* w) {
         w->set_cfg_scale(std::numeric_limits<double>::infinity());
       }},
      {"cfg_scale",
       [](v1::RolloutWork* w) {
         w->set_cfg_scale(std::numeric_limits<double>::quiet_NaN());
       }},
      {"input_offset", [](v1::RolloutWork* w) { w->set_input_offset(-1); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    v1::RolloutWork w = ValidWork();
    ASSERT_TRUE(FromProto(w, Layout()).ok());
    c.mutate(&w);
    ExpectInvalid(FromProto(w, Layout()).status(), c.field);
  }
}

TEST(RolloutWorkConvertTest, LongestAllowedInputIsAccepted) {
  v1::RolloutWork w = ValidWork();
  w.mutable_inputs(0)->clear_ids();
  for (int i = 0; i < 10; ++i) w.mutable_inputs(0)->add_ids(47);
  EXPECT_TRUE(FromProto(w, Layout()).ok());
}

TEST(RolloutWorkConvertTest, NonFiniteScaleWithoutGuidanceIsIgnored) {
  v1::RolloutWork w = ValidWork();
  w.set_use_cfg(false);
  w.set_cfg_scale(std::numeric_limits<double>::quiet_NaN());
  absl::StatusOr<RolloutRequest> back = FromProto(w, Layout());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->cfg_scale.has_value());
}

TEST(RolloutResultConvertTest, RoundTrip) {
  const RolloutRequest r = MakeRequest();
  const std::vector<Group> groups = MakeGroups(r);
  v1::RolloutResult result;
  ToProto(groups, &result);
  ASSERT_EQ(result.groups_size(), 3);
  v1::RolloutResult parsed;
  ASSERT_TRUE(parsed.ParseFromString(result.SerializeAsString()));

  absl::StatusOr<std::vector<Group>> back = FromProto(parsed, r, /*policy_version=*/42);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    SCOPED_TRACE(i);
    const Group& g = (*back)[i];
    EXPECT_EQ(g.task, r.task);
    EXPECT_EQ(g.input, r.inputs[i]);  // from the request, not the wire
    ASSERT_EQ(g.samples.size(), groups[i].samples.size());
    for (size_t j = 0; j < g.samples.size(); ++j) {
      EXPECT_EQ(g.samples[j].output, groups[i].samples[j].output);
      EXPECT_EQ(g.samples[j].policy_logprobs, groups[i].samples[j].policy_logprobs);
      EXPECT_EQ(g.samples[j].policy_version, 42);
    }
  }
}

TEST(RolloutResultConvertTest, WrongNumberOfGroupsIsInvalid) {
  const RolloutRequest r = MakeRequest();
  std::vector<Group> groups = MakeGroups(r);
  groups.pop_back();
  v1::RolloutResult result;
  ToProto(groups, &result);
  EXPECT_EQ(FromProto(result, r, 1).status().code(), absl::StatusCode::kInvalidArgument);

  v1::RolloutResult extra;
  ToProto(MakeGroups(r), &extra);
  *extra.add_groups() = extra.groups(0);
  EXPECT_EQ(FromProto(extra, r, 1).status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(FromProto(v1::RolloutResult(), r, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RolloutResultConvertTest, WrongNumberOfSamplesIsInvalid) {
  const RolloutRequest r = MakeRequest();
  v1::RolloutResult fewer;
  ToProto(MakeGroups(r), &fewer);
  fewer.mutable_groups(1)->mutable_samples()->RemoveLast();
  EXPECT_EQ(FromProto(fewer, r, 1).status().code(), absl::StatusCode::kInvalidArgument);

  v1::RolloutResult more;
  ToProto(MakeGroups(r), &more);
  *more.mutable_groups(2)->add_samples() = more.groups(2).samples(0);
  EXPECT_EQ(FromProto(more, r, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RolloutResultConvertTest, LogprobCountMustMatchOutputLength) {
  // "policy_logprobs: behaviour log-probs, one per output token" (coordinator.proto).
  const RolloutRequest r = MakeRequest();
  v1::RolloutResult missing;
  ToProto(MakeGroups(r), &missing);
  missing.mutable_groups(0)->mutable_samples(1)->mutable_policy_logprobs()->RemoveLast();
  EXPECT_EQ(FromProto(missing, r, 1).status().code(), absl::StatusCode::kInvalidArgument);

  v1::RolloutResult extra;
  ToProto(MakeGroups(r), &extra);
  extra.mutable_groups(2)->mutable_samples(0)->add_policy_logprobs(-1.0f);
  EXPECT_EQ(FromProto(extra, r, 1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ScoreWorkConvertTest, RoundTrip) {
  const std::vector<RewardQuery> queries = {
      {Task::kGeneration, {8, 9, 10}, {32, 33, 34, 35}},
      {Task::kUnderstanding, {47, 46, 45, 44}, {8, 20, 31, 2}},
  };
  v1::ScoreWork w;
  ToProto(queries, &w);
  v1::ScoreWork parsed;
  ASSERT_TRUE(parsed.ParseFromString(w.SerializeAsString()));
  absl::StatusOr<std::vector<RewardQuery>> back = FromProto(parsed, Layout());
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ((*back)[i].task, queries[i].task);
    EXPECT_EQ((*back)[i].input, queries[i].input);
    EXPECT_EQ((*back)[i].output, queries[i].output);
  }
}

TEST(ScoreWorkConvertTest, RejectsBadWork) {
  const std::vector<RewardQuery> queries = {
      {Task::kGeneration, {8, 9, 10}, {32, 33, 34, 35}},
      {Task::kUnderstanding, {47, 46, 45, 44}, {8, 20, 31, 2}},
  };
  v1::ScoreWork valid;
  ToProto(queries, &valid);
  ASSERT_TRUE(FromProto(valid, Layout()).ok());

  ExpectInvalid(FromProto(v1::ScoreWork(), Layout()).status(), "queries");

  struct Case {
    const char* field;
    void (*mutate)(v1::ScoreWork*);
  };
  const Case cases[] = {
      {"task",
       [](v1::ScoreWork* w) { w->mutable_queries(1)->set_task(v1::TASK_UNSPECIFIED); }},
      {"queries[0].input",
       [](v1::ScoreWork* w) { w->mutable_queries(0)->mutable_input()->clear_ids(); }},
      {"queries[1].output",
       [](v1::ScoreWork* w) { w->mutable_queries(1)->clear_output(); }},
      {"queries[1].input",
       [](v1::ScoreWork* w) { w->mutable_queries(1)->mutable_input()->set_ids(2, 48); }},
      {"queries[0].output",
       [](v1::ScoreWork* w) { w->mutable_queries(0)->mutable_output()->set_ids(0, -7); }},
      {"queries[0].output",
       [](v1::ScoreWork* w) {
         for (int i = 0; i < 7; ++i) w->mutable_queries(0)->mutable_output()->add_ids(40);
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    v1::ScoreWork w = valid;
    c.mutate(&w);
    ExpectInvalid(FromProto(w, Layout()).status(), c.field);
  }
}

}  // namespace
}  // namespace duet
