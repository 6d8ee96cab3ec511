//! Activation files: the batch writer (for datasets larger than memory) produces the same file
//! contents as the in-memory serializer, readable back in f32 and f16.

use probelab::extract::acts::{self, ActsMeta, ActsWriter, StoreAs};
use probelab::extract::{Activations, EntityTokens, Pooling};

fn sample(n: usize) -> (Activations, ActsMeta) {
    let (layers, d) = (3, 8);
    let data = (0..(layers + 1) * n * d)
        .map(|i| (i as f32 * 0.37).sin() * 100.0)
        .collect();
    let acts = Activations {
        n_layers: layers,
        n_entities: n,
        d_model: d,
        data,
        tokens_per_entity: (0..n as u32).map(|i| 1 + i % 5).collect(),
        first_token_ids: (0..n as u32).map(|i| 1000 + i).collect(),
    };
    let meta = ActsMeta {
        model_name: "m".into(),
        model_sha256: "ab".repeat(32),
        dataset_name: "d".into(),
        dataset_hash: "cd".repeat(32),
        prompt_template: "{name}".into(),
        pooling: Pooling::Last,
        names: (0..n).map(|i| format!("place {i}")).collect(),
    };
    (acts, meta)
}

/// Rows `[layers + 1][which.len()][d]` of the entities `which`, as the batch loop hands them
/// to the writer, and the entities' tokens (as many as the sample says, the first one first).
fn batch(a: &Activations, which: &[usize]) -> (Vec<f32>, Vec<EntityTokens>) {
    let d = a.d_model;
    let mut rows = Vec::new();
    for l in 0..=a.n_layers {
        for &e in which {
            rows.extend_from_slice(&a.layer(l)[e * d..(e + 1) * d]);
        }
    }
    let entities = (0..a.n_entities)
        .map(|e| {
            let n = a.tokens_per_entity[e] as usize;
            EntityTokens {
                ids: vec![a.first_token_ids[e]; n],
                span: 0..n,
            }
        })
        .collect();
    (rows, entities)
}

#[test]
fn batch_writer_equals_the_in_memory_file() {
    let (full, meta) = sample(23);
    for store in [StoreAs::F32, StoreAs::F16] {
        let path = std::env::temp_dir().join(format!(
            "probelab-acts-{}-{store:?}.safetensors",
            std::process::id()
        ));
        let mut w = ActsWriter::create(
            &path,
            full.n_layers,
            full.n_entities,
            full.d_model,
            &meta,
            store,
        )
        .unwrap();
        // Batches out of order, of uneven sizes, one of them not contiguous.
        let batches: [Vec<usize>; 4] = [
            (10..17).filter(|&e| e != 15).collect(),
            vec![22, 3, 15],
            (0..10).filter(|&e| e != 3).collect(),
            vec![17, 18, 19, 20, 21],
        ];
        for which in &batches {
            let (rows, entities) = batch(&full, which);
            w.write_batch(&entities, which, &rows).unwrap();
        }
        assert!(!path.exists(), "the file must appear only when finished");
        w.finish().unwrap();
        let (streamed, streamed_meta) =
            acts::from_safetensors(&std::fs::read(&path).unwrap()).unwrap();
        let (in_memory, _) =
            acts::from_safetensors(&acts::to_safetensors(&full, &meta, store).unwrap()).unwrap();
        assert_eq!(streamed.data, in_memory.data, "{store:?}");
        assert_eq!(streamed.tokens_per_entity, full.tokens_per_entity);
        assert_eq!(streamed.first_token_ids, full.first_token_ids);
        assert_eq!(streamed_meta, meta);
        std::fs::remove_file(&path).unwrap();
    }
}
