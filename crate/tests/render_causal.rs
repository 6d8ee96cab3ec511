//! The causal test's figures on a report with a hand-made causal block: the dose-response
//! chart (a line per axis that rises with a positive effect, its interval, the null band, the
//! p-values) and the map of where edited answers move (arrows the right way, hover records),
//! each only with a causal block, the map only for space; the "does not answer" warning; the
//! PNGs a run writes. Sample PNGs are written to the temp folder.

use std::collections::BTreeMap;

use probelab::data::{Dataset, TargetKind};
use probelab::extract::{Activations, Pooling};
use probelab::probe::analysis::{AnalysisOptions, ControlInputs, Report, ReportContext, SplitSpec};
use probelab::probe::analyze;
use probelab::probe::report::{
    CausalAxis, CausalBaseline, CausalEntity, CausalReport, DoseEffect, Erasure, SideEffects,
};
use probelab::render::figures::{causal_dose_scene, causal_map_scene, run_files, scenes};
use probelab::render::{self, Item, Scene};

const UNANSWERED: &str = "The model does not answer the question: read nothing into this";
const LAT: &str = "#0072b2";
const LON: &str = "#d55e00";

/// A small report analysed for real: 60 entities, a signal at layer 1.
fn report(kind: TargetKind) -> Report {
    let n = 60;
    let d = 6;
    let mut seed = 0x2545f4914f6cdd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut names = Vec::new();
    let mut targets = Vec::new();
    let mut continent = Vec::new();
    for i in 0..n {
        let (lat, lon) = (next() * 120.0 - 50.0, next() * 340.0 - 170.0);
        names.push(format!("place {i}"));
        targets.push(match kind {
            TargetKind::Space => vec![lat, lon],
            TargetKind::Time => vec![1500.0 + 3.0 * lon],
        });
        continent.push(
            ["West", "Middle", "East"][((lon + 170.0) / 114.0).floor().min(2.0) as usize]
                .to_string(),
        );
    }
    let mut groups = BTreeMap::new();
    groups.insert("continent".to_string(), continent);
    let ds = Dataset {
        name: "edits".into(),
        kind,
        names,
        targets,
        groups,
        is_test: None,
    };
    let mut acts = Activations::zeros(2, n, d);
    for l in 0..=2 {
        for i in 0..n {
            for j in 0..d {
                let signal = match ds.targets[i].get(j) {
                    Some(t) if l == 1 => t / 60.0,
                    _ => 0.0,
                };
                acts.data[(l * n + i) * d + j] = (signal + next() - 0.5) as f32;
            }
        }
    }
    analyze(
        &acts,
        &ds,
        &SplitSpec::Random {
            test_fraction: 0.25,
            seed: 3,
        },
        &AnalysisOptions {
            n_permutations: 0,
            ngram_buckets: 64,
            ..AnalysisOptions::default()
        },
        &ControlInputs {
            first_token_ids: vec![],
            random_init: None,
            name_surprisal: None,
        },
        &ReportContext {
            model_name: "synthetic".into(),
            model_sha256: "0".repeat(64),
            prompt_template: "{name}".into(),
            pooling: Pooling::Last,
            dataset_name: "edits".into(),
        },
        &mut |_, _, _| true,
    )
    .unwrap()
}

const DOSES: [f64; 6] = [-60.0, -30.0, -15.0, 15.0, 30.0, 60.0];

/// One axis whose answer moves `slope` units per unit asked, with a ±(2 + 5%) interval, against
/// 30 nulls within ±0.05 and a control task at 0.01.
fn axis(target: &str, slope: f64, p_value: f64) -> CausalAxis {
    CausalAxis {
        target: target.into(),
        norm_per_unit: 0.1,
        largest_edit_relative_norm: 0.5,
        doses: DOSES
            .iter()
            .map(|&dose| DoseEffect {
                dose,
                mean_change: slope * dose,
                ci_low: slope * dose - 2.0 - 0.05 * dose.abs(),
                ci_high: slope * dose + 2.0 + 0.05 * dose.abs(),
                mean_change_p_true: 0.0,
            })
            .collect(),
        slope,
        correlation: slope.signum() * 0.5,
        effect: slope,
        null_random: (0..20).map(|i| (i as f64 - 9.5) / 200.0).collect(),
        null_orthogonal: (0..10).map(|i| (i as f64 - 4.5) / 100.0).collect(),
        null_control_task: Some(0.01),
        p_value,
    }
}

/// A causal block over the report's test entities: latitude edits move the answer north with
/// +D (slope 0.3), longitude edits move it a little west (slope −0.05); each entity's answer
/// sits 5° north-east of the truth before any edit, and moves by 18° (latitude) and 3°
/// (longitude) under the ±60° edits.
fn causal(r: &Report, answerable: bool) -> CausalReport {
    let space = r.dataset.target == TargetKind::Space;
    let axes = if space {
        vec![
            axis("latitude", 0.3, 1.0 / 32.0),
            axis("longitude", -0.05, 0.9),
        ]
    } else {
        vec![axis("year", 0.3, 1.0 / 32.0)]
    };
    let entities: Vec<CausalEntity> = r
        .entities
        .iter()
        .filter(|e| e.split == "test")
        .map(|e| {
            let before: Vec<f64> = e.truth.iter().map(|t| t + 5.0).collect();
            let shifted = |t: usize, by: f64| {
                let mut v = before.clone();
                v[t] += by;
                v
            };
            let moved = if space {
                vec![
                    [shifted(0, -18.0), shifted(0, 18.0)],
                    [shifted(1, 3.0), shifted(1, -3.0)],
                ]
            } else {
                vec![[shifted(0, -18.0), shifted(0, 18.0)]]
            };
            CausalEntity {
                name: e.name.clone(),
                truth: e.truth.clone(),
                true_answer: e.group.clone(),
                answer: e.group.clone().unwrap_or_default(),
                p_true: Some(0.6),
                expected: before,
                moved,
            }
        })
        .collect();
    CausalReport {
        layer: 1,
        edited_layers: vec![1],
        positions: "last".into(),
        readout: "{name} is a place on the continent of".into(),
        answer_column: "continent".into(),
        candidates: vec!["West".into(), "Middle".into(), "East".into()],
        candidate_tokens: vec![" West".into(), " Middle".into(), " East".into()],
        n_entities: entities.len(),
        baseline: CausalBaseline {
            accuracy: if answerable { 0.8 } else { 0.3 },
            chance: 0.34,
            p_value: if answerable { 1e-6 } else { 0.7 },
            answerable,
            mean_p_true: 0.5,
        },
        axes,
        erasure: Erasure {
            drop_p_true: 0.1,
            null_drops: vec![0.01; 20],
            p_value: 1.0 / 21.0,
        },
        side_effects: SideEffects {
            n_prompts: 24,
            probe_mean_abs_change: 0.01,
            random_mean_abs_change: 0.01,
        },
        entities,
        notes: BTreeMap::new(),
    }
}

fn with_causal(kind: TargetKind, answerable: bool) -> Report {
    let mut r = report(kind);
    r.causal = Some(causal(&r, answerable));
    r
}

fn texts(s: &Scene) -> Vec<&str> {
    s.items
        .iter()
        .filter_map(|i| match i {
            Item::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The data lines drawn in `color` at `width` (more than two points: not a legend key).
fn data_lines<'a>(s: &'a Scene, color: &str, width: f32) -> Vec<&'a [f32]> {
    lines(s, color, width)
        .into_iter()
        .filter(|p| p.len() > 4)
        .collect()
}

/// The polylines drawn in `color` at `width`.
fn lines<'a>(s: &'a Scene, color: &str, width: f32) -> Vec<&'a [f32]> {
    s.items
        .iter()
        .filter_map(|i| match i {
            Item::Line {
                points,
                color: c,
                width: w,
                ..
            } if c == color && *w == width => Some(points.as_slice()),
            _ => None,
        })
        .collect()
}

fn names(r: &Report) -> Vec<&'static str> {
    scenes(r).unwrap().into_iter().map(|(n, _)| n).collect()
}

#[test]
fn the_causal_figures_exist_only_with_a_causal_block_and_the_map_only_for_space() {
    for kind in [TargetKind::Space, TargetKind::Time] {
        let plain = report(kind);
        assert!(causal_dose_scene(&plain).is_none());
        let n = names(&plain);
        assert!(
            !n.contains(&"causal") && !n.contains(&"causal_map"),
            "{n:?}"
        );
        let files: Vec<String> = run_files(&plain)
            .unwrap()
            .into_iter()
            .map(|f| f.0)
            .collect();
        assert!(!files.iter().any(|f| f.starts_with("causal")), "{files:?}");
    }
    let space = report(TargetKind::Space);
    assert!(causal_map_scene(&space).unwrap().is_none());

    let space = with_causal(TargetKind::Space, true);
    assert_eq!(
        names(&space),
        ["layers", "map", "learning", "causal", "causal_map"]
            .into_iter()
            .filter(|n| *n != "learning" || space.learning.is_some())
            .collect::<Vec<_>>()
    );
    let time = with_causal(TargetKind::Time, true);
    let n = names(&time);
    assert!(n.contains(&"causal") && !n.contains(&"causal_map"), "{n:?}");
    assert!(causal_map_scene(&time).is_err());
    assert!(causal_dose_scene(&time).is_some());

    // The run's files: both PNGs decode at the chart's size.
    let files = run_files(&space).unwrap();
    for (name, size) in [("causal.png", (720, 400)), ("causal_map.png", (720, 440))] {
        let png = &files.iter().find(|f| f.0 == name).expect(name).1;
        std::fs::write(std::env::temp_dir().join(format!("probelab_{name}")), png).unwrap();
        let img = tiny_skia::Pixmap::decode_png(png).unwrap();
        assert_eq!((img.width(), img.height()), size, "{name}");
    }
    let files = run_files(&time).unwrap();
    assert!(files.iter().any(|f| f.0 == "causal.png"));
    assert!(!files.iter().any(|f| f.0 == "causal_map.png"));

    // The page reads the same scenes from JSON.
    for (_, s) in scenes(&space).unwrap() {
        assert_eq!(Scene::from_json(&s.to_json()).unwrap(), s);
    }
}

#[test]
fn the_dose_chart_rises_with_a_positive_effect_and_shows_its_nulls_and_p_values() {
    let r = with_causal(TargetKind::Space, true);
    let s = causal_dose_scene(&r).unwrap();
    assert_eq!((s.width, s.height), (720.0, 400.0));
    let t = texts(&s);
    assert!(t.iter().any(|t| t.starts_with("Editing layer 1")), "{t:?}");
    assert!(
        t.iter().any(|t| t.starts_with("latitude edits")
            && t.contains("+0.30")
            && t.contains("p = 0.031")),
        "{t:?}"
    );
    assert!(
        t.iter()
            .any(|t| t.starts_with("longitude edits") && t.contains("p = 0.900")),
        "{t:?}"
    );
    assert!(
        t.iter()
            .any(|t| t.starts_with("null edits") && t.contains("of 62")),
        "{t:?}"
    );
    // Doses from −60 to 60 on the x axis, with a real minus sign.
    assert!(t.contains(&"\u{2212}60") && t.contains(&"60"), "{t:?}");
    assert!(!t.contains(&UNANSWERED));

    // Each axis's line: 7 points (6 doses and the zero of no edit), left to right; latitude's
    // rises on the page (pixel y falls), longitude's falls a little.
    let line = |color: &str| {
        let l = data_lines(&s, color, 2.0);
        assert_eq!(l.len(), 1, "one line in {color}");
        let p = l[0].to_vec();
        assert_eq!(p.len(), 14);
        p
    };
    let lat = line(LAT);
    for w in lat.chunks(2).collect::<Vec<_>>().windows(2) {
        assert!(
            w[1][0] > w[0][0] && w[1][1] < w[0][1],
            "latitude rises: {lat:?}"
        );
    }
    let lon = line(LON);
    assert!(lon[13] > lon[1], "longitude falls: {lon:?}");
    // At dose 0 both lines pass through the same point (no change), the middle one.
    assert_eq!((lat[6], lat[7]), (lon[6], lon[7]));

    // The intervals and the null band are filled polygons: one per axis in its colour and one
    // grey; the null band narrower than latitude's effect at ±60 (it sits inside the plot
    // between the line's ends).
    let fills = |prefix: &str| {
        s.items
            .iter()
            .filter(|i| matches!(i, Item::Poly { fill: Some(f), .. } if f.starts_with(prefix)))
            .count()
    };
    // (The intervals have no legend key of their own; the null band has one.)
    assert_eq!(fills(LAT), 1);
    assert_eq!(fills(LON), 1);
    assert_eq!(fills("#9aa3b2"), 2);
    let band_y = s
        .items
        .iter()
        .find_map(|i| match i {
            Item::Poly {
                points,
                fill: Some(f),
                ..
            } if f.starts_with("#9aa3b2") => Some(points.iter().skip(1).step_by(2).copied()),
            _ => None,
        })
        .unwrap()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
    assert!(
        band_y.0 > lat[13] && band_y.1 < lat[1],
        "{band_y:?} {lat:?}"
    );

    // The chart rasterized: the latitude line's colour on its right end, above its left end.
    let px = render::rasterize(&s, 1.0).unwrap();
    let near = |x: f32, y: f32| {
        let c = px.pixel(x.round() as u32, y.round() as u32).unwrap();
        (c[0] as i32).abs() + (c[1] as i32 - 0x72).abs() + (c[2] as i32 - 0xb2).abs() < 60
    };
    assert!(near(lat[12], lat[13]) && near(lat[0], lat[1]));
    assert!(lat[13] < lat[1] - 50.0);
}

#[test]
fn the_map_draws_arrows_where_the_answers_move() {
    let r = with_causal(TargetKind::Space, true);
    let c = r.causal.as_ref().unwrap();
    let s = causal_map_scene(&r).unwrap().unwrap();
    assert_eq!((s.width, s.height), (720.0, 440.0));
    let t = texts(&s);
    assert!(
        t.iter().any(|t| t.starts_with("Where edits at layer 1")
            && t.contains("15 entities")
            && t.contains("largest move 200")),
        "{t:?}"
    );
    for key in [
        "true place",
        "answer before any edit (expected position)",
        "edit latitude +60° (north)",
        "edit latitude −60° (south)",
        "edit longitude +60° (east)",
        "edit longitude −60° (west)",
    ] {
        assert!(t.contains(&key), "{key}: {t:?}");
    }
    assert!(!t.contains(&UNANSWERED));

    // (18° of latitude: about 2000 km.)
    // One hover record per edited entity, its "prediction" the answer before any edit.
    assert_eq!(s.points.len(), c.entities.len());
    for (h, e) in s.points.iter().zip(&c.entities) {
        assert_eq!(h.name, e.name);
        assert!((h.pred_lat - e.expected[0]).abs() < 1e-6);
    }
    // One arrow per entity and kind (plus the legend's): a shaft from the answer's position.
    // The +60° latitude edit points north (up), −60° south; +60° longitude (which moves the
    // answer 3° west here) points left.
    let n = c.entities.len();
    for (color, dir) in [
        (LAT, [0, -1]),
        ("#56b4e9", [0, 1]),
        (LON, [-1, 0]),
        ("#e69f00", [1, 0]),
    ] {
        let shafts = lines(&s, color, 1.1);
        assert_eq!(shafts.len(), n, "{color}");
        for (p, h) in shafts.iter().zip(&s.points) {
            assert!((p[0] - h.pred_xy[0]).abs() < 0.02 && (p[1] - h.pred_xy[1]).abs() < 0.02);
            let (dx, dy) = (p[2] - p[0], p[3] - p[1]);
            let along = dx * dir[0] as f32 + dy * dir[1] as f32;
            assert!(along > 0.0, "{color}: {p:?}");
        }
        let heads = s
            .items
            .iter()
            .filter(|i| {
                matches!(i, Item::Poly { fill: Some(f), points, .. }
                    if f == color && points.len() == 6)
            })
            .count();
        assert_eq!(heads, n + 1, "{color}: a head per arrow and the legend's");
    }
}

#[test]
fn a_model_that_does_not_answer_gets_the_warning_on_both_figures() {
    let r = with_causal(TargetKind::Space, false);
    let dose = causal_dose_scene(&r).unwrap();
    let map = causal_map_scene(&r).unwrap().unwrap();
    assert!(texts(&dose).contains(&UNANSWERED));
    assert!(texts(&map).contains(&UNANSWERED));
    let time = with_causal(TargetKind::Time, false);
    assert!(texts(&causal_dose_scene(&time).unwrap()).contains(&UNANSWERED));
    std::fs::write(
        std::env::temp_dir().join("probelab_causal_unanswered.png"),
        render::to_png(&dose).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_time_dose_chart_speaks_in_years() {
    let r = with_causal(TargetKind::Time, true);
    let s = causal_dose_scene(&r).unwrap();
    let t = texts(&s);
    assert!(
        t.iter()
            .any(|t| t.starts_with("year edits") && t.contains("years per year asked")),
        "{t:?}"
    );
    assert!(t.contains(&"change of the answer's year (years)"), "{t:?}");
    assert_eq!(data_lines(&s, LAT, 2.0).len(), 1);
    assert!(lines(&s, LON, 2.0).is_empty());
    // A tiny effect keeps two significant digits rather than reading +0.00.
    let mut tiny = r.clone();
    tiny.causal.as_mut().unwrap().axes[0].effect = -0.00048;
    let t = texts(causal_dose_scene(&tiny).as_ref().unwrap())
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert!(
        t.iter()
            .any(|t| t.contains("\u{2212}0.00048 years per year asked")),
        "{t:?}"
    );
    std::fs::write(
        std::env::temp_dir().join("probelab_causal_time.png"),
        render::to_png(&s).unwrap(),
    )
    .unwrap();
}
