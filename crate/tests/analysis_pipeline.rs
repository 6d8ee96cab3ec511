//! The analysis pipeline on synthetic activations (no model needed): a planted signal is found
//! and survives its controls, noise does not, block hold-outs never train on the held-out group,
//! the control task and n-gram baseline behave, and bad inputs fail with clear errors.

use std::collections::BTreeMap;

use probelab::data::{self, Dataset, TargetKind};
use probelab::extract::acts::ActsMeta;
use probelab::extract::{Activations, Pooling};
use probelab::probe::analysis::{
    check_matches, predictions, predictions_csv, AnalysisOptions, ControlInputs, Report,
    ReportContext, SpaceTargets, SplitSpec,
};
use probelab::probe::analyze;
use probelab::probe::split::SplitMix64;
use probelab::render::{verdict, Outcome, Verdict};
use probelab::Error;

struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }
    fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (a, b) = (1.0 - self.uniform(), self.uniform());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }
}

fn random_name(rng: &mut Rng, i: usize) -> String {
    let letters: String = (0..6)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect();
    format!("{letters}{}", (b'a' + (i % 26) as u8) as char)
}

const CONTINENTS: [&str; 5] = ["Africa", "Americas", "Asia", "Europe", "Oceania"];

fn space_dataset(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut names = Vec::new();
    let mut targets = Vec::new();
    let mut continent = Vec::new();
    for i in 0..n {
        names.push(random_name(&mut rng, i));
        let lat = rng.uniform() * 130.0 - 60.0;
        let lon = rng.uniform() * 340.0 - 170.0;
        targets.push(vec![lat, lon]);
        continent.push(CONTINENTS[((lon + 170.0) / 68.0).floor().min(4.0) as usize].to_string());
    }
    let mut groups = BTreeMap::new();
    groups.insert("continent".to_string(), continent);
    Dataset {
        name: "synthetic-places".into(),
        kind: TargetKind::Space,
        names,
        targets,
        groups,
        is_test: None,
    }
}

fn time_dataset(n: usize, seed: u64, years_in_names: bool) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut names = Vec::new();
    let mut targets = Vec::new();
    let mut century = Vec::new();
    for i in 0..n {
        let year = (1000.0 + rng.uniform() * 1000.0).floor();
        names.push(if years_in_names {
            format!("event of {year}")
        } else {
            random_name(&mut rng, i)
        });
        targets.push(vec![year]);
        century.push(format!("{}", (year / 100.0).floor() as i64 + 1));
    }
    let mut groups = BTreeMap::new();
    groups.insert("century".to_string(), century);
    Dataset {
        name: "synthetic-years".into(),
        kind: TargetKind::Time,
        names,
        targets,
        groups,
        is_test: None,
    }
}

/// Gaussian noise everywhere; at `signal_layer` a random linear image of the z-scored targets
/// with the given strength is added.
fn activations(
    ds: &Dataset,
    n_layers: usize,
    d: usize,
    signal_layer: Option<usize>,
    strength: f64,
    seed: u64,
) -> Activations {
    let n = ds.len();
    let mut rng = Rng::new(seed);
    let mut acts = Activations::zeros(n_layers, n, d);
    for v in acts.data.iter_mut() {
        *v = rng.normal() as f32;
    }
    if let Some(l) = signal_layer {
        let k = ds.targets[0].len();
        let cols: Vec<(f64, f64)> = (0..k)
            .map(|t| {
                let m = ds.targets.iter().map(|r| r[t]).sum::<f64>() / n as f64;
                let s =
                    (ds.targets.iter().map(|r| (r[t] - m).powi(2)).sum::<f64>() / n as f64).sqrt();
                (m, s)
            })
            .collect();
        let w: Vec<f64> = (0..k * d).map(|_| rng.normal()).collect();
        for i in 0..n {
            for j in 0..d {
                let s: f64 = (0..k)
                    .map(|t| (ds.targets[i][t] - cols[t].0) / cols[t].1 * w[t * d + j])
                    .sum();
                acts.data[(l * n + i) * d + j] += (strength * s) as f32;
            }
        }
    }
    acts
}

fn first_tokens(n: usize, types: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(types) as u32).collect()
}

fn ctx() -> ReportContext {
    ReportContext {
        model_name: "synthetic".into(),
        model_sha256: "0".repeat(64),
        prompt_template: "{name}".into(),
        pooling: Pooling::Last,
        dataset_name: "synthetic".into(),
    }
}

fn opts(b: usize) -> AnalysisOptions {
    AnalysisOptions {
        n_permutations: b,
        ngram_buckets: 256,
        ..AnalysisOptions::default()
    }
}

fn run(
    acts: &Activations,
    ds: &Dataset,
    split: &SplitSpec,
    o: &AnalysisOptions,
    tokens: Vec<u32>,
    random_init: Option<&Activations>,
) -> probelab::Result<Report> {
    analyze(
        acts,
        ds,
        split,
        o,
        &ControlInputs {
            first_token_ids: tokens,
            random_init,
            name_surprisal: None,
        },
        &ctx(),
        &mut |_, _, _| true,
    )
}

fn random_split() -> SplitSpec {
    SplitSpec::Random {
        test_fraction: 0.25,
        seed: 3,
    }
}

fn err_text(r: probelab::Result<Report>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn planted_signal_is_selected_with_a_small_p_value() {
    let ds = space_dataset(400, 1);
    let acts = activations(&ds, 4, 16, Some(3), 0.8, 2);
    let random = activations(&ds, 4, 16, None, 0.0, 9);
    let tokens = first_tokens(400, 60, 4);
    let r = run(
        &acts,
        &ds,
        &random_split(),
        &opts(50),
        tokens,
        Some(&random),
    )
    .unwrap();

    assert_eq!(
        r.selected.layer,
        3,
        "{:#?}",
        r.layers.iter().map(|l| l.r2_validation).collect::<Vec<_>>()
    );
    let p = r.selected.p_value.unwrap();
    assert!(p <= 1.0 / 51.0 + 1e-12, "p = {p}");
    let l3 = &r.layers[3];
    assert!(l3.r2_test > 0.6, "r2_test {}", l3.r2_test);
    assert!(l3.r2_validation > 0.6 && l3.r2_train >= l3.r2_test - 0.1);
    assert!(l3.km_mean.unwrap() < 4000.0 && l3.proximity_error.unwrap() < 0.2);
    assert!(l3.spearman_test.iter().all(|s| s.unwrap() > 0.7));
    assert!(l3.years_mae.is_none());
    // Controls beside the headline.
    let c = &l3.controls;
    // A shuffled fit can align by chance with the layer's dominant signal direction, so its
    // maximum is not ~0; it must still be far below the real score.
    assert!(c.shuffled_r2_max.unwrap() < 0.35, "{c:?}");
    assert!(c.shuffled_r2_mean.unwrap() < 0.02);
    assert!(c.control_task_r2.unwrap() < 0.1);
    assert!(c.selectivity.unwrap() > 0.5);
    assert!(c.random_init_r2.unwrap() < 0.1);
    assert!(l3.p_value_uncorrected.unwrap() <= 1.0 / 51.0 + 1e-12);
    for l in [0, 1, 2, 4] {
        assert!(
            r.layers[l].r2_test < 0.1,
            "layer {l}: {}",
            r.layers[l].r2_test
        );
    }
    // Selection is honest and labelled.
    assert!(r
        .selected
        .chosen_by
        .contains("5-fold validation R² on the training set"));
    assert_eq!(r.selected.r2_test, l3.r2_test);
    // The null re-runs that selection per shuffle and scores what it chose.
    let method = &r.selected.p_value_method;
    assert!(
        method.contains("selection re-run on the shuffled targets")
            && method.contains("the test R² of what it chose"),
        "{method}"
    );
    // Baselines: names are random letters, layer 0 is noise.
    assert!(
        r.baselines.ngram_r2_test.unwrap() < 0.1,
        "{:?}",
        r.baselines
    );
    assert_eq!(r.baselines.layer0_r2_test, r.layers[0].r2_test);
    // Space neurons: layer 3 has dimensions that track latitude/longitude.
    let n3: Vec<_> = r.neurons.iter().filter(|n| n.layer == 3).collect();
    assert_eq!(n3.len(), 2);
    assert!(
        n3.iter()
            .all(|n| n.p_value.unwrap() < 0.05 && n.spearman.abs() > 0.3),
        "{n3:?}"
    );
    let n0: Vec<_> = r.neurons.iter().filter(|n| n.layer == 0).collect();
    assert!(n0.iter().all(|n| n.p_value.unwrap() > 0.05), "{n0:?}");
    // Groups, split, predictions.
    assert_eq!(r.by_group_column.as_deref(), Some("continent"));
    assert_eq!(
        r.by_group
            .iter()
            .map(|g| g.n_train + g.n_test)
            .sum::<usize>(),
        400
    );
    assert_eq!((r.split.n_train, r.split.n_test), (300, 100));
    let rows = predictions(&r);
    assert_eq!(rows.len(), 400);
    assert_eq!(rows.iter().filter(|p| p.split == "test").count(), 100);
    let csv = predictions_csv(&r).unwrap();
    assert!(csv.starts_with("name,split,true_latitude,true_longitude,predicted_latitude,predicted_longitude,error_km,continent\n"));
    assert_eq!(csv.lines().count(), 401);
    let lp = r.layer_predictions.as_ref().unwrap();
    assert_eq!(
        (
            lp.predicted.len(),
            lp.entities.len(),
            lp.predicted[3][0].len()
        ),
        (5, 100, 2)
    );
    // The plain-language summary carries the report's own figures.
    let text = probelab::render::figures::summary(&r);
    let s = &r.selected;
    for part in [
        format!("Layer 3 (chosen on the training set's validation folds) predicts latitude and longitude of held-out entities with R² {:.2}", s.r2_test),
        format!("median error {:.0} km", s.km_median.unwrap()),
        format!("p = {:.3} against 50 shuffled-target refits", s.p_value.unwrap()),
        format!("layer 0 (token embeddings) R² {:.2} (the probe is {:+.2} above it)", r.baselines.layer0_r2_test, s.r2_test - r.baselines.layer0_r2_test),
        format!("Random-initialised model at the same layer: R² {:.2}", s.random_init_r2.unwrap()),
    ] {
        assert!(text.contains(&part), "missing {part:?} in {text}");
    }
    let worst = r
        .by_group
        .iter()
        .filter(|g| g.n_test > 0 && g.km_mean.is_some())
        .max_by(|a, b| a.km_mean.unwrap().total_cmp(&b.km_mean.unwrap()))
        .unwrap();
    assert!(
        text.contains(&format!(
            "Worst served: {} (mean error {:.0} km, {} test entities)",
            worst.group,
            worst.km_mean.unwrap(),
            worst.n_test
        )),
        "{text}"
    );
}

/// The verdict card's numbers are the report's own, and each mark follows from them.
fn check_card_against_report(r: &Report) -> Verdict {
    let v = verdict(r);
    let s = &r.selected;
    assert_eq!(v.layer, s.layer);
    assert_eq!(v.r2_test, s.r2_test);
    assert_eq!(v.p_value, s.p_value);
    match r.dataset.target {
        TargetKind::Space => assert_eq!((v.error, v.error_unit), (s.km_median, "km")),
        TargetKind::Time => assert_eq!((v.error, v.error_unit), (s.years_mae, "years")),
    }
    let keys: Vec<&str> = v.checks.iter().map(|c| c.key).collect();
    assert_eq!(
        keys,
        [
            "shuffled",
            "names",
            "beyond_names",
            "layer0",
            "random_init",
            "control_task",
            "unseen_group"
        ]
    );
    let by_key = |k: &str| v.checks.iter().find(|c| c.key == k).unwrap();
    // A comparison line: the probe's and the control's figures, marked by which is larger.
    let compared = |k: &str, probe: f64, control: Option<f64>| {
        let c = by_key(k);
        assert_eq!((c.value, c.against), (Some(probe), control), "{k}");
        let want = match control {
            None => Outcome::NotRun,
            Some(b) if probe > b => Outcome::Yes,
            Some(_) => Outcome::No,
        };
        assert_eq!(c.outcome, want, "{k}: {c:?}");
        if let Some(b) = control {
            assert!(
                c.detail
                    .contains(&format!("{:+.2} ({probe:.2} against {b:.2})", probe - b)),
                "{k}: {}",
                c.detail
            );
        }
    };
    compared("names", s.r2_test, r.baselines.ngram_r2_test);
    compared("layer0", s.r2_test, Some(r.baselines.layer0_r2_test));
    compared("random_init", s.r2_test, s.random_init_r2);
    compared("control_task", s.r2_test_fitted, s.control_task_r2);
    if let Some(sel) = s.selectivity {
        assert!(by_key("control_task")
            .detail
            .contains(&format!("selectivity {sel:+.2}")));
    }
    let shuffled = by_key("shuffled");
    assert_eq!(shuffled.value, s.p_value);
    match s.p_value {
        Some(p) => {
            assert_eq!(shuffled.outcome == Outcome::Yes, p < 0.05);
            assert!(
                shuffled.detail.contains(&format!("p = {p:.3}")),
                "{}",
                shuffled.detail
            );
            assert!(v
                .headline
                .contains(&format!("p = {p:.3} after choosing the layer")));
        }
        None => assert_eq!(shuffled.outcome, Outcome::NotRun),
    }
    let beyond = by_key("beyond_names");
    assert_eq!(beyond.value, s.gain_p_value);
    match (s.gain_over_names, s.gain_p_value) {
        (Some(g), Some(p)) => {
            assert_eq!(beyond.outcome == Outcome::Yes, g > 0.0 && p < 0.05);
            assert!(
                beyond
                    .detail
                    .contains(&format!("R² {g:+.2} over the n-grams, p = {p:.3}")),
                "{}",
                beyond.detail
            );
        }
        _ => assert_eq!(beyond.outcome, Outcome::NotRun),
    }
    let unseen = by_key("unseen_group");
    if matches!(r.split.kind.as_str(), "group" | "leave_one_group_out") {
        assert_eq!(unseen.value, Some(s.r2_test));
        assert_eq!(unseen.outcome == Outcome::Yes, s.r2_test > 0.0);
    } else {
        assert_eq!((unseen.value, unseen.outcome), (None, Outcome::NotRun));
    }
    assert!(v.headline.contains(&format!("Layer {} reads", s.layer)));
    assert!(v.headline.contains(&format!("R² {:.2}", s.r2_test)));
    if let Some(e) = v.error {
        assert!(v
            .headline
            .contains(&format!("error {e:.0} {}", v.error_unit)));
    }
    // The command line prints the same card: the headline, the warning when a control wins,
    // then one marked line per check.
    let text = v.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let warned = usize::from(v.warning.is_some());
    assert_eq!(lines.len(), 1 + warned + v.checks.len());
    assert_eq!(lines[0], v.headline);
    if let Some(w) = &v.warning {
        assert_eq!(lines[1], format!("  ! {w}"));
    }
    assert_eq!(v.warning, probelab::render::rivals_sentence(r));
    for (line, c) in lines[1 + warned..].iter().zip(&v.checks) {
        assert_eq!(
            *line,
            format!("  {} {}: {}", c.outcome.mark(), c.label, c.detail)
        );
    }
    v
}

#[test]
fn verdict_card_carries_the_reports_numbers() {
    // A planted signal with every control: every line says yes except the unseen region,
    // which a random split does not test.
    let ds = space_dataset(400, 1);
    let acts = activations(&ds, 4, 16, Some(3), 0.8, 2);
    let random = activations(&ds, 4, 16, None, 0.0, 9);
    let r = run(
        &acts,
        &ds,
        &random_split(),
        &opts(50),
        first_tokens(400, 60, 4),
        Some(&random),
    )
    .unwrap();
    let v = check_card_against_report(&r);
    let outcomes: Vec<Outcome> = v.checks.iter().map(|c| c.outcome).collect();
    use Outcome::{No, NotRun, Yes};
    assert_eq!(outcomes, [Yes, Yes, Yes, Yes, Yes, Yes, NotRun], "{v}");

    // Names that spell the year and activations of noise: the names win, and the controls
    // that were not run say so.
    let spelled = time_dataset(600, 11, true);
    let noise = activations(&spelled, 1, 8, None, 0.0, 12);
    let r = run(&noise, &spelled, &random_split(), &opts(0), vec![], None).unwrap();
    let v = check_card_against_report(&r);
    let outcomes: Vec<Outcome> = v.checks.iter().map(|c| c.outcome).collect();
    assert_eq!(outcomes[..3], [NotRun, No, NotRun], "{v}");
    assert_eq!(outcomes[4..], [NotRun, NotRun, NotRun], "{v}");

    // Leave-one-group-out tests the unseen region.
    let split = SplitSpec::Group {
        column: "continent".into(),
        held_out: None,
    };
    let ds = space_dataset(500, 31);
    let acts = activations(&ds, 3, 12, Some(1), 0.8, 32);
    let r = run(
        &acts,
        &ds,
        &split,
        &opts(10),
        first_tokens(500, 50, 2),
        None,
    )
    .unwrap();
    let v = check_card_against_report(&r);
    let unseen = v.checks.iter().find(|c| c.key == "unseen_group").unwrap();
    assert_ne!(unseen.outcome, NotRun, "{v}");
}

#[test]
fn a_control_that_wins_at_any_layer_leads_the_summary_and_the_card() {
    // The trained model carries a weak signal at layer 3; its random twin a strong one at
    // layer 1, where the trained model has none: at the selected layer the twin looks beaten.
    let ds = space_dataset(400, 41);
    let acts = activations(&ds, 4, 16, Some(3), 0.35, 42);
    let random = activations(&ds, 4, 16, Some(1), 1.0, 43);
    let r = run(&acts, &ds, &random_split(), &opts(0), vec![], Some(&random)).unwrap();
    let s = &r.selected;
    assert_eq!(s.layer, 3);
    let twin = r.layers[1].controls.random_init_r2.unwrap();
    assert!(twin > s.r2_test, "twin {twin} vs probe {}", s.r2_test);
    assert!(
        s.random_init_r2.unwrap() < s.r2_test,
        "the twin at layer 3 should look beaten"
    );
    let rivals = probelab::render::rivals(&r);
    assert_eq!(rivals.len(), 1, "{rivals:?}");
    assert_eq!(
        (rivals[0].key, rivals[0].layer, rivals[0].r2),
        ("random_init", Some(1), twin)
    );
    let lead = format!(
        "Read with care: the random-initialised model R² {twin:.2} at layer 1 scores at or above \
         the probe's held-out R² {:.2} at layer 3.",
        s.r2_test
    );
    let text = probelab::render::figures::summary(&r);
    assert!(text.starts_with(&lead), "{text}");
    let v = probelab::render::verdict(&r);
    assert_eq!(v.warning.as_deref(), Some(lead.as_str()));
    assert!(v.to_string().lines().nth(1).unwrap().contains(&lead));

    // Names that spell the year beat noise activations: the names baseline leads.
    let spelled = time_dataset(600, 11, true);
    let noise = activations(&spelled, 1, 8, None, 0.0, 12);
    let r = run(&noise, &spelled, &random_split(), &opts(0), vec![], None).unwrap();
    let text = probelab::render::figures::summary(&r);
    assert!(
        text.starts_with(&format!(
            "Read with care: names alone (character n-grams, no model) R² {:.2}",
            r.baselines.ngram_r2_test.unwrap()
        )),
        "{text}"
    );

    // A planted signal that beats every control: no warning.
    let ds = space_dataset(400, 1);
    let acts = activations(&ds, 4, 16, Some(3), 0.8, 2);
    let random = activations(&ds, 4, 16, None, 0.0, 9);
    let r = run(
        &acts,
        &ds,
        &random_split(),
        &opts(0),
        first_tokens(400, 60, 4),
        Some(&random),
    )
    .unwrap();
    assert!(probelab::render::rivals(&r).is_empty());
    assert!(probelab::render::verdict(&r).warning.is_none());
    assert!(probelab::render::figures::summary(&r).starts_with("Layer 3 "));
}

#[test]
fn report_json_has_the_agreed_keys_and_round_trips() {
    let ds = space_dataset(200, 5);
    let acts = activations(&ds, 2, 8, Some(2), 1.0, 6);
    let r = run(
        &acts,
        &ds,
        &random_split(),
        &opts(20),
        first_tokens(200, 30, 1),
        None,
    )
    .unwrap();
    let json = serde_json::to_string_pretty(&r).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for path in [
        "/model/name",
        "/model/sha256",
        "/model/n_layers",
        "/model/d_model",
        "/dataset/name",
        "/dataset/n",
        "/dataset/target",
        "/prompt",
        "/split/kind",
        "/split/n_train",
        "/split/n_test",
        "/layers/0/layer",
        "/layers/0/alpha",
        "/layers/0/r2_train",
        "/layers/0/r2_test",
        "/layers/0/spearman_test",
        "/layers/0/km_mean",
        "/layers/0/km_median",
        "/layers/0/proximity_error",
        "/layers/0/years_mae",
        "/layers/0/controls/shuffled_r2_mean",
        "/layers/0/controls/shuffled_r2_max",
        "/layers/0/controls/control_task_r2",
        "/layers/0/controls/selectivity",
        "/layers/0/controls/random_init_r2",
        "/selected/layer",
        "/selected/r2_test",
        "/selected/p_value",
        "/baselines/ngram_r2_test",
        "/baselines/layer0_r2_test",
        "/by_group/0/group",
        "/by_group/0/n_train",
        "/by_group/0/n_test",
        "/by_group/0/r2_test",
        "/by_group/0/km_mean",
        "/neurons/0/layer",
        "/neurons/0/index",
        "/neurons/0/target",
        "/neurons/0/spearman",
        "/neurons/0/p_value",
    ] {
        assert!(v.pointer(path).is_some(), "report.json lacks {path}");
    }
    assert_eq!(v["dataset"]["target"], "space");
    assert!(v["layers"][0]["years_mae"].is_null());
    assert!(v["layers"][0]["controls"]["random_init_r2"].is_null());
    // serde_json's default float parsing may be an ulp off, so compare figures, not bits.
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back.layers.len(), r.layers.len());
    assert_eq!(back.entities.len(), r.entities.len());
    assert_eq!(back.selected.layer, r.selected.layer);
    assert!((back.selected.r2_test - r.selected.r2_test).abs() < 1e-12);
    assert_eq!(serde_json::to_value(&back).unwrap()["notes"], v["notes"]);
}

#[test]
fn pure_noise_gives_no_small_p_value_and_no_selectivity() {
    let mut large_p = 0;
    for seed in 0..4 {
        let ds = space_dataset(300, 100 + seed);
        let acts = activations(&ds, 4, 12, None, 0.0, 200 + seed);
        let r = run(
            &acts,
            &ds,
            &random_split(),
            &opts(50),
            first_tokens(300, 40, seed),
            None,
        )
        .unwrap();
        let p = r.selected.p_value.unwrap();
        if p > 0.1 {
            large_p += 1;
        }
        for l in &r.layers {
            assert!(
                l.r2_test < 0.05,
                "seed {seed} layer {}: r2 {}",
                l.layer,
                l.r2_test
            );
            let s = l.controls.selectivity.unwrap();
            assert!(
                s.abs() < 0.1,
                "seed {seed} layer {}: selectivity {s}",
                l.layer
            );
        }
    }
    // Max-over-layers nulls are conservative: noise should essentially never look significant.
    assert!(large_p >= 3, "only {large_p}/4 noise runs had p > 0.1");
}

#[test]
fn control_task_catches_a_layer_that_memorizes_first_tokens() {
    let n = 500;
    let ds = space_dataset(n, 7);
    let tokens = first_tokens(n, 12, 8);
    let d = 16;
    let mut acts = activations(&ds, 2, d, Some(2), 0.8, 9);
    // Layer 1: a fixed random vector per first token plus a little noise (a lexical layer).
    let mut rng = Rng::new(10);
    let emb: Vec<f64> = (0..12 * d).map(|_| rng.normal()).collect();
    for i in 0..n {
        for j in 0..d {
            acts.data[(n + i) * d + j] =
                (2.0 * emb[tokens[i] as usize * d + j] + 0.1 * rng.normal()) as f32;
        }
    }
    let r = run(&acts, &ds, &random_split(), &opts(20), tokens, None).unwrap();
    let (l1, l2) = (&r.layers[1], &r.layers[2]);
    assert!(
        l1.controls.control_task_r2.unwrap() > 0.9,
        "{:?}",
        l1.controls
    );
    assert!(l1.controls.selectivity.unwrap() < -0.8, "{:?}", l1.controls);
    assert!(
        l2.controls.control_task_r2.unwrap() < 0.1,
        "{:?}",
        l2.controls
    );
    assert!(l2.controls.selectivity.unwrap() > 0.5, "{:?}", l2.controls);
    assert_eq!(r.selected.layer, 2);
}

#[test]
fn ngram_baseline_is_high_when_names_spell_the_target() {
    let spelled = time_dataset(600, 11, true);
    let acts = activations(&spelled, 1, 8, None, 0.0, 12);
    let r = run(&acts, &spelled, &random_split(), &opts(0), vec![], None).unwrap();
    let ngram = r.baselines.ngram_r2_test.unwrap();
    assert!(ngram > 0.6, "n-gram R² {ngram}");
    assert!(r
        .layers
        .iter()
        .all(|l| l.years_mae.is_some() && l.km_mean.is_none()));
    assert!(r.selected.p_value.is_none() && r.layers[0].controls.control_task_r2.is_none());
    assert!(r.warnings.iter().any(|w| w.contains("control task")));

    let opaque = time_dataset(600, 11, false);
    let r = run(&acts, &opaque, &random_split(), &opts(0), vec![], None).unwrap();
    assert!(r.baselines.ngram_r2_test.unwrap() < 0.1);
}

#[test]
fn block_hold_out_never_trains_on_the_held_out_group() {
    let ds = space_dataset(400, 21);
    let acts = activations(&ds, 3, 12, Some(2), 0.8, 22);
    let split = SplitSpec::Group {
        column: "continent".into(),
        held_out: Some("Asia".into()),
    };
    let o = opts(10);
    let tokens = first_tokens(400, 50, 3);
    let base = run(&acts, &ds, &split, &o, tokens.clone(), None).unwrap();
    let asia: Vec<usize> = (0..400)
        .filter(|&i| ds.groups["continent"][i] == "Asia")
        .collect();
    assert_eq!(base.split.n_test, asia.len());
    let g = base.by_group.iter().find(|g| g.group == "Asia").unwrap();
    assert_eq!((g.n_train, g.n_test), (0, asia.len()));
    assert!(base
        .by_group
        .iter()
        .filter(|g| g.group != "Asia")
        .all(|g| g.n_test == 0));

    // Scramble the held-out group's targets and activations: nothing learned from training
    // rows may change, and held-out predictions depend only on their own activations.
    let mut ds2 = ds.clone();
    let mut acts2 = acts.clone();
    for (k, &i) in asia.iter().enumerate() {
        ds2.targets[i] = vec![-50.0 + k as f64 % 90.0, 170.0 - k as f64];
    }
    let changed = run(&acts, &ds2, &split, &o, tokens.clone(), None).unwrap();
    let (a, b) = (predictions(&base), predictions(&changed));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            x.predicted, y.predicted,
            "{}: targets of the held-out group leaked",
            x.name
        );
    }
    assert_eq!(
        base.layers,
        changed
            .layers
            .iter()
            .cloned()
            .map(|mut l| {
                // Test scores change with the test truths; the fitted models must not.
                let b = &base.layers[l.layer];
                l.r2_test = b.r2_test;
                l.r2_test_per_target = b.r2_test_per_target.clone();
                l.r2_test_fitted = b.r2_test_fitted;
                l.spearman_test = b.spearman_test.clone();
                l.km_mean = b.km_mean;
                l.km_median = b.km_median;
                l.proximity_error = b.proximity_error;
                l.p_value_uncorrected = b.p_value_uncorrected;
                l.controls = b.controls.clone();
                l
            })
            .collect::<Vec<_>>()
    );
    for &i in &asia {
        for l in 0..=3 {
            let v = &mut acts2.data[(l * 400 + i) * 12..(l * 400 + i + 1) * 12];
            v.iter_mut().for_each(|x| *x = -*x * 3.0);
        }
    }
    let moved = run(&acts2, &ds, &split, &o, tokens, None).unwrap();
    for (x, y) in a.iter().zip(predictions(&moved).iter()) {
        if x.split == "train" {
            assert_eq!(
                x.predicted, y.predicted,
                "{}: held-out activations leaked into training",
                x.name
            );
        }
    }
}

#[test]
fn leave_one_group_out_predicts_each_group_from_the_others() {
    let ds = space_dataset(500, 31);
    let acts = activations(&ds, 3, 12, Some(1), 0.8, 32);
    let split = SplitSpec::Group {
        column: "continent".into(),
        held_out: None,
    };
    let o = opts(10);
    let r = run(&acts, &ds, &split, &o, first_tokens(500, 50, 2), None).unwrap();
    assert_eq!(r.split.kind, "leave_one_group_out");
    assert_eq!(r.split.folds.len(), 5);
    assert_eq!(r.selected.by_fold.len(), 5);
    assert_eq!(r.by_group.len(), 5);
    assert!(r.by_group.iter().all(|g| g.n_train == 0 && g.n_test > 0));
    let rows = predictions(&r);
    assert_eq!(rows.len(), 500);
    assert!(rows.iter().all(|p| p.split == "test"));
    assert!(r.selected.p_value.is_some());
    // Held-out predictions of a group do not depend on that group's targets.
    let mut ds2 = ds.clone();
    for i in 0..500 {
        if ds.groups["continent"][i] == "Europe" {
            ds2.targets[i][0] = -ds2.targets[i][0];
        }
    }
    let r2 = run(&acts, &ds2, &split, &o, first_tokens(500, 50, 2), None).unwrap();
    for (a, b) in rows.iter().zip(predictions(&r2).iter()) {
        if a.group.as_deref() == Some("Europe") {
            assert_eq!(a.predicted, b.predicted, "{}", a.name);
        }
    }
}

#[test]
fn column_split_and_sphere_targets() {
    let mut ds = space_dataset(300, 41);
    ds.is_test = Some((0..300).map(|i| i % 4 == 0).collect());
    let acts = activations(&ds, 2, 10, Some(1), 1.0, 42);
    let o = AnalysisOptions {
        space_targets: SpaceTargets::Sphere,
        ..opts(10)
    };
    let r = run(
        &acts,
        &ds,
        &SplitSpec::Column,
        &o,
        first_tokens(300, 30, 1),
        None,
    )
    .unwrap();
    assert_eq!((r.split.kind.as_str(), r.split.n_test), ("column", 75));
    assert_eq!(r.dataset.fitted_targets, vec!["x", "y", "z"]);
    assert!(r.layers[1].r2_test > 0.3, "{}", r.layers[1].r2_test);
    for p in predictions(&r) {
        assert!(p.predicted[0].abs() <= 90.0 && p.predicted[1].abs() <= 180.0);
    }
}

#[test]
fn kernel_route_when_entities_are_fewer_than_dimensions() {
    let ds = space_dataset(120, 51);
    let acts = activations(&ds, 2, 200, Some(2), 0.5, 52);
    let r = run(
        &acts,
        &ds,
        &random_split(),
        &opts(20),
        first_tokens(120, 20, 3),
        None,
    )
    .unwrap();
    assert_eq!(r.selected.layer, 2);
    assert!(r.layers[2].r2_test > 0.5, "{}", r.layers[2].r2_test);
}

#[test]
fn cancelling_returns_cancelled() {
    let ds = space_dataset(100, 61);
    let acts = activations(&ds, 3, 6, None, 0.0, 62);
    let res = analyze(
        &acts,
        &ds,
        &random_split(),
        &opts(5),
        &ControlInputs::default(),
        &ctx(),
        &mut |stage, done, _| !(stage == "layers" && done == 2),
    );
    assert!(matches!(res, Err(Error::Cancelled)));
}

// ---- Bad inputs ----------------------------------------------------------------------------

fn meta_for(ds: &Dataset, sha: &str) -> ActsMeta {
    ActsMeta {
        model_name: "m".into(),
        model_sha256: sha.into(),
        dataset_name: ds.name.clone(),
        dataset_hash: data::names_hash(&ds.names),
        prompt_template: "{name}".into(),
        pooling: Pooling::Last,
        names: ds.names.clone(),
    }
}

#[test]
fn activations_of_another_model_or_dataset_are_refused() {
    let ds = space_dataset(50, 71);
    let sha = "ab".repeat(32);
    let meta = meta_for(&ds, &sha);
    check_matches(&meta, &ds, Some(&sha)).unwrap();
    check_matches(&meta, &ds, None).unwrap();
    let mut by_data = meta.clone();
    by_data.dataset_hash = data::dataset_hash(&ds);
    check_matches(&by_data, &ds, Some(&sha.to_uppercase())).unwrap();

    let e = check_matches(&meta, &ds, Some(&"cd".repeat(32)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the expected model"), "{e}");
    let other = space_dataset(50, 72);
    let e = check_matches(&meta, &other, None).unwrap_err().to_string();
    assert!(
        e.contains("another entity list") && e.contains("entity 1"),
        "{e}"
    );
    let e = check_matches(&meta, &space_dataset(40, 71), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("50 entities") && e.contains("40"), "{e}");
    let mut bad_hash = meta.clone();
    bad_hash.dataset_hash = "00".repeat(32);
    let e = check_matches(&bad_hash, &ds, None).unwrap_err().to_string();
    assert!(e.contains("dataset hash"), "{e}");

    // Shape mismatches reach analyze too.
    let acts = activations(&space_dataset(60, 1), 2, 4, None, 0.0, 1);
    let e = err_text(run(&acts, &ds, &random_split(), &opts(5), vec![], None));
    assert!(e.contains("60 entities") && e.contains("50"), "{e}");
    let good = activations(&ds, 2, 4, None, 0.0, 1);
    let wrong_random = activations(&ds, 3, 4, None, 0.0, 2);
    let e = err_text(run(
        &good,
        &ds,
        &random_split(),
        &opts(5),
        vec![],
        Some(&wrong_random),
    ));
    assert!(e.contains("random-init"), "{e}");
    let e = err_text(run(
        &good,
        &ds,
        &random_split(),
        &opts(5),
        vec![1, 2, 3],
        None,
    ));
    assert!(e.contains("3 first-token ids for 50 entities"), "{e}");
}

#[test]
fn constant_target_is_refused() {
    let mut ds = space_dataset(80, 81);
    for t in &mut ds.targets {
        t[0] = 12.5;
    }
    let acts = activations(&ds, 1, 4, None, 0.0, 1);
    let e = err_text(run(&acts, &ds, &random_split(), &opts(5), vec![], None));
    assert!(
        e.contains("latitude") && e.contains("same") && e.contains("12.5"),
        "{e}"
    );

    // Constant only within the training set of a hold-out.
    let mut ds = time_dataset(80, 82, false);
    for (i, t) in ds.targets.iter_mut().enumerate() {
        if ds.groups["century"][i] != "15" {
            t[0] = 1000.0;
        }
    }
    let acts = activations(&ds, 1, 4, None, 0.0, 1);
    let split = SplitSpec::Group {
        column: "century".into(),
        held_out: Some("15".into()),
    };
    let e = err_text(run(&acts, &ds, &split, &opts(5), vec![], None));
    assert!(e.contains("constant") && e.contains("training"), "{e}");
}

#[test]
fn fewer_entities_than_folds_is_refused() {
    let ds = space_dataset(12, 91);
    let acts = activations(&ds, 1, 4, None, 0.0, 1);
    let e = err_text(run(&acts, &ds, &random_split(), &opts(5), vec![], None));
    assert!(e.contains("too few for 5-fold validation"), "{e}");
    let o = AnalysisOptions {
        validation_folds: 1,
        ..opts(5)
    };
    let ds = space_dataset(100, 1);
    let acts = activations(&ds, 1, 4, None, 0.0, 1);
    let e = err_text(run(&acts, &ds, &random_split(), &o, vec![], None));
    assert!(e.contains("validation_folds"), "{e}");
}

#[test]
fn non_finite_activations_name_layer_and_entity() {
    let ds = space_dataset(60, 101);
    let mut acts = activations(&ds, 3, 5, None, 0.0, 1);
    acts.data[(2 * 60 + 17) * 5 + 3] = f32::NAN;
    let e = err_text(run(&acts, &ds, &random_split(), &opts(5), vec![], None));
    assert!(
        e.contains("layer 2")
            && e.contains("entity 18")
            && e.contains(&ds.names[17])
            && e.contains("NaN"),
        "{e}"
    );
    let mut acts = activations(&ds, 3, 5, None, 0.0, 1);
    acts.data[(3 * 60 + 59) * 5] = f32::INFINITY;
    let e = err_text(run(&acts, &ds, &random_split(), &opts(5), vec![], None));
    assert!(
        e.contains("layer 3") && e.contains("entity 60") && e.contains("inf"),
        "{e}"
    );
    // In the random-init model too.
    let good = activations(&ds, 3, 5, None, 0.0, 1);
    let mut bad = good.clone();
    bad.data[5] = f32::NEG_INFINITY;
    let e = err_text(run(
        &good,
        &ds,
        &random_split(),
        &opts(5),
        vec![],
        Some(&bad),
    ));
    assert!(
        e.contains("random-init activations: layer 0, entity 2"),
        "{e}"
    );
}

#[test]
fn bad_split_specifications_are_refused() {
    let ds = space_dataset(60, 111);
    let acts = activations(&ds, 1, 4, None, 0.0, 1);
    let e = err_text(run(&acts, &ds, &SplitSpec::Column, &opts(5), vec![], None));
    assert!(e.contains("no is_test column"), "{e}");
    let split = SplitSpec::Group {
        column: "country".into(),
        held_out: None,
    };
    let e = err_text(run(&acts, &ds, &split, &opts(5), vec![], None));
    assert!(
        e.contains("no column 'country'") && e.contains("continent"),
        "{e}"
    );
    let split = SplitSpec::Group {
        column: "continent".into(),
        held_out: Some("Atlantis".into()),
    };
    let e = err_text(run(&acts, &ds, &split, &opts(5), vec![], None));
    assert!(
        e.contains("no group 'Atlantis'") && e.contains("Europe"),
        "{e}"
    );
    let split = SplitSpec::Random {
        test_fraction: 1.5,
        seed: 0,
    };
    let e = err_text(run(&acts, &ds, &split, &opts(5), vec![], None));
    assert!(e.contains("test fraction"), "{e}");
}

#[test]
fn layer_chart_laid_out_for_a_narrow_column_keeps_its_text_inside() {
    // The page asks for the chart at the width it shows it (under half of a wide screen, or a
    // phone): every label must still fit inside the scene, none scaled away.
    let ds = space_dataset(300, 51);
    let acts = activations(&ds, 6, 12, Some(4), 0.8, 52);
    let random = activations(&ds, 6, 12, None, 0.0, 53);
    let r = run(
        &acts,
        &ds,
        &random_split(),
        &opts(10),
        first_tokens(300, 40, 5),
        Some(&random),
    )
    .unwrap();
    use probelab::render::{text_width, Anchor, Item};
    for width in [300.0f32, 440.0, 960.0] {
        let height = (width * 0.6).max(300.0);
        let scene = probelab::render::figures::layer_scene_sized(&r, width, height);
        assert_eq!((scene.width, scene.height), (width, height));
        let mut texts = 0;
        for item in &scene.items {
            if let Item::Text {
                x,
                y,
                text,
                size,
                anchor,
                bold,
                angle,
                ..
            } = item
            {
                texts += 1;
                if *angle != 0.0 {
                    continue;
                }
                let w = text_width(text, *size as f64, *bold) as f32;
                let (left, right) = match anchor {
                    Anchor::Left => (*x, x + w),
                    Anchor::Center => (x - w / 2.0, x + w / 2.0),
                    Anchor::Right => (x - w, *x),
                };
                assert!(
                    left >= -0.5 && right <= width + 0.5 && *y <= height + 0.5,
                    "at width {width}: {text:?} spans {left:.0}..{right:.0}"
                );
            }
        }
        assert!(texts > 10, "at width {width}: {texts} labels");
    }
}

/// Each of `n_cities` random places under four names that share the city's own name
/// ("Xyz", "North Foo, Xyz", "Xyz Street", "Old Xyz"), a little apart: a random split puts some
/// of a city's names in training and others in test, so a test name contains a training place.
fn places_named_after_each_other(n_cities: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let (mut names, mut targets, mut continent) = (vec![], vec![], vec![]);
    for c in 0..n_cities {
        let city = random_name(&mut rng, c);
        let (lat, lon) = (rng.uniform() * 130.0 - 60.0, rng.uniform() * 340.0 - 170.0);
        for form in ["{}", "North Foo, {}", "{} Street", "Old {}"] {
            names.push(form.replace("{}", &city));
            targets.push(vec![lat + rng.normal() * 0.3, lon + rng.normal() * 0.3]);
            continent.push(CONTINENTS[((lon + 170.0) / 68.0).floor().min(4.0) as usize].into());
        }
    }
    let mut groups = BTreeMap::new();
    groups.insert("continent".to_string(), continent);
    Dataset {
        name: "places-named-after-each-other".into(),
        kind: TargetKind::Space,
        names,
        targets,
        groups,
        is_test: None,
    }
}

/// Activations that are a fixed random linear image of the names' character n-gram counts
/// (plus noise) at every layer: a "model" that reads the string and nothing else.
fn string_reading_activations(ds: &Dataset, n_layers: usize, d: usize, seed: u64) -> Activations {
    let buckets = 256;
    let mut rng = Rng::new(seed);
    let w: Vec<f64> = (0..buckets * d).map(|_| rng.normal()).collect();
    let counts: Vec<Vec<f64>> = ds
        .names
        .iter()
        .map(|name| {
            let mut row = vec![0.0; buckets];
            let chars: Vec<char> = name.to_lowercase().chars().collect();
            for len in 1..=3 {
                for win in chars.windows(len) {
                    let h = win.iter().fold(len as u64, |h, &c| {
                        h.wrapping_mul(31).wrapping_add(c as u64)
                    });
                    row[(h % buckets as u64) as usize] += 1.0;
                }
            }
            row
        })
        .collect();
    let n = ds.len();
    let mut acts = Activations::zeros(n_layers, n, d);
    for l in 0..=n_layers {
        for (i, row) in counts.iter().enumerate() {
            for j in 0..d {
                let s: f64 = (0..buckets).map(|b| row[b] * w[b * d + j]).sum();
                acts.data[(l * n + i) * d + j] = (s + 0.1 * rng.normal()) as f32;
            }
        }
    }
    acts
}

#[test]
fn a_planted_answer_in_the_names_leaves_no_gain_over_the_string() {
    let ds = places_named_after_each_other(150, 21);
    let acts = string_reading_activations(&ds, 2, 48, 22);
    let r = run(&acts, &ds, &random_split(), &opts(30), vec![], None).unwrap();
    let (ngram, knn) = (
        r.baselines.ngram_r2_test.unwrap(),
        r.baselines.knn_r2_test.unwrap(),
    );
    eprintln!(
        "n-gram {ngram:.3}, kNN {knn:.3}, probe {:.3}, gain by layer {:?}, p {:?}",
        r.selected.r2_test,
        r.layers
            .iter()
            .map(|l| l.controls.gain_over_names.unwrap())
            .collect::<Vec<_>>(),
        r.selected.gain_p_value
    );
    assert!(
        knn > 0.9,
        "the nearest names are the same city's: kNN R² {knn}"
    );
    assert!(ngram > 0.5, "n-gram R² {ngram}");
    for l in &r.layers {
        let c = &l.controls;
        let gain = c.gain_over_names.unwrap();
        assert!(gain.abs() < 0.05, "layer {}: gain {gain}", l.layer);
        assert_eq!(gain, c.r2_beside_names.unwrap() - ngram);
    }
    assert!(r.selected.gain_p_value.unwrap() > 0.05);
    // The card says the probe adds nothing to the name; the summary leads with the names.
    let v = check_card_against_report(&r);
    let beyond = v.checks.iter().find(|c| c.key == "beyond_names").unwrap();
    assert_eq!(beyond.outcome, Outcome::No, "{v}");
    let rivals = probelab::render::rivals(&r);
    assert!(
        rivals.iter().any(|x| x.key == "names_knn" && x.r2 == knn),
        "{rivals:?}"
    );
    let text = probelab::render::figures::summary(&r);
    assert!(text.starts_with("Read with care:"), "{text}");
    assert!(
        text.contains(&format!(
            "the most similar training names (no model) R² {knn:.2}"
        )),
        "{text}"
    );
}

#[test]
fn a_planted_signal_under_random_names_gains_over_the_string_with_p_at_the_floor() {
    let ds = space_dataset(400, 1);
    let acts = activations(&ds, 4, 16, Some(3), 0.8, 2);
    let r = run(&acts, &ds, &random_split(), &opts(50), vec![], None).unwrap();
    let floor = 1.0 / 51.0 + 1e-12;
    let (ngram, knn) = (
        r.baselines.ngram_r2_test.unwrap(),
        r.baselines.knn_r2_test.unwrap(),
    );
    assert!(ngram < 0.1 && knn < 0.1, "n-gram {ngram}, kNN {knn}");
    assert_eq!(r.selected.layer, 3);
    let gain = r.selected.gain_over_names.unwrap();
    assert!(gain > 0.5, "gain {gain}");
    assert!(r.selected.gain_p_value.unwrap() <= floor);
    let l3 = &r.layers[3].controls;
    assert_eq!(l3.gain_over_names, r.selected.gain_over_names);
    assert!(l3.gain_p_value_uncorrected.unwrap() <= floor);
    let v = check_card_against_report(&r);
    let beyond = v.checks.iter().find(|c| c.key == "beyond_names").unwrap();
    assert_eq!(beyond.outcome, Outcome::Yes, "{v}");
    let text = probelab::render::figures::summary(&r);
    assert!(
        text.contains(&format!(
            "Beyond the name: fitted to what the n-gram model gets wrong, layer 3 adds R² \
             {gain:+.2}"
        )),
        "{text}"
    );
    let k = r.baselines.knn_neighbours.unwrap();
    assert!(
        text.contains(&format!(
            "the {k} most similar training names' mean R² {knn:.2}"
        )),
        "{text}"
    );
    // Beside names that carry nothing, the probe keeps its own score.
    assert!((l3.r2_beside_names.unwrap() - r.layers[3].r2_test).abs() < 0.1);
    for l in [0, 1, 2, 4] {
        let g = r.layers[l].controls.gain_over_names.unwrap();
        assert!(g < 0.1, "layer {l}: gain {g}");
    }
    // Off by option: no gain, no kNN, and the rest unchanged.
    let off = AnalysisOptions {
        gain_over_names: false,
        knn_neighbours: vec![],
        ..opts(50)
    };
    let r2 = run(&acts, &ds, &random_split(), &off, vec![], None).unwrap();
    assert!(r2.selected.gain_over_names.is_none() && r2.baselines.knn_r2_test.is_none());
    let v = check_card_against_report(&r2);
    assert_eq!(v.checks[2].outcome, Outcome::NotRun, "{v}");
    assert!(!probelab::render::figures::summary(&r2).contains("Beyond the name"));
    assert!(r2
        .layers
        .iter()
        .all(|l| l.controls.gain_p_value_uncorrected.is_none()));
    assert_eq!(r2.selected.r2_test, r.selected.r2_test);
    assert_eq!(r2.baselines.ngram_r2_test, r.baselines.ngram_r2_test);
}

#[test]
fn learning_curve_ends_at_the_selected_score_and_the_signal_compresses() {
    let ds = space_dataset(400, 21);
    let acts = activations(&ds, 4, 16, Some(3), 0.8, 22);
    let random = activations(&ds, 4, 16, None, 0.0, 23);
    let r = run(&acts, &ds, &random_split(), &opts(0), vec![], Some(&random)).unwrap();
    assert_eq!(r.selected.layer, 3);
    let l = r
        .learning
        .as_ref()
        .expect("one training set: learning is reported");
    assert_eq!(l.layer, 3);
    assert_eq!(*l.n_train.last().unwrap(), r.split.n_train);
    // More training rows, a better probe: the smallest subset scores below the full set.
    let last = *l.r2_test.last().unwrap();
    assert!(l.r2_test[0] < last - 0.05, "{:?}", l.r2_test);
    assert_eq!(l.n_train.len(), l.r2_test.len());
    // The planted layer compresses the targets; noise and random names do not. (Uniform
    // targets of z-range 2√3 cost log2(346) ≈ 8.4 bits each uniformly; a Gaussian code of
    // σ = 1 costs ≈ 8.7, of the planted layer's residual σ ≈ 0.3 about 7.)
    let code = l.code.as_ref().unwrap();
    assert!(code.compression > 1.1, "{code:?}");
    for other in [&l.random_init_code, &l.ngram_code] {
        let c = other.as_ref().unwrap();
        assert!(
            c.compression < 1.05 && c.online_bits > code.online_bits,
            "{c:?}"
        );
        assert_eq!(c.uniform_bits, code.uniform_bits);
    }
    let text = probelab::render::figures::summary(&r);
    assert!(
        text.contains(&format!(
            "compresses the training targets {:.2}×",
            code.compression
        )),
        "{text}"
    );
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert!(v.pointer("/learning/code/compression").is_some());
    assert!(v.pointer("/notes/learning").is_some());

    // No single training set under leave-one-group-out, and off when asked.
    let logo = SplitSpec::Group {
        column: "continent".into(),
        held_out: None,
    };
    assert!(run(&acts, &ds, &logo, &opts(0), vec![], None)
        .unwrap()
        .learning
        .is_none());
    let off = AnalysisOptions {
        learning: false,
        ..opts(0)
    };
    assert!(run(&acts, &ds, &random_split(), &off, vec![], None)
        .unwrap()
        .learning
        .is_none());
}

#[test]
fn a_flagged_subset_that_carries_the_score_is_said_and_homonyms_are_counted() {
    let n = 400;
    let mut ds = space_dataset(n, 31);
    // 40% of the names are codes; two names are homonyms of others (other places).
    for i in 0..n {
        if i % 5 < 2 {
            ds.names[i] = format!("{:05}", 10000 + i);
        }
    }
    ds.names[398] = ds.names[397].clone();
    ds.names[399] = ds.names[393].clone();
    let acts = activations(&ds, 3, 16, Some(2), 0.8, 32);
    // The random-init model reads the code entities' targets exactly and nothing else.
    let mut random = activations(&ds, 3, 16, None, 0.0, 33);
    let (d, k) = (16, 2);
    let cols: Vec<(f64, f64)> = (0..k)
        .map(|t| {
            let m = ds.targets.iter().map(|r| r[t]).sum::<f64>() / n as f64;
            let s = (ds.targets.iter().map(|r| (r[t] - m).powi(2)).sum::<f64>() / n as f64).sqrt();
            (m, s)
        })
        .collect();
    for l in 0..=3 {
        for i in 0..n {
            for (t, (mean, sd)) in cols.iter().enumerate() {
                random.data[(l * n + i) * d + t] = if i % 5 < 2 {
                    ((ds.targets[i][t] - mean) / sd) as f32
                } else {
                    0.0
                };
            }
        }
    }
    let r = run(&acts, &ds, &random_split(), &opts(0), vec![], Some(&random)).unwrap();
    let flag = |key: &str| r.name_flags.iter().find(|f| f.flag == key).unwrap();
    let code = flag("code");
    assert_eq!(code.n, 160);
    let test_codes = r
        .entities
        .iter()
        .filter(|e| e.split == "test" && e.flags.contains(&"code".to_string()))
        .count();
    assert_eq!(code.n_test, test_codes);
    assert!(
        code.random_init_r2_test.unwrap() >= code.r2_test.unwrap(),
        "{code:?}"
    );
    let homonym = flag("homonym");
    assert_eq!(homonym.n, 4);
    let e = |i: usize| &r.entities[i];
    assert_eq!(e(397).flags, ["homonym"]);
    assert!(e(0).flags.contains(&"code".to_string()));
    // Shares of the squared error, by the entities' own errors.
    let test: Vec<_> = r.entities.iter().filter(|e| e.split == "test").collect();
    let total: f64 = test.iter().map(|e| e.error * e.error).sum();
    let codes: f64 = test
        .iter()
        .filter(|e| e.flags.contains(&"code".to_string()))
        .map(|e| e.error * e.error)
        .sum();
    assert!((code.share_of_error.unwrap() - codes / total).abs() < 1e-9);
    let text = probelab::render::figures::summary(&r);
    let pct = 100.0 * code.n_test as f64 / r.split.n_test as f64;
    assert!(
        text.contains(&format!(
            "{pct:.0}% of the test names are numbers or codes (half or more of their letters and \
             digits are digits); on them the random-initialised model matches the trained model"
        )),
        "{text}"
    );
    assert!(
        text.contains("4 entities share their name with another entity at another place"),
        "{text}"
    );
    // No flags, no sentences.
    let clean = space_dataset(200, 5);
    let acts = activations(&clean, 2, 8, Some(2), 1.0, 6);
    let r = run(&acts, &clean, &random_split(), &opts(0), vec![], None).unwrap();
    assert!(r.name_flags.is_empty());
    assert!(probelab::render::figures::flag_sentences(&r).is_empty());
}

#[test]
fn error_that_falls_with_population_is_reported_with_its_interval() {
    let n = 400;
    let mut ds = space_dataset(n, 41);
    let mut rng = Rng::new(42);
    let population: Vec<f64> = (0..n)
        .map(|_| 10f64.powf(3.0 + 4.0 * rng.uniform()))
        .collect();
    ds.groups.insert(
        "population".into(),
        population.iter().map(|p| format!("{p:.0}")).collect(),
    );
    // Small places get noisier vectors at the signal layer, so the probe misses them more.
    let mut acts = activations(&ds, 2, 16, Some(2), 1.0, 43);
    let d = 16;
    for (i, p) in population.iter().enumerate() {
        let noise = 3.0 * (7.0 - p.log10()) / 4.0;
        for j in 0..d {
            acts.data[(2 * n + i) * d + j] += (noise * rng.normal()) as f32;
        }
    }
    let r = run(&acts, &ds, &random_split(), &opts(0), vec![], None).unwrap();
    assert_eq!(r.coverage.len(), 1);
    let c = &r.coverage[0];
    assert_eq!(c.column, "population");
    assert_eq!(c.n_test, r.split.n_test);
    // The report's ρ is the test entities' errors against their populations.
    let test: Vec<_> = r.entities.iter().filter(|e| e.split == "test").collect();
    let errors: Vec<f64> = test.iter().map(|e| e.error).collect();
    let pops: Vec<f64> = test.iter().map(|e| population[e.index].round()).collect();
    let rho = probelab::probe::metrics::spearman(&pops, &errors).unwrap();
    assert!((c.spearman - rho).abs() < 1e-12, "{} vs {rho}", c.spearman);
    assert!(c.ci95[1] < 0.0, "{c:?}");
    assert_eq!(c.by_group.iter().map(|g| g.n_test).sum::<usize>(), c.n_test);
    // Per group: the column's median and mean, and the mean error, over its test entities.
    for g in &c.by_group {
        let rows: Vec<_> = test
            .iter()
            .filter(|e| e.group.as_deref() == Some(g.group.as_str()))
            .collect();
        assert_eq!(rows.len(), g.n_test);
        let mean = rows
            .iter()
            .map(|e| population[e.index].round())
            .sum::<f64>()
            / rows.len() as f64;
        let err = rows.iter().map(|e| e.error).sum::<f64>() / rows.len() as f64;
        assert!((g.mean - mean).abs() < 1e-6 * mean && (g.mean_error - err).abs() < 1e-9);
    }
    let text = probelab::render::figures::summary(&r);
    assert!(
        text.contains(&format!(
            "Whom the map serves: the held-out error against population, Spearman ρ {:+.2}",
            c.spearman
        )) && text.contains("places with more of it are placed better"),
        "{text}"
    );
    // No such column, no coverage.
    ds.groups.remove("population");
    assert!(run(&acts, &ds, &random_split(), &opts(0), vec![], None)
        .unwrap()
        .coverage
        .is_empty());
}
