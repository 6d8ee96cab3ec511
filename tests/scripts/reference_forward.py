#!/usr/bin/env python3
"""Independent NumPy reference forward pass of the llama architecture for the
SmolLM2-135M-Instruct Q4_1 GGUF, producing residual-stream activations.

Outputs:
  tests/fixtures/forward_smollm2.safetensors (float32 tensors):
    hidden_last  [n_prompts, n_layer+1, d_model]  residual stream at the LAST token
    hidden_mean  [n_prompts, n_layer+1, d_model]  mean over all tokens of the prompt
    hidden_all_0 [n_layer+1, T0, d_model]         every token of prompt 0
    (logits are not stored, for size; see greedy/top5 in the JSON sidecar.)
  tests/fixtures/forward_smollm2.json (sidecar):
    {"model_sha256", "prompts": [{"text", "ids", "greedy_next_id",
      "greedy_next_token" (raw GGUF vocab string, byte-level e.g. "ĠParis"),
      "greedy_next_text" (decoded, e.g. " Paris"), "greedy_margin" (top1 - top2
      logit; small margins may flip under quantized arithmetic),
      "top5": [[id, token, logit], ...]}],
     "layer_convention": "layer 0 = embedding output; layer i = residual stream after block i", ...}

Layer convention: layer 0 = token embedding output (before any block); layer i
(1..30) = raw residual stream after block i (NOT passed through the final norm).

Model, written from the paper-level description (no candle / no Rust):
  x0 = token_embd[ids]
  for each block:  h = x + Wo · Attn(RoPE(Wq·n), RoPE(Wk·n), Wv·n),  n = RMSNorm(x)*attn_norm
                   x = h + Wdown · (silu(Wgate·m) * (Wup·m)),          m = RMSNorm(h)*ffn_norm
  RMSNorm(x) = x / sqrt(mean(x^2) + eps), eps = llama.attention.layer_norm_rms_epsilon
  RoPE in llama.cpp's GGUF convention ("normal" mode): rotate ADJACENT pairs
  (x[2i], x[2i+1]) of each head by angle pos * theta^(-2i/head_dim)
  (HF->GGUF conversion permutes Q/K rows so this equals HF's rotate_half).
  Grouped-query causal attention (9 query heads share 3 KV heads: q head h uses
  kv head h // 3), softmax(q·k / sqrt(head_dim)).
  logits = LM head · (RMSNorm(x_L)*output_norm); LM head = output.weight, or
  token_embd.weight when absent (tied, as in this model).
Weights are dequantized with gguf-py (gguf.GGUFReader + gguf.quants.dequantize,
giving float32), then all arithmetic is done in float64; results are stored as
float32.

Prompts are tokenized with the reference tokenizer of make_tokenizer_fixture.py
(HF tokenizers rebuilt from the GGUF), cross-checked against llama.cpp's
tokenizer when llama-cpp-python is importable. Independent cross-checks of the
architecture (printed and stored in the sidecar as "llama_cpp_check"; llama.cpp
is only a check, never the source of the fixture values):
  * quantized_gguf: llama.cpp on the original Q4_1 GGUF (it quantizes
    activations to Q8 inside matmuls, so logits differ by up to ~1.3 and the
    argmax can flip on near-ties);
  * f32_reexport: the same dequantized weights re-exported to an all-F32 GGUF
    (temporary file, ~540 MB) and run by llama.cpp with an F32 KV cache; the
    last-position logits must match this reference to ~1e-4.

How it was run (exact versions in tests/scripts/requirements.txt):
    nice python3 tests/scripts/reference_forward.py
with Python 3.11.7, numpy 2.4.6, gguf 0.19.0, safetensors 0.8.0,
tokenizers 0.23.3, llama-cpp-python 0.3.36 (cross-check only).
"""
import argparse
import json
import os
import sys
import time

# Single-threaded BLAS so float64 summation order (and thus the stored float32
# values) is bitwise reproducible across runs/machines with the same BLAS.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import gguf  # noqa: E402
from gguf.quants import dequantize
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_fixture import build_hf_tokenizer, sha256_file  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
FIX = os.path.join(ROOT, "tests", "fixtures")

PROMPTS = [
    "The capital of France is",
    "Paris",
    "São Paulo",
    "東京",
    "Côte d'Ivoire",
    "Reykjavík",
    "Kraków",
    "Zürich",
    "Ōsaka",
    "Москва",
    "London",
    "New York City",
    "Buenos Aires",
    "The city of Paris is located in",
    "The capital of Japan is",
    "Berlin is the capital of",
    "The Eiffel Tower is in",
    "Mount Everest is located in",
    "I flew from Tokyo to Reykjavík in 1984.",
    "The population of São Paulo is about",
    "Albert Einstein was born in",
    "The Berlin Wall fell in 1989.",
    " Paris",
    "Paris, France",
    "Lagos is the largest city in",
    "The river that flows through Cairo is the",
]


class Model:
    def __init__(self, path):
        self.r = gguf.GGUFReader(path)
        f = self.r.fields

        def val(k):
            return f[k].contents()

        self.n_layer = int(val("llama.block_count"))
        self.d = int(val("llama.embedding_length"))
        self.n_head = int(val("llama.attention.head_count"))
        self.n_kv = int(val("llama.attention.head_count_kv"))
        self.ff = int(val("llama.feed_forward_length"))
        self.theta = float(val("llama.rope.freq_base"))
        # eps is stored as f32; use exactly that value
        self.eps = float(np.float32(val("llama.attention.layer_norm_rms_epsilon")))
        self.hd = self.d // self.n_head
        if "llama.rope.dimension_count" in f:
            assert int(val("llama.rope.dimension_count")) == self.hd
        self.tensors = {t.name: t for t in self.r.tensors}
        tf = f["tokenizer.ggml.tokens"]
        self.tokens = [tf.contents(i) for i in range(len(tf.data))]

    def w(self, name):
        t = self.tensors[name]
        a = dequantize(t.data, t.tensor_type)
        # numpy shape is reversed GGUF ne: [rows=ne1, cols=ne0] => y = W @ x
        expect = tuple(int(x) for x in reversed(t.shape))
        a = np.asarray(a).reshape(expect)
        return a.astype(np.float64)


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, theta):
    """x: [T, n_heads, hd]; rotate adjacent pairs (x[2i], x[2i+1])."""
    hd = x.shape[-1]
    i = np.arange(hd // 2, dtype=np.float64)
    inv = theta ** (-2.0 * i / hd)                      # [hd/2]
    ang = pos[:, None].astype(np.float64) * inv[None]  # [T, hd/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(m, prompts_ids):
    """Returns per-prompt list of residual streams [n_layer+1, T, d] and final logits [V]."""
    emb = m.w("token_embd.weight")  # [V, d]
    xs = [emb[np.array(ids)] for ids in prompts_ids]
    streams = [[x.copy()] for x in xs]
    group = m.n_head // m.n_kv
    for L in range(m.n_layer):
        t0 = time.time()
        p = f"blk.{L}."
        an, fn = m.w(p + "attn_norm.weight"), m.w(p + "ffn_norm.weight")
        wq, wk, wv, wo = (m.w(p + n + ".weight") for n in ("attn_q", "attn_k", "attn_v", "attn_output"))
        wg, wu, wd = (m.w(p + n + ".weight") for n in ("ffn_gate", "ffn_up", "ffn_down"))
        for k, x in enumerate(xs):
            T = x.shape[0]
            pos = np.arange(T)
            n = rmsnorm(x, an, m.eps)
            q = (n @ wq.T).reshape(T, m.n_head, m.hd)
            kk = (n @ wk.T).reshape(T, m.n_kv, m.hd)
            v = (n @ wv.T).reshape(T, m.n_kv, m.hd)
            q, kk = rope(q, pos, m.theta), rope(kk, pos, m.theta)
            mask = np.triu(np.full((T, T), -np.inf), k=1)
            att_out = np.empty((T, m.n_head, m.hd))
            for h in range(m.n_head):
                g = h // group
                sc = q[:, h, :] @ kk[:, g, :].T / np.sqrt(m.hd) + mask
                sc = sc - sc.max(axis=-1, keepdims=True)
                pr = np.exp(sc)
                pr /= pr.sum(axis=-1, keepdims=True)
                att_out[:, h, :] = pr @ v[:, g, :]
            h_ = x + att_out.reshape(T, m.d) @ wo.T
            mm = rmsnorm(h_, fn, m.eps)
            x = h_ + (silu(mm @ wg.T) * (mm @ wu.T)) @ wd.T
            xs[k] = x
            streams[k].append(x.copy())
        print(f"  block {L:2d} done ({time.time() - t0:.2f}s)", flush=True)
    on = m.w("output_norm.weight")
    head = m.w("output.weight") if "output.weight" in m.tensors else emb
    logits = [rmsnorm(x[-1], on, m.eps) @ head.T for x in xs]
    return [np.stack(s) for s in streams], logits, "output.weight" in m.tensors


def llama_cpp_logits(path, prompts_ids):
    try:
        import llama_cpp
    except Exception as e:  # noqa: BLE001
        return None, f"skipped: {e!r}"
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=1, n_batch=256,
                          logits_all=True, verbose=False)
    out = []
    for ids in prompts_ids:
        llm.reset()
        llm.eval(ids)
        out.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64))
    return out, llama_cpp.__version__


def f32_gguf_check(src_path, m, prompts_ids, logits, tmpdir=None):
    """Re-export the GGUF with every tensor dequantized to F32 (same metadata) and
    run llama.cpp on it with an F32 KV cache. With no quantized activations left,
    llama.cpp's last-position logits should match this reference to ~1e-3."""
    import tempfile
    import llama_cpp
    td = tempfile.mkdtemp(dir=tmpdir)
    path = os.path.join(td, "smollm2_f32.gguf")
    try:
        w = gguf.GGUFWriter(path, "llama")
        for k, fld in m.r.fields.items():
            if k.startswith("GGUF.") or k == "general.architecture":
                continue
            vt = fld.types[0]
            if k == "general.file_type":
                w.add_key_value(k, 0, vt)  # ALL_F32
                continue
            sub = fld.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(k, fld.contents(), vt, sub)
        for t in m.r.tensors:
            a = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
            w.add_tensor(t.name, a.reshape(tuple(int(x) for x in reversed(t.shape))))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_batch=256, n_threads=1, logits_all=True,
                              type_k=0, type_v=0, verbose=False)  # GGML_TYPE_F32 KV cache
        diffs, agree = [], 0
        for ids, ref in zip(prompts_ids, logits):
            llm.reset()
            llm.eval(ids)
            lc = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            diffs.append(float(np.max(np.abs(lc - ref))))
            agree += int(np.argmax(lc) == np.argmax(ref))
        del llm
        return {"status": "ran", "llama_cpp_python": llama_cpp.__version__,
                "argmax_agree": agree, "n_prompts": len(prompts_ids),
                "max_abs_logit_diff": max(diffs),
                "note": "llama.cpp on an all-F32 re-export of the same (dequantized) weights, F32 KV cache"}
    finally:
        if os.path.exists(path):
            os.remove(path)
        os.rmdir(td)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--outdir", default=FIX)
    ap.add_argument("--no-llama-cpp", action="store_true")
    args = ap.parse_args()

    sha = sha256_file(args.model)
    m = Model(args.model)
    print(f"n_layer={m.n_layer} d={m.d} heads={m.n_head}/{m.n_kv} hd={m.hd} ff={m.ff} "
          f"theta={m.theta} eps={m.eps!r} tied_head={'output.weight' not in m.tensors}")

    hf, _, _ = build_hf_tokenizer(m.r)
    prompts_ids = [hf.encode(p, add_special_tokens=False).ids for p in PROMPTS]
    lcpp_tok = None
    if not args.no_llama_cpp:
        try:
            import llama_cpp
            lcpp_tok = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
        except Exception as e:  # noqa: BLE001
            print("llama.cpp tokenizer cross-check skipped:", repr(e))
    if lcpp_tok is not None:
        for p, ids in zip(PROMPTS, prompts_ids):
            a = list(lcpp_tok.tokenize(p.encode(), add_bos=False, special=False))
            assert a == ids, (p, a, ids)
        print("prompt tokenization: llama.cpp and HF tokenizers agree on all prompts")

    t0 = time.time()
    streams, logits, has_output = forward(m, prompts_ids)
    print(f"forward done in {time.time() - t0:.1f}s")

    hidden_last = np.stack([s[:, -1, :] for s in streams]).astype(np.float32)
    hidden_mean = np.stack([s.mean(axis=1) for s in streams]).astype(np.float32)
    hidden_all_0 = streams[0].astype(np.float32)
    os.makedirs(args.outdir, exist_ok=True)
    st_path = os.path.join(args.outdir, "forward_smollm2.safetensors")
    save_file({"hidden_last": np.ascontiguousarray(hidden_last),
               "hidden_mean": np.ascontiguousarray(hidden_mean),
               "hidden_all_0": np.ascontiguousarray(hidden_all_0)}, st_path,
              metadata={"model_sha256": sha,
                        "layer_convention": "layer 0 = embedding output; layer i = residual stream after block i",
                        "dtype_note": "computed in float64, stored float32"})

    prompts_json = []
    for p, ids, lg in zip(PROMPTS, prompts_ids, logits):
        top = np.argsort(-lg)[:5]
        prompts_json.append({
            "text": p, "ids": ids,
            "greedy_next_id": int(top[0]), "greedy_next_token": m.tokens[int(top[0])],
            "greedy_next_text": hf.decode([int(top[0])]),
            "greedy_margin": float(lg[top[0]] - lg[top[1]]),
            "top5": [[int(i), m.tokens[int(i)], float(lg[i])] for i in top],
        })

    check = {"status": "skipped"}
    if not args.no_llama_cpp:
        lc, ver = llama_cpp_logits(args.model, prompts_ids)
        if lc is not None:
            agree = sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(lc, logits))
            maxdiff = max(float(np.max(np.abs(a - b))) for a, b in zip(lc, logits))
            corr = min(float(np.corrcoef(a, b)[0, 1]) for a, b in zip(lc, logits))
            check = {"status": "ran", "llama_cpp_python": ver,
                     "argmax_agree": agree, "n_prompts": len(lc),
                     "max_abs_logit_diff": maxdiff, "min_logit_corr": corr,
                     "note": "llama.cpp CPU uses quantized activations in matmuls, so small "
                             "differences are expected; this only checks the architecture"}
            print(f"llama.cpp {ver} last-position logits vs reference: argmax agree {agree}/{len(lc)}, "
                  f"max|diff|={maxdiff:.4f}, min corr={corr:.6f}")
            for p, a, b in zip(PROMPTS, lc, logits):
                if np.argmax(a) != np.argmax(b):
                    print(f"  argmax differs for {p!r}: llama.cpp {m.tokens[int(np.argmax(a))]!r} "
                          f"({a.max():.3f}) vs ref {m.tokens[int(np.argmax(b))]!r} ({b.max():.3f})")
        else:
            check = {"status": ver}
        if lc is not None:
            check_f32 = f32_gguf_check(args.model, m, prompts_ids, logits)
            print(f"llama.cpp on F32 re-export: argmax agree {check_f32['argmax_agree']}/"
                  f"{check_f32['n_prompts']}, max|logit diff|={check_f32['max_abs_logit_diff']:.2e}")
            check = {"quantized_gguf": check, "f32_reexport": check_f32}

    sidecar = {
        "model_sha256": sha,
        "prompts": prompts_json,
        "layer_convention": "layer 0 = embedding output; layer i = residual stream after block i",
        "tensors": {"hidden_last": list(hidden_last.shape), "hidden_mean": list(hidden_mean.shape),
                    "hidden_all_0": list(hidden_all_0.shape)},
        "hidden_mean_note": "mean over all tokens of each prompt (no BOS is added)",
        "reference": "NumPy float64 forward pass (tests/scripts/reference_forward.py), "
                     "weights dequantized by gguf-py " + getattr(gguf, "__version__", "0.19.0")
                     + ", numpy " + np.__version__,
        "rope": "adjacent pairs (x[2i], x[2i+1]), angle = pos * theta^(-2i/head_dim), theta=%g" % m.theta,
        "rms_eps": m.eps,
        "lm_head": "output.weight" if has_output else "token_embd.weight (tied)",
        "llama_cpp_check": check,
    }
    js_path = os.path.join(args.outdir, "forward_smollm2.json")
    with open(js_path, "w", encoding="utf-8") as f:
        json.dump(sidecar, f, ensure_ascii=False, indent=1)
        f.write("\n")

    for pj in prompts_json:
        print(f"  {pj['text']!r:45} -> {pj['greedy_next_text']!r} ({pj['greedy_next_id']})")
    cap = prompts_json[PROMPTS.index("The capital of France is")]
    print(f"SANITY: 'The capital of France is' -> {cap['greedy_next_text']!r}")
    print(f"wrote {st_path} ({os.path.getsize(st_path)} bytes) and {js_path}")
    print(f"norms of hidden_last[0] by layer: {np.linalg.norm(hidden_last[0], axis=-1).round(2).tolist()}")


if __name__ == "__main__":
    main()
