//! Does the model use its map? The causal test: edit the residual stream along the probe's
//! direction and read the model's own answer, against null edits of the same size.
//!
//! Read as its steps ([`CausalRun`]; `run::causal` runs it whole):
//! 1. the question (`readout`): each test entity's prompt, scored over candidate answers; before
//!    any edit, is the model better than chance at it? If not, nothing below can be read;
//! 2. dose and response: at layer L, add `Δ × (the edit that moves one target's probe reading
//!    by exactly 1 and the others by 0)` at the name's tokens and run blocks L+1.. to the head
//!    ([`Llama::resume`]; the layers before L run once). The answer's expected position should
//!    move with Δ;
//! 3. nulls: the same statistic for edits of the same norm along random directions, directions
//!    orthogonal to the probe's, and the control task's probe direction; the p-value ranks the
//!    probe's effect among them;
//! 4. erasure: project the probe's directions out at L, against random subspaces;
//! 5. side effects: the same edits on completions that have nothing to do with place or time.
//!
//! The edit arithmetic is in [`edit`], the question and its answers in [`readout`]; the
//! probe's raw-space directions come from [`crate::probe::directions`].

pub mod edit;
pub mod held;
pub mod readout;

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::data::{Dataset, TargetKind};
use crate::error::{Error, Result};
use crate::extract::{self, Forward, Pooling, Template};
use crate::model::forward::{log_softmax_at, log_sum_exp};
use crate::model::gguf::Config;
use crate::model::tokenizer::Tokenizer;
use crate::model::Llama;
use crate::probe::directions::ProbeDirections;
use crate::probe::metrics::{binomial_upper_tail, mean_ci95, pearson, rank_p_value, slope};
use crate::probe::report::{
    CausalAxis, CausalBaseline, CausalEntity, CausalReport, DoseEffect, Erasure, SideEffects,
};
use crate::probe::split::SplitMix64;
use held::Held;
use readout::Candidates;

/// Prompts whose completions have nothing to do with place or time (context TAB completion).
pub const UNRELATED_PROMPTS: &str = include_str!("unrelated_prompts.tsv");

/// Settings of the causal test. Defaults: the run's selected layer, the kind's question
/// ([`readout::default_readout`]) over every answer the training rows give, doses ±15, ±30,
/// ±60 degrees (±25, ±50, ±100 years), 20 random and 10 orthogonal null directions, 20 random
/// subspaces for erasure, every test entity.
#[derive(Clone, Debug, PartialEq)]
pub struct CausalOptions {
    pub readout: Option<String>,
    /// The dataset column whose values answer the question (default: continent or century).
    pub answer_column: Option<String>,
    /// Candidate answers (default: every value of the answer column among the training rows).
    pub candidates: Vec<String>,
    /// Units (degrees or years) to move the probe's reading by; empty: the kind's default.
    pub doses: Vec<f64>,
    pub n_random: usize,
    pub n_orthogonal: usize,
    pub n_erasure: usize,
    /// Edit at most this many test entities (0: all of them).
    pub max_entities: usize,
    /// Also edit the `window` layers after the first, each along its own layer's probe (0:
    /// the first layer alone).
    pub window: usize,
    pub seed: u64,
    pub batch_size: usize,
}

impl Default for CausalOptions {
    fn default() -> Self {
        Self {
            readout: None,
            answer_column: None,
            candidates: Vec::new(),
            doses: Vec::new(),
            n_random: 20,
            n_orthogonal: 10,
            n_erasure: 20,
            max_entities: 0,
            window: 0,
            seed: 0,
            batch_size: 64,
        }
    }
}

/// The default doses for a kind of target.
pub fn default_doses(kind: TargetKind) -> Vec<f64> {
    let unit = match kind {
        TargetKind::Space => 15.0,
        TargetKind::Time => 25.0,
    };
    [-4.0, -2.0, -1.0, 1.0, 2.0, 4.0]
        .iter()
        .map(|m| m * unit)
        .collect()
}

/// A change of the residual stream at the edited rows.
#[derive(Clone, Debug)]
enum Edit {
    None,
    Add(Vec<f64>),
    /// Project out an orthonormal basis.
    Erase(Vec<Vec<f64>>),
}

impl Edit {
    fn apply(&self, row: &mut [f32]) {
        match self {
            Edit::None => {}
            Edit::Add(delta) => edit::add(row, delta),
            Edit::Erase(basis) => edit::erase(row, basis),
        }
    }
}

/// One forward pass of the plan: an edit of the entities' prompts (read: candidate
/// probabilities) or of the unrelated prompts (read: completion log-probabilities), one edit
/// per layer of the window.
#[derive(Clone, Debug)]
enum Pass {
    Entities(Vec<Edit>),
    Unrelated(Vec<Edit>),
}

/// One window layer's edits: per target the unit shift of its probe reading, an orthonormal
/// basis of its probe's directions (for erasure and orthogonal nulls), and the control task's
/// unit shifts.
struct LayerEdits {
    shifts: Vec<Vec<f64>>,
    basis: Vec<Vec<f64>>,
    control: Option<Vec<Vec<f64>>>,
}

impl LayerEdits {
    fn new(dirs: &ProbeDirections) -> Result<Self> {
        Ok(Self {
            shifts: edit::unit_shifts(&dirs.probe.weights)?,
            basis: edit::orthonormal_basis(&dirs.probe.weights),
            control: match &dirs.control {
                Some(r) => Some(edit::unit_shifts(&r.weights)?),
                None => None,
            },
        })
    }
}

#[derive(Clone, Debug)]
enum Outcome {
    /// Per edited entity, the candidates' probabilities.
    Probs(Vec<Vec<f64>>),
    /// Per unrelated prompt, the completion's mean log-probability per token.
    LogP(Vec<f64>),
}

/// Where each planned pass sits in the plan.
#[derive(Clone, Debug, Default)]
struct Layout {
    base: usize,
    /// `[axis][dose]`.
    doses: Vec<Vec<usize>>,
    /// `[axis]` → (−D, +D).
    probe: Vec<[usize; 2]>,
    /// `[axis][null]` → (−D, +D): random, then orthogonal, then the control task's.
    nulls: Vec<Vec<[usize; 2]>>,
    erase: usize,
    erase_nulls: Vec<usize>,
    side_base: usize,
    side_probe: Vec<usize>,
    side_random: Vec<usize>,
}

/// One job for an engine: run blocks `from + 1..=to` on these (edited) rows and return the
/// residual stream after block `to` at `read_rows` (`[reads, d_model]`). A pass over a window
/// of layers is one job per layer: every row comes back from each but the last, to be edited
/// at the next layer.
pub struct Job<'a> {
    pub from: usize,
    pub to: usize,
    pub seqs: &'a [Vec<u32>],
    /// Packed `[Σ len, d_model]`, the edit applied.
    pub rows: Vec<f32>,
    pub read_rows: &'a [usize],
}

/// The causal test as a plan of forward passes that any engine can run one job at a time
/// ([`CausalRun::next_job`], [`CausalRun::record`]), so a shell can report progress, honour
/// Cancel between passes and await a GPU; [`CausalRun::finish`] turns the outcomes into the
/// report. Every edit is fixed (seeded) before the first pass.
pub struct CausalRun {
    layer: usize,
    /// The edited layers: `layer..layer + window`.
    window: usize,
    n_layers: usize,
    d: usize,
    positions: Pooling,
    readout: String,
    column: String,
    cands: Candidates,
    doses: Vec<f64>,
    top: f64,
    target_names: Vec<String>,
    /// Per axis, the norm of the edit that moves its reading by one unit.
    unit_norms: Vec<f64>,
    /// The edited entities (dataset rows) and their targets.
    rows: Vec<usize>,
    names: Vec<String>,
    targets: Vec<Vec<f64>>,
    truth: Vec<Option<usize>>,
    /// Entity prompts in batches, then the unrelated prompts (last).
    held: Vec<Held>,
    /// Each unrelated prompt's completion tokens.
    completions: Vec<Vec<u32>>,
    plan: Vec<Pass>,
    layout: Layout,
    n_random: usize,
    n_orthogonal: usize,
    has_control: bool,
    /// The next job: pass index, batch and window layer within it, the rows the last stage
    /// returned, and the batch outcomes so far.
    next_pass: usize,
    next_batch: usize,
    next_stage: usize,
    stage_rows: Option<Vec<f32>>,
    partial: Vec<Vec<f64>>,
    outcomes: Vec<Outcome>,
    /// The LM head's candidate rows and whole matrix, dequantized once when first needed.
    candidate_head: Option<Tensor>,
    full_head: Option<Tensor>,
}

impl CausalRun {
    /// Checks the inputs and plans every pass: the question, the doses on each axis, the null
    /// directions, the erasures and the side-effect passes. `dirs` are the probes of the
    /// edited layers, consecutive from the first (one layer, or a window). No model runs here.
    pub fn new(
        config: &Config,
        tokenizer: &Tokenizer,
        dataset: &Dataset,
        dirs: &[ProbeDirections],
        pooling: Pooling,
        opts: &CausalOptions,
    ) -> Result<Self> {
        let first = dirs
            .first()
            .ok_or_else(|| Error::Input("the causal test needs a layer to edit".into()))?;
        let (d, layer) = (config.d_model, first.layer);
        let last = layer + dirs.len() - 1;
        if last > config.n_layers {
            return Err(Error::Input(format!(
                "layer {last} is out of range: this model has layers 0..={}",
                config.n_layers
            )));
        }
        for (i, l) in dirs.iter().enumerate() {
            if l.layer != layer + i || l.test != first.test || l.train != first.train {
                return Err(Error::Input(format!(
                    "the probes of a window must be of consecutive layers on one split; got \
                     layer {} after layer {layer}",
                    l.layer
                )));
            }
            if l.probe.weights.iter().any(|w| w.len() != d) {
                return Err(Error::Input(format!(
                    "the probe has {} dimensions but the model's residual stream has {d}: the \
                     run's probes come from another model",
                    l.probe.weights[0].len()
                )));
            }
        }
        let (default_template, default_column) = readout::default_readout(dataset.kind);
        let template = Template::new(opts.readout.as_deref().unwrap_or(default_template))
            .map_err(|e| Error::Input(format!("the readout question: {e}")))?;
        let column = opts.answer_column.as_deref().unwrap_or(default_column);
        let cands = Candidates::new(
            tokenizer,
            dataset,
            column,
            &opts.candidates,
            &template.text,
            &first.train,
        )?;
        let doses = if opts.doses.is_empty() {
            default_doses(dataset.kind)
        } else {
            opts.doses.clone()
        };
        let top = doses.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if top == 0.0 || doses.iter().any(|v| !v.is_finite()) {
            return Err(Error::Input(
                "the doses must be finite and not all zero".into(),
            ));
        }
        let mut rng = SplitMix64::new(opts.seed ^ 0xCA05_A100);

        // The edited entities: the probe's test rows.
        let mut rows = first.test.clone();
        if opts.max_entities > 0 && rows.len() > opts.max_entities {
            rng.shuffle(&mut rows);
            rows.truncate(opts.max_entities);
            rows.sort_unstable();
        }
        if rows.iter().all(|&i| cands.truth[i].is_none()) {
            return Err(Error::Input(format!(
                "none of the {} edited entities has its answer among the candidates ({})",
                rows.len(),
                cands.names.join(", ")
            )));
        }
        let names: Vec<String> = rows.iter().map(|&i| dataset.names[i].clone()).collect();
        let entities =
            extract::tokenize_entities(tokenizer, &names, &template, config.context_length)?;
        // Each entity runs as its question followed by each of the answer tree's contexts,
        // edited at the name's tokens and read where the candidates part ways.
        let contexts = &cands.tree.contexts;
        let reads: Vec<Vec<usize>> = (0..contexts.len())
            .map(|c| cands.tree.offsets_in(c))
            .collect();
        let per_batch = (opts.batch_size / contexts.len()).max(1);
        let mut held: Vec<Held> = Vec::new();
        for (chunk, chunk_names) in entities.chunks(per_batch).zip(names.chunks(per_batch)) {
            let (mut seqs, mut edit_at, mut read_at) = (Vec::new(), Vec::new(), Vec::new());
            for (e, name) in chunk.iter().zip(chunk_names) {
                if e.ids.len() + contexts.iter().map(Vec::len).max().unwrap_or(0)
                    > config.context_length
                {
                    return Err(Error::Input(format!(
                        "'{}' with the question and its longest answer does not fit the \
                         model's context of {} tokens",
                        name, config.context_length
                    )));
                }
                let question_end = e.ids.len() - 1;
                for (context, offsets) in contexts.iter().zip(&reads) {
                    seqs.push([e.ids.as_slice(), context].concat());
                    edit_at.push(match pooling {
                        Pooling::Last => vec![e.span.end - 1],
                        Pooling::Mean => e.span.clone().collect(),
                    });
                    read_at.push(offsets.iter().map(|o| question_end + o).collect());
                }
            }
            held.push(Held::new(seqs, edit_at, &read_at));
        }
        let (unrelated, completions) = unrelated_prompts(tokenizer, config.context_length)?;
        held.push(unrelated);

        // The plan: every pass edits each window layer with that layer's own probe.
        let k = dirs[0].probe.weights.len();
        let per_layer: Vec<LayerEdits> = dirs.iter().map(LayerEdits::new).collect::<Result<_>>()?;
        let mut plan = vec![Pass::Entities(vec![Edit::None; dirs.len()])];
        let mut layout = Layout::default();
        let push = |plan: &mut Vec<Pass>, pass: Pass| {
            plan.push(pass);
            plan.len() - 1
        };
        // One edit per window layer: `f(layer's edits, its index)`.
        let each = |f: &dyn Fn(&LayerEdits, usize) -> Edit| -> Vec<Edit> {
            per_layer.iter().enumerate().map(|(i, l)| f(l, i)).collect()
        };
        let mut side_probe = Vec::new();
        let mut side_random = Vec::new();
        for t in 0..k {
            let along = |dose: f64| each(&|l, _| Edit::Add(edit::scaled(&l.shifts[t], dose)));
            layout.doses.push(
                doses
                    .iter()
                    .map(|&dose| push(&mut plan, Pass::Entities(along(dose))))
                    .collect(),
            );
            layout.probe.push([
                push(&mut plan, Pass::Entities(along(-top))),
                push(&mut plan, Pass::Entities(along(top))),
            ]);
            side_probe.push(along(-top));
            side_probe.push(along(top));
            // Null edits of the same norm as the probe's largest, layer by layer.
            let size: Vec<f64> = per_layer
                .iter()
                .map(|l| edit::norm(&l.shifts[t]) * top)
                .collect();
            let random: Vec<Vec<Vec<f64>>> = per_layer
                .iter()
                .map(|_| edit::random_directions(opts.n_random, d, &[], &mut rng))
                .collect();
            let orthogonal: Vec<Vec<Vec<f64>>> = per_layer
                .iter()
                .map(|l| edit::random_directions(opts.n_orthogonal, d, &l.basis, &mut rng))
                .collect();
            // Per null, its unit direction at each window layer.
            let mut nulls: Vec<Vec<Vec<f64>>> = Vec::new();
            for j in 0..opts.n_random {
                nulls.push(random.iter().map(|r| r[j].clone()).collect());
            }
            for j in 0..opts.n_orthogonal {
                nulls.push(orthogonal.iter().map(|o| o[j].clone()).collect());
            }
            if per_layer.iter().all(|l| l.control.is_some()) {
                nulls.push(
                    per_layer
                        .iter()
                        .map(|l| {
                            let c = &l.control.as_ref().expect("checked above")[t];
                            edit::scaled(c, 1.0 / edit::norm(c))
                        })
                        .collect(),
                );
            }
            let sized = |u: &[Vec<f64>], sign: f64| {
                each(&|_, i| Edit::Add(edit::scaled(&u[i], sign * size[i])))
            };
            side_random.extend(nulls[..opts.n_random].iter().map(|u| sized(u, 1.0)));
            layout.nulls.push(
                nulls
                    .iter()
                    .map(|u| {
                        [
                            push(&mut plan, Pass::Entities(sized(u, -1.0))),
                            push(&mut plan, Pass::Entities(sized(u, 1.0))),
                        ]
                    })
                    .collect(),
            );
        }
        layout.erase = push(
            &mut plan,
            Pass::Entities(each(&|l, _| Edit::Erase(l.basis.clone()))),
        );
        let subspaces: Vec<Vec<Vec<Vec<f64>>>> = per_layer
            .iter()
            .map(|l| edit::random_subspaces(opts.n_erasure, l.basis.len(), d, &mut rng))
            .collect();
        layout.erase_nulls = (0..opts.n_erasure)
            .map(|j| {
                let erase = each(&|_, i| Edit::Erase(subspaces[i][j].clone()));
                push(&mut plan, Pass::Entities(erase))
            })
            .collect();
        layout.side_base = push(&mut plan, Pass::Unrelated(vec![Edit::None; dirs.len()]));
        layout.side_probe = side_probe
            .into_iter()
            .map(|e| push(&mut plan, Pass::Unrelated(e)))
            .collect();
        layout.side_random = side_random
            .into_iter()
            .map(|e| push(&mut plan, Pass::Unrelated(e)))
            .collect();

        Ok(Self {
            layer,
            window: dirs.len(),
            n_layers: config.n_layers,
            d,
            positions: pooling,
            readout: template.text.clone(),
            column: column.to_lowercase(),
            truth: rows.iter().map(|&i| cands.truth[i]).collect(),
            targets: rows.iter().map(|&i| dataset.targets[i].clone()).collect(),
            cands,
            doses,
            top,
            target_names: first.target_names.clone(),
            unit_norms: per_layer[0].shifts.iter().map(|s| edit::norm(s)).collect(),
            rows,
            names,
            held,
            completions,
            plan,
            layout,
            n_random: opts.n_random,
            n_orthogonal: opts.n_orthogonal,
            has_control: dirs.iter().all(|l| l.control.is_some()),
            next_pass: 0,
            next_batch: 0,
            next_stage: 0,
            stage_rows: None,
            partial: Vec::new(),
            outcomes: Vec::new(),
            candidate_head: None,
            full_head: None,
        })
    }

    /// Forward passes planned, and done so far.
    pub fn passes(&self) -> usize {
        self.plan.len()
    }

    pub fn passes_done(&self) -> usize {
        self.outcomes.len()
    }

    /// The prompt batches to run to the edited layer before any pass: give each one's packed
    /// rows to [`CausalRun::set_hidden`].
    pub fn prompt_batches(&self) -> Vec<&[Vec<u32>]> {
        self.held.iter().map(|h| h.seqs.as_slice()).collect()
    }

    pub fn layer(&self) -> usize {
        self.layer
    }

    pub fn set_hidden(&mut self, batch: usize, rows: Vec<f32>) -> Result<()> {
        let d = self.d;
        self.held
            .get_mut(batch)
            .ok_or_else(|| Error::Input(format!("no prompt batch {batch}")))?
            .set_hidden(rows, d)
    }

    /// Runs every prompt batch to the edited layer on `engine` (the CPU or GPU model).
    pub fn hold(&mut self, engine: &dyn Forward) -> Result<()> {
        for i in 0..self.held.len() {
            let rows = engine.hidden_rows(&self.held[i].seqs, self.layer)?;
            self.set_hidden(i, rows)?;
        }
        Ok(())
    }

    /// The batch the next job runs on, and the pass's edits.
    fn job_batch(&self) -> Option<(usize, &[Edit])> {
        match self.plan.get(self.next_pass)? {
            Pass::Entities(e) => Some((self.next_batch, e)),
            Pass::Unrelated(e) => Some((self.held.len() - 1, e)),
        }
    }

    /// The next job, or None when every pass is done.
    pub fn next_job(&self) -> Result<Option<Job<'_>>> {
        let Some((b, edits)) = self.job_batch() else {
            return Ok(None);
        };
        let h = &self.held[b];
        let stage = self.next_stage;
        let mut apply = |row: &mut [f32]| edits[stage].apply(row);
        let rows = match &self.stage_rows {
            None => h.edited(self.d, &mut apply)?,
            Some(rows) => h.edit_rows(rows.clone(), self.d, &mut apply),
        };
        let from = self.layer + stage;
        let last = stage + 1 == self.window;
        Ok(Some(Job {
            from,
            to: if last { self.n_layers } else { from + 1 },
            seqs: &h.seqs,
            rows,
            read_rows: if last { &h.read_rows } else { &h.all_rows },
        }))
    }

    /// Takes the next job's result: every row after the next window layer, or, from a pass's
    /// last job, the final residual stream before the final norm at the read rows (`[reads,
    /// d_model]`); `model` supplies the final norm and the LM head.
    pub fn record(&mut self, model: &Llama, rows: Vec<f32>) -> Result<()> {
        let d = self.d;
        let Some((b, _)) = self.job_batch() else {
            return Err(Error::Compute("every pass is already done".into()));
        };
        let last = self.next_stage + 1 == self.window;
        let reads = if last {
            self.held[b].read_rows.len()
        } else {
            self.held[b].all_rows.len()
        };
        if rows.len() != reads * d {
            return Err(Error::Compute(format!(
                "{} values for {reads} rows of width {d}",
                rows.len()
            )));
        }
        if !last {
            self.stage_rows = Some(rows);
            self.next_stage += 1;
            return Ok(());
        }
        (self.next_stage, self.stage_rows) = (0, None);
        let x = Tensor::from_vec(rows, (reads, d), &Device::Cpu)?;
        match &self.plan[self.next_pass] {
            Pass::Entities(_) => {
                let tree = &self.cands.tree;
                if self.candidate_head.is_none() {
                    self.candidate_head = Some(model.head_rows(Some(&tree.head_tokens))?);
                }
                let head = self.candidate_head.as_ref().expect("set above");
                let logits = model.head_logits(&x, head)?;
                // Where a candidate ends and another goes on, stopping is scored against the
                // whole vocabulary.
                let n = tree.n_reads();
                let stop_rows: Vec<u32> = (0..reads as u32)
                    .filter(|&r| tree.stops(r as usize % n))
                    .collect();
                let mut full_lse = vec![f64::NAN; reads];
                if !stop_rows.is_empty() {
                    if self.full_head.is_none() {
                        self.full_head = Some(model.head_rows(None)?);
                    }
                    let full = self.full_head.as_ref().expect("set above");
                    let idx = Tensor::new(stop_rows.as_slice(), &Device::Cpu)?;
                    let rows = model.head_logits(&x.index_select(&idx, 0)?, full)?;
                    for (&r, row) in stop_rows.iter().zip(&rows) {
                        full_lse[r as usize] = log_sum_exp(row.iter().map(|&v| v as f64));
                    }
                }
                for (entity, lse) in logits.chunks(n).zip(full_lse.chunks(n)) {
                    self.partial.push(tree.probabilities(entity, lse));
                }
                self.next_batch += 1;
                if self.next_batch == self.held.len() - 1 {
                    let probs = std::mem::take(&mut self.partial);
                    self.outcomes.push(Outcome::Probs(probs));
                    self.next_batch = 0;
                    self.next_pass += 1;
                }
            }
            Pass::Unrelated(_) => {
                if self.full_head.is_none() {
                    self.full_head = Some(model.head_rows(None)?);
                }
                let head = self.full_head.as_ref().expect("set above");
                let logits = model.head_logits(&x, head)?;
                let mut rows = logits.iter();
                let means = self
                    .completions
                    .iter()
                    .map(|tokens| {
                        tokens
                            .iter()
                            .zip(rows.by_ref())
                            .map(|(&tok, row)| log_softmax_at(row, tok))
                            .sum::<f64>()
                            / tokens.len() as f64
                    })
                    .collect();
                self.outcomes.push(Outcome::LogP(means));
                self.next_pass += 1;
            }
        }
        Ok(())
    }

    /// Runs the next job on `engine`; `model` gives the final norm and the LM head. False
    /// when every pass is done.
    pub fn step(&mut self, model: &Llama, engine: &dyn Forward) -> Result<bool> {
        let rows = match self.next_job()? {
            None => return Ok(false),
            Some(job) => {
                engine.resume_rows(job.seqs, job.from, job.to, &job.rows, job.read_rows)?
            }
        };
        self.record(model, rows)?;
        Ok(true)
    }

    fn probs(&self, pass: usize) -> &[Vec<f64>] {
        match &self.outcomes[pass] {
            Outcome::Probs(p) => p,
            Outcome::LogP(_) => &[],
        }
    }

    fn log_p(&self, pass: usize) -> &[f64] {
        match &self.outcomes[pass] {
            Outcome::LogP(v) => v,
            Outcome::Probs(_) => &[],
        }
    }

    /// The report, from every pass's outcome.
    pub fn finish(self) -> Result<CausalReport> {
        if self.outcomes.len() != self.plan.len() {
            return Err(Error::Compute(format!(
                "the causal test stopped after {} of {} passes",
                self.outcomes.len(),
                self.plan.len()
            )));
        }
        let l = &self.layout;
        let cands = &self.cands;
        let expected = |pass: usize| -> Vec<Vec<f64>> {
            self.probs(pass).iter().map(|p| cands.expected(p)).collect()
        };
        let p_true = |pass: usize| -> Vec<Option<f64>> {
            self.probs(pass)
                .iter()
                .zip(&self.truth)
                .map(|(p, t)| t.map(|t| p[t]))
                .collect()
        };
        let base = self.probs(l.base);
        let base_expected = expected(l.base);
        let base_p_true = p_true(l.base);
        let baseline = baseline(base, &self.truth, cands.names.len());
        // Per entity, the change on axis t of the answer's expected position under a pass.
        let change = |pass: usize, t: usize| -> Vec<f64> {
            expected(pass)
                .iter()
                .zip(&base_expected)
                .map(|(e, b)| e[t] - b[t])
                .collect()
        };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        // The statistic every direction is compared on: (mean at +D − mean at −D) / 2D.
        let effect = |[minus, plus]: [usize; 2], t: usize| -> f64 {
            (mean(&change(plus, t)) - mean(&change(minus, t))) / (2.0 * self.top)
        };
        // The mean norm of the residual stream at the edited tokens, to size the edits by.
        let norms: Vec<f64> = self.held[..self.held.len() - 1]
            .iter()
            .flat_map(|h| h.edited_row_norms(self.d))
            .collect();
        // (Each entity's rows are held once per context, all alike at the name's tokens, so
        // the mean is the same.)
        let stream_norm = mean(&norms);
        let mut axes = Vec::new();
        for (t, target) in self.target_names.iter().enumerate() {
            let (mut xs, mut ys) = (Vec::new(), Vec::new());
            let doses = self
                .doses
                .iter()
                .zip(&l.doses[t])
                .map(|(&dose, &pass)| {
                    let delta = change(pass, t);
                    let dp: Vec<f64> = p_true(pass)
                        .iter()
                        .zip(&base_p_true)
                        .filter_map(|(a, b)| Some(a.as_ref()? - b.as_ref()?))
                        .collect();
                    let (m, lo, hi) = mean_ci95(&delta);
                    xs.extend(std::iter::repeat_n(dose, delta.len()));
                    ys.extend(&delta);
                    DoseEffect {
                        dose,
                        mean_change: m,
                        ci_low: lo,
                        ci_high: hi,
                        mean_change_p_true: mean(&dp),
                    }
                })
                .collect();
            let nulls: Vec<f64> = l.nulls[t].iter().map(|&p| effect(p, t)).collect();
            let probe_effect = effect(l.probe[t], t);
            let (r, o) = (self.n_random, self.n_orthogonal);
            axes.push(CausalAxis {
                target: target.clone(),
                norm_per_unit: self.unit_norms[t],
                largest_edit_relative_norm: self.unit_norms[t] * self.top / stream_norm,
                doses,
                slope: slope(&xs, &ys),
                correlation: pearson(&xs, &ys),
                effect: probe_effect,
                p_value: rank_p_value(probe_effect, &nulls),
                null_random: nulls[..r].to_vec(),
                null_orthogonal: nulls[r..r + o].to_vec(),
                null_control_task: self.has_control.then(|| nulls[r + o]),
            });
        }
        let drop_of = |pass: usize| -> f64 {
            let drops: Vec<f64> = p_true(pass)
                .iter()
                .zip(&base_p_true)
                .filter_map(|(a, b)| Some(b.as_ref()? - a.as_ref()?))
                .collect();
            mean(&drops)
        };
        let drop_p_true = drop_of(l.erase);
        let null_drops: Vec<f64> = l.erase_nulls.iter().map(|&p| drop_of(p)).collect();
        let side_base = self.log_p(l.side_base);
        let mean_abs = |passes: &[usize]| -> f64 {
            let per: Vec<f64> = passes
                .iter()
                .map(|&p| {
                    let v = self.log_p(p);
                    mean(
                        &v.iter()
                            .zip(side_base)
                            .map(|(a, b)| (a - b).abs())
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            mean(&per)
        };
        let entities = (0..self.rows.len())
            .map(|j| CausalEntity {
                name: self.names[j].clone(),
                truth: self.targets[j].clone(),
                true_answer: self.truth[j].map(|t| cands.names[t].clone()),
                answer: cands.names[argmax(&base[j])].clone(),
                p_true: base_p_true[j],
                expected: base_expected[j].clone(),
                moved: l
                    .probe
                    .iter()
                    .map(|&[minus, plus]| [expected(minus)[j].clone(), expected(plus)[j].clone()])
                    .collect(),
            })
            .collect();
        Ok(CausalReport {
            layer: self.layer,
            edited_layers: (self.layer..self.layer + self.window).collect(),
            positions: match self.positions {
                Pooling::Last => "last".into(),
                Pooling::Mean => "all".into(),
            },
            readout: self.readout.clone(),
            answer_column: self.column.clone(),
            candidates: cands.names.clone(),
            candidate_tokens: cands.token_texts.clone(),
            n_entities: self.rows.len(),
            baseline,
            axes,
            erasure: Erasure {
                p_value: rank_p_value(drop_p_true, &null_drops),
                drop_p_true,
                null_drops,
            },
            side_effects: SideEffects {
                n_prompts: self.completions.len(),
                probe_mean_abs_change: mean_abs(&l.side_probe),
                random_mean_abs_change: mean_abs(&l.side_random),
            },
            entities,
            notes: notes(self.top),
        })
    }
}

/// The shipped unrelated prompts that fit the context, as one batch edited at each context's
/// last token and read at the positions that predict the completion; with the completions.
fn unrelated_prompts(tokenizer: &Tokenizer, context: usize) -> Result<(Held, Vec<Vec<u32>>)> {
    let (mut seqs, mut edit_at, mut read_at, mut completions) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for line in UNRELATED_PROMPTS.lines() {
        let Some((ctx, completion)) = line.split_once('\t') else {
            continue;
        };
        if ctx.starts_with('#') {
            continue;
        }
        let ctx = tokenizer.encode_prompt(ctx)?.ids;
        let comp = tokenizer.encode_text(completion)?;
        let n = ctx.len();
        if n == 0 || comp.is_empty() || n + comp.len() > context {
            continue;
        }
        edit_at.push(vec![n - 1]);
        read_at.push((n - 1..n - 1 + comp.len()).collect());
        completions.push(comp.clone());
        seqs.push([ctx, comp].concat());
    }
    if seqs.is_empty() {
        return Err(Error::Input(
            "none of the unrelated prompts fits the model's context".into(),
        ));
    }
    Ok((Held::new(seqs, edit_at, &read_at), completions))
}

fn argmax(p: &[f64]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Accuracy before any edit against the larger of uniform guessing and always naming the
/// commonest true answer, with its one-sided binomial p.
fn baseline(probs: &[Vec<f64>], truth: &[Option<usize>], n_candidates: usize) -> CausalBaseline {
    let scored: Vec<(usize, usize)> = probs
        .iter()
        .zip(truth)
        .filter_map(|(p, t)| t.map(|t| (argmax(p), t)))
        .collect();
    let n = scored.len();
    let correct = scored.iter().filter(|(a, t)| a == t).count();
    let mut counts = vec![0usize; n_candidates];
    for &(_, t) in &scored {
        counts[t] += 1;
    }
    let commonest = counts.iter().copied().max().unwrap_or(0) as f64 / n.max(1) as f64;
    let chance = commonest.max(1.0 / n_candidates as f64);
    let p_value = binomial_upper_tail(n, correct, chance);
    let p_true: Vec<f64> = probs
        .iter()
        .zip(truth)
        .filter_map(|(p, t)| t.map(|t| p[t]))
        .collect();
    CausalBaseline {
        accuracy: correct as f64 / n.max(1) as f64,
        chance,
        p_value,
        answerable: n > 0 && p_value < 0.05,
        mean_p_true: mean_ci95(&p_true).0,
    }
}

fn notes(top: f64) -> BTreeMap<String, String> {
    [
        (
            "causal.edit",
            "An edit asking for Δ adds Δ·Wᵀ(WWᵀ)⁻¹e_t at the name's tokens at layer L (W: the \
             probe's raw-space weights): the smallest change that moves target t's probe reading \
             by exactly Δ and the other targets' by none. Blocks after L run on the edited stream."
                .to_string(),
        ),
        (
            "causal.readout",
            "The answer: the question prompt scored over the candidates as the model would \
             write them, token by token, kept to the candidates: where candidates part ways, a \
             softmax over the tokens that continue one (and stopping, where one ends and another \
             goes on, against the whole vocabulary); a candidate's probability is the product \
             of the choices along its tokens (with distinct first tokens, the softmax over the \
             first tokens' logits). Its expected position is Σ p(answer) × the answer's \
             centroid over the training entities."
                .to_string(),
        ),
        (
            "causal.p_value",
            format!(
                "effect = (mean change at +{top} − mean change at −{top}) / {}; the p-value ranks \
                 it among the same statistic for edits of the same norm along random directions, \
                 directions orthogonal to the probe's, and the control task's probe direction \
                 (one-sided, floor 1 / (1 + nulls)).",
                2.0 * top
            ),
        ),
        (
            "causal.erasure",
            "The probe's directions projected out of the residual stream at the name's tokens \
             at L; the drop of the true answer's probability against random subspaces of the \
             same dimension."
                .to_string(),
        ),
        (
            "causal.side_effects",
            "Mean |change| of the mean log-probability per token of completions unrelated to \
             place or time (the project's unrelated_prompts.tsv), the edit added at the context's \
             last token, under the probe's ±largest edits and under the random null edits."
                .to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
