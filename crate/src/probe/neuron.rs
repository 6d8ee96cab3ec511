//! The "space neuron" check: per layer and target, the single residual dimension with the
//! largest |Spearman| correlation, and a p-value against the maximum |Spearman| over ALL
//! dimensions under each shuffle of the targets (so picking the best dimension is paid for).
//!
//! Target ranks are prepared once ([`NeuronPlan::new`]); each layer then ranks its dimensions
//! and gets every correlation, real and shuffled, from one matrix product.

use nalgebra::DMatrix;

use crate::probe::metrics;
use crate::probe::report::NeuronReport;
use crate::probe::split::SplitMix64;
use crate::Result;

#[derive(Clone, Debug)]
pub(super) struct NeuronPlan {
    /// The entities the check looks at.
    rows: Vec<usize>,
    targets: Vec<String>,
    /// Centered, normalized target ranks, row `b·T + t` = target t under shuffle b (0 = none).
    ty_t: DMatrix<f32>,
    n_permutations: usize,
}

impl NeuronPlan {
    /// Ranks the targets (`values`: n × targets.len() row-major) of `rows`, and of
    /// `n_permutations` shuffles of them drawn from `seed`.
    pub(super) fn new(
        rows: Vec<usize>,
        values: &[f64],
        targets: &[String],
        n_permutations: usize,
        seed: u64,
    ) -> Result<Self> {
        let nr = rows.len();
        let b = n_permutations;
        let t_n = targets.len();
        let mut ranks = Vec::with_capacity(t_n);
        for t in 0..t_n {
            let vals: Vec<f64> = rows.iter().map(|&i| values[i * t_n + t]).collect();
            let r = metrics::average_ranks(&vals)?;
            let mean = (nr as f64 + 1.0) / 2.0;
            let norm = r
                .iter()
                .map(|v| (v - mean) * (v - mean))
                .sum::<f64>()
                .sqrt();
            ranks.push(
                r.iter()
                    .map(|v| if norm > 0.0 { (v - mean) / norm } else { 0.0 })
                    .collect::<Vec<f64>>(),
            );
        }
        let mut rng = SplitMix64::new(seed);
        let perms: Vec<Vec<usize>> = (0..b).map(|_| rng.permutation(nr)).collect();
        let ty_t = DMatrix::from_fn((b + 1) * t_n, nr, |row, i| {
            let (bb, t) = (row / t_n, row % t_n);
            let src = if bb == 0 { i } else { perms[bb - 1][i] };
            ranks[t][src] as f32
        });
        Ok(Self {
            rows,
            targets: targets.to_vec(),
            ty_t,
            n_permutations,
        })
    }

    /// The layer's strongest dimension per target, with its max-over-dimensions p-value
    /// (`acts`: `[entities][d]` row-major).
    pub(super) fn layer(&self, layer: usize, acts: &[f32], d: usize) -> Vec<NeuronReport> {
        let plan = self;
        let b_n = self.n_permutations;
        let nr = plan.rows.len();
        let mut ranks = vec![0f32; nr * d];
        let mut keys: Vec<u64> = Vec::with_capacity(nr);
        let mean = (nr as f64 + 1.0) / 2.0;
        let mut tmp = vec![0f64; nr];
        for j in 0..d {
            keys.clear();
            keys.extend(
                plan.rows
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| ((order_key(acts[r * d + j]) as u64) << 32) | i as u64),
            );
            keys.sort_unstable();
            let mut s = 0;
            while s < nr {
                let key = keys[s] >> 32;
                let mut e = s + 1;
                while e < nr && keys[e] >> 32 == key {
                    e += 1;
                }
                let rank = (s + 1 + e) as f64 / 2.0 - mean;
                for q in &keys[s..e] {
                    tmp[(q & 0xFFFF_FFFF) as usize] = rank;
                }
                s = e;
            }
            let norm = tmp.iter().map(|v| v * v).sum::<f64>().sqrt();
            let col = &mut ranks[j * nr..(j + 1) * nr];
            if norm > 0.0 {
                for (c, v) in col.iter_mut().zip(&tmp) {
                    *c = (v / norm) as f32;
                }
            }
        }
        let rm = DMatrix::from_vec(nr, d, ranks);
        let corr = &plan.ty_t * &rm; // ((B+1)·T) × d
        let t_n = plan.targets.len();
        (0..t_n)
            .map(|t| {
                let (mut best, mut best_abs) = (0usize, -1.0f32);
                for j in 0..d {
                    let a = corr[(t, j)].abs();
                    if a > best_abs {
                        best = j;
                        best_abs = a;
                    }
                }
                let p_value = (b_n > 0).then(|| {
                    let ge = (1..=b_n)
                        .filter(|&b| {
                            let row = b * t_n + t;
                            (0..d).any(|j| corr[(row, j)].abs() >= best_abs)
                        })
                        .count();
                    (1 + ge) as f64 / (1 + b_n) as f64
                });
                NeuronReport {
                    layer,
                    index: best,
                    target: plan.targets[t].clone(),
                    spearman: corr[(t, best)] as f64,
                    p_value,
                }
            })
            .collect()
    }
}

/// Order-preserving u32 key of an f32 (-0.0 and 0.0 equal).
fn order_key(v: f32) -> u32 {
    if v == 0.0 {
        return 0x8000_0000;
    }
    let b = v.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 0x8000_0000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neuron_spearman_matches_metrics() {
        let (n, d) = (50, 6);
        let mut rng = SplitMix64::new(4);
        let mut acts: Vec<f32> = (0..n * d).map(|_| rng.std_normal() as f32).collect();
        // Ties, and dimension 4 tracks the target.
        for i in 0..n {
            acts[i * d + 2] = (i % 3) as f32;
            acts[i * d + 4] = i as f32 * 0.1 + 0.3 * rng.std_normal() as f32;
        }
        let target: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let rows: Vec<usize> = (0..n).collect();
        let r = metrics::average_ranks(&target).unwrap();
        let mean = (n as f64 + 1.0) / 2.0;
        let norm = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt();
        let ty_t = DMatrix::from_fn(1, n, |_, i| ((r[i] - mean) / norm) as f32);
        let plan = NeuronPlan {
            rows,
            targets: vec!["year".into()],
            ty_t,
            n_permutations: 0,
        };
        let out = plan.layer(0, &acts, d);
        assert_eq!(out[0].index, 4);
        let col: Vec<f64> = (0..n).map(|i| acts[i * d + 4] as f64).collect();
        let want = metrics::spearman(&col, &target).unwrap();
        assert!(
            (out[0].spearman - want).abs() < 1e-5,
            "{} vs {want}",
            out[0].spearman
        );
    }
}
