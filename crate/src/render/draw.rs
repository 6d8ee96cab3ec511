//! Scenes: figures as plain drawing primitives, shared by the browser (canvas) and the command
//! line (PNG).
//!
//! A [`Scene`] is built from plain data by [`map_scene`], [`layer_curve_scene`] and
//! [`time_scatter_scene`], serialized with serde, and either drawn on a `<canvas>` by the page or
//! rasterized here by [`to_png`] (pure Rust: tiny-skia for anti-aliased paths, ttf-parser for the
//! embedded DejaVu Sans subset, so no system font is needed and it would also run in wasm).
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
//!   predicted (ring) markers, equal to those circles' `x`, `y`.
//!
//! On a canvas: `ctx.font = (bold ? "bold " : "") + size + "px sans-serif"; ctx.textAlign =
//! anchor; ctx.translate(x, y); ctx.rotate(angle * Math.PI / 180); ctx.fillText(text, 0, 0)`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tiny_skia::{
    FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Stroke, StrokeDash, Transform,
};

use crate::probe::metrics;
use crate::render::geo;
use crate::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Scene
// ---------------------------------------------------------------------------------------------

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
fn r2(v: f64) -> f32 {
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

    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str) {
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

    fn poly(&mut self, pts: &[[f64; 2]], fill: Option<&str>, stroke: Option<&str>, width: f64) {
        self.items.push(Item::Poly {
            points: flat(pts),
            fill: fill.map(str::to_string),
            stroke: stroke.map(str::to_string),
            width: width as f32,
        });
    }

    fn line(&mut self, pts: &[[f64; 2]], color: &str, width: f64, dash: &[f32]) {
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

    fn circle(&mut self, x: f64, y: f64, r: f64, fill: Option<&str>, stroke: Option<&str>, w: f64) {
        self.items.push(Item::Circle {
            x: r2(x),
            y: r2(y),
            r: r as f32,
            fill: fill.map(str::to_string),
            stroke: stroke.map(str::to_string),
            width: w as f32,
        });
    }

    fn label(&mut self, x: f64, y: f64, text: &str, size: f64, anchor: Anchor, color: &str) {
        self.text(x, y, text, size, anchor, color, false, 0.0);
    }

    #[allow(clippy::too_many_arguments)]
    fn text(
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

// ---------------------------------------------------------------------------------------------
// Colours and text metrics
// ---------------------------------------------------------------------------------------------

/// Page background of every built scene.
pub const BACKGROUND: &str = "#ffffff";
/// Map ocean fill (inside the globe's outline).
pub const OCEAN: &str = "#dde8f0";
/// Map land fill.
pub const LAND: &str = "#f2efe6";
/// Country borders.
pub const BORDER: &str = "#b8b2a4";
const INK: &str = "#222222";
const MUTED: &str = "#666666";
const GRID: &str = "#e6e6e6";
const AXIS: &str = "#888888";

/// Fixed colours of the six inhabited continents (Okabe–Ito, colour-blind safe) and Antarctica.
pub const CONTINENT_COLORS: [(&str, &str); 7] = [
    ("Africa", "#e69f00"),
    ("Asia", "#d55e00"),
    ("Europe", "#0072b2"),
    ("North America", "#009e73"),
    ("South America", "#cc79a7"),
    ("Oceania", "#56b4e9"),
    ("Antarctica", "#999999"),
];

/// Colours handed out in order to groups that are not continents and to series without one.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// A colour (`#rgb`, `#rrggbb` or `#rrggbbaa`) with its alpha multiplied by `alpha` ∈ [0, 1],
/// as `#rrggbbaa`; an unreadable colour gives mid grey.
pub fn with_alpha(color: &str, alpha: f64) -> String {
    let [r, g, b, a] = parse_color(color).unwrap_or([128, 128, 128, 255]);
    let a = (a as f64 * alpha.clamp(0.0, 1.0)).round() as u8;
    format!("#{r:02x}{g:02x}{b:02x}{a:02x}")
}

/// A cyclic colour for a longitude (−180 and 180 get the same colour, as they are one place):
/// the "sinebow" hue cycle, darkened a little to stand out on the light map.
pub fn longitude_color(lon: f64) -> String {
    let t = ((lon + 180.0).rem_euclid(360.0)) / 360.0;
    let ch = |k: f64| {
        let s = (std::f64::consts::PI * (0.5 - t + k / 3.0)).sin();
        (255.0 * (0.06 + 0.78 * s * s)).round().clamp(0.0, 255.0) as u8
    };
    format!("#{:02x}{:02x}{:02x}", ch(0.0), ch(1.0), ch(2.0))
}

/// Parses `#rgb`, `#rrggbb` or `#rrggbbaa` into RGBA bytes.
pub fn parse_color(s: &str) -> Result<[u8; 4]> {
    let bad = || Error::Input(format!("colour '{s}' is not #rgb, #rrggbb or #rrggbbaa"));
    let hex = s.strip_prefix('#').ok_or_else(bad)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
    match hex.len() {
        3 => {
            let d = |i: usize| {
                u8::from_str_radix(&hex[i..i + 1], 16)
                    .map(|v| v * 17)
                    .map_err(|_| bad())
            };
            Ok([d(0)?, d(1)?, d(2)?, 255])
        }
        6 => Ok([byte(0)?, byte(2)?, byte(4)?, 255]),
        8 => Ok([byte(0)?, byte(2)?, byte(4)?, byte(6)?]),
        _ => Err(bad()),
    }
}

static FONT_BYTES: &[u8] = include_bytes!("../../data/DejaVuSans-subset.ttf");

fn font() -> &'static ttf_parser::Face<'static> {
    static FACE: OnceLock<ttf_parser::Face<'static>> = OnceLock::new();
    FACE.get_or_init(|| {
        ttf_parser::Face::parse(FONT_BYTES, 0)
            .expect("embedded crate/data/DejaVuSans-subset.ttf is corrupt")
    })
}

fn glyph_for(face: &ttf_parser::Face, c: char) -> ttf_parser::GlyphId {
    let c = if c.is_control() { ' ' } else { c };
    face.glyph_index(c)
        .or_else(|| face.glyph_index('?'))
        .unwrap_or(ttf_parser::GlyphId(0))
}

/// Width in pixels of one line of text at `size` px in the embedded font (DejaVu Sans; bold is
/// drawn as a slightly stroked regular, about 4% wider). Browsers' sans-serif fonts differ by a
/// few per cent, so layouts leave some slack.
pub fn text_width(text: &str, size: f64, bold: bool) -> f64 {
    let face = font();
    let units: u32 = text
        .chars()
        .map(|c| face.glyph_hor_advance(glyph_for(face, c)).unwrap_or(0) as u32)
        .sum();
    let w = units as f64 * size / face.units_per_em() as f64;
    if bold {
        w * 1.04
    } else {
        w
    }
}

// ---------------------------------------------------------------------------------------------
// Rasterizing
// ---------------------------------------------------------------------------------------------

/// Straight-alpha RGBA pixels, row-major, 4 bytes a pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

impl Raster {
    /// The pixel at (x, y), or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = ((y * self.width + x) * 4) as usize;
        Some([
            self.rgba[i],
            self.rgba[i + 1],
            self.rgba[i + 2],
            self.rgba[i + 3],
        ])
    }
}

/// The most pixels one raster may have (about 8k × 8k).
pub const MAX_PIXELS: u64 = 64 << 20;

fn pixmap(scene: &Scene, scale: f32) -> Result<Pixmap> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Input(format!(
            "scale {scale} must be a positive number"
        )));
    }
    if !(scene.width.is_finite()
        && scene.height.is_finite()
        && scene.width >= 1.0
        && scene.height >= 1.0)
    {
        return Err(Error::Input(format!(
            "scene size {}x{} must be at least 1x1 pixel",
            scene.width, scene.height
        )));
    }
    let w = (scene.width * scale).ceil();
    let h = (scene.height * scale).ceil();
    if (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(Error::Input(format!(
            "scene of {w}x{h} pixels is larger than the {MAX_PIXELS}-pixel limit"
        )));
    }
    let mut pm = Pixmap::new(w as u32, h as u32)
        .ok_or_else(|| Error::Input(format!("cannot make a {w}x{h} image")))?;
    let ts = Transform::from_scale(scale, scale);
    for item in &scene.items {
        draw(&mut pm, item, ts)?;
    }
    Ok(pm)
}

/// Rasterizes a scene at `scale` device pixels per scene pixel (2 for a sharp high-DPI image).
pub fn rasterize(scene: &Scene, scale: f32) -> Result<Raster> {
    let pm = pixmap(scene, scale)?;
    let (width, height) = (pm.width(), pm.height());
    Ok(Raster {
        width,
        height,
        rgba: pm.take_demultiplied(),
    })
}

/// The scene as a PNG at one device pixel per scene pixel.
pub fn to_png(scene: &Scene) -> Result<Vec<u8>> {
    to_png_scaled(scene, 1.0)
}

/// The scene as a PNG at `scale` device pixels per scene pixel.
pub fn to_png_scaled(scene: &Scene, scale: f32) -> Result<Vec<u8>> {
    pixmap(scene, scale)?
        .encode_png()
        .map_err(|e| Error::Compute(format!("PNG encoding failed: {e}")))
}

fn paint_of(color: &str) -> Result<Paint<'static>> {
    let [r, g, b, a] = parse_color(color)?;
    let mut p = Paint::default();
    p.set_color_rgba8(r, g, b, a);
    p.anti_alias = true;
    Ok(p)
}

fn path_of(points: &[f32], close: bool) -> Option<tiny_skia::Path> {
    if points.len() < 4 || points.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut pb = PathBuilder::new();
    pb.move_to(points[0], points[1]);
    for xy in points[2..].chunks_exact(2) {
        pb.line_to(xy[0], xy[1]);
    }
    if close {
        pb.close();
    }
    pb.finish()
}

fn stroke_of(width: f32, dash: &[f32]) -> Stroke {
    Stroke {
        width,
        line_cap: LineCap::Round,
        line_join: LineJoin::Round,
        dash: if dash.len() >= 2 && dash.iter().all(|d| d.is_finite() && *d >= 0.0) {
            let mut d = dash.to_vec();
            if d.len() % 2 == 1 {
                d.extend_from_slice(dash);
            }
            StrokeDash::new(d, 0.0)
        } else {
            None
        },
        ..Stroke::default()
    }
}

fn draw(pm: &mut Pixmap, item: &Item, ts: Transform) -> Result<()> {
    match item {
        Item::Poly {
            points,
            fill,
            stroke,
            width,
        } => {
            if points.len() % 2 != 0 {
                return Err(Error::Input("poly points must be x, y pairs".into()));
            }
            if let Some(path) = path_of(points, true) {
                if let Some(f) = fill {
                    pm.fill_path(&path, &paint_of(f)?, FillRule::Winding, ts, None);
                }
                if let Some(s) = stroke {
                    if *width > 0.0 {
                        pm.stroke_path(&path, &paint_of(s)?, &stroke_of(*width, &[]), ts, None);
                    }
                }
            }
        }
        Item::Line {
            points,
            color,
            width,
            dash,
        } => {
            if points.len() % 2 != 0 {
                return Err(Error::Input("line points must be x, y pairs".into()));
            }
            if *width > 0.0 {
                if let Some(path) = path_of(points, false) {
                    pm.stroke_path(&path, &paint_of(color)?, &stroke_of(*width, dash), ts, None);
                }
            }
        }
        Item::Circle {
            x,
            y,
            r,
            fill,
            stroke,
            width,
        } => {
            if let Some(path) = PathBuilder::from_circle(*x, *y, *r) {
                if let Some(f) = fill {
                    pm.fill_path(&path, &paint_of(f)?, FillRule::Winding, ts, None);
                }
                if let Some(s) = stroke {
                    if *width > 0.0 {
                        pm.stroke_path(&path, &paint_of(s)?, &stroke_of(*width, &[]), ts, None);
                    }
                }
            }
        }
        Item::Text {
            x,
            y,
            text,
            size,
            anchor,
            color,
            bold,
            angle,
        } => {
            if !(size.is_finite() && *size > 0.0 && x.is_finite() && y.is_finite()) {
                return Ok(());
            }
            let face = font();
            let scale = *size / face.units_per_em() as f32;
            let width = text_width(text, *size as f64, false) as f32;
            let mut pen = match anchor {
                Anchor::Left => 0.0,
                Anchor::Center => -width / 2.0,
                Anchor::Right => -width,
            };
            let mut pb = PathBuilder::new();
            for c in text.chars() {
                let g = glyph_for(face, c);
                let mut ob = GlyphOutline {
                    pb: &mut pb,
                    x: pen,
                    s: scale,
                };
                face.outline_glyph(g, &mut ob);
                pen += face.glyph_hor_advance(g).unwrap_or(0) as f32 * scale;
            }
            if let Some(path) = pb.finish() {
                let t = ts
                    .pre_concat(Transform::from_translate(*x, *y))
                    .pre_concat(Transform::from_rotate(*angle));
                let paint = paint_of(color)?;
                pm.fill_path(&path, &paint, FillRule::Winding, t, None);
                if *bold {
                    pm.stroke_path(&path, &paint, &stroke_of(*size * 0.045, &[]), t, None);
                }
            }
        }
    }
    Ok(())
}

/// Glyph outlines from font units (y up) into text space (baseline at y = 0, y down).
struct GlyphOutline<'a> {
    pb: &'a mut PathBuilder,
    x: f32,
    s: f32,
}

impl ttf_parser::OutlineBuilder for GlyphOutline<'_> {
    fn move_to(&mut self, x: f32, y: f32) {
        self.pb.move_to(self.x + x * self.s, -y * self.s);
    }
    fn line_to(&mut self, x: f32, y: f32) {
        self.pb.line_to(self.x + x * self.s, -y * self.s);
    }
    fn quad_to(&mut self, x1: f32, y1: f32, x: f32, y: f32) {
        self.pb.quad_to(
            self.x + x1 * self.s,
            -y1 * self.s,
            self.x + x * self.s,
            -y * self.s,
        );
    }
    fn curve_to(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, x: f32, y: f32) {
        self.pb.cubic_to(
            self.x + x1 * self.s,
            -y1 * self.s,
            self.x + x2 * self.s,
            -y2 * self.s,
            self.x + x * self.s,
            -y * self.s,
        );
    }
    fn close(&mut self) {
        self.pb.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Axes helpers
// ---------------------------------------------------------------------------------------------

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

fn nice_step(raw: f64) -> f64 {
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
fn tick_label(v: f64, step: f64) -> String {
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
struct Lin {
    d0: f64,
    d1: f64,
    p0: f64,
    p1: f64,
}

impl Lin {
    fn at(&self, v: f64) -> f64 {
        self.p0 + (v - self.d0) / (self.d1 - self.d0) * (self.p1 - self.p0)
    }
}

struct Axes {
    x: Lin,
    y: Lin,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

/// Grid lines, tick labels, the frame and axis labels of a 2-D plot.
#[allow(clippy::too_many_arguments)]
fn draw_axes(
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

fn title(s: &mut Scene, text: &str, x: f64) {
    if !text.is_empty() {
        s.text(x, 22.0, text, 16.0, Anchor::Left, INK, true, 0.0);
    }
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

// ---------------------------------------------------------------------------------------------
// Map
// ---------------------------------------------------------------------------------------------

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
    let color_of = |p: &MapPoint| match opts.color_by {
        ColorBy::ByGroup => colors[&p.group].clone(),
        ColorBy::ByTrueLongitude => longitude_color(p.true_lon),
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
        ColorBy::ByGroup if !colors.is_empty() => {
            let mut names: Vec<(&String, &String)> = colors.iter().collect();
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

// ---------------------------------------------------------------------------------------------
// Layer curve
// ---------------------------------------------------------------------------------------------

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

/// One curve over the layers; `values[i]` belongs to `LayerCurve::layers[i]` (`None` = gap).
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
    let legend_h = legend_rows(&mut s, &entries, left, 0.0, right, false) as f64 * 18.0;
    let top = if curve.title.is_empty() { 14.0 } else { 40.0 };
    let bottom = h - 48.0 - if legend_h > 0.0 { legend_h + 8.0 } else { 0.0 };

    let lmin = curve.layers.iter().copied().min().unwrap_or(0) as f64;
    let lmax = curve.layers.iter().copied().max().unwrap_or(1) as f64;
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
    let xstep = nice_step(((x1 - x0) / 12.0).max(1.0)).max(1.0);
    let xt: Vec<f64> = nice_ticks(x0, x1, ((x1 - x0) / xstep).round().max(1.0) as usize)
        .into_iter()
        .filter(|v| v.fract() == 0.0)
        .collect();
    draw_axes(
        &mut s,
        &a,
        &xt,
        &yt,
        &|v| format!("{v:.0}"),
        &yfmt,
        &layer_axis_label(&curve.x_label),
        &curve.y_label,
    );

    let clamp = |v: f64| v.clamp(y0, y1);
    let xs: Vec<f64> = curve.layers.iter().map(|&l| a.x.at(l as f64)).collect();
    let segments = |vals: &[Option<f64>]| -> Vec<Vec<[f64; 2]>> {
        let mut segs = Vec::new();
        let mut cur = Vec::new();
        for (i, x) in xs.iter().enumerate() {
            match vals.get(i).copied().flatten().filter(|v| v.is_finite()) {
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
                        let l = lower.get(i).copied().flatten().filter(|v| v.is_finite());
                        let u = upper.get(i).copied().flatten().filter(|v| v.is_finite());
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
    legend_rows(&mut s, &entries, left, bottom + 56.0, right, true);
    s
}

// ---------------------------------------------------------------------------------------------
// Time scatter
// ---------------------------------------------------------------------------------------------

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
