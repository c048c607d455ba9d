#include "tools/run_folder.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"

namespace duet {
namespace {

std::string LockPath(const std::string& dir) { return JoinPath(dir, ".lock"); }

// The whole file, for F_SETLK / F_GETLK.
struct flock WholeFile(short type) {
  struct flock l = {};
  l.l_type = type;
  l.l_whence = SEEK_SET;
  l.l_start = 0;
  l.l_len = 0;
  return l;
}

absl::Status Errno(const std::string& what) {
  const int e = errno;
  const std::string text = absl::StrCat(what, ": ", std::strerror(e));
  return e == ENOENT ? absl::NotFoundError(text) : absl::UnavailableError(text);
}

}  // namespace

absl::StatusOr<RunFolderLock> RunFolderLock::Acquire(const std::string& dir) {
  const std::string path = LockPath(dir);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Errno(path);
  RunFolderLock lock(fd);
  struct flock l = WholeFile(F_WRLCK);
  if (fcntl(fd, F_SETLK, &l) == 0) return lock;
  if (errno != EACCES && errno != EAGAIN) return Errno(absl::StrCat("locking ", path));
  struct flock holder = WholeFile(F_WRLCK);
  const pid_t pid =
      fcntl(fd, F_GETLK, &holder) == 0 && holder.l_type != F_UNLCK ? holder.l_pid : 0;
  return absl::FailedPreconditionError(
      absl::StrCat(dir, " is in use by another duet local (pid ",
                   pid > 0 ? absl::StrCat(pid) : "unknown", ", holding ", path,
                   "); wait for it, or stop it, or choose another --out"));
}

RunFolderLock::RunFolderLock(RunFolderLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)) {}

RunFolderLock& RunFolderLock::operator=(RunFolderLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

RunFolderLock::~RunFolderLock() {
  if (fd_ >= 0) close(fd_);
}

absl::Status RunFolderLock::WritePid() {
  const std::string text = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd_, 0) != 0 ||
      pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    return Errno("writing the run folder's .lock");
  }
  return absl::OkStatus();
}

absl::StatusOr<pid_t> RunFolderHolder(const std::string& dir) {
  const std::string path = LockPath(dir);
  // Read-only is enough for F_GETLK; asking takes no lock.
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    return Errno(path);
  }
  struct flock l = WholeFile(F_WRLCK);
  const int rc = fcntl(fd, F_GETLK, &l);
  close(fd);
  if (rc != 0) return Errno(absl::StrCat("asking who holds ", path));
  return l.l_type == F_UNLCK ? 0 : l.l_pid;
}

std::string RunFolderResult(const std::string& dir) {
  for (const char* entry :
       {"final_state.json", "checkpoints", "metrics.jsonl", "ledger.jsonl", "model"}) {
    if (access(JoinPath(dir, entry).c_str(), F_OK) == 0) return entry;
  }
  return "";
}

}  // namespace duet
