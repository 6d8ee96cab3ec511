//! The llama forward pass on the CPU (candle), with the residual stream captured at every layer.
//!
//! Read top to bottom: weights, one block, the whole model. Weights stay quantized as GGUF blocks.
//! By default a linear layer dequantizes its matrix to f32 and runs one exact GEMM for the whole
//! batch; when the f32 copies fit the budget in [`LoadOptions`], they are kept between batches.
//! A model whose f32 copies do not fit (7B-class) multiplies on the quantized blocks instead,
//! through candle's SIMD kernels (llama.cpp's scheme: activations rounded to 8-bit blocks), which
//! saves dequantizing every matrix for every batch; [`Matmul`] chooses.
//!
//! Layer convention: layer 0 is the embedding output; layer i (1..=L) is the residual stream
//! after block i. Nothing passes through the final norm unless logits are asked for.

use std::io::{Read, Seek};
use std::sync::OnceLock;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};
use crate::model::gguf::{Config, ModelFile};

pub struct LoadOptions {
    /// Keep dequantized f32 weights between batches while their total stays under this many
    /// bytes. Faster for small models; 0 keeps only the quantized blocks.
    pub f32_cache_bytes: usize,
    pub matmul: Matmul,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            f32_cache_bytes: if cfg!(target_arch = "wasm32") {
                768 << 20
            } else {
                2 << 30
            },
            matmul: Matmul::Auto,
        }
    }
}

/// How a linear layer multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Matmul {
    /// Dequantize the weights to f32 and multiply exactly (the GPU engine's numbers).
    Exact,
    /// Multiply on the quantized blocks with 8-bit activations (llama.cpp's numbers; about
    /// 1e-3 relative from exact per layer).
    Quantized,
    /// Exact while the f32 copies fit `f32_cache_bytes`, quantized beyond (natively; in wasm
    /// always exact).
    #[default]
    Auto,
}

impl std::str::FromStr for Matmul {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "exact" => Ok(Self::Exact),
            "quantized" => Ok(Self::Quantized),
            "auto" => Ok(Self::Auto),
            other => Err(Error::Input(format!(
                "matmul '{other}': use 'exact', 'quantized' or 'auto'"
            ))),
        }
    }
}

/// A weight matrix `[out, in]` kept as GGUF blocks.
struct Linear {
    weight: QTensor,
    cached: Option<OnceLock<Tensor>>,
    /// Multiply on the blocks (see [`Matmul::Quantized`]).
    quantized: bool,
}

impl Linear {
    fn new(weight: QTensor, cache: bool, quantized: bool) -> Self {
        // candle's quantized kernels read only block types; f32/f16 weights multiply exactly.
        let quantized = quantized
            && !matches!(
                weight.dtype(),
                GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
            );
        Self {
            weight,
            cached: (cache && !quantized).then(OnceLock::new),
            quantized,
        }
    }

    fn dequantized(&self) -> Result<Tensor> {
        match &self.cached {
            Some(cell) => {
                if let Some(t) = cell.get() {
                    return Ok(t.clone());
                }
                let t = self.weight.dequantize(&Device::Cpu)?;
                Ok(cell.get_or_init(|| t).clone())
            }
            None => Ok(self.weight.dequantize(&Device::Cpu)?),
        }
    }

    /// `x [n, in] → [n, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.quantized {
            return quantized_matmul(&self.weight, x);
        }
        let w = self.dequantized()?;
        Ok(x.matmul(&w.t()?)?)
    }
}

/// `x [m, k] → x·wᵀ [m, n]` on `w`'s GGUF blocks: candle's `k_quants::matmul` (SIMD dot
/// products against activations rounded to 8-bit blocks, as llama.cpp does). Called directly
/// rather than through `QMatMul`, because on x86 candle keeps a second, repacked copy of every
/// Q8_0 and Q4_K matrix it multiplies, which would double a 7B model's memory.
fn quantized_matmul(w: &QTensor, x: &Tensor) -> Result<Tensor> {
    use candle_core::quantized::k_quants::{self as kq, GgmlType};
    fn run<T: GgmlType>(mkn: (usize, usize, usize), lhs: &[f32], data: &[u8]) -> Result<Vec<f32>> {
        let size = std::mem::size_of::<T>();
        if !data.len().is_multiple_of(size)
            || !(data.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
        {
            return Err(Error::Compute(
                "quantized blocks are not aligned for the SIMD kernels".into(),
            ));
        }
        // SAFETY: T is one of candle's `#[repr(C)]` block types, the bytes are a whole number
        // of blocks, aligned (checked above), and borrowed for this call only.
        let blocks =
            unsafe { std::slice::from_raw_parts(data.as_ptr() as *const T, data.len() / size) };
        let mut dst = vec![0f32; mkn.0 * mkn.2];
        kq::matmul(mkn, lhs, blocks, &mut dst)?;
        Ok(dst)
    }
    let (n, k) = w.shape().dims2()?;
    let m = x.elem_count() / k;
    let lhs = x.flatten_all()?.to_vec1::<f32>()?;
    let data = w.data()?;
    let mkn = (m, k, n);
    let out = match w.dtype() {
        GgmlDType::Q4_0 => run::<kq::BlockQ4_0>(mkn, &lhs, &data)?,
        GgmlDType::Q4_1 => run::<kq::BlockQ4_1>(mkn, &lhs, &data)?,
        GgmlDType::Q5_0 => run::<kq::BlockQ5_0>(mkn, &lhs, &data)?,
        GgmlDType::Q5_1 => run::<kq::BlockQ5_1>(mkn, &lhs, &data)?,
        GgmlDType::Q8_0 => run::<kq::BlockQ8_0>(mkn, &lhs, &data)?,
        GgmlDType::Q2K => run::<kq::BlockQ2K>(mkn, &lhs, &data)?,
        GgmlDType::Q3K => run::<kq::BlockQ3K>(mkn, &lhs, &data)?,
        GgmlDType::Q4K => run::<kq::BlockQ4K>(mkn, &lhs, &data)?,
        GgmlDType::Q5K => run::<kq::BlockQ5K>(mkn, &lhs, &data)?,
        GgmlDType::Q6K => run::<kq::BlockQ6K>(mkn, &lhs, &data)?,
        other => {
            return Err(Error::Compute(format!(
                "no quantized matmul for {other:?} weights"
            )))
        }
    };
    Ok(Tensor::from_vec(out, (m, n), &Device::Cpu)?)
}

struct Block {
    attn_norm: Tensor,
    wq: Linear,
    wk: Linear,
    wv: Linear,
    wo: Linear,
    ffn_norm: Tensor,
    w_gate: Linear,
    w_up: Linear,
    w_down: Linear,
}

pub struct Llama {
    pub config: Config,
    pub vocab_size: usize,
    embedding: QTensor,
    blocks: Vec<Block>,
    output_norm: Tensor,
    /// `output.weight`, or `None` when the head is tied to the embedding.
    output: Option<QTensor>,
}

impl Llama {
    /// How the blocks multiply, for the user: "exact" (f32) or "quantized" (8-bit activations).
    pub fn matmul(&self) -> Matmul {
        match self.blocks.first() {
            Some(b) if b.wq.quantized => Matmul::Quantized,
            _ => Matmul::Exact,
        }
    }
}

fn vector<R: Read + Seek>(file: &ModelFile, r: &mut R, name: &str) -> Result<Tensor> {
    Ok(file.tensor(r, name)?.dequantize(&Device::Cpu)?)
}

impl Llama {
    /// Loads the weights tensor by tensor from `reader` (the stream `file` was parsed from).
    pub fn load<R: Read + Seek>(
        file: &ModelFile,
        reader: &mut R,
        opts: &LoadOptions,
    ) -> Result<Self> {
        let c = &file.config;
        let linear_params = c.n_layers
            * (c.d_model * (c.n_heads + 2 * c.n_kv_heads) * c.head_dim
                + c.d_model * c.n_heads * c.head_dim
                + 3 * c.d_model * c.ffn_dim);
        let cache = linear_params * 4 <= opts.f32_cache_bytes;
        let quantized = match opts.matmul {
            Matmul::Exact => false,
            Matmul::Quantized => true,
            // The page keeps exact numbers (its WebGPU path's); natively, speed for 7B-class.
            Matmul::Auto => !cache && cfg!(not(target_arch = "wasm32")),
        };
        let mut blocks = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let mut lin = |n: &str| -> Result<Linear> {
                Ok(Linear::new(
                    file.tensor(reader, &format!("blk.{i}.{n}.weight"))?,
                    cache,
                    quantized,
                ))
            };
            let (wq, wk, wv, wo) = (
                lin("attn_q")?,
                lin("attn_k")?,
                lin("attn_v")?,
                lin("attn_output")?,
            );
            let (w_gate, w_up, w_down) = (lin("ffn_gate")?, lin("ffn_up")?, lin("ffn_down")?);
            blocks.push(Block {
                attn_norm: vector(file, reader, &format!("blk.{i}.attn_norm.weight"))?,
                ffn_norm: vector(file, reader, &format!("blk.{i}.ffn_norm.weight"))?,
                wq,
                wk,
                wv,
                wo,
                w_gate,
                w_up,
                w_down,
            });
        }
        let embedding = file.tensor(reader, "token_embd.weight")?;
        let vocab_size = embedding.shape().dims()[0];
        let output = if file.has_tensor("output.weight") {
            Some(file.tensor(reader, "output.weight")?)
        } else {
            None
        };
        Ok(Self {
            config: c.clone(),
            vocab_size,
            embedding,
            blocks,
            output_norm: vector(file, reader, "output_norm.weight")?,
            output,
        })
    }

    /// Runs a batch of token sequences (right-padded internally) and calls `on_layer(layer,
    /// hidden)` for layer 0..=L with `hidden` of shape `[batch, max_len, d_model]`. Rows past a
    /// sequence's length are padding and hold nothing meaningful. Causal attention means
    /// right-padding never changes the rows of real tokens.
    pub fn forward_layers(
        &self,
        sequences: &[Vec<u32>],
        on_layer: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        self.forward_until(sequences, self.config.n_layers, on_layer)
    }

    /// [`Llama::forward_layers`] that stops after layer `last` (no block past it runs).
    fn forward_until(
        &self,
        sequences: &[Vec<u32>],
        last: usize,
        mut on_layer: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let c = &self.config;
        let b = sequences.len();
        let len = sequences.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || len == 0 {
            return Err(Error::Input(
                "an empty batch or an empty token sequence".into(),
            ));
        }
        if len > c.context_length {
            return Err(Error::Input(format!(
                "a prompt of {len} tokens exceeds the model's context of {}",
                c.context_length
            )));
        }
        let mut ids = Vec::with_capacity(b * len);
        for s in sequences {
            if let Some(&bad) = s.iter().find(|&&t| t as usize >= self.vocab_size) {
                return Err(Error::Input(format!(
                    "token id {bad} is outside the vocabulary of {}",
                    self.vocab_size
                )));
            }
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(0u32, len - s.len()));
        }
        let ids = Tensor::from_vec(ids, b * len, &Device::Cpu)?;
        let mut x = self.embedding.embedding(&ids)?; // [b*len, d]
        on_layer(0, &x.reshape((b, len, c.d_model))?)?;

        let (cos, sin) = rope_tables(c, len)?;
        let mask = causal_mask(len, c.n_heads / c.n_kv_heads)?;
        for (i, block) in self.blocks.iter().enumerate().take(last) {
            x = self.block_forward(block, &x, b, len, &cos, &sin, &mask)?;
            on_layer(i + 1, &x.reshape((b, len, c.d_model))?)?;
        }
        Ok(())
    }

    /// The residual stream at `layer` for a batch, `[batch, max_len, d_model]` (right-padded as
    /// in [`Llama::forward_layers`]); no block after `layer` runs.
    pub fn hidden_at(&self, sequences: &[Vec<u32>], layer: usize) -> Result<Tensor> {
        self.check_layer(layer)?;
        let mut out = None;
        self.forward_until(sequences, layer, |l, hidden| {
            if l == layer {
                out = Some(hidden.clone());
            }
            Ok(())
        })?;
        out.ok_or_else(|| Error::Compute(format!("layer {layer} was not reached")))
    }

    /// Continues a batch from the residual stream at layer `from` (`[batch, len, d_model]`, as
    /// [`Llama::hidden_at`] gives it, possibly edited) through blocks `from + 1..=to`: the
    /// residual stream after block `to` (the final one, before the final norm, when `to` is the
    /// last layer). The causal test's edited forward pass.
    pub fn resume(&self, from: usize, to: usize, hidden: &Tensor) -> Result<Tensor> {
        self.resume_layers(from, to, hidden, |_, _| Ok(()))
    }

    /// [`Llama::resume`], calling `on_layer(i, hidden [batch, len, d_model])` after each block
    /// i in `from + 1..=to`.
    pub fn resume_layers(
        &self,
        from: usize,
        to: usize,
        hidden: &Tensor,
        mut on_layer: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        self.check_layer(to)?;
        if from > to {
            return Err(Error::Input(format!(
                "cannot run from layer {from} back to layer {to}"
            )));
        }
        let c = &self.config;
        let (b, len, d) = hidden.dims3()?;
        if d != c.d_model {
            return Err(Error::Input(format!(
                "a residual stream of width {d} for a model of width {}",
                c.d_model
            )));
        }
        let (cos, sin) = rope_tables(c, len)?;
        let mask = causal_mask(len, c.n_heads / c.n_kv_heads)?;
        let mut x = hidden.reshape((b * len, d))?;
        for (i, block) in self.blocks.iter().enumerate().take(to).skip(from) {
            x = self.block_forward(block, &x, b, len, &cos, &sin, &mask)?;
            on_layer(i + 1, &x.reshape((b, len, d))?)?;
        }
        Ok(x.reshape((b, len, d))?)
    }

    /// The residual stream after `layer` at every token of `seqs`, packed prompt after prompt
    /// (`[Σ len, d_model]`): the causal test's held rows. The pass pads the prompts to one
    /// length; padding never reaches real rows.
    pub fn hidden_rows(&self, seqs: &[Vec<u32>], layer: usize) -> Result<Vec<f32>> {
        let padded = self.hidden_at(seqs, layer)?;
        let (_, len, d) = padded.dims3()?;
        let all = padded.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(seqs.iter().map(Vec::len).sum::<usize>() * d);
        for (j, s) in seqs.iter().enumerate() {
            out.extend_from_slice(&all[j * len * d..(j * len + s.len()) * d]);
        }
        Ok(out)
    }

    /// Blocks `from + 1..=to` on packed rows (an edited copy of [`Llama::hidden_rows`]): the
    /// residual stream after block `to` at the packed rows `read_rows` (`[reads, d_model]`).
    pub fn resume_rows(
        &self,
        seqs: &[Vec<u32>],
        from: usize,
        to: usize,
        rows: &[f32],
        read_rows: &[usize],
    ) -> Result<Vec<f32>> {
        let d = self.config.d_model;
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut padded = vec![0f32; seqs.len() * len * d];
        let mut where_ = Vec::with_capacity(rows.len() / d.max(1));
        let mut r = 0;
        for (j, s) in seqs.iter().enumerate() {
            padded[j * len * d..(j * len + s.len()) * d]
                .copy_from_slice(&rows[r * d..(r + s.len()) * d]);
            where_.extend((0..s.len()).map(|p| (j, p)));
            r += s.len();
        }
        let x = Tensor::from_vec(padded, (seqs.len(), len, d), &Device::Cpu)?;
        let out = self.resume(from, to, &x)?.flatten_all()?.to_vec1::<f32>()?;
        let mut picked = Vec::with_capacity(read_rows.len() * d);
        for &row in read_rows {
            let (j, p) = *where_.get(row).ok_or_else(|| {
                Error::Input(format!("read row {row} is outside the batch of {r} rows"))
            })?;
            picked.extend_from_slice(&out[(j * len + p) * d..(j * len + p + 1) * d]);
        }
        Ok(picked)
    }

    fn check_layer(&self, layer: usize) -> Result<()> {
        if layer > self.config.n_layers {
            return Err(Error::Input(format!(
                "layer {layer} is out of range: this model has layers 0..={}",
                self.config.n_layers
            )));
        }
        Ok(())
    }

    /// The LM head's rows for `ids` (all of the vocabulary when `None`), dequantized:
    /// `[k, d_model]`. Keep it across calls of [`Llama::head_logits`]: dequantizing the whole
    /// head costs more than a short forward pass.
    pub fn head_rows(&self, ids: Option<&[u32]>) -> Result<Tensor> {
        let head = self.output.as_ref().unwrap_or(&self.embedding);
        let w = head.dequantize(&Device::Cpu)?;
        match ids {
            None => Ok(w),
            Some(ids) => {
                if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.vocab_size) {
                    return Err(Error::Input(format!(
                        "token id {bad} is outside the vocabulary of {}",
                        self.vocab_size
                    )));
                }
                let idx = Tensor::from_vec(ids.to_vec(), ids.len(), &Device::Cpu)?;
                Ok(w.index_select(&idx, 0)?)
            }
        }
    }

    /// Logits of final residual-stream rows `x [m, d_model]` (final norm, then `head [k,
    /// d_model]` from [`Llama::head_rows`]): `m` rows of `k` values.
    pub fn head_logits(&self, x: &Tensor, head: &Tensor) -> Result<Vec<Vec<f32>>> {
        let xn = candle_nn::ops::rms_norm(x, &self.output_norm, self.config.rms_eps as f32)?;
        Ok(xn.matmul(&head.t()?)?.to_vec2::<f32>()?)
    }

    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        blk: &Block,
        x: &Tensor,
        b: usize,
        len: usize,
        cos: &Tensor,
        sin: &Tensor,
        mask: &Tensor,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (h, kv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let group = h / kv;
        let eps = c.rms_eps as f32;

        // Attention. Heads h = kv_head * group + g share a KV head (llama.cpp's layout), so
        // queries reshape to [b, kv, group * len, hd] and meet their KV head without copies.
        let xn = candle_nn::ops::rms_norm(x, &blk.attn_norm, eps)?;
        let heads = |t: Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, len, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q = heads(blk.wq.forward(&xn)?, h)?;
        let k = heads(blk.wk.forward(&xn)?, kv)?;
        let v = heads(blk.wv.forward(&xn)?, kv)?;
        let q = candle_nn::rotary_emb::rope_i(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_i(&k, cos, sin)?;
        let q = q.reshape((b, kv, group * len, hd))?;
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
        let attn = probs
            .matmul(&v)?
            .reshape((b, h, len, hd))?
            .transpose(1, 2)?
            .reshape((b * len, h * hd))?;
        let x = (x + blk.wo.forward(&attn)?)?;

        // SwiGLU feed-forward.
        let xn = candle_nn::ops::rms_norm(&x, &blk.ffn_norm, eps)?;
        let gated = (candle_nn::ops::silu(&blk.w_gate.forward(&xn)?)? * blk.w_up.forward(&xn)?)?;
        Ok((x + blk.w_down.forward(&gated)?)?)
    }

    /// Natural-log probabilities of chosen tokens given the tokens before them: for sequence
    /// `s` and each position `p` in `positions[s]` (1 ≤ p < its length), ln p(seq[p] | seq[..p])
    /// from the final norm and the LM head at position p − 1 (log-softmax over the vocabulary
    /// in f64).
    pub fn token_log_probs(
        &self,
        sequences: &[Vec<u32>],
        positions: &[Vec<usize>],
    ) -> Result<Vec<Vec<f64>>> {
        if positions.len() != sequences.len() {
            return Err(Error::Input(format!(
                "{} position lists for {} sequences",
                positions.len(),
                sequences.len()
            )));
        }
        for (s, ps) in sequences.iter().zip(positions) {
            if let Some(&p) = ps.iter().find(|&&p| p == 0 || p >= s.len()) {
                return Err(Error::Input(format!(
                    "position {p} has no token before it in a sequence of {}",
                    s.len()
                )));
            }
        }
        let n_layers = self.config.n_layers;
        let mut rows: Vec<Tensor> = Vec::new();
        self.forward_layers(sequences, |layer, hidden| {
            if layer == n_layers {
                for (s, ps) in positions.iter().enumerate() {
                    let seq = hidden.get(s)?;
                    for &p in ps {
                        rows.push(seq.get(p - 1)?);
                    }
                }
            }
            Ok(())
        })?;
        let wanted: Vec<u32> = sequences
            .iter()
            .zip(positions)
            .flat_map(|(s, ps)| ps.iter().map(|&p| s[p]))
            .collect();
        let mut flat = Vec::with_capacity(wanted.len());
        if !rows.is_empty() {
            let x = Tensor::stack(&rows, 0)?;
            let logits = self.head_logits(&x, &self.head_rows(None)?)?;
            for (row, &tok) in logits.iter().zip(&wanted) {
                flat.push(log_softmax_at(row, tok));
            }
        }
        let mut it = flat.into_iter();
        Ok(positions
            .iter()
            .map(|ps| it.by_ref().take(ps.len()).collect())
            .collect())
    }

    /// Logits for the token after `tokens` (final norm + LM head, last position only).
    pub fn next_token_logits(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        let mut last = None;
        let n_layers = self.config.n_layers;
        self.forward_layers(&[tokens.to_vec()], |layer, hidden| {
            if layer == n_layers {
                last = Some(hidden.get(0)?.get(tokens.len() - 1)?.unsqueeze(0)?);
            }
            Ok(())
        })?;
        let last = last.ok_or_else(|| Error::Compute("no final layer".into()))?;
        let mut rows = self.head_logits(&last, &self.head_rows(None)?)?;
        Ok(rows.pop().unwrap_or_default())
    }
}

impl Llama {
    /// A model of the same architecture whose every tensor is redrawn at random with that
    /// tensor's own mean and standard deviation (seeded), then stored in the tensor's own
    /// quantization type: the "random-initialised model" control. It keeps the tokenizer and
    /// shapes, so anything it scores comes from architecture and token identity alone.
    pub fn random_like(&self, seed: u64) -> Result<Self> {
        // Each tensor gets its own stream, seeded from the model seed and the tensor's order.
        let mut next_seed = Normal::new(seed);
        let mut redraw = |q: &QTensor| -> Result<QTensor> {
            let t = q.dequantize(&Device::Cpu)?;
            let values = random_values(&t, &mut Normal::new(next_seed.next_u64()))?;
            let r = Tensor::from_vec(values, t.shape(), &Device::Cpu)?;
            Ok(QTensor::quantize(&r, q.dtype())?)
        };
        let redraw_vector = |t: &Tensor, seed: u64| -> Result<Tensor> {
            let values = random_values(t, &mut Normal::new(seed))?;
            Ok(Tensor::from_vec(values, t.shape(), &Device::Cpu)?)
        };
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            let lin = |l: &Linear,
                       redraw: &mut dyn FnMut(&QTensor) -> Result<QTensor>|
             -> Result<Linear> {
                Ok(Linear::new(
                    redraw(&l.weight)?,
                    l.cached.is_some(),
                    l.quantized,
                ))
            };
            blocks.push(Block {
                attn_norm: redraw_vector(&b.attn_norm, seed ^ 0xA77E_0000 ^ blocks.len() as u64)?,
                wq: lin(&b.wq, &mut redraw)?,
                wk: lin(&b.wk, &mut redraw)?,
                wv: lin(&b.wv, &mut redraw)?,
                wo: lin(&b.wo, &mut redraw)?,
                ffn_norm: redraw_vector(&b.ffn_norm, seed ^ 0xFF0E_0000 ^ blocks.len() as u64)?,
                w_gate: lin(&b.w_gate, &mut redraw)?,
                w_up: lin(&b.w_up, &mut redraw)?,
                w_down: lin(&b.w_down, &mut redraw)?,
            });
        }
        Ok(Self {
            config: self.config.clone(),
            vocab_size: self.vocab_size,
            embedding: redraw(&self.embedding)?,
            output_norm: redraw_vector(&self.output_norm, seed ^ 0x0E0E_0000)?,
            output: match &self.output {
                Some(o) => Some(redraw(o)?),
                None => None,
            },
            blocks,
        })
    }
}

/// Values drawn from N(mean(t), std(t)).
fn random_values(t: &Tensor, rng: &mut Normal) -> Result<Vec<f32>> {
    let v = t.flatten_all()?.to_vec1::<f32>()?;
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    let var = v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    Ok(v.iter()
        .map(|_| (mean + std * rng.sample()) as f32)
        .collect())
}

/// Standard normal numbers from splitmix64 + Box-Muller: seeded, the same on every platform.
struct Normal {
    state: u64,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Self {
            state: seed,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        // In (0, 1]: never 0, so the logarithm below is finite.
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u, v) = (self.uniform(), self.uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * v;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }
}

/// `ln softmax(row)[token]`, in f64.
pub fn log_softmax_at(row: &[f32], token: u32) -> f64 {
    row[token as usize] as f64 - log_sum_exp(row.iter().map(|&v| v as f64))
}

/// log Σ e^v, shifted by the maximum so that it neither overflows nor underflows.
pub fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// cos/sin of the rotary angles `pos * theta^(-2i/hd)`, shape `[len, hd/2]`.
fn rope_tables(c: &Config, len: usize) -> Result<(Tensor, Tensor)> {
    let half = c.head_dim / 2;
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for pos in 0..len {
        for i in 0..half {
            let freq = 1.0 / (c.rope_theta as f64).powf(2.0 * i as f64 / c.head_dim as f64);
            let angle = pos as f64 * freq;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (len, half), &Device::Cpu)?,
        Tensor::from_vec(sin, (len, half), &Device::Cpu)?,
    ))
}

/// Additive causal mask `[group * len, len]`: row r is query position r % len.
fn causal_mask(len: usize, group: usize) -> Result<Tensor> {
    let mask: Vec<f32> = (0..group * len)
        .flat_map(|r| {
            let q = r % len;
            (0..len).map(move |k| if k > q { f32::NEG_INFINITY } else { 0.0 })
        })
        .collect();
    Ok(Tensor::from_vec(mask, (group * len, len), &Device::Cpu)?.to_dtype(DType::F32)?)
}

/// Rows of `hidden [b, len, d]` as one flat f32 vector (row-major).
pub fn to_flat(hidden: &Tensor) -> Result<Vec<f32>> {
    Ok(hidden.flatten_all()?.to_vec1::<f32>()?)
}
