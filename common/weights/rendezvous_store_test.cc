#include "common/weights/rendezvous_store.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/weights/collective.h"

namespace duet {
namespace {

TEST(RendezvousStoreTest, KeysLiveUnderOpenPrefixesOnly) {
  RendezvousStore store;
  EXPECT_EQ(store.Set("epoch1/0/0", "addr").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(store.Add("epoch1/n", 1).status().code(),
            absl::StatusCode::kPermissionDenied);
  store.OpenPrefix("epoch1");
  EXPECT_EQ(store.Set("epoch10/x", "v").code(),
            absl::StatusCode::kPermissionDenied);  // not "epoch1/"
  ASSERT_TRUE(store.Set("epoch1/0/0", "addr0").ok());
  ASSERT_TRUE(store.Set("epoch1/0/2", "addr2").ok());
  EXPECT_EQ(*store.Get("epoch1/0/0"), "addr0");
  EXPECT_EQ(store.Get("epoch1/0/1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*store.Add("epoch1/n", 2), 2);
  EXPECT_EQ(*store.Add("epoch1/n", 3), 5);
  EXPECT_EQ(store.Add("epoch1/0/0", 1).status().code(),
            absl::StatusCode::kInvalidArgument);  // not a number
  EXPECT_TRUE(*store.Check({"epoch1/0/0", "epoch1/0/2"}));
  EXPECT_FALSE(*store.Check({"epoch1/0/0", "epoch1/0/1"}));
  EXPECT_EQ(store.KeysUnder("epoch1"),
            (std::vector<std::string>{"epoch1/0/0", "epoch1/0/2", "epoch1/n"}));
  EXPECT_TRUE(*store.Delete("epoch1/n"));
  EXPECT_FALSE(*store.Delete("epoch1/n"));
  EXPECT_EQ(*store.NumKeys(), 2);
  store.ClosePrefix("epoch1");
  EXPECT_EQ(*store.NumKeys(), 0);
  EXPECT_EQ(store.Set("epoch1/0/0", "again").code(), absl::StatusCode::kPermissionDenied);
}

TEST(RendezvousStoreTest, WhatACallerCanMakeItHoldIsBounded) {
  RendezvousStore store;
  store.OpenPrefix("p");
  EXPECT_EQ(store.Set("", "v").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Set("p/" + std::string(RendezvousStore::kMaxKeyBytes, 'k'), "v").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      store.Set("p/big", std::string(RendezvousStore::kMaxValueBytes + 1, 'v')).code(),
      absl::StatusCode::kInvalidArgument);
  // 64 MiB in all: 1,024 values of 64 KiB fill it; the next is refused and nothing
  // changed.
  const std::string value(RendezvousStore::kMaxValueBytes, 'v');
  absl::Status s;
  int held = 0;
  for (; held < 2000 && s.ok(); ++held) s = store.Set("p/" + std::to_string(held), value);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(*store.NumKeys(), held - 1);
  // Overwriting a held key with a value of the same size still fits.
  EXPECT_TRUE(store.Set("p/0", value).ok());
  store.ClosePrefix("p");
  EXPECT_TRUE(store.Set("q/0", value).code() == absl::StatusCode::kPermissionDenied);
  store.OpenPrefix("q");
  EXPECT_TRUE(store.Set("q/0", value).ok());  // closing freed the bytes
}

// Three ranks of a Gloo group meet through the store (no TCPStore, no port) and
// broadcast; each rank's key is named by its rank (what the learner reads after a failed
// epoch to tell who never joined).
TEST(RendezvousStoreTest, AGlooGroupMeetsThroughItAndEachRankLeavesAKeyNamedByItsRank) {
  auto store = std::make_shared<RendezvousStore>();
  store->OpenPrefix("epoch-a");
  std::vector<absl::Status> results(3);
  std::vector<torch::Tensor> received(3);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.emplace_back([&, r] {
      CollectiveOptions c;
      c.rendezvous = store;
      c.rank = r;
      c.world_size = 3;
      c.group_prefix = "epoch-a";
      c.timeout = absl::Seconds(20);
      absl::StatusOr<std::unique_ptr<Collective>> group = CreateCollective(c);
      if (!group.ok()) {
        results[r] = group.status();
        return;
      }
      received[r] = r == 0 ? torch::arange(5, torch::kFloat32) : torch::zeros({5});
      results[r] = (*group)->Broadcast(received[r], /*root=*/0);
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(results[r].ok()) << r << ": " << results[r];
    EXPECT_TRUE(torch::equal(received[r], torch::arange(5, torch::kFloat32))) << r;
  }
  std::vector<int> named;
  for (const std::string& key : store->KeysUnder("epoch-a")) {
    const std::string last = key.substr(key.rfind('/') + 1);
    if (!last.empty() && last.find_first_not_of("0123456789") == std::string::npos)
      named.push_back(std::stoi(last));
  }
  std::sort(named.begin(), named.end());
  EXPECT_EQ(named, (std::vector<int>{0, 1, 2}))
      << "keys: " << store->KeysUnder("epoch-a").size();
}

// A rank that waits for a member that never comes gives up as soon as `abandon` says so,
// not at the timeout; the member's key is the one missing.
TEST(RendezvousStoreTest, AbandonEndsAWaitingRendezvousAtOnce) {
  auto store = std::make_shared<RendezvousStore>();
  store->OpenPrefix("epoch-b");
  std::atomic<bool> member_lost{false};
  CollectiveOptions c;
  c.rendezvous = store;
  c.rank = 0;
  c.world_size = 2;
  c.group_prefix = "epoch-b";
  c.timeout = absl::Seconds(600);
  c.abandon = [&] { return member_lost.load(); };
  absl::Status result;
  std::thread waiter([&] { result = CreateCollective(c).status(); });
  while (store->KeysUnder("epoch-b").empty()) std::this_thread::yield();  // rank 0 is in
  member_lost = true;
  waiter.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kUnavailable) << result;
  EXPECT_NE(result.message().find("abandoned"), absl::string_view::npos) << result;
}

}  // namespace
}  // namespace duet
