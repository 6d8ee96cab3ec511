//! The weights on the device: each matrix uploaded as its raw GGUF blocks, split by rows into
//! parts that each fit one storage binding (the kernels decode the blocks), and the norms'
//! vectors as f32.
//!
//! Loading is planned as a list of [`Piece`]s, byte ranges of the file in file order, each at
//! most a few MiB: the native loader reads them from a file, the browser from a Blob or by
//! HTTP range requests. Each piece goes straight into its GPU buffer and is dropped, so the
//! host never holds more than one piece of a model that may be larger than wasm's memory.

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::gguf_file::TensorInfo;
use candle_core::quantized::GgmlDType;
use candle_core::Device;
use sha2::{Digest, Sha256};

use super::kernels::decoder;
use super::GpuDevice;
use crate::error::{Error, Result};
use crate::model::gguf::{Config, ModelFile};

/// Every weight of the model on the device.
pub(super) struct Weights {
    pub(super) embedding: Weight,
    pub(super) blocks: Vec<Block>,
}

/// The most bytes one piece of a streamed load holds (a multiple of 4 rows of a matrix, or a
/// vector whole): the host's peak memory for weights.
pub const DEFAULT_PIECE_BYTES: u64 = 16 << 20;

/// One read of a streamed load: bytes `offset..offset + len` of the file. `tensor` names the
/// tensor it belongs to; empty for bytes read only for the file's hash (the header, padding,
/// tensors the GPU engine does not use such as the LM head).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Piece {
    pub tensor: String,
    pub offset: u64,
    pub len: u64,
    #[serde(skip)]
    target: Target,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// Hashed only.
    Skip,
    /// Slot `slot` (a vector) whole.
    Vector { slot: usize },
    /// Rows `row_start..row_start + rows` of slot `slot` (a matrix), inside its part `part`.
    Rows {
        slot: usize,
        part: usize,
        row_start: usize,
    },
}

/// A tensor being filled, in upload order: the embedding, then per block `attn_norm`,
/// `ffn_norm`, `attn_q`, `attn_k`, `attn_v`, `attn_output`, `ffn_gate`, `ffn_up`, `ffn_down`.
enum Slot {
    /// The matrix, its parts' buffers pushed as their first pieces arrive, and every part's
    /// planned `(row_start, rows)`.
    Matrix(Weight, Vec<(usize, usize)>),
    Vector {
        dtype: GgmlDType,
        dims: Vec<usize>,
        buffer: Option<wgpu::Buffer>,
    },
}

const BLOCK_ORDER: [&str; 9] = [
    "attn_norm",
    "ffn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// A streamed upload in progress: the plan of pieces, the tensors filled so far, and (for the
/// browser, which has no other way to name the file) the SHA-256 of every byte passed in.
pub(super) struct WeightsBuilder {
    slots: Vec<(String, Slot)>,
    pieces: Vec<Piece>,
    next: usize,
    hasher: Option<Sha256>,
    file_size: u64,
    /// Bytes of GPU buffers the plan creates.
    pub(super) gpu_bytes: u64,
    /// The largest part of a matrix (one buffer, one binding).
    pub(super) largest_part: u64,
}

impl WeightsBuilder {
    /// Plans the pieces of `file`'s weights: matrices in parts of at most `max_part` bytes
    /// (checked against the engine's types and the binding size before anything is read),
    /// read `piece_bytes` at a time. With `hash`, the pieces cover every byte of the file
    /// (the header and the tensors the engine skips too) and [`WeightsBuilder::sha256`] gives
    /// the file's hash.
    pub(super) fn plan(
        file: &ModelFile,
        c: &Config,
        max_part: u64,
        piece_bytes: u64,
        hash: bool,
    ) -> Result<Self> {
        let mut names = vec!["token_embd.weight".to_string()];
        for i in 0..c.n_layers {
            names.extend(BLOCK_ORDER.iter().map(|s| format!("blk.{i}.{s}.weight")));
        }
        let data = file.content.tensor_data_offset;
        let mut slots = Vec::with_capacity(names.len());
        let mut pieces = Vec::new();
        let (mut gpu_bytes, mut largest_part) = (0u64, 0u64);
        for name in names {
            let info = file.content.tensor_infos.get(&name).ok_or_else(|| {
                Error::Metadata(format!("tensor '{name}' is missing from the file"))
            })?;
            let slot = slots.len();
            let start = data + info.offset;
            if info.shape.dims().len() == 1 {
                let len = tensor_bytes(info);
                gpu_bytes += 4 * info.shape.elem_count() as u64;
                pieces.push(Piece {
                    tensor: name.clone(),
                    offset: start,
                    len,
                    target: Target::Vector { slot },
                });
                let (dtype, dims) = (info.ggml_dtype, info.shape.dims().to_vec());
                slots.push((
                    name,
                    Slot::Vector {
                        dtype,
                        dims,
                        buffer: None,
                    },
                ));
                continue;
            }
            let (w, planned) = plan_matrix(&name, info, max_part)?;
            let row_bytes = w.row_bytes as u64;
            // Pieces of a multiple of 4 rows keep each write 4-byte aligned inside its part.
            let piece_rows = ((piece_bytes / row_bytes) as usize / 4 * 4).max(4);
            for (part, &(part_start, part_rows)) in planned.iter().enumerate() {
                let bytes = padded(part_rows * w.row_bytes) as u64;
                gpu_bytes += bytes;
                largest_part = largest_part.max(bytes);
                let mut r = 0;
                while r < part_rows {
                    let rows = piece_rows.min(part_rows - r);
                    let row_start = part_start + r;
                    pieces.push(Piece {
                        tensor: name.clone(),
                        offset: start + (row_start as u64) * row_bytes,
                        len: rows as u64 * row_bytes,
                        target: Target::Rows {
                            slot,
                            part,
                            row_start,
                        },
                    });
                    r += rows;
                }
            }
            slots.push((name, Slot::Matrix(w, planned)));
        }
        pieces.sort_by_key(|p| p.offset);
        if hash {
            pieces = cover_gaps(pieces, file.file_size, piece_bytes);
        }
        Ok(Self {
            slots,
            pieces,
            next: 0,
            hasher: hash.then(Sha256::new),
            file_size: file.file_size,
            gpu_bytes,
            largest_part,
        })
    }

    pub(super) fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Pieces taken so far.
    pub(super) fn done(&self) -> usize {
        self.next
    }

    /// Takes the next piece's bytes (pieces come in plan order) and uploads them.
    pub(super) fn put(&mut self, gpu: &GpuDevice, bytes: &[u8]) -> Result<()> {
        self.check(gpu)?;
        let piece = self
            .pieces
            .get(self.next)
            .ok_or_else(|| Error::Input("every piece of the model is already loaded".into()))?;
        if bytes.len() as u64 != piece.len {
            let what = if piece.tensor.is_empty() {
                format!("bytes {}..{}", piece.offset, piece.offset + piece.len)
            } else {
                format!("tensor '{}'", piece.tensor)
            };
            return Err(Error::CorruptGguf(format!(
                "{what} is cut: {} of its {} bytes from byte {} could be read (the file is \
                 {} bytes long; is it truncated, or did the download stop?)",
                bytes.len(),
                piece.len,
                piece.offset,
                self.file_size
            )));
        }
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }
        match piece.target {
            Target::Skip => {}
            Target::Vector { slot } => {
                let (name, s) = &mut self.slots[slot];
                if let Slot::Vector {
                    dtype,
                    dims,
                    buffer,
                } = s
                {
                    let v = qtensor_from_ggml(*dtype, bytes, dims.clone(), &Device::Cpu)
                        .and_then(|t| t.dequantize(&Device::Cpu))
                        .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
                        .map_err(|e| Error::CorruptGguf(format!("tensor '{name}': {e}")))?;
                    // Written, not mapped at creation: mapping panics on a lost device.
                    let b = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(name),
                        size: 4 * v.len() as u64,
                        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    });
                    gpu.queue.write_buffer(&b, 0, bytemuck::cast_slice(&v));
                    *buffer = Some(b);
                }
            }
            Target::Rows {
                slot,
                part,
                row_start,
            } => {
                let (name, s) = &mut self.slots[slot];
                if let Slot::Matrix(w, plan) = s {
                    let planned = plan[part];
                    if w.parts.len() == part {
                        // The part's first piece: its buffer, zeroed (the padding past the
                        // last row is read by the decoders and must be zero).
                        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(name),
                            size: padded(planned.1 * w.row_bytes) as u64,
                            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                            mapped_at_creation: false,
                        });
                        w.parts.push(Part {
                            buffer,
                            row_start: planned.0,
                            rows: planned.1,
                        });
                    }
                    let at = ((row_start - planned.0) * w.row_bytes) as u64;
                    let buffer = &w.parts[part].buffer;
                    if bytes.len().is_multiple_of(4) {
                        gpu.queue.write_buffer(buffer, at, bytes);
                    } else {
                        let mut aligned = bytes.to_vec();
                        aligned.resize(bytes.len().div_ceil(4) * 4, 0);
                        gpu.queue.write_buffer(buffer, at, &aligned);
                    }
                    // Hands the write to the device now, so that staging copies do not pile up.
                    gpu.queue.submit([]);
                }
            }
        }
        self.next += 1;
        self.check(gpu)
    }

    /// The device's errors and loss, saying how far the load got.
    fn check(&self, gpu: &GpuDevice) -> Result<()> {
        gpu.check().map_err(|e| {
            let why = match e {
                Error::Gpu(m) => m,
                other => other.to_string(),
            };
            Error::Gpu(format!(
                "{why} — while loading the weights, after {} of {} pieces",
                self.next,
                self.pieces.len()
            ))
        })
    }

    /// Reads each remaining piece from `reader` and uploads it, calling `progress(done,
    /// total)` after each. A piece the file cannot fill (a truncated file) fails in
    /// [`WeightsBuilder::put`], naming its tensor, before anything after it is read.
    pub(super) fn read_from<R: Read + Seek>(
        &mut self,
        gpu: &GpuDevice,
        reader: &mut R,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<()> {
        let mut bytes = Vec::new();
        while let Some(p) = self.pieces.get(self.next) {
            let (offset, len) = (p.offset, p.len);
            bytes.clear();
            reader
                .seek(SeekFrom::Start(offset))
                .and_then(|_| reader.by_ref().take(len).read_to_end(&mut bytes))
                .map_err(|e| Error::io(format!("the model file at byte {offset}"), e))?;
            self.put(gpu, &bytes)?;
            progress(self.next, self.pieces.len());
        }
        Ok(())
    }

    /// The SHA-256 of the whole file, once every piece is in (with `hash`).
    pub(super) fn sha256(&self) -> Option<String> {
        let h = self.hasher.as_ref()?;
        (self.next == self.pieces.len()).then(|| hex(&h.clone().finalize()))
    }

    /// The weights, once every piece is in.
    pub(super) fn finish(self, n_layers: usize) -> Result<Weights> {
        if self.next < self.pieces.len() {
            return Err(Error::Input(format!(
                "the model's weights are incomplete: {} of {} pieces loaded",
                self.next,
                self.pieces.len()
            )));
        }
        let mut slots = self.slots.into_iter().map(|(_, s)| s);
        let matrix = |s: Option<Slot>| match s {
            Some(Slot::Matrix(w, _)) => w,
            _ => unreachable!("the plan puts matrices here"),
        };
        let vector = |s: Option<Slot>| match s {
            Some(Slot::Vector {
                buffer: Some(b), ..
            }) => b,
            _ => unreachable!("the plan puts vectors here, each filled by its piece"),
        };
        let embedding = matrix(slots.next());
        let mut blocks = Vec::with_capacity(n_layers);
        for _ in 0..n_layers {
            blocks.push(Block {
                attn_norm: vector(slots.next()),
                ffn_norm: vector(slots.next()),
                wq: matrix(slots.next()),
                wk: matrix(slots.next()),
                wv: matrix(slots.next()),
                wo: matrix(slots.next()),
                w_gate: matrix(slots.next()),
                w_up: matrix(slots.next()),
                w_down: matrix(slots.next()),
            });
        }
        Ok(Weights { embedding, blocks })
    }
}

impl Weights {
    /// Uploads the weights piece by piece from `reader` (the stream `file` was parsed from),
    /// each matrix in parts of at most `max_part` bytes.
    pub(super) fn upload<R: Read + Seek>(
        gpu: &GpuDevice,
        file: &ModelFile,
        reader: &mut R,
        c: &Config,
        max_part: u64,
        piece_bytes: u64,
    ) -> Result<Self> {
        let mut b = WeightsBuilder::plan(file, c, max_part, piece_bytes, false)?;
        b.read_from(gpu, reader, &mut |_, _| {})?;
        b.finish(c.n_layers)
    }
}

/// Rows `row_start..row_start + rows` of a weight matrix, as GGUF blocks in one buffer.
pub(super) struct Part {
    pub(super) buffer: wgpu::Buffer,
    pub(super) row_start: usize,
    pub(super) rows: usize,
}

/// A weight matrix `[rows, cols]` kept as GGUF blocks, split by rows into parts that each fit
/// one storage binding.
pub(super) struct Weight {
    pub(super) dtype: GgmlDType,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row_bytes: usize,
    pub(super) parts: Vec<Part>,
}

/// One transformer block's weights.
pub(super) struct Block {
    pub(super) attn_norm: wgpu::Buffer,
    pub(super) ffn_norm: wgpu::Buffer,
    pub(super) wq: Weight,
    pub(super) wk: Weight,
    pub(super) wv: Weight,
    pub(super) wo: Weight,
    pub(super) w_gate: Weight,
    pub(super) w_up: Weight,
    pub(super) w_down: Weight,
}

/// A storage buffer holding `bytes` (the kernels' tests' inputs).
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn storage_init(device: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytes,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

/// Bytes of a part's buffer: room for the 4 bytes a decoder may read past a row's end, in
/// 4-byte words.
fn padded(len: usize) -> usize {
    (len + 4).div_ceil(4) * 4
}

/// Bytes of a tensor's data in the file.
fn tensor_bytes(info: &TensorInfo) -> u64 {
    let dtype = info.ggml_dtype;
    (info.shape.elem_count() / dtype.block_size() * dtype.type_size()) as u64
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds hash-only pieces (of at most `piece_bytes`) for every byte of the file no piece reads.
fn cover_gaps(pieces: Vec<Piece>, file_size: u64, piece_bytes: u64) -> Vec<Piece> {
    let mut out = Vec::with_capacity(pieces.len() + 16);
    let mut at = 0u64;
    let skip = |out: &mut Vec<Piece>, from: u64, to: u64| {
        let mut s = from;
        while s < to {
            let len = piece_bytes.min(to - s);
            out.push(Piece {
                tensor: String::new(),
                offset: s,
                len,
                target: Target::Skip,
            });
            s += len;
        }
    };
    for p in pieces {
        skip(&mut out, at, p.offset);
        at = p.offset + p.len;
        out.push(p);
    }
    skip(&mut out, at, file_size);
    out
}

/// Checks that the GPU engine can hold matrix `name` and splits its rows into parts of at
/// most `max_part_bytes`: the empty [`Weight`] and each part's `(row_start, rows)`.
fn plan_matrix(
    name: &str,
    info: &TensorInfo,
    max_part_bytes: u64,
) -> Result<(Weight, Vec<(usize, usize)>)> {
    let dtype = info.ggml_dtype;
    if decoder(dtype).is_none() {
        return Err(Error::Gpu(format!(
            "tensor '{name}' is {dtype:?}, which the GPU engine does not read; use the CPU engine"
        )));
    }
    let dims = info.shape.dims();
    let (rows, cols) = match dims {
        [r, c] => (*r, *c),
        _ => {
            return Err(Error::Metadata(format!(
                "tensor '{name}' has shape {dims:?}, a matrix was expected"
            )))
        }
    };
    if !cols.is_multiple_of(32) {
        return Err(Error::Gpu(format!(
            "tensor '{name}' rows hold {cols} values, not a multiple of 32; use the CPU engine"
        )));
    }
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    // Room for the 4 bytes a decoder may read past a row's end, and 4-byte words.
    let rows_per_part = (max_part_bytes.saturating_sub(8) / row_bytes as u64) as usize;
    if rows_per_part == 0 {
        return Err(Error::Gpu(format!(
            "one row of tensor '{name}' ({row_bytes} bytes) exceeds the GPU's largest binding ({max_part_bytes} bytes)"
        )));
    }
    let mut planned = Vec::new();
    let mut row_start = 0;
    while row_start < rows {
        let n = rows_per_part.min(rows - row_start);
        planned.push((row_start, n));
        row_start += n;
    }
    let weight = Weight {
        dtype,
        rows,
        cols,
        row_bytes,
        parts: Vec::with_capacity(planned.len()),
    };
    Ok((weight, planned))
}
