#ifndef DUET_COMMON_BASE_FILE_UTIL_H_
#define DUET_COMMON_BASE_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace duet {

// Reads a whole file. NotFound when it does not exist, FailedPrecondition for a folder,
// PermissionDenied / Internal for other failures.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` so that readers see either the old file or the whole new
// one: writes `path`.tmp.<pid>, fsyncs it, renames it over `path`, fsyncs the folder.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

// Creates `path` and its parents; OK if it exists.
absl::Status MakeDirs(const std::string& path);

// True if `path` exists.
bool PathExists(const std::string& path);

// `dir`/`name`, or `name` alone when it is absolute.
std::string JoinPath(const std::string& dir, const std::string& name);

}  // namespace duet

#endif  // DUET_COMMON_BASE_FILE_UTIL_H_
