//! One batch as a graph: many short sequences packed row after row into one `[tokens, d]`
//! stream, and every dispatch of the forward pass over it, in order. [`forward`] describes the
//! graph once (kernel, operation, buffers of each dispatch); the model counts it, derives its
//! pipelines from it, and binds it into [`Scratch`]: activation buffers sized for a batch with
//! every dispatch's bind group made once. [`Op::launch`] gives each dispatch's uniform
//! parameters and workgroup grid for a batch's size.

use std::num::NonZeroU64;

use super::kernels::{decoder, grid, Kernel, Pipelines, PARAMS_BYTES};
use super::weights::{Weight, Weights};
use super::GpuDevice;
use crate::model::gguf::Config;

// ---------------------------------------------------------------------------------------------
// The description
// ---------------------------------------------------------------------------------------------

/// An activation or input buffer of the batch, by role (each lives in [`Scratch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Act {
    /// Token ids, `[tokens]`.
    Ids,
    /// Index of each token's sequence start, `[tokens]`.
    SeqStart,
    /// cos/sin of the rotary angles, `[position][head_dim / 2][2]`.
    Rope,
    /// Each capture's first row and row count.
    Spans,
    /// Captured rows, `[layer][capture][d]`.
    Capture,
    /// The residual stream, `[tokens, d]`.
    X,
    /// The normalized residual stream.
    Xn,
    /// A block's output before it is added to the stream.
    Y,
    Q,
    K,
    V,
    /// Attention output, `[tokens, heads * head_dim]`.
    Att,
    Gate,
    Up,
}

/// A buffer one dispatch binds.
#[derive(Clone, Copy)]
pub(super) enum Arg<'w> {
    Act(Act),
    Weight(&'w wgpu::Buffer),
}

/// One dispatch: its kernel, what it does, and its buffers in binding order (from binding 1;
/// binding 0 is its uniform parameters).
pub(super) struct Node<'w> {
    pub(super) kernel: Kernel,
    pub(super) op: Op,
    pub(super) args: Vec<Arg<'w>>,
}

/// What one dispatch does; with the batch size it gives the dispatch's parameters and grid.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
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

impl Op {
    /// Uniform parameters and workgroup grid for a batch of `t` tokens and `caps` captures.
    pub(super) fn launch(
        &self,
        c: &Config,
        t: u32,
        caps: u32,
        max_side: u32,
    ) -> ([u32; 8], [u32; 3]) {
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

/// Every dispatch of one batch, in order: the embedding (one dispatch per part of the table),
/// layer 0 captured, then per block attention and feed-forward with their norms and residual
/// adds (one matmul dispatch per weight part), and the block's layer captured. Independent of
/// the batch size.
pub(super) fn forward<'w>(c: &Config, w: &'w Weights) -> Vec<Node<'w>> {
    use Act::*;
    fn node<'w>(kernel: Kernel, op: Op, args: &[Arg<'w>]) -> Node<'w> {
        Node {
            kernel,
            op,
            args: args.to_vec(),
        }
    }
    fn matmul<'w>(g: &mut Vec<Node<'w>>, w: &'w Weight, input: Act, out: Act) {
        let kernel = Kernel::MatMul(decoder(w.dtype).unwrap_or("f32"));
        for part in &w.parts {
            let op = Op::MatMul {
                rows: part.rows as u32,
                cols: w.cols as u32,
                row_bytes: w.row_bytes as u32,
                out_stride: w.rows as u32,
                col_offset: part.row_start as u32,
            };
            g.push(node(
                kernel,
                op,
                &[Arg::Weight(&part.buffer), Arg::Act(input), Arg::Act(out)],
            ));
        }
    }
    let a = Arg::Act;
    let mut g = Vec::new();
    let e = &w.embedding;
    for part in &e.parts {
        let op = Op::Embed {
            row_start: part.row_start as u32,
            rows: part.rows as u32,
            row_bytes: e.row_bytes as u32,
        };
        g.push(node(
            Kernel::Embed(decoder(e.dtype).unwrap_or("f32")),
            op,
            &[Arg::Weight(&part.buffer), a(Ids), a(X)],
        ));
    }
    g.push(node(
        Kernel::Capture,
        Op::Capture { layer: 0 },
        &[a(X), a(Spans), a(Capture)],
    ));
    for (i, b) in w.blocks.iter().enumerate() {
        let norm = |weights: &'w wgpu::Buffer| {
            node(
                Kernel::RmsNorm,
                Op::RmsNorm,
                &[a(X), Arg::Weight(weights), a(Xn)],
            )
        };
        g.push(norm(&b.attn_norm));
        matmul(&mut g, &b.wq, Xn, Q);
        matmul(&mut g, &b.wk, Xn, K);
        matmul(&mut g, &b.wv, Xn, V);
        let heads = c.n_heads as u32;
        g.push(node(
            Kernel::Rope,
            Op::Rope { heads },
            &[a(Q), a(Rope), a(SeqStart)],
        ));
        let heads = c.n_kv_heads as u32;
        g.push(node(
            Kernel::Rope,
            Op::Rope { heads },
            &[a(K), a(Rope), a(SeqStart)],
        ));
        g.push(node(
            Kernel::Attention,
            Op::Attention,
            &[a(Q), a(K), a(V), a(SeqStart), a(Att)],
        ));
        matmul(&mut g, &b.wo, Att, Y);
        g.push(node(Kernel::Add, Op::Add, &[a(X), a(Y)]));
        g.push(norm(&b.ffn_norm));
        matmul(&mut g, &b.w_gate, Xn, Gate);
        matmul(&mut g, &b.w_up, Xn, Up);
        g.push(node(Kernel::SwiGlu, Op::SwiGlu, &[a(Gate), a(Up)]));
        matmul(&mut g, &b.w_down, Gate, Y);
        g.push(node(Kernel::Add, Op::Add, &[a(X), a(Y)]));
        g.push(node(
            Kernel::Capture,
            Op::Capture {
                layer: i as u32 + 1,
            },
            &[a(X), a(Spans), a(Capture)],
        ));
    }
    g
}

// ---------------------------------------------------------------------------------------------
// The bound graph
// ---------------------------------------------------------------------------------------------

/// One dispatch of the graph, bound to a batch's buffers.
pub(super) struct Step {
    pub(super) kernel: Kernel,
    pub(super) op: Op,
    bind_group: wgpu::BindGroup,
}

impl Step {
    /// Records this dispatch into `pass` with workgroup grid `groups`.
    pub(super) fn dispatch(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        pipelines: &Pipelines,
        groups: [u32; 3],
    ) {
        pass.set_pipeline(&pipelines[&self.kernel]);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
    }
}

/// Activation buffers sized for up to `tokens` tokens and `caps` captured rows, with every
/// dispatch's bind group made once; rebuilt only when a batch outgrows them.
pub(super) struct Scratch {
    pub(super) tokens: usize,
    pub(super) caps: usize,
    pub(super) ids: wgpu::Buffer,
    pub(super) seq_start: wgpu::Buffer,
    pub(super) rope: wgpu::Buffer,
    pub(super) spans: wgpu::Buffer,
    params: wgpu::Buffer,
    pub(super) capture: wgpu::Buffer,
    pub(super) readback: wgpu::Buffer,
    /// The residual stream, written from the host when a pass resumes from an edited layer.
    pub(super) x: wgpu::Buffer,
    params_stride: u64,
    pub(super) steps: Vec<Step>,
}

impl Scratch {
    /// Buffers for `tokens` tokens and `caps` captures, and `graph` bound to them step by step.
    pub(super) fn build(
        gpu: &GpuDevice,
        pipelines: &Pipelines,
        c: &Config,
        graph: &[Node],
        tokens: usize,
        caps: usize,
    ) -> Scratch {
        let dev = &gpu.device;
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
        let params_stride = (gpu.limits.min_uniform_buffer_offset_alignment as u64)
            .max(PARAMS_BYTES)
            .next_multiple_of(PARAMS_BYTES);
        let params = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: params_stride * graph.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let act = |a: Act| match a {
            Act::Ids => &ids,
            Act::SeqStart => &seq_start,
            Act::Rope => &rope,
            Act::Spans => &spans,
            Act::Capture => &capture,
            Act::X => &x,
            Act::Xn => &xn,
            Act::Y => &y,
            Act::Q => &q,
            Act::K => &k,
            Act::V => &v,
            Act::Att => &att,
            Act::Gate => &gate,
            Act::Up => &up,
        };
        let steps = graph
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let buffers: Vec<&wgpu::Buffer> = n
                    .args
                    .iter()
                    .map(|arg| match *arg {
                        Arg::Act(a) => act(a),
                        Arg::Weight(b) => b,
                    })
                    .collect();
                let slot = i as u64 * params_stride;
                Step {
                    kernel: n.kernel,
                    op: n.op,
                    bind_group: bind(dev, &pipelines[&n.kernel], &params, slot, &buffers),
                }
            })
            .collect();
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
            x,
            params_stride,
            steps,
        }
    }

    /// Writes every step's uniform parameters for a batch of `t` tokens and `caps` captures.
    pub(super) fn write_params(
        &self,
        queue: &wgpu::Queue,
        c: &Config,
        t: u32,
        caps: u32,
        max_side: u32,
    ) {
        let words = (self.params_stride / 4) as usize;
        let mut params = vec![0u32; words * self.steps.len()];
        for (i, step) in self.steps.iter().enumerate() {
            let (p, _) = step.op.launch(c, t, caps, max_side);
            params[i * words..i * words + 8].copy_from_slice(&p);
        }
        queue.write_buffer(&self.params, 0, bytemuck::cast_slice(&params));
    }
}

/// The bind group of one step: its parameter slot at binding 0, then `buffers`.
fn bind(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    params: &wgpu::Buffer,
    slot: u64,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
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
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("probelab step"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

// ---------------------------------------------------------------------------------------------
// A batch's inputs
// ---------------------------------------------------------------------------------------------

/// cos/sin of the rotary angles `pos * theta^(-2i/hd)` as `[pos][hd/2][cos, sin]`, computed in
/// f64 exactly as the CPU path does.
pub(super) fn rope_table(c: &Config, len: usize) -> Vec<f32> {
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
