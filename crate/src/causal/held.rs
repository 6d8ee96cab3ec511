//! Prompts held at the edited layer: their residual stream computed once, then edited and run
//! on from there as often as the test asks. Rows are packed prompt after prompt (one row per
//! token), the layout both engines use, so an edit is a change of listed rows.

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::Llama;

/// A batch of prompts with the rows an edit changes and the rows whose next token is read.
#[derive(Clone, Debug)]
pub struct Held {
    pub seqs: Vec<Vec<u32>>,
    /// Packed row index of each prompt's first token.
    offsets: Vec<usize>,
    /// Per prompt, the positions an edit changes.
    edit_at: Vec<Vec<usize>>,
    /// Packed rows whose final residual stream is read, in order.
    pub read_rows: Vec<usize>,
    /// `[Σ len, d_model]` after the edited layer, once known.
    hidden: Option<Vec<f32>>,
}

impl Held {
    pub fn new(seqs: Vec<Vec<u32>>, edit_at: Vec<Vec<usize>>, read_at: &[Vec<usize>]) -> Self {
        let mut offsets = Vec::with_capacity(seqs.len());
        let mut total = 0;
        for s in &seqs {
            offsets.push(total);
            total += s.len();
        }
        let read_rows = read_at
            .iter()
            .zip(&offsets)
            .flat_map(|(ps, &o)| ps.iter().map(move |p| o + p))
            .collect();
        Self {
            seqs,
            offsets,
            edit_at,
            read_rows,
            hidden: None,
        }
    }

    pub fn n_rows(&self) -> usize {
        self.seqs.iter().map(Vec::len).sum()
    }

    pub fn has_hidden(&self) -> bool {
        self.hidden.is_some()
    }

    /// Sets the residual stream at the edited layer (`[Σ len, d]` packed rows, from any engine).
    pub fn set_hidden(&mut self, rows: Vec<f32>, d: usize) -> Result<()> {
        if rows.len() != self.n_rows() * d {
            return Err(Error::Compute(format!(
                "{} values for {} rows of width {d}",
                rows.len(),
                self.n_rows()
            )));
        }
        self.hidden = Some(rows);
        Ok(())
    }

    /// The norm of each edited row as held (before any edit).
    pub fn edited_row_norms(&self, d: usize) -> Vec<f64> {
        let Some(x) = &self.hidden else {
            return Vec::new();
        };
        self.edit_at
            .iter()
            .zip(&self.offsets)
            .flat_map(|(ps, &o)| {
                ps.iter().map(move |p| {
                    x[(o + p) * d..(o + p + 1) * d]
                        .iter()
                        .map(|&v| (v as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
            })
            .collect()
    }

    /// The held rows with `edit` applied to every edited row.
    pub fn edited(&self, d: usize, edit: &mut dyn FnMut(&mut [f32])) -> Result<Vec<f32>> {
        let mut x = self
            .hidden
            .clone()
            .ok_or_else(|| Error::Compute("the prompts were not run to the edited layer".into()))?;
        for (ps, &o) in self.edit_at.iter().zip(&self.offsets) {
            for &p in ps {
                edit(&mut x[(o + p) * d..(o + p + 1) * d]);
            }
        }
        Ok(x)
    }
}

/// The CPU engine's two steps on packed rows: the residual stream after `layer` of every token,
/// and blocks `layer + 1..` on (edited) rows, returning the final stream at `read_rows`
/// (`[reads, d]`). The CPU pass pads the prompts to one length; padding never reaches real rows.
pub fn cpu_hidden_rows(model: &Llama, seqs: &[Vec<u32>], layer: usize) -> Result<Vec<f32>> {
    let padded = model.hidden_at(seqs, layer)?;
    let (_, len, d) = padded.dims3()?;
    let all = padded.flatten_all()?.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(seqs.iter().map(Vec::len).sum::<usize>() * d);
    for (j, s) in seqs.iter().enumerate() {
        out.extend_from_slice(&all[j * len * d..(j * len + s.len()) * d]);
    }
    Ok(out)
}

pub fn cpu_final_rows(
    model: &Llama,
    seqs: &[Vec<u32>],
    layer: usize,
    rows: &[f32],
    read_rows: &[usize],
) -> Result<Vec<f32>> {
    let d = model.config.d_model;
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
    let out = model.resume(layer, &x)?.flatten_all()?.to_vec1::<f32>()?;
    let mut picked = Vec::with_capacity(read_rows.len() * d);
    for &row in read_rows {
        let (j, p) = where_[row];
        picked.extend_from_slice(&out[(j * len + p) * d..(j * len + p + 1) * d]);
    }
    Ok(picked)
}
