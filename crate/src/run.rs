//! A whole run, shared by the command line and the browser: dataset + model → activations (real
//! and random-initialised) → report. Each stage can be re-entered: `fit` starts from saved
//! activations and skips the model.

use crate::data::{self, Dataset, OnBadRows, RowProblem};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::extract::acts::ActsMeta;
use crate::extract::{self, prompts, Activations, ExtractOptions, Template};
use crate::model::load::LoadedModel;
use crate::probe::analysis::{
    self, AnalysisOptions, ControlInputs, Report, ReportContext, SplitSpec, StageProgress,
};
use crate::probe::split::SplitMix64;

/// Seed of the random-initialised control model (fixed, so runs are reproducible).
pub const RANDOM_INIT_SEED: u64 = 0x5EED_0001;

/// Parses a split: `random`, `random:0.3`, `column` / `column:is_test`, `group:continent`
/// (leave each group out in turn) or `group:continent=Europe` (hold one group out).
pub fn parse_split(text: &str, seed: u64) -> Result<SplitSpec> {
    let bad = |why: &str| {
        Error::Input(format!(
            "split '{text}': {why}; use random[:fraction], column[:is_test], group:COLUMN or group:COLUMN=VALUE"
        ))
    };
    let (kind, arg) = match text.split_once(':') {
        Some((k, a)) => (k.trim(), Some(a.trim())),
        None => (text.trim(), None),
    };
    match (kind, arg) {
        ("random", None) => Ok(SplitSpec::Random {
            test_fraction: 0.2,
            seed,
        }),
        ("random", Some(f)) => match f.parse::<f64>() {
            Ok(f) if f > 0.0 && f < 1.0 => Ok(SplitSpec::Random {
                test_fraction: f,
                seed,
            }),
            _ => Err(bad("the test fraction must be a number between 0 and 1")),
        },
        ("column", None) => Ok(SplitSpec::Column),
        ("column", Some(c)) if c.eq_ignore_ascii_case("is_test") => Ok(SplitSpec::Column),
        ("column", Some(_)) => Err(bad("the split column must be named is_test")),
        ("group", Some(spec)) if !spec.is_empty() => Ok(match spec.split_once('=') {
            Some((c, g)) => SplitSpec::Group {
                column: c.trim().to_lowercase(),
                held_out: Some(g.trim().to_string()),
            },
            None => SplitSpec::Group {
                column: spec.to_lowercase(),
                held_out: None,
            },
        }),
        _ => Err(bad("unknown form")),
    }
}

/// A built-in dataset by name, or CSV bytes. Bad rows are skipped or stop the run, as asked;
/// skipped rows come back so the shell can list them.
pub fn dataset_from(
    name: &str,
    csv: Option<&[u8]>,
    on_bad: OnBadRows,
) -> Result<(Dataset, Vec<RowProblem>)> {
    match csv {
        None => Ok((data::load_builtin(name)?, Vec::new())),
        Some(bytes) => data::read_dataset_csv(name, bytes, on_bad),
    }
}

/// Extracts activations for every entity of `dataset` with `model`;
/// `engine` runs `model` when given (the GPU engine holds its own copy of the file's weights, so
/// it serves only the file's model, never the random-initialised one).
#[allow(clippy::too_many_arguments)]
pub fn extract_dataset(
    model: &crate::model::Llama,
    engine: Option<&Engine>,
    loaded: &LoadedModel,
    dataset: &Dataset,
    template: &Template,
    opts: &ExtractOptions,
    stage: &str,
    progress: &mut StageProgress,
) -> Result<Activations> {
    let entities = extract::tokenize_entities(
        &loaded.tokenizer,
        &dataset.names,
        template,
        loaded.model.config.context_length,
    )?;
    let mut report = |done, total, _| progress(stage, done, total);
    match engine {
        Some(engine) => engine.extract(model, &entities, opts, &mut report),
        None => extract::extract(model, &entities, opts, &mut report),
    }
}

/// Both extractions a run needs: the model's (on `engine`), and unless skipped the
/// random-initialised control model's (on the CPU).
pub fn extract_both(
    loaded: &LoadedModel,
    engine: &Engine,
    dataset: &Dataset,
    template: &Template,
    opts: &ExtractOptions,
    with_random_init: bool,
    progress: &mut StageProgress,
) -> Result<(Activations, Option<Activations>)> {
    let real = extract_dataset(
        &loaded.model,
        Some(engine),
        loaded,
        dataset,
        template,
        opts,
        "extract",
        progress,
    )?;
    let random = if with_random_init {
        let random_model = loaded.model.random_like(RANDOM_INIT_SEED)?;
        Some(extract_dataset(
            &random_model,
            None,
            loaded,
            dataset,
            template,
            opts,
            "extract (random-init model)",
            progress,
        )?)
    } else {
        None
    };
    Ok((real, random))
}

/// Each entity's surprisal of its name under the model (nats per token; None where no token
/// could be scored): one more CPU forward pass over the prompts, with the LM head.
pub fn name_surprisal(
    loaded: &LoadedModel,
    names: &[String],
    template: &Template,
    progress: &mut StageProgress,
) -> Result<Vec<Option<f64>>> {
    let entities = extract::tokenize_entities(
        &loaded.tokenizer,
        names,
        template,
        loaded.model.config.context_length,
    )?;
    let line_break = loaded.tokenizer.encode_text("\n")?;
    extract::surprisal::name_surprisal(
        &loaded.model,
        &line_break,
        &entities,
        ExtractOptions::default().batch_size,
        &mut |done, total, _| progress("surprisal", done, total),
    )
}

pub use crate::extract::acts::{RANDOM_INIT_FILE, SURPRISAL_FILE};

/// The shipped prompt set for `kind` ([`prompts::shipped`]), its random prefix drawn from
/// the model's vocabulary (the tokenizer alone: a model streamed to the GPU has no CPU weights).
pub fn shipped_prompts(
    tokenizer: &crate::model::tokenizer::Tokenizer,
    kind: data::TargetKind,
) -> Result<Vec<String>> {
    let prefix = random_token_prefix(
        tokenizer,
        prompts::RANDOM_PREFIX_TOKENS,
        prompts::RANDOM_PREFIX_SEED,
    )?;
    Ok(prompts::shipped(kind, &prefix))
}

/// `n` tokens drawn with `seed` from the vocabulary's plain word pieces (letters and digits
/// only, so no special token, brace or control character lands in a template), decoded.
pub fn random_token_prefix(
    tokenizer: &crate::model::tokenizer::Tokenizer,
    n: usize,
    seed: u64,
) -> Result<String> {
    let plain = |id: u32| {
        tokenizer.decode(&[id]).is_ok_and(|text| {
            let word = text.trim();
            !word.is_empty() && word.chars().all(char::is_alphanumeric)
        })
    };
    let mut rng = SplitMix64::new(seed);
    let mut ids = Vec::with_capacity(n);
    // Enough tries that a vocabulary with even a few percent of word pieces fills the prefix.
    for _ in 0..n * 1000 {
        if ids.len() == n {
            break;
        }
        let id = rng.below(tokenizer.vocab_size.max(1)) as u32;
        if plain(id) {
            ids.push(id);
        }
    }
    if ids.len() < n {
        return Err(Error::Input(format!(
            "the vocabulary has too few plain word tokens for a {n}-token random prefix"
        )));
    }
    Ok(tokenizer.decode(&ids)?.trim().to_string())
}

/// Split seeds re-drawn by default (`--split-seeds`).
pub const DEFAULT_SPLIT_SEEDS: usize = 10;

/// For a random split, the same choice of layer (and template) re-run on `n` splits drawn with
/// the next seeds (the split's seed + 1..=n) by `refit`, which takes the split and lean options
/// (no nulls, no controls: only the choice and its test R² are kept); None for other splits or
/// `n = 0`.
pub fn seed_spread(
    split: &SplitSpec,
    opts: &AnalysisOptions,
    n: usize,
    refit: &mut dyn FnMut(&SplitSpec, &AnalysisOptions) -> Result<Report>,
) -> Result<Option<crate::probe::report::SeedSpread>> {
    let SplitSpec::Random {
        test_fraction,
        seed,
    } = *split
    else {
        return Ok(None);
    };
    let lean = AnalysisOptions {
        n_permutations: 0,
        ngram_buckets: 0,
        gain_over_names: false,
        learning: false,
        knn_neighbours: Vec::new(),
        neuron_check: false,
        layer_predictions: false,
        ..opts.clone()
    };
    let mut runs = Vec::with_capacity(n);
    for k in 1..=n as u64 {
        let s = seed.wrapping_add(k);
        let r = refit(
            &SplitSpec::Random {
                test_fraction,
                seed: s,
            },
            &lean,
        )?;
        runs.push(crate::probe::report::SeedRun {
            seed: s,
            layer: r.selected.layer,
            prompt: (!r.prompts.is_empty()).then(|| r.prompt.clone()),
            r2_test: r.selected.r2_test,
        });
    }
    Ok(crate::probe::report::SeedSpread::of(runs))
}

/// [`seed_spread`] put into `report`; a failure becomes a warning, since the headline stands
/// without it.
pub fn add_seed_spread(
    report: &mut Report,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    n: usize,
    refit: &mut dyn FnMut(&SplitSpec, &AnalysisOptions) -> Result<Report>,
) {
    match seed_spread(split, opts, n, refit) {
        Ok(spread) => report.seed_spread = spread,
        Err(e) => report
            .warnings
            .push(format!("the split re-drawn over other seeds failed: {e}")),
    }
}

/// The first tokens the control task reads: the activations' own, or none when they were not
/// recorded (activations from another tool), which skips the control task.
fn control_first_tokens(acts: &Activations) -> Vec<u32> {
    if acts.first_token_ids.len() == acts.n_entities {
        acts.first_token_ids.clone()
    } else {
        Vec::new()
    }
}

/// Fits the probes and every control on saved or fresh activations.
#[allow(clippy::too_many_arguments)]
pub fn fit(
    acts: &Activations,
    meta: &ActsMeta,
    random_init: Option<&Activations>,
    name_surprisal: Option<&[Option<f64>]>,
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    progress: &mut StageProgress,
) -> Result<Report> {
    analysis::check_matches(meta, dataset, None)?;
    let controls = ControlInputs {
        first_token_ids: control_first_tokens(acts),
        random_init,
        name_surprisal,
    };
    crate::probe::analyze(
        acts,
        dataset,
        split,
        opts,
        &controls,
        &report_context(meta, dataset),
        &mut |s, d, t| progress(s, d, t),
    )
}

/// [`fit`] over a prompt sweep: each template's activations and its random-init model's (for
/// every template or none), all of the entities described by `meta` (the first template's: its
/// first tokens serve the control task). The report chooses the template with the layer and
/// pays for both ([`crate::probe::analyze_prompts`]).
pub fn fit_prompts(
    sweep: &[(&str, &Activations, Option<&Activations>)],
    meta: &ActsMeta,
    name_surprisal: Option<&[Option<f64>]>,
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    progress: &mut StageProgress,
) -> Result<Report> {
    analysis::check_matches(meta, dataset, None)?;
    let first = sweep
        .first()
        .map(|(_, a, _)| control_first_tokens(a))
        .unwrap_or_default();
    let inputs: Vec<(&str, crate::probe::LayerInputs)> = sweep
        .iter()
        .map(|&(template, acts, random_init)| {
            let inputs = crate::probe::LayerInputs {
                acts,
                random_init: random_init.map(|r| r as &dyn crate::extract::layers::LayerSource),
                first_token_ids: &first,
                name_surprisal,
                in_flight: 0,
            };
            (template, inputs)
        })
        .collect();
    crate::probe::analyze_prompts(
        &inputs,
        dataset,
        split,
        opts,
        &report_context(meta, dataset),
        &mut |s, d, t| progress(s, d, t),
        &mut |_| {},
    )
}

fn report_context(meta: &ActsMeta, dataset: &Dataset) -> ReportContext {
    ReportContext {
        model_name: meta.model_name.clone(),
        model_sha256: meta.model_sha256.clone(),
        prompt_template: meta.prompt_template.clone(),
        pooling: meta.pooling,
        dataset_name: dataset.name.clone(),
    }
}

/// [`fit`] on activations opened from files ([`crate::extract::import::open_run`]): each layer
/// is read when it is checked and when it is fitted, at most `in_flight` at once (0: one per
/// core), so memory holds a few layers, not the run; `on_layer` hears each layer's times. The
/// report records where the activations came from.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
pub fn fit_opened(
    run: &crate::extract::import::OpenedRun,
    dataset: &Dataset,
    split: &SplitSpec,
    opts: &AnalysisOptions,
    in_flight: usize,
    progress: &mut StageProgress,
    on_layer: &mut dyn FnMut(crate::probe::LayerTime),
) -> Result<Report> {
    use crate::extract::layers::LayerSource;
    let real = &run.real;
    analysis::check_matches(&real.meta, dataset, None)?;
    let first = real.layers.first_token_ids();
    let inputs = crate::probe::LayerInputs {
        acts: &real.layers,
        random_init: run
            .random_init
            .as_ref()
            .map(|r| &r.layers as &dyn LayerSource),
        first_token_ids: if first.len() == dataset.len() {
            first
        } else {
            &[]
        },
        name_surprisal: run.name_surprisal.as_deref(),
        in_flight,
    };
    let mut report = crate::probe::analyze_layers(
        &inputs,
        dataset,
        split,
        opts,
        &report_context(&real.meta, dataset),
        &mut |s, d, t| progress(s, d, t),
        on_layer,
    )?;
    // The same notes as [`note_source`] writes for activations read whole.
    report
        .notes
        .insert("activations.source".into(), real.source.to_string());
    report.notes.insert(
        "activations.random_init".into(),
        run.random_init_note.clone(),
    );
    Ok(report)
}

/// The process's peak resident memory so far (VmHWM, Linux), in MiB.
#[cfg(not(target_arch = "wasm32"))]
pub fn peak_memory_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Records in the report where the activations came from and where the random-initialised
/// control's came from (or that it is missing), for activations read from files.
pub fn note_source(report: &mut Report, imported: &crate::extract::import::ImportedRun) {
    report.notes.insert(
        "activations.source".into(),
        imported.real.source.to_string(),
    );
    report.notes.insert(
        "activations.random_init".into(),
        imported.random_init_note.clone(),
    );
}

/// The causal test at `layer` (default: the report's selected layer) with the probes of a run:
/// refitted from its activations exactly as the report fitted them (same split, options and
/// control task), then edited along in `loaded`'s forward pass, on `engine`'s GPU when it has
/// one (the final norm and the LM head run on the CPU either way).
#[allow(clippy::too_many_arguments)]
pub fn causal(
    loaded: &LoadedModel,
    engine: &Engine,
    acts: &Activations,
    meta: &ActsMeta,
    dataset: &Dataset,
    report: &Report,
    layer: Option<usize>,
    opts: &crate::causal::CausalOptions,
    progress: &mut StageProgress,
) -> Result<crate::probe::report::CausalReport> {
    analysis::check_matches(meta, dataset, Some(&loaded.sha256)).map_err(|e| {
        Error::Input(format!(
            "the run's probes do not belong to this model and dataset: {e}"
        ))
    })?;
    let layer = layer.unwrap_or(report.selected.layer);
    if layer + opts.window > acts.n_layers {
        return Err(Error::Input(format!(
            "layer {} is out of range: the run has layers 0..={}",
            layer + opts.window,
            acts.n_layers
        )));
    }
    let first_tokens = if acts.first_token_ids.len() == acts.n_entities {
        acts.first_token_ids.as_slice()
    } else {
        &[]
    };
    let mut run = plan_causal(
        loaded,
        report,
        dataset,
        &(layer..=layer + opts.window)
            .map(|l| acts.layer(l))
            .collect::<Vec<_>>(),
        first_tokens,
        layer,
        meta.pooling,
        opts,
    )?;
    let model = &loaded.model;
    // On a GPU that fails under `auto`, the CPU holds the prompts again and goes on from the
    // passes already recorded.
    engine.run(Some(model), |forward| {
        run.hold(forward)?;
        while run.step(model, forward)? {
            if !progress("causal", run.passes_done(), run.passes()) {
                return Err(Error::Cancelled);
            }
        }
        Ok(())
    })?;
    run.finish()
}

/// Plans the causal test at `layer` (and the `opts.window` layers after it) for a fitted
/// `report` (no model runs yet): checks that the report was fitted for this model and dataset,
/// refits its probe at each edited layer on `layer_acts` (per edited layer, `[entities]
/// [d_model]`), and plans every edited pass.
#[allow(clippy::too_many_arguments)]
pub fn plan_causal(
    loaded: &LoadedModel,
    report: &Report,
    dataset: &Dataset,
    layer_acts: &[&[f32]],
    first_token_ids: &[u32],
    layer: usize,
    pooling: crate::extract::Pooling,
    opts: &crate::causal::CausalOptions,
) -> Result<crate::causal::CausalRun> {
    let c = &loaded.model.config;
    if !report.model.sha256.eq_ignore_ascii_case(&loaded.sha256) {
        return Err(Error::Input(format!(
            "the run's probes do not belong to this model: they were fitted on '{}' (sha256 {}), \
             not the loaded '{}' (sha256 {})",
            report.model.name, report.model.sha256, c.name, loaded.sha256
        )));
    }
    if report.dataset.n != dataset.len() || report.dataset.target != dataset.kind {
        return Err(Error::Input(format!(
            "the run's probes do not belong to this dataset: they were fitted on '{}' ({} \
             entities), not '{}' ({} entities)",
            report.dataset.name,
            report.dataset.n,
            dataset.name,
            dataset.len()
        )));
    }
    let last = layer + opts.window;
    if last > c.n_layers {
        return Err(Error::Input(format!(
            "layer {last} is out of range: this model has layers 0..={}",
            c.n_layers
        )));
    }
    if layer_acts.len() != opts.window + 1 {
        return Err(Error::Input(format!(
            "activations of {} layers for a window of layers {layer}..={last}",
            layer_acts.len()
        )));
    }
    let split = report.split.spec()?;
    let directions = layer_acts
        .iter()
        .enumerate()
        .map(|(i, acts)| {
            crate::probe::directions::fit_directions(
                layer + i,
                acts,
                c.d_model,
                dataset,
                &split,
                &report.options,
                first_token_ids,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    crate::causal::CausalRun::new(c, &loaded.tokenizer, dataset, &directions, pooling, opts)
}
