//! Whom the map serves: how each held-out entity's error goes with a number that says how well
//! known the entity is (a `population` or `page_views` column of the dataset, or the model's
//! own surprisal of the name, where more means less familiar), as a Spearman
//! correlation with a confidence interval, and that number's median per group. A map that is
//! only good for big, well-documented places is a map of the training text's attention.

use crate::probe::metrics;
use crate::probe::report::{CoverageReport, GroupCoverage};

/// Columns read as "how well known" when the dataset has them (lower-case headers).
pub const COVERAGE_COLUMNS: [&str; 8] = [
    "population",
    "page_views",
    "pageviews",
    "views",
    "popularity",
    "frequency",
    "visits",
    "count",
];

/// The coverage column of the model's own surprisal of each name (nats per token), when it
/// was measured.
pub const SURPRISAL: &str = "surprisal";

/// Fewest test entities with a value for a correlation.
pub const MIN_COVERAGE_ROWS: usize = 10;

/// The column's values as numbers, when at least 90% of its non-empty cells are finite
/// numbers (empty or unreadable cells are `None`); `None` for a text column.
pub fn numeric_values(cells: &[String]) -> Option<Vec<Option<f64>>> {
    let values: Vec<Option<f64>> = cells
        .iter()
        .map(|c| {
            c.trim()
                .replace(',', "")
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
        })
        .collect();
    let filled = cells.iter().filter(|c| !c.trim().is_empty()).count();
    let numbers = values.iter().flatten().count();
    (filled > 0 && numbers * 10 >= filled * 9).then_some(values)
}

/// Spearman's ρ of `x` and `y` with a 95% interval from Fisher's z with the standard error
/// √(1.06 / (n − 3)) that Fieller, Hartley & Pearson (1957) give for rank correlations. None
/// under [`MIN_COVERAGE_ROWS`] pairs or when a side is constant.
pub fn spearman_ci(x: &[f64], y: &[f64]) -> Option<(f64, [f64; 2])> {
    let n = x.len();
    if n < MIN_COVERAGE_ROWS || n != y.len() {
        return None;
    }
    let rho = metrics::spearman(x, y).ok().filter(|r| r.is_finite())?;
    let z = rho.clamp(-0.999_999, 0.999_999).atanh();
    let se = (1.06 / (n as f64 - 3.0)).sqrt();
    Some((rho, [(z - 1.96 * se).tanh(), (z + 1.96 * se).tanh()]))
}

/// The coverage report of one column: `values` per entity, `errors` of the test entities as
/// `(entity, km or years)`, `groups` per entity (the breakdown column).
pub(super) fn coverage(
    column: &str,
    values: &[Option<f64>],
    errors: &[(usize, f64)],
    groups: Option<&[String]>,
) -> Option<CoverageReport> {
    let pairs: Vec<(usize, f64, f64)> = errors
        .iter()
        .filter_map(|&(i, e)| values[i].map(|v| (i, v, e)))
        .collect();
    let (v, e): (Vec<f64>, Vec<f64>) = pairs.iter().map(|&(_, v, e)| (v, e)).unzip();
    let (spearman, ci95) = spearman_ci(&v, &e)?;
    let mut by_group: Vec<GroupCoverage> = Vec::new();
    if let Some(groups) = groups {
        let mut names: Vec<&str> = pairs.iter().map(|&(i, _, _)| groups[i].as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for g in names {
            let rows: Vec<&(usize, f64, f64)> =
                pairs.iter().filter(|&&(i, _, _)| groups[i] == g).collect();
            let median = metrics::median(rows.iter().map(|r| r.1).collect()).ok()?;
            by_group.push(GroupCoverage {
                group: g.to_string(),
                n_test: rows.len(),
                median,
                mean: rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64,
                mean_error: rows.iter().map(|r| r.2).sum::<f64>() / rows.len() as f64,
            });
        }
    }
    Some(CoverageReport {
        column: column.to_string(),
        n_test: pairs.len(),
        spearman,
        ci95,
        by_group,
    })
}
