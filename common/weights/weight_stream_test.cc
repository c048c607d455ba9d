#include "common/weights/weight_stream.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/weights/weight_sync.h"

namespace duet {
namespace {

class WeightStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(3);
    params_ = {torch::randn({700, 50}),
               torch::randn({11})};  // 35 011 floats, 140 044 bytes
    SerializedWeights w = SerializeParameters(params_);
    checksum_ = w.checksum;
    snapshot_.Set(/*version=*/4, std::move(w));
  }

  std::vector<v1::WeightChunk> Stream(int64_t chunk_bytes) {
    std::vector<v1::WeightChunk> chunks;
    const absl::Status s = StreamWeightSnapshot(
        snapshot_, chunk_bytes, [] { return false; },
        [&](const v1::WeightChunk& c) {
          chunks.push_back(c);
          return true;
        });
    EXPECT_TRUE(s.ok()) << s;
    return chunks;
  }

  // Adds every chunk to a fresh assembler and finishes it.
  static absl::StatusOr<torch::Tensor> Assemble(
      const std::vector<v1::WeightChunk>& chunks, int64_t* version, uint64_t* checksum) {
    WeightStreamAssembler assembler;
    for (const auto& c : chunks) {
      if (absl::Status s = assembler.Add(c); !s.ok()) return s;
    }
    return assembler.Finish(version, checksum);
  }

  std::vector<torch::Tensor> params_;
  uint64_t checksum_ = 0;
  WeightSnapshot snapshot_;
};

TEST_F(WeightStreamTest, ChunksReassembleToTheParametersAndVerify) {
  const std::vector<v1::WeightChunk> chunks = Stream(kMinWeightChunkBytes);
  ASSERT_EQ(chunks.size(), 3u);  // 64 KiB, 64 KiB, the rest
  int64_t version = 0;
  uint64_t checksum = 0;
  auto flat = Assemble(chunks, &version, &checksum);
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_EQ(version, 4);
  EXPECT_EQ(checksum, checksum_);
  EXPECT_TRUE(torch::equal(*flat, FlattenParameters(params_)));
}

// A bfloat16 snapshot: half the bytes, the rounded weights, and a stream that changes
// its dtype midway or names an unknown one is DataLoss.
TEST_F(WeightStreamTest, BFloat16StreamsHalfTheBytesOfTheRoundedWeights) {
  SerializedWeights w = SerializeParameters(params_, WireDtype::kBFloat16);
  const uint64_t checksum = w.checksum;
  EXPECT_NE(checksum, checksum_);
  snapshot_.Set(/*version=*/5, std::move(w));
  EXPECT_EQ(snapshot_.checksum(), checksum);
  const std::vector<v1::WeightChunk> chunks = Stream(kMinWeightChunkBytes);
  ASSERT_EQ(chunks.size(), 2u);  // 70 022 bytes: 64 KiB and the rest
  EXPECT_EQ(chunks[0].total_bytes(), 35011 * 2);
  EXPECT_EQ(chunks[0].dtype(), v1::WEIGHT_DTYPE_BFLOAT16);
  int64_t version = 0;
  uint64_t got = 0;
  auto flat = Assemble(chunks, &version, &got);
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_EQ(version, 5);
  EXPECT_EQ(got, checksum);
  std::vector<torch::Tensor> into = {torch::zeros({700, 50}), torch::zeros({11})};
  ASSERT_TRUE(UnflattenInto(*flat, into).ok());
  for (size_t i = 0; i < into.size(); ++i) {
    EXPECT_TRUE(
        torch::equal(into[i], params_[i].to(torch::kBFloat16).to(torch::kFloat32)));
  }
  {
    WeightStreamAssembler a;
    v1::WeightChunk second = chunks[1];
    second.set_dtype(v1::WEIGHT_DTYPE_FLOAT32);
    ASSERT_TRUE(a.Add(chunks[0]).ok());
    EXPECT_EQ(a.Add(second).code(), absl::StatusCode::kDataLoss);
  }
  {
    WeightStreamAssembler a;
    v1::WeightChunk first = chunks[0];
    first.set_dtype(static_cast<v1::WeightDtype>(7));
    EXPECT_EQ(a.Add(first).code(), absl::StatusCode::kDataLoss);
  }
}

TEST_F(WeightStreamTest, OutOfOrderMixedOrCorruptStreamsAreDataLoss) {
  std::vector<v1::WeightChunk> chunks = Stream(kMinWeightChunkBytes);
  ASSERT_GE(chunks.size(), 3u);
  {
    WeightStreamAssembler a;
    ASSERT_TRUE(a.Add(chunks[0]).ok());
    EXPECT_EQ(a.Add(chunks[2]).code(), absl::StatusCode::kDataLoss);
  }
  {
    WeightStreamAssembler a;
    ASSERT_TRUE(a.Add(chunks[0]).ok());
    v1::WeightChunk other = chunks[1];
    other.set_version(5);
    EXPECT_EQ(a.Add(other).code(), absl::StatusCode::kDataLoss);
  }
  {
    WeightStreamAssembler a;
    for (size_t i = 0; i + 1 < chunks.size(); ++i) ASSERT_TRUE(a.Add(chunks[i]).ok());
    int64_t v = 0;
    uint64_t c = 0;
    EXPECT_EQ(a.Finish(&v, &c).status().code(),
              absl::StatusCode::kDataLoss);  // truncated
  }
  {
    WeightStreamAssembler a;
    chunks[1].mutable_data()->at(0) ^= 1;  // one flipped bit
    for (const auto& chunk : chunks) ASSERT_TRUE(a.Add(chunk).ok());
    int64_t v = 0;
    uint64_t c = 0;
    EXPECT_EQ(a.Finish(&v, &c).status().code(), absl::StatusCode::kDataLoss);
  }
  {
    WeightStreamAssembler a;
    v1::WeightChunk big = chunks[0];
    big.set_total_bytes(8);
    EXPECT_EQ(a.Add(big).code(), absl::StatusCode::kDataLoss);  // more than announced
  }
}

TEST_F(WeightStreamTest, SenderRefusesBadChunkSizesAndStopsWhenCancelled) {
  auto write = [](const v1::WeightChunk&) { return true; };
  auto never = [] { return false; };
  EXPECT_EQ(StreamWeightSnapshot(snapshot_, -1, never, write).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StreamWeightSnapshot(snapshot_, 1, never, write).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      StreamWeightSnapshot(snapshot_, kMinWeightChunkBytes - 1, never, write).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      StreamWeightSnapshot(snapshot_, kMaxWeightChunkBytes + 1, never, write).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StreamWeightSnapshot(
                snapshot_, 0, [] { return true; }, write)
                .code(),
            absl::StatusCode::kCancelled);
  EXPECT_EQ(StreamWeightSnapshot(snapshot_, 0, never,
                                 [](const v1::WeightChunk&) { return false; })
                .code(),
            absl::StatusCode::kCancelled);
  WeightSnapshot empty;
  EXPECT_EQ(StreamWeightSnapshot(empty, 0, never, write).code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace duet
