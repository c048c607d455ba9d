#!/usr/bin/env bash
# Model throughput, side by side, in one run:
#   1. bench/model_bench (C++): fp32 GEMM roofline, scoring-forward and decode tokens/s of
#      the tiny and small presets at batch 1, 16, 64, 256 (fraction of the roofline with
#      2 x parameters FLOPs per token);
#   2. tools/bench/decode_pytorch.py: the same decode loop (same weights, batch, prompt of 16,
#      48 new tokens, one intra-op thread) written in plain eager PyTorch from Python.
# Prints a markdown table for docs/benchmarks.md.
#
# Usage: tools/bench/run_model_bench.sh [BUILD_DIR]   (build first: ninja -C BUILD_DIR model_bench)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${1:-${DUET_BUILD_DIR:-build}}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$BUILD_DIR/tools/bench/model_bench" --bench_model_dir="$TMP" --benchmark_format=json \
  --benchmark_out="$TMP/cpp.json" --benchmark_out_format=json > /dev/null 2> "$TMP/cpp.err"
grep roofline "$TMP/cpp.err" || true
for preset in tiny small; do
  for batch in 1 16 64 256; do
    /usr/bin/python3 tools/bench/decode_pytorch.py --model_dir "$TMP/$preset" --batch "$batch" \
      --prompt_len 16 --new_tokens 48 --threads 1 --warmup 1 --repeats 3 \
      | sed "s/^{/{\"preset\": \"$preset\", /" >> "$TMP/py.jsonl"
  done
done
/usr/bin/python3 - "$TMP/cpp.json" "$TMP/py.jsonl" <<'PY'
import json, sys
cpp = json.load(open(sys.argv[1]))
py = [json.loads(l) for l in open(sys.argv[2])]
names = {0: "tiny", 1: "small"}
rows = {}
gemm = None
for b in cpp["benchmarks"]:
    if b["name"].startswith("BM_Gemm"):
        gemm = b["gflops"]
        continue
    kind, rest = b["name"].split("/", 1)
    args = dict(kv.split(":") for kv in rest.split("/") if ":" in kv)
    key = (names[int(args["preset"])], int(args["batch"]))
    rows.setdefault(key, {})[kind] = b
print(f"GEMM roofline (fp32 1024^3, this run): {gemm:.1f} GFLOP/s\n")
print("| preset | batch | forward tok/s | forward % roofline | decode tok/s | decode % roofline | PyTorch decode tok/s | Duet / PyTorch |")
print("|---|---|---|---|---|---|---|---|")
for (preset, batch), r in sorted(rows.items(), key=lambda kv: (kv[0][0] != "tiny", kv[0][1])):
    f, d = r["BM_Forward"], r["BM_Decode"]
    p = next(x for x in py if x["preset"] == preset and x["batch"] == batch)
    ratio = d["tok_per_s"] / p["decode_tokens_per_s"]
    print(f"| {preset} | {batch} | {f['tok_per_s']:.0f} | {100*f['gflops']/gemm:.0f}% | {d['tok_per_s']:.0f} | "
          f"{100*d['gflops']/gemm:.0f}% | {p['decode_tokens_per_s']:.0f} | {ratio:.2f}x |")
PY
