//! Tokenizer parity with independent implementations, from fixtures made once by
//! tests/fixtures/make/make_tokenizer_fixture.py (llama.cpp + Hugging Face tokenizers, for SmolLM2)
//! and tests/fixtures/make/make_spm_fixture.py (Google's sentencepiece, for a llama-type vocabulary).

mod common;

use std::io::Cursor;

use candle_core::quantized::GgmlDType;
use common::*;
use probelab::model::load::LoadedModel;
use probelab::model::LoadOptions;
use serde_json::Value;

fn cases(file: &str) -> Vec<(String, Vec<u32>)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["ids"].as_array().unwrap();
            (
                c["text"].as_str().unwrap().to_string(),
                ids.iter().map(|i| i.as_u64().unwrap() as u32).collect(),
            )
        })
        .collect()
}

fn check_all(tok: &probelab::model::tokenizer::Tokenizer, cases: &[(String, Vec<u32>)]) {
    let mismatches: Vec<String> = cases
        .iter()
        .filter_map(|(text, want)| {
            let got = tok.encode_text(text).unwrap();
            (&got != want).then(|| format!("{text:?}: got {got:?}, want {want:?}"))
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} strings differ:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches[..mismatches.len().min(10)].join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp_and_hf_tokenizers() {
    let m = LoadedModel::open(&default_model(), &LoadOptions::default()).unwrap();
    let cases = cases("tokenizer_smollm2.json");
    assert!(cases.len() >= 1000);
    for must in ["São Paulo", "Kraków", "東京", "Côte d'Ivoire", "Reykjavík"] {
        assert!(cases.iter().any(|(t, _)| t == must), "fixture lacks {must}");
    }
    check_all(&m.tokenizer, &cases);
    // SmolLM2's GGUF says add_bos_token = false: a prompt is exactly its text's tokens.
    assert!(!m.tokenizer.add_bos);
    assert_eq!(
        m.tokenizer.encode_prompt("Paris").unwrap().ids,
        m.tokenizer.encode_text("Paris").unwrap()
    );
}

/// A llama-type (SentencePiece BPE, byte fallback) tokenizer in a GGUF the test builds.
#[test]
fn llama_spm_matches_sentencepiece() {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("spm_vocab.json")).unwrap()).unwrap();
    let strs = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let tokens = strs("tokens");
    let n = tokens.len();
    let scores: Vec<f32> = v["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap() as f32)
        .collect();
    let types: Vec<i32> = v["token_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_i64().unwrap() as i32)
        .collect();
    let meta = vec![
        ("tokenizer.ggml.model", Meta::Str("llama".into())),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.scores", Meta::F32s(scores)),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        (
            "tokenizer.ggml.unknown_token_id",
            Meta::U32(v["unk_id"].as_u64().unwrap() as u32),
        ),
        (
            "tokenizer.ggml.bos_token_id",
            Meta::U32(v["bos_id"].as_u64().unwrap() as u32),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            Meta::U32(v["eos_id"].as_u64().unwrap() as u32),
        ),
        ("tokenizer.ggml.add_bos_token", Meta::Bool(true)),
    ];
    let gguf = tiny_llama_with(GgmlDType::Q8_0, "llama", 3, (meta, n));
    let m = LoadedModel::read(&mut Cursor::new(gguf), &LoadOptions::default()).unwrap();
    let cases = cases("tokenizer_llama_spm.json");
    assert!(cases.len() >= 500);
    check_all(&m.tokenizer, &cases);
    // BOS is honoured: prompts start with it, and the model runs on the result.
    let p = m.tokenizer.encode_prompt("Paris").unwrap();
    assert_eq!(p.ids[0], 1);
    assert_eq!(&p.ids[1..], &m.tokenizer.encode_text("Paris").unwrap()[..]);
    assert_eq!(
        m.tokenizer
            .decode(&m.tokenizer.encode_text("Kraków 東京").unwrap())
            .unwrap(),
        "Kraków 東京"
    );
}
