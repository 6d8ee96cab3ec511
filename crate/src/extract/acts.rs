//! Activation files: safetensors with one tensor `activations` of shape
//! `[layers + 1, entities, d_model]` (f32 or f16) and metadata a Python user can read with
//! `safetensors.safe_open(path, "np").metadata()`.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::extract::{Activations, Pooling};

pub use crate::model::LAYER_CONVENTION;

/// The random-initialised model's activations are saved beside the model's under this name.
pub const RANDOM_INIT_FILE: &str = "acts_random_init.safetensors";

/// The names' surprisals under the model are saved beside the activations under this name (a
/// JSON array, null where a name was not scored; see `extract::surprisal`).
pub const SURPRISAL_FILE: &str = "name_surprisal.json";

/// What the activations are of; stored as safetensors metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActsMeta {
    pub model_name: String,
    pub model_sha256: String,
    pub dataset_name: String,
    pub dataset_hash: String,
    pub prompt_template: String,
    pub pooling: Pooling,
    pub names: Vec<String>,
}

impl ActsMeta {
    /// The activations of `names` (a list without targets: the dataset hash is of the names
    /// alone, [`data::names_hash`]) from the model `model_name` whose file hashes to
    /// `model_sha256`.
    pub fn new(
        model_name: &str,
        model_sha256: &str,
        prompt_template: &str,
        pooling: Pooling,
        dataset_name: &str,
        names: Vec<String>,
    ) -> Self {
        Self {
            model_name: model_name.into(),
            model_sha256: model_sha256.into(),
            dataset_name: dataset_name.into(),
            dataset_hash: data::names_hash(&names),
            prompt_template: prompt_template.into(),
            pooling,
            names,
        }
    }

    /// The activations of a whole dataset: the hash covers its targets too
    /// ([`data::dataset_hash`]), so a re-fit can tell an edited dataset.
    pub fn for_dataset(
        model_name: &str,
        model_sha256: &str,
        prompt_template: &str,
        pooling: Pooling,
        dataset: &Dataset,
    ) -> Self {
        Self {
            dataset_hash: data::dataset_hash(dataset),
            ..Self::new(
                model_name,
                model_sha256,
                prompt_template,
                pooling,
                &dataset.name,
                dataset.names.clone(),
            )
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAs {
    F32,
    F16,
}

/// A floating-point tensor's values as f32 (F32, F16, BF16, F64, little-endian); None for
/// any other dtype.
pub(crate) fn float_values(t: &TensorView<'_>) -> Option<Vec<f32>> {
    let mut out = vec![0.0; t.data().len() / t.dtype().size().max(1)];
    floats_into(t.dtype(), t.data(), &mut out).then_some(out)
}

/// Whether [`floats_into`] decodes `dtype`.
pub(crate) fn is_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64)
}

/// Decodes little-endian `bytes` of a float `dtype` into `out` (one value per element); false
/// for any other dtype. Shared by whole-file reads and the layer-by-layer reader.
pub(crate) fn floats_into(dtype: Dtype, bytes: &[u8], out: &mut [f32]) -> bool {
    match dtype {
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Dtype::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        Dtype::F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32;
            }
        }
        _ => return false,
    }
    true
}

/// The safetensors metadata for `meta`.
fn metadata_map(meta: &ActsMeta) -> Result<HashMap<String, String>> {
    let mut md = HashMap::new();
    md.insert("model_name".into(), meta.model_name.clone());
    md.insert("model_sha256".into(), meta.model_sha256.clone());
    md.insert("dataset_name".into(), meta.dataset_name.clone());
    md.insert("dataset_hash".into(), meta.dataset_hash.clone());
    md.insert("prompt_template".into(), meta.prompt_template.clone());
    // The key is "pool" since the first files: Python readers look it up by that name.
    md.insert("pool".into(), meta.pooling.to_string());
    md.insert("layer_convention".into(), LAYER_CONVENTION.into());
    md.insert(
        "names".into(),
        serde_json::to_string(&meta.names).map_err(|e| Error::Compute(e.to_string()))?,
    );
    Ok(md)
}

/// Little-endian bytes of `values` as stored.
fn encode(values: &[f32], store: StoreAs) -> Vec<u8> {
    match store {
        StoreAs::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        StoreAs::F16 => values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

/// Serializes activations and their metadata to safetensors bytes.
pub fn to_safetensors(acts: &Activations, meta: &ActsMeta, store: StoreAs) -> Result<Vec<u8>> {
    let shape = vec![acts.n_layers + 1, acts.n_entities, acts.d_model];
    let dtype = match store {
        StoreAs::F32 => Dtype::F32,
        StoreAs::F16 => Dtype::F16,
    };
    let bytes = encode(&acts.data, store);
    let u32_bytes = |v: &[u32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let tokens = u32_bytes(&acts.tokens_per_entity);
    let first = u32_bytes(&acts.first_token_ids);
    let view = TensorView::new(dtype, shape, &bytes).map_err(|e| Error::Compute(e.to_string()))?;
    let tokens_view = TensorView::new(Dtype::U32, vec![acts.n_entities], &tokens)
        .map_err(|e| Error::Compute(e.to_string()))?;
    let mut views = vec![("activations", view), ("tokens_per_entity", tokens_view)];
    if acts.first_token_ids.len() == acts.n_entities {
        let first_view = TensorView::new(Dtype::U32, vec![acts.n_entities], &first)
            .map_err(|e| Error::Compute(e.to_string()))?;
        views.push(("first_token_ids", first_view));
    }
    let md = metadata_map(meta)?;
    safetensors::serialize(views, &Some(md)).map_err(|e| Error::Compute(e.to_string()))
}

/// Reads a file written by [`to_safetensors`] back (f16 is widened to f32).
pub fn from_safetensors(bytes: &[u8]) -> Result<(Activations, ActsMeta)> {
    let bad = |m: String| Error::Input(format!("activation file: {m}"));
    let (_, header) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let md = header.metadata().clone().unwrap_or_default();
    let t = st
        .tensor("activations")
        .map_err(|_| bad("no tensor named 'activations'".into()))?;
    let shape = t.shape().to_vec();
    if shape.len() != 3 || shape[0] == 0 {
        return Err(bad(format!(
            "'activations' has shape {shape:?}, expected [layers+1, entities, d]"
        )));
    }
    let data: Vec<f32> = match t.dtype() {
        Dtype::F32 | Dtype::F16 => float_values(&t).unwrap_or_default(),
        other => return Err(bad(format!("dtype {other:?} is not f32 or f16"))),
    };
    let u32s = |name: &str| -> Option<Vec<u32>> {
        let t = st.tensor(name).ok()?;
        let v: Vec<u32> = t
            .data()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (t.dtype() == Dtype::U32 && v.len() == shape[1]).then_some(v)
    };
    let tokens_per_entity = u32s("tokens_per_entity").unwrap_or_else(|| vec![0; shape[1]]);
    let first_token_ids = u32s("first_token_ids").unwrap_or_default();
    let meta = meta_from(&md)?;
    Ok((
        Activations {
            n_layers: shape[0] - 1,
            n_entities: shape[1],
            d_model: shape[2],
            data,
            tokens_per_entity,
            first_token_ids,
        },
        meta,
    ))
}

/// The [`ActsMeta`] in a Probelab file's safetensors metadata.
pub(crate) fn meta_from(md: &HashMap<String, String>) -> Result<ActsMeta> {
    let bad = |m: String| Error::Input(format!("activation file: {m}"));
    let field = |k: &str| -> Result<String> {
        md.get(k)
            .cloned()
            .ok_or_else(|| bad(format!("metadata '{k}' is missing")))
    };
    let names: Vec<String> =
        serde_json::from_str(&field("names")?).map_err(|e| bad(format!("names: {e}")))?;
    Ok(ActsMeta {
        model_name: field("model_name")?,
        model_sha256: field("model_sha256")?,
        dataset_name: field("dataset_name")?,
        dataset_hash: field("dataset_hash")?,
        prompt_template: field("prompt_template")?,
        pooling: field("pool")?
            .parse()
            .map_err(|e: Error| bad(e.to_string()))?,
        names,
    })
}

/// Writes an activation file entity chunk by entity chunk, so a dataset far larger than memory
/// can be extracted: the file is laid out up front (the same format as [`to_safetensors`]) and
/// each chunk's vectors are written at their places. The file appears under its name only when
/// [`ActsWriter::finish`] succeeds.
#[cfg(not(target_arch = "wasm32"))]
pub struct ActsWriter {
    file: std::fs::File,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    n_layers: usize,
    n_entities: usize,
    d_model: usize,
    store: StoreAs,
    data_start: u64,
    tokens_per_entity: Vec<u32>,
    first_token_ids: Vec<u32>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ActsWriter {
    pub fn create(
        path: &std::path::Path,
        n_layers: usize,
        n_entities: usize,
        d_model: usize,
        meta: &ActsMeta,
        store: StoreAs,
    ) -> Result<Self> {
        use std::io::Write;
        let elem = match store {
            StoreAs::F32 => 4,
            StoreAs::F16 => 2,
        };
        let acts_bytes = ((n_layers + 1) * n_entities * d_model * elem) as u64;
        let u32_bytes = (n_entities * 4) as u64;
        let header = serde_json::json!({
            "activations": {"dtype": if elem == 4 { "F32" } else { "F16" },
                "shape": [n_layers + 1, n_entities, d_model], "data_offsets": [0, acts_bytes]},
            "tokens_per_entity": {"dtype": "U32", "shape": [n_entities],
                "data_offsets": [acts_bytes, acts_bytes + u32_bytes]},
            "first_token_ids": {"dtype": "U32", "shape": [n_entities],
                "data_offsets": [acts_bytes + u32_bytes, acts_bytes + 2 * u32_bytes]},
            "__metadata__": metadata_map(meta)?,
        });
        let mut json = serde_json::to_vec(&header).map_err(|e| Error::Compute(e.to_string()))?;
        // safetensors pads the header with spaces to a multiple of 8 bytes.
        json.resize(json.len().div_ceil(8) * 8, b' ');
        let tmp = path.with_extension("safetensors.partial");
        let io = |e| Error::io(tmp.display().to_string(), e);
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(&(json.len() as u64).to_le_bytes())
            .map_err(io)?;
        file.write_all(&json).map_err(io)?;
        let data_start = 8 + json.len() as u64;
        file.set_len(data_start + acts_bytes + 2 * u32_bytes)
            .map_err(io)?;
        Ok(Self {
            file,
            tmp: tmp.clone(),
            path: path.to_path_buf(),
            n_layers,
            n_entities,
            d_model,
            store,
            data_start,
            tokens_per_entity: vec![0; n_entities],
            first_token_ids: vec![0; n_entities],
        })
    }

    /// Writes one batch: rows `[layers + 1][which.len()][d_model]` (as
    /// [`crate::extract::batch_rows`] returns them) of the entities `which`, wherever they are
    /// in the file.
    pub fn write_batch(
        &mut self,
        entities: &[crate::extract::EntityTokens],
        which: &[usize],
        rows: &[f32],
    ) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let d = self.d_model;
        if rows.len() != (self.n_layers + 1) * which.len() * d
            || which
                .iter()
                .any(|&e| e >= self.n_entities || e >= entities.len())
        {
            return Err(Error::Compute(
                "a batch does not fit the activation file".into(),
            ));
        }
        let elem = if self.store == StoreAs::F32 { 4 } else { 2 };
        let io = |e| Error::io(self.tmp.display().to_string(), e);
        for layer in 0..=self.n_layers {
            for (i, &e) in which.iter().enumerate() {
                let from = (layer * which.len() + i) * d;
                let bytes = encode(&rows[from..from + d], self.store);
                let at = self.data_start + ((layer * self.n_entities + e) * d * elem) as u64;
                self.file.seek(SeekFrom::Start(at)).map_err(io)?;
                self.file.write_all(&bytes).map_err(io)?;
            }
        }
        for &e in which {
            self.tokens_per_entity[e] = entities[e].ids.len() as u32;
            self.first_token_ids[e] = entities[e].first_token();
        }
        Ok(())
    }

    /// Writes the per-entity token tables and moves the file to its name.
    pub fn finish(mut self) -> Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        let elem = if self.store == StoreAs::F32 { 4 } else { 2 };
        let at =
            self.data_start + ((self.n_layers + 1) * self.n_entities * self.d_model * elem) as u64;
        let tables: Vec<u8> = self
            .tokens_per_entity
            .iter()
            .chain(&self.first_token_ids)
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let io = |e| Error::io(self.tmp.display().to_string(), e);
        self.file.seek(SeekFrom::Start(at)).map_err(io)?;
        self.file.write_all(&tables).map_err(io)?;
        self.file.sync_all().map_err(io)?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| Error::io(self.path.display().to_string(), e))
    }
}
