//! The layer loop on threads (native only: std threads do not exist in wasm32). Layers are
//! independent; each worker takes the next unfitted layer, results come back in layer order, and
//! progress and cancellation are handled on the calling thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::probe::analysis::{LayerOutcome, StageProgress};
use crate::{Error, Result};

/// Fits layers `0..total` on `threads` workers.
pub(crate) fn fit_layers(
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
