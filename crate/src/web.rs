//! The browser shell: a thin wasm-bindgen API the Web Worker drives batch by batch, so the
//! worker can report progress and honour Cancel between batches. All logic is in the core.

use std::cell::RefCell;
use std::io::Cursor;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::data;
use crate::extract::acts::{self, ActsMeta, StoreAs};
use crate::extract::{self, Activations, EntityTokens, Pooling, Template};
use crate::model::gguf::Config;
use crate::model::load::{LoadedModel, ModelHeader, ModelSummary};
use crate::model::tokenizer::Tokenizer;
use crate::model::LoadOptions;
use crate::probe::analysis;
use crate::render::{figures, ColorBy};

fn js_err(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The model a Lab holds: whole on the CPU, or (a model streamed to the GPU, see
/// [`GpuLoader`]) only its tokenizer and shape, the weights being on the GPU alone.
enum Model {
    Cpu(LoadedModel),
    GpuOnly(ModelHeader),
}

/// A loaded model plus the current extraction job. Batches are streamed: each finished batch's
/// rows wait in `rows` until the worker takes them, so a job of any length holds one batch.
#[wasm_bindgen]
pub struct Lab {
    loaded: Model,
    /// The random-initialised twin (the control model) and its seed, while a job uses it.
    twin: Option<(u64, crate::model::Llama)>,
    pooling: Pooling,
    /// Shared with batches running on the GPU (their futures outlive any borrow of the Lab).
    entities: Rc<Vec<EntityTokens>>,
    /// Entity indices in processing order (sorted by length), cut into batches.
    batches: Vec<Vec<usize>>,
    /// The last finished batch, `[layers + 1][batch entities][d_model]`, until taken.
    rows: Rc<RefCell<Option<Vec<f32>>>>,
    /// The causal test in progress, pass by pass.
    steer: Option<crate::causal::CausalRun>,
}

impl Lab {
    fn with(loaded: Model) -> Lab {
        Lab {
            loaded,
            twin: None,
            pooling: Pooling::Last,
            entities: Rc::new(Vec::new()),
            batches: Vec::new(),
            rows: Rc::new(RefCell::new(None)),
            steer: None,
        }
    }

    fn tokenizer(&self) -> &Tokenizer {
        match &self.loaded {
            Model::Cpu(l) => &l.tokenizer,
            Model::GpuOnly(h) => &h.tokenizer,
        }
    }

    fn config(&self) -> &Config {
        match &self.loaded {
            Model::Cpu(l) => &l.model.config,
            Model::GpuOnly(h) => &h.summary.config,
        }
    }

    fn sha256(&self) -> &str {
        match &self.loaded {
            Model::Cpu(l) => &l.sha256,
            Model::GpuOnly(h) => &h.summary.sha256,
        }
    }

    /// The model's CPU weights, for `what`; a model streamed to the GPU has none.
    fn cpu(&self, what: &str) -> Result<&LoadedModel, JsError> {
        cpu_of(&self.loaded, what)
    }
}

fn cpu_of<'a>(m: &'a Model, what: &str) -> Result<&'a LoadedModel, JsError> {
    match m {
        Model::Cpu(l) => Ok(l),
        Model::GpuOnly(h) => Err(JsError::new(&format!(
            "{what} needs the model's weights on the CPU, and this model ({:.1} GiB) was \
             streamed to the GPU alone (the CPU engine holds models up to 2 GiB); run it on the \
             command line (probelab), or load a smaller model",
            h.summary.file_size as f64 / (1u64 << 30) as f64
        ))),
    }
}

#[wasm_bindgen]
impl Lab {
    /// Parses and loads a GGUF model from its bytes.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: Vec<u8>) -> Result<Lab, JsError> {
        let mut cursor = Cursor::new(bytes);
        let loaded = LoadedModel::read(&mut cursor, &LoadOptions::default()).map_err(js_err)?;
        Ok(Lab::with(Model::Cpu(loaded)))
    }
    /// The model's shape, quantization, tokenizer and hash, as a plain object.
    pub fn info(&self) -> Result<JsValue, JsError> {
        let info = match &self.loaded {
            Model::Cpu(l) => l.info(),
            Model::GpuOnly(h) => h.summary.clone(),
        };
        // JSON-compatible: objects become plain JS objects, not Maps.
        info.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Tokenizes the entities and plans batches. Returns the number of batches.
    pub fn prepare(
        &mut self,
        names: Vec<String>,
        template: &str,
        pooling: &str,
        batch_size: usize,
    ) -> Result<usize, JsError> {
        let template = Template::new(template).map_err(js_err)?;
        let pooling: Pooling = pooling.parse().map_err(js_err)?;
        let entities = extract::tokenize_entities(
            self.tokenizer(),
            &names,
            &template,
            self.config().context_length,
        )
        .map_err(js_err)?;
        // The page's batches serve its WebGPU and its WebAssembly workers alike: the fewest
        // (a SwiftShader submission costs about the same whatever its size).
        self.batches = extract::plan_batches(&entities, batch_size, extract::Batching::Padded);
        *self.rows.borrow_mut() = None;
        self.entities = Rc::new(entities);
        self.pooling = pooling;
        Ok(self.batches.len())
    }

    /// The shipped prompt set for `kind` (`places` or `time`), its random prefix drawn from this
    /// model's vocabulary as the command line's `--prompt-set` draws it.
    pub fn shipped_prompts(&self, kind: &str) -> Result<Vec<String>, JsError> {
        let kind = crate::extract::prompts::shipped_kind(kind).map_err(js_err)?;
        crate::run::shipped_prompts(self.tokenizer(), kind).map_err(js_err)
    }

    /// Checks that every name can be used with the template (empty names, names longer than
    /// the context), numbering problems by their place in the whole list. The page calls this
    /// before it splits the list across workers.
    pub fn check(&self, names: Vec<String>, template: &str) -> Result<(), JsError> {
        let template = Template::new(template).map_err(js_err)?;
        extract::tokenize_entities(
            self.tokenizer(),
            &names,
            &template,
            self.config().context_length,
        )
        .map(|_| ())
        .map_err(js_err)
    }

    /// The model's surprisal of each name inside the prompt (nats per token, NaN where none
    /// of its tokens could be scored), on the CPU; `on_progress(done, total)` after each batch.
    pub fn name_surprisal(
        &self,
        names: Vec<String>,
        template: &str,
        on_progress: Option<js_sys::Function>,
    ) -> Result<Vec<f64>, JsError> {
        let template = Template::new(template).map_err(js_err)?;
        let loaded = self.cpu("the names' surprisal")?;
        let values = crate::run::name_surprisal(loaded, &names, &template, &mut |_, d, t| {
            if let Some(f) = &on_progress {
                let _ = f.call2(&JsValue::NULL, &(d as u32).into(), &(t as u32).into());
            }
            true
        })
        .map_err(js_err)?;
        Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }

    /// Plans the causal test ("Does the model use it?") for a fitted report (report.json's
    /// text) at `layer` (default: its selected layer) and the `window` layers after it:
    /// `layer_acts` are those layers' activations `[layers][entities][d_model]`,
    /// `first_token_ids` the control task's (empty: none).
    /// Runs the prompts to that layer on the CPU and returns the number of edited passes; then
    /// call [`Lab::steer_hold_cpu`] (or, on the GPU, [`Lab::steer_hidden_gpu`] for each of
    /// [`Lab::steer_batches`]), then [`Lab::steer_step`] (or [`Lab::steer_job_gpu`] and
    /// [`Lab::steer_record`]) until no pass is left, and [`Lab::steer_finish`].
    #[allow(clippy::too_many_arguments)]
    pub fn steer_prepare(
        &mut self,
        report_json: &str,
        layer_acts: Vec<f32>,
        first_token_ids: Vec<u32>,
        dataset_name: &str,
        csv: Option<Vec<u8>>,
        pooling: &str,
        layer: Option<usize>,
        readout: Option<String>,
        answer_column: Option<String>,
        candidates: Vec<String>,
        window: Option<usize>,
    ) -> Result<usize, JsError> {
        self.steer = None;
        let report: analysis::Report =
            serde_json::from_str(report_json).map_err(|e| JsError::new(&format!("report: {e}")))?;
        let (dataset, _) =
            crate::run::dataset_from(dataset_name, csv.as_deref(), data::OnBadRows::Skip)
                .map_err(js_err)?;
        let opts = crate::causal::CausalOptions {
            readout: readout.filter(|r| !r.trim().is_empty()),
            answer_column: answer_column.filter(|c| !c.trim().is_empty()),
            candidates: candidates
                .into_iter()
                .filter(|c| !c.trim().is_empty())
                .collect(),
            window: window.unwrap_or(0),
            ..Default::default()
        };
        // `layer_acts` holds the edited layers one after the other.
        let loaded = self.cpu("the causal test (its LM head)")?;
        let per_layer = (dataset.len() * loaded.model.config.d_model).max(1);
        let layers: Vec<&[f32]> = layer_acts.chunks(per_layer).collect();
        let run = crate::run::plan_causal(
            loaded,
            &report,
            &dataset,
            &layers,
            &first_token_ids,
            layer.unwrap_or(report.selected.layer),
            pooling.parse().map_err(js_err)?,
            &opts,
        )
        .map_err(js_err)?;
        let passes = run.passes();
        self.steer = Some(run);
        Ok(passes)
    }

    /// The prepared causal test, with the CPU model that gives its LM head.
    fn steer_parts(
        &mut self,
    ) -> Result<(&crate::model::Llama, &mut crate::causal::CausalRun), JsError> {
        let run = self
            .steer
            .as_mut()
            .ok_or_else(|| JsError::new("no causal test is prepared"))?;
        Ok((&cpu_of(&self.loaded, "the causal test")?.model, run))
    }

    fn steer_run(&mut self) -> Result<&mut crate::causal::CausalRun, JsError> {
        Ok(self.steer_parts()?.1)
    }

    /// Runs the prepared test's prompts to the edited layer on the CPU.
    pub fn steer_hold_cpu(&mut self) -> Result<(), JsError> {
        let (model, run) = self.steer_parts()?;
        run.hold(model).map_err(js_err)
    }

    /// How many prompt batches the prepared test holds at the edited layer.
    pub fn steer_batches(&mut self) -> Result<usize, JsError> {
        Ok(self.steer_run()?.prompt_batches().len())
    }

    /// Runs prompt batch `i` to the edited layer on the GPU; resolves with its packed rows for
    /// [`Lab::steer_set_hidden`].
    #[cfg(feature = "gpu")]
    pub fn steer_hidden_gpu(
        &mut self,
        gpu: &GpuModel,
        i: usize,
    ) -> Result<js_sys::Promise, JsError> {
        let run = self.steer_run()?;
        let layer = run.layer();
        let seqs = run
            .prompt_batches()
            .get(i)
            .ok_or_else(|| JsError::new(&format!("no prompt batch {i}")))?
            .to_vec();
        let model = gpu.model.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let rows = model
                .hidden_rows_async(&seqs, layer)
                .await
                .map_err(|e| JsValue::from(js_err(e)))?;
            Ok(js_sys::Float32Array::from(&rows[..]).into())
        }))
    }

    pub fn steer_set_hidden(&mut self, i: usize, rows: Vec<f32>) -> Result<(), JsError> {
        self.steer_run()?.set_hidden(i, rows).map_err(js_err)
    }

    /// Runs the next job of the prepared test on the GPU; resolves with its rows for
    /// [`Lab::steer_record`], or with null when every pass is done.
    #[cfg(feature = "gpu")]
    pub fn steer_job_gpu(&mut self, gpu: &GpuModel) -> Result<js_sys::Promise, JsError> {
        let run = self.steer_run()?;
        let job = run
            .next_job()
            .map_err(js_err)?
            .map(|j| (j.seqs.to_vec(), j.from, j.to, j.rows, j.read_rows.to_vec()));
        let model = gpu.model.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let Some((seqs, from, to, rows, reads)) = job else {
                return Ok(JsValue::NULL);
            };
            let out = model
                .resume_rows_async(&seqs, from, to, &rows, &reads)
                .await
                .map_err(|e| JsValue::from(js_err(e)))?;
            Ok(js_sys::Float32Array::from(&out[..]).into())
        }))
    }

    /// Takes the result of [`Lab::steer_job_gpu`] (the rows of the next job).
    pub fn steer_record(&mut self, rows: Vec<f32>) -> Result<(), JsError> {
        let (model, run) = self.steer_parts()?;
        run.record(model, rows).map_err(js_err)
    }

    /// Runs the next edited pass (one batch of it) on the CPU; false when all are done.
    pub fn steer_step(&mut self) -> Result<bool, JsError> {
        let (model, run) = self.steer_parts()?;
        run.step(model, model).map_err(js_err)
    }

    /// Passes done so far.
    pub fn steer_done(&self) -> usize {
        self.steer.as_ref().map_or(0, |r| r.passes_done())
    }

    /// The causal block of the report (JSON text), once every pass is done.
    pub fn steer_finish(&mut self) -> Result<String, JsError> {
        let run = self
            .steer
            .take()
            .ok_or_else(|| JsError::new("no causal test is prepared"))?;
        let causal = run.finish().map_err(js_err)?;
        serde_json::to_string(&causal).map_err(|e| JsError::new(&e.to_string()))
    }

    /// Drops a causal test in progress (Cancel).
    pub fn steer_cancel(&mut self) {
        self.steer = None;
    }

    /// Tokens in each prepared entity's prompt.
    pub fn tokens_per_entity(&self) -> Vec<u32> {
        self.entities.iter().map(|e| e.ids.len() as u32).collect()
    }

    /// The first token id of each prepared entity's name (the control task's input).
    pub fn first_token_ids(&self) -> Vec<u32> {
        self.entities
            .iter()
            .map(EntityTokens::first_token)
            .collect()
    }

    /// Runs the following jobs on the random-initialised twin of the model (the control model,
    /// built on first use from `seed`), or, with `None`, on the model again (the twin's memory
    /// is freed).
    pub fn use_random_init(&mut self, seed: Option<u64>) -> Result<(), JsError> {
        match seed {
            None => self.twin = None,
            Some(seed) if self.twin.as_ref().map(|t| t.0) != Some(seed) => {
                self.twin = None;
                let model = &self.cpu("the random-initialised control")?.model;
                let twin = model.random_like(seed).map_err(js_err)?;
                self.twin = Some((seed, twin));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// The entities of batch `i`, as positions in the prepared list, in the order of the rows
    /// [`Lab::take_rows`] returns.
    pub fn batch_entities(&self, i: usize) -> Result<Vec<u32>, JsError> {
        Ok(self
            .batches
            .get(i)
            .ok_or_else(|| JsError::new(&format!("no batch {i}")))?
            .iter()
            .map(|&e| e as u32)
            .collect())
    }

    /// Runs batch `i` (on the twin after `use_random_init`); returns [entities in the batch,
    /// tokens in the batch]. Its rows wait for [`Lab::take_rows`].
    pub fn run_batch(&mut self, i: usize) -> Result<Vec<u32>, JsError> {
        let which = self
            .batches
            .get(i)
            .ok_or_else(|| JsError::new(&format!("no batch {i}")))?;
        let model = match &self.twin {
            Some(t) => &t.1,
            None => &cpu_of(&self.loaded, "extraction on the CPU")?.model,
        };
        let rows =
            extract::batch_rows(model, &self.entities, which, self.pooling).map_err(js_err)?;
        *self.rows.borrow_mut() = Some(rows);
        let tokens: usize = which.iter().map(|&e| self.entities[e].ids.len()).sum();
        Ok(vec![which.len() as u32, tokens as u32])
    }

    /// The last finished batch's rows, `[layers + 1][batch entities][d_model]` flat (see
    /// [`Lab::batch_entities`]); each batch can be taken once.
    pub fn take_rows(&self) -> Result<Vec<f32>, JsError> {
        self.rows
            .borrow_mut()
            .take()
            .ok_or_else(|| JsError::new("no finished batch to take"))
    }

    /// Runs batch `i` on the GPU model (see [`GpuModel`]) without blocking: one submission, one
    /// read-back. The promise resolves with [entities in the batch, tokens in the batch] once
    /// the batch's rows are stored, or rejects with the GPU's error (the caller may then run the
    /// same batch on the CPU with `run_batch`: finished batches are kept).
    #[cfg(feature = "gpu")]
    pub fn run_batch_gpu(&self, gpu: &GpuModel, i: usize) -> Result<js_sys::Promise, JsError> {
        let which = self
            .batches
            .get(i)
            .ok_or_else(|| JsError::new(&format!("no batch {i}")))?
            .clone();
        if self.twin.is_some() {
            return Err(JsError::new(
                "the GPU holds the model's own weights, not the random-initialised twin",
            ));
        }
        let (model, entities, rows, pooling) = (
            gpu.model.clone(),
            self.entities.clone(),
            self.rows.clone(),
            self.pooling,
        );
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let got = model
                .forward_capture_async(&entities, &which, pooling)
                .await
                .map_err(|e| JsValue::from(js_err(e)))?;
            // Captured rows are already in batch order.
            *rows.borrow_mut() = Some(got.data);
            let tokens: usize = which.iter().map(|&e| entities[e].ids.len()).sum();
            Ok(js_sys::Array::of2(&(which.len() as u32).into(), &(tokens as u32).into()).into())
        }))
    }

    /// A safetensors file (f32) of activations `[layers + 1][names][d_model]` gathered by the
    /// page (possibly from several workers), with this model's identity in the metadata.
    #[allow(clippy::too_many_arguments)]
    pub fn safetensors(
        &self,
        data: Vec<f32>,
        names: Vec<String>,
        tokens_per_entity: Vec<u32>,
        template: &str,
        pooling: &str,
        dataset_name: &str,
    ) -> Result<Vec<u8>, JsError> {
        let c = self.config();
        if data.len() != (c.n_layers + 1) * names.len() * c.d_model
            || tokens_per_entity.len() != names.len()
        {
            return Err(JsError::new(
                "activations do not match the names and the model",
            ));
        }
        let acts = Activations {
            n_layers: c.n_layers,
            n_entities: names.len(),
            d_model: c.d_model,
            data,
            tokens_per_entity,
            first_token_ids: Vec::new(),
        };
        let pooling: Pooling = pooling.parse().map_err(js_err)?;
        let meta = ActsMeta::new(
            &c.name,
            self.sha256(),
            template,
            pooling,
            dataset_name,
            names,
        );
        acts::to_safetensors(&acts, &meta, StoreAs::F32).map_err(js_err)
    }

    /// Token ids of a text as the model sees it (with BOS where the model adds one).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsError> {
        Ok(self.tokenizer().encode_prompt(text).map_err(js_err)?.ids)
    }
}

/// The model's weights on the browser's GPU (WebGPU through wgpu), for [`Lab::run_batch_gpu`].
#[cfg(feature = "gpu")]
#[wasm_bindgen]
pub struct GpuModel {
    model: Rc<crate::gpu::GpuLlama>,
}

#[cfg(feature = "gpu")]
#[wasm_bindgen]
impl GpuModel {
    /// Requests a WebGPU adapter and device and uploads the GGUF model's weights from its bytes.
    /// Fails (rejects) when there is no adapter, its limits are too small, or a tensor's type is
    /// beyond the GPU kernels: the caller then stays on the CPU.
    pub async fn load(bytes: Vec<u8>) -> Result<GpuModel, JsError> {
        use crate::gpu::{GpuDevice, GpuLlama, GpuOptions};
        let engine = GpuDevice::new_async().await.map_err(js_err)?;
        let mut cursor = Cursor::new(bytes);
        let file = crate::model::gguf::ModelFile::read(&mut cursor).map_err(js_err)?;
        let model = GpuLlama::load(
            &file,
            &mut cursor,
            std::sync::Arc::new(engine),
            &GpuOptions::default(),
        )
        .map_err(js_err)?;
        Ok(GpuModel {
            model: Rc::new(model),
        })
    }

    /// The adapter as wgpu reports it: `{name, backend, device_type, driver, is_fallback, ...}`.
    pub fn report(&self) -> Result<JsValue, JsError> {
        self.model
            .device()
            .report()
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The most tokens one GPU submission holds.
    pub fn max_batch_tokens(&self) -> usize {
        self.model.max_batch_tokens()
    }

    /// Destroys the device, as a driver reset would: for tests of the CPU fallback.
    pub fn destroy_device_for_tests(&self) {
        self.model.device().destroy_device_for_tests();
    }
}

/// A model streamed to the GPU piece by piece, for models larger than wasm's memory: wasm
/// never holds more than one piece (a few MiB) of the weights. [`GpuLoader::begin`] with the
/// file's first bytes, then [`GpuLoader::put`] with the bytes of each of
/// [`GpuLoader::offsets`] / [`GpuLoader::lengths`] in order, then [`GpuLoader::finish`] (the
/// GPU model) and [`GpuLoader::lab`] (a Lab with the tokenizer but no CPU weights).
#[cfg(feature = "gpu")]
#[wasm_bindgen]
pub struct GpuLoader {
    stream: Option<crate::gpu::GpuStream>,
    tokenizer: Option<Tokenizer>,
    summary: Option<ModelSummary>,
}

#[cfg(feature = "gpu")]
#[wasm_bindgen]
impl GpuLoader {
    /// Parses the header from `prefix`, the first bytes of a file of `file_size` bytes, and
    /// plans the load on a new WebGPU device. Resolves with undefined when the header runs
    /// past the prefix (call again with more bytes); rejects when the file is bad or the
    /// adapter cannot hold the model, saying why with the numbers.
    pub async fn begin(prefix: Vec<u8>, file_size: f64) -> Result<Option<GpuLoader>, JsError> {
        use crate::gpu::{GpuDevice, GpuOptions, GpuStream};
        let Some(file) = crate::model::gguf::ModelFile::read_prefix(&prefix, file_size as u64)
            .map_err(js_err)?
        else {
            return Ok(None);
        };
        drop(prefix);
        let tokenizer = Tokenizer::from_gguf_metadata(file.metadata()).map_err(js_err)?;
        let gpu = GpuDevice::new_async().await.map_err(js_err)?;
        let stream = GpuStream::begin(file, std::sync::Arc::new(gpu), &GpuOptions::default())
            .map_err(js_err)?;
        Ok(Some(GpuLoader {
            stream: Some(stream),
            tokenizer: Some(tokenizer),
            summary: None,
        }))
    }

    fn stream(&self) -> Result<&crate::gpu::GpuStream, JsError> {
        self.stream
            .as_ref()
            .ok_or_else(|| JsError::new("the streamed load is already finished"))
    }

    /// What the load reads and asks of the device: `{file_size, read_bytes, gpu_bytes,
    /// largest_part, max_binding, max_buffer, pieces, largest_piece}`.
    pub fn plan(&self) -> Result<JsValue, JsError> {
        self.stream()?
            .plan()
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The adapter as wgpu reports it (see [`GpuModel::report`]).
    pub fn report(&self) -> Result<JsValue, JsError> {
        self.stream()?
            .device()
            .report()
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Each piece's first byte in the file.
    pub fn offsets(&self) -> Result<Vec<f64>, JsError> {
        Ok(self
            .stream()?
            .pieces()
            .iter()
            .map(|p| p.offset as f64)
            .collect())
    }

    /// Each piece's length in bytes.
    pub fn lengths(&self) -> Result<Vec<f64>, JsError> {
        Ok(self
            .stream()?
            .pieces()
            .iter()
            .map(|p| p.len as f64)
            .collect())
    }

    /// The tensor each piece belongs to (empty: read only for the file's hash).
    pub fn tensors(&self) -> Result<Vec<String>, JsError> {
        Ok(self
            .stream()?
            .pieces()
            .iter()
            .map(|p| p.tensor.clone())
            .collect())
    }

    /// Pieces taken so far.
    pub fn done(&self) -> Result<usize, JsError> {
        Ok(self.stream()?.done())
    }

    /// Uploads the next piece's bytes (a short piece is an error that names its tensor).
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), JsError> {
        self.stream
            .as_mut()
            .ok_or_else(|| JsError::new("the streamed load is already finished"))?
            .put(bytes)
            .map_err(js_err)
    }

    /// The model on the GPU, once every piece is in.
    pub fn finish(&mut self) -> Result<GpuModel, JsError> {
        let stream = self
            .stream
            .take()
            .ok_or_else(|| JsError::new("the streamed load is already finished"))?;
        let (model, file, sha256) = stream.finish().map_err(js_err)?;
        let tokenizer = self
            .tokenizer
            .as_ref()
            .ok_or_else(|| JsError::new("the tokenizer is already taken"))?;
        self.summary = Some(ModelSummary::from_header(&file, tokenizer, sha256).map_err(js_err)?);
        Ok(GpuModel {
            model: Rc::new(model),
        })
    }

    /// A Lab for the finished model: the tokenizer and shape, no CPU weights (extraction runs
    /// on the GPU with [`Lab::run_batch_gpu`]; what needs CPU weights says so).
    pub fn lab(&mut self) -> Result<Lab, JsError> {
        match (self.tokenizer.take(), self.summary.take()) {
            (Some(tokenizer), Some(summary)) => Ok(Lab::with(Model::GpuOnly(ModelHeader {
                tokenizer,
                summary,
            }))),
            _ => Err(JsError::new("finish the streamed load first (once)")),
        }
    }
}

/// Entities per batch when extraction runs on the GPU.
#[wasm_bindgen]
pub fn gpu_batch_size() -> usize {
    extract::GPU_BATCH_SIZE
}

/// What the page needs of a dataset: `{name, target, n, names, groups, has_is_test}`, where
/// `groups` are the columns offered for block hold-out.
fn dataset_json(d: &data::Dataset) -> serde_json::Value {
    serde_json::json!({
        "name": d.name,
        "target": d.kind,
        "n": d.len(),
        "names": d.names,
        "groups": d.block_columns(),
        "has_is_test": d.is_test.is_some(),
    })
}

/// A CSV file for the page, as JSON: a dataset, `{kind: "dataset", name, target, n, names,
/// groups, has_is_test, problems: [{line, message}]}` (rows that cannot be used are skipped and
/// listed by line), or names without targets, `{kind: "names", names, why}`. A file that
/// cannot be used at all is an error that says why.
#[wasm_bindgen]
pub fn read_dataset(file_name: &str, bytes: &[u8]) -> Result<String, JsError> {
    let value = match data::read_csv(file_name, bytes, data::OnBadRows::Skip).map_err(js_err)? {
        data::CsvContents::Dataset { dataset, problems } => {
            let mut value = dataset_json(&dataset);
            value["kind"] = "dataset".into();
            value["problems"] = serde_json::json!(problems);
            value
        }
        data::CsvContents::NamesOnly { names, why } => {
            serde_json::json!({"kind": "names", "names": names, "why": why})
        }
    };
    serde_json::to_string(&value).map_err(|e| JsError::new(&e.to_string()))
}

/// The analysis options of a fit in the page: the defaults, with the page's shuffles and seed
/// (one place, so the plan the page locks is the plan its fits run).
fn page_options(permutations: usize, seed: u64) -> analysis::AnalysisOptions {
    analysis::AnalysisOptions {
        n_permutations: permutations,
        seed,
        ..Default::default()
    }
}

/// Fits the probes with every control on activations (from the page's extraction, or any
/// other source) for a built-in dataset or CSV bytes, and returns the [`Report`]. `prompts` is
/// the prompt set and `data` holds each template's activations `[layers + 1][entities]
/// [d_model]` one after the other; with several templates the report chooses the template with
/// the layer and its p-value pays for both. `random_init` (same shape) enables the random-init
/// control; an empty `first_token_ids` (the first template's) skips the control task;
/// `surprisal` (one per entity, NaN = not scored) adds the names' surprisal to the report;
/// `plan` (the ledger's record, from [`ledger_record`]) becomes the report's `plan` block; a
/// random split is re-drawn over `split_seeds` more seeds (the report's `seed_spread`);
/// `on_progress(stage, done, total)` hears each stage.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn fit_probes(
    data: Vec<f32>,
    n_layers: usize,
    d_model: usize,
    random_init: Option<Vec<f32>>,
    first_token_ids: Vec<u32>,
    dataset_name: &str,
    csv: Option<Vec<u8>>,
    split: &str,
    permutations: usize,
    seed: u64,
    split_seeds: usize,
    model_name: &str,
    model_sha256: &str,
    prompts: Vec<String>,
    pooling: &str,
    surprisal: Option<Vec<f64>>,
    plan: Option<String>,
    on_progress: Option<js_sys::Function>,
) -> Result<Report, JsError> {
    let (dataset, _) =
        crate::run::dataset_from(dataset_name, csv.as_deref(), data::OnBadRows::Skip)
            .map_err(js_err)?;
    crate::extract::prompts::prompt_set(&prompts).map_err(js_err)?;
    let plan = plan_record(plan)?;
    let n = dataset.len();
    let per_template = (n_layers + 1) * n * d_model;
    let shaped = |v: Vec<f32>, what: &str| -> Result<Vec<Activations>, JsError> {
        if v.len() != prompts.len() * per_template {
            return Err(JsError::new(&format!(
                "{what}: {} values, expected templates {} × (layers+1) {} × entities {n} × d \
                 {d_model}",
                v.len(),
                prompts.len(),
                n_layers + 1
            )));
        }
        Ok(v.chunks(per_template.max(1))
            .map(|part| Activations {
                n_layers,
                n_entities: n,
                d_model,
                data: part.to_vec(),
                tokens_per_entity: vec![0; n],
                first_token_ids: first_token_ids.clone(),
            })
            .collect())
    };
    let acts = shaped(data, "activations")?;
    let random = random_init
        .map(|r| shaped(r, "random-init activations"))
        .transpose()?;
    let pooling: Pooling = pooling.parse().map_err(js_err)?;
    let meta = ActsMeta::for_dataset(model_name, model_sha256, &prompts[0], pooling, &dataset);
    // NaN marks a name the model could not score.
    let surprisal: Option<Vec<Option<f64>>> =
        surprisal.map(|v| v.into_iter().map(|x| x.is_finite().then_some(x)).collect());
    let report = fit_sweep(
        &Sweep {
            prompts: &prompts,
            acts: &acts,
            random: random.as_deref(),
            meta: &meta,
            surprisal: surprisal.as_deref(),
        },
        &dataset,
        &PageFit {
            split,
            permutations,
            seed,
            split_seeds,
            plan,
        },
        on_progress,
    )?;
    Ok(Report { report })
}

/// A prompt sweep's activations as the page fits them: one per template, the random-init
/// model's for every template or none.
struct Sweep<'a> {
    prompts: &'a [String],
    acts: &'a [Activations],
    random: Option<&'a [Activations]>,
    meta: &'a ActsMeta,
    surprisal: Option<&'a [Option<f64>]>,
}

/// The page's fit settings.
struct PageFit<'a> {
    split: &'a str,
    permutations: usize,
    seed: u64,
    split_seeds: usize,
    plan: Option<crate::probe::preregistration::PlanRecord>,
}

/// The page's fit: the probes and every control on a sweep, re-drawn over `split_seeds` more
/// seeds, with the plan's record; `on_progress(stage, done, total)` hears each stage. Shared by
/// activations from the page's extraction ([`fit_probes`]) and from a file ([`ImportedActs`]).
fn fit_sweep(
    sweep: &Sweep,
    dataset: &data::Dataset,
    fit: &PageFit,
    on_progress: Option<js_sys::Function>,
) -> Result<analysis::Report, JsError> {
    let split = crate::run::parse_split(fit.split, fit.seed).map_err(js_err)?;
    let templates: Vec<_> = sweep
        .prompts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), &sweep.acts[i], sweep.random.map(|r| &r[i])))
        .collect();
    let tell = |stage: &str, done: usize, total: usize| {
        if let Some(f) = &on_progress {
            let _ = f.call3(
                &JsValue::NULL,
                &stage.into(),
                &(done as u32).into(),
                &(total as u32).into(),
            );
        }
    };
    // One template is a sweep of one: the plain fit's report.
    let fit_on = |split: &crate::probe::SplitSpec,
                  opts: &analysis::AnalysisOptions,
                  progress: &mut analysis::StageProgress| {
        crate::run::fit_prompts(
            &templates,
            sweep.meta,
            sweep.surprisal,
            dataset,
            split,
            opts,
            progress,
        )
    };
    let opts = page_options(fit.permutations, fit.seed);
    // (stage, done, total) to the caller, e.g. a worker posting progress to the page.
    let mut report = fit_on(&split, &opts, &mut |stage, done, total| {
        tell(stage, done, total);
        true
    })
    .map_err(js_err)?;
    // The same choice re-run on other random splits: how far the headline moves with the seed.
    let mut seeds_done = 0;
    crate::run::add_seed_spread(
        &mut report,
        &split,
        &opts,
        fit.split_seeds,
        &mut |split, opts| {
            tell("split seeds", seeds_done, fit.split_seeds);
            seeds_done += 1;
            fit_on(split, opts, &mut |_, _, _| true)
        },
    );
    report.plan = fit.plan.clone();
    Ok(report)
}

/// Activations made elsewhere, from the bytes of one file the page was given (and of the
/// random-init control's, when given), of a dataset's entities in its row order, read by the
/// core's importer ([`crate::extract::import::run_from_bytes`]: the formats, checks and
/// provenance of `probelab fit`). Sharded directories are the command line's.
#[wasm_bindgen]
pub struct ImportedActs {
    run: crate::extract::import::ImportedRun,
    dataset: data::Dataset,
}

#[wasm_bindgen]
impl ImportedActs {
    /// Reads the file (its name tells the format) as activations of the dataset's names (a
    /// built-in dataset, or CSV bytes): a file without names takes the dataset's, a file with
    /// names must have the dataset's, row by row. An error says what is wrong (the format, the
    /// first row whose names differ, the shape against the names, a NaN by layer and entity…).
    #[wasm_bindgen(constructor)]
    pub fn new(
        file_name: &str,
        bytes: &[u8],
        random_name: Option<String>,
        random_bytes: Option<Vec<u8>>,
        dataset_name: &str,
        csv: Option<Vec<u8>>,
    ) -> Result<ImportedActs, JsError> {
        let (dataset, _) =
            crate::run::dataset_from(dataset_name, csv.as_deref(), data::OnBadRows::Skip)
                .map_err(js_err)?;
        let opts = crate::extract::import::ImportOptions {
            names: Some(dataset.names.clone()),
            names_from: Some(format!("dataset '{}'", dataset.name)),
            ..Default::default()
        };
        let random = random_name.as_deref().zip(random_bytes.as_deref());
        let run = crate::extract::import::run_from_bytes(
            (file_name, bytes),
            random,
            &opts,
            "the page's second activations file, for the random-init control",
        )
        .map_err(js_err)?;
        crate::extract::import::check_dataset(&run.real.meta, &dataset).map_err(js_err)?;
        Ok(ImportedActs { run, dataset })
    }

    /// What the page shows and plans with: `{source, random_init, n_entities, n_layers,
    /// d_model, model_name, model_sha256, prompt, pooling}`.
    pub fn info(&self) -> Result<String, JsError> {
        let (real, meta) = (&self.run.real, &self.run.real.meta);
        let value = serde_json::json!({
            "source": real.source.to_string(),
            "random_init": self.run.random_init_note,
            "n_entities": real.acts.n_entities,
            "n_layers": real.acts.n_layers,
            "d_model": real.acts.d_model,
            "model_name": meta.model_name,
            "model_sha256": meta.model_sha256,
            "prompt": meta.prompt_template,
            "pooling": meta.pooling.to_string(),
        });
        Ok(value.to_string())
    }

    /// Fits the probes and every control as [`fit_probes`] does, and records in the report
    /// where the activations came from and where the control's did (or that it is missing),
    /// as `probelab fit` records them.
    pub fn fit(
        &self,
        split: &str,
        permutations: usize,
        seed: u64,
        split_seeds: usize,
        plan: Option<String>,
        on_progress: Option<js_sys::Function>,
    ) -> Result<Report, JsError> {
        let run = &self.run;
        let mut report = fit_sweep(
            &Sweep {
                prompts: std::slice::from_ref(&run.real.meta.prompt_template),
                acts: std::slice::from_ref(&run.real.acts),
                random: run.random_init.as_ref().map(std::slice::from_ref),
                meta: &run.real.meta,
                surprisal: run.name_surprisal.as_deref(),
            },
            &self.dataset,
            &PageFit {
                split,
                permutations,
                seed,
                split_seeds,
                plan: plan_record(plan)?,
            },
            on_progress,
        )?;
        crate::run::note_source(&mut report, run);
        Ok(Report { report })
    }
}

/// The plan's ledger record (from [`ledger_record`]) as the report's `plan` block.
fn plan_record(
    plan: Option<String>,
) -> Result<Option<crate::probe::preregistration::PlanRecord>, JsError> {
    plan.map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| JsError::new(&format!("the plan's ledger record: {e}")))
}

/// The page's prompt templates from its text box (one per line, blank lines skipped), checked
/// as the command line checks `--prompts`: none, a template without `{name}` or one given twice
/// is an error that says so.
#[wasm_bindgen]
pub fn prompt_templates(text: &str) -> Result<Vec<String>, JsError> {
    let lines = crate::extract::prompts::read_prompt_lines(text);
    crate::extract::prompts::prompt_set(&lines).map_err(js_err)?;
    Ok(lines)
}

/// The analysis plan of a fit the page would run (the same settings [`fit_probes`] takes), as
/// `{"hash", "plan"}` JSON: `plan` is the canonical plan, `hash` its sha256.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn analysis_plan(
    dataset_name: &str,
    csv: Option<Vec<u8>>,
    model_sha256: &str,
    pooling: &str,
    split: &str,
    prompts: Vec<String>,
    permutations: usize,
    seed: u64,
    random_init: bool,
) -> Result<String, JsError> {
    use crate::probe::preregistration::AnalysisPlan;
    let (dataset, _) =
        crate::run::dataset_from(dataset_name, csv.as_deref(), data::OnBadRows::Skip)
            .map_err(js_err)?;
    let plan = AnalysisPlan::new(
        &dataset,
        model_sha256,
        pooling.parse().map_err(js_err)?,
        &crate::run::parse_split(split, seed).map_err(js_err)?,
        &prompts,
        &page_options(permutations, seed),
        random_init,
    )
    .map_err(js_err)?;
    let canonical: serde_json::Value =
        serde_json::from_str(&plan.canonical_json().map_err(js_err)?)
            .map_err(|e| JsError::new(&e.to_string()))?;
    let out = serde_json::json!({ "hash": plan.hash().map_err(js_err)?, "plan": canonical });
    Ok(out.to_string())
}

/// Where plan `b` (JSON) differs from plan `a`, as dotted field paths (`split.seed`).
#[wasm_bindgen]
pub fn plan_differences(a: &str, b: &str) -> Result<Vec<String>, JsError> {
    use crate::probe::preregistration::AnalysisPlan;
    let a = AnalysisPlan::from_json(a.as_bytes(), "the locked plan").map_err(js_err)?;
    let b = AnalysisPlan::from_json(b.as_bytes(), "this run's plan").map_err(js_err)?;
    a.differences(&b).map_err(js_err)
}

/// Records that `plan` (JSON) scores its test set now (`now`, RFC 3339 UTC) in the page's
/// ledger (JSON, or none yet): `{"ledger", "record"}` JSON, the ledger to store and the
/// report's `plan` block (confirmatory or exploratory, with the plans tried).
#[wasm_bindgen]
pub fn ledger_record(ledger: Option<String>, plan: &str, now: &str) -> Result<String, JsError> {
    use crate::probe::preregistration::{AnalysisPlan, Ledger};
    let mut book = match ledger {
        Some(text) => Ledger::from_json(text.as_bytes(), "in this browser").map_err(js_err)?,
        None => Ledger::new(),
    };
    let plan = AnalysisPlan::from_json(plan.as_bytes(), "this run's plan").map_err(js_err)?;
    let record = book.record(&plan, now).map_err(js_err)?;
    let out = serde_json::json!({ "ledger": book, "record": record });
    Ok(out.to_string())
}

/// How many plans the page's ledger (JSON, or none yet) holds for `plan`'s test set.
#[wasm_bindgen]
pub fn ledger_plans_scored(ledger: Option<String>, plan: &str) -> Result<usize, JsError> {
    use crate::probe::preregistration::{AnalysisPlan, Ledger};
    let Some(text) = ledger else { return Ok(0) };
    let book = Ledger::from_json(text.as_bytes(), "in this browser").map_err(js_err)?;
    let plan = AnalysisPlan::from_json(plan.as_bytes(), "this run's plan").map_err(js_err)?;
    Ok(book.plans_scored(&plan))
}

/// The report's `plan` block for a run whose ledger could not be kept (no store in this
/// browser): the plan and its hash, status `unrecorded`.
#[wasm_bindgen]
pub fn plan_unrecorded(plan: &str, now: &str) -> Result<String, JsError> {
    use crate::probe::preregistration::{AnalysisPlan, PlanRecord};
    let plan = AnalysisPlan::from_json(plan.as_bytes(), "this run's plan").map_err(js_err)?;
    let record = PlanRecord::unrecorded(&plan, now).map_err(js_err)?;
    serde_json::to_string(&record).map_err(|e| JsError::new(&e.to_string()))
}

/// A fitted report, read once: the page's slider, summary and exports ask it, instead of
/// handing report.json's text across the boundary (and parsing it) on every move.
#[wasm_bindgen]
pub struct Report {
    report: analysis::Report,
}

#[wasm_bindgen]
impl Report {
    /// A report from report.json's text (e.g. one the page stored).
    pub fn from_json(text: &str) -> Result<Report, JsError> {
        let report =
            serde_json::from_str(text).map_err(|e| JsError::new(&format!("report: {e}")))?;
        Ok(Report { report })
    }

    /// report.json's text, as the command line writes it.
    pub fn to_json(&self) -> Result<String, JsError> {
        serde_json::to_string(&self.report).map_err(|e| JsError::new(&e.to_string()))
    }

    /// The figures, `{"layers": scene, "map" | "time": scene}`, each in the scene format of
    /// `render/`, for drawing on a canvas ([`figures::scenes`]).
    pub fn scenes(&self) -> Result<String, JsError> {
        let parts: Vec<String> = figures::scenes(&self.report)
            .map_err(js_err)?
            .iter()
            .map(|(name, scene)| format!("\"{name}\":{}", scene.to_json()))
            .collect();
        Ok(format!("{{{}}}", parts.join(",")))
    }

    /// The score-by-layer chart laid out for the width the page shows it at (scene JSON; see
    /// [`figures::layer_scene_for_width`]).
    pub fn layer_scene(&self, width: f32) -> String {
        figures::layer_scene_for_width(&self.report, width).to_json()
    }

    /// The map at one layer (scene JSON, with its `points` for hover and tap) for the layer
    /// slider: the held-out places, and with `show_train` the training places too (faded;
    /// where the report has their predictions). Empty when there is none.
    /// `color_by`: `group`, `longitude` or `surprisal`.
    pub fn map_scene(
        &self,
        layer: usize,
        color_by: &str,
        show_train: bool,
    ) -> Result<String, JsError> {
        let color_by = match color_by {
            "longitude" => ColorBy::ByTrueLongitude,
            "surprisal" => ColorBy::Surprisal,
            _ => ColorBy::ByGroup,
        };
        Ok(
            figures::map_scene_at_layer(&self.report, layer, color_by, show_train)
                .map_err(js_err)?
                .map(|s| s.to_json())
                .unwrap_or_default(),
        )
    }

    /// The plain-language summary: see [`figures::summary`].
    pub fn summary(&self) -> String {
        figures::summary(&self.report)
    }

    /// The verdict card as JSON ([`crate::render::verdict`]): the headline, its numbers, and one
    /// line per control with its outcome and the figure that shows it.
    pub fn verdict(&self) -> Result<String, JsError> {
        serde_json::to_string(&crate::render::verdict(&self.report))
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// predictions.csv, as the command line writes it.
    pub fn predictions_csv(&self) -> Result<String, JsError> {
        analysis::predictions_csv(&self.report).map_err(js_err)
    }
}

/// Hex SHA-256 of bytes: the page's cache keys (WebCrypto is missing outside secure contexts,
/// e.g. in an iframe on a plain-http page).
#[wasm_bindgen]
pub fn sha256_hex(bytes: &[u8]) -> Result<String, JsError> {
    crate::model::gguf::sha256_hex(&mut Cursor::new(bytes)).map_err(js_err)
}

/// Seed of the random-initialised control model: the command line's, so both draw the same twin.
#[wasm_bindgen]
pub fn random_init_seed() -> u64 {
    crate::run::RANDOM_INIT_SEED
}

/// The built-in datasets: `[{name, n, target}]` JSON.
#[wasm_bindgen]
pub fn builtin_datasets() -> Result<String, JsError> {
    let list: Vec<serde_json::Value> = data::BUILTIN_NAMES
        .iter()
        .map(|name| {
            let d = data::load_builtin(name).map_err(js_err)?;
            Ok(dataset_json(&d))
        })
        .collect::<Result<_, JsError>>()?;
    serde_json::to_string(&list).map_err(|e| JsError::new(&e.to_string()))
}
