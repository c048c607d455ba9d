#include "common/metrics/process_metrics.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace duet::metrics {
namespace {

namespace fs = std::filesystem;

// A /proc of our making: self/stat, stat, self/limits and `fds` entries in self/fd.
class FakeProc {
 public:
  FakeProc() {
    std::string tmpl = (fs::temp_directory_path() / "fake-proc-XXXXXX").string();
    root_ = mkdtemp(tmpl.data());
    fs::create_directories(root_ + "/self/fd");
  }
  ~FakeProc() { fs::remove_all(root_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(root_ + "/" + name) << text;
  }
  void Fds(int n) {
    for (int i = 0; i < n; ++i) Write(absl::StrCat("self/fd/", i), "");
  }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

// proc(5) fields 3..24 after "pid (comm)": utime (14) 250 ticks, stime (15) 50, starttime
// (22) 1000, vsize (23) 123456789, rss (24) 300 pages.
constexpr char kStatFields[] =
    "S 1 1 1 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 9 0 1000 123456789 300 "
    "18446744073709551615";

void WriteHealthyProc(FakeProc& p, const std::string& comm) {
  p.Write("self/stat", absl::StrCat("4242 (", comm, ") ", kStatFields, "\n"));
  p.Write("stat", "cpu  1 2 3\nbtime 1700000000\nprocesses 7\n");
  p.Write(
      "self/limits",
      "Limit                     Soft Limit           Hard Limit           Units     \n"
      "Max cpu time              unlimited            unlimited            seconds   \n"
      "Max open files            1024                 1048576              files     \n");
  p.Fds(5);
}

TEST(ReadProcessStatsTest, ReadsTheKernelsFormatWhateverTheCommandName) {
  // A command name may hold spaces and parentheses: fields count from the last ')'.
  for (const std::string comm : {"duet-learner", "a) b (c", ") )"}) {
    FakeProc p;
    WriteHealthyProc(p, comm);
    auto s = ReadProcessStats(p.root(), /*page_bytes=*/4096, /*ticks_per_second=*/100);
    ASSERT_TRUE(s.ok()) << comm << ": " << s.status();
    EXPECT_DOUBLE_EQ(s->cpu_seconds, 3.0) << comm;
    EXPECT_DOUBLE_EQ(s->resident_memory_bytes, 300.0 * 4096) << comm;
    EXPECT_DOUBLE_EQ(s->virtual_memory_bytes, 123456789.0) << comm;
    EXPECT_DOUBLE_EQ(s->start_time_seconds, 1700000000.0 + 10.0) << comm;
    EXPECT_DOUBLE_EQ(s->max_fds, 1024.0) << comm;
    EXPECT_DOUBLE_EQ(s->open_fds, 5.0) << comm;
  }
}

TEST(ReadProcessStatsTest, AMissingFileIsNotFoundAndAMalformedOneDataLoss) {
  {
    FakeProc p;
    WriteHealthyProc(p, "x");
    fs::remove(p.root() + "/self/limits");
    EXPECT_EQ(ReadProcessStats(p.root()).status().code(), absl::StatusCode::kNotFound);
  }
  {
    FakeProc p;
    WriteHealthyProc(p, "x");
    p.Write("self/stat", "4242 (x) S 1 2 3\n");  // cut short
    EXPECT_EQ(ReadProcessStats(p.root()).status().code(), absl::StatusCode::kDataLoss);
  }
  {
    FakeProc p;
    WriteHealthyProc(p, "x");
    p.Write("stat", "cpu  1 2 3\n");  // no btime
    EXPECT_EQ(ReadProcessStats(p.root()).status().code(), absl::StatusCode::kDataLoss);
  }
  {
    FakeProc p;
    WriteHealthyProc(p, "x");
    p.Write("self/limits",
            "Max open files            lots            lots            files\n");
    EXPECT_EQ(ReadProcessStats(p.root()).status().code(), absl::StatusCode::kDataLoss);
  }
}

}  // namespace
}  // namespace duet::metrics
