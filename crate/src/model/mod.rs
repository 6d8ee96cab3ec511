//! The model: GGUF files, the tokenizer read from their metadata, the CPU forward pass with the
//! residual stream captured at every layer, and loading all of it from bytes.

pub mod forward;
pub mod gguf;
pub mod load;
pub mod synthetic;
pub mod tokenizer;

pub use forward::{to_flat, Llama, LoadOptions, Matmul};
pub use load::{LoadedModel, ModelHeader, ModelSummary};

/// How layers are numbered, everywhere (files, reports, figures, the page).
pub const LAYER_CONVENTION: &str =
    "layer 0 = embedding output; layer i (1..=L) = residual stream after block i";
