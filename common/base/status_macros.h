#ifndef DUET_COMMON_BASE_STATUS_MACROS_H_
#define DUET_COMMON_BASE_STATUS_MACROS_H_

// Abseil 20220623 (the Debian bookworm version) has no ABSL_RETURN_IF_ERROR; these are
// Duet's one definition of the two error-propagation macros.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define DUET_STATUS_CONCAT_INNER_(a, b) a##b
#define DUET_STATUS_CONCAT_(a, b) DUET_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define DUET_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status duet_status_ = (expr);        \
    if (!duet_status_.ok()) return duet_status_; \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, otherwise
// moves the value into `lhs` (which may be a declaration, e.g. `auto x`).
#define DUET_ASSIGN_OR_RETURN(lhs, rexpr) \
  DUET_ASSIGN_OR_RETURN_IMPL_(DUET_STATUS_CONCAT_(duet_statusor_, __LINE__), lhs, rexpr)

#define DUET_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)  \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // DUET_COMMON_BASE_STATUS_MACROS_H_
