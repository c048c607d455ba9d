#include "common/weights/collective.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace duet {
namespace {

using ::testing::HasSubstr;

TEST(CollectiveTest, UnreachableStoreIsUnavailable) {
  int closed_port = 0;
  {
    auto server = StoreServer::Start(/*port=*/0, /*timeout=*/absl::Seconds(5));
    ASSERT_TRUE(server.ok()) << server.status();
    closed_port = (*server)->port();
  }
  CollectiveOptions options;
  options.store_port = closed_port;
  options.rank = 1;
  options.world_size = 2;
  options.timeout = absl::Milliseconds(300);
  auto collective = CreateCollective(options);
  EXPECT_EQ(collective.status().code(), absl::StatusCode::kUnavailable)
      << collective.status();
}

TEST(CollectiveTest, InvalidOptions) {
  CollectiveOptions options;
  options.backend = "mpi";
  EXPECT_EQ(CreateCollective(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.backend = "gloo";
  options.rank = 2;
  options.world_size = 2;
  options.store_port = 1234;  // never dialed: validation fails first
  EXPECT_EQ(CreateCollective(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.rank = 1;
  options.store_port = 0;  // only the hosting rank may ask for a kernel-picked port
  EXPECT_EQ(CreateCollective(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.store_port = 70000;
  EXPECT_EQ(CreateCollective(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CollectiveTest, SingleRankHostsItsOwnStore) {
  CollectiveOptions options;
  options.host_store = true;
  int reported_port = -1;
  options.on_store_ready = [&](int port) { reported_port = port; };
  auto collective = CreateCollective(options);
  ASSERT_TRUE(collective.ok()) << collective.status();
  EXPECT_GT(reported_port, 0);
  torch::Tensor t = torch::ones({3});
  EXPECT_TRUE((*collective)->Broadcast(t, /*root=*/0).ok());
  EXPECT_EQ((*collective)->Broadcast(t, /*root=*/1).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CollectiveTest, NcclWithoutCudaIsFailedPrecondition) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "CUDA present: see NcclBroadcast";
  CollectiveOptions options;
  options.backend = "nccl";
  options.store_port = 1234;  // never dialed
  auto collective = CreateCollective(options);
  EXPECT_EQ(collective.status().code(), absl::StatusCode::kFailedPrecondition)
      << collective.status();
  EXPECT_THAT(collective.status().message(), HasSubstr("no CUDA/NCCL"));
}

}  // namespace
}  // namespace duet
