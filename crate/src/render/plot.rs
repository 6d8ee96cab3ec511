//! What the charts share: the title, round tick values and their labels, the axes of a 2-D
//! plot (grid, ticks, frame, axis labels), and a boxed warning.

use super::color::{AXIS, GRID, INK, MUTED, WARNING};
use super::font::text_width;
use super::scene::{Anchor, Scene};

/// Round tick values covering [lo, hi], about `target` of them, at a step of 1, 2 or 5 × 10^k.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

pub(super) fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * mag
}

/// A tick label with as many decimals as the tick step needs and a real minus sign.
pub(super) fn tick_label(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    };
    let s = format!("{:.*}", decimals, v);
    let s = if s
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        format!("{:.*}", decimals, 0.0)
    } else {
        s
    };
    s.replace('-', "\u{2212}")
}

/// Maps a data interval onto a pixel interval.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lin {
    pub(super) d0: f64,
    pub(super) d1: f64,
    pub(super) p0: f64,
    pub(super) p1: f64,
}

impl Lin {
    pub(super) fn at(&self, v: f64) -> f64 {
        self.p0 + (v - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)
    }
}

/// The data-to-pixel maps of a 2-D plot and its frame in pixels.
pub(super) struct Axes {
    pub(super) x: Lin,
    pub(super) y: Lin,
    pub(super) left: f64,
    pub(super) right: f64,
    pub(super) top: f64,
    pub(super) bottom: f64,
}

/// Grid lines, tick labels, the frame and axis labels of a 2-D plot.
#[allow(clippy::too_many_arguments)]
pub(super) fn draw_axes(
    s: &mut Scene,
    a: &Axes,
    xt: &[f64],
    yt: &[f64],
    xfmt: &dyn Fn(f64) -> String,
    yfmt: &dyn Fn(f64) -> String,
    x_label: &str,
    y_label: &str,
) {
    for &v in yt {
        let py = a.y.at(v);
        s.line(&[[a.left, py], [a.right, py]], GRID, 1.0, &[]);
        s.line(&[[a.left - 4.0, py], [a.left, py]], AXIS, 1.0, &[]);
        s.label(a.left - 7.0, py + 4.0, &yfmt(v), 11.0, Anchor::Right, MUTED);
    }
    for &v in xt {
        let px = a.x.at(v);
        s.line(&[[px, a.bottom], [px, a.bottom + 4.0]], AXIS, 1.0, &[]);
        s.label(px, a.bottom + 17.0, &xfmt(v), 11.0, Anchor::Center, MUTED);
    }
    s.line(
        &[[a.left, a.top], [a.left, a.bottom], [a.right, a.bottom]],
        AXIS,
        1.0,
        &[],
    );
    s.label(
        (a.left + a.right) / 2.0,
        a.bottom + 35.0,
        x_label,
        12.0,
        Anchor::Center,
        INK,
    );
    let ylw = yt
        .iter()
        .map(|v| text_width(&yfmt(*v), 11.0, false))
        .fold(0.0, f64::max);
    s.text(
        a.left - ylw - 16.0,
        (a.top + a.bottom) / 2.0,
        y_label,
        12.0,
        Anchor::Center,
        INK,
        false,
        -90.0,
    );
}

/// The figure's title, bold in the top-left corner at `x` (nothing when empty). In a narrow
/// figure it shrinks to fit, down to 10 px, and past that is cut with an ellipsis.
pub(super) fn title(s: &mut Scene, text: &str, x: f64) {
    if text.is_empty() {
        return;
    }
    // Browsers' sans-serif runs up to ~8% wider than the embedded font's metrics.
    let room = (s.width as f64 - 2.0 * x) / 1.08;
    let full = super::font::text_width(text, 16.0, true);
    let size = if full <= room {
        16.0
    } else {
        (16.0 * room / full).max(10.0)
    };
    let chars: Vec<char> = text.chars().collect();
    let mut keep = chars.len();
    let mut shown = text.to_string();
    // (A title shrunk to fit measures `room` to within rounding: not cut.)
    while keep > 1 && super::font::text_width(&shown, size, true) > room + 1e-6 {
        keep -= 1;
        let head: String = chars[..keep].iter().collect();
        shown = format!("{}…", head.trim_end());
    }
    s.text(x, 22.0, &shown, size, Anchor::Left, INK, true, 0.0);
}

/// A boxed warning (bold, in [`WARNING`] red) centred at `x` with its baseline at `y`; nothing
/// when `text` is empty.
pub(super) fn warning(s: &mut Scene, x: f64, y: f64, text: &str) {
    if text.is_empty() {
        return;
    }
    let w = text_width(text, 12.0, true) * 1.08 + 16.0;
    s.poly(
        &[
            [x - w / 2.0, y - 15.0],
            [x + w / 2.0, y - 15.0],
            [x + w / 2.0, y + 6.0],
            [x - w / 2.0, y + 6.0],
        ],
        Some("#ffffffe6"),
        Some(WARNING),
        1.0,
    );
    s.text(x, y, text, 12.0, Anchor::Center, WARNING, true, 0.0);
}
