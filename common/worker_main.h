#ifndef DUET_COMMON_WORKER_MAIN_H_
#define DUET_COMMON_WORKER_MAIN_H_

// The shared main() of duet-rollout and duet-scorer: flags, the model folder, the channel
// to the learner (token, TLS), the health server, SIGTERM handling, then
// WorkerRuntime::Run. Each binary's main.cc is one call to WorkerMain.

#include <cstdint>
#include <functional>

#include "common/token_layout.h"
#include "common/worker_runtime.h"

namespace duet {

// Builds the role's handler once the model folder's layout is known; `max_batch` is the
// --capacity flag.
using HandlerFactory = std::function<WorkHandler(const TokenLayout& layout, int64_t max_batch)>;

int WorkerMain(int argc, char** argv, v1::Role role, const char* usage, HandlerFactory make_handler);

}  // namespace duet

#endif  // DUET_COMMON_WORKER_MAIN_H_
