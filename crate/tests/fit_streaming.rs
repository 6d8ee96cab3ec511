//! `probelab fit` on a shard directory streams layer by layer (issue 16, "fitting big runs"):
//! the streamed fit's report equals the in-memory fit's, each read is one layer, memory stays
//! far below the run's size, and a cut or poisoned shard is named with its layer.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Rng;
use probelab::data::{Dataset, OnBadRows};
use probelab::extract::acts::{self, ActsMeta, StoreAs};
use probelab::extract::import::{self, ImportOptions, Manifest, ShardEntry};
use probelab::extract::layers::{FileLayers, LayerSource, Layers};
use probelab::extract::{Activations, Pooling};
use probelab::probe::analysis::{AnalysisOptions, SplitSpec};
use probelab::run;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("probelab-stream-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Noise with the targets planted in the first two dimensions of layer `peak` (weaker at its
/// neighbours); `seed` tells the model from its random-init twin.
fn planted(ds: &Dataset, layers: usize, d: usize, peak: usize, seed: u64) -> Activations {
    let n = ds.len();
    let mut rng = Rng(seed);
    let mut data = vec![0f32; (layers + 1) * n * d];
    for l in 0..=layers {
        let w = 1.0 / (1.0 + (l as f32 - peak as f32).abs());
        for e in 0..n {
            for j in 0..d {
                let mut x = rng.next_f32();
                if j < 2 && seed == 1 {
                    x += w * ds.targets[e][j] as f32 / 30.0;
                }
                data[(l * n + e) * d + j] = x;
            }
        }
    }
    Activations {
        n_layers: layers,
        n_entities: n,
        d_model: d,
        data,
        tokens_per_entity: (0..n as u32).map(|i| 1 + i % 3).collect(),
        first_token_ids: (0..n as u32).map(|i| 100 + i % 37).collect(),
    }
}

fn meta_of(ds: &Dataset) -> ActsMeta {
    ActsMeta::new(
        "planted",
        &"cd".repeat(32),
        "{name}",
        Pooling::Last,
        &ds.name,
        ds.names.clone(),
    )
}

/// `a` as Probelab shards cut at `cuts`, with their manifest, in `dir`.
fn write_shards(dir: &Path, a: &Activations, m: &ActsMeta, cuts: &[usize], store: StoreAs) {
    let d = a.d_model;
    let mut shards = Vec::new();
    for w in cuts.windows(2) {
        let r = w[0]..w[1];
        let mut data = Vec::new();
        for l in 0..=a.n_layers {
            data.extend_from_slice(&a.layer(l)[r.start * d..r.end * d]);
        }
        let part = Activations {
            n_layers: a.n_layers,
            n_entities: r.len(),
            d_model: d,
            data,
            tokens_per_entity: a.tokens_per_entity[r.clone()].to_vec(),
            first_token_ids: a.first_token_ids[r.clone()].to_vec(),
        };
        let pmeta = ActsMeta::new(
            &m.model_name,
            &m.model_sha256,
            &m.prompt_template,
            m.pooling,
            &m.dataset_name,
            m.names[r.clone()].to_vec(),
        );
        let file = format!("shard-{:05}.safetensors", r.start);
        std::fs::write(
            dir.join(&file),
            acts::to_safetensors(&part, &pmeta, store).unwrap(),
        )
        .unwrap();
        shards.push(ShardEntry {
            file,
            start: r.start,
            end: r.end,
        });
    }
    let manifest = Manifest {
        n_entities: a.n_entities,
        shards,
        tool: Some("test".into()),
        dataset_name: Some(m.dataset_name.clone()),
    };
    std::fs::write(
        dir.join(import::MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
}

fn opts() -> AnalysisOptions {
    AnalysisOptions {
        n_permutations: 20,
        ..AnalysisOptions::default()
    }
}

fn split() -> SplitSpec {
    SplitSpec::Random {
        test_fraction: 0.2,
        seed: 3,
    }
}

/// The report as JSON without the notes on where the activations came from (the in-memory
/// fit is told none).
fn comparable(r: &probelab::probe::Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    let notes = v["notes"].as_object_mut().unwrap();
    notes.retain(|k, _| !k.starts_with("activations."));
    v
}

fn file_layers(l: &Layers) -> &FileLayers {
    match l {
        Layers::Files(f) => f,
        Layers::Memory(_) => panic!("Probelab shards should be read layer by layer"),
    }
}

#[test]
fn a_streamed_fit_equals_the_in_memory_fit_and_reads_one_layer_at_a_time() {
    let ds = probelab::data::load_builtin("world-places-200").unwrap();
    let (layers, d) = (6, 24);
    let real = planted(&ds, layers, d, 4, 1);
    let random = planted(&ds, layers, d, 4, 2);
    let meta = meta_of(&ds);
    let dir = tmp("equal");
    let (rd, dd) = (dir.join("real"), dir.join("random"));
    std::fs::create_dir_all(&rd).unwrap();
    std::fs::create_dir_all(&dd).unwrap();
    write_shards(&rd, &real, &meta, &[0, 70, 71, 150, 200], StoreAs::F32);
    write_shards(&dd, &random, &meta, &[0, 100, 200], StoreAs::F32);

    let whole = run::fit(
        &real,
        &meta,
        Some(&random),
        None,
        &ds,
        &split(),
        &opts(),
        &mut |_, _, _| true,
    )
    .unwrap();
    assert_eq!(whole.selected.layer, 4, "the planted layer is found");
    let want = comparable(&whole);

    // One layer in flight and one per core: the same report, to the last bit.
    for in_flight in [1, 0] {
        let opened = import::open_run(&rd, Some(&dd), &ImportOptions::default()).unwrap();
        let mut times = Vec::new();
        let streamed = run::fit_opened(
            &opened,
            &ds,
            &split(),
            &opts(),
            in_flight,
            &mut |_, _, _| true,
            &mut |t| times.push(t),
        )
        .unwrap();
        assert_eq!(
            comparable(&streamed),
            want,
            "in_flight {in_flight}: streamed and in-memory reports differ"
        );
        assert!(streamed.notes["activations.source"].contains("4 probelab shards"));
        times.sort_by_key(|t| t.layer);
        assert_eq!(
            times.iter().map(|t| t.layer).collect::<Vec<_>>(),
            (0..=layers).collect::<Vec<_>>()
        );
        assert!(times.iter().all(|t| t.read_s >= 0.0 && t.fit_s > 0.0));
        // Every read is exactly one layer of every shard: the check pass, the fit, and the
        // selected layer again for the learning curves.
        for l in [
            &opened.real.layers,
            &opened.random_init.as_ref().unwrap().layers,
        ] {
            let s = file_layers(l).stats();
            assert_eq!(s.layers_read, 2 * (layers as u64 + 1) + 1);
            assert_eq!(s.bytes_read, s.layers_read * (200 * d * 4) as u64);
        }
    }
}

/// The process's own peak (VmHWM) as `probelab fit` prints it.
fn printed_peak_mib(stderr: &str) -> f64 {
    let at = stderr
        .find("peak memory (VmHWM) ")
        .unwrap_or_else(|| panic!("no peak memory printed:\n{stderr}"));
    stderr[at + 20..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable peak:\n{stderr}"))
}

/// Runs `probelab fit` on the shard directories `real` and `random` of `places.csv` in `dir`
/// with 2 layers in flight; its stderr.
fn fit_cli(dir: &Path, real: &Path, random: &Path, out: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_probelab"))
        .arg("fit")
        .arg(real)
        .arg("--random-init")
        .arg(random)
        .arg("--dataset")
        .arg(dir.join("places.csv"))
        .args(["--permutations", "5", "--layers-in-flight", "2", "--out"])
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    stderr
}

#[test]
fn probelab_fit_memory_does_not_grow_with_the_layers() {
    // 2,000 entities × 64 layers × 256 dims, and its random-init twin: 250 MiB of f32 in
    // memory (f16 on disk). The same entities with 2 layers give the fit's own state (its
    // plan, the name baselines, two layers in flight); 62 layers more must add far less than
    // the 242 MiB they would add in memory.
    let (n, layers, d) = (2000, 63, 256);
    let mut csv = String::from("name,latitude,longitude\n");
    let mut rng = Rng(5);
    for i in 0..n {
        let (lat, lon) = (rng.next_f32() * 60.0, rng.next_f32() * 170.0);
        csv.push_str(&format!("place {i},{lat},{lon}\n"));
    }
    let dir = tmp("rss");
    std::fs::write(dir.join("places.csv"), &csv).unwrap();
    let (ds, _) =
        probelab::data::read_dataset_csv("places", csv.as_bytes(), OnBadRows::Stop).unwrap();
    let meta = meta_of(&ds);
    let cuts = [0, 500, 1000, 1500, 2000];
    let mut peaks = Vec::new();
    for l in [1, layers] {
        let (rd, dd) = (dir.join(format!("real{l}")), dir.join(format!("random{l}")));
        std::fs::create_dir_all(&rd).unwrap();
        std::fs::create_dir_all(&dd).unwrap();
        write_shards(
            &rd,
            &planted(&ds, l, d, l * 2 / 3, 1),
            &meta,
            &cuts,
            StoreAs::F16,
        );
        write_shards(&dd, &planted(&ds, l, d, 0, 2), &meta, &cuts, StoreAs::F16);
        let out = dir.join(format!("out{l}"));
        let stderr = fit_cli(&dir, &rd, &dd, &out);
        for at in [0, l] {
            assert!(
                stderr.contains(&format!("layer {at:>3}: read ")),
                "no time for layer {at}:\n{stderr}"
            );
        }
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(report["layers"].as_array().unwrap().len(), l + 1);
        peaks.push((printed_peak_mib(&stderr), stderr));
    }
    let mib = |layers: usize| (2 * (layers + 1) * n * d * 4) as f64 / (1 << 20) as f64;
    let added_in_memory = mib(layers) - mib(1);
    let added = peaks[1].0 - peaks[0].0;
    assert!(
        added < added_in_memory / 4.0,
        "the peak grew by {added:.0} MiB from 2 to {} layers (in memory: {added_in_memory:.0} \
         MiB):\n{}\n{}",
        layers + 1,
        peaks[0].1,
        peaks[1].1
    );
}

#[test]
fn a_cut_or_poisoned_shard_is_named_with_its_layer() {
    let ds = probelab::data::load_builtin("world-places-200").unwrap();
    let (layers, d) = (5, 8);
    let mut real = planted(&ds, layers, d, 3, 1);
    let meta = meta_of(&ds);
    let dir = tmp("cut");
    write_shards(&dir, &real, &meta, &[0, 100, 200], StoreAs::F32);
    let shard = dir.join("shard-00100.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    // The activations end 2 × 200 × 4 bytes of token tables before the file's end; a layer of
    // this shard is 100 × 8 × 4 bytes. Cut halfway through layer 3.
    let layer_bytes = 100 * d * 4;
    let acts_start = bytes.len() - 2 * 100 * 4 - (layers + 1) * layer_bytes;
    let cut = acts_start + 3 * layer_bytes + layer_bytes / 2;
    std::fs::write(&shard, &bytes[..cut]).unwrap();
    let e = import::open(&dir, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shard-00100.safetensors")
            && e.contains("cut short")
            && e.contains("inside layer 3 of 0..=5"),
        "{e}"
    );
    // Cut inside its token tables, after every layer.
    std::fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();
    let e = import::open(&dir, &ImportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("shard-00100.safetensors") && e.contains("token tables"),
        "{e}"
    );
    // Cut after the fit opened it: the read of the first layer it lacks says which.
    std::fs::write(&shard, &bytes).unwrap();
    let opened = import::open(&dir, &ImportOptions::default()).unwrap();
    std::fs::write(&shard, &bytes[..cut]).unwrap();
    assert!(opened.layers.layer(2).is_ok());
    let e = opened.layers.layer(3).unwrap_err().to_string();
    assert!(
        e.contains("shard-00100.safetensors") && e.contains("cannot read layer 3"),
        "{e}"
    );
    // A NaN in the second shard: named by layer and by its entity in the whole list, before
    // any layer is fitted.
    real.data[(4 * 200 + 130) * d + 5] = f32::NAN;
    write_shards(&dir, &real, &meta, &[0, 100, 200], StoreAs::F32);
    let opened = import::open_run(&dir, None, &ImportOptions::default()).unwrap();
    let mut fitted = 0;
    let e = run::fit_opened(
        &opened,
        &ds,
        &split(),
        &opts(),
        0,
        &mut |_, _, _| true,
        &mut |_| fitted += 1,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("layer 4") && e.contains("entity 131") && e.contains(&ds.names[130]),
        "{e}"
    );
    assert_eq!(
        fitted, 0,
        "no layer is fitted before the check finds the NaN"
    );
}
