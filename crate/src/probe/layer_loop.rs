//! The whole analysis in one call: check every input, fit the layers (natively on threads,
//! in order in wasm32, where std threads do not exist), finish the report. Layers are
//! independent; each worker takes the next unfitted layer, results come back in layer order,
//! and progress and cancellation are handled on the calling thread.

#[cfg(not(target_arch = "wasm32"))]
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::data::Dataset;
use crate::extract::Activations;
use crate::probe::analysis::{
    check_finite_layer, Analysis, AnalysisOptions, ControlInputs, LayerOutcome, Report,
    ReportContext, SplitSpec, StageProgress,
};
use crate::probe::input_err;
use crate::{Error, Result};

/// Runs the whole analysis on in-memory activations. Checks everything first (shapes, NaN/inf
/// anywhere, the random-init model's shape), so a bad input fails before any fitting; a cancel
/// from `progress` returns [`Error::Cancelled`]. Stages reported: `check`, `layers`, `learning`, `report`.
pub fn analyze(
    acts: &Activations,
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    controls: &ControlInputs<'_>,
    ctx: &ReportContext,
    progress: &mut StageProgress<'_>,
) -> Result<Report> {
    let n = dataset.len();
    if acts.n_entities != n {
        return Err(input_err(format!(
            "the activations are of {} entities but dataset '{}' has {n}; they belong to another \
             entity list",
            acts.n_entities, dataset.name
        )));
    }
    if acts.data.len() != (acts.n_layers + 1) * acts.n_entities * acts.d_model {
        return Err(input_err(format!(
            "activations hold {} values, not (layers+1) {} × entities {} × d {}",
            acts.data.len(),
            acts.n_layers + 1,
            acts.n_entities,
            acts.d_model
        )));
    }
    if let Some(r) = controls.random_init {
        if (r.n_layers, r.n_entities, r.d_model) != (acts.n_layers, acts.n_entities, acts.d_model)
            || r.data.len() != acts.data.len()
        {
            return Err(input_err(format!(
                "random-init activations are {} layers × {} entities × {} dims but the model's are \
                 {} × {} × {}; extract both with the same architecture and entities",
                r.n_layers, r.n_entities, r.d_model, acts.n_layers, acts.n_entities, acts.d_model
            )));
        }
    }
    if !progress("check", 0, 1) {
        return Err(Error::Cancelled);
    }
    for l in 0..=acts.n_layers {
        check_finite_layer(
            "activations",
            acts.layer(l),
            acts.d_model,
            l,
            &dataset.names,
        )?;
        if let Some(r) = controls.random_init {
            check_finite_layer(
                "random-init activations",
                r.layer(l),
                r.d_model,
                l,
                &dataset.names,
            )?;
        }
    }
    let mut analysis = Analysis::new(
        dataset,
        split,
        opts,
        &controls.first_token_ids,
        acts.n_layers,
        acts.d_model,
        controls.random_init.is_some(),
    )?;
    if let Some(s) = controls.name_surprisal {
        analysis = analysis.with_name_surprisal(s)?;
    }
    if !progress("check", 1, 1) {
        return Err(Error::Cancelled);
    }
    let total = acts.n_layers + 1;
    let fit_layer =
        |l: usize| analysis.layer(l, acts.layer(l), controls.random_init.map(|r| r.layer(l)));
    let outcomes = fit_layers(total, &fit_layer, progress)?;
    let mut report = analysis.finish(ctx, outcomes)?;
    if !progress("learning", 0, 1) {
        return Err(Error::Cancelled);
    }
    let l = report.selected.layer;
    report.learning = analysis.learning(
        &report,
        acts.layer(l),
        controls.random_init.map(|r| r.layer(l)),
    )?;
    if !progress("report", 1, 1) {
        return Err(Error::Cancelled);
    }
    Ok(report)
}

/// Fits every layer: on as many threads as the machine has natively, in
/// order in wasm32 (and on one core). Results come back in layer order; progress and
/// cancellation are handled on the calling thread.
fn fit_layers(
    total: usize,
    fit_layer: &(dyn Fn(usize) -> Result<LayerOutcome> + Sync),
    progress: &mut StageProgress<'_>,
) -> Result<Vec<LayerOutcome>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(total);
        if threads > 1 {
            return fit_layers_on_threads(total, threads, fit_layer, progress);
        }
    }
    let mut outcomes = Vec::with_capacity(total);
    for l in 0..total {
        outcomes.push(fit_layer(l)?);
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
    fit_layer: &(dyn Fn(usize) -> Result<LayerOutcome> + Sync),
    progress: &mut StageProgress<'_>,
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
            let outcome = outcome.inspect_err(|_| stop.store(true, Ordering::SeqCst))?;
            slots[l] = Some(outcome);
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
