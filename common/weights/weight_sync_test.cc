#include "common/weights/weight_sync.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/weights/collective.h"
#include "common/weights/weight_mac.h"

namespace duet {
namespace {

using ::testing::HasSubstr;

// Runs fn(rank) for every rank on its own thread (c10d calls block until all ranks
// take part) and joins them.
void RunRanks(int world, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  threads.reserve(world);
  for (int r = 0; r < world; ++r) threads.emplace_back(fn, r);
  for (std::thread& t : threads) t.join();
}

bool BitEqual(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const torch::Tensor ca = a.contiguous(), cb = b.contiguous();
  // An empty tensor may have no storage: memcmp of a null pointer is undefined even for 0
  // bytes (found by the UBSan run, tests/sanitizers.sh).
  const size_t bytes = ca.numel() * ca.element_size();
  return bytes == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), bytes) == 0;
}

bool BitEqual(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!BitEqual(a[i], b[i])) return false;
  }
  return true;
}

// Odd sizes, an empty tensor and tensors larger than a 1000-byte bucket (250 floats), so
// that buckets split tensors and hold several.
const std::vector<std::vector<int64_t>>& Shapes() {
  static const auto* shapes = new std::vector<std::vector<int64_t>>{
      {3, 7}, {250}, {251}, {1}, {0}, {17, 59}, {1000}, {4097}, {2, 3, 5}};
  return *shapes;
}

std::vector<torch::Tensor> RandomParams(uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> params;
  for (const auto& shape : Shapes()) params.push_back(torch::randn(shape));
  return params;
}

std::vector<torch::Tensor> Clone(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.clone());
  return out;
}

class WeightSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = StoreServer::Start(/*port=*/0, /*timeout=*/absl::Seconds(10));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
  }

  CollectiveOptions Options(int rank, int world) const {
    CollectiveOptions options;
    options.store_port = server_->port();
    options.rank = rank;
    options.world_size = world;
    options.timeout = absl::Seconds(10);
    options.group_prefix =
        absl::StrCat(::testing::UnitTest::GetInstance()->current_test_info()->name(), "/",
                     groups_created_);
    return options;
  }

  // A Gloo group of `world` ranks. With `host_store`, rank 0 hosts its own store on a
  // kernel-picked port and hands it to the other ranks; otherwise all use server_.
  std::vector<std::unique_ptr<Collective>> MakeGroup(int world, bool host_store = false) {
    std::vector<absl::StatusOr<std::unique_ptr<Collective>>> results(world);
    std::promise<int> port_promise;
    std::shared_future<int> port = port_promise.get_future().share();
    RunRanks(world, [&](int rank) {
      CollectiveOptions options = Options(rank, world);
      if (host_store) {
        options.host_store = true;
        if (rank == 0) {
          options.store_port = 0;
          options.on_store_ready = [&](int p) { port_promise.set_value(p); };
        } else {
          options.store_port = port.get();
        }
      }
      results[rank] = CreateCollective(options);
    });
    ++groups_created_;
    std::vector<std::unique_ptr<Collective>> group;
    for (auto& result : results) {
      EXPECT_TRUE(result.ok()) << result.status();
      if (!result.ok()) return {};
      group.push_back(*std::move(result));
    }
    return group;
  }

  std::unique_ptr<StoreServer> server_;
  int groups_created_ = 0;
};

// The weights a receiver holds after a broadcast of `params` in `dtype`: the same, or
// each rounded to bfloat16 and widened back.
std::vector<torch::Tensor> Rounded(const std::vector<torch::Tensor>& params,
                                   WireDtype dtype) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) {
    out.push_back(p.detach().to(ScalarTypeOf(dtype)).to(torch::kFloat32));
  }
  return out;
}

// The tests that every topology and wire dtype must pass: the header tells the
// receivers which.
struct SyncCase {
  BroadcastTopology topology;
  WireDtype dtype;
};

class WeightSyncTopologyTest : public WeightSyncTest,
                               public ::testing::WithParamInterface<SyncCase> {
 protected:
  BroadcastTopology topology() const { return GetParam().topology; }
  WireDtype dtype() const { return GetParam().dtype; }
};

INSTANTIATE_TEST_SUITE_P(
    Topologies, WeightSyncTopologyTest,
    ::testing::Values(SyncCase{BroadcastTopology::kCollective, WireDtype::kFloat32},
                      SyncCase{BroadcastTopology::kChain, WireDtype::kFloat32},
                      SyncCase{BroadcastTopology::kCollective, WireDtype::kBFloat16},
                      SyncCase{BroadcastTopology::kChain, WireDtype::kBFloat16}),
    [](const ::testing::TestParamInfo<SyncCase>& info) {
      return absl::StrCat(
          info.param.topology == BroadcastTopology::kChain ? "Chain" : "Collective",
          info.param.dtype == WireDtype::kBFloat16 ? "BFloat16" : "Float32");
    });

// An outsider who can reach the store writes garbage under the keys a group with a
// well-known prefix will read (Gloo's rendezvous: "<prefix>/0/<rank>").
void WriteGarbage(int port, const std::string& prefix, int world) {
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(port);
  opts.isServer = false;
  opts.waitWorkers = false;
  c10d::TCPStore outsider("127.0.0.1", opts);
  for (int r = 0; r < world; ++r) {
    const std::string garbage = "not an address";
    outsider.set(absl::StrCat(prefix, "/0/", r),
                 std::vector<uint8_t>(garbage.begin(), garbage.end()));
  }
}

TEST_F(WeightSyncTest, GarbageUnderAWellKnownPrefixBreaksTheGroupButNotARandomOne) {
  // Rank 0 of a two-rank group under the well-known prefix reads rank 1's address from
  // the key the outsider spoiled, and fails (before rank 1 could overwrite it).
  WriteGarbage(server_->port(), "duet", 2);
  CollectiveOptions o = Options(/*rank=*/0, /*world=*/2);
  o.group_prefix = "duet";
  o.timeout = absl::Seconds(5);
  const absl::StatusOr<std::unique_ptr<Collective>> spoiled = CreateCollective(o);
  ASSERT_FALSE(spoiled.ok());
  EXPECT_NE(spoiled.status().code(), absl::StatusCode::kDeadlineExceeded)
      << spoiled.status();
  // The same outsider cannot spoil a group whose prefix it does not know.
  std::vector<absl::StatusOr<std::unique_ptr<Collective>>> random(2);
  const std::string prefix = NewStorePrefix();
  RunRanks(2, [&](int rank) {
    CollectiveOptions o = Options(rank, 2);
    o.group_prefix = prefix;
    random[rank] = CreateCollective(o);
  });
  ASSERT_TRUE(random[0].ok()) << random[0].status();
  ASSERT_TRUE(random[1].ok()) << random[1].status();
  torch::Tensor sent = torch::arange(8, torch::kFloat32), got = torch::zeros({8});
  std::vector<absl::Status> done(2);
  RunRanks(2, [&](int rank) {
    done[rank] = (*random[rank])->Broadcast(rank == 0 ? sent : got, 0);
  });
  EXPECT_TRUE(done[0].ok() && done[1].ok());
  EXPECT_TRUE(torch::equal(sent, got));
}

TEST(StorePrefixTest, IsRandomAndLong) {
  const std::string a = NewStorePrefix(), b = NewStorePrefix();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.size(), std::string("duet-").size() + 32);
}

TEST_P(WeightSyncTopologyTest, World4SmallBucketsBitIdentical) {
  constexpr int kWorld = 4;
  auto group = MakeGroup(kWorld, /*host_store=*/true);
  ASSERT_EQ(group.size(), kWorld);
  EXPECT_EQ(group[0]->backend(), "gloo");
  EXPECT_EQ(group[2]->rank(), 2);
  EXPECT_EQ(group[2]->world_size(), kWorld);

  const std::vector<torch::Tensor> sent = RandomParams(/*seed=*/1);
  std::vector<std::vector<torch::Tensor>> params(kWorld);
  for (int r = 1; r < kWorld; ++r) {
    for (const auto& shape : Shapes()) params[r].push_back(torch::zeros(shape));
  }
  std::vector<absl::StatusOr<int64_t>> versions(kWorld, absl::UnknownError("not run"));
  absl::Status send_status;
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      WeightBroadcaster broadcaster(group[0].get(), /*bucket_bytes=*/1000,
                                    /*key=*/std::nullopt, topology(), dtype());
      EXPECT_EQ(broadcaster.bucket_numel(), 250);
      send_status = broadcaster.Broadcast(sent, /*version=*/7);
      return;
    }
    WeightReceiver receiver(group[rank].get(), /*root=*/0);
    torch::Tensor staging;
    versions[rank] = receiver.Receive(params[rank], &staging);
    if (versions[rank].ok()) WeightReceiver::ApplyStaging(staging, params[rank]);
  });
  ASSERT_TRUE(send_status.ok()) << send_status;
  const std::vector<torch::Tensor> expected = Rounded(sent, dtype());
  for (int r = 1; r < kWorld; ++r) {
    ASSERT_TRUE(versions[r].ok()) << versions[r].status();
    EXPECT_EQ(*versions[r], 7);
    EXPECT_TRUE(BitEqual(params[r], expected)) << "rank " << r;
  }
  if (dtype() == WireDtype::kBFloat16) {  // rounding changed them, as it should
    EXPECT_FALSE(BitEqual(expected, sent));
  }
}

TEST_P(WeightSyncTopologyTest, ConsecutiveVersionsReuseStaging) {
  constexpr int kWorld = 3;
  constexpr int kVersions = 4;
  auto group = MakeGroup(kWorld);
  ASSERT_EQ(group.size(), kWorld);

  std::vector<torch::Tensor> sent = RandomParams(/*seed=*/2);
  for (auto& p : sent) p.set_requires_grad(true);  // like a learner's leaves
  std::vector<std::vector<torch::Tensor>> params(kWorld);
  for (int r = 1; r < kWorld; ++r) {
    for (const auto& shape : Shapes()) params[r].push_back(torch::zeros(shape));
  }
  std::vector<uint64_t> sent_checksums(kVersions);
  std::vector<std::vector<uint64_t>> received_checksums(kWorld,
                                                        std::vector<uint64_t>(kVersions));
  std::vector<std::vector<int64_t>> received_versions(kWorld,
                                                      std::vector<int64_t>(kVersions));
  std::vector<int> staging_reallocations(kWorld, 0);
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      WeightBroadcaster broadcaster(group[0].get(), /*bucket_bytes=*/4096,
                                    /*key=*/std::nullopt, topology(), dtype());
      for (int v = 0; v < kVersions; ++v) {
        {
          torch::NoGradGuard no_grad;
          for (auto& p : sent) p.mul_(0.5).add_(v);
        }
        sent_checksums[v] = WeightChecksum(Rounded(sent, dtype()));
        EXPECT_TRUE(broadcaster.Broadcast(sent, /*version=*/100 + v).ok());
      }
      return;
    }
    WeightReceiver receiver(group[rank].get());
    torch::Tensor staging;
    void* last_data = nullptr;
    for (int v = 0; v < kVersions; ++v) {
      absl::StatusOr<int64_t> version = receiver.Receive(params[rank], &staging);
      EXPECT_TRUE(version.ok()) << version.status();
      if (!version.ok()) return;
      received_versions[rank][v] = *version;
      if (staging.data_ptr() != last_data) ++staging_reallocations[rank];
      last_data = staging.data_ptr();
      WeightReceiver::ApplyStaging(staging, params[rank]);
      received_checksums[rank][v] = WeightChecksum(params[rank]);
    }
  });
  for (int r = 1; r < kWorld; ++r) {
    EXPECT_THAT(received_versions[r], ::testing::ElementsAre(100, 101, 102, 103));
    EXPECT_EQ(received_checksums[r], sent_checksums) << "rank " << r;
    EXPECT_EQ(staging_reallocations[r], 1) << "staging should be allocated once";
    EXPECT_TRUE(BitEqual(params[r], Rounded(sent, dtype()))) << "rank " << r;
  }
}

// What an outsider on the data plane (or a lying sender) can put on the wire through
// the raw Collective, following the wire format: a header, the buckets, a trailer.
// `tag_key`: sign the broadcast with this key (an outsider's guess); else unkeyed.
// `checksum_xor` changes the announced checksum before signing, `tamper_xor` after (a bit
// flipped on the wire).
void SendRaw(Collective& collective, const std::vector<torch::Tensor>& params,
             int64_t version, uint64_t checksum_xor,
             const std::optional<WeightMacKey>& tag_key = std::nullopt,
             uint64_t tamper_xor = 0) {
  constexpr int64_t kBucket = 300;
  const torch::Tensor flat = FlattenParameters(params);
  torch::Tensor header = torch::zeros({kWeightSyncHeaderSize}, torch::kInt64);
  int64_t* h = header.data_ptr<int64_t>();
  h[kHeaderMagic] = kWeightSyncMagic;
  h[kHeaderVersion] = version;
  h[kHeaderTotalNumel] = flat.numel();
  h[kHeaderBucketNumel] = kBucket;
  h[kHeaderNumParams] = static_cast<int64_t>(params.size());
  h[kHeaderKeyed] = tag_key ? 1 : 0;
  const WeightMacNonce nonce = NewWeightMacNonce();
  std::memcpy(h + kHeaderNonce, nonce.data(), nonce.size());
  EXPECT_TRUE(collective.Broadcast(header, /*root=*/0).ok());
  for (int64_t done = 0; done < flat.numel(); done += kBucket) {
    torch::Tensor chunk =
        flat.narrow(0, done, std::min(kBucket, flat.numel() - done)).clone();
    EXPECT_TRUE(collective.Broadcast(chunk, /*root=*/0).ok());
  }
  const uint64_t checksum = WeightChecksum(flat) ^ checksum_xor;
  torch::Tensor trailer = torch::zeros({kWeightSyncTrailerSize}, torch::kInt64);
  int64_t* t = trailer.data_ptr<int64_t>();
  t[kTrailerChecksum] = static_cast<int64_t>(checksum ^ tamper_xor);
  if (tag_key) {
    WeightMac mac(*tag_key, nonce);
    mac.Update(header.data_ptr(), kWeightSyncHeaderSize * sizeof(int64_t));
    mac.Update(flat.data_ptr(), flat.numel() * sizeof(float));
    mac.Update(&checksum, sizeof(checksum));
    const WeightMacTag tag = mac.Final();
    std::memcpy(t + kTrailerTag, tag.data(), tag.size());
  }
  t[kTrailerMagic] = kWeightSyncTrailerMagic;
  EXPECT_TRUE(collective.Broadcast(trailer, /*root=*/0).ok());
}

// The sender lies about the checksum; the receiver must refuse the data and keep its
// weights, and the next honest broadcast goes through.
TEST_F(WeightSyncTest, ChecksumMismatchIsDataLossAndParamsStayUnchanged) {
  constexpr int kWorld = 2;
  auto group = MakeGroup(kWorld);
  ASSERT_EQ(group.size(), kWorld);

  const std::vector<torch::Tensor> sent = RandomParams(/*seed=*/3);
  std::vector<torch::Tensor> params = RandomParams(/*seed=*/4);
  const std::vector<torch::Tensor> original = Clone(params);
  absl::StatusOr<int64_t> bad = absl::UnknownError("not run");
  absl::StatusOr<int64_t> good = absl::UnknownError("not run");
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      SendRaw(*group[0], sent, /*version=*/5, /*checksum_xor=*/1);
      // The sequence is still aligned: an honest broadcast goes through.
      WeightBroadcaster broadcaster(group[0].get(), /*bucket_bytes=*/1000);
      EXPECT_TRUE(broadcaster.Broadcast(sent, /*version=*/6).ok());
      return;
    }
    WeightReceiver receiver(group[1].get());
    torch::Tensor staging;
    bad = receiver.Receive(params, &staging);
    if (bad.ok()) WeightReceiver::ApplyStaging(staging, params);
    // Checked here, before the honest broadcast below overwrites them.
    EXPECT_TRUE(BitEqual(params, original)) << "params changed after a DataLoss";
    good = receiver.Receive(params, &staging);
    if (good.ok()) WeightReceiver::ApplyStaging(staging, params);
  });
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss) << bad.status();
  EXPECT_THAT(bad.status().message(), HasSubstr("checksum mismatch"));
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(*good, 6);
  EXPECT_TRUE(BitEqual(params, sent));
}

// An outsider who can reach the data plane but does not hold the run's secret injects
// weights three ways: unkeyed with a correct plain checksum, signed with a guessed key,
// and signed with the right key for another run (another store prefix). A receiver with
// the run's key refuses all three and keeps its weights; the learner's keyed broadcast
// that follows is accepted and reports the plain checksum.
TEST_F(WeightSyncTest, KeyedReceiverRefusesWeightsNotSignedWithTheRunsSecret) {
  constexpr int kWorld = 2;
  auto group = MakeGroup(kWorld);
  ASSERT_EQ(group.size(), kWorld);
  const WeightMacKey run_key = WeightMacKey::Derive("token-of-this-run", "prefix-a");
  const std::vector<torch::Tensor> injected = RandomParams(/*seed=*/11);
  const std::vector<torch::Tensor> honest = RandomParams(/*seed=*/12);
  std::vector<torch::Tensor> params = RandomParams(/*seed=*/13);
  const std::vector<torch::Tensor> original = Clone(params);
  std::vector<absl::StatusOr<int64_t>> outcomes(4, absl::UnknownError("not run"));
  uint64_t reported = 0;
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      SendRaw(*group[0], injected, /*version=*/7, /*checksum_xor=*/0);
      SendRaw(*group[0], injected, 7, 0, WeightMacKey::Derive("guessed", "prefix-a"));
      SendRaw(*group[0], injected, 7, 0,
              WeightMacKey::Derive("token-of-this-run", "prefix-b"));
      WeightBroadcaster broadcaster(group[0].get(), /*bucket_bytes=*/1000, run_key);
      EXPECT_TRUE(broadcaster.Broadcast(honest, /*version=*/8).ok());
      return;
    }
    WeightReceiver receiver(group[1].get(), /*root=*/0, run_key);
    torch::Tensor staging;
    for (int i = 0; i < 3; ++i) {
      outcomes[i] = receiver.Receive(params, &staging);
      if (outcomes[i].ok()) WeightReceiver::ApplyStaging(staging, params);
    }
    EXPECT_TRUE(BitEqual(params, original)) << "injected weights were applied";
    outcomes[3] = receiver.Receive(params, &staging);
    if (outcomes[3].ok()) WeightReceiver::ApplyStaging(staging, params);
    reported = receiver.checksum();
  });
  EXPECT_EQ(outcomes[0].status().code(), absl::StatusCode::kDataLoss)
      << outcomes[0].status();
  EXPECT_THAT(outcomes[0].status().message(), HasSubstr("without a keyed checksum"));
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(outcomes[i].status().code(), absl::StatusCode::kDataLoss)
        << outcomes[i].status();
    EXPECT_THAT(outcomes[i].status().message(), HasSubstr("failed the keyed checksum"));
  }
  ASSERT_TRUE(outcomes[3].ok()) << outcomes[3].status();
  EXPECT_EQ(*outcomes[3], 8);
  EXPECT_TRUE(BitEqual(params, honest));
  EXPECT_EQ(reported, WeightChecksum(honest));
}

// A bit flipped on the wire after the sender signed: the tag no longer verifies.
TEST_F(WeightSyncTest, KeyedReceiverRefusesATamperedChecksumWithTheRightKey) {
  constexpr int kWorld = 2;
  auto group = MakeGroup(kWorld);
  ASSERT_EQ(group.size(), kWorld);
  const WeightMacKey run_key = WeightMacKey::Derive("token", "prefix");
  const std::vector<torch::Tensor> sent = RandomParams(/*seed=*/14);
  std::vector<torch::Tensor> params = RandomParams(/*seed=*/15);
  absl::StatusOr<int64_t> outcome = absl::UnknownError("not run");
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      // Signed over the true checksum, then the announced one is changed.
      SendRaw(*group[0], sent, /*version=*/3, /*checksum_xor=*/0, run_key,
              /*tamper_xor=*/4);
      return;
    }
    WeightReceiver receiver(group[1].get(), /*root=*/0, run_key);
    torch::Tensor staging;
    outcome = receiver.Receive(params, &staging);
  });
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kDataLoss) << outcome.status();
}

// Rank 1 is in the middle of the chain: it must still pass on what it cannot use.
TEST_P(WeightSyncTopologyTest, ShapeMismatchIsInvalidArgumentAndNextBroadcastWorks) {
  constexpr int kWorld = 3;
  auto group = MakeGroup(kWorld);
  ASSERT_EQ(group.size(), kWorld);

  const std::vector<torch::Tensor> sent = RandomParams(/*seed=*/5);
  std::vector<torch::Tensor> good_params;
  for (const auto& shape : Shapes()) good_params.push_back(torch::zeros(shape));
  // One element short.
  std::vector<torch::Tensor> short_params = Clone(good_params);
  short_params.back() = torch::zeros({29});
  // Same number of elements, one tensor split in two.
  std::vector<torch::Tensor> split_params = Clone(good_params);
  split_params.back() = torch::zeros({20});
  split_params.push_back(torch::zeros({10}));
  std::vector<torch::Tensor> other_params = Clone(good_params);

  std::vector<absl::StatusOr<int64_t>> rank1(3, absl::UnknownError("not run"));
  std::vector<absl::StatusOr<int64_t>> rank2(3, absl::UnknownError("not run"));
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      WeightBroadcaster broadcaster(group[0].get(), /*bucket_bytes=*/1000,
                                    /*key=*/std::nullopt, topology(), dtype());
      for (int v = 1; v <= 3; ++v) EXPECT_TRUE(broadcaster.Broadcast(sent, v).ok());
      return;
    }
    WeightReceiver receiver(group[rank].get());
    torch::Tensor staging;
    if (rank == 1) {
      rank1[0] = receiver.Receive(short_params, &staging);
      rank1[1] = receiver.Receive(split_params, &staging);
      rank1[2] = receiver.Receive(good_params, &staging);
      if (rank1[2].ok()) WeightReceiver::ApplyStaging(staging, good_params);
    } else {
      for (int v = 0; v < 3; ++v) rank2[v] = receiver.Receive(other_params, &staging);
      if (rank2[2].ok()) WeightReceiver::ApplyStaging(staging, other_params);
    }
  });
  EXPECT_EQ(rank1[0].status().code(), absl::StatusCode::kInvalidArgument)
      << rank1[0].status();
  EXPECT_THAT(rank1[0].status().message(), HasSubstr("does not fit"));
  EXPECT_EQ(rank1[1].status().code(), absl::StatusCode::kInvalidArgument)
      << rank1[1].status();
  ASSERT_TRUE(rank1[2].ok()) << rank1[2].status();
  EXPECT_EQ(*rank1[2], 3);
  EXPECT_TRUE(BitEqual(good_params, Rounded(sent, dtype())));
  for (int v = 0; v < 3; ++v) {
    ASSERT_TRUE(rank2[v].ok()) << rank2[v].status();
    EXPECT_EQ(*rank2[v], v + 1);
  }
  EXPECT_TRUE(BitEqual(other_params, Rounded(sent, dtype())));
}

// Counts the bytes a rank puts on the wire or takes off it, then does what the wrapped
// Collective does.
class CountingCollective final : public Collective {
 public:
  explicit CountingCollective(Collective* inner) : inner_(inner) {}
  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  std::string backend() const override { return inner_->backend(); }
  absl::Status Broadcast(torch::Tensor& tensor, int root) override {
    bytes_ += tensor.numel() * tensor.element_size();
    return inner_->Broadcast(tensor, root);
  }
  absl::StatusOr<std::unique_ptr<Pending>> StartSend(const torch::Tensor& tensor,
                                                     int peer, int tag) override {
    bytes_ += tensor.numel() * tensor.element_size();
    return inner_->StartSend(tensor, peer, tag);
  }
  absl::StatusOr<std::unique_ptr<Pending>> StartRecv(const torch::Tensor& tensor,
                                                     int peer, int tag) override {
    return inner_->StartRecv(tensor, peer, tag);
  }
  int64_t bytes() const { return bytes_; }

 private:
  Collective* const inner_;
  int64_t bytes_ = 0;
};

// bfloat16 on the wire: the sender puts half the bytes on the wire (the header and the
// trailer aside), under a checksum of what it sent, which is the one the gRPC stream's
// snapshot of the same weights announces; every receiver holds those same bits.
TEST_P(WeightSyncTopologyTest, WireBytesAndChecksumFollowTheWireDtype) {
  constexpr int kWorld = 3;
  auto group = MakeGroup(kWorld);
  ASSERT_EQ(group.size(), kWorld);
  const std::vector<torch::Tensor> sent = RandomParams(/*seed=*/11);
  const WeightMacKey key = WeightMacKey::Derive("secret", "context");
  std::vector<std::vector<torch::Tensor>> params(kWorld);
  for (int r = 1; r < kWorld; ++r) {
    for (const auto& shape : Shapes()) params[r].push_back(torch::zeros(shape));
  }
  std::vector<uint64_t> checksums(kWorld, 0);
  std::vector<absl::StatusOr<int64_t>> versions(kWorld, absl::UnknownError("not run"));
  CountingCollective counted(group[0].get());
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      WeightBroadcaster broadcaster(&counted, /*bucket_bytes=*/1000, key, topology(),
                                    dtype());
      EXPECT_TRUE(broadcaster.Broadcast(sent, /*version=*/5).ok());
      return;
    }
    WeightReceiver receiver(group[rank].get(), /*root=*/0, key);
    torch::Tensor staging;
    versions[rank] = receiver.Receive(params[rank], &staging);
    if (!versions[rank].ok()) return;
    EXPECT_EQ(staging.scalar_type(), ScalarTypeOf(dtype()));
    WeightReceiver::ApplyStaging(staging, params[rank]);
    checksums[rank] = receiver.checksum();
  });
  const int64_t numel = TotalNumel(sent);
  const int64_t framing = (kWeightSyncHeaderSize + kWeightSyncTrailerSize) * 8;
  EXPECT_EQ(counted.bytes() - framing, numel * WireElementSize(dtype()));
  const SerializedWeights stream = SerializeParameters(sent, dtype());
  EXPECT_EQ(static_cast<int64_t>(stream.bytes.size()), numel * WireElementSize(dtype()));
  for (int r = 1; r < kWorld; ++r) {
    ASSERT_TRUE(versions[r].ok()) << versions[r].status();
    EXPECT_EQ(checksums[r], stream.checksum) << "rank " << r;
    EXPECT_TRUE(BitEqual(params[r], Rounded(sent, dtype()))) << "rank " << r;
  }
  if (dtype() == WireDtype::kFloat32) EXPECT_EQ(stream.checksum, WeightChecksum(sent));
}

TEST_F(WeightSyncTest, SenderWithBadParamsAbortsReceiversInStep) {
  constexpr int kWorld = 2;
  auto group = MakeGroup(kWorld);
  ASSERT_EQ(group.size(), kWorld);

  const std::vector<torch::Tensor> sent = RandomParams(/*seed=*/6);
  std::vector<torch::Tensor> bad_sent = Clone(sent);
  bad_sent[2] = bad_sent[2].to(torch::kFloat64);
  std::vector<torch::Tensor> params = Clone(sent);
  for (auto& p : params) p.zero_();
  absl::Status send_bad, send_good;
  absl::StatusOr<int64_t> recv_bad = absl::UnknownError("not run");
  absl::StatusOr<int64_t> recv_good = absl::UnknownError("not run");
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      WeightBroadcaster broadcaster(group[0].get());
      send_bad = broadcaster.Broadcast(bad_sent, /*version=*/1);
      send_good = broadcaster.Broadcast(sent, /*version=*/2);
      return;
    }
    WeightReceiver receiver(group[1].get());
    torch::Tensor staging;
    recv_bad = receiver.Receive(params, &staging);
    recv_good = receiver.Receive(params, &staging);
    if (recv_good.ok()) WeightReceiver::ApplyStaging(staging, params);
  });
  EXPECT_EQ(send_bad.code(), absl::StatusCode::kInvalidArgument) << send_bad;
  EXPECT_EQ(recv_bad.status().code(), absl::StatusCode::kAborted) << recv_bad.status();
  EXPECT_TRUE(send_good.ok()) << send_good;
  ASSERT_TRUE(recv_good.ok()) << recv_good.status();
  EXPECT_EQ(*recv_good, 2);
  EXPECT_TRUE(BitEqual(params, sent));
}

// A middle rank of the chain, by hand: takes part in the header and the trailer, and
// receives every bucket from `prev`. `forward`: passes each one on to `next`, after
// adding `alter` to bucket 1's first float; otherwise it stops after `buckets_then_die`
// buckets and drops its group (a process that dies).
void ChainMember(std::unique_ptr<Collective>& collective, int prev, int next,
                 bool forward, float alter, int buckets_then_die = 0) {
  torch::Tensor header = torch::zeros({kWeightSyncHeaderSize}, torch::kInt64);
  ASSERT_TRUE(collective->Broadcast(header, /*root=*/0).ok());
  ASSERT_EQ(header[kHeaderTopology].item<int64_t>(),
            static_cast<int64_t>(BroadcastTopology::kChain));
  const int64_t total = header[kHeaderTotalNumel].item<int64_t>();
  const int64_t bucket = header[kHeaderBucketNumel].item<int64_t>();
  for (int64_t done = 0, b = 0; done < total; done += bucket, ++b) {
    if (!forward && b == buckets_then_die) {
      collective.reset();
      return;
    }
    torch::Tensor chunk = torch::empty({std::min(bucket, total - done)});
    ASSERT_TRUE(collective->Recv(chunk, prev, static_cast<int>(b)).ok());
    if (!forward) continue;
    if (b == 1) chunk[0] += alter;
    auto send = collective->StartSend(chunk, next, static_cast<int>(b));
    ASSERT_TRUE(send.ok()) << send.status();
    ASSERT_TRUE((*send)->Wait().ok());
  }
  torch::Tensor trailer = torch::zeros({kWeightSyncTrailerSize}, torch::kInt64);
  ASSERT_TRUE(collective->Broadcast(trailer, /*root=*/0).ok());
}

// What one keyed chain broadcast with an odd member did.
struct ChainRun {
  absl::Status sent;                               // the sender's
  std::vector<absl::StatusOr<int64_t>> outcomes;   // each honest receiver's
  std::vector<torch::Tensor> weights;              // what rank 0 sent
  std::vector<std::vector<torch::Tensor>> params;  // each receiver's, afterwards
  std::vector<torch::Tensor> original;             // every receiver's, before
};

// A keyed chain broadcast of random weights (`seed`) from rank 0 over `group`, in which
// rank `odd` runs `odd_member` instead of a WeightReceiver. An honest receiver that fails
// drops its group, as a worker does (WorkerRuntime::LeaveCollective).
ChainRun RunChain(std::vector<std::unique_ptr<Collective>>& group, int odd,
                  const std::function<void(std::unique_ptr<Collective>&)>& odd_member,
                  uint64_t seed) {
  const int world = static_cast<int>(group.size());
  const WeightMacKey key = WeightMacKey::Derive("token", "prefix");
  ChainRun run;
  run.weights = RandomParams(seed);
  run.original = RandomParams(seed + 1);
  run.outcomes.assign(world, absl::UnknownError("not run"));
  run.params.resize(world);
  for (int r = 1; r < world; ++r) run.params[r] = Clone(run.original);
  RunRanks(world, [&](int rank) {
    if (rank == 0) {
      WeightBroadcaster broadcaster(group[0].get(), /*bucket_bytes=*/1000, key,
                                    BroadcastTopology::kChain);
      run.sent = broadcaster.Broadcast(run.weights, /*version=*/4);
    } else if (rank == odd) {
      odd_member(group[rank]);
    } else {
      WeightReceiver receiver(group[rank].get(), /*root=*/0, key);
      torch::Tensor staging;
      run.outcomes[rank] = receiver.Receive(run.params[rank], &staging);
      if (run.outcomes[rank].ok()) {
        WeightReceiver::ApplyStaging(staging, run.params[rank]);
      } else {
        group[rank].reset();
      }
    }
  });
  return run;
}

// A rank that changes what it forwards cannot make the ranks after it apply it: the
// keyed checksum covers the whole array, end to end.
TEST_F(WeightSyncTest, ChainForwarderThatAltersABucketIsCaughtByEveryRankAfterIt) {
  auto group = MakeGroup(4);
  ASSERT_EQ(group.size(), 4);
  const ChainRun run = RunChain(
      group, /*odd=*/1,
      [](std::unique_ptr<Collective>& c) {
        ChainMember(c, /*prev=*/0, /*next=*/2, /*forward=*/true, /*alter=*/1.0f);
      },
      /*seed=*/21);
  EXPECT_TRUE(run.sent.ok()) << run.sent;  // the sender cannot tell
  for (int r = 2; r < 4; ++r) {
    EXPECT_EQ(run.outcomes[r].status().code(), absl::StatusCode::kDataLoss)
        << "rank " << r << ": " << run.outcomes[r].status();
    EXPECT_THAT(run.outcomes[r].status().message(),
                HasSubstr("failed the keyed checksum"));
    EXPECT_TRUE(BitEqual(run.params[r], run.original)) << "rank " << r;
  }
}

// A rank that dies after two buckets: the ranks after it fail (Unavailable, as soon as
// its connections close, not at the timeout) with their weights untouched, the sender
// learns of it at the trailer, and a rank before it either got the whole array or
// fails too; nobody hangs.
TEST_F(WeightSyncTest, ChainMemberThatDiesMidChainFailsTheRanksAfterIt) {
  auto group = MakeGroup(5);
  ASSERT_EQ(group.size(), 5);
  const ChainRun run = RunChain(
      group, /*odd=*/2,
      [](std::unique_ptr<Collective>& c) {
        ChainMember(c, /*prev=*/1, /*next=*/3, /*forward=*/false, /*alter=*/0,
                    /*buckets_then_die=*/2);
      },
      /*seed=*/23);
  EXPECT_FALSE(run.sent.ok());
  for (int r = 3; r < 5; ++r) {
    EXPECT_EQ(run.outcomes[r].status().code(), absl::StatusCode::kUnavailable)
        << "rank " << r << ": " << run.outcomes[r].status();
    EXPECT_TRUE(BitEqual(run.params[r], run.original)) << "rank " << r;
  }
  if (run.outcomes[1].ok()) {
    EXPECT_TRUE(BitEqual(run.params[1], run.weights));
  } else {
    EXPECT_TRUE(BitEqual(run.params[1], run.original)) << run.outcomes[1].status();
  }
}

TEST_F(WeightSyncTest, PointToPointRefusesBadPeersAndTags) {
  auto group = MakeGroup(2);
  ASSERT_EQ(group.size(), 2);
  torch::Tensor t = torch::zeros({4});
  EXPECT_EQ(group[0]->StartSend(t, /*dst=*/0, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(group[0]->StartSend(t, /*dst=*/2, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(group[0]->StartSend(t, 1, /*tag=*/-1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(group[1]->Recv(t, /*src=*/1, 0).code(), absl::StatusCode::kInvalidArgument);
  torch::Tensor strided = torch::zeros({4, 4}).t();
  EXPECT_EQ(group[1]->Recv(strided, /*src=*/0, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseBroadcastTopology("chain").value(), BroadcastTopology::kChain);
  EXPECT_EQ(ParseBroadcastTopology("ring").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WireDtypeTest, ParsesTheTwoNamesOnly) {
  EXPECT_EQ(ParseWireDtype("float32").value(), WireDtype::kFloat32);
  EXPECT_EQ(ParseWireDtype("bfloat16").value(), WireDtype::kBFloat16);
  EXPECT_EQ(ParseWireDtype("fp16").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(WireElementSize(WireDtype::kBFloat16), 2);
  EXPECT_EQ(WireElementSize(WireDtype::kFloat32), 4);
}

TEST_F(WeightSyncTest, ReceiveWithoutSenderIsDeadlineExceeded) {
  CollectiveOptions options0 = Options(/*rank=*/0, /*world=*/2);
  CollectiveOptions options1 = Options(/*rank=*/1, /*world=*/2);
  options0.timeout = options1.timeout = absl::Milliseconds(300);
  std::vector<absl::StatusOr<std::unique_ptr<Collective>>> group(2);
  RunRanks(/*world=*/2, [&](int rank) {
    group[rank] = CreateCollective(rank == 0 ? options0 : options1);
  });
  ASSERT_TRUE(group[0].ok()) << group[0].status();
  ASSERT_TRUE(group[1].ok()) << group[1].status();
  WeightReceiver receiver(group[1]->get());
  torch::Tensor staging;
  absl::StatusOr<int64_t> version = receiver.Receive(RandomParams(/*seed=*/7), &staging);
  EXPECT_EQ(version.status().code(), absl::StatusCode::kDeadlineExceeded)
      << version.status();
}

TEST_F(WeightSyncTest, RendezvousWithMissingRankIsDeadlineExceeded) {
  CollectiveOptions options = Options(/*rank=*/0, /*world=*/2);
  options.timeout = absl::Milliseconds(300);
  auto collective = CreateCollective(options);
  EXPECT_EQ(collective.status().code(), absl::StatusCode::kDeadlineExceeded)
      << collective.status();
}

TEST_F(WeightSyncTest, NcclBroadcast) {
  if (!torch::cuda::is_available() || torch::cuda::device_count() < 2) {
    GTEST_SKIP() << "needs two CUDA devices";
  }
  constexpr int kWorld = 2;
  std::vector<absl::StatusOr<std::unique_ptr<Collective>>> group(kWorld);
  RunRanks(kWorld, [&](int rank) {
    CollectiveOptions options = Options(rank, kWorld);
    options.backend = "nccl";
    group[rank] = CreateCollective(options);
  });
  for (auto& c : group) ASSERT_TRUE(c.ok()) << c.status();
  const std::vector<torch::Tensor> sent = RandomParams(/*seed=*/8);
  std::vector<std::vector<torch::Tensor>> on_device(kWorld);
  for (int r = 0; r < kWorld; ++r) {
    for (const auto& p : sent) {
      on_device[r].push_back(r == 0
                                 ? p.to(torch::Device(torch::kCUDA, 0))
                                 : torch::zeros_like(p, torch::Device(torch::kCUDA, r)));
    }
  }
  absl::StatusOr<int64_t> version = absl::UnknownError("not run");
  RunRanks(kWorld, [&](int rank) {
    if (rank == 0) {
      WeightBroadcaster broadcaster(group[0]->get(), /*bucket_bytes=*/1000);
      EXPECT_TRUE(broadcaster.Broadcast(on_device[0], /*version=*/9).ok());
      return;
    }
    WeightReceiver receiver(group[1]->get());
    torch::Tensor staging;
    version = receiver.Receive(on_device[1], &staging);
    if (version.ok()) WeightReceiver::ApplyStaging(staging, on_device[1]);
  });
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, 9);
  std::vector<torch::Tensor> back;
  for (const auto& p : on_device[1]) back.push_back(p.cpu());
  EXPECT_TRUE(BitEqual(back, sent));
}

// ---- Checksum, flatten and unflatten: no collective involved. ----

torch::Tensor Bytes(const std::string& s) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  if (!s.empty()) std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}

std::string Reference771() {
  std::string s;
  for (int rep = 0; rep < 3; ++rep) {
    for (int b = 0; b < 256; ++b) s.push_back(static_cast<char>(b));
  }
  return s + "xyz";
}

TEST(WeightChecksumTest, MatchesXxh64ReferenceVectors) {
  // From libxxhash 0.8.1: XXH64(data, len, /*seed=*/0).
  EXPECT_EQ(WeightChecksum(Bytes("")), 0xef46db3751d8e999ULL);
  EXPECT_EQ(WeightChecksum(Bytes("abc")), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(WeightChecksum(Bytes(Reference771())), 0xe921a1b45bd779f8ULL);
}

TEST(WeightChecksumTest, PiecesHashLikeTheWhole) {
  const std::string all = Reference771();
  for (size_t cut1 : {0, 1, 5, 31, 32, 33, 100}) {
    for (size_t cut2 : {cut1, cut1 + 3, cut1 + 64, size_t{700}}) {
      const std::vector<torch::Tensor> pieces = {Bytes(all.substr(0, cut1)),
                                                 Bytes(all.substr(cut1, cut2 - cut1)),
                                                 Bytes(all.substr(cut2))};
      EXPECT_EQ(WeightChecksum(pieces), 0xe921a1b45bd779f8ULL) << cut1 << " " << cut2;
    }
  }
  const std::vector<torch::Tensor> params = RandomParams(/*seed=*/9);
  EXPECT_EQ(WeightChecksum(params), WeightChecksum(FlattenParameters(params)));
}

TEST(WeightChecksumTest, ChangesWhenOneFloatChanges) {
  torch::manual_seed(10);
  const torch::Tensor flat = torch::randn({100003});
  const uint64_t base = WeightChecksum(flat);
  EXPECT_EQ(WeightChecksum(flat.clone()), base);
  for (int64_t index : {int64_t{0}, int64_t{1}, int64_t{50000}, int64_t{100002}}) {
    torch::Tensor changed = flat.clone();
    float* data = changed.data_ptr<float>();
    data[index] = std::nextafter(data[index], 1e9f);  // one ulp
    EXPECT_NE(WeightChecksum(changed), base) << "index " << index;
    EXPECT_EQ(VerifyChecksum(changed, base).code(), absl::StatusCode::kDataLoss);
  }
  EXPECT_TRUE(VerifyChecksum(flat, base).ok());
  // A non-contiguous view hashes like its contiguous copy.
  const torch::Tensor matrix = flat.narrow(0, 0, 100000).view({100, 1000});
  EXPECT_EQ(WeightChecksum(matrix.t()), WeightChecksum(matrix.t().contiguous()));
}

TEST(FlattenTest, RoundTripAndValidation) {
  const std::vector<torch::Tensor> params = RandomParams(/*seed=*/11);
  const torch::Tensor flat = FlattenParameters(params);
  EXPECT_EQ(flat.dim(), 1);
  EXPECT_EQ(flat.numel(), TotalNumel(params));
  std::vector<torch::Tensor> target;
  for (const auto& p : params) {
    target.push_back(torch::zeros(p.sizes()).set_requires_grad(true));
  }
  ASSERT_TRUE(UnflattenInto(flat, target).ok());
  EXPECT_TRUE(BitEqual(target, params));
  EXPECT_TRUE(target[0].requires_grad());

  EXPECT_EQ(UnflattenInto(flat.narrow(0, 0, flat.numel() - 1), target).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(UnflattenInto(flat.to(torch::kFloat64), target).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FlattenParameters({}).numel(), 0);
}

}  // namespace
}  // namespace duet
