#include "common/base/file_util.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "common/base/test_util.h"
#include "gtest/gtest.h"

namespace duet {
namespace {

class FileUtilTest : public ::testing::Test {
 protected:
  // The names of the entries of dir_, sorted.
  std::vector<std::string> ListDir() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  const testing::ScratchDir scratch_{"file_util_test"};
  const std::string dir_ = scratch_.path();
};

TEST_F(FileUtilTest, WriteThenReadRoundTrip) {
  const std::string path = JoinPath(dir_, "hello.txt");
  ASSERT_TRUE(WriteFileAtomically(path, "hello, world\n").ok());
  absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "hello, world\n");
}

TEST_F(FileUtilTest, RoundTripKeepsBinaryBytesAndLargeFiles) {
  std::string contents;
  for (int i = 0; i < (1 << 20) + 3; ++i)
    contents.push_back(static_cast<char>(i * 7 % 256));
  ASSERT_NE(contents.find('\0'), std::string::npos);
  const std::string path = JoinPath(dir_, "blob.bin");
  ASSERT_TRUE(WriteFileAtomically(path, contents).ok());
  absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), contents.size());
  EXPECT_TRUE(*read == contents);
}

TEST_F(FileUtilTest, EmptyFileRoundTrip) {
  const std::string path = JoinPath(dir_, "empty");
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  EXPECT_TRUE(PathExists(path));
  absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "");
}

TEST_F(FileUtilTest, RewriteReplacesTheWholeFile) {
  const std::string path = JoinPath(dir_, "f");
  ASSERT_TRUE(WriteFileAtomically(path, "a much longer first version").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "short").ok());
  absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "short");  // no tail of the old contents
}

TEST_F(FileUtilTest, ReadMissingFileIsNotFound) {
  absl::StatusOr<std::string> read = ReadFileToString(JoinPath(dir_, "no_such_file"));
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound) << read.status();
  EXPECT_NE(read.status().message().find("no_such_file"), std::string::npos)
      << read.status();
}

TEST_F(FileUtilTest, ReadingAFolderIsAnError) {
  // The header promises PermissionDenied / Internal for failures other than NotFound; a
  // folder has no contents to return.
  absl::StatusOr<std::string> read = ReadFileToString(dir_);
  EXPECT_FALSE(read.ok()) << "read a folder as a file of " << read->size() << " bytes";
}

TEST_F(FileUtilTest, AtomicWriteLeavesNoTemporaryFileBehind) {
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir_, "a.json"), "{}").ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir_, "a.json"), "{\"x\": 1}").ok());
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir_, "b.json"), "[]").ok());
  EXPECT_EQ(ListDir(), (std::vector<std::string>{"a.json", "b.json"}));
}

TEST_F(FileUtilTest, FailedWriteLeavesNoTemporaryFileAndKeepsTheTarget) {
  // Renaming a file over a folder fails after the temporary file was written.
  const std::string target = JoinPath(dir_, "taken");
  ASSERT_TRUE(MakeDirs(target).ok());
  EXPECT_FALSE(WriteFileAtomically(target, "contents").ok());
  EXPECT_EQ(ListDir(), (std::vector<std::string>{"taken"}));
  EXPECT_TRUE(std::filesystem::is_directory(target));
}

TEST_F(FileUtilTest, WriteIntoMissingFolderFails) {
  const std::string path = JoinPath(dir_, "missing/sub/file.txt");
  absl::Status s = WriteFileAtomically(path, "x");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_FALSE(PathExists(path));
  EXPECT_TRUE(ListDir().empty());
}

TEST_F(FileUtilTest, MakeDirsCreatesParentsAndAcceptsExisting) {
  const std::string deep = JoinPath(dir_, "a/b/c");
  EXPECT_FALSE(PathExists(deep));
  ASSERT_TRUE(MakeDirs(deep).ok());
  EXPECT_TRUE(std::filesystem::is_directory(deep));
  EXPECT_TRUE(MakeDirs(deep).ok());  // already there
  EXPECT_TRUE(MakeDirs(dir_).ok());
  // The new folder is usable.
  ASSERT_TRUE(WriteFileAtomically(JoinPath(deep, "f"), "x").ok());
  EXPECT_EQ(*ReadFileToString(JoinPath(deep, "f")), "x");
}

TEST_F(FileUtilTest, MakeDirsOverAFileFails) {
  const std::string file = JoinPath(dir_, "file");
  ASSERT_TRUE(WriteFileAtomically(file, "x").ok());
  EXPECT_FALSE(MakeDirs(file).ok());
  EXPECT_FALSE(MakeDirs(JoinPath(file, "sub")).ok());
  EXPECT_EQ(*ReadFileToString(file), "x");
}

TEST_F(FileUtilTest, PathExists) {
  EXPECT_TRUE(PathExists(dir_));
  EXPECT_FALSE(PathExists(JoinPath(dir_, "nothing")));
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir_, "something"), "").ok());
  EXPECT_TRUE(PathExists(JoinPath(dir_, "something")));
}

TEST(JoinPathTest, JoinsWithOneSeparator) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("/x/y", "z.txt"), "/x/y/z.txt");
  EXPECT_EQ(JoinPath("a", "b/c"), "a/b/c");
}

TEST(JoinPathTest, AbsoluteNameOrEmptyFolderGivesTheNameAlone) {
  EXPECT_EQ(JoinPath("a", "/abs/b"), "/abs/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(JoinPath("", "/b"), "/b");
}

}  // namespace
}  // namespace duet
