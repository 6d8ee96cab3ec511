//! Which engine runs the forward pass: the CPU (candle, [`crate::model`]) or the GPU (wgpu,
//! [`crate::gpu`]). Shells translate `--engine cpu|gpu|auto` (or a page setting) into an
//! [`EngineChoice`], open an [`Engine`] once per model, and extract through it.
//!
//! `auto` takes the GPU only when it is a real one: a software adapter (lavapipe, SwiftShader)
//! is correct but slower than the CPU path. Any GPU failure under `auto` (no adapter, a quant
//! type the kernels do not read, a lost device mid-run) falls back to the CPU and says why.

use std::io::{Read, Seek};

use crate::error::{Error, Result};
use crate::extract::{self, Activations, EntityTokens, ExtractOptions, Forward, Progress};
use crate::model::gguf::ModelFile;
use crate::model::Llama;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    Cpu,
    Gpu,
    #[default]
    Auto,
}

impl std::str::FromStr for EngineChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            "auto" => Ok(Self::Auto),
            other => Err(Error::Input(format!(
                "engine '{other}': use 'cpu', 'gpu' or 'auto'"
            ))),
        }
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
            Self::Auto => "auto",
        })
    }
}

/// The engine chosen for one model.
pub struct Engine {
    choice: EngineChoice,
    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    gpu: Option<Box<crate::gpu::GpuLlama>>,
    /// One line for the user: which engine, on what, and why.
    pub note: String,
    fallback: std::sync::Mutex<Option<String>>,
}

impl Engine {
    /// The CPU engine.
    pub fn cpu() -> Self {
        Self {
            choice: EngineChoice::Cpu,
            #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
            gpu: None,
            note: "CPU engine".into(),
            fallback: Default::default(),
        }
    }

    /// Opens the engine for the model at `path` (the GPU engine reads its weights from there).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(choice: EngineChoice, path: &std::path::Path) -> Result<Self> {
        if choice == EngineChoice::Cpu {
            return Ok(Self::cpu());
        }
        let f = std::fs::File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let mut r = std::io::BufReader::new(f);
        let file = ModelFile::read(&mut r)?;
        Self::select(choice, &file, &mut r)
    }

    /// The GPU engine alone (`--engine gpu`): the weights go from the file at `path` to the
    /// GPU piece by piece, as in the page's streamed load, and the CPU never holds them. Gives
    /// the model's header (its tokenizer, and its summary with the file's SHA-256, hashed on
    /// the way); `progress(done, total)` counts the pieces read.
    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    pub fn open_streamed(
        path: &std::path::Path,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Self, crate::model::ModelHeader)> {
        use crate::gpu::{GpuDevice, GpuOptions, GpuStream};
        use crate::model::{tokenizer::Tokenizer, ModelHeader, ModelSummary};
        let f = std::fs::File::open(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let mut r = std::io::BufReader::new(f);
        let file = ModelFile::read(&mut r)?;
        let tokenizer = Tokenizer::from_gguf_metadata(file.metadata())?;
        // The summary checks the vocabulary before any weight is read; the hash comes last.
        let mut summary = ModelSummary::from_header(&file, &tokenizer, String::new())?;
        let device = GpuDevice::new()?;
        let report = device.report().clone();
        let stream = GpuStream::begin(file, std::sync::Arc::new(device), &GpuOptions::default())?;
        let (gpu, _, sha256) = stream.read_all(&mut r, progress)?;
        summary.sha256 = sha256;
        let mut engine = Self::cpu();
        engine.choice = EngineChoice::Gpu;
        engine.gpu = Some(Box::new(gpu));
        engine.note = format!(
            "GPU engine on {report} (weights streamed from the file; the CPU holds none of them)"
        );
        Ok((engine, ModelHeader { tokenizer, summary }))
    }

    /// Picks the engine for a parsed model file, loading the GPU weights from `reader` when
    /// the GPU is chosen.
    pub fn select<R: Read + Seek>(
        choice: EngineChoice,
        file: &ModelFile,
        reader: &mut R,
    ) -> Result<Self> {
        Self::select_inner(choice, file, reader, false)
    }

    /// [`Engine::select`] where `auto` also takes a software adapter: for tests of the `auto`
    /// paths on machines whose only adapter is lavapipe.
    #[doc(hidden)]
    pub fn select_allowing_software<R: Read + Seek>(
        choice: EngineChoice,
        file: &ModelFile,
        reader: &mut R,
    ) -> Result<Self> {
        Self::select_inner(choice, file, reader, true)
    }

    fn select_inner<R: Read + Seek>(
        choice: EngineChoice,
        file: &ModelFile,
        reader: &mut R,
        allow_software: bool,
    ) -> Result<Self> {
        let mut engine = Self::cpu();
        engine.choice = choice;
        if choice == EngineChoice::Cpu {
            return Ok(engine);
        }
        match Self::load_gpu(choice, file, reader, allow_software) {
            Ok((gpu, note)) => {
                #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
                {
                    engine.gpu = gpu;
                }
                #[cfg(not(all(feature = "gpu", not(target_arch = "wasm32"))))]
                let _ = gpu;
                engine.note = note;
                Ok(engine)
            }
            Err(e) if choice == EngineChoice::Auto => {
                engine.note = format!("CPU engine (auto: {e})");
                Ok(engine)
            }
            Err(e) => Err(e),
        }
    }

    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    #[allow(clippy::type_complexity)]
    fn load_gpu<R: Read + Seek>(
        choice: EngineChoice,
        file: &ModelFile,
        reader: &mut R,
        allow_software: bool,
    ) -> Result<(Option<Box<crate::gpu::GpuLlama>>, String)> {
        use crate::gpu::{GpuDevice, GpuLlama, GpuOptions};
        let device = GpuDevice::new()?;
        let report = device.report().clone();
        if choice == EngineChoice::Auto && report.is_fallback && !allow_software {
            return Ok((
                None,
                format!(
                    "CPU engine (auto: the only GPU is {report}, slower than the CPU; --engine gpu forces it)"
                ),
            ));
        }
        let gpu = GpuLlama::load(
            file,
            reader,
            std::sync::Arc::new(device),
            &GpuOptions::default(),
        )?;
        Ok((Some(Box::new(gpu)), format!("GPU engine on {report}")))
    }

    #[cfg(not(all(feature = "gpu", not(target_arch = "wasm32"))))]
    fn load_gpu<R: Read + Seek>(
        _choice: EngineChoice,
        _file: &ModelFile,
        _reader: &mut R,
        _allow_software: bool,
    ) -> Result<(Option<()>, String)> {
        Err(Error::Gpu(
            "this build has no GPU engine (built without the `gpu` feature)".into(),
        ))
    }

    /// The GPU model, when extraction runs on the GPU.
    #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
    pub fn gpu(&self) -> Option<&crate::gpu::GpuLlama> {
        self.gpu.as_deref()
    }

    pub fn choice(&self) -> EngineChoice {
        self.choice
    }

    /// Whether extraction runs on the GPU.
    pub fn is_gpu(&self) -> bool {
        #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
        return self.gpu.is_some();
        #[cfg(not(all(feature = "gpu", not(target_arch = "wasm32"))))]
        false
    }

    /// Entities per forward pass that suit this engine: the GPU wants wide batches.
    pub fn preferred_batch_size(&self) -> usize {
        if self.is_gpu() {
            extract::GPU_BATCH_SIZE
        } else {
            ExtractOptions::default().batch_size
        }
    }

    /// Why an `auto` engine dropped to the CPU during extraction, if it did.
    pub fn fallback_reason(&self) -> Option<String> {
        self.fallback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `job` on this engine's model, and under `auto` again on the CPU model `cpu` when
    /// the GPU fails (saying why in [`Engine::fallback_reason`]). `cpu` also serves the CPU
    /// engine; it is `None` only for a GPU engine opened by [`Engine::open_streamed`].
    pub fn run<T>(
        &self,
        cpu: Option<&Llama>,
        mut job: impl FnMut(&dyn Forward) -> Result<T>,
    ) -> Result<T> {
        #[cfg(all(feature = "gpu", not(target_arch = "wasm32")))]
        if let Some(gpu) = &self.gpu {
            match job(gpu.as_ref()) {
                Err(Error::Gpu(msg)) if self.choice == EngineChoice::Auto && cpu.is_some() => {
                    *self.fallback.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(format!("the GPU failed ({msg}); extracted on the CPU"));
                }
                other => return other,
            }
        }
        let cpu = cpu.ok_or_else(|| {
            Error::Input("this model's weights are on the GPU only; the CPU has none to run".into())
        })?;
        job(cpu)
    }

    /// [`extract::extract`] on this engine (see [`Engine::run`]).
    pub fn extract(
        &self,
        cpu: &Llama,
        entities: &[EntityTokens],
        opts: &ExtractOptions,
        progress: &mut Progress,
    ) -> Result<Activations> {
        self.run(Some(cpu), |model| {
            extract::extract(model, entities, opts, progress)
        })
    }
}
