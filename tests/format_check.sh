#!/usr/bin/env bash
# The format check: every C++ file of the tree (.h, .cc; tracked by git, or found when the
# tree is not a git checkout) is as clang-format 14 formats it with the root .clang-format
# (Google style, 90 columns). Then a self-test: a copy of one file with a planted
# violation must fail the same check, so the check cannot pass by checking nothing.
# Usage: format_check.sh SOURCE_DIR [FILE...]   (FILE...: paths from the source root, to
# check only those). Fix a tree with: clang-format-14 -i $(git ls-files '*.h' '*.cc').
set -euo pipefail
SRC="$(cd "$1" && pwd)"; shift
CF="$(command -v clang-format-14 || command -v clang-format || true)"
[[ -n "$CF" ]] || { echo "clang-format not installed (deploy/local/install-deps.sh)"; exit 1; }
"$CF" --version | grep -q "version 14\." || { echo "need clang-format 14, found: $("$CF" --version)"; exit 1; }
cd "$SRC"
if (($#)); then
  files=("$@")
elif git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.h' '*.cc')
else
  mapfile -t files < <(find . -path ./build -prune -o -path './build-*' -prune -o -path ./out -prune \
                         -o -type f \( -name '*.h' -o -name '*.cc' \) -print | sed 's#^\./##')
fi
((${#files[@]} > 0)) || { echo "no C++ files found under $SRC"; exit 1; }
if ! "$CF" --dry-run -Werror --style=file "${files[@]}" 2> /tmp/format_check.$$; then
  grep -E "error:" /tmp/format_check.$$ | head -40
  echo "format: $(grep -c 'error:' /tmp/format_check.$$) violations; fix with: $CF -i FILE"
  rm -f /tmp/format_check.$$; exit 1
fi
rm -f /tmp/format_check.$$
echo "format: ${#files[@]} files as clang-format 14 formats them"
(($#)) && exit 0
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
cp .clang-format "$TMP/" && cp "${files[0]}" "$TMP/planted.cc"
printf 'int planted_violation( int a,int b ){return a+b;}\n' >> "$TMP/planted.cc"
if (cd "$TMP" && "$CF" --dry-run -Werror --style=file planted.cc 2> /dev/null); then
  echo "FAIL: a planted violation passed the format check"; exit 1
fi
echo "ok: a planted violation fails the same check"
