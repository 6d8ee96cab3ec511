//! Activations from elsewhere (`probelab fit` on files other tools wrote): NumPy's own .npy and
//! .npz files (tests/fixtures/import, written by tests/fixtures/make/import_fixtures.py),
//! safetensors arrays either way round, HF's stacked `hidden_states`, Probelab shards with a
//! manifest, the random-init control from a second file, and every kind of bad input.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use probelab::extract::acts::{self, ActsMeta, StoreAs};
use probelab::extract::import::{self, ImportOptions, Layout, Manifest, ShardEntry};
use probelab::extract::{Activations, Pooling};
use safetensors::tensor::{Dtype, TensorView};

const NAMES: [&str; 5] = ["Paris", "Lima", "Cairo", "Oslo", "Hanoi"];

/// What the NumPy fixtures hold: v(layer, entity, j) = (1000 layer + 10 entity + j) / 8.
fn v(l: usize, e: usize, j: usize) -> f32 {
    (1000 * l + 10 * e + j) as f32 / 8.0
}

fn names() -> Vec<String> {
    NAMES.iter().map(|s| s.to_string()).collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("probelab-import-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn with_names() -> ImportOptions {
    ImportOptions {
        names: Some(names()),
        ..Default::default()
    }
}

fn err(r: probelab::Result<import::Imported>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// The fixture's values at every layer, entity and dimension.
fn assert_fixture_values(a: &Activations) {
    assert_fixture_values_as(a, |x| x)
}

/// The same, each value as it was stored (`stored` rounds it as the file's dtype did).
fn assert_fixture_values_as(a: &Activations, stored: fn(f32) -> f32) {
    assert_eq!((a.n_layers, a.n_entities, a.d_model), (3, 5, 3));
    for l in 0..4 {
        for e in 0..5 {
            let want: Vec<f32> = (0..3).map(|j| stored(v(l, e, j))).collect();
            assert_eq!(a.vector(l, e), &want[..], "layer {l}, entity {e}");
        }
    }
}

#[test]
fn numpy_npy_layers_first_little_and_big_endian() {
    for f in ["layers_first_f32.npy", "layers_first_f32_be.npy"] {
        let got = import::read(&fixture(&format!("import/{f}")), &with_names()).unwrap();
        assert_fixture_values(&got.acts);
        assert_eq!(got.meta.names, names());
        assert!(
            got.source.format.contains("[layers+1, entities, d]"),
            "{}",
            got.source.format
        );
        assert_eq!(got.source.tool, import::NOT_STATED);
    }
}

#[test]
fn numpy_npz_entities_first_with_names_and_provenance() {
    // Compressed (deflate), f64, [entities, layers+1, d]; the names and provenance are arrays in
    // the same file.
    let got = import::read(
        &fixture("import/entities_first_f64.npz"),
        &Default::default(),
    )
    .unwrap();
    assert_fixture_values(&got.acts);
    assert_eq!(got.meta.names, names());
    assert!(got.source.format.contains("[entities, layers+1, d]"));
    assert_eq!(got.source.tool, "numpy fixture");
    assert_eq!(got.source.model_id, "example/model");
    assert_eq!(got.source.prompt, "{name}");
    assert_eq!(got.source.pool, "last");
    // A flag overrides what the file says.
    let opts = ImportOptions {
        model_id: Some("other/model".into()),
        ..Default::default()
    };
    let got = import::read(&fixture("import/entities_first_f64.npz"), &opts).unwrap();
    assert_eq!(got.source.model_id, "other/model");
    assert_eq!(got.meta.model_name, "other/model");
}

#[test]
fn an_ambiguous_shape_needs_the_layout_flag() {
    // [5, 5, 3] with 5 names: every axis-0 slice is layer 0 of the layers-first fixture.
    let path = fixture("import/ambiguous_f16.npy");
    let e = err(import::read(&path, &with_names()));
    assert!(
        e.contains("--layout layers-first") && e.contains("[5, 5, 3]"),
        "{e}"
    );
    let lf = import::read(
        &path,
        &ImportOptions {
            layout: Layout::LayersFirst,
            ..with_names()
        },
    )
    .unwrap();
    let ef = import::read(
        &path,
        &ImportOptions {
            layout: Layout::EntitiesFirst,
            ..with_names()
        },
    )
    .unwrap();
    for a in 0..5 {
        for b in 0..5 {
            let want: Vec<f32> = (0..3).map(|j| v(0, b, j)).collect();
            // Layers first: layer a, entity b is slice a, row b.
            assert_eq!(lf.acts.vector(a, b), &want[..]);
            // Entities first: entity a, layer b is slice a, row b.
            assert_eq!(ef.acts.vector(b, a), &want[..]);
        }
    }
}

#[test]
fn numpy_bytes_names_and_a_version_2_header() {
    let got = import::read(&fixture("import/bytes_names_v2.npz"), &Default::default()).unwrap();
    assert_fixture_values(&got.acts);
    assert_eq!(got.meta.names, names());
}

#[test]
fn numpy_files_we_refuse_say_why() {
    let e = err(import::read(
        &fixture("import/fortran_order.npy"),
        &with_names(),
    ));
    assert!(
        e.contains("Fortran order") && e.contains("ascontiguousarray"),
        "{e}"
    );
    let e = err(import::read(
        &fixture("import/object_names.npz"),
        &Default::default(),
    ));
    assert!(e.contains("names.npy") && e.contains("object array"), "{e}");
}

#[test]
fn a_nan_is_named_by_layer_and_entity() {
    let e = err(import::read(
        &fixture("import/nan_at_l2_e3.npz"),
        &Default::default(),
    ));
    assert!(
        e.contains("NaN at layer 2, entity 4 ('Oslo')") && e.contains("nan_at_l2_e3.npz"),
        "{e}"
    );
}

#[test]
fn a_format_we_do_not_read_says_which_we_do() {
    let e = err(import::read(&fixture("import/names.txt"), &with_names()));
    assert!(
        e.contains("'.txt' is not a format") && e.contains(".npy") && e.contains(".npz"),
        "{e}"
    );
    assert!(
        e.contains("safetensors") && e.contains("manifest.json"),
        "{e}"
    );
    // A file that claims to be .npy but is not.
    let d = tmp("not-npy");
    std::fs::write(d.join("a.npy"), b"hello").unwrap();
    let e = err(import::read(&d.join("a.npy"), &with_names()));
    assert!(e.contains("not an .npy file"), "{e}");
}

#[test]
fn shapes_that_do_not_match_the_names() {
    let path = fixture("import/layers_first_f32.npy");
    let three = ImportOptions {
        names: Some(names()[..3].to_vec()),
        ..Default::default()
    };
    let e = err(import::read(&path, &three));
    assert!(
        e.contains("[4, 5, 3]") && e.contains("3 names") && e.contains("neither"),
        "{e}"
    );
    // The stated layout puts 4 entities on the axis of 5.
    let e = err(import::read(
        &path,
        &ImportOptions {
            layout: Layout::EntitiesFirst,
            ..with_names()
        },
    ));
    assert!(
        e.contains("4 entities (entities first)") && e.contains("5 names"),
        "{e}"
    );
    // No names at all.
    let e = err(import::read(&path, &Default::default()));
    assert!(e.contains("--names"), "{e}");
}

#[test]
fn names_file_and_file_names_must_agree_row_by_row() {
    let mut other = names();
    other[2] = "Kairo".into();
    let e = err(import::read(
        &fixture("import/entities_first_f64.npz"),
        &ImportOptions {
            names: Some(other),
            ..Default::default()
        },
    ));
    assert!(
        e.contains("row 3") && e.contains("'Cairo'") && e.contains("'Kairo'"),
        "{e}"
    );
    // Against the dataset: the first differing row, or the counts.
    let (imported, dataset) = (
        import::read(&fixture("import/layers_first_f32.npy"), &with_names()).unwrap(),
        probelab::data::load_builtin("world-places-200").unwrap(),
    );
    let e = import::check_dataset(&imported.meta, &dataset)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 1") && e.contains("'Paris'") && e.contains(&dataset.names[0]),
        "{e}"
    );
}

/// A safetensors file with the given tensors (f32, or f16 when asked) and metadata.
fn write_safetensors(
    path: &Path,
    tensors: &[(&str, Vec<usize>, &[f32], bool)],
    md: &[(&str, &str)],
) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v, f16)| {
            if *f16 {
                v.iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect()
            } else {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            }
        })
        .collect();
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, shape, _, f16), b)| {
            let dt = if *f16 { Dtype::F16 } else { Dtype::F32 };
            (*n, TensorView::new(dt, shape.clone(), b).unwrap())
        })
        .collect();
    let md: HashMap<String, String> = md
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, &Some(md)).unwrap()).unwrap();
}

fn fixture_values(entities_first: bool) -> Vec<f32> {
    let mut out = Vec::new();
    if entities_first {
        for e in 0..5 {
            for l in 0..4 {
                out.extend((0..3).map(|j| v(l, e, j)));
            }
        }
    } else {
        for l in 0..4 {
            for e in 0..5 {
                out.extend((0..3).map(|j| v(l, e, j)));
            }
        }
    }
    out
}

#[test]
fn safetensors_arrays_either_way_round_and_hf_hidden_states() {
    let d = tmp("st");
    let names_json = serde_json::to_string(&names()).unwrap();
    // [entities, layers+1, d] in f16 under any name, with a token table beside it (ignored).
    let ef = fixture_values(true);
    write_safetensors(
        &d.join("ef.safetensors"),
        &[
            ("acts", vec![5, 4, 3], &ef, true),
            ("scale", vec![2], &[1.0, 2.0], false),
            ("mask", vec![1, 1, 2], &[1.0, 0.0], false),
        ],
        &[
            ("names", &names_json),
            ("tool", "nnsight 0.5"),
            ("model_id", "m/x"),
            ("pool", "mean"),
        ],
    );
    let got = import::read(
        &d.join("ef.safetensors"),
        &ImportOptions {
            tensor: Some("acts".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_fixture_values_as(&got.acts, |x| half::f16::from_f32(x).to_f32());
    assert_eq!(
        (got.source.tool.as_str(), got.source.pool.as_str()),
        ("nnsight 0.5", "mean")
    );
    assert_eq!(got.meta.pooling, Pooling::Mean);
    // Two 3-d float arrays and none named as activations: which one is asked.
    let e = err(import::read(&d.join("ef.safetensors"), &Default::default()));
    assert!(
        e.contains("--tensor") && e.contains("'acts' [5, 4, 3]"),
        "{e}"
    );

    // HF's stacked hidden_states: [layers+1, entities, d] whatever the shape suggests: here
    // 4 names and 4 layers + embedding, which would otherwise be ambiguous.
    let lf: Vec<f32> = (0..4)
        .flat_map(|l| (0..4).flat_map(move |e| (0..3).map(move |j| v(l, e, j))))
        .collect();
    let four = serde_json::to_string(&names()[..4]).unwrap();
    write_safetensors(
        &d.join("hf.safetensors"),
        &[("hidden_states", vec![4, 4, 3], &lf, false)],
        &[("names", &four)],
    );
    let got = import::read(&d.join("hf.safetensors"), &Default::default()).unwrap();
    for l in 0..4 {
        for e in 0..4 {
            assert_eq!(
                got.acts.vector(l, e),
                &(0..3).map(|j| v(l, e, j)).collect::<Vec<_>>()[..]
            );
        }
    }
    // A per-token array (not pooled) is refused with what to do.
    write_safetensors(
        &d.join("tokens.safetensors"),
        &[(
            "hidden_states",
            vec![4, 5, 1, 3],
            &fixture_values(false),
            false,
        )],
        &[("names", &names_json)],
    );
    let e = err(import::read(
        &d.join("tokens.safetensors"),
        &Default::default(),
    ));
    assert!(e.contains("[4, 5, 1, 3]") && e.contains("pool"), "{e}");
}

/// Probelab activations of `n` entities with distinct values everywhere.
fn probelab_sample(n: usize) -> (Activations, ActsMeta) {
    let (layers, d) = (3, 8);
    let mut rng = Rng(7);
    let acts = Activations {
        n_layers: layers,
        n_entities: n,
        d_model: d,
        data: (0..(layers + 1) * n * d)
            .map(|_| rng.next_f32() * 50.0)
            .collect(),
        tokens_per_entity: (0..n as u32).map(|i| 1 + i % 4).collect(),
        first_token_ids: (0..n as u32).map(|i| 500 + i).collect(),
    };
    let names: Vec<String> = (0..n).map(|i| format!("place {i}")).collect();
    let meta = ActsMeta::new(
        "smol",
        &"ab".repeat(32),
        "{name}",
        Pooling::Last,
        "all",
        names,
    );
    (acts, meta)
}

/// Entities `r` of `a` as their own activations (what a worker extracts for its shard).
fn slice(a: &Activations, m: &ActsMeta, r: std::ops::Range<usize>) -> (Activations, ActsMeta) {
    let d = a.d_model;
    let mut data = Vec::new();
    for l in 0..=a.n_layers {
        data.extend_from_slice(&a.layer(l)[r.start * d..r.end * d]);
    }
    let part = Activations {
        n_layers: a.n_layers,
        n_entities: r.len(),
        d_model: d,
        data,
        tokens_per_entity: a.tokens_per_entity[r.clone()].to_vec(),
        first_token_ids: a.first_token_ids[r.clone()].to_vec(),
    };
    let meta = ActsMeta::new(
        &m.model_name,
        &m.model_sha256,
        &m.prompt_template,
        m.pooling,
        &format!("shard-{}", r.start),
        m.names[r].to_vec(),
    );
    (part, meta)
}

/// A shard directory of `a` cut at `cuts`, the manifest listing `entries` (by default the cuts).
fn write_shards(dir: &Path, a: &Activations, m: &ActsMeta, cuts: &[usize]) -> Manifest {
    let mut shards = Vec::new();
    for w in cuts.windows(2) {
        let (part, meta) = slice(a, m, w[0]..w[1]);
        let file = format!("shard-{:05}.safetensors", w[0]);
        std::fs::write(
            dir.join(&file),
            acts::to_safetensors(&part, &meta, StoreAs::F32).unwrap(),
        )
        .unwrap();
        shards.push(ShardEntry {
            file,
            start: w[0],
            end: w[1],
        });
    }
    // Listed out of order: the reader orders them by their ranges.
    shards.reverse();
    let manifest = Manifest {
        n_entities: a.n_entities,
        shards,
        tool: Some("probelab on ray (tools/cluster)".into()),
        dataset_name: Some("all".into()),
    };
    write_manifest(dir, &manifest);
    manifest
}

fn write_manifest(dir: &Path, m: &Manifest) {
    std::fs::write(
        dir.join(import::MANIFEST_FILE),
        serde_json::to_vec(m).unwrap(),
    )
    .unwrap();
}

#[test]
fn shards_with_a_manifest_merge_into_the_whole() {
    let (whole, meta) = probelab_sample(23);
    let d = tmp("shards");
    write_shards(&d, &whole, &meta, &[0, 7, 8, 16, 23]);
    for path in [d.clone(), d.join(import::MANIFEST_FILE)] {
        let got = import::read(&path, &Default::default()).unwrap();
        assert_eq!(got.acts.data, whole.data, "bit-identical");
        assert_eq!(got.acts.tokens_per_entity, whole.tokens_per_entity);
        assert_eq!(got.acts.first_token_ids, whole.first_token_ids);
        assert_eq!(got.meta.names, meta.names);
        assert_eq!(got.meta.model_sha256, meta.model_sha256);
        assert_eq!(got.meta.dataset_name, "all");
        assert_eq!(got.source.tool, "probelab on ray (tools/cluster)");
        assert_eq!(got.source.format, "4 probelab shards");
    }
}

#[test]
fn a_manifest_with_a_missing_overlapping_or_short_shard() {
    let (whole, meta) = probelab_sample(20);
    // A listed shard whose file is gone.
    let d = tmp("missing");
    write_shards(&d, &whole, &meta, &[0, 10, 20]);
    std::fs::remove_file(d.join("shard-00010.safetensors")).unwrap();
    let e = err(import::read(&d, &Default::default()));
    assert!(
        e.contains("shard 'shard-00010.safetensors' (entities 10..20) is missing"),
        "{e}"
    );
    // Overlapping ranges.
    let d = tmp("overlap");
    let mut m = write_shards(&d, &whole, &meta, &[0, 10, 20]);
    let (part, pmeta) = slice(&whole, &meta, 5..15);
    std::fs::write(
        d.join("extra.safetensors"),
        acts::to_safetensors(&part, &pmeta, StoreAs::F32).unwrap(),
    )
    .unwrap();
    m.shards.push(ShardEntry {
        file: "extra.safetensors".into(),
        start: 5,
        end: 15,
    });
    write_manifest(&d, &m);
    let e = err(import::read(&d, &Default::default()));
    assert!(
        e.contains("overlap") && e.contains("'extra.safetensors' (5..15)"),
        "{e}"
    );
    // A gap: no shard for 10..20.
    let d = tmp("gap");
    let mut m = write_shards(&d, &whole, &meta, &[0, 10, 20]);
    m.shards.retain(|s| s.start == 0);
    write_manifest(&d, &m);
    let e = err(import::read(&d, &Default::default()));
    assert!(
        e.contains("shards end at 10") && e.contains("20 entities"),
        "{e}"
    );
    m.shards[0].start = 2;
    m.n_entities = 10;
    write_manifest(&d, &m);
    let e = err(import::read(&d, &Default::default()));
    assert!(e.contains("no shard holds entities 0..2"), "{e}");
    // A shard that holds another number of entities than its range.
    let d = tmp("short");
    let mut m = write_shards(&d, &whole, &meta, &[0, 10, 20]);
    for s in &mut m.shards {
        if s.start == 10 {
            s.end = 21;
        }
    }
    m.n_entities = 21;
    write_manifest(&d, &m);
    let e = err(import::read(&d, &Default::default()));
    assert!(
        e.contains("holds 10 entities but the manifest says 10..21"),
        "{e}"
    );
    // A directory without a manifest.
    let e = err(import::read(&tmp("empty"), &Default::default()));
    assert!(e.contains("needs a manifest.json"), "{e}");
}

#[test]
fn the_random_init_control_from_a_second_file_or_missing() {
    let lf = fixture("import/layers_first_f32.npy");
    // Missing: the run says so.
    let run = import::read_run(&lf, None, &with_names()).unwrap();
    assert!(run.random_init.is_none());
    assert!(
        run.random_init_note.starts_with("missing"),
        "{}",
        run.random_init_note
    );
    // From a second file of another format: the same entities (its names checked).
    let npz = fixture("import/entities_first_f64.npz");
    let run = import::read_run(&lf, Some(&npz), &with_names()).unwrap();
    assert_fixture_values(run.random_init.as_ref().unwrap());
    assert!(run.random_init_note.contains("entities_first_f64.npz"));
    // A control of other entities is refused.
    let d = tmp("ri");
    let mut other = names();
    other.swap(0, 1);
    write_safetensors(
        &d.join("r.safetensors"),
        &[("activations", vec![4, 5, 3], &fixture_values(false), false)],
        &[("names", &serde_json::to_string(&other).unwrap())],
    );
    let e = import::read_run(&lf, Some(&d.join("r.safetensors")), &with_names())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("random-init") && e.contains("row 1") && e.contains("'Lima'"),
        "{e}"
    );
    // A control of another shape (not the same architecture).
    let narrow: Vec<f32> = (0..4 * 5 * 2).map(|i| i as f32).collect();
    write_safetensors(
        &d.join("narrow.safetensors"),
        &[("activations", vec![4, 5, 2], &narrow, false)],
        &[],
    );
    let e = import::read_run(&lf, Some(&d.join("narrow.safetensors")), &with_names())
        .unwrap_err()
        .to_string();
    assert!(e.contains("width 2, the model's 3 of width 3"), "{e}");
    // Probelab's own file finds its twin beside it.
    let (a, m) = probelab_sample(6);
    let d = tmp("twin");
    std::fs::write(
        d.join("acts.safetensors"),
        acts::to_safetensors(&a, &m, StoreAs::F32).unwrap(),
    )
    .unwrap();
    let run = import::read_run(&d.join("acts.safetensors"), None, &Default::default()).unwrap();
    assert!(run.random_init.is_none() && run.random_init_note.starts_with("missing"));
    let mut r = a.clone();
    r.data.iter_mut().for_each(|x| *x = -*x);
    std::fs::write(
        d.join(acts::RANDOM_INIT_FILE),
        acts::to_safetensors(&r, &m, StoreAs::F32).unwrap(),
    )
    .unwrap();
    let run = import::read_run(&d.join("acts.safetensors"), None, &Default::default()).unwrap();
    assert_eq!(run.random_init.unwrap().data, r.data);
    assert_eq!(
        run.real.source.model_id,
        format!("smol (sha256 {})", "ab".repeat(32))
    );
}

/// An .npy file as NumPy writes it (version 1, little-endian f32, C order).
fn npy_bytes(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

#[test]
fn fit_on_an_imported_array_records_where_it_came_from() {
    // world-places-200 with its coordinates planted at layer 2 of noise, entities first in an
    // .npy with the names beside it: the probe finds layer 2, the report says where the
    // activations came from and that the random-init control is missing.
    let ds = probelab::data::load_builtin("world-places-200").unwrap();
    let (n, l1, d) = (ds.len(), 4, 16);
    let mut rng = Rng(11);
    let mut values = vec![0f32; n * l1 * d];
    for e in 0..n {
        let t = &ds.targets[e];
        for l in 0..l1 {
            for j in 0..d {
                let mut x = rng.next_f32();
                if l == 2 && j < 2 {
                    x += t[j] as f32 / 30.0;
                }
                values[(e * l1 + l) * d + j] = x;
            }
        }
    }
    let dir = tmp("fit");
    std::fs::write(dir.join("acts.npy"), npy_bytes(&[n, l1, d], &values)).unwrap();
    std::fs::write(dir.join("names.txt"), ds.names.join("\n")).unwrap();
    let out = dir.join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_probelab"));
    cmd.args(["fit", dir.join("acts.npy").to_str().unwrap(), "--names"])
        .arg(dir.join("names.txt"))
        .args([
            "--dataset",
            "world-places-200",
            "--tool",
            "numpy by hand",
            "--model-id",
            "planted/layer-2",
            "--pool",
            "mean",
            "--permutations",
            "10",
            "--out",
        ])
        .arg(&out);
    let r = common::report_of(&mut cmd, &out);
    assert_eq!(r["selected"]["layer"], 2);
    assert!(
        r["selected"]["r2_test"].as_f64().unwrap() > 0.8,
        "{}",
        r["selected"]
    );
    let source = r["notes"]["activations.source"].as_str().unwrap();
    for want in [
        "tool: numpy by hand",
        "model: planted/layer-2",
        "pool: mean",
        "prompt: not stated",
        "[entities, layers+1, d]",
    ] {
        assert!(source.contains(want), "{source}");
    }
    assert!(r["notes"]["activations.random_init"]
        .as_str()
        .unwrap()
        .starts_with("missing"));
    assert_eq!(r["model"]["name"], "planted/layer-2");
    assert_eq!(r["pooling"], "mean");
    // Names that are not the dataset's: the first differing row.
    std::fs::write(
        dir.join("bad.txt"),
        ds.names
            .iter()
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_probelab"))
        .args(["fit", dir.join("acts.npy").to_str().unwrap(), "--names"])
        .arg(dir.join("bad.txt"))
        .args(["--dataset", "world-places-200", "--out"])
        .arg(dir.join("out2"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("differ at row 1") && stderr.contains(&ds.names[0]),
        "{stderr}"
    );
}

/// What a read gave, for comparing two readers: the activations, what they are of and where
/// they came from, or the error's text.
fn outcome(r: probelab::Result<import::Imported>) -> String {
    match r {
        Ok(i) => format!(
            "{:?} {:?} {:?} {:?} {:?} {:?}",
            (i.acts.n_layers, i.acts.n_entities, i.acts.d_model),
            i.acts.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            i.acts.first_token_ids,
            i.acts.tokens_per_entity,
            i.meta,
            i.source
        ),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn bytes_read_as_the_path_reader_reads_them() {
    // The page's entry point (a file's name and bytes) against the path reader on the same
    // files: every single-file format, Probelab's own file, and the errors (names, NaN, format).
    let d = tmp("bytes");
    let (a, m) = probelab_sample(6);
    let probelab_file = d.join("acts.safetensors");
    std::fs::write(
        &probelab_file,
        acts::to_safetensors(&a, &m, StoreAs::F32).unwrap(),
    )
    .unwrap();
    let mut wrong = names();
    wrong[2] = "Alexandria".into();
    let cases: Vec<(PathBuf, ImportOptions)> = vec![
        (
            fixture("hf_hidden_states_smollm2.safetensors"),
            Default::default(),
        ),
        (fixture("import/layers_first_f32.npy"), with_names()),
        (fixture("import/layers_first_f32_be.npy"), with_names()),
        (fixture("import/entities_first_f64.npz"), Default::default()),
        (fixture("import/bytes_names_v2.npz"), Default::default()),
        (probelab_file.clone(), Default::default()),
        (fixture("import/nan_at_l2_e3.npz"), Default::default()),
        (fixture("import/ambiguous_f16.npy"), with_names()),
        (fixture("import/names.txt"), with_names()),
        (
            fixture("import/entities_first_f64.npz"),
            ImportOptions {
                names: Some(wrong),
                ..Default::default()
            },
        ),
    ];
    for (path, opts) in &cases {
        let bytes = std::fs::read(path).unwrap();
        let by_path = outcome(import::read(path, opts));
        let by_bytes = outcome(import::from_bytes(path.to_str().unwrap(), &bytes, opts));
        assert_eq!(by_bytes, by_path, "{}", path.display());
    }
    // The errors are the ones the path reader's tests expect.
    let at = |p: &str, o: &ImportOptions| {
        let path = fixture(p);
        err(import::from_bytes(
            path.to_str().unwrap(),
            &std::fs::read(&path).unwrap(),
            o,
        ))
    };
    let e = at("import/nan_at_l2_e3.npz", &Default::default());
    assert!(e.contains("NaN at layer 2, entity 4 ('Oslo')"), "{e}");
    let e = at("import/names.txt", &with_names());
    assert!(
        e.contains("'.txt' is not a format") && e.contains(".npz"),
        "{e}"
    );
    let e = import::from_bytes("a.npy", b"hello", &with_names())
        .unwrap_err()
        .to_string();
    assert!(e.contains("a.npy") && e.contains("not an .npy file"), "{e}");

    // A run: the control from a second file's bytes, or missing, as read_run has it.
    let lf = fixture("import/layers_first_f32.npy");
    let npz = fixture("import/entities_first_f64.npz");
    let (lf_bytes, npz_bytes) = (std::fs::read(&lf).unwrap(), std::fs::read(&npz).unwrap());
    let by_path = import::read_run(&lf, Some(&npz), &with_names()).unwrap();
    let by_bytes = import::run_from_bytes(
        (lf.to_str().unwrap(), &lf_bytes),
        Some((npz.to_str().unwrap(), &npz_bytes)),
        &with_names(),
        "fit --random-init FILE",
    )
    .unwrap();
    assert_eq!(
        by_bytes.random_init.unwrap().data,
        by_path.random_init.unwrap().data
    );
    assert_eq!(by_bytes.random_init_note, by_path.random_init_note);
    assert_eq!(outcome(Ok(by_bytes.real)), outcome(Ok(by_path.real)));
    let missing = import::run_from_bytes(
        (lf.to_str().unwrap(), &lf_bytes),
        None,
        &with_names(),
        "fit --random-init FILE",
    )
    .unwrap();
    let by_path = import::read_run(&lf, None, &with_names()).unwrap();
    assert_eq!(missing.random_init_note, by_path.random_init_note);
    // A control of another width is refused as read_run refuses it.
    let narrow = npy_bytes(&[4, 5, 2], &(0..40).map(|i| i as f32).collect::<Vec<_>>());
    let e = import::run_from_bytes(
        ("acts.npy", &lf_bytes),
        Some(("narrow.npy", &narrow)),
        &with_names(),
        "",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("width 2, the model's 3 of width 3"), "{e}");
}

#[test]
fn npy_files_and_other_tools_safetensors_are_read_a_layer_at_a_time() {
    // A file far larger than memory must not be read whole: `open` reads the header, and each
    // layer is read when asked (entities first: one vector per entity, a row of layers apart).
    // Every layer equals the whole-file reader's (the page's), in f32, f16 and big-endian f32.
    use probelab::extract::layers::{LayerSource, Layers};
    let d = tmp("by-layer");
    let names_json = serde_json::to_string(&names()).unwrap();
    let mut files = Vec::new();
    for entities_first in [false, true] {
        let values = fixture_values(entities_first);
        let shape = if entities_first {
            vec![5, 4, 3]
        } else {
            vec![4, 5, 3]
        };
        let npy = d.join(format!("acts_{entities_first}.npy"));
        std::fs::write(&npy, npy_bytes(&shape, &values)).unwrap();
        let st = d.join(format!("acts_{entities_first}.safetensors"));
        write_safetensors(
            &st,
            &[("acts", shape.clone(), &values, entities_first)],
            &[("names", &names_json), ("tool", "transformers")],
        );
        files.push((npy, with_names()));
        files.push((st, Default::default()));
    }
    files.push((fixture("import/layers_first_f32_be.npy"), with_names()));
    files.push((
        fixture("hf_hidden_states_smollm2.safetensors"),
        Default::default(),
    ));
    for (path, opts) in &files {
        let whole = import::from_bytes(path.to_str().unwrap(), &std::fs::read(path).unwrap(), opts)
            .unwrap();
        let opened = import::open(path, opts).unwrap();
        assert_eq!(opened.meta.names, whole.meta.names);
        assert_eq!(opened.source, whole.source, "{}", path.display());
        let Layers::Files(by_layer) = &opened.layers else {
            panic!("{} was read whole", path.display());
        };
        let a = &whole.acts;
        for l in (0..=a.n_layers).rev() {
            let got = by_layer.layer(l).unwrap();
            let want = &a.data[l * a.n_entities * a.d_model..(l + 1) * a.n_entities * a.d_model];
            assert_eq!(&got[..], want, "{} layer {l}", path.display());
        }
        let stats = by_layer.stats();
        assert_eq!(stats.layers_read as usize, a.n_layers + 1);
        assert!(
            stats.bytes_read <= std::fs::metadata(path).unwrap().len(),
            "{stats:?}"
        );
    }
    // A file cut short is refused when opened, before any fit.
    let cut = d.join("cut.npy");
    let full = std::fs::read(&files[0].0).unwrap();
    std::fs::write(&cut, &full[..full.len() - 4]).unwrap();
    let e = import::open(&cut, &with_names()).unwrap_err().to_string();
    assert!(
        e.contains("cut.npy") && e.contains("needs 240 bytes"),
        "{e}"
    );
    let cut = d.join("cut.safetensors");
    let full = std::fs::read(&files[1].0).unwrap();
    std::fs::write(&cut, &full[..full.len() - 4]).unwrap();
    let e = import::open(&cut, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cut.safetensors") && e.contains("cut short"),
        "{e}"
    );
}
