#include "common/base/flag_help.h"

#include <gflags/gflags.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

DEFINE_int32(help_test_count, 7, "how many things");
DEFINE_string(help_test_name, "abc", "what it is called");

namespace duet {
namespace {

std::string HelpText(const std::vector<FlagGroup>& groups) {
  char* buf = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&buf, &size);
  PrintFlagHelp("usage: prog [flags]", groups, out);
  std::fclose(out);
  std::string text(buf, size);
  free(buf);
  return text;
}

TEST(FlagHelpTest, ShowsOnlyTheGroupedFlagsWithTypesAndDefaults) {
  const std::string text = HelpText({{"things", {"help_test_count", "help_test_name"}}});
  EXPECT_EQ(text.rfind("usage: prog [flags]\n", 0), 0u) << text;
  EXPECT_NE(text.find("things:\n"), std::string::npos) << text;
  EXPECT_NE(text.find("--help_test_count (int32, default 7)\n      how many things"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("--help_test_name (string, default \"abc\")"), std::string::npos)
      << text;
  // Flags linked in from libraries (gflags' own, glog's) stay out.
  EXPECT_EQ(text.find("--flagfile"), std::string::npos) << text;
  EXPECT_EQ(text.find("--logtostderr"), std::string::npos) << text;
}

TEST(FlagHelpTest, AStaleTableIsVisible) {
  EXPECT_NE(HelpText({{"g", {"no_such_flag_anywhere"}}})
                .find("--no_such_flag_anywhere  (not defined)"),
            std::string::npos);
}

TEST(FlagHelpTest, OnlyHelpArgumentsTriggerIt) {
  char prog[] = "prog", flag[] = "--help_test_count=3", help[] = "--help";
  char* plain[] = {prog, flag};
  EXPECT_FALSE(PrintHelpIfAsked(2, plain, "usage", {}));
  char* asked[] = {prog, flag, help};
  EXPECT_TRUE(PrintHelpIfAsked(3, asked, "usage", {}));
}

// gflags keeps only the last of a repeated flag: --set is taken out of argv first, every
// spelling, in order; everything else stays, in order, for gflags.
TEST(FlagHelpTest, TakeRepeatedFlagTakesEveryOccurrenceInOrder) {
  std::vector<std::string> args = {
      "prog",  "--set=steps=3",  "--out=x",    "-set", "lr=0.1",    "word",
      "--set", "grpo.kl_coef=0", "--settle=1", "--",   "--set=late"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int argc = static_cast<int>(args.size());
  const std::vector<std::string> values = TakeRepeatedFlag("set", &argc, argv.data());
  EXPECT_EQ(values, (std::vector<std::string>{"steps=3", "lr=0.1", "grpo.kl_coef=0"}));
  std::vector<std::string> rest(argv.begin(), argv.begin() + argc);
  EXPECT_EQ(rest, (std::vector<std::string>{"prog", "--out=x", "word", "--settle=1", "--",
                                            "--set=late"}));
  EXPECT_EQ(argv[argc], nullptr);
}

TEST(FlagHelpTest, ATrailingFlagWithoutValueIsLeftForGflags) {
  std::string prog = "prog", set = "--set";
  char* argv[] = {prog.data(), set.data(), nullptr};
  int argc = 2;
  EXPECT_TRUE(TakeRepeatedFlag("set", &argc, argv).empty());
  EXPECT_EQ(argc, 2);
}

TEST(FlagHelpTest, NotesFollowTheirGroup) {
  FlagGroup g{"recipe", {"help_test_count"}, {"steps=150", "grpo.kl_coef=0.1"}};
  const std::string text = HelpText({g});
  EXPECT_NE(text.find("how many things\n      steps=150\n      grpo.kl_coef=0.1\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace duet
