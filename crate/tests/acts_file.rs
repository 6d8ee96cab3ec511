//! Activation files: the chunked writer (for datasets larger than memory) produces the same file
//! contents as the in-memory serializer, readable back in f32 and f16.

use probelab::extract::acts::{self, ActsMeta, ActsWriter, StoreAs};
use probelab::extract::{Activations, Pooling};

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

fn slice(a: &Activations, first: usize, n: usize) -> Activations {
    let mut data = Vec::new();
    for l in 0..=a.n_layers {
        data.extend_from_slice(&a.layer(l)[first * a.d_model..(first + n) * a.d_model]);
    }
    Activations {
        n_layers: a.n_layers,
        n_entities: n,
        d_model: a.d_model,
        data,
        tokens_per_entity: a.tokens_per_entity[first..first + n].to_vec(),
        first_token_ids: a.first_token_ids[first..first + n].to_vec(),
    }
}

#[test]
fn chunked_writer_equals_the_in_memory_file() {
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
        // Chunks out of order and of uneven sizes.
        for (first, n) in [(10, 7), (0, 10), (17, 6)] {
            w.write_chunk(first, &slice(&full, first, n)).unwrap();
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
