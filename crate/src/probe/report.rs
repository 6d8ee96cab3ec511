//! What the analysis is asked and what it finds: the serde types of the options, the report
//! (report.json) and predictions.csv. No computation beyond formatting lives here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::TargetKind;
use crate::extract::Pooling;
use crate::probe::ridge::default_alphas;
use crate::{Error, Result};

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
/// the gain over the names, 1–20 nearest names, learning curves and online code, neuron check
/// on, per-layer test predictions stored.
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
    /// Hash buckets of the character 1–3-gram baseline (cost grows as buckets³); 0 skips it
    /// and the gain over the names.
    pub ngram_buckets: usize,
    /// Fit each layer's probe beside the n-gram baseline too, for the R² the activations add
    /// over the names' characters (`LayerControls::gain_over_names`).
    pub gain_over_names: bool,
    /// At the selected layer, the learning curve and the online code length
    /// (`Report::learning`); off skips both.
    #[serde(default = "yes")]
    pub learning: bool,
    /// Neighbour counts the nearest-names baseline (`Baselines::knn_r2_test`) chooses from by
    /// leave-one-out on the training names; empty skips it.
    pub knn_neighbours: Vec<usize>,
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
            gain_over_names: true,
            knn_neighbours: vec![1, 2, 3, 5, 10, 20],
            learning: true,
            neuron_check: true,
            layer_predictions: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// What the report says about the model and prompt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportContext {
    pub model_name: String,
    pub model_sha256: String,
    pub prompt_template: String,
    /// Which of the name's tokens gave each vector.
    pub pooling: Pooling,
    pub dataset_name: String,
}

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

impl SplitInfo {
    /// The split that made this one (to refit a run's probes exactly).
    pub fn spec(&self) -> Result<SplitSpec> {
        match self.kind.as_str() {
            "random" => Ok(SplitSpec::Random {
                test_fraction: self.test_fraction.unwrap_or(0.2),
                seed: self.seed.unwrap_or(0),
            }),
            "column" => Ok(SplitSpec::Column),
            "group" | "leave_one_group_out" => Ok(SplitSpec::Group {
                column: self.column.clone().unwrap_or_default(),
                held_out: self.held_out.clone(),
            }),
            other => Err(Error::Input(format!(
                "a report with an unknown split kind '{other}'"
            ))),
        }
    }
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
    /// Test R² of the n-gram baseline plus a probe of this layer fitted to what the n-grams
    /// leave unexplained (their leave-one-out residuals on the training rows).
    #[serde(default)]
    pub r2_beside_names: Option<f64>,
    /// `r2_beside_names − baselines.ngram_r2_test`: what the activations add over the string.
    #[serde(default)]
    pub gain_over_names: Option<f64>,
    /// This layer's permutation p-value for the gain (the residuals shuffled over the training
    /// rows), NOT corrected for choosing the layer: see `selected.gain_p_value`.
    #[serde(default)]
    pub gain_p_value_uncorrected: Option<f64>,
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
    /// The template this fold chose (a prompt sweep only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
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
    /// Permutation p-value after choosing the layer, `(1 + #{null ≥ observed}) / (1 +
    /// shuffles)`: each shuffle re-runs the choice on its targets (`p_value_method`).
    pub p_value: Option<f64>,
    /// The observed statistic the p-value tests (see `p_value_method`).
    pub p_statistic: Option<f64>,
    pub p_value_method: String,
    pub n_permutations: usize,
    pub control_task_r2: Option<f64>,
    pub selectivity: Option<f64>,
    pub random_init_r2: Option<f64>,
    /// The selected layer's gain over the names (see `LayerControls::gain_over_names`).
    #[serde(default)]
    pub gain_over_names: Option<f64>,
    /// Its permutation p-value after choosing the layer, as `p_value` but with the names'
    /// residuals shuffled: each shuffle chooses the layer on the n-gram part + its residuals
    /// (validation R², as the real targets) and gives the gain at the layer it chose.
    #[serde(default)]
    pub gain_p_value: Option<f64>,
    /// Each fold's own choice (one entry unless leave-one-group-out).
    pub by_fold: Vec<FoldSelection>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Ridge on hashed character 1–3-grams of the name alone (no model), test R².
    pub ngram_r2_test: Option<f64>,
    pub ngram_buckets: usize,
    /// Each test name predicted by the mean target of its `knn_neighbours` most similar
    /// training names (tf-idf cosine of character 1–3-gram counts), test R².
    #[serde(default)]
    pub knn_r2_test: Option<f64>,
    /// The k chosen by leave-one-out on the training names (median over folds).
    #[serde(default)]
    pub knn_neighbours: Option<usize>,
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
    /// R² within the group's test rows (null under two rows). Inside one region it compares
    /// the probe with that region's own mean, so it is often negative; the page shows the
    /// errors instead.
    pub r2_test: Option<f64>,
    /// Mean proximity error of the group's test entities, each measured against every
    /// entity's prediction (training rows in-sample), as Gurnee & Tegmark read a block
    /// hold-out: does the block land in the right place on the whole map (space targets; null
    /// for time or an empty group).
    pub proximity_error: Option<f64>,
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

/// The length of the online (prequential) code of the training targets (Voita & Titov 2020),
/// with a Gaussian code for regression; see `probe::learning`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CodeLength {
    /// Bits to send every training target block by block, each block predicted by a probe
    /// fitted on the blocks before it.
    pub online_bits: f64,
    /// Bits to send them with a uniform code over their range at the same precision.
    pub uniform_bits: f64,
    /// `uniform_bits / online_bits`: above 1, the probe compresses the targets.
    pub compression: f64,
}

/// How much data the probe needs at the selected layer (one training set only: null under
/// leave-one-group-out).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearningReport {
    pub layer: usize,
    /// Training rows of each point of the curves (nested subsets of one seeded order).
    pub n_train: Vec<usize>,
    /// Test R² of the probe fitted on `n_train[i]` rows (alpha by leave-one-out on them); the
    /// last, on every training row, is the selected probe's own `r2_test`.
    pub r2_test: Vec<f64>,
    /// The same on the random-init model's activations at the same layer.
    pub random_init_r2_test: Option<Vec<f64>>,
    /// The same on the names' character n-grams.
    pub ngram_r2_test: Option<Vec<f64>>,
    /// Where the online code's blocks end (training rows, in the same seeded order).
    pub code_block_ends: Vec<usize>,
    /// Precision of the code, in z-scored target units.
    pub code_precision: f64,
    /// The online code of the training targets for the probe (null when there are too few
    /// training rows for two blocks), the random-init model and the n-grams.
    pub code: Option<CodeLength>,
    pub random_init_code: Option<CodeLength>,
    pub ngram_code: Option<CodeLength>,
}

/// The selected probe on the test entities whose names carry one flag (see `probe::flags`),
/// beside the baselines on the same entities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlagReport {
    /// `qualifier`, `code`, `names_a_place`, `non_ascii` or `homonym`.
    pub flag: String,
    /// What the flagged names are, e.g. "are numbers or codes".
    pub description: String,
    /// Flagged entities, all and among the (pooled) test rows.
    pub n: usize,
    pub n_test: usize,
    /// Test R² of the selected probe on the flagged test entities (null under two), and on the
    /// other test entities.
    pub r2_test: Option<f64>,
    pub r2_test_others: Option<f64>,
    /// Mean great-circle km or years of the flagged test entities.
    pub error_test: Option<f64>,
    /// Their share of the test set's squared error (km² or years²).
    pub share_of_error: Option<f64>,
    /// The random-init model at the same layer, the n-grams and the nearest names on the same
    /// flagged test entities.
    pub random_init_r2_test: Option<f64>,
    pub ngram_r2_test: Option<f64>,
    pub knn_r2_test: Option<f64>,
}

/// Whom the map serves: the selected probe's held-out error against a "how well known" column
/// (see `probe::coverage`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoverageReport {
    /// The dataset column, e.g. `population`.
    pub column: String,
    /// Test entities with a value.
    pub n_test: usize,
    /// Spearman's ρ of the test entities' errors (km or years) with the column: negative when
    /// better-known entities are placed better.
    pub spearman: f64,
    /// Its 95% interval (Fisher's z, standard error √(1.06 / (n − 3))).
    pub ci95: [f64; 2],
    /// Per group of the breakdown column: the column's median and the mean error there.
    pub by_group: Vec<GroupCoverage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupCoverage {
    pub group: String,
    pub n_test: usize,
    /// The column's median and mean over the group's test entities.
    pub median: f64,
    pub mean: f64,
    pub mean_error: f64,
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
    /// What its name gives away (`probe::flags`): `qualifier`, `code`, `names_a_place`,
    /// `non_ascii`, `homonym`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// The model's surprisal of the name inside the prompt (nats per token), when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surprisal: Option<f64>,
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
    /// Which of the name's tokens gave each vector (`last` or `mean`).
    #[serde(default)]
    pub pooling: Pooling,
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
    /// Per "how well known" column of the dataset (population, page views…): the held-out
    /// error against it.
    #[serde(default)]
    pub coverage: Vec<CoverageReport>,
    /// Per name flag with at least one entity: the probe and the baselines on those entities.
    #[serde(default)]
    pub name_flags: Vec<FlagReport>,
    /// Learning curves and online code length at the selected layer.
    #[serde(default)]
    pub learning: Option<LearningReport>,
    /// The causal test (`probelab steer`, `run --causal`, the page's "Does the model use it?").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causal: Option<CausalReport>,
    /// A prompt sweep's templates, each with its own layer curve; empty for one prompt. The
    /// report's `prompt`, `layers` and `selected` are the chosen template's, and
    /// `selected.p_value` pays for choosing among every template × layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<PromptReport>,
    /// How far the prompt alone moves the held-out scores (a sweep only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_spread: Option<PromptSpread>,
    /// The analysis plan, its hash, and whether it is the first scored on this test set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::probe::preregistration::PlanRecord>,
    /// A random split re-drawn over other seeds: how far the split alone moves the selected
    /// layer and its test R².
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_spread: Option<SeedSpread>,
}

/// The headline's choice re-run on random splits drawn with other seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedSpread {
    /// Each re-drawn split: its seed, the layer chosen on it and that layer's test R².
    pub seeds: Vec<SeedRun>,
    pub layer_min: usize,
    pub layer_max: usize,
    pub r2_test_min: f64,
    pub r2_test_median: f64,
    pub r2_test_max: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    pub seed: u64,
    pub layer: usize,
    /// The chosen template, for a prompt sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    pub r2_test: f64,
}

impl SeedSpread {
    /// The spread of `seeds` (None when empty).
    pub fn of(seeds: Vec<SeedRun>) -> Option<SeedSpread> {
        let layers = seeds.iter().map(|s| s.layer);
        let (layer_min, layer_max) = (layers.clone().min()?, layers.max()?);
        let mut r2: Vec<f64> = seeds.iter().map(|s| s.r2_test).collect();
        r2.sort_by(f64::total_cmp);
        let m = r2.len();
        let median = if m % 2 == 1 {
            r2[m / 2]
        } else {
            (r2[m / 2 - 1] + r2[m / 2]) / 2.0
        };
        Some(SeedSpread {
            layer_min,
            layer_max,
            r2_test_min: r2[0],
            r2_test_median: median,
            r2_test_max: r2[m - 1],
            seeds,
        })
    }

    /// What the summary and the verdict card say.
    pub fn sentence(&self) -> String {
        let layers = if self.layer_min == self.layer_max {
            format!("layer {} every time", self.layer_min)
        } else {
            format!("layers {}–{}", self.layer_min, self.layer_max)
        };
        format!(
            "re-drawn over {} other split seeds: test R² {:.2}–{:.2} (median {:.2}), {layers}",
            self.seeds.len(),
            self.r2_test_min,
            self.r2_test_max,
            self.r2_test_median
        )
    }
}

/// One template of a prompt sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptReport {
    pub template: String,
    /// Whether the sweep chose it (by validation inside training, as the layer).
    pub selected: bool,
    /// The layer this template alone chooses by the same rule, its validation R², and its
    /// held-out R² there: what a run with only this template would report (its p-value not
    /// paying for the choice of template).
    pub layer: usize,
    pub r2_validation: f64,
    pub r2_test: f64,
    /// Its layer curve, as the report's `layers`.
    pub layers: Vec<LayerReport>,
}

/// The spread of held-out R² across a sweep's templates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptSpread {
    /// Per layer, the lowest and highest test R² of any template (the layer chart's band).
    pub by_layer: Vec<LayerSpread>,
    /// The range of `prompts[].r2_test`: how far the choice of template alone moves the
    /// headline, each template with its own layer.
    pub r2_test_min: f64,
    pub r2_test_max: f64,
    pub template_min: String,
    pub template_max: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSpread {
    pub layer: usize,
    pub r2_test_min: f64,
    pub r2_test_max: f64,
}

// =============================================================================================
// The causal test (computed in crate::causal)
// =============================================================================================

/// An f64 that JSON holds as null when it is not a number (serde_json writes NaN so), read back
/// as NaN: a causal figure with nothing to average over stays readable.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Does the model use the probe's direction? Edits along it at one layer, read through the
/// model's own answer to a question, against null edits of the same size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalReport {
    /// The edited layer (0 = embedding output, i = after block i).
    pub layer: usize,
    /// Every edited layer, each along its own probe: `layer` alone, or a window after it.
    /// (Reports written before windows existed edited `layer` alone.)
    #[serde(default)]
    pub edited_layers: Vec<usize>,
    /// `last` (the name's last token) or `all` (every token of the name): where edits land.
    pub positions: String,
    pub readout: String,
    /// The column whose values are the answers, and the candidates scored.
    pub answer_column: String,
    pub candidates: Vec<String>,
    /// Each candidate's tokens as the vocabulary spells them, separated by spaces.
    pub candidate_tokens: Vec<String>,
    /// Edited entities (the test rows, or the first `max_entities` of them).
    pub n_entities: usize,
    pub baseline: CausalBaseline,
    /// One per probe target (latitude, longitude; or year).
    pub axes: Vec<CausalAxis>,
    pub erasure: Erasure,
    pub side_effects: SideEffects,
    /// Per edited entity: where its answer sits before and after the largest edits.
    pub entities: Vec<CausalEntity>,
    /// How each figure is computed.
    pub notes: BTreeMap<String, String>,
}

impl CausalReport {
    /// "layer 13", or "layers 13–15" for a window.
    pub fn layers_text(&self) -> String {
        match self.edited_layers.as_slice() {
            [first, .., last] => format!("layers {first}–{last}"),
            _ => format!("layer {}", self.layer),
        }
    }
}

/// The model's answers before any edit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalBaseline {
    /// Share of edited entities whose most probable candidate is their true answer.
    #[serde(deserialize_with = "null_as_nan")]
    pub accuracy: f64,
    /// The rate to beat: the larger of 1 / candidates and the commonest true answer's share.
    #[serde(deserialize_with = "null_as_nan")]
    pub chance: f64,
    /// One-sided binomial p of the accuracy against `chance`.
    #[serde(deserialize_with = "null_as_nan")]
    pub p_value: f64,
    /// Whether the model answers the question at all (p < 0.05); if not, the edits say nothing.
    pub answerable: bool,
    /// Mean probability of the true answer.
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_p_true: f64,
}

/// Edits along one target's probe direction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalAxis {
    pub target: String,
    /// Norm of the edit that moves this target's reading by one unit (degree or year) and the
    /// other targets' by none.
    #[serde(deserialize_with = "null_as_nan")]
    pub norm_per_unit: f64,
    /// The largest edit's norm over the mean norm of the residual stream at the edited tokens.
    #[serde(default, deserialize_with = "null_as_nan")]
    pub largest_edit_relative_norm: f64,
    pub doses: Vec<DoseEffect>,
    /// Least-squares slope of the answer's change on the dose, over every (entity, dose), and
    /// the Pearson correlation of the two.
    #[serde(deserialize_with = "null_as_nan")]
    pub slope: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub correlation: f64,
    /// `(mean change at +D − mean change at −D) / 2D` for the largest dose D: the statistic
    /// the nulls are compared on.
    #[serde(deserialize_with = "null_as_nan")]
    pub effect: f64,
    /// The same statistic for edits of the same norm along null directions.
    pub null_random: Vec<f64>,
    pub null_orthogonal: Vec<f64>,
    pub null_control_task: Option<f64>,
    /// `(1 + #nulls ≥ effect) / (1 + #nulls)`, one-sided, over all three null families.
    #[serde(deserialize_with = "null_as_nan")]
    pub p_value: f64,
}

/// The answer's response to one dose of edit along one axis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DoseEffect {
    /// Units asked for (degrees or years).
    #[serde(deserialize_with = "null_as_nan")]
    pub dose: f64,
    /// Mean change of the answer's expected position on this axis, and its 95% interval.
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_change: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub ci_low: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub ci_high: f64,
    /// Mean change of the true answer's probability.
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_change_p_true: f64,
}

/// Projecting the probe's directions out of the residual stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Erasure {
    /// Mean drop of the true answer's probability.
    #[serde(deserialize_with = "null_as_nan")]
    pub drop_p_true: f64,
    /// The same for random subspaces of the same dimension.
    pub null_drops: Vec<f64>,
    /// `(1 + #null drops ≥ drop) / (1 + #nulls)`.
    #[serde(deserialize_with = "null_as_nan")]
    pub p_value: f64,
}

/// What the same edits do to completions that have nothing to do with place or time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SideEffects {
    pub n_prompts: usize,
    /// Mean |change| of the completions' mean log-probability per token (nats), under the
    /// probe's largest edits and under the random null edits of the same norm.
    #[serde(deserialize_with = "null_as_nan")]
    pub probe_mean_abs_change: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub random_mean_abs_change: f64,
}

/// One edited entity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalEntity {
    pub name: String,
    pub truth: Vec<f64>,
    pub true_answer: Option<String>,
    /// The most probable candidate before any edit.
    pub answer: String,
    pub p_true: Option<f64>,
    /// The answer's expected position before any edit, and after the edits of −D and +D on
    /// each axis (`[axis][0 = −D, 1 = +D]`).
    pub expected: Vec<f64>,
    pub moved: Vec<[Vec<f64>; 2]>,
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
