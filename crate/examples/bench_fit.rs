//! Timing of the full analysis (every control) on random activations with a planted signal.
//! Not a test; prints figures.
//!
//!     cargo run --release -p probelab --example bench_fit              # (a) SmolLM2-135M size
//!     cargo run --release -p probelab --example bench_fit -- llama 1   # (b) Llama-2-7B size, 1 layer
//!     cargo run --release -p probelab --example bench_fit -- names 30  # (c) the names' cost
//!
//! (a) 5,000 entities × 576 dims × 31 layers (30 blocks + embeddings), random-init activations,
//!     first-token control, n-gram baseline, neuron check, 100 shuffles, 5 validation folds.
//! (b) 20,000 entities × 4,096 dims × 33 layers; layers are generated one at a time from a seed
//!     and never held together. The argument says how many layers to time (default 1); the
//!     figure for all 33 is extrapolated. `llama 1 norandom` skips the random-init model.
//!
//! (c) The 6,000 real names of `world-places` × 576 dims × 31 layers, every control: the whole
//!     analysis with the gain over the names, the nearest-names baseline and the learning curves
//!     and online code off, on, off.
//!
//! Peak memory is the process's VmHWM from /proc/self/status (Linux).

use std::collections::BTreeMap;
use std::time::Instant;

use probelab::data::{Dataset, TargetKind};
use probelab::extract::{Activations, Pooling};
use probelab::probe::analysis::{
    Analysis, AnalysisOptions, ControlInputs, ReportContext, SplitSpec,
};
use probelab::probe::analyze;
use probelab::probe::split::SplitMix64;

fn vm_hwm_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

struct Gen(SplitMix64);

impl Gen {
    fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Fast approximate normal (sum of 4 uniforms, rescaled): plenty for timing.
    fn normal(&mut self) -> f32 {
        let s: f64 = (0..4).map(|_| self.uniform()).sum::<f64>() - 2.0;
        (s * 3f64.sqrt()) as f32
    }
}

fn dataset(n: usize) -> Dataset {
    let mut g = Gen(SplitMix64::new(1));
    let continents = [
        "Africa",
        "Americas",
        "Asia",
        "Europe",
        "Oceania",
        "Antarctica",
    ];
    let mut names = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    let mut cont = Vec::with_capacity(n);
    for i in 0..n {
        let name: String = (0..8)
            .map(|_| (b'a' + (g.uniform() * 26.0) as u8) as char)
            .collect();
        names.push(format!("{name}{i}"));
        let (lat, lon) = (g.uniform() * 140.0 - 60.0, g.uniform() * 360.0 - 180.0);
        targets.push(vec![lat, lon]);
        cont.push(continents[(i * 7) % 6].to_string());
    }
    let mut groups = BTreeMap::new();
    groups.insert("continent".to_string(), cont);
    Dataset {
        name: "bench".into(),
        kind: TargetKind::Space,
        names,
        targets,
        groups,
        is_test: None,
    }
}

/// One layer: 16 shared factors + noise (correlated like residual streams); the planted layer
/// adds a linear image of (lat, lon) growing towards `signal_layer`.
fn layer(ds: &Dataset, d: usize, l: usize, signal_layer: usize, seed: u64) -> Vec<f32> {
    let n = ds.len();
    let mut g = Gen(SplitMix64::new(
        seed ^ (l as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    ));
    let f = 16;
    let load: Vec<f32> = (0..f * d).map(|_| g.normal()).collect();
    let w: Vec<f32> = (0..2 * d).map(|_| g.normal()).collect();
    let strength = if l == 0 {
        0.0
    } else {
        0.6 * (-((l as f64 - signal_layer as f64).abs()) / 4.0).exp() as f32
    };
    let mut x = vec![0f32; n * d];
    let mut fac = vec![0f32; f];
    for i in 0..n {
        fac.iter_mut().for_each(|v| *v = g.normal());
        let (lat, lon) = (
            ds.targets[i][0] as f32 / 40.0,
            ds.targets[i][1] as f32 / 100.0,
        );
        let row = &mut x[i * d..(i + 1) * d];
        for (j, v) in row.iter_mut().enumerate() {
            let mut s = g.normal();
            for q in 0..f {
                s += 0.5 * fac[q] * load[q * d + j];
            }
            *v = s + strength * (lat * w[j] + lon * w[d + j]);
        }
    }
    x
}

fn run(n: usize, d: usize, n_layers: usize, layers_to_time: usize, random_init: bool, ngram: bool) {
    let ds = dataset(n);
    let mut g = Gen(SplitMix64::new(5));
    let tokens: Vec<u32> = (0..n).map(|_| (g.uniform() * 3000.0) as u32).collect();
    let opts = AnalysisOptions {
        ngram_buckets: if ngram { 1 << 10 } else { 0 },
        ..AnalysisOptions::default()
    };
    let split = SplitSpec::Random {
        test_fraction: 0.2,
        seed: 0,
    };
    let t0 = Instant::now();
    let analysis = Analysis::new(&ds, &split, &opts, &tokens, n_layers, d, random_init).unwrap();
    let t_new = t0.elapsed().as_secs_f64();
    let signal = (n_layers * 2) / 3;
    let (mut t_layers, mut t_gen) = (0.0, 0.0);
    let mut outcomes = Vec::new();
    let timed = layers_to_time.min(n_layers + 1);
    for l in 0..timed {
        let tg = Instant::now();
        let x = layer(&ds, d, l, signal, 11);
        let r = random_init.then(|| layer(&ds, d, l, usize::MAX / 2, 99));
        t_gen += tg.elapsed().as_secs_f64();
        let t = Instant::now();
        outcomes.push(analysis.layer(l, &x, r.as_deref()).unwrap());
        let dt = t.elapsed().as_secs_f64();
        t_layers += dt;
        eprintln!("  layer {l:>2}: {dt:.2} s");
    }
    println!(
        "n={n} d={d} layers={} ({timed} timed) shuffles={} folds={} random_init={random_init}",
        n_layers + 1,
        opts.n_permutations,
        opts.validation_folds
    );
    println!("  prepare (splits, shuffles, control task): {t_new:.3} s");
    println!(
        "  per layer: {:.3} s (mean of {timed}); data generation (not counted) {t_gen:.1} s",
        t_layers / timed as f64
    );
    if timed == n_layers + 1 {
        let t = Instant::now();
        let ctx = ReportContext {
            model_name: "bench".into(),
            model_sha256: "0".repeat(64),
            prompt_template: "{name}".into(),
            pooling: Pooling::Last,
            dataset_name: "bench".into(),
        };
        let report = analysis.finish(&ctx, outcomes).unwrap();
        let t_finish = t.elapsed().as_secs_f64();
        let json = serde_json::to_string(&report).unwrap();
        println!("  finish (selection, p-values, metrics, n-gram baseline): {t_finish:.3} s");
        println!(
            "  TOTAL analysis: {:.2} s   (report.json {:.1} MB)",
            t_new + t_layers + t_finish,
            json.len() as f64 / 1e6
        );
        let s = &report.selected;
        println!(
            "  selected layer {} (planted peak {signal}), r2_test {:.3}, p {:?}, selectivity {:?}, \
             random_init_r2 {:?}, layer0 {:.3}, ngram {:?}",
            s.layer,
            s.r2_test,
            s.p_value,
            s.selectivity,
            s.random_init_r2,
            report.baselines.layer0_r2_test,
            report.baselines.ngram_r2_test
        );
        // The same work through `analyze()`, which fits layers on every core natively.
        let gen_all = |signal_layer: usize, seed: u64| -> Activations {
            let mut data = Vec::with_capacity((n_layers + 1) * n * d);
            for l in 0..=n_layers {
                data.extend(layer(&ds, d, l, signal_layer, seed));
            }
            Activations {
                n_layers,
                n_entities: n,
                d_model: d,
                data,
                tokens_per_entity: vec![1; n],
                first_token_ids: tokens.clone(),
            }
        };
        let acts = gen_all(signal, 11);
        let random = random_init.then(|| gen_all(usize::MAX / 2, 99));
        let controls = ControlInputs {
            first_token_ids: tokens.clone(),
            random_init: random.as_ref(),
            name_surprisal: None,
        };
        let t = Instant::now();
        analyze(
            &acts,
            &ds,
            &split,
            &opts,
            &controls,
            &ctx,
            &mut |_, _, _| true,
        )
        .unwrap();
        println!(
            "  TOTAL analyze() with layers on {} threads: {:.2} s",
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            t.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "  extrapolated to all {} layers: {:.0} s ({:.1} min), plus finish",
            n_layers + 1,
            t_new + t_layers / timed as f64 * (n_layers + 1) as f64,
            (t_new + t_layers / timed as f64 * (n_layers + 1) as f64) / 60.0
        );
    }
    if let Some(m) = vm_hwm_mib() {
        println!("  peak memory (VmHWM): {m:.0} MiB");
    }
}

/// (c) What the name baselines and the learning step cost: `analyze()` on the 6,000 real place
/// names of `world-places` (synthetic activations, every control), with the gain over the
/// names, the nearest-names baseline, the learning curves and the online code off, on, off, in
/// the same process. The budget is ≤ 50%.
fn names_cost(n_layers: usize) {
    let ds = probelab::data::load_builtin("world-places").unwrap();
    let (n, d) = (ds.len(), 576);
    let mut g = Gen(SplitMix64::new(5));
    let tokens: Vec<u32> = (0..n).map(|_| (g.uniform() * 3000.0) as u32).collect();
    let gen_all = |signal_layer: usize, seed: u64| -> Activations {
        let mut data = Vec::with_capacity((n_layers + 1) * n * d);
        for l in 0..=n_layers {
            data.extend(layer(&ds, d, l, signal_layer, seed));
        }
        Activations {
            n_layers,
            n_entities: n,
            d_model: d,
            data,
            tokens_per_entity: vec![1; n],
            first_token_ids: tokens.clone(),
        }
    };
    let acts = gen_all((n_layers * 2) / 3, 11);
    let random = gen_all(usize::MAX / 2, 99);
    let controls = ControlInputs {
        first_token_ids: tokens.clone(),
        random_init: Some(&random),
        name_surprisal: None,
    };
    let ctx = ReportContext {
        model_name: "bench".into(),
        model_sha256: "0".repeat(64),
        prompt_template: "{name}".into(),
        pooling: Pooling::Last,
        dataset_name: "world-places".into(),
    };
    let split = SplitSpec::Random {
        test_fraction: 0.2,
        seed: 0,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "(c) world-places names: n={n} d={d} layers={} on {threads} threads, every control",
        n_layers + 1
    );
    let time = |opts: &AnalysisOptions| {
        let t = Instant::now();
        let r = analyze(&acts, &ds, &split, opts, &controls, &ctx, &mut |_, _, _| {
            true
        })
        .unwrap();
        (t.elapsed().as_secs_f64(), r)
    };
    let off = AnalysisOptions {
        gain_over_names: false,
        knn_neighbours: vec![],
        learning: false,
        ..AnalysisOptions::default()
    };
    // Off first, each part on, all on, off again: a drift of the shared machine shows as two
    // offs apart.
    let learning_only = AnalysisOptions {
        learning: true,
        ..off.clone()
    };
    let names_on = AnalysisOptions {
        learning: false,
        ..AnalysisOptions::default()
    };
    let (t_off, _) = time(&off);
    let (t_names, _) = time(&names_on);
    let (t_learning, _) = time(&learning_only);
    let (t_on, r) = time(&AnalysisOptions::default());
    let (t_off2, _) = time(&off);
    let base = (t_off + t_off2) / 2.0;
    let pct = |t: f64| 100.0 * (t / base - 1.0);
    println!("  names + learning off: {t_off:.2} s, then {t_off2:.2} s");
    println!(
        "  gain over the names + nearest names on: {t_names:.2} s, {:+.0}%",
        pct(t_names)
    );
    println!(
        "  learning curves + online code on:       {t_learning:.2} s, {:+.0}%",
        pct(t_learning)
    );
    println!(
        "  all on:                                 {t_on:.2} s, {:+.0}% over the mean of the offs",
        pct(t_on)
    );
    let (b, s) = (&r.baselines, &r.selected);
    println!(
        "  n-gram R² {:?}, nearest names R² {:?} (k = {:?}), selected layer {} R² {:.3}, gain \
         over the names {:?} (p {:?})",
        b.ngram_r2_test,
        b.knn_r2_test,
        b.knn_neighbours,
        s.layer,
        s.r2_test,
        s.gain_over_names,
        s.gain_p_value
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("llama") => {
            let k = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1);
            let random = !args.iter().any(|a| a == "norandom");
            println!("(b) Llama-2-7B size");
            run(20_000, 4096, 32, k, random, false);
        }
        Some("names") => {
            let l = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(30);
            names_cost(l);
        }
        Some("custom") => {
            // custom N D LAYERS
            let p = |i: usize, d: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
            let (n, d, l) = (p(1, 5000), p(2, 576), p(3, 30));
            run(n, d, l, l + 1, true, true);
        }
        _ => {
            println!("(a) SmolLM2-135M size");
            run(5_000, 576, 30, 31, true, true);
        }
    }
}
