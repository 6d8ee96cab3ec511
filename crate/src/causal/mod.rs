//! Does the model use its map? The causal test: edit the residual stream along the probe's
//! direction and read the model's own answer, against null edits of the same size.
//!
//! Read as its steps ([`causal_test`]):
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
pub mod readout;

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};

use crate::data::{Dataset, TargetKind};
use crate::error::{Error, Result};
use crate::extract::{self, Pooling, Template};
use crate::model::tokenizer::Tokenizer;
use crate::model::Llama;
use crate::probe::directions::ProbeDirections;
use crate::probe::metrics::{binomial_upper_tail, mean_ci95, pearson, rank_p_value, slope};
use crate::probe::report::{
    CausalAxis, CausalBaseline, CausalEntity, CausalReport, DoseEffect, Erasure, SideEffects,
};
use crate::probe::split::SplitMix64;
use crate::probe::StageProgress;
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

/// What the test runs on.
pub struct CausalInputs<'a> {
    pub model: &'a Llama,
    pub tokenizer: &'a Tokenizer,
    pub dataset: &'a Dataset,
    pub directions: &'a ProbeDirections,
    /// How the probe's vectors were pooled: `last` edits the name's last token, `mean` every
    /// token of the name (adding δ to each moves their mean by δ).
    pub pooling: Pooling,
}

/// A change of the residual stream at the edit positions.
enum Edit<'a> {
    None,
    Add(&'a [f64]),
    Erase(&'a [Vec<f64>]),
}

impl Edit<'_> {
    fn apply(&self, row: &mut [f32]) {
        match self {
            Edit::None => {}
            Edit::Add(delta) => edit::add(row, delta),
            Edit::Erase(basis) => edit::erase(row, basis),
        }
    }
}

/// A batch of prompts held at layer L: the residual stream once, then any number of edits.
struct HeldBatch {
    hidden: Vec<f32>,
    b: usize,
    len: usize,
    /// Per prompt, the positions an edit changes and the positions whose next token is read.
    edit_at: Vec<Vec<usize>>,
    read_at: Vec<Vec<usize>>,
}

impl HeldBatch {
    fn new(
        model: &Llama,
        layer: usize,
        seqs: Vec<Vec<u32>>,
        edit_at: Vec<Vec<usize>>,
        read_at: Vec<Vec<usize>>,
    ) -> Result<Self> {
        let t = model.hidden_at(&seqs, layer)?;
        let (b, len, _) = t.dims3()?;
        Ok(Self {
            hidden: t.flatten_all()?.to_vec1::<f32>()?,
            b,
            len,
            edit_at,
            read_at,
        })
    }

    /// The final residual stream at every read position (prompt order), after `edit`.
    fn final_rows(&self, model: &Llama, layer: usize, edit: &Edit) -> Result<Tensor> {
        let d = model.config.d_model;
        let mut x = self.hidden.clone();
        for (j, positions) in self.edit_at.iter().enumerate() {
            for &p in positions {
                edit.apply(&mut x[(j * self.len + p) * d..(j * self.len + p + 1) * d]);
            }
        }
        let x = Tensor::from_vec(x, (self.b, self.len, d), &Device::Cpu)?;
        let out = model.resume(layer, &x)?;
        let mut rows = Vec::new();
        for (j, reads) in self.read_at.iter().enumerate() {
            for &p in reads {
                rows.push(out.get(j)?.get(p)?);
            }
        }
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// The edited forward passes of one test, counted for the progress bar (which may cancel).
struct Passes<'a, 'p> {
    model: &'a Llama,
    layer: usize,
    held: Vec<HeldBatch>,
    /// The LM head's rows of the candidates' tokens.
    head: Tensor,
    done: usize,
    total: usize,
    progress: &'a mut StageProgress<'p>,
}

impl Passes<'_, '_> {
    fn tick(&mut self) -> Result<()> {
        self.done += 1;
        if (self.progress)("causal", self.done, self.total) {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }

    /// Candidate probabilities of every edited entity under `edit`.
    fn answers(&mut self, edit: &Edit) -> Result<Vec<Vec<f64>>> {
        let mut out = Vec::new();
        for h in &self.held {
            let x = h.final_rows(self.model, self.layer, edit)?;
            for logits in self.model.head_logits(&x, &self.head)? {
                out.push(Candidates::probabilities(&logits));
            }
        }
        self.tick()?;
        Ok(out)
    }

    /// The answers' expected positions under the edit `delta`.
    fn expected(&mut self, cands: &Candidates, delta: &[f64]) -> Result<Vec<Vec<f64>>> {
        let probs = self.answers(&Edit::Add(delta))?;
        Ok(probs.iter().map(|p| cands.expected(p)).collect())
    }
}

/// Runs the causal test; `progress("causal", done, total)` counts edited forward passes and
/// may cancel.
pub fn causal_test(
    inputs: &CausalInputs,
    opts: &CausalOptions,
    progress: &mut StageProgress,
) -> Result<CausalReport> {
    let CausalInputs {
        model,
        tokenizer,
        dataset,
        directions: dirs,
        pooling,
    } = *inputs;
    let c = &model.config;
    let (d, layer) = (c.d_model, dirs.layer);
    if layer > c.n_layers {
        return Err(Error::Input(format!(
            "layer {layer} is out of range: this model has layers 0..={}",
            c.n_layers
        )));
    }
    if dirs.probe.weights.iter().any(|w| w.len() != d) {
        return Err(Error::Input(format!(
            "the probe has {} dimensions but the model's residual stream has {d}: the run's \
             probes come from another model",
            dirs.probe.weights[0].len()
        )));
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
        &dirs.train,
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
    let mut rows = dirs.test.clone();
    if opts.max_entities > 0 && rows.len() > opts.max_entities {
        rng.shuffle(&mut rows);
        rows.truncate(opts.max_entities);
        rows.sort_unstable();
    }
    let names: Vec<String> = rows.iter().map(|&i| dataset.names[i].clone()).collect();
    let entities = extract::tokenize_entities(tokenizer, &names, &template, c.context_length)?;
    let head = model.head_rows(Some(&cands.tokens))?;
    let batch = opts.batch_size.max(1);
    let mut held = Vec::new();
    for chunk in entities.chunks(batch) {
        held.push(HeldBatch::new(
            model,
            layer,
            chunk.iter().map(|e| e.ids.clone()).collect(),
            chunk
                .iter()
                .map(|e| match pooling {
                    Pooling::Last => vec![e.span.end - 1],
                    Pooling::Mean => e.span.clone().collect(),
                })
                .collect(),
            chunk.iter().map(|e| vec![e.ids.len() - 1]).collect(),
        )?);
    }

    let k = dirs.probe.weights.len();
    let n_null = opts.n_random + opts.n_orthogonal + usize::from(dirs.control.is_some());
    let total = 1 + k * (doses.len() + 2 + 2 * n_null) + 1 + opts.n_erasure + side_passes(k, opts);
    let mut run = Passes {
        model,
        layer,
        held,
        head,
        done: 0,
        total,
        progress,
    };
    let truth: Vec<Option<usize>> = rows.iter().map(|&i| cands.truth[i]).collect();
    let p_true = |probs: &[Vec<f64>]| -> Vec<Option<f64>> {
        probs
            .iter()
            .zip(&truth)
            .map(|(p, t)| t.map(|t| p[t]))
            .collect()
    };

    // 1. The question, before any edit.
    let base = run.answers(&Edit::None)?;
    let base_expected: Vec<Vec<f64>> = base.iter().map(|p| cands.expected(p)).collect();
    let base_p_true = p_true(&base);
    let baseline = baseline(&base, &truth, cands.names.len());

    // 2–3. Dose and response on each axis, then the nulls at the largest dose.
    let shifts = edit::unit_shifts(&dirs.probe.weights)?;
    let probe_basis = edit::orthonormal_basis(&dirs.probe.weights);
    let control_shifts = match &dirs.control {
        Some(r) => Some(edit::unit_shifts(&r.weights)?),
        None => None,
    };
    let mut axes = Vec::with_capacity(k);
    let mut moved: Vec<Vec<[Vec<f64>; 2]>> = vec![Vec::new(); rows.len()];
    let mut side_edits: Vec<Vec<f64>> = Vec::new();
    let mut side_random: Vec<Vec<f64>> = Vec::new();
    for t in 0..k {
        let unit_norm = edit::norm(&shifts[t]);
        let mut dose_effects = Vec::with_capacity(doses.len());
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for &dose in &doses {
            let probs = run.answers(&Edit::Add(&edit::scaled(&shifts[t], dose)))?;
            let expected: Vec<Vec<f64>> = probs.iter().map(|p| cands.expected(p)).collect();
            let delta: Vec<f64> = expected
                .iter()
                .zip(&base_expected)
                .map(|(e, b)| e[t] - b[t])
                .collect();
            let dp: Vec<f64> = p_true(&probs)
                .iter()
                .zip(&base_p_true)
                .filter_map(|(a, b)| Some(a.as_ref()? - b.as_ref()?))
                .collect();
            let (mean, lo, hi) = mean_ci95(&delta);
            xs.extend(std::iter::repeat_n(dose, delta.len()));
            ys.extend(&delta);
            dose_effects.push(DoseEffect {
                dose,
                mean_change: mean,
                ci_low: lo,
                ci_high: hi,
                mean_change_p_true: mean_ci95(&dp).0,
            });
        }
        // The statistic every direction is compared on: (mean at +D − mean at −D) / 2D.
        let effect_of = |minus: &[Vec<f64>], plus: &[Vec<f64>]| -> f64 {
            let m = |e: &[Vec<f64>]| {
                e.iter()
                    .zip(&base_expected)
                    .map(|(e, b)| e[t] - b[t])
                    .sum::<f64>()
                    / e.len() as f64
            };
            (m(plus) - m(minus)) / (2.0 * top)
        };
        let probe_minus = run.expected(&cands, &edit::scaled(&shifts[t], -top))?;
        let probe_plus = run.expected(&cands, &edit::scaled(&shifts[t], top))?;
        let effect = effect_of(&probe_minus, &probe_plus);
        for (e, (m, p)) in moved.iter_mut().zip(probe_minus.iter().zip(&probe_plus)) {
            e.push([m.clone(), p.clone()]);
        }
        side_edits.push(edit::scaled(&shifts[t], -top));
        side_edits.push(edit::scaled(&shifts[t], top));
        let size = unit_norm * top;
        let null_effect = |u: &[f64], run: &mut Passes| -> Result<f64> {
            let minus = run.expected(&cands, &edit::scaled(u, -size))?;
            let plus = run.expected(&cands, &edit::scaled(u, size))?;
            Ok(effect_of(&minus, &plus))
        };
        let random = edit::random_directions(opts.n_random, d, &[], &mut rng);
        let orthogonal = edit::random_directions(opts.n_orthogonal, d, &probe_basis, &mut rng);
        let null_random = random
            .iter()
            .map(|u| null_effect(u, &mut run))
            .collect::<Result<Vec<_>>>()?;
        let null_orthogonal = orthogonal
            .iter()
            .map(|u| null_effect(u, &mut run))
            .collect::<Result<Vec<_>>>()?;
        let null_control_task = match &control_shifts {
            Some(s) => {
                let u = edit::scaled(&s[t], 1.0 / edit::norm(&s[t]));
                Some(null_effect(&u, &mut run)?)
            }
            None => None,
        };
        side_random.extend(random.iter().map(|u| edit::scaled(u, size)));
        let nulls: Vec<f64> = null_random
            .iter()
            .chain(&null_orthogonal)
            .chain(&null_control_task)
            .copied()
            .collect();
        axes.push(CausalAxis {
            target: dirs.target_names[t].clone(),
            norm_per_unit: unit_norm,
            doses: dose_effects,
            slope: slope(&xs, &ys),
            correlation: pearson(&xs, &ys),
            effect,
            p_value: rank_p_value(effect, &nulls),
            null_random,
            null_orthogonal,
            null_control_task,
        });
    }

    // 4. Erasure of the probe's subspace, against random subspaces of its dimension.
    let drop_of = |probs: &[Vec<f64>]| -> f64 {
        let drops: Vec<f64> = p_true(probs)
            .iter()
            .zip(&base_p_true)
            .filter_map(|(a, b)| Some(b.as_ref()? - a.as_ref()?))
            .collect();
        mean_ci95(&drops).0
    };
    let drop_p_true = drop_of(&run.answers(&Edit::Erase(&probe_basis))?);
    let null_drops = edit::random_subspaces(opts.n_erasure, probe_basis.len(), d, &mut rng)
        .iter()
        .map(|basis| Ok(drop_of(&run.answers(&Edit::Erase(basis))?)))
        .collect::<Result<Vec<_>>>()?;

    // 5. Side effects on unrelated completions.
    let side_effects = side_effects(&mut run, tokenizer, &side_edits, &side_random)?;

    let entities = rows
        .iter()
        .enumerate()
        .map(|(j, &i)| CausalEntity {
            name: dataset.names[i].clone(),
            truth: dataset.targets[i].clone(),
            true_answer: truth[j].map(|t| cands.names[t].clone()),
            answer: cands.names[argmax(&base[j])].clone(),
            p_true: base_p_true[j],
            expected: base_expected[j].clone(),
            moved: std::mem::take(&mut moved[j]),
        })
        .collect();
    Ok(CausalReport {
        layer,
        positions: match pooling {
            Pooling::Last => "last".into(),
            Pooling::Mean => "all".into(),
        },
        readout: template.text.clone(),
        answer_column: column.to_lowercase(),
        candidates: cands.names.clone(),
        candidate_tokens: cands.token_texts.clone(),
        n_entities: rows.len(),
        baseline,
        axes,
        erasure: Erasure {
            p_value: rank_p_value(drop_p_true, &null_drops),
            drop_p_true,
            null_drops,
        },
        side_effects,
        entities,
        notes: notes(top),
    })
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

/// Forward passes the side-effect check makes: one unedited, one per probe edit (±D per axis)
/// and one per random null edit.
fn side_passes(k: usize, opts: &CausalOptions) -> usize {
    1 + 2 * k + k * opts.n_random
}

/// Mean |change| of the unrelated completions' mean log-probability per token, under the
/// probe's edits and under the random ones (each added at the context's last token).
fn side_effects(
    run: &mut Passes,
    tokenizer: &Tokenizer,
    probe_edits: &[Vec<f64>],
    random_edits: &[Vec<f64>],
) -> Result<SideEffects> {
    let (model, layer) = (run.model, run.layer);
    let mut seqs = Vec::new();
    let mut edit_at = Vec::new();
    let mut read_at = Vec::new();
    let mut wanted = Vec::new();
    for line in UNRELATED_PROMPTS.lines() {
        let Some((context, completion)) = line.split_once('\t') else {
            continue;
        };
        if context.starts_with('#') {
            continue;
        }
        let ctx = tokenizer.encode_prompt(context)?.ids;
        let comp = tokenizer.encode_text(completion)?;
        let n = ctx.len();
        edit_at.push(vec![n - 1]);
        read_at.push((n - 1..n - 1 + comp.len()).collect());
        wanted.push(comp.clone());
        seqs.push([ctx, comp].concat());
    }
    let n_prompts = seqs.len();
    let held = HeldBatch::new(model, layer, seqs, edit_at, read_at)?;
    let head = model.head_rows(None)?;
    // Mean log-probability per completion token, per prompt.
    let mean_log_p = |edit: &Edit| -> Result<Vec<f64>> {
        let logits = model.head_logits(&held.final_rows(model, layer, edit)?, &head)?;
        let mut rows = logits.iter();
        Ok(wanted
            .iter()
            .map(|tokens| {
                tokens
                    .iter()
                    .zip(rows.by_ref())
                    .map(|(&tok, row)| log_softmax_at(row, tok))
                    .sum::<f64>()
                    / tokens.len() as f64
            })
            .collect())
    };
    let base = mean_log_p(&Edit::None)?;
    run.tick()?;
    let mut mean_abs = |edits: &[Vec<f64>]| -> Result<f64> {
        let mut total = 0.0;
        for delta in edits {
            let after = mean_log_p(&Edit::Add(delta))?;
            run.tick()?;
            total += after
                .iter()
                .zip(&base)
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
                / n_prompts as f64;
        }
        Ok(total / edits.len().max(1) as f64)
    };
    Ok(SideEffects {
        n_prompts,
        probe_mean_abs_change: mean_abs(probe_edits)?,
        random_mean_abs_change: mean_abs(random_edits)?,
    })
}

/// `ln softmax(row)[token]` in f64.
fn log_softmax_at(row: &[f32], token: u32) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + row
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln();
    row[token as usize] as f64 - lse
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
            "The answer: the question prompt scored over the candidates' first tokens (softmax \
             over the candidates only). Its expected position is Σ p(answer) × the answer's \
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
