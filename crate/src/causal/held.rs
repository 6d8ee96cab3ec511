//! Prompts held at the edited layer: their residual stream computed once, then edited and run
//! on from there as often as the test asks. Rows are packed prompt after prompt (one row per
//! token), the layout both engines use, so an edit is a change of listed rows.

use crate::error::{Error, Result};

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
    /// Every packed row: what a window's stages pass on to the next layer.
    pub all_rows: Vec<usize>,
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
            all_rows: (0..total).collect(),
            hidden: None,
        }
    }

    pub fn n_rows(&self) -> usize {
        self.seqs.iter().map(Vec::len).sum()
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
        let x = self
            .hidden
            .clone()
            .ok_or_else(|| Error::Compute("the prompts were not run to the edited layer".into()))?;
        Ok(self.edit_rows(x, d, edit))
    }

    /// `rows` (this batch's packed rows at any layer) with `edit` applied to every edited row.
    pub fn edit_rows(
        &self,
        mut x: Vec<f32>,
        d: usize,
        edit: &mut dyn FnMut(&mut [f32]),
    ) -> Vec<f32> {
        for (ps, &o) in self.edit_at.iter().zip(&self.offsets) {
            for &p in ps {
                edit(&mut x[(o + p) * d..(o + p + 1) * d]);
            }
        }
        x
    }
}
