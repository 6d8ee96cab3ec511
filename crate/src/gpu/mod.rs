//! The llama forward pass on the GPU (wgpu + WGSL), with the residual stream captured at every
//! layer. The same code targets Vulkan/Metal/DX12 natively and WebGPU in the browser.
//!
//! Read top to bottom: the device ([`GpuDevice`], `device.rs`), weights uploaded tensor by
//! tensor as raw GGUF blocks (`weights.rs`), the kernels (`kernels.rs`, one WGSL file each under
//! `src/gpu/`), one batch as a graph (`graph.rs`: many short sequences packed row after row into
//! one `[tokens, d]` stream, every kernel dispatched in one command submission), and the one
//! read-back of the captured rows (`readback.rs`). This file ties them together as
//! [`GpuLlama`]: load, run a batch, extract, profile.
//!
//! Layer convention, as on the CPU: layer 0 is the embedding output; layer i (1..=L) is the
//! residual stream after block i. Checked against [`crate::model::Llama`] layer by layer in
//! `tests/gpu_parity.rs`.

mod device;
mod graph;
mod kernels;
mod readback;
mod weights;

use std::io::{Read, Seek};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::extract::{EntityTokens, Pooling};
use crate::model::gguf::{Config, ModelFile};

pub use device::{AdapterReport, GpuDevice};
pub use kernels::supports;
#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub use kernels::testing;
pub use readback::{CaptureSpan, Captured};

use graph::{rope_table, Scratch};
use kernels::{Pipelines, MAX_HEAD_DIM};
use readback::read_back;
pub use weights::{Piece, DEFAULT_PIECE_BYTES};
use weights::{Weights, WeightsBuilder};

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
    /// Read the file at most this many bytes at a time (default [`DEFAULT_PIECE_BYTES`]).
    pub max_piece_bytes: Option<u64>,
}

impl GpuOptions {
    fn piece_bytes(&self) -> u64 {
        self.max_piece_bytes.unwrap_or(DEFAULT_PIECE_BYTES).max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

pub struct GpuLlama {
    pub config: Config,
    pub vocab_size: usize,
    gpu: Arc<GpuDevice>,
    pipelines: Pipelines,
    weights: Weights,
    scratch: Mutex<Option<Scratch>>,
}

/// Fails with [`Error::Gpu`] when the model's shape is beyond the GPU kernels.
fn check_shape(c: &Config) -> Result<()> {
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
    Ok(())
}

fn max_part(gpu: &GpuDevice, opts: &GpuOptions) -> u64 {
    opts.max_part_bytes
        .unwrap_or(u64::MAX)
        .min(gpu.max_binding())
}

impl GpuLlama {
    /// Uploads the weights piece by piece from `reader` (the stream `file` was parsed from)
    /// and builds every pipeline. Fails with [`Error::Gpu`] when a tensor's type or shape is
    /// beyond the GPU engine, so that the caller can fall back to the CPU.
    pub fn load<R: Read + Seek>(
        file: &ModelFile,
        reader: &mut R,
        gpu: Arc<GpuDevice>,
        opts: &GpuOptions,
    ) -> Result<Self> {
        let c = file.config.clone();
        check_shape(&c)?;
        gpu.check()?;
        let weights = Weights::upload(
            &gpu,
            file,
            reader,
            &c,
            max_part(&gpu, opts),
            opts.piece_bytes(),
        )?;
        Self::with_weights(c, gpu, weights)
    }

    /// Builds every pipeline for uploaded weights.
    fn with_weights(c: Config, gpu: Arc<GpuDevice>, weights: Weights) -> Result<Self> {
        let kernels = graph::forward(&c, &weights).into_iter().map(|n| n.kernel);
        let pipelines = kernels::build_pipelines(&gpu.device, kernels);
        gpu.check().map_err(|e| {
            Error::Gpu(format!(
                "building the GPU pipelines failed (a driver or shader problem): {e}"
            ))
        })?;
        Ok(Self {
            vocab_size: weights.embedding.rows,
            config: c,
            gpu,
            pipelines,
            weights,
            scratch: Mutex::new(None),
        })
    }

    pub fn device(&self) -> &GpuDevice {
        &self.gpu
    }

    /// The most tokens one submission can hold: every activation buffer must fit one binding.
    pub fn max_batch_tokens(&self) -> usize {
        let c = &self.config;
        let widest = c.ffn_dim.max(c.d_model).max(c.n_heads * c.head_dim).max(1);
        let by_binding = (self.gpu.max_binding() / (4 * widest as u64)) as usize;
        // Matmul grids have ceil(tokens / 64) workgroups on one side.
        let by_grid = self.gpu.max_grid_side() as usize * 64;
        by_binding.min(by_grid)
    }

    /// The most captured rows one submission can hold (all layers of them in one binding).
    pub fn max_batch_captures(&self) -> usize {
        let per = 4 * (self.config.n_layers + 1) * self.config.d_model;
        (self.gpu.max_binding() / per as u64) as usize
    }

    /// Dispatches per batch (independent of the batch size).
    pub fn dispatches_per_batch(&self) -> usize {
        graph::forward(&self.config, &self.weights).len()
    }

    /// Buffers for `tokens` tokens and `caps` captures, and every step of the forward pass.
    fn build_scratch(&self, tokens: usize, caps: usize) -> Scratch {
        let graph = graph::forward(&self.config, &self.weights);
        Scratch::build(
            &self.gpu,
            &self.pipelines,
            &self.config,
            &graph,
            tokens,
            caps,
        )
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
        Ok(device::lock(&self.scratch))
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
        let queue = &self.gpu.queue;
        queue.write_buffer(&s.ids, 0, bytemuck::cast_slice(&ids));
        queue.write_buffer(&s.seq_start, 0, bytemuck::cast_slice(&seq_start));
        queue.write_buffer(&s.spans, 0, bytemuck::cast_slice(&spans));
        queue.write_buffer(&s.rope, 0, bytemuck::cast_slice(&rope_table(c, max_len)));
        let max_side = self.gpu.max_grid_side();
        s.write_params(queue, c, t as u32, n_caps as u32, max_side);
        Ok((s, t, n_caps))
    }

    /// Runs sequences packed into one batch and returns the residual stream at every layer,
    /// averaged over each capture's rows: one command submission, one read-back.
    // The scratch lock is held across the read-back on purpose: the buffers belong to this
    // batch until its results are out (see `GpuLlama::scratch`).
    #[allow(clippy::await_holding_lock)]
    pub async fn run_async(&self, seqs: &[&[u32]], caps: &[CaptureSpan]) -> Result<Captured> {
        self.gpu.check()?;
        let mut slot = self.scratch()?;
        let (s, t, n_caps) = self.prepare(&mut slot, seqs, caps)?;
        let c = &self.config;
        let bytes = (4 * (c.n_layers + 1) * n_caps * c.d_model) as u64;
        let data = self
            .submit(s, 0..s.steps.len(), t, n_caps, 0..bytes)
            .await?;
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
    /// like [`crate::extract::batch_rows`]: `[layer][i][d]` with `i` indexing `which`.
    /// Batches beyond one submission's limits are split.
    pub async fn forward_capture_async(
        &self,
        entities: &[EntityTokens],
        which: &[usize],
        pooling: Pooling,
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
                    let rows = match pooling {
                        Pooling::Last => span.end.saturating_sub(1)..span.end,
                        Pooling::Mean => span.clone(),
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

    /// The residual stream after block `layer` at every token of `seqs`, packed prompt after
    /// prompt (`[Σ len, d_model]`): the causal test's held rows. One submission per batch
    /// that fits (every row captured).
    pub async fn hidden_rows_async(&self, seqs: &[Vec<u32>], layer: usize) -> Result<Vec<f32>> {
        let c = &self.config;
        if layer > c.n_layers {
            return Err(Error::Input(format!(
                "layer {layer} is out of range: this model has layers 0..={}",
                c.n_layers
            )));
        }
        let mut out = Vec::with_capacity(seqs.iter().map(Vec::len).sum::<usize>() * c.d_model);
        for chunk in self.row_chunks(seqs)? {
            let batch: Vec<&[u32]> = chunk.iter().map(|s| &s[..]).collect();
            let caps: Vec<CaptureSpan> = chunk
                .iter()
                .enumerate()
                .flat_map(|(seq, s)| {
                    (0..s.len()).map(move |p| CaptureSpan {
                        seq,
                        rows: p..p + 1,
                    })
                })
                .collect();
            let got = self.run_async(&batch, &caps).await?;
            for i in 0..caps.len() {
                out.extend_from_slice(got.vector(layer, i));
            }
        }
        Ok(out)
    }

    /// Prompts cut into runs that fit one submission with every row captured.
    fn row_chunks<'a>(&self, seqs: &'a [Vec<u32>]) -> Result<Vec<&'a [Vec<u32>]>> {
        let (max_t, max_c) = (self.max_batch_tokens(), self.max_batch_captures());
        let mut chunks = Vec::new();
        let (mut start, mut tokens) = (0, 0);
        for (i, s) in seqs.iter().enumerate() {
            if s.len() > max_t.min(max_c) {
                return Err(Error::Input(format!(
                    "a prompt of {} tokens is more than one GPU submission holds with every row \
                     captured ({} rows)",
                    s.len(),
                    max_t.min(max_c)
                )));
            }
            if tokens + s.len() > max_t.min(max_c) {
                chunks.push(&seqs[start..i]);
                (start, tokens) = (i, 0);
            }
            tokens += s.len();
        }
        if start < seqs.len() {
            chunks.push(&seqs[start..]);
        }
        Ok(chunks)
    }

    /// Runs blocks `from + 1..=to` of one batch from `rows` (packed `[Σ len, d_model]`, e.g. an
    /// edited copy of [`GpuLlama::hidden_rows_async`]) and returns the residual stream after
    /// block `to` at the packed rows `read_rows` (`[reads, d_model]`): the causal test's edited
    /// pass.
    // The scratch lock is held across the read-back on purpose (see `GpuLlama::run_async`).
    #[allow(clippy::await_holding_lock)]
    pub async fn resume_rows_async(
        &self,
        seqs: &[Vec<u32>],
        from: usize,
        to: usize,
        rows: &[f32],
        read_rows: &[usize],
    ) -> Result<Vec<f32>> {
        self.gpu.check()?;
        let c = &self.config;
        let d = c.d_model;
        if from > to || to > c.n_layers {
            return Err(Error::Input(format!(
                "cannot run from layer {from} to layer {to}: this model has layers 0..={}",
                c.n_layers
            )));
        }
        let t: usize = seqs.iter().map(Vec::len).sum();
        if rows.len() != t * d {
            return Err(Error::Input(format!(
                "{} values for {t} rows of width {d}",
                rows.len()
            )));
        }
        // Each read row is a one-row capture; layer `to`'s captures are the answer.
        let mut where_ = Vec::with_capacity(t);
        for (seq, s) in seqs.iter().enumerate() {
            where_.extend((0..s.len()).map(|p| (seq, p)));
        }
        let caps: Vec<CaptureSpan> = read_rows
            .iter()
            .map(|&r| {
                let (seq, p) = *where_.get(r).ok_or_else(|| {
                    Error::Input(format!("read row {r} is outside the batch of {t} rows"))
                })?;
                Ok(CaptureSpan {
                    seq,
                    rows: p..p + 1,
                })
            })
            .collect::<Result<_>>()?;
        let batch: Vec<&[u32]> = seqs.iter().map(|s| &s[..]).collect();
        let mut slot = self.scratch()?;
        let (s, t, n_caps) = self.prepare(&mut slot, &batch, &caps)?;
        let capture_of = |layer: usize| {
            s.steps
                .iter()
                .position(
                    |st| matches!(st.op, graph::Op::Capture { layer: l } if l as usize == layer),
                )
                .ok_or_else(|| Error::Input(format!("layer {layer} is out of range")))
        };
        let (first, last) = (capture_of(from)?, capture_of(to)?);
        self.gpu
            .queue
            .write_buffer(&s.x, 0, bytemuck::cast_slice(rows));
        // From the capture of `from` itself (it reads the rows just written: the answer when
        // `from` is `to`) through the capture of `to`, whose captures are the answer.
        let at = (4 * to * n_caps * d) as u64;
        self.submit(
            s,
            first..last + 1,
            t,
            n_caps,
            at..at + (4 * n_caps * d) as u64,
        )
        .await
    }

    /// Dispatches the batch's `steps` in one submission, then reads back the `captured` byte
    /// range of the capture buffer.
    async fn submit(
        &self,
        s: &Scratch,
        steps: std::ops::Range<usize>,
        t: usize,
        n_caps: usize,
        captured: std::ops::Range<u64>,
    ) -> Result<Vec<f32>> {
        let max_side = self.gpu.max_grid_side();
        let mut enc = self
            .gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("probelab batch"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            for step in &s.steps[steps] {
                let (_, g) = step
                    .op
                    .launch(&self.config, t as u32, n_caps as u32, max_side);
                step.dispatch(&mut pass, &self.pipelines, g);
            }
        }
        let bytes = captured.end - captured.start;
        enc.copy_buffer_to_buffer(&s.capture, captured.start, &s.readback, 0, bytes);
        self.gpu.queue.submit([enc.finish()]);
        let data = read_back(&self.gpu, &s.readback, bytes).await?;
        self.gpu.check()?;
        Ok(data)
    }

    /// [`GpuLlama::forward_capture_async`], blocking.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward_capture(
        &self,
        entities: &[EntityTokens],
        which: &[usize],
        pooling: Pooling,
    ) -> Result<Captured> {
        pollster::block_on(self.forward_capture_async(entities, which, pooling))
    }

    /// Times every kernel over one batch: each dispatch in its own compute pass with timestamp
    /// queries when the adapter has them, else each dispatch as its own submission timed on the
    /// wall clock. Results are discarded; use [`GpuLlama::run`] for them.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self, seqs: &[&[u32]], caps: &[CaptureSpan]) -> Result<Profile> {
        self.gpu.check()?;
        let mut slot = self.scratch()?;
        let (s, t, n_caps) = self.prepare(&mut slot, seqs, caps)?;
        let c = &self.config;
        let dev = &self.gpu.device;
        let max_side = self.gpu.max_grid_side();
        let mut per_step = vec![0f64; s.steps.len()];
        let method;
        if self.gpu.report.timestamp_queries {
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
                    step.dispatch(&mut pass, &self.pipelines, g);
                }
                enc.resolve_query_set(&set, 0..n, &resolve, 0);
                enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 8 * n as u64);
                self.gpu.queue.submit([enc.finish()]);
                let bytes =
                    pollster::block_on(readback::read_back_bytes(&self.gpu, &read, 8 * n as u64))?;
                let ticks: &[u64] = bytemuck::cast_slice(&bytes);
                let period = self.gpu.queue.get_timestamp_period() as f64 * 1e-9;
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
                    step.dispatch(&mut pass, &self.pipelines, g);
                }
                let t0 = std::time::Instant::now();
                self.gpu.queue.submit([enc.finish()]);
                dev.poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
                per_step[i] = t0.elapsed().as_secs_f64();
            }
        }
        self.gpu.check()?;
        let mut by_kernel: std::collections::HashMap<kernels::Kernel, (usize, f64)> =
            Default::default();
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

/// The GPU model in the one batch loop ([`crate::extract::for_each_batch`]); natively the
/// batch is awaited in place.
#[cfg(not(target_arch = "wasm32"))]
impl crate::extract::Forward for GpuLlama {
    fn config(&self) -> &Config {
        &self.config
    }
    fn batching(&self) -> crate::extract::Batching {
        crate::extract::Batching::Padded
    }
    fn forward_batch(
        &self,
        entities: &[EntityTokens],
        which: &[usize],
        pooling: Pooling,
    ) -> Result<Vec<f32>> {
        Ok(self.forward_capture(entities, which, pooling)?.data)
    }
    fn hidden_rows(&self, seqs: &[Vec<u32>], layer: usize) -> Result<Vec<f32>> {
        pollster::block_on(self.hidden_rows_async(seqs, layer))
    }
    fn resume_rows(
        &self,
        seqs: &[Vec<u32>],
        from: usize,
        to: usize,
        rows: &[f32],
        read_rows: &[usize],
    ) -> Result<Vec<f32>> {
        pollster::block_on(self.resume_rows_async(seqs, from, to, rows, read_rows))
    }
}

// ---------------------------------------------------------------------------------------------
// A streamed load (the browser's, for models larger than wasm's memory)
// ---------------------------------------------------------------------------------------------

/// What a streamed load will ask of the device, known from the header before any weight is
/// read: for the page to show, and to refuse a model the adapter cannot hold with the numbers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamPlan {
    pub file_size: u64,
    /// Bytes of the file the load reads (all of it: the file's hash covers every byte).
    pub read_bytes: u64,
    /// Bytes of GPU buffers the weights take.
    pub gpu_bytes: u64,
    /// The largest buffer one part of a matrix takes, and the device's limit on it.
    pub largest_part: u64,
    pub max_binding: u64,
    pub max_buffer: u64,
    pub pieces: usize,
    /// The most bytes one piece holds (what the host holds of the weights at a time).
    pub largest_piece: u64,
}

/// A model uploaded to the GPU piece by piece: [`GpuStream::begin`] from the parsed header,
/// then [`GpuStream::put`] for each of [`GpuStream::pieces`] in order, then
/// [`GpuStream::finish`]. The pieces cover the whole file, whose SHA-256 the load computes.
pub struct GpuStream {
    file: ModelFile,
    gpu: Arc<GpuDevice>,
    builder: WeightsBuilder,
}

impl GpuStream {
    /// Plans the load: fails before anything is read when the model's shape, a tensor's type
    /// or one row of a tensor is beyond the device.
    pub fn begin(file: ModelFile, gpu: Arc<GpuDevice>, opts: &GpuOptions) -> Result<Self> {
        check_shape(&file.config)?;
        gpu.check()?;
        let builder = WeightsBuilder::plan(
            &file,
            &file.config,
            max_part(&gpu, opts),
            opts.piece_bytes(),
            true,
        )?;
        Ok(Self { file, gpu, builder })
    }

    pub fn file(&self) -> &ModelFile {
        &self.file
    }

    pub fn device(&self) -> &GpuDevice {
        &self.gpu
    }

    pub fn plan(&self) -> StreamPlan {
        let pieces = self.builder.pieces();
        StreamPlan {
            file_size: self.file.file_size,
            read_bytes: pieces.iter().map(|p| p.len).sum(),
            gpu_bytes: self.builder.gpu_bytes,
            largest_part: self.builder.largest_part,
            max_binding: self.gpu.limits.max_storage_buffer_binding_size,
            max_buffer: self.gpu.limits.max_buffer_size,
            pieces: pieces.len(),
            largest_piece: pieces.iter().map(|p| p.len).max().unwrap_or(0),
        }
    }

    /// The byte ranges to read, in order.
    pub fn pieces(&self) -> &[Piece] {
        self.builder.pieces()
    }

    /// Pieces taken so far.
    pub fn done(&self) -> usize {
        self.builder.done()
    }

    /// Takes the next piece's bytes and uploads them; a piece shorter than planned (a
    /// truncated file) fails naming its tensor, before anything after it is read.
    pub fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.builder.put(&self.gpu, bytes)
    }

    /// Reads every piece from `reader`, the file `begin` was given the header of, and
    /// finishes: the command line's streamed load. `progress(done, total)` after each piece.
    pub fn read_all<R: Read + Seek>(
        mut self,
        reader: &mut R,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(GpuLlama, ModelFile, String)> {
        self.builder.read_from(&self.gpu, reader, progress)?;
        self.finish()
    }

    /// The model on the GPU, its header and the file's SHA-256, once every piece is in.
    pub fn finish(self) -> Result<(GpuLlama, ModelFile, String)> {
        let sha256 = self.builder.sha256().unwrap_or_default();
        let c = self.file.config.clone();
        let weights = self.builder.finish(c.n_layers)?;
        let model = GpuLlama::with_weights(c, self.gpu, weights)?;
        Ok((model, self.file, sha256))
    }
}
