//! Probes and what they are worth: ridge with exact cross-validation, splits, metrics, the
//! controls and the analysis that turns activations and targets into a report.
//!
//! Files by job, in the order the data flows:
//! - [`split`]: the seeded generator, train/test splits, validation folds, group hold-outs;
//! - [`matrix`]: row-major matrices and the train-only standard scaler;
//! - [`ridge`]: RidgeCv and its spectral engine, the scaled probe, permutations;
//! - [`linalg`]: eigensolver, Cholesky, small products;
//! - [`metrics`]: R², great-circle km, ranks, proximity;
//! - `plan`: what does not depend on the layer (targets, splits, folds, shuffles, control task);
//! - `lexical`: what the names' characters give without a model (n-grams, nearest names) and
//!   the residual a probe beside them is fitted to;
//! - [`learning`]: at the selected layer, learning curves and the online code length;
//! - [`coverage`]: whom the map serves (error against population or page views);
//! - [`flags`]: what each name's form gives away (qualifier, code, a place inside, homonym);
//! - `neuron`: the single-dimension ("space neuron") check;
//! - [`directions`]: one layer's probe as raw-space directions (what the causal test edits);
//! - [`analysis`]: the fit per layer, the selection of the layer, the report's assembly;
//! - [`preregistration`]: the analysis plan fixed before the test set is scored, its hash,
//!   and the ledger of plans scored on each test set (confirmatory or exploratory);
//! - [`report`]: report.json and predictions.csv types;
//! - [`layer_loop`]: the whole analysis in one call, its layers on threads natively.

pub mod analysis;
pub mod coverage;
pub mod directions;
pub mod flags;
pub mod layer_loop;
pub mod learning;
mod lexical;
pub mod linalg;
pub mod matrix;
pub mod metrics;
mod neuron;
mod plan;
pub mod preregistration;
pub mod report;
pub mod ridge;
pub mod split;

pub use analysis::{
    check_matches, Analysis, ControlInputs, LayerOutcome, PromptOutcome, StageProgress,
};
pub use layer_loop::{analyze, analyze_layers, analyze_prompts, LayerInputs, LayerTime};
pub use report::{predictions, predictions_csv, AnalysisOptions, Report, ReportContext, SplitSpec};

use crate::Error;

/// The crate's bad-input error, for every probe module.
pub(crate) fn input_err(msg: impl Into<String>) -> Error {
    Error::Input(msg.into())
}
