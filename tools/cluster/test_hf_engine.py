"""The Hugging Face engines on a local Ray cluster of 2 CPU workers: transformers, and nnsight
(on this machine; NDIF is not reachable from a test), on the default GGUF read by transformers'
own GGUF loader, 20 names of world-places-200 in 3 shards.

- The merged shards equal the committed fixture that transformers made in one process
  (tests/fixtures/hf_hidden_states_smollm2.safetensors, with the last block's raw output in
  place of HF's final-normed last state: Probelab's layer convention).
- They agree with Probelab's own extraction of the same names (cosine >= 0.999 per layer).
- `probelab fit` reads the shard directory and names transformers as the tool.

Needs torch and transformers, which requirements.txt leaves out (about 5 GB):
`PROBELAB_HF=1 scripts/test` installs requirements-hf.txt and runs this; without them it is
skipped, saying so.

    tools/cluster/.venv/bin/python -m pytest -q tools/cluster/test_hf_engine.py
"""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

pytest.importorskip("torch", reason="torch is not installed (PROBELAB_HF=1 scripts/test installs it)")
pytest.importorskip("transformers", reason="transformers is not installed")

ROOT = Path(__file__).resolve().parents[2]
EXTRACT = Path(__file__).with_name("extract.py")
BIN = os.environ.get("PROBELAB_BIN") or str(ROOT / "target/native/release/probelab")
MODEL = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
FIXTURE = ROOT / "tests/fixtures/hf_hidden_states_smollm2.safetensors"


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert p.returncode == 0, f"{cmd[:3]} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def names_csv(tmp_path_factory):
    """The fixture's 20 names with their rows of world-places-200."""
    d = tmp_path_factory.mktemp("hf")
    f = safe_open(str(FIXTURE), "np")
    names = json.loads(f.metadata()["names"])
    with open(ROOT / "datasets/world_places_200.csv", encoding="utf-8") as src:
        rows = list(csv.reader(src))
    assert [r[0] for r in rows[1:len(names) + 1]] == names
    path = d / "places20.csv"
    with open(path, "w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(rows[:len(names) + 1])
    want = np.concatenate([f.get_tensor("hidden_states")[:-1], f.get_tensor("last_block_raw")[None]])
    return d, path, names, want


def merged(out):
    m = json.loads((out / "manifest.json").read_text())
    parts = [safe_open(str(out / s["file"]), "np") for s in sorted(m["shards"], key=lambda s: s["start"])]
    acts = np.concatenate([p.get_tensor("activations") for p in parts], axis=1)
    names = [n for p in parts for n in json.loads(p.metadata()["names"])]
    return m, acts, names


@pytest.mark.parametrize("engine", ["hf", "nnsight"])
def test_hf_engines_on_ray_equal_transformers_alone_and_fit(names_csv, engine):
    if engine == "nnsight":
        pytest.importorskip("nnsight", reason="nnsight is not installed")
    d, csv_path, names, want = names_csv
    out = d / f"shards-{engine}"
    t0 = time.time()
    p = run([sys.executable, EXTRACT, "--engine", engine, "--model", MODEL, "--names", csv_path,
             "--out", out, "--shard-size", "7", "--workers", "2"])
    print(p.stdout)
    print(f"{engine}: 20 names in 3 shards on 2 Ray workers, {time.time() - t0:.1f} s")
    assert "3/3 shards, 20/20 entities" in p.stdout
    manifest, acts, got_names = merged(out)
    assert got_names == names
    rel = (np.linalg.norm(acts - want, axis=-1) / np.linalg.norm(want, axis=-1)).max()
    print(f"{engine} shards vs the transformers fixture: worst vector {rel:.2e} relative")
    assert acts.shape == want.shape and rel <= 1e-5, rel

    # Probelab's own forward pass of the same names: the same layers.
    single = d / "probelab.safetensors"
    if not single.exists():
        run([BIN, "extract", "--model", MODEL, "--dataset", csv_path, "--engine", "cpu", "--out", single])
    ours = safe_open(str(single), "np").get_tensor("activations")
    cos = (acts * ours).sum(-1) / (np.linalg.norm(acts, axis=-1) * np.linalg.norm(ours, axis=-1))
    print(f"{engine} vs probelab extract: worst cosine {cos.min():.7f} (layer {cos.min(axis=1).argmin()})")
    assert cos.min() >= 0.999, cos.min(axis=1)

    # The shard directory through the probes, the tool named.
    fit = d / f"fit-{engine}"
    run([BIN, "fit", out, "--dataset", csv_path, "--permutations", "10", "--out", fit])
    report = json.loads((fit / "report.json").read_text())
    assert report["dataset"]["n"] == 20 and len(report["layers"]) == 31
    source = report["notes"]["activations.source"]
    assert "transformers" in source and "sharded on Ray" in source, source
    if engine == "nnsight":
        assert "nnsight" in source, source
