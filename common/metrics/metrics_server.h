#ifndef DUET_COMMON_METRICS_METRICS_SERVER_H_
#define DUET_COMMON_METRICS_METRICS_SERVER_H_

// Serves a process's one prometheus::Registry as GET /metrics (text format 0.0.4) with a
// minimal HTTP/1.1 server of its own, plus refresh hooks: functions run at each scrape,
// before the registry is read, for gauges computed from live state (workers in contact,
// time-integrated counters) that must move even while the training thread is blocked.
// Beside the registry it serves the process's resource use, process_* as every Prometheus
// client exports it (common/metrics/process_metrics.h).
//
// Why not prometheus::Exposer: its civetweb starts threads with a small fixed stack
// (Debian builds civetweb with USE_STACK_SIZE), smaller than the static TLS of a process
// that links LibTorch and OpenBLAS, so pthread_create fails there with EINVAL and the
// exposer cannot start. This server runs one std::thread with the default stack.
//
// One thread polls every connection (a slow client holds up no other) and answers one
// request per connection, then closes it (`Connection: close`):
// GET (or HEAD) /metrics is 200, any other path 404, any other method 405, a request
// head over 8 KiB 431, a malformed one 400. A client that sends no complete head within
// 5 s of connecting is dropped (5 s of the injected clock, read after the poll that saw
// the connection, so that the idle time before a scrape never counts against it). Nothing
// served changes any state but the refresh hooks' gauges.
//
// Thread-safety: thread-safe. Hooks run on the server's thread, one scrape at a time.

#include <prometheus/registry.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"

namespace duet::metrics {

class MetricsServer {
 public:
  // Serves `registry` on `address` ("HOST:PORT", HOST a name or numeric address, IPv6 in
  // brackets; port 0: any free port). Unavailable when the address cannot be bound,
  // InvalidArgument when it is malformed or empty. `clock` times the clients' deadlines.
  // REQUIRES: `clock` is not null and outlives the server.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address, std::shared_ptr<prometheus::Registry> registry,
      Clock* clock = RealClock());
  // Stops serving (open connections are closed) and joins the thread.
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound port.
  int port() const { return port_; }
  // Writes the bound port (decimal, then a newline) to `path` atomically: a temporary
  // file in the same folder renamed over `path`, so that a reader sees no file or the
  // whole port. A started server is listening, so the file never names a port before it
  // answers (what deploy/slurm/ writes Prometheus targets from: --metrics_port_file). The
  // file system's error (NotFound for a missing folder, PermissionDenied, ...) when it
  // cannot.
  absl::Status WritePortFile(const std::string& path) const;
  // Runs `hook` at the start of every scrape from now on.
  // REQUIRES: `hook` does not call AddRefreshHook.
  void AddRefreshHook(std::function<void()> hook);

  // The body of GET /metrics: runs the hooks, then serializes the registry.
  std::string Render();

 private:
  MetricsServer() = default;
  // The accept loop: polls the listening socket, the wake pipe and every open connection
  // (at most 32, each dropped 5 s after it was accepted) until stop_.
  void Serve();
  // The whole response to a request head (complete, or cut off at 8 KiB).
  std::string Answer(const std::string& head);

  std::shared_ptr<prometheus::Registry> registry_;
  Clock* clock_ = nullptr;  // not owned
  int listen_fd_ = -1;
  // The destructor writes a byte to wake_write_fd_; Serve() polls wake_read_fd_ with the
  // listening socket and each connection, so that shutdown never waits on a client.
  int wake_read_fd_ = -1;
  int wake_write_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{
      false};  // set by the destructor; Serve() returns when it sees it

  absl::Mutex
      hooks_mu_;  // guards hooks_; also serialises the hooks of concurrent Render()s
  std::vector<std::function<void()>> hooks_ ABSL_GUARDED_BY(hooks_mu_);

  // Accepts and answers scrapes; started by Start(), stopped and joined by the
  // destructor.
  std::thread thread_;
};

// The current Unix time in seconds (what Gauge::SetToCurrentTime sets).
double UnixNow();

}  // namespace duet::metrics

#endif  // DUET_COMMON_METRICS_METRICS_SERVER_H_
