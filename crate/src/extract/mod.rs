//! Entities → prompts → token batches → per-layer activations.
//!
//! For each entity the prompt template is filled in (`{name}` marks where the name goes), the
//! prompt is tokenized, and the residual stream is read at the entity's last token (or averaged
//! over the entity's tokens). Entities are sorted by length into batches so that padding stays
//! small; results return in the input order, and batching never changes them.

pub mod acts;

use crate::error::{Error, Result};
use crate::model::tokenizer::Tokenizer;
use crate::model::{to_flat, Llama};

pub const DEFAULT_TEMPLATE: &str = "{name}";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The residual stream at the entity name's last token.
    Last,
    /// The mean over the entity name's tokens.
    Mean,
}

impl std::str::FromStr for Pool {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last" => Ok(Pool::Last),
            "mean" => Ok(Pool::Mean),
            other => Err(Error::Input(format!(
                "pool '{other}': use 'last' or 'mean'"
            ))),
        }
    }
}

/// A prompt template with exactly one `{name}`.
#[derive(Debug, Clone)]
pub struct Template {
    pub text: String,
}

impl Template {
    pub fn new(text: &str) -> Result<Self> {
        match text.matches("{name}").count() {
            1 => Ok(Self { text: text.into() }),
            0 => Err(Error::Input(format!(
                "prompt template '{text}' has no {{name}} placeholder"
            ))),
            n => Err(Error::Input(format!(
                "prompt template '{text}' has {n} {{name}} placeholders; use exactly one"
            ))),
        }
    }

    /// The prompt and the byte range the name occupies in it.
    pub fn render(&self, name: &str) -> (String, std::ops::Range<usize>) {
        let start = self.text.find("{name}").unwrap_or(0);
        let prompt = self.text.replacen("{name}", name, 1);
        (prompt, start..start + name.len())
    }
}

/// One entity, tokenized: the prompt's ids and which of them belong to the name.
#[derive(Debug, Clone)]
pub struct EntityTokens {
    pub ids: Vec<u32>,
    /// Index range of the name's tokens within `ids`.
    pub span: std::ops::Range<usize>,
}

impl EntityTokens {
    /// The first token of the name (not of the prompt): the control task's input.
    pub fn first_token(&self) -> u32 {
        self.ids[self.span.start]
    }
}

/// Batches of entity indices, shortest prompts first, so that padding within a batch stays
/// small. Every engine runs entities in this order; results land in input order regardless.
pub fn plan_batches(entities: &[EntityTokens], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..entities.len()).collect();
    order.sort_by_key(|&i| entities[i].ids.len());
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// Tokenizes every entity; names that cannot be used are errors naming the entity.
pub fn tokenize_entities(
    tok: &Tokenizer,
    names: &[String],
    template: &Template,
    context_length: usize,
) -> Result<Vec<EntityTokens>> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if name.trim().is_empty() {
                return Err(Error::Input(format!(
                    "entity {} has an empty name",
                    i + 1
                )));
            }
            let (prompt, range) = template.render(name);
            let enc = tok.encode_prompt(&prompt)?;
            if enc.ids.len() > context_length {
                return Err(Error::Input(format!(
                    "entity {} ('{}…') is {} tokens with the prompt; the model's context is {} tokens",
                    i + 1,
                    name.chars().take(40).collect::<String>(),
                    enc.ids.len(),
                    context_length
                )));
            }
            // Tokens whose text overlaps the name's bytes (BOS/EOS have empty ranges).
            let inside: Vec<usize> = enc
                .offsets
                .iter()
                .enumerate()
                .filter(|(_, &(s, e))| e > s && s < range.end && e > range.start)
                .map(|(j, _)| j)
                .collect();
            let span = match (inside.first(), inside.last()) {
                (Some(&a), Some(&b)) => a..b + 1,
                _ => {
                    return Err(Error::Input(format!(
                        "entity {} ('{name}') produced no tokens",
                        i + 1
                    )))
                }
            };
            Ok(EntityTokens { ids: enc.ids, span })
        })
        .collect()
}

/// Per-layer vectors, row-major `[layers + 1][entities][d_model]`.
#[derive(Debug, Clone)]
pub struct Activations {
    pub n_layers: usize,
    pub n_entities: usize,
    pub d_model: usize,
    pub data: Vec<f32>,
    pub tokens_per_entity: Vec<u32>,
    /// Each entity name's first token id (the control task's input); empty when unknown.
    pub first_token_ids: Vec<u32>,
}

impl Activations {
    pub fn zeros(n_layers: usize, n_entities: usize, d_model: usize) -> Self {
        Self {
            n_layers,
            n_entities,
            d_model,
            data: vec![0.0; (n_layers + 1) * n_entities * d_model],
            tokens_per_entity: vec![0; n_entities],
            first_token_ids: vec![0; n_entities],
        }
    }

    pub fn vector(&self, layer: usize, entity: usize) -> &[f32] {
        let at = (layer * self.n_entities + entity) * self.d_model;
        &self.data[at..at + self.d_model]
    }

    fn vector_mut(&mut self, layer: usize, entity: usize) -> &mut [f32] {
        let at = (layer * self.n_entities + entity) * self.d_model;
        &mut self.data[at..at + self.d_model]
    }

    /// All entities at one layer, `[entities][d_model]`.
    pub fn layer(&self, layer: usize) -> &[f32] {
        let n = self.n_entities * self.d_model;
        &self.data[layer * n..(layer + 1) * n]
    }
}

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub pool: Pool,
    /// Entities per forward pass.
    pub batch_size: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            pool: Pool::Last,
            batch_size: 64,
        }
    }
}

/// Progress after each batch: entities done, total, tokens done. Return `false` to cancel.
pub type Progress<'a> = dyn FnMut(usize, usize, usize) -> bool + 'a;

/// Runs the model over all entities. Cancelling returns [`Error::Cancelled`].
pub fn extract(
    model: &Llama,
    entities: &[EntityTokens],
    opts: &ExtractOptions,
    progress: &mut Progress,
) -> Result<Activations> {
    let mut acts = Activations::zeros(model.config.n_layers, entities.len(), model.config.d_model);
    let mut done = 0;
    let mut tokens = 0;
    for chunk in &plan_batches(entities, opts.batch_size) {
        extract_batch(model, entities, chunk, opts.pool, &mut acts)?;
        done += chunk.len();
        tokens += chunk.iter().map(|&i| entities[i].ids.len()).sum::<usize>();
        if !progress(done, entities.len(), tokens) {
            return Err(Error::Cancelled);
        }
    }
    Ok(acts)
}

/// One forward pass over the entities `which`, returning their rows in batch order,
/// `[layers + 1][which.len()][d_model]`: what a shell that streams batches (to a cache, a
/// file, another thread) needs, without a buffer for every entity.
pub fn batch_rows(
    model: &Llama,
    entities: &[EntityTokens],
    which: &[usize],
    pool: Pool,
) -> Result<Vec<f32>> {
    let batch: Vec<EntityTokens> = which.iter().map(|&e| entities[e].clone()).collect();
    let order: Vec<usize> = (0..batch.len()).collect();
    let mut acts = Activations::zeros(model.config.n_layers, batch.len(), model.config.d_model);
    extract_batch(model, &batch, &order, pool, &mut acts)?;
    Ok(acts.data)
}

/// One forward pass over the entities `which`, writing their rows of `acts`.
pub fn extract_batch(
    model: &Llama,
    entities: &[EntityTokens],
    which: &[usize],
    pool: Pool,
    acts: &mut Activations,
) -> Result<()> {
    let d = model.config.d_model;
    let seqs: Vec<Vec<u32>> = which.iter().map(|&i| entities[i].ids.clone()).collect();
    let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
    model.forward_layers(&seqs, |layer, hidden| {
        let flat = to_flat(hidden)?;
        for (row, &e) in which.iter().enumerate() {
            let span = entities[e].span.clone();
            let at = |t: usize| &flat[(row * len + t) * d..(row * len + t + 1) * d];
            let out = acts.vector_mut(layer, e);
            match pool {
                Pool::Last => out.copy_from_slice(at(span.end - 1)),
                Pool::Mean => {
                    out.fill(0.0);
                    for t in span.clone() {
                        for (o, v) in out.iter_mut().zip(at(t)) {
                            *o += v;
                        }
                    }
                    let n = span.len() as f32;
                    out.iter_mut().for_each(|o| *o /= n);
                }
            }
        }
        Ok(())
    })?;
    for &e in which {
        acts.tokens_per_entity[e] = entities[e].ids.len() as u32;
        acts.first_token_ids[e] = entities[e].first_token();
    }
    Ok(())
}
