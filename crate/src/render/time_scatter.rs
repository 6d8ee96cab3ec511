//! The time scatter: predicted against true year on one scale, the y = x diagonal dashed and
//! the worst outliers labelled where their labels fit.

use serde::{Deserialize, Serialize};

use super::color::{parse_color, with_alpha, BACKGROUND, INK, MUTED};
use super::font::text_width;
use super::plot::{draw_axes, nice_ticks, tick_label, title, Axes, Lin};
use super::scene::{Anchor, Scene};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TimeScatterOptions {
    pub width: f32,
    pub height: f32,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Label this many points with the largest |predicted − true| by name.
    pub label_outliers: usize,
    /// Dot colour, `#rrggbb`.
    pub color: String,
}

impl Default for TimeScatterOptions {
    fn default() -> Self {
        TimeScatterOptions {
            width: 640.0,
            height: 600.0,
            title: String::new(),
            x_label: "true year".into(),
            y_label: "predicted year".into(),
            label_outliers: 0,
            color: "#0072b2".into(),
        }
    }
}

/// Predicted against true year for each `(true_year, pred_year, label)`: the same scale on both
/// axes (a square plot), the y = x diagonal dashed, optionally the worst outliers labelled.
/// Non-finite points are skipped.
pub fn time_scatter_scene(points: &[(f64, f64, String)], opts: &TimeScatterOptions) -> Scene {
    let mut s = Scene::new(opts.width, opts.height);
    let (w, h) = (opts.width as f64, opts.height as f64);
    s.rect(0.0, 0.0, w, h, BACKGROUND);
    title(&mut s, &opts.title, 14.0);
    let pts: Vec<&(f64, f64, String)> = points
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let lo = pts
        .iter()
        .flat_map(|p| [p.0, p.1])
        .fold(f64::INFINITY, f64::min);
    let hi = pts
        .iter()
        .flat_map(|p| [p.0, p.1])
        .fold(f64::NEG_INFINITY, f64::max);
    let (d0, d1) = if !lo.is_finite() {
        (0.0, 2000.0)
    } else if hi - lo < 1e-9 {
        (lo - 10.0, hi + 10.0)
    } else {
        let pad = (hi - lo) * 0.04;
        (lo - pad, hi + pad)
    };
    let ticks = nice_ticks(d0, d1, 6);
    let step = if ticks.len() > 1 {
        ticks[1] - ticks[0]
    } else {
        1.0
    };
    let fmt = |v: f64| tick_label(v, step);
    let ylw = ticks
        .iter()
        .map(|v| text_width(&fmt(*v), 11.0, false))
        .fold(0.0, f64::max);
    let top = if opts.title.is_empty() { 14.0 } else { 40.0 };
    let left0 = 12.0 + 16.0 + ylw + 10.0;
    let side = (w - left0 - 16.0).min(h - top - 48.0).max(10.0);
    let left = left0 + ((w - left0 - 16.0) - side).max(0.0) / 2.0;
    let a = Axes {
        x: Lin {
            d0,
            d1,
            p0: left,
            p1: left + side,
        },
        y: Lin {
            d0,
            d1,
            p0: top + side,
            p1: top,
        },
        left,
        right: left + side,
        top,
        bottom: top + side,
    };
    draw_axes(
        &mut s,
        &a,
        &ticks,
        &ticks,
        &fmt,
        &fmt,
        &opts.x_label,
        &opts.y_label,
    );
    s.line(
        &[[a.x.at(d0), a.y.at(d0)], [a.x.at(d1), a.y.at(d1)]],
        "#999999",
        1.0,
        &[5.0, 4.0],
    );
    // key for the diagonal in the lower-right corner, far from the diagonal
    let kw = text_width("y = x (predicted = true)", 11.0, false);
    let (kx, ky) = (a.right - kw - 30.0, a.bottom - 12.0);
    s.line(&[[kx, ky], [kx + 20.0, ky]], "#999999", 1.0, &[5.0, 4.0]);
    s.label(
        kx + 26.0,
        ky + 4.0,
        "y = x (predicted = true)",
        11.0,
        Anchor::Left,
        MUTED,
    );
    let color = if parse_color(&opts.color).is_ok() {
        opts.color.as_str()
    } else {
        "#0072b2"
    };
    let r = if pts.len() > 1500 { 2.0 } else { 2.8 };
    for p in &pts {
        s.circle(
            a.x.at(p.0),
            a.y.at(p.1),
            r,
            Some(&with_alpha(color, 0.55)),
            None,
            0.0,
        );
    }
    let mut worst: Vec<&&(f64, f64, String)> = pts.iter().collect();
    worst.sort_by(|p, q| (q.1 - q.0).abs().total_cmp(&(p.1 - p.0).abs()));
    // Label the worst points; a label that would overlap an earlier one tries the other side,
    // then below, and is left out if every place is taken (its point keeps its ring).
    let mut placed: Vec<[f64; 4]> = Vec::new();
    for p in worst.into_iter().take(opts.label_outliers) {
        let (x, y) = (a.x.at(p.0), a.y.at(p.1));
        s.circle(x, y, r + 1.0, None, Some(INK), 1.0);
        let tw = text_width(&p.2, 10.0, false);
        let prefer_left = x > left + side * 0.7;
        let sides = if prefer_left {
            [-1.0, 1.0]
        } else {
            [1.0, -1.0]
        };
        let spot = sides
            .iter()
            .flat_map(|&sx| [(sx, -4.0), (sx, 12.0)])
            .map(|(sx, dy)| {
                let x0 = if sx > 0.0 { x + 6.0 } else { x - 6.0 - tw };
                (
                    sx,
                    dy,
                    [x0 - 1.0, y + dy - 10.0, x0 + tw + 1.0, y + dy + 3.0],
                )
            })
            .find(|(_, _, b)| {
                b[0] >= 0.0
                    && b[2] <= w
                    && !placed
                        .iter()
                        .any(|q| b[0] < q[2] && q[0] < b[2] && b[1] < q[3] && q[1] < b[3])
            });
        if let Some((sx, dy, b)) = spot {
            let (tx, anchor) = if sx > 0.0 {
                (x + 6.0, Anchor::Left)
            } else {
                (x - 6.0, Anchor::Right)
            };
            s.label(tx, y + dy, &p.2, 10.0, anchor, INK);
            placed.push(b);
        }
    }
    s
}
