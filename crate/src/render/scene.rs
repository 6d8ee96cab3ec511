//! The scene: a figure as plain drawing primitives in paint order, shared by the browser
//! (canvas) and the command line (PNG), and the small builders the charts draw with.
//!
//! A [`Scene`] is built from plain data by [`map_scene`](super::map_scene),
//! [`layer_curve_scene`](super::layer_curve_scene) and
//! [`time_scatter_scene`](super::time_scatter_scene), serialized with serde, and either drawn on
//! a `<canvas>` by the page or rasterized by [`to_png`](super::to_png) (pure Rust: tiny-skia for
//! anti-aliased paths, ttf-parser for the embedded DejaVu Sans subset, so no system font is
//! needed and it would also run in wasm).
//!
//! # JSON
//!
//! ```json
//! {"width": 960, "height": 540, "items": [
//!   {"kind": "poly",   "points": [x0,y0, x1,y1, ...], "fill": "#rrggbb", "stroke": "#rrggbb", "width": 0.5},
//!   {"kind": "line",   "points": [x0,y0, x1,y1, ...], "color": "#rrggbb", "width": 1, "dash": [4, 3]},
//!   {"kind": "circle", "x": 10, "y": 20, "r": 3, "fill": "#rrggbb", "stroke": "#rrggbb", "width": 1},
//!   {"kind": "text",   "x": 10, "y": 20, "text": "Asia", "size": 12, "anchor": "left",
//!                      "color": "#rrggbb", "bold": true, "angle": -90}
//! ], "points": [
//!   {"name": "Paris", "group": "Europe", "split": "test", "true_lat": 48.85, "true_lon": 2.35,
//!    "pred_lat": 45.1, "pred_lon": 10.2, "error_km": 612.3, "true_xy": [x, y], "pred_xy": [x, y]}
//! ]}
//! ```
//!
//! - Coordinates are CSS pixels, origin top-left, y down. Items are drawn in order (later on top).
//! - Colours are `#rrggbb` or `#rrggbbaa` (alpha last), as CSS and canvas accept them.
//! - `poly`: one closed ring, filled with the non-zero rule. `fill` and `stroke` may each be
//!   absent (then not drawn); `width` is the stroke width.
//! - `line`: an open polyline with round caps and joins; `dash` (absent = solid) is canvas's
//!   `setLineDash` array.
//! - `circle`: centre and radius; `fill` / `stroke` as for `poly`.
//! - `text`: one line; `(x, y)` is the anchor point on the **alphabetic baseline** (canvas's
//!   default `textBaseline`); `anchor` is canvas's `textAlign`: `"left"`, `"center"` or
//!   `"right"`; `size` is the font size in pixels (a sans-serif font); `bold` absent = normal;
//!   `angle` (absent = 0) rotates the text clockwise by that many degrees about `(x, y)` (−90
//!   reads bottom to top, as on a y axis).
//!
//! - `points` (map scenes only; absent when empty): what is under the pointer, for hover and
//!   tap, so the page does no projection maths. One entry per drawn place in paint order
//!   (training first, then test): the predicted position as drawn (latitude clamped to ±90°,
//!   longitude to ±180°), the great-circle (haversine) error in km between the true and drawn
//!   predicted positions (degrees to 1e-6, km to 1e-3), and the scene coordinates of the centres of the true (filled) and
//!   predicted (ring) markers, equal to those circles' `x`, `y`. On a moves map
//!   ([`moves_map_scene`](super::moves_map_scene), e.g. the causal test's) the "predicted"
//!   position is the one before any change (the model's answer before any edit).
//!
//! On a canvas: `ctx.font = (bold ? "bold " : "") + size + "px sans-serif"; ctx.textAlign =
//! anchor; ctx.translate(x, y); ctx.rotate(angle * Math.PI / 180); ctx.fillText(text, 0, 0)`.

use serde::{Deserialize, Serialize};

use super::map::MapHit;
use crate::{Error, Result};

/// A figure: a pixel size and drawing items in paint order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub width: f32,
    pub height: f32,
    pub items: Vec<Item>,
    /// Hover targets of a map scene (see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<MapHit>,
}

/// Horizontal text alignment about the anchor point (canvas `textAlign`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Anchor {
    #[default]
    Left,
    Center,
    Right,
}

/// One drawing primitive; see the module docs for the JSON form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Item {
    /// A closed ring `[x0, y0, x1, y1, …]`, filled (non-zero rule) and/or stroked.
    Poly {
        points: Vec<f32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fill: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stroke: Option<String>,
        #[serde(default)]
        width: f32,
    },
    /// An open polyline `[x0, y0, x1, y1, …]`, round caps and joins.
    Line {
        points: Vec<f32>,
        color: String,
        width: f32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dash: Vec<f32>,
    },
    /// A circle, filled and/or stroked.
    Circle {
        x: f32,
        y: f32,
        r: f32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fill: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stroke: Option<String>,
        #[serde(default)]
        width: f32,
    },
    /// One line of text; `(x, y)` on the alphabetic baseline, rotated by `angle` degrees
    /// clockwise about that point.
    Text {
        x: f32,
        y: f32,
        text: String,
        size: f32,
        #[serde(default)]
        anchor: Anchor,
        color: String,
        #[serde(default, skip_serializing_if = "is_false")]
        bold: bool,
        #[serde(default, skip_serializing_if = "is_zero")]
        angle: f32,
    },
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

/// Rounds a coordinate to 1/100 px so the JSON stays short.
pub(super) fn r2(v: f64) -> f32 {
    ((v * 100.0).round() / 100.0) as f32
}

impl Scene {
    pub fn new(width: f32, height: f32) -> Self {
        Scene {
            width,
            height,
            items: Vec::new(),
            points: Vec::new(),
        }
    }

    /// The scene as compact JSON (see the module docs).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a scene always serializes")
    }

    /// Reads a scene written by [`Scene::to_json`].
    pub fn from_json(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::Input(format!("not a scene: {e}")))
    }

    pub(super) fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str) {
        self.items.push(Item::Poly {
            points: vec![
                r2(x),
                r2(y),
                r2(x + w),
                r2(y),
                r2(x + w),
                r2(y + h),
                r2(x),
                r2(y + h),
            ],
            fill: Some(fill.to_string()),
            stroke: None,
            width: 0.0,
        });
    }

    pub(super) fn poly(
        &mut self,
        pts: &[[f64; 2]],
        fill: Option<&str>,
        stroke: Option<&str>,
        width: f64,
    ) {
        self.items.push(Item::Poly {
            points: flat(pts),
            fill: fill.map(str::to_string),
            stroke: stroke.map(str::to_string),
            width: width as f32,
        });
    }

    pub(super) fn line(&mut self, pts: &[[f64; 2]], color: &str, width: f64, dash: &[f32]) {
        if pts.len() < 2 {
            return;
        }
        self.items.push(Item::Line {
            points: flat(pts),
            color: color.to_string(),
            width: width as f32,
            dash: dash.to_vec(),
        });
    }

    pub(super) fn circle(
        &mut self,
        x: f64,
        y: f64,
        r: f64,
        fill: Option<&str>,
        stroke: Option<&str>,
        w: f64,
    ) {
        self.items.push(Item::Circle {
            x: r2(x),
            y: r2(y),
            r: r as f32,
            fill: fill.map(str::to_string),
            stroke: stroke.map(str::to_string),
            width: w as f32,
        });
    }

    pub(super) fn label(
        &mut self,
        x: f64,
        y: f64,
        text: &str,
        size: f64,
        anchor: Anchor,
        color: &str,
    ) {
        self.text(x, y, text, size, anchor, color, false, 0.0);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn text(
        &mut self,
        x: f64,
        y: f64,
        text: &str,
        size: f64,
        anchor: Anchor,
        color: &str,
        bold: bool,
        angle: f64,
    ) {
        self.items.push(Item::Text {
            x: r2(x),
            y: r2(y),
            text: text.to_string(),
            size: size as f32,
            anchor,
            color: color.to_string(),
            bold,
            angle: angle as f32,
        });
    }
}

fn flat(pts: &[[f64; 2]]) -> Vec<f32> {
    pts.iter().flat_map(|p| [r2(p[0]), r2(p[1])]).collect()
}
