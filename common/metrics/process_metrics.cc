#include "common/metrics/process_metrics.h"

#include <dirent.h>
#include <glog/logging.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace duet::metrics {
namespace {

absl::StatusOr<std::string> ReadWhole(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

prometheus::MetricFamily Family(const std::string& name, const std::string& help,
                                prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(m);
  return f;
}

}  // namespace

absl::StatusOr<ProcessStats> ReadProcessStats(const std::string& proc_root,
                                              long page_bytes, long ticks_per_second) {
  if (page_bytes <= 0) page_bytes = sysconf(_SC_PAGESIZE);
  if (ticks_per_second <= 0) ticks_per_second = sysconf(_SC_CLK_TCK);
  ProcessStats out;
  // self/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so the
  // fields are counted from the last ')'. After it, field 3 (state) is index 0: utime is
  // field 14, stime 15, starttime 22, vsize 23, rss 24 (proc(5)).
  const std::string stat_path = proc_root + "/self/stat";
  auto stat = ReadWhole(stat_path);
  if (!stat.ok()) return stat.status();
  const size_t close = stat->rfind(')');
  if (close == std::string::npos)
    return absl::DataLossError(absl::StrCat(stat_path, ": no ')'"));
  std::vector<std::string> f = absl::StrSplit(
      absl::StripAsciiWhitespace(stat->substr(close + 1)), ' ', absl::SkipEmpty());
  double utime = 0, stime = 0, start_ticks = 0, vsize = 0, rss = 0;
  if (f.size() < 22 || !absl::SimpleAtod(f[14 - 3], &utime) ||
      !absl::SimpleAtod(f[15 - 3], &stime) ||
      !absl::SimpleAtod(f[22 - 3], &start_ticks) ||
      !absl::SimpleAtod(f[23 - 3], &vsize) || !absl::SimpleAtod(f[24 - 3], &rss)) {
    return absl::DataLossError(absl::StrCat(stat_path, ": not in proc(5)'s format"));
  }
  out.cpu_seconds = (utime + stime) / static_cast<double>(ticks_per_second);
  out.virtual_memory_bytes = vsize;
  out.resident_memory_bytes = rss * static_cast<double>(page_bytes);

  // stat's "btime": boot time in Unix seconds; starttime counts ticks since boot.
  auto system_stat = ReadWhole(proc_root + "/stat");
  if (!system_stat.ok()) return system_stat.status();
  bool have_btime = false;
  for (absl::string_view line : absl::StrSplit(*system_stat, '\n')) {
    double btime = 0;
    if (absl::ConsumePrefix(&line, "btime ") && absl::SimpleAtod(line, &btime)) {
      out.start_time_seconds =
          btime + start_ticks / static_cast<double>(ticks_per_second);
      have_btime = true;
    }
  }
  if (!have_btime)
    return absl::DataLossError(absl::StrCat(proc_root, "/stat: no btime line"));

  // limits: "Max open files            1024                 1048576              files".
  auto limits = ReadWhole(proc_root + "/self/limits");
  if (!limits.ok()) return limits.status();
  bool have_limit = false;
  for (absl::string_view line : absl::StrSplit(*limits, '\n')) {
    if (!absl::ConsumePrefix(&line, "Max open files")) continue;
    std::vector<absl::string_view> v = absl::StrSplit(line, ' ', absl::SkipEmpty());
    // "unlimited" stays 0: no finite limit to report.
    have_limit =
        !v.empty() && (v[0] == "unlimited" || absl::SimpleAtod(v[0], &out.max_fds));
  }
  if (!have_limit)
    return absl::DataLossError(
        absl::StrCat(proc_root, "/self/limits: no 'Max open files' line"));

  const std::string fd_dir = proc_root + "/self/fd";
  DIR* dir = opendir(fd_dir.c_str());
  if (dir == nullptr) return absl::NotFoundError(absl::StrCat("cannot list ", fd_dir));
  int entries = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++entries;
  }
  closedir(dir);
  // Listing the folder opened one more descriptor of our own, counted when the folder is
  // this process's own.
  out.open_fds = proc_root == "/proc" ? entries - 1 : entries;
  return out;
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  absl::StatusOr<ProcessStats> s = ReadProcessStats(proc_root_);
  if (!s.ok()) {
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) LOG(WARNING) << "no process_* metrics: " << s.status();
    return {};
  }
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  out.push_back(Family("process_cpu_seconds_total",
                       "Total user and system CPU time spent in seconds.",
                       MetricType::Counter, s->cpu_seconds));
  out.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                       MetricType::Gauge, s->resident_memory_bytes));
  out.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                       MetricType::Gauge, s->virtual_memory_bytes));
  out.push_back(Family("process_open_fds", "Number of open file descriptors.",
                       MetricType::Gauge, s->open_fds));
  if (s->max_fds > 0) {
    out.push_back(Family("process_max_fds", "Maximum number of open file descriptors.",
                         MetricType::Gauge, s->max_fds));
  }
  out.push_back(Family("process_start_time_seconds",
                       "Start time of the process since unix epoch in seconds.",
                       MetricType::Gauge, s->start_time_seconds));
  return out;
}

}  // namespace duet::metrics
