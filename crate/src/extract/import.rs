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
//!
//! Files on disk (and shard directories) are opened by path ([`open`], [`read`], [`read_run`];
//! native only, in `files`); one file's bytes, as the page has them, go through [`from_bytes`]
//! and [`run_from_bytes`]. Both read a file's contents with the same functions (`whole`).

use std::collections::HashMap;
use std::path::Path;

use super::acts::{self, ActsMeta};
use super::npy::{self, NpyArray, NpyData};
use super::{Activations, Pooling};
use crate::data;
use crate::error::{Error, Result};

#[cfg(not(target_arch = "wasm32"))]
mod files;
#[cfg(not(target_arch = "wasm32"))]
pub use files::{open, open_run, read, read_run, Manifest, Opened, OpenedRun, ShardEntry};

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
    /// Where `names` came from, as messages say it (default: "the names file").
    pub names_from: Option<String>,
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
    /// The names' surprisals ([`acts::SURPRISAL_FILE`] beside a Probelab file), when saved.
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

const PROBELAB_FORMAT: &str = "probelab safetensors";

/// The single-file formats, told by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    Npy,
    Npz,
}

/// The format `path`'s extension names; any other is an error listing the [`FORMATS`].
fn format_of(path: &Path) -> Result<Format> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "safetensors" => Ok(Format::Safetensors),
        "npy" => Ok(Format::Npy),
        "npz" => Ok(Format::Npz),
        other => Err(bad(
            path,
            format!("'.{other}' is not a format Probelab reads; it reads {FORMATS}"),
        )),
    }
}

/// One file's contents read whole, `path` naming it in messages and in the [`Source`]: the
/// path reader and the bytes reader both come here.
fn whole(path: &Path, format: Format, bytes: &[u8], opts: &ImportOptions) -> Result<Imported> {
    match format {
        Format::Safetensors => safetensors_whole(path, bytes, opts),
        Format::Npy => {
            let array = npy::read_npy(bytes).map_err(|e| within(path, e))?;
            from_arrays(
                path,
                "npy",
                vec![("array".into(), array)],
                Meta::new(),
                opts,
            )
        }
        Format::Npz => {
            let arrays = npy::read_npz(bytes).map_err(|e| within(path, e))?;
            from_arrays(path, "npz", arrays, Meta::new(), opts)
        }
    }
}

fn names_from(opts: &ImportOptions) -> &str {
    opts.names_from.as_deref().unwrap_or("the names file")
}

/// Names given beside the file must be the file's, row by row.
fn check_given_names(path: &Path, in_file: &[String], opts: &ImportOptions) -> Result<()> {
    match &opts.names {
        Some(names) => check_same_names(in_file, names, "the file", names_from(opts))
            .map_err(|e| within(path, e)),
        None => Ok(()),
    }
}

/// Reads one file's bytes in any single-file format of the [`FORMATS`] (told by `file_name`'s
/// extension), as [`read`] reads the file at a path: the same parsing, checks and provenance,
/// `file_name` standing for the path. A NaN or infinity is an error naming its layer and
/// entity. (A directory of shards has no bytes: it is read by path only.)
pub fn from_bytes(file_name: &str, bytes: &[u8], opts: &ImportOptions) -> Result<Imported> {
    let path = Path::new(file_name);
    let imported = whole(path, format_of(path)?, bytes, opts)?;
    check_given_names(path, &imported.meta.names, opts)?;
    check_finite(&imported.acts, &imported.meta.names).map_err(|e| within(path, e))?;
    Ok(imported)
}

/// [`from_bytes`], and the random-initialised control from a second file's bytes when given,
/// else missing (`missing_how` says how the caller would have given it, e.g. "fit
/// --random-init FILE"). The control is checked against the activations as [`read_run`]
/// checks it.
pub fn run_from_bytes(
    real: (&str, &[u8]),
    random_init: Option<(&str, &[u8])>,
    opts: &ImportOptions,
    missing_how: &str,
) -> Result<ImportedRun> {
    let real_run = from_bytes(real.0, real.1, opts)?;
    let Some((name, bytes)) = random_init else {
        return Ok(ImportedRun {
            real: real_run,
            random_init: None,
            random_init_note: missing_note(missing_how),
            name_surprisal: None,
        });
    };
    let r = from_bytes(name, bytes, &control_options(&real_run.meta, opts)).map_err(random_err)?;
    let shape = |a: &Activations| (a.n_layers, a.d_model);
    check_twin(
        Path::new(name),
        Path::new(real.0),
        (&real_run.meta, shape(&real_run.acts)),
        (&r.meta, shape(&r.acts)),
    )?;
    Ok(ImportedRun {
        random_init_note: format!("from {name}"),
        real: real_run,
        random_init: Some(r.acts),
        name_surprisal: None,
    })
}

/// The report's note when no random-initialised activations were given.
fn missing_note(how: &str) -> String {
    format!(
        "missing: no random-initialised model's activations were given ({how}), so that \
         control was not run"
    )
}

/// The control's reading options: it is of the same entities, so names it does not carry are
/// the real file's.
fn control_options(real: &ActsMeta, opts: &ImportOptions) -> ImportOptions {
    ImportOptions {
        names: Some(real.names.clone()),
        names_from: Some("the activations".into()),
        ..opts.clone()
    }
}

/// The random-init control at `from` must be of the model of the activations at `real_path`
/// (when both say which) and of their shape, `(layers, width)`.
fn check_twin(
    from: &Path,
    real_path: &Path,
    real: (&ActsMeta, (usize, usize)),
    twin: (&ActsMeta, (usize, usize)),
) -> Result<()> {
    let (rs, ms) = (&twin.0.model_sha256, &real.0.model_sha256);
    if !rs.is_empty() && !ms.is_empty() && rs != ms {
        return Err(bad(
            from,
            format!(
                "is not the random-init twin of {}: another model (sha256 {rs} vs {ms})",
                real_path.display()
            ),
        ));
    }
    let ((al, ad), (bl, bd)) = (real.1, twin.1);
    if (al, ad) != (bl, bd) {
        return Err(bad(
            from,
            format!(
                "the random-init activations have {bl} layers + embedding of width {bd}, the model's {al} of width {ad}"
            ),
        ));
    }
    Ok(())
}

fn random_err(e: Error) -> Error {
    match e {
        Error::Input(m) => Error::Input(format!("the random-init activations: {m}")),
        e => e,
    }
}

/// Whether a safetensors file's metadata is Probelab's own (and its `activations` are wanted).
fn is_probelab(meta: &Meta, opts: &ImportOptions) -> bool {
    meta.contains_key("layer_convention")
        && meta.contains_key("model_sha256")
        && opts.tensor.as_deref().unwrap_or("activations") == "activations"
}

/// Where a Probelab file's activations came from: its own metadata says.
fn probelab_source(path: &Path, meta: &Meta, ameta: &ActsMeta, opts: &ImportOptions) -> Source {
    Source {
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
    }
}

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

/// A safetensors file read whole: Probelab's own as it wrote it, any other as its float
/// tensors (arrays).
fn safetensors_whole(path: &Path, bytes: &[u8], opts: &ImportOptions) -> Result<Imported> {
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(path, e))?;
    let meta: Meta = header.metadata().clone().unwrap_or_default();
    if is_probelab(&meta, opts) {
        let (acts, ameta) = acts::from_safetensors(bytes).map_err(|e| within(path, e))?;
        return Ok(Imported {
            source: probelab_source(path, &meta, &ameta, opts),
            acts,
            meta: ameta,
        });
    }
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(path, e))?;
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
    if let Some(names) = names_in_metadata(path, &meta)? {
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

/// The names a safetensors file's metadata carries (`names`, a JSON list), if it has them.
pub(crate) fn names_in_metadata(path: &Path, meta: &Meta) -> Result<Option<Vec<String>>> {
    meta.get("names")
        .map(|text| {
            serde_json::from_str(text).map_err(|e| {
                bad(
                    path,
                    format!("metadata 'names' is not a JSON list of strings: {e}"),
                )
            })
        })
        .transpose()
}

/// Transposes in place a `rows × cols` matrix whose elements are blocks of `d` values (the
/// block at (r, c) moves to (c, r)), following each cycle of the permutation with one spare
/// block: the array is never held twice, so a file read whole needs its activations' memory
/// once whichever way round it is (the page's memory limit counts on that).
fn transpose_blocks(v: &mut [f32], rows: usize, cols: usize, d: usize) {
    let n = rows * cols;
    let mut moved = vec![false; n];
    let mut carry = vec![0f32; d];
    for start in 0..n {
        if moved[start] {
            continue;
        }
        carry.copy_from_slice(&v[start * d..(start + 1) * d]);
        let mut at = start;
        loop {
            moved[at] = true;
            let to = (at % cols) * rows + at / cols;
            v[to * d..(to + 1) * d].swap_with_slice(&mut carry);
            at = to;
            if at == start {
                break;
            }
        }
    }
}

/// What a file's arrays say before any value is read: the float array that holds the
/// activations, the names of its entities, and which axis holds the layers. The whole-file
/// reader and the layer-by-layer one both start here, so they refuse the same files alike.
pub(crate) struct ArrayPlan {
    /// The chosen array's place in the list given to [`plan_arrays`].
    pub index: usize,
    pub tensor: String,
    pub names: Vec<String>,
    pub entities_first: bool,
    /// (layers + 1, entities, d).
    pub dims: (usize, usize, usize),
}

/// Plans the reading of `floats` (each float array's name and shape) with the names the file
/// carries, its metadata and the caller's options.
pub(crate) fn plan_arrays(
    path: &Path,
    floats: &[(String, Vec<usize>)],
    file_names: Option<Vec<String>>,
    meta: &Meta,
    opts: &ImportOptions,
) -> Result<ArrayPlan> {
    let listing = || {
        floats
            .iter()
            .map(|(n, s)| format!("'{n}' {s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen =
        match &opts.tensor {
            Some(want) => floats.iter().position(|(n, _)| n == want).ok_or_else(|| {
                bad(
                    path,
                    format!("no float array '{want}'; it holds {}", listing()),
                )
            })?,
            None => ["activations", "hidden_states"]
                .iter()
                .find_map(|want| floats.iter().position(|(n, _)| n == want))
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
    let (tensor, shape) = floats[chosen].clone();
    let names = match (&opts.names, file_names) {
        (Some(given), Some(in_file)) => {
            check_same_names(&in_file, given, "the file", names_from(opts))
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
    Ok(ArrayPlan {
        index: chosen,
        tensor,
        names,
        entities_first: layout == Layout::EntitiesFirst,
        dims: (layers1, entities, d),
    })
}

/// The entity list and provenance of a planned array (`kind`: the format, for the report).
pub(crate) fn described(
    path: &Path,
    kind: &str,
    plan: &ArrayPlan,
    meta: &Meta,
    opts: &ImportOptions,
) -> (ActsMeta, Source) {
    let pool = opts
        .pool
        .map(|p| p.to_string())
        .or_else(|| meta.get("pool").cloned())
        .unwrap_or_else(|| NOT_STATED.into());
    let mut layout_text = if plan.entities_first {
        "[entities, layers+1, d]"
    } else {
        "[layers+1, entities, d]"
    }
    .to_string();
    if plan.tensor == "hidden_states" {
        // transformers puts the final norm's output at the last index; Probelab's last layer is
        // the residual stream before it (crate/tests/import_hf.rs measures both).
        layout_text.push_str(
            "; HF hidden_states: index 0 is the embedding output (layer 0), the last index is \
             after the model's final norm",
        );
    }
    let source = Source {
        tool: stated(&opts.tool, meta, &["tool"]),
        model_id: stated(&opts.model_id, meta, &["model_id", "model_name"]),
        prompt: stated(&opts.prompt, meta, &["prompt_template", "prompt"]),
        format: format!("{kind} '{}' {layout_text}", plan.tensor),
        path: path.display().to_string(),
        pool: pool.clone(),
    };
    let ameta = ActsMeta {
        model_name: source.model_id.clone(),
        model_sha256: meta.get("model_sha256").cloned().unwrap_or_default(),
        dataset_name: meta.get("dataset_name").cloned().unwrap_or_default(),
        dataset_hash: data::names_hash(&plan.names),
        prompt_template: source.prompt.clone(),
        pooling: pool.parse::<Pooling>().unwrap_or_default(),
        names: plan.names.clone(),
    };
    (ameta, source)
}

/// Activations from named float arrays and text arrays (`names`; in an `.npz`, provenance
/// such as `tool` too) with the file's metadata, read whole.
fn from_arrays(
    path: &Path,
    kind: &str,
    arrays: Vec<(String, NpyArray)>,
    mut meta: Meta,
    opts: &ImportOptions,
) -> Result<Imported> {
    let mut file_names = None;
    let mut floats = Vec::new();
    let mut values = Vec::new();
    for (name, a) in arrays {
        match a.data {
            NpyData::Text(t) if name == "names" => file_names = Some(t),
            NpyData::Text(t) => {
                meta.insert(name, t.join(" "));
            }
            NpyData::Float(v) => {
                floats.push((name, a.shape));
                values.push(v);
            }
        }
    }
    let plan = plan_arrays(path, &floats, file_names, &meta, opts)?;
    let (layers1, entities, d) = plan.dims;
    let mut data = values.swap_remove(plan.index);
    drop(values);
    if plan.entities_first {
        transpose_blocks(&mut data, entities, layers1, d);
    }
    let (meta, source) = described(path, kind, &plan, &meta, opts);
    Ok(Imported {
        acts: Activations {
            n_layers: layers1 - 1,
            n_entities: entities,
            d_model: d,
            data,
            tokens_per_entity: vec![0; entities],
            first_token_ids: Vec::new(),
        },
        meta,
        source,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose_blocks_is_the_plain_transpose() {
        for (rows, cols, d) in [
            (1, 1, 2),
            (1, 7, 1),
            (7, 1, 3),
            (5, 4, 3),
            (4, 5, 1),
            (6, 6, 2),
            (13, 31, 4),
        ] {
            let v: Vec<f32> = (0..rows * cols * d).map(|i| i as f32).collect();
            let mut want = vec![0.0; v.len()];
            for r in 0..rows {
                for c in 0..cols {
                    let (from, to) = ((r * cols + c) * d, (c * rows + r) * d);
                    want[to..to + d].copy_from_slice(&v[from..from + d]);
                }
            }
            let mut got = v.clone();
            super::transpose_blocks(&mut got, rows, cols, d);
            assert_eq!(got, want, "{rows} × {cols} × {d}");
        }
    }
}
