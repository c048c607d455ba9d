#ifndef DUET_COMMON_RPC_RPC_METRICS_H_
#define DUET_COMMON_RPC_RPC_METRICS_H_

// gRPC interceptors that record duet_rpc_{server,client}_handled_total{method,code} and
// _handling_seconds{method} (docs/metrics.md) for every duet.v1 call, without touching
// the handlers: the server side from the arrival of a call to the status it sends, the
// client side from the call to the status it receives. Calls of other services (the
// grpc.health.v1 checks) are not counted.
//
// Thread-safety: the factories and the RpcMetrics they record into are shared by every
// call; RpcMetrics::Record is thread-safe.

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_interceptor.h>
#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/metrics/catalogue.h"

namespace duet {

// Called after each finished duet.v1 call: short method name ("PullWork"), gRPC status
// code, seconds.
using RpcObserver =
    std::function<void(std::string_view method, int code, double seconds)>;

// The short name of a full gRPC method ("/duet.v1.Coordinator/PullWork" -> "PullWork"),
// or "" for a method outside duet.v1.
std::string_view ShortDuetMethod(std::string_view full_method);

// For ServerBuilder::experimental().SetInterceptorCreators. `metrics` outlives the
// server; `observer`, when set, is told of every finished duet.v1 call too.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeServerMetricsInterceptor(metrics::RpcMetrics* metrics,
                             RpcObserver observer = nullptr);

// MakeChannel (rpc_util.h) whose calls are recorded in `metrics` (outlives the channel)
// and, when set, reported to `observer`.
std::shared_ptr<grpc::Channel> MakeMeteredChannel(
    const std::string& target, std::shared_ptr<grpc::ChannelCredentials> creds,
    const std::string& tls_server_name, metrics::RpcMetrics* metrics,
    RpcObserver observer = nullptr);

}  // namespace duet

#endif  // DUET_COMMON_RPC_RPC_METRICS_H_
