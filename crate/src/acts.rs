//! Activation files: safetensors with one tensor `activations` of shape
//! `[layers + 1, entities, d_model]` (f32 or f16) and metadata a Python user can read with
//! `safetensors.safe_open(path, "np").metadata()`.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::extract::Activations;

pub const LAYER_CONVENTION: &str =
    "layer 0 = embedding output; layer i (1..=L) = residual stream after block i";

/// What the activations are of; stored as safetensors metadata.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActsMeta {
    pub model_name: String,
    pub model_sha256: String,
    pub dataset_name: String,
    pub dataset_hash: String,
    pub prompt_template: String,
    pub pool: String,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAs {
    F32,
    F16,
}

/// Serializes activations and their metadata to safetensors bytes.
pub fn to_safetensors(acts: &Activations, meta: &ActsMeta, store: StoreAs) -> Result<Vec<u8>> {
    let shape = vec![acts.n_layers + 1, acts.n_entities, acts.d_model];
    let (dtype, bytes): (Dtype, Vec<u8>) = match store {
        StoreAs::F32 => (
            Dtype::F32,
            acts.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        StoreAs::F16 => (
            Dtype::F16,
            acts.data
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        ),
    };
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
    let mut md = HashMap::new();
    md.insert("model_name".into(), meta.model_name.clone());
    md.insert("model_sha256".into(), meta.model_sha256.clone());
    md.insert("dataset_name".into(), meta.dataset_name.clone());
    md.insert("dataset_hash".into(), meta.dataset_hash.clone());
    md.insert("prompt_template".into(), meta.prompt_template.clone());
    md.insert("pool".into(), meta.pool.clone());
    md.insert("layer_convention".into(), LAYER_CONVENTION.into());
    md.insert(
        "names".into(),
        serde_json::to_string(&meta.names).map_err(|e| Error::Compute(e.to_string()))?,
    );
    safetensors::serialize(views, &Some(md)).map_err(|e| Error::Compute(e.to_string()))
}

/// Reads a file written by [`to_safetensors`] back (f16 is widened to f32).
pub fn from_safetensors(bytes: &[u8]) -> Result<(Activations, ActsMeta)> {
    let bad = |m: String| Error::Input(format!("activation file: {m}"));
    let (_, header) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let md = header.metadata().clone().unwrap_or_default();
    let field = |k: &str| -> Result<String> {
        md.get(k)
            .cloned()
            .ok_or_else(|| bad(format!("metadata '{k}' is missing")))
    };
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
        Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => t
            .data()
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
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
    let names: Vec<String> =
        serde_json::from_str(&field("names")?).map_err(|e| bad(format!("names: {e}")))?;
    let meta = ActsMeta {
        model_name: field("model_name")?,
        model_sha256: field("model_sha256")?,
        dataset_name: field("dataset_name")?,
        dataset_hash: field("dataset_hash")?,
        prompt_template: field("prompt_template")?,
        pool: field("pool")?,
        names,
    };
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
