//! Fitting a big sharded run (issue 16): writes a synthetic Probelab shard directory of
//! N entities × D dims × (BLOCKS + 1) layers in f16, and its random-init twin, then runs
//! `probelab fit` on it as a user would, which prints each layer's read and fit time and its
//! peak memory (VmHWM). Not a test; prints figures.
//!
//!     cargo build --release -p probelab --bin probelab
//!     cargo run --release -p probelab --example bench_fit_streaming                 # 40,000 × 4,096 × 33
//!     cargo run --release -p probelab --example bench_fit_streaming -- 40000 4096 2 # 3 layers
//!
//! Arguments: N D BLOCKS [PERMUTATIONS (100)] [LAYERS_IN_FLIGHT (0: one per core)]
//! [norandom]. The set goes to a temporary folder (PROBELAB_BENCH_DIR to choose it), removed
//! at the end. The full size is 11 GB per set on disk and takes hours on 2 cores: time fewer
//! layers and extrapolate (each layer costs the same).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use probelab::extract::acts::{ActsMeta, ActsWriter, StoreAs};
use probelab::extract::import::{Manifest, ShardEntry, MANIFEST_FILE};
use probelab::extract::{EntityTokens, Pooling};
use probelab::probe::split::SplitMix64;

const SHARD: usize = 5000;
/// Entities written per batch: a batch of every layer is 64 × 33 × 4,096 f32 (35 MB).
const BATCH: usize = 64;

fn uniform(g: &mut SplitMix64) -> f32 {
    (g.next_u64() >> 40) as f32 / (1u64 << 24) as f32
}

fn target(i: usize) -> (f32, f32) {
    let mut g = SplitMix64::new(i as u64 ^ 0xA5A5);
    (
        uniform(&mut g) * 140.0 - 60.0,
        uniform(&mut g) * 360.0 - 180.0,
    )
}

/// A shard directory of `n` × `d` × `layers + 1`: noise plus, in the model's set
/// (`signal`), a linear image of (lat, lon) that peaks at two thirds of the depth.
fn write_set(dir: &Path, n: usize, d: usize, layers: usize, names: &[String], signal: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let peak = (layers * 2) as f32 / 3.0;
    let mut w = SplitMix64::new(7);
    let dirs: Vec<f32> = (0..2 * d).map(|_| uniform(&mut w) - 0.5).collect();
    let strength: Vec<f32> = (0..=layers)
        .map(|l| {
            if signal && l > 0 {
                (-(l as f32 - peak).abs() / 4.0).exp()
            } else {
                0.0
            }
        })
        .collect();
    let meta = |r: std::ops::Range<usize>| {
        ActsMeta::new(
            "bench",
            &"0".repeat(64),
            "{name}",
            Pooling::Last,
            "bench",
            names[r].to_vec(),
        )
    };
    let mut shards = Vec::new();
    for start in (0..n).step_by(SHARD) {
        let end = (start + SHARD).min(n);
        let file = format!("shard-{start:06}.safetensors");
        let mut writer = ActsWriter::create(
            &dir.join(&file),
            layers,
            end - start,
            d,
            &meta(start..end),
            StoreAs::F16,
        )
        .unwrap();
        let entities: Vec<EntityTokens> = (start..end)
            .map(|i| EntityTokens {
                ids: vec![(i % 3000) as u32],
                span: 0..1,
            })
            .collect();
        for b in (0..end - start).step_by(BATCH) {
            let which: Vec<usize> = (b..(b + BATCH).min(end - start)).collect();
            let mut rows = vec![0f32; (layers + 1) * which.len() * d];
            for l in 0..=layers {
                for (k, &e) in which.iter().enumerate() {
                    let i = start + e;
                    let (lat, lon) = target(i);
                    let (lat, lon) = (lat / 40.0, lon / 100.0);
                    let mut g = SplitMix64::new(((l * n + i) as u64) ^ ((signal as u64) << 60));
                    let row = &mut rows[(l * which.len() + k) * d..][..d];
                    let s = strength[l];
                    for (j, v) in row.iter_mut().enumerate() {
                        let noise = uniform(&mut g) + uniform(&mut g) - 1.0;
                        *v = noise + s * (lat * dirs[j] + lon * dirs[d + j]);
                    }
                }
            }
            writer.write_batch(&entities, &which, &rows).unwrap();
        }
        writer.finish().unwrap();
        shards.push(ShardEntry { file, start, end });
    }
    let manifest = Manifest {
        n_entities: n,
        shards,
        tool: Some("bench_fit_streaming".into()),
        dataset_name: Some("bench".into()),
    };
    std::fs::write(
        dir.join(MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let random = !args.iter().any(|a| a == "norandom");
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let arg = |i: usize, default: usize| nums.get(i).copied().unwrap_or(default);
    let (n, d, layers, perms, in_flight) = (
        arg(0, 40_000),
        arg(1, 4096),
        arg(2, 32),
        arg(3, 100),
        arg(4, 0),
    );
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("probelab"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("build the binary first: cargo build --release -p probelab --bin probelab")
        });
    let root = std::env::var_os("PROBELAB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("probelab-bench-stream-{}", std::process::id()));
    let names: Vec<String> = (0..n).map(|i| format!("place {i}")).collect();
    let mut csv = std::io::BufWriter::new(std::fs::File::create(root_csv(&root)).unwrap());
    writeln!(csv, "name,latitude,longitude").unwrap();
    for (i, name) in names.iter().enumerate() {
        let (lat, lon) = target(i);
        writeln!(csv, "{name},{lat},{lon}").unwrap();
    }
    drop(csv);
    println!(
        "set: {n} entities × {d} dims × {} layers, f16 shards of {SHARD}{}; {perms} shuffles",
        layers + 1,
        if random {
            ", and its random-init twin"
        } else {
            ""
        }
    );
    let t = Instant::now();
    write_set(&root.join("real"), n, d, layers, &names, true);
    if random {
        write_set(&root.join("random"), n, d, layers, &names, false);
    }
    let disk = dir_bytes(&root.join("real")) * if random { 2 } else { 1 };
    let f32_mib =
        ((layers + 1) * n * d * 4) as f64 / (1 << 20) as f64 * if random { 2.0 } else { 1.0 };
    println!(
        "  written in {:.1} s: {:.2} GB on disk; {:.0} MiB as f32 in memory",
        t.elapsed().as_secs_f64(),
        disk as f64 / 1e9,
        f32_mib
    );
    let mut cmd = Command::new(&bin);
    cmd.arg("fit")
        .arg(root.join("real"))
        .arg("--dataset")
        .arg(root_csv(&root))
        .args(["--permutations", &perms.to_string()])
        .args(["--layers-in-flight", &in_flight.to_string()])
        .arg("--out")
        .arg(root.join("out"));
    if random {
        cmd.arg("--random-init").arg(root.join("random"));
    }
    println!("  {}", format!("{cmd:?}").replace('"', ""));
    let t = Instant::now();
    let status = cmd.status().unwrap();
    let total = t.elapsed().as_secs_f64();
    println!(
        "  probelab fit: {total:.1} s wall, {:.1} s per layer over {} layers (the lines above: \
         each layer's times, the peak)",
        total / (layers + 1) as f64,
        layers + 1
    );
    let _ = std::fs::remove_dir_all(&root);
    assert!(status.success(), "probelab fit failed");
}

fn root_csv(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root).unwrap();
    root.join("places.csv")
}
