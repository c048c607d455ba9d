#include "tools/process.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "base/file_util.h"

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

std::string FindBinary(const std::string& bin_dir, const std::string& name, const std::string& folder) {
  if (!bin_dir.empty()) return JoinPath(bin_dir, name);
  const std::string self = SelfDir();
  for (const std::string& c : {JoinPath(self, name), JoinPath(self, "../" + folder + "/" + name)}) {
    if (access(c.c_str(), X_OK) == 0) return c;
  }
  return JoinPath(self, name);
}

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_UNBLOCK, &all, nullptr);  // the parent blocks them for its watcher
    // A process group of its own: a terminal's Ctrl-C reaches duet local alone, which
    // passes it on once (a second signal would abort the learner).
    setpgid(0, 0);
    if (!log_path.empty()) {
      const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
      }
    }
    execv(argv[0], argv.data());
    std::fprintf(stderr, "cannot exec %s\n", argv[0]);
    _exit(127);
  }
  return pid;
}

}  // namespace duet
