//! Probes and what they are worth: ridge with exact cross-validation, splits, metrics, the
//! controls and the analysis that turns activations and targets into a report.

pub mod analysis;
pub mod metrics;
pub mod ridge;
