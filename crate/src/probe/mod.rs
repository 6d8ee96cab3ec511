//! Probes and what they are worth: ridge with exact cross-validation, splits, metrics, the
//! controls and the analysis that turns activations and targets into a report.
//!
//! Files by job: [`ridge`] (RidgeCv and its spectral engine, scalers, splits, permutations),
//! [`linalg`] (eigensolver, Cholesky, small products), [`metrics`], [`analysis`] (the plan per
//! dataset, the fit per layer, the report assembly), [`report`] (report.json and
//! predictions.csv types), and `threads` (the native-only layer loop on threads).

pub mod analysis;
pub mod linalg;
pub mod metrics;
pub mod report;
pub mod ridge;
#[cfg(not(target_arch = "wasm32"))]
mod threads;

pub use analysis::{analyze, check_matches, Analysis, ControlInputs, LayerOutcome, StageProgress};
pub use report::{predictions, predictions_csv, AnalysisOptions, Report, ReportContext, SplitSpec};

use crate::Error;

/// The crate's bad-input error, for every probe module.
pub(crate) fn input_err(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}
