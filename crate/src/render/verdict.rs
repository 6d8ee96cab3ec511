//! The verdict card: a report's headline and one yes/no line per control, in words and numbers a
//! reader takes in at a glance. The page draws it above the figures, the command line prints it
//! (its `Display`); both read the same [`Verdict`], built here from the report alone.

use std::fmt;

use serde::Serialize;

use crate::data::TargetKind;
use crate::probe::analysis::Report;

/// The significance level of the "beats shuffled targets" line.
pub const ALPHA_LEVEL: f64 = 0.05;

/// What a control says about the probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The probe passes the control.
    Yes,
    /// The control explains the probe's score away (or matches it).
    No,
    /// The control was not run, so it says nothing.
    NotRun,
}

impl Outcome {
    /// The card's mark: ✓, ✗ or – (not run).
    pub fn mark(self) -> &'static str {
        match self {
            Outcome::Yes => "✓",
            Outcome::No => "✗",
            Outcome::NotRun => "–",
        }
    }
}

/// One line of the card: a question, its answer and the figure behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// Stable key: `shuffled`, `names`, `beyond_names`, `layer0`, `random_init`,
    /// `control_task`, `unseen_group`.
    pub key: &'static str,
    /// The question, e.g. "beats shuffled targets".
    pub label: String,
    pub outcome: Outcome,
    /// `outcome.mark()`, carried so the page draws the same mark as the command line.
    pub mark: &'static str,
    /// The probe's figure that the line tests (the p-value for `shuffled` and `beyond_names`,
    /// else a test R²).
    pub value: Option<f64>,
    /// What it is compared with (the level for `shuffled` and `beyond_names`, 0 for
    /// `unseen_group`, else the control's test R²).
    pub against: Option<f64>,
    /// The answer in words, e.g. "yes, p = 0.010" or "+0.09 (0.62 against 0.53)".
    pub detail: String,
    /// The figure that shows it: `layers`, `map`, `time` or `by_group`.
    pub figure: &'static str,
}

/// The card: the selected layer's held-out score, its error, its p-value after choosing the
/// layer, then the controls.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// One sentence with every headline number.
    pub headline: String,
    /// Set when a control or baseline reaches the probe's score at some layer
    /// ([`rivals_sentence`]): shown before the checks, so it is read first.
    pub warning: Option<String>,
    pub layer: usize,
    /// Held-out R² of the selected layer (`report.selected.r2_test`).
    pub r2_test: f64,
    /// Median great-circle error (space) or mean absolute error (time) of the selected layer.
    pub error: Option<f64>,
    /// `km` or `years`.
    pub error_unit: &'static str,
    /// Max-over-layers permutation p-value (`report.selected.p_value`).
    pub p_value: Option<f64>,
    /// Confirmatory or exploratory, and how many plans were scored on this test set
    /// ([`crate::probe::preregistration::PlanRecord::sentence`]); None without a plan.
    pub plan: Option<String>,
    /// How far other split seeds move the layer and the test R²
    /// ([`crate::probe::report::SeedSpread::sentence`]); None without re-drawn splits.
    pub seeds: Option<String>,
    pub checks: Vec<Check>,
}

fn two(v: f64) -> String {
    format!("{v:.2}")
}

fn p_text(p: f64) -> String {
    format!("p = {p:.3}")
}

/// A line that compares the probe's test R² with a control's: yes when the probe is above it.
/// The margin is printed after `margin_name` (e.g. "selectivity ").
fn beats(
    key: &'static str,
    label: &str,
    margin_name: &str,
    probe: f64,
    control: Option<f64>,
    not_run: &str,
    figure: &'static str,
) -> Check {
    let (outcome, detail) = match control.filter(|c| c.is_finite()) {
        Some(c) => {
            let outcome = if probe > c { Outcome::Yes } else { Outcome::No };
            let word = if outcome == Outcome::Yes { "yes" } else { "no" };
            (
                outcome,
                format!(
                    "{word}, {margin_name}{:+.2} ({} against {})",
                    probe - c,
                    two(probe),
                    two(c)
                ),
            )
        }
        None => (Outcome::NotRun, format!("not run ({not_run})")),
    };
    Check {
        key,
        label: label.into(),
        outcome,
        mark: outcome.mark(),
        value: Some(probe),
        against: control,
        detail,
        figure,
    }
}

/// A control or baseline that scores at or above the selected probe on held-out entities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rival {
    /// The check's key: `names`, `names_knn`, `layer0`, `random_init` or `control_task`.
    pub key: &'static str,
    /// What it is, in words ("the random-initialised model").
    pub what: &'static str,
    /// Its best layer (the per-layer controls), or none (a baseline without layers).
    pub layer: Option<usize>,
    /// Its held-out R² there.
    pub r2: f64,
    /// The probe's figure it is compared with (`r2_test`, or `r2_test_fitted` for the control
    /// task).
    pub probe: f64,
}

/// Every control or baseline that reaches the probe's held-out R², a per-layer control at its
/// best layer over all layers (not only at the selected one): on the paper's US places the
/// random-initialised model's best layer beats the trained model's, which a comparison at the
/// selected layer hides. The summary and the card lead with these.
pub fn rivals(report: &Report) -> Vec<Rival> {
    let s = &report.selected;
    let b = &report.baselines;
    let best = |f: &dyn Fn(&crate::probe::analysis::LayerReport) -> Option<f64>| {
        report
            .layers
            .iter()
            .filter_map(|l| f(l).filter(|v| v.is_finite()).map(|v| (l.layer, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    let mut out = vec![];
    let mut push = |key, what, layer, r2: Option<f64>, probe: f64| {
        if let Some(r2) = r2.filter(|v| v.is_finite() && *v >= probe) {
            out.push(Rival {
                key,
                what,
                layer,
                r2,
                probe,
            });
        }
    };
    push(
        "names",
        "names alone (character n-grams, no model)",
        None,
        b.ngram_r2_test,
        s.r2_test,
    );
    push(
        "names_knn",
        "the most similar training names (no model)",
        None,
        b.knn_r2_test,
        s.r2_test,
    );
    // Layer 0 selected: the probe is the layer-0 probe, not a rival of itself.
    if s.layer != 0 {
        push(
            "layer0",
            "the token embeddings (layer 0)",
            None,
            Some(b.layer0_r2_test),
            s.r2_test,
        );
    }
    if let Some((l, v)) = best(&|l| l.controls.random_init_r2) {
        push(
            "random_init",
            "the random-initialised model",
            Some(l),
            Some(v),
            s.r2_test,
        );
    }
    if let Some((l, v)) = best(&|l| l.controls.control_task_r2) {
        push(
            "control_task",
            "the control task (first token → random target)",
            Some(l),
            Some(v),
            s.r2_test_fitted,
        );
    }
    out
}

/// One sentence naming the rivals, or none: "Read with care: … score at or above the probe".
pub fn rivals_sentence(report: &Report) -> Option<String> {
    let rivals = rivals(report);
    if rivals.is_empty() {
        return None;
    }
    let each: Vec<String> = rivals
        .iter()
        .map(|r| match r.layer {
            Some(l) => format!("{} R² {} at layer {l}", r.what, two(r.r2)),
            None => format!("{} R² {}", r.what, two(r.r2)),
        })
        .collect();
    Some(format!(
        "Read with care: {} {} at or above the probe's held-out R² {} at layer {}.",
        each.join("; "),
        if rivals.len() == 1 { "scores" } else { "score" },
        two(report.selected.r2_test),
        report.selected.layer
    ))
}

/// "Adds to what the name spells": the probe fitted to the n-gram model's errors, yes when its
/// gain over the n-grams beats shuffled residuals at [`ALPHA_LEVEL`] after choosing the layer.
/// A probe can lose to the names' R² and still add to them, or beat it and add nothing.
fn beyond_names(report: &Report) -> Check {
    let s = &report.selected;
    let (outcome, detail) = match (s.gain_over_names, s.gain_p_value) {
        (Some(g), Some(p)) if g.is_finite() => {
            let outcome = if g > 0.0 && p < ALPHA_LEVEL {
                Outcome::Yes
            } else {
                Outcome::No
            };
            let word = if outcome == Outcome::Yes { "yes" } else { "no" };
            (
                outcome,
                format!(
                    "{word}, R² {g:+.2} over the n-grams, {} after choosing the layer",
                    p_text(p)
                ),
            )
        }
        _ => (
            Outcome::NotRun,
            "not run (the gain over the names is off)".into(),
        ),
    };
    Check {
        key: "beyond_names",
        label: "adds to what the name spells".into(),
        outcome,
        mark: outcome.mark(),
        value: s.gain_p_value,
        against: Some(ALPHA_LEVEL),
        detail,
        figure: "layers",
    }
}

/// The verdict card of a report (see [`Verdict`]).
pub fn verdict(report: &Report) -> Verdict {
    let s = &report.selected;
    let space = report.dataset.target == TargetKind::Space;
    let (error, error_unit) = if space {
        (s.km_median, "km")
    } else {
        (s.years_mae, "years")
    };
    let map = if space { "map" } else { "time" };

    let mut headline = format!(
        "Layer {} reads {} of held-out {}: R² {}",
        s.layer,
        if space {
            "latitude and longitude"
        } else {
            "the year"
        },
        if space { "places" } else { "entities" },
        two(s.r2_test)
    );
    if let Some(e) = error.filter(|e| e.is_finite()) {
        let kind = if space { "median" } else { "mean" };
        headline += &format!(", {kind} error {e:.0} {error_unit}");
    }
    headline += &match s.p_value {
        Some(p) if !report.prompts.is_empty() => {
            format!(", {} after choosing the prompt and the layer.", p_text(p))
        }
        Some(p) => format!(", {} after choosing the layer.", p_text(p)),
        None => ", no p-value (no shuffled refits).".into(),
    };

    let shuffled = match s.p_value {
        Some(p) => {
            let outcome = if p < ALPHA_LEVEL {
                Outcome::Yes
            } else {
                Outcome::No
            };
            Check {
                key: "shuffled",
                label: "beats shuffled targets".into(),
                outcome,
                mark: outcome.mark(),
                value: Some(p),
                against: Some(ALPHA_LEVEL),
                detail: format!(
                    "{}, {} ({} refits, every layer's best)",
                    if outcome == Outcome::Yes { "yes" } else { "no" },
                    p_text(p),
                    s.n_permutations
                ),
                figure: "layers",
            }
        }
        None => Check {
            key: "shuffled",
            label: "beats shuffled targets".into(),
            outcome: Outcome::NotRun,
            mark: Outcome::NotRun.mark(),
            value: None,
            against: Some(ALPHA_LEVEL),
            detail: "not run (no shuffled refits)".into(),
            figure: "layers",
        },
    };

    let b = &report.baselines;
    let mut checks = vec![
        shuffled,
        beats(
            "names",
            "beats the names' own characters",
            "",
            s.r2_test,
            b.ngram_r2_test,
            "the n-gram baseline is off",
            "layers",
        ),
        beyond_names(report),
        beats(
            "layer0",
            "beats the token embeddings (layer 0)",
            "",
            s.r2_test,
            Some(b.layer0_r2_test),
            "",
            "layers",
        ),
        beats(
            "random_init",
            "beats a random network",
            "",
            s.r2_test,
            s.random_init_r2,
            "no random-initialised model",
            "layers",
        ),
    ];
    // Selectivity is defined in the fitted coordinates (Hewitt & Liang 2019).
    checks.push(beats(
        "control_task",
        "beats memorised first tokens",
        "selectivity ",
        s.r2_test_fitted,
        s.control_task_r2,
        "no first-token ids",
        "layers",
    ));

    let region = if space { "region" } else { "group" };
    let held_out = match report.split.kind.as_str() {
        "group" => report
            .split
            .held_out
            .clone()
            .map(|g| format!("held-out {g}")),
        "leave_one_group_out" => Some(format!(
            "each {} held out in turn",
            report.split.column.as_deref().unwrap_or(region)
        )),
        _ => None,
    };
    checks.push(match held_out {
        Some(which) => {
            let outcome = if s.r2_test > 0.0 {
                Outcome::Yes
            } else {
                Outcome::No
            };
            Check {
                key: "unseen_group",
                label: format!("holds on an unseen {region}"),
                outcome,
                mark: outcome.mark(),
                value: Some(s.r2_test),
                against: Some(0.0),
                detail: format!(
                    "{}, R² {} on {which}",
                    if outcome == Outcome::Yes { "yes" } else { "no" },
                    two(s.r2_test)
                ),
                figure: map,
            }
        }
        None => Check {
            key: "unseen_group",
            label: format!("holds on an unseen {region}"),
            outcome: Outcome::NotRun,
            mark: Outcome::NotRun.mark(),
            value: None,
            against: Some(0.0),
            detail: format!("not tested (choose a {region} hold-out split)"),
            figure: map,
        },
    });

    Verdict {
        headline,
        warning: rivals_sentence(report),
        layer: s.layer,
        r2_test: s.r2_test,
        error,
        error_unit,
        p_value: s.p_value,
        plan: report.plan.as_ref().map(|p| p.sentence()),
        seeds: report.seed_spread.as_ref().map(|s| s.sentence()),
        checks,
    }
}

/// The card as the command line prints it: the headline, then one marked line per control.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline)?;
        if let Some(p) = &self.plan {
            writeln!(f, "  {p}")?;
        }
        if let Some(s) = &self.seeds {
            writeln!(f, "  {s}")?;
        }
        if let Some(w) = &self.warning {
            writeln!(f, "  ! {w}")?;
        }
        for c in &self.checks {
            writeln!(f, "  {} {}: {}", c.outcome.mark(), c.label, c.detail)?;
        }
        Ok(())
    }
}
