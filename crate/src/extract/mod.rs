//! Entities → prompts → token batches → per-layer activations.
//!
//! For each entity the prompt template is filled in (`{name}` marks where the name goes), the
//! prompt is tokenized, and the residual stream is read at the entity's last token (or averaged
//! over the entity's tokens). Entities are sorted by length into batches so that padding stays
//! small; results return in the input order, and batching never changes them.

pub mod acts;
pub mod import;
pub mod layers;
pub mod npy;
pub mod prompts;
pub mod surprisal;

use crate::error::{Error, Result};
use crate::model::gguf::Config;
use crate::model::tokenizer::Tokenizer;
use crate::model::{to_flat, Llama};

pub const DEFAULT_TEMPLATE: &str = "{name}";

/// Which of an entity's token positions make its vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The residual stream at the entity name's last token.
    #[default]
    Last,
    /// The mean over the entity name's tokens.
    Mean,
}

impl std::str::FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last" => Ok(Pooling::Last),
            "mean" => Ok(Pooling::Mean),
            other => Err(Error::Input(format!(
                "pooling '{other}': use 'last' or 'mean'"
            ))),
        }
    }
}

/// `last` or `mean`: the word files, reports and the command line use.
impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Last => "last",
            Pooling::Mean => "mean",
        })
    }
}

/// A prompt template with exactly one `{name}`, or one `{NAME}` for the name in capitals (one
/// of Gurnee & Tegmark's prompts).
#[derive(Debug, Clone)]
pub struct Template {
    pub text: String,
}

/// Where the name goes, as given.
const NAME: &str = "{name}";
/// Where the name goes, in capitals.
const NAME_UPPER: &str = "{NAME}";

impl Template {
    pub fn new(text: &str) -> Result<Self> {
        match text.matches(NAME).count() + text.matches(NAME_UPPER).count() {
            1 => Ok(Self { text: text.into() }),
            0 => Err(Error::Input(format!(
                "prompt template '{text}' has no {{name}} placeholder (or {{NAME}} for the name \
                 in capitals)"
            ))),
            n => Err(Error::Input(format!(
                "prompt template '{text}' has {n} {{name}} placeholders; use exactly one"
            ))),
        }
    }

    /// The prompt and the byte range the name occupies in it.
    pub fn render(&self, name: &str) -> (String, std::ops::Range<usize>) {
        let (placeholder, name) = if self.text.contains(NAME_UPPER) {
            (NAME_UPPER, name.to_uppercase())
        } else {
            (NAME, name.to_string())
        };
        let start = self.text.find(placeholder).unwrap_or(0);
        let prompt = self.text.replacen(placeholder, &name, 1);
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

/// How [`plan_batches`] groups prompts into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// One prompt length per batch: no padding, so an entity's vector does not depend on which
    /// others share its batch, and a list cut into shards (workers, machines) gives the very
    /// vectors of the whole list, bit for bit. The CPU's choice: a batch costs what its tokens
    /// cost.
    SameLength,
    /// The fewest batches, each padded to its longest prompt. The GPUs' choice: a submission
    /// costs about the same whatever its size (SwiftShader most of all), and their vectors are
    /// compared within a tolerance anyway.
    Padded,
}

/// Batches of entity indices, shortest prompts first. Every engine runs entities in this
/// order; results land in input order regardless.
pub fn plan_batches(
    entities: &[EntityTokens],
    batch_size: usize,
    batching: Batching,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..entities.len()).collect();
    order.sort_by_key(|&i| entities[i].ids.len());
    let size = batch_size.max(1);
    match batching {
        Batching::Padded => order.chunks(size).map(<[usize]>::to_vec).collect(),
        Batching::SameLength => order
            .chunk_by(|&a, &b| entities[a].ids.len() == entities[b].ids.len())
            .flat_map(|same_length| same_length.chunks(size))
            .map(<[usize]>::to_vec)
            .collect(),
    }
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

    /// Writes one batch's rows (`[layers + 1][which.len()][d_model]`, as [`batch_rows`]
    /// returns them) at the entities' places, with their token counts and first tokens.
    pub fn put_batch(
        &mut self,
        entities: &[EntityTokens],
        which: &[usize],
        rows: &[f32],
    ) -> Result<()> {
        let d = self.d_model;
        if rows.len() != (self.n_layers + 1) * which.len() * d {
            return Err(Error::Compute(format!(
                "a batch of {} entities gave {} values",
                which.len(),
                rows.len()
            )));
        }
        for layer in 0..=self.n_layers {
            for (i, &e) in which.iter().enumerate() {
                let at = (layer * which.len() + i) * d;
                self.vector_mut(layer, e).copy_from_slice(&rows[at..at + d]);
            }
        }
        for &e in which {
            self.tokens_per_entity[e] = entities[e].ids.len() as u32;
            self.first_token_ids[e] = entities[e].first_token();
        }
        Ok(())
    }

    /// All entities at one layer, `[entities][d_model]`.
    pub fn layer(&self, layer: usize) -> &[f32] {
        let n = self.n_entities * self.d_model;
        &self.data[layer * n..(layer + 1) * n]
    }
}

/// Entities per forward pass on a GPU (native or WebGPU): one command submission each, so wide
/// batches; the GPU model splits a batch further where it would pass its token limit.
pub const GPU_BATCH_SIZE: usize = 256;

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub pooling: Pooling,
    /// Entities per forward pass.
    pub batch_size: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            pooling: Pooling::Last,
            batch_size: 64,
        }
    }
}

/// Progress after each batch: entities done, total, tokens done. Return `false` to cancel.
pub type Progress<'a> = dyn FnMut(usize, usize, usize) -> bool + 'a;

/// A model that runs a batch of entities with the residual stream captured at every layer: the
/// CPU [`Llama`] and the GPU model implement it, so one batch loop ([`for_each_batch`]) serves
/// both.
pub trait Forward {
    /// The model's shape (layers, width).
    fn config(&self) -> &Config;
    /// How this model's batches are planned: by default one prompt length per batch, which
    /// makes the vectors independent of the batching.
    fn batching(&self) -> Batching {
        Batching::SameLength
    }
    /// One forward pass over `entities[which]`: rows `[layers + 1][which.len()][d_model]`,
    /// each entity's vector read as `pooling` says over its name's tokens.
    fn forward_batch(
        &self,
        entities: &[EntityTokens],
        which: &[usize],
        pooling: Pooling,
    ) -> Result<Vec<f32>>;
    /// The residual stream after `layer` at every token of `seqs`, packed prompt after prompt
    /// (`[Σ len, d_model]`): what the causal test holds and edits.
    fn hidden_rows(&self, seqs: &[Vec<u32>], layer: usize) -> Result<Vec<f32>>;
    /// Blocks `from + 1..=to` on packed (edited) rows: the residual stream after block `to`
    /// (the final one, before the final norm, when `to` is the last layer) at the packed rows
    /// `read_rows` (`[reads, d_model]`).
    fn resume_rows(
        &self,
        seqs: &[Vec<u32>],
        from: usize,
        to: usize,
        rows: &[f32],
        read_rows: &[usize],
    ) -> Result<Vec<f32>>;
}

impl Forward for Llama {
    fn config(&self) -> &Config {
        &self.config
    }
    fn hidden_rows(&self, seqs: &[Vec<u32>], layer: usize) -> Result<Vec<f32>> {
        Llama::hidden_rows(self, seqs, layer)
    }
    fn resume_rows(
        &self,
        seqs: &[Vec<u32>],
        from: usize,
        to: usize,
        rows: &[f32],
        read_rows: &[usize],
    ) -> Result<Vec<f32>> {
        Llama::resume_rows(self, seqs, from, to, rows, read_rows)
    }
    fn forward_batch(
        &self,
        entities: &[EntityTokens],
        which: &[usize],
        pooling: Pooling,
    ) -> Result<Vec<f32>> {
        let d = self.config.d_model;
        let mut rows = vec![0.0; (self.config.n_layers + 1) * which.len() * d];
        let mut seqs: Vec<Vec<u32>> = which.iter().map(|&i| entities[i].ids.clone()).collect();
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        // A lone one-token prompt makes one-row matrix products, which candle computes on
        // another path (matrix-vector) a few ulps away from the many-row one: run it twice, so
        // that its vector is the one any other batch gives it.
        if seqs.len() == 1 && len == 1 {
            seqs.push(seqs[0].clone());
        }
        self.forward_layers(&seqs, |layer, hidden| {
            let flat = to_flat(hidden)?;
            for (row, &e) in which.iter().enumerate() {
                let span = entities[e].span.clone();
                let at = |t: usize| &flat[(row * len + t) * d..(row * len + t + 1) * d];
                let at_out = (layer * which.len() + row) * d;
                let out = &mut rows[at_out..at_out + d];
                match pooling {
                    Pooling::Last => out.copy_from_slice(at(span.end - 1)),
                    Pooling::Mean => {
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
        Ok(rows)
    }
}

/// One forward pass over the entities `which`, returning their rows in batch order,
/// `[layers + 1][which.len()][d_model]`: what a shell that streams batches (to a cache, a
/// file, another thread) needs, without a buffer for every entity.
pub fn batch_rows(
    model: &dyn Forward,
    entities: &[EntityTokens],
    which: &[usize],
    pooling: Pooling,
) -> Result<Vec<f32>> {
    if let Some(&e) = which.iter().find(|&&e| e >= entities.len()) {
        return Err(Error::Input(format!(
            "entity {e} is not in the list of {}",
            entities.len()
        )));
    }
    model.forward_batch(entities, which, pooling)
}

/// Where [`for_each_batch`] hands each finished batch: `(which, rows)`.
pub type BatchSink<'a> = dyn FnMut(&[usize], &[f32]) -> Result<()> + 'a;

/// The batch loop, the one every engine and shell goes through: runs `model` over every entity
/// in [`plan_batches`] order and hands each finished batch to `sink(which, rows)` (rows as
/// [`batch_rows`] returns them). Cancelling through `progress` returns [`Error::Cancelled`].
pub fn for_each_batch(
    model: &dyn Forward,
    entities: &[EntityTokens],
    opts: &ExtractOptions,
    sink: &mut BatchSink,
    progress: &mut Progress,
) -> Result<()> {
    let (mut done, mut tokens) = (0, 0);
    for which in &plan_batches(entities, opts.batch_size, model.batching()) {
        let rows = batch_rows(model, entities, which, opts.pooling)?;
        sink(which, &rows)?;
        done += which.len();
        tokens += which.iter().map(|&i| entities[i].ids.len()).sum::<usize>();
        if !progress(done, entities.len(), tokens) {
            return Err(Error::Cancelled);
        }
    }
    Ok(())
}

/// Runs the model over all entities into one [`Activations`].
pub fn extract(
    model: &dyn Forward,
    entities: &[EntityTokens],
    opts: &ExtractOptions,
    progress: &mut Progress,
) -> Result<Activations> {
    let c = model.config();
    let mut acts = Activations::zeros(c.n_layers, entities.len(), c.d_model);
    for_each_batch(
        model,
        entities,
        opts,
        &mut |which, rows| acts.put_batch(entities, which, rows),
        progress,
    )?;
    Ok(acts)
}

/// Runs the model over all entities straight into an activation file, batch by batch, so a
/// dataset far larger than memory can be extracted: `writer` holds one batch at a time.
#[cfg(not(target_arch = "wasm32"))]
pub fn extract_to_file(
    model: &dyn Forward,
    entities: &[EntityTokens],
    opts: &ExtractOptions,
    writer: &mut acts::ActsWriter,
    progress: &mut Progress,
) -> Result<()> {
    for_each_batch(
        model,
        entities,
        opts,
        &mut |which, rows| writer.write_batch(entities, which, rows),
        progress,
    )
}
