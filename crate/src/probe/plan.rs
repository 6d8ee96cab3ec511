//! The plan of an analysis: everything that does not depend on the layer. The targets as
//! given and as fitted, the train/test split(s), the K validation folds inside each training
//! set, the z-scored targets, the shuffles of the permutation null and the control task. Each
//! step checks its own inputs, so a bad dataset or option fails before any layer is fitted.
// Index loops here follow the formulas' subscripts (targets t, rows i).
#![allow(clippy::needless_range_loop)]

use std::collections::{BTreeMap, BTreeSet};

use nalgebra::DMatrix;

use crate::data::{Dataset, TargetKind};
use crate::probe::input_err;
use crate::probe::report::{AnalysisOptions, FoldInfo, SpaceTargets, SplitInfo, SplitSpec};
use crate::probe::split::{leave_one_group_out, Split, SplitMix64};
use crate::{Error, Result};

/// A seed for one use (`tag`) derived from the analysis's seed.
pub(super) fn mix_seed(seed: u64, tag: u64) -> u64 {
    SplitMix64::new(seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

pub(super) fn mean_std(v: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let n = v.clone().count().max(1) as f64;
    let m = v.clone().sum::<f64>() / n;
    let var = v.map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

/// The dataset's group columns for an error message: "a, b", or "(none)".
fn group_columns(dataset: &Dataset) -> String {
    if dataset.groups.is_empty() {
        return "(none)".into();
    }
    let names: Vec<&str> = dataset.groups.keys().map(String::as_str).collect();
    names.join(", ")
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

#[derive(Clone, Debug)]
pub(super) struct Scaled {
    pub(super) mean: Vec<f64>,
    pub(super) scale: Vec<f64>,
    /// Training rows (fold order), z-scored.
    pub(super) train: DMatrix<f64>,
    /// Test rows, z-scored with the training statistics.
    pub(super) test: DMatrix<f64>,
}

impl Scaled {
    pub(super) fn new(
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

    pub(super) fn unscale(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        DMatrix::from_fn(z.nrows(), z.ncols(), |i, t| {
            z[(i, t)] * self.scale[t] + self.mean[t]
        })
    }
}

#[derive(Clone, Debug)]
pub(super) struct FoldPlan {
    pub(super) held_out: Option<String>,
    /// Training entities, validation folds contiguous.
    pub(super) train: Vec<usize>,
    pub(super) val: Vec<(usize, usize)>,
    pub(super) test: Vec<usize>,
    pub(super) y: Scaled,
    pub(super) control: Option<Scaled>,
    pub(super) perms: Vec<Vec<usize>>,
}

/// The dataset is non-empty, the activations have dimensions, and the options are usable.
pub(super) fn check_options(
    dataset: &Dataset,
    opts: &AnalysisOptions,
    d_model: usize,
) -> Result<()> {
    if dataset.is_empty() {
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
    if opts.knn_neighbours.contains(&0) {
        return Err(input_err(format!(
            "knn_neighbours must list neighbour counts of at least 1, got {:?}",
            opts.knn_neighbours
        )));
    }
    if opts.alphas.is_empty() || opts.alphas.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return Err(input_err(format!(
            "ridge alphas must be a non-empty list of finite values > 0, got {:?}",
            opts.alphas
        )));
    }
    Ok(())
}

/// The targets as the dataset gives them (`original`: latitude/longitude or year) and as the
/// probe fits them (`fitted`: the same, or 3-D unit-sphere coordinates), both n × k row-major.
pub(super) struct Targets {
    pub(super) kind: TargetKind,
    pub(super) names: Vec<String>,
    pub(super) fitted_names: Vec<String>,
    pub(super) original: Vec<f64>,
    pub(super) fitted: Vec<f64>,
}

impl Targets {
    fn len(&self) -> usize {
        self.original.len() / self.names.len()
    }

    pub(super) fn new(dataset: &Dataset, space_targets: SpaceTargets) -> Result<Self> {
        let n = dataset.len();
        let kind = dataset.kind;
        let names: Vec<String> = kind.target_names().iter().map(|s| s.to_string()).collect();
        let k_orig = names.len();
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
                    names.join(", ")
                )));
            }
            original.extend_from_slice(row);
        }
        let sphere = kind == TargetKind::Space && space_targets == SpaceTargets::Sphere;
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
            (original.clone(), names.clone())
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
        Ok(Self {
            kind,
            names,
            fitted_names,
            original,
            fitted,
        })
    }
}

/// The train/test split(s) the spec asks for: one, or one per held-out group (leave one group
/// out, each labelled with its group). Also returns the report's description of the split and
/// the column it holds out by.
#[allow(clippy::type_complexity)]
pub(super) fn plan_splits(
    dataset: &Dataset,
    split: &SplitSpec,
    validation_folds: usize,
) -> Result<(Vec<(Option<String>, Split)>, SplitInfo, Option<String>)> {
    let n = dataset.len();
    let info = |kind: &str, s: Option<&Split>| SplitInfo {
        kind: kind.into(),
        n_train: s.map_or(n, |s| s.train.len()),
        n_test: s.map_or(n, |s| s.test.len()),
        test_fraction: None,
        seed: None,
        column: None,
        held_out: None,
        validation_folds,
        folds: vec![],
    };
    match split {
        SplitSpec::Random {
            test_fraction,
            seed,
        } => {
            let s = Split::random(n, *test_fraction, *seed)?;
            let info = SplitInfo {
                test_fraction: Some(*test_fraction),
                seed: Some(*seed),
                ..info("random", Some(&s))
            };
            Ok((vec![(None, s)], info, None))
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
                column: Some("is_test".into()),
                ..info("column", Some(&s))
            };
            Ok((vec![(None, s)], info, None))
        }
        SplitSpec::Group { column, held_out } => {
            let col = dataset.groups.get(&column.to_lowercase()).ok_or_else(|| {
                Error::Dataset(format!(
                    "dataset '{}' has no column '{column}' to hold out by; its group columns \
                     are: {}",
                    dataset.name,
                    group_columns(dataset)
                ))
            })?;
            let split_column = Some(column.to_lowercase());
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
                        column: split_column.clone(),
                        held_out: Some(g.clone()),
                        ..info("group", Some(&s))
                    };
                    Ok((vec![(Some(g.clone()), s)], info, split_column))
                }
                None => {
                    let folds = leave_one_group_out(col).map_err(|_| {
                        Error::Dataset(format!(
                            "leave-one-group-out needs at least two groups in column \
                             '{column}', found {}",
                            distinct.len()
                        ))
                    })?;
                    let info = SplitInfo {
                        column: split_column.clone(),
                        ..info("leave_one_group_out", None)
                    };
                    let splits = folds
                        .into_iter()
                        .map(|f| (Some(f.group), f.split))
                        .collect();
                    Ok((splits, info, split_column))
                }
            }
        }
    }
}

/// The control task (Hewitt & Liang 2019): one random target per first token, drawn from a
/// Gaussian with the real targets' mean and standard deviation (n × k_fit row-major). None,
/// with a warning, when there are no token ids or every entity has the same first token.
pub(super) fn control_task(
    first_token_ids: &[u32],
    targets: &Targets,
    seed: u64,
    warnings: &mut Vec<String>,
) -> Result<Option<Vec<f64>>> {
    if first_token_ids.is_empty() {
        warnings.push("no first-token ids were given, so the control task was skipped".into());
        return Ok(None);
    }
    let n = targets.len();
    if first_token_ids.len() != n {
        return Err(input_err(format!(
            "{} first-token ids for {n} entities",
            first_token_ids.len()
        )));
    }
    let k_fit = targets.fitted_names.len();
    let fitted = &targets.fitted;
    let types: BTreeSet<u32> = first_token_ids.iter().copied().collect();
    let mut rng = SplitMix64::new(mix_seed(seed, 3));
    let stats: Vec<(f64, f64)> = (0..k_fit)
        .map(|t| mean_std((0..n).map(|i| fitted[i * k_fit + t])))
        .collect();
    let table: BTreeMap<u32, Vec<f64>> = types
        .iter()
        .map(|&tok| {
            let v = stats
                .iter()
                .map(|(m, s)| m + s * rng.std_normal())
                .collect();
            (tok, v)
        })
        .collect();
    if types.len() < 2 {
        warnings.push(
            "every entity has the same first token, so the control task is constant and was \
             skipped"
                .into(),
        );
        return Ok(None);
    }
    Ok(Some(
        first_token_ids
            .iter()
            .flat_map(|tok| table[tok].clone())
            .collect(),
    ))
}

/// Per split: the K validation folds inside its training set, the targets (and control-task
/// targets) z-scored with training statistics, and the shuffles of the permutation null.
/// Records each fold in `info.folds`.
pub(super) fn plan_folds(
    splits: Vec<(Option<String>, Split)>,
    targets: &Targets,
    control: Option<&[f64]>,
    opts: &AnalysisOptions,
    info: &mut SplitInfo,
    warnings: &mut Vec<String>,
) -> Result<Vec<FoldPlan>> {
    let k = opts.validation_folds;
    let k_fit = targets.fitted_names.len();
    let mut folds = Vec::with_capacity(splits.len());
    for (fi, (held_out, s)) in splits.into_iter().enumerate() {
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
        let y = Scaled::new(
            &targets.fitted,
            k_fit,
            &train,
            &s.test,
            &targets.fitted_names,
        )
        .map_err(|e| add_context(e, &where_))?;
        let control_scaled = match control {
            Some(c) => match Scaled::new(c, k_fit, &train, &s.test, &targets.fitted_names) {
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
    Ok(folds)
}

/// The pooled test targets must vary, or R² on them is undefined.
pub(super) fn check_test_targets_vary(folds: &[FoldPlan], targets: &Targets) -> Result<()> {
    let k_orig = targets.names.len();
    let original = &targets.original;
    let pooled: Vec<usize> = folds.iter().flat_map(|f| f.test.iter().copied()).collect();
    for t in 0..k_orig {
        let first = original[pooled[0] * k_orig + t];
        if pooled.iter().all(|&i| original[i * k_orig + t] == first) {
            return Err(input_err(format!(
                "target '{}' is constant ({first}) over the {} test entities; R² on it is \
                 undefined",
                targets.names[t],
                pooled.len()
            )));
        }
    }
    Ok(())
}

/// The column of the per-group breakdown: the one asked for; else the split's column; else
/// `continent`; else the first column with 2–50 distinct values.
pub(super) fn breakdown_column(
    dataset: &Dataset,
    asked: Option<&str>,
    split_column: Option<&str>,
) -> Result<Option<String>> {
    if let Some(c) = asked {
        let c = c.to_lowercase();
        if !dataset.groups.contains_key(&c) {
            return Err(Error::Dataset(format!(
                "dataset '{}' has no column '{c}' for the group breakdown; its group columns \
                 are: {}",
                dataset.name,
                group_columns(dataset)
            )));
        }
        return Ok(Some(c));
    }
    if let Some(c) = split_column {
        return Ok(Some(c.to_string()));
    }
    if dataset.groups.contains_key("continent") {
        return Ok(Some("continent".into()));
    }
    Ok(dataset
        .groups
        .iter()
        .find(|(_, v)| {
            let d = v.iter().collect::<BTreeSet<_>>().len();
            (2..=50).contains(&d)
        })
        .map(|(k, _)| k.clone()))
}
