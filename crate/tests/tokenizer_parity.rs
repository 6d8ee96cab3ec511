//! Tokenizer parity with independent implementations, from fixtures made once by
//! tests/fixtures/make/make_tokenizer_fixture.py (llama.cpp + Hugging Face tokenizers, for SmolLM2)
//! and tests/fixtures/make/make_spm_fixture.py and make_spm32k_fixture.py (Google's sentencepiece,
//! for llama-type vocabularies of 1,000 and 32,000 pieces).

mod common;

use std::io::Cursor;
use std::time::Instant;

use candle_core::quantized::{gguf_file, GgmlDType};
use common::*;
use probelab::model::load::LoadedModel;
use probelab::model::tokenizer::Tokenizer;
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

/// Tokenizer metadata of a SentencePiece vocabulary fixture (written by the make_spm*
/// scripts as a GGUF converter stores it) and its size.
fn spm_meta(file: &str) -> (Vec<(&'static str, Meta)>, usize) {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
    let list = |k: &str| v[k].as_array().unwrap();
    let tokens: Vec<String> = list("tokens")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let n = tokens.len();
    let scores: Vec<f32> = list("scores")
        .iter()
        .map(|s| s.as_f64().unwrap() as f32)
        .collect();
    let types: Vec<i32> = list("token_types")
        .iter()
        .map(|s| s.as_i64().unwrap() as i32)
        .collect();
    let id = |k: &str| Meta::U32(v[k].as_u64().unwrap() as u32);
    let meta = vec![
        ("tokenizer.ggml.model", Meta::Str("llama".into())),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.scores", Meta::F32s(scores)),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        ("tokenizer.ggml.unknown_token_id", id("unk_id")),
        ("tokenizer.ggml.bos_token_id", id("bos_id")),
        ("tokenizer.ggml.eos_token_id", id("eos_id")),
        ("tokenizer.ggml.add_bos_token", Meta::Bool(true)),
    ];
    (meta, n)
}

/// A llama-type (SentencePiece BPE, byte fallback) tokenizer in a GGUF the test builds.
#[test]
fn llama_spm_matches_sentencepiece() {
    let (meta, n) = spm_meta("spm_vocab.json");
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

/// A Llama-2-sized vocabulary: 32,000 SentencePiece pieces, trained by sentencepiece itself
/// (tests/fixtures/make/make_spm32k_fixture.py). Read from a vocab-only GGUF as a model load
/// would read it; the times are printed, not asserted (`-- --nocapture` shows them).
#[test]
fn llama_spm_32k_matches_sentencepiece() {
    let (meta, n) = spm_meta("spm32k_vocab.json");
    assert_eq!(n, 32000);
    let gguf = write_gguf(&meta, &[]);

    let start = Instant::now();
    let content = gguf_file::Content::read(&mut Cursor::new(&gguf)).unwrap();
    let read = start.elapsed();
    let start = Instant::now();
    let tok = Tokenizer::from_gguf_metadata(&content.metadata).unwrap();
    let built = start.elapsed();
    println!(
        "32k SentencePiece vocabulary: GGUF metadata read in {:.1} ms, tokenizer built in {:.1} ms",
        read.as_secs_f64() * 1e3,
        built.as_secs_f64() * 1e3
    );
    assert_eq!(tok.vocab_size, 32000);
    assert!(tok.warnings.is_empty(), "{:?}", tok.warnings);

    let cases = cases("tokenizer_llama_spm32k.json");
    assert!(cases.len() >= 500);
    for must in [
        "São Paulo",
        "Kraków",
        "東京",
        "Москва",
        "القاهرة",
        "Reykjavík",
    ] {
        assert!(cases.iter().any(|(t, _)| t == must), "fixture lacks {must}");
    }
    // The fixture exercises both ends of the vocabulary: merges deep in the 32k ranks and
    // byte fallback (pieces 3..=258 are <0x00>..<0xFF>).
    let ids = || cases.iter().flat_map(|(_, ids)| ids.iter().copied());
    assert!(ids().any(|i| i > 20_000));
    assert!(ids().any(|i| (3..=258).contains(&i)));
    check_all(&tok, &cases);

    // Encode throughput on the 200 names of the built-in world-places-200 dataset.
    let names = probelab::data::load_builtin("world-places-200")
        .unwrap()
        .names;
    let start = Instant::now();
    let tokens: usize = names
        .iter()
        .map(|s| tok.encode_text(s).unwrap().len())
        .sum();
    let took = start.elapsed();
    println!(
        "encoded {} world-places-200 names ({tokens} tokens) in {:.2} ms: {:.1} µs a name",
        names.len(),
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / names.len() as f64
    );
}
