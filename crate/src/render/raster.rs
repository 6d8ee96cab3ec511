//! Rasterizing: a scene painted into pixels with tiny-skia (anti-aliased paths, the embedded
//! font for text) and encoded as PNG.

use tiny_skia::{
    FillRule, LineCap, LineJoin, Paint, PathBuilder, Pixmap, Stroke, StrokeDash, Transform,
};

use super::color::parse_color;
use super::font::text_path;
use super::scene::{Item, Scene};
use crate::{Error, Result};

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
            if let Some(path) = text_path(text, *size, *anchor) {
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
