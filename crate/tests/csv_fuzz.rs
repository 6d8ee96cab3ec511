//! The dataset reader under attack: random bytes, wrong encodings, enormous lines, formula-like
//! cells and a million rows. Every input gives a dataset or a clear error, never a panic.

use std::panic::{catch_unwind, AssertUnwindSafe};

use probelab::data::{read_dataset_csv, read_names, OnBadRows};

struct Rng(u64);
impl Rng {
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

const GOOD: &str = "name,latitude,longitude,continent\nParis,48.85,2.35,Europe\n\"Cambridge, United Kingdom\",52.2,0.12,Europe\nLima,-12.05,-77.04,South America\n";

fn check(bytes: &[u8]) {
    let r = catch_unwind(AssertUnwindSafe(|| {
        for on_bad in [OnBadRows::Skip, OnBadRows::Stop] {
            if let Err(e) = read_dataset_csv("fuzz", bytes, on_bad) {
                assert!(!e.to_string().is_empty());
            }
        }
        let _ = read_names("fuzz.csv", bytes);
        let _ = read_names("fuzz.txt", bytes);
    }));
    if r.is_err() {
        let p = std::env::temp_dir().join("probelab-csv-crash.csv");
        std::fs::write(&p, bytes).unwrap();
        panic!(
            "the dataset reader panicked; input saved to {}",
            p.display()
        );
    }
}

#[test]
fn random_and_mutated_csvs_never_panic() {
    let mut rng = Rng(7);
    let pieces: [&[u8]; 12] = [
        b",",
        b"\"",
        b"\n",
        b"\r\n",
        b"\xef\xbb\xbf",
        b"=cmd|' /C calc'!A0",
        b"-91",
        b"1e309",
        b"NaN",
        b"\xff\xfe",
        b"year",
        b"lat",
    ];
    for case in 0..4000 {
        let bytes: Vec<u8> = match case % 3 {
            // Random bytes.
            0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
            // A good file with pieces spliced in.
            1 => {
                let mut b = GOOD.as_bytes().to_vec();
                for _ in 0..1 + rng.below(6) {
                    let at = rng.below(b.len());
                    let piece = pieces[rng.below(pieces.len())];
                    b.splice(at..at, piece.iter().copied());
                }
                b
            }
            // Random tokens from the pieces.
            _ => (0..rng.below(40))
                .flat_map(|_| pieces[rng.below(pieces.len())].to_vec())
                .collect(),
        };
        check(&bytes);
    }
    // UTF-16 (a wrong encoding) is refused with a message that says so.
    let utf16: Vec<u8> = GOOD.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let e = read_dataset_csv("utf16", &utf16, OnBadRows::Stop)
        .unwrap_err()
        .to_string();
    assert!(e.to_lowercase().contains("utf-8"), "{e}");
}

#[test]
fn formula_cells_stay_plain_text() {
    let csv = "name,latitude,longitude\n\"=HYPERLINK(\"\"http://x\"\")\",1,2\n+SUM(A1),3,4\n";
    let (d, problems) = read_dataset_csv("formulas", csv.as_bytes(), OnBadRows::Stop).unwrap();
    assert!(problems.is_empty());
    assert_eq!(d.names, ["=HYPERLINK(\"http://x\")", "+SUM(A1)"]);
}

#[test]
fn an_enormous_line_and_a_million_rows() {
    let long = format!("name,latitude,longitude\n{},1,2\n", "x".repeat(5_000_000));
    check(long.as_bytes());
    let mut big = String::from("name,latitude,longitude\n");
    for i in 0..1_000_000 {
        big.push_str(&format!(
            "place {i},{},{}\n",
            (i % 180) as f64 - 89.5,
            (i % 360) as f64 - 179.5
        ));
    }
    let (d, problems) = read_dataset_csv("million", big.as_bytes(), OnBadRows::Stop).unwrap();
    assert_eq!(d.len(), 1_000_000);
    assert!(problems.is_empty());
}
