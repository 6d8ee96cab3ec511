//! Activations on disk, by path: one file, or a directory of shards. Probelab's safetensors,
//! another tool's safetensors and `.npy` files are opened layer by layer (their headers read
//! now, a layer when the fit asks for it); an `.npz`, whose members may be compressed, is read
//! whole through the parent's `whole`.

use std::path::{Path, PathBuf};

use super::{
    bad, check_finite, check_given_names, check_twin, control_options, described, format_of,
    is_probelab, missing_note, names_in_metadata, plan_arrays, probelab_source, random_err, whole,
    within, Format, ImportOptions, Imported, ImportedRun, Meta, Source, MANIFEST_FILE,
    PROBELAB_FORMAT,
};
use crate::data;
use crate::error::{Error, Result};
use crate::extract::acts::{self, ActsMeta, RANDOM_INIT_FILE, SURPRISAL_FILE};
use crate::extract::layers::{self, FileLayers, Floats, LayerSource, Layers};
use crate::extract::npy;

/// Activations opened for a fit: safetensors (Probelab's, one file or shards, and other
/// tools') and `.npy` files are read layer by layer as the fit asks (only headers and token
/// tables are read here); an `.npz` is read whole.
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

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))
}

/// Opens activations in any of the [`super::FORMATS`], chosen by what `path` is: a directory
/// (or a `manifest.json`) of shards, else by the file's extension. NaNs are found as layers are
/// read.
pub fn open(path: &Path, opts: &ImportOptions) -> Result<Opened> {
    let is_manifest = path.file_name().is_some_and(|n| n == MANIFEST_FILE);
    let opened = if path.is_dir() || is_manifest {
        let manifest = if is_manifest {
            path.to_path_buf()
        } else {
            path.join(MANIFEST_FILE)
        };
        open_shards(&manifest, opts)?
    } else {
        let format = match format_of(path) {
            Err(_) if !path.exists() => return Err(bad(path, "no such file or directory")),
            f => f?,
        };
        match format {
            Format::Safetensors => open_safetensors(path, opts)?,
            Format::Npy => open_npy(path, opts)?,
            Format::Npz => in_memory(whole(path, format, &read_bytes(path)?, opts)?),
        }
    };
    check_given_names(path, &opened.meta.names, opts)?;
    Ok(opened)
}

fn in_memory(i: Imported) -> Opened {
    Opened {
        layers: Layers::Memory(i.acts),
        meta: i.meta,
        source: i.source,
    }
}

/// Reads activations in any of the [`super::FORMATS`] whole into memory ([`open`], then every
/// layer); a NaN or infinity is an error naming its layer and entity.
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
            random_init_note: missing_note("fit --random-init FILE"),
            name_surprisal,
        });
    };
    let r = open(&from, &control_options(&real.meta, opts)).map_err(random_err)?;
    let shape = |o: &Opened| (o.layers.n_layers(), o.layers.d_model());
    check_twin(
        &from,
        path,
        (&real.meta, shape(&real)),
        (&r.meta, shape(&r)),
    )?;
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

/// A safetensors file opened layer by layer: Probelab's own (its metadata says everything, its
/// token tables come along) or another tool's float tensor.
fn open_safetensors(path: &Path, opts: &ImportOptions) -> Result<Opened> {
    let (data_start, header) = layers::read_header(path)?;
    let meta: Meta = header.metadata().clone().unwrap_or_default();
    if !is_probelab(&meta, opts) {
        return open_tensor(path, data_start, &header, meta, opts);
    }
    let (files, ameta) = FileLayers::from_header(path, data_start, &header)?;
    Ok(Opened {
        layers: Layers::Files(files),
        source: probelab_source(path, &meta, &ameta, opts),
        meta: ameta,
    })
}

/// Another tool's safetensors: the float tensor the plan picks (as the whole-file reader picks
/// it), checked against the file's length before any value is read.
fn open_tensor(
    path: &Path,
    data_start: u64,
    header: &safetensors::tensor::Metadata,
    meta: Meta,
    opts: &ImportOptions,
) -> Result<Opened> {
    // The tensors the whole-file reader decodes (token tables and the like are not activations).
    let mut tensors: Vec<_> = header
        .tensors()
        .into_iter()
        .filter(|(_, t)| acts::is_float(t.dtype))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let shapes: Vec<_> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone()))
        .collect();
    let plan = plan_arrays(path, &shapes, names_in_metadata(path, &meta)?, &meta, opts)?;
    let info = tensors[plan.index].1;
    let (from, to) = info.data_offsets;
    let (layers1, n, d) = plan.dims;
    let want = (layers1 * n * d * info.dtype.size()) as u64;
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path.display().to_string(), e))?
        .len();
    if (to - from) as u64 != want || len < data_start + to as u64 {
        return Err(bad(
            path,
            format!(
                "not a safetensors file: '{}' needs {want} bytes at {}..{} but the file is {len} \
                 bytes long (cut short?)",
                plan.tensor,
                data_start + from as u64,
                data_start + to as u64
            ),
        ));
    }
    let (ameta, source) = described(path, "safetensors", &plan, &meta, opts);
    Ok(Opened {
        layers: Layers::Files(FileLayers::array(
            path,
            data_start + from as u64,
            Floats::Safetensors(info.dtype),
            plan.dims,
            plan.entities_first,
        )),
        meta: ameta,
        source,
    })
}

/// An `.npy` of floats, opened layer by layer (a text array goes to the whole-file reader,
/// which says why it is not activations).
fn open_npy(path: &Path, opts: &ImportOptions) -> Result<Opened> {
    let Some(a) = npy::float_array_in_file(path).map_err(|e| within(path, e))? else {
        return Ok(in_memory(whole(
            path,
            Format::Npy,
            &read_bytes(path)?,
            opts,
        )?));
    };
    let meta = Meta::new();
    let plan = plan_arrays(path, &[("array".into(), a.shape)], None, &meta, opts)?;
    let (ameta, source) = described(path, "npy", &plan, &meta, opts);
    Ok(Opened {
        layers: Layers::Files(FileLayers::array(
            path,
            a.data_start,
            Floats::Npy(a.encoding),
            plan.dims,
            plan.entities_first,
        )),
        meta: ameta,
        source,
    })
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
