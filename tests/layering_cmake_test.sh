#!/usr/bin/env bash
# The layering checks keyed by path, each shown to pass and to fail on a planted
# violation, on a throw-away project with Duet's layer helpers (cmake/duet.cmake) and a
# table shaped like the real one: common/base < common/model < common/rpc, and learner <
# learner/service (a layer nested in another's folder).
#  1. configure time (duet_check_layering): a downward link configures; an upward link
#     (common/model -> duet::rpc) and the algorithm linking its service (learner ->
#     duet::learner_service) are refused, naming the folders;
#  2. the include scan (tests/layering_test.py) over the probe's sources: clean, then an
#     upward include, the algorithm including its service, and another folder's
#     internal/ header, each refused.
set -euo pipefail
SRC="$1"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
P="$TMP/p"
probe() {  # $1: what common/model links; $2: what learner links
  rm -rf "$P" && mkdir -p "$P/common/base" "$P/common/model" "$P/common/rpc" "$P/learner/service"
  cat > "$P/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(probe LANGUAGES CXX)
include($SRC/cmake/duet.cmake)
file(WRITE \${PROJECT_BINARY_DIR}/layers.txt "")
duet_layer(common/base)
duet_layer(common/model MAY_USE common/base)
duet_layer(common/rpc MAY_USE common/base common/model)
duet_layer(learner MAY_USE common/base common/model)
duet_layer(learner/service LIBRARY learner_service MAY_USE common/base common/model common/rpc learner)
add_subdirectory(common/base)
add_subdirectory(common/model)
add_subdirectory(common/rpc)
add_subdirectory(learner)
add_subdirectory(learner/service)
CMAKE
  echo 'int base() { return 0; }' > "$P/common/base/b.cc"
  printf '#include "common/base/b.h"\nint model() { return 0; }\n' > "$P/common/model/m.cc"
  printf '#include "common/model/m.h"\nint rpc() { return 0; }\n' > "$P/common/rpc/r.cc"
  printf '#include "common/model/m.h"\nint learner() { return 0; }\n' > "$P/learner/l.cc"
  printf '#include "learner/l.h"\n#include "common/rpc/r.h"\nint service() { return 0; }\n' \
    > "$P/learner/service/s.cc"
  echo 'duet_cc_library(NAME base SRCS b.cc)' > "$P/common/base/CMakeLists.txt"
  echo "duet_cc_library(NAME model SRCS m.cc DEPS $1)" > "$P/common/model/CMakeLists.txt"
  echo 'duet_cc_library(NAME rpc SRCS r.cc DEPS duet::model)' > "$P/common/rpc/CMakeLists.txt"
  echo "duet_cc_library(NAME learner SRCS l.cc DEPS $2)" > "$P/learner/CMakeLists.txt"
  echo 'duet_cc_library(NAME learner_service SRCS s.cc DEPS duet::learner duet::rpc)' \
    > "$P/learner/service/CMakeLists.txt"
  cmake -S "$P" -B "$P/build" > "$TMP/out.log" 2>&1
}
fail() { cat "$TMP/out.log"; echo "FAIL: $*"; exit 1; }
says() { tr -s ' \n' '  ' < "$TMP/out.log" | grep -cF "$1" > /dev/null; }  # CMake wraps; -c reads all

# 1. Links.
probe duet::base duet::model || fail "downward links were refused"
probe duet::rpc duet::model && fail "common/model linking duet::rpc (upward) configured"
says "layering: duet::model in common/model/ links duet::rpc (common/rpc/), but common/model/ may use only: common/base" ||
  fail "the refusal does not name the link and the folders"
probe duet::base duet::learner_service && fail "learner linking its service configured"
says "layering: duet::learner in learner/ links duet::learner_service (learner/service/)" ||
  fail "the refusal of learner -> learner/service does not name it"
echo "ok: downward links configure; common/model -> rpc and learner -> learner/service are refused"

# 2. Includes, over the probe's sources and layers.txt.
probe duet::base duet::model || fail "downward links were refused"
scan() { python3 "$SRC/tests/layering_test.py" "$P" "$P/build/layers.txt" > "$TMP/out.log" 2>&1; }
scan || fail "the clean probe tree has layering violations"
plant() {  # $1: file, $2: include line, $3: the violation's expected text
  cp "$P/$1" "$TMP/saved"
  printf '%s\n' "$2" >> "$P/$1"
  scan && fail "planted '$2' in $1 passed the include scan"
  says "$3" || fail "planted '$2' in $1: no '$3' in the report"
  cp "$TMP/saved" "$P/$1"
}
plant common/model/m.cc '#include "common/rpc/r.h"' \
  "common/model/m.cc: includes common/rpc/r.h (common/rpc/), but common/model/ may use only common/base"
plant learner/l.cc '#include "learner/service/s.h"' \
  "learner/l.cc: includes learner/service/s.h (learner/service/), but learner/ may use only"
plant learner/service/s.cc '#include "common/model/internal/patch.h"' \
  "learner/service/s.cc: includes common/model/internal/patch.h, another folder's internal header"
scan || fail "the restored probe tree has layering violations"
echo "ok: the include scan passes the probe and refuses an upward include, learner -> learner/service and another folder's internal/"
