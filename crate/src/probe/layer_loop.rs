//! The whole analysis in one call: check every input, fit the layers (natively on threads,
//! in order in wasm32, where std threads do not exist), finish the report. Layers come from a
//! [`LayerSource`] (memory, or files read a layer at a time), so a fit holds at most as many
//! layers as it fits at once. Each worker takes the next unfitted layer, results come back in
//! layer order, and progress and cancellation are handled on the calling thread. A prompt
//! sweep fits every template's layers the same way, as one list of jobs.

#[cfg(not(target_arch = "wasm32"))]
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::data::Dataset;
use crate::extract::layers::LayerSource;
use crate::extract::Activations;
use crate::probe::analysis::{
    check_finite_layer, Analysis, AnalysisOptions, ControlInputs, LayerOutcome, PromptOutcome,
    Report, ReportContext, SplitSpec, StageProgress,
};
use crate::probe::input_err;
use crate::{Error, Result};

/// What [`analyze_layers`] fits: the model's layers, the random-init control's, and the
/// controls' other inputs.
#[derive(Clone, Copy)]
pub struct LayerInputs<'a> {
    pub acts: &'a dyn LayerSource,
    pub random_init: Option<&'a dyn LayerSource>,
    /// Each entity's first token id (for the control task); empty = no control task.
    pub first_token_ids: &'a [u32],
    pub name_surprisal: Option<&'a [Option<f64>]>,
    /// At most this many layers are read and fitted at once (0: one per core). Each holds its
    /// activations and the fit's working set while it is fitted.
    pub in_flight: usize,
}

/// How long one layer took: reading it (and the random-init model's), then fitting it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerTime {
    pub layer: usize,
    pub read_s: f64,
    pub fit_s: f64,
}

/// Runs the whole analysis on in-memory activations ([`analyze_layers`] over them).
pub fn analyze(
    acts: &Activations,
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    controls: &ControlInputs<'_>,
    ctx: &ReportContext,
    progress: &mut StageProgress<'_>,
) -> Result<Report> {
    if acts.data.len() != (acts.n_layers + 1) * acts.n_entities * acts.d_model {
        return Err(input_err(format!(
            "activations hold {} values, not (layers+1) {} × entities {} × d {}",
            acts.data.len(),
            acts.n_layers + 1,
            acts.n_entities,
            acts.d_model
        )));
    }
    let inputs = LayerInputs {
        acts,
        random_init: controls.random_init.map(|r| r as &dyn LayerSource),
        first_token_ids: &controls.first_token_ids,
        name_surprisal: controls.name_surprisal,
        in_flight: 0,
    };
    analyze_layers(&inputs, dataset, split, opts, ctx, progress, &mut |_| {})
}

/// Runs the whole analysis, reading each layer from its source when it is checked and when it
/// is fitted, and the selected layer once more for the learning curves. Checks everything
/// first (shapes, NaN/inf anywhere, the random-init model's shape), so a bad input fails before
/// any fitting; a cancel from `progress` returns [`Error::Cancelled`]. Stages reported:
/// `check`, `layers`, `learning`, `report`; `on_layer` hears of each fitted layer (in the
/// order they finish).
pub fn analyze_layers(
    inputs: &LayerInputs<'_>,
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    ctx: &ReportContext,
    progress: &mut StageProgress<'_>,
    on_layer: &mut dyn FnMut(LayerTime),
) -> Result<Report> {
    let sweep = [(ctx.prompt_template.as_str(), *inputs)];
    analyze_prompts(&sweep, dataset, split, opts, ctx, progress, on_layer)
}

/// [`analyze_layers`] over a prompt sweep: each template's inputs (its activations and its
/// random-init model's; the first template's control-task tokens, name surprisal and
/// `in_flight` serve them all), one plan for all so every template sees the same shuffles,
/// every (template, layer) fitted, then [`Analysis::finish_prompts`] chooses the pair and
/// pays for choosing it. `on_layer` hears each fitted layer of each template.
pub fn analyze_prompts(
    sweep: &[(&str, LayerInputs<'_>)],
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    ctx: &ReportContext,
    progress: &mut StageProgress<'_>,
    on_layer: &mut dyn FnMut(LayerTime),
) -> Result<Report> {
    let Some((_, first)) = sweep.first() else {
        return Err(input_err(
            "the prompt sweep has no templates; give at least one",
        ));
    };
    let (n_layers, d) = (first.acts.n_layers(), first.acts.d_model());
    let n = dataset.len();
    for (template, inputs) in sweep {
        check_shapes(
            template,
            inputs,
            (n_layers, n, d),
            first.random_init.is_some(),
            dataset,
        )?;
    }
    let mut analysis = Analysis::new(
        dataset,
        split,
        opts,
        first.first_token_ids,
        n_layers,
        d,
        first.random_init.is_some(),
    )?;
    if let Some(s) = first.name_surprisal {
        analysis = analysis.with_name_surprisal(s)?;
    }
    let per_prompt = n_layers + 1;
    let total = sweep.len() * per_prompt;
    if !progress("check", 0, total) {
        return Err(Error::Cancelled);
    }
    // Layer by layer, before any fitting: a file that is cut or holds a NaN fails now, not
    // hours into the fit (the plan above is checked first: it reads no activations).
    for (p, (_, inputs)) in sweep.iter().enumerate() {
        for l in 0..=n_layers {
            check_finite_layer("activations", &inputs.acts.layer(l)?, d, l, &dataset.names)?;
            if let Some(r) = inputs.random_init {
                check_finite_layer(
                    "random-init activations",
                    &r.layer(l)?,
                    d,
                    l,
                    &dataset.names,
                )?;
            }
            if !progress("check", p * per_prompt + l + 1, total) {
                return Err(Error::Cancelled);
            }
        }
    }
    // Job j is template j / per_prompt at layer j % per_prompt.
    let fit_layer = |j: usize| -> Result<(LayerOutcome, LayerTime)> {
        let (inputs, l) = (&sweep[j / per_prompt].1, j % per_prompt);
        let clock = clock();
        let x = inputs.acts.layer(l)?;
        let r = inputs.random_init.map(|r| r.layer(l)).transpose()?;
        let read_s = clock();
        let outcome = analysis.layer(l, &x, r.as_deref())?;
        let time = LayerTime {
            layer: l,
            read_s,
            fit_s: clock() - read_s,
        };
        Ok((outcome, time))
    };
    let threads = match first.in_flight {
        0 => usize::MAX,
        k => k,
    };
    let mut outcomes = fit_layers(total, threads, &fit_layer, progress, on_layer)?.into_iter();
    let prompts = sweep
        .iter()
        .map(|(template, _)| PromptOutcome {
            template: template.to_string(),
            layers: outcomes.by_ref().take(per_prompt).collect(),
        })
        .collect();
    let mut report = analysis.finish_prompts(ctx, prompts)?;
    if !progress("learning", 0, 1) {
        return Err(Error::Cancelled);
    }
    // The learning curves at the chosen template's chosen layer.
    let l = report.selected.layer;
    let chosen = sweep
        .iter()
        .find(|(t, _)| sweep.len() == 1 || *t == report.prompt)
        .map_or(first, |(_, inputs)| inputs);
    let (x, r) = (
        chosen.acts.layer(l)?,
        chosen.random_init.map(|r| r.layer(l)).transpose()?,
    );
    report.learning = analysis.learning(&report, &x, r.as_deref())?;
    if !progress("report", 1, 1) {
        return Err(Error::Cancelled);
    }
    Ok(report)
}

/// One template's activations (and its random-init model's) have the sweep's shape and the
/// dataset's entities, and the random-init control is there for all templates or none.
fn check_shapes(
    template: &str,
    inputs: &LayerInputs<'_>,
    (n_layers, n, d): (usize, usize, usize),
    with_random_init: bool,
    dataset: &Dataset,
) -> Result<()> {
    let acts = inputs.acts;
    if acts.n_entities() != n {
        return Err(input_err(format!(
            "the activations are of {} entities but dataset '{}' has {n}; they belong to another \
             entity list",
            acts.n_entities(),
            dataset.name
        )));
    }
    if (acts.n_layers(), acts.d_model()) != (n_layers, d) {
        return Err(input_err(format!(
            "template '{template}': activations of {} layers × {} dims, but the sweep's first \
             template has {n_layers} × {d}; extract every template with the same model",
            acts.n_layers(),
            acts.d_model()
        )));
    }
    if inputs.random_init.is_some() != with_random_init {
        return Err(input_err(format!(
            "template '{template}': the random-init control is {} for this template but {} for \
             the first; give it for every template or none",
            if with_random_init { "missing" } else { "given" },
            if with_random_init { "given" } else { "missing" }
        )));
    }
    if let Some(r) = inputs.random_init {
        if (r.n_layers(), r.n_entities(), r.d_model()) != (n_layers, n, d) {
            return Err(input_err(format!(
                "random-init activations are {} layers × {} entities × {} dims but the model's are \
                 {} × {} × {}; extract both with the same architecture and entities",
                r.n_layers(),
                r.n_entities(),
                r.d_model(),
                n_layers,
                n,
                d
            )));
        }
    }
    Ok(())
}

/// Seconds since it was made (0 in wasm32, where std has no clock).
fn clock() -> impl Fn() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let t = std::time::Instant::now();
        move || t.elapsed().as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    {
        || 0.0
    }
}

type FitLayer<'a> = dyn Fn(usize) -> Result<(LayerOutcome, LayerTime)> + Sync + 'a;

/// Fits every layer: natively on as many threads as the machine has, at most `max_threads`,
/// in order in wasm32 (and on one core). Results come back in layer order; progress,
/// `on_layer` and cancellation are handled on the calling thread.
fn fit_layers(
    total: usize,
    max_threads: usize,
    fit_layer: &FitLayer<'_>,
    progress: &mut StageProgress<'_>,
    on_layer: &mut dyn FnMut(LayerTime),
) -> Result<Vec<LayerOutcome>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(total)
            .min(max_threads);
        if threads > 1 {
            return fit_layers_on_threads(total, threads, fit_layer, progress, on_layer);
        }
    }
    #[cfg(target_arch = "wasm32")]
    let _ = max_threads;
    let mut outcomes = Vec::with_capacity(total);
    for l in 0..total {
        let (outcome, time) = fit_layer(l)?;
        outcomes.push(outcome);
        on_layer(time);
        if !progress("layers", l + 1, total) {
            return Err(Error::Cancelled);
        }
    }
    Ok(outcomes)
}

/// Fits layers `0..total` on `threads` workers.
#[cfg(not(target_arch = "wasm32"))]
fn fit_layers_on_threads(
    total: usize,
    threads: usize,
    fit_layer: &FitLayer<'_>,
    progress: &mut StageProgress<'_>,
    on_layer: &mut dyn FnMut(LayerTime),
) -> Result<Vec<LayerOutcome>> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut slots: Vec<Option<LayerOutcome>> = (0..total).map(|_| None).collect();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                let l = next.fetch_add(1, Ordering::SeqCst);
                if l >= total || stop.load(Ordering::SeqCst) {
                    break;
                }
                if tx.send((l, fit_layer(l))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (l, outcome) in rx {
            let (outcome, time) = outcome.inspect_err(|_| stop.store(true, Ordering::SeqCst))?;
            slots[l] = Some(outcome);
            on_layer(time);
            done += 1;
            if !progress("layers", done, total) {
                stop.store(true, Ordering::SeqCst);
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    })?;
    slots
        .into_iter()
        .enumerate()
        .map(|(l, o)| o.ok_or_else(|| Error::Compute(format!("layer {l} was not fitted"))))
        .collect()
}
