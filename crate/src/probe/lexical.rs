//! What the name's own characters give, with no model at all: the baselines a probe must beat,
//! and the part of the targets they leave over for the activations.
//!
//! - [`ngram_counts`]: hashed character 1–3-gram counts of the lower-cased name.
//! - [`NameFit`]: a ridge on those counts, fitted once per train/test split. Its test
//!   predictions are the n-gram baseline. Its *leave-one-out* residuals on the training rows are
//!   what a probe "beside the names" is fitted to, so that probe's test gain is what the
//!   activations add beyond the string. (Partialling the names out first, as Frisch–Waugh does
//!   for least squares; the residuals are out-of-sample so the n-grams' overfit on the training
//!   rows does not hide what they miss.) One extra fit per layer on the layer's own
//!   decomposition, where a joint design would need a second, larger one.
//! - [`nearest_names`]: each test name takes the mean target of the k training names most like
//!   it, k chosen by leave-one-out on the training names (cosine of tf-idf weighted n-gram counts, as scikit-learn's `TfidfVectorizer` with
//!   character n-grams): the nonparametric lexical baseline, which catches names that contain
//!   another entity's name ("North Foo, Lyon") where a linear model may not. The idf weights
//!   keep a shared template ("North Foo, ") from making every such name each other's nearest.
// Index loops here follow the formulas' subscripts (targets t, rows i).
#![allow(clippy::needless_range_loop)]

use nalgebra::DMatrix;

use crate::probe::matrix::design;
use crate::probe::plan::FoldPlan;
use crate::probe::ridge::RidgeCv;
use crate::Result;

/// One name's hashed character 1–3-grams (with start/end markers, lower-cased; FNV-1a, the
/// same on every platform) as `(bucket, count)`, sorted by bucket.
pub(super) fn ngram_counts(name: &str, buckets: usize) -> Vec<(usize, f32)> {
    let chars: Vec<char> = std::iter::once('\u{2}')
        .chain(name.to_lowercase().chars())
        .chain(std::iter::once('\u{3}'))
        .collect();
    let mut hits = Vec::new();
    for len in 1..=3usize {
        for w in chars.windows(len) {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ len as u64;
            for c in w {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    h ^= b as u64;
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
            }
            hits.push((h % buckets as u64) as usize);
        }
    }
    hits.sort_unstable();
    let mut out: Vec<(usize, f32)> = Vec::new();
    for b in hits {
        match out.last_mut() {
            Some((last, c)) if *last == b => *c += 1.0,
            _ => out.push((b, 1.0)),
        }
    }
    out
}

/// [`ngram_counts`] of every name as a dense row-major `n × buckets` matrix.
pub(super) fn ngram_features(names: &[String], buckets: usize) -> Vec<f32> {
    let mut out = vec![0f32; names.len() * buckets];
    for (i, name) in names.iter().enumerate() {
        for (b, c) in ngram_counts(name, buckets) {
            out[i * buckets + b] = c;
        }
    }
    out
}

/// The n-gram ridge of one train/test split, in the split's z-scored target units.
#[derive(Clone, Debug)]
pub(super) struct NameFit {
    /// Test-row predictions (n_test × k_fit).
    pub(super) test_pred: DMatrix<f64>,
    /// Training targets minus their leave-one-out n-gram predictions (fold order).
    pub(super) train_resid: DMatrix<f64>,
    /// Test targets minus `test_pred`.
    pub(super) test_resid: DMatrix<f64>,
}

impl NameFit {
    /// Fits the ridge (alpha by leave-one-out) on `feats` (`[entities][buckets]`, not scaled:
    /// counts are already comparable) to the fold's training targets.
    pub(super) fn new(
        feats: &[f32],
        buckets: usize,
        fold: &FoldPlan,
        ridge: &RidgeCv,
    ) -> Result<Self> {
        let (xt, x_test) = design(feats, buckets, &fold.train, &fold.test, false);
        let dec = ridge.decompose_centered(xt, vec![0.0; buckets], Some(&x_test), None)?;
        let fit = dec.fit_matrix(&fold.y.train)?;
        let test_pred = fit.predict_held_out()?;
        let train_resid = &fold.y.train - fit.predict_leave_one_out();
        let test_resid = &fold.y.test - &test_pred;
        Ok(Self {
            test_pred,
            train_resid,
            test_resid,
        })
    }
}

/// The training names of one split, indexed for tf-idf cosine similarity: idf =
/// ln((1 + n) / (1 + df)) + 1 over the n training names, as scikit-learn's smooth idf.
struct NameIndex<'a> {
    counts: &'a [Vec<(usize, f32)>],
    /// Bucket → (training position, idf-weighted count).
    postings: Vec<Vec<(u32, f32)>>,
    idf: Vec<f32>,
    train_norm: Vec<f32>,
}

impl<'a> NameIndex<'a> {
    fn new(counts: &'a [Vec<(usize, f32)>], buckets: usize, train: &[usize]) -> Self {
        let mut postings: Vec<Vec<(u32, f32)>> = vec![Vec::new(); buckets];
        for (pos, &i) in train.iter().enumerate() {
            for &(b, c) in &counts[i] {
                postings[b].push((pos as u32, c));
            }
        }
        let n_train = train.len() as f32;
        let idf: Vec<f32> = postings
            .iter()
            .map(|p| ((1.0 + n_train) / (1.0 + p.len() as f32)).ln() + 1.0)
            .collect();
        for (b, p) in postings.iter_mut().enumerate() {
            p.iter_mut().for_each(|(_, c)| *c *= idf[b]);
        }
        let mut index = Self {
            counts,
            postings,
            idf,
            train_norm: vec![],
        };
        index.train_norm = train.iter().map(|&i| index.norm(i)).collect();
        index
    }

    fn norm(&self, row: usize) -> f32 {
        let s: f32 = self.counts[row]
            .iter()
            .map(|&(b, v)| (v * self.idf[b]).powi(2))
            .sum();
        s.sqrt().max(f32::MIN_POSITIVE)
    }

    /// The `k` training positions most similar to dataset row `row` (most similar first; ties →
    /// the lower position), leaving out training position `skip`. `dot` and `order` are
    /// scratch space of the training set's length.
    fn nearest(
        &self,
        row: usize,
        skip: Option<u32>,
        k: usize,
        dot: &mut [f32],
        order: &mut Vec<u32>,
    ) -> Vec<u32> {
        dot.iter_mut().for_each(|v| *v = 0.0);
        for &(b, c) in &self.counts[row] {
            let w = c * self.idf[b];
            for &(pos, c2) in &self.postings[b] {
                dot[pos as usize] += w * c2;
            }
        }
        let n_row = self.norm(row);
        let sim = |p: u32| dot[p as usize] / (n_row * self.train_norm[p as usize]);
        order.clear();
        order.extend((0..dot.len() as u32).filter(|&p| Some(p) != skip));
        let better = |a: &u32, b: &u32| sim(*b).total_cmp(&sim(*a)).then(a.cmp(b));
        let k = k.min(order.len());
        if k == 0 {
            return vec![];
        }
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, better);
        }
        let mut top = order[..k].to_vec();
        top.sort_by(better);
        top
    }
}

/// The nearest-names baseline of one split: for each of `test` (dataset rows) the mean of
/// `train_y` (rows in `train` order, k columns) over its `k` most similar training names, with
/// `k` chosen from `grid` by leave-one-out on the training rows (each training name predicted
/// from the others; lowest squared error, ties → the smaller k). Returns `test.len() × k` and
/// the chosen k.
pub(super) fn nearest_names(
    counts: &[Vec<(usize, f32)>],
    buckets: usize,
    train: &[usize],
    test: &[usize],
    train_y: &DMatrix<f64>,
    grid: &[usize],
) -> (DMatrix<f64>, usize) {
    let index = NameIndex::new(counts, buckets, train);
    let k_max = grid.iter().copied().max().unwrap_or(1).max(1);
    let n_targets = train_y.ncols();
    let (mut dot, mut order) = (vec![0f32; train.len()], Vec::with_capacity(train.len()));
    // Mean of the first k neighbours' targets, for every k of the grid.
    let prefix_means = |top: &[u32]| -> Vec<Vec<f64>> {
        grid.iter()
            .map(|&k| {
                let k = k.clamp(1, top.len().max(1));
                (0..n_targets)
                    .map(|t| {
                        top.iter()
                            .take(k)
                            .map(|&p| train_y[(p as usize, t)])
                            .sum::<f64>()
                            / k as f64
                    })
                    .collect()
            })
            .collect()
    };
    let mut loo_sse = vec![0.0; grid.len()];
    for (pos, &i) in train.iter().enumerate() {
        let top = index.nearest(i, Some(pos as u32), k_max, &mut dot, &mut order);
        for (g, m) in prefix_means(&top).iter().enumerate() {
            loo_sse[g] += (0..n_targets)
                .map(|t| (m[t] - train_y[(pos, t)]).powi(2))
                .sum::<f64>();
        }
    }
    let best = (0..grid.len())
        .min_by(|&a, &b| {
            loo_sse[a]
                .total_cmp(&loo_sse[b])
                .then(grid[a].cmp(&grid[b]))
        })
        .unwrap_or(0);
    let k = grid.get(best).copied().unwrap_or(1).max(1);
    let mut out = DMatrix::zeros(test.len(), n_targets);
    for (q, &i) in test.iter().enumerate() {
        let top = index.nearest(i, None, k, &mut dot, &mut order);
        for t in 0..n_targets {
            out[(q, t)] = top.iter().map(|&p| train_y[(p as usize, t)]).sum::<f64>()
                / top.len().max(1) as f64;
        }
    }
    (out, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_counts_merge_repeats_and_match_the_dense_rows() {
        let names = vec!["Aa".to_string(), "Lyon".to_string()];
        // "\u{2}aa\u{3}": 1-grams 4 (a twice), 2-grams 3, 3-grams 2.
        let c = ngram_counts(&names[0], 1 << 16);
        assert_eq!(c.iter().map(|&(_, v)| v).sum::<f32>(), 9.0);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(c.iter().any(|&(_, v)| v == 2.0), "'a' counted twice: {c:?}");
        let dense = ngram_features(&names, 64);
        for (i, name) in names.iter().enumerate() {
            let mut row = vec![0f32; 64];
            for (b, v) in ngram_counts(name, 64) {
                row[b] = v;
            }
            assert_eq!(&dense[i * 64..(i + 1) * 64], &row[..]);
        }
    }

    /// Brute force: every pair's tf-idf cosine, sorted, the top k averaged.
    #[test]
    fn nearest_names_average_the_most_similar_training_names() {
        let names: Vec<String> = [
            "Lyon",
            "Lyons",
            "Paris",
            "Parish",
            "Berlin",
            "Bern",
            "North Lyon",
            "Parisville",
            "Bernburg",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let buckets = 256;
        let counts: Vec<_> = names.iter().map(|n| ngram_counts(n, buckets)).collect();
        let train = vec![0, 2, 4, 1, 3, 5];
        let test = vec![6, 7, 8];
        let y = DMatrix::from_fn(6, 2, |i, t| (i * 10 + t) as f64);
        for k in [1, 2, 3] {
            let (got, chosen) = nearest_names(&counts, buckets, &train, &test, &y, &[k]);
            assert_eq!(chosen, k);
            let dense = ngram_features(&names, buckets);
            let df = |b: usize| {
                train
                    .iter()
                    .filter(|&&i| dense[i * buckets + b] > 0.0)
                    .count()
            };
            let idf: Vec<f32> = (0..buckets)
                .map(|b| ((1.0 + 6.0) / (1.0 + df(b) as f32)).ln() + 1.0)
                .collect();
            let rows: Vec<Vec<f32>> = (0..names.len())
                .map(|i| {
                    (0..buckets)
                        .map(|b| dense[i * buckets + b] * idf[b])
                        .collect()
                })
                .collect();
            let row = |i: usize| &rows[i][..];
            let cos = |a: &[f32], b: &[f32]| {
                let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                d / (n(a) * n(b))
            };
            for (q, &i) in test.iter().enumerate() {
                let mut s: Vec<(f32, usize)> = (0..train.len())
                    .map(|p| (cos(row(i), row(train[p])), p))
                    .collect();
                s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                for t in 0..2 {
                    let want: f64 = s[..k].iter().map(|&(_, p)| y[(p, t)]).sum::<f64>() / k as f64;
                    assert!((got[(q, t)] - want).abs() < 1e-12, "k {k}, {}", names[i]);
                }
            }
        }
        // The one nearest name of "North Lyon" is "Lyon" (position 0).
        let (one, _) = nearest_names(&counts, buckets, &train, &[6], &y, &[1]);
        assert_eq!((one[(0, 0)], one[(0, 1)]), (0.0, 1.0));
    }

    /// Pairs of names share a target; leave-one-out finds that one neighbour is best, and a
    /// constant target over many lookalikes prefers the widest average.
    #[test]
    fn nearest_names_choose_k_by_leave_one_out() {
        let mut names = vec![];
        let mut y = vec![];
        for c in 0..12 {
            let stem: String = (0..5)
                .map(|q| (b'a' + ((c * 7 + q * 3) % 26) as u8) as char)
                .collect();
            names.push(stem.clone());
            names.push(format!("{stem} north"));
            y.extend([c as f64, c as f64]);
        }
        let buckets = 1 << 12;
        let counts: Vec<_> = names.iter().map(|n| ngram_counts(n, buckets)).collect();
        let train: Vec<usize> = (0..names.len()).collect();
        let ym = DMatrix::from_vec(y.len(), 1, y.clone());
        let (pred, k) = nearest_names(&counts, buckets, &train, &[0, 1], &ym, &[1, 3, 5]);
        assert_eq!(k, 1);
        // The test rows are training rows here: their nearest is themselves.
        assert_eq!((pred[(0, 0)], pred[(1, 0)]), (0.0, 0.0));
    }
}
