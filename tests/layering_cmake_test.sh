#!/usr/bin/env bash
# The configure-time half of the layering check (cmake/duet.cmake): a library that links
# a layer its duet_layer() line does not allow must fail to configure, and one that links
# an allowed layer must configure. Run on a throw-away project that includes Duet's helpers.
set -euo pipefail
SRC="$1"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
probe() {  # $1: the dependency the probe library `model` links
  rm -rf "$TMP/p" && mkdir -p "$TMP/p/model" "$TMP/p/base" "$TMP/p/rpc"
  cat > "$TMP/p/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(probe LANGUAGES CXX)
include($SRC/cmake/duet.cmake)
file(WRITE \${PROJECT_BINARY_DIR}/layers.txt "")
duet_layer(base)
duet_layer(model MAY_USE base)
duet_layer(rpc MAY_USE base model)
add_subdirectory(base)
add_subdirectory(rpc)
add_subdirectory(model)
CMAKE
  echo 'int base() { return 0; }' > "$TMP/p/base/b.cc"
  echo 'int rpc() { return 0; }' > "$TMP/p/rpc/r.cc"
  echo 'int model() { return 0; }' > "$TMP/p/model/m.cc"
  echo 'duet_cc_library(NAME base SRCS b.cc)' > "$TMP/p/base/CMakeLists.txt"
  echo 'duet_cc_library(NAME rpc SRCS r.cc)' > "$TMP/p/rpc/CMakeLists.txt"
  echo "duet_cc_library(NAME model SRCS m.cc DEPS $1)" > "$TMP/p/model/CMakeLists.txt"
  cmake -S "$TMP/p" -B "$TMP/p/build" > "$TMP/out.log" 2>&1
}
if ! probe duet::base; then
  cat "$TMP/out.log"; echo "FAIL: a downward link was refused"; exit 1
fi
if probe duet::rpc; then
  cat "$TMP/out.log"; echo "FAIL: model linking rpc (upward) configured"; exit 1
fi
grep -q "layering: duet::model in model/ links duet::rpc" "$TMP/out.log" || {
  cat "$TMP/out.log"; echo "FAIL: the refusal does not name the link"; exit 1; }
echo "ok: downward link configures, upward link is refused"
