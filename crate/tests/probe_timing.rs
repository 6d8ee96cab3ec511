//! Timing of one layer fit at a realistic size (SmolLM2-135M: d = 576). Ignored by default:
//!
//!     cargo test --release -p probelab --test probe_timing -- --ignored --nocapture
//!
//! `PROBELAB_TIMING_N` / `PROBELAB_TIMING_D` override the 5000 × 576 size.

use std::time::Instant;

use probelab::probe::matrix::MatrixRef;
use probelab::probe::ridge::{PermutationTest, Probe, RidgeCv};
use probelab::probe::split::SplitMix64;

#[test]
#[ignore = "timing only; run explicitly in release mode"]
fn one_layer_fit_timing() {
    let size = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (n, d, k) = (
        size("PROBELAB_TIMING_N", 5000),
        size("PROBELAB_TIMING_D", 576),
        2,
    );
    let mut rng = SplitMix64::new(1);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    // Correlated features: a few shared factors plus noise, like residual-stream activations.
    let factors: Vec<f64> = (0..n * 8).map(|_| uniform()).collect();
    let loadings: Vec<f64> = (0..8 * d).map(|_| uniform()).collect();
    let x: Vec<f32> = (0..n * d)
        .map(|idx| {
            let (i, j) = (idx / d, idx % d);
            let s: f64 = (0..8)
                .map(|f| factors[i * 8 + f] * loadings[f * d + j])
                .sum();
            (3.0 * s + uniform()) as f32
        })
        .collect();
    let y: Vec<f64> = (0..n * k)
        .map(|idx| factors[(idx / k) * 8 + idx % k] * 50.0 + uniform())
        .collect();
    let (xr, yr) = (
        MatrixRef::new(&x, n, d).unwrap(),
        MatrixRef::new(&y, n, k).unwrap(),
    );

    let t = Instant::now();
    let dec = RidgeCv::default().decompose(xr).unwrap();
    let t_dec = t.elapsed();
    let t = Instant::now();
    let fit = dec.fit(yr).unwrap();
    let t_fit = t.elapsed();
    let t = Instant::now();
    let perm = fit
        .permutation_test_cv(&PermutationTest::default())
        .unwrap();
    let t_perm = t.elapsed();
    let t = Instant::now();
    let probe = Probe::default().fit(xr, yr).unwrap();
    let t_probe = t.elapsed();
    println!(
        "n={n} d={d} k={k} ({:?} route): decomposition {:.2?}, CV fit over {} alphas {:.2?}, \
         100 permutations {:.2?} (p = {:.3}), standardized Probe::fit end to end {:.2?} (alpha {})",
        dec.route(),
        t_dec,
        dec.alphas().len(),
        t_fit,
        t_perm,
        perm.p_value,
        t_probe,
        probe.alpha()
    );
}
