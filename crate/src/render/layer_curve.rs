//! The layer curve: a score against layer for the probe and its controls (lines, dashed
//! controls, null bands), the selected layer marked and one legend entry per series.

use serde::{Deserialize, Serialize};

use super::color::{parse_color, with_alpha, AXIS, BACKGROUND, INK, PALETTE};
use super::font::text_width;
use super::plot::{draw_axes, nice_step, nice_ticks, tick_label, title, Axes, Lin};
use super::scene::{Anchor, Scene};

/// The layer axis's explanation, always part of a layer curve's x label.
pub const LAYER_AXIS_NOTE: &str = "(0 = embeddings; i = after block i)";

/// How a series is drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SeriesStyle {
    /// Solid line with a marker at each layer.
    Line,
    /// Dashed line, no markers (controls).
    Dashed,
    /// A filled band from `lower` to `upper` (e.g. a permutation null's 5–95% range), with
    /// `values` (e.g. its median) as a thin line inside it.
    Band {
        lower: Vec<Option<f64>>,
        upper: Vec<Option<f64>>,
    },
}

/// What a curve's x values are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XAxis {
    /// Layers: the axis label explains the convention ([`LAYER_AXIS_NOTE`]).
    #[default]
    Layer,
    /// Counts (e.g. training entities): the label is shown as given.
    Count,
    /// Any real numbers (e.g. the doses of an edit, negative to positive): `values[i]` sits at
    /// `x[i]` and `LayerCurve::layers` is not used. Ticks at round values, label as given, a
    /// line at y = 0 when the range holds it.
    Value { x: Vec<f64> },
}

/// One curve over the layers; `values[i]` belongs to `LayerCurve::layers[i]` (`None` = gap).
/// A series with an empty label has no legend entry (e.g. an interval drawn under a line that
/// has one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub label: String,
    pub values: Vec<Option<f64>>,
    pub style: SeriesStyle,
    /// `#rrggbb`; empty = the next palette colour.
    #[serde(default)]
    pub color: String,
}

/// A metric per layer for the probe and its controls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerCurve {
    pub layers: Vec<usize>,
    pub series: Vec<Series>,
    /// The layer the report picked, marked by a vertical dashed line.
    #[serde(default)]
    pub selected_layer: Option<usize>,
    #[serde(default)]
    pub y_label: String,
    /// "layer" when empty; [`LAYER_AXIS_NOTE`] is appended when missing.
    #[serde(default)]
    pub x_label: String,
    #[serde(default)]
    pub title: String,
    /// Fixed y range; values outside are drawn on its edge. `None` = fit the data.
    #[serde(default)]
    pub y_range: Option<[f64; 2]>,
    /// What `layers` hold: layers, or counts on the same kind of axis.
    #[serde(default)]
    pub x_axis: XAxis,
}

/// The x label a layer curve shows for `x_label`.
pub fn layer_axis_label(x_label: &str) -> String {
    let base = if x_label.trim().is_empty() {
        "layer"
    } else {
        x_label.trim()
    };
    if base.contains("0 = embeddings") {
        base.to_string()
    } else {
        format!("{base} {LAYER_AXIS_NOTE}")
    }
}

/// A metric against layer: each series a line (or band), a legend with one entry per series in
/// order, the selected layer marked, and the x axis explained as
/// "layer (0 = embeddings; i = after block i)".
pub fn layer_curve_scene(curve: &LayerCurve, width: f32, height: f32) -> Scene {
    let mut s = Scene::new(width, height);
    let (w, h) = (width as f64, height as f64);
    s.rect(0.0, 0.0, w, h, BACKGROUND);
    title(&mut s, &curve.title, 14.0);

    // Series without a usable colour take palette colours, skipping any close to a colour a
    // series asked for (so a default never looks like the probe's own line).
    let explicit: Vec<[u8; 4]> = curve
        .series
        .iter()
        .filter_map(|se| parse_color(&se.color).ok())
        .collect();
    let mut free = PALETTE.iter().copied().filter(|c| {
        let [r, g, b, _] = parse_color(c).expect("palette colours parse");
        explicit.iter().all(|e| {
            (r as i32 - e[0] as i32).abs()
                + (g as i32 - e[1] as i32).abs()
                + (b as i32 - e[2] as i32).abs()
                > 120
        })
    });
    let mut fallback = 0usize;
    let colors: Vec<String> = curve
        .series
        .iter()
        .map(|se| {
            if parse_color(&se.color).is_ok() {
                se.color.clone()
            } else {
                let c = free
                    .next()
                    .unwrap_or_else(|| PALETTE[fallback % PALETTE.len()]);
                fallback += 1;
                c.to_string()
            }
        })
        .collect();
    let entries: Vec<(Key, String)> = curve
        .series
        .iter()
        .zip(&colors)
        .filter(|(se, _)| !se.label.is_empty())
        .map(|(se, c)| {
            let key = match se.style {
                SeriesStyle::Line => Key::Line(c.clone(), vec![]),
                SeriesStyle::Dashed => Key::Line(c.clone(), vec![5.0, 3.0]),
                SeriesStyle::Band { .. } => Key::Band(c.clone()),
            };
            (key, se.label.clone())
        })
        .collect();

    // y range from every finite value (bands included) unless fixed.
    let mut all: Vec<f64> = Vec::new();
    for se in &curve.series {
        all.extend(se.values.iter().flatten().copied());
        if let SeriesStyle::Band { lower, upper } = &se.style {
            all.extend(lower.iter().flatten().copied());
            all.extend(upper.iter().flatten().copied());
        }
    }
    all.retain(|v| v.is_finite());
    let (y0, y1) = match curve.y_range {
        Some([a, b]) if a.is_finite() && b.is_finite() && b > a => (a, b),
        _ => {
            let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if !lo.is_finite() {
                (0.0, 1.0)
            } else if hi - lo < 1e-12 {
                (lo - 0.5, hi + 0.5)
            } else {
                let pad = (hi - lo) * 0.06;
                (lo - pad, hi + pad)
            }
        }
    };
    let yt = nice_ticks(y0, y1, 5);
    let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
    let yfmt = |v: f64| tick_label(v, ystep);
    let ylw = yt
        .iter()
        .map(|v| text_width(&yfmt(*v), 11.0, false))
        .fold(0.0, f64::max);

    let left = 12.0 + 16.0 + ylw + 10.0;
    let right = w - 16.0;
    // A narrow chart (a phone, a column beside the map) gives the legend the full width.
    let legend_x = if w < 600.0 { 12.0 } else { left };
    let legend_h = legend_rows(&mut s, &entries, legend_x, 0.0, right, false) as f64 * 18.0;
    let top = if curve.title.is_empty() { 14.0 } else { 40.0 };
    let bottom = h - 48.0 - if legend_h > 0.0 { legend_h + 8.0 } else { 0.0 };

    let xv: Vec<f64> = match &curve.x_axis {
        XAxis::Value { x } => x.clone(),
        XAxis::Layer | XAxis::Count => curve.layers.iter().map(|&l| l as f64).collect(),
    };
    let finite_x = || xv.iter().copied().filter(|v| v.is_finite());
    let lmin = finite_x().fold(f64::INFINITY, f64::min);
    let lmax = finite_x().fold(f64::NEG_INFINITY, f64::max);
    let (lmin, lmax) = if lmin.is_finite() {
        (lmin, lmax)
    } else {
        (0.0, 1.0)
    };
    let (x0, x1) = if lmax > lmin {
        (lmin, lmax)
    } else {
        (lmin - 1.0, lmin + 1.0)
    };
    let xpad = (x1 - x0) * 0.03;
    let a = Axes {
        x: Lin {
            d0: x0 - xpad,
            d1: x1 + xpad,
            p0: left,
            p1: right,
        },
        y: Lin {
            d0: y0,
            d1: y1,
            p0: bottom,
            p1: top,
        },
        left,
        right,
        top,
        bottom,
    };
    let (xt, xfmt): (Vec<f64>, Box<dyn Fn(f64) -> String>) = match curve.x_axis {
        XAxis::Value { .. } => {
            let xt = nice_ticks(x0, x1, 8);
            let step = if xt.len() > 1 { xt[1] - xt[0] } else { 1.0 };
            (xt, Box::new(move |v| tick_label(v, step)))
        }
        XAxis::Layer | XAxis::Count => {
            let xstep = nice_step(((x1 - x0) / 12.0).max(1.0)).max(1.0);
            let xt = nice_ticks(x0, x1, ((x1 - x0) / xstep).round().max(1.0) as usize)
                .into_iter()
                .filter(|v| v.fract() == 0.0)
                .collect();
            (xt, Box::new(|v| format!("{v:.0}")))
        }
    };
    draw_axes(
        &mut s,
        &a,
        &xt,
        &yt,
        &xfmt,
        &yfmt,
        &match curve.x_axis {
            XAxis::Layer => layer_axis_label(&curve.x_label),
            XAxis::Count | XAxis::Value { .. } => curve.x_label.clone(),
        },
        &curve.y_label,
    );
    if matches!(curve.x_axis, XAxis::Value { .. }) && y0 < 0.0 && y1 > 0.0 {
        let py = a.y.at(0.0);
        s.line(&[[left, py], [right, py]], AXIS, 1.0, &[]);
    }

    let clamp = |v: f64| v.clamp(y0, y1);
    // A non-finite x is a gap, like a missing value.
    let xs: Vec<f64> = xv
        .iter()
        .map(|&v| if v.is_finite() { a.x.at(v) } else { f64::NAN })
        .collect();
    let segments = |vals: &[Option<f64>]| -> Vec<Vec<[f64; 2]>> {
        let mut segs = Vec::new();
        let mut cur = Vec::new();
        for (i, x) in xs.iter().enumerate() {
            match vals
                .get(i)
                .copied()
                .flatten()
                .filter(|v| v.is_finite() && x.is_finite())
            {
                Some(v) => cur.push([*x, a.y.at(clamp(v))]),
                None => {
                    if !cur.is_empty() {
                        segs.push(std::mem::take(&mut cur));
                    }
                }
            }
        }
        if !cur.is_empty() {
            segs.push(cur);
        }
        segs
    };

    // Bands first, then dashed controls, then solid lines on top.
    for pass in 0..3 {
        for (se, c) in curve.series.iter().zip(&colors) {
            match (&se.style, pass) {
                (SeriesStyle::Band { lower, upper }, 0) => {
                    let mut run: Vec<(f64, f64, f64)> = Vec::new();
                    let flush = |run: &mut Vec<(f64, f64, f64)>, s: &mut Scene| {
                        if !run.is_empty() {
                            let mut ring: Vec<[f64; 2]> =
                                run.iter().map(|&(x, _, u)| [x, a.y.at(clamp(u))]).collect();
                            ring.extend(run.iter().rev().map(|&(x, l, _)| [x, a.y.at(clamp(l))]));
                            if run.len() == 1 {
                                // a single layer: a short bar
                                let (x, l, u) = run[0];
                                ring = vec![
                                    [x - 3.0, a.y.at(clamp(u))],
                                    [x + 3.0, a.y.at(clamp(u))],
                                    [x + 3.0, a.y.at(clamp(l))],
                                    [x - 3.0, a.y.at(clamp(l))],
                                ];
                            }
                            s.poly(&ring, Some(&with_alpha(c, 0.22)), None, 0.0);
                            run.clear();
                        }
                    };
                    for (i, x) in xs.iter().enumerate() {
                        let ok = |v: &f64| v.is_finite() && x.is_finite();
                        let l = lower.get(i).copied().flatten().filter(ok);
                        let u = upper.get(i).copied().flatten().filter(ok);
                        match (l, u) {
                            (Some(l), Some(u)) => run.push((*x, l.min(u), l.max(u))),
                            _ => flush(&mut run, &mut s),
                        }
                    }
                    flush(&mut run, &mut s);
                    for seg in segments(&se.values) {
                        s.line(&seg, c, 1.0, &[]);
                    }
                }
                (SeriesStyle::Dashed, 1) => {
                    for seg in segments(&se.values) {
                        if seg.len() == 1 {
                            s.circle(seg[0][0], seg[0][1], 2.5, Some(c), None, 0.0);
                        }
                        s.line(&seg, c, 1.6, &[5.0, 3.0]);
                    }
                }
                (SeriesStyle::Line, 2) => {
                    for seg in segments(&se.values) {
                        s.line(&seg, c, 2.0, &[]);
                        if xs.len() <= 64 {
                            for p in &seg {
                                s.circle(p[0], p[1], 2.6, Some(c), Some(BACKGROUND), 0.8);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    if let Some(sel) = curve.selected_layer {
        let px = a.x.at(sel as f64);
        if px >= left - 1.0 && px <= right + 1.0 {
            s.line(&[[px, top], [px, bottom]], "#444444", 1.0, &[3.0, 3.0]);
            let label = format!("selected: layer {sel}");
            let anchor = if px > (left + right) / 2.0 {
                Anchor::Right
            } else {
                Anchor::Left
            };
            let dx = if anchor == Anchor::Right { -4.0 } else { 4.0 };
            s.label(px + dx, top + 11.0, &label, 11.0, anchor, "#444444");
        }
    }
    legend_rows(&mut s, &entries, legend_x, bottom + 56.0, right, true);
    s
}

/// One legend entry's key.
enum Key {
    Line(String, Vec<f32>),
    Band(String),
}

/// Lays out legend entries left to right from (x, y) wrapping at `max_x`; returns the rows used.
/// With `draw` false only measures.
fn legend_rows(
    s: &mut Scene,
    entries: &[(Key, String)],
    x: f64,
    y: f64,
    max_x: f64,
    draw: bool,
) -> usize {
    const ROW: f64 = 18.0;
    let mut cx = x;
    let mut row = 0usize;
    for (key, label) in entries {
        let w = 24.0 + text_width(label, 11.0, false) * 1.05 + 16.0;
        if cx > x && cx + w > max_x {
            row += 1;
            cx = x;
        }
        if draw {
            let cy = y + row as f64 * ROW;
            match key {
                Key::Line(c, dash) => s.line(&[[cx, cy], [cx + 18.0, cy]], c, 2.0, dash),
                Key::Band(c) => {
                    s.rect(cx, cy - 5.0, 18.0, 10.0, &with_alpha(c, 0.25));
                    s.line(&[[cx, cy], [cx + 18.0, cy]], c, 1.0, &[]);
                }
            }
            s.label(cx + 24.0, cy + 4.0, label, 11.0, Anchor::Left, INK);
        }
        cx += w;
    }
    if entries.is_empty() {
        0
    } else {
        row + 1
    }
}
