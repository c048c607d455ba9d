#!/usr/bin/env bash
# Parity of Duet's C++ forward pass with tests/reference_llama.py, an independent pure
# PyTorch implementation of the Hugging Face LLaMA architecture: both read the same
# safetensors file; the max absolute logit difference must be <= 1e-4. Then the same for
# `--model=` (a given model is dumped, not a random one): the copy it writes must be the
# given weights, and its logits must match the reference too.
set -euo pipefail
DUET="$1"
REFERENCE="$2"
TMP="$(mktemp -d)"
TMP2="$(mktemp -d)"
trap 'rm -rf "$TMP" "$TMP2"' EXIT
"$DUET" dev dump-logits --out_dir="$TMP" --seed=7
/usr/bin/python3 "$REFERENCE" --self-test > /dev/null
/usr/bin/python3 "$REFERENCE" --model_dir "$TMP/model" --tokens "$TMP/tokens.json" \
  --logits "$TMP/logits.f32" --tol 1e-4
# --seed=9 would make another random model: the dump must be of the given one.
"$DUET" dev dump-logits --out_dir="$TMP2" --model="$TMP/model" --seed=9
cmp "$TMP/model/model.safetensors" "$TMP2/model/model.safetensors"
/usr/bin/python3 "$REFERENCE" --model_dir "$TMP2/model" --tokens "$TMP2/tokens.json" \
  --logits "$TMP2/logits.f32" --tol 1e-4
