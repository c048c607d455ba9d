#include "tools/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"

namespace duet {

namespace {

std::string SelfDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  std::string p(buf);
  return p.substr(0, p.rfind('/'));
}

}  // namespace

std::string FindBinary(const std::string& bin_dir, const std::string& name,
                       const std::string& folder) {
  if (!bin_dir.empty()) return JoinPath(bin_dir, name);
  const std::string self = SelfDir();
  for (const std::string& c :
       {JoinPath(self, name), JoinPath(self, "../" + folder + "/" + name)}) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return JoinPath(self, name);
}

namespace {

// fork/exec of `args` with stdout and stderr on `out_fd` (-1: inherited).
absl::StatusOr<pid_t> SpawnWithOutput(const std::vector<std::string>& args, int out_fd) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_UNBLOCK, &all,
                    nullptr);  // the parent blocks them for its watcher
    // A process group of its own: a terminal's Ctrl-C reaches duet local alone, which
    // passes it on once (a second signal would abort the learner).
    setpgid(0, 0);
    if (out_fd >= 0) {
      dup2(out_fd, STDOUT_FILENO);
      dup2(out_fd, STDERR_FILENO);
    }
    execv(argv[0], argv.data());
    std::fprintf(stderr, "cannot exec %s\n", argv[0]);
    _exit(127);
  }
  return pid;
}

// Writes all of `data` to `fd`, giving up on an error (a closed terminal must not stop
// the copy to the log).
void WriteAll(int fd, const char* data, ssize_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    data += w;
    n -= w;
  }
}

}  // namespace

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args,
                            const std::string& log_path) {
  if (log_path.empty()) return SpawnWithOutput(args, -1);
  const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0)
    return absl::InternalError(
        absl::StrCat("cannot open ", log_path, ": ", strerror(errno)));
  absl::StatusOr<pid_t> pid = SpawnWithOutput(args, fd);
  close(fd);
  return pid;
}

absl::StatusOr<SpawnedTee> SpawnTee(const std::vector<std::string>& args,
                                    const std::string& log_path) {
  const int log_fd =
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0)
    return absl::InternalError(
        absl::StrCat("cannot open ", log_path, ": ", strerror(errno)));
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("pipe: ", strerror(errno)));
  }
  SpawnedTee out;
  out.copier = fork();
  if (out.copier < 0) {
    close(log_fd);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return absl::InternalError("fork failed");
  }
  if (out.copier == 0) {
    // The copier: only read, write and _exit (async-signal-safe after a fork of a
    // threaded process). Its own process group, so that a Ctrl-C does not cut the
    // program's last lines; it ends when the program's output closes.
    setpgid(0, 0);
    close(pipe_fds[1]);
    char buf[4096];
    for (;;) {
      const ssize_t n = read(pipe_fds[0], buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      WriteAll(STDERR_FILENO, buf, n);
      WriteAll(log_fd, buf, n);
    }
    _exit(0);
  }
  close(pipe_fds[0]);
  close(log_fd);
  absl::StatusOr<pid_t> program = SpawnWithOutput(args, pipe_fds[1]);
  close(pipe_fds[1]);  // the program holds the only write end now: its exit is the
                       // copier's EOF
  if (!program.ok()) {
    waitpid(out.copier, nullptr, 0);
    return program.status();
  }
  out.program = *program;
  return out;
}

}  // namespace duet
