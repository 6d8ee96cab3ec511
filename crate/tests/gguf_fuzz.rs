//! GGUF loading under attack: mutated, truncated and inflated versions of a valid small model
//! (header fields, tensor offsets and shapes, string and array lengths, types). Every input must
//! give Ok or a clear error — never a panic, a hang, or an allocation larger than the file
//! justifies (see [`bound`]). The CI run does a fixed number of cases;
//! `PROBELAB_FUZZ_SECS=600 cargo test --release --test gguf_fuzz -- --nocapture` runs longer
//! and prints the execution count. Inputs that panic or over-allocate are written to the temp
//! directory and printed.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::GgmlDType;
use common::*;
use probelab::model::gguf::ModelFile;
use probelab::model::load::LoadedModel;
use probelab::model::LoadOptions;

/// Heap use of one thread while its meter is on: the largest single request and the peak of
/// (bytes allocated − bytes freed) since [`meter_start`]. The counters are thread-local, so the
/// tests in this binary (which cargo runs on several threads) never see each other's
/// allocations, and no atomics are needed. Loading is single-threaded (candle's CPU
/// dequantization and the tokenizer builder do not spawn work), so the loading thread's meter
/// sees everything a load allocates.
#[derive(Clone, Copy, Default, Debug)]
struct Meter {
    on: bool,
    live: isize,
    peak: isize,
    largest: usize,
}

thread_local! {
    // `const` and `Copy` with no destructor: reading it never allocates, so the allocator may.
    static METER: Cell<Meter> = const { Cell::new(Meter { on: false, live: 0, peak: 0, largest: 0 }) };
}

/// Change the calling thread's meter when it is on (`try_with`: TLS may be gone at exit).
fn meter_note(grow: usize, shrink: usize) {
    let _ = METER.try_with(|m| {
        let mut v = m.get();
        if v.on {
            v.live += grow as isize - shrink as isize;
            v.peak = v.peak.max(v.live);
            v.largest = v.largest.max(grow);
            m.set(v);
        }
    });
}

struct CountingAlloc;

// SAFETY: every call is forwarded to `System` unchanged; the meter only reads sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        meter_note(layout.size(), 0);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        meter_note(layout.size(), 0);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        meter_note(0, layout.size());
        System.dealloc(ptr, layout)
    }
    // A growing Vec: counted as its new size replacing the old one (what stays live after the
    // call), and the new size as one request.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        meter_note(new_size, layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn meter_start() {
    METER.with(|m| {
        m.set(Meter {
            on: true,
            ..Meter::default()
        })
    });
}

fn meter_stop() -> Meter {
    METER.with(|m| {
        let v = m.get();
        m.set(Meter::default());
        v
    })
}

/// What a GGUF of `file_bytes` bytes may make the loader allocate, derived from the code:
///
/// `peak ≤ 4·E + PER_FILE_BYTE·B + FIXED`, `largest ≤ 4·E + LARGEST_PER_FILE_BYTE·B + FIXED`
///
/// - **4·E** (E = [`justified_elems`]): f32 copies of weights. `Llama::load` dequantizes the
///   norm vectors to f32, and `Linear` keeps f32 copies of the matrices when they fit
///   `LoadOptions::f32_cache_bytes` (filled lazily by the forward pass, so a load alone holds
///   less). E counts the elements of tensors whose data lies inside the file, each byte of
///   tensor data once: declaring the same bytes twice justifies nothing more. Since the densest
///   type (Q2K) packs ≈ 3 elements per byte, 4·E ≤ 13·B.
/// - **PER_FILE_BYTE·B** (96): everything else that grows with the file, whichever kind of
///   bytes it is made of. Tensor data: the quantized tensors kept (≤ 1×, their data lies in
///   the file, now without overlaps) plus, while one is read, candle's raw buffer and its typed
///   copy (≤ 2×). Metadata: every array element (≥ 1 byte on disk, a u8) becomes a `Value`
///   (`size_of::<Value>()` = 32) in a Vec grown by doubling: ≤ 64 bytes per file byte, the
///   worst kind. Tokens (≥ 8 bytes each on disk: the u64 length) are copied into a
///   `Vec<String>`, the vocabulary map and the BPE model's two maps and merge map, each entry
///   ≤ ~80 bytes with hash-table slack: ≤ ~30 bytes per file byte (measured 10× for gpt2,
///   22× for SentencePiece in `crafted_attacks_stay_within_the_bound`). Max 64 + 3, rounded
///   up to 96 for allocator-visible slack (hash tables grow by doubling too).
/// - **FIXED** (4 MiB): the 1 MiB buffer of the sha256 pass, plus tokenizer and hash-map
///   set-up that does not depend on the input.
///
/// The largest single request: a `Vec<Value>` of a metadata array, ≤ 2 × 32 bytes per file byte
/// (a token hash table or a tensor's raw buffer is smaller), or one dequantized f32 tensor.
fn bound(file_bytes: usize, justified_elems: usize) -> Bound {
    Bound {
        peak: 4 * justified_elems + PER_FILE_BYTE * file_bytes + FIXED,
        largest: 4 * justified_elems + LARGEST_PER_FILE_BYTE * file_bytes + FIXED,
    }
}

const PER_FILE_BYTE: usize = 96;
const LARGEST_PER_FILE_BYTE: usize = 2 * std::mem::size_of::<Value>();
const FIXED: usize = 4 << 20;

#[derive(Debug, Clone, Copy)]
struct Bound {
    peak: usize,
    largest: usize,
}

/// Elements of the tensors whose data lies inside `bytes` (a GGUF): [`elems_in`] of the header
/// as `ModelFile::read` parses it. 0 for a header it refuses: the loader then stops before
/// reading any tensor, so nothing justifies tensor memory. (`ModelFile::read` rather than
/// candle's `Content::read`, which panics on some headers that `ModelFile::read` refuses.)
fn justified_elems(bytes: &[u8]) -> usize {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        ModelFile::read(&mut Cursor::new(bytes))
    }));
    match parsed {
        Ok(Ok(file)) => elems_in(&file.content, bytes.len() as u64),
        _ => 0,
    }
}

/// Elements of the tensors of `content` whose data lies inside a file of `file_size` bytes,
/// each byte counted once: in offset order, a tensor counts only the bytes no earlier tensor
/// covered, at its own elements per byte.
fn elems_in(content: &Content, file_size: u64) -> usize {
    let mut ranges: Vec<(u64, u64, usize)> = content
        .tensor_infos
        .values()
        .filter_map(|t| {
            let elems = t
                .shape
                .dims()
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))?;
            let (block, size) = (t.ggml_dtype.block_size(), t.ggml_dtype.type_size());
            if elems % block != 0 {
                return None;
            }
            let len = ((elems / block) as u64).checked_mul(size as u64)?;
            let start = content.tensor_data_offset.checked_add(t.offset)?;
            let end = start.checked_add(len)?;
            (end <= file_size).then_some((start, end, elems))
        })
        .collect();
    ranges.sort();
    let (mut covered_to, mut total) = (0u64, 0u128);
    for (start, end, elems) in ranges {
        let new_bytes = end.saturating_sub(start.max(covered_to));
        if new_bytes > 0 {
            total += elems as u128 * new_bytes as u128 / (end - start) as u128;
            covered_to = end;
        }
    }
    total as usize
}

/// Makes the process-wide one-time costs happen before any case is measured: with
/// RUST_BACKTRACE set, candle attaches a backtrace to its errors and the loader's messages
/// format it, and the first formatting loads the binary's symbol tables (≈ 30 MB, kept for
/// the life of the process). That belongs to no input.
fn warm_up() {
    let _ = std::backtrace::Backtrace::capture().to_string();
}

/// Checks one case's meter against [`bound`]; the error names the numbers.
fn check_alloc(m: &Meter, file_bytes: usize, elems: usize) -> Result<(), String> {
    let b = bound(file_bytes, elems);
    let peak = m.peak.max(0) as usize;
    if peak > b.peak || m.largest > b.largest {
        return Err(format!(
            "peak {peak} B live (bound {}), largest single allocation {} B (bound {}), for a \
             {file_bytes}-byte file with {elems} justified tensor elements",
            b.peak, m.largest, b.largest
        ));
    }
    Ok(())
}

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

/// A tiny llama with a SentencePiece ("llama") tokenizer, so the fuzzer also walks that path
/// (scores, token types, merges derived from scores).
fn tiny_llama_spm(dtype: GgmlDType) -> Vec<u8> {
    let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    tokens.extend(["▁", "a", "n", "▁a", "an", "▁an", "t", "h", "th", "▁th"].map(String::from));
    let n = tokens.len();
    let types: Vec<i32> = (0..n)
        .map(|i| match i {
            0 => 2,
            1 | 2 => 3,
            3..=258 => 6,
            _ => 1,
        })
        .collect();
    let scores: Vec<f32> = (0..n).map(|i| -(i as f32)).collect();
    let meta = vec![
        ("tokenizer.ggml.model", Meta::Str("llama".into())),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.scores", Meta::F32s(scores)),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        ("tokenizer.ggml.unknown_token_id", Meta::U32(0)),
        ("tokenizer.ggml.bos_token_id", Meta::U32(1)),
        ("tokenizer.ggml.eos_token_id", Meta::U32(2)),
    ];
    tiny_llama_with(dtype, "llama", 3, (meta, n))
}

/// A case with a figure worth reporting (`score`), kept when it beats the previous one.
#[derive(Clone, Copy, Default)]
struct Worst {
    score: f64,
    case: u64,
    meter: Meter,
    len: usize,
    elems: usize,
}

impl Worst {
    fn keep(&mut self, other: Worst) {
        if other.score > self.score {
            *self = other;
        }
    }

    fn describe(&self) -> String {
        let b = bound(self.len, self.elems);
        format!(
            "{:.3} (case {}: {}-byte file, {} justified elements, peak {} B of bound {}, \
             largest single allocation {} B of bound {})",
            self.score,
            self.case,
            self.len,
            self.elems,
            self.meter.peak,
            b.peak,
            self.meter.largest,
            b.largest
        )
    }
}

/// One case that went wrong, written to the temp directory so it can be replayed.
fn save(kind: &str, case: u64, input: &[u8]) -> String {
    let p = std::env::temp_dir().join(format!("probelab-gguf-{kind}-{case}.gguf"));
    std::fs::write(&p, input).unwrap();
    p.display().to_string()
}

#[test]
fn mutated_ggufs_never_panic_or_overallocate() {
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("Q4_0/gpt2", tiny_llama(GgmlDType::Q4_0, "llama", 3)),
        ("Q4K/gpt2", tiny_llama(GgmlDType::Q4K, "llama", 3)),
        ("F16/gpt2", tiny_llama(GgmlDType::F16, "llama", 3)),
        ("Q8_0/spm", tiny_llama_spm(GgmlDType::Q8_0)),
    ];
    warm_up();
    // The unmutated seeds load: the fuzzer starts from files that work.
    for (name, seed) in &seeds {
        LoadedModel::read(&mut Cursor::new(seed), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    let secs: u64 = std::env::var("PROBELAB_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let min_cases = 1500;
    let mut m = Mutator(0xF022);
    let (mut cases, mut ok) = (0u64, 0u64);
    let mut slowest = (Duration::ZERO, 0u64, "");
    // Figures for the note: the highest peak / file size over all cases and over files of at
    // least 64 KiB (below that the fixed costs dominate the ratio), and the case closest to
    // the bound (the larger of peak and largest single allocation, as a share of its bound).
    let mut worst_any = Worst::default();
    let mut worst_big = Worst::default();
    let mut closest = Worst::default();
    // Keep the default panic message quiet; a panic is reported below with its input.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    while cases < min_cases || Instant::now() < deadline {
        // Replaying `Mutator(state)` for one step gives this case's seed and input again.
        let state = m.0;
        let (seed_name, seed) = &seeds[m.below(seeds.len())];
        let input = mutate(seed, header_len(seed), &mut m);
        let elems = justified_elems(&input);
        let name = format!("case {cases} (Mutator({state:#x}), seed {seed_name})");
        let mut reader = Cursor::new(&input[..]);
        // Options that cache f32 weights, as the CLI does; a load alone fills no cache.
        let opts = LoadOptions::default();
        let t = Instant::now();
        meter_start();
        let result = catch_unwind(AssertUnwindSafe(|| {
            LoadedModel::read(&mut reader, &opts).map(|_| ())
        }));
        let meter = meter_stop();
        let took = t.elapsed();
        if took > slowest.0 {
            slowest = (took, cases, seed_name);
        }
        let seen = Worst {
            score: meter.peak as f64 / input.len().max(1) as f64,
            case: cases,
            meter,
            len: input.len(),
            elems,
        };
        worst_any.keep(seen);
        if input.len() >= 64 << 10 {
            worst_big.keep(seen);
        }
        let b = bound(input.len(), elems);
        closest.keep(Worst {
            score: (meter.peak as f64 / b.peak as f64).max(meter.largest as f64 / b.largest as f64),
            ..seen
        });
        cases += 1;
        match result {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => assert!(!e.to_string().is_empty()),
            Err(_) => {
                failure = Some(format!(
                    "{name} panicked; input saved to {}",
                    save("crash", cases - 1, &input)
                ));
                break;
            }
        }
        if let Err(msg) = check_alloc(&meter, input.len(), elems) {
            failure = Some(format!(
                "{name} over-allocated: {msg}; input saved to {}",
                save("alloc", cases - 1, &input)
            ));
            break;
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "{cases} mutated GGUFs: {ok} loaded, {} refused with an error; slowest {:?} (case {}, seed {})",
        cases - ok,
        slowest.0,
        slowest.1,
        slowest.2
    );
    eprintln!("highest peak / file size: {}", worst_any.describe());
    eprintln!(
        "highest peak / file size, files ≥ 64 KiB: {}",
        worst_big.describe()
    );
    eprintln!("closest to the bound (share of it): {}", closest.describe());
    if let Some(f) = failure {
        panic!("{f}");
    }
    assert!(
        slowest.0 < Duration::from_secs(5),
        "case {} took {:?} (a hang?)",
        slowest.1,
        slowest.0
    );
}

/// The meter is known to work: a deliberate allocation far beyond what a small file justifies
/// is counted and fails the check, and freeing it brings the live count back.
#[test]
fn the_allocation_meter_catches_a_big_allocation() {
    let file = tiny_llama(GgmlDType::Q4_0, "llama", 3);
    let elems = justified_elems(&file);
    assert!(elems > 0, "the tiny model's tensors lie inside the file");
    let big = bound(file.len(), elems).peak + 1;
    meter_start();
    let v = std::hint::black_box(vec![1u8; big]);
    let during = METER.with(Cell::get);
    drop(v);
    let after = meter_stop();
    assert!(
        during.largest >= big && during.peak >= big as isize,
        "{during:?}"
    );
    assert!(after.live < big as isize, "{after:?}");
    let err = check_alloc(&after, file.len(), elems).expect_err("the bound must be exceedable");
    assert!(
        err.contains(&format!("largest single allocation {big} B")),
        "{err}"
    );
    // Declaring the same bytes again justifies nothing: 499 more blocks pointing at block 0's
    // data count no more elements than the one-block file (`ModelFile::read` now refuses such
    // a file; the count must not depend on that).
    let (tok, n) = gpt2_tokenizer_meta();
    let elems = |bytes: Vec<u8>| {
        let content = Content::read(&mut Cursor::new(&bytes)).unwrap();
        elems_in(&content, bytes.len() as u64)
    };
    assert_eq!(
        elems(mini_llama(500, true, vec![], (tok.clone(), n))),
        elems(mini_llama(1, false, vec![], (tok, n)))
    );
}

/// A small all-F32 llama for the crafted attacks below: `layers` blocks of width 64, `extra`
/// metadata appended, token_embd with min(vocab, 1000) rows (a bigger vocabulary is then
/// refused, but only after the tokenizer is built). With `shared`, blocks 1.. have no bytes
/// of their own: their tensor infos all point at offset 0, i.e. at other tensors' data.
fn mini_llama(
    layers: usize,
    shared: bool,
    extra: Vec<(&'static str, Meta)>,
    (tokenizer, vocab): (Vec<(&'static str, Meta)>, usize),
) -> Vec<u8> {
    let vocab = vocab.min(1000);
    let (d, ffn, heads) = (64usize, 128usize, 4usize);
    let t = |name: String, dims: Vec<u64>, real: bool| {
        let n: u64 = dims.iter().product();
        RawTensor {
            name,
            dims,
            ggml_type: 0,
            data: if real {
                (0..n)
                    .flat_map(|i| (1.0 + (i % 7) as f32 / 64.0).to_le_bytes())
                    .collect()
            } else {
                Vec::new()
            },
        }
    };
    let (d64, ffn64) = (d as u64, ffn as u64);
    let mut shared_tensors = Vec::new();
    let mut tensors = vec![
        t("token_embd.weight".into(), vec![vocab as u64, d64], true),
        t("output_norm.weight".into(), vec![d64], true),
    ];
    for i in 0..layers {
        let real = !shared || i == 0;
        let list = if real {
            &mut tensors
        } else {
            &mut shared_tensors
        };
        for (n, dims) in [
            ("attn_norm", vec![d64]),
            ("attn_q", vec![d64, d64]),
            ("attn_k", vec![d64, d64]),
            ("attn_v", vec![d64, d64]),
            ("attn_output", vec![d64, d64]),
            ("ffn_norm", vec![d64]),
            ("ffn_gate", vec![ffn64, d64]),
            ("ffn_up", vec![ffn64, d64]),
            ("ffn_down", vec![d64, ffn64]),
        ] {
            list.push(t(format!("blk.{i}.{n}.weight"), dims, real));
        }
    }
    // Tensors without data first: write_gguf gives them all offset 0.
    shared_tensors.extend(tensors);
    let mut meta = vec![
        ("general.architecture", Meta::Str("llama".into())),
        ("llama.block_count", Meta::U32(layers as u32)),
        ("llama.embedding_length", Meta::U32(d as u32)),
        ("llama.feed_forward_length", Meta::U32(ffn as u32)),
        ("llama.attention.head_count", Meta::U32(heads as u32)),
        ("llama.context_length", Meta::U32(64)),
    ];
    meta.extend(tokenizer);
    meta.extend(extra);
    write_gguf(&meta, &shared_tensors)
}

/// One load under the meter: (result, meter, justified elements).
fn metered_load(input: &[u8]) -> (std::thread::Result<Result<(), String>>, Meter, usize) {
    let elems = justified_elems(input);
    let mut reader = Cursor::new(input);
    let opts = LoadOptions::default();
    meter_start();
    let result = catch_unwind(AssertUnwindSafe(|| {
        LoadedModel::read(&mut reader, &opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }));
    (result, meter_stop(), elems)
}

/// `mini_llama` with metadata key "junk": an array of `n` u8 values (1 byte each on disk).
fn with_u8_array(n: usize) -> Vec<u8> {
    let (tok, v) = gpt2_tokenizer_meta();
    let mut b = mini_llama(
        1,
        false,
        vec![("junk", Meta::I32s(vec![7; n / 4]))],
        (tok, v),
    );
    let at = b
        .windows(12)
        .position(|w| w == b"\x04\0\0\0\0\0\0\0junk")
        .unwrap()
        + 12;
    // value type 9 (array), element type 5 (i32) → 0 (u8), length n/4 → n.
    b[at + 4..at + 8].copy_from_slice(&0u32.to_le_bytes());
    b[at + 8..at + 16].copy_from_slice(&((n / 4 * 4) as u64).to_le_bytes());
    b
}

/// A gpt2 tokenizer of `count` distinct hex tokens and merges between them.
fn many_gpt2_tokens(count: usize) -> (Vec<(&'static str, Meta)>, usize) {
    let tokens: Vec<String> = (0..count).map(|i| format!("{i:x}")).collect();
    let merges = (16..count)
        .map(|i| format!("{:x} {:x}", i / 16, i % 16))
        .collect();
    let meta = vec![
        ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.merges", Meta::Strs(merges)),
    ];
    (meta, count)
}

/// A SentencePiece tokenizer with the given pieces, all scored 0.
fn spm_tokens(tokens: Vec<String>) -> (Vec<(&'static str, Meta)>, usize) {
    let count = tokens.len();
    let meta = vec![
        ("tokenizer.ggml.model", Meta::Str("llama".into())),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.scores", Meta::F32s(vec![0.0; count])),
    ];
    (meta, count)
}

/// Inputs built to hit each term of [`bound`] hard, with what loading them must give. The
/// overlapping tensors, the zero alignment, the overflowing shape and the huge block count
/// were findings of this test (the first held 169× the file, the second panicked in candle,
/// the last allocated 1.3 GB for a 744 kB file); `ModelFile::read` now refuses them before
/// allocating.
#[test]
fn crafted_attacks_stay_within_the_bound() {
    warm_up();
    let (tok, n) = gpt2_tokenizer_meta();
    let plain = |extra: Vec<(&'static str, Meta)>| mini_llama(1, false, extra, (tok.clone(), n));
    let mut overflow = plain(vec![]);
    // token_embd's row count (its second dimension in ggml order) → 2^62: rows × 64 overflows.
    let name = b"\x11\0\0\0\0\0\0\0token_embd.weight\x02\0\0\0";
    let at = overflow
        .windows(name.len())
        .position(|w| w == name)
        .unwrap()
        + name.len()
        + 8;
    overflow[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("a valid mini llama", plain(vec![]), None),
        ("a 1 MiB array of u8 metadata", with_u8_array(1 << 20), None),
        (
            "1 Mi empty strings in metadata",
            plain(vec![("junk", Meta::Strs(vec![String::new(); 1 << 20]))]),
            None,
        ),
        (
            "50k gpt2 tokens and merges",
            mini_llama(1, false, vec![], many_gpt2_tokens(50_000)),
            Some("50000 tokens but token_embd has 1000 rows"),
        ),
        (
            "50k SentencePiece tokens",
            mini_llama(
                1,
                false,
                vec![],
                spm_tokens((0..50_000).map(|i| format!("{i:x}")).collect()),
            ),
            Some("50000 tokens but token_embd has 1000 rows"),
        ),
        (
            "500 blocks whose tensors all point at the same bytes",
            mini_llama(500, true, vec![], (tok.clone(), n)),
            Some("overlap"),
        ),
        (
            "general.alignment = 0",
            plain(vec![("general.alignment", Meta::U32(0))]),
            Some("general.alignment is 0"),
        ),
        (
            "general.alignment = 3",
            plain(vec![("general.alignment", Meta::U32(3))]),
            Some("general.alignment is 3"),
        ),
        (
            // Found by the 10-minute run (case 4262, Mutator(0x48e739a039e43035): block_count
            // 1048578): the expected tensor names were listed for every block before the first
            // was looked up, 805 MB in one Vec, 1.3 GB peak for a 744 kB file.
            // 2^18 blocks here: enough to break the bound tenfold were it to come back, without
            // the gigabytes 2^24 (the largest count accepted) would take.
            "llama.block_count = 2^18 with one block in the file",
            plain(vec![("llama.block_count", Meta::U32(1 << 18))]),
            Some("tensor 'blk.1.attn_norm.weight' is missing"),
        ),
        (
            "token_embd with 2^62 rows of 64",
            overflow,
            Some("more elements than can be addressed"),
        ),
    ];
    for (name, input, refusal) in cases {
        let (result, meter, elems) = metered_load(&input);
        let result = result.unwrap_or_else(|_| panic!("{name}: the loader panicked"));
        match (refusal, &result) {
            (None, Ok(())) => {}
            (Some(want), Err(got)) if got.contains(want) => {}
            _ => panic!("{name}: expected {refusal:?}, got {result:?}"),
        }
        eprintln!(
            "{name}: {} B file, peak {} B ({:.1}×), largest {} B",
            input.len(),
            meter.peak,
            meter.peak as f64 / input.len() as f64,
            meter.largest
        );
        if let Err(msg) = check_alloc(&meter, input.len(), elems) {
            panic!("{name} over-allocated: {msg}");
        }
    }
}

/// Found by this bound: `tokenizer::sentencepiece_merges` clones both halves of every merge, so
/// pieces "a", "aa", … "a"×n (≈ n²/2 bytes on disk) made ≈ n³/3 bytes of clones (n = 600: a
/// 0.5 MB file peaked at ≈ 90 MB, 177×; n = 3000 would need ≈ 9 GB). Such a vocabulary is now
/// refused, with a message, before the strings are copied.
#[test]
fn sentencepiece_merges_stay_within_the_bound() {
    warm_up();
    let mut tokens = vec!["<unk>".to_string()];
    tokens.extend((1..=600).map(|m| "a".repeat(m)));
    let input = mini_llama(1, false, vec![], spm_tokens(tokens));
    let (result, meter, elems) = metered_load(&input);
    let message = result.expect("the loader panicked").unwrap_err();
    assert!(message.contains("pieces nested inside pieces"), "{message}");
    if let Err(msg) = check_alloc(&meter, input.len(), elems) {
        panic!("SentencePiece pieces a..a×600 over-allocated: {msg}");
    }
}
