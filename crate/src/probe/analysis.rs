//! The science pipeline: activations + dataset → a [`Report`] with one probe per layer, the
//! controls that tell a real representation from an artefact, and per-entity predictions.
//!
//! For every layer (0 = embedding output, i = residual stream after block i) a ridge probe maps
//! the standardized activations (statistics of the training rows only) to z-scored targets:
//! latitude and longitude (or 3-D unit-sphere coordinates, projected back) for space, the year for
//! time. Beside each headline figure the report puts the control that could explain it away:
//!
//! 1. **Permutation null** — refits on row-shuffled training targets, reusing the layer's
//!    decomposition, scored on the untouched test set. The selected layer's p-value compares its
//!    test R² with the MAXIMUM over all layers of each shuffle's test R², so choosing the best
//!    layer is paid for (Westfall & Young's max-T; conservative whatever the selection rule).
//! 2. **Control task** (Hewitt & Liang 2019) — every entity's FIRST TOKEN gets a fixed random
//!    target; a probe that scores well on it memorizes tokens. Selectivity = real − control.
//! 3. **Lexical baselines** — layer 0 (token embeddings) and a model-free ridge on hashed
//!    character 1–3-grams of the name alone.
//! 4. **Random-init model** — the same probe on a randomly initialised model's activations.
//! 5. **Per-group breakdown** and block (group) hold-out, including leave-one-group-out.
//! 6. **Honest selection** — alpha by leave-one-out and the layer by K-fold validation R², both
//!    inside the training set; the test set is scored once for that choice.
//! 7. **"Space neuron" check** — the single residual dimension with the largest |Spearman| per
//!    target and layer, with a max-over-dimensions permutation p-value.
//!
//! Linear algebra: one symmetric eigendecomposition per (layer, training set) — of the d × d
//! covariance when n_train > d, else of the n × n kernel — serves every alpha, the real, control
//! and all permuted targets (batched into one matrix product). The eigensolver is a blocked
//! Householder reduction (LAPACK `dsytrd` style) plus divide and conquer on the tridiagonal
//! matrix (Cuppen; Gu–Eisenstat eigenvectors), mostly matrix products: several times faster than
//! nalgebra's `SymmetricEigen` at d = 576 and more accurate (nalgebra's QR iteration leaves
//! residuals near 1e-8 on some small tridiagonal matrices). The K validation folds reuse the
//! per-fold scatter matrices that sum to the covariance, so they cost one Cholesky each.
//!
//! Nothing here uses threads, files, clocks or OS randomness (seeded [`SplitMix64`] only), so
//! the same code runs in wasm32. [`Analysis`] processes one layer at a time, so callers can
//! stream layers that do not fit in memory together, or (natively) run layers on threads.
// Index loops here follow the formulas' subscripts (targets t, alphas a, rows i).
#![allow(clippy::needless_range_loop)]

use std::collections::{BTreeMap, BTreeSet};

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::data::{self, Dataset, TargetKind};
use crate::extract::acts::ActsMeta;
use crate::extract::Activations;
use crate::probe::metrics::{self, LatLon, EARTH_RADIUS_KM};
use crate::probe::ridge::{default_alphas, Split, SplitMix64};
use crate::{Error, Result};

fn input_err(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}

// =============================================================================================
// Options and inputs
// =============================================================================================

/// How entities are split into training and test rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SplitSpec {
    /// Seeded random split; `n_test = ceil(test_fraction · n)`.
    Random { test_fraction: f64, seed: u64 },
    /// The dataset's `is_test` column.
    Column,
    /// Block hold-out on a group column: `held_out = Some(g)` tests on group `g` and trains on
    /// the rest; `None` runs leave-one-group-out over every group and pools the held-out
    /// predictions (each entity is predicted once, by a probe that never saw its group).
    Group {
        column: String,
        held_out: Option<String>,
    },
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec::Random {
            test_fraction: 0.2,
            seed: 0,
        }
    }
}

/// What a space probe is fitted to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpaceTargets {
    /// Latitude and longitude in degrees (Gurnee & Tegmark).
    #[default]
    LatLon,
    /// Unit-sphere (x, y, z); predictions are projected back to latitude/longitude.
    Sphere,
}

/// Analysis settings. Defaults: 100 permutations, seed 0, standardized features, the
/// [`default_alphas`] grid, 5 validation folds, latitude/longitude targets, 2^10 n-gram buckets,
/// neuron check on, per-layer test predictions stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysisOptions {
    /// Shuffles for the permutation nulls (probe and neuron check); 0 skips them (p-values null).
    pub n_permutations: usize,
    /// Seeds validation folds, shuffles and control-task targets (the random split has its own).
    pub seed: u64,
    /// Standardize features with training-set statistics (else only centre them).
    pub standardize: bool,
    /// Ridge penalties searched by leave-one-out.
    pub alphas: Vec<f64>,
    /// K of the K-fold validation inside the training set that picks the layer.
    pub validation_folds: usize,
    pub space_targets: SpaceTargets,
    /// Column for the per-group breakdown: default the group split's column, else `continent`,
    /// else the first group column with 2–50 distinct values.
    pub group_column: Option<String>,
    /// Hash buckets of the character 1–3-gram baseline (cost grows as buckets³).
    pub ngram_buckets: usize,
    /// Run the single-dimension ("space neuron") check.
    pub neuron_check: bool,
    /// Store every layer's test (and, with one training set, training) predictions in the
    /// report (for a layer slider on a map).
    pub layer_predictions: bool,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            n_permutations: 100,
            seed: 0,
            standardize: true,
            alphas: default_alphas(),
            validation_folds: 5,
            space_targets: SpaceTargets::LatLon,
            group_column: None,
            ngram_buckets: 1 << 10,
            neuron_check: true,
            layer_predictions: true,
        }
    }
}

/// Inputs for the controls that the caller must compute with the model.
#[derive(Clone, Debug, Default)]
pub struct ControlInputs<'a> {
    /// Each entity's first token id (for the control task); empty = no control task.
    pub first_token_ids: Vec<u32>,
    /// The same entities through a randomly initialised model of the same architecture.
    pub random_init: Option<&'a Activations>,
}

/// What the report says about the model and prompt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportContext {
    pub model_name: String,
    pub model_sha256: String,
    pub prompt_template: String,
    pub dataset_name: String,
}

/// Progress: `(stage, done, total)`; return `false` to cancel ([`Error::Cancelled`]).
pub type ProgressFn<'a> = dyn FnMut(&str, usize, usize) -> bool + 'a;

// =============================================================================================
// Report
// =============================================================================================

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub sha256: String,
    pub n_layers: usize,
    pub d_model: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub n: usize,
    pub target: TargetKind,
    /// Columns of `truth`/`predicted`: `[latitude, longitude]` or `[year]`.
    pub target_names: Vec<String>,
    /// What the probe is fitted to (differs for sphere targets: `[x, y, z]`).
    pub fitted_targets: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldInfo {
    /// The held-out group (group splits), else null.
    pub held_out: Option<String>,
    pub n_train: usize,
    pub n_test: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// `random`, `column`, `group` (one held-out group) or `leave_one_group_out`.
    pub kind: String,
    /// Training rows (leave-one-group-out: every entity trains in some fold, so n).
    pub n_train: usize,
    /// Test rows (leave-one-group-out: every entity is predicted once, so n).
    pub n_test: usize,
    pub test_fraction: Option<f64>,
    pub seed: Option<u64>,
    pub column: Option<String>,
    pub held_out: Option<String>,
    pub validation_folds: usize,
    /// One entry per fitted train/test split (one, or one per group).
    pub folds: Vec<FoldInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerControls {
    /// Mean and max over shuffles of the test R² of probes fitted to shuffled training targets.
    pub shuffled_r2_mean: Option<f64>,
    pub shuffled_r2_max: Option<f64>,
    /// Test R² on the first-token control task.
    pub control_task_r2: Option<f64>,
    /// `r2_test_fitted − control_task_r2`.
    pub selectivity: Option<f64>,
    /// Test R² of the same probe on the random-init model's activations.
    pub random_init_r2: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub layer: usize,
    /// Ridge penalty chosen by leave-one-out on the training set (median over folds for
    /// leave-one-group-out).
    pub alpha: f64,
    /// In-sample R² (training rows).
    pub r2_train: f64,
    /// Mean K-fold validation R² inside the training set (what the layer is selected by).
    pub r2_validation: f64,
    /// Held-out R² on the test set, uniform average over `target_names`.
    pub r2_test: f64,
    pub r2_test_per_target: Vec<f64>,
    /// Held-out R² in the fitted coordinates (equals `r2_test` except for sphere targets).
    pub r2_test_fitted: f64,
    /// Spearman correlation per target on the test set (null when a side is constant).
    pub spearman_test: Vec<Option<f64>>,
    pub km_mean: Option<f64>,
    pub km_median: Option<f64>,
    pub proximity_error: Option<f64>,
    pub years_mae: Option<f64>,
    /// This layer's own permutation p-value (NOT corrected for choosing among layers).
    pub p_value_uncorrected: Option<f64>,
    pub controls: LayerControls,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldSelection {
    pub held_out: Option<String>,
    pub layer: usize,
    pub alpha: f64,
    pub r2_validation: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    /// The chosen layer (leave-one-group-out: the one most folds chose; see `by_fold`).
    pub layer: usize,
    pub alpha: f64,
    pub chosen_by: String,
    pub r2_validation: f64,
    /// Held-out R², scored once for the choice.
    pub r2_test: f64,
    pub r2_test_fitted: f64,
    pub spearman_test: Vec<Option<f64>>,
    pub km_mean: Option<f64>,
    pub km_median: Option<f64>,
    pub proximity_error: Option<f64>,
    pub years_mae: Option<f64>,
    /// Max-over-layers permutation p-value, `(1 + #{null ≥ observed}) / (1 + shuffles)`.
    pub p_value: Option<f64>,
    /// The observed statistic the p-value tests (see `p_value_method`).
    pub p_statistic: Option<f64>,
    pub p_value_method: String,
    pub n_permutations: usize,
    pub control_task_r2: Option<f64>,
    pub selectivity: Option<f64>,
    pub random_init_r2: Option<f64>,
    /// Each fold's own choice (one entry unless leave-one-group-out).
    pub by_fold: Vec<FoldSelection>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Ridge on hashed character 1–3-grams of the name alone (no model), test R².
    pub ngram_r2_test: Option<f64>,
    pub ngram_buckets: usize,
    /// Layer 0 (token embeddings) test R².
    pub layer0_r2_test: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    pub group: String,
    /// Training rows from this group that the probe which predicted it was trained on (0 for
    /// the held-out group of a block hold-out).
    pub n_train: usize,
    pub n_test: usize,
    /// R² within the group's test rows (null under two rows).
    pub r2_test: Option<f64>,
    pub km_mean: Option<f64>,
    pub years_mae: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeuronReport {
    pub layer: usize,
    /// Residual-stream dimension.
    pub index: usize,
    pub target: String,
    /// Signed Spearman correlation of that dimension with the target.
    pub spearman: f64,
    /// Max-over-dimensions permutation p-value.
    pub p_value: Option<f64>,
}

/// One entity's truth and prediction at the selected layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntityPrediction {
    pub index: usize,
    pub name: String,
    /// `train` (in-sample prediction) or `test` (held-out).
    pub split: String,
    /// The held-out group whose fold predicted it (leave-one-group-out).
    pub fold: Option<String>,
    pub group: Option<String>,
    pub truth: Vec<f64>,
    /// Raw probe output in `target_names` units (a latitude/longitude probe can overshoot ±90°
    /// or ±180°; `error` uses the clamped and wrapped position).
    pub predicted: Vec<f64>,
    /// Great-circle km or absolute years.
    pub error: f64,
}

/// Predictions of every layer, for animating a map layer by layer: the held-out rows, and the
/// training rows' in-sample predictions where there is one training set (not under
/// leave-one-group-out, where every entity is predicted by the fold that held it out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPredictions {
    /// Entity indices of the test rows, in order.
    pub entities: Vec<usize>,
    /// `[layer][row][target]` in `target_names` units; positions with latitude clamped to ±90°
    /// and longitude wrapped to [-180°, 180°) (`EntityPrediction::predicted` keeps the raw probe
    /// output, from which R² is computed).
    pub predicted: Vec<Vec<Vec<f64>>>,
    /// Entity indices of the training rows, in order (empty under leave-one-group-out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub train_entities: Vec<usize>,
    /// `[layer][row][target]` for `train_entities`, in the units of `predicted`: in-sample
    /// predictions of the probe fitted on those rows (optimistic, for showing only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub train_predicted: Vec<Vec<Vec<f64>>>,
}

/// Everything the analysis found. Serialize it as report.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    pub prompt: String,
    pub split: SplitInfo,
    pub options: AnalysisOptions,
    pub layers: Vec<LayerReport>,
    pub selected: Selected,
    pub baselines: Baselines,
    pub by_group_column: Option<String>,
    pub by_group: Vec<GroupReport>,
    pub neurons: Vec<NeuronReport>,
    /// Which rows the neuron check used: `train` or `all` (leave-one-group-out).
    pub neuron_rows: Option<String>,
    /// What each figure is (train / validation / test; how p-values are computed).
    pub notes: BTreeMap<String, String>,
    pub warnings: Vec<String>,
    #[serde(default)]
    pub entities: Vec<EntityPrediction>,
    #[serde(default)]
    pub layer_predictions: Option<LayerPredictions>,
}

// =============================================================================================
// Checks
// =============================================================================================

/// Checks that activations described by `meta` belong to `dataset` (same names in the same order,
/// and a dataset hash that is either [`data::names_hash`] or [`data::dataset_hash`] of it) and,
/// when given, to the model with SHA-256 `expected_model_sha256`.
pub fn check_matches(
    meta: &ActsMeta,
    dataset: &Dataset,
    expected_model_sha256: Option<&str>,
) -> Result<()> {
    if let Some(sha) = expected_model_sha256 {
        if !meta.model_sha256.eq_ignore_ascii_case(sha.trim()) {
            return Err(input_err(format!(
                "the activations come from model '{}' (sha256 {}), not the expected model \
                 (sha256 {}); extract them again with this model",
                meta.model_name,
                short(&meta.model_sha256),
                short(sha)
            )));
        }
    }
    if meta.names.len() != dataset.len() {
        return Err(input_err(format!(
            "the activations are of {} entities ('{}') but dataset '{}' has {}",
            meta.names.len(),
            meta.dataset_name,
            dataset.name,
            dataset.len()
        )));
    }
    if let Some(i) = (0..dataset.len()).find(|&i| meta.names[i] != dataset.names[i]) {
        return Err(input_err(format!(
            "the activations are of another entity list: entity {} is '{}' there but '{}' in \
             dataset '{}'",
            i + 1,
            meta.names[i],
            dataset.names[i],
            dataset.name
        )));
    }
    let (by_names, by_data) = (
        data::names_hash(&dataset.names),
        data::dataset_hash(dataset),
    );
    if !(meta.dataset_hash.eq_ignore_ascii_case(&by_names)
        || meta.dataset_hash.eq_ignore_ascii_case(&by_data))
    {
        return Err(input_err(format!(
            "the activations' dataset hash {} matches neither the names ({}) nor the data ({}) \
             of dataset '{}'",
            short(&meta.dataset_hash),
            short(&by_names),
            short(&by_data),
            dataset.name
        )));
    }
    Ok(())
}

fn short(h: &str) -> String {
    h.chars().take(12).collect()
}

fn check_finite_layer(
    what: &str,
    x: &[f32],
    d: usize,
    layer: usize,
    names: &[String],
) -> Result<()> {
    if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
        let (e, j) = (pos / d.max(1), pos % d.max(1));
        return Err(input_err(format!(
            "{what}: layer {layer}, entity {} ('{}'), dimension {j} is {} — re-extract them \
             (a NaN or infinity usually means an overflow in the model or a corrupt file)",
            e + 1,
            names.get(e).map(String::as_str).unwrap_or("?"),
            x[pos]
        )));
    }
    Ok(())
}

// =============================================================================================
// Small helpers
// =============================================================================================

fn mix_seed(seed: u64, tag: u64) -> u64 {
    SplitMix64::new(seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

fn fin(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn std_normal(rng: &mut SplitMix64) -> f64 {
    // Box–Muller from two uniforms in (0, 1].
    let u = |r: &mut SplitMix64| ((r.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let (a, b) = (u(rng), u(rng));
    (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
}

fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count().max(1) as f64;
    let m = v.clone().sum::<f64>() / n;
    let var = v.map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// Latitude clamped to ±90 and longitude wrapped to [-180, 180).
fn to_latlon(lat: f64, lon: f64) -> LatLon {
    LatLon {
        lat: lat.clamp(-90.0, 90.0),
        lon: (lon + 180.0).rem_euclid(360.0) - 180.0,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Mean proximity error, equal to [`metrics::mean_proximity_error`] but O(n²) dot products
/// instead of O(n²) haversines: "closer than the miss" is "unit vectors' dot product above the
/// cosine of the miss angle"; pairs within rounding of the threshold are decided by haversine.
pub fn proximity_error_mean(truth: &[LatLon], pred: &[LatLon]) -> Result<f64> {
    if truth.len() != pred.len() {
        return Err(input_err(format!(
            "proximity error: {} truths but {} predictions",
            truth.len(),
            pred.len()
        )));
    }
    let n = truth.len();
    if n < 2 {
        return Err(input_err("proximity error needs at least two entities"));
    }
    let unit = |p: &LatLon| {
        let (la, lo) = (p.lat.to_radians(), p.lon.to_radians());
        [la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()]
    };
    let u: Vec<[f64; 3]> = truth.iter().map(unit).collect();
    let mut total = 0.0;
    for i in 0..n {
        let miss = metrics::great_circle_km(truth[i], pred[i]);
        let cos_miss = (miss / EARTH_RADIUS_KM).cos();
        let mut closer = 0usize;
        for j in 0..n {
            if j == i {
                continue;
            }
            let dot = u[i][0] * u[j][0] + u[i][1] * u[j][1] + u[i][2] * u[j][2];
            if (dot - cos_miss).abs() < 1e-9 {
                if metrics::great_circle_km(truth[i], truth[j]) < miss {
                    closer += 1;
                }
            } else if dot > cos_miss {
                closer += 1;
            }
        }
        total += closer as f64 / (n - 1) as f64;
    }
    Ok(total / n as f64)
}

// =============================================================================================
// Spectral ridge engine
// =============================================================================================

/// Eigenvalues (clamped at 0: the matrices are PSD) and eigenvectors of a symmetric matrix:
/// Householder tridiagonalization, then divide and conquer on the tridiagonal matrix.
fn symmetric_eigen(mut m: DMatrix<f64>) -> Result<(Vec<f64>, DMatrix<f64>)> {
    let n = m.nrows();
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (m[(i, j)] + m[(j, i)]);
            m[(i, j)] = v;
            m[(j, i)] = v;
        }
    }
    let (lambda, v) = if n <= 1 {
        (m.iter().copied().collect(), DMatrix::identity(n, n))
    } else {
        let tri = Tridiagonal::new(m);
        let (lambda, s) = tridiagonal_eigen(&tri.diag, &tri.off)?;
        (lambda, tri.apply_q(s))
    };
    Ok((lambda.iter().map(|&l| l.max(0.0)).collect(), v))
}

/// Panel width of the blocked Householder reduction.
const TRI_BLOCK: usize = 32;

/// `A = Q T Qᵀ` by Householder reflections, blocked as LAPACK's `dsytrd` (lower): each panel of
/// reflectors is built with matrix-vector products against the not-yet-updated trailing matrix
/// (`dlatrd`), then the trailing matrix gets one rank-2·panel update as matrix products. The
/// reflectors stay in the lower triangle, and [`Tridiagonal::apply_q`] applies `Q` in compact-WY
/// blocks.
struct Tridiagonal {
    n: usize,
    /// Column-major; column `c` holds reflector `c` in rows `c+1..n` (unit first entry).
    a: Vec<f64>,
    tau: Vec<f64>,
    diag: Vec<f64>,
    off: Vec<f64>,
}

impl Tridiagonal {
    fn new(m: DMatrix<f64>) -> Self {
        let n = m.nrows();
        let mut a = m.as_slice().to_vec();
        let mut tau = vec![0.0; n.saturating_sub(1)];
        let mut diag = vec![0.0; n];
        let mut off = vec![0.0; n.saturating_sub(1)];
        let mut w = vec![0.0; n * TRI_BLOCK];
        let mut k = 0;
        while k + 1 < n {
            let nb = TRI_BLOCK.min(n - 1 - k);
            w.iter_mut().for_each(|x| *x = 0.0);
            for i in 0..nb {
                let c = k + i;
                // Bring column c up to date with the panel's earlier reflectors:
                // A(c:n, c) -= V(c:n, 0:i) W(c, 0:i)ᵀ + W(c:n, 0:i) V(c, 0:i)ᵀ.
                for j in 0..i {
                    let (vc, wc) = (a[(k + j) * n + c], w[j * n + c]);
                    for r in c..n {
                        a[c * n + r] -= a[(k + j) * n + r] * wc + w[j * n + r] * vc;
                    }
                }
                diag[c] = a[c * n + c];
                // Reflector annihilating A(c+2:n, c).
                let alpha = a[c * n + c + 1];
                let xnorm = a[c * n + c + 2..(c + 1) * n]
                    .iter()
                    .map(|v| v * v)
                    .sum::<f64>()
                    .sqrt();
                let (beta, t) = if xnorm == 0.0 {
                    (alpha, 0.0)
                } else {
                    let beta = -alpha.hypot(xnorm).copysign(alpha);
                    let scale = 1.0 / (alpha - beta);
                    a[c * n + c + 2..(c + 1) * n]
                        .iter_mut()
                        .for_each(|v| *v *= scale);
                    (beta, (beta - alpha) / beta)
                };
                off[c] = beta;
                tau[c] = t;
                a[c * n + c + 1] = 1.0;
                // w_i = τ (A22 v − V (Wᵀv) − W (Vᵀv)), then w_i −= (τ/2)(w_iᵀv) v, over rows c+1..n.
                let lo = c + 1;
                let mut wi = vec![0.0; n - lo];
                {
                    let v = &a[c * n + lo..(c + 1) * n];
                    // Symmetric product with the lower triangle of A(lo:n, lo:n).
                    for col in lo..n {
                        let colv = &a[col * n + col + 1..(col + 1) * n];
                        let off0 = col - lo;
                        let vcol = v[off0];
                        let d = dot_axpy(colv, &v[off0 + 1..], &mut wi[off0 + 1..], vcol);
                        wi[off0] += a[col * n + col] * vcol + d;
                    }
                    for j in 0..i {
                        let vj = &a[(k + j) * n + lo..(k + j + 1) * n];
                        let wj = &w[j * n + lo..(j + 1) * n];
                        let (t1, t2) = (dot(wj, v), dot(vj, v));
                        axpy(&mut wi, -t1, vj);
                        axpy(&mut wi, -t2, wj);
                    }
                    wi.iter_mut().for_each(|x| *x *= t);
                    let half = -0.5 * t * dot(&wi, v);
                    for (x, &q) in wi.iter_mut().zip(v) {
                        *x += half * q;
                    }
                }
                w[i * n + lo..(i + 1) * n].copy_from_slice(&wi);
            }
            // Trailing update A22 −= V Wᵀ + W Vᵀ over rows/columns k+nb..n (lower triangle).
            let t0 = k + nb;
            if t0 < n {
                let m2 = n - t0;
                let v2 = DMatrix::from_fn(m2, nb, |r, j| a[(k + j) * n + t0 + r]);
                let w2 = DMatrix::from_fn(m2, nb, |r, j| w[j * n + t0 + r]);
                let prod = &v2 * w2.transpose();
                for col in 0..m2 {
                    for r in col..m2 {
                        a[(t0 + col) * n + t0 + r] -= prod[(r, col)] + prod[(col, r)];
                    }
                }
            }
            k += nb;
        }
        if n > 0 {
            diag[n - 1] = a[(n - 1) * n + n - 1];
        }
        Self {
            n,
            a,
            tau,
            diag,
            off,
        }
    }

    /// `Q · s` with `Q = H_0 H_1 ⋯ H_{n−2}`, applied block by block from the last panel as
    /// `(I − V T Vᵀ)` (compact WY, LAPACK's `dlarft` forward/columnwise).
    fn apply_q(&self, mut s: DMatrix<f64>) -> DMatrix<f64> {
        let n = self.n;
        if n < 2 {
            return s;
        }
        let n_refl = n - 1;
        let mut starts: Vec<usize> = (0..n_refl).step_by(TRI_BLOCK).collect();
        starts.reverse();
        for k in starts {
            let nb = TRI_BLOCK.min(n_refl - k);
            // Reflector k+j acts on rows k+j+1..n; the block acts on rows k+1..n.
            let m = n - k - 1;
            let v = DMatrix::from_fn(m, nb, |r, j| {
                if r < j {
                    0.0
                } else if r == j {
                    1.0
                } else {
                    self.a[(k + j) * n + k + 1 + r]
                }
            });
            let mut t = DMatrix::<f64>::zeros(nb, nb);
            for i in 0..nb {
                let ti = self.tau[k + i];
                t[(i, i)] = ti;
                if i > 0 && ti != 0.0 {
                    // T(0:i, i) = −τ_i T(0:i, 0:i) V(:, 0:i)ᵀ v_i
                    let vtv: Vec<f64> = (0..i)
                        .map(|j| (i..m).map(|r| v[(r, j)] * v[(r, i)]).sum())
                        .collect();
                    for row in 0..i {
                        let acc: f64 = (row..i).map(|j| t[(row, j)] * vtv[j]).sum();
                        t[(row, i)] = -ti * acc;
                    }
                }
            }
            let rows = s.rows(k + 1, m);
            let w1 = v.transpose() * rows; // nb × n
            let w2 = &t * w1;
            let upd = &v * w2; // m × n
            let mut rows = s.rows_mut(k + 1, m);
            rows -= upd;
        }
        s
    }
}

/// Eigenpairs `T = S diag(λ) Sᵀ` of the symmetric tridiagonal matrix with diagonal `d` and
/// off-diagonal `e`, by divide and conquer (Cuppen 1981), with the eigenvectors of each rank-one
/// update computed from the Löwner-corrected vector of Gu & Eisenstat (1995) so they stay
/// orthogonal. The work is dominated by matrix products. Eigenvalues are not sorted.
pub fn tridiagonal_eigen(d: &[f64], e: &[f64]) -> Result<(Vec<f64>, DMatrix<f64>)> {
    let n = d.len();
    if e.len() + 1 != n.max(1) {
        return Err(input_err(format!(
            "tridiagonal matrix: {n} diagonal and {} off-diagonal entries",
            e.len()
        )));
    }
    if d.iter().chain(e).any(|v| !v.is_finite()) {
        return Err(Error::Compute(
            "tridiagonal matrix has a non-finite entry".into(),
        ));
    }
    // Divide all the way down: nalgebra's QR iteration (SymmetricEigen) leaves residuals of
    // ~1e-8 on some small tridiagonal matrices, the rank-one merges do not.
    if n <= 1 {
        return Ok((d.to_vec(), DMatrix::identity(n, n)));
    }
    let k = n / 2;
    let beta = e[k - 1];
    let (rho, sign) = (beta.abs(), if beta < 0.0 { -1.0 } else { 1.0 });
    let mut d1 = d[..k].to_vec();
    let mut d2 = d[k..].to_vec();
    d1[k - 1] -= rho;
    d2[0] -= rho;
    let (l1, q1) = tridiagonal_eigen(&d1, &e[..k - 1])?;
    let (l2, q2) = tridiagonal_eigen(&d2, &e[k..])?;
    // T = diag(Q1, Q2) (diag(Λ1, Λ2) + ρ z zᵀ) diag(Q1, Q2)ᵀ with z = Q̂ᵀ (e_k−1 + sign e_k).
    let mut dd = l1;
    dd.extend_from_slice(&l2);
    let z: Vec<f64> = (0..k)
        .map(|j| q1[(k - 1, j)])
        .chain((0..n - k).map(|j| sign * q2[(0, j)]))
        .collect();
    let (lambda, u) = rank_one_eigen(&dd, &z, rho);
    // S = diag(Q1, Q2) U, as two products.
    let mut s = DMatrix::<f64>::zeros(n, n);
    s.view_mut((0, 0), (k, n)).copy_from(&(&q1 * u.rows(0, k)));
    s.view_mut((k, 0), (n - k, n))
        .copy_from(&(&q2 * u.rows(k, n - k)));
    Ok((lambda, s))
}

/// Eigenpairs of `diag(d) + ρ z zᵀ` (ρ ≥ 0): deflation of negligible `z` components and of
/// nearly equal `d`, the secular equation for the rest, Gu–Eisenstat eigenvectors.
fn rank_one_eigen(d: &[f64], z: &[f64], rho: f64) -> (Vec<f64>, DMatrix<f64>) {
    let n = d.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| d[a].total_cmp(&d[b]));
    let mut ds: Vec<f64> = order.iter().map(|&i| d[i]).collect();
    let znorm = z.iter().map(|v| v * v).sum::<f64>().sqrt();
    // Basis in sorted coordinates; Givens rotations from deflation act on its columns.
    let mut basis = DMatrix::<f64>::identity(n, n);
    let mut inv = vec![0usize; n];
    for (s, &o) in order.iter().enumerate() {
        inv[o] = s;
    }
    let unsort = |m: &DMatrix<f64>| DMatrix::from_fn(n, m.ncols(), |i, j| m[(inv[i], j)]);
    if rho == 0.0 || znorm == 0.0 {
        return (d.to_vec(), DMatrix::identity(n, n));
    }
    let r = rho * znorm * znorm;
    let mut zs: Vec<f64> = order.iter().map(|&i| z[i] / znorm).collect();
    let dmax = ds.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let tol = 8.0 * f64::EPSILON * dmax.max(r);

    // ---- Deflation -------------------------------------------------------------------------
    let mut deflated: Vec<usize> = Vec::new();
    let mut kept: Vec<usize> = Vec::new();
    let mut prev: Option<usize> = None;
    for j in 0..n {
        if r * zs[j].abs() <= tol {
            deflated.push(j);
            continue;
        }
        if let Some(p) = prev {
            let tau = zs[p].hypot(zs[j]);
            let (c, s) = (zs[j] / tau, -zs[p] / tau);
            if ((ds[j] - ds[p]) * c * s).abs() <= tol {
                // Rotate z_p into z_j; p becomes an eigenvector of its own.
                zs[j] = tau;
                zs[p] = 0.0;
                for row in 0..n {
                    let (x, y) = (basis[(row, p)], basis[(row, j)]);
                    basis[(row, p)] = c * x + s * y;
                    basis[(row, j)] = c * y - s * x;
                }
                let t = ds[p] * c * c + ds[j] * s * s;
                ds[j] = ds[p] * s * s + ds[j] * c * c;
                ds[p] = t;
                deflated.push(p);
                prev = Some(j);
                continue;
            }
            kept.push(p);
        }
        prev = Some(j);
    }
    if let Some(p) = prev {
        kept.push(p);
    }

    // ---- Secular equation 1 + r Σ z_j² / (d_j − λ) = 0 over the kept entries ------------
    let kk = kept.len();
    let dk: Vec<f64> = kept.iter().map(|&j| ds[j]).collect();
    let zk: Vec<f64> = kept.iter().map(|&j| zs[j]).collect();
    let z2: Vec<f64> = zk.iter().map(|v| v * v).collect();
    let zsum: f64 = z2.iter().sum();
    let mut origin = vec![0usize; kk];
    let mut tau = vec![0f64; kk];
    let mut delta = vec![0f64; kk];
    for i in 0..kk {
        // Choose the nearer pole as origin so d_j − λ = (d_j − d_o) − τ is accurate.
        let (o, mut lo, mut hi) = if i + 1 < kk {
            let gap = dk[i + 1] - dk[i];
            let mid = 0.5 * gap;
            let f_mid = 1.0
                + r * (0..kk)
                    .map(|j| z2[j] / ((dk[j] - dk[i]) - mid))
                    .sum::<f64>();
            if f_mid >= 0.0 {
                (i, 0.0, mid)
            } else {
                (i + 1, -mid, 0.0)
            }
        } else {
            (i, 0.0, r * zsum)
        };
        for j in 0..kk {
            delta[j] = dk[j] - dk[o];
        }
        // f(τ) = 1 + r Σ z_j² / (δ_j − τ): the origin's pole term is kept exact and the rest
        // linearized, giving a quadratic whose root converges fast even when the root hugs the
        // pole (tiny z_o), where τ must be accurate RELATIVE to itself for Gu–Eisenstat.
        let pole = r * z2[o];
        let left = o == i; // root to the right of the origin pole: τ > 0
        let mut t = 0.5 * (lo + hi);
        for _ in 0..300 {
            let (mut f, mut df, mut mag) = (1.0, 0.0, 1.0);
            for j in 0..kk {
                let q = 1.0 / (delta[j] - t);
                let term = r * z2[j] * q;
                f += term;
                df += term * q;
                mag += term.abs();
            }
            if f == 0.0 || f.abs() <= 4.0 * f64::EPSILON * kk as f64 * mag {
                break;
            }
            if f < 0.0 {
                lo = t;
            } else {
                hi = t;
            }
            // f ≈ φ + φ'(τ − t) − pole/τ  ⇒  φ' τ² + (φ − φ' t) τ − pole = 0.
            let (p, dp) = (-pole / t, pole / (t * t));
            let (a, b) = (df - dp, (f - p) - (df - dp) * t);
            let cand = if a > 0.0 {
                let disc = (b * b + 4.0 * a * pole).sqrt();
                if left {
                    if b >= 0.0 {
                        2.0 * pole / (b + disc)
                    } else {
                        (-b + disc) / (2.0 * a)
                    }
                } else if b <= 0.0 {
                    2.0 * pole / (b - disc)
                } else {
                    (-b - disc) / (2.0 * a)
                }
            } else {
                pole / b
            };
            let next = if cand.is_finite() && cand > lo && cand < hi {
                cand
            } else {
                0.5 * (lo + hi)
            };
            if (next - t).abs() <= 2.0 * f64::EPSILON * next.abs() {
                t = next;
                break;
            }
            t = next;
        }
        origin[i] = o;
        tau[i] = t;
    }

    // ---- Gu–Eisenstat: recompute z from the computed roots, then eigenvectors ----------
    let lam_minus = |i: usize, j: usize| (dk[origin[i]] - dk[j]) + tau[i]; // λ_i − d_j
    let zhat: Vec<f64> = (0..kk)
        .map(|j| {
            let mut prod = lam_minus(kk - 1, j) / r;
            for i in 0..j {
                prod *= lam_minus(i, j) / (dk[i] - dk[j]);
            }
            for i in j..kk - 1 {
                prod *= lam_minus(i, j) / (dk[i + 1] - dk[j]);
            }
            prod.abs().sqrt().copysign(zk[j])
        })
        .collect();
    let mut vk = DMatrix::<f64>::zeros(kk, kk);
    for i in 0..kk {
        let mut norm = 0.0;
        for j in 0..kk {
            let v = zhat[j] / -lam_minus(i, j);
            vk[(j, i)] = v;
            norm += v * v;
        }
        vk.column_mut(i).scale_mut(1.0 / norm.sqrt());
    }

    // ---- Assemble: kept eigenvectors, then the deflated ones ---------------------------
    let mut lambda = Vec::with_capacity(n);
    let mut u_sorted = DMatrix::<f64>::zeros(n, n);
    if kk > 0 {
        let bk = DMatrix::from_fn(n, kk, |row, j| basis[(row, kept[j])]);
        u_sorted.view_mut((0, 0), (n, kk)).copy_from(&(bk * &vk));
        lambda.extend((0..kk).map(|i| dk[origin[i]] + tau[i]));
    }
    for (c, &j) in deflated.iter().enumerate() {
        u_sorted.column_mut(kk + c).copy_from(&basis.column(j));
        lambda.push(ds[j]);
    }
    (lambda, unsort(&u_sorted))
}

/// Solves `A x = b` for a symmetric positive definite `A` (blocked Cholesky; LU if that fails).
fn solve_spd(a: DMatrix<f64>, b: &DMatrix<f64>) -> Result<DMatrix<f64>> {
    match cholesky_lower(a.clone()) {
        Some(l) => Ok(cholesky_solve(&l, b)),
        None => a
            .lu()
            .solve(b)
            .ok_or_else(|| Error::Compute("a validation-fold ridge system is singular".into())),
    }
}

/// Lower Cholesky factor, right-looking and blocked: each panel's trailing update is one matrix
/// product. `None` when `a` is not (numerically) positive definite.
fn cholesky_lower(mut a: DMatrix<f64>) -> Option<DMatrix<f64>> {
    let n = a.nrows();
    const NB: usize = 64;
    let mut k = 0;
    while k < n {
        let nb = NB.min(n - k);
        // Factor the panel's columns (left-looking within the panel), rows j..n.
        for j in k..k + nb {
            for p in k..j {
                let ljp = a[(j, p)];
                if ljp != 0.0 {
                    let (head, tail) = a.as_mut_slice().split_at_mut(j * n);
                    axpy(&mut tail[j..n], -ljp, &head[p * n + j..(p + 1) * n]);
                }
            }
            let diag = a[(j, j)];
            if !(diag > 0.0 && diag.is_finite()) {
                return None;
            }
            let s = 1.0 / diag.sqrt();
            a.as_mut_slice()[j * n + j..(j + 1) * n]
                .iter_mut()
                .for_each(|v| *v *= s);
        }
        // Trailing update A22 −= L21 L21ᵀ (lower part) as one product.
        let t0 = k + nb;
        if t0 < n {
            let l21 = a.view((t0, k), (n - t0, nb)).into_owned();
            let upd = &l21 * l21.transpose();
            for c in 0..n - t0 {
                let col = &mut a.as_mut_slice()[(t0 + c) * n + t0 + c..(t0 + c + 1) * n];
                for (x, u) in col
                    .iter_mut()
                    .zip(&upd.as_slice()[c * (n - t0) + c..(c + 1) * (n - t0)])
                {
                    *x -= u;
                }
            }
        }
        k = t0;
    }
    for c in 1..n {
        for r in 0..c {
            a[(r, c)] = 0.0;
        }
    }
    Some(a)
}

/// `x` with `L Lᵀ x = b`.
fn cholesky_solve(l: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    let n = l.nrows();
    let ls = l.as_slice();
    let mut x = b.clone();
    for t in 0..x.ncols() {
        let xs = &mut x.as_mut_slice()[t * n..(t + 1) * n];
        // Forward: L y = b, column by column.
        for j in 0..n {
            xs[j] /= ls[j * n + j];
            let yj = xs[j];
            axpy(&mut xs[j + 1..], -yj, &ls[j * n + j + 1..(j + 1) * n]);
        }
        // Backward: Lᵀ x = y (a row of Lᵀ is a column of L).
        for j in (0..n).rev() {
            let s = dot(&ls[j * n + j + 1..(j + 1) * n], &xs[j + 1..]);
            xs[j] = (xs[j] - s) / ls[j * n + j];
        }
    }
    x
}

/// `XᵀX` computing only the lower block triangle with matrix products (about half the work of
/// a full product for wide X) and mirroring it.
fn gram_t(x: &nalgebra::DMatrixView<'_, f64>) -> DMatrix<f64> {
    let d = x.ncols();
    let xt = x.transpose();
    let b = 128.min(d.max(1));
    let mut out = DMatrix::<f64>::zeros(d, d);
    let mut i0 = 0;
    while i0 < d {
        let bi = b.min(d - i0);
        let rows = xt.rows(i0, bi);
        // Block row i0: columns 0..i0+bi in one product.
        let prod = rows * x.columns(0, i0 + bi);
        out.view_mut((i0, 0), (bi, i0 + bi)).copy_from(&prod);
        i0 += bi;
    }
    for j in 0..d {
        for i in 0..j {
            out[(i, j)] = out[(j, i)];
        }
    }
    out
}

type View<'a> = nalgebra::DMatrixView<'a, f64>;

/// Dot product with eight independent accumulators (a single running sum is latency-bound).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// `Σ col·v` and, in the same pass, `w += s·col`.
fn dot_axpy(col: &[f64], v: &[f64], w: &mut [f64], s: f64) -> f64 {
    let n = col.len();
    let (v, w) = (&v[..n], &mut w[..n]);
    let mut acc = [0.0f64; 8];
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        for l in 0..8 {
            acc[l] += col[i + l] * v[i + l];
            w[i + l] += col[i + l] * s;
        }
    }
    let mut tail = 0.0;
    for i in full..n {
        tail += col[i] * v[i];
        w[i] += col[i] * s;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

fn axpy(w: &mut [f64], s: f64, x: &[f64]) {
    for (o, &v) in w.iter_mut().zip(x) {
        *o += s * v;
    }
}

/// `a · b` for a `b` with few columns (nalgebra sends products with a dimension ≤ 5 to a slow
/// strided-dot path): column axpys over contiguous columns.
fn mul_skinny(a: View<'_>, b: &DMatrix<f64>) -> DMatrix<f64> {
    let (n, m) = a.shape();
    let k = b.ncols();
    if k > 5 && n > 5 && m > 5 {
        return a * b;
    }
    let mut out = vec![0.0f64; n * k];
    for t in 0..k {
        let o = &mut out[t * n..(t + 1) * n];
        for j in 0..m {
            let w = b[(j, t)];
            if w != 0.0 {
                axpy(o, w, a.column(j).as_slice());
            }
        }
    }
    DMatrix::from_vec(n, k, out)
}

/// `aᵀ · y` for a `y` with few columns: dot products of contiguous columns.
fn tr_mul_skinny(a: View<'_>, y: View<'_>) -> DMatrix<f64> {
    let m = a.ncols();
    let k = y.ncols();
    if k > 5 && m > 5 && a.nrows() > 5 {
        return a.transpose() * y;
    }
    DMatrix::from_fn(m, k, |j, t| {
        dot(a.column(j).as_slice(), y.column(t).as_slice())
    })
}

fn full(m: &DMatrix<f64>) -> View<'_> {
    m.columns(0, m.ncols())
}

/// Column sums of a matrix view.
fn col_sums(x: &nalgebra::DMatrixView<'_, f64>) -> Vec<f64> {
    (0..x.ncols()).map(|j| x.column(j).sum()).collect()
}

enum FoldData {
    None,
    /// Covariance route: the centered scatter `C` and each validation fold's `X_fᵀX_f`.
    Cov {
        c: DMatrix<f64>,
        scatter: Vec<DMatrix<f64>>,
    },
    /// Kernel route: the centered training kernel `X Xᵀ`.
    Gram {
        k: DMatrix<f64>,
    },
}

/// Thin SVD of the centered training matrix in the form every fit needs:
/// `Xc = U diag(√λ) Vᵀ`, leverages for every alpha, and the test rows projected on `V`.
struct Spectral {
    /// `U` spans all of `1^⊥` (kernel route): residuals and leverages then use `1 − s`.
    complete: bool,
    lambda: Vec<f64>,
    /// Test predictions are `test_basis · diag(phi / (λ + α)) · Uᵀy`.
    phi: Vec<f64>,
    u: DMatrix<f64>,
    /// `1 − h_ii(α)`, n × alphas.
    one_minus_h: DMatrix<f64>,
    test_basis: DMatrix<f64>,
    alphas: Vec<f64>,
    folds: FoldData,
}

struct RidgeFit {
    alpha_index: usize,
    y_mean: Vec<f64>,
    /// `Uᵀ(y − ȳ)`, m × k.
    zeta: DMatrix<f64>,
}

impl Spectral {
    /// `x`: centered (and scaled) training rows in fold order; `x_test` likewise with training
    /// statistics; `val`: validation folds as (start, len) row ranges of `x`, when K-fold is wanted.
    fn new(
        x: &DMatrix<f64>,
        x_test: &DMatrix<f64>,
        alphas: &[f64],
        val: Option<&[(usize, usize)]>,
    ) -> Result<Self> {
        let (n, d) = x.shape();
        let nf = n as f64;
        if n > d {
            // Covariance route.
            let (c, scatter) = match val {
                Some(bounds) => {
                    let mut c = DMatrix::<f64>::zeros(d, d);
                    let mut scatter = Vec::with_capacity(bounds.len());
                    for &(start, len) in bounds {
                        let s = gram_t(&x.rows(start, len));
                        c += &s;
                        scatter.push(s);
                    }
                    (c, Some(scatter))
                }
                None => (gram_t(&x.rows(0, n)), None),
            };
            let (lambda_all, v_all) = symmetric_eigen(c.clone())?;
            let lmax = lambda_all.iter().cloned().fold(0.0, f64::max);
            let tol = lmax * (n.max(d) as f64) * f64::EPSILON;
            let keep: Vec<usize> = (0..d).filter(|&j| lambda_all[j] > tol).collect();
            let m = keep.len();
            let v = DMatrix::from_fn(d, m, |i, j| v_all[(i, keep[j])]);
            let lambda: Vec<f64> = keep.iter().map(|&j| lambda_all[j]).collect();
            let mut u = x * &v;
            for (j, &l) in lambda.iter().enumerate() {
                u.column_mut(j).scale_mut(1.0 / l.sqrt());
            }
            let test_basis = x_test * &v;
            let phi = lambda.iter().map(|l| l.sqrt()).collect();
            let u2 = u.map(|a| a * a);
            let s = DMatrix::from_fn(m, alphas.len(), |j, a| lambda[j] / (lambda[j] + alphas[a]));
            let one_minus_h = (&u2 * &s).map(|h| 1.0 - 1.0 / nf - h);
            Ok(Self {
                complete: false,
                lambda,
                phi,
                u,
                one_minus_h,
                test_basis,
                alphas: alphas.to_vec(),
                folds: match scatter {
                    Some(scatter) => FoldData::Cov { c, scatter },
                    None => FoldData::None,
                },
            })
        } else {
            // Kernel route: lift the all-ones direction (the intercept) above the spectrum,
            // decompose, and drop it.
            let xt = x.transpose();
            let k = x * &xt;
            let mut lifted = k.clone();
            lifted.add_scalar_mut((2.0 * k.trace() + 1.0) / nf);
            let (mut lambda, mut q) = symmetric_eigen(lifted)?;
            let idx = (0..q.ncols())
                .max_by(|&a, &b| q.column(a).sum().abs().total_cmp(&q.column(b).sum().abs()))
                .expect("n >= 2");
            lambda.remove(idx);
            q = q.remove_column(idx);
            let m = lambda.len();
            let test_basis = (x_test * &xt) * &q;
            let u2 = q.map(|a| a * a);
            let s1 = DMatrix::from_fn(m, alphas.len(), |j, a| alphas[a] / (lambda[j] + alphas[a]));
            let one_minus_h = &u2 * &s1;
            Ok(Self {
                complete: true,
                phi: vec![1.0; m],
                lambda,
                u: q,
                one_minus_h,
                test_basis,
                alphas: alphas.to_vec(),
                folds: if val.is_some() {
                    FoldData::Gram { k }
                } else {
                    FoldData::None
                },
            })
        }
    }

    fn s(&self, j: usize, a: usize) -> f64 {
        self.lambda[j] / (self.lambda[j] + self.alphas[a])
    }

    /// Alpha by exact leave-one-out (mean squared LOO error over rows and targets; first strict
    /// minimum in grid order, as scikit-learn's RidgeCV).
    fn fit(&self, y: &DMatrix<f64>) -> RidgeFit {
        let (n, k) = y.shape();
        let (m, na) = (self.lambda.len(), self.alphas.len());
        let y_mean: Vec<f64> = (0..k).map(|t| y.column(t).mean()).collect();
        let yc = DMatrix::from_fn(n, k, |i, t| y[(i, t)] - y_mean[t]);
        let zeta = tr_mul_skinny(full(&self.u), full(&yc));
        let w = DMatrix::from_fn(m, na * k, |j, col| {
            let (a, t) = (col / k, col % k);
            let s = self.s(j, a);
            zeta[(j, t)] * if self.complete { 1.0 - s } else { s }
        });
        let prod = &self.u * &w;
        let mut errs = Vec::with_capacity(na);
        for a in 0..na {
            let mut err = 0.0;
            for t in 0..k {
                let col = prod.column(a * k + t);
                for i in 0..n {
                    let r = if self.complete {
                        col[i]
                    } else {
                        yc[(i, t)] - col[i]
                    };
                    let e = r / self.one_minus_h[(i, a)];
                    err += e * e;
                }
            }
            errs.push(err);
        }
        // First strict minimum in grid order; NaN never wins.
        let mut best = 0;
        for a in 1..na {
            if errs[a] < errs[best] || (errs[best].is_nan() && !errs[a].is_nan()) {
                best = a;
            }
        }
        RidgeFit {
            alpha_index: best,
            y_mean,
            zeta,
        }
    }

    fn predict_train(&self, fit: &RidgeFit) -> DMatrix<f64> {
        let a = fit.alpha_index;
        let w = DMatrix::from_fn(fit.zeta.nrows(), fit.zeta.ncols(), |j, t| {
            fit.zeta[(j, t)] * self.s(j, a)
        });
        let mut p = mul_skinny(full(&self.u), &w);
        for (t, m) in fit.y_mean.iter().enumerate() {
            p.column_mut(t).add_scalar_mut(*m);
        }
        p
    }

    fn predict_test(&self, fit: &RidgeFit) -> DMatrix<f64> {
        let alpha = self.alphas[fit.alpha_index];
        let w = DMatrix::from_fn(fit.zeta.nrows(), fit.zeta.ncols(), |j, t| {
            fit.zeta[(j, t)] * self.phi[j] / (self.lambda[j] + alpha)
        });
        let mut p = mul_skinny(full(&self.test_basis), &w);
        for (t, m) in fit.y_mean.iter().enumerate() {
            p.column_mut(t).add_scalar_mut(*m);
        }
        p
    }

    /// Test-set sums of squared errors, `(1 + shuffles) × k` (row 0 = the real targets), of
    /// probes fitted to `y` with its rows permuted, alpha chosen per shuffle by GCV.
    fn null_sse(&self, y: &DMatrix<f64>, perms: &[Vec<usize>], y_test: &DMatrix<f64>) -> Vec<f64> {
        let (n, k) = y.shape();
        let (m, na) = (self.lambda.len(), self.alphas.len());
        let blocks = perms.len() + 1;
        let nf = n as f64;
        let y_mean: Vec<f64> = (0..k).map(|t| y.column(t).mean()).collect();
        let yc = DMatrix::from_fn(n, k, |i, t| y[(i, t)] - y_mean[t]);
        let yss: Vec<f64> = (0..k).map(|t| yc.column(t).norm_squared()).collect();
        let ybt = DMatrix::from_fn(blocks * k, n, |row, i| {
            let (b, t) = (row / k, row % k);
            let src = if b == 0 { i } else { perms[b - 1][i] };
            yc[(src, t)]
        });
        let zt = &ybt * &self.u; // (blocks·k) × m
        let dof: Vec<f64> = (0..na)
            .map(|a| {
                let fitted: f64 = (0..m).map(|j| self.s(j, a)).sum();
                if self.complete {
                    m as f64 - fitted
                } else {
                    nf - 1.0 - fitted
                }
            })
            .collect();
        let mut w = DMatrix::<f64>::zeros(m, blocks * k);
        for b in 0..blocks {
            let mut best = 0;
            let mut best_gcv = f64::INFINITY;
            for a in 0..na {
                let mut rss = 0.0;
                for t in 0..k {
                    let row = b * k + t;
                    let mut acc = 0.0;
                    for j in 0..m {
                        let (z2, s) = (zt[(row, j)] * zt[(row, j)], self.s(j, a));
                        acc += if self.complete {
                            z2 * (1.0 - s) * (1.0 - s)
                        } else {
                            z2 * (2.0 * s - s * s)
                        };
                    }
                    rss += if self.complete { acc } else { yss[t] - acc };
                }
                let frac = dof[a] / nf;
                let gcv = (rss / (nf * k as f64)) / (frac * frac);
                if gcv < best_gcv {
                    best = a;
                    best_gcv = gcv;
                }
            }
            let alpha = self.alphas[best];
            for t in 0..k {
                for j in 0..m {
                    w[(j, b * k + t)] = zt[(b * k + t, j)] * self.phi[j] / (self.lambda[j] + alpha);
                }
            }
        }
        let pred = &self.test_basis * &w; // n_test × (blocks·k)
        let mut sse = vec![0.0; blocks * k];
        for b in 0..blocks {
            for t in 0..k {
                let col = pred.column(b * k + t);
                sse[b * k + t] = (0..y_test.nrows())
                    .map(|i| {
                        let e = y_test[(i, t)] - y_mean[t] - col[i];
                        e * e
                    })
                    .sum();
            }
        }
        sse
    }

    /// Mean over validation folds of the fold's R² (uniform over targets) of a ridge refitted on
    /// the other folds at the fixed `alpha`.
    fn kfold_r2(
        &self,
        x: &DMatrix<f64>,
        y: &DMatrix<f64>,
        val: &[(usize, usize)],
        alpha: f64,
    ) -> Result<f64> {
        let (n, k) = y.shape();
        let ysum: Vec<f64> = (0..k).map(|t| y.column(t).sum()).collect();
        let mut scores = Vec::with_capacity(val.len());
        match &self.folds {
            FoldData::Cov { c, scatter } => {
                let d = c.nrows();
                let g = tr_mul_skinny(full(x), full(y)); // d × k
                for (f, &(start, len)) in val.iter().enumerate() {
                    let n_ft = (n - len) as f64;
                    let xf = x.rows(start, len);
                    let yf = y.rows(start, len);
                    let m: Vec<f64> = col_sums(&xf).iter().map(|s| -s / n_ft).collect();
                    let ybar: Vec<f64> = (0..k)
                        .map(|t| (ysum[t] - yf.column(t).sum()) / n_ft)
                        .collect();
                    let mut a = c - &scatter[f];
                    for j in 0..d {
                        for i in 0..d {
                            a[(i, j)] -= n_ft * m[i] * m[j];
                        }
                        a[(j, j)] += alpha;
                    }
                    let gf = tr_mul_skinny(xf, yf);
                    let rhs = DMatrix::from_fn(d, k, |i, t| {
                        g[(i, t)] - gf[(i, t)] - n_ft * m[i] * ybar[t]
                    });
                    let beta = solve_spd(a, &rhs)?;
                    let mut pred = mul_skinny(xf, &beta);
                    for t in 0..k {
                        let shift: f64 = (0..d).map(|i| m[i] * beta[(i, t)]).sum();
                        pred.column_mut(t).add_scalar_mut(ybar[t] - shift);
                    }
                    scores.push(r2_dm(&yf.into_owned(), &pred));
                }
            }
            FoldData::Gram { k: kern } => {
                for &(start, len) in val {
                    let ft: Vec<usize> =
                        (0..n).filter(|&i| i < start || i >= start + len).collect();
                    let nft = ft.len();
                    let kft = DMatrix::from_fn(nft, nft, |i, j| kern[(ft[i], ft[j])]);
                    let colmean: Vec<f64> = (0..nft).map(|j| kft.column(j).mean()).collect();
                    let grand = colmean.iter().sum::<f64>() / nft as f64;
                    let mut kc = DMatrix::from_fn(nft, nft, |i, j| {
                        kft[(i, j)] - colmean[i] - colmean[j] + grand
                    });
                    for i in 0..nft {
                        kc[(i, i)] += alpha;
                    }
                    let ybar: Vec<f64> = (0..k)
                        .map(|t| ft.iter().map(|&i| y[(i, t)]).sum::<f64>() / nft as f64)
                        .collect();
                    let ycft = DMatrix::from_fn(nft, k, |i, t| y[(ft[i], t)] - ybar[t]);
                    let coef = solve_spd(kc, &ycft)?;
                    let kv =
                        DMatrix::from_fn(len, nft, |r, i| kern[(start + r, ft[i])] - colmean[i]);
                    let mut pred = mul_skinny(full(&kv), &coef);
                    for t in 0..k {
                        pred.column_mut(t).add_scalar_mut(ybar[t]);
                    }
                    scores.push(r2_dm(&y.rows(start, len).into_owned(), &pred));
                }
            }
            FoldData::None => {
                return Err(Error::Compute(
                    "internal: validation folds were not prepared".into(),
                ))
            }
        }
        Ok(scores.iter().sum::<f64>() / scores.len() as f64)
    }
}

/// Uniform-average R² of column-major matrices (scikit-learn conventions).
fn r2_dm(truth: &DMatrix<f64>, pred: &DMatrix<f64>) -> f64 {
    let k = truth.ncols();
    let rm = |m: &DMatrix<f64>| -> Vec<f64> { m.transpose().as_slice().to_vec() };
    metrics::r2_score(&rm(truth), &rm(pred), k).unwrap_or(f64::NAN)
}

// =============================================================================================
// Plan: everything that does not depend on the layer
// =============================================================================================

#[derive(Clone, Debug)]
struct Scaled {
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// Training rows (fold order), z-scored.
    train: DMatrix<f64>,
    /// Test rows, z-scored with the training statistics.
    test: DMatrix<f64>,
}

impl Scaled {
    fn new(
        values: &[f64],
        k: usize,
        train: &[usize],
        test: &[usize],
        what: &[String],
    ) -> Result<Self> {
        let mut mean = vec![0.0; k];
        let mut scale = vec![0.0; k];
        for t in 0..k {
            let (m, s) = mean_std(train.iter().map(|&i| values[i * k + t]));
            if s.is_nan() || s <= 0.0 || s <= 1e-12 * m.abs() {
                return Err(input_err(format!(
                    "target '{}' is constant ({m}) over the {} training entities; a probe cannot \
                     be fitted or scored on it",
                    what[t],
                    train.len()
                )));
            }
            mean[t] = m;
            scale[t] = s;
        }
        let z = |rows: &[usize]| {
            DMatrix::from_fn(rows.len(), k, |i, t| {
                (values[rows[i] * k + t] - mean[t]) / scale[t]
            })
        };
        Ok(Self {
            train: z(train),
            test: z(test),
            mean,
            scale,
        })
    }

    fn unscale(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        DMatrix::from_fn(z.nrows(), z.ncols(), |i, t| {
            z[(i, t)] * self.scale[t] + self.mean[t]
        })
    }
}

#[derive(Clone, Debug)]
struct FoldPlan {
    held_out: Option<String>,
    /// Training entities, validation folds contiguous.
    train: Vec<usize>,
    val: Vec<(usize, usize)>,
    test: Vec<usize>,
    y: Scaled,
    control: Option<Scaled>,
    perms: Vec<Vec<usize>>,
}

#[derive(Clone, Debug)]
struct NeuronPlan {
    rows: Vec<usize>,
    targets: Vec<String>,
    /// Centered, normalized target ranks, row `b·T + t` = target t under shuffle b (0 = none).
    ty_t: DMatrix<f32>,
}

/// The prepared analysis: splits, targets, shuffles and controls. Feed it layers with
/// [`Analysis::layer`] (in any order, or on several threads natively), then [`Analysis::finish`].
#[derive(Clone, Debug)]
pub struct Analysis {
    kind: TargetKind,
    opts: AnalysisOptions,
    names: Vec<String>,
    n_layers: usize,
    d_model: usize,
    has_random_init: bool,
    target_names: Vec<String>,
    fitted_names: Vec<String>,
    /// n × k_orig, n × k_fit.
    original: Vec<f64>,
    fitted: Vec<f64>,
    control: Option<Vec<f64>>,
    folds: Vec<FoldPlan>,
    neuron: Option<NeuronPlan>,
    split: SplitInfo,
    split_column: Option<String>,
    group_column: Option<String>,
    group_values: Option<Vec<String>>,
    warnings: Vec<String>,
}

/// One layer's results, from [`Analysis::layer`].
#[derive(Clone, Debug)]
pub struct LayerOutcome {
    layer: usize,
    folds: Vec<FoldLayer>,
    neurons: Vec<NeuronReport>,
}

impl LayerOutcome {
    pub fn layer(&self) -> usize {
        self.layer
    }
}

#[derive(Clone, Debug)]
struct FoldLayer {
    alpha: f64,
    r2_validation: f64,
    /// Fitted units, n_train × k_fit (fold order) and n_test × k_fit.
    train_pred: DMatrix<f64>,
    test_pred: DMatrix<f64>,
    control_pred: Option<DMatrix<f64>>,
    random_pred: Option<DMatrix<f64>>,
    /// `(1 + shuffles) × k_fit` test SSE in fitted units.
    null_sse: Vec<f64>,
}

impl Analysis {
    /// Validates the inputs and prepares splits, targets, shuffles and the control task.
    pub fn new(
        dataset: &Dataset,
        split: &SplitSpec,
        opts: &AnalysisOptions,
        first_token_ids: &[u32],
        n_layers: usize,
        d_model: usize,
        has_random_init: bool,
    ) -> Result<Self> {
        let n = dataset.len();
        if n == 0 {
            return Err(Error::Dataset(format!(
                "dataset '{}' has no entities",
                dataset.name
            )));
        }
        if d_model == 0 {
            return Err(input_err("activations have d_model = 0"));
        }
        if opts.validation_folds < 2 {
            return Err(input_err(format!(
                "validation_folds must be at least 2, got {}",
                opts.validation_folds
            )));
        }
        if opts.alphas.is_empty() || opts.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
            return Err(input_err(format!(
                "ridge alphas must be a non-empty list of finite values > 0, got {:?}",
                opts.alphas
            )));
        }
        let kind = dataset.kind;
        let target_names: Vec<String> = kind.target_names().iter().map(|s| s.to_string()).collect();
        let k_orig = target_names.len();
        if dataset.targets.len() != n {
            return Err(Error::Dataset(format!(
                "dataset '{}' has {n} names but {} target rows",
                dataset.name,
                dataset.targets.len()
            )));
        }
        let mut original = Vec::with_capacity(n * k_orig);
        for (i, row) in dataset.targets.iter().enumerate() {
            if row.len() != k_orig || row.iter().any(|v| !v.is_finite()) {
                return Err(Error::Dataset(format!(
                    "entity {} ('{}') has targets {row:?}; expected {k_orig} finite number(s) ({})",
                    i + 1,
                    dataset.names[i],
                    target_names.join(", ")
                )));
            }
            original.extend_from_slice(row);
        }
        let sphere = kind == TargetKind::Space && opts.space_targets == SpaceTargets::Sphere;
        let (fitted, fitted_names) = if sphere {
            let mut f = Vec::with_capacity(n * 3);
            for i in 0..n {
                let (la, lo) = (
                    original[2 * i].to_radians(),
                    original[2 * i + 1].to_radians(),
                );
                f.extend_from_slice(&[la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()]);
            }
            (f, vec!["x".to_string(), "y".into(), "z".into()])
        } else {
            (original.clone(), target_names.clone())
        };
        let k_fit = fitted_names.len();
        // A constant column over the whole dataset is reported as such before any split.
        for t in 0..k_fit {
            let first = fitted[t];
            if (0..n).all(|i| fitted[i * k_fit + t] == first) {
                return Err(input_err(format!(
                    "target '{}' is the same ({first}) for all {n} entities of dataset '{}'; \
                     there is nothing to probe",
                    fitted_names[t], dataset.name
                )));
            }
        }

        let mut warnings = Vec::new();

        // ---- Splits -------------------------------------------------------------------
        let mut split_column = None;
        let (raw_folds, mut info): (Vec<(Option<String>, Split)>, SplitInfo) = match split {
            SplitSpec::Random {
                test_fraction,
                seed,
            } => {
                let s = Split::random(n, *test_fraction, *seed)?;
                let info = SplitInfo {
                    kind: "random".into(),
                    n_train: s.train.len(),
                    n_test: s.test.len(),
                    test_fraction: Some(*test_fraction),
                    seed: Some(*seed),
                    column: None,
                    held_out: None,
                    validation_folds: opts.validation_folds,
                    folds: vec![],
                };
                (vec![(None, s)], info)
            }
            SplitSpec::Column => {
                let mask = dataset.is_test.as_ref().ok_or_else(|| {
                    Error::Dataset(format!(
                        "dataset '{}' has no is_test column; use a random or group split",
                        dataset.name
                    ))
                })?;
                if mask.len() != n {
                    return Err(Error::Dataset(format!(
                        "is_test has {} values for {n} entities",
                        mask.len()
                    )));
                }
                let s = Split::from_test_mask(mask).map_err(|_| {
                    Error::Dataset(format!(
                        "the is_test column of '{}' marks {} of {n} entities as test; both sides \
                         need entities",
                        dataset.name,
                        mask.iter().filter(|&&b| b).count()
                    ))
                })?;
                let info = SplitInfo {
                    kind: "column".into(),
                    n_train: s.train.len(),
                    n_test: s.test.len(),
                    test_fraction: None,
                    seed: None,
                    column: Some("is_test".into()),
                    held_out: None,
                    validation_folds: opts.validation_folds,
                    folds: vec![],
                };
                (vec![(None, s)], info)
            }
            SplitSpec::Group { column, held_out } => {
                let col =
                    dataset.groups.get(&column.to_lowercase()).ok_or_else(|| {
                        Error::Dataset(format!(
                        "dataset '{}' has no column '{column}' to hold out by; its group columns \
                         are: {}",
                        dataset.name,
                        if dataset.groups.is_empty() {
                            "(none)".to_string()
                        } else {
                            dataset.groups.keys().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ))
                    })?;
                split_column = Some(column.to_lowercase());
                let distinct: BTreeSet<&String> = col.iter().collect();
                match held_out {
                    Some(g) => {
                        if !distinct.contains(g) {
                            return Err(Error::Dataset(format!(
                                "column '{column}' has no group '{g}'; its groups are: {}",
                                list_some(distinct.iter().map(|s| s.as_str()))
                            )));
                        }
                        let s = Split::hold_out_group(col, g).map_err(|_| {
                            Error::Dataset(format!(
                                "holding out '{g}' leaves no training entities (it is the only \
                                 group in column '{column}')"
                            ))
                        })?;
                        let info = SplitInfo {
                            kind: "group".into(),
                            n_train: s.train.len(),
                            n_test: s.test.len(),
                            test_fraction: None,
                            seed: None,
                            column: Some(column.to_lowercase()),
                            held_out: Some(g.clone()),
                            validation_folds: opts.validation_folds,
                            folds: vec![],
                        };
                        (vec![(Some(g.clone()), s)], info)
                    }
                    None => {
                        let folds =
                            crate::probe::ridge::leave_one_group_out(col).map_err(|_| {
                                Error::Dataset(format!(
                                    "leave-one-group-out needs at least two groups in column \
                                 '{column}', found {}",
                                    distinct.len()
                                ))
                            })?;
                        let info = SplitInfo {
                            kind: "leave_one_group_out".into(),
                            n_train: n,
                            n_test: n,
                            test_fraction: None,
                            seed: None,
                            column: Some(column.to_lowercase()),
                            held_out: None,
                            validation_folds: opts.validation_folds,
                            folds: vec![],
                        };
                        (
                            folds
                                .into_iter()
                                .map(|f| (Some(f.group), f.split))
                                .collect(),
                            info,
                        )
                    }
                }
            }
        };

        // ---- Control task: one random target per first token -------------------------
        let control = if first_token_ids.is_empty() {
            warnings.push("no first-token ids were given, so the control task was skipped".into());
            None
        } else {
            if first_token_ids.len() != n {
                return Err(input_err(format!(
                    "{} first-token ids for {n} entities",
                    first_token_ids.len()
                )));
            }
            let types: BTreeSet<u32> = first_token_ids.iter().copied().collect();
            let mut rng = SplitMix64::new(mix_seed(opts.seed, 3));
            let stats: Vec<(f64, f64)> = (0..k_fit)
                .map(|t| mean_std((0..n).map(|i| fitted[i * k_fit + t])))
                .collect();
            let table: BTreeMap<u32, Vec<f64>> = types
                .iter()
                .map(|&tok| {
                    let v = stats
                        .iter()
                        .map(|(m, s)| m + s * std_normal(&mut rng))
                        .collect();
                    (tok, v)
                })
                .collect();
            if types.len() < 2 {
                warnings.push(
                    "every entity has the same first token, so the control task is constant and \
                     was skipped"
                        .into(),
                );
                None
            } else {
                Some(
                    first_token_ids
                        .iter()
                        .flat_map(|tok| table[tok].clone())
                        .collect::<Vec<f64>>(),
                )
            }
        };

        // ---- Folds: validation folds, scaled targets, shuffles ----------------------
        let k = opts.validation_folds;
        let mut folds = Vec::with_capacity(raw_folds.len());
        for (fi, (held_out, s)) in raw_folds.into_iter().enumerate() {
            let where_ = held_out
                .as_ref()
                .map(|g| format!(" (fold holding out '{g}')"))
                .unwrap_or_default();
            if s.train.len() < 2 * k {
                return Err(input_err(format!(
                    "{} training entities{where_} are too few for {k}-fold validation; need at \
                     least {} (two per fold), or lower validation_folds",
                    s.train.len(),
                    2 * k
                )));
            }
            if s.test.len() < 2 && held_out.is_none() {
                return Err(input_err(format!(
                    "only {} test entities; need at least 2 to score a probe",
                    s.test.len()
                )));
            }
            let vfolds = s.validation_folds(k, mix_seed(opts.seed, 1 + fi as u64))?;
            let mut train = Vec::with_capacity(s.train.len());
            let mut val = Vec::with_capacity(k);
            for f in &vfolds {
                val.push((train.len(), f.test.len()));
                train.extend_from_slice(&f.test);
            }
            let y = Scaled::new(&fitted, k_fit, &train, &s.test, &fitted_names)
                .map_err(|e| add_context(e, &where_))?;
            let control_scaled = match &control {
                Some(c) => match Scaled::new(c, k_fit, &train, &s.test, &fitted_names) {
                    Ok(sc) => Some(sc),
                    Err(_) => {
                        warnings.push(format!(
                            "the control-task targets are constant on the training set{where_}; \
                             control task skipped there"
                        ));
                        None
                    }
                },
                None => None,
            };
            let mut rng = SplitMix64::new(mix_seed(opts.seed, 1000 + fi as u64));
            let perms = (0..opts.n_permutations)
                .map(|_| rng.permutation(train.len()))
                .collect();
            info.folds.push(FoldInfo {
                held_out: held_out.clone(),
                n_train: train.len(),
                n_test: s.test.len(),
            });
            folds.push(FoldPlan {
                held_out,
                train,
                val,
                test: s.test,
                y,
                control: control_scaled,
                perms,
            });
        }
        // The control task is reported only when every fold has it.
        let control = if folds.iter().all(|f| f.control.is_some()) {
            control
        } else {
            for f in &mut folds {
                f.control = None;
            }
            None
        };
        // Pooled test targets must vary to be scored.
        let pooled: Vec<usize> = folds.iter().flat_map(|f| f.test.iter().copied()).collect();
        for t in 0..k_orig {
            let first = original[pooled[0] * k_orig + t];
            if pooled.iter().all(|&i| original[i * k_orig + t] == first) {
                return Err(input_err(format!(
                    "target '{}' is constant ({first}) over the {} test entities; R² on it is \
                     undefined",
                    target_names[t],
                    pooled.len()
                )));
            }
        }

        // ---- Neuron check plan -------------------------------------------------------
        let neuron = if opts.neuron_check {
            let rows: Vec<usize> = if folds.len() == 1 {
                let mut r = folds[0].train.clone();
                r.sort_unstable();
                r
            } else {
                (0..n).collect()
            };
            let nr = rows.len();
            let b = opts.n_permutations;
            let t_n = k_orig;
            let mut ranks = Vec::with_capacity(t_n);
            for t in 0..t_n {
                let vals: Vec<f64> = rows.iter().map(|&i| original[i * k_orig + t]).collect();
                let r = metrics::average_ranks(&vals)?;
                let mean = (nr as f64 + 1.0) / 2.0;
                let norm = r
                    .iter()
                    .map(|v| (v - mean) * (v - mean))
                    .sum::<f64>()
                    .sqrt();
                ranks.push(
                    r.iter()
                        .map(|v| if norm > 0.0 { (v - mean) / norm } else { 0.0 })
                        .collect::<Vec<f64>>(),
                );
            }
            let mut rng = SplitMix64::new(mix_seed(opts.seed, 7));
            let perms: Vec<Vec<usize>> = (0..b).map(|_| rng.permutation(nr)).collect();
            let ty_t = DMatrix::from_fn((b + 1) * t_n, nr, |row, i| {
                let (bb, t) = (row / t_n, row % t_n);
                let src = if bb == 0 { i } else { perms[bb - 1][i] };
                ranks[t][src] as f32
            });
            Some(NeuronPlan {
                rows,
                targets: target_names.clone(),
                ty_t,
            })
        } else {
            None
        };

        // ---- Group breakdown column ---------------------------------------------------
        let group_column = match &opts.group_column {
            Some(c) => {
                let c = c.to_lowercase();
                if !dataset.groups.contains_key(&c) {
                    return Err(Error::Dataset(format!(
                        "dataset '{}' has no column '{c}' for the group breakdown; its group \
                         columns are: {}",
                        dataset.name,
                        dataset
                            .groups
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                Some(c)
            }
            None => split_column.clone().or_else(|| {
                if dataset.groups.contains_key("continent") {
                    Some("continent".into())
                } else {
                    dataset
                        .groups
                        .iter()
                        .find(|(_, v)| {
                            let d = v.iter().collect::<BTreeSet<_>>().len();
                            (2..=50).contains(&d)
                        })
                        .map(|(k, _)| k.clone())
                }
            }),
        };
        let group_values = group_column
            .as_ref()
            .and_then(|c| dataset.groups.get(c))
            .cloned();

        Ok(Self {
            kind,
            opts: opts.clone(),
            names: dataset.names.clone(),
            n_layers,
            d_model,
            has_random_init,
            target_names,
            fitted_names,
            original,
            fitted,
            control,
            folds,
            neuron,
            split: info,
            split_column,
            group_column,
            group_values,
            warnings,
        })
    }

    /// Fits and scores one layer (`acts`: `[entities][d_model]` row-major, as
    /// [`Activations::layer`]); `random_init` is the random-init model's same layer.
    pub fn layer(
        &self,
        layer: usize,
        acts: &[f32],
        random_init: Option<&[f32]>,
    ) -> Result<LayerOutcome> {
        let (n, d) = (self.names.len(), self.d_model);
        if layer > self.n_layers {
            return Err(input_err(format!(
                "layer {layer} is beyond the model's {} layers",
                self.n_layers
            )));
        }
        let check_shape = |what: &str, x: &[f32]| -> Result<()> {
            if x.len() != n * d {
                return Err(input_err(format!(
                    "{what} layer {layer} has {} values; expected {n} entities × {d} dimensions",
                    x.len()
                )));
            }
            check_finite_layer(what, x, d, layer, &self.names)
        };
        check_shape("activations", acts)?;
        if self.has_random_init != random_init.is_some() {
            return Err(input_err(format!(
                "layer {layer}: random-init activations were {} when the analysis was prepared \
                 but {} now",
                if self.has_random_init {
                    "announced"
                } else {
                    "not announced"
                },
                if random_init.is_some() {
                    "given"
                } else {
                    "missing"
                }
            )));
        }
        if let Some(r) = random_init {
            check_shape("random-init activations", r)?;
        }
        let mut out = Vec::with_capacity(self.folds.len());
        for fold in &self.folds {
            out.push(self.fit_fold(fold, acts, random_init)?);
        }
        let neurons = match &self.neuron {
            Some(plan) => neuron_layer(layer, acts, d, plan, self.opts.n_permutations),
            None => vec![],
        };
        Ok(LayerOutcome {
            layer,
            folds: out,
            neurons,
        })
    }

    fn fit_fold(
        &self,
        fold: &FoldPlan,
        acts: &[f32],
        random_init: Option<&[f32]>,
    ) -> Result<FoldLayer> {
        let d = self.d_model;
        let (x, x_test) = design(acts, d, &fold.train, &fold.test, self.opts.standardize);
        let spec = Spectral::new(&x, &x_test, &self.opts.alphas, Some(&fold.val))?;
        let fit = spec.fit(&fold.y.train);
        let alpha = self.opts.alphas[fit.alpha_index];
        let train_pred = fold.y.unscale(&spec.predict_train(&fit));
        let test_pred = fold.y.unscale(&spec.predict_test(&fit));
        let r2_validation = spec.kfold_r2(&x, &fold.y.train, &fold.val, alpha)?;
        let control_pred = fold.control.as_ref().map(|c| {
            let cf = spec.fit(&c.train);
            c.unscale(&spec.predict_test(&cf))
        });
        let null_sse = if fold.perms.is_empty() {
            vec![]
        } else {
            let z = spec.null_sse(&fold.y.train, &fold.perms, &fold.y.test);
            let k = fold.y.scale.len();
            z.iter()
                .enumerate()
                .map(|(i, v)| v * fold.y.scale[i % k] * fold.y.scale[i % k])
                .collect()
        };
        drop(spec);
        let random_pred = match random_init {
            Some(r) => {
                let (xr, xr_test) = design(r, d, &fold.train, &fold.test, self.opts.standardize);
                let sr = Spectral::new(&xr, &xr_test, &self.opts.alphas, None)?;
                let f = sr.fit(&fold.y.train);
                Some(fold.y.unscale(&sr.predict_test(&f)))
            }
            None => None,
        };
        Ok(FoldLayer {
            alpha,
            r2_validation,
            train_pred,
            test_pred,
            control_pred,
            random_pred,
            null_sse,
        })
    }

    /// Fitted-unit predictions → `target_names` units (sphere → latitude/longitude).
    fn to_original(&self, p: &DMatrix<f64>) -> Vec<f64> {
        let k_orig = self.target_names.len();
        let mut out = Vec::with_capacity(p.nrows() * k_orig);
        for i in 0..p.nrows() {
            if self.fitted_names.len() == 3 {
                let (x, y, z) = (p[(i, 0)], p[(i, 1)], p[(i, 2)]);
                out.push(z.atan2((x * x + y * y).sqrt()).to_degrees());
                out.push(y.atan2(x).to_degrees());
            } else {
                out.extend((0..k_orig).map(|t| p[(i, t)]));
            }
        }
        out
    }

    /// Scores predictions (row-major, `target_names` units) of the entities `rows`.
    fn score(&self, rows: &[usize], pred: &[f64]) -> Scores {
        let k = self.target_names.len();
        let truth: Vec<f64> = rows
            .iter()
            .flat_map(|&i| self.original[i * k..(i + 1) * k].to_vec())
            .collect();
        let per =
            metrics::r2_score_per_target(&truth, pred, k).unwrap_or_else(|_| vec![f64::NAN; k]);
        let r2 = per.iter().sum::<f64>() / k as f64;
        let spearman = (0..k)
            .map(|t| {
                let a: Vec<f64> = (0..rows.len()).map(|i| truth[i * k + t]).collect();
                let b: Vec<f64> = (0..rows.len()).map(|i| pred[i * k + t]).collect();
                metrics::spearman(&a, &b).ok().and_then(fin)
            })
            .collect();
        let mut s = Scores {
            r2,
            per_target: per,
            spearman,
            km_mean: None,
            km_median: None,
            proximity: None,
            years_mae: None,
        };
        match self.kind {
            TargetKind::Space => {
                let t: Vec<LatLon> = (0..rows.len())
                    .map(|i| LatLon {
                        lat: truth[2 * i],
                        lon: truth[2 * i + 1],
                    })
                    .collect();
                let p: Vec<LatLon> = (0..rows.len())
                    .map(|i| to_latlon(pred[2 * i], pred[2 * i + 1]))
                    .collect();
                if let Ok(e) = metrics::km_errors(&t, &p) {
                    s.km_mean = fin(e.iter().sum::<f64>() / e.len() as f64);
                    s.km_median = fin(median(e));
                }
                s.proximity = proximity_error_mean(&t, &p).ok().and_then(fin);
            }
            TargetKind::Time => {
                s.years_mae = metrics::mean_absolute_error_years(&truth, pred)
                    .ok()
                    .and_then(fin);
            }
        }
        s
    }

    /// Fitted-unit R² of pooled predictions against `values` (n × k_fit).
    fn r2_fitted(&self, values: &[f64], rows: &[usize], pred: &[f64]) -> f64 {
        let k = self.fitted_names.len();
        let truth: Vec<f64> = rows
            .iter()
            .flat_map(|&i| values[i * k..(i + 1) * k].to_vec())
            .collect();
        metrics::r2_score(&truth, pred, k).unwrap_or(f64::NAN)
    }

    /// Character 1–3-gram baseline: test R² pooled over folds.
    fn ngram_baseline(&self) -> Result<Option<f64>> {
        let buckets = self.opts.ngram_buckets;
        if buckets == 0 {
            return Ok(None);
        }
        let feats = ngram_features(&self.names, buckets);
        let mut rows = Vec::new();
        let mut preds = Vec::new();
        for fold in &self.folds {
            let (x, x_test) = design(&feats, buckets, &fold.train, &fold.test, false);
            let spec = Spectral::new(&x, &x_test, &self.opts.alphas, None)?;
            let fit = spec.fit(&fold.y.train);
            preds.extend(self.to_original(&fold.y.unscale(&spec.predict_test(&fit))));
            rows.extend_from_slice(&fold.test);
        }
        Ok(fin(self.score(&rows, &preds).r2))
    }

    /// Selects the layer, computes the p-values and assembles the report. `layers` must hold
    /// every layer 0..=n_layers once, in any order.
    pub fn finish(&self, ctx: &ReportContext, mut layers: Vec<LayerOutcome>) -> Result<Report> {
        layers.sort_by_key(|l| l.layer);
        let n_l = self.n_layers + 1;
        for (want, got) in (0..n_l).zip(
            layers
                .iter()
                .map(|l| l.layer)
                .chain(std::iter::repeat(usize::MAX)),
        ) {
            if want != got {
                return Err(input_err(format!(
                    "the report needs every layer 0..={} exactly once; layer {want} is missing or \
                     repeated",
                    self.n_layers
                )));
            }
        }
        if layers.len() != n_l {
            return Err(input_err(format!(
                "got {} layer results for {} layers",
                layers.len(),
                n_l
            )));
        }
        let k_fit = self.fitted_names.len();
        let k_orig = self.target_names.len();
        let n_folds = self.folds.len();
        let pooled: Vec<usize> = self
            .folds
            .iter()
            .flat_map(|f| f.test.iter().copied())
            .collect();
        let b_n = self.opts.n_permutations;
        let loo = n_folds > 1;

        // Pooled test predictions per layer, fitted and original units.
        let stack = |l: &LayerOutcome,
                     pick: &dyn Fn(&FoldLayer) -> Option<&DMatrix<f64>>|
         -> Option<Vec<f64>> {
            let mut v = Vec::with_capacity(pooled.len() * k_fit);
            for f in &l.folds {
                let m = pick(f)?;
                for i in 0..m.nrows() {
                    v.extend((0..k_fit).map(|t| m[(i, t)]));
                }
            }
            Some(v)
        };
        let as_dm = |v: &[f64]| DMatrix::from_fn(v.len() / k_fit, k_fit, |i, t| v[i * k_fit + t]);

        // Fitted-units SST over the pooled test set, for pooling null SSEs across folds.
        let sst: Vec<f64> = (0..k_fit)
            .map(|t| {
                let vals: Vec<f64> = pooled.iter().map(|&i| self.fitted[i * k_fit + t]).collect();
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                vals.iter().map(|v| (v - m) * (v - m)).sum()
            })
            .collect();
        // E[l][g][b] = Σ_t SSE / SST_t; pooled R² = 1 − Σ_g E / k.
        let e_of = |l: &LayerOutcome, g: usize, b: usize| -> f64 {
            (0..k_fit)
                .map(|t| l.folds[g].null_sse[b * k_fit + t] / sst[t])
                .sum::<f64>()
        };
        let has_null = b_n > 0;

        let mut reports = Vec::with_capacity(n_l);
        let mut layer_preds_orig = Vec::with_capacity(n_l);
        for l in &layers {
            let fitted_pred = stack(l, &|f| Some(&f.test_pred)).expect("always present");
            let orig = self.to_original(&as_dm(&fitted_pred));
            let sc = self.score(&pooled, &orig);
            let r2_fit = self.r2_fitted(&self.fitted, &pooled, &fitted_pred);
            // In-sample R² per fold (original units), averaged.
            let r2_train = l
                .folds
                .iter()
                .zip(&self.folds)
                .map(|(fl, fp)| self.score_r2_only(&fp.train, &self.to_original(&fl.train_pred)))
                .sum::<f64>()
                / n_folds as f64;
            let r2_validation =
                l.folds.iter().map(|f| f.r2_validation).sum::<f64>() / n_folds as f64;
            let alpha = if loo {
                median(l.folds.iter().map(|f| f.alpha.ln()).collect()).exp()
            } else {
                l.folds[0].alpha
            };
            let control_task_r2 = match (&self.control, stack(l, &|f| f.control_pred.as_ref())) {
                (Some(c), Some(p)) => fin(self.r2_fitted(c, &pooled, &p)),
                _ => None,
            };
            let random_init_r2 = stack(l, &|f| f.random_pred.as_ref())
                .map(|p| self.score_r2_only(&pooled, &self.to_original(&as_dm(&p))))
                .and_then(fin);
            let (shuffled_mean, shuffled_max, p_unc) = if has_null {
                let r2b: Vec<f64> = (0..=b_n)
                    .map(|b| 1.0 - (0..n_folds).map(|g| e_of(l, g, b)).sum::<f64>() / k_fit as f64)
                    .collect();
                let null = &r2b[1..];
                let ge = null.iter().filter(|&&v| v >= r2b[0]).count();
                (
                    fin(null.iter().sum::<f64>() / b_n as f64),
                    fin(null.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
                    Some((1 + ge) as f64 / (1 + b_n) as f64),
                )
            } else {
                (None, None, None)
            };
            reports.push(LayerReport {
                layer: l.layer,
                alpha,
                r2_train,
                r2_validation,
                r2_test: sc.r2,
                r2_test_per_target: sc.per_target.clone(),
                r2_test_fitted: r2_fit,
                spearman_test: sc.spearman.clone(),
                km_mean: sc.km_mean,
                km_median: sc.km_median,
                proximity_error: sc.proximity,
                years_mae: sc.years_mae,
                p_value_uncorrected: p_unc,
                controls: LayerControls {
                    shuffled_r2_mean: shuffled_mean,
                    shuffled_r2_max: shuffled_max,
                    control_task_r2,
                    selectivity: control_task_r2.map(|c| r2_fit - c),
                    random_init_r2,
                },
            });
            layer_preds_orig.push(orig);
        }

        // ---- Selection: per fold, the layer with the best validation R² (ties → lower) ----
        let mut by_fold = Vec::with_capacity(n_folds);
        let mut chosen = Vec::with_capacity(n_folds);
        for (g, fp) in self.folds.iter().enumerate() {
            let mut best = 0;
            for l in 1..n_l {
                let (v, bv) = (
                    layers[l].folds[g].r2_validation,
                    layers[best].folds[g].r2_validation,
                );
                if v > bv || (bv.is_nan() && !v.is_nan()) {
                    best = l;
                }
            }
            chosen.push(best);
            by_fold.push(FoldSelection {
                held_out: fp.held_out.clone(),
                layer: best,
                alpha: layers[best].folds[g].alpha,
                r2_validation: layers[best].folds[g].r2_validation,
            });
        }
        let mut counts = vec![0usize; n_l];
        chosen.iter().for_each(|&l| counts[l] += 1);
        let sel_layer = (0..n_l)
            .max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a)))
            .unwrap_or(0);

        // Selected predictions: each fold at its own layer.
        let mut sel_fitted = Vec::with_capacity(pooled.len() * k_fit);
        let mut sel_control = Vec::new();
        let mut sel_random = Vec::new();
        let mut have_control = self.control.is_some();
        let mut have_random = self.has_random_init;
        for (g, &l) in chosen.iter().enumerate() {
            let f = &layers[l].folds[g];
            for i in 0..f.test_pred.nrows() {
                sel_fitted.extend((0..k_fit).map(|t| f.test_pred[(i, t)]));
            }
            match &f.control_pred {
                Some(c) => {
                    (0..c.nrows()).for_each(|i| sel_control.extend((0..k_fit).map(|t| c[(i, t)])))
                }
                None => have_control = false,
            }
            match &f.random_pred {
                Some(c) => {
                    (0..c.nrows()).for_each(|i| sel_random.extend((0..k_fit).map(|t| c[(i, t)])))
                }
                None => have_random = false,
            }
        }
        let sel_orig = self.to_original(&as_dm(&sel_fitted));
        let sel_scores = self.score(&pooled, &sel_orig);
        let sel_r2_fitted = self.r2_fitted(&self.fitted, &pooled, &sel_fitted);
        let sel_control_r2 = if have_control {
            self.control
                .as_ref()
                .map(|c| self.r2_fitted(c, &pooled, &sel_control))
                .and_then(fin)
        } else {
            None
        };
        let sel_random_r2 = if have_random {
            fin(self.score_r2_only(&pooled, &self.to_original(&as_dm(&sel_random))))
        } else {
            None
        };

        // ---- Max-over-layers permutation p-value ---------------------------------------
        let (p_value, p_statistic) = if has_null {
            let observed = 1.0
                - chosen
                    .iter()
                    .enumerate()
                    .map(|(g, &l)| e_of(&layers[l], g, 0))
                    .sum::<f64>()
                    / k_fit as f64;
            let mut ge = 0usize;
            for b in 1..=b_n {
                let best_e: f64 = (0..n_folds)
                    .map(|g| {
                        layers
                            .iter()
                            .map(|l| e_of(l, g, b))
                            .fold(f64::INFINITY, f64::min)
                    })
                    .sum();
                let null_max = 1.0 - best_e / k_fit as f64;
                if null_max >= observed {
                    ge += 1;
                }
            }
            (Some((1 + ge) as f64 / (1 + b_n) as f64), fin(observed))
        } else {
            (None, None)
        };

        let k_txt = self.opts.validation_folds;
        let selected =
            Selected {
                layer: sel_layer,
                alpha: if loo {
                    median(by_fold.iter().map(|f| f.alpha.ln()).collect()).exp()
                } else {
                    by_fold[0].alpha
                },
                chosen_by: format!(
                    "{k_txt}-fold validation R² on the training set{} (alpha per layer by \
                 leave-one-out on the training set; validation folds refit at that alpha)",
                    if loo {
                        ", separately in each leave-one-group-out fold"
                    } else {
                        ""
                    }
                ),
                r2_validation: by_fold.iter().map(|f| f.r2_validation).sum::<f64>()
                    / n_folds as f64,
                r2_test: sel_scores.r2,
                r2_test_fitted: sel_r2_fitted,
                spearman_test: sel_scores.spearman.clone(),
                km_mean: sel_scores.km_mean,
                km_median: sel_scores.km_median,
                proximity_error: sel_scores.proximity,
                years_mae: sel_scores.years_mae,
                p_value,
                p_statistic,
                p_value_method: format!(
                "permutation test, {b_n} shuffles of the training targets: statistic = test R² \
                 (fitted coordinates) of the selected layer with alpha by GCV; null = for each \
                 shuffle the MAXIMUM test R² over all {n_l} layers{}, so selecting the layer is \
                 paid for; p = (1 + #null ≥ observed) / (1 + shuffles)",
                if loo { " (per fold, pooled over folds)" } else { "" }
            ),
                n_permutations: b_n,
                control_task_r2: sel_control_r2,
                selectivity: sel_control_r2.map(|c| sel_r2_fitted - c),
                random_init_r2: sel_random_r2,
                by_fold,
            };

        // ---- Group breakdown at the selected layer -------------------------------------
        let by_group = match &self.group_values {
            Some(vals) => {
                let mut test_rows: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
                for (pos, &i) in pooled.iter().enumerate() {
                    test_rows.entry(vals[i].as_str()).or_default().push(pos);
                }
                let all: BTreeSet<&str> = vals.iter().map(String::as_str).collect();
                all.into_iter()
                    .map(|g| {
                        let pos = test_rows.get(g).cloned().unwrap_or_default();
                        // Training rows of this group in the folds that predicted it.
                        let n_train = if self.folds.len() == 1 {
                            self.folds[0]
                                .train
                                .iter()
                                .filter(|&&i| vals[i] == g)
                                .count()
                        } else {
                            self.folds
                                .iter()
                                .filter(|f| f.test.iter().any(|&i| vals[i] == g))
                                .map(|f| f.train.iter().filter(|&&i| vals[i] == g).count())
                                .sum()
                        };
                        let rows: Vec<usize> = pos.iter().map(|&p| pooled[p]).collect();
                        let pred: Vec<f64> = pos
                            .iter()
                            .flat_map(|&p| sel_orig[p * k_orig..(p + 1) * k_orig].to_vec())
                            .collect();
                        let (r2, km, yrs) = if rows.len() >= 2 {
                            let s = self.score_light(&rows, &pred);
                            (fin(s.r2), s.km_mean, s.years_mae)
                        } else if rows.len() == 1 {
                            let s = self.score_light(&rows, &pred);
                            (None, s.km_mean, s.years_mae)
                        } else {
                            (None, None, None)
                        };
                        GroupReport {
                            group: g.to_string(),
                            n_train,
                            n_test: rows.len(),
                            r2_test: r2,
                            km_mean: km,
                            years_mae: yrs,
                        }
                    })
                    .collect()
            }
            None => vec![],
        };

        // ---- Entities ------------------------------------------------------------------
        let mut entities = Vec::with_capacity(self.names.len());
        if !loo {
            let g0 = &self.folds[0];
            let train_orig = self.to_original(&layers[chosen[0]].folds[0].train_pred);
            for (pos, &i) in g0.train.iter().enumerate() {
                entities.push(self.entity(
                    i,
                    "train",
                    None,
                    &train_orig[pos * k_orig..(pos + 1) * k_orig],
                ));
            }
        }
        let mut start = 0;
        for f in &self.folds {
            for (pos, &i) in f.test.iter().enumerate() {
                let p = start + pos;
                entities.push(self.entity(
                    i,
                    "test",
                    f.held_out.clone(),
                    &sel_orig[p * k_orig..(p + 1) * k_orig],
                ));
            }
            start += f.test.len();
        }
        entities.sort_by_key(|e| e.index);

        // For maps: positions with latitude clamped and longitude wrapped.
        let rows_of = |v: &[f64]| -> Vec<Vec<f64>> {
            v.chunks(k_orig)
                .map(|c| match self.kind {
                    TargetKind::Space => {
                        let p = to_latlon(c[0], c[1]);
                        vec![p.lat, p.lon]
                    }
                    TargetKind::Time => c.to_vec(),
                })
                .collect()
        };
        let layer_predictions = self.opts.layer_predictions.then(|| LayerPredictions {
            entities: pooled.clone(),
            predicted: layer_preds_orig.iter().map(|v| rows_of(v)).collect(),
            train_entities: if loo {
                vec![]
            } else {
                self.folds[0].train.clone()
            },
            train_predicted: if loo {
                vec![]
            } else {
                layers
                    .iter()
                    .map(|l| rows_of(&self.to_original(&l.folds[0].train_pred)))
                    .collect()
            },
        });

        let ngram = self.ngram_baseline()?;
        let mut warnings = self.warnings.clone();
        if self.opts.n_permutations > 0 && self.opts.n_permutations < 20 {
            warnings.push(format!(
                "only {} shuffles: the smallest possible p-value is {:.3}",
                self.opts.n_permutations,
                1.0 / (1 + self.opts.n_permutations) as f64
            ));
        }
        let mut neurons: Vec<NeuronReport> =
            layers.iter().flat_map(|l| l.neurons.clone()).collect();
        neurons.sort_by_key(|r| r.layer);

        Ok(Report {
            model: ModelInfo {
                name: ctx.model_name.clone(),
                sha256: ctx.model_sha256.clone(),
                n_layers: self.n_layers,
                d_model: self.d_model,
            },
            dataset: DatasetInfo {
                name: ctx.dataset_name.clone(),
                n: self.names.len(),
                target: self.kind,
                target_names: self.target_names.clone(),
                fitted_targets: self.fitted_names.clone(),
            },
            prompt: ctx.prompt_template.clone(),
            split: self.split.clone(),
            options: self.opts.clone(),
            baselines: Baselines {
                ngram_r2_test: ngram,
                ngram_buckets: self.opts.ngram_buckets,
                layer0_r2_test: reports[0].r2_test,
            },
            layers: reports,
            selected,
            by_group_column: self.group_column.clone(),
            by_group,
            neurons,
            neuron_rows: self.neuron.as_ref().map(|_| {
                if loo {
                    "all".to_string()
                } else {
                    "train".to_string()
                }
            }),
            notes: self.notes(),
            warnings,
            entities,
            layer_predictions,
        })
    }

    fn score_r2_only(&self, rows: &[usize], pred: &[f64]) -> f64 {
        let k = self.target_names.len();
        let truth: Vec<f64> = rows
            .iter()
            .flat_map(|&i| self.original[i * k..(i + 1) * k].to_vec())
            .collect();
        metrics::r2_score(&truth, pred, k).unwrap_or(f64::NAN)
    }

    /// R², mean km or MAE years without the quadratic proximity error.
    fn score_light(&self, rows: &[usize], pred: &[f64]) -> Scores {
        let k = self.target_names.len();
        let truth: Vec<f64> = rows
            .iter()
            .flat_map(|&i| self.original[i * k..(i + 1) * k].to_vec())
            .collect();
        let r2 = if rows.len() >= 2 {
            metrics::r2_score(&truth, pred, k).unwrap_or(f64::NAN)
        } else {
            f64::NAN
        };
        let mut s = Scores {
            r2,
            per_target: vec![],
            spearman: vec![],
            km_mean: None,
            km_median: None,
            proximity: None,
            years_mae: None,
        };
        match self.kind {
            TargetKind::Space => {
                let e: Vec<f64> = (0..rows.len())
                    .map(|i| {
                        metrics::great_circle_km(
                            LatLon {
                                lat: truth[2 * i],
                                lon: truth[2 * i + 1],
                            },
                            to_latlon(pred[2 * i], pred[2 * i + 1]),
                        )
                    })
                    .collect();
                s.km_mean = fin(e.iter().sum::<f64>() / e.len() as f64);
            }
            TargetKind::Time => {
                s.years_mae = metrics::mean_absolute_error_years(&truth, pred)
                    .ok()
                    .and_then(fin);
            }
        }
        s
    }

    fn entity(
        &self,
        i: usize,
        split: &str,
        fold: Option<String>,
        pred: &[f64],
    ) -> EntityPrediction {
        let k = self.target_names.len();
        let truth = self.original[i * k..(i + 1) * k].to_vec();
        let error = match self.kind {
            TargetKind::Space => metrics::great_circle_km(
                LatLon {
                    lat: truth[0],
                    lon: truth[1],
                },
                to_latlon(pred[0], pred[1]),
            ),
            TargetKind::Time => (truth[0] - pred[0]).abs(),
        };
        EntityPrediction {
            index: i,
            name: self.names[i].clone(),
            split: split.into(),
            fold,
            group: self.group_values.as_ref().map(|v| v[i].clone()),
            truth,
            predicted: pred.to_vec(),
            error,
        }
    }

    fn notes(&self) -> BTreeMap<String, String> {
        let k = self.opts.validation_folds;
        let mut m = BTreeMap::new();
        let mut put = |a: &str, b: String| {
            m.insert(a.to_string(), b);
        };
        put(
            "r2_train",
            "in-sample R² on the training rows (optimistic; for reference only)".into(),
        );
        put(
            "r2_validation",
            format!(
                "mean {k}-fold validation R² inside the training set; the layer is chosen by this"
            ),
        );
        put("r2_test", "held-out R² on the test rows, uniform average over target_names (scikit-learn r2_score); latitude/longitude R² as Gurnee & Tegmark".into());
        put("alpha", "ridge penalty chosen by exact leave-one-out on the training rows, on standardized features and z-scored targets".into());
        put(
            "features",
            if self.opts.standardize {
                "each layer standardized with training-row mean and standard deviation (validation folds reuse those statistics)".into()
            } else {
                "each layer centred with the training-row mean, not scaled".into()
            },
        );
        put("controls.shuffled_r2_mean", "mean over shuffles of the test R² (fitted coordinates) of a probe fitted to row-shuffled training targets, alpha by GCV from the same decomposition".into());
        put("controls.control_task_r2", "test R² on the control task: every entity's first token gets a fixed random target (Gaussian with the real targets' mean and standard deviation); same token, same target".into());
        put(
            "controls.selectivity",
            "r2_test_fitted − control_task_r2 (Hewitt & Liang 2019)".into(),
        );
        put("controls.random_init_r2", "test R² of the same probe on activations of a randomly initialised model with the same architecture".into());
        put("baselines.ngram_r2_test", format!("ridge (alpha by leave-one-out) on {} hashed character 1–3-gram counts of the lower-cased name, no model at all", self.opts.ngram_buckets));
        put(
            "baselines.layer0_r2_test",
            "test R² at layer 0 (token embeddings): what the tokens alone give".into(),
        );
        put("neurons", "per layer and target, the single residual dimension with the largest |Spearman| over the neuron rows; p-value against the maximum |Spearman| over all dimensions under each shuffle".into());
        put("p_value_uncorrected", "a layer's own permutation p-value; NOT corrected for choosing the best layer — use selected.p_value".into());
        put(
            "km",
            "great-circle errors with predicted latitude clamped to ±90° and longitude wrapped"
                .into(),
        );
        put("proximity_error", "for each test entity, the fraction of other test entities truly closer to it than its prediction is; 0 is perfect".into());
        if self.folds.len() > 1 {
            put("leave_one_group_out", format!("each group of '{}' is held out in turn; every test figure pools the held-out predictions, each made by a probe that never saw the entity's group; each fold chooses its own layer", self.split_column.clone().unwrap_or_default()));
        }
        m
    }
}

fn add_context(e: Error, where_: &str) -> Error {
    match e {
        Error::Input(m) if !where_.is_empty() => Error::Input(format!("{m}{where_}")),
        other => other,
    }
}

fn list_some<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.len() > 20 {
        format!("{}, … ({} in all)", v[..20].join(", "), v.len())
    } else {
        v.join(", ")
    }
}

struct Scores {
    r2: f64,
    per_target: Vec<f64>,
    spearman: Vec<Option<f64>>,
    km_mean: Option<f64>,
    km_median: Option<f64>,
    proximity: Option<f64>,
    years_mae: Option<f64>,
}

/// Training rows (in the given order) and test rows as column-major f64 matrices, centred with
/// the training mean and, when `standardize`, divided by the training standard deviation
/// (scikit-learn's StandardScaler: population sd; a constant column keeps scale 1).
fn design(
    x: &[f32],
    d: usize,
    train: &[usize],
    test: &[usize],
    standardize: bool,
) -> (DMatrix<f64>, DMatrix<f64>) {
    let n = train.len();
    let mut mean = vec![0.0f64; d];
    for &r in train {
        for (m, &v) in mean.iter_mut().zip(&x[r * d..(r + 1) * d]) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut scale = vec![1.0f64; d];
    if standardize {
        let mut var = vec![0.0f64; d];
        for &r in train {
            for ((s, &v), &m) in var.iter_mut().zip(&x[r * d..(r + 1) * d]).zip(&mean) {
                let c = v as f64 - m;
                *s += c * c;
            }
        }
        for j in 0..d {
            let sd = (var[j] / n as f64).sqrt();
            scale[j] = if sd <= 10.0 * f64::EPSILON * mean[j].abs().max(f64::MIN_POSITIVE) {
                1.0
            } else {
                sd
            };
        }
    }
    let inv: Vec<f64> = scale.iter().map(|s| 1.0 / s).collect();
    let build = |rows: &[usize]| {
        let nr = rows.len();
        let mut data = vec![0.0f64; nr * d];
        // Blocks of rows keep the strided column-major writes in cache.
        for chunk_start in (0..nr).step_by(64) {
            let chunk = &rows[chunk_start..(chunk_start + 64).min(nr)];
            for j in 0..d {
                let (m, s) = (mean[j], inv[j]);
                let col = &mut data[j * nr + chunk_start..j * nr + chunk_start + chunk.len()];
                for (c, &r) in col.iter_mut().zip(chunk) {
                    *c = (x[r * d + j] as f64 - m) * s;
                }
            }
        }
        DMatrix::from_vec(nr, d, data)
    };
    (build(train), build(test))
}

/// Order-preserving u32 key of an f32 (-0.0 and 0.0 equal).
fn order_key(v: f32) -> u32 {
    if v == 0.0 {
        return 0x8000_0000;
    }
    let b = v.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

fn neuron_layer(
    layer: usize,
    acts: &[f32],
    d: usize,
    plan: &NeuronPlan,
    b_n: usize,
) -> Vec<NeuronReport> {
    let nr = plan.rows.len();
    let mut ranks = vec![0f32; nr * d];
    let mut keys: Vec<u64> = Vec::with_capacity(nr);
    let mean = (nr as f64 + 1.0) / 2.0;
    let mut tmp = vec![0f64; nr];
    for j in 0..d {
        keys.clear();
        keys.extend(
            plan.rows
                .iter()
                .enumerate()
                .map(|(i, &r)| ((order_key(acts[r * d + j]) as u64) << 32) | i as u64),
        );
        keys.sort_unstable();
        let mut s = 0;
        while s < nr {
            let key = keys[s] >> 32;
            let mut e = s + 1;
            while e < nr && keys[e] >> 32 == key {
                e += 1;
            }
            let rank = (s + 1 + e) as f64 / 2.0 - mean;
            for q in &keys[s..e] {
                tmp[(q & 0xFFFF_FFFF) as usize] = rank;
            }
            s = e;
        }
        let norm = tmp.iter().map(|v| v * v).sum::<f64>().sqrt();
        let col = &mut ranks[j * nr..(j + 1) * nr];
        if norm > 0.0 {
            for (c, v) in col.iter_mut().zip(&tmp) {
                *c = (v / norm) as f32;
            }
        }
    }
    let rm = DMatrix::from_vec(nr, d, ranks);
    let corr = &plan.ty_t * &rm; // ((B+1)·T) × d
    let t_n = plan.targets.len();
    (0..t_n)
        .map(|t| {
            let (mut best, mut best_abs) = (0usize, -1.0f32);
            for j in 0..d {
                let a = corr[(t, j)].abs();
                if a > best_abs {
                    best = j;
                    best_abs = a;
                }
            }
            let p_value = (b_n > 0).then(|| {
                let ge = (1..=b_n)
                    .filter(|&b| {
                        let row = b * t_n + t;
                        (0..d).any(|j| corr[(row, j)].abs() >= best_abs)
                    })
                    .count();
                (1 + ge) as f64 / (1 + b_n) as f64
            });
            NeuronReport {
                layer,
                index: best,
                target: plan.targets[t].clone(),
                spearman: corr[(t, best)] as f64,
                p_value,
            }
        })
        .collect()
}

/// Hashed character 1–3-gram counts of each lower-cased name with start/end markers,
/// row-major `n × buckets` (FNV-1a, identical on every platform).
pub fn ngram_features(names: &[String], buckets: usize) -> Vec<f32> {
    let mut out = vec![0f32; names.len() * buckets];
    for (i, name) in names.iter().enumerate() {
        let chars: Vec<char> = std::iter::once('\u{2}')
            .chain(name.to_lowercase().chars())
            .chain(std::iter::once('\u{3}'))
            .collect();
        for len in 1..=3usize {
            for w in chars.windows(len) {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ len as u64;
                for c in w {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        h ^= b as u64;
                        h = h.wrapping_mul(0x0000_0100_0000_01b3);
                    }
                }
                out[i * buckets + (h % buckets as u64) as usize] += 1.0;
            }
        }
    }
    out
}

// =============================================================================================
// One call
// =============================================================================================

/// Runs the whole analysis on in-memory activations. Checks everything first (shapes, NaN/inf
/// anywhere, the random-init model's shape), so a bad input fails before any fitting; a cancel
/// from `progress` returns [`Error::Cancelled`]. Stages reported: `check`, `layers`, `report`.
pub fn analyze(
    acts: &Activations,
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    controls: &ControlInputs<'_>,
    ctx: &ReportContext,
    progress: &mut ProgressFn<'_>,
) -> Result<Report> {
    let n = dataset.len();
    if acts.n_entities != n {
        return Err(input_err(format!(
            "the activations are of {} entities but dataset '{}' has {n}; they belong to another \
             entity list",
            acts.n_entities, dataset.name
        )));
    }
    if acts.data.len() != (acts.n_layers + 1) * acts.n_entities * acts.d_model {
        return Err(input_err(format!(
            "activations hold {} values, not (layers+1) {} × entities {} × d {}",
            acts.data.len(),
            acts.n_layers + 1,
            acts.n_entities,
            acts.d_model
        )));
    }
    if let Some(r) = controls.random_init {
        if (r.n_layers, r.n_entities, r.d_model) != (acts.n_layers, acts.n_entities, acts.d_model)
            || r.data.len() != acts.data.len()
        {
            return Err(input_err(format!(
                "random-init activations are {} layers × {} entities × {} dims but the model's are \
                 {} × {} × {}; extract both with the same architecture and entities",
                r.n_layers, r.n_entities, r.d_model, acts.n_layers, acts.n_entities, acts.d_model
            )));
        }
    }
    if !progress("check", 0, 1) {
        return Err(Error::Cancelled);
    }
    for l in 0..=acts.n_layers {
        check_finite_layer(
            "activations",
            acts.layer(l),
            acts.d_model,
            l,
            &dataset.names,
        )?;
        if let Some(r) = controls.random_init {
            check_finite_layer(
                "random-init activations",
                r.layer(l),
                r.d_model,
                l,
                &dataset.names,
            )?;
        }
    }
    let analysis = Analysis::new(
        dataset,
        split,
        opts,
        &controls.first_token_ids,
        acts.n_layers,
        acts.d_model,
        controls.random_init.is_some(),
    )?;
    if !progress("check", 1, 1) {
        return Err(Error::Cancelled);
    }
    let total = acts.n_layers + 1;
    let fit_layer =
        |l: usize| analysis.layer(l, acts.layer(l), controls.random_init.map(|r| r.layer(l)));
    let outcomes = fit_layers(total, &fit_layer, progress)?;
    let report = analysis.finish(ctx, outcomes)?;
    if !progress("report", 1, 1) {
        return Err(Error::Cancelled);
    }
    Ok(report)
}

/// Fits every layer, in order in wasm and on as many threads as the machine has natively
/// (layers are independent; results come back in layer order). Progress and cancellation are
/// handled on the calling thread.
fn fit_layers(
    total: usize,
    fit_layer: &(dyn Fn(usize) -> Result<LayerOutcome> + Sync),
    progress: &mut ProgressFn<'_>,
) -> Result<Vec<LayerOutcome>> {
    let threads = if cfg!(target_arch = "wasm32") {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(total)
    };
    if threads <= 1 {
        let mut outcomes = Vec::with_capacity(total);
        for l in 0..total {
            outcomes.push(fit_layer(l)?);
            if !progress("layers", l + 1, total) {
                return Err(Error::Cancelled);
            }
        }
        return Ok(outcomes);
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut slots: Vec<Option<LayerOutcome>> = (0..total).map(|_| None).collect();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                let l = next.fetch_add(1, Ordering::SeqCst);
                if l >= total || stop.load(Ordering::SeqCst) {
                    break;
                }
                if tx.send((l, fit_layer(l))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (l, outcome) in rx {
            let outcome = outcome.inspect_err(|_| stop.store(true, Ordering::SeqCst))?;
            slots[l] = Some(outcome);
            done += 1;
            if !progress("layers", done, total) {
                stop.store(true, Ordering::SeqCst);
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    })?;
    slots
        .into_iter()
        .enumerate()
        .map(|(l, o)| o.ok_or_else(|| Error::Compute(format!("layer {l} was not fitted"))))
        .collect()
}

// =============================================================================================
// predictions.csv
// =============================================================================================

/// One row of predictions.csv.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    pub name: String,
    /// `train` or `test`.
    pub split: String,
    pub truth: Vec<f64>,
    pub predicted: Vec<f64>,
    /// Great-circle km (space) or absolute years (time).
    pub error: f64,
    pub group: Option<String>,
}

/// Per-entity rows at the selected layer, in dataset order.
pub fn predictions(report: &Report) -> Vec<PredictionRow> {
    report
        .entities
        .iter()
        .map(|e| PredictionRow {
            name: e.name.clone(),
            split: e.split.clone(),
            truth: e.truth.clone(),
            predicted: e.predicted.clone(),
            error: e.error,
            group: e.group.clone(),
        })
        .collect()
}

/// predictions.csv text: `name,split,true_<t>…,predicted_<t>…,error_km|error_years,group`.
pub fn predictions_csv(report: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let tn = &report.dataset.target_names;
    let mut header = vec!["name".to_string(), "split".to_string()];
    header.extend(tn.iter().map(|t| format!("true_{t}")));
    header.extend(tn.iter().map(|t| format!("predicted_{t}")));
    header.push(match report.dataset.target {
        TargetKind::Space => "error_km".into(),
        TargetKind::Time => "error_years".into(),
    });
    header.push(
        report
            .by_group_column
            .clone()
            .unwrap_or_else(|| "group".into()),
    );
    let io = |e: csv::Error| Error::Compute(format!("writing predictions.csv: {e}"));
    w.write_record(&header).map_err(io)?;
    for r in predictions(report) {
        let mut rec = vec![r.name, r.split];
        rec.extend(r.truth.iter().map(|v| v.to_string()));
        rec.extend(r.predicted.iter().map(|v| format!("{v:.6}")));
        rec.push(format!("{:.3}", r.error));
        rec.push(r.group.unwrap_or_default());
        w.write_record(&rec).map_err(io)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Compute(format!("writing predictions.csv: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Compute(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ridge::{CvMode, MatrixRef, RidgeCv};

    fn rand_matrix(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = SplitMix64::new(seed);
        DMatrix::from_fn(n, d, |_, _| std_normal(&mut rng))
    }

    fn centered(x: &DMatrix<f64>) -> DMatrix<f64> {
        let means: Vec<f64> = (0..x.ncols()).map(|j| x.column(j).mean()).collect();
        DMatrix::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)] - means[j])
    }

    fn row_major(m: &DMatrix<f64>) -> Vec<f64> {
        m.transpose().as_slice().to_vec()
    }

    /// Direct ridge with intercept at a fixed alpha: (Xcᵀ Xc + αI) β = Xcᵀ yc.
    fn ridge_direct(
        x: &DMatrix<f64>,
        y: &DMatrix<f64>,
        alpha: f64,
    ) -> (Vec<f64>, DMatrix<f64>, Vec<f64>) {
        let xm: Vec<f64> = (0..x.ncols()).map(|j| x.column(j).mean()).collect();
        let ym: Vec<f64> = (0..y.ncols()).map(|j| y.column(j).mean()).collect();
        let xc = DMatrix::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)] - xm[j]);
        let yc = DMatrix::from_fn(y.nrows(), y.ncols(), |i, j| y[(i, j)] - ym[j]);
        let mut a = xc.transpose() * &xc;
        for j in 0..a.nrows() {
            a[(j, j)] += alpha;
        }
        let beta = a.lu().solve(&(xc.transpose() * yc)).unwrap();
        (xm, beta, ym)
    }

    fn engine_checks(n: usize, d: usize, n_test: usize) {
        let x = centered(&rand_matrix(n, d, 1));
        let x_test = rand_matrix(n_test, d, 2);
        let signal = rand_matrix(d, 2, 3);
        let y = &x * &signal * 0.3 + rand_matrix(n, 2, 4);
        let alphas = default_alphas();
        let val = vec![(0, n / 3), (n / 3, n / 3), (2 * (n / 3), n - 2 * (n / 3))];
        let spec = Spectral::new(&x, &x_test, &alphas, Some(&val)).unwrap();

        // LOO fit = probe.rs RidgeCv (same alpha, same predictions).
        let fit = spec.fit(&y);
        let xr = row_major(&x);
        let yr = row_major(&y);
        let reference = RidgeCv::default()
            .fit(
                MatrixRef::new(&xr, n, d).unwrap(),
                MatrixRef::new(&yr, n, 2).unwrap(),
            )
            .unwrap();
        assert_eq!(fit.alpha_index, reference.alpha_index, "n={n} d={d}");
        let xtr = row_major(&x_test);
        let want = reference
            .predict(MatrixRef::new(&xtr, n_test, d).unwrap())
            .unwrap();
        let got = row_major(&spec.predict_test(&fit));
        for (g, w) in got.iter().zip(want.data()) {
            assert!(
                (g - w).abs() < 1e-8 * (1.0 + w.abs()),
                "test prediction {g} vs {w}"
            );
        }
        let want_train = reference
            .predict(MatrixRef::new(&xr, n, d).unwrap())
            .unwrap();
        for (g, w) in row_major(&spec.predict_train(&fit))
            .iter()
            .zip(want_train.data())
        {
            assert!(
                (g - w).abs() < 1e-8 * (1.0 + w.abs()),
                "train prediction {g} vs {w}"
            );
        }

        // K-fold at a fixed alpha = refitting each fold from scratch.
        for &alpha in &[0.1, 10.0, 1000.0] {
            let got = spec.kfold_r2(&x, &y, &val, alpha).unwrap();
            let mut want = 0.0;
            for &(start, len) in &val {
                let rows: Vec<usize> = (0..n).filter(|&i| i < start || i >= start + len).collect();
                let xt = DMatrix::from_fn(rows.len(), d, |i, j| x[(rows[i], j)]);
                let yt = DMatrix::from_fn(rows.len(), 2, |i, j| y[(rows[i], j)]);
                let (xm, beta, ym) = ridge_direct(&xt, &yt, alpha);
                let xv = DMatrix::from_fn(len, d, |i, j| x[(start + i, j)] - xm[j]);
                let mut pv = xv * beta;
                for t in 0..2 {
                    pv.column_mut(t).add_scalar_mut(ym[t]);
                }
                want += r2_dm(&y.rows(start, len).into_owned(), &pv) / val.len() as f64;
            }
            assert!(
                (got - want).abs() < 1e-8,
                "kfold n={n} d={d} alpha={alpha}: {got} vs {want}"
            );
        }

        // Null block 0 = a GCV RidgeCv fit scored on the test set; shuffles = fits on shuffled y.
        let y_test = &x_test * &signal * 0.3 + rand_matrix(n_test, 2, 5);
        let mut rng = SplitMix64::new(9);
        let perms: Vec<Vec<usize>> = (0..3).map(|_| rng.permutation(n)).collect();
        let sse = spec.null_sse(&y, &perms, &y_test);
        let gcv = RidgeCv {
            cv_mode: CvMode::Generalized,
            ..RidgeCv::default()
        };
        for b in 0..=perms.len() {
            let yb = if b == 0 {
                y.clone()
            } else {
                DMatrix::from_fn(n, 2, |i, t| y[(perms[b - 1][i], t)])
            };
            let ybr = row_major(&yb);
            let f = gcv
                .fit(
                    MatrixRef::new(&xr, n, d).unwrap(),
                    MatrixRef::new(&ybr, n, 2).unwrap(),
                )
                .unwrap();
            let p = f.predict(MatrixRef::new(&xtr, n_test, d).unwrap()).unwrap();
            for t in 0..2 {
                let want: f64 = (0..n_test)
                    .map(|i| (y_test[(i, t)] - p.data()[i * 2 + t]).powi(2))
                    .sum();
                let got = sse[b * 2 + t];
                assert!(
                    (got - want).abs() < 1e-7 * want,
                    "null sse b={b} t={t}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn engine_matches_direct_fits_covariance_route() {
        engine_checks(90, 12, 17);
    }

    #[test]
    fn engine_matches_direct_fits_kernel_route() {
        engine_checks(30, 40, 11);
    }

    fn check_eigen(a: &DMatrix<f64>, what: &str) {
        let n = a.nrows();
        let (lambda, v) = symmetric_eigen(a.clone()).unwrap();
        let scale = a.norm().max(1.0);
        let resid = (a * &v
            - &v * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(lambda.clone())))
        .norm();
        let ortho = (v.transpose() * &v - DMatrix::<f64>::identity(n, n)).norm();
        assert!(
            resid <= 1e-12 * scale * (n as f64).sqrt(),
            "{what}: residual {resid:e} (scale {scale:e})"
        );
        assert!(ortho <= 1e-12 * n as f64, "{what}: orthogonality {ortho:e}");
        let mut got = lambda;
        got.sort_by(f64::total_cmp);
        let mut want: Vec<f64> = nalgebra::SymmetricEigen::new(a.clone())
            .eigenvalues
            .iter()
            .map(|l| l.max(0.0))
            .collect();
        want.sort_by(f64::total_cmp);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-11 * scale,
                "{what}: eigenvalue {g} vs {w}"
            );
        }
    }

    #[test]
    fn blocked_cholesky_solves() {
        for &n in &[1usize, 5, 63, 64, 65, 200] {
            let x = rand_matrix(n + 3, n, 5 + n as u64);
            let mut a = x.transpose() * &x;
            for i in 0..n {
                a[(i, i)] += 0.5;
            }
            let b = rand_matrix(n, 3, 6);
            let got = solve_spd(a.clone(), &b).unwrap();
            let err = (&a * &got - &b).norm() / b.norm();
            assert!(err < 1e-10, "n={n}: {err:e}");
        }
        assert!(cholesky_lower(DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0])).is_none());
    }

    #[test]
    fn blocked_tridiagonalization_reconstructs() {
        for &n in &[2usize, 3, 31, 32, 33, 70, 150] {
            let x = rand_matrix(n + 5, n, 77 + n as u64);
            let a = x.transpose() * &x;
            let tri = Tridiagonal::new(a.clone());
            let t = DMatrix::from_fn(n, n, |i, j| {
                if i == j {
                    tri.diag[i]
                } else if i + 1 == j {
                    tri.off[i]
                } else if j + 1 == i {
                    tri.off[j]
                } else {
                    0.0
                }
            });
            let q = tri.apply_q(DMatrix::identity(n, n));
            let rec = (&q * &t * q.transpose() - &a).norm() / a.norm();
            let ortho = (q.transpose() * &q - DMatrix::<f64>::identity(n, n)).norm();
            assert!(
                rec < 1e-14 * n as f64 && ortho < 1e-14 * n as f64,
                "n={n}: {rec:e} {ortho:e}"
            );
        }
    }

    #[test]
    fn divide_and_conquer_eigen_is_accurate() {
        for &(n, d) in &[(200, 150), (60, 300), (1000, 70), (500, 257)] {
            // Covariances (full rank and rank-deficient), as the probes make them.
            let x = rand_matrix(n, d, n as u64);
            check_eigen(&(x.transpose() * &x), &format!("covariance {n}x{d}"));
        }
        // Repeated eigenvalues (heavy deflation) and a diagonal matrix (zero couplings).
        let q = nalgebra::linalg::QR::new(rand_matrix(120, 120, 3)).q();
        let diag: Vec<f64> = (0..120).map(|i| (i / 30) as f64 + 1.0).collect();
        let a = &q * DMatrix::from_diagonal(&nalgebra::DVector::from_vec(diag)) * q.transpose();
        check_eigen(&a, "four eigenvalues of multiplicity 30");
        check_eigen(
            &DMatrix::from_fn(90, 90, |i, j| if i == j { (i % 7) as f64 } else { 0.0 }),
            "diagonal",
        );
        check_eigen(&DMatrix::from_element(80, 80, 1.0), "rank one");
        check_eigen(&(DMatrix::<f64>::identity(70, 70) * 3.0), "identity");
        // Wilkinson-like tridiagonal with close eigenvalue pairs.
        let w = DMatrix::from_fn(101, 101, |i, j| {
            if i == j {
                (i as f64 - 50.0).abs() + 50.0
            } else if i + 1 == j || j + 1 == i {
                1.0
            } else {
                0.0
            }
        });
        check_eigen(&w, "wilkinson");
        // Widely spread scales.
        let x = DMatrix::from_fn(300, 100, |i, j| {
            ((i * 7 + j * 13) % 17) as f64 * 10f64.powi((j % 9) as i32 - 4)
        });
        check_eigen(&(x.transpose() * &x), "graded");
    }

    #[test]
    fn neuron_spearman_matches_metrics() {
        let (n, d) = (50, 6);
        let mut rng = SplitMix64::new(4);
        let mut acts: Vec<f32> = (0..n * d).map(|_| std_normal(&mut rng) as f32).collect();
        // Ties, and dimension 4 tracks the target.
        for i in 0..n {
            acts[i * d + 2] = (i % 3) as f32;
            acts[i * d + 4] = i as f32 * 0.1 + 0.3 * std_normal(&mut rng) as f32;
        }
        let target: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let rows: Vec<usize> = (0..n).collect();
        let r = metrics::average_ranks(&target).unwrap();
        let mean = (n as f64 + 1.0) / 2.0;
        let norm = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt();
        let ty_t = DMatrix::from_fn(1, n, |_, i| ((r[i] - mean) / norm) as f32);
        let plan = NeuronPlan {
            rows,
            targets: vec!["year".into()],
            ty_t,
        };
        let out = neuron_layer(0, &acts, d, &plan, 0);
        assert_eq!(out[0].index, 4);
        let col: Vec<f64> = (0..n).map(|i| acts[i * d + 4] as f64).collect();
        let want = metrics::spearman(&col, &target).unwrap();
        assert!(
            (out[0].spearman - want).abs() < 1e-5,
            "{} vs {want}",
            out[0].spearman
        );
    }

    #[test]
    fn fast_proximity_equals_metrics() {
        let mut rng = SplitMix64::new(11);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let truth: Vec<LatLon> = (0..120)
            .map(|_| LatLon {
                lat: u() * 160.0 - 80.0,
                lon: u() * 360.0 - 180.0,
            })
            .collect();
        let mut pred: Vec<LatLon> = truth
            .iter()
            .map(|t| to_latlon(t.lat + (u() - 0.5) * 40.0, t.lon + (u() - 0.5) * 60.0))
            .collect();
        pred[3] = truth[3]; // a perfect prediction
        let want = metrics::mean_proximity_error(&truth, &pred).unwrap();
        let got = proximity_error_mean(&truth, &pred).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
