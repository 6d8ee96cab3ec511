//! Opening a model: header checks, tokenizer, weights, hash — everything the shells need.

use std::io::{Read, Seek};

use crate::error::{Error, Result};
use crate::model::gguf::Config;
use crate::model::gguf::{sha256_hex, ModelFile};
use crate::model::tokenizer::Tokenizer;
use crate::model::{Llama, LoadOptions, LAYER_CONVENTION};

/// What a user asks about a loaded model: the command line's `info` prints it, the page shows
/// it. The shape's headline numbers also stand at the top level for the page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub context_length: usize,
    pub vocab_size: usize,
    pub quantization: String,
    pub file_size: u64,
    pub sha256: String,
    pub config: Config,
    pub tokenizer: TokenizerSummary,
    /// The tokenizer's warnings (e.g. a pre-tokenizer read as the closest known one).
    pub warnings: Vec<String>,
    pub layer_convention: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenizerSummary {
    #[serde(rename = "type")]
    pub kind: String,
    pub pre: Option<String>,
    pub add_bos: bool,
    pub bos_id: Option<u32>,
}

pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub sha256: String,
    pub quant_summary: String,
    pub file_size: u64,
}

/// A model known from its header alone: the tokenizer and the summary (with the whole file's
/// SHA-256). Its weights went to the GPU piece by piece and the CPU never held them: the page's
/// streamed load, and the command line's `extract --engine gpu`.
pub struct ModelHeader {
    pub tokenizer: Tokenizer,
    pub summary: ModelSummary,
}

impl LoadedModel {
    /// Reads a GGUF stream: the header first (so a bad file fails fast), then the weights.
    pub fn read<R: Read + Seek>(reader: &mut R, opts: &LoadOptions) -> Result<Self> {
        let file = ModelFile::read(reader)?;
        let tokenizer = Tokenizer::from_gguf_metadata(file.metadata())?;
        let model = Llama::load(&file, reader, opts)?;
        check_vocab(&tokenizer, model.vocab_size)?;
        let sha256 = sha256_hex(reader)?;
        Ok(Self {
            model,
            tokenizer,
            sha256,
            quant_summary: file.quant_summary(),
            file_size: file.file_size,
        })
    }

    /// The header's part of the model (the tokenizer and the summary), copied.
    pub fn header(&self) -> ModelHeader {
        ModelHeader {
            tokenizer: self.tokenizer.clone(),
            summary: self.info(),
        }
    }

    pub fn info(&self) -> ModelSummary {
        ModelSummary::new(
            &self.model.config,
            self.model.vocab_size,
            self.quant_summary.clone(),
            self.file_size,
            self.sha256.clone(),
            &self.tokenizer,
        )
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path, opts: &LoadOptions) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let mut r = std::io::BufReader::new(f);
        Self::read(&mut r, opts)
    }
}

/// The tokenizer and the embedding's rows must count the same vocabulary.
fn check_vocab(tokenizer: &Tokenizer, embedding_rows: usize) -> Result<()> {
    if embedding_rows != tokenizer.vocab_size {
        return Err(Error::Metadata(format!(
            "the tokenizer has {} tokens but token_embd has {embedding_rows} rows",
            tokenizer.vocab_size
        )));
    }
    Ok(())
}

impl ModelSummary {
    fn new(
        c: &Config,
        vocab_size: usize,
        quantization: String,
        file_size: u64,
        sha256: String,
        t: &Tokenizer,
    ) -> Self {
        ModelSummary {
            name: c.name.clone(),
            n_layers: c.n_layers,
            d_model: c.d_model,
            context_length: c.context_length,
            vocab_size,
            quantization,
            file_size,
            sha256,
            config: c.clone(),
            tokenizer: TokenizerSummary {
                kind: t.kind.clone(),
                pre: t.pre.clone(),
                add_bos: t.add_bos,
                bos_id: t.bos_id,
            },
            warnings: t.warnings.clone(),
            layer_convention: LAYER_CONVENTION,
        }
    }

    /// The summary of a model known from its header alone (its weights streamed to the GPU,
    /// never held on the CPU): `sha256` is the whole file's, computed as it was read.
    pub fn from_header(file: &ModelFile, tokenizer: &Tokenizer, sha256: String) -> Result<Self> {
        let vocab_size = file
            .content
            .tensor_infos
            .get("token_embd.weight")
            .map_or(0, |i| i.shape.dims()[0]);
        check_vocab(tokenizer, vocab_size)?;
        Ok(Self::new(
            &file.config,
            vocab_size,
            file.quant_summary(),
            file.file_size,
            sha256,
            tokenizer,
        ))
    }
}
