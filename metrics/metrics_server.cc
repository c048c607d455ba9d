#include "metrics/metrics_server.h"

#include <chrono>
#include <exception>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>

#include "absl/strings/str_cat.h"
#include "metrics/catalogue.h"

#ifndef DUET_VERSION
#define DUET_VERSION "unknown"
#endif
#ifndef DUET_REVISION
#define DUET_REVISION "unknown"
#endif

namespace duet::metrics {

// A collectable with no metrics of its own: registered before the registry, so that the
// exposer runs the hooks and then reads the registry they updated.
class MetricsServer::Hooks : public prometheus::Collectable {
 public:
  void Add(std::function<void()> hook) {
    absl::MutexLock lock(&mu_);
    hooks_.push_back(std::move(hook));
  }
  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::MutexLock lock(&mu_);
    for (const auto& h : hooks_) h();
    return {};
  }

 private:
  mutable absl::Mutex mu_;  // guards hooks_; also serialises concurrent scrapes' hooks
  std::vector<std::function<void()>> hooks_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& address,
                                                                     std::shared_ptr<prometheus::Registry> registry) {
  if (address.empty() || address.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address '", address, "': want HOST:PORT"));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->hooks_ = std::make_shared<Hooks>();
  server->registry_ = std::move(registry);
  try {
    server->exposer_ = std::make_unique<prometheus::Exposer>(address, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve /metrics on ", address, ": ", e.what()));
  }
  server->exposer_->RegisterCollectable(server->hooks_);
  server->exposer_->RegisterCollectable(server->registry_);
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty() || ports[0] == 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve /metrics on ", address));
  }
  server->port_ = ports[0];
  return server;
}

MetricsServer::~MetricsServer() {
  // Stop serving before the hooks' captured state goes away.
  exposer_.reset();
}

void MetricsServer::AddRefreshHook(std::function<void()> hook) { hooks_->Add(std::move(hook)); }

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void RegisterProcessMetrics(Registry& registry, const std::string& role) {
  prometheus::BuildGauge()
      .Name("duet_build_info")
      .Help("Always 1; says what runs.")
      .Register(registry)
      .Add({{"role", role}, {"version", DUET_VERSION}, {"revision", DUET_REVISION}})
      .Set(1);
  prometheus::BuildGauge()
      .Name("duet_process_start_time_seconds")
      .Help("When the process started (Unix seconds).")
      .Register(registry)
      .Add({{"role", role}})
      .SetToCurrentTime();
}

}  // namespace duet::metrics
