//! Forward parity: hidden states at every layer against an independent NumPy (float64) forward
//! pass over the same GGUF, made once by tests/fixtures/make/reference_forward.py.

mod common;

use candle_core::Device;
use common::*;
use probelab::extract::{self, Activations, EntityTokens, ExtractOptions, Pooling};
use probelab::model::load::LoadedModel;
use probelab::model::LoadOptions;
use serde_json::Value;

#[test]
fn every_layer_matches_the_numpy_reference() {
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("forward_smollm2.json")).unwrap())
            .unwrap();
    assert_eq!(meta["model_sha256"].as_str().unwrap(), m.sha256);
    let reference =
        candle_core::safetensors::load(fixture("forward_smollm2.safetensors"), &Device::Cpu)
            .unwrap();
    let prompts = meta["prompts"].as_array().unwrap();
    assert!(prompts.len() >= 20);
    // Whole prompts as entities: "last" is the prompt's last token, "mean" the mean over it.
    let entities: Vec<EntityTokens> = prompts
        .iter()
        .map(|p| {
            let ids: Vec<u32> = p["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            EntityTokens {
                span: 0..ids.len(),
                ids,
            }
        })
        .collect();
    let layers = m.model.config.n_layers + 1;
    for (pooling, key) in [
        (Pooling::Last, "hidden_last"),
        (Pooling::Mean, "hidden_mean"),
    ] {
        // All prompts in one padded batch.
        let opts = ExtractOptions {
            pooling,
            batch_size: entities.len(),
        };
        let acts: Activations =
            extract::extract(&m.model, &entities, &opts, &mut |_, _, _| true).unwrap();
        let want = reference[key].to_vec3::<f32>().unwrap(); // [prompt][layer][d]
        let mut worst = (1.0f64, 0, 0);
        for (p, per_layer) in want.iter().enumerate() {
            for (l, v) in per_layer.iter().enumerate().take(layers) {
                let c = cosine(acts.vector(l, p), v);
                if c < worst.0 {
                    worst = (c, p, l);
                }
            }
        }
        eprintln!(
            "{key}: lowest cosine {:.6} (prompt {}, layer {})",
            worst.0, worst.1, worst.2
        );
        assert!(
            worst.0 >= 0.999,
            "{key}: cosine {:.6} at prompt {} layer {}",
            worst.0,
            worst.1,
            worst.2
        );
    }
}

#[test]
fn greedy_next_token_matches() {
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("forward_smollm2.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for p in meta["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        // Near-ties can flip under quantization noise; the France prompt is always checked.
        if text != "The capital of France is" && p["greedy_margin"].as_f64().unwrap_or(0.0) < 0.5 {
            continue;
        }
        let ids = m.tokenizer.encode_prompt(text).unwrap().ids;
        let logits = m.model.next_token_logits(&ids).unwrap();
        let best = (0..logits.len())
            .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
            .unwrap();
        assert_eq!(best as u64, p["greedy_next_id"].as_u64().unwrap(), "{text}");
        if text == "The capital of France is" {
            assert_eq!(m.tokenizer.decode(&[best as u32]).unwrap(), " Paris");
        }
        checked += 1;
    }
    assert!(
        checked >= 5,
        "only {checked} prompts had a clear greedy token"
    );
}
