#ifndef DUET_COMMON_BASE_STRINGS_H_
#define DUET_COMMON_BASE_STRINGS_H_

// Debian's Abseil 20220623 is built with ABSL_OPTION_USE_STD_STRING_VIEW 0, so
// absl::string_view is its own type and absl::StrCat / StrSplit do not take a
// std::string_view. Duet's APIs use std::string_view; these adapt at the boundary.

#include <string_view>

#include "absl/strings/string_view.h"

namespace duet {

inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace duet

#endif  // DUET_COMMON_BASE_STRINGS_H_
