//! The kernels: one WGSL file each beside this one, the GGUF block decoders of `quant.wgsl`
//! spliced into the kernels that read weights, their compute pipelines, and the dispatch grid.
//! The uniform parameters of each dispatch are written by the graph (`graph.rs`).

use std::collections::HashMap;

use candle_core::quantized::GgmlDType;

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
pub(super) const PARAMS_BYTES: u64 = 32;
/// Largest head dimension the attention kernel holds in workgroup memory.
pub(super) const MAX_HEAD_DIM: usize = 256;

/// The WGSL decoder for a GGUF type, or `None` when the GPU engine cannot read it.
pub(super) fn decoder(dtype: GgmlDType) -> Option<&'static str> {
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

/// One compute kernel; those that read weights carry the name of their GGUF decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Kernel {
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
    pub(super) fn name(&self) -> String {
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

pub(super) fn create_pipeline(device: &wgpu::Device, kernel: Kernel) -> wgpu::ComputePipeline {
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

/// Every kernel's compute pipeline, built once at load.
pub(super) type Pipelines = HashMap<Kernel, wgpu::ComputePipeline>;

/// The pipelines of `kernels` (each built once however often it is named).
pub(super) fn build_pipelines(
    device: &wgpu::Device,
    kernels: impl IntoIterator<Item = Kernel>,
) -> Pipelines {
    let mut kernels: Vec<Kernel> = kernels.into_iter().collect();
    kernels.sort();
    kernels.dedup();
    kernels
        .into_iter()
        .map(|k| (k, create_pipeline(device, k)))
        .collect()
}

/// `n` workgroups laid out in a grid whose sides fit the device (shaders linearize it back).
pub(super) fn grid(n: u32, max_side: u32) -> [u32; 3] {
    if n <= max_side {
        [n.max(1), 1, 1]
    } else {
        [max_side, n.div_ceil(max_side), 1]
    }
}

/// Single kernels on raw GGUF blocks, for tests that check each decoder and the matmul alone.
#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use wgpu::util::DeviceExt;

    use super::{create_pipeline, decoder, grid, Kernel};
    use crate::error::{Error, Result};
    use crate::gpu::readback::read_back;
    use crate::gpu::weights::storage_init;
    use crate::gpu::GpuDevice;
    use candle_core::quantized::GgmlDType;

    fn one_dispatch(
        gpu: &GpuDevice,
        kernel: Kernel,
        params: [u32; 8],
        inputs: &[&[u8]],
        out_len: usize,
        groups: [u32; 3],
    ) -> Result<Vec<f32>> {
        let dev = &gpu.device;
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
        gpu.queue.submit([enc.finish()]);
        pollster::block_on(read_back(gpu, &read, bytes))
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
        gpu: &GpuDevice,
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
            gpu,
            kernel,
            params,
            &[raw, bytemuck::cast_slice(x)],
            tokens * rows,
            groups,
        )
    }

    /// Every row of `W`, dequantized by the embedding kernel: `[rows, cols]`.
    pub fn dequantize(
        gpu: &GpuDevice,
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
        let groups = grid(((rows * cols / 8) as u32).div_ceil(64), gpu.max_grid_side());
        one_dispatch(
            gpu,
            kernel,
            params,
            &[raw, bytemuck::cast_slice(&ids)],
            rows * cols,
            groups,
        )
    }
}
