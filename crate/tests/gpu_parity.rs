//! The GPU engine against the CPU path: every layer, every token, the default model and small
//! GGUFs in every quant type; packing invariance; weight splitting; each quantized matmul
//! kernel against candle's dequantize + matmul.
//!
//! Runs on any wgpu adapter; on machines without a GPU, Mesa's lavapipe (software Vulkan,
//! `apt-get install mesa-vulkan-drivers libvulkan1`). Only when no adapter exists at all do the
//! tests skip, loudly.

mod common;

use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::*;
use probelab::extract::{self, ExtractOptions, Pooling, Template};
use probelab::gpu::{self, CaptureSpan, GpuDevice, GpuLlama, GpuOptions, GpuStream};
use probelab::model::gguf::ModelFile;
use probelab::model::load::LoadedModel;
use probelab::model::{to_flat, Llama, LoadOptions};

/// Cosine ≥ this and relative error ≤ [`MAX_REL`] at every layer, every compared vector.
const MIN_COS: f64 = 0.9999;
const MAX_REL: f64 = 1e-3;

fn engine() -> Option<Arc<GpuDevice>> {
    static ENGINE: OnceLock<Option<Arc<GpuDevice>>> = OnceLock::new();
    ENGINE
        .get_or_init(|| match GpuDevice::new() {
            Ok(e) => {
                eprintln!("GPU adapter: {} [{}]", e.report(), e.report().driver);
                Some(Arc::new(e))
            }
            Err(e) => {
                eprintln!(
                    "\n############################################################\n\
                     ### GPU TESTS SKIPPED: no wgpu adapter at all ({e}).\n\
                     ### Install Mesa's lavapipe: apt-get install mesa-vulkan-drivers libvulkan1\n\
                     ############################################################\n"
                );
                None
            }
        })
        .clone()
}

/// The worst agreement seen over many vector pairs, and where.
#[derive(Debug)]
struct Worst {
    cos: f64,
    cos_at: String,
    rel: f64,
    rel_at: String,
    n: usize,
}

impl Worst {
    fn new() -> Self {
        Self {
            cos: 1.0,
            cos_at: String::new(),
            rel: 0.0,
            rel_at: String::new(),
            n: 0,
        }
    }

    fn add(&mut self, got: &[f32], want: &[f32], at: impl Fn() -> String) {
        assert_eq!(got.len(), want.len());
        assert!(
            got.iter().all(|v| v.is_finite()),
            "non-finite GPU value at {}",
            at()
        );
        let (c, r) = (cosine(got, want), rel_diff(got, want));
        if c < self.cos {
            self.cos = c;
            self.cos_at = at();
        }
        if r > self.rel {
            self.rel = r;
            self.rel_at = at();
        }
        self.n += 1;
    }

    fn check(&self, what: &str) {
        eprintln!(
            "{what}: {} vectors, lowest cosine 1 - {:.1e} ({}), highest relative error {:.2e} ({})",
            self.n,
            1.0 - self.cos,
            self.cos_at,
            self.rel,
            self.rel_at
        );
        assert!(
            self.cos >= MIN_COS && self.rel <= MAX_REL,
            "{what}: GPU and CPU disagree: cosine {:.7} at {}, relative error {:.2e} at {}",
            self.cos,
            self.cos_at,
            self.rel,
            self.rel_at
        );
    }
}

/// Every token row of every sequence at every layer on the CPU, packed sequence after
/// sequence: `[layer][row][d]` flattened per layer.
fn cpu_rows(model: &Llama, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let d = model.config.d_model;
    let len = seqs.iter().map(Vec::len).max().unwrap();
    let mut out = vec![Vec::new(); model.config.n_layers + 1];
    model
        .forward_layers(seqs, |layer, hidden| {
            let flat = to_flat(hidden)?;
            for (b, s) in seqs.iter().enumerate() {
                for t in 0..s.len() {
                    let at = (b * len + t) * d;
                    out[layer].extend_from_slice(&flat[at..at + d]);
                }
            }
            Ok(())
        })
        .unwrap();
    out
}

/// One capture per token of every sequence.
fn all_rows(seqs: &[Vec<u32>]) -> Vec<CaptureSpan> {
    seqs.iter()
        .enumerate()
        .flat_map(|(seq, s)| {
            (0..s.len()).map(move |t| CaptureSpan {
                seq,
                rows: t..t + 1,
            })
        })
        .collect()
}

/// GPU vs CPU at every layer and every token row of `seqs`, all packed into one batch.
fn check_all_rows(what: &str, cpu: &Llama, gpu: &GpuLlama, seqs: &[Vec<u32>]) -> Worst {
    let want = cpu_rows(cpu, seqs);
    let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
    let caps = all_rows(seqs);
    let t0 = std::time::Instant::now();
    let got = gpu.run(&refs, &caps).unwrap();
    eprintln!(
        "{what}: {} sequences, {} tokens, {} dispatches, GPU batch {:.2}s",
        seqs.len(),
        caps.len(),
        gpu.dispatches_per_batch(),
        t0.elapsed().as_secs_f64()
    );
    let d = cpu.config.d_model;
    let mut worst = Worst::new();
    for (layer, rows) in want.iter().enumerate() {
        for (i, cap) in caps.iter().enumerate() {
            worst.add(got.vector(layer, i), &rows[i * d..(i + 1) * d], || {
                format!(
                    "layer {layer}, sequence {} token {}",
                    cap.seq, cap.rows.start
                )
            });
        }
    }
    worst
}

/// The shared place names plus people and events.
fn place_names() -> Vec<String> {
    let mut names = common::place_names();
    names.extend(
        [
            "Abraham Lincoln",
            "the Treaty of Westphalia",
            "Marie Curie",
            "the fall of the Berlin Wall",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    names
}

fn open_pair(bytes: &[u8], engine: Arc<GpuDevice>, opts: &GpuOptions) -> (Llama, GpuLlama) {
    let mut r = Cursor::new(bytes);
    let file = ModelFile::read(&mut r).unwrap();
    let cpu = Llama::load(&file, &mut r, &LoadOptions::default()).unwrap();
    let gpu = GpuLlama::load(&file, &mut r, engine, opts).unwrap();
    (cpu, gpu)
}

fn default_pair(engine: Arc<GpuDevice>) -> (LoadedModel, GpuLlama) {
    let path = default_model();
    let m = LoadedModel::open(&path, &LoadOptions::default()).unwrap();
    let mut r = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let file = ModelFile::read(&mut r).unwrap();
    let t0 = std::time::Instant::now();
    let gpu = GpuLlama::load(&file, &mut r, engine, &GpuOptions::default()).unwrap();
    eprintln!(
        "default model uploaded in {:.2}s",
        t0.elapsed().as_secs_f64()
    );
    (m, gpu)
}

#[test]
fn default_model_matches_the_cpu_at_every_layer() {
    let Some(engine) = engine() else { return };
    let (m, gpu) = default_pair(engine);
    let template = Template::new("In 1900, {name} was").unwrap();
    let names = place_names();
    let entities = extract::tokenize_entities(
        &m.tokenizer,
        &names,
        &template,
        m.model.config.context_length,
    )
    .unwrap();

    // Every token of every prompt, plus one prompt longer than the attention kernel's 64-key
    // chunk, packed into one batch; the same batch also captures each name's mean ("mean" pooling).
    let mut seqs: Vec<Vec<u32>> = entities.iter().map(|e| e.ids.clone()).collect();
    let long: Vec<u32> = entities
        .iter()
        .flat_map(|e| e.ids.iter().copied())
        .take(150)
        .collect();
    seqs.push(long);
    let want = cpu_rows(&m.model, &seqs);
    let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
    let rows = all_rows(&seqs);
    let means: Vec<CaptureSpan> = entities
        .iter()
        .enumerate()
        .map(|(seq, e)| CaptureSpan {
            seq,
            rows: e.span.clone(),
        })
        .collect();
    let caps: Vec<CaptureSpan> = rows.iter().chain(&means).cloned().collect();
    let t0 = std::time::Instant::now();
    let got = gpu.run(&refs, &caps).unwrap();
    eprintln!(
        "default model: {} sequences, {} tokens, {} dispatches, one GPU batch {:.1}s",
        seqs.len(),
        rows.len(),
        gpu.dispatches_per_batch(),
        t0.elapsed().as_secs_f64()
    );
    let d = m.model.config.d_model;
    let n_layers = m.model.config.n_layers;
    let mut worst = Worst::new();
    for (layer, want_rows) in want.iter().enumerate() {
        for (i, cap) in rows.iter().enumerate() {
            worst.add(got.vector(layer, i), &want_rows[i * d..(i + 1) * d], || {
                format!(
                    "layer {layer}, sequence {} token {}",
                    cap.seq, cap.rows.start
                )
            });
        }
    }
    worst.check("default model, every token");

    let mean_opts = ExtractOptions {
        pooling: Pooling::Mean,
        batch_size: 64,
    };
    let want_mean = extract::extract(&m.model, &entities, &mean_opts, &mut |_, _, _| true).unwrap();
    let mut worst = Worst::new();
    for layer in 0..=n_layers {
        for (e, name) in names.iter().enumerate() {
            worst.add(
                got.vector(layer, rows.len() + e),
                want_mean.vector(layer, e),
                || format!("layer {layer}, '{name}'"),
            );
        }
    }
    worst.check("default model, pooling Mean");

    // The entity API (sorting, batching, results in input order) against the CPU extraction.
    let opts = ExtractOptions {
        pooling: Pooling::Last,
        batch_size: 16,
    };
    let want = extract::extract(&m.model, &entities, &opts, &mut |_, _, _| true).unwrap();
    let mut batches = 0;
    let got = extract::extract(&gpu, &entities, &opts, &mut |_, _, _| {
        batches += 1;
        true
    })
    .unwrap();
    assert_eq!(batches, entities.len().div_ceil(16));
    assert_eq!(got.tokens_per_entity, want.tokens_per_entity);
    let mut worst = Worst::new();
    for layer in 0..=n_layers {
        for (e, name) in names.iter().enumerate() {
            worst.add(got.vector(layer, e), want.vector(layer, e), || {
                format!("layer {layer}, '{name}'")
            });
        }
    }
    worst.check("default model, pooling Last via extract()");
}

#[test]
fn every_quant_type_matches_the_cpu_at_every_layer() {
    let Some(engine) = engine() else { return };
    let types = [
        GgmlDType::F32,
        GgmlDType::F16,
        GgmlDType::BF16,
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ];
    let mut rng = Rng(7);
    let seqs: Vec<Vec<u32>> = [1usize, 5, 17, 64, 3, 40, 9]
        .iter()
        .map(|&n| {
            (0..n)
                .map(|_| ((rng.next_f32() + 1.0) * 129.0) as u32 % 259)
                .collect()
        })
        .collect();
    let mut failures = Vec::new();
    for (i, dtype) in types.into_iter().enumerate() {
        let bytes = tiny_llama(dtype, "llama", 100 + i as u64);
        let (cpu, gpu) = open_pair(&bytes, engine.clone(), &GpuOptions::default());
        let what = format!("tiny llama {dtype:?}");
        let worst = check_all_rows(&what, &cpu, &gpu, &seqs);
        if std::panic::catch_unwind(|| worst.check(&what)).is_err() {
            failures.push(what);
        }
    }
    assert!(failures.is_empty(), "failed: {failures:?}");
}

#[test]
fn a_vector_does_not_depend_on_what_it_is_packed_with() {
    let Some(engine) = engine() else { return };
    let bytes = tiny_llama(GgmlDType::Q4_1, "llama", 3);
    let (_, gpu) = open_pair(&bytes, engine, &GpuOptions::default());
    let mut rng = Rng(11);
    let mut seq = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| ((rng.next_f32() + 1.0) * 129.0) as u32 % 259)
            .collect()
    };
    let target = seq(12);
    let others: Vec<Vec<u32>> = [3, 30, 1, 20, 7].iter().map(|&n| seq(n)).collect();
    let cap = |s: usize| CaptureSpan {
        seq: s,
        rows: 4..12,
    };
    let alone = gpu.run(&[&target], &[cap(0)]).unwrap();
    let layouts: Vec<Vec<&[u32]>> = vec![
        vec![&others[0], &target, &others[1]],
        vec![&others[1], &others[2], &others[3], &others[4], &target],
        vec![&target, &others[4], &others[0]],
    ];
    let mut max_diff = 0f32;
    for layout in &layouts {
        let at = layout.iter().position(|s| *s == &target[..]).unwrap();
        let packed = gpu.run(layout, &[cap(at)]).unwrap();
        for layer in 0..=alone.n_layers {
            let (a, b) = (alone.vector(layer, 0), packed.vector(layer, 0));
            for (x, y) in a.iter().zip(b) {
                max_diff = max_diff.max((x - y).abs());
            }
            assert!(
                cosine(a, b) >= 0.999_999 && rel_diff(b, a) <= 1e-6,
                "layer {layer}: the vector changed with its batch neighbours"
            );
        }
    }
    eprintln!("packing invariance: largest difference {max_diff:e} over 3 packings");
}

#[test]
fn split_weights_give_the_same_vectors() {
    let Some(engine) = engine() else { return };
    let bytes = tiny_llama(GgmlDType::Q8_0, "llama", 5);
    let (cpu, whole) = open_pair(&bytes, engine.clone(), &GpuOptions::default());
    // 4 KiB parts: every matrix (and the embedding) splits into many row ranges.
    // 1000-byte reads: several pieces per part (the streamed load's writes into a part).
    let opts = GpuOptions {
        max_part_bytes: Some(4096),
        max_piece_bytes: Some(1000),
    };
    let (_, split) = open_pair(&bytes, engine, &opts);
    assert!(split.dispatches_per_batch() > 3 * whole.dispatches_per_batch());
    let seqs = vec![vec![1u32, 50, 258, 7, 9], vec![200, 3]];
    let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
    let caps = all_rows(&seqs);
    let a = whole.run(&refs, &caps).unwrap();
    let b = split.run(&refs, &caps).unwrap();
    assert_eq!(a.data, b.data, "splitting weights changed the results");
    check_all_rows("tiny llama Q8_0, split weights", &cpu, &split, &seqs)
        .check("tiny llama Q8_0, split weights");
}

/// The browser's streamed load: the header from a prefix, then the planned byte ranges one by
/// one. It gives the whole load's vectors and the file's hash; a cut piece names its tensor.
#[test]
fn streamed_load_equals_the_whole_load() {
    let Some(engine) = engine() else { return };
    let bytes = tiny_llama(GgmlDType::Q8_0, "llama", 11);
    let (_, whole) = open_pair(&bytes, engine.clone(), &GpuOptions::default());
    let total = bytes.len() as u64;
    assert!(ModelFile::read_prefix(&bytes[..64], total)
        .unwrap()
        .is_none());
    let file = ModelFile::read_prefix(&bytes, total).unwrap().unwrap();
    let opts = GpuOptions {
        max_part_bytes: Some(4096),
        max_piece_bytes: Some(1000),
    };
    let mut s = GpuStream::begin(file, engine.clone(), &opts).unwrap();
    let plan = s.plan();
    assert_eq!(plan.read_bytes, total, "the pieces cover the file");
    // At most 1000 bytes or 4 rows, and never more than a part.
    assert!(plan.largest_piece <= 4096 && plan.pieces > 10, "{plan:?}");
    for p in s.pieces().to_vec() {
        s.put(&bytes[p.offset as usize..(p.offset + p.len) as usize])
            .unwrap();
    }
    let (streamed, _, sha) = s.finish().unwrap();
    let sha_whole = probelab::model::gguf::sha256_hex(&mut Cursor::new(&bytes)).unwrap();
    assert_eq!(sha, sha_whole);
    let seqs = vec![vec![1u32, 50, 258, 7, 9], vec![200, 3]];
    let refs: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
    let caps = all_rows(&seqs);
    assert_eq!(
        whole.run(&refs, &caps).unwrap().data,
        streamed.run(&refs, &caps).unwrap().data
    );

    // A file cut inside a tensor fails at the header check, naming it, before anything is read.
    let file = ModelFile::read_prefix(&bytes, total).unwrap().unwrap();
    let mut s = GpuStream::begin(file, engine, &opts).unwrap();
    let pieces = s.pieces().to_vec();
    let (i, p) = pieces
        .iter()
        .enumerate()
        .find(|(_, p)| p.tensor.contains("ffn_up"))
        .unwrap();
    let cut = bytes.len().min(p.offset as usize + 10);
    let Err(header) = ModelFile::read_prefix(&bytes[..cut], cut as u64) else {
        panic!("a truncated file was read")
    };
    let header = header.to_string();
    assert!(
        header.contains(&format!("tensor '{}'", p.tensor)) && header.contains("truncated"),
        "{header}"
    );
    // And a piece that comes back short (a download that stopped) names it too.
    for q in &pieces[..i] {
        s.put(&bytes[q.offset as usize..(q.offset + q.len) as usize])
            .unwrap();
    }
    let err = s.put(&bytes[p.offset as usize..cut]).unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("tensor '{}' is cut", p.tensor)),
        "{err}"
    );
    assert_eq!(s.done(), i);
}

/// The streamed load refuses, before reading any weight, a model whose rows exceed the
/// device's binding (with the numbers), and says how far it got when the device is lost.
#[test]
fn streamed_load_refuses_what_the_device_cannot_hold() {
    if engine().is_none() {
        return;
    }
    let bytes = tiny_llama(GgmlDType::Q8_0, "llama", 13);
    let file = || {
        ModelFile::read_prefix(&bytes, bytes.len() as u64)
            .unwrap()
            .unwrap()
    };
    let tiny = GpuOptions {
        max_part_bytes: Some(16),
        ..Default::default()
    };
    let own = || Arc::new(GpuDevice::new().unwrap());
    let Err(e) = GpuStream::begin(file(), own(), &tiny) else {
        panic!("a 16-byte binding was accepted")
    };
    let msg = e.to_string();
    assert!(
        msg.contains("exceeds the GPU's largest binding (16 bytes)"),
        "{msg}"
    );

    // A device of its own, lost after the first pieces: the next piece says so.
    let mut s = GpuStream::begin(file(), own(), &GpuOptions::default()).unwrap();
    let pieces = s.pieces().to_vec();
    for p in &pieces[..2] {
        s.put(&bytes[p.offset as usize..(p.offset + p.len) as usize])
            .unwrap();
    }
    s.device().destroy_device_for_tests();
    let p = &pieces[2];
    let mut err = None;
    // Device loss is reported by a callback: it may take a piece or two to arrive.
    for p in std::iter::once(p).chain(&pieces[3..]) {
        if let Err(e) = s.put(&bytes[p.offset as usize..(p.offset + p.len) as usize]) {
            err = Some(e.to_string());
            break;
        }
    }
    let err = err.unwrap_or_else(|| match s.finish() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a lost device finished the load"),
    });
    // Natively a destroyed device shows as invalid buffers, in the browser as a lost device.
    assert!(err.contains("while loading the weights, after"), "{err}");
    eprintln!("device lost mid-load: {err}");
}

#[test]
fn bad_batches_are_errors_not_panics() {
    let Some(engine) = engine() else { return };
    let bytes = tiny_llama(GgmlDType::Q4_0, "llama", 9);
    let (_, gpu) = open_pair(&bytes, engine, &GpuOptions::default());
    let good: &[u32] = &[1, 2, 3];
    let cap = |s: usize, r: std::ops::Range<usize>| CaptureSpan { seq: s, rows: r };
    type Case<'a> = (&'a str, Vec<&'a [u32]>, Vec<CaptureSpan>);
    let cases: Vec<Case> = vec![
        (
            "token outside vocabulary",
            vec![&[1, 100_000]],
            vec![cap(0, 0..1)],
        ),
        ("empty sequence", vec![good, &[]], vec![cap(0, 0..1)]),
        ("no sequences", vec![], vec![cap(0, 0..1)]),
        ("capture past the end", vec![good], vec![cap(0, 2..4)]),
        (
            "capture of a missing sequence",
            vec![good],
            vec![cap(3, 0..1)],
        ),
        ("empty capture", vec![good], vec![cap(0, 1..1)]),
    ];
    for (what, seqs, caps) in cases {
        match gpu.run(&seqs, &caps) {
            Err(probelab::Error::Input(msg)) => eprintln!("{what}: {msg}"),
            other => panic!("{what}: expected an input error, got {other:?}"),
        }
    }
    let too_long = vec![1u32; 65];
    assert!(gpu.run(&[&too_long], &[cap(0, 0..1)]).is_err());
    // The engine still works afterwards.
    gpu.run(&[good], &[cap(0, 0..3)]).unwrap();
}

/// Each quantized matmul kernel alone against candle: dequantize, then an f64 matmul.
#[test]
fn each_quantized_matmul_matches_candle() {
    let Some(engine) = engine() else { return };
    // Rows and tokens that do not fill the 64 x 64 tiles; columns a multiple of 256 (K-quants).
    let (rows, cols, tokens) = (100usize, 512usize, 70usize);
    let mut rng = Rng(21);
    let w: Vec<f32> = (0..rows * cols).map(|_| rng.next_f32()).collect();
    let x: Vec<f32> = (0..tokens * cols).map(|_| rng.next_f32()).collect();
    for dtype in [
        GgmlDType::F32,
        GgmlDType::F16,
        GgmlDType::BF16,
        GgmlDType::Q4_0,
        GgmlDType::Q4_1,
        GgmlDType::Q5_0,
        GgmlDType::Q5_1,
        GgmlDType::Q8_0,
        GgmlDType::Q2K,
        GgmlDType::Q3K,
        GgmlDType::Q4K,
        GgmlDType::Q5K,
        GgmlDType::Q6K,
    ] {
        let t = Tensor::from_vec(w.clone(), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let deq = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let raw = q.data().unwrap().into_owned();
        let got = gpu::testing::matmul(&engine, dtype, &raw, rows, cols, &x, tokens).unwrap();
        let rows_got = gpu::testing::dequantize(&engine, dtype, &raw, rows, cols).unwrap();
        let wmax = deq.iter().fold(0f32, |m, v| m.max(v.abs()));
        let exact = rows_got.iter().zip(&deq).filter(|(a, b)| a == b).count();
        let dmax = rows_got
            .iter()
            .zip(&deq)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!(
            "dequantize {dtype:?}: {exact}/{} values bit-identical to candle, largest difference {dmax:e}",
            deq.len()
        );
        assert!(
            dmax <= 1e-6 * wmax,
            "{dtype:?}: dequantized values differ from candle's by {dmax:e}"
        );
        let mut worst = 0f64;
        for t in 0..tokens {
            for r in 0..rows {
                let want: f64 = (0..cols)
                    .map(|k| x[t * cols + k] as f64 * deq[r * cols + k] as f64)
                    .sum();
                let scale: f64 = (0..cols)
                    .map(|k| (x[t * cols + k] as f64 * deq[r * cols + k] as f64).abs())
                    .sum();
                worst = worst.max((got[t * rows + r] as f64 - want).abs() / scale.max(1e-30));
            }
        }
        eprintln!("matmul {dtype:?}: largest error {worst:.2e} (relative to sum |x w|)");
        assert!(worst < 1e-5, "{dtype:?}: matmul error {worst:e}");
    }
}

#[test]
fn the_engine_choice_follows_the_adapter() {
    use probelab::engine::{Engine, EngineChoice};
    let Some(engine) = engine() else { return };
    let bytes = tiny_llama(GgmlDType::Q4K, "llama", 13);
    let mut r = Cursor::new(&bytes[..]);
    let file = ModelFile::read(&mut r).unwrap();
    let cpu = Llama::load(&file, &mut r, &LoadOptions::default()).unwrap();
    assert_eq!("auto".parse::<EngineChoice>().unwrap(), EngineChoice::Auto);
    assert!("cuda".parse::<EngineChoice>().is_err());

    let auto = Engine::select(EngineChoice::Auto, &file, &mut r).unwrap();
    eprintln!("auto: {}", auto.note);
    assert_eq!(auto.is_gpu(), !engine.report().is_fallback);
    let forced = Engine::select(EngineChoice::Gpu, &file, &mut r).unwrap();
    eprintln!("gpu: {}", forced.note);
    assert!(forced.is_gpu());
    let on_cpu = Engine::select(EngineChoice::Cpu, &file, &mut r).unwrap();
    assert!(!on_cpu.is_gpu());

    let mut rng = Rng(17);
    let entities: Vec<probelab::extract::EntityTokens> = (1..6)
        .map(|n| probelab::extract::EntityTokens {
            ids: (0..3 * n)
                .map(|_| ((rng.next_f32() + 1.0) * 129.0) as u32 % 259)
                .collect(),
            span: 1..3 * n,
        })
        .collect();
    let opts = ExtractOptions {
        pooling: Pooling::Mean,
        batch_size: 2,
    };
    let a = forced
        .extract(&cpu, &entities, &opts, &mut |_, _, _| true)
        .unwrap();
    let b = on_cpu
        .extract(&cpu, &entities, &opts, &mut |_, _, _| true)
        .unwrap();
    let mut worst = Worst::new();
    for layer in 0..=cpu.config.n_layers {
        for e in 0..entities.len() {
            worst.add(a.vector(layer, e), b.vector(layer, e), || {
                format!("layer {layer}, entity {e}")
            });
        }
    }
    worst.check("engine gpu vs engine cpu");
}

#[test]
fn a_lost_device_is_an_error_and_auto_falls_back_to_the_cpu() {
    use probelab::engine::{Engine, EngineChoice};
    if engine().is_none() {
        return;
    }
    let bytes = tiny_llama(GgmlDType::Q8_0, "llama", 19);
    let mut r = Cursor::new(&bytes[..]);
    let file = ModelFile::read(&mut r).unwrap();
    let cpu = Llama::load(&file, &mut r, &LoadOptions::default()).unwrap();
    let entities: Vec<probelab::extract::EntityTokens> = (1..5)
        .map(|n| probelab::extract::EntityTokens {
            ids: (0..2 * n as u32).map(|t| 3 * t + 1).collect(),
            span: 0..2 * n,
        })
        .collect();
    let opts = ExtractOptions::default();

    // The GPU engine forced: a lost device is an Error::Gpu, not a panic.
    let forced = Engine::select(EngineChoice::Gpu, &file, &mut r).unwrap();
    let gpu = forced.gpu().unwrap();
    extract::extract(gpu, &entities, &opts, &mut |_, _, _| true).unwrap();
    gpu.device().destroy_device_for_tests();
    match forced.extract(&cpu, &entities, &opts, &mut |_, _, _| true) {
        Err(probelab::Error::Gpu(msg)) => eprintln!("forced GPU, device lost: {msg}"),
        other => panic!("expected a GPU error, got {:?}", other.map(|_| ())),
    }

    // `auto` that took the GPU falls back to the CPU and says so (software adapters allowed
    // here, since on lavapipe machines `auto` would pick the CPU from the start).
    let auto = Engine::select_allowing_software(EngineChoice::Auto, &file, &mut r).unwrap();
    {
        let g = auto.gpu().unwrap();
        g.device().destroy_device_for_tests();
        let acts = auto
            .extract(&cpu, &entities, &opts, &mut |_, _, _| true)
            .unwrap();
        eprintln!("auto: {}", auto.fallback_reason().unwrap());
        let want = extract::extract(&cpu, &entities, &opts, &mut |_, _, _| true).unwrap();
        assert_eq!(acts.data, want.data);
    }
}

/// The causal test's edited pass on the GPU: the same held rows with the same edit, run on from
/// layer L on each engine, give the same logits (≤ 1e-4 relative per prompt); and the rows
/// each engine holds at L agree as every other layer does. Also from the last layer, where
/// the pass is the edited rows themselves.
#[test]
fn an_edited_pass_gives_the_cpus_logits() {
    use probelab::causal::edit;
    use probelab::extract::Forward;
    let Some(engine) = engine() else { return };
    let (m, gpu) = default_pair(engine);
    let model = &m.model;
    let d = model.config.d_model;
    let seqs: Vec<Vec<u32>> = ["Paris", "São Paulo", "Lagos"]
        .iter()
        .map(|n| {
            let q = format!("The continent where {n} is located is");
            m.tokenizer.encode_prompt(&q).unwrap().ids
        })
        .collect();
    let mut offsets = vec![0];
    for s in &seqs {
        offsets.push(offsets.last().unwrap() + s.len());
    }
    let reads: Vec<usize> = offsets[1..].iter().map(|o| o - 1).collect();
    let head = model.head_rows(None).unwrap();
    let logits = |rows: Vec<f32>| -> Vec<Vec<f32>> {
        let x = Tensor::from_vec(rows, (reads.len(), d), &Device::Cpu).unwrap();
        model.head_logits(&x, &head).unwrap()
    };
    for layer in [15, model.config.n_layers] {
        let cpu_rows = model.hidden_rows(&seqs, layer).unwrap();
        let gpu_rows = gpu.hidden_rows(&seqs, layer).unwrap();
        let mut worst = Worst::new();
        for r in 0..cpu_rows.len() / d {
            let (a, b) = (&gpu_rows[r * d..(r + 1) * d], &cpu_rows[r * d..(r + 1) * d]);
            worst.add(a, b, || format!("layer {layer}, row {r}"));
        }
        worst.check(&format!("rows held at layer {layer}"));
        // Edit each prompt's first token (the name's) by half its norm along a fixed direction.
        let mut edited = cpu_rows.clone();
        let mut rng = probelab::probe::split::SplitMix64::new(5);
        let u = &edit::random_directions(1, d, &[], &mut rng)[0];
        for &o in &offsets[..seqs.len()] {
            let row = &mut edited[o * d..(o + 1) * d];
            let norm = edit::norm(&row.iter().map(|&v| v as f64).collect::<Vec<_>>());
            edit::add(row, &edit::scaled(u, 0.5 * norm));
        }
        let last = model.config.n_layers;
        let cpu = logits(
            model
                .resume_rows(&seqs, layer, last, &edited, &reads)
                .unwrap(),
        );
        let gpu_logits = logits(
            gpu.resume_rows(&seqs, layer, last, &edited, &reads)
                .unwrap(),
        );
        for (p, (g, c)) in gpu_logits.iter().zip(&cpu).enumerate() {
            let rel = rel_diff(g, c);
            eprintln!(
                "edited pass from layer {layer}, prompt {p}: logits relative difference {rel:.2e}"
            );
            assert!(rel <= 1e-4, "layer {layer}, prompt {p}: {rel}");
        }
        // A window's stage: from the edit up to a later layer, every row back.
        if layer < last {
            let to = layer + 2;
            let all: Vec<usize> = (0..cpu_rows.len() / d).collect();
            let cpu = model.resume_rows(&seqs, layer, to, &edited, &all).unwrap();
            let got = gpu.resume_rows(&seqs, layer, to, &edited, &all).unwrap();
            let mut worst = Worst::new();
            for r in 0..all.len() {
                let (a, b) = (&got[r * d..(r + 1) * d], &cpu[r * d..(r + 1) * d]);
                worst.add(a, b, || format!("layer {layer} to {to}, row {r}"));
            }
            worst.check(&format!("edited rows run from layer {layer} to {to}"));
        }
    }
}
