#!/usr/bin/env python3
"""Probelab's extraction spread over a Ray cluster: the entity list is cut into shards, each
shard is one Ray task that runs its names through an engine, and the shards land in Probelab's
layout with a manifest.json that `probelab fit DIR` reads.

    tools/cluster/.venv/bin/python tools/cluster/extract.py \\
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --names places.csv --out runs/places-shards
    probelab fit runs/places-shards --dataset places.csv --out runs/places

- Engines: `--engine cpu|gpu|auto` runs `probelab extract` (the GGUF models); `--engine hf`
  runs Hugging Face transformers with output_hidden_states (a checkpoint directory, a hub id
  or a GGUF through transformers' GGUF loader), and `--engine nnsight` the same model traced
  by nnsight, with `--remote` on NDIF (hf_engine.py; `setup.sh --hf` installs torch).

- Faults: a task whose worker dies (killed, out of memory, node lost) or whose probelab exits
  non-zero is retried by Ray (--retries); a shard's file appears only once it is complete, so
  a half-written shard never counts. A re-run with the same arguments skips finished shards.
- On a cluster (--address auto, after `ray start` on each node), --out, --model and the
  probelab binary must be at the same paths on every node (a shared file system).

Ray tasks, not Ray Data: a shard is one task whose unit of retry, skipping and output is the
shard file; Ray Data would add pyarrow and pandas for a list of shard ranges.
"""
import argparse
import csv
import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MANIFEST = "manifest.json"
RUN_FILE = "run.json"
ATTEMPTS = "attempts.jsonl"
# The header names probelab accepts for the name column (crate/src/data.rs, NAME_ALIASES).
NAME_COLUMNS = ["name", "entity", "place", "city", "title", "label"]


def read_names(path):
    """Names as `probelab extract` reads them: a .csv's name column (a single headerless column
    is all names), else one name per line."""
    text = Path(path).read_text(encoding="utf-8")
    if not str(path).lower().endswith(".csv"):
        return [line.strip() for line in text.splitlines() if line.strip()]
    rows = [r for r in csv.reader(text.splitlines()) if r]
    header = [h.strip().lower() for h in rows[0]]
    col = next((header.index(c) for c in NAME_COLUMNS if c in header), None)
    if col is None and len(header) == 1:
        return [r[0].strip() for r in rows]
    if col is None:
        sys.exit(f"{path}: no name column in {header}; name one column 'name'")
    return [r[col].strip() for r in rows[1:]]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_file(start, end):
    return f"shard-{start:07d}-{end:07d}.safetensors"


def _die_with_parent():
    # probelab must not outlive a killed worker: it would finish a shard the retry also writes.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _log_attempt(out, **event):
    line = json.dumps({"t": time.time(), "pid": os.getpid(), **event}) + "\n"
    # One short O_APPEND write per event: lines from concurrent workers do not interleave.
    fd = os.open(os.path.join(out, ATTEMPTS), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


HF_ENGINES = ("hf", "nnsight")


def run_shard(spec, cfg):
    """One shard: its names through the engine, into a temporary file moved into place when
    complete. Runs inside a Ray worker."""
    out = cfg["out"]
    final = os.path.join(out, spec["file"])
    if os.path.exists(final):
        return {**spec, "seconds": 0.0, "skipped": True}
    _log_attempt(out, shard=spec["file"], event="start")
    t0 = time.time()
    if cfg["engine"] in HF_ENGINES:
        sys.path.insert(0, cfg["here"])  # a Ray worker does not start in this directory
        import hf_engine

        hf_engine.extract_shard(spec["names"], cfg, final)
    else:
        run_probelab(spec, cfg, final)
    _log_attempt(out, shard=spec["file"], event="done")
    return {**{k: spec[k] for k in ("file", "start", "end")}, "seconds": time.time() - t0,
            "skipped": False, "pid": os.getpid()}


def run_probelab(spec, cfg, final):
    """`probelab extract` on the shard's names (killed with its worker)."""
    out = cfg["out"]
    with tempfile.TemporaryDirectory(prefix="probelab-shard-") as tmp:
        names = os.path.join(tmp, "names.txt")
        with open(names, "w", encoding="utf-8") as f:
            f.write("\n".join(spec["names"]) + "\n")
        partial = os.path.join(out, "tmp", f"{spec['file']}.{os.getpid()}.safetensors")
        cmd = [
            cfg["probelab"], "extract", "--model", cfg["model"], "--dataset", names,
            "--prompt", cfg["prompt"], "--pool", cfg["pool"], "--engine", cfg["engine"],
            "--batch-size", str(cfg["batch_size"]), "--out", partial,
        ]
        env = {**os.environ, "RAYON_NUM_THREADS": str(cfg["threads"])}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=_die_with_parent)
        if p.returncode != 0:
            _log_attempt(out, shard=spec["file"], event="failed", rc=p.returncode)
            raise RuntimeError(
                f"shard {spec['start']}..{spec['end']}: probelab exited {p.returncode}: "
                + p.stderr.strip()[-2000:]
            )
        os.replace(partial, final)


def shard_tool(out, spec):
    """The tool a shard's metadata names (the HF engines write it)."""
    from safetensors import safe_open

    return safe_open(os.path.join(out, spec["file"]), "np").metadata().get("tool", "unknown")


def probelab_version(binary):
    p = subprocess.run([binary, "--version"], capture_output=True, text=True)
    return p.stdout.strip() or "probelab"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True,
                    help="GGUF file (same path on every node); with --engine hf/nnsight also a "
                         "checkpoint directory or a hub id")
    ap.add_argument("--names", required=True, help=".csv with a name column, or one name per line")
    ap.add_argument("--out", required=True, help="directory for the shards and manifest.json")
    ap.add_argument("--prompt", default="{name}")
    ap.add_argument("--pool", default="last", choices=["last", "mean"])
    ap.add_argument("--engine", default="cpu", choices=["cpu", "gpu", "auto", *HF_ENGINES],
                    help="cpu, gpu or auto: probelab extract --engine; hf: transformers; "
                         "nnsight: transformers traced by nnsight")
    ap.add_argument("--hf-device", default="cpu",
                    help="with --engine hf/nnsight: torch device, e.g. cuda (with --gpus-per-task 1)")
    ap.add_argument("--hf-dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                    help="with --engine hf/nnsight: the weights' dtype (vectors are saved as float32)")
    ap.add_argument("--remote", action="store_true",
                    help="with --engine nnsight: run on NDIF (the model a hub id NDIF serves)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=500, help="entities per shard (one Ray task)")
    ap.add_argument("--cpus-per-task", type=int, default=1, help="Ray CPUs and probelab threads per shard")
    ap.add_argument("--gpus-per-task", type=float, default=0)
    ap.add_argument("--retries", type=int, default=3, help="tries after a failed or killed worker")
    ap.add_argument("--address", default=None, help="a running cluster ('auto'); default: a local one")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local cluster")
    ap.add_argument("--probelab", default=os.environ.get("PROBELAB_BIN", "probelab"),
                    help="the probelab binary (default: $PROBELAB_BIN, else on PATH)")
    args = ap.parse_args(argv)

    import ray

    out = os.path.abspath(args.out)
    names = read_names(args.names)
    if not names:
        sys.exit(f"{args.names}: no names")
    if "" in names:
        sys.exit(f"{args.names}: entity {names.index('') + 1} has an empty name")
    n = len(names)
    hf = args.engine in HF_ENGINES
    if args.remote and args.engine != "nnsight":
        sys.exit("--remote runs the trace on NDIF through nnsight: use --engine nnsight")
    model = os.path.abspath(args.model) if os.path.exists(args.model) else args.model
    if not hf and not os.path.isfile(model):
        sys.exit(f"{args.model}: no such GGUF file")
    binary = os.path.abspath(args.probelab) if os.path.sep in args.probelab else args.probelab
    if hf:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import hf_engine
    run = {
        "model_sha256": hf_engine.model_hash(model) if hf else sha256_file(model),
        "engine": f"{args.engine} {args.hf_dtype}" if hf else args.engine,
        "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
        "n_entities": n,
        "prompt": args.prompt,
        "pool": args.pool,
        "shard_size": args.shard_size,
    }
    os.makedirs(os.path.join(out, "tmp"), exist_ok=True)
    run_path = os.path.join(out, RUN_FILE)
    if os.path.exists(run_path):
        before = json.load(open(run_path))
        if before != run:
            differ = [k for k in run if before.get(k) != run[k]]
            sys.exit(f"{out} holds shards of another extraction ({', '.join(differ)} differ): "
                     "use another --out")
    else:
        json.dump(run, open(run_path, "w"), indent=1)

    specs = [
        {"file": shard_file(s, min(s + args.shard_size, n)), "start": s,
         "end": min(s + args.shard_size, n), "names": names[s:s + args.shard_size]}
        for s in range(0, n, args.shard_size)
    ]
    todo = [s for s in specs if not os.path.exists(os.path.join(out, s["file"]))]
    print(f"{n} entities in {len(specs)} shards of {args.shard_size}; "
          f"{len(specs) - len(todo)} already finished, {len(todo)} to run", flush=True)

    if todo:
        t0 = time.time()
        if args.address:
            ray.init(address=args.address, log_to_driver=False)
        else:
            ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
                     object_store_memory=200 * 1024 * 1024)
        print(f"Ray {ray.__version__}: {ray.cluster_resources().get('CPU', 0):.0f} CPUs "
              f"(started in {time.time() - t0:.1f} s)", flush=True)
        cfg = {"out": out, "model": model, "probelab": binary, "prompt": args.prompt,
               "pool": args.pool, "engine": args.engine, "batch_size": args.batch_size,
               "threads": args.cpus_per_task, "remote": args.remote,
               "hf_device": args.hf_device, "hf_dtype": args.hf_dtype,
               "model_sha256": run["model_sha256"], "dataset_name": Path(args.names).stem,
               "here": str(Path(__file__).resolve().parent)}
        task = ray.remote(run_shard).options(
            num_cpus=args.cpus_per_task, num_gpus=args.gpus_per_task,
            max_retries=args.retries, retry_exceptions=True)
        pending = {task.remote(s, cfg): s for s in todo}
        done_entities = sum(s["end"] - s["start"] for s in specs) - sum(
            s["end"] - s["start"] for s in todo)
        t0, failed = time.time(), []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            try:
                r = ray.get(ready[0])
            except Exception as e:  # retries exhausted: report, keep the others going
                failed.append(spec["file"])
                print(f"shard {spec['start']}..{spec['end']} failed after {args.retries} retries: "
                      f"{str(e).strip().splitlines()[-1][:500]}", flush=True)
                continue
            done_entities += r["end"] - r["start"]
            el = time.time() - t0
            print(f"[{el:7.1f} s] {len(specs) - len(pending) - len(failed)}/{len(specs)} shards, "
                  f"{done_entities}/{n} entities ({done_entities / max(el, 1e-9):.0f}/s); "
                  f"shard {r['start']}..{r['end']} took {r['seconds']:.1f} s", flush=True)
        ray.shutdown()
        if failed:
            sys.exit(f"{len(failed)} shards failed ({', '.join(failed)}); re-run to retry them")

    manifest = {
        "n_entities": n,
        "shards": [{k: s[k] for k in ("file", "start", "end")} for s in specs],
        "tool": f"{shard_tool(out, specs[0]) if hf else probelab_version(binary) + ' extract'}, "
                "sharded on Ray (tools/cluster)",
        "dataset_name": os.path.abspath(args.names),
    }
    with open(os.path.join(out, MANIFEST + ".partial"), "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(os.path.join(out, MANIFEST + ".partial"), os.path.join(out, MANIFEST))
    # What killed workers left half-written.
    for stale in Path(out, "tmp").glob("*"):
        stale.unlink()
    print(f"wrote {os.path.join(out, MANIFEST)}", flush=True)


if __name__ == "__main__":
    main()
