#include "tools/run_folder.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/test_util.h"

namespace duet {
namespace {

// A child process that holds the lock of `dir` until the parent closes `release`.
class LockingChild {
 public:
  explicit LockingChild(const std::string& dir) {
    int locked[2], release[2];
    EXPECT_EQ(pipe(locked), 0);
    EXPECT_EQ(pipe(release), 0);
    pid_ = fork();
    if (pid_ == 0) {
      close(locked[0]);
      close(release[1]);
      absl::StatusOr<RunFolderLock> lock = RunFolderLock::Acquire(dir);
      if (!lock.ok() || !lock->WritePid().ok()) _exit(1);
      (void)!write(locked[1], "x", 1);
      char byte;
      (void)!read(release[0], &byte, 1);  // returns when the parent closes its end
      _exit(0);
    }
    close(locked[1]);
    close(release[0]);
    release_fd_ = release[1];
    char byte;
    EXPECT_EQ(read(locked[0], &byte, 1), 1) << "the child did not get the lock";
    close(locked[0]);
  }
  // Lets the child go and returns its exit status.
  int Release() {
    close(release_fd_);
    int status = 0;
    waitpid(pid_, &status, 0);
    return status;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int release_fd_ = -1;
};

TEST(RunFolderLockTest, ASecondProcessIsRefusedNamingTheHolderUntilItEnds) {
  testing::ScratchDir dir("run_folder");
  EXPECT_EQ(*RunFolderHolder(dir.path()), 0);  // no .lock yet
  LockingChild child(dir.path());
  EXPECT_EQ(*RunFolderHolder(dir.path()), child.pid());
  absl::StatusOr<RunFolderLock> refused = RunFolderLock::Acquire(dir.path());
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  EXPECT_NE(refused.status().message().find(absl::StrCat("pid ", child.pid())),
            std::string::npos)
      << refused.status();
  // Being refused changed nothing: the file still names the holder.
  EXPECT_EQ(*ReadFileToString(dir.Join(".lock")), absl::StrCat(child.pid(), "\n"));
  const int status = child.Release();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  // The holder is gone: the lock went with it, the file stays.
  EXPECT_EQ(*RunFolderHolder(dir.path()), 0);
  absl::StatusOr<RunFolderLock> mine = RunFolderLock::Acquire(dir.path());
  ASSERT_TRUE(mine.ok()) << mine.status();
  ASSERT_TRUE(mine->WritePid().ok());
  EXPECT_EQ(*ReadFileToString(dir.Join(".lock")), absl::StrCat(getpid(), "\n"));
}

TEST(RunFolderLockTest, AMissingFolderIsNotFound) {
  testing::ScratchDir dir("run_folder");
  EXPECT_EQ(RunFolderLock::Acquire(dir.Join("absent")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(RunFolderResultTest, NamesWhatARunLeaves) {
  testing::ScratchDir dir("run_folder");
  EXPECT_EQ(RunFolderResult(dir.path()), "");
  ASSERT_TRUE(MakeDirs(dir.Join("logs")).ok());  // logs and reports alone are not a run
  ASSERT_TRUE(MakeDirs(dir.Join("report")).ok());
  EXPECT_EQ(RunFolderResult(dir.path()), "");
  ASSERT_TRUE(WriteFileAtomically(dir.Join("ledger.jsonl"), "").ok());
  EXPECT_EQ(RunFolderResult(dir.path()), "ledger.jsonl");
  ASSERT_TRUE(MakeDirs(dir.Join("checkpoints")).ok());
  EXPECT_EQ(RunFolderResult(dir.path()), "checkpoints");
}

}  // namespace
}  // namespace duet
