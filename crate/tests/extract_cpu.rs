//! The CPU extraction path on the default model and on small GGUFs in every quant type.

mod common;

use candle_core::quantized::GgmlDType;
use common::*;
use probelab::extract::{self, ExtractOptions, Pooling, Template};
use probelab::model::load::LoadedModel;
use probelab::model::LoadOptions;

#[test]
fn batching_does_not_change_the_vectors() {
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    // 64 entities of varied lengths, some prompts padded a lot within the batch.
    let mut names = place_names();
    names.extend(place_names().iter().map(|n| format!("the old town of {n}")));
    assert_eq!(names.len(), 64);
    let template = Template::new("{name}").unwrap();
    let ents = extract::tokenize_entities(&m.tokenizer, &names, &template, 8192).unwrap();
    for pooling in [Pooling::Last, Pooling::Mean] {
        let batched = extract::extract(
            &m.model,
            &ents,
            &ExtractOptions {
                pooling,
                batch_size: 64,
            },
            &mut |_, _, _| true,
        )
        .unwrap();
        let single = extract::extract(
            &m.model,
            &ents,
            &ExtractOptions {
                pooling,
                batch_size: 1,
            },
            &mut |_, _, _| true,
        )
        .unwrap();
        let worst = (0..=m.model.config.n_layers)
            .flat_map(|l| (0..names.len()).map(move |e| (l, e)))
            .map(|(l, e)| rel_diff(batched.vector(l, e), single.vector(l, e)))
            .fold(0.0, f64::max);
        eprintln!("{pooling:?}: worst relative difference batch-64 vs one-at-a-time = {worst:.2e}");
        assert!(
            worst <= 1e-4,
            "{pooling:?}: batching changed vectors by {worst:.2e}"
        );
    }
}

#[test]
fn a_list_cut_into_shards_gives_the_whole_lists_vectors_bit_for_bit() {
    // What tools/cluster relies on: each worker extracts its own shard, and the merged shards
    // must be the single-process extraction. Batches hold one prompt length each (no padding),
    // and a lone one-token prompt runs as two rows, so no vector depends on its batch-mates;
    // the cuts give shards with a single entity, single-token names included.
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let mut names = place_names();
    names.extend(["Rome", "Lima", "Oslo", "Paris"].map(String::from));
    let template = Template::new("{name}").unwrap();
    let ents = extract::tokenize_entities(&m.tokenizer, &names, &template, 8192).unwrap();
    assert!(ents.iter().filter(|e| e.ids.len() == 1).count() >= 2);
    for pooling in [Pooling::Last, Pooling::Mean] {
        let opts = ExtractOptions {
            pooling,
            batch_size: 8,
        };
        let whole = extract::extract(&m.model, &ents, &opts, &mut |_, _, _| true).unwrap();
        let cuts = [0, 1, 2, 9, 10, 23, 24, names.len() - 1, names.len()];
        for w in cuts.windows(2) {
            let shard = &ents[w[0]..w[1]];
            let part = extract::extract(&m.model, shard, &opts, &mut |_, _, _| true).unwrap();
            for l in 0..=m.model.config.n_layers {
                for (i, e) in (w[0]..w[1]).enumerate() {
                    assert_eq!(
                        part.vector(l, i),
                        whole.vector(l, e),
                        "{pooling:?}: layer {l}, entity {e} ('{}') in shard {}..{}",
                        names[e],
                        w[0],
                        w[1]
                    );
                }
            }
        }
    }
}

#[test]
fn streamed_batch_rows_equal_the_whole_extraction() {
    // The page streams each batch's rows (batch order) to its cache; stitched back by entity
    // index they must equal `extract`'s rows for the same batches, bit for bit.
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let mut names = place_names();
    names.truncate(20);
    let template = Template::new("The city of {name}").unwrap();
    let ents = extract::tokenize_entities(&m.tokenizer, &names, &template, 8192).unwrap();
    let opts = ExtractOptions {
        pooling: Pooling::Mean,
        batch_size: 6,
    };
    let whole = extract::extract(&m.model, &ents, &opts, &mut |_, _, _| true).unwrap();
    let (layers, d) = (m.model.config.n_layers + 1, m.model.config.d_model);
    let batches = extract::plan_batches(&ents, opts.batch_size, extract::Batching::SameLength);
    assert!(batches.len() > 1);
    let mut seen = vec![false; names.len()];
    for which in &batches {
        let rows = extract::batch_rows(&m.model, &ents, which, opts.pooling).unwrap();
        assert_eq!(rows.len(), layers * which.len() * d);
        for (j, &e) in which.iter().enumerate() {
            seen[e] = true;
            for l in 0..layers {
                let at = (l * which.len() + j) * d;
                assert_eq!(
                    &rows[at..at + d],
                    whole.vector(l, e),
                    "layer {l}, entity {e}"
                );
            }
        }
    }
    assert!(
        seen.iter().all(|&s| s),
        "every entity is in exactly one batch"
    );
}

#[test]
fn entity_span_covers_only_the_name() {
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let t = Template::new("The city of {name} is located in").unwrap();
    let e = &extract::tokenize_entities(&m.tokenizer, &["São Paulo".into()], &t, 8192).unwrap()[0];
    let name_tokens: Vec<String> = e.ids[e.span.clone()]
        .iter()
        .map(|&i| m.tokenizer.decode(&[i]).unwrap())
        .collect();
    assert_eq!(name_tokens.concat().trim(), "São Paulo", "{name_tokens:?}");
    let after = m.tokenizer.decode(&e.ids[e.span.end..]).unwrap();
    assert_eq!(after, " is located in");
}

#[test]
fn cancelling_stops_between_batches() {
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let t = Template::new("{name}").unwrap();
    let ents = extract::tokenize_entities(&m.tokenizer, &place_names(), &t, 8192).unwrap();
    let mut calls = 0;
    let r = extract::extract(
        &m.model,
        &ents,
        &ExtractOptions {
            pooling: Pooling::Last,
            batch_size: 4,
        },
        &mut |_, _, _| {
            calls += 1;
            calls < 2
        },
    );
    assert!(matches!(r, Err(probelab::Error::Cancelled)));
    assert_eq!(calls, 2);
}

/// Every supported quant type loads and runs; the result tracks the F32 model, closer for
/// types with more bits.
#[test]
fn every_quant_type_runs_and_tracks_f32() {
    let load = |dt: GgmlDType| {
        let bytes = tiny_llama(dt, "llama", 7);
        LoadedModel::read(&mut std::io::Cursor::new(bytes), &LoadOptions::default()).unwrap()
    };
    let reference = load(GgmlDType::F32);
    let names: Vec<String> = ["the cat", "an ant", "xyz 123"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t = Template::new("{name}").unwrap();
    let run = |m: &LoadedModel| {
        let ents = extract::tokenize_entities(&m.tokenizer, &names, &t, 64).unwrap();
        extract::extract(
            &m.model,
            &ents,
            &ExtractOptions::default(),
            &mut |_, _, _| true,
        )
        .unwrap()
    };
    let base = run(&reference);
    for (dt, min_cos) in [
        (GgmlDType::F16, 0.9999),
        (GgmlDType::BF16, 0.9999),
        (GgmlDType::Q8_0, 0.9999),
        (GgmlDType::Q6K, 0.9995),
        (GgmlDType::Q5_0, 0.999),
        (GgmlDType::Q5_1, 0.999),
        (GgmlDType::Q5K, 0.999),
        (GgmlDType::Q4_0, 0.995),
        (GgmlDType::Q4_1, 0.995),
        (GgmlDType::Q4K, 0.995),
        (GgmlDType::Q3K, 0.98),
        (GgmlDType::Q2K, 0.95),
    ] {
        let acts = run(&load(dt));
        let last = base.n_layers;
        let worst = (0..names.len())
            .map(|e| cosine(acts.vector(last, e), base.vector(last, e)))
            .fold(1.0, f64::min);
        eprintln!("{dt:?}: worst cosine to F32 at the last layer {worst:.5}");
        assert!(
            acts.data.iter().all(|v| v.is_finite()),
            "{dt:?} gave non-finite values"
        );
        assert!(worst >= min_cos, "{dt:?}: cosine {worst} < {min_cos}");
    }
}

/// The random-initialised control model: same shapes and tokenizer, weights redrawn with each
/// tensor's own mean and spread, reproducible from its seed.
#[test]
fn random_init_model_is_seeded_and_matches_weight_statistics() {
    let bytes = tiny_llama(GgmlDType::Q8_0, "llama", 11);
    let m = LoadedModel::read(&mut std::io::Cursor::new(bytes), &LoadOptions::default()).unwrap();
    let names: Vec<String> = ["the cat", "an ant"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t = Template::new("{name}").unwrap();
    let ents = extract::tokenize_entities(&m.tokenizer, &names, &t, 64).unwrap();
    let run = |model: &probelab::model::Llama| {
        extract::extract(model, &ents, &ExtractOptions::default(), &mut |_, _, _| {
            true
        })
        .unwrap()
    };
    let a = run(&m.model.random_like(5).unwrap());
    let b = run(&m.model.random_like(5).unwrap());
    let c = run(&m.model.random_like(6).unwrap());
    let real = run(&m.model);
    assert_eq!(a.data, b.data, "same seed, same model");
    assert_ne!(a.data, c.data, "another seed, another model");
    // Layer 0 is the (redrawn) embedding: its spread matches the real embedding's (uniform in
    // [-1, 1): std 0.577), while the vectors themselves are unrelated.
    let std = |v: &[f32]| {
        let m = v.iter().sum::<f32>() / v.len() as f32;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32).sqrt()
    };
    let (s_rand, s_real) = (std(a.layer(0)), std(real.layer(0)));
    assert!(
        (s_rand / s_real - 1.0).abs() < 0.1,
        "std {s_rand} vs {s_real}"
    );
    assert!(cosine(a.vector(0, 0), real.vector(0, 0)).abs() < 0.3);
}
