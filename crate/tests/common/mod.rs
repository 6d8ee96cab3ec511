//! Shared by the integration tests: the default model's path and a small GGUF writer that can
//! make valid files in any quant type as well as deliberately broken ones.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The default model; the README's test command fetches it first.
pub fn default_model() -> PathBuf {
    let p = repo_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run models/fetch.sh (the README's test command does)",
        p.display()
    );
    p
}

pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// A GGUF metadata value.
#[derive(Clone, Debug)]
pub enum Meta {
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

pub struct RawTensor {
    pub name: String,
    /// ggml order is innermost first; give dims as `[rows, cols]` (outermost first).
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_meta(out: &mut Vec<u8>, v: &Meta) {
    match v {
        Meta::U32(x) => {
            out.extend(4u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        Meta::I32(x) => {
            out.extend(5u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        Meta::F32(x) => {
            out.extend(6u32.to_le_bytes());
            out.extend(x.to_le_bytes());
        }
        Meta::Bool(x) => {
            out.extend(7u32.to_le_bytes());
            out.push(*x as u8);
        }
        Meta::Str(s) => {
            out.extend(8u32.to_le_bytes());
            put_str(out, s);
        }
        Meta::Strs(v) => {
            out.extend(9u32.to_le_bytes());
            out.extend(8u32.to_le_bytes());
            out.extend((v.len() as u64).to_le_bytes());
            v.iter().for_each(|s| put_str(out, s));
        }
        Meta::F32s(v) => {
            out.extend(9u32.to_le_bytes());
            out.extend(6u32.to_le_bytes());
            out.extend((v.len() as u64).to_le_bytes());
            v.iter().for_each(|x| out.extend(x.to_le_bytes()));
        }
        Meta::I32s(v) => {
            out.extend(9u32.to_le_bytes());
            out.extend(5u32.to_le_bytes());
            out.extend((v.len() as u64).to_le_bytes());
            v.iter().for_each(|x| out.extend(x.to_le_bytes()));
        }
    }
}

/// Writes a GGUF v3 file with 32-byte alignment.
pub fn write_gguf(meta: &[(&str, Meta)], tensors: &[RawTensor]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        put_str(&mut out, k);
        put_meta(&mut out, v);
    }
    let mut offset = 0u64;
    let mut offsets = Vec::new();
    for t in tensors {
        offsets.push(offset);
        offset += (t.data.len() as u64).div_ceil(32) * 32;
    }
    for (t, off) in tensors.iter().zip(&offsets) {
        put_str(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in t.dims.iter().rev() {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ggml_type.to_le_bytes());
        out.extend(off.to_le_bytes());
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    for t in tensors {
        out.extend(&t.data);
        out.resize(out.len().div_ceil(32) * 32, 0);
    }
    out
}

/// ggml type ids, as written in GGUF files.
pub fn ggml_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// Deterministic pseudo-random numbers in [-1, 1) (splitmix64).
pub struct Rng(pub u64);
impl Rng {
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

pub fn quantized_bytes(values: &[f32], rows: usize, cols: usize, dtype: GgmlDType) -> Vec<u8> {
    let t = Tensor::from_vec(values.to_vec(), (rows, cols), &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype)
        .unwrap()
        .data()
        .unwrap()
        .into_owned()
}

/// Shape of the small test llama: K-quants need rows that are multiples of 256.
pub struct TinyShape {
    pub d: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub layers: usize,
    pub context: usize,
}

pub const TINY: TinyShape = TinyShape {
    d: 256,
    ffn: 512,
    heads: 4,
    kv_heads: 2,
    layers: 2,
    context: 64,
};

/// A byte-level "gpt2" vocabulary: the 256 byte symbols and a few merges.
pub fn byte_vocab() -> (Vec<String>, Vec<String>) {
    // GPT-2's byte-to-unicode table.
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = bs.into_iter().zip(cs).collect();
    pairs.sort();
    let mut tokens: Vec<String> = pairs
        .iter()
        .map(|&(_, c)| char::from_u32(c).unwrap().to_string())
        .collect();
    let merges = vec!["Ġ t".to_string(), "Ġt h".to_string(), "a n".to_string()];
    tokens.extend(["Ġt".to_string(), "Ġth".to_string(), "an".to_string()]);
    (tokens, merges)
}

/// Tokenizer metadata of a byte-level BPE ("gpt2") vocabulary and its size.
pub fn gpt2_tokenizer_meta() -> (Vec<(&'static str, Meta)>, usize) {
    let (tokens, merges) = byte_vocab();
    let n = tokens.len();
    (
        vec![
            ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
            ("tokenizer.ggml.pre", Meta::Str("smollm".into())),
            ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
            ("tokenizer.ggml.merges", Meta::Strs(merges)),
            ("tokenizer.ggml.add_bos_token", Meta::Bool(false)),
        ],
        n,
    )
}

/// A small random llama GGUF with every weight matrix in `dtype` (norms F32).
pub fn tiny_llama(dtype: GgmlDType, arch: &str, seed: u64) -> Vec<u8> {
    tiny_llama_with(dtype, arch, seed, gpt2_tokenizer_meta())
}

/// [`tiny_llama`] with the given tokenizer metadata and vocabulary size.
pub fn tiny_llama_with(
    dtype: GgmlDType,
    arch: &str,
    seed: u64,
    (tokenizer_meta, vocab): (Vec<(&'static str, Meta)>, usize),
) -> Vec<u8> {
    let s = TINY;
    let hd = s.d / s.heads;
    let mut rng = Rng(seed);
    let mut matrix = |rows: usize, cols: usize, scale: f32| -> Vec<f32> {
        (0..rows * cols).map(|_| rng.next_f32() * scale).collect()
    };
    let mut tensors = Vec::new();
    let mut push = |name: String, rows: usize, cols: usize, values: Vec<f32>, dt: GgmlDType| {
        let data = if rows == 1 {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            quantized_bytes(&values, rows, cols, dt)
        };
        let dims = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![rows as u64, cols as u64]
        };
        tensors.push(RawTensor {
            name,
            dims,
            ggml_type: if rows == 1 { 0 } else { ggml_id(dt) },
            data,
        });
    };
    let w = 1.0 / (s.d as f32).sqrt();
    push(
        "token_embd.weight".into(),
        vocab,
        s.d,
        matrix(vocab, s.d, 1.0),
        GgmlDType::Q8_0,
    );
    push(
        "output_norm.weight".into(),
        1,
        s.d,
        vec![1.0; s.d],
        GgmlDType::F32,
    );
    for i in 0..s.layers {
        let b = |n: &str| format!("blk.{i}.{n}.weight");
        push(
            b("attn_norm"),
            1,
            s.d,
            (0..s.d).map(|j| 1.0 + 0.1 * ((j % 7) as f32)).collect(),
            GgmlDType::F32,
        );
        push(
            b("attn_q"),
            s.heads * hd,
            s.d,
            matrix(s.heads * hd, s.d, w),
            dtype,
        );
        push(
            b("attn_k"),
            s.kv_heads * hd,
            s.d,
            matrix(s.kv_heads * hd, s.d, w),
            dtype,
        );
        push(
            b("attn_v"),
            s.kv_heads * hd,
            s.d,
            matrix(s.kv_heads * hd, s.d, w),
            dtype,
        );
        push(
            b("attn_output"),
            s.d,
            s.heads * hd,
            matrix(s.d, s.heads * hd, w),
            dtype,
        );
        push(b("ffn_norm"), 1, s.d, vec![1.0; s.d], GgmlDType::F32);
        push(b("ffn_gate"), s.ffn, s.d, matrix(s.ffn, s.d, w), dtype);
        push(b("ffn_up"), s.ffn, s.d, matrix(s.ffn, s.d, w), dtype);
        push(
            b("ffn_down"),
            s.d,
            s.ffn,
            matrix(s.d, s.ffn, 1.0 / (s.ffn as f32).sqrt()),
            dtype,
        );
    }
    let mut meta = vec![
        ("general.architecture", Meta::Str(arch.into())),
        ("general.name", Meta::Str("tiny test llama".into())),
        ("llama.block_count", Meta::U32(s.layers as u32)),
        ("llama.embedding_length", Meta::U32(s.d as u32)),
        ("llama.feed_forward_length", Meta::U32(s.ffn as u32)),
        ("llama.attention.head_count", Meta::U32(s.heads as u32)),
        (
            "llama.attention.head_count_kv",
            Meta::U32(s.kv_heads as u32),
        ),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-5)),
        ("llama.rope.freq_base", Meta::F32(10000.0)),
        ("llama.context_length", Meta::U32(s.context as u32)),
    ];
    meta.extend(tokenizer_meta);
    write_gguf(&meta, &tensors)
}

/// Cosine similarity in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-300)
}

/// ‖got − want‖ / ‖want‖ in f64.
pub fn rel_diff(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// 32 place names from every continent and script the tokenizer meets.
pub fn place_names() -> Vec<String> {
    [
        "Paris",
        "São Paulo",
        "東京",
        "Kraków",
        "Côte d'Ivoire",
        "Reykjavík",
        "New York City",
        "Lagos",
        "Cairo",
        "Mumbai",
        "Buenos Aires",
        "Sydney",
        "Ulaanbaatar",
        "Lima",
        "Nairobi",
        "Zürich",
        "Ōsaka",
        "Москва",
        "القاهرة",
        "Wellington",
        "Anchorage",
        "Kinshasa",
        "Jakarta",
        "Tehran",
        "Bogotá",
        "Helsinki",
        "Dakar",
        "Hanoi",
        "Perth",
        "Quito",
        "Oslo",
        "Accra",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs a `probelab` command that writes a run folder `out`, asserts it succeeded (its stderr
/// in the message), and returns the report.json it wrote.
pub fn report_of(cmd: &mut std::process::Command, out: &std::path::Path) -> serde_json::Value {
    let o = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    read_report(out)
}

/// The report.json in a run folder.
pub fn read_report(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Runs the `probelab` binary with `args`: its exit code and stderr.
pub fn probelab(args: &[&str]) -> (i32, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_probelab"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
