#!/usr/bin/env bash
# The lock annotations are checked by a compiler (CONVENTIONS.md, "Concurrency"): GCC,
# which builds Duet, ignores ABSL_GUARDED_BY and ABSL_EXCLUSIVE_LOCKS_REQUIRED, so this
# runs clang 14's thread-safety analysis (-Wthread-safety -Werror) over every translation
# unit of the project that declares or takes a lock: the .cc files that mention
# absl::Mutex or a lock annotation, or include a project header that does. It compiles
# with the flags of the real build (compile_commands.json) minus GCC's precompiled header,
# syntax only (the analysis runs in clang's front end; nothing is generated).
# Usage: thread_safety_check.sh BUILD_DIR SOURCE_DIR [FILE...]: FILE... (paths from the
# source root) checks only those, e.g. a file with a planted violation (docs/operations.md).
# Afterwards (whole-tree mode), a self-test: a program that reads a guarded member without
# its lock must fail the same flags, so the check cannot pass by analysing nothing.
set -euo pipefail
BIN="$1"; SRC="$2"; shift 2
ONLY=$#
command -v clang++ >/dev/null || { echo "clang++ not installed (deploy/local/install-deps.sh)"; exit 1; }
python3 - "$BIN/compile_commands.json" "$SRC" "$@" <<'PY'
import concurrent.futures, json, os, re, shlex, subprocess, sys
db, src, only = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3:]
LOCKY = re.compile(r"absl::Mutex|ABSL_GUARDED_BY|ABSL_EXCLUSIVE_LOCKS_REQUIRED|ABSL_LOCKS_EXCLUDED|ABSL_PT_GUARDED_BY")
INCLUDE = re.compile(r'#include "([^"]+)"')

def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""

locky_headers = set()
for root, _, files in os.walk(src):
    if "/build" in root[len(src):] or "/." in root[len(src):]:
        continue
    for name in files:
        if name.endswith(".h") and LOCKY.search(read(os.path.join(root, name))):
            locky_headers.add(os.path.relpath(os.path.join(root, name), src))

units = []
for entry in json.load(open(db)):
    path = os.path.realpath(os.path.join(entry["directory"], entry["file"]))
    if not path.startswith(src + "/") or "/build/" in path[len(src):] or not path.endswith(".cc"):
        continue
    text = read(path)
    if only and os.path.relpath(path, src) not in only and path not in only:
        continue
    if not only and not (LOCKY.search(text) or any(h in locky_headers for h in INCLUDE.findall(text))):
        continue
    args = shlex.split(entry["command"]) if "command" in entry else entry["arguments"]
    out, skip = ["clang++"], False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-include"):
            skip = True
            continue
        if a in ("-c", "-Winvalid-pch") or a == entry["file"] or a.startswith("-O"):
            continue
        out.append(a)
    out += ["-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety", "-Wno-unknown-warning-option", path]
    units.append((os.path.relpath(path, src), entry["directory"], out))

def check(unit):
    name, cwd, cmd = unit
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return name, p.returncode, p.stderr

failed = 0
with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    for name, rc, err in pool.map(check, units):
        if rc != 0:
            failed += 1
            print(f"FAIL {name}\n{err}")
print(f"thread-safety analysis: {len(units) - failed} of {len(units)} translation units clean")
sys.exit(1 if failed or not units else 0)
PY
((ONLY)) && exit 0
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/planted.cc" <<'CC'
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
class Counter {
 public:
  int Read() { return value_; }  // planted: no lock held
 private:
  absl::Mutex mu_;
  int value_ ABSL_GUARDED_BY(mu_) = 0;
};
int main() { return Counter().Read(); }
CC
if clang++ -std=c++17 -fsyntax-only -Wthread-safety -Werror=thread-safety "$TMP/planted.cc" 2> "$TMP/err"; then
  echo "FAIL: a read of a guarded member without its lock passed the analysis"; exit 1
fi
grep -q "requires holding mutex 'mu_'" "$TMP/err" || { cat "$TMP/err"; echo "FAIL: unexpected report"; exit 1; }
echo "ok: a planted unguarded read fails the analysis"
