//! Whom the map serves: the rank correlation's interval against its closed form, numeric
//! columns read as numbers.

use probelab::probe::coverage::{numeric_values, spearman_ci, MIN_COVERAGE_ROWS};

#[test]
fn spearman_interval_is_fishers_z_with_the_rank_correction() {
    // No ties: ρ = 1 − 6 Σd² / (n (n² − 1)).
    let x: Vec<f64> = (1..=12).map(f64::from).collect();
    let y = [
        2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 9.0, 7.0, 8.0, 12.0, 10.0, 11.0,
    ];
    let d2: f64 = x.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum();
    let n = 12.0;
    let rho = 1.0 - 6.0 * d2 / (n * (n * n - 1.0));
    let (got, [lo, hi]) = spearman_ci(&x, &y).unwrap();
    assert!((got - rho).abs() < 1e-12, "{got} vs {rho}");
    let se = (1.06f64 / (n - 3.0)).sqrt();
    assert!((lo - (rho.atanh() - 1.96 * se).tanh()).abs() < 1e-12);
    assert!((hi - (rho.atanh() + 1.96 * se).tanh()).abs() < 1e-12);
    assert!(lo < got && got < hi);
    // Too few pairs or a constant side: no figure.
    assert!(spearman_ci(&x[..MIN_COVERAGE_ROWS - 1], &y[..MIN_COVERAGE_ROWS - 1]).is_none());
    assert!(spearman_ci(&x, &[1.0; 12]).is_none());
}

#[test]
fn numeric_columns_are_numbers_and_text_columns_are_not() {
    let cells = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        numeric_values(&cells(&["9418183", "12,691,836", "", "3.5e6"])).unwrap(),
        vec![Some(9418183.0), Some(12691836.0), None, Some(3.5e6)]
    );
    assert!(numeric_values(&cells(&["France", "Peru", "12"])).is_none());
    assert!(numeric_values(&cells(&["", ""])).is_none());
}
