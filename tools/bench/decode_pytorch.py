#!/usr/bin/env python3
"""Plain eager-PyTorch decode-loop baseline (CPU, float32).

Runs the loop a serving engine runs: B rows, a seeded random prompt of P tokens,
one prefill pass, then N single-token decode steps against a preallocated KV cache
([B, nKV, P+N, D] per layer, written in place), sampling each next token with
torch.multinomial(softmax(logits / temperature)) at temperature 1.

The model code is imported from tests/reference_llama.py (not duplicated).
Run with /usr/bin/python3 (Debian python3-torch).

  decode_pytorch.py --model_dir DIR --batch B --prompt_len P --new_tokens N
                    --threads T --warmup W --repeats R [--seed S]

Prints one JSON line; decode_tokens_per_s = B*N / median(decode seconds),
prefill_tokens_per_s = B*P / median(prefill seconds), seconds = median of
per-repeat prefill+decode seconds.
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import torch


def _load_reference():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests",
                        "reference_llama.py")
    spec = importlib.util.spec_from_file_location("reference_llama", os.path.normpath(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = _load_reference()


def sample(logits, generator, temperature=1.0):
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # [B, 1]


def run_once(model, prompt, new_tokens, generator):
    B, P = prompt.shape
    cache = model.new_cache(B, P + new_tokens)  # allocation is outside the timed region
    t0 = time.perf_counter()
    logits = model.forward(prompt, start_pos=0, cache=cache)
    next_tok = sample(logits[:, -1], generator)
    t1 = time.perf_counter()
    for step in range(new_tokens):
        logits = model.forward(next_tok, start_pos=P + step, cache=cache)
        next_tok = sample(logits[:, -1], generator)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main():
    ap = argparse.ArgumentParser(description="eager PyTorch decode-loop baseline")
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--prompt_len", type=int, required=True)
    ap.add_argument("--new_tokens", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.batch < 1 or args.prompt_len < 1 or args.new_tokens < 1 or args.repeats < 1 \
            or args.warmup < 0 or args.threads < 1:
        ap.error("batch, prompt_len, new_tokens, threads, repeats must be >= 1; warmup >= 0")

    torch.set_num_threads(args.threads)
    try:
        model = ref.load_model(args.model_dir)
    except ref.InputError as e:
        print("decode_pytorch: %s" % e, file=sys.stderr)
        return 2
    max_len = args.prompt_len + args.new_tokens
    if max_len > int(model.cfg["max_position_embeddings"]):
        print("decode_pytorch: warning: prompt_len+new_tokens=%d exceeds "
              "max_position_embeddings=%d" % (max_len, model.cfg["max_position_embeddings"]),
              file=sys.stderr)

    gen = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(model.V, (args.batch, args.prompt_len), generator=gen)

    prefill_s, decode_s = [], []
    with torch.inference_mode():
        for i in range(args.warmup + args.repeats):
            p, d = run_once(model, prompt, args.new_tokens, gen)
            if i >= args.warmup:
                prefill_s.append(p)
                decode_s.append(d)

    totals = [p + d for p, d in zip(prefill_s, decode_s)]
    med_p = statistics.median(prefill_s)
    med_d = statistics.median(decode_s)
    print(json.dumps({
        "impl": "pytorch-eager",
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "threads": args.threads,
        "decode_tokens_per_s": args.batch * args.new_tokens / med_d,
        "prefill_tokens_per_s": args.batch * args.prompt_len / med_p,
        "seconds": statistics.median(totals),
        "decode_seconds": med_d,
        "prefill_seconds": med_p,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "torch": torch.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
