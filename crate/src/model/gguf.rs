//! Reading a GGUF file: header, metadata, the llama configuration, and checks that turn a
//! malformed or unsupported file into a clear error before any weight is loaded.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Shape of a llama-architecture model, read from `llama.*` metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    pub name: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub rms_eps: f64,
    pub rope_theta: f32,
    pub context_length: usize,
}

/// A parsed GGUF header plus the facts about the file that later steps need.
pub struct ModelFile {
    pub content: Content,
    pub config: Config,
    pub file_size: u64,
}

/// Names of ggml types candle does not know, for error messages (ggml.h numbering).
fn ggml_type_name(id: u32) -> &'static str {
    match id {
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => "unknown",
    }
}

fn is_supported(dtype: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::Q8_1 | GgmlDType::Q8K)
}

/// The tensors a llama block needs, in file naming.
pub const BLOCK_TENSORS: [&str; 9] = [
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

impl ModelFile {
    /// Parses the header of a GGUF stream and checks it describes a llama model whose tensors
    /// all lie inside the file.
    pub fn read<R: Read + Seek>(reader: &mut R) -> Result<Self> {
        let file_size = reader
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("model", e))?;
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("model", e))?;
        let mut magic = [0u8; 4];
        if file_size < 4 || reader.read_exact(&mut magic).is_err() {
            return Err(Error::NotGguf(format!(
                "the file is {file_size} bytes long, too short to hold a GGUF header"
            )));
        }
        if &magic != b"GGUF" {
            return Err(Error::NotGguf(format!(
                "it starts with bytes {magic:02x?} instead of the magic 'GGUF' (is this a safetensors, PyTorch or HTML file?)"
            )));
        }
        // candle rounds the data offset up to `general.alignment` without checking it: 0 would
        // divide by zero inside `Content::read`.
        match declared_alignment(reader) {
            Some(a) if !a.is_power_of_two() => {
                return Err(Error::CorruptGguf(format!(
                    "general.alignment is {a}; the GGUF format requires a power of two"
                )))
            }
            _ => {}
        }
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("model", e))?;
        let content = Content::read(reader).map_err(|e| classify_header_error(e, file_size))?;
        let config = llama_config(&content.metadata)?;
        let file = Self {
            content,
            config,
            file_size,
        };
        file.check_tensors()?;
        Ok(file)
    }

    fn check_tensors(&self) -> Result<()> {
        let c = &self.config;
        let (d, hd) = (c.d_model, c.head_dim);
        // Checked one by one as they are named, not listed first: `llama.block_count` may
        // claim millions of blocks, and a list of their names would be allocated before the
        // first missing tensor is noticed.
        let check = |name: &str, shape: &[usize]| -> Result<()> {
            let info = self.content.tensor_infos.get(name).ok_or_else(|| {
                Error::Metadata(format!("tensor '{name}' is missing from the file"))
            })?;
            let dims = info.shape.dims();
            // token_embd's row count is the vocabulary size, checked against the tokenizer later.
            let matches =
                dims.len() == shape.len() && dims.iter().zip(shape).all(|(a, b)| *b == 0 || a == b);
            if !matches {
                return Err(Error::Metadata(format!(
                    "tensor '{name}' has shape {dims:?}, the configuration implies {shape:?}"
                )));
            }
            Ok(())
        };
        check("token_embd.weight", &[0, d])?;
        check("output_norm.weight", &[d])?;
        for i in 0..c.n_layers {
            let shapes: [&[usize]; 9] = [
                &[d],
                &[c.n_heads * hd, d],
                &[c.n_kv_heads * hd, d],
                &[c.n_kv_heads * hd, d],
                &[d, c.n_heads * hd],
                &[d],
                &[c.ffn_dim, d],
                &[c.ffn_dim, d],
                &[d, c.ffn_dim],
            ];
            for (name, shape) in BLOCK_TENSORS.iter().zip(shapes) {
                check(&format!("blk.{i}.{name}.weight"), shape)?;
            }
        }
        // Each tensor's byte range in the file, to check below that none shares bytes with
        // another: the weights kept in memory then never exceed the file's size.
        let mut ranges: Vec<(u64, u64, &str)> = Vec::with_capacity(self.content.tensor_infos.len());
        let (mut first_cut, mut cut): (Option<(u64, u64, &str)>, usize) = (None, 0);
        for (name, info) in &self.content.tensor_infos {
            if !is_supported(info.ggml_dtype) {
                return Err(Error::UnsupportedQuant(format!(
                    "{:?} (tensor '{name}')",
                    info.ggml_dtype
                )));
            }
            let dims = info.shape.dims();
            let Some(elems) = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
                return Err(Error::CorruptGguf(format!(
                    "tensor '{name}' has shape {dims:?}: more elements than can be addressed"
                )));
            };
            let block = info.ggml_dtype.block_size();
            if elems % block != 0 {
                return Err(Error::CorruptGguf(format!(
                    "tensor '{name}' has {elems} elements, not a multiple of its {:?} block size {block}",
                    info.ggml_dtype
                )));
            }
            let start = self.content.tensor_data_offset.checked_add(info.offset);
            let end = ((elems / block) as u64)
                .checked_mul(info.ggml_dtype.type_size() as u64)
                .zip(start)
                .and_then(|(bytes, s)| s.checked_add(bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= self.file_size => {
                    if end > start {
                        ranges.push((start, end, name));
                    }
                }
                (Some(start), Some(end)) => {
                    cut += 1;
                    if first_cut.is_none_or(|(s, _, _)| start < s) {
                        first_cut = Some((start, end, name));
                    }
                }
                _ => {
                    return Err(Error::CorruptGguf(format!(
                        "tensor '{name}' lies past any file's end (offset overflow): the header is corrupt"
                    )))
                }
            }
        }
        // The first tensor in file order that the end cuts: where an interrupted download
        // stopped. Nothing is read or uploaded past it.
        if let Some((start, end, name)) = first_cut {
            let size = self.file_size;
            let more = match cut - 1 {
                0 => String::new(),
                n => format!("; {n} tensors after it are missing too"),
            };
            return Err(Error::CorruptGguf(if start >= size {
                format!(
                    "tensor '{name}' starts at byte {start}, past the end of the file ({size} bytes){more}: \
                     the file is truncated (an interrupted download?)"
                )
            } else {
                format!(
                    "tensor '{name}' (bytes {start}..{end}) is cut at byte {size}, where the file ends{more}: \
                     the file is truncated (an interrupted download?)"
                )
            }));
        }
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            let ((_, a_end, a), (b_start, _, b)) = (pair[0], pair[1]);
            if b_start < a_end {
                return Err(Error::CorruptGguf(format!(
                    "tensors '{a}' and '{b}' overlap (bytes {b_start}..{a_end} of the file): \
                     each tensor's data must be its own"
                )));
            }
        }
        Ok(())
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// Loads one tensor, still quantized.
    pub fn tensor<R: Read + Seek>(&self, reader: &mut R, name: &str) -> Result<QTensor> {
        self.content
            .tensor(reader, name, &Device::Cpu)
            .map_err(|e| Error::CorruptGguf(format!("tensor '{name}': {e}")))
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Quantization types in the file with their tensor counts, e.g. `Q4_1 ×210`.
    pub fn quant_summary(&self) -> String {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for info in self.content.tensor_infos.values() {
            *counts.entry(format!("{:?}", info.ggml_dtype)).or_default() += 1;
        }
        counts
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The `general.alignment` that candle's `Content::read` will use, read by walking the metadata
/// the same way (v1 files have u32 lengths, later ones u64) without storing it: `None` when the
/// key is absent, has a type candle ignores (it then uses 32), or the header is malformed (which
/// `Content::read` reports).
fn declared_alignment<R: Read + Seek>(reader: &mut R) -> Option<u64> {
    fn u32_at<R: Read>(r: &mut R) -> Option<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).ok()?;
        Some(u32::from_le_bytes(b))
    }
    fn skip<R: Read>(r: &mut R, n: u64) -> Option<()> {
        (std::io::copy(&mut r.by_ref().take(n), &mut std::io::sink()).ok()? == n).then_some(())
    }
    /// Skips one value of GGUF type `ty`, `depth` arrays deep (candle's own limit is 64).
    fn skip_value<R: Read>(
        r: &mut R,
        ty: u32,
        len: &dyn Fn(&mut R) -> Option<u64>,
        depth: usize,
    ) -> Option<()> {
        match ty {
            0 | 1 | 7 => skip(r, 1),
            2 | 3 => skip(r, 2),
            4..=6 => skip(r, 4),
            10..=12 => skip(r, 8),
            8 => {
                let n = len(r)?;
                skip(r, n)
            }
            9 if depth < 64 => {
                let (inner, n) = (u32_at(r)?, len(r)?);
                match inner {
                    0 | 1 | 7 => skip(r, n),
                    2 | 3 => skip(r, n.checked_mul(2)?),
                    4..=6 => skip(r, n.checked_mul(4)?),
                    10..=12 => skip(r, n.checked_mul(8)?),
                    _ => (0..n).try_for_each(|_| skip_value(r, inner, len, depth + 1)),
                }
            }
            _ => None,
        }
    }
    reader.seek(SeekFrom::Start(4)).ok()?;
    let v1 = u32_at(reader)? == 1;
    let len = |r: &mut R| -> Option<u64> {
        if v1 {
            u32_at(r).map(u64::from)
        } else {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).ok()?;
            Some(u64::from_le_bytes(b))
        }
    };
    let _tensor_count = len(reader)?;
    let mut alignment = None;
    for _ in 0..len(reader)? {
        let key_len = len(reader)?;
        // candle drops trailing NULs from strings.
        let is_alignment = if (17..=64).contains(&key_len) {
            let mut key = [0u8; 64];
            let key = &mut key[..key_len as usize];
            reader.read_exact(key).ok()?;
            key.iter().rposition(|&c| c != 0).map(|last| &key[..=last])
                == Some(&b"general.alignment"[..])
        } else {
            skip(reader, key_len)?;
            false
        };
        let ty = u32_at(reader)?;
        if !is_alignment {
            skip_value(reader, ty, &len, 0)?;
            continue;
        }
        let mut b = [0u8; 4];
        let size = [1, 1, 2, 2, 4, 4].get(ty as usize).copied();
        let Some(size) = size else {
            // Types candle ignores for the alignment.
            alignment = None;
            skip_value(reader, ty, &len, 0)?;
            continue;
        };
        reader.read_exact(&mut b[..size]).ok()?;
        let unsigned = u32::from_le_bytes(b) as u64;
        let negative = ty % 2 == 1 && b[size - 1] & 0x80 != 0;
        alignment = (!negative).then_some(unsigned);
    }
    alignment
}

/// Turns candle's header errors into ones that say what is wrong with the file.
fn classify_header_error(mut e: candle_core::Error, file_size: u64) -> Error {
    // Under RUST_BACKTRACE candle wraps its errors with a backtrace: the user needs the cause.
    while let candle_core::Error::WithBacktrace { inner, .. } = e {
        e = *inner;
    }
    let msg = e.to_string();
    if let Some(at) = msg.find("unknown dtype for tensor ") {
        let digits: String = msg[at + 25..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let id: u32 = digits.parse().unwrap_or(u32::MAX);
        return Error::UnsupportedQuant(format!("ggml type {id} ({})", ggml_type_name(id)));
    }
    if msg.contains("failed to fill whole buffer") || msg.contains("UnexpectedEof") {
        return Error::CorruptGguf(format!(
            "the header ends early: the file ({file_size} bytes) is truncated"
        ));
    }
    Error::CorruptGguf(msg)
}

fn get<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value> {
    md.get(key)
        .ok_or_else(|| Error::Metadata(format!("required key '{key}' is missing")))
}

fn get_usize(md: &HashMap<String, Value>, key: &str) -> Result<usize> {
    let v = get(md, key)?;
    let n = match v {
        Value::U8(x) => *x as u64,
        Value::U16(x) => *x as u64,
        Value::U32(x) => *x as u64,
        Value::U64(x) => *x,
        Value::I8(x) if *x >= 0 => *x as u64,
        Value::I16(x) if *x >= 0 => *x as u64,
        Value::I32(x) if *x >= 0 => *x as u64,
        Value::I64(x) if *x >= 0 => *x as u64,
        other => {
            return Err(Error::Metadata(format!(
                "'{key}' should be a non-negative integer, found {other:?}"
            )))
        }
    };
    // Bounds that no real llama exceeds; they keep absurd files from driving allocations.
    if n == 0 || n > 1 << 24 {
        return Err(Error::Metadata(format!("'{key}' = {n} is out of range")));
    }
    Ok(n as usize)
}

fn get_f64(md: &HashMap<String, Value>, key: &str) -> Result<Option<f64>> {
    Ok(match md.get(key) {
        None => None,
        Some(Value::F32(x)) => Some(*x as f64),
        Some(Value::F64(x)) => Some(*x),
        Some(other) => {
            return Err(Error::Metadata(format!(
                "'{key}' should be a float, found {other:?}"
            )))
        }
    })
}

fn llama_config(md: &HashMap<String, Value>) -> Result<Config> {
    let arch = match md.get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(Error::Metadata(
                "'general.architecture' is not a string".into(),
            ))
        }
        None => return Err(Error::Metadata("'general.architecture' is missing".into())),
    };
    if arch != "llama" {
        return Err(Error::UnsupportedArchitecture(arch));
    }
    let name = match md.get("general.name") {
        Some(Value::String(s)) => s.clone(),
        _ => "unnamed llama".into(),
    };
    let d_model = get_usize(md, "llama.embedding_length")?;
    let n_heads = get_usize(md, "llama.attention.head_count")?;
    let n_kv_heads = if md.contains_key("llama.attention.head_count_kv") {
        get_usize(md, "llama.attention.head_count_kv")?
    } else {
        n_heads
    };
    if d_model % n_heads != 0 || n_heads % n_kv_heads != 0 {
        return Err(Error::Metadata(format!(
            "d_model {d_model}, {n_heads} heads and {n_kv_heads} KV heads do not divide evenly"
        )));
    }
    let head_dim = d_model / n_heads;
    if head_dim % 2 != 0 {
        return Err(Error::Metadata(format!("head dimension {head_dim} is odd")));
    }
    if md.contains_key("llama.rope.dimension_count")
        && get_usize(md, "llama.rope.dimension_count")? != head_dim
    {
        return Err(Error::Metadata(
            "partial rotary embeddings (rope.dimension_count ≠ head dimension) are not supported"
                .into(),
        ));
    }
    let rms_eps = get_f64(md, "llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5);
    let rope_theta = get_f64(md, "llama.rope.freq_base")?.unwrap_or(10_000.0) as f32;
    if !(rms_eps > 0.0 && rms_eps < 1.0 && rope_theta > 1.0 && rope_theta.is_finite()) {
        return Err(Error::Metadata(format!(
            "rms epsilon {rms_eps} or rope theta {rope_theta} is out of range"
        )));
    }
    Ok(Config {
        name,
        n_layers: get_usize(md, "llama.block_count")?,
        d_model,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim: get_usize(md, "llama.feed_forward_length")?,
        rms_eps,
        rope_theta,
        context_length: get_usize(md, "llama.context_length")?,
    })
}

/// sha256 of a whole stream, hex-encoded.
pub fn sha256_hex<R: Read + Seek>(reader: &mut R) -> Result<String> {
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("model", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::io("model", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ModelFile {
    /// Parses the header from the first bytes of a file of `file_size` bytes (the browser reads
    /// a large model in ranges): `Ok(None)` when the header runs past `prefix`, so that the
    /// caller reads a longer one.
    pub fn read_prefix(prefix: &[u8], file_size: u64) -> Result<Option<Self>> {
        let mut r = Prefix {
            bytes: prefix,
            file_size,
            pos: 0,
            short: false,
        };
        match Self::read(&mut r) {
            Err(_) if r.short && (prefix.len() as u64) < file_size => Ok(None),
            other => other.map(Some),
        }
    }
}

/// The first bytes of a longer file: seeks see the whole file's size, reads past the prefix
/// fail and are remembered (the header is longer than the prefix).
struct Prefix<'a> {
    bytes: &'a [u8],
    file_size: u64,
    pos: u64,
    short: bool,
}

impl Read for Prefix<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() || self.pos >= self.file_size {
            return Ok(0);
        }
        let Some(rest) = usize::try_from(self.pos)
            .ok()
            .and_then(|p| self.bytes.get(p..))
            .filter(|r| !r.is_empty())
        else {
            self.short = true;
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Prefix<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.file_size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or(std::io::ErrorKind::InvalidInput)?;
        Ok(self.pos)
    }
}
