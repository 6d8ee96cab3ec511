//! The science pipeline: activations + dataset → a [`Report`] with one probe per layer, the
//! controls that tell a real representation from an artefact, and per-entity predictions.
//!
//! For every layer (0 = embedding output, i = residual stream after block i) a ridge probe maps
//! the standardized activations (statistics of the training rows only) to z-scored targets:
//! latitude and longitude (or 3-D unit-sphere coordinates, projected back) for space, the year for
//! time. Beside each headline figure the report puts the control that could explain it away:
//!
//! 1. **Permutation null** — refits on row-shuffled training targets, reusing the layer's
//!    decomposition, scored on the untouched test set. Each shuffle re-runs the selection (the
//!    best validation R² inside training, over every layer, or template × layer) on its own
//!    targets, and the selected layer's test R² is ranked among the test R² of what each
//!    shuffle chose: choosing the layer is paid for exactly (a max over layers of each
//!    shuffle's test R² is valid too, but far too conservative).
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
//! Linear algebra: every probe is a [`RidgeCv`] (ridge.rs), entered through
//! [`RidgeCv::decompose_centered`]: one symmetric eigendecomposition per (layer, training set) —
//! of the d × d covariance when n_train > d, else of the n × n kernel — serves every alpha, the
//! real, control and all permuted targets (batched into one matrix product). The eigensolver
//! (linalg.rs) is a blocked Householder reduction plus divide and conquer on the tridiagonal
//! matrix. The K validation folds reuse the per-fold scatter matrices that sum to the
//! covariance, so they cost one Cholesky each.
//!
//! Nothing here uses files, clocks or OS randomness (seeded [`SplitMix64`](crate::probe::split::SplitMix64) only), so the same
//! code runs in wasm32. [`Analysis`] processes one layer at a time, so callers can stream layers
//! that do not fit in memory together; `layer_loop.rs` runs them all in one call (in order, or
//! natively on threads: the only native-only part). The plan (targets, splits, folds, shuffles,
//! control task) is built in `plan.rs`, the single-dimension check in `neuron.rs`, and the
//! report types live in `report.rs`. [`Analysis::finish`] reads as its steps: check the
//! layers, score each layer, choose the layer per fold, score the choice against the
//! null that re-runs the choice, break it down by group, and list every entity's prediction.
// Index loops here follow the formulas' subscripts (targets t, alphas a, rows i).
#![allow(clippy::needless_range_loop)]

use std::collections::{BTreeMap, BTreeSet};

use nalgebra::DMatrix;

use crate::data::{self, Dataset, TargetKind};
use crate::extract::acts::ActsMeta;
use crate::extract::prompts::first_repeat;
use crate::extract::Activations;
use crate::probe::coverage::{coverage, numeric_values, COVERAGE_COLUMNS, SURPRISAL};
use crate::probe::flags::{name_flags, FLAGS};
use crate::probe::input_err;
use crate::probe::learning::{self, Features};
use crate::probe::lexical::{nearest_names, ngram_counts, ngram_features, NameFit};
use crate::probe::matrix::design;
use crate::probe::metrics::{self, LatLon};
use crate::probe::neuron::NeuronPlan;
use crate::probe::plan::{
    breakdown_column, check_options, check_test_targets_vary, control_task, mix_seed, plan_folds,
    plan_splits, FoldPlan, Targets,
};
use crate::probe::ridge::RidgeCv;
use crate::probe::split::SplitMix64;
use crate::Result;

pub use crate::probe::report::{
    predictions, predictions_csv, AnalysisOptions, Baselines, CausalReport, CodeLength,
    CoverageReport, DatasetInfo, EntityPrediction, FlagReport, FoldInfo, FoldSelection,
    GroupCoverage, GroupReport, LayerControls, LayerPredictions, LayerReport, LayerSpread,
    LearningReport, ModelInfo, NeuronReport, PredictionRow, PromptReport, PromptSpread, Report,
    ReportContext, Selected, SpaceTargets, SplitInfo, SplitSpec,
};

// =============================================================================================
// Inputs
// =============================================================================================

/// Inputs for the controls that the caller must compute with the model.
#[derive(Clone, Debug, Default)]
pub struct ControlInputs<'a> {
    /// Each entity's first token id (for the control task); empty = no control task.
    pub first_token_ids: Vec<u32>,
    /// The same entities through a randomly initialised model of the same architecture.
    pub random_init: Option<&'a Activations>,
    /// Each entity's surprisal of its name under the model (nats per token;
    /// [`crate::extract::surprisal`]); read like a "how well known" column.
    pub name_surprisal: Option<&'a [Option<f64>]>,
}

/// Progress of a job in named stages, `(stage, done, total)`: the fit's layers, and a whole
/// run's extractions and fit ([`crate::run`]). Return `false` to cancel ([`crate::Error::Cancelled`]).
/// (A single extraction counts batches and tokens instead: [`crate::extract::Progress`].)
pub type StageProgress<'a> = dyn FnMut(&str, usize, usize) -> bool + 'a;

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

pub(crate) fn check_finite_layer(
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

fn fin(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// The geometric median of positive values (the median of their logs, exponentiated).
fn log_median(v: impl Iterator<Item = f64>) -> f64 {
    metrics::median(v.map(f64::ln).collect()).map_or(f64::NAN, f64::exp)
}

/// Latitude clamped to ±90 and longitude wrapped to [-180, 180).
fn to_latlon(lat: f64, lon: f64) -> LatLon {
    LatLon {
        lat: lat.clamp(-90.0, 90.0),
        lon: (lon + 180.0).rem_euclid(360.0) - 180.0,
    }
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
    /// Per fold, the n-gram ridge (empty without n-grams).
    names_fit: Vec<NameFit>,
    /// Per fold, the nearest-names baseline's test predictions (fitted units) and its k
    /// (empty when off).
    knn_pred: Vec<(DMatrix<f64>, usize)>,
    neuron: Option<NeuronPlan>,
    split: SplitInfo,
    split_column: Option<String>,
    group_column: Option<String>,
    group_values: Option<Vec<String>>,
    /// Each entity's name flags (`flags::name_flags`).
    flags: Vec<Vec<&'static str>>,
    /// The dataset's "how well known" columns as numbers (`coverage::COVERAGE_COLUMNS`).
    coverage_values: Vec<(String, Vec<Option<f64>>)>,
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

/// One template's fitted layers (each from [`Analysis::layer`] on that template's
/// activations), for [`Analysis::finish_prompts`].
#[derive(Clone, Debug)]
pub struct PromptOutcome {
    pub template: String,
    pub layers: Vec<LayerOutcome>,
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
    /// Per shuffle (row 0: the real targets), the validation R² inside training at that
    /// shuffle's alpha: the null re-runs the choice of layer with it.
    null_validation: Vec<f64>,
    /// The n-gram baseline plus this layer's probe of its residuals (test rows, fitted units),
    /// and that sum's permutation null (residuals shuffled), as `null_sse`.
    beside_names_pred: Option<DMatrix<f64>>,
    beside_names_null_sse: Vec<f64>,
    /// Per shuffle of the residuals, the validation R² of the probe of the targets they make
    /// (n-gram part + shuffled residuals): the layer choice under the gain's null.
    beside_names_null_validation: Vec<f64>,
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
        check_options(dataset, opts, d_model)?;
        let targets = Targets::new(dataset, opts.space_targets)?;
        let mut warnings = Vec::new();
        let (splits, mut split_info, split_column) =
            plan_splits(dataset, split, opts.validation_folds)?;
        let control = control_task(first_token_ids, &targets, opts.seed, &mut warnings)?;
        let mut folds = plan_folds(
            splits,
            &targets,
            control.as_deref(),
            opts,
            &mut split_info,
            &mut warnings,
        )?;
        // The control task is reported only when every fold has it.
        let control = if folds.iter().all(|f| f.control.is_some()) {
            control
        } else {
            for f in &mut folds {
                f.control = None;
            }
            None
        };
        check_test_targets_vary(&folds, &targets)?;
        let neuron = if opts.neuron_check {
            // One training set: its rows; leave-one-group-out: every entity.
            let rows: Vec<usize> = if folds.len() == 1 {
                let mut r = folds[0].train.clone();
                r.sort_unstable();
                r
            } else {
                (0..dataset.len()).collect()
            };
            Some(NeuronPlan::new(
                rows,
                &targets.original,
                &targets.names,
                opts.n_permutations,
                mix_seed(opts.seed, 7),
            )?)
        } else {
            None
        };
        let group_column = breakdown_column(
            dataset,
            opts.group_column.as_deref(),
            split_column.as_deref(),
        )?;
        let group_values = group_column
            .as_ref()
            .and_then(|c| dataset.groups.get(c))
            .cloned();
        let places: Vec<String> = group_values
            .iter()
            .chain(dataset.groups.get("country"))
            .flatten()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let flags = name_flags(&dataset.names, &dataset.targets, &places);
        let coverage_values: Vec<(String, Vec<Option<f64>>)> = COVERAGE_COLUMNS
            .iter()
            .filter_map(|&c| {
                let cells = dataset.groups.get(c)?;
                Some((c.to_string(), numeric_values(cells)?))
            })
            .collect();
        let ridge = RidgeCv {
            alphas: opts.alphas.clone(),
            ..RidgeCv::default()
        };
        let buckets = opts.ngram_buckets;
        let names_fit = if buckets > 0 {
            let feats = ngram_features(&dataset.names, buckets);
            folds
                .iter()
                .map(|f| NameFit::new(&feats, buckets, f, &ridge))
                .collect::<Result<Vec<_>>>()?
        } else {
            vec![]
        };
        let knn_pred = if !opts.knn_neighbours.is_empty() {
            // The similarity uses its own fine hashing: it needs no model, only few collisions.
            let knn_buckets = 1 << 16;
            let counts: Vec<_> = dataset
                .names
                .iter()
                .map(|n| ngram_counts(n, knn_buckets))
                .collect();
            folds
                .iter()
                .map(|f| {
                    let (z, k) = nearest_names(
                        &counts,
                        knn_buckets,
                        &f.train,
                        &f.test,
                        &f.y.train,
                        &opts.knn_neighbours,
                    );
                    (f.y.unscale(&z), k)
                })
                .collect()
        } else {
            vec![]
        };

        let Targets {
            kind,
            names: target_names,
            fitted_names,
            original,
            fitted,
        } = targets;
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
            names_fit,
            knn_pred,
            neuron,
            split: split_info,
            split_column,
            group_column,
            group_values,
            flags,
            coverage_values,
            warnings,
        })
    }

    /// Adds the model's surprisal of each name (nats per token, None where not scored) as a
    /// coverage column, and to each entity's prediction.
    pub fn with_name_surprisal(mut self, surprisal: &[Option<f64>]) -> Result<Self> {
        if surprisal.len() != self.names.len() {
            return Err(input_err(format!(
                "{} name surprisals for {} entities",
                surprisal.len(),
                self.names.len()
            )));
        }
        self.coverage_values
            .push((SURPRISAL.into(), surprisal.to_vec()));
        Ok(self)
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
        for (g, fold) in self.folds.iter().enumerate() {
            out.push(self.fit_fold(fold, self.names_fit.get(g), acts, random_init)?);
        }
        let neurons = match &self.neuron {
            Some(plan) => plan.layer(layer, acts, d),
            None => vec![],
        };
        Ok(LayerOutcome {
            layer,
            folds: out,
            neurons,
        })
    }

    /// The ridge every probe here fits: the options' alpha grid, leave-one-out, intercept.
    fn ridge(&self) -> RidgeCv {
        RidgeCv {
            alphas: self.opts.alphas.clone(),
            ..RidgeCv::default()
        }
    }

    /// Test-row predictions (fitted units) of a probe on features `x` (`[entities][d]`) fitted
    /// to the fold's training targets: the random-init model's layer.
    fn held_out_prediction(
        &self,
        fold: &FoldPlan,
        x: &[f32],
        d: usize,
        standardize: bool,
    ) -> Result<DMatrix<f64>> {
        let (xt, x_test) = design(x, d, &fold.train, &fold.test, standardize);
        let dec = self
            .ridge()
            .decompose_centered(xt, vec![0.0; d], Some(&x_test), None)?;
        let fit = dec.fit_matrix(&fold.y.train)?;
        Ok(fold.y.unscale(&fit.predict_held_out()?))
    }

    fn fit_fold(
        &self,
        fold: &FoldPlan,
        names_fit: Option<&NameFit>,
        acts: &[f32],
        random_init: Option<&[f32]>,
    ) -> Result<FoldLayer> {
        let d = self.d_model;
        let (x, x_test) = design(acts, d, &fold.train, &fold.test, self.opts.standardize);
        let dec =
            self.ridge()
                .decompose_centered(x, vec![0.0; d], Some(&x_test), Some(&fold.val))?;
        drop(x_test);
        let fit = dec.fit_matrix(&fold.y.train)?;
        let alpha = fit.alpha();
        let train_pred = fold.y.unscale(&fit.predict_train());
        let test_pred = fold.y.unscale(&fit.predict_held_out()?);
        let r2_validation = dec.validation_r2(&fold.y.train, alpha)?;
        let control_pred = match &fold.control {
            Some(c) => Some(c.unscale(&dec.fit_matrix(&c.train)?.predict_held_out()?)),
            None => None,
        };
        // Test SSE (z-scored) in fitted units.
        let unscale = |z: Vec<f64>| -> Vec<f64> {
            let k = fold.y.scale.len();
            z.iter()
                .enumerate()
                .map(|(i, v)| v * fold.y.scale[i % k] * fold.y.scale[i % k])
                .collect()
        };
        // Under each shuffle of the training targets: the test SSE and the validation R² that
        // the null's own choice of layer needs.
        let (null_sse, null_validation) = if fold.perms.is_empty() {
            (vec![], vec![])
        } else {
            let (sse, val) = dec.permuted_scores(&fold.y.train, None, &fold.perms, &fold.y.test)?;
            (unscale(sse), val)
        };
        let (beside_names_pred, beside_names_null_sse, beside_names_null_validation) =
            match names_fit {
                Some(nf) if self.opts.gain_over_names => {
                    let resid = dec.fit_matrix(&nf.train_resid)?.predict_held_out()?;
                    let pred = Some(fold.y.unscale(&(&nf.test_pred + resid)));
                    if fold.perms.is_empty() {
                        (pred, vec![], vec![])
                    } else {
                        // The layer is chosen on the targets, so under the gain's null (the
                        // residuals shuffled) it is chosen on the n-gram part + those.
                        let names_part = &fold.y.train - &nf.train_resid;
                        let (sse, val) = dec.permuted_scores(
                            &nf.train_resid,
                            Some(&names_part),
                            &fold.perms,
                            &nf.test_resid,
                        )?;
                        (pred, unscale(sse), val)
                    }
                }
                _ => (None, vec![], vec![]),
            };
        drop((fit, dec));
        let random_pred = match random_init {
            Some(r) => Some(self.held_out_prediction(fold, r, d, self.opts.standardize)?),
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
            null_validation,
            beside_names_pred,
            beside_names_null_sse,
            beside_names_null_validation,
        })
    }

    /// Learning curves and online code lengths at the selected layer of `report` (`acts` and
    /// `random_init` are that layer's activations) for the model, the random-init model and
    /// the n-grams. The curves' last point, the full training set, is the report's own score
    /// of each (not fitted twice). None under leave-one-group-out (no single training set) or
    /// when `opts.learning` is off.
    pub fn learning(
        &self,
        report: &Report,
        acts: &[f32],
        random_init: Option<&[f32]>,
    ) -> Result<Option<LearningReport>> {
        let layer = report.selected.layer;
        if !self.opts.learning || self.folds.len() != 1 {
            return Ok(None);
        }
        let fold = &self.folds[0];
        let n_train = fold.train.len();
        // One seeded order of the training rows: the curve's subsets are its prefixes, and the
        // code sends the rows in it.
        let mut pos: Vec<usize> = (0..n_train).collect();
        SplitMix64::new(mix_seed(self.opts.seed, 13)).shuffle(&mut pos);
        let order: Vec<usize> = pos.iter().map(|&p| fold.train[p]).collect();
        let y_order = DMatrix::from_fn(n_train, fold.y.train.ncols(), |i, t| {
            fold.y.train[(pos[i], t)]
        });
        let ridge = self.ridge();
        let sizes = learning::curve_sizes(n_train);
        let fitted_sizes = &sizes[..sizes.len() - 1];
        let ends = learning::code_block_ends(n_train);
        let score = |z: &DMatrix<f64>| {
            self.score_r2_only(&fold.test, &self.to_original(&fold.y.unscale(z)))
        };
        let run =
            |(f, full): (Features<'_>, Option<f64>)| -> Result<(Vec<f64>, Option<CodeLength>)> {
                let mut curve = learning::learning_curve(
                    f,
                    &order,
                    &y_order,
                    &fold.test,
                    fitted_sizes,
                    &ridge,
                    &score,
                )?;
                curve.push(full.unwrap_or(f64::NAN));
                let code = if ends.is_empty() {
                    None
                } else {
                    Some(learning::online_code_length(
                        f, &order, &y_order, &ends, &ridge,
                    )?)
                };
                Ok((curve, code))
            };
        let activations = |x| Features {
            x,
            d: self.d_model,
            standardize: self.opts.standardize,
        };
        let buckets = self.opts.ngram_buckets;
        let ngram_x = (buckets > 0).then(|| ngram_features(&self.names, buckets));
        let (s, b) = (&report.selected, &report.baselines);
        let learners = [
            Some((activations(acts), Some(s.r2_test))),
            random_init.map(|x| (activations(x), s.random_init_r2)),
            ngram_x.as_deref().map(|x| {
                let f = Features {
                    x,
                    d: buckets,
                    standardize: false,
                };
                (f, b.ngram_r2_test)
            }),
        ];
        // The learners are independent: natively, one thread each.
        let mut fitted = learning::on_threads(&learners, &|f| f.map(&run).transpose())
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let ngram = fitted.pop().flatten();
        let random = fitted.pop().flatten();
        let (r2_test, code) = fitted
            .pop()
            .flatten()
            .ok_or_else(|| crate::Error::Compute("the learning step lost the model".into()))?;
        let (random_init_r2_test, random_init_code) = split_pair(random);
        let (ngram_r2_test, ngram_code) = split_pair(ngram);
        Ok(Some(LearningReport {
            layer,
            n_train: sizes,
            r2_test,
            random_init_r2_test,
            ngram_r2_test,
            code_block_ends: ends,
            code_precision: learning::CODE_PRECISION,
            code,
            random_init_code,
            ngram_code,
        }))
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
                let (t, p) = self.places(rows, pred);
                if let Ok(e) = metrics::km_errors(&t, &p) {
                    s.km_mean = fin(e.iter().sum::<f64>() / e.len() as f64);
                    s.km_median = metrics::median(e).ok().and_then(fin);
                }
                s.proximity = metrics::mean_proximity_error(&t, &p).ok().and_then(fin);
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

    /// The n-gram baseline's pooled test predictions (original units), if it ran.
    fn ngram_predictions(&self) -> Option<Vec<f64>> {
        (!self.names_fit.is_empty()).then(|| {
            self.names_fit
                .iter()
                .zip(&self.folds)
                .flat_map(|(nf, f)| self.to_original(&f.y.unscale(&nf.test_pred)))
                .collect()
        })
    }

    /// The nearest-names baseline's pooled test predictions (original units), if it ran.
    fn knn_predictions(&self) -> Option<Vec<f64>> {
        (!self.knn_pred.is_empty()).then(|| {
            self.knn_pred
                .iter()
                .flat_map(|(p, _)| self.to_original(p))
                .collect()
        })
    }

    /// Selects the layer, computes the p-values and assembles the report. `layers` must hold
    /// every layer 0..=n_layers once, in any order.
    pub fn finish(&self, ctx: &ReportContext, layers: Vec<LayerOutcome>) -> Result<Report> {
        let prompt = PromptOutcome {
            template: ctx.prompt_template.clone(),
            layers,
        };
        self.finish_prompts(ctx, vec![prompt])
    }

    /// A prompt sweep's report: every template's layers were fitted with this one plan, so
    /// all share the same shuffles; (template, layer) is chosen per fold by validation inside
    /// training, the test set is scored once for that choice, and each shuffle of the null
    /// re-runs that choice over templates × layers, so the p-value pays for both choices. The
    /// report's `prompt`, `layers` and `selected` are the chosen template's; `prompts` holds
    /// every template's curve. One template gives exactly [`Analysis::finish`]'s report (its
    /// `ctx.prompt_template` is the report's `prompt`).
    pub fn finish_prompts(
        &self,
        ctx: &ReportContext,
        mut prompts: Vec<PromptOutcome>,
    ) -> Result<Report> {
        if prompts.is_empty() {
            return Err(input_err(
                "the prompt sweep has no templates; give at least one",
            ));
        }
        let sweep = prompts.len() > 1;
        for p in &mut prompts {
            p.layers.sort_by_key(|l| l.layer);
            self.check_every_layer(&p.layers).map_err(|e| match e {
                crate::Error::Input(m) if sweep => {
                    input_err(format!("template '{}': {m}", p.template))
                }
                other => other,
            })?;
        }
        let templates: Vec<String> = prompts.iter().map(|p| p.template.clone()).collect();
        if let Some((i, j)) = first_repeat(&templates) {
            return Err(input_err(format!(
                "prompt template '{}' is given twice (templates {} and {})",
                templates[j],
                i + 1,
                j + 1
            )));
        }
        let n_l = self.n_layers + 1;
        // Every (template, layer) is one candidate, template-major: candidate c is template
        // c / n_l at layer c % n_l.
        let candidates: Vec<LayerOutcome> = prompts.into_iter().flat_map(|p| p.layers).collect();
        let pooled = self.pooled_test_rows();
        let null = PooledNull::new(self, &pooled);
        let ngram = self
            .ngram_predictions()
            .and_then(|p| fin(self.score_r2_only(&pooled, &p)));
        let (all_reports, all_preds): (Vec<LayerReport>, Vec<Vec<f64>>) = candidates
            .iter()
            .map(|l| self.layer_report(l, &pooled, &null, ngram))
            .unzip();
        let (chosen, mut by_fold) = self.choose_layers(&candidates);
        if sweep {
            for (f, &c) in by_fold.iter_mut().zip(&chosen) {
                f.prompt = Some(templates[c / n_l].clone());
            }
        }
        let top = most_chosen(&chosen, candidates.len());
        let own = (top / n_l) * n_l..(top / n_l + 1) * n_l;
        let (selected, sel_pred) =
            self.selected(&candidates, &chosen, by_fold, &pooled, &null, ngram);
        let entities = self.entities(&candidates, &chosen, &sel_pred);
        let by_group = self.group_breakdown(&pooled, &sel_pred, &entities);
        let layer_predictions = self.opts.layer_predictions.then(|| {
            self.layer_predictions(&candidates[own.clone()], &pooled, &all_preds[own.clone()])
        });
        let prompt_reports: Vec<PromptReport> = if sweep {
            templates
                .iter()
                .enumerate()
                .map(|(p, t)| {
                    let range = p * n_l..(p + 1) * n_l;
                    let (layer, r2_validation, r2_test) =
                        self.alone(&candidates[range.clone()], &pooled);
                    PromptReport {
                        template: t.clone(),
                        selected: range == own,
                        layer,
                        r2_validation,
                        r2_test,
                        layers: all_reports[range].to_vec(),
                    }
                })
                .collect()
        } else {
            vec![]
        };
        let prompt_spread = sweep.then(|| prompt_spread(&prompt_reports));
        let reports = all_reports[own.clone()].to_vec();
        let layers = &candidates[own.clone()];
        let knn_pred = self.knn_predictions();
        let knn = knn_pred
            .as_ref()
            .and_then(|p| fin(self.score_r2_only(&pooled, p)));
        let k_fit = self.fitted_names.len();
        let random_sel = stack_folds(
            chosen
                .iter()
                .enumerate()
                .map(|(g, &c)| &candidates[c].folds[g]),
            k_fit,
            |f| f.random_pred.as_ref(),
        )
        .map(|p| self.to_original(&to_matrix(&p, k_fit)));
        let test_errors: Vec<(usize, f64)> = entities
            .iter()
            .filter(|e| e.split == "test")
            .map(|e| (e.index, e.error))
            .collect();
        let coverage = self
            .coverage_values
            .iter()
            .filter_map(|(c, v)| coverage(c, v, &test_errors, self.group_values.as_deref()))
            .collect();
        // Each pooled test row's error (km or years), as its entity's prediction says.
        let error_of: BTreeMap<usize, f64> = test_errors.iter().copied().collect();
        let pooled_errors: Vec<f64> = pooled.iter().map(|i| error_of[i]).collect();
        let name_flags = self.flag_reports(
            &pooled,
            &sel_pred,
            &pooled_errors,
            &[
                random_sel.as_deref(),
                self.ngram_predictions().as_deref(),
                knn_pred.as_deref(),
            ],
        );
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
        let prompt = if sweep {
            templates[top / n_l].clone()
        } else {
            ctx.prompt_template.clone()
        };
        neurons.sort_by_key(|r| r.layer);
        let loo = self.folds.len() > 1;
        let mut notes = self.notes();
        if sweep {
            notes.insert("prompts".into(), format!("a prompt sweep over {} templates: each extracted and fitted with the same split, folds and shuffles; the template and the layer chosen together by validation inside the training set; `layers` and `selected` are the chosen template's; each `prompts[]` entry's layer, r2_validation and r2_test are what that template alone would give under the same rule (its own p-value would not pay for the choice of template); `prompt_spread` gives per layer the lowest and highest test R² over templates, and the range of the templates' own r2_test", templates.len()));
        }

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
            prompt,
            pooling: ctx.pooling,
            split: self.split.clone(),
            options: self.opts.clone(),
            baselines: Baselines {
                ngram_r2_test: ngram,
                ngram_buckets: self.opts.ngram_buckets,
                knn_r2_test: knn,
                knn_neighbours: metrics::median(
                    self.knn_pred.iter().map(|&(_, k)| k as f64).collect(),
                )
                .ok()
                .map(|k| k.round() as usize),
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
            notes,
            warnings,
            entities,
            layer_predictions,
            coverage,
            name_flags,
            learning: None,
            causal: None,
            prompts: prompt_reports,
            prompt_spread,
            // Set by the shell that keeps the ledger.
            plan: None,
            seed_spread: None,
        })
    }

    /// `layers` (sorted) holds every layer 0..=n_layers exactly once.
    fn check_every_layer(&self, layers: &[LayerOutcome]) -> Result<()> {
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
        Ok(())
    }

    /// The test entities of every fold, in fold order: the rows of every pooled test figure.
    fn pooled_test_rows(&self) -> Vec<usize> {
        self.folds
            .iter()
            .flat_map(|f| f.test.iter().copied())
            .collect()
    }

    /// One layer's row of the report, and its pooled test predictions (original units).
    fn layer_report(
        &self,
        l: &LayerOutcome,
        pooled: &[usize],
        null: &PooledNull,
        ngram_r2: Option<f64>,
    ) -> (LayerReport, Vec<f64>) {
        let k_fit = self.fitted_names.len();
        let n_folds = self.folds.len();
        let b_n = self.opts.n_permutations;
        let fitted_pred =
            stack_folds(&l.folds, k_fit, |f| Some(&f.test_pred)).expect("always present");
        let orig = self.to_original(&to_matrix(&fitted_pred, k_fit));
        let sc = self.score(pooled, &orig);
        let r2_fit = self.r2_fitted(&self.fitted, pooled, &fitted_pred);
        // In-sample R² per fold (original units), averaged.
        let r2_train = l
            .folds
            .iter()
            .zip(&self.folds)
            .map(|(fl, fp)| self.score_r2_only(&fp.train, &self.to_original(&fl.train_pred)))
            .sum::<f64>()
            / n_folds as f64;
        let r2_validation = l.folds.iter().map(|f| f.r2_validation).sum::<f64>() / n_folds as f64;
        let alpha = if n_folds > 1 {
            log_median(l.folds.iter().map(|f| f.alpha))
        } else {
            l.folds[0].alpha
        };
        let control_task_r2 = match (
            &self.control,
            stack_folds(&l.folds, k_fit, |f| f.control_pred.as_ref()),
        ) {
            (Some(c), Some(p)) => fin(self.r2_fitted(c, pooled, &p)),
            _ => None,
        };
        let random_init_r2 = stack_folds(&l.folds, k_fit, |f| f.random_pred.as_ref())
            .map(|p| self.score_r2_only(pooled, &self.to_original(&to_matrix(&p, k_fit))))
            .and_then(fin);
        let beside_names = stack_folds(&l.folds, k_fit, |f| f.beside_names_pred.as_ref())
            .map(|p| self.score_r2_only(pooled, &self.to_original(&to_matrix(&p, k_fit))))
            .and_then(fin);
        let gain_p = (b_n > 0 && beside_names.is_some()).then(|| {
            let observed = null.r2(l.folds.iter(), 0, BESIDE_NAMES);
            let ge = (1..=b_n)
                .filter(|&b| null.r2(l.folds.iter(), b, BESIDE_NAMES) >= observed)
                .count();
            (1 + ge) as f64 / (1 + b_n) as f64
        });
        let (shuffled_mean, shuffled_max, p_unc) = if b_n > 0 {
            let r2b: Vec<f64> = (0..=b_n)
                .map(|b| null.r2(l.folds.iter(), b, PROBE))
                .collect();
            let shuffled = &r2b[1..];
            let ge = shuffled.iter().filter(|&&v| v >= r2b[0]).count();
            (
                fin(shuffled.iter().sum::<f64>() / b_n as f64),
                fin(shuffled.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
                Some((1 + ge) as f64 / (1 + b_n) as f64),
            )
        } else {
            (None, None, None)
        };
        let report = LayerReport {
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
                r2_beside_names: beside_names,
                gain_over_names: beside_names.zip(ngram_r2).map(|(b, n)| b - n),
                gain_p_value_uncorrected: gain_p,
            },
        };
        (report, orig)
    }

    /// Per fold, the layer with the best validation R² (ties → the lower layer).
    fn choose_layers(&self, layers: &[LayerOutcome]) -> (Vec<usize>, Vec<FoldSelection>) {
        let mut by_fold = Vec::with_capacity(self.folds.len());
        let mut chosen = Vec::with_capacity(self.folds.len());
        for (g, fp) in self.folds.iter().enumerate() {
            let mut best = 0;
            for l in 1..layers.len() {
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
                prompt: None,
                layer: layers[best].layer,
                alpha: layers[best].folds[g].alpha,
                r2_validation: layers[best].folds[g].r2_validation,
            });
        }
        (chosen, by_fold)
    }

    /// What one template alone gives under the same rule: its chosen layer (the one most folds
    /// chose), mean validation R² of the folds' choices and the pooled test R² of those
    /// choices. `layers` are that template's, in layer order.
    fn alone(&self, layers: &[LayerOutcome], pooled: &[usize]) -> (usize, f64, f64) {
        let k_fit = self.fitted_names.len();
        let (chosen, by_fold) = self.choose_layers(layers);
        let layer = layers[most_chosen(&chosen, layers.len())].layer;
        let r2_validation =
            by_fold.iter().map(|f| f.r2_validation).sum::<f64>() / by_fold.len() as f64;
        let folds = chosen.iter().enumerate().map(|(g, &l)| &layers[l].folds[g]);
        let fitted = stack_folds(folds, k_fit, |f| Some(&f.test_pred)).expect("always present");
        let r2_test = self.score_r2_only(pooled, &self.to_original(&to_matrix(&fitted, k_fit)));
        (layer, r2_validation, r2_test)
    }

    /// The selected probe's figures (each fold scored at its own chosen layer; the reported
    /// layer is the one most folds chose) and its pooled test predictions (original units).
    fn selected(
        &self,
        layers: &[LayerOutcome],
        chosen: &[usize],
        by_fold: Vec<FoldSelection>,
        pooled: &[usize],
        null: &PooledNull,
        ngram_r2: Option<f64>,
    ) -> (Selected, Vec<f64>) {
        let k_fit = self.fitted_names.len();
        let n_l = layers.len();
        let n_folds = self.folds.len();
        let loo = n_folds > 1;
        let b_n = self.opts.n_permutations;
        let layer = layers[most_chosen(chosen, n_l)].layer;
        let n_prompts = n_l / (self.n_layers + 1);

        let sel_folds = || chosen.iter().enumerate().map(|(g, &l)| &layers[l].folds[g]);
        let fitted_pred =
            stack_folds(sel_folds(), k_fit, |f| Some(&f.test_pred)).expect("always present");
        let orig = self.to_original(&to_matrix(&fitted_pred, k_fit));
        let scores = self.score(pooled, &orig);
        let r2_fitted = self.r2_fitted(&self.fitted, pooled, &fitted_pred);
        let control_r2 = match (
            &self.control,
            stack_folds(sel_folds(), k_fit, |f| f.control_pred.as_ref()),
        ) {
            (Some(c), Some(p)) => fin(self.r2_fitted(c, pooled, &p)),
            _ => None,
        };
        let random_r2 = stack_folds(sel_folds(), k_fit, |f| f.random_pred.as_ref()).and_then(|p| {
            fin(self.score_r2_only(pooled, &self.to_original(&to_matrix(&p, k_fit))))
        });

        // Each shuffle re-runs the choice (by its own validation R²) and gives the test R² of
        // what it chose, so the null has the observed statistic's distribution: choosing is
        // paid for, and no more (a max over candidates would charge for the best test R²).
        let rerun = |pick: Pick| {
            let observed = null.r2(sel_folds(), 0, pick);
            let ge = (1..=b_n)
                .filter(|&b| null.selected_r2(layers, b, pick) >= observed)
                .count();
            ((1 + ge) as f64 / (1 + b_n) as f64, observed)
        };
        let (p_value, p_statistic) = if b_n > 0 {
            let (p, observed) = rerun(PROBE);
            (Some(p), fin(observed))
        } else {
            (None, None)
        };
        let beside_names = stack_folds(sel_folds(), k_fit, |f| f.beside_names_pred.as_ref())
            .map(|p| self.score_r2_only(pooled, &self.to_original(&to_matrix(&p, k_fit))))
            .and_then(fin);
        let gain_p_value = (b_n > 0 && beside_names.is_some()).then(|| rerun(BESIDE_NAMES).0);

        let k_txt = self.opts.validation_folds;
        // The same shuffles went through every template, so one max spans them all.
        let (over, what) = if n_prompts > 1 {
            (
                format!(
                    "all {n_prompts} prompt templates × {} layers",
                    self.n_layers + 1
                ),
                "prompt template and the layer",
            )
        } else {
            (format!("all {n_l} layers"), "layer")
        };
        let selected =
            Selected {
                layer,
                alpha: if loo {
                    log_median(by_fold.iter().map(|f| f.alpha))
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
                r2_test: scores.r2,
                r2_test_fitted: r2_fitted,
                spearman_test: scores.spearman.clone(),
                km_mean: scores.km_mean,
                km_median: scores.km_median,
                proximity_error: scores.proximity,
                years_mae: scores.years_mae,
                p_value,
                p_statistic,
                p_value_method: format!(
                "permutation test, {b_n} shuffles of the training targets: statistic = test R² \
                 (fitted coordinates) of the selected layer with alpha by GCV; null = for each \
                 shuffle the selection re-run on the shuffled targets as on the real ones (the \
                 best validation R² inside training over {over}, alpha per shuffle by GCV{}) \
                 and the test R² of what it chose, so selecting the {what} is paid for, as \
                 often as it happens and no more; p = (1 + #null ≥ observed) / (1 + shuffles)",
                if loo { "; per fold, pooled over folds" } else { "" }
            ),
                n_permutations: b_n,
                control_task_r2: control_r2,
                selectivity: control_r2.map(|c| r2_fitted - c),
                random_init_r2: random_r2,
                gain_over_names: beside_names.zip(ngram_r2).map(|(b, n)| b - n),
                gain_p_value,
                by_fold,
            };
        (selected, orig)
    }

    /// Per group of the breakdown column: test figures of the selected probe (`sel_pred`,
    /// pooled test rows, original units) and the training rows it saw from that group.
    fn group_breakdown(
        &self,
        pooled: &[usize],
        sel_pred: &[f64],
        entities: &[EntityPrediction],
    ) -> Vec<GroupReport> {
        let Some(vals) = &self.group_values else {
            return vec![];
        };
        let k_orig = self.target_names.len();
        let mut test_rows: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (pos, &i) in pooled.iter().enumerate() {
            test_rows.entry(vals[i].as_str()).or_default().push(pos);
        }
        // Each test entity's proximity error among every entity's prediction (training rows
        // in-sample, as Gurnee & Tegmark's block hold-out): a held-out block compared only with
        // itself cannot say whether it lands in the right place on the whole map.
        let proximity: Option<Vec<f64>> = match self.kind {
            TargetKind::Space => {
                let rows: Vec<usize> = entities.iter().map(|e| e.index).collect();
                let preds: Vec<f64> = entities.iter().flat_map(|e| e.predicted.clone()).collect();
                let (t, p) = self.places(&rows, &preds);
                let at: BTreeMap<usize, usize> =
                    rows.iter().enumerate().map(|(q, &i)| (i, q)).collect();
                let wanted: Vec<usize> = pooled.iter().filter_map(|i| at.get(i).copied()).collect();
                (wanted.len() == pooled.len())
                    .then(|| metrics::proximity_errors_of(&t, &p, &wanted).ok())
                    .flatten()
            }
            TargetKind::Time => None,
        };
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
                    .flat_map(|&p| sel_pred[p * k_orig..(p + 1) * k_orig].to_vec())
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
                let proximity_error = proximity
                    .as_ref()
                    .filter(|_| !pos.is_empty())
                    .and_then(|e| fin(pos.iter().map(|&q| e[q]).sum::<f64>() / pos.len() as f64));
                GroupReport {
                    group: g.to_string(),
                    n_train,
                    n_test: rows.len(),
                    r2_test: r2,
                    proximity_error,
                    km_mean: km,
                    years_mae: yrs,
                }
            })
            .collect()
    }

    /// Every entity's prediction by the selected probe, in dataset order: test rows from
    /// `sel_pred`; with one training set, training rows in-sample at the chosen layer too.
    fn entities(
        &self,
        layers: &[LayerOutcome],
        chosen: &[usize],
        sel_pred: &[f64],
    ) -> Vec<EntityPrediction> {
        let k_orig = self.target_names.len();
        let mut entities = Vec::with_capacity(self.names.len());
        if self.folds.len() == 1 {
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
                    &sel_pred[p * k_orig..(p + 1) * k_orig],
                ));
            }
            start += f.test.len();
        }
        entities.sort_by_key(|e| e.index);
        entities
    }

    /// Every layer's predictions for the map (latitude clamped, longitude wrapped): the pooled
    /// test rows, and with one training set the training rows in-sample.
    fn layer_predictions(
        &self,
        layers: &[LayerOutcome],
        pooled: &[usize],
        layer_preds: &[Vec<f64>],
    ) -> LayerPredictions {
        let k_orig = self.target_names.len();
        let loo = self.folds.len() > 1;
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
        LayerPredictions {
            entities: pooled.to_vec(),
            predicted: layer_preds.iter().map(|v| rows_of(v)).collect(),
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
        }
    }

    fn score_r2_only(&self, rows: &[usize], pred: &[f64]) -> f64 {
        let k = self.target_names.len();
        let truth: Vec<f64> = rows
            .iter()
            .flat_map(|&i| self.original[i * k..(i + 1) * k].to_vec())
            .collect();
        metrics::r2_score(&truth, pred, k).unwrap_or(f64::NAN)
    }

    /// Space targets: the true places of `rows` and the places `pred` (latitude, longitude per
    /// row, the probe's raw output) puts them, clamped and wrapped onto the globe.
    fn places(&self, rows: &[usize], pred: &[f64]) -> (Vec<LatLon>, Vec<LatLon>) {
        let truth = rows
            .iter()
            .map(|&i| LatLon {
                lat: self.original[2 * i],
                lon: self.original[2 * i + 1],
            })
            .collect();
        let placed = (0..rows.len())
            .map(|q| to_latlon(pred[2 * q], pred[2 * q + 1]))
            .collect();
        (truth, placed)
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
            flags: self.flags[i].iter().map(|f| f.to_string()).collect(),
            surprisal: self
                .coverage_values
                .iter()
                .find(|(c, _)| c == SURPRISAL)
                .and_then(|(_, v)| v[i]),
        }
    }

    /// Per name flag with at least one entity: the selected probe's figures on the flagged
    /// test entities (`sel_pred`, pooled test rows, original units) and on the others, and each
    /// baseline's (`baselines`: random-init, n-grams, nearest names, pooled like `sel_pred`)
    /// on the flagged ones; `errors` are the pooled rows' errors (km or years).
    fn flag_reports(
        &self,
        pooled: &[usize],
        sel_pred: &[f64],
        errors: &[f64],
        baselines: &[Option<&[f64]>; 3],
    ) -> Vec<FlagReport> {
        let k = self.target_names.len();
        let pick = |pred: &[f64], pos: &[usize]| -> Vec<f64> {
            pos.iter()
                .flat_map(|&q| pred[q * k..(q + 1) * k].to_vec())
                .collect()
        };
        let r2_of = |pred: &[f64], pos: &[usize]| {
            let rows: Vec<usize> = pos.iter().map(|&q| pooled[q]).collect();
            (rows.len() >= 2)
                .then(|| fin(self.score_r2_only(&rows, &pick(pred, pos))))
                .flatten()
        };
        let all_pos: Vec<usize> = (0..pooled.len()).collect();
        let total_sq: f64 = errors.iter().map(|e| e * e).sum();
        FLAGS
            .iter()
            .filter_map(|&(flag, description)| {
                let n = self.flags.iter().filter(|f| f.contains(&flag)).count();
                if n == 0 {
                    return None;
                }
                let (pos, others): (Vec<usize>, Vec<usize>) = all_pos
                    .iter()
                    .partition(|&&q| self.flags[pooled[q]].contains(&flag));
                let sq: f64 = pos.iter().map(|&q| errors[q] * errors[q]).sum();
                let base = |b: Option<&[f64]>| b.and_then(|p| r2_of(p, &pos));
                Some(FlagReport {
                    flag: flag.into(),
                    description: description.into(),
                    n,
                    n_test: pos.len(),
                    r2_test: r2_of(sel_pred, &pos),
                    r2_test_others: r2_of(sel_pred, &others),
                    error_test: (!pos.is_empty())
                        .then(|| pos.iter().map(|&q| errors[q]).sum::<f64>() / pos.len() as f64),
                    share_of_error: (total_sq > 0.0).then(|| sq / total_sq),
                    random_init_r2_test: base(baselines[0]),
                    ngram_r2_test: base(baselines[1]),
                    knn_r2_test: base(baselines[2]),
                })
            })
            .collect()
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
        put("selected.p_value", "each shuffle of the training targets re-runs the selection as on the real targets (every candidate refitted from its decomposition; validation R² inside training; the candidate that shuffle's best validation R² names) and contributes the test R² of what it chose, so the null has the distribution the observed statistic has when nothing is there; the shuffles choose alpha by GCV (one projection for all alphas) where the real fit uses leave-one-out, and the observed statistic is scored with its GCV alpha too; the validation R² of a shuffle comes from the whole training set's hat matrix (a fold's held-out residuals are (I − H_ff)⁻¹ r_f), not from refits".into());
        put("p_value_uncorrected", "a layer's own permutation p-value; NOT corrected for choosing the best layer — use selected.p_value".into());
        put(
            "km",
            "great-circle errors with predicted latitude clamped to ±90° and longitude wrapped"
                .into(),
        );
        put("proximity_error", "for each test entity, the fraction of the other test entities whose predictions lie closer to its true place than its own prediction (Gurnee & Tegmark); 0 is perfect".into());
        put("by_group.proximity_error", "as proximity_error, but each test entity of the group is measured against every entity's prediction (training rows in-sample), so a held-out block is placed on the whole map".into());
        put("coverage", "per 'how well known' column of the dataset (population, page_views, …): Spearman's rho of the test entities' errors at the selected layer with the column, a 95% interval by Fisher's z with standard error sqrt(1.06/(n-3)), and per group the column's median and the mean error; test rows only".into());
        put("name_flags", "per flag of the names' form (qualifier, number or code, contains a group or country name, non-ASCII, homonym): the selected probe's test R² on the flagged test entities and on the others, their mean error and share of the test squared error, and the random-init model, the n-grams and the nearest names on the same flagged test entities".into());
        put("learning", format!("at the selected layer, with one training set: learning curves (test R² of probes fitted on nested seeded subsets of the training rows, {:?} of them) and the online code length of the training targets (Voita & Titov 2020): blocks ending at {:?} of the training rows in a seeded order, the first sent with a uniform code over the targets' range, each later one with a Gaussian code around the prediction of a ridge fitted on the blocks before it, variance its leave-one-out squared error there; z-scored targets at precision {}; compression = uniform bits / online bits; training rows only", learning::CURVE_FRACTIONS, learning::CODE_BLOCK_FRACTIONS, learning::CODE_PRECISION));
        if self.folds.len() > 1 {
            put("leave_one_group_out", format!("each group of '{}' is held out in turn; every test figure pools the held-out predictions, each made by a probe that never saw the entity's group; each fold chooses its own layer", self.split_column.clone().unwrap_or_default()));
        }
        m
    }
}

/// Of `n` candidates, the one most folds chose (`chosen`, one per fold; ties → the lower).
fn most_chosen(chosen: &[usize], n: usize) -> usize {
    let mut counts = vec![0usize; n];
    chosen.iter().for_each(|&c| counts[c] += 1);
    (0..n)
        .max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a)))
        .unwrap_or(0)
}

/// The spread of a sweep's held-out R² across its templates: per layer, and of each
/// template's own choice.
fn prompt_spread(prompts: &[PromptReport]) -> PromptSpread {
    let finite_min =
        |v: &mut dyn Iterator<Item = f64>| v.filter(|x| x.is_finite()).fold(f64::NAN, f64::min);
    let finite_max =
        |v: &mut dyn Iterator<Item = f64>| v.filter(|x| x.is_finite()).fold(f64::NAN, f64::max);
    let by_layer = (0..prompts[0].layers.len())
        .map(|l| LayerSpread {
            layer: prompts[0].layers[l].layer,
            r2_test_min: finite_min(&mut prompts.iter().map(|p| p.layers[l].r2_test)),
            r2_test_max: finite_max(&mut prompts.iter().map(|p| p.layers[l].r2_test)),
        })
        .collect();
    let by_r2 = |a: &&PromptReport, b: &&PromptReport| a.r2_test.total_cmp(&b.r2_test);
    let lo = prompts
        .iter()
        .filter(|p| p.r2_test.is_finite())
        .min_by(by_r2);
    let hi = prompts
        .iter()
        .filter(|p| p.r2_test.is_finite())
        .max_by(by_r2);
    PromptSpread {
        by_layer,
        r2_test_min: lo.map_or(f64::NAN, |p| p.r2_test),
        r2_test_max: hi.map_or(f64::NAN, |p| p.r2_test),
        template_min: lo.map(|p| p.template.clone()).unwrap_or_default(),
        template_max: hi.map(|p| p.template.clone()).unwrap_or_default(),
    }
}

/// The permutation null pooled over folds: each fold's shuffled-target test SSE divided by the
/// pooled test set's SST (fitted units), so that a pooled R² under shuffle b (0 = the real
/// targets) is 1 − Σ_folds Σ_t SSE / SST_t / k.
struct PooledNull {
    sst: Vec<f64>,
}

impl PooledNull {
    fn new(analysis: &Analysis, pooled: &[usize]) -> Self {
        let k_fit = analysis.fitted_names.len();
        let sst = (0..k_fit)
            .map(|t| {
                let vals: Vec<f64> = pooled
                    .iter()
                    .map(|&i| analysis.fitted[i * k_fit + t])
                    .collect();
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                vals.iter().map(|v| (v - m) * (v - m)).sum()
            })
            .collect();
        Self { sst }
    }

    /// Σ_t SSE_t / SST_t of one fold's `pick`ed predictor under shuffle `b`.
    fn error(&self, fold: &FoldLayer, b: usize, pick: Pick) -> f64 {
        let k = self.sst.len();
        let sse = (pick.sse)(fold);
        (0..k).map(|t| sse[b * k + t] / self.sst[t]).sum::<f64>()
    }

    /// Pooled test R² under shuffle `b` of the folds' predictors (one per fold, in fold order).
    fn r2<'a>(&self, folds: impl Iterator<Item = &'a FoldLayer>, b: usize, pick: Pick) -> f64 {
        1.0 - folds.map(|f| self.error(f, b, pick)).sum::<f64>() / self.sst.len() as f64
    }

    /// The pooled test R² under shuffle `b` of the candidates that shuffle's own validation
    /// R² chooses in each fold, by the rule of [`Analysis::choose_layers`] (the best; ties →
    /// the first; NaN never wins): the selection re-run on the shuffled targets.
    fn selected_r2(&self, candidates: &[LayerOutcome], b: usize, pick: Pick) -> f64 {
        let n_folds = candidates[0].folds.len();
        let error: f64 = (0..n_folds)
            .map(|g| {
                let val = |c: usize| (pick.validation)(&candidates[c].folds[g])[b];
                let mut best = 0;
                for c in 1..candidates.len() {
                    let (v, bv) = (val(c), val(best));
                    if v > bv || (bv.is_nan() && !v.is_nan()) {
                        best = c;
                    }
                }
                self.error(&candidates[best].folds[g], b, pick)
            })
            .sum();
        1.0 - error / self.sst.len() as f64
    }
}

/// Which permutation null of a fold's layer: the probe's, or the probe beside the names'; its
/// test SSE and the validation R² that chooses the layer under each shuffle.
#[derive(Clone, Copy)]
struct Pick {
    sse: fn(&FoldLayer) -> &[f64],
    validation: fn(&FoldLayer) -> &[f64],
}
const PROBE: Pick = Pick {
    sse: |f| &f.null_sse,
    validation: |f| &f.null_validation,
};
const BESIDE_NAMES: Pick = Pick {
    sse: |f| &f.beside_names_null_sse,
    validation: |f| &f.beside_names_null_validation,
};

/// The folds' prediction matrices (`pick`, n_rows × k each) stacked row-major in fold order;
/// None when a fold has none.
fn stack_folds<'a>(
    folds: impl IntoIterator<Item = &'a FoldLayer>,
    k: usize,
    pick: impl Fn(&'a FoldLayer) -> Option<&'a DMatrix<f64>>,
) -> Option<Vec<f64>> {
    let mut v = Vec::new();
    for f in folds {
        let m = pick(f)?;
        for i in 0..m.nrows() {
            v.extend((0..k).map(|t| m[(i, t)]));
        }
    }
    Some(v)
}

/// A learner's curve and code, or neither.
fn split_pair(v: Option<(Vec<f64>, Option<CodeLength>)>) -> (Option<Vec<f64>>, Option<CodeLength>) {
    match v {
        Some((curve, code)) => (Some(curve), code),
        None => (None, None),
    }
}

/// Row-major n × k values as a matrix.
fn to_matrix(v: &[f64], k: usize) -> DMatrix<f64> {
    DMatrix::from_fn(v.len() / k, k, |i, t| v[i * k + t])
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
