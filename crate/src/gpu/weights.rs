//! The weights on the device: each matrix uploaded as its raw GGUF blocks, read straight from
//! the file and split by rows into parts that each fit one storage binding (the kernels decode
//! the blocks), and the norms' vectors as f32.

use std::io::{Read, Seek, SeekFrom};

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use wgpu::util::DeviceExt;

use super::kernels::decoder;
use super::GpuDevice;
use crate::error::{Error, Result};
use crate::model::gguf::{Config, ModelFile};

/// Every weight of the model on the device.
pub(super) struct Weights {
    pub(super) embedding: Weight,
    pub(super) blocks: Vec<Block>,
}

impl Weights {
    /// Uploads the weights tensor by tensor from `reader` (the stream `file` was parsed from),
    /// each matrix in parts of at most `max_part` bytes.
    pub(super) fn upload<R: Read + Seek>(
        gpu: &GpuDevice,
        file: &ModelFile,
        reader: &mut R,
        c: &Config,
        max_part: u64,
    ) -> Result<Self> {
        let w = |r: &mut R, name: String| upload_weight(gpu, file, r, &name, max_part);
        let embedding = w(reader, "token_embd.weight".into())?;
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                attn_norm: upload_vector(gpu, file, reader, &n("attn_norm"))?,
                ffn_norm: upload_vector(gpu, file, reader, &n("ffn_norm"))?,
                wq: w(reader, n("attn_q"))?,
                wk: w(reader, n("attn_k"))?,
                wv: w(reader, n("attn_v"))?,
                wo: w(reader, n("attn_output"))?,
                w_gate: w(reader, n("ffn_gate"))?,
                w_up: w(reader, n("ffn_up"))?,
                w_down: w(reader, n("ffn_down"))?,
            });
        }
        Ok(Weights { embedding, blocks })
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

pub(super) fn storage_init(device: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytes,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

/// Reads a weight matrix straight from the file, one part at a time, and uploads it.
fn upload_weight<R: Read + Seek>(
    gpu: &GpuDevice,
    file: &ModelFile,
    reader: &mut R,
    name: &str,
    max_part_bytes: u64,
) -> Result<Weight> {
    let info = file
        .content
        .tensor_infos
        .get(name)
        .ok_or_else(|| Error::Metadata(format!("tensor '{name}' is missing from the file")))?;
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
    let start = file.content.tensor_data_offset + info.offset;
    let mut parts = Vec::new();
    let mut row_start = 0;
    while row_start < rows {
        let n = rows_per_part.min(rows - row_start);
        let len = n * row_bytes;
        let mut bytes = vec![0u8; (len + 4).div_ceil(4) * 4];
        reader
            .seek(SeekFrom::Start(start + (row_start * row_bytes) as u64))
            .and_then(|_| reader.read_exact(&mut bytes[..len]))
            .map_err(|e| Error::CorruptGguf(format!("tensor '{name}': {e}")))?;
        parts.push(Part {
            buffer: storage_init(&gpu.device, name, &bytes),
            row_start,
            rows: n,
        });
        row_start += n;
    }
    Ok(Weight {
        dtype,
        rows,
        cols,
        row_bytes,
        parts,
    })
}

/// Reads a vector (a norm's weights) in any type and uploads it as f32.
fn upload_vector<R: Read + Seek>(
    gpu: &GpuDevice,
    file: &ModelFile,
    reader: &mut R,
    name: &str,
) -> Result<wgpu::Buffer> {
    let v = file
        .tensor(reader, name)?
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(storage_init(&gpu.device, name, bytemuck::cast_slice(&v)))
}
