//! Dense symmetric linear algebra for the ridge probes, in f64 on nalgebra matrices: the
//! eigensolver (blocked Householder tridiagonalization as LAPACK's `dsytrd`, then divide and
//! conquer on the tridiagonal matrix, Cuppen 1981 with Gu–Eisenstat eigenvectors), a blocked
//! Cholesky solve, and the small products the probes need (`XᵀX` by blocks, skinny products,
//! unrolled dot products).
//!
//! The eigensolver is mostly matrix products: several times faster than nalgebra's
//! `SymmetricEigen` at d = 576 and more accurate (nalgebra's QR iteration leaves residuals near
//! 1e-8 on some small tridiagonal matrices).
// Index loops here follow the formulas' subscripts.
#![allow(clippy::needless_range_loop)]

use nalgebra::DMatrix;

use crate::probe::input_err;
use crate::{Error, Result};

/// Eigenvalues (clamped at 0: the matrices are PSD) and eigenvectors of a symmetric matrix:
/// Householder tridiagonalization, then divide and conquer on the tridiagonal matrix.
pub fn symmetric_eigen(mut m: DMatrix<f64>) -> Result<(Vec<f64>, DMatrix<f64>)> {
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
pub(crate) fn solve_spd(a: DMatrix<f64>, b: &DMatrix<f64>) -> Result<DMatrix<f64>> {
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
pub(crate) fn gram_t(x: &nalgebra::DMatrixView<'_, f64>) -> DMatrix<f64> {
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

pub(crate) type View<'a> = nalgebra::DMatrixView<'a, f64>;

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
pub(crate) fn mul_skinny(a: View<'_>, b: &DMatrix<f64>) -> DMatrix<f64> {
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
pub(crate) fn tr_mul_skinny(a: View<'_>, y: View<'_>) -> DMatrix<f64> {
    let m = a.ncols();
    let k = y.ncols();
    if k > 5 && m > 5 && a.nrows() > 5 {
        return a.transpose() * y;
    }
    DMatrix::from_fn(m, k, |j, t| {
        dot(a.column(j).as_slice(), y.column(t).as_slice())
    })
}

pub(crate) fn full(m: &DMatrix<f64>) -> View<'_> {
    m.columns(0, m.ncols())
}

/// Column sums of a matrix view.
pub(crate) fn col_sums(x: &nalgebra::DMatrixView<'_, f64>) -> Vec<f64> {
    (0..x.ncols()).map(|j| x.column(j).sum()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::split::SplitMix64;

    fn rand_matrix(n: usize, d: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = SplitMix64::new(seed);
        DMatrix::from_fn(n, d, |_, _| rng.std_normal())
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
}
