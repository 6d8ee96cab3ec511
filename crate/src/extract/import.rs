//! Activations made elsewhere, read into one [`Activations`] with the names they are of and
//! where they came from:
//!
//! - Probelab's own safetensors ([`super::acts`]), whole, or as a directory of shards listed by
//!   a `manifest.json` ([`MANIFEST_FILE`]: the layout `tools/cluster/` writes);
//! - safetensors, `.npy` or `.npz` holding one float array `[layers+1, entities, d]` or
//!   `[entities, layers+1, d]` ([`Layout`]);
//! - Hugging Face's stacked `hidden_states` (a tensor or array of that name): index 0 is the
//!   embedding output, which is our layer 0, so its first axis is the layers.
//!
//! Names come from the file (safetensors metadata `names`, a JSON list; an `.npz` array
//! `names`) or from a names file, and must agree when both are given. A NaN or infinity is an
//! error naming its layer and entity.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::acts::{self, ActsMeta, RANDOM_INIT_FILE, SURPRISAL_FILE};
use super::layers::{self, FileLayers, LayerSource, Layers};
use super::npy::{self, NpyArray, NpyData};
use super::{Activations, Pooling};
use crate::data;
use crate::error::{Error, Result};

/// The shard list in a directory of shards.
pub const MANIFEST_FILE: &str = "manifest.json";
/// What a provenance field says when neither the file nor the command line told it.
pub const NOT_STATED: &str = "not stated";

/// The formats [`read`] takes, for error messages.
pub const FORMATS: &str =
    "Probelab's safetensors (one file, or a directory of shards with manifest.json), \
safetensors with one float tensor (e.g. 'activations' or HF's stacked 'hidden_states'), \
NumPy .npy, NumPy .npz";

/// Which axis of a 3-d array holds the layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// From the file (HF's `hidden_states` and Probelab's files are layers first; metadata
    /// `layout`), else from the shape: the axis whose size is the number of names holds the
    /// entities. When both axes have that size the layout must be given.
    #[default]
    Auto,
    /// `[layers+1, entities, d]` (Probelab, `torch.stack(hidden_states)` after pooling).
    LayersFirst,
    /// `[entities, layers+1, d]`.
    EntitiesFirst,
}

impl std::str::FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Layout::Auto),
            "layers-first" => Ok(Layout::LayersFirst),
            "entities-first" => Ok(Layout::EntitiesFirst),
            other => Err(Error::Input(format!(
                "layout '{other}': use auto, layers-first ([layers+1, entities, d]) or entities-first ([entities, layers+1, d])"
            ))),
        }
    }
}

/// What the caller knows beyond the file; each `Some` overrides what the file says.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub layout: Layout,
    /// The names, in the file's entity order (from a names file).
    pub names: Option<Vec<String>>,
    /// Which tensor or array holds the activations, when the file has several.
    pub tensor: Option<String>,
    pub tool: Option<String>,
    pub model_id: Option<String>,
    pub prompt: Option<String>,
    pub pool: Option<Pooling>,
}

/// Where activations came from: recorded in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub tool: String,
    pub model_id: String,
    pub prompt: String,
    pub pool: String,
    /// What was read: "probelab safetensors", "npz 'activations' [entities, layers+1, d]", …
    pub format: String,
    pub path: String,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tool: {}; model: {}; prompt: {}; pool: {}; read from {} ({})",
            self.tool, self.model_id, self.prompt, self.pool, self.path, self.format
        )
    }
}

/// Activations read from a file or a shard directory.
#[derive(Debug, Clone)]
pub struct Imported {
    pub acts: Activations,
    pub meta: ActsMeta,
    pub source: Source,
}

/// A fit's inputs: the activations and the random-initialised control's, or why it is missing.
#[derive(Debug)]
pub struct ImportedRun {
    pub real: Imported,
    pub random_init: Option<Activations>,
    /// Where the control came from, or that it is missing and why.
    pub random_init_note: String,
    /// The names' surprisals ([`SURPRISAL_FILE`] beside a Probelab file), when saved.
    pub name_surprisal: Option<Vec<Option<f64>>>,
}

/// Activations opened for a fit: Probelab's safetensors (one file or shards) are read layer
/// by layer as the fit asks (only headers and token tables are read here); other formats are
/// read whole.
#[derive(Debug)]
pub struct Opened {
    pub layers: Layers,
    pub meta: ActsMeta,
    pub source: Source,
}

/// [`ImportedRun`] with its activations opened, not read.
#[derive(Debug)]
pub struct OpenedRun {
    pub real: Opened,
    pub random_init: Option<Opened>,
    pub random_init_note: String,
    pub name_surprisal: Option<Vec<Option<f64>>>,
}

fn bad(path: &Path, m: impl std::fmt::Display) -> Error {
    Error::Input(format!("{}: {m}", path.display()))
}

/// An error from a reader, said of `path` (without a second "bad input:").
fn within(path: &Path, e: Error) -> Error {
    match e {
        Error::Input(m) | Error::Dataset(m) => bad(path, m),
        e => e,
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))
}

/// Opens activations in any of the [`FORMATS`], chosen by what `path` is: a directory (or a
/// `manifest.json`) of shards, else by the file's extension. NaNs are found as layers are read.
pub fn open(path: &Path, opts: &ImportOptions) -> Result<Opened> {
    let is_manifest = path.file_name().is_some_and(|n| n == MANIFEST_FILE);
    let whole = |i: Imported| Opened {
        layers: Layers::Memory(i.acts),
        meta: i.meta,
        source: i.source,
    };
    let opened = if path.is_dir() || is_manifest {
        let manifest = if is_manifest {
            path.to_path_buf()
        } else {
            path.join(MANIFEST_FILE)
        };
        open_shards(&manifest, opts)?
    } else {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "safetensors" => open_safetensors(path, opts)?,
            "npy" => {
                let array = npy::read_npy(&read_bytes(path)?).map_err(|e| within(path, e))?;
                whole(from_arrays(
                    path,
                    "npy",
                    vec![("array".into(), array)],
                    Meta::new(),
                    opts,
                )?)
            }
            "npz" => {
                let arrays = npy::read_npz(&read_bytes(path)?).map_err(|e| within(path, e))?;
                whole(from_arrays(path, "npz", arrays, Meta::new(), opts)?)
            }
            _ if !path.exists() => return Err(bad(path, "no such file or directory")),
            other => {
                return Err(bad(
                    path,
                    format!("'.{other}' is not a format Probelab reads; it reads {FORMATS}"),
                ))
            }
        }
    };
    if let Some(names) = &opts.names {
        check_same_names(&opened.meta.names, names, "the file", "the names file")
            .map_err(|e| within(path, e))?;
    }
    Ok(opened)
}

/// Reads activations in any of the [`FORMATS`] whole into memory ([`open`], then every layer);
/// a NaN or infinity is an error naming its layer and entity.
pub fn read(path: &Path, opts: &ImportOptions) -> Result<Imported> {
    into_memory(open(path, opts)?)
}

fn into_memory(o: Opened) -> Result<Imported> {
    let acts = o.layers.into_activations()?;
    check_finite(&acts, &o.meta.names).map_err(|e| within(Path::new(&o.source.path), e))?;
    Ok(Imported {
        acts,
        meta: o.meta,
        source: o.source,
    })
}

/// [`read`], and the random-initialised control: from `random_init` when given, else the
/// twin Probelab writes beside its own file ([`RANDOM_INIT_FILE`]), else missing.
pub fn read_run(
    path: &Path,
    random_init: Option<&Path>,
    opts: &ImportOptions,
) -> Result<ImportedRun> {
    let run = open_run(path, random_init, opts)?;
    let random_init = match run.random_init {
        Some(r) => Some(into_memory(r).map_err(random_err)?.acts),
        None => None,
    };
    Ok(ImportedRun {
        real: into_memory(run.real)?,
        random_init,
        random_init_note: run.random_init_note,
        name_surprisal: run.name_surprisal,
    })
}

fn random_err(e: Error) -> Error {
    match e {
        Error::Input(m) => Error::Input(format!("the random-init activations: {m}")),
        e => e,
    }
}

/// [`open`], and the random-initialised control as [`read_run`] finds it; every check that
/// needs no activations (names, model, shapes) is done here.
pub fn open_run(
    path: &Path,
    random_init: Option<&Path>,
    opts: &ImportOptions,
) -> Result<OpenedRun> {
    let real = open(path, opts)?;
    let name_surprisal = if real.source.format == PROBELAB_FORMAT {
        read_surprisal(&path.with_file_name(SURPRISAL_FILE), real.meta.names.len())?
    } else {
        None
    };
    let twin = path.with_file_name(RANDOM_INIT_FILE);
    let from = match random_init {
        Some(p) => Some(p.to_path_buf()),
        None if real.source.format == PROBELAB_FORMAT && twin.exists() => Some(twin),
        None => None,
    };
    let Some(from) = from else {
        return Ok(OpenedRun {
            real,
            random_init: None,
            random_init_note: "missing: no random-initialised model's activations were given \
                               (fit --random-init FILE), so that control was not run"
                .into(),
            name_surprisal,
        });
    };
    // The control is of the same entities: names it does not carry are the real file's.
    let r_opts = ImportOptions {
        names: Some(real.meta.names.clone()),
        ..opts.clone()
    };
    let r = open(&from, &r_opts).map_err(random_err)?;
    let (rs, ms) = (&r.meta.model_sha256, &real.meta.model_sha256);
    if !rs.is_empty() && !ms.is_empty() && rs != ms {
        return Err(bad(
            &from,
            format!(
                "is not the random-init twin of {}: another model (sha256 {rs} vs {ms})",
                path.display()
            ),
        ));
    }
    let (a, b) = (&real.layers, &r.layers);
    if (a.n_layers(), a.d_model()) != (b.n_layers(), b.d_model()) {
        return Err(bad(
            &from,
            format!(
                "the random-init activations have {} layers + embedding of width {}, the model's {} of width {}",
                b.n_layers(), b.d_model(), a.n_layers(), a.d_model()
            ),
        ));
    }
    Ok(OpenedRun {
        random_init_note: format!("from {}", from.display()),
        real,
        random_init: Some(r),
        name_surprisal,
    })
}

/// The surprisals saved beside a Probelab activation file of `n` entities, if there.
fn read_surprisal(path: &Path, n: usize) -> Result<Option<Vec<Option<f64>>>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::io(path.display().to_string(), e))?;
    let v: Vec<Option<f64>> = serde_json::from_str(&text).map_err(|e| bad(path, e))?;
    if v.len() != n {
        return Err(bad(
            path,
            format!("holds {} surprisals for {n} entities", v.len()),
        ));
    }
    Ok(Some(v))
}

const PROBELAB_FORMAT: &str = "probelab safetensors";

/// `got` must equal `want` entity by entity; the error shows the first row that differs.
pub fn check_same_names(
    got: &[String],
    want: &[String],
    got_is: &str,
    want_is: &str,
) -> Result<()> {
    if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
        return Err(Error::Input(format!(
            "the names differ at row {}: '{}' in {got_is}, '{}' in {want_is}",
            i + 1,
            got[i],
            want[i]
        )));
    }
    if got.len() != want.len() {
        return Err(Error::Input(format!(
            "{got_is} has {} names, {want_is} {}; the first {} agree",
            got.len(),
            want.len(),
            got.len().min(want.len())
        )));
    }
    Ok(())
}

/// The activations' names must be the dataset's, row by row; the error shows the first row
/// that differs.
pub fn check_dataset(meta: &ActsMeta, dataset: &data::Dataset) -> Result<()> {
    check_same_names(
        &meta.names,
        &dataset.names,
        "the activations",
        &format!("dataset '{}'", dataset.name),
    )
}

/// The first NaN or infinity, by layer and entity.
fn check_finite(acts: &Activations, names: &[String]) -> Result<()> {
    let d = acts.d_model.max(1);
    if let Some(at) = acts.data.iter().position(|v| !v.is_finite()) {
        let (layer, entity) = (at / d / acts.n_entities, at / d % acts.n_entities);
        return Err(Error::Input(format!(
            "the activations hold {} at layer {layer}, entity {} ('{}'), dimension {}",
            acts.data[at],
            entity + 1,
            names.get(entity).map(String::as_str).unwrap_or("?"),
            at % d
        )));
    }
    Ok(())
}

/// The safetensors metadata, or an `.npz`'s 0-d text arrays (`tool`, `model_id`, …).
type Meta = HashMap<String, String>;

fn stated(opt: &Option<String>, meta: &Meta, keys: &[&str]) -> String {
    opt.clone()
        .or_else(|| keys.iter().find_map(|k| meta.get(*k).cloned()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| NOT_STATED.into())
}

/// A safetensors file: Probelab's own opened layer by layer (its metadata says everything, its
/// token tables come along), any other read whole.
fn open_safetensors(path: &Path, opts: &ImportOptions) -> Result<Opened> {
    let (data_start, header) = layers::read_header(path)?;
    let meta: Meta = header.metadata().clone().unwrap_or_default();
    if !(meta.contains_key("layer_convention")
        && meta.contains_key("model_sha256")
        && opts.tensor.as_deref().unwrap_or("activations") == "activations")
    {
        let i = read_safetensors(path, opts)?;
        return Ok(Opened {
            layers: Layers::Memory(i.acts),
            meta: i.meta,
            source: i.source,
        });
    }
    let (files, ameta) = FileLayers::from_header(path, data_start, &header)?;
    let source = Source {
        tool: opts
            .tool
            .clone()
            .or_else(|| meta.get("tool").cloned())
            .unwrap_or_else(|| "probelab".into()),
        model_id: format!("{} (sha256 {})", ameta.model_name, ameta.model_sha256),
        prompt: ameta.prompt_template.clone(),
        pool: ameta.pooling.to_string(),
        format: PROBELAB_FORMAT.into(),
        path: path.display().to_string(),
    };
    Ok(Opened {
        layers: Layers::Files(files),
        meta: ameta,
        source,
    })
}

/// A safetensors file that is not Probelab's: its float tensors as arrays.
fn read_safetensors(path: &Path, opts: &ImportOptions) -> Result<Imported> {
    let bytes = read_bytes(path)?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e))?;
    let meta: Meta = header.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e))?;
    let mut arrays = Vec::new();
    for (name, t) in st.tensors() {
        // Token tables and the like are not activations.
        let Some(data) = acts::float_values(&t) else {
            continue;
        };
        arrays.push((
            name,
            NpyArray {
                shape: t.shape().to_vec(),
                data: NpyData::Float(data),
            },
        ));
    }
    arrays.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(names) = meta.get("names") {
        let names: Vec<String> = serde_json::from_str(names).map_err(|e| {
            bad(
                path,
                format!("metadata 'names' is not a JSON list of strings: {e}"),
            )
        })?;
        arrays.push((
            "names".into(),
            NpyArray {
                shape: vec![names.len()],
                data: NpyData::Text(names),
            },
        ));
    }
    from_arrays(path, "safetensors", arrays, meta, opts)
}

/// Fills provenance and the entity-list metadata from a file's key/value metadata.
fn apply_meta(imported: &mut Imported, meta: &Meta, opts: &ImportOptions) {
    let s = &mut imported.source;
    s.tool = stated(&opts.tool, meta, &["tool"]);
    s.model_id = stated(&opts.model_id, meta, &["model_id", "model_name"]);
    s.prompt = stated(&opts.prompt, meta, &["prompt_template", "prompt"]);
    let m = &mut imported.meta;
    m.model_name = s.model_id.clone();
    m.model_sha256 = meta.get("model_sha256").cloned().unwrap_or_default();
    m.prompt_template = s.prompt.clone();
    m.dataset_name = meta.get("dataset_name").cloned().unwrap_or_default();
}

/// Activations from named float arrays and text arrays (`names`; in an `.npz`, provenance
/// such as `tool` too) with the file's metadata. Names are needed before the layout can be
/// told from the shape.
fn from_arrays(
    path: &Path,
    kind: &str,
    arrays: Vec<(String, NpyArray)>,
    mut meta: Meta,
    opts: &ImportOptions,
) -> Result<Imported> {
    let mut file_names = None;
    let mut floats = Vec::new();
    for (name, a) in arrays {
        match a.data {
            NpyData::Text(t) if name == "names" => file_names = Some(t),
            NpyData::Text(t) => {
                meta.insert(name, t.join(" "));
            }
            NpyData::Float(v) => floats.push((name, a.shape, v)),
        }
    }
    let listing = || {
        floats
            .iter()
            .map(|(n, s, _)| format!("'{n}' {s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen =
        match &opts.tensor {
            Some(want) => floats
                .iter()
                .position(|(n, _, _)| n == want)
                .ok_or_else(|| {
                    bad(
                        path,
                        format!("no float array '{want}'; it holds {}", listing()),
                    )
                })?,
            None => ["activations", "hidden_states"]
                .iter()
                .find_map(|want| floats.iter().position(|(n, _, _)| n == want))
                .or_else(|| {
                    let rank3: Vec<usize> = (0..floats.len())
                        .filter(|&i| floats[i].1.len() == 3)
                        .collect();
                    (rank3.len() == 1).then(|| rank3[0])
                })
                .ok_or_else(|| {
                    bad(
                        path,
                        format!(
                        "which array holds the activations? it holds {}; name one with --tensor",
                        if floats.is_empty() { "no float array".into() } else { listing() }
                    ),
                    )
                })?,
        };
    let (tensor, shape, values) = floats.swap_remove(chosen);
    let names = match (&opts.names, file_names) {
        (Some(given), Some(in_file)) => {
            check_same_names(&in_file, given, "the file", "the names file")
                .map_err(|e| within(path, e))?;
            in_file
        }
        (Some(given), None) => given.clone(),
        (None, Some(in_file)) => in_file,
        (None, None) => {
            return Err(bad(
                path,
                "the file carries no names (safetensors metadata 'names', a JSON list, or an \
                 .npz array 'names'); give them with --names FILE",
            ))
        }
    };
    let n = names.len();
    if shape.len() != 3 {
        return Err(bad(
            path,
            format!(
                "'{tensor}' has shape {shape:?}; activations are [layers+1, entities, d] or \
                 [entities, layers+1, d] (pool each entity's tokens to one vector first)"
            ),
        ));
    }
    let layout = match opts.layout {
        Layout::Auto => match meta.get("layout").map(|s| s.parse::<Layout>()) {
            Some(Ok(l)) if l != Layout::Auto => l,
            _ if tensor == "hidden_states" => Layout::LayersFirst,
            _ => match (shape[0] == n, shape[1] == n) {
                (true, true) => {
                    return Err(bad(
                        path,
                        format!(
                            "'{tensor}' has shape {shape:?} and there are {n} names: either of the \
                             first two axes could hold the entities; say which with --layout \
                             layers-first or --layout entities-first"
                        ),
                    ))
                }
                (false, true) => Layout::LayersFirst,
                (true, false) => Layout::EntitiesFirst,
                (false, false) => {
                    return Err(bad(
                        path,
                        format!(
                            "'{tensor}' has shape {shape:?} but there are {n} names: neither of \
                             the first two axes has {n} entities"
                        ),
                    ))
                }
            },
        },
        l => l,
    };
    let (layers1, entities, d) = match layout {
        Layout::EntitiesFirst => (shape[1], shape[0], shape[2]),
        _ => (shape[0], shape[1], shape[2]),
    };
    if entities != n {
        return Err(bad(
            path,
            format!(
                "'{tensor}' has shape {shape:?}, so {entities} entities ({}), but there are {n} names",
                if layout == Layout::EntitiesFirst { "entities first" } else { "layers first" }
            ),
        ));
    }
    if layers1 == 0 || d == 0 {
        return Err(bad(path, format!("'{tensor}' has shape {shape:?}: empty")));
    }
    let data = if layout == Layout::EntitiesFirst {
        let mut out = vec![0.0; values.len()];
        for e in 0..entities {
            for l in 0..layers1 {
                let from = (e * layers1 + l) * d;
                let to = (l * entities + e) * d;
                out[to..to + d].copy_from_slice(&values[from..from + d]);
            }
        }
        out
    } else {
        values
    };
    let pool = opts
        .pool
        .map(|p| p.to_string())
        .or_else(|| meta.get("pool").cloned())
        .unwrap_or_else(|| NOT_STATED.into());
    let pooling = pool.parse::<Pooling>().unwrap_or_default();
    let acts = Activations {
        n_layers: layers1 - 1,
        n_entities: entities,
        d_model: d,
        data,
        tokens_per_entity: vec![0; entities],
        first_token_ids: Vec::new(),
    };
    let mut layout_text = match layout {
        Layout::EntitiesFirst => "[entities, layers+1, d]",
        _ => "[layers+1, entities, d]",
    }
    .to_string();
    if tensor == "hidden_states" {
        // transformers puts the final norm's output at the last index; Probelab's last layer is
        // the residual stream before it (crate/tests/import_hf.rs measures both).
        layout_text.push_str(
            "; HF hidden_states: index 0 is the embedding output (layer 0), the last index is \
             after the model's final norm",
        );
    }
    let mut imported = Imported {
        acts,
        meta: ActsMeta {
            model_name: String::new(),
            model_sha256: String::new(),
            dataset_name: String::new(),
            dataset_hash: data::names_hash(&names),
            prompt_template: String::new(),
            pooling,
            names,
        },
        source: Source {
            tool: String::new(),
            model_id: String::new(),
            prompt: String::new(),
            pool,
            format: format!("{kind} '{tensor}' {layout_text}"),
            path: path.display().to_string(),
        },
    };
    apply_meta(&mut imported, &meta, opts);
    Ok(imported)
}

/// One shard in a manifest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShardEntry {
    /// The shard's file, relative to the manifest.
    pub file: String,
    /// The entities it holds: `start..end` of the whole list.
    pub start: usize,
    pub end: usize,
}

/// `manifest.json`: the shards of one extraction and where it came from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub n_entities: usize,
    pub shards: Vec<ShardEntry>,
    #[serde(default)]
    pub tool: Option<String>,
    #[serde(default)]
    pub dataset_name: Option<String>,
}

/// A shard directory's manifest, checked (the shards tile the entities), and each shard opened
/// for reading layer by layer.
fn open_shards(manifest_path: &Path, opts: &ImportOptions) -> Result<Opened> {
    let dir = manifest_path.parent().unwrap_or(Path::new("."));
    if !manifest_path.exists() {
        return Err(bad(
            dir,
            format!("a directory of shards needs a {MANIFEST_FILE}; it has none"),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&read_bytes(manifest_path)?)
        .map_err(|e| bad(manifest_path, format!("not a shard manifest: {e}")))?;
    let mut shards = manifest.shards.clone();
    shards.sort_by_key(|s| (s.start, s.end));
    // The shards must tile 0..n_entities: no gap, no overlap.
    let mut next = 0;
    for (i, s) in shards.iter().enumerate() {
        if s.end <= s.start {
            return Err(bad(
                manifest_path,
                format!(
                    "shard '{}' has an empty range {}..{}",
                    s.file, s.start, s.end
                ),
            ));
        }
        if s.start < next {
            let prev = &shards[i - 1];
            return Err(bad(
                manifest_path,
                format!(
                    "shards '{}' (entities {}..{}) and '{}' ({}..{}) overlap",
                    prev.file, prev.start, prev.end, s.file, s.start, s.end
                ),
            ));
        }
        if s.start > next {
            return Err(bad(
                manifest_path,
                format!("no shard holds entities {next}..{}", s.start),
            ));
        }
        next = s.end;
    }
    if next != manifest.n_entities {
        return Err(bad(
            manifest_path,
            format!(
                "the manifest lists {} entities but its shards end at {next}",
                manifest.n_entities
            ),
        ));
    }
    // Headers only: each shard's layers are read when the fit asks for them.
    let n = manifest.n_entities;
    let mut first: Option<(PathBuf, ActsMeta, usize, usize)> = None;
    let mut parts = Vec::with_capacity(shards.len());
    let mut names = Vec::with_capacity(n);
    for s in &shards {
        let p = dir.join(&s.file);
        if !p.exists() {
            return Err(bad(
                manifest_path,
                format!(
                    "shard '{}' (entities {}..{}) is missing: {}",
                    s.file,
                    s.start,
                    s.end,
                    p.display()
                ),
            ));
        }
        let (a, m) = FileLayers::open(&p)?;
        if a.n_entities() != s.end - s.start {
            return Err(bad(
                &p,
                format!(
                    "holds {} entities but the manifest says {}..{} ({})",
                    a.n_entities(),
                    s.start,
                    s.end,
                    s.end - s.start
                ),
            ));
        }
        match &first {
            None => first = Some((p.clone(), m.clone(), a.n_layers(), a.d_model())),
            Some((p0, m0, layers0, d0)) => {
                let same = (
                    a.n_layers(),
                    a.d_model(),
                    &m.model_sha256,
                    &m.prompt_template,
                    m.pooling,
                ) == (
                    *layers0,
                    *d0,
                    &m0.model_sha256,
                    &m0.prompt_template,
                    m0.pooling,
                );
                if !same {
                    return Err(bad(
                        &p,
                        format!(
                            "is not of the same extraction as {}: model, prompt, pool or shape differ",
                            p0.display()
                        ),
                    ));
                }
            }
        }
        names.extend(m.names);
        parts.push(a);
    }
    let Some((_, m0, _, _)) = first else {
        return Err(bad(manifest_path, "the manifest lists no shards"));
    };
    let meta = ActsMeta {
        dataset_name: manifest
            .dataset_name
            .clone()
            .unwrap_or_else(|| m0.dataset_name.clone()),
        dataset_hash: data::names_hash(&names),
        names,
        ..m0.clone()
    };
    let source = Source {
        tool: opts
            .tool
            .clone()
            .or(manifest.tool.clone())
            .unwrap_or_else(|| "probelab".into()),
        model_id: format!("{} (sha256 {})", meta.model_name, meta.model_sha256),
        prompt: meta.prompt_template.clone(),
        pool: meta.pooling.to_string(),
        format: format!("{} probelab shards", shards.len()),
        path: manifest_path.display().to_string(),
    };
    Ok(Opened {
        layers: Layers::Files(FileLayers::join(parts)),
        meta,
        source,
    })
}
