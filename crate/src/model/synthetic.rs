//! Synthetic llama GGUF files: a real model's shapes (Llama-2-7B by default) with random
//! weights and a real SentencePiece vocabulary, written as a stream. They let tests and
//! benchmarks load, upload and run a 7B-sized file without downloading one; their activations
//! mean nothing.
//!
//! Weights are drawn straight as quantized blocks (random codes, one scale per tensor chosen so
//! a row's values have a standard deviation near 1/√in), so writing a 4 GB file takes seconds
//! and never holds a whole tensor in memory.

use std::io::Write;

use candle_core::quantized::GgmlDType;

use crate::error::{Error, Result};

/// The shape and types of a synthetic llama model.
#[derive(Debug, Clone)]
pub struct SyntheticSpec {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub ffn_dim: usize,
    pub context_length: usize,
    /// Type of the blocks' matrices.
    pub quant: GgmlDType,
    /// Type of `token_embd` and `output`.
    pub embed_quant: GgmlDType,
    pub seed: u64,
}

impl SyntheticSpec {
    /// Llama-2-7B's shapes (d_model 4096, 32 heads, ffn 11008, context 4096) with `n_layers`
    /// blocks.
    pub fn llama2_7b(n_layers: usize, quant: GgmlDType) -> Self {
        Self {
            n_layers,
            d_model: 4096,
            n_heads: 32,
            n_kv_heads: 32,
            ffn_dim: 11008,
            context_length: 4096,
            quant,
            embed_quant: GgmlDType::Q8_0,
            seed: 7,
        }
    }
}

/// A SentencePiece vocabulary as a GGUF converter stores it (`tokenizer.ggml.*`), read from
/// JSON `{tokens, scores, token_types, unk_id, bos_id, eos_id}` (tests/fixtures/spm32k_vocab.json).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SpmVocab {
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub token_types: Vec<i32>,
    pub unk_id: u32,
    pub bos_id: u32,
    pub eos_id: u32,
}

impl SpmVocab {
    pub fn from_json(bytes: &[u8], what: &str) -> Result<Self> {
        let v: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::Input(format!("{what}: not a vocabulary JSON ({e})")))?;
        let n = v.tokens.len();
        if n == 0 || v.scores.len() != n || v.token_types.len() != n {
            return Err(Error::Input(format!(
                "{what}: {n} tokens, {} scores and {} token types; they must be equal and non-zero",
                v.scores.len(),
                v.token_types.len()
            )));
        }
        Ok(v)
    }
}

enum Value<'a> {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(&'a str),
    Strs(&'a [String]),
    F32s(&'a [f32]),
    I32s(&'a [i32]),
}

struct TensorPlan {
    name: String,
    /// `[rows, cols]`, outermost first (a vector is `[1, n]` written as 1-D).
    rows: usize,
    cols: usize,
    dtype: GgmlDType,
}

impl TensorPlan {
    fn bytes(&self) -> u64 {
        (self.rows * self.cols / self.dtype.block_size() * self.dtype.type_size()) as u64
    }
}

const ALIGN: u64 = 32;

/// ggml's type ids as GGUF stores them.
fn ggml_id(dtype: GgmlDType) -> Result<u32> {
    Ok(match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q4K => 12,
        other => {
            return Err(Error::Input(format!(
                "synthetic weights in {other:?}: use f32, f16, q8_0, q4_0 or q4_k"
            )))
        }
    })
}

/// Reads a type name as the command line spells it.
pub fn parse_quant(s: &str) -> Result<GgmlDType> {
    let t = match s.to_ascii_lowercase().as_str() {
        "f32" => GgmlDType::F32,
        "f16" => GgmlDType::F16,
        "q8_0" => GgmlDType::Q8_0,
        "q4_0" => GgmlDType::Q4_0,
        "q4_k" => GgmlDType::Q4K,
        _ => {
            return Err(Error::Input(format!(
                "quantization '{s}': use f32, f16, q8_0, q4_0 or q4_k"
            )))
        }
    };
    Ok(t)
}

fn plan(spec: &SyntheticSpec, vocab: usize) -> Vec<TensorPlan> {
    let (d, ffn) = (spec.d_model, spec.ffn_dim);
    let kv = spec.n_kv_heads * (d / spec.n_heads);
    let t = |name: String, rows, cols, dtype| TensorPlan {
        name,
        rows,
        cols,
        dtype,
    };
    let mut out = vec![t("token_embd.weight".into(), vocab, d, spec.embed_quant)];
    for i in 0..spec.n_layers {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        out.extend([
            t(n("attn_norm"), 1, d, GgmlDType::F32),
            t(n("attn_q"), d, d, spec.quant),
            t(n("attn_k"), kv, d, spec.quant),
            t(n("attn_v"), kv, d, spec.quant),
            t(n("attn_output"), d, d, spec.quant),
            t(n("ffn_norm"), 1, d, GgmlDType::F32),
            t(n("ffn_gate"), ffn, d, spec.quant),
            t(n("ffn_up"), ffn, d, spec.quant),
            t(n("ffn_down"), d, ffn, spec.quant),
        ]);
    }
    out.push(t("output_norm.weight".into(), 1, d, GgmlDType::F32));
    out.push(t("output.weight".into(), vocab, d, spec.embed_quant));
    out
}

fn check(spec: &SyntheticSpec) -> Result<()> {
    let bad = |why: String| Err(Error::Input(format!("synthetic model: {why}")));
    if spec.n_heads == 0 || !spec.d_model.is_multiple_of(spec.n_heads) {
        return bad(format!(
            "d_model {} is not a multiple of {} heads",
            spec.d_model, spec.n_heads
        ));
    }
    if spec.n_kv_heads == 0 || !spec.n_heads.is_multiple_of(spec.n_kv_heads) {
        return bad(format!(
            "{} heads are not a multiple of {} KV heads",
            spec.n_heads, spec.n_kv_heads
        ));
    }
    for (what, cols) in [("d_model", spec.d_model), ("ffn", spec.ffn_dim)] {
        for dtype in [spec.quant, spec.embed_quant] {
            if !cols.is_multiple_of(dtype.block_size()) {
                return bad(format!(
                    "{what} {cols} is not a multiple of {dtype:?}'s block of {}",
                    dtype.block_size()
                ));
            }
        }
    }
    ggml_id(spec.quant)?;
    ggml_id(spec.embed_quant)?;
    Ok(())
}

/// Writes the GGUF file to `out` and returns its size in bytes.
pub fn write_synthetic_llama<W: Write>(
    out: &mut W,
    spec: &SyntheticSpec,
    vocab: &SpmVocab,
) -> Result<u64> {
    check(spec)?;
    let tensors = plan(spec, vocab.tokens.len());
    let io = |e| Error::io("synthetic model", e);
    let mut written = write_header(out, spec, vocab, &tensors)?;
    let mut rng = SplitMix(spec.seed);
    let mut buf = Vec::new();
    for t in &tensors {
        buf.clear();
        if t.rows == 1 {
            // A norm's weights: near 1, as trained models have them.
            for _ in 0..t.cols {
                buf.extend((1.0 + 0.1 * rng.unit()).to_le_bytes());
            }
            write_padded(out, &buf, &mut written).map_err(io)?;
            continue;
        }
        // Row by row, so memory stays one row of blocks whatever the tensor's size.
        let mut row = Vec::new();
        let std = if t.name.starts_with("token_embd") {
            1.0
        } else {
            1.0 / (t.cols as f32).sqrt()
        };
        for _ in 0..t.rows {
            row.clear();
            random_row(&mut row, t.dtype, t.cols, std, &mut rng);
            out.write_all(&row).map_err(io)?;
            written += row.len() as u64;
        }
        pad(out, &mut written).map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(written)
}

fn write_header<W: Write>(
    out: &mut W,
    spec: &SyntheticSpec,
    vocab: &SpmVocab,
    tensors: &[TensorPlan],
) -> Result<u64> {
    let head_dim = spec.d_model / spec.n_heads;
    let meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::Str("llama")),
        (
            "general.name",
            Value::Str("synthetic llama (random weights)"),
        ),
        ("general.alignment", Value::U32(ALIGN as u32)),
        ("llama.block_count", Value::U32(spec.n_layers as u32)),
        ("llama.embedding_length", Value::U32(spec.d_model as u32)),
        (
            "llama.attention.head_count",
            Value::U32(spec.n_heads as u32),
        ),
        (
            "llama.attention.head_count_kv",
            Value::U32(spec.n_kv_heads as u32),
        ),
        ("llama.feed_forward_length", Value::U32(spec.ffn_dim as u32)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10_000.0)),
        (
            "llama.context_length",
            Value::U32(spec.context_length as u32),
        ),
        ("tokenizer.ggml.model", Value::Str("llama")),
        ("tokenizer.ggml.tokens", Value::Strs(&vocab.tokens)),
        ("tokenizer.ggml.scores", Value::F32s(&vocab.scores)),
        ("tokenizer.ggml.token_type", Value::I32s(&vocab.token_types)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(vocab.unk_id)),
        ("tokenizer.ggml.bos_token_id", Value::U32(vocab.bos_id)),
        ("tokenizer.ggml.eos_token_id", Value::U32(vocab.eos_id)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ];
    let mut h = Vec::new();
    h.extend(b"GGUF");
    h.extend(3u32.to_le_bytes());
    h.extend((tensors.len() as u64).to_le_bytes());
    h.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in &meta {
        put_str(&mut h, k);
        put_value(&mut h, v);
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut h, &t.name);
        if t.rows == 1 {
            h.extend(1u32.to_le_bytes());
            h.extend((t.cols as u64).to_le_bytes());
        } else {
            // ggml order: innermost dimension first.
            h.extend(2u32.to_le_bytes());
            h.extend((t.cols as u64).to_le_bytes());
            h.extend((t.rows as u64).to_le_bytes());
        }
        h.extend(ggml_id(t.dtype)?.to_le_bytes());
        h.extend(offset.to_le_bytes());
        offset += t.bytes().div_ceil(ALIGN) * ALIGN;
    }
    let mut written = 0;
    write_padded(out, &h, &mut written).map_err(|e| Error::io("synthetic model", e))?;
    Ok(written)
}

fn write_padded<W: Write>(out: &mut W, bytes: &[u8], written: &mut u64) -> std::io::Result<()> {
    out.write_all(bytes)?;
    *written += bytes.len() as u64;
    pad(out, written)
}

fn pad<W: Write>(out: &mut W, written: &mut u64) -> std::io::Result<()> {
    let n = written.div_ceil(ALIGN) * ALIGN - *written;
    out.write_all(&[0u8; ALIGN as usize][..n as usize])?;
    *written += n;
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    // GGUF value type ids: 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array.
    let array = |out: &mut Vec<u8>, ty: u32, n: usize| {
        out.extend(9u32.to_le_bytes());
        out.extend(ty.to_le_bytes());
        out.extend((n as u64).to_le_bytes());
    };
    match v {
        Value::U32(x) => {
            out.extend(4u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        Value::F32(x) => {
            out.extend(6u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        Value::Bool(x) => {
            out.extend(7u32.to_le_bytes());
            out.push(*x as u8);
        }
        Value::Str(s) => {
            out.extend(8u32.to_le_bytes());
            put_str(out, s);
        }
        Value::Strs(xs) => {
            array(out, 8, xs.len());
            xs.iter().for_each(|s| put_str(out, s));
        }
        Value::F32s(xs) => {
            array(out, 6, xs.len());
            xs.iter().for_each(|x| out.extend(x.to_le_bytes()));
        }
        Value::I32s(xs) => {
            array(out, 5, xs.len());
            xs.iter().for_each(|x| out.extend(x.to_le_bytes()));
        }
    }
}

/// splitmix64: fast, and the same stream on every platform.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    fn fill(&mut self, out: &mut Vec<u8>, n: usize) {
        let start = out.len();
        out.resize(start + n.div_ceil(8) * 8, 0);
        for chunk in out[start..].chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(start + n);
    }
}

fn f16_bytes(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_le_bytes()
}

/// One row of `cols` random values of standard deviation about `std`, as `dtype` blocks.
fn random_row(out: &mut Vec<u8>, dtype: GgmlDType, cols: usize, std: f32, rng: &mut SplitMix) {
    let blocks = cols / dtype.block_size();
    match dtype {
        GgmlDType::F32 => {
            (0..cols).for_each(|_| out.extend((std * 1.732 * rng.unit()).to_le_bytes()))
        }
        GgmlDType::F16 => (0..cols).for_each(|_| out.extend(f16_bytes(std * 1.732 * rng.unit()))),
        // Codes uniform over [-127, 127]: sd = 127·d/√3.
        GgmlDType::Q8_0 => {
            let d = f16_bytes(std * 3f32.sqrt() / 127.0);
            for _ in 0..blocks {
                out.extend(d);
                let start = out.len();
                rng.fill(out, 32);
                for q in &mut out[start..] {
                    if *q == 0x80 {
                        *q = 0x81; // -128 would make the codes lopsided
                    }
                }
            }
        }
        // Nibbles uniform over 0..16, value (q - 8)·d: sd ≈ 4.61·d.
        GgmlDType::Q4_0 => {
            let d = f16_bytes(std / 4.61);
            for _ in 0..blocks {
                out.extend(d);
                rng.fill(out, 16);
            }
        }
        // Super-blocks of 256: d, dmin, twelve bytes of 6-bit scales and mins, 128 bytes of
        // nibbles; value d·sc·q − dmin·m. dmin = 7.5·d centres it; sd ≈ 258·d (uniform codes).
        GgmlDType::Q4K => {
            let d = std / 258.0;
            let (dh, mh) = (f16_bytes(d), f16_bytes(7.5 * d));
            for _ in 0..blocks {
                out.extend(dh);
                out.extend(mh);
                rng.fill(out, 12 + 128);
            }
        }
        _ => unreachable!("checked by ggml_id"),
    }
}
