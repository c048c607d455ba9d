#include "common/rpc/rpc_metrics.h"

#include <chrono>
#include <vector>

#include "common/rpc/rpc_util.h"

namespace duet {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::Interceptor;
using grpc::experimental::InterceptorBatchMethods;

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Times one call from its interceptor's creation and records it, once, with its code.
class CallRecorder {
 public:
  CallRecorder(std::string_view method, metrics::RpcMetrics* metrics,
               const RpcObserver* observer)
      : method_(method),
        metrics_(metrics),
        observer_(observer),
        start_(std::chrono::steady_clock::now()) {}
  void Record(grpc::StatusCode status) {
    const int code = static_cast<int>(status);
    const double seconds = SecondsSince(start_);
    metrics_->Record(method_, code, seconds);
    if (*observer_) (*observer_)(method_, code, seconds);
  }

 private:
  std::string method_;
  metrics::RpcMetrics* metrics_;
  const RpcObserver* observer_;
  std::chrono::steady_clock::time_point start_;
};

class ServerMetricsInterceptor : public Interceptor {
 public:
  ServerMetricsInterceptor(std::string_view method, metrics::RpcMetrics* metrics,
                           const RpcObserver* observer)
      : call_(method, metrics, observer) {}
  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      call_.Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  CallRecorder call_;
};

class ServerFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  ServerFactory(metrics::RpcMetrics* metrics, RpcObserver observer)
      : metrics_(metrics), observer_(std::move(observer)) {}
  Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    const std::string_view method = ShortDuetMethod(info->method() ? info->method() : "");
    if (method.empty()) return nullptr;
    return new ServerMetricsInterceptor(method, metrics_, &observer_);
  }

 private:
  metrics::RpcMetrics* metrics_;
  RpcObserver observer_;  // lives as long as the server (the factory is the server's)
};

class ClientMetricsInterceptor : public Interceptor {
 public:
  ClientMetricsInterceptor(std::string_view method, metrics::RpcMetrics* metrics,
                           const RpcObserver* observer)
      : call_(method, metrics, observer) {}
  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      call_.Record(methods->GetRecvStatus()->error_code());
    }
    methods->Proceed();
  }

 private:
  CallRecorder call_;
};

class ClientFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  ClientFactory(metrics::RpcMetrics* metrics, RpcObserver observer)
      : metrics_(metrics), observer_(std::move(observer)) {}
  Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo* info) override {
    const std::string_view method = ShortDuetMethod(info->method() ? info->method() : "");
    if (method.empty()) return nullptr;
    return new ClientMetricsInterceptor(method, metrics_, &observer_);
  }

 private:
  metrics::RpcMetrics* metrics_;
  RpcObserver observer_;  // lives as long as the channel (the factory is the channel's)
};

}  // namespace

std::string_view ShortDuetMethod(std::string_view full_method) {
  constexpr std::string_view kPrefix = "/duet.v1.";
  if (full_method.substr(0, kPrefix.size()) != kPrefix) return {};
  const size_t slash = full_method.rfind('/');
  if (slash == std::string_view::npos || slash + 1 >= full_method.size()) return {};
  return full_method.substr(slash + 1);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeServerMetricsInterceptor(metrics::RpcMetrics* metrics, RpcObserver observer) {
  return std::make_unique<ServerFactory>(metrics, std::move(observer));
}

std::shared_ptr<grpc::Channel> MakeMeteredChannel(
    const std::string& target, std::shared_ptr<grpc::ChannelCredentials> creds,
    const std::string& tls_server_name, metrics::RpcMetrics* metrics,
    RpcObserver observer) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  if (!tls_server_name.empty()) args.SetSslTargetNameOverride(tls_server_name);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      creators;
  creators.push_back(std::make_unique<ClientFactory>(metrics, std::move(observer)));
  return grpc::experimental::CreateCustomChannelWithInterceptors(target, creds, args,
                                                                 std::move(creators));
}

}  // namespace duet
