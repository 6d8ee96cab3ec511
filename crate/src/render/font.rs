//! Text: the embedded DejaVu Sans subset, the width of a line of text (for layout) and its
//! outline as a path (for rasterizing), so no system font is needed, natively or in wasm.

use std::sync::OnceLock;

use tiny_skia::PathBuilder;

use super::scene::Anchor;

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

/// The outline of one line of text at `size` px in the embedded font, in text space: the
/// `anchor` point at the origin on the alphabetic baseline, y down. `None` when nothing is inked.
pub(super) fn text_path(text: &str, size: f32, anchor: Anchor) -> Option<tiny_skia::Path> {
    let face = font();
    let scale = size / face.units_per_em() as f32;
    let width = text_width(text, size as f64, false) as f32;
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
    pb.finish()
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
