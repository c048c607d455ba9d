#!/usr/bin/env bash
# Parity of Duet's C++ forward pass with tests/reference_llama.py, an independent pure
# PyTorch implementation of the Hugging Face LLaMA architecture: both read the same
# safetensors file; the max absolute logit difference must be <= 1e-4.
set -euo pipefail
DUET="$1"
REFERENCE="$2"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$DUET" dev dump-logits --out_dir="$TMP" --seed=7
/usr/bin/python3 "$REFERENCE" --self-test > /dev/null
/usr/bin/python3 "$REFERENCE" --model_dir "$TMP/model" --tokens "$TMP/tokens.json" \
  --logits "$TMP/logits.f32" --tol 1e-4
