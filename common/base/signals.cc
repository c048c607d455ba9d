#include "common/base/signals.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace duet {
namespace {

// The write end of the watcher's pipe, for the handler (async-signal-safe: write(2)
// only).
std::atomic<int> g_signal_pipe{-1};

void OnSignal(int signo) {
  const int saved_errno = errno;
  const int fd = g_signal_pipe.load();
  if (fd >= 0) {
    const unsigned char byte = static_cast<unsigned char>(signo);
    (void)!write(fd, &byte, 1);
  }
  errno = saved_errno;
}

constexpr unsigned char kStopByte = 0;  // no signal has number 0

}  // namespace

SignalWatcher::SignalWatcher(std::function<void(int)> on_signal)
    : on_signal_(std::move(on_signal)) {
  // Threads started from here on inherit the mask and never take the signals ...
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // ... but threads that libraries started before main() (OpenBLAS's pool) did not
  // inherit it: a handler catches the signal on whichever thread it lands and hands it to
  // the watcher thread through a pipe.
  int fds[2] = {-1, -1};
  if (pipe2(fds, O_CLOEXEC) == 0) {
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    fcntl(write_fd_, F_SETFL, O_NONBLOCK);
    g_signal_pipe.store(write_fd_);
    struct sigaction action = {};
    action.sa_handler = OnSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, &old_term_);
    sigaction(SIGINT, &action, &old_int_);
  }
  thread_ = std::thread([this, set] {
    // The one thread that surely takes the signals: every thread started after the mask
    // above blocks them, and a process whose threads all block them never sees them.
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    while (read_fd_ >= 0) {
      unsigned char byte = kStopByte;
      const ssize_t n = read(read_fd_, &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n != 1 || byte == kStopByte) return;
      on_signal_(byte);
    }
  });
}

SignalWatcher::~SignalWatcher() {
  if (write_fd_ >= 0) {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
    g_signal_pipe.store(-1);
    const unsigned char stop = kStopByte;
    (void)!write(write_fd_, &stop, 1);
  }
  thread_.join();
  if (write_fd_ >= 0) close(write_fd_);
  if (read_fd_ >= 0) close(read_fd_);
}

}  // namespace duet
