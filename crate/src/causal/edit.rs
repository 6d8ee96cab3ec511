//! Edit arithmetic on the residual stream: shifts along a probe's directions, erasure of them,
//! and the null directions the shifts are compared with. Plain f64 vectors, no model.
//!
//! A probe reads `W x + b` (one row of `W` per target). The smallest `δ` (in Euclidean norm)
//! with `W δ = Δ e_t` (target t moves by Δ, the others stay) is `δ = Δ Wᵀ (W Wᵀ)⁻¹ e_t`: the
//! minimum-norm solution of an underdetermined system.

use nalgebra::DMatrix;

use crate::error::{Error, Result};
use crate::probe::split::SplitMix64;

/// Per target t, the edit that moves target t's reading by exactly 1 and the others by 0.
pub fn unit_shifts(weights: &[Vec<f64>]) -> Result<Vec<Vec<f64>>> {
    let k = weights.len();
    let d = weights.first().map_or(0, Vec::len);
    if k == 0 || d == 0 {
        return Err(Error::Input("a probe with no directions".into()));
    }
    let w = DMatrix::from_fn(k, d, |t, j| weights[t][j]);
    let gram = &w * w.transpose();
    let inv = gram.try_inverse().ok_or_else(|| {
        Error::Compute(
            "the probe's directions are linearly dependent, so one target cannot move without \
             the other"
                .into(),
        )
    })?;
    let basis = w.transpose() * inv; // d × k
    Ok((0..k)
        .map(|t| basis.column(t).iter().copied().collect())
        .collect())
}

pub fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

pub fn scaled(v: &[f64], s: f64) -> Vec<f64> {
    v.iter().map(|x| x * s).collect()
}

/// An orthonormal basis of the span of `vectors` (modified Gram–Schmidt, twice for accuracy);
/// vectors already in the span of earlier ones are dropped.
pub fn orthonormal_basis(vectors: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for v in vectors {
        let mut u = v.clone();
        for _ in 0..2 {
            for b in &basis {
                let dot: f64 = u.iter().zip(b).map(|(x, y)| x * y).sum();
                u.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
            }
        }
        let n = norm(&u);
        if n > 1e-10 * norm(v).max(f64::MIN_POSITIVE) {
            basis.push(scaled(&u, 1.0 / n));
        }
    }
    basis
}

/// `v` with its components along the orthonormal `basis` removed.
pub fn project_out(v: &mut [f64], basis: &[Vec<f64>]) {
    for b in basis {
        let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
        v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
    }
}

/// `x` with its components along the orthonormal `basis` removed, in place (f32 rows of the
/// residual stream, arithmetic in f64).
pub fn erase(x: &mut [f32], basis: &[Vec<f64>]) {
    for b in basis {
        let dot: f64 = x.iter().zip(b).map(|(&x, y)| x as f64 * y).sum();
        x.iter_mut()
            .zip(b)
            .for_each(|(x, y)| *x = (*x as f64 - dot * y) as f32);
    }
}

/// `x += δ` (f32 row, f64 edit).
pub fn add(x: &mut [f32], delta: &[f64]) {
    x.iter_mut()
        .zip(delta)
        .for_each(|(x, d)| *x = (*x as f64 + d) as f32);
}

/// `count` seeded unit directions in `d` dimensions, uniform on the sphere; with `avoid`
/// (an orthonormal basis), each is drawn in the subspace orthogonal to it.
pub fn random_directions(
    count: usize,
    d: usize,
    avoid: &[Vec<f64>],
    rng: &mut SplitMix64,
) -> Vec<Vec<f64>> {
    (0..count)
        .map(|_| {
            let mut v: Vec<f64> = (0..d).map(|_| rng.std_normal()).collect();
            project_out(&mut v, avoid);
            let n = norm(&v);
            scaled(&v, 1.0 / n)
        })
        .collect()
}

/// `count` seeded random `k`-dimensional subspaces (orthonormal bases) of `d` dimensions: the
/// null for erasing a probe's `k` directions.
pub fn random_subspaces(
    count: usize,
    k: usize,
    d: usize,
    rng: &mut SplitMix64,
) -> Vec<Vec<Vec<f64>>> {
    (0..count)
        .map(|_| orthonormal_basis(&random_directions(k, d, &[], rng)))
        .collect()
}
