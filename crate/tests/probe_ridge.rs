//! RidgeCv against scikit-learn (tests/fixtures/ridge_sklearn.json, written by
//! tests/fixtures/make/sklearn_ridge_fixture.py), against brute-force LOO / GCV, plus permutations,
//! splits and standardization.

use nalgebra::{DMatrix, DVector};
use probelab::probe::matrix::{Matrix, MatrixRef, StandardScaler};
use probelab::probe::ridge::{
    default_alphas, logspace, CvMode, PermutationTest, Probe, RidgeCv, Route,
};
use probelab::probe::split::{leave_one_group_out, Split, SplitMix64};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ridge_sklearn.json"
);

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// The fixture's X and y are float32-representable; rounding through f32 recovers them exactly
/// even if the JSON parser is an ulp off in f64.
fn f32s(v: &Value) -> Vec<f32> {
    f64s(v).into_iter().map(|x| x as f32).collect()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().expect("integer") as usize
}

/// |a - b| ≤ rtol · max(|b|, floor), the floor a small fraction of the vector's largest entry so
/// that entries which are zero up to rounding don't demand impossible relative accuracy.
fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = 1e-3 * scale;
    let mut worst = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / w.abs().max(floor).max(f64::MIN_POSITIVE);
        assert!(
            err <= rtol,
            "{what}[{i}]: got {g}, want {w} (relative error {err:.3e} > {rtol:.0e})"
        );
        worst = worst.max(err);
    }
    worst
}

#[test]
fn default_alphas_match_numpy_logspace() {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let numpy = f64s(&fixture["default_alphas"]);
    let ours = default_alphas();
    assert_eq!(ours.len(), 17);
    assert_eq!(ours[0], 0.01);
    assert_eq!(ours[16], 1e6);
    assert_close("default alphas", &ours, &numpy, 1e-15);
    assert_eq!(logspace(0.0, 2.0, 3), vec![1.0, 10.0, 100.0]);
}

#[test]
fn ridge_cv_matches_sklearn_fixture() {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (n, d, k) = (
            usize_of(&case["n_samples"]),
            usize_of(&case["n_features"]),
            usize_of(&case["n_targets"]),
        );
        let x = f32s(&case["x"]);
        let y: Vec<f64> = f32s(&case["y"]).into_iter().map(f64::from).collect();
        let x_test = f32s(&case["x_test"]);
        let n_test = usize_of(&case["n_test"]);
        let alphas = f64s(&case["alphas"]);
        let fit_intercept = case["fit_intercept"].as_bool().unwrap();
        let expected_route = if case["gcv_route"] == "gram" {
            Route::Gram
        } else {
            Route::Covariance
        };

        // Auto must pick scikit-learn's route; the other route must give the same answer.
        for route in [Route::Auto, Route::Gram, Route::Covariance] {
            let ridge = RidgeCv {
                alphas: alphas.clone(),
                fit_intercept,
                cv_mode: CvMode::LeaveOneOut,
                route,
            };
            let label = format!("{name} ({route:?})");
            let x_ref = MatrixRef::new(&x, n, d).unwrap();
            let x_test_ref = MatrixRef::new(&x_test, n_test, d).unwrap();
            // The analysis's path: one decomposition with the held-out rows projected
            // (RidgeCv::decompose_centered underneath), then fit.
            let fit = ridge
                .decompose_with_held_out(x_ref, Some(x_test_ref))
                .unwrap()
                .fit(MatrixRef::new(&y, n, k).unwrap())
                .unwrap();
            if route == Route::Auto {
                assert_eq!(
                    fit.decomposition().route(),
                    expected_route,
                    "{label}: route"
                );
            }
            assert_eq!(
                fit.alpha_index,
                usize_of(&case["alpha_index"]),
                "{label}: chosen alpha (cv errors {:?} vs sklearn {:?})",
                fit.cv_errors,
                f64s(&case["cv_errors"])
            );
            assert_close(
                &format!("{label} alpha"),
                &[fit.alpha()],
                &[case["alpha"].as_f64().unwrap()],
                1e-15,
            );
            let cv = assert_close(
                &format!("{label} cv_errors"),
                &fit.cv_errors,
                &f64s(&case["cv_errors"]),
                1e-6,
            );
            assert_close(
                &format!("{label} best score"),
                &[-fit.best_cv_error()],
                &[case["best_score"].as_f64().unwrap()],
                1e-6,
            );
            let coef = assert_close(
                &format!("{label} coef"),
                &fit.model.coef,
                &f64s(&case["coef"]),
                1e-6,
            );
            let icpt = assert_close(
                &format!("{label} intercept"),
                &fit.model.intercept,
                &f64s(&case["intercept"]),
                1e-6,
            );
            let pred = fit.predict(x_ref).unwrap();
            let ptr = assert_close(
                &format!("{label} train predictions"),
                pred.data(),
                &f64s(&case["predict_train"]),
                1e-6,
            );
            let pred = fit
                .predict(MatrixRef::new(&x_test, n_test, d).unwrap())
                .unwrap();
            let pte = assert_close(
                &format!("{label} test predictions"),
                pred.data(),
                &f64s(&case["predict_test"]),
                1e-6,
            );
            // The analysis predicts from the decomposition, not through the coefficients.
            let row_major = |m: DMatrix<f64>| m.transpose().as_slice().to_vec();
            assert_close(
                &format!("{label} train predictions from the decomposition"),
                &row_major(fit.predict_train()),
                &f64s(&case["predict_train"]),
                1e-6,
            );
            assert_close(
                &format!("{label} held-out predictions from the decomposition"),
                &row_major(fit.predict_held_out().unwrap()),
                &f64s(&case["predict_test"]),
                1e-6,
            );
            println!(
                "{label:>40}: alpha {:<8} worst rel err: cv {cv:.1e} coef {coef:.1e} intercept {icpt:.1e} pred {ptr:.1e}/{pte:.1e}",
                fit.alpha()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Independent checks: brute force on small data
// ---------------------------------------------------------------------------------------------

fn normal(rng: &mut SplitMix64) -> f64 {
    // Box–Muller from two uniforms in (0, 1].
    let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn random_matrix(rng: &mut SplitMix64, n: usize, d: usize, scale: f64) -> Vec<f64> {
    (0..n * d).map(|_| scale * normal(rng) + 0.5).collect()
}

/// y = X w + intercept + noise, k columns.
fn planted_targets(
    rng: &mut SplitMix64,
    x: &[f64],
    n: usize,
    d: usize,
    k: usize,
    noise: f64,
) -> Vec<f64> {
    let w: Vec<f64> = (0..d * k).map(|_| normal(rng)).collect();
    let mut y = Vec::with_capacity(n * k);
    for i in 0..n {
        for t in 0..k {
            let s: f64 = (0..d).map(|j| x[i * d + j] * w[j * k + t]).sum();
            y.push(s + 2.0 * t as f64 + noise * normal(rng));
        }
    }
    y
}

/// Plain ridge with an unpenalized intercept, by solving the normal equations on centered data.
fn naive_ridge(x: &DMatrix<f64>, y: &DMatrix<f64>, alpha: f64) -> (DMatrix<f64>, DVector<f64>) {
    let n = x.nrows() as f64;
    let xm = x.row_mean();
    let ym = y.row_mean();
    let xc = DMatrix::from_fn(x.nrows(), x.ncols(), |i, j| x[(i, j)] - xm[j]);
    let yc = DMatrix::from_fn(y.nrows(), y.ncols(), |i, t| y[(i, t)] - ym[t]);
    let a = xc.transpose() * &xc + DMatrix::identity(x.ncols(), x.ncols()) * alpha;
    let beta = a.lu().solve(&(xc.transpose() * yc)).unwrap(); // d × k
    let intercept = DVector::from_fn(y.ncols(), |t, _| {
        ym[t] - (xm.clone() * beta.column(t))[(0, 0)]
    });
    let _ = n;
    (beta, intercept)
}

fn brute_force_loo(x: &DMatrix<f64>, y: &DMatrix<f64>, alpha: f64) -> f64 {
    let n = x.nrows();
    let mut total = 0.0;
    for i in 0..n {
        let keep: Vec<usize> = (0..n).filter(|&r| r != i).collect();
        let xs = x.select_rows(&keep);
        let ys = y.select_rows(&keep);
        let (beta, icpt) = naive_ridge(&xs, &ys, alpha);
        for t in 0..y.ncols() {
            let pred = icpt[t] + (x.row(i) * beta.column(t))[(0, 0)];
            total += (y[(i, t)] - pred).powi(2);
        }
    }
    total / (n * y.ncols()) as f64
}

fn brute_force_gcv(x: &DMatrix<f64>, y: &DMatrix<f64>, alpha: f64) -> f64 {
    let n = x.nrows();
    let xm = x.row_mean();
    let ym = y.row_mean();
    let xc = DMatrix::from_fn(n, x.ncols(), |i, j| x[(i, j)] - xm[j]);
    let yc = DMatrix::from_fn(n, y.ncols(), |i, t| y[(i, t)] - ym[t]);
    let inv = (xc.transpose() * &xc + DMatrix::identity(x.ncols(), x.ncols()) * alpha)
        .try_inverse()
        .unwrap();
    let h = DMatrix::from_element(n, n, 1.0 / n as f64) + &xc * inv * xc.transpose();
    let resid = (DMatrix::identity(n, n) - &h) * &yc;
    let denom = 1.0 - h.trace() / n as f64;
    (resid.norm_squared() / (n * y.ncols()) as f64) / (denom * denom)
}

#[test]
fn loo_and_gcv_match_brute_force_on_both_routes() {
    let mut rng = SplitMix64::new(7);
    for &(n, d, k) in &[(30usize, 6usize, 2usize), (12, 20, 1), (15, 15, 3)] {
        let x = random_matrix(&mut rng, n, d, 1.5);
        let y = planted_targets(&mut rng, &x, n, d, k, 1.0);
        let xm = DMatrix::from_row_slice(n, d, &x);
        let ym = DMatrix::from_row_slice(n, k, &y);
        let alphas = vec![0.05, 0.7, 4.0, 30.0];
        for mode in [CvMode::LeaveOneOut, CvMode::Generalized] {
            for route in [Route::Gram, Route::Covariance] {
                let ridge = RidgeCv {
                    alphas: alphas.clone(),
                    cv_mode: mode,
                    route,
                    ..RidgeCv::default()
                };
                let fit = ridge
                    .fit(
                        MatrixRef::new(&x, n, d).unwrap(),
                        MatrixRef::new(&y, n, k).unwrap(),
                    )
                    .unwrap();
                let want: Vec<f64> = alphas
                    .iter()
                    .map(|&a| match mode {
                        CvMode::LeaveOneOut => brute_force_loo(&xm, &ym, a),
                        CvMode::Generalized => brute_force_gcv(&xm, &ym, a),
                    })
                    .collect();
                assert_close(
                    &format!("{n}x{d} k={k} {mode:?} {route:?}"),
                    &fit.cv_errors,
                    &want,
                    1e-9,
                );
                // The model at the chosen alpha is plain ridge at that alpha.
                let (beta, icpt) = naive_ridge(&xm, &ym, fit.alpha());
                let beta_rows: Vec<f64> = (0..k)
                    .flat_map(|t| beta.column(t).iter().copied().collect::<Vec<_>>())
                    .collect();
                assert_close("coef", &fit.model.coef, &beta_rows, 1e-9);
                assert_close("intercept", &fit.model.intercept, icpt.as_slice(), 1e-9);
            }
        }
    }
}

#[test]
fn f32_and_f64_inputs_agree_and_one_decomposition_serves_many_targets() {
    let mut rng = SplitMix64::new(11);
    let (n, d) = (40, 10);
    let x32: Vec<f32> = random_matrix(&mut rng, n, d, 1.0)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let x64: Vec<f64> = x32.iter().map(|&v| f64::from(v)).collect();
    let y2 = planted_targets(&mut rng, &x64, n, d, 2, 0.5);
    let y1: Vec<f64> = y2.iter().step_by(2).copied().collect();
    let ridge = RidgeCv::default();
    let dec = ridge
        .decompose(MatrixRef::new(&x32, n, d).unwrap())
        .unwrap();
    let a = dec.fit(MatrixRef::new(&y2, n, 2).unwrap()).unwrap();
    let b = ridge
        .fit(
            MatrixRef::new(&x64, n, d).unwrap(),
            MatrixRef::new(&y2, n, 2).unwrap(),
        )
        .unwrap();
    assert_eq!(a.model, b.model);
    // A single-target fit from the same decomposition equals a fresh one.
    let c = dec.fit(MatrixRef::new(&y1, n, 1).unwrap()).unwrap();
    let e = ridge
        .fit(
            MatrixRef::new(&x64, n, d).unwrap(),
            MatrixRef::new(&y1, n, 1).unwrap(),
        )
        .unwrap();
    assert_eq!(c.model, e.model);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let x = vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 6.0];
    let y = vec![1.0, 2.0, 4.0];
    let xr = MatrixRef::new(&x, 3, 2).unwrap();
    let yr = MatrixRef::new(&y, 3, 1).unwrap();
    assert!(MatrixRef::new(&x, 4, 2).is_err());
    let bad_alpha = RidgeCv {
        alphas: vec![1.0, 0.0],
        ..RidgeCv::default()
    };
    assert!(bad_alpha.fit(xr, yr).is_err());
    let empty = RidgeCv {
        alphas: vec![],
        ..RidgeCv::default()
    };
    assert!(empty.fit(xr, yr).is_err());
    let y_short = vec![1.0, 2.0];
    assert!(RidgeCv::default()
        .fit(xr, MatrixRef::new(&y_short, 2, 1).unwrap())
        .is_err());
    let x_nan = vec![0.0f32, f32::NAN, 2.0, 3.0, 4.0, 6.0];
    assert!(RidgeCv::default()
        .fit(MatrixRef::new(&x_nan, 3, 2).unwrap(), yr)
        .is_err());
    let one = vec![1.0f32, 2.0];
    assert!(RidgeCv::default()
        .fit(
            MatrixRef::new(&one, 1, 2).unwrap(),
            MatrixRef::new(&y[..1], 1, 1).unwrap()
        )
        .is_err());
    let fit = RidgeCv::default().fit(xr, yr).unwrap();
    assert!(fit.refit_permuted(&[0, 0, 1]).is_err());
    assert!(fit.refit_permuted(&[0, 1]).is_err());
    assert!(fit.predict(MatrixRef::new(&x, 2, 3).unwrap()).is_err());
}

// ---------------------------------------------------------------------------------------------
// Permutations
// ---------------------------------------------------------------------------------------------

#[test]
fn permutation_refit_equals_from_scratch_fit_on_permuted_targets() {
    let mut rng = SplitMix64::new(3);
    for &(n, d, route) in &[(50usize, 8usize, Route::Covariance), (20, 35, Route::Gram)] {
        let k = 2;
        let x = random_matrix(&mut rng, n, d, 1.0);
        let y = planted_targets(&mut rng, &x, n, d, k, 2.0);
        let ridge = RidgeCv {
            route,
            ..RidgeCv::default()
        };
        let xr = MatrixRef::new(&x, n, d).unwrap();
        let fit = ridge.fit(xr, MatrixRef::new(&y, n, k).unwrap()).unwrap();
        for seed in 0..5 {
            let perm = SplitMix64::new(seed).permutation(n);
            let y_perm: Vec<f64> = perm
                .iter()
                .flat_map(|&p| y[p * k..(p + 1) * k].to_vec())
                .collect();
            let scratch = ridge
                .fit(xr, MatrixRef::new(&y_perm, n, k).unwrap())
                .unwrap();
            let refit = fit.refit_permuted(&perm).unwrap();
            assert_eq!(refit.alpha_index, scratch.alpha_index);
            assert_close("cv errors", &refit.cv_errors, &scratch.cv_errors, 1e-12);
            assert_close("coef", &refit.model.coef, &scratch.model.coef, 1e-10);
            assert_close(
                "intercept",
                &refit.model.intercept,
                &scratch.model.intercept,
                1e-10,
            );
        }
        // The identity permutation gives back the original fit.
        let same = fit.refit_permuted(&(0..n).collect::<Vec<_>>()).unwrap();
        assert_eq!(same.model, fit.model);
    }
}

fn split_rows(x: &[f64], d: usize, rows: &[usize]) -> Vec<f64> {
    rows.iter()
        .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
        .collect()
}

#[test]
fn permutation_test_separates_noise_from_planted_signal() {
    let mut rng = SplitMix64::new(2024);
    let (n, d, k) = (200, 20, 2);
    let x = random_matrix(&mut rng, n, d, 1.0);
    let noise: Vec<f64> = (0..n * k).map(|_| normal(&mut rng)).collect();
    let signal = planted_targets(&mut rng, &x, n, d, k, 1.0);
    let split = Split::random(n, 0.25, 1).unwrap();
    let test = PermutationTest::default();
    assert_eq!(test.n_permutations, 100);

    for (label, y, expect_signal) in [("noise", &noise, false), ("signal", &signal, true)] {
        let (x_tr, x_te) = (
            split_rows(&x, d, &split.train),
            split_rows(&x, d, &split.test),
        );
        let (y_tr, y_te) = (
            split_rows(y, k, &split.train),
            split_rows(y, k, &split.test),
        );
        let (n_tr, n_te) = (split.train.len(), split.test.len());
        let fit = Probe::default()
            .fit(
                MatrixRef::new(&x_tr, n_tr, d).unwrap(),
                MatrixRef::new(&y_tr, n_tr, k).unwrap(),
            )
            .unwrap();
        let held_out = fit
            .permutation_test_r2(
                MatrixRef::new(&x_te, n_te, d).unwrap(),
                MatrixRef::new(&y_te, n_te, k).unwrap(),
                &test,
            )
            .unwrap();
        let in_sample = fit.ridge.permutation_test_cv(&test).unwrap();
        println!(
            "{label}: held-out R² {:.3} p = {:.3}; LOO p = {:.3}",
            held_out.observed, held_out.p_value, in_sample.p_value
        );
        assert_eq!(held_out.null_scores.len(), 100);
        if expect_signal {
            assert!(held_out.observed > 0.9);
            assert_eq!(held_out.p_value, 1.0 / 101.0);
            assert_eq!(in_sample.p_value, 1.0 / 101.0);
        } else {
            assert!(
                held_out.p_value > 0.1,
                "noise gave p = {}",
                held_out.p_value
            );
            assert!(
                in_sample.p_value > 0.1,
                "noise gave LOO p = {}",
                in_sample.p_value
            );
        }
        // Seeded: the same test twice gives the same null.
        let again = fit.ridge.permutation_test_cv(&test).unwrap();
        assert_eq!(again, in_sample);
    }
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------

fn assert_partition(split: &Split, n: usize) {
    let mut all: Vec<usize> = split.train.iter().chain(&split.test).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..n).collect::<Vec<_>>(),
        "train and test must partition the rows"
    );
    assert!(split.train.windows(2).all(|w| w[0] < w[1]));
    assert!(split.test.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn random_split_and_mask_split() {
    let s = Split::random(101, 0.2, 9).unwrap();
    assert_eq!(s.test.len(), 21); // ceil(0.2 · 101), as sklearn's train_test_split
    assert_partition(&s, 101);
    assert_eq!(s, Split::random(101, 0.2, 9).unwrap());
    assert_ne!(s, Split::random(101, 0.2, 10).unwrap());
    assert!(Split::random(10, 0.0, 0).is_err());
    assert!(Split::random(10, 1.0, 0).is_err());
    assert!(Split::random(1, 0.5, 0).is_err());

    let m = Split::from_test_mask(&[false, true, false, true, true]).unwrap();
    assert_eq!(m.train, vec![0, 2]);
    assert_eq!(m.test, vec![1, 3, 4]);
    assert!(Split::from_test_mask(&[true, true]).is_err());
}

#[test]
fn block_hold_out_never_leaks_a_group() {
    let mut rng = SplitMix64::new(5);
    let countries = ["FR", "US", "JP", "BR", "KE", "NZ"];
    let groups: Vec<&str> = (0..300)
        .map(|_| countries[rng.below(countries.len())])
        .collect();
    let folds = leave_one_group_out(&groups).unwrap();
    let mut names: Vec<&str> = folds.iter().map(|f| f.group).collect();
    let mut sorted = countries.to_vec();
    sorted.sort_unstable();
    names.dedup();
    assert_eq!(names, sorted);
    for fold in &folds {
        assert_partition(&fold.split, groups.len());
        assert!(fold.split.test.iter().all(|&r| groups[r] == fold.group));
        assert!(
            fold.split.train.iter().all(|&r| groups[r] != fold.group),
            "held-out group leaked into train"
        );

        // Validation folds inside the training rows never touch the held-out block and keep
        // every remaining group whole.
        for inner in fold.split.validation_group_folds(&groups, 3).unwrap() {
            assert!(inner
                .train
                .iter()
                .chain(&inner.test)
                .all(|r| fold.split.train.contains(r)));
            for r in &inner.test {
                assert!(
                    inner.train.iter().all(|t| groups[*t] != groups[*r]),
                    "group split across folds"
                );
            }
        }
        for inner in fold.split.validation_folds(4, 1).unwrap() {
            assert!(inner.test.iter().all(|&r| groups[r] != fold.group));
            assert!(inner.train.iter().all(|&r| groups[r] != fold.group));
        }
    }
    assert!(leave_one_group_out(&["a", "a"]).is_err());
    let held = Split::hold_out_group(&groups, &"JP").unwrap();
    assert!(held.train.iter().all(|&r| groups[r] != "JP"));
}

#[test]
fn validation_folds_cover_the_training_rows_once() {
    let outer = Split::random(53, 0.2, 4).unwrap();
    let folds = outer.validation_folds(5, 8).unwrap();
    assert_eq!(folds.len(), 5);
    let mut seen: Vec<usize> = folds.iter().flat_map(|f| f.test.clone()).collect();
    seen.sort_unstable();
    assert_eq!(seen, outer.train);
    let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
    let n = outer.train.len();
    let expect: Vec<usize> = (0..5).map(|f| n / 5 + usize::from(f < n % 5)).collect();
    assert_eq!(sizes, expect);
    for f in &folds {
        assert_eq!(f.train.len() + f.test.len(), n);
        assert!(f.train.iter().all(|r| !f.test.contains(r)));
        assert!(f.test.iter().all(|r| !outer.test.contains(r)));
    }
    assert!(outer.validation_folds(1, 0).is_err());
    assert!(outer.validation_folds(n + 1, 0).is_err());

    // Honest layer selection: K-fold R² inside the training rows of a planted signal is high.
    let mut rng = SplitMix64::new(12);
    let (n_all, d) = (53, 6);
    let x = random_matrix(&mut rng, n_all, d, 1.0);
    let y = planted_targets(&mut rng, &x, n_all, d, 1, 0.3);
    let scores = Probe::default()
        .cross_val_r2(
            MatrixRef::new(&x, n_all, d).unwrap(),
            MatrixRef::new(&y, n_all, 1).unwrap(),
            &folds,
        )
        .unwrap();
    assert_eq!(scores.len(), 5);
    assert!(scores.iter().all(|&s| s > 0.9), "{scores:?}");
}

// ---------------------------------------------------------------------------------------------
// Standardization
// ---------------------------------------------------------------------------------------------

#[test]
fn standardization_uses_train_statistics_only() {
    let train = vec![1.0f32, 10.0, 3.0, 10.0, 5.0, 10.0];
    let test = vec![7.0f32, 11.0];
    let s = StandardScaler::fit(MatrixRef::new(&train, 3, 2).unwrap()).unwrap();
    assert_eq!(s.mean, vec![3.0, 10.0]);
    // Population std of 1, 3, 5 = sqrt(8/3); a constant column gets scale 1.
    assert!((s.scale[0] - (8.0f64 / 3.0).sqrt()).abs() < 1e-15);
    assert_eq!(s.scale[1], 1.0);
    let z = s.transform(MatrixRef::new(&test, 1, 2).unwrap()).unwrap();
    assert!((z.data()[0] - 4.0 / (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
    assert_eq!(z.data()[1], 1.0);
    let back = s.inverse_transform(z.view()).unwrap();
    assert_close("round trip", back.data(), &[7.0, 11.0], 1e-15);

    // Probe = scale X and y on train, RidgeCv, map predictions back: check against doing it by hand.
    let mut rng = SplitMix64::new(21);
    let (n, d, k) = (60, 5, 2);
    let x: Vec<f64> = random_matrix(&mut rng, n, d, 3.0);
    let y = planted_targets(&mut rng, &x, n, d, k, 1.0);
    let y: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 2 == 1 { v * 100.0 + 1900.0 } else { *v })
        .collect();
    let split = Split::random(n, 0.3, 2).unwrap();
    let (x_tr, x_te) = (
        split_rows(&x, d, &split.train),
        split_rows(&x, d, &split.test),
    );
    let y_tr = split_rows(&y, k, &split.train);
    let (n_tr, n_te) = (split.train.len(), split.test.len());
    let probe = Probe::default()
        .fit(
            MatrixRef::new(&x_tr, n_tr, d).unwrap(),
            MatrixRef::new(&y_tr, n_tr, k).unwrap(),
        )
        .unwrap();
    let pred = probe
        .predict(MatrixRef::new(&x_te, n_te, d).unwrap())
        .unwrap();

    let xs = StandardScaler::fit(MatrixRef::new(&x_tr, n_tr, d).unwrap()).unwrap();
    let ys = StandardScaler::fit(MatrixRef::new(&y_tr, n_tr, k).unwrap()).unwrap();
    let manual = RidgeCv::default()
        .fit(
            xs.transform(MatrixRef::new(&x_tr, n_tr, d).unwrap())
                .unwrap()
                .view(),
            ys.transform(MatrixRef::new(&y_tr, n_tr, k).unwrap())
                .unwrap()
                .view(),
        )
        .unwrap();
    let z = manual
        .predict(
            xs.transform(MatrixRef::new(&x_te, n_te, d).unwrap())
                .unwrap()
                .view(),
        )
        .unwrap();
    let manual_pred: Matrix<f64> = ys.inverse_transform(z.view()).unwrap();
    assert_eq!(pred, manual_pred);
    assert_eq!(probe.x_scaler.as_ref().unwrap(), &xs);
}
