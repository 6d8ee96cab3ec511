//! Ridge probes with exact, cheap cross-validation.
//!
//! A probe is a ridge regression from one layer's activations `X` (n × d) to a few targets
//! `Y` (n × k, k = 1..3: latitude/longitude, a year, ...). The module follows scikit-learn's
//! naming and defaults so results can be checked against it:
//!
//! * [`RidgeCv`] mirrors `sklearn.linear_model.RidgeCV(alphas, fit_intercept=True)` in its default
//!   efficient leave-one-out mode (`scoring=None`, one alpha shared by all targets,
//!   `alpha_per_target=False`). One eigendecomposition of the centered data per layer
//!   ([`RidgeDecomposition`]) serves every alpha, every target set and every permutation.
//! * [`StandardScaler`] standardizes features and targets with statistics of the TRAIN rows only;
//!   [`Probe`] chains scaler → [`RidgeCv`] → inverse target scaling.
//! * [`Split`] makes seeded random, mask, and group (block) hold-outs, plus K-fold validation folds
//!   inside a training set for honest layer selection.
//! * [`PermutationTest`] refits on row-shuffled targets, reusing the decomposition.
//!
//! Inputs are row-major slices ([`MatrixRef`]); activations may be `f32`, all maths is `f64`.
//! Nothing here uses threads, files or OS randomness, so it runs unchanged in wasm32.

use std::fmt;
use std::sync::Arc;

use nalgebra::{DMatrix, SymmetricEigen};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

fn input_err(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}

// ---------------------------------------------------------------------------------------------
// Row-major matrices
// ---------------------------------------------------------------------------------------------

/// A borrowed row-major matrix: row `i` is `data[i * n_cols..(i + 1) * n_cols]`.
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef<'a, T> {
    data: &'a [T],
    n_rows: usize,
    n_cols: usize,
}

impl<'a, T: Copy> MatrixRef<'a, T> {
    /// Wraps `data`; fails unless `data.len() == n_rows * n_cols`.
    pub fn new(data: &'a [T], n_rows: usize, n_cols: usize) -> Result<Self> {
        if n_rows.checked_mul(n_cols) != Some(data.len()) {
            return Err(input_err(format!(
                "matrix of {n_rows} rows × {n_cols} columns needs {} values, got {}",
                n_rows.saturating_mul(n_cols),
                data.len()
            )));
        }
        Ok(Self {
            data,
            n_rows,
            n_cols,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    pub fn data(&self) -> &'a [T] {
        self.data
    }

    pub fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// Copies the listed rows, in the listed order (e.g. a split's `train` indices).
    pub fn select_rows(&self, rows: &[usize]) -> Result<Matrix<T>> {
        let mut data = Vec::with_capacity(rows.len() * self.n_cols);
        for &r in rows {
            if r >= self.n_rows {
                return Err(input_err(format!(
                    "row index {r} out of range for a matrix of {} rows",
                    self.n_rows
                )));
            }
            data.extend_from_slice(self.row(r));
        }
        Matrix::new(data, rows.len(), self.n_cols)
    }
}

/// An owned row-major matrix (see [`MatrixRef`]). Serializable for reports; build one with
/// [`Matrix::new`], which checks the shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Matrix<T> {
    data: Vec<T>,
    n_rows: usize,
    n_cols: usize,
}

impl<T: Copy> Matrix<T> {
    /// Fails unless `data.len() == n_rows * n_cols`.
    pub fn new(data: Vec<T>, n_rows: usize, n_cols: usize) -> Result<Self> {
        MatrixRef::new(&data, n_rows, n_cols)?;
        Ok(Self {
            data,
            n_rows,
            n_cols,
        })
    }

    pub fn view(&self) -> MatrixRef<'_, T> {
        MatrixRef {
            data: &self.data,
            n_rows: self.n_rows,
            n_cols: self.n_cols,
        }
    }

    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }
}

fn check_finite<T: Copy + Into<f64>>(what: &str, m: MatrixRef<'_, T>) -> Result<()> {
    if let Some(pos) = m.data.iter().position(|&v| !v.into().is_finite()) {
        return Err(input_err(format!(
            "{what} has a non-finite value at row {}, column {}",
            pos / m.n_cols.max(1),
            pos % m.n_cols.max(1)
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Seeded randomness (wasm-safe: no OS entropy)
// ---------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast, well-mixed 64-bit generator. Plenty
/// for shuffles and splits, and identical on every platform for a given seed.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's multiply-and-reject). `n > 0`.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "SplitMix64::below needs n > 0");
        let range = n as u64;
        let mut m = (self.next_u64() as u128) * (range as u128);
        if (m as u64) < range {
            let threshold = range.wrapping_neg() % range;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (range as u128);
            }
        }
        (m >> 64) as usize
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }

    /// A uniformly random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

// ---------------------------------------------------------------------------------------------
// Standardization
// ---------------------------------------------------------------------------------------------

/// Per-column standardization `z = (x - mean) / scale`, like scikit-learn's `StandardScaler`:
/// population standard deviation (ddof = 0), and scale 1 for a (near-)constant column so it maps
/// to 0 instead of dividing by zero. Fit it on TRAIN rows only and apply it to test rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StandardScaler {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
}

impl StandardScaler {
    /// Column means and standard deviations of `x` (two-pass, in f64).
    pub fn fit<T: Copy + Into<f64>>(x: MatrixRef<'_, T>) -> Result<Self> {
        if x.n_rows == 0 {
            return Err(input_err("cannot standardize with no rows"));
        }
        check_finite("standardizer input", x)?;
        let (n, d) = (x.n_rows, x.n_cols);
        let mut mean = vec![0.0; d];
        for i in 0..n {
            for (m, &v) in mean.iter_mut().zip(x.row(i)) {
                *m += v.into();
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; d];
        for i in 0..n {
            for ((s, &v), &m) in var.iter_mut().zip(x.row(i)).zip(&mean) {
                let c = v.into() - m;
                *s += c * c;
            }
        }
        let scale = var
            .iter()
            .zip(&mean)
            .map(|(&s, &m)| {
                let sd = (s / n as f64).sqrt();
                // Same guard as scikit-learn's `_handle_zeros_in_scale`: a spread that is only
                // rounding noise relative to the mean counts as constant.
                if sd <= 10.0 * f64::EPSILON * m.abs().max(f64::MIN_POSITIVE) {
                    1.0
                } else {
                    sd
                }
            })
            .collect();
        Ok(Self { mean, scale })
    }

    pub fn n_features(&self) -> usize {
        self.mean.len()
    }

    /// `(x - mean) / scale`, row-major f64.
    pub fn transform<T: Copy + Into<f64>>(&self, x: MatrixRef<'_, T>) -> Result<Matrix<f64>> {
        self.check_cols(x.n_cols)?;
        let data = x
            .data
            .chunks_exact(x.n_cols.max(1))
            .flat_map(|row| {
                row.iter()
                    .zip(&self.mean)
                    .zip(&self.scale)
                    .map(|((&v, &m), &s)| (v.into() - m) / s)
            })
            .collect();
        Matrix::new(data, x.n_rows, x.n_cols)
    }

    /// `z * scale + mean`: maps standardized predictions back to original units.
    pub fn inverse_transform(&self, z: MatrixRef<'_, f64>) -> Result<Matrix<f64>> {
        self.check_cols(z.n_cols)?;
        let data = z
            .data
            .chunks_exact(z.n_cols.max(1))
            .flat_map(|row| {
                row.iter()
                    .zip(&self.mean)
                    .zip(&self.scale)
                    .map(|((&v, &m), &s)| v * s + m)
            })
            .collect();
        Matrix::new(data, z.n_rows, z.n_cols)
    }

    fn check_cols(&self, n_cols: usize) -> Result<()> {
        if n_cols != self.mean.len() {
            return Err(input_err(format!(
                "standardizer was fitted on {} columns, got {n_cols}",
                self.mean.len()
            )));
        }
        Ok(())
    }
}

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
        RidgeDecomposition::new(self, x)
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
/// With `Xc` the centered `X` (`X` itself when `fit_intercept` is false) and ridge hat matrix
/// `H_α = 1 1ᵀ/n + Xc (XcᵀXc + αI)⁻¹ Xcᵀ` (the intercept is unpenalized):
/// * covariance route: `XcᵀXc = V Λ Vᵀ`, loadings `P = Xc V`; then `H_α = 11ᵀ/n + P (Λ+α)⁻¹ Pᵀ`.
/// * Gram route: `Xc Xcᵀ = Q Λ Qᵀ` over the space orthogonal to `1`; then
///   `I - H_α = Q α(Λ+α)⁻¹ Qᵀ`, which gives residuals with no cancellation even when the fit
///   nearly interpolates (n ≤ d, small α).
///
/// Per-alpha leverages `1 - h_ii` and `tr(I - H)` depend on X only and are computed here once,
/// so a new target matrix costs one projection `Bᵀy` plus one matrix product over the alphas.
#[derive(Clone)]
pub struct RidgeDecomposition {
    inner: Arc<DecompositionInner>,
}

struct DecompositionInner {
    route: Route,
    cv_mode: CvMode,
    fit_intercept: bool,
    n_samples: usize,
    n_features: usize,
    alphas: Vec<f64>,
    x_mean: Vec<f64>,
    /// Λ, clamped at 0 (a negative eigenvalue of a PSD matrix is rounding).
    eigenvalues: Vec<f64>,
    /// `P` (n × d) on the covariance route, `Q` (n × m) on the Gram route.
    basis: DMatrix<f64>,
    /// `V` (d × d) on the covariance route, `Xc` (n × d) on the Gram route.
    to_coef: DMatrix<f64>,
    /// `1 - h_ii(α)`, n × n_alphas.
    one_minus_leverage: DMatrix<f64>,
    /// `tr(I - H_α)` per alpha (GCV's effective residual degrees of freedom).
    residual_dof: Vec<f64>,
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
            .finish()
    }
}

fn symmetric_eigen(mut m: DMatrix<f64>) -> Result<(Vec<f64>, DMatrix<f64>)> {
    // Symmetrize exactly: the eigensolver assumes it and the gemm result may differ by an ulp.
    let n = m.nrows();
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (m[(i, j)] + m[(j, i)]);
            m[(i, j)] = v;
            m[(j, i)] = v;
        }
    }
    let max_iter = 1000.max(100 * n);
    let eig = SymmetricEigen::try_new(m, f64::EPSILON, max_iter).ok_or_else(|| {
        Error::Compute(format!(
            "eigendecomposition of a {n} × {n} matrix did not converge"
        ))
    })?;
    Ok((
        eig.eigenvalues.iter().map(|&l| l.max(0.0)).collect(),
        eig.eigenvectors,
    ))
}

impl RidgeDecomposition {
    fn new<T: Copy + Into<f64>>(cfg: &RidgeCv, x: MatrixRef<'_, T>) -> Result<Self> {
        cfg.validate()?;
        let (n, d) = (x.n_rows, x.n_cols);
        if d == 0 {
            return Err(input_err("ridge needs at least one feature"));
        }
        let min_rows = if cfg.fit_intercept { 2 } else { 1 };
        if n < min_rows {
            return Err(input_err(format!(
                "ridge with cross-validation needs at least {min_rows} rows, got {n}"
            )));
        }
        check_finite("X", x)?;

        let mut x_mean = vec![0.0; d];
        if cfg.fit_intercept {
            for i in 0..n {
                for (m, &v) in x_mean.iter_mut().zip(x.row(i)) {
                    *m += v.into();
                }
            }
            x_mean.iter_mut().for_each(|m| *m /= n as f64);
        }
        let xc = DMatrix::from_fn(n, d, |i, j| x.data[i * d + j].into() - x_mean[j]);

        let route = match cfg.route {
            Route::Auto if n <= d => Route::Gram,
            Route::Auto => Route::Covariance,
            r => r,
        };
        let alphas = cfg.alphas.clone();
        let n_f = n as f64;

        let (eigenvalues, basis, to_coef) = match route {
            Route::Covariance => {
                let cov = xc.transpose() * &xc;
                let (lambda, v) = symmetric_eigen(cov)?;
                let p = &xc * &v;
                (lambda, p, v)
            }
            _ => {
                let mut gram = &xc * xc.transpose();
                if cfg.fit_intercept {
                    // Centering puts `1` in the kernel's null space. Lift it to an eigenvalue
                    // above the whole spectrum (2·trace + 1 > λ_max) so its eigenvector cannot
                    // mix with genuine directions, then drop it: it carries the unpenalized
                    // intercept, and I - H has no component along it.
                    gram.add_scalar_mut((2.0 * gram.trace() + 1.0) / n_f);
                }
                let (mut lambda, mut q) = symmetric_eigen(gram)?;
                if cfg.fit_intercept {
                    let idx = (0..q.ncols())
                        .max_by(|&a, &b| {
                            q.column(a).sum().abs().total_cmp(&q.column(b).sum().abs())
                        })
                        .expect("n >= 2 eigenvectors");
                    lambda.remove(idx);
                    q = q.remove_column(idx);
                }
                (lambda, q, xc)
            }
        };

        // Leverage terms for every alpha in one product: (B∘B) W, W[j, a] = weight(λ_j, α_a).
        let m = eigenvalues.len();
        let b2 = basis.map(|v| v * v);
        let (one_minus_leverage, residual_dof) = match route {
            Route::Covariance => {
                let w =
                    DMatrix::from_fn(m, alphas.len(), |j, a| 1.0 / (eigenvalues[j] + alphas[a]));
                let h = &b2 * &w;
                let base = if cfg.fit_intercept {
                    1.0 - 1.0 / n_f
                } else {
                    1.0
                };
                let dof = alphas
                    .iter()
                    .map(|&a| {
                        let fitted: f64 = eigenvalues.iter().map(|&l| l / (l + a)).sum();
                        n_f - if cfg.fit_intercept { 1.0 } else { 0.0 } - fitted
                    })
                    .collect();
                (h.map(|v| base - v), dof)
            }
            _ => {
                let w = DMatrix::from_fn(m, alphas.len(), |j, a| {
                    alphas[a] / (eigenvalues[j] + alphas[a])
                });
                let dof = (0..alphas.len()).map(|a| w.column(a).sum()).collect();
                (&b2 * &w, dof)
            }
        };

        Ok(Self {
            inner: Arc::new(DecompositionInner {
                route,
                cv_mode: cfg.cv_mode,
                fit_intercept: cfg.fit_intercept,
                n_samples: n,
                n_features: d,
                alphas,
                x_mean,
                eigenvalues,
                basis,
                to_coef,
                one_minus_leverage,
                residual_dof,
            }),
        })
    }

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

    fn fit_centered(&self, yc: DMatrix<f64>, y_mean: Vec<f64>) -> RidgeCvFit {
        let d = &*self.inner;
        let (n, k, n_alphas) = (d.n_samples, yc.ncols(), d.alphas.len());
        let lambda = &d.eigenvalues;
        let m = lambda.len();

        // The only data-dependent projection: Bᵀ y (m × k).
        let z = d.basis.tr_mul(&yc);

        // Residuals for all alphas at once: B · [z ⊙ f(λ, α)] with one gemm (n × m × k·A).
        let gram = d.route == Route::Gram;
        let zs = DMatrix::from_fn(m, n_alphas * k, |j, col| {
            let (a, t) = (col / k, col % k);
            let alpha = d.alphas[a];
            if gram {
                z[(j, t)] * alpha / (lambda[j] + alpha)
            } else {
                z[(j, t)] / (lambda[j] + alpha)
            }
        });
        let products = &d.basis * &zs;

        let n_entries = (n * k) as f64;
        let mut cv_errors = Vec::with_capacity(n_alphas);
        for a in 0..n_alphas {
            let mut loo = 0.0;
            let mut rss = 0.0;
            for t in 0..k {
                let col = products.column(a * k + t);
                for i in 0..n {
                    // Gram route: the product IS the residual (I - H) y; covariance: it is ŷ.
                    let r = if gram { col[i] } else { yc[(i, t)] - col[i] };
                    let e = r / d.one_minus_leverage[(i, a)];
                    loo += e * e;
                    rss += r * r;
                }
            }
            cv_errors.push(match d.cv_mode {
                CvMode::LeaveOneOut => loo / n_entries,
                CvMode::Generalized => {
                    let dof_frac = d.residual_dof[a] / n as f64;
                    (rss / n_entries) / (dof_frac * dof_frac)
                }
            });
        }

        // First strict minimum in grid order, as scikit-learn (NaN never wins).
        let mut best = 0;
        for a in 1..n_alphas {
            if cv_errors[a] < cv_errors[best] || cv_errors[best].is_nan() {
                best = a;
            }
        }

        let model = self.coefficients(&z, &y_mean, best);
        RidgeCvFit {
            model,
            alpha_index: best,
            cv_errors,
            cv_mode: d.cv_mode,
            decomposition: self.clone(),
            y_centered: yc,
            y_mean,
        }
    }

    fn coefficients(&self, z: &DMatrix<f64>, y_mean: &[f64], alpha_index: usize) -> RidgeModel {
        let d = &*self.inner;
        let alpha = d.alphas[alpha_index];
        let lambda = &d.eigenvalues;
        let scaled = DMatrix::from_fn(z.nrows(), z.ncols(), |j, t| z[(j, t)] / (lambda[j] + alpha));
        // Covariance: β = V (Λ+α)⁻¹ Pᵀy. Gram: dual c = Q (Λ+α)⁻¹ Qᵀy, β = Xcᵀ c.
        let beta = match d.route {
            Route::Covariance => &d.to_coef * scaled,
            _ => d.to_coef.tr_mul(&(&d.basis * scaled)),
        };
        let k = z.ncols();
        let n_features = d.n_features;
        let mut coef = Vec::with_capacity(k * n_features);
        let mut intercept = Vec::with_capacity(k);
        for (t, &ym) in y_mean.iter().enumerate() {
            let col = beta.column(t);
            coef.extend(col.iter().copied());
            let shift: f64 = col.iter().zip(&d.x_mean).map(|(b, m)| b * m).sum();
            intercept.push(if d.fit_intercept { ym - shift } else { 0.0 });
        }
        RidgeModel {
            alpha,
            n_features,
            n_targets: k,
            coef,
            intercept,
        }
    }
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

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

/// Row indices of a train/test split, each sorted ascending and disjoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// One leave-one-group-out fold: `group` is the held-out block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFold<G> {
    pub group: G,
    pub split: Split,
}

impl Split {
    /// Seeded random split; `n_test = ceil(test_fraction · n)` as scikit-learn's
    /// `train_test_split`. Both sides must be non-empty.
    pub fn random(n_samples: usize, test_fraction: f64, seed: u64) -> Result<Split> {
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(input_err(format!(
                "test fraction must be in (0, 1), got {test_fraction}"
            )));
        }
        let n_test = (test_fraction * n_samples as f64).ceil() as usize;
        if n_test == 0 || n_test >= n_samples {
            return Err(input_err(format!(
                "a test fraction of {test_fraction} leaves no train or no test rows out of {n_samples}"
            )));
        }
        let perm = SplitMix64::new(seed).permutation(n_samples);
        let mut test = perm[..n_test].to_vec();
        let mut train = perm[n_test..].to_vec();
        test.sort_unstable();
        train.sort_unstable();
        Ok(Split { train, test })
    }

    /// `true` marks a test row.
    pub fn from_test_mask(test_mask: &[bool]) -> Result<Split> {
        let (test, train): (Vec<usize>, Vec<usize>) =
            (0..test_mask.len()).partition(|&i| test_mask[i]);
        if test.is_empty() || train.is_empty() {
            return Err(input_err("the test mask leaves no train or no test rows"));
        }
        Ok(Split { train, test })
    }

    /// Holds out every row whose group equals `held_out`; all other rows train.
    pub fn hold_out_group<G: PartialEq>(groups: &[G], held_out: &G) -> Result<Split> {
        let mask: Vec<bool> = groups.iter().map(|g| g == held_out).collect();
        Self::from_test_mask(&mask)
    }

    /// Shuffled K-fold over this split's TRAIN rows (the test rows never appear): fold sizes differ
    /// by at most one, the first `n_train % n_folds` folds being larger, as scikit-learn's `KFold`.
    pub fn validation_folds(&self, n_folds: usize, seed: u64) -> Result<Vec<Split>> {
        let n = self.train.len();
        if n_folds < 2 || n_folds > n {
            return Err(input_err(format!(
                "need 2 ≤ folds ≤ training rows, got {n_folds} folds for {n} rows"
            )));
        }
        let mut order = self.train.clone();
        SplitMix64::new(seed).shuffle(&mut order);
        let mut fold_of = vec![0usize; n];
        let (base, extra) = (n / n_folds, n % n_folds);
        let mut start = 0;
        for f in 0..n_folds {
            let len = base + usize::from(f < extra);
            fold_of[start..start + len].iter_mut().for_each(|x| *x = f);
            start += len;
        }
        Ok(folds_from_assignment(&order, &fold_of, n_folds))
    }

    /// K folds over this split's TRAIN rows that keep each group whole (scikit-learn's
    /// `GroupKFold`): groups, largest first (ties by group order), go to the currently smallest
    /// fold. `groups` is indexed by row over the whole data set.
    pub fn validation_group_folds<G: Ord + Clone>(
        &self,
        groups: &[G],
        n_folds: usize,
    ) -> Result<Vec<Split>> {
        if let Some(&r) = self.train.iter().find(|&&r| r >= groups.len()) {
            return Err(input_err(format!(
                "row {r} has no group label ({} labels)",
                groups.len()
            )));
        }
        let mut sizes: std::collections::BTreeMap<&G, usize> = std::collections::BTreeMap::new();
        for &r in &self.train {
            *sizes.entry(&groups[r]).or_default() += 1;
        }
        if n_folds < 2 || n_folds > sizes.len() {
            return Err(input_err(format!(
                "need 2 ≤ folds ≤ groups, got {n_folds} folds for {} groups",
                sizes.len()
            )));
        }
        let mut by_size: Vec<(&G, usize)> = sizes.into_iter().collect();
        by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut fold_sizes = vec![0usize; n_folds];
        let mut fold_of_group = std::collections::BTreeMap::new();
        for (g, size) in by_size {
            let f = (0..n_folds).min_by_key(|&f| (fold_sizes[f], f)).unwrap();
            fold_sizes[f] += size;
            fold_of_group.insert(g, f);
        }
        let fold_of: Vec<usize> = self
            .train
            .iter()
            .map(|&r| fold_of_group[&groups[r]])
            .collect();
        Ok(folds_from_assignment(&self.train, &fold_of, n_folds))
    }
}

fn folds_from_assignment(rows: &[usize], fold_of: &[usize], n_folds: usize) -> Vec<Split> {
    (0..n_folds)
        .map(|f| {
            let mut train = Vec::new();
            let mut test = Vec::new();
            for (&r, &g) in rows.iter().zip(fold_of) {
                if g == f {
                    test.push(r);
                } else {
                    train.push(r);
                }
            }
            train.sort_unstable();
            test.sort_unstable();
            Split { train, test }
        })
        .collect()
}

/// Leave-one-group-out: one fold per distinct group (in sorted group order) holding out exactly
/// that group's rows, so a group is never on both sides. Needs at least two groups.
pub fn leave_one_group_out<G: Ord + Clone>(groups: &[G]) -> Result<Vec<GroupFold<G>>> {
    let distinct: std::collections::BTreeSet<&G> = groups.iter().collect();
    if distinct.len() < 2 {
        return Err(input_err(format!(
            "leave-one-group-out needs at least 2 groups, got {}",
            distinct.len()
        )));
    }
    distinct
        .into_iter()
        .map(|g| {
            Ok(GroupFold {
                group: g.clone(),
                split: Split::hold_out_group(groups, g)?,
            })
        })
        .collect()
}
