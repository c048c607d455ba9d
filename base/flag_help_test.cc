#include "base/flag_help.h"

#include <cstdio>
#include <string>

#include <gflags/gflags.h>
#include <gtest/gtest.h>

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
  EXPECT_NE(text.find("--help_test_count (int32, default 7)\n      how many things"), std::string::npos) << text;
  EXPECT_NE(text.find("--help_test_name (string, default \"abc\")"), std::string::npos) << text;
  // Flags linked in from libraries (gflags' own, glog's) stay out.
  EXPECT_EQ(text.find("--flagfile"), std::string::npos) << text;
  EXPECT_EQ(text.find("--logtostderr"), std::string::npos) << text;
}

TEST(FlagHelpTest, AStaleTableIsVisible) {
  EXPECT_NE(HelpText({{"g", {"no_such_flag_anywhere"}}}).find("--no_such_flag_anywhere  (not defined)"),
            std::string::npos);
}

TEST(FlagHelpTest, OnlyHelpArgumentsTriggerIt) {
  char prog[] = "prog", flag[] = "--help_test_count=3", help[] = "--help";
  char* plain[] = {prog, flag};
  EXPECT_FALSE(PrintHelpIfAsked(2, plain, "usage", {}));
  char* asked[] = {prog, flag, help};
  EXPECT_TRUE(PrintHelpIfAsked(3, asked, "usage", {}));
}

}  // namespace
}  // namespace duet
