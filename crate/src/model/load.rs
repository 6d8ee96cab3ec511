//! Opening a model: header checks, tokenizer, weights, hash — everything the shells need.

use std::io::{Read, Seek};

use crate::error::{Error, Result};
use crate::model::gguf::{sha256_hex, ModelFile};
use crate::model::tokenizer::Tokenizer;
use crate::model::{Llama, LoadOptions};

pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub sha256: String,
    pub quant_summary: String,
    pub file_size: u64,
}

impl LoadedModel {
    /// Reads a GGUF stream: the header first (so a bad file fails fast), then the weights.
    pub fn read<R: Read + Seek>(reader: &mut R, opts: &LoadOptions) -> Result<Self> {
        let file = ModelFile::read(reader)?;
        let tokenizer = Tokenizer::from_gguf_metadata(file.metadata())?;
        let model = Llama::load(&file, reader, opts)?;
        if model.vocab_size != tokenizer.vocab_size {
            return Err(Error::Metadata(format!(
                "the tokenizer has {} tokens but token_embd has {} rows",
                tokenizer.vocab_size, model.vocab_size
            )));
        }
        let sha256 = sha256_hex(reader)?;
        Ok(Self {
            model,
            tokenizer,
            sha256,
            quant_summary: file.quant_summary(),
            file_size: file.file_size,
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path, opts: &LoadOptions) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let mut r = std::io::BufReader::new(f);
        Self::read(&mut r, opts)
    }
}
