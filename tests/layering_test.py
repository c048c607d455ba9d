#!/usr/bin/env python3
"""Fails when an #include crosses the layering that CMakeLists.txt states.

usage: layering_test.py SOURCE_DIR LAYERS_TXT

LAYERS_TXT is written at configure time by duet_layer() (cmake/duet.cmake): one line
"path: may-use-path..." per layer, keyed by folder path from the source root (e.g.
"common/rpc: common/base common/model proto"). A file, and the target of a quoted
include, belongs to the longest layer path that contains it, so "learner/service" is a
layer of its own above "learner". For every .h/.cc of the tree this checks:
  - a quoted include of a file in another layer names a layer the file's layer may use
    ("duet/v1/..." is the generated proto layer);
  - no file anywhere includes another folder's internal/ headers;
  - gRPC headers appear only where proto is allowed, c10d headers only in common/weights/.
Files in no layer (tools/, tests/) may include any public header.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def layer_of(path, layers):
    """The longest layer path equal to or containing `path`, or None."""
    best = None
    for layer in layers:
        if (path == layer or path.startswith(layer + "/")) and len(layer) > len(best or ""):
            best = layer
    return best


def check(src, may_use):
    layers = set(may_use)
    errors = []
    checked = 0
    for root, dirs, files in os.walk(src):
        rel_root = os.path.relpath(root, src)
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and not (rel_root == "." and (d in ("out", "node_modules") or d.startswith("build")))
                   and d != "node_modules"]
        for name in files:
            if not name.endswith((".h", ".cc")):
                continue
            rel = os.path.normpath(os.path.join(rel_root, name))
            with open(os.path.join(root, name), encoding="utf-8") as f:
                text = f.read()
            own = layer_of(rel, layers)
            own_dir = os.path.dirname(rel)
            for kind, inc in INCLUDE.findall(text):
                checked += 1
                parts = inc.split("/")
                target = "proto" if inc.startswith("duet/v1/") else layer_of(inc, layers)
                if ("internal" in parts[:-1] and kind == '"'
                        and not own_dir.startswith(inc[:inc.index("internal")].rstrip("/"))):
                    errors.append(f"{rel}: includes {inc}, another folder's internal header")
                if own is None:
                    continue
                allowed = may_use[own] | {own}
                if kind == '"' and target is not None and target not in allowed:
                    errors.append(f"{rel}: includes {inc} ({target}/), but {own}/ may use only "
                                  f"{' '.join(sorted(may_use[own])) or '(nothing)'}")
                if inc.startswith(("grpc/", "grpcpp/", "grpc++/")) and "proto" not in allowed:
                    errors.append(f"{rel}: includes gRPC header {inc} below the rpc layer")
                if "distributed/c10d" in inc and own != "common/weights":
                    errors.append(f"{rel}: includes c10d header {inc} outside common/weights/")
    return checked, errors


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
    checked, errors = check(src, may_use)
    for e in errors:
        print(e)
    print(f"{checked} includes checked, {len(errors)} layering violations")
    return 1 if errors or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
