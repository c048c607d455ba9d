#ifndef DUET_COMMON_BASE_SIGNALS_H_
#define DUET_COMMON_BASE_SIGNALS_H_

// Graceful shutdown on SIGTERM / SIGINT. Construct first thing in main(). The constructor
// blocks the signals in the calling thread (threads created later inherit the mask) and
// installs a handler, so that a signal landing on a thread that a library started before
// main() (OpenBLAS starts its pool when it is loaded) is caught too instead of killing
// the process. The handler only writes the signal number to a pipe; a watcher thread
// reads it and calls `on_signal` — in a normal thread, so it may take locks and log.
//
// Thread-safety: construct and destroy on the main thread; at most one at a time.

#include <signal.h>

#include <functional>
#include <thread>

namespace duet {

class SignalWatcher {
 public:
  explicit SignalWatcher(std::function<void(int signo)> on_signal);
  ~SignalWatcher();  // stops and joins the watcher thread
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  std::function<void(int)> on_signal_;
  int read_fd_ = -1;   // the watcher reads signal numbers here
  int write_fd_ = -1;  // the handler writes them here
  struct sigaction old_term_ = {};
  struct sigaction old_int_ = {};
  std::thread thread_;  // reads the pipe and calls on_signal_ (a 0 byte stops it)
};

}  // namespace duet

#endif  // DUET_COMMON_BASE_SIGNALS_H_
