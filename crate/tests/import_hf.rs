//! Our layer convention against Hugging Face's `hidden_states`, on a fixture transformers made
//! from the default GGUF with its own GGUF loader (tests/fixtures/make/hf_hidden_states.py, 20
//! names of world-places-200): index i of HF's stack is our layer i (index 0 the embedding
//! output), except that HF's last index is after the model's final norm while our last layer is
//! the residual stream before it; the fixture keeps that raw state too. The same file goes
//! through the import path and `probelab fit`.

mod common;

use std::process::Command;

use common::*;
use probelab::extract::import;
use probelab::extract::{self, ExtractOptions, Template};
use probelab::model::load::LoadedModel;
use probelab::model::LoadOptions;

const FIXTURE: &str = "hf_hidden_states_smollm2.safetensors";

#[test]
fn hf_hidden_states_are_our_layers() {
    let hf = import::read(&fixture(FIXTURE), &Default::default()).unwrap();
    assert!(
        hf.source.tool.starts_with("transformers"),
        "{}",
        hf.source.tool
    );
    assert!(hf
        .source
        .format
        .contains("'hidden_states' [layers+1, entities, d]"));
    let names = hf.meta.names.clone();
    assert_eq!(names.len(), 20);

    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let template = Template::new("{name}").unwrap();
    let ents = extract::tokenize_entities(&m.tokenizer, &names, &template, 8192).unwrap();
    // The same tokens as transformers' tokenizer (read from the same GGUF).
    let bytes = std::fs::read(fixture(FIXTURE)).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let md = header.metadata().clone().unwrap();
    let hf_ids: Vec<Vec<u32>> = serde_json::from_str(&md["token_ids"]).unwrap();
    for (e, ids) in ents.iter().zip(&hf_ids) {
        assert_eq!(&e.ids, ids);
    }
    let ours = extract::extract(
        &m.model,
        &ents,
        &ExtractOptions::default(),
        &mut |_, _, _| true,
    )
    .unwrap();
    let n_layers = m.model.config.n_layers;
    assert_eq!(
        (hf.acts.n_layers, hf.acts.d_model),
        (n_layers, ours.d_model)
    );
    for l in 0..n_layers {
        let worst = (0..names.len())
            .map(|e| cosine(hf.acts.vector(l, e), ours.vector(l, e)))
            .fold(1.0, f64::min);
        eprintln!("layer {l}: worst cosine HF vs Probelab {worst:.6}");
        assert!(worst >= 0.999, "layer {l}: cosine {worst}");
    }
    // The last layer: ours is HF's last block output before the final norm (the fixture's hook),
    // not HF's last index, which is after it.
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let raw: Vec<f32> = st
        .tensor("last_block_raw")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let d = ours.d_model;
    for e in 0..names.len() {
        let raw_e = &raw[e * d..(e + 1) * d];
        let c = cosine(raw_e, ours.vector(n_layers, e));
        assert!(
            c >= 0.999,
            "entity {e}: last block before the norm, cosine {c}"
        );
        let normed = cosine(hf.acts.vector(n_layers, e), ours.vector(n_layers, e));
        assert!(
            normed < 0.9,
            "entity {e}: HF's last index is after the final norm ({normed})"
        );
    }
}

#[test]
fn hf_hidden_states_fit() {
    // The fixture's 20 names are the first 20 rows of world-places-200.
    let dir = std::env::temp_dir().join(format!("probelab-hf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rows: Vec<String> =
        std::fs::read_to_string(repo_root().join("datasets/world_places_200.csv"))
            .unwrap()
            .lines()
            .take(21)
            .map(String::from)
            .collect();
    std::fs::write(dir.join("places20.csv"), rows.join("\n")).unwrap();
    let out = dir.join("fit");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_probelab"));
    cmd.arg("fit")
        .arg(fixture(FIXTURE))
        .arg("--dataset")
        .arg(dir.join("places20.csv"))
        .args(["--permutations", "5", "--out"])
        .arg(&out);
    let r = common::report_of(&mut cmd, &out);
    assert_eq!(r["dataset"]["n"], 20);
    assert_eq!(r["layers"].as_array().unwrap().len(), 31);
    let source = r["notes"]["activations.source"].as_str().unwrap();
    assert!(
        source.contains("tool: transformers") && source.contains("pool: last"),
        "{source}"
    );
    assert!(r["notes"]["activations.random_init"]
        .as_str()
        .unwrap()
        .starts_with("missing"));
}
