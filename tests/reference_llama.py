#!/usr/bin/env python3
"""Independent float32 reference for Hugging Face LLaMA-style models (parity oracle).

Written from the Hugging Face LLaMA specification only; it shares no code with the
C++ engine.  Dependencies: PyTorch (Debian's python3-torch; run with /usr/bin/python3)
and the Python standard library.

Model directory: config.json (HF LLaMA keys) + model.safetensors (HF tensor names,
F32; F16/BF16/F64 are converted to float32 on load).

Modes
  Parity:    reference_llama.py --model_dir DIR --tokens TOKENS.json --logits LOGITS.bin
                                  [--tol 1e-4] [--positions POSITIONS.json]
             TOKENS.json    {"tokens": [[int, ...], ...]}  (B rows of equal length T)
             LOGITS.bin     raw little-endian float32 [B, T, V]
             LOGITS.bin.json  {"shape": [B, T, V]}  (LOGITS.json is accepted too)
             POSITIONS.json {"positions": [[int, ...], ...]} or [[...]] or [...]
                            (default: 0..T-1 for every row; only affects RoPE, the
                            attention mask stays causal over the row's token order)
             exit 0 = OK, 1 = FAIL (diff > tol or non-finite), 2 = bad/mismatched input.
  Self-test: reference_llama.py --self-test
             random tiny model -> written with our own safetensors writer -> re-read ->
             full forward vs. incremental KV-cache decode must agree within 1e-5.
  Helper:    reference_llama.py --write-random-model DIR [--seed S] [--tie]
             writes the tiny random test model (same config as the self-test).

Library use (e.g. tools/bench/decode_pytorch.py imports this file):
  model = load_model(model_dir)
  cache = model.new_cache(batch, max_len)          # [B, nKV, max_len, D] per layer
  logits = model.forward(tokens, start_pos=0, cache=cache)
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import torch
import torch.nn.functional as F


class InputError(Exception):
    """Unreadable or mismatched input (exit code 2)."""


# --------------------------------------------------------------------------------------
# Minimal safetensors reader / writer
# --------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F64": (torch.float64, 8),
}


def read_safetensors(path):
    """Returns (dict name -> float32 tensor, metadata dict or None)."""
    try:
        with open(path, "rb") as f:
            data = bytearray(f.read())
    except OSError as e:
        raise InputError("cannot read %s: %s" % (path, e))
    if len(data) < 8:
        raise InputError("%s: file too short for a safetensors header" % path)
    (hlen,) = struct.unpack("<Q", bytes(data[:8]))
    if 8 + hlen > len(data):
        raise InputError("%s: header length %d exceeds file size %d" % (path, hlen, len(data)))
    try:
        header = json.loads(bytes(data[8:8 + hlen]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError("%s: bad JSON header: %s" % (path, e))
    if not isinstance(header, dict):
        raise InputError("%s: header is not a JSON object" % path)
    metadata = header.pop("__metadata__", None)
    base = 8 + hlen
    body_len = len(data) - base
    tensors = {}
    for name, info in header.items():
        try:
            dtype_name = info["dtype"]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError("%s: bad header entry for %r: %s" % (path, name, e))
        if dtype_name not in _ST_DTYPES:
            raise InputError("%s: tensor %r has unsupported dtype %s" % (path, name, dtype_name))
        tdtype, esize = _ST_DTYPES[dtype_name]
        numel = 1
        for s in shape:
            if s < 0:
                raise InputError("%s: tensor %r has negative dim" % (path, name))
            numel *= s
        if not (0 <= begin <= end <= body_len) or end - begin != numel * esize:
            raise InputError("%s: tensor %r: data_offsets [%d,%d) inconsistent with shape %s "
                             "dtype %s (body %d bytes)" % (path, name, begin, end, shape,
                                                           dtype_name, body_len))
        if numel == 0:
            t = torch.zeros(shape, dtype=torch.float32)
        else:
            t = torch.frombuffer(data, dtype=tdtype, count=numel, offset=base + begin)
            if sys.byteorder != "little":  # safetensors is little-endian
                raise InputError("big-endian hosts are not supported")
            t = t.reshape(shape).to(torch.float32).clone()
        tensors[name] = t
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None, dtype="F32"):
    """Writes float tensors (dict name -> tensor) as safetensors with the given dtype."""
    tdtype, esize = _ST_DTYPES[dtype]
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(tdtype).contiguous().cpu()
        if tdtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            raw = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        assert len(raw) == t.numel() * esize
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)  # pad header to 8-byte alignment
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------

_CONFIG_KEYS = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads"]


def load_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError("cannot read %s: %s" % (path, e))
    missing = [k for k in _CONFIG_KEYS if k not in cfg]
    if missing:
        raise InputError("%s: missing keys %s" % (path, missing))
    mt = cfg.get("model_type", "llama")
    if mt != "llama":
        raise InputError("%s: model_type %r is not 'llama'" % (path, mt))
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    cfg.setdefault("rms_norm_eps", 1e-6)
    cfg.setdefault("rope_theta", 10000.0)
    cfg.setdefault("tie_word_embeddings", False)
    cfg.setdefault("max_position_embeddings", 2048)
    if cfg.get("rope_scaling"):
        raise InputError("%s: rope_scaling is not supported by this reference" % path)
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise InputError("hidden_size not divisible by num_attention_heads")
    if cfg["num_attention_heads"] % cfg["num_key_value_heads"]:
        raise InputError("num_attention_heads not divisible by num_key_value_heads")
    return cfg


def rms_norm(x, weight, eps):
    xf = x.to(torch.float32)
    var = xf.pow(2).mean(-1, keepdim=True)
    return weight * (xf * torch.rsqrt(var + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Llama:
    def __init__(self, cfg, weights):
        self.cfg = cfg
        self.V = int(cfg["vocab_size"])
        self.H = int(cfg["hidden_size"])
        self.I = int(cfg["intermediate_size"])
        self.L = int(cfg["num_hidden_layers"])
        self.nH = int(cfg["num_attention_heads"])
        self.nKV = int(cfg["num_key_value_heads"])
        self.D = self.H // self.nH
        self.eps = float(cfg["rms_norm_eps"])
        self.theta = float(cfg["rope_theta"])
        if self.D % 2:
            raise InputError("head_dim %d must be even for RoPE" % self.D)
        if cfg.get("head_dim") not in (None, self.D):
            raise InputError("head_dim %s != hidden_size/num_attention_heads" % cfg["head_dim"])
        V, H, I, nH, nKV, D = self.V, self.H, self.I, self.nH, self.nKV, self.D

        def get(name, shape):
            if name not in weights:
                raise InputError("missing tensor %s" % name)
            t = weights[name]
            if list(t.shape) != list(shape):
                raise InputError("tensor %s has shape %s, expected %s"
                                 % (name, list(t.shape), list(shape)))
            return t.to(torch.float32).contiguous()

        self.embed = get("model.embed_tokens.weight", [V, H])
        self.layers = []
        for i in range(self.L):
            p = "model.layers.%d." % i
            self.layers.append({
                "ln1": get(p + "input_layernorm.weight", [H]),
                "wq": get(p + "self_attn.q_proj.weight", [nH * D, H]),
                "wk": get(p + "self_attn.k_proj.weight", [nKV * D, H]),
                "wv": get(p + "self_attn.v_proj.weight", [nKV * D, H]),
                "wo": get(p + "self_attn.o_proj.weight", [H, nH * D]),
                "ln2": get(p + "post_attention_layernorm.weight", [H]),
                "wg": get(p + "mlp.gate_proj.weight", [I, H]),
                "wu": get(p + "mlp.up_proj.weight", [I, H]),
                "wd": get(p + "mlp.down_proj.weight", [H, I]),
            })
        self.norm = get("model.norm.weight", [H])
        if cfg["tie_word_embeddings"]:
            self.lm_head = self.embed
        else:
            self.lm_head = get("lm_head.weight", [V, H])
        # HF: inv_freq = 1 / (base ** (arange(0, dim, 2).float() / dim))
        self.inv_freq = 1.0 / (self.theta ** (torch.arange(0, D, 2, dtype=torch.int64)
                                              .float() / D))

    # KV cache: list over layers of (k, v), each [B, nKV, max_len, D], written in place.
    def new_cache(self, batch, max_len):
        return [(torch.zeros(batch, self.nKV, max_len, self.D),
                 torch.zeros(batch, self.nKV, max_len, self.D)) for _ in range(self.L)]

    def rope(self, positions):
        """positions: [B, T] int -> cos, sin of shape [B, 1, T, D]."""
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos()[:, None], emb.sin()[:, None]

    def forward(self, tokens, start_pos=0, cache=None, positions=None):
        """tokens [B, T] int64; returns logits [B, T, V] float32.

        Token t of every row sits at cache slot start_pos + t and (unless `positions`
        [B, T] is given) at RoPE position start_pos + t.  Attention is causal over
        slots: slot s attends to slots 0..s.
        """
        B, T = tokens.shape
        nH, nKV, D = self.nH, self.nKV, self.D
        rep = nH // nKV
        if positions is None:
            positions = torch.arange(start_pos, start_pos + T).expand(B, T)
        cos, sin = self.rope(positions)
        total = start_pos + T
        if cache is None and start_pos != 0:
            raise ValueError("start_pos > 0 requires a cache")
        if T > 1:
            q_slot = torch.arange(start_pos, total)[:, None]
            k_slot = torch.arange(total)[None, :]
            mask = torch.zeros(T, total).masked_fill(k_slot > q_slot, float("-inf"))
        else:
            mask = None  # one query at the newest slot sees everything before it
        scale = 1.0 / math.sqrt(D)

        x = self.embed[tokens]
        for li, lw in enumerate(self.layers):
            h = rms_norm(x, lw["ln1"], self.eps)
            q = F.linear(h, lw["wq"]).view(B, T, nH, D).transpose(1, 2)
            k = F.linear(h, lw["wk"]).view(B, T, nKV, D).transpose(1, 2)
            v = F.linear(h, lw["wv"]).view(B, T, nKV, D).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache is not None:
                ck, cv = cache[li]
                ck[:, :, start_pos:total] = k
                cv[:, :, start_pos:total] = v
                k = ck[:, :, :total]
                v = cv[:, :, :total]
            if rep > 1:  # HF repeat_kv
                k = k[:, :, None].expand(B, nKV, rep, total, D).reshape(B, nH, total, D)
                v = v[:, :, None].expand(B, nKV, rep, total, D).reshape(B, nH, total, D)
            scores = torch.matmul(q, k.transpose(2, 3)) * scale
            if mask is not None:
                scores = scores + mask
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
            attn = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, nH * D)
            x = x + F.linear(attn, lw["wo"])
            h = rms_norm(x, lw["ln2"], self.eps)
            x = x + F.linear(F.silu(F.linear(h, lw["wg"])) * F.linear(h, lw["wu"]), lw["wd"])
        x = rms_norm(x, self.norm, self.eps)
        return F.linear(x, self.lm_head)


def load_model(model_dir):
    cfg = load_config(model_dir)
    weights, _ = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    return Llama(cfg, weights)


# --------------------------------------------------------------------------------------
# Random tiny model (self-test / helper)
# --------------------------------------------------------------------------------------

TINY_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 544,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}


def random_weights(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    V, H, I = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    nH, nKV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = H // nH

    def lin(o, i):  # ~unit-variance activations so the test is not trivially tiny
        return torch.randn(o, i, generator=g) / math.sqrt(i)

    def ln(n):
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    # Embedding rows of norm ~1, so tied lm_head logits are O(1) like the untied ones.
    w = {"model.embed_tokens.weight": torch.randn(V, H, generator=g) / math.sqrt(H),
         "model.norm.weight": ln(H)}
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        w[p + "input_layernorm.weight"] = ln(H)
        w[p + "self_attn.q_proj.weight"] = lin(nH * D, H)
        w[p + "self_attn.k_proj.weight"] = lin(nKV * D, H)
        w[p + "self_attn.v_proj.weight"] = lin(nKV * D, H)
        w[p + "self_attn.o_proj.weight"] = lin(H, nH * D)
        w[p + "post_attention_layernorm.weight"] = ln(H)
        w[p + "mlp.gate_proj.weight"] = lin(I, H)
        w[p + "mlp.up_proj.weight"] = lin(I, H)
        w[p + "mlp.down_proj.weight"] = lin(H, I)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = lin(V, H)
    return w


def write_model_dir(model_dir, cfg, weights, dtype="F32"):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(model_dir, "model.safetensors"), weights,
                      metadata={"format": "pt"}, dtype=dtype)


# --------------------------------------------------------------------------------------
# Parity mode
# --------------------------------------------------------------------------------------

def _read_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError("cannot read %s file %s: %s" % (what, path, e))


def _int_rows(obj, key, path):
    rows = obj.get(key) if isinstance(obj, dict) else obj
    if isinstance(rows, list) and rows and all(isinstance(r, int) for r in rows):
        rows = [rows]
    if (not isinstance(rows, list) or not rows
            or not all(isinstance(r, list) and r for r in rows)
            or not all(isinstance(v, int) and not isinstance(v, bool) for r in rows for v in r)):
        raise InputError("%s: expected {\"%s\": [[int, ...], ...]} with non-empty rows"
                         % (path, key))
    if len(set(len(r) for r in rows)) != 1:
        raise InputError("%s: rows have different lengths %s" % (path, [len(r) for r in rows]))
    return rows


def _read_logits(path):
    side = None
    for cand in (path + ".json", os.path.splitext(path)[0] + ".json"):
        if cand != path and os.path.isfile(cand):
            side = cand
            break
    if side is None:
        raise InputError("missing sidecar %s.json for logits file %s" % (path, path))
    meta = _read_json(side, "logits sidecar")
    shape = meta.get("shape") if isinstance(meta, dict) else None
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(s, int) and s > 0 for s in shape)):
        raise InputError("%s: expected {\"shape\": [B, T, V]}" % side)
    if meta.get("dtype", "float32") not in ("float32", "F32", "f32"):
        raise InputError("%s: dtype %r, expected float32" % (side, meta.get("dtype")))
    try:
        with open(path, "rb") as f:
            raw = bytearray(f.read())
    except OSError as e:
        raise InputError("cannot read logits file %s: %s" % (path, e))
    n = shape[0] * shape[1] * shape[2]
    if len(raw) != 4 * n:
        raise InputError("%s: %d bytes, but shape %s needs %d" % (path, len(raw), shape, 4 * n))
    return torch.frombuffer(raw, dtype=torch.float32).reshape(shape).clone(), side


def parity(args):
    model = load_model(args.model_dir)
    rows = _int_rows(_read_json(args.tokens, "tokens"), "tokens", args.tokens)
    B, T = len(rows), len(rows[0])
    bad = [v for r in rows for v in r if not 0 <= v < model.V]
    if bad:
        raise InputError("%s: token ids out of range [0, %d): %s" % (args.tokens, model.V, bad[:5]))
    tokens = torch.tensor(rows, dtype=torch.int64)
    positions = None
    if args.positions:
        prow = _int_rows(_read_json(args.positions, "positions"), "positions", args.positions)
        if len(prow) == 1 and B > 1:
            prow = prow * B
        if len(prow) != B or len(prow[0]) != T:
            raise InputError("%s: positions shape [%d, %d] does not match tokens [%d, %d]"
                             % (args.positions, len(prow), len(prow[0]), B, T))
        positions = torch.tensor(prow, dtype=torch.int64)
    got, _ = _read_logits(args.logits)
    if list(got.shape) != [B, T, model.V]:
        raise InputError("logits shape %s does not match expected [B=%d, T=%d, V=%d]"
                         % (list(got.shape), B, T, model.V))
    with torch.no_grad():
        ref = model.forward(tokens, positions=positions)
    diff = (got - ref).abs()
    finite = bool(torch.isfinite(got).all())
    if finite:
        max_diff = float(diff.max())
        ok = max_diff <= args.tol
    else:
        max_diff = float("nan")
        ok = False
    msg = "parity: max_abs_diff=%.3g tol=%.0e B=%d T=%d V=%d -> %s" % (
        max_diff, args.tol, B, T, model.V, "OK" if ok else "FAIL")
    if not ok:
        if finite:
            idx = int(diff.argmax())
            b, rem = divmod(idx, T * model.V)
            t, vv = divmod(rem, model.V)
            msg += " (worst at b=%d t=%d v=%d: got %.6g ref %.6g)" % (
                b, t, vv, float(got[b, t, vv]), float(ref[b, t, vv]))
        else:
            msg += " (logits contain %d non-finite values)" % int((~torch.isfinite(got)).sum())
    print(msg)
    return 0 if ok else 1


# --------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------

def _incremental(model, tokens, prefill):
    """Prefill `prefill` tokens, then decode the rest one token at a time with the cache."""
    B, T = tokens.shape
    cache = model.new_cache(B, T)
    out = [model.forward(tokens[:, :prefill], 0, cache)] if prefill else []
    for t in range(prefill, T):
        out.append(model.forward(tokens[:, t:t + 1], t, cache))
    return torch.cat(out, dim=1)


def self_test():
    torch.manual_seed(0)
    ok = True

    def check(name, a, b, tol):
        nonlocal ok
        d = float((a - b).abs().max())
        good = d <= tol
        ok &= good
        print("self-test: %-46s max_abs_diff=%.3g tol=%.0e %s"
              % (name, d, tol, "OK" if good else "FAIL"))

    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for tie in (False, True):
            cfg = dict(TINY_CONFIG, tie_word_embeddings=tie)
            w = random_weights(cfg, seed=1 + tie)
            d = os.path.join(tmp, "tie%d" % tie)
            write_model_dir(d, cfg, w)
            rw, meta = read_safetensors(os.path.join(d, "model.safetensors"))
            rt = set(rw) == set(w) and all(torch.equal(rw[k], w[k]) for k in w)
            ok &= rt
            print("self-test: safetensors round trip (tie=%d, %d tensors, meta=%s) %s"
                  % (tie, len(w), meta, "OK" if rt else "FAIL"))
            model = load_model(d)
            if tie:
                assert model.lm_head is model.embed
            B, T = 3, 17
            g = torch.Generator().manual_seed(7)
            tokens = torch.randint(cfg["vocab_size"], (B, T), generator=g)
            full = model.forward(tokens)
            assert full.shape == (B, T, cfg["vocab_size"])
            assert bool(torch.isfinite(full).all())
            print("self-test: logits std=%.3f (tie=%d)" % (float(full.std()), tie))
            check("full vs decode-all-steps (tie=%d)" % tie, full, _incremental(model, tokens, 0),
                  1e-5)
            check("full vs prefill 5 + decode (tie=%d)" % tie, full,
                  _incremental(model, tokens, 5), 1e-5)
            # Row independence: a row's logits do not depend on the rest of the batch.
            check("batch row vs single row (tie=%d)" % tie, full[1:2],
                  model.forward(tokens[1:2]), 1e-5)
            # Causality: changing a future token does not change earlier logits.
            t2 = tokens.clone()
            t2[:, 10] = (t2[:, 10] + 1) % cfg["vocab_size"]
            check("causal prefix unchanged (tie=%d)" % tie, full[:, :10],
                  model.forward(t2)[:, :10], 0.0)
            # Explicit positions equal to the default give the same result.
            pos = torch.arange(T).expand(B, T)
            check("explicit positions 0..T-1 (tie=%d)" % tie, full,
                  model.forward(tokens, positions=pos), 0.0)

        # Half-precision files load (values converted to float32).
        for dt, tol in (("F16", 1e-3), ("BF16", 1e-2)):
            d = os.path.join(tmp, dt)
            w = random_weights(TINY_CONFIG, seed=3)
            write_model_dir(d, TINY_CONFIG, w, dtype=dt)
            rw, _ = read_safetensors(os.path.join(d, "model.safetensors"))
            worst = max(float((rw[k] - w[k]).abs().max()) for k in w)
            good = all(rw[k].dtype == torch.float32 for k in rw) and worst < tol * 8
            ok &= good
            print("self-test: %s load -> float32 (max quantization err %.2g) %s"
                  % (dt, worst, "OK" if good else "FAIL"))

        # The parity CLI path itself, on the untied model: exact logits pass, perturbed fail.
        d = os.path.join(tmp, "tie0")
        model = load_model(d)
        tokens = torch.randint(TINY_CONFIG["vocab_size"], (2, 17),
                               generator=torch.Generator().manual_seed(9))
        logits = model.forward(tokens)
        tok_path = os.path.join(tmp, "tokens.json")
        with open(tok_path, "w") as f:
            json.dump({"tokens": tokens.tolist()}, f)
        lg_path = os.path.join(tmp, "logits.bin")

        def write_logits(t):
            with open(lg_path, "wb") as f:
                f.write(t.contiguous().numpy().astype("<f4").tobytes())
            with open(lg_path + ".json", "w") as f:
                json.dump({"shape": list(t.shape)}, f)

        ns = argparse.Namespace(model_dir=d, tokens=tok_path, logits=lg_path, tol=1e-4,
                                positions=None)
        write_logits(logits)
        r_ok = parity(ns)
        bumped = logits.clone()
        bumped[1, 3, 5] += 1e-3
        write_logits(bumped)
        r_fail = parity(ns)
        write_logits(logits[:, :5])
        try:
            parity(ns)
            r_bad = 0
        except InputError as e:
            print("parity: input error: %s" % e)
            r_bad = 2
        good = (r_ok, r_fail, r_bad) == (0, 1, 2)
        ok &= good
        print("self-test: parity CLI exit codes ok/fail/mismatch = %d/%d/%d %s"
              % (r_ok, r_fail, r_bad, "OK" if good else "FAIL"))

    print("self-test: %s" % ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model_dir")
    ap.add_argument("--tokens")
    ap.add_argument("--logits")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--positions")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--write-random-model", metavar="DIR")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tie", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        if args.self_test:
            return self_test()
        if args.write_random_model:
            cfg = dict(TINY_CONFIG, tie_word_embeddings=args.tie)
            write_model_dir(args.write_random_model, cfg, random_weights(cfg, args.seed))
            print("wrote random model to %s" % args.write_random_model)
            return 0
        if not (args.model_dir and args.tokens and args.logits):
            ap.error("--model_dir, --tokens and --logits are required (or --self-test)")
        return parity(args)
    except InputError as e:
        print("parity: input error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
