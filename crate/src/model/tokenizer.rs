//! The tokenizer, built from GGUF metadata alone (no tokenizer.json needed).
//!
//! Two families cover llama-architecture GGUFs:
//! - `gpt2`: byte-level BPE with explicit merges (SmolLM2, Llama-3). The pre-tokenizer follows
//!   `tokenizer.ggml.pre` as llama.cpp does.
//! - `llama`: SentencePiece-style BPE with byte fallback (TinyLlama, Llama-2). GGUF stores pieces
//!   and scores but no merges, so merges are derived from the scores: merging the pair whose
//!   result has the highest score first is what SentencePiece's BPE does.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::{
    byte_fallback::ByteFallback, byte_level::ByteLevel as ByteLevelDecoder, fuse::Fuse,
    sequence::Sequence as DecoderSequence, strip::Strip, DecoderWrapper,
};
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::{
    byte_level::ByteLevel, digits::Digits, sequence::Sequence as PreSequence, split::Split,
    split::SplitPattern, PreTokenizerWrapper,
};
use tokenizers::{NormalizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};

/// Regex of Llama-3's pre-tokenizer (`tokenizer.ggml.pre = llama-bpe`), as in llama.cpp.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token type codes of `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_UNKNOWN: i32 = 2;
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_BYTE: i32 = 6;

/// One tokenized prompt: ids (with BOS/EOS where the model asks for them) and, per token, the
/// byte range of the prompt text it covers.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub offsets: Vec<(usize, usize)>,
}

#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub kind: String,
    pub pre: Option<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub vocab_size: usize,
    /// Things the user should know (e.g. an unknown pre-tokenizer approximated by GPT-2's).
    pub warnings: Vec<String>,
}

fn meta<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value> {
    md.get(key)
        .ok_or_else(|| Error::Tokenizer(format!("GGUF metadata has no '{key}'")))
}

fn string_array(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>> {
    let values = meta(md, key)?
        .to_vec()
        .map_err(|_| Error::Tokenizer(format!("'{key}' is not an array")))?;
    values
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| Error::Tokenizer(format!("'{key}' holds a non-string")))
        })
        .collect()
}

fn optional_u32(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

fn optional_bool(md: &HashMap<String, Value>, key: &str) -> Option<bool> {
    md.get(key).and_then(|v| v.to_bool().ok())
}

fn tk(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer that `tokenizer.ggml.*` metadata describes.
    pub fn from_gguf_metadata(md: &HashMap<String, Value>) -> Result<Self> {
        let kind = meta(md, "tokenizer.ggml.model")?
            .to_string()
            .map_err(tk)?
            .clone();
        let tokens = string_array(md, "tokenizer.ggml.tokens")?;
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .cloned();
        let mut warnings = Vec::new();
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();

        let (inner, default_add_bos) = match kind.as_str() {
            "gpt2" => {
                let merges = string_array(md, "tokenizer.ggml.merges")?
                    .into_iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| Error::Tokenizer(format!("malformed merge '{m}'")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .build()
                    .map_err(tk)?;
                let mut t = tokenizers::Tokenizer::new(bpe);
                let pre_tok = gpt2_pre_tokenizer(pre.as_deref(), &mut warnings)?;
                t.with_pre_tokenizer(Some(pre_tok));
                t.with_decoder(Some(ByteLevelDecoder::default()));
                (t, false)
            }
            "llama" => {
                let scores: Vec<f32> = meta(md, "tokenizer.ggml.scores")?
                    .to_vec()
                    .map_err(tk)?
                    .iter()
                    .map(|v| v.to_f32().map_err(tk))
                    .collect::<Result<_>>()?;
                let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
                    Some(v) => v
                        .to_vec()
                        .map_err(tk)?
                        .iter()
                        .map(|v| v.to_i32().map_err(tk))
                        .collect::<Result<_>>()?,
                    None => vec![1; tokens.len()],
                };
                if scores.len() != tokens.len() || types.len() != tokens.len() {
                    return Err(Error::Tokenizer(format!(
                        "{} tokens but {} scores and {} token types",
                        tokens.len(),
                        scores.len(),
                        types.len()
                    )));
                }
                let unk_id = optional_u32(md, "tokenizer.ggml.unknown_token_id")
                    .or_else(|| types.iter().position(|&t| t == TOKEN_TYPE_UNKNOWN).map(|i| i as u32))
                    .unwrap_or(0) as usize;
                let unk = tokens.get(unk_id).cloned().unwrap_or_else(|| "<unk>".into());
                let merges = sentencepiece_merges(&tokens, &scores, &types)?;
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .unk_token(unk)
                    .fuse_unk(true)
                    .byte_fallback(true)
                    .build()
                    .map_err(tk)?;
                let mut t = tokenizers::Tokenizer::new(bpe);
                // SentencePiece's add_dummy_prefix, and spaces as '▁'.
                t.with_normalizer(Some(NormalizerSequence::new(vec![
                    NormalizerWrapper::Prepend(Prepend::new("▁".into())),
                    NormalizerWrapper::Replace(Replace::new(" ", "▁").map_err(tk)?),
                ])));
                t.with_decoder(Some(DecoderSequence::new(vec![
                    DecoderWrapper::Replace(Replace::new("▁", " ").map_err(tk)?),
                    DecoderWrapper::ByteFallback(ByteFallback::new()),
                    DecoderWrapper::Fuse(Fuse::new()),
                    DecoderWrapper::Strip(Strip::new(' ', 1, 0)),
                ])));
                (t, true)
            }
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer type '{other}' is not supported (supported: gpt2 byte-level BPE, llama SentencePiece BPE)"
                )))
            }
        };
        let vocab_size = tokens.len();
        let check_id = |key: &str| -> Result<Option<u32>> {
            match optional_u32(md, key) {
                Some(id) if id as usize >= vocab_size => Err(Error::Tokenizer(format!(
                    "'{key}' = {id} is outside the vocabulary of {vocab_size} tokens"
                ))),
                other => Ok(other),
            }
        };
        let bos_id = check_id("tokenizer.ggml.bos_token_id")?;
        let eos_id = check_id("tokenizer.ggml.eos_token_id")?;
        let add_bos = optional_bool(md, "tokenizer.ggml.add_bos_token").unwrap_or(default_add_bos)
            && bos_id.is_some();
        let add_eos =
            optional_bool(md, "tokenizer.ggml.add_eos_token").unwrap_or(false) && eos_id.is_some();
        Ok(Self {
            inner,
            kind,
            pre,
            bos_id,
            eos_id,
            add_bos,
            add_eos,
            vocab_size,
            warnings,
        })
    }

    /// Token ids of `text` alone: no BOS/EOS, special-token strings treated as plain text.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.encode_raw(text)?.ids)
    }

    fn encode_raw(&self, text: &str) -> Result<Encoded> {
        let enc = self.inner.encode(text, false).map_err(tk)?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
        })
    }

    /// A prompt as the model sees it: BOS/EOS added as the GGUF's flags say. BOS/EOS get the
    /// empty offset range (0, 0).
    pub fn encode_prompt(&self, text: &str) -> Result<Encoded> {
        let mut enc = self.encode_raw(text)?;
        if self.add_bos {
            if let Some(bos) = self.bos_id {
                enc.ids.insert(0, bos);
                enc.offsets.insert(0, (0, 0));
            }
        }
        if self.add_eos {
            if let Some(eos) = self.eos_id {
                enc.ids.push(eos);
                enc.offsets.push((text.len(), text.len()));
            }
        }
        Ok(enc)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(tk)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

fn gpt2_pre_tokenizer(
    pre: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<PreTokenizerWrapper> {
    let byte_level =
        |regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, regex));
    Ok(match pre {
        // llama.cpp groups these: single digits, then GPT-2's regex.
        Some(
            "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" | "exaone" | "minerva",
        ) => PreTokenizerWrapper::Sequence(PreSequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])),
        Some("llama-bpe" | "llama3" | "smaug-bpe") => {
            let split = Split::new(
                SplitPattern::Regex(LLAMA3_PATTERN.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tk)?;
            PreTokenizerWrapper::Sequence(PreSequence::new(vec![
                PreTokenizerWrapper::Split(split),
                byte_level(false),
            ]))
        }
        None | Some("default" | "gpt-2" | "gpt2") => byte_level(true),
        Some(other) => {
            warnings.push(format!(
                "pre-tokenizer '{other}' is not known to probelab; using GPT-2's split, which may differ from llama.cpp on digits and punctuation"
            ));
            byte_level(true)
        }
    })
}

/// Merges for a SentencePiece BPE vocabulary, ranked so that the pair whose merged piece has the
/// highest score merges first (ties: the order SentencePiece's vocabulary lists them).
fn sentencepiece_merges(
    tokens: &[String],
    scores: &[f32],
    types: &[i32],
) -> Result<Vec<(String, String)>> {
    let mergeable =
        |t: i32| t != TOKEN_TYPE_CONTROL && t != TOKEN_TYPE_BYTE && t != TOKEN_TYPE_UNKNOWN;
    let index: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| mergeable(types[*i]))
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut merges: Vec<(f32, usize, usize, usize)> = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        if !mergeable(types[id]) {
            continue;
        }
        for (split, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(split);
            if let (Some(&li), Some(&ri)) = (index.get(l), index.get(r)) {
                merges.push((scores[id], id, li, ri));
            }
        }
    }
    // Every split of a piece into two pieces is a merge, so a vocabulary of long pieces whose
    // halves are all pieces too ("a", "aa", … "a"×n) has merges whose text grows as n³. Real
    // vocabularies stay within a few times their own size; refuse one that does not before
    // copying the strings.
    let vocab_bytes: usize = tokens.iter().map(String::len).sum();
    let merge_bytes: usize = merges.iter().map(|m| tokens[m.1].len()).sum();
    let limit = MERGE_BYTES_PER_VOCAB_BYTE * vocab_bytes + MERGE_BYTES_SLACK;
    if merge_bytes > limit {
        return Err(Error::Tokenizer(format!(
            "the SentencePiece vocabulary implies {} merges holding {merge_bytes} bytes of text, \
             over {MERGE_BYTES_PER_VOCAB_BYTE}× its own {vocab_bytes} bytes: not a real \
             vocabulary (pieces nested inside pieces)",
            merges.len()
        )));
    }
    merges.sort_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    Ok(merges
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l].clone(), tokens[r].clone()))
        .collect())
}

/// Bound on the text of derived SentencePiece merges, per byte of vocabulary text (plus slack).
const MERGE_BYTES_PER_VOCAB_BYTE: usize = 32;
const MERGE_BYTES_SLACK: usize = 16 << 20;
