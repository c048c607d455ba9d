#include "learner/ledger.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "common/base/test_util.h"

namespace duet {
namespace {

TrainedGroup Gen(int64_t input, const std::string& item) {
  return {Task::kGeneration, input, item, 8};
}
TrainedGroup Und(int64_t input, const std::string& item) {
  return {Task::kUnderstanding, input, item, 8};
}

TEST(LedgerTest, LineRoundTrips) {
  const LedgerEntry e{3, {Task::kUnderstanding, 17, "run1-i42", 4}};
  const std::string line = LedgerLine(e);
  EXPECT_EQ(
      line,
      R"({"direction":"understanding","input":17,"item":"run1-i42","samples":4,"step":3})");
  auto back = ParseLedgerLine(line);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->step, 3);
  EXPECT_EQ(back->group.task, Task::kUnderstanding);
  EXPECT_EQ(back->group.input, 17);
  EXPECT_EQ(back->group.item, "run1-i42");
  EXPECT_EQ(back->group.samples, 4);
}

TEST(LedgerTest, RefusesLinesThatAreNotLedgerLines) {
  for (const char* bad :
       {"", "{", "[]", R"({"step":1})",
        R"({"step":1,"direction":"sideways","input":0,"item":"","samples":1})",
        R"({"step":"1","direction":"generation","input":0,"item":"","samples":1})"}) {
    EXPECT_EQ(ParseLedgerLine(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(LedgerTest, AppendsOneLinePerGroupAndReadsThemBack) {
  testing::ScratchDir dir("ledger");
  const std::string path = dir.path() + "/ledger.jsonl";
  auto reading = ReadLedger(path);
  ASSERT_TRUE(reading.ok());
  EXPECT_TRUE(reading->empty());  // no file yet
  auto w = LedgerWriter::Open(path, /*keep_through_step=*/0);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->Append(1, {Gen(5, "a"), Gen(9, "a"), Und(2, "b")}).ok());
  ASSERT_TRUE(w->Append(2, {Gen(1, "c")}).ok());
  auto entries = ReadLedger(path);
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 4u);
  EXPECT_EQ((*entries)[0].step, 1);
  EXPECT_EQ((*entries)[2].group.task, Task::kUnderstanding);
  EXPECT_EQ((*entries)[2].group.input, 2);
  EXPECT_EQ((*entries)[3].step, 2);
  EXPECT_EQ((*entries)[3].group.item, "c");
}

// A resumed run re-runs the steps past its checkpoint: their lines go (and a line a crash
// cut short), the earlier ones stay, and new lines follow them.
TEST(LedgerTest, OpenDropsTheLinesPastTheCheckpoint) {
  testing::ScratchDir dir("ledger");
  const std::string path = dir.path() + "/ledger.jsonl";
  {
    auto w = LedgerWriter::Open(path, 0);
    ASSERT_TRUE(w.ok());
    for (int64_t step = 1; step <= 4; ++step)
      ASSERT_TRUE(w->Append(step, {Gen(step, "x"), Und(step, "y")}).ok());
  }
  {
    std::ofstream(path, std::ios::app) << R"({"step":5,"direc)";
  }  // cut short by a crash
  auto w = LedgerWriter::Open(path, /*keep_through_step=*/2);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->Append(3, {Gen(30, "z")}).ok());
  auto entries = ReadLedger(path);
  ASSERT_TRUE(entries.ok()) << entries.status();
  std::vector<int64_t> steps;
  for (const LedgerEntry& e : *entries) steps.push_back(e.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 1, 2, 2, 3}));
  EXPECT_EQ(entries->back().group.input, 30);
}

TEST(LedgerTest, AFreshRunStartsEmpty) {
  testing::ScratchDir dir("ledger");
  const std::string path = dir.path() + "/ledger.jsonl";
  ASSERT_TRUE(WriteFileAtomically(path, LedgerLine({1, Gen(0, "old")}) + "\n").ok());
  auto w = LedgerWriter::Open(path, /*keep_through_step=*/0);
  ASSERT_TRUE(w.ok());
  auto entries = ReadLedger(path);
  ASSERT_TRUE(entries.ok());
  EXPECT_TRUE(entries->empty());
}

TEST(LedgerTest, ReadNamesTheBadLine) {
  testing::ScratchDir dir("ledger");
  const std::string path = dir.path() + "/ledger.jsonl";
  ASSERT_TRUE(
      WriteFileAtomically(path, LedgerLine({1, Gen(0, "a")}) + "\nnot json\n").ok());
  auto entries = ReadLedger(path);
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(entries.status().message().find("line 2"), std::string::npos)
      << entries.status();
}

}  // namespace
}  // namespace duet
