#!/usr/bin/env python3
"""llama.cpp's prompt processing on the same entities, as the baseline for Probelab's extraction.

Each name is tokenized by llama.cpp (identical to Probelab's tokenizer: see the tokenizer parity
test), packed as separate sequences into batches of up to --batch tokens / --seqs sequences, and
decoded in embedding mode (hidden states out, no LM head), which is the work Probelab does.
Needs `pip install llama-cpp-python==0.3.36` (builds llama.cpp from source).

Usage: llamacpp_prefill.py MODEL NAMES.txt [--threads 2] [--batch 512] [--seqs 64]
Prints one JSON line: {"tokens", "entities", "seconds", "tokens_per_s", "entities_per_s"}.
"""
import argparse
import json
import time

import llama_cpp
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("names")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seqs", type=int, default=16)
    a = ap.parse_args()
    names = [l.rstrip("\n") for l in open(a.names, encoding="utf-8") if l.strip()]
    llm = Llama(model_path=a.model, n_ctx=a.batch, n_batch=a.batch, n_ubatch=a.batch,
                n_seq_max=a.seqs, n_threads=a.threads, n_threads_batch=a.threads,
                embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE, verbose=False)
    seqs = [llm.tokenize(n.encode("utf-8"), add_bos=False, special=False) for n in names]
    batches, cur, cur_tokens = [], [], 0
    for s in seqs:
        if cur and (cur_tokens + len(s) > a.batch or len(cur) >= a.seqs):
            batches.append(cur)
            cur, cur_tokens = [], 0
        cur.append(s)
        cur_tokens += len(s)
    if cur:
        batches.append(cur)
    # One warm-up batch, not timed.
    def run(batch):
        llm._batch.reset()
        for i, s in enumerate(batch):
            llm._batch.add_sequence(s, i, True)
        llm._ctx.kv_cache_clear()
        llm._ctx.decode(llm._batch)
    run(batches[0])
    t = time.perf_counter()
    for b in batches:
        run(b)
    secs = time.perf_counter() - t
    tokens = sum(map(len, seqs))
    print(json.dumps({"engine": "llama.cpp " + llama_cpp.__version__, "tokens": tokens,
                      "entities": len(seqs), "seconds": secs, "tokens_per_s": tokens / secs,
                      "entities_per_s": len(seqs) / secs}))


if __name__ == "__main__":
    main()
