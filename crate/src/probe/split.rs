//! Seeded randomness and train/test splits: everything that decides which rows a probe sees.
//!
//! [`SplitMix64`] is the crate's only random generator (identical on every platform for a
//! seed, so the same seed gives the same split natively and in wasm32). [`Split`] makes seeded
//! random, mask and group (block) hold-outs and K-fold validation folds inside a training set,
//! following scikit-learn's `train_test_split`, `KFold` and `GroupKFold`;
//! [`leave_one_group_out`] holds out each group in turn.

use serde::{Deserialize, Serialize};

use crate::probe::input_err;
use crate::Result;

// ---------------------------------------------------------------------------------------------
// Randomness
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

    /// A standard normal draw (Box–Muller from two uniforms in (0, 1]).
    pub fn std_normal(&mut self) -> f64 {
        let u = |r: &mut SplitMix64| ((r.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let (a, b) = (u(self), u(self));
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
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
