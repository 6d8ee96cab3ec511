//! The prompt sweep (issue 14): several templates fitted side by side, (template, layer) chosen
//! by validation inside training, one permutation null whose shuffles re-run that choice over
//! templates × layers. On synthetic activations (no model): a planted template is found and
//! its p-value stays at the floor; pure noise over 5 templates × 31 layers gives a corrected p
//! below 0.05 at the nominal rate (2%–8% of 200 datasets) while the best uncorrected p does far
//! more often; bad prompt sets are refused. Then
//! `probelab run` with two `--prompt` on the default model.

mod common;

use std::collections::BTreeMap;

use probelab::data::{Dataset, TargetKind};
use probelab::extract::prompts::{self, prompt_set, read_prompt_lines};
use probelab::extract::{Activations, Pooling, Template};
use probelab::probe::analysis::{AnalysisOptions, ControlInputs, Report, ReportContext, SplitSpec};
use probelab::probe::split::SplitMix64;
use probelab::probe::{analyze, analyze_prompts, LayerInputs};
use probelab::render::figures;

/// `n` places at random on the globe, named "place i".
fn places(n: usize, seed: u64) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let mut u = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let targets: Vec<Vec<f64>> = (0..n)
        .map(|_| vec![u() * 130.0 - 60.0, u() * 340.0 - 170.0])
        .collect();
    Dataset {
        name: "synthetic-places".into(),
        kind: TargetKind::Space,
        names: (0..n).map(|i| format!("place {i}")).collect(),
        targets,
        groups: BTreeMap::new(),
        is_test: None,
    }
}

/// Gaussian noise at every layer; with `plant = Some((layer, strength))` a random linear image
/// of the z-scored latitude and longitude is added at that layer.
fn acts(
    ds: &Dataset,
    n_layers: usize,
    d: usize,
    plant: Option<(usize, f64)>,
    seed: u64,
) -> Activations {
    let n = ds.len();
    let mut rng = SplitMix64::new(seed);
    let mut a = Activations::zeros(n_layers, n, d);
    for v in a.data.iter_mut() {
        *v = rng.std_normal() as f32;
    }
    if let Some((l, strength)) = plant {
        let z: Vec<Vec<f64>> = (0..2)
            .map(|t| {
                let col: Vec<f64> = ds.targets.iter().map(|r| r[t]).collect();
                let m = col.iter().sum::<f64>() / n as f64;
                let s = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64).sqrt();
                col.iter().map(|v| (v - m) / s).collect()
            })
            .collect();
        let w: Vec<f64> = (0..2 * d).map(|_| rng.std_normal()).collect();
        let layer = &mut a.data[l * n * d..(l + 1) * n * d];
        for (i, row) in layer.chunks_mut(d).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v += (strength * (z[0][i] * w[j] + z[1][i] * w[d + j])) as f32;
            }
        }
    }
    a
}

fn ctx() -> ReportContext {
    ReportContext {
        model_name: "synthetic".into(),
        model_sha256: "0".repeat(64),
        prompt_template: "{name}".into(),
        pooling: Pooling::Last,
        dataset_name: "synthetic-places".into(),
    }
}

/// The probe and its null only: the baselines and checks that do not depend on the prompt
/// are off, so that the calibration's 200 datasets run in seconds.
fn lean(b: usize) -> AnalysisOptions {
    AnalysisOptions {
        n_permutations: b,
        ngram_buckets: 0,
        gain_over_names: false,
        knn_neighbours: vec![],
        learning: false,
        neuron_check: false,
        layer_predictions: false,
        ..AnalysisOptions::default()
    }
}

fn split(seed: u64) -> SplitSpec {
    SplitSpec::Random {
        test_fraction: 0.25,
        seed,
    }
}

fn inputs(a: &Activations) -> LayerInputs<'_> {
    LayerInputs {
        acts: a,
        random_init: None,
        first_token_ids: &[],
        name_surprisal: None,
        in_flight: 0,
    }
}

/// The sweep over `templates`, each with its activations.
fn sweep(
    templates: &[&str],
    activations: &[Activations],
    ds: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
) -> probelab::Result<Report> {
    let s: Vec<(&str, LayerInputs<'_>)> = templates
        .iter()
        .zip(activations)
        .map(|(t, a)| (*t, inputs(a)))
        .collect();
    analyze_prompts(
        &s,
        ds,
        split,
        opts,
        &ctx(),
        &mut |_, _, _| true,
        &mut |_| {},
    )
}

const FIVE: [&str; 5] = [
    "{name}",
    "What are the lat/lon coordinates of {name}",
    "Where is {name}",
    "{NAME}",
    "ok yes maybe so then {name}",
];

#[test]
fn the_planted_template_is_chosen_and_its_p_value_stays_at_the_floor() {
    let ds = places(300, 1);
    let (n_layers, d, b) = (6, 12, 49);
    // Only "Where is {name}" carries the places, at layer 4; the others are noise.
    let planted = 2;
    let activations: Vec<Activations> = (0..FIVE.len())
        .map(|p| {
            acts(
                &ds,
                n_layers,
                d,
                (p == planted).then_some((4, 0.8)),
                10 + p as u64,
            )
        })
        .collect();
    let opts = AnalysisOptions {
        n_permutations: b,
        ngram_buckets: 256,
        ..AnalysisOptions::default()
    };
    let r = sweep(&FIVE, &activations, &ds, &split(3), &opts).unwrap();
    assert_eq!(r.prompt, FIVE[planted]);
    assert_eq!(r.selected.layer, 4);
    assert_eq!(r.selected.by_fold[0].prompt.as_deref(), Some(FIVE[planted]));
    let floor = 1.0 / (1 + b) as f64;
    assert_eq!(
        r.selected.p_value,
        Some(floor),
        "{}",
        r.selected.p_value_method
    );
    assert!(r
        .selected
        .p_value_method
        .contains("5 prompt templates × 7 layers"));
    assert!(r.selected.r2_test > 0.5, "R² {}", r.selected.r2_test);

    // Every template with its own curve; the chosen one's is the report's.
    assert_eq!(r.prompts.len(), FIVE.len());
    for (p, pr) in r.prompts.iter().enumerate() {
        assert_eq!(pr.template, FIVE[p]);
        assert_eq!(pr.selected, p == planted);
        assert_eq!(pr.layers.len(), n_layers + 1);
        if p != planted {
            assert!(pr.r2_test < 0.1, "noise template {p}: R² {}", pr.r2_test);
        }
    }
    assert_eq!(r.prompts[planted].layers, r.layers);
    assert_eq!(r.prompts[planted].r2_test, r.selected.r2_test);
    assert_eq!(r.layers.len(), n_layers + 1);

    // The spread: per layer the lowest and highest template; overall the templates' own range.
    let spread = r.prompt_spread.as_ref().unwrap();
    assert_eq!(spread.by_layer.len(), n_layers + 1);
    let at4: Vec<f64> = r.prompts.iter().map(|p| p.layers[4].r2_test).collect();
    assert_eq!(
        spread.by_layer[4].r2_test_max,
        at4.iter().cloned().fold(f64::MIN, f64::max)
    );
    assert_eq!(
        spread.by_layer[4].r2_test_min,
        at4.iter().cloned().fold(f64::MAX, f64::min)
    );
    assert_eq!(spread.r2_test_max, r.selected.r2_test);
    assert_eq!(spread.template_max, FIVE[planted]);
    assert!(spread.r2_test_min < 0.1);

    // The summary gives that range and says what the p-value paid for.
    let summary = figures::summary(&r);
    assert!(
        summary.contains(&format!(
            "moves held-out R² from {:.2} (\"{}\") to {:.2} (\"{}\")",
            spread.r2_test_min, spread.template_min, spread.r2_test_max, spread.template_max
        )),
        "{summary}"
    );
    assert!(
        summary.contains("paying for the choice of prompt and layer"),
        "{summary}"
    );
    assert!(summary.contains("all 5 templates × 7 layers"), "{summary}");

    // report.json round-trips with the sweep, and a report without it still loads.
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["prompts"].as_array().unwrap().len(), 5);
    assert!(json["prompts"][0]["layers"][0].get("controls").is_some());
    let back: Report = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, r);
    let mut old = json;
    let obj = old.as_object_mut().unwrap();
    obj.remove("prompts");
    obj.remove("prompt_spread");
    let old: Report = serde_json::from_value(old).unwrap();
    assert!(old.prompts.is_empty() && old.prompt_spread.is_none());

    // The layer chart draws the templates' band.
    let scene = serde_json::to_string(&figures::layer_scene(&r)).unwrap();
    assert!(scene.contains("the 5 prompt templates (lowest to highest)"));
}

#[test]
fn one_template_gives_exactly_the_report_of_a_run_without_a_sweep() {
    let ds = places(120, 5);
    let a = acts(&ds, 4, 8, Some((2, 0.6)), 6);
    let opts = AnalysisOptions {
        n_permutations: 19,
        ngram_buckets: 128,
        ..AnalysisOptions::default()
    };
    let plain = analyze(
        &a,
        &ds,
        &split(1),
        &opts,
        &ControlInputs::default(),
        &ctx(),
        &mut |_, _, _| true,
    )
    .unwrap();
    let one = sweep(&["{name}"], std::slice::from_ref(&a), &ds, &split(1), &opts).unwrap();
    assert_eq!(one, plain);
    assert!(one.prompts.is_empty() && one.prompt_spread.is_none());
    let json = serde_json::to_value(&one).unwrap();
    assert!(json.get("prompts").is_none() && json.get("prompt_spread").is_none());
}

/// Pure noise over 5 templates × 31 layers, 200 times: Gaussian activations that carry none
/// of the targets. The corrected p must be calibrated over all 155 choices (below 0.05 in 2%–8%
/// of the datasets: 5% ± about two binomial standard deviations), where the best of the
/// uncorrected p-values (what trying every prompt and layer and reporting the best gives) must
/// not. Each shuffle re-runs the choice on validation and gives the test R² of what it chose,
/// as the observed statistic is made; a null of each shuffle's best test R² over all pairs
/// would reject far less often than 5% (0.5% here), wasting power. One template alone (the
/// choice of layer only) must be calibrated too.
#[test]
fn pure_noise_over_prompts_and_layers_keeps_the_corrected_p_at_its_level() {
    let (datasets, n, d, n_layers, b) = (200u64, 60, 4, 30, 99);
    let opts = lean(b);
    let (mut corrected, mut best_of, mut layer_only) = (0usize, 0usize, 0usize);
    for k in 0..datasets {
        let ds = places(n, 1000 + k);
        let activations: Vec<Activations> = (0..FIVE.len() as u64)
            .map(|p| acts(&ds, n_layers, d, None, 5000 + 10 * k + p))
            .collect();
        let r = sweep(&FIVE, &activations, &ds, &split(k), &opts).unwrap();
        assert_eq!(
            r.prompts.len() * r.layers.len(),
            FIVE.len() * (n_layers + 1)
        );
        if r.selected.p_value.unwrap() < 0.05 {
            corrected += 1;
        }
        // One template: the same null pays for the layer alone.
        let one = sweep(&FIVE[..1], &activations[..1], &ds, &split(k), &opts).unwrap();
        if one.selected.p_value.unwrap() < 0.05 {
            layer_only += 1;
        }
        let best = r
            .prompts
            .iter()
            .flat_map(|p| p.layers.iter().filter_map(|l| l.p_value_uncorrected))
            .fold(1.0, f64::min);
        if best < 0.05 {
            best_of += 1;
        }
    }
    let rate = |c: usize| c as f64 / datasets as f64;
    eprintln!(
        "calibration over {datasets} pure-noise datasets × {} prompts × {} layers: corrected p \
         < 0.05 in {:.1}%, best uncorrected p < 0.05 in {:.1}%; one prompt × {} layers: \
         corrected p < 0.05 in {:.1}%",
        FIVE.len(),
        n_layers + 1,
        100.0 * rate(corrected),
        100.0 * rate(best_of),
        n_layers + 1,
        100.0 * rate(layer_only)
    );
    assert!(
        (0.02..=0.08).contains(&rate(corrected)),
        "corrected p < 0.05 in {:.1}% of pure-noise datasets, not 2%–8%",
        100.0 * rate(corrected)
    );
    assert!(
        (0.02..=0.08).contains(&rate(layer_only)),
        "one prompt: corrected p < 0.05 in {:.1}% of pure-noise datasets, not 2%–8%",
        100.0 * rate(layer_only)
    );
    assert!(
        rate(best_of) >= 0.25 && rate(best_of) >= 4.0 * rate(corrected),
        "the best uncorrected p < 0.05 in only {:.1}% (corrected {:.1}%)",
        100.0 * rate(best_of),
        100.0 * rate(corrected)
    );
}

#[test]
fn bad_prompt_sets_are_refused_with_the_problem_named() {
    let err = |r: probelab::Result<Vec<Template>>| match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    let texts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let e = err(prompt_set(&texts(&["{name}", "Where is it?"])));
    assert!(
        e.contains("'Where is it?' has no {name} placeholder"),
        "{e}"
    );
    let e = err(prompt_set(&texts(&["{name}", "Where is {name}", "{name}"])));
    assert!(
        e.contains("'{name}' is given twice (templates 1 and 3)"),
        "{e}"
    );
    let e = err(prompt_set(&[]));
    assert!(e.contains("the prompt set is empty"), "{e}");
    // A prompts file of blank lines is an empty set too.
    assert!(read_prompt_lines("\n  \r\n\n").is_empty());
    assert_eq!(
        read_prompt_lines("{name}\r\n\nWhere is {name}\n"),
        ["{name}", "Where is {name}"]
    );
    let e = prompts::shipped_kind("weather").unwrap_err().to_string();
    assert!(
        e.contains("no shipped prompt set 'weather'") && e.contains("places, time"),
        "{e}"
    );

    // The analysis refuses the same, whoever calls it.
    let ds = places(40, 2);
    let a = acts(&ds, 2, 4, None, 3);
    let e = sweep(&[], &[], &ds, &split(0), &lean(9))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no templates"), "{e}");
    let twice = [a.clone(), a.clone()];
    let e = sweep(&["{name}", "{name}"], &twice, &ds, &split(0), &lean(9))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'{name}' is given twice"), "{e}");
    let other = acts(&ds, 3, 4, None, 4);
    let e = sweep(&["{name}", "{NAME}"], &[a, other], &ds, &split(0), &lean(9))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("template '{NAME}'") && e.contains("same model"),
        "{e}"
    );
}

#[test]
fn capitals_template_puts_the_name_in_capitals_and_marks_its_bytes() {
    let t = Template::new("Where is {NAME}?").unwrap();
    let (prompt, range) = t.render("Paris");
    assert_eq!(prompt, "Where is PARIS?");
    assert_eq!(&prompt[range], "PARIS");
    let e = Template::new("{name} or {NAME}").unwrap_err().to_string();
    assert!(e.contains("use exactly one"), "{e}");
    // The shipped sets: Gurnee & Tegmark's, with the random prefix last.
    let places = prompts::shipped(TargetKind::Space, "a b c");
    assert_eq!(places.len(), 5);
    assert_eq!(places[4], "a b c {name}");
    assert!(prompt_set(&places).is_ok());
    assert!(prompt_set(&prompts::shipped(TargetKind::Time, "x")).is_ok());
}

#[test]
fn run_with_two_prompts_reports_both() {
    let model = common::default_model();
    let out = std::env::temp_dir().join(format!("probelab-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (code, err) = common::probelab(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--dataset",
        "world-places-200",
        "--prompt",
        "{name}",
        "--prompt",
        "Where is {name}",
        "--no-random-init",
        "--permutations",
        "19",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let r = common::read_report(&out);
    let prompts = r["prompts"].as_array().unwrap();
    let templates: Vec<&str> = prompts
        .iter()
        .map(|p| p["template"].as_str().unwrap())
        .collect();
    assert_eq!(templates, ["{name}", "Where is {name}"]);
    for p in prompts {
        assert_eq!(p["layers"].as_array().unwrap().len(), 31);
        assert!(p["r2_test"].is_number());
    }
    let chosen: Vec<&serde_json::Value> =
        prompts.iter().filter(|p| p["selected"] == true).collect();
    assert_eq!(chosen.len(), 1);
    assert_eq!(r["prompt"], chosen[0]["template"]);
    assert_eq!(r["prompt_spread"]["by_layer"].as_array().unwrap().len(), 31);
    assert!(err.contains("moves held-out R² from"), "{err}");
    // The activations kept for re-fits are the chosen template's.
    assert!(out.join("acts.safetensors").exists());
    let _ = std::fs::remove_dir_all(&out);
}
