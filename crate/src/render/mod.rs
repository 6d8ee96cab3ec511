//! Figures as plain drawing primitives, shared by the browser (canvas) and the command line
//! (PNG): the world map, the layer curve, the time scatter, and the summary in words.
//!
//! Read top to bottom: the [`scene`] format every figure is built in, its [`color`]s and
//! [`font`], [`raster`]izing a scene to PNG, what the charts share ([`plot`]: title, ticks,
//! axes, a warning box), the three charts ([`map`] on the [`geo`] outlines, with its moves map
//! of arrows; [`layer_curve`], whose x values may also be any reals such as edit doses;
//! [`time_scatter`]), [`figures`]: a report's figures and summary built from these, and the
//! [`verdict`] card.

pub mod scene;

pub mod color;
pub mod font;
pub mod raster;

pub mod plot;

pub mod geo;
pub mod layer_curve;
pub mod map;
pub mod time_scatter;

pub mod figures;
pub mod verdict;

pub use color::{
    longitude_color, parse_color, ramp_color, with_alpha, BACKGROUND, BORDER, CONTINENT_COLORS,
    LAND, OCEAN, PALETTE,
};
pub use font::text_width;
pub use layer_curve::{
    layer_axis_label, layer_curve_scene, LayerCurve, Series, SeriesStyle, XAxis, LAYER_AXIS_NOTE,
};
pub use map::{
    group_colors, map_scene, moves_map_scene, ColorBy, MapFrame, MapHit, MapOptions, MapPoint,
    MoveKind, MovedPoint, MovesOptions,
};
pub use plot::nice_ticks;
pub use raster::{rasterize, to_png, to_png_scaled, Raster, MAX_PIXELS};
pub use scene::{Anchor, Item, Scene};
pub use time_scatter::{time_scatter_scene, TimeScatterOptions};
pub use verdict::{rivals, rivals_sentence, verdict, Check, Outcome, Rival, Verdict};
