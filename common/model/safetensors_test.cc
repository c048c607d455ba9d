#include "common/model/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/test_util.h"

namespace duet {
namespace {

// The bytes of a safetensors file with the given header text and data section.
std::string RawFile(const std::string& header, const std::string& data = "") {
  std::string bytes;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return bytes + header + data;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void WriteRaw(const std::string& bytes) {
    ASSERT_TRUE(WriteFileAtomically(path_, bytes).ok());
  }

  // Reads path_ and returns the status, failing the test (instead of crashing the
  // binary) if the reader throws.
  absl::Status ReadStatus() {
    try {
      return ReadSafetensors(path_).status();
    } catch (const std::exception& e) {
      const std::string what = e.what();
      ADD_FAILURE() << "ReadSafetensors threw: " << what.substr(0, what.find('\n'));
      return absl::UnknownError("threw");
    }
  }

  const testing::ScratchDir scratch_{"safetensors_test"};
  const std::string dir_ = scratch_.path();
  const std::string path_ = scratch_.Join("t.safetensors");
};

TEST_F(SafetensorsTest, F32RoundTripKeepsNamesShapesValuesAndMetadata) {
  torch::manual_seed(1);
  TensorMap tensors = {
      {"model.layers.0.weight", torch::randn({3, 4})},
      {"bias", torch::randn({5})},
      {"scalar", torch::tensor(2.5f)},
      {"empty", torch::zeros({0, 7})},
      {"cube", torch::randn({2, 3, 2})},
  };
  const MetadataMap metadata = {
      {"format", "pt"}, {"producer", "duet test"}, {"empty", ""}};
  ASSERT_TRUE(WriteSafetensors(path_, tensors, metadata).ok());

  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata, metadata);
  ASSERT_EQ(file->tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    auto it = file->tensors.find(name);
    ASSERT_NE(it, file->tensors.end());
    EXPECT_EQ(it->second.scalar_type(), torch::kFloat32);
    EXPECT_EQ(it->second.sizes(), t.sizes());
    EXPECT_TRUE(it->second.device().is_cpu());
    EXPECT_TRUE(torch::equal(it->second, t));
  }
}

TEST_F(SafetensorsTest, NoMetadataAndNoTensors) {
  ASSERT_TRUE(WriteSafetensors(path_, {}).ok());
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->tensors.empty());
  EXPECT_TRUE(file->metadata.empty());
}

TEST_F(SafetensorsTest, EveryDtypeRoundTripsExactly) {
  torch::manual_seed(2);
  TensorMap tensors = {
      {"f16", torch::randn({4, 3}).to(torch::kFloat16)},
      {"bf16", torch::randn({6}).to(torch::kBFloat16)},
      {"i64", torch::tensor({int64_t{-1}, int64_t{1} << 40, int64_t{7}})},
      {"i32", torch::tensor({-5, 0, 2147483647}, torch::kInt32)},
      {"u8", torch::tensor({0, 128, 255}, torch::kUInt8)},
  };
  ASSERT_TRUE(WriteSafetensors(path_, tensors).ok());
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    const torch::Tensor& got = file->tensors.at(name);
    EXPECT_EQ(got.scalar_type(), t.scalar_type());
    EXPECT_TRUE(torch::equal(got, t));
  }
}

TEST_F(SafetensorsTest, NonContiguousTensorsAreWrittenInLogicalOrder) {
  torch::Tensor base = torch::arange(12, torch::kFloat32).reshape({3, 4});
  TensorMap tensors = {{"transposed", base.t()}, {"strided", base.narrow(1, 1, 2)}};
  ASSERT_FALSE(tensors["transposed"].is_contiguous());
  ASSERT_TRUE(WriteSafetensors(path_, tensors).ok());
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(torch::equal(file->tensors.at("transposed"), base.t()));
  EXPECT_TRUE(torch::equal(file->tensors.at("strided"), base.narrow(1, 1, 2)));
}

TEST_F(SafetensorsTest, WrittenFileFollowsTheFormat) {
  ASSERT_TRUE(
      WriteSafetensors(path_, {{"b", torch::ones({2})}, {"a", torch::zeros({1})}}).ok());
  absl::StatusOr<std::string> bytes = ReadFileToString(path_);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_GE(bytes->size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<uint8_t>((*bytes)[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  // Header, then 3 floats: "a" (sorted first) at [0, 4), "b" at [4, 12).
  ASSERT_EQ(bytes->size(), 8 + n + 12);
  const std::string header = bytes->substr(8, n);
  EXPECT_NE(header.find("\"a\""), std::string::npos) << header;
  EXPECT_NE(header.find("\"F32\""), std::string::npos) << header;
  EXPECT_NE(header.find("[4,12]"), std::string::npos) << header;
  float values[3];
  std::memcpy(values, bytes->data() + 8 + n, sizeof(values));
  EXPECT_EQ(values[0], 0.0f);
  EXPECT_EQ(values[1], 1.0f);
  EXPECT_EQ(values[2], 1.0f);
  // No temporary file is left beside it.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_))
    ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(SafetensorsTest, ReadsHalfPrecisionWrittenByAnotherWriter) {
  // F16 1.0 = 0x3c00, -2.0 = 0xc000; BF16 1.0 = 0x3f80, -2.0 = 0xc000 (little-endian).
  const std::string data("\x00\x3c\x00\xc0\x80\x3f\x00\xc0", 8);
  WriteRaw(RawFile(R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                   R"("bf":{"dtype":"BF16","shape":[1,2],"data_offsets":[4,8]},)"
                   R"("__metadata__":{"format":"pt"}})",
                   data));
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->metadata.at("format"), "pt");
  const torch::Tensor& h = file->tensors.at("h");
  const torch::Tensor& bf = file->tensors.at("bf");
  EXPECT_EQ(h.scalar_type(), torch::kFloat16);
  EXPECT_EQ(bf.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(bf.sizes(), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(torch::equal(h.to(torch::kFloat32), torch::tensor({1.0f, -2.0f})));
  EXPECT_TRUE(torch::equal(bf.to(torch::kFloat32), torch::tensor({{1.0f, -2.0f}})));
}

TEST_F(SafetensorsTest, UnsupportedDtypeOnWriteIsInvalidArgumentAndWritesNothing) {
  absl::Status s = WriteSafetensors(path_, {{"d", torch::ones({2}, torch::kFloat64)}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("'d'"), std::string::npos) << s;
  EXPECT_FALSE(PathExists(path_));
}

TEST_F(SafetensorsTest, UndefinedTensorOnWriteIsInvalidArgument) {
  absl::Status s = WriteSafetensors(path_, {{"u", torch::Tensor()}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_FALSE(PathExists(path_));
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadSafetensors(JoinPath(dir_, "absent.safetensors")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, TruncatedFileIsDataLoss) {
  ASSERT_TRUE(WriteSafetensors(path_, {{"w", torch::randn({16, 16})}}).ok());
  const std::string full = *ReadFileToString(path_);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(static_cast<uint8_t>(full[i])) << (8 * i);
  // Cut in the data, in the header, in the length prefix, and to nothing.
  for (size_t size : {full.size() - 1, full.size() - 512, static_cast<size_t>(8 + n),
                      static_cast<size_t>(8 + n / 2), size_t{5}, size_t{0}}) {
    SCOPED_TRACE(absl::StrCat("truncated to ", size, " of ", full.size(), " bytes"));
    WriteRaw(full.substr(0, size));
    EXPECT_EQ(ReadStatus().code(), absl::StatusCode::kDataLoss);
  }
}

TEST_F(SafetensorsTest, HugeHeaderLengthIsDataLoss) {
  std::string bytes = RawFile("{}");
  for (int i = 0; i < 8; ++i) bytes[i] = '\xff';
  WriteRaw(bytes);
  EXPECT_EQ(ReadStatus().code(), absl::StatusCode::kDataLoss);
}

TEST_F(SafetensorsTest, CorruptHeadersAreDataLoss) {
  const std::string data(16, '\0');
  const struct {
    const char* what;
    std::string header;
  } cases[] = {
      {"not JSON", "{\"a\": {\"dtype\": "},
      {"garbage bytes", std::string("\x01\x02\xff\xfe", 4)},
      {"a JSON array", "[1, 2, 3]"},
      {"entry not an object", R"({"a": 5})"},
      {"no dtype", R"({"a":{"shape":[4],"data_offsets":[0,16]}})"},
      {"no shape", R"({"a":{"dtype":"F32","data_offsets":[0,16]}})"},
      {"no offsets", R"({"a":{"dtype":"F32","shape":[4]}})"},
      {"three offsets", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8,16]}})"},
      {"negative dim", R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})"},
      {"fractional dim", R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,16]}})"},
      {"negative offset", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[-16,0]}})"},
      {"string offset", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":["0",16]}})"},
      {"offsets reversed", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[16,0]}})"},
      {"end past the data", R"({"a":{"dtype":"F32","shape":[5],"data_offsets":[0,20]}})"},
      {"too few bytes for shape",
       R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})"},
      {"too many bytes for shape",
       R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}})"},
      {"overlapping ranges", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})"},
      {"metadata not an object", R"({"__metadata__":["x"]})"},
      {"metadata value not a string", R"({"__metadata__":{"step":3}})"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    WriteRaw(RawFile(c.header, data));
    absl::Status s = ReadStatus();
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_NE(s.message().find(path_), std::string::npos) << s;  // names the file
  }
}

TEST_F(SafetensorsTest, ShapeWhoseByteCountOverflowsIsDataLoss) {
  // 2^62 x 4 elements: the element count wraps to 0 in 64 bits, matching an empty
  // range. The reader must reject the shape, not try to allocate it.
  WriteRaw(RawFile(
      R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})"));
  EXPECT_EQ(ReadStatus().code(), absl::StatusCode::kDataLoss);
}

TEST_F(SafetensorsTest, UnsupportedDtypeOnReadIsInvalidArgument) {
  WriteRaw(RawFile(R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})",
                   std::string(16, '\0')));
  absl::Status s = ReadStatus();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("F64"), std::string::npos) << s;
}

TEST_F(SafetensorsTest, AdjacentAndEmptyRangesAreFine) {
  WriteRaw(RawFile(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                   R"("e":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
                   R"("b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                   "\x01\x02\x03\x04"));
  absl::StatusOr<SafetensorsFile> file = ReadSafetensors(path_);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(torch::equal(file->tensors.at("a"), torch::tensor({1, 2}, torch::kUInt8)));
  EXPECT_TRUE(torch::equal(file->tensors.at("b"), torch::tensor({3, 4}, torch::kUInt8)));
  EXPECT_EQ(file->tensors.at("e").numel(), 0);
}

}  // namespace
}  // namespace duet
