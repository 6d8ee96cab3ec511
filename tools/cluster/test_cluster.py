"""tools/cluster on a local Ray cluster of 2 CPU workers, 400 names of world-places on the
default model: the merged shards equal one `probelab extract` process bit for bit, a re-run
skips finished shards, a worker killed mid-shard has its shard retried with no entity lost or
doubled, and the merged shards go through `probelab fit`.

Run from the repository root (scripts/test does, with PROBELAB_BIN set):
    tools/cluster/.venv/bin/python -m pytest -q tools/cluster/test_cluster.py
"""
import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[2]
EXTRACT = Path(__file__).with_name("extract.py")
BIN = os.environ.get("PROBELAB_BIN") or str(ROOT / "target/native/release/probelab")
MODEL = ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf"
N = 400


def run(cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd[:2]} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p


def ray_extract(out, csv, *extra, probelab=BIN):
    return [sys.executable, EXTRACT, "--model", MODEL, "--names", csv, "--out", out,
            "--workers", "2", "--probelab", probelab, *extra]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """The first 400 rows of world-places, and their single-process extraction."""
    d = tmp_path_factory.mktemp("cluster")
    csv = d / "places400.csv"
    csv.write_text("\n".join((ROOT / "datasets/world_places.csv").read_text().splitlines()[:N + 1]) + "\n")
    single = d / "single.safetensors"
    t0 = time.time()
    run([BIN, "extract", "--model", MODEL, "--dataset", csv, "--engine", "cpu", "--out", single])
    return d, csv, load(single), time.time() - t0


def load(path):
    f = safe_open(str(path), "np")
    return {"acts": f.get_tensor("activations"), "names": json.loads(f.metadata()["names"]),
            "tokens": f.get_tensor("tokens_per_entity"), "first": f.get_tensor("first_token_ids"),
            "meta": f.metadata()}


def load_sharded(out):
    """The shards the manifest lists, in entity order, checked to tile 0..n."""
    m = json.loads((out / "manifest.json").read_text())
    shards = sorted(m["shards"], key=lambda s: s["start"])
    assert [s["start"] for s in shards[1:]] == [s["end"] for s in shards[:-1]]
    parts = [load(out / s["file"]) for s in shards]
    return m, {
        "acts": np.concatenate([p["acts"] for p in parts], axis=1),
        "names": [n for p in parts for n in p["names"]],
        "tokens": np.concatenate([p["tokens"] for p in parts]),
        "first": np.concatenate([p["first"] for p in parts]),
    }


def events(out):
    """(shard, event) → count, from the workers' attempt log."""
    lines = (out / "attempts.jsonl").read_text().splitlines()
    return collections.Counter((e["shard"], e["event"]) for e in map(json.loads, lines))


def assert_same(merged, single):
    assert merged["names"] == single["names"], "an entity lost, doubled or moved"
    assert merged["acts"].shape == single["acts"].shape == (31, N, 576)
    diff = np.abs(merged["acts"] - single["acts"]).max()
    rel = np.linalg.norm(merged["acts"] - single["acts"]) / np.linalg.norm(single["acts"])
    print(f"merged vs single process: max |diff| {diff:.3g}, relative {rel:.3g}")
    assert np.array_equal(merged["acts"], single["acts"]), f"not bit-identical (relative {rel:.3g})"
    assert np.array_equal(merged["tokens"], single["tokens"])
    assert np.array_equal(merged["first"], single["first"])


def test_two_workers_equal_one_process_skip_finished_shards_and_fit(places):
    d, csv, single, t_single = places
    out = d / "shards"
    t0 = time.time()
    p = run(ray_extract(out, csv, "--shard-size", "100"))
    t_ray = time.time() - t0
    print(p.stdout)
    print(f"{N} names: one process {t_single:.1f} s, Ray with 2 workers {t_ray:.1f} s "
          f"(ratio {t_ray / t_single:.1f})")
    assert "4/4 shards, 400/400 entities" in p.stdout
    manifest, merged = load_sharded(out)
    assert manifest["n_entities"] == N and len(manifest["shards"]) == 4
    assert_same(merged, single)
    ev = events(out)
    assert all(ev[(s["file"], "done")] == 1 for s in manifest["shards"])

    # A re-run finds every shard finished and runs nothing.
    p = run(ray_extract(out, csv, "--shard-size", "100"))
    assert "4 already finished, 0 to run" in p.stdout, p.stdout
    assert events(out) == ev
    # Another extraction into the same folder is refused.
    p = subprocess.run([str(c) for c in ray_extract(out, csv, "--shard-size", "100", "--pool", "mean")],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "another extraction (pool differ)" in p.stderr, p.stderr

    # The merged shards through the probes.
    fit = d / "fit"
    run([BIN, "fit", out, "--dataset", csv, "--permutations", "10", "--out", fit])
    report = json.loads((fit / "report.json").read_text())
    assert report["dataset"]["n"] == N and len(report["layers"]) == 31
    source = report["notes"]["activations.source"]
    assert "sharded on Ray" in source and "4 probelab shards" in source, source
    assert report["notes"]["activations.random_init"].startswith("missing")


def worker_running_a_shard(out):
    """(Ray worker pid, probelab pid) of a probelab process past its model load (its partial
    file exists) on a shard of `out`, or None."""
    if not (out / "tmp").exists() or not list((out / "tmp").glob("*.partial")):
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"extract" in cmd and any(str(out / "tmp").encode() in c for c in cmd):
                stat = Path(f"/proc/{pid}/stat").read_text()
                return int(stat.rsplit(")", 1)[1].split()[1]), int(pid)
        except OSError:
            continue
    return None


def test_a_killed_worker_has_its_shard_retried(places):
    d, csv, single, _ = places
    out = d / "killed"
    proc = subprocess.Popen([str(c) for c in ray_extract(out, csv, "--shard-size", "50", "--batch-size", "8")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, victim = time.time() + 120, None
    while victim is None and time.time() < deadline and proc.poll() is None:
        victim = worker_running_a_shard(out)
        time.sleep(0.02)
    assert victim, "no worker was seen running a shard"
    worker, child = victim
    os.kill(worker, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    print(stdout)
    assert proc.returncode == 0, stderr
    # The killed worker's probelab died with it (no stray writer of the same shard).
    time.sleep(0.5)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    manifest, merged = load_sharded(out)
    ev = events(out)
    starts = {s["file"]: ev[(s["file"], "start")] for s in manifest["shards"]}
    retried = [f for f, n in starts.items() if n > 1]
    print(f"killed worker {worker}; shards started more than once: {retried}")
    assert len(retried) >= 1, starts
    assert all(ev[(s["file"], "done")] == 1 for s in manifest["shards"]), ev
    assert_same(merged, single)


def test_a_failed_probelab_is_retried_and_an_exhausted_shard_reported(places, tmp_path):
    d, csv, single, _ = places
    # A probelab that fails on its first call for the shard starting at entity 100 (as a
    # crash or a full disk would), then works: the retry makes the result whole.
    flaky = tmp_path / "flaky-probelab"
    marker = tmp_path / "failed-once"
    flaky.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *shard-0000100-*) if [ ! -e {marker} ]; then touch {marker}; '
        'echo "simulated failure" >&2; exit 3; fi;; esac\n'
        f'exec {BIN} "$@"\n')
    flaky.chmod(0o755)
    out = d / "flaky"
    run(ray_extract(out, csv, "--shard-size", "100", probelab=flaky))
    ev = events(out)
    assert ev[("shard-0000100-0000200.safetensors", "failed")] == 1, ev
    assert ev[("shard-0000100-0000200.safetensors", "done")] == 1, ev
    _, merged = load_sharded(out)
    assert_same(merged, single)
    # A probelab that always fails: the shard is reported after its retries, the others are kept
    # for a re-run, and no manifest is written.
    out = d / "broken"
    cmd = ray_extract(out, csv, "--shard-size", "200", "--retries", "1", probelab="/bin/false")
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert p.returncode != 0
    assert "2 shards failed" in p.stderr and "re-run to retry them" in p.stderr, p.stderr
    assert "failed after 1 retries" in p.stdout, p.stdout
    assert not (out / "manifest.json").exists()
    assert events(out)[("shard-0000000-0000200.safetensors", "failed")] == 2
