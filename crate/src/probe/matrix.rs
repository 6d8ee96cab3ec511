//! Row-major matrices ([`MatrixRef`] borrowed, [`Matrix`] owned) and the train-only
//! [`StandardScaler`]: the shapes every probe takes and the standardization it applies.
//! Activations may be `f32`; statistics are `f64`.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

use crate::probe::input_err;
use crate::Result;

// ---------------------------------------------------------------------------------------------
// Row-major matrices
// ---------------------------------------------------------------------------------------------

/// A borrowed row-major matrix: row `i` is `data[i * n_cols..(i + 1) * n_cols]`.
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef<'a, T> {
    pub(super) data: &'a [T],
    pub(super) n_rows: usize,
    pub(super) n_cols: usize,
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

pub(super) fn check_finite<T: Copy + Into<f64>>(what: &str, m: MatrixRef<'_, T>) -> Result<()> {
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
        let rows: Vec<usize> = (0..x.n_rows).collect();
        Ok(Self::fit_rows(x, &rows))
    }

    /// The statistics of the listed rows of `x` only (e.g. a split's `train`), summed in the
    /// listed order. `rows` must be non-empty and in range; the values are not checked here.
    pub(crate) fn fit_rows<T: Copy + Into<f64>>(x: MatrixRef<'_, T>, rows: &[usize]) -> Self {
        let (n, d) = (rows.len(), x.n_cols);
        let mut mean = vec![0.0; d];
        for &i in rows {
            for (m, &v) in mean.iter_mut().zip(x.row(i)) {
                *m += v.into();
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; d];
        for &i in rows {
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
        Self { mean, scale }
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

/// Training rows (in the given order) and test rows as column-major f64 matrices, centred with
/// the training mean and, when `standardize`, divided by the training standard deviation
/// ([`StandardScaler`] fitted on the training rows).
pub(super) fn design(
    x: &[f32],
    d: usize,
    train: &[usize],
    test: &[usize],
    standardize: bool,
) -> (DMatrix<f64>, DMatrix<f64>) {
    let rows = MatrixRef {
        data: x,
        n_rows: x.len() / d.max(1),
        n_cols: d,
    };
    let StandardScaler { mean, mut scale } = StandardScaler::fit_rows(rows, train);
    if !standardize {
        scale.fill(1.0);
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
