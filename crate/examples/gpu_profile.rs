//! Where a GPU batch spends its time, and the CPU path on the same workload.
//!
//! ```sh
//! cargo run --release --example gpu_profile -- [MODEL.gguf] [--entities N] [--batch N] [--template T]
//! ```
//!
//! Prints the adapter, dispatches and submissions per batch, a per-kernel time split (timestamp
//! queries when the adapter has them, else the wall time of each dispatch submitted alone),
//! and tokens per second of CPU and GPU extraction. On a software adapter (lavapipe) the
//! timings say nothing about a real GPU; the split and the dispatch count still hold.

use std::sync::Arc;
use std::time::Instant;

use probelab::extract::{self, ExtractOptions, Pooling, Template};
use probelab::gpu::{CaptureSpan, GpuDevice, GpuLlama, GpuOptions};
use probelab::model::gguf::ModelFile;
use probelab::model::load::LoadedModel;
use probelab::model::LoadOptions;
use probelab::Result;

fn main() -> Result<()> {
    let mut model = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/SmolLM2-135M-Instruct.Q4_1.gguf"
    ));
    let (mut n_entities, mut batch) = (64usize, 64usize);
    let mut template = extract::DEFAULT_TEMPLATE.to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--entities" => n_entities = value().parse().expect("a number"),
            "--batch" => batch = value().parse().expect("a number"),
            "--template" => template = value(),
            path => model = path.into(),
        }
    }
    // The built-in world places, numbered once they run out.
    let places = probelab::data::load_builtin("world-places")?.names;
    let names: Vec<String> = (0..n_entities)
        .map(|i| match i / places.len() {
            0 => places[i].clone(),
            k => format!("{} {k}", places[i % places.len()]),
        })
        .collect();

    let m = LoadedModel::open(&model, &LoadOptions::default())?;
    let c = m.model.config.clone();
    let entities = extract::tokenize_entities(
        &m.tokenizer,
        &names,
        &Template::new(&template)?,
        c.context_length,
    )?;
    let tokens: usize = entities.iter().map(|e| e.ids.len()).sum();
    println!(
        "model {} ({} blocks, d {}), {} entities, {} tokens, template '{template}'",
        c.name,
        c.n_layers,
        c.d_model,
        entities.len(),
        tokens
    );

    let engine = Arc::new(GpuDevice::new()?);
    let report = engine.report().clone();
    println!(
        "adapter: {report}; driver {}; timestamp queries: {}",
        report.driver, report.timestamp_queries
    );
    let mut r = std::io::BufReader::new(
        std::fs::File::open(&model)
            .map_err(|e| probelab::Error::io(model.display().to_string(), e))?,
    );
    let file = ModelFile::read(&mut r)?;
    let t0 = Instant::now();
    let gpu = GpuLlama::load(&file, &mut r, engine, &GpuOptions::default())?;
    println!("GPU upload: {:.2}s", t0.elapsed().as_secs_f64());

    // One batch, profiled kernel by kernel.
    let first: Vec<usize> = (0..batch.min(entities.len())).collect();
    let seqs: Vec<&[u32]> = first.iter().map(|&i| &entities[i].ids[..]).collect();
    let caps: Vec<CaptureSpan> = first
        .iter()
        .enumerate()
        .map(|(seq, &i)| CaptureSpan {
            seq,
            rows: entities[i].span.end - 1..entities[i].span.end,
        })
        .collect();
    gpu.run(&seqs, &caps)?; // warm-up: pipelines compile on first use on some drivers
    let p = gpu.profile(&seqs, &caps)?;
    println!(
        "\none batch: {} sequences, {} tokens; {} dispatches, 1 submission, 1 read-back",
        seqs.len(),
        p.tokens,
        p.dispatches
    );
    println!("per-kernel time ({}):", p.method);
    println!(
        "  {:<22} {:>10} {:>12} {:>7}",
        "kernel", "dispatches", "ms", "share"
    );
    let total = p.total_seconds();
    for (name, n, secs) in &p.kernels {
        println!(
            "  {:<22} {:>10} {:>12.3} {:>6.1}%",
            name,
            n,
            secs * 1e3,
            100.0 * secs / total
        );
    }
    println!(
        "  {:<22} {:>10} {:>12.3}",
        "total",
        p.dispatches,
        total * 1e3
    );

    // The whole workload on both engines, same batching.
    let opts = ExtractOptions {
        pooling: Pooling::Last,
        batch_size: batch,
    };
    let t0 = Instant::now();
    let cpu_acts = extract::extract(&m.model, &entities, &opts, &mut |_, _, _| true)?;
    let cpu_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let gpu_acts = extract::extract(&gpu, &entities, &opts, &mut |_, _, _| true)?;
    let gpu_s = t0.elapsed().as_secs_f64();
    let worst = (0..=c.n_layers)
        .flat_map(|l| (0..entities.len()).map(move |e| (l, e)))
        .map(|(l, e)| {
            let (a, b) = (gpu_acts.vector(l, e), cpu_acts.vector(l, e));
            let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
            let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
            (num / den.max(1e-30)).sqrt()
        })
        .fold(0f64, f64::max);
    println!(
        "\nextraction of {} entities in batches of {batch}:",
        entities.len()
    );
    println!(
        "  CPU (candle): {:>8.2}s {:>10.0} tokens/s",
        cpu_s,
        tokens as f64 / cpu_s
    );
    println!(
        "  GPU (wgpu):   {:>8.2}s {:>10.0} tokens/s   on {}",
        gpu_s,
        tokens as f64 / gpu_s,
        report.name
    );
    println!("  largest relative difference GPU vs CPU over all layers: {worst:.2e}");
    Ok(())
}
