//! How familiar the model finds each name: its surprisal inside the prompt, the mean negative
//! log-likelihood (nats per token) of the name's tokens under the model's own LM head. A map
//! that serves only the names the model has read often is a map of its training text.
//!
//! A name that opens the prompt has nothing before its first token: it is scored after a line
//! break (the tokens of "\n" put before the prompt for scoring only; the activations are read
//! from the prompt as it is), as a name opens a line in running text, so every token of every
//! name is scored. (Not after the BOS token: SmolLM2's is the chat marker `<|im_start|>`, after
//! which any first token costs ~19 nats.) Checked against the NumPy float64 forward in
//! `tests/fixtures/make/surprisal_fixture.py`.

use crate::error::Result;
use crate::extract::{plan_batches, Batching, EntityTokens, Progress};
use crate::model::Llama;

/// Each entity's surprisal in nats per token (None when none of its tokens can be scored),
/// `line_break` being the tokenizer's tokens for "\n", by batches of `batch_size` entities;
/// `progress` as the extraction's (entities, total, tokens).
pub fn name_surprisal(
    model: &Llama,
    line_break: &[u32],
    entities: &[EntityTokens],
    batch_size: usize,
    progress: &mut Progress,
) -> Result<Vec<Option<f64>>> {
    // The scoring sequence and the positions of the name's tokens in it.
    let scored: Vec<EntityTokens> = entities
        .iter()
        .map(|e| {
            if e.span.start > 0 {
                return e.clone();
            }
            let k = line_break.len();
            EntityTokens {
                ids: line_break.iter().chain(&e.ids).copied().collect(),
                // Without a line break to put first, the first token cannot be scored.
                span: if k == 0 {
                    1..e.span.end
                } else {
                    k..e.span.end + k
                },
            }
        })
        .collect();
    let mut out = vec![None; entities.len()];
    let (mut done, mut tokens) = (0, 0);
    // Padded batches: padding never changes a real row, and fewer batches read the head fewer times.
    for batch in plan_batches(&scored, batch_size, Batching::Padded) {
        let seqs: Vec<Vec<u32>> = batch.iter().map(|&i| scored[i].ids.clone()).collect();
        let positions: Vec<Vec<usize>> = batch
            .iter()
            .map(|&i| scored[i].span.clone().collect())
            .collect();
        let lp = model.token_log_probs(&seqs, &positions)?;
        for (&i, l) in batch.iter().zip(&lp) {
            if !l.is_empty() {
                out[i] = Some(-l.iter().sum::<f64>() / l.len() as f64);
            }
        }
        done += batch.len();
        tokens += seqs.iter().map(Vec::len).sum::<usize>();
        if !progress(done, entities.len(), tokens) {
            return Err(crate::Error::Cancelled);
        }
    }
    Ok(out)
}
