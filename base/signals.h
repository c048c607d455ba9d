#ifndef DUET_BASE_SIGNALS_H_
#define DUET_BASE_SIGNALS_H_

// Graceful shutdown on SIGTERM / SIGINT. Construct first thing in main(), before any
// other thread starts: the constructor blocks the signals in the calling thread (threads
// created later inherit the mask) and a watcher thread receives them with sigwait() and
// calls `on_signal` — in a normal thread, so it may take locks and log.
//
// Thread-safety: construct and destroy on the main thread.

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
  std::thread thread_;  // waits for SIGTERM/SIGINT (and SIGUSR1, its own stop signal)
};

}  // namespace duet

#endif  // DUET_BASE_SIGNALS_H_
