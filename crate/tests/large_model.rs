//! A file with Llama-2-7B's shapes past the browser's old 2 GiB limit, on the command line:
//! 10 blocks in Q8_0 (d_model 4096, 32 heads, ffn 11008, a 32,000-piece SentencePiece
//! vocabulary; 2.4 GB), written by `probelab synth-model`.
//!
//! - The CPU engine extracts it in memory bounded by the file's size + 1.5 GiB, both exactly
//!   (f32) and on the quantized blocks, and the two agree as closely as 8-bit activations allow.
//! - The GPU engine (lavapipe on machines without a GPU) equals the exact CPU path. Its weights
//!   stream from the file to the GPU, so the CPU never holds them and the same bound holds even
//!   where the device's buffers are host memory; the file's hash is taken on the way.
//! - A cut copy fails on both engines at the tensor the cut falls in, found here from the intact
//!   header.
//!
//! One test, step after step: the steps share the file, and run one at a time so that no two
//! copies of the model are in memory together.

mod common;

use std::path::{Path, PathBuf};

use probelab::extract::acts::{self, ActsMeta};
use probelab::extract::Activations;
use probelab::model::gguf::ModelFile;

const NAMES: &str = "name\nParis\nTokyo\nBuenos Aires\nNairobi\n";
const GIB: f64 = (1u64 << 30) as f64;

fn run(args: &[&str]) -> String {
    let (code, stderr) = common::probelab(args);
    assert_eq!(code, 0, "probelab {}: {stderr}", args.join(" "));
    stderr
}

/// Extracts the names; the activations with their metadata, the process's peak memory in
/// bytes, and what it printed.
fn extract(
    dir: &Path,
    model: &Path,
    engine: &str,
    matmul: &str,
) -> (Activations, ActsMeta, f64, String) {
    let out = dir.join(format!("acts_{engine}_{matmul}.safetensors"));
    let stderr = run(&[
        "extract",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        dir.join("names.csv").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--engine",
        engine,
        "--matmul",
        matmul,
    ]);
    eprintln!("{engine} / {matmul}: {}", stderr.trim());
    let peak_mib: f64 = stderr
        .split("peak memory (VmHWM) ")
        .nth(1)
        .and_then(|s| s.split(" MiB").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no peak memory in: {stderr}"));
    let (a, meta) = acts::from_safetensors(&std::fs::read(&out).unwrap()).unwrap();
    (a, meta, peak_mib * (1u64 << 20) as f64, stderr)
}

/// The largest relative difference of one vector (a layer, an entity) from `want`'s.
fn worst_vector_diff(got: &Activations, want: &Activations) -> f64 {
    assert_eq!(got.data.len(), want.data.len());
    got.data
        .chunks(want.d_model)
        .zip(want.data.chunks(want.d_model))
        .map(|(g, w)| common::rel_diff(g, w))
        .fold(0.0, f64::max)
}

/// A scratch folder removed however the test ends: it holds gigabytes.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_7b_shaped_file_on_the_command_line() {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("probelab-large-{}", std::process::id())));
    let dir = scratch.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("names.csv"), NAMES).unwrap();
    let model: PathBuf = dir.join("llama2-7b-shaped-10-blocks-q8_0.gguf");
    let vocab = common::fixture("spm32k_vocab.json");
    run(&[
        "synth-model",
        "--vocab",
        vocab.to_str().unwrap(),
        "--layers",
        "10",
        "--quant",
        "q8_0",
        "--out",
        model.to_str().unwrap(),
    ]);
    let size = std::fs::metadata(&model).unwrap().len() as f64;
    assert!(
        size > 2.0 * GIB,
        "the file must pass the old limit: {size} bytes"
    );
    let bound = size + 1.5 * GIB;

    // CPU, exact and quantized, in bounded memory.
    let (exact, exact_meta, exact_peak, _) = extract(&dir, &model, "cpu", "exact");
    let (quant, _, quant_peak, _) = extract(&dir, &model, "cpu", "quantized");
    for (what, peak) in [("exact", exact_peak), ("quantized", quant_peak)] {
        eprintln!(
            "CPU {what}: peak {:.2} GiB for a {:.2} GiB file (bound {:.2} GiB)",
            peak / GIB,
            size / GIB,
            bound / GIB
        );
        assert!(peak <= bound, "CPU {what}: peak {peak} bytes over {bound}");
    }
    assert_eq!(
        (exact.n_layers, exact.n_entities, exact.d_model),
        (10, 4, 4096)
    );
    assert!(exact.data.iter().all(|v| v.is_finite()));
    let q_diff = worst_vector_diff(&quant, &exact);
    eprintln!("quantized against exact: worst vector {q_diff:.2e} relative");
    assert!(
        q_diff > 0.0 && q_diff < 5e-2,
        "8-bit activations should move the vectors a little: {q_diff}"
    );

    // The GPU engine reads the same blocks and multiplies in f32. Its weights stream from the
    // file to the GPU (the CPU model is never loaded), and the file's hash is taken on the way.
    let (gpu, gpu_meta, gpu_peak, gpu_said) = extract(&dir, &model, "gpu", "exact");
    let g_diff = worst_vector_diff(&gpu, &exact);
    eprintln!(
        "GPU against exact CPU: worst vector {g_diff:.2e} relative; peak {:.2} GiB \
         (on a software adapter the device's buffers are host memory too)",
        gpu_peak / GIB
    );
    assert!(g_diff <= 1e-4, "GPU differs from the CPU by {g_diff}");
    assert!(gpu_said.contains("the CPU holds none"), "{gpu_said}");
    // Even where the device's buffers are host memory, there is one copy of the weights.
    assert!(gpu_peak <= bound, "GPU: peak {gpu_peak} bytes over {bound}");
    assert_eq!(gpu_meta.model_sha256, exact_meta.model_sha256);

    // A cut a third of the way into the file falls inside one tensor: find it from the
    // intact header and check the error names it (and nothing is computed).
    let cut_at = (size / 3.0) as u64;
    let header = ModelFile::read(&mut std::io::BufReader::new(
        std::fs::File::open(&model).unwrap(),
    ))
    .unwrap();
    let data_start = header.content.tensor_data_offset;
    let cut_tensor = header
        .content
        .tensor_infos
        .iter()
        .find(|(_, t)| {
            let start = data_start + t.offset;
            let bytes = t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size();
            start < cut_at && cut_at < start + bytes as u64
        })
        .map(|(name, _)| name.clone())
        .expect("the cut falls inside a tensor");
    let cut = dir.join("cut.gguf");
    {
        use std::io::{Read, Write};
        let mut src = std::fs::File::open(&model).unwrap().take(cut_at);
        let mut dst = std::fs::File::create(&cut).unwrap();
        std::io::copy(&mut src, &mut dst).unwrap();
        dst.flush().unwrap();
    }
    std::fs::remove_file(&model).unwrap();
    // Both engines read the header first, so both name the cut before any weight is read.
    for engine in ["cpu", "gpu"] {
        let (code, stderr) = common::probelab(&[
            "extract",
            "--model",
            cut.to_str().unwrap(),
            "--dataset",
            dir.join("names.csv").to_str().unwrap(),
            "--out",
            dir.join("never.safetensors").to_str().unwrap(),
            "--engine",
            engine,
        ]);
        eprintln!("{engine}, cut at byte {cut_at}: {}", stderr.trim());
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&format!("tensor '{cut_tensor}'")) && stderr.contains("truncated"),
            "the error should name {cut_tensor}: {stderr}"
        );
        assert!(!dir.join("never.safetensors").exists());
    }
}
