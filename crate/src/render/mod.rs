//! Figures as plain drawing primitives, shared by the browser (canvas) and the command line
//! (PNG): the world map, the layer curve, the time scatter, and the summary in words.

pub mod draw;
pub mod figures;
pub mod geo;
pub use draw::*;
