//! Probelab: linear probes for space and time on quantized llama models.
//!
//! The flow is one way: GGUF bytes → [`gguf::ModelFile`] → [`model::Llama`] + [`tokenizer::Tokenizer`];
//! names + prompt → [`extract`] → activations `[layers + 1, entities, d_model]` → [`acts`] files.
//! Layer 0 is the embedding output; layer i (1..=L) is the residual stream after block i.

pub mod acts;
pub mod analysis;
pub mod data;
pub mod engine;
pub mod error;
pub mod extract;
pub mod figures;
pub mod geo;
pub mod gguf;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod load;
pub mod metrics;
pub mod model;
pub mod probe;
pub mod render;
pub mod run;
pub mod tokenizer;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
