//! The online code length against a closed form, and the learning curve's sizes.
//!
//! With features that carry nothing (one constant column), a ridge with an intercept predicts
//! the mean of the rows it was fitted on, and its leave-one-out prediction of row i is the mean
//! of the others, so the residual is m/(m−1)·(y_i − ȳ). The online code's length then follows
//! from means and variances of the prefixes alone, computed here without any ridge.

use nalgebra::DMatrix;
use probelab::probe::learning::{
    code_block_ends, curve_sizes, learning_curve, online_code_length, Features, CODE_PRECISION,
    MIN_FIT_ROWS,
};
use probelab::probe::matrix::{MatrixRef, StandardScaler};
use probelab::probe::ridge::RidgeCv;
use probelab::probe::split::SplitMix64;

fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// −log2(N(y; mu, var) · precision), var floored at precision².
fn gaussian_bits(y: f64, mu: f64, var: f64) -> f64 {
    let var = var.max(CODE_PRECISION * CODE_PRECISION);
    -((-(y - mu).powi(2) / (2.0 * var)).exp() / (2.0 * std::f64::consts::PI * var).sqrt()
        * CODE_PRECISION)
        .log2()
}

#[test]
fn online_code_of_a_constant_feature_has_its_closed_form() {
    let n = 64;
    let mut rng = SplitMix64::new(7);
    // Two targets of different spread, so each gets its own variance and range.
    let y: Vec<[f64; 2]> = (0..n)
        .map(|_| [uniform(&mut rng) * 2.0 - 1.0, 3.0 * uniform(&mut rng)])
        .collect();
    let y_mat = DMatrix::from_fn(n, 2, |i, t| y[i][t]);
    let x = vec![1.0f32; n];
    let order: Vec<usize> = (0..n).collect();
    let ends = vec![8, 16, 32, 64];
    let f = Features {
        x: &x,
        d: 1,
        standardize: false,
    };
    let got = online_code_length(f, &order, &y_mat, &ends, &RidgeCv::default()).unwrap();

    let mut want = 0.0;
    for t in 0..2 {
        let col: Vec<f64> = y.iter().map(|r| r[t]).collect();
        let range = col.iter().cloned().fold(f64::MIN, f64::max)
            - col.iter().cloned().fold(f64::MAX, f64::min);
        let uniform_bits = (range / CODE_PRECISION).log2();
        want += 8.0 * uniform_bits;
        for w in ends.windows(2) {
            let (m, end) = (w[0], w[1]);
            let mean = col[..m].iter().sum::<f64>() / m as f64;
            let var_pop = col[..m].iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
            let loo_var = (m as f64 / (m as f64 - 1.0)).powi(2) * var_pop;
            want += col[m..end]
                .iter()
                .map(|&v| gaussian_bits(v, mean, loo_var))
                .sum::<f64>();
        }
    }
    assert!(
        (got.online_bits - want).abs() < 1e-6 * want,
        "online {} bits, closed form {want}",
        got.online_bits
    );
    let uniform_total: f64 = (0..2)
        .map(|t| {
            let c = y_mat.column(t);
            n as f64 * ((c.max() - c.min()) / CODE_PRECISION).log2()
        })
        .sum();
    assert!((got.uniform_bits - uniform_total).abs() < 1e-9 * uniform_total);
    assert_eq!(got.compression, got.uniform_bits / got.online_bits);
}

#[test]
fn a_feature_that_carries_the_target_compresses_and_noise_does_not() {
    let n = 400;
    let mut rng = SplitMix64::new(3);
    let y: Vec<f64> = (0..n).map(|_| rng.std_normal()).collect();
    let d = 4;
    // Signal: the target in column 0 with a little noise; noise: four columns of noise.
    let mut signal = vec![0f32; n * d];
    let mut noise = vec![0f32; n * d];
    for i in 0..n {
        for j in 0..d {
            signal[i * d + j] = rng.std_normal() as f32;
            noise[i * d + j] = rng.std_normal() as f32;
        }
        signal[i * d] = (y[i] + 0.1 * rng.std_normal()) as f32;
    }
    let y_mat = DMatrix::from_fn(n, 1, |i, _| y[i]);
    let order: Vec<usize> = (0..n).collect();
    let ends = code_block_ends(n);
    let ridge = RidgeCv::default();
    let code = |x: &[f32]| {
        let f = Features {
            x,
            d,
            standardize: true,
        };
        online_code_length(f, &order, &y_mat, &ends, &ridge).unwrap()
    };
    let (s, z) = (code(&signal), code(&noise));
    // At σ = 0.1 a value costs about 0.5·log2(2πe·0.01) − log2(0.01) ≈ 5.4 bits against about
    // log2(5.5 / 0.01) ≈ 9.1 uniform; at σ = 1 about 8.7.
    assert!(s.compression > 1.5, "signal compresses {}", s.compression);
    assert!(z.compression < 1.15, "noise compresses {}", z.compression);
    assert!(s.online_bits < z.online_bits);
    assert_eq!(s.uniform_bits, z.uniform_bits);

    // The learning curve on held-out rows rises with the training rows for the signal.
    let (train, test): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| i % 4 != 0);
    let y_train = DMatrix::from_fn(train.len(), 1, |i, _| y[train[i]]);
    let sizes = curve_sizes(train.len());
    let score = |z: &DMatrix<f64>| {
        let m = test.iter().map(|&i| y[i]).sum::<f64>() / test.len() as f64;
        let sst: f64 = test.iter().map(|&i| (y[i] - m).powi(2)).sum();
        let sse: f64 = test
            .iter()
            .enumerate()
            .map(|(q, &i)| (y[i] - z[(q, 0)]).powi(2))
            .sum();
        1.0 - sse / sst
    };
    let f = Features {
        x: &signal,
        d,
        standardize: true,
    };
    let curve = learning_curve(f, &train, &y_train, &test, &sizes, &ridge, &score).unwrap();
    assert_eq!(curve.len(), sizes.len());
    assert!(curve[curve.len() - 1] > 0.95, "{curve:?}");
    assert!(curve[curve.len() - 1] >= curve[0], "{curve:?}");

    // The full-size point against a second path through the code: the public scaler and
    // RidgeCv (the scikit-learn-checked API) on the training rows, predicting the test rows.
    let rows = |idx: &[usize]| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| signal[i * d..(i + 1) * d].to_vec())
            .collect()
    };
    let (x_tr, x_te) = (rows(&train), rows(&test));
    let scaler = StandardScaler::fit(MatrixRef::new(&x_tr, train.len(), d).unwrap()).unwrap();
    let xs_tr = scaler
        .transform(MatrixRef::new(&x_tr, train.len(), d).unwrap())
        .unwrap();
    let xs_te = scaler
        .transform(MatrixRef::new(&x_te, test.len(), d).unwrap())
        .unwrap();
    let y_tr: Vec<f64> = train.iter().map(|&i| y[i]).collect();
    let fit = ridge
        .fit(xs_tr.view(), MatrixRef::new(&y_tr, train.len(), 1).unwrap())
        .unwrap();
    let pred = fit.predict(xs_te.view()).unwrap();
    let direct = score(&DMatrix::from_fn(test.len(), 1, |q, _| pred.row(q)[0]));
    let last = curve[curve.len() - 1];
    assert!((last - direct).abs() < 1e-9, "{last} vs {direct}");
}

#[test]
fn sizes_and_blocks_are_increasing_and_end_at_the_training_rows() {
    assert_eq!(curve_sizes(300), vec![15, 30, 60, 120, 300]);
    assert_eq!(curve_sizes(40), vec![8, 16, 40]);
    assert_eq!(code_block_ends(640), vec![10, 20, 40, 80, 160, 320, 640]);
    assert_eq!(code_block_ends(100), vec![8, 13, 25, 50, 100]);
    assert!(code_block_ends(2 * MIN_FIT_ROWS - 1).is_empty());
    for n in [16, 17, 50, 161, 4800] {
        let e = code_block_ends(n);
        assert_eq!(*e.last().unwrap(), n);
        assert!(e.windows(2).all(|w| w[0] < w[1]), "{e:?}");
        assert!(e[0] >= MIN_FIT_ROWS);
    }
}
