//! The command-line shell: arguments in, core calls, files and messages out.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use probelab::acts::{self, ActsMeta, StoreAs};
use probelab::extract::{self, ExtractOptions, Pool, Template};
use probelab::load::LoadedModel;
use probelab::model::LoadOptions;
use probelab::{data, Error, Result};

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
        #[arg(long, default_value = "last")]
        pool: String,
        /// Entities per forward pass.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Store f16 instead of f32.
        #[arg(long)]
        f16: bool,
    },
    /// Describe a GGUF model: shape, quantization, tokenizer.
    Info {
        #[arg(long)]
        model: PathBuf,
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

fn load(path: &Path) -> Result<LoadedModel> {
    let t = Instant::now();
    let m = LoadedModel::open(path, &LoadOptions::default())?;
    eprintln!(
        "loaded {} ({}, {} layers, d_model {}, {}) in {:.1}s",
        m.model.config.name,
        path.display(),
        m.model.config.n_layers,
        m.model.config.d_model,
        m.quant_summary,
        t.elapsed().as_secs_f64()
    );
    for w in &m.tokenizer.warnings {
        eprintln!("warning: {w}");
    }
    Ok(m)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Extract {
            model,
            dataset,
            prompt,
            out,
            pool,
            batch_size,
            f16,
        } => {
            let pool: Pool = pool.parse()?;
            let template = Template::new(&prompt)?;
            let bytes =
                std::fs::read(&dataset).map_err(|e| Error::io(dataset.display().to_string(), e))?;
            let names = data::read_names(&dataset.to_string_lossy(), &bytes)
                .map_err(|e| Error::Dataset(format!("{}: {e}", dataset.display())))?;
            let m = load(&model)?;
            let entities = extract::tokenize_entities(
                &m.tokenizer,
                &names,
                &template,
                m.model.config.context_length,
            )?;
            let total_tokens: usize = entities.iter().map(|e| e.ids.len()).sum();
            let bar = ProgressBar::new(names.len() as u64).with_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} entities  {msg}  [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let start = Instant::now();
            let opts = ExtractOptions { pool, batch_size };
            let acts = extract::extract(&m.model, &entities, &opts, &mut |done, _, tokens| {
                bar.set_position(done as u64);
                bar.set_message(format!(
                    "{:.0} tokens/s",
                    tokens as f64 / start.elapsed().as_secs_f64().max(1e-9)
                ));
                true
            })?;
            bar.finish();
            let secs = start.elapsed().as_secs_f64();
            let meta = ActsMeta {
                model_name: m.model.config.name.clone(),
                model_sha256: m.sha256.clone(),
                dataset_name: dataset
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dataset_hash: data::names_hash(&names),
                prompt_template: template.text.clone(),
                pool: format!("{pool:?}").to_lowercase(),
                names,
            };
            let store = if f16 { StoreAs::F16 } else { StoreAs::F32 };
            let bytes = acts::to_safetensors(&acts, &meta, store)?;
            // Write to a temporary name first so a failure never leaves half a file.
            let tmp = out.with_extension("safetensors.partial");
            std::fs::write(&tmp, bytes).map_err(|e| Error::io(tmp.display().to_string(), e))?;
            std::fs::rename(&tmp, &out).map_err(|e| Error::io(out.display().to_string(), e))?;
            eprintln!(
                "{} entities, {} tokens in {:.2}s ({:.0} tokens/s, {:.1} entities/s) → {} [{} layers + embedding, d_model {}]",
                acts.n_entities,
                total_tokens,
                secs,
                total_tokens as f64 / secs,
                acts.n_entities as f64 / secs,
                out.display(),
                acts.n_layers,
                acts.d_model
            );
        }
        Command::Info { model } => {
            let m = load(&model)?;
            let info = serde_json::json!({
                "config": m.model.config,
                "vocab_size": m.model.vocab_size,
                "quantization": m.quant_summary,
                "file_size": m.file_size,
                "sha256": m.sha256,
                "tokenizer": {"type": m.tokenizer.kind, "pre": m.tokenizer.pre,
                    "add_bos": m.tokenizer.add_bos, "bos_id": m.tokenizer.bos_id},
                "layer_convention": acts::LAYER_CONVENTION,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&info).unwrap_or_default()
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
