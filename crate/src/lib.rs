//! Probelab: linear probes for space and time on quantized llama models.
//!
//! The flow is one way, and the modules follow it:
//! GGUF bytes → [`model`] (file, tokenizer, CPU forward pass; [`gpu`] for the wgpu one) →
//! names + prompt → [`extract`] → activations `[layers + 1, entities, d_model]` (and their files)
//! → [`probe`] (ridge per layer, controls, the report) → [`render`] (map, layer curve, summary).
//! [`data`] reads the datasets, [`engine`] chooses CPU or GPU, [`run`] chains the stages for the
//! shells ([`web`] in the browser, `bin/probelab.rs` on the command line).
//! Layer 0 is the embedding output; layer i (1..=L) is the residual stream after block i.

pub mod causal;
pub mod data;
pub mod engine;
pub mod error;
pub mod extract;
#[cfg(feature = "gpu")]
pub mod gpu;
pub mod model;
pub mod probe;
pub mod render;
pub mod run;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
