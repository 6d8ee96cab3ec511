//! Colours: the fixed colours of every figure, the palettes for groups and series, and
//! parsing and fading `#rrggbb(aa)` strings.

use crate::{Error, Result};

/// Page background of every built scene.
pub const BACKGROUND: &str = "#ffffff";
/// Map ocean fill (inside the globe's outline).
pub const OCEAN: &str = "#dde8f0";
/// Map land fill.
pub const LAND: &str = "#f2efe6";
/// Country borders.
pub const BORDER: &str = "#b8b2a4";
pub(super) const INK: &str = "#222222";
pub(super) const MUTED: &str = "#666666";
pub(super) const GRID: &str = "#e6e6e6";
pub(super) const AXIS: &str = "#888888";
/// Text that tells the reader not to trust a figure.
pub(super) const WARNING: &str = "#b3261e";

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

/// A sequential colour for `t` in 0..=1 (clamped): yellow through teal to dark purple,
/// viridis' ends and middle, a ramp that stays ordered in grey and for the common colour-vision
/// deficiencies.
pub fn ramp_color(t: f64) -> String {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let stops = [[0xfd, 0xe7, 0x25], [0x21, 0x91, 0x8c], [0x44, 0x01, 0x54]];
    let (a, b, u) = if t < 0.5 {
        (stops[0], stops[1], 2.0 * t)
    } else {
        (stops[1], stops[2], 2.0 * t - 1.0)
    };
    let ch = |k: usize| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * u).round() as u8;
    format!("#{:02x}{:02x}{:02x}", ch(0), ch(1), ch(2))
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
