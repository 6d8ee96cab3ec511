//! Each kind of bad input gives a clear error naming the problem, from the library and from
//! the command line (exit code 2, message on stderr), never a panic.

mod common;

use std::io::Cursor;
use std::process::Command;

use candle_core::quantized::GgmlDType;
use common::*;
use probelab::model::load::LoadedModel;
use probelab::model::LoadOptions;

fn load_err(bytes: Vec<u8>) -> String {
    match LoadedModel::read(&mut Cursor::new(bytes), &LoadOptions::default()) {
        Ok(_) => panic!("loading should have failed"),
        Err(e) => e.to_string(),
    }
}

/// Runs the CLI's `extract` and returns (exit code, stderr).
fn cli_extract(model: &std::path::Path, names: &str) -> (i32, String) {
    let dir = tempdir();
    let csv = dir.join("names.csv");
    std::fs::write(&csv, names).unwrap();
    let out = dir.join("acts.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_probelab"))
        .args(["extract", "--model"])
        .arg(model)
        .arg("--dataset")
        .arg(&csv)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let code = o.status.code().unwrap_or(-1);
    if code != 0 {
        assert!(!out.exists(), "a failed run must not leave an output file");
    }
    (code, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "probelab-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cli_model_err(bytes: &[u8]) -> String {
    let p = tempdir().join("model.gguf");
    std::fs::write(&p, bytes).unwrap();
    let (code, err) = cli_extract(&p, "name\nParis\n");
    assert_eq!(code, 2, "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn not_a_gguf() {
    let html = b"<!DOCTYPE html><html>404 Not Found</html>".to_vec();
    let e = load_err(html.clone());
    assert!(e.contains("not a GGUF file") && e.contains("'GGUF'"), "{e}");
    assert!(cli_model_err(&html).contains("not a GGUF file"));
    assert!(load_err(vec![]).contains("too short"));
}

#[test]
fn truncated_gguf() {
    let good = tiny_llama(GgmlDType::Q4_0, "llama", 1);
    // Cut inside the tensor data, and inside the header.
    for cut in [good.len() - 100, good.len() / 2, 40] {
        let e = load_err(good[..cut].to_vec());
        assert!(e.contains("truncated"), "cut at {cut}: {e}");
    }
    assert!(cli_model_err(&good[..good.len() / 2]).contains("truncated"));
}

#[test]
fn another_architecture() {
    let gguf = tiny_llama(GgmlDType::Q8_0, "gpt2", 1);
    let e = load_err(gguf.clone());
    assert!(e.contains("unsupported model architecture 'gpt2'"), "{e}");
    assert!(cli_model_err(&gguf).contains("architecture 'gpt2'"));
}

#[test]
fn unsupported_quant_type() {
    // A valid file whose first weight claims ggml type 20 (IQ4_NL), which probelab cannot run.
    let mut gguf = tiny_llama(GgmlDType::Q8_0, "llama", 1);
    let name = b"blk.0.attn_q.weight";
    let at = gguf.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    // name, then n_dims (u32) and 2 dims (u64 each), then the type (u32).
    let ty = at + 4 + 16;
    assert_eq!(u32::from_le_bytes(gguf[ty..ty + 4].try_into().unwrap()), 8);
    gguf[ty..ty + 4].copy_from_slice(&20u32.to_le_bytes());
    let e = load_err(gguf.clone());
    assert!(
        e.contains("unsupported quantization type") && e.contains("IQ4_NL"),
        "{e}"
    );
    assert!(cli_model_err(&gguf).contains("IQ4_NL"));
}

#[test]
fn empty_name_and_name_longer_than_context() {
    let model = default_model();
    let (code, err) = cli_extract(&model, "name,country\nParis,FR\n\"  \",XX\n");
    assert_eq!(code, 2);
    assert!(err.contains("empty name"), "{err}");

    // The tiny model has a 64-token context: a long name must be refused by name.
    let p = tempdir().join("tiny.gguf");
    std::fs::write(&p, tiny_llama(GgmlDType::Q8_0, "llama", 1)).unwrap();
    let long = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch ".repeat(3);
    let (code, err) = cli_extract(&p, &format!("name\nParis\n{long}\n"));
    assert_eq!(code, 2);
    assert!(
        err.contains("entity 2") && err.contains("context is 64 tokens"),
        "{err}"
    );
}

#[test]
fn good_run_writes_the_file() {
    let p = tempdir().join("tiny.gguf");
    std::fs::write(&p, tiny_llama(GgmlDType::Q4_1, "llama", 1)).unwrap();
    let (code, err) = cli_extract(&p, "name\nthe cat\nan ant\n");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn plain_name_lists_keep_commas() {
    let names =
        probelab::data::read_names("places.txt", b"Cambridge, United Kingdom\nParis\n\n").unwrap();
    assert_eq!(names, ["Cambridge, United Kingdom", "Paris"]);
    let e = probelab::data::read_names("places.txt", b"Paris\n \nLima\n").unwrap_err();
    assert!(e.to_string().contains("line 2: empty name"), "{e}");
    assert!(probelab::data::read_names("places.txt", b"\n\n").is_err());
}
