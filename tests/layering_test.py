#!/usr/bin/env python3
"""Fails when an #include crosses the layering that CMakeLists.txt states.

usage: layering_test.py SOURCE_DIR LAYERS_TXT

LAYERS_TXT is written at configure time by duet_layer() (cmake/duet.cmake): one line
"folder: may-use..." per library. For every .h/.cc under a library folder this checks:
  - a quoted include "X/..." of another project folder X is in the folder's may-use list
    ("duet/v1/..." is the generated proto layer);
  - no file anywhere includes another folder's internal/ headers;
  - gRPC headers appear only where proto is allowed, c10d headers only in weights/.
Folders without a line (tools, tests, bench) may include any public header.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def main():
    src, layers_txt = sys.argv[1], sys.argv[2]
    may_use = {}
    with open(layers_txt) as f:
        for line in f:
            if ":" in line:
                name, uses = line.split(":", 1)
                may_use[name.strip()] = set(uses.split())
    if not may_use:
        print("no layers in", layers_txt)
        return 1
    folders = {d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d))}
    errors = []
    checked = 0
    for top in sorted(folders):
        if top.startswith(".") or top in ("build", "out"):
            continue
        for root, _, files in os.walk(os.path.join(src, top)):
            for name in files:
                if not name.endswith((".h", ".cc")):
                    continue
                path = os.path.join(root, name)
                rel = os.path.relpath(path, src)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                for kind, inc in INCLUDE.findall(text):
                    checked += 1
                    parts = inc.split("/")
                    target = "proto" if inc.startswith("duet/v1/") else parts[0]
                    if "internal" in parts[1:-1] and target != top:
                        errors.append(f"{rel}: includes {inc}, another library's internal header")
                    if top not in may_use:
                        continue
                    allowed = may_use[top] | {top}
                    if kind == '"' and target in folders | {"proto"} and target not in allowed:
                        errors.append(f"{rel}: includes {inc}, but {top}/ may use only "
                                      f"{' '.join(sorted(may_use[top])) or '(nothing)'}")
                    if (inc.startswith(("grpc/", "grpcpp/", "grpc++/")) and "proto" not in allowed):
                        errors.append(f"{rel}: includes gRPC header {inc} below the rpc layer")
                    if "distributed/c10d" in inc and top != "weights":
                        errors.append(f"{rel}: includes c10d header {inc} outside weights/")
    for e in errors:
        print(e)
    print(f"{checked} includes checked, {len(errors)} layering violations")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
