//! Metrics against hand-computed values.

use probelab::probe::metrics::{
    average_ranks, great_circle_km, km_errors, mean_absolute_error_years, mean_km_error,
    mean_proximity_error, median_km_error, proximity_errors, proximity_errors_of, r2_score,
    r2_score_per_target, spearman, LatLon, EARTH_RADIUS_KM,
};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

fn ll(lat: f64, lon: f64) -> LatLon {
    LatLon { lat, lon }
}

#[test]
fn r2_follows_sklearn() {
    // Target 0: y = 1,2,3,4 predicted 1,2,3,5 → SS_res = 1, SS_tot = 5, R² = 0.8.
    // Target 1: constant 2 predicted exactly → 1.0 (sklearn: perfect prediction scores 1).
    let y_true = [1.0, 2.0, 2.0, 2.0, 3.0, 2.0, 4.0, 2.0];
    let y_pred = [1.0, 2.0, 2.0, 2.0, 3.0, 2.0, 5.0, 2.0];
    assert_eq!(
        r2_score_per_target(&y_true, &y_pred, 2).unwrap(),
        vec![0.8, 1.0]
    );
    assert!(close(r2_score(&y_true, &y_pred, 2).unwrap(), 0.9, 1e-15));
    // A constant target predicted imperfectly scores 0 → uniform average (0.8 + 0) / 2 = 0.4.
    let mut y_pred2 = y_pred;
    y_pred2[7] = 2.5;
    assert!(close(r2_score(&y_true, &y_pred2, 2).unwrap(), 0.4, 1e-15));
    // Predicting the mean scores 0; worse than the mean is negative.
    assert_eq!(r2_score(&[1.0, 3.0], &[2.0, 2.0], 1).unwrap(), 0.0);
    assert!(close(
        r2_score(&[1.0, 3.0], &[3.0, 1.0], 1).unwrap(),
        -3.0,
        1e-15
    ));
    assert!(r2_score(&[1.0], &[1.0], 1).is_err());
    assert!(r2_score(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0], 2).is_err());
    assert!(r2_score(&[1.0, 2.0], &[1.0], 1).is_err());
}

#[test]
fn spearman_with_ties_uses_average_ranks() {
    assert_eq!(
        average_ranks(&[10.0, 20.0, 20.0, 5.0]).unwrap(),
        vec![2.0, 3.5, 3.5, 1.0]
    );
    // x = 1,2,2,3 → ranks 1, 2.5, 2.5, 4; y = 1,3,2,4 → ranks 1,3,2,4. Both mean 2.5.
    // Σdx·dy = 2.25 + 0 + 0 + 2.25 = 4.5, Σdx² = 4.5, Σdy² = 5 → ρ = 4.5 / √22.5 = √0.9.
    let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
    assert!(close(rho, 0.9f64.sqrt(), 1e-15), "{rho}");
    assert!(close(rho, 0.948_683_298_050_513_8, 1e-15));
    // Monotone but non-linear is perfect; reversed is −1.
    assert!(close(
        spearman(&[1.0, 2.0, 3.0], &[1.0, 8.0, 27.0]).unwrap(),
        1.0,
        1e-15
    ));
    assert!(close(
        spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(),
        -1.0,
        1e-15
    ));
    // Constant input: undefined, NaN as scipy.
    assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0])
        .unwrap()
        .is_nan());
    assert!(spearman(&[1.0], &[1.0]).is_err());
    assert!(spearman(&[1.0, f64::NAN], &[1.0, 2.0]).is_err());
}

#[test]
fn great_circle_distances() {
    let r = EARTH_RADIUS_KM;
    assert_eq!(r, 6371.0088);
    // One degree of the equator or of a meridian: R·π/180 ≈ 111.195 km.
    let one_degree = r * std::f64::consts::PI / 180.0;
    assert!(close(
        great_circle_km(ll(0.0, 0.0), ll(0.0, 1.0)),
        one_degree,
        1e-12
    ));
    assert!(close(
        great_circle_km(ll(0.0, 0.0), ll(1.0, 0.0)),
        one_degree,
        1e-12
    ));
    assert!(close(one_degree, 111.195_080_233_5, 1e-12));
    // Equator to pole: a quarter circle; pole to pole and antipodes: half.
    assert!(close(
        great_circle_km(ll(0.0, 0.0), ll(90.0, 0.0)),
        r * std::f64::consts::FRAC_PI_2,
        1e-12
    ));
    assert!(close(
        great_circle_km(ll(90.0, 0.0), ll(-90.0, 0.0)),
        r * std::f64::consts::PI,
        1e-12
    ));
    assert!(close(
        great_circle_km(ll(0.0, 0.0), ll(0.0, 180.0)),
        r * std::f64::consts::PI,
        1e-12
    ));
    // Longitude wraps: 179°E to 179°W is 2 degrees of equator.
    assert!(close(
        great_circle_km(ll(0.0, 179.0), ll(0.0, -179.0)),
        2.0 * one_degree,
        1e-9
    ));
    // Along the 60th parallel 40° apart: cos c = sin²60 + cos²60·cos40 = 0.75 + 0.25·cos40.
    let c = (0.75f64 + 0.25 * 40f64.to_radians().cos()).acos();
    assert!(close(
        great_circle_km(ll(60.0, 0.0), ll(60.0, 40.0)),
        r * c,
        1e-12
    ));
    assert!(great_circle_km(ll(12.0, 34.0), ll(12.0, 34.0)) == 0.0);
}

#[test]
fn km_error_summaries() {
    let d = EARTH_RADIUS_KM * std::f64::consts::PI / 180.0;
    let truth = [ll(0.0, 0.0), ll(0.0, 10.0), ll(0.0, 20.0), ll(0.0, 30.0)];
    let pred = [ll(0.0, 1.0), ll(0.0, 13.0), ll(0.0, 20.0), ll(0.0, 40.0)];
    let e = km_errors(&truth, &pred).unwrap();
    for (got, want) in e.iter().zip([1.0, 3.0, 0.0, 10.0]) {
        assert!(close(*got, want * d, 1e-12));
    }
    assert!(close(mean_km_error(&truth, &pred).unwrap(), 3.5 * d, 1e-12));
    // Even count: mean of the middle two errors (1° and 3°).
    assert!(close(
        median_km_error(&truth, &pred).unwrap(),
        2.0 * d,
        1e-12
    ));
    assert!(close(
        median_km_error(&truth[..3], &pred[..3]).unwrap(),
        1.0 * d,
        1e-12
    ));
    assert!(mean_km_error(&truth, &pred[..2]).is_err());
    assert!(mean_km_error(&[], &[]).is_err());
}

#[test]
fn proximity_error_by_hand_and_lat_lon_order_matters() {
    // Truth A = (60°N, 0°), B = (60°N, 40°E), C = (0°, 0°).
    // Predictions: A 20° due south of its truth, B exact, C 10° east of its truth.
    let truth = [ll(60.0, 0.0), ll(60.0, 40.0), ll(0.0, 0.0)];
    let pred = [ll(40.0, 0.0), ll(60.0, 40.0), ll(0.0, 10.0)];
    // A: misses by 20°. B is 19.69° from A (cos c = 0.75 + 0.25·cos 40°), closer → counts;
    //    C is 60° away → not. 1 of 2 others → 1/2.
    // B: exact (miss 0): nothing is strictly closer → 0.
    // C: misses by 10°; A is 60° away, B 67.48° (cos c = cos 60°·cos 40°) → 0.
    let e = proximity_errors(&truth, &pred).unwrap();
    assert_eq!(e, vec![0.5, 0.0, 0.0]);
    assert!(close(
        mean_proximity_error(&truth, &pred).unwrap(),
        1.0 / 6.0,
        1e-15
    ));

    // The same numbers with latitude and longitude swapped describe other places:
    // A = (0°, 60°E), B = (40°N, 60°E), C = (0°, 0°); A's prediction (0°, 40°E) misses by 20°
    // along the equator, B is now 40° north of A (same meridian) → no longer closer → 0.
    let swap = |p: &LatLon| LatLon {
        lat: p.lon,
        lon: p.lat,
    };
    let truth_swapped: Vec<LatLon> = truth.iter().map(swap).collect();
    let pred_swapped: Vec<LatLon> = pred.iter().map(swap).collect();
    assert_eq!(
        proximity_errors(&truth_swapped, &pred_swapped).unwrap(),
        vec![0.0, 0.0, 0.0]
    );
    assert_eq!(
        mean_proximity_error(&truth_swapped, &pred_swapped).unwrap(),
        0.0
    );

    // Other entities' PREDICTIONS count, not their true places (Gurnee & Tegmark's
    // definition). Four places on the equator 1° apart; entity 0 is predicted at 3°E (a 3°
    // miss), entity 3 at 0.5°E (a 2.5° miss), 1 and 2 exactly. For entity 0 every other
    // prediction (1°, 2°, 0.5° away) is closer than its own → 3/3; for entity 3 the others'
    // predictions are 0°, 2° and 1° from its true place → 3/3. Counting true places instead
    // would give 2/3 for both (entity 3's true place is exactly 3° from entity 0's, not closer).
    let line = [ll(0.0, 0.0), ll(0.0, 1.0), ll(0.0, 2.0), ll(0.0, 3.0)];
    let guess = [ll(0.0, 3.0), ll(0.0, 1.0), ll(0.0, 2.0), ll(0.0, 0.5)];
    let e = proximity_errors(&line, &guess).unwrap();
    assert_eq!(e, vec![1.0, 0.0, 0.0, 1.0]);
    // The same entities measured one at a time against all the others give the same numbers.
    assert_eq!(
        proximity_errors_of(&line, &guess, &[3, 0]).unwrap(),
        vec![1.0, 1.0]
    );
    assert!(proximity_errors_of(&line, &guess, &[4]).is_err());
    // Equal distance is not closer: entity 0 predicted 2° off with entity 2 predicted exactly
    // at its true place 2° away → only entity 1 (1° away) counts → 1/3.
    let guess = [ll(0.0, 2.0), ll(0.0, 1.0), ll(0.0, 2.0), ll(0.0, 3.0)];
    let e = proximity_errors(&line, &guess).unwrap();
    assert!(close(e[0], 1.0 / 3.0, 1e-15));
    assert_eq!(&e[1..], &[0.0, 0.0, 0.0]);
    assert!(proximity_errors(&line[..1], &guess[..1]).is_err());
}

#[test]
fn year_mae() {
    assert_eq!(
        mean_absolute_error_years(&[1900.0, 1950.0, 2000.0], &[1910.0, 1940.0, 2000.0]).unwrap(),
        20.0 / 3.0
    );
    assert!(mean_absolute_error_years(&[1.0], &[]).is_err());
}
