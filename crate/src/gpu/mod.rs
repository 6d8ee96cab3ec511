//! The llama forward pass on the GPU (wgpu + WGSL), with the residual stream captured at every
//! layer. The same code targets Vulkan/Metal/DX12 natively and WebGPU in the browser.
//!
//! Read top to bottom: the device ([`GpuDevice`]), weights uploaded tensor by tensor as raw GGUF
//! blocks, the kernels (one WGSL file each under `src/gpu/`), and one batch: many short sequences
//! packed row after row into one `[tokens, d]` stream, every kernel dispatched in one command
//! submission, and one read-back of the captured rows.
//!
//! Layer convention, as on the CPU: layer 0 is the embedding output; layer i (1..=L) is the
//! residual stream after block i. Checked against [`crate::model::Llama`] layer by layer in
//! `tests/gpu_parity.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::num::NonZeroU64;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use candle_core::quantized::GgmlDType;
use candle_core::Device;
use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::extract::{Activations, EntityTokens, ExtractOptions, Pool, Progress};
use crate::model::gguf::{Config, ModelFile};

const QUANT_WGSL: &str = include_str!("quant.wgsl");
const MATMUL_WGSL: &str = include_str!("matmul.wgsl");
const EMBED_WGSL: &str = include_str!("embed.wgsl");
const RMSNORM_WGSL: &str = include_str!("rmsnorm.wgsl");
const ROPE_WGSL: &str = include_str!("rope.wgsl");
const ATTENTION_WGSL: &str = include_str!("attention.wgsl");
const SWIGLU_WGSL: &str = include_str!("swiglu.wgsl");
const ADD_WGSL: &str = include_str!("add.wgsl");
const ELEMENTWISE_WGSL: &str = include_str!("elementwise.wgsl");
const CAPTURE_WGSL: &str = include_str!("capture.wgsl");

/// Bytes of every kernel's uniform parameter block (8 words).
const PARAMS_BYTES: u64 = 32;
/// Largest head dimension the attention kernel holds in workgroup memory.
const MAX_HEAD_DIM: usize = 256;

/// The WGSL decoder for a GGUF type, or `None` when the GPU engine cannot read it.
fn decoder(dtype: GgmlDType) -> Option<&'static str> {
    Some(match dtype {
        GgmlDType::F32 => "f32",
        GgmlDType::F16 => "f16",
        GgmlDType::BF16 => "bf16",
        GgmlDType::Q4_0 => "q4_0",
        GgmlDType::Q4_1 => "q4_1",
        GgmlDType::Q5_0 => "q5_0",
        GgmlDType::Q5_1 => "q5_1",
        GgmlDType::Q8_0 => "q8_0",
        GgmlDType::Q2K => "q2_k",
        GgmlDType::Q3K => "q3_k",
        GgmlDType::Q4K => "q4_k",
        GgmlDType::Q5K => "q5_k",
        GgmlDType::Q6K => "q6_k",
        GgmlDType::Q8_1 | GgmlDType::Q8K => return None,
    })
}

/// Whether the GPU engine can run weights of this type.
pub fn supports(dtype: GgmlDType) -> bool {
    decoder(dtype).is_some()
}

// ---------------------------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------------------------

/// What the adapter is, for logs and for choosing an engine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A software rasterizer (lavapipe, SwiftShader, WARP): correct but slower than the CPU path.
    pub is_fallback: bool,
    pub timestamp_queries: bool,
    pub max_storage_binding_bytes: u64,
}

impl std::fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if self.is_fallback {
            write!(f, ", software fallback")?;
        }
        write!(f, ")")
    }
}

/// Errors the device reports outside any call (validation, out of memory), and device loss.
#[derive(Default)]
struct DeviceState {
    errors: Vec<String>,
    lost: Option<String>,
}

/// A GPU device and queue, with the errors it reports collected instead of panicking.
pub struct GpuDevice {
    device: wgpu::Device,
    queue: wgpu::Queue,
    limits: wgpu::Limits,
    report: AdapterReport,
    state: Arc<Mutex<DeviceState>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl GpuDevice {
    /// Requests an adapter (high performance first; `WGPU_BACKEND` and the other wgpu
    /// environment variables apply) and a device with the adapter's full limits.
    pub async fn new_async() -> Result<Self> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let features = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("probelab"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("the adapter '{}' gave no device: {e}", info.name)))?;
        let state = Arc::new(Mutex::new(DeviceState::default()));
        let s = state.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&s).errors.push(e.to_string());
        }));
        let s = state.clone();
        device.set_device_lost_callback(move |reason, message| {
            let why = if message.is_empty() {
                format!("{reason:?}")
            } else {
                format!("{reason:?}: {message}")
            };
            lock(&s).lost = Some(why);
        });
        let report = AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            is_fallback: info.device_type == wgpu::DeviceType::Cpu,
            timestamp_queries: timestamps,
            max_storage_binding_bytes: limits.max_storage_buffer_binding_size,
        };
        Ok(Self {
            device,
            queue,
            limits,
            report,
            state,
        })
    }

    /// [`GpuDevice::new_async`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    pub fn report(&self) -> &AdapterReport {
        &self.report
    }

    /// Destroys the device, as a driver reset would: for tests of the lost-device path.
    #[doc(hidden)]
    pub fn destroy_device_for_tests(&self) {
        self.device.destroy();
    }

    /// Errors the device reported since the last check, and device loss, as one error.
    fn check(&self) -> Result<()> {
        let mut s = lock(&self.state);
        if let Some(lost) = &s.lost {
            return Err(Error::Gpu(format!("the GPU device was lost ({lost})")));
        }
        if !s.errors.is_empty() {
            let all = std::mem::take(&mut s.errors).join("; ");
            return Err(Error::Gpu(all));
        }
        Ok(())
    }

    /// Largest buffer one binding may see.
    fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }
}

// ---------------------------------------------------------------------------------------------
// Weights
// ---------------------------------------------------------------------------------------------

/// Rows `row_start..row_start + rows` of a weight matrix, as GGUF blocks in one buffer.
struct Part {
    buffer: wgpu::Buffer,
    row_start: usize,
    rows: usize,
}

/// A weight matrix `[rows, cols]` kept as GGUF blocks, split by rows into parts that each fit
/// one storage binding.
struct Weight {
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    parts: Vec<Part>,
}

struct Block {
    attn_norm: wgpu::Buffer,
    ffn_norm: wgpu::Buffer,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    w_gate: Weight,
    w_up: Weight,
    w_down: Weight,
}

fn storage_init(device: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytes,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

/// Reads a weight matrix straight from the file, one part at a time, and uploads it.
fn upload_weight<R: Read + Seek>(
    engine: &GpuDevice,
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
            buffer: storage_init(&engine.device, name, &bytes),
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
    engine: &GpuDevice,
    file: &ModelFile,
    reader: &mut R,
    name: &str,
) -> Result<wgpu::Buffer> {
    let v = file
        .tensor(reader, name)?
        .dequantize(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(storage_init(&engine.device, name, bytemuck::cast_slice(&v)))
}

// ---------------------------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kernel {
    Embed(&'static str),
    MatMul(&'static str),
    RmsNorm,
    Rope,
    Attention,
    SwiGlu,
    Add,
    Capture,
}

impl Kernel {
    fn name(&self) -> String {
        match self {
            Kernel::Embed(t) => format!("embed ({t})"),
            Kernel::MatMul(t) => format!("matmul ({t})"),
            Kernel::RmsNorm => "rmsnorm".into(),
            Kernel::Rope => "rope".into(),
            Kernel::Attention => "attention".into(),
            Kernel::SwiGlu => "swiglu".into(),
            Kernel::Add => "residual add".into(),
            Kernel::Capture => "capture".into(),
        }
    }

    fn source(&self) -> String {
        let with_decoder = |body: &str, t: &str| {
            format!(
                "{QUANT_WGSL}\n{body}\nfn dequant8(base: u32, k: u32) -> array<f32, 8> {{ return dq8_{t}(base, k); }}\n"
            )
        };
        match self {
            Kernel::Embed(t) => with_decoder(EMBED_WGSL, t),
            Kernel::MatMul(t) => with_decoder(MATMUL_WGSL, t),
            Kernel::RmsNorm => RMSNORM_WGSL.into(),
            Kernel::Rope => ROPE_WGSL.into(),
            Kernel::Attention => ATTENTION_WGSL.into(),
            Kernel::SwiGlu => format!("{ELEMENTWISE_WGSL}\n{SWIGLU_WGSL}"),
            Kernel::Add => format!("{ELEMENTWISE_WGSL}\n{ADD_WGSL}"),
            Kernel::Capture => CAPTURE_WGSL.into(),
        }
    }
}

fn create_pipeline(device: &wgpu::Device, kernel: Kernel) -> wgpu::ComputePipeline {
    let label = kernel.name();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// What one dispatch does; with the batch size it gives the dispatch's parameters and grid.
#[derive(Debug, Clone, Copy)]
enum Op {
    Embed {
        row_start: u32,
        rows: u32,
        row_bytes: u32,
    },
    RmsNorm,
    MatMul {
        rows: u32,
        cols: u32,
        row_bytes: u32,
        out_stride: u32,
        col_offset: u32,
    },
    Rope {
        heads: u32,
    },
    Attention,
    SwiGlu,
    Add,
    Capture {
        layer: u32,
    },
}

struct Step {
    kernel: Kernel,
    op: Op,
    bind_group: wgpu::BindGroup,
}

/// `n` workgroups laid out in a grid whose sides fit the device (shaders linearize it back).
fn grid(n: u32, max_side: u32) -> [u32; 3] {
    if n <= max_side {
        [n.max(1), 1, 1]
    } else {
        [max_side, n.div_ceil(max_side), 1]
    }
}

impl Op {
    /// Uniform parameters and workgroup grid for a batch of `t` tokens and `caps` captures.
    fn launch(&self, c: &Config, t: u32, caps: u32, max_side: u32) -> ([u32; 8], [u32; 3]) {
        let d = c.d_model as u32;
        let hd = c.head_dim as u32;
        let threads = |n: u32| grid(n.div_ceil(64), max_side);
        match *self {
            Op::Embed {
                row_start,
                rows,
                row_bytes,
            } => (
                [t, d, row_bytes, row_start, rows, 0, 0, 0],
                threads(t * d / 8),
            ),
            Op::RmsNorm => (
                [t, d, (c.rms_eps as f32).to_bits(), 0, 0, 0, 0, 0],
                grid(t, max_side),
            ),
            Op::MatMul {
                rows,
                cols,
                row_bytes,
                out_stride,
                col_offset,
            } => (
                [t, rows, cols, row_bytes, out_stride, col_offset, 0, 0],
                [rows.div_ceil(64), t.div_ceil(64), 1],
            ),
            Op::Rope { heads } => ([t, heads, hd, 0, 0, 0, 0, 0], threads(t * heads * hd / 2)),
            Op::Attention => {
                let scale = (1.0 / (c.head_dim as f64).sqrt()) as f32;
                (
                    [
                        t,
                        c.n_heads as u32,
                        c.n_kv_heads as u32,
                        hd,
                        scale.to_bits(),
                        0,
                        0,
                        0,
                    ],
                    grid(t * c.n_heads as u32, max_side),
                )
            }
            Op::SwiGlu => {
                let n = t * c.ffn_dim as u32;
                ([n, 0, 0, 0, 0, 0, 0, 0], threads(n))
            }
            Op::Add => ([t * d, 0, 0, 0, 0, 0, 0, 0], threads(t * d)),
            Op::Capture { layer } => ([caps, d, layer, 0, 0, 0, 0, 0], threads(caps * d)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-batch buffers
// ---------------------------------------------------------------------------------------------

/// Activation buffers sized for up to `tokens` tokens and `caps` captured rows, with every
/// dispatch's bind group made once; rebuilt only when a batch outgrows them.
struct Scratch {
    tokens: usize,
    caps: usize,
    ids: wgpu::Buffer,
    seq_start: wgpu::Buffer,
    rope: wgpu::Buffer,
    spans: wgpu::Buffer,
    params: wgpu::Buffer,
    capture: wgpu::Buffer,
    readback: wgpu::Buffer,
    params_stride: u64,
    steps: Vec<Step>,
}

/// One capture: the mean over `rows` (token positions) of sequence `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSpan {
    pub seq: usize,
    pub rows: Range<usize>,
}

/// Captured residual-stream vectors, `[layer 0..=L][capture][d_model]`.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Blocks L; there are L + 1 layers (0 = embedding output).
    pub n_layers: usize,
    pub n: usize,
    pub d_model: usize,
    pub data: Vec<f32>,
}

impl Captured {
    pub fn vector(&self, layer: usize, i: usize) -> &[f32] {
        let at = (layer * self.n + i) * self.d_model;
        &self.data[at..at + self.d_model]
    }
}

/// Time spent per kernel over one batch (see [`GpuLlama::profile`]).
#[derive(Debug, Clone)]
pub struct Profile {
    /// "timestamp queries" or "wall time of separate submissions".
    pub method: &'static str,
    pub dispatches: usize,
    pub tokens: usize,
    /// Kernel name, dispatch count, seconds.
    pub kernels: Vec<(String, usize, f64)>,
}

impl Profile {
    pub fn total_seconds(&self) -> f64 {
        self.kernels.iter().map(|k| k.2).sum()
    }
}

/// Options for loading; the defaults fit the device's limits.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Split weight matrices into parts of at most this many bytes (default: the device's
    /// largest storage binding). Small values exercise splitting in tests.
    pub max_part_bytes: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

pub struct GpuLlama {
    pub config: Config,
    pub vocab_size: usize,
    engine: Arc<GpuDevice>,
    pipelines: HashMap<Kernel, wgpu::ComputePipeline>,
    embedding: Weight,
    blocks: Vec<Block>,
    scratch: Mutex<Option<Scratch>>,
}

impl GpuLlama {
    /// Uploads the weights tensor by tensor from `reader` (the stream `file` was parsed from)
    /// and builds every pipeline. Fails with [`Error::Gpu`] when a tensor's type or shape is
    /// beyond the GPU engine, so that the caller can fall back to the CPU.
    pub fn load<R: Read + Seek>(
        file: &ModelFile,
        reader: &mut R,
        engine: Arc<GpuDevice>,
        opts: &GpuOptions,
    ) -> Result<Self> {
        let c = file.config.clone();
        if c.head_dim > MAX_HEAD_DIM || !c.head_dim.is_multiple_of(2) {
            return Err(Error::Gpu(format!(
                "head dimension {} is beyond the GPU attention kernel (even, at most {MAX_HEAD_DIM})",
                c.head_dim
            )));
        }
        if !c.d_model.is_multiple_of(8) {
            return Err(Error::Gpu(format!(
                "d_model {} is not a multiple of 8",
                c.d_model
            )));
        }
        let max_part = opts
            .max_part_bytes
            .unwrap_or(u64::MAX)
            .min(engine.max_binding());
        engine.check()?;
        let w = |r: &mut R, name: String| upload_weight(&engine, file, r, &name, max_part);
        let embedding = w(reader, "token_embd.weight".into())?;
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                attn_norm: upload_vector(&engine, file, reader, &n("attn_norm"))?,
                ffn_norm: upload_vector(&engine, file, reader, &n("ffn_norm"))?,
                wq: w(reader, n("attn_q"))?,
                wk: w(reader, n("attn_k"))?,
                wv: w(reader, n("attn_v"))?,
                wo: w(reader, n("attn_output"))?,
                w_gate: w(reader, n("ffn_gate"))?,
                w_up: w(reader, n("ffn_up"))?,
                w_down: w(reader, n("ffn_down"))?,
            });
        }
        let mut kernels = vec![
            Kernel::Embed(decoder(embedding.dtype).unwrap_or("f32")),
            Kernel::RmsNorm,
            Kernel::Rope,
            Kernel::Attention,
            Kernel::SwiGlu,
            Kernel::Add,
            Kernel::Capture,
        ];
        for b in &blocks {
            for wt in [&b.wq, &b.wk, &b.wv, &b.wo, &b.w_gate, &b.w_up, &b.w_down] {
                kernels.push(Kernel::MatMul(decoder(wt.dtype).unwrap_or("f32")));
            }
        }
        kernels.sort();
        kernels.dedup();
        let pipelines = kernels
            .into_iter()
            .map(|k| (k, create_pipeline(&engine.device, k)))
            .collect();
        engine.check().map_err(|e| {
            Error::Gpu(format!(
                "building the GPU pipelines failed (a driver or shader problem): {e}"
            ))
        })?;
        Ok(Self {
            vocab_size: embedding.rows,
            config: c,
            engine,
            pipelines,
            embedding,
            blocks,
            scratch: Mutex::new(None),
        })
    }

    pub fn device(&self) -> &GpuDevice {
        &self.engine
    }

    /// The most tokens one submission can hold: every activation buffer must fit one binding.
    pub fn max_batch_tokens(&self) -> usize {
        let c = &self.config;
        let widest = c.ffn_dim.max(c.d_model).max(c.n_heads * c.head_dim).max(1);
        let by_binding = (self.engine.max_binding() / (4 * widest as u64)) as usize;
        // Matmul grids have ceil(tokens / 64) workgroups on one side.
        let by_grid = self.engine.limits.max_compute_workgroups_per_dimension as usize * 64;
        by_binding.min(by_grid)
    }

    /// The most captured rows one submission can hold (all layers of them in one binding).
    pub fn max_batch_captures(&self) -> usize {
        let per = 4 * (self.config.n_layers + 1) * self.config.d_model;
        (self.engine.max_binding() / per as u64) as usize
    }

    /// Dispatches per batch (independent of the batch size).
    pub fn dispatches_per_batch(&self) -> usize {
        let parts = |w: &Weight| w.parts.len();
        self.embedding.parts.len()
            + 1
            + self
                .blocks
                .iter()
                .map(|b| {
                    parts(&b.wq)
                        + parts(&b.wk)
                        + parts(&b.wv)
                        + parts(&b.wo)
                        + parts(&b.w_gate)
                        + parts(&b.w_up)
                        + parts(&b.w_down)
                        + 9
                })
                .sum::<usize>()
    }

    fn bind(
        &self,
        kernel: Kernel,
        params: &wgpu::Buffer,
        slot: u64,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let pipeline = &self.pipelines[&kernel];
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: params,
                offset: slot,
                size: NonZeroU64::new(PARAMS_BYTES),
            }),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        self.engine
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("probelab step"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
    }

    /// Buffers for `tokens` tokens and `caps` captures, and every step of the forward pass.
    fn build_scratch(&self, tokens: usize, caps: usize) -> Scratch {
        let c = &self.config;
        let dev = &self.engine.device;
        let f32s = |label: &str, n: usize| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (4 * n.max(1)) as u64,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let (d, hd) = (c.d_model, c.head_dim);
        let x = f32s("x", tokens * d);
        let xn = f32s("xn", tokens * d);
        let y = f32s("y", tokens * d);
        let q = f32s("q", tokens * c.n_heads * hd);
        let att = f32s("attention", tokens * c.n_heads * hd);
        let k = f32s("k", tokens * c.n_kv_heads * hd);
        let v = f32s("v", tokens * c.n_kv_heads * hd);
        let gate = f32s("gate", tokens * c.ffn_dim);
        let up = f32s("up", tokens * c.ffn_dim);
        let ids = f32s("ids", tokens);
        let seq_start = f32s("seq_start", tokens);
        let rope = f32s("rope", tokens * hd);
        let spans = f32s("spans", 2 * caps);
        let capture_len = (c.n_layers + 1) * caps * d;
        let capture = f32s("capture", capture_len);
        let readback = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: (4 * capture_len.max(1)) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let params_stride = (self.engine.limits.min_uniform_buffer_offset_alignment as u64)
            .max(PARAMS_BYTES)
            .next_multiple_of(PARAMS_BYTES);
        let n_steps = self.dispatches_per_batch();
        let params = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: params_stride * n_steps as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let mut steps: Vec<Step> = Vec::with_capacity(n_steps);
        let mut push = |kernel: Kernel, op: Op, buffers: &[&wgpu::Buffer]| {
            let slot = steps.len() as u64 * params_stride;
            let bind_group = self.bind(kernel, &params, slot, buffers);
            steps.push(Step {
                kernel,
                op,
                bind_group,
            });
        };
        let matmul = |push: &mut dyn FnMut(Kernel, Op, &[&wgpu::Buffer]),
                      w: &Weight,
                      input: &wgpu::Buffer,
                      out: &wgpu::Buffer| {
            let kernel = Kernel::MatMul(decoder(w.dtype).unwrap_or("f32"));
            for part in &w.parts {
                let op = Op::MatMul {
                    rows: part.rows as u32,
                    cols: w.cols as u32,
                    row_bytes: w.row_bytes as u32,
                    out_stride: w.rows as u32,
                    col_offset: part.row_start as u32,
                };
                push(kernel, op, &[&part.buffer, input, out]);
            }
        };
        let e = &self.embedding;
        for part in &e.parts {
            let op = Op::Embed {
                row_start: part.row_start as u32,
                rows: part.rows as u32,
                row_bytes: e.row_bytes as u32,
            };
            push(
                Kernel::Embed(decoder(e.dtype).unwrap_or("f32")),
                op,
                &[&part.buffer, &ids, &x],
            );
        }
        push(
            Kernel::Capture,
            Op::Capture { layer: 0 },
            &[&x, &spans, &capture],
        );
        for (i, b) in self.blocks.iter().enumerate() {
            push(Kernel::RmsNorm, Op::RmsNorm, &[&x, &b.attn_norm, &xn]);
            matmul(&mut push, &b.wq, &xn, &q);
            matmul(&mut push, &b.wk, &xn, &k);
            matmul(&mut push, &b.wv, &xn, &v);
            let heads = c.n_heads as u32;
            push(Kernel::Rope, Op::Rope { heads }, &[&q, &rope, &seq_start]);
            let heads = c.n_kv_heads as u32;
            push(Kernel::Rope, Op::Rope { heads }, &[&k, &rope, &seq_start]);
            push(
                Kernel::Attention,
                Op::Attention,
                &[&q, &k, &v, &seq_start, &att],
            );
            matmul(&mut push, &b.wo, &att, &y);
            push(Kernel::Add, Op::Add, &[&x, &y]);
            push(Kernel::RmsNorm, Op::RmsNorm, &[&x, &b.ffn_norm, &xn]);
            matmul(&mut push, &b.w_gate, &xn, &gate);
            matmul(&mut push, &b.w_up, &xn, &up);
            push(Kernel::SwiGlu, Op::SwiGlu, &[&gate, &up]);
            matmul(&mut push, &b.w_down, &gate, &y);
            push(Kernel::Add, Op::Add, &[&x, &y]);
            push(
                Kernel::Capture,
                Op::Capture {
                    layer: i as u32 + 1,
                },
                &[&x, &spans, &capture],
            );
        }
        debug_assert_eq!(steps.len(), n_steps);
        Scratch {
            tokens,
            caps,
            ids,
            seq_start,
            rope,
            spans,
            params,
            capture,
            readback,
            params_stride,
            steps,
        }
    }

    /// The scratch buffers, held for a whole batch. Natively a second caller waits its turn;
    /// in the browser (one thread) it gets an error rather than a deadlock.
    fn scratch(&self) -> Result<std::sync::MutexGuard<'_, Option<Scratch>>> {
        #[cfg(target_arch = "wasm32")]
        return match self.scratch.try_lock() {
            Ok(g) => Ok(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => Err(Error::Gpu(
                "the GPU engine is busy with another batch: await it first".into(),
            )),
        };
        #[cfg(not(target_arch = "wasm32"))]
        Ok(lock(&self.scratch))
    }

    /// Checks a batch and writes its inputs (ids, sequence starts, rope table, spans, params)
    /// into scratch buffers big enough for it. Returns the token and capture counts.
    fn prepare<'a>(
        &self,
        slot: &'a mut Option<Scratch>,
        seqs: &[&[u32]],
        caps: &[CaptureSpan],
    ) -> Result<(&'a Scratch, usize, usize)> {
        let c = &self.config;
        if seqs.is_empty() || caps.is_empty() || seqs.iter().any(|s| s.is_empty()) {
            return Err(Error::Input(
                "an empty batch, an empty token sequence or nothing to capture".into(),
            ));
        }
        let mut ids = Vec::new();
        let mut seq_start = Vec::new();
        let mut starts = Vec::with_capacity(seqs.len());
        let mut max_len = 0;
        for s in seqs {
            if s.len() > c.context_length {
                return Err(Error::Input(format!(
                    "a prompt of {} tokens exceeds the model's context of {}",
                    s.len(),
                    c.context_length
                )));
            }
            if let Some(&bad) = s.iter().find(|&&t| t as usize >= self.vocab_size) {
                return Err(Error::Input(format!(
                    "token id {bad} is outside the vocabulary of {}",
                    self.vocab_size
                )));
            }
            let start = ids.len() as u32;
            starts.push(start as usize);
            ids.extend_from_slice(s);
            seq_start.extend(std::iter::repeat_n(start, s.len()));
            max_len = max_len.max(s.len());
        }
        let mut spans = Vec::with_capacity(2 * caps.len());
        for cap in caps {
            let ok =
                cap.seq < seqs.len() && !cap.rows.is_empty() && cap.rows.end <= seqs[cap.seq].len();
            if !ok {
                return Err(Error::Input(format!(
                    "capture rows {:?} of sequence {} are outside the batch",
                    cap.rows, cap.seq
                )));
            }
            spans.push((starts[cap.seq] + cap.rows.start) as u32);
            spans.push(cap.rows.len() as u32);
        }
        let (t, n_caps) = (ids.len(), caps.len());
        if t > self.max_batch_tokens() || n_caps > self.max_batch_captures() {
            return Err(Error::Input(format!(
                "a batch of {t} tokens and {n_caps} captures exceeds what one GPU submission holds ({} tokens, {} captures): use smaller batches",
                self.max_batch_tokens(),
                self.max_batch_captures()
            )));
        }
        let fits = matches!(slot, Some(s) if s.tokens >= t && s.caps >= n_caps);
        if !fits {
            // Grow with headroom so that batches of similar size reuse the buffers.
            let (old_t, old_c) = slot.as_ref().map_or((0, 0), |s| (s.tokens, s.caps));
            let tokens = t
                .max(old_t)
                .next_multiple_of(256)
                .min(self.max_batch_tokens());
            let caps_cap = n_caps
                .max(old_c)
                .next_multiple_of(64)
                .min(self.max_batch_captures());
            *slot = None; // free the old buffers first
            *slot = Some(self.build_scratch(tokens, caps_cap));
        }
        let s = slot.as_ref().expect("scratch was just built");
        let queue = &self.engine.queue;
        queue.write_buffer(&s.ids, 0, bytemuck::cast_slice(&ids));
        queue.write_buffer(&s.seq_start, 0, bytemuck::cast_slice(&seq_start));
        queue.write_buffer(&s.spans, 0, bytemuck::cast_slice(&spans));
        queue.write_buffer(&s.rope, 0, bytemuck::cast_slice(&rope_table(c, max_len)));
        let max_side = self.engine.limits.max_compute_workgroups_per_dimension;
        let words = (s.params_stride / 4) as usize;
        let mut params = vec![0u32; words * s.steps.len()];
        for (i, step) in s.steps.iter().enumerate() {
            let (p, _) = step.op.launch(c, t as u32, n_caps as u32, max_side);
            params[i * words..i * words + 8].copy_from_slice(&p);
        }
        queue.write_buffer(&s.params, 0, bytemuck::cast_slice(&params));
        Ok((s, t, n_caps))
    }

    /// Runs sequences packed into one batch and returns the residual stream at every layer,
    /// averaged over each capture's rows: one command submission, one read-back.
    // The scratch lock is held across the read-back on purpose: the buffers belong to this
    // batch until its results are out (see `GpuLlama::scratch`).
    #[allow(clippy::await_holding_lock)]
    pub async fn run_async(&self, seqs: &[&[u32]], caps: &[CaptureSpan]) -> Result<Captured> {
        self.engine.check()?;
        let mut slot = self.scratch()?;
        let (s, t, n_caps) = self.prepare(&mut slot, seqs, caps)?;
        let c = &self.config;
        let max_side = self.engine.limits.max_compute_workgroups_per_dimension;
        let mut enc = self
            .engine
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("probelab batch"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            for step in &s.steps {
                let (_, g) = step.op.launch(c, t as u32, n_caps as u32, max_side);
                pass.set_pipeline(&self.pipelines[&step.kernel]);
                pass.set_bind_group(0, &step.bind_group, &[]);
                pass.dispatch_workgroups(g[0], g[1], g[2]);
            }
        }
        let bytes = (4 * (c.n_layers + 1) * n_caps * c.d_model) as u64;
        enc.copy_buffer_to_buffer(&s.capture, 0, &s.readback, 0, bytes);
        self.engine.queue.submit([enc.finish()]);
        let data = read_back(&self.engine, &s.readback, bytes).await?;
        self.engine.check()?;
        Ok(Captured {
            n_layers: c.n_layers,
            n: n_caps,
            d_model: c.d_model,
            data,
        })
    }

    /// [`GpuLlama::run_async`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, seqs: &[&[u32]], caps: &[CaptureSpan]) -> Result<Captured> {
        pollster::block_on(self.run_async(seqs, caps))
    }

    /// The residual stream of `entities[which]` at every layer, pooled over each entity's span
    /// like [`crate::extract::extract_batch`]: `[layer][i][d]` with `i` indexing `which`.
    /// Batches beyond one submission's limits are split.
    pub async fn forward_capture_async(
        &self,
        entities: &[EntityTokens],
        which: &[usize],
        pool: Pool,
    ) -> Result<Captured> {
        let c = &self.config;
        let mut out = Captured {
            n_layers: c.n_layers,
            n: which.len(),
            d_model: c.d_model,
            data: vec![0.0; (c.n_layers + 1) * which.len() * c.d_model],
        };
        let (max_t, max_c) = (self.max_batch_tokens(), self.max_batch_captures().max(1));
        let mut done = 0;
        while done < which.len() {
            // As many entities as fit one submission (at least one).
            let mut end = done;
            let mut tokens = 0;
            while end < which.len() && end - done < max_c {
                let e = entities.get(which[end]).ok_or_else(|| {
                    Error::Input(format!("entity {} is not in the list", which[end]))
                })?;
                if end > done && tokens + e.ids.len() > max_t {
                    break;
                }
                tokens += e.ids.len();
                end += 1;
            }
            let chunk = &which[done..end];
            let seqs: Vec<&[u32]> = chunk.iter().map(|&i| &entities[i].ids[..]).collect();
            let caps: Vec<CaptureSpan> = chunk
                .iter()
                .enumerate()
                .map(|(seq, &i)| {
                    let span = &entities[i].span;
                    let rows = match pool {
                        Pool::Last => span.end.saturating_sub(1)..span.end,
                        Pool::Mean => span.clone(),
                    };
                    CaptureSpan { seq, rows }
                })
                .collect();
            let got = self.run_async(&seqs, &caps).await?;
            for layer in 0..=c.n_layers {
                for i in 0..chunk.len() {
                    let at = (layer * out.n + done + i) * c.d_model;
                    out.data[at..at + c.d_model].copy_from_slice(got.vector(layer, i));
                }
            }
            done = end;
        }
        Ok(out)
    }

    /// [`GpuLlama::forward_capture_async`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_capture(
        &self,
        entities: &[EntityTokens],
        which: &[usize],
        pool: Pool,
    ) -> Result<Captured> {
        pollster::block_on(self.forward_capture_async(entities, which, pool))
    }

    /// One batch over the entities `which`, writing their rows of `acts` — the GPU twin of
    /// [`crate::extract::extract_batch`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn extract_batch(
        &self,
        entities: &[EntityTokens],
        which: &[usize],
        pool: Pool,
        acts: &mut Activations,
    ) -> Result<()> {
        let got = self.forward_capture(entities, which, pool)?;
        store(&got, entities, which, acts);
        Ok(())
    }

    /// All entities, batched as [`crate::extract::extract`] does (sorted by length, results in
    /// input order) — its GPU twin. Larger batches than the CPU's suit the GPU (e.g. 256+).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn extract(
        &self,
        entities: &[EntityTokens],
        opts: &ExtractOptions,
        progress: &mut Progress,
    ) -> Result<Activations> {
        pollster::block_on(self.extract_async(entities, opts, progress))
    }

    /// [`GpuLlama::extract`] for async callers (the browser).
    pub async fn extract_async(
        &self,
        entities: &[EntityTokens],
        opts: &ExtractOptions,
        progress: &mut Progress<'_>,
    ) -> Result<Activations> {
        let c = &self.config;
        let mut acts = Activations::zeros(c.n_layers, entities.len(), c.d_model);
        let (mut done, mut tokens) = (0, 0);
        for chunk in &crate::extract::plan_batches(entities, opts.batch_size) {
            let got = self
                .forward_capture_async(entities, chunk, opts.pool)
                .await?;
            store(&got, entities, chunk, &mut acts);
            done += chunk.len();
            tokens += chunk.iter().map(|&i| entities[i].ids.len()).sum::<usize>();
            if !progress(done, entities.len(), tokens) {
                return Err(Error::Cancelled);
            }
        }
        Ok(acts)
    }

    /// Times every kernel over one batch: each dispatch in its own compute pass with timestamp
    /// queries when the adapter has them, else each dispatch as its own submission timed on the
    /// wall clock. Results are discarded; use [`GpuLlama::run`] for them.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self, seqs: &[&[u32]], caps: &[CaptureSpan]) -> Result<Profile> {
        self.engine.check()?;
        let mut slot = self.scratch()?;
        let (s, t, n_caps) = self.prepare(&mut slot, seqs, caps)?;
        let c = &self.config;
        let dev = &self.engine.device;
        let max_side = self.engine.limits.max_compute_workgroups_per_dimension;
        let mut per_step = vec![0f64; s.steps.len()];
        let method;
        if self.engine.report.timestamp_queries {
            method = "timestamp queries";
            // A query set holds at most 4096 queries: 2 per dispatch.
            for (chunk_i, chunk) in s.steps.chunks(2048).enumerate() {
                let n = 2 * chunk.len() as u32;
                let set = dev.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: n,
                });
                let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps"),
                    size: 8 * n as u64,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let read = dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("timestamps read"),
                    size: 8 * n as u64,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let mut enc = dev.create_command_encoder(&Default::default());
                for (i, step) in chunk.iter().enumerate() {
                    let (_, g) = step.op.launch(c, t as u32, n_caps as u32, max_side);
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &set,
                            beginning_of_pass_write_index: Some(2 * i as u32),
                            end_of_pass_write_index: Some(2 * i as u32 + 1),
                        }),
                    });
                    pass.set_pipeline(&self.pipelines[&step.kernel]);
                    pass.set_bind_group(0, &step.bind_group, &[]);
                    pass.dispatch_workgroups(g[0], g[1], g[2]);
                }
                enc.resolve_query_set(&set, 0..n, &resolve, 0);
                enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 8 * n as u64);
                self.engine.queue.submit([enc.finish()]);
                let bytes = pollster::block_on(read_back_bytes(&self.engine, &read, 8 * n as u64))?;
                let ticks: &[u64] = bytemuck::cast_slice(&bytes);
                let period = self.engine.queue.get_timestamp_period() as f64 * 1e-9;
                for i in 0..chunk.len() {
                    let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]);
                    per_step[chunk_i * 2048 + i] = dt as f64 * period;
                }
            }
        } else {
            method = "wall time of separate submissions";
            for (i, step) in s.steps.iter().enumerate() {
                let (_, g) = step.op.launch(c, t as u32, n_caps as u32, max_side);
                let mut enc = dev.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&self.pipelines[&step.kernel]);
                    pass.set_bind_group(0, &step.bind_group, &[]);
                    pass.dispatch_workgroups(g[0], g[1], g[2]);
                }
                let t0 = std::time::Instant::now();
                self.engine.queue.submit([enc.finish()]);
                dev.poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
                per_step[i] = t0.elapsed().as_secs_f64();
            }
        }
        self.engine.check()?;
        let mut by_kernel: HashMap<Kernel, (usize, f64)> = HashMap::new();
        for (step, secs) in s.steps.iter().zip(&per_step) {
            let e = by_kernel.entry(step.kernel).or_default();
            e.0 += 1;
            e.1 += secs;
        }
        let mut kernels: Vec<(String, usize, f64)> = by_kernel
            .into_iter()
            .map(|(k, (n, secs))| (k.name(), n, secs))
            .collect();
        kernels.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(Profile {
            method,
            dispatches: s.steps.len(),
            tokens: t,
            kernels,
        })
    }
}

/// Writes captured vectors into their entities' rows of `acts`.
pub(crate) fn store(
    got: &Captured,
    entities: &[EntityTokens],
    which: &[usize],
    acts: &mut Activations,
) {
    let d = acts.d_model;
    for layer in 0..=acts.n_layers {
        for (i, &e) in which.iter().enumerate() {
            let at = (layer * acts.n_entities + e) * d;
            acts.data[at..at + d].copy_from_slice(got.vector(layer, i));
        }
    }
    for &e in which {
        acts.tokens_per_entity[e] = entities[e].ids.len() as u32;
    }
}

/// cos/sin of the rotary angles `pos * theta^(-2i/hd)` as `[pos][hd/2][cos, sin]`, computed in
/// f64 exactly as the CPU path does.
fn rope_table(c: &Config, len: usize) -> Vec<f32> {
    let half = c.head_dim / 2;
    let mut out = Vec::with_capacity(len * half * 2);
    for pos in 0..len {
        for i in 0..half {
            let freq = 1.0 / (c.rope_theta as f64).powf(2.0 * i as f64 / c.head_dim as f64);
            let angle = pos as f64 * freq;
            out.push(angle.cos() as f32);
            out.push(angle.sin() as f32);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Read-back
// ---------------------------------------------------------------------------------------------

/// A one-shot channel as a future: wgpu's map callback sends, the reader awaits. Natively the
/// device is polled right after mapping, so the value is there by the first poll; in the
/// browser the event loop delivers it.
struct OneShot<T> {
    slot: Arc<Mutex<(Option<T>, Option<Waker>)>>,
}

impl<T> Future for OneShot<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = lock(&self.slot);
        match s.0.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

async fn read_back_bytes(engine: &GpuDevice, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    let slot = Arc::new(Mutex::new((None, None::<Waker>)));
    let tx = slot.clone();
    let slice = buffer.slice(0..bytes);
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let mut s = lock(&tx);
        s.0 = Some(r);
        if let Some(w) = s.1.take() {
            w.wake();
        }
    });
    #[cfg(not(target_arch = "wasm32"))]
    engine
        .device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
    if let Err(e) = (OneShot { slot }).await {
        engine.check()?; // a lost device says so
        return Err(Error::Gpu(format!("reading results back failed: {e}")));
    }
    let out = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading results back failed: {e}")))?;
        view.to_vec()
    };
    buffer.unmap();
    engine.check()?;
    Ok(out)
}

async fn read_back(engine: &GpuDevice, buffer: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
    let raw = read_back_bytes(engine, buffer, bytes).await?;
    Ok(raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Single kernels on raw GGUF blocks, for tests that check each decoder and the matmul alone.
#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use super::*;

    fn one_dispatch(
        engine: &GpuDevice,
        kernel: Kernel,
        params: [u32; 8],
        inputs: &[&[u8]],
        out_len: usize,
        groups: [u32; 3],
    ) -> Result<Vec<f32>> {
        let dev = &engine.device;
        let pipeline = create_pipeline(dev, kernel);
        let uniform = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::cast_slice(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut buffers: Vec<wgpu::Buffer> = inputs
            .iter()
            .map(|b| {
                let mut v = b.to_vec();
                v.resize((v.len() + 4).div_ceil(4) * 4, 0);
                storage_init(dev, "input", &v)
            })
            .collect();
        let bytes = (4 * out_len) as u64;
        buffers.push(dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("out"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }));
        let read = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            });
        }
        let bind_group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = dev.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        enc.copy_buffer_to_buffer(buffers.last().unwrap(), 0, &read, 0, bytes);
        engine.queue.submit([enc.finish()]);
        pollster::block_on(read_back(engine, &read, bytes))
    }

    fn check_type(dtype: GgmlDType, raw: &[u8], rows: usize, cols: usize) -> Result<usize> {
        decoder(dtype).ok_or_else(|| Error::Gpu(format!("{dtype:?} unsupported")))?;
        let row_bytes = cols / dtype.block_size() * dtype.type_size();
        if raw.len() != rows * row_bytes || !cols.is_multiple_of(32) {
            return Err(Error::Input("raw blocks do not match the shape".into()));
        }
        Ok(row_bytes)
    }

    /// `y [tokens, rows] = x [tokens, cols] · Wᵀ` with `W` given as raw GGUF blocks.
    pub fn matmul(
        engine: &GpuDevice,
        dtype: GgmlDType,
        raw: &[u8],
        rows: usize,
        cols: usize,
        x: &[f32],
        tokens: usize,
    ) -> Result<Vec<f32>> {
        let row_bytes = check_type(dtype, raw, rows, cols)?;
        let kernel = Kernel::MatMul(decoder(dtype).unwrap());
        let params = [
            tokens as u32,
            rows as u32,
            cols as u32,
            row_bytes as u32,
            rows as u32,
            0,
            0,
            0,
        ];
        let groups = [rows.div_ceil(64) as u32, tokens.div_ceil(64) as u32, 1];
        one_dispatch(
            engine,
            kernel,
            params,
            &[raw, bytemuck::cast_slice(x)],
            tokens * rows,
            groups,
        )
    }

    /// Every row of `W`, dequantized by the embedding kernel: `[rows, cols]`.
    pub fn dequantize(
        engine: &GpuDevice,
        dtype: GgmlDType,
        raw: &[u8],
        rows: usize,
        cols: usize,
    ) -> Result<Vec<f32>> {
        let row_bytes = check_type(dtype, raw, rows, cols)?;
        let kernel = Kernel::Embed(decoder(dtype).unwrap());
        let ids: Vec<u32> = (0..rows as u32).collect();
        let params = [
            rows as u32,
            cols as u32,
            row_bytes as u32,
            0,
            rows as u32,
            0,
            0,
            0,
        ];
        let groups = grid(
            ((rows * cols / 8) as u32).div_ceil(64),
            engine.limits.max_compute_workgroups_per_dimension,
        );
        one_dispatch(
            engine,
            kernel,
            params,
            &[raw, bytemuck::cast_slice(&ids)],
            rows * cols,
            groups,
        )
    }
}
