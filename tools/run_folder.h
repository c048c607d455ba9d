#ifndef DUET_TOOLS_RUN_FOLDER_H_
#define DUET_TOOLS_RUN_FOLDER_H_

// The run folder (`--out`) of a `duet local` job: who holds it, and whether it already
// holds a run. A job holds <out>/.lock for its whole life with a POSIX record lock
// (fcntl), not flock: a lock that the kernel drops when the holder dies, however it dies,
// and whose holder any process can ask for (F_GETLK) without taking it, as `duet pool`
// does. The holder's pid is also written into the file, for people.

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace duet {

// Holds <dir>/.lock while it lives. Move-only.
// Thread-safety: not thread-safe; one per process and folder (POSIX locks belong to the
// process: a second RunFolderLock of one process on the same folder is granted, and
// closing either releases both).
class RunFolderLock {
 public:
  // Locks <dir>/.lock, creating the file (not `dir`) when missing; does not change the
  // file's contents. FailedPrecondition naming the holder's pid when another process
  // holds it; NotFound when `dir` does not exist.
  static absl::StatusOr<RunFolderLock> Acquire(const std::string& dir);
  RunFolderLock(RunFolderLock&& other) noexcept;
  RunFolderLock& operator=(RunFolderLock&& other) noexcept;
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;
  ~RunFolderLock();  // releases the lock (the file stays)

  // Replaces the file's contents with this process's pid and a newline.
  absl::Status WritePid();

 private:
  explicit RunFolderLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The pid of the process that holds <dir>/.lock; 0 when none does (or there is no such
// file).
absl::StatusOr<pid_t> RunFolderHolder(const std::string& dir);

// Whether `dir` holds the results of a run (final_state.json, checkpoints/,
// metrics.jsonl, ledger.jsonl or model/); returns the first such entry found, or "" when
// none.
std::string RunFolderResult(const std::string& dir);

}  // namespace duet

#endif  // DUET_TOOLS_RUN_FOLDER_H_
