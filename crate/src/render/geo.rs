//! World geometry for maps: the Equal Earth projection, graticule lines and Natural Earth
//! 1:110m country outlines.
//!
//! **Projection.** Equal Earth (Šavrič, Patterson & Jenny 2018), an equal-area pseudocylindrical
//! projection: parallels are straight horizontal lines, meridians are curves symmetric about the
//! central meridian (0°), the poles are straight lines. On the unit sphere
//!
//! ```text
//! θ = asin(√3/2 · sin φ)
//! x = 2√3 · λ · cos θ / (3 · (A1 + 3·A2·θ² + θ⁶·(7·A3 + 9·A4·θ²)))
//! y = θ · (A1 + A2·θ² + θ⁶·(A3 + A4·θ²))
//! A1 = 1.340264, A2 = −0.081106, A3 = 0.000893, A4 = 0.003796
//! ```
//!
//! so x ∈ [−[`EQUAL_EARTH_X_MAX`], +X_MAX] and y ∈ [−[`EQUAL_EARTH_Y_MAX`], +Y_MAX] (north positive).
//! [`project`] maps that box onto the unit box `[0, 1] × [0, 1]` with **u to the east and v
//! downwards** (north at the top, as on a screen), so a picture of width `w` and height
//! `w / EQUAL_EARTH_ASPECT` shows the whole world undistorted.
//!
//! **Outlines.** `crate/data/world_110m.bin` holds Natural Earth's 1:110m countries (public
//! domain, "Made with Natural Earth"), taken from the npm package `world-atlas` 2.0.2 and
//! rebuilt by `crate/data/make/build_world_outlines.sh`. Rings that crossed the antimeridian
//! (Russia, Fiji, Antarctica) were cut there by that script, so no ring has an edge longer than
//! 180° of longitude and nothing streaks across the map; Antarctica is closed along the south
//! pole line. Coordinates are stored to 0.01°.

use std::sync::OnceLock;

const A1: f64 = 1.340264;
const A2: f64 = -0.081106;
const A3: f64 = 0.000893;
const A4: f64 = 0.003796;

/// √3 / 2: sin θ = M · sin φ.
const M: f64 = 0.866_025_403_784_438_6;

/// Largest |x| of Equal Earth on the unit sphere (λ = ±π on the equator): 2√3·π / (3·A1).
pub const EQUAL_EARTH_X_MAX: f64 = 2.706_629_983_696_074_3;
/// Largest |y| of Equal Earth on the unit sphere (at the poles, θ = π/3).
pub const EQUAL_EARTH_Y_MAX: f64 = 1.317_362_759_157_413_3;
/// Width / height of the whole Equal Earth map (≈ 2.0546).
pub const EQUAL_EARTH_ASPECT: f64 = EQUAL_EARTH_X_MAX / EQUAL_EARTH_Y_MAX;

/// Equal Earth on the unit sphere: longitude and latitude in degrees → (x, y), north positive.
/// Latitude is clamped to [−90, 90] and longitude to [−180, 180] (no wrapping: a longitude of
/// 190 is drawn on the map's east edge, not in the west).
pub fn equal_earth(lon_deg: f64, lat_deg: f64) -> (f64, f64) {
    let lam = lon_deg.clamp(-180.0, 180.0).to_radians();
    let phi = lat_deg.clamp(-90.0, 90.0).to_radians();
    let theta = (M * phi.sin()).asin();
    let t2 = theta * theta;
    let t6 = t2 * t2 * t2;
    let x = 2.0 * 3f64.sqrt() * lam * theta.cos()
        / (3.0 * (A1 + 3.0 * A2 * t2 + t6 * (7.0 * A3 + 9.0 * A4 * t2)));
    let y = theta * (A1 + A2 * t2 + t6 * (A3 + A4 * t2));
    (x, y)
}

/// Inverse of [`equal_earth`]: (x, y) on the unit sphere → (longitude, latitude) in degrees, or
/// `None` outside the map (beyond the poles or the ±180° meridians).
pub fn equal_earth_inverse(x: f64, y: f64) -> Option<(f64, f64)> {
    if !x.is_finite() || !y.is_finite() || y.abs() > EQUAL_EARTH_Y_MAX + 1e-12 {
        return None;
    }
    // Newton on θ for y(θ); y is monotone on [−π/3, π/3].
    let mut theta = y / A1;
    for _ in 0..20 {
        let t2 = theta * theta;
        let t6 = t2 * t2 * t2;
        let f = theta * (A1 + A2 * t2 + t6 * (A3 + A4 * t2)) - y;
        let df = A1 + 3.0 * A2 * t2 + t6 * (7.0 * A3 + 9.0 * A4 * t2);
        let step = f / df;
        theta = (theta - step).clamp(-std::f64::consts::FRAC_PI_3, std::f64::consts::FRAC_PI_3);
        if step.abs() < 1e-14 {
            break;
        }
    }
    let t2 = theta * theta;
    let t6 = t2 * t2 * t2;
    let df = A1 + 3.0 * A2 * t2 + t6 * (7.0 * A3 + 9.0 * A4 * t2);
    let cos_t = theta.cos();
    let lam = if cos_t.abs() < 1e-12 {
        0.0
    } else {
        3.0 * x * df / (2.0 * 3f64.sqrt() * cos_t)
    };
    if lam.abs() > std::f64::consts::PI + 1e-9 {
        return None;
    }
    let phi = ((theta.sin() / M).clamp(-1.0, 1.0)).asin();
    Some((lam.to_degrees().clamp(-180.0, 180.0), phi.to_degrees()))
}

/// Equal Earth scaled into the unit box: (lon, lat) in degrees → (u, v) ∈ [0, 1]², u east,
/// v down (north up). The box's aspect ratio is [`EQUAL_EARTH_ASPECT`].
pub fn project(lon_deg: f64, lat_deg: f64) -> [f64; 2] {
    let (x, y) = equal_earth(lon_deg, lat_deg);
    [
        (x + EQUAL_EARTH_X_MAX) / (2.0 * EQUAL_EARTH_X_MAX),
        (EQUAL_EARTH_Y_MAX - y) / (2.0 * EQUAL_EARTH_Y_MAX),
    ]
}

/// Inverse of [`project`]: (u, v) in the unit box → (lon, lat) degrees, `None` off the globe.
pub fn unproject(u: f64, v: f64) -> Option<(f64, f64)> {
    equal_earth_inverse(
        u * 2.0 * EQUAL_EARTH_X_MAX - EQUAL_EARTH_X_MAX,
        EQUAL_EARTH_Y_MAX - v * 2.0 * EQUAL_EARTH_Y_MAX,
    )
}

/// The globe's outline in the unit box (a closed ring, not repeating its first point): the
/// +180° meridian from north to south, then the −180° meridian from south to north.
pub fn outline() -> Vec<[f64; 2]> {
    let mut ring = Vec::with_capacity(362);
    for i in 0..=180 {
        ring.push(project(180.0, 90.0 - i as f64));
    }
    for i in 0..=180 {
        ring.push(project(-180.0, -90.0 + i as f64));
    }
    ring
}

/// Graticule polylines in the unit box: meridians every `step_deg` degrees from −180 to 180
/// (the ±180 ones are the map edge and left out) running pole to pole, and parallels every
/// `step_deg` degrees strictly between the poles. Each line is sampled every degree.
pub fn graticule(step_deg: f64) -> Vec<Vec<[f64; 2]>> {
    let step = if step_deg.is_finite() && step_deg >= 1.0 {
        step_deg
    } else {
        30.0
    };
    let mut lines = Vec::new();
    let mut lon = -180.0 + step;
    while lon < 180.0 - 1e-9 {
        lines.push((0..=180).map(|i| project(lon, -90.0 + i as f64)).collect());
        lon += step;
    }
    let mut lat = -90.0 + step;
    while lat < 90.0 - 1e-9 {
        lines.push((0..=360).map(|i| project(-180.0 + i as f64, lat)).collect());
        lat += step;
    }
    lines
}

/// One polygon: rings of [lon, lat] degrees; the first ring is the exterior, any others holes.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    pub rings: Vec<Vec<[f32; 2]>>,
}

/// A Natural Earth 1:110m country (177 of them, Antarctica included).
#[derive(Debug, Clone, PartialEq)]
pub struct Country {
    /// ISO 3166-1 numeric code, 0 where Natural Earth has none (e.g. Kosovo, N. Cyprus).
    pub id: u16,
    /// Natural Earth's short name ("Brazil", "Dem. Rep. Congo", "W. Sahara"…).
    pub name: String,
    pub polygons: Vec<Polygon>,
}

static WORLD_BIN: &[u8] = include_bytes!("../../data/world_110m.bin");

/// All countries, decoded once from the embedded data.
pub fn countries() -> &'static [Country] {
    static CELL: OnceLock<Vec<Country>> = OnceLock::new();
    CELL.get_or_init(|| decode(WORLD_BIN).expect("embedded crate/data/world_110m.bin is corrupt"))
}

fn decode(bytes: &[u8]) -> Option<Vec<Country>> {
    struct R<'a>(&'a [u8]);
    impl R<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            if self.0.len() < n {
                return None;
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Some(a)
        }
        fn u8(&mut self) -> Option<u8> {
            Some(self.take(1)?[0])
        }
        fn u16(&mut self) -> Option<u16> {
            let b = self.take(2)?;
            Some(u16::from_le_bytes([b[0], b[1]]))
        }
        fn i16(&mut self) -> Option<i16> {
            let b = self.take(2)?;
            Some(i16::from_le_bytes([b[0], b[1]]))
        }
    }
    let mut r = R(bytes);
    if r.take(4)? != b"PLWO" || r.u8()? != 1 {
        return None;
    }
    let n = r.u16()? as usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.u16()?;
        let len = r.u8()? as usize;
        let name = String::from_utf8(r.take(len)?.to_vec()).ok()?;
        let np = r.u16()? as usize;
        let mut polygons = Vec::with_capacity(np);
        for _ in 0..np {
            let nr = r.u16()? as usize;
            let mut rings = Vec::with_capacity(nr);
            for _ in 0..nr {
                let npt = r.u16()? as usize;
                let mut ring = Vec::with_capacity(npt);
                for _ in 0..npt {
                    let lon = r.i16()? as f32 / 100.0;
                    let lat = r.i16()? as f32 / 100.0;
                    ring.push([lon, lat]);
                }
                rings.push(ring);
            }
            polygons.push(Polygon { rings });
        }
        out.push(Country { id, name, polygons });
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(out)
}

/// Every ring of every country projected into the unit box (see [`project`]). With
/// `exteriors_only`, holes are left out (fill-only drawing needs no holes: the one hole at
/// 1:110m, Lesotho inside South Africa, is itself a country filled in the same land colour).
pub fn projected_rings(exteriors_only: bool) -> Vec<Vec<[f64; 2]>> {
    let mut out = Vec::new();
    for c in countries() {
        for p in &c.polygons {
            let take = if exteriors_only { 1 } else { p.rings.len() };
            for ring in p.rings.iter().take(take) {
                out.push(
                    ring.iter()
                        .map(|&[lon, lat]| project(lon as f64, lat as f64))
                        .collect(),
                );
            }
        }
    }
    out
}

fn ring_contains(ring: &[[f32; 2]], lon: f64, lat: f64) -> bool {
    let mut inside = false;
    let n = ring.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (xi, yi) = (ring[i][0] as f64, ring[i][1] as f64);
        let (xj, yj) = (ring[j][0] as f64, ring[j][1] as f64);
        if (yi > lat) != (yj > lat) && lon < (xj - xi) * (lat - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// The country whose 1:110m outline contains (lon, lat), if any (even-odd rule on each
/// polygon, holes respected). Coarse: small islands are missing at this scale.
pub fn country_at(lon: f64, lat: f64) -> Option<&'static Country> {
    countries().iter().find(|c| {
        c.polygons.iter().any(|p| {
            p.rings
                .iter()
                .filter(|r| ring_contains(r, lon, lat))
                .count()
                % 2
                == 1
        })
    })
}

/// Whether (lon, lat) is on land at 1:110m.
pub fn is_land(lon: f64, lat: f64) -> bool {
    country_at(lon, lat).is_some()
}
