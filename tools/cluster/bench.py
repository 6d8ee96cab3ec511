#!/usr/bin/env python3
"""Prints figures (not a test): N names of world-places (default 2,000) extracted by one
`probelab extract` process and by tools/cluster/extract.py on a local Ray cluster of W workers
(default 2, one thread each), and the overhead ratio. The two results are compared too.

    PROBELAB_BIN=target/native/release/probelab tools/cluster/.venv/bin/python tools/cluster/bench.py 2000
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("PROBELAB_BIN") or str(ROOT / "target/native/release/probelab")
MODEL = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"


def timed(cmd):
    t0 = time.time()
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    return time.time() - t0


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    shard = int(sys.argv[3]) if len(sys.argv) > 3 else 250
    d = Path(tempfile.mkdtemp(prefix="probelab-ray-bench-"))
    csv = d / "names.csv"
    csv.write_text("\n".join((ROOT / "datasets/world_places.csv").read_text().splitlines()[:n + 1]) + "\n")
    t1 = timed([BIN, "extract", "--model", MODEL, "--dataset", csv, "--engine", "cpu", "--out", d / "one.safetensors"])
    t2 = timed([sys.executable, Path(__file__).with_name("extract.py"), "--model", MODEL, "--names", csv,
                "--out", d / "shards", "--workers", workers, "--shard-size", shard, "--probelab", BIN])
    one = safe_open(str(d / "one.safetensors"), "np").get_tensor("activations")
    m = json.loads((d / "shards" / "manifest.json").read_text())
    merged = np.concatenate([safe_open(str(d / "shards" / s["file"]), "np").get_tensor("activations")
                             for s in m["shards"]], axis=1)
    print(f"{n} names, {os.cpu_count()} cores: one process {t1:.1f} s ({n / t1:.0f} names/s); "
          f"Ray, {workers} workers, shards of {shard}: {t2:.1f} s ({n / t2:.0f} names/s, Ray start-up "
          f"included); ratio {t2 / t1:.2f}; merged equals one process bit for bit: "
          f"{np.array_equal(one, merged)}")


if __name__ == "__main__":
    main()
