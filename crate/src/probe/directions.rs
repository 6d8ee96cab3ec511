//! One layer's probe as directions in the raw activation space: what the causal test edits along.
//!
//! The analysis fits each probe on standardized activations and z-scored targets. Undoing both
//! gives, per target t, an affine reading `reading_t(x) = intercept[t] + weights[t] · x` on the
//! residual stream as the model holds it, so an edit `x + δ` moves the reading by exactly
//! `weights[t] · δ`. The fit here is the analysis's own (the same split, alpha grid, leave-one-out
//! choice and standardization), so its test predictions equal the report's at that layer.

use crate::data::{Dataset, TargetKind};
use crate::probe::input_err;
use crate::probe::matrix::MatrixRef;
use crate::probe::plan::{control_task, plan_splits, Targets};
use crate::probe::report::{AnalysisOptions, SpaceTargets, SplitSpec};
use crate::probe::ridge::{Probe, ProbeFit, RidgeCv};
use crate::Result;

/// An affine reading of the residual stream: `intercept[t] + weights[t] · x` per target.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// One row of `d_model` weights per target.
    pub weights: Vec<Vec<f64>>,
    pub intercept: Vec<f64>,
}

impl Reading {
    fn from_fit(fit: &ProbeFit, d: usize) -> Self {
        let model = &fit.ridge.model;
        let k = model.n_targets;
        let (x_mean, x_scale) = match &fit.x_scaler {
            Some(s) => (s.mean.clone(), s.scale.clone()),
            None => (vec![0.0; d], vec![1.0; d]),
        };
        let (y_mean, y_scale) = match &fit.y_scaler {
            Some(s) => (s.mean.clone(), s.scale.clone()),
            None => (vec![0.0; k], vec![1.0; k]),
        };
        let mut weights = Vec::with_capacity(k);
        let mut intercept = Vec::with_capacity(k);
        for t in 0..k {
            let w: Vec<f64> = model
                .coef_row(t)
                .iter()
                .zip(&x_scale)
                .map(|(c, s)| y_scale[t] * c / s)
                .collect();
            let shift: f64 = w.iter().zip(&x_mean).map(|(w, m)| w * m).sum();
            intercept.push(y_mean[t] + y_scale[t] * model.intercept[t] - shift);
            weights.push(w);
        }
        Self { weights, intercept }
    }

    /// The reading of one vector, per target.
    pub fn read(&self, x: &[f32]) -> Vec<f64> {
        self.weights
            .iter()
            .zip(&self.intercept)
            .map(|(w, b)| b + w.iter().zip(x).map(|(w, &v)| w * v as f64).sum::<f64>())
            .collect()
    }
}

/// The probe of one layer and the control task's probe there, with the rows they were fitted on.
#[derive(Clone, Debug)]
pub struct ProbeDirections {
    pub layer: usize,
    /// `latitude`, `longitude` (space) or `year` (time).
    pub target_names: Vec<String>,
    pub probe: Reading,
    /// The probe of the control task (each first token's random target), fitted the same way;
    /// None when the control task could not be built.
    pub control: Option<Reading>,
    pub alpha: f64,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Fits the probe of `layer` (`acts`: `[entities][d]` row-major) as the analysis does, and the
/// control task's probe. Needs one training set (not leave-one-group-out) and, for places,
/// latitude/longitude targets (a sphere probe has no linear latitude direction).
pub fn fit_directions(
    layer: usize,
    acts: &[f32],
    d: usize,
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    first_token_ids: &[u32],
) -> Result<ProbeDirections> {
    let n = dataset.len();
    if acts.len() != n * d {
        return Err(input_err(format!(
            "layer {layer} has {} values for {n} entities × {d} dimensions",
            acts.len()
        )));
    }
    if dataset.kind == TargetKind::Space && opts.space_targets != SpaceTargets::LatLon {
        return Err(input_err(
            "the causal test edits along the latitude and longitude probes; fit with \
             latitude/longitude targets, not the unit sphere",
        ));
    }
    let targets = Targets::new(dataset, opts.space_targets)?;
    let (splits, _, _) = plan_splits(dataset, split, opts.validation_folds)?;
    let [(_, s)] = &splits[..] else {
        return Err(input_err(
            "the causal test needs one training set; leave-one-group-out fits one probe per \
             group (use a random, column or single held-out group split)",
        ));
    };
    let k = targets.fitted_names.len();
    let probe = Probe {
        ridge: RidgeCv {
            alphas: opts.alphas.clone(),
            ..RidgeCv::default()
        },
        standardize_features: opts.standardize,
        standardize_targets: true,
    };
    let x = MatrixRef::new(acts, n, d)?.select_rows(&s.train)?;
    let fit_on = |y: &[f64]| -> Result<ProbeFit> {
        let y = MatrixRef::new(y, n, k)?.select_rows(&s.train)?;
        probe.fit(x.view(), y.view())
    };
    let real = fit_on(&targets.fitted)?;
    let mut warnings = Vec::new();
    let control = match control_task(first_token_ids, &targets, opts.seed, &mut warnings)? {
        Some(c) => Some(Reading::from_fit(&fit_on(&c)?, d)),
        None => None,
    };
    Ok(ProbeDirections {
        layer,
        target_names: targets.fitted_names.clone(),
        probe: Reading::from_fit(&real, d),
        control,
        alpha: real.alpha(),
        train: s.train.clone(),
        test: s.test.clone(),
    })
}
