#ifndef DUET_COMMON_METRICS_PROCESS_METRICS_H_
#define DUET_COMMON_METRICS_PROCESS_METRICS_H_

// The process's own resource use, as every Prometheus client library exports it
// (process_resident_memory_bytes, process_virtual_memory_bytes,
// process_cpu_seconds_total, process_open_fds, process_max_fds,
// process_start_time_seconds), read from Linux's /proc at each scrape. MetricsServer
// serves them beside the registry, so every process that serves /metrics has them without
// registering anything.
//
// Thread-safety: ReadProcessStats and ProcessCollector::Collect are thread-safe (they
// only read files).

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace duet::metrics {

struct ProcessStats {
  double resident_memory_bytes = 0;
  double virtual_memory_bytes = 0;
  double cpu_seconds = 0;  // user + system
  double open_fds = 0;
  double max_fds = 0;             // the soft limit of open files
  double start_time_seconds = 0;  // Unix seconds
};

// Reads this process's stats under `proc_root` (normally "/proc"): self/stat, stat
// (btime), self/limits ("Max open files") and the entries of self/fd. `page_bytes` and
// `ticks_per_second` convert stat's units (sysconf's when 0). DataLoss when a file is
// there but not in the kernel's format, NotFound when one is missing (not Linux).
absl::StatusOr<ProcessStats> ReadProcessStats(const std::string& proc_root = "/proc",
                                              long page_bytes = 0,
                                              long ticks_per_second = 0);

// The families above, read at each Collect(). A read that fails yields no family (and a
// warning, once), so that a scrape never fails for it.
class ProcessCollector : public prometheus::Collectable {
 public:
  explicit ProcessCollector(std::string proc_root = "/proc")
      : proc_root_(std::move(proc_root)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::string proc_root_;
};

}  // namespace duet::metrics

#endif  // DUET_COMMON_METRICS_PROCESS_METRICS_H_
