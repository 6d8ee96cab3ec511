//! The command-line shell: arguments in, core calls, files and messages out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use probelab::data::OnBadRows;
use probelab::engine::{Engine, EngineChoice};
use probelab::extract::acts::{self, ActsMeta, StoreAs};
use probelab::extract::import;
use probelab::extract::{self, prompts, ExtractOptions, Pooling, Template};
use probelab::model::load::{LoadedModel, ModelHeader, ModelSummary};
use probelab::model::{LoadOptions, Matmul};
use probelab::probe::analysis::{AnalysisOptions, Report};
use probelab::probe::preregistration::{self, AnalysisPlan, PlanRecord};
use probelab::render::figures;
use probelab::{data, run, Error, Result};

#[derive(Parser)]
#[command(
    name = "probelab",
    version,
    about = "Linear probes for space and time on llama GGUF models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Capture the residual stream at every layer for a list of names.
    Extract {
        /// A llama-architecture GGUF file.
        #[arg(long)]
        model: PathBuf,
        /// A .csv file with a 'name' column, or any other file with one name per line.
        #[arg(long)]
        dataset: PathBuf,
        /// Prompt template; {name} is replaced by each name.
        #[arg(long, default_value = extract::DEFAULT_TEMPLATE)]
        prompt: String,
        /// Output safetensors file: activations [layers+1, entities, d_model].
        #[arg(long)]
        out: PathBuf,
        /// 'last' (the name's last token) or 'mean' (mean over the name's tokens).
        #[arg(long = "pool", default_value = "last")]
        pooling: String,
        /// Entities per forward pass.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Store f16 instead of f32.
        #[arg(long)]
        f16: bool,
        /// gpu (wgpu: Vulkan/Metal/DX12), cpu, or auto (a hardware GPU when there is one).
        #[arg(long, default_value = "auto")]
        engine: String,
        /// How the CPU engine multiplies: exact (dequantize to f32, the GPU engine's numbers),
        /// quantized (on the GGUF blocks with 8-bit activations, as llama.cpp; faster for
        /// 7B-class models), or auto (exact while f32 copies of the weights fit in 2 GiB).
        #[arg(long, default_value = "auto")]
        matmul: String,
    },
    /// Extract, fit the probes with every control, and write report.json, predictions.csv,
    /// map.png (or time.png) and layers.png, plus the activations for later re-fits.
    Run {
        #[arg(long)]
        model: PathBuf,
        /// A built-in dataset (world-places, world-places-200, historical-years,
        /// historical-years-200) or a CSV file with name + latitude/longitude or year columns.
        #[arg(long)]
        dataset: String,
        #[command(flatten)]
        prompts: PromptArgs,
        #[command(flatten)]
        fit: FitArgs,
        #[arg(long)]
        out: PathBuf,
        /// 'last' or 'mean', as for `extract`.
        #[arg(long = "pool", default_value = "last")]
        pooling: String,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Skip the random-initialised model control (halves the extraction time).
        #[arg(long)]
        no_random_init: bool,
        /// gpu, cpu or auto, as for `extract` (the random-init control always runs on the CPU).
        #[arg(long, default_value = "auto")]
        engine: String,
        /// How the CPU engine multiplies: exact (dequantize to f32, the GPU engine's numbers),
        /// quantized (on the GGUF blocks with 8-bit activations, as llama.cpp; faster for
        /// 7B-class models), or auto (exact while f32 copies of the weights fit in 2 GiB).
        #[arg(long, default_value = "auto")]
        matmul: String,
        /// Run the causal test at the selected layer too (as `probelab steer`).
        #[arg(long)]
        causal: bool,
        #[command(flatten)]
        causal_args: CausalArgs,
    },
    /// Fit probes on saved activations (no model run): Probelab's own, a directory of shards
    /// with manifest.json (tools/cluster/), or arrays from other tools.
    Fit {
        /// acts.safetensors written by `run` (acts_random_init.safetensors beside it is the
        /// random-init control when present); a shard directory (or its manifest.json); or a
        /// .safetensors / .npy / .npz array [layers+1, entities, d] or [entities, layers+1, d],
        /// HF's stacked `hidden_states` included (index 0, the embedding output, is layer 0).
        acts: PathBuf,
        /// The dataset the activations were extracted for; default: the name stored in the file.
        #[arg(long)]
        dataset: Option<String>,
        #[command(flatten)]
        import: ImportArgs,
        #[command(flatten)]
        fit: FitArgs,
        /// Fit at most this many layers at once (0: one per core). Probelab's files are read a
        /// layer at a time, so memory holds about this many layers and their fits' working sets
        /// (about 5 GB a layer at 40,000 entities × 4,096 dims).
        #[arg(long, default_value_t = 0)]
        layers_in_flight: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Does the model use the probe's direction? Edit along it at one layer and read the
    /// model's own answers, against null edits of the same size; adds a `causal` block to the
    /// run's report.json and rewrites its figures and summary.
    Steer {
        /// A directory written by `probelab run` (report.json and acts.safetensors).
        run_dir: PathBuf,
        /// The GGUF the run was made with (checked against the activations' sha256).
        #[arg(long)]
        model: PathBuf,
        /// The run's dataset, when it is a CSV file (a built-in one is found by name).
        #[arg(long)]
        dataset: Option<String>,
        /// gpu, cpu or auto, as for `extract` (the LM head runs on the CPU either way).
        #[arg(long, default_value = "auto")]
        engine: String,
        #[command(flatten)]
        causal: CausalArgs,
    },
    /// Describe a GGUF model: shape, quantization, tokenizer.
    Info {
        #[arg(long)]
        model: PathBuf,
    },
    /// Write a synthetic llama GGUF: a real model's shapes (Llama-2-7B by default) with random
    /// weights and the given SentencePiece vocabulary, for testing what a machine can load and
    /// how fast it runs. Its activations mean nothing.
    SynthModel {
        /// The vocabulary as JSON {tokens, scores, token_types, unk_id, bos_id, eos_id}
        /// (e.g. tests/fixtures/spm32k_vocab.json, 32,000 pieces as Llama-2 has).
        #[arg(long)]
        vocab: PathBuf,
        /// Transformer blocks (Llama-2-7B has 32).
        #[arg(long, default_value_t = 32)]
        layers: usize,
        /// Type of the blocks' matrices: q4_0, q4_k, q8_0, f16 or f32.
        #[arg(long, default_value = "q4_0")]
        quant: String,
        /// Type of token_embd and output: q4_0, q4_k, q8_0, f16 or f32.
        #[arg(long, default_value = "q8_0")]
        embed_quant: String,
        #[arg(long, default_value_t = 4096)]
        d_model: usize,
        #[arg(long, default_value_t = 32)]
        heads: usize,
        #[arg(long, default_value_t = 32)]
        kv_heads: usize,
        #[arg(long, default_value_t = 11008)]
        ffn: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Show how a text is tokenized.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        text: String,
    },
    /// The greedy next token after a prompt (a quick check that the model runs right).
    Next {
        #[arg(long)]
        model: PathBuf,
        text: String,
    },
}

#[derive(clap::Args)]
struct FitArgs {
    /// random[:fraction] | column[:is_test] | group:COLUMN (leave each group out) |
    /// group:COLUMN=VALUE (hold one group out).
    #[arg(long, default_value = "random")]
    split: String,
    /// Shuffles for the permutation null (each re-runs the choice of layer).
    #[arg(long, default_value_t = 100)]
    permutations: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fit on raw activations instead of standardized ones.
    #[arg(long)]
    raw: bool,
    /// Skip bad CSV rows (listed with their line numbers) instead of stopping.
    #[arg(long)]
    skip_bad_rows: bool,
    /// The pre-registered analysis plan: written here when the file does not exist; else the
    /// run must follow it (checked before the model runs; a difference is an error naming the
    /// fields).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// The ledger of plans scored on each dataset and test split (default: ledger.json beside
    /// the --out directory). A plan that is not the first scored on its test set is reported
    /// as exploratory.
    #[arg(long)]
    ledger: Option<PathBuf>,
    /// For a random split, re-draw it with this many other seeds and report how far the
    /// selected layer and its test R² move (`seed_spread`); 0 skips it.
    #[arg(long, default_value_t = run::DEFAULT_SPLIT_SEEDS)]
    split_seeds: usize,
}

/// The causal test's settings (`steer`, `run --causal`).
#[derive(clap::Args)]
struct CausalArgs {
    /// The layer to edit (default: the run's selected layer).
    #[arg(long)]
    layer: Option<usize>,
    /// The question whose answer is read; {name} is replaced by each name (default for
    /// places: "The continent where {name} is located is").
    #[arg(long)]
    readout: Option<String>,
    /// The dataset column whose values answer it (default: continent; century for dates).
    #[arg(long)]
    answer_column: Option<String>,
    /// Candidate answers, comma-separated (default: every value of the answer column).
    #[arg(long, value_delimiter = ',')]
    candidates: Vec<String>,
    /// Shifts to ask for, comma-separated, in degrees or years (default ±15,±30,±60 degrees).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    doses: Vec<f64>,
    /// Random null directions per axis (at least 20 for a p-value worth reading).
    #[arg(long, default_value_t = 20)]
    random_nulls: usize,
    /// Edit at most this many test entities (0: all).
    #[arg(long, default_value_t = 0)]
    max_entities: usize,
    /// Seeds the null directions and the choice of entities.
    #[arg(long, default_value_t = 0)]
    causal_seed: u64,
    /// Also edit the K layers after it (layers L..=L+K), each along its own layer's probe.
    #[arg(long, default_value_t = 0, value_name = "K")]
    window: usize,
}

impl CausalArgs {
    fn options(&self) -> probelab::causal::CausalOptions {
        probelab::causal::CausalOptions {
            readout: self.readout.clone(),
            answer_column: self.answer_column.clone(),
            candidates: self.candidates.clone(),
            doses: self.doses.clone(),
            n_random: self.random_nulls,
            max_entities: self.max_entities,
            seed: self.causal_seed,
            window: self.window,
            ..Default::default()
        }
    }
}

/// How to read activations made elsewhere; each flag overrides what the file says.
#[derive(clap::Args)]
struct ImportArgs {
    /// The names, one per line (or a .csv with a name column), in the file's entity order;
    /// needed when the file carries none (safetensors metadata 'names', an .npz array 'names').
    #[arg(long)]
    names: Option<PathBuf>,
    /// Which axis holds the layers: auto (the file says: HF's 'hidden_states' and Probelab's
    /// files are layers first, or metadata 'layout'; else the axis of size len(names) holds the
    /// entities, and an array whose first two axes both have that size needs this flag),
    /// layers-first ([layers+1, entities, d]) or entities-first ([entities, layers+1, d]).
    #[arg(long, default_value = "auto")]
    layout: String,
    /// The tensor or array holding the activations when the file has several (default:
    /// 'activations', else 'hidden_states', else the only 3-d float array).
    #[arg(long)]
    tensor: Option<String>,
    /// The random-initialised model's activations (same entities, any of these formats) for that
    /// control; without it the report says the control is missing.
    #[arg(long)]
    random_init: Option<PathBuf>,
    /// What made the activations (recorded in the report), e.g. 'transformers 4.57'.
    #[arg(long)]
    tool: Option<String>,
    /// The model they are of (recorded in the report), e.g. 'HuggingFaceTB/SmolLM2-135M'.
    #[arg(long)]
    model_id: Option<String>,
    /// The prompt template they were made with (recorded in the report).
    #[arg(long)]
    prompt: Option<String>,
    /// How each entity's tokens were pooled: last or mean (recorded in the report).
    #[arg(long)]
    pool: Option<String>,
}

impl ImportArgs {
    fn options(&self) -> Result<import::ImportOptions> {
        let names = match &self.names {
            Some(p) => {
                let bytes = std::fs::read(p).map_err(|e| Error::io(p.display().to_string(), e))?;
                Some(
                    data::read_names(&p.to_string_lossy(), &bytes)
                        .map_err(|e| Error::Dataset(format!("{}: {e}", p.display())))?,
                )
            }
            None => None,
        };
        Ok(import::ImportOptions {
            layout: self.layout.parse()?,
            names,
            names_from: None,
            tensor: self.tensor.clone(),
            tool: self.tool.clone(),
            model_id: self.model_id.clone(),
            prompt: self.prompt.clone(),
            pool: self.pool.as_deref().map(str::parse).transpose()?,
        })
    }
}

impl FitArgs {
    fn options(&self) -> AnalysisOptions {
        AnalysisOptions {
            n_permutations: self.permutations,
            seed: self.seed,
            standardize: !self.raw,
            ..AnalysisOptions::default()
        }
    }
}

impl FitArgs {
    /// `--plan`: writes the run's plan there, or checks the run against the plan there.
    fn check_plan(&self, plan: &AnalysisPlan) -> Result<()> {
        if let Some(path) = &self.plan {
            if preregistration::write_or_check(path, plan)? {
                eprintln!("wrote the analysis plan to {}", path.display());
            } else {
                eprintln!("the run follows the plan in {}", path.display());
            }
        }
        Ok(())
    }

    /// Records the plan in the ledger (`--ledger`, default ledger.json beside `out`) and puts
    /// the record in the report; a ledger that fails leaves the plan unrecorded in the report
    /// and comes back as the error to give once the run's files are written.
    fn record_plan(&self, plan: &AnalysisPlan, out: &Path, report: &mut Report) -> Option<Error> {
        let path = self.ledger.clone().unwrap_or_else(|| {
            out.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("ledger.json"), |d| d.join("ledger.json"))
        });
        match preregistration::record_in_file(&path, plan) {
            Ok(r) => {
                report.plan = Some(r);
                None
            }
            Err(e) => {
                report.plan = PlanRecord::unrecorded(plan, &preregistration::now_utc()).ok();
                Some(e)
            }
        }
    }
}

/// The ledger's error after the run's files are written.
fn ledger_failed(e: Error, out: &Path) -> Error {
    Error::Input(format!(
        "{e}; the run's results are in {} (its plan is marked unrecorded)",
        out.display()
    ))
}

/// The prompt templates of a run: one, as before, or a sweep.
#[derive(clap::Args)]
struct PromptArgs {
    /// Prompt template; {name} is replaced by each name ({NAME}: by the name in capitals).
    /// Repeat it for a prompt sweep: every template is extracted and fitted, the template and
    /// the layer are chosen together on validation, and the p-value pays for both choices.
    /// Default: {name} alone.
    #[arg(long = "prompt")]
    prompt: Vec<String>,
    /// A file of prompt templates, one per line (blank lines skipped), added to the sweep.
    #[arg(long = "prompts")]
    prompts_file: Option<PathBuf>,
    /// A shipped prompt set added to the sweep (before the others): 'places' or 'time'
    /// (Gurnee & Tegmark's templates, with a prefix of 10 seeded random tokens).
    #[arg(long)]
    prompt_set: Option<String>,
}

impl PromptArgs {
    /// The templates from the file and the flags, and the shipped set's kind, checked before
    /// the model loads (the shipped set needs its vocabulary: [`PromptArgs::templates`]).
    fn given(&self) -> Result<(Vec<String>, Option<data::TargetKind>)> {
        let mut texts = Vec::new();
        if let Some(path) = &self.prompts_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io(path.display().to_string(), e))?;
            let lines = prompts::read_prompt_lines(&text);
            if lines.is_empty() {
                return Err(Error::Input(format!(
                    "{}: the prompt set is empty (one template with {{name}} per line)",
                    path.display()
                )));
            }
            texts.extend(lines);
        }
        texts.extend(self.prompt.iter().cloned());
        let kind = self
            .prompt_set
            .as_deref()
            .map(prompts::shipped_kind)
            .transpose()?;
        if texts.is_empty() && kind.is_none() {
            texts.push(extract::DEFAULT_TEMPLATE.to_string());
        }
        if !texts.is_empty() {
            prompts::prompt_set(&texts)?;
        }
        Ok((texts, kind))
    }

    /// Every template of the run: the shipped set (drawn from `m`'s vocabulary) first.
    fn templates(
        given: Vec<String>,
        kind: Option<data::TargetKind>,
        m: &LoadedModel,
    ) -> Result<Vec<Template>> {
        let mut texts = match kind {
            Some(k) => run::shipped_prompts(&m.tokenizer, k)?,
            None => vec![],
        };
        texts.extend(given);
        prompts::prompt_set(&texts)
    }
}

/// A built-in dataset's name, or a CSV path.
fn dataset_arg(arg: &str, skip_bad_rows: bool) -> Result<data::Dataset> {
    let on_bad = if skip_bad_rows {
        OnBadRows::Skip
    } else {
        OnBadRows::Stop
    };
    let path = Path::new(arg);
    let (dataset, problems) = if data::builtin(arg).is_some() {
        run::dataset_from(arg, None, on_bad)?
    } else if path.exists() {
        let bytes = std::fs::read(path).map_err(|e| Error::io(arg, e))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        run::dataset_from(&name, Some(&bytes), on_bad)
            .map_err(|e| Error::Dataset(format!("{arg}: {e}")))?
    } else {
        return Err(Error::Dataset(format!(
            "'{arg}' is neither a built-in dataset ({}) nor a file",
            data::BUILTIN_NAMES.join(", ")
        )));
    };
    if !problems.is_empty() {
        eprintln!(
            "skipped {} bad rows:\n{}",
            problems.len(),
            data::list_problems(&problems)
        );
    }
    eprintln!(
        "dataset {}: {} entities ({:?})",
        dataset.name,
        dataset.len(),
        dataset.kind
    );
    Ok(dataset)
}

/// A progress bar that follows a run's stages.
fn stage_bar() -> (ProgressBar, impl FnMut(&str, usize, usize) -> bool) {
    let bar = ProgressBar::new(1).with_style(
        ProgressStyle::with_template(
            "{msg:32} {bar:40} {pos}/{len} [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let mut current = String::new();
    (bar, move |stage: &str, done: usize, total: usize| {
        if stage != current {
            current = stage.to_string();
            b.reset();
            b.set_message(current.clone());
        }
        b.set_length(total as u64);
        b.set_position(done as u64);
        true
    })
}

/// Writes `files` into `dir` all or nothing: first into a temporary folder beside it.
fn write_all(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    let tmp = dir.with_extension("partial");
    let io = |p: &Path, e| Error::io(p.display().to_string(), e);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    for (name, bytes) in files {
        let p = tmp.join(name);
        std::fs::write(&p, bytes).map_err(|e| io(&p, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    for (name, _) in files {
        std::fs::rename(tmp.join(name), dir.join(name)).map_err(|e| io(&dir.join(name), e))?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// The verdict card, then the summary in words (what the page shows above its figures).
fn print_summary(report: &probelab::probe::analysis::Report, out: &Path) {
    eprint!("{}", probelab::render::verdict(report));
    eprintln!("{}", probelab::render::figures::summary(report));
    eprintln!("wrote {}", out.display());
}

/// The engine's line, saying how the CPU multiplies when it is the CPU that runs.
fn engine_line(engine: &Engine, m: &LoadedModel) -> String {
    if engine.is_gpu() || m.model.matmul() == Matmul::Exact {
        return engine.note.clone();
    }
    format!(
        "{}; matmuls on the quantized blocks with 8-bit activations, as llama.cpp \
         (about 1% from exact f32 over ten 7B-shaped layers; --matmul exact for f32)",
        engine.note
    )
}

/// What `extract` runs on. With `--engine gpu` the weights stream from the file to the GPU
/// and the CPU never holds them (a 7B model's file need not fit in memory twice); otherwise
/// the CPU model is loaded, for the CPU engine and for `auto`'s fallback.
fn open_for_extract(
    path: &Path,
    choice: EngineChoice,
    matmul: Matmul,
) -> Result<(Option<LoadedModel>, ModelHeader, Engine)> {
    #[cfg(feature = "gpu")]
    if choice == EngineChoice::Gpu {
        let t = Instant::now();
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} pieces of the weights to the GPU")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (engine, header) = Engine::open_streamed(path, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
        bar.finish_and_clear();
        say_opened("streamed to the GPU", &header.summary, path, t);
        return Ok((None, header, engine));
    }
    let m = load_with(path, matmul)?;
    let mut engine = Engine::open(choice, path)?;
    engine.note = engine_line(&engine, &m);
    let header = m.header();
    Ok((Some(m), header, engine))
}

fn load(path: &Path) -> Result<LoadedModel> {
    load_with(path, Matmul::Auto)
}

fn load_with(path: &Path, matmul: Matmul) -> Result<LoadedModel> {
    let t = Instant::now();
    let opts = LoadOptions {
        matmul,
        ..LoadOptions::default()
    };
    let m = LoadedModel::open(path, &opts)?;
    say_opened("loaded", &m.info(), path, t);
    Ok(m)
}

/// "loaded NAME (PATH, shape, quant) in X s", then the tokenizer's warnings.
fn say_opened(how: &str, s: &ModelSummary, path: &Path, since: Instant) {
    eprintln!(
        "{how} {} ({}, {} layers, d_model {}, {}) in {:.1}s",
        s.name,
        path.display(),
        s.n_layers,
        s.d_model,
        s.quantization,
        since.elapsed().as_secs_f64()
    );
    for w in &s.warnings {
        eprintln!("warning: {w}");
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Extract {
            model,
            dataset,
            prompt,
            out,
            pooling,
            batch_size,
            f16,
            engine,
            matmul,
        } => {
            let choice: EngineChoice = engine.parse()?;
            let pooling: Pooling = pooling.parse()?;
            let matmul: Matmul = matmul.parse()?;
            let template = Template::new(&prompt)?;
            let bytes =
                std::fs::read(&dataset).map_err(|e| Error::io(dataset.display().to_string(), e))?;
            let names = data::read_names(&dataset.to_string_lossy(), &bytes)
                .map_err(|e| Error::Dataset(format!("{}: {e}", dataset.display())))?;
            let start = Instant::now();
            let (cpu, header, engine) = open_for_extract(&model, choice, matmul)?;
            eprintln!(
                "{} (ready in {:.1} s)",
                engine.note,
                start.elapsed().as_secs_f64()
            );
            let (tokenizer, c) = (&header.tokenizer, &header.summary.config);
            let entities =
                extract::tokenize_entities(tokenizer, &names, &template, c.context_length)?;
            let total_tokens: usize = entities.iter().map(|e| e.ids.len()).sum();
            let bar = ProgressBar::new(names.len() as u64).with_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} entities  {msg}  [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let start = Instant::now();
            let opts = ExtractOptions {
                pooling,
                batch_size,
            };
            let n = names.len();
            let dataset_name = dataset
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let meta = ActsMeta::new(
                &c.name,
                &header.summary.sha256,
                &template.text,
                pooling,
                &dataset_name,
                names,
            );
            let store = if f16 { StoreAs::F16 } else { StoreAs::F32 };
            // Batch by batch into the file, so memory does not grow with the dataset.
            let mut writer =
                acts::ActsWriter::create(&out, c.n_layers, n, c.d_model, &meta, store)?;
            engine.run(cpu.as_ref().map(|m| &m.model), |model| {
                extract::extract_to_file(
                    model,
                    &entities,
                    &opts,
                    &mut writer,
                    &mut |done, _, tokens| {
                        bar.set_position(done as u64);
                        bar.set_message(format!(
                            "{:.0} tokens/s",
                            tokens as f64 / start.elapsed().as_secs_f64().max(1e-9)
                        ));
                        true
                    },
                )
            })?;
            writer.finish()?;
            bar.finish();
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "{n} entities, {total_tokens} tokens in {secs:.2}s ({:.1} tokens/s, {:.1} entities/s) → {} [{} layers + embedding, d_model {}]; peak memory (VmHWM) {}",
                total_tokens as f64 / secs,
                n as f64 / secs,
                out.display(),
                c.n_layers,
                c.d_model,
                run::peak_memory_mib().map_or("unknown".into(), |m| format!("{m:.0} MiB"))
            );
        }
        Command::Run {
            model,
            dataset,
            prompts,
            fit,
            out,
            pooling,
            batch_size,
            no_random_init,
            engine,
            matmul,
            causal,
            causal_args,
        } => {
            // Check every argument before the slow work starts.
            let choice: EngineChoice = engine.parse()?;
            let matmul: Matmul = matmul.parse()?;
            let pooling: Pooling = pooling.parse()?;
            let (given, shipped) = prompts.given()?;
            let split = run::parse_split(&fit.split, fit.seed)?;
            let dataset = dataset_arg(&dataset, fit.skip_bad_rows)?;
            let m = load_with(&model, matmul)?;
            let templates = PromptArgs::templates(given, shipped, &m)?;
            let texts: Vec<String> = templates.iter().map(|t| t.text.clone()).collect();
            let plan = AnalysisPlan::new(
                &dataset,
                &m.sha256,
                pooling,
                &split,
                &texts,
                &fit.options(),
                !no_random_init,
            )?;
            fit.check_plan(&plan)?;
            let engine = Engine::open(choice, &model)?;
            eprintln!("{}", engine_line(&engine, &m));
            let (bar, mut progress) = stage_bar();
            let opts = ExtractOptions {
                pooling,
                batch_size,
            };
            let n_templates = templates.len();
            let mut extracted = Vec::with_capacity(n_templates);
            for (i, template) in templates.iter().enumerate() {
                let mut stage = |s: &str, done, total| match n_templates {
                    1 => progress(s, done, total),
                    _ => progress(&format!("{s}, prompt {}/{n_templates}", i + 1), done, total),
                };
                extracted.push(run::extract_both(
                    &m,
                    &engine,
                    &dataset,
                    template,
                    &opts,
                    !no_random_init,
                    &mut stage,
                )?);
            }
            // The names' surprisal under the first template (a sweep does not score each).
            let surprisal = run::name_surprisal(&m, &dataset.names, &templates[0], &mut progress)?;
            let meta_of = |t: &Template| {
                ActsMeta::for_dataset(&m.model.config.name, &m.sha256, &t.text, pooling, &dataset)
            };
            // One template is a sweep of one: the same report as a plain fit.
            let sweep: Vec<_> = templates
                .iter()
                .zip(&extracted)
                .map(|(t, (real, random))| (t.text.as_str(), real, random.as_ref()))
                .collect();
            let meta = meta_of(&templates[0]);
            let fit_on = |split: &probelab::probe::SplitSpec,
                          opts: &AnalysisOptions,
                          progress: &mut probelab::probe::StageProgress| {
                run::fit_prompts(
                    &sweep,
                    &meta,
                    Some(&surprisal),
                    &dataset,
                    split,
                    opts,
                    progress,
                )
            };
            let mut report = fit_on(&split, &fit.options(), &mut progress)?;
            run::add_seed_spread(
                &mut report,
                &split,
                &fit.options(),
                fit.split_seeds,
                &mut |split, opts| fit_on(split, opts, &mut |_, _, _| true),
            );
            let ledger_error = fit.record_plan(&plan, &out, &mut report);
            // The files, the figures and the causal test are the chosen template's.
            let chosen = templates
                .iter()
                .position(|t| t.text == report.prompt)
                .unwrap_or(0);
            let (real, random) = &extracted[chosen];
            let meta = meta_of(&templates[chosen]);
            // A causal test that fails loses nothing: the run's files are written first.
            let causal_failed = if causal {
                match run::causal(
                    &m,
                    &engine,
                    real,
                    &meta,
                    &dataset,
                    &report,
                    causal_args.layer,
                    &causal_args.options(),
                    &mut progress,
                ) {
                    Ok(c) => {
                        report.causal = Some(c);
                        None
                    }
                    Err(e) => Some(e),
                }
            } else {
                None
            };
            bar.finish_and_clear();
            let mut files = figures::run_files(&report)?;
            files.push((
                "acts.safetensors".into(),
                acts::to_safetensors(real, &meta, StoreAs::F32)?,
            ));
            if let Some(r) = random {
                files.push((
                    run::RANDOM_INIT_FILE.into(),
                    acts::to_safetensors(r, &meta, StoreAs::F32)?,
                ));
            }
            files.push((
                run::SURPRISAL_FILE.into(),
                serde_json::to_vec(&surprisal).map_err(|e| Error::Compute(e.to_string()))?,
            ));
            write_all(&out, &files)?;
            print_summary(&report, &out);
            if let Some(e) = ledger_error {
                return Err(ledger_failed(e, &out));
            }
            if let Some(e) = causal_failed {
                return Err(Error::Input(format!(
                    "the causal test did not run ({e}); the run's other results are in {}, and \
                     `probelab steer {}` runs the test on them",
                    out.display(),
                    out.display()
                )));
            }
        }
        Command::Fit {
            acts: path,
            dataset,
            import: import_args,
            fit,
            out,
            layers_in_flight,
        } => {
            let split = run::parse_split(&fit.split, fit.seed)?;
            // Headers only: the layers are read as the fit reaches them.
            let opened = import::open_run(
                &path,
                import_args.random_init.as_deref(),
                &import_args.options()?,
            )?;
            let meta = &opened.real.meta;
            eprintln!("activations: {}", opened.real.source);
            eprintln!("random-init control: {}", opened.random_init_note);
            let dataset = match dataset
                .or_else(|| Some(meta.dataset_name.clone()).filter(|n| !n.is_empty()))
            {
                Some(d) => dataset_arg(&d, fit.skip_bad_rows)?,
                None => {
                    return Err(Error::Input(format!(
                        "{} does not name its dataset: give it with --dataset",
                        path.display()
                    )))
                }
            };
            import::check_dataset(meta, &dataset)?;
            let plan = AnalysisPlan::new(
                &dataset,
                &meta.model_sha256,
                meta.pooling,
                &split,
                std::slice::from_ref(&meta.prompt_template),
                &fit.options(),
                opened.random_init.is_some(),
            )?;
            fit.check_plan(&plan)?;
            let (bar, mut progress) = stage_bar();
            let start = Instant::now();
            let mut times = Vec::new();
            let mut report = run::fit_opened(
                &opened,
                &dataset,
                &split,
                &fit.options(),
                layers_in_flight,
                &mut progress,
                &mut |t| {
                    // Printed as layers finish (the bar is hidden when stderr is not a terminal).
                    bar.suspend(|| {
                        eprintln!(
                            "layer {:>3}: read {:.2} s, fit {:.2} s",
                            t.layer, t.read_s, t.fit_s
                        )
                    });
                    times.push(t);
                },
            )?;
            bar.finish_and_clear();
            let fit_s: f64 = times.iter().map(|t| t.read_s + t.fit_s).sum();
            eprintln!(
                "{} layers in {:.1} s ({:.2} s per layer read and fitted, summed over threads); \
                 peak memory (VmHWM) {}",
                times.len(),
                start.elapsed().as_secs_f64(),
                fit_s / times.len().max(1) as f64,
                run::peak_memory_mib().map_or("unknown".into(), |m| format!("{m:.0} MiB"))
            );
            run::add_seed_spread(
                &mut report,
                &split,
                &fit.options(),
                fit.split_seeds,
                &mut |split, opts| {
                    run::fit_opened(
                        &opened,
                        &dataset,
                        split,
                        opts,
                        layers_in_flight,
                        &mut |_, _, _| true,
                        &mut |_| {},
                    )
                },
            );
            let ledger_error = fit.record_plan(&plan, &out, &mut report);
            write_all(&out, &figures::run_files(&report)?)?;
            print_summary(&report, &out);
            if let Some(e) = ledger_error {
                return Err(ledger_failed(e, &out));
            }
        }
        Command::Steer {
            run_dir,
            model,
            dataset,
            engine,
            causal,
        } => {
            let choice: EngineChoice = engine.parse()?;
            let read = |name: &str| -> Result<Vec<u8>> {
                let p = run_dir.join(name);
                std::fs::read(&p).map_err(|e| Error::io(p.display().to_string(), e))
            };
            let mut report: probelab::probe::Report = serde_json::from_slice(&read("report.json")?)
                .map_err(|e| {
                    Error::Input(format!(
                        "{}: not a report.json of probelab run ({e})",
                        run_dir.join("report.json").display()
                    ))
                })?;
            let (acts, meta) = acts::from_safetensors(&read("acts.safetensors")?)?;
            let name = dataset.unwrap_or_else(|| meta.dataset_name.clone());
            let dataset = dataset_arg(&name, false)?;
            let m = load(&model)?;
            let engine = Engine::open(choice, &model)?;
            eprintln!("{}", engine_line(&engine, &m));
            let (bar, mut progress) = stage_bar();
            let started = Instant::now();
            report.causal = Some(run::causal(
                &m,
                &engine,
                &acts,
                &meta,
                &dataset,
                &report,
                causal.layer,
                &causal.options(),
                &mut progress,
            )?);
            bar.finish_and_clear();
            eprintln!("causal test: {:.1} s", started.elapsed().as_secs_f64());
            write_all(&run_dir, &figures::run_files(&report)?)?;
            print_summary(&report, &run_dir);
        }
        Command::Info { model } => {
            let m = load(&model)?;
            let info = m.info();
            println!(
                "{}",
                serde_json::to_string_pretty(&info).unwrap_or_default()
            );
        }
        Command::SynthModel {
            vocab,
            layers,
            quant,
            embed_quant,
            d_model,
            heads,
            kv_heads,
            ffn,
            seed,
            out,
        } => {
            use probelab::model::synthetic::{self, SpmVocab, SyntheticSpec};
            let bytes =
                std::fs::read(&vocab).map_err(|e| Error::io(vocab.display().to_string(), e))?;
            let vocab = SpmVocab::from_json(&bytes, &vocab.display().to_string())?;
            let spec = SyntheticSpec {
                d_model,
                n_heads: heads,
                n_kv_heads: kv_heads,
                ffn_dim: ffn,
                embed_quant: synthetic::parse_quant(&embed_quant)?,
                seed,
                ..SyntheticSpec::llama2_7b(layers, synthetic::parse_quant(&quant)?)
            };
            let started = Instant::now();
            let f =
                std::fs::File::create(&out).map_err(|e| Error::io(out.display().to_string(), e))?;
            let size =
                synthetic::write_synthetic_llama(&mut std::io::BufWriter::new(f), &spec, &vocab)?;
            println!(
                "{}: {size} bytes ({:.2} GiB), {layers} blocks, {} in {:.1} s",
                out.display(),
                size as f64 / (1u64 << 30) as f64,
                quant,
                started.elapsed().as_secs_f64()
            );
        }
        Command::Tokenize { model, text } => {
            let m = load(&model)?;
            let enc = m.tokenizer.encode_prompt(&text)?;
            for id in enc.ids {
                println!(
                    "{id}\t{:?}",
                    m.tokenizer.id_to_token(id).unwrap_or_default()
                );
            }
        }
        Command::Next { model, text } => {
            let m = load(&model)?;
            let ids = m.tokenizer.encode_prompt(&text)?.ids;
            if ids.is_empty() {
                return Err(Error::Input("the text produced no tokens".into()));
            }
            let logits = m.model.next_token_logits(&ids)?;
            let best = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u32)
                .unwrap_or(0);
            println!("{best}\t{:?}", m.tokenizer.decode(&[best])?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
