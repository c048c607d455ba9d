// Helpers for tests only: this header includes gtest, so include it from *_test.cc files
// and never from library code.

#ifndef DUET_COMMON_BASE_TEST_UTIL_H_
#define DUET_COMMON_BASE_TEST_UTIL_H_

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace duet::testing {

// A fresh, empty scratch folder for one test, removed again when this object is
// destroyed:
// <::testing::TempDir()>/duet_<prefix>_<current test name>_<pid>. Outside a running test
// (for example in SetUpTestSuite) the test name part is left out. Hold one as a fixture
// member, a local variable, or (for a folder shared by a whole suite) a static that
// SetUpTestSuite creates and TearDownTestSuite destroys.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix) : path_(MakePath(prefix)) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // The folder itself.
  const std::string& path() const { return path_; }

  // path()/`name`; nothing is created.
  std::string Join(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  static std::string MakePath(const std::string& prefix) {
    std::string name = "duet_" + prefix + "_";
    const ::testing::TestInfo* info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    if (info != nullptr) {
      // Parameterized tests are named like "Case/0": keep the folder one level deep.
      std::string test = info->name();
      std::replace(test.begin(), test.end(), '/', '_');
      name += test + "_";
    }
    name += std::to_string(::getpid());
    return (std::filesystem::path(::testing::TempDir()) / name).string();
  }

  const std::string path_;
};

}  // namespace duet::testing

#endif  // DUET_COMMON_BASE_TEST_UTIL_H_
