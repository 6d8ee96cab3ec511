//! Ridge probes with exact, cheap cross-validation.
//!
//! A probe is a ridge regression from one layer's activations `X` (n × d) to a few targets
//! `Y` (n × k, k = 1..3: latitude/longitude, a year, ...). The module follows scikit-learn's
//! naming and defaults so results can be checked against it:
//!
//! * [`RidgeCv`] mirrors `sklearn.linear_model.RidgeCV(alphas, fit_intercept=True)` in its default
//!   efficient leave-one-out mode (`scoring=None`, one alpha shared by all targets,
//!   `alpha_per_target=False`). One eigendecomposition of the centered data per layer
//!   ([`RidgeDecomposition`], a thin SVD from the eigensolver in `linalg.rs`) serves every alpha,
//!   every target set and every permutation. It is the only ridge in the crate: the analysis
//!   enters it through [`RidgeCv::decompose_centered`] with held-out rows and validation folds.
//! * [`Probe`] chains [`StandardScaler`] (`matrix.rs`, statistics of the TRAIN rows only) →
//!   [`RidgeCv`] → inverse target scaling.
//! * Splits and the seeded generator live in [`crate::probe::split`]; a probe takes the rows
//!   they choose.
//! * [`PermutationTest`] refits on row-shuffled targets, reusing the decomposition.
//!
//! Inputs are row-major slices ([`MatrixRef`], `matrix.rs`); activations may be `f32`, all maths
//! is `f64`.
//! Nothing here uses threads, files or OS randomness, so it runs unchanged in wasm32.

// Index loops in the spectral engine follow the formulas' subscripts (targets t, rows i).
#![allow(clippy::needless_range_loop)]

use std::fmt;
use std::sync::Arc;

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::probe::input_err;
use crate::probe::linalg::{
    col_sums, full, gram_t, mul_skinny, solve_spd, symmetric_eigen, tr_mul_skinny,
};
use crate::probe::matrix::{check_finite, Matrix, MatrixRef, StandardScaler};
use crate::probe::metrics::r2_from_sums;
use crate::probe::split::{Split, SplitMix64};
use crate::Result;

// ---------------------------------------------------------------------------------------------
// RidgeCv
// ---------------------------------------------------------------------------------------------

/// `num` values `10^e` for `e` evenly spaced from `start` to `stop` inclusive, like `numpy.logspace`.
pub fn logspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![10f64.powf(start)],
        _ => {
            let step = (stop - start) / (num - 1) as f64;
            (0..num)
                .map(|i| {
                    // numpy pins the last exponent to `stop` exactly.
                    let e = if i == num - 1 {
                        stop
                    } else {
                        start + i as f64 * step
                    };
                    10f64.powf(e)
                })
                .collect()
        }
    }
}

/// The default alpha grid: `logspace(-2, 6, 17)` = 0.01, 0.0316, 0.1, …, 1e6 (two per decade).
/// Wide enough for raw or standardized activations of small llamas (d = 576..4096).
pub fn default_alphas() -> Vec<f64> {
    logspace(-2.0, 6.0, 17)
}

/// How the per-alpha cross-validation error is estimated from the decomposition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CvMode {
    /// Exact leave-one-out: mean over samples and targets of `(residual_i / (1 - h_ii))²`.
    /// scikit-learn `RidgeCV`'s default.
    #[default]
    LeaveOneOut,
    /// Generalized cross-validation (Golub, Heath & Wahba 1979): mean squared residual divided by
    /// `(1 - tr(H)/n)²`, i.e. every leverage replaced by the average one.
    Generalized,
}

/// Which matrix is eigendecomposed. Both give the same answer up to rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// Gram when `n_samples <= n_features`, covariance otherwise (scikit-learn's `gcv_mode="auto"`).
    #[default]
    Auto,
    /// Eigendecompose the n × n kernel `Xc Xcᵀ` (cheap when n ≤ d).
    Gram,
    /// Eigendecompose the d × d covariance `Xcᵀ Xc` (cheap when d < n).
    Covariance,
}

/// Ridge regression with the penalty chosen from a grid by efficient cross-validation.
///
/// Defaults: `alphas = logspace(-2, 6, 17)`, `fit_intercept = true` (by centering X and Y, the
/// intercept is never penalized), `cv_mode = LeaveOneOut`, `route = Auto`. The alpha with the
/// lowest CV error, summed over targets, is shared by all targets; ties keep the earliest alpha in
/// `alphas` order — all as scikit-learn's `RidgeCV`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RidgeCv {
    pub alphas: Vec<f64>,
    pub fit_intercept: bool,
    pub cv_mode: CvMode,
    pub route: Route,
}

impl Default for RidgeCv {
    fn default() -> Self {
        Self {
            alphas: default_alphas(),
            fit_intercept: true,
            cv_mode: CvMode::LeaveOneOut,
            route: Route::Auto,
        }
    }
}

impl RidgeCv {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decomposes `x` once; fit any number of target sets with [`RidgeDecomposition::fit`].
    pub fn decompose<T: Copy + Into<f64>>(
        &self,
        x: MatrixRef<'_, T>,
    ) -> Result<RidgeDecomposition> {
        self.decompose_with_held_out(x, None)
    }

    /// [`decompose`](Self::decompose), with held-out rows (same columns) projected once so that
    /// [`RidgeCvFit::predict_held_out`] predicts them cheaply: centers both with the training
    /// mean (when `fit_intercept`) and calls [`decompose_centered`](Self::decompose_centered).
    pub fn decompose_with_held_out<T: Copy + Into<f64>>(
        &self,
        x: MatrixRef<'_, T>,
        held_out: Option<MatrixRef<'_, T>>,
    ) -> Result<RidgeDecomposition> {
        self.validate()?;
        check_finite("X", x)?;
        let (n, d) = (x.n_rows, x.n_cols);
        let mut x_mean = vec![0.0; d];
        if self.fit_intercept && n > 0 {
            for i in 0..n {
                for (m, &v) in x_mean.iter_mut().zip(x.row(i)) {
                    *m += v.into();
                }
            }
            x_mean.iter_mut().for_each(|m| *m /= n as f64);
        }
        let centered = |m: MatrixRef<'_, T>| {
            DMatrix::from_fn(m.n_rows, d, |i, j| m.data[i * d + j].into() - x_mean[j])
        };
        let xc = centered(x);
        let test = match held_out {
            Some(h) if h.n_cols != d => {
                return Err(input_err(format!(
                    "held-out rows have {} columns, the training rows {d}",
                    h.n_cols
                )))
            }
            Some(h) => {
                check_finite("held-out X", h)?;
                Some(centered(h))
            }
            None => None,
        };
        self.decompose_centered(xc, x_mean, test.as_ref(), None)
    }

    /// The decomposition every fit goes through, the analysis's entry point: `xc` is the
    /// training matrix (column-major, n × d) already centered (and scaled, if wanted) by the
    /// caller, `x_mean` the column means taken off (the fitted model's intercept accounts for
    /// them; zeros when the model should apply to centered features). `held_out` rows, already
    /// transformed the same way, are projected for [`RidgeCvFit::predict_held_out`] and
    /// [`RidgeDecomposition::permuted_held_out_sse`]; `validation` lists K-fold validation folds as
    /// contiguous `(start, len)` row ranges of `xc` for [`RidgeDecomposition::validation_r2`].
    pub fn decompose_centered(
        &self,
        xc: DMatrix<f64>,
        x_mean: Vec<f64>,
        held_out: Option<&DMatrix<f64>>,
        validation: Option<&[(usize, usize)]>,
    ) -> Result<RidgeDecomposition> {
        self.validate()?;
        let (n, d) = xc.shape();
        if d == 0 {
            return Err(input_err("ridge needs at least one feature"));
        }
        let min_rows = if self.fit_intercept { 2 } else { 1 };
        if n < min_rows {
            return Err(input_err(format!(
                "ridge with cross-validation needs at least {min_rows} rows, got {n}"
            )));
        }
        if x_mean.len() != d || held_out.is_some_and(|h| h.ncols() != d) {
            return Err(input_err(format!(
                "ridge: {d} features but {} means and {:?} held-out columns",
                x_mean.len(),
                held_out.map(|h| h.ncols())
            )));
        }
        if xc
            .iter()
            .chain(held_out.into_iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err(input_err("X has a non-finite value"));
        }
        if let Some(val) = validation {
            let mut next = 0;
            for &(start, len) in val {
                if start != next || len == 0 {
                    return Err(input_err(
                        "validation folds must be non-empty contiguous row ranges in order",
                    ));
                }
                next = start + len;
            }
            if next != n || val.len() < 2 || !self.fit_intercept {
                return Err(input_err(format!(
                    "validation folds must cover all {n} rows in at least two folds, with an \
                     intercept"
                )));
            }
        }
        Ok(RidgeDecomposition {
            inner: Arc::new(Spectral::new(self, xc, x_mean, held_out, validation)?),
        })
    }

    /// `decompose(x)` then `fit(y)`.
    pub fn fit<T: Copy + Into<f64>>(
        &self,
        x: MatrixRef<'_, T>,
        y: MatrixRef<'_, f64>,
    ) -> Result<RidgeCvFit> {
        self.decompose(x)?.fit(y)
    }

    fn validate(&self) -> Result<()> {
        if self.alphas.is_empty() {
            return Err(input_err("RidgeCv needs at least one alpha"));
        }
        if let Some(a) = self.alphas.iter().find(|a| !(a.is_finite() && **a > 0.0)) {
            return Err(input_err(format!(
                "ridge alphas must be finite and > 0, got {a}"
            )));
        }
        Ok(())
    }
}

/// A fitted linear model: `y[t] = intercept[t] + coef[t] · x`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RidgeModel {
    pub alpha: f64,
    pub n_features: usize,
    pub n_targets: usize,
    /// `n_targets × n_features`, row-major: the layout of scikit-learn's `coef_`.
    pub coef: Vec<f64>,
    pub intercept: Vec<f64>,
}

impl RidgeModel {
    /// The weights of target `t`.
    pub fn coef_row(&self, t: usize) -> &[f64] {
        &self.coef[t * self.n_features..(t + 1) * self.n_features]
    }

    /// Predictions, `n_rows × n_targets` row-major, accumulated in f64.
    pub fn predict<T: Copy + Into<f64>>(&self, x: MatrixRef<'_, T>) -> Result<Matrix<f64>> {
        if x.n_cols != self.n_features {
            return Err(input_err(format!(
                "model expects {} features, got {}",
                self.n_features, x.n_cols
            )));
        }
        let mut out = Vec::with_capacity(x.n_rows * self.n_targets);
        for i in 0..x.n_rows {
            let row = x.row(i);
            for t in 0..self.n_targets {
                let dot: f64 = row
                    .iter()
                    .zip(self.coef_row(t))
                    .map(|(&v, &w)| v.into() * w)
                    .sum();
                out.push(self.intercept[t] + dot);
            }
        }
        Matrix::new(out, x.n_rows, self.n_targets)
    }
}

/// One layer's data, decomposed once for every alpha, target set and permutation.
///
/// A thin SVD of the centered training matrix `Xc = U diag(√λ) Vᵀ` (`X` itself when
/// `fit_intercept` is false), from one symmetric eigendecomposition ([`symmetric_eigen`]):
/// * covariance route: `XcᵀXc = V Λ Vᵀ` (directions with λ at rounding level dropped), and
///   `U = Xc V Λ^{-1/2}`; the hat matrix is `H_α = 11ᵀ/n + U S_α Uᵀ`, `S_α = Λ(Λ+α)⁻¹`.
/// * Gram (kernel) route: `Xc Xcᵀ = U Λ Uᵀ` over the space orthogonal to `1`; then
///   `I - H_α = U α(Λ+α)⁻¹ Uᵀ`, which gives residuals with no cancellation even when the fit
///   nearly interpolates (n ≤ d, small α).
///
/// Per-alpha leverages `1 - h_ii` and `tr(I - H)` depend on X only and are computed here once,
/// so a new target matrix costs one projection `Uᵀy` plus one matrix product over the alphas.
/// Held-out rows given to [`RidgeCv::decompose_centered`] are projected once too, so their
/// predictions (and the permutation null's, [`RidgeDecomposition::permuted_held_out_sse`]) cost a
/// small product per target set; validation folds make [`RidgeDecomposition::validation_r2`]
/// one Cholesky solve per fold.
#[derive(Clone)]
pub struct RidgeDecomposition {
    inner: Arc<Spectral>,
}

/// What validation folds need: on the covariance route the centered scatter `C` and each fold's
/// `X_fᵀX_f` (they sum to `C`); on the kernel route the kernel `X Xᵀ`.
enum FoldData {
    None,
    Cov {
        c: DMatrix<f64>,
        scatter: Vec<DMatrix<f64>>,
        val: Vec<(usize, usize)>,
    },
    Gram {
        k: DMatrix<f64>,
        val: Vec<(usize, usize)>,
    },
}

/// Target blocks of a permutation null: `ybt` holds each block's centered targets as rows
/// ((blocks·k) × n), `zt` their projections on `U`, `alpha` each block's alpha index (GCV).
struct Blocks {
    k: usize,
    ybt: DMatrix<f64>,
    zt: DMatrix<f64>,
    alpha: Vec<usize>,
    y_mean: Vec<f64>,
}

/// The spectral engine behind [`RidgeDecomposition`].
struct Spectral {
    route: Route,
    cv_mode: CvMode,
    fit_intercept: bool,
    n_samples: usize,
    n_features: usize,
    alphas: Vec<f64>,
    x_mean: Vec<f64>,
    /// `U` spans the whole residual space (kernel route): residuals and leverages use `1 − s`.
    complete: bool,
    /// Λ, clamped at 0 (a negative eigenvalue of a PSD matrix is rounding).
    lambda: Vec<f64>,
    /// Held-out predictions are `held_out · diag(phi / (λ + α)) · Uᵀy`.
    phi: Vec<f64>,
    u: DMatrix<f64>,
    /// `1 − h_ii(α)`, n × alphas.
    one_minus_h: DMatrix<f64>,
    /// `tr(I - H_α)` per alpha (GCV's effective residual degrees of freedom).
    residual_dof: Vec<f64>,
    /// `Xc` (n × d): coefficients are `Xcᵀ` times dual coefficients, and (covariance route) the
    /// validation folds' rows.
    coef_basis: DMatrix<f64>,
    /// Held-out rows projected: `X_test V` (covariance) or `X_test Xcᵀ U` (kernel).
    held_out: Option<DMatrix<f64>>,
    folds: FoldData,
}

impl fmt::Debug for RidgeDecomposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.inner;
        f.debug_struct("RidgeDecomposition")
            .field("route", &d.route)
            .field("cv_mode", &d.cv_mode)
            .field("fit_intercept", &d.fit_intercept)
            .field("n_samples", &d.n_samples)
            .field("n_features", &d.n_features)
            .field("n_alphas", &d.alphas.len())
            .field("held_out_rows", &d.held_out.as_ref().map(|h| h.nrows()))
            .finish()
    }
}

impl Spectral {
    fn new(
        cfg: &RidgeCv,
        x: DMatrix<f64>,
        x_mean: Vec<f64>,
        x_test: Option<&DMatrix<f64>>,
        val: Option<&[(usize, usize)]>,
    ) -> Result<Self> {
        let (n, d) = x.shape();
        let nf = n as f64;
        let alphas = cfg.alphas.clone();
        let icpt = if cfg.fit_intercept { 1.0 } else { 0.0 };
        let route = match cfg.route {
            Route::Auto if n <= d => Route::Gram,
            Route::Auto => Route::Covariance,
            r => r,
        };
        let s_of = |lambda: &[f64], j: usize, a: usize| lambda[j] / (lambda[j] + alphas[a]);
        if route == Route::Covariance {
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
            // U = Xc V Λ^{-1/2}. An eigenvalue at rounding level (≤ λ_max·max(n, d)·ε) is not
            // accurate, but its direction's variance |Xc v|² is, and such a direction can still
            // carry a visible coefficient (scikit-learn keeps it): it stays, with that variance
            // as its λ. Only directions with no variance at all are dropped.
            let lmax = lambda_all.iter().cloned().fold(0.0, f64::max);
            let tol = lmax * (n.max(d) as f64) * f64::EPSILON;
            let p = &x * &v_all;
            let lambda_all: Vec<f64> = (0..d)
                .map(|j| {
                    if lambda_all[j] > tol {
                        lambda_all[j]
                    } else {
                        p.column(j).norm_squared()
                    }
                })
                .collect();
            let floor = lmax * f64::EPSILON * f64::EPSILON;
            let keep: Vec<usize> = (0..d).filter(|&j| lambda_all[j] > floor).collect();
            let m = keep.len();
            let v = DMatrix::from_fn(d, m, |i, j| v_all[(i, keep[j])]);
            drop(v_all);
            let lambda: Vec<f64> = keep.iter().map(|&j| lambda_all[j]).collect();
            let mut u = if m == d {
                p
            } else {
                DMatrix::from_fn(n, m, |i, j| p[(i, keep[j])])
            };
            for (j, &l) in lambda.iter().enumerate() {
                u.column_mut(j).scale_mut(1.0 / l.sqrt());
            }
            let held_out = x_test.map(|t| t * &v);
            let phi = lambda.iter().map(|l| l.sqrt()).collect();
            let u2 = u.map(|a| a * a);
            let s = DMatrix::from_fn(m, alphas.len(), |j, a| s_of(&lambda, j, a));
            let one_minus_h = (&u2 * &s).map(|h| 1.0 - icpt / nf - h);
            let residual_dof = (0..alphas.len())
                .map(|a| nf - icpt - (0..m).map(|j| s_of(&lambda, j, a)).sum::<f64>())
                .collect();
            let folds = match (scatter, val) {
                (Some(scatter), Some(val)) => FoldData::Cov {
                    c,
                    scatter,
                    val: val.to_vec(),
                },
                _ => FoldData::None,
            };
            Ok(Self {
                route,
                cv_mode: cfg.cv_mode,
                fit_intercept: cfg.fit_intercept,
                n_samples: n,
                n_features: d,
                alphas,
                x_mean,
                complete: false,
                lambda,
                phi,
                u,
                one_minus_h,
                residual_dof,
                coef_basis: x,
                held_out,
                folds,
            })
        } else {
            let xt = x.transpose();
            let k = &x * &xt;
            let (lambda, q) = if cfg.fit_intercept {
                // Centering puts `1` in the kernel's null space. Lift it to an eigenvalue above
                // the whole spectrum (2·trace + 1 > λ_max) so its eigenvector cannot mix with
                // genuine directions, then drop it: it carries the unpenalized intercept, and
                // I - H has no component along it.
                let mut lifted = k.clone();
                lifted.add_scalar_mut((2.0 * k.trace() + 1.0) / nf);
                let (mut lambda, q) = symmetric_eigen(lifted)?;
                let idx = (0..q.ncols())
                    .max_by(|&a, &b| q.column(a).sum().abs().total_cmp(&q.column(b).sum().abs()))
                    .expect("n >= 2");
                lambda.remove(idx);
                (lambda, q.remove_column(idx))
            } else {
                symmetric_eigen(k.clone())?
            };
            let m = lambda.len();
            let held_out = x_test.map(|t| (t * &xt) * &q);
            drop(xt);
            let u2 = q.map(|a| a * a);
            let s1 = DMatrix::from_fn(m, alphas.len(), |j, a| alphas[a] / (lambda[j] + alphas[a]));
            let one_minus_h = &u2 * &s1;
            let residual_dof = (0..alphas.len())
                .map(|a| m as f64 - (0..m).map(|j| s_of(&lambda, j, a)).sum::<f64>())
                .collect();
            Ok(Self {
                route,
                cv_mode: cfg.cv_mode,
                fit_intercept: cfg.fit_intercept,
                n_samples: n,
                n_features: d,
                alphas,
                x_mean,
                complete: true,
                phi: vec![1.0; m],
                lambda,
                u: q,
                one_minus_h,
                residual_dof,
                coef_basis: x,
                held_out,
                folds: match val {
                    Some(val) => FoldData::Gram {
                        k,
                        val: val.to_vec(),
                    },
                    None => FoldData::None,
                },
            })
        }
    }

    fn s(&self, j: usize, a: usize) -> f64 {
        self.lambda[j] / (self.lambda[j] + self.alphas[a])
    }
}

impl RidgeDecomposition {
    /// The route actually used (never `Auto`).
    pub fn route(&self) -> Route {
        self.inner.route
    }

    pub fn n_samples(&self) -> usize {
        self.inner.n_samples
    }

    pub fn n_features(&self) -> usize {
        self.inner.n_features
    }

    pub fn alphas(&self) -> &[f64] {
        &self.inner.alphas
    }

    /// Chooses alpha by CV and fits `y` (n × k, the rows of the decomposed X).
    pub fn fit(&self, y: MatrixRef<'_, f64>) -> Result<RidgeCvFit> {
        let n = self.inner.n_samples;
        if y.n_rows != n {
            return Err(input_err(format!("X has {n} rows but y has {}", y.n_rows)));
        }
        if y.n_cols == 0 {
            return Err(input_err("y needs at least one target column"));
        }
        check_finite("y", y)?;
        let k = y.n_cols;
        let mut y_mean = vec![0.0; k];
        if self.inner.fit_intercept {
            for i in 0..n {
                for (m, &v) in y_mean.iter_mut().zip(y.row(i)) {
                    *m += v;
                }
            }
            y_mean.iter_mut().for_each(|m| *m /= n as f64);
        }
        let y_centered = DMatrix::from_fn(n, k, |i, t| y.data[i * k + t] - y_mean[t]);
        Ok(self.fit_centered(y_centered, y_mean))
    }

    /// [`fit`](Self::fit) for a column-major `y` (n × k), as the analysis holds its targets.
    pub fn fit_matrix(&self, y: &DMatrix<f64>) -> Result<RidgeCvFit> {
        let (n, k) = y.shape();
        if n != self.inner.n_samples || k == 0 || y.iter().any(|v| !v.is_finite()) {
            return Err(input_err(format!(
                "y must be {} rows × at least one column of finite values, got {n} × {k}",
                self.inner.n_samples
            )));
        }
        let y_mean: Vec<f64> = if self.inner.fit_intercept {
            (0..k).map(|t| y.column(t).mean()).collect()
        } else {
            vec![0.0; k]
        };
        let yc = DMatrix::from_fn(n, k, |i, t| y[(i, t)] - y_mean[t]);
        Ok(self.fit_centered(yc, y_mean))
    }

    fn fit_centered(&self, yc: DMatrix<f64>, y_mean: Vec<f64>) -> RidgeCvFit {
        let s = &*self.inner;
        let (n, k) = yc.shape();
        let (m, na) = (s.lambda.len(), s.alphas.len());
        // The only data-dependent projection: Uᵀ y (m × k).
        let zeta = tr_mul_skinny(full(&s.u), full(&yc));
        // Residuals (kernel route) or fits (covariance) for all alphas at once: one gemm.
        let w = DMatrix::from_fn(m, na * k, |j, col| {
            let (a, t) = (col / k, col % k);
            let sv = s.s(j, a);
            zeta[(j, t)] * if s.complete { 1.0 - sv } else { sv }
        });
        let prod = &s.u * &w;
        let n_entries = (n * k) as f64;
        let mut scores = Vec::with_capacity(na);
        let mut cv_errors = Vec::with_capacity(na);
        for a in 0..na {
            let (mut loo, mut rss) = (0.0, 0.0);
            for t in 0..k {
                let col = prod.column(a * k + t);
                for i in 0..n {
                    let r = if s.complete {
                        col[i]
                    } else {
                        yc[(i, t)] - col[i]
                    };
                    let e = r / s.one_minus_h[(i, a)];
                    loo += e * e;
                    rss += r * r;
                }
            }
            match s.cv_mode {
                CvMode::LeaveOneOut => {
                    scores.push(loo);
                    cv_errors.push(loo / n_entries);
                }
                CvMode::Generalized => {
                    let dof_frac = s.residual_dof[a] / n as f64;
                    let gcv = (rss / n_entries) / (dof_frac * dof_frac);
                    scores.push(gcv);
                    cv_errors.push(gcv);
                }
            }
        }
        // First strict minimum in grid order, as scikit-learn; NaN never wins.
        let mut best = 0;
        for a in 1..na {
            if scores[a] < scores[best] || (scores[best].is_nan() && !scores[a].is_nan()) {
                best = a;
            }
        }
        // The chosen alpha's residuals come with the CV product: Gram route it IS (I − H) y,
        // covariance route it holds the fits.
        let resid = DMatrix::from_fn(n, k, |i, t| {
            let c = prod[(i, best * k + t)];
            if s.complete {
                c
            } else {
                yc[(i, t)] - c
            }
        });
        let model = self.coefficients(&resid, &y_mean, best);
        RidgeCvFit {
            model,
            alpha_index: best,
            cv_errors,
            cv_mode: s.cv_mode,
            decomposition: self.clone(),
            y_centered: yc,
            y_mean,
            zeta,
        }
    }

    /// `zeta ⊙ phi / (λ + α)`: the weights on `U`'s directions at one alpha.
    fn weights(&self, zeta: &DMatrix<f64>, alpha_index: usize) -> DMatrix<f64> {
        let s = &*self.inner;
        let alpha = s.alphas[alpha_index];
        DMatrix::from_fn(zeta.nrows(), zeta.ncols(), |j, t| {
            zeta[(j, t)] * s.phi[j] / (s.lambda[j] + alpha)
        })
    }

    fn coefficients(&self, resid: &DMatrix<f64>, y_mean: &[f64], alpha_index: usize) -> RidgeModel {
        let s = &*self.inner;
        // β = Xcᵀ c with the dual coefficients c = (y − ŷ)/α (ridge's identity
        // αβ = Xcᵀ(y − Xc β)), as scikit-learn: accurate even for directions of tiny variance.
        let dual = resid / s.alphas[alpha_index];
        let beta = tr_mul_skinny(full(&s.coef_basis), full(&dual));
        let k = resid.ncols();
        let n_features = s.n_features;
        let mut coef = Vec::with_capacity(k * n_features);
        let mut intercept = Vec::with_capacity(k);
        for (t, &ym) in y_mean.iter().enumerate() {
            let col = beta.column(t);
            coef.extend(col.iter().copied());
            let shift: f64 = col.iter().zip(&s.x_mean).map(|(b, m)| b * m).sum();
            intercept.push(if s.fit_intercept { ym - shift } else { 0.0 });
        }
        RidgeModel {
            alpha: s.alphas[alpha_index],
            n_features,
            n_targets: k,
            coef,
            intercept,
        }
    }

    fn held_out_basis(&self) -> Result<&DMatrix<f64>> {
        self.inner.held_out.as_ref().ok_or_else(|| {
            input_err("this decomposition was made without held-out rows to predict")
        })
    }

    /// Test-set sums of squared errors, `(1 + shuffles) × k` (row 0 = the real targets), of
    /// ridges fitted to `y` (column-major, the decomposed rows) with its rows permuted by each of
    /// `perms`, alpha chosen per shuffle by GCV, scored on the held-out rows against `y_test`.
    /// All shuffles share one batched product.
    pub fn permuted_held_out_sse(
        &self,
        y: &DMatrix<f64>,
        perms: &[Vec<usize>],
        y_test: &DMatrix<f64>,
    ) -> Result<Vec<f64>> {
        let blocks = self.permuted_blocks(y, perms)?;
        self.blocks_held_out_sse(&blocks, y_test)
    }

    /// The permutation null of a choice made on validation: per block (row 0 = the real
    /// targets, then each shuffle), [`permuted_held_out_sse`](Self::permuted_held_out_sse) of
    /// `y`, and the mean validation R² over the folds given to
    /// [`RidgeCv::decompose_centered`] (as [`validation_r2`](Self::validation_r2)) of ridges
    /// fitted to `base + y` with `y`'s rows permuted the same way, at that block's own alpha by
    /// GCV. No base: the same fits. Both come from one projection of the shuffled targets.
    pub fn permuted_scores(
        &self,
        y: &DMatrix<f64>,
        base: Option<&DMatrix<f64>>,
        perms: &[Vec<usize>],
        y_test: &DMatrix<f64>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let blocks = self.permuted_blocks(y, perms)?;
        let sse = self.blocks_held_out_sse(&blocks, y_test)?;
        let validation = match base {
            None => self.blocks_validation_r2(&blocks)?,
            Some(base) => self.blocks_validation_r2(&self.add_base(blocks, base)?)?,
        };
        Ok((sse, validation))
    }

    /// The centered target blocks `y[perm]` (row 0 unpermuted), their projections on `U` and
    /// each block's alpha by GCV.
    fn permuted_blocks(&self, y: &DMatrix<f64>, perms: &[Vec<usize>]) -> Result<Blocks> {
        let s = &*self.inner;
        let (n, k) = y.shape();
        if n != s.n_samples {
            return Err(input_err(format!(
                "permutation null: y is {n} × {k} for {} rows",
                s.n_samples
            )));
        }
        if let Some(p) = perms
            .iter()
            .find(|p| p.len() != n || p.iter().any(|&i| i >= n))
        {
            return Err(input_err(format!(
                "a permutation of {} entries for {n} rows",
                p.len()
            )));
        }
        let n_blocks = perms.len() + 1;
        let y_mean: Vec<f64> = (0..k).map(|t| y.column(t).mean()).collect();
        let ybt = DMatrix::from_fn(n_blocks * k, n, |row, i| {
            let (b, t) = (row / k, row % k);
            let src = if b == 0 { i } else { perms[b - 1][i] };
            y[(src, t)] - y_mean[t]
        });
        let zt = &ybt * &s.u; // (blocks·k) × m
                              // A permutation keeps the sum of squares: every block's is the real targets'.
        let yss: Vec<f64> = (0..k)
            .map(|t| (0..n).map(|i| (y[(i, t)] - y_mean[t]).powi(2)).sum())
            .collect();
        let alpha = self.gcv_alphas(&zt, &|row| yss[row % k], k);
        Ok(Blocks {
            k,
            ybt,
            zt,
            alpha,
            y_mean,
        })
    }

    /// `blocks` with `base` (n × k) added to every block, and the alphas chosen again.
    fn add_base(&self, mut blocks: Blocks, base: &DMatrix<f64>) -> Result<Blocks> {
        let s = &*self.inner;
        let (n, k) = (s.n_samples, blocks.k);
        if base.shape() != (n, k) {
            return Err(input_err(format!(
                "permutation null: the base is {:?} for {n} rows × {k} targets",
                base.shape()
            )));
        }
        let b_mean: Vec<f64> = (0..k).map(|t| base.column(t).mean()).collect();
        let bc = DMatrix::from_fn(k, n, |t, i| base[(i, t)] - b_mean[t]);
        let zb = &bc * &s.u; // k × m, linear: (y + base)ᵀU = yᵀU + baseᵀU
        let rows = blocks.ybt.nrows();
        for row in 0..rows {
            let t = row % k;
            for i in 0..n {
                blocks.ybt[(row, i)] += bc[(t, i)];
            }
            for j in 0..zb.ncols() {
                blocks.zt[(row, j)] += zb[(t, j)];
            }
        }
        let yss: Vec<f64> = (0..rows)
            .map(|row| blocks.ybt.row(row).norm_squared())
            .collect();
        blocks.alpha = self.gcv_alphas(&blocks.zt, &|row| yss[row], k);
        for t in 0..k {
            blocks.y_mean[t] += b_mean[t];
        }
        Ok(blocks)
    }

    /// Per block of `zt` ((blocks·k) × m projections; `yss(row)` each row's sum of squares),
    /// the alpha index with the lowest GCV error summed over the block's k targets.
    fn gcv_alphas(&self, zt: &DMatrix<f64>, yss: &dyn Fn(usize) -> f64, k: usize) -> Vec<usize> {
        let s = &*self.inner;
        let (m, na) = (s.lambda.len(), s.alphas.len());
        let nf = s.n_samples as f64;
        // Σ_j z_j² g_j(α) for every row and alpha as one product (not a division per term):
        // the residual's (kernel route, g = (1 − s)²) or the fit's share (covariance route,
        // g = 2s − s², the residual being yss minus it).
        let g = DMatrix::from_fn(m, na, |j, a| {
            let sv = s.s(j, a);
            if s.complete {
                (1.0 - sv) * (1.0 - sv)
            } else {
                2.0 * sv - sv * sv
            }
        });
        let acc = zt.map(|v| v * v) * g; // (blocks·k) × alphas
        (0..zt.nrows() / k)
            .map(|b| {
                let mut best = 0;
                let mut best_gcv = f64::INFINITY;
                for a in 0..na {
                    let rss: f64 = (b * k..(b + 1) * k)
                        .map(|row| {
                            if s.complete {
                                acc[(row, a)]
                            } else {
                                yss(row) - acc[(row, a)]
                            }
                        })
                        .sum();
                    let frac = s.residual_dof[a] / nf;
                    let gcv = (rss / (nf * k as f64)) / (frac * frac);
                    if gcv < best_gcv {
                        best = a;
                        best_gcv = gcv;
                    }
                }
                best
            })
            .collect()
    }

    fn blocks_held_out_sse(&self, blocks: &Blocks, y_test: &DMatrix<f64>) -> Result<Vec<f64>> {
        let s = &*self.inner;
        let held_out = self.held_out_basis()?;
        let Blocks { k, zt, y_mean, .. } = blocks;
        let k = *k;
        if y_test.ncols() != k || y_test.nrows() != held_out.nrows() {
            return Err(input_err(format!(
                "permutation null: y_test is {} × {} for {k} targets and {} held-out rows",
                y_test.nrows(),
                y_test.ncols(),
                held_out.nrows()
            )));
        }
        let m = s.lambda.len();
        let n_blocks = blocks.alpha.len();
        let mut w = DMatrix::<f64>::zeros(m, n_blocks * k);
        for (b, &a) in blocks.alpha.iter().enumerate() {
            let alpha = s.alphas[a];
            for t in 0..k {
                for j in 0..m {
                    w[(j, b * k + t)] = zt[(b * k + t, j)] * s.phi[j] / (s.lambda[j] + alpha);
                }
            }
        }
        let pred = held_out * &w; // n_test × (blocks·k)
        let mut sse = vec![0.0; n_blocks * k];
        for b in 0..n_blocks {
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
        Ok(sse)
    }

    /// Each block's mean validation R² without refitting a fold: a fold's held-out residuals
    /// are `(I − H_ff)⁻¹ r_f`, with `r` the whole training set's residuals and `H_ff` the fold's
    /// block of the hat matrix (exact for a penalized least squares with an unpenalized
    /// intercept), so the shuffles cost one product with `U` and a small solve per fold and
    /// distinct alpha.
    fn blocks_validation_r2(&self, blocks: &Blocks) -> Result<Vec<f64>> {
        let s = &*self.inner;
        let val = match &s.folds {
            FoldData::Cov { val, .. } | FoldData::Gram { val, .. } => val,
            FoldData::None => {
                return Err(input_err(
                    "this decomposition was made without validation folds",
                ))
            }
        };
        let Blocks {
            k, ybt, zt, alpha, ..
        } = blocks;
        let k = *k;
        let (n, m) = (s.n_samples, s.lambda.len());
        let n_blocks = alpha.len();
        // Kernel route: r = U (1 − S) Uᵀy; covariance route: r = y − U S Uᵀy (y centered).
        let shrink = |j: usize, a: usize| {
            let sv = s.s(j, a);
            if s.complete {
                1.0 - sv
            } else {
                sv
            }
        };
        let w = DMatrix::from_fn(m, n_blocks * k, |j, col| {
            zt[(col, j)] * shrink(j, alpha[col / k])
        });
        let mut r = &s.u * &w; // n × (blocks·k)
        if !s.complete {
            for col in 0..n_blocks * k {
                for i in 0..n {
                    r[(i, col)] = ybt[(col, i)] - r[(i, col)];
                }
            }
        }
        let mut distinct = alpha.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut total = vec![0.0; n_blocks];
        for &(start, len) in val {
            let uf = s.u.rows(start, len);
            for &a in &distinct {
                let cols: Vec<usize> = (0..n_blocks).filter(|&b| alpha[b] == a).collect();
                // (I − H)_ff: kernel route U_f (1 − S) U_fᵀ; covariance I − 11ᵀ/n − U_f S U_fᵀ.
                let scaled = DMatrix::from_fn(len, m, |i, j| uf[(i, j)] * shrink(j, a));
                let mut ih = &scaled * uf.transpose();
                if !s.complete {
                    ih.neg_mut();
                    ih.add_scalar_mut(-1.0 / n as f64);
                    for i in 0..len {
                        ih[(i, i)] += 1.0;
                    }
                }
                let rf = DMatrix::from_fn(len, cols.len() * k, |i, c| {
                    r[(start + i, cols[c / k] * k + c % k)]
                });
                // One small inverse, then a product over every block at this alpha.
                let e = solve_spd(ih, &DMatrix::identity(len, len))? * rf;
                for (c, &b) in cols.iter().enumerate() {
                    total[b] += if len < 2 {
                        f64::NAN
                    } else {
                        (0..k)
                            .map(|t| {
                                let yf = |i: usize| ybt[(b * k + t, start + i)];
                                let mean = (0..len).map(yf).sum::<f64>() / len as f64;
                                let ss_tot: f64 = (0..len).map(|i| (yf(i) - mean).powi(2)).sum();
                                let ss_res: f64 = e.column(c * k + t).norm_squared();
                                r2_from_sums(ss_res, ss_tot)
                            })
                            .sum::<f64>()
                            / k as f64
                    };
                }
            }
        }
        Ok(total.iter().map(|v| v / val.len() as f64).collect())
    }

    /// Mean over the validation folds given to [`RidgeCv::decompose_centered`] of the fold's R²
    /// (uniform over targets) of a ridge refitted on the other folds at the fixed `alpha`.
    pub fn validation_r2(&self, y: &DMatrix<f64>, alpha: f64) -> Result<f64> {
        let (n, k) = y.shape();
        if n != self.inner.n_samples {
            return Err(input_err(format!(
                "validation: y has {n} rows for {} decomposed rows",
                self.inner.n_samples
            )));
        }
        let ysum: Vec<f64> = (0..k).map(|t| y.column(t).sum()).collect();
        let mut scores = Vec::new();
        match &self.inner.folds {
            FoldData::Cov { c, scatter, val } => {
                let x = &self.inner.coef_basis;
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
            FoldData::Gram { k: kern, val } => {
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
                return Err(input_err(
                    "this decomposition was made without validation folds",
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
    crate::probe::metrics::r2_score(&rm(truth), &rm(pred), k).unwrap_or(f64::NAN)
}

/// The result of [`RidgeCv::fit`]: the model at the chosen alpha plus the CV curve, and the
/// decomposition so targets can be refitted (permutations) without touching X again.
#[derive(Clone, Debug)]
pub struct RidgeCvFit {
    pub model: RidgeModel,
    /// Index of the chosen alpha in the grid.
    pub alpha_index: usize,
    /// CV error per alpha, in grid order: mean over samples and targets of the squared
    /// leave-one-out error (= −`best_score_` of scikit-learn at the chosen alpha), or the GCV value.
    pub cv_errors: Vec<f64>,
    pub cv_mode: CvMode,
    decomposition: RidgeDecomposition,
    y_centered: DMatrix<f64>,
    y_mean: Vec<f64>,
    /// `Uᵀ(y − ȳ)`, m × k.
    zeta: DMatrix<f64>,
}

impl RidgeCvFit {
    pub fn alpha(&self) -> f64 {
        self.model.alpha
    }

    /// The lowest CV error (the chosen alpha's).
    pub fn best_cv_error(&self) -> f64 {
        self.cv_errors[self.alpha_index]
    }

    pub fn decomposition(&self) -> &RidgeDecomposition {
        &self.decomposition
    }

    pub fn predict<T: Copy + Into<f64>>(&self, x: MatrixRef<'_, T>) -> Result<Matrix<f64>> {
        self.model.predict(x)
    }

    /// Refits with target rows permuted, `y'[i] = y[permutation[i]]`, alpha re-chosen by CV.
    /// Identical to a from-scratch fit on the permuted targets, but only `Bᵀy'` is recomputed.
    pub fn refit_permuted(&self, permutation: &[usize]) -> Result<RidgeCvFit> {
        let n = self.y_centered.nrows();
        if permutation.len() != n {
            return Err(input_err(format!(
                "permutation has {} entries for {n} rows",
                permutation.len()
            )));
        }
        let mut seen = vec![false; n];
        for &p in permutation {
            if p >= n || std::mem::replace(&mut seen[p], true) {
                return Err(input_err("not a permutation of the row indices"));
            }
        }
        // A permutation keeps the target means, so the centered targets just move rows.
        let yc = DMatrix::from_fn(n, self.y_centered.ncols(), |i, t| {
            self.y_centered[(permutation[i], t)]
        });
        Ok(self.decomposition.fit_centered(yc, self.y_mean.clone()))
    }

    /// In-sample predictions on the decomposed rows, column-major n × k (`ȳ + U S_α Uᵀ(y − ȳ)`,
    /// equal to `predict` on the training rows up to rounding).
    pub fn predict_train(&self) -> DMatrix<f64> {
        let d = &*self.decomposition.inner;
        let a = self.alpha_index;
        let w = DMatrix::from_fn(self.zeta.nrows(), self.zeta.ncols(), |j, t| {
            self.zeta[(j, t)] * d.s(j, a)
        });
        let mut p = mul_skinny(full(&d.u), &w);
        for (t, m) in self.y_mean.iter().enumerate() {
            p.column_mut(t).add_scalar_mut(*m);
        }
        p
    }

    /// Leave-one-out predictions of the decomposed rows, column-major n × k, at the chosen
    /// alpha: row i's prediction by the ridge fitted without row i, `y_i − r_i / (1 − h_ii)`
    /// (exact for a linear smoother). The residuals come from `1 − s` on the kernel route, as
    /// in the fit, so a near-interpolating fit loses no digits.
    pub fn predict_leave_one_out(&self) -> DMatrix<f64> {
        let d = &*self.decomposition.inner;
        let a = self.alpha_index;
        let w = DMatrix::from_fn(self.zeta.nrows(), self.zeta.ncols(), |j, t| {
            let sv = d.s(j, a);
            self.zeta[(j, t)] * if d.complete { 1.0 - sv } else { sv }
        });
        let prod = mul_skinny(full(&d.u), &w);
        DMatrix::from_fn(self.y_centered.nrows(), self.y_centered.ncols(), |i, t| {
            let yc = self.y_centered[(i, t)];
            let r = if d.complete {
                prod[(i, t)]
            } else {
                yc - prod[(i, t)]
            };
            yc - r / d.one_minus_h[(i, a)] + self.y_mean[t]
        })
    }

    /// Predictions of the held-out rows given to the decomposition, column-major n_test × k
    /// (equal to `predict` on them up to rounding).
    pub fn predict_held_out(&self) -> Result<DMatrix<f64>> {
        let basis = self.decomposition.held_out_basis()?;
        let w = self.decomposition.weights(&self.zeta, self.alpha_index);
        let mut p = mul_skinny(full(basis), &w);
        for (t, m) in self.y_mean.iter().enumerate() {
            p.column_mut(t).add_scalar_mut(*m);
        }
        Ok(p)
    }

    /// Held-out R² of this fit against a null of fits to shuffled training targets.
    pub fn permutation_test_r2<T: Copy + Into<f64>>(
        &self,
        x_test: MatrixRef<'_, T>,
        y_test: MatrixRef<'_, f64>,
        test: &PermutationTest,
    ) -> Result<PermutationResult> {
        test.run(self, |fit| {
            let pred = fit.predict(x_test)?;
            crate::probe::metrics::r2_score(y_test.data(), pred.data(), y_test.n_cols())
        })
    }

    /// In-sample CV score (−CV error of the chosen alpha) against shuffled targets; needs no
    /// test set.
    pub fn permutation_test_cv(&self, test: &PermutationTest) -> Result<PermutationResult> {
        test.run(self, |fit| Ok(-fit.best_cv_error()))
    }
}

// ---------------------------------------------------------------------------------------------
// Permutation tests
// ---------------------------------------------------------------------------------------------

/// A permutation test: refit on `n_permutations` row-shuffles of the training targets (rows are
/// shuffled whole, so lat/lon pairs stay together) and compare scores. Defaults: 100
/// permutations, seed 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermutationTest {
    pub n_permutations: usize,
    pub seed: u64,
}

impl Default for PermutationTest {
    fn default() -> Self {
        Self {
            n_permutations: 100,
            seed: 0,
        }
    }
}

/// Observed score, the null distribution, and `p = (1 + #{null ≥ observed}) / (1 + n)` (never 0;
/// scikit-learn's `permutation_test_score` convention).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermutationResult {
    pub observed: f64,
    pub null_scores: Vec<f64>,
    pub p_value: f64,
}

impl PermutationTest {
    /// Scores `fit` and each permuted refit with `score` (higher is better: negate errors).
    pub fn run(
        &self,
        fit: &RidgeCvFit,
        mut score: impl FnMut(&RidgeCvFit) -> Result<f64>,
    ) -> Result<PermutationResult> {
        if self.n_permutations == 0 {
            return Err(input_err(
                "a permutation test needs at least one permutation",
            ));
        }
        let observed = score(fit)?;
        let mut rng = SplitMix64::new(self.seed);
        let n = fit.decomposition.n_samples();
        let mut null_scores = Vec::with_capacity(self.n_permutations);
        for _ in 0..self.n_permutations {
            let perm = rng.permutation(n);
            null_scores.push(score(&fit.refit_permuted(&perm)?)?);
        }
        let at_least = null_scores.iter().filter(|&&s| s >= observed).count();
        let p_value = (1 + at_least) as f64 / (1 + self.n_permutations) as f64;
        Ok(PermutationResult {
            observed,
            null_scores,
            p_value,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Probe = standardize → RidgeCv → unstandardize
// ---------------------------------------------------------------------------------------------

/// A standardized ridge probe. Defaults: standardize features and targets (statistics from the
/// training rows only), then [`RidgeCv::default`]. Predictions come back in target units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub ridge: RidgeCv,
    pub standardize_features: bool,
    pub standardize_targets: bool,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            ridge: RidgeCv::default(),
            standardize_features: true,
            standardize_targets: true,
        }
    }
}

/// A fitted [`Probe`].
#[derive(Clone, Debug)]
pub struct ProbeFit {
    pub x_scaler: Option<StandardScaler>,
    pub y_scaler: Option<StandardScaler>,
    pub ridge: RidgeCvFit,
}

impl Probe {
    pub fn fit<T: Copy + Into<f64>>(
        &self,
        x_train: MatrixRef<'_, T>,
        y_train: MatrixRef<'_, f64>,
    ) -> Result<ProbeFit> {
        let (x_scaler, y_scaler) = (
            self.standardize_features
                .then(|| StandardScaler::fit(x_train))
                .transpose()?,
            self.standardize_targets
                .then(|| StandardScaler::fit(y_train))
                .transpose()?,
        );
        let y = match &y_scaler {
            Some(s) => s.transform(y_train)?,
            None => Matrix::new(y_train.data().to_vec(), y_train.n_rows(), y_train.n_cols())?,
        };
        let ridge = match &x_scaler {
            Some(s) => self.ridge.fit(s.transform(x_train)?.view(), y.view())?,
            None => self.ridge.fit(x_train, y.view())?,
        };
        Ok(ProbeFit {
            x_scaler,
            y_scaler,
            ridge,
        })
    }

    /// Held-out R² (uniform average over targets) of a probe fitted on each fold's train rows
    /// and scored on its test rows: use [`Split::validation_folds`] for honest layer selection.
    pub fn cross_val_r2<T: Copy + Into<f64>>(
        &self,
        x: MatrixRef<'_, T>,
        y: MatrixRef<'_, f64>,
        folds: &[Split],
    ) -> Result<Vec<f64>> {
        folds
            .iter()
            .map(|fold| {
                let fit = self.fit(
                    x.select_rows(&fold.train)?.view(),
                    y.select_rows(&fold.train)?.view(),
                )?;
                let pred = fit.predict(x.select_rows(&fold.test)?.view())?;
                let truth = y.select_rows(&fold.test)?;
                crate::probe::metrics::r2_score(truth.data(), pred.data(), y.n_cols())
            })
            .collect()
    }
}

impl ProbeFit {
    pub fn alpha(&self) -> f64 {
        self.ridge.alpha()
    }

    /// Predictions in the original target units.
    pub fn predict<T: Copy + Into<f64>>(&self, x: MatrixRef<'_, T>) -> Result<Matrix<f64>> {
        let z = match &self.x_scaler {
            Some(s) => self.ridge.predict(s.transform(x)?.view())?,
            None => self.ridge.predict(x)?,
        };
        match &self.y_scaler {
            Some(s) => s.inverse_transform(z.view()),
            None => Ok(z),
        }
    }

    /// Held-out R² against shuffled training targets. R² is unchanged by the per-target affine
    /// target scaling, so the test runs on the standardized scale and reuses the decomposition.
    pub fn permutation_test_r2<T: Copy + Into<f64>>(
        &self,
        x_test: MatrixRef<'_, T>,
        y_test: MatrixRef<'_, f64>,
        test: &PermutationTest,
    ) -> Result<PermutationResult> {
        let y = match &self.y_scaler {
            Some(s) => s.transform(y_test)?,
            None => Matrix::new(y_test.data().to_vec(), y_test.n_rows(), y_test.n_cols())?,
        };
        match &self.x_scaler {
            Some(s) => self
                .ridge
                .permutation_test_r2(s.transform(x_test)?.view(), y.view(), test),
            None => self.ridge.permutation_test_r2(x_test, y.view(), test),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_matrix(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = SplitMix64::new(seed);
        DMatrix::from_fn(n, d, |_, _| rng.std_normal())
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

    /// Leave-one-out predictions equal refits without each row, on both routes.
    #[test]
    fn leave_one_out_predictions_equal_refits_without_the_row() {
        for (n, d) in [(30, 6), (12, 20)] {
            let x = rand_matrix(n, d, 11);
            let y = &x * rand_matrix(d, 2, 12) * 0.5 + rand_matrix(n, 2, 13);
            let alpha = 0.7;
            let ridge = RidgeCv {
                alphas: vec![alpha],
                ..RidgeCv::default()
            };
            let loo = ridge
                .decompose(MatrixRef::new(&row_major(&x), n, d).unwrap())
                .unwrap()
                .fit(MatrixRef::new(&row_major(&y), n, 2).unwrap())
                .unwrap()
                .predict_leave_one_out();
            for i in 0..n {
                let keep: Vec<usize> = (0..n).filter(|&r| r != i).collect();
                let xs = x.select_rows(&keep);
                let ys = y.select_rows(&keep);
                let (xm, beta, ym) = ridge_direct(&xs, &ys, alpha);
                for t in 0..2 {
                    let p: f64 = ym[t]
                        + (0..d)
                            .map(|j| (x[(i, j)] - xm[j]) * beta[(j, t)])
                            .sum::<f64>();
                    assert!(
                        (loo[(i, t)] - p).abs() < 1e-9 * (1.0 + p.abs()),
                        "n {n}, d {d}, row {i}, target {t}: {} vs {p}",
                        loo[(i, t)]
                    );
                }
            }
        }
    }

    fn engine_checks(n: usize, d: usize, n_test: usize) {
        let x = centered(&rand_matrix(n, d, 1));
        let x_test = rand_matrix(n_test, d, 2);
        let signal = rand_matrix(d, 2, 3);
        let y = &x * &signal * 0.3 + rand_matrix(n, 2, 4);
        let alphas = default_alphas();
        let val = vec![(0, n / 3), (n / 3, n / 3), (2 * (n / 3), n - 2 * (n / 3))];
        let dec = RidgeCv {
            alphas,
            ..RidgeCv::default()
        }
        .decompose_centered(x.clone(), vec![0.0; d], Some(&x_test), Some(&val))
        .unwrap();

        // The analysis path (centered input, held-out basis, U-space predictions) = the public
        // RidgeCv fit on row-major data (same alpha, same predictions through the coefficients).
        let fit = dec.fit_matrix(&y).unwrap();
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
        let got = row_major(&fit.predict_held_out().unwrap());
        for (g, w) in got.iter().zip(want.data()) {
            assert!(
                (g - w).abs() < 1e-8 * (1.0 + w.abs()),
                "test prediction {g} vs {w}"
            );
        }
        let want_train = reference
            .predict(MatrixRef::new(&xr, n, d).unwrap())
            .unwrap();
        for (g, w) in row_major(&fit.predict_train())
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
            let got = dec.validation_r2(&y, alpha).unwrap();
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
        let sse = dec.permuted_held_out_sse(&y, &perms, &y_test).unwrap();
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
        // The null's validation R² per block = validation_r2 of that block's targets at the
        // block's own GCV alpha (with and without a base added to the shuffled targets).
        let base = rand_matrix(n, 2, 6) * 0.5;
        let (sse0, val0) = dec.permuted_scores(&y, None, &perms, &y_test).unwrap();
        let (sse1, val1) = dec
            .permuted_scores(&y, Some(&base), &perms, &y_test)
            .unwrap();
        assert_eq!(sse0, sse);
        assert_eq!(sse1, sse);
        for (vals, with_base) in [(&val0, false), (&val1, true)] {
            for b in 0..=perms.len() {
                let yb = DMatrix::from_fn(n, 2, |i, t| {
                    let src = if b == 0 { i } else { perms[b - 1][i] };
                    y[(src, t)] + if with_base { base[(i, t)] } else { 0.0 }
                });
                let ybr = row_major(&yb);
                let f = gcv
                    .fit(
                        MatrixRef::new(&xr, n, d).unwrap(),
                        MatrixRef::new(&ybr, n, 2).unwrap(),
                    )
                    .unwrap();
                let want = dec.validation_r2(&yb, f.model.alpha).unwrap();
                assert!(
                    (vals[b] - want).abs() < 1e-8 * (1.0 + want.abs()),
                    "null validation R² n={n} d={d} b={b} base={with_base}: {} vs {want}",
                    vals[b]
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
}
