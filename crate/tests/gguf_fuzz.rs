//! GGUF loading under attack: mutated, truncated and inflated versions of a valid small model
//! (header fields, tensor offsets and shapes, string and array lengths, types). Every input must
//! give Ok or a clear error — never a panic or a hang. The CI run does a fixed number of cases;
//! `PROBELAB_FUZZ_SECS=600 cargo test --release --test gguf_fuzz -- --nocapture` runs longer
//! and prints the execution count. Inputs that panic are written to target/ and printed.

mod common;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use candle_core::quantized::GgmlDType;
use common::*;
use probelab::load::LoadedModel;
use probelab::model::LoadOptions;

struct Mutator(u64);
impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The byte length of the header (everything before the tensor data), where mutations bite.
fn header_len(bytes: &[u8]) -> usize {
    let name = b"blk.1.ffn_down.weight";
    bytes
        .windows(name.len())
        .rposition(|w| w == name)
        .map(|p| p + name.len() + 4 + 16 + 4 + 8)
        .unwrap_or(bytes.len())
}

fn mutate(seed: &[u8], header: usize, m: &mut Mutator) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = 1 + m.below(4);
    for _ in 0..rounds {
        match m.below(7) {
            // Truncate anywhere.
            0 => b.truncate(m.below(b.len())),
            // Flip bytes in the header.
            1 => {
                for _ in 0..1 + m.below(8) {
                    let at = m.below(header.min(b.len()));
                    if at < b.len() {
                        b[at] ^= 1 << m.below(8);
                    }
                }
            }
            // An absurd u64 (count, length, dimension, offset) somewhere in the header.
            2 | 3 => {
                let at = m.below(header.min(b.len()).saturating_sub(8));
                let v: u64 = match m.below(5) {
                    0 => u64::MAX,
                    1 => 1 << (32 + m.below(31)),
                    2 => m.next(),
                    3 => 0,
                    _ => (b.len() as u64) * (1 + m.below(1000) as u64),
                };
                if at + 8 <= b.len() {
                    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            // An absurd u32 (type tag, dimension count, ggml type).
            4 => {
                let at = m.below(header.min(b.len()).saturating_sub(4));
                let v = [u32::MAX, 13, 20, 31, 1 << 20, m.next() as u32][m.below(6)];
                if at + 4 <= b.len() {
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            // Splice a chunk of the file into another place.
            5 => {
                let (from, to) = (m.below(b.len()), m.below(b.len()));
                let n = m.below(64).min(b.len() - from.max(to));
                let chunk = b[from..from + n].to_vec();
                b[to..to + n].copy_from_slice(&chunk);
            }
            // Append garbage.
            _ => (0..m.below(256)).for_each(|_| b.push(m.next() as u8)),
        }
    }
    b
}

#[test]
fn mutated_ggufs_never_panic() {
    let seeds: Vec<Vec<u8>> = [GgmlDType::Q4_0, GgmlDType::Q4K, GgmlDType::F16]
        .iter()
        .map(|&dt| tiny_llama(dt, "llama", 3))
        .collect();
    let secs: u64 = std::env::var("PROBELAB_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let min_cases = 1500;
    let mut m = Mutator(0xF022);
    let (mut cases, mut ok, mut slowest) = (0u64, 0u64, Duration::ZERO);
    // Keep the default panic message quiet; a panic is reported below with its input.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut crash = None;
    while cases < min_cases || Instant::now() < deadline {
        let seed = &seeds[m.below(seeds.len())];
        let input = mutate(seed, header_len(seed), &mut m);
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            LoadedModel::read(
                &mut Cursor::new(input.clone()),
                &LoadOptions { f32_cache_bytes: 0 },
            )
            .map(|_| ())
        }));
        slowest = slowest.max(t.elapsed());
        cases += 1;
        match result {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => assert!(!e.to_string().is_empty()),
            Err(_) => {
                crash = Some(input);
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "{cases} mutated GGUFs: {ok} loaded, {} refused with an error; slowest {slowest:?}",
        cases - ok
    );
    if let Some(input) = crash {
        let p = std::env::temp_dir().join(format!("probelab-gguf-crash-{cases}.gguf"));
        std::fs::write(&p, &input).unwrap();
        panic!("case {cases} panicked; input saved to {}", p.display());
    }
    assert!(
        slowest < Duration::from_secs(5),
        "a case took {slowest:?} (a hang?)"
    );
}
