//! How much data the probe needs, at the selected layer: test R² against training-set size
//! (learning curves) and the online code length of the training targets (Voita & Titov 2020,
//! "Information-Theoretic Probing with Minimum Description Length"), for the model, the
//! random-init model and the names' character n-grams.
//!
//! The online code sends the training targets block by block, in a seeded order. The first block
//! goes with a uniform code; every later block with a Gaussian code whose mean is the prediction
//! of a ridge fitted on all earlier blocks and whose variance is that ridge's leave-one-out
//! squared error on them (an honest noise estimate: in-sample residuals of a wide probe are
//! near zero). A probe that has found structure sends the targets in fewer bits; the
//! compression is the uniform code's length over the online one. Targets are coded in the fold's
//! z-scored units at a fixed precision, so lengths compare across learners of one report.
// Index loops here follow the formulas' subscripts (targets t, rows i).
#![allow(clippy::needless_range_loop)]

use nalgebra::DMatrix;

use crate::probe::input_err;
use crate::probe::matrix::design;
use crate::probe::report::CodeLength;
use crate::probe::ridge::RidgeCv;
use crate::Result;

/// Training-set fractions of the learning curve (nested subsets of one seeded order).
pub const CURVE_FRACTIONS: [f64; 5] = [0.05, 0.1, 0.2, 0.4, 1.0];

/// Where the online code's blocks end, as fractions of the training rows (Voita & Titov's
/// doubling schedule, shortened: their first blocks of 0.1–0.8% are empty on small datasets).
pub const CODE_BLOCK_FRACTIONS: [f64; 7] = [
    1.0 / 64.0,
    1.0 / 32.0,
    1.0 / 16.0,
    1.0 / 8.0,
    1.0 / 4.0,
    1.0 / 2.0,
    1.0,
];

/// Precision at which targets are coded, in z-scored units (1% of a training standard
/// deviation). The Gaussian code's standard deviation is floored here, so no value costs less
/// than 0.5·log2(2π) bits.
pub const CODE_PRECISION: f64 = 0.01;

/// No probe is fitted on fewer rows than this.
pub const MIN_FIT_ROWS: usize = 8;

/// One learner's features: `[entities][d]` row-major, standardized with its training rows'
/// statistics or only centred.
#[derive(Clone, Copy)]
pub struct Features<'a> {
    pub x: &'a [f32],
    pub d: usize,
    pub standardize: bool,
}

/// Predictions (z units) for `predict` of a ridge fitted on the entities `train` with targets
/// `y` (`train.len() × k`, z units), and its leave-one-out predictions of the training rows.
fn fit_predict(
    f: Features<'_>,
    train: &[usize],
    y: &DMatrix<f64>,
    predict: &[usize],
    ridge: &RidgeCv,
) -> Result<(DMatrix<f64>, DMatrix<f64>)> {
    let (xt, x_pred) = design(f.x, f.d, train, predict, f.standardize);
    let dec = ridge.decompose_centered(xt, vec![0.0; f.d], Some(&x_pred), None)?;
    let fit = dec.fit_matrix(y)?;
    Ok((fit.predict_held_out()?, fit.predict_leave_one_out()))
}

/// The training sizes of the learning curve for `n_train` rows: each fraction of
/// [`CURVE_FRACTIONS`], at least [`MIN_FIT_ROWS`], without repeats.
pub fn curve_sizes(n_train: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    for f in CURVE_FRACTIONS {
        let m = ((f * n_train as f64).round() as usize)
            .max(MIN_FIT_ROWS)
            .min(n_train);
        if out.last() != Some(&m) {
            out.push(m);
        }
    }
    out
}

/// Block ends of the online code for `n_train` rows ([`CODE_BLOCK_FRACTIONS`], the first block
/// at least [`MIN_FIT_ROWS`] rows, strictly increasing, the last at `n_train`); empty when there
/// are too few rows for two blocks.
pub fn code_block_ends(n_train: usize) -> Vec<usize> {
    if n_train < 2 * MIN_FIT_ROWS {
        return vec![];
    }
    let mut out: Vec<usize> = Vec::new();
    for f in CODE_BLOCK_FRACTIONS {
        let m = ((f * n_train as f64).round() as usize)
            .max(MIN_FIT_ROWS)
            .min(n_train);
        if out.last().is_none_or(|&last| m > last) {
            out.push(m);
        }
    }
    out
}

/// Test R² (as `score` computes it from z-unit test predictions) of ridges fitted on the first
/// `sizes[s]` entities of `order` (entity indices) with targets `y_order` (`order.len() × k`,
/// z units, in `order`'s order).
pub fn learning_curve(
    f: Features<'_>,
    order: &[usize],
    y_order: &DMatrix<f64>,
    test: &[usize],
    sizes: &[usize],
    ridge: &RidgeCv,
    score: &dyn Fn(&DMatrix<f64>) -> f64,
) -> Result<Vec<f64>> {
    sizes
        .iter()
        .map(|&m| {
            let y = y_order.rows(0, m).into_owned();
            let (pred, _) = fit_predict(f, &order[..m], &y, test, ridge)?;
            Ok(score(&pred))
        })
        .collect()
}

/// Bits to send `y` (z units) of one value given a Gaussian prediction `mu`, `var` at
/// [`CODE_PRECISION`]: −log2(density · precision).
fn gaussian_bits(y: f64, mu: f64, var: f64) -> f64 {
    let var = var.max(CODE_PRECISION * CODE_PRECISION);
    0.5 * (2.0 * std::f64::consts::PI * var).log2()
        + (y - mu) * (y - mu) / (2.0 * var * std::f64::consts::LN_2)
        - CODE_PRECISION.log2()
}

/// The online code length of the targets `y_order` (`order.len() × k`, z units) sent in the
/// order `order` (entity indices into `f.x`) in blocks ending at `block_ends` (see
/// [`code_block_ends`]). The uniform code spends log2(range_t / precision) bits on each value
/// of target t, range_t being the targets' range over all the rows sent.
pub fn online_code_length(
    f: Features<'_>,
    order: &[usize],
    y_order: &DMatrix<f64>,
    block_ends: &[usize],
    ridge: &RidgeCv,
) -> Result<CodeLength> {
    let (n, k) = y_order.shape();
    if n != order.len() || block_ends.len() < 2 || block_ends.last() != Some(&n) {
        return Err(input_err(format!(
            "online code: {n} targets for {} rows in blocks ending at {block_ends:?}",
            order.len()
        )));
    }
    let uniform_per_row: f64 = (0..k)
        .map(|t| {
            let col = y_order.column(t);
            let range = col.max() - col.min();
            (range / CODE_PRECISION).max(1.0).log2()
        })
        .sum();
    let first = block_ends[0];
    let mut online = first as f64 * uniform_per_row;
    for w in block_ends.windows(2) {
        let (seen, end) = (w[0], w[1]);
        let y_seen = y_order.rows(0, seen).into_owned();
        let (pred, loo) = fit_predict(f, &order[..seen], &y_seen, &order[seen..end], ridge)?;
        for t in 0..k {
            let var = (0..seen)
                .map(|i| (y_seen[(i, t)] - loo[(i, t)]).powi(2))
                .sum::<f64>()
                / seen as f64;
            for i in seen..end {
                online += gaussian_bits(y_order[(i, t)], pred[(i - seen, t)], var);
            }
        }
    }
    let uniform = n as f64 * uniform_per_row;
    Ok(CodeLength {
        online_bits: online,
        uniform_bits: uniform,
        compression: uniform / online,
    })
}

/// `f` on every job: natively each on its own thread, in order in wasm32 (no std threads).
pub(super) fn on_threads<J: Sync, R: Send>(jobs: &[J], f: &(dyn Fn(&J) -> R + Sync)) -> Vec<R> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::thread::scope(|s| {
            let handles: Vec<_> = jobs.iter().map(|j| s.spawn(move || f(j))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
    #[cfg(target_arch = "wasm32")]
    {
        jobs.iter().map(f).collect()
    }
}
