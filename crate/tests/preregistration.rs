//! The pre-registered plan and the ledger (issue 14, part 2), end to end through `probelab fit`
//! on small planted activations: the ledger counts plans across processes, a second plan is
//! exploratory, the same plan stays confirmatory, `--plan` writes then checks, and a corrupt
//! ledger is a clear error that loses no results.

mod common;

use std::path::{Path, PathBuf};

use common::{probelab, read_report, Rng};
use probelab::data;
use probelab::extract::acts::{self, ActsMeta, StoreAs};
use probelab::extract::{Activations, Pooling};
use probelab::probe::analysis::{AnalysisOptions, SplitSpec};
use probelab::probe::preregistration::{
    dataset_sha256, rfc3339_utc, AnalysisPlan, Ledger, PlanStatus,
};

const DATASET: &str = "world-places-200";

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("probelab-prereg-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// acts.safetensors in `dir`: noise over 3 layers of 8 dimensions with latitude and longitude
/// planted at layer 2.
fn planted_acts(dir: &Path) -> PathBuf {
    let ds = data::load_builtin(DATASET).unwrap();
    let (layers, d, n) = (3, 8, ds.len());
    let mut rng = Rng(7);
    let mut data = vec![0f32; (layers + 1) * n * d];
    for l in 0..=layers {
        for e in 0..n {
            for j in 0..d {
                let mut x = rng.next_f32();
                if j < 2 && l == 2 {
                    x += ds.targets[e][j] as f32 / 30.0;
                }
                data[(l * n + e) * d + j] = x;
            }
        }
    }
    let a = Activations {
        n_layers: layers,
        n_entities: n,
        d_model: d,
        data,
        tokens_per_entity: vec![1; n],
        first_token_ids: (0..n as u32).map(|i| 100 + i % 37).collect(),
    };
    let meta = ActsMeta::new(
        "planted",
        &"ab".repeat(32),
        "{name}",
        Pooling::Last,
        DATASET,
        ds.names.clone(),
    );
    let path = dir.join("acts.safetensors");
    std::fs::write(
        &path,
        acts::to_safetensors(&a, &meta, StoreAs::F32).unwrap(),
    )
    .unwrap();
    path
}

/// `probelab fit` with few shuffles and the slow controls off; `extra` adds flags.
fn fit(acts: &Path, out: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "fit",
        acts.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--permutations") {
        args.extend_from_slice(&["--permutations", "5"]);
    }
    probelab(&args)
}

fn ledger_plans(path: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["test_sets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["plans"].as_array().unwrap().clone())
        .collect()
}

#[test]
fn ledger_counts_plans_across_processes() {
    let dir = tmp("ledger");
    let acts = planted_acts(&dir);
    let ledger = dir.join("ledger.json");

    // The first plan: confirmatory, and the ledger (beside --out) holds it.
    let (code, err) = fit(&acts, &dir.join("a"), &[]);
    assert_eq!(code, 0, "{err}");
    let a = read_report(&dir.join("a"));
    assert_eq!(a["plan"]["status"], "confirmatory");
    assert_eq!(a["plan"]["plans_tried"], 1);
    assert_eq!(a["plan"]["hash"].as_str().unwrap().len(), 64);
    assert_eq!(a["plan"]["plan"]["n_permutations"], 5);
    let first = a["plan"]["first_scored"].as_str().unwrap().to_string();
    assert!(first.ends_with('Z') && first.contains('T'), "{first}");
    assert_eq!(ledger_plans(&ledger).len(), 1);

    // The same plan in a new process: still confirmatory, no new entry, the first time kept.
    let (code, err) = fit(&acts, &dir.join("a2"), &[]);
    assert_eq!(code, 0, "{err}");
    let a2 = read_report(&dir.join("a2"));
    assert_eq!(a2["plan"]["status"], "confirmatory");
    assert_eq!(a2["plan"]["plans_tried"], 1);
    assert_eq!(a2["plan"]["hash"], a["plan"]["hash"]);
    assert_eq!(a2["plan"]["first_scored"], first.as_str());
    assert_eq!(ledger_plans(&ledger).len(), 1);

    // Another plan on the same test set: exploratory, two plans tried, said so in words.
    let (code, err) = fit(&acts, &dir.join("b"), &["--permutations", "6"]);
    assert_eq!(code, 0, "{err}");
    let b = read_report(&dir.join("b"));
    assert_eq!(b["plan"]["status"], "exploratory");
    assert_eq!(b["plan"]["plans_tried"], 2);
    assert!(
        err.contains("exploratory: 2 plans scored on this test set"),
        "{err}"
    );
    // The summary in words says it too.
    assert!(err.contains("Exploratory: 2 plans scored"), "{err}");
    assert_eq!(ledger_plans(&ledger).len(), 2);

    // The first plan again stays confirmatory, and now knows two were tried.
    let (code, err) = fit(&acts, &dir.join("a3"), &[]);
    assert_eq!(code, 0, "{err}");
    let a3 = read_report(&dir.join("a3"));
    assert_eq!(a3["plan"]["status"], "confirmatory");
    assert_eq!(a3["plan"]["plans_tried"], 2);

    // Another split seed is another test set, with its own count.
    let (code, err) = fit(&acts, &dir.join("c"), &["--seed", "1"]);
    assert_eq!(code, 0, "{err}");
    let c = read_report(&dir.join("c"));
    assert_eq!(c["plan"]["status"], "confirmatory");
    assert_eq!(c["plan"]["plans_tried"], 1);

    // --ledger puts it elsewhere.
    let other = dir.join("elsewhere").join("plans.json");
    let (code, err) = fit(
        &acts,
        &dir.join("d"),
        &["--permutations", "6", "--ledger", other.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        read_report(&dir.join("d"))["plan"]["status"],
        "confirmatory"
    );
    assert_eq!(ledger_plans(&other).len(), 1);
}

#[test]
fn plan_file_is_written_then_checked() {
    let dir = tmp("planfile");
    let acts = planted_acts(&dir);
    let plan = dir.join("plan.json");

    let (code, err) = fit(&acts, &dir.join("a"), &["--plan", plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("wrote the analysis plan"), "{err}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let report = read_report(&dir.join("a"));
    assert_eq!(written, report["plan"]["plan"]);

    // The same settings follow it.
    let (code, err) = fit(&acts, &dir.join("b"), &["--plan", plan.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("follows the plan"), "{err}");
    assert_eq!(
        read_report(&dir.join("b"))["plan"]["status"],
        "confirmatory"
    );

    // Others fail before anything is fitted, naming each field that differs.
    let (code, err) = fit(
        &acts,
        &dir.join("c"),
        &[
            "--plan",
            plan.to_str().unwrap(),
            "--permutations",
            "6",
            "--split",
            "random:0.3",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("plan.json"), "{err}");
    assert!(err.contains("n_permutations"), "{err}");
    assert!(err.contains("split.test_fraction"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !dir.join("c").exists(),
        "a run against its plan wrote results"
    );

    // A plan file that is not one is named.
    std::fs::write(&plan, "{\"n_permutations\": 5}").unwrap();
    let (code, err) = fit(&acts, &dir.join("d"), &["--plan", plan.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("plan.json") && err.contains("not an analysis plan"),
        "{err}"
    );
}

#[test]
fn corrupt_ledger_is_a_clear_error_and_keeps_the_results() {
    let dir = tmp("corrupt");
    let acts = planted_acts(&dir);
    let ledger = dir.join("ledger.json");
    std::fs::write(&ledger, "{\"version\": 1, \"test_sets\": [").unwrap();
    let (code, err) = fit(&acts, &dir.join("a"), &[]);
    assert_ne!(code, 0);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("ledger.json") && err.contains("corrupt"),
        "{err}"
    );
    // The results are written, the plan marked unrecorded, the ledger left as it was.
    let r = read_report(&dir.join("a"));
    assert_eq!(r["plan"]["status"], "unrecorded");
    assert_eq!(r["plan"]["plans_tried"], 0);
    assert_eq!(
        std::fs::read_to_string(&ledger).unwrap(),
        "{\"version\": 1, \"test_sets\": ["
    );
}

fn plan_with(opts: &AnalysisOptions, split: &SplitSpec) -> AnalysisPlan {
    let ds = data::load_builtin(DATASET).unwrap();
    AnalysisPlan::new(
        &ds,
        &"AB".repeat(32),
        Pooling::Last,
        split,
        &["{name}".to_string()],
        opts,
        true,
    )
    .unwrap()
}

#[test]
fn plan_hash_is_canonical_and_the_ledger_orders_plans() {
    let split = SplitSpec::default();
    let a = plan_with(&AnalysisOptions::default(), &split);
    // Canonical: sorted keys at every depth, so the hash does not depend on field order.
    let json = a.canonical_json().unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(
        a.hash().unwrap(),
        plan_with(&AnalysisOptions::default(), &split)
            .hash()
            .unwrap()
    );
    assert_eq!(a.model_sha256, "ab".repeat(32));

    let b = plan_with(
        &AnalysisOptions {
            neuron_check: false,
            ..AnalysisOptions::default()
        },
        &split,
    );
    assert_ne!(a.hash().unwrap(), b.hash().unwrap());
    assert_eq!(a.differences(&b).unwrap(), vec!["controls.neuron_check"]);

    // The dataset hash follows the rows, not the name.
    let mut ds = data::load_builtin(DATASET).unwrap();
    let h = dataset_sha256(&ds).unwrap();
    ds.name = "renamed".into();
    assert_eq!(dataset_sha256(&ds).unwrap(), h);
    ds.targets[0][0] += 1e-9;
    assert_ne!(dataset_sha256(&ds).unwrap(), h);

    let mut ledger = Ledger::new();
    let r = ledger.record(&a, "t0").unwrap();
    assert_eq!((r.status, r.plans_tried), (PlanStatus::Confirmatory, 1));
    let r = ledger.record(&b, "t1").unwrap();
    assert_eq!((r.status, r.plans_tried), (PlanStatus::Exploratory, 2));
    assert_eq!(r.first_scored, "t1");
    let r = ledger.record(&a, "t2").unwrap();
    assert_eq!((r.status, r.plans_tried), (PlanStatus::Confirmatory, 2));
    assert_eq!(r.first_scored, "t0");
    // Round trip through JSON, as across a restart.
    let back = Ledger::from_json(&ledger.to_json().unwrap(), "x").unwrap();
    assert_eq!(back, ledger);
    let err = Ledger::from_json(b"[1,2", "/some/ledger.json").unwrap_err();
    assert!(err.to_string().contains("/some/ledger.json"), "{err}");

    assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339_utc(1_709_210_096), "2024-02-29T12:34:56Z");
}

#[test]
fn random_split_is_redrawn_over_other_seeds() {
    let dir = tmp("seeds");
    let acts = planted_acts(&dir);
    let (code, err) = fit(
        &acts,
        &dir.join("a"),
        &["--split-seeds", "3", "--seed", "4"],
    );
    assert_eq!(code, 0, "{err}");
    let r = read_report(&dir.join("a"));
    let s = &r["seed_spread"];
    let seeds: Vec<u64> = s["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, vec![5, 6, 7]);
    // The planted layer wins on every split.
    assert_eq!(
        (s["layer_min"].as_u64(), s["layer_max"].as_u64()),
        (Some(2), Some(2))
    );
    let (lo, mid, hi) = (
        s["r2_test_min"].as_f64().unwrap(),
        s["r2_test_median"].as_f64().unwrap(),
        s["r2_test_max"].as_f64().unwrap(),
    );
    assert!(lo <= mid && mid <= hi && lo > 0.5, "{s}");
    assert!(err.contains("re-drawn over 3 other split seeds"), "{err}");
    // The re-draws leave the ledger alone: one plan.
    assert_eq!(ledger_plans(&dir.join("ledger.json")).len(), 1);

    // 0 skips it; a split that is not random has no seeds to re-draw.
    let (code, err) = fit(&acts, &dir.join("b"), &["--split-seeds", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(read_report(&dir.join("b")).get("seed_spread").is_none());
    let (code, err) = fit(
        &acts,
        &dir.join("c"),
        &["--split", "group:continent=Europe"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(read_report(&dir.join("c")).get("seed_spread").is_none());
}
