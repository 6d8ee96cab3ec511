//! The causal test: edits along the probe's direction, read through the model's own answers.
//!
//! - a planted model whose LM head reads latitude off one residual direction: edits along the
//!   probe are detected with p at the floor; in a twin whose head reads a direction no entity
//!   varies on, they are not;
//! - edit arithmetic: an edit asking for Δ moves the probe's reading by Δ, orthogonal edits by 0;
//! - the edited forward pass equals an independent NumPy computation on the default model;
//! - the default model on world-places-200 end to end, and the bad inputs.

mod common;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::*;
use probelab::causal::{edit, CausalOptions};
use probelab::data::{self, Dataset, OnBadRows};
use probelab::extract::acts::ActsMeta;
use probelab::extract::{Activations, ExtractOptions, Pooling, Template};
use probelab::model::{LoadOptions, LoadedModel};
use probelab::probe::directions::fit_directions;
use probelab::probe::report::CausalReport;
use probelab::probe::split::SplitMix64;
use probelab::probe::{AnalysisOptions, Report, SplitSpec};
use probelab::run;
use serde_json::Value;

// =============================================================================================
// A planted model
// =============================================================================================

// Narrower than the training set (43 rows), so the probe can find U itself rather than its
// projection on the span of the training rows.
const D: usize = 32;
/// The edited layer: after block 1 of 2, so block 2 runs on the edit.
const LAYER: usize = 1;
/// Residual dimensions: latitude is written on U, longitude on V; the twin's head reads W,
/// which no block writes and no name's embedding has.
const U: usize = 0;
const V: usize = 1;
const W: usize = 2;

/// Single-character names: each one token of the byte-level vocabulary.
fn planted_names() -> Vec<String> {
    ('A'..='Z')
        .chain('a'..='z')
        .chain('0'..='9')
        .map(String::from)
        .collect()
}

/// A dataset of the single-character names at seeded positions, with a `hemisphere` answer
/// column (N or S) and a `label` column whose answers (Nord, Nadir) share their first token.
fn planted_csv() -> String {
    let mut rng = Rng(7);
    let mut csv = String::from("name,latitude,longitude,hemisphere,label\n");
    for name in planted_names() {
        let mut lat = rng.next_f32() as f64 * 60.0;
        if lat.abs() < 6.0 {
            lat = 6.0_f64.copysign(lat);
        }
        let lon = rng.next_f32() as f64 * 150.0;
        let (h, label) = if lat > 0.0 {
            ("N", "Nord")
        } else {
            ("S", "Nadir")
        };
        csv += &format!("{name},{lat:.3},{lon:.3},{h},{label}\n");
    }
    csv
}

/// A 2-block llama whose names' embeddings carry latitude on U and longitude on V, whose blocks
/// add small random updates that never touch U, V or W, and whose LM head scores " N" and " S"
/// by ±(residual · `read`): `read = U` is the planted model, `read = W` the twin that reads a
/// direction no entity varies on.
fn planted_gguf(read: usize) -> Vec<u8> {
    let (mut tokens, mut merges) = byte_vocab();
    merges.extend(["Ġ N".to_string(), "Ġ S".to_string()]);
    tokens.extend(["ĠN".to_string(), "ĠS".to_string()]);
    let vocab = tokens.len();
    let id = |t: &str| tokens.iter().position(|x| x == t).unwrap();
    let (n_id, s_id) = (id("ĠN"), id("ĠS"));
    let positions: Vec<(usize, f64, f64)> = planted_csv()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (id(f[0]), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let mut rng = Rng(11);
    let mut embedding = vec![0f32; vocab * D];
    for t in 0..vocab {
        for j in 3..D {
            embedding[t * D + j] = 0.5 * rng.next_f32();
        }
    }
    for &(t, lat, lon) in &positions {
        embedding[t * D + U] = (lat / 30.0) as f32;
        embedding[t * D + V] = (lon / 60.0) as f32;
    }
    let mut head = vec![0f32; vocab * D];
    head[n_id * D + read] = 1.0;
    head[s_id * D + read] = -1.0;

    let f32_tensor = |name: String, dims: Vec<u64>, values: Vec<f32>| RawTensor {
        name,
        dims,
        ggml_type: 0,
        data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    let (heads, kv, ffn) = (4usize, 2usize, 128usize);
    let hd = D / heads;
    let mut small = |rows: usize, cols: usize, keep_out: bool| -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                // Output projections leave rows U, V, W at zero: no block writes them.
                if keep_out && i / cols <= W {
                    0.0
                } else {
                    0.05 * rng.next_f32()
                }
            })
            .collect()
    };
    let mut tensors = vec![
        f32_tensor(
            "token_embd.weight".into(),
            vec![vocab as u64, D as u64],
            embedding,
        ),
        f32_tensor("output_norm.weight".into(), vec![D as u64], vec![1.0; D]),
        f32_tensor("output.weight".into(), vec![vocab as u64, D as u64], head),
    ];
    for i in 0..2 {
        let b = |n: &str| format!("blk.{i}.{n}.weight");
        let m = |r: usize, c: usize| vec![r as u64, c as u64];
        tensors.push(f32_tensor(b("attn_norm"), vec![D as u64], vec![1.0; D]));
        tensors.push(f32_tensor(b("ffn_norm"), vec![D as u64], vec![1.0; D]));
        tensors.push(f32_tensor(b("attn_q"), m(D, D), small(D, D, false)));
        tensors.push(f32_tensor(
            b("attn_k"),
            m(kv * hd, D),
            small(kv * hd, D, false),
        ));
        tensors.push(f32_tensor(
            b("attn_v"),
            m(kv * hd, D),
            small(kv * hd, D, false),
        ));
        tensors.push(f32_tensor(b("attn_output"), m(D, D), small(D, D, true)));
        tensors.push(f32_tensor(b("ffn_gate"), m(ffn, D), small(ffn, D, false)));
        tensors.push(f32_tensor(b("ffn_up"), m(ffn, D), small(ffn, D, false)));
        tensors.push(f32_tensor(b("ffn_down"), m(D, ffn), small(D, ffn, true)));
    }
    let mut meta = vec![
        ("general.architecture", Meta::Str("llama".into())),
        ("general.name", Meta::Str("planted latitude llama".into())),
        ("llama.block_count", Meta::U32(2)),
        ("llama.embedding_length", Meta::U32(D as u32)),
        ("llama.feed_forward_length", Meta::U32(ffn as u32)),
        ("llama.attention.head_count", Meta::U32(heads as u32)),
        ("llama.attention.head_count_kv", Meta::U32(kv as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-5)),
        ("llama.rope.freq_base", Meta::F32(10000.0)),
        ("llama.context_length", Meta::U32(64)),
    ];
    meta.extend([
        ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Meta::Str("smollm".into())),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.merges", Meta::Strs(merges)),
        ("tokenizer.ggml.add_bos_token", Meta::Bool(false)),
    ]);
    write_gguf(&meta, &tensors)
}

/// A fresh directory per call: tests run in parallel and may ask for the same name.
fn temp_dir(name: &str) -> PathBuf {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("probelab-causal-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The planted (or twin) model written to a file, with the dataset CSV beside it.
fn planted_files(read: usize) -> (PathBuf, PathBuf) {
    let dir = temp_dir(&format!("planted-{read}"));
    let model = dir.join("planted.gguf");
    std::fs::write(&model, planted_gguf(read)).unwrap();
    let csv = dir.join("planted.csv");
    std::fs::write(&csv, planted_csv()).unwrap();
    (model, csv)
}

struct Fitted {
    loaded: LoadedModel,
    dataset: Dataset,
    acts: Activations,
    meta: ActsMeta,
    report: Report,
}

fn fit_planted(read: usize) -> Fitted {
    let (model, _) = planted_files(read);
    let loaded = LoadedModel::open(&model, &LoadOptions::default()).unwrap();
    let (dataset, _) =
        data::read_dataset_csv("planted", planted_csv().as_bytes(), OnBadRows::Stop).unwrap();
    let template = Template::new("{name}").unwrap();
    let acts = run::extract_dataset(
        &loaded.model,
        None,
        &loaded,
        &dataset,
        &template,
        &ExtractOptions::default(),
        "extract",
        &mut |_, _, _| true,
    )
    .unwrap();
    let meta = ActsMeta::for_dataset(
        &loaded.model.config.name,
        &loaded.sha256,
        &template.text,
        Pooling::Last,
        &dataset,
    );
    let opts = AnalysisOptions {
        n_permutations: 20,
        ..AnalysisOptions::default()
    };
    let split = SplitSpec::Random {
        test_fraction: 0.3,
        seed: 1,
    };
    let report = run::fit(
        &acts,
        &meta,
        None,
        None,
        &dataset,
        &split,
        &opts,
        &mut |_, _, _| true,
    )
    .unwrap();
    Fitted {
        loaded,
        dataset,
        acts,
        meta,
        report,
    }
}

fn hemisphere_question() -> CausalOptions {
    CausalOptions {
        readout: Some("{name}".into()),
        answer_column: Some("hemisphere".into()),
        ..CausalOptions::default()
    }
}

fn causal_of(f: &Fitted, opts: &CausalOptions) -> probelab::Result<CausalReport> {
    run::causal(
        &f.loaded,
        &probelab::engine::Engine::cpu(),
        &f.acts,
        &f.meta,
        &f.dataset,
        &f.report,
        Some(LAYER),
        opts,
        &mut |_, _, _| true,
    )
}

#[test]
fn a_planted_direction_is_detected_at_the_floor_and_an_unread_one_is_not() {
    let planted = fit_planted(U);
    let c = causal_of(&planted, &hemisphere_question()).unwrap();
    let lat = &c.axes[0];
    let n_null = lat.null_random.len() + lat.null_orthogonal.len() + 1;
    assert_eq!(lat.target, "latitude");
    assert!(n_null >= 31, "{n_null} nulls");
    assert!(c.baseline.answerable, "{:?}", c.baseline);
    assert!(c.baseline.accuracy > 0.9, "{:?}", c.baseline);
    assert_eq!(lat.p_value, 1.0 / (1 + n_null) as f64, "{lat:?}");
    assert!(lat.effect > 0.0 && lat.slope > 0.0 && lat.correlation > 0.5);
    // The answer moves north with a northward edit and south with a southward one.
    let at = |dose: f64| lat.doses.iter().find(|d| d.dose == dose).unwrap();
    assert!(
        at(60.0).ci_low > 0.0 && at(-60.0).ci_high < 0.0,
        "{:?}",
        lat.doses
    );
    // Erasing the direction that carries the answer costs more than any random subspace.
    assert_eq!(c.erasure.p_value, 1.0 / 21.0, "{:?}", c.erasure);
    assert!(
        c.erasure.drop_p_true > 0.2,
        "{:?} {:?}",
        c.erasure,
        c.baseline
    );
    assert_eq!(c.side_effects.n_prompts, 24);
    assert_eq!(c.entities.len(), c.n_entities);

    // A window (layers 1 and 2, each along its own probe) finds it too.
    let window = CausalOptions {
        window: 1,
        ..hemisphere_question()
    };
    let w = causal_of(&planted, &window).unwrap();
    assert_eq!(w.edited_layers, vec![1, 2]);
    assert_eq!(
        w.axes[0].p_value,
        1.0 / (1 + n_null) as f64,
        "{:?}",
        w.axes[0]
    );
    assert!(w.axes[0].effect > lat.effect, "{:?} {:?}", w.axes[0], lat);
    // A window past the last layer is refused.
    let past = CausalOptions {
        window: 2,
        ..hemisphere_question()
    };
    let err = causal_of(&planted, &past).unwrap_err().to_string();
    assert!(err.contains("layer 3 is out of range"), "{err}");

    let twin = fit_planted(W);
    let t = causal_of(&twin, &hemisphere_question()).unwrap();
    assert!(t.axes[0].p_value > 0.1, "{:?}", t.axes[0]);
    assert!(t.axes[0].effect.abs() < 1e-6, "{:?}", t.axes[0]);
    // The twin does not answer at all, and the report says so rather than printing a null.
    assert!(!t.baseline.answerable, "{:?}", t.baseline);
    // Its flat response has no correlation (NaN): report.json still reads back.
    for c in [&c, &t] {
        let json = serde_json::to_string(c).unwrap();
        let back: CausalReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.axes.len(), c.axes.len());
        assert_eq!(back.axes[0].p_value, c.axes[0].p_value);
    }
}

#[test]
fn an_edit_moves_the_probe_reading_by_exactly_the_dose() {
    let f = fit_planted(U);
    let d = f.acts.d_model;
    let dirs = fit_directions(
        LAYER,
        f.acts.layer(LAYER),
        d,
        &f.dataset,
        &f.report.split.spec().unwrap(),
        &f.report.options,
        &f.acts.first_token_ids,
    )
    .unwrap();
    // The refitted probe is the report's: same test predictions at that layer.
    let lp = f.report.layer_predictions.as_ref().unwrap();
    for (row, &i) in lp.entities.iter().enumerate() {
        let got = dirs.probe.read(f.acts.vector(LAYER, i));
        let want = &lp.predicted[LAYER][row];
        for t in 0..2 {
            assert!((got[t] - want[t]).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }
    // Real residual-stream rows at the edited layer, as the causal test holds them (f32).
    let ids: Vec<Vec<u32>> = dirs
        .test
        .iter()
        .map(|&i| {
            let name = &f.dataset.names[i];
            f.loaded.tokenizer.encode_prompt(name).unwrap().ids
        })
        .collect();
    let hidden = f.loaded.model.hidden_at(&ids, LAYER).unwrap();
    let shifts = edit::unit_shifts(&dirs.probe.weights).unwrap();
    let basis = edit::orthonormal_basis(&dirs.probe.weights);
    let orthogonal = edit::random_directions(5, d, &basis, &mut SplitMix64::new(3));
    for j in 0..ids.len() {
        let row: Vec<f32> = hidden.get(j).unwrap().get(0).unwrap().to_vec1().unwrap();
        let before = dirs.probe.read(&row);
        for (t, shift) in shifts.iter().enumerate() {
            for dose in [-60.0, 15.0, 60.0] {
                let mut x = row.clone();
                edit::add(&mut x, &edit::scaled(shift, dose));
                let after = dirs.probe.read(&x);
                for s in 0..2 {
                    let want = if s == t { dose } else { 0.0 };
                    assert!(
                        (after[s] - before[s] - want).abs() < 1e-3,
                        "target {t}, dose {dose}: reading {s} moved {}",
                        after[s] - before[s]
                    );
                }
            }
        }
        for u in &orthogonal {
            let mut x = row.clone();
            edit::add(&mut x, &edit::scaled(u, 10.0 * edit::norm(&shifts[0])));
            let after = dirs.probe.read(&x);
            for s in 0..2 {
                assert!(
                    (after[s] - before[s]).abs() < 1e-3,
                    "{after:?} vs {before:?}"
                );
            }
        }
        // Erasure leaves nothing along the probe's directions.
        let mut x = row.clone();
        edit::erase(&mut x, &basis);
        for b in &basis {
            let dot: f64 = x.iter().zip(b).map(|(&x, b)| x as f64 * b).sum();
            assert!(dot.abs() < 1e-4, "{dot}");
        }
    }
}

// =============================================================================================
// The edited forward pass against NumPy
// =============================================================================================

#[test]
fn the_edited_forward_pass_equals_the_numpy_reference() {
    let bytes = std::fs::read(fixture("edited_forward_smollm2.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let floats = |name: &str| -> Vec<f32> {
        st.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let ids: Vec<u32> = serde_json::from_str(&meta["ids"]).unwrap();
    let layer: usize = meta["layer"].parse().unwrap();
    let position: usize = meta["position"].parse().unwrap();
    let (edit_vec, want_hidden, want_logits) =
        (floats("edit"), floats("hidden_last"), floats("logits"));

    let loaded = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    assert_eq!(loaded.sha256, meta["model_sha256"]);
    let m = &loaded.model;
    let d = m.config.d_model;
    let hidden = m.hidden_at(std::slice::from_ref(&ids), layer).unwrap();
    let mut x = hidden.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let delta: Vec<f64> = edit_vec.iter().map(|&v| v as f64).collect();
    edit::add(&mut x[position * d..(position + 1) * d], &delta);
    let x = Tensor::from_vec(x, (1, ids.len(), d), &Device::Cpu).unwrap();
    let last = ids.len() - 1;
    let mut got_hidden = Vec::new();
    let out = m
        .resume_layers(layer, m.config.n_layers, &x, |_, h| {
            got_hidden.push(h.get(0)?.get(last)?.to_vec1::<f32>()?);
            Ok(())
        })
        .unwrap();
    assert_eq!(got_hidden.len(), m.config.n_layers - layer);
    for (i, got) in got_hidden.iter().enumerate() {
        let want = &want_hidden[(i + 1) * d..(i + 2) * d];
        let cos = cosine(got, want);
        assert!(cos >= 0.999, "layer {}: cosine {cos}", layer + 1 + i);
    }
    let row = out.get(0).unwrap().get(last).unwrap().unsqueeze(0).unwrap();
    let logits = &m.head_logits(&row, &m.head_rows(None).unwrap()).unwrap()[0];
    let worst = logits
        .iter()
        .zip(&want_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-3, "largest logit difference {worst}");

    // A window of two edited layers through the engine's staged path, as the causal test runs
    // it: rows held at L, edited, run to L + 1 (every row back), edited again, run to the end.
    let seqs = vec![ids.clone()];
    let all: Vec<usize> = (0..ids.len()).collect();
    let mut rows = m.hidden_rows(&seqs, layer).unwrap();
    edit::add(&mut rows[position * d..(position + 1) * d], &delta);
    let mut rows = m.resume_rows(&seqs, layer, layer + 1, &rows, &all).unwrap();
    let second: Vec<f64> = floats("window_edit").iter().map(|&v| v as f64).collect();
    edit::add(&mut rows[position * d..(position + 1) * d], &second);
    let last_row = m
        .resume_rows(&seqs, layer + 1, m.config.n_layers, &rows, &[last])
        .unwrap();
    let x = Tensor::from_vec(last_row, (1, d), &Device::Cpu).unwrap();
    let logits = &m.head_logits(&x, &m.head_rows(None).unwrap()).unwrap()[0];
    let worst = logits
        .iter()
        .zip(floats("window_logits"))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "window of layers {layer}-{}: largest logit difference {worst:.2e}",
        layer + 1
    );
    assert!(worst <= 1e-3, "window: largest logit difference {worst}");
}

// =============================================================================================
// The command line
// =============================================================================================

fn has_every_causal_field(c: &Value) {
    for key in [
        "layer",
        "positions",
        "readout",
        "answer_column",
        "candidates",
        "candidate_tokens",
        "n_entities",
        "baseline",
        "axes",
        "erasure",
        "side_effects",
        "entities",
        "notes",
    ] {
        assert!(!c[key].is_null(), "causal.{key} is missing: {c}");
    }
    for axis in c["axes"].as_array().unwrap() {
        for key in [
            "doses",
            "slope",
            "correlation",
            "effect",
            "p_value",
            "null_random",
        ] {
            assert!(!axis[key].is_null(), "axis {key} missing");
        }
        assert!(axis["null_random"].as_array().unwrap().len() >= 20);
    }
    assert!(c["erasure"]["null_drops"].as_array().unwrap().len() >= 20);
}

#[test]
fn steer_on_the_command_line_and_its_bad_inputs() {
    let (model, csv) = planted_files(U);
    let (twin, _) = planted_files(W);
    let out = temp_dir("cli");
    let (m, c, o) = (
        model.to_str().unwrap(),
        csv.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let (code, err) = probelab(&[
        "run",
        "--model",
        m,
        "--dataset",
        c,
        "--out",
        o,
        "--no-random-init",
        "--permutations",
        "10",
        "--causal",
        "--layer",
        "1",
        "--readout",
        "{name}",
        "--answer-column",
        "hemisphere",
        "--engine",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    let report = read_report(&out);
    has_every_causal_field(&report["causal"]);
    assert!(err.contains("Does the model use it?"), "{err}");

    let steer = |extra: &[&str], model: &str| {
        let mut args = vec!["steer", o, "--model", model, "--dataset", c];
        args.extend(extra);
        probelab(&args)
    };
    // Steering the run again rewrites its causal block (here at another layer).
    let (code, err) = steer(
        &[
            "--layer",
            "2",
            "--readout",
            "{name}",
            "--answer-column",
            "hemisphere",
        ],
        m,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_report(&out)["causal"]["layer"], 2);

    // Answers that share their first token are read where they part: " Nord" and " Nadir" at
    // the token after "ĠN", whose LM head rows (for "o" and "a") the planted model leaves at
    // zero, so each answer has probability exactly 1/2 whatever the edit.
    let (code, err) = steer(
        &[
            "--layer",
            "2",
            "--readout",
            "{name}",
            "--answer-column",
            "label",
        ],
        m,
    );
    assert_eq!(code, 0, "{err}");
    let labelled = &read_report(&out)["causal"];
    assert_eq!(
        labelled["candidate_tokens"],
        serde_json::json!(["ĠN a d i r", "ĠN o r d"])
    );
    for e in labelled["entities"].as_array().unwrap() {
        assert!((e["p_true"].as_f64().unwrap() - 0.5).abs() < 1e-6, "{e}");
    }
    assert_eq!(labelled["axes"][0]["effect"], 0.0);

    let bad = |extra: &[&str], model: &str, says: &str| {
        let (code, err) = steer(extra, model);
        assert_ne!(code, 0, "{extra:?} should fail");
        assert!(
            err.contains(says),
            "{extra:?}: '{err}' does not say '{says}'"
        );
        assert!(!err.contains("panicked"), "{err}");
    };
    let q = ["--readout", "{name}", "--answer-column", "hemisphere"];
    bad(
        &[&q[..], &["--layer", "3"]].concat(),
        m,
        "layer 3 is out of range",
    );
    bad(
        &[&q[..], &["--candidates", "N"]].concat(),
        m,
        "at least two candidate",
    );
    bad(
        &[&q[..], &["--candidates", "N, N"]].concat(),
        m,
        "the candidate 'N' is listed twice",
    );
    bad(&["--readout", "Where is it?"], m, "no {name} placeholder");
    bad(&q, twin.to_str().unwrap(), "do not belong to this model");
    // A failed steer keeps what the run computed.
    assert_eq!(read_report(&out)["causal"]["layer"], 2);

    // So does a run whose causal test cannot start: its probes, figures and activations are
    // written, and the error says where.
    let kept = temp_dir("kept");
    let (code, err) = probelab(&[
        "run",
        "--model",
        m,
        "--dataset",
        c,
        "--out",
        kept.to_str().unwrap(),
        "--no-random-init",
        "--permutations",
        "5",
        "--causal",
        "--readout",
        "{name}",
        "--answer-column",
        "nosuch",
        "--engine",
        "cpu",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("column 'nosuch'"), "{err}");
    assert!(err.contains("probelab steer"), "{err}");
    let report = read_report(&kept);
    assert!(report["causal"].is_null() && report["selected"]["layer"].is_u64());
    assert!(kept.join("acts.safetensors").exists());
}

#[test]
fn the_default_model_on_world_places_200() {
    let model = default_model();
    let out = temp_dir("world");
    let (code, err) = probelab(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        "world-places-200",
        "--out",
        out.to_str().unwrap(),
        "--no-random-init",
        "--permutations",
        "20",
        "--causal",
        "--engine",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    let c = &read_report(&out)["causal"];
    has_every_causal_field(c);
    assert_eq!(c["candidates"].as_array().unwrap().len(), 6);
    assert_eq!(c["n_entities"], 40);
    // What the science says goes in the closing note, not here.
    eprintln!(
        "world-places-200, layer {}: baseline accuracy {} (chance {}), latitude effect {} \
         p {}, longitude effect {} p {}, erasure drop {} p {}",
        c["layer"],
        c["baseline"]["accuracy"],
        c["baseline"]["chance"],
        c["axes"][0]["effect"],
        c["axes"][0]["p_value"],
        c["axes"][1]["effect"],
        c["axes"][1]["p_value"],
        c["erasure"]["drop_p_true"],
        c["erasure"]["p_value"]
    );
}

/// Dates on the default model: the century question's answers ("7th century BC", "17th
/// century", …) share their first tokens under SmolLM2's digit-by-digit tokenizer, so each is
/// read where it parts from the others. The report's probability of each entity's true answer
/// equals the same rule computed independently, from whole forward passes over the question
/// followed by each answer's tokens (`Llama::token_log_probs`), with no held rows and no tree.
#[test]
fn a_date_question_is_read_over_whole_answers_on_the_default_model() {
    let model = default_model();
    let out = temp_dir("dates");
    let (code, err) = probelab(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        "historical-years-200",
        "--out",
        out.to_str().unwrap(),
        "--no-random-init",
        "--permutations",
        "5",
        "--causal",
        "--max-entities",
        "6",
        "--random-nulls",
        "2",
        "--doses",
        "-100,100",
        "--engine",
        "cpu",
    ]);
    assert_eq!(code, 0, "{err}");
    let c = &read_report(&out)["causal"];
    assert_eq!(c["answer_column"], "century");
    let names: Vec<String> = c["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(names.len() >= 20, "{names:?}");

    let loaded = LoadedModel::open(&model, &LoadOptions::default()).unwrap();
    let tok = &loaded.tokenizer;
    let answers: Vec<Vec<u32>> = names
        .iter()
        .map(|n| tok.encode_text(&format!(" {n}")).unwrap())
        .collect();
    let readout = Template::new(c["readout"].as_str().unwrap()).unwrap();
    let entities = c["entities"].as_array().unwrap();
    assert_eq!(entities.len(), 6);
    for e in entities {
        let Some(truth) = e["true_answer"].as_str() else {
            continue;
        };
        let question = tok
            .encode_prompt(&readout.render(e["name"].as_str().unwrap()).0)
            .unwrap()
            .ids;
        // ln p(token | question + prefix) over the whole vocabulary, for every (prefix, token).
        let mut log_p = std::collections::BTreeMap::<Vec<u32>, f64>::new();
        for a in &answers {
            for j in 1..=a.len() {
                log_p.entry(a[..j].to_vec()).or_default();
            }
        }
        let keys: Vec<Vec<u32>> = log_p.keys().cloned().collect();
        let seqs: Vec<Vec<u32>> = keys.iter().map(|k| [&question[..], k].concat()).collect();
        let at: Vec<Vec<usize>> = seqs.iter().map(|s| vec![s.len() - 1]).collect();
        let got = loaded.model.token_log_probs(&seqs, &at).unwrap();
        for (k, lp) in keys.iter().zip(got) {
            log_p.insert(k.clone(), lp[0]);
        }
        // The rule: at each prefix where answers part, the choice among the tokens that go on
        // (and stopping, worth what those tokens leave) in proportion to their probabilities.
        let t = &answers[names.iter().position(|n| n == truth).unwrap()];
        let mut want = 1.0;
        for j in 0..=t.len() {
            let prefix = &t[..j];
            let next: std::collections::BTreeSet<u32> = answers
                .iter()
                .filter(|a| a.len() > j && a.starts_with(prefix))
                .map(|a| a[j])
                .collect();
            let stops = answers.iter().any(|a| a.as_slice() == prefix);
            if next.len() + usize::from(stops) < 2 {
                continue;
            }
            let p = |tok: u32| log_p[&[prefix, &[tok]].concat()].exp();
            let going: f64 = next.iter().map(|&n| p(n)).sum();
            want *= match t.get(j) {
                Some(&tok) if stops => p(tok),
                Some(&tok) => p(tok) / going,
                None => 1.0 - going,
            };
        }
        let got = e["p_true"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-3 * want.max(1e-3),
            "{}: p({truth}) = {got} in the report, {want} from whole passes",
            e["name"]
        );
    }
    eprintln!(
        "historical-years-200, layer {}: baseline accuracy {} (chance {}, p {}), year effect {} \
         p {}",
        c["layer"],
        c["baseline"]["accuracy"],
        c["baseline"]["chance"],
        c["baseline"]["p_value"],
        c["axes"][0]["effect"],
        c["axes"][0]["p_value"]
    );
}

/// The page's end-to-end test (tests/e2e/causal.test.mjs) loads the planted model, its twin and
/// the dataset from tests/fixtures; they are this file's, byte for byte. Regenerate them with
/// `PROBELAB_WRITE_FIXTURES=1 cargo test --release --test causal planted_fixtures`.
#[test]
fn planted_fixtures_for_the_page_are_current() {
    let files = [
        ("planted_latitude.gguf", planted_gguf(U)),
        ("planted_latitude_twin.gguf", planted_gguf(W)),
        ("planted_latitude.csv", planted_csv().into_bytes()),
    ];
    for (name, bytes) in files {
        let path = fixture(name);
        if std::env::var_os("PROBELAB_WRITE_FIXTURES").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} differs from what this test builds: regenerate it (see this test's comment)",
            path.display()
        );
    }
}
