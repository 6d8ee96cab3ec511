//! The world map: each place's true position and the probe's prediction joined by a line, on
//! Natural Earth outlines in the Equal Earth projection, with a legend, and the hover records
//! ([`MapHit`]) the page uses to show what is under the pointer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::color::{
    longitude_color, ramp_color, with_alpha, BACKGROUND, BORDER, CONTINENT_COLORS, INK, LAND,
    MUTED, OCEAN, PALETTE,
};
use super::font::text_width;
use super::geo;
use super::plot::title;
use super::scene::{r2, Anchor, Scene};
use crate::probe::metrics;

/// One place on the map: where it is and where the probe put it (degrees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapPoint {
    pub name: String,
    pub true_lat: f64,
    pub true_lon: f64,
    pub pred_lat: f64,
    pub pred_lon: f64,
    /// Colour group (a continent name gets its fixed colour; other groups get palette colours).
    pub group: String,
    pub is_test: bool,
    /// The model's surprisal of the name (nats per token), for [`ColorBy::Surprisal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surprisal: Option<f64>,
}

/// How map points are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColorBy {
    /// By `MapPoint::group`, with a legend.
    #[default]
    ByGroup,
    /// By true longitude on a cyclic colour ramp, with a colour bar: a probe that keeps the
    /// east–west order shows the rainbow in order.
    ByTrueLongitude,
    /// By the model's surprisal of the name on a sequential ramp (familiar = light, surprising
    /// = dark), with a colour bar over the shown points' range; points without one are grey.
    Surprisal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MapOptions {
    pub width: f32,
    pub height: f32,
    pub color_by: ColorBy,
    /// Also draw the training points (faded, under the test points).
    pub show_train: bool,
    pub title: String,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions {
            width: 960.0,
            height: 540.0,
            color_by: ColorBy::ByGroup,
            show_train: false,
            title: String::new(),
        }
    }
}

/// Where the world sits in a map scene: the pixel rectangle of [`geo::project`]'s unit box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapFrame {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl MapFrame {
    /// The frame for a map scene with these options (the world fitted below the title, with
    /// its Equal Earth aspect ratio kept).
    pub fn for_options(opts: &MapOptions) -> Self {
        let (w, h) = (opts.width as f64, opts.height as f64);
        let m = 8.0;
        let top = if opts.title.is_empty() { m } else { 34.0 };
        let aw = (w - 2.0 * m).max(1.0);
        let ah = (h - top - m).max(1.0);
        let (fw, fh) = if aw / ah > geo::EQUAL_EARTH_ASPECT {
            (ah * geo::EQUAL_EARTH_ASPECT, ah)
        } else {
            (aw, aw / geo::EQUAL_EARTH_ASPECT)
        };
        MapFrame {
            x: (w - fw) / 2.0,
            y: top + (ah - fh) / 2.0,
            w: fw,
            h: fh,
        }
    }

    /// Pixel position of (lon, lat) in degrees.
    pub fn to_px(&self, lon: f64, lat: f64) -> [f64; 2] {
        let [u, v] = geo::project(lon, lat);
        [self.x + u * self.w, self.y + v * self.h]
    }

    /// (lon, lat) in degrees under a pixel, `None` off the globe.
    pub fn from_px(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        geo::unproject((x - self.x) / self.w, (y - self.y) / self.h)
    }

    fn ring(&self, unit: &[[f64; 2]]) -> Vec<[f64; 2]> {
        unit.iter()
            .map(|[u, v]| [self.x + u * self.w, self.y + v * self.h])
            .collect()
    }
}

/// One place drawn on a map, for hit-testing: what a tooltip shows and where its markers are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapHit {
    pub name: String,
    pub group: String,
    /// `"train"` or `"test"`.
    pub split: String,
    pub true_lat: f64,
    pub true_lon: f64,
    /// The predicted position as drawn (latitude clamped to ±90°, longitude to ±180°); all
    /// four positions in degrees to 1e-6.
    pub pred_lat: f64,
    pub pred_lon: f64,
    /// Great-circle (haversine) km between the true and the drawn predicted position, to 1e-3.
    pub error_km: f64,
    /// Scene coordinates of the true marker's centre.
    pub true_xy: [f32; 2],
    /// Scene coordinates of the predicted marker's centre.
    pub pred_xy: [f32; 2],
}

/// Rounds to `10^-digits`: few enough digits that the value comes back bit for bit from JSON.
fn round_to(v: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (v * k).round() / k
}

impl MapHit {
    /// The hit record of a drawn place with its markers at `true_xy` and `pred_xy`. Degrees are
    /// kept to 1e-6 (0.1 m) and km to 1e-3, so that a scene read back from JSON is equal to the
    /// one written; `error_km` is the haversine distance between the positions as recorded.
    pub fn new(p: &MapPoint, true_xy: [f32; 2], pred_xy: [f32; 2]) -> Self {
        let (true_lat, true_lon) = (round_to(p.true_lat, 6), round_to(p.true_lon, 6));
        let pred_lat = round_to(p.pred_lat.clamp(-90.0, 90.0), 6);
        let pred_lon = round_to(p.pred_lon.clamp(-180.0, 180.0), 6);
        let km = metrics::great_circle_km(
            metrics::LatLon {
                lat: true_lat,
                lon: true_lon,
            },
            metrics::LatLon {
                lat: pred_lat,
                lon: pred_lon,
            },
        );
        MapHit {
            name: p.name.clone(),
            group: p.group.clone(),
            split: if p.is_test { "test" } else { "train" }.into(),
            true_lat,
            true_lon,
            pred_lat,
            pred_lon,
            error_km: round_to(km, 3),
            true_xy,
            pred_xy,
        }
    }
}

/// Colour of each group: continents keep their fixed colour, other groups take palette colours
/// in sorted order.
pub fn group_colors<'a>(groups: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut next = 0usize;
    let mut uniq: Vec<&str> = groups.into_iter().collect();
    uniq.sort_unstable();
    uniq.dedup();
    for g in uniq {
        let c = match CONTINENT_COLORS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(g))
        {
            Some((_, c)) => c.to_string(),
            None => {
                let c = PALETTE[next % PALETTE.len()].to_string();
                next += 1;
                c
            }
        };
        out.insert(g.to_string(), c);
    }
    out
}

/// True position of each place (filled dot) and the probe's prediction (ring) joined by a thin
/// line, on Natural Earth country outlines in the Equal Earth projection with a 30° graticule.
/// Test points are drawn on top of (faded) training points, which appear only with
/// `show_train`. Points with a non-finite coordinate are skipped; predicted latitudes and
/// longitudes beyond the map are drawn on its edge. The scene's `points` list every drawn place
/// for hover and tap (see [`MapHit`]).
pub fn map_scene(points: &[MapPoint], opts: &MapOptions) -> Scene {
    let mut s = Scene::new(opts.width, opts.height);
    let (w, h) = (opts.width as f64, opts.height as f64);
    s.rect(0.0, 0.0, w, h, BACKGROUND);
    let f = MapFrame::for_options(opts);
    title(&mut s, &opts.title, 12.0);

    let outline = f.ring(&geo::outline());
    s.poly(&outline, Some(OCEAN), None, 0.0);
    for line in geo::graticule(30.0) {
        s.line(&f.ring(&line), "#ffffff", 0.7, &[]);
    }
    for ring in geo::projected_rings(true) {
        s.poly(&f.ring(&ring), Some(LAND), Some(BORDER), 0.5);
    }
    s.poly(&outline, None, Some("#9fb0bd"), 1.0);

    let shown: Vec<&MapPoint> = points
        .iter()
        .filter(|p| p.is_test || opts.show_train)
        .filter(|p| {
            [p.true_lat, p.true_lon, p.pred_lat, p.pred_lon]
                .iter()
                .all(|v| v.is_finite())
        })
        .collect();
    let colors = group_colors(shown.iter().map(|p| p.group.as_str()));
    // The surprisal ramp spans the shown points' 5th to 95th percentile, so a few odd names
    // do not wash out the rest.
    let ramp = {
        let mut v: Vec<f64> = shown.iter().filter_map(|p| p.surprisal).collect();
        v.sort_by(f64::total_cmp);
        let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
        (!v.is_empty()).then(|| (q(0.05), q(0.95).max(q(0.05) + 1e-9)))
    };
    let color_of = |p: &MapPoint| match opts.color_by {
        ColorBy::ByGroup => colors[&p.group].clone(),
        ColorBy::ByTrueLongitude => longitude_color(p.true_lon),
        ColorBy::Surprisal => match (p.surprisal, ramp) {
            (Some(v), Some((lo, hi))) => ramp_color((v - lo) / (hi - lo)),
            _ => MUTED.to_string(),
        },
    };
    let dot_r = if shown.len() > 1500 { 2.2 } else { 3.0 };
    for test in [false, true] {
        let layer: Vec<&&MapPoint> = shown.iter().filter(|p| p.is_test == test).collect();
        let alpha = if test { 1.0 } else { 0.35 };
        for p in &layer {
            let a = f.to_px(p.true_lon, p.true_lat);
            let b = f.to_px(p.pred_lon, p.pred_lat);
            s.points
                .push(MapHit::new(p, [r2(a[0]), r2(a[1])], [r2(b[0]), r2(b[1])]));
        }
        for p in &layer {
            let c = color_of(p);
            let a = f.to_px(p.true_lon, p.true_lat);
            let b = f.to_px(p.pred_lon, p.pred_lat);
            s.line(&[a, b], &with_alpha(&c, 0.55 * alpha), 0.7, &[]);
        }
        for p in &layer {
            let c = color_of(p);
            let b = f.to_px(p.pred_lon, p.pred_lat);
            s.circle(
                b[0],
                b[1],
                dot_r * 0.8,
                None,
                Some(&with_alpha(&c, alpha)),
                1.1,
            );
        }
        for p in &layer {
            let c = color_of(p);
            let a = f.to_px(p.true_lon, p.true_lat);
            s.circle(
                a[0],
                a[1],
                dot_r,
                Some(&with_alpha(&c, alpha)),
                Some(&with_alpha("#ffffff", 0.8 * alpha)),
                0.6,
            );
        }
    }

    // Legend in the empty lower-left corner of the map, key for the marks in the lower right.
    let lx = f.x + 6.0;
    match opts.color_by {
        // Points without a group (a CSV with no group column) get a colour but no legend entry.
        ColorBy::ByGroup if colors.keys().any(|g| !g.is_empty()) => {
            let mut names: Vec<(&String, &String)> =
                colors.iter().filter(|(g, _)| !g.is_empty()).collect();
            let more = names.len().saturating_sub(10);
            names.truncate(if more > 0 { 9 } else { 10 });
            let rows = names.len() + usize::from(more > 0);
            let bw = names
                .iter()
                .map(|(n, _)| text_width(n, 11.0, false))
                .fold(60.0, f64::max)
                + 30.0;
            let top = f.y + f.h - 8.0 - rows as f64 * 16.0;
            s.rect(
                lx - 4.0,
                top - 6.0,
                bw,
                rows as f64 * 16.0 + 8.0,
                "#ffffffcc",
            );
            for (i, (n, c)) in names.iter().enumerate() {
                let cy = top + 6.0 + i as f64 * 16.0;
                s.circle(lx + 6.0, cy, 4.0, Some(c), None, 0.0);
                s.label(lx + 16.0, cy + 4.0, n, 11.0, Anchor::Left, INK);
            }
            if more > 0 {
                let cy = top + 6.0 + names.len() as f64 * 16.0;
                s.label(
                    lx + 16.0,
                    cy + 4.0,
                    &format!("+{} more groups", more + 1),
                    11.0,
                    Anchor::Left,
                    MUTED,
                );
            }
        }
        ColorBy::ByGroup => {}
        ColorBy::Surprisal => {
            let bw = (f.w * 0.2).clamp(100.0, 220.0);
            let top = f.y + f.h - 44.0;
            s.rect(lx - 4.0, top - 4.0, bw + 24.0, 46.0, "#ffffffcc");
            let label = match ramp {
                Some(_) => "model's surprisal of the name (nats/token)",
                None => "no surprisal measured",
            };
            s.label(lx + 4.0, top + 9.0, label, 11.0, Anchor::Left, INK);
            if let Some((lo, hi)) = ramp {
                let n = 24;
                for i in 0..n {
                    let x0 = lx + 4.0 + bw * i as f64 / n as f64;
                    let c = ramp_color((i as f64 + 0.5) / n as f64);
                    s.rect(x0, top + 14.0, bw / n as f64 + 0.6, 9.0, &c);
                }
                for (i, v) in [lo, hi].iter().enumerate() {
                    let x = lx + 4.0 + bw * i as f64;
                    let anchor = [Anchor::Left, Anchor::Right][i];
                    s.label(x, top + 35.0, &format!("{v:.1}"), 10.0, anchor, MUTED);
                }
            }
        }
        ColorBy::ByTrueLongitude => {
            let bw = (f.w * 0.2).clamp(100.0, 220.0);
            let top = f.y + f.h - 44.0;
            s.rect(lx - 4.0, top - 4.0, bw + 24.0, 46.0, "#ffffffcc");
            s.label(
                lx + 4.0,
                top + 9.0,
                "true longitude",
                11.0,
                Anchor::Left,
                INK,
            );
            let n = 36;
            for i in 0..n {
                let x0 = lx + 4.0 + bw * i as f64 / n as f64;
                let lon = -180.0 + 360.0 * (i as f64 + 0.5) / n as f64;
                s.rect(
                    x0,
                    top + 14.0,
                    bw / n as f64 + 0.6,
                    9.0,
                    &longitude_color(lon),
                );
            }
            for (i, l) in ["180°W", "0°", "180°E"].iter().enumerate() {
                let x = lx + 4.0 + bw * i as f64 / 2.0;
                let anchor = [Anchor::Left, Anchor::Center, Anchor::Right][i];
                s.label(x, top + 35.0, l, 10.0, anchor, MUTED);
            }
        }
    }
    let mut key = vec![("true place", true), ("probe's prediction", false)];
    if opts.show_train {
        key.push(("faded: training split", true));
    }
    let kw = key
        .iter()
        .map(|(t, _)| text_width(t, 11.0, false))
        .fold(0.0, f64::max)
        + 30.0;
    let kx = f.x + f.w - kw - 2.0;
    let ktop = f.y + f.h - 8.0 - key.len() as f64 * 16.0 - 14.0;
    s.rect(
        kx - 4.0,
        ktop - 6.0,
        kw,
        key.len() as f64 * 16.0 + 8.0,
        "#ffffffcc",
    );
    for (i, (t, filled)) in key.iter().enumerate() {
        let cy = ktop + 6.0 + i as f64 * 16.0;
        let faded = i == 2;
        let c = if faded {
            with_alpha(MUTED, 0.35)
        } else {
            MUTED.to_string()
        };
        if *filled {
            s.circle(kx + 6.0, cy, 3.0, Some(&c), None, 0.0);
        } else {
            s.circle(kx + 6.0, cy, 2.4, None, Some(&c), 1.1);
        }
        s.label(kx + 16.0, cy + 4.0, t, 11.0, Anchor::Left, INK);
    }
    s.label(
        f.x + f.w - 2.0,
        f.y + f.h - 4.0,
        "Made with Natural Earth · Equal Earth projection",
        9.0,
        Anchor::Right,
        "#8a8a8a",
    );
    s
}
