//! Probes and what they are worth: ridge with exact cross-validation, splits, metrics, the
//! controls and the analysis that turns activations and targets into a report.
//!
//! Files by job, in the order the data flows:
//! - [`split`]: the seeded generator, train/test splits, validation folds, group hold-outs;
//! - [`ridge`]: RidgeCv and its spectral engine, scalers, permutations;
//! - [`linalg`]: eigensolver, Cholesky, small products;
//! - [`metrics`]: R², great-circle km, ranks, proximity;
//! - `plan`: what does not depend on the layer (targets, splits, folds, shuffles, control task);
//! - `neuron`: the single-dimension ("space neuron") check;
//! - [`analysis`]: the fit per layer, the selection of the layer, the report's assembly;
//! - [`report`]: report.json and predictions.csv types;
//! - `threads`: the native-only layer loop on threads.

pub mod analysis;
pub mod linalg;
pub mod metrics;
mod neuron;
mod plan;
pub mod report;
pub mod ridge;
pub mod split;
#[cfg(not(target_arch = "wasm32"))]
mod threads;

pub use analysis::{analyze, check_matches, Analysis, ControlInputs, LayerOutcome, StageProgress};
pub use report::{predictions, predictions_csv, AnalysisOptions, Report, ReportContext, SplitSpec};

use crate::Error;

/// The crate's bad-input error, for every probe module.
pub(crate) fn input_err(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}
