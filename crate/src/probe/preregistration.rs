//! The pre-registered analysis plan and the ledger of plans scored on each test set.
//!
//! Every choice that could be tuned after seeing the test score (dataset, split, prompts,
//! selection rule, controls, permutations) goes into one [`AnalysisPlan`], serialised with
//! sorted keys and hashed. The [`Ledger`] lists, per dataset and test split, the distinct plan
//! hashes in the order they were first scored: a run whose plan is not the first one there is
//! exploratory, and says how many plans were tried. (Not `plan.rs`: that one plans the splits
//! and folds of a fit.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::data::Dataset;
use crate::extract::Pooling;
use crate::probe::report::{AnalysisOptions, SpaceTargets, SplitSpec};
use crate::{Error, Result};

/// How the layer (and, in a sweep, the template) is chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionRule {
    /// Always `max_validation_r2`: the best mean R² over K validation folds inside training.
    pub rule: String,
    pub validation_folds: usize,
    pub standardize: bool,
    pub alphas: Vec<f64>,
    pub space_targets: SpaceTargets,
}

/// The controls switched on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanControls {
    pub random_init: bool,
    pub ngram_buckets: usize,
    pub gain_over_names: bool,
    pub knn_neighbours: Vec<usize>,
    pub neuron_check: bool,
    pub learning: bool,
}

/// Everything about a run that could be changed after seeing its test score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisPlan {
    /// [`dataset_sha256`] of the rows the run reads.
    pub dataset_sha256: String,
    /// The model the activations are of (another model is another plan).
    pub model_sha256: String,
    pub pooling: Pooling,
    /// The split and its seed.
    pub split: SplitSpec,
    /// The prompt set, in order.
    pub prompts: Vec<String>,
    pub selection: SelectionRule,
    pub controls: PlanControls,
    pub n_permutations: usize,
    /// Seeds validation folds, shuffles and control-task targets.
    pub seed: u64,
}

impl AnalysisPlan {
    /// The plan of a run over `dataset` with these settings; `random_init` says whether the
    /// random-initialised model's activations are given.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dataset: &Dataset,
        model_sha256: &str,
        pooling: Pooling,
        split: &SplitSpec,
        prompts: &[String],
        opts: &AnalysisOptions,
        random_init: bool,
    ) -> Result<AnalysisPlan> {
        Ok(AnalysisPlan {
            dataset_sha256: dataset_sha256(dataset)?,
            model_sha256: model_sha256.to_ascii_lowercase(),
            pooling,
            split: split.clone(),
            prompts: prompts.to_vec(),
            selection: SelectionRule {
                rule: "max_validation_r2".into(),
                validation_folds: opts.validation_folds,
                standardize: opts.standardize,
                alphas: opts.alphas.clone(),
                space_targets: opts.space_targets,
            },
            controls: PlanControls {
                random_init,
                ngram_buckets: opts.ngram_buckets,
                gain_over_names: opts.gain_over_names,
                knn_neighbours: opts.knn_neighbours.clone(),
                neuron_check: opts.neuron_check,
                learning: opts.learning,
            },
            n_permutations: opts.n_permutations,
            seed: opts.seed,
        })
    }

    /// The plan as JSON with every object's keys sorted: the bytes that are hashed and written.
    pub fn canonical_json(&self) -> Result<String> {
        canonical(&to_value(self)?)
    }

    /// sha256 of [`AnalysisPlan::canonical_json`], lower-case hex.
    pub fn hash(&self) -> Result<String> {
        Ok(sha256_hex(self.canonical_json()?.as_bytes()))
    }

    /// Reads a plan file's bytes (`source` names it in errors).
    pub fn from_json(bytes: &[u8], source: &str) -> Result<AnalysisPlan> {
        serde_json::from_slice(bytes).map_err(|e| {
            Error::Input(format!(
                "{source}: not an analysis plan written by probelab ({e})"
            ))
        })
    }

    /// The fields where `other` differs from this plan, as dotted paths (`split.seed`), in
    /// key order; empty when the plans are equal.
    pub fn differences(&self, other: &AnalysisPlan) -> Result<Vec<String>> {
        let mut out = Vec::new();
        diff(&to_value(self)?, &to_value(other)?, "", &mut out);
        Ok(out)
    }
}

/// sha256 (hex) of a dataset's rows as the run reads them: the target kind, names, targets,
/// group columns and test column, not the dataset's name (the same rows under another name are
/// the same test set).
pub fn dataset_sha256(dataset: &Dataset) -> Result<String> {
    #[derive(Serialize)]
    struct Rows<'a> {
        kind: crate::data::TargetKind,
        names: &'a [String],
        targets: &'a [Vec<f64>],
        groups: &'a BTreeMap<String, Vec<String>>,
        is_test: &'a Option<Vec<bool>>,
    }
    let rows = Rows {
        kind: dataset.kind,
        names: &dataset.names,
        targets: &dataset.targets,
        groups: &dataset.groups,
        is_test: &dataset.is_test,
    };
    Ok(sha256_hex(canonical(&to_value(&rows)?)?.as_bytes()))
}

fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Compute(format!("serialising the plan: {e}")))
}

/// JSON with sorted keys at every depth, whatever map order serde_json was built with.
fn canonical(v: &Value) -> Result<String> {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<&String, Value> =
                    m.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    // Written by hand so the order holds even with serde_json's `preserve_order`.
    fn write(v: &Value, out: &mut String) -> Result<()> {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(
                        &serde_json::to_string(k).map_err(|e| Error::Compute(e.to_string()))?,
                    );
                    out.push(':');
                    write(&m[k], out)?;
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out)?;
                }
                out.push(']');
            }
            other => out.push_str(
                &serde_json::to_string(other).map_err(|e| Error::Compute(e.to_string()))?,
            ),
        }
        Ok(())
    }
    let mut out = String::new();
    write(&sort(v), &mut out)?;
    Ok(out)
}

fn diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(u, v, &join(k), out),
                    _ => out.push(join(k)),
                }
            }
        }
        _ if a != b => out.push(if path.is_empty() {
            "plan".into()
        } else {
            path.into()
        }),
        _ => {}
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the plan is the first scored on its test set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanStatus {
    /// The first plan scored on this dataset and test split (or that plan again).
    Confirmatory,
    /// Another plan was scored on this test set first.
    Exploratory,
    /// The ledger could not be read or written, so nothing is known about earlier plans.
    Unrecorded,
}

/// The report's `plan` block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// sha256 of the plan's canonical JSON.
    pub hash: String,
    pub plan: AnalysisPlan,
    /// When the test set was first scored under this plan (RFC 3339, UTC).
    pub first_scored: String,
    pub status: PlanStatus,
    /// Distinct plans scored on this dataset and test split, this one included (0: unrecorded).
    pub plans_tried: usize,
}

impl PlanRecord {
    /// A record for a run whose ledger failed: the plan and its hash, nothing about others.
    pub fn unrecorded(plan: &AnalysisPlan, now: &str) -> Result<PlanRecord> {
        Ok(PlanRecord {
            hash: plan.hash()?,
            plan: plan.clone(),
            first_scored: now.into(),
            status: PlanStatus::Unrecorded,
            plans_tried: 0,
        })
    }

    /// What the summary and the verdict card say about the plan.
    pub fn sentence(&self) -> String {
        match self.status {
            PlanStatus::Confirmatory => format!(
                "confirmatory: the first plan scored on this test set (plan {}, first scored {})",
                &self.hash[..self.hash.len().min(12)],
                self.first_scored
            ),
            PlanStatus::Exploratory => format!(
                "exploratory: {} plans scored on this test set (plan {} is not the first)",
                self.plans_tried,
                &self.hash[..self.hash.len().min(12)]
            ),
            PlanStatus::Unrecorded => format!(
                "plan {} not recorded in a ledger: whether it is the first scored on this test \
                 set is unknown",
                &self.hash[..self.hash.len().min(12)]
            ),
        }
    }
}

/// One plan in the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerPlan {
    pub hash: String,
    /// When the test set was first scored under it (RFC 3339, UTC).
    pub first_scored: String,
}

/// One test set: a dataset's rows and a test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerTestSet {
    pub dataset_sha256: String,
    pub split: SplitSpec,
    /// Distinct plans in the order first scored; the first is the confirmatory one.
    pub plans: Vec<LedgerPlan>,
}

/// The plans scored on each test set (ledger.json).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub version: u32,
    pub test_sets: Vec<LedgerTestSet>,
}

impl Ledger {
    pub const VERSION: u32 = 1;

    pub fn new() -> Ledger {
        Ledger {
            version: Self::VERSION,
            test_sets: Vec::new(),
        }
    }

    /// Reads a ledger's bytes; `source` names the file in the error (a corrupt ledger is
    /// never silently replaced, or the count of plans would start again).
    pub fn from_json(bytes: &[u8], source: &str) -> Result<Ledger> {
        let ledger: Ledger = serde_json::from_slice(bytes).map_err(|e| {
            Error::Input(format!(
                "the plan ledger {source} is corrupt ({e}); fix it or move it away (a new \
                 ledger counts plans from zero)"
            ))
        })?;
        if ledger.version != Self::VERSION {
            return Err(Error::Input(format!(
                "the plan ledger {source} has version {}, this probelab reads version {}",
                ledger.version,
                Self::VERSION
            )));
        }
        Ok(ledger)
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Compute(e.to_string()))
    }

    /// Where `plan`'s test set (its dataset's rows and its split) is in the ledger.
    fn test_set_of(&self, plan: &AnalysisPlan) -> Option<usize> {
        self.test_sets
            .iter()
            .position(|t| t.dataset_sha256 == plan.dataset_sha256 && t.split == plan.split)
    }

    /// How many distinct plans have been scored on `plan`'s test set so far.
    pub fn plans_scored(&self, plan: &AnalysisPlan) -> usize {
        self.test_set_of(plan)
            .map_or(0, |i| self.test_sets[i].plans.len())
    }

    /// Records that `plan`'s test set is scored now (`now`, RFC 3339): adds the plan if it is
    /// new there, and says whether it is the first. The same plan again adds nothing.
    pub fn record(&mut self, plan: &AnalysisPlan, now: &str) -> Result<PlanRecord> {
        let hash = plan.hash()?;
        let at = match self.test_set_of(plan) {
            Some(i) => i,
            None => {
                self.test_sets.push(LedgerTestSet {
                    dataset_sha256: plan.dataset_sha256.clone(),
                    split: plan.split.clone(),
                    plans: Vec::new(),
                });
                self.test_sets.len() - 1
            }
        };
        let set = &mut self.test_sets[at];
        let first_scored = match set.plans.iter().find(|p| p.hash == hash) {
            Some(p) => p.first_scored.clone(),
            None => {
                set.plans.push(LedgerPlan {
                    hash: hash.clone(),
                    first_scored: now.into(),
                });
                now.into()
            }
        };
        let status = if set.plans[0].hash == hash {
            PlanStatus::Confirmatory
        } else {
            PlanStatus::Exploratory
        };
        Ok(PlanRecord {
            hash,
            plan: plan.clone(),
            first_scored,
            status,
            plans_tried: set.plans.len(),
        })
    }
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`2026-12-05T15:35:12Z`).
pub fn rfc3339_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The time now, RFC 3339 UTC.
#[cfg(not(target_arch = "wasm32"))]
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_utc(secs)
}

/// Reads the ledger at `path` (none yet: an empty one).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_ledger(path: &std::path::Path) -> Result<Ledger> {
    match std::fs::read(path) {
        Ok(bytes) => Ledger::from_json(&bytes, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::new()),
        Err(e) => Err(Error::io(path.display().to_string(), e)),
    }
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename, so a reader
/// never sees half a file.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let io = |p: &std::path::Path, e| Error::io(p.display().to_string(), e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path, e)
    })
}

/// Records `plan` in the ledger file at `path` (read, add, write atomically).
#[cfg(not(target_arch = "wasm32"))]
pub fn record_in_file(path: &std::path::Path, plan: &AnalysisPlan) -> Result<PlanRecord> {
    let mut ledger = read_ledger(path)?;
    let record = ledger.record(plan, &now_utc())?;
    write_atomic(path, &ledger.to_json()?)?;
    Ok(record)
}

/// `--plan FILE`: writes `plan` there when the file does not exist; else checks the run's plan
/// against it and fails naming every differing field. Returns whether the file was written.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_or_check(path: &std::path::Path, plan: &AnalysisPlan) -> Result<bool> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            let locked = AnalysisPlan::from_json(&bytes, &name)?;
            let differ = locked.differences(plan)?;
            if differ.is_empty() {
                Ok(false)
            } else {
                Err(Error::Input(format!(
                    "this run does not follow the plan in {name}: it differs in {}",
                    differ.join(", ")
                )))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut text = serde_json::to_string_pretty(
                &serde_json::from_str::<Value>(&plan.canonical_json()?)
                    .map_err(|e| Error::Compute(e.to_string()))?,
            )
            .map_err(|e| Error::Compute(e.to_string()))?;
            text.push('\n');
            write_atomic(path, text.as_bytes())?;
            Ok(true)
        }
        Err(e) => Err(Error::io(name, e)),
    }
}
