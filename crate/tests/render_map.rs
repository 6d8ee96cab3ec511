//! The Equal Earth projection against its closed form and its equal-area property, the
//! embedded Natural Earth outlines, and the map scene rasterized: land where land is, ocean
//! where ocean is, no antimeridian streaks, points in their group colours at their places; the
//! hover data of a map (exactly on the drawn markers, haversine errors) and its train/test
//! choice on a report analysed for real.

use std::collections::BTreeMap;

use probelab::data::{Dataset, TargetKind};
use probelab::extract::{Activations, Pooling};
use probelab::probe::analysis::{AnalysisOptions, ControlInputs, Report, ReportContext, SplitSpec};
use probelab::probe::analyze;
use probelab::probe::metrics;
use probelab::render::figures::map_scene_at_layer;
use probelab::render::geo::{self, EQUAL_EARTH_ASPECT, EQUAL_EARTH_X_MAX, EQUAL_EARTH_Y_MAX};
use probelab::render::{
    self, map_scene, parse_color, ColorBy, MapFrame, MapOptions, MapPoint, Raster, LAND, OCEAN,
};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn equal_earth_matches_closed_form_values() {
    // Reference values from the published formulas (Šavrič, Patterson & Jenny 2018), evaluated
    // independently in float64 Python.
    let cases = [
        ((90.0, 45.0), (1.1598544991029835, 0.8602310855220102)),
        ((-120.0, -30.0), (-1.6878011172181764, -0.592935119848017)),
        ((30.0, 60.0), (0.33984334792859316, 1.0883008355053196)),
        ((10.0, 10.0), (0.1492758459205874, 0.20204243960029805)),
        ((180.0, 89.9), (1.6035956578493802, 1.317359775282731)),
    ];
    for ((lon, lat), (x, y)) in cases {
        let (px, py) = geo::equal_earth(lon, lat);
        assert!(
            close(px, x, 1e-12) && close(py, y, 1e-12),
            "({lon},{lat}) -> ({px},{py}), want ({x},{y})"
        );
    }
    assert_eq!(geo::equal_earth(0.0, 0.0), (0.0, 0.0));
    let (x, y) = geo::equal_earth(180.0, 0.0);
    assert!(close(x, EQUAL_EARTH_X_MAX, 1e-12) && y == 0.0);
    // x_max = 2√3π / (3 A1); y_max = θ(A1 + A2θ² + θ⁶(A3 + A4θ²)) at θ = π/3
    let a1 = 1.340264;
    assert!(close(
        EQUAL_EARTH_X_MAX,
        2.0 * 3f64.sqrt() * std::f64::consts::PI / (3.0 * a1),
        1e-12
    ));
    let (_, ypole) = geo::equal_earth(37.0, 90.0);
    assert!(close(ypole, EQUAL_EARTH_Y_MAX, 1e-12));
    assert!(close(EQUAL_EARTH_ASPECT, 2.0546, 1e-4));
}

#[test]
fn equal_earth_is_symmetric_and_monotone_with_straight_parallels() {
    for lon in [-170.0, -95.5, -30.0, 0.0, 12.0, 77.0, 179.0] {
        for lat in [-89.0, -60.0, -12.5, 0.0, 33.0, 71.0, 88.0] {
            let (x, y) = geo::equal_earth(lon, lat);
            let (xm, ym) = geo::equal_earth(-lon, lat);
            let (xs, ys) = geo::equal_earth(lon, -lat);
            assert!(close(x, -xm, 1e-14) && close(y, ym, 1e-14));
            assert!(close(x, xs, 1e-14) && close(y, -ys, 1e-14));
            // parallels are straight: y does not depend on longitude
            assert!(close(y, geo::equal_earth(0.0, lat).1, 1e-15));
        }
    }
    for lat in [-80.0, -40.0, 0.0, 40.0, 80.0] {
        let xs: Vec<f64> = (-180..=180)
            .map(|l| geo::equal_earth(l as f64, lat).0)
            .collect();
        assert!(
            xs.windows(2).all(|w| w[1] > w[0]),
            "x not increasing with longitude at lat {lat}"
        );
    }
    let ys: Vec<f64> = (-90..=90)
        .map(|l| geo::equal_earth(50.0, l as f64).1)
        .collect();
    assert!(ys.windows(2).all(|w| w[1] > w[0]));
    // meridians converge towards the poles but the poles are lines, not points
    assert!(geo::equal_earth(180.0, 60.0).0 < geo::equal_earth(180.0, 30.0).0);
    assert!(geo::equal_earth(180.0, 90.0).0 > 1.0);
}

/// Shoelace area of a ring of (x, y).
fn area(r: &[(f64, f64)]) -> f64 {
    let n = r.len();
    (0..n)
        .map(|i| {
            let (a, b) = (r[i], r[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f64>()
        .abs()
        / 2.0
}

#[test]
fn equal_earth_preserves_area() {
    // The whole unit sphere, 4π, and the band from the equator to latitude φ, 2π·sin φ.
    let mut outline: Vec<(f64, f64)> = Vec::new();
    let n = 20000;
    for i in 0..=n {
        outline.push(geo::equal_earth(180.0, 90.0 - 180.0 * i as f64 / n as f64));
    }
    for i in 0..=n {
        outline.push(geo::equal_earth(
            -180.0,
            -90.0 + 180.0 * i as f64 / n as f64,
        ));
    }
    let whole = area(&outline);
    assert!(
        close(whole, 4.0 * std::f64::consts::PI, 4e-4),
        "map area {whole}, sphere 4π"
    );
    for phi in [20.0f64, 45.0, 70.0] {
        let mut band = vec![geo::equal_earth(-180.0, 0.0), geo::equal_earth(180.0, 0.0)];
        for i in 0..=n {
            band.push(geo::equal_earth(180.0, phi * i as f64 / n as f64));
        }
        for i in 0..=n {
            band.push(geo::equal_earth(-180.0, phi - phi * i as f64 / n as f64));
        }
        let a = area(&band);
        let want = 2.0 * std::f64::consts::PI * phi.to_radians().sin();
        assert!(close(a, want, 4e-4), "band to {phi}: {a}, want {want}");
    }
}

#[test]
fn inverse_round_trips_and_rejects_points_off_the_globe() {
    for lon in [-179.5, -100.0, -1.0, 0.0, 45.0, 133.3, 179.5] {
        for lat in [-85.0, -45.0, -0.5, 0.0, 30.0, 66.6, 85.0] {
            let [u, v] = geo::project(lon, lat);
            assert!((0.0..=1.0).contains(&u) && (0.0..=1.0).contains(&v));
            let (l2, p2) = geo::unproject(u, v).unwrap();
            assert!(
                close(l2, lon, 1e-8) && close(p2, lat, 1e-8),
                "({lon},{lat}) -> ({l2},{p2})"
            );
        }
    }
    // north is up: a northern place has a smaller v
    assert!(geo::project(0.0, 60.0)[1] < geo::project(0.0, -60.0)[1]);
    assert!(geo::project(-90.0, 0.0)[0] < geo::project(90.0, 0.0)[0]);
    assert!(
        geo::unproject(0.01, 0.02).is_none(),
        "the top-left corner is off the globe"
    );
    assert!(geo::unproject(0.5, -0.1).is_none());
}

#[test]
fn outlines_are_complete_and_never_cross_the_antimeridian() {
    let cs = geo::countries();
    assert_eq!(cs.len(), 177);
    let mut points = 0;
    for c in cs {
        for p in &c.polygons {
            for r in &p.rings {
                assert!(r.len() >= 3, "{}: degenerate ring", c.name);
                points += r.len();
                for i in 0..r.len() {
                    let (a, b) = (r[i], r[(i + 1) % r.len()]);
                    assert!(
                        a[0].abs() <= 180.0 && a[1].abs() <= 90.0,
                        "{}: {:?}",
                        c.name,
                        a
                    );
                    // Antarctica's closing edge runs along the pole line, which is a line in
                    // Equal Earth; every other edge stays well under 180° of longitude.
                    let along_pole = a[1] == -90.0 && b[1] == -90.0;
                    assert!(
                        (a[0] - b[0]).abs() < 90.0 || along_pole,
                        "{}: edge {:?} -> {:?} jumps across the map",
                        c.name,
                        a,
                        b
                    );
                }
            }
        }
    }
    assert!(points > 9000 && points < 20000, "{points} points");
    let names: Vec<&str> = cs.iter().map(|c| c.name.as_str()).collect();
    for n in [
        "Brazil",
        "Russia",
        "Fiji",
        "Antarctica",
        "France",
        "Australia",
    ] {
        assert!(names.contains(&n), "{n} missing");
    }
    // Russia and Fiji straddle the antimeridian and now have pieces on both edges
    for n in ["Russia", "Fiji"] {
        let c = cs.iter().find(|c| c.name == n).unwrap();
        let lons: Vec<f32> = c
            .polygons
            .iter()
            .flat_map(|p| p.rings[0].iter().map(|q| q[0]))
            .collect();
        assert!(lons.contains(&180.0) && lons.contains(&-180.0), "{n}");
    }
}

#[test]
fn land_lookup_knows_the_continents() {
    assert_eq!(
        geo::country_at(2.35, 48.85).map(|c| c.name.as_str()),
        Some("France")
    );
    assert_eq!(
        geo::country_at(-47.9, -15.8).map(|c| c.name.as_str()),
        Some("Brazil")
    );
    assert_eq!(
        geo::country_at(100.0, 60.0).map(|c| c.name.as_str()),
        Some("Russia")
    );
    assert_eq!(
        geo::country_at(178.0, -17.8).map(|c| c.name.as_str()),
        Some("Fiji")
    );
    assert_eq!(
        geo::country_at(28.2, -29.5).map(|c| c.name.as_str()),
        Some("Lesotho")
    );
    assert_eq!(
        geo::country_at(25.0, -30.0).map(|c| c.name.as_str()),
        Some("South Africa")
    );
    assert!(geo::is_land(0.0, -85.0), "Antarctica reaches the pole");
    for (lon, lat) in [
        (-150.0, 0.0),
        (-30.0, 30.0),
        (80.0, -30.0),
        (-150.0, 50.0),
        (0.0, -60.0),
    ] {
        assert!(!geo::is_land(lon, lat), "({lon},{lat}) should be sea");
    }
}

fn rgb(r: &Raster, p: [f64; 2]) -> [u8; 3] {
    let px = r.pixel(p[0] as u32, p[1] as u32).unwrap();
    [px[0], px[1], px[2]]
}

fn hex(c: &str) -> [u8; 3] {
    let [r, g, b, _] = parse_color(c).unwrap();
    [r, g, b]
}

fn near(a: [u8; 3], b: [u8; 3], tol: i32) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (*x as i32 - y as i32).abs() <= tol)
}

fn place(
    name: &str,
    lat: f64,
    lon: f64,
    plat: f64,
    plon: f64,
    group: &str,
    is_test: bool,
) -> MapPoint {
    MapPoint {
        name: name.into(),
        true_lat: lat,
        true_lon: lon,
        pred_lat: plat,
        pred_lon: plon,
        group: group.into(),
        is_test,
        surprisal: None,
    }
}

#[test]
fn map_has_land_ocean_and_points_where_they_belong() {
    let opts = MapOptions {
        width: 1000.0,
        height: 560.0,
        title: "test map".into(),
        ..MapOptions::default()
    };
    let points = vec![
        place("Paris", 48.85, 2.35, 45.0, 10.0, "Europe", true),
        place("Tokyo", 35.7, 139.7, 30.0, 120.0, "Asia", true),
        place("Manaus", -3.1, -60.0, -20.0, -50.0, "South America", false),
    ];
    let scene = map_scene(&points, &opts);
    let r = render::rasterize(&scene, 1.0).unwrap();
    assert_eq!((r.width, r.height), (1000, 560));
    let f = MapFrame::for_options(&opts);
    let land = hex(LAND);
    let ocean = hex(OCEAN);
    // land: centre of Africa, Brazil, Siberia, Australia, Antarctica
    for (lon, lat) in [
        (23.0, -3.0),
        (17.0, 15.0),
        (-52.0, -10.0),
        (100.0, 62.0),
        (134.0, -24.0),
        (40.0, -82.0),
    ] {
        assert!(
            near(rgb(&r, f.to_px(lon, lat)), land, 2),
            "({lon},{lat}) not land: {:?}",
            rgb(&r, f.to_px(lon, lat))
        );
    }
    // ocean (off the 30° graticule): mid-Pacific, mid-Atlantic, Indian Ocean, and where antimeridian streaks would run
    // (Russia's band at 50–70°N, Fiji's at 16.5°S, Antarctica's rim)
    for (lon, lat) in [
        (-140.0, 5.0),
        (-35.0, 20.0),
        (80.0, -25.0),
        (-145.0, 50.0),
        (-35.0, 58.0),
        (-100.0, -16.5),
        (10.0, -58.0),
        (170.0, 50.0),
    ] {
        assert!(
            near(rgb(&r, f.to_px(lon, lat)), ocean, 2),
            "({lon},{lat}) not ocean: {:?}",
            rgb(&r, f.to_px(lon, lat))
        );
    }
    // outside the globe: page background
    assert_eq!(rgb(&r, [f.x + 3.0, f.y + 3.0]), [255, 255, 255]);
    // test points in their continent colours at their true places
    assert!(near(rgb(&r, f.to_px(2.35, 48.85)), hex("#0072b2"), 8));
    assert!(near(rgb(&r, f.to_px(139.7, 35.7)), hex("#d55e00"), 8));
    // the training point is hidden unless asked for
    assert!(near(rgb(&r, f.to_px(-60.0, -3.1)), land, 2));
    let with_train = map_scene(
        &points,
        &MapOptions {
            show_train: true,
            ..opts.clone()
        },
    );
    let r2 = render::rasterize(&with_train, 1.0).unwrap();
    let c = rgb(&r2, f.to_px(-60.0, -3.1));
    assert!(
        !near(c, land, 4) && c[0] > c[1],
        "faded pink training dot, got {c:?}"
    );
}

#[test]
fn map_coloured_by_longitude_uses_the_ramp() {
    let opts = MapOptions {
        width: 800.0,
        height: 420.0,
        color_by: ColorBy::ByTrueLongitude,
        ..MapOptions::default()
    };
    let pts = vec![
        place("A", 10.0, -100.0, 12.0, -98.0, "x", true),
        place("B", 50.0, 30.0, 50.0, 35.0, "x", true),
    ];
    let r = render::rasterize(&map_scene(&pts, &opts), 1.0).unwrap();
    let f = MapFrame::for_options(&opts);
    for p in &pts {
        let want = hex(&render::longitude_color(p.true_lon));
        assert!(near(rgb(&r, f.to_px(p.true_lon, p.true_lat)), want, 8));
    }
    assert_eq!(
        render::longitude_color(-180.0),
        render::longitude_color(180.0)
    );
}

#[test]
fn map_scene_json_round_trips_and_writes_a_sample_png() {
    // a sample with many points: every 7th of the built-in 6,000 places, predictions shrunk
    // towards (20°N, 20°E) with a deterministic wobble, as a weak probe would
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/world_places.csv"
    ))
    .unwrap();
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let mut pts = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.unwrap();
        if i % 7 != 0 {
            continue;
        }
        let lat: f64 = rec[1].parse().unwrap();
        let lon: f64 = rec[2].parse().unwrap();
        let w = (i as f64 * 12.9898).sin() * 8.0;
        pts.push(place(
            &rec[0],
            lat,
            lon,
            0.7 * lat + 6.0 + w,
            0.75 * lon + 5.0 - w,
            &rec[4],
            i % 5 == 0,
        ));
    }
    let opts = MapOptions {
        width: 1100.0,
        height: 600.0,
        title: "Where the probe puts places — layer 18, test split (R² 0.74)".into(),
        show_train: true,
        ..MapOptions::default()
    };
    let scene = map_scene(&pts, &opts);
    let json = scene.to_json();
    assert!(json.len() < 2_000_000, "{} bytes of JSON", json.len());
    let back = render::Scene::from_json(&json).unwrap();
    assert_eq!(back, scene);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["items"][0]["kind"], "poly");
    let png = render::to_png(&scene).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let dir = std::env::temp_dir();
    std::fs::write(dir.join("probelab_map.png"), &png).unwrap();
    let lon_scene = map_scene(
        &pts,
        &MapOptions {
            color_by: ColorBy::ByTrueLongitude,
            show_train: false,
            ..opts
        },
    );
    std::fs::write(
        dir.join("probelab_map_longitude.png"),
        render::to_png(&lon_scene).unwrap(),
    )
    .unwrap();
}

/// Circles of a scene in paint order: `(x, y, filled)`.
fn circles(s: &render::Scene) -> Vec<(f32, f32, bool)> {
    s.items
        .iter()
        .filter_map(|i| match i {
            render::Item::Circle { x, y, fill, .. } => Some((*x, *y, fill.is_some())),
            _ => None,
        })
        .collect()
}

fn km(lat: f64, lon: f64, plat: f64, plon: f64) -> f64 {
    metrics::great_circle_km(
        metrics::LatLon { lat, lon },
        metrics::LatLon {
            lat: plat,
            lon: plon,
        },
    )
}

#[test]
fn map_hit_points_sit_exactly_on_the_drawn_markers() {
    let opts = MapOptions {
        width: 1000.0,
        height: 560.0,
        title: "hits".into(),
        ..MapOptions::default()
    };
    let points = vec![
        place("Paris", 48.85, 2.35, 45.0, 10.0, "Europe", true),
        place("Tokyo", 35.7, 139.7, 30.0, 120.0, "Asia", true),
        // A prediction beyond the pole and the antimeridian: drawn (and reported) on the edge.
        place("Nuuk", 64.2, -51.7, 97.0, -200.0, "Americas", true),
        place("Manaus", -3.1, -60.0, -20.0, -50.0, "South America", false),
        place("Lima", -12.0, -77.0, -14.0, -70.0, "South America", false),
        place("Nowhere", f64::NAN, 0.0, 0.0, 0.0, "Europe", true),
    ];
    for show_train in [false, true] {
        let scene = map_scene(
            &points,
            &MapOptions {
                show_train,
                ..opts.clone()
            },
        );
        let hits = &scene.points;
        // Paint order: the faded training places first, then the test places; none non-finite.
        let want: Vec<&str> = if show_train {
            vec!["Manaus", "Lima", "Paris", "Tokyo", "Nuuk"]
        } else {
            vec!["Paris", "Tokyo", "Nuuk"]
        };
        assert_eq!(
            hits.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(),
            want
        );
        for h in hits {
            let p = points.iter().find(|p| p.name == h.name).unwrap();
            assert_eq!(h.split, if p.is_test { "test" } else { "train" });
            assert_eq!(h.group, p.group);
            assert_eq!((h.true_lat, h.true_lon), (p.true_lat, p.true_lon));
            assert_eq!(
                (h.pred_lat, h.pred_lon),
                (
                    p.pred_lat.clamp(-90.0, 90.0),
                    p.pred_lon.clamp(-180.0, 180.0)
                )
            );
            // The haversine distance between the positions shown, to the metre.
            let want = km(h.true_lat, h.true_lon, h.pred_lat, h.pred_lon);
            assert!((h.error_km - want).abs() <= 5e-4, "{}", h.name);
            assert!(h.error_km > 100.0, "{}", h.name);
        }
        let nuuk = hits.iter().find(|h| h.name == "Nuuk").unwrap();
        assert_eq!((nuuk.pred_lat, nuuk.pred_lon), (90.0, -180.0));
        // Each split is drawn as lines, then prediction rings, then filled true dots, in the
        // order of `points`; the legend's circles come after.
        let c = circles(&scene);
        let mut at = 0;
        for split in ["train", "test"] {
            let part: Vec<_> = hits.iter().filter(|h| h.split == split).collect();
            for h in &part {
                assert_eq!(c[at], (h.pred_xy[0], h.pred_xy[1], false), "{}", h.name);
                at += 1;
            }
            for h in &part {
                assert_eq!(c[at], (h.true_xy[0], h.true_xy[1], true), "{}", h.name);
                at += 1;
            }
        }
        // And where the projection puts them (to the scene's 1/100 px rounding).
        let f = MapFrame::for_options(&opts);
        for h in hits {
            let a = f.to_px(h.true_lon, h.true_lat);
            let b = f.to_px(h.pred_lon, h.pred_lat);
            assert!((h.true_xy[0] as f64 - a[0]).abs() <= 0.006);
            assert!((h.true_xy[1] as f64 - a[1]).abs() <= 0.006);
            assert!((h.pred_xy[0] as f64 - b[0]).abs() <= 0.006);
            assert!((h.pred_xy[1] as f64 - b[1]).abs() <= 0.006);
        }
        // The hit list travels with the scene's JSON and comes back the same.
        let json = scene.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["points"].as_array().unwrap().len(), hits.len());
        assert_eq!(v["points"][0]["name"], hits[0].name.as_str());
        assert!(v["points"][0]["pred_xy"].is_array());
        assert_eq!(render::Scene::from_json(&json).unwrap(), scene);
    }
    // Other scenes carry no hit list at all.
    let empty = render::Scene::new(10.0, 10.0);
    assert!(!empty.to_json().contains("points"));
}

/// A small synthetic space dataset with a planted signal at layer 1, analysed for real.
fn small_report(split: SplitSpec) -> Report {
    let n = 120;
    let d = 8;
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut names = Vec::new();
    let mut targets = Vec::new();
    let mut continent = Vec::new();
    for i in 0..n {
        let (lat, lon) = (next() * 130.0 - 60.0, next() * 340.0 - 170.0);
        names.push(format!("place {i}"));
        targets.push(vec![lat, lon]);
        continent.push(
            ["West", "Middle", "East"][((lon + 170.0) / 114.0).floor().min(2.0) as usize]
                .to_string(),
        );
    }
    let mut groups = BTreeMap::new();
    groups.insert("continent".to_string(), continent);
    let ds = Dataset {
        name: "hits".into(),
        kind: TargetKind::Space,
        names,
        targets,
        groups,
        is_test: None,
    };
    let mut acts = Activations::zeros(2, n, d);
    for l in 0..=2 {
        for i in 0..n {
            for j in 0..d {
                let signal = if l == 1 && j < 2 {
                    ds.targets[i][j] / 60.0
                } else {
                    0.0
                };
                acts.data[(l * n + i) * d + j] = (signal + next() - 0.5) as f32;
            }
        }
    }
    let opts = AnalysisOptions {
        n_permutations: 0,
        ngram_buckets: 64,
        ..AnalysisOptions::default()
    };
    analyze(
        &acts,
        &ds,
        &split,
        &opts,
        &ControlInputs {
            first_token_ids: vec![],
            random_init: None,
            name_surprisal: None,
        },
        &ReportContext {
            model_name: "synthetic".into(),
            model_sha256: "0".repeat(64),
            prompt_template: "{name}".into(),
            pooling: Pooling::Last,
            dataset_name: "hits".into(),
        },
        &mut |_, _, _| true,
    )
    .unwrap()
}

#[test]
fn layer_map_shows_the_chosen_split_with_errors_from_the_report() {
    let r = small_report(SplitSpec::Random {
        test_fraction: 0.25,
        seed: 5,
    });
    let (n_test, n_train) = (30, 90);
    let lp = r.layer_predictions.as_ref().unwrap();
    assert_eq!(
        (lp.entities.len(), lp.train_entities.len()),
        (n_test, n_train)
    );
    assert_eq!(lp.train_predicted.len(), r.layers.len());
    assert!(lp.train_predicted.iter().all(|l| l.len() == n_train));
    for layer in 0..=2 {
        let test_only = map_scene_at_layer(&r, layer, ColorBy::ByGroup, false)
            .unwrap()
            .unwrap();
        let both = map_scene_at_layer(&r, layer, ColorBy::ByGroup, true)
            .unwrap()
            .unwrap();
        assert_eq!(test_only.points.len(), n_test);
        assert!(test_only.points.iter().all(|h| h.split == "test"));
        assert_eq!(both.points.len(), n_test + n_train);
        assert_eq!(
            both.points.iter().filter(|h| h.split == "train").count(),
            n_train
        );
        // The toggle changes what is drawn: one ring and one dot more per training place.
        assert_eq!(
            circles(&both).len() - circles(&test_only).len(),
            2 * n_train + 1, // + the legend's "faded: training split"
        );
        for h in &both.points {
            let e = r.entities.iter().find(|e| e.name == h.name).unwrap();
            assert_eq!(h.split, e.split, "{}", h.name);
            // Degrees to 1e-6, km to the metre.
            assert!((h.true_lat - e.truth[0]).abs() <= 5e-7);
            assert!((h.true_lon - e.truth[1]).abs() <= 5e-7);
            let want = km(h.true_lat, h.true_lon, h.pred_lat, h.pred_lon);
            assert!((h.error_km - want).abs() <= 5e-4, "{}", h.name);
            if layer == r.selected.layer {
                // The selected layer is the report's own per-entity predictions and errors.
                assert!(
                    (h.error_km - e.error).abs() < 2e-3,
                    "{}: {} vs {}",
                    h.name,
                    h.error_km,
                    e.error
                );
                assert!((h.pred_lat - e.predicted[0].clamp(-90.0, 90.0)).abs() <= 5e-7);
                let lon = (e.predicted[1] + 180.0).rem_euclid(360.0) - 180.0;
                assert!((h.pred_lon - lon).abs() <= 1e-6, "{}", h.name);
            }
        }
    }
    assert!(map_scene_at_layer(&r, 9, ColorBy::ByGroup, true)
        .unwrap()
        .is_none());

    // Leave-one-group-out has no single training set: every place is a test place.
    let loo = small_report(SplitSpec::Group {
        column: "continent".into(),
        held_out: None,
    });
    let lp = loo.layer_predictions.as_ref().unwrap();
    assert!(lp.train_entities.is_empty() && lp.train_predicted.is_empty());
    let s = map_scene_at_layer(&loo, 1, ColorBy::ByGroup, true)
        .unwrap()
        .unwrap();
    assert_eq!(s.points.len(), 120);
    assert!(s.points.iter().all(|h| h.split == "test"));
    // Reports written before training predictions were stored still load.
    let mut v: serde_json::Value = serde_json::to_value(&r).unwrap();
    let lpv = v["layer_predictions"].as_object_mut().unwrap();
    lpv.remove("train_entities");
    lpv.remove("train_predicted");
    let old: Report = serde_json::from_value(v).unwrap();
    let sel = map_scene_at_layer(&old, old.selected.layer, ColorBy::ByGroup, true)
        .unwrap()
        .unwrap();
    assert_eq!(sel.points.len(), n_test + n_train);
    let other = (old.selected.layer + 1) % 3;
    let s = map_scene_at_layer(&old, other, ColorBy::ByGroup, true)
        .unwrap()
        .unwrap();
    assert_eq!(s.points.len(), n_test);
}

#[test]
fn legend_has_no_entry_for_points_without_a_group() {
    let opts = MapOptions::default();
    let with = |group: &str| {
        vec![
            place("Paris", 48.85, 2.35, 45.0, 10.0, group, true),
            place("Tokyo", 35.7, 139.7, 30.0, 120.0, group, true),
        ]
    };
    let texts = |s: &render::Scene| -> Vec<String> {
        s.items
            .iter()
            .filter_map(|i| match i {
                render::Item::Text { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    };
    let named = map_scene(&with("Europe"), &opts);
    let unnamed = map_scene(&with(""), &opts);
    assert!(texts(&named).iter().any(|t| t == "Europe"));
    // The named map has one legend dot more; the unnamed one has none and no blank label.
    assert_eq!(circles(&unnamed).len() + 1, circles(&named).len());
    assert!(texts(&unnamed).iter().all(|t| !t.trim().is_empty()));
}

#[test]
fn group_proximity_error_places_its_test_places_among_every_prediction() {
    let r = small_report(SplitSpec::Random {
        test_fraction: 0.25,
        seed: 5,
    });
    let test: Vec<_> = r.entities.iter().filter(|e| e.split == "test").collect();
    assert_eq!(test.len(), 30);
    assert_eq!(r.entities.len(), 120);
    // By the definition (Gurnee & Tegmark): the share of the other entities, training rows
    // included, whose prediction (clamped and wrapped onto the globe) is nearer to the test
    // place's true position than its own prediction.
    let placed = |o: &probelab::probe::analysis::EntityPrediction| {
        (
            o.predicted[0].clamp(-90.0, 90.0),
            (o.predicted[1] + 180.0).rem_euclid(360.0) - 180.0,
        )
    };
    let own = |e: &&probelab::probe::analysis::EntityPrediction| {
        let closer = r
            .entities
            .iter()
            .filter(|o| o.index != e.index)
            .filter(|o| {
                let (la, lo) = placed(o);
                km(e.truth[0], e.truth[1], la, lo) < e.error
            })
            .count();
        closer as f64 / (r.entities.len() - 1) as f64
    };
    assert_eq!(r.by_group.len(), 3);
    for g in &r.by_group {
        let mine: Vec<f64> = test
            .iter()
            .filter(|e| e.group.as_deref() == Some(g.group.as_str()))
            .map(own)
            .collect();
        assert_eq!(mine.len(), g.n_test, "{}", g.group);
        let want = mine.iter().sum::<f64>() / mine.len() as f64;
        let got = g.proximity_error.unwrap();
        assert!((got - want).abs() < 1e-12, "{}: {got} vs {want}", g.group);
    }
}

#[test]
fn surprisal_shades_the_places_on_a_ramp_with_a_colour_bar() {
    let opts = MapOptions {
        color_by: ColorBy::Surprisal,
        ..MapOptions::default()
    };
    let mut pts: Vec<MapPoint> = (0..21)
        .map(|i| {
            let mut p = place(
                &format!("p{i}"),
                0.0,
                -100.0 + 10.0 * i as f64,
                0.0,
                0.0,
                "",
                true,
            );
            p.surprisal = Some(i as f64);
            p
        })
        .collect();
    pts[20].surprisal = None;
    let s = map_scene(&pts, &opts);
    let fills: Vec<String> = s
        .items
        .iter()
        .filter_map(|it| match it {
            render::Item::Circle {
                r, fill: Some(f), ..
            } if *r == 3.0 => Some(f.clone()),
            _ => None,
        })
        .collect();
    // The lowest surprisal is at the ramp's light end, the highest at its dark end (the ramp
    // spans the 5th to 95th percentile), a place without one is grey.
    let has = |c: String| fills.iter().any(|f| f.starts_with(&c));
    assert!(has(render::ramp_color(0.0)), "{fills:?}");
    assert!(has(render::ramp_color(1.0)), "{fills:?}");
    assert!(has("#666666".into()), "{fills:?}");
    let texts: Vec<&str> = s
        .items
        .iter()
        .filter_map(|it| match it {
            render::Item::Text { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        texts.contains(&"model's surprisal of the name (nats/token)"),
        "{texts:?}"
    );
    // Nothing measured: every place grey, and the legend says so.
    for p in &mut pts {
        p.surprisal = None;
    }
    let s = map_scene(&pts, &opts);
    assert!(s.items.iter().any(
        |it| matches!(it, render::Item::Text { text, .. } if text == "no surprisal measured")
    ));
}
