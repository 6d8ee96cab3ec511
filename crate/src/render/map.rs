//! The world map: each place's true position and the probe's prediction joined by a line, on
//! Natural Earth outlines in the Equal Earth projection, with a legend, and the hover records
//! ([`MapHit`]) the page uses to show what is under the pointer; and the moves map, the same
//! world with arrows from where something about each place sits to where a change moves it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::color::{
    longitude_color, ramp_color, with_alpha, BACKGROUND, BORDER, CONTINENT_COLORS, INK, LAND,
    MUTED, OCEAN, PALETTE,
};
use super::font::text_width;
use super::geo;
use super::plot::{title, warning};
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

    world(&mut s, &f);

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
    credit(&mut s, &f);
    s
}

/// The globe in frame `f`: ocean, a 30° graticule, the countries and the outline.
fn world(s: &mut Scene, f: &MapFrame) {
    let outline = f.ring(&geo::outline());
    s.poly(&outline, Some(OCEAN), None, 0.0);
    for line in geo::graticule(30.0) {
        s.line(&f.ring(&line), "#ffffff", 0.7, &[]);
    }
    for ring in geo::projected_rings(true) {
        s.poly(&f.ring(&ring), Some(LAND), Some(BORDER), 0.5);
    }
    s.poly(&outline, None, Some("#9fb0bd"), 1.0);
}

/// The outlines' source and the projection, in the map's lower-right corner.
fn credit(s: &mut Scene, f: &MapFrame) {
    s.label(
        f.x + f.w - 2.0,
        f.y + f.h - 4.0,
        "Made with Natural Earth · Equal Earth projection",
        9.0,
        Anchor::Right,
        "#8a8a8a",
    );
}

/// One place and something about it that an intervention moves: where the place is, where the
/// thing sits before (e.g. the model's answer's expected position), and where it sits after
/// each kind of change (degrees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovedPoint {
    pub name: String,
    /// What the hover record shows as the group (e.g. the true answer).
    #[serde(default)]
    pub group: String,
    pub true_lat: f64,
    pub true_lon: f64,
    pub lat: f64,
    pub lon: f64,
    /// `[lat, lon]` after each of [`MovesOptions::kinds`], in that order (`None` = not
    /// measured).
    pub moved: Vec<Option<[f64; 2]>>,
}

/// One kind of change on a moves map: its legend label and its arrows' colour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoveKind {
    pub label: String,
    pub color: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MovesOptions {
    pub width: f32,
    pub height: f32,
    pub title: String,
    /// The legend's words for the ring at the position before any change.
    pub before_label: String,
    pub kinds: Vec<MoveKind>,
    /// A warning shown in a box across the top of the map (empty = none).
    pub note: String,
}

impl Default for MovesOptions {
    fn default() -> Self {
        MovesOptions {
            width: 720.0,
            height: 440.0,
            title: String::new(),
            before_label: "before".into(),
            kinds: Vec::new(),
            note: String::new(),
        }
    }
}

/// A straight arrow from `a` to `b` (pixels): a line and a small filled head at `b`. Nothing
/// when the two are under half a pixel apart.
pub(super) fn arrow(s: &mut Scene, a: [f64; 2], b: [f64; 2], color: &str, width: f64) {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len = dx.hypot(dy);
    if len.is_nan() || len < 0.5 {
        return;
    }
    let (ux, uy) = (dx / len, dy / len);
    let head = (4.0 + width).min(len * 0.7);
    let half = head * 0.45;
    let base = [b[0] - ux * head, b[1] - uy * head];
    s.line(&[a, base], color, width, &[]);
    s.poly(
        &[
            b,
            [base[0] - uy * half, base[1] + ux * half],
            [base[0] + uy * half, base[1] - ux * half],
        ],
        Some(color),
        None,
        0.0,
    );
}

/// The room a moves map keeps for its legend under the map.
const LEGEND_H: f32 = 44.0;

/// Where an intervention moves something about each place: the true place (small dark dot),
/// a thin grey line to where the thing sits before any change (ring), and from there one arrow
/// per kind of change to where it sits after it, in that kind's colour; on the same world map
/// as [`map_scene`], with a legend under it. Points with a non-finite true or
/// before position are skipped, and so is any non-finite moved position; latitudes beyond ±90°
/// are drawn on the edge and longitudes wrapped. The scene's `points` hold one hover record per
/// drawn place, its "predicted" position being the one before any change.
pub fn moves_map_scene(points: &[MovedPoint], opts: &MovesOptions) -> Scene {
    let mut s = Scene::new(opts.width, opts.height);
    let (w, h) = (opts.width as f64, opts.height as f64);
    s.rect(0.0, 0.0, w, h, BACKGROUND);
    // The map above a legend of two rows.
    let frame_opts = MapOptions {
        width: opts.width,
        height: (opts.height - LEGEND_H).max(1.0),
        title: opts.title.clone(),
        ..MapOptions::default()
    };
    let f = MapFrame::for_options(&frame_opts);
    title(&mut s, &opts.title, 12.0);
    world(&mut s, &f);

    let at = |lat: f64, lon: f64| {
        let lon = if (-180.0..=180.0).contains(&lon) {
            lon
        } else {
            (lon + 180.0).rem_euclid(360.0) - 180.0
        };
        f.to_px(lon, lat.clamp(-90.0, 90.0))
    };
    let shown: Vec<&MovedPoint> = points
        .iter()
        .filter(|p| {
            [p.true_lat, p.true_lon, p.lat, p.lon]
                .iter()
                .all(|v| v.is_finite())
        })
        .collect();
    for p in &shown {
        let a = at(p.true_lat, p.true_lon);
        let b = at(p.lat, p.lon);
        let mp = MapPoint {
            name: p.name.clone(),
            true_lat: p.true_lat,
            true_lon: p.true_lon,
            pred_lat: p.lat,
            pred_lon: p.lon,
            group: p.group.clone(),
            is_test: true,
            surprisal: None,
        };
        s.points
            .push(MapHit::new(&mp, [r2(a[0]), r2(a[1])], [r2(b[0]), r2(b[1])]));
    }
    let grey = with_alpha(MUTED, 0.45);
    for p in &shown {
        s.line(
            &[at(p.true_lat, p.true_lon), at(p.lat, p.lon)],
            &grey,
            0.6,
            &[],
        );
    }
    for p in &shown {
        let a = at(p.true_lat, p.true_lon);
        s.circle(a[0], a[1], 2.2, Some("#444444"), Some("#ffffffcc"), 0.5);
    }
    for (k, kind) in opts.kinds.iter().enumerate() {
        for p in &shown {
            let Some([lat, lon]) = p.moved.get(k).copied().flatten() else {
                continue;
            };
            if lat.is_finite() && lon.is_finite() {
                arrow(&mut s, at(p.lat, p.lon), at(lat, lon), &kind.color, 1.1);
            }
        }
    }
    for p in &shown {
        let b = at(p.lat, p.lon);
        s.circle(b[0], b[1], 2.6, Some("#ffffff"), Some(INK), 1.0);
    }

    // Legend under the map, two rows a column: the two markers, then one arrow per kind.
    let entries: Vec<&str> = ["true place", opts.before_label.as_str()]
        .into_iter()
        .chain(opts.kinds.iter().map(|k| k.label.as_str()))
        .collect();
    let widths: Vec<f64> = entries
        .chunks(2)
        .map(|c| {
            c.iter()
                .map(|t| text_width(t, 11.0, false) * 1.05)
                .fold(0.0, f64::max)
                + 24.0
        })
        .collect();
    let gap = 18.0;
    let total = widths.iter().sum::<f64>() + gap * (widths.len() as f64 - 1.0);
    let mut cx = ((w - total) / 2.0).max(8.0);
    let ly = f.y + f.h + 16.0;
    for (col, (pair, cw)) in entries.chunks(2).zip(&widths).enumerate() {
        for (row, text) in pair.iter().enumerate() {
            let (i, y) = (col * 2 + row, ly + row as f64 * 16.0);
            match i {
                0 => s.circle(cx + 9.0, y, 2.2, Some("#444444"), None, 0.0),
                1 => s.circle(cx + 9.0, y, 2.6, Some("#ffffff"), Some(INK), 1.0),
                k => arrow(
                    &mut s,
                    [cx, y],
                    [cx + 18.0, y],
                    &opts.kinds[k - 2].color,
                    1.4,
                ),
            }
            s.label(cx + 24.0, y + 4.0, text, 11.0, Anchor::Left, INK);
        }
        cx += cw + gap;
    }
    warning(&mut s, w / 2.0, f.y + 18.0, &opts.note);
    credit(&mut s, &f);
    s
}
