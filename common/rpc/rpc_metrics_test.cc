// The metrics interceptors over a real in-process gRPC server on 127.0.0.1:0.
#include "common/rpc/rpc_metrics.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <memory>
#include <string>

#include "common/rpc/health_server.h"
#include "duet/v1/coordinator.grpc.pb.h"

namespace duet {
namespace {

class FlakyStatus final : public v1::Worker::Service {
 public:
  grpc::Status GetWorkerStatus(grpc::ServerContext*, const v1::GetWorkerStatusRequest*,
                               v1::WorkerStatus* resp) override {
    if (refuse.load()) return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "no");
    resp->set_worker_id("w");
    return grpc::Status::OK;
  }
  std::atomic<bool> refuse{false};
};

class RpcMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_metrics_ = std::make_unique<metrics::RpcMetrics>(
        registry_, metrics::RpcMetrics::Side::kServer,
        std::vector<std::string>{"GetWorkerStatus"});
    client_metrics_ = std::make_unique<metrics::RpcMetrics>(
        registry_, metrics::RpcMetrics::Side::kClient,
        std::vector<std::string>{"GetWorkerStatus"});
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        creators;
    creators.push_back(MakeServerMetricsInterceptor(server_metrics_.get()));
    builder.experimental().SetInterceptorCreators(std::move(creators));
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = MakeMeteredChannel(
        "127.0.0.1:" + std::to_string(port_), grpc::InsecureChannelCredentials(), "",
        client_metrics_.get(), [this](std::string_view m, int code, double) {
          observed_ += std::string(m) + ":" + std::to_string(code) + " ";
        });
  }
  void TearDown() override { server_->Shutdown(); }

  grpc::Status Call() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetWorkerStatusRequest req;
    v1::WorkerStatus resp;
    return v1::Worker::NewStub(channel_)->GetWorkerStatus(&ctx, req, &resp);
  }
  std::string Text() {
    return prometheus::TextSerializer().Serialize(registry_.Collect());
  }

  prometheus::Registry registry_;
  std::unique_ptr<metrics::RpcMetrics> server_metrics_, client_metrics_;
  FlakyStatus service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::string observed_;
};

TEST(ShortDuetMethodTest, KeepsOnlyDuetMethods) {
  EXPECT_EQ(ShortDuetMethod("/duet.v1.Coordinator/PullWork"), "PullWork");
  EXPECT_EQ(ShortDuetMethod("/grpc.health.v1.Health/Check"), "");
  EXPECT_EQ(ShortDuetMethod("/duet.v1.Coordinator/"), "");
}

TEST_F(RpcMetricsTest, CountsBothSidesByCodeAndSkipsHealthChecks) {
  ASSERT_TRUE(Call().ok());
  ASSERT_TRUE(Call().ok());
  service_.refuse = true;
  EXPECT_EQ(Call().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  const std::string text = Text();
  for (
      const char* s :
      {R"(duet_rpc_server_handled_total{code="OK",method="GetWorkerStatus"} 2)",
       R"(duet_rpc_server_handled_total{code="PERMISSION_DENIED",method="GetWorkerStatus"} 1)",
       R"(duet_rpc_client_handled_total{code="OK",method="GetWorkerStatus"} 2)",
       R"(duet_rpc_client_handled_total{code="PERMISSION_DENIED",method="GetWorkerStatus"} 1)",
       R"(duet_rpc_server_handling_seconds_count{method="GetWorkerStatus"} 3)",
       R"(duet_rpc_client_handling_seconds_count{method="GetWorkerStatus"} 3)"}) {
    EXPECT_NE(text.find(s), std::string::npos) << s << "\n" << text;
  }
  EXPECT_EQ(observed_, "GetWorkerStatus:0 GetWorkerStatus:0 GetWorkerStatus:7 ");
}

// The learner's --health_address: grpc.health.v1 alone, answered SERVING over plaintext.
TEST(HealthOnlyServerTest, AnswersServing) {
  int port = 0;
  auto server = StartHealthOnlyServer("127.0.0.1:0", &port);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  grpc::Slice empty("", 0);
  grpc::ByteBuffer request(&empty, 1);  // HealthCheckRequest{service: ""}
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  ASSERT_TRUE(cq.Next(&tag, &ok));
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // HealthCheckResponse{status: SERVING}
  (*server)->Shutdown();
  cq.Shutdown();
}

}  // namespace
}  // namespace duet
