//! One error type for the whole crate: every message names the problem and, where it can,
//! what to do about it. Shells print `Display`; nothing here panics on bad input.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("not a GGUF file: {0}")]
    NotGguf(String),
    #[error("truncated or corrupt GGUF file: {0}")]
    CorruptGguf(String),
    #[error("unsupported model architecture '{0}': probelab runs llama-architecture GGUF models (SmolLM2, TinyLlama, Llama-2)")]
    UnsupportedArchitecture(String),
    #[error("unsupported quantization type {0}: supported are F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K")]
    UnsupportedQuant(String),
    #[error("GGUF metadata problem: {0}")]
    Metadata(String),
    #[error("tokenizer problem: {0}")]
    Tokenizer(String),
    #[error("bad input: {0}")]
    Input(String),
    #[error("dataset problem: {0}")]
    Dataset(String),
    /// A CSV without (usable) target columns: still a list of names to extract.
    #[error("dataset problem: {0}")]
    NoTargets(String),
    #[error("cancelled")]
    Cancelled,
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tensor computation failed: {0}")]
    Compute(String),
    /// The GPU engine cannot run (no adapter, an unsupported tensor, a lost device): the caller
    /// can fall back to the CPU engine.
    #[error("GPU engine: {0}")]
    Gpu(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Compute(e.to_string())
    }
}

impl Error {
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
