//! The CPU extraction path on the default model and on small GGUFs in every quant type.

mod common;

use candle_core::quantized::GgmlDType;
use common::*;
use probelab::extract::{self, ExtractOptions, Pool, Template};
use probelab::load::LoadedModel;
use probelab::model::LoadOptions;

fn city_names() -> Vec<String> {
    [
        "Paris",
        "São Paulo",
        "東京",
        "Kraków",
        "Côte d'Ivoire",
        "Reykjavík",
        "New York City",
        "Lagos",
        "Cairo",
        "Mumbai",
        "Buenos Aires",
        "Sydney",
        "Ulaanbaatar",
        "Lima",
        "Nairobi",
        "Zürich",
        "Ōsaka",
        "Москва",
        "القاهرة",
        "Wellington",
        "Anchorage",
        "Kinshasa",
        "Jakarta",
        "Tehran",
        "Bogotá",
        "Helsinki",
        "Dakar",
        "Hanoi",
        "Perth",
        "Quito",
        "Oslo",
        "Accra",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn batching_does_not_change_the_vectors() {
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    // 64 entities of varied lengths, some prompts padded a lot within the batch.
    let mut names = city_names();
    names.extend(city_names().iter().map(|n| format!("the old town of {n}")));
    assert_eq!(names.len(), 64);
    let template = Template::new("{name}").unwrap();
    let ents = extract::tokenize_entities(&m.tokenizer, &names, &template, 8192).unwrap();
    for pool in [Pool::Last, Pool::Mean] {
        let batched = extract::extract(
            &m.model,
            &ents,
            &ExtractOptions {
                pool,
                batch_size: 64,
            },
            &mut |_, _, _| true,
        )
        .unwrap();
        let single = extract::extract(
            &m.model,
            &ents,
            &ExtractOptions {
                pool,
                batch_size: 1,
            },
            &mut |_, _, _| true,
        )
        .unwrap();
        let worst = (0..=m.model.config.n_layers)
            .flat_map(|l| (0..names.len()).map(move |e| (l, e)))
            .map(|(l, e)| rel_diff(batched.vector(l, e), single.vector(l, e)))
            .fold(0.0, f64::max);
        eprintln!("{pool:?}: worst relative difference batch-64 vs one-at-a-time = {worst:.2e}");
        assert!(
            worst <= 1e-4,
            "{pool:?}: batching changed vectors by {worst:.2e}"
        );
    }
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
    let ents = extract::tokenize_entities(&m.tokenizer, &city_names(), &t, 8192).unwrap();
    let mut calls = 0;
    let r = extract::extract(
        &m.model,
        &ents,
        &ExtractOptions {
            pool: Pool::Last,
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
