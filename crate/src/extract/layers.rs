//! Activations one layer at a time, so a fit holds a layer, not the whole run: a
//! [`LayerSource`] gives layer `l` as `[entities][d_model]` f32, from memory ([`Activations`],
//! borrowed) or, natively, from Probelab's safetensors files ([`FileLayers`]): their tensor is
//! `[layers+1, entities, d]`, so a layer is one contiguous byte range per file (per shard in a
//! shard directory), read on demand.

use std::borrow::Cow;

use crate::error::Result;
use crate::extract::Activations;

/// Where a fit reads its layers from. Layers are `0..=n_layers` (0 = the embedding output).
pub trait LayerSource: Sync {
    fn n_layers(&self) -> usize;
    fn n_entities(&self) -> usize;
    fn d_model(&self) -> usize;
    /// Layer `l`, `[entities][d_model]` row-major.
    fn layer(&self, l: usize) -> Result<Cow<'_, [f32]>>;
}

impl LayerSource for Activations {
    fn n_layers(&self) -> usize {
        self.n_layers
    }
    fn n_entities(&self) -> usize {
        self.n_entities
    }
    fn d_model(&self) -> usize {
        self.d_model
    }
    fn layer(&self, l: usize) -> Result<Cow<'_, [f32]>> {
        let n = self.n_entities * self.d_model;
        self.data
            .get(l * n..(l + 1) * n)
            .map(Cow::Borrowed)
            .ok_or_else(|| {
                crate::Error::Input(format!(
                    "activations: layer {l} is missing ({} values for {} layers + embedding of \
                     {} entities × {} dims)",
                    self.data.len(),
                    self.n_layers,
                    self.n_entities,
                    self.d_model
                ))
            })
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) use files::{read_header, Floats};
#[cfg(not(target_arch = "wasm32"))]
pub use files::{FileLayers, Layers, ReadStats};

#[cfg(not(target_arch = "wasm32"))]
mod files {
    use std::borrow::Cow;
    use std::io::{Read, Seek, SeekFrom};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use safetensors::tensor::{Dtype, Metadata};

    use super::LayerSource;
    use crate::error::{Error, Result};
    use crate::extract::acts::{self, ActsMeta};
    use crate::extract::npy::NpyFloat;
    use crate::extract::Activations;

    /// Bytes decoded per read: a layer is read in slices of this size, so reading adds little
    /// beyond the layer itself.
    const CHUNK: usize = 4 << 20;

    /// How a file stores its floats: a safetensors dtype (little-endian), or NumPy's float16,
    /// float32 or float64 in either byte order.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Floats {
        Safetensors(Dtype),
        Npy(NpyFloat),
    }

    impl Floats {
        fn size(self) -> usize {
            match self {
                Floats::Safetensors(d) => d.size(),
                Floats::Npy(f) => f.size,
            }
        }

        fn decode(self, bytes: &[u8], out: &mut [f32]) {
            match self {
                Floats::Safetensors(d) => {
                    acts::floats_into(d, bytes, out);
                }
                Floats::Npy(f) => f.decode_into(bytes, out),
            }
        }
    }

    /// One file's part of every layer: entities `start..end`. Layers first (Probelab's
    /// layout), layer `l` lies at `data_start + l × (end - start) × d × size` in `path`;
    /// entities first (`[entities, layers+1, d]`, `entities_first` = layers + 1), entity `e`'s
    /// vector of layer `l` at `data_start + ((e - start) × (layers + 1) + l) × d × size`.
    #[derive(Debug, Clone)]
    struct Piece {
        path: PathBuf,
        data_start: u64,
        floats: Floats,
        start: usize,
        end: usize,
        entities_first: Option<usize>,
    }

    impl Piece {
        /// Decodes this piece's part of layer `l` into `dst` (`buf`: the bytes, reused).
        fn read_layer(
            &self,
            l: usize,
            d: usize,
            dst: &mut [f32],
            buf: &mut Vec<u8>,
        ) -> std::io::Result<()> {
            let size = self.floats.size();
            let mut f = std::fs::File::open(&self.path)?;
            match self.entities_first {
                // A layer is one stretch of the file: slices of whole values, decoded as they
                // come.
                None => {
                    let layer_bytes = (dst.len() * size) as u64;
                    f.seek(SeekFrom::Start(self.data_start + l as u64 * layer_bytes))?;
                    for dst in dst.chunks_mut((CHUNK / size).max(1)) {
                        buf.resize(dst.len() * size, 0);
                        f.read_exact(buf)?;
                        self.floats.decode(buf, dst);
                    }
                }
                // A layer is one vector per entity, a row of layers apart.
                Some(layers1) => {
                    buf.resize(d * size, 0);
                    for (i, dst) in dst.chunks_mut(d).enumerate() {
                        let at = ((i * layers1 + l) * d * size) as u64;
                        f.seek(SeekFrom::Start(self.data_start + at))?;
                        f.read_exact(buf)?;
                        self.floats.decode(buf, dst);
                    }
                }
            }
            Ok(())
        }
    }

    /// What a [`FileLayers`] has read so far: a check that it reads layer by layer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ReadStats {
        /// Calls of [`LayerSource::layer`].
        pub layers_read: u64,
        /// File bytes read, all calls together.
        pub bytes_read: u64,
    }

    /// Probelab activation files (one, or a shard directory's, entity ranges side by side)
    /// read one layer at a time.
    #[derive(Debug)]
    pub struct FileLayers {
        pieces: Vec<Piece>,
        n_layers: usize,
        n_entities: usize,
        d_model: usize,
        pub tokens_per_entity: Vec<u32>,
        /// Empty when some file does not carry them.
        pub first_token_ids: Vec<u32>,
        layers_read: AtomicU64,
        bytes_read: AtomicU64,
    }

    fn bad(path: &Path, m: impl std::fmt::Display) -> Error {
        Error::Input(format!("{}: {m}", path.display()))
    }

    fn read_at(path: &Path, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(buf)
    }

    /// A safetensors file's header: where its data starts, and its tensors and metadata.
    pub(crate) fn read_header(path: &Path) -> Result<(u64, Metadata)> {
        let io = |e| Error::io(path.display().to_string(), e);
        let mut f = std::fs::File::open(path).map_err(io)?;
        let mut n = [0u8; 8];
        f.read_exact(&mut n)
            .map_err(|_| bad(path, "not a safetensors file: shorter than its header"))?;
        let n = u64::from_le_bytes(n);
        // safetensors' own limit on a header.
        if n > 100_000_000 {
            return Err(bad(
                path,
                "not a safetensors file: its header size is absurd",
            ));
        }
        let mut json = vec![0u8; n as usize];
        f.read_exact(&mut json)
            .map_err(|_| bad(path, "not a safetensors file: its header is cut short"))?;
        let meta: Metadata = serde_json::from_slice(&json)
            .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
        Ok((8 + n, meta))
    }

    impl FileLayers {
        /// Opens a Probelab activation file (written by `acts::to_safetensors` or
        /// `ActsWriter`) for reading layer by layer: only its header and token tables are
        /// read now. A file cut short is refused here, naming the layer where it ends.
        pub fn open(path: &Path) -> Result<(Self, ActsMeta)> {
            let (data_start, header) = read_header(path)?;
            Self::from_header(path, data_start, &header)
        }

        pub(crate) fn from_header(
            path: &Path,
            data_start: u64,
            header: &Metadata,
        ) -> Result<(Self, ActsMeta)> {
            let md = header.metadata().clone().unwrap_or_default();
            let meta = acts::meta_from(&md).map_err(|e| match e {
                Error::Input(m) => bad(path, m),
                e => e,
            })?;
            let info = header
                .info("activations")
                .ok_or_else(|| bad(path, "activation file: no tensor named 'activations'"))?;
            let shape = &info.shape;
            if shape.len() != 3 || shape[0] == 0 {
                return Err(bad(
                    path,
                    format!("'activations' has shape {shape:?}, expected [layers+1, entities, d]"),
                ));
            }
            if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(bad(
                    path,
                    format!("'activations' is {:?}, not f32, f16 or bf16", info.dtype),
                ));
            }
            let (layers1, n, d) = (shape[0], shape[1], shape[2]);
            let layer_bytes = (n * d * info.dtype.size()) as u64;
            let (from, to) = info.data_offsets;
            if (to - from) as u64 != layers1 as u64 * layer_bytes {
                return Err(bad(
                    path,
                    format!(
                        "'activations' {shape:?} {:?} should take {} bytes, its header gives {}",
                        info.dtype,
                        layers1 as u64 * layer_bytes,
                        to - from
                    ),
                ));
            }
            if meta.names.len() != n {
                return Err(bad(
                    path,
                    format!("holds {n} entities but {} names", meta.names.len()),
                ));
            }
            // A file cut short (a worker killed mid-write, a copy that stopped) is caught
            // before any fitting, by the layer it ends in.
            let len = std::fs::metadata(path)
                .map_err(|e| Error::io(path.display().to_string(), e))?
                .len();
            let end = header
                .tensors()
                .values()
                .map(|t| t.data_offsets.1)
                .max()
                .unwrap_or(0) as u64;
            let acts_start = data_start + from as u64;
            if len < data_start + end {
                let place = if len < acts_start + layers1 as u64 * layer_bytes {
                    let cut = (len.saturating_sub(acts_start) / layer_bytes.max(1)) as usize;
                    format!(
                        "it ends inside layer {cut} of 0..={} (0 = embedding output)",
                        layers1 - 1
                    )
                } else {
                    "it ends after the activations, inside its token tables".into()
                };
                return Err(bad(
                    path,
                    format!(
                        "the file is cut short: {len} bytes where its header says {}; {place}; \
                         extract it again",
                        data_start + end
                    ),
                ));
            }
            let u32s = |name: &str| -> Result<Option<Vec<u32>>> {
                let Some(t) = header.info(name) else {
                    return Ok(None);
                };
                if t.dtype != Dtype::U32 || t.shape != [n] {
                    return Ok(None);
                }
                let mut b = vec![0u8; t.data_offsets.1 - t.data_offsets.0];
                read_at(path, data_start + t.data_offsets.0 as u64, &mut b)
                    .map_err(|e| Error::io(path.display().to_string(), e))?;
                Ok(Some(
                    b.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ))
            };
            let tokens_per_entity = u32s("tokens_per_entity")?.unwrap_or_else(|| vec![0; n]);
            let first_token_ids = u32s("first_token_ids")?.unwrap_or_default();
            Ok((
                Self {
                    pieces: vec![Piece {
                        path: path.to_path_buf(),
                        data_start: acts_start,
                        floats: Floats::Safetensors(info.dtype),
                        start: 0,
                        end: n,
                        entities_first: None,
                    }],
                    n_layers: layers1 - 1,
                    n_entities: n,
                    d_model: d,
                    tokens_per_entity,
                    first_token_ids,
                    layers_read: AtomicU64::new(0),
                    bytes_read: AtomicU64::new(0),
                },
                meta,
            ))
        }

        /// A float array of `[layers+1, n, d]` (or, `entities_first`, `[n, layers+1, d]`) at
        /// `data_start` in `path`, read one layer at a time: another tool's safetensors or
        /// `.npy`, whose header the caller has checked against the file's length.
        pub(crate) fn array(
            path: &Path,
            data_start: u64,
            floats: Floats,
            (layers1, n, d): (usize, usize, usize),
            entities_first: bool,
        ) -> Self {
            FileLayers {
                pieces: vec![Piece {
                    path: path.to_path_buf(),
                    data_start,
                    floats,
                    start: 0,
                    end: n,
                    entities_first: entities_first.then_some(layers1),
                }],
                n_layers: layers1 - 1,
                n_entities: n,
                d_model: d,
                tokens_per_entity: vec![0; n],
                first_token_ids: Vec::new(),
                layers_read: AtomicU64::new(0),
                bytes_read: AtomicU64::new(0),
            }
        }

        /// Shards side by side, in entity order (each already checked to be of the same
        /// extraction and shape).
        pub fn join(parts: Vec<FileLayers>) -> Self {
            let mut out = FileLayers {
                pieces: Vec::new(),
                n_layers: parts.first().map_or(0, |p| p.n_layers),
                n_entities: 0,
                d_model: parts.first().map_or(0, |p| p.d_model),
                tokens_per_entity: Vec::new(),
                first_token_ids: Vec::new(),
                layers_read: AtomicU64::new(0),
                bytes_read: AtomicU64::new(0),
            };
            let all_first = parts
                .iter()
                .all(|p| p.first_token_ids.len() == p.n_entities);
            for p in parts {
                for piece in p.pieces {
                    out.pieces.push(Piece {
                        start: piece.start + out.n_entities,
                        end: piece.end + out.n_entities,
                        ..piece
                    });
                }
                out.n_entities += p.n_entities;
                out.tokens_per_entity.extend(p.tokens_per_entity);
                if all_first {
                    out.first_token_ids.extend(p.first_token_ids);
                }
            }
            out
        }

        pub fn stats(&self) -> ReadStats {
            ReadStats {
                layers_read: self.layers_read.load(Ordering::Relaxed),
                bytes_read: self.bytes_read.load(Ordering::Relaxed),
            }
        }

        /// The files read from, in entity order.
        pub fn files(&self) -> Vec<&Path> {
            self.pieces.iter().map(|p| p.path.as_path()).collect()
        }

        /// Every layer in memory at once (for callers that want the whole [`Activations`]).
        pub fn into_activations(self) -> Result<Activations> {
            let mut data = Vec::with_capacity((self.n_layers + 1) * self.n_entities * self.d_model);
            for l in 0..=self.n_layers {
                data.extend_from_slice(&self.layer(l)?);
            }
            Ok(Activations {
                n_layers: self.n_layers,
                n_entities: self.n_entities,
                d_model: self.d_model,
                data,
                tokens_per_entity: self.tokens_per_entity,
                first_token_ids: self.first_token_ids,
            })
        }
    }

    impl LayerSource for FileLayers {
        fn n_layers(&self) -> usize {
            self.n_layers
        }
        fn n_entities(&self) -> usize {
            self.n_entities
        }
        fn d_model(&self) -> usize {
            self.d_model
        }
        fn layer(&self, l: usize) -> Result<Cow<'_, [f32]>> {
            let d = self.d_model;
            if l > self.n_layers {
                return Err(Error::Input(format!(
                    "layer {l} is beyond the files' {} layers",
                    self.n_layers
                )));
            }
            let mut out = vec![0f32; self.n_entities * d];
            let mut buf = Vec::new();
            let mut bytes = 0u64;
            for p in &self.pieces {
                let layer_bytes = ((p.end - p.start) * d * p.floats.size()) as u64;
                p.read_layer(l, d, &mut out[p.start * d..p.end * d], &mut buf)
                    .map_err(|e| {
                        bad(
                            &p.path,
                            format!(
                                "cannot read layer {l} (entities {}..{}): {e}; was the file cut \
                                 or changed since the fit opened it?",
                                p.start, p.end
                            ),
                        )
                    })?;
                bytes += layer_bytes;
            }
            self.layers_read.fetch_add(1, Ordering::Relaxed);
            self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
            Ok(Cow::Owned(out))
        }
    }

    /// Activations read from files: whole in memory (formats that are not read by layer), or
    /// Probelab's files read layer by layer.
    #[derive(Debug)]
    pub enum Layers {
        Memory(Activations),
        Files(FileLayers),
    }

    impl Layers {
        /// Each entity's first token id (the control task's input); empty when unknown.
        pub fn first_token_ids(&self) -> &[u32] {
            match self {
                Layers::Memory(a) => &a.first_token_ids,
                Layers::Files(f) => &f.first_token_ids,
            }
        }

        pub fn into_activations(self) -> Result<Activations> {
            match self {
                Layers::Memory(a) => Ok(a),
                Layers::Files(f) => f.into_activations(),
            }
        }

        fn source(&self) -> &dyn LayerSource {
            match self {
                Layers::Memory(a) => a,
                Layers::Files(f) => f,
            }
        }
    }

    impl LayerSource for Layers {
        fn n_layers(&self) -> usize {
            self.source().n_layers()
        }
        fn n_entities(&self) -> usize {
            self.source().n_entities()
        }
        fn d_model(&self) -> usize {
            self.source().d_model()
        }
        fn layer(&self, l: usize) -> Result<Cow<'_, [f32]>> {
            self.source().layer(l)
        }
    }
}
