//! Probe metrics: R², Spearman correlation, great-circle errors, proximity error, and year errors.
//!
//! Positions are [`LatLon`] values in degrees with named fields, so latitude and longitude cannot
//! be swapped silently at a call site. Functions take `(truth, prediction)` in that order, like
//! scikit-learn's `(y_true, y_pred)`.

use serde::{Deserialize, Serialize};

use crate::probe::input_err;
use crate::Result;

fn check_same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(input_err(format!(
            "{what}: truth has {a} values but prediction has {b}"
        )));
    }
    if a == 0 {
        return Err(input_err(format!("{what}: no values")));
    }
    Ok(())
}

/// R² of each target column (`y_true`, `y_pred` row-major `n × n_targets`), with scikit-learn's
/// `r2_score` conventions: a perfect prediction scores 1 even for a constant target, an
/// imperfect prediction of a constant target scores 0 (`force_finite=True`).
pub fn r2_score_per_target(y_true: &[f64], y_pred: &[f64], n_targets: usize) -> Result<Vec<f64>> {
    check_same_len("r2_score", y_true.len(), y_pred.len())?;
    if n_targets == 0 || !y_true.len().is_multiple_of(n_targets) {
        return Err(input_err(format!(
            "r2_score: {} values do not split into {n_targets} target columns",
            y_true.len()
        )));
    }
    let n = y_true.len() / n_targets;
    if n < 2 {
        return Err(input_err(
            "r2_score is not defined for fewer than two samples",
        ));
    }
    Ok((0..n_targets)
        .map(|t| {
            let col = |v: &[f64]| -> Vec<f64> { (0..n).map(|i| v[i * n_targets + t]).collect() };
            let (yt, yp) = (col(y_true), col(y_pred));
            let mean = yt.iter().sum::<f64>() / n as f64;
            let ss_res: f64 = yt.iter().zip(&yp).map(|(a, b)| (a - b) * (a - b)).sum();
            let ss_tot: f64 = yt.iter().map(|a| (a - mean) * (a - mean)).sum();
            r2_from_sums(ss_res, ss_tot)
        })
        .collect())
}

/// R² from its sums of squares, with scikit-learn's conventions for the degenerate cases: a
/// perfect fit is 1 (even of a constant), any error on a constant target is 0.
pub fn r2_from_sums(ss_res: f64, ss_tot: f64) -> f64 {
    if ss_res == 0.0 {
        1.0
    } else if ss_tot == 0.0 {
        0.0
    } else {
        1.0 - ss_res / ss_tot
    }
}

/// R² averaged uniformly over target columns (scikit-learn's `multioutput="uniform_average"`).
pub fn r2_score(y_true: &[f64], y_pred: &[f64], n_targets: usize) -> Result<f64> {
    let per = r2_score_per_target(y_true, y_pred, n_targets)?;
    Ok(per.iter().sum::<f64>() / per.len() as f64)
}

/// 1-based ranks with ties given their average rank (scipy's `rankdata(method="average")`).
/// NaN is not allowed.
pub fn average_ranks(x: &[f64]) -> Result<Vec<f64>> {
    if x.iter().any(|v| v.is_nan()) {
        return Err(input_err("cannot rank NaN values"));
    }
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        // -0.0 and 0.0 are equal values, so compare with ==, not total order.
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1..=end; their mean is (start + 1 + end) / 2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    Ok(ranks)
}

/// Pearson correlation; NaN when either input is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    (sab / (saa.sqrt() * sbb.sqrt())).clamp(-1.0, 1.0)
}

/// Spearman rank correlation: Pearson correlation of average ranks (ties share their mean rank),
/// as `scipy.stats.spearmanr`. NaN when either input is constant; needs two or more values.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_same_len("spearman", x.len(), y.len())?;
    if x.len() < 2 {
        return Err(input_err("spearman needs at least two values"));
    }
    Ok(pearson(&average_ranks(x)?, &average_ranks(y)?))
}

/// Mean Earth radius (IUGG R1 = (2a + b)/3), km.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// A position in degrees: latitude north-positive in [-90, 90], longitude east-positive.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

/// Great-circle distance in km by the haversine formula on a sphere of [`EARTH_RADIUS_KM`].
pub fn great_circle_km(a: LatLon, b: LatLon) -> f64 {
    let (phi1, phi2) = (a.lat.to_radians(), b.lat.to_radians());
    let dphi = phi2 - phi1;
    let dlambda = (b.lon - a.lon).to_radians();
    let h = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    // Rounding can push h a hair above 1 for antipodal points.
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// Great-circle error of each prediction, km.
pub fn km_errors(truth: &[LatLon], pred: &[LatLon]) -> Result<Vec<f64>> {
    check_same_len("km_errors", truth.len(), pred.len())?;
    Ok(truth
        .iter()
        .zip(pred)
        .map(|(&t, &p)| great_circle_km(t, p))
        .collect())
}

/// Mean great-circle error, km.
pub fn mean_km_error(truth: &[LatLon], pred: &[LatLon]) -> Result<f64> {
    let e = km_errors(truth, pred)?;
    Ok(e.iter().sum::<f64>() / e.len() as f64)
}

/// Median great-circle error, km (mean of the two middle values for an even count, as numpy).
pub fn median_km_error(truth: &[LatLon], pred: &[LatLon]) -> Result<f64> {
    median(km_errors(truth, pred)?)
}

/// Median (mean of the two middle values for an even count, as numpy); an error for no values
/// or a NaN.
pub fn median(mut v: Vec<f64>) -> Result<f64> {
    if v.is_empty() || v.iter().any(|x| x.is_nan()) {
        return Err(input_err("median of no values or of NaN"));
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Ok(if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    })
}

/// Proximity error of each entity (Gurnee & Tegmark 2023): for entity `i`, the fraction of the
/// OTHER entities `j` whose *prediction* lies strictly closer to `i`'s true position than `i`'s
/// own prediction does (great-circle distances). 0 is perfect; it is scale-free, so a dense
/// region is judged by where its neighbours are placed rather than by raw km. Needs at least
/// two entities.
pub fn proximity_errors(truth: &[LatLon], pred: &[LatLon]) -> Result<Vec<f64>> {
    let all: Vec<usize> = (0..truth.len()).collect();
    proximity_errors_of(truth, pred, &all)
}

/// [`proximity_errors`] of the entities `rows` only, each still measured against every other
/// entity's prediction: a held-out block placed among all entities, not only among itself.
pub fn proximity_errors_of(truth: &[LatLon], pred: &[LatLon], rows: &[usize]) -> Result<Vec<f64>> {
    check_same_len("proximity_errors", truth.len(), pred.len())?;
    let n = truth.len();
    if n < 2 {
        return Err(input_err("proximity error needs at least two entities"));
    }
    if let Some(&i) = rows.iter().find(|&&i| i >= n) {
        return Err(input_err(format!("proximity error of entity {i} of {n}")));
    }
    // O(n²) dot products instead of O(n²) haversines: "closer than the miss" is "unit vectors'
    // dot product above the cosine of the miss angle"; pairs within rounding of the threshold
    // are decided by haversine, so the result is the definition's.
    let unit = |p: &LatLon| {
        let (la, lo) = (p.lat.to_radians(), p.lon.to_radians());
        [la.cos() * lo.cos(), la.cos() * lo.sin(), la.sin()]
    };
    let u_pred: Vec<[f64; 3]> = pred.iter().map(unit).collect();
    Ok(rows
        .iter()
        .map(|&i| {
            let ut = unit(&truth[i]);
            let miss = great_circle_km(truth[i], pred[i]);
            let cos_miss = (miss / EARTH_RADIUS_KM).cos();
            let mut closer = 0usize;
            for (j, uj) in u_pred.iter().enumerate() {
                if j == i {
                    continue;
                }
                let dot = ut[0] * uj[0] + ut[1] * uj[1] + ut[2] * uj[2];
                if (dot - cos_miss).abs() < 1e-9 {
                    if great_circle_km(truth[i], pred[j]) < miss {
                        closer += 1;
                    }
                } else if dot > cos_miss {
                    closer += 1;
                }
            }
            closer as f64 / (n - 1) as f64
        })
        .collect())
}

/// Mean of [`proximity_errors`].
pub fn mean_proximity_error(truth: &[LatLon], pred: &[LatLon]) -> Result<f64> {
    let e = proximity_errors(truth, pred)?;
    Ok(e.iter().sum::<f64>() / e.len() as f64)
}

/// Mean absolute error in years.
pub fn mean_absolute_error_years(truth_years: &[f64], pred_years: &[f64]) -> Result<f64> {
    check_same_len(
        "mean_absolute_error_years",
        truth_years.len(),
        pred_years.len(),
    )?;
    Ok(truth_years
        .iter()
        .zip(pred_years)
        .map(|(t, p)| (t - p).abs())
        .sum::<f64>()
        / truth_years.len() as f64)
}

/// Mean and its 95% interval by the normal approximation (mean ± 1.96 standard errors, sample
/// standard deviation); the interval is the mean itself for fewer than two values.
pub fn mean_ci95(v: &[f64]) -> (f64, f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (m, m, m);
    }
    let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let h = 1.96 * sd / n.sqrt();
    (m, m - h, m + h)
}

/// Least-squares slope of `y` on `x` (NaN when `x` is constant).
pub fn slope(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    if sxx == 0.0 {
        f64::NAN
    } else {
        sxy / sxx
    }
}

/// P(X ≥ k) for X ~ Binomial(n, p), summed in log space (exact for any n a dataset has).
pub fn binomial_upper_tail(n: usize, k: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let ln_fact = |m: usize| (1..=m).map(|i| (i as f64).ln()).sum::<f64>();
    let ln_n = ln_fact(n);
    (k..=n)
        .map(|j| {
            (ln_n - ln_fact(j) - ln_fact(n - j)
                + j as f64 * p.ln()
                + (n - j) as f64 * (1.0 - p).ln())
            .exp()
        })
        .sum::<f64>()
        .min(1.0)
}

/// `(1 + #{null ≥ observed}) / (1 + #null)`: a one-sided rank p-value whose floor is
/// `1 / (1 + #null)`.
pub fn rank_p_value(observed: f64, null: &[f64]) -> f64 {
    let above = null.iter().filter(|&&v| v >= observed).count();
    (1 + above) as f64 / (1 + null.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::split::SplitMix64;

    #[test]
    fn fast_proximity_equals_its_definition() {
        let mut rng = SplitMix64::new(11);
        let mut u = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let truth: Vec<LatLon> = (0..120)
            .map(|_| LatLon {
                lat: u() * 160.0 - 80.0,
                lon: u() * 360.0 - 180.0,
            })
            .collect();
        let mut pred: Vec<LatLon> = truth
            .iter()
            .map(|t| LatLon {
                lat: (t.lat + (u() - 0.5) * 40.0).clamp(-90.0, 90.0),
                lon: (t.lon + (u() - 0.5) * 60.0 + 180.0).rem_euclid(360.0) - 180.0,
            })
            .collect();
        pred[3] = truth[3]; // a perfect prediction

        // The definition, by haversines: other entities' predictions nearer the true place.
        let n = truth.len();
        let want = (0..n)
            .map(|i| {
                let miss = great_circle_km(truth[i], pred[i]);
                let closer = (0..n)
                    .filter(|&j| j != i && great_circle_km(truth[i], pred[j]) < miss)
                    .count();
                closer as f64 / (n - 1) as f64
            })
            .sum::<f64>()
            / n as f64;
        let got = mean_proximity_error(&truth, &pred).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
}
