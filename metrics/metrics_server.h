#ifndef DUET_METRICS_METRICS_SERVER_H_
#define DUET_METRICS_METRICS_SERVER_H_

// Serves a process's one prometheus::Registry as GET /metrics (text format) with
// prometheus-cpp's Exposer (civetweb), plus refresh hooks: functions run at each scrape,
// before the registry is read, for gauges computed from live state (workers in contact,
// time-integrated counters) that must move even while the training thread is blocked.
//
// Thread-safety: thread-safe. Hooks run on the exposer's threads.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace prometheus {
class Exposer;
}

namespace duet::metrics {

class MetricsServer {
 public:
  // Serves `registry` on `address` ("HOST:PORT"; port 0: any free port). Unavailable when
  // the address cannot be bound, InvalidArgument when it is malformed or empty.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                              std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();

  // The bound port.
  int port() const { return port_; }
  // Runs `hook` at the start of every scrape from now on.
  void AddRefreshHook(std::function<void()> hook);

 private:
  class Hooks;
  MetricsServer() = default;

  std::shared_ptr<Hooks> hooks_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

// The current Unix time in seconds (what Gauge::SetToCurrentTime sets).
double UnixNow();

}  // namespace duet::metrics

#endif  // DUET_METRICS_METRICS_SERVER_H_
